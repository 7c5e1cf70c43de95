using ILGPU;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The shape of one sample as it flows between layers: an image (C, H, W) or, after Flatten or Linear, a flat
/// vector of C values (then H = W = 1 and Flat is true). A batch adds B in front: (B, C, H, W) or (B, C).
/// </summary>
public readonly record struct FeatureShape(int C, int H, int W, bool Flat)
{
    public static FeatureShape Image(int c, int h, int w) => new(c, h, w, false);
    public static FeatureShape Vector(int n) => new(n, 1, 1, true);
    /// <summary>Values per sample: C H W.</summary>
    public long Size => (long)C * H * W;
    /// <summary>The tensor shape of a batch of B samples.</summary>
    public int[] Batch(int b) => Flat ? [b, C] : [b, C, H, W];
    public override string ToString() => Flat ? $"({C})" : $"({C}, {H}, {W})";
}

/// <summary>Which convolution runs (--conv): one thread per output from the input window, or unfold + matmul.</summary>
public enum ConvVersion { Direct, Im2col }

/// <summary>
/// What every layer's forward and backward need besides its buffers: the backend that runs the operations,
/// the matmul and conv versions, and the model's flat parameter and gradient buffers (each layer takes its views).
/// Accumulate (gradient accumulation, every micro-batch after a step's first): backward adds the parameter gradients
/// to what the gradient buffer holds instead of overwriting them.
/// With --precision fp16 or bf16, Half is the 16-bit format and HalfParameters the 16-bit copy of the parameters that
/// forward and backward read (the float32 Parameters are the master weights the optimizer updates).
/// </summary>
public sealed record StepContext(IBackend Backend, MatmulVersion Matmul, ConvVersion Conv, ArrayView<float> Parameters, ArrayView<float> Gradients,
    bool Accumulate = false, HalfFormat? Half = null, ArrayView<ushort> HalfParameters = default);

/// <summary>
/// One layer's buffers for a batch of B. Input is the previous layer's Output (the images for the first layer);
/// a layer that works in place (ReLU) or is a view (Flatten) has Output = Input and OutputGradient = InputGradient.
/// A gradient is null where backward does not need it: before the first layer with parameters nobody needs
/// d(loss)/d(input).
/// </summary>
public sealed class LayerBuffers
{
    public Tensor<float> Input { get; set; } = null!;
    public Tensor<float>? InputGradient { get; set; }
    public Tensor<float> Output { get; set; } = null!;
    public Tensor<float>? OutputGradient { get; set; }
    /// <summary>MaxPool2d: where each maximum was (int32), kept for backward.</summary>
    public Tensor<int>? Indices { get; set; }
    /// <summary>Conv2d with --conv im2col: one image's unfolded patches (C k k, OH OW), reused for every image.</summary>
    public Tensor<float>? Workspace { get; set; }
    /// <summary>
    /// --recompute: the block's shared buffers this layer writes instead of making its own (see <see cref="Recompute"/>):
    /// set before Allocate, which then takes them as its Output and Indices; null otherwise.
    /// </summary>
    public Tensor<float>? SharedOutput { get; set; }
    public Tensor<int>? SharedIndices { get; set; }
    /// <summary>--precision fp16 and bf16: the same four buffers in 16 bits (ushort patterns) instead of the float32 ones.</summary>
    public Tensor<ushort> InputHalf { get; set; } = null!;
    public Tensor<ushort>? InputGradientHalf { get; set; }
    public Tensor<ushort> OutputHalf { get; set; } = null!;
    public Tensor<ushort>? OutputGradientHalf { get; set; }

    /// <summary>The buffers this layer created (not its input, nor an output it shares with its input, nor a shared recompute buffer).</summary>
    public IEnumerable<IDisposable> Owned(bool inPlace)
    {
        if (!inPlace)
        {
            if (SharedOutput is null && Output is not null) yield return Output;
            if (OutputGradient is not null) yield return OutputGradient;
            if (OutputHalf is not null) yield return OutputHalf;
            if (OutputGradientHalf is not null) yield return OutputGradientHalf;
        }
        if (Indices is not null && SharedIndices is null) yield return Indices;
        if (Workspace is not null) yield return Workspace;
    }
}

/// <summary>
/// A layer of the model: its shapes, its parameters (a view into the model's flat buffers at <see cref="Offset"/>),
/// the buffers it creates for a batch (<see cref="Allocate"/>, with the table in each layer's file), and its
/// forward and backward passes as launches on a backend. Layers: <see cref="Linear"/>, <see cref="Conv2d"/>,
/// <see cref="MaxPool2d"/>, <see cref="Relu"/>, <see cref="Flatten"/>.
/// </summary>
public abstract class Layer(string name, FeatureShape input, FeatureShape output)
{
    /// <summary>"conv1", "pool1", "fc2", "relu3", "flatten".</summary>
    public string Name { get; } = name;
    public FeatureShape In { get; } = input;
    public FeatureShape Out { get; } = output;
    /// <summary>Where this layer's parameters start in the flat parameter and gradient buffers (set by the model).</summary>
    public long Offset { get; internal set; }
    public virtual long ParameterCount => 0;
    /// <summary>Multiply-adds of the forward pass per sample (Linear K N, Conv2d F C k k OH OW; 0 for the others).</summary>
    public virtual long MultiplyAddsPerSample => 0;
    /// <summary>True when the output is the input buffer itself (ReLU in place, Flatten a view): no bytes of its own.</summary>
    public virtual bool InPlace => false;

    /// <summary>PyTorch's default initialisation of this layer's parameters, from the model's one generator, into host memory.</summary>
    public virtual void Initialize(Span<float> flatHost, Rng rng) { }

    /// <summary>
    /// Creates this layer's buffers for a batch of B through the tracker (each tagged with this layer's name):
    /// sets io.Output (named outputName) and, when outputGradient, io.OutputGradient; io.Input and
    /// io.InputGradient are already set. With --recompute, io.SharedOutput and io.SharedIndices, when set, are taken
    /// instead of new buffers.
    /// </summary>
    public abstract void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv);

    /// <summary>io.Output from io.Input, for the first `rows` samples.</summary>
    public abstract void Forward(StepContext ctx, LayerBuffers io, int rows);

    /// <summary>
    /// From io.OutputGradient: this layer's parameter gradients (overwritten, nothing to zero; added to when
    /// ctx.Accumulate) and, when io.InputGradient is not null, d(loss)/d(input).
    /// </summary>
    public abstract void Backward(StepContext ctx, LayerBuffers io, int rows);

    /// <summary>
    /// --precision fp16 and bf16: the same three in 16-bit storage, on io's Half buffers (every layer here has them;
    /// <see cref="Network.HalfRefusal"/> refuses a stack that cannot run, a conv with --conv im2col, before anything is made).
    /// </summary>
    public virtual void AllocateHalf(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient) =>
        throw new NotSupportedException($"{Describe()} has no 16-bit kernels");
    public virtual void ForwardHalf(StepContext ctx, LayerBuffers io, int rows) => throw new NotSupportedException($"{Describe()} has no 16-bit kernels");
    public virtual void BackwardHalf(StepContext ctx, LayerBuffers io, int rows) => throw new NotSupportedException($"{Describe()} has no 16-bit kernels");

    /// <summary>"Linear(784 -> 128)", "Conv2d(1 -> 32, 3x3, pad 1)", "ReLU", ...</summary>
    public abstract string Describe();

    /// <summary>The layer as the model line shows it: "fc1: Linear(784 -> 128)"; layers without parameters by kind only.</summary>
    public override string ToString() => ParameterCount > 0 ? $"{Name}: {Describe()}" : Describe();

    /// <summary>
    /// PyTorch's default for Linear and Conv2d: kaiming_uniform with a = sqrt(5) for the weight works out to
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias uses the same bound; weight then bias, from the one generator.
    /// </summary>
    protected void InitializeUniform(Span<float> flatHost, Rng rng, int fanIn)
    {
        float bound = 1f / MathF.Sqrt(fanIn);
        var span = flatHost.Slice((int)Offset, (int)ParameterCount);
        for (int i = 0; i < span.Length; i++)
            span[i] = rng.Uniform(bound);
    }

    /// <summary>Samples' worth of a batch buffer: the first rows x Size values.</summary>
    protected static int Count(int rows, FeatureShape s) => checked((int)(rows * s.Size));
}
