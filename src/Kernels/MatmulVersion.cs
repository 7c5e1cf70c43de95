namespace ScratchNet.Kernels;

/// <summary>The matmul versions in <see cref="MatmulKernels"/>, for --matmul.</summary>
public enum MatmulVersion
{
    /// <summary>One output per loop iteration.</summary>
    Naive,
    /// <summary>4x4 register tiles, no barriers: the CPU accelerator's default.</summary>
    Blocked,
    /// <summary>16x16 shared-memory tiles with barriers: the GPUs' default.</summary>
    Tiled,
}
