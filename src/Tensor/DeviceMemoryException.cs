namespace ScratchNet.Tensor;

/// <summary>
/// A device allocation failed: over the --memory-limit budget, or the driver itself said out of memory.
/// The message names the request, the tensor, the limit and the live bytes per category; callers that
/// know the model add advice (<see cref="Advice"/>).
/// </summary>
public sealed class DeviceMemoryException : Exception
{
    public DeviceMemoryException(string message, long requestedBytes, string tensorName, int[] shape,
        MemoryCategory category, long? limit, IReadOnlyDictionary<MemoryCategory, long> liveByCategory, Exception? inner = null)
        : base(message, inner)
    {
        RequestedBytes = requestedBytes;
        TensorName = tensorName;
        Shape = shape;
        Category = category;
        Limit = limit;
        LiveByCategory = liveByCategory;
    }

    public long RequestedBytes { get; }
    public string TensorName { get; }
    public int[] Shape { get; }
    public MemoryCategory Category { get; }
    public long? Limit { get; }
    /// <summary>Set when the request was larger than the device's largest single buffer (the cap, in bytes).</summary>
    public long? BufferCap { get; init; }
    public IReadOnlyDictionary<MemoryCategory, long> LiveByCategory { get; }
    /// <summary>Lines of advice added by whoever knows the model (the batch size that fits, ...).</summary>
    public List<string> Advice { get; } = [];

    public string FullMessage => Advice.Count == 0 ? Message : Message + Environment.NewLine + string.Join(Environment.NewLine, Advice.Select(a => "  hint: " + a));
}
