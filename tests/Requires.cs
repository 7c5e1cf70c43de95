using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Tests;

/// <summary>
/// What a test needs from outside .NET: a Debian package, found by a file it installs. When the file is missing
/// the test is skipped with the install command as the reason; with SCRATCHNET_REQUIRE_ALL=1 (.ci/run sets it)
/// it fails instead, so CI never skips.
/// </summary>
public static class Requires
{
    public const string RequireAllVariable = "SCRATCHNET_REQUIRE_ALL";

    /// <summary>The full Fashion-MNIST (60,000 + 10,000 images) in /usr/share/datasets/fashion-mnist.</summary>
    public static void FashionMnist() =>
        Package("dataset-fashion-mnist", Path.Combine(DatasetLoader.DebianFashionMnist, DatasetInfo.IdxTrainImages + ".gz"));

    /// <summary>Headless Chromium, to render the HTML memory report.</summary>
    public static void Chromium() => Package("chromium", "/usr/bin/chromium");

    /// <summary>PoCL, an OpenCL device that ILGPU cannot use (Debian 12's PoCL 3.1 lacks the generic address space).</summary>
    public static void Pocl() => Package("pocl-opencl-icd", "/etc/OpenCL/vendors/pocl.icd");

    /// <summary>xz, which scripts/gpu-run.sh packs and unpacks its tarball with.</summary>
    public static void Xz() => Package("xz-utils", "/usr/bin/xz");

    /// <summary>Skips the test (or fails it under SCRATCHNET_REQUIRE_ALL=1) unless <paramref name="probe"/> exists.</summary>
    public static void Package(string package, string probe) =>
        Package(package, probe, Environment.GetEnvironmentVariable(RequireAllVariable));

    /// <summary>The same, with the variable's value passed in (so a test can check both behaviours).</summary>
    public static void Package(string package, string probe, string? requireAll)
    {
        if (File.Exists(probe) || Directory.Exists(probe)) return;
        Skip($"needs the Debian package {package}: sudo apt-get install {package} ({probe} not found)", requireAll);
    }

    /// <summary>Skips with the reason, or fails with it under SCRATCHNET_REQUIRE_ALL=1.</summary>
    static void Skip(string reason, string? requireAll)
    {
        if (requireAll == "1") Assert.Fail($"{reason}; {RequireAllVariable}=1 turns this skip into a failure");
        Assert.Ignore(reason);
    }

    /// <summary>
    /// A usable OpenCL device (OpenCL 2.0, or 3.0 with generic address space): PoCL 6 in the Debian 13 root that
    /// scripts/opencl-root.sh makes. The OpenCL tests (category OpenCL) run there; elsewhere they skip.
    /// </summary>
    public static void UsableOpenCL(string? requireAll = null)
    {
        string? why = null;
        try
        {
            using var device = ComputeDevice.Create("opencl");
        }
        catch (DeviceUnavailableException e)
        {
            why = e.Message;
        }
        if (why is null) return;
        Skip($"needs a usable OpenCL device ({why}); run: sudo scripts/opencl-root.sh dotnet test tests/bin/Debug/net10.0/ScratchNet.Tests.dll --filter TestCategory=OpenCL",
            requireAll ?? Environment.GetEnvironmentVariable(RequireAllVariable));
    }
}
