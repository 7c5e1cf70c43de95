using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// MaxPool2d with an s x s window and stride s (nn.MaxPool2d(s)): (B, C, H, W) -> (B, C, H/s, W/s), rounded down.
/// Backward needs only where each maximum was, so the forward pass keeps those int32 indices (as PyTorch does)
/// instead of a copy of its input. After a ReLU (float32, <see cref="AfterRelu"/>) backward also applies the ReLU's
/// mask, and for that reads its input (the ReLU's output, which backward keeps alive anyway: the ReLU's own backward
/// would read it; under eager lifetimes it is freed only after that ReLU's turn in backward).
/// Kernels: <see cref="Kernels.PoolKernels"/>. Buffers it creates for a batch of B:
/// <code>
/// Activation  NAME.out          (B, C, OH, OW)  the maxima
/// Activation  NAME.indices      (B, C, OH, OW)  int32: where each maximum was in its plane, for backward
/// Temporary   NAME.out.grad     (B, C, OH, OW)  d(loss)/d(output), when backward reaches this layer
/// </code>
/// </summary>
public sealed class MaxPool2d(string name, FeatureShape input, int size)
    : Layer(name, input, FeatureShape.Image(input.C, input.H / size, input.W / size))
{
    /// <summary>s: the window's side and its stride.</summary>
    public int Size { get; } = size;

    /// <summary>A ReLU comes right before (float32): backward applies its mask too (see <see cref="Relu"/>).</summary>
    public bool AfterRelu { get; internal set; }

    public override void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv)
    {
        io.Output = io.SharedOutput ?? tracker.Allocate<float>(outputName, Out.Batch(batch), MemoryCategory.Activation, Name);
        io.Indices = io.SharedIndices ?? tracker.Allocate<int>($"{Name}.indices", Out.Batch(batch), MemoryCategory.Activation, Name);
        if (outputGradient) io.OutputGradient = tracker.Allocate<float>(outputName + ".grad", Out.Batch(batch), MemoryCategory.Temporary, Name);
    }

    public override void Forward(StepContext ctx, LayerBuffers io, int rows) =>
        ctx.Backend.MaxPoolForward(io.Input.View, io.Output.View, io.Indices!.View, rows * In.C, In.H, In.W, Size);

    public override void Backward(StepContext ctx, LayerBuffers io, int rows)
    {
        if (io.InputGradient is not { } dx) return;
        if (AfterRelu) ctx.Backend.ReluMaxPoolBackward(io.OutputGradient!.View, io.Indices!.View, io.Input.View, dx.View, rows * In.C, In.H, In.W, Size);
        else ctx.Backend.MaxPoolBackward(io.OutputGradient!.View, io.Indices!.View, dx.View, rows * In.C, In.H, In.W, Size);
    }

    /// <summary>16-bit storage: NAME.out and NAME.out.grad as ushort (2 bytes a value); the indices stay int32.</summary>
    public override void AllocateHalf(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient)
    {
        io.OutputHalf = tracker.Allocate<ushort>(outputName, Out.Batch(batch), MemoryCategory.Activation, Name);
        io.Indices = tracker.Allocate<int>($"{Name}.indices", Out.Batch(batch), MemoryCategory.Activation, Name);
        if (outputGradient) io.OutputGradientHalf = tracker.Allocate<ushort>(outputName + ".grad", Out.Batch(batch), MemoryCategory.Temporary, Name);
    }

    public override void ForwardHalf(StepContext ctx, LayerBuffers io, int rows) =>
        ctx.Backend.MaxPoolForwardHalf(io.InputHalf.View, io.OutputHalf.View, io.Indices!.View, rows * In.C, In.H, In.W, Size, ctx.Half!.Value);

    public override void BackwardHalf(StepContext ctx, LayerBuffers io, int rows)
    {
        if (io.InputGradientHalf is { } dx)
            ctx.Backend.MaxPoolBackwardHalf(io.OutputGradientHalf!.View, io.Indices!.View, dx.View, rows * In.C, In.H, In.W, Size);
    }

    public override string Describe() => $"MaxPool2d({Size})";
}
