using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The model step: a model, its optimizer and its step buffers on one device, all created through one
/// MemoryTracker, and the backend that runs the operations. Nothing is allocated after the constructor:
/// every step reuses these buffers. Its helpers each have a file of their own: <see cref="DeviceDataset"/>
/// (--dataset-on-device), <see cref="StepReadback"/> (losses and predictions back to the host) and
/// <see cref="MemoryAdvice"/> (what to try after an out-of-memory error).
/// </summary>
public sealed class TrainingSession : IDisposable
{
    readonly StepReadback _readback;
    readonly DatasetOnDevice? _plannedDataset;

    /// <param name="datasetOnDevice">With --dataset-on-device, the dataset's sizes, so that out-of-memory advice
    /// given before the dataset is placed already counts its bytes.</param>
    public TrainingSession(ComputeDevice device, TrainConfig config, Data.DatasetInfo info, bool logPhases = false,
        DatasetOnDevice? datasetOnDevice = null)
        : this(device, config, FeatureShape.Image(info.Channels, info.Height, info.Width), info.Classes, logPhases, datasetOnDevice)
    {
    }

    /// <param name="input">One sample's shape (C, H, W).</param>
    public TrainingSession(ComputeDevice device, TrainConfig config, FeatureShape input, int classes, bool logPhases = false,
        DatasetOnDevice? datasetOnDevice = null, bool advise = true)
    {
        _advise = advise;
        _plannedDataset = datasetOnDevice;
        Device = device;
        Config = config;
        Backend = Backends.For(device);
        Network = config.Network(input, classes);
        if (config.Recompute && config.Lifetime == LifetimeKind.Eager)
            throw new ArgumentException("--recompute shares buffers between blocks, which needs --lifetime planned (eager lifetimes free each block's buffers as backward consumes them)");
        if (config.PrecisionRefusal(Network) is { } refusal) throw new ArgumentException(refusal);
        if (config.Accumulate < 1 || config.Accumulate > config.BatchSize)
            throw new ArgumentException($"--accumulate {config.Accumulate}: the batch of {config.BatchSize} rows (--batch-size) splits into 1 to {config.BatchSize} micro-batches");
        // --matmul auto, asked for or by default on a GPU or OpenCL device: time the versions on this model's shapes.
        MatmulVersion? recorded = config.MatmulFromCheckpoint is { } r && Backend.MatmulVersions.Contains(r) ? r : null;
        // 16-bit storage has one matmul of its own (HalfKernels, HostHalf): nothing to time.
        bool auto = Network.Half is null && config.Matmul is null && recorded is null && Backend.MatmulVersions.Count > 1 &&
            (config.MatmulAuto || device.Kind is DeviceKind.Cuda or DeviceKind.OpenCL);
        if (auto && MicroBatch <= Network.MaxBatch)
            MatmulChoice = MatmulAuto.Choose(Backend, device.Accelerator, Network, MicroBatch);
        Matmul = config.Matmul ?? recorded ?? MatmulChoice?.Version ?? Backend.DefaultMatmul;
        if (!Backend.MatmulVersions.Contains(Matmul))
            throw new ArgumentException(Backend is HostBackend
                ? $"--matmul {MatmulVersions.Label(Matmul)}: {(device.Reason.Length > 0 ? "--device auto chose the host backend, which" : "the host backend")} " +
                  "has its own matmuls (host-simd, host-avx512); add --device cpu (or opencl, cuda) to run the ILGPU matmul kernels"
                : $"--matmul {MatmulVersions.Label(Matmul)}: {device.Label} has {string.Join(", ", Backend.MatmulVersions.Select(MatmulVersions.Label))}");
        if (MicroBatch > Network.MaxBatch)
            throw new ArgumentException($"--batch-size {config.BatchSize}: a batch of {MicroBatch:N0} samples of {Network.WidestPerSample:N0} values is {(long)MicroBatch * Network.WidestPerSample:N0} " +
                $"floats, more than one buffer can index ({Array.MaxLength:N0}); the largest batch for this model is {Network.MaxBatch:N0}");
        Tracker = new MemoryTracker(device.Accelerator, config.MemoryLimit, config.BufferCap(device.MaxBufferBytes), config.Allocator) { LogPhases = logPhases };
        try
        {
            bool eager = config.Lifetime == LifetimeKind.Eager;
            Model = new Model(Tracker, Network.Spec, Network.Input, Network.Classes, gradients: !eager, half: Network.Half);
            Optimizer = config.OptimizerKind == "adam"
                ? new Adam(Tracker, Model, config.EffectiveLearningRate)
                : new Sgd(Tracker, Model, config.EffectiveLearningRate, config.EffectiveMomentum);
            Buffers = new StepBuffers(Tracker, Model, MicroBatch, config.Conv, eager, config.Recompute);
            if (eager) _eager = new EagerStep(Tracker, Model, Buffers, config.Conv);
        }
        catch (DeviceMemoryException e)
        {
            Dispose();
            AddAdvice(e);
            throw;
        }
        Model.Initialize(config.Seed);
        Model.RefreshHalfCopy(Backend);
        Context = new StepContext(Backend, Matmul, config.Conv, Model.Parameters.View, Model.Gradients is null ? default : Model.Gradients.View,
            Half: Network.Half, HalfParameters: Model.HalfParameters?.View ?? default);
        if (Network.Half is not null) _imagesHalf = new ushort[(long)MicroBatch * Network.Input.Size];
        if (Network.Half == HalfFormat.Fp16) Scaler = new LossScaler();
        _accumulating = Context with { Accumulate = true };
        Tracker.Phase = "ready";
        _readback = new StepReadback(MicroBatch);
    }

    public ComputeDevice Device { get; }
    public TrainConfig Config { get; }
    /// <summary>The rows on the device at once: the batch, or with --accumulate N the largest micro-batch (BatchSize / N, rounded up).</summary>
    public int MicroBatch => Config.MicroBatch;
    /// <summary>What runs the operations: the ILGPU kernels (<see cref="IlgpuBackend"/>) or, for --device host, <see cref="HostBackend"/>.</summary>
    public IBackend Backend { get; }
    public MatmulVersion Matmul { get; }
    /// <summary>What --matmul auto chose and why (null when the version was forced or only one exists).</summary>
    public MatmulChoice? MatmulChoice { get; }
    /// <summary>What runs the matmuls, for reports: "blocked", "tiled", ... or "host SIMD".</summary>
    public string MatmulName => Network.Half is not null ? "16-bit storage (float32 sums)" : MatmulVersions.Label(Matmul);
    /// <summary>The architecture: layer stack, input shape, classes, conv version.</summary>
    public Network Network { get; }
    /// <summary>What every layer's forward and backward get: backend, versions, the flat buffers.</summary>
    public StepContext Context { get; private set; } = null!;
    /// <summary>The same with Accumulate set, for the micro-batches after a step's first (made once: a step allocates nothing).</summary>
    readonly StepContext _accumulating = null!;
    public MemoryTracker Tracker { get; }
    readonly EagerStep? _eager;
    public Model Model { get; } = null!;
    public IOptimizer Optimizer { get; } = null!;
    public StepBuffers Buffers { get; } = null!;
    /// <summary>--precision fp16: the dynamic loss scaler; null otherwise.</summary>
    public LossScaler? Scaler { get; }
    /// <summary>True when the last optimizer step was skipped because a gradient was inf or NaN (fp16's loss scaler).</summary>
    public bool LastStepSkipped { get; private set; }
    /// <summary>--precision fp16 and bf16: the host batch rounded to 16 bits before it is copied to the device.</summary>
    readonly ushort[]? _imagesHalf;
    readonly int[] _foundInf = new int[1];
    static readonly int[] Zero = [0];

    /// <summary>
    /// When set, every step reports where its time goes (bench's step breakdown, see <see cref="StepClock"/>): the caller
    /// starts the clock, and the step laps it after each layer's forward and backward (planned lifetimes; with eager
    /// lifetimes forward and backward are one part each), the loss, the update and the readback.
    /// </summary>
    public StepClock? Clock { get; set; }

    /// <summary>The dataset on the device (--dataset-on-device), once placed; null when batches come from the host.</summary>
    public DeviceDataset? Dataset { get; private set; }

    /// <summary>The closed-form estimate for this session's model, batch, optimizer and dataset placement.</summary>
    public MemoryEstimate Estimate() => MemoryEstimator.Estimate(Network, MicroBatch, Optimizer.Name, Dataset?.Sizes);

    /// <summary>Copies both splits to the device once (see <see cref="DeviceDataset"/>).</summary>
    public void PlaceDataset(Data.DatasetPair data)
    {
        try
        {
            Dataset = DeviceDataset.Place(Tracker, data, MicroBatch);
        }
        catch (DeviceMemoryException e)
        {
            if (_advise) MemoryAdvice.Add(e, Network, Config.OptimizerKind, DatasetOnDevice.Of(data), LargestBatch(DatasetOnDevice.Of(data)), LadderBatch);
            throw;
        }
    }

    /// <summary>Builds the batch on the device: the images at `indices` of the train (or test) split, normalised.</summary>
    public void Gather(bool test, ReadOnlySpan<int> indices, int rows) =>
        Dataset!.Gather(Backend, test, indices, rows, Buffers.Images, Buffers.Labels, (int)Network.Input.Size);

    /// <summary>Copies a host batch (rows images and labels) into the input buffers.</summary>
    public void Upload(ReadOnlySpan<float> images, ReadOnlySpan<int> labels, int rows)
    {
        int count = rows * (int)Network.Input.Size;
        if (_imagesHalf is { } half)
        {
            // ToTensor + Normalize ran in float32 on the host; the device gets the batch rounded to 16 bits.
            var format = (int)Network.Half!.Value;
            for (int i = 0; i < count; i++) half[i] = HalfKernels.FromFloat(images[i], format);
            Buffers.ImagesHalf!.CopyFrom(half.AsSpan(0, count));
        }
        else Buffers.Images.CopyFrom(images[..count]);
        Buffers.Labels.CopyFrom(labels[..rows]);
    }

    /// <summary>
    /// One training step on the uploaded batch (at most <see cref="MicroBatch"/> rows): forward, loss, backward, update.
    /// Returns the sum of the rows' losses and the number of correct predictions.
    /// </summary>
    public (double LossSum, int Correct) TrainStep(ReadOnlySpan<int> labels, int rows)
    {
        ForwardBackward(rows, rows, accumulate: false);
        Update();
        var result = ReadBack(labels, rows);
        Tracker.Step++;
        return result;
    }

    /// <summary>
    /// One optimizer step on a whole batch of `rows` samples: uploaded (or, with the dataset on the device, gathered at
    /// `indices`) and run as N = --accumulate micro-batches, their gradients summed. The rows are split as evenly as
    /// possible (the first rows % N micro-batches get one row more), so none is larger than <see cref="MicroBatch"/>:
    /// <code>
    /// for each micro-batch m of r_m rows:   forward; loss with the mean over all `rows` (weight r_m / rows);
    ///                                       backward, micro-batch 0 writing the gradients and the others adding to them
    /// then one update:                      sum over m of (r_m / rows) * grad(mean loss of m) = grad(mean loss of the batch)
    /// </code>
    /// Without --accumulate this is Upload (or Gather) and <see cref="TrainStep"/>.
    /// </summary>
    /// <param name="images">The batch on the host, rows x C H W values (not read when the dataset is on the device).</param>
    /// <param name="indices">With the dataset on the device, the batch's sample indices (not read otherwise).</param>
    /// <param name="update">False: no optimizer step; the summed gradients stay in the gradient buffer for the caller to read (gradient checks).</param>
    public (double LossSum, int Correct) TrainBatch(ReadOnlySpan<float> images, ReadOnlySpan<int> indices, ReadOnlySpan<int> labels, int rows,
        bool update = true)
    {
        double lossSum = 0;
        int correct = 0;
        int size = (int)Network.Input.Size, n = Config.Accumulate;
        for (int m = 0, start = 0; start < rows; m++)
        {
            int r = rows / n + (m < rows % n ? 1 : 0);
            if (Dataset is not null) Gather(test: false, indices.Slice(start, r), r);
            else Upload(images.Slice(start * size, r * size), labels.Slice(start, r), r);
            ForwardBackward(r, rows, accumulate: start > 0);
            if (start + r == rows && update) Update();
            var (loss, right) = ReadBack(labels.Slice(start, r), r);
            lossSum += loss;
            correct += right;
            start += r;
        }
        if (update) Tracker.Step++;
        return (lossSum, correct);
    }

    /// <summary>
    /// Forward, loss (its mean over meanRows rows) and backward for the uploaded rows; with accumulate the parameter
    /// gradients are added to the gradient buffer.
    /// </summary>
    void ForwardBackward(int rows, int meanRows, bool accumulate)
    {
        if (rows > MicroBatch) throw new ArgumentException($"{rows} rows is more than the {MicroBatch} the step's buffers hold");
        if (_eager is not null)
        {
            EagerForwardBackward(rows, meanRows, accumulate);
            return;
        }
        var ctx = accumulate ? _accumulating : Context;
        Tracker.Phase = "forward";
        Model.Forward(ctx, Buffers, rows, Clock);
        Tracker.Phase = "loss";
        LossStep.Run(ctx, Buffers, rows, Model.Classes, meanRows, Scaler?.Scale ?? 1f);
        Clock?.Lap("loss");
        Tracker.Phase = "backward";
        Model.Backward(ctx, Buffers, rows, Clock);
    }

    /// <summary>The same in the eager lifetime mode: buffers made and freed as it goes (see <see cref="EagerStep"/>).</summary>
    void EagerForwardBackward(int rows, int meanRows, bool accumulate)
    {
        var eager = _eager!;
        Tracker.Phase = "forward";
        eager.Forward(Context, rows, training: true);
        Clock?.Lap("forward");
        Tracker.Phase = "loss";
        eager.BeforeLoss(rows);
        LossStep.Run(Context, Buffers, rows, Model.Classes, meanRows);
        eager.AfterLoss();
        Clock?.Lap("loss");
        Tracker.Phase = "backward";
        Context = eager.Backward(accumulate ? Context with { Accumulate = true } : Context, rows) with { Accumulate = false };
        Clock?.Lap("backward");
    }

    /// <summary>The optimizer step on the gradients backward left (summed over the micro-batches).</summary>
    void Update()
    {
        Tracker.Phase = "update";
        LastStepSkipped = false;
        if (Scaler is not null)
        {
            // GradScaler's unscale_ and step: gradients x 1/scale in float32, and no step when one of them is inf or NaN.
            Buffers.FoundInf!.CopyFrom(Zero);
            Backend.Unscale(Model.Gradients.View, Buffers.FoundInf.View, (int)Model.ParameterCount, 1f / Scaler.Scale);
            Buffers.FoundInf.CopyTo(_foundInf);
            LastStepSkipped = !Scaler.Update(_foundInf[0] != 0);
            if (LastStepSkipped)
            {
                Clock?.Lap("update");   // the unscale and the check were this step's update
                return;
            }
        }
        Optimizer.Step(Backend, Model);
        Model.RefreshHalfCopy(Backend);
        if (_eager is not null) Context = _eager.AfterUpdate(Context);
        Clock?.Lap("update");
    }

    /// <summary>The rows' loss sum and correct count, read back; in the eager mode the step's last buffers are then freed.</summary>
    (double LossSum, int Correct) ReadBack(ReadOnlySpan<int> labels, int rows)
    {
        var result = _readback.LossAndCorrect(Buffers, labels, rows);
        _eager?.EndStep();
        Clock?.Lap("readback");
        return result;
    }

    /// <summary>Forward, loss and backward without the update (for gradient checks): gradients and per-row losses.</summary>
    public void TrainForwardBackward(int rows)
    {
        ForwardBackward(rows, rows, accumulate: false);
        _eager?.EndStep();   // the gradients stay, for the caller to read
    }

    /// <summary>Forward only, for evaluation: returns the number of correct predictions.</summary>
    public int EvaluateBatch(ReadOnlySpan<int> labels, int rows)
    {
        Tracker.Phase = "eval";
        if (_eager is not null)
        {
            _eager.Forward(Context, rows, training: false);
            _eager.BeforePredict(rows);
            LossStep.Predict(Context, Buffers, rows, Model.Classes);
            int correct = _readback.Correct(Buffers, labels, rows);
            _eager.EndStep();
            return correct;
        }
        Model.Forward(Context, Buffers, rows);
        LossStep.Predict(Context, Buffers, rows, Model.Classes);
        return _readback.Correct(Buffers, labels, rows);
    }

    /// <summary>Adds what would help to an out-of-memory error (see <see cref="MemoryAdvice"/>).</summary>
    public void AddAdvice(DeviceMemoryException e)
    {
        if (!_advise) return;
        var dataset = Dataset?.Sizes ?? _plannedDataset;
        MemoryAdvice.Add(e, Network, Config.OptimizerKind, dataset, LargestBatch(dataset), LadderBatch);
    }

    readonly bool _advise;

    /// <summary>The batch the remedy ladder's hints keep: with planned lifetimes and the exact allocator, which the ladder counts; else 0 (no such hints).</summary>
    int LadderBatch => Config.Lifetime == LifetimeKind.Planned && Config.Allocator == AllocatorKind.Exact ? Config.BatchSize : 0;

    /// <summary>
    /// How the hints find the largest batch under a limit: the closed form of the lifetimes in use for the exact
    /// allocator; with the caching allocator, whose segments the closed form does not count, by setting the model up
    /// under the limit at each batch size tried (and running two steps with eager lifetimes), a bisection below the
    /// closed form's answer (the caching allocator never needs less than the requested bytes).
    /// </summary>
    MemoryAdvice.LargestBatchFinder LargestBatch(DatasetOnDevice? dataset)
    {
        bool eager = Config.Lifetime == LifetimeKind.Eager;
        long ClosedForm(string opt, long limit) => eager
            ? MemoryAdvice.LargestEagerBatch(Network, opt, limit, dataset)
            : MemoryEstimator.LargestBatch(Network, opt, limit, dataset);
        if (Config.Allocator == AllocatorKind.Exact)
            return (opt, limit) => (ClosedForm(opt, limit), eager ? " (eager lifetimes)" : "");
        if (dataset is not null)
            return (opt, limit) => (0, " (not worked out for --dataset-on-device with --allocator caching)");
        return (opt, limit) =>
        {
            long lo = 0, hi = Math.Min(ClosedForm(opt, limit), Network.MaxBatch) + 1;
            while (hi - lo > 1)
            {
                long mid = (lo + hi) / 2;
                if (Fits((int)mid, opt, limit)) lo = mid;
                else hi = mid;
            }
            return (lo, $" with the caching allocator's segments (found by setting the model up under the limit{(eager ? " and running two steps" : "")})");
        };
    }

    /// <summary>Whether this model fits `limit` at `batch`: made on the device under it, and with eager lifetimes two steps run.</summary>
    bool Fits(int batch, string optimizer, long limit)
    {
        var config = Config with
        {
            BatchSize = batch, Optimizer = optimizer, Momentum = optimizer == "sgd" ? null : Config.Momentum, LearningRate = null,
            MemoryLimit = limit, Matmul = Matmul, MatmulAuto = false,
        };
        try
        {
            using var trial = new TrainingSession(Device, config, Network.Input, Network.Classes, advise: false);
            if (Config.Lifetime == LifetimeKind.Eager)
            {
                var images = new float[(long)batch * Network.Input.Size];
                var labels = new int[batch];
                for (int s = 0; s < 2; s++)
                {
                    trial.Upload(images, labels, batch);
                    trial.TrainStep(labels, batch);
                }
            }
            return true;
        }
        catch (DeviceMemoryException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _eager?.EndStep();   // what a step stopped by an error (out of memory) still held
        Dataset?.Dispose();
        Buffers?.Dispose();
        Optimizer?.Dispose();
        Model?.Dispose();
        Tracker.Dispose();
    }
}
