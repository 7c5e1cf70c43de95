using System.Runtime.InteropServices;

namespace ScratchNet.Cli;

/// <summary>
/// A process that starts with SIGINT ignored keeps it ignored: a job that a shell script starts in the background
/// (and every process that job starts, such as `dotnet test`'s children) inherits SIG_IGN, and
/// .NET's PosixSignalRegistration then never sees the signal, so `kill -INT` would do nothing. train promises that
/// SIGINT saves a checkpoint and exits 130, so it sets SIGINT back to its default action before registering.
/// </summary>
static class Signals
{
    const int SIGINT = 2;          // the same number on Linux and macOS
    const nint SIG_IGN = 1;

    /// <summary>If SIGINT is ignored, make it default (the handler registered next then receives it).</summary>
    public static unsafe void StopIgnoringSigint()
    {
        string? libc = OperatingSystem.IsLinux() ? "libc.so.6" : OperatingSystem.IsMacOS() ? "/usr/lib/libSystem.dylib" : null;
        if (libc is null || !NativeLibrary.TryLoad(libc, out nint lib) || !NativeLibrary.TryGetExport(lib, "sigaction", out nint address))
            return;
        var sigaction = (delegate* unmanaged<int, byte*, byte*, int>)address;
        // struct sigaction starts with the handler on Linux and macOS; 256 bytes hold the whole struct on both.
        byte* old = stackalloc byte[256];
        if (sigaction(SIGINT, null, old) != 0 || *(nint*)old != SIG_IGN) return;
        byte* dfl = stackalloc byte[256];
        new Span<byte>(dfl, 256).Clear();   // SIG_DFL (0), an empty mask, no flags
        sigaction(SIGINT, dfl, null);
    }
}
