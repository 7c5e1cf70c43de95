using System.Diagnostics;
using NUnit.Framework;

namespace ScratchNet.Tests;

/// <summary>Headless Chromium for the tests of the HTML report (.ci/run installs Debian's chromium).</summary>
public static class Headless
{
    public static string RunChromium(string chromium, string dir, params string[] args)
    {
        var psi = new ProcessStartInfo(chromium)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + Path.Combine(dir, "chromium-profile") })
            psi.ArgumentList.Add(a);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.That(p.WaitForExit(90_000), "chromium finished within 90 s");
        Assert.That(p.ExitCode, Is.Zero, stderr.Result);
        return stdout.Result;
    }
}
