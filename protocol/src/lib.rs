//! tollgate's sidecar wire protocol: the binary frames that co-located
//! services exchange with the tollgate daemon over a Unix socket, and
//! clients that speak them.
//!
//! The byte-level specification lives in `SPEC.md` next to this crate's
//! `Cargo.toml`; this crate is its reference implementation.
//!
//! The codec follows the `check` then `parse` pattern: [`check_frame`] looks
//! at a read buffer and says whether a whole frame has arrived
//! (`Ok(None)` for a partial frame is normal, not an error), then
//! [`decode_request`] or [`decode_response`] parses it. Decoding borrows
//! from the buffer and encoding appends to a caller's `Vec<u8>`; neither
//! does I/O, so a server can drive them from any runtime.
//!
//! ```
//! use tollgate_protocol::{Request, VerifyRequest, check_frame, decode_request, encode_request};
//!
//! let mut buf = Vec::new();
//! let req = VerifyRequest::new("tg_live_abc").permissions(&[("documents", "read")]);
//! encode_request(7, &Request::Verify(req), &mut buf).unwrap();
//!
//! let len = check_frame(&buf).unwrap().expect("a whole frame");
//! let (id, decoded) = decode_request(&buf[..len]).unwrap();
//! assert_eq!((id, decoded), (7, Request::Verify(req)));
//! ```
//!
//! [`Client`] is a blocking client; with the `tokio` feature, `AsyncClient`
//! shares one pipelined connection between many tasks.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod codec;
pub mod echo;
mod handshake;
mod types;

#[cfg(feature = "tokio")]
mod async_client;

#[cfg(feature = "tokio")]
pub use async_client::AsyncClient;
pub use client::{Client, PIPELINE_WINDOW};
pub use codec::{
    FrameError, HEADER_LEN, LENGTH_PREFIX_LEN, MAX_CREDENTIAL_LEN, MAX_FRAME_LEN, MAX_LIST_LEN,
    MAX_STRING_LEN, check_frame, decode_request, decode_response, encode_error, encode_request,
    encode_response, frame_request_id,
};
pub use handshake::{
    HANDSHAKE_LEN, HandshakeReply, MAGIC, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, decode_handshake,
    decode_handshake_reply, encode_handshake, negotiate_version, server_handshake,
};
pub use types::{
    Allow, CredentialKind, Deny, DenyCode, ErrorCode, ErrorResponse, List, MessageType, Permission,
    PermissionIter, PermissionList, QuotaOp, QuotaResult, QuotaUse, RateLimit, Request, Response,
    Verdict, VerifyRequest,
};
