using System.Runtime.CompilerServices;
using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// Matrix multiplication, in versions a learner can compare: c (M, N) = a (M, K) · b (K, N), K the inner size
/// (docs/glossary.md's letters: in a Linear layer M = B rows, K = input features, N = output features).
///
/// a and b are read through strides, so a transposed operand costs nothing: element a[i, q] (q = 0..K-1) is
/// <c>a[i * aRow + q * aCol]</c> and b[q, j] is <c>b[q * bRow + j * bCol]</c>. For a row-major (M, K)
/// matrix aRow = K, aCol = 1; for its transpose aRow = 1, aCol = M. c is always row-major (M, N).
/// With W stored like PyTorch's Linear.weight as (N_out, K_in), the three products of a Linear layer are:
/// <code>
/// forward   y  (B, N) = x  (B, K) · W^T (K, N)     a = x,    b = W^T  (bRow = 1, bCol = K)
/// backward  dx (B, K) = dy (B, N) · W   (N, K)     a = dy,   b = W
/// backward  dW (N, K) = dy^T (N, B) · x (B, K)     a = dy^T (aRow = 1, aCol = N),  b = x
/// </code>
/// Every version sums over q = 0..K-1 in increasing order with one float accumulator per output, so results do
/// not depend on how many threads run. With accumulate = 1 the finished sum is added to what c holds (c += a·b):
/// im2col's weight gradient sums one image after another this way.
/// </summary>
public static class MatmulKernels
{
    /// <summary>Version 1, naive: each loop iteration computes one output element as a dot product.</summary>
    public static void Naive(
        ArrayView<float> a,     // a: (M, K) through strides aRow, aCol
        ArrayView<float> b,     // b: (K, N) through strides bRow, bCol
        ArrayView<float> c,     // c: (M, N) row-major, written
        int m, int n, int k,
        int aRow, int aCol, int bRow, int bCol,
        int accumulate)         // 0: c = a·b; 1: c += a·b (the sum is formed from 0, then added)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int idx = Grid.GlobalIndex.X; idx < m * n; idx += stride)
        {
            int i = idx / n, j = idx % n;
            float sum = 0f;
            for (int q = 0; q < k; q++)
                sum += a[i * aRow + q * aCol] * b[q * bRow + j * bCol];
            c[idx] = accumulate != 0 ? c[idx] + sum : sum;
        }
    }

    /// <summary>
    /// Version 2, register-blocked: each loop iteration computes a 4x4 tile of c in 16 registers, so every
    /// value loaded from a or b is used 4 times. No shared memory and no barriers: the best shape for
    /// ILGPU's CPU accelerator. Edge tiles clamp their row/column indices (reading a valid row twice)
    /// and only store the outputs that exist, which keeps branches out of the inner loop.
    /// </summary>
    public static void Blocked(
        ArrayView<float> a,     // a: (M, K) through strides aRow, aCol
        ArrayView<float> b,     // b: (K, N) through strides bRow, bCol
        ArrayView<float> c,     // c: (M, N) row-major, written
        int m, int n, int k,
        int aRow, int aCol, int bRow, int bCol,
        int accumulate)         // 0: c = a·b; 1: c += a·b (the sum is formed from 0, then added)
    {
        int tilesN = (n + 3) / 4;
        int tiles = (m + 3) / 4 * tilesN;
        int stride = Grid.DimX * Group.DimX;
        for (int t = Grid.GlobalIndex.X; t < tiles; t += stride)
        {
            int i0 = t / tilesN * 4, j0 = t % tilesN * 4;
            // Clamped row offsets into a and column offsets into b.
            int ra0 = i0 * aRow, ra1 = IntrinsicMath.Min(i0 + 1, m - 1) * aRow;
            int ra2 = IntrinsicMath.Min(i0 + 2, m - 1) * aRow, ra3 = IntrinsicMath.Min(i0 + 3, m - 1) * aRow;
            int cb0 = j0 * bCol, cb1 = IntrinsicMath.Min(j0 + 1, n - 1) * bCol;
            int cb2 = IntrinsicMath.Min(j0 + 2, n - 1) * bCol, cb3 = IntrinsicMath.Min(j0 + 3, n - 1) * bCol;
            float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
            float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
            for (int q = 0; q < k; q++)
            {
                int qa = q * aCol, qb = q * bRow;
                float a0 = a[ra0 + qa], a1 = a[ra1 + qa], a2 = a[ra2 + qa], a3 = a[ra3 + qa];
                float b0 = b[qb + cb0], b1 = b[qb + cb1], b2 = b[qb + cb2], b3 = b[qb + cb3];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            StoreRow(c, n, m, i0, j0, c00, c01, c02, c03, accumulate);
            StoreRow(c, n, m, i0 + 1, j0, c10, c11, c12, c13, accumulate);
            StoreRow(c, n, m, i0 + 2, j0, c20, c21, c22, c23, accumulate);
            StoreRow(c, n, m, i0 + 3, j0, c30, c31, c32, c33, accumulate);
        }
    }

    /// <summary>Stores (or with accumulate adds) up to 4 values of row i starting at column j0, skipping those outside (M, N).</summary>
    static void StoreRow(ArrayView<float> c, int n, int m, int i, int j0, float v0, float v1, float v2, float v3, int accumulate)
    {
        if (i >= m) return;
        int row = i * n;
        if (accumulate != 0)
        {
            v0 += c[row + j0];
            if (j0 + 1 < n) v1 += c[row + j0 + 1];
            if (j0 + 2 < n) v2 += c[row + j0 + 2];
            if (j0 + 3 < n) v3 += c[row + j0 + 3];
        }
        c[row + j0] = v0;
        if (j0 + 1 < n) c[row + j0 + 1] = v1;
        if (j0 + 2 < n) c[row + j0 + 2] = v2;
        if (j0 + 3 < n) c[row + j0 + 3] = v3;
    }

    /// <summary>
    /// Version 4, for drivers that vectorise (PoCL): each loop iteration computes an 8x8 tile of c in 64 registers,
    /// every value loaded used 8 times. When b's rows are contiguous (bCol = 1: dx = dy·W and dW = dy^T·x) the 8 values
    /// of b a step needs sit at consecutive addresses, and the tile code is inlined with bCol = 1 as a constant, so
    /// the OpenCL compiler sees 8 neighbouring loads and 8 alike multiply-adds per row and turns them into vector
    /// instructions (on PoCL here about 4x the blocked version for those products). Tiles at the edge of c take
    /// one dot product per output. Like the other versions: one accumulator per output, q in increasing order.
    /// </summary>
    public static void Vector(
        ArrayView<float> a,     // a: (M, K) through strides aRow, aCol
        ArrayView<float> b,     // b: (K, N) through strides bRow, bCol
        ArrayView<float> c,     // c: (M, N) row-major, written
        int m, int n, int k,
        int aRow, int aCol, int bRow, int bCol,
        int accumulate)         // 0: c = a·b; 1: c += a·b (the sum is formed from 0, then added)
    {
        int tilesN = (n + 7) / 8;
        int tiles = (m + 7) / 8 * tilesN;
        int stride = Grid.DimX * Group.DimX;
        for (int t = Grid.GlobalIndex.X; t < tiles; t += stride)
        {
            int i0 = t / tilesN * 8, j0 = t % tilesN * 8;
            if (i0 + 8 > m || j0 + 8 > n)
                EdgeTile(a, b, c, i0, j0, m, n, k, aRow, aCol, bRow, bCol, accumulate);
            else if (bCol == 1)
                Tile8x8(a, b, c, i0, j0, n, k, aRow, aCol, bRow, 1, accumulate);   // the constant 1 is what lets it vectorise
            else
                Tile8x8(a, b, c, i0, j0, n, k, aRow, aCol, bRow, bCol, accumulate);
        }
    }

    /// <summary>The 8x8 tile of c at (i0, j0), all of it inside c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile8x8(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int i0, int j0, int n, int k,
        int aRow, int aCol, int bRow, int bCol, int accumulate)
    {
        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c04 = 0, c05 = 0, c06 = 0, c07 = 0;
        float c10 = 0, c11 = 0, c12 = 0, c13 = 0, c14 = 0, c15 = 0, c16 = 0, c17 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c24 = 0, c25 = 0, c26 = 0, c27 = 0;
        float c30 = 0, c31 = 0, c32 = 0, c33 = 0, c34 = 0, c35 = 0, c36 = 0, c37 = 0;
        float c40 = 0, c41 = 0, c42 = 0, c43 = 0, c44 = 0, c45 = 0, c46 = 0, c47 = 0;
        float c50 = 0, c51 = 0, c52 = 0, c53 = 0, c54 = 0, c55 = 0, c56 = 0, c57 = 0;
        float c60 = 0, c61 = 0, c62 = 0, c63 = 0, c64 = 0, c65 = 0, c66 = 0, c67 = 0;
        float c70 = 0, c71 = 0, c72 = 0, c73 = 0, c74 = 0, c75 = 0, c76 = 0, c77 = 0;
        for (int q = 0; q < k; q++)
        {
            int qa = q * aCol, qb = q * bRow + j0 * bCol;
            float a0 = a[(i0 + 0) * aRow + qa], a1 = a[(i0 + 1) * aRow + qa], a2 = a[(i0 + 2) * aRow + qa], a3 = a[(i0 + 3) * aRow + qa];
            float a4 = a[(i0 + 4) * aRow + qa], a5 = a[(i0 + 5) * aRow + qa], a6 = a[(i0 + 6) * aRow + qa], a7 = a[(i0 + 7) * aRow + qa];
            float b0 = b[qb + 0 * bCol], b1 = b[qb + 1 * bCol], b2 = b[qb + 2 * bCol], b3 = b[qb + 3 * bCol];
            float b4 = b[qb + 4 * bCol], b5 = b[qb + 5 * bCol], b6 = b[qb + 6 * bCol], b7 = b[qb + 7 * bCol];
            c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3; c04 += a0 * b4; c05 += a0 * b5; c06 += a0 * b6; c07 += a0 * b7;
            c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3; c14 += a1 * b4; c15 += a1 * b5; c16 += a1 * b6; c17 += a1 * b7;
            c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3; c24 += a2 * b4; c25 += a2 * b5; c26 += a2 * b6; c27 += a2 * b7;
            c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3; c34 += a3 * b4; c35 += a3 * b5; c36 += a3 * b6; c37 += a3 * b7;
            c40 += a4 * b0; c41 += a4 * b1; c42 += a4 * b2; c43 += a4 * b3; c44 += a4 * b4; c45 += a4 * b5; c46 += a4 * b6; c47 += a4 * b7;
            c50 += a5 * b0; c51 += a5 * b1; c52 += a5 * b2; c53 += a5 * b3; c54 += a5 * b4; c55 += a5 * b5; c56 += a5 * b6; c57 += a5 * b7;
            c60 += a6 * b0; c61 += a6 * b1; c62 += a6 * b2; c63 += a6 * b3; c64 += a6 * b4; c65 += a6 * b5; c66 += a6 * b6; c67 += a6 * b7;
            c70 += a7 * b0; c71 += a7 * b1; c72 += a7 * b2; c73 += a7 * b3; c74 += a7 * b4; c75 += a7 * b5; c76 += a7 * b6; c77 += a7 * b7;
        }
        StoreRow8(c, (i0 + 0) * n + j0, accumulate, c00, c01, c02, c03, c04, c05, c06, c07);
        StoreRow8(c, (i0 + 1) * n + j0, accumulate, c10, c11, c12, c13, c14, c15, c16, c17);
        StoreRow8(c, (i0 + 2) * n + j0, accumulate, c20, c21, c22, c23, c24, c25, c26, c27);
        StoreRow8(c, (i0 + 3) * n + j0, accumulate, c30, c31, c32, c33, c34, c35, c36, c37);
        StoreRow8(c, (i0 + 4) * n + j0, accumulate, c40, c41, c42, c43, c44, c45, c46, c47);
        StoreRow8(c, (i0 + 5) * n + j0, accumulate, c50, c51, c52, c53, c54, c55, c56, c57);
        StoreRow8(c, (i0 + 6) * n + j0, accumulate, c60, c61, c62, c63, c64, c65, c66, c67);
        StoreRow8(c, (i0 + 7) * n + j0, accumulate, c70, c71, c72, c73, c74, c75, c76, c77);
    }

    /// <summary>Stores (or with accumulate adds) 8 values of a row of c from index at.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRow8(ArrayView<float> c, int at, int accumulate, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
    {
        if (accumulate != 0)
        {
            v0 += c[at]; v1 += c[at + 1]; v2 += c[at + 2]; v3 += c[at + 3];
            v4 += c[at + 4]; v5 += c[at + 5]; v6 += c[at + 6]; v7 += c[at + 7];
        }
        c[at] = v0; c[at + 1] = v1; c[at + 2] = v2; c[at + 3] = v3;
        c[at + 4] = v4; c[at + 5] = v5; c[at + 6] = v6; c[at + 7] = v7;
    }

    /// <summary>A tile that sticks out of c: each output inside c as its own dot product.</summary>
    static void EdgeTile(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int i0, int j0, int m, int n, int k,
        int aRow, int aCol, int bRow, int bCol, int accumulate)
    {
        for (int i = i0; i < IntrinsicMath.Min(i0 + 8, m); i++)
            for (int j = j0; j < IntrinsicMath.Min(j0 + 8, n); j++)
            {
                float sum = 0f;
                for (int q = 0; q < k; q++)
                    sum += a[i * aRow + q * aCol] * b[q * bRow + j * bCol];
                c[i * n + j] = accumulate != 0 ? c[i * n + j] + sum : sum;
            }
    }

    /// <summary>Side of the square tile that <see cref="Tiled"/> keeps in shared memory; its group has Tile * Tile threads.</summary>
    public const int Tile = 16;

    /// <summary>
    /// Version 3, tiled with shared memory (for GPUs): a group of 16x16 threads computes a 16x16 tile of c.
    /// It walks K in steps of 16; at each step the group loads a 16x16 block of a and of b into shared memory
    /// (one element per thread), waits at a barrier, and each thread accumulates its output from the
    /// fast shared copies: every value fetched from global memory is reused 16 times.
    /// Groups stride over the tiles of c, so any grid size works. Launch with a group of exactly 256 threads.
    /// On the CPU accelerator every barrier synchronises OS threads: correct, but very slow.
    /// </summary>
    public static void Tiled(
        ArrayView<float> a,     // a: (M, K) through strides aRow, aCol
        ArrayView<float> b,     // b: (K, N) through strides bRow, bCol
        ArrayView<float> c,     // c: (M, N) row-major, written
        int m, int n, int k,
        int aRow, int aCol, int bRow, int bCol,
        int accumulate)         // 0: c = a·b; 1: c += a·b (the sum is formed from 0, then added)
    {
        var tileA = SharedMemory.Allocate<float>(Tile * Tile);   // tileA[ty, q] = a[row, k0 + q]
        var tileB = SharedMemory.Allocate<float>(Tile * Tile);   // tileB[q, tx] = b[k0 + q, col]
        int tx = Group.IdxX % Tile, ty = Group.IdxX / Tile;
        int tilesN = (n + Tile - 1) / Tile;
        int tiles = (m + Tile - 1) / Tile * tilesN;
        for (int t = Grid.IdxX; t < tiles; t += Grid.DimX)
        {
            int row = t / tilesN * Tile + ty, col = t % tilesN * Tile + tx;
            float sum = 0f;
            for (int k0 = 0; k0 < k; k0 += Tile)
            {
                tileA[ty * Tile + tx] = row < m && k0 + tx < k ? a[row * aRow + (k0 + tx) * aCol] : 0f;
                tileB[ty * Tile + tx] = k0 + ty < k && col < n ? b[(k0 + ty) * bRow + col * bCol] : 0f;
                Group.Barrier();
                for (int q = 0; q < Tile; q++)
                    sum += tileA[ty * Tile + q] * tileB[q * Tile + tx];
                Group.Barrier();
            }
            if (row < m && col < n) c[row * n + col] = accumulate != 0 ? c[row * n + col] + sum : sum;
        }
    }
}
