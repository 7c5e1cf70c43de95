using System.Runtime.CompilerServices;
using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The host backend's 16-bit Conv2d and MaxPool2d (--precision fp16 and bf16): the arithmetic of
/// <see cref="HalfConvKernels"/>, run by the float32 host conv's own row loops (<see cref="ConvForwardPlane"/> and its
/// siblings). Each core turns the 16-bit values it needs into float32 scratch of its own first: one image's input and
/// the weights for forward, one image's output gradient and the weights for backward to the input, one input plane at
/// a time for backward to the weights. That scratch is per core and at most one image (C H W or F OH OW values) plus
/// the layer's weights: the working registers of a kernel, not a buffer of the step, so the tracker does not count it.
/// Images (or filters) are split between the cores with HostParallel, so a step allocates nothing once each core's
/// scratch has grown to the largest layer. Sums are float32; results are rounded to 16 bits once, when written. The
/// host's FMA and its order of partial sums differ from the kernels' in the last float32 bits, so after rounding an
/// output can differ by one 16-bit step.
/// </summary>
public sealed unsafe partial class HostBackend
{
    [ThreadStatic] static float[]? t_scratch;

    /// <summary>This thread's pinned float32 scratch, at least n values (grown when a larger layer needs more, then reused).</summary>
    static float* Scratch(int n)
    {
        if (t_scratch is null || t_scratch.Length < n) t_scratch = GC.AllocateUninitializedArray<float>(n, pinned: true);
        return (float*)Unsafe.AsPointer(ref t_scratch[0]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void LoadAll(ushort* src, float* dst, long n, HalfFormat format)
    {
        for (long i = 0; i < n; i++) dst[i] = Load(src[i], format);
    }

    /// <summary>Which 16-bit conv operation a <see cref="HalfConvWork"/> runs: per image (forward, backward to the input) or per filter.</summary>
    enum HalfConvOp { Forward, BackwardInput, BackwardWeight }

    /// <summary>One 16-bit conv operation's arguments (reused: a step allocates nothing); parts take whole images or filters.</summary>
    sealed class HalfConvWork : HostParallel.IWork
    {
        public HalfConvOp Op;
        public ushort* X, Wt, Bias, Y;
        public float* DWeight;
        public ConvShape S;
        public int Rows;
        public HalfFormat Format;
        public bool Accumulate;

        /// <summary>What the parts share out: the images, or the filters for backward to the weights.</summary>
        public int Items => Op == HalfConvOp.BackwardWeight ? S.F : Rows;

        public void Run(int part, int parts)
        {
            var (i0, i1) = HostParallel.Range(Items, 1, part, parts);
            for (int i = i0; i < i1; i++)
            {
                switch (Op)
                {
                    case HalfConvOp.Forward: ConvForwardHalfImage(X, Wt, Bias, Y, S, i, Format); break;
                    case HalfConvOp.BackwardInput: ConvBackwardInputHalfImage(X, Wt, Y, S, i, Format); break;
                    case HalfConvOp.BackwardWeight: ConvBackwardWeightHalfFilter(X, Wt, DWeight, S, Rows, i, Format, Accumulate); break;
                }
            }
        }
    }

    readonly HalfConvWork _halfConv = new();

    void RunHalfConv(HalfConvOp op, ConvShape s, int rows, HalfFormat format)
    {
        var w = _halfConv;
        (w.Op, w.S, w.Rows, w.Format) = (op, s, rows, format);
        HostParallel.Run(w, (long)rows * s.F * s.ColCols * s.ColRows < ParallelThreshold ? 1 : Math.Min(HostParallel.Cores, w.Items));
    }

    public void ConvForwardHalf(ArrayView<ushort> x, ArrayView<ushort> weight, ArrayView<ushort> bias, ArrayView<ushort> y, ConvShape s, int rows, HalfFormat format)
    {
        var w = _halfConv;
        w.X = Ptr(x); w.Wt = Ptr(weight); w.Bias = Ptr(bias); w.Y = Ptr(y);
        RunHalfConv(HalfConvOp.Forward, s, rows, format);
    }

    public void ConvBackwardInputHalf(ArrayView<ushort> dy, ArrayView<ushort> weight, ArrayView<ushort> dx, ConvShape s, int rows, HalfFormat format)
    {
        var w = _halfConv;
        w.X = Ptr(dy); w.Wt = Ptr(weight); w.Y = Ptr(dx);
        RunHalfConv(HalfConvOp.BackwardInput, s, rows, format);
    }

    public void ConvBackwardWeightHalf(ArrayView<ushort> dy, ArrayView<ushort> x, ArrayView<float> dweight, ConvShape s, int rows, HalfFormat format, bool accumulate = false)
    {
        var w = _halfConv;
        w.X = Ptr(dy); w.Wt = Ptr(x); w.DWeight = Ptr(dweight); w.Accumulate = accumulate;
        RunHalfConv(HalfConvOp.BackwardWeight, s, rows, format);
    }

    /// <summary>Image b: x_b and the weights as float32, then y_b (F, OH OW) as the float32 host conv computes it, + bias, rounded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ConvForwardHalfImage(ushort* px, ushort* pw, ushort* pb, ushort* py, ConvShape s, int b, HalfFormat format)
    {
        int image = s.C * s.H * s.W, plane = s.OutH * s.OutW, weights = s.F * s.ColRows;
        float* xs = Scratch(image + weights + plane);
        float* ws = xs + image, ys = ws + weights;
        LoadAll(px + (long)b * image, xs, image, format);
        LoadAll(pw, ws, weights, format);
        for (int f = 0; f < s.F; f++)
        {
            ConvForwardPlane(xs, ws + (long)f * s.ColRows, ys, s, 0);   // plane 0 of a one-image, one-filter conv
            float bf = Load(pb[f], format);
            ushort* yp = py + ((long)b * s.F + f) * plane;
            for (int i = 0; i < plane; i++) yp[i] = Store(ys[i] + bf, format);
        }
    }

    /// <summary>Image b: dy_b and the weights as float32, then each input plane of dx_b as the float32 host conv computes it, rounded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ConvBackwardInputHalfImage(ushort* pdy, ushort* pw, ushort* pdx, ConvShape s, int b, HalfFormat format)
    {
        int image = s.C * s.H * s.W, outImage = s.F * s.OutH * s.OutW, weights = s.F * s.ColRows;
        float* dys = Scratch(outImage + weights + image);
        float* ws = dys + outImage, dxs = ws + weights;
        LoadAll(pdy + (long)b * outImage, dys, outImage, format);
        LoadAll(pw, ws, weights, format);
        for (int c = 0; c < s.C; c++) ConvBackwardInputPlane(dys, ws, dxs, s, c);   // planes 0..C-1 of a one-image batch
        ushort* dxb = pdx + (long)b * image;
        for (int i = 0; i < image; i++) dxb[i] = Store(dxs[i], format);
    }

    /// <summary>Filter f: dweight[f, c, ky, kx] = sum over images b (in order) of the row dot products of dy[b, f] and shifted x[b, c].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ConvBackwardWeightHalfFilter(ushort* pdy, ushort* px, float* pdw, ConvShape s, int rows, int f, HalfFormat format, bool accumulate)
    {
        int k = s.KernelSize, inPlane = s.H * s.W, plane = s.OutH * s.OutW;
        float* dys = Scratch(plane + inPlane + s.ColRows);
        float* xs = dys + plane, sums = xs + inPlane;
        new Span<float>(sums, s.ColRows).Clear();
        for (int b = 0; b < rows; b++)
        {
            LoadAll(pdy + ((long)b * s.F + f) * plane, dys, plane, format);
            for (int c = 0; c < s.C; c++)
            {
                LoadAll(px + ((long)b * s.C + c) * inPlane, xs, inPlane, format);
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                    {
                        var (ox0, ox1) = Columns(s, kx);
                        float sum = 0f;
                        for (int oy = 0; oy < s.OutH; oy++)
                        {
                            int iy = oy + ky - s.Pad;
                            if (iy < 0 || iy >= s.H) continue;
                            sum += Dot(dys + (long)oy * s.OutW + ox0, xs + (long)iy * s.W + ox0 + kx - s.Pad, ox1 - ox0);
                        }
                        sums[(c * k + ky) * k + kx] += sum;
                    }
            }
        }
        float* dw = pdw + (long)f * s.ColRows;
        for (int i = 0; i < s.ColRows; i++) dw[i] = accumulate ? dw[i] + sums[i] : sums[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ChannelBiasBackwardHalf(ArrayView<ushort> dy, ArrayView<float> dbias, int rows, int channels, int plane, HalfFormat format, bool accumulate = false)
    {
        ushort* pd = Ptr(dy);
        float* pb = Ptr(dbias);
        for (int f = 0; f < channels; f++)
        {
            float sum = 0f;
            for (int b = 0; b < rows; b++)
            {
                ushort* row = pd + ((long)b * channels + f) * plane;
                for (int i = 0; i < plane; i++) sum += Load(row[i], format);
            }
            pb[f] = accumulate ? pb[f] + sum : sum;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void MaxPoolForwardHalf(ArrayView<ushort> x, ArrayView<ushort> y, ArrayView<int> indices, int planes, int h, int w, int size, HalfFormat format)
    {
        ushort* px = Ptr(x), py = Ptr(y);
        int* pi = Ptr(indices);
        int oh = h / size, ow = w / size;
        for (long o = 0; o < (long)planes * oh * ow; o++)
        {
            int ox = (int)(o % ow), oy = (int)(o / ow % oh);
            ushort* xp = px + o / (ow * oh) * h * w;
            int best = oy * size * w + ox * size;
            float max = Load(xp[best], format);
            for (int dy = 0; dy < size; dy++)
                for (int dx = 0; dx < size; dx++)
                {
                    int i = (oy * size + dy) * w + ox * size + dx;
                    float v = Load(xp[i], format);
                    if (v > max || (float.IsNaN(v) && !float.IsNaN(max))) { max = v; best = i; }
                }
            py[o] = xp[best];
            pi[o] = best;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void MaxPoolBackwardHalf(ArrayView<ushort> dy, ArrayView<int> indices, ArrayView<ushort> dx, int planes, int h, int w, int size)
    {
        ushort* pdy = Ptr(dy), pdx = Ptr(dx);
        int* pi = Ptr(indices);
        int oh = h / size, ow = w / size;
        new Span<ushort>(pdx, checked(planes * h * w)).Clear();
        for (long o = 0; o < (long)planes * oh * ow; o++)
            pdx[o / (oh * ow) * h * w + pi[o]] = pdy[o];
    }
}
