namespace ScratchNet.Data;

/// <summary>An output file or folder cannot be written; the message names the option and the path and says why.</summary>
public sealed class OutputPathException(string message, Exception? inner = null) : Exception(message, inner);
