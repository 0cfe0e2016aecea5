//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use tollgate::config::Config;
use tollgate::core::model::{Role, Tier, UserStatus};
use tollgate::engine::Engine;

pub mod proxy;

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

/// Tier overrides that lift the per-minute limit of the Pro tier, so tests of
/// per-key limits are not capped by the team limit (the one file the benches
/// and `tollgate bench` use too).
pub const PRO_UNLIMITED: &str = include_str!("../../../benches/fixtures/pro_unlimited.toml");

/// The bootstrap admin token the HTTP test daemons run with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The one daemon harness's in-process half: `server::serve_on` (or
/// `serve_handed` with an engine the test keeps) in a thread with its own
/// runtime. The harness binds the HTTP listener itself (`config.http`, port 0
/// for one the kernel picks) and hands it over, so the port cannot be taken
/// between bind and use, and waits for the daemon's readiness signal (sent
/// when `/readyz` turns 200 and systemd would hear `READY=1`), so nothing
/// polls. The child-process half is [`BinDaemon`].
pub struct InProcess {
    /// Where the HTTP API listens.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Starts the daemon on `config` (its `http` is bound here) with `engine`,
    /// or the engine `serve` opens from `config.data`; returns once it is
    /// ready, panicking with the daemon's error if it fails to start.
    pub fn start(mut config: Config, engine: Option<std::sync::Arc<Engine>>) -> InProcess {
        let listener = std::net::TcpListener::bind(config.http_addr().expect("test config has an http address"))
            .expect("the harness binds the HTTP listener");
        let addr = listener.local_addr().unwrap();
        config.http = addr.to_string();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let handover = tollgate::server::Handover { http: Some(listener), ready: Some(ready_tx) };
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            match engine {
                Some(e) => {
                    rt.block_on(tollgate::server::serve_handed(config, async move { Ok(e) }, shutdown, handover))
                }
                None => rt.block_on(tollgate::server::serve_on(config, shutdown, handover)),
            }
        });
        let mut d = InProcess { addr, stop: Some(stop_tx), thread: Some(thread) };
        if let Err(closed) = ready_rx.blocking_recv() {
            let why = match d.thread.take().map(std::thread::JoinHandle::join) {
                Some(Ok(Err(e))) => format!("{e:#}"),
                Some(Err(_)) => "the daemon thread panicked".to_owned(),
                _ => closed.to_string(),
            };
            panic!("the daemon did not start: {why}");
        }
        d
    }

    /// Stops the daemon (drained, flushed); panics if it did not stop cleanly.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the daemon thread panicked").expect("the daemon stops cleanly");
        }
    }

    /// Whether [`InProcess::stop`] has run.
    pub fn stopped(&self) -> bool {
        self.thread.is_none()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The real daemon (`server::serve_on`) on a temporary data directory and a
/// port the kernel picked, in this process ([`InProcess`]); stopped and
/// drained on drop.
pub struct HttpDaemon {
    pub addr: std::net::SocketAddr,
    pub url: String,
    pub data: std::path::PathBuf,
    daemon: InProcess,
    _dir: tempfile::TempDir,
}

/// Starts an `HttpDaemon` with the admin token set and the Pro tier's
/// per-minute limit lifted (tests make many calls a minute with one team's
/// credentials); `configure` may change anything else before validation.
/// Returns once the daemon is ready. With TLS configured `url` is still
/// `http://`: the caller picks its URL.
pub fn start_http(configure: impl FnOnce(&mut Config)) -> HttpDaemon {
    use tollgate::core::model::{Limit, TierLimits, Unlimited};

    let dir = tempfile::tempdir().unwrap();
    let mut c = Config {
        data: dir.path().join("data"),
        socket: dir.path().join("tollgate.sock"),
        http: "127.0.0.1:0".to_owned(),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..Config::default()
    };
    c.tiers.pro =
        Some(TierLimits { requests_per_minute: Limit::Unlimited(Unlimited::Unlimited), ..TierLimits::DEFAULTS[3] });
    configure(&mut c);
    c.validate().unwrap();
    let data = c.data.clone();
    let daemon = InProcess::start(c, None);
    let addr = daemon.addr;
    HttpDaemon { addr, url: format!("http://{addr}"), data, daemon, _dir: dir }
}

impl HttpDaemon {
    /// Stops the daemon (drained, flushed) and keeps its data directory until
    /// this drops, to look at what it stored.
    pub fn stop_and_keep_data(&mut self) {
        self.daemon.stop();
    }
}

/// An HTTP answer read by [`http`].
#[derive(Debug)]
pub struct HttpResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl HttpResp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); `None`
/// if nothing answers.
pub fn try_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<HttpResp> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "POST" | "PATCH" | "PUT") {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = buf[split + 4..].to_vec();
    if let Some((_, len)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        body.truncate(len.parse().ok()?);
    }
    Some(HttpResp { status, headers, text: String::from_utf8_lossy(&body).into_owned() })
}

/// Like [`try_http`], panicking if nothing answers.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResp {
    try_http(addr, method, path, headers, body).unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

/// `Authorization: Basic` for `user:pass`.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// Whether any file under `dir` (recursively) holds `needle` in its raw bytes;
/// returns the first such file.
pub fn file_containing(dir: &Path, needle: &[u8]) -> Option<std::path::PathBuf> {
    files_under(dir).into_iter().find(|(_, b)| b.windows(needle.len()).any(|w| w == needle)).map(|(p, _)| p)
}

/// Every file under `dir`, recursively, with its raw bytes.
pub fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// A free TCP port on localhost.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The one daemon harness's child-process half: the real `tollgate`
/// executable serving a config file in a temporary directory, with its stderr
/// and stdout captured in `<dir>/daemon.log`. Its `http` is `127.0.0.1:0`:
/// the daemon binds a port the kernel picks (nothing can take it between bind
/// and use) and tells the harness which, and that it is ready, the way it
/// tells systemd: `READY=1` on the `NOTIFY_SOCKET` datagram socket the harness
/// listens on. Killed (SIGKILL) on drop if still running.
pub struct BinDaemon {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub socket: std::path::PathBuf,
    pub log: std::path::PathBuf,
    /// The harness's end of `NOTIFY_SOCKET`: what the daemon tells systemd
    /// after `READY=1` (`STOPPING=1` on SIGTERM) arrives here.
    pub notify: Notify,
    /// The `READY=1` message, whole.
    pub ready: String,
    header: String,
}

/// How long the harness waits for a child daemon's `READY=1` or another
/// notification before failing the test (a failure path only: the wait ends
/// with the message, not by polling).
pub const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The harness's end of a child daemon's `NOTIFY_SOCKET` (the systemd
/// notification protocol): a datagram socket in a test's directory. The
/// daemon sends `READY=1` with the HTTP address it bound once it is ready, so
/// the harness blocks on one receive instead of polling.
pub struct Notify {
    sock: std::os::unix::net::UnixDatagram,
    /// What to set `NOTIFY_SOCKET` to.
    pub path: std::path::PathBuf,
}

impl Notify {
    /// Binds `<dir>/notify.sock`.
    pub fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(NOTIFY_WAIT)).unwrap();
        Notify { sock, path }
    }

    /// The next message; an error when none came within [`NOTIFY_WAIT`].
    pub fn recv(&self) -> std::io::Result<String> {
        let mut buf = [0u8; 1024];
        let n = self.sock.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits for `child`'s `READY=1`; returns the message and the HTTP address
    /// in it. Panics (with `log()`) when something else or nothing comes.
    pub fn ready(&self, child: &mut std::process::Child, log: impl Fn() -> String) -> (String, std::net::SocketAddr) {
        let msg = match self.recv() {
            Ok(m) => m,
            Err(e) => {
                let exited = child.try_wait().ok().flatten();
                panic!("no READY=1 from tollgate ({e}; exited: {exited:?}):\n{}", log());
            }
        };
        assert!(msg.starts_with("READY=1\n"), "tollgate's first notification is not READY=1: {msg:?}\n{}", log());
        let addr = msg
            .split_once("HTTP on ")
            .and_then(|(_, a)| a.lines().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP address in READY=1: {msg:?}"));
        (msg, addr)
    }
}

impl BinDaemon {
    /// Writes `toml` (after an `http`, `data` and `socket` header it fills in)
    /// as `<dir>/tollgate.toml` and starts `tollgate serve --config` on it with
    /// the test admin token and `extra_args`; returns once `/readyz` is 200.
    pub fn start(toml: &str, extra_args: &[&str]) -> BinDaemon {
        BinDaemon::start_with_env(toml, extra_args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(toml: &str, extra_args: &[&str], env: &[(&str, &str)]) -> BinDaemon {
        BinDaemon::launch(toml, extra_args, env, Some(ADMIN_TOKEN))
    }

    /// Starts the daemon with no admin token in its environment (whatever
    /// this process's holds) nor in its configuration: it generates one.
    pub fn start_generating_admin_token(toml: &str) -> BinDaemon {
        BinDaemon::launch(toml, &[], &[], None)
    }

    fn launch(toml: &str, extra_args: &[&str], env: &[(&str, &str)], admin_token: Option<&str>) -> BinDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tollgate.sock");
        let config = dir.path().join("tollgate.toml");
        let log = dir.path().join("daemon.log");
        let notify = Notify::bind(dir.path());
        let d = dir.path().display();
        let header = format!("http = \"127.0.0.1:0\"\ndata = \"{d}/data\"\nsocket = \"{d}/tollgate.sock\"\n");
        std::fs::write(&config, format!("{header}{toml}")).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let (child, ready, addr) =
            BinDaemon::spawn(dir.path(), &config, &log, out, &notify, extra_args, env, admin_token);
        BinDaemon { child, addr, dir, config, socket, log, notify, ready, header }
    }

    /// Runs `tollgate serve --config` in `dir`, output to `out`, and waits
    /// for its `READY=1`.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        dir: &Path,
        config: &Path,
        log: &Path,
        out: std::fs::File,
        notify: &Notify,
        extra_args: &[&str],
        env: &[(&str, &str)],
        admin_token: Option<&str>,
    ) -> (std::process::Child, String, std::net::SocketAddr) {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
        match admin_token {
            Some(t) => command.env("TOLLGATE_ADMIN_TOKEN", t),
            None => command.env_remove("TOLLGATE_ADMIN_TOKEN"),
        };
        let mut child = command
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("NOTIFY_SOCKET", &notify.path)
            .envs(env.iter().copied())
            .args(["serve", "--config"])
            .arg(config)
            .args(extra_args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let (ready, addr) = notify.ready(&mut child, || std::fs::read_to_string(log).unwrap_or_default());
        (child, ready, addr)
    }

    /// SIGTERM, then waits for a clean exit, keeping the directory (data,
    /// configuration, log) for [`BinDaemon::start_again`].
    pub fn halt(&mut self) {
        self.signal("TERM");
        let stopping = self.next_notification();
        assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "tollgate exited with {status}:\n{}", self.log_text());
    }

    /// Starts the daemon again on its directory (after [`BinDaemon::halt`]
    /// or a kill) with the test admin token, `extra_args` and `env`; its
    /// output is appended to the same log. Returns once it is ready.
    pub fn start_again(&mut self, extra_args: &[&str], env: &[(&str, &str)]) {
        let out = std::fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        let (child, ready, addr) = BinDaemon::spawn(
            self.dir.path(),
            &self.config,
            &self.log,
            out,
            &self.notify,
            extra_args,
            env,
            Some(ADMIN_TOKEN),
        );
        (self.child, self.ready, self.addr) = (child, ready, addr);
    }

    /// The next message the daemon sends to `NOTIFY_SOCKET`; panics, with the
    /// log, when none comes within [`NOTIFY_WAIT`].
    pub fn next_notification(&mut self) -> String {
        self.notify.recv().unwrap_or_else(|e| panic!("no notification from tollgate ({e}):\n{}", self.log_text()))
    }

    /// Rewrites the config file with the same header as `start`.
    pub fn rewrite_config(&self, toml: &str) {
        std::fs::write(&self.config, format!("{}{toml}", self.header)).unwrap();
    }

    /// Sends a signal (`HUP`, `TERM`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Everything the daemon wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `count` times or more.
    pub fn wait_for_log(&self, needle: &str, count: usize) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= count {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "{needle:?} not logged {count} times:\n{text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A JSON call with a bearer credential; asserts the status.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        cred: &str,
        body: Option<serde_json::Value>,
        want: u16,
    ) -> serde_json::Value {
        let auth = format!("Bearer {cred}");
        let body = body.map(|b| b.to_string());
        let r = http(self.addr, method, path, &[("Authorization", &auth)], body.as_deref());
        assert_eq!(r.status, want, "{method} {path}: {}", r.text);
        r.json()
    }

    /// The metrics text.
    pub fn metrics(&self) -> String {
        let r = http(self.addr, "GET", "/metrics", &[], None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }

    /// SIGTERM, then waits for the exit; returns the whole log.
    pub fn stop(self) -> String {
        self.signal("TERM");
        self.stop_after_signal()
    }

    /// Waits for the exit of a daemon already told to stop; returns the whole log.
    pub fn stop_after_signal(mut self) -> String {
        let status = self.child.wait().unwrap();
        let log = self.log_text();
        assert!(status.success(), "tollgate exited with {status}:\n{log}");
        log
    }
}

impl Drop for BinDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of one series (`name{labels}`) in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Whether this run is CI's: `CI` set to anything but empty, `0` or `false`
/// (`.ci/run` sets `CI=true`). A test whose tool is missing fails in CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The first of `candidates` that is a file, else `name` found on `PATH`;
/// `None` (after a banner on the real stderr) when it is missing outside CI.
/// In CI a missing tool fails the test with `install` in the message.
pub fn require_tool(name: &str, candidates: &[&str], install: &str) -> Option<std::path::PathBuf> {
    let found = candidates.iter().map(std::path::PathBuf::from).find(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        missing(&format!("{name} is not installed"), install);
    }
    found
}

/// A test's precondition is not met (`what`, fixed by `install`): fails the
/// test in CI, and elsewhere says so on the real stderr, where a passing
/// test's output is not hidden, before the caller returns.
pub fn missing(what: &str, install: &str) {
    use std::io::Write as _;
    assert!(!in_ci(), "{what}, and CI is set: install it ({install}; see .ci/run)");
    let banner = "=".repeat(72);
    let _ = writeln!(std::io::stderr(), "\n{banner}\n  SKIPPED: {what} ({install})\n{banner}\n");
}

/// The daemon on a temp dir, in this process ([`InProcess`]), with an
/// engine the test keeps to create credentials, for the socket clients'
/// suites (Python, Node).
pub struct SocketDaemon {
    pub engine: std::sync::Arc<Engine>,
    pub socket: std::path::PathBuf,
    daemon: InProcess,
    _dir: tempfile::TempDir,
}

impl SocketDaemon {
    /// Starts it on `toml`; returns once it is ready (the socket bound, with its mode).
    pub fn start(toml: &str) -> SocketDaemon {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), toml);
        config.http = "127.0.0.1:0".to_owned();
        let engine = std::sync::Arc::new(Engine::open(&config).expect("engine opens"));
        let socket = config.socket.clone();
        let daemon = InProcess::start(config, Some(engine.clone()));
        SocketDaemon { engine, socket, daemon, _dir: dir }
    }

    /// A key of `user` with `new`'s other settings: (key id, secret).
    pub fn key(&self, user: &str, new: tollgate::engine::NewKey) -> (String, String) {
        let (key, secret) =
            self.engine.create_key(tollgate::engine::NewKey { user_id: user.to_owned(), ..new }).expect("key created");
        (key.id, secret)
    }

    /// One credential of `user` for each way a known credential is refused:
    /// a disabled key, an expired key, a deleted key, a revoked access token
    /// (secrets), for the clients' deny-code fixtures.
    pub fn dead_credentials(&self, user: &str) -> DeadCredentials {
        use tollgate::engine::{KeyUpdate, NewKey};
        let e = &self.engine;
        let (disabled_id, disabled) = self.key(user, NewKey::default());
        e.update_key(&disabled_id, KeyUpdate { enabled: Some(false), ..Default::default() }).unwrap();
        let (expired_id, expired) = self.key(user, NewKey::default());
        e.update_key(&expired_id, KeyUpdate { expires_at: Some(Some(1)), ..Default::default() }).unwrap();
        let (deleted_id, deleted) = self.key(user, NewKey::default());
        e.delete_key(&deleted_id).unwrap();
        let (revoked, revoked_token) = e.create_token(user, "revoked", "personal", None).unwrap();
        e.revoke_token(&revoked.id).unwrap();
        DeadCredentials { disabled, expired, deleted, revoked_token }
    }

    /// Whether [`SocketDaemon::stop`] has run.
    pub fn stopped(&self) -> bool {
        self.daemon.stopped()
    }

    /// Stops the daemon and waits for its thread.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

/// Secrets of refused credentials: see [`SocketDaemon::dead_credentials`].
pub struct DeadCredentials {
    pub disabled: String,
    pub expired: String,
    pub deleted: String,
    pub revoked_token: String,
}

/// The `tollgate-admin` executable, as the cargo running these tests builds
/// it for `cargo test --workspace` (README's test command): asked once per
/// test process with `--no-run`, which is a no-op when this run is that
/// command (a narrower `cargo build` would rebuild with other features).
pub fn admin_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = std::process::Command::new(cargo);
        // What cargo set for this test process (its package's name, manifest
        // directory …) is not the outer cargo's environment: build scripts
        // that watch those variables (ring's) would rerun, and so would
        // everything after them, in this build and the next outer one.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let set_for_tests = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_CFG_"]
                .iter()
                .any(|p| k.starts_with(p))
                || ["OUT_DIR", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&k.as_ref());
            if set_for_tests {
                c.env_remove(k.as_ref());
            }
        }
        let out = c
            .args(["test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "cargo test --workspace --no-run failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "tollgate-admin")
            .filter(|m| m["target"]["kind"][0] == "bin" && m["profile"]["test"] == false)
            .find_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
            .expect("cargo reported no tollgate-admin executable")
    })
}

/// Copies a directory tree as it is at this moment.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
