using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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
    enum PlaneOp { ConvForward, ConvBackwardInput, ConvBackwardWeight, Im2col, Col2im, ChannelBias, ChannelBiasBackward, MaxPoolForward, MaxPoolBackward }

    /// <summary>One plane-parallel operation's arguments (reused: a step allocates nothing).</summary>
    sealed class PlaneWork : HostParallel.IWork
    {
        public PlaneOp Op;
        public float* X, Wt, Y;
        public int* Indices;
        public ConvShape S;
        public int Rows, Planes, H, W, Size, Plane, Channels;

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
                    case PlaneOp.ConvBackwardWeight: ConvBackwardWeightFilter(X, Wt, Y, S, Rows, p); break;
                    case PlaneOp.Im2col: Im2colRow(X, Y, S, p); break;
                    case PlaneOp.Col2im: Col2imPlane(X, Y, S, p); break;
                    case PlaneOp.ChannelBias: AddScalar(Y + (long)p * Plane, Wt[p % Channels], Plane); break;
                    case PlaneOp.ChannelBiasBackward: Y[p] = ChannelSum(X, Rows, Channels, Plane, p); break;
                    case PlaneOp.MaxPoolForward: MaxPoolPlane(X, Y, Indices, H, W, Size, p); break;
                    case PlaneOp.MaxPoolBackward: MaxPoolBackwardPlane(X, Indices, Y, H, W, Size, p); break;
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

    public void ConvDirectBackwardWeight(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dweight, ConvShape s, int rows)
    {
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
        RunPlanes(PlaneOp.Im2col, s.ColRows, (long)s.ColRows * s.ColCols);
    }

    public void Col2im(ArrayView<float> dcols, ArrayView<float> dimage, ConvShape s)
    {
        _plane.X = Ptr(dcols);
        _plane.Y = Ptr(dimage);
        _plane.S = s;
        RunPlanes(PlaneOp.Col2im, s.C, (long)s.ColRows * s.ColCols);
    }

    public void ChannelBias(ArrayView<float> y, ArrayView<float> bias, int rows, int channels, int plane)
    {
        _plane.Y = Ptr(y);
        _plane.Wt = Ptr(bias);
        _plane.Channels = channels;
        _plane.Plane = plane;
        RunPlanes(PlaneOp.ChannelBias, rows * channels, (long)rows * channels * plane);
    }

    public void ChannelBiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int channels, int plane)
    {
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

    public void MaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx, int planes, int h, int w, int size)
    {
        _plane.X = Ptr(dy);
        _plane.Y = Ptr(dx);
        _plane.Indices = Ptr(indices);
        _plane.H = h;
        _plane.W = w;
        _plane.Size = size;
        RunPlanes(PlaneOp.MaxPoolBackward, planes, (long)planes * h * w);
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

    /// <summary>sum of x[i] * y[i] for i in 0..n-1, in vectors of 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(float* x, float* y, int n)
    {
        int i = 0;
        float sum = 0f;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), acc);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    static void AddScalar(float* y, float a, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i + 8 <= n; i += 8) (Vector256.Load(y + i) + va).Store(y + i);
        }
        for (; i < n; i++) y[i] += a;
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
    static void ConvBackwardWeightFilter(float* dy, float* x, float* dweight, ConvShape s, int rows, int f)
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
                    dweight[(((long)f * s.C + c) * k + ky) * k + kx] = sum;
                }
    }

    /// <summary>Row r = (c k + ky) k + kx of cols: for each output row, zeros, a copy of the shifted image row, zeros.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Im2colRow(float* image, float* cols, ConvShape s, int r)
    {
        int k = s.KernelSize, kx = r % k, ky = r / k % k, c = r / (k * k);
        var (ox0, ox1) = Columns(s, kx);
        float* dst = cols + (long)r * s.OutH * s.OutW;
        for (int oy = 0; oy < s.OutH; oy++, dst += s.OutW)
        {
            int iy = oy + ky - s.Pad;
            if (iy < 0 || iy >= s.H || ox1 <= ox0)
            {
                new Span<float>(dst, s.OutW).Clear();
                continue;
            }
            new Span<float>(dst, ox0).Clear();
            new ReadOnlySpan<float>(image + ((long)c * s.H + iy) * s.W + ox0 + kx - s.Pad, ox1 - ox0).CopyTo(new Span<float>(dst + ox0, ox1 - ox0));
            new Span<float>(dst + ox1, s.OutW - ox1).Clear();
        }
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
            for (int ox = 0; ox < ow; ox++, o++)
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

    /// <summary>Plane p of dx: zeros, then each window's gradient at the place of its maximum.</summary>
    static void MaxPoolBackwardPlane(float* dy, int* indices, float* dx, int h, int w, int size, int p)
    {
        int oh = h / size, ow = w / size;
        float* dxp = dx + (long)p * h * w;
        new Span<float>(dxp, h * w).Clear();
        long o = (long)p * oh * ow;
        for (int i = 0; i < oh * ow; i++, o++) dxp[indices[o]] = dy[o];
    }
}
