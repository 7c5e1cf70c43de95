using System.Diagnostics;
using NUnit.Framework;
using ScratchNet.Data;
using ScratchNet.Training;

namespace ScratchNet.Tests;

[TestFixture]
public sealed class CheckpointTests
{
    static string? _large;

    /// <summary>The embedded subset as a folder (2,000 training images: 32 steps per epoch).</summary>
    static string Small() => TestData.EmbeddedFolder();

    /// <summary>20,000 real images (the embedded 2,000 ten times): long enough to interrupt.</summary>
    static string Large()
    {
        if (_large is not null) return _large;
        var e = DatasetLoader.LoadEmbedded(null);
        string dir = TestData.NewFolder();
        byte[] pixels = Enumerable.Repeat(e.Train.Pixels, 10).SelectMany(p => p).ToArray();
        byte[] labels = Enumerable.Repeat(e.Train.Labels, 10).SelectMany(p => p).ToArray();
        Idx.WriteImages(Path.Combine(dir, DatasetInfo.IdxTrainImages), 20_000, 28, 28, pixels);
        Idx.WriteLabels(Path.Combine(dir, DatasetInfo.IdxTrainLabels), labels);
        Idx.WriteImages(Path.Combine(dir, DatasetInfo.IdxTestImages), 500, 28, 28, e.Test.Pixels);
        Idx.WriteLabels(Path.Combine(dir, DatasetInfo.IdxTestLabels), e.Test.Labels);
        return _large = dir;
    }

    /// <summary>The epoch lines without their timing (seconds and samples/s) and without the "/total" of "epoch 1/3".</summary>
    static string EpochLines(string stdout) => string.Join("\n", stdout.Split('\n')
        .Where(l => l.StartsWith("epoch "))
        .Select(l => System.Text.RegularExpressions.Regex.Replace(l[..l.IndexOf("%, ", l.IndexOf("test acc", StringComparison.Ordinal), StringComparison.Ordinal)], @"^epoch (\d+)/\d+", "epoch $1")));

    [Test]
    public void ResumeAtEpochBoundary_PrintsTheSameLossesAsAnUninterruptedRun()
    {
        var whole = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--epochs", "3");
        string ckpt = Path.Combine(TestData.NewFolder(), "run.ckpt");
        var first = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--epochs", "1", "--save", ckpt);
        var rest = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--epochs", "3", "--resume", ckpt);
        Assert.That((whole.ExitCode, first.ExitCode, rest.ExitCode), Is.EqualTo((0, 0, 0)), rest.Stderr);
        Assert.That(rest.Stdout, Does.Contain($"resumed from {ckpt}: epoch 2, step 1 of the epoch, optimizer step 32"));
        Assert.That(EpochLines(first.Stdout) + "\n" + EpochLines(rest.Stdout), Is.EqualTo(EpochLines(whole.Stdout)));
        Assert.That(EpochLines(whole.Stdout).Split('\n'), Has.Length.EqualTo(3));
    }

    [Test]
    public void ResumeMidEpoch_GivesBitIdenticalStepLosses()
    {
        var data = DatasetLoader.LoadEmbedded(null);
        var config = new TrainConfig { Seed = 9, Optimizer = "momentum" };
        List<double> whole = [];
        using (var session = new TrainingSession(Shared.Cpu, config, FeatureShape.Image(1, 28, 28), 10))
        {
            var t = new Trainer(session, data) { OnStep = (_, _, l) => whole.Add(l) };
            t.RunEpoch(0);
            t.RunEpoch(1);
        }
        string ckpt = Path.Combine(TestData.NewFolder(), "mid.ckpt");
        List<double> parts = [];
        using (var session = new TrainingSession(Shared.Cpu, config, FeatureShape.Image(1, 28, 28), 10))
        {
            var t = new Trainer(session, data) { OnStep = (_, _, l) => parts.Add(l) };
            t.RunEpoch(0);
            t.StopRequested = () => parts.Count == 32 + 13;
            Assert.That(t.RunEpoch(1), Is.Null);
            Checkpoint.Save(ckpt, session, t.Interrupted!, DataIdentity.Of(data));
        }
        using (var session = new TrainingSession(Shared.Cpu, config with { Seed = 9 }, FeatureShape.Image(1, 28, 28), 10))
        {
            var loaded = Checkpoint.Load(ckpt);
            Checkpoint.Apply(loaded, session);
            var t = new Trainer(session, data) { OnStep = (_, _, l) => parts.Add(l) };
            Assert.That(t.RunEpoch(loaded.Header.Epoch, Checkpoint.Position(loaded.Header)), Is.Not.Null);
        }
        Assert.That(parts, Is.EqualTo(whole));
    }

    [Test]
    public void Save_LeavesNoTemporaryFile_AndAFailedSaveKeepsTheOldCheckpoint()
    {
        string dir = TestData.NewFolder();
        string ckpt = Path.Combine(dir, "a.ckpt");
        using var session = new TrainingSession(Shared.Cpu, new TrainConfig(), FeatureShape.Image(1, 28, 28), 10);
        Checkpoint.Save(ckpt, session, new EpochPosition(1, 0, 0, 0, 0), TestData.EmbeddedIdentity);
        Assert.That(Directory.GetFiles(dir), Is.EqualTo(new[] { ckpt }));
        byte[] before = File.ReadAllBytes(ckpt);

        // Make the temporary file impossible to create: the save must fail and leave the old file alone.
        Directory.CreateDirectory(Path.Combine(dir, $".a.ckpt.{Environment.ProcessId}.tmp"));
        session.Model.Initialize(123);
        Assert.That(() => Checkpoint.Save(ckpt, session, new EpochPosition(2, 0, 0, 0, 0), TestData.EmbeddedIdentity), Throws.InstanceOf<OutputFileException>().With.Message.Contain("the previous checkpoint, if any, is unchanged"));
        Assert.That(File.ReadAllBytes(ckpt), Is.EqualTo(before));
        Assert.That(Checkpoint.Load(ckpt).Header.Epoch, Is.EqualTo(1));
    }

    [Test]
    public void CorruptedTruncatedOrForeignCheckpoints_GetAClearError()
    {
        string dir = TestData.NewFolder();
        string good = Path.Combine(dir, "good.ckpt");
        using (var session = new TrainingSession(Shared.Cpu, new TrainConfig(), FeatureShape.Image(1, 28, 28), 10))
            Checkpoint.Save(good, session, new EpochPosition(1, 0, 0, 0, 0), TestData.EmbeddedIdentity);
        byte[] bytes = File.ReadAllBytes(good);

        string flipped = Path.Combine(dir, "flipped.ckpt");
        var copy = (byte[])bytes.Clone();
        copy[copy.Length / 2] ^= 0x10;
        File.WriteAllBytes(flipped, copy);
        string truncated = Path.Combine(dir, "truncated.ckpt");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length - 1000)]);
        string foreign = Path.Combine(dir, "foreign.ckpt");
        File.WriteAllText(foreign, "this is not a checkpoint at all, just some text long enough to have a header");

        foreach (var (path, message) in new[] { (flipped, "checksum mismatch"), (truncated, "truncated"), (foreign, "not a ScratchNet checkpoint") })
        {
            var r = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--resume", path);
            Assert.That(r.ExitCode, Is.EqualTo(1), path);
            Assert.That(r.Stderr.Trim(), Does.StartWith($"error: {path}").And.Contain(message));
            Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        }
        var missing = CliRunner.Run("train", "--resume", Path.Combine(dir, "nope.ckpt"));
        Assert.That(missing.Stderr, Does.Contain("checkpoint not found"));
        var conflict = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--resume", good, "--batch-size", "32", "--epochs", "2");
        Assert.That(conflict.ExitCode, Is.EqualTo(2));
        Assert.That(conflict.Stderr, Does.Contain("--batch-size 32 differs from the checkpoint's 64"));
    }

    [Test]
    public void Divergence_StopsWithEpochStepAndCause_AndKeepsTheLastGoodCheckpoint()
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "good.ckpt");
        var ok = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--optimizer", "sgd", "--save", ckpt);
        Assert.That(ok.ExitCode, Is.Zero, ok.Stderr);
        byte[] good = File.ReadAllBytes(ckpt);

        var r = CliRunner.Run("train", "--device", "cpu", "--data", Small(), "--resume", ckpt, "--epochs", "2", "--lr", "1e30", "--save", ckpt);
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr, Does.Match(@"error: training diverged: the loss became (NaN|-?∞|Infinity|-Infinity) at epoch 2, step \d+\. The learning rate \(1E\+30\) is most likely too high"));
        Assert.That(r.Stderr, Does.Contain($"The last good checkpoint is unchanged: {ckpt}"));
        Assert.That(File.ReadAllBytes(ckpt), Is.EqualTo(good));
    }

    /// <summary>
    /// Starts `scratchnet train` as a real process (through /bin/sh with SIGINT ignored first, when asked, as a
    /// script's background job inherits it), sends it SIGINT during the epoch and checks that it finished the
    /// step, saved, said where and exited 130.
    /// </summary>
    static void InterruptTraining(string ckpt, bool startWithSigintIgnored)
    {
        string dll = typeof(Cli.Cli).Assembly.Location;
        string[] command = ["dotnet", dll, "train", "--device", "cpu", "--data", Large(), "--epochs", "1", "--save", ckpt];
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true };
        // `trap '' INT` ignores SIGINT, and exec keeps the dispositions: the program starts with SIGINT ignored.
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add((startWithSigintIgnored ? "trap '' INT; " : "") + "exec \"$0\" \"$@\"");
        foreach (string a in command) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null && !line.StartsWith("optimizer:")) { }
        Assert.That(line, Is.Not.Null, "training started");
        Thread.Sleep(1500);
        using (var kill = Process.Start("kill", ["-INT", process.Id.ToString()])) kill.WaitForExit();
        var stdoutRest = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(60_000))
        {
            process.Kill();
            Assert.Fail("the process did not end within 60 s of SIGINT");
        }
        Assert.That(process.ExitCode, Is.EqualTo(130), stderr.Result);
        Assert.That(stderr.Result, Does.Match($@"interrupted: stopped inside epoch 1 after step \d+ of 313; checkpoint saved to {System.Text.RegularExpressions.Regex.Escape(ckpt)}"));
        Assert.That(stdoutRest.Result, Does.Not.Contain("epoch 1/1"), "stopped inside the epoch");
        Assert.That(Checkpoint.Load(ckpt).Header.NextBatch, Is.InRange(1, 312));
    }

    /// <summary>A real SIGINT to a real `scratchnet train` process: it finishes the step, saves, says where, exits 130.</summary>
    [Test]
    public void Sigint_SavesAndExits130_AndTheResumedRunMatchesAnUninterruptedOne()
    {
        string ckpt = Path.Combine(TestData.NewFolder(), "int.ckpt");
        InterruptTraining(ckpt, startWithSigintIgnored: false);

        var resumed = CliRunner.Run("train", "--device", "cpu", "--data", Large(), "--epochs", "1", "--resume", ckpt);
        var whole = CliRunner.Run("train", "--device", "cpu", "--data", Large(), "--epochs", "1");
        Assert.That(resumed.ExitCode, Is.Zero, resumed.Stderr);
        Assert.That(EpochLines(resumed.Stdout), Is.EqualTo(EpochLines(whole.Stdout)));
        Assert.That(EpochLines(whole.Stdout), Does.StartWith("epoch 1: loss "));
    }

    /// <summary>
    /// The same when train starts with SIGINT ignored, as a script's background job does (and `dotnet test` run as
    /// one, with every process it starts): train sets SIGINT back to default, so the signal still saves and exits 130.
    /// </summary>
    [Test]
    public void Sigint_InheritedAsIgnored_StillSavesAndExits130() =>
        InterruptTraining(Path.Combine(TestData.NewFolder(), "int.ckpt"), startWithSigintIgnored: true);
}
