//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use tollgate::config::Config;
use tollgate::core::model::{Role, Tier, UserStatus};
use tollgate::engine::Engine;

/// A config on `dir` from TOML text (data dir and socket filled in).
pub fn config(dir: &Path, toml: &str) -> Config {
    let mut c = Config::parse(toml).expect("test config parses");
    c.data = dir.join("data");
    c.socket = dir.join("tollgate.sock");
    c.validate().expect("test config is valid");
    c
}

/// Opens an engine on `dir`.
pub fn engine(dir: &Path, toml: &str) -> Engine {
    Engine::open(&config(dir, toml)).expect("engine opens")
}

/// Creates a team of `tier` with one enabled Administrator; returns (team, user) ids.
pub fn team_and_user(e: &Engine, tier: Tier, username: &str) -> (String, String) {
    let team = e.create_team(&format!("team of {username}"), tier).unwrap();
    let user =
        e.create_user(&team.id, username, "correct horse battery", Role::Administrator, UserStatus::Enabled).unwrap();
    (team.id, user.id)
}

/// Tier overrides that lift the per-minute limit of the Pro tier, so tests and
/// benches of per-key limits are not capped by the team limit.
pub const PRO_UNLIMITED: &str = r#"
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = 5000
log_retention_days = "unlimited"
"#;

/// The bootstrap admin token the HTTP test daemons run with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The real daemon (`server::serve`) on a temporary data directory and a free
/// port, in a thread with its own runtime; stopped and drained on drop.
pub struct HttpDaemon {
    pub addr: std::net::SocketAddr,
    pub url: String,
    pub data: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Starts an `HttpDaemon` with the admin token set and the Pro tier's
/// per-minute limit lifted (tests make many calls a minute with one team's
/// credentials); `configure` may change anything else before validation.
pub fn start_http(configure: impl FnOnce(&mut Config)) -> HttpDaemon {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    use tollgate::core::model::{Limit, TierLimits, Unlimited};

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = Config {
        data: dir.path().join("data"),
        socket: dir.path().join("tollgate.sock"),
        http: format!("127.0.0.1:{port}"),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..Config::default()
    };
    c.tiers.pro =
        Some(TierLimits { requests_per_minute: Limit::Unlimited(Unlimited::Unlimited), ..TierLimits::DEFAULTS[3] });
    configure(&mut c);
    c.validate().unwrap();
    let data = c.data.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(tollgate::server::serve(c, async move {
            let _ = rx.await;
        }))
        .unwrap();
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = HttpDaemon { addr, url: format!("http://{addr}"), data, stop: Some(tx), thread: Some(thread), _dir: dir };
    // Ready, not just up: the HTTP port answers (503) while the index loads.
    let healthy = || -> Option<bool> {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out.starts_with("HTTP/1.1 200"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while healthy() != Some(true) {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

impl Drop for HttpDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
