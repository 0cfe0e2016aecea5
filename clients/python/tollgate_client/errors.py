"""Exceptions raised by the tollgate client.

Everything derives from :class:`TollgateError`, so ``except TollgateError``
catches every failure that is about tollgate rather than about the caller's
arguments. Socket timeouts are not wrapped: they surface as the standard
library's :class:`TimeoutError` (``socket.timeout``).
"""

from __future__ import annotations

from typing import Optional

from .messages import ErrorCode

__all__ = [
    "TollgateError",
    "ProtocolError",
    "FrameTooLarge",
    "FieldTooLong",
    "ErrorFrame",
    "HandshakeRejected",
    "ConnectionClosed",
]


class TollgateError(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(TollgateError):
    """Bytes that break protocol/SPEC.md: a malformed frame or handshake.

    Raised when decoding what the server sent (the client then closes the
    connection, as the spec asks) and when a request cannot be encoded
    within the spec's limits.
    """

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        #: The field being read or written, when the error is about one.
        self.field = field


class FrameTooLarge(ProtocolError):
    """A frame's length field is over ``MAX_FRAME_LEN`` (65536).

    Raised by the encoder before anything is sent, and by the decoder as
    soon as it has read an oversized length prefix (the body is not read).
    """

    def __init__(self, length: int) -> None:
        super().__init__(f"frame length {length} exceeds the maximum of 65536")
        #: The offending value of the length field.
        self.length = length


class FieldTooLong(ProtocolError, ValueError):
    """A string, credential or list is longer than its limit (SPEC.md section 2).

    Also a :class:`ValueError`, since on the encoding side it is the caller's
    argument that is too long.
    """

    def __init__(self, field: str, length: int, limit: int) -> None:
        super().__init__(f"{field} is too long: {length} > {limit}", field)
        #: The length found (bytes for strings, items for lists).
        self.length = length
        #: The limit it exceeds.
        self.limit = limit


class ErrorFrame(TollgateError):
    """The server answered with an Error frame (SPEC.md section 5.6).

    ``request_id`` is the id of the request it answers, or ``0`` when the
    error is about the whole connection (the server then closes it).
    """

    def __init__(self, code: "ErrorCode | int", message: str, request_id: int) -> None:
        name = code.name if isinstance(code, ErrorCode) else str(code)
        scope = "connection" if request_id == 0 else f"request {request_id}"
        super().__init__(f"server error {name} ({scope}): {message}")
        #: The error code.
        self.code = code
        #: The server's human-readable detail, for logs only.
        self.message = message
        #: The request id the frame carried (0: connection-level).
        self.request_id = request_id

    @property
    def closes_connection(self) -> bool:
        """Whether the server closes the connection after this error."""
        return self.request_id == 0 or self.code == ErrorCode.MALFORMED_FRAME


class HandshakeRejected(ErrorFrame):
    """The server refused the hello with an Error frame and closed.

    ``code`` is ``UNSUPPORTED_VERSION`` for a version it does not speak,
    ``MALFORMED_FRAME`` for a bad magic, or ``SERVER_BUSY`` when the daemon
    is over its connection cap or shutting down.
    """


class ConnectionClosed(TollgateError, ConnectionError):
    """The connection is closed: the server hung up, or a write failed.

    Requests in flight have no answer and count as failed (SPEC.md section 7).
    """

    def __init__(self, message: str, mid_frame: bool = False, error: Optional[ErrorFrame] = None) -> None:
        super().__init__(message if error is None else f"{message}, after {error}")
        #: Whether the server closed in the middle of a frame.
        self.mid_frame = mid_frame
        #: The connection-level Error frame the server sent before closing, if any.
        self.error = error
