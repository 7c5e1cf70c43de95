using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The host backend's 16-bit storage operations (--precision fp16 and bf16): the same arithmetic as
/// <see cref="HalfKernels"/>, in plain C# loops: read 16 bits, compute in float32, round the result back with
/// <see cref="HalfKernels.FromFloat"/>. A matmul's column panels are split between the cores (HostParallel: nothing allocated). These are written to be read, not
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
    static ushort Store(float f, HalfFormat format) => HalfKernels.FromFloat(f, (int)format);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ConvertToHalf(ArrayView<float> master, ArrayView<ushort> half, int count, HalfFormat format)
    {
        float* src = Ptr(master);
        ushort* dst = Ptr(half);
        for (int i = 0; i < count; i++) dst[i] = Store(src[i], format);
    }

    public void MatmulHalf(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol, HalfFormat format) =>
        MatmulHalf(Ptr(a), Ptr(b), Ptr(c), null, m, n, k, aRow, aCol, bRow, bCol, format, accumulate: false);

    public void MatmulHalfToFloat(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol,
        HalfFormat format, bool accumulate = false) =>
        MatmulHalf(Ptr(a), Ptr(b), null, Ptr(c), m, n, k, aRow, aCol, bRow, bCol, format, accumulate);

    /// <summary>The largest inner size K whose 8-column panel of b, as float32, goes on the stack (8 K floats, 128 KB).</summary>
    const int PanelK = 4096;

    /// <summary>One 16-bit matmul's arguments (reused: a step allocates nothing); each part computes a range of 8-column panels.</summary>
    sealed class HalfMatmulWork : HostParallel.IWork
    {
        public ushort* A, B, C16;
        public float* C32;
        public int M, N, K, ARow, ACol, BRow, BCol;
        public HalfFormat Format;
        public bool Accumulate;

        public void Run(int part, int parts)
        {
            var (p0, p1) = HostParallel.Range((N + 7) / 8, 1, part, parts);
            for (int p = p0; p < p1; p++) HalfPanel(A, B, C16, C32, M, N, K, ARow, ACol, BRow, BCol, Format, Accumulate, p);
        }
    }

    readonly HalfMatmulWork _halfMatmul = new();

    void MatmulHalf(ushort* a, ushort* b, ushort* c16, float* c32, int m, int n, int k, int aRow, int aCol, int bRow, int bCol,
        HalfFormat format, bool accumulate)
    {
        var w = _halfMatmul;
        w.A = a; w.B = b; w.C16 = c16; w.C32 = c32;
        (w.M, w.N, w.K, w.ARow, w.ACol, w.BRow, w.BCol, w.Format, w.Accumulate) = (m, n, k, aRow, aCol, bRow, bCol, format, accumulate);
        HostParallel.Run(w, (long)m * n * k < ParallelThreshold ? 1 : Math.Min(HostParallel.Cores, (n + 7) / 8));
    }

    /// <summary>
    /// c (M, N) = a (M, K) · b (K, N), 16-bit a and b in any strides, into 16-bit c16 or float32 c32 (written or added to):
    /// panel p, the eight columns 8p..8p+7. Their panel of b, K x 8 values, is turned into float32 once (on the stack), then every row i
    /// (four rows at a time) runs <c>sum[0..8] += a[i, q] * panel[q, 0..8]</c> for q in order, a multiply then an add: each output is summed in
    /// exactly the kernel's order, so the results are bit-identical to <see cref="HalfKernels"/>'. Panels are split
    /// between the cores. Above <see cref="PanelK"/> it is the plain loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void HalfPanel(ushort* a, ushort* b, ushort* c16, float* c32, int m, int n, int k, int aRow, int aCol, int bRow, int bCol,
        HalfFormat format, bool accumulate, int p)
    {
        int j0 = p * 8, width = Math.Min(8, n - j0);
        if (k > PanelK)
        {
            for (int row = 0; row < m; row++)
                for (int j = j0; j < j0 + width; j++)
                {
                    float s = 0f;
                    for (int q = 0; q < k; q++) s += Load(a[(long)row * aRow + (long)q * aCol], format) * Load(b[(long)q * bRow + (long)j * bCol], format);
                    Write(row, j, s);
                }
            return;
        }
        float* panel = stackalloc float[8 * k];
        for (int q = 0; q < k; q++)
            for (int l = 0; l < 8; l++)
                panel[q * 8 + l] = l < width ? Load(b[(long)q * bRow + (long)(j0 + l) * bCol], format) : 0f;
        float* sums = stackalloc float[4 * 8];
        int i = 0;
        // Four rows at a time: four independent chains share each panel load (one chain waits on its own adds).
        for (; i + 4 <= m; i += 4)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            ushort* a0 = a + (long)i * aRow;
            for (int q = 0; q < k; q++)
            {
                var pq = Vector256.Load(panel + q * 8);
                ushort* aq = a0 + (long)q * aCol;
                s0 += Vector256.Create(Load(aq[0], format)) * pq;
                s1 += Vector256.Create(Load(aq[aRow], format)) * pq;
                s2 += Vector256.Create(Load(aq[2L * aRow], format)) * pq;
                s3 += Vector256.Create(Load(aq[3L * aRow], format)) * pq;
            }
            s0.Store(sums); s1.Store(sums + 8); s2.Store(sums + 16); s3.Store(sums + 24);
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < width; l++) Write(i + r, j0 + l, sums[r * 8 + l]);
        }
        for (; i < m; i++)
        {
            var sum = Vector256<float>.Zero;
            ushort* ai = a + (long)i * aRow;
            for (int q = 0; q < k; q++)
                sum += Vector256.Create(Load(ai[(long)q * aCol], format)) * Vector256.Load(panel + q * 8);
            sum.Store(sums);
            for (int l = 0; l < width; l++) Write(i, j0 + l, sums[l]);
        }
        void Write(int i, int j, float s)
        {
            long at = (long)i * n + j;
            if (c16 is not null) c16[at] = Store(s, format);
            else c32[at] = accumulate ? c32[at] + s : s;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void BiasActivationHalf(ArrayView<ushort> y, ArrayView<ushort> bias, int rows, int n, bool relu, HalfFormat format)
    {
        ushort* py = Ptr(y), pb = Ptr(bias);
        for (long i = 0; i < (long)rows * n; i++)
        {
            float v = Load(py[i], format) + Load(pb[i % n], format);
            py[i] = Store(relu && v < 0f ? 0f : v, format);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ReluHalf(ArrayView<ushort> y, int count, HalfFormat format)
    {
        ushort* py = Ptr(y);
        for (int i = 0; i < count; i++)
            if (Load(py[i], format) < 0f) py[i] = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ReluBackwardHalf(ArrayView<ushort> dy, ArrayView<ushort> y, int count, HalfFormat format)
    {
        ushort* pd = Ptr(dy), py = Ptr(y);
        for (int i = 0; i < count; i++)
            if (!(Load(py[i], format) > 0f)) pd[i] = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
