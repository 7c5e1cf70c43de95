using System.Text.Json;
using System.Text.RegularExpressions;
using NUnit.Framework;
using ScratchNet.Cli;
using ScratchNet.Data;
using ScratchNet.Tensor;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ScratchNet.Tests;

[TestFixture]
public sealed class MemoryCommandTests
{
    static string? _cifar;

    static string Embedded() => TestData.EmbeddedFolder();

    static string CifarFolder() => _cifar ??= TestData.WriteCifar(perBatch: 20, testCount: 10);

    static IEnumerable<TestCaseData> Cases()
    {
        foreach (string dataset in new[] { "fashion-mnist", "cifar10" })
            foreach (int batch in new[] { 1, 64, 1000 })
                foreach (string optimizer in new[] { "sgd", "momentum", "adam" })
                    yield return new TestCaseData(dataset, batch, optimizer);
    }

    [TestCaseSource(nameof(Cases))]
    public void MemoryJson_MeasuredEqualsEstimate(string dataset, int batch, string optimizer)
    {
        string data = dataset == "cifar10" ? CifarFolder() : Embedded();
        var r = CliRunner.Run("memory", "--json", "--device", "cpu", "--dataset", dataset, "--data", data,
            "--batch-size", batch.ToString(), "--optimizer", optimizer);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var probe = doc.RootElement.GetProperty("probe");
        Assert.That(probe.GetProperty("batchSize").GetInt32(), Is.EqualTo(batch));
        Assert.That(probe.GetProperty("parameters").GetInt64(), Is.EqualTo(dataset == "cifar10" ? 394_634 : 101_770));
        var categories = probe.GetProperty("categories").EnumerateArray().ToList();
        Assert.That(categories, Has.Count.EqualTo(8));
        foreach (var c in categories)
        {
            string name = c.GetProperty("category").GetString()!;
            Assert.That(c.GetProperty("live").GetInt64(), Is.EqualTo(c.GetProperty("estimate").GetInt64()), name + " live");
            Assert.That(c.GetProperty("peak").GetInt64(), Is.EqualTo(c.GetProperty("estimate").GetInt64()), name + " peak");
            Assert.That(c.GetProperty("difference").GetInt64(), Is.Zero, name);
        }
        Assert.That(probe.GetProperty("allocationsDuringSteps").GetInt64(), Is.Zero, "training steps allocate nothing");
    }

    [Test]
    public void Planner_BatchFitsUnderBudget_AndTheNextSizeFailsClearly()
    {
        var plan = CliRunner.Run("memory", "--memory-limit", "8MiB", "--budget", "0.8", "--device", "cpu", "--data", Embedded());
        Assert.That(plan.ExitCode, Is.Zero, plan.Stderr);
        var match = Regex.Match(plan.Stdout, @"largest batch size: (\d+)");
        Assert.That(match.Success, plan.Stdout);
        int b = int.Parse(match.Groups[1].Value);
        // fixed 1,628,320 B + B x 4,252 B <= 80% of 8 MiB = 6,710,886 B
        Assert.That(b, Is.EqualTo(1195));
        Assert.That(plan.Stdout, Does.Contain($"batch {b + 1} under the same limit fails"));

        var fits = CliRunner.Run("train", "--memory-limit", "6.4MiB", "--batch-size", b.ToString(), "--epochs", "1", "--device", "cpu", "--data", Embedded());
        Assert.That(fits.ExitCode, Is.Zero, fits.Stderr);
        Assert.That(fits.Stdout, Does.Contain("memory limit: 6,710,886 B"));

        var fails = CliRunner.Run("train", "--memory-limit", "6.4MiB", "--batch-size", (b + 1).ToString(), "--epochs", "1", "--device", "cpu", "--data", Embedded());
        Assert.That(fails.ExitCode, Is.EqualTo(1));
        Assert.That(fails.Stderr, Does.StartWith("error: out of device memory: allocating 4,784 B for 'predictions' [1196] (Temporary)"));
        Assert.That(fails.Stderr, Does.Contain("over the memory limit of 6,710,886 B").And.Contain("Input 3.58 MiB").And.Contain("OptimizerState 814,160 B"));
        Assert.That(fails.Stderr, Does.Contain($"the largest batch size that fits 6.40 MiB with adam is {b} (--batch-size {b})"));
        Assert.That(fails.Stderr, Does.Contain("plain SGD (--optimizer sgd) would save 814,160 B"));
        Assert.That(fails.Stderr, Does.Not.Contain("   at "), "no stack trace");
    }

    [Test]
    public void Planner_OnTheCpuAcceleratorWithoutLimit_SaysALimitIsNeeded()
    {
        var r = CliRunner.Run("memory", "--budget", "0.8", "--device", "cpu", "--data", Embedded());
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("has no device memory size").And.Contain("--memory-limit"));
    }

    [Test]
    public void BatchSizeTable_ShowsWhatScales()
    {
        var r = CliRunner.Run("memory", "--batch-sizes", "1,16,64", "--compare-optimizers", "--device", "cpu", "--data", Embedded());
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Match(@"Input\s+3,140 B=\s+50,240 B=\s+200,960 B=\s+yes"));
        Assert.That(r.Stdout, Does.Match(@"Parameter\s+407,080 B=\s+407,080 B=\s+407,080 B=\s+no"));
        Assert.That(r.Stdout, Does.Contain("sgd saves 814,160 B against adam"));
        Assert.That(r.Stdout, Does.Contain("momentum saves 407,080 B against adam"));
    }

    [Test]
    public void Trace_HasEveryAllocationAndThePhases()
    {
        string path = Path.Combine(TestData.NewFolder(), "trace.json");
        var r = CliRunner.Run("memory", "--trace", path, "--device", "cpu", "--data", Embedded());
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var events = doc.RootElement.GetProperty("events").EnumerateArray().ToList();
        var allocs = events.Where(e => e.GetProperty("kind").GetInt32() == (int)MemoryEventKind.Alloc).ToList();
        Assert.That(allocs, Has.Count.EqualTo(12));
        Assert.That(allocs.Sum(e => e.GetProperty("bytes").GetInt64()), Is.EqualTo(1_900_448));
        Assert.That(allocs[^1].GetProperty("liveAfter").GetInt64(), Is.EqualTo(1_900_448));
        Assert.That(allocs[0].GetProperty("name").GetString(), Is.EqualTo("parameters"));
        Assert.That(allocs[0].GetProperty("shape")[0].GetInt32(), Is.EqualTo(101_770));
        var phases = events.Where(e => e.GetProperty("kind").GetInt32() == (int)MemoryEventKind.Phase).Select(e => e.GetProperty("phase").GetString()).ToList();
        Assert.That(phases, Is.SupersetOf(new[] { "forward", "backward", "update" }));
        Assert.That(events.Max(e => e.GetProperty("step").GetInt32()), Is.EqualTo(2));
    }

    /// <summary>The HTML report, rendered by headless Chromium (.ci/run installs Debian's chromium).</summary>
    [Test]
    public void HtmlReport_RendersInChromium_WithChartCategoriesAndPeak()
    {
        Requires.Chromium();
        const string chromium = "/usr/bin/chromium";
        string dir = TestData.NewFolder();
        string html = Path.Combine(dir, "report.html");
        var r = CliRunner.Run("memory", "--report", html, "--device", "cpu", "--data", Embedded());
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(File.ReadAllText(html), Does.Not.Contain("http://").And.Not.Contain("https://").And.Not.Contain("<script"), "self-contained");

        string dom = Headless.RunChromium(chromium, dir, "--dump-dom", "file://" + html);
        foreach (var c in Enum.GetValues<MemoryCategory>()) Assert.That(dom, Does.Contain(c.ToString()));
        Assert.That(dom, Does.Contain("peak 1,900,448 B"));
        Assert.That(Regex.Matches(dom, "<polygon class=\"area\""), Has.Count.EqualTo(6), "one band per non-empty category");

        string png = Path.Combine(dir, "shot.png");
        Headless.RunChromium(chromium, dir, "--window-size=1100,1100", "--screenshot=" + png, "file://" + html);
        using var image = Image.Load<Rgba32>(png);
        // The chart was drawn: the Parameter, Gradient and OptimizerState bands cover many pixels.
        foreach (var c in new[] { MemoryCategory.Parameter, MemoryCategory.Gradient, MemoryCategory.OptimizerState })
        {
            var color = Color.ParseHex(HtmlReport.Colors[c]).ToPixel<Rgba32>();
            int count = 0;
            for (int y = 0; y < image.Height; y++)
                for (int x = 0; x < image.Width; x++)
                {
                    var p = image[x, y];
                    // The bands are drawn at 85% opacity on white.
                    if (Math.Abs(p.R - (0.85 * color.R + 0.15 * 255)) < 6 && Math.Abs(p.G - (0.85 * color.G + 0.15 * 255)) < 6 && Math.Abs(p.B - (0.85 * color.B + 0.15 * 255)) < 6)
                        count++;
                }
            Assert.That(count, Is.GreaterThan(5000), $"{c} band in the screenshot");
        }
    }

    [Test]
    public void Devices_ListsTheCpuAccelerator_AndPoclAsUnusable()
    {
        var r = CliRunner.Run("devices");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("ILGPU CPU accelerator"));
        Assert.That(r.Stdout, Does.Contain("Host memory: total"));
        Requires.Pocl();
        Assert.That(r.Stdout, Does.Match(@"OpenCL devices found but not usable:\s+OpenCL\s+Portable Computing Language"));
        Assert.That(r.Stdout, Does.Contain("not usable: OpenCL CL3.0 without generic address space; ILGPU needs 2.0+ or 3.0 with it"));

        var json = CliRunner.Run("devices", "--json");
        using var doc = JsonDocument.Parse(json.Stdout);
        var devices = doc.RootElement.GetProperty("devices").EnumerateArray().ToList();
        Assert.That(devices.Any(d => d.GetProperty("kind").GetString() == "CPU" && d.GetProperty("usable").GetBoolean()));
        Assert.That(devices.Any(d => d.GetProperty("kind").GetString() == "OpenCL" && !d.GetProperty("usable").GetBoolean()));
        Assert.That(doc.RootElement.GetProperty("host").GetProperty("total").GetInt64(), Is.GreaterThan(0));
    }
}
