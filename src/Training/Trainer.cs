using System.Diagnostics;
using ScratchNet.Data;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>What one epoch did.</summary>
public sealed record EpochResult(int Epoch, double Loss, double TrainAccuracy, double TestAccuracy, double Seconds, double SamplesPerSecond);

/// <summary>Progress inside an epoch, for a progress display.</summary>
public readonly record struct StepProgress(int Epoch, int Batch, int Batches, double RunningLoss, double SamplesPerSecond);

/// <summary>
/// Where training stands inside an epoch: the epoch (0-based), the next batch to run, and the running
/// sums the epoch summary is made of. Saved in checkpoints, so a resumed epoch prints the same summary.
/// </summary>
public sealed record EpochPosition(int Epoch, int NextBatch, double LossSum, long Correct, long Seen);

/// <summary>The loss stopped being a number: training cannot continue.</summary>
public sealed class DivergenceException(int epoch, int batch, double loss, float learningRate)
    : Exception($"training diverged: the loss became {loss} at epoch {epoch + 1}, step {batch + 1}. " +
                $"The learning rate ({learningRate}) is most likely too high; try one 10x smaller (--lr {((double)learningRate / 10).ToString("G3", System.Globalization.CultureInfo.InvariantCulture)}).")
{
    public int Epoch { get; } = epoch;
    public int Batch { get; } = batch;
}

/// <summary>
/// The training loop: for each epoch, shuffle, then for each batch normalise it on the host, upload it,
/// and run a step; then evaluate on the test split. Like the lesson's PyTorch loop, train accuracy is
/// counted on the fly from each batch's forward pass. While a step runs, another thread already
/// normalises the next batch into the second of two host buffers (double buffering), where a core is
/// free for it (see <see cref="PrefetchBatches"/>).
/// A stop request (Ctrl+C) is honoured between steps: the step in flight finishes, and the position is
/// returned so it can be saved and resumed exactly.
/// </summary>
public sealed class Trainer
{
    readonly TrainingSession _session;
    readonly DatasetPair _data;
    readonly BatchLoader _train, _test;
    readonly float[][] _images = new float[2][];
    readonly int[][] _labels = new int[2][];
    readonly Prefetch _prefetch;

    public Trainer(TrainingSession session, DatasetPair data)
    {
        _session = session;
        _data = data;
        int batch = session.Config.BatchSize;
        _train = new BatchLoader(data.Train, batch, shuffle: true, seed: session.Config.Seed);
        _test = new BatchLoader(data.Test, session.MicroBatch, shuffle: false, seed: 0);   // evaluation holds what a step holds
        for (int i = 0; i < 2; i++)
        {
            _images[i] = new float[batch * data.Train.Info.ImageSize];
            _labels[i] = new int[batch];
        }
        _prefetch = new Prefetch(_train);
        PrefetchBatches = session.Device.Kind != DeviceKind.Host || Kernels.HostParallel.Cores < Environment.ProcessorCount;
        if (session.Config.DatasetOnDevice && session.Dataset is null) session.PlaceDataset(data);
    }

    /// <summary>
    /// Fills the next batch on a background thread while the step runs. Starting and waiting allocate nothing on
    /// the training thread:
    /// - the filling thread is one thread for the whole process, started with the first trainer, that sleeps on an
    ///   event; setting an event allocates nothing (queueing a work item to the .NET thread pool did when the pool
    ///   was busy: 4,280 B in one CI run; Task.Run allocates a task and a closure every time);
    /// - the training thread waits for the batch by spinning on a flag (a ManualResetEventSlim allocates its lock
    ///   object on the waiting thread the first time a wait blocks).
    /// One batch is filled at a time: a second trainer that starts while another's batch is being filled (two
    /// trainers on two threads) fills its own on its own thread.
    /// </summary>
    sealed class Prefetch
    {
        static readonly ManualResetEventSlim Wake = new(false, spinCount: 0);
        static Prefetch? _job;        // the batch being filled, or null when the filling thread is free
        static Thread? _thread;
        static readonly object ThreadGate = new();

        readonly BatchLoader _loader;
        volatile bool _done = true;
        int _batch, _rows;
        float[] _images = [];
        int[] _labels = [];
        Exception? _error;

        public Prefetch(BatchLoader loader)
        {
            _loader = loader;
            lock (ThreadGate)
                _thread ??= StartThread();
        }

        static Thread StartThread()
        {
            var thread = new Thread(() =>
            {
                while (true)
                {
                    Wake.Wait();
                    Wake.Reset();
                    Volatile.Read(ref _job)?.Fill();
                }
            }) { IsBackground = true, Name = "ScratchNet batch prefetch" };
            thread.Start();
            return thread;
        }

        public void Start(int batch, float[] images, int[] labels)
        {
            (_batch, _images, _labels, _error) = (batch, images, labels, null);
            _done = false;
            if (Interlocked.CompareExchange(ref _job, this, null) is null) Wake.Set();
            else Fill();   // the filling thread is busy with another trainer's batch
        }

        void Fill()
        {
            try
            {
                _rows = _loader.Fill(_batch, _images, _labels);
            }
            catch (Exception e)
            {
                _error = e;
            }
            finally
            {
                Interlocked.CompareExchange(ref _job, null, this);   // frees the filling thread before the batch is announced
                _done = true;
            }
        }

        /// <summary>Waits for the batch and returns its number of rows.</summary>
        public int Wait()
        {
            // Filling a batch takes microseconds, so spin; SpinWait yields the core (never sleeps a whole
            // millisecond) in case the filling thread waits for it.
            var spin = new SpinWait();
            while (!_done) spin.SpinOnce(sleep1Threshold: -1);
            if (_error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_error);
            return _rows;
        }
    }

    /// <summary>Called after every step with the step's mean loss (for tests and logs).</summary>
    public Action<int, int, double>? OnStep { get; set; }
    /// <summary>Called about ten times a second during an epoch.</summary>
    public Action<StepProgress>? OnProgress { get; set; }
    /// <summary>Asked after every step; true stops the epoch there (see <see cref="Interrupted"/>).</summary>
    public Func<bool>? StopRequested { get; set; }
    /// <summary>Set when an epoch stopped early: where to resume.</summary>
    public EpochPosition? Interrupted { get; private set; }

    public BatchLoader TrainLoader => _train;

    /// <summary>
    /// Whether the next batch is filled on a thread of its own while the step runs (true), or on the training thread
    /// after the step. By default true, except on the host backend when it uses every core: there the filling thread
    /// takes a core away from the step's own threads in the middle of their work. On the lesson's MLP on a 2-core
    /// machine, 5 alternating epochs each, the 937 steps took 0.284-0.379 s in all with prefetching and 0.261-0.279 s
    /// filling after the step (median step 0.26-0.30 ms against 0.23-0.24 ms).
    /// </summary>
    public bool PrefetchBatches { get; set; }

    /// <summary>
    /// Trains epoch `epoch` (0-based), from its start or from a saved position, then evaluates on the
    /// test split. Returns null when stopped early (then <see cref="Interrupted"/> says where).
    /// Throws <see cref="DivergenceException"/> when a loss is NaN or infinite.
    /// </summary>
    public EpochResult? RunEpoch(int epoch, EpochPosition? from = null)
    {
        _train.StartEpoch(epoch);
        Interrupted = null;
        var clock = Stopwatch.StartNew();
        double lossSum = from?.LossSum ?? 0, lastReport = 0;
        long correct = from?.Correct ?? 0, seen = from?.Seen ?? 0, seenHere = 0;
        int batches = _train.BatchesPerEpoch;
        int first = from?.NextBatch ?? 0;
        bool onDevice = _session.Dataset is not null;
        int rows = first < batches && !onDevice ? _train.Fill(first, _images[first % 2], _labels[first % 2]) : 0;
        for (int b = first; b < batches; b++)
        {
            float[] images = _images[b % 2];
            int[] labels = _labels[b % 2];
            ReadOnlySpan<int> indices = default;
            if (onDevice)
            {
                indices = LabelsOf(_train, _data.Train, b, labels);
                rows = indices.Length;
            }
            int next = b + 1;
            bool prefetching = next < batches && !onDevice && PrefetchBatches;
            if (prefetching) _prefetch.Start(next, _images[next % 2], _labels[next % 2]);
            var (batchLoss, batchCorrect) = _session.TrainBatch(images, indices, labels, rows);
            if (!double.IsFinite(batchLoss))
            {
                if (prefetching) _prefetch.Wait();
                throw new DivergenceException(epoch, b, batchLoss / rows, _session.Config.EffectiveLearningRate);
            }
            lossSum += batchLoss;
            correct += batchCorrect;
            seen += rows;
            seenHere += rows;
            OnStep?.Invoke(epoch, b, batchLoss / rows);
            double now = clock.Elapsed.TotalSeconds;
            if (OnProgress is not null && (now - lastReport >= 0.1 || b == batches - 1))
            {
                lastReport = now;
                OnProgress(new StepProgress(epoch, b + 1, batches, lossSum / seen, seenHere / Math.Max(now, 1e-9)));
            }
            if (prefetching) rows = _prefetch.Wait();
            else if (next < batches && !onDevice) rows = _train.Fill(next, _images[next % 2], _labels[next % 2]);
            if (next < batches && StopRequested?.Invoke() == true)
            {
                Interrupted = new EpochPosition(epoch, next, lossSum, correct, seen);
                return null;
            }
        }
        double seconds = clock.Elapsed.TotalSeconds;
        double testAccuracy = Evaluate();
        return new EpochResult(epoch + 1, lossSum / seen, (double)correct / seen, testAccuracy, seconds, seenHere / seconds);
    }

    /// <summary>Accuracy on the test split (forward passes only, same buffers).</summary>
    public double Evaluate()
    {
        long correct = 0;
        for (int b = 0; b < _test.BatchesPerEpoch; b++)
        {
            int rows;
            if (_session.Dataset is not null)
            {
                rows = GatherOnDevice(_test, _data.Test, b, test: true, _labels[0]);
            }
            else
            {
                rows = _test.Fill(b, _images[0], _labels[0]);
                _session.Upload(_images[0], _labels[0], rows);
            }
            correct += _session.EvaluateBatch(_labels[0], rows);
        }
        return (double)correct / _data.Test.Count;
    }

    /// <summary>--dataset-on-device: only the batch's indices go to the device; the host keeps the labels for counting.</summary>
    int GatherOnDevice(BatchLoader loader, Dataset split, int b, bool test, int[] labels)
    {
        ReadOnlySpan<int> indices = LabelsOf(loader, split, b, labels);
        _session.Gather(test, indices, indices.Length);
        return indices.Length;
    }

    /// <summary>Batch b's sample indices, with their labels copied into `labels`.</summary>
    static ReadOnlySpan<int> LabelsOf(BatchLoader loader, Dataset split, int b, int[] labels)
    {
        ReadOnlySpan<int> indices = loader.Indices(b);
        for (int i = 0; i < indices.Length; i++) labels[i] = split.Labels[indices[i]];
        return indices;
    }
}
