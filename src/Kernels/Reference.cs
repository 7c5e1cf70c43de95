namespace ScratchNet.Kernels;

/// <summary>
/// Plain, obviously-correct C# versions of every kernel, in double precision where it matters: what the
/// tests and `scratchnet selftest` compare each ILGPU kernel against.
/// </summary>
public static class Reference
{
    /// <summary>c (M, N) = a (M, K) · b (K, N) with a[i, q] = a[i*aRow + q*aCol], b[q, j] = b[q*bRow + j*bCol], in double precision.</summary>
    public static float[] Matmul(float[] a, float[] b, int m, int n, int k, int aRow, int aCol, int bRow, int bCol)
    {
        var c = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int q = 0; q < k; q++) sum += (double)a[i * aRow + q * aCol] * b[q * bRow + j * bCol];
                c[i * n + j] = (float)sum;
            }
        return c;
    }

    public static float[] BiasActivation(float[] y, float[] bias, int rows, int n, bool relu)
    {
        var r = new float[rows * n];
        for (int i = 0; i < rows * n; i++)
        {
            float v = y[i] + bias[i % n];
            r[i] = relu ? Math.Max(0, v) : v;
        }
        return r;
    }

    public static float[] ReluBackward(float[] dy, float[] y) => dy.Select((d, i) => y[i] > 0 ? d : 0f).ToArray();

    public static float[] BiasBackward(float[] dy, int rows, int n)
    {
        var r = new float[n];
        for (int j = 0; j < n; j++)
        {
            double s = 0;
            for (int b = 0; b < rows; b++) s += dy[b * n + j];
            r[j] = (float)s;
        }
        return r;
    }

    public static (float[] Losses, float[] DLogits) SoftmaxCrossEntropy(float[] logits, int[] labels, int rows, int classes)
    {
        var losses = new float[rows];
        var d = new float[rows * classes];
        for (int b = 0; b < rows; b++)
        {
            double max = double.MinValue;
            for (int j = 0; j < classes; j++) max = Math.Max(max, logits[b * classes + j]);
            double sum = 0;
            for (int j = 0; j < classes; j++) sum += Math.Exp(logits[b * classes + j] - max);
            losses[b] = (float)(Math.Log(sum) + max - logits[b * classes + labels[b]]);
            for (int j = 0; j < classes; j++)
                d[b * classes + j] = (float)((Math.Exp(logits[b * classes + j] - max) / sum - (j == labels[b] ? 1 : 0)) / rows);
        }
        return (losses, d);
    }

    public static int[] Argmax(float[] logits, int rows, int classes)
    {
        var r = new int[rows];
        for (int b = 0; b < rows; b++)
        {
            int best = 0;
            for (int j = 1; j < classes; j++) if (logits[b * classes + j] > logits[b * classes + best]) best = j;
            r[b] = best;
        }
        return r;
    }

    /// <summary>
    /// Adam's update for step t in its textbook form (m^ and v^, see <see cref="OptimizerKernels.Adam"/>), in
    /// double precision: the kernels compute the rearranged form, and the tests show the two agree.
    /// </summary>
    public static void Adam(float[] p, float[] g, float[] m, float[] v, int t, double lr, double b1, double b2, double eps)
    {
        var (c1, c2) = OptimizerKernels.AdamBiasCorrection(b1, b2, t);
        for (int i = 0; i < p.Length; i++)
        {
            double mi = b1 * m[i] + (1 - b1) * g[i];
            double vi = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
            m[i] = (float)mi;
            v[i] = (float)vi;
            double mHat = mi / c1, vHat = vi / c2;
            p[i] = (float)(p[i] - lr * mHat / (Math.Sqrt(vHat) + eps));
        }
    }

    public static void Sgd(float[] p, float[] g, float[]? buf, double lr, double momentum)
    {
        for (int i = 0; i < p.Length; i++)
        {
            double step = g[i];
            if (buf is not null)
            {
                buf[i] = (float)(momentum * buf[i] + g[i]);
                step = buf[i];
            }
            p[i] = (float)(p[i] - lr * step);
        }
    }

    public static float[] RandomFloats(Random r, int n, float scale = 1f) =>
        Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1) * scale).ToArray();

    /// <summary>
    /// The worst element: its index and by how much it exceeds atol + rtol * |expected| (negative or zero when
    /// all are within tolerance; infinity for a NaN), and the largest absolute error.
    /// </summary>
    public static (int Index, double Excess, double MaxAbsError) Compare(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol)
    {
        int worst = -1;
        double worstExcess = double.NegativeInfinity, maxAbs = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double err = Math.Abs(actual[i] - (double)expected[i]);
            double excess = double.IsNaN(err) ? double.PositiveInfinity : err - (atol + rtol * Math.Abs(expected[i]));
            if (excess > worstExcess) { worst = i; worstExcess = excess; }
            maxAbs = double.IsNaN(err) ? double.PositiveInfinity : Math.Max(maxAbs, err);
        }
        return (worst, worstExcess, maxAbs);
    }

    #region Conv2d and MaxPool2d: the definitions, as plain loops

    // Written from the definitions in ConvShape, ConvKernels and PoolKernels, not from the kernels: the zero padding is made
    // explicit (each plane copied into a zero-filled (H + 2p, W + 2p) array, so no bounds tests), the gradients scatter every
    // output's gradient back along the products that made it (the kernels gather), and every sum is in double precision.

    /// <summary>Plane (b, c) of x (B, C, H, W) inside a zero-filled (H + 2p, W + 2p) array: x[b, c, iy, ix] sits at [iy + p, ix + p].</summary>
    static double[,] PaddedPlane(float[] x, ConvShape s, int b, int c)
    {
        var plane = new double[s.H + 2 * s.Pad, s.W + 2 * s.Pad];
        for (int iy = 0; iy < s.H; iy++)
            for (int ix = 0; ix < s.W; ix++)
                plane[iy + s.Pad, ix + s.Pad] = x[((b * s.C + c) * s.H + iy) * s.W + ix];
        return plane;
    }

    /// <summary>The inside of a padded plane (H + 2p, W + 2p) written to plane (b, c) of dx (B, C, H, W); the padding is dropped.</summary>
    static void Unpad(double[,] padded, float[] dx, ConvShape s, int b, int c)
    {
        for (int iy = 0; iy < s.H; iy++)
            for (int ix = 0; ix < s.W; ix++)
                dx[((b * s.C + c) * s.H + iy) * s.W + ix] = (float)padded[iy + s.Pad, ix + s.Pad];
    }

    static int WeightIndex(ConvShape s, int f, int c, int ky, int kx) => ((f * s.C + c) * s.KernelSize + ky) * s.KernelSize + kx;
    static int OutIndex(ConvShape s, int b, int f, int oy, int ox) => ((b * s.F + f) * s.OutH + oy) * s.OutW + ox;

    /// <summary>
    /// Conv2d forward with bias, as nn.Conv2d (a cross-correlation): y[b, f, oy, ox] = bias[f] + sum over c, ky, kx of
    /// padded x[b, c][oy + ky, ox + kx] * weight[f, c, ky, kx]. x (B, C, H, W), weight (F, C, k, k), bias (F) or null, y (B, F, OH, OW).
    /// </summary>
    public static float[] ConvForward(float[] x, float[] weight, float[]? bias, ConvShape s, int rows)
    {
        var y = new float[rows * s.F * s.OutH * s.OutW];
        for (int b = 0; b < rows; b++)
        {
            var planes = Enumerable.Range(0, s.C).Select(c => PaddedPlane(x, s, b, c)).ToArray();
            for (int f = 0; f < s.F; f++)
                for (int oy = 0; oy < s.OutH; oy++)
                    for (int ox = 0; ox < s.OutW; ox++)
                    {
                        double sum = bias is null ? 0 : bias[f];
                        for (int c = 0; c < s.C; c++)
                            for (int ky = 0; ky < s.KernelSize; ky++)
                                for (int kx = 0; kx < s.KernelSize; kx++)
                                    sum += planes[c][oy + ky, ox + kx] * weight[WeightIndex(s, f, c, ky, kx)];
                        y[OutIndex(s, b, f, oy, ox)] = (float)sum;
                    }
        }
        return y;
    }

    /// <summary>d(loss)/dx (B, C, H, W) from dy (B, F, OH, OW): each output's gradient sent back through every weight of its window
    /// into a padded plane, whose padding is then cut off.</summary>
    public static float[] ConvBackwardInput(float[] dy, float[] weight, ConvShape s, int rows)
    {
        var dx = new float[rows * s.C * s.H * s.W];
        for (int b = 0; b < rows; b++)
            for (int c = 0; c < s.C; c++)
            {
                var padded = new double[s.H + 2 * s.Pad, s.W + 2 * s.Pad];
                for (int f = 0; f < s.F; f++)
                    for (int oy = 0; oy < s.OutH; oy++)
                        for (int ox = 0; ox < s.OutW; ox++)
                        {
                            double g = dy[OutIndex(s, b, f, oy, ox)];
                            for (int ky = 0; ky < s.KernelSize; ky++)
                                for (int kx = 0; kx < s.KernelSize; kx++)
                                    padded[oy + ky, ox + kx] += g * weight[WeightIndex(s, f, c, ky, kx)];
                        }
                Unpad(padded, dx, s, b, c);
            }
        return dx;
    }

    /// <summary>d(loss)/dweight (F, C, k, k) from dy (B, F, OH, OW) and x (B, C, H, W): each output's gradient times every input of its window.</summary>
    public static float[] ConvBackwardWeight(float[] dy, float[] x, ConvShape s, int rows)
    {
        var dw = new double[s.F * s.C * s.KernelSize * s.KernelSize];
        for (int b = 0; b < rows; b++)
            for (int c = 0; c < s.C; c++)
            {
                var plane = PaddedPlane(x, s, b, c);
                for (int f = 0; f < s.F; f++)
                    for (int oy = 0; oy < s.OutH; oy++)
                        for (int ox = 0; ox < s.OutW; ox++)
                        {
                            double g = dy[OutIndex(s, b, f, oy, ox)];
                            for (int ky = 0; ky < s.KernelSize; ky++)
                                for (int kx = 0; kx < s.KernelSize; kx++)
                                    dw[WeightIndex(s, f, c, ky, kx)] += g * plane[oy + ky, ox + kx];
                        }
            }
        return dw.Select(v => (float)v).ToArray();
    }

    /// <summary>d(loss)/dbias (F): dy (B, F, OH, OW) summed over the batch and the output plane.</summary>
    public static float[] ConvBackwardBias(float[] dy, ConvShape s, int rows)
    {
        var db = new double[s.F];
        for (int b = 0; b < rows; b++)
            for (int f = 0; f < s.F; f++)
                for (int oy = 0; oy < s.OutH; oy++)
                    for (int ox = 0; ox < s.OutW; ox++)
                        db[f] += dy[OutIndex(s, b, f, oy, ox)];
        return db.Select(v => (float)v).ToArray();
    }

    /// <summary>One image (C, H, W) unfolded: cols (C k k, OH OW), row (c k + ky) k + kx, column oy OW + ox = padded image[c][oy + ky, ox + kx].</summary>
    public static float[] Im2col(float[] image, ConvShape s)
    {
        int k = s.KernelSize, n = s.OutH * s.OutW;
        var cols = new float[s.C * k * k * n];
        for (int c = 0; c < s.C; c++)
        {
            var plane = PaddedPlane(image, s, 0, c);
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                    for (int oy = 0; oy < s.OutH; oy++)
                        for (int ox = 0; ox < s.OutW; ox++)
                            cols[((c * k + ky) * k + kx) * n + oy * s.OutW + ox] = (float)plane[oy + ky, ox + kx];
        }
        return cols;
    }

    /// <summary>The transpose of <see cref="Im2col"/>: every entry of dcols (C k k, OH OW) added back where im2col took it from,
    /// giving dimage (C, H, W) (entries that came from the padding are dropped).</summary>
    public static float[] Col2im(float[] dcols, ConvShape s)
    {
        int k = s.KernelSize, n = s.OutH * s.OutW;
        var dimage = new float[s.C * s.H * s.W];
        for (int c = 0; c < s.C; c++)
        {
            var padded = new double[s.H + 2 * s.Pad, s.W + 2 * s.Pad];
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                    for (int oy = 0; oy < s.OutH; oy++)
                        for (int ox = 0; ox < s.OutW; ox++)
                            padded[oy + ky, ox + kx] += dcols[((c * k + ky) * k + kx) * n + oy * s.OutW + ox];
            Unpad(padded, dimage, s, 0, c);
        }
        return dimage;
    }

    /// <summary>
    /// s x s max pooling with stride s of `planes` planes of H x W: y and indices (planes, H/s, W/s), rounded down (a last row or
    /// column that does not fill a window is dropped). The index is iy W + ix inside the plane: of the first NaN of the window
    /// if it has one (NaN wins, as in PyTorch), else of the first element, in row-major order, equal to the window's maximum.
    /// </summary>
    public static (float[] Y, int[] Indices) MaxPool(float[] x, int planes, int h, int w, int size)
    {
        int oh = h / size, ow = w / size;
        var y = new float[planes * oh * ow];
        var indices = new int[y.Length];
        for (int p = 0; p < planes; p++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    var window = new List<int>();   // plane indices of the window, row-major
                    for (int dy = 0; dy < size; dy++)
                        for (int dx = 0; dx < size; dx++)
                            window.Add((oy * size + dy) * w + ox * size + dx);
                    int firstNaN = window.FindIndex(i => float.IsNaN(x[p * h * w + i]));
                    int best;
                    if (firstNaN >= 0)
                        best = window[firstNaN];
                    else
                    {
                        float max = window.Max(i => x[p * h * w + i]);
                        best = window.First(i => x[p * h * w + i] == max);
                    }
                    int o = (p * oh + oy) * ow + ox;
                    y[o] = x[p * h * w + best];
                    indices[o] = best;
                }
        return (y, indices);
    }

    /// <summary>Max-pool backward: dx (planes, H, W) is zero except where a window's maximum was, which gets that window's dy.</summary>
    public static float[] MaxPoolBackward(float[] dy, int[] indices, int planes, int h, int w, int size)
    {
        int outPlane = h / size * (w / size);
        var dx = new float[planes * h * w];
        for (int o = 0; o < planes * outPlane; o++)
            dx[o / outPlane * h * w + indices[o]] += dy[o];
        return dx;
    }

    #endregion
}
