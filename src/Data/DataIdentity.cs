using System.Security.Cryptography;

namespace ScratchNet.Data;

/// <summary>
/// Which data a run was trained on: the dataset, where it was read from, the split sizes and a
/// fingerprint of its bytes (SHA-256 over the training labels and pixels, then the test labels and pixels,
/// first 16 hex digits). Checkpoints record it, so a resume on other data (another folder, a subset, the
/// embedded images instead of the full set) is refused instead of silently continuing a different run.
/// </summary>
public sealed record DataIdentity(string Dataset, string Source, int TrainCount, int TestCount, string Fingerprint)
{
    public static DataIdentity Of(DatasetPair data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var split in new[] { data.Train, data.Test })
        {
            sha.AppendData(split.Labels);
            sha.AppendData(split.Pixels);
        }
        string fingerprint = Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
        return new DataIdentity(data.Train.Info.Name, data.Train.Source, data.Train.Count, data.Test.Count, fingerprint);
    }

    /// <summary>Same data: the same dataset, split sizes and bytes (the folder it was read from may differ).</summary>
    public bool SameDataAs(DataIdentity other) =>
        Dataset == other.Dataset && TrainCount == other.TrainCount && TestCount == other.TestCount && Fingerprint == other.Fingerprint;

    public override string ToString() =>
        $"{Dataset} from {Source} ({TrainCount:N0} training and {TestCount:N0} test images, fingerprint {Fingerprint})";
}
