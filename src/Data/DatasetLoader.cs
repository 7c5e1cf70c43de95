using System.Reflection;

namespace ScratchNet.Data;

/// <summary>
/// Finds and reads a dataset. With a folder (--data DIR) only that folder is used. Without one we look
/// in ./data/NAME, then (Fashion-MNIST) /usr/share/datasets/fashion-mnist from the Debian package
/// dataset-fashion-mnist, and finally fall back to the small Fashion-MNIST subset embedded in this
/// assembly, so a first run works with nothing installed.
/// </summary>
public static class DatasetLoader
{
    public const string DebianFashionMnist = "/usr/share/datasets/fashion-mnist";
    public const int EmbeddedTrainCount = 2000;
    public const int EmbeddedTestCount = 500;

    public static DatasetPair Load(string name, string? dataDir)
    {
        DatasetInfo info = DatasetInfo.Get(name);
        if (dataDir is not null)
        {
            if (!Directory.Exists(dataDir))
                throw new DataFormatException(dataDir, null, $"data folder not found; {FetchHint(info, dataDir)}");
            return LoadFolder(info, dataDir, notice: null);
        }
        foreach (string candidate in CandidateFolders(info))
        {
            if (HasFiles(info, candidate))
                return LoadFolder(info, candidate, notice: null);
        }
        if (info == DatasetInfo.FashionMnist)
            return LoadEmbedded(
                $"No full Fashion-MNIST found (./data/fashion-mnist, {DebianFashionMnist}); using the embedded " +
                $"subset of {EmbeddedTrainCount:N0} training and {EmbeddedTestCount:N0} test images " +
                "(apt-get install dataset-fashion-mnist for all 70,000).");
        throw new DataFormatException(Path.Combine("data", info.Name), null,
            $"no {info.Name} files found; {FetchHint(info, null)}, or put them in ./data/{info.Name} or pass --data DIR " +
            $"({string.Join(", ", ExpectedFiles(info))})");
    }

    public static IEnumerable<string> CandidateFolders(DatasetInfo info)
    {
        yield return Path.Combine("data", info.Name);
        if (info == DatasetInfo.FashionMnist)
            yield return DebianFashionMnist;
    }

    public static string[] ExpectedFiles(DatasetInfo info) => info.IsIdx
        ? [DatasetInfo.IdxTrainImages + "[.gz]", DatasetInfo.IdxTrainLabels + "[.gz]", DatasetInfo.IdxTestImages + "[.gz]", DatasetInfo.IdxTestLabels + "[.gz]"]
        : [.. Cifar.TrainFiles, Cifar.TestFile, Cifar.MetaFile];

    static bool HasFiles(DatasetInfo info, string dir) => info.IsIdx
        ? FindIdx(dir, DatasetInfo.IdxTrainImages) is not null
        : File.Exists(Path.Combine(dir, Cifar.TestFile));

    /// <summary>The IDX file by its standard name, raw or .gz; null when neither exists.</summary>
    static string? FindIdx(string dir, string baseName)
    {
        string raw = Path.Combine(dir, baseName);
        if (File.Exists(raw)) return raw;
        return File.Exists(raw + ".gz") ? raw + ".gz" : null;
    }

    public static DatasetPair LoadFolder(DatasetInfo info, string dir, string? notice)
    {
        if (info.IsIdx)
        {
            Dataset train = LoadIdxSplit(info, dir, DatasetInfo.IdxTrainImages, DatasetInfo.IdxTrainLabels);
            Dataset test = LoadIdxSplit(info, dir, DatasetInfo.IdxTestImages, DatasetInfo.IdxTestLabels);
            return new DatasetPair(train, test, notice);
        }
        string meta = Path.Combine(dir, Cifar.MetaFile);
        DatasetInfo withNames = File.Exists(meta) ? info with { ClassNames = Cifar.ReadClassNames(meta) } : info;
        var trainParts = Cifar.TrainFiles.Select(f => Path.Combine(dir, f)).Select(p => Cifar.ReadBatch(Require(info, dir, p))).ToList();
        var testPart = Cifar.ReadBatch(Require(info, dir, Path.Combine(dir, Cifar.TestFile)));
        var trainPixels = trainParts.SelectMany(p => p.Pixels).ToArray();
        var trainLabels = trainParts.SelectMany(p => p.Labels).ToArray();
        return new DatasetPair(
            new Dataset(withNames, trainPixels, trainLabels, dir),
            new Dataset(withNames, testPart.Pixels, testPart.Labels, dir),
            notice);
    }

    static string Require(DatasetInfo info, string dir, string path) =>
        File.Exists(path) ? path : throw new DataFormatException(path, null, $"file not found; {FetchHint(info, dir)}");

    /// <summary>What to run to get the dataset into `dir` (null: the default folder, where train looks).</summary>
    public static string FetchHint(DatasetInfo info, string? dir) =>
        $"fetch the dataset with: scratchnet download {info.Name}{(dir is null ? "" : $" --to {dir}")}";

    static Dataset LoadIdxSplit(DatasetInfo info, string dir, string imagesName, string labelsName)
    {
        string imagesPath = FindIdx(dir, imagesName) ?? throw new DataFormatException(Path.Combine(dir, imagesName + "[.gz]"), null, $"file not found; {FetchHint(info, dir)}");
        string labelsPath = FindIdx(dir, labelsName) ?? throw new DataFormatException(Path.Combine(dir, labelsName + "[.gz]"), null, $"file not found; {FetchHint(info, dir)}");
        IdxImages images = Idx.ReadImages(imagesPath);
        byte[] labels = Idx.ReadLabels(labelsPath);
        return Validate(info, images, labels, imagesPath, labelsPath, dir);
    }

    /// <summary>Checks that images and labels belong together and fit the dataset's shape and classes.</summary>
    public static Dataset Validate(DatasetInfo info, IdxImages images, byte[] labels, string imagesPath, string labelsPath, string source)
    {
        if (images.Rows != info.Height || images.Cols != info.Width)
            throw new DataFormatException(imagesPath, 8,
                $"images are {images.Rows}x{images.Cols}; {info.Name} images are {info.Height}x{info.Width}");
        if (images.Count != labels.Length)
            throw new DataFormatException(labelsPath, 4,
                $"{labels.Length} labels but {imagesPath} has {images.Count} images; the counts must match");
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] >= info.Classes)
                throw new DataFormatException(labelsPath, 8 + i,
                    $"label {labels[i]} of image {i} is outside the {info.Classes} classes (0..{info.Classes - 1})");
        }
        return new Dataset(info, images.Pixels, labels, source);
    }

    /// <summary>The Fashion-MNIST subset compiled into this assembly (see Embedded/README.md).</summary>
    public static DatasetPair LoadEmbedded(string? notice)
    {
        DatasetInfo info = DatasetInfo.FashionMnist;
        Dataset Split(string images, string labels) => Validate(info,
            Idx.ParseImages(ReadResource(images), "embedded:" + images),
            Idx.ParseLabels(ReadResource(labels), "embedded:" + labels),
            "embedded:" + images, "embedded:" + labels, "embedded Fashion-MNIST subset");
        return new DatasetPair(
            Split(DatasetInfo.IdxTrainImages + ".gz", DatasetInfo.IdxTrainLabels + ".gz"),
            Split(DatasetInfo.IdxTestImages + ".gz", DatasetInfo.IdxTestLabels + ".gz"),
            notice);
    }

    static byte[] ReadResource(string fileName)
    {
        string name = "fashion-mnist-subset/" + fileName;
        using Stream stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"embedded resource {name} is missing from the build");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        copy.Position = 0;
        return FileBytes.Read(copy, "embedded:" + fileName);
    }

    /// <summary>
    /// Writes the first trainCount / testCount images of a full IDX dataset as a smaller IDX dataset
    /// (gzip). This is how src/Data/Embedded was made from the Debian package's files.
    /// </summary>
    public static void WriteSubset(DatasetPair full, string toDir, int trainCount, int testCount)
    {
        // Keep in step with SubsetFiles.
        Directory.CreateDirectory(toDir);
        void Write(Dataset d, int n, string images, string labels)
        {
            n = Math.Min(n, d.Count);
            Idx.WriteImages(Path.Combine(toDir, images + ".gz"), n, d.Info.Height, d.Info.Width, d.Pixels.AsSpan(0, n * d.Info.ImageSize));
            Idx.WriteLabels(Path.Combine(toDir, labels + ".gz"), d.Labels.AsSpan(0, n));
        }
        Write(full.Train, trainCount, DatasetInfo.IdxTrainImages, DatasetInfo.IdxTrainLabels);
        Write(full.Test, testCount, DatasetInfo.IdxTestImages, DatasetInfo.IdxTestLabels);
    }

    /// <summary>The files WriteSubset writes, by name.</summary>
    public static readonly string[] SubsetFiles =
    [
        DatasetInfo.IdxTrainImages + ".gz", DatasetInfo.IdxTrainLabels + ".gz",
        DatasetInfo.IdxTestImages + ".gz", DatasetInfo.IdxTestLabels + ".gz",
    ];
}
