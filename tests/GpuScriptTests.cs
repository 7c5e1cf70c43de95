using System.Diagnostics;
using NUnit.Framework;

namespace ScratchNet.Tests;

/// <summary>
/// scripts/gpu-run.sh, checked here: `pack` publishes and packs ScratchNet well under the 64 MiB a device
/// call carries, and `run ... cpu` unpacks it in a fresh folder and runs every step on the CPU accelerator.
/// </summary>
[TestFixture]
public sealed class GpuScriptTests
{
    static (int Code, string Output) Bash(string workDir, string script, params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(script);
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["QUICK"] = "1";
        psi.Environment.Remove("OUT");
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        Assert.That(p.WaitForExit(900_000), "finished within 15 minutes");
        return (p.ExitCode, output + err.Result);
    }

    [Test]
    public void PackThenRunOnTheCpu_Works()
    {
        Requires.Xz();
        string root = TestData.RepoRoot();
        string outDir = TestData.NewFolder();
        var pack = Bash(root, "scripts/gpu-run.sh", "pack", outDir);
        Assert.That(pack.Code, Is.Zero, pack.Output);
        string tarball = Path.Combine(outDir, "scratchnet-gpu.tar.xz");
        long size = new FileInfo(tarball).Length;
        Assert.That(size, Is.LessThan(40L * 1024 * 1024), "well under the 64 MiB a device call carries");

        string there = TestData.NewFolder();
        var run = Bash(there, Path.Combine(root, "scripts/gpu-run.sh"), "run", tarball, "cpu");
        Assert.That(run.Code, Is.Zero, run.Output);
        string log = File.ReadAllText(Path.Combine(there, "gpu-results", "gpu-run.log"));
        Assert.That(log, Does.Contain("Accelerators ScratchNet can use:"));
        Assert.That(log, Does.Contain("selftest passed: all 44 checks"));
        Assert.That(log, Does.Contain("matmul forward x·W^T"));
        Assert.That(log, Does.Contain("largest batch size: 1195"));
        Assert.That(log, Does.Contain("--release-cache (torch.cuda.empty_cache)"), "the caching allocator with eager lifetimes ran");
        Assert.That(log, Does.Contain("driver: no figure"));
        Assert.That(File.ReadAllText(Path.Combine(there, "gpu-results", "compare.tsv")), Does.Match(@"scratchnet\tmlp\t1024\t1\t[\d.]+ 0\.\d+"));
        TestContext.Progress.WriteLine($"gpu package: {size:N0} bytes");
    }
}
