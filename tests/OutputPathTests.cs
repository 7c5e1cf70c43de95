using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>
/// Where a command writes: a place that cannot be written is one line naming the option and the path,
/// found before any work; a bad --mirror is a usage error; export-subset never overwrites its input, nor
/// existing files without --force. (Tests run as root, who may write anywhere a folder can be made; so
/// "unwritable" here is a path whose parent is a regular file.)
/// </summary>
[TestFixture]
public sealed class OutputPathTests
{
    /// <summary>A regular file, to put an output path under.</summary>
    static string AFile()
    {
        string file = Path.Combine(TestData.NewFolder(), "a-file");
        File.WriteAllText(file, "not a folder");
        return file;
    }

    static void AssertOneLine(CliRunner.Result r, int exitCode, string expected)
    {
        Assert.That(r.ExitCode, Is.EqualTo(exitCode), r.Stderr);
        Assert.That(r.Stderr.Trim(), Does.StartWith("error: " + expected));
        Assert.That(r.Stderr.Trim(), Does.Not.Contain("\n").And.Not.Contain("internal error"));
    }

    [Test]
    public void Samples_OutUnderARegularFile_IsNamedBeforeLoadingData()
    {
        string file = AFile();
        string png = Path.Combine(file, "grid.png");
        // --data does not exist: the output is checked first, so that is not what we hear about.
        var r = CliRunner.Run("samples", "--data", "/no/such/dir", "--out", png);
        AssertOneLine(r, 1, $"--out {png}: cannot write there: {file} is a file, not a folder");
    }

    [Test]
    public void Samples_OutIsAnExistingFolder_IsNamed()
    {
        string png = Path.Combine(TestData.NewFolder(), "grid.png");
        Directory.CreateDirectory(png);
        var r = CliRunner.Run("samples", "--data", TestData.EmbeddedFolder(), "--out", png);
        AssertOneLine(r, 1, $"--out {png}: cannot write there: it is a folder");
    }

    [Test]
    public void Download_ToUnderARegularFile_IsNamedBeforeDownloading()
    {
        string to = Path.Combine(AFile(), "mnist");
        var r = CliRunner.Run("download", "mnist", "--to", to, "--mirror", "http://127.0.0.1:9/", "--timeout", "5");
        AssertOneLine(r, 1, $"--to {to}: cannot write there:");
    }

    [TestCase("notaurl")]
    [TestCase("file:///tmp/mnist/")]
    [TestCase("ftp://example.org/mnist/")]
    [TestCase("/tmp/mnist")]
    public void Download_MirrorThatIsNotAnHttpUrl_IsAUsageError(string mirror)
    {
        var r = CliRunner.Run("download", "mnist", "--to", TestData.NewFolder(), "--mirror", mirror);
        AssertOneLine(r, 2, $"--mirror: '{mirror}' is not an http:// or https:// URL");
    }

    [Test]
    public void ExportSubset_ToUnderARegularFile_IsNamedBeforeLoadingData()
    {
        string to = Path.Combine(AFile(), "subset");
        var r = CliRunner.Run("export-subset", "--data", "/no/such/dir", "--to", to);
        AssertOneLine(r, 1, $"--to {to}: cannot write there:");
    }

    [Test]
    public void ExportSubset_IntoItsOwnDataFolder_IsRefusedAndTheDataKept()
    {
        string data = TestData.WriteIdx(20, 10, gzip: true);
        string link = Path.Combine(TestData.NewFolder(), "same-data");
        Directory.CreateSymbolicLink(link, data);
        foreach (string to in new[] { data, data + "/", link })
        {
            var r = CliRunner.Run("export-subset", "--data", data, "--to", to, "--train", "5", "--test", "5", "--force");
            AssertOneLine(r, 2, $"--to: '{to}' is the folder --data reads");
        }
        Assert.That(DatasetLoader.Load("fashion-mnist", data).Train.Count, Is.EqualTo(20), "the dataset is untouched");
    }

    [Test]
    public void ExportSubset_ExistingFiles_AreReplacedOnlyWithForce()
    {
        string data = TestData.WriteIdx(20, 10, gzip: true);
        string to = TestData.NewFolder();
        Assert.That(CliRunner.Run("export-subset", "--data", data, "--to", to, "--train", "8", "--test", "4").ExitCode, Is.Zero);

        var refused = CliRunner.Run("export-subset", "--data", data, "--to", to, "--train", "5", "--test", "5");
        AssertOneLine(refused, 2, $"--to: {Path.Combine(to, DatasetInfo.IdxTrainImages + ".gz")} already exists; pass --force");
        Assert.That(DatasetLoader.Load("fashion-mnist", to).Train.Count, Is.EqualTo(8), "nothing was replaced");

        Assert.That(CliRunner.Run("export-subset", "--data", data, "--to", to, "--train", "5", "--test", "5", "--force").ExitCode, Is.Zero);
        Assert.That(DatasetLoader.Load("fashion-mnist", to).Train.Count, Is.EqualTo(5));
    }

    [Test]
    public void ExportSubset_Help_MentionsForce() =>
        Assert.That(CliRunner.Run("export-subset", "--help").Stdout, Does.Contain("\n  --force              replace files already in --to\n"));
}
