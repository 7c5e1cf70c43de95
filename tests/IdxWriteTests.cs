using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>IDX files (export-subset's output) are written to a temporary file and renamed: a failed write keeps the old file whole.</summary>
[TestFixture]
public sealed class IdxWriteTests
{
    [Test]
    public void FailedWrite_KeepsTheOldFile_AndIsOneOutputError()
    {
        string dir = TestData.NewFolder();
        string path = Path.Combine(dir, DatasetInfo.IdxTrainLabels + ".gz");
        Idx.WriteLabels(path, [1, 2, 3]);
        byte[] before = File.ReadAllBytes(path);
        // Make the temporary file impossible to create: the write must fail and leave the old file alone.
        Directory.CreateDirectory(Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp"));
        var e = Assert.Throws<OutputFileException>(() => Idx.WriteLabels(path, [4, 5, 6, 7]))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("the file that was there, if any, is unchanged"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
    }

    [Test]
    public void Write_ReplacesTheFile_AndLeavesNoTemporaryFile()
    {
        string dir = TestData.NewFolder();
        string path = Path.Combine(dir, DatasetInfo.IdxTestLabels);
        Idx.WriteLabels(path, [1, 2, 3]);
        Idx.WriteLabels(path, [4, 5]);
        Assert.That(Directory.GetFiles(dir), Is.EqualTo(new[] { path }));
        Assert.That(File.ReadAllBytes(path), Has.Length.EqualTo(8 + 2));
    }
}
