//! The HTTP accept and connection layer, independent of routing: accepts on a
//! TCP listener (plain or TLS) or a Unix socket, applies the connection cap,
//! the timeouts and the bounded drain, and hands each connection to hyper with
//! the service the caller makes for it.
//!
//! Each connection is in one of three phases, tracked with two atomics:
//!
//! - **head**: from accept (after the TLS handshake, which counts too), and
//!   from the first byte of every later request, until the request's head is
//!   parsed: bounded by `header_read_timeout`;
//! - **busy**: the service is running (reading the body, answering): bounded
//!   by `body_timeout`;
//! - **idle**: a keep-alive connection between requests: bounded by
//!   `idle_timeout`.
//!
//! One timer per connection (not per request) watches the phase; a connection
//! past its bound is closed. Per request the cost is two clock reads and a few
//! relaxed atomic stores, no allocation.
//!
//! The cap counts every HTTP connection of the daemon (all listeners share one
//! [`Connections`]). A connection beyond it evicts the longest-quiet connection
//! that is not serving a request (an idle keep-alive one, or one dribbling its
//! head); if every connection is serving, the newcomer is closed at once. An
//! accept error (EMFILE, ENFILE, ...) evicts too, and backs off 50 ms.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::HttpServerConfig;
use crate::tls::Tls;

/// Timeouts, cap and drain of the HTTP listeners.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See `http_server.header_read_timeout_ms`.
    pub header_read_timeout: Duration,
    /// See `http_server.idle_timeout_ms`.
    pub idle_timeout: Duration,
    /// See `http_server.body_timeout_ms`.
    pub body_timeout: Duration,
    /// See `http_server.max_connections`.
    pub max_connections: usize,
    /// See `http_server.drain_grace_ms`.
    pub drain_grace: Duration,
}

impl Limits {
    /// The configured limits.
    pub fn from_config(c: &HttpServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            body_timeout: Duration::from_millis(c.body_timeout_ms),
            max_connections: c.max_connections,
            drain_grace: Duration::from_millis(c.drain_grace_ms),
        }
    }
}

/// File descriptors kept out of the HTTP connection cap: the store, the
/// listeners, the socket clients' share is not counted (the sidecar has its
/// own cap), logs, key files.
const FD_RESERVE: u64 = 64;

/// The cap that fits the process's open-file limit (`RLIMIT_NOFILE`, read from
/// `/proc/self/limits`): at most that limit less `FD_RESERVE`, and at
/// least 1. `None` when the configured cap fits (or the limit is unknown).
pub fn cap_for_fd_limit(configured: usize) -> Option<(usize, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft: u64 = line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()?;
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE).max(soft / 2).max(1)).unwrap_or(usize::MAX);
    (room < configured).then_some((room, soft))
}

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// One connection's phase and when it began (ms since [`Connections`]'s epoch).
struct ConnState {
    phase: AtomicU8,
    since_ms: AtomicU64,
    epoch: Instant,
    evict: Notify,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// When this connection must be looked at next, or `None` if it is past
    /// its bound now (the reason given).
    fn next_check(&self, limits: &Limits) -> Result<Instant, &'static str> {
        let now = self.now_ms();
        let since = self.since_ms.load(Ordering::Relaxed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (deadline, why) = match self.phase.load(Ordering::Acquire) {
            HEAD => (since.saturating_add(ms(limits.header_read_timeout)), "request head not received in time"),
            BUSY => (since.saturating_add(ms(limits.body_timeout)), "request body or answer not done in time"),
            _ => {
                // A head may start any moment: look again within its timeout.
                let idle = since.saturating_add(ms(limits.idle_timeout));
                let head = now.saturating_add(ms(limits.header_read_timeout));
                if now >= idle {
                    return Err("idle keep-alive connection");
                }
                (idle.min(head), "")
            }
        };
        if now >= deadline && !why.is_empty() {
            return Err(why);
        }
        Ok(self.epoch + Duration::from_millis(deadline.max(now + 1)))
    }
}

/// The HTTP connections of the daemon: the cap and eviction.
pub struct Connections {
    max: usize,
    epoch: Instant,
    table: parking_lot::Mutex<Table>,
    /// When the last "cap reached" warning was logged (ms since epoch + 1; 0 = never).
    warned_ms: AtomicU64,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
}

impl Connections {
    /// A table for at most `max` connections.
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            epoch: Instant::now(),
            table: parking_lot::Mutex::new(Table::default()),
            warned_ms: AtomicU64::new(0),
        })
    }

    /// Registers a new connection, evicting a quiet one if the cap is reached;
    /// `None` if every connection is serving a request.
    fn admit(self: &Arc<Self>) -> Option<Registered> {
        let state = Arc::new(ConnState {
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            epoch: self.epoch,
            evict: Notify::new(),
        });
        state.enter(HEAD);
        let mut t = self.table.lock();
        if t.conns.len() >= self.max {
            if !Self::evict_quietest(&t) {
                drop(t);
                self.warn("the HTTP connection cap is reached and every connection is serving a request: a new connection was closed");
                return None;
            }
            self.warn("the HTTP connection cap is reached: the longest-quiet connection was closed for a new one");
        }
        t.next_id += 1;
        let id = t.next_id;
        t.conns.insert(id, state.clone());
        Some(Registered { id, state, table: self.clone() })
    }

    /// Closes the quiet connection (not serving a request) that has been so
    /// the longest; false if there is none. Several evictions in a row pick
    /// different connections only once the first has gone; that is fine.
    fn evict_quietest(t: &Table) -> bool {
        let victim = t
            .conns
            .values()
            .filter(|c| c.phase.load(Ordering::Acquire) != BUSY)
            .min_by_key(|c| c.since_ms.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.phase.store(BUSY, Ordering::Release); // not picked twice
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn evict_one(&self) {
        Self::evict_quietest(&self.table.lock());
    }

    /// Logs `msg` at most every 10 s.
    fn warn(&self, msg: &str) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = self.warned_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self.warned_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(max_connections = self.max, "{msg}");
        }
    }
}

/// A connection's place in the table; leaves it on drop.
struct Registered {
    id: u64,
    state: Arc<ConnState>,
    table: Arc<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.table.lock().conns.remove(&self.id);
    }
}

/// A listener the HTTP server accepts on.
pub enum Listener {
    /// TCP, with TLS when set.
    Tcp(tokio::net::TcpListener, Option<Arc<Tls>>),
    /// A Unix socket (plain; its peers have no address).
    Unix(tokio::net::UnixListener),
}

enum Accepted {
    Tcp(tokio::net::TcpStream, IpAddr),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l, _) => l.accept().await.map(|(s, peer)| {
                let _ = s.set_nodelay(true);
                Accepted::Tcp(s, peer.ip())
            }),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Listener::Tcp(_, Some(_)) => "https",
            Listener::Tcp(_, None) => "http",
            Listener::Unix(_) => "http unix",
        }
    }
}

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Timeouts, drain.
    pub limits: Limits,
    /// Keep connections open between requests.
    pub keep_alive: bool,
    /// On `stop`, leave the open connections to finish on their own (bounded
    /// by the timeouts) instead of draining them: the startup server hands
    /// its listener over this way.
    pub detach_on_stop: bool,
}

/// Accepts on `listener` until `stop` turns true, serving each connection
/// with `make(peer)` (the peer's address; `None` on a Unix socket); then
/// drains for at most `limits.drain_grace` and drops what is left.
pub async fn serve<F, S, B>(
    listener: &Listener,
    conns: &Arc<Connections>,
    opts: Options,
    make: F,
    stop: watch::Receiver<bool>,
) where
    F: Fn(Option<IpAddr>) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut tasks = JoinSet::new();
    let mut accept_stop = stop.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => {
                    let Some(reg) = conns.admit() else { continue };
                    let stop = (!opts.detach_on_stop).then(|| stop.clone());
                    match accepted {
                        Accepted::Tcp(s, peer) => {
                            let svc = make(Some(peer));
                            match listener {
                                Listener::Tcp(_, Some(tls)) => {
                                    let acceptor = tls.acceptor();
                                    tasks.spawn(async move {
                                        let handshake = acceptor.accept(Tracked::new(s, reg.state.clone()));
                                        // The handshake counts against the head's timeout.
                                        let deadline = tokio::time::Instant::now() + opts.limits.header_read_timeout;
                                        match tokio::time::timeout_at(deadline, handshake).await {
                                            Ok(Ok(tls)) => serve_conn(tls, svc, reg, opts, stop).await,
                                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                            Err(_) => tracing::debug!(%peer, "TLS handshake not done in time"),
                                        }
                                    });
                                }
                                _ => {
                                    tasks.spawn(serve_conn(Tracked::new(s, reg.state.clone()), svc, reg, opts, stop));
                                }
                            }
                        }
                        Accepted::Unix(s) => {
                            let svc = make(None);
                            tasks.spawn(serve_conn(Tracked::new(s, reg.state.clone()), svc, reg, opts, stop));
                        }
                    }
                }
                Err(e) => {
                    conns.warn(&format!("{} accept failed ({e}); backing off 50 ms", listener.name()));
                    if matches!(rustix::io::Errno::from_io_error(&e), Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) {
                        conns.evict_one();
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = crate::shutdown::stopped(&mut accept_stop) => break,
        }
        while tasks.try_join_next().is_some() {}
    }
    if opts.detach_on_stop {
        tasks.detach_all();
        return;
    }
    if !tasks.is_empty()
        && tokio::time::timeout(opts.limits.drain_grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
    {
        tracing::warn!(
            listener = listener.name(),
            dropped = tasks.len(),
            grace_ms = opts.limits.drain_grace.as_millis() as u64,
            "drain grace over: connections still open are dropped"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Serves one connection until it ends, breaks a bound, is evicted, or the
/// drain (`stop`) closes it.
async fn serve_conn<I, S, B>(io: I, svc: S, reg: Registered, opts: Options, mut stop: Option<watch::Receiver<bool>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let state = reg.state.clone();
    // The TLS handshake (if any) is done: the head's clock starts now.
    state.enter(HEAD);
    let svc = TrackedService { inner: svc, state: state.clone() };
    let conn = http1::Builder::new()
        .keep_alive(opts.keep_alive)
        // The timeouts are this module's (see the top): hyper's own header
        // timeout would also cut keep-alive connections idle for that long.
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(None)
        // A client may shut its write side once the request is sent: the
        // answer still goes out (admin calls are answered from another
        // runtime, after hyper has read that end of file).
        .half_close(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let watchdog = tokio::time::sleep(opts.limits.header_read_timeout);
    tokio::pin!(watchdog);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "http connection ended");
                }
                return;
            }
            () = &mut watchdog => match state.next_check(&opts.limits) {
                Ok(next) => watchdog.as_mut().reset(next.into()),
                Err(why) => {
                    tracing::debug!(reason = why, "http connection closed");
                    return;
                }
            },
            () = state.evict.notified() => {
                tracing::debug!("http connection closed to make room (connection cap)");
                return;
            }
            () = stop_or_never(&mut stop), if !draining => {
                // A connection still sending a head has nothing to finish;
                // otherwise hyper closes an idle connection at once, and a
                // busy one once its answer is written.
                if state.phase.load(Ordering::Acquire) == HEAD {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn stop_or_never(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(s) => crate::shutdown::stopped(s).await,
        None => std::future::pending().await,
    }
}

pin_project_lite::pin_project! {
    /// A stream that notes the first byte of a request's head.
    struct Tracked<S> {
        #[pin]
        inner: S,
        state: Arc<ConnState>,
    }
}

impl<S> Tracked<S> {
    fn new(inner: S, state: Arc<ConnState>) -> Self {
        Tracked { inner, state }
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before && this.state.phase.load(Ordering::Relaxed) == IDLE {
            this.state.enter(HEAD);
        }
        r
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The caller's service, with the connection busy while it runs.
struct TrackedService<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for TrackedService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.enter(BUSY);
        TrackedFuture { inner: self.inner.call(req), busy: BusyGuard(self.state.clone()) }
    }
}

/// Marks the connection idle when the request's future is done (or dropped).
struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.enter(IDLE);
    }
}

pin_project_lite::pin_project! {
    /// The caller's future, and the guard that marks the end of the request.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: BusyGuard,
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 2,
            drain_grace: Duration::from_secs(1),
        }
    }

    fn state(phase: u8, ago_ms: u64) -> ConnState {
        let epoch = Instant::now() - Duration::from_secs(1000);
        let s = ConnState { phase: AtomicU8::new(phase), since_ms: AtomicU64::new(0), epoch, evict: Notify::new() };
        s.since_ms.store(s.now_ms() - ago_ms, Ordering::Relaxed);
        s
    }

    #[test]
    fn each_phase_has_its_bound() {
        let l = limits();
        assert!(state(HEAD, 9_000).next_check(&l).is_ok());
        assert_eq!(state(HEAD, 10_000).next_check(&l), Err("request head not received in time"));
        assert!(state(BUSY, 29_000).next_check(&l).is_ok());
        assert!(state(BUSY, 30_000).next_check(&l).is_err());
        assert!(state(IDLE, 59_000).next_check(&l).is_ok());
        assert!(state(IDLE, 60_000).next_check(&l).is_err());
        // An idle connection is looked at again within a head's timeout, so
        // that a head starting meanwhile is held to its own bound.
        let s = state(IDLE, 0);
        let next = s.next_check(&l).unwrap();
        assert!(next <= Instant::now() + Duration::from_secs(10));
    }

    #[test]
    fn the_cap_evicts_the_quietest_connection_that_is_not_busy() {
        let c = Connections::new(2);
        let a = c.admit().unwrap();
        let b = c.admit().unwrap();
        a.state.enter(BUSY);
        b.state.enter(IDLE);
        let third = c.admit().expect("an idle connection makes room");
        assert_eq!(b.state.phase.load(Ordering::Acquire), BUSY, "b was picked (and is not picked twice)");
        drop(b);
        third.state.enter(BUSY);
        assert!(c.admit().is_none(), "every connection busy: the newcomer is refused");
        drop((a, third));
        assert!(c.admit().is_some());
    }
}
