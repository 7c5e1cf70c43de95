using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>An optimizer updates the model's flat parameter buffer from its flat gradient buffer.</summary>
public interface IOptimizer : IDisposable
{
    /// <summary>"adam", "sgd" or "momentum" (SGD with momentum).</summary>
    string Name { get; }
    /// <summary>Steps taken so far (Adam's t).</summary>
    long Steps { get; set; }
    void Step(IBackend backend, Model model);
    /// <summary>The state tensors (empty for plain SGD), for checkpoints.</summary>
    IReadOnlyList<Tensor<float>> State { get; }
}

/// <summary>torch.optim.Adam defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, with bias correction.</summary>
public sealed class Adam : IOptimizer
{
    readonly Tensor<float> _m, _v;

    public Adam(MemoryTracker tracker, Model model, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f)
    {
        (Lr, Beta1, Beta2, Eps) = (lr, beta1, beta2, eps);
        _m = tracker.Allocate<float>("adam.m", [(int)model.ParameterCount], MemoryCategory.OptimizerState);
        _v = tracker.Allocate<float>("adam.v", [(int)model.ParameterCount], MemoryCategory.OptimizerState);
    }

    public string Name => "adam";
    public float Lr { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Eps { get; }
    public long Steps { get; set; }
    public IReadOnlyList<Tensor<float>> State => [_m, _v];

    public void Step(IBackend backend, Model model)
    {
        Steps++;
        // One launch over all P parameters (flat buffers). The kernel takes the bias corrections folded into
        // two constants for this step t: stepSize = lr / (1 - beta1^t), invSqrtC2 = 1 / sqrt(1 - beta2^t);
        // see OptimizerKernels.Adam for the textbook form (m^, v^) and why this rearrangement is the same.
        var (stepSize, invSqrtC2) = OptimizerKernels.AdamStepConstants(Lr, Beta1, Beta2, Steps);
        backend.Adam(model.Parameters.View, model.Gradients.View, _m.View, _v.View, (int)model.ParameterCount,
            Beta1, Beta2, Eps, stepSize, invSqrtC2);
    }

    public void Dispose()
    {
        _m.Dispose();
        _v.Dispose();
    }
}

/// <summary>torch.optim.SGD: plain (momentum 0) or with a momentum buffer (momentum &gt; 0).</summary>
public sealed class Sgd : IOptimizer
{
    readonly Tensor<float>? _buf;

    public Sgd(MemoryTracker tracker, Model model, float lr, float momentum)
    {
        if (momentum < 0 || momentum >= 1) throw new ArgumentOutOfRangeException(nameof(momentum), "momentum must be in [0, 1)");
        Lr = lr;
        Momentum = momentum;
        if (momentum > 0)
            _buf = tracker.Allocate<float>("sgd.momentum", [(int)model.ParameterCount], MemoryCategory.OptimizerState);
    }

    public string Name => Momentum > 0 ? "momentum" : "sgd";
    public float Lr { get; }
    public float Momentum { get; }
    public long Steps { get; set; }
    public IReadOnlyList<Tensor<float>> State => _buf is null ? [] : [_buf];

    public void Step(IBackend backend, Model model)
    {
        Steps++;
        if (_buf is null)
            backend.Sgd(model.Parameters.View, model.Gradients.View, (int)model.ParameterCount, Lr);
        else
            backend.SgdMomentum(model.Parameters.View, model.Gradients.View, _buf.View, (int)model.ParameterCount, Lr, Momentum);
    }

    public void Dispose() => _buf?.Dispose();
}
