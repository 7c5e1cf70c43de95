using ILGPU;
using ILGPU.Runtime;

namespace ScratchNet.Tensor;

/// <summary>
/// Every device buffer in ScratchNet is created here. The tracker knows each buffer's name, shape,
/// category and exact size (elements x element size), and keeps per category: live bytes, peak bytes,
/// the number of allocations and frees, plus an event log of every allocation and free.
/// With a <see cref="Limit"/> any accelerator behaves like a card of that size.
///
/// Three figures per category (see <see cref="CachingAllocator"/>'s glossary): requested (exact bytes),
/// allocated (the blocks that hold them) and, in total, reserved (the device buffers held). With the exact
/// allocator (the default) each tensor is its own device buffer of exactly its size, so the three are equal;
/// with the caching allocator tensors are 512 B-aligned blocks of cached segments, as in PyTorch.
/// </summary>
public sealed class MemoryTracker : IDisposable
{
    static readonly MemoryCategory[] Categories = Enum.GetValues<MemoryCategory>();

    readonly Accelerator _accelerator;
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    readonly Dictionary<MemoryCategory, CategoryStats> _stats = Categories.ToDictionary(c => c, _ => new CategoryStats());
    readonly List<MemoryEvent> _events = [];
    readonly List<ITensor> _live = [];

    public MemoryTracker(Accelerator accelerator, long? limit = null, long? maxBufferBytes = null, AllocatorKind allocator = AllocatorKind.Exact)
    {
        _accelerator = accelerator;
        MaxBufferBytes = maxBufferBytes;
        if (allocator == AllocatorKind.Caching)
        {
            Caching = new CachingAllocator(accelerator) { MaxBufferBytes = maxBufferBytes };
            Caching.OnSegment = (segment, obtained) => _events.Add(new MemoryEvent(_clock.Elapsed.TotalMilliseconds, Step, Phase,
                obtained ? MemoryEventKind.SegmentAlloc : MemoryEventKind.SegmentFree, $"segment {segment.Id}", [], MemoryCategory.Other,
                segment.Size, LiveBytes) { AllocatedAfter = AllocatedBytes, ReservedAfter = Caching.Reserved });
        }
        Limit = limit;
    }

    /// <summary>The caching allocator that serves every tensor, or null with the exact allocator (one device buffer per tensor).</summary>
    public CachingAllocator? Caching { get; }
    public AllocatorKind Allocator => Caching is null ? AllocatorKind.Exact : AllocatorKind.Caching;

    /// <summary>
    /// Budget in bytes for the device: with the exact allocator, for all live buffers together; with the caching
    /// allocator, for the segments it reserves (what a card of that size would run out of). Null: the device's own.
    /// </summary>
    public long? Limit
    {
        get => _limit;
        set
        {
            _limit = value;
            if (Caching is not null) Caching.Limit = value;
        }
    }

    long? _limit;

    /// <summary>
    /// The largest single buffer the device advertises (OpenCL's CL_DEVICE_MAX_MEM_ALLOC_SIZE), enforced here
    /// before the driver is asked: PoCL accepted a 2.2 GB buffer while advertising 2.00 GiB, and a driver that
    /// accepts more than it promises may fail later, far from the cause. Null: no cap but the total.
    /// </summary>
    public long? MaxBufferBytes { get; }
    /// <summary>Training step number written into events (set by the trainer).</summary>
    public int Step { get; set; }
    /// <summary>"setup", "forward", "backward", "update", "eval": written into events.</summary>
    public string Phase
    {
        get => _phase;
        set
        {
            if (value == _phase) return;
            _phase = value;
            if (LogPhases) _events.Add(new MemoryEvent(_clock.Elapsed.TotalMilliseconds, Step, _phase, MemoryEventKind.Phase, "", [], MemoryCategory.Other, 0, LiveBytes));
        }
    }

    string _phase = "setup";

    /// <summary>
    /// When true, every phase change is logged as a Phase event too, so a timeline shows the steps even
    /// when no buffer is allocated in them (the memory command turns this on; training runs leave it off
    /// so the log does not grow with every step).
    /// </summary>
    public bool LogPhases { get; set; }

    /// <summary>Requested bytes of the live tensors.</summary>
    public long LiveBytes => _stats.Values.Sum(s => s.Live);
    /// <summary>The highest total of live bytes seen at any moment (not the sum of category peaks).</summary>
    public long PeakBytes { get; private set; }
    /// <summary>The phase, and the tensor whose allocation first reached <see cref="PeakBytes"/>.</summary>
    public (string Phase, string Name) PeakAt { get; private set; } = ("", "");
    /// <summary>Bytes of the blocks that hold the live tensors (= <see cref="LiveBytes"/> with the exact allocator).</summary>
    public long AllocatedBytes => Caching?.Allocated ?? LiveBytes;
    public long PeakAllocatedBytes => Caching?.PeakAllocated ?? PeakBytes;
    /// <summary>Bytes of device buffers held (= <see cref="LiveBytes"/> with the exact allocator).</summary>
    public long ReservedBytes => Caching?.Reserved ?? LiveBytes;
    public long PeakReservedBytes => Caching?.PeakReserved ?? PeakBytes;
    public long AllocationCount => _stats.Values.Sum(s => s.Allocations);
    public long FreeCount => _stats.Values.Sum(s => s.Frees);
    public IReadOnlyList<MemoryEvent> Events => _events;
    public IReadOnlyList<ITensor> LiveTensors => _live;

    public CategoryStats Stats(MemoryCategory category) => _stats[category];
    public IReadOnlyDictionary<MemoryCategory, long> LiveByCategory() => _stats.ToDictionary(kv => kv.Key, kv => kv.Value.Live);

    /// <summary>Creates a tracked device tensor of the given shape; contents are zero. `layer` names the layer it belongs to ("" for none).</summary>
    public Tensor<T> Allocate<T>(string name, int[] shape, MemoryCategory category, string layer = "") where T : unmanaged
    {
        long elements = 1;
        foreach (int d in shape)
        {
            if (d <= 0) throw new ArgumentException($"tensor '{name}': dimension {d} in [{string.Join(", ", shape)}] must be positive");
            elements *= d;
        }
        long bytes = elements * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (MaxBufferBytes is long cap && bytes > cap)
            throw OutOfMemory(name, shape, category, bytes, $"larger than the largest single buffer allowed ({Bytes.Exact(cap)}: the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE " +
                "or --max-buffer, checked by ScratchNet before asking the driver)", null, bufferCap: cap);
        Tensor<T> tensor = Caching is null
            ? AllocateExact<T>(name, shape, category, layer, elements, bytes)
            : AllocateCached<T>(name, shape, category, layer, bytes);
        var s = _stats[category];
        s.Live += bytes;
        s.Peak = Math.Max(s.Peak, s.Live);
        s.AllocatedLive += tensor.Block?.Size ?? bytes;
        s.AllocatedPeak = Math.Max(s.AllocatedPeak, s.AllocatedLive);
        s.Allocations++;
        if (LiveBytes > PeakBytes)
        {
            PeakBytes = LiveBytes;
            PeakAt = (Phase, name);
        }
        _live.Add(tensor);
        Record(MemoryEventKind.Alloc, tensor, tensor.Block?.Size ?? bytes);
        return tensor;
    }

    /// <summary>The exact allocator: a device buffer of its own, exactly `bytes` long.</summary>
    Tensor<T> AllocateExact<T>(string name, int[] shape, MemoryCategory category, string layer, long elements, long bytes) where T : unmanaged
    {
        if (Limit is long limit && LiveBytes + bytes > limit)
            throw OutOfMemory(name, shape, category, bytes, $"over the memory limit of {Bytes.Exact(limit)} ({Bytes.Format(limit)})", null);
        MemoryBuffer1D<T, Stride1D.Dense> buffer;
        try
        {
            buffer = _accelerator.Allocate1D<T>(elements);
            buffer.MemSetToZero();
        }
        catch (Exception e) when (e is AcceleratorException or OutOfMemoryException)
        {
            // The CPU accelerator and the host backend keep their buffers in host memory: say so, not "device".
            string who = _accelerator.AcceleratorType == AcceleratorType.CPU ? "host memory (where the CPU accelerator and the host backend keep buffers)" : "the device";
            throw OutOfMemory(name, shape, category, bytes, $"{who} refused it ({e.GetType().Name}: {e.Message.Trim()})", e);
        }
        return new Tensor<T>(this, buffer, buffer.View, null, name, shape, category, bytes, layer);
    }

    /// <summary>The caching allocator: a block of a segment, seen by kernels as an ordinary view.</summary>
    Tensor<T> AllocateCached<T>(string name, int[] shape, MemoryCategory category, string layer, long bytes) where T : unmanaged
    {
        CachingAllocator.Block block = Caching!.Allocate(bytes)
            ?? throw OutOfMemory(name, shape, category, bytes, $"the caching allocator found no cached block and {Caching.LastRefusal} (its cached segments were released and the request retried, as PyTorch does)", null);
        block.Owner = name;
        block.Category = category;
        // ILGPU's Cast does not check alignment: a float view at an offset that is not a multiple of 4 B would
        // silently shift. Blocks start at multiples of 512 B (CachingAllocator.Allocate asserts it).
        var view = block.Segment.Buffer.View.AsContiguous().SubView(block.Offset, bytes).Cast<T>();
        view.MemSetToZero();
        return new Tensor<T>(this, block.Segment.Buffer, view, block, name, shape, category, bytes, layer);
    }

    /// <summary>Live bytes per category after each event, in event order (for timelines and charts).</summary>
    public List<Dictionary<MemoryCategory, long>> LiveByCategoryOverEvents()
    {
        var live = Categories.ToDictionary(c => c, _ => 0L);
        var result = new List<Dictionary<MemoryCategory, long>>();
        foreach (var e in _events)
        {
            if (e.Kind == MemoryEventKind.Alloc) live[e.Category] += e.Bytes;
            else if (e.Kind == MemoryEventKind.Free) live[e.Category] -= e.Bytes;
            result.Add(new Dictionary<MemoryCategory, long>(live));
        }
        return result;
    }

    /// <summary>A tracked 1D tensor holding a copy of host data.</summary>
    public Tensor<T> AllocateFrom<T>(string name, T[] data, MemoryCategory category) where T : unmanaged
    {
        var tensor = Allocate<T>(name, [data.Length], category);
        tensor.CopyFrom(data);
        return tensor;
    }

    internal void Release(ITensor tensor, CachingAllocator.Block? block)
    {
        if (!_live.Remove(tensor)) return;
        var s = _stats[tensor.Category];
        s.Live -= tensor.Bytes;
        s.AllocatedLive -= block?.Size ?? tensor.Bytes;
        s.Frees++;
        if (block is not null) Caching!.Free(block);
        Record(MemoryEventKind.Free, tensor, block?.Size ?? tensor.Bytes);
    }

    /// <summary>
    /// Starts the peaks again from what is live now (torch.cuda.reset_peak_memory_stats), so the next peaks are those
    /// of what follows.
    /// </summary>
    public void ResetPeaks()
    {
        foreach (var s in _stats.Values) (s.Peak, s.AllocatedPeak) = (s.Live, s.AllocatedLive);
        PeakBytes = LiveBytes;
        PeakAt = (Phase, "");
        Caching?.ResetPeaks();
    }

    /// <summary>Gives the cached segments that are wholly free back to the device (torch.cuda.empty_cache); returns the bytes released.</summary>
    public long ReleaseCache() => Caching?.ReleaseCache() ?? 0;

    /// <summary>Frees the caching allocator's segments (the tensors must have been disposed; the exact allocator holds nothing).</summary>
    public void Dispose() => Caching?.Dispose();

    void Record(MemoryEventKind kind, ITensor t, long allocated) =>
        _events.Add(new MemoryEvent(_clock.Elapsed.TotalMilliseconds, Step, Phase, kind, t.Name, t.Shape, t.Category, t.Bytes, LiveBytes)
        {
            AllocatedAfter = AllocatedBytes, ReservedAfter = ReservedBytes, Allocated = allocated,
        });

    DeviceMemoryException OutOfMemory(string name, int[] shape, MemoryCategory category, long bytes, string why, Exception? inner, long? bufferCap = null)
    {
        var live = LiveByCategory();
        string perCategory = string.Join(", ", Categories.Where(c => live[c] > 0).Select(c => $"{c} {Bytes.Format(live[c])}"));
        string message =
            $"out of device memory: allocating {Bytes.Format(bytes)} for '{name}' [{string.Join(", ", shape)}] ({category}) failed: {why}. " +
            $"Live: {Bytes.Format(LiveBytes)}" + (perCategory.Length > 0 ? $" ({perCategory})" : "") +
            (Caching is null ? "" : $"; reserved {Bytes.Format(ReservedBytes)} in {Caching.Segments.Count} segment{(Caching.Segments.Count == 1 ? "" : "s")}, largest free block {Bytes.Format(Caching.LargestFreeBlock)}") +
            (Limit is long l ? $"; limit {Bytes.Format(l)}, free under it {Bytes.Format(Math.Max(0, l - ReservedBytes))}" : "") + ".";
        return new DeviceMemoryException(message, bytes, name, shape, category, Limit, live, inner) { BufferCap = bufferCap };
    }
}

/// <summary>Live and peak bytes and counts for one category.</summary>
public sealed class CategoryStats
{
    /// <summary>Requested bytes of the live tensors of the category.</summary>
    public long Live { get; internal set; }
    public long Peak { get; internal set; }
    /// <summary>Bytes of the blocks that hold them (rounded by the caching allocator; = Live with the exact one).</summary>
    public long AllocatedLive { get; internal set; }
    public long AllocatedPeak { get; internal set; }
    public long Allocations { get; internal set; }
    public long Frees { get; internal set; }
}

/// <summary>
/// Alloc and Free change live bytes; Phase marks the start of a phase (no bytes); SegmentAlloc and SegmentFree are
/// the caching allocator obtaining a device buffer or giving one back (Bytes = the segment's size).
/// </summary>
public enum MemoryEventKind { Alloc, Free, Phase, SegmentAlloc, SegmentFree }

/// <summary>
/// One allocation or free: when (ms since the tracker started), in which step and phase, what, its requested bytes,
/// and the requested total after it; also the block's allocated bytes and the allocated and reserved totals after it.
/// </summary>
public sealed record MemoryEvent(double TimeMs, int Step, string Phase, MemoryEventKind Kind, string Name, int[] Shape,
    MemoryCategory Category, long Bytes, long LiveAfter)
{
    /// <summary>The bytes of the block that held the tensor (the caching allocator rounds; = Bytes with the exact one).</summary>
    public long Allocated { get; init; }
    public long AllocatedAfter { get; init; }
    public long ReservedAfter { get; init; }
}

/// <summary>--allocator: exact (each tensor its own device buffer of exactly its size) or caching (PyTorch's rules).</summary>
public enum AllocatorKind { Exact, Caching }
