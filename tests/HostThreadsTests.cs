using System.Diagnostics;
using NUnit.Framework;
using ScratchNet.Kernels;

namespace ScratchNet.Tests;

/// <summary>SCRATCHNET_THREADS: how many cores the host backend uses, checked before anything runs; results do not depend on it.</summary>
public class HostThreadsTests
{
    [TestCase(null, 2)]
    [TestCase("", 2)]
    [TestCase("1", 1)]
    [TestCase("3", 3)]
    [TestCase("1024", 1024)]
    public void ParseThreads_AcceptsWholeNumbers(string? value, int expected)
    {
        Assert.That(HostParallel.ParseThreads(value, 2, out string? error), Is.EqualTo(expected));
        Assert.That(error, Is.Null);
    }

    [TestCase("0")]
    [TestCase("-1")]
    [TestCase("1025")]
    [TestCase("two")]
    [TestCase("1.5")]
    [TestCase(" 2")]
    [TestCase("+2")]
    public void ParseThreads_RefusesAnythingElse_NamingTheVariableAndValue(string value)
    {
        Assert.That(HostParallel.ParseThreads(value, 2, out string? error), Is.EqualTo(2));
        Assert.That(error, Is.EqualTo($"SCRATCHNET_THREADS must be a whole number of cores from 1 to 1024, not '{value}'"));
    }

    static (int Code, string Stdout, string Stderr) RunScratchnet(string? threads, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(typeof(Cli.Cli).Assembly.Location);
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["SCRATCHNET_THREADS"] = threads;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr);
    }

    [Test]
    public void Cli_WithABadValue_StopsWithOneLine()
    {
        var (code, stdout, stderr) = RunScratchnet("lots", "devices");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Is.EqualTo("error: SCRATCHNET_THREADS must be a whole number of cores from 1 to 1024, not 'lots'\n"));
        Assert.That(stdout, Is.Empty);
    }

    /// <summary>The host conv splits work by images and channels; every output is the same chain of multiply-adds
    /// whichever core computes it, so one core and three give the same epoch line, digit for digit.</summary>
    [Test]
    public void Training_OnOneCoreAndOnThree_GivesTheSameEpochLine()
    {
        string[] args = ["train", "--device", "host", "--layers", "conv3x3:8,relu,maxpool2,conv3x3:16,relu,maxpool2,flatten,linear:10",
            "--data", TestData.EmbeddedFolder(), "--epochs", "1", "--json"];
        string Line(string threads)
        {
            var (code, stdout, stderr) = RunScratchnet(threads, args);
            Assert.That(code, Is.Zero, stderr);
            var r = System.Text.Json.JsonDocument.Parse(stdout).RootElement.GetProperty("results")[0];
            return $"{r.GetProperty("loss").GetDouble():R} {r.GetProperty("trainAccuracy").GetDouble():R} {r.GetProperty("testAccuracy").GetDouble():R}";
        }
        Assert.That(Line("3"), Is.EqualTo(Line("1")));
    }
}
