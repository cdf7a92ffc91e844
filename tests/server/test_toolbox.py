"""The toolbox API end to end through the real server (fixture `server` from conftest.py).

Every test gets a fresh started sandbox. Paths in the sandbox are the real /home/daytona and
/tmp of its view (with bwrap); the assertions are the contract's (CONTRACT.md sections 3, 4, 6).
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
import uuid

import pytest

V = {"X-Daytona-SDK-Version": "0.190.0"}


class Box:
    """A started sandbox and request helpers for its toolbox."""

    def __init__(self, server):
        self.server = server
        status, body = server.json("POST", "/api/sandbox", {}, expect=200)
        self.id = body["id"]
        server.wait_state(self.id, ("started",))
        self.prefix = "/toolbox/" + self.id

    def url(self, ep, **query):
        q = urllib.parse.urlencode(query, quote_via=urllib.parse.quote) if query else ""
        return self.prefix + ep + ("?" + q if q else "")

    def req(self, method, ep, body=None, headers=None, **query):
        return self.server.request(method, self.url(ep, **query), body, headers)

    def json(self, method, ep, body=None, headers=None, expect=200, **query):
        status, hdrs, data = self.req(method, ep, body, headers, **query)
        assert status == expect, (status, data)
        return json.loads(data) if data else None

    def run(self, command, **kw):
        kw["command"] = command
        return self.json("POST", "/process/execute", kw)

    def upload(self, path, data, filename="f.bin"):
        body, ctype = multipart_body([("file", filename, data)])
        return self.req("POST", "/files/upload", body, {"Content-Type": ctype}, path=path)

    def download(self, path, headers=None):
        return self.req("GET", "/files/download", headers=headers, path=path)

    def destroy(self):
        self.server.request("DELETE", "/api/sandbox/" + self.id)


@pytest.fixture
def box(server):
    b = Box(server)
    yield b
    b.destroy()


def multipart_body(fields, boundary="----dltest" + uuid.uuid4().hex):
    out = bytearray()
    for name, filename, data in fields:
        out += b"--" + boundary.encode() + b"\r\n"
        disp = 'form-data; name="%s"' % name
        if filename is not None:
            disp += '; filename="%s"' % filename
        out += b"Content-Disposition: " + disp.encode() + b"\r\n"
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + (data if isinstance(data, bytes) else data.encode()) + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary


def parse_multipart(data, boundary):
    parts = []
    chunks = data.split(b"--" + boundary.encode())
    assert chunks[-1] in (b"--\r\n", b"--"), "missing closing boundary"
    for c in chunks[1:-1]:
        head, _, body = c[2:].partition(b"\r\n\r\n")
        hdrs = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((hdrs, body[:-2]))
    return parts


# =========================================================================== access & state
def test_unknown_or_destroyed_sandbox_is_401(server, box):
    status, hdrs, data = server.request("GET", "/toolbox/%s/files" % uuid.uuid4())
    body = json.loads(data)
    assert status == 401 and body["code"] == "UNAUTHORIZED"
    assert body["message"] == "unauthorized: authentication failed: Bearer token is invalid"
    assert set(body) >= {"statusCode", "message", "code", "timestamp", "path", "method"}
    # a name is not accepted: the toolbox wants the UUID
    server.json("PUT", "/api/sandbox/%s/labels" % box.id, {"labels": {}})
    status, _, _ = server.request("GET", "/toolbox/%s/files" % "no-such-name")
    assert status == 401
    status, _, _ = server.request("GET", box.url("/files"), headers={"Authorization": "Bearer x"})
    assert status == 401
    server.request("DELETE", "/api/sandbox/" + box.id)
    server.wait_state(box.id, (404,))
    assert box.req("GET", "/files")[0] == 401


def test_stopped_and_archived_sandboxes_are_400(server, box):
    server.json("POST", "/api/sandbox/%s/stop" % box.id)
    server.wait_state(box.id, ("stopped",))
    status, _, data = box.req("GET", "/files")
    body = json.loads(data)
    assert status == 400 and body["code"] == "BAD_REQUEST"
    assert body["message"].startswith("bad request: ") and \
        body["message"].endswith("Is the Sandbox started?")
    server.json("POST", "/api/sandbox/%s/archive" % box.id)
    server.wait_state(box.id, ("archived",))
    status, _, data = box.req("GET", "/files")
    assert status == 400
    assert json.loads(data)["message"].startswith("bad request: failed to get runner info: ")


def test_activity_is_recorded_unless_skipped(server, box):
    def last():
        return server.json("GET", "/api/sandbox/" + box.id)[1]["lastActivityAt"]
    t0 = last()
    time.sleep(0.01)
    box.req("GET", "/version", headers={"X-Daytona-Skip-Last-Activity-Update": "true"})
    assert last() == t0
    time.sleep(0.01)
    box.req("GET", "/version")
    assert last() > t0


def test_misc_endpoints(box):
    assert box.json("GET", "/version")["version"].startswith("v0.")
    for p in ("/work-dir", "/user-home-dir", "/project-dir"):
        assert box.json("GET", p) == {"dir": "/home/daytona"}
    status, hdrs, data = box.req("GET", "/no/such/route")
    assert (status, data) == (404, b"404 page not found")
    assert box.req("HEAD", "/files")[0] == 404


# ================================================================================ files
def test_list_files(box):
    box.run("mkdir -p d/sub && echo hi > d/b.txt && echo x > d/a.txt && ln -s nowhere d/dangling"
            " && ln -s sub d/linkdir && chmod 4755 d/a.txt && mkfifo d/fifo")
    items = box.json("GET", "/files", path="d")
    assert [i["name"] for i in items] == ["a.txt", "b.txt", "fifo", "linkdir", "sub"]
    by = {i["name"]: i for i in items}
    assert by["a.txt"]["mode"] == "urwxr-xr-x" and by["a.txt"]["permissions"] == "0755"
    assert by["b.txt"]["size"] == 3 and by["b.txt"]["isDir"] is False
    assert by["fifo"]["mode"].startswith("p")
    assert by["linkdir"]["isDir"] is True and by["linkdir"]["mode"].startswith("d")
    assert by["sub"]["mode"] == "drwxr-xr-x"
    for i in items:
        assert set(i) == {"name", "size", "mode", "modTime", "modifiedAt", "isDir", "owner",
                          "group", "permissions"}
        assert i["owner"].isdigit() and i["group"].isdigit()
        assert i["modTime"].endswith(" +0000 UTC") and i["modifiedAt"].endswith("Z")
        assert i["modifiedAt"][:19].replace("T", " ") == i["modTime"][:19]
    assert box.json("GET", "/files/", path="d") == items               # trailing-slash alias
    assert "d" in [i["name"] for i in box.json("GET", "/files")]       # default: the work dir
    assert box.json("GET", "/files", path="/home/daytona/d/sub") == []
    assert box.req("GET", "/files", path="nope")[0::2] == (404, b"")
    assert box.req("GET", "/files", path="d/b.txt")[0::2] == (400, b"")
    dev = {i["name"]: i for i in box.json("GET", "/files", path="/dev")}
    assert dev["null"]["mode"] == "Dcrw-rw-rw-"
    assert box.json("GET", "/files/info", path="/tmp")["mode"] == "dtrwxrwxrwx"


def test_file_info(box):
    box.run("echo hello > f.txt; ln -s f.txt link")
    info = box.json("GET", "/files/info", path="/home/daytona/link")
    assert info["name"] == "link" and info["size"] == 6 and not info["isDir"]
    assert box.json("GET", "/files/info", path="f.txt")["name"] == "f.txt"
    assert box.req("GET", "/files/info")[0::2] == (400, b"")
    assert box.req("GET", "/files/info", path="missing")[0::2] == (404, b"")


def test_query_plus_is_a_space(box):
    box.run("echo sp > 'a b.txt'")
    status, _, data = box.server.request("GET", box.prefix + "/files/download?path=a+b.txt")
    assert (status, data) == (200, b"sp\n")


def test_download_and_ranges(box):
    data = bytes(range(256)) * 40           # 10240 bytes
    assert box.upload("/home/daytona/r.bin", data)[0] == 200
    status, h, body = box.download("r.bin")
    assert status == 200 and body == data
    assert h["content-length"] == "10240" and h["accept-ranges"] == "bytes"
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == "attachment; filename=\"r.bin\"; filename*=utf-8''r.bin"
    assert h["cache-control"] == "must-revalidate" and h["pragma"] == "public"
    assert h["content-description"] == "File Transfer" and h["expires"] == "0"
    lm = h["last-modified"]

    status, h, body = box.download("r.bin", {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert h["content-range"] == "bytes 100-199/10240" and h["content-length"] == "100"
    status, h, body = box.download("r.bin", {"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    status, h, body = box.download("r.bin", {"Range": "bytes=10240-"})
    assert status == 416 and h["content-range"] == "bytes */10240"
    status, h, body = box.download("r.bin", {"Range": "bytes=x"})
    assert status == 416 and "content-range" not in h

    status, h, body = box.download("r.bin", {"Range": "bytes=0-9,20-29"})
    assert status == 206 and h["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(h["content-length"]) == len(body)
    parts = parse_multipart(body, h["content-type"].split("boundary=")[1])
    assert [p[1] for p in parts] == [data[0:10], data[20:30]]
    assert parts[1][0]["Content-Range"] == "bytes 20-29/10240"

    assert box.download("r.bin", {"If-Modified-Since": lm})[0] == 304
    assert box.download("r.bin", {"If-Unmodified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"})[0] \
        == 412
    status, _, body = box.download("r.bin", {"Range": "bytes=0-0", "If-Range": lm})
    assert (status, body) == (206, data[:1])
    status, _, body = box.download("r.bin", {"Range": "bytes=0-0",
                                             "If-Range": "Mon, 02 Jan 2006 15:04:05 GMT"})
    assert (status, body) == (200, data)

    assert box.download("/home")[0::2] == (400, b"")
    assert box.download("missing")[0::2] == (404, b"")
    assert box.req("GET", "/files/download")[0] == 400


def test_download_empty_file(box):
    box.run("touch empty")
    status, h, body = box.download("empty")
    assert (status, body, h["content-length"]) == (200, b"", "0")
    assert box.download("empty", {"Range": "bytes=0-"})[0] == 416


def test_upload_creates_parents_and_overwrites(box):
    assert box.upload("/home/daytona/new/deep/f.txt", "first version") == (200, box.upload(
        "/home/daytona/new/deep/f.txt", "first version")[1], b"")
    info = box.json("GET", "/files/info", path="new")
    assert info["permissions"] == "0750"
    box.run("chmod 600 new/deep/f.txt")
    assert box.upload("new/deep/f.txt", "v2")[0] == 200                 # relative path
    assert box.download("new/deep/f.txt")[2] == b"v2"                   # truncated
    assert box.json("GET", "/files/info", path="new/deep/f.txt")["permissions"] == "0600"
    # follows a symlink at the destination, even a dangling one
    box.run("ln -s target.txt link.txt")
    assert box.upload("link.txt", "via link")[0] == 200
    assert box.run("cat target.txt")["result"] == "via link"
    # errors are bare
    assert box.upload("/home/daytona/new", "x")[0::2] == (400, b"")    # a directory
    assert box.upload("/etc/evil", "x")[0::2] == (400, b"")            # read-only root
    assert box.req("POST", "/files/upload", b"x", {"Content-Type": "text/plain"},
                   path="a")[0] == 400
    body, ctype = multipart_body([("other", "f", b"x")])
    assert box.req("POST", "/files/upload", body, {"Content-Type": ctype}, path="a")[0] == 400
    body, ctype = multipart_body([("file", "f", b"x")])
    assert box.req("POST", "/files/upload", body, {"Content-Type": ctype})[0] == 400


def test_truncated_upload_leaves_the_file_alone(box):
    box.upload("keep.txt", "original")
    body, ctype = multipart_body([("file", "f", b"y" * 100000)])
    status, _, _ = box.req("POST", "/files/upload", body[:-30], {"Content-Type": ctype},
                           path="keep.txt")
    assert status == 400
    assert box.download("keep.txt")[2] == b"original"


def test_upload_replaces_in_place_semantics(box):
    box.run("echo old > f; chown 1:2 f; chmod 640 f; echo shared > h1; ln h1 h2; mkfifo pipe")
    assert box.upload("f", "new")[0] == 200
    info = box.json("GET", "/files/info", path="f")
    assert (info["owner"], info["group"], info["permissions"]) == ("1", "2", "0640")
    assert box.upload("h1", "via h1")[0] == 200                   # hard links stay shared
    assert box.download("h2")[2] == b"via h1"
    body, ctype = multipart_body([("file", "f", b"z" * 5000)])
    box.req("POST", "/files/upload", body[:-100], {"Content-Type": ctype}, path="f")
    names = [i["name"] for i in box.json("GET", "/files")]
    assert not [n for n in names if n.startswith(".daytona-upload")]   # nothing left behind
    st, _, data = box.req("POST", "/files/bulk-download", {"paths": ["pipe"]})
    assert st == 200 and b'name="error"' in data                  # a FIFO does not hang


def _chunked_request(server, path, body, ctype):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Authorization", "Bearer " + server.api_key)
    conn.putheader("Content-Type", ctype)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(body), 7001):
        piece = body[i:i + 7001]
        conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    out = (r.status, r.read())
    conn.close()
    return out


def test_upload_with_a_chunked_body(box):
    data = os.urandom(300000)
    body, ctype = multipart_body([("file", "f", data)])
    status, _ = _chunked_request(box.server, box.url("/files/upload", path="c.bin"), body, ctype)
    assert status == 200 and box.download("c.bin")[2] == data


def test_bulk_upload(box):
    big = os.urandom(200000)
    body, ctype = multipart_body([
        ("files[0].path", None, " /home/daytona/b/one.txt "), ("files[0].file", "x", b"one"),
        ("files[1].path", None, "two.bin"), ("ignored", None, "whatever"),
        ("files[1].file", "y", big)])
    status, data = _chunked_request(box.server, box.url("/files/bulk-upload"), body, ctype)
    assert status == 200, data
    assert json.loads(data) == {"files": [{"path": "/home/daytona/b/one.txt", "bytes": 3},
                                          {"path": "two.bin", "bytes": 200000}]}
    assert box.download("b/one.txt")[2] == b"one" and box.download("two.bin")[2] == big
    assert box.json("GET", "/files/info", path="b")["permissions"] == "0755"
    # partial failure: 400 with the errors and what succeeded
    body, ctype = multipart_body([
        ("files[0].path", None, "/etc/nope"), ("files[0].file", "x", b"1"),
        ("files[1].file", "y", b"2"),
        ("files[2].path", None, "ok.txt"), ("files[2].file", "z", b"3")])
    st, _, data = box.req("POST", "/files/bulk-upload", body, {"Content-Type": ctype})
    res = json.loads(data)
    assert st == 400 and res["files"] == [{"path": "ok.txt", "bytes": 1}]
    assert res["errors"][0].startswith("/etc/nope: create: ")
    assert res["errors"][1] == "file[1]: missing .path metadata"
    st, _, data = box.req("POST", "/files/bulk-upload", b"{}", {"Content-Type": "application/json"})
    assert (st, json.loads(data)) == (400, {"errors": ["invalid multipart form"]})


def test_bulk_download(box):
    box.run("echo -n aaa > a.txt; mkdir d; printf 'bb' > '/tmp/b c.json'")
    paths = ["/home/daytona/a.txt", "missing", "d", "/tmp/b c.json", "a.txt"]
    st, h, data = box.req("POST", "/files/bulk-download", {"paths": paths})
    assert st == 200
    assert h["content-type"] == "multipart/form-data; boundary=DAYTONA-FILE-BOUNDARY"
    parts = parse_multipart(data, "DAYTONA-FILE-BOUNDARY")
    assert len(parts) == 5
    (h0, b0), (h1, b1), (h2, b2), (h3, b3), (h4, b4) = parts
    assert h0["Content-Disposition"] == ('form-data; name="file"; filename="/home/daytona/a.txt"; '
                                         "filename*=utf-8''%2Fhome%2Fdaytona%2Fa.txt")
    assert h0["Content-Length"] == "3" and h0["Content-Type"].startswith("text/plain")
    assert b0 == b"aaa" and b3 == b"bb" and b4 == b"aaa"
    assert h3["Content-Type"] == "application/json"
    assert h1["Content-Disposition"].startswith('form-data; name="error"; filename="missing"')
    assert h1["Content-Type"] == "application/json; charset=utf-8"
    e1, e2 = json.loads(b1), json.loads(b2)
    assert (e1["statusCode"], e1["code"], e1["path"], e1["method"]) == \
        (404, "FILE_NOT_FOUND", "missing", "POST")
    assert (e2["statusCode"], e2["code"]) == (400, "INVALID_FILE_PATH")
    for bad in ({"paths": []}, {}, b"nonsense"):
        st, _, data = box.req("POST", "/files/bulk-download", bad)
        assert st == 400
        assert json.loads(data) == {"error": 'request body must be {"paths": [ ... ]} and non-empty'}


def test_folder(box):
    assert box.req("POST", "/files/folder", path="x/y/z", mode="700")[0::2] == (201, b"")
    assert box.json("GET", "/files/info", path="x/y/z")["permissions"] == "0700"
    assert box.req("POST", "/files/folder", path="x/y/z")[0] == 201      # exists: fine
    assert box.json("GET", "/files/info", path="x/y")["permissions"] == "0700"   # MkdirAll
    assert box.req("POST", "/files/folder", path="plain", mode="0755")[0] == 201
    box.run("touch file")
    assert box.req("POST", "/files/folder", path="file")[0::2] == (400, b"")
    assert box.req("POST", "/files/folder", path="bad", mode="9z")[0] == 400
    assert box.req("POST", "/files/folder", path="/etc/newdir")[0] == 400
    assert box.req("POST", "/files/folder")[0] == 400


def test_move(box):
    box.run("echo 1 > a; echo 2 > b; mkdir dir")
    assert box.req("POST", "/files/move", source="a", destination="b")[0::2] == (409, b"")
    assert box.req("POST", "/files/move", source="nope", destination="c")[0::2] == (404, b"")
    assert box.req("POST", "/files/move", source="a", destination="no/parent")[0] == 404
    assert box.req("POST", "/files/move", source="a", destination="dir/a2")[0::2] == (200, b"")
    assert box.download("dir/a2")[2] == b"1\n"
    assert box.req("POST", "/files/move", source="/home/daytona/dir",
                   destination="/tmp/moved")[0] == 200
    assert box.run("cat /tmp/moved/a2")["result"] == "1\n"
    assert box.req("POST", "/files/move", source="/etc/hostname", destination="h")[0] == 400
    assert box.req("POST", "/files/move", source="b")[0] == 400


def test_delete(box):
    box.run("mkdir -p d/e; touch d/e/f; touch file; ln -s d dlink; ln -s file flink; mkdir empty")
    assert box.req("DELETE", "/files", path="d")[0::2] == (400, b"")     # needs recursive=true
    assert box.req("DELETE", "/files", path="empty", recursive="1")[0] == 400
    assert box.req("DELETE", "/files", path="flink")[0::2] == (204, b"")
    assert box.download("file")[0] == 200                               # the link went, not the file
    assert box.req("DELETE", "/files", path="dlink")[0] == 400          # a link to a dir
    assert box.req("DELETE", "/files/", path="dlink", recursive="true")[0] == 204
    assert box.json("GET", "/files/info", path="d/e/f")["size"] == 0
    assert box.req("DELETE", "/files", path="d", recursive="true")[0] == 204
    assert box.req("DELETE", "/files", path="d")[0::2] == (404, b"")
    assert box.req("DELETE", "/files", path="file")[0] == 204
    assert box.req("DELETE", "/files", path="/etc/hostname")[0] == 400
    assert box.req("DELETE", "/files", path="/tmp", recursive="true")[0] == 400
    assert box.req("DELETE", "/files")[0] == 400


def test_permissions(box):
    box.run("touch f")
    assert box.req("POST", "/files/permissions", path="f", mode="0741")[0::2] == (200, b"")
    info = box.json("GET", "/files/info", path="f")
    assert info["permissions"] == "0741" and info["mode"] == "-rwxr----x"
    assert box.req("POST", "/files/permissions", path="f", owner="daemon", group="1")[0] == 200
    info = box.json("GET", "/files/info", path="f")
    assert (info["owner"], info["group"]) == ("1", "1")
    assert box.req("POST", "/files/permissions", path="f", owner="no-such-user")[0] == 400
    assert box.req("POST", "/files/permissions", path="f", mode="xyz")[0] == 400
    assert box.req("POST", "/files/permissions", path="nope", mode="600")[0::2] == (404, b"")
    assert box.req("POST", "/files/permissions", path="/etc/hostname", mode="600")[0] == 400


def test_find_search_replace(box):
    box.run("mkdir -p src/deep; printf 'alpha\\nbeta needle\\r\\ngamma\\n' > src/a.py;"
            " printf 'needle' > src/deep/b.txt; printf 'needle\\0bin' > src/bin.dat;"
            " touch src/empty.py; ln -s a.py src/link.py")
    found = box.json("GET", "/files/find", path="src", pattern="needle")
    assert found == [{"file": "src/a.py", "line": 2, "content": "beta needle"},
                     {"file": "src/deep/b.txt", "line": 1, "content": "needle"}]
    assert box.json("GET", "/files/find", path="/home/daytona/src", pattern="alpha") == [
        {"file": "/home/daytona/src/a.py", "line": 1, "content": "alpha"}]
    assert box.json("GET", "/files/find", path="src", pattern="[a-z]") == []   # literal
    box.run("mkdir long; { echo needle1; head -c 70000 /dev/zero | tr '\\0' y; echo; echo needle2; }"
            " > long/f")
    assert box.run("grep -c needle long/f")["result"] == "2\n"
    assert [m["content"] for m in box.json("GET", "/files/find", path="long",
                                           pattern="needle")] == ["needle1"]   # 64 KiB limit
    assert box.json("GET", "/files/find", path="missing", pattern="x") == []
    assert box.req("GET", "/files/find", path="src")[0] == 400

    res = box.json("GET", "/files/search", path="/home/daytona/src", pattern="*.py")
    assert res == {"files": ["/home/daytona/src/a.py", "/home/daytona/src/empty.py",
                             "/home/daytona/src/link.py"]}
    assert box.json("GET", "/files/search", path="src", pattern="src") == {"files": ["src"]}
    assert box.json("GET", "/files/search", path="nope", pattern="*") == {"files": []}

    res = box.json("POST", "/files/replace", {"files": ["/home/daytona/src/a.py", "nope.txt"],
                                              "pattern": "needle", "newValue": ""})
    assert res[0] == {"file": "/home/daytona/src/a.py", "success": True}
    assert res[1]["success"] is False and "no such file or directory" in res[1]["error"]
    assert box.download("src/a.py")[2] == b"alpha\nbeta \r\ngamma\n"
    assert box.req("POST", "/files/replace", {"files": ["a"], "pattern": "", "newValue": "x"})[0] \
        == 400
    assert box.req("POST", "/files/replace", {"files": ["a"], "pattern": "x"})[0] == 400


def test_paths_never_escape_the_sandbox(server, box):
    data_dir = server.data_dir
    box.run("ln -s /../../.. up; ln -s %s data; ln -s /etc/hostname host" % data_dir)
    names = [i["name"] for i in box.json("GET", "/files", path="up")]
    assert "etc" in names and "home" in names                         # the view's root
    homes = [i["name"] for i in box.json("GET", "/files", path="up/home")]
    assert homes == ["daytona"]                                       # the sandbox's /home
    # the data directory is not reachable through a link (empty, or hidden under /tmp)
    status, _, body = box.req("GET", "/files", path="data")
    assert (status == 404) or json.loads(body) == []
    status, _, body = box.req("GET", "/files", path="data/sandboxes")
    assert status == 404
    assert box.download("up" + os.path.join(data_dir, "state.json"))[0] == 404
    # writing through the link creates files in the sandbox, never in the data directory
    st = box.upload("data/x", "x")[0]
    assert st in (200, 400, 404)
    assert not os.path.exists(os.path.join(data_dir, "x"))
    if st == 200:
        assert box.run("cat data/x")["result"] == "x"
    assert box.download("host")[0] == 200                             # the host's ro /etc


def test_the_file_api_and_commands_see_the_same_root(box):
    names = [i["name"] for i in box.json("GET", "/files", path="/")]
    if box.run("echo $HOME")["result"] != "/home/daytona\n":
        pytest.skip("commands run on the host (no bwrap)")
    assert box.run("ls -A /")["result"].split() == names
    assert {"usr", "etc", "bin", "tmp", "home", "var", "run", "proc", "dev"} <= set(names)
    # of /sys, only the sandbox's own cgroup files (issue 16)
    assert box.run("ls -A /sys /sys/fs")["result"] == "/sys:\nfs\n\n/sys/fs:\ncgroup\n"
    assert [i["name"] for i in box.json("GET", "/files", path="/sys/fs")] == ["cgroup"]
    for p in ("/root", "/work", "/mnt", "/media", "/sys/kernel"):
        assert p[1:] not in names
        assert box.req("GET", "/files/info", path=p)[0] == 404
        assert box.req("GET", "/files", path=p)[0] == 404
        assert box.run("test -e %s || echo missing" % p)["result"] == "missing\n"
    assert box.run("ls /home")["result"] == "daytona\n"
    assert box.download("/usr/bin/python3")[0] == 200
    # /var is the sandbox's own and writable, for both
    assert box.upload("/var/tmp/u.txt", "u")[0] == 200
    assert box.run("cat /var/tmp/u.txt; echo c > /var/log/c.txt")["result"] == "u"
    assert box.download("/var/log/c.txt")[2] == b"c\n"


# ============================================================================= /process/execute
def test_execute(box):
    r = box.run("echo out; echo err >&2; echo out2; exit 5")
    assert r == {"exitCode": 5, "result": "out\nerr\nout2\n"}
    r = box.run("echo $HOME $USER $FOO; pwd", envs={"FOO": "bar"}, cwd="/tmp")
    assert r["result"] == "/home/daytona daytona bar\n/tmp\n"
    assert box.run("pwd")["result"] == "/home/daytona\n"
    assert box.run("printf 'a\\377b'")["result"] == "a\ufffdb"
    assert box.run("kill -9 $$")["exitCode"] in (-1, 137)
    r = box.run("echo x", cwd="/nonexistent")
    assert r["exitCode"] == -1 and "no such file or directory" in r["result"]


def test_execute_errors(box):
    st, _, data = box.req("POST", "/process/execute", {"command": "   "})
    assert st == 400 and json.loads(data)["code"] == "BAD_REQUEST"
    st, _, data = box.req("POST", "/process/execute", {"command": "true", "envs": {"1BAD": "x"}})
    assert st == 400 and json.loads(data)["statusCode"] == 400
    st, _, data = box.req("POST", "/process/execute", b"{not json")
    assert st == 400 and json.loads(data)["message"].startswith("bad request: ")
    t = time.monotonic()
    st, _, data = box.req("POST", "/process/execute", {"command": "sleep 20", "timeout": 1})
    body = json.loads(data)
    assert st == 408 and body["code"] == "REQUEST_TIMEOUT" and time.monotonic() - t < 10
    assert body["message"] == "request timeout: command execution timeout"


def test_file_api_and_commands_share_the_tree(box):
    assert box.upload("/home/daytona/up.txt", "from upload")[0] == 200
    assert box.run("cat /home/daytona/up.txt")["result"] == "from upload"
    box.run("echo from command > /tmp/cmd.txt")
    assert box.download("/tmp/cmd.txt")[2] == b"from command\n"


def test_detached_process_and_later_kill(box):
    t = time.monotonic()
    r = box.run("setsid sh -c 'sleep 100' >/dev/null 2>&1 </dev/null & echo $!")
    assert time.monotonic() - t < 10
    pid = int(r["result"])
    assert box.run("kill -0 %d && echo alive" % pid)["result"] == "alive\n"
    assert box.run("kill -- -%d; echo $?" % pid)["result"] == "0\n"
    deadline = time.time() + 5
    while time.time() < deadline:
        if "dead" in box.run("kill -0 %d 2>/dev/null && echo alive || echo dead" % pid)["result"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("detached process survived kill")


def test_stop_kills_processes(server, box):
    pid = int(box.run("setsid sh -c 'sleep 100' >/dev/null 2>&1 </dev/null & echo $!")["result"])
    server.json("POST", "/api/sandbox/%s/stop" % box.id)
    server.wait_state(box.id, ("stopped",))
    deadline = time.time() + 5
    while os.path.exists("/proc/%d" % pid) and time.time() < deadline:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        assert not os.path.exists("/proc/%d" % pid)


def test_snapshot_seeds_a_new_sandbox(server, box):
    box.upload("/home/daytona/seed.txt", "seeded")
    name = "snap-" + uuid.uuid4().hex[:8]
    server.json("POST", "/api/sandbox/%s/snapshot" % box.id, {"name": name}, expect=200)
    deadline = time.time() + 10
    while time.time() < deadline:
        st, snap = server.json("GET", "/api/snapshots/" + name)
        if st == 200 and snap["state"] == "active":
            break
        time.sleep(0.05)
    st, body = server.json("POST", "/api/sandbox", {"snapshot": name}, expect=200)
    try:
        server.wait_state(body["id"], ("started",))
        st, _, data = server.request("GET", "/toolbox/%s/files/download?path=seed.txt" % body["id"])
        assert (st, data) == (200, b"seeded")
    finally:
        server.request("DELETE", "/api/sandbox/" + body["id"])


# ================================================================================== sessions
def test_session_lifecycle(box):
    assert box.req("POST", "/process/session", {"sessionId": "s1"})[0::2] == (201, b"")
    st, _, data = box.req("POST", "/process/session", {"sessionId": "s1"})
    assert st == 409 and json.loads(data)["message"] == "conflict: session already exists"
    assert box.req("POST", "/process/session", {"sessionId": "entrypoint"})[0] == 400
    assert box.json("GET", "/process/session") == [{"sessionId": "s1", "commands": []}]
    assert box.json("GET", "/process/session/s1") == {"sessionId": "s1", "commands": []}
    st, _, data = box.req("GET", "/process/session/nope")
    assert st == 404 and json.loads(data)["message"] == "not found: session not found"
    assert box.req("DELETE", "/process/session/s1")[0::2] == (204, b"")
    assert box.req("GET", "/process/session/s1")[0] == 404
    assert box.req("DELETE", "/process/session/s1")[0] == 404


def test_session_exec_formats(box):
    box.json("POST", "/process/session", {"sessionId": "s"}, expect=201)
    cmd = {"command": "cd /tmp; export K=v; echo out; echo err >&2"}
    # no version: combined, markers stripped
    r = box.json("POST", "/process/session/s/exec", cmd)
    assert r["exitCode"] == 0 and r["stdout"] is None and r["stderr"] is None
    assert sorted(r["output"].splitlines()) == ["err", "out"]
    # >= 0.167.0: raw output plus stdout/stderr
    r = box.json("POST", "/process/session/s/exec", {"command": "echo $K; pwd; echo e >&2"},
                 headers=V)
    assert r["stdout"] == "v\n/tmp\n" and r["stderr"] == "e\n"
    assert "\x01\x01\x01v\n" in r["output"] and "\x02\x02\x02e\n" in r["output"]
    # between 0.27 and 0.167: raw output only
    r = box.json("POST", "/process/session/s/exec", {"command": "echo m"},
                 headers={"X-Daytona-SDK-Version": "0.100.0"})
    assert r["output"] == "\x01\x01\x01m\n" and r["stdout"] is None
    r = box.json("POST", "/process/session/s/exec", {"command": "echo m"},
                 headers={"X-Daytona-Split-Output": "true"})
    assert r["output"] == "\x01\x01\x01m\n"
    r = box.json("POST", "/process/session/s/exec", {"command": "echo m"},
                 headers={"X-Daytona-SDK-Version": "0.26.0"})
    assert r["output"] == "m\n"
    r = box.json("POST", "/process/session/s/exec", {"command": "exit_code_test() { return 4; };"
                                                     " exit_code_test"})
    assert r["exitCode"] == 4
    # unknown session: the contract's 500
    st, _, data = box.req("POST", "/process/session/nope/exec", {"command": "true"})
    assert st == 500 and json.loads(data) == {
        "statusCode": 500, "message": "failed to execute command: not found: session not found",
        "timestamp": "0001-01-01T00:00:00Z", "path": ""}
    assert box.req("POST", "/process/session/s/exec", b"nope")[0::2] == (400, b"")


def test_session_async_status_input_logs(box):
    box.json("POST", "/process/session", {"sessionId": "s"}, expect=201)
    r = box.json("POST", "/process/session/s/exec",
                 {"command": "echo ready; read x; echo got $x >&2", "runAsync": True},
                 expect=202)
    assert r["output"] is None and r["exitCode"] is None
    cid = r["cmdId"]
    status = box.json("GET", "/process/session/s/command/" + cid)
    assert status == {"id": cid, "command": "echo ready; read x; echo got $x >&2"}
    deadline = time.time() + 5
    while box.req("GET", "/process/session/s/command/%s/logs" % cid)[2] != b"ready\n":
        assert time.time() < deadline
        time.sleep(0.02)
    assert box.req("POST", "/process/session/s/command/%s/input" % cid, {"data": "yes"})[0] == 204
    deadline = time.time() + 5
    while "exitCode" not in box.json("GET", "/process/session/s/command/" + cid):
        assert time.time() < deadline
        time.sleep(0.05)
    st, _, data = box.req("POST", "/process/session/s/command/%s/input" % cid, {"data": "more"})
    assert st == 410 and json.loads(data)["code"] == "GONE"
    logs = box.json("GET", "/process/session/s/command/%s/logs" % cid, headers=V)
    assert logs["stdout"] == "ready\nyes\n" and logs["stderr"] == "got yes\n"
    st, h, data = box.req("GET", "/process/session/s/command/%s/logs" % cid)
    assert st == 200 and h["content-type"].startswith("text/plain")
    assert sorted(data.split(b"\n")) == sorted(b"ready\nyes\ngot yes\n".split(b"\n"))
    st, _, data = box.req("GET", "/process/session/s/command/%s/logs" % cid,
                          headers={"X-Daytona-Split-Output": "true"})
    assert b"\x01\x01\x01ready\n" in data and b"\x02\x02\x02got yes\n" in data
    assert box.req("GET", "/process/session/s/command/nope/logs")[0] == 404
    assert box.req("GET", "/process/session/s/command/nope")[0] == 404
    # the legacy "async" flag and suppressInputEcho
    r = box.json("POST", "/process/session/s/exec",
                 {"command": "read x; echo \"[$x]\"", "async": True, "suppressInputEcho": True},
                 expect=202)
    box.req("POST", "/process/session/s/command/%s/input" % r["cmdId"], {"data": "hidden"})
    out = box.json("POST", "/process/session/s/exec", {"command": "true"}, headers=V)
    assert out["exitCode"] == 0                      # queued behind the async command
    logs = box.json("GET", "/process/session/s/command/%s/logs" % r["cmdId"], headers=V)
    assert logs["stdout"] == "[hidden]\n"


def test_logs_follow_over_http_streams_until_the_end(box):
    box.json("POST", "/process/session", {"sessionId": "s"}, expect=201)
    r = box.json("POST", "/process/session/s/exec",
                 {"command": "for i in 1 2 3; do echo l$i; echo e$i >&2; sleep 0.6; done",
                  "runAsync": True}, expect=202)
    conn = http.client.HTTPConnection(box.server.host, box.server.port, timeout=20)
    conn.request("GET", box.url("/process/session/s/command/%s/logs" % r["cmdId"], follow="true"),
                 headers={"Authorization": "Bearer " + box.server.api_key, **V})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    t = time.monotonic()
    first = resp.read1(100)
    assert time.monotonic() - t < 1.0 and first.startswith((b"l1", b"e1"))   # streamed
    rest = resp.read()
    conn.close()
    text = first + rest
    assert b"\x01" not in text and b"\x02" not in text                      # always combined
    assert sorted(text.split()) == [b"e1", b"e2", b"e3", b"l1", b"l2", b"l3"]


class WS:
    """Minimal RFC 6455 client for the tests."""

    def __init__(self, server, path, protocols=None, headers=None):
        self.sock = socket.create_connection((server.host, server.port), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: x", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
                 "Sec-WebSocket-Version: 13", "Authorization: Bearer " + server.api_key]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + protocols)
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0]
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert b" 101 " in self.status_line and accept in head, head

    def _read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def close(self):
        self.sock.close()


def _ws_collect(ws):
    frames = []
    while True:
        op, payload = ws.frame()
        if op == 8:
            return frames, struct.unpack(">H", payload[:2])[0]
        assert op == 2, "binary frames only"
        frames.append(payload)


def test_logs_follow_over_websocket(box):
    box.json("POST", "/process/session", {"sessionId": "s"}, expect=201)
    r = box.json("POST", "/process/session/s/exec",
                 {"command": "for i in 1 2; do echo out$i; echo err$i >&2; sleep 0.3; done;"
                             " head -c 3000 /dev/zero | tr '\\0' x", "runAsync": True},
                 expect=202)
    path = box.url("/process/session/s/command/%s/logs" % r["cmdId"], follow="true")
    ws = WS(box.server, path, protocols="X-Daytona-SDK-Version~0.190.0")
    frames, code = _ws_collect(ws)
    ws.close()
    assert code == 1000
    assert max(len(f) for f in frames) <= 1024 and len(frames) >= 4
    raw = b"".join(frames)
    assert raw.count(b"\x01\x01\x01") == 3 and raw.count(b"\x02\x02\x02") == 2   # markers kept
    assert raw.endswith(b"\x01\x01\x01" + b"x" * 3000 + b"\n")
    # no version at all: combined (markers stripped server-side)
    ws = WS(box.server, path)
    frames, code = _ws_collect(ws)
    ws.close()
    assert code == 1000 and b"\x01" not in b"".join(frames)
    assert b"".join(frames).endswith(b"x" * 3000 + b"\n")
    # without follow: the current content, then close
    ws = WS(box.server, box.url("/process/session/s/command/%s/logs" % r["cmdId"]),
            headers=V)
    frames, code = _ws_collect(ws)
    ws.close()
    assert code == 1000 and b"".join(frames) == raw


def test_session_commands_see_each_other_and_delete_kills(box):
    box.json("POST", "/process/session", {"sessionId": "s"}, expect=201)
    r = box.json("POST", "/process/session/s/exec",
                 {"command": "sleep 100 & echo $!; sleep 100", "runAsync": True}, expect=202)
    time.sleep(0.3)
    logs = box.json("GET", "/process/session/s/command/%s/logs" % r["cmdId"], headers=V)
    pid = int(logs["stdout"].strip())
    result = []

    def sync_exec():
        result.append(box.req("POST", "/process/session/s/exec", {"command": "echo queued"}))
    t = threading.Thread(target=sync_exec)
    t.start()
    time.sleep(0.2)
    assert box.req("DELETE", "/process/session/s")[0] == 204
    t.join(10)
    assert result and result[0][0] == 400            # the queued sync exec was cancelled
    deadline = time.time() + 8
    while box.run("kill -0 %d 2>/dev/null && echo alive || echo dead" % pid)["result"] \
            != "dead\n":
        assert time.time() < deadline, "session process survived the delete"
        time.sleep(0.1)
