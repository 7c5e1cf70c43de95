using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>
/// One self-overwriting status line on stderr while an epoch runs (batches done, running loss, samples/s).
/// Only on a terminal: when stderr is redirected it prints nothing, so logs stay clean.
/// </summary>
public sealed class ProgressLine(TextWriter stderr, int epochs)
{
    readonly bool _enabled = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
    int _width;

    public void Update(StepProgress p)
    {
        if (!_enabled) return;
        const int bar = 24;
        int filled = (int)((long)bar * p.Batch / p.Batches);
        string line = $"epoch {p.Epoch + 1}/{epochs} [{new string('#', filled)}{new string('.', bar - filled)}] " +
            $"{p.Batch}/{p.Batches} batches  loss {p.RunningLoss:0.0000}  {p.SamplesPerSecond:N0} samples/s";
        _width = Math.Max(_width, line.Length);
        stderr.Write("\r" + line.PadRight(_width));
    }

    public void Clear()
    {
        if (!_enabled || _width == 0) return;
        stderr.Write("\r" + new string(' ', _width) + "\r");
        _width = 0;
    }
}
