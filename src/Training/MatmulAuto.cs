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
/// model's real shapes, the three products of every Linear layer at the batch size (forward x·W^T, dx = dy·W,
/// dW = dy^T·x) and, with --conv im2col, the three per-image products of every Conv2d for up to 8 images,
/// and take the fastest. Timed once per device, layer sizes and batch, in a few milliseconds;
/// the scratch buffers are tracked by their own tracker, so the run's memory report does not change.
/// Versions a device has no use for are not timed (the tiled kernel where groups are too small for it).
/// </summary>
public static class MatmulAuto
{
    const int Repeats = 3;
    static readonly Dictionary<(Accelerator, string, int), MatmulChoice> Cache = [];
    const int ConvImages = 8;

    public static MatmulChoice Choose(IBackend backend, Accelerator accelerator, Network net, int batch)
    {
        var key = (accelerator, $"{net.Spec.Text} on {net.Input} {net.Conv}", batch);
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
            // One set of buffers per product: a (M, K) read through its strides, b (K, N), c (M, N).
            var products = new List<(int m, int n, int k, int aRow, int aCol, int bRow, int bCol, int times, Tensor<float> a, Tensor<float> b, Tensor<float> c)>();
            void Product(int m, int n, int k, int aRow, int aCol, int bRow, int bCol, int times) =>
                products.Add((m, n, k, aRow, aCol, bRow, bCol, times, Random("auto.a", (long)m * k), Random("auto.b", (long)k * n), Random("auto.c", (long)m * n)));
            foreach (var layer in net.Layers)
            {
                if (layer is Linear l)
                {
                    int k = l.InFeatures, n = l.OutFeatures;
                    Product(batch, n, k, k, 1, 1, k, 1);       // y = x·W^T
                    Product(batch, k, n, n, 1, k, 1, 1);       // dx = dy·W
                    Product(n, k, batch, 1, n, k, 1, 1);       // dW = dy^T·x
                }
                else if (layer is Conv2d c && net.Conv == ConvVersion.Im2col)
                {
                    var s = c.Shape;
                    int images = Math.Min(batch, ConvImages);
                    Product(s.F, s.ColCols, s.ColRows, s.ColRows, 1, s.ColCols, 1, images);   // y_b = W·cols
                    Product(s.F, s.ColRows, s.ColCols, s.ColCols, 1, 1, s.ColCols, images);   // dW += dy_b·cols^T
                    Product(s.ColRows, s.ColCols, s.F, 1, s.ColRows, s.ColCols, 1, images);   // cols = W^T·dy_b
                }
            }
            void Step(MatmulVersion v)
            {
                foreach (var p in products)
                    for (int t = 0; t < p.times; t++)
                        backend.Matmul(v, p.a.View, p.b.View, p.c.View, p.m, p.n, p.k, p.aRow, p.aCol, p.bRow, p.bCol);
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
