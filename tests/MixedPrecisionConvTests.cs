using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// --precision fp16 and bf16 for conv nets: the 16-bit Conv2d and MaxPool2d kernels against the reference at awkward
/// sizes on the CPU accelerator and the host backend, estimate == measured for conv stacks in every precision, the
/// gradient and one subset epoch close to float32's, and --conv's default in 16 bits.
/// </summary>
[TestFixture]
public sealed class MixedPrecisionConvTests
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    static IEnumerable<TestCaseData> KernelCases()
    {
        foreach (string backend in new[] { "cpu", "host" })
            foreach (HalfFormat format in new[] { HalfFormat.Fp16, HalfFormat.Bf16 })
                foreach (var (shape, rows) in new[]
                {
                    (new ConvShape(1, 5, 7, 3, 3, 1), 2),    // the lesson's first conv, small and not square
                    (new ConvShape(3, 8, 6, 5, 3, 0), 3),    // no padding
                    (new ConvShape(2, 9, 9, 4, 5, 2), 1),    // 5x5, padding 2
                    (new ConvShape(4, 6, 6, 7, 1, 0), 2),    // 1x1
                    (new ConvShape(6, 13, 11, 9, 3, 1), 5),  // odd sizes everywhere
                })
                    yield return new TestCaseData(backend, format, shape, rows);
    }

    [TestCaseSource(nameof(KernelCases))]
    public void ConvAndPoolKernels_MatchTheReference(string backend, HalfFormat format, ConvShape shape, int rows)
    {
        IBackend ops = backend == "host" ? new HostBackend() : Shared.Kernels;
        MixedPrecision.CheckConvKernels(ops, Shared.Cpu.Accelerator, format, shape, rows, $"{backend} {format} {shape} x{rows}");
    }

    static IEnumerable<TestCaseData> MemoryCases()
    {
        foreach (Precision p in new[] { Precision.Fp32, Precision.Fp16, Precision.Bf16 })
        {
            yield return new TestCaseData("host", p, null, 64, "adam");
            yield return new TestCaseData("host", p, "conv5x5:3:p0,maxpool3,relu,conv3x3:5,flatten,linear:10", 7, "momentum");
            yield return new TestCaseData("cpu", p, null, 3, "sgd");
        }
    }

    /// <summary>The lesson's conv net at batch 64 (host) and 3 (CPU accelerator), and an awkward stack: every category and layer exact.</summary>
    [TestCaseSource(nameof(MemoryCases))]
    public void EstimateEqualsMeasured_ForConvStacks_InEveryPrecision(string device, Precision precision, string? layers, int batch, string optimizer)
    {
        using var d = ComputeDevice.Create(device);
        MixedPrecision.CheckConvMemory(d, precision, layers, batch, optimizer);
    }

    /// <summary>In 16 bits the conv net's per-sample part shrinks to a little over half (the int32 max-pool indices stay 4 bytes).</summary>
    [Test]
    public void ForTheConvNet_16BitStorageHalvesAllButTheIndices()
    {
        var net = new TrainConfig { Model = "cnn", Conv = ConvVersion.Direct, Precision = Precision.Bf16 }.Network(FeatureShape.Image(1, 28, 28), 10);
        var c = MemoryEstimator.ComparePrecision(net, "adam");
        long outputs = 25088 + 6272 + 12544 + 3136 + 128 + 10, indices = 6272 + 3136;
        Assert.That(c.PerSampleFp32, Is.EqualTo(4 * 784 + 4 + 4 * (outputs + indices) + 4 * outputs + 8));
        Assert.That(c.PerSample, Is.EqualTo(2 * 784 + 4 + 2 * outputs + 4 * indices + 2 * outputs + 8));
        Assert.That(c.Fixed, Is.EqualTo(c.FixedFp32 + 2 * 421_642), "the bf16 weight copy");
    }

    /// <summary>The conv net's gradient on a batch in 16-bit storage is the float32 one to about the format's precision.</summary>
    [TestCase("host", Precision.Fp16, 16, 0.04)]
    [TestCase("host", Precision.Bf16, 16, 0.15)]
    [TestCase("cpu", Precision.Fp16, 4, 0.04)]
    [TestCase("cpu", Precision.Bf16, 4, 0.15)]
    public void TheConvNetsGradient_IsFloat32sToTheFormatsPrecision(string device, Precision precision, int batch, double relative)
    {
        using var d = ComputeDevice.Create(device);
        float[] Gradient(Precision p) => MixedPrecision.UnscaledGradient(d, new TrainConfig { Model = "cnn", Conv = ConvVersion.Direct, BatchSize = batch, Precision = p }, batch);
        double distance = MixedPrecision.RelativeDistance(Gradient(precision), Gradient(Precision.Fp32));
        TestContext.Progress.WriteLine($"{device} {precision}: |g16 - g32| / |g32| = {distance:0.0000}");
        Assert.That(distance, Is.LessThan(relative));
    }

    /// <summary>A small conv net (two conv + pool blocks of 8 channels; the lesson's conv net's full epochs are in the closing note).</summary>
    const string SmallConvNet = "conv3x3:8,relu,maxpool2,conv3x3:8,relu,maxpool2,flatten,linear:10";

    static double SubsetAccuracy(Precision p)
    {
        using var d = ComputeDevice.Create("host");
        var config = new TrainConfig { Layers = SmallConvNet, Conv = ConvVersion.Direct, Precision = p };
        using var session = new TrainingSession(d, config, Data.Train.Info);
        return new Trainer(session, Data).RunEpoch(0)!.TestAccuracy;
    }

    static readonly Lazy<double> Fp32SubsetAccuracy = new(() => SubsetAccuracy(Precision.Fp32));

    /// <summary>One epoch of the embedded subset: a conv net in 16-bit storage learns as in float32.</summary>
    [TestCase(Precision.Fp16)]
    [TestCase(Precision.Bf16)]
    public void AConvNet_OneEpochOnTheSubset_ReachesFloat32sAccuracy(Precision precision)
    {
        double fp32 = Fp32SubsetAccuracy.Value, half = SubsetAccuracy(precision);
        TestContext.Progress.WriteLine($"conv net, subset, 1 epoch: fp32 {fp32:P2}, {precision} {half:P2}");
        Assert.That(half, Is.EqualTo(fp32).Within(0.02), "test accuracy within 2 points on the subset");
        Assert.That(half, Is.GreaterThan(0.5), "it learned");
    }

    /// <summary>The remedy ladder of a 16-bit conv stack: no recompute rungs (--recompute has no 16-bit buffers), the rest measured and proved.</summary>
    [Test]
    public void TheLadderOfA16BitConvStack_LeavesRecomputeOut_AndProvesItsPick()
    {
        const string stack = "conv3x3:8,relu,maxpool2,flatten,linear:16,relu,linear:10";
        Assert.That(Recompute.Recomputed(new TrainConfig { Layers = stack }.Network(FeatureShape.Image(1, 28, 28), 10).Layers), Is.Not.Empty,
            "in float32 this stack has blocks to recompute");
        var r = CliRunner.Run("memory", "--synthetic", "--layers", stack, "--precision", "fp16", "--memory-limit", "1MiB", "--target-batch", "32");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        string ladder = r.Stdout[r.Stdout.IndexOf("Remedies for", StringComparison.Ordinal)..];
        Assert.That(ladder, Does.Not.Contain("recompute"));
        Assert.That(ladder, Does.Contain("recommended: --batch-size 32 --accumulate").And.Contain("proof: 2 training steps"));
    }

    /// <summary>Out of memory in 16 bits: the hints keep the batch with accumulation and do not offer --recompute, which 16 bits refuse.</summary>
    [Test]
    public void OutOfMemoryIn16Bits_HintsAccumulation_NotRecompute()
    {
        var r = CliRunner.Run("train", "--data", TestData.EmbeddedFolder(), "--layers", "conv3x3:8,relu,maxpool2,flatten,linear:16,relu,linear:10",
            "--precision", "bf16", "--batch-size", "256", "--memory-limit", "2MiB");
        Assert.That(r.ExitCode, Is.Not.Zero);
        Assert.That(r.Stderr, Does.Contain("out of device memory").And.Contain("hint: to keep the batch of 256: --accumulate"));
        Assert.That(r.Stderr, Does.Not.Contain("--recompute"));
    }

    /// <summary>In 16 bits --conv defaults to direct (no 16-bit im2col); the CLI says so and counts no workspace.</summary>
    [Test]
    public void InSixteenBits_ConvDefaultsToDirect()
    {
        var r = CliRunner.Run("memory", "--synthetic", "--model", "cnn", "--precision", "bf16");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("conv direct, adam, --precision bf16"));
        Assert.That(r.Stdout, Does.Contain("Workspace                 0 B             0 B             0 B  0 (exact)"), "direct: no im2col workspace");
        Assert.That(r.Stdout, Does.Contain("int32 labels, predictions and max-pool indices and float32 losses do not shrink"));
        var fp32 = CliRunner.Run("memory", "--synthetic", "--model", "cnn");
        Assert.That(fp32.Stdout, Does.Contain("conv im2col, adam"), "float32 keeps im2col as its default");
    }
}
