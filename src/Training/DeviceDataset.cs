using ScratchNet.Data;
using ScratchNet.Kernels;
using ScratchNet.Tensor;

namespace ScratchNet.Training;

/// <summary>
/// --dataset-on-device: both splits copied to the device once, as bytes (1 byte per pixel, Input category),
/// so each batch is gathered and normalised there from B indices instead of being uploaded as floats.
/// <code>
/// name                      shape          category
/// dataset.train.pixels      [N_train, K]   Input       bytes, K = C x H x W
/// dataset.train.labels      [N_train]      Input       bytes
/// dataset.test.pixels       [N_test, K]    Input
/// dataset.test.labels       [N_test]       Input
/// input.indices             [B]            Input       int32: which images make this batch
/// input.scale_shift         [2 x C]        Input       per channel: 1 / (255 std), -mean / std
/// </code>
/// </summary>
public sealed class DeviceDataset : IDisposable
{
    readonly Tensor<byte> _trainPixels, _trainLabels, _testPixels, _testLabels;
    readonly Tensor<int> _indices;
    readonly Tensor<float> _scaleShift;
    readonly int _planeSize, _channels;

    DeviceDataset(Tensor<byte> trainPixels, Tensor<byte> trainLabels, Tensor<byte> testPixels, Tensor<byte> testLabels,
        Tensor<int> indices, Tensor<float> scaleShift, DatasetInfo info, DatasetOnDevice sizes)
    {
        (_trainPixels, _trainLabels, _testPixels, _testLabels, _indices, _scaleShift) = (trainPixels, trainLabels, testPixels, testLabels, indices, scaleShift);
        _planeSize = info.Height * info.Width;
        _channels = info.Channels;
        Sizes = sizes;
    }

    /// <summary>The sizes the estimator needs (image counts and channels).</summary>
    public DatasetOnDevice Sizes { get; }

    /// <summary>Allocates the table above through the tracker and copies both splits in. On out-of-memory nothing stays allocated.</summary>
    public static DeviceDataset Place(MemoryTracker tracker, DatasetPair data, int batchSize)
    {
        var info = data.Train.Info;
        var made = new List<IDisposable>();
        Tensor<T> Make<T>(string name, int[] shape) where T : unmanaged
        {
            var t = tracker.Allocate<T>(name, shape, MemoryCategory.Input);
            made.Add(t);
            return t;
        }
        try
        {
            var dataset = new DeviceDataset(
                Make<byte>("dataset.train.pixels", [data.Train.Count, info.ImageSize]),
                Make<byte>("dataset.train.labels", [data.Train.Count]),
                Make<byte>("dataset.test.pixels", [data.Test.Count, info.ImageSize]),
                Make<byte>("dataset.test.labels", [data.Test.Count]),
                Make<int>("input.indices", [batchSize]),
                Make<float>("input.scale_shift", [2 * info.Channels]),
                info, DatasetOnDevice.Of(data));
            dataset._trainPixels.CopyFrom(data.Train.Pixels);
            dataset._trainLabels.CopyFrom(data.Train.Labels);
            dataset._testPixels.CopyFrom(data.Test.Pixels);
            dataset._testLabels.CopyFrom(data.Test.Labels);
            dataset._scaleShift.CopyFrom(new Normalizer(info).ScaleShift());
            return dataset;
        }
        catch
        {
            foreach (var t in made) t.Dispose();
            throw;
        }
    }

    /// <summary>Builds a batch on the device: images (B, K) and labels (B) at `indices` of the train (or test) split, normalised.</summary>
    public void Gather(IBackend backend, bool test, ReadOnlySpan<int> indices, int rows, Tensor<float> images, Tensor<int> labels, int k)
    {
        _indices.CopyFrom(indices[..rows]);
        backend.GatherNormalize((test ? _testPixels : _trainPixels).View, (test ? _testLabels : _trainLabels).View, _indices.View,
            _scaleShift.View, images.View, labels.View, rows, k, _planeSize, _channels);
    }

    public void Dispose()
    {
        _trainPixels.Dispose();
        _trainLabels.Dispose();
        _testPixels.Dispose();
        _testLabels.Dispose();
        _indices.Dispose();
        _scaleShift.Dispose();
    }
}
