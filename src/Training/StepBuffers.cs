using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// Everything a training step needs besides the model's flat buffers and the optimizer, for one batch size B,
/// created once and reused by every step (a smaller last batch uses the first rows):
/// <code>
/// Input       input.images   (B, C, H, W)  normalised float32 batch ((B, C H W) when the first layer is Flatten)
///             input.labels   (B)           int32
/// each layer  what its Allocate creates (its output, the output's gradient, indices, workspace: see the layer's file)
/// Temporary   losses         (B)           per-row cross-entropy
///             predictions    (B)           int32 argmax per row
/// with --recompute, instead of the outputs and indices made inside a block (see <see cref="Recompute"/>):
/// Activation  recompute.outK      (B, largest slot-K output of any block)   shared by every block
///             recompute.indicesK  (B, largest slot-K max-pool output)       int32, shared by every block
/// </code>
/// A layer's output is named after the layer that wrote it and the in-place layers that followed ("conv1.relu.out");
/// the last one is "logits".
/// </summary>
public sealed class StepBuffers : IDisposable
{
    readonly List<IDisposable> _owned = [];

    /// <param name="eager">The eager lifetime mode: only the input buffers now; <see cref="EagerStep"/> creates and frees
    /// the layers' buffers, the losses and the predictions while a step runs.</param>
    /// <param name="recompute">--recompute: the blocks' inner outputs and indices go to shared buffers, and backward runs the
    /// forward of <see cref="Recomputed"/> again.</param>
    public StepBuffers(MemoryTracker tracker, Model model, int batchSize, ConvVersion conv, bool eager = false, bool recompute = false)
    {
        BatchSize = batchSize;
        FeatureShape imageShape = model.Layers[0] is Flatten ? model.Layers[0].Out : model.Input;
        try
        {
            if (model.Half is not null)
            {
                AllocateHalf(tracker, model, imageShape, batchSize);
                return;
            }
            Images = Own(tracker.Allocate<float>("input.images", imageShape.Batch(batchSize), MemoryCategory.Input));
            Labels = Own(tracker.Allocate<int>("input.labels", [batchSize], MemoryCategory.Input));
            if (eager)
            {
                foreach (var _ in model.Layers) Layers.Add(new LayerBuffers());
                return;
            }
            Tensor<float> input = Images;
            Tensor<float>? inputGradient = null;
            var layers = model.Layers;
            Tensor<float>[] sharedOutputs = [];
            Tensor<int>[] sharedIndices = [];
            if (recompute)
            {
                var (outs, idx) = Recompute.SlotSizes(layers);
                sharedOutputs = outs.Select((size, k) => Own(tracker.Allocate<float>(Recompute.OutputName(k), [batchSize, (int)size], MemoryCategory.Activation, "recompute"))).ToArray();
                sharedIndices = idx.Select((size, k) => Own(tracker.Allocate<int>(Recompute.IndicesName(k), [batchSize, (int)size], MemoryCategory.Activation, "recompute"))).ToArray();
                Recomputed = Recompute.Recomputed(layers);
            }
            var (outputSlot, indicesSlot) = recompute ? Recompute.Slots(layers) : ([], []);
            for (int i = 0; i < layers.Count; i++)
            {
                var io = new LayerBuffers { Input = input, InputGradient = inputGradient };
                if (recompute && outputSlot[i] >= 0) io.SharedOutput = sharedOutputs[outputSlot[i]];
                if (recompute && indicesSlot[i] >= 0) io.SharedIndices = sharedIndices[indicesSlot[i]];
                bool gradient = i >= model.FirstTrainable;
                layers[i].Allocate(tracker, io, batchSize, OutputName(layers, i), gradient, conv);
                _owned.AddRange(io.Owned(layers[i].InPlace));
                Layers.Add(io);
                (input, inputGradient) = (io.Output, io.OutputGradient);
            }
            Losses = Own(tracker.Allocate<float>("losses", [batchSize], MemoryCategory.Temporary));
            Predictions = Own(tracker.Allocate<int>("predictions", [batchSize], MemoryCategory.Temporary));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// --precision fp16 and bf16: the same buffers with the images, the layers' outputs and the gradients between layers
    /// in 16 bits (2 bytes a value); labels, predictions (int32) and the per-row losses (float32) do not shrink.
    /// fp16 adds the loss scaler's found-inf flag (int32, Temporary).
    /// </summary>
    void AllocateHalf(MemoryTracker tracker, Model model, FeatureShape imageShape, int batchSize)
    {
        ImagesHalf = Own(tracker.Allocate<ushort>("input.images", imageShape.Batch(batchSize), MemoryCategory.Input));
        Labels = Own(tracker.Allocate<int>("input.labels", [batchSize], MemoryCategory.Input));
        Tensor<ushort> input = ImagesHalf;
        Tensor<ushort>? inputGradient = null;
        var layers = model.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            var io = new LayerBuffers { InputHalf = input, InputGradientHalf = inputGradient };
            layers[i].AllocateHalf(tracker, io, batchSize, OutputName(layers, i), i >= model.FirstTrainable);
            _owned.AddRange(io.Owned(layers[i].InPlace));
            Layers.Add(io);
            (input, inputGradient) = (io.OutputHalf, io.OutputGradientHalf);
        }
        Losses = Own(tracker.Allocate<float>("losses", [batchSize], MemoryCategory.Temporary));
        Predictions = Own(tracker.Allocate<int>("predictions", [batchSize], MemoryCategory.Temporary));
        if (model.Half == Kernels.HalfFormat.Fp16) FoundInf = Own(tracker.Allocate<int>("scaler.found_inf", [1], MemoryCategory.Temporary));
    }

    T Own<T>(T t) where T : IDisposable
    {
        _owned.Add(t);
        return t;
    }

    /// <summary>
    /// The name of layer i's output buffer: "logits" for the model's output, else the layer's name, ".relu" when a
    /// ReLU works in place on it next, and ".out".
    /// </summary>
    public static string OutputName(IReadOnlyList<Layer> layers, int i)
    {
        int j = i + 1;
        while (j < layers.Count && layers[j].InPlace) j++;
        if (j == layers.Count) return "logits";
        bool relu = i + 1 < layers.Count && layers[i + 1] is Relu;
        return layers[i].Name + (relu ? ".relu" : "") + ".out";
    }

    /// <summary>The layer that made the buffer layer i outputs: i itself, or the last layer before i that is not in place.</summary>
    public static int Producer(IReadOnlyList<Layer> layers, int i)
    {
        while (i > 0 && layers[i].InPlace) i--;
        return i;
    }

    public int BatchSize { get; }
    /// <summary>--recompute: the blocks whose forward backward runs again (those that write a shared buffer); empty otherwise.</summary>
    public List<Recompute.Block> Recomputed { get; } = [];
    /// <summary>The normalised batch, float32; null with --precision fp16 or bf16 (then <see cref="ImagesHalf"/>).</summary>
    public Tensor<float> Images { get; } = null!;
    /// <summary>--precision fp16 and bf16: the batch in 16 bits; null in float32.</summary>
    public Tensor<ushort>? ImagesHalf { get; private set; }
    public Tensor<int> Labels { get; private set; } = null!;
    /// <summary>--precision fp16: 1 when the last unscale met an inf or NaN gradient (see <see cref="LossScaler"/>); null otherwise.</summary>
    public Tensor<int>? FoundInf { get; private set; }
    /// <summary>Per layer, its buffers (input, output, gradients, extras).</summary>
    public List<LayerBuffers> Layers { get; } = [];
    public Tensor<float> Losses { get; internal set; } = null!;
    public Tensor<int> Predictions { get; internal set; } = null!;

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
