using NUnit.Framework;
using ScratchNet.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ScratchNet.Tests;

[TestFixture]
public sealed class SamplesTests
{
    [Test]
    public void FashionMnist_Grid_IsAGrayPngOfTheRightSize_WithLabels()
    {
        string dataDir = TestData.NewFolder();
        DatasetLoader.WriteSubset(DatasetLoader.LoadEmbedded(null), dataDir, 2000, 500);
        string png = Path.Combine(TestData.NewFolder(), "samples.png");
        var r = CliRunner.Run("samples", "--data", dataDir, "--count", "16", "--seed", "7", "--out", png);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);

        // 4 x 4 tiles of 28 x 4 = 112 pixels with 2-pixel gaps: 4 * 112 + 5 * 2 = 458.
        using var image = Image.Load<L8>(png);
        Assert.That((image.Width, image.Height), Is.EqualTo((458, 458)));
        string[] txt = File.ReadAllLines(Path.ChangeExtension(png, ".txt"));
        Assert.That(txt, Has.Length.EqualTo(17));
        Assert.That(r.Stdout, Does.Contain("[1, 28, 28]"));

        // The first tile shows the first chosen image: every byte survived normalise + de-normalise.
        var data = DatasetLoader.Load("fashion-mnist", dataDir).Train;
        var grid = new SampleGrid(data, 16, 7, 4);
        Assert.That(txt[1], Does.Contain(data.Info.ClassNames[data.Labels[grid.Indices[0]]]));
        var original = data.Image(grid.Indices[0]).ToArray();
        var (x0, y0) = grid.TileOrigin(0);
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
                Assert.That(image[x0 + x * 4 + 3, y0 + y * 4 + 1].PackedValue, Is.EqualTo(original[y * 28 + x]), $"pixel ({x}, {y})");
    }

    [Test]
    public void Cifar_Grid_IsAColourPng_WithTheRightPixels()
    {
        string dataDir = TestData.WriteCifar(perBatch: 10, testCount: 5);
        string png = Path.Combine(TestData.NewFolder(), "cifar.png");
        var r = CliRunner.Run("samples", "--dataset", "cifar10", "--data", dataDir, "--count", "9", "--scale", "3", "--out", png);
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var image = Image.Load<Rgb24>(png);
        // 3 x 3 tiles of 32 x 3 = 96 pixels: 3 * 96 + 4 * 2 = 296.
        Assert.That((image.Width, image.Height), Is.EqualTo((296, 296)));
        Assert.That(r.Stdout, Does.Contain("[3, 32, 32]"));

        var data = DatasetLoader.Load("cifar10", dataDir).Train;
        var grid = new SampleGrid(data, 9, 42, 3);
        var original = data.Image(grid.Indices[0]).ToArray();
        var (x0, y0) = grid.TileOrigin(0);
        for (int y = 0; y < 32; y += 5)
            for (int x = 0; x < 32; x += 5)
            {
                var p = image[x0 + x * 3, y0 + y * 3];
                Assert.That((p.R, p.G, p.B), Is.EqualTo((original[y * 32 + x], original[1024 + y * 32 + x], original[2048 + y * 32 + x])));
            }
    }

    [Test]
    public void Samples_BadOut_IsAUsageError()
    {
        var r = CliRunner.Run("samples", "--out", "grid.jpg");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("--out: 'grid.jpg' must end in .png"));
    }
}
