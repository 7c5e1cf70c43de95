using ILGPU;
using ILGPU.Algorithms;

namespace ScratchNet.Kernels;

/// <summary>
/// Conv2d and MaxPool2d for 16-bit storage (--precision fp16 and bf16): the direct kernels of <see cref="ConvKernels"/>
/// and <see cref="PoolKernels"/> on ushort patterns, read through <see cref="HalfKernels.ToFloat"/>, summed in float32
/// in the same order, rounded to 16 bits once when written (the conv's bias is added before that one rounding). The
/// weight gradient and the bias gradient stay float32, as Linear's do. There is no 16-bit im2col: 16-bit stacks run
/// --conv direct. The formulas:
/// <code>
/// y[b, f, oy, ox]      = round(bias[f] + sum over c, ky, kx of x[b, c, oy + ky - p, ox + kx - p] * w[f, c, ky, kx])
/// dx[b, c, iy, ix]     = round(sum over f, ky, kx of dy[b, f, iy - ky + p, ix - kx + p] * w[f, c, ky, kx])
/// dw[f, c, ky, kx]    (+)= sum over b, oy, ox of dy[b, f, oy, ox] * x[b, c, oy + ky - p, ox + kx - p]      (float32)
/// dbias[f]            (+)= sum over b and the plane of dy[b, f, i]                                       (float32)
/// max-pool: y = the window's largest value, its bits copied (no rounding); backward copies dy's bits to where it was
/// </code>
/// (x, dy outside the image are 0.) Letters as in docs/glossary.md; `format` is <see cref="HalfKernels.Fp16"/> or
/// <see cref="HalfKernels.Bf16"/>. <see cref="HostBackend"/> has the same operations for --device host (HostHalfConv.cs).
/// </summary>
public static class HalfConvKernels
{
    /// <summary>Forward with the bias: one loop iteration per output.</summary>
    public static void ConvForward(
        ArrayView<ushort> x,       // x: (B, C, H, W)
        ArrayView<ushort> weight,  // weight: (F, C, k, k), the 16-bit copy
        ArrayView<ushort> bias,    // bias: (F), the 16-bit copy
        ArrayView<ushort> y,       // y: (B, F, OH, OW), written
        ConvShape s, int rows, int format)   // rows: B
    {
        int stride = Grid.DimX * Group.DimX;
        int k = s.KernelSize;
        for (int idx = Grid.GlobalIndex.X; idx < rows * s.F * s.OutH * s.OutW; idx += stride)
        {
            int ox = idx % s.OutW, t = idx / s.OutW;
            int oy = t % s.OutH; t /= s.OutH;
            int f = t % s.F, b = t / s.F;
            float sum = 0f;
            for (int c = 0; c < s.C; c++)
                for (int ky = 0; ky < k; ky++)
                {
                    int iy = oy + ky - s.Pad;
                    if (iy < 0 || iy >= s.H) continue;
                    for (int kx = 0; kx < k; kx++)
                    {
                        int ix = ox + kx - s.Pad;
                        if (ix < 0 || ix >= s.W) continue;
                        sum += HalfKernels.ToFloat(x[((b * s.C + c) * s.H + iy) * s.W + ix], format)
                             * HalfKernels.ToFloat(weight[((f * s.C + c) * k + ky) * k + kx], format);
                    }
                }
            y[idx] = HalfKernels.FromFloat(sum + HalfKernels.ToFloat(bias[f], format), format);
        }
    }

    /// <summary>Backward to the input: one loop iteration per input element (the outputs whose window covered it).</summary>
    public static void ConvBackwardInput(
        ArrayView<ushort> dy,      // dy: (B, F, OH, OW)
        ArrayView<ushort> weight,  // weight: (F, C, k, k)
        ArrayView<ushort> dx,      // dx: (B, C, H, W), written
        ConvShape s, int rows, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        int k = s.KernelSize;
        for (int idx = Grid.GlobalIndex.X; idx < rows * s.C * s.H * s.W; idx += stride)
        {
            int ix = idx % s.W, t = idx / s.W;
            int iy = t % s.H; t /= s.H;
            int c = t % s.C, b = t / s.C;
            float sum = 0f;
            for (int f = 0; f < s.F; f++)
                for (int ky = 0; ky < k; ky++)
                {
                    int oy = iy - ky + s.Pad;
                    if (oy < 0 || oy >= s.OutH) continue;
                    for (int kx = 0; kx < k; kx++)
                    {
                        int ox = ix - kx + s.Pad;
                        if (ox < 0 || ox >= s.OutW) continue;
                        sum += HalfKernels.ToFloat(dy[((b * s.F + f) * s.OutH + oy) * s.OutW + ox], format)
                             * HalfKernels.ToFloat(weight[((f * s.C + c) * k + ky) * k + kx], format);
                    }
                }
            dx[idx] = HalfKernels.FromFloat(sum, format);
        }
    }

    /// <summary>Backward to the weight, in float32: one loop iteration per weight.</summary>
    public static void ConvBackwardWeight(
        ArrayView<ushort> dy,      // dy: (B, F, OH, OW)
        ArrayView<ushort> x,       // x: (B, C, H, W)
        ArrayView<float> dweight,  // dweight: (F, C, k, k) float32, written (or added to)
        ConvShape s, int rows,
        int accumulate,            // 0: dweight = sum; 1: dweight += sum (gradient accumulation)
        int format)
    {
        int stride = Grid.DimX * Group.DimX;
        int k = s.KernelSize;
        for (int idx = Grid.GlobalIndex.X; idx < s.F * s.C * k * k; idx += stride)
        {
            int kx = idx % k, t = idx / k;
            int ky = t % k; t /= k;
            int c = t % s.C, f = t / s.C;
            float sum = 0f;
            for (int b = 0; b < rows; b++)
                for (int oy = 0; oy < s.OutH; oy++)
                {
                    int iy = oy + ky - s.Pad;
                    if (iy < 0 || iy >= s.H) continue;
                    for (int ox = 0; ox < s.OutW; ox++)
                    {
                        int ix = ox + kx - s.Pad;
                        if (ix < 0 || ix >= s.W) continue;
                        sum += HalfKernels.ToFloat(dy[((b * s.F + f) * s.OutH + oy) * s.OutW + ox], format)
                             * HalfKernels.ToFloat(x[((b * s.C + c) * s.H + iy) * s.W + ix], format);
                    }
                }
            dweight[idx] = accumulate != 0 ? dweight[idx] + sum : sum;
        }
    }

    /// <summary>Per-channel bias gradient in float32: one loop iteration per channel, images and the plane in order.</summary>
    public static void ChannelBiasBackward(
        ArrayView<ushort> dy,      // dy: (B, F, OH OW)
        ArrayView<float> dbias,    // dbias: (F) float32, written (or added to)
        int rows, int channels, int plane,
        int accumulate, int format)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int f = Grid.GlobalIndex.X; f < channels; f += stride)
        {
            float sum = 0f;
            for (int b = 0; b < rows; b++)
            {
                int start = (b * channels + f) * plane;
                for (int i = 0; i < plane; i++) sum += HalfKernels.ToFloat(dy[start + i], format);
            }
            dbias[f] = accumulate != 0 ? dbias[f] + sum : sum;
        }
    }

    /// <summary>Max-pool forward as <see cref="PoolKernels.MaxPoolForward"/>: compared as float32, the maximum's bits copied.</summary>
    public static void MaxPoolForward(
        ArrayView<ushort> x,       // x: (B, C, H, W)
        ArrayView<ushort> y,       // y: (B, C, OH, OW), written
        ArrayView<int> indices,    // indices: (B, C, OH, OW), written: where each maximum was, iy W + ix
        int planes, int h, int w, int size, int format)   // planes: B C; size: s
    {
        int stride = Grid.DimX * Group.DimX;
        int oh = h / size, ow = w / size;
        for (int idx = Grid.GlobalIndex.X; idx < planes * oh * ow; idx += stride)
        {
            int ox = idx % ow, oy = idx / ow % oh, plane = idx / (ow * oh);
            int start = plane * h * w;
            int best = oy * size * w + ox * size;
            float max = HalfKernels.ToFloat(x[start + best], format);
            for (int dy = 0; dy < size; dy++)
                for (int dx = 0; dx < size; dx++)
                {
                    int i = (oy * size + dy) * w + ox * size + dx;
                    float v = HalfKernels.ToFloat(x[start + i], format);
                    if (v > max || (XMath.IsNaN(v) && !XMath.IsNaN(max))) { max = v; best = i; }
                }
            y[idx] = x[start + best];
            indices[idx] = best;
        }
    }

    /// <summary>Max-pool backward as <see cref="PoolKernels.MaxPoolBackward"/>: dy's bits where the maximum was, 0 elsewhere.</summary>
    public static void MaxPoolBackward(
        ArrayView<ushort> dy,      // dy: (B, C, OH, OW)
        ArrayView<int> indices,    // indices: (B, C, OH, OW), from the forward pass
        ArrayView<ushort> dx,      // dx: (B, C, H, W), written (every element)
        int planes, int h, int w, int size)
    {
        int stride = Grid.DimX * Group.DimX;
        int oh = h / size, ow = w / size;
        for (int idx = Grid.GlobalIndex.X; idx < planes * h * w; idx += stride)
        {
            int i = idx % (h * w), plane = idx / (h * w);
            int oy = i / w / size, ox = i % w / size;
            ushort g = 0;
            if (oy < oh && ox < ow)
            {
                int o = (plane * oh + oy) * ow + ox;
                if (indices[o] == i) g = dy[o];
            }
            dx[idx] = g;
        }
    }
}
