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
/// Every size in the header is checked against the real number of bytes before anything is allocated.
/// </summary>
public static class Idx
{
    public const int LabelMagic = 0x00000801;
    public const int ImageMagic = 0x00000803;

    /// <summary>Reads a label file: N labels, one byte each.</summary>
    public static byte[] ReadLabels(string path) => ParseLabels(FileBytes.Read(path), path);

    /// <summary>Reads an image file: N images of rows x cols bytes, row-major, one after another.</summary>
    public static IdxImages ReadImages(string path) => ParseImages(FileBytes.Read(path), path);

    public static byte[] ParseLabels(byte[] bytes, string name)
    {
        int[] dims = ParseHeader(bytes, name, LabelMagic);
        return bytes.AsSpan(8, dims[0]).ToArray();
    }

    public static IdxImages ParseImages(byte[] bytes, string name)
    {
        int[] dims = ParseHeader(bytes, name, ImageMagic);
        int count = dims[0], rows = dims[1], cols = dims[2];
        return new IdxImages(count, rows, cols, bytes.AsSpan(16, count * rows * cols).ToArray());
    }

    /// <summary>Checks the magic and that the dimensions describe exactly the bytes that follow.</summary>
    static int[] ParseHeader(byte[] bytes, string name, int expectedMagic)
    {
        string what = expectedMagic == LabelMagic ? "label" : "image";
        if (bytes.Length < 4)
            throw new DataFormatException(name, 0, $"file is {bytes.Length} bytes, too short for an IDX header");
        int magic = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (magic != expectedMagic)
            throw new DataFormatException(name, 0,
                $"magic number is 0x{magic:X8}, expected 0x{expectedMagic:X8} for an IDX {what} file");
        int ndims = expectedMagic & 0xFF;
        int headerBytes = 4 + 4 * ndims;
        if (bytes.Length < headerBytes)
            throw new DataFormatException(name, bytes.Length,
                $"file ends inside the header ({bytes.Length} of {headerBytes} header bytes)");
        var dims = new int[ndims];
        long elements = 1;
        for (int d = 0; d < ndims; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * d));
            if (dims[d] <= 0)
                throw new DataFormatException(name, 4 + 4 * d, $"dimension {d} is {dims[d]}; it must be positive");
            elements *= dims[d];
        }
        long expected = headerBytes + elements;
        if (expected != bytes.Length)
            throw new DataFormatException(name, headerBytes,
                $"header claims {string.Join(" x ", dims)} = {elements} bytes of data, " +
                $"but the file has {bytes.Length - headerBytes} bytes after the header" +
                (expected > bytes.Length ? " (truncated file?)" : " (trailing bytes)"));
        return dims;
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

    static void Write(string path, ReadOnlySpan<byte> header, ReadOnlySpan<byte> data)
    {
        using var file = File.Create(path);
        using Stream output = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
            ? new GZipStream(file, CompressionLevel.SmallestSize)
            : file;
        output.Write(header);
        output.Write(data);
    }
}

/// <summary>Images from an IDX file: count x rows x cols bytes.</summary>
public sealed record IdxImages(int Count, int Rows, int Cols, byte[] Pixels);
