using ScratchNet.Data;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet export-subset --data DIR --to DIR [--train 2000] [--test 500] [--force]: the first N images
/// of an IDX dataset, written by our own IDX writer (this made src/Data/Embedded from the Debian package).
/// </summary>
public static class ExportSubsetCommand
{
    public static int Run(string[] args, TextWriter stdout)
    {
        OptionSpec[] specs =
        [
            new("--dataset", "NAME", "fashion-mnist (default) or mnist"),
            new("--data", "DIR", "the full dataset's folder (required)"),
            new("--to", "DIR", "where to write the subset: another folder (required)"),
            new("--train", "N", $"training images to keep (default {DatasetLoader.EmbeddedTrainCount:N0})"),
            new("--test", "N", $"test images to keep (default {DatasetLoader.EmbeddedTestCount:N0})"),
            new("--force", null, "replace files already in --to"),
        ];
        var o = new Options("export-subset", args, specs);
        if (o.Help)
        {
            stdout.Write(HelpText.Format("scratchnet export-subset --data DIR --to DIR [options]",
                """
                Writes the first --train training and --test test images of the IDX dataset in --data as gzip
                IDX files into --to, which must be another folder. Files already in --to are replaced only
                with --force.
                """, specs));
            return Cli.ExitOk;
        }
        string dataset = o.Choice("--dataset", "fashion-mnist", ["fashion-mnist", "mnist"]);
        string from = o.String("--data") ?? throw new UsageException("--data DIR is required (the full dataset)");
        string to = o.String("--to") ?? throw new UsageException("--to DIR is required");
        int train = o.Int("--train", DatasetLoader.EmbeddedTrainCount, 1);
        int test = o.Int("--test", DatasetLoader.EmbeddedTestCount, 1);

        // Writing into the folder we read would replace the full dataset by its subset.
        if (RealPath(from) == RealPath(to))
            throw new UsageException($"--to: '{to}' is the folder --data reads; the subset would replace the dataset. Choose another folder");
        if (!o.Flag("--force"))
        {
            string? existing = DatasetLoader.SubsetFiles.Select(f => Path.Combine(to, f)).FirstOrDefault(File.Exists);
            if (existing is not null)
                throw new UsageException($"--to: {existing} already exists; pass --force to replace it");
        }
        OutputPath.CheckFolder(to, "--to");

        var full = DatasetLoader.Load(dataset, from);
        DatasetLoader.WriteSubset(full, to, train, test);
        stdout.WriteLine($"wrote the first {Math.Min(train, full.Train.Count)} training and {Math.Min(test, full.Test.Count)} test images of {from} to {to}");
        return Cli.ExitOk;
    }

    /// <summary>The full path with every symbolic link on the way resolved, so two names for one folder compare equal.</summary>
    static string RealPath(string path)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        string? parent = Path.GetDirectoryName(full);
        if (parent is null) return full; // the root
        string resolved = Path.Combine(RealPath(parent), Path.GetFileName(full));
        try
        {
            FileSystemInfo? target = new DirectoryInfo(resolved).ResolveLinkTarget(returnFinalTarget: true);
            return target is null ? resolved : RealPath(target.FullName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return resolved; // not there yet, a link loop, or not searchable: left as it is; later checks report it
        }
    }
}
