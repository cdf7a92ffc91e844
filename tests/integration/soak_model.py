# SPDX-License-Identifier: Apache-2.0
"""The model of the fault soak (test_faults_soak.py): what each path may hold.

Under faults an operation either does what it says or returns an errno, and a
failed operation that is not idempotent may or may not have taken effect. So
the model keeps, for every path, the SET of states it may be in:

    "A"          absent
    "D"          a directory
    "F:<sha256>" a file holding that version
    "P:<sha256>" a file holding any prefix of that version (a write that failed half-way)

A version is never stored: its bytes are regenerated from a spec (a per-op
seed and a size, or an append of two specs), so that thousands of versions of
up to a few MiB cost no memory. The model also remembers, per path, every
version ever written there and which of them came from a failed close, so that
an observation outside the allowed set can be classified:

    B1  stale: the content of an earlier failed close came back over a newer,
        successful write (the last-chance upload at release landed late), or
        both uploads overlapped and mixed into one file
    B2  short read: a read ended early, at a prefix of an allowed version, without an error
    B4  resurrected delete: unlink returned 0 and the file is back
    other  anything else (loss, stale content, corruption, unexpected errno or name)
"""
import collections
import hashlib
import random

ABSENT = "A"
DIR = "D"


def content(key, size):
    """The bytes of a version: random, reproducible from its key."""
    return random.Random(key).randbytes(size)


def digest(data):
    return hashlib.sha256(data).hexdigest()


class Versions:
    """Every file content the workload produced, by SHA-256, regenerated on demand."""

    def __init__(self):
        self.specs = {}            # sha256 -> ("seed", key, size) | ("cat", sha256, key, size) | ("raw", bytes)
        self.sizes = {}
        self._cache = collections.OrderedDict()
        self.add_raw(b"")

    def add_seeded(self, key, size):
        data = content(key, size)
        return self._add(data, ("seed", key, size))

    def add_append(self, base, key, size):
        data = self.data(base) + content(key, size)
        return self._add(data, ("cat", base, key, size))

    def add_raw(self, data):
        return self._add(data, ("raw", bytes(data)))

    def _add(self, data, spec):
        h = digest(data)
        self.specs.setdefault(h, spec)
        self.sizes[h] = len(data)
        self._remember(h, data)
        return h

    def _remember(self, h, data):
        self._cache[h] = data
        self._cache.move_to_end(h)
        while sum(len(d) for d in self._cache.values()) > 64 * 1024 * 1024 and len(self._cache) > 1:
            self._cache.popitem(last=False)

    def data(self, h):
        if h in self._cache:
            self._cache.move_to_end(h)
            return self._cache[h]
        spec = self.specs[h]
        if spec[0] == "seed":
            data = content(spec[1], spec[2])
        elif spec[0] == "cat":
            data = self.data(spec[1]) + content(spec[2], spec[3])
        else:
            data = spec[1]
        self._remember(h, data)
        return data

    def is_prefix(self, data, h):
        """Whether data is a strict prefix of version h."""
        return len(data) < self.sizes[h] and self.data(h)[:len(data)] == data


EMPTY = digest(b"")


class Model:
    """Allowed states per path (paths are relative to the soak directory)."""

    def __init__(self):
        self.versions = Versions()
        self.allowed = {}                                  # path -> set of states
        self.written = collections.defaultdict(set)         # path -> every version ever sent there
        self.failed_close = collections.defaultdict(set)    # path -> versions of failed closes
        self.removed_by = {}                                # path -> "unlink" | "rename" (last successful removal)

    def get(self, path):
        return self.allowed.get(path, {ABSENT})

    def set(self, path, states):
        self.allowed[path] = set(states)

    def widen(self, path, states):
        self.allowed[path] = self.get(path) | set(states)

    def certain_file(self, path):
        """The one version path must hold, or None when it is uncertain or not a file."""
        s = self.get(path)
        if len(s) == 1:
            (only,) = s
            if only.startswith("F:"):
                return only[2:]
        return None

    def must_exist(self, path):
        return ABSENT not in self.get(path)

    def wrote(self, path, h, failed_close=False):
        self.written[path].add(h)
        if failed_close:
            self.failed_close[path].add(h)

    def renamed(self, src, dst, ok):
        """A rename: certain when it returned 0, either way when it failed."""
        self.written[dst] |= self.written[src]
        self.failed_close[dst] |= self.failed_close[src]
        if ok:
            self.set(dst, self.get(src))
            self.set(src, {ABSENT})
            self.removed_by[src] = "rename"
            self.removed_by.pop(dst, None)
        else:
            self.widen(dst, self.get(src))
            self.widen(src, {ABSENT})

    def unlinked(self, path, ok):
        if ok:
            self.set(path, {ABSENT})
            self.removed_by[path] = "unlink"
        else:
            self.widen(path, {ABSENT})

    # ---- observations
    def state_of(self, data):
        return "F:" + digest(data)

    def accepts(self, path, state, data=None):
        """Whether an observed state (and, for files, its bytes) is allowed."""
        allowed = self.get(path)
        if state in allowed:
            return True
        if data is not None:
            for s in allowed:
                if s.startswith("P:") and (len(data) == 0 or self.versions.is_prefix(data, s[2:])
                                           or digest(data) == s[2:]):
                    return True
        return False

    def classify(self, path, state, data=None, when="read"):
        """The class and a description of an observation that the model does not allow."""
        allowed = self.get(path)
        expect = self.describe_states(allowed)
        if state.startswith("ERR"):
            return "other", f"{when}: error {state[3:]} where {expect} was expected"
        if allowed == {ABSENT} and state != ABSENT:
            how = self.removed_by.get(path)
            if how == "unlink":
                return "B4", f"{when}: resurrected delete: unlink returned 0, yet the path holds {self.describe(state)}"
            return "other", f"{when}: the path holds {self.describe(state)} after a {how or 'removal'} that returned 0"
        if state == ABSENT:
            return "other", f"{when}: LOSS: the path is absent where {expect} was expected"
        if state == DIR or DIR in allowed:
            return "other", f"{when}: got {self.describe(state)}, expected {expect}"
        h = state[2:]
        got = self.describe(state) if data is None else f"file {h[:12]} ({len(data)} B)"
        if data is not None:
            for s in sorted(allowed):
                if s.startswith("F:") and self.versions.is_prefix(data, s[2:]):
                    return "B2", (f"{when}: short read: {len(data)} bytes, a prefix of {self.describe(s)} "
                                  f"(allowed {expect}), without an error")
        if data is not None:
            mixed = self.overlapped(path, data)
            if mixed:
                first, second = mixed
                which = "the second" if second in self.failed_close[path] else "the first"
                return "B1", (f"{when}: CORRUPTION by two overlapping uploads: {got} is "
                              f"{self.describe('F:' + first)} written over the start of "
                              f"{self.describe('F:' + second)} ({which} is the data of an earlier FAILED "
                              f"close); expected {expect}")
            for f in sorted(self.failed_close[path]):
                if self.versions.is_prefix(data, f):
                    return "B1", (f"{when}: STALE: {got} is a prefix of {self.describe('F:' + f)}, the data of "
                                  f"an earlier FAILED close (read up to a newer, smaller size); expected {expect}")
        onto = self.appended_onto(path, data) if data is not None else None
        if onto:
            cls = "B1" if onto in self.failed_close[path] else "other"
            what = "the data of an earlier FAILED close" if cls == "B1" else "an older version of this path"
            return cls, (f"{when}: {got} is an allowed append, but made onto {self.describe('F:' + onto)}, "
                         f"{what}, that was in the sandbox at the time; expected {expect}")
        if h in self.failed_close[path]:
            return "B1", (f"{when}: STALE: {got} is the data of an earlier FAILED close, "
                          f"over a newer successful write; expected {expect}")
        if h in self.written[path]:
            return "other", f"{when}: STALE: {got}, an older version of this path; expected {expect}"
        if h in self.versions.sizes:
            return "other", (f"{when}: WRONG PATH: {got} was written to another path; "
                             f"expected {expect}")
        return "other", f"{when}: CORRUPTION: {got} was never written; expected {expect}"

    def overlapped(self, path, data):
        """(first, second) when data is version first followed by the rest of
        the longer version second, one of them the data of a failed close:
        what a server that writes uploads in place (truncate, then write)
        leaves when the failed close's last try and another save of the same
        path run at the same time, in either order."""
        h = digest(data)
        failed = self.failed_close[path]
        for long_v in sorted(self.written[path]):
            if long_v == h or self.versions.sizes[long_v] != len(data):
                continue
            tail = self.versions.data(long_v)
            for short_v in sorted(self.written[path]):
                n = self.versions.sizes[short_v]
                if not (0 < n < len(data)) or (long_v not in failed and short_v not in failed):
                    continue
                if data[n:] == tail[n:] and data[:n] == self.versions.data(short_v):
                    return short_v, long_v
        return None

    def appended_onto(self, path, data):
        """The version under an allowed append that data holds in place of its
        base (an append reads the sandbox's content first), or None."""
        for s in sorted(self.get(path)):
            spec = self.versions.specs.get(s[2:]) if s.startswith("F:") else None
            if not spec or spec[0] != "cat":
                continue
            size = spec[3]
            if len(data) < size or data[len(data) - size:] != content(spec[2], size):
                continue
            under = digest(data[:len(data) - size])
            if under != spec[1] and under in self.written[path]:
                return under
        return None

    def describe(self, state):
        if state == ABSENT:
            return "absent"
        if state == DIR:
            return "a directory"
        if state.startswith("ERR"):
            return "error " + state[3:]
        h = state[2:]
        size = self.versions.sizes.get(h)
        kind = "a prefix of " if state.startswith("P:") else ""
        return f"{kind}file {h[:12]} ({size if size is not None else '?'} B)"

    def describe_states(self, states):
        return "{" + ", ".join(self.describe(s) for s in sorted(states)) + "}"
