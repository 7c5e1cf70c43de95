using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// ReLU, in place, as nn.ReLU(inplace=True): y = max(x, 0) overwrites x, and backward masks the incoming
/// gradient where y is 0 (y &gt; 0 exactly where x was &gt; 0, so the output is all backward needs).
/// Creates no buffers: its output is its input's buffer, which is why "fc1.out" is called "fc1.relu.out".
/// </summary>
public sealed class Relu(string name, FeatureShape shape) : Layer(name, shape, shape)
{
    public override bool InPlace => true;

    public override void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv)
    {
        io.Output = io.Input;
        io.OutputGradient = io.InputGradient;
    }

    public override void Forward(StepContext ctx, LayerBuffers io, int rows) => ctx.Backend.Relu(io.Output.View, Count(rows, Out));

    public override void Backward(StepContext ctx, LayerBuffers io, int rows)
    {
        if (io.OutputGradient is { } dy) ctx.Backend.ReluBackward(dy.View, io.Output.View, Count(rows, Out));
    }

    public override void AllocateHalf(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient)
    {
        io.OutputHalf = io.InputHalf;
        io.OutputGradientHalf = io.InputGradientHalf;
    }

    public override void ForwardHalf(StepContext ctx, LayerBuffers io, int rows) => ctx.Backend.ReluHalf(io.OutputHalf.View, Count(rows, Out), ctx.Half!.Value);

    public override void BackwardHalf(StepContext ctx, LayerBuffers io, int rows)
    {
        if (io.OutputGradientHalf is { } dy) ctx.Backend.ReluBackwardHalf(dy.View, io.OutputHalf.View, Count(rows, Out), ctx.Half!.Value);
    }

    public override string Describe() => "ReLU";
}
