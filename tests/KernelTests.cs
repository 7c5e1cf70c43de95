using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using NUnit.Framework;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Tests;

/// <summary>
/// Every kernel against the plain C# reference on ILGPU's CPU accelerator, with sizes 1, 7, 63, 65 and
/// 1000 in every dimension that varies (for matmul: every combination in which at most one dimension is
/// 1000, in the three layouts a Linear layer uses).
/// </summary>
[TestFixture]
public sealed class KernelTests
{
    static readonly int[] Sizes = [1, 7, 63, 65, 1000];

    /// <summary>The three products of a Linear layer: (name, aRow, aCol, bRow, bCol) as functions of (m, n, p).</summary>
    public enum Layout { Forward_A_BT, BackwardInput_A_B, BackwardWeight_AT_B }

    static (int aRow, int aCol, int bRow, int bCol) Strides(Layout layout, int m, int n, int p) => layout switch
    {
        Layout.Forward_A_BT => (p, 1, 1, p),          // A (M, P) row-major; B = W^T with W (N, P)
        Layout.BackwardInput_A_B => (p, 1, n, 1),     // A (M, P), B (P, N) both row-major
        Layout.BackwardWeight_AT_B => (1, m, n, 1),   // A = dY^T with dY (P, M); B (P, N)
        _ => throw new ArgumentOutOfRangeException(nameof(layout)),
    };

    static IEnumerable<TestCaseData> MatmulCases(MatmulVersion version)
    {
        foreach (int m in Sizes)
            foreach (int n in Sizes)
                foreach (int p in Sizes)
                {
                    if ((m == 1000 ? 1 : 0) + (n == 1000 ? 1 : 0) + (p == 1000 ? 1 : 0) > 1) continue;
                    foreach (Layout layout in Enum.GetValues<Layout>())
                        yield return new TestCaseData(version, layout, m, n, p);
                }
    }

    static IEnumerable<TestCaseData> NaiveCases() => MatmulCases(MatmulVersion.Naive);
    static IEnumerable<TestCaseData> BlockedCases() => MatmulCases(MatmulVersion.Blocked);
    static IEnumerable<TestCaseData> VectorCases() => MatmulCases(MatmulVersion.Vector);
    static IEnumerable<TestCaseData> HostCases() => HostBackend.Avx512
        ? MatmulCases(MatmulVersion.HostSimd).Concat(MatmulCases(MatmulVersion.HostAvx512)).Concat(LongRows(MatmulVersion.HostAvx512))
        : MatmulCases(MatmulVersion.HostSimd);

    static IEnumerable<TestCaseData> Avx512Cases() => HostBackend.Avx512 ? MatmulCases(MatmulVersion.HostAvx512).Concat(LongRows(MatmulVersion.HostAvx512)) : [];

    /// <summary>x·W^T with rows longer than host AVX-512 packs on the stack (k &gt; 1024): its dot products, as the conv net's fc1 (k = 3136) runs.</summary>
    static IEnumerable<TestCaseData> LongRows(MatmulVersion version) =>
        [new TestCaseData(version, Layout.Forward_A_BT, 9, 33, 1100), new TestCaseData(version, Layout.Forward_A_BT, 64, 7, 3136)];

    /// <summary>
    /// host AVX-512 against host SIMD, accumulating or not. Where b's rows are contiguous (dx, dW) every c[i, j] is the same
    /// chain of fused multiply-adds in both: the very same bits. The forward (x·W^T) is 8-lane dot products in host SIMD, and
    /// in host AVX-512 one chain per output over packed columns of W (16-lane dot products for rows longer than 1024), so
    /// its sums are grouped differently: the last bits may differ, within the matmul's tolerance (both versions are also
    /// checked against the reference at every size).
    /// </summary>
    [TestCaseSource(nameof(Avx512Cases))]
    public void HostAvx512_AgreesWithHostSimd(MatmulVersion version, Layout layout, int m, int n, int p)
    {
        var acc = Shared.Cpu.Accelerator;
        var r = new Random(m * 7919 + n * 31 + p);
        var host = new HostBackend();
        var (aRow, aCol, bRow, bCol) = Strides(layout, m, n, p);
        float[] a = Reference.RandomFloats(r, m * p), b = Reference.RandomFloats(r, p * n), c0 = Reference.RandomFloats(r, m * n);
        float[] Run(MatmulVersion v, bool accumulate)
        {
            using var da = acc.Allocate1D(a);
            using var db = acc.Allocate1D(b);
            using var dc = acc.Allocate1D(c0);
            host.Matmul(v, da.View, db.View, dc.View, m, n, p, aRow, aCol, bRow, bCol, accumulate);
            return dc.GetAsArray1D();
        }
        foreach (bool accumulate in new[] { false, true })
        {
            float[] wide = Run(MatmulVersion.HostAvx512, accumulate), simd = Run(MatmulVersion.HostSimd, accumulate);
            if (layout == Layout.Forward_A_BT)
                Check.Close(wide, simd, 1e-5 * Math.Sqrt(p) + 1e-6, 1e-5, $"accumulate {accumulate}");
            else
                Assert.That(wide, Is.EqualTo(simd), $"accumulate {accumulate}: bit-identical");
        }
    }

    /// <summary>The host backend's SIMD matmul (--device host), on the same cases.</summary>
    [TestCaseSource(nameof(HostCases))]
    public void HostMatmul_MatchesReference(MatmulVersion version, Layout layout, int m, int n, int p) =>
        CheckMatmul(new HostBackend(), Shared.Cpu.Accelerator, version, layout, m, n, p);

    /// <summary>The ILGPU kernels, or the host backend's C# over the same CPU-accelerator buffers.</summary>
    static IBackend Ops(string backend) => backend == "host" ? new HostBackend() : Shared.Kernels;

    /// <summary>The tiled kernel needs 256-thread groups: on the CPU accelerator that is 256 OS threads
    /// meeting at every barrier, so it gets the sizes 1, 7, 63, 65 in full and 1000 in one dimension at a time.</summary>
    static IEnumerable<TestCaseData> TiledCases()
    {
        foreach (int m in Sizes[..4])
            foreach (int n in Sizes[..4])
                foreach (int p in Sizes[..4])
                    yield return new TestCaseData(MatmulVersion.Tiled, Layout.Forward_A_BT, m, n, p);
        foreach (Layout layout in Enum.GetValues<Layout>())
        {
            yield return new TestCaseData(MatmulVersion.Tiled, layout, 1000, 7, 65);
            yield return new TestCaseData(MatmulVersion.Tiled, layout, 63, 1000, 7);
            yield return new TestCaseData(MatmulVersion.Tiled, layout, 65, 63, 1000);
        }
    }

    [TestCaseSource(nameof(NaiveCases))]
    [TestCaseSource(nameof(BlockedCases))]
    [TestCaseSource(nameof(VectorCases))]
    public void Matmul_MatchesReference(MatmulVersion version, Layout layout, int m, int n, int p) =>
        CheckMatmul(Shared.Kernels, Shared.Cpu.Accelerator, version, layout, m, n, p);

    static readonly Lazy<(Context Context, Accelerator Accelerator)> WideCpu = new(() =>
    {
        var context = Context.Create(b => b.CPU(new CPUDevice(16, 16, 1)).Optimize(OptimizationLevel.O2));
        return (context, context.GetCPUDevice(0).CreateCPUAccelerator(context));
    });

    [TestCaseSource(nameof(TiledCases))]
    public void MatmulTiled_MatchesReference(MatmulVersion version, Layout layout, int m, int n, int p) =>
        CheckMatmul(IlgpuBackend.For(WideCpu.Value.Accelerator), WideCpu.Value.Accelerator, version, layout, m, n, p);

    [Test]
    public void MatmulTiled_OnTwoThreadGroups_SaysWhichVersionToUse()
    {
        var t = Shared.NewTracker();
        using var a = t.Allocate<float>("a", [4], MemoryCategory.Other);
        var e = Assert.Throws<NotSupportedException>(() => Shared.Kernels.Matmul(MatmulVersion.Tiled, a.View, a.View, a.View, 2, 2, 1, 1, 1, 2, 1));
        Assert.That(e!.Message, Does.Contain("--matmul blocked"));
    }

    static void CheckMatmul(IBackend k, Accelerator acc, MatmulVersion version, Layout layout, int m, int n, int p)
    {
        var (aRow, aCol, bRow, bCol) = Strides(layout, m, n, p);
        var r = new Random(m * 1_000_003 + n * 1009 + p);
        float[] a = Reference.RandomFloats(r, m * p), b = Reference.RandomFloats(r, p * n);
        using var da = acc.Allocate1D(a);
        using var db = acc.Allocate1D(b);
        using var dc = acc.Allocate1D<float>(m * n);
        dc.MemSet(0xFF); // NaN everywhere: an output the kernel forgets shows up
        k.Matmul(version, da.View, db.View, dc.View, m, n, p, aRow, aCol, bRow, bCol);
        float[] c = dc.GetAsArray1D();
        Check.Close(c, Reference.Matmul(a, b, m, n, p, aRow, aCol, bRow, bCol), 1e-5 * Math.Sqrt(p) + 1e-6, 1e-5,
            $"{version} {layout} m={m} n={n} p={p}");
    }

    static IEnumerable<TestCaseData> RowsByFeatures()
    {
        foreach (string backend in new[] { "ilgpu", "host" })
            foreach (int rows in Sizes)
                foreach (int n in Sizes)
                    yield return new TestCaseData(rows, n, backend);
    }

    [TestCaseSource(nameof(RowsByFeatures))]
    public void BiasActivation_MatchesReference(int rows, int n, string backend)
    {
        var r = new Random(rows * 31 + n);
        float[] y = Reference.RandomFloats(r, rows * n), bias = Reference.RandomFloats(r, n);
        var acc = Shared.Cpu.Accelerator;
        foreach (bool relu in new[] { false, true })
        {
            using var dy = acc.Allocate1D(y);
            using var dbias = acc.Allocate1D(bias);
            Ops(backend).BiasActivation(dy.View, dbias.View, rows, n, relu);
            Check.Close(dy.GetAsArray1D(), Reference.BiasActivation(y, bias, rows, n, relu), 0, 0, $"relu={relu}");
        }
    }

    [TestCaseSource(nameof(RowsByFeatures))]
    public void ReluBackward_MatchesReference(int rows, int n, string backend)
    {
        var r = new Random(rows * 37 + n);
        float[] dy = Reference.RandomFloats(r, rows * n), y = Reference.RandomFloats(r, rows * n).Select(v => Math.Max(0, v)).ToArray();
        var acc = Shared.Cpu.Accelerator;
        using var ddy = acc.Allocate1D(dy);
        using var dyy = acc.Allocate1D(y);
        Ops(backend).ReluBackward(ddy.View, dyy.View, rows * n);
        Check.Close(ddy.GetAsArray1D(), Reference.ReluBackward(dy, y), 0, 0, "relu backward");
    }

    [TestCaseSource(nameof(RowsByFeatures))]
    public void BiasBackward_MatchesReference(int rows, int n, string backend)
    {
        var r = new Random(rows * 41 + n);
        float[] dy = Reference.RandomFloats(r, rows * n);
        var acc = Shared.Cpu.Accelerator;
        using var ddy = acc.Allocate1D(dy);
        using var db = acc.Allocate1D<float>(n);
        Ops(backend).BiasBackward(ddy.View, db.View, rows, n);
        Check.Close(db.GetAsArray1D(), Reference.BiasBackward(dy, rows, n), 1e-5 * Math.Sqrt(rows), 1e-5, "bias backward");
    }

    [TestCaseSource(nameof(RowsByFeatures))]
    public void SoftmaxCrossEntropy_MatchesReference(int rows, int classes, string backend)
    {
        var r = new Random(rows * 43 + classes);
        float[] logits = Reference.RandomFloats(r, rows * classes, 8f);
        int[] labels = Enumerable.Range(0, rows).Select(_ => r.Next(classes)).ToArray();
        var acc = Shared.Cpu.Accelerator;
        using var dl = acc.Allocate1D(logits);
        using var dy = acc.Allocate1D(labels);
        using var losses = acc.Allocate1D<float>(rows);
        using var grad = acc.Allocate1D<float>(rows * classes);
        Ops(backend).SoftmaxCrossEntropy(dl.View, dy.View, losses.View, grad.View, rows, classes, rows);
        var (refLoss, refGrad) = Reference.SoftmaxCrossEntropy(logits, labels, rows, classes);
        Check.Close(losses.GetAsArray1D(), refLoss, 1e-5, 1e-5, "losses");
        Check.Close(grad.GetAsArray1D(), refGrad, 1e-6, 1e-5, "dlogits");
    }

    [Test]
    public void SoftmaxCrossEntropy_HugeLogits_StayFinite([Values("ilgpu", "host")] string backend)
    {
        float[] logits = [1000f, -1000f, 0f, 999f];
        int[] labels = [1, 0];
        var acc = Shared.Cpu.Accelerator;
        using var dl = acc.Allocate1D(logits);
        using var dy = acc.Allocate1D(labels);
        using var losses = acc.Allocate1D<float>(2);
        using var grad = acc.Allocate1D<float>(4);
        Ops(backend).SoftmaxCrossEntropy(dl.View, dy.View, losses.View, grad.View, 2, 2, 2);
        Assert.That(losses.GetAsArray1D(), Is.EqualTo(new[] { 2000f, 999f }).Within(1e-3f));
        Assert.That(grad.GetAsArray1D().All(float.IsFinite));
    }

    [TestCaseSource(nameof(RowsByFeatures))]
    public void Argmax_MatchesReference(int rows, int classes, string backend)
    {
        var r = new Random(rows * 47 + classes);
        // Rounded values make ties common: the first maximum must win, as in torch.argmax.
        float[] logits = Reference.RandomFloats(r, rows * classes).Select(v => MathF.Round(v * 3)).ToArray();
        var acc = Shared.Cpu.Accelerator;
        using var dl = acc.Allocate1D(logits);
        using var pred = acc.Allocate1D<int>(rows);
        Ops(backend).Argmax(dl.View, pred.View, rows, classes);
        Assert.That(pred.GetAsArray1D(), Is.EqualTo(Reference.Argmax(logits, rows, classes)));
    }

    [Test]
    public void Adam_ThreeSteps_MatchTorchFormula([Values(1, 7, 63, 65, 1000)] int count, [Values("ilgpu", "host")] string backend)
    {
        var r = new Random(count);
        float[] p = Reference.RandomFloats(r, count), m = new float[count], v = new float[count];
        var acc = Shared.Cpu.Accelerator;
        using var dp = acc.Allocate1D(p);
        using var dm = acc.Allocate1D<float>(count);
        using var dv = acc.Allocate1D<float>(count);
        dm.MemSetToZero();
        dv.MemSetToZero();
        const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
        for (int t = 1; t <= 3; t++)
        {
            float[] g = Reference.RandomFloats(r, count);
            using var dg = acc.Allocate1D(g);
            double c1 = 1 - Math.Pow(b1, t), c2 = 1 - Math.Pow(b2, t);
            Ops(backend).Adam(dp.View, dg.View, dm.View, dv.View, count, (float)b1, (float)b2, (float)eps, (float)(lr / c1), (float)(1 / Math.Sqrt(c2)));
            Reference.Adam(p, g, m, v, t, lr, b1, b2, eps);
        }
        Check.Close(dp.GetAsArray1D(), p, 1e-6, 1e-5, "params");
        Check.Close(dm.GetAsArray1D(), m, 1e-7, 1e-5, "m");
        Check.Close(dv.GetAsArray1D(), v, 1e-8, 1e-5, "v");
    }

    [Test]
    public void Sgd_ThreeSteps_MatchTorchFormula([Values(1, 7, 63, 65, 1000)] int count, [Values(0f, 0.5f, 0.9f)] float momentum, [Values("ilgpu", "host")] string backend)
    {
        var r = new Random(count);
        float[] p = Reference.RandomFloats(r, count);
        float[]? buf = momentum > 0 ? new float[count] : null;
        var acc = Shared.Cpu.Accelerator;
        using var dp = acc.Allocate1D(p);
        using var dbuf = acc.Allocate1D<float>(count);
        dbuf.MemSetToZero();
        for (int t = 1; t <= 3; t++)
        {
            float[] g = Reference.RandomFloats(r, count);
            using var dg = acc.Allocate1D(g);
            if (momentum > 0) Ops(backend).SgdMomentum(dp.View, dg.View, dbuf.View, count, 0.1f, momentum);
            else Ops(backend).Sgd(dp.View, dg.View, count, 0.1f);
            Reference.Sgd(p, g, buf, 0.1f, momentum);
        }
        Check.Close(dp.GetAsArray1D(), p, 1e-6, 1e-5, "params");
    }
}
