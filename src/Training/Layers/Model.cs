using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// A model: a list of layers (see <see cref="Layer"/>), built from a <see cref="ModelSpec"/> on an input shape.
/// All weights and biases live in one flat Parameter buffer and all their gradients in one flat Gradient
/// buffer, each layer at its offset with named views (llm.c style), so an optimizer updates the whole model
/// in one launch. The loss is not a layer: <see cref="LossStep"/> runs between forward and backward.
/// </summary>
public sealed class Model : IDisposable
{
    /// <param name="gradients">False for prediction only (<see cref="InferenceSession"/>): no gradient buffer.</param>
    /// <param name="half">--precision fp16 or bf16: also a 16-bit copy of the parameters, which forward and backward read.</param>
    public Model(MemoryTracker tracker, ModelSpec spec, FeatureShape input, int classes, bool gradients = true, Kernels.HalfFormat? half = null)
    {
        Spec = spec;
        Input = input;
        Classes = classes;
        Layers = spec.Build(input, classes);
        long offset = 0;
        foreach (var layer in Layers)
        {
            layer.Offset = offset;
            offset += layer.ParameterCount;
        }
        ParameterCount = offset;
        if (ParameterCount > int.MaxValue) throw new ArgumentException($"{ParameterCount:N0} parameters is more than one buffer can hold");
        FirstTrainable = Layers.FindIndex(l => l.ParameterCount > 0);
        Parameters = tracker.Allocate<float>("parameters", [(int)ParameterCount], MemoryCategory.Parameter);
        if (gradients) Gradients = tracker.Allocate<float>("gradients", [(int)ParameterCount], MemoryCategory.Gradient);
        Half = half;
        if (half is { } h)
            HalfParameters = tracker.Allocate<ushort>(h == Kernels.HalfFormat.Fp16 ? "parameters.fp16" : "parameters.bf16", [(int)ParameterCount], MemoryCategory.Parameter);
    }

    /// <summary>--precision fp16 or bf16: the 16-bit format; null in float32.</summary>
    public Kernels.HalfFormat? Half { get; }

    /// <summary>
    /// --precision fp16 or bf16: the 16-bit copy of <see cref="Parameters"/> (the float32 master weights), 2 bytes a
    /// parameter, remade by <see cref="RefreshHalfCopy"/> after every change to the master; null in float32.
    /// </summary>
    public Tensor<ushort>? HalfParameters { get; }

    /// <summary>half copy = round(master), after initialisation, an optimizer step or loading a checkpoint.</summary>
    public void RefreshHalfCopy(Kernels.IBackend backend)
    {
        if (Half is { } h) backend.ConvertToHalf(Parameters.View, HalfParameters!.View, (int)ParameterCount, h);
    }

    public ModelSpec Spec { get; }
    /// <summary>The shape of one input sample, (C, H, W).</summary>
    public FeatureShape Input { get; }
    public List<Layer> Layers { get; }
    public long ParameterCount { get; }
    public Tensor<float> Parameters { get; }
    /// <summary>
    /// d(loss)/d(parameters), flat like <see cref="Parameters"/>; null in a model made for prediction only, and in the
    /// eager lifetime mode between steps (<see cref="EagerStep"/> creates it when backward first writes it).
    /// </summary>
    public Tensor<float> Gradients { get; internal set; } = null!;
    public int Classes { get; }
    /// <summary>The first layer with parameters: backward stops there (nothing before it needs a gradient).</summary>
    public int FirstTrainable { get; }

    /// <summary>Parameters of the stack on an input, without allocating anything (for estimates and checkpoints).</summary>
    public static long CountParameters(ModelSpec spec, FeatureShape input, int classes) => spec.Build(input, classes).Sum(l => l.ParameterCount);

    /// <summary>PyTorch's default initialisation, layer after layer, from one seeded generator.</summary>
    public void Initialize(ulong seed)
    {
        var host = new float[ParameterCount];
        var rng = new Rng(seed);
        foreach (var layer in Layers) layer.Initialize(host, rng);
        Parameters.CopyFrom(host);
    }

    /// <summary>
    /// Forward pass for the first `rows` samples: every layer in order; the last one's output is the logits.
    /// A clock (bench's step breakdown) is stopped after every layer.
    /// </summary>
    public void Forward(StepContext ctx, StepBuffers buffers, int rows, StepClock? clock = null)
    {
        for (int i = 0; i < Layers.Count; i++)
        {
            if (ctx.Half is null) Layers[i].Forward(ctx, buffers.Layers[i], rows);
            else Layers[i].ForwardHalf(ctx, buffers.Layers[i], rows);
            clock?.Lap("forward", Layers[i].Name);
        }
    }

    /// <summary>
    /// Backward pass from the logits' gradient (written by <see cref="LossStep"/>) down to the first layer with
    /// parameters. Every parameter's gradient is overwritten, so there is nothing to zero between steps. A clock is
    /// stopped after every layer.
    /// With --recompute, a block's forward runs again from its kept input just before the block's backward (its last
    /// layer's), to refill the buffers the blocks share (see <see cref="Recompute"/>).
    /// </summary>
    public void Backward(StepContext ctx, StepBuffers buffers, int rows, StepClock? clock = null)
    {
        for (int i = Layers.Count - 1; i >= FirstTrainable; i--)
        {
            foreach (var block in buffers.Recomputed)
                if (block.Last == i)
                    for (int j = block.First; j <= block.Last; j++) Layers[j].Forward(ctx, buffers.Layers[j], rows);
            if (ctx.Half is null) Layers[i].Backward(ctx, buffers.Layers[i], rows);
            else Layers[i].BackwardHalf(ctx, buffers.Layers[i], rows);
            clock?.Lap("backward", Layers[i].Name);
        }
    }

    /// <summary>The layers as text: "Flatten, fc1: Linear(784 -> 128), ReLU, fc2: Linear(128 -> 10)".</summary>
    public string Describe() => string.Join(", ", Layers);

    public void Dispose()
    {
        Parameters.Dispose();
        Gradients?.Dispose();
        HalfParameters?.Dispose();
    }
}
