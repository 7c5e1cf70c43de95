using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// Everything a training step needs besides the model and the optimizer, for one batch size B,
/// created once and reused by every step (a smaller last batch uses the first rows):
/// <code>
/// Input       images       (B, K0)  normalised float32 batch
///             labels       (B)      int32
/// Activation  fc{i}.out    (B, Ki)  output of layer i (after ReLU for hidden layers; logits for the last)
/// Temporary   fc{i}.grad   (B, Ki)  d(loss)/d(that output), flowing backward
///             losses       (B)      per-row cross-entropy
///             predictions  (B)      int32 argmax per row
/// </code>
/// </summary>
public sealed class StepBuffers : IDisposable
{
    public StepBuffers(MemoryTracker tracker, Mlp model, int batchSize)
    {
        BatchSize = batchSize;
        Images = tracker.Allocate<float>("input.images", [batchSize, model.Sizes[0]], MemoryCategory.Input);
        Labels = tracker.Allocate<int>("input.labels", [batchSize], MemoryCategory.Input);
        Outputs = model.Layers.Select((l, i) => tracker.Allocate<float>(
            i == model.Layers.Count - 1 ? "logits" : $"{l.Name}.relu.out", [batchSize, l.Out], MemoryCategory.Activation)).ToArray();
        OutputGrads = model.Layers.Select((l, i) => tracker.Allocate<float>(
            i == model.Layers.Count - 1 ? "logits.grad" : $"{l.Name}.relu.out.grad", [batchSize, l.Out], MemoryCategory.Temporary)).ToArray();
        Losses = tracker.Allocate<float>("losses", [batchSize], MemoryCategory.Temporary);
        Predictions = tracker.Allocate<int>("predictions", [batchSize], MemoryCategory.Temporary);
    }

    public int BatchSize { get; }
    public Tensor<float> Images { get; }
    public Tensor<int> Labels { get; }
    public Tensor<float>[] Outputs { get; }
    public Tensor<float>[] OutputGrads { get; }
    public Tensor<float> Losses { get; }
    public Tensor<int> Predictions { get; }

    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
        foreach (var t in Outputs) t.Dispose();
        foreach (var t in OutputGrads) t.Dispose();
        Losses.Dispose();
        Predictions.Dispose();
    }
}
