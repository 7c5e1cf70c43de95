using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The closed form: how many bytes each category needs for an MLP with layer sizes K0 -> K1 -> ... -> Kn,
/// batch B and an optimizer, in float32 (4 bytes) and int32 (4 bytes). It mirrors, line for line, what
/// <see cref="Mlp"/>, <see cref="StepBuffers"/> and the optimizers allocate, so the measured bytes must
/// equal it exactly; a test checks that for many shapes.
/// <code>
/// P               = sum_i (K[i] * K[i+1] + K[i+1])           parameters
/// Parameter       = 4 P
/// Gradient        = 4 P
/// OptimizerState  = 8 P (Adam: m and v), 4 P (SGD with momentum), 0 (plain SGD)
/// Input           = 4 B K0 (normalised images) + 4 B (int32 labels)
/// Activation      = 4 B (K1 + ... + Kn)   each layer's output (hidden ones after ReLU, in place; logits)
/// Temporary       = 4 B (K1 + ... + Kn)   the gradient of each layer's output
///                 + 4 B (per-row losses) + 4 B (int32 predictions)
/// with --dataset-on-device, Input also holds the datasets as bytes and the batch's indices:
///                 + (Ntrain + Ntest) (K0 + 1) pixels and labels + 4 B int32 indices + 8 C scale and shift
/// </code>
/// </summary>
public static class MemoryEstimator
{
    public static MemoryEstimate Estimate(IReadOnlyList<int> sizes, int batch, string optimizerKind, DatasetOnDevice? onDevice = null)
    {
        long p = Mlp.CountParameters(sizes);
        long outputs = sizes.Skip(1).Sum(k => (long)k);
        long b = batch;
        int stateCopies = optimizerKind switch { "adam" => 2, "momentum" => 1, "sgd" => 0, _ => throw new ArgumentException($"unknown optimizer '{optimizerKind}'") };
        string outs = string.Join(" + ", sizes.Skip(1));
        var e = new MemoryEstimate(p);
        e.Set(MemoryCategory.Parameter, 4 * p, $"4 x {p:N0} parameters");
        e.Set(MemoryCategory.Gradient, 4 * p, $"4 x {p:N0} (one gradient per parameter)");
        e.Set(MemoryCategory.OptimizerState, 4 * p * stateCopies, optimizerKind switch
        {
            "adam" => $"2 x 4 x {p:N0} (Adam's m and v)",
            "momentum" => $"4 x {p:N0} (momentum buffer)",
            _ => "plain SGD keeps no state",
        });
        if (onDevice is { } d)
            e.Set(MemoryCategory.Input, 4 * b * sizes[0] + 4 * b + (long)(d.TrainCount + d.TestCount) * (sizes[0] + 1) + 4 * b + 8L * d.Channels,
                $"4 x {b} x {sizes[0]} images + 4 x {b} labels + ({d.TrainCount:N0} + {d.TestCount:N0}) x ({sizes[0]} + 1) dataset bytes + 4 x {b} indices + 8 x {d.Channels} scale/shift");
        else
            e.Set(MemoryCategory.Input, 4 * b * sizes[0] + 4 * b, $"4 x {b} x {sizes[0]} images + 4 x {b} labels");
        e.Set(MemoryCategory.Activation, 4 * b * outputs, $"4 x {b} x ({outs}) layer outputs");
        e.Set(MemoryCategory.Temporary, 4 * b * outputs + 8 * b, $"4 x {b} x ({outs}) output gradients + 4 x {b} losses + 4 x {b} predictions");
        e.Set(MemoryCategory.Other, 0, "nothing else is allocated");
        return e;
    }

    /// <summary>The bytes that grow with every sample of the batch (Input + Activation + Temporary per row).</summary>
    public static long BytesPerSample(IReadOnlyList<int> sizes, DatasetOnDevice? onDevice = null)
    {
        long outputs = sizes.Skip(1).Sum(k => (long)k);
        return 4L * sizes[0] + 4 + 4 * outputs + 4 * outputs + 8 + (onDevice is null ? 0 : 4);
    }

    /// <summary>Bytes that do not depend on the batch: parameters, gradients, optimizer state (and a dataset kept on the device).</summary>
    public static long FixedBytes(IReadOnlyList<int> sizes, string optimizerKind, DatasetOnDevice? onDevice = null) =>
        Estimate(sizes, 1, optimizerKind, onDevice).Total - BytesPerSample(sizes, onDevice);

    /// <summary>
    /// The largest single buffer's bytes are max(4 P (the flat parameter, gradient and state buffers),
    /// 4 B max(K0 .. Kn) (the widest per-batch buffer), the dataset's pixels N K0 with --dataset-on-device).
    /// The largest batch whose every buffer stays within `cap` bytes (0 when a fixed buffer alone is larger).
    /// </summary>
    public static long LargestBatchUnderBufferCap(IReadOnlyList<int> sizes, long cap, DatasetOnDevice? onDevice = null)
    {
        long p = Mlp.CountParameters(sizes);
        long datasetPixels = onDevice is { } d ? (long)Math.Max(d.TrainCount, d.TestCount) * sizes[0] : 0;
        if (4 * p > cap || datasetPixels > cap) return 0;
        return cap / (4L * sizes.Max());
    }

    /// <summary>The largest batch whose buffers fit in `budget` bytes (0 when not even one sample fits).</summary>
    public static long LargestBatch(IReadOnlyList<int> sizes, string optimizerKind, long budget, DatasetOnDevice? onDevice = null)
    {
        long free = budget - FixedBytes(sizes, optimizerKind, onDevice);
        return free <= 0 ? 0 : free / BytesPerSample(sizes, onDevice);
    }
}

/// <summary>The dataset sizes that --dataset-on-device puts in the Input category.</summary>
public sealed record DatasetOnDevice(int TrainCount, int TestCount, int Channels)
{
    public static DatasetOnDevice Of(Data.DatasetPair data) => new(data.Train.Count, data.Test.Count, data.Train.Info.Channels);
}

/// <summary>Estimated bytes and the formula behind them, per category.</summary>
public sealed class MemoryEstimate(long parameterCount)
{
    readonly Dictionary<MemoryCategory, (long Bytes, string Formula)> _items = [];

    public long ParameterCount { get; } = parameterCount;
    public long this[MemoryCategory c] => _items[c].Bytes;
    public string Formula(MemoryCategory c) => _items[c].Formula;
    public long Total => _items.Values.Sum(v => v.Bytes);

    internal void Set(MemoryCategory c, long bytes, string formula) => _items[c] = (bytes, formula);
}
