using System.Text.Json;
using NUnit.Framework;
using ScratchNet.Kernels;

namespace ScratchNet.Tests;

/// <summary>The bench's roofline: the machine's measured limits, the bound each row is held against, and the % column.</summary>
[TestFixture]
public sealed class RooflineTests
{
    /// <summary>One bench run for both bench tests (a whole bench in a Debug build takes seconds).</summary>
    static readonly Lazy<CliRunner.Result> Bench = new(() => CliRunner.Run("bench", "--device", "host", "--repeats", "3", "--steps", "3", "--json"));

    static readonly Roofline.Limits Made = new([(128, 50), (256, 100)], L2GBs: 100, L3GBs: 50, DramGBs: 10, L2Bytes: 1 << 20, Cores: 2);

    [TestCase(1 << 20, 100.0, "L2")]
    [TestCase(2 << 20, 100.0, "L2")]
    [TestCase(3 << 20, 75.0, "L2+L3")]                 // 3 MiB / (2 MiB / 100 + 1 MiB / 50)
    [TestCase(20 << 20, 20.0 / 0.70, "L2+L3+DRAM")]     // 20 MiB / (2 / 100 + 14 / 50 + 4 / 10)
    public void BandwidthFor_TakesEachLevelForWhatItHolds(long bytes, double gbs, string level)
    {
        var (rate, where) = Made.BandwidthFor(bytes);
        Assert.That(rate, Is.EqualTo(gbs).Within(1e-9));
        Assert.That(where, Is.EqualTo(level));
        Assert.That(Made.PeakGflops, Is.EqualTo(100));
    }

    [Test]
    public void Bench_MeasuresTheRoofline_AndPutsEveryRateAgainstItsBound()
    {
        var r = Bench.Value;
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var roof = doc.RootElement.GetProperty("roofline");
        Assert.That(roof.GetProperty("appliesToDevice").GetBoolean(), Is.True);
        var fma = roof.GetProperty("fma").EnumerateArray().ToList();
        Assert.That(fma, Is.Not.Empty);
        Assert.That(fma.All(f => f.GetProperty("gflops").GetDouble() > 1), Is.True);
        Assert.That(roof.GetProperty("peakGflops").GetDouble(), Is.EqualTo(fma.Max(f => f.GetProperty("gflops").GetDouble())));
        // Rates only, no comparison between them: this is a Debug build on a shared machine (a timing is no test).
        foreach (string level in new[] { "l2GBs", "l3GBs", "dramGBs" }) Assert.That(roof.GetProperty(level).GetDouble(), Is.GreaterThan(0), level);
        foreach (var row in doc.RootElement.GetProperty("rows").EnumerateArray())
        {
            string unit = row.GetProperty("unit").GetString()!;
            Assert.That(row.GetProperty("minMs").GetDouble(), Is.LessThanOrEqualTo(row.GetProperty("medianMs").GetDouble()));
            Assert.That(row.GetProperty("maxMs").GetDouble(), Is.GreaterThanOrEqualTo(row.GetProperty("medianMs").GetDouble()));
            if (unit == "samples/s")
            {
                Assert.That(row.GetProperty("percent").ValueKind, Is.EqualTo(JsonValueKind.Null));
                continue;
            }
            double expected = unit == "GFLOP/s" ? 100 * row.GetProperty("rate").GetDouble() / roof.GetProperty("peakGflops").GetDouble() : double.NaN;
            Assert.That(row.GetProperty("percent").GetDouble(), Is.GreaterThan(0));
            if (unit == "GFLOP/s") Assert.That(row.GetProperty("percent").GetDouble(), Is.EqualTo(expected).Within(1e-9));
            Assert.That(row.GetProperty("bound").GetString(), Is.EqualTo("FMA peak").Or.Contains("L2").Or.Contains("DRAM").Or.Contains("L3"));
        }
    }

    [Test]
    public void Bench_BreaksTheStepIntoItsParts_InStepOrder()
    {
        var r = Bench.Value;
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var breakdown = doc.RootElement.GetProperty("stepBreakdowns").EnumerateArray().Single();
        Assert.That(breakdown.GetProperty("title").GetString(), Does.StartWith("784-128-10 Adam, batch 64"));
        Assert.That(breakdown.GetProperty("steps").GetInt32(), Is.EqualTo(3));
        var parts = breakdown.GetProperty("parts").EnumerateArray().ToList();
        Assert.That(parts.Select(p => p.GetProperty("name").GetString()), Is.EqualTo(new[]
        {
            "fill batch (host)", "upload", "flatten forward", "fc1 forward", "relu1 forward", "fc2 forward", "loss",
            "fc2 backward", "relu1 backward", "fc1 backward", "update", "readback",
        }));
        // The sum is of the parts' medians, each part's share is of that sum; timings themselves are not compared (a Debug build on a shared machine).
        Assert.That(breakdown.GetProperty("sumUs").GetDouble(), Is.EqualTo(parts.Sum(p => p.GetProperty("medianUs").GetDouble())).Within(1e-6));
        Assert.That(parts.Sum(p => p.GetProperty("share").GetDouble()), Is.EqualTo(100).Within(1e-6));
        Assert.That(breakdown.GetProperty("unclockedUs").GetDouble(), Is.GreaterThan(0));
        foreach (var p in parts)
        {
            Assert.That(p.GetProperty("minUs").GetDouble(), Is.LessThanOrEqualTo(p.GetProperty("medianUs").GetDouble()));
            Assert.That(p.GetProperty("maxUs").GetDouble(), Is.GreaterThanOrEqualTo(p.GetProperty("medianUs").GetDouble()));
        }
        // fc1's product (64 x 128 x 784 multiply-adds) is split between the cores: one fork/join a step, where there are two cores.
        double fc1 = parts.Single(p => p.GetProperty("name").GetString() == "fc1 forward").GetProperty("forkJoinsPerStep").GetDouble();
        Assert.That(fc1, Is.EqualTo(HostParallel.Cores > 1 ? 1 : 0));
        Assert.That(parts.Single(p => p.GetProperty("name").GetString() == "loss").GetProperty("forkJoinsPerStep").GetDouble(), Is.Zero);
    }
}
