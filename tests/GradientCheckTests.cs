using NUnit.Framework;
using ScratchNet.Kernels;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// The backward pass against finite differences: for a tiny network, nudge each parameter by ±h,
/// recompute the mean loss with the forward kernels, and compare (L(w+h) - L(w-h)) / 2h with the
/// gradient our backward kernels wrote.
/// </summary>
[TestFixture]
public sealed class GradientCheckTests
{
    [TestCase(new[] { 5, 3 }, 4, MatmulVersion.Blocked)]
    [TestCase(new[] { 6, 5, 4 }, 3, MatmulVersion.Blocked)]
    [TestCase(new[] { 7, 6, 5, 3 }, 5, MatmulVersion.Naive)]
    [TestCase(new[] { 7, 6, 5, 3 }, 5, MatmulVersion.Blocked)]
    [TestCase(new[] { 6, 5, 4 }, 3, MatmulVersion.Naive)]
    public void Backward_MatchesFiniteDifferences(int[] sizes, int rows, MatmulVersion matmul)
    {
        var config = new TrainConfig { Hidden = sizes[1..^1], BatchSize = rows, Seed = 7, Optimizer = "sgd", Matmul = matmul };
        using var session = new TrainingSession(Shared.Cpu, config, FeatureShape.Image(sizes[0], 1, 1), sizes[^1]);
        var r = new Random(3);
        float[] x = Reference.RandomFloats(r, rows * sizes[0], 2f);
        int[] y = Enumerable.Range(0, rows).Select(_ => r.Next(sizes[^1])).ToArray();
        session.Upload(x, y, rows);

        var model = session.Model;
        var k = session.Backend;
        session.TrainForwardBackward(rows);
        float[] analytic = model.Gradients.ToArray();
        float[] parameters = model.Parameters.ToArray();

        double Loss(float[] p)
        {
            model.Parameters.CopyFrom(p);
            session.TrainForwardBackward(rows);
            return session.Buffers.Losses.ToArray().Take(rows).Sum(v => (double)v) / rows;
        }

        // Which hidden units are active: a finite difference across a ReLU's kink measures neither side's slope.
        string ReluPattern() => string.Concat(session.Buffers.Layers.SkipLast(1).Where((_, i) => session.Model.Layers[i] is Relu).SelectMany(io => io.Output.ToArray()).Select(v => v > 0 ? '1' : '0'));
        Loss(parameters);
        string pattern = ReluPattern();
        int skipped = 0;

        const float h = 1e-3f;
        int checkedCount = 0;
        for (int i = 0; i < parameters.Length; i++)
        {
            var plus = (float[])parameters.Clone();
            var minus = (float[])parameters.Clone();
            plus[i] += h;
            minus[i] -= h;
            double lossPlus = Loss(plus);
            bool samePattern = ReluPattern() == pattern;
            double lossMinus = Loss(minus);
            if (!samePattern || ReluPattern() != pattern)
            {
                skipped++;
                continue;
            }
            double numeric = (lossPlus - lossMinus) / (2 * h);
            Assert.That(analytic[i], Is.EqualTo(numeric).Within(2e-3 + 2e-2 * Math.Abs(numeric)),
                $"parameter {i} of {parameters.Length}: backward says {analytic[i]}, finite differences say {numeric}");
            checkedCount++;
        }
        Assert.That(checkedCount + skipped, Is.EqualTo(session.Model.ParameterCount));
        Assert.That(skipped, Is.LessThanOrEqualTo(checkedCount / 10), "only a few parameters may sit at a ReLU kink");
        Assert.That(analytic.Any(g => Math.Abs(g) > 1e-3), "gradients should not all be zero");
    }
}
