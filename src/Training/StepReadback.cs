namespace ScratchNet.Training;

/// <summary>
/// What the host reads back after a step: the B per-row losses and the B predictions, into two host arrays
/// made once (so a step allocates nothing), and what it makes of them: the loss sum and the correct count.
/// </summary>
public sealed class StepReadback(int batchSize)
{
    readonly float[] _losses = new float[batchSize];
    readonly int[] _predictions = new int[batchSize];

    /// <summary>After a training step: the sum of the rows' losses and how many predictions equal the labels.</summary>
    public (double LossSum, int Correct) LossAndCorrect(StepBuffers buffers, ReadOnlySpan<int> labels, int rows)
    {
        buffers.Losses.CopyTo(_losses.AsSpan(0, rows));
        double sum = 0;
        for (int i = 0; i < rows; i++) sum += _losses[i];
        return (sum, Correct(buffers, labels, rows));
    }

    /// <summary>How many of the first `rows` predictions equal the labels.</summary>
    public int Correct(StepBuffers buffers, ReadOnlySpan<int> labels, int rows)
    {
        buffers.Predictions.CopyTo(_predictions.AsSpan(0, rows));
        int correct = 0;
        for (int i = 0; i < rows; i++)
            if (_predictions[i] == labels[i]) correct++;
        return correct;
    }
}
