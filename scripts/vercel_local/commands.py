"""Commands of a session: real processes in the sandbox, their output log and NDJSON framing.

The API's output channel is UTF-8 text: each stream (stdout, stderr) is decoded incrementally,
so a character split across two reads stays whole, and invalid bytes become U+FFFD. The log
keeps every chunk in arrival order, tagged with its stream; GET .../logs replays it from the
start and follows it until the command has exited and both pipes are closed.
"""
import codecs
import json
import os
import secrets
import signal
import string
import threading
import time

NDJSON = "application/x-ndjson"
ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix, n=24):
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(n))


def now_ms():
    return int(time.time() * 1000)


def ndjson_line(obj):
    """One NDJSON record: compact JSON, UTF-8, terminated by a single \\n."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


class OutputLog:
    """Decoded output chunks [(stream, text)] with a condition for followers."""

    def __init__(self):
        self.chunks = []
        self.closed = False
        self.cond = threading.Condition()
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace")
                          for s in ("stdout", "stderr")}

    def feed(self, stream, data, final=False):
        text = self._decoders[stream].decode(data, final)
        if text:
            with self.cond:
                self.chunks.append((stream, text))
                self.cond.notify_all()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def follow(self, start=0, stop=None):
        """Yield chunks from index start on, waiting for more until closed (or stop() is true,
        checked once a second)."""
        i = start
        while True:
            with self.cond:
                while i >= len(self.chunks) and not self.closed:
                    if stop is not None and stop():
                        return
                    self.cond.wait(1.0)
                if i >= len(self.chunks):
                    return
                batch = self.chunks[i:]
            i += len(batch)
            for chunk in batch:
                yield chunk

    def text(self, stream):
        with self.cond:
            return "".join(t for s, t in self.chunks if s == stream)


class Command:
    def __init__(self, session_id, name, args, cwd):
        self.id = new_id("cmd_")
        self.session_id = session_id
        self.name = name
        self.args = list(args)
        self.cwd = cwd
        self.started_at = now_ms()
        self.exit_code = None
        self.duration_ms = None
        self.proc = None
        self.log = OutputLog()
        self.done = threading.Event()       # exited and output fully read
        self.killed_by_stop = False         # its session stopped under it
        self._t0 = time.monotonic()
        self._readers = []
        self._timer = None

    def to_json(self):
        d = {"id": self.id, "name": self.name, "args": self.args, "cwd": self.cwd,
             "sessionId": self.session_id, "exitCode": self.exit_code,
             "startedAt": self.started_at}
        if self.duration_ms is not None:
            d["durationMs"] = self.duration_ms
        return d

    # -- running
    def start(self, proc, timeout_ms=None):
        """Attach the started process: read its pipes, wait for it, enforce timeout_ms."""
        self.proc = proc
        for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            t = threading.Thread(target=self._read, args=(stream, pipe), daemon=True)
            t.start()
            self._readers.append(t)
        threading.Thread(target=self._wait, daemon=True).start()
        if timeout_ms:
            self._timer = threading.Timer(timeout_ms / 1000.0, self.kill, (signal.SIGKILL,))
            self._timer.daemon = True
            self._timer.start()

    def fail_to_start(self, message, code=127):
        """The program could not be started: the message on stderr, like a shell reports it."""
        self.log.feed("stderr", message.encode() + b"\n", final=True)
        self.log.close()
        self._finish(code)

    def _read(self, stream, pipe):
        fd = pipe.fileno()
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                self.log.feed(stream, data)
        except OSError:
            pass
        finally:
            self.log.feed(stream, b"", final=True)
            pipe.close()

    def _wait(self):
        rc = self.proc.wait()
        if self._timer is not None:
            self._timer.cancel()
        # a background child may keep a pipe open: do not wait for it for ever
        for t in self._readers:
            t.join(5.0)
        self.log.close()
        self._finish(128 - rc if rc < 0 else rc)     # killed by signal N: 128+N, as shells do

    def _finish(self, code):
        self.duration_ms = int((time.monotonic() - self._t0) * 1000)
        self.exit_code = code
        self.done.set()

    def kill(self, sig):
        """Signal the command's process group (it is a session leader)."""
        if self.proc is None or self.done.is_set():
            return False
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def wait(self, timeout=None):
        return self.done.wait(timeout)
