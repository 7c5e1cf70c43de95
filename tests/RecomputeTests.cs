using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// --recompute (activation checkpointing): each block's inner outputs and indices live in buffers the blocks share, and
/// backward runs the block's forward again. The weights are bit-identical to a run without it, and the bytes fall by
/// exactly what the estimate says.
/// </summary>
[TestFixture]
public sealed class RecomputeTests
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    static TrainConfig Config(string model, ConvVersion conv, bool recompute) => model is "mlp" or "cnn"
        ? new TrainConfig { Model = model, Conv = conv, BatchSize = 32, Recompute = recompute }
        : new TrainConfig { Layers = model, Conv = conv, BatchSize = 32, Recompute = recompute };

    /// <summary>20 steps through the trainer: the losses, the weights, and how many buffers were made during the steps.</summary>
    static (List<double> Losses, float[] Weights, long Allocations) Train(ComputeDevice device, TrainConfig config, int steps = 20)
    {
        using var session = new TrainingSession(device, config, FeatureShape.Image(1, 28, 28), 10);
        var trainer = new Trainer(session, Data);
        var losses = new List<double>();
        long before = session.Tracker.AllocationCount;
        trainer.OnStep = (_, _, loss) => losses.Add(loss);
        trainer.StopRequested = () => losses.Count >= steps;
        trainer.RunEpoch(0);
        return (losses, session.Model.Parameters.ToArray(), session.Tracker.AllocationCount - before);
    }

    [TestCase("host", "cnn", ConvVersion.Im2col)]
    [TestCase("host", Accumulation.SmallCnn, ConvVersion.Direct)]   // the full conv net's direct conv takes half a minute in a Debug build
    [TestCase("host", "mlp", ConvVersion.Im2col)]
    [TestCase("host", "conv3x3:4,maxpool2,relu,maxpool2,conv5x5:6:p2,relu,flatten,linear:12,relu,linear:10", ConvVersion.Im2col)]
    [TestCase("cpu", Accumulation.SmallCnn, ConvVersion.Im2col)]
    [TestCase("cpu", Accumulation.SmallCnn, ConvVersion.Direct)]
    public void TwentySteps_GiveBitIdenticalWeights(string device, string model, ConvVersion conv)
    {
        using var d = ComputeDevice.Create(device);
        var plain = Train(d, Config(model, conv, recompute: false));
        var recomputed = Train(d, Config(model, conv, recompute: true));
        Assert.That(recomputed.Losses, Is.EqualTo(plain.Losses));
        Assert.That(recomputed.Weights, Is.EqualTo(plain.Weights), "bit-identical weights after 20 steps");
        Assert.That(recomputed.Allocations, Is.Zero, "the shared buffers are made once");
    }

    [Test]
    public void WithAccumulation_TheWeightsAreStillBitIdentical()
    {
        var plain = Train(Shared.Host, Config("cnn", ConvVersion.Im2col, false) with { Accumulate = 2 }, 10);
        var recomputed = Train(Shared.Host, Config("cnn", ConvVersion.Im2col, true) with { Accumulate = 2 }, 10);
        Assert.That(recomputed.Weights, Is.EqualTo(plain.Weights));
    }

    [Test]
    public void TheConvNetsBlocks_ShareTheConvOutputAndThePoolIndices()
    {
        var layers = new TrainConfig { Model = "cnn" }.Network(Data.Train.Info).Layers;
        var blocks = Recompute.Blocks(layers);
        Assert.That(blocks.Select(b => (layers[b.First].Name, layers[b.Last].Describe())),
            Is.EqualTo(new[] { ("conv1", "MaxPool2d(2)"), ("conv2", "MaxPool2d(2)"), ("fc1", "ReLU"), ("fc2", "Linear(128 -> 10)") }));
        Assert.That(Recompute.Recomputed(layers).Select(b => layers[b.First].Name), Is.EqualTo(new[] { "conv1", "conv2" }));
        var (outs, indices) = Recompute.SlotSizes(layers);
        Assert.That(outs, Is.EqualTo(new long[] { 32 * 28 * 28 }), "conv1's output is the larger of the two convs'");
        Assert.That(indices, Is.EqualTo(new long[] { 32 * 14 * 14 }), "pool1's indices are the larger");
        Assert.That(Recompute.Recomputed(new TrainConfig().Network(Data.Train.Info).Layers), Is.Empty, "the MLP's blocks make nothing but their output");
    }

    [TestCase("cnn", ConvVersion.Im2col, 64)]
    [TestCase("cnn", ConvVersion.Direct, 7)]
    [TestCase("mlp", ConvVersion.Im2col, 64)]
    [TestCase("conv3x3:4,maxpool2,relu,maxpool2,conv5x5:6:p2,relu,flatten,linear:12,relu,linear:10", ConvVersion.Im2col, 13)]
    public void ThePeakFalls_ByWhatTheEstimatePredicts(string model, ConvVersion conv, int batch)
    {
        var config = Config(model, conv, false) with { BatchSize = batch };
        ProbeResult plain = MemoryProbe.Run(Shared.Host, config, Data);
        ProbeResult recomputed = MemoryProbe.Run(Shared.Host, config with { Recompute = true }, Data);
        foreach (var c in recomputed.Categories)
            Assert.That((c.Live, c.Peak), Is.EqualTo((c.Estimate, c.Estimate)), $"{c.Category}: measured = estimate");
        Assert.That(recomputed.Layers.All(l => l.Match), Is.True, "per-layer table, the shared buffers' row included");
        var net = config.Network(Data.Train.Info);
        long predicted = MemoryEstimator.Estimate(net, batch, "adam").Total - MemoryEstimator.Estimate(net with { Recompute = true }, batch, "adam").Total;
        Assert.That(plain.PeakTotal - recomputed.PeakTotal, Is.EqualTo(predicted), "the measured peak falls by the predicted bytes");
        Assert.That(recomputed.WithoutRecompute, Is.EqualTo(plain.PeakTotal));
        if (model == "cnn") Assert.That(predicted, Is.GreaterThan(0), "two blocks share one set of buffers");
        else Assert.That(predicted, Is.Zero, model == "mlp" ? "nothing to share in the MLP" : "one block shares: its buffers only change names, which saves nothing");
    }

    [Test]
    public void TheConvNetAtBatch64_Saves4014080Bytes()
    {
        // conv2's output (64 x 64 x 14 x 14 floats) and pool2's indices (64 x 64 x 7 x 7) now live in conv1's and pool1's shared buffers.
        var net = new TrainConfig { Model = "cnn" }.Network(Data.Train.Info);
        long saved = MemoryEstimator.Estimate(net, 64, "adam").Total - MemoryEstimator.Estimate(net with { Recompute = true }, 64, "adam").Total;
        Assert.That(saved, Is.EqualTo(4L * 64 * (64 * 14 * 14 + 64 * 7 * 7)));
    }

    [Test]
    public void MemoryCommand_SaysWhatRecomputeSaves()
    {
        var r = CliRunner.Run("memory", "--device", "host", "--data", TestData.EmbeddedFolder(), "--model", "cnn", "--recompute");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("--recompute: 29,751,264 B at the peak against 33,765,344 B without it (estimate), 4,014,080 B less; " +
            "backward runs the forward of the blocks starting at conv1, conv2 again"));
        Assert.That(r.Stdout, Does.Contain("recompute.out0").Or.Contain("recompute"));
        Assert.That(r.Stdout, Does.Not.Contain("UNEXPLAINED"));
    }

    [Test]
    public void Bench_TimesTheStepWithRecompute_BesideTheStepWithout()
    {
        var r = CliRunner.Run("bench", "--device", "host", "--layers", Accumulation.SmallCnn, "--repeats", "1", "--steps", "1", "--json");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var rows = doc.RootElement.GetProperty("rows").EnumerateArray().ToList();
        foreach (string conv in new[] { "im2col", "direct" })
        {
            var row = rows.Single(x => x.GetProperty("operation").GetString() == "training step, --recompute" && x.GetProperty("version").GetString() == conv);
            Assert.That(row.GetProperty("medianMs").GetDouble(), Is.GreaterThan(0));
            Assert.That(row.GetProperty("note").GetString(), Does.Match(@"^[+-]\d+\.\d\d ms \([+-]\d+%\) against the step above: the forward of conv1's block and conv2's block again$"));
        }
    }

    [Test]
    public void RecomputeWithEagerLifetimes_IsAOneLineError()
    {
        var r = CliRunner.Run("train", "--device", "host", "--data", TestData.EmbeddedFolder(), "--recompute", "--lifetime", "eager");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Does.StartWith("error: --recompute shares buffers between blocks, which needs --lifetime planned").Or.Contain("--recompute shares buffers"));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
    }
}
