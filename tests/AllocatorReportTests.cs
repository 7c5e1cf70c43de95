using System.Text.Json;
using System.Text.RegularExpressions;
using NUnit.Framework;
using ScratchNet.Cli;
using ScratchNet.Tensor;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ScratchNet.Tests;

/// <summary>Requested, allocated and reserved in `scratchnet memory`: its text, --json, --trace and the HTML report's segment view.</summary>
[TestFixture]
public sealed class AllocatorReportTests
{
    static string Embedded() => TestData.EmbeddedFolder();

    const string Chromium = "/usr/bin/chromium";

    [Test]
    public void Memory_WithTheCachingAllocator_PrintsAllocatedAndReserved_AndTheParameterRounding()
    {
        var r = CliRunner.Run("memory", "--device", "host", "--data", Embedded(), "--allocator", "caching");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Match(@"Parameter\s+407,080 B\s+407,552 B\s+407,552 B"));
        Assert.That(r.Stdout, Does.Match(@"OptimizerState\s+814,160 B\s+815,104 B"), "Adam's m and v: two tensors, each rounded");
        Assert.That(r.Stdout, Does.Contain("as torch.cuda.memory_allocated / memory_reserved would print them: 1,903,104 B / 2,097,152 B"));
        Assert.That(r.Stdout, Does.Contain("in 1 segment (1 small, 0 large); allocated / reserved = 90.7%"));
        Assert.That(r.Stdout, Does.Contain("PyTorch rounds each weight and bias tensor instead (40 B -> 512 B): 407,552 B, the same figure by coincidence"));
    }

    [Test]
    public void Memory_WithTheExactAllocator_SaysTheThreeFiguresAreEqual()
    {
        var r = CliRunner.Run("memory", "--device", "host", "--data", Embedded());
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("allocator: exact (each tensor is its own device buffer of exactly its size): requested = allocated = reserved = 1,900,448 B"));
    }

    [Test]
    public void MemoryJson_CarriesTheThreeFigures_PerCategoryAndInTotal()
    {
        var r = CliRunner.Run("memory", "--json", "--device", "cpu", "--data", Embedded(), "--allocator", "caching", "--model", "cnn");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var probe = doc.RootElement.GetProperty("probe");
        var a = probe.GetProperty("allocation");
        Assert.That(a.GetProperty("allocator").GetString(), Is.EqualTo("caching"));
        long requested = a.GetProperty("requested").GetInt64(), allocated = a.GetProperty("allocated").GetInt64(), reserved = a.GetProperty("reserved").GetInt64();
        Assert.That(requested, Is.EqualTo(probe.GetProperty("totalLive").GetInt64()));
        var categories = probe.GetProperty("categories").EnumerateArray().ToList();
        Assert.That(categories.Sum(c => c.GetProperty("allocated").GetInt64()), Is.EqualTo(allocated));
        Assert.That(requested, Is.LessThan(allocated));
        Assert.That(allocated, Is.LessThan(reserved));
        var segments = a.GetProperty("segments").EnumerateArray().ToList();
        Assert.That(segments.Sum(s => s.GetProperty("size").GetInt64()), Is.EqualTo(reserved));
        foreach (var s in segments)
        {
            var blocks = s.GetProperty("blocks").EnumerateArray().ToList();
            Assert.That(blocks.Sum(b => b.GetProperty("size").GetInt64()), Is.EqualTo(s.GetProperty("size").GetInt64()), "blocks tile their segment");
            Assert.That(blocks.All(b => b.GetProperty("offset").GetInt64() % 512 == 0), Is.True);
        }
        Assert.That(segments.SelectMany(s => s.GetProperty("blocks").EnumerateArray()).Where(b => b.GetProperty("inUse").GetBoolean())
            .Sum(b => b.GetProperty("requested").GetInt64()), Is.EqualTo(requested));
    }

    [Test]
    public void Trace_WithTheCachingAllocator_HasSegmentEvents_AndAllocatedAndReservedAfterEachEvent()
    {
        string path = Path.Combine(TestData.NewFolder(), "trace.json");
        var r = CliRunner.Run("memory", "--trace", path, "--device", "host", "--data", Embedded(), "--allocator", "caching");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var events = doc.RootElement.GetProperty("events").EnumerateArray().ToList();
        var segments = events.Where(e => e.GetProperty("kind").GetInt32() == (int)MemoryEventKind.SegmentAlloc).ToList();
        Assert.That(segments.Select(e => e.GetProperty("bytes").GetInt64()), Is.EqualTo(new[] { 2_097_152L }));
        var first = events.First(e => e.GetProperty("kind").GetInt32() == (int)MemoryEventKind.Alloc);
        Assert.That((first.GetProperty("name").GetString(), first.GetProperty("bytes").GetInt64(), first.GetProperty("allocated").GetInt64(),
            first.GetProperty("allocatedAfter").GetInt64(), first.GetProperty("reservedAfter").GetInt64()),
            Is.EqualTo(("parameters", 407_080L, 407_552L, 407_552L, 2_097_152L)));
    }

    [Test]
    public void Train_WithTheCachingAllocator_ReportsTheThreeFigures_InTextAndJson()
    {
        var r = CliRunner.Run("train", "--device", "host", "--data", Embedded(), "--allocator", "caching", "--json");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var a = doc.RootElement.GetProperty("memory").GetProperty("allocation");
        Assert.That((a.GetProperty("allocator").GetString(), a.GetProperty("requested").GetInt64(), a.GetProperty("allocated").GetInt64(), a.GetProperty("reserved").GetInt64()),
            Is.EqualTo(("caching", 1_900_448L, 1_903_104L, 2_097_152L)));
        var text = CliRunner.Run("train", "--device", "host", "--data", Embedded(), "--allocator", "caching");
        Assert.That(text.Stdout, Does.Contain("allocator: caching: allocated 1,903,104 B (peak 1,903,104 B), reserved 2,097,152 B (peak 2,097,152 B) in 1 segment"));
        Assert.That(text.Stdout, Does.Contain("allocations after the first training step: 0"));
    }

    [TestCase("--allocator", "pooled")]
    [TestCase("--lifetime", "lazy")]
    public void AnUnknownAllocatorOrLifetime_IsAOneLineError(string option, string value)
    {
        var r = CliRunner.Run("train", option, value);
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain(option).And.Contain(value));
    }

    [Test]
    public void Memory_RefusesToPlanWithTheCachingAllocator()
    {
        var r = CliRunner.Run("memory", "--device", "host", "--data", Embedded(), "--allocator", "caching", "--budget", "0.5");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Does.Contain("--allocator caching with --memory-limit or --budget"));
        Assert.That(r.Stderr, Does.Not.Contain("   at "));
    }

    /// <summary>The segment view, rendered by headless Chromium (.ci/run installs Debian's chromium).</summary>
    [Test]
    public void HtmlReport_ShowsEachSegmentAsABar_WithItsBlocksAndFreeSpace()
    {
        Requires.Chromium();
        string dir = TestData.NewFolder();
        string html = Path.Combine(dir, "report.html");
        var r = CliRunner.Run("memory", "--report", html, "--device", "host", "--data", Embedded(), "--allocator", "caching", "--model", "cnn");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        string dom = Headless.RunChromium(Chromium, dir, "--dump-dom", "file://" + html);
        var bars = Regex.Matches(dom, "<g class=\"segment\" data-segment=\"(\\d+)\" data-size=\"(\\d+)\"");
        Assert.That(bars, Has.Count.EqualTo(4), "the conv net at batch 64: two 2 MiB and two 20 MiB segments");
        Assert.That(bars.Sum(m => long.Parse(m.Groups[2].Value)), Is.EqualTo(2 * 2_097_152L + 2 * 20_971_520L));
        Assert.That(Regex.Matches(dom, "<rect class=\"block\" data-category=\"Activation\""), Has.Count.GreaterThan(3));
        Assert.That(Regex.Matches(dom, "<rect class=\"free\""), Has.Count.EqualTo(3), "three of the four segments have cached free space (the second is full)");
        Assert.That(dom, Does.Contain("Allocator: caching. Requested 33,765,344 B"));

        string png = Path.Combine(dir, "shot.png");
        Headless.RunChromium(Chromium, dir, "--window-size=1000,2800", "--screenshot=" + png, "file://" + html);
        using var image = Image.Load<Rgba32>(png);
        // Blocks are opaque (the chart's bands are drawn at 85%): count pixels of the exact colours.
        int Pixels(string hex)
        {
            var c = Color.ParseHex(hex).ToPixel<Rgba32>();
            int n = 0;
            for (int y = 0; y < image.Height; y++)
                for (int x = 0; x < image.Width; x++)
                {
                    var p = image[x, y];
                    if (Math.Abs(p.R - c.R) < 3 && Math.Abs(p.G - c.G) < 3 && Math.Abs(p.B - c.B) < 3) n++;
                }
            return n;
        }
        Assert.That(Pixels(HtmlReport.Colors[MemoryCategory.Activation]), Is.GreaterThan(5000), "activation blocks drawn");
        Assert.That(Pixels(HtmlReport.FreeColor), Is.GreaterThan(5000), "free space drawn");
    }
}

/// <summary>The driver's own figure beside the tracker's (issue: CUDA on a GPU): where it comes from, and the difference explained.</summary>
[TestFixture]
public sealed class DriverBytesTests
{
    [Test]
    public void OnTheHost_ThereIsNoDriverFigure_AndTheReportSaysWhy()
    {
        var probe = ScratchNet.Training.MemoryProbe.Run(Shared.Host, new ScratchNet.Training.TrainConfig(), ScratchNet.Data.DatasetLoader.LoadEmbedded(null));
        Assert.That(probe.DriverBytes, Is.Null);
        Assert.That(probe.DriverLine(), Is.EqualTo("driver: no figure (the CPU accelerator and the host backend keep their buffers in host memory; no driver counts them)"));
        Assert.That(Shared.Host.DriverFreeMemory(), Is.Null);
    }

    [TestCase(AllocatorKind.Exact, 4_194_304L, "1,900,448 B, so the driver counts 2,293,856 B more")]
    [TestCase(AllocatorKind.Caching, 2_097_152L, "2,097,152 B reserved, so the driver counts 0 B more")]
    [TestCase(AllocatorKind.Exact, 1_000_000L, "1,900,448 B, so the driver counts 900,448 B less")]
    public void WithADriverFigure_TheLineComparesItWithTheTrackersBuffers(AllocatorKind allocator, long driver, string expected)
    {
        var probe = ScratchNet.Training.MemoryProbe.Run(Shared.Host, new ScratchNet.Training.TrainConfig { Allocator = allocator }, ScratchNet.Data.DatasetLoader.LoadEmbedded(null));
        string line = (probe with { DriverBytes = driver, DriverSource = "cudaMemGetInfo" }).DriverLine();
        Assert.That(line, Does.StartWith($"driver (cudaMemGetInfo, free before the model minus free after the steps): {driver:N0} B; the tracker's device buffers: {expected}."));
        Assert.That(line, Does.Contain("2 MiB pages"));
    }
}
