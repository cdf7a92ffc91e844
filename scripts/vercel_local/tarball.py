"""The archive format of POST .../fs/write: gzip'd tar as the SDK's tar-stream writes it.

Understood: ustar headers (name split into prefix/name), PAX extended headers (`x`, per entry:
path, size, mode overrides; `g`, global: ignored), GNU long names (`L`), regular files (`0` and
the old `\\0`) and directories (`5`). Links, devices and fifos are refused: the API documents
regular files only. Every header's checksum is verified; a truncated archive is an error, not a
partial write: the caller writes nothing unless the whole archive parses.
"""
import gzip
import posixpath
import zlib

BLOCK = 512
MAX_UNCOMPRESSED = 32 << 30      # refuse archives that expand beyond the sandbox's disk (32 GB)


class TarError(ValueError):
    pass


class Entry:
    __slots__ = ("name", "kind", "mode", "data")

    def __init__(self, name, kind, mode, data):
        self.name, self.kind, self.mode, self.data = name, kind, mode, data

    def __repr__(self):
        return "Entry(%r, %s, %o, %d bytes)" % (self.name, self.kind, self.mode, len(self.data))


def gunzip(body):
    """The decompressed bytes of a gzip stream (several members allowed, as gzip does)."""
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(body, MAX_UNCOMPRESSED)
        if d.unconsumed_tail:
            raise TarError("archive too large")
        if not d.eof:
            raise TarError("truncated gzip stream")
        if d.unused_data.strip(b"\0"):
            out += gzip.decompress(d.unused_data)
        return out
    except (zlib.error, OSError, EOFError) as e:
        raise TarError("invalid gzip data: %s" % e)


def gunzip_to(read, out, limit=MAX_UNCOMPRESSED, chunk=1 << 20):
    """Decompresses the gzip stream that read(n) yields into the file out, a piece at a time (an
    upload may be larger than memory should hold); several members allowed, as gzip does, and
    zero padding after the last. Returns the decompressed length."""
    total, started = 0, False
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while True:
            data = read(chunk)
            if not data:
                break
            started = True
            while data:
                if d.eof:
                    if not data.strip(b"\0"):
                        break                       # padding after the last member
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                while True:
                    piece = d.decompress(data, chunk)
                    out.write(piece)
                    total += len(piece)
                    if total > limit:
                        raise TarError("archive too large")
                    data = d.unconsumed_tail
                    if d.eof or not data:
                        break
                if d.eof:
                    data = d.unused_data
                    if not data.strip(b"\0"):
                        data = b""
                elif not data:
                    break
        if started and not d.eof:
            raise TarError("truncated gzip stream")
        return total
    except zlib.error as e:
        raise TarError("invalid gzip data: %s" % e)


def _field(block, off, size):
    return block[off:off + size].split(b"\0", 1)[0]


def _octal(block, off, size, what):
    raw = block[off:off + size]
    if raw[:1] and raw[0] & 0x80:             # GNU base-256 for big numbers
        n = int.from_bytes(raw[1:], "big")
        return n
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError("bad %s field in tar header" % what)


def _checksum_ok(block):
    stored = _octal(block, 148, 8, "checksum")
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == unsigned


def parse_pax(data):
    """PAX records "<len> <key>=<value>\\n" -> {key: value} (values are UTF-8 text)."""
    out = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            break
        sp = data.find(b" ", pos)
        if sp < 0:
            raise TarError("bad PAX record")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise TarError("bad PAX record length")
        if length <= 0 or pos + length > len(data):
            raise TarError("bad PAX record length")
        rec = data[sp + 1:pos + length]
        if not rec.endswith(b"\n") or b"=" not in rec:
            raise TarError("bad PAX record")
        key, _, value = rec[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def parse_tar(raw):
    """All entries of an uncompressed tar archive, in order. raw may be a memoryview (of an
    mmap'd archive): the files' data are then views of it, not copies."""
    entries = []
    pos = 0
    pax = {}
    long_name = None
    while True:
        if pos + BLOCK > len(raw):
            if pos >= len(raw) and not entries and not raw:
                return entries                      # an empty body is an empty archive
            raise TarError("truncated tar archive")
        block = bytes(raw[pos:pos + BLOCK])
        pos += BLOCK
        if block == b"\0" * BLOCK:
            return entries                          # end of archive (one zero block suffices)
        if not _checksum_ok(block):
            raise TarError("tar header checksum mismatch")
        typeflag = block[156:157]
        size = _octal(block, 124, 12, "size")
        if typeflag in (b"x", b"g", b"L") or "size" not in pax:
            pass
        else:
            try:
                size = int(pax["size"])
            except ValueError:
                raise TarError("bad PAX size")
        if pos + size > len(raw):
            raise TarError("truncated tar archive")
        data = raw[pos:pos + size]
        pos += (size + BLOCK - 1) // BLOCK * BLOCK
        if typeflag in (b"x", b"g", b"L"):
            data = bytes(data)
        if typeflag == b"x":
            pax = parse_pax(data)
            continue
        if typeflag == b"g":
            continue
        if typeflag == b"L":
            long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            continue
        name = _field(block, 0, 100)
        if block[257:262] == b"ustar":
            prefix = _field(block, 345, 155)
            if prefix:
                name = prefix + b"/" + name
        name = name.decode("utf-8", "surrogateescape")
        if long_name is not None:
            name = long_name
        if "path" in pax:
            name = pax["path"]
        mode = _octal(block, 100, 8, "mode") & 0o7777
        if "mode" in pax:
            try:
                mode = int(pax["mode"], 8) & 0o7777
            except ValueError:
                raise TarError("bad PAX mode")
        pax, long_name = {}, None
        if typeflag in (b"0", b"\0", b"7"):
            if name.endswith("/"):
                raise TarError("regular file entry with a directory name: %s" % name)
            entries.append(Entry(name, "file", mode, data))
        elif typeflag == b"5":
            entries.append(Entry(name, "dir", mode, b""))
        else:
            raise TarError("unsupported tar entry type %r for %s (regular files only)"
                           % (typeflag.decode("latin-1"), name))


def target_path(extract_dir, name):
    """The sandbox path an entry lands at: name relative to extract_dir, normalised (`..`
    resolved lexically, as the SDK does before sending)."""
    if not name or "\0" in name:
        raise TarError("empty entry name")
    return posixpath.normpath(posixpath.join(extract_dir, name.lstrip("/") or "."))
