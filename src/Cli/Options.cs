using System.CommandLine;
using System.CommandLine.Parsing;
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
/// A command's options, parsed from the command line by System.CommandLine and read through typed getters
/// that name the option when its value is bad. Each command declares its options up front (an
/// <see cref="OptionSpec"/> list, the same one its --help is made from), so an unknown or misspelt option
/// is an error that names it.
/// </summary>
public sealed class Options
{
    readonly Dictionary<string, string?> _values = [];

    /// <summary>
    /// Parses with System.CommandLine (Microsoft's parser: --name value, --name=value and --name:value, flags,
    /// positional arguments; response files are off, so an argument starting with @ is just text), then turns
    /// its errors into our one-line messages: an unknown option, a missing value, a value given to a flag.
    /// </summary>
    public Options(string command, IEnumerable<string> args, IEnumerable<OptionSpec> specs, bool positional = false)
    {
        Command = command;
        string[] argv = args.ToArray();
        var flagNames = specs.Where(s => s.IsFlag).Select(s => s.Name).Append("--help").ToHashSet();
        var valuedNames = specs.Where(s => !s.IsFlag).Select(s => s.Name).ToHashSet();
        var seen = new HashSet<string>();
        foreach (string arg in argv)
        {
            int sep = arg.StartsWith("--") ? arg.IndexOfAny(['=', ':']) : -1;
            string name = sep > 0 ? arg[..sep] : arg;
            // System.CommandLine would split "--json=x" into a flag and a stray "x", and give "--to=" the next
            // word as its value: name these mistakes instead.
            if (sep > 0 && flagNames.Contains(name)) throw new UsageException($"{name} takes no value");
            if (sep > 0 && valuedNames.Contains(name) && sep == arg.Length - 1) throw new UsageException($"{name} needs a value");
            if (valuedNames.Contains(name) && !seen.Add(name)) throw new UsageException($"{name} is given more than once");
        }
        var cmd = new Command(command);
        var options = new List<(OptionSpec Spec, Option Option)>();
        foreach (var spec in specs.Append(new OptionSpec("--help", null, "")))
        {
            Option option = spec.IsFlag
                ? new Option<bool>(spec.Name) { Arity = ArgumentArity.Zero }
                : new Option<string>(spec.Name) { HelpName = spec.Value, Arity = ArgumentArity.ExactlyOne };
            if (spec.Name == "--help") option.Aliases.Add("-h");
            cmd.Options.Add(option);
            options.Add((spec, option));
        }
        var rest = new Argument<string[]>("arguments") { Arity = ArgumentArity.ZeroOrMore };
        cmd.Arguments.Add(rest);
        // The command's own name goes first, as System.CommandLine expects, so that an argument that happens to
        // equal it ("scratchnet train train") is an argument, not the command again.
        ParseResult result = cmd.Parse([command, .. argv], new ParserConfiguration { ResponseFileTokenReplacer = null });
        var directive = result.Tokens.FirstOrDefault(t => t.Type == TokenType.Directive);
        if (directive is not null) throw new UsageException($"unexpected argument '{directive.Value}' for 'scratchnet {command}'");

        foreach (var (spec, option) in options)
        {
            OptionResult? r = result.GetResult(option);
            if (r is null || r.Implicit) continue;
            if (spec.IsFlag && r.Tokens.Count > 0) throw new UsageException($"{spec.Name} takes no value");
            if (!spec.IsFlag && r.Tokens.Count == 0) throw new UsageException($"{spec.Name} needs a value");
            if (!spec.IsFlag && r.Tokens.Count > 1) throw new UsageException($"{spec.Name} is given more than once");
            // "--epochs --lr 1": the next option is not a value (a negative number is).
            if (!spec.IsFlag && r.Tokens[0].Value.StartsWith("--") && !double.TryParse(r.Tokens[0].Value, CultureInfo.InvariantCulture, out _))
                throw new UsageException($"{spec.Name} needs a value");
            _values[spec.Name] = spec.IsFlag ? null : r.Tokens[0].Value;
        }
        foreach (string arg in result.UnmatchedTokens.Concat(result.GetValue(rest) ?? []))
        {
            if (arg.StartsWith('-') && !double.TryParse(arg, CultureInfo.InvariantCulture, out _))
                throw new UsageException($"unknown option '{arg.Split('=', ':')[0]}' for 'scratchnet {command}' (see scratchnet {command} --help)");
            if (!positional) throw new UsageException($"unexpected argument '{arg}' for 'scratchnet {command}' (options start with --)");
            Positional.Add(arg);
        }
        if (result.Errors.Count > 0 && !Help) throw new UsageException($"{result.Errors[0].Message} (see scratchnet {command} --help)");
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
        if (d != 0 && v == 0)
            throw new UsageException($"{name}: {s} rounds to 0 in float32 (the smallest is about 1.4E-45)");
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
