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

/// <summary>The device asked for is not on this machine: not a command-line mistake (exit 1, not 2).</summary>
public sealed class DeviceUnavailableException(string message) : Exception(message);

/// <summary>
/// An ILGPU context plus the one accelerator we train on. <see cref="Create"/> implements
/// <c>--device auto|cuda|opencl|cpu|host</c>: auto takes CUDA, then a usable OpenCL GPU, then the host
/// backend, and <see cref="Description"/> says which and why.
/// </summary>
public sealed class ComputeDevice : IDisposable
{
    /// <summary>Every --device choice and what it means: the one source for parsing, help and errors.</summary>
    public static readonly (string Name, string Help)[] ChoiceTable =
    [
        ("auto", "the default: CUDA, then an OpenCL GPU, else the host backend"),
        ("cuda", "an NVIDIA GPU through CUDA"),
        ("opencl", "the first usable OpenCL device (AMD, Intel, PoCL)"),
        ("cpu", "ILGPU's CPU accelerator: the GPU kernels on CPU threads (slow, steppable)"),
        ("host", "the host backend: SIMD C# on every core (fast without a GPU)"),
    ];

    public static readonly string[] Choices = [.. ChoiceTable.Select(c => c.Name)];

    /// <summary>"auto|cuda|opencl|cpu|host", for usage lines.</summary>
    public static string ChoiceList => string.Join("|", Choices);

    /// <summary>The --device option's help: one line per choice.</summary>
    public static string ChoiceHelp => string.Join("\n", ChoiceTable.Select(c => $"{c.Name,-7} {c.Help}"));

    /// <summary>
    /// The CPU accelerator's shape: 2 threads per warp, 1 warp per group, 1 "multiprocessor". Each ILGPU
    /// thread is an OS thread, so this is one thread per core of a 2-core machine. Measured here on
    /// (64x784)·(784x128): 2x1x2 (4 threads) was no faster for matmul and its launches cost 260 µs
    /// against 170 µs; presets such as CPUDevice.Nvidia start over a thousand OS threads (see DESIGN.md).
    /// </summary>
    public static CPUDevice CpuShape => new(numThreadsPerWarp: 2, numWarpsPerMultiprocessor: 1, numMultiprocessors: 1);

    ComputeDevice(Context context, Accelerator accelerator, DeviceKind kind, string label, string reason)
    {
        Context = context;
        Accelerator = accelerator;
        Kind = kind;
        Label = label;
        Reason = reason;
    }

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public DeviceKind Kind { get; }
    public string Name => Accelerator.Name;
    /// <summary>What was chosen, e.g. "host backend (SIMD C# on every core)" or "CUDA, NVIDIA H100".</summary>
    public string Label { get; }
    /// <summary>Why --device auto chose it ("auto: first CUDA device"); empty when the device was named.</summary>
    public string Reason { get; }
    /// <summary>One line for the user: "device: " the label and, for auto, why.</summary>
    public string Description => $"device: {Label}" + (Reason.Length > 0 ? $" ({Reason})" : "");

    /// <summary>Creates the device for a --device choice. Throws ArgumentException for an unknown name, DeviceUnavailableException for a device that is not there.</summary>
    public static ComputeDevice Create(string choice)
    {
        InstallNativeResolver();
        choice = choice.Trim().ToLowerInvariant();
        if (!Choices.Contains(choice))
            throw new ArgumentException($"--device: unknown device '{choice}'; choose one of: {string.Join(", ", Choices)}");
        Context context = CreateContext(cuda: choice is "auto" or "cuda", openCL: choice is "auto" or "opencl", cpu: choice is "auto" or "cpu" or "host");
        try
        {
            Device? cudaDevice = context.Devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.Cuda);
            Device? clDevice = context.Devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.OpenCL);
            Device cpuDevice() => context.Devices.First(d => d.AcceleratorType == AcceleratorType.CPU);
            if (choice == "auto")
            {
                var found = context.Devices.Select(d => new FoundDevice(d.AcceleratorType, d is CLDevice cl && cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_CPU)).ToList();
                var (index, autoKind, reason) = ChooseAuto(found);
                Device chosen = index is int i ? context.Devices[i] : cpuDevice();
                return Open(context, chosen, autoKind, reason);
            }
            (Device device, DeviceKind kind, string why) = choice switch
            {
                "cuda" => (cudaDevice ?? throw new DeviceUnavailableException("--device cuda: no CUDA device found (is the NVIDIA driver installed? 'scratchnet devices' lists what was seen)"), DeviceKind.Cuda, ""),
                "opencl" => (clDevice ?? throw new DeviceUnavailableException("--device opencl: no usable OpenCL device found (ILGPU needs OpenCL 2.0, or 3.0 with generic address space; 'scratchnet devices' lists what was seen)"), DeviceKind.OpenCL, ""),
                "cpu" => (cpuDevice(), DeviceKind.Cpu, ""),
                "host" => (cpuDevice(), DeviceKind.Host, ""),
                _ => throw new ArgumentOutOfRangeException(nameof(choice)),
            };
            return Open(context, device, kind, why);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>What ILGPU found, as much as --device auto needs to know of it.</summary>
    public sealed record FoundDevice(AcceleratorType Type, bool IsOpenCLCpu);

    /// <summary>
    /// --device auto: the first CUDA device, else the first OpenCL GPU, else the host backend (index null).
    /// An OpenCL CPU device (PoCL, Intel's CPU runtime) is never taken: on a CPU the host backend is faster,
    /// and a CPU OpenCL runtime can abort the whole process (PoCL under a low ulimit -v); --device opencl
    /// still uses one. Not ILGPU's "preferred device", which picks the most memory and so a CPU runtime
    /// over a real GPU.
    /// </summary>
    public static (int? Index, DeviceKind Kind, string Reason) ChooseAuto(IReadOnlyList<FoundDevice> found)
    {
        int cuda = IndexOf(found, d => d.Type == AcceleratorType.Cuda);
        if (cuda >= 0) return (cuda, DeviceKind.Cuda, "auto: first CUDA device");
        int gpu = IndexOf(found, d => d.Type == AcceleratorType.OpenCL && !d.IsOpenCLCpu);
        if (gpu >= 0) return (gpu, DeviceKind.OpenCL, "auto: no CUDA device; first OpenCL GPU");
        bool clCpu = found.Any(d => d.Type == AcceleratorType.OpenCL && d.IsOpenCLCpu);
        return (null, DeviceKind.Host, clCpu
            ? "auto: no CUDA device or OpenCL GPU; an OpenCL CPU device is used only with --device opencl"
            : "auto: no CUDA or usable OpenCL GPU; --device cpu runs the ILGPU kernels on the CPU accelerator instead");
    }

    static int IndexOf(IReadOnlyList<FoundDevice> found, Func<FoundDevice, bool> match)
    {
        for (int i = 0; i < found.Count; i++)
            if (match(found[i])) return i;
        return -1;
    }

    /// <summary>Creates the accelerator for the chosen device; the label says what it is, `why` why auto chose it.</summary>
    static ComputeDevice Open(Context context, Device device, DeviceKind kind, string why)
    {
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
        return new ComputeDevice(context, accelerator, kind, label + name, why);
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

    /// <summary>An OpenCL device that is a CPU (PoCL): its kernels run on this machine's cores.</summary>
    public bool IsOpenCLCpu => Accelerator is CLAccelerator cl && cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_CPU;

    /// <summary>OpenCL: the largest single buffer the device advertises (CL_DEVICE_MAX_MEM_ALLOC_SIZE); null elsewhere.</summary>
    public long? MaxBufferBytes => Accelerator is CLAccelerator cl ? DeviceCatalog.MaxAllocation(cl.Device) : null;

    /// <summary>The device's own memory size in bytes where it reports one; null for the CPU accelerator.</summary>
    public long? TotalMemory => Kind is DeviceKind.Cpu or DeviceKind.Host ? null : Accelerator.MemorySize;

    /// <summary>
    /// What the driver says is free on the device right now, and where that figure comes from: cudaMemGetInfo on CUDA
    /// (as llm.c prints it), AMD's free-memory query on an AMD OpenCL device; null elsewhere (the CPU accelerator and
    /// the host backend use host memory; other OpenCL drivers, PoCL among them, do not report free memory).
    /// </summary>
    public (long Free, string Source)? DriverFreeMemory()
    {
        if (CudaMemoryInfo() is (long free, _)) return (free, "cudaMemGetInfo");
        if (Accelerator is CLAccelerator cl && DeviceCatalog.AmdFreeMemoryBytes((CLDevice)cl.Device) is long amd) return (amd, "CL_DEVICE_GLOBAL_FREE_MEMORY_AMD");
        return null;
    }

    /// <summary>Why <see cref="DriverFreeMemory"/> has no figure on this device.</summary>
    public string NoDriverMemoryReason => Kind switch
    {
        DeviceKind.Cpu or DeviceKind.Host => "the CPU accelerator and the host backend keep their buffers in host memory; no driver counts them",
        DeviceKind.OpenCL => "this OpenCL driver does not report free memory (only AMD's do, through cl_amd_device_attribute_query)",
        _ => "the driver did not say",
    };

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
    /// ILGPU loads OpenCL as "OpenCL" (libOpenCL.so) and CUDA's driver as "cuda" (libcuda.so). Debian and Ubuntu
    /// ship only libOpenCL.so.1 unless a -dev package is installed, and GPU machines often have only
    /// libcuda.so.1: then ILGPU silently sees no device at all. Map both names once, before the first ILGPU call.
    /// </summary>
    public static void InstallNativeResolver()
    {
        if (Interlocked.Exchange(ref _resolverInstalled, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, static (name, assembly, path) =>
        {
            if (!OperatingSystem.IsLinux()) return IntPtr.Zero;
            foreach (string candidate in NativeCandidates(name))
            {
                if (NativeLibrary.TryLoad(candidate, assembly, path, out IntPtr handle)) return handle;
            }
            return IntPtr.Zero;
        });
    }

    /// <summary>The Linux file names to try for a library ILGPU imports by `name` (none: .NET's own probing).</summary>
    public static string[] NativeCandidates(string name) => name switch
    {
        "OpenCL" => ["libOpenCL.so", "libOpenCL.so.1"],
        "cuda" => ["libcuda.so", "libcuda.so.1"],
        _ => [],
    };

    public void Dispose()
    {
        Accelerator.Dispose();
        Context.Dispose();
    }
}
