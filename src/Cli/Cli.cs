using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Cli;

/// <summary>
/// The scratchnet command: dispatches to a subcommand and turns every expected failure into one
/// readable line and an exit code (2: bad command line, 1: bad data or out of memory). A stack trace
/// is shown only for real bugs, and only with SCRATCHNET_DEBUG=1.
/// </summary>
public static class Cli
{
    public const int ExitOk = 0, ExitFailure = 1, ExitUsage = 2, ExitInterrupted = 130, ExitInternal = 70;

    const string Usage = """
        scratchnet: a deep-learning engine from scratch on ILGPU

        usage: scratchnet <command> [options]     (scratchnet <command> --help for its options)

        commands:
          train        train the lesson's MLP and print accuracy and the memory report
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
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            stdout.Write(Usage);
            return args.Length == 0 ? ExitUsage : ExitOk;
        }
        string command = args[0];
        string[] rest = args[1..];
        try
        {
            return command switch
            {
                "train" => TrainCommand.Run(rest, stdout, stderr),
                "memory" => MemoryCommand.Run(rest, stdout, stderr),
                "samples" => SamplesCommand.Run(rest, stdout, stderr),
                "devices" => DevicesCommand.Run(rest, stdout),
                "download" => DownloadCommand.Run(rest, stdout, stderr),
                "selftest" => SelfTestCommand.Run(rest, stdout),
                "bench" => BenchCommand.Run(rest, stdout),
                "export-subset" => ExportSubsetCommand.Run(rest, stdout),
                _ => throw new UsageException($"unknown command '{command}'; commands: train, memory, samples, selftest, bench, devices, download, export-subset"),
            };
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitUsage;
        }
        catch (DataFormatException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitFailure;
        }
        catch (DownloadException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitFailure;
        }
        catch (OutputPathException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitFailure;
        }
        catch (DeviceMemoryException e)
        {
            stderr.WriteLine($"error: {e.FullMessage}");
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
}
