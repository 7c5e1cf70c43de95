using ILGPU;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ScratchNet.Tensor;

/// <summary>One accelerator as `scratchnet devices` shows it.</summary>
public sealed record DeviceEntry(string Kind, string Name, bool Usable, string? Reason, long? TotalMemory, long? FreeMemory,
    long? MaxBufferBytes, int WarpSize, int MaxGroupSize, int Multiprocessors, string? Version)
{
    /// <summary>
    /// The --precision values training runs in on it: all three on every usable device, since fp16 and bf16 are stored as
    /// 16-bit patterns and computed in float32 (no half arithmetic, so no cl_khr_fp16, is needed); none where it is not usable.
    /// </summary>
    public string[] Precisions => Usable ? ["fp32", "fp16", "bf16"] : [];
}

/// <summary>Host memory from /proc/meminfo (Linux) or the GC's view elsewhere.</summary>
public sealed record HostMemory(long Total, long Available, string Source);

/// <summary>
/// Everything ILGPU can see on this machine, including the OpenCL devices it would silently skip,
/// each with the reason (ILGPU needs OpenCL C 2.0, or 3.0 with the generic address space).
/// </summary>
public static class DeviceCatalog
{
    public static List<DeviceEntry> List()
    {
        ComputeDevice.InstallNativeResolver();
        var entries = new List<DeviceEntry>();
        using (Context context = ComputeDevice.CreateContext(cuda: true, openCL: false, cpu: true))
        {
            foreach (Device d in context.Devices)
            {
                if (d.AcceleratorType == AcceleratorType.Cuda)
                {
                    long? free = null;
                    try
                    {
                        using var acc = d.CreateAccelerator(context);
                        using var scope = acc.BindScoped();
                        CudaAPI.CurrentAPI.GetMemoryInfo(out long f, out long _);
                        free = f;
                    }
                    catch (Exception e) when (e is AcceleratorException or InvalidOperationException or DllNotFoundException)
                    {
                        // free memory stays unknown
                    }
                    entries.Add(new DeviceEntry("CUDA", d.Name, true, null, d.MemorySize, free, null, d.WarpSize, d.MaxNumThreadsPerGroup, d.NumMultiprocessors, null));
                }
                else if (d.AcceleratorType == AcceleratorType.CPU)
                {
                    entries.Add(new DeviceEntry("CPU", "ILGPU CPU accelerator (" + d.Name + ")", true,
                        null, null, null, null, d.WarpSize, d.MaxNumThreadsPerGroup, d.NumMultiprocessors, null));
                }
            }
        }
        entries.AddRange(ListOpenCL());
        return entries;
    }

    /// <summary>Every OpenCL device the driver reports, usable or not.</summary>
    static IEnumerable<DeviceEntry> ListOpenCL()
    {
        var result = new List<DeviceEntry>();
        try
        {
            foreach (CLDevice d in CLDevice.GetDevices(_ => true).OfType<CLDevice>())
            {
                string? reason = UnusableReason(d);
                result.Add(new DeviceEntry("OpenCL", $"{d.PlatformName}: {d.Name}", reason is null, reason, d.MemorySize, null,
                    MaxAllocation(d), d.WarpSize, d.MaxNumThreadsPerGroup, d.NumMultiprocessors,
                    $"{d.DeviceVersion} (OpenCL C {d.CLStdVersion})"));
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or AcceleratorException)
        {
            // No OpenCL library or no ICD: nothing to list.
        }
        return result;
    }

    /// <summary>Why ILGPU cannot use this device (null when it can): the same test as ILGPU's OpenCL() filter.</summary>
    public static string? UnusableReason(CLDevice d)
    {
        if (d.CLStdVersion < CLCVersion.CL20)
            return $"OpenCL C {d.CLStdVersion}; ILGPU needs OpenCL C 2.0+, or 3.0 with the generic address space";
        if (!d.Capabilities.GenericAddressSpace)
            return $"OpenCL {d.CLStdVersion} without generic address space; ILGPU needs 2.0+ or 3.0 with it";
        return null;
    }

    /// <summary>CL_DEVICE_GLOBAL_FREE_MEMORY_AMD (0x4039): two size_t in KiB, the free memory and its largest block.</summary>
    readonly record struct AmdFreeMemory(long FreeKiB, long LargestKiB);

    /// <summary>
    /// The free device memory in bytes where the OpenCL driver reports it: AMD's drivers do (the
    /// cl_amd_device_attribute_query extension's CL_DEVICE_GLOBAL_FREE_MEMORY_AMD); others, PoCL among them, do not: null.
    /// </summary>
    public static long? AmdFreeMemoryBytes(CLDevice d)
    {
        if (!d.HasExtension("cl_amd_device_attribute_query")) return null;
        try
        {
            return d.GetDeviceInfo<AmdFreeMemory>((ILGPU.Runtime.OpenCL.CLDeviceInfoType)0x4039).FreeKiB * 1024;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>CL_DEVICE_MAX_MEM_ALLOC_SIZE: the largest single buffer the device accepts, or null if it will not say.</summary>
    public static long? MaxAllocation(CLDevice d)
    {
        try
        {
            return d.GetDeviceInfo<long>(ILGPU.Runtime.OpenCL.CLDeviceInfoType.CL_DEVICE_MAX_MEM_ALLOC_SIZE);
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>
    /// The process's address-space limit in bytes (`ulimit -v`, "Max address space" in /proc/self/limits),
    /// or null when there is none or it cannot be read. Under a low limit even starting a thread fails.
    /// </summary>
    public static long? AddressSpaceLimit()
    {
        try
        {
            string? line = File.Exists("/proc/self/limits") ? File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max address space")) : null;
            string[] parts = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries) ?? [];
            return parts.Length > 3 && long.TryParse(parts[3], out long bytes) ? bytes : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public static HostMemory Host()
    {
        const string meminfo = "/proc/meminfo";
        if (File.Exists(meminfo))
        {
            long Read(string key)
            {
                string? line = File.ReadLines(meminfo).FirstOrDefault(l => l.StartsWith(key + ":"));
                return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
            }
            return new HostMemory(Read("MemTotal"), Read("MemAvailable"), meminfo);
        }
        var info = GC.GetGCMemoryInfo();
        return new HostMemory(info.TotalAvailableMemoryBytes, info.TotalAvailableMemoryBytes - info.MemoryLoadBytes, "GC.GetGCMemoryInfo");
    }
}
