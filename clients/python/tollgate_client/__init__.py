"""A small, dependency-free client for tollgate's binary Unix-socket protocol.

Written from ``protocol/SPEC.md`` (protocol version 1). The pieces:

* :mod:`tollgate_client.codec`: frame encoding and decoding, no I/O
  (:func:`check_frame` then :func:`decode_response`, :func:`encode_request`,
  :class:`FrameBuffer`, the handshake helpers);
* :mod:`tollgate_client.messages`: the requests, verdicts and codes;
* :mod:`tollgate_client.client`: the blocking :class:`Client` with
  pipelining (:meth:`Client.verify_many`, :meth:`Client.send` /
  :meth:`Client.recv`);
* :mod:`tollgate_client.errors`: the exceptions.

Example::

    from tollgate_client import Client

    with Client("/run/tollgate/tollgate.sock") as client:
        verdict = client.verify("tg_...", ip="203.0.113.7", permissions=[("documents", "read")])
        print(verdict.allowed, verdict.code)
"""

from .client import DEFAULT_TIMEOUT, PIPELINE_WINDOW, Client, handshake
from .codec import (
    HANDSHAKE_LEN,
    HEADER_LEN,
    LENGTH_PREFIX_LEN,
    MAGIC,
    MAX_CREDENTIAL_LEN,
    MAX_FRAME_LEN,
    MAX_LIST_LEN,
    MAX_REQUEST_ID,
    MAX_STRING_LEN,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    FrameBuffer,
    check_frame,
    decode_hello,
    decode_hello_reply,
    decode_request,
    decode_response,
    encode_frame,
    encode_hello,
    encode_request,
    encode_response,
    frame_request_id,
)
from .errors import (
    ConnectionClosed,
    ErrorFrame,
    FieldTooLong,
    FrameTooLarge,
    HandshakeRejected,
    ProtocolError,
    TollgateError,
)
from .messages import (
    Allow,
    CredentialKind,
    Deny,
    DenyCode,
    ErrorCode,
    ErrorResponse,
    MessageType,
    Permission,
    Ping,
    Pong,
    QuotaConsume,
    QuotaRelease,
    QuotaResult,
    QuotaUse,
    RateLimit,
    Request,
    Response,
    Verdict,
    VerifyRequest,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "handshake",
    "DEFAULT_TIMEOUT",
    "PIPELINE_WINDOW",
    "HANDSHAKE_LEN",
    "HEADER_LEN",
    "LENGTH_PREFIX_LEN",
    "MAGIC",
    "MAX_CREDENTIAL_LEN",
    "MAX_FRAME_LEN",
    "MAX_LIST_LEN",
    "MAX_REQUEST_ID",
    "MAX_STRING_LEN",
    "MIN_PROTOCOL_VERSION",
    "PROTOCOL_VERSION",
    "FrameBuffer",
    "check_frame",
    "decode_hello",
    "decode_hello_reply",
    "decode_request",
    "decode_response",
    "encode_frame",
    "encode_hello",
    "encode_request",
    "encode_response",
    "frame_request_id",
    "ConnectionClosed",
    "ErrorFrame",
    "FieldTooLong",
    "FrameTooLarge",
    "HandshakeRejected",
    "ProtocolError",
    "TollgateError",
    "Allow",
    "CredentialKind",
    "Deny",
    "DenyCode",
    "ErrorCode",
    "ErrorResponse",
    "MessageType",
    "Permission",
    "Ping",
    "Pong",
    "QuotaConsume",
    "QuotaRelease",
    "QuotaResult",
    "QuotaUse",
    "RateLimit",
    "Request",
    "Response",
    "Verdict",
    "VerifyRequest",
]
