"""A blocking client for the tollgate daemon's Unix socket, with pipelining."""

from __future__ import annotations

import os
import socket
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .codec import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    FrameBuffer,
    decode_hello_reply,
    encode_frame,
    encode_hello,
    encode_request,
)
from .errors import ConnectionClosed, ErrorFrame, HandshakeRejected, ProtocolError, TollgateError
from .messages import (
    Allow,
    Deny,
    ErrorResponse,
    IpAddress,
    Ping,
    Pong,
    QuotaConsume,
    QuotaRelease,
    QuotaResult,
    Request,
    Response,
    Verdict,
    VerifyRequest,
)

__all__ = ["Client", "handshake", "PIPELINE_WINDOW", "DEFAULT_TIMEOUT"]

#: How many requests :meth:`Client.verify_many` keeps in flight by default
#: (the Rust reference client's window; SPEC.md section 7, back-pressure).
PIPELINE_WINDOW = 128
#: Default socket timeout in seconds for connecting, reading and writing.
DEFAULT_TIMEOUT = 5.0

_READ_CHUNK = 65536

Permissions = Union[Iterable[Tuple[str, str]], Mapping[str, Sequence[str]]]
VerifyLike = Union[VerifyRequest, str, bytes]


def handshake(sock: socket.socket, version: int = PROTOCOL_VERSION) -> Tuple[int, FrameBuffer]:
    """Performs the client side of the handshake on a connected socket.

    Sends the hello offering ``version`` and waits for the answer. Returns
    the version the server chose and a :class:`FrameBuffer` holding any bytes
    that arrived after the server's hello. Raises :class:`HandshakeRejected`
    when the server answers with an Error frame (it then closes),
    :class:`ProtocolError` when it chooses a version this package does not
    speak or answers something else, and :class:`ConnectionClosed` when it
    closes without an answer.
    """
    write_error: Optional[OSError] = None
    try:
        sock.sendall(encode_hello(version))
    except (BrokenPipeError, ConnectionResetError) as e:
        # A server that refuses at once (say, over its connection cap) may
        # close before reading the hello; its error frame can still be read.
        write_error = e
    buf = FrameBuffer()
    while True:
        reply = decode_hello_reply(buf.pending())
        if reply is not None:
            answer, used = reply
            buf.take(used)
            break
        try:
            data = sock.recv(_READ_CHUNK)
        except ConnectionResetError as e:
            raise ConnectionClosed("connection reset during the handshake") from (write_error or e)
        if not data:
            closed = ConnectionClosed("server closed the connection during the handshake", mid_frame=len(buf) > 0)
            raise closed from write_error
        buf.feed(data)
    if isinstance(answer, ErrorResponse):
        raise HandshakeRejected(answer.code, answer.message, 0)
    if write_error is not None:
        raise ConnectionClosed("server accepted the hello but the connection is gone") from write_error
    if not MIN_PROTOCOL_VERSION <= answer <= PROTOCOL_VERSION:
        raise ProtocolError(f"server chose protocol version {answer}, which this client does not speak", "version")
    return answer, buf


class Client:
    """A blocking connection to the tollgate daemon's socket.

    One request at a time::

        with Client("/run/tollgate/tollgate.sock") as c:
            v = c.verify(key, ip="203.0.113.7", permissions=[("documents", "read")])
            if v.allowed:
                print(v.subject, v.team_id, v.rate_limit)
            else:
                print(v.code.name, v.retry_after_ms)

    Pipelining: :meth:`verify_many` keeps a window of requests in flight and
    returns verdicts in request order; :meth:`send` / :meth:`send_verify` /
    :meth:`send_many` and :meth:`recv` give full control, with answers
    matched by request id in whatever order the server sends them.

    Not thread-safe: give each thread its own client. A socket timeout
    raises :class:`TimeoutError`; while reading that leaves the client
    usable (the late answer is skipped), while writing it closes the client
    because part of a frame may have been sent.
    """

    def __init__(self, path: "str | os.PathLike[str]", timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
        """Connects to the socket at ``path`` and performs the handshake.

        ``timeout`` (seconds, ``None`` for none) applies to the connect and
        to every later read and write.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(os.fspath(path))
            self._setup(sock)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def from_socket(cls, sock: socket.socket) -> "Client":
        """Performs the handshake on an already connected socket and wraps it."""
        client = cls.__new__(cls)
        client._setup(sock)
        return client

    def _setup(self, sock: socket.socket) -> None:
        self._sock: Optional[socket.socket] = None
        self._version, self._buf = handshake(sock)
        self._sock = sock
        self._next_id = 1
        #: Every id sent and not answered yet (user, internal and abandoned calls).
        self._in_flight: Set[int] = set()
        #: Ids sent through send()/send_many()/send_frame(), owed to recv().
        self._user_pending: Set[int] = set()
        #: Answers to user ids read while a blocking call waited for its own.
        self._stash: Dict[int, Response] = {}
        #: The connection-level error the server sent before closing, if any.
        self._close_error: Optional[ErrorFrame] = None
        self._eof = False

    # ------------------------------------------------------------ properties

    @property
    def version(self) -> int:
        """The protocol version the server agreed to."""
        return self._version

    @property
    def closed(self) -> bool:
        """Whether this client can no longer send requests."""
        return self._sock is None or self._eof or self._close_error is not None

    @property
    def pending(self) -> int:
        """How many requests sent with :meth:`send` and friends await :meth:`recv`."""
        return len(self._user_pending)

    def settimeout(self, timeout: Optional[float]) -> None:
        """Changes the socket timeout (seconds, ``None`` for none)."""
        if self._sock is not None:
            self._sock.settimeout(timeout)

    def close(self) -> None:
        """Closes the connection; requests in flight are abandoned."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    # ------------------------------------------------------------ blocking calls

    def verify(
        self,
        credential: Union[str, bytes],
        ip: Union[IpAddress, str, None] = None,
        permissions: Permissions = (),
        cost: int = 1,
        quota: Optional[Tuple[str, int]] = None,
    ) -> Verdict:
        """Verifies one credential and waits for the verdict.

        ``credential`` is the credential exactly as the end user presented
        it; ``ip`` the end user's address; ``permissions`` the
        ``(resource, action)`` pairs (or a ``{resource: [actions]}`` mapping)
        that must all be granted; ``cost`` the rate-limit units; ``quota`` a
        ``(name, amount)`` team quota consumed atomically with an allow.
        Returns an :class:`Allow` or a :class:`Deny`; raises
        :class:`ErrorFrame` if the server answers with an Error frame.
        """
        request = _verify_request(credential, ip, permissions, cost, quota)
        response = self._call(request)
        if not isinstance(response, (Allow, Deny)):
            raise self._unexpected(response, "a verdict")
        return response

    def consume_quota(self, team_id: str, quota: str, amount: int) -> QuotaResult:
        """Consumes ``amount`` units of a team quota (QuotaConsume).

        ``ok`` is ``False`` and nothing changes when the limit would be
        exceeded (the tollgate daemon also answers ``ok=False, used=0,
        limit=0`` for an unknown team or quota).
        """
        response = self._call(QuotaConsume(team_id, quota, amount))
        if not isinstance(response, QuotaResult):
            raise self._unexpected(response, "a quota result")
        return response

    def release_quota(self, team_id: str, quota: str, amount: int) -> QuotaResult:
        """Gives back ``amount`` units of a team quota (QuotaRelease); never goes below zero."""
        response = self._call(QuotaRelease(team_id, quota, amount))
        if not isinstance(response, QuotaResult):
            raise self._unexpected(response, "a quota result")
        return response

    def ping(self) -> None:
        """Round-trips a Ping; returns when the Pong arrives."""
        response = self._call(Ping())
        if not isinstance(response, Pong):
            raise self._unexpected(response, "a pong")

    def _call(self, request: Request) -> Response:
        """Sends one request and reads until its answer comes.

        Answers to requests sent with :meth:`send` are kept for
        :meth:`recv`; answers to abandoned calls are dropped.
        """
        request_id = self._allocate_id()
        self._write(encode_request(request_id, request))
        self._in_flight.add(request_id)
        while True:
            rid, response = self._read_response()
            if rid == request_id:
                if isinstance(response, ErrorResponse):
                    raise ErrorFrame(response.code, response.message, rid)
                return response
            if rid == 0 and isinstance(response, ErrorResponse):
                raise ErrorFrame(response.code, response.message, 0)
            if rid in self._user_pending:
                self._stash[rid] = response

    # ------------------------------------------------------------ pipelining

    def send(self, request: Request) -> int:
        """Writes one request without waiting and returns its request id.

        Collect the answer with :meth:`recv`. Keep the number in flight
        bounded (SPEC.md section 7, back-pressure): the server stops reading
        a connection whose answers are not being read.
        """
        return self.send_many([request])[0]

    def send_verify(
        self,
        credential: Union[str, bytes],
        ip: Union[IpAddress, str, None] = None,
        permissions: Permissions = (),
        cost: int = 1,
        quota: Optional[Tuple[str, int]] = None,
    ) -> int:
        """:meth:`send` for a verify request, with :meth:`verify`'s arguments."""
        return self.send(_verify_request(credential, ip, permissions, cost, quota))

    def send_many(self, requests: Iterable[Request]) -> List[int]:
        """Writes several requests in one write and returns their ids, in order.

        Every request is encoded before anything is written, so a request
        over the protocol's limits raises without sending any of them.
        """
        frames = []
        ids = []
        taken: Set[int] = set()
        for request in requests:
            request_id = self._allocate_id(taken)
            taken.add(request_id)
            frames.append(encode_request(request_id, request))
            ids.append(request_id)
        self._write(b"".join(frames))
        self._in_flight.update(ids)
        self._user_pending.update(ids)
        return ids

    def send_frame(self, msg_type: int, payload: bytes = b"") -> int:
        """Writes a frame of any type with a fresh request id, for probing
        message types newer than this package (the server answers
        ``UNKNOWN_MESSAGE_TYPE`` and keeps the connection open). Returns the id."""
        request_id = self._allocate_id()
        self._write(encode_frame(msg_type, request_id, payload))
        self._in_flight.add(request_id)
        self._user_pending.add(request_id)
        return request_id

    def recv(self) -> Tuple[int, Response]:
        """Reads the next answer to a request sent with :meth:`send` and friends.

        Returns ``(request_id, response)``. Answers come in whatever order
        the server sends them. An Error frame is returned as an
        :class:`ErrorResponse` value with its request id; id ``0`` means the
        whole connection failed: the server closes after it, though answers
        it still owed may arrive first or after (see SPEC.md section 7), so
        keep calling until :class:`ConnectionClosed` to collect them.
        Blocks (up to the timeout) when nothing is in flight.
        """
        if self._stash:
            rid = next(iter(self._stash))
            self._user_pending.discard(rid)
            return rid, self._stash.pop(rid)
        while True:
            rid, response = self._read_response()
            if rid in self._user_pending:
                self._user_pending.discard(rid)
                return rid, response
            if rid == 0:
                return rid, response
            # Otherwise an answer to an abandoned blocking call: skip it.

    def verify_many(
        self,
        requests: Iterable[VerifyLike],
        window: int = PIPELINE_WINDOW,
        return_exceptions: bool = False,
    ) -> List[Union[Verdict, TollgateError]]:
        """Verifies many credentials over this connection, pipelined.

        ``requests`` are :class:`VerifyRequest` objects or bare credentials.
        Up to ``window`` requests are kept in flight; answers are matched by
        id and returned in the order of ``requests``, whatever order the
        server answered in.

        A request answered with an Error frame does not stop the others. At
        the end, with ``return_exceptions=False`` (the default) the first
        failure (in request order) is raised; with ``True`` failures are put
        in the returned list as exception objects instead (:class:`ErrorFrame`
        for an Error frame, :class:`ConnectionClosed` for requests left
        unanswered when the connection closed, :class:`ProtocolError` for
        requests over the protocol's limits). If the server closes the
        connection, every answer that still arrives is collected first.
        Invalid arguments (an unparsable IP address, a cost over ``u32``)
        raise :class:`ValueError` before anything is sent, either way.
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        reqs = [r if isinstance(r, VerifyRequest) else VerifyRequest(r) for r in requests]
        n = len(reqs)
        results: List[Union[Verdict, TollgateError, None]] = [None] * n
        # Encode everything first: a request over the limits fails before anything is sent.
        frames: List[Tuple[int, int, bytes]] = []
        index_of: Dict[int, int] = {}
        for i, req in enumerate(reqs):
            request_id = self._allocate_id(index_of)
            try:
                frame = encode_request(request_id, req)
            except ProtocolError as e:
                if not return_exceptions:
                    raise
                results[i] = e
                continue
            index_of[request_id] = i
            frames.append((i, request_id, frame))

        outstanding = len(frames)
        sent = 0
        try:
            while outstanding:
                in_flight = sent - (len(frames) - outstanding)
                # After a closing error frame nothing more is sent, but the
                # answers still owed are read until the server closes.
                if sent < len(frames) and in_flight <= window // 2 and self._close_error is None:
                    batch = frames[sent : sent + window - in_flight]
                    self._write(b"".join(f for _, _, f in batch))
                    self._in_flight.update(rid for _, rid, _ in batch)
                    sent += len(batch)
                rid, response = self._read_response()
                i = index_of.pop(rid, None)
                if i is not None:
                    outstanding -= 1
                    if isinstance(response, ErrorResponse):
                        results[i] = ErrorFrame(response.code, response.message, rid)
                    elif isinstance(response, (Allow, Deny)):
                        results[i] = response
                    else:
                        raise self._unexpected(response, "a verdict")
                elif rid in self._user_pending:
                    self._stash[rid] = response
                # Id 0 (the connection is closing): keep reading, answers
                # owed may still come before the close.
        except ConnectionClosed as e:
            for i in index_of.values():
                results[i] = e
            if not return_exceptions:
                raise
        # Any other exception (a timeout, a protocol error) propagates as is:
        # requests still in flight are abandoned and their late answers are
        # skipped by later calls.
        if not return_exceptions:
            for r in results:
                if isinstance(r, TollgateError):
                    raise r
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------ internals

    def _allocate_id(self, also_taken: "Iterable[int] | Set[int] | Dict[int, int]" = ()) -> int:
        """The next request id: a wrapping counter that skips 0, ids in
        flight and ids whose answers :meth:`recv` has not returned yet."""
        for _ in range(1 << 20):
            request_id = self._next_id
            self._next_id = 1 if request_id >= 0xFFFFFFFF else request_id + 1
            if request_id not in self._in_flight and request_id not in self._user_pending and request_id not in also_taken:
                return request_id
        raise RuntimeError("no free request id")  # pragma: no cover - a million requests in flight

    def _write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionClosed("the client is closed")
        if self._eof or self._close_error is not None:
            raise ConnectionClosed("the server closed the connection", error=self._close_error)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            self._eof = True
            raise ConnectionClosed("the server closed the connection", error=self._close_error) from e
        except BaseException:
            # A timeout or signal may have left part of a frame on the wire.
            self.close()
            raise

    def _read_response(self) -> Tuple[int, Response]:
        """Reads the next response frame from the socket and does the bookkeeping."""
        while True:
            try:
                frame = self._buf.next_response()
            except ProtocolError:
                # SPEC.md section 7: a client that cannot decode a response closes.
                self.close()
                raise
            if frame is not None:
                rid, response = frame
                self._in_flight.discard(rid)
                if isinstance(response, ErrorResponse):
                    error = ErrorFrame(response.code, response.message, rid)
                    if error.closes_connection and self._close_error is None:
                        self._close_error = error
                return rid, response
            self._fill()

    def _fill(self) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionClosed("the client is closed")
        if self._eof:
            raise ConnectionClosed("the server closed the connection", error=self._close_error)
        try:
            data = sock.recv(_READ_CHUNK)
        except ConnectionResetError as e:
            self._eof = True
            raise ConnectionClosed("connection reset by the server", error=self._close_error) from e
        if not data:
            self._eof = True
            mid = len(self._buf) > 0
            what = "in the middle of a frame" if mid else "the connection"
            raise ConnectionClosed(f"the server closed {what}", mid_frame=mid, error=self._close_error)
        self._buf.feed(data)

    def _unexpected(self, response: Response, wanted: str) -> ProtocolError:
        self.close()
        return ProtocolError(f"expected {wanted}, got {type(response).__name__}", "type")


def _verify_request(
    credential: Union[str, bytes],
    ip: Union[IpAddress, str, None],
    permissions: Permissions,
    cost: int,
    quota: Optional[Tuple[str, int]],
) -> VerifyRequest:
    if isinstance(permissions, Mapping):
        pairs = tuple((r, a) for r, actions in permissions.items() for a in actions)
    else:
        pairs = tuple((r, a) for r, a in permissions)
    return VerifyRequest(credential, ip, pairs, cost, None if quota is None else (quota[0], quota[1]))
