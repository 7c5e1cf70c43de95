namespace ScratchNet.Data;

/// <summary>
/// A file or folder we were asked to write cannot be written (or must not be replaced). The message names
/// the path and the reason; the CLI prints it as one line and exits with 1.
/// </summary>
public sealed class OutputFileException(string path, string problem, Exception? inner = null)
    : Exception($"{(path.Length == 0 ? "\"\"" : path)}: {problem}", inner)
{
    public string Path { get; } = path;

    /// <summary>The reason an IO failure gives, without .NET's repetition of the path.</summary>
    public static string Reason(Exception e) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        DirectoryNotFoundException => "its folder does not exist",
        FileNotFoundException => "no file can be created in that folder",
        PathTooLongException => "the path is too long",
        IOException io when io.HResult == 28 || io.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase) => "no space left on the device",
        _ => e.Message,
    };
}
