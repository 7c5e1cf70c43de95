namespace ScratchNet.Data;

/// <summary>
/// What we know about a dataset before reading a byte of it: image shape, class names, the
/// normalisation constants everyone uses (torchvision's), and the standard file names.
/// </summary>
public sealed record DatasetInfo(
    string Name,
    int Channels,
    int Height,
    int Width,
    string[] ClassNames,
    float[] Mean,
    float[] Std)
{
    /// <summary>Values per image: C * H * W (784 for 1x28x28, 3072 for 3x32x32).</summary>
    public int ImageSize => Channels * Height * Width;
    public int Classes => ClassNames.Length;
    public bool IsIdx => Name != "cifar10";

    public const string IdxTrainImages = "train-images-idx3-ubyte";
    public const string IdxTrainLabels = "train-labels-idx1-ubyte";
    public const string IdxTestImages = "t10k-images-idx3-ubyte";
    public const string IdxTestLabels = "t10k-labels-idx1-ubyte";

    public static readonly DatasetInfo Mnist = new("mnist", 1, 28, 28,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], [0.1307f], [0.3081f]);

    public static readonly DatasetInfo FashionMnist = new("fashion-mnist", 1, 28, 28,
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        [0.2860f], [0.3530f]);

    public static readonly DatasetInfo Cifar10 = new("cifar10", 3, 32, 32,
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        [0.4914f, 0.4822f, 0.4465f], [0.2470f, 0.2435f, 0.2616f]);

    public static readonly DatasetInfo[] All = [FashionMnist, Mnist, Cifar10];

    public static DatasetInfo Get(string name) =>
        All.FirstOrDefault(d => d.Name == name)
        ?? throw new ArgumentException($"unknown dataset '{name}'; choose one of: {string.Join(", ", All.Select(d => d.Name))}");
}
