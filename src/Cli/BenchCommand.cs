using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet bench: each kernel's time on the lesson's shapes (batch 64 and 1024), with GFLOP/s or GB/s,
/// every matmul version side by side, end-to-end training samples/s, and a step taken apart (<see cref="StepBreakdown"/>). Minimum, median and maximum over repeats,
/// after a warm-up launch (which also compiles the kernel). On a CPU device every rate is also shown as a share of
/// the bound that applies (the roofline: <see cref="Roofline"/>, measured at the start of the run).
/// </summary>
public static class BenchCommand
{
    /// <summary>One timed operation: its median time (and the fastest and slowest repeat), its rate, and that rate as a
    /// percentage of the machine's bound for it (null where none applies: samples/s, or a GPU).</summary>
    public sealed record Row(string Operation, int Batch, string Version, double MedianMs, double Rate, string Unit, string Note)
    {
        public double MinMs { get; init; } = double.NaN;
        public double MaxMs { get; init; } = double.NaN;
        public double? Percent { get; set; }
        public string Bound { get; set; } = "";
        /// <summary>Bytes a GB/s row reads and writes: which level of memory bounds it.</summary>
        public double BytesTouched { get; init; }
    }

    static readonly OptionSpec[] Specs =
    [
        new("--device", "NAME", ComputeDevice.ChoiceHelp),
        new("--repeats", "N", "timed launches per row, after a warm-up (default 15); min, median and max are shown"),
        new("--steps", "N", "training steps for the samples/s rows (default 100)"),
        new("--model", "NAME", "also time every layer of this model, forward and backward, at batch 64, for each conv version:\nmlp or cnn (see train --help); the end-to-end rows stay the lesson's MLP"),
        new("--layers", "LAYERS", "the same for any stack (see train --help)"),
        new("--json", null, "one JSON document on stdout instead of text"),
    ];

    public static string Help => HelpText.Format($"scratchnet bench [--device {ComputeDevice.ChoiceList}] [--repeats 7] [--steps 100] [--json]",
        "Times each kernel on the lesson's shapes (batch 64 and 1024) with GFLOP/s or GB/s, every matmul version\nside by side, and end-to-end training samples/s; then takes one training step at batch 64 apart: each\npart's microseconds and fork/joins (docs/step-time.md).", Specs);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = new Options("bench", args, Specs);
        if (o.Help)
        {
            stdout.Write(Help);
            return Cli.ExitOk;
        }
        string choice = o.Choice("--device", "auto", ComputeDevice.Choices);
        int repeats = o.Int("--repeats", 15, 1, 1000);
        int steps = o.Int("--steps", 100, 1, 100_000);
        bool json = o.Flag("--json");
        string? modelName = o.Has("--model") ? o.Choice("--model", "mlp", ["mlp", "cnn"]) : null;
        string? layers = o.String("--layers");
        if (modelName is not null && layers is not null) throw new UsageException("--layers and --model: give one of them");
        TrainConfig? layerConfig = modelName is null && layers is null ? null : new TrainConfig { Model = modelName ?? "mlp", Layers = layers };
        DatasetInfo fashion = DatasetInfo.Get("fashion-mnist");
        if (layerConfig is not null)
        {
            try
            {
                _ = layerConfig.Network(fashion).Layers;
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"{(layers is not null ? "--layers" : "--model")} on fashion-mnist [1, 28, 28]: {e.Message}");
            }
        }
        using ComputeDevice device = ComputeDevice.Create(choice);
        string machine = $"{Environment.MachineName}: {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, .NET {Environment.Version}";
        var rows = new List<Row>();
        // The roofline applies where the kernels run on this CPU: the host backend, the CPU accelerator, an OpenCL CPU device.
        bool onCpu = device.Kind is DeviceKind.Host or DeviceKind.Cpu || device.IsOpenCLCpu;
        Roofline.Limits limits = Roofline.Measure();
        void Add(Row r)
        {
            if (onCpu && !double.IsNaN(r.Rate))
            {
                if (r.Unit == "GFLOP/s") (r.Percent, r.Bound) = (100 * r.Rate / limits.PeakGflops, "FMA peak");
                else if (r.Unit == "GB/s")
                {
                    var (bw, level) = limits.BandwidthFor(r.BytesTouched);
                    (r.Percent, r.Bound) = (100 * r.Rate / bw, level);
                }
            }
            rows.Add(r);
            if (!json && double.IsNaN(r.MedianMs))   // not timed (n/a): the note says why
                stdout.WriteLine($"  {r.Operation,-28} {r.Batch,6} {r.Version,-12} {"",13} {"",15} {"",10} {"",-9} {"",-18} {r.Note}");
            else if (!json)
                stdout.WriteLine($"  {r.Operation,-28} {r.Batch,6} {r.Version,-12} {r.MedianMs,10:0.000} ms {$"{r.MinMs:0.000}-{r.MaxMs:0.000}",15} {r.Rate,10:0.00} {r.Unit,-9} " +
                    $"{(r.Percent is double pc ? $"{pc,4:0}% of {r.Bound}" : ""),-18} {r.Note}");
        }
        if (!json)
        {
            stdout.WriteLine($"machine: {machine}");
            stdout.WriteLine(device.Description);
            stdout.WriteLine($"roofline of this CPU ({limits.Cores} cores, measured now): FMA peak {string.Join(", ", limits.Fma.Select(f => $"{f.Gflops:0} GFLOP/s at {f.Bits} bits"))}; " +
                $"reads {limits.L2GBs:0} GB/s from L2 ({limits.L2Bytes / 1024} KiB per core), {limits.L3GBs:0} GB/s from L3, {limits.DramGBs:0} GB/s from DRAM" +
                (onCpu ? "" : " (the kernels run on the device, so no percentages)"));
            stdout.WriteLine($"median of {repeats} repeats after one warm-up launch, with the fastest and slowest; % of the bound that applies: the best FMA peak for GFLOP/s, " +
                $"for GB/s the bandwidth of L2 when the bytes fit every core's L2, of L3 up to {Roofline.L3Assumed >> 20} MiB, else of DRAM");
            stdout.WriteLine($"  {"operation",-28} {"batch",6} {"version",-12} {"median",13} {"min-max ms",15} {"rate",10}");
        }
        IBackend backend = Backends.For(device);
        // The host backend's own matmul, or every ILGPU kernel (those this accelerator cannot run shown as n/a).
        IEnumerable<MatmulVersion> versions = backend is HostBackend ? backend.MatmulVersions : MatmulVersions.Kernels;
        var acc = device.Accelerator;
        var tracker = new MemoryTracker(acc);   // the benchmark's buffers are tracked like any other (category Other)
        foreach (int batch in new[] { 64, 1024 })
        {
            const int inF = 784, outF = 128;
            var r = new Random(batch);
            using var x = tracker.AllocateFrom("bench.x", Reference.RandomFloats(r, batch * inF), MemoryCategory.Other);
            using var w = tracker.AllocateFrom("bench.w", Reference.RandomFloats(r, outF * inF), MemoryCategory.Other);
            using var y = tracker.Allocate<float>("bench.y", [batch * outF], MemoryCategory.Other);
            using var dy = tracker.AllocateFrom("bench.dy", Reference.RandomFloats(r, batch * outF), MemoryCategory.Other);
            using var dw = tracker.Allocate<float>("bench.dw", [outF * inF], MemoryCategory.Other);
            double flops = 2.0 * batch * inF * outF;
            foreach (MatmulVersion v in versions)
            {
                string name = MatmulVersions.Label(v);
                if (!backend.MatmulVersions.Contains(v))
                {
                    Add(new Row("matmul forward x·W^T", batch, name, double.NaN, double.NaN, "GFLOP/s", "n/a: needs 256-thread groups"));
                    continue;
                }
                var fwd = Time(backend, repeats, () => backend.Matmul(v, x.View, w.View, y.View, batch, outF, inF, inF, 1, 1, inF));
                Add(new Row("matmul forward x·W^T", batch, name, fwd.Median, flops / fwd.Median / 1e6, "GFLOP/s", $"({batch}x{inF})·({inF}x{outF})") { MinMs = fwd.Min, MaxMs = fwd.Max });
                var bw = Time(backend, repeats, () => backend.Matmul(v, dy.View, x.View, dw.View, outF, inF, batch, 1, outF, inF, 1));
                Add(new Row("matmul backward dW", batch, name, bw.Median, flops / bw.Median / 1e6, "GFLOP/s", $"({outF}x{batch})·({batch}x{inF})") { MinMs = bw.Min, MaxMs = bw.Max });
            }
            using var bias = tracker.AllocateFrom("bench.bias", Reference.RandomFloats(r, outF), MemoryCategory.Other);
            var ba = Time(backend, repeats, () => backend.BiasActivation(y.View, bias.View, batch, outF, true));
            Add(new Row("bias + relu", batch, "fused", ba.Median, 2.0 * 4 * batch * outF / ba.Median / 1e6, "GB/s", $"({batch}x{outF})")
                { MinMs = ba.Min, MaxMs = ba.Max, BytesTouched = 2.0 * 4 * batch * outF });
            using var logits = tracker.AllocateFrom("bench.logits", Reference.RandomFloats(r, batch * 10), MemoryCategory.Other);
            using var labels = tracker.AllocateFrom("bench.labels", Enumerable.Range(0, batch).Select(i => i % 10).ToArray(), MemoryCategory.Other);
            using var losses = tracker.Allocate<float>("bench.losses", [batch], MemoryCategory.Other);
            using var dl = tracker.Allocate<float>("bench.dl", [batch * 10], MemoryCategory.Other);
            var sce = Time(backend, repeats, () => backend.SoftmaxCrossEntropy(logits.View, labels.View, losses.View, dl.View, batch, 10, batch));
            Add(new Row("softmax-cross-entropy", batch, "fused", sce.Median, 4.0 * (2 * batch * 10 + 2 * batch) / sce.Median / 1e6, "GB/s", $"({batch}x10)")
                { MinMs = sce.Min, MaxMs = sce.Max, BytesTouched = 4.0 * (2 * batch * 10 + 2 * batch) });
        }
        {
            const int p = 101_770;
            var r = new Random(5);
            using var pa = tracker.AllocateFrom("bench.pa", Reference.RandomFloats(r, p), MemoryCategory.Other);
            using var g = tracker.AllocateFrom("bench.g", Reference.RandomFloats(r, p), MemoryCategory.Other);
            using var m = tracker.Allocate<float>("bench.m", [p], MemoryCategory.Other);
            using var v = tracker.Allocate<float>("bench.v", [p], MemoryCategory.Other);
            var adam = Time(backend, repeats, () => backend.Adam(pa.View, g.View, m.View, v.View, p, 0.9f, 0.999f, 1e-8f, 1e-3f, 1f));
            Add(new Row("adam (all parameters)", 0, "one", adam.Median, 4.0 * 7 * p / adam.Median / 1e6, "GB/s", "101,770 parameters, one launch")
                { MinMs = adam.Min, MaxMs = adam.Max, BytesTouched = 4.0 * 7 * p });
        }
        var data = DatasetLoader.LoadEmbedded(null);
        var breakdowns = new List<Breakdown>();
        void AddBreakdown(Breakdown b)
        {
            breakdowns.Add(b);
            if (!json) b.Write(stdout);
        }
        foreach (int batch in new[] { 64, 1024 })
        {
            var config = new TrainConfig { BatchSize = batch };
            using var session = new TrainingSession(device, config, data.Train.Info);
            var loader = new BatchLoader(data.Train, batch, shuffle: true, seed: 42);
            var images = new float[batch * 784];
            var lbl = new int[batch];
            int n = Math.Max(1, Math.Min(steps, 20_000 / batch + 1));
            var samples = new List<double>();
            for (int rep = 0; rep < Math.Min(repeats, 3) + 1; rep++)
            {
                var clock = Stopwatch.StartNew();
                long seen = 0;
                for (int s = 0; s < n; s++)
                {
                    int count = loader.Fill(s % loader.BatchesPerEpoch, images, lbl);
                    session.Upload(images, lbl, count);
                    session.TrainStep(lbl, count);
                    seen += count;
                }
                if (rep > 0) samples.Add(seen / clock.Elapsed.TotalSeconds);
            }
            var (slowest, median, fastest) = Spread(samples);   // samples/s: the smallest rate is the slowest repeat
            Add(new Row("training step (end to end)", batch, session.MatmulName, 1000.0 * batch / median, median, "samples/s", $"784-128-10 Adam, {n} steps per repeat, host batching included")
                { MinMs = 1000.0 * batch / fastest, MaxMs = 1000.0 * batch / slowest });
            if (batch == 64) AddBreakdown(StepBreakdown(session, data.Train, Math.Max(steps, 2), $"784-128-10 Adam, batch 64, {session.MatmulName}"));
        }
        if (layerConfig is not null) LayerRows(device, layerConfig, repeats, Add, steps, AddBreakdown);
        if (json)
        {
            static double? N(double v) => double.IsNaN(v) ? null : v;
            var roofline = new
            {
                cores = limits.Cores, fma = limits.Fma.Select(f => new { bits = f.Bits, gflops = f.Gflops }), peakGflops = limits.PeakGflops,
                l2GBs = limits.L2GBs, l3GBs = limits.L3GBs, dramGBs = limits.DramGBs, l3AssumedBytes = Roofline.L3Assumed, l2Bytes = limits.L2Bytes, appliesToDevice = onCpu,
            };
            stdout.WriteLine(JsonSerializer.Serialize(new
            {
                machine, device = device.Label, deviceKind = device.Kind.ToString(), deviceReason = device.Reason, repeats, roofline,
                rows = rows.Select(r => new
                {
                    r.Operation, r.Batch, r.Version, medianMs = N(r.MedianMs), minMs = N(r.MinMs), maxMs = N(r.MaxMs), rate = N(r.Rate), r.Unit,
                    percent = r.Percent, bound = r.Bound.Length > 0 ? r.Bound : null, r.Note,
                }),
                stepBreakdowns = breakdowns.Select(b => new
                {
                    b.Title, b.Steps, b.SumUs, b.UnclockedUs, b.ForkJoinsPerStep,
                    parts = b.Parts.Select(p => new { p.Name, p.MedianUs, p.MinUs, p.MaxUs, p.Share, p.ForkJoinsPerStep }),
                }),
            }, TrainCommand.JsonOptions));
        }
        return Cli.ExitOk;
    }

    /// <summary>
    /// Every layer of a model, forward and backward, timed alone at batch 64 on real buffers (after one training
    /// step), for each conv version when the model has convolutions, then a whole training step: where the time goes.
    /// Conv and Linear rows in GFLOP/s (forward 2 B x multiply-adds; backward the same for dW and again for dx when
    /// computed), the others in GB/s of bytes read and written.
    /// </summary>
    static void LayerRows(ComputeDevice device, TrainConfig config, int repeats, Action<Row> add, int steps, Action<Breakdown> addBreakdown)
    {
        const int batch = 64;
        var data = DatasetLoader.LoadEmbedded(null);
        DatasetInfo info = data.Train.Info;
        bool hasConv = config.Network(info).Layers.Any(l => l is Conv2d);
        foreach (ConvVersion conv in hasConv ? [ConvVersion.Im2col, ConvVersion.Direct] : new[] { ConvVersion.Im2col })
        {
            var c = config with { BatchSize = batch, Conv = conv };
            using var session = new TrainingSession(device, c, info);
            var loader = new BatchLoader(data.Train, batch, shuffle: false, seed: 0);
            var images = new float[batch * info.ImageSize];
            var labels = new int[batch];
            int rows = loader.Fill(0, images, labels);
            session.Upload(images, labels, rows);
            session.TrainStep(labels, rows);
            string version = hasConv ? conv.ToString().ToLowerInvariant() : session.MatmulName;
            var model = session.Model;
            for (int i = 0; i < model.Layers.Count; i++)
            {
                Layer layer = model.Layers[i];
                LayerBuffers io = session.Buffers.Layers[i];
                if (layer is Flatten) continue;
                double macs = (double)batch * layer.MultiplyAddsPerSample;
                double bytes = 4.0 * batch * (layer.In.Size + layer.Out.Size);
                string shape = $"{layer.In} -> {layer.Out}";
                // A fused ReLU has nothing left to do in that direction (see Relu): no timing, its row says where the work went.
                if (layer is Relu { AppliedInBias: true })
                    add(new Row($"{layer.Name} forward", batch, version, double.NaN, double.NaN, "GB/s", $"n/a: fused, applied in {model.Layers[i - 1].Name}'s bias pass"));
                else
                {
                    var fwd = Time(session.Backend, repeats, () => layer.Forward(session.Context, io, rows));
                    add((macs > 0
                        ? new Row($"{layer.Name} forward", batch, version, fwd.Median, 2 * macs / fwd.Median / 1e6, "GFLOP/s", $"{layer.Describe()} {shape}")
                        : new Row($"{layer.Name} forward", batch, version, fwd.Median, bytes / fwd.Median / 1e6, "GB/s", $"{layer.Describe()} {shape}"))
                        with { MinMs = fwd.Min, MaxMs = fwd.Max, BytesTouched = bytes });
                }
                if (i < model.FirstTrainable) continue;
                if (layer is Relu { MaskedByPool: true })
                {
                    add(new Row($"{layer.Name} backward", batch, version, double.NaN, double.NaN, "GB/s", $"n/a: fused, its mask applied in {model.Layers[i + 1].Name}'s backward"));
                    continue;
                }
                var bwd = Time(session.Backend, repeats, () => layer.Backward(session.Context, io, rows));
                double backMacs = io.InputGradient is null ? macs : 2 * macs;
                add((macs > 0
                    ? new Row($"{layer.Name} backward", batch, version, bwd.Median, 2 * backMacs / bwd.Median / 1e6, "GFLOP/s", io.InputGradient is null ? "dW and db (no dx: first layer)" : "dW, db and dx")
                    : new Row($"{layer.Name} backward", batch, version, bwd.Median, bytes / bwd.Median / 1e6, "GB/s", ""))
                    with { MinMs = bwd.Min, MaxMs = bwd.Max, BytesTouched = bytes });
            }
            var step = Time(session.Backend, repeats, () => session.TrainStep(labels, rows));
            add(new Row("training step (this model)", batch, version, step.Median, 1000.0 * batch / step.Median, "samples/s", $"{session.Network.Label}, Adam, batch already on the device")
                { MinMs = step.Min, MaxMs = step.Max });
            if (conv == ConvVersion.Im2col)
                addBreakdown(StepBreakdown(session, data.Train, Math.Max(2, Math.Min(steps, 50)), $"{session.Network.Label}, Adam, batch {batch}, {version}"));
            // --recompute: the same step with each block's forward run again in backward; the difference is its price.
            if (Recompute.Recomputed(model.Layers).Count == 0) continue;
            using var again = new TrainingSession(device, c with { Recompute = true }, info);
            again.Upload(images, labels, rows);
            var recomputed = Time(again.Backend, repeats, () => again.TrainStep(labels, rows));
            add(new Row("training step, --recompute", batch, version, recomputed.Median, 1000.0 * batch / recomputed.Median, "samples/s",
                $"{recomputed.Median - step.Median:+0.00;-0.00} ms ({100 * (recomputed.Median / step.Median - 1):+0;-0}%) against the step above: the forward of " +
                $"{string.Join(" and ", Recompute.Recomputed(model.Layers).Select(b => model.Layers[b.First].Name + "'s block"))} again")
                { MinMs = recomputed.Min, MaxMs = recomputed.Max });
        }
    }

    /// <summary>One part of a step in a <see cref="Breakdown"/>: median, fastest and slowest µs over the steps clocked, its share of
    /// the sum of the parts' medians (%), and the host backend's fork/joins in it per step.</summary>
    public sealed record BreakdownPart(string Name, double MedianUs, double MinUs, double MaxUs, double Share, double ForkJoinsPerStep);

    /// <summary>
    /// Where a training step's time goes: its parts in order, the sum of their medians, and beside it the median of the
    /// same steps run without the clock, alternating with the clocked ones (the clock's own cost and the noise show as the
    /// difference between the two).
    /// </summary>
    public sealed record Breakdown(string Title, int Steps, IReadOnlyList<BreakdownPart> Parts, double SumUs, double UnclockedUs, double ForkJoinsPerStep)
    {
        public void Write(TextWriter w)
        {
            w.WriteLine($"where a training step's time goes ({Title}; {Steps} steps clocked part by part, alternating with {Steps} unclocked):");
            w.WriteLine($"  {"part",-24} {"median µs",10} {"min-max µs",17} {"share",7} {"fork/joins",11}");
            foreach (var p in Parts)
                w.WriteLine($"  {p.Name,-24} {p.MedianUs,10:0.0} {$"{p.MinUs:0.0}-{p.MaxUs:0.0}",17} {p.Share,6:0.0}% {p.ForkJoinsPerStep,11:0.##}");
            w.WriteLine($"  {"sum of the parts",-24} {SumUs,10:0.0} {"",17} {100,6:0.0}% {ForkJoinsPerStep,11:0.##}");
            w.WriteLine($"  {"whole step, unclocked",-24} {UnclockedUs,10:0.0}   (median; the same steps without the clock)");
        }
    }

    /// <summary>
    /// `steps` training steps on the session's batch size with the batches of `train`, every other one clocked part by part
    /// (<see cref="StepClock"/>: filling the batch on the host, the upload, then the step's own parts), after a few unclocked
    /// steps of warm-up; each part's median, and the median of the unclocked steps (fill, upload and step, timed whole).
    /// </summary>
    static Breakdown StepBreakdown(TrainingSession session, Dataset train, int steps, string title)
    {
        int batch = session.MicroBatch;
        var loader = new BatchLoader(train, batch, shuffle: true, seed: 42);
        var images = new float[batch * (int)session.Network.Input.Size];
        var labels = new int[batch];
        var clock = new StepClock(session.Backend);
        var unclocked = new List<double>();
        for (int s = -4; s < 2 * steps; s++)   // 4 warm-up steps, then clocked and unclocked in turn
        {
            bool clocked = s >= 0 && s % 2 == 0;
            session.Clock = clocked ? clock : null;
            session.Backend.Synchronize();
            long start = Stopwatch.GetTimestamp();
            if (clocked) clock.Start();
            int rows = loader.Fill((s + 4) % loader.BatchesPerEpoch, images, labels);
            session.Clock?.Lap("fill batch (host)");
            session.Upload(images, labels, rows);
            session.Clock?.Lap("upload");
            session.TrainStep(labels, rows);
            session.Backend.Synchronize();
            if (s >= 0 && !clocked) unclocked.Add((Stopwatch.GetTimestamp() - start) * 1e6 / Stopwatch.Frequency);
        }
        session.Clock = null;
        var spreads = clock.Parts.Select(p => Spread([.. p.Microseconds])).ToList();   // a copy: the clock keeps its steps in order
        double sum = spreads.Sum(t => t.Median);
        var parts = clock.Parts.Select((p, i) =>
            new BreakdownPart(p.Name, spreads[i].Median, spreads[i].Min, spreads[i].Max, 100 * spreads[i].Median / sum, (double)p.ForkJoins / clock.Steps)).ToList();
        return new Breakdown(title, clock.Steps, parts, sum, Spread(unclocked).Median, parts.Sum(p => p.ForkJoinsPerStep));
    }

    /// <summary>Fastest, median and slowest milliseconds of `launch` over repeats, after one warm-up; each timing ends with a synchronize.</summary>
    static (double Min, double Median, double Max) Time(IBackend backend, int repeats, Action launch)
    {
        launch();
        backend.Synchronize();
        int inner = 1;
        var t = Stopwatch.StartNew();
        launch();
        backend.Synchronize();
        double once = t.Elapsed.TotalMilliseconds;
        if (once < 2) inner = (int)Math.Min(100, Math.Ceiling(2 / Math.Max(once, 0.01)));
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            t.Restart();
            for (int j = 0; j < inner; j++) launch();
            backend.Synchronize();
            times.Add(t.Elapsed.TotalMilliseconds / inner);
        }
        return Spread(times);
    }

    /// <summary>Smallest, median (the upper one of an even count) and largest of the values; sorts the list in place.</summary>
    static (double Min, double Median, double Max) Spread(List<double> values)
    {
        values.Sort();
        return (values[0], values[values.Count / 2], values[^1]);
    }
}
