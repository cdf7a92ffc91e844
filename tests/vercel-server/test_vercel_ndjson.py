"""NDJSON framing and the UTF-8 output log of commands."""
import json
import threading

from vercel_local.commands import OutputLog, ndjson_line


def test_one_record_per_line_whatever_the_data():
    line = ndjson_line({"stream": "stdout", "data": "a\nb\r\n\u00e9\u2028\"\\"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1     # newlines inside are escaped
    assert b"\r" not in line                                    # so are carriage returns
    assert "é".encode() in line                                 # UTF-8, not \u escapes
    assert json.loads(line) == {"stream": "stdout", "data": "a\nb\r\n\u00e9\u2028\"\\"}
    assert ndjson_line({"a": [1, 2]}) == b'{"a":[1,2]}\n'         # compact


def test_output_is_decoded_per_stream_across_reads():
    log = OutputLog()
    log.feed("stdout", b"caf\xc3")          # a character split across two reads
    log.feed("stderr", b"\xe2\x82")         # interleaved with another split one on stderr
    log.feed("stdout", b"\xa9 \xff!")       # and an invalid byte
    log.feed("stderr", b"\xac")
    log.feed("stdout", b"\xc3", final=True)  # cut short at the end
    log.feed("stderr", b"", final=True)
    log.close()
    assert log.text("stdout") == "café \ufffd!\ufffd"
    assert log.text("stderr") == "€"
    assert [s for s, _ in log.chunks] == ["stdout", "stdout", "stderr", "stdout"]


def test_follow_replays_from_the_start_then_waits_until_closed():
    log = OutputLog()
    log.feed("stdout", b"one\n")
    seen = []
    started = threading.Event()

    def reader():
        for chunk in log.follow():
            seen.append(chunk)
            started.set()
    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(5)
    log.feed("stderr", b"two\n")
    log.close()
    t.join(5)
    assert not t.is_alive()
    assert seen == [("stdout", "one\n"), ("stderr", "two\n")]
    assert list(log.follow()) == seen       # a second reader gets everything again
