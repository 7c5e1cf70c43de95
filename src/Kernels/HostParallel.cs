namespace ScratchNet.Kernels;

/// <summary>
/// Splits the host backend's work across the cores without allocating: part 0 runs on the caller, the
/// other parts on thread-pool threads through work items that are created once and reused, so a training
/// step on --device host puts nothing on the managed heap (Parallel.For and lambdas would, every call).
/// </summary>
public static class HostParallel
{
    /// <summary>A piece of work that knows how to run its share `part` of `parts`.</summary>
    public interface IWork
    {
        void Run(int part, int parts);
    }

    public static readonly int Cores = Environment.ProcessorCount;

    sealed class Part : IThreadPoolWorkItem
    {
        public IWork? Work;
        public int Index, Count;

        public void Execute()
        {
            try
            {
                Work!.Run(Index, Count);
            }
            finally
            {
                Done.Signal();
            }
        }
    }

    static readonly Part[] Parts = Enumerable.Range(0, Cores).Select(_ => new Part()).ToArray();
    static readonly CountdownEvent Done = new(1);
    static readonly object Gate = new();

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
            Done.Reset(parts - 1);
            for (int i = 1; i < parts; i++)
            {
                Part p = Parts[i];
                p.Work = work;
                p.Index = i;
                p.Count = parts;
                ThreadPool.UnsafeQueueUserWorkItem(p, preferLocal: false);
            }
            work.Run(0, parts);
            Done.Wait();
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
