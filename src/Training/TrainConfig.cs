using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>Everything that defines a training run. Defaults are the lesson's.</summary>
public sealed record TrainConfig
{
    public static readonly string[] OptimizerChoices = ["adam", "sgd", "momentum"];

    public string Dataset { get; init; } = "fashion-mnist";
    public string? DataDir { get; init; }
    public int[] Hidden { get; init; } = [128];
    /// <summary>"mlp" (the lesson's, with <see cref="Hidden"/>) or "cnn" (<see cref="ModelSpec.Cnn"/>); ignored when <see cref="Layers"/> is set.</summary>
    public string Model { get; init; } = "mlp";
    /// <summary>--layers: any stack (see <see cref="ModelSpec"/>); null means --model.</summary>
    public string? Layers { get; init; }
    /// <summary>--conv: how convolutions run.</summary>
    public ConvVersion Conv { get; init; } = ConvVersion.Im2col;
    /// <summary>"adam", "sgd", or "momentum" (SGD with momentum, 0.9 unless --momentum says otherwise).</summary>
    public string Optimizer { get; init; } = "adam";
    /// <summary>Learning rate; null means the optimizer's default (Adam 1e-3, SGD 0.01).</summary>
    public float? LearningRate { get; init; }
    /// <summary>SGD momentum; null means 0 for "sgd" and 0.9 for "momentum".</summary>
    public float? Momentum { get; init; }
    /// <summary>The batch an optimizer step sees (with --accumulate, the effective batch).</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>--accumulate N: each batch runs as N micro-batches whose gradients are summed before one optimizer step.</summary>
    public int Accumulate { get; init; } = 1;
    /// <summary>The rows the device holds at once: BatchSize / Accumulate, rounded up (the micro-batches differ by at most one row).</summary>
    public int MicroBatch => (BatchSize + Accumulate - 1) / Accumulate;
    public int Epochs { get; init; } = 1;
    public ulong Seed { get; init; } = 42;
    public string Device { get; init; } = "auto";
    /// <summary>Force a matmul version; null means the accelerator's default.</summary>
    public MatmulVersion? Matmul { get; init; }
    /// <summary>--matmul auto: time the versions on the model's shapes and take the fastest (the default on GPUs and OpenCL).</summary>
    public bool MatmulAuto { get; init; }
    /// <summary>The version a checkpoint recorded: used on a resume when this backend has it (so the run stays bit-identical), else ignored.</summary>
    public MatmulVersion? MatmulFromCheckpoint { get; init; }
    /// <summary>Keep the whole dataset on the device as bytes and gather + normalise each batch there.</summary>
    public bool DatasetOnDevice { get; init; }
    /// <summary>Budget for all device buffers together (bytes); null means no budget.</summary>
    public long? MemoryLimit { get; init; }
    /// <summary>--recompute: keep only each block's input and run the block's forward again in backward (see <see cref="Training.Recompute"/>).</summary>
    public bool Recompute { get; init; }
    /// <summary>--precision: float32 everywhere, or 16-bit storage (see <see cref="Training.Precision"/>).</summary>
    public Precision Precision { get; init; } = Precision.Fp32;
    /// <summary>--lifetime: planned (every buffer made once, reused by every step) or eager (as under autograd: see <see cref="EagerStep"/>).</summary>
    public LifetimeKind Lifetime { get; init; } = LifetimeKind.Planned;
    /// <summary>--allocator: exact (each tensor its own device buffer) or caching (segments and blocks, PyTorch's rules).</summary>
    public AllocatorKind Allocator { get; init; } = AllocatorKind.Exact;
    /// <summary>The largest single buffer allowed (bytes), like an OpenCL device's CL_DEVICE_MAX_MEM_ALLOC_SIZE; null: the device's own.</summary>
    public long? MaxBuffer { get; init; }

    /// <summary>Why --precision fp16 or bf16 cannot run with this stack or these options (what is not built yet), or null.</summary>
    public string? PrecisionRefusal(Network net)
    {
        if (Precision == Precision.Fp32) return null;
        if (net.HalfRefusal is { } refusal) return refusal;
        string p = $"--precision {Precision.ToString().ToLowerInvariant()}";
        if (Lifetime == LifetimeKind.Eager) return $"{p} runs with --lifetime planned only (the eager schedule has no 16-bit buffers yet)";
        if (Recompute) return $"{p} and --recompute together are not built yet";
        if (DatasetOnDevice) return $"{p} and --dataset-on-device together are not built yet (the gather kernel writes float32)";
        return null;
    }

    /// <summary>The per-buffer cap in force on a device: the smaller of --max-buffer and what the device advertises.</summary>
    public long? BufferCap(long? deviceCap) => (MaxBuffer, deviceCap) switch
    {
        (long a, long b) => Math.Min(a, b),
        (long a, null) => a,
        (null, long b) => b,
        _ => null,
    };

    public float EffectiveLearningRate => LearningRate ?? (Optimizer == "adam" ? 1e-3f : 0.01f);
    public float EffectiveMomentum => Momentum ?? (Optimizer == "momentum" ? 0.9f : 0f);

    /// <summary>The optimizer's real kind: "sgd" with a momentum above 0 is "momentum".</summary>
    public string OptimizerKind => Optimizer == "adam" ? "adam" : EffectiveMomentum > 0 ? "momentum" : "sgd";

    /// <summary>The layer stack: --layers, else --model (the MLP with --hidden's sizes, or the CNN).</summary>
    public ModelSpec Spec(int classes) =>
        Layers is not null ? new ModelSpec(Layers) : Model == "cnn" ? ModelSpec.Cnn(classes) : ModelSpec.Mlp(Hidden, classes);

    /// <summary>The architecture on a dataset's images (C, H, W) and classes.</summary>
    public Network Network(Data.DatasetInfo info) => Network(FeatureShape.Image(info.Channels, info.Height, info.Width), info.Classes);

    /// <summary>The architecture on inputs of this shape.</summary>
    public Network Network(FeatureShape input, int classes) => new(Spec(classes), input, classes, Conv, Recompute, Precision);
}

/// <summary>
/// --precision, mixed precision as Apex O2 does it: fp32 keeps everything in float32. fp16 and bf16 keep float32 master
/// weights, float32 weight gradients and float32 optimizer state, and store a 16-bit copy of the weights, the input
/// batch, every layer's output and the gradients flowing between layers in 16 bits (ushort patterns, float32 arithmetic
/// inside the kernels: see <see cref="Kernels.HalfKernels"/>); the loss runs in float32. fp16 adds dynamic loss scaling
/// (<see cref="LossScaler"/>): its smallest value is 2^-24, and small gradients would otherwise round to 0.
/// bf16 has float32's exponent range, so it needs no scaling.
/// </summary>
public enum Precision { Fp32, Fp16, Bf16 }

/// <summary>--lifetime: when a step's buffers are made and freed.</summary>
public enum LifetimeKind { Planned, Eager }
