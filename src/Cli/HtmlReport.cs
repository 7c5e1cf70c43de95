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
            the first {{MemoryProbe.Steps}} training steps, in order. Bands only grow while the buffers are created: a training step
            allocates nothing ({{probe.AllocationsDuringSteps}} allocations during the steps), so the top line stays flat through
            forward, backward and update. The dashed line marks the peak.</p>
            <div>{{legend}}</div>
            {{svg}}
            <h2>Per layer</h2>
            <p>Each layer's own buffers, and its views into the flat parameter, gradient and optimizer-state buffers, measured by the
            tracker; the estimate column is the closed form for the same layer. ReLU works in place and Flatten is a view: 0 bytes.</p>
            <table id="layers">
            {{layerHead}}
            {{layerRows}}
            </table>
            </body></html>
            """;
    }
}
