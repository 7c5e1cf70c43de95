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
    /// The same, with every thread of the .NET thread pool blocked from step 5 to 25. The batch prefetch used to be
    /// a thread-pool work item: queueing it allocated on the training thread when the pool had to start a thread
    /// (4,280 B in 20 steps once in CI, after the pool's idle threads had retired), and into a blocked pool the batch
    /// waited for the pool to add a thread. It has a thread of its own now: no batch goes through the pool.
    /// </summary>
    [Test]
    public void WithTheThreadPoolBlocked_StepsAllocateNothing_AndNoBatchGoesThroughThePool()
    {
        using var d = ComputeDevice.Create("host");
        var data = DatasetLoader.LoadEmbedded(null);
        using var session = new TrainingSession(d, new TrainConfig(), FeatureShape.Image(1, 28, 28), 10);
        var trainer = new Trainer(session, data);
        bool released = false;
        int blocked = 0;
        long managedAt5 = 0, managedAt25 = 0, completedAt5 = 0, completedAt25 = 0;
        trainer.OnStep = (_, b, _) =>
        {
            if (b == 5)
            {
                int threads = ThreadPool.ThreadCount;
                for (int i = 0; i < threads; i++)
                    ThreadPool.UnsafeQueueUserWorkItem(_ =>
                    {
                        Interlocked.Increment(ref blocked);
                        while (!Volatile.Read(ref released)) Thread.Sleep(1);   // not a wait the pool sees, so it does not add threads at once
                    }, null);
                var waited = System.Diagnostics.Stopwatch.StartNew();
                while (Volatile.Read(ref blocked) < threads && waited.ElapsedMilliseconds < 5000) Thread.Sleep(1);
                completedAt5 = ThreadPool.CompletedWorkItemCount;
                managedAt5 = GC.GetAllocatedBytesForCurrentThread();
            }
            if (b == 25)
            {
                managedAt25 = GC.GetAllocatedBytesForCurrentThread();
                completedAt25 = ThreadPool.CompletedWorkItemCount;
                Volatile.Write(ref released, true);
            }
        };
        try
        {
            trainer.RunEpoch(0);
        }
        finally
        {
            Volatile.Write(ref released, true);
        }
        Assert.That(completedAt25 - completedAt5, Is.LessThan(10), "work items the thread pool completed in 20 steps (each prefetched batch was one)");
        Assert.That(managedAt25 - managedAt5, Is.Zero, "a step allocates no managed memory while the thread pool is starved");
    }
}
