using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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
///     4 rows x 16 columns of c in 8 vector registers (host AVX-512: 8 rows x 32 columns in 16); a values
///     broadcast, b rows loaded as vectors.
/// a and b^T rows contiguous (aCol = 1, bRow = 1): c[i, j] = dot(a[i, :], b[:, j])    y = x·W^T
///     4 x 4 dot products at once in 16 vector registers, summed across lanes at the end. Host AVX-512 instead
///     packs 32 rows of W at a time into columns on the stack and runs the 8 x 32 blocks (MatmulPacked512).
/// </code>
/// Rows of c are split between the cores by <see cref="HostParallel"/> (columns on the packed path), which
/// allocates nothing per call.
/// Every method is marked AggressiveOptimization: .NET would otherwise run its first calls as quickly
/// compiled, unoptimised code (tier 0), several times slower for vector loops.
/// </summary>
public sealed unsafe partial class HostBackend : IBackend
{
    /// <summary>One matmul of its own (SIMD C#); the ILGPU kernel versions do not run here.</summary>
    public IReadOnlyList<MatmulVersion> MatmulVersions { get; } = Avx512 ? [MatmulVersion.HostSimd, MatmulVersion.HostAvx512] : [MatmulVersion.HostSimd];
    /// <summary>host AVX-512 where the CPU has it (bit-identical results, see <see cref="MatmulRowsB512"/>), else host SIMD.</summary>
    public MatmulVersion DefaultMatmul => Avx512 ? MatmulVersion.HostAvx512 : MatmulVersion.HostSimd;

    /// <summary>Work below about 64K multiply-adds (or values) stays on the calling thread: waking another costs more.</summary>
    const long ParallelThreshold = 65_536;

    /// <summary>
    /// A vectorised matmul below 256K multiply-adds stays on the calling thread. Splitting one costs a fork/join and hands
    /// half of c to the other core's cache: the MLP's fc2 backward (dW 10 x 128 and dx 64 x 128, 82K multiply-adds each)
    /// took 30 µs on both cores against 18 µs on one (`scratchnet bench --device host`, the step breakdown). Without AVX
    /// the plain loop runs, several times slower, and keeps the 64K threshold.
    /// </summary>
    const long MatmulParallelThreshold = 262_144;

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
        CheckVersion(version);
        var w = _matmul;
        w.A = Ptr(a);
        w.B = Ptr(b);
        w.C = Ptr(c);
        (w.M, w.N, w.K, w.ARow, w.ACol, w.BRow, w.BCol, w.Accumulate) = (m, n, k, aRow, aCol, bRow, bCol, accumulate);
        w.Wide = version == MatmulVersion.HostAvx512;
        int blocks = w.Packed ? (n + 31) / 32 : (m + 3) / 4;   // the packed path splits columns, the others rows
        long threshold = Avx.IsSupported && Vector256.IsHardwareAccelerated ? MatmulParallelThreshold : ParallelThreshold;
        HostParallel.Run(w, (long)m * n * k < threshold ? 1 : Math.Min(HostParallel.Cores, blocks));
    }

    static void CheckVersion(MatmulVersion version)
    {
        if (version is not (MatmulVersion.HostSimd or MatmulVersion.HostAvx512))
            throw new NotSupportedException($"the host backend has its own matmuls (host SIMD, host AVX-512), not the ILGPU kernel '{Kernels.MatmulVersions.Label(version)}'");
        if (version == MatmulVersion.HostAvx512 && !Avx512)
            throw new NotSupportedException("host AVX-512: this CPU has no AVX-512");
    }

    /// <summary>Whether this CPU runs 512-bit vectors (then <see cref="MatmulVersion.HostAvx512"/> is offered and the default).</summary>
    public static bool Avx512 => Avx512F.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>One matmul's arguments; each part computes a range of rows of c with the fitting path (a range of columns on the packed path).</summary>
    sealed class MatmulWork : HostParallel.IWork
    {
        public float* A, B, C;
        public int M, N, K, ARow, ACol, BRow, BCol;
        public bool Accumulate, Wide;

        /// <summary>y = x·W^T with host AVX-512: b's columns packed into rows, see <see cref="MatmulPacked512"/>.</summary>
        public bool Packed => Wide && ACol == 1 && BRow == 1 && BCol != 1 && K <= MaxPackedK;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int parts)
        {
            if (Packed)
            {
                var (j0, j1) = HostParallel.Range(N, 32, part, parts);
                MatmulPacked512(A, B, C, M, N, j0, j1, K, ARow, BCol, N, Accumulate);
                return;
            }
            var (i0, i1) = HostParallel.Range(M, 4, part, parts);
            if (Wide && BCol == 1) MatmulRowsB512(A, B, C, i0, i1, N, K, ARow, ACol, BRow, N, Accumulate);
            else if (Wide && ACol == 1 && BRow == 1) MatmulDots512(A, B, C, i0, i1, N, K, ARow, BCol, N, Accumulate);
            else MatmulRows(A, B, C, i0, i1, N, K, ARow, ACol, BRow, BCol, N, Accumulate);
        }
    }

    /// <summary>
    /// Rows i0..i1 of c (row stride cRow) with the fitting path. Whichever path and block computes it, every c[i, j]
    /// is the same chain of fused multiply-adds over q in order (and the same order of lane sums), so results do not
    /// depend on how the work was split between the cores.
    /// </summary>
    static void MatmulRows(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int aCol, int bRow, int bCol, int cRow, bool acc)
    {
        if (Avx.IsSupported && Vector256.IsHardwareAccelerated && bCol == 1)
            MatmulRowsB(a, b, c, i0, i1, n, k, aRow, aCol, bRow, cRow, acc);
        else if (Avx.IsSupported && Vector256.IsHardwareAccelerated && aCol == 1 && bRow == 1)
            MatmulDots(a, b, c, i0, i1, n, k, aRow, bCol, cRow, acc);
        else
            MatmulPlain(a, b, c, i0, i1, n, k, aRow, aCol, bRow, bCol, cRow, acc);
    }

    /// <summary>c[i, :] = sum_q a[i, q] * b[q, :] for rows i0..i1, b rows contiguous (stride bRow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulRowsB(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int aCol, int bRow, int cRow, bool acc)
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
                float* ci = c + (long)i * cRow + j;
                if (acc)
                {
                    c00 += Vector256.Load(ci); c01 += Vector256.Load(ci + 8);
                    c10 += Vector256.Load(ci + cRow); c11 += Vector256.Load(ci + cRow + 8);
                    c20 += Vector256.Load(ci + 2 * cRow); c21 += Vector256.Load(ci + 2 * cRow + 8);
                    c30 += Vector256.Load(ci + 3 * cRow); c31 += Vector256.Load(ci + 3 * cRow + 8);
                }
                c00.Store(ci); c01.Store(ci + 8);
                c10.Store(ci + cRow); c11.Store(ci + cRow + 8);
                c20.Store(ci + 2 * cRow); c21.Store(ci + 2 * cRow + 8);
                c30.Store(ci + 3 * cRow); c31.Store(ci + 3 * cRow + 8);
            }
            // The last n % 16 columns, 8 at a time; masked loads and stores cover a last group of 1-7 (with a scalar
            // loop, the last 4 columns of 196 took a third of the time).
            for (; j < n; j += 8)
            {
                var mask = TailMask(Math.Min(8, n - j));
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
                for (int q = 0; q < k; q++)
                {
                    var bq = Avx.MaskLoad(b + (long)q * bRow + j, mask);
                    long qa = (long)q * aCol;
                    c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a0[qa]), bq, c0);
                    c1 = Vector256.FusedMultiplyAdd(Vector256.Create(a1[qa]), bq, c1);
                    c2 = Vector256.FusedMultiplyAdd(Vector256.Create(a2[qa]), bq, c2);
                    c3 = Vector256.FusedMultiplyAdd(Vector256.Create(a3[qa]), bq, c3);
                }
                float* ci = c + (long)i * cRow + j;
                if (acc)
                {
                    c0 += Avx.MaskLoad(ci, mask); c1 += Avx.MaskLoad(ci + cRow, mask);
                    c2 += Avx.MaskLoad(ci + 2 * cRow, mask); c3 += Avx.MaskLoad(ci + 3 * cRow, mask);
                }
                Avx.MaskStore(ci, mask, c0); Avx.MaskStore(ci + cRow, mask, c1);
                Avx.MaskStore(ci + 2 * cRow, mask, c2); Avx.MaskStore(ci + 3 * cRow, mask, c3);
            }
        }
        // The last 1-3 rows one at a time, 8 columns per vector (masked for a last group of 1-7): the same chains. (The
        // plain loop here made the MLP's fc2 dW, 8 + 2 rows, take 16 µs, most of it in those 2 rows.)
        for (; i < i1; i++)
        {
            float* ai = a + (long)i * aRow;
            float* ci = c + (long)i * cRow;
            for (int j = 0; j < n; j += 8)
            {
                var mask = TailMask(Math.Min(8, n - j));
                Vector256<float> c0 = default;
                for (int q = 0; q < k; q++)
                    c0 = Vector256.FusedMultiplyAdd(Vector256.Create(ai[(long)q * aCol]), Avx.MaskLoad(b + (long)q * bRow + j, mask), c0);
                if (acc) c0 += Avx.MaskLoad(ci + j, mask);
                Avx.MaskStore(ci + j, mask, c0);
            }
        }
    }

    /// <summary>
    /// <see cref="MatmulRowsB"/> with 512-bit vectors (--matmul host-avx512): 8 rows x 32 columns per block, two
    /// 16-lane vectors per row (16 accumulators: enough multiply-adds in flight to cover the FMA latency on both
    /// pipes), then 16 columns in 8 x 16 blocks; the rows and columns left go to the 256-bit code. Each c[i, j] is still one chain of fused
    /// multiply-adds over q in order, in one lane, so the results are bit-identical to the 256-bit version's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulRowsB512(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int aCol, int bRow, int cRow, bool acc)
    {
        int wide = n & ~31;                  // columns in 32-wide blocks
        int i8 = i0 + (i1 - i0) / 8 * 8;     // rows in 8-row blocks
        // Column stripe outer, row blocks inner: a stripe of b (k x 32) stays in the L1 cache while every row block
        // passes over it, instead of all of b streaming in again from L2 for each row block.
        for (int j = 0; j < wide; j += 32)
            for (int i = i0; i < i8; i += 8) Block8x32(a + (long)i * aRow, b + j, c + (long)i * cRow + j, k, aRow, aCol, bRow, cRow, acc);
        if (n - wide >= 16)   // 16 more columns in 8 x 16 blocks
        {
            for (int i = i0; i < i8; i += 8) Block8x16(a + (long)i * aRow, b + wide, c + (long)i * cRow + wide, k, aRow, aCol, bRow, cRow, acc);
            wide += 16;
        }
        // The columns and rows the blocks leave: the 256-bit code, on the same chains.
        if (wide < n) MatmulRowsB(a, b + wide, c + wide, i0, i8, n - wide, k, aRow, aCol, bRow, cRow, acc);
        if (i8 < i1) MatmulRowsB(a, b, c, i8, i1, n, k, aRow, aCol, bRow, cRow, acc);
    }

    /// <summary>The longest rows (k) whose 32-column stripe <see cref="MatmulPacked512"/> packs on the stack (128 KB); longer take the dot products.</summary>
    const int MaxPackedK = 1024;

    /// <summary>
    /// c[i, j] = sum_q a[i, q] * b[q, j] for all rows and columns j0..j1, a rows and b columns contiguous (y = x·W^T, where
    /// b[q, j] = W[j, q]), with 512-bit vectors (host AVX-512). Dot products (<see cref="MatmulDots512"/>) read W's rows again
    /// for every few rows of x, which streams all of W from L2 each time; instead, each stripe of 32 columns of b is packed
    /// once into rows (k, 32) on the stack (32 rows of W turned into columns by 8 x 8 transposes), and the 8 x 32 blocks of
    /// <see cref="MatmulRowsB512"/> multiply it, x values broadcast. Each c[i, j] is one chain of fused multiply-adds over
    /// q in order (then + the old value with acc), whatever the block: results do not depend on how the work is split.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]   // the panel is written in full before it is read
    static void MatmulPacked512(float* a, float* b, float* c, int m, int n, int j0, int j1, int k, int aRow, int bCol, int cRow, bool acc)
    {
        float* panel = stackalloc float[k * 32];   // (k, 32): the stripe's columns of b as rows
        float* tile = stackalloc float[8 * 32];    // up to 8 rows of a stripe narrower than 32
        for (int j = j0; j < j1; j += 32)
        {
            int width = Math.Min(32, n - j);
            PackColumns(b + (long)j * bCol, panel, k, bCol, width);
            if (width == 32)
            {
                StripeRows(a, panel, c + j, m, k, aRow, cRow, acc);
                continue;
            }
            for (int i = 0; i < m; i += 8)   // the last stripe, narrower: 8 rows at a time through the tile
            {
                int rows = Math.Min(8, m - i);
                StripeRows(a + (long)i * aRow, panel, tile, rows, k, aRow, 32, false);
                for (int r = 0; r < rows; r++)
                {
                    float* ci = c + (long)(i + r) * cRow + j;
                    for (int t = 0; t < width; t++) ci[t] = acc ? tile[r * 32 + t] + ci[t] : tile[r * 32 + t];
                }
            }
        }
    }

    /// <summary>
    /// panel[q, t] = b[q, t] = bT[t bCol + q] for t &lt; width, 0 for t from width to 32: 8 x 8 transposes, eight rows of
    /// the panel complete before the next eight (each panel line is written while it is in L1), single values at the edges.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackColumns(float* bT, float* panel, int k, int bCol, int width)
    {
        int k8 = k & ~7, w8 = width & ~7;
        for (int q = 0; q < k8; q += 8)
            for (int t = 0; t < w8; t += 8) Transpose8x8(bT + (long)t * bCol + q, bCol, panel + (long)q * 32 + t, 32);
        for (int q = k8; q < k; q++)
            for (int t = 0; t < w8; t++) panel[(long)q * 32 + t] = bT[(long)t * bCol + q];
        for (int q = 0; q < k; q++)
            for (int t = w8; t < 32; t++) panel[(long)q * 32 + t] = t < width ? bT[(long)t * bCol + q] : 0f;
    }

    /// <summary>Rows 0..m of c[:, 0..32] (+)= a · panel (k, 32): 8-row blocks, then single rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void StripeRows(float* a, float* panel, float* c, int m, int k, int aRow, int cRow, bool acc)
    {
        int i = 0;
        for (; i + 8 <= m; i += 8) Block8x32(a + (long)i * aRow, panel, c + (long)i * cRow, k, aRow, 1, 32, cRow, acc);
        for (; i < m; i++) Block1x32(a + (long)i * aRow, panel, c + (long)i * cRow, k, acc);
    }

    /// <summary>c[0, 0..32] (+)= a[0, :] · panel (k, 32), a's row contiguous.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Block1x32(float* a, float* panel, float* c, int k, bool acc)
    {
        Vector512<float> c0 = default, c1 = default;
        for (int q = 0; q < k; q++)
        {
            var v = Vector512.Create(a[q]);
            c0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(panel + (long)q * 32), c0);
            c1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(panel + (long)q * 32 + 16), c1);
        }
        Put2(c, acc, c0, c1);
    }

    /// <summary>c[0..8, 0..16] (+)= a[0..8, :] · b[:, 0..16]: one b vector and 8 broadcast a values feed 8 multiply-adds per q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Block8x16(float* a, float* b, float* c, int k, int aRow, int aCol, int bRow, int cRow, bool acc)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        float* a4 = a + 4L * aRow;
        for (int q = 0; q < k; q++)
        {
            var bq = Vector512.Load(b + (long)q * bRow);
            long qa = (long)q * aCol;
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[qa]), bq, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[qa + aRow]), bq, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[qa + 2L * aRow]), bq, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[qa + 3L * aRow]), bq, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[qa]), bq, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[qa + aRow]), bq, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[qa + 2L * aRow]), bq, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[qa + 3L * aRow]), bq, c7);
        }
        Put1(c, acc, c0); Put1(c + cRow, acc, c1); Put1(c + 2L * cRow, acc, c2); Put1(c + 3L * cRow, acc, c3);
        c += 4L * cRow;
        Put1(c, acc, c4); Put1(c + cRow, acc, c5); Put1(c + 2L * cRow, acc, c6); Put1(c + 3L * cRow, acc, c7);
    }

    /// <summary>Writes (or with acc adds) 16 results of one row of c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put1(float* c, bool acc, Vector512<float> v) => (acc ? v + Vector512.Load(c) : v).Store(c);

    /// <summary>c[0..8, 0..32] (+)= a[0..8, :] · b[:, 0..32]: 8 broadcast a values and 2 b vectors feed 16 multiply-adds per q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Block8x32(float* a, float* b, float* c, int k, int aRow, int aCol, int bRow, int cRow, bool acc)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        float* a4 = a + 4L * aRow;
        for (int q = 0; q < k; q++)
        {
            float* bq = b + (long)q * bRow;
            var b0 = Vector512.Load(bq);
            var b1 = Vector512.Load(bq + 16);
            long qa = (long)q * aCol;
            var v = Vector512.Create(a[qa]);
            c00 = Vector512.FusedMultiplyAdd(v, b0, c00); c01 = Vector512.FusedMultiplyAdd(v, b1, c01);
            v = Vector512.Create(a[qa + aRow]);
            c10 = Vector512.FusedMultiplyAdd(v, b0, c10); c11 = Vector512.FusedMultiplyAdd(v, b1, c11);
            v = Vector512.Create(a[qa + 2L * aRow]);
            c20 = Vector512.FusedMultiplyAdd(v, b0, c20); c21 = Vector512.FusedMultiplyAdd(v, b1, c21);
            v = Vector512.Create(a[qa + 3L * aRow]);
            c30 = Vector512.FusedMultiplyAdd(v, b0, c30); c31 = Vector512.FusedMultiplyAdd(v, b1, c31);
            v = Vector512.Create(a4[qa]);
            c40 = Vector512.FusedMultiplyAdd(v, b0, c40); c41 = Vector512.FusedMultiplyAdd(v, b1, c41);
            v = Vector512.Create(a4[qa + aRow]);
            c50 = Vector512.FusedMultiplyAdd(v, b0, c50); c51 = Vector512.FusedMultiplyAdd(v, b1, c51);
            v = Vector512.Create(a4[qa + 2L * aRow]);
            c60 = Vector512.FusedMultiplyAdd(v, b0, c60); c61 = Vector512.FusedMultiplyAdd(v, b1, c61);
            v = Vector512.Create(a4[qa + 3L * aRow]);
            c70 = Vector512.FusedMultiplyAdd(v, b0, c70); c71 = Vector512.FusedMultiplyAdd(v, b1, c71);
        }
        Put2(c, acc, c00, c01); Put2(c + cRow, acc, c10, c11); Put2(c + 2L * cRow, acc, c20, c21); Put2(c + 3L * cRow, acc, c30, c31);
        c += 4L * cRow;
        Put2(c, acc, c40, c41); Put2(c + cRow, acc, c50, c51); Put2(c + 2L * cRow, acc, c60, c61); Put2(c + 3L * cRow, acc, c70, c71);
    }

    /// <summary>Writes (or with acc adds) 32 results of one row of c: the finished chain, then + the old value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put2(float* c, bool acc, Vector512<float> lo, Vector512<float> hi)
    {
        if (acc)
        {
            lo += Vector512.Load(c);
            hi += Vector512.Load(c + 16);
        }
        lo.Store(c);
        hi.Store(c + 16);
    }

    /// <summary>
    /// c[i, j] = dot(a[i, :], b[:, j]) for rows i0..i1, with a rows and b columns contiguous: 4 x 4 dot products at
    /// once, 8 lanes each; the last k % 8 elements with a masked load (lanes past k read as 0, nothing past the row
    /// is touched); the 8 lanes of four dot products summed together by <see cref="Sum4"/>. Rows and columns that
    /// do not fill a 4 x 4 block are single vector dot products.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulDots(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int bCol, int cRow, bool acc)
    {
        int kv = k & ~7;
        bool tail = kv < k;
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
                if (tail)   // the same step once more for the last k % 8 elements, masked loads
                {
                    int q = kv;
                    var mask = TailMask(k - kv);
                    var w0 = Avx.MaskLoad(b0 + q, mask); var w1 = Avx.MaskLoad(b1 + q, mask);
                    var w2 = Avx.MaskLoad(b2 + q, mask); var w3 = Avx.MaskLoad(b3 + q, mask);
                    var x = Avx.MaskLoad(a0 + q, mask);
                    s00 = Vector256.FusedMultiplyAdd(x, w0, s00); s01 = Vector256.FusedMultiplyAdd(x, w1, s01);
                    s02 = Vector256.FusedMultiplyAdd(x, w2, s02); s03 = Vector256.FusedMultiplyAdd(x, w3, s03);
                    x = Avx.MaskLoad(a1 + q, mask);
                    s10 = Vector256.FusedMultiplyAdd(x, w0, s10); s11 = Vector256.FusedMultiplyAdd(x, w1, s11);
                    s12 = Vector256.FusedMultiplyAdd(x, w2, s12); s13 = Vector256.FusedMultiplyAdd(x, w3, s13);
                    x = Avx.MaskLoad(a2 + q, mask);
                    s20 = Vector256.FusedMultiplyAdd(x, w0, s20); s21 = Vector256.FusedMultiplyAdd(x, w1, s21);
                    s22 = Vector256.FusedMultiplyAdd(x, w2, s22); s23 = Vector256.FusedMultiplyAdd(x, w3, s23);
                    x = Avx.MaskLoad(a3 + q, mask);
                    s30 = Vector256.FusedMultiplyAdd(x, w0, s30); s31 = Vector256.FusedMultiplyAdd(x, w1, s31);
                    s32 = Vector256.FusedMultiplyAdd(x, w2, s32); s33 = Vector256.FusedMultiplyAdd(x, w3, s33);
                }
                float* ci = c + (long)i * cRow + j;
                Put(ci, acc, Sum4(s00, s01, s02, s03));
                Put(ci + cRow, acc, Sum4(s10, s11, s12, s13));
                Put(ci + 2 * cRow, acc, Sum4(s20, s21, s22, s23));
                Put(ci + 3 * cRow, acc, Sum4(s30, s31, s32, s33));
            }
            for (; j < n; j++)
                for (int r = 0; r < 4; r++)
                    Put(c + (long)(i + r) * cRow + j, acc, Dot(a + (long)(i + r) * aRow, b + (long)j * bCol, k));
        }
        for (; i < i1; i++)
            for (int j = 0; j < n; j++)
                Put(c + (long)i * cRow + j, acc, Dot(a + (long)i * aRow, b + (long)j * bCol, k));
    }

    /// <summary>
    /// <see cref="MatmulDots"/> with 512-bit vectors (host AVX-512): 4 x 4 dot products at once, 16 lanes each; the last
    /// k % 16 elements as one 512-bit vector made of two 256-bit halves, each a full or a masked load (lanes past k read
    /// as 0). The 16 lanes are folded to 8 (low half + high half) and then summed as the 256-bit path sums them
    /// (<see cref="Sum4"/>); the single dot products at the edges (<see cref="Dot512"/>) do the same, so a result does
    /// not depend on which path computed it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulDots512(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int bCol, int cRow, bool acc)
    {
        int kv = k & ~15;
        bool tail = kv < k;
        int i = i0;
        for (; i + 4 <= i1; i += 4)
        {
            float* a0 = a + (long)i * aRow, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow;
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                float* b0 = b + (long)j * bCol, b1 = b0 + bCol, b2 = b1 + bCol, b3 = b2 + bCol;
                Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default;
                Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default;
                Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default;
                Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default;
                for (int q = 0; q < kv; q += 16)
                {
                    var w0 = Vector512.Load(b0 + q); var w1 = Vector512.Load(b1 + q);
                    var w2 = Vector512.Load(b2 + q); var w3 = Vector512.Load(b3 + q);
                    var x = Vector512.Load(a0 + q);
                    s00 = Vector512.FusedMultiplyAdd(x, w0, s00); s01 = Vector512.FusedMultiplyAdd(x, w1, s01);
                    s02 = Vector512.FusedMultiplyAdd(x, w2, s02); s03 = Vector512.FusedMultiplyAdd(x, w3, s03);
                    x = Vector512.Load(a1 + q);
                    s10 = Vector512.FusedMultiplyAdd(x, w0, s10); s11 = Vector512.FusedMultiplyAdd(x, w1, s11);
                    s12 = Vector512.FusedMultiplyAdd(x, w2, s12); s13 = Vector512.FusedMultiplyAdd(x, w3, s13);
                    x = Vector512.Load(a2 + q);
                    s20 = Vector512.FusedMultiplyAdd(x, w0, s20); s21 = Vector512.FusedMultiplyAdd(x, w1, s21);
                    s22 = Vector512.FusedMultiplyAdd(x, w2, s22); s23 = Vector512.FusedMultiplyAdd(x, w3, s23);
                    x = Vector512.Load(a3 + q);
                    s30 = Vector512.FusedMultiplyAdd(x, w0, s30); s31 = Vector512.FusedMultiplyAdd(x, w1, s31);
                    s32 = Vector512.FusedMultiplyAdd(x, w2, s32); s33 = Vector512.FusedMultiplyAdd(x, w3, s33);
                }
                if (tail)   // the same step once more for the last k % 16 elements
                {
                    int rest = k - kv;
                    var w0 = Tail16(b0 + kv, rest); var w1 = Tail16(b1 + kv, rest);
                    var w2 = Tail16(b2 + kv, rest); var w3 = Tail16(b3 + kv, rest);
                    var x = Tail16(a0 + kv, rest);
                    s00 = Vector512.FusedMultiplyAdd(x, w0, s00); s01 = Vector512.FusedMultiplyAdd(x, w1, s01);
                    s02 = Vector512.FusedMultiplyAdd(x, w2, s02); s03 = Vector512.FusedMultiplyAdd(x, w3, s03);
                    x = Tail16(a1 + kv, rest);
                    s10 = Vector512.FusedMultiplyAdd(x, w0, s10); s11 = Vector512.FusedMultiplyAdd(x, w1, s11);
                    s12 = Vector512.FusedMultiplyAdd(x, w2, s12); s13 = Vector512.FusedMultiplyAdd(x, w3, s13);
                    x = Tail16(a2 + kv, rest);
                    s20 = Vector512.FusedMultiplyAdd(x, w0, s20); s21 = Vector512.FusedMultiplyAdd(x, w1, s21);
                    s22 = Vector512.FusedMultiplyAdd(x, w2, s22); s23 = Vector512.FusedMultiplyAdd(x, w3, s23);
                    x = Tail16(a3 + kv, rest);
                    s30 = Vector512.FusedMultiplyAdd(x, w0, s30); s31 = Vector512.FusedMultiplyAdd(x, w1, s31);
                    s32 = Vector512.FusedMultiplyAdd(x, w2, s32); s33 = Vector512.FusedMultiplyAdd(x, w3, s33);
                }
                float* ci = c + (long)i * cRow + j;
                Put(ci, acc, Sum4(Fold(s00), Fold(s01), Fold(s02), Fold(s03)));
                Put(ci + cRow, acc, Sum4(Fold(s10), Fold(s11), Fold(s12), Fold(s13)));
                Put(ci + 2 * cRow, acc, Sum4(Fold(s20), Fold(s21), Fold(s22), Fold(s23)));
                Put(ci + 3 * cRow, acc, Sum4(Fold(s30), Fold(s31), Fold(s32), Fold(s33)));
            }
            for (; j < n; j++)
                for (int r = 0; r < 4; r++)
                    Put(c + (long)(i + r) * cRow + j, acc, Dot512(a + (long)(i + r) * aRow, b + (long)j * bCol, k));
        }
        for (; i < i1; i++)
            for (int j = 0; j < n; j++)
                Put(c + (long)i * cRow + j, acc, Dot512(a + (long)i * aRow, b + (long)j * bCol, k));
    }

    /// <summary>The last `rest` (1..15) elements of a row as 16 lanes, lanes past them 0: two 256-bit halves, full or masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Tail16(float* p, int rest) => rest > 8
        ? Vector512.Create(Vector256.Load(p), Avx.MaskLoad(p + 8, TailMask(rest - 8)))
        : Vector512.Create(Avx.MaskLoad(p, TailMask(rest)), Vector256<float>.Zero);

    /// <summary>16 lanes to 8: the low half plus the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Fold(Vector512<float> s) => s.GetLower() + s.GetUpper();

    /// <summary>dot(x[0..k), y[0..k)) in 16 lanes, summed as <see cref="MatmulDots512"/> sums them; 0 for k &lt;= 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot512(float* x, float* y, int k)
    {
        if (k <= 0) return 0f;
        int kv = k & ~15;
        var s = Vector512<float>.Zero;
        for (int q = 0; q < kv; q += 16) s = Vector512.FusedMultiplyAdd(Vector512.Load(x + q), Vector512.Load(y + q), s);
        if (kv < k) s = Vector512.FusedMultiplyAdd(Tail16(x + kv, k - kv), Tail16(y + kv, k - kv), s);
        var f = Fold(s);
        return Sum4(f, f, f, f).ToScalar();
    }

    /// <summary>Lanes 0..count-1 set: the mask of a masked load of the last count (0..7) elements of a row.</summary>
    static Vector256<float> TailMask(int count) =>
        Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(count)).AsSingle();

    /// <summary>dot(x[0..k), y[0..k)) in 8 lanes, the last k % 8 elements by a masked load; 0 for k &lt;= 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(float* x, float* y, int k)
    {
        if (k <= 0) return 0f;
        int kv = k & ~7;
        var s = Vector256<float>.Zero;
        for (int q = 0; q < kv; q += 8) s = Vector256.FusedMultiplyAdd(Vector256.Load(x + q), Vector256.Load(y + q), s);
        if (kv < k)
        {
            var mask = TailMask(k - kv);
            s = Vector256.FusedMultiplyAdd(Avx.MaskLoad(x + kv, mask), Avx.MaskLoad(y + kv, mask), s);
        }
        return Sum4(s, s, s, s).ToScalar();   // the lanes summed in the order of the 4 x 4 blocks
    }

    /// <summary>[sum of s0's lanes, s1's, s2's, s3's]: three horizontal adds instead of four separate sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Sum4(Vector256<float> s0, Vector256<float> s1, Vector256<float> s2, Vector256<float> s3)
    {
        var t = Avx.HorizontalAdd(Avx.HorizontalAdd(s0, s1), Avx.HorizontalAdd(s2, s3));
        return t.GetLower() + t.GetUpper();
    }

    /// <summary>Writes (or with acc adds) four results of one row of c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* c, bool acc, Vector128<float> v)
    {
        if (acc) v += Vector128.Load(c);
        v.Store(c);
    }

    /// <summary>Writes (or with acc adds) one result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* c, bool acc, float v) => *c = acc ? *c + v : v;

    /// <summary>The plain loop for any strides, rows i0..i1 and columns j0..n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MatmulPlain(float* a, float* b, float* c, int i0, int i1, int n, int k, int aRow, int aCol, int bRow, int bCol, int cRow, bool acc, int j0 = 0)
    {
        for (int i = i0; i < i1; i++)
            for (int j = j0; j < n; j++)
            {
                float sum = 0f;
                for (int q = 0; q < k; q++) sum = MathF.FusedMultiplyAdd(a[(long)i * aRow + (long)q * aCol], b[(long)q * bRow + (long)j * bCol], sum);
                c[(long)i * cRow + j] = acc ? c[(long)i * cRow + j] + sum : sum;
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
    public void ReluBackward(ArrayView<float> dy, ArrayView<float> y, int count) => ReluMask(Ptr(dy), Ptr(y), count);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void BiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int n, bool accumulate = false)
    {
        // dbias[j] = sum over rows of dy[r, j], in row order, 8 columns at a time in a register; with accumulate the
        // finished sum is added to dbias (formed from 0 first, as the ILGPU kernel does).
        float* pd = Ptr(dy), pb = Ptr(dbias);
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; j + 8 <= n; j += 8)
            {
                var sum = Vector256<float>.Zero;
                for (int r = 0; r < rows; r++) sum += Vector256.Load(pd + (long)r * n + j);
                (accumulate ? Vector256.Load(pb + j) + sum : sum).Store(pb + j);
            }
        for (; j < n; j++)
        {
            float sum = 0f;
            for (int r = 0; r < rows; r++) sum += pd[(long)r * n + j];
            pb[j] = accumulate ? pb[j] + sum : sum;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SoftmaxCrossEntropy(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<float> dlogits, int rows, int classes, int meanRows)
    {
        float* pl = Ptr(logits), pg = Ptr(dlogits), ploss = Ptr(losses);
        int* py = Ptr(labels);
        float invRows = 1f / meanRows;
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
