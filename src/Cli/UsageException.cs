namespace ScratchNet.Cli;

/// <summary>The command line is wrong: an unknown option, a missing or bad value. Exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
