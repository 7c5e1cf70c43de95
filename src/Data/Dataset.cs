namespace ScratchNet.Data;

/// <summary>
/// One split (train or test) of a dataset, kept as the original bytes: Count images of
/// C x H x W bytes each, one after another, and one label byte per image. Normalisation happens
/// per batch (see <see cref="Normalizer"/>), so the dataset costs 1 byte per pixel, not 4.
/// </summary>
public sealed class Dataset
{
    public Dataset(DatasetInfo info, byte[] pixels, byte[] labels, string source)
    {
        if (pixels.LongLength != (long)labels.Length * info.ImageSize)
            throw new ArgumentException($"{source}: {pixels.LongLength} pixel bytes do not make {labels.Length} images of {info.ImageSize} bytes");
        Info = info;
        Pixels = pixels;
        Labels = labels;
        Source = source;
    }

    public DatasetInfo Info { get; }
    public byte[] Pixels { get; }
    public byte[] Labels { get; }
    /// <summary>Where the data came from (a folder, or the embedded subset), for messages.</summary>
    public string Source { get; }
    public int Count => Labels.Length;

    public ReadOnlySpan<byte> Image(int index) => Pixels.AsSpan(index * Info.ImageSize, Info.ImageSize);
}

/// <summary>The train and test splits of one dataset, and a notice worth telling the user (or null).</summary>
public sealed record DatasetPair(Dataset Train, Dataset Test, string? Notice);
