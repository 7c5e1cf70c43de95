namespace ScratchNet.Data;

/// <summary>
/// PyTorch's DataLoader(shuffle=True) for our byte datasets: each epoch visits every image once in an
/// order shuffled by a seeded generator, in batches of BatchSize; the last batch keeps the remainder
/// (drop_last=False). The order of epoch e depends only on (seed, e), so a run resumed at epoch e sees
/// exactly the batches an uninterrupted run sees.
/// </summary>
public sealed class BatchLoader
{
    readonly Dataset _data;
    readonly Normalizer _normalizer;
    readonly int[] _order;
    readonly ulong _seed;

    public BatchLoader(Dataset data, int batchSize, bool shuffle, ulong seed)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), "batch size must be positive");
        _data = data;
        _normalizer = new Normalizer(data.Info);
        BatchSize = batchSize;
        Shuffle = shuffle;
        _seed = seed;
        _order = new int[data.Count];
        StartEpoch(0);
    }

    public int BatchSize { get; }
    public bool Shuffle { get; }
    public int Count => _data.Count;
    public int BatchesPerEpoch => (_data.Count + BatchSize - 1) / BatchSize;

    /// <summary>Sets the visiting order for an epoch (0-based).</summary>
    public void StartEpoch(int epoch)
    {
        for (int i = 0; i < _order.Length; i++) _order[i] = i;
        if (Shuffle) new Rng(_seed * 0x9E3779B97F4A7C15UL + (ulong)epoch + 1).Shuffle(_order);
    }

    /// <summary>Number of images in batch b of the current epoch (BatchSize, or fewer for the last).</summary>
    public int BatchCount(int b) => Math.Min(BatchSize, _data.Count - b * BatchSize);

    /// <summary>
    /// Fills batch b: images normalised into x (at least count * C*H*W floats, image after image)
    /// and labels into y. Returns the number of images in the batch.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public int Fill(int b, Span<float> x, Span<int> y)
    {
        int count = BatchCount(b);
        int size = _data.Info.ImageSize;
        for (int i = 0; i < count; i++)
        {
            int index = _order[b * BatchSize + i];
            _normalizer.Normalize(_data.Image(index), x.Slice(i * size, size));
            y[i] = _data.Labels[index];
        }
        return count;
    }

    /// <summary>The dataset indices of batch b (for showing samples).</summary>
    public ReadOnlySpan<int> Indices(int b) => _order.AsSpan(b * BatchSize, BatchCount(b));
}
