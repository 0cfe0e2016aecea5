//! The Unix-socket sidecar end to end: the in-process daemon on a temp dir,
//! real sockets, the protocol crate's clients and raw bytes.

use crate::common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::config::Config;
use tollgate::core::model::{Permissions, Tier};
use tollgate::engine::{Engine, NewKey};
use tollgate_protocol::{
    AsyncClient, Client, DenyCode, ErrorCode, HANDSHAKE_LEN, PROTOCOL_VERSION, Request, Response, VerifyRequest,
    check_frame, decode_response, encode_handshake, encode_request,
};

/// A daemon running in this process on a temp dir.
struct Daemon {
    engine: Arc<Engine>,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    async fn start(dir: &Path, toml: &str) -> Daemon {
        let mut config = common::config(dir, toml);
        config.http = "127.0.0.1:0".to_owned();
        let engine = Arc::new(Engine::open(&config).expect("engine opens"));
        Daemon::start_with(engine, config).await
    }

    async fn start_with(engine: Arc<Engine>, config: Config) -> Daemon {
        let (tx, rx) = oneshot::channel::<()>();
        // The daemon binds `http` (port 0) itself; the test waits for its
        // readiness signal (every listener bound, the socket's mode set).
        let (ready_tx, ready_rx) = oneshot::channel();
        let handover = tollgate::server::Handover { http: None, ready: Some(ready_tx) };
        let e = engine.clone();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task =
            tokio::spawn(tollgate::server::serve_handed(config.clone(), async move { Ok(e) }, shutdown, handover));
        if ready_rx.await.is_err() {
            panic!("the daemon did not start: {:?}", task.await);
        }
        Daemon { engine, config, stop: Some(tx), task }
    }

    fn socket(&self) -> &Path {
        &self.config.socket
    }

    /// A Pro-tier key with `new`'s settings; returns its secret.
    fn key(&self, new: NewKey) -> String {
        self.engine.create_key(new).expect("key created").1
    }

    fn user(&self) -> String {
        common::team_and_user(&self.engine, Tier::Pro, &format!("u{}", self.engine.index().keys.len())).1
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.expect("serve task").expect("serve ends cleanly");
    }
}

/// A raw connection that has done the handshake.
async fn raw(path: &Path) -> UnixStream {
    let mut s = UnixStream::connect(path).await.expect("connect");
    let mut hello = Vec::new();
    encode_handshake(PROTOCOL_VERSION, &mut hello);
    s.write_all(&hello).await.unwrap();
    let mut reply = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[..4], b"TGAT");
    s
}

/// Reads until the server closes (or `limit` passes); returns every whole
/// response frame seen, as (id, response) pairs, and whether it closed.
async fn read_until_close(s: &mut UnixStream, limit: Duration) -> (Vec<(u32, Response<'static>)>, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    (frames(&buf), closed)
}

fn frames(mut buf: &[u8]) -> Vec<(u32, Response<'static>)> {
    let mut out = Vec::new();
    while let Ok(Some(len)) = check_frame(buf) {
        let (id, r) = decode_response(&buf[..len]).expect("the server sends valid frames");
        out.push((id, r.into_owned()));
        buf = &buf[len..];
    }
    out
}

fn error_code(r: &Response<'_>) -> Option<ErrorCode> {
    match r {
        Response::Error(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_pipelined_answers_match_ids_and_come_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{}\n[durability]\nmode = \"strict\"\nflush_interval_ms = 20\n", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let user = d.user();
    // A counted key: strict durability makes verdicts that consume wait for the disk.
    let good = d.key(NewKey { user_id: user, remaining: Some(1_000_000), ..Default::default() });
    let mut s = raw(d.socket()).await;
    // Odd ids: a valid key, answered after its counters are flushed. Even ids:
    // garbage, denied at once. Sent in one write, so all are in flight together.
    const N: u32 = 200;
    let mut batch = Vec::new();
    for id in 1..=N {
        let cred = if id % 2 == 1 { good.as_str() } else { "not-a-key" };
        encode_request(id, &Request::Verify(VerifyRequest::new(cred)), &mut batch).unwrap();
    }
    s.write_all(&batch).await.unwrap();
    let mut buf = Vec::new();
    let mut order = Vec::new();
    let mut seen = HashMap::new();
    while seen.len() < N as usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(len)) = check_frame(&buf) {
            let (id, r) = decode_response(&buf[..len]).unwrap();
            let Response::Verdict(v) = r else { panic!("unexpected {r:?}") };
            assert!(seen.insert(id, v.deny_code()).is_none(), "second answer to {id}");
            order.push(id);
            buf.drain(..len);
        }
    }
    for id in 1..=N {
        let want = if id % 2 == 1 { None } else { Some(DenyCode::Malformed) };
        assert_eq!(seen[&id], want, "request {id}");
    }
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_ne!(order, sorted, "denies are not held back by the flush, so answers overtake");
    assert_eq!(order[0] % 2, 0, "the first answer is an immediate deny: {:?}", &order[..10]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_get_an_error_or_a_close_and_never_disturb_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), common::PRO_UNLIMITED).await;
    let user = d.user();
    let good = d.key(NewKey { user_id: user, ..Default::default() });
    let path = d.socket().to_owned();

    // A well-behaved client verifying in a loop the whole time.
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let good_task = tokio::spawn({
        let (path, good) = (path.clone(), good.clone());
        async move {
            let c = AsyncClient::connect(&path).await.unwrap();
            let mut answers = 0u32;
            loop {
                let v = c.verify(&VerifyRequest::new(&good)).await.expect("the good client is served");
                assert!(v.is_allow(), "{v:?}");
                let bad = c.verify(&VerifyRequest::new("tg_nope")).await.unwrap();
                assert_eq!(bad.deny_code(), Some(DenyCode::Malformed));
                answers += 2;
                if done_rx.try_recv().is_ok() {
                    return answers;
                }
            }
        }
    });

    let limit = Duration::from_secs(5);
    // Oversized length prefix: FRAME_TOO_LARGE (id 0), then closed.
    let mut s = raw(&path).await;
    s.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 1]).await.unwrap();
    let (got, closed) = read_until_close(&mut s, limit).await;
    assert!(closed);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, error_code(&got[0].1)), (0, Some(ErrorCode::FrameTooLarge)));

    // Wrong protocol version in the hello: UNSUPPORTED_VERSION, closed.
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(b"TGAT\x00\x00").await.unwrap();
    let (got, closed) = read_until_close(&mut s, limit).await;
    assert!(closed);
    assert_eq!(error_code(&got[0].1), Some(ErrorCode::UnsupportedVersion));

    // Not our protocol at all: MALFORMED_FRAME, closed.
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (got, closed) = read_until_close(&mut s, limit).await;
    assert!(closed);
    assert_eq!(error_code(&got[0].1), Some(ErrorCode::MalformedFrame));

    // A truncated frame then a close of our side: answered with nothing, closed.
    let mut s = raw(&path).await;
    let mut frame = Vec::new();
    encode_request(9, &Request::Verify(VerifyRequest::new(&good)), &mut frame).unwrap();
    s.write_all(&frame[..frame.len() - 3]).await.unwrap();
    s.shutdown().await.unwrap();
    let (got, closed) = read_until_close(&mut s, limit).await;
    assert!(closed);
    assert!(got.is_empty(), "{got:?}");

    // A frame whose payload does not decode: MALFORMED_FRAME with its id, closed.
    let mut s = raw(&path).await;
    s.write_all(&[0, 0, 0, 8, 0x01, 0, 0, 0, 42, 0xAA, 0xBB, 0xCC]).await.unwrap();
    let (got, closed) = read_until_close(&mut s, limit).await;
    assert!(closed);
    assert_eq!((got[0].0, error_code(&got[0].1)), (42, Some(ErrorCode::MalformedFrame)));

    // An unknown message type: UNKNOWN_MESSAGE_TYPE, and the connection stays usable.
    let mut s = raw(&path).await;
    let mut bytes = vec![0, 0, 0, 5, 0x7E, 0, 0, 0, 7];
    encode_request(8, &Request::Ping, &mut bytes).unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut buf = vec![0u8; 256];
    let mut got = Vec::new();
    while got.len() < 2 {
        let n = tokio::time::timeout(limit, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let mut answers = frames(&got);
    while answers.len() < 2 {
        let n = tokio::time::timeout(limit, s.read(&mut buf)).await.unwrap().unwrap();
        got.extend_from_slice(&buf[..n]);
        answers = frames(&got);
    }
    assert_eq!((answers[0].0, error_code(&answers[0].1)), (7, Some(ErrorCode::UnknownMessageType)));
    assert_eq!(answers[1], (8, Response::Pong));

    // Random garbage after a good hello, many times: an error frame or a close, never a hang.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..50 {
        let mut s = raw(&path).await;
        let len = 1 + (round * 37) % 300;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        s.write_all(&garbage).await.unwrap();
        s.shutdown().await.unwrap();
        let (_, closed) = read_until_close(&mut s, limit).await;
        assert!(closed, "round {round}: the server must close after garbage and our EOF");
    }

    // A client that connects and never says hello does not block anyone either.
    let _silent = UnixStream::connect(&path).await.unwrap();

    let _ = done_tx.send(());
    let answers = good_task.await.expect("the good client never failed");
    assert!(answers > 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_frame_is_closed_after_the_frame_timeout_but_an_idle_connection_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("socket_frame_timeout_ms = 300\n{}", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let good = d.key(NewKey { user_id: d.user(), ..Default::default() });
    let path = d.socket().to_owned();

    // A whole ping, then half a verify, then silence: the ping is answered,
    // then MALFORMED_FRAME (id 0) and a close once the timeout has passed.
    let mut s = raw(&path).await;
    let mut bytes = Vec::new();
    encode_request(1, &Request::Ping, &mut bytes).unwrap();
    let mut frame = Vec::new();
    encode_request(2, &Request::Verify(VerifyRequest::new(&good)), &mut frame).unwrap();
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    s.write_all(&bytes).await.unwrap();
    let started = std::time::Instant::now();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a stalled frame must not hold the connection");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before the timeout: {:?}", started.elapsed());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], (1, Response::Pong));
    assert_eq!((got[1].0, error_code(&got[1].1)), (0, Some(ErrorCode::MalformedFrame)));

    // Idle between frames for longer than the timeout: still served.
    let c = AsyncClient::connect(&path).await.unwrap();
    assert!(c.verify(&VerifyRequest::new(&good)).await.unwrap().is_allow());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(c.verify(&VerifyRequest::new(&good)).await.unwrap().is_allow());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("socket_handshake_timeout_ms = 300\n{}", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    let started = Instant::now();
    // The default (5 s) would outlast this limit: the setting took effect.
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(closed, "a connection that never says hello must be closed");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before the timeout: {:?}", started.elapsed());
    assert!(got.is_empty(), "{got:?}");
    // A client that does say hello in time is served.
    let c = AsyncClient::connect(d.socket()).await.unwrap();
    c.ping().await.unwrap();
    d.stop().await;
}

/// Sends pings on `s` from another task, without ever reading the answers,
/// until the server stops taking them; returns how many were sent.
fn ping_without_reading(s: UnixStream) -> (tokio::net::unix::OwnedReadHalf, JoinHandle<u64>) {
    let (r, mut w) = s.into_split();
    let task = tokio::spawn(async move {
        let mut batch = Vec::new();
        for id in 1..=1000u32 {
            encode_request(id, &Request::Ping, &mut batch).unwrap();
        }
        let mut sent = 0;
        // 4 MB of pings: their answers far exceed the socket's buffers.
        for _ in 0..(4 << 20) / batch.len() {
            if w.write_all(&batch).await.is_err() {
                break;
            }
            sent += 1000;
        }
        sent
    });
    (r, task)
}

/// Reads `r` until the server closes or `limit` passes; returns the bytes
/// read and whether it closed.
async fn drain_until_close(r: &mut tokio::net::unix::OwnedReadHalf, limit: Duration) -> (usize, bool) {
    let mut total = 0;
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .is_ok();
    (total, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("socket_write_timeout_ms = 300\n{}", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let (mut r, writer) = ping_without_reading(raw(d.socket()).await);
    // Not reading for longer than the write timeout: the server gives up on
    // the connection. (With the default, 10 s, it would still be waiting, and
    // reading now would let it go on answering, with the connection open.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (read, closed) = drain_until_close(&mut r, Duration::from_secs(3)).await;
    assert!(closed, "a client that does not read its answers must be closed");
    let sent = tokio::time::timeout(Duration::from_secs(5), writer).await.expect("the writer stops").unwrap();
    // Fewer answers arrived than pings were sent.
    let mut pong = Vec::new();
    tollgate_protocol::encode_response(1, &Response::Pong, &mut pong).unwrap();
    assert!(read / pong.len() < sent as usize, "read {read} bytes for {sent} pings");
    // Other clients are served all along.
    let c = AsyncClient::connect(d.socket()).await.unwrap();
    c.ping().await.unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_connection_that_does_not_read_after_the_drain_grace() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("socket_drain_grace_ms = 300\n{}", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let (mut r, _writer) = ping_without_reading(raw(d.socket()).await);
    // Let the server block writing answers nobody reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    d.stop().await;
    let took = started.elapsed();
    // The stuck connection held shutdown for the grace, not for the write
    // timeout (10 s) or the default grace (10 s).
    assert!(took >= Duration::from_millis(250), "shutdown did not wait for the connection: {took:?}");
    assert!(took < Duration::from_secs(5), "shutdown waited {took:?}");
    let (_, closed) = drain_until_close(&mut r, Duration::from_secs(3)).await;
    assert!(closed, "the connection is dropped at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_not_found_on_the_very_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), common::PRO_UNLIMITED).await;
    let user = d.user();
    let mut perms = Permissions::default();
    perms.0.insert("documents".into(), vec!["read".into(), "write".into()]);
    let (key, secret) = d
        .engine
        .create_key(NewKey { user_id: user, permissions: perms, remaining: Some(10), ..Default::default() })
        .unwrap();
    let c = AsyncClient::connect(d.socket()).await.unwrap();
    let v = c.verify(&VerifyRequest::new(&secret).permissions(&[("documents", "write")])).await.unwrap();
    let tollgate_protocol::Verdict::Allow(a) = v else { panic!("{v:?}") };
    assert_eq!(a.credential_id, key.id.as_str());
    assert_eq!(a.roles.as_slice(), ["Administrator"]);
    assert_eq!(a.permissions.len(), 1);
    assert_eq!(a.permissions[0].resource, "documents");
    assert_eq!(a.permissions[0].actions.as_slice(), ["read", "write"]);
    assert_eq!(a.remaining_uses, Some(9));
    let v = c.verify(&VerifyRequest::new(&secret).permissions(&[("billing", "read")])).await.unwrap();
    assert_eq!(v.deny_code(), Some(DenyCode::InsufficientPermissions));
    // Not UTF-8: a MALFORMED verdict, not a protocol error.
    let v = c.verify(&VerifyRequest::new(&[0xFFu8, 0xFE][..])).await.unwrap();
    assert_eq!(v.deny_code(), Some(DenyCode::Malformed));

    d.engine.delete_key(&key.id).unwrap();
    let v = c.verify(&VerifyRequest::new(&secret)).await.unwrap();
    assert_eq!(v.deny_code(), Some(DenyCode::NotFound));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), common::PRO_UNLIMITED).await;
    let (team, _) = common::team_and_user(&d.engine, Tier::Pro, "q");
    let c = AsyncClient::connect(d.socket()).await.unwrap();
    let op = |amount| tollgate_protocol::QuotaOp { team_id: &team, quota: "documents", amount };
    let r = c.quota_consume(&op(4990)).await.unwrap();
    assert_eq!((r.ok, r.used, r.limit), (true, 4990, Some(5000)));
    let r = c.quota_consume(&op(11)).await.unwrap();
    assert_eq!((r.ok, r.used), (false, 4990));
    let r = c.quota_release(&op(90)).await.unwrap();
    assert_eq!((r.ok, r.used), (true, 4900));
    assert_eq!(d.engine.quota_used(&team).unwrap(), 4900);
    let missing = tollgate_protocol::QuotaOp { team_id: "team_nope", quota: "documents", amount: 1 };
    let r = c.quota_consume(&missing).await.unwrap();
    assert_eq!((r.ok, r.used, r.limit), (false, 0, Some(0)));
    let unknown = tollgate_protocol::QuotaOp { team_id: &team, quota: "seats", amount: 1 };
    assert!(!c.quota_consume(&unknown).await.unwrap().ok);
    c.ping().await.unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_0660_stale_files_are_replaced_and_live_daemons_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), common::PRO_UNLIMITED);
    config.http = "127.0.0.1:0".to_owned();
    // A stale socket file: bound, then its owner went away.
    drop(std::os::unix::net::UnixListener::bind(&config.socket).unwrap());
    assert!(config.socket.exists());
    let engine = Arc::new(Engine::open(&config).unwrap());
    let d = Daemon::start_with(engine, config.clone()).await;
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    AsyncClient::connect(d.socket()).await.unwrap().ping().await.unwrap();

    // A second daemon on the same path refuses to start.
    let e = tollgate::sidecar::bind(&config).await.unwrap_err();
    assert!(matches!(e, tollgate::sidecar::BindError::InUse(_)), "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    AsyncClient::connect(d.socket()).await.unwrap().ping().await.unwrap();

    let path = d.socket().to_owned();
    d.stop().await;
    assert!(!path.exists(), "the socket file is removed on shutdown");

    // A regular file in the way is never deleted.
    std::fs::write(&path, b"precious").unwrap();
    let e = tollgate::sidecar::bind(&config).await.unwrap_err();
    assert!(matches!(e, tollgate::sidecar::BindError::NotASocket(_)), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_allowlist_that_excludes_us_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::fs::metadata(dir.path()).unwrap().uid();
    let toml = format!("socket_allowed_uids = [{}]\n{}", me.wrapping_add(1), common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    assert!(AsyncClient::connect(d.socket()).await.is_err());
    d.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let toml = format!("socket_allowed_uids = [{}, {me}]\n{}", me.wrapping_add(1), common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    AsyncClient::connect(d.socket()).await.unwrap().ping().await.unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_told_busy() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("max_connections = 2\n{}", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let a = AsyncClient::connect(d.socket()).await.unwrap();
    let b = AsyncClient::connect(d.socket()).await.unwrap();
    a.ping().await.unwrap();
    b.ping().await.unwrap();
    // The third is accepted, told SERVER_BUSY with id 0, and closed.
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed);
    assert_eq!((got[0].0, error_code(&got[0].1)), (0, Some(ErrorCode::ServerBusy)));
    // The clients read the refusal even when their hello write failed
    // because the server had already closed (SPEC.md 3).
    for _ in 0..20 {
        let e = AsyncClient::connect(d.socket()).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        let path = d.socket().to_owned();
        let e =
            tokio::task::spawn_blocking(move || tollgate_protocol::Client::connect(path).err().unwrap()).await.unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }
    // A slot frees when a connection closes.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    let c = loop {
        match AsyncClient::connect(d.socket()).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("no slot freed: {e}"),
        }
    };
    c.ping().await.unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_connections_admit_exactly_the_remaining_uses() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), common::PRO_UNLIMITED).await;
    let user = d.user();
    let secret = d.key(NewKey { user_id: user, remaining: Some(1000), ..Default::default() });
    let path = d.socket().to_owned();
    let tallies = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut c = Client::connect(&path).unwrap();
                        let reqs = vec![VerifyRequest::new(&secret); 2000];
                        let mut m: HashMap<Option<DenyCode>, usize> = HashMap::new();
                        for v in c.verify_many(&reqs).unwrap() {
                            *m.entry(v.deny_code()).or_default() += 1;
                        }
                        m
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();
    let mut total: HashMap<Option<DenyCode>, usize> = HashMap::new();
    for m in tallies {
        for (k, v) in m {
            *total.entry(k).or_default() += v;
        }
    }
    assert_eq!(total.get(&None), Some(&1000), "{total:?}");
    assert_eq!(total.get(&Some(DenyCode::UsageExceeded)), Some(&15_000), "{total:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_is_in_flight_then_says_busy_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{}\n[durability]\nmode = \"strict\"\nflush_interval_ms = 200\n", common::PRO_UNLIMITED);
    let d = Daemon::start(dir.path(), &toml).await;
    let user = d.user();
    let good = d.key(NewKey { user_id: user, ..Default::default() });
    let mut s = raw(d.socket()).await;
    let mut batch = Vec::new();
    for id in 1..=50u32 {
        encode_request(id, &Request::Verify(VerifyRequest::new(&good)), &mut batch).unwrap();
    }
    s.write_all(&batch).await.unwrap();
    // Let the daemon read the batch, then stop it while the answers wait for a flush.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let path = d.socket().to_owned();
    let stopper = tokio::spawn(d.stop());
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert!(closed);
    let allows = got.iter().filter(|(_, r)| matches!(r, Response::Verdict(v) if v.is_allow())).count();
    assert_eq!(allows, 50, "{got:?}");
    assert_eq!(got.last().map(|(id, r)| (*id, error_code(r))), Some((0, Some(ErrorCode::ServerBusy))));
    stopper.await.unwrap();
    assert!(!path.exists());
}

/// The socket service looks a batch's credentials up ahead of answering it
/// (`Service::answer_batch`); the answers must be, byte for byte, those of
/// answering the requests one by one. Two engines on copies of one data
/// directory get the same requests, one as a batch and one by one.
#[test]
fn a_batch_is_answered_exactly_as_one_request_at_a_time() {
    use tollgate::engine::{ImportKey, KeyUpdate};
    use tollgate::sidecar::{EngineService, Service};
    use tollgate_protocol::QuotaOp;

    const FOREIGN: &str = "sk_live_51HqLyjWDarjtT1zdp7dcXHEqV9lHx1sEZcFn";
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let toml = common::PRO_UNLIMITED;
    let (team, secrets) = {
        let e = common::engine(&a, toml);
        let (team, user) = common::team_and_user(&e, Tier::Pro, "batch");
        let new = |remaining| NewKey { user_id: user.clone(), remaining, ..Default::default() };
        let plain = e.create_key(new(None)).unwrap().1;
        let counted = e.create_key(new(Some(2))).unwrap().1;
        let (disabled_key, disabled) = e.create_key(new(None)).unwrap();
        e.update_key(&disabled_key.id, KeyUpdate { enabled: Some(false), ..Default::default() }).unwrap();
        let (deleted_key, deleted) = e.create_key(new(None)).unwrap();
        e.delete_key(&deleted_key.id).unwrap();
        let token = e.create_token(&user, "t", "personal", None).unwrap().1;
        let jwt = e.issue_jwt(&user).unwrap();
        let key_jwt = e.login_with_key(&counted, None).unwrap();
        let adopted = ImportKey {
            key: new(None),
            hash: Some(tollgate::core::secret::sha256(FOREIGN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()),
            // Its prefix: credentials of tollgate's shape with another one are
            // still refused without a lookup.
            start: Some("sk_live_51Hq".to_owned()),
        };
        e.import_keys(vec![adopted]).unwrap();
        e.shutdown().unwrap();
        (team, [plain, counted, disabled, deleted, token, jwt, key_jwt])
    };
    common::copy_dir(&a, &b);
    let [plain, counted, disabled, deleted, token, jwt, key_jwt] = &secrets;
    // A tollgate key with its last character changed fails the checksum.
    let mut mistyped = plain.clone();
    let last = if mistyped.ends_with('A') { "B" } else { "A" };
    mistyped.replace_range(mistyped.len() - 1.., last);
    let pairs = [("documents", "read")];
    let verify = |c: &'static [u8]| Request::Verify(VerifyRequest::new(c));
    let leak = |s: &str| -> &'static [u8] { Box::leak(s.as_bytes().to_vec().into_boxed_slice()) };
    let documents = QuotaOp { team_id: Box::leak(team.clone().into_boxed_str()), quota: "documents", amount: 1 };
    let reqs: Vec<Request<'static>> = vec![
        verify(leak(plain)),
        verify(leak(counted)),
        verify(leak(token)),
        verify(leak(jwt)),
        verify(leak(counted)),
        // The counted key's uses are gone from here on, by key and by its JWT.
        verify(leak(counted)),
        verify(leak(key_jwt)),
        verify(leak(disabled)),
        verify(leak(deleted)),
        verify(leak(&mistyped)),
        verify(leak(FOREIGN)),
        verify(b"sk_live_not-adopted"),
        verify(b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad"),
        verify(b""),
        verify(&[0xff, 0xfe, b'x']),
        Request::Verify(VerifyRequest::new(leak(plain)).cost(0)),
        Request::Verify(VerifyRequest::new(leak(plain)).permissions(Box::leak(Box::new(pairs)))),
        Request::Verify(VerifyRequest::new(leak(token)).quota("documents", 2)),
        Request::Ping,
        Request::QuotaConsume(documents),
        Request::QuotaRelease(documents),
        verify(leak(plain)),
    ];
    let one = EngineService::new(Arc::new(common::engine(&a, toml)));
    let engine_b = Arc::new(common::engine(&b, toml));
    let batch = EngineService::new(engine_b.clone());
    let now = tollgate::engine::now_us();
    let mut expected = Vec::new();
    let mut expected_tickets = Vec::new();
    for (id, req) in (1..).zip(&reqs) {
        let mark = expected.len();
        let ticket = one.answer(id, *req, now, &mut expected);
        expected_tickets.push((mark, ticket.is_some()));
    }
    let numbered: Vec<(u32, Request<'static>)> = (1..).zip(reqs.iter().copied()).collect();
    let mut got = Vec::new();
    let mut got_tickets = Vec::new();
    batch.answer_batch(&numbered, now, &mut got, &mut |_, mark, ticket| got_tickets.push((mark, ticket.is_some())));
    let answers = frames(&got);
    assert_eq!(answers.len(), reqs.len(), "one answer per request");
    for ((id, answer), (_, expected)) in answers.iter().zip(frames(&expected)) {
        assert_eq!(answer, &expected, "request {id}");
    }
    assert_eq!(got, expected, "the same bytes");
    assert_eq!(got_tickets, expected_tickets);
    // What the batch decided: spot checks that it did exercise each path.
    let code = |i: usize| match &answers[i].1 {
        Response::Verdict(tollgate_protocol::Verdict::Deny(d)) => Some(d.code),
        _ => None,
    };
    assert_eq!(code(0), None, "a key");
    assert_eq!(code(2), None, "a token");
    assert_eq!(code(3), None, "a JWT");
    assert_eq!(code(5), Some(DenyCode::UsageExceeded), "the counted key, exhausted mid-batch");
    assert_eq!(code(6), Some(DenyCode::UsageExceeded), "its JWT too");
    assert_eq!(code(7), Some(DenyCode::Disabled));
    assert_eq!(code(8), Some(DenyCode::NotFound));
    assert_eq!(code(9), Some(DenyCode::Malformed), "a mistyped key is not looked up");
    assert_eq!(code(10), None, "an adopted key");
    assert_eq!(code(11), Some(DenyCode::NotFound), "a foreign shape, looked up as an adopted key could be");
    assert_eq!(code(14), Some(DenyCode::Malformed), "not UTF-8");
    assert_eq!(code(15), Some(DenyCode::Malformed), "cost 0");

    // A lookup made for one credential and given with another is not used.
    let guard = engine_b.index().secrets.guard();
    let looked = engine_b.look_up_all(&[Some(plain)], &guard)[0];
    assert!(looked.is_some());
    let deleted_copy = deleted.clone();
    let req = tollgate::core::verify::VerifyRequest::new(&deleted_copy);
    assert_eq!(engine_b.verify_looked(&req, now, &guard, looked).code(), Some(DenyCode::NotFound));
    let req = tollgate::core::verify::VerifyRequest::new(plain);
    assert!(engine_b.verify_looked(&req, now, &guard, looked).is_allow());
}
