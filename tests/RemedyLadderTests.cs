using System.Text.Json;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// memory --target-batch: every remedy with its bytes (estimated and measured), whether it fits the budget, its cost and
/// a timed step; the recommended one proved under the budget and the next larger micro-batch failing. And the
/// out-of-memory hints that come from the same ladder.
/// </summary>
[TestFixture]
public sealed class RemedyLadderTests
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    [Test]
    public void ConvNetBatch64_Under24MiB_KeepsTheBatchWithAccumulation_AndProvesIt()
    {
        // The README runs batch 256 under 64 MiB (section 8, checked line by line); this is the same at a size a Debug build runs quickly.
        var r = CliRunner.Run("memory", "--json", "--device", "host", "--model", "cnn", "--synthetic", "--memory-limit", "24MiB", "--target-batch", "64");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var ladder = doc.RootElement.GetProperty("ladder");
        long budget = ladder.GetProperty("budget").GetInt64();
        Assert.That(budget, Is.EqualTo((long)(0.8 * 24 * 1024 * 1024)));
        var rungs = ladder.GetProperty("remedies").EnumerateArray().ToList();
        foreach (var rung in rungs)
        {
            long total = rung.GetProperty("total").GetInt64();
            Assert.That(rung.GetProperty("measuredPeak").GetInt64(), Is.EqualTo(total), rung.GetProperty("name").GetString() + ": measured = estimate");
            Assert.That(rung.GetProperty("fits").GetBoolean(), Is.EqualTo(total <= budget));
            Assert.That(rung.GetProperty("bytes").EnumerateObject().Sum(p => p.Value.GetInt64()), Is.EqualTo(total), "the categories add up");
        }
        Assert.That(rungs[0].GetProperty("name").GetString(), Is.EqualTo("as asked"));
        Assert.That(rungs[0].GetProperty("fits").GetBoolean(), Is.False, "batch 64 does not fit 80% of 24 MiB");
        Assert.That(rungs.Select(x => x.GetProperty("name").GetString()), Does.Contain("recompute activations").And.Contain("direct convolution").And.Contain("plain SGD instead of adam"));

        string recommended = ladder.GetProperty("recommended").GetString()!;
        Assert.That(recommended, Is.EqualTo("--batch-size 64 --accumulate 3"), "the fewest micro-batches with no extra arithmetic: 22 rows fit, 32 do not");
        var pick = rungs.Single(x => x.GetProperty("options").GetString() == recommended);
        Assert.That(pick.GetProperty("keepsTraining").GetBoolean() && pick.GetProperty("fits").GetBoolean(), Is.True);
        Assert.That(ladder.GetProperty("provedPeak").GetInt64(), Is.EqualTo(pick.GetProperty("total").GetInt64()), "two real steps under the budget");
        Assert.That(ladder.GetProperty("nextLarger").GetString(), Is.EqualTo("--batch-size 64 --accumulate 2 (micro-batches of 32)"));
        Assert.That(ladder.GetProperty("nextError").GetString(), Does.StartWith("out of device memory"));
    }

    [Test]
    public void TheMlp_HasNoRecomputeOrConvRungs_AndABatchThatFits_IsRecommendedAsItIs()
    {
        var config = new TrainConfig { MemoryLimit = 4 << 20 };
        var fits = RemedyLadder.Build(Shared.Host, config, 64, 0.8, Data);
        Assert.That(fits.Remedies.Select(r => r.Name), Is.EqualTo(new[] { "as asked", "SGD with momentum instead of Adam", "plain SGD instead of adam", "fp16 mixed precision", "bf16 mixed precision" }),
            "nothing to recompute in the MLP, no convolution, and no accumulation needed; the MLP has 16-bit kernels");
        var asAsked = fits.Remedies[0];
        var fp16 = fits.Remedies.Single(r => r.Name == "fp16 mixed precision");
        Assert.That(fp16.Options, Is.EqualTo("--batch-size 64 --precision fp16"));
        Assert.That(fp16.Bytes["Parameter"], Is.EqualTo(asAsked.Bytes["Parameter"] * 3 / 2), "float32 master + 16-bit copy");
        Assert.That(fp16.Bytes["Input"], Is.EqualTo(2 * 64 * 784 + 4 * 64), "16-bit images, int32 labels");
        Assert.That(fp16.MeasuredPeak, Is.EqualTo(fp16.Total), "measured in two real fp16 steps");
        Assert.That(fits.Recommended, Is.EqualTo("--batch-size 64"));
        Assert.That(fits.NextLarger, Is.EqualTo("--batch-size 65 (one batch of 65)"));
        Assert.That(fits.NextError, Is.Empty, "4 MiB holds far more than 65 rows: the ladder says so (memory exits non-zero)");

        var tight = RemedyLadder.Build(Shared.Host, config with { MemoryLimit = 2_200_000 }, 1024, 0.8, Data);
        var accumulate = tight.Remedies.Single(r => r.Name.StartsWith("accumulate", StringComparison.Ordinal) && !r.Options.Contains("--precision"));
        Assert.That(tight.Recommended, Is.EqualTo(accumulate.Options), "accumulation before 16-bit storage: the same update, no change of rounding");
        // The lesson's question, "why did mixed precision not help?": the MLP's fixed part grows with the 16-bit weight copy, and
        // here that alone is over the budget, so no micro-batch of fp16 fits.
        long fixedBytes = MemoryEstimator.FixedBytes(config.Network(Data.Train.Info), "adam");
        long fp16Fixed = MemoryEstimator.FixedBytes(config.Network(Data.Train.Info) with { Precision = Precision.Fp16 }, "adam");
        Assert.That(fp16Fixed, Is.GreaterThan(tight.Budget).And.GreaterThan(fixedBytes));
        Assert.That(tight.Remedies.Single(r => r.Name == "fp16 mixed precision").Fits, Is.False);
        Assert.That(tight.Remedies.Any(r => r.Name.EndsWith("+ fp16", StringComparison.Ordinal)), Is.False, "not even one fp16 row fits");
        long perSample = MemoryEstimator.BytesPerSample(config.Network(Data.Train.Info));
        long largest = (tight.Budget - fixedBytes) / perSample;
        Assert.That(accumulate.MicroBatches, Is.EqualTo((int)((1024 + largest - 1) / largest)), "N = ceil(B / the largest batch that fits)");
        Assert.That(tight.ProvedPeak, Is.EqualTo(accumulate.Total));
        Assert.That(tight.NextError, Does.StartWith("out of device memory"));
        Assert.That(tight.Remedies.All(r => r.MeasuredPeak == r.Total), Is.True, "every rung measured");
    }

    [Test]
    public void TheOutOfMemoryHints_ComeFromTheLadder_AndFollowingThemWorks()
    {
        string data = TestData.EmbeddedFolder();
        var r = CliRunner.Run("train", "--device", "host", "--data", data, "--model", "cnn", "--batch-size", "256", "--memory-limit", "64MiB");
        Assert.That(r.ExitCode, Is.Not.Zero);
        Assert.That(r.Stderr, Does.Contain("hint: to keep the batch of 256: --accumulate 2 runs it as 2 micro-batches of at most 128 rows, which fit"));
        Assert.That(r.Stderr, Does.Contain("hint: --recompute would save 15.31 MiB at batch 256"));
        var followed = CliRunner.Run("memory", "--device", "host", "--synthetic", "--model", "cnn", "--batch-size", "256", "--accumulate", "2");
        Assert.That(followed.ExitCode, Is.Zero, followed.Stderr);
        Assert.That(followed.Stdout, Does.Match(@"total\s+(\S+) B\s+\1 B\s+\1 B  0 \(exact\)"));
        long total = long.Parse(System.Text.RegularExpressions.Regex.Match(followed.Stdout, @"total\s+(\S+) B").Groups[1].Value.Replace(",", ""));
        Assert.That(total, Is.LessThanOrEqualTo(64L << 20), "the hinted --accumulate fits the limit");
    }

    [TestCase("--allocator", "caching")]
    [TestCase("--lifetime", "eager")]
    [TestCase("--accumulate", "2")]
    public void TargetBatch_WithWhatTheLadderDoesNotCount_IsAOneLineError(string option, string value)
    {
        var r = CliRunner.Run("memory", "--device", "host", "--synthetic", "--memory-limit", "8MiB", "--target-batch", "256", option, value);
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Does.Contain("--target-batch"));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
    }
}
