using System.Diagnostics;
using ILGPU.Runtime;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>What --matmul auto chose, and the time each version took for one step's matmuls.</summary>
public sealed record MatmulChoice(MatmulVersion Version, IReadOnlyList<(MatmulVersion Version, double Milliseconds)> Timings)
{
    /// <summary>"blocked (naive 2.48 ms, blocked 0.69 ms, tiled 5.94 ms per step's matmuls)".</summary>
    public override string ToString() =>
        $"{MatmulVersions.Label(Version)} ({string.Join(", ", Timings.Select(t => $"{MatmulVersions.Label(t.Version)} {t.Milliseconds:0.000} ms"))} for one step's matmuls)";
}

/// <summary>
/// --matmul auto (the default on GPUs and OpenCL devices): time every matmul version this backend has on the
/// model's real shapes, the three products of every layer at the batch size (forward x·W^T, dx = dy·W,
/// dW = dy^T·x), and take the fastest. Timed once per device, layer sizes and batch, in a few milliseconds;
/// the scratch buffers are tracked by their own tracker, so the run's memory report does not change.
/// Versions a device has no use for are not timed (the tiled kernel where groups are too small for it).
/// </summary>
public static class MatmulAuto
{
    const int Repeats = 3;
    static readonly Dictionary<(Accelerator, string, int), MatmulChoice> Cache = [];

    public static MatmulChoice Choose(IBackend backend, Accelerator accelerator, int[] sizes, int batch)
    {
        var key = (accelerator, string.Join("-", sizes), batch);
        lock (Cache)
        {
            if (Cache.TryGetValue(key, out var known)) return known;
        }
        var tracker = new MemoryTracker(accelerator);
        var timings = new List<(MatmulVersion, double)>();
        var r = new Random(1);
        var made = new List<IDisposable>();
        Tensor<float> Random(string name, long count)
        {
            var t = tracker.AllocateFrom(name, Reference.RandomFloats(r, (int)count), MemoryCategory.Other);
            made.Add(t);
            return t;
        }
        try
        {
            // One set of buffers per layer: x (B, K), W (N, K), y and dy (B, N), dx (B, K), dW (N, K).
            var layers = Enumerable.Range(0, sizes.Length - 1).Select(i =>
            {
                int k = sizes[i], n = sizes[i + 1];
                return (k, n, x: Random("auto.x", (long)batch * k), w: Random("auto.w", (long)n * k), y: Random("auto.y", (long)batch * n),
                    dy: Random("auto.dy", (long)batch * n), dx: Random("auto.dx", (long)batch * k), dw: Random("auto.dw", (long)n * k));
            }).ToList();
            void Step(MatmulVersion v)
            {
                foreach (var l in layers)
                {
                    backend.Matmul(v, l.x.View, l.w.View, l.y.View, batch, l.n, l.k, l.k, 1, 1, l.k);     // y = x·W^T
                    backend.Matmul(v, l.dy.View, l.w.View, l.dx.View, batch, l.k, l.n, l.n, 1, l.k, 1);   // dx = dy·W
                    backend.Matmul(v, l.dy.View, l.x.View, l.dw.View, l.n, l.k, batch, 1, l.n, l.k, 1);   // dW = dy^T·x
                }
                backend.Synchronize();
            }
            foreach (MatmulVersion v in backend.MatmulVersions)
            {
                Step(v);   // the first launch compiles the kernel: not timed
                var times = new double[Repeats];
                for (int i = 0; i < Repeats; i++)
                {
                    var clock = Stopwatch.StartNew();
                    Step(v);
                    times[i] = clock.Elapsed.TotalMilliseconds;
                }
                Array.Sort(times);
                timings.Add((v, times[Repeats / 2]));
            }
        }
        finally
        {
            foreach (var t in made) t.Dispose();
        }
        var choice = new MatmulChoice(timings.MinBy(t => t.Item2).Item1, timings);
        lock (Cache) Cache[key] = choice;
        return choice;
    }
}
