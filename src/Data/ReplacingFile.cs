namespace ScratchNet.Data;

/// <summary>
/// A file replaced the safe way: write to <see cref="Stream"/>, a temporary ".NAME.PID.tmp" beside `path`, then
/// <see cref="Commit"/> flushes it and renames it over `path`. A crash, a full disk or an exception before the
/// commit leaves the old file whole, never half of a new one; disposing removes the temporary file.
/// <code>
/// using (var target = new ReplacingFile(path)) { target.Stream.Write(bytes); target.Commit(flushToDisk: true); }
/// </code>
/// I/O failures are thrown as they are, for the caller to name the file in its own words.
/// </summary>
public sealed class ReplacingFile : IDisposable
{
    readonly string _full, _temp;

    public ReplacingFile(string path)
    {
        _full = Path.GetFullPath(path);
        _temp = Path.Combine(Path.GetDirectoryName(_full)!, $".{Path.GetFileName(_full)}.{Environment.ProcessId}.tmp");
        Stream = new FileStream(_temp, FileMode.Create, FileAccess.Write, FileShare.None);
    }

    public FileStream Stream { get; }

    /// <summary>Flushes (to the disk itself when asked), closes and renames the temporary file over the target.</summary>
    public void Commit(bool flushToDisk)
    {
        Stream.Flush(flushToDisk);
        Stream.Dispose();
        File.Move(_temp, _full, overwrite: true);
    }

    public void Dispose()
    {
        Stream.Dispose();
        try { if (File.Exists(_temp)) File.Delete(_temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
