using System.Text.RegularExpressions;
using NUnit.Framework;

namespace ScratchNet.Tests;

/// <summary>
/// The README's tutorial, run as written: every `$ scratchnet ...` command between the tutorial markers
/// runs, and its output must be what the README shows. Only timing may differ (seconds, samples/s, ms per step).
/// A block ending in "[...]" shows the beginning of the output only, one starting with it the end, one with both a
/// part from the middle.
/// </summary>
[TestFixture]
public sealed class ReadmeTutorialTests
{
    static string ReadmePath() => Path.Combine(TestData.RepoRoot(), "README.md");

    static IEnumerable<TestCaseData> Commands()
    {
        string readme = File.ReadAllText(ReadmePath());
        int begin = readme.IndexOf("<!-- tutorial:begin -->", StringComparison.Ordinal);
        int end = readme.IndexOf("<!-- tutorial:end -->", StringComparison.Ordinal);
        string tutorial = readme[begin..end];
        foreach (Match m in Regex.Matches(tutorial, @"```console\n\$ scratchnet (?<cmd>[^\n]*)\n(?<out>.*?)\n```", RegexOptions.Singleline))
            yield return new TestCaseData(m.Groups["cmd"].Value, m.Groups["out"].Value).SetName("README: scratchnet " + m.Groups["cmd"].Value);
    }

    [Test]
    public void Tutorial_HasItsCommands() => Assert.That(Commands().Count(), Is.EqualTo(18));

    static string Normalize(string text) => string.Join("\n", text.Replace("\r", "").Split('\n')
        .Select(l => Regex.Replace(l, @"\d+\.\d+ s\b", "<t> s"))
        .Select(l => Regex.Replace(l, @"[\d,]+ samples/s", "<n> samples/s"))
        .Select(l => Regex.Replace(l, @"\d+\.\d+ ms per step", "<t> ms per step"))
        .Select(l => l.TrimEnd()))
        .TrimEnd();

    [TestCaseSource(nameof(Commands))]
    public void Command_PrintsWhatTheReadmeShows(string command, string shown)
    {
        if (!command.Contains("--synthetic")) Requires.FashionMnist();   // the outputs were made with the full dataset
        var r = CliRunner.Run(command.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        string actual = Normalize(r.Stdout + r.Stderr);
        string expected = Normalize(shown);
        bool tail = expected.StartsWith("[...]"), head = expected.EndsWith("[...]");
        if (tail) expected = expected["[...]".Length..].TrimStart('\n');
        if (head) expected = expected[..^"[...]".Length].TrimEnd();
        if (tail && head)
            Assert.That(actual, Does.Contain(expected), $"scratchnet {command}");
        else if (tail)
            Assert.That(actual, Does.EndWith(expected), $"scratchnet {command}");
        else if (head)
            Assert.That(actual, Does.StartWith(expected), $"scratchnet {command}");
        else
        {
            Assert.That(actual, Is.EqualTo(expected), $"scratchnet {command}");
        }
    }
}
