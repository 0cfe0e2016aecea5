//! The audit log is bounded: floods of unauthenticated admin calls and of
//! verifications of unknown keys, against the real daemon, leave the data
//! directory (nearly) as it was; they are counted in `/metrics` instead.
//! Denials on the socket and `/auth` are counted and sampled the same way,
//! or filed under the team when they name a known key; each team keeps at
//! most `audit.max_events_per_team` events.
//!
//! Sizes are the sum of the lengths of every file under the data directory,
//! read after the same settling step both times: wait for the audit writer
//! (it polls every 100 ms), then make one durable admin write, which flushes
//! sled. Before this change every such failure was stored one by one: 200
//! calls with 60 KB ids grew the directory by 24 MB, and 200k unknown-key
//! verifications by 58 MB, so the bounds below (< 1 MB for 1,000 calls with
//! 60 KB ids, and for 100,000 verifications) would fail by far.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use common::{ADMIN_TOKEN, HttpDaemon, http, metric};

const MB: u64 = 1024 * 1024;

/// Bytes of every file under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        // The larger of the length and the space allocated, in case sled
        // preallocates or leaves holes.
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len().max(allocated) };
    }
    total
}

/// The data directory's size once the audit writer is idle and sled has
/// flushed (a durable admin write).
fn settled_size(d: &HttpDaemon, n: &mut u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    *n += 1;
    let body = json!({"name": format!("flush {n}"), "tier": "Pro"}).to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    assert_eq!(http(d.addr, "POST", "/v1/teams", &[("Authorization", &auth)], Some(&body)).status, 201);
    let size = dir_bytes(&d.data);
    if std::env::var_os("AUDIT_BOUNDS_LIST").is_some() {
        list(&d.data);
    }
    size
}

fn list(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        eprintln!(
            "  {} {} (blocks {})",
            entry.path().display(),
            meta.len(),
            std::os::unix::fs::MetadataExt::blocks(&meta)
        );
        if meta.is_dir() {
            list(&entry.path());
        }
    }
}

fn metrics(d: &HttpDaemon) -> String {
    http(d.addr, "GET", "/metrics", &[], None).text
}

/// A keep-alive HTTP/1.1 connection sending one request at a time.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(d: &HttpDaemon) -> Conn {
        let s = TcpStream::connect(d.addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }

    /// Sends a request and returns the status, reading (and dropping) the body.
    fn send(&mut self, method: &str, path: &str, headers: &str, body: &str) -> u16 {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.w.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap_or_else(|| panic!("bad status line {line:?}")).parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).unwrap();
        status
    }
}

#[test]
fn unauthenticated_calls_with_huge_ids_do_not_grow_the_data_directory() {
    let d = common::start_http(|_| {});
    let mut flushes = 0;
    let before = settled_size(&d, &mut flushes);
    let huge = "a".repeat(60 * 1024);
    let unknown_key = format!("Bearer tg_{}", "Q".repeat(36));
    let mut c = Conn::open(&d);
    for i in 0..1000 {
        // No credential, an unknown credential, a wrong admin token.
        let headers = match i % 3 {
            0 => String::new(),
            1 => format!("Authorization: {unknown_key}\r\n"),
            _ => "Authorization: Bearer not-the-admin-token-0123456789\r\n".to_owned(),
        };
        assert_eq!(c.send("GET", &format!("/v1/keys/{huge}{i}"), &headers, ""), 401);
    }
    let after = settled_size(&d, &mut flushes);
    let grown = after.saturating_sub(before);
    eprintln!("1000 unauthenticated calls with 60 KB ids: {before} -> {after} bytes (+{grown})");
    assert!(grown < MB, "the data directory grew by {grown} bytes");
    // Counted instead: 334 with no credential, 666 with a refused one.
    let m = metrics(&d);
    assert_eq!(metric(&m, "tollgate_unattributed_denials_total{interface=\"admin\",code=\"MISSING\"}"), 334.0);
    let refused = metric(&m, "tollgate_unattributed_denials_total{interface=\"admin\",code=\"MALFORMED\"}")
        + metric(&m, "tollgate_unattributed_denials_total{interface=\"admin\",code=\"NOT_FOUND\"}");
    assert_eq!(refused, 666.0);
    // A few are sampled into the global log, without the target.
    let sampled = metric(&m, "tollgate_audit_unattributed_sampled_total");
    assert!((1.0..=120.0).contains(&sampled), "{sampled} samples");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let logs = http(d.addr, "GET", "/v1/logs?teamId=_global&limit=100", &[("Authorization", &auth)], None).json();
    let items = logs["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|e| e["target"] == "" && e["actor"] == "unknown"), "{logs}");
}

/// Sends `n` verifications of unknown credentials over 4 keep-alive connections.
fn flood_unknown(d: &HttpDaemon, n: usize) {
    const THREADS: usize = 4;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let mut c = Conn::open(d);
                for i in 0..n / THREADS {
                    // Unknown keys of the right shape (NOT_FOUND needs a good
                    // checksum, so most are MALFORMED) and plain garbage.
                    let cred = if i % 2 == 0 { format!("tg_{t}x{i:0>34}") } else { format!("nonsense-{t}-{i}") };
                    let body = json!({"credential": cred}).to_string();
                    assert_eq!(c.send("POST", "/v1/verify", "", &body), 200);
                }
            });
        }
    });
}

#[test]
fn unknown_key_verifications_do_not_grow_the_data_directory() {
    let d = common::start_http(|_| {});
    let mut flushes = 0;
    let before = settled_size(&d, &mut flushes);
    const N: usize = 100_000;
    flood_unknown(&d, N);
    let after = settled_size(&d, &mut flushes);
    let grown = after.saturating_sub(before);
    eprintln!("{N} unknown-key verifications: {before} -> {after} bytes (+{grown})");
    assert!(grown < MB, "the data directory grew by {grown} bytes");
    let m = metrics(&d);
    let counted = metric(&m, "tollgate_unattributed_denials_total{interface=\"http_verify\",code=\"MALFORMED\"}")
        + metric(&m, "tollgate_unattributed_denials_total{interface=\"http_verify\",code=\"NOT_FOUND\"}");
    assert_eq!(counted, N as f64);
    assert!(metric(&m, "tollgate_audit_unattributed_sampled_total") <= 120.0);
}

/// The control: the same measure sees events stored one by one. With the
/// sampler at its maximum (60,000 a minute), 20,000 unknown-key
/// verifications are all stored, and the directory grows by more than the
/// 1 MB bound above — as it did for every one of them before sampling.
#[test]
fn the_size_measure_sees_denials_stored_one_by_one() {
    let d = common::start_http(|c| c.audit.unattributed_samples_per_minute = 60_000);
    let mut flushes = 0;
    let before = settled_size(&d, &mut flushes);
    flood_unknown(&d, 20_000);
    let after = settled_size(&d, &mut flushes);
    let grown = after.saturating_sub(before);
    eprintln!("20000 stored denials: {before} -> {after} bytes (+{grown})");
    assert!(grown > MB, "the data directory grew by only {grown} bytes");
}

#[test]
fn each_team_keeps_at_most_max_events_per_team() {
    let d = common::start_http(|c| c.audit.max_events_per_team = 50);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let team = http(
        d.addr,
        "POST",
        "/v1/teams",
        &[("Authorization", &auth)],
        Some(&json!({"name": "busy", "tier": "Pro"}).to_string()),
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = Conn::open(&d);
    let headers = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    for _ in 0..200 {
        assert_eq!(c.send("GET", &format!("/v1/teams/{team}"), &headers, ""), 200);
    }
    let logs =
        http(d.addr, "GET", &format!("/v1/logs?teamId={team}&limit=100"), &[("Authorization", &auth)], None).json();
    let items = logs["items"].as_array().unwrap();
    assert_eq!(items.len(), 50, "{logs}");
    // The newest are kept: no CreateTeam any more, and the list is all reads.
    assert!(items.iter().all(|e| e["action"] == "GetTeam"));
    let m = metrics(&d);
    assert!(metric(&m, "tollgate_audit_trimmed_total") >= 151.0);
}

#[test]
fn socket_and_auth_denials_are_counted_and_sampled_or_filed_under_the_team() {
    use tollgate_protocol::{Client, VerifyRequest};
    let d = common::start_http(|c| c.audit.unattributed_samples_per_minute = 5);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let post = |path: &str, body: serde_json::Value| {
        http(d.addr, "POST", path, &[("Authorization", &auth)], Some(&body.to_string())).json()
    };
    let team = post("/v1/teams", json!({"name": "t", "tier": "Pro"}))["id"].as_str().unwrap().to_owned();
    let body = json!({"teamId": team, "username": "uma", "password": "correct horse battery", "role": "Reader"});
    let user = post("/v1/users", body)["id"].as_str().unwrap().to_owned();
    let key = post("/v1/keys", json!({"userId": user, "permissions": {"docs": ["read"]}}));
    let (key_id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());

    let socket = d.data.parent().unwrap().join("tollgate.sock");
    let mut c = Client::connect(&socket).unwrap();
    for i in 0..500 {
        assert!(!c.verify(&VerifyRequest::new(&format!("tg_unknown{i}"))).unwrap().is_allow());
    }
    // A known key denied: filed under its team, one event each.
    let perms = [("docs", "delete")];
    for _ in 0..3 {
        assert!(!c.verify(&VerifyRequest::new(&secret).permissions(&perms)).unwrap().is_allow());
    }
    for i in 0..200 {
        let cred = format!("nonsense-{i}");
        assert_eq!(http(d.addr, "GET", "/auth", &[("X-API-Key", &cred)], None).status, 401);
    }
    assert_eq!(http(d.addr, "GET", "/auth", &[], None).status, 401);

    let m = metrics(&d);
    assert_eq!(metric(&m, "tollgate_unattributed_denials_total{interface=\"socket\",code=\"MALFORMED\"}"), 500.0);
    assert_eq!(metric(&m, "tollgate_unattributed_denials_total{interface=\"auth\",code=\"MALFORMED\"}"), 200.0);
    assert_eq!(metric(&m, "tollgate_unattributed_denials_total{interface=\"auth\",code=\"MISSING\"}"), 1.0);
    assert_eq!(metric(&m, "tollgate_audit_unattributed_sampled_total"), 5.0);

    std::thread::sleep(Duration::from_millis(300));
    let get = |path: &str| http(d.addr, "GET", path, &[("Authorization", &auth)], None).json();
    let global = get("/v1/logs?teamId=_global&limit=100");
    let items = global["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{global}");
    assert!(items.iter().all(|e| e["target"] == "" && e["action"] == "socket"), "{global}");
    let theirs = get(&format!("/v1/logs?teamId={team}&action=socket"));
    let items = theirs["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{theirs}");
    assert!(
        items.iter().all(|e| e["actor"] == format!("api_key:{key_id}") && e["detail"] == "INSUFFICIENT_PERMISSIONS")
    );
}
