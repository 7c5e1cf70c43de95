using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// A backend: the operations of a training step, over device buffers (ArrayViews). Two implementations:
/// <see cref="IlgpuBackend"/> launches the ILGPU kernels (CUDA, OpenCL, ILGPU's CPU accelerator) and
/// <see cref="HostBackend"/> runs vectorised multi-threaded C# on the same buffers (--device host).
/// Glossary (docs/glossary.md, one for the whole engine): B rows (the batch), K input features, N output features,
/// C channels, H and W height and width, P parameters; "classes" spelled out. A matmul is
/// c (M, N) = a (M, K) · b (K, N), as BLAS names the sizes.
/// </summary>
public interface IBackend
{
    /// <summary>The matmul versions this backend really has, for --matmul, selftest and bench.</summary>
    IReadOnlyList<MatmulVersion> MatmulVersions { get; }

    /// <summary>The matmul version that runs when none is forced.</summary>
    MatmulVersion DefaultMatmul { get; }

    /// <summary>c (M, N) = a (M, K) · b (K, N) with a[i, q] = a[i*aRow + q*aCol], b[q, j] = b[q*bRow + j*bCol] (see <see cref="MatmulKernels"/>);
    /// with accumulate, c += a · b.</summary>
    void Matmul(MatmulVersion version, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        int m, int n, int k, int aRow, int aCol, int bRow, int bCol, bool accumulate = false);

    /// <summary>y (B, N) = relu?(y + bias), in place.</summary>
    void BiasActivation(ArrayView<float> y, ArrayView<float> bias, int rows, int n, bool relu);

    /// <summary>y (count) = max(y, 0), in place.</summary>
    void Relu(ArrayView<float> y, int count);

    /// <summary>dy (count) *= (y > 0), in place.</summary>
    void ReluBackward(ArrayView<float> dy, ArrayView<float> y, int count);

    /// <summary>dbias (N) = column sums of dy (B, N); with accumulate (gradient accumulation), dbias += them.</summary>
    void BiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int n, bool accumulate = false);

    /// <summary>direct conv: y (B, F, OH, OW) = x (B, C, H, W) convolved with weight (F, C, k, k), no bias (see <see cref="ConvKernels"/>).</summary>
    void ConvDirectForward(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ConvShape s, int rows);

    /// <summary>direct conv backward: dx (B, C, H, W) from dy (B, F, OH, OW) and weight.</summary>
    void ConvDirectBackwardInput(ArrayView<float> dy, ArrayView<float> weight, ArrayView<float> dx, ConvShape s, int rows);

    /// <summary>direct conv backward: dweight (F, C, k, k) from dy (B, F, OH, OW) and x (B, C, H, W); with accumulate, added to dweight.</summary>
    void ConvDirectBackwardWeight(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dweight, ConvShape s, int rows, bool accumulate = false);

    /// <summary>cols (C k k, OH OW) = the windows of one image (C, H, W).</summary>
    void Im2col(ArrayView<float> image, ArrayView<float> cols, ConvShape s);

    /// <summary>dimage (C, H, W) = the column entries of dcols (C k k, OH OW) folded back onto one image.</summary>
    void Col2im(ArrayView<float> dcols, ArrayView<float> dimage, ConvShape s);

    /// <summary>
    /// The im2col conv forward (see Conv2d), no bias: for each image b of x (B, C, H, W),
    /// cols (C k k, OH OW) = im2col(x_b), then y_b (F, OH OW) = weight (F, C k k) · cols. Here, those launches image
    /// by image; the host backend gives each core its own images and unfolds 32 output pixels at a time (HostConv).
    /// </summary>
    void Im2colForward(MatmulVersion version, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> cols, ArrayView<float> y, ConvShape s, int rows)
    {
        long inImage = (long)s.C * s.H * s.W, outImage = (long)s.F * s.ColCols;
        for (int b = 0; b < rows; b++)
        {
            Im2col(x.SubView(b * inImage, inImage), cols, s);
            Matmul(version, weight, cols, y.SubView(b * outImage, outImage), s.F, s.ColCols, s.ColRows, s.ColRows, 1, s.ColCols, 1);
        }
    }

    /// <summary>
    /// The im2col conv backward, no bias: for each image b, cols = im2col(x_b); dweight (F, C k k) += dy_b (F, OH OW) · cols^T
    /// (image 0 writes, unless accumulate: then every image adds); with inputGradient, cols = weight^T (C k k, F) · dy_b and
    /// dx_b (C, H, W) = col2im(cols). Here, those launches image by image; the host backend splits each image's rows of
    /// cols between the cores.
    /// </summary>
    void Im2colBackward(MatmulVersion version, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> weight,
        ArrayView<float> dweight, ArrayView<float> cols, ArrayView<float> dx, bool inputGradient, ConvShape s, int rows, bool accumulate = false)
    {
        long inImage = (long)s.C * s.H * s.W, outImage = (long)s.F * s.ColCols;
        for (int b = 0; b < rows; b++)
        {
            var dyb = dy.SubView(b * outImage, outImage);
            Im2col(x.SubView(b * inImage, inImage), cols, s);
            // dW (F, C k k) (+)= dy_b (F, OH OW) · cols^T: b[q, j] = cols[j, q] -> bRow = 1, bCol = OH OW.
            Matmul(version, dyb, cols, dweight, s.F, s.ColRows, s.ColCols, s.ColCols, 1, 1, s.ColCols, accumulate: accumulate || b > 0);
            if (!inputGradient) continue;
            // cols (C k k, OH OW) = W^T (C k k, F) · dy_b (F, OH OW): a[i, q] = W[q, i] -> aRow = 1, aCol = C k k.
            Matmul(version, weight, dyb, cols, s.ColRows, s.ColCols, s.F, 1, s.ColRows, s.ColCols, 1);
            Col2im(cols, dx.SubView(b * inImage, inImage), s);
        }
    }

    /// <summary>y (B, F, plane) += bias (F), in place; with relu, then y = max(y, 0) in the same pass (the ReLU after a conv).</summary>
    void ChannelBias(ArrayView<float> y, ArrayView<float> bias, int rows, int channels, int plane, bool relu = false);

    /// <summary>dbias (F) = sums of dy (B, F, plane) over B and the plane; with accumulate, dbias += them.</summary>
    void ChannelBiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int channels, int plane, bool accumulate = false);

    /// <summary>y and indices (B C planes of H/s x W/s) = s x s max pooling of x (B C planes of H x W) (see <see cref="PoolKernels"/>).</summary>
    void MaxPoolForward(ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices, int planes, int h, int w, int size);

    /// <summary>dx (B C planes of H x W) from dy and the indices of the maxima.</summary>
    void MaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx, int planes, int h, int w, int size);

    /// <summary>The same and the backward of the ReLU before the pool in one pass: dx is also 0 where x (the pool's input, the ReLU's output) is not &gt; 0.</summary>
    void ReluMaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> x, ArrayView<float> dx, int planes, int h, int w, int size);

    /// <summary>
    /// losses (B) and dlogits (B, classes) = d(mean loss)/d(logits) from logits (B, classes) and labels (B), the mean taken
    /// over meanRows rows (B itself; with gradient accumulation, the whole batch's rows).
    /// </summary>
    void SoftmaxCrossEntropy(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<float> dlogits, int rows, int classes, int meanRows);

    /// <summary>predictions (B) = argmax of each row of logits (B, classes).</summary>
    void Argmax(ArrayView<float> logits, ArrayView<int> predictions, int rows, int classes);

    /// <summary>One Adam step over P parameters (see <see cref="OptimizerKernels.Adam"/> for the formula).</summary>
    void Adam(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, int count,
        float beta1, float beta2, float eps, float stepSize, float invSqrtC2);

    /// <summary>p (P) -= lr * g (P).</summary>
    void Sgd(ArrayView<float> param, ArrayView<float> grad, int count, float lr);

    /// <summary>buf = momentum * buf + g; p -= lr * buf, over P parameters.</summary>
    void SgdMomentum(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> buf, int count, float lr, float momentum);

    /// <summary>x (B, K) and y (B) gathered from the dataset's bytes at `indices` and normalised (see <see cref="DataKernels"/>).</summary>
    void GatherNormalize(ArrayView<byte> pixels, ArrayView<byte> labels, ArrayView<int> indices, ArrayView<float> scaleShift,
        ArrayView<float> x, ArrayView<int> y, int rows, int k, int planeSize, int channels);

    // 16-bit storage (--precision fp16 and bf16, see HalfKernels): ushort buffers, float32 arithmetic.

    /// <summary>half (P) = round(master (P)): the 16-bit weight copy.</summary>
    void ConvertToHalf(ArrayView<float> master, ArrayView<ushort> half, int count, HalfFormat format);

    /// <summary>c (M, N) = a (M, K) · b (K, N), 16-bit in and out, float32 sums (strides as in <see cref="Matmul"/>).</summary>
    void MatmulHalf(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol, HalfFormat format);

    /// <summary>c (M, N) float32 = a (M, K) · b (K, N), 16-bit in; with accumulate, c += a · b.</summary>
    void MatmulHalfToFloat(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol,
        HalfFormat format, bool accumulate = false);

    /// <summary>y (B, N) = relu?(y + bias), 16-bit, in place.</summary>
    void BiasActivationHalf(ArrayView<ushort> y, ArrayView<ushort> bias, int rows, int n, bool relu, HalfFormat format);

    /// <summary>y (count) = max(y, 0), 16-bit, in place.</summary>
    void ReluHalf(ArrayView<ushort> y, int count, HalfFormat format);

    /// <summary>dy (count) *= (y > 0), 16-bit, in place.</summary>
    void ReluBackwardHalf(ArrayView<ushort> dy, ArrayView<ushort> y, int count, HalfFormat format);

    /// <summary>dbias (N) float32 (+)= column sums of dy (B, N) 16-bit.</summary>
    void BiasBackwardHalf(ArrayView<ushort> dy, ArrayView<float> dbias, int rows, int n, HalfFormat format, bool accumulate = false);

    /// <summary>losses (B) float32 and dlogits (B, classes) 16-bit = scale x d(mean loss)/d(logits), from 16-bit logits.</summary>
    void SoftmaxCrossEntropyHalf(ArrayView<ushort> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<ushort> dlogits,
        int rows, int classes, int meanRows, float scale, HalfFormat format);

    /// <summary>predictions (B) = argmax of each row of 16-bit logits (B, classes).</summary>
    void ArgmaxHalf(ArrayView<ushort> logits, ArrayView<int> predictions, int rows, int classes, HalfFormat format);

    /// <summary>16-bit direct conv forward with the bias: y (B, F, OH, OW) = round(bias + x (B, C, H, W) convolved with weight (F, C, k, k)) (see <see cref="HalfConvKernels"/>).</summary>
    void ConvForwardHalf(ArrayView<ushort> x, ArrayView<ushort> weight, ArrayView<ushort> bias, ArrayView<ushort> y, ConvShape s, int rows, HalfFormat format);

    /// <summary>16-bit direct conv backward: dx (B, C, H, W) from dy (B, F, OH, OW) and the 16-bit weight.</summary>
    void ConvBackwardInputHalf(ArrayView<ushort> dy, ArrayView<ushort> weight, ArrayView<ushort> dx, ConvShape s, int rows, HalfFormat format);

    /// <summary>16-bit direct conv backward: float32 dweight (F, C, k, k) from 16-bit dy and x; with accumulate, added to dweight.</summary>
    void ConvBackwardWeightHalf(ArrayView<ushort> dy, ArrayView<ushort> x, ArrayView<float> dweight, ConvShape s, int rows, HalfFormat format, bool accumulate = false);

    /// <summary>float32 dbias (F) = sums of 16-bit dy (B, F, plane) over B and the plane; with accumulate, dbias += them.</summary>
    void ChannelBiasBackwardHalf(ArrayView<ushort> dy, ArrayView<float> dbias, int rows, int channels, int plane, HalfFormat format, bool accumulate = false);

    /// <summary>16-bit max pooling: y and indices as <see cref="MaxPoolForward"/>, the maxima's bits copied.</summary>
    void MaxPoolForwardHalf(ArrayView<ushort> x, ArrayView<ushort> y, ArrayView<int> indices, int planes, int h, int w, int size, HalfFormat format);

    /// <summary>16-bit max-pool backward: dx gets dy's bits where each maximum was, 0 elsewhere (no arithmetic, so no format).</summary>
    void MaxPoolBackwardHalf(ArrayView<ushort> dy, ArrayView<int> indices, ArrayView<ushort> dx, int planes, int h, int w, int size);

    /// <summary>grad (P) *= invScale; found[0] = 1 when any gradient is inf or NaN (the loss scaler's check).</summary>
    void Unscale(ArrayView<float> grad, ArrayView<int> found, int count, float invScale);

    /// <summary>Waits until everything launched so far has finished.</summary>
    void Synchronize();
}
