using ILGPU;
using ILGPU.Runtime;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>The mixed-precision checks the tests here and on OpenCL share.</summary>
static class MixedPrecision
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    /// <summary>
    /// A one-layer model (Flatten, Linear 784 -> 10) with zero weights and a bias that makes class 1's probability about
    /// 4e-8 for every image of label 0: each row's logit gradient for class 1 is 4e-8 / 4 rows = 1e-8, below fp16's smallest
    /// subnormal (6e-8; 1e-8 rounds to 0). Returns the bias gradient of class 1 after a step, unscaled.
    /// </summary>
    static float TinyGradient(ComputeDevice d, Precision precision, float? scale)
    {
        var config = new TrainConfig { Hidden = [], BatchSize = 4, Precision = precision, Optimizer = "sgd", LearningRate = 0.01f };
        using var session = new TrainingSession(d, config, FeatureShape.Image(1, 28, 28), 10);
        var p = new float[session.Model.ParameterCount];   // weights 0
        long biasAt = 784 * 10;
        p[biasAt + 0] = 0f;
        for (int j = 1; j < 10; j++) p[biasAt + j] = -40f;   // e^-40: nothing
        p[biasAt + 1] = MathF.Log(4e-8f);                    // softmax_1 = 4e-8 / (1 + ...) ~ 4e-8
        session.Model.Parameters.CopyFrom(p);
        session.Model.RefreshHalfCopy(session.Backend);
        if (scale is float s) session.Scaler!.Scale = s;
        var images = new float[4 * 784];
        var labels = new int[4];
        session.Upload(images, labels, 4);
        session.TrainStep(labels, 4);
        return session.Model.Gradients.ToArray()[biasAt + 1];
    }

    internal static void CheckUnderflow(ComputeDevice device)
    {
        float fp32 = TinyGradient(device, Precision.Fp32, null);
        Assert.That(fp32, Is.EqualTo(4e-8f).Within(4e-9f), "float32: 4 rows x 1e-8");
        Assert.That(TinyGradient(device, Precision.Fp16, 1f), Is.Zero, "fp16 without scaling (scale 1): each 1e-8 rounds to 0");
        float scaled = TinyGradient(device, Precision.Fp16, null);
        // Within 1%: the bias log(4e-8) = -17.03 is read from the fp16 copy, whose step there is 2^-6, so softmax_1 moves by up to 0.8%.
        Assert.That(scaled, Is.EqualTo(fp32).Within(Math.Abs(fp32) * 1e-2), "fp16 with the scaler's 65,536: the gradient survives");
        Assert.That(TinyGradient(device, Precision.Bf16, null), Is.EqualTo(fp32).Within(Math.Abs(fp32) * 0.1), "bf16 has float32's range: no scaling needed (its step at -17 is 2^-3)");
    }

    internal static void CheckSkippedStep(ComputeDevice d)
    {
        using var session = new TrainingSession(d, new TrainConfig { BatchSize = 8, Precision = Precision.Fp16 }, FeatureShape.Image(1, 28, 28), 10);
        var (images, labels, _) = MemoryProbe.FirstRows(Data.Train, 8);
        session.Upload(images, labels, 8);
        session.TrainStep(labels, 8);
        Assert.That(session.LastStepSkipped, Is.False, "a normal step at 65,536");
        Assert.That(session.Scaler!.GoodSteps, Is.EqualTo(1));
        float[] before = session.Model.Parameters.ToArray(), m = session.Optimizer.State[0].ToArray();
        ushort[] copy = session.Model.HalfParameters!.ToArray();
        long steps = session.Optimizer.Steps;
        session.Scaler.Scale = 1e30f;   // the logits' gradient x 1e30 is beyond fp16's 65,504: infinity
        session.Upload(images, labels, 8);
        session.TrainStep(labels, 8);
        Assert.That(session.LastStepSkipped, Is.True, "skipped");
        Assert.That(session.Model.Parameters.ToArray(), Is.EqualTo(before), "master weights bit-identical");
        Assert.That(session.Model.HalfParameters.ToArray(), Is.EqualTo(copy), "16-bit copy unchanged");
        Assert.That(session.Optimizer.State[0].ToArray(), Is.EqualTo(m), "Adam's m unchanged");
        Assert.That(session.Optimizer.Steps, Is.EqualTo(steps), "no optimizer step counted");
        Assert.That(session.Scaler.Scale, Is.EqualTo(5e29f), "scale halved");
        Assert.That(session.Scaler.GoodSteps, Is.Zero);
        Assert.That(session.Scaler.SkippedSteps, Is.EqualTo(1));
    }

    /// <summary>
    /// The gradient of the first `batch` training rows without an optimizer step, divided by the loss scale (update: false
    /// leaves fp16's gradients scaled), and its distance from another one relative to that one: |g - reference| / |reference|.
    /// </summary>
    internal static float[] UnscaledGradient(ComputeDevice d, TrainConfig config, int batch)
    {
        using var session = new TrainingSession(d, config, FeatureShape.Image(1, 28, 28), 10);
        var (images, labels, _) = MemoryProbe.FirstRows(Data.Train, batch);
        session.TrainBatch(images, default, labels, batch, update: false);
        float scale = session.Scaler?.Scale ?? 1f;
        return session.Model.Gradients.ToArray().Select(v => v / scale).ToArray();
    }

    internal static double RelativeDistance(float[] g, float[] reference) =>
        Math.Sqrt(reference.Zip(g, (a, b) => (double)(a - b) * (a - b)).Sum()) / Math.Sqrt(reference.Sum(v => (double)v * v));

    /// <summary>
    /// Every 16-bit conv and max-pool operation against the float32 reference on the 16-bit values: outputs within one
    /// 16-bit step of the rounded reference (the backends sum in float32, in their own order), float32 gradients to 1e-4
    /// relative, max-pool bits and indices exactly; the weight and bias gradients also with accumulate.
    /// </summary>
    internal static void CheckConvKernels(IBackend ops, Accelerator acc, HalfFormat f, ConvShape s, int rows, string what)
    {
        var r = new Random(s.C * 1000 + s.F * 10 + s.KernelSize + rows);
        ushort[] Random16(int n) => Enumerable.Range(0, n).Select(_ => HalfKernels.FromFloat((float)(r.NextDouble() * 2 - 1), (int)f)).ToArray();
        float[] Values(ushort[] h) => h.Select(v => HalfKernels.ToFloat(v, (int)f)).ToArray();
        double step = f == HalfFormat.Fp16 ? 1.0 / 1024 : 1.0 / 128;   // one 16-bit step, relative
        void Near(ushort[] actual, float[] expected, string name)
        {
            for (int i = 0; i < expected.Length; i++)
            {
                float a = HalfKernels.ToFloat(actual[i], (int)f);
                Assert.That(a, Is.EqualTo(expected[i]).Within(Math.Abs(expected[i]) * step + 1e-4), $"{what} {name}[{i}]");
            }
        }
        void Close(float[] actual, float[] expected, string name)
        {
            for (int i = 0; i < expected.Length; i++)
                Assert.That(actual[i], Is.EqualTo(expected[i]).Within(1e-4 * (1 + Math.Abs(expected[i]))), $"{what} {name}[{i}]");
        }
        int inSize = rows * s.C * s.H * s.W, outSize = rows * s.F * s.OutH * s.OutW, weights = s.F * s.ColRows;
        ushort[] x = Random16(inSize), w = Random16(weights), bias = Random16(s.F), dy = Random16(outSize);
        using var dx16 = acc.Allocate1D(x);
        using var dw16 = acc.Allocate1D(w);
        using var db16 = acc.Allocate1D(bias);
        using var ddy = acc.Allocate1D(dy);
        using var dyOut = acc.Allocate1D<ushort>(outSize);
        using var dxOut = acc.Allocate1D<ushort>(inSize);
        float[] dw0 = Enumerable.Range(0, weights).Select(i => 0.25f * (i % 5)).ToArray(), db0 = Enumerable.Range(0, s.F).Select(i => 0.5f * i).ToArray();
        using var ddw = acc.Allocate1D(dw0);
        using var ddb = acc.Allocate1D(db0);
        ops.ConvForwardHalf(dx16.View, dw16.View, db16.View, dyOut.View, s, rows, f);
        ops.ConvBackwardInputHalf(ddy.View, dw16.View, dxOut.View, s, rows, f);
        ops.ConvBackwardWeightHalf(ddy.View, dx16.View, ddw.View, s, rows, f, accumulate: true);
        ops.ChannelBiasBackwardHalf(ddy.View, ddb.View, rows, s.F, s.ColCols, f, accumulate: true);
        ops.Synchronize();
        Near(dyOut.GetAsArray1D(), Reference.ConvForward(Values(x), Values(w), Values(bias), s, rows), "y");
        Near(dxOut.GetAsArray1D(), Reference.ConvBackwardInput(Values(dy), Values(w), s, rows), "dx");
        Close(ddw.GetAsArray1D(), Reference.ConvBackwardWeight(Values(dy), Values(x), s, rows).Select((v, i) => v + dw0[i]).ToArray(), "dw (accumulated)");
        Close(ddb.GetAsArray1D(), Reference.ConvBackwardBias(Values(dy), s, rows).Select((v, i) => v + db0[i]).ToArray(), "db (accumulated)");
        ops.ConvBackwardWeightHalf(ddy.View, dx16.View, ddw.View, s, rows, f);
        ops.ChannelBiasBackwardHalf(ddy.View, ddb.View, rows, s.F, s.ColCols, f);
        ops.Synchronize();
        Close(ddw.GetAsArray1D(), Reference.ConvBackwardWeight(Values(dy), Values(x), s, rows), "dw");
        Close(ddb.GetAsArray1D(), Reference.ConvBackwardBias(Values(dy), s, rows), "db");

        // Max-pool 2 and 3 on the input planes (an odd size drops the last row and column); ties from repeated values.
        foreach (int size in new[] { 2, 3 })
        {
            if (s.H < size || s.W < size) continue;
            int planes = rows * s.C, oh = s.H / size, ow = s.W / size;
            ushort[] px = x.Select((v, i) => i % 7 == 3 ? x[i - 1] : v).ToArray();
            using var dpx = acc.Allocate1D(px);
            using var dpy = acc.Allocate1D<ushort>(planes * oh * ow);
            using var dpi = acc.Allocate1D<int>(planes * oh * ow);
            ushort[] pdy = Random16(planes * oh * ow);
            using var dpdy = acc.Allocate1D(pdy);
            using var dpdx = acc.Allocate1D(Enumerable.Repeat((ushort)0x3C00, inSize).ToArray());   // not zeros: backward writes every element
            ops.MaxPoolForwardHalf(dpx.View, dpy.View, dpi.View, planes, s.H, s.W, size, f);
            ops.MaxPoolBackwardHalf(dpdy.View, dpi.View, dpdx.View, planes, s.H, s.W, size);
            ops.Synchronize();
            var (_, indices) = Reference.MaxPool(Values(px), planes, s.H, s.W, size);
            int[] gotIndices = dpi.GetAsArray1D();
            Assert.That(gotIndices, Is.EqualTo(indices), $"{what} max-pool {size} indices");
            ushort[] expectedY = indices.Select((i, o) => px[o / (oh * ow) * s.H * s.W + i]).ToArray();
            Assert.That(dpy.GetAsArray1D(), Is.EqualTo(expectedY), $"{what} max-pool {size}: the maxima's bits");
            ushort[] expectedDx = new ushort[inSize];
            for (int o = 0; o < indices.Length; o++) expectedDx[o / (oh * ow) * s.H * s.W + indices[o]] = pdy[o];
            Assert.That(dpdx.GetAsArray1D(), Is.EqualTo(expectedDx), $"{what} max-pool {size} backward: dy's bits at the maxima, 0 elsewhere");
        }
    }

    /// <summary>The lesson's conv net (or a small conv stack) in 16 bits: every category and every layer's estimate equals the measured bytes.</summary>
    internal static void CheckConvMemory(ComputeDevice d, Precision precision, string? layers, int batch, string optimizer) =>
        CheckProbe(d, new TrainConfig { Model = layers is null ? "cnn" : "mlp", Layers = layers, Conv = ConvVersion.Direct, BatchSize = batch, Optimizer = optimizer, Precision = precision });

    internal static void CheckMemory(ComputeDevice d, Precision precision, int[] hidden, int batch, string optimizer) =>
        CheckProbe(d, new TrainConfig { Hidden = hidden, BatchSize = batch, Optimizer = optimizer, Precision = precision });

    /// <summary>Two real steps of `config`: every category's live and peak bytes and every layer's equal the estimate.</summary>
    static void CheckProbe(ComputeDevice d, TrainConfig config)
    {
        var probe = MemoryProbe.Run(d, config, Data);
        foreach (var c in probe.Categories)
        {
            Assert.That(c.Live, Is.EqualTo(c.Estimate), $"{c.Category} live");
            Assert.That(c.Peak, Is.EqualTo(c.Estimate), $"{c.Category} peak");
        }
        Assert.That(probe.Layers.All(l => l.Match), $"per layer: {string.Join(", ", probe.Layers.Where(l => !l.Match).Select(l => l.Layer))}");
    }
}

/// <summary>
/// --precision fp16 and bf16: the 16-bit conversions against .NET's own and a nearest-value search, every 16-bit
/// kernel against a plain C# reference on the CPU accelerator and the host backend, the loss scaler (underflow,
/// skipped steps, growth), estimate == measured in every precision, gradients and accuracy close to float32,
/// checkpoints, and what is refused.
/// </summary>
[TestFixture]
public sealed class MixedPrecisionTests
{
    static readonly DatasetPair Data = DatasetLoader.LoadEmbedded(null);

    // ---- conversions ----

    [Test]
    public void HalfToFloat_MatchesDotNetsHalf_ForEveryPattern()
    {
        for (int h = 0; h < 65536; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h), actual = HalfKernels.HalfToFloat((ushort)h);
            if (float.IsNaN(expected)) Assert.That(float.IsNaN(actual), $"0x{h:X4} is NaN");
            else Assert.That(BitConverter.SingleToUInt32Bits(actual), Is.EqualTo(BitConverter.SingleToUInt32Bits(expected)), $"0x{h:X4}");
        }
    }

    /// <summary>Awkward floats: ties, the edges of the subnormals and of the range, specials, and random bit patterns.</summary>
    static IEnumerable<float> AwkwardFloats()
    {
        float[] specials = [0f, -0f, 1f, -1f, 65504f, 65519.99f, 65520f, 65536f, 1e-8f, 2.9802322e-8f, 2.9802326e-8f, 5.9604645e-8f, 8.940697e-8f,
            6.1035156e-5f, 6.1035152e-5f, 1.0004883f, 1.0014648f, 1.0009766f, float.Epsilon, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity, float.NaN];
        foreach (float f in specials) yield return f;
        var r = new Random(7);
        for (int i = 0; i < 200_000; i++) yield return BitConverter.UInt32BitsToSingle((uint)r.NextInt64(0, 1L << 32));
        for (int i = 0; i < 200_000; i++) yield return (float)((r.NextDouble() - 0.5) * Math.Pow(2, r.Next(-30, 18)));
    }

    [Test]
    public void FloatToHalf_RoundsAsDotNetsHalf()
    {
        foreach (float f in AwkwardFloats())
        {
            ushort expected = BitConverter.HalfToUInt16Bits((System.Half)f), actual = HalfKernels.FloatToHalf(f);
            if (float.IsNaN(f)) Assert.That(System.Half.IsNaN(BitConverter.UInt16BitsToHalf(actual)), $"{f} stays NaN");
            else Assert.That(actual, Is.EqualTo(expected), $"{f:R} (0x{BitConverter.SingleToUInt32Bits(f):X8})");
        }
    }

    /// <summary>bf16: the nearer of the two bf16 values around f (ties to the even pattern), found by comparing distances in double.</summary>
    [Test]
    public void FloatToBf16_IsTheNearestValue_TiesToEven()
    {
        foreach (float f in AwkwardFloats())
        {
            ushort actual = HalfKernels.FloatToBf16(f);
            if (float.IsNaN(f))
            {
                Assert.That(float.IsNaN(HalfKernels.ToFloat(actual, HalfKernels.Bf16)), "NaN stays NaN");
                continue;
            }
            uint bits = BitConverter.SingleToUInt32Bits(f);
            ushort down = (ushort)(bits >> 16), up = (ushort)(down + 1);
            double dDown = Math.Abs(f - (double)HalfKernels.ToFloat(down, HalfKernels.Bf16));
            // Past the largest bf16 the next value up is infinity, which rounding treats as 2^128 (as IEEE rounding does).
            double upValue = (up & 0x7FFF) == 0x7F80 ? Math.CopySign(Math.Pow(2, 128), f) : HalfKernels.ToFloat(up, HalfKernels.Bf16);
            double dUp = float.IsInfinity(f) ? double.MaxValue : Math.Abs(upValue - f);
            ushort expected = dDown < dUp ? down : dUp < dDown ? up : (down & 1) == 0 ? down : up;
            Assert.That(actual, Is.EqualTo(expected), $"{f:R} (0x{bits:X8})");
        }
    }

    // ---- kernels against the reference ----

    static IBackend Ops(string backend) => backend == "host" ? new HostBackend() : Shared.Kernels;

    static IEnumerable<TestCaseData> KernelCases()
    {
        foreach (string backend in new[] { "cpu", "host" })
            foreach (HalfFormat format in new[] { HalfFormat.Fp16, HalfFormat.Bf16 })
                foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 13, 5), (64, 10, 128), (33, 65, 63) })
                    yield return new TestCaseData(backend, format, m, n, k);
    }

    static ushort[] RandomHalf(Random r, int count, HalfFormat f, float scale = 1f) =>
        Enumerable.Range(0, count).Select(_ => HalfKernels.FromFloat((float)(r.NextDouble() * 2 - 1) * scale, (int)f)).ToArray();

    static float Value(ushort h, HalfFormat f) => HalfKernels.ToFloat(h, (int)f);
    static ushort Round(float v, HalfFormat f) => HalfKernels.FromFloat(v, (int)f);

    /// <summary>The three layouts the MLP uses, 16-bit in, float32 sums in q order, and the bias, ReLU and bias-gradient kernels.</summary>
    [TestCaseSource(nameof(KernelCases))]
    public void MatmulAndLayerKernels_MatchTheReference(string backend, HalfFormat f, int m, int n, int k)
    {
        var ops = Ops(backend);
        var acc = Shared.Cpu.Accelerator;
        var r = new Random(m * 1000 + n * 10 + k);
        ushort[] a = RandomHalf(r, m * k, f), b = RandomHalf(r, k * n, f);
        // Forward layout y = x·W^T: a (M, K) rows, b read as W (N, K): b[q, j] = W[j*K + q].
        float Sum(int i, int j, int aRow, int aCol, int bRow, int bCol)
        {
            float s = 0f;
            for (int q = 0; q < k; q++) s += Value(a[i * aRow + q * aCol], f) * Value(b[q * bRow + j * bCol], f);
            return s;
        }
        foreach (var (aRow, aCol, bRow, bCol) in new[] { (k, 1, 1, k), (k, 1, n, 1), (1, m, n, 1) })
        {
            using var da = acc.Allocate1D(a);
            using var db = acc.Allocate1D(b);
            using var dc = acc.Allocate1D<ushort>(m * n);
            float[] start = Enumerable.Range(0, m * n).Select(i => (float)i / 7).ToArray();
            using var df = acc.Allocate1D(start);
            ops.MatmulHalf(da.View, db.View, dc.View, m, n, k, aRow, aCol, bRow, bCol, f);
            ops.MatmulHalfToFloat(da.View, db.View, df.View, m, n, k, aRow, aCol, bRow, bCol, f, accumulate: true);
            ops.Synchronize();
            ushort[] c = dc.GetAsArray1D();
            float[] cf = df.GetAsArray1D();
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float s = Sum(i, j, aRow, aCol, bRow, bCol);
                    Assert.That(c[i * n + j], Is.EqualTo(Round(s, f)), $"{backend} c[{i}, {j}] strides {aRow},{aCol},{bRow},{bCol}");
                    Assert.That(cf[i * n + j], Is.EqualTo(start[i * n + j] + s), $"{backend} float32 c[{i}, {j}] with accumulate");
                }
        }

        // Bias + ReLU on y (M, N), ReLU backward, bias gradient with accumulate.
        ushort[] y = RandomHalf(r, m * n, f, 3f), bias = RandomHalf(r, n, f), dy = RandomHalf(r, m * n, f);
        float[] dbias0 = Enumerable.Range(0, n).Select(j => 0.5f * j).ToArray();
        using var dyv = acc.Allocate1D(y);
        using var dbv = acc.Allocate1D(bias);
        using var dgv = acc.Allocate1D(dy);
        using var dbias = acc.Allocate1D(dbias0);
        ops.BiasActivationHalf(dyv.View, dbv.View, m, n, relu: true, f);
        ops.ReluBackwardHalf(dgv.View, dyv.View, m * n, f);
        ops.BiasBackwardHalf(dgv.View, dbias.View, m, n, f, accumulate: true);
        ops.Synchronize();
        ushort[] yOut = dyv.GetAsArray1D(), dyOut = dgv.GetAsArray1D();
        float[] dbOut = dbias.GetAsArray1D();
        for (int i = 0; i < m * n; i++)
        {
            float v = Value(y[i], f) + Value(bias[i % n], f);
            Assert.That(yOut[i], Is.EqualTo(Round(v < 0 ? 0f : v, f)), $"{backend} bias+relu [{i}]");
            Assert.That(dyOut[i], Is.EqualTo(Value(yOut[i], f) > 0 ? dy[i] : (ushort)0), $"{backend} relu backward [{i}]");
        }
        for (int j = 0; j < n; j++)
        {
            float s = 0f;
            for (int i = 0; i < m; i++) s += Value(dyOut[i * n + j], f);
            Assert.That(dbOut[j], Is.EqualTo(dbias0[j] + s), $"{backend} bias gradient [{j}]");
        }
    }

    [TestCase("cpu", HalfFormat.Fp16)]
    [TestCase("cpu", HalfFormat.Bf16)]
    [TestCase("host", HalfFormat.Fp16)]
    [TestCase("host", HalfFormat.Bf16)]
    public void LossArgmaxConvertAndUnscale_MatchTheReference(string backend, HalfFormat f)
    {
        var ops = Ops(backend);
        var acc = Shared.Cpu.Accelerator;
        var r = new Random(3);
        int rows = 13, classes = 10, meanRows = 52;
        float scale = 1024f;
        ushort[] logits = RandomHalf(r, rows * classes, f, 8f);
        int[] labels = Enumerable.Range(0, rows).Select(i => i % classes).ToArray();
        using var dl = acc.Allocate1D(logits);
        using var dy = acc.Allocate1D(labels);
        using var losses = acc.Allocate1D<float>(rows);
        using var grad = acc.Allocate1D<ushort>(rows * classes);
        using var pred = acc.Allocate1D<int>(rows);
        ops.SoftmaxCrossEntropyHalf(dl.View, dy.View, losses.View, grad.View, rows, classes, meanRows, scale, f);
        ops.ArgmaxHalf(dl.View, pred.View, rows, classes, f);
        ops.Synchronize();
        float[] lossOut = losses.GetAsArray1D();
        ushort[] gradOut = grad.GetAsArray1D();
        int[] predOut = pred.GetAsArray1D();
        for (int b = 0; b < rows; b++)
        {
            double[] z = Enumerable.Range(0, classes).Select(j => (double)Value(logits[b * classes + j], f)).ToArray();
            double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
            Assert.That(lossOut[b], Is.EqualTo(Math.Log(sum) + max - z[labels[b]]).Within(1e-5 * (1 + Math.Abs(lossOut[b]))), $"{backend} loss [{b}]");
            for (int j = 0; j < classes; j++)
            {
                double g = (Math.Exp(z[j] - max) / sum - (j == labels[b] ? 1 : 0)) * scale / meanRows;
                // The float32 result may differ in its last bits from the double one, so the rounded value may be one 16-bit step off.
                Assert.That(Value(gradOut[b * classes + j], f), Is.EqualTo(g).Within(Math.Abs(g) * (f == HalfFormat.Fp16 ? 1e-3 : 8e-3) + 1e-6), $"{backend} dz [{b}, {j}]");
            }
            int best = Array.IndexOf(z, z.Max());
            Assert.That(predOut[b], Is.EqualTo(best), $"{backend} argmax [{b}]");
        }

        float[] master = [1f, -2.5f, 1e-9f, 70000f, 0.1f, -0f, 3.14159f];
        using var dm = acc.Allocate1D(master);
        using var dh = acc.Allocate1D<ushort>(master.Length);
        ops.ConvertToHalf(dm.View, dh.View, master.Length, f);
        ops.Synchronize();
        Assert.That(dh.GetAsArray1D(), Is.EqualTo(master.Select(v => Round(v, f)).ToArray()), $"{backend} weight copy");

        float[] g32 = [65536f, -131072f, 3f, 0f];
        using var dg = acc.Allocate1D(g32);
        using var found = acc.Allocate1D(new int[1]);
        ops.Unscale(dg.View, found.View, g32.Length, 1f / 65536);
        ops.Synchronize();
        Assert.That(dg.GetAsArray1D(), Is.EqualTo(new[] { 1f, -2f, 3f / 65536, 0f }), $"{backend} unscaled");
        Assert.That(found.GetAsArray1D()[0], Is.Zero, "all finite");
        using var dinf = acc.Allocate1D(new[] { 1f, float.PositiveInfinity, 2f });
        using var dnan = acc.Allocate1D(new[] { float.NaN });
        ops.Unscale(dinf.View, found.View, 3, 0.5f);
        ops.Synchronize();
        Assert.That(found.GetAsArray1D()[0], Is.EqualTo(1), $"{backend} infinity found");
        found.MemSetToZero();
        ops.Unscale(dnan.View, found.View, 1, 0.5f);
        ops.Synchronize();
        Assert.That(found.GetAsArray1D()[0], Is.EqualTo(1), $"{backend} NaN found");
    }

    // ---- the loss scaler ----

    [TestCase("host")]
    [TestCase("cpu")]
    public void AGradientOf1e8_UnderflowsInFp16WithoutScaling_AndSurvivesWithTheScaler(string device)
    {
        using var d = ComputeDevice.Create(device);
        MixedPrecision.CheckUnderflow(d);
    }

    [TestCase("host")]
    [TestCase("cpu")]
    public void AStepWithAnInfGradient_IsSkipped_AndLeavesTheWeightsBitIdentical(string device)
    {
        using var d = ComputeDevice.Create(device);
        MixedPrecision.CheckSkippedStep(d);
    }

    [Test]
    public void TheScaler_GrowsAfter2000GoodSteps_AndBacksOffOnInf()
    {
        var s = new LossScaler();
        for (int i = 0; i < 1999; i++) Assert.That(s.Update(foundInf: false), Is.True);
        Assert.That(s.Scale, Is.EqualTo(65536f));
        s.Update(false);
        Assert.That((s.Scale, s.GoodSteps), Is.EqualTo((131072f, 0)));
        var top = new LossScaler { Scale = float.MaxValue / 1.5f };
        for (int i = 0; i < 2000; i++) top.Update(false);
        Assert.That(top.Scale, Is.EqualTo(float.MaxValue / 1.5f), "it grows only to a finite scale, as torch's _amp_update_scale_");
        Assert.That(s.Update(foundInf: true), Is.False);
        Assert.That((s.Scale, s.GoodSteps, s.SkippedSteps), Is.EqualTo((65536f, 0, 1L)));
    }

    // ---- memory ----

    static IEnumerable<TestCaseData> MemoryCases()
    {
        foreach (string device in new[] { "host", "cpu" })
            foreach (Precision p in new[] { Precision.Fp32, Precision.Fp16, Precision.Bf16 })
                foreach (var (hidden, batch, optimizer) in new[] { (new[] { 128 }, 64, "adam"), (new[] { 33, 7 }, 13, "momentum"), (Array.Empty<int>(), 1, "sgd") })
                    yield return new TestCaseData(device, p, hidden, batch, optimizer);
    }

    [TestCaseSource(nameof(MemoryCases))]
    public void EstimateEqualsMeasured_PerCategory_InEveryPrecision(string device, Precision precision, int[] hidden, int batch, string optimizer)
    {
        using var d = ComputeDevice.Create(device);
        MixedPrecision.CheckMemory(d, precision, hidden, batch, optimizer);
    }

    [Test]
    public void ForTheLessonsMlp_Fp16sFixedPartGrows_AndItsPerSamplePartAboutHalves()
    {
        var net = new TrainConfig { Precision = Precision.Fp16 }.Network(FeatureShape.Image(1, 28, 28), 10);
        var c = MemoryEstimator.ComparePrecision(net, "adam");
        Assert.That(c.Fixed, Is.EqualTo(c.FixedFp32 + 2 * 101_770 + 4), "+ the fp16 weight copy + the found-inf flag");
        Assert.That(c.PerSampleFp32, Is.EqualTo(4 * 784 + 4 + 4 * 2 * 138 + 8));
        Assert.That(c.PerSample, Is.EqualTo(2 * 784 + 4 + 2 * 2 * 138 + 8), "16-bit images, outputs and gradients; int32 labels, predictions, float32 losses");
        var bf = MemoryEstimator.ComparePrecision(net with { Precision = Precision.Bf16 }, "adam");
        Assert.That(bf.Fixed, Is.EqualTo(bf.FixedFp32 + 2 * 101_770), "bf16 has no loss scaler");
    }

    /// <summary>Under a per-buffer cap the largest batch counts 2 bytes a value in 16 bits (the widest buffer is the 784-value images).</summary>
    [Test]
    public void TheLargestBatchUnderABufferCap_Counts16BitValues()
    {
        var fp32 = new TrainConfig().Network(FeatureShape.Image(1, 28, 28), 10);
        long cap = 500_000;
        Assert.That(MemoryEstimator.LargestBatchUnderBufferCap(fp32, cap), Is.EqualTo(cap / (4 * 784)));
        Assert.That(MemoryEstimator.LargestBatchUnderBufferCap(fp32 with { Precision = Precision.Fp16 }, cap), Is.EqualTo(cap / (2 * 784)));
        using var d = ComputeDevice.Create("host");
        int largest = (int)(cap / (2 * 784));
        var config = new TrainConfig { Precision = Precision.Fp16, MaxBuffer = cap };
        using (new TrainingSession(d, config with { BatchSize = largest }, FeatureShape.Image(1, 28, 28), 10)) { }
        Assert.Throws<DeviceMemoryException>(() => new TrainingSession(d, config with { BatchSize = largest + 1 }, FeatureShape.Image(1, 28, 28), 10).Dispose());
    }

    // ---- training ----

    /// <summary>The gradient of one batch of 64 in 16-bit storage is the float32 one to about the 16-bit format's precision.</summary>
    [TestCase("host", Precision.Fp16, 0.02)]
    [TestCase("host", Precision.Bf16, 0.1)]
    [TestCase("cpu", Precision.Fp16, 0.02)]
    [TestCase("cpu", Precision.Bf16, 0.1)]
    public void TheGradient_IsFloat32sToTheFormatsPrecision(string device, Precision precision, double relative)
    {
        using var d = ComputeDevice.Create(device);
        float[] Gradient(Precision p, int accumulate) => MixedPrecision.UnscaledGradient(d, new TrainConfig { Precision = p, Accumulate = accumulate }, 64);
        float[] fp32 = Gradient(Precision.Fp32, 1);
        foreach (int accumulate in new[] { 1, 4 })
            Assert.That(MixedPrecision.RelativeDistance(Gradient(precision, accumulate), fp32), Is.LessThan(relative), $"|g16 - g32| / |g32| with --accumulate {accumulate}");
    }

    /// <summary>One epoch of the embedded subset: 16-bit storage learns as float32 does (full Fashion-MNIST epochs are in the closing note).</summary>
    [TestCase(Precision.Fp16)]
    [TestCase(Precision.Bf16)]
    public void OneEpochOnTheSubset_ReachesFloat32sAccuracy(Precision precision)
    {
        using var d = ComputeDevice.Create("host");
        double Accuracy(Precision p)
        {
            using var session = new TrainingSession(d, new TrainConfig { Precision = p }, Data.Train.Info);
            return new Trainer(session, Data).RunEpoch(0)!.TestAccuracy;
        }
        double fp32 = Accuracy(Precision.Fp32), half = Accuracy(precision);
        TestContext.Progress.WriteLine($"subset, 1 epoch: fp32 {fp32:P2}, {precision} {half:P2}");
        Assert.That(half, Is.EqualTo(fp32).Within(0.02), "test accuracy within 2 points on the subset");
        Assert.That(half, Is.GreaterThan(0.5), "it learned");
    }

    [Test]
    public void ACheckpoint_RecordsThePrecisionAndTheScaler_AndAResumeGoesOnExactly()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"sn-mp-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "fp16.ckpt");
        try
        {
            using var d = ComputeDevice.Create("host");
            var config = new TrainConfig { Precision = Precision.Fp16, BatchSize = 16 };
            var (images, labels, _) = MemoryProbe.FirstRows(Data.Train, 16);
            var identity = DataIdentity.Of(Data);
            using var a = new TrainingSession(d, config, Data.Train.Info);
            for (int s = 0; s < 3; s++) a.TrainBatch(images, default, labels, 16);
            a.Scaler!.Scale = 4096f;
            a.Scaler.GoodSteps = 17;
            Checkpoint.Save(path, a, new EpochPosition(0, 3, 1, 1, 48), identity);
            var loaded = Checkpoint.Load(path);
            Assert.That((loaded.Header.Precision, loaded.Header.LossScale, loaded.Header.LossScaleGoodSteps), Is.EqualTo(("fp16", (float?)4096f, (int?)17)));
            using var b = new TrainingSession(d, config with { Precision = loaded.Header.PrecisionKind }, Data.Train.Info);
            Checkpoint.Apply(loaded, b);
            Assert.That((b.Scaler!.Scale, b.Scaler.GoodSteps), Is.EqualTo((4096f, 17)));
            Assert.That(b.Model.HalfParameters!.ToArray(), Is.EqualTo(a.Model.HalfParameters!.ToArray()), "the 16-bit copy is made from the loaded master weights");
            a.TrainBatch(images, default, labels, 16);
            b.TrainBatch(images, default, labels, 16);
            Assert.That(b.Model.Parameters.ToArray(), Is.EqualTo(a.Model.Parameters.ToArray()), "the next step is the same, bit for bit");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>From the command line: train --precision fp16 --save, resume (the precision and the scaler's good steps go on),
    /// a resume that asks for another precision is refused, and evaluate counts training in the checkpoint's precision.</summary>
    [Test]
    public void TrainSaveResumeEvaluate_KeepThePrecision()
    {
        string data = TestData.EmbeddedFolder(), dir = TestData.NewFolder(), ckpt = Path.Combine(dir, "fp16.ckpt");
        var first = CliRunner.Run("train", "--precision", "fp16", "--data", data, "--save", ckpt);
        Assert.That(first.ExitCode, Is.Zero, first.Stderr);
        Assert.That(first.Stdout, Does.Contain("precision: fp16: float32 master weights").And.Contain("loss scaler: scale 65,536"));
        var resumed = CliRunner.Run("train", "--resume", ckpt, "--epochs", "2", "--data", data, "--json");
        Assert.That(resumed.ExitCode, Is.Zero, resumed.Stderr);
        using (var doc = System.Text.Json.JsonDocument.Parse(resumed.Stdout))
            Assert.That(doc.RootElement.GetProperty("precision").GetString(), Is.EqualTo("fp16"));
        var other = CliRunner.Run("train", "--resume", ckpt, "--epochs", "2", "--data", data, "--precision", "bf16");
        Assert.That(other.ExitCode, Is.EqualTo(2));
        Assert.That(other.Stderr.Trim(), Is.EqualTo("error: --precision bf16 differs from the checkpoint's fp16; a resumed run keeps the checkpoint's value"));
        var eval = CliRunner.Run("evaluate", "--resume", ckpt, "--data", data);
        Assert.That(eval.ExitCode, Is.Zero, eval.Stderr);
        Assert.That(eval.Stdout, Does.Contain("training this model at batch 64 with adam in fp16 holds 1,968,312 B"));
    }

    // ---- what is refused ----

    [TestCase("--model cnn --precision fp16 --conv im2col", "--precision fp16 with --conv im2col: 16-bit convolutions run direct only")]
    [TestCase("--precision bf16 --lifetime eager", "--lifetime planned only")]
    [TestCase("--precision fp16 --recompute", "--recompute together are not built yet")]
    [TestCase("--precision fp16 --dataset-on-device", "--dataset-on-device together are not built yet")]
    [TestCase("--precision fp8", "--precision")]
    [TestCase("--precision fp16 --matmul blocked --device cpu", "--matmul blocked: it picks a float32 matmul")]
    public void WhatIsNotBuilt_IsRefusedInOneLine(string args, string message)
    {
        var r = CliRunner.Run(["memory", "--synthetic", .. args.Split(' ')]);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr, Does.Contain(message));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), "one line");
    }
}
