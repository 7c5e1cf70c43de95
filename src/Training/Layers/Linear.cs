using ILGPU;
using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// Linear, y = x W^T + b, as PyTorch's nn.Linear: W is (N, K) row-major, b is (N). The weight and bias are
/// views into the model's flat buffers at <see cref="Layer.Offset"/>, the bias right after the weight.
/// Buffers it creates for a batch of B:
/// <code>
/// Activation  NAME.out       (B, N)   y (a ReLU after it works in place: the buffer is then "fc1.relu.out")
/// Temporary   NAME.out.grad  (B, N)   d(loss)/d(y), when backward reaches this layer
/// </code>
/// </summary>
public sealed class Linear(string name, FeatureShape input, int outFeatures)
    : Layer(name, input, FeatureShape.Vector(outFeatures))
{
    /// <summary>K: input features.</summary>
    public int InFeatures => In.C;
    /// <summary>N: output features.</summary>
    public int OutFeatures => Out.C;
    public long WeightCount => (long)OutFeatures * InFeatures;
    public override long ParameterCount => WeightCount + OutFeatures;
    public override long MultiplyAddsPerSample => (long)InFeatures * OutFeatures;
    /// <summary>A ReLU follows (float32): the bias pass applies it, y = max(x W^T + b, 0) (see <see cref="Relu"/>).</summary>
    public bool ReluInBias { get; internal set; }

    /// <summary>This layer's weight and bias in a flat buffer: the float32 parameters or gradients, or the 16-bit weight copy.</summary>
    public ArrayView<T> Weight<T>(ArrayView<T> flat) where T : unmanaged => flat.SubView(Offset, WeightCount);
    public ArrayView<T> Bias<T>(ArrayView<T> flat) where T : unmanaged => flat.SubView(Offset + WeightCount, OutFeatures);

    /// <summary>
    /// PyTorch's default initialisation (kaiming_uniform with a = sqrt(5) for the weight, which works out
    /// to U(-1/sqrt(K), 1/sqrt(K)), and the same bound for the bias).
    /// </summary>
    public override void Initialize(Span<float> flatHost, Rng rng) => InitializeUniform(flatHost, rng, InFeatures);

    public override void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv)
    {
        io.Output = io.SharedOutput ?? tracker.Allocate<float>(outputName, Out.Batch(batch), MemoryCategory.Activation, Name);
        if (outputGradient) io.OutputGradient = tracker.Allocate<float>(outputName + ".grad", Out.Batch(batch), MemoryCategory.Temporary, Name);
    }

    public override void Forward(StepContext ctx, LayerBuffers io, int rows)
    {
        int k = InFeatures, n = OutFeatures;
        // y (B, N) = x (B, K) · W^T (K, N): W is (N, K), so b[q, j] = W[j, q] -> bRow = 1, bCol = K.
        ctx.Backend.Matmul(ctx.Matmul, io.Input.View, Weight(ctx.Parameters), io.Output.View, rows, n, k, k, 1, 1, k);
        ctx.Backend.BiasActivation(io.Output.View, Bias(ctx.Parameters), rows, n, relu: ReluInBias);
    }

    public override void Backward(StepContext ctx, LayerBuffers io, int rows)
    {
        int k = InFeatures, n = OutFeatures;
        var dy = io.OutputGradient!.View;                                   // (B, N)
        // dW (N, K) = dy^T (N, B) · x (B, K): a[i, q] = dy[q, i] -> aRow = 1, aCol = N (the inner size is B).
        // With ctx.Accumulate (gradient accumulation) dW += and db += instead.
        ctx.Backend.Matmul(ctx.Matmul, dy, io.Input.View, Weight(ctx.Gradients), n, k, rows, 1, n, k, 1, ctx.Accumulate);
        ctx.Backend.BiasBackward(dy, Bias(ctx.Gradients), rows, n, ctx.Accumulate);
        // dx (B, K) = dy (B, N) · W (N, K).
        if (io.InputGradient is { } dx)
            ctx.Backend.Matmul(ctx.Matmul, dy, Weight(ctx.Parameters), dx.View, rows, k, n, n, 1, k, 1);
    }

    /// <summary>16-bit storage: NAME.out and NAME.out.grad as (B, N) ushort, 2 bytes a value.</summary>
    public override void AllocateHalf(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient)
    {
        io.OutputHalf = tracker.Allocate<ushort>(outputName, Out.Batch(batch), MemoryCategory.Activation, Name);
        if (outputGradient) io.OutputGradientHalf = tracker.Allocate<ushort>(outputName + ".grad", Out.Batch(batch), MemoryCategory.Temporary, Name);
    }

    /// <summary>
    /// The forward above on 16-bit x and the 16-bit weight copy, summed in float32: y = round(round(x · W^T) + b), the
    /// product rounded to 16 bits when stored and again after the bias is added (two launches, as in float32).
    /// </summary>
    public override void ForwardHalf(StepContext ctx, LayerBuffers io, int rows)
    {
        int k = InFeatures, n = OutFeatures;
        var half = ctx.Half!.Value;
        ctx.Backend.MatmulHalf(io.InputHalf.View, Weight(ctx.HalfParameters), io.OutputHalf.View, rows, n, k, k, 1, 1, k, half);
        ctx.Backend.BiasActivationHalf(io.OutputHalf.View, Bias(ctx.HalfParameters), rows, n, relu: false, half);
    }

    /// <summary>The backward above with 16-bit dy, x and weights: dW and db into the float32 gradients, dx rounded to 16 bits.</summary>
    public override void BackwardHalf(StepContext ctx, LayerBuffers io, int rows)
    {
        int k = InFeatures, n = OutFeatures;
        var half = ctx.Half!.Value;
        var dy = io.OutputGradientHalf!.View;
        ctx.Backend.MatmulHalfToFloat(dy, io.InputHalf.View, Weight(ctx.Gradients), n, k, rows, 1, n, k, 1, half, ctx.Accumulate);
        ctx.Backend.BiasBackwardHalf(dy, Bias(ctx.Gradients), rows, n, half, ctx.Accumulate);
        if (io.InputGradientHalf is { } dx)
            ctx.Backend.MatmulHalf(dy, Weight(ctx.HalfParameters), dx.View, rows, k, n, n, 1, k, 1, half);
    }

    public override string Describe() => $"Linear({InFeatures} -> {OutFeatures})";
}
