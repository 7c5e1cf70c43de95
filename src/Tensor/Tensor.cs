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

    internal Tensor(MemoryTracker tracker, MemoryBuffer1D<T, Stride1D.Dense> buffer, string name, int[] shape, MemoryCategory category, long bytes, string layer)
    {
        Layer = layer;
        _tracker = tracker;
        Buffer = buffer;
        Name = name;
        Shape = shape;
        Category = category;
        Bytes = bytes;
    }

    public MemoryBuffer1D<T, Stride1D.Dense> Buffer { get; }
    /// <summary>The whole buffer as a plain 1D view: what kernels take.</summary>
    public ArrayView<T> View => Buffer.View;
    public string Name { get; }
    public int[] Shape { get; }
    public MemoryCategory Category { get; }
    public long Bytes { get; }
    public long Length => Buffer.Length;
    public string Layer { get; }

    /// <summary>
    /// Copies host values into the start of the buffer. Buffers of ILGPU's CPU accelerator live in host
    /// memory, so they are written directly (after the accelerator has finished what it was given), which
    /// unlike ILGPU's copy allocates nothing.
    /// </summary>
    public void CopyFrom(ReadOnlySpan<T> source)
    {
        if (Buffer.AcceleratorType == AcceleratorType.CPU)
        {
            Buffer.Accelerator.Synchronize();
            source.CopyTo(HostSpan());
            return;
        }
        View.SubView(0, source.Length).CopyFromCPU(source);
    }

    /// <summary>Copies the start of the buffer into host memory (directly for CPU-accelerator buffers).</summary>
    public void CopyTo(Span<T> destination)
    {
        if (Buffer.AcceleratorType == AcceleratorType.CPU)
        {
            Buffer.Accelerator.Synchronize();
            HostSpan()[..destination.Length].CopyTo(destination);
            return;
        }
        View.SubView(0, destination.Length).CopyToCPU(destination);
    }

    /// <summary>Copies destination.Length elements starting at element `offset` into host memory (for streaming large buffers).</summary>
    public void CopyTo(long offset, Span<T> destination)
    {
        if (Buffer.AcceleratorType == AcceleratorType.CPU)
        {
            Buffer.Accelerator.Synchronize();
            HostSpan().Slice(checked((int)offset), destination.Length).CopyTo(destination);
            return;
        }
        View.SubView(offset, destination.Length).CopyToCPU(destination);
    }

    unsafe Span<T> HostSpan() => new((void*)Buffer.NativePtr, checked((int)Length));
    public T[] ToArray() => Buffer.GetAsArray1D();

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}] {Category} {Bytes} B";

    public void Dispose()
    {
        if (Buffer.IsDisposed) return;
        Buffer.Dispose();
        _tracker.Release(this);
    }
}
