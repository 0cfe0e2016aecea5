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
//! A server keeps a read buffer per connection and, after each read, answers
//! every whole frame in it (after [`server_handshake`] has consumed the
//! first [`HANDSHAKE_LEN`] bytes):
//!
//! ```
//! use tollgate_protocol::*;
//!
//! /// Answers the whole frames in `read_buf`, appending to `write_buf`.
//! /// Returns how many bytes were consumed and whether to close afterwards.
//! fn serve_frames(read_buf: &[u8], write_buf: &mut Vec<u8>) -> (usize, bool) {
//!     let mut pos = 0;
//!     loop {
//!         let rest = &read_buf[pos..];
//!         let len = match check_frame(rest) {
//!             Ok(Some(len)) => len,
//!             Ok(None) => return (pos, false), // wait for more bytes
//!             Err(e) => {
//!                 encode_error(0, e.error_code(), &e.to_string(), write_buf);
//!                 return (pos, true);
//!             }
//!         };
//!         match decode_request(&rest[..len]) {
//!             Ok((id, Request::Verify(v))) => {
//!                 let verdict = echo::allow_verdict(&v); // the daemon verifies here
//!                 encode_response(id, &Response::Verdict(verdict), write_buf).unwrap();
//!             }
//!             Ok((id, Request::Ping)) => encode_response(id, &Response::Pong, write_buf).unwrap(),
//!             Ok((id, _)) => encode_error(id, ErrorCode::Internal, "no quotas here", write_buf),
//!             Err(e) => {
//!                 let id = frame_request_id(rest).unwrap_or(0);
//!                 encode_error(id, e.error_code(), &e.to_string(), write_buf);
//!                 if e.closes_connection() {
//!                     return (pos + len, true);
//!                 }
//!             }
//!         }
//!         pos += len;
//!     }
//! }
//!
//! let mut input = Vec::new();
//! encode_request(1, &Request::Ping, &mut input).unwrap();
//! encode_request(2, &Request::Verify(VerifyRequest::new("tg_live_abc")), &mut input).unwrap();
//! input.extend_from_slice(&[0, 0]); // half of the next frame's length prefix
//! let mut output = Vec::new();
//! let (used, close) = serve_frames(&input, &mut output);
//! assert_eq!((used, close), (input.len() - 2, false));
//! let (id, resp) = decode_response(&output).unwrap();
//! assert_eq!((id, resp), (1, Response::Pong));
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
    FrameError, HEADER_LEN, LENGTH_PREFIX_LEN, MAX_CREDENTIAL_LEN, MAX_FRAME_LEN, MAX_LIST_LEN, MAX_STRING_LEN,
    check_frame, decode_request, decode_response, encode_error, encode_request, encode_response, frame_request_id,
};
pub use handshake::{
    HANDSHAKE_LEN, HandshakeReply, MAGIC, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, decode_handshake,
    decode_handshake_reply, encode_handshake, negotiate_version, server_handshake,
};
pub use types::{
    Allow, CredentialKind, Deny, DenyCode, ErrorCode, ErrorResponse, List, MessageType, Permission, PermissionIter,
    PermissionList, QuotaOp, QuotaResult, QuotaUse, RateLimit, Request, Response, Verdict, VerifyRequest,
};
