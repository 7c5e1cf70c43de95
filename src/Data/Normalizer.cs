using System.Runtime.Intrinsics;

namespace ScratchNet.Data;

/// <summary>
/// torchvision's ToTensor + Normalize in one step: a pixel byte p of channel c becomes
/// <c>(p / 255 - mean[c]) / std[c]</c>. Images are C x H x W, so channel c is the c-th block of H*W values.
/// </summary>
public sealed class Normalizer
{
    readonly float[] _scale;   // per channel: 1 / (255 * std)
    readonly float[] _shift;   // per channel: -mean / std
    readonly int _planeSize;   // H * W

    public Normalizer(DatasetInfo info)
    {
        _planeSize = info.Height * info.Width;
        _scale = new float[info.Channels];
        _shift = new float[info.Channels];
        for (int c = 0; c < info.Channels; c++)
        {
            _scale[c] = 1f / (255f * info.Std[c]);
            _shift[c] = -info.Mean[c] / info.Std[c];
        }
    }

    /// <summary>The constants as one array: per-channel scale, then per-channel shift (what the gather kernel takes).</summary>
    public float[] ScaleShift() => [.. _scale, .. _shift];

    /// <summary>
    /// Normalises one image's bytes into dest (same length): dst = p * scale + shift, a multiply then an add (two
    /// roundings, as the gather kernel does), 32 pixels at a time where the CPU has 256-bit vectors: the bytes widened
    /// to 16 and then 32 bits, converted to float (exact: p &lt;= 255). It runs for every image of every batch, on
    /// the training thread between steps.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void Normalize(ReadOnlySpan<byte> image, Span<float> dest)
    {
        for (int c = 0; c < _scale.Length; c++)
        {
            float scale = _scale[c], shift = _shift[c];
            var src = image.Slice(c * _planeSize, _planeSize);
            var dst = dest.Slice(c * _planeSize, _planeSize);
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var vscale = Vector256.Create(scale);
                var vshift = Vector256.Create(shift);
                for (; i + 32 <= src.Length; i += 32)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Create(src.Slice(i, 32)));        // 32 bytes -> 2 x 16 ushort
                    var (a, b) = Vector256.Widen(lo);                                           // -> 4 x 8 uint
                    var (e, f) = Vector256.Widen(hi);
                    (Vector256.ConvertToSingle(a) * vscale + vshift).CopyTo(dst.Slice(i));
                    (Vector256.ConvertToSingle(b) * vscale + vshift).CopyTo(dst.Slice(i + 8));
                    (Vector256.ConvertToSingle(e) * vscale + vshift).CopyTo(dst.Slice(i + 16));
                    (Vector256.ConvertToSingle(f) * vscale + vshift).CopyTo(dst.Slice(i + 24));
                }
            }
            for (; i < src.Length; i++)
                dst[i] = src[i] * scale + shift;
        }
    }

    /// <summary>The inverse, back to bytes (rounded and clamped): what a sample grid shows.</summary>
    public void Denormalize(ReadOnlySpan<float> values, Span<byte> dest)
    {
        for (int c = 0; c < _scale.Length; c++)
        {
            float scale = _scale[c], shift = _shift[c];
            for (int i = c * _planeSize; i < (c + 1) * _planeSize; i++)
                dest[i] = (byte)Math.Clamp(MathF.Round((values[i] - shift) / scale), 0f, 255f);
        }
    }
}
