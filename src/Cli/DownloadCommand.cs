using ScratchNet.Data;

namespace ScratchNet.Cli;

/// <summary>scratchnet download mnist|fashion-mnist|cifar10 [--to DIR] [--mirror URL]</summary>
public static class DownloadCommand
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        OptionSpec[] specs =
        [
            new("--to", "DIR", "where to put the files (default ./data/NAME, where train looks)"),
            new("--mirror", "URL", "fetch the same file names from another http:// or https:// base URL"),
            new("--timeout", "SECONDS", "give up on a file after this long (default 300)"),
        ];
        var o = new Options("download", args, specs, positional: true);
        if (o.Help || o.Positional.Count == 0)
        {
            stdout.Write(HelpText.Format($"scratchnet download {string.Join("|", DatasetInfo.All.Select(d => d.Name))} [options]",
                """
                Fetches the dataset from its official location into DIR, checking each file's published MD5;
                a file is renamed into place only once verified.
                """, specs));
            return o.Help ? Cli.ExitOk : Cli.ExitUsage;
        }
        if (o.Positional.Count > 1) throw new UsageException($"download takes one dataset, got: {string.Join(" ", o.Positional)}");
        string name = o.Positional[0];
        if (!DatasetInfo.All.Any(d => d.Name == name))
            throw new UsageException($"unknown dataset '{name}'; choose one of: {string.Join(", ", DatasetInfo.All.Select(d => d.Name))}");
        string to = o.String("--to", Path.Combine("data", name));
        int timeout = o.Int("--timeout", 300, 1, 86_400);
        string? mirror = o.String("--mirror");
        // Only an absolute http(s) URL can be a base for the file names; anything else would fail deep
        // inside HttpClient.
        if (mirror is not null && !(Uri.TryCreate(mirror, UriKind.Absolute, out Uri? uri) && uri.Scheme is "http" or "https"))
            throw new UsageException($"--mirror: '{mirror}' is not an http:// or https:// URL (e.g. --mirror https://example.org/mnist/)");
        OutputPath.CheckFolder(to, "--to");
        DatasetSource source = Downloads.For(name, mirror);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(timeout) };
        bool tty = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        string last = "";
        void Progress(string file, long done, long? total)
        {
            if (!tty) return;
            string line = total is long t && t > 0
                ? $"{file}: [{new string('#', (int)(24 * done / t)).PadRight(24, '.')}] {done / 1048576.0:0.0} of {t / 1048576.0:0.0} MiB"
                : $"{file}: {done / 1048576.0:0.0} MiB";
            if (line == last) return;
            last = line;
            stderr.Write("\r" + line.PadRight(78));
        }
        stdout.WriteLine($"downloading {name} from {source.BaseUrl} to {to}");
        List<string> files;
        try
        {
            files = Downloads.DownloadAsync(source, to, http, Progress).GetAwaiter().GetResult();
        }
        finally
        {
            if (tty && last.Length > 0) stderr.Write("\r" + new string(' ', 78) + "\r");
        }
        foreach (string f in files) stdout.WriteLine($"  {f}  ({new FileInfo(f).Length:N0} bytes, verified)");
        stdout.WriteLine($"done: scratchnet train --dataset {name}{(to == Path.Combine("data", name) ? "" : $" --data {to}")}");
        return Cli.ExitOk;
    }
}
