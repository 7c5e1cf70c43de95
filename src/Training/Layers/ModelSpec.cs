using System.Globalization;

namespace ScratchNet.Training;

/// <summary>
/// A layer stack as text, the way --layers takes it and checkpoints record it, and the layers it builds on an input.
/// <code>
/// stack  := layer ("," layer)*
/// layer  := "conv" k ["x" k] ":" F [":p" p]   k x k convolution to F channels, stride 1, padding p (default k / 2,
///                                              which keeps H x W for odd k)
///         | "maxpool" s                        s x s max pooling, stride s
///         | "relu" | "flatten"
///         | "linear:" N                        N outputs; the last layer must be linear:classes
/// </code>
/// --model mlp is "flatten,linear:128,relu,linear:10" (with --hidden's sizes); --model cnn is
/// "conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,linear:128,relu,linear:10".
/// </summary>
public sealed record ModelSpec(string Text)
{
    public const string Grammar =
        "LAYERS is a comma-separated stack: convKxK:F[:pP] (k x k conv to F channels, stride 1, padding P,\n" +
        "default k/2), maxpoolS (S x S window, stride S), relu, flatten, linear:N. The last layer must be\n" +
        "linear:CLASSES. Example: conv3x3:32,relu,maxpool2,flatten,linear:10";

    /// <summary>The lesson's MLP: Flatten, then Linear + ReLU per hidden size, then Linear to the classes.</summary>
    public static ModelSpec Mlp(IEnumerable<int> hidden, int classes) =>
        new(string.Join(",", new[] { "flatten" }.Concat(hidden.SelectMany(h => new[] { $"linear:{h}", "relu" })).Append($"linear:{classes}")));

    /// <summary>The issue's simple CNN: two conv 3x3 + ReLU + max-pool 2 blocks, then Linear 128, ReLU, Linear.</summary>
    public static ModelSpec Cnn(int classes) =>
        new($"conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,linear:128,relu,linear:{classes}");

    /// <summary>
    /// The layers on an input of this shape, each named by kind and number (conv1, pool1, fc1, relu1, flatten).
    /// Throws <see cref="ArgumentException"/> naming the layer and the shapes when the stack does not fit.
    /// </summary>
    public List<Layer> Build(FeatureShape input, int classes)
    {
        var layers = new List<Layer>();
        var counts = new Dictionary<string, int>();
        string Next(string kind) => $"{kind}{(counts[kind] = counts.GetValueOrDefault(kind) + 1)}";
        FeatureShape shape = input;
        string[] parts = Text.Split(',');
        for (int i = 0; i < parts.Length; i++)
        {
            string token = parts[i].Trim().ToLowerInvariant();
            string where = $"layer {i + 1} '{token}'";
            Layer layer;
            if (token == "relu")
            {
                layer = new Relu(Next("relu"), shape);
            }
            else if (token == "flatten")
            {
                if (shape.Flat) throw new ArgumentException($"{where}: its input {shape} is already flat");
                layer = new Flatten("flatten", shape);
            }
            else if (token.StartsWith("maxpool", StringComparison.Ordinal))
            {
                int s = Number(token["maxpool".Length..], where, "the window size, as in maxpool2");
                if (shape.Flat) throw new ArgumentException($"{where}: pooling needs an image (C, H, W), but its input is flat {shape}; put it before flatten");
                if (shape.H < s || shape.W < s)
                    throw new ArgumentException($"{where}: a {s}x{s} window does not fit its input {shape}: pooling it would leave nothing");
                layer = new MaxPool2d(Next("pool"), shape, s);
            }
            else if (token.StartsWith("conv", StringComparison.Ordinal))
            {
                var (k, f, p) = ParseConv(token, where);
                if (shape.Flat) throw new ArgumentException($"{where}: a convolution needs an image (C, H, W), but its input is flat {shape}; put it before flatten");
                if (shape.H + 2 * p < k || shape.W + 2 * p < k)
                    throw new ArgumentException($"{where}: a {k}x{k} kernel with padding {p} does not fit its input {shape}: the output would be empty");
                if (p >= k) throw new ArgumentException($"{where}: padding {p} must be smaller than the kernel size {k}");
                layer = new Conv2d(Next("conv"), shape, f, k, p);
            }
            else if (token.StartsWith("linear:", StringComparison.Ordinal))
            {
                int n = Number(token["linear:".Length..], where, "the number of outputs, as in linear:10");
                if (!shape.Flat) throw new ArgumentException($"{where}: Linear needs a flat input, but it gets {shape}; put flatten before it");
                layer = new Linear(Next("fc"), shape, n);
            }
            else
            {
                throw new ArgumentException($"{where}: unknown layer; {Grammar.Replace("\n", " ")}");
            }
            if (layer.Out.Size > int.MaxValue) throw new ArgumentException($"{where}: its output {layer.Out} has more values than one sample can hold");
            layers.Add(layer);
            shape = layer.Out;
        }
        if (!shape.Flat || shape.C != classes)
            throw new ArgumentException($"the stack ends with {shape}, but the dataset has {classes} classes: end it with linear:{classes}");
        if (layers.All(l => l.ParameterCount == 0)) throw new ArgumentException("the stack has no layer with parameters: nothing to train");
        Relu.Fuse(layers);
        return layers;
    }

    static int Number(string text, string where, string what)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > 1 << 20)
            throw new ArgumentException($"{where}: expected {what} (a whole number from 1 to {1 << 20:N0})");
        return n;
    }

    /// <summary>"conv3x3:32", "conv5:16", "conv5x5:16:p0" -> (k, F, p).</summary>
    static (int K, int F, int Pad) ParseConv(string token, string where)
    {
        const string form = "convKxK:F or convKxK:F:pP, as in conv3x3:32 or conv5x5:16:p0";
        string[] fields = token["conv".Length..].Split(':');
        if (fields.Length is < 2 or > 3) throw new ArgumentException($"{where}: expected {form}");
        string[] ks = fields[0].Split('x');
        if (ks.Length > 2) throw new ArgumentException($"{where}: expected {form}");
        int k = Number(ks[0], where, "the kernel size, as in conv3x3:32");
        if (ks.Length == 2 && Number(ks[1], where, "a square kernel, as in conv3x3:32") != k)
            throw new ArgumentException($"{where}: only square kernels (k x k) are supported");
        int f = Number(fields[1], where, "the number of output channels, as in conv3x3:32");
        int p = k / 2;
        if (fields.Length == 3)
        {
            if (!fields[2].StartsWith('p')) throw new ArgumentException($"{where}: expected {form}");
            p = fields[2] == "p0" ? 0 : Number(fields[2][1..], where, "the padding, as in :p1");
        }
        return (k, f, p);
    }

    public override string ToString() => Text;
}
