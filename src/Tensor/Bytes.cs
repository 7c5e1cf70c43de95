using System.Globalization;

namespace ScratchNet.Tensor;

/// <summary>Byte counts for people: "407,080 B", "1.23 MiB"; and parsing of sizes like "8MiB", "6.4MiB", "4GiB".</summary>
public static class Bytes
{
    public static string Format(long bytes) => bytes switch
    {
        < 1024 * 1024 => bytes.ToString("N0", CultureInfo.InvariantCulture) + " B",
        < 1024L * 1024 * 1024 => (bytes / (1024.0 * 1024)).ToString("0.00", CultureInfo.InvariantCulture) + " MiB",
        _ => (bytes / (1024.0 * 1024 * 1024)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
    };

    public static string Exact(long bytes) => bytes.ToString("N0", CultureInfo.InvariantCulture) + " B";

    /// <summary>Parses "123", "123B", "64KiB", "6.4MiB", "4GiB", "1TiB" (also KB/MB/GB/TB as powers of 1000). Returns false on anything else.</summary>
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        string t = text.Trim();
        (string suffix, double factor)[] units =
        [
            ("KiB", 1024), ("MiB", 1024.0 * 1024), ("GiB", 1024.0 * 1024 * 1024), ("TiB", 1024.0 * 1024 * 1024 * 1024),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
            ("K", 1024), ("M", 1024.0 * 1024), ("G", 1024.0 * 1024 * 1024), ("T", 1024.0 * 1024 * 1024 * 1024), ("B", 1),
        ];
        double f = 1;
        foreach (var (suffix, factor) in units)
        {
            if (t.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                f = factor;
                t = t[..^suffix.Length];
                break;
            }
        }
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0) || double.IsInfinity(v))
            return false;
        double total = Math.Floor(v * f);
        if (total < 1 || total > long.MaxValue / 2) return false;
        bytes = (long)total;
        return true;
    }
}
