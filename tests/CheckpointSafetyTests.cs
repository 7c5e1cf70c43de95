using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>
/// What a checkpoint may replace, when its target is checked, which data it may resume on, and which
/// headers it refuses: the data-loss cases a new user and an adversarial tester found.
/// </summary>
[TestFixture]
public sealed class CheckpointSafetyTests
{
    static string Small() => TestData.EmbeddedFolder();

    static CliRunner.Result Train(params string[] extra) =>
        CliRunner.Run(["train", "--device", "host", "--data", Small(), .. extra]);

    static string FileType(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("stat", ["-c", "%F", path]) { RedirectStandardOutput = true })!;
        string type = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return type;
    }

    [Test]
    public void Save_OnADeviceNode_IsRefusedAndTheNodeStays()
    {
        string node = Path.Combine(TestData.NewFolder(), "null-device");
        using (var mknod = Process.Start("mknod", [node, "c", "1", "3"])) mknod.WaitForExit();
        Assume.That(FileType(node), Is.EqualTo("character special file"), "mknod needs root");

        var r = Train("--save", node);
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Is.EqualTo($"error: {node}: exists and is not a ScratchNet checkpoint; refusing to replace it (choose another file name)"));
        Assert.That(r.Stdout, Does.Not.Contain("epoch 1/1"), "refused before training");
        Assert.That(FileType(node), Is.EqualTo("character special file"));
    }

    [Test]
    public void Save_OverADatasetFile_IsRefusedAndTheFileIsUnchanged()
    {
        string dir = TestData.NewFolder();
        foreach (string f in Directory.GetFiles(Small())) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string images = Directory.GetFiles(dir, DatasetInfo.IdxTrainImages + "*").Single();
        byte[] before = File.ReadAllBytes(images);
        var r = CliRunner.Run("train", "--device", "host", "--data", dir, "--save", images);
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("is not a ScratchNet checkpoint; refusing to replace it"));
        Assert.That(File.ReadAllBytes(images), Is.EqualTo(before));
    }

    [Test]
    public void Save_OverAnExistingCheckpoint_IsAllowed()
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "run.ckpt");
        Assert.That(Train("--save", ckpt).ExitCode, Is.Zero);
        var again = Train("--save", ckpt, "--seed", "7");
        Assert.That(again.ExitCode, Is.Zero, again.Stderr);
        Assert.That(Checkpoint.Load(ckpt).Header.Seed, Is.EqualTo(7UL));
    }

    static IEnumerable<TestCaseData> BadTargets()
    {
        yield return new TestCaseData("folder", "is a folder; a checkpoint needs a file name").SetName("Save_ToAFolder_IsRefusedBeforeTraining");
        yield return new TestCaseData("parent-is-file", "cannot write a checkpoint here").SetName("Save_WhereTheParentIsAFile_IsRefusedBeforeTraining");
        yield return new TestCaseData("empty", "a checkpoint needs a file name").SetName("Save_ToAnEmptyPath_IsRefusedBeforeTraining");
        yield return new TestCaseData("proc", "cannot write a checkpoint here").SetName("Save_ToAnUnwritableFolder_IsRefusedBeforeTraining");
    }

    [TestCaseSource(nameof(BadTargets))]
    public void Save_BadTarget_IsOneLineBeforeTraining(string kind, string message)
    {
        string dir = TestData.NewFolder();
        File.WriteAllText(Path.Combine(dir, "file"), "x");
        string target = kind switch
        {
            "folder" => dir,
            "parent-is-file" => Path.Combine(dir, "file", "run.ckpt"),
            "empty" => "",
            _ => "/proc/scratchnet-test.ckpt",   // not writable even for root
        };
        var r = Train("--save", target);
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.StartWith("error: ").And.Contain(message));
        Assert.That(r.Stdout, Does.Not.Contain("epoch 1/1"), "refused before training");
    }

    [Test]
    public void InterruptPath_InAFolderThatCannotTakeIt_FallsBackToTheTempFolder()
    {
        string dir = TestData.NewFolder();
        Assert.That(Checkpoint.InterruptPath(dir), Is.EqualTo(Path.Combine(dir, "scratchnet-interrupted.ckpt")));
        Directory.CreateDirectory(Path.Combine(dir, "scratchnet-interrupted.ckpt"));
        Assert.That(Path.GetDirectoryName(Checkpoint.InterruptPath(dir)), Is.EqualTo(Path.GetTempPath().TrimEnd('/')));
        Assert.That(Path.GetDirectoryName(Checkpoint.InterruptPath("/proc")), Is.EqualTo(Path.GetTempPath().TrimEnd('/')));
    }

    [Test]
    public void Resume_OnOtherData_IsRefusedNamingBoth()
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "run.ckpt");
        Assert.That(Train("--save", ckpt).ExitCode, Is.Zero);
        string other = TestData.WriteIdx(train: 640, test: 100, gzip: false);
        var r = CliRunner.Run("train", "--device", "host", "--data", other, "--resume", ckpt, "--epochs", "2");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain($"the checkpoint was trained on fashion-mnist from {Small()} (2,000 training and 500 test images")
            .And.Contain($"but this run found fashion-mnist from {other} (640 training and 100 test images"));
        Assert.That(r.Stdout, Does.Not.Contain("epoch 2/2"));
    }

    [Test]
    public void Resume_OnTheSameDataInAnotherFolder_IsAccepted()
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "run.ckpt");
        Assert.That(Train("--save", ckpt).ExitCode, Is.Zero);
        string copy = TestData.NewFolder();
        foreach (string f in Directory.GetFiles(Small())) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var r = CliRunner.Run("train", "--device", "host", "--data", copy, "--resume", ckpt, "--epochs", "2");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("epoch 2/2"));
    }

    /// <summary>Rewrites a checkpoint's JSON header and recomputes its checksum: a crafted file that passes the hash.</summary>
    static string Craft(string good, Action<JsonObject> change)
    {
        byte[] bytes = File.ReadAllBytes(good);
        int headerLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12));
        var header = JsonNode.Parse(bytes.AsSpan(16, headerLength))!.AsObject();
        change(header);
        byte[] newHeader = JsonSerializer.SerializeToUtf8Bytes(header);
        using var ms = new MemoryStream();
        ms.Write(bytes, 0, 12);
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(len, newHeader.Length);
        ms.Write(len);
        ms.Write(newHeader);
        ms.Write(bytes, 16 + headerLength, bytes.Length - 16 - headerLength - 32);
        ms.Write(SHA256.HashData(ms.ToArray()));
        string path = Path.Combine(TestData.NewFolder(), "crafted.ckpt");
        File.WriteAllBytes(path, ms.ToArray());
        return path;
    }

    static readonly Lazy<string> Good = new(() =>
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "good.ckpt");
        var r = Train("--save", ckpt);
        if (r.ExitCode != 0) throw new InvalidOperationException(r.Stderr);
        return ckpt;
    });

    [TestCase("Layers", null, "the model needs at least an input and an output layer")]
    [TestCase("Layers", "[]", "the model needs at least an input and an output layer")]
    [TestCase("Layers", "[784,-128,10]", "must all be positive")]
    [TestCase("Epoch", "-1", "epoch -1 is negative")]
    [TestCase("NextBatch", "-3", "next batch -3 is negative")]
    [TestCase("LearningRate", "-0.001", "learning rate -0.001 must be a positive number")]
    [TestCase("StateBuffers", "1", "1 optimizer state buffers, but adam has 2")]
    [TestCase("Optimizer", "\"lion\"", "unknown optimizer 'lion'")]
    [TestCase("Dataset", null, "unknown dataset ''")]
    [TestCase("OptimizerSteps", "-5", "optimizer step -5 is negative")]
    [TestCase("Data", null, "the data it was trained on is missing")]
    public void CraftedHeader_WithAValidChecksum_IsRefusedNamingTheFile(string field, string? json, string message)
    {
        string crafted = Craft(Good.Value, h => h[field] = json is null ? null : JsonNode.Parse(json));
        var e = Assert.Throws<DataFormatException>(() => Checkpoint.Load(crafted))!;
        Assert.That(e.Message, Does.StartWith($"{crafted}: at byte offset 16: impossible header: ").And.Contain(message));

        var r = CliRunner.Run("train", "--device", "host", "--data", Small(), "--resume", crafted, "--epochs", "2");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Is.EqualTo($"error: {e.Message}"));
    }

    [Test]
    public void CraftedHeader_NextBatchPastTheEnd_IsRefusedAtResume()
    {
        // 2,000 images at batch 64: 32 batches; a mid-epoch position must be 1..31, with 64 images per batch seen.
        string crafted = Craft(Good.Value, h =>
        {
            h["NextBatch"] = 40;
            h["Seen"] = 40 * 64;
            h["Epoch"] = 0;
        });
        var r = CliRunner.Run("train", "--device", "host", "--data", Small(), "--resume", crafted, "--epochs", "2");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Is.EqualTo($"error: {crafted}: at byte offset 16: impossible header: next batch 40 is past the end of an epoch of 32 batches"));
    }

    [Test]
    public void SizeArithmetic_IsSixtyFourBit_ForAModelAboveTwoGigabytes()
    {
        // train --hidden 700000 on 784 inputs and 10 classes: 556,500,010 parameters.
        long p = Model.CountParameters(ModelSpec.Mlp([700_000], 10), FeatureShape.Image(1, 28, 28), 10);
        Assert.That(p, Is.EqualTo(556_500_010L));
        Assert.That(Checkpoint.PayloadBytes(p, 2), Is.EqualTo(6_678_000_120L));
        Assert.That(Checkpoint.FileSize(300, p, 0), Is.EqualTo(16 + 300 + 2_226_000_040L + 32));
    }

    [TestCase(7)]
    [TestCase(1000)]
    [TestCase(Checkpoint.DefaultChunkFloats)]
    public void SaveAndLoad_InChunks_RoundTripTheWeightsAndState(int chunk)
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "chunks.ckpt");
        using var session = new TrainingSession(Shared.Cpu, new TrainConfig { Seed = 3 }, FeatureShape.Image(1, 28, 28), 10);
        session.Optimizer.State[0].CopyFrom(Enumerable.Range(0, 101_770).Select(i => i * 0.5f).ToArray());
        Checkpoint.Save(ckpt, session, new EpochPosition(1, 0, 0, 0, 0), TestData.EmbeddedIdentity, chunk);
        var loaded = Checkpoint.Load(ckpt, chunk);
        Assert.That(loaded.Parameters, Is.EqualTo(session.Model.Parameters.ToArray()));
        Assert.That(loaded.State[0], Is.EqualTo(session.Optimizer.State[0].ToArray()));
        Assert.That(loaded.State[1], Is.EqualTo(session.Optimizer.State[1].ToArray()));
        Assert.That(new FileInfo(ckpt).Length, Is.EqualTo(Checkpoint.FileSize(JsonSerializer.SerializeToUtf8Bytes(loaded.Header).Length, 101_770, 2)));
    }

    [Test]
    public void Resume_MidEpochOnOtherData_NamesTheData_NotAnImpossiblePosition()
    {
        // A position inside a long epoch (batch 40 of the 2,000-image set's 32 would be impossible) resumed on
        // other data: the data is the problem, and the message says so.
        string crafted = Craft(Good.Value, h =>
        {
            h["NextBatch"] = 40;
            h["Seen"] = 40 * 64;
            h["Epoch"] = 0;
            h["Data"]!["TrainCount"] = 60_000;
            h["Data"]!["Fingerprint"] = "0123456789abcdef";
        });
        var r = CliRunner.Run("train", "--device", "host", "--data", Small(), "--resume", crafted, "--epochs", "2");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("the checkpoint was trained on fashion-mnist").And.Contain("60,000 training").And.Not.Contain("impossible header"));
    }
}
