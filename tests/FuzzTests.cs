using System.Buffers.Binary;
using System.IO.Compression;
using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>
/// The IDX and CIFAR readers under attack: thousands of mutated and truncated versions of real files
/// (bit flips, cut lengths, headers that claim billions of items, garbage appended, gzip damage). Every
/// case must end in the reader's own DataFormatException or a correct parse, never another exception,
/// and never allocate much more than the input justifies.
/// </summary>
[TestFixture]
public sealed class FuzzTests
{
    const int CasesPerSeed = 1500;

    static byte[] RealImages()
    {
        var e = DatasetLoader.LoadEmbedded(null).Train;
        var bytes = new byte[16 + 40 * 784];
        BinaryPrimitives.WriteInt32BigEndian(bytes, Idx.ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), 40);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), 28);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), 28);
        e.Pixels.AsSpan(0, 40 * 784).CopyTo(bytes.AsSpan(16));
        return bytes;
    }

    static byte[] RealLabels()
    {
        var e = DatasetLoader.LoadEmbedded(null).Train;
        var bytes = new byte[8 + 300];
        BinaryPrimitives.WriteInt32BigEndian(bytes, Idx.LabelMagic);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), 300);
        e.Labels.AsSpan(0, 300).CopyTo(bytes.AsSpan(8));
        return bytes;
    }

    static byte[] CifarFile() => File.ReadAllBytes(Path.Combine(TestData.WriteCifar(perBatch: 1, testCount: 6), Cifar.TestFile));

    static byte[] Gzip(byte[] raw)
    {
        using var m = new MemoryStream();
        using (var g = new GZipStream(m, CompressionLevel.Fastest, leaveOpen: true)) g.Write(raw);
        return m.ToArray();
    }

    /// <summary>One mutation of `original`, chosen by the generator.</summary>
    static byte[] Mutate(byte[] original, Random r, out string how)
    {
        var b = (byte[])original.Clone();
        switch (r.Next(6))
        {
            case 0:
                int flips = r.Next(1, 9);
                for (int i = 0; i < flips; i++) b[r.Next(b.Length)] ^= (byte)(1 << r.Next(8));
                how = $"{flips} bit flips";
                return b;
            case 1:
                int cut = r.Next(b.Length);
                how = $"cut to {cut} bytes";
                return b[..cut];
            case 2:
                int field = r.Next(Math.Min(4, b.Length / 4)) * 4;
                int value = r.Next(4) switch { 0 => int.MaxValue, 1 => int.MinValue, 2 => 1_000_000_000, _ => r.Next() };
                BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(field), value);
                how = $"header int at {field} = {value}";
                return b;
            case 3:
                int extra = r.Next(1, 5000);
                how = $"{extra} garbage bytes appended";
                var longer = new byte[b.Length + extra];
                b.CopyTo(longer, 0);
                r.NextBytes(longer.AsSpan(b.Length));
                return longer;
            case 4:
                int at = r.Next(b.Length);
                int len = Math.Min(b.Length - at, r.Next(1, 64));
                r.NextBytes(b.AsSpan(at, len));
                how = $"{len} random bytes at {at}";
                return b;
            default:
                how = "byte 0..15 set to random values";
                for (int i = 0; i < Math.Min(16, b.Length); i++) if (r.Next(3) == 0) b[i] = (byte)r.Next(256);
                return b;
        }
    }

    static int _cases;

    static void Attack(string name, byte[] original, Func<byte[], object> parse, int seed)
    {
        var r = new Random(seed);
        for (int i = 0; i < CasesPerSeed; i++)
        {
            byte[] input = Mutate(original, r, out string how);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                parse(input);
            }
            catch (DataFormatException)
            {
                // the reader's own, clear error: fine
            }
            catch (Exception e)
            {
                Assert.Fail($"{name}, case {i} ({how}): {e.GetType().Name}: {e.Message}");
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            // A parse copies the data at most a few times; gzip may inflate up to ~1032x its input.
            long allowed = 8L * input.Length * (name.EndsWith(".gz") ? 1100 : 1) + 1_000_000;
            Assert.That(allocated, Is.LessThanOrEqualTo(allowed), $"{name}, case {i} ({how}): allocated {allocated} bytes for {input.Length} bytes of input");
            Interlocked.Increment(ref _cases);
        }
    }

    static object ReadGz(byte[] bytes) => FileBytes.Read(new MemoryStream(bytes), "fuzz.gz");

    [Test]
    public void IdxImages_Raw() => Attack("images.idx", RealImages(), b => Idx.ParseImages(b, "fuzz"), 1);

    [Test]
    public void IdxLabels_Raw() => Attack("labels.idx", RealLabels(), b => Idx.ParseLabels(b, "fuzz"), 2);

    [Test]
    public void IdxImages_Gzip() => Attack("images.idx.gz", Gzip(RealImages()), b => Idx.ParseImages(FileBytes.Read(new MemoryStream(b), "fuzz.gz"), "fuzz.gz"), 3);

    [Test]
    public void IdxLabels_Gzip() => Attack("labels.idx.gz", Gzip(RealLabels()), b => Idx.ParseLabels(FileBytes.Read(new MemoryStream(b), "fuzz.gz"), "fuzz.gz"), 4);

    [Test]
    public void Cifar_Batch() => Attack("test_batch.bin", CifarFile(), b => Cifar.Parse(b, "fuzz"), 5);

    [Test]
    public void Dataset_ImagesAndLabelsTogether() => Attack("labels.idx (with images)", RealLabels(), b =>
    {
        var images = Idx.ParseImages(RealImagesFor(300), "images");
        return DatasetLoader.Validate(DatasetInfo.FashionMnist, images, Idx.ParseLabels(b, "labels"), "images", "labels", "fuzz");
    }, 6);

    static byte[]? _images300;
    static byte[] RealImagesFor(int n)
    {
        if (_images300 is not null) return _images300;
        var b = new byte[16 + n * 784];
        BinaryPrimitives.WriteInt32BigEndian(b, Idx.ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4), n);
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(8), 28);
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(12), 28);
        return _images300 = b;
    }

    [OneTimeTearDown]
    public void Report() => TestContext.Progress.WriteLine($"fuzz: {_cases} mutated inputs, every one a correct parse or a DataFormatException");
}
