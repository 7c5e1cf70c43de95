using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>The options shared by train and memory: dataset, model, optimizer, batch, device.</summary>
public static class ConfigOptions
{
    /// <summary>The options, in the order --help lists them.</summary>
    public static readonly OptionSpec[] Specs =
    [
        new("--dataset", "NAME", "fashion-mnist (default), mnist or cifar10"),
        new("--data", "DIR", "folder with the dataset's files (default: ./data/NAME, then the Debian\npackage's folder for fashion-mnist, then the embedded subset)"),
        new("--model", "NAME", "mlp (default: the lesson's Flatten, Linear, ReLU, Linear) or cnn (conv 3x3 32, ReLU,\nmax-pool 2, conv 3x3 64, ReLU, max-pool 2, Flatten, Linear 128, ReLU, Linear)"),
        new("--hidden", "LIST", "the MLP's hidden layer sizes, comma-separated (default 128; \"none\" for no hidden layer)"),
        new("--layers", "LAYERS", "any stack instead of --model. " + ModelSpec.Grammar),
        new("--conv", "VERSION", "how convolutions run: im2col (the default in fp32: unfold the patches into a\nWorkspace buffer, then matmul) or direct (each output from its input window, no\nworkspace; the default with --precision fp16 or bf16, which have no 16-bit im2col)"),
        new("--optimizer", "NAME", "adam (default), sgd, or momentum (SGD with momentum 0.9)"),
        new("--lr", "X", "learning rate (default: 0.001 for adam, 0.01 for sgd)"),
        new("--momentum", "X", "SGD momentum in [0, 1) (default 0; 0.9 for --optimizer momentum)"),
        new("--batch-size", "N", "images per step (default 64)"),
        new("--accumulate", "N", "gradient accumulation: run each batch as N micro-batches and sum their gradients\nbefore one optimizer step (the same update; the device holds one micro-batch,\n--batch-size / N rows rounded up; default 1)"),
        new("--epochs", "N", "passes over the training set (default 1)"),
        new("--seed", "N", "seed for initialisation and shuffling (default 42)"),
        new("--device", "NAME", ComputeDevice.ChoiceHelp),
        new("--matmul", "VERSION", "the ILGPU matmul kernel: auto, naive, blocked, tiled or vector (default: auto on GPUs and\nOpenCL: each is timed on the model's shapes and the fastest used; blocked on the\nCPU accelerator); the host backend has its own: host-simd (256-bit vectors) and,\non CPUs with AVX-512, host-avx512 (512-bit, the default there; the forward's dot\nproducts sum 16 lanes, so last bits may differ)"),
        new("--memory-limit", "SIZE", "make the device behave like a card of SIZE (e.g. 8MiB, 6.4MiB, 4GiB, 1TiB)"),
        new("--max-buffer", "SIZE", "and like one whose largest single buffer is SIZE (OpenCL devices advertise\ntheirs, CL_DEVICE_MAX_MEM_ALLOC_SIZE, and it is enforced anyway)"),
        new("--allocator", "NAME", "exact (default: each tensor its own device buffer of exactly its size) or caching\n(PyTorch's caching allocator: 512 B blocks in 2 MiB and 20 MiB segments, kept for reuse)"),
        new("--lifetime", "MODE", "planned (default: every buffer made once and reused by every step) or eager (as under\nPyTorch's autograd: activations freed as backward consumes them, gradients made in\nbackward and freed after the optimizer step, temporaries per operation)"),
        new("--recompute", null, "activation checkpointing: keep only each block's input (a block: a conv or linear\nlayer with the ReLU and max-pool after it), share the rest between blocks and run the\nblock's forward again in backward (the same weights, one more forward pass)"),
        new("--precision", "P", "fp32 (default), fp16 or bf16: mixed precision as Apex O2 does it: float32 master\nweights, weight gradients and optimizer state; a 16-bit weight copy, and the batch,\nlayer outputs and gradients between layers in 16 bits; fp16 with dynamic loss scaling\n(every layer: Linear, Conv2d with --conv direct, MaxPool2d, ReLU, Flatten)"),
        new("--dataset-on-device", null, "keep the dataset on the device as bytes; gather and normalise batches there\n(its bytes then show in the Input category)"),
    ];

    public static TrainConfig Parse(Options o)
    {
        string dataset = o.Choice("--dataset", "fashion-mnist", DatasetInfo.All.Select(d => d.Name).ToArray());
        string optimizer = o.Choice("--optimizer", "adam", TrainConfig.OptimizerChoices);
        float? momentum = o.Float("--momentum", positiveOnly: false, maxExclusive: 1f);
        if (momentum is > 0 && optimizer == "adam")
            throw new UsageException("--momentum applies to SGD; use --optimizer sgd or momentum (Adam has its own betas)");
        string device = o.Choice("--device", "auto", ComputeDevice.Choices);
        string? matmul = o.String("--matmul");
        MatmulVersion? version = null;
        bool auto = matmul?.Trim().ToLowerInvariant() == "auto";
        if (matmul is not null && !auto)
        {
            string wanted = matmul.Trim().ToLowerInvariant();
            MatmulVersion[] all = [.. MatmulVersions.Kernels, .. MatmulVersions.Host];
            if (!all.Any(k => MatmulVersions.OptionName(k) == wanted))
                throw new UsageException($"--matmul: unknown version '{matmul}'; choose one of: auto, {string.Join(", ", all.Select(MatmulVersions.OptionName))}");
            MatmulVersion v = all.First(k => MatmulVersions.OptionName(k) == wanted);
            bool hostVersion = MatmulVersions.Host.Contains(v);
            if (device == "host" && !hostVersion)
                throw new UsageException($"--matmul {matmul}: the host backend has its own matmuls (host-simd, host-avx512); naive, blocked, tiled and vector are the ILGPU kernels of --device cpu, opencl and cuda");
            if (hostVersion && device is "cpu" or "opencl" or "cuda")
                throw new UsageException($"--matmul {matmul}: a matmul of the host backend; add --device host (naive, blocked, tiled and vector are the ILGPU kernels of --device {device})");
            if (v == MatmulVersion.HostAvx512 && !HostBackend.Avx512)
                throw new UsageException($"--matmul {matmul}: this CPU has no AVX-512; use host-simd");
            version = v;
        }
        string? dataDir = o.String("--data");
        string model = o.Choice("--model", "mlp", ["mlp", "cnn"]);
        string? layers = o.String("--layers");
        if (layers is not null && o.Has("--model")) throw new UsageException("--layers and --model: give one of them (--layers is the whole stack)");
        if (o.Has("--hidden") && (layers is not null || model != "mlp"))
            throw new UsageException($"--hidden sets the MLP's hidden sizes; with {(layers is not null ? "--layers" : "--model cnn")} write the stack with --layers instead");
        var precision = Enum.Parse<Precision>(o.Choice("--precision", "fp32", ["fp32", "fp16", "bf16"]), ignoreCase: true);
        // 16-bit convolutions run direct (there is no 16-bit im2col), so that is their default.
        ConvVersion conv = o.Choice("--conv", precision == Precision.Fp32 ? "im2col" : "direct", ["im2col", "direct"]) == "direct" ? ConvVersion.Direct : ConvVersion.Im2col;
        var config = new TrainConfig
        {
            Dataset = dataset,
            DataDir = dataDir,
            Model = model,
            Layers = layers?.Trim(),
            Conv = conv,
            Hidden = o.IntList("--hidden", [128], allowEmpty: true),
            Optimizer = optimizer,
            LearningRate = o.Float("--lr", positiveOnly: true),
            Momentum = momentum,
            BatchSize = o.Int("--batch-size", 64, 1),
            Accumulate = o.Int("--accumulate", 1, 1),
            Epochs = o.Int("--epochs", 1, 1),
            Seed = o.ULong("--seed", 42),
            Device = device,
            Matmul = version,
            MatmulAuto = auto,
            MemoryLimit = o.Size("--memory-limit"),
            MaxBuffer = o.Size("--max-buffer"),
            DatasetOnDevice = o.Flag("--dataset-on-device"),
            Recompute = o.Flag("--recompute"),
            Lifetime = o.Choice("--lifetime", "planned", ["planned", "eager"]) == "eager" ? LifetimeKind.Eager : LifetimeKind.Planned,
            Allocator = o.Choice("--allocator", "exact", ["exact", "caching"]) == "caching" ? AllocatorKind.Caching : AllocatorKind.Exact,
            Precision = precision,
        };
        if (config.Recompute && config.Lifetime == LifetimeKind.Eager)
            throw new UsageException("--recompute shares buffers between blocks, which needs --lifetime planned (eager lifetimes free each block's buffers as backward consumes them)");
        if (config.Accumulate > config.BatchSize)
            throw new UsageException($"--accumulate {config.Accumulate}: more micro-batches than the {config.BatchSize} rows of --batch-size");
        // A stack that does not fit the dataset's images is refused now, before anything is loaded or allocated.
        DatasetInfo info = DatasetInfo.Get(dataset);
        try
        {
            config.Network(info).Layers.ToString();
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"{(layers is not null ? "--layers" : "--model " + model)} on {info.Name} [{info.Channels}, {info.Height}, {info.Width}]: {e.Message}");
        }
        if (config.PrecisionRefusal(config.Network(info)) is { } refusal) throw new UsageException(refusal);
        if (config.Precision != Precision.Fp32 && matmul is not null)
            throw new UsageException($"--matmul {matmul}: it picks a float32 matmul; --precision {config.Precision.ToString().ToLowerInvariant()} has one 16-bit matmul of its own (float32 sums)");
        return config;
    }
}
