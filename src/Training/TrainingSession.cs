using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// A model, its optimizer and its step buffers on one device, all created through one MemoryTracker.
/// Nothing is allocated after the constructor: every step reuses these buffers.
/// </summary>
public sealed class TrainingSession : IDisposable
{
    readonly float[] _losses;
    readonly int[] _predictions;

    /// <param name="datasetOnDevice">With --dataset-on-device, the dataset's sizes, so that out-of-memory advice
    /// given before the dataset is placed already counts its bytes.</param>
    public TrainingSession(ComputeDevice device, TrainConfig config, int inputFeatures, int classes, bool logPhases = false,
        DatasetOnDevice? datasetOnDevice = null)
    {
        _adviceDataset = datasetOnDevice;
        Device = device;
        Config = config;
        Kernels = ComputeOps.For(device);
        Matmul = config.Matmul ?? Kernels.DefaultMatmul;
        Sizes = config.LayerSizes(inputFeatures, classes);
        // Kernels index a (B, K) buffer with 32-bit ints and the host stages a batch in one float[]: the
        // largest layer times the batch must stay below 2^31 elements.
        long widest = (long)config.BatchSize * Sizes.Max();
        if (widest > Array.MaxLength)
            throw new ArgumentException($"--batch-size {config.BatchSize}: a batch of {config.BatchSize:N0} rows of {Sizes.Max():N0} values is {widest:N0} " +
                $"floats, more than one buffer can index ({Array.MaxLength:N0}); the largest batch for this model is {Array.MaxLength / Sizes.Max():N0}");
        Tracker = new MemoryTracker(device.Accelerator, config.MemoryLimit) { LogPhases = logPhases };
        try
        {
            Model = new Mlp(Tracker, Sizes);
            Optimizer = config.OptimizerKind == "adam"
                ? new Adam(Tracker, Model, config.EffectiveLearningRate)
                : new Sgd(Tracker, Model, config.EffectiveLearningRate, config.EffectiveMomentum);
            Buffers = new StepBuffers(Tracker, Model, config.BatchSize);
        }
        catch (DeviceMemoryException e)
        {
            AddAdvice(e);
            DisposeAll();
            throw;
        }
        Model.Initialize(config.Seed);
        Tracker.Phase = "ready";
        _losses = new float[config.BatchSize];
        _predictions = new int[config.BatchSize];
    }

    public ComputeDevice Device { get; }
    public TrainConfig Config { get; }
    /// <summary>The ILGPU kernels, or the SIMD host operations for --device host.</summary>
    public IComputeOps Kernels { get; }
    public MatmulVersion Matmul { get; }
    /// <summary>What runs the matmuls, for reports: "blocked", "tiled", ... or "host SIMD".</summary>
    public string MatmulName => Device.Kind == DeviceKind.Host ? "host SIMD" : Matmul.ToString().ToLowerInvariant();
    public int[] Sizes { get; }
    public MemoryTracker Tracker { get; }
    public Mlp Model { get; } = null!;
    public IOptimizer Optimizer { get; } = null!;
    public StepBuffers Buffers { get; } = null!;

    /// <summary>The closed-form estimate for this session's model, batch, optimizer and dataset placement.</summary>
    public MemoryEstimate Estimate() => MemoryEstimator.Estimate(Sizes, Config.BatchSize, Optimizer.Name, _onDevice);

    DatasetOnDevice? _onDevice, _adviceDataset;
    Tensor<byte>? _trainPixels, _trainLabels, _testPixels, _testLabels;
    Tensor<int>? _indices;
    Tensor<float>? _scaleShift;
    int _planeSize, _channels;

    /// <summary>
    /// --dataset-on-device: copies both splits to the device as bytes (Input category), once; afterwards
    /// <see cref="Gather"/> builds each batch there from B indices.
    /// </summary>
    public void PlaceDataset(Data.DatasetPair data)
    {
        var info = data.Train.Info;
        // Known before the first byte is allocated, so out-of-memory advice counts the dataset's bytes.
        _adviceDataset = new DatasetOnDevice(data.Train.Count, data.Test.Count, info.Channels);
        try
        {
            _trainPixels = Tracker.Allocate<byte>("dataset.train.pixels", [data.Train.Count, info.ImageSize], MemoryCategory.Input);
            _trainLabels = Tracker.Allocate<byte>("dataset.train.labels", [data.Train.Count], MemoryCategory.Input);
            _testPixels = Tracker.Allocate<byte>("dataset.test.pixels", [data.Test.Count, info.ImageSize], MemoryCategory.Input);
            _testLabels = Tracker.Allocate<byte>("dataset.test.labels", [data.Test.Count], MemoryCategory.Input);
            _indices = Tracker.Allocate<int>("input.indices", [Config.BatchSize], MemoryCategory.Input);
            _scaleShift = Tracker.Allocate<float>("input.scale_shift", [2 * info.Channels], MemoryCategory.Input);
        }
        catch (DeviceMemoryException e)
        {
            AddAdvice(e);
            throw;
        }
        _trainPixels.CopyFrom(data.Train.Pixels);
        _trainLabels.CopyFrom(data.Train.Labels);
        _testPixels.CopyFrom(data.Test.Pixels);
        _testLabels.CopyFrom(data.Test.Labels);
        _scaleShift.CopyFrom(new Data.Normalizer(info).ScaleShift());
        _planeSize = info.Height * info.Width;
        _channels = info.Channels;
        _onDevice = _adviceDataset;
    }

    public bool DatasetPlaced => _onDevice is not null;
    /// <summary>The dataset sizes on the device (null when batches are normalised on the host).</summary>
    public DatasetOnDevice? OnDevice => _onDevice;

    /// <summary>Builds the batch on the device: the images at `indices` of the train (or test) split, normalised.</summary>
    public void Gather(bool test, ReadOnlySpan<int> indices, int rows)
    {
        _indices!.CopyFrom(indices[..rows]);
        Kernels.GatherNormalize((test ? _testPixels : _trainPixels)!.View, (test ? _testLabels : _trainLabels)!.View, _indices.View,
            _scaleShift!.View, Buffers.Images.View, Buffers.Labels.View, rows, Sizes[0], _planeSize, _channels);
    }

    /// <summary>Copies a host batch (rows images and labels) into the input buffers.</summary>
    public void Upload(ReadOnlySpan<float> images, ReadOnlySpan<int> labels, int rows)
    {
        Buffers.Images.CopyFrom(images[..(rows * Sizes[0])]);
        Buffers.Labels.CopyFrom(labels[..rows]);
    }

    /// <summary>
    /// One training step on the uploaded batch: forward, loss, backward, update.
    /// Returns the sum of the rows' losses and the number of correct predictions.
    /// </summary>
    public (double LossSum, int Correct) TrainStep(ReadOnlySpan<int> labels, int rows)
    {
        Tracker.Phase = "forward";
        Model.Forward(Kernels, Buffers, rows, Matmul);
        Tracker.Phase = "backward";
        Model.Backward(Kernels, Buffers, rows, Matmul);
        Tracker.Phase = "update";
        Optimizer.Step(Kernels, Model);
        Tracker.Step++;
        return ReadLossAndCorrect(labels, rows);
    }

    /// <summary>Forward only, for evaluation: returns the number of correct predictions.</summary>
    public int EvaluateBatch(ReadOnlySpan<int> labels, int rows)
    {
        Tracker.Phase = "eval";
        Model.Forward(Kernels, Buffers, rows, Matmul);
        Kernels.Argmax(Buffers.Outputs[^1].View, Buffers.Predictions.View, rows, Model.Classes);
        Buffers.Predictions.CopyTo(_predictions.AsSpan(0, rows));
        return CountCorrect(labels, rows);
    }

    (double, int) ReadLossAndCorrect(ReadOnlySpan<int> labels, int rows)
    {
        Buffers.Losses.CopyTo(_losses.AsSpan(0, rows));
        Buffers.Predictions.CopyTo(_predictions.AsSpan(0, rows));
        double sum = 0;
        for (int i = 0; i < rows; i++) sum += _losses[i];
        return (sum, CountCorrect(labels, rows));
    }

    int CountCorrect(ReadOnlySpan<int> labels, int rows)
    {
        int correct = 0;
        for (int i = 0; i < rows; i++)
            if (_predictions[i] == labels[i]) correct++;
        return correct;
    }

    /// <summary>Adds what would help to an out-of-memory error: the largest batch that fits, and what SGD would save.</summary>
    public void AddAdvice(DeviceMemoryException e)
    {
        if (e.Limit is not long limit) return;
        string kind = Config.OptimizerKind;
        long fits = MemoryEstimator.LargestBatch(Sizes, kind, limit, _adviceDataset);
        string dataset = _adviceDataset is null ? "" : " and the dataset on the device";
        e.Advice.Add(fits > 0
            ? $"the largest batch size that fits {Bytes.Format(limit)} with {kind}{dataset} is {fits} (--batch-size {fits})"
            : $"not even batch size 1 fits {Bytes.Format(limit)} with {kind}; the model{dataset} alone need{(_adviceDataset is null ? "s" : "")} {Bytes.Format(MemoryEstimator.FixedBytes(Sizes, kind, _adviceDataset) + MemoryEstimator.BytesPerSample(Sizes, _adviceDataset))}");
        if (kind != "sgd")
        {
            long saved = MemoryEstimator.FixedBytes(Sizes, kind) - MemoryEstimator.FixedBytes(Sizes, "sgd");
            long sgdFits = MemoryEstimator.LargestBatch(Sizes, "sgd", limit, _adviceDataset);
            e.Advice.Add($"plain SGD (--optimizer sgd) would save {Bytes.Format(saved)} of optimizer state; " +
                (sgdFits > 0 ? $"the largest batch would then be {sgdFits}" : "even then not batch size 1 would fit"));
        }
        if (_adviceDataset is not null)
            e.Advice.Add("without --dataset-on-device the dataset stays in host memory and only one batch is on the device");
    }

    void DisposeAll()
    {
        _trainPixels?.Dispose();
        _trainLabels?.Dispose();
        _testPixels?.Dispose();
        _testLabels?.Dispose();
        _indices?.Dispose();
        _scaleShift?.Dispose();
        Buffers?.Dispose();
        Optimizer?.Dispose();
        Model?.Dispose();
    }

    public void Dispose() => DisposeAll();
}
