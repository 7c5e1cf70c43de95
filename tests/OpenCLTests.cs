using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// ScratchNet on a real OpenCL driver: PoCL 6 (OpenCL 3.0 with generic address space) in the Debian 13 root
/// of scripts/opencl-root.sh, which .ci/run uses. Every kernel against the C# reference, training against the
/// CPU accelerator, the memory report, and checkpoints across backends.
/// </summary>
[TestFixture]
[Category("OpenCL")]
[NonParallelizable]
public sealed class OpenCLTests
{
    ComputeDevice? _device;

    [OneTimeSetUp]
    public void Open()
    {
        Requires.UsableOpenCL();
        _device = ComputeDevice.Create("opencl");
    }

    [OneTimeTearDown]
    public void Close() => _device?.Dispose();

    ComputeDevice Device => _device!;

    [Test]
    public void Devices_ListsTheOpenCLDeviceAsUsable()
    {
        var r = CliRunner.Run("devices");
        Assert.That(r.ExitCode, Is.Zero);
        string usable = r.Stdout[..r.Stdout.IndexOf("OpenCL devices found but not usable", StringComparison.Ordinal)];
        Assert.That(usable, Does.Contain("OpenCL  ").And.Contain(Device.Name));
    }

    /// <summary>
    /// The self-test: every kernel (all matmul versions in three layouts, bias + ReLU, ReLU and bias backward,
    /// softmax-cross-entropy and its gradient, argmax, Adam, SGD, momentum) against the C# reference at sizes
    /// 1, 7, 63, 65, 1000, then 20 training steps whose losses match the CPU accelerator's to 1e-4 x (1 + |loss|).
    /// </summary>
    [Test]
    public void EveryKernel_MatchesTheReference_AndTrainingMatchesTheCpuAccelerator()
    {
        var rows = SelfTest.Run(Device);
        foreach (var row in rows)
            Assert.That(row.Passed, $"{row.Check} {row.Sizes}: max error {row.MaxError:0.00e+0}, tolerance {row.Tolerance}");
        Assert.That(rows.Select(r => r.Check), Has.Some.StartsWith("matmul tiled").And.Some.StartsWith("matmul naive").And.Some.StartsWith("training:"));
    }

    [TestCase(1, "adam")]
    [TestCase(64, "momentum")]
    [TestCase(1000, "sgd")]
    public void MemoryReport_IsExact(int batch, string optimizer)
    {
        var config = new TrainConfig { Device = "opencl", BatchSize = batch, Optimizer = optimizer };
        var probe = MemoryProbe.Run(Device, config, DatasetLoader.LoadEmbedded(null));
        foreach (var c in probe.Categories)
            Assert.That((c.Live, c.Peak), Is.EqualTo((c.Estimate, c.Estimate)), c.Category);
        Assert.That(probe.AllocationsDuringSteps, Is.Zero);
        Assert.That((probe.DriverBytes, probe.DriverSource), Is.EqualTo(((long?)null, "this OpenCL driver does not report free memory (only AMD's do, through cl_amd_device_attribute_query)")),
            "PoCL has no free-memory query");
    }

    /// <summary>
    /// The caching allocator's tensors are 512 B-aligned sub-buffer views on OpenCL too, and eager lifetimes make and free
    /// them every step: 10 steps of the conv net give the same losses as the exact allocator with planned lifetimes,
    /// and the eager peak equals its estimate.
    /// </summary>
    [Test]
    public void CachingAllocatorAndEagerLifetimes_TrainAsThePlannedExactRun_WithThePeakTheEstimateNames()
    {
        var data = DatasetLoader.LoadEmbedded(null);
        double[] Losses(TrainConfig config)
        {
            using var session = new TrainingSession(Device, config, FeatureShape.Image(1, 28, 28), 10);
            var trainer = new Trainer(session, data);
            var losses = new List<double>();
            trainer.OnStep = (_, _, loss) => losses.Add(loss);
            trainer.StopRequested = () => losses.Count >= 10;
            trainer.RunEpoch(0);
            return [.. losses];
        }
        var baseline = new TrainConfig { Device = "opencl", Model = "cnn", BatchSize = 16, Matmul = Kernels.MatmulVersion.Blocked };
        var planned = Losses(baseline);
        Assert.That(Losses(baseline with { Allocator = AllocatorKind.Caching }), Is.EqualTo(planned));
        Assert.That(Losses(baseline with { Allocator = AllocatorKind.Caching, Lifetime = LifetimeKind.Eager }), Is.EqualTo(planned));

        var probe = MemoryProbe.Run(Device, baseline with { Allocator = AllocatorKind.Caching, Lifetime = LifetimeKind.Eager }, data);
        Assert.That((probe.PeakTotal, probe.PeakPhase, probe.PeakName), Is.EqualTo((probe.EagerEstimate!.Peak, probe.EagerEstimate.Phase, probe.EagerEstimate.Name)));
        Assert.That(probe.Allocation.Reserved, Is.GreaterThan(probe.Allocation.Allocated));
    }

    /// <summary>--accumulate on OpenCL: 4 micro-batches of 16 give the gradient of one batch of 64, for the MLP and a conv net in both conv versions.</summary>
    [TestCase("mlp", ConvVersion.Im2col)]
    [TestCase(Accumulation.SmallCnn, ConvVersion.Im2col)]
    [TestCase(Accumulation.SmallCnn, ConvVersion.Direct)]
    public void FourMicroBatchesOf16_GiveTheGradientOfOneBatchOf64(string model, ConvVersion conv)
    {
        TrainConfig Config(int accumulate) => (model == "mlp" ? new TrainConfig() : new TrainConfig { Layers = model }) with
        {
            Conv = conv, BatchSize = 64, Accumulate = accumulate, Matmul = Kernels.MatmulVersion.Blocked,
        };
        var whole = Accumulation.Gradients(Device, Config(1), 64);
        var accumulated = Accumulation.Gradients(Device, Config(4), 64);
        Assert.That(accumulated.Gradients.Any(g => g != 0f), "a real gradient");
        Check.Close(accumulated.Gradients, whole.Gradients, 1e-5, 0, "4 x 16 against 64 on OpenCL");
    }

    /// <summary>--recompute on OpenCL: 10 steps of a conv net give bit-identical weights to the run without it.</summary>
    [TestCase(ConvVersion.Im2col)]
    [TestCase(ConvVersion.Direct)]
    public void Recompute_GivesBitIdenticalWeights(ConvVersion conv)
    {
        var data = DatasetLoader.LoadEmbedded(null);
        float[] Weights(bool recompute)
        {
            var config = new TrainConfig { Layers = Accumulation.SmallCnn, Conv = conv, BatchSize = 16, Recompute = recompute, Matmul = Kernels.MatmulVersion.Blocked };
            using var session = new TrainingSession(Device, config, FeatureShape.Image(1, 28, 28), 10);
            var trainer = new Trainer(session, data);
            int steps = 0;
            trainer.OnStep = (_, _, _) => steps++;
            trainer.StopRequested = () => steps >= 10;
            trainer.RunEpoch(0);
            return session.Model.Parameters.ToArray();
        }
        Assert.That(Weights(true), Is.EqualTo(Weights(false)));
    }

    /// <summary>--precision fp16 and bf16 on OpenCL (ushort storage, no cl_khr_fp16 needed): the scaler keeps a 1e-8 gradient that
    /// fp16 alone loses, an inf step is skipped with the weights bit-identical, and every category equals the estimate.</summary>
    [Test]
    public void MixedPrecision_ScalesSkipsAndCountsExactly()
    {
        MixedPrecision.CheckUnderflow(Device);
        MixedPrecision.CheckSkippedStep(Device);
        foreach (var precision in new[] { Precision.Fp16, Precision.Bf16 })
            MixedPrecision.CheckMemory(Device, precision, [128], 64, "adam");
    }

    /// <summary>The 16-bit Conv2d and MaxPool2d kernels on OpenCL against the reference, and the conv net's bytes in 16 bits exact.</summary>
    [Test]
    public void MixedPrecision_ConvKernelsAndTheConvNetsBytes()
    {
        var ops = IlgpuBackend.For(Device.Accelerator);
        foreach (var format in new[] { HalfFormat.Fp16, HalfFormat.Bf16 })
        {
            MixedPrecision.CheckConvKernels(ops, Device.Accelerator, format, new ConvShape(3, 8, 6, 5, 3, 0), 3, $"opencl {format} no padding");
            MixedPrecision.CheckConvKernels(ops, Device.Accelerator, format, new ConvShape(6, 13, 11, 9, 3, 1), 2, $"opencl {format} odd sizes");
        }
        foreach (var precision in new[] { Precision.Fp16, Precision.Bf16 })
            MixedPrecision.CheckConvMemory(Device, precision, null, 4, "adam");
    }

    [TestCase("opencl", "host")]
    [TestCase("host", "opencl")]
    public void Checkpoint_ResumesOnTheOtherBackend(string first, string second)
    {
        string data = TestData.EmbeddedFolder();
        string ckpt = Path.Combine(TestData.NewFolder(), "cross.ckpt");
        string[] Matmul(string device) => device == "opencl" ? ["--matmul", "blocked"] : [];
        var a = CliRunner.Run(["train", "--device", first, .. Matmul(first), "--data", data, "--save", ckpt]);
        Assert.That(a.ExitCode, Is.Zero, a.Stderr);
        var b = CliRunner.Run(["train", "--device", second, .. Matmul(second), "--data", data, "--resume", ckpt, "--epochs", "2"]);
        Assert.That(b.ExitCode, Is.Zero, b.Stderr);
        Assert.That(b.Stdout, Does.Contain("resumed from").And.Contain("epoch 2/2: loss "));
        // The same run on one backend: the two backends sum in other orders, so the losses agree closely, not bitwise.
        var whole = CliRunner.Run(["train", "--device", "host", "--data", data, "--epochs", "2"]);
        double Loss(string stdout) => double.Parse(System.Text.RegularExpressions.Regex.Match(stdout, @"epoch 2/2: loss (\d+\.\d+)").Groups[1].Value,
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(Loss(b.Stdout), Is.EqualTo(Loss(whole.Stdout)).Within(2e-3));
    }

    [Test]
    public void AdvertisedMaxBuffer_IsShownAndEnforcedBeforeTheDriver()
    {
        long cap = Device.MaxBufferBytes ?? throw new AssertionException("PoCL advertises CL_DEVICE_MAX_MEM_ALLOC_SIZE");
        Assert.That(CliRunner.Run("devices").Stdout, Does.Contain($"max buffer {Bytes.Format(cap)}"));
        var tracker = new MemoryTracker(Device.Accelerator, limit: null, maxBufferBytes: Device.MaxBufferBytes);
        int floats = checked((int)(cap / 4 + 1));
        var e = Assert.Throws<DeviceMemoryException>(() => tracker.Allocate<float>("over.cap", [floats], MemoryCategory.Other))!;
        Assert.That(e.Message, Does.Contain("larger than the largest single buffer allowed"));
        Assert.That(e.InnerException, Is.Null, "refused by ScratchNet, not by the driver");
        // A training session on this device carries the cap into its tracker.
        using var session = new TrainingSession(Device, new TrainConfig { Matmul = Kernels.MatmulVersion.Blocked }, FeatureShape.Image(1, 28, 28), 10);
        Assert.That(session.Tracker.MaxBufferBytes, Is.EqualTo(cap));
    }

    [Test]
    public void MatmulAuto_IsTheDefault_AndTimesAllThreeVersions()
    {
        var r = CliRunner.Run("train", "--device", "opencl", "--data", TestData.EmbeddedFolder());
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Match(@"matmul auto: (naive|blocked|tiled|vector) \(naive [\d.]+ ms, blocked [\d.]+ ms, tiled [\d.]+ ms, vector [\d.]+ ms for one step's matmuls\)"));
    }

    [Test]
    public void ARealDriverRefusal_GivesTheOutOfMemoryMessage()
    {
        // More than the device's whole global memory in one buffer, with ScratchNet's own cap switched off so
        // the driver itself must say no (PoCL accepts a little over its advertised per-buffer cap, not this).
        long bytes = (Device.TotalMemory ?? throw new AssertionException("PoCL reports its memory")) * 4;
        var tracker = new MemoryTracker(Device.Accelerator, limit: null, maxBufferBytes: null);
        var e = Assert.Throws<DeviceMemoryException>(() => tracker.Allocate<float>("whole.memory.x4", [16, checked((int)(bytes / 64))], MemoryCategory.Other))!;
        Assert.That(e.Message, Does.StartWith("out of device memory: allocating").And.Contain("failed: the device refused it"));
        Assert.That(e.InnerException, Is.InstanceOf<ILGPU.Runtime.AcceleratorException>());
        Assert.That(tracker.LiveBytes, Is.Zero);
    }
}
