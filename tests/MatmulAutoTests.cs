using ScratchNet.Kernels;
using System.Text.RegularExpressions;
using NUnit.Framework;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>--matmul auto: every version the device has is timed on the model's shapes, the fastest is used and
/// printed with the timings, and a checkpoint keeps the choice so a resumed run is the same run.</summary>
[TestFixture]
public sealed class MatmulAutoTests
{
    [Test]
    public void Auto_TimesEveryVersionTheDeviceHas_AndTakesTheFastest()
    {
        var r = CliRunner.Run("train", "--device", "cpu", "--data", TestData.EmbeddedFolder(), "--matmul", "auto");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        var m = Regex.Match(r.Stdout, @"matmul auto: (\w+) \(naive ([\d.]+) ms, blocked ([\d.]+) ms, vector ([\d.]+) ms for one step's matmuls\)");
        Assert.That(m.Success, r.Stdout);
        Assert.That(r.Stdout, Does.Not.Contain("tiled"), "the CPU accelerator's groups are too small for the tiled kernel: not timed");
        double naive = double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        double blocked = double.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture);
        double vector = double.Parse(m.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture);
        double best = Math.Min(naive, Math.Min(blocked, vector));
        Assert.That(m.Groups[1].Value, Is.EqualTo(best == naive ? "naive" : best == blocked ? "blocked" : "vector"));
        Assert.That(r.Stdout, Does.Contain($"matmul {m.Groups[1].Value}\n"), "the optimizer line names the version used");
    }

    [Test]
    public void Checkpoint_RecordsTheVersion_AndAResumeUsesIt()
    {
        string data = TestData.EmbeddedFolder();
        string ckpt = Path.Combine(TestData.NewFolder(), "naive.ckpt");
        var first = CliRunner.Run("train", "--device", "cpu", "--data", data, "--matmul", "naive", "--save", ckpt);
        Assert.That(first.ExitCode, Is.Zero, first.Stderr);
        Assert.That(Checkpoint.Load(ckpt).Header.Matmul, Is.EqualTo("naive"));
        var resumed = CliRunner.Run("train", "--device", "cpu", "--data", data, "--resume", ckpt, "--epochs", "2", "--matmul", "auto");
        Assert.That(resumed.ExitCode, Is.Zero, resumed.Stderr);
        Assert.That(resumed.Stdout, Does.Contain("matmul naive\n").And.Not.Contain("matmul auto:"), "the recorded version, not a new choice");
        // On the host backend the ILGPU version does not apply: the host's own matmul runs.
        var host = CliRunner.Run("train", "--device", "host", "--data", data, "--resume", ckpt, "--epochs", "2");
        Assert.That(host.ExitCode, Is.Zero, host.Stderr);
        Assert.That(host.Stdout, Does.Contain("matmul " + MatmulVersions.Label(new HostBackend().DefaultMatmul)));
    }

    [Test]
    public void Json_CarriesTheTimings()
    {
        var r = CliRunner.Run("train", "--device", "cpu", "--data", TestData.EmbeddedFolder(), "--matmul", "auto", "--json");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var timings = doc.RootElement.GetProperty("matmulAuto").EnumerateArray().Select(e => e.GetProperty("version").GetString()).ToList();
        Assert.That(timings, Is.EqualTo(new[] { "naive", "blocked", "vector" }));
    }
}
