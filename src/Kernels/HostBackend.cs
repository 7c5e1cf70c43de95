using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The host backend (--device host): every operation of a training step as vectorised, multi-threaded C#
/// over the very same buffers, which live in host memory (ILGPU's CPU accelerator allocates them), so the
/// MemoryTracker, budgets and reports work unchanged. ILGPU 1.5 has no SIMD CPU backend; this is the fast
/// way to train on a machine without a GPU. Same math as the ILGPU kernels, tested against the same reference.
///
/// Matmul has two SIMD paths, picked from the strides, and a plain loop for any other layout:
/// <code>
/// b rows contiguous (bCol = 1):   c[i, :] = sum_q a[i, q] * b[q, :]      dx = dy·W and dW = dy^T·x
///     4 rows x 16 columns of c in 8 vector registers; a values broadcast, b rows loaded as vectors.
/// a and b^T rows contiguous (aCol = 1, bRow = 1): c[i, j] = dot(a[i, :], b[:, j])    y = x·W^T
///     4 x 4 dot products at once in 16 vector registers, summed across lanes at the end.
/// </code>
/// Rows of c are split between the cores by <see cref="HostParallel"/>, which allocates nothing per call.
/// Every method is marked AggressiveOptimization: .NET would otherwise run its first calls as quickly
/// compiled, unoptimised code (tier 0), several times slower for vector loops.
/// </summary>
public sealed unsafe partial class HostBackend : IBackend
{
    /// <summary>One matmul of its own (SIMD C#); the ILGPU kernel versions do not run here.</summary>
    public IReadOnlyList<MatmulVersion> MatmulVersions { get; } = [MatmulVersion.HostSimd];
    public MatmulVersion DefaultMatmul => MatmulVersion.HostSimd;

    /// <summary>Work below about 64K multiply-adds stays on the calling thread: waking another costs more.</summary>
    const long ParallelThreshold = 65_536;

    readonly MatmulWork _matmul = new();
    readonly AdamWork _adam = new();

    /// <summary>The host address of a view into a buffer of ILGPU's CPU accelerator: buffer start + offset.</summary>
    static float* Ptr(ArrayView<float> v) => (float*)Address(v);
    static int* Ptr(ArrayView<int> v) => (int*)Address(v);

    static byte* Address<TView>(TView v) where TView : IContiguousArrayView =>
        (byte*)v.Buffer.NativePtr + v.IndexInBytes;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Matmul(MatmulVersion version, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        int m, int n, int k, int aRow, int aCol, int bRow, int bCol, bool accumulate = false)
    {
        if (version != MatmulVersion.HostSimd)
            throw new NotSupportedException($"the host backend has one matmul (host SIMD), not the ILGPU kernel '{Kernels.MatmulVersions.Label(version)}'");
        var w = _matmul;
        w.A = Ptr(a);
        w.B = Ptr(b);
        w.C = Ptr(c);
        (w.M, w.N, w.K, w.ARow, w.ACol, w.BRow, w.BCol, w.Accumulate) = (m, n, k, aRow, aCol, bRow, bCol, accumulate);
        HostParallel.Run(w, (long)m * n * k < ParallelThreshold ? 1 : Math.Min(HostParallel.Cores, (m + 3) / 4));
    }

    /// <summary>One matmul's arguments; each part computes a range of rows of c with the fitting path.</summary>
    sealed class MatmulWork : HostParallel.IWork
    {
        public float* A, B, C;
        public int M, N, K, ARow, ACol, BRow, BCol;
        public bool Accumulate;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int parts)
        {
            var (i0, i1) = HostParallel.Range(M, 4, part, parts);
            if (Vector256.IsHardwareAccelerated && BCol == 1)
                MatmulRowsB(A, B, C, i0, i1, N, K, ARow, ACol, BRow, Accumulate);
            else if (Vector256.IsHardwareAccelerated && ACol == 1 && BRow == 1)
                MatmulDots(A, B, C, i0, i1, N, K, ARow, BCol, Accumulate);
            else
                MatmulPlain(A, B, C, i0, i1, N, K, ARow, ACol, BRow, BCol, Accumulate);
        }
    }

    /// <summary>c[i, :] = sum_q a[i, q] * b[q, :] for rows i0..i1, b rows contiguous (stride bRow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulRowsB(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int aCol, int bRow, bool acc)
    {
        int i = i0;
        for (; i + 4 <= i1; i += 4)
        {
            float* a0 = a + (long)i * aRow, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow;
            int j = 0;
            for (; j + 16 <= n; j += 16)
            {
                Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
                Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
                for (int q = 0; q < k; q++)
                {
                    float* bq = b + (long)q * bRow + j;
                    var b0 = Vector256.Load(bq);
                    var b1 = Vector256.Load(bq + 8);
                    long qa = (long)q * aCol;
                    var v0 = Vector256.Create(a0[qa]);
                    var v1 = Vector256.Create(a1[qa]);
                    var v2 = Vector256.Create(a2[qa]);
                    var v3 = Vector256.Create(a3[qa]);
                    c00 = Vector256.FusedMultiplyAdd(v0, b0, c00); c01 = Vector256.FusedMultiplyAdd(v0, b1, c01);
                    c10 = Vector256.FusedMultiplyAdd(v1, b0, c10); c11 = Vector256.FusedMultiplyAdd(v1, b1, c11);
                    c20 = Vector256.FusedMultiplyAdd(v2, b0, c20); c21 = Vector256.FusedMultiplyAdd(v2, b1, c21);
                    c30 = Vector256.FusedMultiplyAdd(v3, b0, c30); c31 = Vector256.FusedMultiplyAdd(v3, b1, c31);
                }
                float* ci = c + (long)i * n + j;
                if (acc)
                {
                    c00 += Vector256.Load(ci); c01 += Vector256.Load(ci + 8);
                    c10 += Vector256.Load(ci + n); c11 += Vector256.Load(ci + n + 8);
                    c20 += Vector256.Load(ci + 2 * n); c21 += Vector256.Load(ci + 2 * n + 8);
                    c30 += Vector256.Load(ci + 3 * n); c31 += Vector256.Load(ci + 3 * n + 8);
                }
                c00.Store(ci); c01.Store(ci + 8);
                c10.Store(ci + n); c11.Store(ci + n + 8);
                c20.Store(ci + 2 * n); c21.Store(ci + 2 * n + 8);
                c30.Store(ci + 3 * n); c31.Store(ci + 3 * n + 8);
            }
            if (j < n) MatmulPlain(a, b, c, i, i + 4, n, k, aRow, aCol, bRow, 1, acc, j);
        }
        if (i < i1) MatmulPlain(a, b, c, i, i1, n, k, aRow, aCol, bRow, 1, acc);
    }

    /// <summary>c[i, j] = dot(a[i, :], b[:, j]) for rows i0..i1, with a rows and b columns contiguous.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulDots(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int bCol, bool acc)
    {
        int kv = k & ~7;
        int i = i0;
        for (; i + 4 <= i1; i += 4)
        {
            float* a0 = a + (long)i * aRow, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow;
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                float* b0 = b + (long)j * bCol, b1 = b0 + bCol, b2 = b1 + bCol, b3 = b2 + bCol;
                Vector256<float> s00 = default, s01 = default, s02 = default, s03 = default;
                Vector256<float> s10 = default, s11 = default, s12 = default, s13 = default;
                Vector256<float> s20 = default, s21 = default, s22 = default, s23 = default;
                Vector256<float> s30 = default, s31 = default, s32 = default, s33 = default;
                for (int q = 0; q < kv; q += 8)
                {
                    var w0 = Vector256.Load(b0 + q); var w1 = Vector256.Load(b1 + q);
                    var w2 = Vector256.Load(b2 + q); var w3 = Vector256.Load(b3 + q);
                    var x = Vector256.Load(a0 + q);
                    s00 = Vector256.FusedMultiplyAdd(x, w0, s00); s01 = Vector256.FusedMultiplyAdd(x, w1, s01);
                    s02 = Vector256.FusedMultiplyAdd(x, w2, s02); s03 = Vector256.FusedMultiplyAdd(x, w3, s03);
                    x = Vector256.Load(a1 + q);
                    s10 = Vector256.FusedMultiplyAdd(x, w0, s10); s11 = Vector256.FusedMultiplyAdd(x, w1, s11);
                    s12 = Vector256.FusedMultiplyAdd(x, w2, s12); s13 = Vector256.FusedMultiplyAdd(x, w3, s13);
                    x = Vector256.Load(a2 + q);
                    s20 = Vector256.FusedMultiplyAdd(x, w0, s20); s21 = Vector256.FusedMultiplyAdd(x, w1, s21);
                    s22 = Vector256.FusedMultiplyAdd(x, w2, s22); s23 = Vector256.FusedMultiplyAdd(x, w3, s23);
                    x = Vector256.Load(a3 + q);
                    s30 = Vector256.FusedMultiplyAdd(x, w0, s30); s31 = Vector256.FusedMultiplyAdd(x, w1, s31);
                    s32 = Vector256.FusedMultiplyAdd(x, w2, s32); s33 = Vector256.FusedMultiplyAdd(x, w3, s33);
                }
                float* ci = c + (long)i * n + j;
                Put(ci, acc, Finish(s00, a0, b0, kv, k), Finish(s01, a0, b1, kv, k), Finish(s02, a0, b2, kv, k), Finish(s03, a0, b3, kv, k));
                ci += n;
                Put(ci, acc, Finish(s10, a1, b0, kv, k), Finish(s11, a1, b1, kv, k), Finish(s12, a1, b2, kv, k), Finish(s13, a1, b3, kv, k));
                ci += n;
                Put(ci, acc, Finish(s20, a2, b0, kv, k), Finish(s21, a2, b1, kv, k), Finish(s22, a2, b2, kv, k), Finish(s23, a2, b3, kv, k));
                ci += n;
                Put(ci, acc, Finish(s30, a3, b0, kv, k), Finish(s31, a3, b1, kv, k), Finish(s32, a3, b2, kv, k), Finish(s33, a3, b3, kv, k));
            }
            if (j < n) MatmulPlain(a, b, c, i, i + 4, n, k, aRow, 1, 1, bCol, acc, j);
        }
        if (i < i1) MatmulPlain(a, b, c, i, i1, n, k, aRow, 1, 1, bCol, acc);
    }

    /// <summary>Writes (or with acc adds) four results of one row of c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* c, bool acc, float v0, float v1, float v2, float v3)
    {
        if (acc) { v0 += c[0]; v1 += c[1]; v2 += c[2]; v3 += c[3]; }
        c[0] = v0; c[1] = v1; c[2] = v2; c[3] = v3;
    }

    /// <summary>The lanes of a vector dot product summed, plus the k % 8 elements the vectors did not cover.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Finish(Vector256<float> s, float* a, float* b, int from, int k)
    {
        float sum = Vector256.Sum(s);
        for (int q = from; q < k; q++) sum += a[q] * b[q];
        return sum;
    }

    /// <summary>The plain loop for any strides, rows i0..i1 and columns j0..n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulPlain(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int aCol, int bRow, int bCol, bool acc, int j0 = 0)
    {
        for (int i = i0; i < i1; i++)
            for (int j = j0; j < n; j++)
            {
                float sum = 0f;
                for (int q = 0; q < k; q++) sum += a[(long)i * aRow + (long)q * aCol] * b[(long)q * bRow + (long)j * bCol];
                c[(long)i * n + j] = acc ? c[(long)i * n + j] + sum : sum;
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void BiasActivation(ArrayView<float> y, ArrayView<float> bias, int rows, int n, bool relu)
    {
        float* py = Ptr(y), pb = Ptr(bias);
        float floor = relu ? 0f : float.NegativeInfinity;   // max(v, -inf) = v: no ReLU
        var vfloor = Vector256.Create(floor);
        for (int r = 0; r < rows; r++)
        {
            float* row = py + (long)r * n;
            int j = 0;
            if (Vector256.IsHardwareAccelerated)
                for (; j + 8 <= n; j += 8)
                    Vector256.Max(Vector256.Load(row + j) + Vector256.Load(pb + j), vfloor).Store(row + j);
            for (; j < n; j++) row[j] = MathF.Max(row[j] + pb[j], floor);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ReluBackward(ArrayView<float> dy, ArrayView<float> y, int count)
    {
        float* pd = Ptr(dy), py = Ptr(y);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= count; i += 8)
            {
                var mask = Vector256.GreaterThan(Vector256.Load(py + i), Vector256<float>.Zero);
                Vector256.BitwiseAnd(Vector256.Load(pd + i), mask).Store(pd + i);
            }
        }
        for (; i < count; i++) pd[i] = py[i] > 0f ? pd[i] : 0f;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void BiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int n)
    {
        float* pd = Ptr(dy), pb = Ptr(dbias);
        for (int j = 0; j < n; j++) pb[j] = 0f;
        for (int r = 0; r < rows; r++)
        {
            float* row = pd + (long)r * n;
            int j = 0;
            if (Vector256.IsHardwareAccelerated)
                for (; j + 8 <= n; j += 8)
                    (Vector256.Load(pb + j) + Vector256.Load(row + j)).Store(pb + j);
            for (; j < n; j++) pb[j] += row[j];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SoftmaxCrossEntropy(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<float> dlogits, int rows, int classes)
    {
        float* pl = Ptr(logits), pg = Ptr(dlogits), ploss = Ptr(losses);
        int* py = Ptr(labels);
        float invRows = 1f / rows;
        for (int b = 0; b < rows; b++)
        {
            float* z = pl + (long)b * classes;
            float* g = pg + (long)b * classes;
            float max = z[0];
            for (int j = 1; j < classes; j++) max = MathF.Max(max, z[j]);
            float sum = 0f;
            for (int j = 0; j < classes; j++)
            {
                g[j] = MathF.Exp(z[j] - max);
                sum += g[j];
            }
            int label = py[b];
            ploss[b] = MathF.Log(sum) + max - z[label];
            float scale = invRows / sum;
            for (int j = 0; j < classes; j++) g[j] *= scale;
            g[label] -= invRows;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Argmax(ArrayView<float> logits, ArrayView<int> predictions, int rows, int classes)
    {
        float* pl = Ptr(logits);
        int* pp = Ptr(predictions);
        for (int b = 0; b < rows; b++)
        {
            float* row = pl + (long)b * classes;
            int best = 0;
            for (int j = 1; j < classes; j++)
                if (row[j] > row[best]) best = j;
            pp[b] = best;
        }
    }

    public void Adam(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, int count,
        float beta1, float beta2, float eps, float stepSize, float invSqrtC2)
    {
        var w = _adam;
        w.Param = Ptr(param);
        w.Grad = Ptr(grad);
        w.M = Ptr(m);
        w.V = Ptr(v);
        w.Count = count;
        (w.Beta1, w.Beta2, w.Eps, w.StepSize, w.InvSqrtC2) = (beta1, beta2, eps, stepSize, invSqrtC2);
        HostParallel.Run(w, count < ParallelThreshold ? 1 : HostParallel.Cores);
    }

    /// <summary>One Adam update's arguments; each part updates a range of parameters (the kernel's formula).</summary>
    sealed class AdamWork : HostParallel.IWork
    {
        public float* Param, Grad, M, V;
        public int Count;
        public float Beta1, Beta2, Eps, StepSize, InvSqrtC2;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int parts)
        {
            var (i0, i1) = HostParallel.Range(Count, 1024, part, parts);
            float* pp = Param, pg = Grad, pm = M, pv = V;
            float beta1 = Beta1, beta2 = Beta2, eps = Eps, stepSize = StepSize, invSqrtC2 = InvSqrtC2;
            int i = i0;
            if (Vector256.IsHardwareAccelerated)
            {
                var b1 = Vector256.Create(beta1); var nb1 = Vector256.Create(1f - beta1);
                var b2 = Vector256.Create(beta2); var nb2 = Vector256.Create(1f - beta2);
                var e = Vector256.Create(eps); var s = Vector256.Create(stepSize); var c2 = Vector256.Create(invSqrtC2);
                for (; i + 8 <= i1; i += 8)
                {
                    var g = Vector256.Load(pg + i);
                    var mi = b1 * Vector256.Load(pm + i) + nb1 * g;
                    var vi = b2 * Vector256.Load(pv + i) + nb2 * g * g;
                    mi.Store(pm + i);
                    vi.Store(pv + i);
                    (Vector256.Load(pp + i) - s * mi / (Vector256.Sqrt(vi) * c2 + e)).Store(pp + i);
                }
            }
            for (; i < i1; i++)
            {
                float g = pg[i];
                float mi = beta1 * pm[i] + (1f - beta1) * g;
                float vi = beta2 * pv[i] + (1f - beta2) * g * g;
                pm[i] = mi;
                pv[i] = vi;
                pp[i] -= stepSize * mi / (MathF.Sqrt(vi) * invSqrtC2 + eps);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Sgd(ArrayView<float> param, ArrayView<float> grad, int count, float lr)
    {
        var p = new Span<float>(Ptr(param), count);
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(Ptr(grad), count), -lr, p, p);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SgdMomentum(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> buf, int count, float lr, float momentum)
    {
        var p = new Span<float>(Ptr(param), count);
        var b = new Span<float>(Ptr(buf), count);
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(b, momentum, new ReadOnlySpan<float>(Ptr(grad), count), b);
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(b, -lr, p, p);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void GatherNormalize(ArrayView<byte> pixels, ArrayView<byte> labels, ArrayView<int> indices, ArrayView<float> scaleShift,
        ArrayView<float> x, ArrayView<int> y, int rows, int k, int planeSize, int channels)
    {
        byte* pp = (byte*)Address(pixels), pl = (byte*)Address(labels);
        int* pi = Ptr(indices), py = Ptr(y);
        float* ps = Ptr(scaleShift), px = Ptr(x);
        for (int b = 0; b < rows; b++)
        {
            byte* image = pp + (long)pi[b] * k;
            float* row = px + (long)b * k;
            for (int j = 0; j < k; j++)
            {
                int c = j / planeSize;
                row[j] = image[j] * ps[c] + ps[channels + c];
            }
            py[b] = pl[pi[b]];
        }
    }

    public void Synchronize() { }
}
