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
                        dc.Buffer.MemSet(0xFF);
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
                backend.SoftmaxCrossEntropy(dl.View, dy.View, losses.View, grad.View, rowsN, classes);
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

        Add(TrainingAgreement(device));
        return rows;
    }

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
    static SelfTestRow TrainingAgreement(ComputeDevice device)
    {
        var data = DatasetLoader.LoadEmbedded(null);
        List<double> Losses(ComputeDevice d)
        {
            var config = new TrainConfig { Seed = 42, Matmul = null };
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
        return new SelfTestRow($"training: {TrainingSteps} steps vs CPU accelerator", "784-128-10, B=64", maxError, $"{LossTolerance:0e0} x (1 + |loss|)", passed,
            $"loss {onDevice[0]:0.0000} -> {onDevice[^1]:0.0000}");
    }
}
