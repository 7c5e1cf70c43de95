using ILGPU;

namespace ScratchNet.Training;

/// <summary>
/// One Linear layer, y = x W^T + b, as PyTorch's nn.Linear: W is (Out, In) row-major, b is (Out).
/// The layer owns no memory: its weight, bias and their gradients are named views into the model's
/// flat parameter and gradient buffers (llm.c style), at <see cref="Offset"/>.
/// </summary>
public sealed class Linear
{
    public Linear(string name, int inFeatures, int outFeatures, long offset)
    {
        Name = name;
        In = inFeatures;
        Out = outFeatures;
        Offset = offset;
    }

    public string Name { get; }
    public int In { get; }
    public int Out { get; }
    /// <summary>Where this layer's weight starts in the flat buffers; its bias follows the weight.</summary>
    public long Offset { get; }
    public long WeightCount => (long)Out * In;
    public long ParameterCount => WeightCount + Out;

    public ArrayView<float> Weight(ArrayView<float> flat) => flat.SubView(Offset, WeightCount);
    public ArrayView<float> Bias(ArrayView<float> flat) => flat.SubView(Offset + WeightCount, Out);

    /// <summary>
    /// PyTorch's default initialisation (kaiming_uniform with a = sqrt(5) for the weight, which works out
    /// to U(-1/sqrt(In), 1/sqrt(In)), and the same bound for the bias), written into host memory.
    /// </summary>
    public void Initialize(Span<float> flatHost, Data.Rng rng)
    {
        float bound = 1f / MathF.Sqrt(In);
        var span = flatHost.Slice((int)Offset, (int)ParameterCount);
        for (int i = 0; i < span.Length; i++)
            span[i] = rng.Uniform(bound);
    }

    public override string ToString() => $"{Name}: Linear({In} -> {Out})";
}
