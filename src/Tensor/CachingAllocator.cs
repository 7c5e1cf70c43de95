using ILGPU;
using ILGPU.Runtime;

namespace ScratchNet.Tensor;

/// <summary>
/// A caching allocator with the rules of PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp,
/// DeviceCachingAllocator; every rule below names the function it comes from). Device memory is obtained in
/// segments, each a real device buffer; a tensor is a block, a sub-range of a segment. A freed block is not given
/// back to the device: it stays in the segment ("cached") for the next request, which is why PyTorch's
/// memory_reserved (segments held) is above memory_allocated (blocks in use), and both above the bytes asked for.
///
/// Glossary: requested = the bytes a tensor needs (elements x element size); allocated = the rounded size of the
/// blocks in use; reserved = the size of the segments held. Defaults of PyTorch's configuration are used
/// (max_split_size unlimited, no roundup_power2_divisions, no expandable segments); there is one stream.
/// </summary>
public sealed class CachingAllocator : IDisposable
{
    /// <summary>kMinBlockSize: every block is a multiple of 512 B, and so is every block's offset in its segment.</summary>
    public const long MinBlockSize = 512;
    /// <summary>kSmallSize: requests up to 1 MiB (after rounding) come from the small pool.</summary>
    public const long SmallSize = 1_048_576;
    /// <summary>kSmallBuffer: the small pool's segments are 2 MiB.</summary>
    public const long SmallBuffer = 2_097_152;
    /// <summary>kLargeBuffer: requests from 1 MiB to under 10 MiB get 20 MiB segments.</summary>
    public const long LargeBuffer = 20_971_520;
    /// <summary>kMinLargeAlloc: from 10 MiB on, a request gets a segment of its own size rounded up to kRoundLarge.</summary>
    public const long MinLargeAlloc = 10_485_760;
    /// <summary>kRoundLarge: 2 MiB.</summary>
    public const long RoundLarge = 2_097_152;

    /// <summary>round_size: at least 512 B, else up to the next multiple of 512 B.</summary>
    public static long RoundSize(long size) => size < MinBlockSize ? MinBlockSize : MinBlockSize * ((size + MinBlockSize - 1) / MinBlockSize);

    /// <summary>get_pool: a rounded size up to kSmallSize (1 MiB exactly included) goes to the small pool.</summary>
    public static bool IsSmall(long roundedSize) => roundedSize <= SmallSize;

    /// <summary>get_allocation_size: the segment a rounded request gets when no cached block fits.</summary>
    public static long SegmentSize(long roundedSize) =>
        roundedSize <= SmallSize ? SmallBuffer
        : roundedSize < MinLargeAlloc ? LargeBuffer
        : RoundLarge * ((roundedSize + RoundLarge - 1) / RoundLarge);

    /// <summary>One device buffer obtained from the driver; its blocks tile it from offset 0 to its end.</summary>
    public sealed class Segment
    {
        internal Segment(int id, MemoryBuffer1D<byte, Stride1D.Dense> buffer, bool small, Block first)
        {
            Id = id;
            Buffer = buffer;
            IsSmall = small;
            First = first;
        }

        /// <summary>Segments are numbered in the order they were obtained (the stand-in for addresses in PyTorch's ordering).</summary>
        public int Id { get; }
        public MemoryBuffer1D<byte, Stride1D.Dense> Buffer { get; }
        public long Size => Buffer.Length;
        public bool IsSmall { get; }
        /// <summary>The block at offset 0; follow <see cref="Block.Next"/> for the rest, in address order.</summary>
        public Block First { get; internal set; }

        public IEnumerable<Block> Blocks()
        {
            for (Block? b = First; b is not null; b = b.Next) yield return b;
        }
    }

    /// <summary>A range [Offset, Offset + Size) of a segment, in use by one tensor or free (cached).</summary>
    public sealed class Block
    {
        internal Block(Segment? segment, long offset, long size)
        {
            Segment = segment!;
            Offset = offset;
            Size = size;
        }

        public Segment Segment { get; internal set; }
        public long Offset { get; internal set; }
        /// <summary>The block's size: the request rounded to 512 B, or more when the rest was too small to split off.</summary>
        public long Size { get; internal set; }
        public bool InUse { get; internal set; }
        /// <summary>The bytes asked for, when in use.</summary>
        public long Requested { get; internal set; }
        /// <summary>Who holds it (the tracker writes the tensor's name and category here), for the segment view.</summary>
        public string Owner { get; set; } = "";
        public MemoryCategory? Category { get; set; }
        public Block? Prev { get; internal set; }
        public Block? Next { get; internal set; }
    }

    /// <summary>BlockComparatorSize: free blocks ordered by size, then by address (segment, offset).</summary>
    sealed class BySizeThenAddress : IComparer<Block>
    {
        public int Compare(Block? a, Block? b)
        {
            int c = a!.Size.CompareTo(b!.Size);
            if (c != 0) return c;
            c = SegmentId(a).CompareTo(SegmentId(b));
            return c != 0 ? c : a.Offset.CompareTo(b.Offset);
        }

        // A search key has no segment: it sorts before every block of its size.
        static int SegmentId(Block b) => b.Segment is null ? -1 : b.Segment.Id;
    }

    readonly Accelerator _accelerator;
    readonly SortedSet<Block> _smallPool = new(new BySizeThenAddress());
    readonly SortedSet<Block> _largePool = new(new BySizeThenAddress());
    readonly List<Segment> _segments = [];
    int _nextSegmentId;

    public CachingAllocator(Accelerator accelerator) => _accelerator = accelerator;

    /// <summary>The most the segments together may hold (a --memory-limit makes the device behave like a card of that size); null: the device's own.</summary>
    public long? Limit { get; set; }
    /// <summary>The largest single device buffer allowed (a segment is one buffer); null: no cap but the device's.</summary>
    public long? MaxBufferBytes { get; set; }

    /// <summary>Bytes of segments held (PyTorch's memory_reserved).</summary>
    public long Reserved { get; private set; }
    public long PeakReserved { get; private set; }
    /// <summary>Bytes of blocks in use (PyTorch's memory_allocated).</summary>
    public long Allocated { get; private set; }
    public long PeakAllocated { get; private set; }
    /// <summary>How many segments were obtained from and given back to the device (cudaMalloc / cudaFree calls).</summary>
    public int SegmentAllocations { get; private set; }
    public int SegmentFrees { get; private set; }
    /// <summary>Why the last segment could not be obtained (null when it could).</summary>
    public string? LastRefusal { get; private set; }

    public IReadOnlyList<Segment> Segments => _segments;

    /// <summary>Starts the peaks again from the current figures.</summary>
    public void ResetPeaks() => (PeakAllocated, PeakReserved) = (Allocated, Reserved);

    /// <summary>The largest free (cached) block, 0 when none.</summary>
    public long LargestFreeBlock => Math.Max(_smallPool.Count > 0 ? _smallPool.Max!.Size : 0, _largePool.Count > 0 ? _largePool.Max!.Size : 0);

    /// <summary>Called with each segment obtained (true) or released (false), so the tracker can log it.</summary>
    public Action<Segment, bool>? OnSegment { get; set; }

    /// <summary>
    /// DeviceCachingAllocator::malloc: the best-fitting cached block of the right pool, else a new segment; when the
    /// device refuses one, the cached segments are released and it is asked again. Returns null when even that fails
    /// (then <see cref="LastRefusal"/> says why). The block is at least `requested` bytes, at an offset that is a
    /// multiple of 512 B.
    /// </summary>
    public Block? Allocate(long requested)
    {
        long size = RoundSize(requested);
        bool small = IsSmall(size);
        SortedSet<Block> pool = small ? _smallPool : _largePool;
        Block? block = BestFit(pool, size);
        if (block is null)
        {
            long segmentSize = SegmentSize(size);
            // malloc: alloc_block, else release_available_cached_blocks and retry (that step frees only blocks of at
            // least max_split_size, and returns false at once when max_split_size is unlimited, PyTorch's default:
            // so it does nothing here), else release_cached_blocks (every cached segment that is wholly free) and retry.
            block = NewSegment(segmentSize, small);
            if (block is null && ReleaseCache() > 0) block = NewSegment(segmentSize, small);
            if (block is null) return null;
        }
        // alloc_found_block: split off the rest when should_split says so; the rest goes back to the pool.
        if (ShouldSplit(block, size))
        {
            var rest = new Block(block.Segment, block.Offset + size, block.Size - size) { Prev = block, Next = block.Next };
            if (block.Next is not null) block.Next.Prev = rest;
            block.Next = rest;
            block.Size = size;
            pool.Add(rest);
        }
        if (block.Offset % MinBlockSize != 0)
            throw new InvalidOperationException($"caching allocator: block offset {block.Offset} is not a multiple of {MinBlockSize} B");
        block.InUse = true;
        block.Requested = requested;
        Allocated += block.Size;
        PeakAllocated = Math.Max(PeakAllocated, Allocated);
        return block;
    }

    /// <summary>get_free_block: the smallest cached block of the pool that holds `size` (lower_bound), lowest address first.</summary>
    static Block? BestFit(SortedSet<Block> pool, long size)
    {
        if (pool.Count == 0 || pool.Max!.Size < size) return null;
        Block found = pool.GetViewBetween(new Block(null, -1, size), pool.Max).Min!;
        pool.Remove(found);
        return found;
    }

    /// <summary>should_split: the small pool splits a remainder of at least 512 B, the large pool one of more than 1 MiB.</summary>
    static bool ShouldSplit(Block block, long size)
    {
        long remaining = block.Size - size;
        return block.Segment.IsSmall ? remaining >= MinBlockSize : remaining > SmallSize;
    }

    /// <summary>alloc_block: one new segment from the device, as one free block; null when the limit or the device refuses.</summary>
    Block? NewSegment(long size, bool small)
    {
        if (Limit is long limit && Reserved + size > limit)
        {
            LastRefusal = $"a new {Bytes.Exact(size)} segment would reserve {Bytes.Exact(Reserved + size)}, over the memory limit of {Bytes.Exact(limit)}";
            return null;
        }
        if (MaxBufferBytes is long cap && size > cap)
        {
            LastRefusal = $"a new {Bytes.Exact(size)} segment is larger than the largest single buffer allowed ({Bytes.Exact(cap)})";
            return null;
        }
        MemoryBuffer1D<byte, Stride1D.Dense> buffer;
        try
        {
            buffer = _accelerator.Allocate1D<byte>(size);
        }
        catch (Exception e) when (e is AcceleratorException or OutOfMemoryException)
        {
            LastRefusal = $"the device refused a new {Bytes.Exact(size)} segment ({e.GetType().Name}: {e.Message.Trim()})";
            return null;
        }
        LastRefusal = null;
        var block = new Block(null, 0, size);
        var segment = new Segment(_nextSegmentId++, buffer, small, block);
        block.Segment = segment;
        _segments.Add(segment);
        Reserved += size;
        PeakReserved = Math.Max(PeakReserved, Reserved);
        SegmentAllocations++;
        OnSegment?.Invoke(segment, true);
        return block;
    }

    /// <summary>free_block: the block becomes cached, merged with free neighbours (try_merge_blocks); the segment stays.</summary>
    public void Free(Block block)
    {
        if (!block.InUse) throw new InvalidOperationException("caching allocator: block freed twice");
        block.InUse = false;
        block.Requested = 0;
        block.Owner = "";
        block.Category = null;
        Allocated -= block.Size;
        SortedSet<Block> pool = block.Segment.IsSmall ? _smallPool : _largePool;
        if (block.Prev is { InUse: false } prev)
        {
            pool.Remove(prev);
            block.Offset = prev.Offset;
            block.Size += prev.Size;
            block.Prev = prev.Prev;
            if (block.Prev is not null) block.Prev.Next = block;
            else block.Segment.First = block;
        }
        if (block.Next is { InUse: false } next)
        {
            pool.Remove(next);
            block.Size += next.Size;
            block.Next = next.Next;
            if (block.Next is not null) block.Next.Prev = block;
        }
        pool.Add(block);
    }

    /// <summary>
    /// release_cached_blocks (torch.cuda.empty_cache): every segment that is one free block goes back to the device.
    /// A segment with any block in use stays, free parts and all. Returns the bytes released.
    /// </summary>
    public long ReleaseCache()
    {
        long released = 0;
        foreach (var pool in new[] { _smallPool, _largePool })
        {
            foreach (var b in pool.Where(b => b.Prev is null && b.Next is null).ToList())
            {
                pool.Remove(b);
                _segments.Remove(b.Segment);
                released += b.Segment.Size;
                Reserved -= b.Segment.Size;
                SegmentFrees++;
                OnSegment?.Invoke(b.Segment, false);
                b.Segment.Buffer.Dispose();
            }
        }
        return released;
    }

    public void Dispose()
    {
        foreach (var s in _segments) s.Buffer.Dispose();
        _segments.Clear();
        _smallPool.Clear();
        _largePool.Clear();
        Reserved = 0;
        Allocated = 0;
    }
}
