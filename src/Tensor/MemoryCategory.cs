namespace ScratchNet.Tensor;

/// <summary>
/// What a device buffer is for. The names follow PyTorch's memory profiler. A category is given when a
/// buffer is created, never guessed afterwards.
/// </summary>
public enum MemoryCategory
{
    /// <summary>Weights and biases.</summary>
    Parameter,
    /// <summary>d(loss)/d(parameter), one per parameter.</summary>
    Gradient,
    /// <summary>What the optimizer keeps between steps (Adam's m and v, SGD's momentum).</summary>
    OptimizerState,
    /// <summary>The batch: normalised images and labels.</summary>
    Input,
    /// <summary>Forward results that backward needs (layer outputs, logits).</summary>
    Activation,
    /// <summary>Gradients flowing backward through the layers and scratch space (per-row losses, predictions).</summary>
    Temporary,
    /// <summary>Scratch space an algorithm needs besides its inputs and outputs (im2col's unfolded patches), as cuDNN calls it.</summary>
    Workspace,
    /// <summary>Anything else.</summary>
    Other,
}
