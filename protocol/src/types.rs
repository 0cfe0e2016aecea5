//! Message types: what travels in a frame's payload, independent of its bytes.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// The one-byte message type that follows a frame's length prefix.
///
/// Requests use `0x01..=0x7F`; each response type is its request type with
/// the high bit set, so a client can tell the two directions apart at a
/// glance when reading a packet capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// A credential verification request, answered by [`MessageType::Verdict`].
    Verify = 0x01,
    /// Consume part of a team quota, answered by [`MessageType::QuotaResult`].
    QuotaConsume = 0x02,
    /// Give back part of a team quota, answered by [`MessageType::QuotaResult`].
    QuotaRelease = 0x03,
    /// Liveness check, answered by [`MessageType::Pong`].
    Ping = 0x04,
    /// The answer to a verify request: allow or deny.
    Verdict = 0x81,
    /// The answer to a quota consume or release.
    QuotaResult = 0x82,
    /// The answer to a ping.
    Pong = 0x84,
    /// A request- or connection-level error sent by the server.
    Error = 0xFF,
}

impl MessageType {
    /// Maps a wire byte to a message type, or `None` for a byte this version
    /// of the protocol does not define.
    pub const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::Verify,
            0x02 => Self::QuotaConsume,
            0x03 => Self::QuotaRelease,
            0x04 => Self::Ping,
            0x81 => Self::Verdict,
            0x82 => Self::QuotaResult,
            0x84 => Self::Pong,
            0xFF => Self::Error,
            _ => return None,
        })
    }

    /// The wire byte of this message type.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A decoded or to-be-encoded request, borrowing its strings from the frame
/// (when decoded) or from the caller (when encoded) so neither side copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Verify a credential and check its permissions, rate limits and quota.
    Verify(VerifyRequest<'a>),
    /// Consume `amount` units of a team quota; refused when it would exceed the limit.
    QuotaConsume(QuotaOp<'a>),
    /// Release `amount` units of a team quota previously consumed.
    QuotaRelease(QuotaOp<'a>),
    /// Liveness check; the server answers [`Response::Pong`].
    Ping,
}

impl Request<'_> {
    /// The message type this request is encoded with.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::Verify(_) => MessageType::Verify,
            Self::QuotaConsume(_) => MessageType::QuotaConsume,
            Self::QuotaRelease(_) => MessageType::QuotaRelease,
            Self::Ping => MessageType::Ping,
        }
    }
}

/// A verify request: the credential plus everything the daemon needs to
/// decide in one round trip (caller address, required permissions, cost
/// against the rate limit, and an optional quota to consume on success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyRequest<'a> {
    /// The credential exactly as presented by the end user (API key, access
    /// token or JWT). Raw bytes, at most [`crate::MAX_CREDENTIAL_LEN`]: a
    /// non-UTF-8 credential is a deny (`MALFORMED`), not a protocol error.
    pub credential: &'a [u8],
    /// The end user's IP address, checked against the credential's allow list.
    pub ip: Option<IpAddr>,
    /// `(resource, action)` pairs that must all be granted for an allow.
    pub permissions: PermissionList<'a>,
    /// How many units this request costs against the rate limit (usually 1).
    pub cost: u32,
    /// A team quota to consume atomically with the verification, if any.
    pub quota: Option<QuotaUse<'a>>,
}

impl<'a> VerifyRequest<'a> {
    /// Starts a request for `credential` with no IP, no required permissions,
    /// cost 1 and no quota; chain the setters to fill in the rest.
    pub fn new<C: AsRef<[u8]> + ?Sized>(credential: &'a C) -> Self {
        Self { credential: credential.as_ref(), ip: None, permissions: PermissionList::EMPTY, cost: 1, quota: None }
    }

    /// Sets the caller IP so the daemon can enforce the credential's IP allow list.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Sets the `(resource, action)` pairs that must all be granted.
    pub fn permissions(mut self, pairs: &'a [(&'a str, &'a str)]) -> Self {
        self.permissions = PermissionList::new(pairs);
        self
    }

    /// Sets how many rate-limit units this request costs.
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Asks the daemon to consume `amount` of the team quota `name` if, and
    /// only if, the credential is otherwise allowed.
    pub fn quota(mut self, name: &'a str, amount: u32) -> Self {
        self.quota = Some(QuotaUse { name, amount });
        self
    }

    /// The credential as text, or `None` if it is not UTF-8 (which the
    /// daemon answers with a `MALFORMED` deny).
    pub fn credential_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.credential).ok()
    }
}

/// A quota to consume as part of a verify request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUse<'a> {
    /// The quota's name, e.g. `"documents"`.
    pub name: &'a str,
    /// How many units to consume.
    pub amount: u32,
}

/// The payload of a quota consume or release request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaOp<'a> {
    /// The team whose quota is changed.
    pub team_id: &'a str,
    /// The quota's name, e.g. `"documents"`.
    pub quota: &'a str,
    /// How many units to consume or release.
    pub amount: u32,
}

/// The required permissions of a verify request.
///
/// It is either a slice of `(resource, action)` pairs supplied by a client,
/// or a view over the still-encoded pairs of a decoded frame: decoding
/// validates every pair once and then iterates them in place, so a server
/// decodes a verify request without allocating.
#[derive(Clone, Copy)]
pub struct PermissionList<'a> {
    repr: PermRepr<'a>,
}

#[derive(Clone, Copy)]
enum PermRepr<'a> {
    Pairs(&'a [(&'a str, &'a str)]),
    /// Encoded pairs (`str16 resource, str16 action` each), already validated.
    Wire {
        bytes: &'a [u8],
        count: u16,
    },
}

impl<'a> PermissionList<'a> {
    /// A list requiring no permissions.
    pub const EMPTY: PermissionList<'static> = PermissionList { repr: PermRepr::Pairs(&[]) };

    /// Wraps caller-supplied `(resource, action)` pairs.
    pub const fn new(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Self { repr: PermRepr::Pairs(pairs) }
    }

    /// Wraps `count` encoded pairs that the decoder has already validated.
    pub(crate) const fn from_wire(bytes: &'a [u8], count: u16) -> Self {
        Self { repr: PermRepr::Wire { bytes, count } }
    }

    /// How many pairs the list holds.
    pub fn len(&self) -> usize {
        match self.repr {
            PermRepr::Pairs(p) => p.len(),
            PermRepr::Wire { count, .. } => usize::from(count),
        }
    }

    /// Whether the list requires nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates the `(resource, action)` pairs in wire order.
    pub fn iter(&self) -> PermissionIter<'a> {
        PermissionIter {
            repr: match self.repr {
                PermRepr::Pairs(p) => IterRepr::Pairs(p.iter()),
                PermRepr::Wire { bytes, count } => IterRepr::Wire { bytes, remaining: count },
            },
        }
    }
}

impl Default for PermissionList<'_> {
    fn default() -> Self {
        PermissionList::EMPTY
    }
}

impl<'a> From<&'a [(&'a str, &'a str)]> for PermissionList<'a> {
    fn from(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Self::new(pairs)
    }
}

impl PartialEq for PermissionList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PermissionList<'_> {}

impl fmt::Debug for PermissionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for PermissionList<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = PermissionIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &PermissionList<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = PermissionIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`PermissionList`], yielding `(resource, action)` pairs.
#[derive(Clone)]
pub struct PermissionIter<'a> {
    repr: IterRepr<'a>,
}

#[derive(Clone)]
enum IterRepr<'a> {
    Pairs(std::slice::Iter<'a, (&'a str, &'a str)>),
    Wire { bytes: &'a [u8], remaining: u16 },
}

/// Reads one `u16 length + UTF-8` string off the front of `bytes`.
fn take_str16<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let s = rest.get(..len)?;
    *bytes = rest.get(len..)?;
    std::str::from_utf8(s).ok()
}

impl<'a> Iterator for PermissionIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.repr {
            IterRepr::Pairs(it) => it.next().copied(),
            IterRepr::Wire { bytes, remaining } => {
                if *remaining == 0 {
                    return None;
                }
                // The decoder validated these bytes, so this cannot fail; if it
                // somehow did, stopping early is the only non-panicking answer.
                let pair = take_str16(bytes).zip(take_str16(bytes));
                *remaining = if pair.is_some() { *remaining - 1 } else { 0 };
                pair
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.repr {
            IterRepr::Pairs(it) => it.size_hint(),
            IterRepr::Wire { remaining, .. } => (0, Some(usize::from(*remaining))),
        }
    }
}

/// A decoded or to-be-encoded response.
///
/// Strings and lists are `Cow`s: decoding borrows strings from the frame,
/// a server can encode from data it already holds without cloning, and
/// [`Response::into_owned`] detaches a client's copy from its read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// The answer to a verify request.
    Verdict(Verdict<'a>),
    /// The answer to a quota consume or release.
    QuotaResult(QuotaResult),
    /// The answer to a ping.
    Pong,
    /// A request-level (non-zero id) or connection-level (id 0) error.
    Error(ErrorResponse<'a>),
}

impl Response<'_> {
    /// The message type this response is encoded with.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::Verdict(_) => MessageType::Verdict,
            Self::QuotaResult(_) => MessageType::QuotaResult,
            Self::Pong => MessageType::Pong,
            Self::Error(_) => MessageType::Error,
        }
    }

    /// Copies every borrowed string so the response outlives the buffer it
    /// was decoded from.
    pub fn into_owned(self) -> Response<'static> {
        match self {
            Self::Verdict(v) => Response::Verdict(v.into_owned()),
            Self::QuotaResult(q) => Response::QuotaResult(q),
            Self::Pong => Response::Pong,
            Self::Error(e) => Response::Error(e.into_owned()),
        }
    }
}

/// The daemon's decision on a verify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The credential is valid and everything requested is granted.
    Allow(Allow<'a>),
    /// The request is refused; the code says why.
    Deny(Deny<'a>),
}

impl Verdict<'_> {
    /// Whether the request was allowed.
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The deny code, or `None` for an allow.
    pub fn deny_code(&self) -> Option<DenyCode> {
        match self {
            Self::Allow(_) => None,
            Self::Deny(d) => Some(d.code),
        }
    }

    /// The rate-limit state reported with either outcome, if any.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            Self::Allow(a) => a.rate_limit,
            Self::Deny(d) => d.rate_limit,
        }
    }

    /// Copies every borrowed string so the verdict outlives its buffer.
    pub fn into_owned(self) -> Verdict<'static> {
        match self {
            Self::Allow(a) => Verdict::Allow(a.into_owned()),
            Self::Deny(d) => Verdict::Deny(d.into_owned()),
        }
    }
}

/// Who the credential belongs to and what it may do, sent on allow so the
/// calling service needs no second lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow<'a> {
    /// What sort of credential was presented.
    pub kind: CredentialKind,
    /// The user id the credential acts for.
    pub subject: Cow<'a, str>,
    /// The team the credential belongs to.
    pub team_id: Cow<'a, str>,
    /// The credential's own id (API key id, access token id, or JWT `jti`).
    pub credential_id: Cow<'a, str>,
    /// The subject's roles.
    pub roles: List<'a, Cow<'a, str>>,
    /// Everything the credential grants, grouped by resource.
    pub permissions: List<'a, Permission<'a>>,
    /// Uses left on a credential with a usage cap, after this one.
    pub remaining_uses: Option<u64>,
    /// The rate-limit state after this request, if the credential is limited.
    pub rate_limit: Option<RateLimit>,
}

impl Allow<'_> {
    /// Copies every borrowed string so the value outlives its buffer.
    pub fn into_owned(self) -> Allow<'static> {
        Allow {
            kind: self.kind,
            subject: own(self.subject),
            team_id: own(self.team_id),
            credential_id: own(self.credential_id),
            roles: own_list(&self.roles),
            permissions: List::Owned(self.permissions.iter().map(|p| p.clone().into_owned()).collect()),
            remaining_uses: self.remaining_uses,
            rate_limit: self.rate_limit,
        }
    }
}

/// The actions a credential may perform on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission<'a> {
    /// The resource, e.g. `"documents"`.
    pub resource: Cow<'a, str>,
    /// The granted actions, e.g. `["read", "write"]`.
    pub actions: List<'a, Cow<'a, str>>,
}

impl Permission<'_> {
    /// Copies every borrowed string so the value outlives its buffer.
    pub fn into_owned(self) -> Permission<'static> {
        Permission { resource: own(self.resource), actions: own_list(&self.actions) }
    }
}

/// Why a request was refused, with the hints a caller needs to react.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny<'a> {
    /// The machine-readable reason.
    pub code: DenyCode,
    /// When retrying may succeed (rate limits), in milliseconds from now.
    pub retry_after_ms: Option<u64>,
    /// A short human-readable explanation; may be empty.
    pub reason: Cow<'a, str>,
    /// The rate-limit state, if the credential is limited.
    pub rate_limit: Option<RateLimit>,
}

impl Deny<'_> {
    /// Copies every borrowed string so the value outlives its buffer.
    pub fn into_owned(self) -> Deny<'static> {
        Deny {
            code: self.code,
            retry_after_ms: self.retry_after_ms,
            reason: own(self.reason),
            rate_limit: self.rate_limit,
        }
    }
}

/// Rate-limit state to pass on to the end user (e.g. as `RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Units allowed per window.
    pub limit: u32,
    /// Units left in the current window.
    pub remaining: u32,
    /// Milliseconds until the window resets.
    pub reset_ms: u64,
}

/// The answer to a quota consume or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaResult {
    /// Whether the operation was applied; a consume that would exceed the
    /// limit is refused and leaves `used` unchanged.
    pub ok: bool,
    /// Units in use after the operation.
    pub used: u64,
    /// The quota's limit, or `None` when the quota is unlimited.
    pub limit: Option<u64>,
}

/// An error reported by the server instead of a normal response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// A human-readable detail, for logs.
    pub message: Cow<'a, str>,
}

impl ErrorResponse<'_> {
    /// Copies the message so the value outlives its buffer.
    pub fn into_owned(self) -> ErrorResponse<'static> {
        ErrorResponse { code: self.code, message: own(self.message) }
    }
}

impl fmt::Display for ErrorResponse<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server error {}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ErrorResponse<'_> {}

fn own(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

fn own_list(list: &[Cow<'_, str>]) -> List<'static, Cow<'static, str>> {
    List::Owned(list.iter().map(|s| Cow::Owned(s.to_string())).collect())
}

/// A list that is either borrowed or owned, like `Cow<[T]>`.
///
/// `Cow<'a, [T]>` would make every response type invariant in `'a`
/// (because of `ToOwned::Owned`), so a `Response<'static>` could not be
/// compared with or stored as a shorter-lived one; this plain enum is
/// covariant. Borrowing lets a server encode lists it already holds (or
/// statics) without building vectors per response; decoding produces
/// `Owned` vectors of borrowed strings.
#[derive(Clone)]
pub enum List<'a, T> {
    /// A slice the value borrows.
    Borrowed(&'a [T]),
    /// A vector the value owns.
    Owned(Vec<T>),
}

impl<T> List<'_, T> {
    /// The elements as a slice, whichever form holds them.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(v) => v,
        }
    }
}

impl<T> Default for List<'_, T> {
    fn default() -> Self {
        Self::Borrowed(&[])
    }
}

impl<T> std::ops::Deref for List<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> From<Vec<T>> for List<'_, T> {
    fn from(v: Vec<T>) -> Self {
        Self::Owned(v)
    }
}

impl<'a, T> From<&'a [T]> for List<'a, T> {
    fn from(s: &'a [T]) -> Self {
        Self::Borrowed(s)
    }
}

impl<T: PartialEq> PartialEq for List<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for List<'_, T> {}

impl<T: fmt::Debug> fmt::Debug for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// The kind of credential that was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CredentialKind {
    /// A long-lived API key.
    ApiKey = 1,
    /// An opaque access token issued by the daemon.
    AccessToken = 2,
    /// A signed JSON Web Token.
    Jwt = 3,
}

impl CredentialKind {
    /// Maps a wire byte to a kind, or `None` for an undefined byte.
    pub const fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::ApiKey,
            2 => Self::AccessToken,
            3 => Self::Jwt,
            _ => return None,
        })
    }

    /// The wire byte of this kind.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// A lowercase name for logs and headers: `api_key`, `access_token`, `jwt`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::AccessToken => "access_token",
            Self::Jwt => "jwt",
        }
    }
}

macro_rules! deny_codes {
    ($($(#[$doc:meta])* $name:ident = $val:literal, $text:literal;)*) => {
        /// Why a verify request was denied.
        ///
        /// New codes are only added together with a new protocol version, so
        /// a client that negotiated version 1 never sees an unknown code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DenyCode {
            $($(#[$doc])* $name = $val,)*
        }

        impl DenyCode {
            /// Every code, in wire order; handy for tests and metrics labels.
            pub const ALL: &'static [DenyCode] = &[$(Self::$name,)*];

            /// Maps a wire byte to a code, or `None` for an undefined byte.
            pub const fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $($val => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// The stable upper-case name, e.g. `"RATE_LIMITED"`, for logs,
            /// metrics and error bodies.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$name => $text,)*
                }
            }
        }
    };
}

deny_codes! {
    /// The credential is not in a recognised format.
    Malformed = 1, "MALFORMED";
    /// No credential with this id exists.
    NotFound = 2, "NOT_FOUND";
    /// The secret or signature does not match.
    BadSignature = 3, "BAD_SIGNATURE";
    /// The credential has expired.
    Expired = 4, "EXPIRED";
    /// The credential is not valid yet (`nbf` in the future).
    NotYetValid = 5, "NOT_YET_VALID";
    /// The credential was revoked.
    Revoked = 6, "REVOKED";
    /// The credential, its user or its team is disabled.
    Disabled = 7, "DISABLED";
    /// The caller IP is outside the credential's allow list.
    IpNotAllowed = 8, "IP_NOT_ALLOWED";
    /// A required permission is not granted.
    InsufficientPermissions = 9, "INSUFFICIENT_PERMISSIONS";
    /// The credential's rate limit is exhausted.
    RateLimited = 10, "RATE_LIMITED";
    /// The credential's usage cap is used up.
    UsageExceeded = 11, "USAGE_EXCEEDED";
    /// The team's shared rate limit is exhausted.
    TeamRateLimited = 12, "TEAM_RATE_LIMITED";
    /// The requested quota would be exceeded.
    QuotaExceeded = 13, "QUOTA_EXCEEDED";
}

impl DenyCode {
    /// The wire byte of this code.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The code of an [`ErrorResponse`]: a problem with the protocol exchange
/// itself rather than with the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame could not be parsed; the server closes the connection.
    MalformedFrame = 1,
    /// The handshake asked for a version the server cannot speak.
    UnsupportedVersion = 2,
    /// A frame's length prefix exceeds [`crate::MAX_FRAME_LEN`].
    FrameTooLarge = 3,
    /// The frame's message type is unknown; the connection stays usable.
    UnknownMessageType = 4,
    /// The server is overloaded or shutting down.
    ServerBusy = 5,
    /// The server failed internally while handling the request.
    Internal = 6,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: &'static [ErrorCode] = &[
        Self::MalformedFrame,
        Self::UnsupportedVersion,
        Self::FrameTooLarge,
        Self::UnknownMessageType,
        Self::ServerBusy,
        Self::Internal,
    ];

    /// Maps a wire value to a code, or `None` for an undefined value.
    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::MalformedFrame,
            2 => Self::UnsupportedVersion,
            3 => Self::FrameTooLarge,
            4 => Self::UnknownMessageType,
            5 => Self::ServerBusy,
            6 => Self::Internal,
            _ => return None,
        })
    }

    /// The wire value of this code.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The stable upper-case name, e.g. `"FRAME_TOO_LARGE"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedFrame => "MALFORMED_FRAME",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::FrameTooLarge => "FRAME_TOO_LARGE",
            Self::UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
            Self::ServerBusy => "SERVER_BUSY",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
