using ILGPU;
using ILGPU.Algorithms;

namespace ScratchNet.Kernels;

/// <summary>
/// MaxPool2d with an s x s window and stride s (PyTorch's default stride = kernel size), no padding:
/// <code>
/// OH = floor(H / s)   OW = floor(W / s)          (a last row or column that does not fill a window is dropped)
/// y[b, c, oy, ox]       = max over the window of x[b, c, oy s + dy, ox s + dx]
/// indices[b, c, oy, ox] = iy W + ix of that maximum inside its plane (int32), the first one on ties,
///                         and a NaN counts as the maximum, as in PyTorch
/// backward: dx[b, c, iy, ix] = dy[b, c, iy / s, ix / s] if (iy, ix) is the kept index of its window, else 0
/// </code>
/// Windows do not overlap, so backward lets every input element look up its own window (a gather):
/// each dx element is written once, zeros included, without atomics.
/// </summary>
public static class PoolKernels
{
    public static void MaxPoolForward(
        ArrayView<float> x,        // x: (B, C, H, W)
        ArrayView<float> y,        // y: (B, C, OH, OW), written
        ArrayView<int> indices,    // indices: (B, C, OH, OW), written: where each maximum was, iy W + ix
        int planes, int h, int w, int size)   // planes: B C; size: s
    {
        int stride = Grid.DimX * Group.DimX;
        int oh = h / size, ow = w / size;
        for (int idx = Grid.GlobalIndex.X; idx < planes * oh * ow; idx += stride)
        {
            int ox = idx % ow, oy = idx / ow % oh, plane = idx / (ow * oh);
            int start = plane * h * w;
            int best = oy * size * w + ox * size;
            float max = x[start + best];
            for (int dy = 0; dy < size; dy++)
                for (int dx = 0; dx < size; dx++)
                {
                    int i = (oy * size + dy) * w + ox * size + dx;
                    float v = x[start + i];
                    if (v > max || (XMath.IsNaN(v) && !XMath.IsNaN(max))) { max = v; best = i; }
                }
            y[idx] = max;
            indices[idx] = best;
        }
    }

    /// <summary>
    /// The backward above; with relu = 1 also the backward of the ReLU right before the pool, in the same pass (float32;
    /// see Training's Relu): x is the pool's input, which is that ReLU's output, and a window's gradient passes only
    /// where its maximum is &gt; 0 (the ReLU's mask at the one place the pool sends a gradient to; everywhere else dx is
    /// 0 anyway):
    /// <code>
    /// dx[b, c, iy, ix] = dy[b, c, iy / s, ix / s] if (iy, ix) is the kept index of its window (and, with relu, x there &gt; 0), else 0
    /// </code>
    /// </summary>
    public static void MaxPoolBackward(
        ArrayView<float> dy,       // dy: (B, C, OH, OW)
        ArrayView<int> indices,    // indices: (B, C, OH, OW), from the forward pass
        ArrayView<float> x,        // x: (B, C, H, W), the pool's input; read only when relu = 1
        ArrayView<float> dx,       // dx: (B, C, H, W), written (every element)
        int planes, int h, int w, int size,
        int relu)                  // 1: and the mask of the ReLU before the pool
    {
        int stride = Grid.DimX * Group.DimX;
        int oh = h / size, ow = w / size;
        for (int idx = Grid.GlobalIndex.X; idx < planes * h * w; idx += stride)
        {
            int i = idx % (h * w), plane = idx / (h * w);
            int oy = i / w / size, ox = i % w / size;
            float g = 0f;
            if (oy < oh && ox < ow)
            {
                int o = (plane * oh + oy) * ow + ox;
                if (indices[o] == i && (relu == 0 || x[idx] > 0f)) g = dy[o];
            }
            dx[idx] = g;
        }
    }
}
