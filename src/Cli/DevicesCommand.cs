using System.Text.Json;
using ScratchNet.Tensor;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet devices: every accelerator ILGPU can see (CUDA, OpenCL, the CPU accelerator) with its
/// memory and shape, every OpenCL device found but not usable with the reason, and host memory.
/// </summary>
public static class DevicesCommand
{
    public static int Run(string[] args, TextWriter stdout)
    {
        OptionSpec[] specs = [new("--json", null, "one JSON document on stdout instead of text")];
        var o = new Options("devices", args, specs);
        if (o.Help)
        {
            stdout.Write(HelpText.Format("scratchnet devices [--json]",
                "Lists every accelerator ILGPU can see, the OpenCL devices it cannot use (and why), and host memory.", specs));
            return Cli.ExitOk;
        }
        List<DeviceEntry> devices = DeviceCatalog.List();
        HostMemory host = DeviceCatalog.Host();
        if (o.Flag("--json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(new { devices, host }, TrainCommand.JsonOptions));
            return Cli.ExitOk;
        }
        static string Mem(long? b) => b is long v ? Bytes.Format(v) : "not reported";
        stdout.WriteLine("Accelerators ScratchNet can use:");
        foreach (var d in devices.Where(d => d.Usable))
        {
            stdout.WriteLine($"  {d.Kind,-7} {d.Name}");
            stdout.WriteLine($"          memory: total {Mem(d.TotalMemory)}" + (d.FreeMemory is long f ? $", free {Bytes.Format(f)}" : "") +
                (d.MaxBufferBytes is long m ? $", max buffer {Bytes.Format(m)}" : "") +
                (d.Kind == "CPU" ? " (the CPU accelerator reports no limit; use --memory-limit to plan)" : ""));
            stdout.WriteLine($"          warp size {d.WarpSize}, max group size {d.MaxGroupSize}, multiprocessors {d.Multiprocessors}" +
                (d.Version is null ? "" : $", {d.Version}"));
            stdout.WriteLine($"          precisions: {string.Join(", ", d.Precisions)} (fp16 and bf16 as 16-bit storage with float32 arithmetic: no half arithmetic needed)");
        }
        var unusable = devices.Where(d => !d.Usable).ToList();
        stdout.WriteLine();
        stdout.WriteLine(unusable.Count == 0 ? "OpenCL devices found but not usable: none" : "OpenCL devices found but not usable:");
        foreach (var d in unusable)
        {
            stdout.WriteLine($"  {d.Kind,-7} {d.Name}: {d.Version}, memory {Mem(d.TotalMemory)}" +
                (d.MaxBufferBytes is long m ? $", max buffer {Bytes.Format(m)}" : "") +
                (d.WarpSize > 0 ? $", warp size {d.WarpSize}" : "") + $", max group size {d.MaxGroupSize}, compute units {d.Multiprocessors}");
            stdout.WriteLine($"          not usable: {d.Reason}");
        }
        stdout.WriteLine();
        stdout.WriteLine($"Host memory: total {Bytes.Format(host.Total)}, available {Bytes.Format(host.Available)} ({host.Source})");
        stdout.WriteLine("Host backend (--device host): precisions fp32, fp16, bf16 (the same 16-bit storage in C#)");
        return Cli.ExitOk;
    }
}
