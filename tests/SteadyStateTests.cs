using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>After warm-up, a training step allocates nothing: no device buffer, and on the host backend no managed memory either.</summary>
[TestFixture]
public sealed class SteadyStateTests
{
    [TestCase("host", AllocatorKind.Exact)]
    [TestCase("cpu", AllocatorKind.Exact)]
    [TestCase("host", AllocatorKind.Caching)]
    [TestCase("host", AllocatorKind.Exact, 4)]
    public void TrainingSteps_AllocateNoDeviceBuffers_AndMeasureTheirManagedBytes(string device, AllocatorKind allocator, int accumulate = 1)
    {
        using var d = ComputeDevice.Create(device);
        var data = DatasetLoader.LoadEmbedded(null);
        using var session = new TrainingSession(d, new TrainConfig { Allocator = allocator, Accumulate = accumulate }, FeatureShape.Image(1, 28, 28), 10);
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

    /// <summary>
    /// The same, with the thread pool kept busy from step 5 to 25, so the next batch is late and the training
    /// thread has to wait for it: waiting must not allocate either (a ManualResetEventSlim allocated its lock
    /// object the first time a wait blocked, which failed the test above once in CI).
    /// </summary>
    [Test]
    public void WaitingForALateBatch_AllocatesNothing()
    {
        using var d = ComputeDevice.Create("host");
        var data = DatasetLoader.LoadEmbedded(null);
        using var session = new TrainingSession(d, new TrainConfig(), FeatureShape.Image(1, 28, 28), 10);
        var trainer = new Trainer(session, data);
        var busy = Enumerable.Range(0, 64).Select(_ => new BusyItem()).ToArray();
        // Grow the thread pool's queue first (its segments are allocated by whoever queues into a full one).
        BusyItem.Stop = true;
        for (int i = 0; i < 4; i++)
            foreach (var item in busy) ThreadPool.UnsafeQueueUserWorkItem(item, preferLocal: false);
        while (Volatile.Read(ref BusyItem.Runs) < 4 * busy.Length) Thread.Sleep(1);
        BusyItem.Stop = false;
        int runsBefore = BusyItem.Runs;
        long managedAt5 = 0, managedAt25 = 0;
        trainer.OnStep = (_, b, _) =>
        {
            if (b == 5)
            {
                managedAt5 = GC.GetAllocatedBytesForCurrentThread();
                foreach (var item in busy) ThreadPool.UnsafeQueueUserWorkItem(item, preferLocal: false);
            }
            if (b == 25)
            {
                managedAt25 = GC.GetAllocatedBytesForCurrentThread();
                BusyItem.Stop = true;
            }
        };
        try
        {
            trainer.RunEpoch(0);
        }
        finally
        {
            BusyItem.Stop = true;
        }
        Assert.That(BusyItem.Runs - runsBefore, Is.GreaterThan(busy.Length), "the thread pool was kept busy");
        Assert.That(managedAt25 - managedAt5, Is.Zero, "waiting for a late batch allocates no managed memory");
    }

    /// <summary>Occupies a thread-pool thread for 3 ms and queues itself again at the back, until stopped.</summary>
    sealed class BusyItem : IThreadPoolWorkItem
    {
        public static volatile bool Stop;
        public static int Runs;

        public void Execute()
        {
            Interlocked.Increment(ref Runs);
            Thread.Sleep(3);
            if (!Stop) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }
}
