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
        var o = new Options("samples", args, ["--dataset", "--data", "--count", "--seed", "--out", "--scale"], []);
        if (o.Flag("--help"))
        {
            stdout.WriteLine("usage: scratchnet samples [--dataset fashion-mnist|mnist|cifar10] [--data DIR] [--count 16] [--seed 42] [--out samples.png] [--scale 4]");
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
