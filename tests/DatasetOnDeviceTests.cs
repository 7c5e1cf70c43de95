using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Kernels;

namespace ScratchNet.Tests;

/// <summary>--dataset-on-device: the gather kernel matches the host normaliser, training is unchanged, and the bytes are counted.</summary>
[TestFixture]
public sealed class DatasetOnDeviceTests
{
    [TestCase("ilgpu", "fashion-mnist")]
    [TestCase("host", "fashion-mnist")]
    [TestCase("ilgpu", "cifar10")]
    [TestCase("host", "cifar10")]
    public void GatherNormalize_MatchesTheHostNormalizer(string backend, string dataset)
    {
        var info = DatasetInfo.Get(dataset);
        var r = new Random(4);
        int n = 37, rows = 7;
        var pixels = new byte[n * info.ImageSize];
        r.NextBytes(pixels);
        var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
        var data = new Dataset(info, pixels, labels, "test");
        int[] indices = [36, 0, 5, 5, 20, 1, 35];

        var acc = Shared.Cpu.Accelerator;
        using var dp = acc.Allocate1D(pixels);
        using var dl = acc.Allocate1D(labels);
        using var di = acc.Allocate1D(indices);
        var normalizer = new Normalizer(info);
        float[] scaleShift = normalizer.ScaleShift();
        using var ds = acc.Allocate1D(scaleShift);
        using var dx = acc.Allocate1D<float>(rows * info.ImageSize);
        using var dy = acc.Allocate1D<int>(rows);
        IBackend ops = backend == "host" ? new HostBackend() : Shared.Kernels;
        ops.GatherNormalize(dp.View, dl.View, di.View, ds.View, dx.View, dy.View, rows, info.ImageSize, info.Height * info.Width, info.Channels);

        var expected = new float[rows * info.ImageSize];
        for (int b = 0; b < rows; b++) normalizer.Normalize(data.Image(indices[b]), expected.AsSpan(b * info.ImageSize, info.ImageSize));
        Check.Close(dx.GetAsArray1D(), expected, 1e-6, 1e-6, "normalised batch");
        Assert.That(dy.GetAsArray1D(), Is.EqualTo(indices.Select(i => (int)labels[i]).ToArray()));
    }

    [Test]
    public void Training_WithTheDatasetOnTheDevice_PrintsTheSameLosses()
    {
        string data = TestData.EmbeddedFolder();
        var onHost = CliRunner.Run("train", "--device", "cpu", "--data", data, "--epochs", "2");
        var onDevice = CliRunner.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--dataset-on-device");
        Assert.That(onDevice.ExitCode, Is.Zero, onDevice.Stderr);
        static string Losses(string s) => string.Join("\n", s.Split('\n').Where(l => l.StartsWith("epoch")).Select(l => l[..l.IndexOf("%, ", l.IndexOf("test acc", StringComparison.Ordinal), StringComparison.Ordinal)]));
        Assert.That(Losses(onDevice.Stdout), Is.EqualTo(Losses(onHost.Stdout)));
        Assert.That(onDevice.Stdout, Does.Contain("dataset.train.pixels   [2000, 784]"));
    }

    [TestCase("fashion-mnist", 64)]
    [TestCase("cifar10", 1000)]
    public void Memory_CountsTheDatasetInInput_Exactly(string dataset, int batch)
    {
        string data = dataset == "cifar10" ? TestData.WriteCifar(perBatch: 10, testCount: 20) : TestData.EmbeddedFolder();
        var r = CliRunner.Run("memory", "--json", "--device", "cpu", "--dataset", dataset, "--data", data, "--batch-size", batch.ToString(), "--dataset-on-device");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var categories = doc.RootElement.GetProperty("probe").GetProperty("categories").EnumerateArray().ToList();
        foreach (var c in categories)
            Assert.That(c.GetProperty("live").GetInt64(), Is.EqualTo(c.GetProperty("estimate").GetInt64()), c.GetProperty("category").GetString());
        var input = categories.Single(c => c.GetProperty("category").GetString() == "Input").GetProperty("live").GetInt64();
        var info = DatasetInfo.Get(dataset);
        var pair = DatasetLoader.Load(dataset, data);
        long datasetBytes = (long)(pair.Train.Count + pair.Test.Count) * (info.ImageSize + 1);
        Assert.That(input, Is.EqualTo(4L * batch * info.ImageSize + 4 * batch + datasetBytes + 4 * batch + 8 * info.Channels));
    }
}
