using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>The planner's answer and its proof on the device.</summary>
public sealed record MemoryPlan(long MemoryBytes, string MemorySource, double Fraction, long BudgetBytes, long FixedBytes, long BytesPerSample,
    int LargestBatch, long PredictedBytes, bool FitsOnDevice, long? MeasuredPeak, bool NextFails, string NextError,
    long? BufferCap, string BindingLimit);

/// <summary>
/// The memory planner: the largest batch whose closed-form bytes fit a budget (a fraction of --memory-limit,
/// else of the device's memory) and whose every buffer fits the device's largest single buffer, proved on the
/// device with real training steps at that batch under that limit, and shown to fail one batch larger.
/// <code>
/// fixed + B x per sample &lt;= budget      =>   B = floor((budget - fixed) / per sample)
/// 4 B widest &lt;= largest buffer          =>   B = floor(largest buffer / (4 x the widest per-sample buffer))
/// </code>
/// </summary>
public static class MemoryPlanner
{
    /// <summary>The memory a plan takes a fraction of (--memory-limit, else the device's), where that figure comes from, and the budget.</summary>
    public static (long Memory, string Source, long Budget) Budget(ComputeDevice device, TrainConfig config, double fraction)
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
        return (memory, source, (long)Math.Floor(memory * fraction));
    }

    public static MemoryPlan Plan(ComputeDevice device, TrainConfig config, double fraction, DatasetPair train, Network net)
    {
        var (memory, source, budget) = Budget(device, config, fraction);
        string kind = config.OptimizerKind;
        DatasetOnDevice? onDevice = config.DatasetOnDevice ? DatasetOnDevice.Of(train) : null;
        long fixedBytes = MemoryEstimator.FixedBytes(net, kind, onDevice);
        long perSample = MemoryEstimator.BytesPerSample(net, onDevice);
        // Three limits, the smallest binds: the budget for all buffers together, the largest single buffer the
        // device allows (OpenCL's CL_DEVICE_MAX_MEM_ALLOC_SIZE, or --max-buffer), and 32-bit indexing.
        long byBudget = MemoryEstimator.LargestBatch(net, kind, budget, onDevice);
        long? cap = config.BufferCap(device.MaxBufferBytes);
        long byCap = cap is long c ? MemoryEstimator.LargestBatchUnderBufferCap(net, c, onDevice) : long.MaxValue;
        long byIndex = net.MaxBatch;
        long largest = Math.Min(byBudget, Math.Min(byCap, byIndex));
        string binding = largest == byBudget ? "the budget for all buffers together"
            : largest == byCap ? $"the largest single buffer ({Bytes.Format(cap!.Value)}), not the total"
            : "32-bit indexing of one buffer";
        if (largest < 1)
            throw new DeviceMemoryException(byCap == 0
                ? $"not even batch size 1 fits: the parameters{(onDevice is null ? "" : " or the dataset on the device")} alone are larger than one buffer of {Bytes.Exact(cap!.Value)}"
                : $"not even batch size 1 fits a budget of {Bytes.Exact(budget)}: the model needs {Bytes.Exact(fixedBytes)} plus {Bytes.Exact(perSample)} per sample",
                fixedBytes + perSample, "model", [], MemoryCategory.Parameter, budget, new Dictionary<MemoryCategory, long>());
        int b = (int)largest;
        var limited = config with { MemoryLimit = budget, BatchSize = b };
        ProbeResult proof = MemoryProbe.Run(device, limited, train);
        string nextError = "";
        bool nextFails;
        if (byIndex < byBudget && byIndex < byCap)
        {
            // The budget would take more, but no buffer can index one batch more: that is the limit, not memory.
            nextFails = true;
            nextError = $"batch {b + 1} cannot be indexed in one buffer ({(long)(b + 1) * net.WidestPerSample:N0} floats > {Array.MaxLength:N0}), whatever the memory";
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
        return new MemoryPlan(memory, source, fraction, budget, fixedBytes, perSample, b, fixedBytes + perSample * b, true, proof.PeakTotal, nextFails, nextError,
            cap, binding);
    }
}
