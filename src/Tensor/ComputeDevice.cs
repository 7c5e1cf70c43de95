using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ScratchNet.Tensor;

/// <summary>Which kind of accelerator runs the training step.</summary>
public enum DeviceKind
{
    /// <summary>An NVIDIA GPU through ILGPU's CUDA backend.</summary>
    Cuda,
    /// <summary>An OpenCL 2.0+ GPU (AMD, Intel, ...) through ILGPU's OpenCL backend.</summary>
    OpenCL,
    /// <summary>ILGPU's CPU accelerator: runs the very same kernels on CPU threads; slow, but steppable.</summary>
    Cpu,
    /// <summary>The host backend: buffers from ILGPU's CPU accelerator, operations as vectorised multi-threaded C#.</summary>
    Host,
}

/// <summary>
/// An ILGPU context plus the one accelerator we train on. <see cref="Create"/> implements
/// <c>--device auto|cuda|opencl|cpu|host</c>: auto takes CUDA, then a usable OpenCL device, then the host
/// backend, and <see cref="Description"/> says which and why.
/// </summary>
public sealed class ComputeDevice : IDisposable
{
    public static readonly string[] Choices = ["auto", "cuda", "opencl", "cpu", "host"];

    /// <summary>
    /// The CPU accelerator's shape: 2 threads per warp, 1 warp per group, 1 "multiprocessor". Each ILGPU
    /// thread is an OS thread, so this is one thread per core of a 2-core machine. Measured here on
    /// (64x784)·(784x128): 2x1x2 (4 threads) was no faster for matmul and its launches cost 260 µs
    /// against 170 µs; presets such as CPUDevice.Nvidia start over a thousand OS threads (see DESIGN.md).
    /// </summary>
    public static CPUDevice CpuShape => new(numThreadsPerWarp: 2, numWarpsPerMultiprocessor: 1, numMultiprocessors: 1);

    ComputeDevice(Context context, Accelerator accelerator, DeviceKind kind, string description)
    {
        Context = context;
        Accelerator = accelerator;
        Kind = kind;
        Description = description;
    }

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public DeviceKind Kind { get; }
    public string Name => Accelerator.Name;
    /// <summary>One line for the user: what was chosen and, for auto, why.</summary>
    public string Description { get; }

    /// <summary>Creates the device for a --device choice. Throws ArgumentException for unknown names or missing devices.</summary>
    public static ComputeDevice Create(string choice)
    {
        InstallOpenCLResolver();
        choice = choice.Trim().ToLowerInvariant();
        if (!Choices.Contains(choice))
            throw new ArgumentException($"--device: unknown device '{choice}'; choose one of: {string.Join(", ", Choices)}");
        Context context = CreateContext(cuda: choice is "auto" or "cuda", openCL: choice is "auto" or "opencl", cpu: choice is "auto" or "cpu" or "host");
        try
        {
            Device? cudaDevice = context.Devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.Cuda);
            Device? clDevice = context.Devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.OpenCL);
            Device cpuDevice() => context.Devices.First(d => d.AcceleratorType == AcceleratorType.CPU);
            (Device device, DeviceKind kind, string why) = choice switch
            {
                "cuda" => (cudaDevice ?? throw new ArgumentException("--device cuda: no CUDA device found (is the NVIDIA driver installed?)"), DeviceKind.Cuda, ""),
                "opencl" => (clDevice ?? throw new ArgumentException("--device opencl: no usable OpenCL device found (ILGPU needs OpenCL 2.0, or 3.0 with generic address space; 'scratchnet devices' lists what was seen)"), DeviceKind.OpenCL, ""),
                "cpu" => (cpuDevice(), DeviceKind.Cpu, ""),
                "host" => (cpuDevice(), DeviceKind.Host, ""),
                _ when cudaDevice is not null => (cudaDevice, DeviceKind.Cuda, " (auto: first CUDA device)"),
                _ when clDevice is not null => (clDevice, DeviceKind.OpenCL, " (auto: no CUDA device; first usable OpenCL device)"),
                _ => (cpuDevice(), DeviceKind.Host, " (auto: no CUDA or usable OpenCL device; --device cpu runs the ILGPU kernels on the CPU accelerator instead)"),
            };
            Accelerator accelerator = device is CPUDevice cpu
                ? cpu.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel)
                : device.CreateAccelerator(context);
            string label = kind switch
            {
                DeviceKind.Cuda => "CUDA",
                DeviceKind.OpenCL => "OpenCL",
                DeviceKind.Host => "host backend (SIMD C# on every core)",
                _ => "ILGPU CPU accelerator",
            };
            string name = kind is DeviceKind.Cuda or DeviceKind.OpenCL ? ", " + accelerator.Name : "";
            return new ComputeDevice(context, accelerator, kind, $"device: {label}{name}{why}");
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A context with the backends asked for, ILGPU.Algorithms (XMath.Exp/Log for softmax) and the
    /// highest optimisation level (measured faster than the default on the CPU accelerator).
    /// </summary>
    public static Context CreateContext(bool cuda, bool openCL, bool cpu) => Context.Create(builder =>
    {
        if (cuda) builder.Cuda();
        if (openCL) builder.OpenCL();
        if (cpu) builder.CPU(CpuShape);
        builder.EnableAlgorithms().Optimize(OptimizationLevel.O2);
    });

    /// <summary>The device's own memory size in bytes where it reports one; null for the CPU accelerator.</summary>
    public long? TotalMemory => Kind is DeviceKind.Cpu or DeviceKind.Host ? null : Accelerator.MemorySize;

    /// <summary>CUDA only: the driver's free and total bytes right now.</summary>
    public (long Free, long Total)? CudaMemoryInfo()
    {
        if (Accelerator is not CudaAccelerator cuda) return null;
        using var scope = cuda.BindScoped();
        CudaAPI.CurrentAPI.GetMemoryInfo(out long free, out long total);
        return (free, total);
    }

    static int _resolverInstalled;

    /// <summary>
    /// ILGPU loads OpenCL as "OpenCL" (libOpenCL.so); Debian and Ubuntu ship only libOpenCL.so.1 unless a
    /// -dev package is installed, and then ILGPU silently sees no OpenCL device. Map the name once.
    /// </summary>
    public static void InstallOpenCLResolver()
    {
        if (Interlocked.Exchange(ref _resolverInstalled, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, static (name, assembly, path) =>
        {
            if (name != "OpenCL" || !OperatingSystem.IsLinux()) return IntPtr.Zero;
            foreach (string candidate in new[] { "libOpenCL.so", "libOpenCL.so.1" })
            {
                if (NativeLibrary.TryLoad(candidate, assembly, path, out IntPtr handle)) return handle;
            }
            return IntPtr.Zero;
        });
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}
