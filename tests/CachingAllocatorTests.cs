using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// The caching allocator against the figures PyTorch's CUDA caching allocator gives (c10/cuda/CUDACachingAllocator.cpp
/// with its default configuration): rounding, pools, segment sizes, splitting, merging, release and retry. Every
/// segment is a real buffer on the CPU accelerator.
/// </summary>
[TestFixture]
public sealed class CachingAllocatorTests
{
    const long MiB = 1_048_576;

    static CachingAllocator NewAllocator() => new(Shared.Cpu.Accelerator);

    [Test]
    public void A40ByteRequest_IsA512ByteBlockInA2MiBSegment()
    {
        using var a = NewAllocator();
        var b = a.Allocate(40)!;
        Assert.That((b.Size, a.Allocated, a.Reserved, b.Segment.IsSmall), Is.EqualTo((512L, 512L, 2_097_152L, true)));
        Assert.That(b.Offset, Is.Zero);
    }

    [TestCase(1_048_576L, true, 2_097_152L, 1_048_576L)]
    [TestCase(1_048_577L, false, 20_971_520L, 1_049_088L)]
    [TestCase(10_485_248L, false, 20_971_520L, 10_485_248L)]   // 10 MiB - 512 B: the largest request of a 20 MiB segment
    [TestCase(10_485_249L, false, 10_485_760L, 10_485_760L)]   // rounds to 10 MiB: the pool is chosen on the rounded size
    [TestCase(10_485_760L, false, 10_485_760L, 10_485_760L)]   // kMinLargeAlloc: a segment of its own, rounded to 2 MiB
    [TestCase(12 * MiB + 1, false, 14_680_064L, 12 * MiB + 512)]
    public void PoolsAndSegmentSizes_FollowPyTorchsBoundaries(long request, bool small, long reserved, long allocated)
    {
        using var a = NewAllocator();
        var b = a.Allocate(request)!;
        Assert.That(b.Segment.IsSmall, Is.EqualTo(small), "pool");
        Assert.That(a.Reserved, Is.EqualTo(reserved), "reserved");
        Assert.That(a.Allocated, Is.EqualTo(allocated), "allocated");
    }

    [Test]
    public void SixBlocksOf3MiB_FreeingEveryOther_ThenA4MiBRequest_NeedsASecondSegment()
    {
        using var a = NewAllocator();
        var blocks = Enumerable.Range(0, 6).Select(_ => a.Allocate(3 * MiB)!).ToArray();
        Assert.That(a.Reserved, Is.EqualTo(20_971_520), "six 3 MiB blocks share one 20 MiB segment");
        a.Free(blocks[0]);
        a.Free(blocks[2]);
        a.Free(blocks[4]);
        var big = a.Allocate(4 * MiB)!;
        Assert.That(a.Allocated, Is.EqualTo(13_631_488));
        Assert.That(a.Reserved, Is.EqualTo(41_943_040));
        Assert.That(big.Segment, Is.Not.SameAs(blocks[1].Segment), "no free 3 MiB hole holds 4 MiB: fragmentation");
        Assert.That(a.LargestFreeBlock, Is.EqualTo(16 * MiB), "the new segment's rest (20 - 4 MiB)");
    }

    [Test]
    public void BestFit_TakesTheSmallestFreeBlockThatHoldsTheRequest()
    {
        using var a = NewAllocator();
        var x = a.Allocate(4096)!;
        var gap1 = a.Allocate(1024)!;
        var y = a.Allocate(4096)!;
        var gap2 = a.Allocate(3072)!;
        var z = a.Allocate(4096)!;
        a.Free(gap2);   // a 3,072 B hole
        a.Free(gap1);   // a 1,024 B hole
        var c = a.Allocate(1000)!;
        Assert.That(c.Offset, Is.EqualTo(gap1.Offset), "1,000 B rounds to 1,024 and fits the 1,024 B hole exactly");
        var d = a.Allocate(2000)!;
        Assert.That((d.Offset, d.Size), Is.EqualTo((4096L + 1024 + 4096, 2048L)), "2,048 B from the 3,072 B hole, split");
        GC.KeepAlive((x, y, z));
    }

    [Test]
    public void SmallPoolSplits512ByteRemainders_LargePoolOnlyThoseOverOneMiB()
    {
        using var a = NewAllocator();
        var s1 = a.Allocate(MiB)!;           // the small pool's largest request: half of a 2 MiB segment, the rest split off
        var s2 = a.Allocate(MiB - 512)!;     // from that rest, leaving 512 B: split too
        Assert.That((s1.Segment, s2.Offset, s2.Size, s2.Next!.Size), Is.EqualTo((s2.Segment, MiB, MiB - 512, 512L)));

        var l1 = a.Allocate(19 * MiB / 2)!;  // 9.5 MiB in a 20 MiB segment: 10.5 MiB left, more than 1 MiB: split
        Assert.That((l1.Size, l1.Next!.Size), Is.EqualTo((19 * MiB / 2, 21 * MiB / 2)));
        var l2 = a.Allocate(19 * MiB / 2)!;  // from the 10.5 MiB rest: 1 MiB would be left, not more than 1 MiB: not split
        Assert.That((l2.Segment, l2.Size, l2.Next), Is.EqualTo((l1.Segment, 21 * MiB / 2, (CachingAllocator.Block?)null)));
        Assert.That(a.Allocated, Is.EqualTo(2 * MiB - 512 + 20 * MiB), "allocated counts the whole unsplit block");
        Assert.That(a.Reserved, Is.EqualTo(22 * MiB));
    }

    [Test]
    public void FreedNeighbours_Merge_AndReleaseCacheReturnsOnlyWhollyFreeSegments()
    {
        using var a = NewAllocator();
        var p = a.Allocate(1000)!;
        var q = a.Allocate(1000)!;
        var r = a.Allocate(1000)!;
        var other = a.Allocate(5 * MiB)!;
        a.Free(p);
        a.Free(r);
        Assert.That(a.LargestFreeBlock, Is.EqualTo(15 * MiB), "the large segment's rest");
        Assert.That(a.ReleaseCache(), Is.Zero, "both segments have a block in use");
        a.Free(q);
        var only = a.Segments.Single(s => s.IsSmall).Blocks().ToList();
        Assert.That(only.Select(b => (b.Offset, b.Size, b.InUse)), Is.EqualTo(new[] { (0L, 2 * MiB, false) }), "p, q, r and the rest merged into one block");
        Assert.That(a.ReleaseCache(), Is.EqualTo(2 * MiB));
        Assert.That((a.Reserved, a.Allocated, a.Segments.Count), Is.EqualTo((20 * MiB, 5 * MiB, 1)));
        a.Free(other);
        Assert.That(a.ReleaseCache(), Is.EqualTo(20 * MiB));
        Assert.That((a.Reserved, a.SegmentAllocations, a.SegmentFrees), Is.EqualTo((0L, 2, 2)));
    }

    [Test]
    public void OnALimit_TheCachedSegmentsAreReleased_AndTheRequestRetried()
    {
        using var a = NewAllocator();
        a.Limit = 22 * MiB;
        var small = a.Allocate(1000)!;                  // 2 MiB segment
        a.Free(small);                                  // cached: reserved stays 2 MiB
        Assert.That(a.Reserved, Is.EqualTo(2 * MiB));
        var large = a.Allocate(3 * MiB);                // a 20 MiB segment needs 22 MiB: fits exactly
        Assert.That(large, Is.Not.Null);
        Assert.That(a.Reserved, Is.EqualTo(22 * MiB));
        a.Free(large!);
        var again = a.Allocate(900 * 1024)!;            // the cached 2 MiB segment serves it
        Assert.That(again.Segment.IsSmall, Is.True);
        a.Free(again);
        var big = a.Allocate(21 * MiB);                 // 22 MiB segment: only after both cached segments are released
        Assert.That(big, Is.Not.Null);
        Assert.That((a.Reserved, a.SegmentFrees), Is.EqualTo((22 * MiB, 2)));
        Assert.That(a.Allocate(1000), Is.Null, "nothing cached is left to release");
        Assert.That(a.LastRefusal, Does.Contain("over the memory limit of 23,068,672 B"));
    }

    [Test]
    public void EveryBlockOffset_IsAMultipleOf512()
    {
        using var a = NewAllocator();
        var r = new Random(7);
        var live = new List<CachingAllocator.Block>();
        for (int i = 0; i < 400; i++)
        {
            if (live.Count > 0 && r.Next(3) == 0)
            {
                int k = r.Next(live.Count);
                a.Free(live[k]);
                live.RemoveAt(k);
            }
            else live.Add(a.Allocate(r.Next(1, 3 * (int)MiB))!);
        }
        Assert.That(live.All(b => b.Offset % 512 == 0 && b.Size % 512 == 0), Is.True);
        Assert.That(a.Allocated, Is.EqualTo(live.Sum(b => b.Size)));
        foreach (var s in a.Segments)
        {
            var blocks = s.Blocks().ToList();
            Assert.That(blocks.Sum(b => b.Size), Is.EqualTo(s.Size), "a segment's blocks tile it");
            Assert.That(blocks.Zip(blocks.Skip(1)).All(p => p.First.Offset + p.First.Size == p.Second.Offset && !(!p.First.InUse && !p.Second.InUse)), Is.True,
                "blocks are contiguous and no two free blocks are neighbours");
        }
    }

    [Test]
    public void TensorsInOneSegment_KeepTheirOwnValues()
    {
        using var tracker = new MemoryTracker(Shared.Cpu.Accelerator, allocator: AllocatorKind.Caching);
        var a = tracker.Allocate<float>("a", [3], MemoryCategory.Other);
        var b = tracker.Allocate<int>("b", [129], MemoryCategory.Other);
        var c = tracker.Allocate<float>("c", [5], MemoryCategory.Other);
        Assert.That(a.Block!.Segment, Is.SameAs(c.Block!.Segment));
        Assert.That((b.Block!.Offset, c.Block.Offset), Is.EqualTo((512L, 1536L)), "a: 12 B -> 512; b: 516 B -> 1,024");
        a.CopyFrom([1f, 2f, 3f]);
        b.CopyFrom(Enumerable.Range(0, 129).ToArray());
        c.CopyFrom([9f, 8f, 7f, 6f, 5f]);
        Assert.That(a.ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f }));
        Assert.That(b.ToArray(), Is.EqualTo(Enumerable.Range(0, 129).ToArray()));
        Assert.That(c.ToArray(), Is.EqualTo(new[] { 9f, 8f, 7f, 6f, 5f }));
        Assert.That((tracker.LiveBytes, tracker.AllocatedBytes, tracker.ReservedBytes), Is.EqualTo((12L + 516 + 20, 2048L, 2_097_152L)));
        b.Dispose();
        var d = tracker.Allocate<float>("d", [2], MemoryCategory.Other);
        Assert.That(d.Block!.Offset, Is.EqualTo(512), "d reuses b's freed block");
        Assert.That(d.ToArray(), Is.EqualTo(new[] { 0f, 0f }), "a new tensor is zero, as with the exact allocator");
        foreach (var t in new IDisposable[] { a, c, d }) t.Dispose();
        Assert.That((tracker.LiveBytes, tracker.AllocatedBytes, tracker.ReservedBytes), Is.EqualTo((0L, 0L, 2_097_152L)), "the segment stays cached");
        Assert.That(tracker.ReleaseCache(), Is.EqualTo(2_097_152));
        Assert.That(tracker.Events.Select(e => e.Kind), Does.Contain(MemoryEventKind.SegmentAlloc).And.Contain(MemoryEventKind.SegmentFree));
    }

    [Test]
    public void TheLessonsMlp_ParametersTake407552AllocatedBytes()
    {
        using var session = new TrainingSession(Shared.Host, new TrainConfig { Allocator = AllocatorKind.Caching }, FeatureShape.Image(1, 28, 28), 10);
        var parameters = session.Model.Parameters;
        Assert.That(parameters.Bytes, Is.EqualTo(407_080));
        Assert.That(parameters.Block!.Size, Is.EqualTo(407_552), "407,080 B rounded up to a multiple of 512 B");
        Assert.That(session.Tracker.Stats(MemoryCategory.Parameter).AllocatedLive, Is.EqualTo(407_552));
    }

    [TestCase("host", "cnn")]
    [TestCase("cpu", "mlp")]
    public void TrainingWithTheCachingAllocator_GivesTheSameLossesAsTheExactOne(string device, string model)
    {
        var data = DatasetLoader.LoadEmbedded(null);
        double[] Losses(AllocatorKind allocator)
        {
            using var d = ComputeDevice.Create(device);
            using var session = new TrainingSession(d, new TrainConfig { Allocator = allocator, Model = model, BatchSize = 16 }, FeatureShape.Image(1, 28, 28), 10);
            var trainer = new Trainer(session, data);
            var losses = new List<double>();
            trainer.OnStep = (_, b, loss) => { if (b < 20) losses.Add(loss); };
            trainer.StopRequested = () => losses.Count >= 20;
            trainer.RunEpoch(0);
            if (allocator == AllocatorKind.Caching)
                Assert.That(session.Tracker.ReservedBytes, Is.GreaterThan(session.Tracker.AllocatedBytes), "the caching allocator was in use");
            return [.. losses];
        }
        Assert.That(Losses(AllocatorKind.Caching), Is.EqualTo(Losses(AllocatorKind.Exact)));
    }
}
