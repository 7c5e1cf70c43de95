using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// What would help after an out-of-memory error under a --memory-limit: the largest batch that fits (with
/// the dataset on the device, if it is there), what plain SGD would save, and the dataset's own cost.
/// Every figure comes from the closed-form estimator (planned lifetimes: <see cref="MemoryEstimator"/>; eager:
/// <see cref="EagerEstimate"/>), or with the caching allocator from setting the model up under the limit, so
/// following a hint works.
/// </summary>
public static class MemoryAdvice
{
    /// <summary>The largest batch that fits `limit` with an optimizer ("adam", "sgd"), and how that was found; 0 when none.</summary>
    public delegate (long Batch, string How) LargestBatchFinder(string optimizerKind, long limit);

    /// <summary>With eager lifetimes: the largest batch whose eager peak (<see cref="EagerEstimate"/>) fits the limit.</summary>
    public static long LargestEagerBatch(Network net, string optimizerKind, long limit, DatasetOnDevice? dataset)
    {
        long Peak(long b) => EagerEstimate.Estimate(net, (int)b, optimizerKind, dataset).Peak;
        long lo = 0, hi = Math.Max(1, MemoryEstimator.LargestBatch(net, optimizerKind, limit, dataset));
        while (hi <= net.MaxBatch && Peak(hi) <= limit) hi = Math.Min(2 * hi, (long)net.MaxBatch + 1);   // eager needs less than planned
        hi = Math.Min(hi, (long)net.MaxBatch + 1);
        while (hi - lo > 1)
        {
            long mid = (lo + hi) / 2;
            if (Peak(mid) <= limit) lo = mid;
            else hi = mid;
        }
        return lo;
    }

    /// <param name="batch">The batch that was asked for, given with planned lifetimes and the exact allocator (else 0); the hints then
    /// say how to keep it, from the remedy ladder (<see cref="RemedyLadder"/>): accumulation, and what --recompute saves.</param>
    public static void Add(DeviceMemoryException e, Network net, string optimizerKind, DatasetOnDevice? dataset, LargestBatchFinder? finder = null, int batch = 0)
    {
        if (e.BufferCap is long cap)
        {
            long underCap = Math.Min(MemoryEstimator.LargestBatchUnderBufferCap(net, cap, dataset), net.MaxBatch);
            e.Advice.Add(underCap > 0
                ? $"the largest batch whose every buffer fits the device's {Bytes.Format(cap)} per buffer is {underCap} (--batch-size {underCap})"
                : $"this model's parameters{(dataset is null ? "" : " or the dataset on the device")} alone do not fit in one buffer of {Bytes.Format(cap)}");
            return;
        }
        if (e.Limit is not long limit) return;
        finder ??= (opt, l) => (MemoryEstimator.LargestBatch(net, opt, l, dataset), "");
        var (largest, how) = finder(optimizerKind, limit);
        long fits = Math.Min(largest, net.MaxBatch);
        string withDataset = dataset is null ? "" : " and the dataset on the device";
        e.Advice.Add(fits > 0
            ? $"the largest batch size that fits {Bytes.Format(limit)} with {optimizerKind}{withDataset} is {fits} (--batch-size {fits}){how}"
            : $"not even batch size 1 fits {Bytes.Format(limit)} with {optimizerKind}{how}; the model{withDataset} alone need{(dataset is null ? "s" : "")} " +
              Bytes.Format(MemoryEstimator.FixedBytes(net, optimizerKind, dataset) + MemoryEstimator.BytesPerSample(net, dataset)) + " (requested bytes, planned)");
        if (batch > 0)
            AddLadderHints(e, net, optimizerKind, dataset, batch, limit);
        if (optimizerKind != "sgd")
        {
            long saved = MemoryEstimator.FixedBytes(net, optimizerKind) - MemoryEstimator.FixedBytes(net, "sgd");
            long sgdFits = Math.Min(finder("sgd", limit).Batch, net.MaxBatch);
            e.Advice.Add($"plain SGD (--optimizer sgd) would save {Bytes.Format(saved)} of optimizer state; " +
                (sgdFits > 0 ? $"the largest batch would then be {sgdFits}" : "even then not batch size 1 would fit"));
        }
        if (dataset is not null)
            e.Advice.Add("without --dataset-on-device the dataset stays in host memory and only one batch is on the device");
    }

    /// <summary>The remedy ladder's hints for keeping the batch: how many micro-batches fit, and what --recompute saves.</summary>
    static void AddLadderHints(DeviceMemoryException e, Network net, string optimizerKind, DatasetOnDevice? dataset, int batch, long limit)
    {
        int n = RemedyLadder.MicroBatchesFor(net, optimizerKind, batch, limit, dataset);
        if (n > 1)
            e.Advice.Add($"to keep the batch of {batch}: --accumulate {n} runs it as {n} micro-batches of at most {(batch + n - 1) / n} rows, which fit, " +
                "and sums their gradients (the same update); scratchnet memory --target-batch " + batch + " lists every remedy");
        if (!net.Recompute && net.Half is null && Recompute.Recomputed(net.Layers).Count > 0)   // --recompute has no 16-bit buffers yet
        {
            long saved = MemoryEstimator.Estimate(net, batch, optimizerKind, dataset).Total - MemoryEstimator.Estimate(net with { Recompute = true }, batch, optimizerKind, dataset).Total;
            if (saved > 0) e.Advice.Add($"--recompute would save {Bytes.Format(saved)} at batch {batch} for one more forward pass of the blocks that share buffers");
        }
    }
}
