using NUnit.Framework;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// The largest single buffer (OpenCL's CL_DEVICE_MAX_MEM_ALLOC_SIZE, or --max-buffer to make any device behave
/// like one): the tracker enforces it before asking the driver, the planner respects it beside the total
/// budget and says which binds, and the out-of-memory hint follows from it.
/// </summary>
[TestFixture]
public sealed class BufferCapTests
{
    [Test]
    public void Tracker_RefusesABufferAboveTheCap_BeforeTheDriverIsAsked()
    {
        var tracker = new MemoryTracker(Shared.Cpu.Accelerator, limit: null, maxBufferBytes: 1000);
        using (tracker.Allocate<float>("fits", [250], MemoryCategory.Other)) { }
        var e = Assert.Throws<DeviceMemoryException>(() => tracker.Allocate<float>("too.big", [251], MemoryCategory.Other))!;
        Assert.That(e.Message, Does.Contain("allocating 1,004 B for 'too.big' [251] (Other) failed: larger than the largest single buffer allowed (1,000 B"));
        Assert.That(e.BufferCap, Is.EqualTo(1000));
        Assert.That(e.InnerException, Is.Null, "the driver was not asked");
        Assert.That(tracker.AllocationCount, Is.EqualTo(1));
    }

    [TestCase(null, null, null)]
    [TestCase(500_000L, null, 500_000L)]
    [TestCase(null, 4_000_000L, 4_000_000L)]
    [TestCase(500_000L, 4_000_000L, 500_000L)]
    [TestCase(9_000_000L, 4_000_000L, 4_000_000L)]
    public void BufferCap_IsTheSmallerOfTheOptionAndTheDevice(long? option, long? device, long? expected) =>
        Assert.That(new TrainConfig { MaxBuffer = option }.BufferCap(device), Is.EqualTo(expected));

    [Test]
    public void LargestBatchUnderTheCap_IsTheWidestBufferThatStillFits()
    {
        var sizes = new TrainConfig().Network(FeatureShape.Image(1, 28, 28), 10);
        // 4 x B x 784 <= 500,000  =>  B = 159; the 407,080 B parameter buffer fits too.
        Assert.That(MemoryEstimator.LargestBatchUnderBufferCap(sizes, 500_000), Is.EqualTo(159));
        Assert.That(MemoryEstimator.LargestBatchUnderBufferCap(sizes, 400_000), Is.Zero, "the parameters alone are larger");
        // With the dataset on the device its 2,000 x 784 pixel bytes are one buffer too.
        Assert.That(MemoryEstimator.LargestBatchUnderBufferCap(sizes, 1_500_000, new DatasetOnDevice(2000, 500, 1)), Is.Zero);
        Assert.That(MemoryEstimator.LargestBatchUnderBufferCap(sizes, 1_600_000, new DatasetOnDevice(2000, 500, 1)), Is.EqualTo(510));
    }

    [Test]
    public void Planner_SaysWhichLimitBinds_AndProvesIt()
    {
        var r = CliRunner.Run("memory", "--synthetic", "--device", "host", "--memory-limit", "8MiB", "--max-buffer", "500KB");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("largest batch size: 159 (needs 2,304,388 B); the limit that binds: the largest single buffer (500,000 B), not the total"));
        Assert.That(r.Stdout, Does.Contain("batch 160 under the same limit fails: out of device memory: allocating 501,760 B for 'input.images' [160, 784]"));

        var total = CliRunner.Run("memory", "--synthetic", "--device", "host", "--memory-limit", "8MiB", "--max-buffer", "4MiB");
        Assert.That(total.Stdout, Does.Contain("largest batch size: 1195 (needs 6,709,460 B); the limit that binds: the budget for all buffers together"));
    }

    [Test]
    public void Train_OverTheCap_HintsTheBatchThatFits_AndFollowingItWorks()
    {
        string data = TestData.EmbeddedFolder();
        var r = CliRunner.Run("train", "--device", "host", "--data", data, "--max-buffer", "500KB", "--batch-size", "200");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("hint: the largest batch whose every buffer fits the device's 500,000 B per buffer is 159 (--batch-size 159)"));
        var follow = CliRunner.Run("train", "--device", "host", "--data", data, "--max-buffer", "500KB", "--batch-size", "159");
        Assert.That(follow.ExitCode, Is.Zero, follow.Stderr);
    }
}
