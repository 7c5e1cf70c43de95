namespace ScratchNet.Data;

/// <summary>
/// Picks random training images and lays them out in a grid, de-normalised back to pixel bytes
/// (so the grid shows exactly what the network is fed, undone), each scaled up by an integer factor.
/// Host only: returns raw pixel rows; the command writes the PNG.
/// </summary>
public sealed class SampleGrid
{
    public const int Padding = 2;

    public SampleGrid(Dataset data, int count, ulong seed, int scale)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count));
        var info = data.Info;
        Channels = info.Channels;
        Scale = scale;
        Columns = (int)Math.Ceiling(Math.Sqrt(count));
        Rows = (count + Columns - 1) / Columns;
        TileWidth = info.Width * scale;
        TileHeight = info.Height * scale;
        Width = Columns * TileWidth + (Columns + 1) * Padding;
        Height = Rows * TileHeight + (Rows + 1) * Padding;

        var order = Enumerable.Range(0, data.Count).ToArray();
        new Rng(seed).Shuffle(order);
        Indices = order.Take(Math.Min(count, data.Count)).ToArray();
        Labels = Indices.Select(i => info.ClassNames[data.Labels[i]]).ToArray();

        // Pixels: Height x Width x Channels bytes (interleaved RGB for colour), white background.
        Pixels = new byte[Height * Width * Channels];
        Array.Fill(Pixels, (byte)255);
        var normalizer = new Normalizer(info);
        var values = new float[info.ImageSize];
        var restored = new byte[info.ImageSize];
        for (int n = 0; n < Indices.Length; n++)
        {
            normalizer.Normalize(data.Image(Indices[n]), values);     // what training sees
            normalizer.Denormalize(values, restored);                 // back to bytes
            int x0 = Padding + n % Columns * (TileWidth + Padding);
            int y0 = Padding + n / Columns * (TileHeight + Padding);
            for (int y = 0; y < TileHeight; y++)
                for (int x = 0; x < TileWidth; x++)
                    for (int c = 0; c < Channels; c++)
                    {
                        byte v = restored[c * info.Height * info.Width + y / scale * info.Width + x / scale];
                        Pixels[((y0 + y) * Width + x0 + x) * Channels + c] = v;
                    }
        }
    }

    public int Channels { get; }
    public int Scale { get; }
    public int Columns { get; }
    public int Rows { get; }
    public int TileWidth { get; }
    public int TileHeight { get; }
    public int Width { get; }
    public int Height { get; }
    /// <summary>Dataset indices of the images, in grid order (left to right, top to bottom).</summary>
    public int[] Indices { get; }
    public string[] Labels { get; }
    /// <summary>Height x Width pixels, Channels bytes each (gray, or R G B).</summary>
    public byte[] Pixels { get; }

    /// <summary>The top-left pixel of tile n, for tests and captions.</summary>
    public (int X, int Y) TileOrigin(int n) => (Padding + n % Columns * (TileWidth + Padding), Padding + n / Columns * (TileHeight + Padding));
}
