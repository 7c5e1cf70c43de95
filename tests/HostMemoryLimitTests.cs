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
    [TestCase(2_000_000, "host")]
    [TestCase(2_000_000, "cpu")]
    [TestCase(3_000_000, "host")]
    [TestCase(3_000_000, "cpu")]
    public void Train_UnderUlimitV_WorksOrGivesTheMemoryError(int kib, string device)
    {
        string dll = typeof(Cli.Cli).Assembly.Location;
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
