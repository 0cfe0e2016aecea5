//! Cluster mode end to end (ARCHITECTURE.md, "Cluster mode"): a throwaway
//! PostgreSQL cluster (initdb in a temp directory, run as the `postgres` user
//! when the test runs as root) and three real `tollgate serve --postgres`
//! nodes. CI installs Debian's `postgresql` (.ci/run) and fails without it;
//! elsewhere the tests say SKIPPED when it is missing.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, BinDaemon, free_port, require_tool, try_http};
use serde_json::{Value, json};
use tollgate_protocol::{Client, DenyCode, Verdict, VerifyRequest};

/// The HS256 secret every node shares (cluster mode needs shared JWT keys).
const JWT_ENV: &str = "TOLLGATE_TEST_CLUSTER_HS";
const JWT_SECRET: &str = "cluster-test-secret-0123456789abcdef";

/// The nodes' configuration: the shared JWT key, a tier whose team
/// per-minute limit does not interfere (Pro, the owner's), and one whose
/// limit is the cluster's to hold (Start: 600 a minute, 5 documents).
fn node_config() -> String {
    format!(
        "[[jwt.keys]]\nkid = \"c1\"\nalg = \"HS256\"\nsecret_env = \"{JWT_ENV}\"\n\
         [tiers.Pro]\nrequests_per_minute = \"unlimited\"\nmembers = \"unlimited\"\ndocuments = 5000\n\
         log_retention_days = \"unlimited\"\n\
         [tiers.Start]\nrequests_per_minute = 600\nmembers = \"unlimited\"\ndocuments = 5\nlog_retention_days = 90\n"
    )
}

/// The tests of this file run one at a time: each starts a PostgreSQL and
/// two to four daemons, and the delays they measure are their own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A PostgreSQL server of its own in a temp directory, stopped on drop.
struct Pg {
    _serial: std::sync::MutexGuard<'static, ()>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    /// The server's TLS options (empty: no TLS).
    tls: String,
}

impl Pg {
    /// `None` (SKIPPED, outside CI) when PostgreSQL is not installed.
    fn start() -> Option<Pg> {
        Pg::start_with(false)
    }

    /// With `tls`, the server speaks TLS with a certificate for 127.0.0.1
    /// issued by a CA of its own, whose certificate is `<dir>/ca.pem`.
    fn start_with(tls: bool) -> Option<Pg> {
        let candidates: Vec<String> = (13..=18).rev().map(|v| format!("/usr/lib/postgresql/{v}/bin/initdb")).collect();
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let initdb = require_tool("initdb", &candidates, "apt-get install postgresql")?;
        // A test that failed while holding it poisoned it: the next goes on.
        let serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bin = initdb.parent().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: as root, the files are the
        // `postgres` user's and the server runs as it.
        let as_postgres = rustix::process::geteuid().is_root();
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success();
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let mut pg = Pg { _serial: serial, bin, dir, port: free_port(), as_postgres, tls: String::new() };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        if tls {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, "tollgate cluster test CA");
            let ca = params.self_signed(&ca_key).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(pg.dir.path().join("ca.pem"), ca.pem()).unwrap();
            let data = pg.dir.path().join("data");
            std::fs::write(data.join("server.crt"), cert.pem()).unwrap();
            std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            if as_postgres {
                let ok = Command::new("chown")
                    .arg("postgres")
                    .args([data.join("server.crt"), data.join("server.key")])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
            }
            pg.tls = " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_owned();
        }
        pg.ctl_start();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = c.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl_start(&self) {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1{}", self.port, self.dir.path().display(), self.tls);
        let log = self.dir.path().join("pg.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// One value from `psql -tAc`.
    fn query(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-tAc", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = c.args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

fn node(pg: &Pg) -> BinDaemon {
    BinDaemon::start_with_env(&node_config(), &["--postgres", &pg.url()], &[(JWT_ENV, JWT_SECRET)])
}

fn admin(n: &BinDaemon, method: &str, path: &str, body: Value, want: u16) -> Value {
    n.call(method, path, ADMIN_TOKEN, Some(body), want)
}

/// A team and an Administrator user made through `n`; returns their ids.
fn owner(n: &BinDaemon) -> (String, String) {
    let team =
        admin(n, "POST", "/v1/teams", json!({"name": "fleet", "tier": "pro"}), 201)["id"].as_str().unwrap().to_owned();
    let body = json!({"teamId": team, "username": "ops", "password": "correct horse", "role": "Administrator"});
    (team, admin(n, "POST", "/v1/users", body, 201)["id"].as_str().unwrap().to_owned())
}

fn client(n: &BinDaemon) -> Client {
    Client::connect(&n.socket).unwrap()
}

fn verdict(c: &mut Client, secret: &str) -> Result<(), DenyCode> {
    match c.verify(&VerifyRequest::new(secret)).unwrap() {
        Verdict::Allow(_) => Ok(()),
        Verdict::Deny(d) => Err(d.code),
    }
}

/// Polls `c` until `secret`'s verdict is `want`; returns when (at most `bound`).
fn seen(c: &mut Client, secret: &str, want: Result<(), DenyCode>, bound: Duration) -> Option<Instant> {
    let deadline = Instant::now() + bound;
    loop {
        if verdict(c, secret) == want {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Verifies `secret` until it has been refused for 1.5 s on end (longer
/// than a node waits before asking the cluster again after finding no uses
/// left, 1 s); returns how many were allowed.
fn drain(c: &mut Client, secret: &str) -> u64 {
    let started = Instant::now();
    let mut refused_since: Option<Instant> = None;
    let mut allowed = 0;
    while refused_since.is_none_or(|t| t.elapsed() < Duration::from_millis(1500)) {
        assert!(started.elapsed() < Duration::from_secs(60), "not drained in 60 s");
        match verdict(c, secret) {
            Ok(()) => {
                allowed += 1;
                refused_since = None;
            }
            Err(DenyCode::UsageExceeded) => {
                refused_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(other) => panic!("unexpected denial {other:?}"),
        }
    }
    allowed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// 200 admin changes made through node A (100 key creations, 100
/// revocations by disabling): each is verified as such on B and C within
/// 1 s of A's answer; the delays are printed.
#[test]
fn changes_made_on_one_node_reach_the_others() {
    let Some(pg) = Pg::start() else { return };
    let (a, b, c) = (node(&pg), node(&pg), node(&pg));
    let (team, user) = owner(&a);
    let (mut cb, mut cc) = (client(&b), client(&c));
    let bound = Duration::from_secs(1);
    let (mut after_ack, mut after_send) = (Vec::new(), Vec::new());
    let mut record = |sent: Instant, acked: Instant, at: Instant| {
        after_ack.push(at.saturating_duration_since(acked));
        after_send.push(at - sent);
    };
    for i in 0..100 {
        let sent = Instant::now();
        let k = admin(&a, "POST", "/v1/keys", json!({"userId": user, "name": format!("k{i}")}), 201);
        let acked = Instant::now();
        let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned());
        for (name, cl, n) in [("B", &mut cb, &b), ("C", &mut cc, &c)] {
            let at = seen(cl, &secret, Ok(()), bound).unwrap_or_else(|| {
                panic!("key {i} created on A not allowed on {name} within {bound:?}; its log:\n{}", n.log_text())
            });
            record(sent, acked, at);
        }
        let sent = Instant::now();
        admin(&a, "PATCH", &format!("/v1/keys/{id}"), json!({"enabled": false}), 200);
        let acked = Instant::now();
        for (name, cl, n) in [("B", &mut cb, &b), ("C", &mut cc, &c)] {
            let at = seen(cl, &secret, Err(DenyCode::Disabled), bound).unwrap_or_else(|| {
                panic!("key {i} revoked on A still allowed on {name} after {bound:?}; its log:\n{}", n.log_text())
            });
            record(sent, acked, at);
        }
    }
    after_ack.sort();
    after_send.sort();
    eprintln!(
        "cluster propagation, 200 changes x 2 nodes: after A's answer p50 {:?} p99 {:?} max {:?}; \
         from the request to A p50 {:?} p99 {:?}",
        percentile(&after_ack, 0.5),
        percentile(&after_ack, 0.99),
        after_ack.last().unwrap(),
        percentile(&after_send, 0.5),
        percentile(&after_send, 0.99),
    );
    assert_eq!(pg.query("SELECT max(seq) FROM tollgate_changes"), (2 + 200).to_string(), "one log entry per change");

    // A node started now loads the snapshot: the 100 keys, all disabled.
    let d = node(&pg);
    let keys = d.call("GET", &format!("/v1/keys?teamId={team}&status=inactive&limit=100"), ADMIN_TOKEN, None, 200);
    assert_eq!(keys["total"], 100, "{keys}");
    for n in [a, b, c, d] {
        n.stop();
    }
}

/// A key with 1000 remaining uses, hammered through 3 nodes x 4
/// connections until every connection has been refused for longer than a
/// node waits before asking again: exactly 1000 allowed in all (never more;
/// after every node has drained, nothing is left stranded in a lease).
#[test]
fn remaining_uses_are_never_over_admitted_across_nodes() {
    let Some(pg) = Pg::start() else { return };
    let nodes = [node(&pg), node(&pg), node(&pg)];
    let (_, user) = owner(&nodes[0]);
    let k = admin(&nodes[0], "POST", "/v1/keys", json!({"userId": user, "remaining": 1000}), 201);
    let secret = Arc::new(k["key"].as_str().unwrap().to_owned());
    // Every node knows the key before the hammering starts (asked over
    // the admin API: a verification would spend a use).
    let path = format!("/v1/keys/{}", k["id"].as_str().unwrap());
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for n in &nodes[1..] {
        let deadline = Instant::now() + Duration::from_secs(2);
        while try_http(n.addr, "GET", &path, &[("Authorization", &auth)], None).is_none_or(|r| r.status != 200) {
            assert!(Instant::now() < deadline, "the key did not reach every node");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Every node shows the cluster's count, not its own (empty) lease.
    for n in &nodes {
        assert_eq!(n.call("GET", &path, ADMIN_TOKEN, None, 200)["remaining"], 1000);
    }
    let allowed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = nodes
        .iter()
        .flat_map(|n| (0..4).map(move |_| n.socket.clone()))
        .map(|socket| {
            let (secret, allowed) = (secret.clone(), allowed.clone());
            std::thread::spawn(move || {
                let mine = drain(&mut Client::connect(&socket).unwrap(), &secret);
                allowed.fetch_add(mine, Ordering::Relaxed);
                mine
            })
        })
        .collect();
    let per: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total = allowed.load(Ordering::Relaxed);
    eprintln!("credits: remaining 1000, 3 nodes x 4 connections: {total} allowed ({per:?}) in {:?}", started.elapsed());
    assert!(total <= 1000, "over-admitted: {total} > 1000");
    assert_eq!(total, 1000, "under-admitted after every node drained: uses left stranded");
    assert_eq!(pg.query("SELECT remaining FROM tollgate_credits"), "0");
    for n in &nodes {
        assert_eq!(n.call("GET", &path, ADMIN_TOKEN, None, 200)["remaining"], 0);
    }
    for n in nodes {
        n.stop();
    }
}

/// A node that stops returns the unspent part of its lease: another node
/// then spends every use the first did not.
#[test]
fn a_stopping_node_returns_its_lease() {
    let Some(pg) = Pg::start() else { return };
    let (a, b) = (node(&pg), node(&pg));
    let (_, user) = owner(&a);
    let k = admin(&a, "POST", "/v1/keys", json!({"userId": user, "remaining": 50}), 201);
    let secret = k["key"].as_str().unwrap().to_owned();
    let mut ca = client(&a);
    assert_eq!(verdict(&mut ca, &secret), Ok(()));
    let leased: i64 = pg.query("SELECT coalesce(sum(amount), 0) FROM tollgate_leases").parse().unwrap();
    assert!(leased >= 1, "node A holds a lease row");
    drop(ca);
    a.stop();
    assert_eq!(pg.query("SELECT count(*) FROM tollgate_leases"), "0", "the lease row is gone");
    assert_eq!(pg.query("SELECT remaining FROM tollgate_credits"), "49", "the unspent uses are back");
    assert_eq!(drain(&mut client(&b), &secret), 49);
    b.stop();
}

/// `tollgate migrate` applies the schema once; a second run finds nothing
/// to do; nodes starting together do not race on it (the other tests start
/// nodes on a fresh database).
#[test]
fn migrate_applies_the_schema_once() {
    let Some(pg) = Pg::start() else { return };
    let run = || {
        let out =
            Command::new(env!("CARGO_BIN_EXE_tollgate")).args(["migrate", "--postgres", &pg.url()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (first, second) = std::thread::scope(|s| {
        let one = s.spawn(run);
        let two = s.spawn(run);
        (one.join().unwrap(), two.join().unwrap())
    });
    let names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        let applied = [&first, &second].iter().filter(|o| o.contains(&format!("applied {name}"))).count();
        assert_eq!(applied, 1, "exactly one run applies {name}:\n{first}\n{second}");
    }
    assert!(run().contains("(0 applied now)"));
    assert_eq!(pg.query("SELECT count(*) FROM tollgate_migrations"), names.len().to_string());
    // A schema a newer tollgate applied is refused, not written over.
    pg.query("INSERT INTO tollgate_migrations (version, name) VALUES (999, '0999_future.sql')");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).args(["migrate", "--postgres", &pg.url()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("newer than this tollgate"), "{err}");
}

impl Pg {
    /// Stops the server (fast: connections are closed); `ctl_start` starts
    /// it again on the same port and data.
    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

fn readiness(n: &BinDaemon) -> (u16, String) {
    let r = try_http(n.addr, "GET", "/readyz", &[], None).expect("the node answers /readyz");
    (r.status, r.json()["checks"]["cluster"].as_str().unwrap_or_default().to_owned())
}

fn wait_for(what: &str, bound: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PostgreSQL stopped for 10 s while two nodes verify: no verification
/// fails because of it, admin writes answer 503 and `/readyz` says
/// degraded meanwhile; after the restart both nodes follow again, a change
/// made then propagates, and a node started afterwards has every change
/// made before the stop.
#[test]
fn an_outage_of_postgres_does_not_fail_verifications() {
    let Some(pg) = Pg::start() else { return };
    let (a, b) = (node(&pg), node(&pg));
    let (_, user) = owner(&a);
    let k1 = admin(&a, "POST", "/v1/keys", json!({"userId": user, "name": "before"}), 201);
    let (k1_id, k1_secret) = (k1["id"].as_str().unwrap().to_owned(), k1["key"].as_str().unwrap().to_owned());
    seen(&mut client(&b), &k1_secret, Ok(()), Duration::from_secs(1)).expect("k1 reaches B");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = [a.socket.clone(), b.socket.clone()]
        .into_iter()
        .map(|socket| {
            let (stop, secret) = (stop.clone(), k1_secret.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                let (mut allowed, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match c.verify(&VerifyRequest::new(&secret)) {
                        Ok(Verdict::Allow(_)) => allowed += 1,
                        Ok(Verdict::Deny(d)) => failed.push(format!("{:?}", d.code)),
                        Err(e) => failed.push(e.to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                (allowed, failed)
            })
        })
        .collect();

    let down = Instant::now();
    pg.stop();
    let body = json!({"userId": user, "name": "during"}).to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = try_http(a.addr, "POST", "/v1/keys", &[("Authorization", &auth)], Some(&body)).unwrap();
    assert_eq!(r.status, 503, "an admin write while PostgreSQL is down: {}", r.text);
    assert_eq!(r.json()["error"]["code"], "unavailable", "{}", r.text);
    wait_for("B says degraded", Duration::from_secs(5), || {
        let (status, cluster) = readiness(&b);
        assert_eq!(status, 200, "a degraded node stays ready");
        cluster.starts_with("degraded")
    });
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    pg.ctl_start();
    for n in [&a, &b] {
        wait_for("the node follows again", Duration::from_secs(15), || readiness(n).1.starts_with("following"));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let (allowed, failed) = t.join().unwrap();
        assert!(allowed > 1000, "the load ran through the outage: {allowed} allowed");
        assert!(failed.is_empty(), "verifications failed during the outage: {failed:?}");
    }

    // Changes made after the restart propagate.
    let k2 = admin(&a, "POST", "/v1/keys", json!({"userId": user, "name": "after"}), 201);
    let k2_secret = k2["key"].as_str().unwrap().to_owned();
    seen(&mut client(&b), &k2_secret, Ok(()), Duration::from_secs(1)).expect("a key made after the restart reaches B");
    admin(&a, "PATCH", &format!("/v1/keys/{k1_id}"), json!({"enabled": false}), 200);
    seen(&mut client(&b), &k1_secret, Err(DenyCode::Disabled), Duration::from_secs(1))
        .expect("a revocation after the restart reaches B");
    // A node started now has everything: what was made before the stop
    // (the team, the user, k1) and after it.
    let c = node(&pg);
    let mut cc = client(&c);
    assert_eq!(verdict(&mut cc, &k2_secret), Ok(()));
    assert_eq!(verdict(&mut cc, &k1_secret), Err(DenyCode::Disabled));
    c.call("GET", &format!("/v1/users/{user}"), ADMIN_TOKEN, None, 200);
    for n in [a, b, c] {
        n.stop();
    }
}

/// With `max_staleness_ms = 2000` and the default `on_stale = "refuse"`, a
/// node that cannot reach PostgreSQL for longer refuses to verify (a socket
/// error, HTTP 503, not ready) instead of answering from what may be stale,
/// and serves again once it has caught up.
#[test]
fn a_node_past_its_maximum_staleness_refuses_until_it_catches_up() {
    let Some(pg) = Pg::start() else { return };
    let config = format!("{}[cluster]\nmax_staleness_ms = 2000\n", node_config());
    let a = BinDaemon::start_with_env(&config, &["--postgres", &pg.url()], &[(JWT_ENV, JWT_SECRET)]);
    let (_, user) = owner(&a);
    let secret = admin(&a, "POST", "/v1/keys", json!({"userId": user}), 201)["key"].as_str().unwrap().to_owned();
    let mut c = client(&a);
    assert_eq!(verdict(&mut c, &secret), Ok(()));
    let down = Instant::now();
    pg.stop();
    // Within the maximum staleness it verifies from memory.
    assert_eq!(verdict(&mut c, &secret), Ok(()));
    wait_for("the node refuses", Duration::from_secs(6), || readiness(&a).0 == 503);
    assert!(down.elapsed() >= Duration::from_secs(2), "refused before the maximum staleness: {:?}", down.elapsed());
    assert!(readiness(&a).1.starts_with("stale"), "{:?}", readiness(&a));
    let e = c.verify(&VerifyRequest::new(&secret)).expect_err("a stale node gives no verdict");
    assert!(e.to_string().contains("missed changes"), "{e}");
    let body = json!({"credential": secret}).to_string();
    let r = try_http(a.addr, "POST", "/v1/verify", &[], Some(&body)).unwrap();
    assert_eq!(r.status, 503, "{}", r.text);
    pg.ctl_start();
    wait_for("the node serves again", Duration::from_secs(15), || readiness(&a).0 == 200);
    let mut c = client(&a);
    assert_eq!(verdict(&mut c, &secret), Ok(()));
    a.stop();
}

/// A node killed with SIGKILL cannot return its lease; the reserve its
/// lease row records comes back to the shared count once the row's TTL has
/// passed (B's heartbeat expires it), and only its active part is lost: at
/// most a chunk, `ceil(lease_max / 4)` = 25 uses (ARCHITECTURE.md, "Cluster
/// mode"). Never more than `remaining` is allowed in all.
#[test]
fn a_killed_nodes_reserve_comes_back_after_the_ttl() {
    let Some(pg) = Pg::start() else { return };
    let config = format!("{}[cluster]\nlease_ttl_ms = 1000\n", node_config());
    let start = || BinDaemon::start_with_env(&config, &["--postgres", &pg.url()], &[(JWT_ENV, JWT_SECRET)]);
    let (mut a, b) = (start(), start());
    let (_, user) = owner(&a);
    let secret = admin(&a, "POST", "/v1/keys", json!({"userId": user, "remaining": 300}), 201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Fast enough for A's lease to grow to lease_max. (A verification that
    // waited longer than lease_wait_ms for its lease is refused: under
    // load, not an error.)
    let mut ca = client(&a);
    let mut spent = 0;
    while spent < 150 {
        match verdict(&mut ca, &secret) {
            Ok(()) => spent += 1,
            Err(DenyCode::UsageExceeded) => std::thread::sleep(Duration::from_millis(1)),
            Err(other) => panic!("unexpected denial {other:?}"),
        }
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // A statement of A's in flight when it died has ended by now.
    std::thread::sleep(Duration::from_millis(300));
    let reserve: u64 = pg.query("SELECT coalesce(sum(reserve), 0) FROM tollgate_leases").parse().unwrap();
    let shared: u64 = pg.query("SELECT remaining FROM tollgate_credits").parse().unwrap();
    assert!(reserve > 0, "A's lease row records a reserve");
    wait_for("A's lease row expires", Duration::from_secs(10), || {
        pg.query("SELECT count(*) FROM tollgate_leases") == "0"
    });
    let back: u64 = pg.query("SELECT remaining FROM tollgate_credits").parse().unwrap();
    assert_eq!(back, shared + reserve, "the expired row's reserve went back to the shared count");
    let allowed = drain(&mut client(&b), &secret);
    let lost = 300 - 150 - allowed as i64;
    eprintln!(
        "killed node: 150 uses spent on A, its reserve of {reserve} came back after the TTL, {allowed} spent on B, \
         {lost} lost with A's active part"
    );
    assert_eq!(allowed, back, "B spends the whole shared count");
    assert!((0..=25).contains(&lost), "A's active part is at most 25 uses: {lost} lost");
    b.stop();
}

/// `sslmode=require`: the node talks to PostgreSQL over TLS (rustls) and
/// checks its certificate against `cluster.ca_file`; a certificate from
/// another CA is refused.
#[test]
fn nodes_reach_postgres_over_tls_and_check_its_certificate() {
    let Some(pg) = Pg::start_with(true) else { return };
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=require", pg.port);
    let ca = pg.dir.path().join("ca.pem");
    let config = format!("{}[cluster]\nca_file = \"{}\"\n", node_config(), ca.display());
    let a = BinDaemon::start_with_env(&config, &["--postgres", &url], &[(JWT_ENV, JWT_SECRET)]);
    let (_, user) = owner(&a);
    admin(&a, "POST", "/v1/keys", json!({"userId": user}), 201);
    let by_tls = |ssl: bool| {
        pg.query(&format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name LIKE 'tollgate node_%' AND s.ssl = {ssl}"
        ))
    };
    assert_ne!(by_tls(true), "0", "the node's connections use TLS");
    assert_eq!(by_tls(false), "0", "no connection of the node is in clear");
    a.stop();

    // A CA that did not issue the server's certificate: refused.
    let other = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(other.path().join("ca.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
    let config = other.path().join("tollgate.toml");
    std::fs::write(&config, format!("[cluster]\nca_file = \"{}\"\n", other.path().join("ca.pem").display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["migrate", "--postgres", &url, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a server certificate of another CA was accepted");
    assert!(err.contains("certificate"), "{err}");
}

/// Admin writes are decided on the latest state across nodes: the same new
/// username sent to two nodes at once, 20 times over, is created once
/// each time and refused (409) on the other node.
#[test]
fn concurrent_admin_writes_on_two_nodes_are_serialized() {
    let Some(pg) = Pg::start() else { return };
    let (a, b) = (node(&pg), node(&pg));
    let (team, _) = owner(&a);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for i in 0..20 {
        let body =
            json!({"teamId": team, "username": format!("twin{i}"), "password": "correct horse", "role": "Reader"})
                .to_string();
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let calls: Vec<_> = [a.addr, b.addr]
                .into_iter()
                .map(|addr| {
                    let (auth, body) = (&auth, &body);
                    s.spawn(move || {
                        try_http(addr, "POST", "/v1/users", &[("Authorization", auth)], Some(body)).unwrap()
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap().status).collect()
        });
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [201, 409], "round {i}: {statuses:?}");
    }
    // Both nodes list the same 21 users (the owner and one of each pair).
    for n in [&a, &b] {
        let users = n.call("GET", &format!("/v1/users?teamId={team}&limit=100"), ADMIN_TOKEN, None, 200);
        assert_eq!(users["total"], 21, "{users}");
    }
    a.stop();
    b.stop();
}

/// Three nodes share a key's limit of 600 requests a minute, and a team's
/// tier limit of 600 requests a minute (calendar minutes on PostgreSQL's
/// clock): each hammered through 3 nodes x 2 connections for 58 s, never
/// more than 600 are admitted in a window, and at least 600 - 5% in the
/// key's window and in the longer of the team's two minutes the run spans
/// (tokens leased to a node and not spent by it are the only ones lost).
#[test]
fn rate_limits_hold_across_nodes() {
    let Some(pg) = Pg::start() else { return };
    let nodes = [node(&pg), node(&pg), node(&pg)];
    let (_, user) = owner(&nodes[0]);
    let body = json!({"userId": user, "rateLimitMax": 600, "rateLimitTimeWindow": 60_000});
    let k = admin(&nodes[0], "POST", "/v1/keys", body, 201);
    let key_secret = Arc::new(k["key"].as_str().unwrap().to_owned());
    let team = admin(&nodes[0], "POST", "/v1/teams", json!({"name": "metered", "tier": "start"}), 201);
    let body = json!({"teamId": team["id"], "username": "meter", "password": "correct horse", "role": "Administrator"});
    let metered = admin(&nodes[0], "POST", "/v1/users", body, 201);
    let t = admin(&nodes[0], "POST", "/v1/keys", json!({"userId": metered["id"]}), 201);
    let team_secret = Arc::new(t["key"].as_str().unwrap().to_owned());
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for path in [format!("/v1/keys/{}", k["id"].as_str().unwrap()), format!("/v1/keys/{}", t["id"].as_str().unwrap())] {
        for n in &nodes[1..] {
            wait_for("the keys reach every node", Duration::from_secs(2), || {
                try_http(n.addr, "GET", &path, &[("Authorization", &auth)], None).is_some_and(|r| r.status == 200)
            });
        }
    }
    let started = Instant::now();
    // Each thread returns what it was allowed, by window: the key's one
    // window, or the team's minute an allow's reset time ends.
    let threads: Vec<_> = nodes
        .iter()
        .flat_map(|n| [false, false, true, true].map(|team| (n.socket.clone(), team)))
        .map(|(socket, team)| {
            let secret = if team { team_secret.clone() } else { key_secret.clone() };
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                let mut allowed = std::collections::BTreeMap::<u64, u64>::new();
                while started.elapsed() < Duration::from_secs(58) {
                    match c.verify(&VerifyRequest::new(secret.as_str())).unwrap() {
                        Verdict::Allow(a) => {
                            let window = if team {
                                let reset = a.rate_limit.expect("the team's limit applies").reset_ms;
                                let now = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_millis() as u64;
                                (now + reset + 30_000) / 60_000
                            } else {
                                0
                            };
                            *allowed.entry(window).or_default() += 1;
                        }
                        Verdict::Deny(d) if d.code == DenyCode::RateLimited && !team => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Verdict::Deny(d) if d.code == DenyCode::TeamRateLimited && team => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Verdict::Deny(d) => panic!("unexpected denial {:?}", d.code),
                    }
                }
                (team, allowed)
            })
        })
        .collect();
    let (mut key, mut team) = (0u64, std::collections::BTreeMap::<u64, u64>::new());
    for t in threads {
        let (is_team, allowed) = t.join().unwrap();
        for (w, n) in allowed {
            if is_team {
                *team.entry(w).or_default() += n;
            } else {
                key += n;
            }
        }
    }
    eprintln!(
        "rate limits, 3 nodes x 2 connections each, 58 s: key 600/min: {key} admitted; team 600/min: {:?} \
         admitted by minute",
        team.values().collect::<Vec<_>>()
    );
    assert!(key <= 600, "key: over-admitted: {key} > 600");
    assert!(key >= 570, "key: admission error over 5%: {key} of 600");
    assert!(team.len() <= 2, "58 s span at most two minutes: {team:?}");
    assert!(team.values().all(|&n| n <= 600), "team: over-admitted in a minute: {team:?}");
    let most = team.values().copied().max().unwrap_or(0);
    assert!(most >= 570, "team: admission error over 5% in the longer minute: {team:?}");
    for n in nodes {
        n.stop();
    }
}

/// Team document quotas are exact across nodes: a team whose tier allows 5
/// documents takes 3 through A, then 3 nodes x 3 connections race for the
/// rest: exactly 2 are given. A release over HTTP on B frees 2; a
/// verification naming the quota on C takes one, and the race gives the
/// last. While PostgreSQL is down an acquire is refused with an error
/// saying so, and a release is kept by its node — through a restart of the
/// node — and applied (once) when it is back.
#[test]
fn team_documents_are_exact_across_nodes() {
    use tollgate_protocol::{QuotaOp, QuotaUse};
    let Some(pg) = Pg::start() else { return };
    let nodes = [node(&pg), node(&pg), node(&pg)];
    let team = admin(&nodes[0], "POST", "/v1/teams", json!({"name": "docs", "tier": "start"}), 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"teamId": team, "username": "writer", "password": "correct horse", "role": "Administrator"});
    let user = admin(&nodes[0], "POST", "/v1/users", body, 201)["id"].as_str().unwrap().to_owned();
    let secret = admin(&nodes[0], "POST", "/v1/keys", json!({"userId": user}), 201)["key"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for n in &nodes[1..] {
        wait_for("the team reaches every node", Duration::from_secs(2), || {
            try_http(n.addr, "GET", &format!("/v1/teams/{team}"), &[("Authorization", &auth)], None)
                .is_some_and(|r| r.status == 200)
        });
    }
    let op = |amount| QuotaOp { team_id: &team, quota: "documents", amount };
    let mut ca = client(&nodes[0]);
    for _ in 0..3 {
        let r = ca.quota_consume(&op(1)).unwrap();
        assert!(r.ok, "{r:?}; {}", nodes[0].log_text());
    }
    // Every connection tries 3 times: 27 tries for what is left.
    let race = || -> u64 {
        std::thread::scope(|s| {
            let tries: Vec<_> = nodes
                .iter()
                .flat_map(|n| [&n.socket, &n.socket, &n.socket])
                .map(|socket| {
                    let op = op(1);
                    s.spawn(move || {
                        let mut c = Client::connect(socket).unwrap();
                        let mut got = 0;
                        for _ in 0..3 {
                            let r = c.quota_consume(&op).unwrap();
                            assert!(r.used <= 5 && r.limit == Some(5), "{r:?}");
                            got += u64::from(r.ok);
                        }
                        got
                    })
                })
                .collect();
            tries.into_iter().map(|t| t.join().unwrap()).sum()
        })
    };
    assert_eq!(race(), 2, "the last 2 documents, raced for by 3 nodes");
    assert_eq!(pg.query("SELECT used FROM tollgate_documents"), "5");
    let freed = nodes[1].call(
        "POST",
        &format!("/v1/teams/{team}/documents/release"),
        ADMIN_TOKEN,
        Some(json!({"amount": 2})),
        200,
    );
    assert_eq!(freed["used"], 3, "{freed}");
    let mut req = VerifyRequest::new(&secret);
    req.quota = Some(QuotaUse { name: "documents", amount: 1 });
    let mut cc = client(&nodes[2]);
    assert!(matches!(cc.verify(&req).unwrap(), Verdict::Allow(_)), "a verification takes a document on C");
    assert_eq!(race(), 1, "the last document");
    match cc.verify(&req).unwrap() {
        Verdict::Deny(d) => assert_eq!(d.code, DenyCode::QuotaExceeded),
        Verdict::Allow(_) => panic!("a verification over the quota was allowed"),
    }
    for n in &nodes {
        let t = n.call("GET", &format!("/v1/teams/{team}"), ADMIN_TOKEN, None, 200);
        assert_eq!(t["usage"]["documents"], 5, "{t}");
    }

    pg.stop();
    let e = ca.quota_consume(&op(1)).expect_err("an acquire while PostgreSQL is down");
    assert!(e.to_string().contains("cannot be reached"), "{e}");
    match cc.verify(&req).unwrap() {
        Verdict::Deny(d) => assert!(d.reason.contains("cannot be reached"), "{d:?}"),
        Verdict::Allow(_) => panic!("a document acquired while PostgreSQL is down"),
    }
    let released = ca.quota_release(&op(2)).expect("a release while PostgreSQL is down is kept");
    assert!(released.ok, "{released:?}");
    // A is stopped before PostgreSQL is back, and started again after: the
    // release it kept is in its store, and applied then.
    drop(ca);
    let [mut a, b, c] = nodes;
    a.signal("TERM");
    let status = a.child.wait().unwrap();
    assert!(status.success(), "A stopped during the outage: {status}\n{}", a.log_text());
    pg.ctl_start();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pg.query("SELECT used FROM tollgate_documents"), "5", "nobody else had the release");
    relaunch(&mut a, &pg);
    wait_for("the kept release is applied", Duration::from_secs(15), || {
        pg.query("SELECT used FROM tollgate_documents") == "3"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pg.query("SELECT used FROM tollgate_documents"), "3", "applied once");
    for n in [a, b, c] {
        n.stop();
    }
}

/// Starts node `n` again on its configuration and data directory, once its
/// process has exited (its `STOPPING=1` is read first).
fn relaunch(n: &mut BinDaemon, pg: &Pg) {
    while !n.notify.recv().expect("the stopped node said STOPPING=1").starts_with("STOPPING=1") {}
    let log = std::fs::OpenOptions::new().append(true).open(&n.log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(n.dir.path())
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &n.notify.path)
        .env(JWT_ENV, JWT_SECRET)
        .args(["serve", "--config"])
        .arg(&n.config)
        .args(["--postgres", &pg.url()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let (ready, addr) = n.notify.ready(&mut child, || std::fs::read_to_string(&n.log).unwrap_or_default());
    (n.child, n.addr, n.ready) = (child, addr, ready);
}

/// A key with a refill in cluster mode: 5 uses a second, hammered through 2
/// nodes x 2 connections from its creation until 100 ms into its fourth
/// period (PostgreSQL's clock): never more than 5 uses in each of the 4
/// periods touched (20), and each period's uses are given (at least 16).
/// A change of the refill alone is refused (it must set remaining too).
#[test]
fn a_key_with_a_refill_refills_across_nodes() {
    let Some(pg) = Pg::start() else { return };
    let (a, b) = (node(&pg), node(&pg));
    let (_, user) = owner(&a);
    let body = json!({"userId": user, "remaining": 5, "refillAmount": 5, "refillInterval": 1000});
    let k = admin(&a, "POST", "/v1/keys", body, 201);
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), Arc::new(k["key"].as_str().unwrap().to_owned()));
    let set_ms: u64 = pg.query("SELECT set_ms FROM tollgate_credits").parse().unwrap();
    let pg_now =
        || -> u64 { pg.query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").parse().unwrap() };
    let local_now = || std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_millis() as u64;
    // The end of the run on this machine's clock (PostgreSQL runs here too;
    // the difference is measured anyway).
    let skew = pg_now() as i64 - local_now() as i64;
    let end_local = (set_ms + 3_100) as i64 - skew;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    wait_for("the key reaches B", Duration::from_secs(2), || {
        try_http(b.addr, "GET", &format!("/v1/keys/{id}"), &[("Authorization", &auth)], None)
            .is_some_and(|r| r.status == 200)
    });
    let threads: Vec<_> = [&a, &a, &b, &b]
        .into_iter()
        .map(|n| {
            let (socket, secret) = (n.socket.clone(), secret.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                let mut allowed = 0u64;
                while (std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_millis() as i64) < end_local {
                    match verdict(&mut c, secret.as_str()) {
                        Ok(()) => allowed += 1,
                        Err(DenyCode::UsageExceeded) => std::thread::sleep(Duration::from_millis(2)),
                        Err(other) => panic!("unexpected denial {other:?}"),
                    }
                }
                allowed
            })
        })
        .collect();
    let per: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total: u64 = per.iter().sum();
    eprintln!("refill 5 a second, 2 nodes x 2 connections, 4 periods touched: {total} allowed ({per:?})");
    assert!(total <= 20, "over-admitted: {total} > 4 periods x 5");
    assert!(total >= 16, "each period's uses are given: only {total} of 20; A: {}", a.log_text());
    // The admin API shows the cluster's count, within the period's 5.
    let shown = a.call("GET", &format!("/v1/keys/{id}"), ADMIN_TOKEN, None, 200);
    assert!(shown["remaining"].as_u64().is_some_and(|r| r <= 5), "{shown}");
    let r = try_http(
        a.addr,
        "PATCH",
        &format!("/v1/keys/{id}"),
        &[("Authorization", &auth)],
        Some(&json!({"refillInterval": 2000}).to_string()),
    )
    .unwrap();
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("remaining"), "{}", r.text);
    admin(&a, "PATCH", &format!("/v1/keys/{id}"), json!({"refillInterval": 2000, "remaining": 3}), 200);
    a.stop();
    b.stop();
}

/// The change log is pruned (`log_retention_secs = 1`) past the position of
/// a node that was frozen meanwhile (SIGSTOP): once it runs again it finds
/// the log no longer holds the next change, loads a snapshot and has every
/// change made while it was away (a key disabled, one created, one deleted,
/// a user created), then follows the log as before.
#[test]
fn a_node_whose_position_was_pruned_catches_up_from_a_snapshot() {
    let Some(pg) = Pg::start() else { return };
    let config = format!("{}[cluster]\nlog_retention_secs = 1\n", node_config());
    let start = || BinDaemon::start_with_env(&config, &["--postgres", &pg.url()], &[(JWT_ENV, JWT_SECRET)]);
    let (a, b) = (start(), start());
    let (team, user) = owner(&a);
    let key = |name: &str| {
        let k = admin(&a, "POST", "/v1/keys", json!({"userId": user, "name": name}), 201);
        (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned())
    };
    let ((k1, k1_secret), (k3, k3_secret)) = (key("k1"), key("k3"));
    let mut cb = client(&b);
    for secret in [&k1_secret, &k3_secret] {
        seen(&mut cb, secret, Ok(()), Duration::from_secs(1)).expect("the key reaches B");
    }
    let position = pg.query("SELECT max(seq) FROM tollgate_changes");
    b.signal("STOP");
    admin(&a, "PATCH", &format!("/v1/keys/{k1}"), json!({"enabled": false}), 200);
    let (_, k2_secret) = key("k2");
    a.call("DELETE", &format!("/v1/keys/{k3}"), ADMIN_TOKEN, None, 204);
    let body = json!({"teamId": team, "username": "late", "password": "correct horse", "role": "Reader"});
    let late = admin(&a, "POST", "/v1/users", body, 201)["id"].as_str().unwrap().to_owned();
    let head = pg.query("SELECT max(seq) FROM tollgate_changes");
    wait_for("A prunes the log past B's position", Duration::from_secs(10), || {
        pg.query("SELECT min(seq) FROM tollgate_changes") == head
    });
    assert_eq!(pg.query("SELECT count(*) FROM tollgate_changes"), "1", "the newest change is kept");
    eprintln!("log pruned to change {head}; B was at {position}");
    b.signal("CONT");
    seen(&mut cb, &k2_secret, Ok(()), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("a key made while B was frozen is not allowed on B:\n{}", b.log_text()));
    // The snapshot's difference is applied op by op, puts before removals:
    // k2 can be seen before k3 is gone. The line is logged once all are.
    b.wait_for_log("snapshot loaded: the change log no longer holds", 1);
    assert_eq!(verdict(&mut cb, &k1_secret), Err(DenyCode::Disabled));
    assert_eq!(verdict(&mut cb, &k3_secret), Err(DenyCode::NotFound));
    b.call("GET", &format!("/v1/users/{late}"), ADMIN_TOKEN, None, 200);
    assert_eq!(readiness(&b), (200, format!("following (change {head} applied)")));
    // It follows the log again: a change made now reaches it, and an admin
    // write through it is decided on the latest state.
    admin(&a, "PATCH", &format!("/v1/keys/{k1}"), json!({"enabled": true}), 200);
    seen(&mut cb, &k1_secret, Ok(()), Duration::from_secs(1)).expect("a change after the snapshot reaches B");
    admin(&b, "POST", "/v1/keys", json!({"userId": user, "name": "from B"}), 201);
    let body = json!({"teamId": team, "username": "late", "password": "correct horse", "role": "Reader"});
    admin(&b, "POST", "/v1/users", body, 409);
    for n in [a, b] {
        n.stop();
    }
}

/// `tollgate serve --postgres` with PostgreSQL down and a new data
/// directory: it refuses to start, and says why.
fn start_fails_without_a_local_copy(pg: &Pg) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = dir.path().join("tollgate.toml");
    let header = format!("http = \"127.0.0.1:0\"\ndata = \"{d}/data\"\nsocket = \"{d}/tollgate.sock\"\n");
    std::fs::write(&config, format!("{header}{}", node_config())).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--postgres", &pg.url()])
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env(JWT_ENV, JWT_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("a fresh node started while PostgreSQL is down");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("no local copy of the cluster's records"), "{err}");
}

/// A node restarted while PostgreSQL is down starts from its local copy:
/// degraded (`/readyz` 200 and says so), it verifies from what it had — a
/// change made elsewhere while it was stopped is seen once PostgreSQL is
/// back, not before — and refuses admin writes. Restarted when its position
/// is older than `max_staleness_ms`, with `on_stale = "refuse"`, it refuses
/// to verify until it has caught up. A node with a new data directory does
/// not start.
#[test]
fn a_node_restarted_while_postgres_is_down_serves_its_local_copy() {
    let Some(pg) = Pg::start() else { return };
    let (a, mut b) = (node(&pg), node(&pg));
    let (_, user) = owner(&a);
    let make = |name: &str| {
        let k = admin(&a, "POST", "/v1/keys", json!({"userId": user, "name": name}), 201);
        (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned())
    };
    let ((_, k1_secret), (k2, k2_secret)) = (make("k1"), make("k2"));
    for secret in [&k1_secret, &k2_secret] {
        seen(&mut client(&b), secret, Ok(()), Duration::from_secs(1)).expect("the key reaches B");
    }
    b.halt();
    // Made while B is stopped: B's local copy does not have it.
    admin(&a, "PATCH", &format!("/v1/keys/{k2}"), json!({"enabled": false}), 200);
    pg.stop();
    let env = [(JWT_ENV, JWT_SECRET)];
    b.start_again(&["--postgres", &pg.url()], &env);
    let (status, state) = readiness(&b);
    assert_eq!(status, 200, "{state}");
    assert!(state.starts_with("degraded"), "{state}");
    b.wait_for_log("starting from this node's local copy", 1);
    let mut cb = client(&b);
    assert_eq!(verdict(&mut cb, &k1_secret), Ok(()));
    assert_eq!(verdict(&mut cb, &k2_secret), Ok(()), "B serves its local copy, as of its stop");
    let body = json!({"userId": user, "name": "during"}).to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = try_http(b.addr, "POST", "/v1/keys", &[("Authorization", &auth)], Some(&body)).unwrap();
    assert_eq!(r.status, 503, "{}", r.text);
    start_fails_without_a_local_copy(&pg);
    pg.ctl_start();
    wait_for("B follows again", Duration::from_secs(15), || readiness(&b).1.starts_with("following"));
    b.wait_for_log("snapshot loaded: this node started from its local copy", 1);
    assert_eq!(verdict(&mut cb, &k2_secret), Err(DenyCode::Disabled), "B caught up with the change it missed");

    // Past its maximum staleness at start: refused until caught up.
    b.rewrite_config(&format!("{}[cluster]\nmax_staleness_ms = 2000\n", node_config()));
    b.halt();
    pg.stop();
    std::thread::sleep(Duration::from_millis(2500));
    b.start_again(&["--postgres", &pg.url()], &env);
    let (status, state) = readiness(&b);
    assert_eq!(status, 503, "{state}");
    assert!(state.starts_with("stale"), "{state}");
    let e = client(&b).verify(&VerifyRequest::new(&k1_secret)).expect_err("a stale node gives no verdict");
    assert!(e.to_string().contains("missed changes"), "{e}");
    pg.ctl_start();
    wait_for("B serves again", Duration::from_secs(15), || readiness(&b).0 == 200);
    assert_eq!(verdict(&mut client(&b), &k1_secret), Ok(()));
    for n in [a, b] {
        n.stop();
    }
}
