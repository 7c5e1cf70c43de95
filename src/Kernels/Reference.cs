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
}
