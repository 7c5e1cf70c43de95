using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// What would help after an out-of-memory error under a --memory-limit: the largest batch that fits (with
/// the dataset on the device, if it is there), what plain SGD would save, and the dataset's own cost.
/// Every figure comes from the closed-form estimator, so following a hint works.
/// </summary>
public static class MemoryAdvice
{
    public static void Add(DeviceMemoryException e, Network net, string optimizerKind, DatasetOnDevice? dataset)
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
        long fits = Math.Min(MemoryEstimator.LargestBatch(net, optimizerKind, limit, dataset), net.MaxBatch);
        string withDataset = dataset is null ? "" : " and the dataset on the device";
        e.Advice.Add(fits > 0
            ? $"the largest batch size that fits {Bytes.Format(limit)} with {optimizerKind}{withDataset} is {fits} (--batch-size {fits})"
            : $"not even batch size 1 fits {Bytes.Format(limit)} with {optimizerKind}; the model{withDataset} alone need{(dataset is null ? "s" : "")} " +
              Bytes.Format(MemoryEstimator.FixedBytes(net, optimizerKind, dataset) + MemoryEstimator.BytesPerSample(net, dataset)));
        if (optimizerKind != "sgd")
        {
            long saved = MemoryEstimator.FixedBytes(net, optimizerKind) - MemoryEstimator.FixedBytes(net, "sgd");
            long sgdFits = Math.Min(MemoryEstimator.LargestBatch(net, "sgd", limit, dataset), net.MaxBatch);
            e.Advice.Add($"plain SGD (--optimizer sgd) would save {Bytes.Format(saved)} of optimizer state; " +
                (sgdFits > 0 ? $"the largest batch would then be {sgdFits}" : "even then not batch size 1 would fit"));
        }
        if (dataset is not null)
            e.Advice.Add("without --dataset-on-device the dataset stays in host memory and only one batch is on the device");
    }
}
