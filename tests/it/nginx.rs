//! nginx `auth_request` end to end: Debian's real nginx, running the documented
//! `examples/nginx/nginx.conf` (only its addresses changed), in front of an
//! in-process tollgate reached over TCP and over the HTTP Unix socket. The
//! upstream is a second nginx server that echoes the identity headers it got.
//!
//! In CI (`CI=true`) a missing nginx fails the test; elsewhere it is skipped
//! with a message (`apt-get install -y nginx-light`).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

use common::free_port;
use tollgate::config::Config;
use tollgate::core::model::{Permissions, RateLimit, Role, Tier, UserStatus};
use tollgate::engine::{Engine, NewKey};

#[test]
fn nginx_auth_request_over_tcp() {
    run(Transport::Tcp);
}

#[test]
fn nginx_auth_request_over_unix_socket() {
    run(Transport::Unix);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Unix,
}

fn run(transport: Transport) {
    let Some(nginx_bin) = common::require_tool(
        "nginx",
        &["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"],
        "apt-get install -y nginx-light",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http_socket = dir.path().join("tollgate-http.sock");

    // The proxy tests' tiers and routes: `GET /files/` needs `files:read`,
    // anything under `/admin/` needs `admin:write`.
    let mut config = Config::parse(&format!("{}{}", common::proxy::TIERS, common::proxy::ROUTES)).unwrap();
    config.data = dir.path().join("data");
    config.socket = dir.path().join("tollgate.sock");
    config.http = "127.0.0.1:0".to_owned();
    if transport == Transport::Unix {
        config.http_socket = Some(http_socket.clone());
    }
    config.validate().unwrap();

    let engine = Arc::new(Engine::open(&config).unwrap());
    let team = engine.create_team("acme", Tier::Pro).unwrap();
    let user = engine.create_user(&team.id, "alice", "correct horse", Role::Reader, UserStatus::Enabled).unwrap();
    let files_read = Permissions(BTreeMap::from([("files".to_owned(), vec!["read".to_owned()])]));
    let key = |rate_limit: Option<RateLimit>, ips: &[&str]| {
        engine
            .create_key(NewKey {
                user_id: user.id.clone(),
                permissions: files_read.clone(),
                rate_limit,
                whitelisted_ips: ips.iter().map(|s| (*s).to_owned()).collect(),
                ..NewKey::default()
            })
            .unwrap()
    };
    let (good, good_secret) = key(None, &[]);
    let (_, limited_secret) = key(Some(RateLimit { max: 2, window_ms: 60_000 }), &[]);
    let (revoked, revoked_secret) = key(None, &[]);
    let (_, local_only_secret) = key(None, &["127.0.0.1"]);
    let (_, elsewhere_secret) = key(None, &["198.51.100.0/24"]);

    let mut server = common::InProcess::start(config.clone(), Some(engine.clone()));
    let tollgate_port = server.addr.port();

    let auth_server = match transport {
        Transport::Tcp => format!("127.0.0.1:{tollgate_port}"),
        Transport::Unix => format!("unix:{}", http_socket.display()),
    };
    let nginx = Nginx::start(&nginx_bin, dir.path(), &auth_server);
    let port = nginx.port;

    // A good key, in each of the three places a credential can be.
    for header in [
        format!("Authorization: Bearer {good_secret}"),
        format!("X-API-Key: {good_secret}"),
        format!("Cookie: theme=dark; tollgate_token={good_secret}"),
    ] {
        let r = get(port, "/files/report.pdf?x=1", &[&header]);
        assert_eq!(r.status, 200, "{header}: {r:?}");
        assert_eq!(r.header("x-upstream"), Some("reached"), "{r:?}");
        assert!(r.text.contains(&format!("subject={}\n", user.id)), "{r:?}");
        assert!(r.text.contains(&format!("team={}\n", team.id)), "{r:?}");
        assert!(r.text.contains("roles=Reader\n"), "{r:?}");
        assert!(r.text.contains(&format!("key={}\n", good.id)), "{r:?}");
        // The client cannot forge identity headers: nginx overwrites them.
    }
    let forged = get(port, "/files/a", &[&format!("X-API-Key: {good_secret}"), "X-Auth-Subject: root"]);
    assert!(forged.text.contains(&format!("subject={}\n", user.id)), "{forged:?}");

    // No credential: 401 with a bare challenge; a bad one: invalid_token.
    let r = get(port, "/files/a", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\""), "{r:?}");
    assert_ne!(r.header("x-upstream"), Some("reached"));
    let r = get(port, "/files/a", &["Authorization: Bearer tg_notarealkey"]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\", error=\"invalid_token\""), "{r:?}");

    // A permission the key lacks: 403, also when the path is dressed up to
    // look like a route that needs none.
    let bearer = format!("Authorization: Bearer {good_secret}");
    let r = get(port, "/admin/users", &[&bearer]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("INSUFFICIENT_PERMISSIONS"), "{r:?}");
    let r = get(port, "/public/../admin/users", &[&bearer]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = get(port, "/elsewhere", &[&bearer]);
    assert_eq!(r.status, 200, "no rule, no permission needed: {r:?}");

    // The client address reaches the key's allowlist through X-Real-IP.
    let r = get(port, "/files/a", &[&format!("X-API-Key: {local_only_secret}")]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(port, "/files/a", &[&format!("X-API-Key: {elsewhere_secret}")]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("IP_NOT_ALLOWED"), "{r:?}");

    // Rate limit of 2: the third request is a 429 with Retry-After.
    let limited = format!("X-API-Key: {limited_secret}");
    for i in 0..2 {
        let r = get(port, "/files/a", &[&limited]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    let r = get(port, "/files/a", &[&limited]);
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("RATE_LIMITED"), "{r:?}");
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
    assert!((1..=60).contains(&retry), "{r:?}");

    // A deleted key stops working on the next request.
    let revoked_hdr = format!("Authorization: Bearer {revoked_secret}");
    assert_eq!(get(port, "/files/a", &[&revoked_hdr]).status, 200);
    engine.delete_key(&revoked.id).unwrap();
    let r = get(port, "/files/a", &[&revoked_hdr]);
    assert_eq!(r.status, 401, "{r:?}");

    drop(nginx);
    server.stop();
    if transport == Transport::Unix {
        assert!(!http_socket.exists(), "the http socket is removed on shutdown");
    }
}

/// A running nginx, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Nginx {
    fn start(bin: &Path, dir: &Path, auth_server: &str) -> Nginx {
        let port = free_port();
        let d = dir.display();
        // Every temp path nginx was built with must point into the temp dir:
        // the compiled-in ones are not writable by a test.
        let version = Command::new(bin).arg("-V").output().unwrap();
        let version = String::from_utf8_lossy(&version.stderr);
        let mut temp_paths = String::new();
        for (flag, directive) in [
            ("client-body", "client_body_temp_path"),
            ("proxy", "proxy_temp_path"),
            ("fastcgi", "fastcgi_temp_path"),
            ("uwsgi", "uwsgi_temp_path"),
            ("scgi", "scgi_temp_path"),
        ] {
            if version.contains(&format!("--http-{flag}-temp-path")) || matches!(flag, "client-body" | "proxy") {
                temp_paths.push_str(&format!("    {directive} {d}/{directive};\n"));
            }
        }
        // As root, workers would switch to `nobody` and lose the temp dir.
        let user = if is_root() { "user root;" } else { "" };
        // The documented configuration itself, pointed at this test's ports and
        // sockets: a change that breaks examples/nginx/nginx.conf fails here.
        let example = include_str!("../../examples/nginx/nginx.conf");
        let mut conf = example.to_owned();
        for (from, to) in [
            ("server 127.0.0.1:7070;", format!("server {auth_server};")),
            ("server 127.0.0.1:8080;", format!("server unix:{d}/upstream.sock;")),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            ("http {\n", format!("http {{\n    access_log off;\n{temp_paths}")),
        ] {
            assert_eq!(conf.matches(from).count(), 1, "examples/nginx/nginx.conf no longer has {from:?} once");
            conf = conf.replacen(from, &to, 1);
        }
        // The upstream the example calls `app`: it shows what it received.
        let end = conf.rfind('}').expect("the http block closes");
        conf.insert_str(
            end,
            &format!(
                r#"
    server {{
        listen unix:{d}/upstream.sock;
        location / {{
            add_header X-Upstream reached;
            return 200 "subject=$http_x_auth_subject\nteam=$http_x_auth_team\nroles=$http_x_auth_roles\nkey=$http_x_auth_key_id\n";
        }}
    }}
"#
            ),
        );
        let conf = format!("{user}\n{conf}");
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let log = dir.join("nginx.stderr");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg("stderr")
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid; error_log stderr;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut n = Nginx { child, port, log };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited with {status}: {}", std::fs::read_to_string(&n.log).unwrap_or_default());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "nginx is not listening on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers. A killed
        // master leaves them running, orphaned, one pair per test.
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("nginx stderr:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// One HTTP/1.1 GET through nginx on a fresh connection, with headers given
/// as `Name: value` lines; the path is sent as given (so `..` reaches nginx
/// unnormalized).
fn get(port: u16, path: &str, headers: &[&str]) -> common::HttpResp {
    let headers: Vec<(&str, &str)> =
        headers.iter().map(|h| h.split_once(':').map_or((*h, ""), |(k, v)| (k, v.trim()))).collect();
    common::http(([127, 0, 0, 1], port).into(), "GET", path, &headers, None)
}
