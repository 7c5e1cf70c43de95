using System.Globalization;
using System.Net;
using System.Text;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// One self-contained HTML page (no scripts, no network): the category table and a stacked chart (inline
/// SVG) of live bytes by category over setup and the first two training steps, with the peak marked.
/// </summary>
public static class HtmlReport
{
    /// <summary>Category colours, also used by the test that looks at the rendered page.</summary>
    public static readonly Dictionary<MemoryCategory, string> Colors = new()
    {
        [MemoryCategory.Parameter] = "#1f77b4",
        [MemoryCategory.Gradient] = "#ff7f0e",
        [MemoryCategory.OptimizerState] = "#2ca02c",
        [MemoryCategory.Input] = "#d62728",
        [MemoryCategory.Activation] = "#9467bd",
        [MemoryCategory.Temporary] = "#8c564b",
        [MemoryCategory.Workspace] = "#e377c2",
        [MemoryCategory.Other] = "#7f7f7f",
    };

    static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);
    static string E(string s) => WebUtility.HtmlEncode(s);

    /// <summary>The colour of free (cached) space in the segment view.</summary>
    public const string FreeColor = "#f2f2f2";

    /// <summary>
    /// Requested, allocated and reserved; with the caching allocator also one bar per segment, full width, its blocks
    /// in address order coloured by the category of the tensor that holds them and free (cached) blocks in light grey.
    /// </summary>
    static string SegmentView(AllocatorSummary a)
    {
        string figures = $"<p id=\"allocator\">Allocator: {E(a.Allocator)}. Requested {E(Bytes.Exact(a.Requested))}, allocated {E(Bytes.Exact(a.Allocated))}, " +
            $"reserved {E(Bytes.Exact(a.Reserved))} (peaks {E(Bytes.Exact(a.PeakRequested))}, {E(Bytes.Exact(a.PeakAllocated))}, {E(Bytes.Exact(a.PeakReserved))}).</p>";
        if (a.Allocator == "exact")
            return "<h2>Allocated and reserved</h2>\n" + figures + "\n<p>Each tensor is its own device buffer of exactly its size, so the three are equal. " +
                "Run with --allocator caching to see PyTorch's blocks and segments.</p>";
        const double width = 900, barH = 26, gap = 30, left = 10;
        var svg = new StringBuilder();
        double height = a.Segments.Count * (barH + gap) + 10;
        svg.AppendLine($"<svg id=\"segments\" width=\"{F(width + 2 * left)}\" height=\"{F(height)}\" viewBox=\"0 0 {F(width + 2 * left)} {F(height)}\" role=\"img\" aria-label=\"segments and their blocks\">");
        for (int i = 0; i < a.Segments.Count; i++)
        {
            var s = a.Segments[i];
            double y = i * (barH + gap) + 18;
            long used = s.Blocks.Where(b => b.InUse).Sum(b => b.Size);
            svg.AppendLine($"<g class=\"segment\" data-segment=\"{s.Id}\" data-size=\"{s.Size}\">");
            svg.AppendLine($"<text x=\"{F(left)}\" y=\"{F(y - 4)}\" font-size=\"12\">segment {s.Id} ({E(s.Pool)} pool): {E(Bytes.Exact(s.Size))}, {E(Bytes.Exact(used))} in blocks in use</text>");
            foreach (var b in s.Blocks)
            {
                double x = left + width * b.Offset / s.Size, w = Math.Max(0.5, width * b.Size / s.Size);
                string fill = b.InUse && b.Category is not null ? Colors[Enum.Parse<MemoryCategory>(b.Category)] : FreeColor;
                string tip = b.InUse ? $"{b.Owner} ({b.Category}): {Bytes.Exact(b.Requested)} requested, {Bytes.Exact(b.Size)} allocated at offset {b.Offset:N0}"
                    : $"free (cached): {Bytes.Exact(b.Size)} at offset {b.Offset:N0}";
                svg.AppendLine($"<rect class=\"{(b.InUse ? "block" : "free")}\" data-category=\"{E(b.Category ?? "")}\" x=\"{F(x)}\" y=\"{F(y)}\" width=\"{F(w)}\" height=\"{F(barH)}\" fill=\"{fill}\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>{E(tip)}</title></rect>");
            }
            svg.AppendLine($"<rect x=\"{F(left)}\" y=\"{F(y)}\" width=\"{F(width)}\" height=\"{F(barH)}\" fill=\"none\" stroke=\"#000000\"/>");
            svg.AppendLine("</g>");
        }
        svg.AppendLine("</svg>");
        return "<h2>Segments: allocated and reserved</h2>\n" + figures + "\n" +
            $"<p>{E(AllocatorSummary.CachingRules)}. Each bar is one segment (a device buffer), drawn full width whatever its size; " +
            $"coloured blocks are tensors, by category; light grey is free space the allocator keeps cached. Allocated / reserved = {a.Utilisation:0.0}%; " +
            $"largest free block {E(Bytes.Exact(a.LargestFreeBlock))}.</p>\n" + svg;
    }

    public static string Build(ProbeResult probe, string title, string modelLine)
    {
        var cats = Enum.GetValues<MemoryCategory>();
        // Points: the start, then the state after each event.
        var points = new List<Dictionary<MemoryCategory, long>> { cats.ToDictionary(c => c, _ => 0L) };
        points.AddRange(probe.Timeline);
        var labels = new List<string> { "start" };
        labels.AddRange(probe.Events.Select(e => e.Kind switch
        {
            MemoryEventKind.Alloc => $"alloc {e.Name}",
            MemoryEventKind.Free => $"free {e.Name}",
            MemoryEventKind.SegmentAlloc => $"new {e.Name} ({Bytes.Format(e.Bytes)})",
            MemoryEventKind.SegmentFree => $"release {e.Name}",
            _ => e.Phase switch { "ready" => "setup done", "done" => $"after step {e.Step}", _ => $"step {e.Step + 1} {e.Phase}" },
        }));
        long peak = Math.Max(1, points.Max(p => p.Values.Sum()));
        int peakIndex = points.FindIndex(p => p.Values.Sum() == peak);

        const double width = 960, height = 420, left = 90, right = 60, top = 30, bottom = 150;
        double plotW = width - left - right, plotH = height - top - bottom;
        double X(int i) => left + plotW * i / Math.Max(1, points.Count - 1);
        double Y(double bytes) => top + plotH * (1 - bytes / (peak * 1.1));

        var svg = new StringBuilder();
        svg.AppendLine($"<svg id=\"chart\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"live device bytes by category\">");
        svg.AppendLine($"<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>");
        // Stacked areas, drawn as steps: the live bytes hold from one event until the next.
        var below = new double[points.Count];
        foreach (var c in cats)
        {
            if (points.All(p => p[c] == 0)) continue;
            var upper = new StringBuilder();
            var lower = new List<string>();
            for (int i = 0; i < points.Count; i++)
            {
                double top1 = below[i] + points[i][c];
                double x0 = X(i), x1 = X(Math.Min(i + 1, points.Count - 1));
                upper.Append($"{F(x0)},{F(Y(top1))} {F(x1)},{F(Y(top1))} ");
                lower.Insert(0, $"{F(x1)},{F(Y(below[i]))} {F(x0)},{F(Y(below[i]))}");
                below[i] = top1;
            }
            svg.AppendLine($"<polygon class=\"area\" data-category=\"{c}\" fill=\"{Colors[c]}\" fill-opacity=\"0.85\" points=\"{upper} {string.Join(" ", lower)}\"><title>{c}</title></polygon>");
        }
        // Axes and gridlines.
        for (int g = 0; g <= 4; g++)
        {
            double v = peak * 1.1 * g / 4;
            svg.AppendLine($"<line x1=\"{F(left)}\" x2=\"{F(width - right)}\" y1=\"{F(Y(v))}\" y2=\"{F(Y(v))}\" stroke=\"#dddddd\"/>");
            svg.AppendLine($"<text x=\"{F(left - 6)}\" y=\"{F(Y(v) + 4)}\" text-anchor=\"end\" font-size=\"11\">{E(Bytes.Format((long)v))}</text>");
        }
        svg.AppendLine($"<line x1=\"{F(left)}\" x2=\"{F(left)}\" y1=\"{F(top)}\" y2=\"{F(top + plotH)}\" stroke=\"#000\"/>");
        svg.AppendLine($"<line x1=\"{F(left)}\" x2=\"{F(width - right)}\" y1=\"{F(top + plotH)}\" y2=\"{F(top + plotH)}\" stroke=\"#000\"/>");
        for (int i = 0; i < labels.Count; i++)
        {
            double x = X(i);
            svg.AppendLine($"<text x=\"{F(x)}\" y=\"{F(top + plotH + 8)}\" font-size=\"10\" transform=\"rotate(60 {F(x)} {F(top + plotH + 8)})\">{E(labels[i])}</text>");
        }
        // The peak.
        double py = Y(peak);
        svg.AppendLine($"<line id=\"peak\" x1=\"{F(left)}\" x2=\"{F(width - right)}\" y1=\"{F(py)}\" y2=\"{F(py)}\" stroke=\"#000000\" stroke-dasharray=\"6 4\"/>");
        svg.AppendLine($"<circle cx=\"{F(X(peakIndex))}\" cy=\"{F(py)}\" r=\"5\" fill=\"#000000\"/>");
        svg.AppendLine($"<text x=\"{F(X(peakIndex) + 8)}\" y=\"{F(py - 8)}\" font-size=\"13\" font-weight=\"bold\">peak {E(Bytes.Exact(peak))} ({E(Bytes.Format(peak))}) at {E(labels[peakIndex])}</text>");
        svg.AppendLine("</svg>");

        var legend = string.Join("", cats.Select(c =>
            $"<span class=\"key\"><span class=\"swatch\" style=\"background:{Colors[c]}\"></span>{c}</span>"));
        var rows = string.Join("\n", probe.Categories.Select(c =>
            $"<tr><td><span class=\"swatch\" style=\"background:{Colors[Enum.Parse<MemoryCategory>(c.Category)]}\"></span>{c.Category}</td>" +
            $"<td>{Bytes.Exact(c.Estimate)}</td><td>{Bytes.Exact(c.Live)}</td><td>{Bytes.Exact(c.Peak)}</td><td>{(c.Difference == 0 ? "0 (exact)" : Bytes.Exact(c.Difference))}</td><td>{E(c.Formula)}</td></tr>"));
        var layerHead = "<tr><th>layer</th><th>output</th><th>parameters</th>" +
            string.Concat(MemoryProbe.LayerColumns.Select(c => $"<th><span class=\"swatch\" style=\"background:{Colors[c]}\"></span>{c}</th>")) +
            "<th>total</th><th>estimate</th><th></th></tr>";
        var layerRows = string.Join("\n", probe.Layers.Select(r =>
            $"<tr data-layer=\"{E(r.Layer)}\"><td>{E(r.Layer)}</td><td>{E(r.OutputShape)}</td><td>{r.Parameters:N0}</td>" +
            string.Concat(MemoryProbe.LayerColumns.Select(c => $"<td>{Bytes.Exact(r.Measured[c.ToString()])}</td>")) +
            $"<td>{Bytes.Exact(r.MeasuredTotal)}</td><td>{Bytes.Exact(r.EstimateTotal)}</td><td>{E(r.Kind + (r.Note.Length > 0 ? " (" + r.Note + ")" : ""))}</td></tr>"));
        string segments = SegmentView(probe.Allocation);
        string lifetimes = probe.AllocationsDuringSteps == 0
            ? $"Bands only grow while the buffers are created: a training step allocates nothing ({probe.AllocationsDuringSteps} allocations during the steps), so the top line stays flat through forward, backward and update."
            : $"With eager lifetimes each step makes and frees its buffers ({probe.AllocationsDuringSteps} allocations during the steps): activations rise through forward and fall through backward, as under autograd.";
        return $$"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>{{E(title)}}</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #222; }
            table { border-collapse: collapse; margin: 12px 0; }
            td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
            td:first-child, th:first-child, td:last-child, th:last-child { text-align: left; }
            .swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }
            .key { margin-right: 16px; }
            </style></head>
            <body>
            <h1>{{E(title)}}</h1>
            <p>{{E(modelLine)}}</p>
            <h2>Bytes per category</h2>
            <p>Estimate: the closed form. Live: what the tracker measured after {{MemoryProbe.Steps}} training steps. Peak: the highest live bytes of that category at any moment.</p>
            <table id="categories">
            <tr><th>category</th><th>estimate</th><th>live</th><th>peak</th><th>difference</th><th>formula</th></tr>
            {{rows}}
            <tr><th>total</th><th>{{Bytes.Exact(probe.TotalEstimate)}}</th><th>{{Bytes.Exact(probe.TotalLive)}}</th><th>{{Bytes.Exact(probe.PeakTotal)}}</th><th></th><th>bytes per sample {{Bytes.Exact(probe.BytesPerSample)}}; fixed {{Bytes.Exact(probe.FixedBytes)}}</th></tr>
            </table>
            <h2>Live device memory over time</h2>
            <p>Each coloured band is one category, stacked; the horizontal axis is every allocation and the start of every phase of
            the first {{MemoryProbe.Steps}} training steps, in order. {{E(lifetimes)}} The dashed line marks the peak.</p>
            <div>{{legend}}</div>
            {{svg}}
            <h2>Per layer</h2>
            <p>Each layer's own buffers, and its views into the flat parameter, gradient and optimizer-state buffers, measured by the
            tracker; the estimate column is the closed form for the same layer. ReLU works in place and Flatten is a view: 0 bytes.</p>
            <table id="layers">
            {{layerHead}}
            {{layerRows}}
            </table>
            {{segments}}
            </body></html>
            """;
    }
}
