using ScratchNet.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet samples: a grid of random training images, de-normalised back to pixels and scaled up,
/// written as a PNG with ImageSharp; each image's tensor shape and class, in grid order, on the terminal
/// and in a .txt file beside the PNG.
/// </summary>
public static class SamplesCommand
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        OptionSpec[] specs =
        [
            new("--dataset", "NAME", "fashion-mnist (default), mnist or cifar10"),
            new("--data", "DIR", "folder with the dataset's files (default: as for train)"),
            new("--count", "N", "images in the grid, 1..1024 (default 16)"),
            new("--seed", "N", "which random images (default 42)"),
            new("--out", "FILE.png", "the grid (default samples.png); the shapes and classes go to FILE.txt"),
            new("--scale", "N", "pixels per image pixel, 1..16 (default 4)"),
        ];
        var o = new Options("samples", args, specs);
        if (o.Help)
        {
            stdout.Write(HelpText.Format("scratchnet samples [options]",
                """
                Writes a PNG grid of random training images, normalised as for training and de-normalised back
                to pixels, and prints each image's tensor shape and class in grid order.
                """, specs));
            return Cli.ExitOk;
        }
        string dataset = o.Choice("--dataset", "fashion-mnist", DatasetInfo.All.Select(d => d.Name).ToArray());
        int count = o.Int("--count", 16, 1, 1024);
        ulong seed = o.ULong("--seed", 42);
        int scale = o.Int("--scale", 4, 1, 16);
        string outPath = o.String("--out", "samples.png");
        if (!outPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            throw new UsageException($"--out: '{outPath}' must end in .png");
        string txtPath = Path.ChangeExtension(outPath, ".txt");
        // Before loading anything, so a path we cannot write costs no dataset load to find out (this also
        // creates the folder).
        OutputPath.CheckFile(outPath, "--out");
        OutputPath.CheckFile(txtPath, "--out");
        DatasetPair data = DatasetLoader.Load(dataset, o.String("--data"));
        if (data.Notice is not null) stderr.WriteLine($"note: {data.Notice}");
        var grid = new SampleGrid(data.Train, count, seed, scale);
        var info = data.Train.Info;

        if (grid.Channels == 1)
        {
            using var image = Image.LoadPixelData<L8>(grid.Pixels, grid.Width, grid.Height);
            image.SaveAsPng(outPath);
        }
        else
        {
            using var image = Image.LoadPixelData<Rgb24>(grid.Pixels, grid.Width, grid.Height);
            image.SaveAsPng(outPath);
        }
        string shape = $"[{info.Channels}, {info.Height}, {info.Width}]";
        var lines = grid.Labels.Select((label, n) => $"{n,3}  row {n / grid.Columns} col {n % grid.Columns}  image {grid.Indices[n],6}  {shape}  {label}").ToList();
        File.WriteAllLines(txtPath, [$"# {info.Name}: {grid.Labels.Length} training images, tensor shape {shape}, {grid.Columns} columns, scaled {scale}x; grid order", .. lines]);
        stdout.WriteLine($"{info.Name}: {grid.Labels.Length} random training images (seed {seed}), each a tensor of shape {shape}");
        foreach (string line in lines) stdout.WriteLine(line);
        stdout.WriteLine($"wrote {outPath} ({grid.Width}x{grid.Height} pixels, {grid.Columns} columns, {scale}x) and {txtPath}");
        return Cli.ExitOk;
    }
}
