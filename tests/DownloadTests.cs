using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using NUnit.Framework;
using ScratchNet.Data;

namespace ScratchNet.Tests;

/// <summary>
/// The downloader against a real HTTP server on 127.0.0.1 serving fixture files: a good one, a corrupted
/// one, a truncated one (the connection drops mid-body) and a missing one (404); and no server at all.
/// </summary>
[TestFixture]
public sealed class DownloadTests
{
    sealed class FixtureServer : IDisposable
    {
        readonly HttpListener _listener = new();
        readonly Dictionary<string, Action<HttpListenerResponse>> _routes = [];
        readonly Task _loop;

        public FixtureServer()
        {
            Port = FreePort();
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            _listener.Start();
            _loop = Task.Run(async () =>
            {
                while (_listener.IsListening)
                {
                    HttpListenerContext ctx;
                    try { ctx = await _listener.GetContextAsync(); }
                    catch (Exception) { return; }
                    string name = ctx.Request.Url!.AbsolutePath.TrimStart('/');
                    try
                    {
                        if (_routes.TryGetValue(name, out var route)) route(ctx.Response);
                        else { ctx.Response.StatusCode = 404; ctx.Response.Close(); }
                    }
                    catch (Exception) { /* the client went away */ }
                }
            });
        }

        public int Port { get; }
        public string Url => $"http://127.0.0.1:{Port}/";

        public void Serve(string name, byte[] body) => _routes[name] = r =>
        {
            r.ContentLength64 = body.Length;
            r.OutputStream.Write(body);
            r.Close();
        };

        /// <summary>Announces the whole length, sends half, then drops the connection.</summary>
        public void ServeTruncated(string name, byte[] body) => _routes[name] = r =>
        {
            r.ContentLength64 = body.Length;
            r.OutputStream.Write(body, 0, body.Length / 2);
            r.OutputStream.Flush();
            r.Abort();
        };

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
            _loop.Wait(5000);
        }
    }

    static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    static byte[] Fixture(int seed, int size)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    static string Md5(byte[] b) => Convert.ToHexStringLower(MD5.HashData(b));

    static DatasetSource Source(string url, params (string Name, byte[] Expected)[] files) =>
        new("fixture", url, files.Select(f => new RemoteFile(f.Name, Md5(f.Expected))).ToArray());

    [Test]
    public async Task Good_File_IsVerifiedAndRenamedIntoPlace()
    {
        using var server = new FixtureServer();
        byte[] good = Fixture(1, 300_000);
        server.Serve("good.gz", good);
        string dir = TestData.NewFolder();
        long lastProgress = 0;
        using var http = new HttpClient();
        var files = await Downloads.DownloadAsync(Source(server.Url, ("good.gz", good)), dir, http, (_, done, _) => lastProgress = done);
        Assert.That(files, Is.EqualTo(new[] { Path.Combine(dir, "good.gz") }));
        Assert.That(File.ReadAllBytes(files[0]), Is.EqualTo(good));
        Assert.That(lastProgress, Is.EqualTo(good.Length));
        Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no .part file left");
    }

    [Test]
    public void Corrupted_File_IsRejected_AndNothingIsLeft()
    {
        using var server = new FixtureServer();
        byte[] expected = Fixture(2, 100_000);
        byte[] served = (byte[])expected.Clone();
        served[5000] ^= 1;
        server.Serve("bad.gz", served);
        string dir = TestData.NewFolder();
        using var http = new HttpClient();
        var e = Assert.ThrowsAsync<DownloadException>(() => Downloads.DownloadAsync(Source(server.Url, ("bad.gz", expected)), dir, http))!;
        Assert.That(e.Message, Does.Contain(server.Url + "bad.gz").And.Contain("checksum mismatch").And.Contain(Md5(expected)));
        Assert.That(Directory.GetFiles(dir), Is.Empty);
    }

    [Test]
    public void Truncated_Download_IsRejected_AndNothingIsLeft()
    {
        using var server = new FixtureServer();
        byte[] body = Fixture(3, 2_000_000);
        server.ServeTruncated("cut.gz", body);
        string dir = TestData.NewFolder();
        using var http = new HttpClient();
        var e = Assert.ThrowsAsync<DownloadException>(() => Downloads.DownloadAsync(Source(server.Url, ("cut.gz", body)), dir, http))!;
        Assert.That(e.Message, Does.Contain("cut.gz").And.Contain("truncated"));
        Assert.That(Directory.GetFiles(dir), Is.Empty);
    }

    [Test]
    public void Missing_File_Reports404()
    {
        using var server = new FixtureServer();
        string dir = TestData.NewFolder();
        using var http = new HttpClient();
        var e = Assert.ThrowsAsync<DownloadException>(() => Downloads.DownloadAsync(Source(server.Url, ("gone.gz", [1, 2, 3])), dir, http))!;
        Assert.That(e.Message, Is.EqualTo($"{server.Url}gone.gz: HTTP 404 Not Found"));
        Assert.That(Directory.GetFiles(dir), Is.Empty);
    }

    [Test]
    public void Command_Offline_GivesOneClearLine()
    {
        string dir = TestData.NewFolder();
        var r = CliRunner.Run("download", "mnist", "--to", dir, "--mirror", $"http://127.0.0.1:{FreePort()}/", "--timeout", "10");
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr.Trim(), Does.StartWith("error: http://127.0.0.1:").And.Contain("cannot download").And.Contain("offline"));
        Assert.That(Directory.GetFiles(dir), Is.Empty);
    }

    /// <summary>Files that are not the official ones (here: Debian's recompressed Fashion-MNIST) fail the official MD5.</summary>
    [Test]
    public void Command_WrongFiles_FailTheOfficialChecksum()
    {
        using var server = new FixtureServer();
        var embedded = DatasetLoader.LoadEmbedded(null);
        string src = TestData.NewFolder();
        DatasetLoader.WriteSubset(embedded, src, 10, 10);
        foreach (string f in Directory.GetFiles(src)) server.Serve(Path.GetFileName(f), File.ReadAllBytes(f));
        string dir = TestData.NewFolder();
        var r = CliRunner.Run("download", "fashion-mnist", "--to", dir, "--mirror", server.Url);
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("train-images-idx3-ubyte.gz: checksum mismatch").And.Contain("expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"));
        Assert.That(Directory.GetFiles(dir), Is.Empty);
    }

    [Test]
    public async Task CifarArchive_IsVerifiedAndItsBatchFilesUnpacked()
    {
        string cifar = TestData.WriteCifar(perBatch: 3, testCount: 2);
        using var packed = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(packed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new System.Formats.Tar.TarWriter(gzip))
        {
            foreach (string f in Directory.GetFiles(cifar))
                tar.WriteEntry(f, "cifar-10-batches-bin/" + Path.GetFileName(f));
        }
        byte[] archive = packed.ToArray();
        using var server = new FixtureServer();
        server.Serve("cifar-10-binary.tar.gz", archive);
        string dir = TestData.NewFolder();
        using var http = new HttpClient();
        var source = Source(server.Url, ("cifar-10-binary.tar.gz", archive)) with { IsCifarArchive = true };
        var files = await Downloads.DownloadAsync(source, dir, http);
        Assert.That(files.Select(Path.GetFileName), Is.EquivalentTo(Cifar.TrainFiles.Append(Cifar.TestFile).Append(Cifar.MetaFile)));
        Assert.That(DatasetLoader.Load("cifar10", dir).Train.Count, Is.EqualTo(15));
        Assert.That(File.Exists(Path.Combine(dir, "cifar-10-binary.tar.gz")), Is.False, "the archive is removed once unpacked");
    }

    [Test]
    public void Command_UnknownDataset_IsAUsageError()
    {
        var r = CliRunner.Run("download", "imagenet");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("unknown dataset 'imagenet'"));
    }
}
