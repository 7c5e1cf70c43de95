using System.Text.Json;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Training;

namespace ScratchNet.Tests;

[TestFixture]
public sealed class TrainCommandTests
{
    [Test]
    public void Train_Defaults_PrintTheLessonsMemoryFigures()
    {
        // The embedded subset keeps this quick; the model and its bytes are the lesson's.
        var r = CliRunner.Run("train", "--device", "cpu", "--data", EmbeddedFolder());
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("device: ILGPU CPU accelerator"));
        Assert.That(r.Stdout, Does.Contain("101,770 parameters"));
        Assert.That(r.Stdout, Does.Match(@"Parameter\s+407,080 B\s+407,080 B\s+407,080 B\s+="));
        Assert.That(r.Stdout, Does.Match(@"Gradient\s+407,080 B\s+407,080 B\s+407,080 B\s+="));
        Assert.That(r.Stdout, Does.Match(@"OptimizerState\s+814,160 B\s+814,160 B\s+814,160 B\s+="));
        Assert.That(r.Stdout, Does.Contain("allocations after the first training step: 0"));
        Assert.That(r.Stdout, Does.Match(@"epoch 1/1: loss \d\.\d{4}, train acc \d+\.\d\d%, test acc \d+\.\d\d%"));
    }

    static string EmbeddedFolder() => TestData.EmbeddedFolder();

    [Test]
    public void Train_Cifar_Json_HasTheCifarModelAndExactMemory()
    {
        string dir = TestData.WriteCifar(perBatch: 40, testCount: 50);
        var r = CliRunner.Run("train", "--dataset", "cifar10", "--data", dir, "--device", "cpu", "--json", "--batch-size", "32", "--epochs", "3");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("parameters").GetInt64(), Is.EqualTo(394_634));
        Assert.That(root.GetProperty("layers").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(new[] { 3072, 128, 10 }));
        Assert.That(root.GetProperty("trainImages").GetInt32(), Is.EqualTo(200));
        var categories = root.GetProperty("memory").GetProperty("categories").EnumerateArray().ToList();
        Assert.That(categories, Has.Count.EqualTo(8));
        foreach (var c in categories)
            Assert.That(c.GetProperty("live").GetInt64(), Is.EqualTo(c.GetProperty("estimate").GetInt64()), c.GetProperty("category").GetString());
        var parameter = categories.Single(c => c.GetProperty("category").GetString() == "Parameter");
        Assert.That(parameter.GetProperty("live").GetInt64(), Is.EqualTo(4 * 394_634));
        Assert.That(root.GetProperty("memory").GetProperty("allocationsAfterFirstStep").GetInt64(), Is.Zero);
        // The classes differ by colour, so even a tiny run learns something.
        Assert.That(root.GetProperty("results")[0].GetProperty("testAccuracy").GetDouble(), Is.GreaterThan(0.2));
    }

    [Test]
    public void Train_Json_ForDefaults_HasExactLessonFigures()
    {
        var r = CliRunner.Run("train", "--device", "cpu", "--json", "--data", EmbeddedFolder(), "--batch-size", "1000");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var cats = doc.RootElement.GetProperty("memory").GetProperty("categories").EnumerateArray()
            .ToDictionary(c => c.GetProperty("category").GetString()!, c => c.GetProperty("live").GetInt64());
        Assert.That(cats["Parameter"], Is.EqualTo(407_080));
        Assert.That(cats["Gradient"], Is.EqualTo(407_080));
        Assert.That(cats["OptimizerState"], Is.EqualTo(814_160));
        Assert.That(cats["Input"], Is.EqualTo(4 * 1000 * 784 + 4 * 1000));
    }

    [Test]
    public void SameSeed_SameLosses_OnTheCpuAccelerator()
    {
        List<double> Run()
        {
            var data = DatasetLoader.LoadEmbedded(null);
            using var session = new TrainingSession(Shared.Cpu, new TrainConfig { Seed = 42 }, FeatureShape.Image(1, 28, 28), 10);
            var losses = new List<double>();
            var trainer = new Trainer(session, data) { OnStep = (_, _, loss) => losses.Add(loss) };
            trainer.RunEpoch(0);
            trainer.RunEpoch(1);
            return losses;
        }
        var first = Run();
        var second = Run();
        Assert.That(first, Has.Count.EqualTo(2 * 32));
        Assert.That(second, Is.EqualTo(first), "bit-identical losses");
        Assert.That(first[^1], Is.LessThan(first[0]), "and it learns");
    }

    [Test]
    public void SameSeed_SamePrintedLosses_ThroughTheCommand()
    {
        string Losses(string output) => string.Join("\n", output.Split('\n').Where(l => l.StartsWith("epoch")).Select(l => l[..l.IndexOf(", test acc", StringComparison.Ordinal)]));
        var a = CliRunner.Run("train", "--device", "cpu", "--data", EmbeddedFolder(), "--epochs", "2");
        var b = CliRunner.Run("train", "--device", "cpu", "--data", EmbeddedFolder(), "--epochs", "2");
        Assert.That(Losses(a.Stdout), Has.Length.GreaterThan(20));
        Assert.That(Losses(b.Stdout), Is.EqualTo(Losses(a.Stdout)));
    }
}
