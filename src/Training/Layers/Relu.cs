using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// ReLU, in place, as nn.ReLU(inplace=True): y = max(x, 0) overwrites x, and backward masks the incoming
/// gradient where y is 0 (y &gt; 0 exactly where x was &gt; 0, so the output is all backward needs).
/// Creates no buffers: its output is its input's buffer, which is why "fc1.out" is called "fc1.relu.out".
///
/// In float32 a ReLU is fused with its neighbours where they meet (<see cref="Fuse"/>), as PyTorch's compilers and
/// oneDNN's post-ops do; the results are bit-identical, one pass over the feature map is saved each time:
/// <code>
/// after Linear or Conv2d   forward: the layer's bias pass applies it, y = max(x W^T + b, 0)     (AppliedInBias)
/// before MaxPool2d         backward: the pool's backward applies the mask, dx = dy at each window's
///                          maximum where that maximum is &gt; 0, else 0                          (MaskedByPool)
/// </code>
/// The layer then does nothing in that direction. 16-bit storage runs every ReLU on its own.
/// </summary>
public sealed class Relu(string name, FeatureShape shape) : Layer(name, shape, shape)
{
    public override bool InPlace => true;

    /// <summary>Float32: the Linear or Conv2d before this ReLU applies it in its bias pass; forward has nothing to do.</summary>
    public bool AppliedInBias { get; private set; }

    /// <summary>Float32: the MaxPool2d after this ReLU applies its mask in the pool's backward; backward has nothing to do.</summary>
    public bool MaskedByPool { get; private set; }

    /// <summary>Marks the fusions of a built stack: each ReLU with the layer before it and the layer after it.</summary>
    public static void Fuse(IReadOnlyList<Layer> layers)
    {
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i] is not Relu relu) continue;
            if (i > 0 && layers[i - 1] is Linear linear) linear.ReluInBias = relu.AppliedInBias = true;
            if (i > 0 && layers[i - 1] is Conv2d conv) conv.ReluInBias = relu.AppliedInBias = true;
            if (i + 1 < layers.Count && layers[i + 1] is MaxPool2d pool) pool.AfterRelu = relu.MaskedByPool = true;
        }
    }

    public override void Allocate(MemoryTracker tracker, LayerBuffers io, int batch, string outputName, bool outputGradient, ConvVersion conv)
    {
        io.Output = io.Input;
        io.OutputGradient = io.InputGradient;
    }

    public override void Forward(StepContext ctx, LayerBuffers io, int rows)
    {
        if (!AppliedInBias) ctx.Backend.Relu(io.Output.View, Count(rows, Out));
    }

    public override void Backward(StepContext ctx, LayerBuffers io, int rows)
    {
        if (io.OutputGradient is { } dy && !MaskedByPool) ctx.Backend.ReluBackward(dy.View, io.Output.View, Count(rows, Out));
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
