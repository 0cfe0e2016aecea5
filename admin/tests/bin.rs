//! The `tollgate-admin` binary as a subprocess: exit codes and output streams,
//! against a one-shot fake daemon (this crate cannot start the real one; the
//! root package's tests/it/admin_cli.rs does that).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate-admin"));
    for v in ["TOLLGATE_URL", "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_TOKEN", "TOLLGATE_PASSWORD"] {
        c.env_remove(v);
    }
    c
}

/// Answers one request with `status` and `body`; returns the base URL and the
/// thread yielding the request head it received.
fn fake(status: &str, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let status = status.to_owned();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).expect("read") == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut s = s;
        write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        head
    });
    (url, t)
}

#[test]
fn not_found_exits_6_with_the_daemons_message() {
    let (url, t) = fake("404 Not Found", r#"{"error":{"code":"not_found","message":"key not found"}}"#);
    let out = bin().args(["--url", &url, "--token", "secret-admin-token", "keys", "get", "k_1"]).output().expect("run");
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 404: not_found: key not found"), "{err}");
    let head = t.join().expect("server");
    assert!(head.starts_with("GET /v1/keys/k_1 HTTP/1.1\r\n"), "{head}");
    // Header names are case-insensitive (the client sends them lower-case).
    assert!(head.to_ascii_lowercase().contains("authorization: bearer secret-admin-token\r\n"), "{head}");
}

#[test]
fn json_output_goes_to_stdout() {
    let (url, t) = fake(
        "200 OK",
        r#"{"id":"t1","name":"acme","tier":"Pro","createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z",
            "limits":{"documents":5000,"logRetentionDays":null,"members":null,"requestsPerMinute":100},
            "usage":{"documents":0,"members":1,"requestsThisMinute":0}}"#,
    );
    let out = bin()
        .env("TOLLGATE_ADMIN_TOKEN", "from-the-environment")
        .args(["--url", &url, "--json", "teams", "get", "t1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["tier"], "Pro");
    assert!(t.join().expect("server").contains("Bearer from-the-environment\r\n"));
}

#[test]
fn unreachable_daemon_exits_3_and_usage_exits_2() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let out = bin()
        .args(["--url", &format!("http://127.0.0.1:{port}"), "--token", "t", "users", "get", "u"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"));

    let out = bin().args(["keys", "list"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "no token is a usage error");
    let out = bin().args(["keys", "--bogus"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = bin().arg("--version").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_line_break_in_the_token_is_refused_before_anything_is_sent() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    for token in ["good\r\nX-Injected: 1", "trailing-newline\n"] {
        let out = bin().args(["--url", &url, "--token", token, "teams", "list"]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{token:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("control character") && err.contains("nothing was sent"), "{err}");
        assert!(!err.contains("X-Injected"), "the credential is not echoed: {err}");
    }
    let accepted = l.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection was made: {accepted:?}"
    );
}
