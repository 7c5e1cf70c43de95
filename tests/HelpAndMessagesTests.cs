using System.Text.RegularExpressions;
using NUnit.Framework;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Tests;

/// <summary>What --help and the error messages say: generated from one option table, and never misleading.</summary>
[TestFixture]
public sealed class HelpAndMessagesTests
{
    static readonly string[] Commands = ["train", "memory", "samples", "selftest", "bench", "devices", "download", "export-subset"];

    [TestCaseSource(nameof(Commands))]
    public void Help_EndsWithANewline_AndListsOneOptionPerLine(string command)
    {
        var r = CliRunner.Run(command, "--help");
        Assert.That(r.ExitCode, Is.Zero);
        Assert.That(r.Stdout, Does.StartWith($"usage: scratchnet {command}").And.EndWith("\n"));
        Assert.That(r.Stdout, Does.Contain("\noptions:\n"), "the options heading stands alone");
        foreach (string line in r.Stdout[r.Stdout.IndexOf("\noptions:\n", StringComparison.Ordinal)..].Split('\n'))
        {
            // An option's name starts its line; none follows text on the same line (two options run together).
            Assert.That(Regex.IsMatch(line, @"\S\s+--[a-z][a-z-]+ [A-Z]"), Is.False, line);
            Assert.That(line.TrimEnd(), Does.Not.EndWith("options:").Or.EqualTo("options:"), line);
        }
        Assert.That(CliRunner.Run("help", command).Stdout, Is.EqualTo(r.Stdout), "scratchnet help COMMAND");
    }

    [TestCase("train")]
    [TestCase("memory")]
    [TestCase("selftest")]
    [TestCase("bench")]
    public void DeviceHelp_ListsEveryChoiceFromOneTable(string command)
    {
        string help = CliRunner.Run(command, "--help").Stdout;
        foreach (var (name, meaning) in ComputeDevice.ChoiceTable)
            Assert.That(help, Does.Contain($"{name,-7} {meaning}"));
        Assert.That(help, Does.Not.Contain("then CPU)"));
    }

    [Test]
    public void Usage_WithoutACommand_EndsWithANewline()
    {
        var r = CliRunner.Run();
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stdout, Does.EndWith("\n").And.Contain("export-subset"));
    }

    [Test]
    public void MissingCudaDevice_IsExit1_NotACommandLineMistake()
    {
        var r = CliRunner.Run("selftest", "--device", "cuda");
        Assume.That(r.Stderr, Does.Contain("no CUDA device found"), "this machine has a GPU");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Does.StartWith("error: --device cuda: no CUDA device found"));
    }

    [Test]
    public void LearningRateAboveFloat32_SaysTooLarge()
    {
        var r = CliRunner.Run("train", "--lr", "3.5e38");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Is.EqualTo("error: --lr: 3.5e38 is too large for a float32 (at most 3.4028235E+38)"));
    }

    [TestCase("1TiB", 1L << 40)]
    [TestCase("1TB", 1_000_000_000_000L)]
    [TestCase("1000GB", 1_000_000_000_000L)]
    [TestCase("2T", 2L << 40)]
    public void MemoryLimit_TakesTerabytes(string text, long bytes)
    {
        Assert.That(Bytes.TryParse(text, out long parsed), Is.True);
        Assert.That(parsed, Is.EqualTo(bytes));
    }

    [TestCase(0.001f, "--lr 0.0001)")]
    [TestCase(1e30f, "--lr 1E+29)")]
    [TestCase(0.3f, "--lr 0.03)")]
    public void DivergenceHint_PrintsAShortLearningRate(float lr, string hint)
    {
        string message = new DivergenceException(0, 0, double.NaN, lr).Message;
        Assert.That(message, Does.EndWith(hint + "."));
    }

    [Test]
    public void IlgpuMatmulOnTheHostBackend_AndHostMatmulElsewhere_AreRefused()
    {
        var r = CliRunner.Run("train", "--device", "host", "--matmul", "naive");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("the host backend has its own matmuls (host-simd, host-avx512)"));
        var cpu = CliRunner.Run("train", "--device", "cpu", "--matmul", "host-simd");
        Assert.That(cpu.ExitCode, Is.EqualTo(2));
        Assert.That(cpu.Stderr.Trim(), Is.EqualTo("error: --matmul host-simd: a matmul of the host backend; add --device host (naive, blocked, tiled and vector are the ILGPU kernels of --device cpu)"));
    }

    [Test]
    public void OutOfMemoryHint_NeverSaysTheLargestBatchWouldBeZero()
    {
        var r = CliRunner.Run("train", "--device", "host", "--data", TestData.EmbeddedFolder(), "--memory-limit", "700KB");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("hint: not even batch size 1 fits"));
        Assert.That(r.Stderr, Does.Contain("even then not batch size 1 would fit"));
        Assert.That(r.Stderr, Does.Not.Contain("would then be 0"));
    }

    [Test]
    public void DatasetOnDeviceHint_CountsTheDataset_SoFollowingItWorks()
    {
        // The embedded subset on the device: 2,500 x 785 bytes of pixels and labels. A limit a little above
        // them leaves room for some batch; the hint must name one that then trains.
        string data = TestData.EmbeddedFolder();
        var r = CliRunner.Run("train", "--device", "host", "--data", data, "--dataset-on-device", "--memory-limit", "4MiB", "--batch-size", "4096");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        var m = Regex.Match(r.Stderr, @"and the dataset on the device is (\d+) \(--batch-size \1\)");
        Assert.That(m.Success, r.Stderr);
        var follow = CliRunner.Run("train", "--device", "host", "--data", data, "--dataset-on-device", "--memory-limit", "4MiB", "--batch-size", m.Groups[1].Value);
        Assert.That(follow.ExitCode, Is.Zero, follow.Stderr);
    }

    [Test]
    public void Json_DeviceIsTheLabel_AndStringsAreNotHtmlEscaped()
    {
        var r = CliRunner.Run("train", "--device", "host", "--data", TestData.EmbeddedFolder(), "--json");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        Assert.That(doc.RootElement.GetProperty("device").GetString(), Is.EqualTo("host backend (SIMD C# on every core)"));
        Assert.That(doc.RootElement.GetProperty("deviceKind").GetString(), Is.EqualTo("Host"));
        Assert.That(r.Stdout, Does.Not.Contain("\\u0027").And.Not.Contain("\\u002B").And.Contain("C#"));
    }

    [TestCase("host")]
    [TestCase("cpu")]
    public void BatchTooLargeForOneBuffer_IsAOneLineError(string device)
    {
        var r = CliRunner.Run("train", "--device", device, "--data", TestData.EmbeddedFolder(), "--batch-size", "2740000");
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.Trim(), Is.EqualTo("error: --batch-size 2740000: a batch of 2,740,000 samples of 784 values is 2,148,160,000 floats, " +
            "more than one buffer can index (2,147,483,591); the largest batch for this model is 2,739,137"));
    }

    [TestCase("--json=x", "--json takes no value")]
    [TestCase("--epochs --lr 1", "--epochs needs a value")]
    [TestCase("--lr 1 --lr 2", "--lr is given more than once")]
    [TestCase("-x", "unknown option '-x' for 'scratchnet train'")]
    [TestCase("--batchsize:64", "unknown option '--batchsize' for 'scratchnet train'")]
    [TestCase("train", "unexpected argument 'train' for 'scratchnet train'")]
    [TestCase("[x]", "unexpected argument '[x]' for 'scratchnet train'")]
    [TestCase("--data= x", "--data needs a value")]
    [TestCase("--lr 1 --lr", "--lr is given more than once")]
    [TestCase("--lr 1e-50", "--lr: 1e-50 rounds to 0 in float32")]
    [TestCase("--matmul hostsimd", "--matmul: unknown version 'hostsimd'; choose one of: auto, naive, blocked, tiled, vector, host-simd, host-avx512")]
    public void Parser_MistakesAreOneLineUsageErrors(string args, string message)
    {
        var r = CliRunner.Run(["train", .. args.Split(' ')]);
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Is.EqualTo("error: " + message).Or.StartWith("error: " + message + " "));
    }

    [Test]
    public void Parser_TakesEveryValueSpelling_AndNoResponseFiles()
    {
        foreach (string[] spelling in new[] { new[] { "--epochs", "0" }, ["--epochs=0"], ["--epochs:0"] })
            Assert.That(CliRunner.Run(["train", .. spelling]).Stderr.Trim(), Is.EqualTo("error: --epochs: 0 is too small; it must be at least 1"));
        // An argument starting with @ is a name, not a file of more arguments.
        var r = CliRunner.Run("train", "--data", "@nowhere");
        Assert.That(r.Stderr, Does.StartWith("error: @nowhere: data folder not found"));
        Assert.That(CliRunner.Run("train", "--lr", "-0.5").Stderr.Trim(), Is.EqualTo("error: --lr: -0.5 must be greater than 0"));
    }

    [TestCase("--trace", "/proc/scratchnet-trace.json", "no file can be created in that folder")]
    [TestCase("--report", "/tmp/scratchnet-report-folder/", "it is a folder; give a file name")]
    public void MemoryOutputs_ThatCannotBeWritten_AreRefusedBeforeAnyWork(string option, string path, string why)
    {
        var r = CliRunner.Run("memory", "--synthetic", "--device", "host", option, path);
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Is.EqualTo($"error: {option} {path}: cannot write there: {why}"));
        Assert.That(r.Stdout, Is.Empty, "nothing measured first");
        Assert.That(Directory.Exists(path), Is.False);
    }

    [Test]
    public void MatmulKernel_WhenAutoChoseTheHostBackend_SaysSoAndHowToRunIt()
    {
        var r = CliRunner.Run("train", "--data", TestData.EmbeddedFolder(), "--matmul", "blocked");
        Assume.That(r.Stderr, Does.Not.Contain("CUDA,").And.Not.Contain("OpenCL,"), "a GPU was chosen");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr.Trim(), Is.EqualTo("error: --matmul blocked: --device auto chose the host backend, which has its own matmuls (host-simd, host-avx512); " +
            "add --device cpu (or opencl, cuda) to run the ILGPU matmul kernels"));
    }
}
