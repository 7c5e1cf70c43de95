using System.Text.Json;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet train: load the data, build the MLP on the chosen device, train, evaluate each epoch,
/// then print the memory report (or, with --json, one JSON document with all of it).
/// </summary>
public static class TrainCommand
{
    const string Help = """
        usage: scratchnet train [options]

        Trains the lesson's MLP (Flatten, Linear, ReLU, Linear) and prints, per epoch, the loss, train and
        test accuracy, seconds and samples/s; then the memory report: each category's live and peak bytes
        beside the closed-form estimate, and every live buffer.

        options:
        """ + ConfigOptions.Help + """
          --json               print one JSON summary on stdout instead of text
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var o = new Options("train", args, ConfigOptions.Valued, ["--json"]);
        if (o.Flag("--help"))
        {
            stdout.Write(Help);
            return Cli.ExitOk;
        }
        TrainConfig config = ConfigOptions.Parse(o);
        bool json = o.Flag("--json");
        TextWriter text = json ? TextWriter.Null : stdout;

        DatasetPair data = DatasetLoader.Load(config.Dataset, config.DataDir);
        if (data.Notice is not null) stderr.WriteLine($"note: {data.Notice}");
        DatasetInfo info = data.Train.Info;

        ComputeDevice device = ComputeDevice.Create(config.Device);
        TrainingSession session;
        try
        {
            session = new TrainingSession(device, config, info.ImageSize, info.Classes);
        }
        catch (DeviceMemoryException e) when (config.Device == "auto" && device.Kind != DeviceKind.Cpu && e.InnerException is not null)
        {
            // The lesson's fallback: the GPU itself is out of memory, so train on the CPU instead.
            stderr.WriteLine($"note: {device.Kind} is out of memory during setup ({e.Message}); falling back to the ILGPU CPU accelerator");
            device.Dispose();
            device = ComputeDevice.Create("cpu");
            session = new TrainingSession(device, config, info.ImageSize, info.Classes);
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

        text.WriteLine($"model: {session.Model.Describe()}; {session.Model.ParameterCount:N0} parameters");
        text.WriteLine($"optimizer: {session.Optimizer.Name}, lr {config.EffectiveLearningRate}" +
            (session.Optimizer.Name == "momentum" ? $", momentum {config.EffectiveMomentum}" : "") +
            $"; batch {config.BatchSize}, {config.Epochs} epoch(s), seed {config.Seed}, matmul {session.MatmulName}");

        var trainer = new Trainer(session, data);
        long? allocationsAfterFirstStep = null;
        long countAfterFirst = 0;
        trainer.OnStep = (epoch, batch, loss) =>
        {
            if (epoch == 0 && batch == 0) countAfterFirst = session.Tracker.AllocationCount;
        };
        var progress = new ProgressLine(stderr, config.Epochs);
        trainer.OnProgress = progress.Update;
        var results = new List<EpochResult>();
        for (int epoch = 0; epoch < config.Epochs; epoch++)
        {
            EpochResult r;
            try
            {
                r = trainer.RunEpoch(epoch);
            }
            catch (DeviceMemoryException e)
            {
                progress.Clear();
                session.AddAdvice(e);
                throw;
            }
            progress.Clear();
            results.Add(r);
            text.WriteLine($"epoch {r.Epoch}/{config.Epochs}: loss {r.Loss:0.0000}, train acc {100 * r.TrainAccuracy:0.00}%, " +
                $"test acc {100 * r.TestAccuracy:0.00}%, {r.Seconds:0.00} s, {r.SamplesPerSecond:N0} samples/s");
        }
        allocationsAfterFirstStep = session.Tracker.AllocationCount - countAfterFirst;

        var summary = MemoryReport.Build(session.Tracker, session.Estimate(), allocationsAfterFirstStep);
        text.WriteLine();
        text.Write(MemoryReport.Format(summary, $"{session.Model.Describe()}; {session.Model.ParameterCount:N0} parameters"));
        if (json)
        {
            var doc = new
            {
                device = device.Description,
                deviceKind = device.Kind.ToString(),
                dataset = info.Name,
                dataSource = data.Train.Source,
                trainImages = data.Train.Count,
                testImages = data.Test.Count,
                imageShape = new[] { info.Channels, info.Height, info.Width },
                layers = session.Sizes,
                parameters = session.Model.ParameterCount,
                optimizer = session.Optimizer.Name,
                learningRate = config.EffectiveLearningRate,
                momentum = config.EffectiveMomentum,
                batchSize = config.BatchSize,
                epochs = config.Epochs,
                seed = config.Seed,
                matmul = session.MatmulName,
                results,
                memory = summary,
            };
            stdout.WriteLine(JsonSerializer.Serialize(doc, JsonOptions));
        }
        return Cli.ExitOk;
    }

    public static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
}
