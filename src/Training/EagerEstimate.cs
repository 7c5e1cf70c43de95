using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// The eager lifetime mode's peak in closed form: where the bytes stand after every allocation of a step, from the
/// shapes alone (no tracker, no device), in the order <see cref="EagerStep"/> makes and frees them. With B the batch,
/// P the parameters, out_i the output per sample of layer i (A_i = 4 B out_i bytes) and W_i an im2col workspace:
/// <code>
/// always        4 P parameters + optimizer state + input                       (the planned estimate's figures)
/// forward i     + A_i (+ A_i int32 indices for max-pool) (+ W_i during the call)
/// loss          + 4 B losses + 4 B predictions + A_last gradient, then - A_last (the logits)
/// backward j    + 4 P gradients at the first layer with parameters, + A_(j-1) gradient, (+ W_j during the call),
///               then - A_j gradient, - A_j indices, - A_(j-1) once layer j-1's output is not needed any more
/// update        - 4 P gradients, then the losses and predictions
/// </code>
/// The peak is the largest of these running sums; which allocation reaches it depends on the model and the batch:
/// for small batches the gradients (backward), for large ones the activations and the first gradients between layers.
/// </summary>
public static class EagerEstimate
{
    /// <summary>The peak of a step in bytes, the phase and the allocation that reach it, and each category's own peak.</summary>
    public sealed record Result(long Peak, string Phase, string Name, Dictionary<MemoryCategory, long> CategoryPeaks, Dictionary<MemoryCategory, long> LiveAfterStep);

    public static Result Estimate(Network net, int batch, string optimizer, DatasetOnDevice? dataset)
    {
        MemoryEstimate planned = MemoryEstimator.Estimate(net, batch, optimizer, dataset);
        var categories = Enum.GetValues<MemoryCategory>();
        MemoryCategory[] always = [MemoryCategory.Parameter, MemoryCategory.OptimizerState, MemoryCategory.Input, MemoryCategory.Other];
        var live = categories.ToDictionary(c => c, c => always.Contains(c) ? planned[c] : 0L);
        var peaks = new Dictionary<MemoryCategory, long>(live);
        long total = live.Values.Sum(), peak = total;
        string peakPhase = "setup", peakName = "";
        string phase = "forward";

        void Alloc(MemoryCategory c, long bytes, string name)
        {
            live[c] += bytes;
            peaks[c] = Math.Max(peaks[c], live[c]);
            total += bytes;
            if (total > peak) (peak, peakPhase, peakName) = (total, phase, name);
        }
        void Free(MemoryCategory c, long bytes)
        {
            live[c] -= bytes;
            total -= bytes;
        }

        var layers = net.Layers;
        long b = batch;
        long Out(int i) => 4 * b * layers[i].Out.Size;   // layer i's output, its gradient, or (max-pool) its indices
        long Cols(Conv2d c) => 4L * c.Shape.ColRows * c.Shape.ColCols;
        bool im2col = net.Conv == ConvVersion.Im2col;
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            if (!l.InPlace) Alloc(MemoryCategory.Activation, Out(i), StepBuffers.OutputName(layers, i));
            if (l is MaxPool2d) Alloc(MemoryCategory.Activation, Out(i), $"{l.Name}.indices");
            if (l is Conv2d c && im2col)
            {
                Alloc(MemoryCategory.Workspace, Cols(c), $"{c.Name}.cols");
                Free(MemoryCategory.Workspace, Cols(c));
            }
        }

        phase = "loss";
        int last = StepBuffers.Producer(layers, layers.Count - 1);
        Alloc(MemoryCategory.Temporary, 4 * b, "losses");
        Alloc(MemoryCategory.Temporary, 4 * b, "predictions");
        Alloc(MemoryCategory.Temporary, Out(last), StepBuffers.OutputName(layers, last) + ".grad");
        if (!layers[^1].InPlace) Free(MemoryCategory.Activation, Out(layers.Count - 1));

        phase = "backward";
        int first = MemoryEstimator.FirstTrainable(net);   // backward stops at the first layer with parameters
        bool gradients = false;
        long p = net.ParameterCount;
        for (int j = layers.Count - 1; j >= first; j--)
        {
            var l = layers[j];
            if (l.ParameterCount > 0 && !gradients)
            {
                Alloc(MemoryCategory.Gradient, 4 * p, "gradients");
                gradients = true;
            }
            if (!l.InPlace && j > first)
            {
                int q = StepBuffers.Producer(layers, j - 1);
                Alloc(MemoryCategory.Temporary, Out(q), StepBuffers.OutputName(layers, q) + ".grad");
            }
            if (l is Conv2d c && im2col)
            {
                Alloc(MemoryCategory.Workspace, Cols(c), $"{c.Name}.cols");
                Free(MemoryCategory.Workspace, Cols(c));
            }
            if (!l.InPlace)
            {
                Free(MemoryCategory.Temporary, Out(j));
                if (l is MaxPool2d) Free(MemoryCategory.Activation, Out(j));
            }
            if (j > 0 && !layers[j - 1].InPlace) Free(MemoryCategory.Activation, Out(j - 1));
        }

        // update: the gradients go after the optimizer step, then whatever the step still holds.
        var after = categories.ToDictionary(c => c, c => always.Contains(c) ? planned[c] : 0L);
        return new Result(peak, peakPhase, peakName, peaks, after);
    }
}
