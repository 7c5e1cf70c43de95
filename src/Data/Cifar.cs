namespace ScratchNet.Data;

/// <summary>
/// The CIFAR-10 "binary version" (https://www.cs.toronto.edu/~kriz/cifar.html): each file is a list of
/// 3073-byte records, one label byte (0..9) then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue,
/// each a 32x32 image row-major. That is already the C x H x W layout our tensors use.
/// </summary>
public static class Cifar
{
    public const int ImageBytes = 3 * 32 * 32;
    public const int RecordBytes = 1 + ImageBytes;
    public const int Classes = 10;

    public static readonly string[] TrainFiles =
        ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
    public const string TestFile = "test_batch.bin";
    public const string MetaFile = "batches.meta.txt";

    /// <summary>Reads one batch file into (pixels, labels). Labels outside 0..9 are an error.</summary>
    public static (byte[] Pixels, byte[] Labels) ReadBatch(string path)
    {
        byte[] bytes = FileBytes.Read(path);
        return Parse(bytes, path);
    }

    public static (byte[] Pixels, byte[] Labels) Parse(byte[] bytes, string name)
    {
        if (bytes.Length == 0)
            throw new DataFormatException(name, 0, "file is empty");
        if (bytes.Length % RecordBytes != 0)
            throw new DataFormatException(name, bytes.Length - bytes.Length % RecordBytes,
                $"file has {bytes.Length} bytes, not a whole number of {RecordBytes}-byte records " +
                $"({bytes.Length / RecordBytes} records and {bytes.Length % RecordBytes} bytes left over)");
        int count = bytes.Length / RecordBytes;
        var labels = new byte[count];
        var pixels = new byte[(long)count * ImageBytes];
        for (int i = 0; i < count; i++)
        {
            long offset = (long)i * RecordBytes;
            byte label = bytes[offset];
            if (label >= Classes)
                throw new DataFormatException(name, offset, $"record {i} has label {label}; CIFAR-10 labels are 0..9");
            labels[i] = label;
            Array.Copy(bytes, offset + 1, pixels, (long)i * ImageBytes, ImageBytes);
        }
        return (pixels, labels);
    }

    /// <summary>Reads the class names, one per line; blank lines are ignored.</summary>
    public static string[] ReadClassNames(string path)
    {
        // Through FileBytes so an unreadable file is a DataFormatException; StreamReader drops a byte-order mark.
        string text = FileBytes.Read(path, data => new StreamReader(data).ReadToEnd());
        string[] names = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (names.Length != Classes)
            throw new DataFormatException(path, null, $"expected {Classes} class names, found {names.Length}");
        return names;
    }

    /// <summary>Writes records in the same format (used to make test data and sample folders).</summary>
    public static void WriteBatch(string path, ReadOnlySpan<byte> pixels, ReadOnlySpan<byte> labels)
    {
        if (pixels.Length != labels.Length * ImageBytes)
            throw new ArgumentException("pixels must hold 3072 bytes per label");
        using var file = File.Create(path);
        for (int i = 0; i < labels.Length; i++)
        {
            file.WriteByte(labels[i]);
            file.Write(pixels.Slice(i * ImageBytes, ImageBytes));
        }
    }
}
