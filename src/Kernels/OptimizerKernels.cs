using ILGPU;
using ILGPU.Algorithms;

namespace ScratchNet.Kernels;

/// <summary>
/// Optimizer updates, each one launch over all parameters at once: parameters, gradients and optimizer
/// state each live in one flat buffer (llm.c style), so a whole model is updated by one kernel.
/// Glossary: P = number of parameters.
/// </summary>
public static class OptimizerKernels
{
    /// <summary>
    /// Adam (Kingma and Ba), exactly as torch.optim.Adam computes it (no weight decay, no amsgrad), step t >= 1:
    /// <code>
    /// m = beta1 * m + (1 - beta1) * g
    /// v = beta2 * v + (1 - beta2) * g^2
    /// p = p - (lr / c1) * m / (sqrt(v) / sqrt(c2) + eps)      c1 = 1 - beta1^t,  c2 = 1 - beta2^t
    /// </code>
    /// The host computes stepSize = lr / c1 and invSqrtC2 = 1 / sqrt(c2) in double precision.
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
