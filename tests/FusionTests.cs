using NUnit.Framework;
using ScratchNet.Kernels;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// The ReLU fusions (see <see cref="Relu"/>): which ReLUs a stack fuses, and that a fused step gives bit for bit what the same
/// stack gives with every ReLU run on its own. The fused kernels alone are checked against the references in
/// ConvKernelTests and KernelTests; the fused backward is also in the conv net's finite-difference check.
/// </summary>
[TestFixture]
public sealed class FusionTests
{
    [TestCase("conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,linear:128,relu,linear:10", "relu1 bias pool, relu2 bias pool, relu3 bias")]
    [TestCase("flatten,linear:128,relu,linear:10", "relu1 bias")]
    [TestCase("relu,maxpool2,conv3x3:4,flatten,linear:10", "relu1 pool")]
    [TestCase("conv3x3:4,relu,relu,maxpool2,flatten,linear:10", "relu1 bias, relu2 pool")]
    [TestCase("conv3x3:4,maxpool2,relu,flatten,linear:10,relu", "relu1, relu2 bias")]
    public void Fuse_JoinsEachReluToTheLayerBeforeAndThePoolAfter(string layers, string expected)
    {
        var built = new ModelSpec(layers).Build(FeatureShape.Image(1, 28, 28), 10);
        string Fusions(Relu r) => r.Name + (r.AppliedInBias ? " bias" : "") + (r.MaskedByPool ? " pool" : "");
        Assert.That(string.Join(", ", built.OfType<Relu>().Select(Fusions)), Is.EqualTo(expected));
        for (int i = 0; i < built.Count; i++)
        {
            bool reluNext = i + 1 < built.Count && built[i + 1] is Relu;
            if (built[i] is Linear l) Assert.That(l.ReluInBias, Is.EqualTo(reluNext), l.Name);
            if (built[i] is Conv2d c) Assert.That(c.ReluInBias, Is.EqualTo(reluNext), c.Name);
            if (built[i] is MaxPool2d p) Assert.That(p.AfterRelu, Is.EqualTo(i > 0 && built[i - 1] is Relu), p.Name);
        }
    }

    static IEnumerable<TestCaseData> StepCases()
    {
        foreach (string device in new[] { "host", "cpu" })
            foreach (var conv in new[] { ConvVersion.Im2col, ConvVersion.Direct })
            {
                yield return new TestCaseData(device, conv, "conv3x3:4,relu,maxpool2,conv3x3:6,relu,maxpool2,flatten,linear:12,relu,linear:10", "planned");
                yield return new TestCaseData(device, conv, "conv5x5:3:p2,relu,maxpool3,flatten,linear:10", "planned");   // 9x9: pooling drops nothing; 3x3 windows
            }
        yield return new TestCaseData("host", ConvVersion.Im2col, "flatten,linear:16,relu,linear:10", "planned");
        yield return new TestCaseData("cpu", ConvVersion.Im2col, "flatten,linear:16,relu,linear:10", "planned");
        // The lifetimes that free or share buffers during backward (the fused pool backward reads its input), and
        // gradient accumulation (5 rows as micro-batches of 3 and 2).
        foreach (string device in new[] { "host", "cpu" })
            foreach (string mode in new[] { "eager", "recompute", "accumulate" })
                yield return new TestCaseData(device, ConvVersion.Im2col, "conv3x3:4,relu,maxpool2,conv3x3:6,relu,maxpool2,flatten,linear:12,relu,linear:10", mode);
    }

    /// <summary>
    /// Three Adam steps of the stack as built (fused) and of the same stack with the fusion marks cleared (each ReLU runs on
    /// its own, as before the fusions), from the same seed and batches: the losses, gradients and parameters are the same bits;
    /// with planned lifetimes, and for the conv net also with eager lifetimes, --recompute and --accumulate 2.
    /// </summary>
    [TestCaseSource(nameof(StepCases))]
    public void FusedSteps_AreBitIdentical_ToEachReluOnItsOwn(string device, ConvVersion conv, string layers, string mode)
    {
        const int rows = 5, classes = 10, size = 9;
        var config = new TrainConfig
        {
            Layers = layers, Conv = conv, BatchSize = rows, Seed = 3,
            Lifetime = mode == "eager" ? LifetimeKind.Eager : LifetimeKind.Planned, Recompute = mode == "recompute", Accumulate = mode == "accumulate" ? 2 : 1,
        };
        var input = FeatureShape.Image(2, size, size);
        using var fused = new TrainingSession(device == "host" ? Shared.Host : Shared.Cpu, config, input, classes);
        using var apart = new TrainingSession(device == "host" ? Shared.Host : Shared.Cpu, config, input, classes);
        int cleared = Unfuse(apart.Model.Layers);
        Assert.That(cleared, Is.GreaterThan(0), "the stack has fusions to compare");
        Assert.That(fused.Model.Layers.OfType<Relu>().All(r => r.AppliedInBias || r.MaskedByPool), Is.True);

        var r = new Random(5);
        for (int step = 0; step < 3; step++)
        {
            float[] x = Reference.RandomFloats(r, rows * 2 * size * size, 2f);
            int[] y = Enumerable.Range(0, rows).Select(_ => r.Next(classes)).ToArray();
            var a = fused.TrainBatch(x, default, y, rows);
            var b = apart.TrainBatch(x, default, y, rows);
            Assert.That(BitConverter.DoubleToInt64Bits(a.LossSum), Is.EqualTo(BitConverter.DoubleToInt64Bits(b.LossSum)), $"step {step} loss");
            Assert.That(a.Correct, Is.EqualTo(b.Correct));
            if (mode != "eager")   // eager lifetimes free the gradients after the update
                Assert.That(Bits(fused.Model.Gradients.ToArray()), Is.EqualTo(Bits(apart.Model.Gradients.ToArray())), $"step {step} gradients");
            Assert.That(Bits(fused.Model.Parameters.ToArray()), Is.EqualTo(Bits(apart.Model.Parameters.ToArray())), $"step {step} parameters");
        }
    }

    static int[] Bits(float[] v) => v.Select(BitConverter.SingleToInt32Bits).ToArray();

    /// <summary>Clears every fusion mark of the layers (the setters are not public: only <see cref="Relu.Fuse"/> sets them); returns how many were set.</summary>
    static int Unfuse(IEnumerable<Layer> layers)
    {
        int set = 0;
        foreach (var layer in layers)
            foreach (string name in new[] { "AppliedInBias", "MaskedByPool", "ReluInBias", "AfterRelu" })
                if (layer.GetType().GetProperty(name) is { } p && (bool)p.GetValue(layer)!)
                {
                    p.SetValue(layer, false);
                    set++;
                }
        return set;
    }
}
