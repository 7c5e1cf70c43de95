using System.Diagnostics;
using System.Text.Json;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet evaluate --resume FILE: the test accuracy of a checkpoint, computed by prediction alone
/// (<see cref="InferenceSession"/>: no gradients, no optimizer state, each activation freed once read), with the
/// memory that took beside the closed form, and what training the same model at the same batch holds.
/// </summary>
public static class EvaluateCommand
{
    static readonly OptionSpec[] Specs =
    [
        new("--resume", "FILE", "the checkpoint to evaluate (its dataset, model and conv version)"),
        new("--data", "DIR", "folder with the dataset's files (default: as for train)"),
        new("--device", "NAME", ComputeDevice.ChoiceHelp),
        new("--batch-size", "N", "images per prediction batch (default: the checkpoint's)"),
        new("--json", null, "one JSON document on stdout instead of text"),
    ];

    public static string Help => HelpText.Format("scratchnet evaluate --resume FILE [options]",
        "Test accuracy of a checkpoint, by prediction only, and the memory prediction needs against training.", Specs);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var o = new Options("evaluate", args, Specs);
        if (o.Help)
        {
            stdout.Write(Help);
            return Cli.ExitOk;
        }
        string path = o.String("--resume") ?? throw new UsageException("evaluate needs --resume FILE (a checkpoint written by train --save)");
        string deviceChoice = o.Choice("--device", "auto", ComputeDevice.Choices);
        bool json = o.Flag("--json");
        var loaded = Checkpoint.Load(path);
        var h = loaded.Header;
        int batch = o.Int("--batch-size", h.BatchSize, 1);
        DatasetInfo info = DatasetInfo.Get(h.Dataset);
        var config = new TrainConfig { Dataset = h.Dataset, Layers = h.Spec(info.Classes).Text, Conv = h.ConvVersion, BatchSize = batch };
        Network net = config.Network(info);
        if (batch > net.MaxBatch) throw new UsageException($"--batch-size {batch}: the largest batch for this model is {net.MaxBatch:N0}");

        DatasetPair data = DatasetLoader.Load(h.Dataset, o.String("--data"));
        if (data.Notice is not null) stderr.WriteLine($"note: {data.Notice}");
        using ComputeDevice device = ComputeDevice.Create(deviceChoice);
        using var session = new InferenceSession(device, net, batch);
        session.Model.Parameters.CopyFrom(loaded.Parameters);
        var loader = new BatchLoader(data.Test, batch, shuffle: false, seed: 0);
        var images = new float[(long)batch * info.ImageSize];
        var labels = new int[batch];
        long correct = 0;
        var clock = Stopwatch.StartNew();
        for (int b = 0; b < loader.BatchesPerEpoch; b++)
        {
            int rows = loader.Fill(b, images, labels);
            session.Images.CopyFrom(images.AsSpan(0, rows * info.ImageSize));
            var predictions = session.Predict(rows);
            for (int i = 0; i < rows; i++)
                if (predictions[i] == labels[i]) correct++;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        double accuracy = (double)correct / data.Test.Count;
        var estimate = InferenceSession.Estimate(net, batch);
        long trainingBytes = MemoryEstimator.Estimate(net with { Precision = h.PrecisionKind }, batch, h.Optimizer).Total;   // as it was trained (prediction runs in float32)
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(new
            {
                checkpoint = path, dataset = h.Dataset, model = net.Spec.Text, conv = net.ConvLabel, device = device.Label,
                testImages = data.Test.Count, correct, testAccuracy = accuracy, seconds, batchSize = batch,
                predictionPeak = session.Tracker.PeakBytes, predictionPeakEstimate = estimate.Total, trainingBytesEstimate = trainingBytes,
            }, TrainCommand.JsonOptions));
            return Cli.ExitOk;
        }
        stdout.WriteLine(device.Description);
        stdout.WriteLine($"checkpoint: {path}: {net.Label} ({net.ParameterCount:N0} parameters), trained {h.Epoch} epoch(s) on {h.Dataset}");
        stdout.WriteLine($"test accuracy: {100 * accuracy:0.00}% ({correct:N0} of {data.Test.Count:N0}), {seconds:0.00} s at batch {batch}");
        stdout.WriteLine($"memory: prediction peaked at {Bytes.Exact(session.Tracker.PeakBytes)} (estimate {Bytes.Exact(estimate.Total)}{(session.Tracker.PeakBytes == estimate.Total ? ", exact" : ", DIFFERENT")}); " +
            $"training this model at batch {batch} with {h.Optimizer}{(h.PrecisionKind != Precision.Fp32 ? " in " + h.Precision : "")} holds {Bytes.Exact(trainingBytes)} ({(double)trainingBytes / estimate.Total:0.00}x)");
        return Cli.ExitOk;
    }
}
