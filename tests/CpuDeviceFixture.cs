using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Tests;

/// <summary>One ILGPU CPU accelerator shared by all tests (creating one and compiling kernels takes a moment).</summary>
public static class Shared
{
    static readonly Lazy<ComputeDevice> Lazy = new(() => ComputeDevice.Create("cpu"));

    public static ComputeDevice Cpu => Lazy.Value;
    public static IlgpuBackend Kernels => IlgpuBackend.For(Cpu.Accelerator);

    static readonly Lazy<ComputeDevice> LazyHost = new(() => ComputeDevice.Create("host"));

    /// <summary>The host backend's device (--device host): SIMD C# over buffers of a CPU accelerator.</summary>
    public static ComputeDevice Host => LazyHost.Value;

    /// <summary>A tracker on the shared CPU device with no limit.</summary>
    public static MemoryTracker NewTracker(long? limit = null) => new(Cpu.Accelerator, limit);
}
