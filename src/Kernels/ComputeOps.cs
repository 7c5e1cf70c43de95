using ScratchNet.Tensor;

namespace ScratchNet.Kernels;

/// <summary>Picks what runs a device's operations: the host backend for --device host, ILGPU kernels otherwise.</summary>
public static class ComputeOps
{
    public static IComputeOps For(ComputeDevice device) =>
        device.Kind == DeviceKind.Host ? new HostKernels() : DeviceKernels.For(device.Accelerator);
}
