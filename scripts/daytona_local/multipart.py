"""Streaming multipart/form-data reader and the small writer helpers the toolbox needs.

The reader never holds a whole part in memory: a part's body is handed out in chunks of at most
about `bufsize` bytes as it arrives, so a 10 GiB upload costs one buffer of memory. It follows Go's
mime/multipart rules closely enough for real clients (curl, requests, the Daytona SDKs, Go's own
writer): the preamble before the first delimiter is skipped, a delimiter is only a delimiter when it
is followed by "--" or by optional whitespace and a line end, and a body that ends before the
closing delimiter is an error (MultipartError), never silently accepted.
"""

import urllib.parse

CRLF = b"\r\n"
MAX_HEADER_BYTES = 64 * 1024      # the header block of one part
MAX_FIELD_BYTES = 10 * 1024 * 1024  # a text field read whole with Part.read_all()


class MultipartError(ValueError):
    """The body is not a well-formed multipart body (or ended early)."""


# ---------------------------------------------------------------------------------------------
# header parameter parsing (Content-Type boundary, Content-Disposition name/filename)

def parse_header_params(value):
    """Split 'type; a=b; c="d \\"e\\""; f*=utf-8''%E2%82%AC' into ('type', {a: b, c: 'd "e"', f: '€'}).

    Parameter names are lower-cased. RFC 2231/5987 `name*=charset'lang'pct-encoded` values
    take precedence over the plain `name=` form, as in Go's mime.ParseMediaType."""
    value = value or ""
    i = value.find(";")
    main = (value if i < 0 else value[:i]).strip().lower()
    params, extended = {}, {}
    rest = "" if i < 0 else value[i + 1:]
    pos, n = 0, len(rest)
    while pos < n:
        while pos < n and rest[pos] in " \t;":
            pos += 1
        if pos >= n:
            break
        eq = rest.find("=", pos)
        if eq < 0:
            break
        name = rest[pos:eq].strip().lower()
        pos = eq + 1
        while pos < n and rest[pos] in " \t":
            pos += 1
        if pos < n and rest[pos] == '"':
            pos += 1
            out = []
            while pos < n and rest[pos] != '"':
                if rest[pos] == "\\" and pos + 1 < n:
                    pos += 1
                out.append(rest[pos])
                pos += 1
            pos += 1  # closing quote
            val = "".join(out)
        else:
            end = rest.find(";", pos)
            end = n if end < 0 else end
            val = rest[pos:end].strip()
            pos = end
        if name.endswith("*"):
            extended[name[:-1]] = _decode_rfc2231(val)
        elif name:
            params[name] = val
    params.update({k: v for k, v in extended.items() if v is not None})
    return main, params


# Go's mime.ParseMediaType, which mime/multipart's Part.FormName() uses: a header it rejects
# gives the part no name at all. Reproduced exactly, because real clients produce such headers
# (libcurl writes a file name ending in a backslash as filename="x\", which Go reads as an
# escaped quote and then an unterminated string).
_GO_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')


def _go_is_token_char(c):
    return " " < c < "\x7f" and c not in _GO_TSPECIALS


def _go_is_space(c):
    return c in "\t\n\v\f\r \x85\xa0" or (c > "\xff" and c.isspace())


def _go_lstrip(v):
    i = 0
    while i < len(v) and _go_is_space(v[i]):
        i += 1
    return v[i:]


def _go_consume_token(v):
    for i, c in enumerate(v):
        if not _go_is_token_char(c):
            return v[:i], v[i:]
    return v, ""


def _go_consume_value(v):
    if not v:
        return "", v
    if v[0] != '"':
        return _go_consume_token(v)
    out = []
    i = 1
    while i < len(v):
        c = v[i]
        if c == '"':
            return "".join(out), v[i + 1:]
        if c == "\\" and i + 1 < len(v) and v[i + 1] in _GO_TSPECIALS:
            out.append(v[i + 1])        # an escaped special; any other backslash is literal
            i += 2
            continue
        if c in "\r\n":
            return "", v
        out.append(c)
        i += 1
    return "", v                        # no closing quote


def _go_consume_param(v):
    rest = _go_lstrip(v)
    if not rest.startswith(";"):
        return "", "", v
    rest = _go_lstrip(rest[1:])
    param, rest = _go_consume_token(rest)
    param = param.lower()
    if not param:
        return "", "", v
    rest = _go_lstrip(rest)
    if not rest.startswith("="):
        return "", "", v
    rest = _go_lstrip(rest[1:])
    value, rest2 = _go_consume_value(rest)
    if value == "" and rest2 == rest:
        return "", "", v
    return param, value, rest2


def go_parse_media_type(v):
    """(type, params) as Go's mime.ParseMediaType gives them, or None where it fails."""
    base = v.split(";", 1)[0]
    mtype = base.lower().strip()
    typ, rest = _go_consume_token(mtype)
    if not typ:
        return None
    if rest:
        if not rest.startswith("/"):
            return None
        sub, rest = _go_consume_token(rest[1:])
        if not sub or rest:
            return None
    params, continuation = {}, {}
    v = v[len(base):]
    while v:
        v = _go_lstrip(v)
        if not v:
            break
        key, value, rest = _go_consume_param(v)
        if not key:
            if rest.strip() == ";":
                break                   # a trailing semicolon is fine
            return None
        pmap = params
        if "*" in key:
            pmap = continuation.setdefault(key.split("*", 1)[0], {})
        if key in pmap and pmap[key] != value:
            return None                 # duplicate parameter with another value
        pmap[key] = value
        v = rest
    for key, pieces in continuation.items():
        if key + "*" in pieces:
            dec = _decode_rfc2231(pieces[key + "*"])
            if dec is not None:
                params[key] = dec
            continue
        buf, valid, n = [], False, 0
        while True:
            if "%s*%d" % (key, n) in pieces:
                buf.append(pieces["%s*%d" % (key, n)])
            elif "%s*%d*" % (key, n) in pieces:
                enc = pieces["%s*%d*" % (key, n)]
                if n == 0:
                    dec = _decode_rfc2231(enc)
                    buf.append(dec if dec is not None else "")
                else:
                    buf.append(urllib.parse.unquote(enc, errors="replace"))
            else:
                break
            valid = True
            n += 1
        if valid:
            params[key] = "".join(buf)
    return mtype, params


def go_form_name(disposition):
    """Part.FormName(): the name of a form-data part, "" when Go cannot parse the header."""
    parsed = go_parse_media_type(disposition or "")
    if parsed is None or parsed[0] != "form-data":
        return ""
    return parsed[1].get("name", "")


def _decode_rfc2231(val):
    parts = val.split("'", 2)
    if len(parts) != 3:
        return None
    charset = parts[0] or "us-ascii"
    try:
        return urllib.parse.unquote(parts[2], encoding=charset, errors="replace")
    except LookupError:
        return None


def boundary_from_content_type(content_type):
    """The boundary of a multipart/* Content-Type as bytes, or None when it is not multipart."""
    mtype, params = parse_header_params(content_type or "")
    if not mtype.startswith("multipart/"):
        return None
    b = params.get("boundary")
    if not b or len(b) > 70:
        return None
    return b.encode("latin-1", "replace")


# ---------------------------------------------------------------------------------------------
# reader

class Part:
    """One part of a multipart body. Read it with chunks() / read_all() before asking the reader
    for the next part (unread data is skipped automatically)."""

    def __init__(self, reader, headers):
        self._reader = reader
        self.headers = headers                     # lower-case name -> value (last one wins)
        disp, params = parse_header_params(headers.get("content-disposition", ""))
        self.disposition = disp
        self.name = params.get("name")
        self.filename = params.get("filename")
        self.go_name = go_form_name(headers.get("content-disposition", ""))
        self.done = False

    def chunks(self):
        """Yield the body in chunks (bytes or memoryview), ending at the part's delimiter."""
        while not self.done:
            data = self._reader._body_chunk()
            if data is None:
                self.done = True
                return
            yield data

    def read_all(self, limit=MAX_FIELD_BYTES):
        out = bytearray()
        for c in self.chunks():
            out += c
            if len(out) > limit:
                raise MultipartError("multipart: field too large")
        return bytes(out)

    def skip(self):
        for _ in self.chunks():
            pass


class MultipartReader:
    """Pull parser over a `read(n) -> bytes` function (b'' at end of body)."""

    def __init__(self, read, boundary, bufsize=1 << 20):
        if isinstance(boundary, str):
            boundary = boundary.encode("latin-1")
        self._read = read
        self._bufsize = bufsize
        self._dash_boundary = b"--" + boundary
        self._nl = CRLF                     # switched to b"\n" if the body uses bare LF
        self._delim = self._nl + self._dash_boundary
        self._buf = b""
        self._eof = False
        self._started = False
        self._finished = False
        self._part = None

    # -- buffer management
    def _fill(self):
        if self._eof:
            return False
        data = self._read(self._bufsize)
        if not data:
            self._eof = True
            return False
        self._buf = self._buf + data if self._buf else bytes(data)
        return True

    def _readline(self, limit):
        """A line including its terminator (LF), or what is left at EOF."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line, self._buf = self._buf[:i + 1], self._buf[i + 1:]
                return line
            if len(self._buf) > limit:
                raise MultipartError("multipart: line too long")
            if not self._fill():
                line, self._buf = self._buf, b""
                return line

    # -- delimiter lines
    def _is_delimiter_line(self, line):
        """'--boundary' + optional whitespace + line end: a part follows."""
        if not line.startswith(self._dash_boundary):
            return False
        rest = line[len(self._dash_boundary):]
        if rest.endswith(b"\r\n"):
            self._nl = CRLF
        elif rest.endswith(b"\n"):
            self._nl = b"\n"
        else:
            return False
        self._delim = self._nl + self._dash_boundary
        return rest.strip(b" \t\r\n") == b""

    def _is_final_line(self, line):
        if not line.startswith(self._dash_boundary + b"--"):
            return False
        return line[len(self._dash_boundary) + 2:].strip(b" \t\r\n") == b""

    def next_part(self):
        """The next Part, or None after the closing delimiter. Raises MultipartError on a
        malformed or truncated body."""
        if self._finished:
            return None
        if self._part is not None and not self._part.done:
            self._part.skip()
        self._part = None
        if not self._started:
            # skip the preamble up to the first delimiter line
            while True:
                line = self._readline(MAX_HEADER_BYTES)
                if not line:
                    raise MultipartError("multipart: NextPart: EOF")
                if self._is_final_line(line):
                    self._finished = True
                    return None
                if self._is_delimiter_line(line):
                    break
            self._started = True
        else:
            # positioned right after the newline-dash-boundary of the previous part
            line = self._dash_boundary + self._readline(MAX_HEADER_BYTES)
            if self._is_final_line(line):
                self._finished = True
                return None
            if not self._is_delimiter_line(line):
                raise MultipartError("multipart: expected boundary")
        headers = self._read_headers()
        self._part = Part(self, headers)
        return self._part

    def _read_headers(self):
        headers, total, last = {}, 0, None
        while True:
            line = self._readline(MAX_HEADER_BYTES)
            if not line:
                raise MultipartError("multipart: unexpected EOF in part headers")
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise MultipartError("multipart: headers too large")
            s = line.rstrip(b"\r\n")
            if not s:
                return headers
            if s[:1] in (b" ", b"\t") and last:      # obsolete line folding
                headers[last] += " " + s.strip().decode("latin-1")
                continue
            k, sep, v = s.partition(b":")
            if not sep:
                raise MultipartError("multipart: malformed header line")
            last = k.strip().decode("latin-1").lower()
            headers[last] = v.strip().decode("utf-8", "replace")

    def _body_chunk(self):
        """Next piece of the current part's body, or None at its end (the reader is then left
        just after the newline-dash-boundary)."""
        delim = self._delim
        dl = len(delim)
        start = 0
        while True:
            buf = self._buf
            idx = buf.find(delim, start)
            if idx >= 0:
                after = idx + dl
                if len(buf) - after < 2 and not self._eof:
                    if idx > 0:                       # hand out the data before it first
                        self._buf = buf[idx:]
                        return memoryview(buf)[:idx]
                    self._fill()
                    start = 0
                    continue
                tail = buf[after:after + 2]
                if tail == b"--" or tail[:1] in (b" ", b"\t", b"\r", b"\n"):
                    if idx == 0:
                        self._buf = buf[dl:]
                        return None
                    self._buf = buf[idx:]
                    return memoryview(buf)[:idx]
                if len(tail) < 2 and self._eof:
                    raise MultipartError("multipart: unexpected EOF")
                start = idx + 1                       # '\r\n--boundaryX...' inside the data
                continue
            # no delimiter from `start` on: everything but the last dl-1 bytes (which could be
            # the beginning of one) is body data; bytes before `start` are data in any case
            cut = max(len(buf) - (dl - 1), start)
            if cut > 0:
                self._buf = buf[cut:]
                return memoryview(buf)[:cut]       # no copy of a 1 MiB chunk
            if not self._fill():
                raise MultipartError("multipart: unexpected EOF")
            start = 0


# ---------------------------------------------------------------------------------------------
# writer helpers (Go mime/multipart.Writer byte layout: headers sorted by name)

def part_header(boundary, headers, first):
    """Bytes that open a part: the delimiter, the headers sorted by name, the blank line."""
    b = boundary.encode("latin-1") if isinstance(boundary, str) else boundary
    out = bytearray(b"--" + b + CRLF if first else CRLF + b"--" + b + CRLF)
    for k, v in sorted(headers, key=lambda kv: kv[0]):
        out += k.encode("latin-1") + b": " + v.encode("utf-8") + CRLF
    out += CRLF
    return bytes(out)


def closing(boundary):
    b = boundary.encode("latin-1") if isinstance(boundary, str) else boundary
    return CRLF + b"--" + b + b"--" + CRLF


_ATTR_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~")


def rfc5987(value):
    """`utf-8''<pct-encoded>` for a filename* parameter."""
    return "utf-8''" + "".join(
        c if c in _ATTR_CHARS else "".join("%%%02X" % b for b in c.encode("utf-8", "surrogateescape"))
        for c in value)


def latin1_safe(value):
    """A quoted-string-safe Latin-1 version of value: other characters, quotes, backslashes and
    controls become '_' (the plain filename= parameter)."""
    return "".join(
        c if (0x20 <= ord(c) <= 0xFF and c not in '"\\' and ord(c) != 0x7F) else "_"
        for c in value)


def content_disposition(disposition, filename, name=None):
    s = disposition
    if name is not None:
        s += '; name="%s"' % latin1_safe(name)
    return s + '; filename="%s"; filename*=%s' % (latin1_safe(filename), rfc5987(filename))
