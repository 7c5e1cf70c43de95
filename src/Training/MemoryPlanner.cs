using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>The planner's answer and its proof on the device.</summary>
public sealed record MemoryPlan(long MemoryBytes, string MemorySource, double Fraction, long BudgetBytes, long FixedBytes, long BytesPerSample,
    int LargestBatch, long PredictedBytes, bool FitsOnDevice, long? MeasuredPeak, bool NextFails, string NextError);

/// <summary>
/// The memory planner: the largest batch whose closed-form bytes fit a budget (a fraction of --memory-limit,
/// else of the device's memory), proved on the device with real training steps at that batch under that
/// limit, and shown to fail one batch larger.
/// <code>
/// fixed + B x per sample &lt;= budget   =>   B = floor((budget - fixed) / per sample)
/// </code>
/// </summary>
public static class MemoryPlanner
{
    public static MemoryPlan Plan(ComputeDevice device, TrainConfig config, double fraction, DatasetPair train, int[] sizes)
    {
        long memory;
        string source;
        if (config.MemoryLimit is long limit)
        {
            (memory, source) = (limit, "--memory-limit");
        }
        else if (device.CudaMemoryInfo() is (long free, long total))
        {
            (memory, source) = (free, $"CUDA free memory (total {Bytes.Format(total)})");
        }
        else if (device.TotalMemory is long deviceMemory)
        {
            (memory, source) = (deviceMemory, "device memory");
        }
        else
        {
            throw new ArgumentException($"the {(device.Kind == DeviceKind.Host ? "host backend" : "CPU accelerator")} keeps its buffers in host memory and has no device memory size to take a fraction of; pass --memory-limit SIZE (e.g. --memory-limit 8MiB)");
        }
        long budget = (long)Math.Floor(memory * fraction);
        string kind = config.OptimizerKind;
        DatasetOnDevice? onDevice = config.DatasetOnDevice ? new(train.Train.Count, train.Test.Count, train.Train.Info.Channels) : null;
        long fixedBytes = MemoryEstimator.FixedBytes(sizes, kind, onDevice);
        long perSample = MemoryEstimator.BytesPerSample(sizes, onDevice);
        long largest = Math.Min(MemoryEstimator.LargestBatch(sizes, kind, budget, onDevice), TrainingSession.MaxBatch(sizes));
        if (largest < 1)
            throw new DeviceMemoryException($"not even batch size 1 fits a budget of {Bytes.Exact(budget)}: the model needs {Bytes.Exact(fixedBytes)} plus {Bytes.Exact(perSample)} per sample",
                fixedBytes + perSample, "model", [], MemoryCategory.Parameter, budget, new Dictionary<MemoryCategory, long>());
        int b = (int)largest;
        var limited = config with { MemoryLimit = budget, BatchSize = b };
        ProbeResult proof = MemoryProbe.Run(device, limited, train);
        string nextError = "";
        bool nextFails;
        if (b == TrainingSession.MaxBatch(sizes))
        {
            // The budget would take more, but no buffer can index one batch more: that is the limit, not memory.
            nextFails = true;
            nextError = $"batch {b + 1} cannot be indexed in one buffer ({(long)(b + 1) * sizes.Max():N0} floats > {Array.MaxLength:N0}), whatever the memory";
        }
        else
        {
            try
            {
                MemoryProbe.Run(device, limited with { BatchSize = b + 1 }, train);
                nextFails = false;
            }
            catch (DeviceMemoryException e)
            {
                nextFails = true;
                nextError = e.Message;
            }
        }
        return new MemoryPlan(memory, source, fraction, budget, fixedBytes, perSample, b, fixedBytes + perSample * b, true, proof.PeakTotal, nextFails, nextError);
    }
}
