"""Message types of the tollgate sidecar protocol, independent of their bytes."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Tuple, Union

__all__ = [
    "MessageType",
    "CredentialKind",
    "DenyCode",
    "ErrorCode",
    "RateLimit",
    "Permission",
    "QuotaUse",
    "Allow",
    "Deny",
    "Verdict",
    "QuotaResult",
    "Pong",
    "ErrorResponse",
    "Response",
    "VerifyRequest",
    "QuotaConsume",
    "QuotaRelease",
    "Ping",
    "Request",
    "IpAddress",
]

IpAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class MessageType(enum.IntEnum):
    """The type byte of a frame (SPEC.md section 4)."""

    VERIFY = 0x01
    QUOTA_CONSUME = 0x02
    QUOTA_RELEASE = 0x03
    PING = 0x04
    VERDICT = 0x81
    QUOTA_RESULT = 0x82
    PONG = 0x84
    ERROR = 0xFF


class CredentialKind(enum.IntEnum):
    """What sort of credential an allow verdict is for."""

    API_KEY = 1
    ACCESS_TOKEN = 2
    JWT = 3


class DenyCode(enum.IntEnum):
    """Why a verify request was denied (SPEC.md section 5.2)."""

    MALFORMED = 1
    NOT_FOUND = 2
    BAD_SIGNATURE = 3
    EXPIRED = 4
    NOT_YET_VALID = 5
    REVOKED = 6
    DISABLED = 7
    IP_NOT_ALLOWED = 8
    INSUFFICIENT_PERMISSIONS = 9
    RATE_LIMITED = 10
    USAGE_EXCEEDED = 11
    TEAM_RATE_LIMITED = 12
    QUOTA_EXCEEDED = 13


class ErrorCode(enum.IntEnum):
    """The code of an Error frame (SPEC.md section 5.6)."""

    MALFORMED_FRAME = 1
    UNSUPPORTED_VERSION = 2
    FRAME_TOO_LARGE = 3
    UNKNOWN_MESSAGE_TYPE = 4
    SERVER_BUSY = 5
    INTERNAL = 6


@dataclass(frozen=True)
class RateLimit:
    """Rate-limit state after a request, e.g. for ``RateLimit-*`` headers."""

    #: Units allowed per window.
    limit: int
    #: Units left in the current window.
    remaining: int
    #: Milliseconds until the window resets.
    reset_ms: int


class Permission(NamedTuple):
    """The actions granted on one resource, as listed in an allow verdict."""

    resource: str
    actions: Tuple[str, ...]


class QuotaUse(NamedTuple):
    """A team quota to consume together with a verify request."""

    name: str
    amount: int


@dataclass(frozen=True)
class Allow:
    """An allow verdict: who the credential acts for and what it may do."""

    #: The kind of credential presented.
    kind: CredentialKind
    #: The user id the credential acts for.
    subject: str
    #: The team the credential belongs to.
    team_id: str
    #: The API key id, access token id, or the JWT's ``jti``.
    credential_id: str
    #: The subject's roles.
    roles: Tuple[str, ...] = ()
    #: Everything the credential grants, grouped by resource, in wire order.
    permissions: Tuple[Permission, ...] = ()
    #: Uses left after this one on a credential with a usage cap; ``None`` when uncapped.
    remaining_uses: Optional[int] = None
    #: Rate-limit state after this request; ``None`` when not rate-limited.
    rate_limit: Optional[RateLimit] = None

    @property
    def allowed(self) -> bool:
        """Always ``True``: lets callers test ``verdict.allowed`` on either outcome."""
        return True

    @property
    def code(self) -> None:
        """Always ``None``: an allow has no deny code."""
        return None

    def permissions_dict(self) -> Dict[str, Tuple[str, ...]]:
        """The granted permissions as ``{resource: actions}``."""
        return {p.resource: p.actions for p in self.permissions}


@dataclass(frozen=True)
class Deny:
    """A deny verdict and the hints a caller needs to react to it."""

    #: Why the request was denied.
    code: DenyCode
    #: Milliseconds after which a retry may succeed (rate-limit codes), else ``None``.
    retry_after_ms: Optional[int] = None
    #: A short explanation for logs; never parse it.
    reason: str = ""
    #: Rate-limit state, if the credential is rate-limited.
    rate_limit: Optional[RateLimit] = None

    @property
    def allowed(self) -> bool:
        """Always ``False``."""
        return False


Verdict = Union[Allow, Deny]


@dataclass(frozen=True)
class QuotaResult:
    """The answer to a quota consume or release (SPEC.md section 5.4)."""

    #: Whether the operation was applied.
    ok: bool
    #: Units in use after the operation.
    used: int
    #: The quota's limit; ``None`` when unlimited.
    limit: Optional[int] = None


@dataclass(frozen=True)
class Pong:
    """The answer to a ping."""


@dataclass(frozen=True)
class ErrorResponse:
    """An Error frame as a value (SPEC.md section 5.6).

    :meth:`tollgate_client.Client.recv` returns these with their request id;
    the blocking calls turn them into :class:`~tollgate_client.ErrorFrame`
    exceptions.
    """

    #: What went wrong.
    code: ErrorCode
    #: Human-readable detail for logs; never parse it.
    message: str = ""


Response = Union[Allow, Deny, QuotaResult, Pong, ErrorResponse]


@dataclass(frozen=True)
class VerifyRequest:
    """A verify request (SPEC.md section 5.1).

    ``credential`` is sent as given if it is bytes, UTF-8 encoded if it is a
    string. ``ip`` may be an address object or its text form; an
    IPv4-mapped IPv6 address is sent as IPv4. ``permissions`` are
    ``(resource, action)`` pairs that must all be granted. ``quota`` is a
    ``(name, amount)`` pair consumed atomically with an allow.
    """

    credential: Union[bytes, str]
    ip: Union[IpAddress, str, None] = None
    permissions: Tuple[Tuple[str, str], ...] = field(default=())
    cost: int = 1
    quota: Optional[Tuple[str, int]] = None


@dataclass(frozen=True)
class QuotaConsume:
    """Consume ``amount`` units of a team quota (refused past its limit)."""

    team_id: str
    quota: str
    amount: int


@dataclass(frozen=True)
class QuotaRelease:
    """Give back ``amount`` units of a team quota (never below zero)."""

    team_id: str
    quota: str
    amount: int


@dataclass(frozen=True)
class Ping:
    """A liveness check, answered by :class:`Pong`."""


Request = Union[VerifyRequest, QuotaConsume, QuotaRelease, Ping]
