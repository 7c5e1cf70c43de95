namespace ScratchNet.Training;

/// <summary>
/// A model's architecture without any memory: the layer stack, the input shape, the classes, the conv version and
/// whether backward recomputes the blocks' activations (--recompute, see <see cref="Training.Recompute"/>).
/// What the estimator, the planner, the advice after an out-of-memory error and checkpoints reason about,
/// before (or without) allocating anything.
/// </summary>
public sealed record Network(ModelSpec Spec, FeatureShape Input, int Classes, ConvVersion Conv = ConvVersion.Im2col, bool Recompute = false,
    Precision Precision = Precision.Fp32)
{
    /// <summary>Bytes of one stored value of the batch's buffers (the input, layer outputs, the gradients between layers): 4, or 2 in fp16 and bf16.</summary>
    public int ValueBytes => Precision == Precision.Fp32 ? 4 : 2;

    /// <summary>The 16-bit format of --precision fp16 or bf16; null for fp32.</summary>
    public Kernels.HalfFormat? Half => Precision switch
    {
        Precision.Fp16 => Kernels.HalfFormat.Fp16,
        Precision.Bf16 => Kernels.HalfFormat.Bf16,
        _ => null,
    };

    /// <summary>
    /// Why this stack cannot run in 16-bit storage, or null when it can: every layer has 16-bit kernels (Linear, Conv2d,
    /// MaxPool2d, ReLU, Flatten), and convolutions run direct (there is no 16-bit im2col).
    /// </summary>
    public string? HalfRefusal
    {
        get
        {
            if (Precision == Precision.Fp32) return null;
            string p = $"--precision {Precision.ToString().ToLowerInvariant()}";
            if (Layers.FirstOrDefault(l => l is not (Linear or Conv2d or MaxPool2d or Relu or Flatten)) is { } other)
                return $"{p}: {other.Describe()} has no 16-bit kernels";
            if (Conv == ConvVersion.Im2col && Layers.Any(l => l is Conv2d))
                return $"{p} with --conv im2col: 16-bit convolutions run direct only (no 16-bit im2col yet); leave --conv out or give --conv direct";
            return null;
        }
    }

    List<Layer>? _layers;

    /// <summary>The layers with their shapes (built once; throws naming the layer when the stack does not fit).</summary>
    public IReadOnlyList<Layer> Layers => _layers ??= Spec.Build(Input, Classes);

    public long ParameterCount => Layers.Sum(l => l.ParameterCount);

    /// <summary>True for the lesson's kind of model: Flatten, then Linear layers with ReLUs between.</summary>
    public bool IsMlp => Layers[0] is Flatten && Layers.Skip(1).All(l => l is Linear or Relu);

    /// <summary>An MLP's sizes K0 -> K1 ... -> Kn (empty for other stacks).</summary>
    public int[] MlpSizes => IsMlp ? [Layers[0].Out.C, .. Layers.OfType<Linear>().Select(l => l.OutFeatures)] : [];

    /// <summary>"MLP 784-128-10" or the stack's text.</summary>
    public string Label => IsMlp ? $"MLP {string.Join("-", MlpSizes)}" : $"layers {Spec.Text}";

    /// <summary>"im2col" or "direct", as --conv spells it; "" when the stack has no convolution.</summary>
    public string ConvLabel => Layers.Any(l => l is Conv2d) ? Conv.ToString().ToLowerInvariant() : "";

    /// <summary>The most values one sample puts in one buffer: the input or a layer's output.</summary>
    public long WidestPerSample => Math.Max(Input.Size, Layers.Max(l => l.Out.Size));

    /// <summary>
    /// The largest batch any buffer can hold: kernels index a batch buffer with 32-bit ints and the host stages a
    /// batch in one float[], so the widest per-sample buffer times B stays within one array.
    /// </summary>
    public int MaxBatch => (int)Math.Min(int.MaxValue, Array.MaxLength / WidestPerSample);
}
