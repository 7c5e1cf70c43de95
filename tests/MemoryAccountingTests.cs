using NUnit.Framework;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>Measured bytes per category equal the closed form, for the lesson's two MLPs.</summary>
[TestFixture]
public sealed class MemoryAccountingTests
{
    static IEnumerable<TestCaseData> Cases()
    {
        foreach (int input in new[] { 784, 3072 })
            foreach (int batch in new[] { 1, 64, 1000 })
                foreach (string optimizer in TrainConfig.OptimizerChoices)
                    yield return new TestCaseData(input, batch, optimizer);
    }

    [TestCaseSource(nameof(Cases))]
    public void MeasuredEqualsEstimate_AfterATrainingStep(int input, int batch, string optimizer)
    {
        var config = new TrainConfig { BatchSize = batch, Optimizer = optimizer };
        using var session = new TrainingSession(Shared.Cpu, config, FeatureShape.Image(input, 1, 1), 10);
        var r = new Random(1);
        float[] x = Reference.RandomFloats(r, batch * input);
        int[] y = Enumerable.Range(0, batch).Select(_ => r.Next(10)).ToArray();
        session.Upload(x, y, batch);
        session.TrainStep(y, batch);
        long allocationsAfterFirst = session.Tracker.AllocationCount;
        session.TrainStep(y, batch);
        Assert.That(session.Tracker.AllocationCount - allocationsAfterFirst, Is.Zero, "the second step allocates nothing");

        MemoryEstimate estimate = session.Estimate();
        foreach (MemoryCategory c in Enum.GetValues<MemoryCategory>())
        {
            Assert.That(session.Tracker.Stats(c).Live, Is.EqualTo(estimate[c]), $"{c} live");
            Assert.That(session.Tracker.Stats(c).Peak, Is.EqualTo(estimate[c]), $"{c} peak");
        }
        long p = input == 784 ? 101_770 : 394_634;
        Assert.That(session.Model.ParameterCount, Is.EqualTo(p));
        Assert.That(estimate[MemoryCategory.Parameter], Is.EqualTo(4 * p));
        Assert.That(estimate[MemoryCategory.OptimizerState], Is.EqualTo(optimizer switch { "adam" => 8 * p, "momentum" => 4 * p, _ => 0 }));
    }

    [Test]
    public void LessonDefaults_HaveTheLessonsFigures()
    {
        var e = MemoryEstimator.Estimate(new TrainConfig().Network(FeatureShape.Image(1, 28, 28), 10), 64, "adam");
        Assert.That(e[MemoryCategory.Parameter], Is.EqualTo(407_080));
        Assert.That(e[MemoryCategory.Gradient], Is.EqualTo(407_080));
        Assert.That(e[MemoryCategory.OptimizerState], Is.EqualTo(814_160));
        Assert.That(e[MemoryCategory.Input], Is.EqualTo(200_704 + 256));
    }

    [Test]
    public void Limit_RejectsTheAllocationThatDoesNotFit_AndNamesIt()
    {
        var config = new TrainConfig { BatchSize = 64, MemoryLimit = 1_000_000 };
        var e = Assert.Throws<DeviceMemoryException>(() => new TrainingSession(Shared.Cpu, config, FeatureShape.Image(1, 28, 28), 10))!;
        Assert.That(e.TensorName, Is.EqualTo("adam.m"));
        Assert.That(e.FullMessage, Does.Contain("407,080 B for 'adam.m' [101770] (OptimizerState)")
            .And.Contain("limit 1,000,000 B").And.Contain("Parameter 407,080 B").And.Contain("--optimizer sgd"));
    }

    [Test]
    public void Tracker_RecordsEveryAllocationAndFree()
    {
        var t = Shared.NewTracker();
        using (var a = t.Allocate<float>("a", [3, 5], MemoryCategory.Activation))
        using (var b = t.Allocate<int>("b", [7], MemoryCategory.Input))
        {
            Assert.That(t.LiveBytes, Is.EqualTo(60 + 28));
        }
        Assert.That(t.LiveBytes, Is.Zero);
        Assert.That(t.PeakBytes, Is.EqualTo(88));
        Assert.That(t.Events.Select(e => (e.Kind, e.Name, e.LiveAfter)), Is.EqualTo(new[]
        {
            (MemoryEventKind.Alloc, "a", 60L), (MemoryEventKind.Alloc, "b", 88L),
            (MemoryEventKind.Free, "b", 60L), (MemoryEventKind.Free, "a", 0L),
        }));
        Assert.That((t.AllocationCount, t.FreeCount), Is.EqualTo((2, 2)));
    }
}
