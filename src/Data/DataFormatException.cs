namespace ScratchNet.Data;

/// <summary>
/// A data file is not what it claims to be. The message always names the file and, where one applies,
/// the byte offset of the problem, so a user can look at it with a hex viewer.
/// </summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string path, long? offset, string problem)
        : base(offset is null ? $"{path}: {problem}" : $"{path}: at byte offset {offset}: {problem}")
    {
        Path = path;
        Offset = offset;
    }

    public string Path { get; }
    public long? Offset { get; }
}
