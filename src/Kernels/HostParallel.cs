namespace ScratchNet.Kernels;

/// <summary>
/// Splits the host backend's work across the cores without allocating: part 0 runs on the caller, the other
/// parts on worker threads of our own (one per extra core), started once and reused, so a training step on
/// --device host puts nothing on the managed heap (Parallel.For and lambdas would, every call).
///
/// Between two calls a worker first spins for <see cref="SpinMicroseconds"/> and only then sleeps, as OpenMP's
/// threads do (PyTorch's CPU kernels run on them): a conv layer makes hundreds of calls of 20-100 µs each per
/// step, and waking a sleeping thread (what the .NET thread pool did here) cost more than the work it was given.
/// The price is a core kept busy for that long after the last call.
/// </summary>
public static class HostParallel
{
    /// <summary>A piece of work that knows how to run its share `part` of `parts`.</summary>
    public interface IWork
    {
        void Run(int part, int parts);
    }

    /// <summary>The environment variable that sets <see cref="Cores"/> (like OMP_NUM_THREADS for PyTorch).</summary>
    public const string ThreadsVariable = "SCRATCHNET_THREADS";

    /// <summary>The cores the host backend uses: all of them, or SCRATCHNET_THREADS when it is set.</summary>
    public static readonly int Cores;

    /// <summary>Why SCRATCHNET_THREADS could not be used (the CLI refuses to start with it), or null.</summary>
    public static readonly string? ThreadsError;

    static HostParallel()
    {
        Cores = ParseThreads(Environment.GetEnvironmentVariable(ThreadsVariable), Environment.ProcessorCount, out ThreadsError);
        Workers = new Worker[Cores - 1];
    }

    /// <summary>The core count a SCRATCHNET_THREADS value asks for: unset or empty means all; a whole number 1..1024;
    /// anything else gives all and an error message.</summary>
    public static int ParseThreads(string? value, int processors, out string? error)
    {
        error = null;
        if (string.IsNullOrEmpty(value)) return processors;
        if (int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n is >= 1 and <= 1024)
            return n;
        error = $"{ThreadsVariable} must be a whole number of cores from 1 to 1024, not '{value}'";
        return processors;
    }

    /// <summary>How long an idle worker spins, waiting for the next call, before it sleeps.</summary>
    public const int SpinMicroseconds = 500;

    static readonly object Gate = new();
    static readonly Worker[] Workers;
    static IWork? _work;
    static int _parts;
    static long _generation;   // incremented by every call that uses the workers; a worker runs each generation once
    static int _pending;       // workers that have not finished the current generation (all take part; the ones past parts run nothing)

    /// <summary>Runs work.Run(part, parts) for every part in 0..parts-1 and returns when all are done.</summary>
    public static void Run(IWork work, int parts)
    {
        parts = Math.Clamp(parts, 1, Cores);
        if (parts == 1)
        {
            work.Run(0, 1);
            return;
        }
        lock (Gate)
        {
            _work = work;
            _parts = parts;
            for (int i = 0; i < Workers.Length; i++) Workers[i] ??= new Worker(i + 1);
            Volatile.Write(ref _pending, Workers.Length);
            Interlocked.Increment(ref _generation);
            foreach (var w in Workers) w.Wake();
            work.Run(0, parts);
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
            _work = null;
        }
    }

    /// <summary>A background thread that runs part `index` of every call with more than `index` parts.</summary>
    sealed class Worker
    {
        readonly int _index;
        // Sleeping is told through a flag and an AutoResetEvent, not a ManualResetEventSlim: that one takes a lock,
        // and a lock contended for the first time allocates, which a training step must not do.
        readonly AutoResetEvent _wake = new(false);
        int _sleeping;   // 1 while the worker is (about to be) waiting on _wake

        public Worker(int index)
        {
            _index = index;
            new Thread(Loop) { IsBackground = true, Name = $"ScratchNet host worker {index}" }.Start();
        }

        /// <summary>Called after the generation moved: wakes the worker if it went to sleep.</summary>
        public void Wake()
        {
            if (Interlocked.Exchange(ref _sleeping, 0) == 1) _wake.Set();
        }

        void Loop()
        {
            long seen = 0;
            while (true)
            {
                seen = WaitForCall(seen);
                if (_index < _parts)
                {
                    try
                    {
                        _work!.Run(_index, _parts);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref _pending);
                    }
                }
            }
        }

        /// <summary>Spins, then sleeps, until the generation moves past `seen`; returns the new one.</summary>
        long WaitForCall(long seen)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            long budget = System.Diagnostics.Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
            while (true)
            {
                long g = Volatile.Read(ref _generation);
                if (g != seen) return g;
                if (System.Diagnostics.Stopwatch.GetTimestamp() - start < budget)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                // Sleep: raise the flag, then look once more. Run moves the generation before it reads the flag, and
                // both are full fences, so either we see the new generation here or Run sees the flag and sets _wake.
                Interlocked.Exchange(ref _sleeping, 1);
                if (Volatile.Read(ref _generation) == seen) _wake.WaitOne();
                Interlocked.Exchange(ref _sleeping, 0);
                start = System.Diagnostics.Stopwatch.GetTimestamp();
            }
        }
    }

    /// <summary>Rows [0, rows) split in whole blocks: the range of `part` of `parts`.</summary>
    public static (int Begin, int End) Range(int rows, int block, int part, int parts)
    {
        int blocks = (rows + block - 1) / block;
        int b0 = (int)((long)blocks * part / parts), b1 = (int)((long)blocks * (part + 1) / parts);
        return (Math.Min(rows, b0 * block), Math.Min(rows, b1 * block));
    }
}
