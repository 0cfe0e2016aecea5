//! The Unix-socket sidecar: the accept loop and the per-connection handler of
//! the binary protocol (`protocol/SPEC.md`).
//!
//! The shape follows mini-redis: [`run`] takes a bound listener and a stop
//! signal, a [`Semaphore`] caps connections, and each connection is a task
//! that owns its buffers, so a bad or slow client can only ever stall itself.
//!
//! The hot path is batching. After each read, every whole frame in the read
//! buffer is answered into one write buffer, which is written with one
//! syscall; a pipelining client therefore costs one read and one write per
//! batch, not per request. Answers that must wait (strict durability) are set
//! aside per batch and written when their flush completes, so answers can
//! leave out of order, as the protocol allows. The requests of a batch are
//! handed to the service in groups ([`Service::answer_batch`]), so that the
//! engine can look all of their credentials up before answering the first
//! (their cache misses then overlap).
//!
//! What the answers are is a [`Service`]: [`EngineService`] verifies with the
//! engine; the load generator's echo server plugs a canned answer into the
//! same loop so the two can be compared byte for byte.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tollgate_protocol as proto;
use tollgate_protocol::{ErrorCode, Request, Response};
use tracing::Instrument as _;

use crate::config::Config;
use crate::core::index::SecretsGuard;
use crate::core::limits::{Micros, RateInfo};
use crate::core::verify::{DenyCode, Looked, QUOTA_DOCUMENTS, VerdictOf, VerifyRequest};
use crate::engine::{Engine, LOOK_AHEAD, now_us};
use crate::metrics::{DenySource, Interface, Metrics};

/// Most answers one connection may have waiting for durability. Past this the
/// connection is not read until some complete, so a client cannot make the
/// daemon hold an unbounded number of answers.
pub const MAX_IN_FLIGHT: usize = 4096;

/// How long a connection may take at each step, so that no client can hold a
/// connection slot (and its buffers) or the daemon's exit forever. Configured
/// by the `socket_*_ms` settings ([`Timeouts::from_config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A new connection must send its hello within this
    /// (`socket_handshake_timeout_ms`): a client that connects and says
    /// nothing would otherwise hold a slot forever.
    pub handshake: Duration,
    /// Once a frame's first byte has arrived, the rest must follow within this
    /// (`socket_frame_timeout_ms`): a client that sends half a frame and stalls
    /// would otherwise hold a slot and its buffer forever. Idle connections
    /// between frames are not timed out.
    pub frame: Duration,
    /// One write of answers may block this long on a client that does not read
    /// them (`socket_write_timeout_ms`); then the connection is closed.
    pub write: Duration,
    /// On shutdown, connections get this long to finish the requests they have
    /// read (`socket_drain_grace_ms`); the rest are dropped, so a client that
    /// never reads its answers cannot hold up exit.
    pub drain: Duration,
}

impl Timeouts {
    /// The timeouts `config` sets.
    pub fn from_config(config: &Config) -> Timeouts {
        Timeouts {
            handshake: Duration::from_millis(config.socket_handshake_timeout_ms),
            frame: Duration::from_millis(config.socket_frame_timeout_ms),
            write: Duration::from_millis(config.socket_write_timeout_ms),
            drain: Duration::from_millis(config.socket_drain_grace_ms),
        }
    }
}

impl Default for Timeouts {
    /// The defaults of the configuration.
    fn default() -> Timeouts {
        Timeouts::from_config(&Config::default())
    }
}

/// Most bytes read per read call. The read buffer holds at most one partial
/// frame (under [`proto::MAX_FRAME_LEN`]) plus one read, because every whole
/// frame is answered before the next read.
const READ_CHUNK: usize = 64 * 1024;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live daemon answers on the socket path: two daemons must not share it.
    #[error("socket {0} is in use by a running daemon")]
    InUse(PathBuf),
    /// Something other than a socket is at the path; it is never deleted.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket mode in the configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An I/O operation on the path failed.
    #[error("socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// Who may connect and how many at once.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most connections served at once; more are told `SERVER_BUSY` and closed.
    pub max_connections: usize,
    /// If not empty, only peers with these uids (by `SO_PEERCRED`) are served.
    pub allowed_uids: Vec<u32>,
    /// How long each step of a connection may take.
    pub timeouts: Timeouts,
}

impl Limits {
    /// The limits configured for the daemon's socket.
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_connections: config.max_connections,
            allowed_uids: config.socket_allowed_uids.clone(),
            timeouts: Timeouts::from_config(config),
        }
    }
}

/// Binds the socket at `config.socket` with mode `config.socket_mode`.
///
/// A socket file left by a daemon that died is replaced, but only after a
/// connection attempt is refused: if a live daemon answers, binding fails
/// instead of silently stealing its path.
pub async fn bind(config: &Config) -> Result<UnixListener, BindError> {
    let path = &config.socket;
    let mode = config.socket_mode_bits()?;
    let io_err = |source| BindError::Io { path: path.clone(), source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(BindError::NotASocket(path.clone())),
        Ok(_) => match UnixStream::connect(path).await {
            Ok(_) => return Err(BindError::InUse(path.clone())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "removing stale socket file");
                std::fs::remove_file(path).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    // Right after bind: the file exists with the umask's mode for the
    // microseconds in between, before any client can know it is there.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok(listener)
}

/// Removes the socket file on shutdown, so that the next daemon starts clean
/// and clients fail fast with "not found" instead of "refused".
pub fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %path.display(), error = %e, "cannot remove socket file");
    }
}

/// Called by [`Service::answer_batch`] after each answer, with the output
/// buffer, where that answer starts in it and its durability ticket.
pub type Answered<'a> = &'a mut dyn FnMut(&mut Vec<u8>, usize, Option<u64>);

/// What answers the requests of a connection.
pub trait Service: Send + Sync + 'static {
    /// Appends exactly one response frame answering request `id` to `out`.
    ///
    /// Returns a durability ticket when that answer may only be sent once
    /// [`Service::durable`] for the ticket completes; `now` is the batch's clock.
    fn answer(&self, id: u32, req: Request<'_>, now: Micros, out: &mut Vec<u8>) -> Option<u64>;

    /// Answers the requests of one batch, in order: after each answer is
    /// appended to `out`, calls `each` with `out`, where that answer starts and
    /// its durability ticket. By default each is answered by
    /// [`Service::answer`]; a service may look ahead over the whole batch
    /// first, as long as every answer is the one `answer` would give.
    fn answer_batch(&self, reqs: &[(u32, Request<'_>)], now: Micros, out: &mut Vec<u8>, each: Answered<'_>) {
        for &(id, req) in reqs {
            let mark = out.len();
            let ticket = self.answer(id, req, now, out);
            each(out, mark, ticket);
        }
    }

    /// Resolves once everything covered by `ticket` is on disk.
    fn durable(&self, ticket: u64) -> impl Future<Output = ()> + Send;

    /// Where the connection loop counts connections and request latency.
    fn metrics(&self) -> Option<&Metrics> {
        None
    }
}

/// Counts a connection as open for as long as it lives (abort included).
struct OpenConn<'a>(Option<&'a Metrics>);

impl<'a> OpenConn<'a> {
    fn new(m: Option<&'a Metrics>) -> Self {
        if let Some(m) = m {
            m.socket_opened();
        }
        OpenConn(m)
    }
}

impl Drop for OpenConn<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.socket_closed();
        }
    }
}

/// Serves connections on `listener` until `stop` turns true, then stops
/// accepting and drains: every connection finishes and flushes the requests it
/// has read (for at most the drain grace of [`Timeouts`]) and is closed.
pub async fn run<S: Service>(listener: UnixListener, service: Arc<S>, limits: Limits, stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    let mut accept_stop = stop.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    if !peer_allowed(&stream, &limits.allowed_uids) {
                        continue;
                    }
                    match slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (service, stop, timeouts) = (service.clone(), stop.clone(), limits.timeouts);
                            static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
                            let span = tracing::debug_span!("conn", conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed));
                            conns.spawn(async move {
                                let _open = OpenConn::new(service.metrics());
                                tracing::trace!("sidecar connection accepted");
                                if let Err(e) = serve_conn(stream, &*service, stop, timeouts).await {
                                    tracing::debug!(error = %e, "sidecar connection ended");
                                }
                                drop(permit);
                            }.instrument(span));
                        }
                        Err(_) => {
                            if let Some(m) = service.metrics() {
                                m.socket_refused();
                            }
                            refuse_busy(&stream, "too many connections");
                        }
                    }
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on it.
                    tracing::warn!(error = %e, "sidecar accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = crate::shutdown::stopped(&mut accept_stop) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let drained =
        tokio::time::timeout(limits.timeouts.drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(left = conns.len(), "sidecar connections did not drain in time; closing them");
        conns.abort_all();
    }
}

/// Checks the peer's uid against the allowlist (everyone when it is empty).
fn peer_allowed(stream: &UnixStream, allowed: &[u32]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match stream.peer_cred() {
        Ok(cred) if allowed.contains(&cred.uid()) => true,
        Ok(cred) => {
            tracing::warn!(uid = cred.uid(), "sidecar peer uid not allowed; closing");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read sidecar peer credentials; closing");
            false
        }
    }
}

/// Tells a client it cannot be served now (`SERVER_BUSY`, id 0) and lets the
/// caller drop the connection. A fresh socket's send buffer is empty, so the
/// non-blocking write fits; if it somehow does not, closing says enough.
fn refuse_busy(stream: &UnixStream, why: &str) {
    let mut frame = Vec::with_capacity(64);
    proto::encode_error(0, ErrorCode::ServerBusy, why, &mut frame);
    let _ = stream.try_write(&frame);
}

/// Answers requests set aside until their durability ticket completes.
struct Deferred {
    frames: Vec<u8>,
    count: usize,
    ticket: u64,
}

/// When a batch started being answered, if latency is measured.
fn batch_clock(m: Option<&Metrics>) -> Option<Instant> {
    m.map(|_| Instant::now())
}

/// Records `n` requests answered `since` (one observation per request).
fn record_batch(m: Option<&Metrics>, since: Option<Instant>, n: usize) {
    if let (Some(m), Some(t)) = (m, since)
        && n > 0
    {
        m.latency(Interface::Socket, t.elapsed(), n as u64);
    }
}

/// Serves one connection: handshake, then batches of frames until the client
/// closes, a frame is malformed, or the daemon stops.
async fn serve_conn<S: Service>(
    mut stream: UnixStream,
    service: &S,
    mut stop: watch::Receiver<bool>,
    timeouts: Timeouts,
) -> io::Result<()> {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);

    let handshake = async {
        loop {
            match proto::server_handshake(&rbuf, &mut wbuf) {
                Ok(Some(_version)) => return Ok(true),
                Ok(None) => {}
                // The error frame is in `wbuf`; send it, then close.
                Err(_) => return Ok(false),
            }
            if stream.read_buf(&mut (&mut rbuf).limit(READ_CHUNK)).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
            }
        }
    };
    let accepted = tokio::select! {
        r = tokio::time::timeout(timeouts.handshake, handshake) => match r {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no handshake in time")),
        },
        () = crate::shutdown::stopped(&mut stop) => return Ok(()),
    };
    if !accepted {
        write_answers(&mut stream, &wbuf, timeouts.write).await?;
        return stream.shutdown().await;
    }
    rbuf.advance(proto::HANDSHAKE_LEN);

    let metrics = service.metrics();
    let mut pending = FuturesUnordered::new();
    let mut in_flight = 0usize;
    let mut reading = true;
    let mut stopping = false;
    let mut deferred = Deferred { frames: Vec::new(), count: 0, ticket: 0 };
    // Set while a partial frame waits for its remaining bytes.
    let mut partial_until: Option<tokio::time::Instant> = None;
    loop {
        // Frames that arrived with the hello, or a batch just read.
        let mut timed = (None, 0);
        if reading && !rbuf.is_empty() {
            let started = batch_clock(metrics);
            let (used, close, answered) = answer_frames(service, &rbuf, &mut wbuf, &mut deferred);
            rbuf.advance(used);
            if close {
                reading = false;
            }
            if deferred.count > 0 {
                let batch = std::mem::replace(&mut deferred, Deferred { frames: Vec::new(), count: 0, ticket: 0 });
                in_flight += batch.count;
                pending.push(async move {
                    service.durable(batch.ticket).await;
                    (batch.frames, batch.count, started)
                });
            }
            timed = (started, answered);
        }
        // Not while back-pressure keeps the server itself from reading.
        let waiting_for_bytes = reading && !rbuf.is_empty() && in_flight < MAX_IN_FLIGHT;
        partial_until = match (waiting_for_bytes, partial_until) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(tokio::time::Instant::now() + timeouts.frame),
        };
        // One write per batch: this is what makes pipelining cheap.
        if !wbuf.is_empty() {
            write_answers(&mut stream, &wbuf, timeouts.write).await?;
            wbuf.clear();
        }
        record_batch(metrics, timed.0, timed.1);
        if !reading && pending.is_empty() {
            break;
        }
        let mut room = (&mut rbuf).limit(READ_CHUNK);
        tokio::select! {
            biased;
            Some((frames, count, started)) = pending.next(), if !pending.is_empty() => {
                wbuf.extend_from_slice(&frames);
                in_flight -= count;
                // Counted when written, at the top of the loop: close enough
                // for durable answers, whose wait dominates.
                record_batch(metrics, started, count);
                // Batches that completed meanwhile go out in the same write.
                while let Some(Some((frames, count, started))) = pending.next().now_or_never() {
                    wbuf.extend_from_slice(&frames);
                    in_flight -= count;
                    record_batch(metrics, started, count);
                }
            }
            r = stream.read_buf(&mut room), if reading && in_flight < MAX_IN_FLIGHT => {
                if r? == 0 {
                    // The client is done sending; answer what it sent, then close.
                    reading = false;
                }
            }
            () = crate::shutdown::stopped(&mut stop), if reading => {
                reading = false;
                stopping = true;
            }
            () = sleep_until(partial_until), if partial_until.is_some() => {
                // Answers owed are still sent; the stalled frame is dropped.
                tracing::debug!("sidecar: closing a connection whose frame stalled");
                proto::encode_error(0, ErrorCode::MalformedFrame, "incomplete frame timed out", &mut wbuf);
                reading = false;
                partial_until = None;
            }
        }
    }
    if stopping {
        proto::encode_error(0, ErrorCode::ServerBusy, "server shutting down", &mut wbuf);
    }
    if !wbuf.is_empty() {
        write_answers(&mut stream, &wbuf, timeouts.write).await?;
    }
    stream.shutdown().await
}

/// Writes `buf` whole, or fails if the client has not taken it within
/// `timeout`.
async fn write_answers(stream: &mut UnixStream, buf: &[u8], timeout: Duration) -> io::Result<()> {
    match tokio::time::timeout(timeout, stream.write_all(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client did not read its answers")),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Answers every whole frame at the start of `buf` into `out` (or into
/// `deferred` for answers that must wait for durability).
///
/// Returns how many bytes were consumed, whether the connection must be
/// closed after the answers are written (a malformed frame), and how many
/// requests were answered into `out` (not counting the deferred ones).
fn answer_frames<S: Service>(
    service: &S,
    buf: &[u8],
    out: &mut Vec<u8>,
    deferred: &mut Deferred,
) -> (usize, bool, usize) {
    let now = now_us();
    let mut pos = 0;
    let mut answered = 0;
    // Requests decoded and not yet answered: answered together (see
    // `Service::answer_batch`) before an error frame, at most `LOOK_AHEAD` at a
    // time, and at the end of the buffer, so answers keep the frames' order.
    let mut batch: SmallVec<[(u32, Request<'_>); LOOK_AHEAD]> = SmallVec::new();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let len = match proto::check_frame(rest) {
            Ok(Some(len)) => len,
            Ok(None) => {
                answered += answer_batch(service, &mut batch, now, out, deferred);
                return (pos, false, answered);
            }
            Err(e) => {
                answered += answer_batch(service, &mut batch, now, out, deferred);
                // The frame boundary is lost: nothing after it can be trusted.
                proto::encode_error(0, e.error_code(), &e.to_string(), out);
                return (buf.len(), true, answered);
            }
        };
        let frame = rest.get(..len).unwrap_or_default();
        pos += len;
        match proto::decode_request(frame) {
            Ok((id, req)) => {
                batch.push((id, req));
                if batch.len() == LOOK_AHEAD {
                    answered += answer_batch(service, &mut batch, now, out, deferred);
                }
            }
            Err(e) => {
                answered += answer_batch(service, &mut batch, now, out, deferred);
                let id = proto::frame_request_id(frame).unwrap_or(0);
                proto::encode_error(id, e.error_code(), &e.to_string(), out);
                answered += 1;
                if e.closes_connection() {
                    return (buf.len(), true, answered);
                }
            }
        }
    }
}

/// Answers the requests of `batch` (emptying it) into `out`, setting aside in
/// `deferred` the answers that must wait for durability; returns how many
/// were answered into `out`.
fn answer_batch<S: Service>(
    service: &S,
    batch: &mut SmallVec<[(u32, Request<'_>); LOOK_AHEAD]>,
    now: Micros,
    out: &mut Vec<u8>,
    deferred: &mut Deferred,
) -> usize {
    if batch.is_empty() {
        return 0;
    }
    let mut answered = 0;
    service.answer_batch(batch, now, out, &mut |out, mark, ticket| {
        if let Some(ticket) = ticket {
            deferred.frames.extend_from_slice(out.get(mark..).unwrap_or_default());
            out.truncate(mark);
            deferred.count += 1;
            deferred.ticket = deferred.ticket.max(ticket);
        } else {
            answered += 1;
        }
    });
    batch.clear();
    answered
}

/// Answers requests with the engine: the daemon's service.
pub struct EngineService {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    /// Where denials go (`None` in benches and tests of the service alone).
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl EngineService {
    /// A service verifying with `engine`, counting into its own metrics.
    pub fn new(engine: Arc<Engine>) -> EngineService {
        EngineService::with_metrics(engine, Arc::default())
    }

    /// A service verifying with `engine`, counting into `metrics`.
    pub fn with_metrics(engine: Arc<Engine>, metrics: Arc<Metrics>) -> EngineService {
        EngineService { engine, metrics, audit: None }
    }

    /// Sends denied verifications to `audit` (attributed ones stored, the
    /// others counted and sampled).
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<crate::audit::AuditLog>) -> EngineService {
        self.audit = Some(audit);
        self
    }

    /// Answers a verify request; `looked` is its credential's lookup made
    /// ahead under `guard` ([`Engine::look_up_all`]), if one was.
    fn verify<'g>(
        &self,
        id: u32,
        v: &proto::VerifyRequest<'_>,
        now: Micros,
        out: &mut Vec<u8>,
        guard: &'g SecretsGuard<'_>,
        looked: Option<Looked<'g>>,
    ) -> Option<u64> {
        // Not UTF-8 cannot be any credential we issue: a verdict, not a protocol error.
        // The frame's request id on the trace line that `count` writes.
        let _req = tracing::trace_span!("req", id).entered();
        let Some(credential) = v.credential_str() else {
            self.metrics.verdict(None, "", Some(DenyCode::Malformed));
            if let Some(audit) = &self.audit {
                audit.unattributed(&self.metrics, DenySource::Socket, Some(DenyCode::Malformed), false, now);
            }
            let deny = proto::Deny {
                code: proto::DenyCode::Malformed,
                retry_after_ms: None,
                reason: Cow::Borrowed("credential is not utf-8"),
                rate_limit: None,
            };
            encode_or_internal(id, &Response::Verdict(proto::Verdict::Deny(deny)), out);
            return None;
        };
        if let Some(why) = self.engine.refusing() {
            // Not a verdict: the client fails this request (fail closed).
            proto::encode_error(id, proto::ErrorCode::ServerBusy, why, out);
            return None;
        }
        let permissions: SmallVec<[(&str, &str); 8]> = v.permissions.iter().collect();
        let req = VerifyRequest {
            credential,
            ip: v.ip,
            permissions: &permissions,
            cost: v.cost,
            quota: v.quota.map(|q| (q.name, q.amount)),
        };
        // The verdict borrows the key's entry under the guard: the lookup
        // and the answer write nothing another core reads.
        let verdict = self.engine.verify_looked(&req, now, guard, looked);
        self.metrics.count(&verdict, credential);
        encode_verdict(id, &verdict, out);
        match verdict {
            VerdictOf::Allow(a) => a.durable_after,
            VerdictOf::Deny(d) => {
                if let Some(audit) = &self.audit {
                    audit.verification_denied(&self.metrics, DenySource::Socket, credential, d.code, now);
                }
                None
            }
        }
    }

    /// Applies a quota operation. Only the `documents` quota exists; an
    /// unknown quota or team is refused as `ok = false, used = 0, limit = 0`
    /// (nothing can be consumed from what does not exist), keeping error
    /// frames for protocol problems.
    ///
    /// In cluster mode an acquire is a round trip to PostgreSQL (the quota
    /// is exact across the cluster); while it cannot be reached the acquire
    /// is answered with a `SERVER_BUSY` error saying so (the `Err`), and a
    /// release is kept and applied later.
    fn quota(&self, op: &proto::QuotaOp<'_>, consume: bool) -> Result<proto::QuotaResult, String> {
        const MISSING: proto::QuotaResult = proto::QuotaResult { ok: false, used: 0, limit: Some(0) };
        if op.quota != QUOTA_DOCUMENTS {
            return Ok(MISSING);
        }
        let Some(tier) = self.engine.index().teams.get(op.team_id).map(|t| t.tier()) else {
            return Ok(MISSING);
        };
        let limit = self.engine.tiers()[tier.index()].documents.get();
        let amount = u64::from(op.amount);
        let run = || {
            if consume {
                self.engine.consume_quota(op.team_id, amount).map(|r| match r {
                    Ok(used) => (true, used),
                    Err(used) => (false, used),
                })
            } else {
                self.engine.release_quota(op.team_id, amount).map(|used| (true, used))
            }
        };
        // Cluster mode waits for PostgreSQL: a runtime's worker hands its
        // other tasks over meanwhile.
        let r = match tokio::runtime::Handle::try_current() {
            Ok(h)
                if self.engine.cluster().is_some()
                    && h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        };
        match r {
            Ok((ok, used)) => Ok(proto::QuotaResult { ok, used, limit }),
            Err(crate::engine::EngineError::Store(crate::store::StoreError::Unavailable(why))) => {
                Err(format!("the cluster's database cannot be reached: team documents cannot be acquired ({why})"))
            }
            Err(crate::engine::EngineError::NotFound(_)) => Ok(MISSING),
            Err(e) => {
                tracing::warn!(error = %e, "socket: a quota operation failed");
                Err(format!("the quota operation failed: {e}"))
            }
        }
    }
}

impl Service for EngineService {
    fn answer(&self, id: u32, req: Request<'_>, now: Micros, out: &mut Vec<u8>) -> Option<u64> {
        match req {
            Request::Verify(v) => {
                let guard = self.engine.index().secrets.guard();
                return self.verify(id, &v, now, out, &guard, None);
            }
            Request::QuotaConsume(op) => match self.quota(&op, true) {
                Ok(r) => encode_or_internal(id, &Response::QuotaResult(r), out),
                Err(why) => proto::encode_error(id, proto::ErrorCode::ServerBusy, &why, out),
            },
            Request::QuotaRelease(op) => match self.quota(&op, false) {
                Ok(r) => encode_or_internal(id, &Response::QuotaResult(r), out),
                Err(why) => proto::encode_error(id, proto::ErrorCode::ServerBusy, &why, out),
            },
            Request::Ping => encode_or_internal(id, &Response::Pong, out),
        }
        None
    }

    /// Looks every verify request's credential up first, under one guard,
    /// then answers the requests in order with those lookups: the lookups'
    /// cache misses overlap instead of each request waiting for its own
    /// after the previous one is answered. The lookups decide nothing and
    /// write nothing; every check is made when the request is answered.
    fn answer_batch(&self, reqs: &[(u32, Request<'_>)], now: Micros, out: &mut Vec<u8>, each: Answered<'_>) {
        let guard = self.engine.index().secrets.guard();
        let credentials: SmallVec<[Option<&str>; LOOK_AHEAD]> = reqs
            .iter()
            .map(|(_, req)| match req {
                Request::Verify(v) => v.credential_str(),
                _ => None,
            })
            .collect();
        let looked = self.engine.look_up_all(&credentials, &guard);
        for (&(id, req), looked) in reqs.iter().zip(looked) {
            let mark = out.len();
            let ticket = match req {
                Request::Verify(v) => self.verify(id, &v, now, out, &guard, looked),
                other => self.answer(id, other, now, out),
            };
            each(out, mark, ticket);
        }
    }

    fn durable(&self, ticket: u64) -> impl Future<Output = ()> + Send {
        self.engine.wait_durable_async(ticket)
    }

    fn metrics(&self) -> Option<&Metrics> {
        Some(&self.metrics)
    }
}

/// Encodes `resp`, or an `INTERNAL` error for the request if it cannot be
/// encoded (say, a permission list over the protocol's limits), so that every
/// request still gets exactly one answer.
fn encode_or_internal(id: u32, resp: &Response<'_>, out: &mut Vec<u8>) {
    if let Err(e) = proto::encode_response(id, resp, out) {
        tracing::warn!(error = %e, "cannot encode a sidecar answer");
        proto::encode_error(id, ErrorCode::Internal, &format!("cannot encode the answer: {e}"), out);
    }
}

/// Encodes the engine's verdict as a protocol verdict, field for field.
///
/// Strings are borrowed from the verdict and the lists are built on the
/// stack, so a typical answer is encoded without a heap allocation.
pub fn encode_verdict(id: u32, verdict: &VerdictOf<'_>, out: &mut Vec<u8>) {
    match verdict {
        VerdictOf::Allow(a) => {
            let roles = [Cow::Borrowed(a.role.as_str())];
            let mut actions: SmallVec<[Cow<'_, str>; 16]> = SmallVec::new();
            let mut ends: SmallVec<[usize; 8]> = SmallVec::new();
            for (_, acts) in a.permissions().entries() {
                actions.extend(acts.map(Cow::Borrowed));
                ends.push(actions.len());
            }
            let mut start = 0;
            let permissions: SmallVec<[proto::Permission<'_>; 8]> = a
                .permissions()
                .entries()
                .zip(&ends)
                .map(|((resource, _), &end)| {
                    let p = proto::Permission {
                        resource: Cow::Borrowed(resource),
                        actions: proto::List::Borrowed(actions.get(start..end).unwrap_or_default()),
                    };
                    start = end;
                    p
                })
                .collect();
            let allow = proto::Allow {
                kind: a.kind,
                subject: Cow::Borrowed(a.subject()),
                team_id: Cow::Borrowed(a.team()),
                credential_id: Cow::Borrowed(a.credential_id()),
                roles: proto::List::Borrowed(&roles),
                permissions: proto::List::Borrowed(&permissions),
                remaining_uses: a.remaining.map(u64::from),
                rate_limit: a.rate_limit.map(rate_limit),
            };
            encode_or_internal(id, &Response::Verdict(proto::Verdict::Allow(allow)), out);
        }
        VerdictOf::Deny(d) => {
            let deny = proto::Deny {
                code: d.code,
                retry_after_ms: d.retry_after_ms,
                reason: Cow::Borrowed(d.reason),
                rate_limit: d.rate_limit.map(rate_limit),
            };
            encode_or_internal(id, &Response::Verdict(proto::Verdict::Deny(deny)), out);
        }
    }
}

fn rate_limit(r: RateInfo) -> proto::RateLimit {
    proto::RateLimit { limit: r.limit, remaining: r.remaining, reset_ms: r.reset_ms }
}
