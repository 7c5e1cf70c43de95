using System.Diagnostics;
using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// One rung of the ladder: a way to train at the target batch (or, for an optimizer change, a different training), its
/// closed-form bytes by category at the micro-batch it holds, whether that fits the budget, what it costs in words,
/// and the time of a real training step under the budget when it fits.
/// </summary>
public sealed record Remedy(string Name, string Options, int MicroBatch, int MicroBatches, bool KeepsTraining, long ExtraForwardMacs,
    Dictionary<string, long> Bytes, long Total, bool Fits, string Cost)
{
    /// <summary>Milliseconds of one whole step (all its micro-batches), and the peak of requested bytes, measured in real steps
    /// without the budget; null when the device itself had no room.</summary>
    public double? StepMs { get; init; }
    public long? MeasuredPeak { get; init; }
    internal TrainConfig Config { get; init; } = null!;
}

/// <summary>The ladder for a target batch under a budget, the rung it recommends and the proof on the device.</summary>
public sealed record RemedyLadderResult(int TargetBatch, long Memory, string MemorySource, double Fraction, long Budget, List<Remedy> Remedies,
    string? Recommended, string Why, long? ProvedPeak, string? NextLarger, string NextError);

/// <summary>
/// What to do when the batch you want does not fit (the lesson's section 7: a smaller batch, SGD, mixed precision),
/// each remedy built for real and its bytes counted by <see cref="MemoryEstimator"/> (planned lifetimes, exact allocator):
/// <code>
/// as asked                 batch B
/// SGD with momentum        no Adam v: 4 P bytes less of state      (a different training: the update rule changes)
/// plain SGD                no state at all: 8 P bytes less           (a different training)
/// --recompute              the blocks share their inner buffers      (one more forward pass of those blocks)
/// --conv direct            no im2col workspace                       (the same sums in another order; its own speed)
/// --accumulate N           micro-batches of ceil(B / N) rows          (the same update; N smaller steps' worth of launches)
/// --precision fp16, bf16  16-bit batch, outputs and gradients     (rounding to 16 bits; a 16-bit weight copy; convs run direct)
/// and the useful combinations: --accumulate with --recompute, with --conv direct and with a 16-bit precision
/// </code>
/// For accumulation, N is the fewest micro-batches whose micro-batch fits. The recommended rung keeps the optimizer and
/// the effective batch and, of those that fit, adds the least: nothing, then accumulation (no extra arithmetic, the fewest
/// micro-batches first), then recompute (an extra forward pass), then 16-bit storage (changed rounding), then the direct conv (the same arithmetic in a kernel
/// whose speed depends on the device: its measured time is shown). It is proved with two real steps under the budget,
/// and the next larger micro-batch is shown failing.
/// </summary>
public static class RemedyLadder
{
    static readonly MemoryCategory[] Shown =
        [MemoryCategory.Parameter, MemoryCategory.Gradient, MemoryCategory.OptimizerState, MemoryCategory.Input, MemoryCategory.Activation, MemoryCategory.Temporary, MemoryCategory.Workspace];

    public static RemedyLadderResult Build(ComputeDevice device, TrainConfig config, int target, double fraction, DatasetPair data)
    {
        var (memory, source, budget) = MemoryPlanner.Budget(device, config, fraction);
        DatasetInfo info = data.Train.Info;
        DatasetOnDevice? onDevice = config.DatasetOnDevice ? DatasetOnDevice.Of(data) : null;
        var asked = config with { BatchSize = target, Accumulate = 1, MemoryLimit = null };
        bool hasConv = asked.Network(info).Layers.Any(l => l is Conv2d);
        // --recompute has no 16-bit buffers yet: with --precision fp16 or bf16 its rungs are left out.
        bool canRecompute = Recompute.Recomputed(asked.Network(info).Layers).Count > 0 && asked.Precision == Precision.Fp32;

        var remedies = new List<Remedy>();
        long Macs(TrainConfig c) => c.Recompute ? ExtraForwardMacs(c.Network(info), c.BatchSize) : 0;
        void Add(string name, TrainConfig c, bool keeps, string cost)
        {
            var e = MemoryEstimator.Estimate(c.Network(info), c.MicroBatch, c.OptimizerKind, onDevice);
            remedies.Add(new Remedy(name, Options(c, config), c.MicroBatch, (c.BatchSize + c.MicroBatch - 1) / c.MicroBatch, keeps, Macs(c),
                Shown.ToDictionary(k => k.ToString(), k => e[k]), e.Total, e.Total <= budget, cost) { Config = c });
        }
        string RecomputeCost(TrainConfig c) => $"one more forward pass of the blocks that share buffers ({Macs(c):N0} multiply-adds per step); bit-identical weights";

        Add("as asked", asked, true, "none");
        if (config.OptimizerKind == "adam")
            Add("SGD with momentum instead of Adam", asked with { Optimizer = "momentum", Momentum = null, LearningRate = null }, false,
                "a different training: one state buffer instead of Adam's two, and another update rule (tune --lr)");
        if (config.OptimizerKind != "sgd")
            Add("plain SGD instead of " + config.OptimizerKind, asked with { Optimizer = "sgd", Momentum = null, LearningRate = null }, false,
                "a different training: no optimizer state, and plain SGD usually needs more steps (tune --lr)");
        if (canRecompute)
            Add("recompute activations", asked with { Recompute = true }, true, RecomputeCost(asked with { Recompute = true }));
        bool canDirect = hasConv && config.Conv == ConvVersion.Im2col;
        const string directCost = "no im2col workspace; the same multiply-adds in another order (last bits differ), in a kernel whose speed depends on the device";
        if (canDirect)
            Add("direct convolution", asked with { Conv = ConvVersion.Direct }, true, directCost);
        if (canRecompute && canDirect)
            Add("recompute + direct convolution", asked with { Recompute = true, Conv = ConvVersion.Direct }, true, "both of the above");
        // Mixed precision, where the options allow it; 16-bit convolutions run direct (there is no 16-bit im2col).
        TrainConfig Half(Precision p) => asked with { Precision = p, Conv = hasConv ? ConvVersion.Direct : asked.Conv };
        var halves = new[] { Precision.Fp16, Precision.Bf16 }
            .Where(p => config.Precision == Precision.Fp32 && Half(p).PrecisionRefusal(Half(p).Network(info)) is null)
            .ToList();
        string HalfCost(Precision p) => p == Precision.Fp16
            ? "16-bit storage (about 3 significant digits) of the batch, outputs and gradients between layers; a 2 P-byte weight copy added; dynamic loss scaling skips a step on overflow"
            : "bfloat16 storage (about 2 significant digits, float32's range) of the batch, outputs and gradients between layers; a 2 P-byte weight copy added";
        foreach (var p in halves)
            Add($"{p.ToString().ToLowerInvariant()} mixed precision", Half(p), true, HalfCost(p) + (Half(p).Conv != config.Conv ? "; and the direct convolution" : ""));

        // Accumulation: the fewest micro-batches whose micro-batch fits, alone and with the remedies that keep the training.
        var bases = new List<(string Suffix, TrainConfig Config)> { ("", asked) };
        if (canRecompute) bases.Add((" + recompute", asked with { Recompute = true }));
        if (canDirect) bases.Add((" + direct convolution", asked with { Conv = ConvVersion.Direct }));
        foreach (var p in halves) bases.Add(($" + {p.ToString().ToLowerInvariant()}", Half(p)));
        foreach (var (suffix, c) in bases)
        {
            int n = MicroBatchesFor(c.Network(info), c.OptimizerKind, target, budget, onDevice);
            if (n <= 1) continue;   // needs no accumulation, or not even one row fits
            var accumulated = c with { Accumulate = n };
            string cost = $"{accumulated.Accumulate} micro-batches of at most {accumulated.MicroBatch} rows per step: the same update up to float rounding, " +
                "no extra arithmetic, smaller matmuls" + (c.Recompute ? "; and " + RecomputeCost(accumulated) : "") + (c.Conv != config.Conv ? "; and the direct convolution" : "") +
                (c.Precision != config.Precision ? "; and " + HalfCost(c.Precision) : "");
            Add($"accumulate {accumulated.Accumulate} micro-batches{suffix}", accumulated, true, cost);
        }

        // Every rung for real: two steps without the budget, the second timed, and the peak of requested bytes.
        for (int i = 0; i < remedies.Count; i++)
        {
            var (ms, peak) = Measure(device, remedies[i].Config, data);
            remedies[i] = remedies[i] with { StepMs = ms, MeasuredPeak = peak };
        }

        // The recommendation keeps the training; of the rest it adds the least: nothing, then accumulation (fewest
        // micro-batches first), then recompute, then the direct conv.
        var pick = remedies.Where(r => r.Fits && r.KeepsTraining)
            .OrderBy(r => r.Config.Conv != config.Conv)
            .ThenBy(r => r.Config.Precision != config.Precision)
            .ThenBy(r => r.ExtraForwardMacs)
            .ThenBy(r => r.MicroBatches)
            .FirstOrDefault();
        if (pick is null)
            return new RemedyLadderResult(target, memory, source, fraction, budget, remedies, null,
                "no rung that keeps the training fits, not even with one row per micro-batch: a smaller model, or more memory", null, null, "");
        string why = pick.Name == "as asked" ? "the batch fits as it is" :
            $"it keeps the optimizer and the effective batch of {target}, and of the rungs that do and fit it adds the least (" +
            (pick.Config.Precision != config.Precision ? "only those with 16-bit storage fit" : pick.Config.Conv != config.Conv ? "only those with the direct convolution fit" :
                pick.ExtraForwardMacs > 0 ? "recompute is needed" : "no extra arithmetic, the fewest micro-batches") + ")";

        // Proof: two real steps under the budget; then the next larger micro-batch of the same rung (or batch B + 1) fails.
        ProbeResult proof = MemoryProbe.Run(device, pick.Config with { MemoryLimit = budget }, data);
        var larger = pick.Config.Accumulate > 1 ? pick.Config with { Accumulate = FewerMicroBatches(pick.Config) } : pick.Config with { BatchSize = target + 1 };
        string next = larger.Accumulate > 1
            ? $"{Options(larger, config)} (micro-batches of {larger.MicroBatch})"
            : $"{Options(larger, config)} (one batch of {larger.BatchSize})";
        string nextError = "";
        try
        {
            MemoryProbe.Run(device, larger with { MemoryLimit = budget }, data);
        }
        catch (DeviceMemoryException e)
        {
            nextError = e.Message.Split('\n')[0];
        }
        return new RemedyLadderResult(target, memory, source, fraction, budget, remedies, pick.Options, why, proof.PeakTotal, next, nextError);
    }

    /// <summary>
    /// The fewest micro-batches (--accumulate N) for an effective batch of `target` whose micro-batch fits `budget`, in
    /// closed form with planned lifetimes: N = ceil(target / largest batch that fits); 1 when the batch fits as it is,
    /// 0 when not even one row does.
    /// </summary>
    public static int MicroBatchesFor(Network net, string optimizerKind, int target, long budget, DatasetOnDevice? onDevice)
    {
        long largest = Math.Min(MemoryEstimator.LargestBatch(net, optimizerKind, budget, onDevice), net.MaxBatch);
        if (largest < 1) return 0;
        return largest >= target ? 1 : (int)((target + largest - 1) / largest);
    }

    /// <summary>The largest accumulation below the config's whose micro-batch is larger (N - 1 may give the same micro-batch).</summary>
    static int FewerMicroBatches(TrainConfig c)
    {
        int n = c.Accumulate - 1;
        while (n > 1 && (c with { Accumulate = n }).MicroBatch == c.MicroBatch) n--;
        return n;
    }

    /// <summary>The options that make a rung from the user's config: "--batch-size 256 --accumulate 4 --recompute".</summary>
    static string Options(TrainConfig c, TrainConfig user)
    {
        var parts = new List<string> { $"--batch-size {c.BatchSize}" };
        if (c.Accumulate > 1) parts.Add($"--accumulate {c.Accumulate}");
        if (c.OptimizerKind != user.OptimizerKind) parts.Add($"--optimizer {c.OptimizerKind}");
        if (c.Recompute && !user.Recompute) parts.Add("--recompute");
        if (c.Conv != user.Conv) parts.Add($"--conv {c.Conv.ToString().ToLowerInvariant()}");
        if (c.Precision != user.Precision) parts.Add($"--precision {c.Precision.ToString().ToLowerInvariant()}");
        return string.Join(" ", parts);
    }

    /// <summary>Recompute's extra arithmetic per step: the multiply-adds of the forward of every block that is run again, for B rows.</summary>
    static long ExtraForwardMacs(Network net, int batch)
    {
        long macs = 0;
        foreach (var block in Recompute.Recomputed(net.Layers))
            for (int i = block.First; i <= block.Last; i++) macs += net.Layers[i].MultiplyAddsPerSample;
        return macs * batch;
    }

    /// <summary>One whole step (all its micro-batches) of real data, timed after one warm-up step, and the peak bytes of the two; nulls when the device has no room.</summary>
    static (double? Ms, long? Peak) Measure(ComputeDevice device, TrainConfig config, DatasetPair data)
    {
        try
        {
            return Steps(device, config, data);
        }
        catch (DeviceMemoryException)
        {
            return (null, null);
        }
    }

    static (double? Ms, long? Peak) Steps(ComputeDevice device, TrainConfig config, DatasetPair data)
    {
        DatasetInfo info = data.Train.Info;
        using var session = new TrainingSession(device, config, FeatureShape.Image(info.Channels, info.Height, info.Width), info.Classes, advise: false);
        int batch = config.BatchSize;
        var (images, labels, indices) = MemoryProbe.FirstRows(data.Train, batch);
        if (config.DatasetOnDevice) session.PlaceDataset(data);
        session.TrainBatch(images, indices, labels, batch);
        var clock = Stopwatch.StartNew();
        session.TrainBatch(images, indices, labels, batch);
        session.Backend.Synchronize();
        return (clock.Elapsed.TotalMilliseconds, session.Tracker.PeakBytes);
    }
}
