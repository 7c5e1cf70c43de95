using System.Text;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// The conv net's operations against the plain references in <see cref="Reference"/> (written from the definitions, in
/// double precision), on both backends: the ILGPU kernels on ILGPU's CPU accelerator (2 threads, so every grid-stride
/// loop takes several turns) and the host backend's SIMD C#, at awkward sizes. Both conv versions are compared to the
/// same reference: direct, and im2col run the way Conv2d runs it (per image im2col + the backend's matmul, backward with
/// c += a·b and col2im) with every matmul version the backend lists. Every output buffer is filled with 0xFF bytes (NaN,
/// or -1 for indices) first, so an element a kernel forgets to write fails. Then the whole training session: a small
/// conv net's gradients against finite differences, and direct vs im2col over 20 training steps of --model cnn.
/// </summary>
[TestFixture]
public sealed class ConvKernelTests
{
    // ---------------------------------------------------------------- backends and buffers

    /// <summary>"ilgpu": the kernels on the shared CPU accelerator; "host": HostBackend over buffers of the same accelerator;
    /// "ilgpu-wide": the kernels on a CPU accelerator with 256-thread groups (more threads than work, and the tiled matmul).</summary>
    static readonly string[] BothBackends = ["ilgpu", "host"];

    static readonly Lazy<(Context Context, Accelerator Accelerator)> WideCpu = new(() =>
    {
        var context = Context.Create(b => b.CPU(new CPUDevice(16, 16, 1)).Optimize(OptimizationLevel.O2));
        return (context, context.GetCPUDevice(0).CreateCPUAccelerator(context));
    });

    static (IBackend Backend, Accelerator Accelerator) Get(string backend) => backend switch
    {
        "ilgpu" => (Shared.Kernels, Shared.Cpu.Accelerator),
        "host" => (new HostBackend(), Shared.Cpu.Accelerator),
        "ilgpu-wide" => (IlgpuBackend.For(WideCpu.Value.Accelerator), WideCpu.Value.Accelerator),
        _ => throw new ArgumentOutOfRangeException(nameof(backend)),
    };

    /// <summary>A buffer of n floats filled with 0xFF bytes: NaN everywhere, so an element nobody writes shows up.</summary>
    static MemoryBuffer1D<float, Stride1D.Dense> Garbage(Accelerator acc, long n)
    {
        var buffer = acc.Allocate1D<float>(n);
        buffer.MemSet(0xFF);
        return buffer;
    }

    /// <summary>1e-5 per square root of the number of float32 terms summed, as in the existing kernel tests and the self-test.</summary>
    static double Tol(long sums) => 1e-5 * Math.Sqrt(sums) + 1e-6;

    /// <summary>Null when every element is within atol + rtol |expected| (NaN never is), else the worst element described.</summary>
    static string? Mismatch(float[] actual, float[] expected, double atol, double rtol, string what)
    {
        if (actual.Length != expected.Length) return $"{what}: {actual.Length} elements, expected {expected.Length}";
        var (worst, excess, _) = Reference.Compare(actual, expected, atol, rtol);
        return worst >= 0 && excess > 0
            ? $"{what}: element {worst} of {actual.Length} is {actual[worst]}, expected {expected[worst]} (tolerance {atol:0.0e0} + {rtol} x |expected|)"
            : null;
    }

    static void NoFailures(List<string> failures) =>
        Assert.That(failures, Is.Empty, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(25)));

    // ---------------------------------------------------------------- the references themselves, on hand-computed cases

    static readonly float[] Nine = [1, 2, 3, 4, 5, 6, 7, 8, 9];   // a 3x3 image, row-major

    [Test]
    public void Reference_Conv2x2_NoPadding_HandComputed()
    {
        var s = new ConvShape(1, 3, 3, 1, 2, 0);   // 3x3 -> 2x2
        float[] w = [1, 10, 100, 1000];            // a cross-correlation, as nn.Conv2d: w[0, 0] meets the window's top left
        Assert.That(Reference.ConvForward(Nine, w, [0.5f], s, 1), Is.EqualTo(new[] { 5421.5f, 6532.5f, 8754.5f, 9865.5f }));
        Assert.That(Reference.ConvForward(Nine, w, null, s, 1), Is.EqualTo(new[] { 5421f, 6532f, 8754f, 9865f }));
        float[] ones = [1, 1, 1, 1];
        // dx: the weights whose window covers each input; dW: the sum of the inputs each weight meets; db: 4 outputs.
        Assert.That(Reference.ConvBackwardInput(ones, w, s, 1), Is.EqualTo(new[] { 1f, 11, 10, 101, 1111, 1010, 100, 1100, 1000 }));
        Assert.That(Reference.ConvBackwardWeight(ones, Nine, s, 1), Is.EqualTo(new[] { 12f, 16, 24, 28 }));
        Assert.That(Reference.ConvBackwardBias(ones, s, 1), Is.EqualTo(new[] { 4f }));
        Assert.That(Reference.Im2col(Nine, s), Is.EqualTo(new[] { 1f, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9 }));
        Assert.That(Reference.Col2im(Enumerable.Repeat(1f, 16).ToArray(), s), Is.EqualTo(new[] { 1f, 2, 1, 2, 4, 2, 1, 2, 1 }));
    }

    [Test]
    public void Reference_Conv3x3_Padding1_HandComputed()
    {
        // All-ones 3x3 weight with padding 1: each output is the sum of its 3x3 neighbourhood (zeros outside).
        var s = new ConvShape(1, 3, 3, 1, 3, 1);
        float[] w = Enumerable.Repeat(1f, 9).ToArray();
        Assert.That(Reference.ConvForward(Nine, w, null, s, 1), Is.EqualTo(new[] { 12f, 21, 16, 27, 45, 33, 24, 39, 28 }));
        // Two images, two channels, two filters: image 1 channel 1 is 10x image 0 channel 0, the rest zero; filter 1 is 2x filter 0.
        var s2 = new ConvShape(2, 3, 3, 2, 3, 1);
        var x = new float[2 * 2 * 9];
        for (int i = 0; i < 9; i++) { x[i] = Nine[i]; x[27 + i] = 10 * Nine[i]; }
        var w2 = new float[2 * 2 * 9];
        for (int i = 0; i < 18; i++) { w2[i] = 1; w2[18 + i] = 2; }
        float[] y = Reference.ConvForward(x, w2, [0f, 1f], s2, 2);
        float[] y0 = [12, 21, 16, 27, 45, 33, 24, 39, 28];
        Assert.That(y[..9], Is.EqualTo(y0));
        Assert.That(y[9..18], Is.EqualTo(y0.Select(v => 2 * v + 1)));
        Assert.That(y[18..27], Is.EqualTo(y0.Select(v => 10 * v)));
        Assert.That(y[27..], Is.EqualTo(y0.Select(v => 20 * v + 1)));

        // im2col with padding: a 2x2 image, k 3, p 1 -> 2x2 outputs; row (ky, kx) = (0, 0) sees the image only at output (1, 1).
        var s3 = new ConvShape(1, 2, 2, 1, 3, 1);
        float[] cols = Reference.Im2col([1, 2, 3, 4], s3);
        Assert.That(cols, Has.Length.EqualTo(9 * 4));
        Assert.That(cols[..4], Is.EqualTo(new[] { 0f, 0, 0, 1 }));
        Assert.That(cols[16..20], Is.EqualTo(new[] { 1f, 2, 3, 4 }), "the centre row is the image itself");
        Assert.That(cols[32..], Is.EqualTo(new[] { 4f, 0, 0, 0 }));
    }

    [Test]
    public void Reference_MaxPool_HandComputed()
    {
        // 3x5, 2x2 windows: one row of 2 windows, the last row and column dropped; ties go to the first in row-major order.
        float[] x = [1, 3, 3, 0, 9,
                     3, 2, 7, 7, 9,
                     9, 9, 9, 9, 9];
        var (y, idx) = Reference.MaxPool(x, 1, 3, 5, 2);
        Assert.That(y, Is.EqualTo(new[] { 3f, 7f }));
        Assert.That(idx, Is.EqualTo(new[] { 1, 7 }));
        Assert.That(Reference.MaxPoolBackward([10f, 20f], idx, 1, 3, 5, 2), Is.EqualTo(new[] { 0f, 10, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0 }));
        // NaN wins (the first NaN), even over +infinity; a window of -infinity keeps its first element.
        float nan = float.NaN, inf = float.PositiveInfinity, ninf = float.NegativeInfinity;
        var (yn, idxn) = Reference.MaxPool([1, nan, ninf, ninf, inf, nan, ninf, ninf], 1, 2, 4, 2);
        Assert.That(idxn, Is.EqualTo(new[] { 1, 2 }));
        Assert.That(float.IsNaN(yn[0]) && float.IsNegativeInfinity(yn[1]), $"{yn[0]}, {yn[1]}");
        // Second plane, 3x3 windows: the index is inside its own plane.
        var (y3, idx3) = Reference.MaxPool([.. new float[9], 0, 0, 0, 0, 5, 0, 0, 5, 0], 2, 3, 3, 3);
        Assert.That(y3, Is.EqualTo(new[] { 0f, 5f }));
        Assert.That(idx3, Is.EqualTo(new[] { 0, 4 }));
    }

    /// <summary>The references agree with each other and with the self-test's: backward is the adjoint of forward
    /// (&lt;conv(x), dy&gt; = &lt;x, dx&gt; = &lt;w, dW&gt;), im2col + matmul is the conv, col2im is im2col's transpose.</summary>
    [TestCase(1, 1, 1, 1, 1, 1, 0)]
    [TestCase(2, 3, 5, 7, 4, 3, 1)]
    [TestCase(3, 2, 7, 4, 3, 5, 2)]
    [TestCase(1, 5, 6, 6, 2, 5, 0)]
    [TestCase(2, 2, 4, 3, 3, 3, 2)]
    public void Reference_Conv_IsConsistent(int rows, int c, int h, int w, int f, int k, int p)
    {
        var s = new ConvShape(c, h, w, f, k, p);
        var r = new Random(rows + 10 * c + 100 * h + 1000 * k + 10000 * p);
        float[] x = Reference.RandomFloats(r, rows * c * h * w), wt = Reference.RandomFloats(r, f * s.ColRows);
        float[] dy = Reference.RandomFloats(r, rows * f * s.OutH * s.OutW);
        static double Dot(float[] a, float[] b) => a.Zip(b, (u, v) => (double)u * v).Sum();
        float[] y = Reference.ConvForward(x, wt, null, s, rows);
        double viaY = Dot(y, dy);
        Assert.That(Dot(x, Reference.ConvBackwardInput(dy, wt, s, rows)), Is.EqualTo(viaY).Within(1e-4 * (1 + Math.Abs(viaY))), "<x, dx>");
        Assert.That(Dot(wt, Reference.ConvBackwardWeight(dy, x, s, rows)), Is.EqualTo(viaY).Within(1e-4 * (1 + Math.Abs(viaY))), "<w, dW>");
        Assert.That(Reference.ConvBackwardBias(dy, s, rows).Sum(v => (double)v), Is.EqualTo(dy.Sum(v => (double)v)).Within(1e-4));

        var selfTest = new ReferenceOps();
        Check.Close(y, selfTest.Conv(x, wt, s, rows), 1e-6, 1e-6, "forward vs the self-test's reference");
        var (sdx, sdw) = selfTest.ConvBackward(x, wt, dy, s, rows);
        Check.Close(Reference.ConvBackwardInput(dy, wt, s, rows), sdx, 1e-6, 1e-6, "dx vs the self-test's reference");
        Check.Close(Reference.ConvBackwardWeight(dy, x, s, rows), sdw, 1e-6, 1e-6, "dW vs the self-test's reference");

        int inImage = c * h * w, outImage = f * s.ColCols;
        for (int b = 0; b < rows; b++)
        {
            float[] image = x[(b * inImage)..((b + 1) * inImage)];
            float[] cols = Reference.Im2col(image, s);
            Check.Close(Reference.Matmul(wt, cols, f, s.ColCols, s.ColRows, s.ColRows, 1, s.ColCols, 1), y[(b * outImage)..((b + 1) * outImage)], 1e-6, 1e-6, "W · im2col(x_b)");
            float[] dcols = Reference.RandomFloats(r, cols.Length);
            double viaCols = Dot(cols, dcols);
            Assert.That(Dot(image, Reference.Col2im(dcols, s)), Is.EqualTo(viaCols).Within(1e-4 * (1 + Math.Abs(viaCols))), "<image, col2im(dcols)>");
        }
    }

    // ---------------------------------------------------------------- conv on both backends, both versions

    static readonly (int H, int W)[] Images = [(1, 1), (5, 7), (7, 7)];

    /// <summary>Every backend x batch 1, 7, 2 x channels 1, 3, 5 x filters 1, 4, 7; each case runs every image (1x1, 5x7, 7x7),
    /// kernel (1, 3, 5) and padding (0, 1, 2) whose output is not empty.</summary>
    static IEnumerable<TestCaseData> ConvCases()
    {
        foreach (string backend in BothBackends)
            foreach (int rows in new[] { 1, 7, 2 })
                foreach (int c in new[] { 1, 3, 5 })
                    foreach (int f in new[] { 1, 4, 7 })
                        yield return new TestCaseData(backend, rows, c, f);
    }

    [TestCaseSource(nameof(ConvCases))]
    public void Conv_DirectAndIm2col_MatchReference(string backend, int rows, int channels, int filters)
    {
        var failures = new List<string>();
        int shapes = 0;
        foreach (var (h, w) in Images)
            foreach (int k in new[] { 1, 3, 5 })
                foreach (int p in new[] { 0, 1, 2 })
                {
                    var s = new ConvShape(channels, h, w, filters, k, p);
                    if (s.OutH < 1 || s.OutW < 1) continue;
                    failures.AddRange(CheckConv(backend, s, rows));
                    shapes++;
                }
        Assert.That(shapes, Is.EqualTo(24), "27 image/kernel/padding combinations less the 3 whose output is empty (1x1 with k 3 p 0, k 5 p 0 and p 1)");
        NoFailures(failures);
    }

    /// <summary>28x28 and other larger images: on the host these are big enough to be split between the cores.</summary>
    [TestCase("ilgpu", 2, 3, 28, 28, 4, 5, 2)]
    [TestCase("ilgpu", 7, 1, 28, 28, 7, 3, 1)]
    [TestCase("ilgpu", 1, 5, 28, 28, 1, 1, 0)]
    [TestCase("ilgpu", 2, 3, 13, 28, 7, 3, 0)]
    [TestCase("host", 2, 3, 28, 28, 4, 5, 2)]
    [TestCase("host", 7, 1, 28, 28, 7, 3, 1)]
    [TestCase("host", 1, 5, 28, 28, 1, 1, 0)]
    [TestCase("host", 2, 3, 13, 28, 7, 3, 0)]
    [TestCase("host", 7, 5, 28, 28, 7, 5, 2)]
    [TestCase("host", 7, 5, 28, 27, 7, 3, 0)]
    [TestCase("host", 3, 7, 9, 30, 5, 5, 1)]
    [TestCase("host", 3, 2, 6, 40, 3, 3, 1)]      // 40 output columns
    [TestCase("host", 2, 230, 3, 5, 3, 3, 1)]     // C k k = 2070
    [TestCase("host", 2, 2, 4, 5, 520, 3, 1)]     // F = 520
    [TestCase("ilgpu", 2, 2, 4, 5, 520, 3, 1)]
    [TestCase("ilgpu-wide", 2, 3, 5, 7, 4, 3, 1)]
    [TestCase("ilgpu-wide", 1, 1, 1, 1, 1, 1, 0)]
    public void Conv_LargerImages_MatchReference(string backend, int rows, int c, int h, int w, int f, int k, int p) =>
        NoFailures(CheckConv(backend, new ConvShape(c, h, w, f, k, p), rows));

    /// <summary>
    /// The host's own im2col conv, the path Conv2d runs (one call per layer, split between the cores): forward with 32-pixel
    /// panels (across output rows), backward with dW from im2row blocks (C k k &gt;= 64) or dot products (fewer rows), dcols
    /// and col2im, each host matmul version, with and without accumulate, against the reference. Host SIMD and host
    /// AVX-512 must give the same bits for y and dx everywhere, and for dW where it comes from im2row blocks.
    /// </summary>
    [TestCase(3, 8, 9, 11, 13, 3, 1, true)]      // C k k = 72: im2row; 99 pixels = 3 panels + 3; F = 13 = 8 + 4 + 1 rows
    [TestCase(2, 32, 14, 14, 64, 3, 1, true)]    // the conv net's conv2
    [TestCase(2, 1, 28, 28, 32, 3, 1, false)]    // the conv net's conv1 (no dx: first layer): dot products
    [TestCase(2, 7, 6, 5, 5, 5, 2, true)]        // C k k = 175 split in whole channels (3 + 4), 30 pixels: one short panel
    [TestCase(2, 3, 5, 40, 16, 5, 0, false)]     // C k k = 75 split mid-channel on 2 cores (no dx), a single output row
    [TestCase(2, 3, 4, 4, 3, 3, 1, true)]        // C k k = 27: dot products, with dx
    [TestCase(2, 120, 3, 5, 3, 3, 1, true)]      // C k k = 1080 > 1024: the forward's plain path
    [TestCase(2, 2, 4, 5, 520, 3, 1, true)]      // F = 520 > 512: the plain path too
    public void HostIm2colConv_MatchesReference_AndBothVersionsAgree(int rows, int c, int h, int w, int f, int k, int p, bool inputGradient)
    {
        var be = new HostBackend();
        var acc = Shared.Cpu.Accelerator;
        var s = new ConvShape(c, h, w, f, k, p);
        var r = new Random(c * 1000 + f);
        int inImage = s.C * s.H * s.W, outImage = s.F * s.ColCols;
        float[] x = Reference.RandomFloats(r, rows * inImage), wt = Reference.RandomFloats(r, s.F * s.ColRows);
        float[] dy = Reference.RandomFloats(r, rows * outImage), held = Reference.RandomFloats(r, s.F * s.ColRows);
        float[] refY = Reference.ConvForward(x, wt, new float[s.F], s, rows);
        float[] refDx = Reference.ConvBackwardInput(dy, wt, s, rows);
        float[] refDw = Reference.ConvBackwardWeight(dy, x, s, rows);
        using var bx = acc.Allocate1D(x);
        using var bw = acc.Allocate1D(wt);
        using var bdy = acc.Allocate1D(dy);
        var failures = new List<string>();
        void Add(string? failure) { if (failure is not null) failures.Add(failure); }
        var results = new List<float[][]>();
        foreach (var version in be.MatmulVersions)
        {
            string what = $"host {MatmulVersions.Label(version)} B={rows} {s}";
            using var y = Garbage(acc, rows * outImage);
            using var dx = Garbage(acc, rows * inImage);
            using var dw = Garbage(acc, wt.Length);
            using var dwAdded = acc.Allocate1D(held);
            using var cols = Garbage(acc, (long)s.ColRows * s.ColCols);
            be.Im2colForward(version, bx.View, bw.View, cols.View, y.View, s, rows);
            be.Im2colBackward(version, bx.View, bdy.View, bw.View, dw.View, cols.View, inputGradient ? dx.View : default, inputGradient, s, rows);
            be.Im2colBackward(version, bx.View, bdy.View, bw.View, dwAdded.View, cols.View, default, inputGradient: false, s, rows, accumulate: true);
            float[][] got = [y.GetAsArray1D(), dx.GetAsArray1D(), dw.GetAsArray1D(), dwAdded.GetAsArray1D()];
            results.Add(got);
            Add(Mismatch(got[0], refY, Tol(s.ColRows), 1e-5, what + ": forward"));
            if (inputGradient) Add(Mismatch(got[1], refDx, Tol((long)s.F * k * k), 1e-5, what + ": dx"));
            else if (!got[1].All(float.IsNaN)) failures.Add(what + ": wrote dx without inputGradient");
            Add(Mismatch(got[2], refDw, Tol((long)rows * s.ColCols), 1e-5, what + ": dW"));
            Add(Mismatch(got[3], refDw.Select((g, i) => held[i] + g).ToArray(), Tol((long)rows * s.ColCols), 1e-5, what + ": dW +="));
        }
        if (results.Count == 2)
            foreach (int t in s.ColRows >= 64 ? new[] { 0, 1, 2, 3 } : new[] { 0, 1 })
                if (!results[0][t].AsSpan().SequenceEqual(results[1][t])) failures.Add($"B={rows} {s}: host AVX-512 output {t} differs from host SIMD's");
        NoFailures(failures);
    }

    /// <summary>One shape on one backend: direct, and im2col with each matmul version, forward (with bias), dx, dW and db, plus
    /// im2col and col2im on their own; returns what did not match.</summary>
    static List<string> CheckConv(string backend, ConvShape s, int rows)
    {
        var (be, acc) = Get(backend);
        return CheckConv(backend, be, acc, s, rows);
    }

    static List<string> CheckConv(string backend, IBackend be, Accelerator acc, ConvShape s, int rows)
    {
        var r = new Random(((((s.C * 31 + s.H) * 31 + s.W) * 31 + s.F) * 7 + s.KernelSize) * 5 + s.Pad + 1000 * rows);   // the same data every run
        int inImage = s.C * s.H * s.W, outImage = s.F * s.OutH * s.OutW;
        float[] x = Reference.RandomFloats(r, rows * inImage), w = Reference.RandomFloats(r, s.F * s.ColRows);
        float[] bias = Reference.RandomFloats(r, s.F), dy = Reference.RandomFloats(r, rows * outImage);
        float[] refY = Reference.ConvForward(x, w, bias, s, rows);
        float[] refDx = Reference.ConvBackwardInput(dy, w, s, rows);
        float[] refDw = Reference.ConvBackwardWeight(dy, x, s, rows);
        float[] refDb = Reference.ConvBackwardBias(dy, s, rows);

        var failures = new List<string>();
        void Add(string? failure) { if (failure is not null) failures.Add(failure); }
        var versions = new List<MatmulVersion?> { null };
        versions.AddRange(be.MatmulVersions.Select(v => (MatmulVersion?)v));
        var byVersion = new Dictionary<MatmulVersion, float[][]>();
        foreach (var matmul in versions)
        {
            string what = $"{backend} {(matmul is { } v ? "im2col/" + MatmulVersions.Label(v) : "direct")} B={rows} {s}";
            var (y, dx, dw, db) = RunConv(be, acc, matmul, s, rows, x, w, bias, dy);
            if (matmul is { } mv) byVersion[mv] = [y, dx, dw, db];
            Add(Mismatch(y, refY, Tol(s.ColRows + 1), 1e-5, what + ": forward"));
            Add(Mismatch(dx, refDx, Tol((long)s.F * s.KernelSize * s.KernelSize), 1e-5, what + ": dx"));
            Add(Mismatch(dw, refDw, Tol((long)rows * s.ColCols), 1e-5, what + ": dW"));
            Add(Mismatch(db, refDb, Tol((long)rows * s.ColCols), 1e-5, what + ": db"));
        }
        // host AVX-512 computes the same chains of multiply-adds as host SIMD for y, dx and db: the very same bits. dW here
        // comes from IBackend.Matmul in the dot-product layout (dy_b · cols^T), which host AVX-512 sums in another order
        // (one chain over packed columns, or 16 lanes for rows over 1024), so its last bits may differ (it is checked
        // against the reference above). The host's own Im2colBackward is tested in
        // HostIm2colConv_MatchesReference_AndBothVersionsAgree.
        if (byVersion.TryGetValue(MatmulVersion.HostSimd, out var simd) && byVersion.TryGetValue(MatmulVersion.HostAvx512, out var wide))
            foreach (int t in new[] { 0, 1, 3 })
                if (!simd[t].AsSpan().SequenceEqual(wide[t])) failures.Add($"{backend} B={rows} {s}: host AVX-512 output {t} differs from host SIMD's");

        // im2col of the last image (a view at an offset) and col2im of random columns into it, alone.
        using var dX = acc.Allocate1D(x);
        using var cols = Garbage(acc, (long)s.ColRows * s.ColCols);
        using var dimage = Garbage(acc, rows * inImage);
        ArrayView<float> lastImage = ((ArrayView<float>)dX.View).SubView((rows - 1) * inImage, inImage);
        be.Im2col(lastImage, cols.View, s);
        be.Synchronize();
        Add(Mismatch(cols.GetAsArray1D(), Reference.Im2col(x[((rows - 1) * inImage)..], s), 0, 0, $"{backend} im2col {s}"));
        float[] dcols = Reference.RandomFloats(r, s.ColRows * s.ColCols);
        cols.CopyFromCPU(dcols);
        be.Col2im(cols.View, ((ArrayView<float>)dimage.View).SubView((rows - 1) * inImage, inImage), s);
        be.Synchronize();
        float[] gotImage = dimage.GetAsArray1D();
        Add(Mismatch(gotImage[((rows - 1) * inImage)..], Reference.Col2im(dcols, s), Tol(s.KernelSize * s.KernelSize), 1e-5, $"{backend} col2im {s}"));
        if (rows > 1 && !gotImage[..((rows - 1) * inImage)].All(float.IsNaN))
            failures.Add($"{backend} col2im {s}: wrote outside its image");
        return failures;
    }

    /// <summary>Forward (conv + channel bias) and backward (db, dW, dx) of one conv on a backend, into garbage-filled buffers;
    /// matmul null runs the direct kernels, else im2col per image as <see cref="Conv2d"/> does with that matmul version.</summary>
    static (float[] Y, float[] Dx, float[] Dw, float[] Db) RunConv(IBackend be, Accelerator acc, MatmulVersion? matmul, ConvShape s, int rows,
        float[] x, float[] w, float[] bias, float[] dy)
    {
        int inImage = s.C * s.H * s.W, outImage = s.F * s.OutH * s.OutW;
        using var bx = acc.Allocate1D(x);
        using var bw = acc.Allocate1D(w);
        using var bb = acc.Allocate1D(bias);
        using var bdy = acc.Allocate1D(dy);
        using var by = Garbage(acc, rows * outImage);
        using var bgx = Garbage(acc, rows * inImage);
        using var bgw = Garbage(acc, w.Length);
        using var bgb = Garbage(acc, s.F);
        using var bcols = Garbage(acc, (long)s.ColRows * s.ColCols);
        ArrayView<float> X = bx.View, W = bw.View, Bias = bb.View, Dy = bdy.View, Y = by.View, Gx = bgx.View, Gw = bgw.View, Gb = bgb.View, cols = bcols.View;

        if (matmul is not { } mm)
            be.ConvDirectForward(X, W, Y, s, rows);
        else
            for (int b = 0; b < rows; b++)
            {
                be.Im2col(X.SubView(b * inImage, inImage), cols, s);
                be.Matmul(mm, W, cols, Y.SubView(b * outImage, outImage), s.F, s.ColCols, s.ColRows, s.ColRows, 1, s.ColCols, 1);
            }
        be.ChannelBias(Y, Bias, rows, s.F, s.ColCols);

        be.ChannelBiasBackward(Dy, Gb, rows, s.F, s.ColCols);
        if (matmul is not { } mb)
        {
            be.ConvDirectBackwardWeight(Dy, X, Gw, s, rows);
            be.ConvDirectBackwardInput(Dy, W, Gx, s, rows);
        }
        else
            for (int b = 0; b < rows; b++)
            {
                var dyb = Dy.SubView(b * outImage, outImage);
                be.Im2col(X.SubView(b * inImage, inImage), cols, s);
                be.Matmul(mb, dyb, cols, Gw, s.F, s.ColRows, s.ColCols, s.ColCols, 1, 1, s.ColCols, accumulate: b > 0);
                be.Matmul(mb, W, dyb, cols, s.ColRows, s.ColCols, s.F, 1, s.ColRows, s.ColCols, 1);
                be.Col2im(cols, Gx.SubView(b * inImage, inImage), s);
            }
        be.Synchronize();
        return (by.GetAsArray1D(), bgx.GetAsArray1D(), bgw.GetAsArray1D(), bgb.GetAsArray1D());
    }

    /// <summary>
    /// Gradient accumulation (--accumulate): with accumulate, every parameter-gradient operation adds its sum to what the
    /// buffer holds: the conv weight (direct and im2col, every host matmul and ILGPU version's default), the conv bias
    /// and the linear bias, against the reference plus what was there.
    /// </summary>
    [Test]
    public void ParameterGradients_WithAccumulate_AddToWhatTheBufferHolds([Values("ilgpu", "host")] string backend, [Values(1, 3)] int rows)
    {
        var (be, acc) = Get(backend);
        var s = new ConvShape(3, 7, 5, 4, 3, 1);
        var r = new Random(rows * 31);
        float[] x = Reference.RandomFloats(r, rows * s.C * s.H * s.W), dy = Reference.RandomFloats(r, rows * s.F * s.ColCols);
        float[] w = Reference.RandomFloats(r, s.F * s.ColRows), held = Reference.RandomFloats(r, s.F * s.ColRows), heldBias = Reference.RandomFloats(r, s.F);
        using var bx = acc.Allocate1D(x);
        using var bdy = acc.Allocate1D(dy);
        using var bw = acc.Allocate1D(w);
        using var bcols = Garbage(acc, (long)s.ColRows * s.ColCols);
        float[] expectW = Reference.ConvBackwardWeight(dy, x, s, rows).Select((g, i) => held[i] + g).ToArray();
        float[] expectB = Reference.ConvBackwardBias(dy, s, rows).Select((g, i) => heldBias[i] + g).ToArray();

        using (var gw = acc.Allocate1D(held))
        {
            be.ConvDirectBackwardWeight(bdy.View, bx.View, gw.View, s, rows, accumulate: true);
            be.Synchronize();
            Check.Close(gw.GetAsArray1D(), expectW, Tol(rows * s.ColCols), 1e-5, "direct dW +=");
        }
        using (var gw = acc.Allocate1D(held))
        {
            be.Im2colBackward(be.DefaultMatmul, bx.View, bdy.View, bw.View, gw.View, bcols.View, default, inputGradient: false, s, rows, accumulate: true);
            be.Synchronize();
            Check.Close(gw.GetAsArray1D(), expectW, Tol(rows * s.ColCols), 1e-5, "im2col dW +=");
        }
        using (var gb = acc.Allocate1D(heldBias))
        {
            be.ChannelBiasBackward(bdy.View, gb.View, rows, s.F, s.ColCols, accumulate: true);
            be.Synchronize();
            Check.Close(gb.GetAsArray1D(), expectB, Tol(rows * s.ColCols), 1e-5, "conv dbias +=");
        }
        // The linear bias on (B, N) = (rows * 4, 35) values of dy: N = 35 has a vector part and a tail on the host.
        using (var gb = acc.Allocate1D(held[..35]))
        {
            be.BiasBackward(bdy.View, gb.View, rows * 4, 35, accumulate: true);
            be.Synchronize();
            float[] expect = Reference.BiasBackward(dy[..(rows * 4 * 35)], rows * 4, 35).Select((g, i) => held[i] + g).ToArray();
            Check.Close(gb.GetAsArray1D(), expect, Tol(rows * 4), 1e-5, "linear dbias +=");
        }
    }

    /// <summary>
    /// The per-channel bias (with and without the ReLU after it) and its gradient alone, on planes of 1, 35 and 784 values
    /// (7 x 13 x 784 is enough work for the host to use every core).
    /// </summary>
    [Test]
    public void ChannelBias_AndItsGradient_MatchReference([Values("ilgpu", "host")] string backend, [Values(1, 7)] int rows,
        [Values(1, 4, 7, 13)] int channels, [Values(1, 35, 784)] int plane, [Values] bool relu)
    {
        var (be, acc) = Get(backend);
        var r = new Random(rows * 1000 + channels * 10 + plane);
        float[] y = Reference.RandomFloats(r, rows * channels * plane), bias = Reference.RandomFloats(r, channels);
        using var by = acc.Allocate1D(y);
        using var bb = acc.Allocate1D(bias);
        using var gb = Garbage(acc, channels);
        be.ChannelBias(by.View, bb.View, rows, channels, plane, relu);
        be.Synchronize();
        float[] got = by.GetAsArray1D();
        // As the reference sees it: a 1x1 conv (zero weights) from a (B, 1, plane, 1) zero image gives bias[f] all over (B, F, plane, 1).
        var s = new ConvShape(1, plane, 1, channels, 1, 0);
        float[] biasEverywhere = Reference.ConvForward(new float[rows * plane], new float[channels], bias, s, rows);
        float[] expected = biasEverywhere.Select((b, i) => y[i] + b).ToArray();
        if (relu) expected = expected.Select(v => Math.Max(0f, v)).ToArray();
        Check.Close(got, expected, 0, 0, relu ? "max(y + bias, 0)" : "y + bias");
        if (relu && got.Length >= 35) Assert.That(got.Count(v => v == 0), Is.GreaterThan(0).And.LessThan(got.Length), "some values cut at 0, not all");
        be.ChannelBiasBackward(by.View, gb.View, rows, channels, plane);
        be.Synchronize();
        Check.Close(gb.GetAsArray1D(), Reference.ConvBackwardBias(got, s, rows), Tol(rows * plane), 1e-5, "dbias");
    }

    // ---------------------------------------------------------------- matmul with accumulate (c += a·b), every version

    /// <summary>(name, aRow, aCol, bRow, bCol) from (m, n, k): the three layouts of Linear and of im2col, and both operands transposed.</summary>
    static readonly (string Name, Func<int, int, int, (int, int, int, int)> Strides)[] Layouts =
    [
        ("A·B", (m, n, k) => (k, 1, n, 1)),         // y_b = W · cols;  dx = dy · W
        ("A·B^T", (m, n, k) => (k, 1, 1, k)),       // dW = dy_b · cols^T;  y = x · W^T
        ("A^T·B", (m, n, k) => (1, m, n, 1)),       // cols = W^T · dy_b;  dW = dy^T · x
        ("A^T·B^T", (m, n, k) => (1, m, 1, k)),     // neither operand contiguous along K (the host's plain loop)
    ];

    static readonly (int M, int N, int K)[] AccumulateShapes =
        [(1, 1, 1), (1, 7, 3), (7, 1, 5), (5, 17, 9), (16, 16, 16), (17, 33, 8), (4, 20, 100), (63, 65, 7), (65, 7, 130), (9, 784, 25)];

    /// <summary>On the 256-thread CPU accelerator every barrier of the tiled kernel wakes 256 OS threads: fewer tiles there.</summary>
    static readonly (int M, int N, int K)[] WideAccumulateShapes = [(1, 1, 1), (7, 1, 5), (5, 17, 9), (17, 33, 8), (63, 65, 7), (20, 7, 40)];

    static IEnumerable<TestCaseData> AccumulateCases()
    {
        foreach (string backend in new[] { "ilgpu", "host", "ilgpu-wide" })
            foreach (var layout in Layouts)
                yield return new TestCaseData(backend, layout.Name);
    }

    [TestCaseSource(nameof(AccumulateCases))]
    public void MatmulAccumulate_EveryVersion_AddsTheProductToC(string backend, string layout)
    {
        var (be, acc) = Get(backend);
        Assert.That(be.MatmulVersions, Is.Not.Empty);
        if (backend == "ilgpu-wide") Assert.That(be.MatmulVersions, Does.Contain(MatmulVersion.Tiled), "the 256-thread CPU accelerator runs the tiled kernel");
        NoFailures(CheckAccumulate(backend, be, acc, layout, backend == "ilgpu-wide" ? WideAccumulateShapes : AccumulateShapes));
    }

    /// <summary>c0 + a·b, then twice more (c0 + 3 a·b: c must be read each time), for every matmul version of the backend.</summary>
    static List<string> CheckAccumulate(string backend, IBackend be, Accelerator acc, string layout, (int M, int N, int K)[] shapes)
    {
        var strides = Layouts.Single(l => l.Name == layout).Strides;
        var failures = new List<string>();
        foreach (var version in be.MatmulVersions)
            foreach (var (m, n, k) in shapes)
            {
                var (aRow, aCol, bRow, bCol) = strides(m, n, k);
                var r = new Random(m * 7919 + n * 31 + k);
                float[] a = Reference.RandomFloats(r, m * k), b = Reference.RandomFloats(r, k * n), c0 = Reference.RandomFloats(r, m * n, 4f);
                using var ba = acc.Allocate1D(a);
                using var bb = acc.Allocate1D(b);
                using var bc = acc.Allocate1D(c0);
                be.Matmul(version, ba.View, bb.View, bc.View, m, n, k, aRow, aCol, bRow, bCol, accumulate: true);
                be.Synchronize();
                float[] product = Reference.Matmul(a, b, m, n, k, aRow, aCol, bRow, bCol);
                float[] expected = c0.Select((c, i) => (float)(c + (double)product[i])).ToArray();
                string what = $"{backend} {MatmulVersions.Label(version)} {layout} m={m} n={n} k={k}";
                if (Mismatch(bc.GetAsArray1D(), expected, Tol(k + 1), 1e-5, what + ": c += a·b") is { } f1) failures.Add(f1);
                be.Matmul(version, ba.View, bb.View, bc.View, m, n, k, aRow, aCol, bRow, bCol, accumulate: true);
                be.Matmul(version, ba.View, bb.View, bc.View, m, n, k, aRow, aCol, bRow, bCol, accumulate: true);
                be.Synchronize();
                float[] thrice = c0.Select((c, i) => (float)(c + 3.0 * product[i])).ToArray();
                if (Mismatch(bc.GetAsArray1D(), thrice, 3 * Tol(k + 1) + 1e-5, 1e-5, what + ": three times") is { } f3) failures.Add(f3);
            }
        return failures;
    }

    // ---------------------------------------------------------------- the checks above can fail

    /// <summary>
    /// A backend that forwards every call to a real one except for one sabotaged operation: skipped (its output keeps the
    /// garbage), or nudged (the first element of its output moved by 1e-3 after the real call), or, for Matmul, run with
    /// accumulate ignored. Made with DispatchProxy so every other operation stays the real one.
    /// </summary>
    public class SabotagedBackend : System.Reflection.DispatchProxy
    {
        public IBackend Inner { get; set; } = null!;
        public string Method { get; set; } = "";
        public string How { get; set; } = "";

        /// <summary>Which argument each sabotaged operation writes.</summary>
        static readonly Dictionary<string, int> OutputArgument = new()
        {
            ["ConvDirectForward"] = 2, ["ConvDirectBackwardInput"] = 2, ["ConvDirectBackwardWeight"] = 2, ["Im2col"] = 1, ["Col2im"] = 1,
            ["ChannelBias"] = 0, ["ChannelBiasBackward"] = 1, ["Matmul"] = 3,
        };

        protected override unsafe object? Invoke(System.Reflection.MethodInfo? method, object?[]? args)
        {
            if (method!.Name != Method) return method.Invoke(Inner, args);
            if (How == "skip") return null;
            if (How == "no-accumulate") args![^1] = false;
            object? result = method.Invoke(Inner, args);
            if (How == "nudge")
            {
                var view = (ArrayView<float>)args![OutputArgument[Method]]!;
                Inner.Synchronize();
                *(float*)Address(view) += 1e-3f;
            }
            return result;
        }

        /// <summary>The host address of a view into a CPU accelerator's buffer (as HostBackend finds it).</summary>
        static unsafe byte* Address<TView>(TView v) where TView : IContiguousArrayView => (byte*)v.Buffer.NativePtr + v.IndexInBytes;

        public static IBackend Create(IBackend inner, string method, string how)
        {
            var proxy = System.Reflection.DispatchProxy.Create<IBackend, SabotagedBackend>();
            var s = (SabotagedBackend)(object)proxy;
            (s.Inner, s.Method, s.How) = (inner, method, how);
            return proxy;
        }
    }

    static IEnumerable<TestCaseData> SabotageCases()
    {
        foreach (string backend in BothBackends)
        {
            foreach (string method in new[] { "ConvDirectForward", "ConvDirectBackwardInput", "ConvDirectBackwardWeight", "Im2col", "Col2im", "ChannelBias", "ChannelBiasBackward", "Matmul" })
            {
                yield return new TestCaseData(backend, method, "skip");
                yield return new TestCaseData(backend, method, "nudge");
            }
            yield return new TestCaseData(backend, "Matmul", "no-accumulate");
        }
    }

    [TestCaseSource(nameof(SabotageCases))]
    public void ConvAndAccumulateChecks_CatchASabotagedOperation(string backend, string method, string how)
    {
        var (real, acc) = Get(backend);
        var s = new ConvShape(3, 5, 7, 4, 3, 1);
        Assert.That(CheckConv(backend, real, acc, s, 2), Is.Empty, "the real backend passes");
        var sabotaged = SabotagedBackend.Create(real, method, how);
        Assert.That(CheckConv(backend, sabotaged, acc, s, 2), Is.Not.Empty, $"{method} {how}: the conv check must fail");
        if (method == "Matmul")
            Assert.That(CheckAccumulate(backend, sabotaged, acc, "A·B", AccumulateShapes), Is.Not.Empty, $"{how}: the accumulate check must fail");
    }

    // ---------------------------------------------------------------- max-pool

    public enum PoolInput { Random, FewValues, Constant, NaNs }

    static IEnumerable<TestCaseData> PoolCases()
    {
        (int Planes, int H, int W, int Size)[] shapes =
            [(1, 2, 2, 2), (3, 7, 7, 2), (7, 7, 7, 3), (2, 5, 9, 3), (5, 28, 28, 2), (4, 6, 4, 2), (1, 3, 3, 3), (7, 9, 8, 3), (2, 3, 8, 2), (64, 14, 14, 2), (3, 6, 40, 2), (2, 5, 35, 2), (96, 28, 28, 2), (90, 27, 29, 3)];   // 40 and 35 wide: rows of 8 + 8 + 4 and 8 + 8 + 1 windows; the last two: enough work for the host to use every core
        foreach (string backend in BothBackends)
            foreach (var (planes, h, w, size) in shapes)
                foreach (PoolInput input in Enum.GetValues<PoolInput>())
                    yield return new TestCaseData(backend, planes, h, w, size, input);
    }

    static float[] PoolData(PoolInput input, int count, Random r) => input switch
    {
        PoolInput.Random => Reference.RandomFloats(r, count),
        PoolInput.FewValues => Reference.RandomFloats(r, count).Select(v => MathF.Round(v * 2)).ToArray(),   // -2..2: ties everywhere
        PoolInput.Constant => Enumerable.Repeat(0.25f, count).ToArray(),
        // A fifth NaN, some infinities and signed zeros among the values: windows with no, one and several NaN, first or last.
        PoolInput.NaNs => Reference.RandomFloats(r, count).Select(v => r.Next(10) switch
        {
            0 or 1 => float.NaN,
            2 => float.PositiveInfinity,
            3 => float.NegativeInfinity,
            4 => -0f,
            _ => v,
        }).ToArray(),
        _ => throw new ArgumentOutOfRangeException(nameof(input)),
    };

    [TestCaseSource(nameof(PoolCases))]
    public void MaxPool_ForwardIndicesAndBackward_MatchReference(string backend, int planes, int h, int w, int size, PoolInput input)
    {
        var (be, acc) = Get(backend);
        var r = new Random(planes * 10007 + h * 101 + w * 11 + size + (int)input * 7);
        int oh = h / size, ow = w / size, outCount = planes * oh * ow;
        float[] x = PoolData(input, planes * h * w, r);
        if (input == PoolInput.NaNs) x[1] = float.NaN;   // at least one window with a NaN that is not its first element
        float[] dy = Reference.RandomFloats(r, outCount);
        var (refY, refIdx) = Reference.MaxPool(x, planes, h, w, size);

        using var bx = acc.Allocate1D(x);
        using var by = Garbage(acc, outCount);
        using var bidx = acc.Allocate1D<int>(outCount);
        bidx.MemSet(0xFF);   // -1 everywhere
        be.MaxPoolForward(bx.View, by.View, bidx.View, planes, h, w, size);
        be.Synchronize();
        int[] idx = bidx.GetAsArray1D();
        // NUnit counts NaN as equal to NaN, so this is exact equality, NaN included.
        Assert.That(idx, Is.EqualTo(refIdx), "indices");
        Assert.That(by.GetAsArray1D(), Is.EqualTo(refY), "maxima");
        if (input == PoolInput.Constant)
            Assert.That(idx, Is.EqualTo(Enumerable.Range(0, outCount).Select(o => o % (oh * ow) / ow * size * w + o % ow * size)),
                "a constant window's index is its first (top left) element");
        if (input == PoolInput.NaNs)
            Assert.That(Enumerable.Range(0, outCount).Count(o => float.IsNaN(refY[o])), Is.GreaterThan(0), "some windows hold a NaN");

        // Backward, from the reference's indices, into garbage: every element not a window's maximum must be written as 0.
        using var bdy = acc.Allocate1D(dy);
        using var bri = acc.Allocate1D(refIdx);
        using var bdx = Garbage(acc, planes * h * w);
        be.MaxPoolBackward(bdy.View, bri.View, bdx.View, planes, h, w, size);
        be.Synchronize();
        float[] dx = bdx.GetAsArray1D();
        Assert.That(dx, Is.EqualTo(Reference.MaxPoolBackward(dy, refIdx, planes, h, w, size)), "dx");

        // The same with the backward of a ReLU before the pool (x taken as that ReLU's output): dx also 0 where x is not > 0.
        using var bdxRelu = Garbage(acc, planes * h * w);
        be.ReluMaxPoolBackward(bdy.View, bri.View, bx.View, bdxRelu.View, planes, h, w, size);
        be.Synchronize();
        Assert.That(bdxRelu.GetAsArray1D(), Is.EqualTo(Reference.ReluBackward(Reference.MaxPoolBackward(dy, refIdx, planes, h, w, size), x)), "relu + pool dx");
        Assert.That(dx.Count(v => v != 0), Is.LessThanOrEqualTo(outCount));
        for (int p = 0; p < planes; p++)
            for (int iy = 0; iy < h; iy++)
                for (int ix = 0; ix < w; ix++)
                    if (iy >= oh * size || ix >= ow * size)
                        Assert.That(dx[(p * h + iy) * w + ix], Is.Zero, $"dropped row/column ({iy}, {ix}) of plane {p}");
    }

    // ---------------------------------------------------------------- ReLU

    [Test]
    public void Relu_AndItsBackward_MatchReference([Values("ilgpu", "host")] string backend, [Values(1, 7, 8, 9, 63, 1001, 7 * 4 * 28 * 28)] int count,
        [Values] bool specials)
    {
        var (be, acc) = Get(backend);
        var r = new Random(count);
        float[] x = Reference.RandomFloats(r, count);
        if (specials)
            for (int i = 0; i < count; i += 3)
                x[i] = (i / 3 % 5) switch { 0 => float.NaN, 1 => float.PositiveInfinity, 2 => float.NegativeInfinity, 3 => -0f, _ => 0f };
        // nn.ReLU: max(x, 0), NaN stays NaN (torch.relu(nan) = nan).
        float[] expected = x.Select(v => Math.Max(v, 0f)).ToArray();
        using var bx = acc.Allocate1D(x);
        be.Relu(bx.View, count);
        be.Synchronize();
        float[] y = bx.GetAsArray1D();
        Assert.That(y, Is.EqualTo(expected), "relu");

        float[] dy = Reference.RandomFloats(r, count);
        using var by = acc.Allocate1D(expected);
        using var bdy = acc.Allocate1D(dy);
        be.ReluBackward(bdy.View, by.View, count);
        be.Synchronize();
        Assert.That(bdy.GetAsArray1D(), Is.EqualTo(Reference.ReluBackward(dy, expected)), "relu backward");
    }

    // ---------------------------------------------------------------- the whole training session

    static IEnumerable<TestCaseData> GradientCases()
    {
        foreach (string device in new[] { "cpu", "host" })
            foreach (var conv in new[] { ConvVersion.Direct, ConvVersion.Im2col })
            {
                yield return new TestCaseData(device, conv, "conv3x3:3,relu,maxpool2,conv1x1:2:p0,relu,flatten,linear:4", 6);
                // 5x5 with padding 2 on 7x7: pooling drops the last row and column.
                yield return new TestCaseData(device, conv, "conv5x5:3:p2,relu,maxpool2,conv1x1:2:p0,relu,flatten,linear:4", 7);
            }
    }

    /// <summary>
    /// As <see cref="GradientCheckTests"/> for the MLP: nudge every parameter of a small conv net by ±h, recompute the mean loss
    /// through the session's forward pass, and compare (L(w+h) - L(w-h)) / 2h with the gradient backward wrote. Parameters whose
    /// nudge moves a ReLU across its kink or a max-pool's choice of maximum are skipped (neither side's slope is measured).
    /// </summary>
    [TestCaseSource(nameof(GradientCases))]
    public void ConvNet_Backward_MatchesFiniteDifferences(string device, ConvVersion conv, string layers, int size)
    {
        const int rows = 3, classes = 4;
        var config = new TrainConfig { Layers = layers, Conv = conv, BatchSize = rows, Seed = 7, Optimizer = "sgd" };
        using var session = new TrainingSession(device == "host" ? Shared.Host : Shared.Cpu, config, FeatureShape.Image(2, size, size), classes);
        Assert.That(session.Backend, device == "host" ? Is.InstanceOf<HostBackend>() : Is.InstanceOf<IlgpuBackend>());
        var r = new Random(3);
        float[] x = Reference.RandomFloats(r, rows * 2 * size * size, 2f);
        int[] y = Enumerable.Range(0, rows).Select(_ => r.Next(classes)).ToArray();
        session.Upload(x, y, rows);

        var model = session.Model;
        session.TrainForwardBackward(rows);
        float[] analytic = model.Gradients.ToArray();
        float[] parameters = model.Parameters.ToArray();

        double Loss(float[] p)
        {
            model.Parameters.CopyFrom(p);
            session.TrainForwardBackward(rows);
            return session.Buffers.Losses.ToArray().Take(rows).Sum(v => (double)v) / rows;
        }

        // Which units are active after each ReLU and where each max-pool window's maximum is.
        string Pattern()
        {
            var sb = new StringBuilder();
            for (int i = 0; i < model.Layers.Count; i++)
            {
                var io = session.Buffers.Layers[i];
                if (model.Layers[i] is Relu) sb.Append(string.Concat(io.Output.ToArray().Select(v => v > 0 ? '1' : '0'))).Append('|');
                else if (model.Layers[i] is MaxPool2d) sb.AppendJoin(',', io.Indices!.ToArray()).Append('|');
            }
            return sb.ToString();
        }
        Loss(parameters);
        string pattern = Pattern();
        Assert.That(pattern, Does.Contain("1"), "some units are active");

        const float h = 1e-3f;
        int skipped = 0, checkedCount = 0;
        var skippedIn = model.Layers.Where(l => l.ParameterCount > 0).ToDictionary(l => l.Name, _ => 0);
        var failures = new List<string>();
        for (int i = 0; i < parameters.Length; i++)
        {
            var plus = (float[])parameters.Clone();
            var minus = (float[])parameters.Clone();
            plus[i] += h;
            minus[i] -= h;
            double lossPlus = Loss(plus);
            bool samePattern = Pattern() == pattern;
            double lossMinus = Loss(minus);
            if (!samePattern || Pattern() != pattern)
            {
                skippedIn[LayerOf(model, i).Name]++;
                skipped++;
                continue;
            }
            double numeric = (lossPlus - lossMinus) / (2 * h);
            if (Math.Abs(analytic[i] - numeric) > 2e-3 + 2e-2 * Math.Abs(numeric))
                failures.Add($"parameter {i} of {parameters.Length} ({LayerOf(model, i).Name}): backward says {analytic[i]}, finite differences say {numeric}");
            checkedCount++;
        }
        NoFailures(failures);
        Assert.That(checkedCount + skipped, Is.EqualTo(model.ParameterCount));
        // A first-layer weight moves every output of its filter, so one near-tie in any pooling window of those planes (or one
        // output near 0 before a ReLU) skips the whole filter's weights: more skips than in the MLP's check, but most are checked.
        TestContext.Progress.WriteLine($"{device} {conv} {layers}: {checkedCount} checked, skipped " +
            string.Join(", ", skippedIn.Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.That(skipped, Is.LessThanOrEqualTo(checkedCount / 4), "only some parameters may sit at a ReLU kink or a max-pool tie");
        foreach (var layer in model.Layers.Where(l => l.ParameterCount > 0))
            Assert.That(skippedIn[layer.Name], Is.LessThanOrEqualTo(layer.ParameterCount / 2), $"at least half of {layer.Name}'s parameters are checked");
        // Every layer with parameters gets a gradient: the first conv's through the pooling, the second conv and the linear layer's.
        foreach (var layer in model.Layers.Where(l => l.ParameterCount > 0))
            Assert.That(analytic.Skip((int)layer.Offset).Take((int)layer.ParameterCount).Any(g => Math.Abs(g) > 1e-3), $"{layer.Name}'s gradient should not be all zero");
    }

    static Layer LayerOf(Model model, int parameter) => model.Layers.Last(l => l.ParameterCount > 0 && l.Offset <= parameter);

    /// <summary>
    /// --model cnn at batch 8 on the embedded data: direct and im2col give the same 20 training-step losses (float32 sums in
    /// another order, so within 1e-4), on the CPU accelerator and on the host, and the loss goes down.
    /// </summary>
    [TestCase("cpu")]
    [TestCase("host")]
    public void Cnn_DirectAndIm2col_GiveTheSameTrainingLosses(string device)
    {
        var data = DatasetLoader.LoadEmbedded(null);
        const int steps = 20;
        List<double> Losses(ConvVersion conv)
        {
            var config = new TrainConfig { Model = "cnn", Conv = conv, BatchSize = 8, Seed = 42 };
            using var session = new TrainingSession(device == "host" ? Shared.Host : Shared.Cpu, config, data.Train.Info);
            Assert.That(session.Model.ParameterCount, Is.EqualTo(421_642));
            var loader = new BatchLoader(data.Train, config.BatchSize, shuffle: true, seed: config.Seed);
            var images = new float[config.BatchSize * data.Train.Info.ImageSize];
            var labels = new int[config.BatchSize];
            var losses = new List<double>();
            for (int b = 0; b < steps; b++)
            {
                int rows = loader.Fill(b, images, labels);
                session.Upload(images, labels, rows);
                losses.Add(session.TrainStep(labels, rows).LossSum / rows);
            }
            return losses;
        }
        var direct = Losses(ConvVersion.Direct);
        var im2col = Losses(ConvVersion.Im2col);
        TestContext.Progress.WriteLine($"{device}: direct {direct[0]:0.0000} -> {direct[^1]:0.0000}, largest difference from im2col " +
            $"{direct.Zip(im2col, (a, b) => Math.Abs(a - b)).Max():0.0e0}");
        Assert.That(direct.All(double.IsFinite), string.Join(", ", direct));
        for (int i = 0; i < steps; i++)
            Assert.That(im2col[i], Is.EqualTo(direct[i]).Within(1e-4), $"step {i + 1}: direct {direct[i]}, im2col {im2col[i]}");
        Assert.That(direct.Skip(steps - 5).Average(), Is.LessThan(direct.Take(5).Average()), "the loss goes down");
    }
}
