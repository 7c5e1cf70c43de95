namespace ScratchNet.Data;

/// <summary>
/// Checks, before any work is done, that a command will be able to write its output: a folder is
/// created (as the command would) and a probe file created and deleted in it, which is the one test
/// that covers permissions, read-only mounts and the like. Failures name the option and the path.
/// </summary>
public static class OutputPath
{
    /// <summary>`dir` exists or can be created, and files can be created in it.</summary>
    public static void CheckFolder(string dir, string option) => CheckFolder(dir, option, dir);

    /// <summary>`path` can be created or replaced: it is not a folder, and its folder is writable.</summary>
    public static void CheckFile(string path, string option)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full) || Path.EndsInDirectorySeparator(path))
            throw Fail(option, path, "it is a folder; give a file name");
        CheckFolder(Path.GetDirectoryName(full) ?? full, option, path);
        if (!File.Exists(full)) return;
        try
        {
            // Opening for writing without truncating tells whether we may replace it, and changes nothing.
            using (new FileStream(full, FileMode.Open, FileAccess.Write)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail(option, path, OutputFileException.Reason(e), e);
        }
    }

    static void CheckFolder(string dir, string option, string named)
    {
        string full = Path.GetFullPath(dir);
        // CreateDirectory under a regular file says only "could not find a part of the path": name the file.
        for (string? p = full; p is not null; p = Path.GetDirectoryName(p))
        {
            if (File.Exists(p)) throw Fail(option, named, $"{p} is a file, not a folder");
            if (Directory.Exists(p)) break;
        }
        try
        {
            Directory.CreateDirectory(full);
            string probe = Path.Combine(full, $".scratchnet-write-test-{Guid.NewGuid():N}");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail(option, named, OutputFileException.Reason(e), e);
        }
    }

    static OutputFileException Fail(string option, string path, string why, Exception? inner = null) =>
        new($"{option} {path}", $"cannot write there: {why}", inner);
}
