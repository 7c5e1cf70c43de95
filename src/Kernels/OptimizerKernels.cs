using ILGPU;
using ILGPU.Algorithms;

namespace ScratchNet.Kernels;

/// <summary>
/// Optimizer updates, each one launch over all parameters at once: parameters, gradients and optimizer
/// state each live in one flat buffer (llm.c style), so a whole model is updated by one kernel.
/// Letters as in docs/glossary.md: P = number of parameters.
/// </summary>
public static class OptimizerKernels
{
    /// <summary>
    /// Adam (Kingma and Ba), exactly as torch.optim.Adam computes it (no weight decay, no amsgrad), step t >= 1.
    /// The textbook form (the paper's Algorithm 1; <see cref="Reference.Adam"/> computes it this way):
    /// <code>
    /// m  = beta1 * m + (1 - beta1) * g              first moment: a running mean of the gradient
    /// v  = beta2 * v + (1 - beta2) * g^2            second moment: a running mean of its square
    /// m^ = m / c1,   v^ = v / c2                    bias correction, c1 = 1 - beta1^t, c2 = 1 - beta2^t
    /// p  = p - lr * m^ / (sqrt(v^) + eps)
    /// </code>
    /// What this kernel computes: the same update rearranged, since m^ = m / c1 and sqrt(v^) = sqrt(v) / sqrt(c2),
    /// <code>
    /// p  = p - (lr / c1) * m / (sqrt(v) * (1 / sqrt(c2)) + eps)
    ///          stepSize                 invSqrtC2
    /// </code>
    /// so the two per-step constants are computed once on the host (<see cref="AdamStepConstants"/>), in double
    /// precision, instead of two divisions per parameter. torch.optim.Adam rearranges it the same way.
    /// </summary>
    public static void Adam(
        ArrayView<float> param,   // param: (P), updated
        ArrayView<float> grad,    // grad: (P)
        ArrayView<float> m,       // m: (P), first moment, updated
        ArrayView<float> v,       // v: (P), second moment, updated
        int count, float beta1, float beta2, float eps, float stepSize, float invSqrtC2)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
        {
            float g = grad[i];
            float mi = beta1 * m[i] + (1f - beta1) * g;
            float vi = beta2 * v[i] + (1f - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            param[i] -= stepSize * mi / (XMath.Sqrt(vi) * invSqrtC2 + eps);
        }
    }

    /// <summary>Adam's bias corrections for step t >= 1: c1 = 1 - beta1^t, c2 = 1 - beta2^t.</summary>
    public static (double C1, double C2) AdamBiasCorrection(double beta1, double beta2, long t) =>
        (1 - Math.Pow(beta1, t), 1 - Math.Pow(beta2, t));

    /// <summary>The two constants the Adam kernel takes for step t: stepSize = lr / c1 and invSqrtC2 = 1 / sqrt(c2).</summary>
    public static (float StepSize, float InvSqrtC2) AdamStepConstants(double lr, double beta1, double beta2, long t)
    {
        var (c1, c2) = AdamBiasCorrection(beta1, beta2, t);
        return ((float)(lr / c1), (float)(1 / Math.Sqrt(c2)));
    }

    /// <summary>Plain SGD: <c>p = p - lr * g</c>.</summary>
    public static void Sgd(
        ArrayView<float> param,   // param: (P), updated
        ArrayView<float> grad,    // grad: (P)
        int count, float lr)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
            param[i] -= lr * grad[i];
    }

    /// <summary>
    /// SGD with momentum, as torch.optim.SGD: <c>buf = mu * buf + g; p = p - lr * buf</c>.
    /// (On the first step buf is zero, so buf = g, which is what PyTorch does too.)
    /// </summary>
    public static void SgdMomentum(
        ArrayView<float> param,   // param: (P), updated
        ArrayView<float> grad,    // grad: (P)
        ArrayView<float> buf,     // buf: (P), momentum buffer, updated
        int count, float lr, float momentum)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
        {
            float bi = momentum * buf[i] + grad[i];
            buf[i] = bi;
            param[i] -= lr * bi;
        }
    }
}
