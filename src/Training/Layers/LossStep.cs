namespace ScratchNet.Training;

/// <summary>
/// The loss, its own step between forward and backward (not a layer): softmax-cross-entropy over the logits
/// gives each row's loss and d(mean loss)/d(logits), which backward starts from; argmax gives the predictions
/// (see <see cref="Kernels.LossKernels"/>).
/// </summary>
public static class LossStep
{
    /// <param name="meanRows">The rows the mean loss is over: `rows`, or with gradient accumulation the whole batch's rows
    /// (each micro-batch's loss then counts with weight rows / meanRows, and the summed gradients are the batch's).</param>
    /// <param name="lossScale">--precision fp16: the loss scaler's factor, which multiplies the logits' gradient (and so every gradient after it).</param>
    public static void Run(StepContext ctx, StepBuffers buffers, int rows, int classes, int meanRows, float lossScale = 1f)
    {
        var logits = buffers.Layers[^1];
        if (ctx.Half is { } half)
        {
            // In float32 inside the kernel, from the 16-bit logits; the losses stay float32, the gradient is stored in 16 bits.
            ctx.Backend.SoftmaxCrossEntropyHalf(logits.OutputHalf.View, buffers.Labels.View, buffers.Losses.View, logits.OutputGradientHalf!.View,
                rows, classes, meanRows, lossScale, half);
            Predict(ctx, buffers, rows, classes);
            return;
        }
        ctx.Backend.SoftmaxCrossEntropy(logits.Output.View, buffers.Labels.View, buffers.Losses.View, logits.OutputGradient!.View, rows, classes, meanRows);
        Predict(ctx, buffers, rows, classes);
    }

    /// <summary>Predictions only (evaluation): the index of each row's largest logit.</summary>
    public static void Predict(StepContext ctx, StepBuffers buffers, int rows, int classes)
    {
        if (ctx.Half is { } half) ctx.Backend.ArgmaxHalf(buffers.Layers[^1].OutputHalf.View, buffers.Predictions.View, rows, classes, half);
        else ctx.Backend.Argmax(buffers.Layers[^1].Output.View, buffers.Predictions.View, rows, classes);
    }
}
