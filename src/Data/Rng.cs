namespace ScratchNet.Data;

/// <summary>
/// A small seeded random generator (SplitMix64) whose whole state is one ulong, so it can be saved in a
/// checkpoint and gives the same numbers on every machine and .NET version (System.Random does not
/// promise that).
/// </summary>
public sealed class Rng
{
    public Rng(ulong state) => State = state;

    public ulong State { get; set; }

    public ulong NextUInt64()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, n) without modulo bias worth mentioning (n is far below 2^32).</summary>
    public int NextInt(int n) => (int)((NextUInt64() >> 32) * (ulong)n >> 32);

    /// <summary>Uniform float in [0, 1) with 24 random bits.</summary>
    public float NextFloat() => (NextUInt64() >> 40) * (1.0f / (1 << 24));

    /// <summary>Uniform float in [-bound, bound).</summary>
    public float Uniform(float bound) => (NextFloat() * 2f - 1f) * bound;

    /// <summary>Fisher-Yates shuffle in place.</summary>
    public void Shuffle(Span<int> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
