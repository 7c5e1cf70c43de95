using System.Runtime.CompilerServices;
using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The host backend's 16-bit storage operations (--precision fp16 and bf16): the same arithmetic as
/// <see cref="HalfKernels"/>, in plain C# loops: read 16 bits, compute in float32, round the result back with
/// <see cref="HalfKernels.FromFloat"/>. A matmul's rows are split between the cores. These are written to be read, not
/// tuned: the float32 path is this backend's fast one.
/// </summary>
public sealed unsafe partial class HostBackend
{
    static ushort* Ptr(ArrayView<ushort> v) => (ushort*)Address(v);

    /// <summary>Every fp16 pattern as float32 (256 KB, made once): a load instead of the bit juggling of <see cref="HalfKernels.HalfToFloat"/>.</summary>
    static readonly float[] Fp16Values = Enumerable.Range(0, 65536).Select(h => HalfKernels.HalfToFloat((ushort)h)).ToArray();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Load(ushort h, HalfFormat format) =>
        format == HalfFormat.Bf16 ? BitConverter.UInt32BitsToSingle((uint)h << 16) : Fp16Values[h];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ushort Store(float f, HalfFormat format) => format == HalfFormat.Bf16 ? HalfKernels.FloatToBf16(f) : HalfKernels.FloatToHalf(f);

    public void ConvertToHalf(ArrayView<float> master, ArrayView<ushort> half, int count, HalfFormat format)
    {
        float* src = Ptr(master);
        ushort* dst = Ptr(half);
        for (int i = 0; i < count; i++) dst[i] = Store(src[i], format);
    }

    /// <summary>One output c[i, j] of a 16-bit matmul: the float32 sum over q in order, as the kernel sums it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(ushort* a, ushort* b, int k, long aCol, long bRow, HalfFormat format)
    {
        float sum = 0f;
        for (int q = 0; q < k; q++) sum += Load(a[q * aCol], format) * Load(b[q * bRow], format);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void MatmulHalf(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol, HalfFormat format)
    {
        ushort* pa = Ptr(a), pb = Ptr(b), pc = Ptr(c);
        Rows(m, (long)n * k, i =>
        {
            for (int j = 0; j < n; j++)
                pc[(long)i * n + j] = Store(Dot(pa + (long)i * aRow, pb + (long)j * bCol, k, aCol, bRow, format), format);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void MatmulHalfToFloat(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol,
        HalfFormat format, bool accumulate = false)
    {
        ushort* pa = Ptr(a), pb = Ptr(b);
        float* pc = Ptr(c);
        Rows(m, (long)n * k, i =>
        {
            for (int j = 0; j < n; j++)
            {
                float sum = Dot(pa + (long)i * aRow, pb + (long)j * bCol, k, aCol, bRow, format);
                long at = (long)i * n + j;
                pc[at] = accumulate ? pc[at] + sum : sum;
            }
        });
    }

    /// <summary>Runs row(i) for i in 0..rows-1, split between the cores when a row's work times the rows is worth it.</summary>
    static void Rows(int rows, long workPerRow, Action<int> row)
    {
        if (rows * workPerRow < ParallelThreshold || HostParallel.Cores == 1)
            for (int i = 0; i < rows; i++) row(i);
        else
            Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = HostParallel.Cores }, row);
    }

    public void BiasActivationHalf(ArrayView<ushort> y, ArrayView<ushort> bias, int rows, int n, bool relu, HalfFormat format)
    {
        ushort* py = Ptr(y), pb = Ptr(bias);
        for (long i = 0; i < (long)rows * n; i++)
        {
            float v = Load(py[i], format) + Load(pb[i % n], format);
            py[i] = Store(relu && v < 0f ? 0f : v, format);
        }
    }

    public void ReluHalf(ArrayView<ushort> y, int count, HalfFormat format)
    {
        ushort* py = Ptr(y);
        for (int i = 0; i < count; i++)
            if (Load(py[i], format) < 0f) py[i] = 0;
    }

    public void ReluBackwardHalf(ArrayView<ushort> dy, ArrayView<ushort> y, int count, HalfFormat format)
    {
        ushort* pd = Ptr(dy), py = Ptr(y);
        for (int i = 0; i < count; i++)
            if (!(Load(py[i], format) > 0f)) pd[i] = 0;
    }

    public void BiasBackwardHalf(ArrayView<ushort> dy, ArrayView<float> dbias, int rows, int n, HalfFormat format, bool accumulate = false)
    {
        ushort* pd = Ptr(dy);
        float* pb = Ptr(dbias);
        for (int j = 0; j < n; j++)
        {
            float sum = 0f;
            for (int r = 0; r < rows; r++) sum += Load(pd[(long)r * n + j], format);
            pb[j] = accumulate ? pb[j] + sum : sum;
        }
    }

    public void SoftmaxCrossEntropyHalf(ArrayView<ushort> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<ushort> dlogits,
        int rows, int classes, int meanRows, float scale, HalfFormat format)
    {
        ushort* pl = Ptr(logits), pg = Ptr(dlogits);
        float* ploss = Ptr(losses);
        int* py = Ptr(labels);
        float factor = scale / meanRows;
        for (int b = 0; b < rows; b++)
        {
            ushort* z = pl + (long)b * classes;
            ushort* g = pg + (long)b * classes;
            float max = Load(z[0], format);
            for (int j = 1; j < classes; j++) max = MathF.Max(max, Load(z[j], format));
            float sum = 0f;
            for (int j = 0; j < classes; j++) sum += MathF.Exp(Load(z[j], format) - max);
            int label = py[b];
            ploss[b] = MathF.Log(sum) + max - Load(z[label], format);
            float invSum = 1f / sum;
            for (int j = 0; j < classes; j++)
                g[j] = Store((MathF.Exp(Load(z[j], format) - max) * invSum - (j == label ? 1f : 0f)) * factor, format);
        }
    }

    public void ArgmaxHalf(ArrayView<ushort> logits, ArrayView<int> predictions, int rows, int classes, HalfFormat format)
    {
        ushort* pl = Ptr(logits);
        int* pp = Ptr(predictions);
        for (int b = 0; b < rows; b++)
        {
            ushort* row = pl + (long)b * classes;
            int best = 0;
            for (int j = 1; j < classes; j++)
                if (Load(row[j], format) > Load(row[best], format)) best = j;
            pp[b] = best;
        }
    }

    public void Unscale(ArrayView<float> grad, ArrayView<int> found, int count, float invScale)
    {
        float* pg = Ptr(grad);
        for (int i = 0; i < count; i++)
        {
            if (!float.IsFinite(pg[i])) Ptr(found)[0] = 1;
            pg[i] *= invScale;
        }
    }
}
