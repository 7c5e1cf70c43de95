using System.Runtime.InteropServices;
using System.Text.Json;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet train: load the data, build the MLP on the chosen device, train, evaluate each epoch,
/// then print the memory report (or, with --json, one JSON document with all of it).
/// </summary>
public static class TrainCommand
{
    static readonly OptionSpec[] Specs =
    [
        .. ConfigOptions.Specs,
        new("--save", "FILE", "write a checkpoint at the end of every epoch (and on Ctrl+C); FILE must be new\nor a ScratchNet checkpoint, and is checked before training starts"),
        new("--resume", "FILE", "continue from a checkpoint: its model, optimizer, batch size and seed, on the\nsame data; --epochs is the total to reach; --lr may be changed"),
        new("--json", null, "print one JSON summary on stdout instead of text (errors still go to stderr\nas one line of text)"),
    ];

    public static string Help => HelpText.Format("scratchnet train [options]",
        """
        Trains the lesson's MLP (Flatten, Linear, ReLU, Linear), the conv net (--model cnn) or any stack
        (--layers), and prints, per epoch, the loss, train and
        test accuracy, seconds and samples/s; then the memory report: each category's requested live and
        peak bytes beside the closed-form estimate, and every live buffer.
        """, Specs,
        """
        Ctrl+C (SIGINT) and SIGTERM finish the current step, save a checkpoint (to --save, else
        scratchnet-interrupted.ckpt in this folder, or scratchnet-interrupted-PID.ckpt in the temp folder when
        this one cannot be written), say where, and exit with 130, also in a job that a script started in the
        background (which inherits SIGINT ignored). A loss that is NaN or infinite stops training with exit code 1 and leaves the last good checkpoint
        as it was.
        """);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var o = new Options("train", args, Specs);
        if (o.Help)
        {
            stdout.Write(Help);
            return Cli.ExitOk;
        }
        TrainConfig config = ConfigOptions.Parse(o);

        // Ctrl+C (and SIGTERM): finish the step in flight, save, exit 130. A second Ctrl+C kills as usual.
        // Registered before anything slow, so a signal while the data loads is honoured after the first step.
        // SIGINT counts even when inherited as ignored (a script's background job), see Signals.
        int stop = 0;
        Signals.StopIgnoringSigint();
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => ctx.Cancel = Interlocked.Exchange(ref stop, 1) == 0);
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => ctx.Cancel = Interlocked.Exchange(ref stop, 1) == 0);

        string? savePath = o.String("--save");
        string? resumePath = o.String("--resume");
        Checkpoint.Loaded? resume = null;
        if (resumePath is not null)
        {
            resume = Checkpoint.Load(resumePath);
            config = FromCheckpoint(resume.Header, config, o);
        }
        bool json = o.Flag("--json");
        TextWriter text = json ? TextWriter.Null : stdout;

        // Where checkpoints go, checked before anything slow: a bad --save target is found now, not after an
        // epoch. Without --save, Ctrl+C saves to scratchnet-interrupted.ckpt here, or in the temp folder when
        // this folder cannot take it.
        if (savePath is not null) Checkpoint.CheckTarget(savePath);
        string interruptPath = savePath ?? Checkpoint.InterruptPath(".");

        DatasetPair data = DatasetLoader.Load(config.Dataset, config.DataDir);
        if (data.Notice is not null) stderr.WriteLine($"note: {data.Notice}");
        DatasetInfo info = data.Train.Info;
        // Hashing the whole dataset is needed only to save or resume a checkpoint: done then, once.
        var dataIdentity = new Lazy<DataIdentity>(() => DataIdentity.Of(data));

        ComputeDevice device = ComputeDevice.Create(config.Device);
        DatasetOnDevice? planned = config.DatasetOnDevice ? DatasetOnDevice.Of(data) : null;
        TrainingSession session;
        try
        {
            session = new TrainingSession(device, config, info, datasetOnDevice: planned);
        }
        catch (DeviceMemoryException e) when (config.Device == "auto" && device.Kind is DeviceKind.Cuda or DeviceKind.OpenCL && e.InnerException is not null)
        {
            // The lesson's fallback: the GPU itself is out of memory, so train on the CPU instead, with the
            // host backend (the fast way on a CPU) and its own matmul.
            stderr.WriteLine($"note: {device.Kind} is out of memory during setup ({e.Message}); falling back to the host backend (host memory)");
            device.Dispose();
            device = ComputeDevice.Create("host");
            config = config with { Matmul = null };
            session = new TrainingSession(device, config, info, datasetOnDevice: planned);
        }
        catch
        {
            device.Dispose();
            throw;
        }
        using var deviceScope = device;
        using var sessionScope = session;
        text.WriteLine(device.Description);
        text.WriteLine($"data: {info.Name} from {data.Train.Source}: {data.Train.Count:N0} training and {data.Test.Count:N0} test images of [{info.Channels}, {info.Height}, {info.Width}]");

        text.WriteLine($"model: {session.Model.Describe()}; {session.Model.ParameterCount:N0} parameters" +
            (session.Network.ConvLabel.Length > 0 ? $"; conv {session.Network.ConvLabel}" : ""));
        text.WriteLine($"optimizer: {session.Optimizer.Name}, lr {config.EffectiveLearningRate}" +
            (session.Optimizer.Name == "momentum" ? $", momentum {config.EffectiveMomentum}" : "") +
            $"; batch {config.BatchSize}{(config.Accumulate > 1 ? $" in micro-batches of {config.MicroBatch} (--accumulate {config.Accumulate})" : "")}, {config.Epochs} epoch(s), seed {config.Seed}, matmul {session.MatmulName}");
        if (session.MatmulChoice is { } choice) text.WriteLine($"matmul auto: {choice}");
        if (session.Network.Half is not null)
            text.WriteLine($"precision: {PrecisionName(config.Precision)}: float32 master weights, weight gradients and optimizer state; a 16-bit weight copy, " +
                "the batch, layer outputs and gradients between layers in 16 bits; the loss in float32" +
                (session.Scaler is { } sc ? $"; loss scale {sc.Scale:N0} (dynamic)" : ""));

        EpochPosition start = new(0, 0, 0, 0, 0);
        if (resume is not null)
        {
            if (resume.Header.Stack is null && !resume.Header.Layers.SequenceEqual(session.Network.MlpSizes))
                throw new DataFormatException(resumePath!, null, $"the checkpoint's model {string.Join("-", resume.Header.Layers)} does not fit {info.Name} ({session.Network.Label})");
            int batchesPerEpoch = (data.Train.Count + config.BatchSize - 1) / config.BatchSize;
            string? warning = Checkpoint.CheckData(resumePath!, resume.Header, dataIdentity.Value, batchesPerEpoch);
            if (warning is not null) stderr.WriteLine($"warning: {warning}");
            Checkpoint.Apply(resume, session);
            start = Checkpoint.Position(resume.Header);
            text.WriteLine($"resumed from {resumePath}: epoch {start.Epoch + 1}, step {start.NextBatch + 1} of the epoch, optimizer step {resume.Header.OptimizerSteps}");
        }
        if (start.Epoch >= config.Epochs)
            throw new UsageException($"--epochs {config.Epochs}: the checkpoint has already finished {start.Epoch} epoch(s); ask for more");

        var trainer = new Trainer(session, data);
        long? allocationsAfterFirstStep = null;
        long countAfterFirst = -1;
        trainer.OnStep = (epoch, batch, loss) =>
        {
            if (countAfterFirst < 0) countAfterFirst = session.Tracker.AllocationCount;
        };
        var progress = new ProgressLine(stderr, config.Epochs);
        trainer.OnProgress = progress.Update;

        trainer.StopRequested = () => Volatile.Read(ref stop) == 1;
        int Interrupted(EpochPosition at, string where, bool save)
        {
            if (save) Checkpoint.Save(interruptPath, session, at, dataIdentity.Value);
            stderr.WriteLine($"interrupted: {where}; checkpoint saved to {interruptPath} (continue with: scratchnet train --resume {interruptPath} --epochs {config.Epochs})");
            return Cli.ExitInterrupted;
        }

        var results = new List<EpochResult>();
        for (int epoch = start.Epoch; epoch < config.Epochs; epoch++)
        {
            EpochResult? r;
            try
            {
                r = trainer.RunEpoch(epoch, epoch == start.Epoch && start.NextBatch > 0 ? start : null);
            }
            catch (DeviceMemoryException e)
            {
                progress.Clear();
                session.AddAdvice(e);
                throw;
            }
            catch (DivergenceException e)
            {
                progress.Clear();
                string kept = savePath is not null && File.Exists(savePath) ? $" The last good checkpoint is unchanged: {savePath}." : "";
                stderr.WriteLine($"error: {e.Message}{kept}");
                return Cli.ExitFailure;
            }
            progress.Clear();
            if (r is null)
            {
                EpochPosition at = trainer.Interrupted!;
                return Interrupted(at, $"stopped inside epoch {at.Epoch + 1} after step {at.NextBatch} of {trainer.TrainLoader.BatchesPerEpoch}", save: true);
            }
            results.Add(r);
            text.WriteLine($"epoch {r.Epoch}/{config.Epochs}: loss {r.Loss:0.0000}, train acc {100 * r.TrainAccuracy:0.00}%, " +
                $"test acc {100 * r.TestAccuracy:0.00}%, {r.Seconds:0.00} s, {r.SamplesPerSecond:N0} samples/s");
            if (session.Scaler is { } scaler)
                text.WriteLine($"  loss scaler: scale {scaler.Scale:N0}, {scaler.GoodSteps:N0} good steps since it last changed, {scaler.SkippedSteps:N0} step(s) skipped on inf/NaN gradients so far");
            if (savePath is not null)
            {
                Checkpoint.Save(savePath, session, new EpochPosition(epoch + 1, 0, 0, 0, 0), dataIdentity.Value);
                text.WriteLine($"checkpoint: {savePath}");
            }
            if (Volatile.Read(ref stop) == 1)
                return Interrupted(new EpochPosition(epoch + 1, 0, 0, 0, 0), $"after epoch {epoch + 1}", save: savePath is null);
        }
        allocationsAfterFirstStep = session.Tracker.AllocationCount - Math.Max(0, countAfterFirst);

        var summary = MemoryReport.Build(session.Tracker, session.Estimate(), allocationsAfterFirstStep);
        text.WriteLine();
        text.Write(MemoryReport.Format(summary, $"{session.Model.Describe()}; {session.Model.ParameterCount:N0} parameters"));
        if (json)
        {
            var doc = new
            {
                device = device.Label,
                deviceKind = device.Kind.ToString(),
                deviceReason = device.Reason,
                dataset = info.Name,
                dataSource = data.Train.Source,
                trainImages = data.Train.Count,
                testImages = data.Test.Count,
                imageShape = new[] { info.Channels, info.Height, info.Width },
                layers = session.Network.IsMlp ? session.Network.MlpSizes : null,
                stack = session.Network.Spec.Text,
                conv = session.Network.ConvLabel,
                parameters = session.Model.ParameterCount,
                optimizer = session.Optimizer.Name,
                learningRate = config.EffectiveLearningRate,
                momentum = config.EffectiveMomentum,
                batchSize = config.BatchSize,
                epochs = config.Epochs,
                seed = config.Seed,
                matmul = session.MatmulName,
                precision = PrecisionName(config.Precision),
                lossScale = session.Scaler?.Scale,
                skippedSteps = session.Scaler?.SkippedSteps,
                matmulAuto = session.MatmulChoice?.Timings.Select(t => new { version = MatmulVersions.Label(t.Version), milliseconds = t.Milliseconds }),
                results,
                memory = summary,
            };
            stdout.WriteLine(JsonSerializer.Serialize(doc, JsonOptions));
        }
        return Cli.ExitOk;
    }

    static string PrecisionName(Precision p) => p.ToString().ToLowerInvariant();

    /// <summary>
    /// The configuration of a resumed run: the checkpoint's model, optimizer, batch size and seed (an option
    /// given on the command line must agree), with this run's device, data folder, epochs and, if given, --lr.
    /// </summary>
    static TrainConfig FromCheckpoint(CheckpointHeader h, TrainConfig given, Options o)
    {
        void Same<T>(string option, T mine, T theirs)
        {
            if (o.Has(option) && !EqualityComparer<T>.Default.Equals(mine, theirs))
                throw new UsageException($"{option} {mine} differs from the checkpoint's {theirs}; a resumed run keeps the checkpoint's value");
        }
        int classes = DatasetInfo.Get(h.Dataset).Classes;
        string stack = h.Spec(classes).Text;
        Same("--dataset", given.Dataset, h.Dataset);
        if ((o.Has("--hidden") || o.Has("--model") || o.Has("--layers")) && given.Spec(classes).Text != stack)
            throw new UsageException($"the model given ({given.Spec(classes).Text}) differs from the checkpoint's {stack}; a resumed run keeps the checkpoint's model");
        Same("--conv", given.Conv.ToString().ToLowerInvariant(), h.ConvVersion.ToString().ToLowerInvariant());
        Same("--optimizer", given.OptimizerKind, h.Optimizer);
        Same("--precision", PrecisionName(given.Precision), PrecisionName(h.PrecisionKind));
        Same("--batch-size", given.BatchSize, h.BatchSize);
        Same("--seed", given.Seed, h.Seed);
        return given with
        {
            Dataset = h.Dataset,
            Layers = stack,
            Conv = h.ConvVersion,
            Precision = h.PrecisionKind,
            Optimizer = h.Optimizer,
            Momentum = h.Optimizer == "adam" ? null : h.Momentum,
            LearningRate = o.Has("--lr") ? given.LearningRate : h.LearningRate,
            MatmulFromCheckpoint = MatmulVersions.Kernels.Cast<MatmulVersion?>().FirstOrDefault(v => MatmulVersions.Label(v!.Value) == h.Matmul),
            BatchSize = h.BatchSize,
            Seed = h.Seed,
        };
    }

    /// <summary>
    /// Every --json document: indented, camelCase, and plain JSON text (the default encoder escapes ', +, &lt;
    /// and non-ASCII for embedding in HTML, which a reader of our JSON does not expect).
    /// </summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
