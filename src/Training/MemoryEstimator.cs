using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The closed form: how many bytes each category needs for any layer stack, batch B and optimizer, in float32
/// (4 bytes) and int32 (4 bytes), written from the layers' shapes alone (nothing is allocated or read back).
/// It mirrors what <see cref="Model"/>, <see cref="StepBuffers"/>, each layer's Allocate and the optimizers
/// create, so the measured bytes must equal it exactly; tests check that for many stacks and shapes.
/// <code>
/// P               = sum over layers of their parameters (Linear N K + N, Conv2d F C k k + F)
/// Parameter       = 4 P
/// Gradient        = 4 P
/// OptimizerState  = 8 P (Adam: m and v), 4 P (SGD with momentum), 0 (plain SGD)
/// Input           = 4 B C H W (normalised images) + 4 B (int32 labels)
/// Activation      = 4 B x (each layer's output per sample)      Linear N, Conv2d F OH OW, MaxPool2d C OH OW
///                 + 4 B x (each max-pool's int32 indices)        C OH OW         ReLU (in place), Flatten (a view): 0
/// Temporary       = 4 B x (the same outputs, for each layer backward reaches: the gradient flowing back)
///                 + 4 B (per-row losses) + 4 B (int32 predictions)
/// Workspace       = 4 C k k OH OW per Conv2d with --conv im2col (one image's unfolded patches), 0 with direct
/// with --recompute, the outputs and indices made inside a block are not counted per layer; instead, Activation holds
///                 + 4 B x (each shared slot: the largest slot-K buffer per sample of any block)   (see Recompute)
/// with --precision fp16 or bf16 (V = 2 bytes a stored value instead of 4; see <see cref="Precision"/>):
/// Parameter       = 4 P (float32 master weights) + 2 P (the 16-bit copy forward and backward read)
/// Gradient, OptimizerState: unchanged (float32)
/// Input, Activation, Temporary: each "4 B x" of the images, layer outputs and gradients between layers becomes "2 B x";
///                   the int32 labels, predictions and max-pool indices and the float32 losses stay 4 B
/// Temporary       + 4 (fp16 only: the loss scaler's int32 found-inf flag)
/// with --dataset-on-device, Input also holds the datasets as bytes and the batch's indices:
///                 + (Ntrain + Ntest) (C H W + 1) pixels and labels + 4 B int32 indices + 8 C scale and shift
/// </code>
/// </summary>
public static class MemoryEstimator
{
    public static MemoryEstimate Estimate(Network net, int batch, string optimizerKind, DatasetOnDevice? onDevice = null)
    {
        long p = net.ParameterCount;
        long b = batch;
        int stateCopies = optimizerKind switch { "adam" => 2, "momentum" => 1, "sgd" => 0, _ => throw new ArgumentException($"unknown optimizer '{optimizerKind}'") };
        var e = new MemoryEstimate(p);
        int v = net.ValueBytes;
        bool half = net.Half is not null;
        long scalerFlag = net.Precision == Precision.Fp16 ? 4 : 0;
        e.Set(MemoryCategory.Parameter, 4 * p + (half ? 2 * p : 0), half
            ? $"4 x {p:N0} float32 master parameters + 2 x {p:N0} {net.Precision.ToString().ToLowerInvariant()} copy"
            : $"4 x {p:N0} parameters");
        e.Set(MemoryCategory.Gradient, 4 * p, $"4 x {p:N0} (one gradient per parameter)");
        e.Set(MemoryCategory.OptimizerState, 4 * p * stateCopies, optimizerKind switch
        {
            "adam" => $"2 x 4 x {p:N0} (Adam's m and v)",
            "momentum" => $"4 x {p:N0} (momentum buffer)",
            _ => "plain SGD keeps no state",
        });
        long k0 = net.Input.Size;
        if (onDevice is { } d)
            e.Set(MemoryCategory.Input, 4 * b * k0 + 4 * b + (long)(d.TrainCount + d.TestCount) * (k0 + 1) + 4 * b + 8L * d.Channels,
                $"4 x {b} x {k0} images + 4 x {b} labels + ({d.TrainCount:N0} + {d.TestCount:N0}) x ({k0} + 1) dataset bytes + 4 x {b} indices + 8 x {d.Channels} scale/shift");
        else
            e.Set(MemoryCategory.Input, v * b * k0 + 4 * b, $"{v} x {b} x {k0} images + 4 x {b} labels");

        var rows = Layers(net, batch, stateCopies);
        e.Layers = rows;
        var (outSlots, indexSlots) = net.Recompute ? Recompute.SlotSizes(net.Layers) : ([], []);
        e.RecomputeBytes = 4 * b * (outSlots.Sum() + indexSlots.Sum());   // fp32 only: --recompute refuses 16-bit storage
        long activations = rows.Sum(r => r.Bytes[MemoryCategory.Activation]) + e.RecomputeBytes;
        long gradients = rows.Sum(r => r.Bytes[MemoryCategory.Temporary]);
        long workspace = rows.Sum(r => r.Bytes[MemoryCategory.Workspace]);
        var outs = new List<string>();
        var grads = new List<string>();
        var cols = new List<string>();
        var indexList = new List<string>();   // in 16 bits, the max-pools' int32 indices, which stay 4 bytes
        var layers = net.Layers;
        var (outputSlot, indicesSlot) = Slots(net);
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            if (l.InPlace) continue;
            if (outputSlot[i] < 0) outs.Add($"{l.Out.Size}");
            if (l is MaxPool2d && indicesSlot[i] < 0)
            {
                // int32 indices: in float32 they share the outputs' "4 x B x" term; in 16 bits they have one of their own.
                if (v == 4) outs.Add($"{l.Out.Size} indices");
                else indexList.Add($"{l.Out.Size}");
            }
            if (i >= FirstTrainable(net)) grads.Add($"{l.Out.Size}");
            if (l is Conv2d c && net.Conv == ConvVersion.Im2col) cols.Add($"{c.Shape.ColRows} x {c.Shape.ColCols}");
        }
        e.Set(MemoryCategory.Activation, activations, $"{v} x {b} x ({string.Join(" + ", outs)}) layer outputs" +
            (indexList.Count > 0 ? $" + 4 x {b} x ({string.Join(" + ", indexList)}) int32 max-pool indices" : "") +
            (net.Recompute ? $" + 4 x {b} x ({string.Join(" + ", outSlots.Select(v => $"{v}").Concat(indexSlots.Select(v => $"{v} indices")).DefaultIfEmpty("0"))}) shared recompute buffers" : ""));
        e.Set(MemoryCategory.Temporary, gradients + 8 * b + scalerFlag,
            (grads.Count > 0 ? $"{v} x {b} x ({string.Join(" + ", grads)}) output gradients + " : "") + $"4 x {b} losses + 4 x {b} predictions" +
            (scalerFlag > 0 ? " + 4 found-inf flag" : ""));
        e.Set(MemoryCategory.Workspace, workspace, cols.Count > 0
            ? $"4 x ({string.Join(" + ", cols)}) im2col patches, one image per conv layer"
            : layers.Any(l => l is Conv2d) ? "--conv direct reads the windows in place: no workspace" : "no layer needs one");
        e.Set(MemoryCategory.Other, 0, "nothing else is allocated");
        return e;
    }

    /// <summary>Per layer, the shared recompute slot of its output and of its indices (-1: its own buffer); all -1 without --recompute.</summary>
    static (int[] Output, int[] Indices) Slots(Network net) => net.Recompute
        ? Recompute.Slots(net.Layers)
        : (Enumerable.Repeat(-1, net.Layers.Count).ToArray(), Enumerable.Repeat(-1, net.Layers.Count).ToArray());

    /// <summary>The first layer with parameters: backward reaches it and every layer after it.</summary>
    internal static int FirstTrainable(Network net) => net.Layers.ToList().FindIndex(l => l.ParameterCount > 0);

    /// <summary>Per layer: its parameters and the bytes it holds by category, from the closed form.</summary>
    static List<LayerEstimate> Layers(Network net, int batch, int stateCopies)
    {
        long b = batch;
        int first = FirstTrainable(net);
        var rows = new List<LayerEstimate>();
        var layers = net.Layers;
        var (outputSlot, indicesSlot) = Slots(net);
        for (int i = 0; i < layers.Count; i++)
        {
            Layer l = layers[i];
            var bytes = Enum.GetValues<MemoryCategory>().ToDictionary(c => c, _ => 0L);
            long p = l.ParameterCount;
            bytes[MemoryCategory.Parameter] = 4 * p + (net.Half is not null ? 2 * p : 0);
            bytes[MemoryCategory.Gradient] = 4 * p;
            bytes[MemoryCategory.OptimizerState] = 4 * p * stateCopies;
            string note = "";
            switch (l)
            {
                case Linear or Conv2d or MaxPool2d:
                    long output = net.ValueBytes * b * l.Out.Size, indices = 4 * b * l.Out.Size;
                    // A max-pool also keeps its int32 indices (4 bytes in every precision); with --recompute a block's inner buffers are in the shared ones.
                    bytes[MemoryCategory.Activation] = (outputSlot[i] < 0 ? output : 0) + (l is MaxPool2d && indicesSlot[i] < 0 ? indices : 0);
                    bytes[MemoryCategory.Temporary] = i >= first ? output : 0;
                    if (outputSlot[i] >= 0 || indicesSlot[i] >= 0)
                        note = "recomputed in backward into " + string.Join(" and ",
                            new[] { outputSlot[i] >= 0 ? Recompute.OutputName(outputSlot[i]) : null, indicesSlot[i] >= 0 ? Recompute.IndicesName(indicesSlot[i]) : null }.OfType<string>());
                    if (l is Conv2d c && net.Conv == ConvVersion.Im2col) bytes[MemoryCategory.Workspace] = 4L * c.Shape.ColRows * c.Shape.ColCols;
                    break;
                case Relu:
                    note = "in place: its output is its input's buffer";
                    break;
                case Flatten:
                    note = "a view of its input: 0 bytes";
                    break;
            }
            rows.Add(new LayerEstimate(l.Name, l.Describe(), l.Out.ToString(), p, bytes, note));
        }
        return rows;
    }

    /// <summary>
    /// --precision fp16 or bf16 against fp32, for the same stack and optimizer: the fixed part and the bytes per sample
    /// of each (the fixed part grows by the 16-bit weight copy while the per-sample part about halves).
    /// </summary>
    public static PrecisionComparison ComparePrecision(Network net, string optimizerKind, DatasetOnDevice? onDevice = null)
    {
        var fp32 = net with { Precision = Precision.Fp32 };
        return new(net.Precision.ToString().ToLowerInvariant(), FixedBytes(net, optimizerKind, onDevice), FixedBytes(fp32, optimizerKind, onDevice),
            BytesPerSample(net, onDevice), BytesPerSample(fp32, onDevice), 2 * net.ParameterCount);
    }

    /// <summary>The bytes that grow with every sample of the batch (Input + Activation + Temporary per row); the estimate is affine in B.</summary>
    public static long BytesPerSample(Network net, DatasetOnDevice? onDevice = null) =>
        Estimate(net, 2, "sgd", onDevice).Total - Estimate(net, 1, "sgd", onDevice).Total;

    /// <summary>Bytes that do not depend on the batch: parameters, gradients, optimizer state, workspace (and a dataset kept on the device).</summary>
    public static long FixedBytes(Network net, string optimizerKind, DatasetOnDevice? onDevice = null) =>
        Estimate(net, 1, optimizerKind, onDevice).Total - BytesPerSample(net, onDevice);

    /// <summary>
    /// The largest single buffer's bytes are the largest of 4 P (the flat parameter, gradient and state buffers),
    /// each im2col workspace, the dataset's pixels N C H W with --dataset-on-device, and 4 B x (the widest
    /// per-sample buffer). The largest batch whose every buffer stays within `cap` bytes (0 when a fixed buffer alone is larger).
    /// </summary>
    public static long LargestBatchUnderBufferCap(Network net, long cap, DatasetOnDevice? onDevice = null)
    {
        long p = net.ParameterCount;
        long datasetPixels = onDevice is { } d ? Math.Max(d.TrainCount, d.TestCount) * net.Input.Size : 0;
        long workspace = net.Conv == ConvVersion.Im2col
            ? net.Layers.OfType<Conv2d>().Select(c => 4L * c.Shape.ColRows * c.Shape.ColCols).DefaultIfEmpty(0).Max() : 0;
        if (4 * p > cap || datasetPixels > cap || workspace > cap) return 0;
        // The widest batch buffer holds V bytes a value (4, or 2 in fp16 and bf16); the int32 labels and predictions 4 bytes a row.
        return Math.Min(cap / ((long)net.ValueBytes * net.WidestPerSample), cap / 4);
    }

    /// <summary>The largest batch whose buffers fit in `budget` bytes (0 when not even one sample fits).</summary>
    public static long LargestBatch(Network net, string optimizerKind, long budget, DatasetOnDevice? onDevice = null)
    {
        long free = budget - FixedBytes(net, optimizerKind, onDevice);
        return free <= 0 ? 0 : free / BytesPerSample(net, onDevice);
    }
}

/// <summary>A 16-bit precision's fixed and per-sample bytes beside fp32's (see <see cref="MemoryEstimator.ComparePrecision"/>).</summary>
public sealed record PrecisionComparison(string Precision, long Fixed, long FixedFp32, long PerSample, long PerSampleFp32, long WeightCopy);

/// <summary>The dataset sizes that --dataset-on-device puts in the Input category.</summary>
public sealed record DatasetOnDevice(int TrainCount, int TestCount, int Channels)
{
    public static DatasetOnDevice Of(Data.DatasetPair data) => new(data.Train.Count, data.Test.Count, data.Train.Info.Channels);
}

/// <summary>One layer's share of the estimate: its parameters and bytes per category (Flatten and ReLU: 0, with a note why).</summary>
public sealed record LayerEstimate(string Layer, string Kind, string OutputShape, long Parameters, Dictionary<MemoryCategory, long> Bytes, string Note);

/// <summary>Estimated bytes and the formula behind them, per category, and per layer.</summary>
public sealed class MemoryEstimate(long parameterCount)
{
    readonly Dictionary<MemoryCategory, (long Bytes, string Formula)> _items = [];

    public long ParameterCount { get; } = parameterCount;
    public long this[MemoryCategory c] => _items[c].Bytes;
    public string Formula(MemoryCategory c) => _items[c].Formula;
    public long Total => _items.Values.Sum(v => v.Bytes);
    /// <summary>Per layer, in order (the input and the loss buffers are not layers: they are in Input and Temporary).</summary>
    public IReadOnlyList<LayerEstimate> Layers { get; internal set; } = [];
    /// <summary>--recompute: the shared buffers' bytes (in Activation, not in any layer's row); 0 without it.</summary>
    public long RecomputeBytes { get; internal set; }

    internal void Set(MemoryCategory c, long bytes, string formula) => _items[c] = (bytes, formula);
}
