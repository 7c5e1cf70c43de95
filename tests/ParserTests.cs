using System.Buffers.Binary;
using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

[TestFixture]
public sealed class ParserTests
{
    [TestCase(false)]
    [TestCase(true)]
    public void Idx_WriteThenRead_RoundTrips(bool gzip)
    {
        string dir = TestData.NewFolder();
        string ext = gzip ? ".gz" : "";
        var pixels = Enumerable.Range(0, 3 * 28 * 28).Select(i => (byte)(i * 7)).ToArray();
        Idx.WriteImages(Path.Combine(dir, "img" + ext), 3, 28, 28, pixels);
        Idx.WriteLabels(Path.Combine(dir, "lbl" + ext), new byte[] { 4, 0, 9 });
        var images = Idx.ReadImages(Path.Combine(dir, "img" + ext));
        Assert.That((images.Count, images.Rows, images.Cols), Is.EqualTo((3, 28, 28)));
        Assert.That(images.Pixels, Is.EqualTo(pixels));
        Assert.That(Idx.ReadLabels(Path.Combine(dir, "lbl" + ext)), Is.EqualTo(new byte[] { 4, 0, 9 }));
    }

    static byte[] ImageFile(int count, int rows = 28, int cols = 28)
    {
        var bytes = new byte[16 + count * rows * cols];
        BinaryPrimitives.WriteInt32BigEndian(bytes, Idx.ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), rows);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), cols);
        return bytes;
    }

    [Test]
    public void Idx_WrongMagic_NamesFileAndOffsetZero()
    {
        var bytes = ImageFile(2);
        bytes[3] = 0x01;
        var e = Assert.Throws<DataFormatException>(() => Idx.ParseImages(bytes, "x.idx"))!;
        Assert.That(e.Message, Does.StartWith("x.idx: at byte offset 0: magic number is 0x00000801, expected 0x00000803"));
    }

    [Test]
    public void Idx_Truncated_ReportsOffsetAndSizes()
    {
        var bytes = ImageFile(2)[..(16 + 784 + 100)];
        var e = Assert.Throws<DataFormatException>(() => Idx.ParseImages(bytes, "t.idx"))!;
        Assert.That(e.Offset, Is.EqualTo(16));
        Assert.That(e.Message, Does.Contain("2 x 28 x 28 = 1568 bytes").And.Contain("884 bytes after the header").And.Contain("truncated"));
    }

    [Test]
    public void Idx_TrailingBytes_AreAnError()
    {
        var bytes = ImageFile(1).Concat(new byte[5]).ToArray();
        Assert.That(() => Idx.ParseImages(bytes, "t.idx"), Throws.TypeOf<DataFormatException>().With.Message.Contains("trailing"));
    }

    [Test]
    public void Idx_HeaderClaimsBillions_FailsWithoutAllocating()
    {
        var bytes = ImageFile(1);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), int.MaxValue);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DataFormatException>(() => Idx.ParseImages(bytes, "big.idx"))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain("2147483647 x 28 x 28"));
        Assert.That(allocated, Is.LessThan(100_000), "a lying header must not cause a large allocation");
    }

    [Test]
    public void Idx_NegativeDimension_IsAnError()
    {
        var bytes = ImageFile(1);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), -28);
        var e = Assert.Throws<DataFormatException>(() => Idx.ParseImages(bytes, "n.idx"))!;
        Assert.That(e.Offset, Is.EqualTo(8));
    }

    [Test]
    public void Idx_TooShortForHeader_IsAnError()
    {
        Assert.That(() => Idx.ParseLabels([0, 0], "s.idx"), Throws.TypeOf<DataFormatException>().With.Message.Contains("too short"));
        Assert.That(() => Idx.ParseLabels([0, 0, 8, 1, 0], "s.idx"), Throws.TypeOf<DataFormatException>().With.Message.Contains("ends inside the header"));
    }

    [Test]
    public void Gzip_Corrupt_IsAFormatError()
    {
        string dir = TestData.NewFolder();
        string path = Path.Combine(dir, "c.gz");
        Idx.WriteLabels(path, new byte[1000]);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        Assert.That(() => Idx.ReadLabels(path), Throws.TypeOf<DataFormatException>().With.Message.StartsWith(path));
    }

    [Test]
    public void Dataset_CountsDiffer_NamesBothFiles()
    {
        string dir = TestData.WriteIdx(10, 5, gzip: false);
        Idx.WriteLabels(Path.Combine(dir, DatasetInfo.IdxTrainLabels), new byte[9]);
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load("mnist", dir))!;
        Assert.That(e.Message, Does.Contain(DatasetInfo.IdxTrainLabels).And.Contain("9 labels").And.Contain("10 images"));
    }

    [Test]
    public void Dataset_LabelOutsideClasses_NamesOffset()
    {
        string dir = TestData.WriteIdx(10, 5, gzip: false);
        var labels = new byte[10];
        labels[6] = 10;
        Idx.WriteLabels(Path.Combine(dir, DatasetInfo.IdxTrainLabels), labels);
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load("fashion-mnist", dir))!;
        Assert.That(e.Offset, Is.EqualTo(8 + 6));
        Assert.That(e.Message, Does.Contain("label 10 of image 6"));
    }

    [Test]
    public void Dataset_WrongImageSize_IsAnError()
    {
        string dir = TestData.WriteIdx(2, 2, gzip: false);
        Idx.WriteImages(Path.Combine(dir, DatasetInfo.IdxTrainImages), 2, 32, 32, new byte[2 * 1024]);
        Assert.That(() => DatasetLoader.Load("mnist", dir), Throws.TypeOf<DataFormatException>().With.Message.Contains("images are 32x32"));
    }

    [Test]
    public void Dataset_MissingFolder_IsAnError() =>
        Assert.That(() => DatasetLoader.Load("mnist", "/nonexistent/folder"), Throws.TypeOf<DataFormatException>().With.Message.Contains("/nonexistent/folder: data folder not found"));

    [Test]
    public void Embedded_Subset_Has2000And500RealImages()
    {
        var pair = DatasetLoader.LoadEmbedded(null);
        Assert.That((pair.Train.Count, pair.Test.Count), Is.EqualTo((2000, 500)));
        Assert.That(pair.Train.Labels.Distinct().Count(), Is.EqualTo(10));
        Assert.That(pair.Train.Pixels.Count(p => p != 0), Is.GreaterThan(2000 * 784 / 4), "real images are far from blank");
    }

    [Test]
    public void Cifar_ReadsRecordsAndNames()
    {
        string dir = TestData.WriteCifar(perBatch: 4, testCount: 3);
        var pair = DatasetLoader.Load("cifar10", dir);
        Assert.That((pair.Train.Count, pair.Test.Count), Is.EqualTo((20, 3)));
        Assert.That(pair.Train.Info.ClassNames[0], Is.EqualTo("airplane"));
        var (pixels, labels) = Cifar.ReadBatch(Path.Combine(dir, Cifar.TestFile));
        var raw = File.ReadAllBytes(Path.Combine(dir, Cifar.TestFile));
        Assert.That(labels[1], Is.EqualTo(raw[Cifar.RecordBytes]));
        Assert.That(pixels.AsSpan(Cifar.ImageBytes, Cifar.ImageBytes).ToArray(), Is.EqualTo(raw.AsSpan(Cifar.RecordBytes + 1, Cifar.ImageBytes).ToArray()));
    }

    [Test]
    public void Cifar_PartialRecord_NamesOffset()
    {
        var bytes = new byte[Cifar.RecordBytes * 2 + 100];
        var e = Assert.Throws<DataFormatException>(() => Cifar.Parse(bytes, "b.bin"))!;
        Assert.That(e.Offset, Is.EqualTo(Cifar.RecordBytes * 2));
        Assert.That(e.Message, Does.Contain("2 records and 100 bytes left over"));
    }

    [Test]
    public void Cifar_BadLabel_NamesRecordOffset()
    {
        var bytes = new byte[Cifar.RecordBytes * 3];
        bytes[Cifar.RecordBytes * 2] = 200;
        var e = Assert.Throws<DataFormatException>(() => Cifar.Parse(bytes, "b.bin"))!;
        Assert.That(e.Offset, Is.EqualTo(Cifar.RecordBytes * 2));
        Assert.That(e.Message, Does.Contain("record 2 has label 200"));
    }

    [Test]
    public void Cifar_MissingBatch_NamesFile()
    {
        string dir = TestData.WriteCifar(2, 2);
        File.Delete(Path.Combine(dir, "data_batch_3.bin"));
        Assert.That(() => DatasetLoader.Load("cifar10", dir), Throws.TypeOf<DataFormatException>().With.Message.Contains("data_batch_3.bin: file not found"));
    }

    [Test]
    public void Normalize_ThenDenormalize_GivesBackEveryByte()
    {
        foreach (var info in DatasetInfo.All)
        {
            var n = new Normalizer(info);
            var image = Enumerable.Range(0, info.ImageSize).Select(i => (byte)(i % 256)).ToArray();
            var values = new float[info.ImageSize];
            n.Normalize(image, values);
            Assert.That(values[0], Is.EqualTo(-info.Mean[0] / info.Std[0]).Within(1e-6f));
            var back = new byte[info.ImageSize];
            n.Denormalize(values, back);
            Assert.That(back, Is.EqualTo(image), info.Name);
        }
    }

    [Test]
    public void Normalize_InVectors_IsTheScalarFormula_BitForBit()
    {
        // 32 pixels at a time, then the rest one by one (784 = 24 x 32 + 16; CIFAR's planes of 1024 have no rest):
        // each value must be p * scale + shift with both roundings, as one pixel at a time gives it.
        var r = new Random(11);
        foreach (var info in DatasetInfo.All)
        {
            var n = new Normalizer(info);
            float[] ss = n.ScaleShift();
            var image = new byte[info.ImageSize];
            r.NextBytes(image);
            image[0] = 0;
            image[^1] = 255;
            var values = new float[info.ImageSize];
            n.Normalize(image, values);
            int plane = info.Height * info.Width;
            for (int i = 0; i < image.Length; i++)
            {
                int c = i / plane;
                float product = image[i] * ss[c];
                Assert.That(BitConverter.SingleToInt32Bits(values[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(product + ss[info.Channels + c])), $"{info.Name} value {i}");
            }
        }
    }

    [Test]
    public void BatchLoader_ShufflesSeededAndKeepsLastPartialBatch()
    {
        var pair = DatasetLoader.LoadEmbedded(null);
        var a = new BatchLoader(pair.Test, 64, shuffle: true, seed: 42);
        var b = new BatchLoader(pair.Test, 64, shuffle: true, seed: 42);
        Assert.That(a.BatchesPerEpoch, Is.EqualTo(8));
        Assert.That(a.BatchCount(7), Is.EqualTo(500 - 7 * 64));
        a.StartEpoch(0);
        b.StartEpoch(0);
        Assert.That(a.Indices(3).ToArray(), Is.EqualTo(b.Indices(3).ToArray()));
        var seen = Enumerable.Range(0, 8).SelectMany(i => a.Indices(i).ToArray()).ToList();
        Assert.That(seen, Is.EquivalentTo(Enumerable.Range(0, 500)), "every image exactly once per epoch");
        Assert.That(seen.Take(20), Is.Not.EqualTo(Enumerable.Range(0, 20)), "shuffled");
        b.StartEpoch(1);
        Assert.That(b.Indices(0).ToArray(), Is.Not.EqualTo(a.Indices(0).ToArray()), "a new order each epoch");
    }
}
