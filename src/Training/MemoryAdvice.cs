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

    public static void Add(DeviceMemoryException e, Network net, string optimizerKind, DatasetOnDevice? dataset, LargestBatchFinder? finder = null)
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
}
