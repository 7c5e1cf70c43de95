using ILGPU;
using ILGPU.Runtime;

namespace ScratchNet.Tensor;

/// <summary>What the tracker needs to know of any tensor, whatever its element type.</summary>
public interface ITensor
{
    string Name { get; }
    int[] Shape { get; }
    MemoryCategory Category { get; }
    long Bytes { get; }
    /// <summary>The layer that created it ("conv1"), or "" for the model's own buffers (input, loss, flat parameters).</summary>
    string Layer { get; }
}

/// <summary>
/// One device buffer with a name, a shape (row-major) and a memory category. Created only by
/// <see cref="MemoryTracker.Allocate{T}"/>; disposing it frees the buffer and tells the tracker.
/// </summary>
public sealed class Tensor<T> : ITensor, IDisposable where T : unmanaged
{
    readonly MemoryTracker _tracker;

    readonly MemoryBuffer _storage;

    internal Tensor(MemoryTracker tracker, MemoryBuffer storage, ArrayView<T> view, CachingAllocator.Block? block, string name, int[] shape,
        MemoryCategory category, long bytes, string layer)
    {
        Layer = layer;
        _tracker = tracker;
        _storage = storage;
        View = view;
        _offsetInBytes = OffsetInBytes(view);
        Block = block;
        Name = name;
        Shape = shape;
        Category = category;
        Bytes = bytes;
    }

    /// <summary>
    /// The tensor's elements as a plain 1D view: what kernels take. With the exact allocator the view is the whole
    /// of a device buffer of its own; with the caching allocator, a range of a segment (see <see cref="Block"/>).
    /// </summary>
    public ArrayView<T> View { get; }
    /// <summary>The caching allocator's block that holds the tensor, or null with the exact allocator.</summary>
    public CachingAllocator.Block? Block { get; }
    public string Name { get; }
    public int[] Shape { get; }
    public MemoryCategory Category { get; }
    public long Bytes { get; }
    public long Length => View.Length;
    public string Layer { get; }

    /// <summary>
    /// Copies host values into the start of the buffer. Buffers of ILGPU's CPU accelerator live in host
    /// memory, so they are written directly (after the accelerator has finished what it was given), which
    /// unlike ILGPU's copy allocates nothing.
    /// </summary>
    public void CopyFrom(ReadOnlySpan<T> source)
    {
        if (_storage.AcceleratorType == AcceleratorType.CPU)
        {
            _storage.Accelerator.Synchronize();
            source.CopyTo(HostSpan());
            return;
        }
        View.SubView(0, source.Length).CopyFromCPU(source);
    }

    /// <summary>Copies the start of the buffer into host memory (directly for CPU-accelerator buffers).</summary>
    public void CopyTo(Span<T> destination)
    {
        if (_storage.AcceleratorType == AcceleratorType.CPU)
        {
            _storage.Accelerator.Synchronize();
            HostSpan()[..destination.Length].CopyTo(destination);
            return;
        }
        View.SubView(0, destination.Length).CopyToCPU(destination);
    }

    /// <summary>Copies destination.Length elements starting at element `offset` into host memory (for streaming large buffers).</summary>
    public void CopyTo(long offset, Span<T> destination)
    {
        if (_storage.AcceleratorType == AcceleratorType.CPU)
        {
            _storage.Accelerator.Synchronize();
            HostSpan().Slice(checked((int)offset), destination.Length).CopyTo(destination);
            return;
        }
        View.SubView(offset, destination.Length).CopyToCPU(destination);
    }

    readonly long _offsetInBytes;

    // Where the view starts in its buffer (a generic constraint reads the interface's property without boxing).
    static long OffsetInBytes<TView>(TView view) where TView : IContiguousArrayView => view.IndexInBytes;

    unsafe Span<T> HostSpan() => new((byte*)_storage.NativePtr + _offsetInBytes, checked((int)Length));

    public T[] ToArray()
    {
        var result = new T[Length];
        CopyTo(result);
        return result;
    }

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}] {Category} {Bytes} B";

    bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (Block is null) _storage.Dispose();
        _tracker.Release(this, Block);
    }
}
