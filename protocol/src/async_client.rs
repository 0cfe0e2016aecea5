//! A pipelining async client on tokio (feature `tokio`).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::codec::{FrameError, check_frame, decode_response, encode_request};
use crate::handshake::{PROTOCOL_VERSION, accept_reply, decode_handshake_reply, encode_handshake};
use crate::types::{QuotaOp, QuotaResult, Request, Response, Verdict, VerifyRequest};

const READ_CHUNK: usize = 16 * 1024;
/// Frames queued for the writer task before `call` waits for room.
const WRITE_QUEUE: usize = 1024;
/// The writer coalesces queued frames into one write up to about this size.
const WRITE_BATCH: usize = 64 * 1024;

type Reply = io::Result<Response<'static>>;

/// Requests awaiting an answer, and why the connection died if it did.
#[derive(Default)]
struct Shared {
    pending: HashMap<u32, oneshot::Sender<Reply>>,
    closed: Option<(io::ErrorKind, String)>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding this lock cannot leave the map inconsistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks the connection dead and fails every request still waiting.
fn fail_all(shared: &Mutex<Shared>, kind: io::ErrorKind, msg: String) {
    let mut s = lock(shared);
    if s.closed.is_none() {
        s.closed = Some((kind, msg));
    }
    let (kind, msg) = s.closed.clone().unwrap_or((kind, String::new()));
    for (_, tx) in s.pending.drain() {
        let _ = tx.send(Err(io::Error::new(kind, msg.clone())));
    }
}

/// An async connection to the daemon that many tasks can share.
///
/// Cloning is cheap and every clone uses the same connection. Each call
/// picks a fresh request id, registers a oneshot for it, and queues the
/// encoded frame for a writer task that batches frames into few writes; a
/// reader task matches answers to waiting calls by id, so any number of
/// calls can be in flight at once and answers may arrive in any order.
/// When the last clone is dropped both tasks stop and the socket closes.
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Mutex<Shared>>,
    frames: mpsc::Sender<Vec<u8>>,
    next_id: AtomicU32,
    version: u16,
    reader: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer stops by itself once `frames` is gone.
        self.reader.abort();
    }
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient").field("version", &self.inner.version).finish_non_exhaustive()
    }
}

impl AsyncClient {
    /// Connects to the daemon's socket at `path`, performs the handshake and
    /// starts the reader and writer tasks on the current tokio runtime.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_stream(UnixStream::connect(path).await?).await
    }

    /// Performs the handshake on a connected stream and starts the tasks.
    pub async fn from_stream(mut stream: UnixStream) -> io::Result<Self> {
        let mut hello = Vec::with_capacity(crate::HANDSHAKE_LEN);
        encode_handshake(PROTOCOL_VERSION, &mut hello);
        // A refusal may precede (and break) the hello write: read it first
        // (SPEC.md 3).
        let written = stream.write_all(&hello).await;
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let version = loop {
            if let Some((reply, used)) = decode_handshake_reply(&buf)? {
                let version = accept_reply(reply)?;
                buf.drain(..used);
                written?;
                break version;
            }
            match read_more(&mut stream, &mut buf).await {
                Ok(0) => {
                    written?;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection during the handshake",
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(written.err().unwrap_or(e)),
            }
        };
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (frames, queue) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(write_half, queue, shared.clone()));
        let reader = tokio::spawn(read_loop(read_half, buf, shared.clone())).abort_handle();
        Ok(Self { inner: Arc::new(Inner { shared, frames, next_id: AtomicU32::new(1), version, reader }) })
    }

    /// The protocol version the server agreed to.
    pub fn version(&self) -> u16 {
        self.inner.version
    }

    /// Verifies one credential; concurrent calls share the connection.
    pub async fn verify(&self, req: &VerifyRequest<'_>) -> io::Result<Verdict<'static>> {
        match self.call(&Request::Verify(*req)).await? {
            Response::Verdict(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Consumes part of a team quota; `ok` is false when the limit would be exceeded.
    pub async fn quota_consume(&self, op: &QuotaOp<'_>) -> io::Result<QuotaResult> {
        match self.call(&Request::QuotaConsume(*op)).await? {
            Response::QuotaResult(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// Gives back part of a team quota.
    pub async fn quota_release(&self, op: &QuotaOp<'_>) -> io::Result<QuotaResult> {
        match self.call(&Request::QuotaRelease(*op)).await? {
            Response::QuotaResult(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// Round-trips a ping, to check the daemon is alive and responsive.
    pub async fn ping(&self) -> io::Result<()> {
        match self.call(&Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends any request and waits for its answer. An error frame from the
    /// server, or the connection dying first, is returned as an error.
    ///
    /// The request is encoded before the first await, so it need only live
    /// until this future is first polled. Dropping the future abandons the
    /// request; a late answer is then discarded.
    pub async fn call(&self, req: &Request<'_>) -> io::Result<Response<'static>> {
        let shared = &self.inner.shared;
        let (tx, rx) = oneshot::channel();
        let mut frame = Vec::new();
        let id = {
            let mut s = lock(shared);
            if let Some((kind, msg)) = &s.closed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            // Skip 0 (reserved) and, after wrap-around, ids still in flight.
            let id = loop {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                if id != 0 && !s.pending.contains_key(&id) {
                    break id;
                }
            };
            encode_request(id, req, &mut frame)?;
            s.pending.insert(id, tx);
            id
        };
        let guard = PendingGuard { shared, id };
        if self.inner.frames.send(frame).await.is_err() {
            return Err(closed_error(shared));
        }
        let reply = rx.await.map_err(|_| closed_error(shared));
        std::mem::forget(guard);
        match reply?? {
            Response::Error(e) => Err(io::Error::other(e)),
            resp => Ok(resp),
        }
    }
}

/// Removes a call's pending entry if its future is dropped mid-flight.
struct PendingGuard<'a> {
    shared: &'a Mutex<Shared>,
    id: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.shared).pending.remove(&self.id);
    }
}

fn closed_error(shared: &Mutex<Shared>) -> io::Error {
    match &lock(shared).closed {
        Some((kind, msg)) => io::Error::new(*kind, msg.clone()),
        None => io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"),
    }
}

fn unexpected(resp: &Response<'_>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {:?} response", resp.message_type()))
}

async fn read_more<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    let old = buf.len();
    buf.resize(old + READ_CHUNK, 0);
    let result = r.read(buf.get_mut(old..).unwrap_or_default()).await;
    buf.truncate(old + *result.as_ref().unwrap_or(&0));
    result
}

async fn write_loop(mut w: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>, shared: Arc<Mutex<Shared>>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(frame) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if let Err(e) = w.write_all(&batch).await {
            fail_all(&shared, e.kind(), format!("write failed: {e}"));
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop(mut r: OwnedReadHalf, mut buf: Vec<u8>, shared: Arc<Mutex<Shared>>) {
    // A connection-level error (id 0): the server still sends the answers it
    // owes, then closes (SPEC.md 5.6); requests left then fail with it.
    let mut closing: Option<(io::ErrorKind, String)> = None;
    let (kind, msg) = loop {
        let mut pos = 0;
        let failure = loop {
            let rest = buf.get(pos..).unwrap_or_default();
            match check_frame(rest) {
                Ok(None) => break None,
                Ok(Some(len)) => match decode_response(rest) {
                    Ok((0, Response::Error(e))) => {
                        closing.get_or_insert((io::ErrorKind::ConnectionAborted, e.to_string()));
                        pos += len;
                    }
                    Ok((id, resp)) => {
                        let waiter = lock(&shared).pending.remove(&id);
                        if let Some(tx) = waiter {
                            let _ = tx.send(Ok(resp.into_owned()));
                        }
                        pos += len;
                    }
                    Err(e) => break Some((io::ErrorKind::InvalidData, e.to_string())),
                },
                Err(e) => break Some((io::ErrorKind::InvalidData, e.to_string())),
            }
        };
        if let Some(failure) = failure {
            break failure;
        }
        buf.drain(..pos);
        match read_more(&mut r, &mut buf).await {
            Ok(0) if buf.is_empty() => {
                break closing.unwrap_or((io::ErrorKind::UnexpectedEof, "server closed the connection".into()));
            }
            Ok(0) => {
                break (io::ErrorKind::UnexpectedEof, FrameError::Incomplete.to_string());
            }
            Ok(_) => {}
            Err(e) => break (e.kind(), format!("read failed: {e}")),
        }
    };
    fail_all(&shared, kind, msg);
}
