using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The host backend's conv, pooling and ReLU: the same math as <see cref="ConvKernels"/> and <see cref="PoolKernels"/>,
/// arranged for SIMD. The direct conv works a whole row of outputs at a time: for each weight value w and
/// each output row, <c>y[oy, ox0..ox1] += w * x[oy + ky - p, ox0 + kx - p ..]</c>, a vector multiply-add over
/// contiguous memory (the ox range keeps x inside the image, so the padding costs no branches). Planes (one
/// image's channel) are split between the cores; each plane is written by one core only.
/// </summary>
public sealed unsafe partial class HostBackend
{
    /// <summary>Which operation a <see cref="PlaneWork"/> runs.</summary>
    enum PlaneOp { ConvForward, ConvBackwardInput, ConvBackwardWeight, Im2col, Col2im, ChannelBias, ChannelBiasBackward, MaxPoolForward, MaxPoolBackward, ReluMaxPoolBackward }

    /// <summary>One plane-parallel operation's arguments (reused: a step allocates nothing).</summary>
    sealed class PlaneWork : HostParallel.IWork
    {
        public PlaneOp Op;
        public float* X, Wt, Y;
        public int* Indices;
        public ConvShape S;
        public int Rows, Planes, H, W, Size, Plane, Channels;
        /// <summary>Gradient accumulation: the weight and bias gradients are added to, not overwritten.</summary>
        public bool Accumulate;
        /// <summary>ChannelBias: and the ReLU after it (y = max(y + b, 0)).</summary>
        public bool Relu;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int parts)
        {
            var (p0, p1) = HostParallel.Range(Planes, 1, part, parts);
            for (int p = p0; p < p1; p++)
            {
                switch (Op)
                {
                    case PlaneOp.ConvForward: ConvForwardPlane(X, Wt, Y, S, p); break;
                    case PlaneOp.ConvBackwardInput: ConvBackwardInputPlane(X, Wt, Y, S, p); break;
                    case PlaneOp.ConvBackwardWeight: ConvBackwardWeightFilter(X, Wt, Y, S, Rows, p, Accumulate); break;
                    case PlaneOp.Im2col: Im2colRow(X, Y + (long)p * S.ColCols, S, p); break;
                    case PlaneOp.Col2im: Col2imPlane(X, Y, S, p); break;
                    case PlaneOp.ChannelBias: AddScalar(Y + (long)p * Plane, Wt[p % Channels], Plane, Relu); break;
                    case PlaneOp.ChannelBiasBackward: Y[p] = Accumulate ? Y[p] + ChannelSum(X, Rows, Channels, Plane, p) : ChannelSum(X, Rows, Channels, Plane, p); break;
                    case PlaneOp.MaxPoolForward: MaxPoolPlane(X, Y, Indices, H, W, Size, p); break;
                    case PlaneOp.MaxPoolBackward: MaxPoolBackwardPlane(X, Indices, Y, H, W, Size, p); break;
                    case PlaneOp.ReluMaxPoolBackward:
                        // The plane of dx as above, then the ReLU's mask while it is still in L1: 0 where x is not > 0.
                        MaxPoolBackwardPlane(X, Indices, Y, H, W, Size, p);
                        ReluMask(Y + (long)p * H * W, Wt + (long)p * H * W, H * W);
                        break;
                }
            }
        }
    }

    readonly PlaneWork _plane = new();

    /// <summary>Runs an operation over `planes` independent pieces, on every core when there is enough work.</summary>
    void RunPlanes(PlaneOp op, int planes, long work)
    {
        _plane.Op = op;
        _plane.Planes = planes;
        HostParallel.Run(_plane, work < ParallelThreshold ? 1 : HostParallel.Cores);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Relu(ArrayView<float> y, int count)
    {
        float* p = Ptr(y);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= count; i += 8)
                Vector256.Max(Vector256.Load(p + i), Vector256<float>.Zero).Store(p + i);
        for (; i < count; i++) p[i] = p[i] < 0f ? 0f : p[i];
    }

    public void ConvDirectForward(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ConvShape s, int rows)
    {
        _plane.X = Ptr(x);
        _plane.Wt = Ptr(weight);
        _plane.Y = Ptr(y);
        _plane.S = s;
        RunPlanes(PlaneOp.ConvForward, rows * s.F, (long)rows * s.F * s.ColCols * s.ColRows);
    }

    public void ConvDirectBackwardInput(ArrayView<float> dy, ArrayView<float> weight, ArrayView<float> dx, ConvShape s, int rows)
    {
        _plane.X = Ptr(dy);
        _plane.Wt = Ptr(weight);
        _plane.Y = Ptr(dx);
        _plane.S = s;
        RunPlanes(PlaneOp.ConvBackwardInput, rows * s.C, (long)rows * s.F * s.ColCols * s.ColRows);
    }

    public void ConvDirectBackwardWeight(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dweight, ConvShape s, int rows, bool accumulate = false)
    {
        _plane.Accumulate = accumulate;
        _plane.X = Ptr(dy);
        _plane.Wt = Ptr(x);
        _plane.Y = Ptr(dweight);
        _plane.S = s;
        _plane.Rows = rows;
        RunPlanes(PlaneOp.ConvBackwardWeight, s.F, (long)rows * s.F * s.ColCols * s.ColRows);
    }

    public void Im2col(ArrayView<float> image, ArrayView<float> cols, ConvShape s)
    {
        _plane.X = Ptr(image);
        _plane.Y = Ptr(cols);
        _plane.S = s;
        RunPlanes(PlaneOp.Im2col, s.ColRows, 8L * s.ColRows * s.ColCols);
    }

    public void Col2im(ArrayView<float> dcols, ArrayView<float> dimage, ConvShape s)
    {
        _plane.X = Ptr(dcols);
        _plane.Y = Ptr(dimage);
        _plane.S = s;
        RunPlanes(PlaneOp.Col2im, s.C, 8L * s.ColRows * s.ColCols);
    }

    /// <summary>
    /// The im2col conv on the host, split so that no core reads memory another core has just written: on this
    /// (virtual) 2-core machine, handing 100 KB of freshly written cols from one core to the other cost more than
    /// multiplying them.
    /// <code>
    /// forward   each core takes its own images. For each run of 32 output pixels (counted across the output plane),
    ///           it unfolds their patches into a panel (C k k, 32) on its stack (like a GPU kernel's shared-memory
    ///           tile: not device memory) and multiplies: tile (F, 32) = W (F, C k k) · panel, then copies the tile
    ///           into y. Every y value is the same chain of multiply-adds as cols = im2col(x_b); y_b = W · cols.
    /// backward  each core takes its own rows r0..r1 of cols (whole channels when dx is wanted), and image by image:
    ///             rows = cols[r0..r1, :]^T (im2row, (OH OW, n));   dW[:, r0..r1] (+)= dy_b (F, OH OW) · rows
    ///             cols[r0..r1, :] = W[:, r0..r1]^T · dy_b;   dx_b[channels of r0..r1] = col2im(cols[r0..r1, :])
    ///           With few rows of cols (C k k under 64: a first layer), dW is dot products of dy and cols rows instead.
    /// </code>
    /// </summary>
    sealed class Im2colWork : HostParallel.IWork
    {
        public bool Backward, InputGradient, Accumulate, Wide;   // Wide: the host AVX-512 matmuls
        public float* X, Weight, Cols, Y, DWeight, DX;   // x, y (dy backward) and dx of all images
        public ConvShape S;
        public int Rows;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int parts)
        {
            ConvShape s = S;
            if (!Backward)
            {
                var (b0, b1) = HostParallel.Range(Rows, 1, part, parts);
                for (int b = b0; b < b1; b++)
                    PanelForwardImage(X + (long)b * s.C * s.H * s.W, Weight, Y + (long)b * s.F * s.ColCols, s, Wide);
                return;
            }
            // Backward: this core's rows r0..r1 of cols, image after image. The cores share nothing (their rows of cols,
            // columns of dW and channels of dx are their own), so one call covers the whole batch.
            int pixels = s.ColCols, kk = s.KernelSize * s.KernelSize;
            var (r0, r1) = HostParallel.Range(s.ColRows, InputGradient ? kk : 1, part, parts);
            int n = r1 - r0;
            float* block = Cols + (long)r0 * pixels;   // this core's n rows of cols
            long inImage = (long)s.C * s.H * s.W, outImage = (long)s.F * pixels;
            for (int b = 0; b < Rows; b++)
            {
                float* x = X + b * inImage, dy = Y + b * outImage;
                bool add = Accumulate || b > 0;   // image 0 writes dW, the others add to it (all do when accumulating micro-batches)
                if (s.ColRows >= Im2rowMinRows)
                {
                    // dW[f, r0 + i] (+)= sum over pixels j of dy[f, j] * rows[j, i], with this core's block of cols written
                    // transposed, rows (OH OW, n): dy values broadcast, rows loaded as vectors (the 8 x 32 block).
                    Im2rowBlock(x, block, s, r0, n);
                    if (Wide) MatmulRowsB512(dy, block, DWeight + r0, 0, s.F, n, pixels, pixels, 1, n, s.ColRows, add);
                    else MatmulRows(dy, block, DWeight + r0, 0, s.F, n, pixels, pixels, 1, n, 1, s.ColRows, add);
                }
                else
                {
                    // A few rows of cols (a first layer: C k k small): dot products of dy rows and cols rows, each OH OW long.
                    for (int r = r0; r < r1; r++) Im2colRow(x, Cols + (long)r * pixels, s, r);
                    if (Wide) MatmulDots512(dy, block, DWeight + r0, 0, s.F, n, pixels, pixels, pixels, s.ColRows, add);
                    else MatmulRows(dy, block, DWeight + r0, 0, s.F, n, pixels, pixels, 1, 1, pixels, s.ColRows, add);
                }
                if (!InputGradient) continue;
                // cols[r, j] = sum over f of W[f, r] * dy[f, j]: a[i, q] = W[q, r0 + i], b = dy rows.
                if (Wide) MatmulRowsB512(Weight + r0, dy, block, 0, n, pixels, s.F, 1, s.ColRows, pixels, pixels, false);
                else MatmulRows(Weight + r0, dy, block, 0, n, pixels, s.F, 1, s.ColRows, pixels, 1, pixels, false);
                for (int c = r0 / kk; c < r1 / kk; c++) Col2imPlane(Cols, DX + b * inImage, s, c);
            }
        }
    }

    /// <summary>Output pixels per panel: the 32 columns of the 8 x 32 matmul block (two 16-column blocks in 256 bits).</summary>
    const int PanelWidth = 32;

    /// <summary>The largest panel and tile the forward keeps on the stack (C k k and F up to these); larger layers take the plain path.</summary>
    const int MaxPanelRows = 1024, MaxTileRows = 512;

    /// <summary>
    /// y_b (F, OH OW) = W (F, C k k) · im2col(x_b), 32 output pixels at a time. The pixels j0..j0+31 are counted
    /// across the whole output plane (row after row), so a panel may span several output rows, and the tile's rows
    /// land in y as one contiguous run per filter.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]   // every panel and tile value is written before it is read
    static void PanelForwardImage(float* x, float* weight, float* y, ConvShape s, bool wide)
    {
        float* panel = stackalloc float[s.ColRows * PanelWidth];   // (C k k, 32)
        float* tile = stackalloc float[s.F * PanelWidth];          // (F, 32)
        for (int j0 = 0; j0 < s.ColCols; j0 += PanelWidth)
        {
            int width = Math.Min(PanelWidth, s.ColCols - j0);
            FillPanel(x, panel, s, j0, width);
            if (wide) MatmulRowsB512(weight, panel, tile, 0, s.F, PanelWidth, s.ColRows, s.ColRows, 1, PanelWidth, PanelWidth, false);
            else MatmulRowsB(weight, panel, tile, 0, s.F, PanelWidth, s.ColRows, s.ColRows, 1, PanelWidth, PanelWidth, false);
            for (int f = 0; f < s.F; f++) CopyRun(tile + f * PanelWidth, y + (long)f * s.ColCols + j0, width);
        }
    }

    /// <summary>
    /// panel[r, t] = cols[r, j0 + t] for t &lt; width (0 past it): for each row r = (c k + ky) k + kx, the output rows
    /// the pixels j0..j0+width-1 fall in, each a run of the shifted image row (0 where it lies in the padding).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FillPanel(float* x, float* panel, ConvShape s, int j0, int width)
    {
        int k = s.KernelSize, oyFirst = j0 / s.OutW, oxFirst = j0 % s.OutW;
        for (int r = 0, c = 0, ky = 0, kx = 0; r < s.ColRows; r++)
        {
            var (ox0, ox1) = Columns(s, kx);
            float* dst = panel + (long)r * PanelWidth;
            ZeroRun(dst, PanelWidth);
            for (int t = 0, oy = oyFirst, ox = oxFirst; t < width; oy++, ox = 0)
            {
                int run = Math.Min(width - t, s.OutW - ox);   // the pixels of output row oy: ox..ox+run-1
                int iy = oy + ky - s.Pad, a = Math.Max(ox, ox0), b = Math.Min(ox + run, ox1);   // a..b: inside the image
                if (iy >= 0 && iy < s.H && a < b)
                    CopyRun(x + ((long)c * s.H + iy) * s.W + a + kx - s.Pad, dst + t + a - ox, b - a);
                t += run;
            }
            // The next r's (c, ky, kx), counted up instead of divided out.
            kx++;
            if (kx == k) { kx = 0; ky++; }
            if (ky == k) { ky = 0; c++; }
        }
    }

    /// <summary>dst[0..n) = src[0..n), 8 floats at a time, the last 1-7 by masked loads and stores (nothing past n is touched).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void CopyRun(float* src, float* dst, int n)
    {
        if (!Avx.IsSupported)
        {
            for (int j = 0; j < n; j++) dst[j] = src[j];
            return;
        }
        int i = 0;
        for (; i + 8 <= n; i += 8) Vector256.Load(src + i).Store(dst + i);
        if (i < n)
        {
            var mask = TailMask(n - i);
            Avx.MaskStore(dst + i, mask, Avx.MaskLoad(src + i, mask));
        }
    }

    readonly Im2colWork _im2col = new();

    public void Im2colForward(MatmulVersion version, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> cols, ArrayView<float> y, ConvShape s, int rows)
    {
        CheckVersion(version);
        long inImage = (long)s.C * s.H * s.W, outImage = (long)s.F * s.ColCols;
        if (!Avx.IsSupported || !Vector256.IsHardwareAccelerated || s.ColRows > MaxPanelRows || s.F > MaxTileRows)
        {
            for (int b = 0; b < rows; b++)   // the plain path: unfold the whole image into cols, then one matmul
            {
                Im2col(x.SubView(b * inImage, inImage), cols, s);
                Matmul(version, weight, cols, y.SubView(b * outImage, outImage), s.F, s.ColCols, s.ColRows, s.ColRows, 1, s.ColCols, 1);
            }
            return;
        }
        var w = _im2col;
        w.Backward = false;
        w.Wide = version == MatmulVersion.HostAvx512;
        w.S = s;
        w.Rows = rows;
        w.X = Ptr(x);
        w.Weight = Ptr(weight);
        w.Y = Ptr(y);
        long work = (long)rows * s.F * s.ColRows * s.ColCols;
        HostParallel.Run(w, work < ParallelThreshold ? 1 : Math.Min(HostParallel.Cores, rows));
    }

    public void Im2colBackward(MatmulVersion version, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> weight,
        ArrayView<float> dweight, ArrayView<float> cols, ArrayView<float> dx, bool inputGradient, ConvShape s, int rows, bool accumulate = false)
    {
        CheckVersion(version);
        var w = _im2col;
        w.Backward = true;
        w.Wide = version == MatmulVersion.HostAvx512;
        w.InputGradient = inputGradient;
        w.S = s;
        w.Weight = Ptr(weight);
        w.DWeight = Ptr(dweight);
        w.Cols = Ptr(cols);
        int blocks = inputGradient ? s.C : s.ColRows;
        long work = (long)rows * s.F * s.ColRows * s.ColCols * (inputGradient ? 2 : 1);
        w.Accumulate = accumulate;
        w.Rows = rows;
        w.X = Ptr(x);
        w.Y = Ptr(dy);
        w.DX = inputGradient ? Ptr(dx) : null;
        HostParallel.Run(w, work < ParallelThreshold ? 1 : Math.Min(HostParallel.Cores, blocks));
    }

    public void ChannelBias(ArrayView<float> y, ArrayView<float> bias, int rows, int channels, int plane, bool relu = false)
    {
        _plane.Y = Ptr(y);
        _plane.Wt = Ptr(bias);
        _plane.Relu = relu;
        _plane.Channels = channels;
        _plane.Plane = plane;
        RunPlanes(PlaneOp.ChannelBias, rows * channels, (long)rows * channels * plane);
    }

    public void ChannelBiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int channels, int plane, bool accumulate = false)
    {
        _plane.Accumulate = accumulate;
        _plane.X = Ptr(dy);
        _plane.Y = Ptr(dbias);
        _plane.Rows = rows;
        _plane.Channels = channels;
        _plane.Plane = plane;
        RunPlanes(PlaneOp.ChannelBiasBackward, channels, (long)rows * channels * plane);
    }

    public void MaxPoolForward(ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices, int planes, int h, int w, int size)
    {
        _plane.X = Ptr(x);
        _plane.Y = Ptr(y);
        _plane.Indices = Ptr(indices);
        _plane.H = h;
        _plane.W = w;
        _plane.Size = size;
        RunPlanes(PlaneOp.MaxPoolForward, planes, (long)planes * h * w);
    }

    public void MaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx, int planes, int h, int w, int size) =>
        PoolBackward(PlaneOp.MaxPoolBackward, dy, indices, null, dx, planes, h, w, size);

    public void ReluMaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> x, ArrayView<float> dx, int planes, int h, int w, int size) =>
        PoolBackward(PlaneOp.ReluMaxPoolBackward, dy, indices, Ptr(x), dx, planes, h, w, size);

    /// <summary>Either pool backward: x (the pool's input) is read only by the ReLU's mask.</summary>
    void PoolBackward(PlaneOp op, ArrayView<float> dy, ArrayView<int> indices, float* x, ArrayView<float> dx, int planes, int h, int w, int size)
    {
        _plane.X = Ptr(dy);
        _plane.Y = Ptr(dx);
        _plane.Wt = x;
        _plane.Indices = Ptr(indices);
        _plane.H = h;
        _plane.W = w;
        _plane.Size = size;
        RunPlanes(op, planes, (long)planes * h * w);
    }

    /// <summary>y[i] += a * x[i] for i in 0..n-1, in vectors of 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Axpy(float a, float* x, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i + 8 <= n; i += 8)
                Vector256.FusedMultiplyAdd(va, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>y[i] += a for i in 0..n-1, in vectors of 8; with relu, y[i] = max(y[i] + a, 0) (as <see cref="Relu"/> computes it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AddScalar(float* y, float a, int n, bool relu)
    {
        int i = 0;
        float floor = relu ? 0f : float.NegativeInfinity;   // max(v, -inf) = v: no ReLU
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            var vfloor = Vector256.Create(floor);
            for (; i + 8 <= n; i += 8) Vector256.Max(Vector256.Load(y + i) + va, vfloor).Store(y + i);
        }
        for (; i < n; i++)
        {
            float v = y[i] + a;
            y[i] = v < floor ? floor : v;
        }
    }

    /// <summary>The ReLU's backward on n values: dy[i] = y[i] &gt; 0 ? dy[i] : 0, in vectors of 8 (as <see cref="ReluBackward"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ReluMask(float* dy, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
                Vector256.BitwiseAnd(Vector256.Load(dy + i), Vector256.GreaterThan(Vector256.Load(y + i), Vector256<float>.Zero)).Store(dy + i);
        for (; i < n; i++) dy[i] = y[i] > 0f ? dy[i] : 0f;
    }

    /// <summary>The output columns ox whose input column ox + kx - p lies inside the image: [ox0, ox1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (int Ox0, int Ox1) Columns(ConvShape s, int kx) => (Math.Max(0, s.Pad - kx), Math.Min(s.OutW, s.W + s.Pad - kx));

    /// <summary>y[b, f] (one output plane, p = b F + f) = sum over c, ky, kx of weight[f, c, ky, kx] * shifted x[b, c].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ConvForwardPlane(float* x, float* weight, float* y, ConvShape s, int p)
    {
        int b = p / s.F, f = p % s.F, k = s.KernelSize;
        float* yp = y + (long)p * s.OutH * s.OutW;
        new Span<float>(yp, s.OutH * s.OutW).Clear();
        for (int c = 0; c < s.C; c++)
        {
            float* xp = x + ((long)b * s.C + c) * s.H * s.W;
            float* wp = weight + ((long)f * s.C + c) * k * k;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                {
                    float wv = wp[ky * k + kx];
                    var (ox0, ox1) = Columns(s, kx);
                    for (int oy = 0; oy < s.OutH; oy++)
                    {
                        int iy = oy + ky - s.Pad;
                        if (iy < 0 || iy >= s.H) continue;
                        Axpy(wv, xp + (long)iy * s.W + ox0 + kx - s.Pad, yp + (long)oy * s.OutW + ox0, ox1 - ox0);
                    }
                }
        }
    }

    /// <summary>dx[b, c] (one input plane, p = b C + c): every output's gradient sent back through the weights that used this plane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ConvBackwardInputPlane(float* dy, float* weight, float* dx, ConvShape s, int p)
    {
        int b = p / s.C, c = p % s.C, k = s.KernelSize;
        float* dxp = dx + (long)p * s.H * s.W;
        new Span<float>(dxp, s.H * s.W).Clear();
        for (int f = 0; f < s.F; f++)
        {
            float* dyp = dy + ((long)b * s.F + f) * s.OutH * s.OutW;
            float* wp = weight + ((long)f * s.C + c) * k * k;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                {
                    float wv = wp[ky * k + kx];
                    var (ox0, ox1) = Columns(s, kx);
                    for (int oy = 0; oy < s.OutH; oy++)
                    {
                        int iy = oy + ky - s.Pad;
                        if (iy < 0 || iy >= s.H) continue;
                        Axpy(wv, dyp + (long)oy * s.OutW + ox0, dxp + (long)iy * s.W + ox0 + kx - s.Pad, ox1 - ox0);
                    }
                }
        }
    }

    /// <summary>dweight[f, :, :, :] (one filter): each weight's gradient is a sum of row dot products of dy[b, f] and shifted x[b, c].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ConvBackwardWeightFilter(float* dy, float* x, float* dweight, ConvShape s, int rows, int f, bool accumulate)
    {
        int k = s.KernelSize;
        for (int c = 0; c < s.C; c++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                {
                    var (ox0, ox1) = Columns(s, kx);
                    float sum = 0f;
                    for (int b = 0; b < rows; b++)
                    {
                        float* dyp = dy + ((long)b * s.F + f) * s.OutH * s.OutW;
                        float* xp = x + ((long)b * s.C + c) * s.H * s.W;
                        for (int oy = 0; oy < s.OutH; oy++)
                        {
                            int iy = oy + ky - s.Pad;
                            if (iy < 0 || iy >= s.H) continue;
                            sum += Dot(dyp + (long)oy * s.OutW + ox0, xp + (long)iy * s.W + ox0 + kx - s.Pad, ox1 - ox0);
                        }
                    }
                    long at = (((long)f * s.C + c) * k + ky) * k + kx;
                    dweight[at] = accumulate ? dweight[at] + sum : sum;
                }
    }

    /// <summary>Row r = (c k + ky) k + kx of cols into dst (OH OW values): for each output row, the shifted image row, zeros where it lies in the padding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Im2colRow(float* image, float* dst, ConvShape s, int r)
    {
        int k = s.KernelSize, kx = r % k, ky = r / k % k, c = r / (k * k);
        var (ox0, ox1) = Columns(s, kx);
        for (int oy = 0; oy < s.OutH; oy++, dst += s.OutW)
        {
            int iy = oy + ky - s.Pad;
            if (iy < 0 || iy >= s.H || ox1 <= ox0)
            {
                ZeroRun(dst, s.OutW);
                continue;
            }
            ZeroRun(dst, ox0);
            CopyRun(image + ((long)c * s.H + iy) * s.W + ox0 + kx - s.Pad, dst + ox0, ox1 - ox0);
            ZeroRun(dst + ox1, s.OutW - ox1);
        }
    }

    /// <summary>dst[0..n) = 0, 8 floats at a time, the last 1-7 by a masked store (a row is short: a Span call costs more than it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ZeroRun(float* dst, int n)
    {
        if (!Avx.IsSupported)
        {
            new Span<float>(dst, n).Clear();
            return;
        }
        int i = 0;
        for (; i + 8 <= n; i += 8) Vector256<float>.Zero.Store(dst + i);
        if (i < n) Avx.MaskStore(dst + i, TailMask(n - i), Vector256<float>.Zero);
    }

    /// <summary>From this many rows of cols (C k k) on, the weight gradient multiplies transposed cols (<see cref="Im2rowBlock"/>).</summary>
    const int Im2rowMinRows = 64;

    /// <summary>
    /// Rows r0..r0+n of cols, transposed into rows (OH OW, n): rows[j, i] = cols[r0 + i, j] (im2col's transpose,
    /// "im2row"), so that the weight gradient can load n consecutive values of one pixel as a vector. Eight rows of cols
    /// at a time are unfolded into a scratch (8, OH OW) on the stack, then written out as 8 x 8 transposed blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]   // each scratch row is written before it is read
    static void Im2rowBlock(float* image, float* rows, ConvShape s, int r0, int n)
    {
        int pixels = s.ColCols;
        float* eight = stackalloc float[8 * Math.Min(pixels, MaxIm2rowPixels)];
        for (int i0 = 0; i0 < n; i0 += 8)
        {
            int m = Math.Min(8, n - i0);
            if (pixels > MaxIm2rowPixels || m < 8 || !Avx.IsSupported)   // a large image or the last 1-7 rows: one value at a time
            {
                for (int i = i0; i < i0 + m; i++)
                    for (int j = 0; j < pixels; j++) rows[(long)j * n + i] = Im2colValue(image, s, r0 + i, j);
                continue;
            }
            for (int t = 0; t < 8; t++) Im2colRow(image, eight + t * pixels, s, r0 + i0 + t);
            int j0 = 0;
            for (; j0 + 8 <= pixels; j0 += 8) Transpose8x8(eight + j0, pixels, rows + (long)j0 * n + i0, n);
            for (; j0 < pixels; j0++)
                for (int t = 0; t < 8; t++) rows[(long)j0 * n + i0 + t] = eight[t * pixels + j0];
        }
    }

    /// <summary>The most output pixels whose eight unfolded rows <see cref="Im2rowBlock"/> keeps on the stack (128 KB).</summary>
    const int MaxIm2rowPixels = 4096;

    /// <summary>cols[r, j] of one image: x[c, oy + ky - p, ox + kx - p], or 0 in the padding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Im2colValue(float* image, ConvShape s, int r, int j)
    {
        int k = s.KernelSize, c = r / (k * k), iy = j / s.OutW + r / k % k - s.Pad, ix = j % s.OutW + r % k - s.Pad;
        return iy >= 0 && iy < s.H && ix >= 0 && ix < s.W ? image[((long)c * s.H + iy) * s.W + ix] : 0f;
    }

    /// <summary>dst[u, t] = src[t, u] for an 8 x 8 block (rows src + t srcRow, dst + u dstRow): unpack, shuffle, swap halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose8x8(float* src, int srcRow, float* dst, int dstRow)
    {
        var r0 = Vector256.Load(src); var r1 = Vector256.Load(src + srcRow);
        var r2 = Vector256.Load(src + 2 * srcRow); var r3 = Vector256.Load(src + 3 * srcRow);
        var r4 = Vector256.Load(src + 4 * srcRow); var r5 = Vector256.Load(src + 5 * srcRow);
        var r6 = Vector256.Load(src + 6 * srcRow); var r7 = Vector256.Load(src + 7 * srcRow);
        // Pairs of rows interleaved: t0 = [r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5]], and so on.
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        // Four rows' values of one column per 128-bit half: u0 = [col 0 of r0..r3 | col 4 of r0..r3].
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        // Rows r0..r3 from the first of each pair, r4..r7 from the second: column u of the block, whole.
        Avx.Permute2x128(u0, u4, 0x20).Store(dst);
        Avx.Permute2x128(u1, u5, 0x20).Store(dst + dstRow);
        Avx.Permute2x128(u2, u6, 0x20).Store(dst + 2 * dstRow);
        Avx.Permute2x128(u3, u7, 0x20).Store(dst + 3 * dstRow);
        Avx.Permute2x128(u0, u4, 0x31).Store(dst + 4 * dstRow);
        Avx.Permute2x128(u1, u5, 0x31).Store(dst + 5 * dstRow);
        Avx.Permute2x128(u2, u6, 0x31).Store(dst + 6 * dstRow);
        Avx.Permute2x128(u3, u7, 0x31).Store(dst + 7 * dstRow);
    }

    /// <summary>Channel c of the image gradient: every column entry that came from it added back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Col2imPlane(float* dcols, float* dimage, ConvShape s, int c)
    {
        int k = s.KernelSize;
        float* dp = dimage + (long)c * s.H * s.W;
        new Span<float>(dp, s.H * s.W).Clear();
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
            {
                float* src = dcols + (((long)c * k + ky) * k + kx) * s.OutH * s.OutW;
                var (ox0, ox1) = Columns(s, kx);
                for (int oy = 0; oy < s.OutH; oy++)
                {
                    int iy = oy + ky - s.Pad;
                    if (iy < 0 || iy >= s.H) continue;
                    Axpy(1f, src + (long)oy * s.OutW + ox0, dp + (long)iy * s.W + ox0 + kx - s.Pad, ox1 - ox0);
                }
            }
    }

    /// <summary>Sum of dy[b, f, :] over every image b: channel f's bias gradient.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float ChannelSum(float* dy, int rows, int channels, int plane, int f)
    {
        var sum = 0f;
        for (int b = 0; b < rows; b++)
            sum += System.Numerics.Tensors.TensorPrimitives.Sum(new ReadOnlySpan<float>(dy + ((long)b * channels + f) * plane, plane));
        return sum;
    }

    /// <summary>Pools plane p: each window's maximum (the first on ties, NaN wins) and where it was.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MaxPoolPlane(float* x, float* y, int* indices, int h, int w, int size, int p)
    {
        int oh = h / size, ow = w / size;
        float* xp = x + (long)p * h * w;
        long o = (long)p * oh * ow;
        for (int oy = 0; oy < oh; oy++)
        {
            int ox = 0;
            if (size == 2 && Avx2.IsSupported)
                for (int count; ox < ow; ox += count, o += count)
                {
                    count = Math.Min(8, ow - ox);
                    MaxPool2x2Vector(xp, y + o, indices + o, w, oy, ox, count);
                }
            for (; ox < ow; ox++, o++)
            {
                int best = oy * size * w + ox * size;
                float max = xp[best];
                for (int dy = 0; dy < size; dy++)
                    for (int dx = 0; dx < size; dx++)
                    {
                        int i = (oy * size + dy) * w + ox * size + dx;
                        float v = xp[i];
                        // v > max, or v is NaN and max is not (PyTorch's rule), written without a branch: with random
                        // data a branch here is mispredicted half the time, which made this loop 4x slower.
                        bool take = !(v <= max) & !float.IsNaN(max);
                        max = take ? v : max;
                        best = take ? i : best;
                    }
                y[o] = max;
                indices[o] = best;
            }
        }
    }

    /// <summary>
    /// Up to eight 2 x 2 windows of one output row at once (outputs ox..ox+count-1), by the same rule as the scalar
    /// loop: the window's values in order x00, x01, x10, x11, each taken when !(v &lt;= max) and max is not NaN.
    /// The 16 input columns of a row are loaded as two vectors and split into even columns (dx = 0) and odd (dx = 1);
    /// with count &lt; 8, masked loads and stores touch only the windows that exist.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void MaxPool2x2Vector(float* xp, float* y, int* indices, int w, int oy, int ox, int count)
    {
        var evensFirst = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        float* row0 = xp + (long)2 * oy * w + 2 * ox, row1 = row0 + w;
        Vector256<float> a0, b0, a1, b1;
        if (count == 8)
        {
            (a0, b0, a1, b1) = (Vector256.Load(row0), Vector256.Load(row0 + 8), Vector256.Load(row1), Vector256.Load(row1 + 8));
        }
        else
        {
            var loMask = Vector256.LessThan(lane, Vector256.Create(2 * count)).AsSingle();
            var hiMask = Vector256.LessThan(lane + Vector256.Create(8), Vector256.Create(2 * count)).AsSingle();
            (a0, b0) = (Avx.MaskLoad(row0, loMask), Avx.MaskLoad(row0 + 8, hiMask));
            (a1, b1) = (Avx.MaskLoad(row1, loMask), Avx.MaskLoad(row1 + 8, hiMask));
        }
        var (x00, x01) = EvenOdd(a0, b0, evensFirst);
        var (x10, x11) = EvenOdd(a1, b1, evensFirst);
        var i00 = Vector256.Create(2 * oy * w + 2 * ox) + lane * Vector256.Create(2);   // x00's index in the plane
        var max = x00;
        var best = i00;
        Take(ref max, ref best, x01, i00 + Vector256.Create(1));
        Take(ref max, ref best, x10, i00 + Vector256.Create(w));
        Take(ref max, ref best, x11, i00 + Vector256.Create(w + 1));
        if (count == 8)
        {
            max.Store(y);
            best.Store(indices);
        }
        else
        {
            var outMask = Vector256.LessThan(lane, Vector256.Create(count));
            Avx.MaskStore(y, outMask.AsSingle(), max);
            Avx2.MaskStore(indices, outMask, best);
        }
    }

    /// <summary>
    /// One plane of the 2 x 2 max-pool backward, each dx element written once (no clearing pass, no scattered stores):
    /// for eight windows at a time, dx at window position (dy, dx) = (the window's index points there) ? dy : 0,
    /// even and odd columns interleaved back into two rows of 16. Rows and columns no window covers get 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MaxPool2x2BackwardPlane(float* dy, int* indices, float* dx, int h, int w)
    {
        int oh = h / 2, ow = w / 2;
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        for (int oy = 0; oy < oh; oy++)
        {
            float* row0 = dx + (long)2 * oy * w, row1 = row0 + w;
            for (int ox = 0, count; ox < ow; ox += count)
            {
                count = Math.Min(8, ow - ox);
                long o = (long)oy * ow + ox;
                var outMask = Vector256.LessThan(lane, Vector256.Create(count));
                var g = count == 8 ? Vector256.Load(dy + o) : Avx.MaskLoad(dy + o, outMask.AsSingle());
                var at = count == 8 ? Vector256.Load(indices + o) : Avx2.MaskLoad(indices + o, outMask);
                var i00 = Vector256.Create(2 * oy * w + 2 * ox) + lane * Vector256.Create(2);
                // g where the maximum was, 0 elsewhere, for each of the four positions.
                var v00 = Vector256.ConditionalSelect(Vector256.Equals(at, i00).AsSingle(), g, default);
                var v01 = Vector256.ConditionalSelect(Vector256.Equals(at, i00 + Vector256.Create(1)).AsSingle(), g, default);
                var v10 = Vector256.ConditionalSelect(Vector256.Equals(at, i00 + Vector256.Create(w)).AsSingle(), g, default);
                var v11 = Vector256.ConditionalSelect(Vector256.Equals(at, i00 + Vector256.Create(w + 1)).AsSingle(), g, default);
                StoreInterleaved(row0 + 2 * ox, v00, v01, count);
                StoreInterleaved(row1 + 2 * ox, v10, v11, count);
            }
            for (int x = 2 * ow; x < w; x++) row0[x] = row1[x] = 0f;   // an odd last column
        }
        if (2 * oh < h) new Span<float>(dx + (long)2 * oh * w, w).Clear();   // an odd last row
    }

    /// <summary>dst[2 t] = even[t], dst[2 t + 1] = odd[t] for t &lt; count (up to 16 floats written).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreInterleaved(float* dst, Vector256<float> even, Vector256<float> odd, int count)
    {
        var low = Avx.UnpackLow(even, odd);    // [e0 o0 e1 o1 | e4 o4 e5 o5]
        var high = Avx.UnpackHigh(even, odd);  // [e2 o2 e3 o3 | e6 o6 e7 o7]
        var first = Avx.Permute2x128(low, high, 0x20);    // [e0 o0 e1 o1 e2 o2 e3 o3]
        var second = Avx.Permute2x128(low, high, 0x31);   // [e4 o4 e5 o5 e6 o6 e7 o7]
        if (count == 8)
        {
            first.Store(dst);
            second.Store(dst + 8);
            return;
        }
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        Avx.MaskStore(dst, Vector256.LessThan(lane, Vector256.Create(2 * count)).AsSingle(), first);
        Avx.MaskStore(dst + 8, Vector256.LessThan(lane + Vector256.Create(8), Vector256.Create(2 * count)).AsSingle(), second);
    }

    /// <summary>(even lanes, odd lanes) of the 16 floats lo, hi.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<float> Even, Vector256<float> Odd) EvenOdd(Vector256<float> lo, Vector256<float> hi, Vector256<int> evensFirst)
    {
        var l = Avx2.PermuteVar8x32(lo, evensFirst);   // [e0 e1 e2 e3 o0 o1 o2 o3]
        var h = Avx2.PermuteVar8x32(hi, evensFirst);   // [e4 e5 e6 e7 o4 o5 o6 o7]
        return (Vector256.Create(l.GetLower(), h.GetLower()), Vector256.Create(l.GetUpper(), h.GetUpper()));
    }

    /// <summary>Where !(v &lt;= max) and max is not NaN: max = v, best = index (PyTorch's rule, lane by lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Take(ref Vector256<float> max, ref Vector256<int> best, Vector256<float> v, Vector256<int> index)
    {
        var take = Vector256.AndNot(Vector256.Equals(max, max), Vector256.LessThanOrEqual(v, max));
        max = Vector256.ConditionalSelect(take, v, max);
        best = Vector256.ConditionalSelect(take.AsInt32(), index, best);
    }

    /// <summary>Plane p of dx: zeros, then each window's gradient at the place of its maximum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MaxPoolBackwardPlane(float* dy, int* indices, float* dx, int h, int w, int size, int p)
    {
        int oh = h / size, ow = w / size;
        float* dxp = dx + (long)p * h * w;
        if (size == 2 && Avx2.IsSupported)
        {
            MaxPool2x2BackwardPlane(dy + (long)p * oh * ow, indices + (long)p * oh * ow, dxp, h, w);
            return;
        }
        new Span<float>(dxp, h * w).Clear();
        long o = (long)p * oh * ow;
        for (int i = 0; i < oh * ow; i++, o++) dxp[indices[o]] = dy[o];
    }
}
