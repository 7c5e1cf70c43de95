using System.Text;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The tracker's measured bytes beside the closed-form estimate, per category, and every live buffer:
/// as text for people and as plain records for --json.
/// </summary>
public static class MemoryReport
{
    static readonly MemoryCategory[] Categories = Enum.GetValues<MemoryCategory>();

    public sealed record CategoryRow(string Category, long Live, long Peak, long Estimate, bool Match, long Allocations, long Frees, string Formula)
    {
        /// <summary>The blocks that hold the category's tensors (= Live and Peak with the exact allocator).</summary>
        public long Allocated { get; init; }
        public long AllocatedPeak { get; init; }
    }
    public sealed record BufferRow(string Name, int[] Shape, string Category, long Bytes);
    public sealed record Summary(List<CategoryRow> Categories, long TotalLive, long TotalEstimate, long PeakTotal,
        long Allocations, long Frees, long? AllocationsAfterFirstStep, long? Limit, List<BufferRow> Buffers)
    {
        /// <summary>Requested, allocated and reserved in total, and the caching allocator's segments.</summary>
        public AllocatorSummary Allocation { get; init; } = null!;
    }

    public static Summary Build(MemoryTracker tracker, MemoryEstimate estimate, long? allocationsAfterFirstStep)
    {
        var rows = Categories.Select(c =>
        {
            var s = tracker.Stats(c);
            return new CategoryRow(c.ToString(), s.Live, s.Peak, estimate[c], s.Live == estimate[c], s.Allocations, s.Frees, estimate.Formula(c))
            {
                Allocated = s.AllocatedLive, AllocatedPeak = s.AllocatedPeak,
            };
        }).ToList();
        var buffers = tracker.LiveTensors.Select(t => new BufferRow(t.Name, t.Shape, t.Category.ToString(), t.Bytes)).ToList();
        return new Summary(rows, tracker.LiveBytes, estimate.Total, tracker.PeakBytes, tracker.AllocationCount, tracker.FreeCount,
            allocationsAfterFirstStep, tracker.Limit, buffers) { Allocation = AllocatorSummary.Of(tracker) };
    }

    public static string Format(Summary s, string modelLine)
    {
        var sb = new StringBuilder();
        sb.AppendLine("Memory report (device buffers: bytes requested, measured by the tracker; estimate = closed form)");
        sb.AppendLine($"  model: {modelLine}");
        sb.AppendLine($"  {"category",-15} {"requested live",15} {"requested peak",15} {"estimate",13}  {"",-5}  formula");
        foreach (var r in s.Categories)
            sb.AppendLine($"  {r.Category,-15} {Bytes.Exact(r.Live),15} {Bytes.Exact(r.Peak),15} {Bytes.Exact(r.Estimate),13}  {(r.Match ? "=" : "DIFF"),-5}  {r.Formula}");
        sb.AppendLine($"  {"total",-15} {Bytes.Exact(s.TotalLive),15} {Bytes.Exact(s.PeakTotal),15} {Bytes.Exact(s.TotalEstimate),13}  {(s.TotalLive == s.TotalEstimate ? "=" : "DIFF"),-5}  ({Bytes.Format(s.TotalLive)} live; peak = highest total at any moment)");
        var a = s.Allocation;
        if (a.Allocator == "exact")
            sb.AppendLine($"  allocator: exact (each tensor its own device buffer of exactly its size): requested = allocated = reserved");
        else
        {
            sb.AppendLine($"  allocator: caching: allocated {Bytes.Exact(a.Allocated)} (peak {Bytes.Exact(a.PeakAllocated)}), reserved {Bytes.Exact(a.Reserved)} " +
                $"(peak {Bytes.Exact(a.PeakReserved)}) in {a.Segments.Count} segment{(a.Segments.Count == 1 ? "" : "s")}; allocated / reserved = {a.Utilisation:0.0}%, largest free block {Bytes.Exact(a.LargestFreeBlock)}");
            sb.AppendLine($"  allocated by category: {string.Join(", ", s.Categories.Where(r => r.Allocated > 0).Select(r => $"{r.Category} {Bytes.Exact(r.Allocated)}"))}");
        }
        if (s.Limit is long limit)
            sb.AppendLine($"  memory limit: {Bytes.Exact(limit)} ({Bytes.Format(limit)}), {100.0 * s.PeakTotal / limit:0.0}% used at peak");
        sb.Append($"  allocations: {s.Allocations}, frees: {s.Frees}");
        if (s.AllocationsAfterFirstStep is long after)
            sb.Append($"; allocations after the first training step: {after}" + (after == 0 ? " (steady state: every step reuses the same buffers)" : ""));
        sb.AppendLine();
        sb.AppendLine();
        sb.AppendLine("Live buffers");
        sb.AppendLine($"  {"name",-22} {"shape",-14} {"category",-15} {"bytes",13}");
        foreach (var b in s.Buffers)
            sb.AppendLine($"  {b.Name,-22} {"[" + string.Join(", ", b.Shape) + "]",-14} {b.Category,-15} {Bytes.Exact(b.Bytes),13}");
        return sb.ToString();
    }
}
