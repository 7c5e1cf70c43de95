using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>
/// Data files the operating system will not read, raw files too large to read into one array, and gzip
/// files that are cut short, damaged or inflate far beyond what their IDX header claims: each is one
/// DataFormatException that names the file (and, where there is one, the byte offset).
/// </summary>
[TestFixture]
public sealed class DataFileTests
{
    static byte[] ImageHeader(int count)
    {
        var header = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, Idx.ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), 28);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), 28);
        return header;
    }

    /// <summary>A gzip label file of 1000 labels, as its bytes.</summary>
    static (string Path, byte[] Bytes) GzipLabels()
    {
        string path = Path.Combine(TestData.NewFolder(), "labels.gz");
        Idx.WriteLabels(path, Enumerable.Range(0, 1000).Select(i => (byte)(i % 10)).ToArray());
        return (path, File.ReadAllBytes(path));
    }

    // 1. Files the operating system refuses to read.

    [Test]
    public void Idx_SymlinkToItself_IsADataErrorNamingTheFile()
    {
        string dir = TestData.WriteIdx(20, 10, gzip: false);
        string images = Path.Combine(dir, DatasetInfo.IdxTrainImages);
        File.Delete(images);
        File.CreateSymbolicLink(images, images);
        var r = CliRunner.Run("samples", "--data", dir, "--out", Path.Combine(TestData.NewFolder(), "s.png"));
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr.Trim(), Does.StartWith($"error: {images}: cannot read the file").And.Contain("symbolic links").And.Not.Contain("internal error"));
    }

    [Test]
    public void Cifar_ClassNamesSymlinkToItself_IsADataErrorNamingTheFile()
    {
        string dir = TestData.WriteCifar(perBatch: 1, testCount: 1);
        string meta = Path.Combine(dir, Cifar.MetaFile);
        File.Delete(meta);
        File.CreateSymbolicLink(meta, meta);
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load("cifar10", dir))!;
        Assert.That(e.Message, Does.StartWith($"{meta}: cannot read the file"));
    }

    /// <summary>Reading /proc/self/mem at offset 0 fails with EIO, even for root: a real read error.</summary>
    [Test, Platform("Linux")]
    public void Idx_ReadErrorFromTheSystem_IsADataErrorNamingTheFile()
    {
        string dir = TestData.WriteIdx(20, 10, gzip: false);
        string labels = Path.Combine(dir, DatasetInfo.IdxTestLabels);
        File.Delete(labels);
        File.CreateSymbolicLink(labels, "/proc/self/mem");
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load("mnist", dir))!;
        Assert.That(e.Message, Does.StartWith($"{labels}: cannot read the file"));
    }

    /// <summary>Tests run as root, who may read anything; so permission denied is simulated where it is raised.</summary>
    [Test]
    public void PermissionDenied_IsADataErrorNamingTheFile()
    {
        string path = Path.Combine(TestData.WriteIdx(1, 1, gzip: false), DatasetInfo.IdxTestLabels);
        var e = Assert.Throws<DataFormatException>(() =>
            FileBytes.Read<int>(path, _ => throw new UnauthorizedAccessException($"Access to the path '{path}' is denied.")))!;
        Assert.That(e.Message, Does.StartWith($"{path}: cannot read the file").And.Contain("denied"));
    }

    // 2. Raw files larger than the header implies are refused before they are read.

    [Test]
    public void Idx_RawFileOver2GiB_IsRefusedBeforeReading()
    {
        string path = Path.Combine(TestData.NewFolder(), "huge-images-idx3-ubyte");
        try
        {
            using (var file = File.Create(path))
            {
                file.Write(ImageHeader(10));
                file.SetLength(16 + 10 * 784 + (3L << 30)); // sparse: no 3 GiB are written
            }
            long before = GC.GetAllocatedBytesForCurrentThread();
            var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.That(e.Message, Does.StartWith(path).And.Contain("10 x 28 x 28 = 7840 bytes").And.Contain("trailing"));
            Assert.That(e.Offset, Is.EqualTo(16 + 7840), "where the bytes the header does not account for begin");
            Assert.That(allocated, Is.LessThan(1_000_000));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Cifar_RawFileOver2GiB_IsRefusedBeforeReading()
    {
        string path = Path.Combine(TestData.NewFolder(), Cifar.TestFile);
        try
        {
            using (var file = File.Create(path)) file.SetLength(3L << 30);
            var e = Assert.Throws<DataFormatException>(() => Cifar.ReadBatch(path))!;
            Assert.That(e.Message, Does.StartWith(path).And.Contain("no dataset file is larger"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    // 3. gzip: the trailer is checked, and damage is located.

    [Test]
    public void Gzip_WithoutItsTrailer_IsRejected()
    {
        var (path, bytes) = GzipLabels();
        File.WriteAllBytes(path, bytes[..^8]);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("gzip trailer").And.Contain("cut short"));
        Assert.That(e.Offset, Is.EqualTo(bytes.Length - 16), "the last 8 bytes, where the trailer should be");
    }

    [Test]
    public void Gzip_ShorterThanATrailer_IsRejected()
    {
        var (path, bytes) = GzipLabels();
        File.WriteAllBytes(path, bytes[..14]);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("too short for its 8-byte trailer"));
    }

    [TestCase(0, TestName = "Gzip_TrailerCrcMismatch_NamesTheTrailerOffset")]
    [TestCase(4, TestName = "Gzip_TrailerLengthMismatch_NamesTheTrailerOffset")]
    public void Gzip_TrailerMismatch_NamesTheTrailerOffset(int field)
    {
        var (path, bytes) = GzipLabels();
        bytes[bytes.Length - 8 + field] ^= 0x01;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        Assert.That(e.Message, Does.StartWith($"{path}: at byte offset {bytes.Length - 8}: the gzip trailer"));
    }

    [Test]
    public void Gzip_CorruptDeflateData_NamesAnOffset()
    {
        var (path, bytes) = GzipLabels();
        bytes[10] = 0x07; // the first deflate block: final, of the reserved block type 3
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("corrupt deflate data").And.Not.Contain("unsupported compression method"));
        Assert.That(e.Offset, Is.Not.Null.And.InRange(10, bytes.Length));
    }

    [Test]
    public void Gzip_UnknownCompressionMethod_NamesOffsetTwo()
    {
        var (path, bytes) = GzipLabels();
        bytes[2] = 7;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        Assert.That(e.Message, Does.StartWith($"{path}: at byte offset 2: gzip compression method is 7"));
    }

    [Test]
    public void Gzip_AppendedGarbage_IsRejected()
    {
        var (path, bytes) = GzipLabels();
        File.WriteAllBytes(path, [.. bytes, .. new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }]);
        Assert.That(() => Idx.ReadLabels(path), Throws.TypeOf<DataFormatException>().With.Message.StartsWith(path));
    }

    [Test]
    public void Gzip_Intact_StillReads()
    {
        var (path, _) = GzipLabels();
        Assert.That(Idx.ReadLabels(path), Is.EqualTo(Enumerable.Range(0, 1000).Select(i => (byte)(i % 10)).ToArray()));
    }

    // 4. A gzip bomb behind a small header inflates only as far as the header claims.

    [Test]
    public void Gzip_BombBehindASmallHeader_StopsAtTheHeadersSize()
    {
        string path = Path.Combine(TestData.NewFolder(), "bomb-images-idx3-ubyte.gz");
        using (var file = File.Create(path))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
        {
            gzip.Write(ImageHeader(2));
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 50; i++) gzip.Write(zeros); // 50 MiB inflated, ~50 KiB on disk
        }
        var clock = Stopwatch.StartNew();
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("2 x 28 x 28 = 1568 bytes").And.Contain("goes on past them"));
        Assert.That(e.Offset, Is.EqualTo(16 + 1568));
        Assert.That(allocated, Is.LessThan(1_000_000), "memory is bounded by what the header claims, not by what the file inflates to");
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(5), "rejected without inflating 50 MiB");
    }

    // 5. Missing dataset files: the message says how to get them.

    [Test]
    public void Load_NoMnistAnywhere_SaysHowToDownloadIt()
    {
        string previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = TestData.NewFolder(); // no ./data/mnist here
        try
        {
            var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load("mnist", null))!;
            Assert.That(e.Message, Does.Contain("no mnist files found; fetch the dataset with: scratchnet download mnist,"));
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }
    }

    [TestCase("mnist", "train-images-idx3-ubyte[.gz]: file not found")]
    [TestCase("cifar10", "data_batch_1.bin: file not found")]
    public void Load_FolderWithoutTheFiles_SaysHowToDownloadThem(string dataset, string missing)
    {
        string dir = TestData.NewFolder();
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(dataset, dir))!;
        Assert.That(e.Message, Does.Contain($"{missing}; fetch the dataset with: scratchnet download {dataset} --to {dir}"));
    }

    [Test]
    public void Load_MissingFolder_SaysHowToDownloadIntoIt()
    {
        var r = CliRunner.Run("train", "--dataset", "mnist", "--data", "/no/such/dir");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Is.EqualTo("error: /no/such/dir: data folder not found; fetch the dataset with: scratchnet download mnist --to /no/such/dir"));
    }
}
