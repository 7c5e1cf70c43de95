using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// --lifetime eager: buffers made and freed as under autograd. The peak of requested bytes equals the closed form
/// (EagerEstimate) to the byte, at the phase and allocation it names; training gives the same numbers as planned mode.
/// </summary>
[TestFixture]
public sealed class EagerLifetimeTests
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    static IEnumerable<TestCaseData> Sweep()
    {
        foreach (string model in new[] { "mlp", "cnn" })
            foreach (int batch in new[] { 1, 16, 64, 256, 1024 })
                yield return new TestCaseData(model, batch);
    }

    [TestCaseSource(nameof(Sweep))]
    public void EagerPeak_EqualsTheEstimate_AtThePhaseAndAllocationItNames(string model, int batch)
    {
        var config = new TrainConfig { Model = model, BatchSize = batch, Lifetime = LifetimeKind.Eager, Allocator = AllocatorKind.Caching };
        ProbeResult probe = MemoryProbe.Run(Shared.Host, config, Data);
        var e = probe.EagerEstimate!;
        Assert.That((probe.PeakTotal, probe.PeakPhase, probe.PeakName), Is.EqualTo((e.Peak, e.Phase, e.Name)));
        foreach (var c in probe.Categories)
        {
            Assert.That(c.Peak, Is.EqualTo(c.PeakEstimate), $"{c.Category} peak");
            Assert.That(c.Live, Is.EqualTo(c.Estimate), $"{c.Category} after the steps");
        }
        Assert.That(probe.Categories.Single(c => c.Category == "Activation").Live, Is.Zero, "no activation outlives a step");
        Assert.That(probe.Categories.Single(c => c.Category == "Gradient").Live, Is.Zero, "gradients are freed after the optimizer step");
        Assert.That(probe.AllocationsDuringSteps, Is.GreaterThan(0));
        Assert.That(probe.PeakTotal, Is.LessThan(probe.PlannedTotal), "eager holds less at its peak than planned holds all along");
        Assert.That(probe.Allocation.PeakAllocated, Is.GreaterThanOrEqualTo(probe.PeakTotal), "the allocator's rounding");
        Assert.That(probe.Allocation.PeakReserved, Is.GreaterThanOrEqualTo(probe.Allocation.PeakAllocated));
    }

    [TestCase("cpu", "cnn", ConvVersion.Im2col, 5)]
    [TestCase("cpu", "cnn", ConvVersion.Direct, 3)]
    [TestCase("cpu", "mlp", ConvVersion.Im2col, 7)]
    public void EagerPeak_EqualsTheEstimate_OnTheCpuAccelerator(string device, string model, ConvVersion conv, int batch)
    {
        using var d = ComputeDevice.Create(device);
        ProbeResult probe = MemoryProbe.Run(d, new TrainConfig { Model = model, BatchSize = batch, Conv = conv, Lifetime = LifetimeKind.Eager }, Data);
        var e = probe.EagerEstimate!;
        Assert.That((probe.PeakTotal, probe.PeakPhase, probe.PeakName), Is.EqualTo((e.Peak, e.Phase, e.Name)));
        Assert.That(probe.TotalLive, Is.EqualTo(probe.TotalEstimate));
    }

    [TestCase("maxpool2,conv5x5:3:p0,relu,flatten,linear:10", ConvVersion.Im2col, 9)]
    [TestCase("conv1x1:4,conv3x3:5,relu,relu,maxpool2,flatten,linear:7,relu,relu,linear:10", ConvVersion.Direct, 5)]
    [TestCase("flatten,linear:33,relu,linear:17,linear:10", ConvVersion.Im2col, 13)]
    [TestCase("conv3x3:8:p2,maxpool2,relu,conv3x3:8,maxpool2,flatten,linear:10", ConvVersion.Im2col, 1)]
    public void EagerPeak_EqualsTheEstimate_ForOtherStacks(string layers, ConvVersion conv, int batch)
    {
        var config = new TrainConfig { Layers = layers, Conv = conv, BatchSize = batch, Lifetime = LifetimeKind.Eager, Optimizer = "momentum" };
        ProbeResult probe = MemoryProbe.Run(Shared.Host, config, Data);
        var e = probe.EagerEstimate!;
        Assert.That((probe.PeakTotal, probe.PeakPhase, probe.PeakName), Is.EqualTo((e.Peak, e.Phase, e.Name)));
        foreach (var c in probe.Categories) Assert.That((c.Live, c.Peak), Is.EqualTo((c.Estimate, c.PeakEstimate)), c.Category);
    }

    [Test]
    public void TheAllocationThatReachesThePeak_MovesWithTheBatch()
    {
        string Peak(int batch) => EagerEstimate.Estimate(new TrainConfig { Model = "cnn" }.Network(Data.Train.Info), batch, "adam", null).Name;
        Assert.That(Peak(1), Is.EqualTo("conv2.cols"), "at batch 1 conv2's im2col workspace in backward tips it");
        Assert.That(Peak(64), Is.EqualTo("conv2.relu.out.grad"), "from then on the gradient flowing into conv2");
    }

    [TestCase("host", "cnn")]
    [TestCase("cpu", "mlp")]
    public void Training_GivesTheSameLossesAndWeights_AsPlannedLifetimes(string device, string model)
    {
        (double[] Losses, float[] Weights, long Allocations) Run(LifetimeKind lifetime)
        {
            using var d = ComputeDevice.Create(device);
            using var session = new TrainingSession(d, new TrainConfig { Model = model, BatchSize = 16, Lifetime = lifetime }, FeatureShape.Image(1, 28, 28), 10);
            var trainer = new Trainer(session, Data);
            var losses = new List<double>();
            long before = session.Tracker.AllocationCount;
            trainer.OnStep = (_, _, loss) => losses.Add(loss);
            trainer.StopRequested = () => losses.Count >= 20;
            trainer.RunEpoch(0);
            return ([.. losses], session.Model.Parameters.ToArray(), session.Tracker.AllocationCount - before);
        }
        var planned = Run(LifetimeKind.Planned);
        var eager = Run(LifetimeKind.Eager);
        Assert.That(eager.Losses, Is.EqualTo(planned.Losses));
        Assert.That(eager.Weights, Is.EqualTo(planned.Weights), "bit-identical weights after 20 steps");
        Assert.That(planned.Allocations, Is.Zero);
        Assert.That(eager.Allocations, Is.GreaterThan(20));
    }

    [Test]
    public void EvaluationAndGradients_AreTheSameInBothModes()
    {
        float[] Gradients(LifetimeKind lifetime, out int correct)
        {
            using var session = new TrainingSession(Shared.Host, new TrainConfig { Model = "cnn", BatchSize = 8, Lifetime = lifetime }, FeatureShape.Image(1, 28, 28), 10);
            var images = new float[8 * 784];
            var labels = new int[8];
            var normalizer = new Normalizer(Data.Train.Info);
            for (int i = 0; i < 8; i++)
            {
                normalizer.Normalize(Data.Train.Image(i), images.AsSpan(i * 784, 784));
                labels[i] = Data.Train.Labels[i];
            }
            session.Upload(images, labels, 8);
            correct = session.EvaluateBatch(labels, 8);
            session.TrainForwardBackward(8);
            return session.Model.Gradients.ToArray();
        }
        var planned = Gradients(LifetimeKind.Planned, out int plannedCorrect);
        var eager = Gradients(LifetimeKind.Eager, out int eagerCorrect);
        Assert.That(eager, Is.EqualTo(planned));
        Assert.That(eagerCorrect, Is.EqualTo(plannedCorrect));
    }

    [Test]
    public void MemoryCommand_SaysThePeakIsExact()
    {
        var r = CliRunner.Run("memory", "--device", "host", "--data", TestData.EmbeddedFolder(), "--lifetime", "eager", "--model", "cnn");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("peak: estimate 24,609,696 B in backward, when 'conv2.relu.out.grad' is made; measured 24,609,696 B in backward, when 'conv2.relu.out.grad' was made: exact"));
        Assert.That(r.Stdout, Does.Contain("planned lifetimes hold 33,765,344 B for the whole run"));
        Assert.That(r.Stdout, Does.Not.Contain("DIFF").And.Not.Contain("UNEXPLAINED"));
    }

    [Test]
    public void AnEpochWithAPartialLastBatch_IsTheSameInBothModes()
    {
        EpochResult Run(LifetimeKind lifetime)
        {
            using var session = new TrainingSession(Shared.Host, new TrainConfig { BatchSize = 48, Lifetime = lifetime }, FeatureShape.Image(1, 28, 28), 10);
            Assume.That(Data.Train.Count % 48, Is.Not.Zero, "the last batch is partial");
            return new Trainer(session, Data).RunEpoch(0)!;
        }
        var planned = Run(LifetimeKind.Planned);
        var eager = Run(LifetimeKind.Eager);
        Assert.That((eager.Loss, eager.TrainAccuracy, eager.TestAccuracy), Is.EqualTo((planned.Loss, planned.TrainAccuracy, planned.TestAccuracy)));
    }

    [Test]
    public void AlternatingBatchSizes_GrowReserved_WhileAllocatedDoesNot_AndReleaseCacheGivesItBack()
    {
        var r = CliRunner.Run("memory", "--json", "--device", "host", "--data", TestData.EmbeddedFolder(), "--model", "cnn",
            "--lifetime", "eager", "--allocator", "caching", "--alternate", "64,100", "--rounds", "2", "--release-cache");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var a = doc.RootElement.GetProperty("alternation");
        var steps = a.GetProperty("steps").EnumerateArray().ToList();
        Assert.That(steps.Select(s => s.GetProperty("batch").GetInt32()), Is.EqualTo(new[] { 64, 100, 64, 100 }));
        long Reserved(int i) => steps[i].GetProperty("reservedAfter").GetInt64();
        long Allocated(int i) => steps[i].GetProperty("allocatedPeak").GetInt64();
        Assert.That(Reserved(1), Is.GreaterThan(Reserved(0)), "the batch of 100 needs segments the cache of batch 64 could not give");
        Assert.That(Allocated(2), Is.EqualTo(Allocated(0)), "the same batch allocates the same");
        Assert.That(Reserved(3), Is.GreaterThan(steps.Max(s => s.GetProperty("allocatedPeak").GetInt64())), "more is reserved than was ever allocated at once");
        Assert.That(a.GetProperty("releasedBytes").GetInt64(), Is.GreaterThan(0));
        Assert.That(a.GetProperty("reservedAfterRelease").GetInt64(), Is.EqualTo(a.GetProperty("reservedBefore").GetInt64() - a.GetProperty("releasedBytes").GetInt64()));
    }

    [Test]
    public void AStepStoppedByOutOfMemory_LeavesNothingBehind_WhenTheSessionIsDisposed()
    {
        var tracker = (MemoryTracker?)null;
        var e = Assert.Throws<DeviceMemoryException>(() =>
        {
            // 2,500,000 B: the model, Adam's state and the input fit; the step's activations and gradients do not.
            using var s = new TrainingSession(Shared.Host, new TrainConfig { BatchSize = 256, Lifetime = LifetimeKind.Eager, MemoryLimit = 2_500_000 },
                FeatureShape.Image(1, 28, 28), 10);
            tracker = s.Tracker;
            var images = new float[256 * 784];
            var labels = new int[256];
            s.Upload(images, labels, 256);
            s.TrainStep(labels, 256);
        })!;
        Assert.That(e.Message, Does.Contain("over the memory limit"));
        Assert.That(tracker, Is.Not.Null, "the session was made; the step ran out");
        Assert.That((tracker!.LiveBytes, tracker.LiveTensors.Count), Is.EqualTo((0L, 0)), "every buffer freed, the step's included");
    }

    [TestCase("--release-cache", "--alternate", "64,100")]
    [TestCase("--release-cache", "--allocator", "caching")]
    [TestCase("--rounds", "2")]
    [TestCase("--alternate", "64", "--rounds", "1001")]
    [TestCase("--alternate", "64,100000000")]
    public void ReleaseCacheAndRounds_WithoutWhatTheyNeed_AreOneLineErrors(params string[] args)
    {
        var r = CliRunner.Run(["memory", "--device", "host", "--data", TestData.EmbeddedFolder(), .. args]);
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
    }
}

/// <summary>The out-of-memory hints with eager lifetimes and the caching allocator: following them works, one more does not.</summary>
[TestFixture]
public sealed class AdviceForNewModesTests
{
    const long Limit = 6_710_886;   // 6.4 MiB

    static bool Fits(TrainConfig config, int batch)
    {
        try
        {
            using var s = new TrainingSession(Shared.Host, config with { BatchSize = batch, MemoryLimit = Limit }, FeatureShape.Image(1, 28, 28), 10);
            var images = new float[batch * 784];
            var labels = new int[batch];
            for (int i = 0; i < 2; i++)
            {
                s.Upload(images, labels, batch);
                s.TrainStep(labels, batch);
            }
            return true;
        }
        catch (DeviceMemoryException)
        {
            return false;
        }
    }

    [TestCase(LifetimeKind.Eager, AllocatorKind.Exact, 1206, "(eager lifetimes)")]
    [TestCase(LifetimeKind.Planned, AllocatorKind.Caching, 334, "with the caching allocator's segments")]
    [TestCase(LifetimeKind.Eager, AllocatorKind.Caching, 334, "and running two steps")]
    public void TheHintedBatchFits_AndOneMoreDoesNot(LifetimeKind lifetime, AllocatorKind allocator, int expected, string how)
    {
        var config = new TrainConfig { Lifetime = lifetime, Allocator = allocator };
        var e = Assert.Throws<DeviceMemoryException>(() => Fits2000(config))!;
        Assert.That(e.Advice[0], Does.Contain($"is {expected} (--batch-size {expected})").And.Contain(how));
        Assert.That(Fits(config, expected), Is.True, $"batch {expected}");
        Assert.That(Fits(config, expected + 1), Is.False, $"batch {expected + 1}");
    }

    static void Fits2000(TrainConfig config)
    {
        using var s = new TrainingSession(Shared.Host, config with { BatchSize = 2000, MemoryLimit = Limit }, FeatureShape.Image(1, 28, 28), 10);
        var images = new float[2000 * 784];
        var labels = new int[2000];
        s.Upload(images, labels, 2000);
        try
        {
            s.TrainStep(labels, 2000);
        }
        catch (DeviceMemoryException e)
        {
            s.AddAdvice(e);
            throw;
        }
    }
}
