//! The connection handshake: the client's `TGAT` + version hello and the
//! server's answer.

use crate::codec::{FrameError, check_frame, decode_response, encode_error};
use crate::types::{ErrorCode, ErrorResponse, Response};

/// The four bytes every connection starts with, so a server can tell a
/// tollgate client from anything else that connects to its socket.
pub const MAGIC: [u8; 4] = *b"TGAT";
/// Bytes of a handshake message in either direction: magic (4) + version (2).
pub const HANDSHAKE_LEN: usize = 6;
/// The newest protocol version this crate speaks (and the one it offers).
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Appends a handshake message (`TGAT` + big-endian `version`) to `out`.
///
/// The client sends this with the highest version it speaks; the server
/// sends it back with the version chosen for the connection.
pub fn encode_handshake(version: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
}

/// Decodes a handshake message at the start of `buf`, returning its version.
///
/// Returns `Ok(None)` while fewer than [`HANDSHAKE_LEN`] bytes have arrived,
/// and [`FrameError::BadMagic`] as soon as the bytes present disagree with
/// the magic, so a stray connection is rejected without waiting.
pub fn decode_handshake(buf: &[u8]) -> Result<Option<u16>, FrameError> {
    let seen = buf.len().min(MAGIC.len());
    if buf.get(..seen) != MAGIC.get(..seen) {
        return Err(FrameError::BadMagic);
    }
    match buf.get(MAGIC.len()..HANDSHAKE_LEN) {
        Some(&[hi, lo]) => Ok(Some(u16::from_be_bytes([hi, lo]))),
        _ => Ok(None),
    }
}

/// Picks the version a server speaks with a client that offered `offered`:
/// the lower of the offer and [`PROTOCOL_VERSION`], provided that is at
/// least [`MIN_PROTOCOL_VERSION`].
pub fn negotiate_version(offered: u16) -> Result<u16, FrameError> {
    let version = offered.min(PROTOCOL_VERSION);
    if version < MIN_PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { version: offered });
    }
    Ok(version)
}

/// The whole server side of the handshake in one call.
///
/// Given the bytes read so far, returns `Ok(None)` if the hello is not
/// complete yet; `Ok(Some(version))` after appending the server's answer to
/// `out` (the hello is exactly [`HANDSHAKE_LEN`] bytes; frames follow it);
/// or an error after appending an error frame with request id 0 to `out`,
/// in which case the server writes `out` and closes the connection.
pub fn server_handshake(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<u16>, FrameError> {
    let result = decode_handshake(buf).and_then(|offered| offered.map(negotiate_version).transpose());
    match &result {
        Ok(Some(version)) => encode_handshake(*version, out),
        Ok(None) => {}
        Err(e) => encode_error(0, e.error_code(), &e.to_string(), out),
    }
    result
}

/// The server's answer to a client's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeReply<'a> {
    /// The server accepted and will speak this version.
    Accepted(u16),
    /// The server refused (bad magic or unsupported version) and is closing
    /// the connection.
    Rejected(ErrorResponse<'a>),
}

/// Decodes the server's answer to a hello at the start of `buf`.
///
/// Returns `Ok(None)` while incomplete, else the reply and how many bytes it
/// used. The two forms are told apart by the first byte: a handshake starts
/// with `T` (0x54) while an error frame's length prefix starts with 0x00.
pub fn decode_handshake_reply(buf: &[u8]) -> Result<Option<(HandshakeReply<'_>, usize)>, FrameError> {
    match buf.first() {
        None => Ok(None),
        Some(&b) if b == MAGIC[0] => {
            Ok(decode_handshake(buf)?.map(|version| (HandshakeReply::Accepted(version), HANDSHAKE_LEN)))
        }
        Some(_) => {
            let Some(len) = check_frame(buf)? else {
                return Ok(None);
            };
            match decode_response(buf)? {
                (_, Response::Error(e)) => Ok(Some((HandshakeReply::Rejected(e), len))),
                _ => Err(FrameError::BadMagic),
            }
        }
    }
}

/// Checks a server's [`HandshakeReply`] from a client's point of view,
/// turning a refusal or a version this crate cannot speak into an error.
pub(crate) fn accept_reply(reply: HandshakeReply<'_>) -> std::io::Result<u16> {
    match reply {
        HandshakeReply::Accepted(v) if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&v) => Ok(v),
        HandshakeReply::Accepted(v) => {
            Err(std::io::Error::new(std::io::ErrorKind::InvalidData, FrameError::UnsupportedVersion { version: v }))
        }
        HandshakeReply::Rejected(e) => {
            let kind = if e.code == ErrorCode::UnsupportedVersion {
                std::io::ErrorKind::Unsupported
            } else {
                std::io::ErrorKind::ConnectionRefused
            };
            Err(std::io::Error::new(kind, e.into_owned()))
        }
    }
}
