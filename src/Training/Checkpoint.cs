using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using ScratchNet.Data;

namespace ScratchNet.Training;

/// <summary>What a checkpoint says about the run, besides the numbers.</summary>
public sealed record CheckpointHeader(
    string Dataset, int[] Layers, string Optimizer, float LearningRate, float Momentum, int BatchSize, ulong Seed,
    long OptimizerSteps, int Epoch, int NextBatch, double LossSum, long Correct, long Seen, int StateBuffers,
    DataIdentity? Data = null, string? Matmul = null, string? Stack = null, string? Conv = null,
    string? Precision = null, float? LossScale = null, int? LossScaleGoodSteps = null)
{
    /// <summary>--precision as recorded ("fp16", "bf16"); fp32 where it was not recorded (checkpoints before mixed precision).</summary>
    public Precision PrecisionKind => Precision switch { "fp16" => Training.Precision.Fp16, "bf16" => Training.Precision.Bf16, _ => Training.Precision.Fp32 };

    /// <summary>The layer stack: recorded since conv nets (<see cref="Stack"/>); older checkpoints are MLPs of <see cref="Layers"/>' sizes.</summary>
    public ModelSpec Spec(int classes) => Stack is not null ? new ModelSpec(Stack) : ModelSpec.Mlp(Layers[1..^1], classes);

    /// <summary>How its convolutions ran (--conv); im2col where it was not recorded.</summary>
    public ConvVersion ConvVersion => Conv == "direct" ? ConvVersion.Direct : ConvVersion.Im2col;
}

/// <summary>
/// A training checkpoint: the weights, the optimizer state, where training stands (epoch, next batch,
/// optimizer step, the epoch's running sums) and which data it was trained on. The shuffling generator
/// needs no state of its own: the order of epoch e is drawn from (seed, e), so seed and position restore it.
/// <code>
/// "SNCKPT\r\n"          8 bytes, magic
/// version               int32 little-endian (2; version 1 had no Data in the header; Matmul, the version
///                       that ran (--matmul auto's choice included), is optional; Stack, the layer stack as
///                       --layers writes it, and Conv, the --conv version, are recorded since conv nets:
///                       without Stack the model is the MLP of Layers' sizes; Precision, and with fp16 the loss
///                       scaler's LossScale and LossScaleGoodSteps, are recorded since mixed precision: without
///                       them the run was fp32. The parameters are the float32 master weights either way)
/// header length         int32, then the header as UTF-8 JSON (CheckpointHeader)
/// parameters            P float32
/// optimizer state       StateBuffers x P float32 (Adam: m then v; momentum: the buffer)
/// SHA-256               32 bytes over everything before it
/// </code>
/// Sizes and offsets are 64-bit and the numbers are streamed in chunks both ways, so a model whose state
/// passes 2 GB (556,500,010 parameters with Adam: 6,678,000,120 bytes) is saved and loaded like a small one.
/// Written through <see cref="ReplacingFile"/> (a temporary file in the same folder, flushed to disk, then
/// renamed over the target), so a crash or a full disk leaves either the old checkpoint or the new one.
/// </summary>
public static class Checkpoint
{
    public const int Version = 2;
    static readonly byte[] Magic = "SNCKPT\r\n"u8.ToArray();
    const int FixedHeaderBytes = 16, HashBytes = 32;
    /// <summary>A header is a few hundred bytes of JSON; a length above this is corruption, not a header to read.</summary>
    const int MaxHeaderBytes = 1 << 20;
    /// <summary>Floats copied per chunk between device, host and file (4 MiB); tests pass smaller chunks.</summary>
    public const int DefaultChunkFloats = 1 << 20;

    /// <summary>Bytes of weights and optimizer state: 4 x P x (1 + state buffers), in 64-bit arithmetic.</summary>
    public static long PayloadBytes(long parameters, int stateBuffers) => 4L * parameters * (1L + stateBuffers);

    /// <summary>The whole file's size for a header of the given length.</summary>
    public static long FileSize(int headerLength, long parameters, int stateBuffers) =>
        FixedHeaderBytes + headerLength + PayloadBytes(parameters, stateBuffers) + HashBytes;

    /// <summary>
    /// Checks, before any training, that a checkpoint can be written to <paramref name="path"/>: the path is
    /// not empty, is not a folder, and holds nothing or a ScratchNet checkpoint (never a dataset file, a
    /// device such as /dev/null, or anything else we would destroy by replacing it); its folder exists (it
    /// is created if missing) and a file can be created there. Throws <see cref="OutputFileException"/>.
    /// </summary>
    public static void CheckTarget(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new OutputFileException(path, "a checkpoint needs a file name");
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new OutputFileException(path, "is a folder; a checkpoint needs a file name");
        if (File.Exists(full))
        {
            // A device node or a FIFO reports length 0, so it is refused without being opened.
            var info = new FileInfo(full);
            if (!info.Exists || info.Length < FixedHeaderBytes + HashBytes || !StartsWithMagic(full))
                throw new OutputFileException(path, "exists and is not a ScratchNet checkpoint; refusing to replace it (choose another file name)");
        }
        string dir = Path.GetDirectoryName(full)!;
        string probe = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.probe");
        try
        {
            Directory.CreateDirectory(dir);
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write)) { }
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputFileException(path, $"cannot write a checkpoint here ({OutputFileException.Reason(e)})", e);
        }
    }

    static bool StartsWithMagic(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read);
            var head = new byte[Magic.Length];
            return file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length && head.AsSpan().SequenceEqual(Magic);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputFileException(path, $"exists and cannot be read to check that it is a checkpoint ({OutputFileException.Reason(e)}); refusing to replace it", e);
        }
    }

    public static void Save(string path, TrainingSession session, EpochPosition position, DataIdentity data, int chunkFloats = DefaultChunkFloats)
    {
        CheckTarget(path);
        var config = session.Config;
        var state = session.Optimizer.State;
        var net = session.Network;
        int[] sizes = net.IsMlp ? net.MlpSizes : [(int)net.Input.Size, net.Classes];
        var header = new CheckpointHeader(config.Dataset, sizes, session.Optimizer.Name, config.EffectiveLearningRate,
            config.EffectiveMomentum, config.BatchSize, config.Seed, session.Optimizer.Steps, position.Epoch, position.NextBatch,
            position.LossSum, position.Correct, position.Seen, state.Count, data, session.MatmulName, net.Spec.Text, net.Conv.ToString().ToLowerInvariant(),
            net.Precision.ToString().ToLowerInvariant(), session.Scaler?.Scale, session.Scaler?.GoodSteps);
        byte[] headerBytes = JsonSerializer.SerializeToUtf8Bytes(header);

        try
        {
            using var target = new ReplacingFile(path);
            using (var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                FileStream file = target.Stream;
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
                var chunk = new float[(int)Math.Min(chunkFloats, session.Model.ParameterCount)];
                foreach (var tensor in new[] { session.Model.Parameters }.Concat(state))
                {
                    for (long offset = 0; offset < tensor.Length; offset += chunk.Length)
                    {
                        var part = chunk.AsSpan(0, (int)Math.Min(chunk.Length, tensor.Length - offset));
                        tensor.CopyTo(offset, part);
                        Write(MemoryMarshal.AsBytes(part));
                    }
                }
                file.Write(sha.GetHashAndReset());
            }
            target.Commit(flushToDisk: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputFileException(path, $"the checkpoint could not be written ({OutputFileException.Reason(e)}); the previous checkpoint, if any, is unchanged", e);
        }
    }

    /// <summary>
    /// Where Ctrl+C saves without --save: scratchnet-interrupted.ckpt in `folder`, else (a folder that cannot
    /// be written, or a file of that name that is not a checkpoint) scratchnet-interrupted-PID.ckpt in the temp folder.
    /// </summary>
    public static string InterruptPath(string folder)
    {
        const string name = "scratchnet-interrupted.ckpt";
        string here = folder == "." ? name : Path.Combine(folder, name);
        try
        {
            CheckTarget(here);
            return here;
        }
        catch (OutputFileException)
        {
            string temp = Path.Combine(Path.GetTempPath(), $"scratchnet-interrupted-{Environment.ProcessId}.ckpt");
            CheckTarget(temp);
            return temp;
        }
    }

    /// <summary>A checkpoint read back and verified: header, parameters and optimizer state.</summary>
    public sealed record Loaded(CheckpointHeader Header, float[] Parameters, float[][] State);

    /// <summary>
    /// Reads and verifies a checkpoint, streaming: the fixed header and the JSON header first (checked for
    /// impossible values before anything is trusted), the expected size against the file's, then the
    /// numbers chunk by chunk while the SHA-256 is computed, and finally the stored hash.
    /// </summary>
    public static Loaded Load(string path, int chunkFloats = DefaultChunkFloats)
    {
        if (Directory.Exists(path)) throw new DataFormatException(path, null, "is a folder, not a checkpoint");
        if (!File.Exists(path)) throw new DataFormatException(path, null, "checkpoint not found");
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            return Read(file, path, chunkFloats);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(path, null, $"cannot read the checkpoint ({OutputFileException.Reason(e)})");
        }
    }

    static Loaded Read(FileStream file, string path, int chunkFloats)
    {
        long length = file.Length;
        if (length < FixedHeaderBytes + HashBytes)
            throw new DataFormatException(path, 0, $"file is {length} bytes, too short for a checkpoint (truncated?)");
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] head = new byte[FixedHeaderBytes];
        file.ReadExactly(head);
        sha.AppendData(head);
        if (!head.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new DataFormatException(path, 0, "not a ScratchNet checkpoint (wrong magic bytes)");
        int version = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(8));
        if (version is not (1 or Version))
            throw new DataFormatException(path, 8, $"checkpoint format version {version}; this ScratchNet reads versions 1 and {Version}");
        int headerLength = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(12));
        if (headerLength <= 0 || headerLength > MaxHeaderBytes || FixedHeaderBytes + (long)headerLength > length - HashBytes)
            throw new DataFormatException(path, 12, $"header length {headerLength} does not fit the file of {length} bytes (truncated?)");
        byte[] headerBytes = new byte[headerLength];
        file.ReadExactly(headerBytes);
        sha.AppendData(headerBytes);
        CheckpointHeader header;
        try
        {
            header = JsonSerializer.Deserialize<CheckpointHeader>(headerBytes)
                ?? throw new DataFormatException(path, FixedHeaderBytes, "empty header");
        }
        catch (JsonException e)
        {
            throw new DataFormatException(path, FixedHeaderBytes, $"header is not valid JSON ({e.Message})");
        }
        string? problem = Validate(header, version);
        if (problem is not null) throw new DataFormatException(path, FixedHeaderBytes, $"impossible header: {problem}");

        long p;
        var info = DatasetInfo.Get(header.Dataset);
        try
        {
            p = Model.CountParameters(header.Spec(info.Classes), FeatureShape.Image(info.Channels, info.Height, info.Width), info.Classes);
        }
        catch (Exception e) when (e is OverflowException or ArgumentException)
        {
            throw new DataFormatException(path, FixedHeaderBytes, $"impossible header: the model {Describe(header)} does not fit {header.Dataset} ({e.Message})");
        }
        if (p > Array.MaxLength) throw new DataFormatException(path, FixedHeaderBytes, $"impossible header: {p:N0} parameters in one model");
        long expected = FileSize(headerLength, p, header.StateBuffers);
        if (length != expected)
            throw new DataFormatException(path, FixedHeaderBytes + headerLength,
                $"expected {PayloadBytes(p, header.StateBuffers):N0} bytes of weights and optimizer state for {Describe(header)}, " +
                $"found {length - FixedHeaderBytes - headerLength - HashBytes:N0} (truncated or corrupted)");

        var arrays = new float[1 + header.StateBuffers][];
        for (int i = 0; i < arrays.Length; i++)
        {
            arrays[i] = new float[p];
            for (long offset = 0; offset < p; offset += chunkFloats)
            {
                var bytes = MemoryMarshal.AsBytes(arrays[i].AsSpan((int)offset, (int)Math.Min(chunkFloats, p - offset)));
                file.ReadExactly(bytes);
                sha.AppendData(bytes);
            }
        }
        byte[] stored = new byte[HashBytes];
        file.ReadExactly(stored);
        if (!sha.GetHashAndReset().AsSpan().SequenceEqual(stored))
            throw new DataFormatException(path, length - HashBytes, "checksum mismatch: the checkpoint is corrupted or truncated");
        return new Loaded(header, arrays[0], arrays[1..]);
    }

    /// <summary>The model as a message names it: the stack, or the MLP's sizes.</summary>
    public static string Describe(CheckpointHeader h) => h.Stack ?? string.Join("-", h.Layers);

    /// <summary>
    /// What is impossible in a header whose checksum is right (a crafted or buggy file), or null. Checked
    /// before the header's numbers size anything.
    /// </summary>
    static string? Validate(CheckpointHeader h, int version)
    {
        if (h.Dataset is null || !DatasetInfo.All.Any(d => d.Name == h.Dataset)) return $"unknown dataset '{h.Dataset}'";
        if (h.Layers is null || h.Layers.Length < 2) return "the model needs at least an input and an output layer";
        if (h.Layers.Any(n => n <= 0)) return $"layer sizes {string.Join("-", h.Layers)} must all be positive";
        if (h.Conv is not null && h.Conv is not ("direct" or "im2col")) return $"unknown conv version '{h.Conv}'";
        if (h.Optimizer is null || !TrainConfig.OptimizerChoices.Contains(h.Optimizer)) return $"unknown optimizer '{h.Optimizer}'";
        int stateBuffers = h.Optimizer switch { "adam" => 2, "momentum" => 1, _ => 0 };
        if (h.StateBuffers != stateBuffers) return $"{h.StateBuffers} optimizer state buffers, but {h.Optimizer} has {stateBuffers}";
        if (!float.IsFinite(h.LearningRate) || h.LearningRate <= 0) return $"learning rate {h.LearningRate} must be a positive number";
        if (!float.IsFinite(h.Momentum) || h.Momentum < 0 || h.Momentum >= 1) return $"momentum {h.Momentum} must be in [0, 1)";
        if (h.BatchSize <= 0) return $"batch size {h.BatchSize} must be positive";
        if (h.Precision is not (null or "fp32" or "fp16" or "bf16")) return $"precision '{h.Precision}' is not fp32, fp16 or bf16";
        if (h.Precision == "fp16" && (h.LossScale is not float scale || !float.IsFinite(scale) || scale <= 0 ||
            h.LossScaleGoodSteps is not int good || good < 0 || good >= LossScaler.GrowthInterval))
            return $"an fp16 run needs a loss scale above 0 and 0 to {LossScaler.GrowthInterval - 1} good steps (found {h.LossScale}, {h.LossScaleGoodSteps})";
        if (h.Epoch < 0) return $"epoch {h.Epoch} is negative";
        if (h.NextBatch < 0) return $"next batch {h.NextBatch} is negative";
        if (h.OptimizerSteps < 0) return $"optimizer step {h.OptimizerSteps} is negative";
        if (h.Seen < 0 || h.Correct < 0 || h.Correct > h.Seen) return $"running counts (correct {h.Correct} of {h.Seen}) are impossible";
        if (!double.IsFinite(h.LossSum) || h.LossSum < 0) return $"running loss sum {h.LossSum} is impossible";
        if (h.NextBatch == 0 && (h.Seen != 0 || h.LossSum != 0)) return "running sums are set for a position at the start of an epoch";
        if (h.NextBatch > 0 && h.Seen != (long)h.NextBatch * h.BatchSize) return $"{h.Seen} images seen is not {h.NextBatch} batches of {h.BatchSize}";
        if (version >= 2 && (h.Data is null || h.Data.Dataset != h.Dataset || h.Data.TrainCount <= 0 || h.Data.TestCount < 0 || string.IsNullOrEmpty(h.Data.Fingerprint)))
            return "the data it was trained on is missing or inconsistent";
        return null;
    }

    /// <summary>
    /// Checks that a loaded checkpoint may continue on this data: the same data (refused otherwise, naming
    /// both), and a next batch inside the epoch. Version-1 checkpoints recorded no data: returns a warning.
    /// </summary>
    public static string? CheckData(string path, CheckpointHeader header, DataIdentity data, int batchesPerEpoch)
    {
        // Other data first: a position past the end of this data's epoch usually means it is other data.
        if (header.Data is not null && !header.Data.SameDataAs(data))
            throw new DataFormatException(path, null, $"the checkpoint was trained on {header.Data}, but this run found {data}; resume with the same data (--data)");
        if (header.NextBatch >= batchesPerEpoch && header.NextBatch > 0)
            throw new DataFormatException(path, FixedHeaderBytes, $"impossible header: next batch {header.NextBatch} is past the end of an epoch of {batchesPerEpoch} batches");
        return header.Data is null
            ? $"{path} was written by an older ScratchNet and does not record its data; it cannot be checked against {data}"
            : null;
    }

    /// <summary>Copies the loaded numbers into a session built with the checkpoint's configuration.</summary>
    public static void Apply(Loaded loaded, TrainingSession session)
    {
        if (loaded.Header.Spec(session.Network.Classes).Build(session.Network.Input, session.Network.Classes).Sum(l => l.ParameterCount) != session.Model.ParameterCount ||
            loaded.State.Length != session.Optimizer.State.Count)
            throw new InvalidOperationException("the session does not match the checkpoint");
        session.Model.Parameters.CopyFrom(loaded.Parameters);
        session.Model.RefreshHalfCopy(session.Backend);
        if (session.Scaler is { } scaler && loaded.Header.LossScale is float scale)
            (scaler.Scale, scaler.GoodSteps) = (scale, loaded.Header.LossScaleGoodSteps ?? 0);
        for (int i = 0; i < loaded.State.Length; i++) session.Optimizer.State[i].CopyFrom(loaded.State[i]);
        session.Optimizer.Steps = loaded.Header.OptimizerSteps;
    }

    /// <summary>The position saved in the checkpoint (NextBatch 0: the start of that epoch).</summary>
    public static EpochPosition Position(CheckpointHeader h) => new(h.Epoch, h.NextBatch, h.LossSum, h.Correct, h.Seen);
}
