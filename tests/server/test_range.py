"""Range / conditional-request logic and the Go formatting helpers of toolbox.py (no server)."""

import os
import stat
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from daytona_local import toolbox as tb  # noqa: E402


# --------------------------------------------------------------------------- parse_range (Go)
@pytest.mark.parametrize("header,size,expected", [
    ("", 10, []),
    ("bytes=", 10, []),
    ("bytes=0-0", 10, [(0, 1)]),
    ("bytes=0-4", 10, [(0, 5)]),
    ("bytes=5-", 10, [(5, 5)]),
    ("bytes=-3", 10, [(7, 3)]),
    ("bytes=-30", 10, [(0, 10)]),             # suffix longer than the file: the whole file
    ("bytes=2-100", 10, [(2, 8)]),            # end clamped
    ("bytes=0-1, 4-5", 10, [(0, 2), (4, 2)]),
    ("bytes= 0-1 ,\t4-5", 10, [(0, 2), (4, 2)]),
    ("bytes=0-1,20-30", 10, [(0, 2)]),        # a range past the end is dropped
    ("bytes=-0", 10, [(10, 0)]),
])
def test_parse_range(header, size, expected):
    assert tb.parse_range(header, size) == expected


@pytest.mark.parametrize("header,size", [
    ("bits=0-1", 10), ("bytes=1", 10), ("bytes=a-b", 10), ("bytes=5-2", 10),
    ("bytes=--1", 10), ("bytes=-", 10), ("bytes=1-x", 10), ("bytes=-1-", 10),
])
def test_parse_range_invalid(header, size):
    with pytest.raises(tb.RangeError) as ei:
        tb.parse_range(header, size)
    assert not ei.value.no_overlap
    assert str(ei.value) == "invalid range"


@pytest.mark.parametrize("header,size", [("bytes=10-", 10), ("bytes=10-20,30-", 10),
                                          ("bytes=0-", 0)])
def test_parse_range_no_overlap(header, size):
    with pytest.raises(tb.RangeError) as ei:
        tb.parse_range(header, size)
    assert ei.value.no_overlap
    assert str(ei.value) == "invalid range: failed to overlap"


# --------------------------------------------------------------------------- preconditions
MTIME = 1_700_000_000.75          # sub-second part is truncated like Last-Modified
LM = tb.http_date(MTIME)


def pre(headers, method="GET", mtime=MTIME):
    return tb.check_preconditions(lambda k: headers.get(k), method, mtime)


def test_http_date_roundtrip():
    assert LM == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert tb.parse_http_date(LM) == 1_700_000_000
    assert tb.parse_http_date("Tuesday, 14-Nov-23 22:13:20 GMT") == 1_700_000_000
    assert tb.parse_http_date("Tue Nov 14 22:13:20 2023") == 1_700_000_000
    assert tb.parse_http_date("yesterday") is None


def test_if_modified_since():
    assert pre({"If-Modified-Since": LM}) == (304, "")
    assert pre({"If-Modified-Since": tb.http_date(MTIME - 10)}) == (None, "")
    assert pre({"If-Modified-Since": "garbage"}) == (None, "")
    # If-None-Match present (never matching us): If-Modified-Since is ignored
    assert pre({"If-Modified-Since": LM, "If-None-Match": '"x"'}) == (None, "")
    assert pre({"If-None-Match": "*"}) == (304, "")


def test_if_unmodified_since_and_if_match():
    assert pre({"If-Unmodified-Since": tb.http_date(MTIME - 10)}) == (412, "")
    assert pre({"If-Unmodified-Since": LM, "Range": "bytes=0-1"}) == (None, "bytes=0-1")
    assert pre({"If-Match": '"abc"'}) == (412, "")
    assert pre({"If-Match": "*", "Range": "bytes=1-"}) == (None, "bytes=1-")


def test_if_range():
    assert pre({"Range": "bytes=0-1", "If-Range": LM}) == (None, "bytes=0-1")
    assert pre({"Range": "bytes=0-1", "If-Range": tb.http_date(MTIME - 1)}) == (None, "")
    assert pre({"Range": "bytes=0-1", "If-Range": '"etag"'}) == (None, "")
    assert pre({"Range": "bytes=0-1", "If-Range": "nonsense"}) == (None, "")


# --------------------------------------------------------------------------- Go formats
@pytest.mark.parametrize("mode,expected", [
    (stat.S_IFREG | 0o644, "-rw-r--r--"),
    (stat.S_IFDIR | 0o755, "drwxr-xr-x"),
    (stat.S_IFDIR | 0o1777, "dtrwxrwxrwx"),
    (stat.S_IFREG | 0o4755, "urwxr-xr-x"),
    (stat.S_IFREG | 0o2755, "grwxr-xr-x"),
    (stat.S_IFREG | 0o6755, "ugrwxr-xr-x"),
    (stat.S_IFDIR | 0o2775, "dgrwxrwxr-x"),
    (stat.S_IFIFO | 0o644, "prw-r--r--"),
    (stat.S_IFCHR | 0o666, "Dcrw-rw-rw-"),
    (stat.S_IFBLK | 0o660, "Drw-rw----"),
    (stat.S_IFSOCK | 0o777, "Srwxrwxrwx"),
    (stat.S_IFLNK | 0o777, "Lrwxrwxrwx"),
    (stat.S_IFREG | 0o000, "----------"),
])
def test_go_mode_string(mode, expected):
    assert tb.go_mode_string(mode) == expected


def test_go_times():
    ns = 1_782_221_618_500_000_000            # 2026-06-23 13:33:38.5 UTC
    assert tb.go_time_string(ns) == "2026-06-23 13:33:38.5 +0000 UTC"
    assert tb.go_rfc3339(ns) == "2026-06-23T13:33:38.5Z"
    assert tb.go_rfc3339(ns - 500_000_000) == "2026-06-23T13:33:38Z"
    assert tb.go_time_string(ns + 123_456_789 - 500_000_000) == \
        "2026-06-23 13:33:38.123456789 +0000 UTC"
    assert tb.go_rfc3339(-1_000_000_000) == "1969-12-31T23:59:59Z"


def test_file_info_fields():
    st = os.stat_result((stat.S_IFREG | 0o4644, 1, 2, 1, 1001, 1002, 120, 0, 0, 0,
                         0.0, 0.0, 0.0, 0, 1_782_221_618_500_000_000, 0))
    info = tb.file_info("main.py", st)
    assert info == {"name": "main.py", "size": 120, "mode": "urw-r--r--",
                    "modTime": "2026-06-23 13:33:38.5 +0000 UTC",
                    "modifiedAt": "2026-06-23T13:33:38.5Z", "isDir": False,
                    "owner": "1001", "group": "1002", "permissions": "0644"}


def test_go_basename_and_clean():
    assert tb.go_basename("/") == "/"
    assert tb.go_basename("/a/b/") == "b"
    assert tb.go_basename(".") == "."
    assert tb.go_basename("a") == "a"
    assert tb.go_clean("//x/./y/../z/") == "/x/z"
    assert tb.go_clean("") == "."


@pytest.mark.parametrize("pattern,name,ok", [
    ("*.txt", "a.txt", True), ("*.txt", "a.txtx", False), ("a?c", "abc", True),
    ("[a-c]x", "bx", True), ("[^a-c]x", "bx", False), ("[^a-c]x", "dx", True),
    ("\\*", "*", True), ("\\*", "a", False), ("*", ".hidden", True), ("[!a]", "!", True),
])
def test_go_match(pattern, name, ok):
    assert bool(tb.go_match_regex(pattern).match(name)) == ok


@pytest.mark.parametrize("pattern", ["[", "[a-", "\\", "[]", "[a-]"])
def test_go_match_bad_pattern(pattern):
    with pytest.raises(ValueError):
        tb.go_match_regex(pattern)


# --------------------------------------------------------------------------- session formats
@pytest.mark.parametrize("version,split,mode", [
    (None, None, "combined"), ("", "true", "raw"), (None, "false", "combined"),
    ("0.190.0", None, "json"), ("0.167.0", None, "json"), ("0.166.9", None, "raw"),
    ("0.27.0", None, "raw"), ("0.26.3", "true", "combined"), ("0.0.0-dev", None, "json"),
    ("v0.200.1", None, "json"), ("garbage", None, "raw"),
])
def test_output_mode(version, split, mode):
    assert tb.output_mode(version, split) == mode


def test_demux_and_strip():
    log = b"\x01\x01\x01out1\n\x02\x02\x02err1\n\x01\x01\x01out2\n"
    assert tb.demux(log) == (b"out1\nout2\n", b"err1\n")
    assert tb.strip_markers(log) == b"out1\nerr1\nout2\n"


def test_marker_stripper_handles_split_markers():
    log = b"\x01\x01\x01out1\n\x02\x02\x02err1\n\x01\x01\x01\x01x\n"
    for size in range(1, len(log) + 1):
        s = tb.MarkerStripper()
        got = b"".join(s.feed(log[i:i + size]) for i in range(0, len(log), size)) + s.flush()
        assert got == tb.strip_markers(log), size


def test_ws_framer_never_ends_a_frame_with_a_complete_marker():
    import random
    rnd = random.Random(7)
    lines = []
    for i in range(3000):
        marker = tb.STDOUT_PREFIX if rnd.random() < 0.5 else tb.STDERR_PREFIX
        lines.append(marker + b"x" * rnd.randrange(0, 40) + b"\n")
    log = b"".join(lines)
    for step in (1, 5, 1021, 1024, 4096, 65536):
        f = tb.WSFramer()
        frames = []
        for i in range(0, len(log), step):
            frames += f.feed(log[i:i + step])
        frames += f.feed(b"", final=True)
        assert b"".join(frames) == log
        assert all(0 < len(fr) <= 1024 for fr in frames)
        assert not any(fr[-3:] in (tb.STDOUT_PREFIX, tb.STDERR_PREFIX) for fr in frames[:-1])
