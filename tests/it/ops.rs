//! Operations against the real server in this process: `/metrics` moves as
//! verifications happen on every interface, `/readyz` turns ready only once
//! the index is loaded and every listener is bound.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, basic, http, metric, start_http};
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
    let unknown = tollgate::core::secret::generate(&aws_lc_rs::rand::SystemRandom::new(), "tg").plaintext;

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
    // Bound here and handed over: the port answers as soon as the daemon
    // accepts, with nothing to wait for before the first request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
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
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = {
        let (engine, config) = (engine.clone(), config.clone());
        let handover = tollgate::server::Handover { http: Some(listener), ready: Some(ready_tx) };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            // The index "loads" until the test says so.
            let open = async move {
                let _ = loaded_rx.await;
                Ok(engine)
            };
            let stop = async move {
                let _ = stop_rx.await;
            };
            rt.block_on(tollgate::server::serve_handed(config, open, stop, handover))
        })
    };
    let health = http(addr, "GET", "/healthz", &[], None);
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
    let told = ready_rx.blocking_recv().expect("the daemon says it is ready");
    assert_eq!(told.http, addr);
    let ready = http(addr, "GET", "/readyz", &[], None);
    assert_eq!(ready.status, 200, "{}", ready.text);
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
    // The harness listens on `NOTIFY_SOCKET` and returns after `READY=1`.
    let mut d = common::BinDaemon::start("", &[]);
    assert_eq!(d.ready, format!("READY=1\nSTATUS=ready, HTTP on {}", d.addr));
    assert_eq!(common::http(d.addr, "GET", "/readyz", &[], None).status, 200, "ready means /readyz is 200");
    d.signal("TERM");
    assert_eq!(d.next_notification(), "STOPPING=1");
    d.stop_after_signal();
}

/// `X-Request-Id`: a well-formed one is kept and echoed, anything else is
/// replaced by one the server makes; an admin call's audit entry carries it
/// (`requestId` in `GET /v1/logs`).
#[test]
fn request_ids_are_kept_or_made_echoed_and_audited() {
    let d = start_http(|_| {});
    let kept = "client-req_42.A";
    let r = http(d.addr, "GET", "/healthz", &[("X-Request-Id", kept)], None);
    assert_eq!(r.header("x-request-id"), Some(kept));
    let longest = "a".repeat(64);
    assert_eq!(
        http(d.addr, "GET", "/healthz", &[("X-Request-Id", &longest)], None).header("x-request-id"),
        Some(&*longest)
    );
    let made = http(d.addr, "GET", "/healthz", &[], None).header("x-request-id").unwrap().to_owned();
    assert!(!made.is_empty() && made.len() <= 64, "{made}");
    for bad in ["has space", "semi;colon", "quote\"", &"a".repeat(65), "é"] {
        let r = http(d.addr, "GET", "/healthz", &[("X-Request-Id", bad)], None);
        let id = r.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{id}");
    }
    let r = http(d.addr, "GET", "/healthz", &[("X-Request-Id", "")], None);
    assert!(!r.header("x-request-id").unwrap().is_empty(), "an empty id is replaced");
    // Ids made here differ.
    let other = http(d.addr, "GET", "/healthz", &[], None).header("x-request-id").unwrap().to_owned();
    assert_ne!(made, other);

    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = json!({"name": "rid", "tier": "Pro"}).to_string();
    let r =
        http(d.addr, "POST", "/v1/teams", &[("Authorization", &auth), ("X-Request-Id", "create-team-1")], Some(&body));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some("create-team-1"));
    let team = r.json()["id"].as_str().unwrap().to_owned();
    let r = http(d.addr, "GET", &format!("/v1/teams/{team}"), &[("Authorization", &auth)], None);
    let made_for_get = r.header("x-request-id").unwrap().to_owned();
    let logs = http(d.addr, "GET", &format!("/v1/logs?teamId={team}"), &[("Authorization", &auth)], None);
    assert_eq!(logs.status, 200, "{}", logs.text);
    let items = logs.json()["items"].as_array().unwrap().clone();
    let find =
        |action: &str| items.iter().find(|i| i["action"] == action).unwrap_or_else(|| panic!("{items:?}")).clone();
    assert_eq!(find("CreateTeam")["requestId"], "create-team-1");
    assert_eq!(find("GetTeam")["requestId"], made_for_get.as_str());
}

/// Admin-API requests by route template and status, failed logins, process
/// metrics.
#[test]
fn admin_requests_logins_and_the_process_are_measured() {
    let d = start_http(|_| {});
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let team = admin(d.addr, "POST", "/v1/teams", json!({"name": "adm", "tier": "Pro"}), 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(
        d.addr,
        "POST",
        "/v1/users",
        json!({"teamId": team, "username": "ops-user", "password": "correct horse", "role": "Administrator"}),
        201,
    );
    for _ in 0..2 {
        assert_eq!(http(d.addr, "GET", "/v1/keys/key_nope", &[("Authorization", &auth)], None).status, 404);
    }
    assert_eq!(http(d.addr, "GET", "/v1/keys/key_x", &[], None).status, 401);
    assert_eq!(http(d.addr, "GET", "/v1/no-such-route", &[], None).status, 404);
    let login = |user: &str, pass: &str| {
        http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &basic(user, pass))], None).status
    };
    assert_eq!(login("ops-user", "wrong password"), 401);
    assert_eq!(login("nobody", "wrong password"), 401);
    assert_eq!(login("ops-user", "correct horse"), 200);
    assert_eq!(http(d.addr, "POST", "/v1/auth/token", &[], None).status, 400);

    let m = scrape(d.addr);
    let count = |labels: &str| metric(&m, &format!("tollgate_admin_request_duration_seconds_count{{{labels}}}"));
    assert_eq!(count(r#"method="POST",route="/v1/teams",status="201""#), 1.0);
    assert_eq!(count(r#"method="POST",route="/v1/users",status="201""#), 1.0);
    assert_eq!(count(r#"method="GET",route="/v1/keys/{id}",status="404""#), 2.0);
    assert_eq!(count(r#"method="GET",route="/v1/keys/{id}",status="401""#), 1.0);
    assert_eq!(count(r#"method="any",route="unmatched",status="404""#), 1.0);
    assert_eq!(count(r#"method="POST",route="/v1/auth/token",status="401""#), 2.0);
    assert_eq!(
        metric(
            &m,
            r#"tollgate_admin_request_duration_seconds_bucket{method="GET",route="/v1/keys/{id}",status="404",le="+Inf"}"#
        ),
        2.0
    );
    assert!(!m.contains("key_nope") && !m.contains("no-such-route"), "no raw path is a label");
    assert!(
        !m.lines().any(|l| l.starts_with("tollgate_admin_request_duration_seconds_count") && l.contains("/healthz")),
        "only admin routes"
    );
    assert_eq!(metric(&m, r#"tollgate_login_failures_total{reason="invalid_credentials"}"#), 2.0);
    assert_eq!(metric(&m, r#"tollgate_login_failures_total{reason="bad_request"}"#), 1.0);
    assert_eq!(metric(&m, r#"tollgate_login_failures_total{reason="rate_limited"}"#), 0.0);
    // No reload yet: the start counts as a good one.
    assert_eq!(metric(&m, "tollgate_last_reload_success"), 1.0);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = metric(&m, "process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 24.0 * 3600.0, "{started} vs {now}");
    assert!(metric(&m, "process_resident_memory_bytes") > 1e6);
    assert!(metric(&m, "process_cpu_seconds_total") > 0.0);
    assert!(metric(&m, "process_open_fds") >= 3.0);
    assert!(metric(&m, "process_max_fds") >= metric(&m, "process_open_fds"));
}

/// `promtool check metrics` (Debian's `prometheus` package) accepts the
/// exposition, every series in it present. In CI (`CI=true`) a missing
/// promtool fails the test; elsewhere it is skipped, saying so.
#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = common::require_tool("promtool", &["/usr/bin/promtool"], "apt-get install -y prometheus")
    else {
        return;
    };
    let d = start_http(|_| {});
    // Something in every family: admin calls, a failed login, verifications.
    admin(d.addr, "POST", "/v1/teams", json!({"name": "p", "tier": "Pro"}), 201);
    assert_eq!(http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &basic("x", "y"))], None).status, 401);
    assert_eq!(http(d.addr, "GET", "/auth", &[("X-API-Key", "tg_nope")], None).status, 401);
    let r = http(d.addr, "POST", "/v1/verify", &[], Some(r#"{"credential":"tg_nope"}"#));
    assert_eq!(r.status, 200);
    let text = scrape(d.addr);
    assert!(text.contains("tollgate_admin_request_duration_seconds_bucket{"), "{text}");
    assert!(text.contains("process_cpu_seconds_total"), "{text}");
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A body that ends before its `Content-Length` (the client closed early) is
/// a 400; one over the limit, declared or sent, a 413.
#[test]
fn short_bodies_are_400_and_long_ones_413() {
    use std::io::{Read, Write};
    let d = start_http(|_| {});
    let send = |head: &str, body: &[u8]| -> String {
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        // The daemon may answer (and close) before the whole body is sent:
        // what counts is the answer read below.
        if s.write_all(body).is_ok() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let head = |path: &str, len: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    for path in ["/v1/verify", "/v1/teams"] {
        let out = send(&head(path, "100"), br#"{"credential":"#);
        assert!(out.starts_with("HTTP/1.1 400"), "{path}, short body: {out}");
        assert!(out.contains("incomplete_body"), "{out}");
        let out = send(&head(path, "1000000"), b"{}");
        assert!(out.starts_with("HTTP/1.1 413"), "{path}, declared too long: {out}");
        let big = vec![b' '; tollgate::http::MAX_BODY_BYTES + 10];
        let out = send(&head(path, &big.len().to_string()), &big);
        assert!(out.starts_with("HTTP/1.1 413"), "{path}, sent and declared too long: {out}");
        let chunked = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut body = format!("{:x}\r\n", big.len()).into_bytes();
        body.extend_from_slice(&big);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let out = send(&chunked, &body);
        assert!(out.starts_with("HTTP/1.1 413"), "{path}, chunked too long: {out}");
    }
    // The daemon is fine afterwards.
    assert_eq!(http(d.addr, "GET", "/healthz", &[], None).status, 200);
}
