using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>What one probe measured: per category, the estimate, the live bytes after the steps and the peak during them.</summary>
public sealed record ProbeCategory(string Category, long Estimate, long Live, long Peak, long Difference, string Formula);

public sealed record ProbeResult(int BatchSize, string Optimizer, long Parameters, List<ProbeCategory> Categories,
    long TotalEstimate, long TotalLive, long PeakTotal, long BytesPerSample, long FixedBytes, long AllocationsDuringSteps,
    IReadOnlyList<MemoryEvent> Events, List<Dictionary<MemoryCategory, long>> Timeline);

/// <summary>
/// Runs real training steps at one batch size on a device and measures every category, so the closed
/// form can be checked against what the tracker saw. The batch is real data, cycled if the batch is
/// larger than the training split.
/// </summary>
public static class MemoryProbe
{
    public const int Steps = 2;

    public static ProbeResult Run(ComputeDevice device, TrainConfig config, DatasetPair data)
    {
        Dataset train = data.Train;
        DatasetInfo info = train.Info;
        using var session = new TrainingSession(device, config, info, logPhases: true);
        if (config.DatasetOnDevice) session.PlaceDataset(data);
        int batch = config.BatchSize;
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
        long allocationsBefore = session.Tracker.AllocationCount;
        for (int s = 0; s < Steps; s++)
        {
            session.Tracker.Phase = "upload";
            if (session.Dataset is not null) session.Gather(test: false, indices, batch);
            else session.Upload(images, labels, batch);
            session.TrainStep(labels, batch);
        }
        session.Tracker.Phase = "done";
        var estimate = session.Estimate();
        var tracker = session.Tracker;
        var categories = Enum.GetValues<MemoryCategory>().Select(c => new ProbeCategory(c.ToString(), estimate[c],
            tracker.Stats(c).Live, tracker.Stats(c).Peak, tracker.Stats(c).Live - estimate[c], estimate.Formula(c))).ToList();
        return new ProbeResult(batch, session.Optimizer.Name, session.Model.ParameterCount, categories, estimate.Total,
            tracker.LiveBytes, tracker.PeakBytes, MemoryEstimator.BytesPerSample(session.Network, session.Dataset?.Sizes),
            MemoryEstimator.FixedBytes(session.Network, session.Optimizer.Name, session.Dataset?.Sizes), tracker.AllocationCount - allocationsBefore,
            tracker.Events.ToList(), tracker.LiveByCategoryOverEvents());
    }
}
