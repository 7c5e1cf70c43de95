using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// Flatten: (B, C, H, W) seen as (B, C H W). NCHW is already row-major in that order, so this is a view of the
/// same buffer, as torch.flatten returns one: 0 bytes, no launch, nothing to do backward.
/// </summary>
public sealed class Flatten(string name, FeatureShape input) : Layer(name, input, FeatureShape.Vector(checked((int)input.Size)))
{
    public override bool InPlace => true;

    public override void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv)
    {
        io.Output = io.Input;
        io.OutputGradient = io.InputGradient;
    }

    public override void Forward(StepContext ctx, LayerBuffers io, int rows) { }

    public override void Backward(StepContext ctx, LayerBuffers io, int rows) { }

    public override void AllocateHalf(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient)
    {
        io.OutputHalf = io.InputHalf;
        io.OutputGradientHalf = io.InputGradientHalf;
    }

    public override void ForwardHalf(StepContext ctx, LayerBuffers io, int rows) { }

    public override void BackwardHalf(StepContext ctx, LayerBuffers io, int rows) { }

    public override string Describe() => "Flatten";
}
