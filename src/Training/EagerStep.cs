using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The eager lifetime mode (--lifetime eager): a training step's buffers come and go as they would under PyTorch's
/// autograd, instead of being created once and reused (the planned mode). The parameters, the optimizer state and the
/// input batch stay; everything else lives only as long as something needs it:
/// <code>
/// forward, layer i     its output and (max-pool) indices are created; an im2col workspace lives for the one call
/// loss                 losses, predictions and d(loss)/d(logits) are created; the logits are freed once read
/// backward, layer j    the flat gradient buffer is created when the first layer with parameters writes it;
///                      d(loss)/d(input of j) is created; an im2col workspace lives for the call; then j's output
///                      gradient and indices are freed, and j's input once no earlier layer's backward needs it
///                      (the layer right after the one that made it has run its backward)
/// update               the optimizer step, then the gradients are freed (zero_grad(set_to_none=True)), and after
///                      the host has read them, the losses and predictions
/// </code>
/// A layer's buffers keep the names and categories of the planned mode (see each layer's file), so the reports read
/// the same; their shapes are those of the rows in the step, as autograd's are (a last, smaller batch makes smaller ones). <see cref="EagerEstimate"/> predicts the peak of this schedule in closed form.
/// </summary>
public sealed class EagerStep(MemoryTracker tracker, Model model, StepBuffers buffers, ConvVersion conv)
{
    readonly List<IDisposable> _step = [];   // every buffer made during the step, to free what is left at its end

    T Track<T>(T t) where T : IDisposable
    {
        _step.Add(t);
        return t;
    }

    /// <summary>
    /// The forward pass: each layer's buffers as it runs. In training they are kept for backward; for prediction only
    /// (training: false) each layer's input is freed once the layer has read it, as under torch.no_grad().
    /// </summary>
    public void Forward(StepContext ctx, int rows, bool training)
    {
        var layers = model.Layers;
        Tensor<float> input = buffers.Images;
        for (int i = 0; i < layers.Count; i++)
        {
            var io = buffers.Layers[i];
            io.Input = input;
            io.InputGradient = io.OutputGradient = null;
            layers[i].Allocate(tracker, io, rows, StepBuffers.OutputName(layers, i), outputGradient: false, conv);
            foreach (var t in io.Owned(layers[i].InPlace)) Track(t);
            layers[i].Forward(ctx, io, rows);
            io.Workspace?.Dispose();
            if (!training)
            {
                io.Indices?.Dispose();
                if (!layers[i].InPlace && input != buffers.Images) input.Dispose();
            }
            input = io.Output;
        }
    }

    /// <summary>Before the loss: losses, predictions and d(loss)/d(logits), shared by the in-place layers at the end.</summary>
    public void BeforeLoss(int rows)
    {
        int n = rows;
        buffers.Losses = Track(tracker.Allocate<float>("losses", [n], MemoryCategory.Temporary));
        buffers.Predictions = Track(tracker.Allocate<int>("predictions", [n], MemoryCategory.Temporary));
        int p = StepBuffers.Producer(model.Layers, model.Layers.Count - 1);
        var layer = model.Layers[p];
        var grad = Track(tracker.Allocate<float>(StepBuffers.OutputName(model.Layers, p) + ".grad", layer.Out.Batch(n), MemoryCategory.Temporary, layer.Name));
        ShareGradient(p, model.Layers.Count - 1, grad);
    }

    /// <summary>After the loss: the logits are freed when no in-place layer at the end needs them in backward.</summary>
    public void AfterLoss()
    {
        if (!model.Layers[^1].InPlace) buffers.Layers[^1].Output.Dispose();
    }

    /// <summary>Before predictions only: the predictions buffer.</summary>
    public void BeforePredict(int rows) =>
        buffers.Predictions = Track(tracker.Allocate<int>("predictions", [rows], MemoryCategory.Temporary));

    /// <summary>The backward pass from the logits' gradient down to the first layer with parameters; returns the context with the gradients' view.</summary>
    public StepContext Backward(StepContext ctx, int rows)
    {
        var layers = model.Layers;
        int n = rows;
        for (int j = layers.Count - 1; j >= model.FirstTrainable; j--)
        {
            var layer = layers[j];
            var io = buffers.Layers[j];
            if (layer.ParameterCount > 0 && model.Gradients is null)
            {
                model.Gradients = tracker.Allocate<float>("gradients", [(int)model.ParameterCount], MemoryCategory.Gradient);
                ctx = ctx with { Gradients = model.Gradients.View };
            }
            if (!layer.InPlace && j > model.FirstTrainable)
            {
                int p = StepBuffers.Producer(layers, j - 1);
                var dx = Track(tracker.Allocate<float>(StepBuffers.OutputName(layers, p) + ".grad", layers[p].Out.Batch(n), MemoryCategory.Temporary, layers[p].Name));
                io.InputGradient = dx;
                ShareGradient(p, j - 1, dx);
            }
            if (layer is Conv2d c && conv == ConvVersion.Im2col)
                io.Workspace = tracker.Allocate<float>($"{c.Name}.cols", [c.Shape.ColRows, c.Shape.ColCols], MemoryCategory.Workspace, c.Name);
            layer.Backward(ctx, io, rows);
            io.Workspace?.Dispose();
            if (!layer.InPlace)
            {
                io.OutputGradient!.Dispose();
                io.Indices?.Dispose();
            }
            if (j > 0 && !layers[j - 1].InPlace) io.Input.Dispose();
        }
        return ctx;
    }

    /// <summary>After the optimizer step: the gradients go (zero_grad(set_to_none=True)).</summary>
    public StepContext AfterUpdate(StepContext ctx)
    {
        model.Gradients?.Dispose();
        model.Gradients = null!;
        return ctx with { Gradients = default };
    }

    /// <summary>After the host has read the losses and predictions: whatever the step made and has not freed yet.</summary>
    public void EndStep()
    {
        foreach (var t in _step) t.Dispose();
        _step.Clear();
    }

    /// <summary>The producer's output gradient is also the in-place layers' (producer + 1 .. last) input and output gradient.</summary>
    void ShareGradient(int producer, int last, Tensor<float> grad)
    {
        buffers.Layers[producer].OutputGradient = grad;
        for (int k = producer + 1; k <= last; k++)
            buffers.Layers[k].OutputGradient = buffers.Layers[k].InputGradient = grad;
    }
}
