using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>One line of the self-test table.</summary>
public sealed record SelfTestRow(string Check, string Sizes, double MaxError, string Tolerance, bool Passed, string Note = "");

/// <summary>
/// The plain C# reference the self-test compares against. Its methods are virtual so a test can hand
/// the self-test a deliberately wrong reference and see it fail.
/// </summary>
public class ReferenceOps
{
    public virtual float[] Matmul(float[] a, float[] b, int m, int n, int k, int aRow, int aCol, int bRow, int bCol) => Reference.Matmul(a, b, m, n, k, aRow, aCol, bRow, bCol);
    public virtual float[] BiasActivation(float[] y, float[] bias, int rows, int n, bool relu) => Reference.BiasActivation(y, bias, rows, n, relu);
    public virtual float[] ReluBackward(float[] dy, float[] y) => Reference.ReluBackward(dy, y);
    public virtual float[] BiasBackward(float[] dy, int rows, int n) => Reference.BiasBackward(dy, rows, n);
    public virtual (float[] Losses, float[] DLogits) SoftmaxCrossEntropy(float[] logits, int[] labels, int rows, int classes) => Reference.SoftmaxCrossEntropy(logits, labels, rows, classes);
    public virtual int[] Argmax(float[] logits, int rows, int classes) => Reference.Argmax(logits, rows, classes);
    public virtual void Adam(float[] p, float[] g, float[] m, float[] v, int t, double lr, double b1, double b2, double eps) => Reference.Adam(p, g, m, v, t, lr, b1, b2, eps);
    public virtual void Sgd(float[] p, float[] g, float[]? buf, double lr, double momentum) => Reference.Sgd(p, g, buf, lr, momentum);

    public virtual float[] Conv(float[] x, float[] weight, ConvShape s, int rows) => Reference.ConvForward(x, weight, null, s, rows);
    public virtual (float[] Dx, float[] DWeight) ConvBackward(float[] x, float[] weight, float[] dy, ConvShape s, int rows) =>
        (Reference.ConvBackwardInput(dy, weight, s, rows), Reference.ConvBackwardWeight(dy, x, s, rows));
    public virtual (float[] Y, int[] Indices) MaxPool(float[] x, int planes, int h, int w, int size) => Reference.MaxPool(x, planes, h, w, size);
}

/// <summary>
/// `scratchnet selftest`: every kernel on the chosen device against the plain C# reference, on random
/// inputs of awkward sizes (1, 7, 63, 65, 1000 and the lesson's 64 x 784 x 128), then a short training run
/// whose per-step losses must agree with the CPU accelerator's.
/// </summary>
public static class SelfTest
{
    /// <summary>Training losses on the device may differ from the CPU accelerator's by this much (float32 sums in another order).</summary>
    public const double LossTolerance = 1e-4;
    public const int TrainingSteps = 20;

    static readonly (int M, int N, int K)[] MatmulShapes = [(1, 1, 1), (7, 63, 65), (65, 7, 1000), (1000, 65, 7), (64, 128, 784)];

    public static List<SelfTestRow> Run(ComputeDevice device, ReferenceOps? reference = null, Action<SelfTestRow>? onRow = null)
    {
        reference ??= new ReferenceOps();
        var rows = new List<SelfTestRow>();
        void Add(SelfTestRow row)
        {
            rows.Add(row);
            onRow?.Invoke(row);
        }
        IBackend backend = Backends.For(device);
        var acc = device.Accelerator;
        var tracker = new MemoryTracker(acc);   // every buffer of the self-test is tracked too (category Other)
        var r = new Random(1234);

        Context? wideContext = null;
        Accelerator? wide = null;
        try
        {
            // Every version the backend has; on the ILGPU side also the tiled kernel where this accelerator's
            // groups are too small for it, run on a stand-in CPU accelerator with 256-thread groups.
            IEnumerable<MatmulVersion> versions = backend is HostBackend ? backend.MatmulVersions : MatmulVersions.Kernels;
            foreach (MatmulVersion version in versions)
            {
                IBackend mk = backend;
                Accelerator mAcc = acc;
                MemoryTracker mTracker = tracker;
                string note = "";
                if (!backend.MatmulVersions.Contains(version))
                {
                    wideContext ??= Context.Create(b => b.CPU(new CPUDevice(16, 16, 1)).Optimize(OptimizationLevel.O2));
                    wide ??= wideContext.GetCPUDevice(0).CreateCPUAccelerator(wideContext);
                    mk = IlgpuBackend.For(wide);
                    mAcc = wide;
                    mTracker = new MemoryTracker(wide);
                    note = "on a CPU accelerator with 256-thread groups, shapes up to (65, 7, 1000)";
                }
                foreach (var (layout, strides) in Layouts)
                {
                    double maxError = 0;
                    bool passed = true;
                    // 256 OS threads meeting at every barrier are slow: the stand-in runs the smaller shapes only.
                    foreach (var (m, n, k) in mAcc == acc ? MatmulShapes : MatmulShapes[..3])
                    {
                        var (aRow, aCol, bRow, bCol) = strides(m, n, k);
                        float[] a = Reference.RandomFloats(r, m * k), b = Reference.RandomFloats(r, k * n);
                        using var da = mTracker.AllocateFrom("selftest.da", a, MemoryCategory.Other);
                        using var db = mTracker.AllocateFrom("selftest.db", b, MemoryCategory.Other);
                        using var dc = mTracker.Allocate<float>("selftest.dc", [m * n], MemoryCategory.Other);
                        dc.View.MemSet(0xFF);
                        mk.Matmul(version, da.View, db.View, dc.View, m, n, k, aRow, aCol, bRow, bCol);
                        var (_, excess, err) = Reference.Compare(dc.ToArray(), reference.Matmul(a, b, m, n, k, aRow, aCol, bRow, bCol), 1e-5 * Math.Sqrt(k) + 1e-6, 1e-5);
                        maxError = Math.Max(maxError, err);
                        passed &= excess <= 0;
                    }
                    Add(new SelfTestRow($"matmul {MatmulVersions.Label(version)} {layout}", "1..1000", maxError, "1e-5 sqrt(K) + 1e-5 rel", passed, note));
                }
            }
        }
        finally
        {
            wide?.Dispose();
            wideContext?.Dispose();
        }

        foreach (bool relu in new[] { false, true })
        {
            Add(Elementwise($"bias add{(relu ? " + relu" : "")}", "(65, 1000), (1000, 7)", 0, [(65, 1000), (1000, 7)], (rowsN, cols) =>
            {
                float[] y = Reference.RandomFloats(r, rowsN * cols), bias = Reference.RandomFloats(r, cols);
                using var dy = tracker.AllocateFrom("selftest.dy", y, MemoryCategory.Other);
                using var dbias = tracker.AllocateFrom("selftest.dbias", bias, MemoryCategory.Other);
                backend.BiasActivation(dy.View, dbias.View, rowsN, cols, relu);
                return (dy.ToArray(), reference.BiasActivation(y, bias, rowsN, cols, relu));
            }));
        }
        Add(Elementwise("relu backward", "(63, 65), (1000, 1)", 0, [(63, 65), (1000, 1)], (rowsN, cols) =>
        {
            float[] dy = Reference.RandomFloats(r, rowsN * cols), y = Reference.RandomFloats(r, rowsN * cols).Select(v => Math.Max(0, v)).ToArray();
            using var ddy = tracker.AllocateFrom("selftest.ddy", dy, MemoryCategory.Other);
            using var dyy = tracker.AllocateFrom("selftest.dyy", y, MemoryCategory.Other);
            backend.ReluBackward(ddy.View, dyy.View, rowsN * cols);
            return (ddy.ToArray(), reference.ReluBackward(dy, y));
        }));
        Add(Elementwise("bias backward", "(1000, 65), (7, 63)", 1e-4, [(1000, 65), (7, 63)], (rowsN, cols) =>
        {
            float[] dy = Reference.RandomFloats(r, rowsN * cols);
            using var ddy = tracker.AllocateFrom("selftest.ddy", dy, MemoryCategory.Other);
            using var db = tracker.Allocate<float>("selftest.db", [cols], MemoryCategory.Other);
            backend.BiasBackward(ddy.View, db.View, rowsN, cols);
            return (db.ToArray(), reference.BiasBackward(dy, rowsN, cols));
        }));
        Add(Elementwise("bias backward, accumulating (+=)", "(1000, 65), (7, 63)", 1e-4, [(1000, 65), (7, 63)], (rowsN, cols) =>
        {
            float[] dy = Reference.RandomFloats(r, rowsN * cols), held = Reference.RandomFloats(r, cols);
            using var ddy = tracker.AllocateFrom("selftest.ddy", dy, MemoryCategory.Other);
            using var db = tracker.AllocateFrom("selftest.db", held, MemoryCategory.Other);
            backend.BiasBackward(ddy.View, db.View, rowsN, cols, accumulate: true);
            return (db.ToArray(), reference.BiasBackward(dy, rowsN, cols).Select((g, i) => held[i] + g).ToArray());
        }));
        foreach (bool gradient in new[] { false, true })
        {
            Add(Elementwise(gradient ? "softmax-cross-entropy gradient" : "softmax-cross-entropy loss", "(1000, 10), (7, 65), (1, 1)", 1e-5, [(1000, 10), (7, 65), (1, 1)], (rowsN, classes) =>
            {
                float[] logits = Reference.RandomFloats(r, rowsN * classes, 8f);
                int[] labels = Enumerable.Range(0, rowsN).Select(_ => r.Next(classes)).ToArray();
                using var dl = tracker.AllocateFrom("selftest.dl", logits, MemoryCategory.Other);
                using var dy = tracker.AllocateFrom("selftest.dy", labels, MemoryCategory.Other);
                using var losses = tracker.Allocate<float>("selftest.losses", [rowsN], MemoryCategory.Other);
                using var grad = tracker.Allocate<float>("selftest.grad", [rowsN * classes], MemoryCategory.Other);
                backend.SoftmaxCrossEntropy(dl.View, dy.View, losses.View, grad.View, rowsN, classes, rowsN);
                var (refLoss, refGrad) = reference.SoftmaxCrossEntropy(logits, labels, rowsN, classes);
                return gradient ? (grad.ToArray(), refGrad) : (losses.ToArray(), refLoss);
            }));
        }
        Add(Elementwise("argmax", "(1000, 10), (63, 7)", 0, [(1000, 10), (63, 7)], (rowsN, classes) =>
        {
            float[] logits = Reference.RandomFloats(r, rowsN * classes).Select(v => MathF.Round(v * 3)).ToArray();
            using var dl = tracker.AllocateFrom("selftest.dl", logits, MemoryCategory.Other);
            using var pred = tracker.Allocate<int>("selftest.pred", [rowsN], MemoryCategory.Other);
            backend.Argmax(dl.View, pred.View, rowsN, classes);
            return (pred.ToArray().Select(v => (float)v).ToArray(), reference.Argmax(logits, rowsN, classes).Select(v => (float)v).ToArray());
        }));
        Add(Elementwise("adam (3 steps)", "1000, 7, 1", 1e-6, [(1000, 1), (7, 1), (1, 1)], (count, _) =>
        {
            float[] p = Reference.RandomFloats(r, count), m = new float[count], v = new float[count];
            using var dp = tracker.AllocateFrom("selftest.dp", p, MemoryCategory.Other);
            using var dm = tracker.Allocate<float>("selftest.dm", [count], MemoryCategory.Other);
            using var dv = tracker.Allocate<float>("selftest.dv", [count], MemoryCategory.Other);
            for (int t = 1; t <= 3; t++)
            {
                float[] g = Reference.RandomFloats(r, count);
                using var dg = tracker.AllocateFrom("selftest.dg", g, MemoryCategory.Other);
                var (stepSize, invSqrtC2) = OptimizerKernels.AdamStepConstants(1e-3, 0.9, 0.999, t);
                backend.Adam(dp.View, dg.View, dm.View, dv.View, count, 0.9f, 0.999f, 1e-8f, stepSize, invSqrtC2);
                reference.Adam(p, g, m, v, t, 1e-3, 0.9, 0.999, 1e-8);
            }
            return (dp.ToArray(), p);
        }));
        foreach (float momentum in new[] { 0f, 0.9f })
        {
            Add(Elementwise(momentum > 0 ? "sgd momentum (3 steps)" : "sgd (3 steps)", "1000, 65", 1e-6, [(1000, 1), (65, 1)], (count, _) =>
            {
                float[] p = Reference.RandomFloats(r, count);
                float[]? buf = momentum > 0 ? new float[count] : null;
                using var dp = tracker.AllocateFrom("selftest.dp", p, MemoryCategory.Other);
                using var dbuf = tracker.Allocate<float>("selftest.dbuf", [count], MemoryCategory.Other);
                for (int t = 1; t <= 3; t++)
                {
                    float[] g = Reference.RandomFloats(r, count);
                    using var dg = tracker.AllocateFrom("selftest.dg", g, MemoryCategory.Other);
                    if (momentum > 0) backend.SgdMomentum(dp.View, dg.View, dbuf.View, count, 0.1f, momentum);
                    else backend.Sgd(dp.View, dg.View, count, 0.1f);
                    reference.Sgd(p, g, buf, 0.1, momentum);
                }
                return (dp.ToArray(), p);
            }));
        }

        foreach (var row in ConvChecks(backend, tracker, reference, r)) Add(row);
        foreach (var row in HalfChecks(backend, tracker, reference, r)) Add(row);
        Add(TrainingAgreement(device));
        foreach (var precision in new[] { Precision.Fp16, Precision.Bf16 })
            Add(TrainingAgreement(device, new TrainConfig { Seed = 42, Precision = precision },
                $"training, {precision.ToString().ToLowerInvariant()}: {TrainingSteps} steps vs CPU accelerator", "784-128-10, B=64"));
        foreach (var conv in new[] { ConvVersion.Im2col, ConvVersion.Direct }) Add(ConvTrainingAgreement(device, conv));
        foreach (var precision in new[] { Precision.Fp16, Precision.Bf16 }) Add(ConvTrainingAgreement(device, ConvVersion.Direct, precision));
        return rows;
    }

    /// <summary>
    /// 16-bit storage (--precision fp16, bf16): the matmul in the MLP's three layouts with 16-bit inputs and outputs against
    /// the float reference on the decoded inputs, rounded (within one step of the format: the reference sums in double);
    /// the direct conv (forward, both backward passes) and max-pooling on 16-bit values; and the loss scaler's unscale
    /// with its inf/NaN check.
    /// </summary>
    static IEnumerable<SelfTestRow> HalfChecks(IBackend backend, MemoryTracker tracker, ReferenceOps reference, Random r)
    {
        foreach (var format in new[] { HalfFormat.Fp16, HalfFormat.Bf16 })
        {
            double rel = format == HalfFormat.Fp16 ? 1e-3 : 8e-3;   // one step of the format: 2^-10 or 2^-7
            double maxError = 0;
            bool passed = true;
            foreach (var (m, n, k) in MatmulShapes)
                foreach (var (_, strides) in Layouts)
                {
                    var (aRow, aCol, bRow, bCol) = strides(m, n, k);
                    ushort[] a = Reference.RandomFloats(r, m * k).Select(v => HalfKernels.FromFloat(v, (int)format)).ToArray();
                    ushort[] b = Reference.RandomFloats(r, k * n).Select(v => HalfKernels.FromFloat(v, (int)format)).ToArray();
                    using var da = tracker.AllocateFrom("selftest.da16", a, MemoryCategory.Other);
                    using var db = tracker.AllocateFrom("selftest.db16", b, MemoryCategory.Other);
                    using var dc = tracker.Allocate<ushort>("selftest.dc16", [m * n], MemoryCategory.Other);
                    backend.MatmulHalf(da.View, db.View, dc.View, m, n, k, aRow, aCol, bRow, bCol, format);
                    float[] actual = dc.ToArray().Select(h => HalfKernels.ToFloat(h, (int)format)).ToArray();
                    float[] expected = reference.Matmul(a.Select(h => HalfKernels.ToFloat(h, (int)format)).ToArray(),
                        b.Select(h => HalfKernels.ToFloat(h, (int)format)).ToArray(), m, n, k, aRow, aCol, bRow, bCol);
                    var (_, excess, err) = Reference.Compare(actual, expected, 1e-5 * Math.Sqrt(k) + 1e-6, rel);
                    maxError = Math.Max(maxError, err);
                    passed &= excess <= 0;
                }
            yield return new SelfTestRow($"matmul, {format.ToString().ToLowerInvariant()} storage (3 layouts)", "1..1000", maxError, $"1e-5 sqrt(K) + {rel:0e0} rel", passed);
        }
        // The 16-bit conv (direct, bias 0 so that the float reference applies), both backward passes, and max-pooling.
        foreach (var format in new[] { HalfFormat.Fp16, HalfFormat.Bf16 })
        {
            double rel = format == HalfFormat.Fp16 ? 1e-3 : 8e-3;
            double maxError = 0;
            bool passed = true;
            float[] Decode(ushort[] h) => h.Select(v => HalfKernels.ToFloat(v, (int)format)).ToArray();
            ushort[] Random16(int n) => Reference.RandomFloats(r, n).Select(v => HalfKernels.FromFloat(v, (int)format)).ToArray();
            void Check(float[] actual, float[] expected, double relative)
            {
                var (_, excess, err) = Reference.Compare(actual, expected, 1e-4, relative);
                maxError = Math.Max(maxError, err);
                passed &= excess <= 0;
            }
            foreach (var (rows, s) in ConvShapes)
            {
                int inSize = rows * s.C * s.H * s.W, outSize = rows * s.F * s.OutH * s.OutW;
                ushort[] x = Random16(inSize), w = Random16(s.F * s.ColRows), dy = Random16(outSize);
                using var dx = tracker.AllocateFrom("selftest.x16", x, MemoryCategory.Other);
                using var dw = tracker.AllocateFrom("selftest.w16", w, MemoryCategory.Other);
                using var ddy = tracker.AllocateFrom("selftest.dy16", dy, MemoryCategory.Other);
                using var bias = tracker.Allocate<ushort>("selftest.bias16", [s.F], MemoryCategory.Other);
                using var y = tracker.Allocate<ushort>("selftest.y16", [outSize], MemoryCategory.Other);
                using var gx = tracker.Allocate<ushort>("selftest.gx16", [inSize], MemoryCategory.Other);
                using var gw = tracker.Allocate<float>("selftest.gw", [s.F * s.ColRows], MemoryCategory.Other);
                backend.ConvForwardHalf(dx.View, dw.View, bias.View, y.View, s, rows, format);
                backend.ConvBackwardInputHalf(ddy.View, dw.View, gx.View, s, rows, format);
                backend.ConvBackwardWeightHalf(ddy.View, dx.View, gw.View, s, rows, format);
                float[] xf = Decode(x), wf = Decode(w), dyf = Decode(dy);
                var (refDx, refDw) = reference.ConvBackward(xf, wf, dyf, s, rows);
                Check(Decode(y.ToArray()), reference.Conv(xf, wf, s, rows), rel);
                Check(Decode(gx.ToArray()), refDx, rel);
                Check(gw.ToArray(), refDw, 1e-5);
                if (s.H < 2 || s.W < 2) continue;
                int planes = rows * s.C, pooled = planes * (s.H / 2) * (s.W / 2);
                using var py = tracker.Allocate<ushort>("selftest.pool16", [pooled], MemoryCategory.Other);
                using var pi = tracker.Allocate<int>("selftest.poolidx", [pooled], MemoryCategory.Other);
                backend.MaxPoolForwardHalf(dx.View, py.View, pi.View, planes, s.H, s.W, 2, format);
                var (refY, refIdx) = reference.MaxPool(xf, planes, s.H, s.W, 2);
                Check([.. Decode(py.ToArray()), .. pi.ToArray().Select(v => (float)v)], [.. refY, .. refIdx.Select(v => (float)v)], 0);
            }
            yield return new SelfTestRow($"conv direct + max-pool, {format.ToString().ToLowerInvariant()} storage", "4 shapes", maxError, $"1e-4 + {rel:0e0} rel", passed);
        }
        yield return Elementwise("loss scaler: unscale + inf/NaN check", "1000, 7", 0, [(1000, 0), (7, 1)], (count, poison) =>
        {
            float[] g = Reference.RandomFloats(r, count).Select(v => v * 65536f).ToArray();
            if (poison == 1) g[count / 2] = float.PositiveInfinity;
            using var dg = tracker.AllocateFrom("selftest.dg", g, MemoryCategory.Other);
            using var found = tracker.Allocate<int>("selftest.found", [1], MemoryCategory.Other);
            found.View.MemSetToZero();
            backend.Unscale(dg.View, found.View, count, 1f / 65536);
            // The flag goes last: an unscaled gradient per element (the infinity stays one: compared as 0), then 1 if one was inf or NaN.
            static float Finite(float v) => float.IsFinite(v) ? v : 0f;
            return ([.. dg.ToArray().Select(Finite), found.ToArray()[0]], [.. g.Select(v => Finite(v * (1f / 65536))), poison]);
        });
    }

    /// <summary>Conv shapes with awkward sizes: a 1x1 image and kernel, odd channels, padding 0, 1 and 2, a 5x5 kernel.</summary>
    static readonly (int Rows, ConvShape Shape)[] ConvShapes =
    [
        (1, new ConvShape(1, 1, 1, 1, 1, 0)),
        (2, new ConvShape(3, 7, 5, 4, 3, 1)),
        (3, new ConvShape(5, 6, 7, 7, 5, 2)),
        (2, new ConvShape(2, 9, 9, 3, 3, 0)),
    ];

    /// <summary>
    /// The conv net's operations against the definition: both conv versions forward and backward (im2col as Conv2d runs
    /// it: per image im2col, then the backend's default matmul, backward with c += a·b and col2im), the per-channel bias,
    /// ReLU and max-pooling with its indices. Outputs are filled with garbage first, so an element left unwritten fails.
    /// </summary>
    static IEnumerable<SelfTestRow> ConvChecks(IBackend backend, MemoryTracker tracker, ReferenceOps reference, Random r)
    {
        MatmulVersion mm = backend.DefaultMatmul;
        Tensor<float> Garbage(string name, int count)
        {
            var t = tracker.Allocate<float>(name, [count], MemoryCategory.Other);
            t.View.MemSet(0xFF);
            return t;
        }
        foreach (var version in new[] { ConvVersion.Direct, ConvVersion.Im2col })
        {
            string label = version.ToString().ToLowerInvariant();
            double errF = 0, errX = 0, errW = 0;
            bool okF = true, okX = true, okW = true;
            foreach (var (rows, s) in ConvShapes)
            {
                int inImage = s.C * s.H * s.W, outImage = s.F * s.OutH * s.OutW;
                float[] x = Reference.RandomFloats(r, rows * inImage), w = Reference.RandomFloats(r, s.F * s.ColRows), dy = Reference.RandomFloats(r, rows * outImage);
                using var dx = tracker.AllocateFrom("selftest.x", x, MemoryCategory.Other);
                using var dwt = tracker.AllocateFrom("selftest.w", w, MemoryCategory.Other);
                using var ddy = tracker.AllocateFrom("selftest.dy", dy, MemoryCategory.Other);
                using var y = Garbage("selftest.y", rows * outImage);
                using var gx = Garbage("selftest.gx", rows * inImage);
                using var gw = Garbage("selftest.gw", s.F * s.ColRows);
                using var cols = Garbage("selftest.cols", s.ColRows * s.ColCols);
                if (version == ConvVersion.Direct)
                {
                    backend.ConvDirectForward(dx.View, dwt.View, y.View, s, rows);
                    backend.ConvDirectBackwardWeight(ddy.View, dx.View, gw.View, s, rows);
                    backend.ConvDirectBackwardInput(ddy.View, dwt.View, gx.View, s, rows);
                }
                else
                {
                    for (int b = 0; b < rows; b++)
                    {
                        backend.Im2col(dx.View.SubView(b * inImage, inImage), cols.View, s);
                        backend.Matmul(mm, dwt.View, cols.View, y.View.SubView(b * outImage, outImage), s.F, s.ColCols, s.ColRows, s.ColRows, 1, s.ColCols, 1);
                    }
                    for (int b = 0; b < rows; b++)
                    {
                        var dyb = ddy.View.SubView(b * outImage, outImage);
                        backend.Im2col(dx.View.SubView(b * inImage, inImage), cols.View, s);
                        backend.Matmul(mm, dyb, cols.View, gw.View, s.F, s.ColRows, s.ColCols, s.ColCols, 1, 1, s.ColCols, accumulate: b > 0);
                        backend.Matmul(mm, dwt.View, dyb, cols.View, s.ColRows, s.ColCols, s.F, 1, s.ColRows, s.ColCols, 1);
                        backend.Col2im(cols.View, gx.View.SubView(b * inImage, inImage), s);
                    }
                }
                var (refDx, refDw) = reference.ConvBackward(x, w, dy, s, rows);
                double tol(int sums) => 1e-5 * Math.Sqrt(sums) + 1e-6;
                var (_, e1, a1) = Reference.Compare(y.ToArray(), reference.Conv(x, w, s, rows), tol(s.ColRows), 1e-5);
                var (_, e2, a2) = Reference.Compare(gx.ToArray(), refDx, tol(s.F * s.KernelSize * s.KernelSize), 1e-5);
                var (_, e3, a3) = Reference.Compare(gw.ToArray(), refDw, tol(rows * s.ColCols), 1e-5);
                (errF, errX, errW) = (Math.Max(errF, a1), Math.Max(errX, a2), Math.Max(errW, a3));
                okF &= e1 <= 0; okX &= e2 <= 0; okW &= e3 <= 0;
            }
            const string sizes = "B 1..3, C 1..5, 1x1..9x9, k 1/3/5, p 0..2";
            yield return new SelfTestRow($"conv {label} forward", sizes, errF, "1e-5 sqrt(C k k) + 1e-5 rel", okF);
            yield return new SelfTestRow($"conv {label} backward dx", sizes, errX, "1e-5 sqrt(F k k) + 1e-5 rel", okX);
            yield return new SelfTestRow($"conv {label} backward dW", sizes, errW, "1e-5 sqrt(B OH OW) + 1e-5 rel", okW);
        }
        {
            int rows = 3, f = 5, plane = 7 * 3;
            float[] y = Reference.RandomFloats(r, rows * f * plane), bias = Reference.RandomFloats(r, f);
            using var dy = tracker.AllocateFrom("selftest.y", y, MemoryCategory.Other);
            using var db = tracker.AllocateFrom("selftest.bias", bias, MemoryCategory.Other);
            using var gb = Garbage("selftest.gb", f);
            backend.ChannelBias(dy.View, db.View, rows, f, plane);
            var expected = y.Select((v, i) => v + bias[i / plane % f]).ToArray();
            var (_, e1, a1) = Reference.Compare(dy.ToArray(), expected, 0, 0);
            backend.ChannelBiasBackward(dy.View, gb.View, rows, f, plane);
            var sums = Enumerable.Range(0, f).Select(c => (float)Enumerable.Range(0, rows).Sum(b => Enumerable.Range(0, plane).Sum(i => (double)expected[(b * f + c) * plane + i]))).ToArray();
            var (_, e2, a2) = Reference.Compare(gb.ToArray(), sums, 1e-5, 1e-5);
            // With the ReLU after the conv fused in (see Relu): max(y + bias, 0).
            using var dyRelu = tracker.AllocateFrom("selftest.y.relu", y, MemoryCategory.Other);
            backend.ChannelBias(dyRelu.View, db.View, rows, f, plane, relu: true);
            var (_, e3, a3) = Reference.Compare(dyRelu.ToArray(), expected.Select(v => Math.Max(0f, v)).ToArray(), 0, 0);
            yield return new SelfTestRow("conv bias add (+ ReLU) and its gradient", "(3, 5, 7x3)", Math.Max(a1, Math.Max(a2, a3)), "exact; 1e-5 + 1e-5 rel",
                e1 <= 0 && e2 <= 0 && e3 <= 0);
        }
        {
            float[] v = Reference.RandomFloats(r, 1001);
            using var dv = tracker.AllocateFrom("selftest.relu", v, MemoryCategory.Other);
            backend.Relu(dv.View, v.Length);
            var (_, e, a) = Reference.Compare(dv.ToArray(), v.Select(t => Math.Max(0f, t)).ToArray(), 0, 0);
            yield return new SelfTestRow("relu", "1001", a, "exact", e <= 0);
        }
        {
            double err = 0;
            bool ok = true;
            foreach (var (planes, h, w, size, ties) in new[] { (6, 7, 7, 2, false), (2, 9, 5, 3, false), (4, 4, 6, 2, true), (1, 1, 1, 1, false) })
            {
                float[] x = ties ? Enumerable.Range(0, planes * h * w).Select(i => (float)(i % 3 == 0 ? 1 : 0)).ToArray() : Reference.RandomFloats(r, planes * h * w);
                int outCount = planes * (h / size) * (w / size);
                float[] dyv = Reference.RandomFloats(r, outCount);
                using var dx = tracker.AllocateFrom("selftest.x", x, MemoryCategory.Other);
                using var ddy = tracker.AllocateFrom("selftest.dy", dyv, MemoryCategory.Other);
                using var y = Garbage("selftest.y", outCount);
                using var idx = tracker.Allocate<int>("selftest.idx", [outCount], MemoryCategory.Other);
                using var gx = Garbage("selftest.gx", planes * h * w);
                using var gxRelu = Garbage("selftest.gx.relu", planes * h * w);
                backend.MaxPoolForward(dx.View, y.View, idx.View, planes, h, w, size);
                backend.MaxPoolBackward(ddy.View, idx.View, gx.View, planes, h, w, size);
                backend.ReluMaxPoolBackward(ddy.View, idx.View, dx.View, gxRelu.View, planes, h, w, size);   // x taken as a ReLU's output
                var (refY, refIdx) = reference.MaxPool(x, planes, h, w, size);
                var refDx = new float[x.Length];
                int oPlane = (h / size) * (w / size);
                for (int o = 0; o < outCount; o++) refDx[o / oPlane * h * w + refIdx[o]] = dyv[o];
                var (_, e1, a1) = Reference.Compare(y.ToArray(), refY, 0, 0);
                var (_, e2, a2) = Reference.Compare(idx.ToArray().Select(i => (float)i).ToArray(), refIdx.Select(i => (float)i).ToArray(), 0, 0);
                var (_, e3, a3) = Reference.Compare(gx.ToArray(), refDx, 0, 0);
                var (_, e4, a4) = Reference.Compare(gxRelu.ToArray(), refDx.Select((g, i) => x[i] > 0 ? g : 0f).ToArray(), 0, 0);
                err = Math.Max(err, Math.Max(Math.Max(a1, a4), Math.Max(a2, a3)));
                ok &= e1 <= 0 && e2 <= 0 && e3 <= 0 && e4 <= 0;
            }
            yield return new SelfTestRow("max-pool forward, indices, backward (+ ReLU)", "2x2 on 7x7, 3x3 on 9x5, ties", err, "exact", ok);
        }
    }

    /// <summary>A small conv net for a few steps on the embedded data, on this device and on the CPU accelerator, for one conv version.</summary>
    static SelfTestRow ConvTrainingAgreement(ComputeDevice device, ConvVersion conv, Precision precision = Precision.Fp32) =>
        TrainingAgreement(device, new TrainConfig { Seed = 42, Layers = "conv3x3:8,relu,maxpool2,conv3x3:8,relu,maxpool2,flatten,linear:10", Conv = conv, BatchSize = 16, Precision = precision },
            $"training: conv net, {conv.ToString().ToLowerInvariant()}{(precision == Precision.Fp32 ? "" : ", " + precision.ToString().ToLowerInvariant())}, {TrainingSteps} steps vs CPU accelerator",
            "2 conv + pool, B=16");

    static readonly (string Name, Func<int, int, int, (int, int, int, int)> Strides)[] Layouts =
    [
        ("x·W^T", (m, n, k) => (k, 1, 1, k)),
        ("dy·W", (m, n, k) => (k, 1, n, 1)),
        ("dy^T·x", (m, n, k) => (1, m, n, 1)),
    ];

    static SelfTestRow Elementwise(string name, string sizes, double atol, (int, int)[] shapes, Func<int, int, (float[] Actual, float[] Expected)> run)
    {
        double maxError = 0;
        bool passed = true;
        foreach (var (a, b) in shapes)
        {
            var (actual, expected) = run(a, b);
            var (_, excess, err) = actual.Length == expected.Length ? Reference.Compare(actual, expected, atol, atol == 0 ? 0 : 1e-5) : (0, double.PositiveInfinity, double.PositiveInfinity);
            maxError = Math.Max(maxError, err);
            passed &= excess <= 0;
        }
        return new SelfTestRow(name, sizes, maxError, atol == 0 ? "exact" : $"{atol:0e0} + 1e-5 rel", passed);
    }

    /// <summary>The default MLP for a few steps on the embedded data, on this device and on the CPU accelerator.</summary>
    static SelfTestRow TrainingAgreement(ComputeDevice device) =>
        TrainingAgreement(device, new TrainConfig { Seed = 42, Matmul = null }, $"training: {TrainingSteps} steps vs CPU accelerator", "784-128-10, B=64");

    /// <summary>A model trained for a few steps on the embedded data on this device and on the CPU accelerator: the losses must agree.</summary>
    static SelfTestRow TrainingAgreement(ComputeDevice device, TrainConfig config, string check, string sizes)
    {
        var data = DatasetLoader.LoadEmbedded(null);
        List<double> Losses(ComputeDevice d)
        {
            using var session = new TrainingSession(d, config, data.Train.Info);
            var loader = new BatchLoader(data.Train, config.BatchSize, shuffle: true, seed: config.Seed);
            var images = new float[config.BatchSize * data.Train.Info.ImageSize];
            var labels = new int[config.BatchSize];
            var losses = new List<double>();
            for (int b = 0; b < TrainingSteps; b++)
            {
                int rows = loader.Fill(b, images, labels);
                session.Upload(images, labels, rows);
                losses.Add(session.TrainStep(labels, rows).LossSum / rows);
            }
            return losses;
        }
        var onDevice = Losses(device);
        using var cpu = ComputeDevice.Create("cpu");
        var onCpu = Losses(cpu);
        double maxError = onDevice.Zip(onCpu, (a, b) => Math.Abs(a - b)).Max();
        bool passed = onDevice.Zip(onCpu, (a, b) => Math.Abs(a - b) <= LossTolerance * (1 + Math.Abs(b))).All(x => x) && onDevice[^1] < onDevice[0];
        return new SelfTestRow(check, sizes, maxError, $"{LossTolerance:0e0} x (1 + |loss|)", passed, $"loss {onDevice[0]:0.0000} -> {onDevice[^1]:0.0000}");
    }
}
