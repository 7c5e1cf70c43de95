using ScratchNet.Data;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet export-subset --data DIR --to DIR [--train 2000] [--test 500]: the first N images of an
/// IDX dataset, written by our own IDX writer (this made src/Data/Embedded from the Debian package).
/// </summary>
public static class ExportSubsetCommand
{
    public static int Run(string[] args, TextWriter stdout)
    {
        var o = new Options("export-subset", args, ["--dataset", "--data", "--to", "--train", "--test"], []);
        if (o.Flag("--help"))
        {
            stdout.WriteLine("usage: scratchnet export-subset [--dataset fashion-mnist] --data DIR --to DIR [--train 2000] [--test 500]");
            return Cli.ExitOk;
        }
        string dataset = o.Choice("--dataset", "fashion-mnist", ["fashion-mnist", "mnist"]);
        string from = o.String("--data") ?? throw new UsageException("--data DIR is required (the full dataset)");
        string to = o.String("--to") ?? throw new UsageException("--to DIR is required");
        int train = o.Int("--train", DatasetLoader.EmbeddedTrainCount, 1);
        int test = o.Int("--test", DatasetLoader.EmbeddedTestCount, 1);
        var full = DatasetLoader.Load(dataset, from);
        DatasetLoader.WriteSubset(full, to, train, test);
        stdout.WriteLine($"wrote the first {Math.Min(train, full.Train.Count)} training and {Math.Min(test, full.Test.Count)} test images of {from} to {to}");
        return Cli.ExitOk;
    }
}
