using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ScratchNet.Kernels;

/// <summary>
/// This machine's limits, measured, for the bench's roofline column: the float32 FMA peak per vector width on every
/// core (a loop of independent fused multiply-adds that never leaves the registers), and the read bandwidth from
/// L2 (a block per core of half its L2, read again and again), from L3 (4 MiB per core, larger than L2 and, on
/// current CPUs, within L3) and from DRAM (256 MiB in all, far larger than the caches). A kernel can go no faster than the bound that applies to it: the FMA peak for a matmul, the bandwidth of
/// the level its data lives in for an elementwise pass.
/// </summary>
public static class Roofline
{
    /// <summary>One measured peak: FMA GFLOP/s per vector width, read GB/s from cache and from DRAM.</summary>
    public sealed record Limits(List<(int Bits, double Gflops)> Fma, double L2GBs, double L3GBs, double DramGBs, long L2Bytes, int Cores)
    {
        /// <summary>The highest FMA peak of any width: what a compute-bound kernel is held against.</summary>
        public double PeakGflops => Fma.Max(f => f.Gflops);

        /// <summary>
        /// The bandwidth a kernel that touches `bytes` again and again runs against: the caches hold what fits, fastest
        /// level first (all cores' L2, then L3 up to <see cref="L3Assumed"/>), DRAM the rest, and the time is the sum:
        /// bytes / (in L2 / L2 rate + in L3 / L3 rate + in DRAM / DRAM rate).
        /// </summary>
        public (double GBs, string Level) BandwidthFor(double bytes)
        {
            double inL2 = Math.Min(bytes, (double)L2Bytes * Cores);
            double inL3 = Math.Min(bytes - inL2, Math.Max(0, L3Assumed - (double)L2Bytes * Cores));
            double inDram = bytes - inL2 - inL3;
            string level = string.Join("+", new[] { (inL2, "L2"), (inL3, "L3"), (inDram, "DRAM") }.Where(x => x.Item1 > 0).Select(x => x.Item2));
            return (bytes / (inL2 / L2GBs + inL3 / L3GBs + inDram / DramGBs), level);
        }
    }

    /// <summary>How much data is taken to stay in L3: 16 MiB (L3 is 16-32 MiB per CPU die today; virtual machines often report none).</summary>
    public const long L3Assumed = 16L << 20;

    /// <summary>Measures the limits (about a second): each figure the best of three runs.</summary>
    public static Limits Measure()
    {
        int cores = HostParallel.Cores;
        var fma = new List<(int, double)>();
        foreach (int bits in new[] { 128, 256, 512 })
            if (Supported(bits)) fma.Add((bits, Best(() => FmaPeak(bits, cores))));
        long l2 = L2Bytes();
        double l2Rate = Best(() => ReadBandwidth(perCoreFloats: (int)(l2 / 4 / 2), passes: 4000, cores));   // half of L2 per core
        double l3Rate = Best(() => ReadBandwidth(perCoreFloats: (4 << 20) / 4, passes: 40, cores));        // 4 MiB per core
        double dram = Best(() => ReadBandwidth(perCoreFloats: 256 * 1024 * 1024 / 4 / cores, passes: 1, cores));   // 256 MiB in all
        return new Limits(fma, l2Rate, l3Rate, dram, l2, cores);
    }

    static bool Supported(int bits) => bits switch
    {
        128 => Fma.IsSupported,
        256 => Fma.IsSupported && Avx.IsSupported,
        512 => Avx512F.IsSupported,
        _ => false,
    };

    static double Best(Func<double> run) => Enumerable.Range(0, 3).Max(_ => run());

    /// <summary>The L2 cache per core, from /proc/cpuinfo's "cache size" (AMD and Intel report L2 there); 1 MiB if unknown.</summary>
    static long L2Bytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("cache size", StringComparison.Ordinal) && line.Split(':')[1].Trim().Split(' ') is [var kb, "KB"] && long.TryParse(kb, out long k))
                    return k * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 1 << 20;
    }

    // 12 independent accumulators: a fused multiply-add has 4 cycles of latency and two of them start per cycle
    // (Zen 4, Intel since Skylake), so at least 8 chains are needed to keep both units busy.
    const int Chains = 12;
    const long Iterations = 20_000_000;

    sealed class FmaWork(int bits) : HostParallel.IWork
    {
        public readonly float[] Sums = new float[64];
        public void Run(int part, int parts) => Sums[part] = bits switch { 128 => Fma128(), 256 => Fma256(), _ => Fma512() };
    }

    /// <summary>GFLOP/s of `cores` threads each running the FMA loop at this width: 2 flops per lane per FMA.</summary>
    static double FmaPeak(int bits, int cores)
    {
        var work = new FmaWork(bits);
        var t = Stopwatch.StartNew();
        HostParallel.Run(work, cores);
        double seconds = t.Elapsed.TotalSeconds;
        if (work.Sums.Take(cores).Any(float.IsNaN)) throw new InvalidOperationException("FMA loop produced NaN");
        return 2.0 * (bits / 32) * Chains * Iterations * cores / seconds / 1e9;
    }

    // a = a * m + c converges to c / (1 - m) = 10 and stays finite; the sum is returned so the loop is not removed.
    [MethodImpl(MethodImplOptions.NoInlining)]
    static float Fma128()
    {
        Vector128<float> m = Vector128.Create(0.9f), c = Vector128.Create(1f);
        Vector128<float> a0 = c, a1 = c, a2 = c, a3 = c, a4 = c, a5 = c, a6 = c, a7 = c, a8 = c, a9 = c, a10 = c, a11 = c;
        for (long i = 0; i < Iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, m, c); a1 = Fma.MultiplyAdd(a1, m, c); a2 = Fma.MultiplyAdd(a2, m, c); a3 = Fma.MultiplyAdd(a3, m, c);
            a4 = Fma.MultiplyAdd(a4, m, c); a5 = Fma.MultiplyAdd(a5, m, c); a6 = Fma.MultiplyAdd(a6, m, c); a7 = Fma.MultiplyAdd(a7, m, c);
            a8 = Fma.MultiplyAdd(a8, m, c); a9 = Fma.MultiplyAdd(a9, m, c); a10 = Fma.MultiplyAdd(a10, m, c); a11 = Fma.MultiplyAdd(a11, m, c);
        }
        return Vector128.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static float Fma256()
    {
        Vector256<float> m = Vector256.Create(0.9f), c = Vector256.Create(1f);
        Vector256<float> a0 = c, a1 = c, a2 = c, a3 = c, a4 = c, a5 = c, a6 = c, a7 = c, a8 = c, a9 = c, a10 = c, a11 = c;
        for (long i = 0; i < Iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, m, c); a1 = Fma.MultiplyAdd(a1, m, c); a2 = Fma.MultiplyAdd(a2, m, c); a3 = Fma.MultiplyAdd(a3, m, c);
            a4 = Fma.MultiplyAdd(a4, m, c); a5 = Fma.MultiplyAdd(a5, m, c); a6 = Fma.MultiplyAdd(a6, m, c); a7 = Fma.MultiplyAdd(a7, m, c);
            a8 = Fma.MultiplyAdd(a8, m, c); a9 = Fma.MultiplyAdd(a9, m, c); a10 = Fma.MultiplyAdd(a10, m, c); a11 = Fma.MultiplyAdd(a11, m, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static float Fma512()
    {
        Vector512<float> m = Vector512.Create(0.9f), c = Vector512.Create(1f);
        Vector512<float> a0 = c, a1 = c, a2 = c, a3 = c, a4 = c, a5 = c, a6 = c, a7 = c, a8 = c, a9 = c, a10 = c, a11 = c;
        for (long i = 0; i < Iterations; i++)
        {
            a0 = Avx512F.FusedMultiplyAdd(a0, m, c); a1 = Avx512F.FusedMultiplyAdd(a1, m, c); a2 = Avx512F.FusedMultiplyAdd(a2, m, c);
            a3 = Avx512F.FusedMultiplyAdd(a3, m, c); a4 = Avx512F.FusedMultiplyAdd(a4, m, c); a5 = Avx512F.FusedMultiplyAdd(a5, m, c);
            a6 = Avx512F.FusedMultiplyAdd(a6, m, c); a7 = Avx512F.FusedMultiplyAdd(a7, m, c); a8 = Avx512F.FusedMultiplyAdd(a8, m, c);
            a9 = Avx512F.FusedMultiplyAdd(a9, m, c); a10 = Avx512F.FusedMultiplyAdd(a10, m, c); a11 = Avx512F.FusedMultiplyAdd(a11, m, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    sealed class ReadWork(float[][] blocks, int passes) : HostParallel.IWork
    {
        public readonly float[] Sums = new float[64];
        public void Run(int part, int parts)
        {
            float[] block = blocks[part];
            var s0 = Vector256<float>.Zero;
            var s1 = Vector256<float>.Zero;
            var s2 = Vector256<float>.Zero;
            var s3 = Vector256<float>.Zero;
            ref float start = ref block[0];
            for (int p = 0; p < passes; p++)
                for (int i = 0; i + 32 <= block.Length; i += 32)
                {
                    s0 += Vector256.LoadUnsafe(ref start, (nuint)i);
                    s1 += Vector256.LoadUnsafe(ref start, (nuint)(i + 8));
                    s2 += Vector256.LoadUnsafe(ref start, (nuint)(i + 16));
                    s3 += Vector256.LoadUnsafe(ref start, (nuint)(i + 24));
                }
            Sums[part] = Vector256.Sum(s0 + s1 + s2 + s3);
        }
    }

    /// <summary>GB/s of `cores` threads each summing its own block of floats `passes` times (the first pass warms it).</summary>
    static double ReadBandwidth(int perCoreFloats, int passes, int cores)
    {
        perCoreFloats -= perCoreFloats % 32;
        var blocks = Enumerable.Range(0, cores).Select(_ => Enumerable.Repeat(1f, perCoreFloats).ToArray()).ToArray();
        HostParallel.Run(new ReadWork(blocks, 1), cores);   // first touch: pages mapped, cache warm for the cache test
        var work = new ReadWork(blocks, passes);
        var t = Stopwatch.StartNew();
        HostParallel.Run(work, cores);
        double seconds = t.Elapsed.TotalSeconds;
        if (work.Sums[0] != (float)perCoreFloats * passes && passes * (long)perCoreFloats < 1 << 24)
            throw new InvalidOperationException("read loop summed wrong");
        return 4.0 * perCoreFloats * passes * cores / seconds / 1e9;
    }
}
