using ILGPU;
using ILGPU.Algorithms;

namespace ScratchNet.Kernels;

/// <summary>
/// Softmax + cross-entropy + its gradient in one kernel (PyTorch's nn.CrossEntropyLoss, mean reduction).
/// For row b with logits z (`classes` values) and label y:
/// <code>
/// m        = max_j z_j                       (subtracted so exp never overflows)
/// s        = sum_j exp(z_j - m)
/// loss[b]  = log(s) + m - z_y                = -log softmax(z)_y
/// dz[b, j] = (exp(z_j - m) / s - [j == y]) / R    (the gradient of the batch mean)
/// </code>
/// Letters as in docs/glossary.md: B = rows in this call; "classes" spelled out. R (meanRows) is the rows the mean is
/// taken over: B itself, or with gradient accumulation the whole batch's rows, so that a micro-batch's loss counts
/// with weight B / R and the summed gradients equal the full batch's.
/// </summary>
public static class LossKernels
{
    public static void SoftmaxCrossEntropy(
        ArrayView<float> logits,   // logits: (B, classes)
        ArrayView<int> labels,     // labels: (B), each in 0..classes-1
        ArrayView<float> losses,   // losses: (B), written: each row's loss
        ArrayView<float> dlogits,  // dlogits: (B, classes), written: d(mean loss)/d(logits)
        int rows, int classes,
        int meanRows)              // R: the mean is over R rows (R = B, or the batch's rows with accumulation)
    {
        int stride = Grid.DimX * Group.DimX;
        float invRows = 1f / meanRows;
        for (int b = Grid.GlobalIndex.X; b < rows; b += stride)
        {
            int row = b * classes;
            float max = logits[row];
            for (int j = 1; j < classes; j++) max = XMath.Max(max, logits[row + j]);
            float sum = 0f;
            for (int j = 0; j < classes; j++) sum += XMath.Exp(logits[row + j] - max);
            int label = labels[b];
            losses[b] = XMath.Log(sum) + max - logits[row + label];
            float invSum = 1f / sum;
            for (int j = 0; j < classes; j++)
            {
                float softmax = XMath.Exp(logits[row + j] - max) * invSum;
                dlogits[row + j] = (softmax - (j == label ? 1f : 0f)) * invRows;
            }
        }
    }

    /// <summary>Prediction per row: the index of the largest logit (the first one on ties, like torch.argmax).</summary>
    public static void Argmax(
        ArrayView<float> logits,       // logits: (B, classes)
        ArrayView<int> predictions,    // predictions: (B), written
        int rows, int classes)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int b = Grid.GlobalIndex.X; b < rows; b += stride)
        {
            int row = b * classes, best = 0;
            for (int j = 1; j < classes; j++)
                if (logits[row + j] > logits[row + best]) best = j;
            predictions[b] = best;
        }
    }
}
