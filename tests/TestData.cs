using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>Writes small datasets in the exact file formats, into a fresh temporary folder.</summary>
public static class TestData
{
    static readonly Lazy<string> Embedded = new(() =>
    {
        string dir = NewFolder();
        DatasetLoader.WriteSubset(DatasetLoader.LoadEmbedded(null), dir, DatasetLoader.EmbeddedTrainCount, DatasetLoader.EmbeddedTestCount);
        return dir;
    });

    /// <summary>The identity of the embedded subset, for checkpoints saved in tests.</summary>
    public static DataIdentity EmbeddedIdentity => EmbeddedId.Value;
    static readonly Lazy<DataIdentity> EmbeddedId = new(() => DataIdentity.Of(DatasetLoader.LoadEmbedded(null)));

    /// <summary>The embedded Fashion-MNIST subset written out as an IDX folder, so --data can point at it.</summary>
    public static string EmbeddedFolder() => Embedded.Value;

    /// <summary>The repository root (the folder with ScratchNet.sln), found from the test's folder.</summary>
    public static string RepoRoot()
    {
        string? dir = NUnit.Framework.TestContext.CurrentContext.TestDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "ScratchNet.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("repository root not found");
    }

    public static string NewFolder()
    {
        string dir = Path.Combine(Path.GetTempPath(), "scratchnet-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A distinct colour per class (channel c of class `label`), so a colour grid shows the classes apart.</summary>
    static int ClassColour(int label, int c) => c switch { 0 => 40 + label * 20, 1 => 220 - label * 18, _ => (label * 70) % 200 + 40 };

    /// <summary>An IDX dataset of random 28x28 images (raw or gz).</summary>
    public static string WriteIdx(int train, int test, bool gzip, int seed = 1)
    {
        string dir = NewFolder();
        var r = new Random(seed);
        string ext = gzip ? ".gz" : "";
        void Split(int n, string images, string labels)
        {
            var pixels = new byte[n * 784];
            r.NextBytes(pixels);
            var y = Enumerable.Range(0, n).Select(_ => (byte)r.Next(10)).ToArray();
            Idx.WriteImages(Path.Combine(dir, images + ext), n, 28, 28, pixels);
            Idx.WriteLabels(Path.Combine(dir, labels + ext), y);
        }
        Split(train, DatasetInfo.IdxTrainImages, DatasetInfo.IdxTrainLabels);
        Split(test, DatasetInfo.IdxTestImages, DatasetInfo.IdxTestLabels);
        return dir;
    }

    /// <summary>
    /// A CIFAR-10-format folder: data_batch_1..5.bin with perBatch records each, test_batch.bin and
    /// batches.meta.txt. Images are learnable: each class has its own colour, with a diagonal gradient and noise.
    /// </summary>
    public static string WriteCifar(int perBatch, int testCount, int seed = 2)
    {
        string dir = NewFolder();
        var r = new Random(seed);
        void Batch(string name, int n)
        {
            var labels = Enumerable.Range(0, n).Select(_ => (byte)r.Next(10)).ToArray();
            var pixels = new byte[n * Cifar.ImageBytes];
            for (int i = 0; i < n; i++)
                for (int c = 0; c < 3; c++)
                    for (int k = 0; k < 1024; k++)
                        pixels[i * Cifar.ImageBytes + c * 1024 + k] = (byte)Math.Clamp(ClassColour(labels[i], c) + (k % 32 + k / 32) - 32 + r.Next(-15, 16), 0, 255);
            Cifar.WriteBatch(Path.Combine(dir, name), pixels, labels);
        }
        foreach (string f in Cifar.TrainFiles) Batch(f, perBatch);
        Batch(Cifar.TestFile, testCount);
        File.WriteAllLines(Path.Combine(dir, Cifar.MetaFile), DatasetInfo.Cifar10.ClassNames.Append(""));
        return dir;
    }
}
