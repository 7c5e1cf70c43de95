using ILGPU;

namespace ScratchNet.Kernels;

/// <summary>
/// For --dataset-on-device: the whole dataset lives on the device as its original bytes (1 byte per pixel),
/// and each step gathers its batch and normalises it there, so only B indices cross to the device per step.
/// Letters as in docs/glossary.md: B = rows in the batch, K = C * H * W values per image, HW = H * W (one channel's plane).
/// </summary>
public static class DataKernels
{
    /// <summary>
    /// x[b, k] = pixels[indices[b] * K + k] * scaleShift[c] + scaleShift[C + c], with c = k / HW the channel
    /// (scale = 1 / (255 std), shift = -mean / std: torchvision's ToTensor + Normalize); y[b] = labels[indices[b]].
    /// </summary>
    public static void GatherNormalize(
        ArrayView<byte> pixels,       // pixels: (N, K) the dataset's images as bytes
        ArrayView<byte> labels,       // labels: (N) the dataset's labels
        ArrayView<int> indices,       // indices: (B) which images form this batch
        ArrayView<float> scaleShift,  // scaleShift: (2 C) per-channel scale, then per-channel shift
        ArrayView<float> x,           // x: (B, K) written: the normalised batch
        ArrayView<int> y,             // y: (B) written: the batch's labels
        int rows, int k, int planeSize, int channels)
    {
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < rows * k; i += stride)
        {
            int b = i / k, j = i % k;
            int c = j / planeSize;
            int image = indices[b];
            x[i] = pixels[(long)image * k + j] * scaleShift[c] + scaleShift[channels + c];
            if (j == 0) y[b] = labels[image];
        }
    }
}
