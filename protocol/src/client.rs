//! A blocking client over a std `UnixStream`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::codec::{FrameError, check_frame, decode_response, encode_request};
use crate::handshake::{PROTOCOL_VERSION, accept_reply, decode_handshake_reply, encode_handshake};
use crate::types::{ErrorResponse, QuotaOp, QuotaResult, Request, Response, Verdict, VerifyRequest};

/// How many requests [`Client::verify_many`] keeps in flight at most.
///
/// Bounding the window keeps both directions' socket buffers from filling
/// up, which would otherwise deadlock a client that writes everything
/// before reading anything against a server that stops reading while its
/// answers are not being read.
pub const PIPELINE_WINDOW: usize = 128;

const READ_CHUNK: usize = 16 * 1024;

/// A blocking connection to the daemon.
///
/// Use [`Client::verify`] for one request at a time, or pipeline with
/// [`Client::send`]/[`Client::recv`] or [`Client::verify_many`] to pay one
/// round trip for many requests. Not thread-safe by design: give each thread
/// its own client, or use the async client for shared connections.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    version: u16,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    next_id: u32,
}

impl Client {
    /// Connects to the daemon's socket at `path` and performs the handshake.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_stream(UnixStream::connect(path)?)
    }

    /// Performs the handshake on an already connected stream.
    pub fn from_stream(mut stream: UnixStream) -> io::Result<Self> {
        let mut hello = Vec::with_capacity(crate::HANDSHAKE_LEN);
        encode_handshake(PROTOCOL_VERSION, &mut hello);
        // A server over its connection cap may refuse (and close) before it
        // reads the hello; the write then fails, but the refusal is what to
        // report (SPEC.md 3), so read it first.
        let written = stream.write_all(&hello);
        let mut client =
            Self { stream, version: 0, rbuf: Vec::with_capacity(READ_CHUNK), rpos: 0, wbuf: Vec::new(), next_id: 1 };
        loop {
            if let Some((reply, used)) = decode_handshake_reply(client.unread())? {
                client.version = accept_reply(reply)?;
                client.rpos += used;
                return written.map(|()| client);
            }
            if let Err(e) = client.fill() {
                return Err(written.err().unwrap_or(e));
            }
        }
    }

    /// The protocol version the server agreed to.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Sets the read and write timeouts of the underlying socket, so a
    /// stuck daemon surfaces as a `WouldBlock`/`TimedOut` error instead of a
    /// hang.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// Verifies one credential and waits for the verdict.
    pub fn verify(&mut self, req: &VerifyRequest<'_>) -> io::Result<Verdict<'static>> {
        match self.call(&Request::Verify(*req))? {
            Response::Verdict(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Consumes part of a team quota; `ok` is false when the limit would be exceeded.
    pub fn quota_consume(&mut self, op: &QuotaOp<'_>) -> io::Result<QuotaResult> {
        match self.call(&Request::QuotaConsume(*op))? {
            Response::QuotaResult(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// Gives back part of a team quota.
    pub fn quota_release(&mut self, op: &QuotaOp<'_>) -> io::Result<QuotaResult> {
        match self.call(&Request::QuotaRelease(*op))? {
            Response::QuotaResult(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// Round-trips a ping, to check the daemon is alive and responsive.
    pub fn ping(&mut self) -> io::Result<()> {
        match self.call(&Request::Ping)? {
            Response::Pong => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one request and waits for its answer; error frames become errors.
    ///
    /// Answers with other ids are skipped: they belong to requests abandoned
    /// earlier (say, the rest of a `verify_many` that failed part-way).
    fn call(&mut self, req: &Request<'_>) -> io::Result<Response<'static>> {
        let id = self.take_ids(1)?;
        self.send(id, req)?;
        // After a connection-level error (id 0) the server still sends the
        // answers it owes, then closes (SPEC.md 5.6): ours may yet come.
        let mut closing = None;
        loop {
            match self.recv_or_close(&mut closing)? {
                (got, Response::Error(e)) if got == id => return Err(io::Error::other(e)),
                (0, Response::Error(e)) => closing = Some(e),
                (got, resp) if got == id => return Ok(resp),
                _ => continue,
            }
        }
    }

    /// [`Client::recv`], except that once a connection-level error has been
    /// seen, the close that follows it is reported as that error.
    fn recv_or_close(&mut self, closing: &mut Option<ErrorResponse<'static>>) -> io::Result<(u32, Response<'static>)> {
        match (self.recv(), closing.take()) {
            (Ok(r), c) => {
                *closing = c;
                Ok(r)
            }
            (Err(_), Some(e)) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)),
            (Err(e), None) => Err(e),
        }
    }

    /// Writes one request frame with a caller-chosen id, without waiting.
    ///
    /// Ids should be unique among requests in flight and must not be 0,
    /// which the server reserves for connection-level errors. Pair with
    /// [`Client::recv`], remembering that answers may come in any order.
    pub fn send(&mut self, id: u32, req: &Request<'_>) -> io::Result<()> {
        self.wbuf.clear();
        encode_request(id, req, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf)
    }

    /// Reads the next response frame, whichever request it answers.
    ///
    /// An error frame is returned as [`Response::Error`] with its id (0 for
    /// a connection-level error, after which the server closes).
    pub fn recv(&mut self) -> io::Result<(u32, Response<'static>)> {
        loop {
            if let Some(len) = check_frame(self.unread())? {
                let (id, resp) = decode_response(self.unread())?;
                let resp = resp.into_owned();
                self.rpos += len;
                return Ok((id, resp));
            }
            self.fill()?;
        }
    }

    /// Verifies many credentials over one connection, keeping up to
    /// [`PIPELINE_WINDOW`] requests in flight, and returns the verdicts in
    /// the order of `reqs` whatever order the server answered in.
    ///
    /// Fails on an error frame for one of its requests; answers to the
    /// batch's other requests may still arrive and are skipped by later calls.
    /// After a connection-level error it collects the answers the server
    /// still sends, then fails with that error when the server closes.
    pub fn verify_many(&mut self, reqs: &[VerifyRequest<'_>]) -> io::Result<Vec<Verdict<'static>>> {
        let base = self.take_ids(reqs.len())?;
        let mut results: Vec<Option<Verdict<'static>>> = vec![None; reqs.len()];
        let (mut sent, mut received) = (0, 0);
        let (mut closing, mut sending) = (None, true);
        while received < reqs.len() {
            // Refill once half the window has drained: one write per batch.
            if sending && sent - received <= PIPELINE_WINDOW / 2 && sent < reqs.len() {
                self.wbuf.clear();
                while sent < reqs.len() && sent - received < PIPELINE_WINDOW {
                    // take_ids guaranteed base + len fits in a u32.
                    let id = base + sent as u32;
                    let req = reqs.get(sent).copied().map(Request::Verify);
                    if let Some(req) = req {
                        encode_request(id, &req, &mut self.wbuf)?;
                    }
                    sent += 1;
                }
                self.stream.write_all(&self.wbuf)?;
            }
            let (id, resp) = self.recv_or_close(&mut closing)?;
            if let (0, Response::Error(e)) = (id, &resp) {
                // No more requests go out; the answers owed still come in.
                closing = Some(e.clone());
                sending = false;
                continue;
            }
            // Ids outside this batch answer requests abandoned earlier.
            let Some(index) = id.checked_sub(base).map(|i| i as usize) else {
                continue;
            };
            if index >= reqs.len() {
                continue;
            }
            let verdict = match resp {
                Response::Verdict(v) => v,
                Response::Error(e) => return Err(io::Error::other(e)),
                other => return Err(unexpected(&other)),
            };
            let slot = results.get_mut(index).filter(|slot| slot.is_none()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("second response for request id {id}"))
            })?;
            *slot = Some(verdict);
            received += 1;
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Reserves `n` consecutive non-zero ids and returns the first.
    fn take_ids(&mut self, n: usize) -> io::Result<u32> {
        let n = u32::try_from(n)
            .ok()
            .filter(|&n| n < u32::MAX)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many requests"))?;
        if self.next_id.checked_add(n).is_none() {
            self.next_id = 1;
        }
        let first = self.next_id;
        self.next_id += n;
        Ok(first)
    }

    fn unread(&self) -> &[u8] {
        self.rbuf.get(self.rpos..).unwrap_or_default()
    }

    /// Reads more bytes from the socket, compacting the buffer first.
    fn fill(&mut self) -> io::Result<()> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let old = self.rbuf.len();
        self.rbuf.resize(old + READ_CHUNK, 0);
        let result = loop {
            match self.stream.read(self.rbuf.get_mut(old..).unwrap_or_default()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *result.as_ref().unwrap_or(&0);
        self.rbuf.truncate(old + n);
        match result? {
            // A clean close between frames, or one in the middle of a frame.
            0 if old == 0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection")),
            0 => Err(FrameError::Incomplete.into()),
            _ => Ok(()),
        }
    }
}

fn unexpected(resp: &Response<'_>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {:?} response", resp.message_type()))
}
