using ILGPU.Runtime;
using NUnit.Framework;
using ScratchNet.Tensor;
using static ScratchNet.Tensor.ComputeDevice;

namespace ScratchNet.Tests;

/// <summary>--device auto on device lists built here, not only on what this machine has.</summary>
[TestFixture]
public sealed class DeviceChoiceTests
{
    static readonly FoundDevice Cuda = new(AcceleratorType.Cuda, false);
    static readonly FoundDevice OpenCLGpu = new(AcceleratorType.OpenCL, false);
    static readonly FoundDevice OpenCLCpu = new(AcceleratorType.OpenCL, true);
    static readonly FoundDevice Cpu = new(AcceleratorType.CPU, false);

    [Test]
    public void Auto_PrefersCuda_ThenAnOpenCLGpu()
    {
        Assert.That(ChooseAuto([Cpu, OpenCLCpu, OpenCLGpu, Cuda]), Is.EqualTo(((int?)3, DeviceKind.Cuda, "auto: first CUDA device")));
        Assert.That(ChooseAuto([OpenCLCpu, Cpu, OpenCLGpu]), Is.EqualTo(((int?)2, DeviceKind.OpenCL, "auto: no CUDA device; first OpenCL GPU")));
    }

    [Test]
    public void Auto_NeverTakesAnOpenCLCpuDevice_ButSaysWhy()
    {
        var (index, kind, reason) = ChooseAuto([OpenCLCpu, Cpu]);
        Assert.That((index, kind), Is.EqualTo(((int?)null, DeviceKind.Host)));
        Assert.That(reason, Does.Contain("an OpenCL CPU device is used only with --device opencl"));
    }

    [Test]
    public void Auto_WithNothingButTheCpu_TakesTheHostBackend()
    {
        var (index, kind, reason) = ChooseAuto([Cpu]);
        Assert.That((index, kind), Is.EqualTo(((int?)null, DeviceKind.Host)));
        Assert.That(reason, Does.StartWith("auto: no CUDA or usable OpenCL GPU"));
    }

    [TestCase("OpenCL", new[] { "libOpenCL.so", "libOpenCL.so.1" })]
    [TestCase("cuda", new[] { "libcuda.so", "libcuda.so.1" })]
    [TestCase("nvvm", new string[0])]
    public void NativeResolver_TriesTheVersionedNames_DistributionsShip(string name, string[] expected) =>
        Assert.That(NativeCandidates(name), Is.EqualTo(expected));
}
