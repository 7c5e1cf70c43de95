using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Cli;

/// <summary>
/// The scratchnet command: dispatches to a subcommand and turns every expected failure into one
/// readable line and an exit code (2: bad command line; 1: bad data, a file that cannot be written, out of
/// memory, a device that is not there, a failed download; 130: interrupted, checkpoint saved). A stack trace
/// is shown only for real bugs, and only with SCRATCHNET_DEBUG=1.
/// </summary>
public static class Cli
{
    public const int ExitOk = 0, ExitFailure = 1, ExitUsage = 2, ExitInterrupted = 130, ExitInternal = 70;

    const string Usage = """
        scratchnet: a deep-learning engine from scratch on ILGPU

        usage: scratchnet <command> [options]     (scratchnet <command> --help, or scratchnet help <command>, for its options)

        commands:
          train        train the lesson's MLP or a conv net and print accuracy and the memory report
          evaluate     test accuracy of a checkpoint by prediction alone, and the memory that takes
          samples      a PNG grid of random training images with their shapes and classes
          memory       where the bytes go: estimate vs measured, across batch sizes and optimizers,
                       the largest batch that fits a budget, a trace and an HTML report
          selftest     every kernel on a device against the C# reference, and a short training run
          bench        kernel times, GFLOP/s, matmul versions side by side, training samples/s
          download     fetch MNIST, Fashion-MNIST or CIFAR-10 from the official locations, checksums verified
          devices      every accelerator ILGPU can see, OpenCL devices it cannot use (and why), host memory
          export-subset  write the first N images of an IDX dataset as a smaller IDX dataset
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" || args is ["help"])
        {
            stdout.WriteLine(Usage);
            return args.Length == 0 ? ExitUsage : ExitOk;
        }
        if (args is ["help", string topic, ..]) args = [topic, "--help"];   // scratchnet help train = scratchnet train --help
        string command = args[0];
        string[] rest = args[1..];
        try
        {
            if (Kernels.HostParallel.ThreadsError is { } threads) throw new UsageException(threads);
            return command switch
            {
                "train" => TrainCommand.Run(rest, stdout, stderr),
                "memory" => MemoryCommand.Run(rest, stdout, stderr),
                "evaluate" => EvaluateCommand.Run(rest, stdout, stderr),
                "samples" => SamplesCommand.Run(rest, stdout, stderr),
                "devices" => DevicesCommand.Run(rest, stdout),
                "download" => DownloadCommand.Run(rest, stdout, stderr),
                "selftest" => SelfTestCommand.Run(rest, stdout),
                "bench" => BenchCommand.Run(rest, stdout),
                "export-subset" => ExportSubsetCommand.Run(rest, stdout),
                _ => throw new UsageException($"unknown command '{command}'; commands: train, evaluate, memory, samples, selftest, bench, devices, download, export-subset"),
            };
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitUsage;
        }
        catch (Exception e) when (e is DataFormatException or OutputFileException or DownloadException or DeviceUnavailableException)
        {
            // Bad data, a place that cannot be written, a failed download, a device that is not there.
            stderr.WriteLine($"error: {e.Message}");
            return ExitFailure;
        }
        catch (DeviceMemoryException e)
        {
            stderr.WriteLine($"error: {e.FullMessage}");
            return ExitFailure;
        }
        catch (Exception e) when (IsOutOfMemory(e))
        {
            // Host memory, not a device buffer: .NET could not allocate or could not start a thread (ILGPU's
            // CPU accelerator starts one per core). Usually a `ulimit -v` below what .NET needs.
            long? limit = DeviceCatalog.AddressSpaceLimit();
            stderr.WriteLine("error: out of host memory: .NET could not allocate memory or start a thread" + (limit is long l
                ? $"; this process may use only {Bytes.Format(l)} of address space (ulimit -v {l / 1024}); raise the limit (each thread reserves its stack) or train a smaller model or batch"
                : "; close other programs or train a smaller model or batch"));
            return ExitFailure;
        }
        catch (ArgumentException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitUsage;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("SCRATCHNET_DEBUG") != "1")
        {
            stderr.WriteLine($"internal error: {e.GetType().Name}: {e.Message} (set SCRATCHNET_DEBUG=1 for the stack trace; please report it)");
            return ExitInternal;
        }
    }

    /// <summary>An OutOfMemoryException, or one wrapped by ILGPU (its compiler reports one as an internal compiler error).</summary>
    static bool IsOutOfMemory(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is OutOfMemoryException) return true;
        return false;
    }
}
