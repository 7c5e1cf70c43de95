using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>What the accumulation tests here and on OpenCL share.</summary>
static class Accumulation
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    /// <summary>The small conv stack selftest uses: both conv versions, pooling, ReLU, on the CPU accelerator in seconds.</summary>
    internal const string SmallCnn = "conv3x3:8,relu,maxpool2,conv3x3:8,relu,maxpool2,flatten,linear:10";

    /// <summary>The summed gradients of a batch of `rows` run as `accumulate` micro-batches (no update), and the loss sum.</summary>
    internal static (float[] Gradients, double LossSum) Gradients(ComputeDevice device, TrainConfig config, int rows)
    {
        using var session = new TrainingSession(device, config, FeatureShape.Image(1, 28, 28), 10);
        var (images, labels, _) = MemoryProbe.FirstRows(Data.Train, rows);
        var (loss, _) = session.TrainBatch(images, default, labels, rows, update: false);
        return (session.Model.Gradients.ToArray(), loss);
    }
}

/// <summary>
/// --accumulate N: a batch runs as N micro-batches whose gradients are summed in the one gradient buffer, each
/// micro-batch's loss weighted by its rows over the batch's rows, so the update is the full batch's while the device
/// holds one micro-batch.
/// </summary>
[TestFixture]
public sealed class AccumulationTests
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    static IEnumerable<TestCaseData> Backends()
    {
        yield return new TestCaseData("host", "mlp", ConvVersion.Im2col);
        yield return new TestCaseData("host", "cnn", ConvVersion.Im2col);
        yield return new TestCaseData("host", "cnn", ConvVersion.Direct);
        yield return new TestCaseData("cpu", "mlp", ConvVersion.Im2col);
        yield return new TestCaseData("cpu", Accumulation.SmallCnn, ConvVersion.Im2col);
        yield return new TestCaseData("cpu", Accumulation.SmallCnn, ConvVersion.Direct);
    }

    static TrainConfig Config(string model, ConvVersion conv, int batch, int accumulate) => model is "mlp" or "cnn"
        ? new TrainConfig { Model = model, Conv = conv, BatchSize = batch, Accumulate = accumulate }
        : new TrainConfig { Layers = model, Conv = conv, BatchSize = batch, Accumulate = accumulate };

    [TestCaseSource(nameof(Backends))]
    public void FourMicroBatchesOf16_GiveTheGradientOfOneBatchOf64(string device, string model, ConvVersion conv)
    {
        using var d = ComputeDevice.Create(device);
        var whole = Accumulation.Gradients(d, Config(model, conv, 64, 1), 64);
        var accumulated = Accumulation.Gradients(d, Config(model, conv, 64, 4), 64);
        Assert.That(accumulated.Gradients.Any(g => g != 0f), "a real gradient");
        Check.Close(accumulated.Gradients, whole.Gradients, 1e-5, 0, "4 x 16 against 64");
        Assert.That(accumulated.LossSum, Is.EqualTo(whole.LossSum).Within(1e-3), "the rows' losses are the same");
    }

    [TestCase("host", "mlp")]
    [TestCase("host", "cnn")]
    [TestCase("cpu", Accumulation.SmallCnn)]
    public void APartialBatch_SplitUnevenly_IsWeightedByItsRows(string device, string model)
    {
        // 38 rows in 4 micro-batches: 10, 10, 9 and 9 rows, each loss weighted by its rows over 38.
        using var d = ComputeDevice.Create(device);
        var whole = Accumulation.Gradients(d, Config(model, ConvVersion.Im2col, 64, 1), 38);
        var accumulated = Accumulation.Gradients(d, Config(model, ConvVersion.Im2col, 64, 4), 38);
        Check.Close(accumulated.Gradients, whole.Gradients, 1e-5, 0, "10+10+9+9 against 38");
    }

    [TestCase("host", "mlp")]
    [TestCase("host", "cnn")]
    [TestCase("cpu", "mlp")]
    [TestCase("cpu", Accumulation.SmallCnn)]
    public void TwentyStepsWithAccumulation_GiveTheWeightsOfTwentyFullBatches(string device, string model)
    {
        (float[] Weights, long Allocations, int Micro) Run(int accumulate)
        {
            using var d = ComputeDevice.Create(device);
            using var session = new TrainingSession(d, Config(model, ConvVersion.Im2col, 64, accumulate), FeatureShape.Image(1, 28, 28), 10);
            var trainer = new Trainer(session, Data);
            int steps = 0;
            long before = session.Tracker.AllocationCount;
            trainer.OnStep = (_, _, _) => steps++;
            trainer.StopRequested = () => steps >= 20;
            trainer.RunEpoch(0);
            return (session.Model.Parameters.ToArray(), session.Tracker.AllocationCount - before, session.Buffers.BatchSize);
        }
        var whole = Run(1);
        var accumulated = Run(4);
        Assert.That(accumulated.Micro, Is.EqualTo(16), "the step's buffers hold one micro-batch");
        Assert.That(accumulated.Allocations, Is.Zero, "no buffer is made during the steps");
        Check.Close(accumulated.Weights, whole.Weights, 1e-4, 0, "weights after 20 steps");
    }

    [Test]
    public void EagerLifetimes_AccumulateToo()
    {
        var planned = Accumulation.Gradients(Shared.Host, Config("cnn", ConvVersion.Im2col, 64, 1), 64);
        var eager = Accumulation.Gradients(Shared.Host, Config("cnn", ConvVersion.Im2col, 64, 4) with { Lifetime = LifetimeKind.Eager }, 64);
        Check.Close(eager.Gradients, planned.Gradients, 1e-5, 0, "eager 4 x 16 against planned 64");
    }

    [TestCase("mlp")]
    [TestCase("cnn")]
    public void Memory_HoldsOneMicroBatch_AndEqualsTheEstimate(string model)
    {
        ProbeResult accumulated = MemoryProbe.Run(Shared.Host, new TrainConfig { Model = model, BatchSize = 64, Accumulate = 4 }, Data);
        ProbeResult micro = MemoryProbe.Run(Shared.Host, new TrainConfig { Model = model, BatchSize = 16 }, Data);
        foreach (var (a, m) in accumulated.Categories.Zip(micro.Categories))
        {
            Assert.That((a.Live, a.Peak), Is.EqualTo((a.Estimate, a.Estimate)), $"{a.Category}: measured = estimate");
            Assert.That(a.Peak, Is.EqualTo(m.Peak), $"{a.Category}: batch 64 in 4 micro-batches holds what batch 16 holds");
        }
        Assert.That(accumulated.AllocationsDuringSteps, Is.Zero);
        Assert.That(accumulated.Layers.All(l => l.Match), "per-layer table");
    }

    [Test]
    public void MemoryAndTrain_SayTheMicroBatch()
    {
        var m = CliRunner.Run("memory", "--device", "host", "--data", TestData.EmbeddedFolder(), "--batch-size", "64", "--accumulate", "4");
        Assert.That(m.ExitCode, Is.Zero, m.Stderr);
        Assert.That(m.Stdout, Does.Contain("batch 64 in 4 micro-batches of at most 16 (--accumulate 4"));
        Assert.That(m.Stdout, Does.Not.Contain("UNEXPLAINED"));
        var t = CliRunner.Run("train", "--device", "host", "--data", TestData.EmbeddedFolder(), "--batch-size", "64", "--accumulate", "4");
        Assert.That(t.ExitCode, Is.Zero, t.Stderr);
        Assert.That(t.Stdout, Does.Contain("batch 64 in micro-batches of 16 (--accumulate 4)").And.Contain("epoch 1/1: loss "));
    }

    [TestCase("0", "--accumulate: 0 is too small; it must be at least 1")]
    [TestCase("65", "--accumulate 65: more micro-batches than the 64 rows of --batch-size")]
    [TestCase("x", "--accumulate: 'x' is not an integer")]
    public void BadAccumulate_IsAOneLineError(string value, string message)
    {
        var r = CliRunner.Run("train", "--device", "host", "--data", TestData.EmbeddedFolder(), "--accumulate", value);
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Does.Contain(message));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
    }
}
