namespace ScratchNet.Kernels;

/// <summary>
/// The matmul versions: the ILGPU kernels in <see cref="MatmulKernels"/> (chosen with --matmul) and the host
/// backend's own. Each backend lists the ones it really has (<see cref="IBackend.MatmulVersions"/>).
/// </summary>
public enum MatmulVersion
{
    /// <summary>ILGPU kernel: one output per loop iteration.</summary>
    Naive,
    /// <summary>ILGPU kernel: 4x4 register tiles, no barriers; the CPU accelerator's default.</summary>
    Blocked,
    /// <summary>ILGPU kernel: 16x16 shared-memory tiles with barriers; the GPUs' default. Needs 256-thread groups.</summary>
    Tiled,
    /// <summary>ILGPU kernel: 8x8 register tiles read along b's rows, for drivers that vectorise work-items (PoCL).</summary>
    Vector,
    /// <summary>The host backend's matmul: SIMD C# on every core (<see cref="HostBackend"/>); not an ILGPU kernel.</summary>
    HostSimd,
    /// <summary>The host backend's matmul with 512-bit vectors where b's rows are contiguous (CPUs with AVX-512).</summary>
    HostAvx512,
}

public static class MatmulVersions
{
    /// <summary>The ILGPU kernels (--device cpu, opencl, cuda).</summary>
    public static readonly MatmulVersion[] Kernels = [MatmulVersion.Naive, MatmulVersion.Blocked, MatmulVersion.Tiled, MatmulVersion.Vector];

    /// <summary>The host backend's own (--device host).</summary>
    public static readonly MatmulVersion[] Host = [MatmulVersion.HostSimd, MatmulVersion.HostAvx512];

    /// <summary>--matmul's name: the label, with "host-simd" and "host-avx512" for the host backend's.</summary>
    public static string OptionName(MatmulVersion v) => v switch
    {
        MatmulVersion.HostSimd => "host-simd",
        MatmulVersion.HostAvx512 => "host-avx512",
        _ => Label(v),
    };

    /// <summary>The name in reports: "naive", "blocked", "tiled", "vector" (also --matmul's names) or "host SIMD".</summary>
    public static string Label(MatmulVersion v) => v switch
    {
        MatmulVersion.HostSimd => "host SIMD",
        MatmulVersion.HostAvx512 => "host AVX-512",
        _ => v.ToString().ToLowerInvariant(),
    };
}
