using System.Globalization;
using System.Text.Json;
using ScratchNet.Data;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// scratchnet memory: where the bytes go. Runs real training steps and shows, per category, the
/// closed-form estimate beside the measured live and peak bytes; across batch sizes; across optimizers;
/// and finds the largest batch that fits a memory budget, then proves it on the device.
/// </summary>
public static class MemoryCommand
{
    static readonly OptionSpec[] Specs =
    [
        .. ConfigOptions.Specs,
        new("--batch-sizes", "LIST", "a table across batch sizes, e.g. 1,16,64,256,1024"),
        new("--compare-optimizers", null, "sgd, momentum and adam side by side"),
        new("--budget", "FRACTION", "plan the largest batch whose peak fits FRACTION of the memory (default 0.8);\nthe memory is --memory-limit, else the device's (CUDA: free memory)"),
        new("--trace", "FILE.json", "every allocation/free/phase event of the probe"),
        new("--report", "FILE.html", "a self-contained page: the table and a stacked chart of live bytes over time"),
        new("--synthetic", null, "random pixels of the dataset's shape instead of its files (memory does not\ndepend on what the pixels are; no download needed)"),
        new("--alternate", "LIST", "one session whose steps alternate between these batch sizes, e.g. 64,100 (as training\nat one and evaluating at another does): the peaks of requested, allocated and reserved\nbytes in each step; with --lifetime eager and --allocator caching reserved grows"),
        new("--rounds", "N", "how many times --alternate goes through its list (default 3)"),
        new("--release-cache", null, "after --alternate, give the cached segments back (torch.cuda.empty_cache) and say\nhow much came back (needs --allocator caching)"),
        new("--target-batch", "N", "the remedy ladder: for an effective batch of N under the budget (--budget of\n--memory-limit), every remedy (accumulation, SGD, recompute, direct conv) with its bytes\nby category, whether it fits, its cost and a timed step; the recommended one is proved\nwith two steps and the next larger micro-batch shown failing"),
        new("--json", null, "one JSON document on stdout instead of text (errors still go to stderr as text)"),
    ];

    public static string Help => HelpText.Format("scratchnet memory [options]",
        """
        Runs two real training steps and prints, per category, the closed-form estimate, the requested bytes
        measured live after the steps and at the peak during them, and the bytes per sample.
        """, Specs);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var o = new Options("memory", args, Specs);
        if (o.Help)
        {
            stdout.Write(Help);
            return Cli.ExitOk;
        }
        TrainConfig config = ConfigOptions.Parse(o);
        int[] batchSizes = o.IntList("--batch-sizes", []);
        bool compare = o.Flag("--compare-optimizers");
        float? budgetFraction = o.Float("--budget", positiveOnly: true);
        if (budgetFraction > 1) throw new UsageException($"--budget: {budgetFraction} must be a fraction in (0, 1]");
        int? targetBatch = o.Has("--target-batch") ? o.Int("--target-batch", 0, 1) : null;
        if (targetBatch is not null && (config.Allocator == AllocatorKind.Caching || config.Lifetime == LifetimeKind.Eager))
            throw new UsageException("--target-batch: the ladder counts requested bytes with planned lifetimes and the exact allocator; leave out --allocator caching and --lifetime eager");
        if (targetBatch is not null && config.Accumulate > 1)
            throw new UsageException("--target-batch works out --accumulate itself; leave --accumulate out");
        bool plan = config.MemoryLimit is not null || budgetFraction is not null;
        if (plan && config.Allocator == AllocatorKind.Caching)
            throw new UsageException("--allocator caching with --memory-limit or --budget: the planner's closed form counts requested bytes; plan with the exact allocator (the default)");
        double fraction = budgetFraction ?? 0.8;
        int[] alternate = o.IntList("--alternate", []);
        int rounds = o.Int("--rounds", 3, 1, 1000);
        bool releaseCache = o.Flag("--release-cache");
        if (o.Has("--rounds") && alternate.Length == 0) throw new UsageException("--rounds goes with --alternate");
        if (releaseCache && alternate.Length == 0) throw new UsageException("--release-cache goes with --alternate (it releases the cache that the alternating steps left)");
        int maxBatch = config.Network(DatasetInfo.Get(config.Dataset)).MaxBatch;
        if (alternate.FirstOrDefault(b => b > maxBatch) is int tooLarge and > 0)
            throw new UsageException($"--alternate: batch {tooLarge:N0} is more than one buffer can index for this model; the largest batch is {maxBatch:N0}");
        if (releaseCache && config.Allocator != AllocatorKind.Caching) throw new UsageException("--release-cache: the exact allocator caches nothing; add --allocator caching");
        bool json = o.Flag("--json");
        TextWriter text = json ? TextWriter.Null : stdout;
        // Where --trace and --report go, checked before any work.
        string? tracePath = o.String("--trace"), reportPath = o.String("--report");
        if (tracePath is not null) OutputPath.CheckFile(tracePath, "--trace");
        if (reportPath is not null) OutputPath.CheckFile(reportPath, "--report");

        DatasetPair data = o.Flag("--synthetic") ? Synthetic(DatasetInfo.Get(config.Dataset)) : DatasetLoader.Load(config.Dataset, config.DataDir);
        if (data.Notice is not null) stderr.WriteLine($"note: {data.Notice}");
        DatasetInfo info = data.Train.Info;
        using ComputeDevice device = ComputeDevice.Create(config.Device);
        Network net = config.Network(info);
        string modelLine = $"{net.Label} ({net.ParameterCount:N0} parameters){(net.ConvLabel.Length > 0 ? ", conv " + net.ConvLabel : "")}, {config.OptimizerKind}, " +
            $"{(net.Half is not null ? "--precision " + config.Precision.ToString().ToLowerInvariant() + ", " : "")}{info.Name} [{info.Channels}, {info.Height}, {info.Width}]";
        text.WriteLine(device.Description);
        text.WriteLine($"model: {modelLine}");

        TrainConfig unlimited = config with { MemoryLimit = null };
        ProbeResult probe = MemoryProbe.Run(device, unlimited, data);
        text.WriteLine();
        WriteProbe(text, probe);
        PrecisionComparison? precision = net.Half is null ? null : MemoryEstimator.ComparePrecision(net, config.OptimizerKind);
        if (precision is not null) WritePrecision(text, precision);
        text.WriteLine();
        WriteAllocator(text, probe);
        text.WriteLine(probe.DriverLine());
        text.WriteLine();
        WriteLayers(text, probe);
        InferenceResult inference = MemoryProbe.RunInference(device, unlimited, data);
        text.WriteLine();
        WriteInference(text, probe, inference);

        var acrossBatches = batchSizes.Select(b => MemoryProbe.Run(device, unlimited with { BatchSize = b }, data)).ToList();
        if (acrossBatches.Count > 0)
        {
            text.WriteLine();
            WriteAcrossBatches(text, acrossBatches);
        }

        var acrossOptimizers = compare
            ? new[] { "sgd", "momentum", "adam" }.Select(opt => MemoryProbe.Run(device, unlimited with { Optimizer = opt, Momentum = null, LearningRate = null }, data)).ToList()
            : [];
        if (acrossOptimizers.Count > 0)
        {
            text.WriteLine();
            WriteAcrossOptimizers(text, acrossOptimizers);
        }

        AlternationResult? alternation = null;
        if (alternate.Length > 0)
        {
            alternation = MemoryProbe.Alternate(device, unlimited, data, alternate, rounds, releaseCache);
            text.WriteLine();
            WriteAlternation(text, alternation, config);
        }

        MemoryPlan? planResult = null;
        RemedyLadderResult? ladder = null;
        if (targetBatch is int target)
        {
            ladder = RemedyLadder.Build(device, config, target, fraction, data);
            text.WriteLine();
            WriteLadder(text, ladder);
        }
        else if (plan)
        {
            planResult = MemoryPlanner.Plan(device, config, fraction, data, net);
            text.WriteLine();
            WritePlan(text, planResult);
        }

        if (tracePath is not null)
        {
            WriteFile(tracePath, JsonSerializer.Serialize(new { model = modelLine, batchSize = probe.BatchSize, events = probe.Events }, TrainCommand.JsonOptions));
            text.WriteLine($"\ntrace: {probe.Events.Count} events written to {tracePath}");
        }
        if (reportPath is not null)
        {
            WriteFile(reportPath, HtmlReport.Build(probe, $"ScratchNet memory report: batch {probe.BatchSize}", $"{modelLine}; {device.Description}"));
            text.WriteLine($"report: {reportPath}");
        }
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(new
            {
                device = device.Label, deviceKind = device.Kind.ToString(), deviceReason = device.Reason,
                model = modelLine,
                layers = net.IsMlp ? net.MlpSizes : null,
                stack = net.Spec.Text,
                precision = config.Precision.ToString().ToLowerInvariant(),
                precisionComparison = precision,
                probe = Strip(probe),
                perLayer = probe.Layers,
                activationsExceedFixed = ActivationsExceedFixed(probe),
                inference,
                batchSizes = acrossBatches.Select(Strip),
                optimizers = acrossOptimizers.Select(Strip),
                plan = planResult,
                ladder,
                alternation,
            }, TrainCommand.JsonOptions));
        }
        return planResult is { NextFails: false } || ladder is { Recommended: not null, NextError: "" } ? Cli.ExitFailure : Cli.ExitOk;
    }

    /// <summary>1,000 random images of the dataset's shape, seeded: enough for any probe.</summary>
    static DatasetPair Synthetic(DatasetInfo info)
    {
        var r = new Random(1);
        var pixels = new byte[1000 * info.ImageSize];
        r.NextBytes(pixels);
        var labels = Enumerable.Range(0, 1000).Select(i => (byte)(i % info.Classes)).ToArray();
        var d = new Dataset(info, pixels, labels, "synthetic");
        return new DatasetPair(d, d, null);
    }

    static void WriteFile(string path, string content)
    {
        try
        {
            File.WriteAllText(path, content);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputFileException(path, $"cannot write it ({OutputFileException.Reason(e)})", e);
        }
    }

    static object Strip(ProbeResult p) => new
    {
        p.BatchSize, p.Optimizer, p.Parameters, p.Categories, p.TotalEstimate, p.TotalLive, p.PeakTotal,
        p.BytesPerSample, p.FixedBytes, p.AllocationsDuringSteps, p.Allocation, p.ParameterRounding,
        p.Lifetime, p.EagerEstimate, p.PeakPhase, p.PeakName, p.PlannedTotal, p.DriverBytes, p.DriverSource, driverLine = p.DriverLine(),
    };

    /// <summary>Requested, allocated and reserved: equal with the exact allocator; with the caching one, per category and the segments.</summary>
    static void WriteAllocator(TextWriter w, ProbeResult p)
    {
        var a = p.Allocation;
        if (a.Allocator == "exact")
        {
            w.WriteLine($"allocator: exact (each tensor is its own device buffer of exactly its size): requested = allocated = reserved = {Bytes.Exact(a.Requested)}; --allocator caching shows PyTorch's figures");
            return;
        }
        w.WriteLine($"allocator: caching ({AllocatorSummary.CachingRules})");
        w.WriteLine($"  {"category",-15} {"requested live",15} {"allocated live",15} {"allocated peak",15}");
        foreach (var c in p.Categories)
            w.WriteLine($"  {c.Category,-15} {Bytes.Exact(c.Live),15} {Bytes.Exact(c.Allocated),15} {Bytes.Exact(c.AllocatedPeak),15}");
        w.WriteLine($"  {"total",-15} {Bytes.Exact(a.Requested),15} {Bytes.Exact(a.Allocated),15} {Bytes.Exact(a.PeakAllocated),15}");
        int small = a.Segments.Count(s => s.Pool == "small");
        w.WriteLine($"  reserved: {Bytes.Exact(a.Reserved)} (peak {Bytes.Exact(a.PeakReserved)}) in {a.Segments.Count} segment{(a.Segments.Count == 1 ? "" : "s")} ({small} small, {a.Segments.Count - small} large); " +
            $"allocated / reserved = {a.Utilisation:0.0}%; largest free block {Bytes.Exact(a.LargestFreeBlock)}");
        w.WriteLine($"  as torch.cuda.memory_allocated / memory_reserved would print them: {Bytes.Exact(a.Allocated)} / {Bytes.Exact(a.Reserved)}");
        w.WriteLine($"  {p.ParameterRounding}");
    }

    static void WriteProbe(TextWriter w, ProbeResult p)
    {
        if (p.EagerEstimate is not null)
        {
            WriteEagerProbe(w, p, p.EagerEstimate);
            return;
        }
        w.WriteLine($"batch {p.BatchSize}{MicroBatches(p)}: {MemoryProbe.Steps} training steps measured");
        w.WriteLine($"  {"category",-15} {"estimate",13} {"requested live",15} {"requested peak",15}  difference");
        foreach (var c in p.Categories)
            w.WriteLine($"  {c.Category,-15} {Bytes.Exact(c.Estimate),13} {Bytes.Exact(c.Live),15} {Bytes.Exact(c.Peak),15}  {(c.Difference == 0 && c.Peak == c.Estimate ? "0 (exact)" : Bytes.Exact(c.Difference) + " UNEXPLAINED")}");
        w.WriteLine($"  {"total",-15} {Bytes.Exact(p.TotalEstimate),13} {Bytes.Exact(p.TotalLive),15} {Bytes.Exact(p.PeakTotal),15}  {(p.TotalLive == p.TotalEstimate ? "0 (exact)" : Bytes.Exact(p.TotalLive - p.TotalEstimate) + " UNEXPLAINED")}");
        w.WriteLine("  requested = elements x element size, as the tracker counts each buffer;");
        w.WriteLine("  peak = live: every buffer is created before the first step and reused, so nothing comes and goes inside a step;");
        w.WriteLine($"  allocations during the {MemoryProbe.Steps} steps: {p.AllocationsDuringSteps}.");
        w.WriteLine($"  bytes per sample: {Bytes.Exact(p.BytesPerSample)} (input, activations, temporaries); fixed: {Bytes.Exact(p.FixedBytes)} (parameters, gradients, optimizer state{(Live(p, MemoryCategory.Workspace) > 0 ? ", workspace" : "")})");
        if (p.WithoutRecompute is long without)
            w.WriteLine(p.RecomputedBlocks.Count == 0
                ? "  --recompute: no block makes anything but its output (a linear layer and its ReLU), so nothing is shared or run twice: the bytes are those without it"
                : $"  --recompute: {Bytes.Exact(p.PeakTotal)} at the peak against {Bytes.Exact(without)} without it (estimate), {Bytes.Exact(without - p.PeakTotal)} less; " +
                  $"backward runs the forward of the block{(p.RecomputedBlocks.Count > 1 ? "s" : "")} starting at {string.Join(", ", p.RecomputedBlocks)} again");
    }

    /// <summary>--precision fp16 or bf16: what grew, what halved and what stayed float32, in words, with the figures.</summary>
    static void WritePrecision(TextWriter w, PrecisionComparison c)
    {
        w.WriteLine($"  --precision {c.Precision} against fp32 (estimates for the same model, optimizer and conv version):");
        w.WriteLine($"    fixed part {Bytes.Exact(c.Fixed)} against {Bytes.Exact(c.FixedFp32)}: it GROWS by {Bytes.Exact(c.Fixed - c.FixedFp32)}, " +
            $"the {c.Precision} weight copy forward and backward read ({Bytes.Exact(c.WeightCopy)}){(c.Fixed - c.FixedFp32 > c.WeightCopy ? " and the loss scaler's 4 B found-inf flag" : "")}");
        w.WriteLine($"    per sample {Bytes.Exact(c.PerSample)} against {Bytes.Exact(c.PerSampleFp32)} ({100.0 * c.PerSample / c.PerSampleFp32:0.0}%): the images, layer outputs and " +
            "gradients between layers take 2 bytes a value; int32 labels, predictions and max-pool indices and float32 losses do not shrink");
        w.WriteLine("    kept in float32, as Apex O2 and autocast keep them: the master weights (an Adam update of about 1e-3 of a weight is lost in " +
            "a 16-bit mantissa), the weight gradients (summed over rows and micro-batches), Adam's m and v (v ~ g^2 underflows in fp16), the loss (exp and log)");
        if (c.Precision == "fp16")
            w.WriteLine($"    fp16 scales the loss by {LossScaler.InitialScale:N0} at the start (dynamic loss scaling: halved and the step skipped on an inf or NaN " +
                $"gradient, doubled after {LossScaler.GrowthInterval:N0} good steps), so gradients below fp16's 2^-24 are not lost");
        w.WriteLine("    here the input batch is stored in 16 bits too; PyTorch's autocast would keep the input in float32 and cast it inside each layer");
    }

    /// <summary>With --accumulate: " in 4 micro-batches of 16 (--accumulate 4: the device holds one micro-batch)".</summary>
    static string MicroBatches(ProbeResult p) => p.Accumulate == 1 ? "" :
        $" in {p.Accumulate} micro-batches of at most {p.MicroBatch} (--accumulate {p.Accumulate}: the per-sample bytes are a micro-batch's; gradients are summed in the one gradient buffer)";

    static void WriteAlternation(TextWriter w, AlternationResult a, TrainConfig config)
    {
        w.WriteLine($"Alternating batch sizes {string.Join(", ", a.Batches)} in one session ({config.Lifetime.ToString().ToLowerInvariant()} lifetimes, {config.Allocator.ToString().ToLowerInvariant()} allocator)");
        w.WriteLine($"  {"step",4} {"batch",6} {"requested peak",15} {"allocated peak",15} {"reserved peak",15} {"reserved after",15} {"largest free",13} {"segments",8}");
        foreach (var s in a.Steps)
            w.WriteLine($"  {s.Step,4} {s.Batch,6} {Bytes.Exact(s.RequestedPeak),15} {Bytes.Exact(s.AllocatedPeak),15} {Bytes.Exact(s.ReservedPeak),15} {Bytes.Exact(s.ReservedAfter),15} {Bytes.Exact(s.LargestFreeBlockAfter),13} {s.Segments,8}");
        long maxAllocated = a.Steps.Max(s => s.AllocatedPeak), finalReserved = a.Steps[^1].ReservedAfter;
        if (config.Allocator == AllocatorKind.Caching)
            w.WriteLine($"  the highest allocated peak of any step is {Bytes.Exact(maxAllocated)}; the cache holds {Bytes.Exact(finalReserved)} after the last step: " +
                $"{100.0 * maxAllocated / finalReserved:0.0}% of it was ever in use at once. Blocks freed at one batch size are cached in shapes the other batch cannot always reuse.");
        if (a.Released)
            w.WriteLine($"  --release-cache (torch.cuda.empty_cache): {Bytes.Exact(a.ReleasedBytes)} given back; reserved {Bytes.Exact(a.ReservedBefore)} -> {Bytes.Exact(a.ReservedAfterRelease)} " +
                $"(segments with a block still in use stay: {Bytes.Exact(a.AllocatedAfterRelease)} allocated)");
    }

    /// <summary>Eager lifetimes: what stays after a step, each category's peak, and the peak of the total with where it happens.</summary>
    static void WriteEagerProbe(TextWriter w, ProbeResult p, EagerEstimate.Result e)
    {
        w.WriteLine($"batch {p.BatchSize}{MicroBatches(p)}: {MemoryProbe.Steps} training steps measured with eager lifetimes (buffers made and freed as under PyTorch's autograd)");
        w.WriteLine($"  {"category",-15} {"after a step:",15} {"",13}  {"peak:",13} {"",13}");
        w.WriteLine($"  {"",-15} {"estimate",15} {"requested",13}  {"estimate",13} {"requested",13}");
        foreach (var c in p.Categories)
            w.WriteLine($"  {c.Category,-15} {Bytes.Exact(c.Estimate),15} {Bytes.Exact(c.Live),13}  {Bytes.Exact(c.PeakEstimate),13} {Bytes.Exact(c.Peak),13}  {(c.Difference == 0 && c.Peak == c.PeakEstimate ? "=" : "DIFF")}");
        w.WriteLine($"  {"total",-15} {Bytes.Exact(p.TotalEstimate),15} {Bytes.Exact(p.TotalLive),13}  {Bytes.Exact(e.Peak),13} {Bytes.Exact(p.PeakTotal),13}  {(p.TotalLive == p.TotalEstimate && p.PeakTotal == e.Peak ? "=" : "DIFF")}");
        w.WriteLine("  the categories peak at different moments; the total's peak is the highest sum at any one moment.");
        bool same = p.PeakTotal == e.Peak && p.PeakPhase == e.Phase && p.PeakName == e.Name;
        w.WriteLine($"  peak: estimate {Bytes.Exact(e.Peak)} in {e.Phase}, when '{e.Name}' is made; measured {Bytes.Exact(p.PeakTotal)} in {p.PeakPhase}, when '{p.PeakName}' was made: " +
            (same ? "exact" : "UNEXPLAINED"));
        if (p.Allocation.Allocator == "caching")
            w.WriteLine($"  with the caching allocator: allocated peak {Bytes.Exact(p.Allocation.PeakAllocated)}, reserved peak {Bytes.Exact(p.Allocation.PeakReserved)}");
        long saved = p.PlannedTotal - p.PeakTotal;
        w.WriteLine($"  planned lifetimes hold {Bytes.Exact(p.PlannedTotal)} for the whole run: eager's peak is {Bytes.Exact(saved)} less ({100.0 * saved / p.PlannedTotal:0.0}%) at this batch");
        w.WriteLine($"  allocations during the {MemoryProbe.Steps} steps: {p.AllocationsDuringSteps} (every step makes and frees its buffers again).");
    }

    static long Live(ProbeResult p, MemoryCategory c) => p.Categories.Single(x => x.Category == c.ToString()).Live;

    /// <summary>Whether the activations kept for backward are larger than parameters + gradients + optimizer state.</summary>
    static bool ActivationsExceedFixed(ProbeResult p) =>
        Live(p, MemoryCategory.Activation) > Live(p, MemoryCategory.Parameter) + Live(p, MemoryCategory.Gradient) + Live(p, MemoryCategory.OptimizerState);

    static readonly string[] LayerHeads = ["weights", "gradients", "optimizer", "input", "activations", "workspace", "temporaries"];

    static void WriteLayers(TextWriter w, ProbeResult p)
    {
        if (p.Lifetime == "eager")
        {
            w.WriteLine("Per layer: with eager lifetimes a layer's buffers exist only while a step runs; see the table of --lifetime planned.");
            return;
        }
        w.WriteLine($"Per layer at batch {p.BatchSize} (measured: the layer's own buffers and its views into the flat parameter, gradient and state buffers; = means it equals the estimate)");
        w.Write($"  {"layer",-9} {"output",-14} {"parameters",11}");
        foreach (var h in LayerHeads) w.Write($" {h,13}");
        w.WriteLine($" {"total",13}");
        foreach (var r in p.Layers)
        {
            w.Write($"  {r.Layer,-9} {r.OutputShape,-14} {r.Parameters,11:N0}");
            foreach (var c in MemoryProbe.LayerColumns) w.Write($" {Bytes.Exact(r.Measured[c.ToString()]),13}");
            w.WriteLine($" {Bytes.Exact(r.MeasuredTotal),13} {(r.Match ? "=" : "DIFF")}  {r.Kind}{(r.Note.Length > 0 ? " (" + r.Note + ")" : "")}");
        }
        w.Write($"  {"total",-9} {"",-14} {p.Parameters,11:N0}");
        foreach (var c in MemoryProbe.LayerColumns) w.Write($" {Bytes.Exact(p.Layers.Sum(r => r.Measured[c.ToString()])),13}");
        w.WriteLine($" {Bytes.Exact(p.Layers.Sum(r => r.MeasuredTotal)),13} {(p.Layers.All(r => r.Match) ? "=" : "DIFF")}");
        long act = Live(p, MemoryCategory.Activation);
        long fixedPart = Live(p, MemoryCategory.Parameter) + Live(p, MemoryCategory.Gradient) + Live(p, MemoryCategory.OptimizerState);
        w.WriteLine(ActivationsExceedFixed(p)
            ? $"  activations kept for backward ({Bytes.Exact(act)}) exceed parameters + gradients + optimizer state ({Bytes.Exact(fixedPart)}): {(double)act / fixedPart:0.00}x; at this batch the feature maps dominate"
            : $"  activations kept for backward ({Bytes.Exact(act)}) are {100.0 * act / fixedPart:0.0}% of parameters + gradients + optimizer state ({Bytes.Exact(fixedPart)}): at this batch the fixed part dominates");
    }

    static void WriteInference(TextWriter w, ProbeResult p, InferenceResult inf)
    {
        w.WriteLine($"Training vs prediction at batch {inf.BatchSize} (prediction: forward only, no gradients or optimizer state, each activation freed once the next layer has read it" +
            $"{(p.Precision != "fp32" ? "; prediction runs in float32: it has no 16-bit path yet" : "")})");
        w.WriteLine($"  {"category",-15} {"training",13} {"prediction peak",16} {"estimate",13}");
        foreach (MemoryCategory c in Enum.GetValues<MemoryCategory>())
        {
            string k = c.ToString();
            long train = p.Categories.Single(x => x.Category == k).Peak;
            long measured = inf.MeasuredPeak.GetValueOrDefault(k), estimate = inf.EstimatePeak.GetValueOrDefault(k);
            w.WriteLine($"  {k,-15} {Bytes.Exact(train),13} {Bytes.Exact(measured),16} {Bytes.Exact(estimate),13}  {(measured == estimate ? "=" : "DIFF")}");
        }
        w.WriteLine($"  {"total peak",-15} {Bytes.Exact(p.PeakTotal),13} {Bytes.Exact(inf.MeasuredTotalPeak),16} {Bytes.Exact(inf.EstimateTotalPeak),13}  {(inf.MeasuredTotalPeak == inf.EstimateTotalPeak ? "=" : "DIFF")}");
        w.WriteLine($"  training needs {(double)p.PeakTotal / inf.MeasuredTotalPeak:0.00}x the memory of prediction (category peaks in prediction come at different moments; the total peak is the highest sum at any moment)");
    }

    static readonly MemoryCategory[] Scaling = [MemoryCategory.Input, MemoryCategory.Activation, MemoryCategory.Temporary];

    static void WriteAcrossBatches(TextWriter w, List<ProbeResult> probes)
    {
        w.WriteLine("Measured bytes across batch sizes (= means measured equals the estimate)");
        w.Write($"  {"category",-15}");
        foreach (var p in probes) w.Write($" {"B=" + p.BatchSize,15}");
        w.WriteLine("  grows with the batch?");
        foreach (MemoryCategory c in Enum.GetValues<MemoryCategory>())
        {
            w.Write($"  {c,-15}");
            foreach (var p in probes)
            {
                var cat = p.Categories.Single(x => x.Category == c.ToString());
                w.Write($" {Bytes.Exact(cat.Live) + (cat.Difference == 0 ? "=" : "!"),15}");
            }
            w.WriteLine(Scaling.Contains(c) ? "  yes" : c == MemoryCategory.Other ? "" : "  no");
        }
        w.Write($"  {"total",-15}");
        foreach (var p in probes) w.Write($" {Bytes.Exact(p.TotalLive) + (p.TotalLive == p.TotalEstimate ? "=" : "!"),15}");
        w.WriteLine();
        if (probes[0].EagerEstimate is not null)
        {
            w.Write($"  {"eager peak",-15}");
            foreach (var p in probes) w.Write($" {Bytes.Exact(p.PeakTotal) + (p.PeakTotal == p.EagerEstimate!.Peak && p.PeakName == p.EagerEstimate.Name ? "=" : "!"),15}");
            w.WriteLine("  (the highest total during a step)");
            w.Write($"  {"reached when",-15}");
            foreach (var p in probes) w.Write($" {p.PeakName,15}");
            w.WriteLine($"  is made ({string.Join(", ", probes.Select(p => p.PeakPhase).Distinct())})");
        }
        w.WriteLine($"  per sample: {Bytes.Exact(probes[0].BytesPerSample)}; per batch of B: {Bytes.Exact(probes[0].FixedBytes)} + B x {Bytes.Exact(probes[0].BytesPerSample)}");
    }

    static void WriteAcrossOptimizers(TextWriter w, List<ProbeResult> probes)
    {
        w.WriteLine($"Optimizers side by side (batch {probes[0].BatchSize})");
        w.Write($"  {"category",-15}");
        foreach (var p in probes) w.Write($" {p.Optimizer,15}");
        w.WriteLine();
        foreach (MemoryCategory c in Enum.GetValues<MemoryCategory>())
        {
            w.Write($"  {c,-15}");
            foreach (var p in probes) w.Write($" {Bytes.Exact(p.Categories.Single(x => x.Category == c.ToString()).Live),15}");
            w.WriteLine();
        }
        w.Write($"  {"total",-15}");
        foreach (var p in probes) w.Write($" {Bytes.Exact(p.TotalLive),15}");
        w.WriteLine();
        var adam = probes.Single(p => p.Optimizer == "adam");
        foreach (var p in probes.Where(p => p.Optimizer != "adam"))
            w.WriteLine($"  {p.Optimizer} saves {Bytes.Exact(adam.TotalLive - p.TotalLive)} against adam ({100.0 * (adam.TotalLive - p.TotalLive) / adam.TotalLive:0.0}% of the total)");
    }

    static void WriteLadder(TextWriter w, RemedyLadderResult l)
    {
        string pct = (100 * l.Fraction).ToString("0.#", CultureInfo.InvariantCulture);
        w.WriteLine($"Remedies for an effective batch of {l.TargetBatch} under a budget of {pct}% of {Bytes.Format(l.Memory)} ({l.MemorySource}) = {Bytes.Exact(l.Budget)}");
        w.WriteLine("  (closed-form requested bytes with planned lifetimes, each measured in two real steps without the budget, the second timed)");
        int i = 0;
        foreach (var r in l.Remedies)
        {
            string fits = r.Fits ? "fits" : $"does not fit ({Bytes.Exact(r.Total - l.Budget)} over)";
            string measured = r.MeasuredPeak is long peak
                ? $"measured peak {Bytes.Exact(peak)}{(peak == r.Total ? " (= estimate)" : " (DIFFERS from the estimate)")}, {r.StepMs:0.0} ms per step"
                : "the device had no room to measure it";
            w.WriteLine($"  {++i,2}. {r.Name}: {r.Options}");
            w.WriteLine($"      micro-batch {r.MicroBatch}, total {Bytes.Exact(r.Total)}: {fits}{(r.KeepsTraining ? "" : "; changes the training")}; {measured}");
            w.WriteLine($"      {string.Join(", ", r.Bytes.Select(kv => $"{kv.Key} {Bytes.Exact(kv.Value)}"))}");
            w.WriteLine($"      cost: {r.Cost}");
        }
        if (l.Recommended is null)
        {
            w.WriteLine($"  recommended: none; {l.Why}");
            return;
        }
        w.WriteLine($"  recommended: {l.Recommended}: {l.Why}");
        w.WriteLine($"  proof: {MemoryProbe.Steps} training steps with {l.Recommended} under a {Bytes.Exact(l.Budget)} limit: ok, peak {Bytes.Exact(l.ProvedPeak ?? 0)}");
        w.WriteLine(l.NextError.Length > 0
            ? $"  the next larger micro-batch, {l.NextLarger}, under the same limit fails: {l.NextError}"
            : $"  UNEXPECTED: {l.NextLarger} also fits; the estimate is wrong");
    }

    static void WritePlan(TextWriter w, MemoryPlan p)
    {
        string pct = (100 * p.Fraction).ToString("0.#", CultureInfo.InvariantCulture);
        w.WriteLine($"Largest batch for a budget of {pct}% of {Bytes.Format(p.MemoryBytes)} ({p.MemorySource}) = {Bytes.Exact(p.BudgetBytes)}");
        w.WriteLine($"  fixed {Bytes.Exact(p.FixedBytes)} + B x {Bytes.Exact(p.BytesPerSample)} <= {Bytes.Exact(p.BudgetBytes)}");
        if (p.BufferCap is long cap)
            w.WriteLine($"  and every buffer <= {Bytes.Exact(cap)}, the largest single buffer the device allows: 4 x B x (widest layer) <= {Bytes.Exact(cap)}");
        w.WriteLine($"  largest batch size: {p.LargestBatch} (needs {Bytes.Exact(p.PredictedBytes)}); the limit that binds: {p.BindingLimit}");
        w.WriteLine($"  proof: {MemoryProbe.Steps} training steps at batch {p.LargestBatch} under a {Bytes.Exact(p.BudgetBytes)} limit: ok, peak {Bytes.Exact(p.MeasuredPeak ?? 0)}");
        w.WriteLine(p.NextFails
            ? $"  batch {p.LargestBatch + 1} under the same limit fails: {p.NextError}"
            : $"  UNEXPECTED: batch {p.LargestBatch + 1} also fits; the estimate is wrong");
    }
}
