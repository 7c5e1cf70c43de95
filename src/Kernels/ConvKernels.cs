using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// The sizes of one Conv2d layer (stride 1, zero padding p on every side), as the kernels receive them.
/// Letters as in docs/glossary.md: C input channels, H x W input size, F output channels (filters), k the
/// kernel size, p the padding, and the output size OH x OW:
/// <code>
/// OH = H + 2p - k + 1        OW = W + 2p - k + 1
/// x (B, C, H, W)   weight (F, C, k, k)   bias (F)   y (B, F, OH, OW)      all NCHW, row-major
/// </code>
/// </summary>
public readonly struct ConvShape
{
    public ConvShape(int c, int h, int w, int f, int kernelSize, int pad)
    {
        C = c; H = h; W = w; F = f; KernelSize = kernelSize; Pad = pad;
        OutH = h + 2 * pad - kernelSize + 1;
        OutW = w + 2 * pad - kernelSize + 1;
    }

    public int C { get; }
    public int H { get; }
    public int W { get; }
    public int F { get; }
    /// <summary>k: the kernel is k x k.</summary>
    public int KernelSize { get; }
    /// <summary>p: zeros added on each side.</summary>
    public int Pad { get; }
    public int OutH { get; }
    public int OutW { get; }
    /// <summary>Rows of the unfolded matrix of one image: C k k (one per weight of a filter).</summary>
    public int ColRows => C * KernelSize * KernelSize;
    /// <summary>Columns of the unfolded matrix of one image: OH OW (one per output position).</summary>
    public int ColCols => OutH * OutW;

    public override string ToString() => $"C {C}, {H}x{W}, F {F}, k {KernelSize}, p {Pad} -> {OutH}x{OutW}";
}

/// <summary>
/// Conv2d (stride 1, zero padding), in the two versions --conv selects:
/// <code>
/// y[b, f, oy, ox] = sum over c, ky, kx of  x[b, c, oy + ky - p, ox + kx - p] * weight[f, c, ky, kx]
///                   (x outside the image is 0; the bias is added by <see cref="ChannelBias"/>)
/// </code>
/// direct: one thread per output (or input, or weight) element, reading the window straight from x.
/// im2col: <see cref="Im2col"/> unfolds one image into cols (C k k, OH OW), where column (oy, ox) holds the
/// window under output (oy, ox); then the convolution is one matmul, y_b (F, OH OW) = weight (F, C k k) · cols,
/// done by the existing matmul versions (see Conv2d in src/Training/Layers). Backward runs the same matmuls
/// transposed and folds the columns back with <see cref="Col2im"/>.
/// Every kernel writes each output element once (no atomics, no zeroing), so results do not depend on the
/// number of threads.
/// </summary>
public static class ConvKernels
{
    /// <summary>direct forward: y (B, F, OH, OW) from x (B, C, H, W) and weight (F, C, k, k); one loop iteration per output.</summary>
    public static void DirectForward(
        ArrayView<float> x,        // x: (B, C, H, W)
        ArrayView<float> weight,   // weight: (F, C, k, k)
        ArrayView<float> y,        // y: (B, F, OH, OW), written
        ConvShape s, int rows)     // rows: B
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
                        sum += x[((b * s.C + c) * s.H + iy) * s.W + ix] * weight[((f * s.C + c) * k + ky) * k + kx];
                    }
                }
            y[idx] = sum;
        }
    }

    /// <summary>
    /// direct backward to the input: dx[b, c, iy, ix] = sum over f, ky, kx of dy[b, f, iy - ky + p, ix - kx + p] * weight[f, c, ky, kx]
    /// (the outputs whose window covered this input); one loop iteration per input element.
    /// </summary>
    public static void DirectBackwardInput(
        ArrayView<float> dy,       // dy: (B, F, OH, OW)
        ArrayView<float> weight,   // weight: (F, C, k, k)
        ArrayView<float> dx,       // dx: (B, C, H, W), written
        ConvShape s, int rows)
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
                        sum += dy[((b * s.F + f) * s.OutH + oy) * s.OutW + ox] * weight[((f * s.C + c) * k + ky) * k + kx];
                    }
                }
            dx[idx] = sum;
        }
    }

    /// <summary>
    /// direct backward to the weight: dweight[f, c, ky, kx] = sum over b, oy, ox of dy[b, f, oy, ox] * x[b, c, oy + ky - p, ox + kx - p];
    /// one loop iteration per weight.
    /// </summary>
    public static void DirectBackwardWeight(
        ArrayView<float> dy,       // dy: (B, F, OH, OW)
        ArrayView<float> x,        // x: (B, C, H, W)
        ArrayView<float> dweight,  // dweight: (F, C, k, k), written (or added to)
        ConvShape s, int rows,
        int accumulate)            // 0: dweight = sum; 1: dweight += sum (gradient accumulation)
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
                        sum += dy[((b * s.F + f) * s.OutH + oy) * s.OutW + ox] * x[((b * s.C + c) * s.H + iy) * s.W + ix];
                    }
                }
            dweight[idx] = accumulate != 0 ? dweight[idx] + sum : sum;
        }
    }

    /// <summary>
    /// im2col, one image: cols[(c k + ky) k + kx, oy OW + ox] = image[c, oy + ky - p, ox + kx - p] (0 outside).
    /// Row r of cols is one weight position of a filter; column j one output position.
    /// </summary>
    public static void Im2col(
        ArrayView<float> image,    // image: (C, H, W), one image of the batch
        ArrayView<float> cols,     // cols: (C k k, OH OW), written
        ConvShape s)
    {
        int stride = Grid.DimX * Group.DimX;
        int k = s.KernelSize, n = s.OutH * s.OutW;
        for (int idx = Grid.GlobalIndex.X; idx < s.C * k * k * n; idx += stride)
        {
            int j = idx % n, r = idx / n;
            int oy = j / s.OutW, ox = j % s.OutW;
            int kx = r % k, ky = r / k % k, c = r / (k * k);
            int iy = oy + ky - s.Pad, ix = ox + kx - s.Pad;
            cols[idx] = iy >= 0 && iy < s.H && ix >= 0 && ix < s.W ? image[(c * s.H + iy) * s.W + ix] : 0f;
        }
    }

    /// <summary>
    /// col2im, one image, the transpose of <see cref="Im2col"/>: every input element gathers the column entries
    /// that were copied from it, dimage[c, iy, ix] = sum over ky, kx of dcols[(c k + ky) k + kx, (iy - ky + p) OW + (ix - kx + p)].
    /// </summary>
    public static void Col2im(
        ArrayView<float> dcols,    // dcols: (C k k, OH OW)
        ArrayView<float> dimage,   // dimage: (C, H, W), one image of the batch, written
        ConvShape s)
    {
        int stride = Grid.DimX * Group.DimX;
        int k = s.KernelSize, n = s.OutH * s.OutW;
        for (int idx = Grid.GlobalIndex.X; idx < s.C * s.H * s.W; idx += stride)
        {
            int ix = idx % s.W, iy = idx / s.W % s.H, c = idx / (s.W * s.H);
            float sum = 0f;
            for (int ky = 0; ky < k; ky++)
            {
                int oy = iy - ky + s.Pad;
                if (oy < 0 || oy >= s.OutH) continue;
                for (int kx = 0; kx < k; kx++)
                {
                    int ox = ix - kx + s.Pad;
                    if (ox < 0 || ox >= s.OutW) continue;
                    sum += dcols[((c * k + ky) * k + kx) * n + oy * s.OutW + ox];
                }
            }
            dimage[idx] = sum;
        }
    }

    /// <summary>
    /// Per-channel bias, in place: y[b, f, i] += bias[f] over the plane of `plane` = OH OW values; with relu, then
    /// y = max(y, 0) in the same pass (a ReLU right after the conv, see Training's Relu: the ReLU kernel's formula).
    /// </summary>
    public static void ChannelBias(
        ArrayView<float> y,        // y: (B, F, OH OW), updated in place
        ArrayView<float> bias,     // bias: (F)
        int rows, int channels, int plane,
        int relu)                  // 1: and the ReLU after it
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < rows * channels * plane; i += stride)
        {
            float v = y[i] + bias[i / plane % channels];
            y[i] = relu != 0 && v < 0f ? 0f : v;
        }
    }

    /// <summary>Per-channel bias gradient: dbias[f] = sum over b and the plane of dy[b, f, i] (one loop iteration per channel, in order).</summary>
    public static void ChannelBiasBackward(
        ArrayView<float> dy,       // dy: (B, F, OH OW)
        ArrayView<float> dbias,    // dbias: (F), written (or added to)
        int rows, int channels, int plane,
        int accumulate)            // 0: dbias = sum; 1: dbias += sum (gradient accumulation)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int f = Grid.GlobalIndex.X; f < channels; f += stride)
        {
            float sum = 0f;
            for (int b = 0; b < rows; b++)
            {
                int start = (b * channels + f) * plane;
                for (int i = 0; i < plane; i++) sum += dy[start + i];
            }
            dbias[f] = accumulate != 0 ? dbias[f] + sum : sum;
        }
    }
}
