using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The operations of a training step, over device buffers (ArrayViews). Two implementations:
/// <see cref="DeviceKernels"/> launches the ILGPU kernels (CUDA, OpenCL, ILGPU's CPU accelerator) and
/// <see cref="HostKernels"/> runs vectorised multi-threaded C# on the same buffers (--device host).
/// Shapes follow <see cref="MatmulKernels"/> and the kernel files: B = rows, N = features, C = classes.
/// </summary>
public interface IComputeOps
{
    /// <summary>Shown in reports: the matmul version that runs when none is forced.</summary>
    MatmulVersion DefaultMatmul { get; }

    /// <summary>C (M, N) = A (M, P) · B (P, N) with A[i, p] = a[i*aRow + p*aCol], B[p, j] = b[p*bRow + j*bCol].</summary>
    void Matmul(MatmulVersion version, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        int m, int n, int p, int aRow, int aCol, int bRow, int bCol);

    /// <summary>y (B, N) = relu?(y + bias), in place.</summary>
    void BiasActivation(ArrayView<float> y, ArrayView<float> bias, int rows, int n, bool relu);

    /// <summary>dy (count) *= (y > 0), in place.</summary>
    void ReluBackward(ArrayView<float> dy, ArrayView<float> y, int count);

    /// <summary>dbias (N) = column sums of dy (B, N).</summary>
    void BiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int n);

    /// <summary>losses (B) and dlogits (B, C) = d(mean loss)/d(logits) from logits (B, C) and labels (B).</summary>
    void SoftmaxCrossEntropy(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<float> dlogits, int rows, int classes);

    /// <summary>predictions (B) = argmax of each row of logits (B, C).</summary>
    void Argmax(ArrayView<float> logits, ArrayView<int> predictions, int rows, int classes);

    void Adam(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, int count,
        float beta1, float beta2, float eps, float stepSize, float invSqrtC2);

    void Sgd(ArrayView<float> param, ArrayView<float> grad, int count, float lr);

    void SgdMomentum(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> buf, int count, float lr, float momentum);

    /// <summary>x (B, K) and y (B) gathered from the dataset's bytes at `indices` and normalised (see <see cref="DataKernels"/>).</summary>
    void GatherNormalize(ArrayView<byte> pixels, ArrayView<byte> labels, ArrayView<int> indices, ArrayView<float> scaleShift,
        ArrayView<float> x, ArrayView<int> y, int rows, int k, int planeSize, int channels);

    /// <summary>Waits until everything launched so far has finished.</summary>
    void Synchronize();
}
