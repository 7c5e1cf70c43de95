using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>Every bad input gets one clear line naming the option or file, and a non-zero exit code.</summary>
[TestFixture]
public sealed class BadInputTests
{
    static void AssertOneLineError(CliRunner.Result r, int exitCode, params string[] mentions)
    {
        Assert.That(r.ExitCode, Is.EqualTo(exitCode), r.Stderr);
        string line = r.Stderr.Trim();
        Assert.That(line, Does.StartWith("error: "));
        Assert.That(line, Does.Not.Contain(" at ScratchNet").And.Not.Contain("Exception"), "no stack trace or exception type name");
        foreach (string m in mentions) Assert.That(line, Does.Contain(m));
    }

    [TestCase("--batch-size", "0", "--batch-size: 0 is too small")]
    [TestCase("--batch-size", "-5", "--batch-size: -5 is too small")]
    [TestCase("--batch-size", "many", "--batch-size: 'many' is not an integer")]
    [TestCase("--epochs", "0", "--epochs: 0 is too small")]
    [TestCase("--lr", "abc", "--lr: 'abc' is not a number")]
    [TestCase("--lr", "NaN", "--lr: 'NaN' is not a number")]
    [TestCase("--lr", "0", "--lr: 0 must be greater than 0")]
    [TestCase("--dataset", "imagenet", "--dataset: unknown value 'imagenet'")]
    [TestCase("--device", "tpu", "--device: unknown value 'tpu'")]
    [TestCase("--hidden", "128,x", "--hidden: 'x' in '128,x'")]
    [TestCase("--momentum", "1.5", "--momentum: 1.5 must be less than 1")]
    [TestCase("--memory-limit", "lots", "--memory-limit: 'lots' is not a size")]
    [TestCase("--matmul", "fast", "--matmul: unknown version 'fast'")]
    public void Train_BadOption_ExitsTwoWithOneLine(string option, string value, string message) =>
        AssertOneLineError(CliRunner.Run("train", option, value), 2, message);

    [Test]
    public void Train_UnknownOption_IsNamed() =>
        AssertOneLineError(CliRunner.Run("train", "--batchsize", "64"), 2, "unknown option '--batchsize'");

    [Test]
    public void Train_MissingValue_IsNamed() =>
        AssertOneLineError(CliRunner.Run("train", "--epochs"), 2, "--epochs needs a value");

    [Test]
    public void UnknownCommand_IsNamed() =>
        AssertOneLineError(CliRunner.Run("fly"), 2, "unknown command 'fly'");

    [Test]
    public void Train_MissingDataFolder_ExitsOne() =>
        AssertOneLineError(CliRunner.Run("train", "--data", "/no/such/dir", "--device", "cpu"), 1, "/no/such/dir: data folder not found");

    [Test]
    public void Train_CifarWithoutFiles_SaysWhereToPutThem()
    {
        string empty = TestData.NewFolder();
        AssertOneLineError(CliRunner.Run("train", "--dataset", "cifar10", "--data", empty), 1, "data_batch_1.bin: file not found");
    }

    [Test]
    public void Train_TruncatedIdx_NamesFileAndOffset()
    {
        string dir = TestData.WriteIdx(20, 10, gzip: false);
        string path = Path.Combine(dir, DatasetInfo.IdxTestImages);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 30)]);
        AssertOneLineError(CliRunner.Run("train", "--data", dir, "--device", "cpu"), 1, path, "at byte offset 16", "truncated");
    }

    [Test]
    public void Train_WrongMagic_NamesFile()
    {
        string dir = TestData.WriteIdx(20, 10, gzip: true);
        string labels = Path.Combine(dir, DatasetInfo.IdxTrainLabels + ".gz");
        File.Copy(Path.Combine(dir, DatasetInfo.IdxTrainImages + ".gz"), labels, overwrite: true);
        AssertOneLineError(CliRunner.Run("train", "--data", dir), 1, labels, "magic number is 0x00000803, expected 0x00000801");
    }

    [Test]
    public void Train_LabelOutOfRange_NamesOffset()
    {
        string dir = TestData.WriteIdx(20, 10, gzip: false);
        var labels = new byte[10];
        labels[3] = 77;
        Idx.WriteLabels(Path.Combine(dir, DatasetInfo.IdxTestLabels), labels);
        AssertOneLineError(CliRunner.Run("train", "--data", dir), 1, "at byte offset 11", "label 77 of image 3");
    }
}
