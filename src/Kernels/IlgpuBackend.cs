using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace ScratchNet.Kernels;

/// <summary>
/// All kernels of ScratchNet, compiled once per accelerator and cached (loading a kernel per call
/// recompiles it: a known 1000x slowdown), with the launch geometry chosen per accelerator kind.
///
/// Geometry: every kernel is a grid-stride loop, so the launch only decides how many threads share the
/// work. On the CPU accelerator each ILGPU thread is an OS thread, so we launch exactly as many as the
/// device has (a few); on a GPU we launch 256-thread groups, up to enough to fill every multiprocessor.
/// </summary>
public sealed class IlgpuBackend : IBackend
{
    static readonly ConditionalWeakTable<Accelerator, IlgpuBackend> Cache = new();

    /// <summary>The kernels for an accelerator, compiled on first use.</summary>
    public static IlgpuBackend For(Accelerator accelerator)
    {
        lock (Cache) return Cache.GetValue(accelerator, a => new IlgpuBackend(a));
    }

    readonly Accelerator _acc;
    readonly bool _isCpu;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int, int, int> _matmulNaive, _matmulBlocked, _matmulTiled, _matmulVector;
    readonly Action<KernelConfig, ArrayView<float>, int> _relu;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int> _convForward, _convBackwardInput;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int, int> _convBackwardWeight;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ConvShape> _im2col, _col2im;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, int> _channelBias;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, int> _channelBiasBackward;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int> _maxPoolForward;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int, int> _maxPoolBackward;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _biasActivation;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> _reluBackward;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _biasBackward;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int> _softmaxCrossEntropy;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, int> _argmax;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float, float, float, float> _adam;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, float> _sgd;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float> _sgdMomentum;
    readonly Action<KernelConfig, ArrayView<byte>, ArrayView<byte>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int> _gatherNormalize;

    readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, int, int> _toHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, int, int, int, int, int, int, int, int> _matmulHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, int, int, int, int, int, int, int, int, int> _matmulHalfToFloat;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, int, int, int, int> _biasActivationHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, int, int> _reluHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, int, int> _reluBackwardHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<float>, int, int, int, int> _biasBackwardHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, ArrayView<ushort>, int, int, int, float, int> _softmaxCrossEntropyHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<int>, int, int, int> _argmaxHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ConvShape, int, int> _convForwardHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ConvShape, int, int> _convBackwardInputHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ConvShape, int, int, int> _convBackwardWeightHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<float>, int, int, int, int, int> _channelBiasBackwardHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<int>, int, int, int, int, int> _maxPoolForwardHalf;
    readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, int, int, int, int> _maxPoolBackwardHalf;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, float> _unscale;

    readonly bool _isOpenCLCpu;   // PoCL or another OpenCL runtime on a CPU

    IlgpuBackend(Accelerator accelerator)
    {
        _acc = accelerator;
        _isCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        _isOpenCLCpu = accelerator is ILGPU.Runtime.OpenCL.CLAccelerator cl && cl.DeviceType == ILGPU.Runtime.OpenCL.CLDeviceType.CL_DEVICE_TYPE_CPU;
        _matmulNaive = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int, int, int>(MatmulKernels.Naive);
        _matmulBlocked = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int, int, int>(MatmulKernels.Blocked);
        _matmulTiled = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int, int, int>(MatmulKernels.Tiled);
        _matmulVector = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int, int, int>(MatmulKernels.Vector);
        _relu = _acc.LoadStreamKernel<ArrayView<float>, int>(LayerKernels.Relu);
        _convForward = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int>(ConvKernels.DirectForward);
        _convBackwardInput = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int>(ConvKernels.DirectBackwardInput);
        _convBackwardWeight = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int, int>(ConvKernels.DirectBackwardWeight);
        _im2col = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ConvShape>(ConvKernels.Im2col);
        _col2im = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ConvShape>(ConvKernels.Col2im);
        _channelBias = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, int>(ConvKernels.ChannelBias);
        _channelBiasBackward = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, int>(ConvKernels.ChannelBiasBackward);
        _maxPoolForward = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int>(PoolKernels.MaxPoolForward);
        _maxPoolBackward = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int, int>(PoolKernels.MaxPoolBackward);
        _biasActivation = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int>(LayerKernels.BiasActivation);
        _reluBackward = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(LayerKernels.ReluBackward);
        _biasBackward = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int>(LayerKernels.BiasBackward);
        _softmaxCrossEntropy = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int>(LossKernels.SoftmaxCrossEntropy);
        _argmax = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, int>(LossKernels.Argmax);
        _adam = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float, float, float, float>(OptimizerKernels.Adam);
        _sgd = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, float>(OptimizerKernels.Sgd);
        _sgdMomentum = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float>(OptimizerKernels.SgdMomentum);
        _gatherNormalize = _acc.LoadStreamKernel<ArrayView<byte>, ArrayView<byte>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int>(DataKernels.GatherNormalize);
        _toHalf = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, int, int>(HalfKernels.Convert);
        _matmulHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, int, int, int, int, int, int, int, int>(HalfKernels.MatmulToHalf);
        _matmulHalfToFloat = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, int, int, int, int, int, int, int, int, int>(HalfKernels.MatmulToFloat);
        _biasActivationHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, int, int, int, int>(HalfKernels.BiasActivation);
        _reluHalf = _acc.LoadStreamKernel<ArrayView<ushort>, int, int>(HalfKernels.Relu);
        _reluBackwardHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, int, int>(HalfKernels.ReluBackward);
        _biasBackwardHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<float>, int, int, int, int>(HalfKernels.BiasBackward);
        _softmaxCrossEntropyHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<int>, ArrayView<float>, ArrayView<ushort>, int, int, int, float, int>(HalfKernels.SoftmaxCrossEntropy);
        _argmaxHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<int>, int, int, int>(HalfKernels.Argmax);
        _unscale = _acc.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, float>(HalfKernels.Unscale);
        _convForwardHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ConvShape, int, int>(HalfConvKernels.ConvForward);
        _convBackwardInputHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ConvShape, int, int>(HalfConvKernels.ConvBackwardInput);
        _convBackwardWeightHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ConvShape, int, int, int>(HalfConvKernels.ConvBackwardWeight);
        _channelBiasBackwardHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<float>, int, int, int, int, int>(HalfConvKernels.ChannelBiasBackward);
        _maxPoolForwardHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<int>, int, int, int, int, int>(HalfConvKernels.MaxPoolForward);
        _maxPoolBackwardHalf = _acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<int>, ArrayView<ushort>, int, int, int, int>(HalfConvKernels.MaxPoolBackward);
        // The tiled matmul's barriers need a whole 16x16 tile in one group; the CPU accelerator's groups are smaller.
        MatmulVersions = _acc.MaxNumThreadsPerGroup >= TiledGroupSize
            ? [MatmulVersion.Naive, MatmulVersion.Blocked, MatmulVersion.Tiled, MatmulVersion.Vector]
            : [MatmulVersion.Naive, MatmulVersion.Blocked, MatmulVersion.Vector];
        DefaultMatmul = _isCpu ? MatmulVersion.Blocked : MatmulVersion.Tiled;
    }

    const int TiledGroupSize = MatmulKernels.Tile * MatmulKernels.Tile;

    public IReadOnlyList<MatmulVersion> MatmulVersions { get; }

    public Accelerator Accelerator => _acc;

    /// <summary>The version used when none is forced: Blocked on the CPU accelerator, Tiled on GPUs.</summary>
    public MatmulVersion DefaultMatmul { get; }

    /// <summary>Launch geometry for a grid-stride kernel over `work` independent items.</summary>
    public KernelConfig Geometry(long work)
    {
        if (_isCpu)
            return new KernelConfig(_acc.NumMultiprocessors, _acc.MaxNumThreadsPerGroup);
        const int group = 256;
        long groups = Math.Clamp((work + group - 1) / group, 1, (long)_acc.NumMultiprocessors * (_acc.MaxNumThreadsPerMultiprocessor / group));
        return new KernelConfig((int)groups, group);
    }

    /// <summary>
    /// c (M, N) = a (M, K) · b (K, N), a and b read through strides (see <see cref="MatmulKernels"/>).
    /// </summary>
    public void Matmul(MatmulVersion version,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        int m, int n, int k, int aRow, int aCol, int bRow, int bCol, bool accumulate = false)
    {
        int acc = accumulate ? 1 : 0;
        switch (version)
        {
            case MatmulVersion.Naive:
                _matmulNaive(Geometry((long)m * n), a, b, c, m, n, k, aRow, aCol, bRow, bCol, acc);
                break;
            case MatmulVersion.Blocked:
                _matmulBlocked(Geometry((long)((m + 3) / 4) * ((n + 3) / 4)), a, b, c, m, n, k, aRow, aCol, bRow, bCol, acc);
                break;
            case MatmulVersion.Vector:
                long tiles8 = (long)((m + 7) / 8) * ((n + 7) / 8);
                // On an OpenCL CPU device (PoCL) a group runs on one core: small groups spread the few 8x8 tiles of a
                // batch-64 product over every core (groups of 256 made 7 groups for 2 cores, and half the speed).
                var config = _isOpenCLCpu ? new KernelConfig((int)Math.Clamp((tiles8 + 15) / 16, 1, int.MaxValue), 16) : Geometry(tiles8);
                _matmulVector(config, a, b, c, m, n, k, aRow, aCol, bRow, bCol, acc);
                break;
            case MatmulVersion.Tiled when MatmulVersions.Contains(MatmulVersion.Tiled):
                long tiles = (long)((m + MatmulKernels.Tile - 1) / MatmulKernels.Tile) * ((n + MatmulKernels.Tile - 1) / MatmulKernels.Tile);
                int grid = (int)Math.Clamp(tiles, 1, (long)_acc.NumMultiprocessors * Math.Max(1, _acc.MaxNumThreadsPerMultiprocessor / TiledGroupSize));
                _matmulTiled(new KernelConfig(grid, TiledGroupSize), a, b, c, m, n, k, aRow, aCol, bRow, bCol, acc);
                break;
            case MatmulVersion.Tiled:
                throw new NotSupportedException(
                    $"the tiled matmul needs groups of {TiledGroupSize} threads; {_acc.Name} allows {_acc.MaxNumThreadsPerGroup} (use --matmul blocked)");
            default:
                throw new NotSupportedException($"'{Kernels.MatmulVersions.Label(version)}' is not an ILGPU matmul kernel");
        }
    }

    /// <summary>y (B, N) = relu?(y + bias), in place.</summary>
    public void BiasActivation(ArrayView<float> y, ArrayView<float> bias, int rows, int n, bool relu) =>
        _biasActivation(Geometry((long)rows * n), y, bias, rows, n, relu ? 1 : 0);

    public void Relu(ArrayView<float> y, int count) => _relu(Geometry(count), y, count);

    public void ConvDirectForward(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ConvShape s, int rows) =>
        _convForward(Geometry((long)rows * s.F * s.OutH * s.OutW), x, weight, y, s, rows);

    public void ConvDirectBackwardInput(ArrayView<float> dy, ArrayView<float> weight, ArrayView<float> dx, ConvShape s, int rows) =>
        _convBackwardInput(Geometry((long)rows * s.C * s.H * s.W), dy, weight, dx, s, rows);

    public void ConvDirectBackwardWeight(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dweight, ConvShape s, int rows, bool accumulate = false) =>
        _convBackwardWeight(Geometry((long)s.F * s.ColRows), dy, x, dweight, s, rows, accumulate ? 1 : 0);

    public void Im2col(ArrayView<float> image, ArrayView<float> cols, ConvShape s) =>
        _im2col(Geometry((long)s.ColRows * s.ColCols), image, cols, s);

    public void Col2im(ArrayView<float> dcols, ArrayView<float> dimage, ConvShape s) =>
        _col2im(Geometry((long)s.C * s.H * s.W), dcols, dimage, s);

    public void ChannelBias(ArrayView<float> y, ArrayView<float> bias, int rows, int channels, int plane, bool relu = false) =>
        _channelBias(Geometry((long)rows * channels * plane), y, bias, rows, channels, plane, relu ? 1 : 0);

    public void ChannelBiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int channels, int plane, bool accumulate = false) =>
        _channelBiasBackward(Geometry(channels), dy, dbias, rows, channels, plane, accumulate ? 1 : 0);

    public void MaxPoolForward(ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices, int planes, int h, int w, int size) =>
        _maxPoolForward(Geometry((long)planes * (h / size) * (w / size)), x, y, indices, planes, h, w, size);

    public void MaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx, int planes, int h, int w, int size) =>
        _maxPoolBackward(Geometry((long)planes * h * w), dy, indices, dy, dx, planes, h, w, size, 0);   // x not read: dy stands in

    public void ReluMaxPoolBackward(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> x, ArrayView<float> dx, int planes, int h, int w, int size) =>
        _maxPoolBackward(Geometry((long)planes * h * w), dy, indices, x, dx, planes, h, w, size, 1);

    /// <summary>dy (B, N) *= (y > 0), in place.</summary>
    public void ReluBackward(ArrayView<float> dy, ArrayView<float> y, int count) =>
        _reluBackward(Geometry(count), dy, y, count);

    /// <summary>dbias (N) (+)= column sums of dy (B, N).</summary>
    public void BiasBackward(ArrayView<float> dy, ArrayView<float> dbias, int rows, int n, bool accumulate = false) =>
        _biasBackward(Geometry(n), dy, dbias, rows, n, accumulate ? 1 : 0);

    /// <summary>losses (B) and dlogits (B, C) from logits (B, C) and labels (B).</summary>
    public void SoftmaxCrossEntropy(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<float> dlogits, int rows, int classes, int meanRows) =>
        _softmaxCrossEntropy(Geometry(rows), logits, labels, losses, dlogits, rows, classes, meanRows);

    /// <summary>predictions (B) = argmax over each row of logits (B, C).</summary>
    public void Argmax(ArrayView<float> logits, ArrayView<int> predictions, int rows, int classes) =>
        _argmax(Geometry(rows), logits, predictions, rows, classes);

    public void Adam(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, int count,
        float beta1, float beta2, float eps, float stepSize, float invSqrtC2) =>
        _adam(Geometry(count), param, grad, m, v, count, beta1, beta2, eps, stepSize, invSqrtC2);

    public void Sgd(ArrayView<float> param, ArrayView<float> grad, int count, float lr) =>
        _sgd(Geometry(count), param, grad, count, lr);

    public void SgdMomentum(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> buf, int count, float lr, float momentum) =>
        _sgdMomentum(Geometry(count), param, grad, buf, count, lr, momentum);

    public void GatherNormalize(ArrayView<byte> pixels, ArrayView<byte> labels, ArrayView<int> indices, ArrayView<float> scaleShift,
        ArrayView<float> x, ArrayView<int> y, int rows, int k, int planeSize, int channels) =>
        _gatherNormalize(Geometry((long)rows * k), pixels, labels, indices, scaleShift, x, y, rows, k, planeSize, channels);

    public void ConvertToHalf(ArrayView<float> master, ArrayView<ushort> half, int count, HalfFormat format) =>
        _toHalf(Geometry(count), master, half, count, (int)format);

    public void MatmulHalf(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol, HalfFormat format) =>
        _matmulHalf(Geometry((long)m * n), a, b, c, m, n, k, aRow, aCol, bRow, bCol, (int)format);

    public void MatmulHalfToFloat(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> c, int m, int n, int k, int aRow, int aCol, int bRow, int bCol,
        HalfFormat format, bool accumulate = false) =>
        _matmulHalfToFloat(Geometry((long)m * n), a, b, c, m, n, k, aRow, aCol, bRow, bCol, (int)format, accumulate ? 1 : 0);

    public void BiasActivationHalf(ArrayView<ushort> y, ArrayView<ushort> bias, int rows, int n, bool relu, HalfFormat format) =>
        _biasActivationHalf(Geometry((long)rows * n), y, bias, rows, n, relu ? 1 : 0, (int)format);

    public void ReluHalf(ArrayView<ushort> y, int count, HalfFormat format) => _reluHalf(Geometry(count), y, count, (int)format);

    public void ReluBackwardHalf(ArrayView<ushort> dy, ArrayView<ushort> y, int count, HalfFormat format) =>
        _reluBackwardHalf(Geometry(count), dy, y, count, (int)format);

    public void BiasBackwardHalf(ArrayView<ushort> dy, ArrayView<float> dbias, int rows, int n, HalfFormat format, bool accumulate = false) =>
        _biasBackwardHalf(Geometry(n), dy, dbias, rows, n, accumulate ? 1 : 0, (int)format);

    public void SoftmaxCrossEntropyHalf(ArrayView<ushort> logits, ArrayView<int> labels, ArrayView<float> losses, ArrayView<ushort> dlogits,
        int rows, int classes, int meanRows, float scale, HalfFormat format) =>
        _softmaxCrossEntropyHalf(Geometry(rows), logits, labels, losses, dlogits, rows, classes, meanRows, scale, (int)format);

    public void ArgmaxHalf(ArrayView<ushort> logits, ArrayView<int> predictions, int rows, int classes, HalfFormat format) =>
        _argmaxHalf(Geometry(rows), logits, predictions, rows, classes, (int)format);

    public void ConvForwardHalf(ArrayView<ushort> x, ArrayView<ushort> weight, ArrayView<ushort> bias, ArrayView<ushort> y, ConvShape s, int rows, HalfFormat format) =>
        _convForwardHalf(Geometry((long)rows * s.F * s.ColCols), x, weight, bias, y, s, rows, (int)format);

    public void ConvBackwardInputHalf(ArrayView<ushort> dy, ArrayView<ushort> weight, ArrayView<ushort> dx, ConvShape s, int rows, HalfFormat format) =>
        _convBackwardInputHalf(Geometry((long)rows * s.C * s.H * s.W), dy, weight, dx, s, rows, (int)format);

    public void ConvBackwardWeightHalf(ArrayView<ushort> dy, ArrayView<ushort> x, ArrayView<float> dweight, ConvShape s, int rows, HalfFormat format, bool accumulate = false) =>
        _convBackwardWeightHalf(Geometry((long)s.F * s.ColRows), dy, x, dweight, s, rows, accumulate ? 1 : 0, (int)format);

    public void ChannelBiasBackwardHalf(ArrayView<ushort> dy, ArrayView<float> dbias, int rows, int channels, int plane, HalfFormat format, bool accumulate = false) =>
        _channelBiasBackwardHalf(Geometry(channels), dy, dbias, rows, channels, plane, accumulate ? 1 : 0, (int)format);

    public void MaxPoolForwardHalf(ArrayView<ushort> x, ArrayView<ushort> y, ArrayView<int> indices, int planes, int h, int w, int size, HalfFormat format) =>
        _maxPoolForwardHalf(Geometry((long)planes * (h / size) * (w / size)), x, y, indices, planes, h, w, size, (int)format);

    public void MaxPoolBackwardHalf(ArrayView<ushort> dy, ArrayView<int> indices, ArrayView<ushort> dx, int planes, int h, int w, int size) =>
        _maxPoolBackwardHalf(Geometry((long)planes * h * w), dy, indices, dx, planes, h, w, size);

    public void Unscale(ArrayView<float> grad, ArrayView<int> found, int count, float invScale) =>
        _unscale(Geometry(count), grad, found, count, invScale);

    public void Synchronize() => _acc.Synchronize();
}
