using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>Picks the backend for a device: the host backend for --device host, the ILGPU kernels otherwise.</summary>
public static class Backends
{
    public static IBackend For(ComputeDevice device) =>
        device.Kind == DeviceKind.Host ? new HostBackend() : IlgpuBackend.For(device.Accelerator);
}
