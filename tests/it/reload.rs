//! Live reload of the real `tollgate` executable: SIGHUP and `tollgate reload`
//! rotate JWT keys under load without a single failed verification, change
//! tiers, `/auth` route rules and the log level, keep socket connections, and
//! refuse a bad configuration while the old one stays in force.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{ADMIN_TOKEN, BinDaemon, basic, http, metric};
use serde_json::json;
use tollgate_protocol::{Client, VerifyRequest};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

const PRO_UNLIMITED: &str = common::PRO_UNLIMITED;

/// k1 (Ed25519) signs.
fn config_k1() -> String {
    format!(
        "{PRO_UNLIMITED}\n[jwt]\nsigning_kid = \"k1\"\n[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\nprivate_key_file = \"{}\"\n",
        key_file("ed25519.pem")
    )
}

/// k2 (ES256) signs; k1 stays as a verification key (public key only).
fn config_k2(k2_private: &str) -> String {
    format!(
        "{PRO_UNLIMITED}\n[jwt]\nsigning_kid = \"k2\"\n\
         [[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\npublic_key_file = \"{}\"\n\
         [[jwt.keys]]\nkid = \"k2\"\nalg = \"ES256\"\nprivate_key_file = \"{k2_private}\"\n",
        key_file("ed25519.pub.pem")
    )
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// A Pro team with one Administrator `name`; returns the user id.
fn user(d: &BinDaemon, name: &str) -> String {
    let team = d.call("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": name, "tier": "Pro"})), 201);
    let body = json!({"teamId": team["id"], "username": name, "password": "correct horse", "role": "Administrator"});
    d.call("POST", "/v1/users", ADMIN_TOKEN, Some(body), 201)["id"].as_str().unwrap().to_owned()
}

fn login(d: &BinDaemon, name: &str) -> String {
    let r = http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &basic(name, "correct horse"))], None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["token"].as_str().unwrap().to_owned()
}

fn http_valid(d: &BinDaemon, credential: &str) -> bool {
    let r = http(d.addr, "POST", "/v1/verify", &[], Some(&json!({"credential": credential}).to_string()));
    r.status == 200 && r.json()["valid"] == true
}

/// Load on the daemon: socket threads (each on one connection for the whole
/// run, pipelining 8 requests) and HTTP threads verify every token in
/// `tokens` in turn; any answer but allow, and any I/O error, is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(d: &BinDaemon, tokens: Vec<String>, socket_threads: usize, http_threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for _ in 0..socket_threads {
            let (stop, ok, failed, tokens, socket) =
                (stop.clone(), ok.clone(), failed.clone(), tokens.clone(), d.socket.clone());
            threads.push(std::thread::spawn(move || {
                let mut errors = Vec::new();
                let mut c = Client::connect(&socket).expect("connect");
                while !stop.load(Ordering::Relaxed) {
                    let reqs: Vec<VerifyRequest<'_>> =
                        tokens.iter().cycle().take(8).map(|t| VerifyRequest::new(t.as_str())).collect();
                    match c.verify_many(&reqs) {
                        Ok(verdicts) => {
                            for v in verdicts {
                                if v.is_allow() {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    errors.push(format!("socket: {v:?}"));
                                }
                            }
                        }
                        Err(e) => {
                            // The connection is gone: that is a failure too,
                            // and the thread cannot go on with it.
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!("socket connection: {e}"));
                            break;
                        }
                    }
                }
                errors
            }));
        }
        for _ in 0..http_threads {
            let (stop, ok, failed, tokens, addr) = (stop.clone(), ok.clone(), failed.clone(), tokens.clone(), d.addr);
            threads.push(std::thread::spawn(move || {
                let mut errors = Vec::new();
                for t in tokens.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r =
                        common::try_http(addr, "POST", "/v1/verify", &[], Some(&json!({"credential": t}).to_string()));
                    match r {
                        Some(r) if r.status == 200 && r.json()["valid"] == true => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!("http: {:?}", other.map(|r| (r.status, r.text))));
                        }
                    }
                }
                errors
            }));
        }
        Load { stop, ok, failed, threads }
    }

    /// Stops the load; returns (allowed, failure messages).
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors: Vec<String> = self.threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_eq!(self.failed.load(Ordering::Relaxed) as usize, errors.len());
        (self.ok.load(Ordering::Relaxed), errors)
    }

    fn allowed(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reload_cli(d: &BinDaemon) -> std::process::Output {
    std::process::Command::new(BIN)
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["reload", "--config"])
        .arg(&d.config)
        // The file says port 0 (the daemon picked one): the address it bound.
        .args(["--http", &d.addr.to_string()])
        .output()
        .unwrap()
}

#[test]
fn sighup_rotates_the_jwt_key_under_load_with_zero_failures_and_refuses_a_bad_config() {
    let d = BinDaemon::start(&config_k1(), &[]);
    user(&d, "alice");
    let old = login(&d, "alice");
    assert_eq!(kid_of(&old), "k1");

    // One connection opened before the reload, used after it.
    let mut kept = Client::connect(&d.socket).unwrap();
    assert!(kept.verify(&VerifyRequest::new(&old)).unwrap().is_allow());

    let load = Load::start(&d, vec![old.clone()], 3, 1);
    wait_until("load before the reload", || load.allowed() > 200);

    d.rewrite_config(&config_k2(&key_file("p256.pem")));
    d.signal("HUP");
    wait_until("k2 in the JWKS", || http(d.addr, "GET", "/.well-known/jwks.json", &[], None).text.contains("\"k2\""));
    let log = d.wait_for_log("configuration reloaded", 1);
    assert!(log.contains("signing key k2") && log.contains("added [k2]"), "{log}");

    // New tokens are signed by k2 and verify at once; old ones keep verifying.
    let new = login(&d, "alice");
    assert_eq!(kid_of(&new), "k2");
    assert!(http_valid(&d, &new));
    let at_reload = load.allowed();
    let load_new = Load::start(&d, vec![new.clone(), old.clone()], 2, 1);
    wait_until("load after the reload", || load.allowed() > at_reload + 200 && load_new.allowed() > 200);
    let (old_ok, old_errors) = load.finish();
    let (new_ok, new_errors) = load_new.finish();
    assert!(
        old_errors.is_empty(),
        "{} failed verifications of the old key's token: {:?}",
        old_errors.len(),
        &old_errors[..old_errors.len().min(5)]
    );
    assert!(
        new_errors.is_empty(),
        "{} failed verifications after the reload: {:?}",
        new_errors.len(),
        &new_errors[..new_errors.len().min(5)]
    );
    assert!(old_ok > 400 && new_ok > 200, "too little load to show anything: {old_ok} / {new_ok}");

    // The connection opened before the reload still works.
    assert!(kept.verify(&VerifyRequest::new(&old)).unwrap().is_allow());
    assert!(kept.verify(&VerifyRequest::new(&new)).unwrap().is_allow());

    // A bad configuration (k2's key file is gone) is refused, loudly, and
    // the one in force stays: k2 still signs, both tokens still verify.
    let jwks = http(d.addr, "GET", "/.well-known/jwks.json", &[], None).text;
    let m = d.metrics();
    assert_eq!(metric(&m, "tollgate_last_reload_success"), 1.0, "the applied reload");
    let applied_at = metric(&m, "tollgate_last_reload_timestamp_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - 120.0..=now + 1.0).contains(&applied_at), "{applied_at} vs {now}");
    d.rewrite_config(&config_k2("/nonexistent/k2.pem"));
    d.signal("HUP");
    let log = d.wait_for_log("configuration reload refused", 1);
    assert!(log.contains("jwt.keys[1].private_key_file") && log.contains("/nonexistent/k2.pem"), "{log}");
    assert_eq!(http(d.addr, "GET", "/.well-known/jwks.json", &[], None).text, jwks);
    assert!(http_valid(&d, &old) && http_valid(&d, &new));
    assert_eq!(kid_of(&login(&d, "alice")), "k2");
    assert!(kept.verify(&VerifyRequest::new(&new)).unwrap().is_allow());
    let m = d.metrics();
    assert_eq!(metric(&m, "tollgate_config_reloads_total{result=\"applied\"}"), 1.0);
    assert_eq!(metric(&m, "tollgate_config_reloads_total{result=\"refused\"}"), 1.0);
    assert_eq!(metric(&m, "tollgate_last_reload_success"), 0.0, "the refused reload is the last one");
    assert!(metric(&m, "tollgate_last_reload_timestamp_seconds") >= applied_at);

    // `tollgate reload` says the same, with a non-zero exit status.
    let out = reload_cli(&d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("tollgate.toml:") && err.contains("jwt.keys[1].private_key_file"),
        "{err}"
    );
    assert!(http_valid(&d, &new));

    // Retiring k1 altogether: its tokens stop verifying, k2's do not.
    let k2_only = format!(
        "{PRO_UNLIMITED}\n[jwt]\nsigning_kid = \"k2\"\n[[jwt.keys]]\nkid = \"k2\"\nalg = \"ES256\"\nprivate_key_file = \"{}\"\n",
        key_file("p256.pem")
    );
    d.rewrite_config(&k2_only);
    let out = reload_cli(&d);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reloaded") && stdout.contains("removed [k1]"), "{stdout}");
    assert!(!http_valid(&d, &old), "a removed key's tokens no longer verify");
    assert!(http_valid(&d, &new));
    assert!(kept.verify(&VerifyRequest::new(&new)).unwrap().is_allow());
    d.stop();
}

#[test]
fn reload_changes_tiers_routes_and_log_level_and_reports_what_needs_a_restart() {
    let base = |free_rpm: u32, route: &str, level: &str, extra: &str| {
        format!(
            "{extra}\n[tiers.Free]\nrequests_per_minute = {free_rpm}\nmembers = 1\ndocuments = 10\nlog_retention_days = 7\n\
             {PRO_UNLIMITED}\n[[auth.routes]]\nprefix = \"{route}\"\npermissions = {{ files = [\"write\"] }}\n\
             [log]\nlevel = \"{level}\"\n"
        )
    };
    let d = BinDaemon::start(&base(2, "/files/", "info", ""), &[]);

    // A Free team (2 verifications a minute) and a Pro key that may only read files.
    let free_team = d.call("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": "free", "tier": "Free"})), 201);
    let body =
        json!({"teamId": free_team["id"], "username": "fred", "password": "correct horse", "role": "Administrator"});
    let fred = d.call("POST", "/v1/users", ADMIN_TOKEN, Some(body), 201)["id"].as_str().unwrap().to_owned();
    let free_key =
        d.call("POST", "/v1/keys", ADMIN_TOKEN, Some(json!({"userId": fred})), 201)["key"].as_str().unwrap().to_owned();
    let alice = user(&d, "alice");
    let pro_key = d.call(
        "POST",
        "/v1/keys",
        ADMIN_TOKEN,
        Some(json!({"userId": alice, "permissions": {"files": ["read"]}})),
        201,
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let verdict = |k: &str| {
        http(d.addr, "POST", "/v1/verify", &[], Some(&json!({"credential": k}).to_string())).json()["code"]
            .as_str()
            .unwrap_or("ALLOW")
            .to_owned()
    };
    assert_eq!(verdict(&free_key), "ALLOW");
    assert_eq!(verdict(&free_key), "ALLOW");
    assert_eq!(verdict(&free_key), "TEAM_RATE_LIMITED");
    let auth = |uri: &str| {
        http(
            d.addr,
            "GET",
            "/auth",
            &[("X-API-Key", &pro_key), ("X-Original-URI", uri), ("X-Original-Method", "GET")],
            None,
        )
    };
    assert_eq!(auth("/files/a").status, 403, "the rule asks for files:write");
    assert_eq!(auth("/docs/a").status, 200);
    assert!(!d.log_text().contains("DEBUG"), "info level logs no debug line");

    // Raise the Free tier, move the rule to /docs/, log at debug, and change
    // a setting that needs a restart.
    d.rewrite_config(&base(100, "/docs/", "tollgate=debug", "max_connections = 7"));
    let out = reload_cli(&d);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("applied: tiers"), "{stdout}");
    assert!(stdout.contains("applied: auth: 1 route rule(s)"), "{stdout}");
    assert!(stdout.contains("applied: log.level: \"info\" -> \"tollgate=debug\""), "{stdout}");
    assert!(stdout.contains("needs a restart: max_connections"), "{stdout}");

    assert_eq!(verdict(&free_key), "ALLOW", "the new tier limit is in force");
    assert_eq!(auth("/files/a").status, 200, "the old rule is gone");
    assert_eq!(auth("/docs/a").status, 403, "the new rule is in force");
    let r = http(d.addr, "GET", "/healthz", &[], None);
    let id = r.header("x-request-id").unwrap().to_owned();
    let log = d.wait_for_log(&format!("request_id={id}"), 1);
    let line = log.lines().find(|l| l.contains(&format!("request_id={id}"))).unwrap();
    // The access line is INFO; at debug it also carries the path.
    assert!(line.contains("path=/healthz") && line.contains("status=200"), "{line}");

    // The reload endpoint is the admin token's alone.
    let login = http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &basic("alice", "correct horse"))], None);
    let jwt = login.json()["token"].as_str().unwrap().to_owned();
    let r = http(d.addr, "POST", "/v1/admin/reload", &[("Authorization", &format!("Bearer {jwt}"))], None);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(http(d.addr, "POST", "/v1/admin/reload", &[], None).status, 401);
    d.stop();
}

#[test]
fn reload_without_a_config_file_is_refused_with_a_reason() {
    // The in-process daemon has no file to read again.
    let d = common::start_http(|_| {});
    let r = http(d.addr, "POST", "/v1/admin/reload", &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))], None);
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "no_config_file");
}
