//! Caddy `forward_auth` end to end: Debian's real caddy (2.6.2), running the
//! documented `examples/caddy/Caddyfile` (only its addresses changed), in
//! front of an in-process tollgate reached over TCP and over its HTTP Unix
//! socket. The upstream is a second Caddy site that echoes what it received.
//!
//! With `CI` set a missing caddy fails the test; elsewhere it is skipped with
//! a banner (`apt-get install -y caddy`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::free_port;
use common::proxy::Fixture;

#[test]
fn caddy_forward_auth_over_tcp() {
    run(false);
}

#[test]
fn caddy_forward_auth_over_unix_socket() {
    run(true);
}

fn run(unix: bool) {
    let Some(bin) = common::require_tool("caddy", &["/usr/bin/caddy"], "apt-get install -y caddy") else { return };
    let fx = Fixture::start();
    let auth = if unix { format!("unix/{}", fx.http_socket.display()) } else { format!("127.0.0.1:{}", fx.port) };
    let caddy = Caddy::start(&bin, fx.dir.path(), &auth);
    let port = caddy.port;
    let (good_id, good) = &fx.good;

    // A good key, in each of the three places a credential can be.
    for header in [
        format!("Authorization: Bearer {good}"),
        format!("X-API-Key: {good}"),
        format!("Cookie: theme=dark; tollgate_token={good}"),
    ] {
        let r = get(port, "/files/report.pdf?x=1", &[&header]);
        assert_eq!(r.status, 200, "{header}: {r:?}");
        assert_eq!(r.header("x-upstream"), Some("reached"), "{r:?}");
        assert!(r.text.contains(&format!("subject={}\n", fx.user)), "{r:?}");
        assert!(r.text.contains(&format!("team={}\n", fx.team)), "{r:?}");
        assert!(r.text.contains("roles=Reader\n"), "{r:?}");
        assert!(r.text.contains(&format!("key={good_id}\n")), "{r:?}");
        assert!(r.text.contains("kind=api_key\n"), "{r:?}");
        // The credential stops at the proxy.
        assert!(r.text.contains("authorization=\n") && r.text.contains("apikey=\n"), "{r:?}");
    }
    // The client cannot forge identity headers: copy_headers replaces them.
    let forged = get(port, "/files/a", &[&format!("X-API-Key: {good}"), "X-Auth-Subject: root", "X-Auth-Team: t"]);
    assert!(forged.text.contains(&format!("subject={}\n", fx.user)), "{forged:?}");
    assert!(forged.text.contains(&format!("team={}\n", fx.team)), "{forged:?}");

    // No credential: 401 with a bare challenge; a bad one: invalid_token.
    let r = get(port, "/files/a", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\""), "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("MISSING_CREDENTIAL"), "{r:?}");
    assert_ne!(r.header("x-upstream"), Some("reached"));
    let r = get(port, "/files/a", &["Authorization: Bearer tg_notarealkey"]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\", error=\"invalid_token\""), "{r:?}");

    // A permission the key lacks: 403, also when the path is dressed up to
    // look like a route that needs none, or the client names another route.
    let bearer = format!("Authorization: Bearer {good}");
    for (path, extra) in [
        ("/admin/users", None),
        ("/public/../admin/users", None),
        ("/admin/users", Some("X-Original-URI: /elsewhere")),
        ("/admin/users", Some("X-Forwarded-Uri: /elsewhere")),
    ] {
        let headers: Vec<&str> = std::iter::once(bearer.as_str()).chain(extra).collect();
        let r = get(port, path, &headers);
        assert_eq!(r.status, 403, "{path} {extra:?}: {r:?}");
        assert_eq!(r.header("x-auth-denial"), Some("INSUFFICIENT_PERMISSIONS"), "{r:?}");
        assert_ne!(r.header("x-upstream"), Some("reached"));
    }
    let r = get(port, "/elsewhere", &[&bearer]);
    assert_eq!(r.status, 200, "no rule, no permission needed: {r:?}");

    // The client address reaches the key's allowlist, and the client cannot
    // claim another one.
    let r = get(port, "/files/a", &[&format!("X-API-Key: {}", fx.local_only)]);
    assert_eq!(r.status, 200, "{r:?}");
    let elsewhere = format!("X-API-Key: {}", fx.elsewhere);
    for spoof in [None, Some("X-Real-IP: 198.51.100.7"), Some("X-Forwarded-For: 198.51.100.7")] {
        let headers: Vec<&str> = std::iter::once(elsewhere.as_str()).chain(spoof).collect();
        let r = get(port, "/files/a", &headers);
        assert_eq!(r.status, 403, "{spoof:?}: {r:?}");
        assert_eq!(r.header("x-auth-denial"), Some("IP_NOT_ALLOWED"), "{r:?}");
    }

    // Rate limit of 2: the third request is a 429 with Retry-After.
    let limited = format!("X-API-Key: {}", fx.limited);
    for i in 0..2 {
        let r = get(port, "/files/a", &[&limited]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.header("x-upstream"), Some("reached"), "{r:?}");
    }
    let r = get(port, "/files/a", &[&limited]);
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("RATE_LIMITED"), "{r:?}");
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
    assert!((1..=60).contains(&retry), "{r:?}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"), "{r:?}");
    assert_ne!(r.header("x-upstream"), Some("reached"));

    // A deleted key stops working on the next request.
    let (revoked_id, revoked) = &fx.revoked;
    let revoked = format!("Authorization: Bearer {revoked}");
    assert_eq!(get(port, "/files/a", &[&revoked]).status, 200);
    fx.engine.delete_key(revoked_id).unwrap();
    let r = get(port, "/files/a", &[&revoked]);
    assert_eq!(r.status, 401, "{r:?}");
    drop(caddy);
}

/// A running caddy, stopped on drop.
struct Caddy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Caddy {
    fn start(bin: &Path, dir: &Path, auth: &str) -> Caddy {
        let port = free_port();
        let app_port = free_port();
        // The documented configuration itself, pointed at this test's ports
        // and sockets: a change that breaks examples/caddy/Caddyfile fails here.
        let mut conf = include_str!("../../examples/caddy/Caddyfile").to_owned();
        for (from, to) in [
            ("http://:80 {", format!("http://:{port} {{\n\tbind 127.0.0.1")),
            ("forward_auth 127.0.0.1:7070 {", format!("forward_auth {auth} {{")),
            ("reverse_proxy 127.0.0.1:8080 {", format!("reverse_proxy 127.0.0.1:{app_port} {{")),
        ] {
            assert_eq!(conf.matches(from).count(), 1, "examples/caddy/Caddyfile no longer has {from:?} once");
            conf = conf.replacen(from, &to, 1);
        }
        // No admin endpoint; and the upstream the example
        // calls 127.0.0.1:8080, which shows what it received.
        let conf = format!(
            "{{\n\tadmin off\n}}\n\n{conf}\n\
             http://:{app_port} {{\n\
             \tbind 127.0.0.1\n\
             \theader X-Upstream reached\n\
             \trespond \"subject={{header.X-Auth-Subject}}\nteam={{header.X-Auth-Team}}\nroles={{header.X-Auth-Roles}}\n\
             key={{header.X-Auth-Key-Id}}\nkind={{header.X-Auth-Kind}}\nauthorization={{header.Authorization}}\n\
             apikey={{header.X-API-Key}}\n\" 200\n}}\n"
        );
        let file = dir.join("Caddyfile");
        std::fs::write(&file, conf).unwrap();
        let log = dir.join("caddy.log");
        let child = Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("xdg-data"))
            .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let mut c = Caddy { child, port, log };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() || TcpStream::connect(("127.0.0.1", app_port)).is_err() {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("caddy exited with {status}:\n{}", std::fs::read_to_string(&c.log).unwrap_or_default());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "caddy is not listening on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("caddy log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// One HTTP/1.1 GET through caddy on a fresh connection, with headers given as
/// `Name: value` lines; the path is sent as given.
fn get(port: u16, path: &str, headers: &[&str]) -> common::HttpResp {
    let headers: Vec<(&str, &str)> =
        headers.iter().map(|h| h.split_once(':').map_or((*h, ""), |(k, v)| (k, v.trim()))).collect();
    common::http(([127, 0, 0, 1], port).into(), "GET", path, &headers, None)
}
