using System.Text.Json;
using ScratchNet.Tensor;
using ScratchNet.Training;

namespace ScratchNet.Cli;

/// <summary>scratchnet selftest [--device ...]: is every kernel correct on this device? Exit 1 if any check fails.</summary>
public static class SelfTestCommand
{
    static readonly OptionSpec[] Specs =
    [
        new("--device", "NAME", ComputeDevice.ChoiceHelp),
        new("--json", null, "one JSON document on stdout instead of text"),
    ];

    public static string Help => HelpText.Format($"scratchnet selftest [--device {ComputeDevice.ChoiceList}] [--json]",
        "Runs every kernel on the device against the plain C# reference on random inputs of awkward sizes,\nthen 20 training steps whose losses must match the CPU accelerator's. Exit code 1 if anything fails.", Specs);

    public static int Run(string[] args, TextWriter stdout, ReferenceOps? reference = null)
    {
        var o = new Options("selftest", args, Specs);
        if (o.Help)
        {
            stdout.Write(Help);
            return Cli.ExitOk;
        }
        string choice = o.Choice("--device", "auto", ComputeDevice.Choices);
        bool json = o.Flag("--json");
        using ComputeDevice device = ComputeDevice.Create(choice);
        if (!json)
        {
            stdout.WriteLine(device.Description);
            stdout.WriteLine($"  {"check",-44} {"sizes",-30} {"max error",10}  {"tolerance",-24} result");
        }
        var rows = SelfTest.Run(device, reference, onRow: json ? null : row =>
            stdout.WriteLine($"  {row.Check,-44} {row.Sizes,-30} {row.MaxError,10:0.00e+0}  {row.Tolerance,-24} {(row.Passed ? "pass" : "FAIL")}{(row.Note.Length > 0 ? "  " + row.Note : "")}"));
        int failed = rows.Count(r => !r.Passed);
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { device = device.Label, deviceKind = device.Kind.ToString(), deviceReason = device.Reason, passed = rows.Count - failed, failed, checks = rows }, TrainCommand.JsonOptions));
        else
            stdout.WriteLine(failed == 0 ? $"selftest passed: all {rows.Count} checks" : $"selftest FAILED: {failed} of {rows.Count} checks");
        return failed == 0 ? Cli.ExitOk : Cli.ExitFailure;
    }
}
