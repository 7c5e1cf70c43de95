using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The lesson's model: Flatten, then Linear, ReLU, Linear, ReLU, ..., Linear. Sizes are
/// K0 (input features, e.g. 784) -> K1 ... -> Kn (classes). All weights and biases live in one flat
/// Parameter buffer and all their gradients in one flat Gradient buffer, with a named view per layer,
/// so an optimizer updates the whole model in one launch.
/// </summary>
public sealed class Mlp : IDisposable
{
    public Mlp(MemoryTracker tracker, int[] sizes)
    {
        if (sizes.Length < 2) throw new ArgumentException("an MLP needs at least an input and an output size");
        Sizes = sizes;
        var layers = new List<Linear>();
        long offset = 0;
        for (int i = 0; i + 1 < sizes.Length; i++)
        {
            var layer = new Linear($"fc{i + 1}", sizes[i], sizes[i + 1], offset);
            layers.Add(layer);
            offset += layer.ParameterCount;
        }
        Layers = layers;
        ParameterCount = offset;
        if (ParameterCount > int.MaxValue) throw new ArgumentException($"{ParameterCount} parameters is more than one buffer can hold");
        Parameters = tracker.Allocate<float>("parameters", [(int)ParameterCount], MemoryCategory.Parameter);
        Gradients = tracker.Allocate<float>("gradients", [(int)ParameterCount], MemoryCategory.Gradient);
    }

    public int[] Sizes { get; }
    public IReadOnlyList<Linear> Layers { get; }
    public long ParameterCount { get; }
    public Tensor<float> Parameters { get; }
    public Tensor<float> Gradients { get; }
    public int Classes => Sizes[^1];

    /// <summary>Number of parameters of an MLP with these sizes: sum of In*Out + Out over layers.</summary>
    public static long CountParameters(IReadOnlyList<int> sizes)
    {
        long total = 0;
        for (int i = 0; i + 1 < sizes.Count; i++) total = checked(total + (long)sizes[i] * sizes[i + 1] + sizes[i + 1]);
        return total;
    }

    /// <summary>PyTorch's default initialisation, layer after layer, from one seeded generator.</summary>
    public void Initialize(ulong seed)
    {
        var host = new float[ParameterCount];
        var rng = new Rng(seed);
        foreach (var layer in Layers) layer.Initialize(host, rng);
        Parameters.CopyFrom(host);
    }

    /// <summary>
    /// Forward pass for the first `rows` rows of the batch: x -> fc1 -> relu -> ... -> logits.
    /// Each hidden layer's ReLU output is kept in buffers.Outputs[i] for backward.
    /// </summary>
    public void Forward(IBackend backend, StepBuffers buffers, int rows, MatmulVersion matmul)
    {
        var input = buffers.Images.View;
        for (int i = 0; i < Layers.Count; i++)
        {
            Linear layer = Layers[i];
            var output = buffers.Outputs[i].View;
            // y (rows, Out) = x (rows, In) · W^T (In, Out): W is (Out, In), so b[q, j] = W[j, q] -> bRow = 1, bCol = In.
            backend.Matmul(matmul, input, layer.Weight(Parameters.View), output, rows, layer.Out, layer.In, layer.In, 1, 1, layer.In);
            backend.BiasActivation(output, layer.Bias(Parameters.View), rows, layer.Out, relu: i < Layers.Count - 1);
            input = output;
        }
    }

    /// <summary>
    /// Loss and backward pass. Writes per-row losses and predictions, and every parameter's gradient
    /// (overwritten, so there is nothing to zero between steps). The first layer's input gradient is
    /// not computed: nobody needs d(loss)/d(image).
    /// </summary>
    public void Backward(IBackend backend, StepBuffers buffers, int rows, MatmulVersion matmul)
    {
        int last = Layers.Count - 1;
        var logits = buffers.Outputs[last].View;
        backend.SoftmaxCrossEntropy(logits, buffers.Labels.View, buffers.Losses.View, buffers.OutputGrads[last].View, rows, Classes);
        backend.Argmax(logits, buffers.Predictions.View, rows, Classes);
        for (int i = last; i >= 0; i--)
        {
            Linear layer = Layers[i];
            var dz = buffers.OutputGrads[i].View;                              // (rows, Out)
            if (i < last) backend.ReluBackward(dz, buffers.Outputs[i].View, rows * layer.Out);
            var x = i == 0 ? buffers.Images.View : buffers.Outputs[i - 1].View; // (rows, In)
            // dW (Out, In) = dz^T (Out, rows) · x (rows, In): a[i, q] = dz[q, i] -> aRow = 1, aCol = Out (the inner size is rows).
            backend.Matmul(matmul, dz, x, layer.Weight(Gradients.View), layer.Out, layer.In, rows, 1, layer.Out, layer.In, 1);
            backend.BiasBackward(dz, layer.Bias(Gradients.View), rows, layer.Out);
            if (i > 0)
            {
                // dx (rows, In) = dz (rows, Out) · W (Out, In).
                backend.Matmul(matmul, dz, layer.Weight(Parameters.View), buffers.OutputGrads[i - 1].View, rows, layer.In, layer.Out, layer.Out, 1, layer.In, 1);
            }
        }
    }

    /// <summary>The layers as text: "fc1: Linear(784 -> 128), ReLU, fc2: Linear(128 -> 10)".</summary>
    public string Describe() => string.Join(", ", Layers.Select((l, i) => i < Layers.Count - 1 ? $"{l}, ReLU" : l.ToString()));

    public void Dispose()
    {
        Parameters.Dispose();
        Gradients.Dispose();
    }
}
