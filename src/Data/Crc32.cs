namespace ScratchNet.Data;

/// <summary>
/// CRC-32 as gzip (RFC 1952), zip and PNG use it: reflected polynomial 0xEDB88320, initial value and final
/// XOR 0xFFFFFFFF. The textbook table-driven form, one byte per step. (System.IO.Hashing has one too, but
/// it is a package, and Data takes no packages.)
/// </summary>
public static class Crc32
{
    static readonly uint[] Table = MakeTable();

    static uint[] MakeTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }

    /// <summary>The CRC of everything hashed so far followed by `data`; start with crc = 0.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        uint c = ~crc;
        foreach (byte b in data)
            c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }
}
