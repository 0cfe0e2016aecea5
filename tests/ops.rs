//! Operations against the real server in this process: `/metrics` moves as
//! verifications happen on every interface, `/readyz` turns ready only once
//! the index is loaded and every listener is bound.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, basic, http, metric, start_http, try_http};
use serde_json::json;
use tollgate::config::Config;
use tollgate::engine::Engine;
use tollgate_protocol::{Client, DenyCode, Verdict, VerifyRequest};

fn admin(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: serde_json::Value,
    want: u16,
) -> serde_json::Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http(addr, method, path, &[("Authorization", &auth)], Some(&body.to_string()));
    assert_eq!(r.status, want, "{method} {path}: {}", r.text);
    r.json()
}

#[test]
fn metrics_move_as_verifications_happen() {
    let d = start_http(|_| {});
    let socket = d.data.parent().unwrap().join("tollgate.sock");
    let team =
        admin(d.addr, "POST", "/v1/teams", json!({"name": "m", "tier": "Pro"}), 201)["id"].as_str().unwrap().to_owned();
    let user = admin(
        d.addr,
        "POST",
        "/v1/users",
        json!({"teamId": team, "username": "metrics-user", "password": "correct horse", "role": "Administrator"}),
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key =
        admin(d.addr, "POST", "/v1/keys", json!({"userId": user, "permissions": {"files": ["read"]}}), 201)["key"]
            .as_str()
            .unwrap()
            .to_owned();
    let login =
        http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &basic("metrics-user", "correct horse"))], None);
    assert_eq!(login.status, 200, "{}", login.text);
    let jwt = login.json()["token"].as_str().unwrap().to_owned();
    let unknown = tollgate::core::secret::generate(&ring::rand::SystemRandom::new(), "tg").plaintext;

    let before = scrape(d.addr);
    assert_eq!(metric(&before, "tollgate_ready"), 1.0);
    assert_eq!(metric(&before, "tollgate_loaded{object=\"keys\"}"), 1.0);
    assert_eq!(metric(&before, "tollgate_loaded{object=\"teams\"}"), 1.0);
    assert_eq!(metric(&before, "tollgate_loaded{object=\"users\"}"), 1.0);
    assert_eq!(metric(&before, "tollgate_loaded{object=\"tokens\"}"), 0.0);
    assert_eq!(metric(&before, "tollgate_socket_connections"), 0.0);
    // The admin writes above were timed.
    assert!(metric(&before, "tollgate_store_write_duration_seconds_count") >= 3.0, "{before}");
    assert_eq!(metric(&before, "tollgate_store_write_failures_total"), 0.0);

    // The socket: 3 allowed keys, 2 unknown, 1 garbage, 2 JWTs (a cache miss, then a hit),
    // 1 key lacking a permission. 9 requests, each its own batch.
    let mut c = Client::connect(&socket).unwrap();
    for _ in 0..3 {
        assert!(c.verify(&VerifyRequest::new(&key)).unwrap().is_allow());
    }
    for _ in 0..2 {
        assert_eq!(deny_code(&c.verify(&VerifyRequest::new(&unknown)).unwrap()), Some(DenyCode::NotFound));
    }
    assert_eq!(deny_code(&c.verify(&VerifyRequest::new("garbage")).unwrap()), Some(DenyCode::Malformed));
    for _ in 0..2 {
        assert!(c.verify(&VerifyRequest::new(&jwt)).unwrap().is_allow());
    }
    let perms = [("files", "write")];
    let v = c.verify(&VerifyRequest::new(&key).permissions(&perms)).unwrap();
    assert_eq!(deny_code(&v), Some(DenyCode::InsufficientPermissions));
    let open = scrape(d.addr);
    assert_eq!(metric(&open, "tollgate_socket_connections"), 1.0, "the open connection is counted");

    // HTTP: /v1/verify once, /auth once.
    let r = http(d.addr, "POST", "/v1/verify", &[], Some(&json!({"credential": key}).to_string()));
    assert_eq!(r.json()["valid"], true);
    let r = http(d.addr, "GET", "/auth", &[("X-API-Key", &key)], None);
    assert_eq!(r.status, 200);
    drop(c);

    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let t = scrape(d.addr);
        if metric(&t, "tollgate_socket_connections") == 0.0 {
            break t;
        }
        assert!(Instant::now() < deadline, "the closed connection is still counted:\n{t}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(delta("tollgate_verifications_total{kind=\"api_key\",verdict=\"ALLOW\"}"), 5.0);
    assert_eq!(delta("tollgate_verifications_total{kind=\"api_key\",verdict=\"NOT_FOUND\"}"), 2.0);
    assert_eq!(delta("tollgate_verifications_total{kind=\"unknown\",verdict=\"MALFORMED\"}"), 1.0);
    assert_eq!(delta("tollgate_verifications_total{kind=\"jwt\",verdict=\"ALLOW\"}"), 2.0);
    assert_eq!(delta("tollgate_verifications_total{kind=\"api_key\",verdict=\"INSUFFICIENT_PERMISSIONS\"}"), 1.0);
    let total_verifications: f64 = after
        .lines()
        .filter(|l| l.starts_with("tollgate_verifications_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total_verifications, 11.0, "nothing else was counted (admin calls are not verifications)");
    assert_eq!(delta("tollgate_request_duration_seconds_count{interface=\"socket\"}"), 9.0);
    assert_eq!(delta("tollgate_request_duration_seconds_count{interface=\"http_verify\"}"), 1.0);
    assert_eq!(delta("tollgate_request_duration_seconds_count{interface=\"auth\"}"), 1.0);
    assert!(delta("tollgate_request_duration_seconds_sum{interface=\"socket\"}") > 0.0);
    assert_eq!(
        metric(&after, "tollgate_request_duration_seconds_bucket{interface=\"socket\",le=\"+Inf\"}"),
        metric(&after, "tollgate_request_duration_seconds_count{interface=\"socket\"}")
    );
    // Two JWT verifications: the second is a cache hit, the first too if the
    // login already verified the token it issued (it does, to audit the login).
    let (hits, misses) = (delta("tollgate_jwt_cache_hits_total"), delta("tollgate_jwt_cache_misses_total"));
    assert_eq!(hits + misses, 2.0, "hits {hits}, misses {misses}");
    assert!(hits >= 1.0, "hits {hits}, misses {misses}");
    assert_eq!(delta("tollgate_socket_connections_accepted_total"), 1.0);
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let r = http(addr, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(tollgate::http::METRICS_CONTENT_TYPE));
    r.text
}

fn deny_code(v: &Verdict<'_>) -> Option<DenyCode> {
    match v {
        Verdict::Allow(_) => None,
        Verdict::Deny(d) => Some(d.code),
    }
}

#[test]
fn metrics_can_require_the_admin_token() {
    let d = start_http(|c| c.metrics.require_admin_token = true);
    assert_eq!(http(d.addr, "GET", "/metrics", &[], None).status, 401);
    assert_eq!(
        http(d.addr, "GET", "/metrics", &[("Authorization", "Bearer wrong-token-0123456789")], None).status,
        401
    );
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http(d.addr, "GET", "/metrics", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200);
    assert!(r.text.contains("# TYPE tollgate_verifications_total counter"));
    // Health and readiness stay open for probes.
    assert_eq!(http(d.addr, "GET", "/readyz", &[], None).status, 200);
}

#[test]
fn readyz_turns_ready_only_after_the_index_is_loaded_and_listeners_are_bound() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = Config {
        data: dir.path().join("data"),
        socket: dir.path().join("tollgate.sock"),
        http: addr.to_string(),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..Config::default()
    };
    config.validate().unwrap();
    let engine = Arc::new(Engine::open(&config).unwrap());
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let (engine, config) = (engine.clone(), config.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            // The index "loads" until the test says so.
            let open = async move {
                let _ = loaded_rx.await;
                Ok(engine)
            };
            rt.block_on(tollgate::server::serve_opening(config, open, async move {
                let _ = stop_rx.await;
            }))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        if let Some(r) = try_http(addr, "GET", "/healthz", &[], None) {
            break r;
        }
        assert!(Instant::now() < deadline, "the HTTP port never answered");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Up, not ready: the process answers, the index is not loaded.
    assert_eq!(health.status, 200);
    for _ in 0..3 {
        let r = http(addr, "GET", "/readyz", &[], None);
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(r.json()["status"], "not_ready");
        assert_eq!(r.json()["checks"]["index"], "loading");
        std::thread::sleep(Duration::from_millis(30));
    }
    let r = http(addr, "POST", "/v1/verify", &[], Some(r#"{"credential":"tg_x"}"#));
    assert_eq!(r.status, 503, "nothing is verified before the index is loaded");
    assert!(!config.socket.exists(), "the socket is bound only after the index is loaded");

    let _ = loaded_tx.send(());
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = http(addr, "GET", "/readyz", &[], None);
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "never turned ready: {}", r.text);
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        ready.json(),
        json!({"status": "ready", "checks": {"index": "loaded", "listeners": "bound", "store": "ok"}})
    );
    assert!(config.socket.exists(), "ready means the socket is bound");
    assert!(Client::connect(&config.socket).unwrap().ping().is_ok());
    assert_eq!(metric(&scrape(addr), "tollgate_ready"), 1.0);
    let _ = stop_tx.send(());
    server.join().unwrap().unwrap();
}

#[test]
fn systemd_hears_ready_after_readyz_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // `start` returns once /readyz is 200; READY=1 was sent by then.
    let d = common::BinDaemon::start_with_env("", &[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1\nSTATUS=ready");
    d.signal("TERM");
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    d.stop_after_signal();
}
