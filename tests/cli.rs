//! The real `tollgate` executable: defaults that work with no flags, bad
//! configuration refused before anything binds, graceful shutdown on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn bad_config_exits_2_with_the_field_named_and_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    let port = free_port();
    std::fs::write(&cfg, format!("http = \"127.0.0.1:{port}\"\n[durability]\nflush_interval_ms = 0\n")).unwrap();
    let out = Command::new(BIN).current_dir(dir.path()).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("durability.flush_interval_ms"), "{err}");
    assert!(!dir.path().join("tollgate-data").exists(), "nothing may be created on bad config");

    let out = Command::new(BIN).args(["check-config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(&cfg, "this is not toml = = =").unwrap();
    let out = Command::new(BIN).args(["check-config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:1:6:"), "TOML errors say where (file:line:column): {err}");
}

#[test]
fn serve_works_on_defaults_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Only the HTTP address differs from the defaults, so parallel test runs
    // do not collide on 7070.
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let health = loop {
        if let Some(r) = get(port, "/readyz")
            && r.starts_with("HTTP/1.1 200")
        {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(get(port, "/.well-known/jwks.json").unwrap().contains("\"OKP\""));
    assert!(dir.path().join("tollgate-data").is_dir());
    let key = dir.path().join("tollgate-data/jwt-signing-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("store flushed"), "{log}");
}
