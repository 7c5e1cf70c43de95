using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>One block of a segment, for the segment view: where it is, how big, and who holds it (empty when free).</summary>
public sealed record BlockRow(long Offset, long Size, bool InUse, long Requested, string Owner, string? Category);

/// <summary>One device buffer of the caching allocator and its blocks in address order.</summary>
public sealed record SegmentRow(int Id, string Pool, long Size, List<BlockRow> Blocks);

/// <summary>
/// The three figures of the glossary, in total, as the tracker saw them: requested (exact bytes of the tensors),
/// allocated (the blocks that hold them: PyTorch's memory_allocated) and reserved (the device buffers held:
/// memory_reserved), live and at their peaks, with the caching allocator's segments for the segment view.
/// </summary>
public sealed record AllocatorSummary(string Allocator, long Requested, long Allocated, long Reserved,
    long PeakRequested, long PeakAllocated, long PeakReserved, long LargestFreeBlock,
    int SegmentAllocations, int SegmentFrees, List<SegmentRow> Segments)
{
    /// <summary>allocated / reserved, in percent (100 with the exact allocator).</summary>
    public double Utilisation => Reserved == 0 ? 100 : 100.0 * Allocated / Reserved;

    public static AllocatorSummary Of(MemoryTracker t)
    {
        var segments = t.Caching?.Segments.Select(s => new SegmentRow(s.Id, s.IsSmall ? "small" : "large", s.Size,
            s.Blocks().Select(b => new BlockRow(b.Offset, b.Size, b.InUse, b.Requested, b.Owner, b.Category?.ToString())).ToList())).ToList() ?? [];
        return new AllocatorSummary(t.Allocator.ToString().ToLowerInvariant(), t.LiveBytes, t.AllocatedBytes, t.ReservedBytes,
            t.PeakBytes, t.PeakAllocatedBytes, t.PeakReservedBytes, t.Caching?.LargestFreeBlock ?? 0,
            t.Caching?.SegmentAllocations ?? 0, t.Caching?.SegmentFrees ?? 0, segments);
    }

    /// <summary>The caching allocator's rules in one line, for reports.</summary>
    public const string CachingRules = "PyTorch's caching allocator rules: sizes rounded up to 512 B; requests up to 1 MiB from 2 MiB segments, " +
        "up to 10 MiB from 20 MiB segments, larger ones a segment of their own rounded up to 2 MiB; freed blocks stay cached in their segment";

    /// <summary>
    /// Why the parameters take more allocated than requested bytes: ScratchNet keeps them as one flat tensor, rounded
    /// once; PyTorch keeps a weight and a bias tensor per layer and rounds each (a layer's bias has one value per output
    /// channel or feature, for Linear and Conv2d alike). For the lesson's MLP both give 407,552 B, by coincidence.
    /// </summary>
    public static string ParameterRounding(Model model)
    {
        long flat = 4 * model.ParameterCount;
        long[] tensors = model.Layers.Where(l => l.ParameterCount > 0)
            .SelectMany(l => new[] { 4 * (l.ParameterCount - l.Out.C), 4L * l.Out.C }).ToArray();
        long perTensor = tensors.Sum(CachingAllocator.RoundSize);
        long rounded = CachingAllocator.RoundSize(flat);
        string roundedThere = string.Join(", ", tensors.Where(b => b % CachingAllocator.MinBlockSize != 0).Select(b => $"{Bytes.Exact(b)} -> {Bytes.Exact(CachingAllocator.RoundSize(b))}"));
        return $"parameters: one flat tensor of {Bytes.Exact(flat)}, rounded up to a multiple of 512 B (round_size): {Bytes.Exact(rounded)} allocated; " +
            $"PyTorch rounds each weight and bias tensor instead ({roundedThere}): {Bytes.Exact(perTensor)}" +
            (perTensor == rounded ? ", the same figure by coincidence" : "");
    }
}
