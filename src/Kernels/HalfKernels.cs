using ILGPU;
using ILGPU.Algorithms;

namespace ScratchNet.Kernels;

/// <summary>How 16-bit values are stored: IEEE half (fp16) or bfloat16 (bf16).</summary>
public enum HalfFormat { Fp16 = HalfKernels.Fp16, Bf16 = HalfKernels.Bf16 }

/// <summary>
/// Kernels for 16-bit storage (--precision fp16 and bf16): values are kept as 16-bit patterns (ushort) and turned into
/// float32 when read, the arithmetic runs in float32, and results are rounded back to 16 bits when written. That is
/// what "storage-only half" means: no device needs half arithmetic (ILGPU's Half needs cl_khr_fp16 on OpenCL and
/// throws without it; ILGPU has no bfloat16 at all), so these run on the CPU accelerator, OpenCL and CUDA alike,
/// and <see cref="HostBackend"/> has the same operations in C#.
/// The two formats, each 1 sign bit, then exponent, then mantissa:
/// <code>
/// fp16 (IEEE binary16): 5 exponent bits (bias 15), 10 mantissa bits: largest 65,504, smallest normal 2^-14, smallest subnormal 2^-24
/// bf16 (bfloat16):      8 exponent bits (bias 127, float32's), 7 mantissa bits: float32's range, about 3 significant digits
/// </code>
/// A bf16 is the top half of a float32; an fp16 needs its exponent re-biased. Both are rounded to nearest, ties to
/// even, as the hardware conversions do. Letters as in docs/glossary.md; `format` is <see cref="Fp16"/> or <see cref="Bf16"/>.
/// </summary>
public static class HalfKernels
{
    /// <summary>The format argument of every kernel here: IEEE half.</summary>
    public const int Fp16 = 0;
    /// <summary>The format argument of every kernel here: bfloat16.</summary>
    public const int Bf16 = 1;

    /// <summary>A 16-bit pattern of `format` as float32 (exact: every fp16 and bf16 value is a float32).</summary>
    public static float ToFloat(ushort h, int format) => format == Bf16 ? Interop.IntAsFloat((uint)h << 16) : HalfToFloat(h);

    /// <summary>float32 to the nearest 16-bit value of `format` (ties to even; too large gives infinity; NaN stays NaN).</summary>
    public static ushort FromFloat(float f, int format) => format == Bf16 ? FloatToBf16(f) : FloatToHalf(f);

    /// <summary>fp16 bits to float32: re-bias the exponent (15 -> 127); a subnormal is mantissa x 2^-24.</summary>
    public static float HalfToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint exponent = (uint)(h >> 10) & 0x1F;
        uint mantissa = (uint)h & 0x3FF;
        if (exponent == 0)
        {
            float subnormal = mantissa * 5.9604645e-8f;           // mantissa x 2^-24, exact
            return sign != 0 ? -subnormal : subnormal;
        }
        if (exponent == 31) return Interop.IntAsFloat(sign | 0x7F800000u | (mantissa << 13));   // infinity or NaN
        return Interop.IntAsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    /// <summary>float32 to fp16 bits, round to nearest, ties to even.</summary>
    public static ushort FloatToHalf(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000;
        uint abs = x & 0x7FFFFFFF;
        if (abs >= 0x7F800000) return (ushort)(sign | (abs > 0x7F800000 ? 0x7E00u : 0x7C00u));   // NaN, infinity
        if (abs >= 0x477FF000) return (ushort)(sign | 0x7C00);    // 65,520 and up round to infinity
        if (abs >= 0x38800000)                                     // normal: 2^-14 and up
        {
            uint rebiased = abs - 0x38000000;                       // exponent 127 -> 15 bias
            return (ushort)(sign | ((rebiased + 0xFFF + ((rebiased >> 13) & 1)) >> 13));   // drop 13 bits, ties to even
        }
        // Subnormal or zero: the value in units of 2^-24, rounded. value = significand x 2^(e - 150), so units = significand >> (126 - e).
        int e = (int)(abs >> 23);
        if (e < 102) return (ushort)sign;                            // below 2^-25: rounds to 0
        uint significand = (abs & 0x7FFFFF) | 0x800000;
        int shift = 126 - e;                                         // 14..24
        uint q = significand >> shift;
        uint rest = significand & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (q & 1) != 0)) q++;
        return (ushort)(sign | q);
    }

    /// <summary>float32 to bf16 bits: the top 16 bits, rounded to nearest, ties to even (a NaN stays a quiet NaN).</summary>
    public static ushort FloatToBf16(float f)
    {
        uint x = Interop.FloatAsInt(f);
        if ((x & 0x7FFFFFFF) > 0x7F800000) return (ushort)((x >> 16) | 0x40);
        return (ushort)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
    }

    /// <summary>The weight copy: <c>half[i] = round(master[i])</c>, after every optimizer step (Apex O2's model weights).</summary>
    public static void Convert(
        ArrayView<float> master,   // master: (P) float32
        ArrayView<ushort> half,    // half: (P), written
        int count, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
            half[i] = FromFloat(master[i], format);
    }

    /// <summary>One output of a 16-bit matmul: <c>sum over q of a[i, q] * b[q, j]</c> in float32, q in order.</summary>
    static float Dot(ArrayView<ushort> a, ArrayView<ushort> b, int i, int j, int k, int aRow, int aCol, int bRow, int bCol, int format)
    {
        float sum = 0f;
        for (int q = 0; q < k; q++)
            sum += ToFloat(a[i * aRow + q * aCol], format) * ToFloat(b[q * bRow + j * bCol], format);
        return sum;
    }

    /// <summary>
    /// c (M, N) = a (M, K) · b (K, N) with 16-bit a and b read through strides (a[i, q] = a[i*aRow + q*aCol],
    /// b[q, j] = b[q*bRow + j*bCol], as in <see cref="MatmulKernels"/>), summed in float32, one thread per output,
    /// q in order; the sum is rounded to 16 bits: y = x·W^T and dx = dy·W.
    /// </summary>
    public static void MatmulToHalf(
        ArrayView<ushort> a, ArrayView<ushort> b,
        ArrayView<ushort> c,       // c: (M, N), written
        int m, int n, int k, int aRow, int aCol, int bRow, int bCol, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < m * n; idx += stride)
        {
            float sum = Dot(a, b, idx / n, idx % n, k, aRow, aCol, bRow, bCol, format);
            c[idx] = FromFloat(sum, format);
        }
    }

    /// <summary>
    /// The same with a float32 result, written or (accumulate = 1) added to: the weight gradient dW = dy^T·x, which
    /// stays float32 (it is summed over rows and micro-batches, and the float32 master weights are updated from it).
    /// </summary>
    public static void MatmulToFloat(
        ArrayView<ushort> a, ArrayView<ushort> b,
        ArrayView<float> c,        // c: (M, N), written or added to
        int m, int n, int k, int aRow, int aCol, int bRow, int bCol, int format, int accumulate)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < m * n; idx += stride)
        {
            float sum = Dot(a, b, idx / n, idx % n, k, aRow, aCol, bRow, bCol, format);
            c[idx] = accumulate != 0 ? c[idx] + sum : sum;
        }
    }

    /// <summary>Bias and (relu = 1) ReLU in place: <c>y[b, j] = round(relu(y[b, j] + bias[j]))</c>, the bias from the 16-bit weight copy.</summary>
    public static void BiasActivation(
        ArrayView<ushort> y,       // y: (B, N), updated in place
        ArrayView<ushort> bias,    // bias: (N)
        int rows, int n, int relu, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < rows * n; i += stride)
        {
            float v = ToFloat(y[i], format) + ToFloat(bias[i % n], format);
            y[i] = FromFloat(relu != 0 && v < 0f ? 0f : v, format);
        }
    }

    /// <summary>ReLU in place: <c>y[i] = y[i] &lt; 0 ? 0 : y[i]</c> (a NaN stays, as in float32).</summary>
    public static void Relu(
        ArrayView<ushort> y,       // y: (count), updated in place
        int count, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
            if (ToFloat(y[i], format) < 0f) y[i] = 0;
    }

    /// <summary>ReLU backward in place: <c>dy[i] = y[i] &gt; 0 ? dy[i] : 0</c>.</summary>
    public static void ReluBackward(
        ArrayView<ushort> dy,      // dy: (count), becomes d(loss)/d(relu input)
        ArrayView<ushort> y,       // y: (count), the ReLU's output
        int count, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
            if (!(ToFloat(y[i], format) > 0f)) dy[i] = 0;
    }

    /// <summary>Bias gradient in float32: <c>dbias[j] (+)= sum over b of dy[b, j]</c>, rows in order.</summary>
    public static void BiasBackward(
        ArrayView<ushort> dy,      // dy: (B, N)
        ArrayView<float> dbias,    // dbias: (N) float32, written (or added to)
        int rows, int n, int accumulate, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int j = Grid.GlobalIndex.X; j < n; j += stride)
        {
            float sum = 0f;
            for (int b = 0; b < rows; b++) sum += ToFloat(dy[b * n + j], format);
            dbias[j] = accumulate != 0 ? dbias[j] + sum : sum;
        }
    }

    /// <summary>
    /// Softmax-cross-entropy in float32 on 16-bit logits (as autocast runs the loss in float32): the losses are float32,
    /// and the gradient <c>dz = scale (softmax(z) - onehot(y)) / R</c> is rounded to 16 bits. `scale` is the loss scale
    /// (fp16's dynamic loss scaling multiplies the loss, and so every gradient, by it; 1 for bf16).
    /// </summary>
    public static void SoftmaxCrossEntropy(
        ArrayView<ushort> logits,  // logits: (B, classes)
        ArrayView<int> labels,     // labels: (B)
        ArrayView<float> losses,   // losses: (B) float32, written
        ArrayView<ushort> dlogits, // dlogits: (B, classes), written: scale x d(mean loss)/d(logits)
        int rows, int classes, int meanRows, float scale, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        float factor = scale / meanRows;
        for (int b = Grid.GlobalIndex.X; b < rows; b += stride)
        {
            int row = b * classes;
            float max = ToFloat(logits[row], format);
            for (int j = 1; j < classes; j++) max = XMath.Max(max, ToFloat(logits[row + j], format));
            float sum = 0f;
            for (int j = 0; j < classes; j++) sum += XMath.Exp(ToFloat(logits[row + j], format) - max);
            int label = labels[b];
            losses[b] = XMath.Log(sum) + max - ToFloat(logits[row + label], format);
            float invSum = 1f / sum;
            for (int j = 0; j < classes; j++)
            {
                float softmax = XMath.Exp(ToFloat(logits[row + j], format) - max) * invSum;
                dlogits[row + j] = FromFloat((softmax - (j == label ? 1f : 0f)) * factor, format);
            }
        }
    }

    /// <summary>Predictions: the index of each row's largest logit (the first on ties).</summary>
    public static void Argmax(
        ArrayView<ushort> logits,      // logits: (B, classes)
        ArrayView<int> predictions,    // predictions: (B), written
        int rows, int classes, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int b = Grid.GlobalIndex.X; b < rows; b += stride)
        {
            int row = b * classes, best = 0;
            for (int j = 1; j < classes; j++)
                if (ToFloat(logits[row + j], format) > ToFloat(logits[row + best], format)) best = j;
            predictions[b] = best;
        }
    }

    /// <summary>
    /// The loss scaler's unscale (torch's _amp_foreach_non_finite_check_and_unscale_): <c>g[i] *= invScale</c> over the
    /// float32 gradients, and found[0] = 1 when any of them is infinite or NaN (then the step is skipped). found[0]
    /// is only ever set here, never cleared: the caller zeroes it before.
    /// </summary>
    public static void Unscale(
        ArrayView<float> grad,     // grad: (P) float32, multiplied in place
        ArrayView<int> found,      // found: (1), set to 1 on a non-finite gradient
        int count, float invScale)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < count; i += stride)
        {
            float g = grad[i];
            if ((Interop.FloatAsInt(g) & 0x7F800000) == 0x7F800000) found[0] = 1;   // exponent all ones: inf or NaN
            grad[i] = g * invScale;
        }
    }
}
