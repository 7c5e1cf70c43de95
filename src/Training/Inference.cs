using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// Prediction only, the way torch.no_grad() runs a model: no gradients, no optimizer state, and each layer's
/// output kept only while the next layer needs it. Per batch, every layer in turn allocates its output (and its
/// scratch: a max-pool's indices, an im2col workspace), runs forward, and then its input and scratch are freed.
/// What stays: the parameters and the batch of images. Peak, closed form (B rows, 4-byte values):
/// <code>
/// 4 P + 4 B C H W + max( max over layers i with a buffer of their own of  in_i + out_i + scratch_i,
///                        logits + 4 B predictions )
/// in_i     = 4 B x (layer i's input per sample), 0 when that input is the images (already counted)
/// out_i    = 4 B x (its output per sample)      scratch_i = 4 B x (max-pool indices) + im2col workspace
/// </code>
/// </summary>
public sealed class InferenceSession : IDisposable
{
    readonly StepContext _ctx;
    readonly int[] _predictions;

    public InferenceSession(ComputeDevice device, Network net, int batchSize, MatmulVersion? matmul = null, long? memoryLimit = null,
        AllocatorKind allocator = AllocatorKind.Exact)
    {
        Network = net;
        BatchSize = batchSize;
        Backend = Backends.For(device);
        Tracker = new MemoryTracker(device.Accelerator, memoryLimit, allocator: allocator) { LogPhases = false };
        Model = new Model(Tracker, net.Spec, net.Input, net.Classes, gradients: false);
        Images = Tracker.Allocate<float>("input.images", net.Input.Batch(batchSize), MemoryCategory.Input);
        _ctx = new StepContext(Backend, matmul ?? Backend.DefaultMatmul, net.Conv, Model.Parameters.View, default);
        _predictions = new int[batchSize];
    }

    public Network Network { get; }
    public int BatchSize { get; }
    public IBackend Backend { get; }
    public MemoryTracker Tracker { get; }
    public Model Model { get; }
    public Tensor<float> Images { get; }

    /// <summary>Predicts the classes of the first `rows` images in <see cref="Images"/>; returns the host copy.</summary>
    public ReadOnlySpan<int> Predict(int rows)
    {
        var layers = Model.Layers;
        Tensor<float> input = Images;
        for (int i = 0; i < layers.Count; i++)
        {
            var io = new LayerBuffers { Input = input };
            layers[i].Allocate(Tracker, io, BatchSize, StepBuffers.OutputName(layers, i), outputGradient: false, Network.Conv);
            layers[i].Forward(_ctx, io, rows);
            io.Indices?.Dispose();
            io.Workspace?.Dispose();
            if (!layers[i].InPlace && input != Images) input.Dispose();
            input = io.Output;
        }
        using var predictions = Tracker.Allocate<int>("predictions", [BatchSize], MemoryCategory.Temporary);
        Backend.Argmax(input.View, predictions.View, rows, Network.Classes);
        predictions.CopyTo(_predictions.AsSpan(0, rows));
        if (input != Images) input.Dispose();
        return _predictions.AsSpan(0, rows);
    }

    /// <summary>The closed-form peak of one prediction batch, per category and in total (see the class comment).</summary>
    public static InferenceEstimate Estimate(Network net, int batch)
    {
        long b = batch, p = net.ParameterCount;
        long images = 4 * b * net.Input.Size;
        long activationPeak = 0, workspacePeak = 0, totalPeak = 0;
        var layers = net.Layers;
        bool inputIsImages = true;
        long current = 0;   // bytes of the buffer the next layer reads (0 while it is the images)
        foreach (var l in layers)
        {
            if (l.InPlace) continue;
            long output = 4 * b * l.Out.Size;
            long indices = l is MaxPool2d ? output : 0;   // int32, an Activation buffer, freed after the layer here
            long workspace = l is Conv2d c && net.Conv == ConvVersion.Im2col ? 4L * c.Shape.ColRows * c.Shape.ColCols : 0;
            long input = inputIsImages ? 0 : current;
            activationPeak = Math.Max(activationPeak, input + output + indices);
            workspacePeak = Math.Max(workspacePeak, workspace);
            totalPeak = Math.Max(totalPeak, input + output + indices + workspace);
            current = output;
            inputIsImages = false;
        }
        long predictions = 4 * b;
        totalPeak = Math.Max(totalPeak, current + predictions);
        return new InferenceEstimate(4 * p, images, activationPeak, workspacePeak, predictions, 4 * p + images + totalPeak);
    }

    public void Dispose()
    {
        Images.Dispose();
        Model.Dispose();
        Tracker.Dispose();
    }
}

/// <summary>Peak bytes of prediction per category (each at its own moment) and the peak of the total.</summary>
public sealed record InferenceEstimate(long Parameter, long Input, long Activation, long Workspace, long Temporary, long Total);
