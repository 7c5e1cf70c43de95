using System.Buffers.Binary;
using System.IO.Compression;

namespace ScratchNet.Data;

/// <summary>
/// Inflates a gzip file (RFC 1952) and checks what .NET's GZipStream lets through: GZipStream accepts a
/// file that lacks its 8-byte trailer or is cut off after any complete deflate block, and reports damage
/// as "unsupported compression method" without saying where. This reader parses the gzip header itself,
/// inflates the deflate data with DeflateStream, and at the end compares the trailer's CRC-32 and ISIZE
/// (length mod 2^32) with the bytes it produced. Every error names the file and a byte offset in it.
/// <code>
/// offset 0:  1F 8B       magic
/// offset 2:  08          compression method: deflate, the only one defined
/// offset 3:  FLG         flags: FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16; bits 5-7 reserved (0)
/// offset 4:  MTIME (4), XFL (1), OS (1)
/// offset 10: [FEXTRA: XLEN (2, little-endian), XLEN bytes] [FNAME: zero-terminated]
///            [FCOMMENT: zero-terminated] [FHCRC: 2 bytes]
/// then:      deflate data, then CRC-32 (4, little-endian) and ISIZE (4, little-endian) of the inflated data
/// </code>
/// The trailer is taken to be the file's last 8 bytes. Dataset files are a single gzip member, and
/// DeflateStream reads ahead in blocks without telling where its data ended, so following the deflate
/// data cannot find the trailer. A file that is cut short, has bytes appended, or holds several members
/// therefore fails the trailer check. The caller owns `file` and disposes it.
/// </summary>
public sealed class GzipReader : Stream
{
    const int TrailerBytes = 8;

    readonly Stream _file;
    readonly string _name;
    readonly long _trailerAt;
    readonly Window _deflateData;
    readonly DeflateStream _inflate;
    uint _crc;
    long _length;
    bool _ended;

    /// <summary>`file` must be seekable; the gzip data is all of it, from offset 0.</summary>
    public GzipReader(Stream file, string name)
    {
        _file = file;
        _name = name;
        long dataStart = SkipHeader();
        _trailerAt = file.Length - TrailerBytes;
        if (_trailerAt < dataStart)
            throw new DataFormatException(name, file.Length,
                $"gzip file ends {file.Length - dataStart} bytes after its header, too short for its 8-byte trailer (truncated file)");
        _deflateData = new Window(file, dataStart, _trailerAt);
        _inflate = new DeflateStream(_deflateData, CompressionMode.Decompress);

        // The trailer's ISIZE is the size to expect, but it is not checked until the end; so never believe
        // more than deflate can produce from this file (at most 1032 bytes per compressed byte).
        Span<byte> isize = stackalloc byte[4];
        file.Position = _trailerAt + 4;
        file.ReadExactly(isize);
        SizeHint = Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(isize), 1032 * (_trailerAt - dataStart));
    }

    /// <summary>How many bytes the data probably inflates to, for sizing a buffer; the real size may differ.</summary>
    public long SizeHint { get; }

    /// <summary>Checks the header and returns the offset where the deflate data starts.</summary>
    long SkipHeader()
    {
        var fixedPart = new byte[10];
        _file.Position = 0;
        int got = _file.ReadAtLeast(fixedPart, fixedPart.Length, throwOnEndOfStream: false);
        if (got < fixedPart.Length)
            throw new DataFormatException(_name, got, "file ends inside the 10-byte gzip header (truncated file)");
        if (fixedPart[0] != 0x1F || fixedPart[1] != 0x8B)
            throw new DataFormatException(_name, 0, $"magic bytes are {fixedPart[0]:X2} {fixedPart[1]:X2}, not gzip's 1F 8B");
        if (fixedPart[2] != 8)
            throw new DataFormatException(_name, 2, $"gzip compression method is {fixedPart[2]}; only 8 (deflate) exists (corrupt file?)");
        byte flags = fixedPart[3];
        if ((flags & 0xE0) != 0)
            throw new DataFormatException(_name, 3, $"gzip flags 0x{flags:X2} set reserved bits (corrupt file?)");
        long at = fixedPart.Length;
        if ((flags & 4) != 0)
        {
            Span<byte> xlen = stackalloc byte[2];
            _file.Position = at;
            if (_file.ReadAtLeast(xlen, 2, throwOnEndOfStream: false) < 2) throw HeaderEndsEarly();
            at += 2 + BinaryPrimitives.ReadUInt16LittleEndian(xlen);
        }
        if ((flags & 8) != 0) at = SkipZeroTerminated(at);
        if ((flags & 16) != 0) at = SkipZeroTerminated(at);
        if ((flags & 2) != 0) at += 2;
        if (at > _file.Length) throw HeaderEndsEarly();
        return at;
    }

    long SkipZeroTerminated(long at)
    {
        if (at > _file.Length) throw HeaderEndsEarly();
        _file.Position = at;
        int b;
        while ((b = _file.ReadByte()) > 0) { }
        if (b < 0) throw HeaderEndsEarly();
        return _file.Position;
    }

    DataFormatException HeaderEndsEarly() =>
        new(_name, _file.Length, "file ends inside the gzip header (truncated file)");

    public override int Read(Span<byte> buffer)
    {
        if (_ended || buffer.IsEmpty) return 0;
        int n;
        try
        {
            n = _inflate.Read(buffer);
        }
        catch (InvalidDataException)
        {
            // DeflateStream's message ("unsupported compression method") misleads, and it does not say
            // where; how far it had read the file is the best offset we have: the damage is before it.
            throw new DataFormatException(_name, _deflateData.Position,
                "corrupt deflate data in the gzip file (the damage is at or before this offset, which is as far as the file had been read)");
        }
        if (n > 0)
        {
            _crc = Crc32.Append(_crc, buffer[..n]);
            _length += n;
            return n;
        }
        _ended = true;
        CheckTrailer();
        return 0;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    void CheckTrailer()
    {
        Span<byte> trailer = stackalloc byte[TrailerBytes];
        _file.Position = _trailerAt;
        _file.ReadExactly(trailer);
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(trailer);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..]);
        if (crc != _crc || size != (uint)_length)
            throw new DataFormatException(_name, _trailerAt,
                $"the gzip trailer (the file's last 8 bytes) says CRC-32 0x{crc:X8} and length {size}, but the data " +
                $"inflated to CRC-32 0x{_crc:X8} and length {(uint)_length} (mod 2^32): the file is cut short, corrupt, or has bytes appended");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _inflate.Dispose();
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _length; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <summary>The bytes [start, end) of a seekable stream, read forward; Position is the offset reached in it.</summary>
    sealed class Window(Stream inner, long start, long end) : Stream
    {
        long _at = start;

        public override int Read(Span<byte> buffer)
        {
            int want = (int)Math.Min(buffer.Length, end - _at);
            if (want <= 0) return 0;
            inner.Position = _at;
            int n = inner.Read(buffer[..want]);
            _at += n;
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _at; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
