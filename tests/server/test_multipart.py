"""Streaming multipart parser and writer helpers (scripts/daytona_local/multipart.py)."""

import io
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from daytona_local import multipart as mp  # noqa: E402


def build(parts, boundary="XyZ", preamble=b"", epilogue=b"", nl=b"\r\n"):
    out = bytearray(preamble)
    for headers, body in parts:
        out += b"--" + boundary.encode() + nl
        for k, v in headers:
            out += k.encode() + b": " + v.encode() + nl
        out += nl + body + nl
    out += b"--" + boundary.encode() + b"--" + nl + epilogue
    return bytes(out)


def parse(body, boundary="XyZ", bufsize=1 << 20):
    r = mp.MultipartReader(io.BytesIO(body).read, boundary, bufsize=bufsize)
    out = []
    while True:
        p = r.next_part()
        if p is None:
            return out
        out.append((p.name, p.filename, p.read_all()))


def field(name, value):
    return ([("Content-Disposition", 'form-data; name="%s"' % name)], value)


def filepart(name, filename, data):
    return ([("Content-Disposition", 'form-data; name="%s"; filename="%s"' % (name, filename)),
             ("Content-Type", "application/octet-stream")], data)


@pytest.mark.parametrize("bufsize", [1, 2, 3, 7, 64, 1 << 20])
def test_parts_in_order_at_any_buffer_size(bufsize):
    tricky = b"a\r\n--XyZnot-a-boundary\r\n--Xy\r\n-\r\n--XyZ-\r\nend"
    body = build([field("files[0].path", b"/home/daytona/a.txt"),
                  filepart("files[0].file", "a.txt", tricky),
                  filepart("files[1].file", "empty", b"")], preamble=b"ignored preamble\r\n")
    assert parse(body, bufsize=bufsize) == [
        ("files[0].path", None, b"/home/daytona/a.txt"),
        ("files[0].file", "a.txt", tricky),
        ("files[1].file", "empty", b"")]


def test_large_part_is_streamed_in_chunks():
    data = os.urandom(3 * (1 << 20) + 123)
    body = build([filepart("file", "big.bin", data)])
    r = mp.MultipartReader(io.BytesIO(body).read, "XyZ", bufsize=1 << 16)
    p = r.next_part()
    sizes, got = [], bytearray()
    for c in p.chunks():
        sizes.append(len(c))
        got += c
    assert bytes(got) == data
    assert max(sizes) <= (1 << 16) + 100          # never the whole part at once
    assert r.next_part() is None


def test_unread_part_is_skipped():
    body = build([filepart("a", "a", b"x" * 1000), field("b", b"bee")])
    r = mp.MultipartReader(io.BytesIO(body).read, "XyZ", bufsize=7)
    assert r.next_part().name == "a"
    p = r.next_part()
    assert (p.name, p.read_all()) == ("b", b"bee")
    assert r.next_part() is None


def test_bare_lf_bodies_are_accepted():
    body = build([field("x", b"1"), field("y", b"two")], nl=b"\n")
    assert parse(body) == [("x", None, b"1"), ("y", None, b"two")]


@pytest.mark.parametrize("body", [
    b"",                                                   # empty
    b"no boundary here at all\r\n",
    b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\npartial data",   # truncated
    b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n",                     # no blank line
    b"--XyZ\r\nbroken header line\r\n\r\nx\r\n--XyZ--\r\n",
])
def test_malformed_bodies_raise(body):
    with pytest.raises(mp.MultipartError):
        parse(body)


def test_only_closing_delimiter_means_no_parts():
    assert parse(b"--XyZ--\r\n") == []


def test_header_params():
    assert mp.parse_header_params('form-data; name="a\\"b"; filename=plain.txt') == \
        ("form-data", {"name": 'a"b', "filename": "plain.txt"})
    # RFC 5987 filename* wins over filename
    assert mp.parse_header_params("attachment; filename=\"x\"; filename*=utf-8''%E2%82%AC.txt")[1][
        "filename"] == "\u20ac.txt"
    assert mp.boundary_from_content_type('multipart/form-data; boundary="a b"') == b"a b"
    assert mp.boundary_from_content_type("multipart/form-data; boundary=abc") == b"abc"
    assert mp.boundary_from_content_type("application/json") is None
    assert mp.boundary_from_content_type("multipart/form-data") is None
    assert mp.boundary_from_content_type(None) is None


def test_writer_layout_matches_go():
    first = mp.part_header("B", [("Content-Type", "t"), ("Content-Disposition", "d")], True)
    assert first == b"--B\r\nContent-Disposition: d\r\nContent-Type: t\r\n\r\n"
    nxt = mp.part_header("B", [("X", "y")], False)
    assert nxt == b"\r\n--B\r\nX: y\r\n\r\n"
    assert mp.closing("B") == b"\r\n--B--\r\n"
    # what the writer produces, the reader reads back
    body = first + b"payload" + nxt + b"second" + mp.closing("B")
    assert [p[2] for p in parse(body, "B")] == [b"payload", b"second"]


def test_content_disposition_escaping():
    cd = mp.content_disposition("form-data", '/h/d/\u20ac "q".txt', "file")
    assert cd == ('form-data; name="file"; filename="/h/d/_ _q_.txt"; '
                  "filename*=utf-8''%2Fh%2Fd%2F%E2%82%AC%20%22q%22.txt")
    assert mp.content_disposition("attachment", "caf\u00e9") == \
        "attachment; filename=\"caf\u00e9\"; filename*=utf-8''caf%C3%A9"
