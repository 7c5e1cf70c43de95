using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Security.Cryptography;

namespace ScratchNet.Data;

/// <summary>One file to fetch and the MD5 its publishers give for it.</summary>
public sealed record RemoteFile(string Name, string Md5);

/// <summary>Where a dataset's files live. CIFAR-10 comes as one archive whose members are unpacked.</summary>
public sealed record DatasetSource(string Dataset, string BaseUrl, RemoteFile[] Files, bool IsCifarArchive = false);

/// <summary>A download failed; the message names the URL or file and what went wrong.</summary>
public sealed class DownloadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// `scratchnet download`: fetches a dataset from its official location, checks every file against the
/// published MD5 while it streams in, writes to a ".part" file and renames it only once verified, so an
/// interrupted, truncated or corrupted download never leaves a file that looks complete.
/// </summary>
public static class Downloads
{
    /// <summary>The official locations and checksums (the same ones torchvision uses).</summary>
    public static DatasetSource For(string dataset, string? mirror = null)
    {
        DatasetSource source = dataset switch
        {
            "fashion-mnist" => new("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            [
                new(DatasetInfo.IdxTrainImages + ".gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                new(DatasetInfo.IdxTrainLabels + ".gz", "25c81989df183df01b3e8a0aad5dffbe"),
                new(DatasetInfo.IdxTestImages + ".gz", "bef4ecab320f06d8554ea6380940ec79"),
                new(DatasetInfo.IdxTestLabels + ".gz", "bb300cfdad3c16e7a12a480ee83cd310"),
            ]),
            "mnist" => new("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
            [
                new(DatasetInfo.IdxTrainImages + ".gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                new(DatasetInfo.IdxTrainLabels + ".gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                new(DatasetInfo.IdxTestImages + ".gz", "9fb629c4189551a2d022fa330f9573f3"),
                new(DatasetInfo.IdxTestLabels + ".gz", "ec29112dd5afa0611ce80d1b7f02629c"),
            ]),
            "cifar10" => new("cifar10", "https://www.cs.toronto.edu/~kriz/",
                [new("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")], IsCifarArchive: true),
            _ => throw new ArgumentException($"unknown dataset '{dataset}'; choose one of: fashion-mnist, mnist, cifar10"),
        };
        return mirror is null ? source : source with { BaseUrl = mirror.EndsWith('/') ? mirror : mirror + "/" };
    }

    /// <summary>
    /// Downloads every file of `source` into `toDir` (CIFAR-10: unpacks its batch files there).
    /// progress(file, bytesSoFar, totalOrNull) is called as bytes arrive. Returns the files written.
    /// </summary>
    public static async Task<List<string>> DownloadAsync(DatasetSource source, string toDir, HttpClient http,
        Action<string, long, long?>? progress = null, CancellationToken cancel = default)
    {
        Directory.CreateDirectory(toDir);
        var written = new List<string>();
        foreach (RemoteFile file in source.Files)
        {
            string target = Path.Combine(toDir, file.Name);
            if (!(File.Exists(target) && Md5Of(target) == file.Md5))
                await FetchAsync(source.BaseUrl + file.Name, file, target, http, progress, cancel);
            if (source.IsCifarArchive)
            {
                written.AddRange(UnpackCifar(target, toDir));
                File.Delete(target);
            }
            else
            {
                written.Add(target);
            }
        }
        return written;
    }

    static async Task FetchAsync(string url, RemoteFile file, string target, HttpClient http, Action<string, long, long?>? progress, CancellationToken cancel)
    {
        string part = target + ".part";
        try
        {
            using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancel);
            if (!response.IsSuccessStatusCode)
                throw new DownloadException($"{url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            long? total = response.Content.Headers.ContentLength;
            using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
            long received = 0;
            await using (var output = new FileStream(part, FileMode.Create, FileAccess.Write, FileShare.None))
            await using (var input = await response.Content.ReadAsStreamAsync(cancel))
            {
                var buffer = new byte[81920];
                int n;
                while ((n = await input.ReadAsync(buffer, cancel)) > 0)
                {
                    await output.WriteAsync(buffer.AsMemory(0, n), cancel);
                    md5.AppendData(buffer, 0, n);
                    received += n;
                    progress?.Invoke(file.Name, received, total);
                }
                await output.FlushAsync(cancel);
                output.Flush(flushToDisk: true);
            }
            if (total is long expected && received != expected)
                throw new DownloadException($"{url}: the download ended after {received} of {expected} bytes (truncated)");
            string got = Convert.ToHexStringLower(md5.GetHashAndReset());
            if (got != file.Md5)
                throw new DownloadException($"{url}: checksum mismatch: MD5 {got}, expected {file.Md5} (corrupted download, or not the official file)");
            File.Move(part, target, overwrite: true);
        }
        catch (HttpRequestException e) when (e.HttpRequestError is HttpRequestError.ResponseEnded or HttpRequestError.InvalidResponse)
        {
            throw new DownloadException($"{url}: the connection broke off during the download (truncated): {e.Message}", e);
        }
        catch (HttpRequestException e)
        {
            throw new DownloadException($"{url}: cannot download ({e.Message}); are you offline? Without a network, copy the files into the folder by hand", e);
        }
        catch (HttpIOException e)
        {
            throw new DownloadException($"{url}: the connection broke off during the download (truncated): {e.Message}", e);
        }
        catch (IOException e) when (e.InnerException is System.Net.Sockets.SocketException)
        {
            throw new DownloadException($"{url}: the connection broke off during the download (truncated): {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new DownloadException($"{part}: cannot write the download ({e.Message})", e);
        }
        catch (TaskCanceledException e) when (!cancel.IsCancellationRequested)
        {
            throw new DownloadException($"{url}: timed out ({e.Message})", e);
        }
        finally
        {
            if (File.Exists(part)) File.Delete(part);
        }
    }

    public static string Md5Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(MD5.HashData(stream));
    }

    /// <summary>Unpacks only the CIFAR-10 batch files and class names (regular files, known names) into toDir.</summary>
    static List<string> UnpackCifar(string archive, string toDir)
    {
        var wanted = new HashSet<string>([.. Cifar.TrainFiles, Cifar.TestFile, Cifar.MetaFile]);
        var written = new List<string>();
        try
        {
            using var file = File.OpenRead(archive);
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(gzip);
            TarEntry? entry;
            while ((entry = tar.GetNextEntry()) is not null)
            {
                string name = Path.GetFileName(entry.Name);
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || !wanted.Remove(name) || entry.DataStream is null)
                    continue;
                string target = Path.Combine(toDir, name);
                string part = target + ".part";
                using (var output = File.Create(part)) entry.DataStream.CopyTo(output);
                File.Move(part, target, overwrite: true);
                written.Add(target);
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new DownloadException($"{archive}: not a valid CIFAR-10 archive ({e.Message})", e);
        }
        if (wanted.Count > 0)
            throw new DownloadException($"{archive}: the archive lacks {string.Join(", ", wanted)}");
        return written;
    }
}
