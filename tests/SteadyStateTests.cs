using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>After warm-up, a training step allocates nothing: no device buffer, and on the host backend no managed memory either.</summary>
[TestFixture]
public sealed class SteadyStateTests
{
    [TestCase("host")]
    [TestCase("cpu")]
    public void TrainingSteps_AllocateNoDeviceBuffers_AndMeasureTheirManagedBytes(string device)
    {
        using var d = ComputeDevice.Create(device);
        var data = DatasetLoader.LoadEmbedded(null);
        using var session = new TrainingSession(d, new TrainConfig(), FeatureShape.Image(1, 28, 28), 10);
        var trainer = new Trainer(session, data);
        long deviceAllocations = -1, managedAt5 = 0, managedAt25 = 0;
        trainer.OnStep = (_, b, _) =>
        {
            if (b == 0) deviceAllocations = session.Tracker.AllocationCount;
            if (b == 5) managedAt5 = GC.GetAllocatedBytesForCurrentThread();
            if (b == 25) managedAt25 = GC.GetAllocatedBytesForCurrentThread();
        };
        trainer.RunEpoch(0);
        Assert.That(session.Tracker.AllocationCount, Is.EqualTo(deviceAllocations), "no device allocation after the first step");
        long perStep = (managedAt25 - managedAt5) / 20;
        TestContext.Progress.WriteLine($"{device}: {perStep} managed bytes per training step on the training thread");
        if (device == "host")
            Assert.That(managedAt25 - managedAt5, Is.Zero, "a host training step allocates no managed memory");
    }
}
