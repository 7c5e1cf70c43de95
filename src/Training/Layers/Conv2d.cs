using ILGPU;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// Conv2d, stride 1, zero padding p, as nn.Conv2d(C, F, k, padding=p): weight (F, C, k, k) and bias (F), views
/// into the model's flat buffers (bias after weight). Sizes and the formula: <see cref="ConvShape"/> and
/// <see cref="ConvKernels"/>. Two versions (--conv):
/// <code>
/// direct   y = the direct kernel;  backward: dW and dx kernels that read the windows straight from x and dy
/// im2col   per image b:  cols = im2col(x_b)                       (C k k, OH OW)   Workspace
///                        y_b (F, OH OW) = W (F, C k k) · cols
///          backward:     cols = im2col(x_b) again;  dW (+)= dy_b (F, OH OW) · cols^T   (summed over the images)
///                        cols = W^T (C k k, F) · dy_b;  dx_b = col2im(cols)
/// </code>
/// Both run as one backend call (IBackend.Im2colForward / Im2colBackward), so that the host backend can split the
/// work between the cores its own way.
/// Buffers it creates for a batch of B:
/// <code>
/// Activation  NAME.out         (B, F, OH, OW)  y (a ReLU after it works in place: "conv1.relu.out")
/// Temporary   NAME.out.grad    (B, F, OH, OW)  d(loss)/d(y), when backward reaches this layer
/// Workspace   NAME.cols        (C k k, OH OW)  im2col only: one image's unfolded patches, reused for every image
/// </code>
/// </summary>
public sealed class Conv2d : Layer
{
    public Conv2d(string name, FeatureShape input, int filters, int kernelSize, int pad)
        : base(name, input, FeatureShape.Image(filters, input.H + 2 * pad - kernelSize + 1, input.W + 2 * pad - kernelSize + 1))
    {
        Shape = new ConvShape(input.C, input.H, input.W, filters, kernelSize, pad);
    }

    public ConvShape Shape { get; }
    public long WeightCount => (long)Shape.F * Shape.ColRows;
    public override long ParameterCount => WeightCount + Shape.F;
    public override long MultiplyAddsPerSample => (long)Shape.F * Shape.ColRows * Shape.ColCols;
    /// <summary>A ReLU follows (float32): the bias pass applies it, y = max(conv + b, 0) (see <see cref="Relu"/>).</summary>
    public bool ReluInBias { get; internal set; }

    /// <summary>This layer's weight and bias in a flat buffer: the float32 parameters or gradients, or the 16-bit weight copy.</summary>
    public ArrayView<T> Weight<T>(ArrayView<T> flat) where T : unmanaged => flat.SubView(Offset, WeightCount);
    public ArrayView<T> Bias<T>(ArrayView<T> flat) where T : unmanaged => flat.SubView(Offset + WeightCount, Shape.F);

    /// <summary>
    /// PyTorch's default for Conv2d, as for Linear with fan_in = C k k: weight and bias from U(-1/sqrt(C k k), 1/sqrt(C k k)).
    /// </summary>
    public override void Initialize(Span<float> flatHost, Rng rng) => InitializeUniform(flatHost, rng, Shape.ColRows);

    public override void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv)
    {
        io.Output = io.SharedOutput ?? tracker.Allocate<float>(outputName, Out.Batch(batch), MemoryCategory.Activation, Name);
        if (outputGradient) io.OutputGradient = tracker.Allocate<float>(outputName + ".grad", Out.Batch(batch), MemoryCategory.Temporary, Name);
        if (conv == ConvVersion.Im2col)
            io.Workspace = tracker.Allocate<float>($"{Name}.cols", [Shape.ColRows, Shape.ColCols], MemoryCategory.Workspace, Name);
    }

    public override void Forward(StepContext ctx, LayerBuffers io, int rows)
    {
        var s = Shape;
        IBackend be = ctx.Backend;
        if (ctx.Conv == ConvVersion.Direct)
        {
            be.ConvDirectForward(io.Input.View, Weight(ctx.Parameters), io.Output.View, s, rows);
        }
        else
        {
            be.Im2colForward(ctx.Matmul, io.Input.View, Weight(ctx.Parameters), io.Workspace!.View, io.Output.View, s, rows);
        }
        be.ChannelBias(io.Output.View, Bias(ctx.Parameters), rows, s.F, s.ColCols, relu: ReluInBias);
    }

    public override void Backward(StepContext ctx, LayerBuffers io, int rows)
    {
        var s = Shape;
        IBackend be = ctx.Backend;
        var dy = io.OutputGradient!.View;   // (B, F, OH, OW)
        // With ctx.Accumulate (gradient accumulation) dW += and db += instead.
        be.ChannelBiasBackward(dy, Bias(ctx.Gradients), rows, s.F, s.ColCols, ctx.Accumulate);
        if (ctx.Conv == ConvVersion.Direct)
        {
            be.ConvDirectBackwardWeight(dy, io.Input.View, Weight(ctx.Gradients), s, rows, ctx.Accumulate);
            if (io.InputGradient is { } dx) be.ConvDirectBackwardInput(dy, Weight(ctx.Parameters), dx.View, s, rows);
            return;
        }
        bool inputGradient = io.InputGradient is not null;   // not for the first layer
        be.Im2colBackward(ctx.Matmul, io.Input.View, dy, Weight(ctx.Parameters), Weight(ctx.Gradients), io.Workspace!.View,
            inputGradient ? io.InputGradient!.View : default, inputGradient, s, rows, ctx.Accumulate);
    }

    /// <summary>16-bit storage: NAME.out and NAME.out.grad as (B, F, OH, OW) ushort, 2 bytes a value; no workspace (16-bit convs run direct).</summary>
    public override void AllocateHalf(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient)
    {
        io.OutputHalf = tracker.Allocate<ushort>(outputName, Out.Batch(batch), MemoryCategory.Activation, Name);
        if (outputGradient) io.OutputGradientHalf = tracker.Allocate<ushort>(outputName + ".grad", Out.Batch(batch), MemoryCategory.Temporary, Name);
    }

    /// <summary>The direct forward on 16-bit x and the 16-bit weight copy, summed in float32, the bias added, rounded once.</summary>
    public override void ForwardHalf(StepContext ctx, LayerBuffers io, int rows) =>
        ctx.Backend.ConvForwardHalf(io.InputHalf.View, Weight(ctx.HalfParameters), Bias(ctx.HalfParameters), io.OutputHalf.View, Shape, rows, ctx.Half!.Value);

    /// <summary>The direct backward with 16-bit dy, x and weights: dW and db into the float32 gradients, dx rounded to 16 bits.</summary>
    public override void BackwardHalf(StepContext ctx, LayerBuffers io, int rows)
    {
        var s = Shape;
        var half = ctx.Half!.Value;
        var dy = io.OutputGradientHalf!.View;   // (B, F, OH, OW)
        ctx.Backend.ChannelBiasBackwardHalf(dy, Bias(ctx.Gradients), rows, s.F, s.ColCols, half, ctx.Accumulate);
        ctx.Backend.ConvBackwardWeightHalf(dy, io.InputHalf.View, Weight(ctx.Gradients), s, rows, half, ctx.Accumulate);
        if (io.InputGradientHalf is { } dx) ctx.Backend.ConvBackwardInputHalf(dy, Weight(ctx.HalfParameters), dx.View, s, rows, half);
    }

    public override string Describe() => $"Conv2d({Shape.C} -> {Shape.F}, {Shape.KernelSize}x{Shape.KernelSize}, pad {Shape.Pad})";
}
