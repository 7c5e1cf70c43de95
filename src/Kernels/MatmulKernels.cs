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
