"""Helpers shared by the tests: the import path, hex literals, a scripted server.

Importing this module puts ``clients/python`` on ``sys.path``, so the tests
run with ``python3 -m unittest discover -s clients/python/tests`` from any
directory without installing anything.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
from typing import Callable, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unhex(text: str) -> bytes:
    """Bytes from hex written the way SPEC.md writes it: spaces, newlines and
    ``#`` comments to the end of a line are ignored."""
    digits = "".join(line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex("".join(digits.split()))


class ScriptedServer:
    """A Unix socket server in a thread that hands each connection to ``handler``.

    For testing the client against answers the real daemon never gives
    (reversed order, broken frames, refusals) without depending on it.
    """

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self._dir.name, "scripted.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._handler = handler
        self.errors: List[BaseException] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                self._handler(conn)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except BaseException as e:  # surfaced by the test through .errors
                self.errors.append(e)

    def close(self) -> None:
        self._listener.close()
        self._dir.cleanup()

    def __enter__(self) -> "ScriptedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recv_exactly(conn: socket.socket, n: int) -> Optional[bytes]:
    """Reads exactly ``n`` bytes, or returns ``None`` if the peer closes first."""
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out
