using System.Globalization;
using System.Text;
using ScratchNet.Tensor;

namespace ScratchNet.Cli;

/// <summary>
/// One command-line option: its name, the word for its value (null for a flag) and its help text, whose
/// later lines continue the description. Parsing and --help are both made from the same list, so an
/// option cannot be accepted without being documented, or documented without being accepted.
/// </summary>
public sealed record OptionSpec(string Name, string? Value, string Help)
{
    public bool IsFlag => Value is null;
}

/// <summary>A command's help page, generated from its option list: usage, description, options, notes.</summary>
public static class HelpText
{
    const int Column = 23;

    public static string Format(string usage, string description, IEnumerable<OptionSpec> options, string? notes = null)
    {
        var b = new StringBuilder();
        b.Append("usage: ").Append(usage).Append('\n');
        if (description.Length > 0) b.Append('\n').Append(description.TrimEnd()).Append('\n');
        var list = options.ToList();
        if (list.Count > 0)
        {
            b.Append("\noptions:\n");
            foreach (var o in list)
            {
                string left = "  " + o.Name + (o.Value is null ? "" : " " + o.Value);
                string[] lines = o.Help.Split('\n');
                if (left.Length >= Column - 1) b.Append(left).Append('\n').Append(' ', Column);
                else b.Append(left.PadRight(Column));
                b.Append(lines[0]).Append('\n');
                foreach (string more in lines.Skip(1)) b.Append(' ', Column).Append(more).Append('\n');
            }
        }
        if (notes is not null) b.Append('\n').Append(notes.TrimEnd()).Append('\n');
        return b.ToString();
    }
}

/// <summary>
/// A small command-line parser: <c>--name value</c>, <c>--name=value</c> and <c>--flag</c>. Each command
/// declares its options up front, so an unknown or misspelt option is an error that names it, and every
/// typed getter names the option when its value is bad.
/// </summary>
public sealed class Options
{
    readonly Dictionary<string, string?> _values = [];
    readonly HashSet<string> _flags;
    readonly HashSet<string> _valued;

    public Options(string command, IEnumerable<string> args, IEnumerable<OptionSpec> specs, bool positional = false)
    {
        Command = command;
        _valued = [.. specs.Where(s => !s.IsFlag).Select(s => s.Name)];
        _flags = [.. specs.Where(s => s.IsFlag).Select(s => s.Name), "--help"];
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string arg = list[i];
            if (arg == "-h") arg = "--help";
            if (!arg.StartsWith("--"))
            {
                if (!positional) throw new UsageException($"unexpected argument '{arg}' for 'scratchnet {command}' (options start with --)");
                Positional.Add(arg);
                continue;
            }
            string name = arg;
            string? value = null;
            int eq = arg.IndexOf('=');
            if (eq > 0) (name, value) = (arg[..eq], arg[(eq + 1)..]);
            if (_flags.Contains(name))
            {
                if (value is not null) throw new UsageException($"{name} takes no value");
                _values[name] = null;
            }
            else if (_valued.Contains(name))
            {
                if (value is null)
                {
                    if (i + 1 >= list.Count || (list[i + 1].StartsWith("--") && !double.TryParse(list[i + 1], CultureInfo.InvariantCulture, out _)))
                        throw new UsageException($"{name} needs a value");
                    value = list[++i];
                }
                _values[name] = value;
            }
            else
            {
                throw new UsageException($"unknown option '{name}' for 'scratchnet {command}' (see scratchnet {command} --help)");
            }
        }
    }

    public string Command { get; }
    public List<string> Positional { get; } = [];

    /// <summary>--help or -h was given.</summary>
    public bool Help => _values.ContainsKey("--help");

    public bool Has(string name) => _values.ContainsKey(name);
    public bool Flag(string name) => _values.ContainsKey(name);

    public string? String(string name) => _values.TryGetValue(name, out var v) ? v : null;

    public string String(string name, string fallback) => String(name) ?? fallback;

    public string Choice(string name, string fallback, IReadOnlyCollection<string> choices)
    {
        string v = String(name, fallback).Trim().ToLowerInvariant();
        if (!choices.Contains(v))
            throw new UsageException($"{name}: unknown value '{v}'; choose one of: {string.Join(", ", choices)}");
        return v;
    }

    /// <summary>An integer in [min, max].</summary>
    public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        string? s = String(name);
        if (s is null) return fallback;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
            throw new UsageException($"{name}: '{s}' is not an integer");
        if (v < min || v > max)
            throw new UsageException(max == int.MaxValue ? $"{name}: {v} is too small; it must be at least {min}" : $"{name}: {v} is outside {min}..{max}");
        return v;
    }

    public ulong ULong(string name, ulong fallback)
    {
        string? s = String(name);
        if (s is null) return fallback;
        if (!ulong.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong v))
            throw new UsageException($"{name}: '{s}' is not a non-negative integer");
        return v;
    }

    /// <summary>A finite number; positiveOnly rejects 0 and below.</summary>
    public float? Float(string name, bool positiveOnly, float? maxExclusive = null)
    {
        string? s = String(name);
        if (s is null) return null;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || !double.IsFinite(d))
            throw new UsageException($"{name}: '{s}' is not a number");
        if (Math.Abs(d) > float.MaxValue)
            throw new UsageException($"{name}: {s} is too large for a float32 (at most {float.MaxValue.ToString(CultureInfo.InvariantCulture)})");
        float v = (float)d;
        if (positiveOnly && v <= 0)
            throw new UsageException($"{name}: {s} must be greater than 0");
        if (v < 0)
            throw new UsageException($"{name}: {s} must not be negative");
        if (maxExclusive is float m && v >= m)
            throw new UsageException($"{name}: {s} must be less than {m}");
        return v;
    }

    /// <summary>Comma-separated positive integers, e.g. "128" or "256,128" or "1,16,64".</summary>
    public int[] IntList(string name, int[] fallback, bool allowEmpty = false)
    {
        string? s = String(name);
        if (s is null) return fallback;
        if (allowEmpty && (s.Trim().Length == 0 || s.Trim() == "none")) return [];
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]) || result[i] <= 0)
                throw new UsageException($"{name}: '{parts[i]}' in '{s}' is not a positive integer");
        }
        return result;
    }

    /// <summary>A byte size such as 8MiB, 6.4MiB, 4GiB, 1TiB or 1000000.</summary>
    public long? Size(string name)
    {
        string? s = String(name);
        if (s is null) return null;
        if (!Bytes.TryParse(s, out long v))
            throw new UsageException($"{name}: '{s}' is not a size (examples: 8MiB, 6.4MiB, 4GiB, 1TiB, 500000)");
        return v;
    }
}
