//! The HTTP listeners' connection hygiene and HTTPS, against the real daemon:
//! header, body and idle timeouts, the connection cap under a low open-file
//! limit, the bounded drain on SIGTERM, TLS (handshake, certificate reload,
//! client certificates, plain HTTP refused), the non-loopback rule, and the
//! modes of the files at rest.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_http, try_http};

/// The `tollgate` binary on a temporary directory, its output in `daemon.log`.
struct Proc {
    child: Child,
    dir: tempfile::TempDir,
    /// Where the HTTP API listens: known once [`Proc::ready`] returns.
    addr: SocketAddr,
    log: PathBuf,
    notify: common::Notify,
}

impl Proc {
    /// Writes a config (`http`, `data`, `socket` filled in, then `toml`) and
    /// runs `[wrapper...] tollgate serve --config FILE args...`.
    fn spawn(toml: &str, args: &[&str], wrapper: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        Proc::spawn_in(dir, toml, args, wrapper)
    }

    fn spawn_in(dir: tempfile::TempDir, toml: &str, args: &[&str], wrapper: &[&str]) -> Proc {
        // Port 0: the daemon binds one the kernel picks and says which in READY=1.
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let d = dir.path().display();
        let config = dir.path().join("tollgate.toml");
        std::fs::write(&config, format!("http = \"{addr}\"\ndata = \"{d}/data\"\nsocket = \"{d}/t.sock\"\n{toml}"))
            .unwrap();
        let notify = common::Notify::bind(dir.path());
        let log = dir.path().join("daemon.log");
        let out = std::fs::File::create(&log).unwrap();
        let bin = env!("CARGO_BIN_EXE_tollgate");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin);
                c
            }
        };
        let child = cmd
            .current_dir(dir.path())
            .env("TOLLGATE_ADMIN_TOKEN", common::ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &notify.path)
            .args(["serve", "--config"])
            .arg(&config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, dir, addr, log, notify }
    }

    /// Waits for the daemon's READY=1 (every listener bound, the engine
    /// open; the address it bound in it); returns the log so far.
    fn ready(&mut self) -> String {
        let log = self.log.clone();
        let (_, addr) = self.notify.ready(&mut self.child, || std::fs::read_to_string(&log).unwrap_or_default());
        self.addr = addr;
        self.log_text()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `count` times (the daemon logs
    /// "tollgate ready" once every listener is bound); panics if it exits.
    fn wait_for_log(&mut self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= count {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tollgate exited with {status} before logging {needle:?}:\n{text}");
            }
            assert!(Instant::now() < deadline, "{needle:?} not logged {count} times:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the exit (at most `within`); returns the time it took.
    fn wait_exit(&mut self, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "tollgate exited with {status}:\n{}", self.log_text());
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "tollgate still running after {within:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads until the peer closes (or `limit` passes); the bytes and whether it closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

#[test]
fn half_a_header_a_half_body_and_an_idle_connection_are_closed_on_time() {
    let d = start_http(|c| {
        c.http_server.header_read_timeout_ms = 300;
        c.http_server.body_timeout_ms = 400;
        c.http_server.idle_timeout_ms = 1500;
    });

    // Half a header: closed after the header timeout, not before.
    let start = Instant::now();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow:").unwrap();
    let (bytes, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(closed, "a half-sent head was kept open");
    assert!(bytes.is_empty() || !String::from_utf8_lossy(&bytes).contains("200 OK"));
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "closed after {took:?}");

    // A connection that sends nothing at all: the same bound.
    let start = Instant::now();
    let mut s = TcpStream::connect(d.addr).unwrap();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(closed && start.elapsed() < Duration::from_secs(3), "a silent connection was kept open");

    // Half a body: the head arrived, the body stalls; closed after the body timeout.
    let start = Instant::now();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(
        b"POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"cre",
    )
    .unwrap();
    let (bytes, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(closed, "a stalled body was kept open");
    assert!(!String::from_utf8_lossy(&bytes).contains("200 OK"));
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "closed after {took:?}");

    // A keep-alive connection between requests lives past the header timeout
    // (it is idle, not reading a head) and is closed by the idle timeout.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(800))).unwrap();
    let r = s.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "an idle keep-alive connection was closed by the header timeout: {r:?}"
    );
    // Still usable.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_start2 = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    let idle = idle_start2.elapsed();
    assert!(closed, "an idle keep-alive connection was never closed");
    assert!(idle >= Duration::from_millis(1400) && idle < Duration::from_secs(4), "idle for {idle:?}");
    assert!(idle_start.elapsed() > idle);
}

#[test]
fn a_small_connection_cap_closes_idle_connections_for_new_ones() {
    let d = start_http(|c| c.http_server.max_connections = 4);
    let idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(d.addr).unwrap()).collect();
    for _ in 0..5 {
        let r = try_http(d.addr, "GET", "/healthz", &[], None).expect("/healthz answers beyond the cap");
        assert_eq!(r.status, 200);
    }
    drop(idle);
}

/// A child with an open-file limit of 256 and 300 idle connections still
/// answers `/healthz` at once: the cap is lowered to fit the limit, and the
/// longest-idle connections make room for new ones.
#[test]
fn three_hundred_idle_connections_under_an_fd_limit_of_256_do_not_stop_healthz() {
    let mut p = Proc::spawn("", &[], &["prlimit", "--nofile=256:256", "--"]);
    let log = p.ready();
    assert!(log.contains("lowered to fit the open-file limit"), "{log}");
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(p.addr).unwrap());
    }
    for _ in 0..5 {
        let start = Instant::now();
        let r = try_http(p.addr, "GET", "/healthz", &[], None).expect("/healthz answers");
        assert_eq!(r.status, 200);
        assert!(start.elapsed() < Duration::from_secs(2), "/healthz took {:?}", start.elapsed());
    }
    let log = p.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

#[test]
fn sigterm_with_a_held_and_a_stuck_connection_exits_within_the_drain_grace() {
    let toml = "[http_server]\ndrain_grace_ms = 500\nheader_read_timeout_ms = 60000\nbody_timeout_ms = 60000\n";
    let mut p = Proc::spawn(toml, &[], &[]);
    p.ready();
    // Held: a keep-alive connection after one request.
    let mut held = TcpStream::connect(p.addr).unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = held.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Stuck half-way through a request body.
    let mut stuck = TcpStream::connect(p.addr).unwrap();
    stuck
        .write_all(
            b"POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    // Stuck half-way through a head.
    let mut half = TcpStream::connect(p.addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    // An answer on a connection made after the stuck ones: the listener
    // accepts in the kernel's order, so they have been accepted (an answer
    // on the held connection would not say so: it is served beside the
    // accept loop, which is how this test once saw no stuck connection).
    let mut probe = TcpStream::connect(p.addr).unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let n = probe.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    p.signal("TERM");
    let took = p.wait_exit(Duration::from_secs(5));
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    let log = p.log_text();
    assert!(log.contains("drain grace over"), "{log}");
    drop((held, stuck, half));
}

#[test]
fn plain_http_on_a_non_loopback_address_is_refused_unless_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let http = "0.0.0.0:0";
    let data = dir.path().join("data");
    let socket = dir.path().join("t.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--http", http, "--data"])
        .arg(&data)
        .arg("--socket")
        .arg(&socket)
        .env("TOLLGATE_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("--tls-cert") && err.contains("--tls-key") && err.contains("--insecure-http"), "{err}");
    assert!(!data.exists(), "nothing is created for a refused configuration");

    // With --insecure-http it serves.
    let mut p = Proc::spawn("", &["--http", "0.0.0.0:0", "--insecure-http"], &[]);
    p.ready();
    assert!(p.addr.ip().is_unspecified(), "{}", p.addr);
    let addr: SocketAddr = ([127, 0, 0, 1], p.addr.port()).into();
    assert_eq!(try_http(addr, "GET", "/healthz", &[], None).unwrap().status, 200);
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

/// A CA and certificates it issues, written as PEM files.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    /// A leaf for `localhost` (server) or a client; its certificate DER, and
    /// the two PEM files written in `dir` as `<stem>.crt` / `<stem>.key`.
    fn issue(&self, dir: &Path, stem: &str, client: bool) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, stem);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca.pem()).unwrap();
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }
}

fn client_config(roots: rustls::RootCertStore, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let c = match client {
        None => b.with_no_client_auth(),
        Some((crt, key)) => {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(crt).unwrap().map(Result::unwrap).collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(c)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` for `localhost`; the handshake is completed.
fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// `GET path` on a kept-alive TLS connection; the status line and body.
fn tls_get(s: &mut Tls, path: &str) -> std::io::Result<String> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn peer_cert(s: &Tls) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn https_handshake_certificate_reload_and_plain_http_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("test CA");
    let first = pki.issue(dir.path(), "server", false);
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let mut p = Proc::spawn_in(dir, "", &args, &[]);
    p.ready();
    let config = client_config(pki.roots(), None);

    // A handshake with the generated certificate, then requests on it.
    let mut old = tls_connect(p.addr, config.clone()).unwrap();
    assert_eq!(peer_cert(&old), first);
    let version = old.conn.protocol_version().unwrap();
    assert!(matches!(version, rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2));
    assert!(tls_get(&mut old, "/healthz").unwrap().starts_with("HTTP/1.1 200"));

    // TLS 1.2 is offered too.
    let tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    let mut s12 = tls_connect(p.addr, Arc::new(tls12)).unwrap();
    assert_eq!(s12.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert!(tls_get(&mut s12, "/readyz").unwrap().starts_with("HTTP/1.1 200"));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(p.addr).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let (bytes, closed) = read_until_closed(&mut plain, Duration::from_secs(5));
    assert!(closed, "the TLS port kept a plain-HTTP connection open");
    assert!(!String::from_utf8_lossy(&bytes).contains("HTTP/1.1"), "plain HTTP was answered: {bytes:?}");
    assert!(try_http(p.addr, "GET", "/healthz", &[], None).is_none());

    // Renew the certificate in place and reload (SIGHUP): a new connection
    // gets the new certificate; the open one goes on working.
    let second = pki.issue(p.dir.path(), "server", false);
    assert_ne!(first, second);
    p.signal("HUP");
    let log = p.wait_for_log("configuration reloaded", 1);
    assert!(log.contains("http_server.tls: certificate"), "{log}");
    let mut new = tls_connect(p.addr, config.clone()).unwrap();
    assert_eq!(peer_cert(&new), second);
    assert!(tls_get(&mut new, "/healthz").unwrap().starts_with("HTTP/1.1 200"));
    assert!(tls_get(&mut old, "/healthz").unwrap().starts_with("HTTP/1.1 200"), "the open connection was dropped");
    assert_eq!(peer_cert(&old), first);

    // A broken key file is refused by a reload; the certificate in force stays.
    std::fs::write(p.dir.path().join("server.key"), "not a key").unwrap();
    p.signal("HUP");
    let log = p.wait_for_log("configuration reload refused", 1);
    assert!(log.contains("http_server.tls.key"), "{log}");
    let mut again = tls_connect(p.addr, config).unwrap();
    assert_eq!(peer_cert(&again), second);
    assert!(tls_get(&mut again, "/healthz").unwrap().starts_with("HTTP/1.1 200"));

    drop((old, new, again, s12));
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

#[test]
fn https_with_a_client_ca_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("server CA");
    let clients = Pki::new("client CA");
    let strangers = Pki::new("other CA");
    pki.issue(dir.path(), "server", false);
    clients.issue(dir.path(), "client", true);
    strangers.issue(dir.path(), "stranger", true);
    clients.write_ca(&dir.path().join("clients.pem"));
    let d = dir.path().display();
    let toml = format!(
        "[http_server.tls]\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\nclient_ca = \"{d}/clients.pem\"\n"
    );
    let path = |n: &str| dir.path().join(n);
    let (client_crt, client_key, stranger_crt, stranger_key) =
        (path("client.crt"), path("client.key"), path("stranger.crt"), path("stranger.key"));
    let mut p = Proc::spawn_in(dir, &toml, &[], &[]);
    p.ready();

    let mut ok = tls_connect(p.addr, client_config(pki.roots(), Some((&client_crt, &client_key)))).unwrap();
    assert!(tls_get(&mut ok, "/healthz").unwrap().starts_with("HTTP/1.1 200"));
    // Without a certificate, or with one from another CA: no answer. (In TLS
    // 1.3 the server's refusal may only show at the first read.)
    for client in [None, Some((stranger_crt.as_path(), stranger_key.as_path()))] {
        let r = tls_connect(p.addr, client_config(pki.roots(), client)).and_then(|mut s| tls_get(&mut s, "/healthz"));
        assert!(
            r.as_ref().map_or(true, |t| !t.contains("HTTP/1.1 200")),
            "answered without a valid client certificate: {r:?}"
        );
    }
    drop(ok);
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

#[test]
fn check_config_reports_bad_certificate_and_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("CA");
    pki.issue(dir.path(), "a", false);
    pki.issue(dir.path(), "b", false);
    std::fs::write(dir.path().join("junk.pem"), "hello").unwrap();
    let d = dir.path().display();
    let cases = [
        (format!("cert = \"{d}/missing.crt\"\nkey = \"{d}/a.key\""), "http_server.tls.cert: cannot read"),
        (format!("cert = \"{d}/junk.pem\"\nkey = \"{d}/a.key\""), "holds no certificate"),
        (format!("cert = \"{d}/a.crt\"\nkey = \"{d}/junk.pem\""), "http_server.tls.key"),
        (format!("cert = \"{d}/a.crt\"\nkey = \"{d}/b.key\""), "does not go with the certificate"),
        (format!("cert = \"{d}/a.crt\""), "http_server.tls.key: missing"),
        (
            format!("cert = \"{d}/a.crt\"\nkey = \"{d}/a.key\"\nclient_ca = \"{d}/junk.pem\""),
            "http_server.tls.client_ca",
        ),
    ];
    let file = dir.path().join("t.toml");
    for (tls, needle) in &cases {
        std::fs::write(&file, format!("[http_server.tls]\n{tls}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).arg("check-config").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tls}: {err}");
        assert!(err.contains(needle), "{tls}: expected {needle:?} in {err}");
    }
    std::fs::write(
        &file,
        format!("http = \"0.0.0.0:7070\"\n[http_server.tls]\ncert = \"{d}/a.crt\"\nkey = \"{d}/a.key\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).arg("check-config").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, "http = \"0.0.0.0:7070\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).arg("check-config").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--insecure-http"), "{err}");
}

#[test]
fn files_at_rest_are_the_owners_and_an_open_data_directory_is_warned_about() {
    // An existing data directory open to others: a warning with the mode and the fix.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut p = Proc::spawn_in(dir, "", &[], &[]);
    let log = p.ready();
    assert!(log.contains("0755") && log.contains("chmod 700"), "{log}");
    // Let the daemon write (an admin call creates records and files).
    let auth = format!("Bearer {}", common::ADMIN_TOKEN);
    let r = try_http(p.addr, "POST", "/v1/teams", &[("Authorization", &auth)], Some(r#"{"name":"t","tier":"Pro"}"#));
    assert_eq!(r.unwrap().status, 201);
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
    let files = common::files_under(&p.dir.path().join("data"));
    assert!(files.len() >= 3, "{files:?}");
    for (path, _) in &files {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:04o}", path.display());
    }

    // A data directory the daemon creates is 0700.
    let mut p = Proc::spawn("", &[], &[]);
    p.ready();
    let data = p.dir.path().join("data");
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!p.log_text().contains("chmod 700"));
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}

/// `tollgate reload` reaches a daemon whose TCP listener speaks HTTPS through
/// its plain HTTP Unix socket, and the renewed certificate is in force after.
#[test]
fn tollgate_reload_reaches_an_https_daemon_through_http_socket() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("CA");
    let first = pki.issue(dir.path(), "server", false);
    let d = dir.path().display();
    let tls = format!("[http_server.tls]\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\n");
    let toml = format!("http_socket = \"{d}/http.sock\"\n{tls}");
    let mut p = Proc::spawn_in(dir, &toml, &[], &[]);
    p.ready();
    let config = p.dir.path().join("tollgate.toml");
    let client = client_config(pki.roots(), None);
    assert_eq!(peer_cert(&tls_connect(p.addr, client.clone()).unwrap()), first);

    let second = pki.issue(p.dir.path(), "server", false);
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["reload", "--config"])
        .arg(&config)
        .env("TOLLGATE_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("applied: http_server.tls: certificate"), "{text}");
    assert_eq!(peer_cert(&tls_connect(p.addr, client).unwrap()), second);

    // Without http_socket, the command says what to do instead.
    let other = p.dir.path().join("other.toml");
    std::fs::write(&other, format!("http = \"{}\"\n{tls}", p.addr)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["reload", "--config"])
        .arg(&other)
        .env("TOLLGATE_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("http_socket") && err.contains("SIGHUP"), "{err}");
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
}
