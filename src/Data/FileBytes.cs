namespace ScratchNet.Data;

/// <summary>
/// Opens and reads data files, raw or gzip-compressed (by their magic bytes 1F 8B; gzip goes through
/// <see cref="GzipReader"/>, which checks the trailer). A buffer is never larger than the data that is
/// really there: it grows with the bytes actually read, up to a limit the caller sets, so a lying header
/// can never make us allocate more than the file justifies. Whatever the operating system refuses
/// (permission denied, a symlink loop, an I/O error) becomes a DataFormatException naming the file.
/// </summary>
public static class FileBytes
{
    /// <summary>No dataset file we read is larger, raw or inflated (the largest, CIFAR-10's batches, are 30 MiB).</summary>
    public const long MaxInflatedBytes = 1L << 30;

    /// <summary>The whole content of a data file (inflated when gzip), at most MaxInflatedBytes.</summary>
    public static byte[] Read(string path) => Read(path, data => ReadAll(data, path));

    /// <summary>The whole content of a seekable stream holding a data file (inflated when gzip).</summary>
    public static byte[] Read(Stream stream, string name)
    {
        using Stream data = Open(stream, name);
        return ReadAll(data, name);
    }

    /// <summary>
    /// Opens `path` and hands `parse` its content: the file itself (seekable, so its length is known) or,
    /// for gzip, the inflated bytes (not seekable). I/O errors while opening or reading become a
    /// DataFormatException naming the file: the user can fix them, so they are no internal error.
    /// </summary>
    public static T Read<T>(string path, Func<Stream, T> parse)
    {
        if (!File.Exists(path))
            throw new DataFormatException(path, null, "file not found");
        try
        {
            using var file = File.OpenRead(path);
            if (!file.CanSeek)
                throw new DataFormatException(path, null, "not a regular file (a pipe or a device?)");
            using Stream data = Open(file, path);
            return parse(data);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(path, null, $"cannot read the file ({OutputFileException.Reason(e)})");
        }
    }

    /// <summary>The content of a seekable stream: the stream itself, or a GzipReader when it starts with 1F 8B.</summary>
    public static Stream Open(Stream stream, string name)
    {
        if (!stream.CanSeek) throw new ArgumentException("stream must be seekable", nameof(stream));
        Span<byte> head = stackalloc byte[2];
        stream.Position = 0;
        int got = stream.ReadAtLeast(head, 2, throwOnEndOfStream: false);
        stream.Position = 0;
        return got == 2 && head[0] == 0x1F && head[1] == 0x8B ? new GzipReader(stream, name) : stream;
    }

    static byte[] ReadAll(Stream data, string name)
    {
        if (data.CanSeek && data.Length > MaxInflatedBytes)
            throw new DataFormatException(name, MaxInflatedBytes, $"file is {data.Length} bytes; no dataset file is larger than {MaxInflatedBytes}");
        byte[] bytes = ReadUpTo(data, MaxInflatedBytes + 1);
        if (bytes.Length > MaxInflatedBytes)
            throw new DataFormatException(name, null, $"gzip data inflates to more than {MaxInflatedBytes} bytes; not a dataset file");
        return bytes;
    }

    /// <summary>
    /// Reads until `limit` bytes or the end of `data`, whichever comes first. A seekable stream's buffer is
    /// allocated once at the size that is there; gzip's starts at its SizeHint (a size the file can really
    /// inflate to); and a buffer grows (doubling) only with bytes that really arrive, so a limit far beyond
    /// the data costs nothing.
    /// </summary>
    public static byte[] ReadUpTo(Stream data, long limit)
    {
        if (data.CanSeek)
        {
            var exact = new byte[Math.Min(limit, Math.Max(0, data.Length - data.Position))];
            int got = data.ReadAtLeast(exact, exact.Length, throwOnEndOfStream: false);
            if (got < exact.Length) Array.Resize(ref exact, got);
            return exact;
        }
        long hint = data is GzipReader gzip ? Math.Max(gzip.SizeHint, 1) : 1 << 16;
        var buffer = new byte[Math.Min(limit, hint)];
        int filled = 0;
        while (filled < limit)
        {
            if (filled == buffer.Length)
                Array.Resize(ref buffer, (int)Math.Min(limit, 2L * buffer.Length));
            int n = data.Read(buffer, filled, buffer.Length - filled);
            if (n == 0) break;
            filled += n;
        }
        if (filled < buffer.Length) Array.Resize(ref buffer, filled);
        return buffer;
    }
}
