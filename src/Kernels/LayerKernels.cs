using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The element-wise parts of a Linear + ReLU layer. Letters as in docs/glossary.md: B = rows in the batch, N = output features.
/// All kernels are grid-stride loops: any number of threads covers any size.
/// </summary>
public static class LayerKernels
{
    /// <summary>
    /// Fused bias add and (optional) ReLU, in place: <c>y[b, j] = relu(y[b, j] + bias[j])</c>.
    /// One launch instead of two; with relu == 0 it is a plain bias add (the last layer).
    /// Backward reads the ReLU's output: y &gt; 0 exactly where its input was &gt; 0.
    /// </summary>
    public static void BiasActivation(
        ArrayView<float> y,      // y: (B, N) row-major, updated in place
        ArrayView<float> bias,   // bias: (N)
        int rows, int n, int relu)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < rows * n; i += stride)
        {
            float v = y[i] + bias[i % n];
            y[i] = relu != 0 && v < 0f ? 0f : v;
        }
    }

    /// <summary>ReLU on its own, in place: <c>y[i] = max(y[i], 0)</c>, where no bias pass comes just before it (after a
    /// max-pool or flatten, or first in a stack); after Linear or Conv2d, float32 applies it in the bias pass (Training's Relu).</summary>
    public static void Relu(
        ArrayView<float> y,      // y: (count), updated in place
        int count)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
            y[i] = y[i] < 0f ? 0f : y[i];
    }

    /// <summary>ReLU backward, in place on the incoming gradient: <c>dy[i] = y[i] &gt; 0 ? dy[i] : 0</c>.</summary>
    public static void ReluBackward(
        ArrayView<float> dy,     // dy: (B, N), d(loss)/d(relu output), becomes d(loss)/d(relu input)
        ArrayView<float> y,      // y: (B, N), the ReLU's output from the forward pass
        int count)               // B * N
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
            dy[i] = y[i] > 0f ? dy[i] : 0f;
    }

    /// <summary>
    /// Bias gradient: <c>dbias[j] = sum over b of dy[b, j]</c> (one thread per feature, rows in order); with
    /// accumulate (gradient accumulation over micro-batches) the sum is added to what dbias holds.
    /// </summary>
    public static void BiasBackward(
        ArrayView<float> dy,     // dy: (B, N)
        ArrayView<float> dbias,  // dbias: (N), written (or added to)
        int rows, int n,
        int accumulate)          // 0: dbias = sum; 1: dbias += sum
    {
        int stride = Grid.DimX * Group.DimX;
        for (int j = Grid.GlobalIndex.X; j < n; j += stride)
        {
            float sum = 0f;
            for (int b = 0; b < rows; b++)
                sum += dy[b * n + j];
            dbias[j] = accumulate != 0 ? dbias[j] + sum : sum;
        }
    }
}
