using System.Diagnostics;
using ScratchNet.Kernels;

namespace ScratchNet.Training;

/// <summary>
/// Where a training step's time goes (`scratchnet bench`'s step breakdown). Set as <see cref="TrainingSession.Clock"/>,
/// the step stops the clock after each of its parts, in order:
/// <code>
/// [what the caller laps first: filling the batch, the upload]
/// every layer's forward ("fc1 forward"), "loss", every layer's backward down to the first with parameters
/// ("fc2 backward"), "update" (the optimizer over the flat buffers), "readback" (losses and predictions to the host)
/// </code>
/// For each part it keeps the microseconds of every step and the fork/joins the host backend made in it
/// (<see cref="HostParallel.ForkJoins"/>: each one is a point where every core waits for the others). Before it reads
/// the time it waits for the device (<see cref="IBackend.Synchronize"/>), so on a GPU a part is charged for its own
/// kernels; that wait also takes away the overlap of one part's launches with the next part's, so a clocked step on a
/// GPU is a little slower than a plain one. On the host backend every call returns finished, and the clock only adds
/// two timestamp reads per part.
/// Parts are matched by their place in the step, so every clocked step must lap the same parts: with --accumulate N
/// each micro-batch laps its own forward, loss, backward and readback (bench clocks steps without accumulation).
/// </summary>
public sealed class StepClock(IBackend backend)
{
    /// <summary>One part of the step: its name, its time in every step clocked, and its fork/joins in all of them.</summary>
    public sealed class Part(string name)
    {
        public string Name { get; } = name;
        public List<double> Microseconds { get; } = [];
        public long ForkJoins { get; set; }
    }

    readonly List<Part> _parts = [];
    int _next;
    long _last, _forkJoins;

    /// <summary>The parts in step order.</summary>
    public IReadOnlyList<Part> Parts => _parts;

    /// <summary>Steps clocked (the times each part has).</summary>
    public int Steps => _parts.Count == 0 ? 0 : _parts[0].Microseconds.Count;

    /// <summary>Starts a step: the next lap is the step's first part.</summary>
    public void Start()
    {
        backend.Synchronize();
        _next = 0;
        _forkJoins = HostParallel.ForkJoins;
        _last = Stopwatch.GetTimestamp();
    }

    /// <summary>Ends the part `what` (of `layer`, when given): the time since the previous lap or <see cref="Start"/>.</summary>
    public void Lap(string what, string? layer = null)
    {
        backend.Synchronize();
        long now = Stopwatch.GetTimestamp();
        long forkJoins = HostParallel.ForkJoins;
        if (_next == _parts.Count) _parts.Add(new Part(layer is null ? what : $"{layer} {what}"));   // names made in the first step only
        Part part = _parts[_next++];
        part.Microseconds.Add((now - _last) * 1e6 / Stopwatch.Frequency);
        part.ForkJoins += forkJoins - _forkJoins;
        _forkJoins = forkJoins;
        _last = Stopwatch.GetTimestamp();   // the clock's own bookkeeping is charged to no part
    }
}
