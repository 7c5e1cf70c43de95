using System.IO.Compression;

namespace ScratchNet.Data;

/// <summary>
/// Reads a whole data file into memory, raw or gzip-compressed (by its ".gz" name or its magic bytes
/// 1F 8B). The buffer is never larger than the data that is really there: a raw file is read at its
/// length on disk, a gzip stream is inflated chunk by chunk up to a hard cap, so a lying header can
/// never make us allocate more than the file justifies.
/// </summary>
public static class FileBytes
{
    /// <summary>No dataset file we read inflates beyond this (CIFAR-10's largest file is 30 MiB).</summary>
    public const long MaxInflatedBytes = 1L << 30;

    public static byte[] Read(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException(path, null, "file not found");
        using var file = File.OpenRead(path);
        return Read(file, path);
    }

    public static byte[] Read(Stream stream, string name)
    {
        var head = new byte[2];
        int got = stream.ReadAtLeast(head, 2, throwOnEndOfStream: false);
        bool gzip = got == 2 && head[0] == 0x1F && head[1] == 0x8B;
        if (stream.CanSeek) stream.Seek(0, SeekOrigin.Begin);
        else throw new ArgumentException("stream must be seekable", nameof(stream));
        if (!gzip)
        {
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        try
        {
            using var inflate = new GZipStream(stream, CompressionMode.Decompress, leaveOpen: true);
            using var output = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = inflate.Read(chunk, 0, chunk.Length)) > 0)
            {
                if (output.Length + n > MaxInflatedBytes)
                    throw new DataFormatException(name, null, $"gzip data inflates to more than {MaxInflatedBytes} bytes; not a dataset file");
                output.Write(chunk, 0, n);
            }
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(name, null, $"corrupt gzip data ({e.Message})");
        }
        catch (EndOfStreamException)
        {
            throw new DataFormatException(name, null, "gzip data ends early (truncated file)");
        }
    }
}
