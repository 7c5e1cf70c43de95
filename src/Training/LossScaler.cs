namespace ScratchNet.Training;

/// <summary>
/// Dynamic loss scaling for --precision fp16, with torch.cuda.amp.GradScaler's defaults and rules:
/// <code>
/// loss gradient x Scale    before backward: small gradients move up into fp16's range (its smallest value is 2^-24)
/// after backward           unscale: every float32 weight gradient x 1 / Scale, and look for inf or NaN
/// inf or NaN found         skip the optimizer step (the weights stay bit-identical), Scale x 0.5, good steps = 0
/// else                     the optimizer step; good steps + 1, and after 2,000 in a row, Scale x 2
/// </code>
/// Scale starts at 65,536 (2^16). The state (Scale and the good steps in a row) is saved in checkpoints.
/// </summary>
public sealed class LossScaler
{
    public const float InitialScale = 65536f;
    public const float GrowthFactor = 2f;
    public const float BackoffFactor = 0.5f;
    public const int GrowthInterval = 2000;

    /// <summary>What the loss's gradient is multiplied by now.</summary>
    public float Scale { get; set; } = InitialScale;
    /// <summary>Steps in a row without an inf or NaN gradient since the scale last changed (torch's _growth_tracker).</summary>
    public int GoodSteps { get; set; }
    /// <summary>Steps skipped in this session because a gradient was inf or NaN.</summary>
    public long SkippedSteps { get; private set; }

    /// <summary>After the unscale: whether to take the optimizer step, and the scale for the next step.</summary>
    public bool Update(bool foundInf)
    {
        if (foundInf)
        {
            Scale *= BackoffFactor;
            GoodSteps = 0;
            SkippedSteps++;
            return false;
        }
        if (++GoodSteps == GrowthInterval)
        {
            // As torch's _amp_update_scale_: grow only to a finite scale (an infinite one would make every gradient NaN).
            if (float.IsFinite(Scale * GrowthFactor)) Scale *= GrowthFactor;
            GoodSteps = 0;
        }
        return true;
    }
}
