using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ScratchNet.Data;

namespace ScratchNet.Training;

/// <summary>What a checkpoint says about the run, besides the numbers.</summary>
public sealed record CheckpointHeader(
    string Dataset, int[] Layers, string Optimizer, float LearningRate, float Momentum, int BatchSize, ulong Seed,
    long OptimizerSteps, int Epoch, int NextBatch, double LossSum, long Correct, long Seen, int StateBuffers);

/// <summary>
/// A training checkpoint: the weights, the optimizer state, and where training stands (epoch, next
/// batch, optimizer step, the epoch's running sums). The shuffling generator needs no state of its own:
/// the order of epoch e is drawn from (seed, e), so seed and position restore it exactly.
/// <code>
/// "SNCKPT\r\n"          8 bytes, magic
/// version               int32 little-endian (1)
/// header length         int32, then the header as UTF-8 JSON (CheckpointHeader)
/// parameters            P float32
/// optimizer state       StateBuffers x P float32 (Adam: m then v; momentum: the buffer)
/// SHA-256               32 bytes over everything before it
/// </code>
/// Written to a temporary file in the same folder, flushed to disk, then renamed over the target, so a
/// crash leaves either the old checkpoint or the new one, never half of one.
/// </summary>
public static class Checkpoint
{
    public const int Version = 1;
    static readonly byte[] Magic = "SNCKPT\r\n"u8.ToArray();

    public static void Save(string path, TrainingSession session, EpochPosition position)
    {
        var config = session.Config;
        var state = session.Optimizer.State;
        var header = new CheckpointHeader(config.Dataset, session.Sizes, session.Optimizer.Name, config.EffectiveLearningRate,
            config.EffectiveMomentum, config.BatchSize, config.Seed, session.Optimizer.Steps, position.Epoch, position.NextBatch,
            position.LossSum, position.Correct, position.Seen, state.Count);
        byte[] headerBytes = JsonSerializer.SerializeToUtf8Bytes(header);

        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            using (var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                void Write(ReadOnlySpan<byte> bytes)
                {
                    file.Write(bytes);
                    sha.AppendData(bytes);
                }
                Span<byte> ints = stackalloc byte[8];
                BinaryPrimitives.WriteInt32LittleEndian(ints, Version);
                BinaryPrimitives.WriteInt32LittleEndian(ints[4..], headerBytes.Length);
                Write(Magic);
                Write(ints);
                Write(headerBytes);
                Write(MemoryMarshal.AsBytes(session.Model.Parameters.ToArray().AsSpan()));
                foreach (var t in state) Write(MemoryMarshal.AsBytes(t.ToArray().AsSpan()));
                file.Write(sha.GetHashAndReset());
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>A checkpoint read back and verified: header, parameters and optimizer state.</summary>
    public sealed record Loaded(CheckpointHeader Header, float[] Parameters, float[][] State);

    public static Loaded Load(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "checkpoint not found");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < Magic.Length + 8 + 32)
            throw new DataFormatException(path, 0, $"file is {bytes.Length} bytes, too short for a checkpoint (truncated?)");
        if (!bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new DataFormatException(path, 0, "not a ScratchNet checkpoint (wrong magic bytes)");
        int version = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8));
        if (version != Version)
            throw new DataFormatException(path, 8, $"checkpoint format version {version}; this ScratchNet reads version {Version}");
        byte[] expected = SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32));
        if (!expected.AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
            throw new DataFormatException(path, bytes.Length - 32, "checksum mismatch: the checkpoint is corrupted or truncated");
        int headerLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12));
        if (headerLength <= 0 || 16L + headerLength > bytes.Length - 32)
            throw new DataFormatException(path, 12, $"header length {headerLength} does not fit the file");
        CheckpointHeader header;
        try
        {
            header = JsonSerializer.Deserialize<CheckpointHeader>(bytes.AsSpan(16, headerLength))
                ?? throw new DataFormatException(path, 16, "empty header");
        }
        catch (JsonException e)
        {
            throw new DataFormatException(path, 16, $"header is not valid JSON ({e.Message})");
        }
        long p = Mlp.CountParameters(header.Layers);
        long payload = bytes.Length - 32 - 16 - headerLength;
        if (payload != 4 * p * (1 + header.StateBuffers))
            throw new DataFormatException(path, 16 + headerLength,
                $"expected {4 * p * (1 + header.StateBuffers)} bytes of weights and optimizer state for {string.Join("-", header.Layers)}, found {payload}");
        var floats = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(16 + headerLength, (int)payload));
        var parameters = floats[..(int)p].ToArray();
        var state = new float[header.StateBuffers][];
        for (int i = 0; i < state.Length; i++) state[i] = floats.Slice((int)(p * (i + 1)), (int)p).ToArray();
        return new Loaded(header, parameters, state);
    }

    /// <summary>Copies the loaded numbers into a session built with the checkpoint's configuration.</summary>
    public static void Apply(Loaded loaded, TrainingSession session)
    {
        if (!loaded.Header.Layers.SequenceEqual(session.Sizes) || loaded.State.Length != session.Optimizer.State.Count)
            throw new InvalidOperationException("the session does not match the checkpoint");
        session.Model.Parameters.CopyFrom(loaded.Parameters);
        for (int i = 0; i < loaded.State.Length; i++) session.Optimizer.State[i].CopyFrom(loaded.State[i]);
        session.Optimizer.Steps = loaded.Header.OptimizerSteps;
    }

    /// <summary>The position saved in the checkpoint (NextBatch 0: the start of that epoch).</summary>
    public static EpochPosition Position(CheckpointHeader h) => new(h.Epoch, h.NextBatch, h.LossSum, h.Correct, h.Seen);
}
