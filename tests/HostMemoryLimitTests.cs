using System.Diagnostics;
using NUnit.Framework;

namespace ScratchNet.Tests;

/// <summary>
/// Under a low address-space limit (`ulimit -v`) training either works or ends with the one-line memory
/// error: never "internal error", never the runtime's own abort ("Out of memory.", exit 134).
/// </summary>
[TestFixture]
public sealed class HostMemoryLimitTests
{
    // ulimit -v 3000000 is left out: there .NET itself fails to start in about 1 of 30 runs on this machine
    // ("Out of memory.", exit 134, before Main), which no code of ours can catch; the other runs give the
    // one-line error. 2000000 trains (or gives the error) every time.
    [TestCase(2_000_000, "host")]
    [TestCase(2_000_000, "cpu")]
    public void Train_UnderUlimitV_WorksOrGivesTheMemoryError(int kib, string device)
    {
        // The program as it is built and shipped (src/Cli's output), not the copy in the test folder, whose
        // larger set of assemblies makes .NET itself occasionally fail to start under this limit.
        string config = Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(typeof(Cli.Cli).Assembly.Location))!)!;
        string dll = Path.Combine(TestData.RepoRoot(), "src", "Cli", "bin", config, "net10.0", "scratchnet.dll");
        Assert.That(File.Exists(dll), dll);
        var psi = new ProcessStartInfo("bash", ["-c", $"ulimit -v {kib} && exec dotnet \"$0\" train --device {device} --data \"$1\"", dll, TestData.EmbeddedFolder()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        Assert.That(p.WaitForExit(120_000), "finished");
        Assert.That(p.ExitCode, Is.Zero.Or.EqualTo(1), stderr);
        if (p.ExitCode == 0)
        {
            Assert.That(stdout.Result, Does.Contain("epoch 1/1"));
        }
        else
        {
            Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), stderr);
            Assert.That(stderr, Does.StartWith("error: out of host memory").Or.StartWith("error: out of device memory"));
            Assert.That(stderr, Does.Contain("ulimit -v").Or.Contain("host memory"));
        }
    }
}
