namespace ScratchNet.Kernels;

/// <summary>
/// Splits the host backend's work across the cores without allocating: part 0 runs on the caller, the other
/// parts on worker threads of our own (one per extra core), started once and reused, so a training step on
/// --device host puts nothing on the managed heap (Parallel.For and lambdas would, every call).
///
/// Between two calls a worker first spins for <see cref="SpinMicroseconds"/> and only then sleeps, as OpenMP's
/// threads do (PyTorch's CPU kernels run on them): a conv layer makes hundreds of calls of 20-100 µs each per
/// step, and waking a sleeping thread (what the .NET thread pool did here) cost more than the work it was given.
/// The price is a core kept busy for that long after the last call. Parts go to whoever claims them first, so a
/// call never waits for a sleeping worker.
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
    static long _generation;
    // The parts of the current call are handed out by one counter, _ticket = (generation << 16) | next part, that
    // the workers and the caller both take from: a part runs exactly once, on whoever claims it first. So the caller
    // never waits for a worker that is asleep: it runs the unclaimed parts itself.
    static long _ticket;
    static int _completed;     // parts 1..parts-1 finished in the current call
    static long _forkJoins;

    /// <summary>
    /// Calls so far that split their work (parts &gt; 1): each hands parts to the workers and waits until every part is
    /// done, a point where the cores wait for each other. `scratchnet bench` counts them per part of a training step.
    /// </summary>
    public static long ForkJoins => Volatile.Read(ref _forkJoins);

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
            for (int i = 0; i < Workers.Length; i++) Workers[i] ??= new Worker();
            _work = work;
            _parts = parts;
            Volatile.Write(ref _completed, 0);
            long generation = ++_generation;
            _forkJoins++;
            Interlocked.Exchange(ref _ticket, (generation << 16) | 1);   // publishes the above; part 1 is the next to claim
            work.Run(0, parts);
            while (Claim(generation, parts) is int p)
            {
                work.Run(p, parts);
                Interlocked.Increment(ref _completed);
            }
            var spin = new SpinWait();
            while (Volatile.Read(ref _completed) != parts - 1) spin.SpinOnce(sleep1Threshold: -1);
            _work = null;
        }
    }

    /// <summary>The next unclaimed part of call `generation`, or null when that call has none left (or is over).</summary>
    static int? Claim(long generation, int parts)
    {
        while (true)
        {
            long t = Volatile.Read(ref _ticket);
            int part = (int)(t & 0xFFFF);
            if (t >> 16 != generation || part >= parts) return null;
            if (Interlocked.CompareExchange(ref _ticket, t + 1, t) == t) return part;
        }
    }

    /// <summary>
    /// A background thread that claims parts of every call. Between calls it spins, then polls every millisecond:
    /// nobody has to wake it (a wake-up through an event or a lock allocated on the caller's thread the first time,
    /// which a training step must not do), and a call never waits for it.
    /// </summary>
    sealed class Worker
    {
        public Worker() => new Thread(Loop) { IsBackground = true, Name = "ScratchNet host worker" }.Start();

        static void Loop()
        {
            long seen = 0;
            while (true)
            {
                long generation = WaitForCall(seen);
                seen = generation;
                int parts = Volatile.Read(ref _parts);
                while (Claim(generation, parts) is int p)
                {
                    _work!.Run(p, parts);
                    Interlocked.Increment(ref _completed);
                }
            }
        }

        /// <summary>Spins, then polls every millisecond, until a call newer than `seen` is published; returns its generation.</summary>
        static long WaitForCall(long seen)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            long budget = System.Diagnostics.Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
            while (true)
            {
                long g = Volatile.Read(ref _ticket) >> 16;
                if (g != seen) return g;
                if (System.Diagnostics.Stopwatch.GetTimestamp() - start < budget) Thread.SpinWait(20);
                else Thread.Sleep(1);
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
