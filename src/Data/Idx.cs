using System.Buffers.Binary;
using System.IO.Compression;

namespace ScratchNet.Data;

/// <summary>
/// The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
/// <code>
/// offset 0: 0x00 0x00            two zero bytes
/// offset 2: 0x08                 element type: unsigned byte (the only one these datasets use)
/// offset 3: D                    number of dimensions: 1 for labels, 3 for images
/// offset 4: D big-endian int32   the size of each dimension (N, then rows, cols for images)
/// then:     N * rows * cols      the data, one byte per element
/// </code>
/// So labels start with magic 0x00000801 and images with 0x00000803.
/// Every size in the header is checked against the real number of bytes before anything is allocated,
/// and no more is inflated from a gzip file than the header implies.
/// </summary>
public static class Idx
{
    public const int LabelMagic = 0x00000801;
    public const int ImageMagic = 0x00000803;

    /// <summary>Reads a label file (raw or gzip): N labels, one byte each.</summary>
    public static byte[] ReadLabels(string path) => FileBytes.Read(path, data => ReadLabels(data, path));

    /// <summary>Reads an image file (raw or gzip): N images of rows x cols bytes, row-major, one after another.</summary>
    public static IdxImages ReadImages(string path) => FileBytes.Read(path, data => ReadImages(data, path));

    /// <summary>A label file's raw IDX bytes (not gzip).</summary>
    public static byte[] ParseLabels(byte[] bytes, string name) => ReadLabels(new MemoryStream(bytes, writable: false), name);

    /// <summary>An image file's raw IDX bytes (not gzip).</summary>
    public static IdxImages ParseImages(byte[] bytes, string name) => ReadImages(new MemoryStream(bytes, writable: false), name);

    /// <summary>Labels from IDX content: a raw file, or the inflated bytes of a gzip one (<see cref="FileBytes.Open"/>).</summary>
    public static byte[] ReadLabels(Stream data, string name) => Read(data, name, LabelMagic).Data;

    /// <summary>Images from IDX content: a raw file, or the inflated bytes of a gzip one (<see cref="FileBytes.Open"/>).</summary>
    public static IdxImages ReadImages(Stream data, string name)
    {
        var (dims, pixels) = Read(data, name, ImageMagic);
        return new IdxImages(dims[0], dims[1], dims[2], pixels);
    }

    /// <summary>
    /// Reads and checks the header, then exactly the data bytes it implies, then checks that nothing
    /// follows. The size is checked before the data is read: against the file's length when it is known
    /// (a raw file, so a 3 GiB file is refused, not read into one array), and against MaxInflatedBytes
    /// for gzip, whose inflating stops at that size: a gzip bomb behind a small header costs no more
    /// memory than the header claims.
    /// </summary>
    static (int[] Dims, byte[] Data) Read(Stream data, string name, int expectedMagic)
    {
        string what = expectedMagic == LabelMagic ? "label" : "image";
        var header = new byte[16];
        int got = data.ReadAtLeast(header.AsSpan(0, 4), 4, throwOnEndOfStream: false);
        if (got < 4)
            throw new DataFormatException(name, 0, $"file is {got} bytes, too short for an IDX header");
        int magic = BinaryPrimitives.ReadInt32BigEndian(header);
        if (magic != expectedMagic)
            throw new DataFormatException(name, 0,
                $"magic number is 0x{magic:X8}, expected 0x{expectedMagic:X8} for an IDX {what} file");
        int ndims = expectedMagic & 0xFF;
        int headerBytes = 4 + 4 * ndims;
        got += data.ReadAtLeast(header.AsSpan(4, headerBytes - 4), headerBytes - 4, throwOnEndOfStream: false);
        if (got < headerBytes)
            throw new DataFormatException(name, got,
                $"file ends inside the header ({got} of {headerBytes} header bytes)");
        var dims = new int[ndims];
        long elements = 1;
        for (int d = 0; d < ndims; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4 + 4 * d));
            if (dims[d] <= 0)
                throw new DataFormatException(name, 4 + 4 * d, $"dimension {d} is {dims[d]}; it must be positive");
            elements *= dims[d];
        }

        string claim = $"header claims {string.Join(" x ", dims)} = {elements} bytes of data";
        if (data.CanSeek)
        {
            long actual = data.Length - headerBytes;
            if (actual < elements)
                throw new DataFormatException(name, headerBytes, $"{claim}, but the file has {actual} bytes after the header (truncated file?)");
            if (actual > elements)
                throw new DataFormatException(name, headerBytes + elements,
                    $"{claim}, but the file has {actual} bytes after the header (trailing bytes from this offset on)");
        }
        if (elements > FileBytes.MaxInflatedBytes)
            throw new DataFormatException(name, 4, $"{claim}; no dataset file holds more than {FileBytes.MaxInflatedBytes} bytes");

        byte[] bytes = FileBytes.ReadUpTo(data, elements);
        if (bytes.Length < elements)
            throw new DataFormatException(name, headerBytes,
                $"{claim}, but the inflated data has {bytes.Length} bytes after the header (truncated file?)");
        // Reading on to the end also makes a gzip stream check its trailer.
        if (data.ReadByte() >= 0)
            throw new DataFormatException(name, headerBytes + elements,
                $"{claim}, but the inflated data goes on past them (trailing bytes from this offset of the inflated data on)");
        return (dims, bytes);
    }

    /// <summary>Writes a label file; gzip-compressed when the path ends in ".gz".</summary>
    public static void WriteLabels(string path, ReadOnlySpan<byte> labels)
    {
        var header = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(header, LabelMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), labels.Length);
        Write(path, header, labels);
    }

    /// <summary>Writes an image file of count images of rows x cols bytes; gzip when the path ends in ".gz".</summary>
    public static void WriteImages(string path, int count, int rows, int cols, ReadOnlySpan<byte> pixels)
    {
        if (pixels.Length != count * rows * cols)
            throw new ArgumentException($"expected {count * rows * cols} pixel bytes, got {pixels.Length}");
        var header = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), rows);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), cols);
        Write(path, header, pixels);
    }

    /// <summary>
    /// Writes header and data (gzip when the path ends in ".gz") through <see cref="ReplacingFile"/>: a failed
    /// write keeps the old file whole and is an <see cref="OutputFileException"/>.
    /// </summary>
    static void Write(string path, ReadOnlySpan<byte> header, ReadOnlySpan<byte> data)
    {
        try
        {
            using var target = new ReplacingFile(path);
            if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
            {
                using var gzip = new GZipStream(target.Stream, CompressionLevel.SmallestSize, leaveOpen: true);
                gzip.Write(header);
                gzip.Write(data);
            }
            else
            {
                target.Stream.Write(header);
                target.Stream.Write(data);
            }
            target.Commit(flushToDisk: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputFileException(path, $"could not be written ({OutputFileException.Reason(e)}); the file that was there, if any, is unchanged", e);
        }
    }
}

/// <summary>Images from an IDX file: count x rows x cols bytes.</summary>
public sealed record IdxImages(int Count, int Rows, int Cols, byte[] Pixels);
