"""Frame checking, decoding and encoding (protocol/SPEC.md). No I/O happens here.

Like the Rust reference codec, reading is split in two: :func:`check_frame`
looks at the start of a buffer and says whether a whole frame has arrived
(``None`` means "read more", which is normal), then :func:`decode_response`
(or :func:`decode_request`) parses it. :class:`FrameBuffer` wraps the two
for a stream of bytes. Encoders return ``bytes``; concatenate several to
pipeline them in one write.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import FieldTooLong, FrameTooLarge, ProtocolError
from .messages import (
    Allow,
    CredentialKind,
    Deny,
    DenyCode,
    ErrorCode,
    ErrorResponse,
    IpAddress,
    MessageType,
    Permission,
    Ping,
    Pong,
    QuotaConsume,
    QuotaRelease,
    QuotaResult,
    RateLimit,
    Request,
    Response,
    VerifyRequest,
)

__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "MIN_PROTOCOL_VERSION",
    "HANDSHAKE_LEN",
    "LENGTH_PREFIX_LEN",
    "HEADER_LEN",
    "MAX_FRAME_LEN",
    "MAX_CREDENTIAL_LEN",
    "MAX_STRING_LEN",
    "MAX_LIST_LEN",
    "MAX_REQUEST_ID",
    "encode_hello",
    "decode_hello",
    "decode_hello_reply",
    "check_frame",
    "frame_request_id",
    "decode_response",
    "decode_request",
    "encode_request",
    "encode_response",
    "encode_frame",
    "FrameBuffer",
]

#: The four bytes every connection starts with.
MAGIC = b"TGAT"
#: The newest protocol version this package speaks, and the one it offers.
PROTOCOL_VERSION = 1
#: The oldest protocol version this package speaks.
MIN_PROTOCOL_VERSION = 1
#: Bytes of a hello in either direction: magic (4) + version (2).
HANDSHAKE_LEN = 6
#: Bytes of the length field that starts every frame.
LENGTH_PREFIX_LEN = 4
#: Bytes after the length field that every frame has: type (1) + request id (4).
HEADER_LEN = 5
#: Largest value of a frame's length field (64 KiB).
MAX_FRAME_LEN = 65536
#: Longest credential of a verify request, in bytes.
MAX_CREDENTIAL_LEN = 8192
#: Longest of every other string, in bytes (not characters).
MAX_STRING_LEN = 1024
#: Most items of any list.
MAX_LIST_LEN = 256
#: Largest request id (ids are ``u32``; ``0`` is reserved for the connection).
MAX_REQUEST_ID = 0xFFFFFFFF

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">IBI")
_RATE_LIMIT = struct.Struct(">IIQ")

_IP_NONE, _IP_V4, _IP_V6 = 0x00, 0x04, 0x06
_ALLOW, _DENY = 0x01, 0x02

Buffer = Union[bytes, bytearray, memoryview]


# ---------------------------------------------------------------- handshake


def encode_hello(version: int = PROTOCOL_VERSION) -> bytes:
    """The 6-byte hello: ``TGAT`` and a big-endian ``u16`` version.

    A client sends it with the highest version it speaks; a server sends it
    back with the version it chose. Any ``u16`` is encoded (a test may offer
    version 0 to see the server refuse it).
    """
    _check_uint("version", version, 0xFFFF)
    return MAGIC + _U16.pack(version)


def decode_hello(buf: Buffer) -> Optional[int]:
    """Decodes a hello at the start of ``buf``, returning its version.

    Returns ``None`` while fewer than 6 bytes are there, and raises
    :class:`ProtocolError` as soon as the bytes present disagree with the
    magic.
    """
    seen = bytes(buf[: len(MAGIC)])
    if seen != MAGIC[: len(seen)]:
        raise ProtocolError("handshake does not start with the TGAT magic", "magic")
    if len(buf) < HANDSHAKE_LEN:
        return None
    return _U16.unpack_from(buf, len(MAGIC))[0]


def decode_hello_reply(buf: Buffer) -> Optional[Tuple[Union[int, ErrorResponse], int]]:
    """Decodes the server's answer to a client's hello (SPEC.md section 3).

    Returns ``None`` while incomplete, else ``(reply, used)``: ``reply`` is
    the accepted version (an ``int``) or the :class:`ErrorResponse` the
    server refused with, and ``used`` is how many bytes of ``buf`` it took.
    The two are told apart by the first byte: ``T`` starts a hello, ``0x00``
    an error frame. Whether the client speaks the accepted version is for
    the caller to check.
    """
    if not buf:
        return None
    if buf[0] == MAGIC[0]:
        version = decode_hello(buf)
        return None if version is None else (version, HANDSHAKE_LEN)
    used = check_frame(buf)
    if used is None:
        return None
    _, response = decode_response(buf)
    if not isinstance(response, ErrorResponse):
        raise ProtocolError("the answer to the hello is neither a hello nor an error frame", "handshake")
    return response, used


# ---------------------------------------------------------------- frames


def check_frame(buf: Buffer) -> Optional[int]:
    """Says whether ``buf`` starts with a whole frame, without decoding it.

    Returns the frame's size in bytes (length field included) when it is all
    there, ``None`` when more bytes are needed, and raises as soon as the
    length field alone proves the frame invalid: :class:`FrameTooLarge` over
    65536, :class:`ProtocolError` under 5. So an oversized frame is refused
    after four bytes, before anything is buffered for it.
    """
    if len(buf) < LENGTH_PREFIX_LEN:
        return None
    length = _U32.unpack_from(buf, 0)[0]
    if length > MAX_FRAME_LEN:
        raise FrameTooLarge(length)
    if length < HEADER_LEN:
        raise ProtocolError(f"frame length {length} is shorter than the 5-byte header", "length")
    total = LENGTH_PREFIX_LEN + length
    return total if len(buf) >= total else None


def frame_request_id(buf: Buffer) -> Optional[int]:
    """The request id of the frame at the start of ``buf``, if its header is
    complete and its length field valid; else ``None``."""
    try:
        check_frame(buf)
    except ProtocolError:
        return None
    if len(buf) < LENGTH_PREFIX_LEN + HEADER_LEN:
        return None
    return _U32.unpack_from(buf, LENGTH_PREFIX_LEN + 1)[0]


def _split(buf: Buffer) -> Tuple[int, int, "_Reader"]:
    total = check_frame(buf)
    if total is None:
        raise ValueError("the buffer does not hold a whole frame yet; call check_frame() first")
    msg_type = buf[LENGTH_PREFIX_LEN]
    request_id = _U32.unpack_from(buf, LENGTH_PREFIX_LEN + 1)[0]
    return msg_type, request_id, _Reader(buf, LENGTH_PREFIX_LEN + HEADER_LEN, total)


def decode_response(buf: Buffer) -> Tuple[int, Response]:
    """Decodes the response frame at the start of ``buf``.

    Returns ``(request_id, response)`` where ``response`` is an
    :class:`Allow`, :class:`Deny`, :class:`QuotaResult`, :class:`Pong` or
    :class:`ErrorResponse`. Bytes after the frame are ignored (use
    :func:`check_frame` to know how many to drop). Raises
    :class:`ProtocolError` for anything SPEC.md calls malformed, including a
    request type (wrong direction), and :class:`ValueError` if ``buf`` does
    not hold the whole frame yet.
    """
    msg_type, request_id, r = _split(buf)
    response: Response
    if msg_type == MessageType.VERDICT:
        response = _read_verdict(r)
    elif msg_type == MessageType.QUOTA_RESULT:
        ok = r.flag("quota ok")
        used = r.u64("quota used")
        limit = r.u64("quota limit") if r.flag("quota limit flag") else None
        response = QuotaResult(ok, used, limit)
    elif msg_type == MessageType.PONG:
        response = Pong()
    elif msg_type == MessageType.ERROR:
        raw = r.u16("error code")
        code = _enum(ErrorCode, raw, "error code")
        response = ErrorResponse(code, r.str16("error message", MAX_STRING_LEN))
    else:
        raise ProtocolError(f"unknown response type 0x{msg_type:02x}", "type")
    r.finish()
    return request_id, response


def decode_request(buf: Buffer) -> Tuple[int, Request]:
    """Decodes the request frame at the start of ``buf`` (the server's side).

    Useful for tests and fake servers. Returns ``(request_id, request)``;
    the credential of a :class:`VerifyRequest` is returned as ``bytes``,
    its IP as an address object and its quota as a :class:`QuotaUse`-like
    tuple.
    """
    msg_type, request_id, r = _split(buf)
    request: Request
    if msg_type == MessageType.VERIFY:
        credential = r.bytes16("credential", MAX_CREDENTIAL_LEN)
        tag = r.u8("ip tag")
        ip: Optional[IpAddress]
        if tag == _IP_NONE:
            ip = None
        elif tag == _IP_V4:
            ip = ipaddress.IPv4Address(r.take(4, "ipv4"))
        elif tag == _IP_V6:
            ip = ipaddress.IPv6Address(r.take(16, "ipv6"))
        else:
            raise ProtocolError(f"invalid ip tag: {tag}", "ip tag")
        permissions = tuple(
            (r.str16("permission resource", MAX_STRING_LEN), r.str16("permission action", MAX_STRING_LEN))
            for _ in range(r.count("permissions"))
        )
        cost = r.u32("cost")
        quota = None
        if r.flag("quota flag"):
            quota = (r.str16("quota name", MAX_STRING_LEN), r.u32("quota amount"))
        request = VerifyRequest(credential, ip, permissions, cost, quota)
    elif msg_type in (MessageType.QUOTA_CONSUME, MessageType.QUOTA_RELEASE):
        team_id = r.str16("team id", MAX_STRING_LEN)
        quota_name = r.str16("quota name", MAX_STRING_LEN)
        amount = r.u32("quota amount")
        cls = QuotaConsume if msg_type == MessageType.QUOTA_CONSUME else QuotaRelease
        request = cls(team_id, quota_name, amount)
    elif msg_type == MessageType.PING:
        request = Ping()
    else:
        raise ProtocolError(f"unknown request type 0x{msg_type:02x}", "type")
    r.finish()
    return request_id, request


def _read_verdict(r: "_Reader") -> Union[Allow, Deny]:
    outcome = r.u8("verdict")
    if outcome == _ALLOW:
        kind = _enum(CredentialKind, r.u8("credential kind"), "credential kind")
        subject = r.str16("subject", MAX_STRING_LEN)
        team_id = r.str16("team id", MAX_STRING_LEN)
        credential_id = r.str16("credential id", MAX_STRING_LEN)
        roles = tuple(r.str16("role", MAX_STRING_LEN) for _ in range(r.count("roles")))
        permissions = []
        for _ in range(r.count("permissions")):
            resource = r.str16("permission resource", MAX_STRING_LEN)
            actions = tuple(r.str16("action", MAX_STRING_LEN) for _ in range(r.count("actions")))
            permissions.append(Permission(resource, actions))
        remaining_uses = r.u64("remaining uses") if r.flag("remaining uses flag") else None
        return Allow(kind, subject, team_id, credential_id, roles, tuple(permissions), remaining_uses, r.rate_limit())
    if outcome == _DENY:
        code = _enum(DenyCode, r.u8("deny code"), "deny code")
        retry_after_ms = r.u64("retry after") if r.flag("retry after flag") else None
        reason = r.str16("reason", MAX_STRING_LEN)
        return Deny(code, retry_after_ms, reason, r.rate_limit())
    raise ProtocolError(f"invalid verdict outcome: {outcome}", "verdict")


def _enum(cls, raw: int, field: str):
    try:
        return cls(raw)
    except ValueError:
        raise ProtocolError(f"invalid {field}: {raw}", field) from None


class _Reader:
    """A bounds-checked cursor over one frame's payload.

    Running out of bytes is a :class:`ProtocolError`: the length field
    promised a whole payload, so a field that ends past it is malformed.
    """

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: Buffer, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > self.end:
            raise ProtocolError(f"frame ends inside {field}", field)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def _unpack(self, s: struct.Struct, field: str) -> int:
        if self.pos + s.size > self.end:
            raise ProtocolError(f"frame ends inside {field}", field)
        value = s.unpack_from(self.buf, self.pos)[0]
        self.pos += s.size
        return value

    def u8(self, field: str) -> int:
        return self._unpack(_U8, field)

    def u16(self, field: str) -> int:
        return self._unpack(_U16, field)

    def u32(self, field: str) -> int:
        return self._unpack(_U32, field)

    def u64(self, field: str) -> int:
        return self._unpack(_U64, field)

    def flag(self, field: str) -> bool:
        value = self.u8(field)
        if value > 1:
            raise ProtocolError(f"invalid {field}: {value}", field)
        return value == 1

    def bytes16(self, field: str, limit: int) -> bytes:
        n = self.u16(field)
        if n > limit:
            raise FieldTooLong(field, n, limit)
        return self.take(n, field)

    def str16(self, field: str, limit: int) -> str:
        try:
            return self.bytes16(field, limit).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{field} is not valid UTF-8", field) from None

    def count(self, field: str) -> int:
        n = self.u16(field)
        if n > MAX_LIST_LEN:
            raise FieldTooLong(field, n, MAX_LIST_LEN)
        return n

    def rate_limit(self) -> Optional[RateLimit]:
        if not self.flag("rate limit flag"):
            return None
        if self.pos + _RATE_LIMIT.size > self.end:
            raise ProtocolError("frame ends inside rate limit", "rate limit")
        limit, remaining, reset_ms = _RATE_LIMIT.unpack_from(self.buf, self.pos)
        self.pos += _RATE_LIMIT.size
        return RateLimit(limit, remaining, reset_ms)

    def finish(self) -> None:
        if self.pos != self.end:
            raise ProtocolError(f"{self.end - self.pos} unexpected bytes after the payload", "payload")


# ---------------------------------------------------------------- encoding


def encode_frame(msg_type: int, request_id: int, payload: bytes = b"") -> bytes:
    """Wraps an already encoded payload in a frame (length, type, id).

    The building block of the other encoders; on its own it lets a client
    probe message types this package does not know (the server answers
    ``UNKNOWN_MESSAGE_TYPE`` and keeps the connection open). Raises
    :class:`FrameTooLarge` if the length field would exceed 65536.
    """
    _check_uint("message type", msg_type, 0xFF)
    _check_uint("request id", request_id, MAX_REQUEST_ID)
    length = HEADER_LEN + len(payload)
    if length > MAX_FRAME_LEN:
        raise FrameTooLarge(length)
    return _HEADER.pack(length, msg_type, request_id) + bytes(payload)


def encode_request(request_id: int, request: Request) -> bytes:
    """Encodes one request frame.

    ``request_id`` must be 1 to 2**32-1 (0 is reserved, SPEC.md section 7).
    Raises :class:`FieldTooLong` or :class:`FrameTooLarge` for a request over
    the spec's limits and :class:`ValueError` for out-of-range numbers or an
    invalid IP address; nothing is returned in that case, so nothing
    half-encoded can be sent.
    """
    if request_id == 0:
        raise ValueError("request id 0 is reserved for connection-level errors")
    out = bytearray()
    if isinstance(request, VerifyRequest):
        msg_type = MessageType.VERIFY
        _write_verify(out, request)
    elif isinstance(request, (QuotaConsume, QuotaRelease)):
        msg_type = MessageType.QUOTA_CONSUME if isinstance(request, QuotaConsume) else MessageType.QUOTA_RELEASE
        _str16(out, "team id", request.team_id, MAX_STRING_LEN)
        _str16(out, "quota name", request.quota, MAX_STRING_LEN)
        _u32(out, "quota amount", request.amount)
    elif isinstance(request, Ping):
        msg_type = MessageType.PING
    else:
        raise TypeError(f"not a request: {request!r}")
    return encode_frame(msg_type, request_id, bytes(out))


def encode_response(request_id: int, response: Response) -> bytes:
    """Encodes one response frame (the server's side; for tests and fakes)."""
    out = bytearray()
    if isinstance(response, (Allow, Deny)):
        msg_type = MessageType.VERDICT
        _write_verdict(out, response)
    elif isinstance(response, QuotaResult):
        msg_type = MessageType.QUOTA_RESULT
        out += b"\x01" if response.ok else b"\x00"
        _u64(out, "quota used", response.used)
        _opt_u64(out, "quota limit", response.limit)
    elif isinstance(response, Pong):
        msg_type = MessageType.PONG
    elif isinstance(response, ErrorResponse):
        msg_type = MessageType.ERROR
        _check_uint("error code", int(response.code), 0xFFFF)
        out += _U16.pack(int(response.code))
        _str16(out, "error message", response.message, MAX_STRING_LEN)
    else:
        raise TypeError(f"not a response: {response!r}")
    return encode_frame(msg_type, request_id, bytes(out))


def _write_verify(out: bytearray, v: VerifyRequest) -> None:
    credential = v.credential.encode("utf-8") if isinstance(v.credential, str) else bytes(v.credential)
    _bytes16(out, "credential", credential, MAX_CREDENTIAL_LEN)
    out += _encode_ip(v.ip)
    pairs = _permission_pairs(v.permissions)
    _count(out, "permissions", len(pairs))
    for resource, action in pairs:
        _str16(out, "permission resource", resource, MAX_STRING_LEN)
        _str16(out, "permission action", action, MAX_STRING_LEN)
    _u32(out, "cost", v.cost)
    if v.quota is None:
        out += b"\x00"
    else:
        name, amount = v.quota
        out += b"\x01"
        _str16(out, "quota name", name, MAX_STRING_LEN)
        _u32(out, "quota amount", amount)


def _permission_pairs(
    permissions: Union[Iterable[Tuple[str, str]], Mapping[str, Sequence[str]], None],
) -> List[Tuple[str, str]]:
    """Flattens ``[(resource, action), ...]`` or ``{resource: [actions]}`` to pairs."""
    if not permissions:
        return []
    if isinstance(permissions, Mapping):
        return [(resource, action) for resource, actions in permissions.items() for action in actions]
    pairs = []
    for pair in permissions:
        resource, action = pair
        pairs.append((resource, action))
    return pairs


def _encode_ip(ip: Union[IpAddress, str, None]) -> bytes:
    if ip is None:
        return b"\x00"
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # the spec asks for IPv4-mapped addresses as IPv4
    if isinstance(addr, ipaddress.IPv4Address):
        return b"\x04" + addr.packed
    if isinstance(addr, ipaddress.IPv6Address):
        return b"\x06" + addr.packed
    raise TypeError(f"not an IP address: {ip!r}")


def _write_verdict(out: bytearray, v: Union[Allow, Deny]) -> None:
    if isinstance(v, Allow):
        out += b"\x01"
        _check_uint("credential kind", int(v.kind), 0xFF)
        out.append(int(v.kind))
        _str16(out, "subject", v.subject, MAX_STRING_LEN)
        _str16(out, "team id", v.team_id, MAX_STRING_LEN)
        _str16(out, "credential id", v.credential_id, MAX_STRING_LEN)
        _count(out, "roles", len(v.roles))
        for role in v.roles:
            _str16(out, "role", role, MAX_STRING_LEN)
        _count(out, "permissions", len(v.permissions))
        for resource, actions in v.permissions:
            _str16(out, "permission resource", resource, MAX_STRING_LEN)
            _count(out, "actions", len(actions))
            for action in actions:
                _str16(out, "action", action, MAX_STRING_LEN)
        _opt_u64(out, "remaining uses", v.remaining_uses)
    else:
        out += b"\x02"
        _check_uint("deny code", int(v.code), 0xFF)
        out.append(int(v.code))
        _opt_u64(out, "retry after", v.retry_after_ms)
        _str16(out, "reason", v.reason, MAX_STRING_LEN)
    if v.rate_limit is None:
        out += b"\x00"
    else:
        rl = v.rate_limit
        _check_uint("rate limit", rl.limit, 0xFFFFFFFF)
        _check_uint("rate limit remaining", rl.remaining, 0xFFFFFFFF)
        _check_uint("rate limit reset", rl.reset_ms, 0xFFFFFFFFFFFFFFFF)
        out += b"\x01" + _RATE_LIMIT.pack(rl.limit, rl.remaining, rl.reset_ms)


def _check_uint(field: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{field} must be between 0 and {maximum}, not {value}")


def _u32(out: bytearray, field: str, value: int) -> None:
    _check_uint(field, value, 0xFFFFFFFF)
    out += _U32.pack(value)


def _u64(out: bytearray, field: str, value: int) -> None:
    _check_uint(field, value, 0xFFFFFFFFFFFFFFFF)
    out += _U64.pack(value)


def _opt_u64(out: bytearray, field: str, value: Optional[int]) -> None:
    if value is None:
        out += b"\x00"
    else:
        out += b"\x01"
        _u64(out, field, value)


def _bytes16(out: bytearray, field: str, value: bytes, limit: int) -> None:
    if len(value) > limit:
        raise FieldTooLong(field, len(value), limit)
    out += _U16.pack(len(value))
    out += value


def _str16(out: bytearray, field: str, value: str, limit: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    _bytes16(out, field, value.encode("utf-8"), limit)


def _count(out: bytearray, field: str, n: int) -> None:
    if n > MAX_LIST_LEN:
        raise FieldTooLong(field, n, MAX_LIST_LEN)
    out += _U16.pack(n)


# ---------------------------------------------------------------- streams


class FrameBuffer:
    """Accumulates bytes read from a connection and splits off whole frames.

    No I/O: :meth:`feed` what the socket gave, then call :meth:`next_frame`
    or :meth:`next_response` until they return ``None``. A length field over
    65536 raises :class:`FrameTooLarge` as soon as its four bytes are in, so
    an oversized frame is never buffered.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self, data: bytes = b"") -> None:
        self._buf = bytearray(data)
        self._pos = 0

    def feed(self, data: Buffer) -> None:
        """Appends bytes read from the connection."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def __len__(self) -> int:
        """Bytes held that are not part of a frame taken yet."""
        return len(self._buf) - self._pos

    def pending(self) -> bytes:
        """The bytes held that have not been taken as frames yet."""
        return bytes(self._buf[self._pos :])

    def take(self, n: int) -> bytes:
        """Removes and returns the next ``n`` bytes (e.g. a hello)."""
        if n > len(self):
            raise ValueError(f"only {len(self)} bytes buffered, {n} asked for")
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def next_frame(self) -> Optional[bytes]:
        """Removes and returns the next whole frame, or ``None`` if it has not all arrived."""
        view = memoryview(self._buf)[self._pos :]
        try:
            total = check_frame(view)
        finally:
            view.release()
        if total is None:
            return None
        return self.take(total)

    def next_response(self) -> Optional[Tuple[int, Response]]:
        """Removes and decodes the next whole response frame, if there is one."""
        frame = self.next_frame()
        return None if frame is None else decode_response(frame)
