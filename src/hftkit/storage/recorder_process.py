"""The recorder's writer process: Arrow conversion, zstd and disk writes on another core.

Why a process and not only a thread: turning Python rows into Arrow columns holds the GIL, so a
writer thread takes its CPU time out of the event loop's (a frame costs the recorder about as
much as the feed's own decode on a busy machine). In a child process that work runs beside the
feed instead of between its frames; the parent only encodes each batch with msgspec (C, a
fraction of a microsecond per frame) and sends it down a pipe.

Protocol (length-prefixed msgpack over the child's stdin/stdout, one reply per request):
``["raw"|"normalized", rows]`` -> ``["ok", status]`` or ``["error", text, status]``;
``["close"]`` -> ``["closed", status]`` and the child exits. When the parent dies the pipe ends
and the child completes (renames) every open file before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgspec

from hftkit.core.errors import HftkitError
from hftkit.recording_files import NORMALIZED
from hftkit.storage.parquet_files import RecordingFiles, mapping_fields


class RecorderProcessError(HftkitError, OSError):
    """The writer process failed a batch or is gone (the batch is retried, then counted)."""


def _read_message(stream: IO[bytes]) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    return body if len(body) == size else None


def _write_message(stream: IO[bytes], body: bytes) -> None:
    stream.write(len(body).to_bytes(4, "big"))
    stream.write(body)
    stream.flush()


def child_main(
    incoming: BinaryIO, outgoing: BinaryIO, root: str, wall_offset_ns: int, options: dict[str, Any]
) -> None:
    """The writer process: serve batches until ``close`` or the parent's end of the pipe closes."""
    files = RecordingFiles(Path(root), wall_offset_ns, **options)
    encode = msgspec.msgpack.encode
    decoder = msgspec.msgpack.Decoder()
    files.warm_up()
    _write_message(outgoing, encode(["ready", files.status()]))  # imports done: batches welcome
    try:
        while True:
            body = _read_message(incoming)
            if body is None:
                return  # the parent is gone: complete the files (finally) and leave
            message = decoder.decode(body)
            if message[0] == "close":
                files.close()
                _write_message(outgoing, encode(["closed", files.status()]))
                return
            try:
                kind, rows = message
                if kind == NORMALIZED:  # [timestamp|None, sequence, event as a mapping]
                    rows = [(row[0], row[1], *mapping_fields(row[2])) for row in rows]
                files.write(kind, rows)
            except Exception as error:  # a bad batch or a full disk: reported, the child goes on
                _write_message(
                    outgoing, encode(["error", f"{type(error).__name__}: {error}", files.status()])
                )
            else:
                _write_message(outgoing, encode(["ok", files.status()]))
    finally:
        with contextlib.suppress(Exception):  # already closed, or the disk is gone: nothing to add
            files.close()


class ProcessFiles:
    """The parent's handle on the writer process; called from the recorder's writer thread.

    The child is ``python -m hftkit.storage.recorder_process`` (not ``multiprocessing``: a spawned
    child would re-run the parent's ``__main__``), spoken to over its stdin and stdout.
    """

    def __init__(self, root: Path, wall_offset_ns: int, options: dict[str, Any]) -> None:
        self.root = root
        self.wall_offset_ns = wall_offset_ns
        self.options = options
        self._process: subprocess.Popen[bytes] | None = None
        self._encode = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()
        self._lock = threading.Lock()
        self._status: dict[str, int] = {}
        self._base: dict[str, int] = {}  # figures of earlier children (after a restart)
        self.restarts = 0

    def start(self) -> None:
        arguments = [str(self.root), str(self.wall_offset_ns), json.dumps(self.options)]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hftkit.storage.recorder_process", *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        ready = _read_message(self._process.stdout)  # wait out its imports (pyarrow) here, once
        if ready is None:
            self._process.wait()
            raise RecorderProcessError(
                f"the recorder's writer process did not start ({self._process.returncode})"
            )

    def _request(self, message: list[Any]) -> list[Any]:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                if self._process is not None:
                    self.restarts += 1
                    self._base = self.status()
                    self._status = {}
                self.start()
            process = self._process
            assert process is not None and process.stdin is not None and process.stdout is not None
            try:
                _write_message(process.stdin, self._encode.encode(message))
                body = _read_message(process.stdout)
            except OSError as error:
                raise RecorderProcessError(f"the recorder's writer process is gone: {error}") from None
            if body is None:
                raise RecorderProcessError("the recorder's writer process is gone (no answer)")
            reply = self._decoder.decode(body)
            self._status = reply[-1]
            return reply

    def write(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> None:
        reply = self._request([kind, rows])
        if reply[0] == "error":
            raise RecorderProcessError(reply[1])

    def close(self) -> None:
        with self._lock:
            process = self._process
            if process is None:
                return
            self._process = None
            try:
                if process.poll() is None and process.stdin is not None and process.stdout is not None:
                    _write_message(process.stdin, self._encode.encode(["close"]))
                    body = _read_message(process.stdout)
                    if body is not None:
                        self._status = self._decoder.decode(body)[-1]
            except OSError:
                pass
            finally:
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        stream.close()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def status(self) -> dict[str, int]:
        merged = dict(self._status)
        for key, value in self._base.items():
            if key != "open_files":
                merged[key] = merged.get(key, 0) + value
        return merged


def main() -> None:
    root, wall_offset_ns, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C to the node's group: the parent closes us
    with contextlib.suppress(OSError):  # the feed comes first: the recorder catches up when it idles
        os.nice(10)
    child_main(sys.stdin.buffer, sys.stdout.buffer, root, wall_offset_ns, options)


if __name__ == "__main__":
    main()


__all__ = ["ProcessFiles", "RecorderProcessError", "child_main"]
