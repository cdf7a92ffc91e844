"""fs/write archives: what the SDK's tar-stream produces, PAX and GNU long names, bad input."""
import base64
import io
import tarfile

import pytest

from vercel_local import tarball

# gzip(tar) exactly as @vercel/sandbox 3.5.0's FileWriter (tar-stream 3.1.7 + zlib) made it for:
#   vercel/sandbox/a.txt "hello\n" (default mode); a 190-byte name split into ustar prefix/name,
#   mode 0600; a non-ASCII name over 100 bytes (a PAX "path" record), mode 0755, 4 binary bytes.
SDK_ARCHIVE = base64.b64decode(
    "H4sIAAAAAAAAA+3WMQ6CMBQGYHT0FD0BvAd9MLk7eoUiTSQhQABJb+UF3DiYhsVIxQkQG/stXZr07/C/tpXVSWZe"
    "LfIkLpQn3EY1zswAIOSc9SsA6GsvZEgBEBKnCBhggH6/f+4gYy51IyoHJp+lX84QZ5llxW7tFNZa8pmNzY++4O+9"
    "f+0/DftPUUi+4f1vh4O1XMy02HWZpbMPfMsYR6EOUiSyWvAMAIiIPvff51r/ETFA5qgFMz39+fuPIbFSNOe9Nq+6"
    "W95dPbU6N05z+z1Zzi/0H4Dr/Qc0/f03xWZ7XzuCZVmW9X0PSFJXCwAUAAA=")


def make_tar(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data, mode, kind in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = "target"
                tf.addfile(info)
    return buf.getvalue()


def test_the_sdk_archive():
    entries = tarball.parse_tar(tarball.gunzip(SDK_ARCHIVE))
    assert [(e.kind, e.mode, e.data) for e in entries] == [
        ("file", 0o644, b"hello\n"), ("file", 0o600, b"split"), ("file", 0o755, b"\0\1\2\xff")]
    assert entries[0].name == "vercel/sandbox/a.txt"
    assert entries[1].name == "vercel/sandbox/" + "p" * 90 + "/" + "n" * 80 + ".txt"
    assert entries[2].name == "vercel/sandbox/\u00fcn\u00ef/" + "x" * 130 + ".bin"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_format(fmt):
    name = "d/" + "y" * 99 + "/" + "z" * 99       # splittable, so ustar can hold it too
    if fmt != tarfile.USTAR_FORMAT:
        name = "d/" + "\u00e9" * 80 + "-" + "z" * 150    # one component > 100 bytes
    raw = make_tar([(name, b"data", 0o640, "file"), ("dir", b"", 0o700, "dir")], fmt)
    entries = tarball.parse_tar(raw)
    assert [(e.name, e.kind, e.mode, e.data) for e in entries] == [
        (name, "file", 0o640, b"data"), ("dir/", "dir", 0o700, b"")]   # tarfile adds the /


def test_pax_size_and_mode_override_the_header():
    pax = b"".join(tarball_record(k, v) for k, v in (("path", "p.txt"), ("mode", "0751")))
    raw = header("PaxHeader", len(pax), b"x") + pad(pax) + header("short", 3, b"0") + \
        pad(b"abc") + b"\0" * 1024
    [e] = tarball.parse_tar(raw)
    assert (e.name, e.mode, e.data) == ("p.txt", 0o751, b"abc")


def tarball_record(key, value):
    body = (" %s=%s\n" % (key, value)).encode()
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def header(name, size, typeflag, mode=0o644):
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"%07o\0" % mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def pad(data):
    return data + b"\0" * (-len(data) % 512)


def test_bad_archives_are_errors_not_partial_writes():
    good = make_tar([("a", b"1", 0o644, "file")])
    with pytest.raises(tarball.TarError, match="truncated"):
        tarball.parse_tar(good[:700])
    corrupt = bytearray(good)
    corrupt[0] ^= 1
    with pytest.raises(tarball.TarError, match="checksum"):
        tarball.parse_tar(bytes(corrupt))
    with pytest.raises(tarball.TarError, match="regular files only"):
        tarball.parse_tar(make_tar([("a", b"1", 0o644, "file"), ("l", b"", 0o777, "link")]))
    with pytest.raises(tarball.TarError, match="gzip"):
        tarball.gunzip(b"plain text")
    with pytest.raises(tarball.TarError, match="truncated gzip"):
        tarball.gunzip(SDK_ARCHIVE[:-20])
    assert tarball.parse_tar(b"") == []


def test_target_paths_are_relative_to_the_extract_dir():
    assert tarball.target_path("/", "vercel/sandbox/a") == "/vercel/sandbox/a"
    assert tarball.target_path("/vercel/sandbox", "x/../y") == "/vercel/sandbox/y"
    assert tarball.target_path("/vercel/sandbox", "../up") == "/vercel/up"
    assert tarball.target_path("/vercel", "/abs") == "/vercel/abs"
    with pytest.raises(tarball.TarError):
        tarball.target_path("/", "")


def _gunzip_to(body, chunk=7, limit=tarball.MAX_UNCOMPRESSED):
    out = io.BytesIO()
    n = tarball.gunzip_to(io.BytesIO(body).read, out, limit=limit, chunk=chunk)
    assert n == len(out.getvalue())
    return out.getvalue()


def test_gunzip_to_streams_as_gunzip_does():
    """fs/write decompresses a piece at a time into a file (an archive of a file of gigabytes
    is not held in memory): the same bytes as gunzip for every way the body can be cut."""
    import gzip
    raw = tarball.gunzip(SDK_ARCHIVE)
    for chunk in (1, 7, 512, 1 << 20):
        assert _gunzip_to(SDK_ARCHIVE, chunk) == raw
    two = gzip.compress(b"a" * 100000) + gzip.compress(b"b" * 10) + b"\0" * 600
    assert _gunzip_to(two, 4096) == b"a" * 100000 + b"b" * 10
    assert _gunzip_to(b"") == b""
    with pytest.raises(tarball.TarError, match="truncated gzip"):
        _gunzip_to(SDK_ARCHIVE[:-20])
    with pytest.raises(tarball.TarError, match="gzip"):
        _gunzip_to(b"plain text")
    with pytest.raises(tarball.TarError, match="too large"):
        _gunzip_to(gzip.compress(b"\0" * 100000), 4096, limit=50000)


def test_parse_tar_of_a_memoryview_gives_views():
    raw = make_tar([("a", b"12345", 0o644, "file")])
    [e] = tarball.parse_tar(memoryview(raw))
    assert isinstance(e.data, memoryview) and bytes(e.data) == b"12345"
