using NUnit.Framework;
using ScratchNet.Kernels;
using ScratchNet.Cli;
using ScratchNet.Training;

namespace ScratchNet.Tests;

[TestFixture]
public sealed class SelfTestTests
{
    [Test]
    public void Selftest_OnTheCpuAccelerator_Passes()
    {
        var r = CliRunner.Run("selftest", "--device", "cpu");
        Assert.That(r.ExitCode, Is.Zero, r.Stdout + r.Stderr);
        Assert.That(r.Stdout, Does.Contain("selftest passed: all 44 checks"));
        Assert.That(r.Stdout, Does.Not.Contain("FAIL"));
        foreach (string check in new[] { "matmul naive", "matmul blocked", "matmul tiled", "matmul vector", "bias add + relu", "relu backward", "bias backward",
                     "softmax-cross-entropy loss", "softmax-cross-entropy gradient", "argmax", "adam", "sgd momentum", "training: 20 steps" })
            Assert.That(r.Stdout, Does.Contain(check));
    }

    /// <summary>A reference whose Adam forgets the bias correction: exactly the kind of bug a kernel could have.</summary>
    sealed class WrongAdam : ReferenceOps
    {
        public override void Adam(float[] p, float[] g, float[] m, float[] v, int t, double lr, double b1, double b2, double eps)
        {
            for (int i = 0; i < p.Length; i++)
            {
                m[i] = (float)(b1 * m[i] + (1 - b1) * g[i]);
                v[i] = (float)(b2 * v[i] + (1 - b2) * g[i] * g[i]);
                p[i] = (float)(p[i] - lr * m[i] / (Math.Sqrt(v[i]) + eps));
            }
        }
    }

    /// <summary>A matmul reference that is off by one ulp-ish amount nobody would notice by eye.</summary>
    sealed class WrongMatmul : ReferenceOps
    {
        public override float[] Matmul(float[] a, float[] b, int m, int n, int p, int aRow, int aCol, int bRow, int bCol) =>
            base.Matmul(a, b, m, n, p, aRow, aCol, bRow, bCol).Select((x, i) => i == m * n - 1 ? x + 0.01f : x).ToArray();
    }

    [Test]
    public void Selftest_WithAWrongReference_FailsLoudly()
    {
        var stdout = new StringWriter();
        int code = SelfTestCommand.Run(["--device", "cpu"], stdout, new WrongAdam());
        string text = stdout.ToString();
        Assert.That(code, Is.EqualTo(1));
        Assert.That(text, Does.Match(@"adam \(3 steps\).*FAIL"));
        Assert.That(text, Does.Contain("selftest FAILED: 1 of 44 checks"));
    }

    [Test]
    public void Selftest_CatchesASmallMatmulError_InEveryVersion()
    {
        var rows = SelfTest.Run(Shared.Cpu, new WrongMatmul());
        Assert.That(rows.Where(r => r.Check.StartsWith("matmul")).All(r => !r.Passed), "all 9 matmul rows fail");
        Assert.That(rows.Where(r => !r.Check.StartsWith("matmul")).All(r => r.Passed));
    }

    /// <summary>A conv reference whose last output is a little off, and a max-pool that keeps the last maximum on ties.</summary>
    sealed class WrongConvAndPool : ReferenceOps
    {
        public override float[] Conv(float[] x, float[] weight, ConvShape s, int rows) =>
            Nudge(base.Conv(x, weight, s, rows));

        static float[] Nudge(float[] y)
        {
            y[^1] += 0.01f;
            return y;
        }

        public override (float[] Y, int[] Indices) MaxPool(float[] x, int planes, int h, int w, int size)
        {
            var (y, idx) = base.MaxPool(x, planes, h, w, size);
            int oh = h / size, ow = w / size;
            for (int o = 0; o < idx.Length; o++)
            {
                int p = o / (oh * ow), oy = o % (oh * ow) / ow, ox = o % ow;
                for (int dy = 0; dy < size; dy++)
                    for (int dx = 0; dx < size; dx++)
                    {
                        int i = (oy * size + dy) * w + ox * size + dx;
                        if (x[p * h * w + i] >= y[o]) idx[o] = i;   // the last maximum: not PyTorch's rule
                    }
            }
            return (y, idx);
        }
    }

    [Test]
    public void Selftest_CatchesAWrongConvOrPool_OnBothConvVersions()
    {
        var rows = SelfTest.Run(Shared.Cpu, new WrongConvAndPool());
        Assert.That(rows.Single(r => r.Check == "conv direct forward").Passed, Is.False);
        Assert.That(rows.Single(r => r.Check == "conv im2col forward").Passed, Is.False);
        Assert.That(rows.Single(r => r.Check.StartsWith("max-pool")).Passed, Is.False, "ties must go to the first maximum");
        Assert.That(rows.Where(r => r.Check.StartsWith("conv direct + max-pool")).Select(r => r.Passed), Is.EqualTo(new[] { false, false }),
            "the 16-bit conv rows check against the same reference");
        Assert.That(rows.Where(r => !r.Check.StartsWith("conv ") || !r.Check.EndsWith("forward")).Where(r => !r.Check.StartsWith("max-pool"))
            .Where(r => !r.Check.StartsWith("conv direct + max-pool")).All(r => r.Passed));
    }
}
