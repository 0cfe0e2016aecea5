//! Frame checking, decoding and encoding. No I/O happens here.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::types::{
    Allow, CredentialKind, Deny, DenyCode, ErrorCode, ErrorResponse, List, MessageType, Permission, PermissionList,
    QuotaOp, QuotaResult, QuotaUse, RateLimit, Request, Response, Verdict, VerifyRequest,
};

/// Largest value the 4-byte length prefix may hold (64 KiB). A server closes
/// the connection on a larger prefix without reading the body, so one bad
/// client can never make it buffer more than this per connection.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Bytes of the length prefix that starts every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Bytes of the header after the length prefix: message type (1) + request id (4).
/// The length prefix of a valid frame is therefore at least this.
pub const HEADER_LEN: usize = 5;
/// Longest credential a verify request may carry (8 KiB), enough for large JWTs.
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;
/// Longest of any other string (ids, names, roles, reasons, messages), in bytes.
pub const MAX_STRING_LEN: usize = 1024;
/// Most entries any list (permissions, roles, actions) may hold.
pub const MAX_LIST_LEN: usize = 256;

/// Why bytes could not be decoded or a message could not be encoded.
///
/// [`FrameError::Incomplete`] alone means "wait for more bytes"; every other
/// variant means the bytes are invalid and waiting will not help.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer ends before the frame (or handshake) does; read more.
    Incomplete,
    /// A length prefix (or an encoded frame) exceeds [`MAX_FRAME_LEN`].
    TooLarge {
        /// The offending length.
        len: usize,
    },
    /// A length prefix is smaller than [`HEADER_LEN`], so there is no id.
    TooShort {
        /// The offending length.
        len: usize,
    },
    /// The handshake did not start with the `TGAT` magic.
    BadMagic,
    /// The handshake asked for a protocol version that cannot be spoken.
    UnsupportedVersion {
        /// The version that was asked for.
        version: u16,
    },
    /// The frame's message type is not defined (or is the wrong direction).
    UnknownMessageType {
        /// The message type byte.
        msg_type: u8,
    },
    /// The payload ends in the middle of a field.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A string or list is longer than its limit.
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length (bytes for strings, entries for lists).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string field is not valid UTF-8.
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A tag, flag or code byte holds a value the protocol does not define.
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The payload continues after its last field.
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
}

impl FrameError {
    /// Whether more input could complete the frame, as opposed to the input
    /// being invalid.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Self::Incomplete)
    }

    /// The [`ErrorCode`] a server reports for this error in its error frame.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::UnknownMessageType { .. } => ErrorCode::UnknownMessageType,
            _ => ErrorCode::MalformedFrame,
        }
    }

    /// Whether a server must close the connection after reporting this
    /// error. Only an unknown message type leaves it open: frame boundaries
    /// are intact and a newer client may be probing for a feature.
    pub fn closes_connection(&self) -> bool {
        !matches!(self, Self::UnknownMessageType { .. } | Self::Incomplete)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete => f.write_str("incomplete frame"),
            Self::TooLarge { len } => {
                write!(f, "frame length {len} exceeds the maximum of {MAX_FRAME_LEN}")
            }
            Self::TooShort { len } => {
                write!(f, "frame length {len} is shorter than the {HEADER_LEN}-byte header")
            }
            Self::BadMagic => f.write_str("handshake does not start with the TGAT magic"),
            Self::UnsupportedVersion { version } => {
                write!(f, "unsupported protocol version {version}")
            }
            Self::UnknownMessageType { msg_type } => {
                write!(f, "unknown message type 0x{msg_type:02x}")
            }
            Self::Truncated { field } => write!(f, "frame ends inside {field}"),
            Self::FieldTooLong { field, len, max } => {
                write!(f, "{field} is too long: {len} > {max}")
            }
            Self::InvalidUtf8 { field } => write!(f, "{field} is not valid UTF-8"),
            Self::InvalidValue { field, value } => write!(f, "invalid {field}: {value}"),
            Self::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes after the payload")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for std::io::Error {
    fn from(e: FrameError) -> Self {
        let kind = if e.is_incomplete() { std::io::ErrorKind::UnexpectedEof } else { std::io::ErrorKind::InvalidData };
        std::io::Error::new(kind, e)
    }
}

/// Checks whether `buf` starts with a complete frame, without decoding it.
///
/// Returns `Ok(Some(n))` when the first `n` bytes of `buf` are one whole
/// frame (length prefix included), `Ok(None)` when more bytes are needed,
/// and an error as soon as the length prefix alone proves the frame invalid
/// (too large or too short), so an oversized frame is rejected after four
/// bytes, before anything is buffered for it.
pub fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    if len < HEADER_LEN {
        return Err(FrameError::TooShort { len });
    }
    let total = LENGTH_PREFIX_LEN + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Reads the request id of the frame at the start of `buf`, if its header
/// is complete and its length prefix valid.
///
/// A server uses this after a decode error to address its error frame to
/// the failed request (or to id 0 when this returns `None`).
pub fn frame_request_id(buf: &[u8]) -> Option<u32> {
    check_frame(buf).ok()?;
    let id = buf.get(LENGTH_PREFIX_LEN + 1..LENGTH_PREFIX_LEN + HEADER_LEN)?;
    Some(u32::from_be_bytes(id.try_into().ok()?))
}

/// Splits the first frame of `buf` into (message type byte, id, payload).
fn split_frame(buf: &[u8]) -> Result<(u8, u32, &[u8]), FrameError> {
    let total = check_frame(buf)?.ok_or(FrameError::Incomplete)?;
    let frame = buf.get(LENGTH_PREFIX_LEN..total).ok_or(FrameError::Incomplete)?;
    let (&msg_type, rest) = frame.split_first().ok_or(FrameError::Incomplete)?;
    let (id, payload) = rest.split_first_chunk::<4>().ok_or(FrameError::Incomplete)?;
    Ok((msg_type, u32::from_be_bytes(*id), payload))
}

/// Decodes the request frame at the start of `buf` (length prefix included).
///
/// Bytes after the frame are ignored, so a server may pass its whole read
/// buffer and then discard the `n` bytes reported by [`check_frame`]. The
/// request borrows its strings and credential from `buf`: nothing is copied
/// and nothing is allocated. A `buf` shorter than the frame gives
/// [`FrameError::Incomplete`].
pub fn decode_request(buf: &[u8]) -> Result<(u32, Request<'_>), FrameError> {
    let (msg_type, id, payload) = split_frame(buf)?;
    let mut r = Reader { buf: payload };
    let req = match MessageType::from_u8(msg_type) {
        Some(MessageType::Verify) => Request::Verify(read_verify(&mut r)?),
        Some(MessageType::QuotaConsume) => Request::QuotaConsume(read_quota_op(&mut r)?),
        Some(MessageType::QuotaRelease) => Request::QuotaRelease(read_quota_op(&mut r)?),
        Some(MessageType::Ping) => Request::Ping,
        _ => return Err(FrameError::UnknownMessageType { msg_type }),
    };
    r.finish()?;
    Ok((id, req))
}

/// Decodes the response frame at the start of `buf` (length prefix included).
///
/// Strings borrow from `buf`; lists are collected into small vectors whose
/// capacity is bounded by the frame's size, never by a length read from it.
/// Call [`Response::into_owned`] to keep the result past the buffer.
pub fn decode_response(buf: &[u8]) -> Result<(u32, Response<'_>), FrameError> {
    let (msg_type, id, payload) = split_frame(buf)?;
    let mut r = Reader { buf: payload };
    let resp = match MessageType::from_u8(msg_type) {
        Some(MessageType::Verdict) => Response::Verdict(read_verdict(&mut r)?),
        Some(MessageType::QuotaResult) => Response::QuotaResult(QuotaResult {
            ok: r.flag("quota ok")?,
            used: r.u64("quota used")?,
            limit: if r.flag("quota limit flag")? { Some(r.u64("quota limit")?) } else { None },
        }),
        Some(MessageType::Pong) => Response::Pong,
        Some(MessageType::Error) => {
            let raw = r.u16("error code")?;
            let code =
                ErrorCode::from_u16(raw).ok_or(FrameError::InvalidValue { field: "error code", value: raw.into() })?;
            let message = Cow::Borrowed(r.str16("error message", MAX_STRING_LEN)?);
            Response::Error(ErrorResponse { code, message })
        }
        _ => return Err(FrameError::UnknownMessageType { msg_type }),
    };
    r.finish()?;
    Ok((id, resp))
}

fn read_verify<'a>(r: &mut Reader<'a>) -> Result<VerifyRequest<'a>, FrameError> {
    let credential = r.bytes16("credential", MAX_CREDENTIAL_LEN)?;
    let ip = match r.u8("ip tag")? {
        0 => None,
        4 => Some(IpAddr::V4(Ipv4Addr::from(r.array::<4>("ipv4")?))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>("ipv6")?))),
        t => {
            return Err(FrameError::InvalidValue { field: "ip tag", value: t.into() });
        }
    };
    let count = r.count("permissions")?;
    let start = r.buf;
    for _ in 0..count {
        r.str16("permission resource", MAX_STRING_LEN)?;
        r.str16("permission action", MAX_STRING_LEN)?;
    }
    let used = start.len() - r.buf.len();
    let perm_bytes = start.get(..used).unwrap_or_default();
    // `count` is at most MAX_LIST_LEN, so it fits in a u16.
    let permissions = PermissionList::from_wire(perm_bytes, count as u16);
    let cost = r.u32("cost")?;
    let quota = if r.flag("quota flag")? {
        Some(QuotaUse { name: r.str16("quota name", MAX_STRING_LEN)?, amount: r.u32("quota amount")? })
    } else {
        None
    };
    Ok(VerifyRequest { credential, ip, permissions, cost, quota })
}

fn read_quota_op<'a>(r: &mut Reader<'a>) -> Result<QuotaOp<'a>, FrameError> {
    Ok(QuotaOp {
        team_id: r.str16("team id", MAX_STRING_LEN)?,
        quota: r.str16("quota name", MAX_STRING_LEN)?,
        amount: r.u32("quota amount")?,
    })
}

fn read_verdict<'a>(r: &mut Reader<'a>) -> Result<Verdict<'a>, FrameError> {
    match r.u8("verdict")? {
        1 => {
            let raw = r.u8("credential kind")?;
            let kind = CredentialKind::from_u8(raw)
                .ok_or(FrameError::InvalidValue { field: "credential kind", value: raw.into() })?;
            let subject = Cow::Borrowed(r.str16("subject", MAX_STRING_LEN)?);
            let team_id = Cow::Borrowed(r.str16("team id", MAX_STRING_LEN)?);
            let credential_id = Cow::Borrowed(r.str16("credential id", MAX_STRING_LEN)?);
            let roles = r.str_list("roles", "role")?;
            let count = r.count("permissions")?;
            let mut permissions = Vec::with_capacity(r.capacity_for(count, 4));
            for _ in 0..count {
                let resource = Cow::Borrowed(r.str16("permission resource", MAX_STRING_LEN)?);
                let actions = r.str_list("actions", "action")?;
                permissions.push(Permission { resource, actions: List::Owned(actions) });
            }
            let remaining_uses = if r.flag("remaining uses flag")? { Some(r.u64("remaining uses")?) } else { None };
            let rate_limit = r.rate_limit()?;
            Ok(Verdict::Allow(Allow {
                kind,
                subject,
                team_id,
                credential_id,
                roles: List::Owned(roles),
                permissions: List::Owned(permissions),
                remaining_uses,
                rate_limit,
            }))
        }
        2 => {
            let raw = r.u8("deny code")?;
            let code =
                DenyCode::from_u8(raw).ok_or(FrameError::InvalidValue { field: "deny code", value: raw.into() })?;
            let retry_after_ms = if r.flag("retry after flag")? { Some(r.u64("retry after")?) } else { None };
            let reason = Cow::Borrowed(r.str16("reason", MAX_STRING_LEN)?);
            let rate_limit = r.rate_limit()?;
            Ok(Verdict::Deny(Deny { code, retry_after_ms, reason, rate_limit }))
        }
        v => Err(FrameError::InvalidValue { field: "verdict", value: v.into() }),
    }
}

/// A cursor over a frame's payload. Every read is bounds-checked and
/// reports running out of bytes as [`FrameError::Truncated`]: the length
/// prefix promised a complete payload, so a short one is invalid.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        if n > self.buf.len() {
            return Err(FrameError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(FrameError::Truncated { field })?;
        self.buf = tail;
        Ok(*head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A presence or boolean byte: exactly 0 or 1.
    fn flag(&mut self, field: &'static str) -> Result<bool, FrameError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(FrameError::InvalidValue { field, value: v.into() }),
        }
    }

    fn bytes16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], FrameError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(FrameError::FieldTooLong { field, len, max });
        }
        self.take(len, field)
    }

    fn str16(&mut self, field: &'static str, max: usize) -> Result<&'a str, FrameError> {
        let bytes = self.bytes16(field, max)?;
        std::str::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8 { field })
    }

    fn count(&mut self, field: &'static str) -> Result<usize, FrameError> {
        let len = usize::from(self.u16(field)?);
        if len > MAX_LIST_LEN {
            return Err(FrameError::FieldTooLong { field, len, max: MAX_LIST_LEN });
        }
        Ok(len)
    }

    /// A safe `Vec` capacity for `count` entries of at least `min_size`
    /// bytes each: never more than the remaining payload could hold.
    fn capacity_for(&self, count: usize, min_size: usize) -> usize {
        count.min(self.buf.len() / min_size)
    }

    fn str_list(&mut self, field: &'static str, item: &'static str) -> Result<Vec<Cow<'a, str>>, FrameError> {
        let count = self.count(field)?;
        let mut list = Vec::with_capacity(self.capacity_for(count, 2));
        for _ in 0..count {
            list.push(Cow::Borrowed(self.str16(item, MAX_STRING_LEN)?));
        }
        Ok(list)
    }

    fn rate_limit(&mut self) -> Result<Option<RateLimit>, FrameError> {
        if !self.flag("rate limit flag")? {
            return Ok(None);
        }
        Ok(Some(RateLimit {
            limit: self.u32("rate limit")?,
            remaining: self.u32("rate limit remaining")?,
            reset_ms: self.u64("rate limit reset")?,
        }))
    }

    fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() { Ok(()) } else { Err(FrameError::TrailingBytes { count: self.buf.len() }) }
    }
}

/// Appends one encoded request frame to `out`.
///
/// Nothing is written to the socket; call this for several requests and
/// write `out` once to pipeline them. On error (a field over its limit, or a
/// frame over [`MAX_FRAME_LEN`]) `out` is left exactly as it was.
pub fn encode_request(id: u32, req: &Request<'_>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    encode_frame(out, req.message_type(), id, |w| match req {
        Request::Verify(v) => write_verify(w, v),
        Request::QuotaConsume(op) | Request::QuotaRelease(op) => {
            w.str16("team id", op.team_id, MAX_STRING_LEN)?;
            w.str16("quota name", op.quota, MAX_STRING_LEN)?;
            w.u32(op.amount);
            Ok(())
        }
        Request::Ping => Ok(()),
    })
}

/// Appends one encoded response frame to `out`.
///
/// A server calls this with the id of the request it answers and writes
/// `out` when convenient, batching answers that are ready together. On
/// error `out` is left exactly as it was.
pub fn encode_response(id: u32, resp: &Response<'_>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    encode_frame(out, resp.message_type(), id, |w| match resp {
        Response::Verdict(v) => write_verdict(w, v),
        Response::QuotaResult(q) => {
            w.u8(q.ok.into());
            w.u64(q.used);
            w.opt_u64(q.limit);
            Ok(())
        }
        Response::Pong => Ok(()),
        Response::Error(e) => {
            w.u16(e.code.as_u16());
            w.str16("error message", &e.message, MAX_STRING_LEN)
        }
    })
}

/// Appends an error frame; a convenience for servers reporting a
/// [`FrameError`] (`frame_error.error_code()`) or a busy/internal condition.
///
/// A message longer than [`MAX_STRING_LEN`] is cut at a character boundary
/// rather than failing, since an error report must always go out.
pub fn encode_error(id: u32, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    let mut end = message.len().min(MAX_STRING_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = Cow::Borrowed(message.get(..end).unwrap_or_default());
    // Cannot fail: the message fits its limit and the frame is tiny.
    let _ = encode_response(id, &Response::Error(ErrorResponse { code, message }), out);
}

fn encode_frame(
    out: &mut Vec<u8>,
    msg_type: MessageType,
    id: u32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
    out.push(msg_type.as_u8());
    out.extend_from_slice(&id.to_be_bytes());
    let result = body(&mut Writer { out: &mut *out }).and_then(|()| {
        let len = out.len() - start - LENGTH_PREFIX_LEN;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len });
        }
        // len <= MAX_FRAME_LEN, so it fits in a u32.
        let prefix = (len as u32).to_be_bytes();
        if let Some(slot) = out.get_mut(start..start + LENGTH_PREFIX_LEN) {
            slot.copy_from_slice(&prefix);
        }
        Ok(())
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_verify(w: &mut Writer<'_>, v: &VerifyRequest<'_>) -> Result<(), FrameError> {
    w.bytes16("credential", v.credential, MAX_CREDENTIAL_LEN)?;
    match v.ip {
        None => w.u8(0),
        Some(IpAddr::V4(ip)) => {
            w.u8(4);
            w.out.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            w.u8(6);
            w.out.extend_from_slice(&ip.octets());
        }
    }
    w.count("permissions", v.permissions.len())?;
    for (resource, action) in v.permissions.iter() {
        w.str16("permission resource", resource, MAX_STRING_LEN)?;
        w.str16("permission action", action, MAX_STRING_LEN)?;
    }
    w.u32(v.cost);
    match v.quota {
        None => w.u8(0),
        Some(q) => {
            w.u8(1);
            w.str16("quota name", q.name, MAX_STRING_LEN)?;
            w.u32(q.amount);
        }
    }
    Ok(())
}

fn write_verdict(w: &mut Writer<'_>, v: &Verdict<'_>) -> Result<(), FrameError> {
    match v {
        Verdict::Allow(a) => {
            w.u8(1);
            w.u8(a.kind.as_u8());
            w.str16("subject", &a.subject, MAX_STRING_LEN)?;
            w.str16("team id", &a.team_id, MAX_STRING_LEN)?;
            w.str16("credential id", &a.credential_id, MAX_STRING_LEN)?;
            w.str_list("roles", "role", &a.roles)?;
            w.count("permissions", a.permissions.len())?;
            for p in a.permissions.iter() {
                w.str16("permission resource", &p.resource, MAX_STRING_LEN)?;
                w.str_list("actions", "action", &p.actions)?;
            }
            w.opt_u64(a.remaining_uses);
            w.rate_limit(a.rate_limit);
        }
        Verdict::Deny(d) => {
            w.u8(2);
            w.u8(d.code.as_u8());
            w.opt_u64(d.retry_after_ms);
            w.str16("reason", &d.reason, MAX_STRING_LEN)?;
            w.rate_limit(d.rate_limit);
        }
    }
    Ok(())
}

/// Appends big-endian fields to an output buffer, checking limits.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
        }
    }

    fn bytes16(&mut self, field: &'static str, v: &[u8], max: usize) -> Result<(), FrameError> {
        if v.len() > max {
            return Err(FrameError::FieldTooLong { field, len: v.len(), max });
        }
        // v.len() <= max <= u16::MAX.
        self.u16(v.len() as u16);
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn str16(&mut self, field: &'static str, v: &str, max: usize) -> Result<(), FrameError> {
        self.bytes16(field, v.as_bytes(), max)
    }

    fn count(&mut self, field: &'static str, len: usize) -> Result<(), FrameError> {
        if len > MAX_LIST_LEN {
            return Err(FrameError::FieldTooLong { field, len, max: MAX_LIST_LEN });
        }
        self.u16(len as u16);
        Ok(())
    }

    fn str_list(&mut self, field: &'static str, item: &'static str, list: &[Cow<'_, str>]) -> Result<(), FrameError> {
        self.count(field, list.len())?;
        for s in list {
            self.str16(item, s, MAX_STRING_LEN)?;
        }
        Ok(())
    }

    fn rate_limit(&mut self, rl: Option<RateLimit>) {
        match rl {
            None => self.u8(0),
            Some(rl) => {
                self.u8(1);
                self.u32(rl.limit);
                self.u32(rl.remaining);
                self.u64(rl.reset_ms);
            }
        }
    }
}
