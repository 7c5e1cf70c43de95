using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>What one probe measured: per category, the estimate, the live bytes after the steps and the peak during them.</summary>
public sealed record ProbeCategory(string Category, long Estimate, long Live, long Peak, long Difference, string Formula)
{
    /// <summary>The blocks that hold the category's tensors, live after the steps and at their peak (= Live and Peak with the exact allocator).</summary>
    public long Allocated { get; init; }
    public long AllocatedPeak { get; init; }
    /// <summary>The category's own peak as the estimate predicts it (eager lifetimes; in the planned mode the peak is the live figure).</summary>
    public long PeakEstimate { get; init; }
}

public sealed record ProbeResult(int BatchSize, string Optimizer, long Parameters, List<ProbeCategory> Categories,
    long TotalEstimate, long TotalLive, long PeakTotal, long BytesPerSample, long FixedBytes, long AllocationsDuringSteps,
    IReadOnlyList<MemoryEvent> Events, List<Dictionary<MemoryCategory, long>> Timeline, List<LayerMemoryRow> Layers)
{
    /// <summary>Requested, allocated and reserved in total, and the caching allocator's segments.</summary>
    public AllocatorSummary Allocation { get; init; } = null!;
    /// <summary>Which rounding turns the parameters' requested bytes into their allocated bytes (caching allocator only).</summary>
    public string ParameterRounding { get; init; } = "";
    /// <summary>"planned" or "eager".</summary>
    public string Lifetime { get; init; } = "planned";
    /// <summary>Eager lifetimes: the estimated peak of a step, its phase and the allocation that reaches it; null when planned.</summary>
    public EagerEstimate.Result? EagerEstimate { get; init; }
    /// <summary>The phase, and the allocation, at which the measured total first reached its peak.</summary>
    public string PeakPhase { get; init; } = "";
    public string PeakName { get; init; } = "";
    /// <summary>The planned mode's estimate of the total (every buffer at once), for comparison.</summary>
    public long PlannedTotal { get; init; }
    /// <summary>What the driver says the probe took (free memory before the session minus after the steps), or null where it says nothing.</summary>
    public long? DriverBytes { get; init; }
    /// <summary>The driver's query (cudaMemGetInfo, CL_DEVICE_GLOBAL_FREE_MEMORY_AMD), or why there is no figure.</summary>
    public string DriverSource { get; init; } = "";
    /// <summary>--accumulate: the batch ran as this many micro-batches of <see cref="MicroBatch"/> rows (1: the whole batch at once).</summary>
    public int Accumulate { get; init; } = 1;
    /// <summary>The rows on the device at once, which the per-sample bytes are counted for.</summary>
    public int MicroBatch { get; init; }
    /// <summary>--recompute: the estimate of the total without it (null without --recompute), and the blocks run twice (by their first layer).</summary>
    public long? WithoutRecompute { get; init; }
    public List<string> RecomputedBlocks { get; init; } = [];
    /// <summary>--precision: "fp32", "fp16" or "bf16".</summary>
    public string Precision { get; init; } = "fp32";

    /// <summary>The driver's figure beside the tracker's, with the difference explained; or why there is none.</summary>
    public string DriverLine()
    {
        if (DriverBytes is not long used) return $"driver: no figure ({DriverSource})";
        long tracked = Allocation.Reserved;
        long diff = used - tracked;
        return $"driver ({DriverSource}, free before the model minus free after the steps): {Bytes.Exact(used)}; the tracker's device buffers: " +
            $"{Bytes.Exact(tracked)}{(Allocation.Allocator == "caching" ? " reserved" : "")}, so the driver counts {Bytes.Exact(Math.Abs(diff))} {(diff >= 0 ? "more" : "less")}. " +
            "A driver hands out memory in pages and rounds every buffer up to them (CUDA: 2 MiB pages for large buffers), " +
            "and keeps memory of its own for kernels and launches; the context itself was made before the first figure, so it is not in it";
    }
}

/// <summary>
/// One row of the per-layer table: the bytes a layer holds by category, measured (its tracked buffers, and its
/// views into the flat parameter, gradient and optimizer-state buffers) beside the closed-form estimate.
/// "input" and "loss" rows hold the model's own buffers (the batch; per-row losses and predictions).
/// </summary>
public sealed record LayerMemoryRow(string Layer, string Kind, string OutputShape, long Parameters,
    Dictionary<string, long> Measured, Dictionary<string, long> Estimate, bool Match, string Note)
{
    public long MeasuredTotal => Measured.Values.Sum();
    public long EstimateTotal => Estimate.Values.Sum();
}

/// <summary>Prediction only at the probe's batch: the peak per category and in total, measured and estimated.</summary>
public sealed record InferenceResult(int BatchSize, Dictionary<string, long> MeasuredPeak, Dictionary<string, long> EstimatePeak,
    long MeasuredTotalPeak, long EstimateTotalPeak);

/// <summary>
/// Runs real training steps at one batch size on a device and measures every category, so the closed
/// form can be checked against what the tracker saw. The batch is real data, cycled if the batch is
/// larger than the training split.
/// </summary>
public static class MemoryProbe
{
    public const int Steps = 2;

    /// <summary>
    /// The batch every probe runs: the first `batch` training images, cycled when the split is smaller, normalised as
    /// training normalises them, with their labels and their indices in the split (for --dataset-on-device).
    /// </summary>
    public static (float[] Images, int[] Labels, int[] Indices) FirstRows(Dataset train, int batch)
    {
        DatasetInfo info = train.Info;
        var images = new float[(long)batch * info.ImageSize];
        var labels = new int[batch];
        var indices = new int[batch];
        var normalizer = new Normalizer(info);
        for (int i = 0; i < batch; i++)
        {
            int index = i % train.Count;
            indices[i] = index;
            normalizer.Normalize(train.Image(index), images.AsSpan(i * info.ImageSize, info.ImageSize));
            labels[i] = train.Labels[index];
        }
        return (images, labels, indices);
    }

    public static ProbeResult Run(ComputeDevice device, TrainConfig config, DatasetPair data)
    {
        Dataset train = data.Train;
        DatasetInfo info = train.Info;
        var driverBefore = device.DriverFreeMemory();
        using var session = new TrainingSession(device, config, info, logPhases: true);
        if (config.DatasetOnDevice) session.PlaceDataset(data);
        int batch = config.BatchSize;
        var (images, labels, indices) = FirstRows(train, batch);
        long allocationsBefore = session.Tracker.AllocationCount;
        for (int s = 0; s < Steps; s++)
        {
            session.Tracker.Phase = "upload";
            // The whole batch, in micro-batches with --accumulate (each uploaded or gathered in its turn).
            session.TrainBatch(images, indices, labels, batch);
        }
        session.Tracker.Phase = "done";
        var driverAfter = device.DriverFreeMemory();
        var estimate = session.Estimate();
        var tracker = session.Tracker;
        bool eager = config.Lifetime == LifetimeKind.Eager;
        var eagerEstimate = eager ? Training.EagerEstimate.Estimate(session.Network, session.MicroBatch, session.Optimizer.Name, session.Dataset?.Sizes) : null;
        // Planned: every buffer lives from setup on, so the estimate is the live figure and the peak. Eager: what stays after a step, and the peak during it.
        long Live(MemoryCategory c) => eagerEstimate?.LiveAfterStep[c] ?? estimate[c];
        var categories = Enum.GetValues<MemoryCategory>().Select(c => new ProbeCategory(c.ToString(), Live(c),
            tracker.Stats(c).Live, tracker.Stats(c).Peak, tracker.Stats(c).Live - Live(c), estimate.Formula(c))
        {
            Allocated = tracker.Stats(c).AllocatedLive, AllocatedPeak = tracker.Stats(c).AllocatedPeak,
            PeakEstimate = eagerEstimate?.CategoryPeaks[c] ?? estimate[c],
        }).ToList();
        return new ProbeResult(batch, session.Optimizer.Name, session.Model.ParameterCount, categories, categories.Sum(c => c.Estimate),
            tracker.LiveBytes, tracker.PeakBytes, MemoryEstimator.BytesPerSample(session.Network, session.Dataset?.Sizes),
            MemoryEstimator.FixedBytes(session.Network, session.Optimizer.Name, session.Dataset?.Sizes), tracker.AllocationCount - allocationsBefore,
            tracker.Events.ToList(), tracker.LiveByCategoryOverEvents(), eager ? [] : LayerRows(session, estimate))
        {
            Allocation = AllocatorSummary.Of(tracker),
            ParameterRounding = tracker.Caching is null ? "" : AllocatorSummary.ParameterRounding(session.Model),
            Lifetime = eager ? "eager" : "planned",
            EagerEstimate = eagerEstimate,
            PeakPhase = tracker.PeakAt.Phase,
            PeakName = tracker.PeakAt.Name,
            PlannedTotal = estimate.Total,
            DriverBytes = driverBefore is { } b0 && driverAfter is { } b1 ? b0.Free - b1.Free : null,
            DriverSource = driverBefore?.Source ?? device.NoDriverMemoryReason,
            Accumulate = config.Accumulate,
            MicroBatch = session.MicroBatch,
            Precision = config.Precision.ToString().ToLowerInvariant(),
            WithoutRecompute = config.Recompute ? MemoryEstimator.Estimate(session.Network with { Recompute = false }, session.MicroBatch, session.Optimizer.Name, session.Dataset?.Sizes).Total : null,
            RecomputedBlocks = session.Buffers.Recomputed.Select(b => session.Model.Layers[b.First].Name).ToList(),
        };
    }

    /// <summary>
    /// One session whose steps alternate between batch sizes, as training at one batch and evaluating at another
    /// does: per step, the peaks of requested, allocated and reserved bytes during it and the cache after it; then,
    /// with releaseCache, what torch.cuda.empty_cache would give back. The session's input buffers hold the largest batch.
    /// </summary>
    public static AlternationResult Alternate(ComputeDevice device, TrainConfig config, DatasetPair data, int[] batches, int rounds, bool releaseCache)
    {
        Dataset train = data.Train;
        DatasetInfo info = train.Info;
        int largest = batches.Max();
        using var session = new TrainingSession(device, config with { BatchSize = largest }, info);
        var (images, labels, _) = FirstRows(train, largest);
        var tracker = session.Tracker;
        var steps = new List<AlternationStep>();
        for (int r = 0; r < rounds; r++)
            foreach (int b in batches)
            {
                tracker.ResetPeaks();
                session.Upload(images, labels, b);
                session.TrainStep(labels, b);
                steps.Add(new AlternationStep(steps.Count + 1, b, tracker.PeakBytes, tracker.PeakAllocatedBytes, tracker.PeakReservedBytes,
                    tracker.ReservedBytes, tracker.Caching?.LargestFreeBlock ?? 0, tracker.Caching?.Segments.Count ?? 0));
            }
        long reservedBefore = tracker.ReservedBytes;
        long released = releaseCache ? tracker.ReleaseCache() : 0;
        return new AlternationResult(batches, steps, releaseCache, reservedBefore, released, tracker.ReservedBytes, tracker.AllocatedBytes);
    }

    /// <summary>The categories of the per-layer table, in its column order.</summary>
    public static readonly MemoryCategory[] LayerColumns =
        [MemoryCategory.Parameter, MemoryCategory.Gradient, MemoryCategory.OptimizerState, MemoryCategory.Input, MemoryCategory.Activation, MemoryCategory.Workspace, MemoryCategory.Temporary];

    /// <summary>
    /// Per layer, measured: every live buffer tagged with the layer's name, plus its share of the flat buffers
    /// (4 P_layer bytes of parameters and of gradients; the optimizer's state in the same proportion).
    /// </summary>
    static List<LayerMemoryRow> LayerRows(TrainingSession session, MemoryEstimate estimate)
    {
        var tracker = session.Tracker;
        long p = session.Model.ParameterCount;
        long Flat(MemoryCategory c, long share) => p == 0 ? 0 : tracker.Stats(c).Live / p * share;
        Dictionary<string, long> Tagged(string layer) => LayerColumns.ToDictionary(c => c.ToString(),
            c => tracker.LiveTensors.Where(t => t.Layer == layer && t.Category == c).Sum(t => t.Bytes));
        var rows = new List<LayerMemoryRow>();
        var none = LayerColumns.ToDictionary(c => c.ToString(), _ => 0L);

        var input = LayerColumns.ToDictionary(c => c.ToString(), c => c == MemoryCategory.Input ? estimate[c] : 0L);
        var inputMeasured = Tagged("");
        foreach (var c in LayerColumns.Where(c => c != MemoryCategory.Input)) inputMeasured[c.ToString()] = 0;
        rows.Add(Row("input", "the batch", session.Network.Input.ToString(), 0, inputMeasured, input, ""));
        foreach (var (layer, e) in session.Model.Layers.Zip(estimate.Layers))
        {
            var measured = Tagged(layer.Name);
            measured[nameof(MemoryCategory.Parameter)] = Flat(MemoryCategory.Parameter, layer.ParameterCount);
            measured[nameof(MemoryCategory.Gradient)] = Flat(MemoryCategory.Gradient, layer.ParameterCount);
            measured[nameof(MemoryCategory.OptimizerState)] = Flat(MemoryCategory.OptimizerState, layer.ParameterCount);
            rows.Add(Row(layer.Name, e.Kind, e.OutputShape, layer.ParameterCount, measured,
                LayerColumns.ToDictionary(c => c.ToString(), c => e.Bytes[c]), e.Note));
        }
        if (session.Network.Recompute)
            rows.Add(Row("recompute", "shared by the blocks", "", 0, Tagged("recompute"),
                LayerColumns.ToDictionary(c => c.ToString(), c => c == MemoryCategory.Activation ? estimate.RecomputeBytes : 0L),
                "the blocks' inner outputs and indices, refilled by running each block's forward again in backward"));
        var loss = Tagged("");
        foreach (var c in LayerColumns.Where(c => c != MemoryCategory.Temporary)) loss[c.ToString()] = 0;
        long lossEstimate = 8L * session.MicroBatch + (session.Network.Precision == Precision.Fp16 ? 4 : 0);   // + fp16's found-inf flag
        rows.Add(Row("loss", session.Network.Precision == Precision.Fp16 ? "losses, predictions, found-inf flag" : "losses, predictions", $"({session.Network.Classes})", 0, loss,
            LayerColumns.ToDictionary(c => c.ToString(), c => c == MemoryCategory.Temporary ? lossEstimate : 0L), ""));
        return rows;

        static LayerMemoryRow Row(string name, string kind, string shape, long parameters, Dictionary<string, long> measured, Dictionary<string, long> est, string note) =>
            new(name, kind, shape, parameters, measured, est, LayerColumns.All(c => measured[c.ToString()] == est[c.ToString()]), note);
    }

    /// <summary>Prediction only at the config's batch (<see cref="InferenceSession"/>): one batch, peaks measured and estimated.</summary>
    public static InferenceResult RunInference(ComputeDevice device, TrainConfig config, DatasetPair data)
    {
        DatasetInfo info = data.Train.Info;
        Network net = config.Network(info);
        int batch = config.BatchSize;
        using var session = new InferenceSession(device, net, batch, config.Matmul, allocator: config.Allocator);
        var (images, _, _) = FirstRows(data.Train, batch);
        session.Images.CopyFrom(images);
        session.Predict(batch);
        var tracker = session.Tracker;
        var e = InferenceSession.Estimate(net, batch);
        var estimate = new Dictionary<string, long>
        {
            ["Parameter"] = e.Parameter, ["Input"] = e.Input, ["Activation"] = e.Activation, ["Workspace"] = e.Workspace, ["Temporary"] = e.Temporary,
        };
        var measured = estimate.Keys.ToDictionary(k => k, k => tracker.Stats(Enum.Parse<MemoryCategory>(k)).Peak);
        return new InferenceResult(batch, measured, estimate, tracker.PeakBytes, e.Total);
    }
}

/// <summary>One step of <see cref="MemoryProbe.Alternate"/>: its batch, the peaks during it, and the cache after it.</summary>
public sealed record AlternationStep(int Step, int Batch, long RequestedPeak, long AllocatedPeak, long ReservedPeak, long ReservedAfter,
    long LargestFreeBlockAfter, int Segments);

/// <summary>The steps of <see cref="MemoryProbe.Alternate"/> and what releasing the cache gave back.</summary>
public sealed record AlternationResult(int[] Batches, List<AlternationStep> Steps, bool Released, long ReservedBefore, long ReleasedBytes,
    long ReservedAfterRelease, long AllocatedAfterRelease);
