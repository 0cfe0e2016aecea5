//! The `tollgate-admin` CLI and client end to end against the real daemon
//! (`server::serve`, temp data dir, free port). Most of it drives the CLI
//! through `tollgate_admin::run`, the entry point its binary's `main` calls;
//! what needs a process of its own (stdin, a terminal, stderr as printed) runs
//! the `tollgate-admin` binary itself ([`admin_bin`]), under a pseudo-terminal
//! where a person would type ([`Pty`]). Over plain HTTP and over the daemon's
//! HTTPS listener. The daemon and the CLI share their JSON types (the
//! `tollgate-api` crate), so there is no mirror to check.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tollgate_admin::error::{
    EXIT_CONNECTION, EXIT_DENIED, EXIT_FORBIDDEN, EXIT_NOT_FOUND, EXIT_RATE_LIMITED, EXIT_REFUSED,
    EXIT_UNAUTHENTICATED, EXIT_USAGE,
};
use tollgate_admin::{CliError, Output};

use crate::common;

use common::{ADMIN_TOKEN as ADMIN, HttpDaemon as Daemon, admin_bin};

fn start() -> Daemon {
    common::start_http(|_| {})
}

/// What this module's tests call on the shared harness type (a trait: the
/// modules of the one test binary each add their own).
trait DaemonExt {
    fn cli(&self, token: &str, args: &[&str]) -> Result<Output, CliError>;
    fn ok(&self, token: &str, args: &[&str]) -> Output;
    fn json(&self, token: &str, args: &[&str]) -> Value;
    fn err(&self, token: &str, args: &[&str]) -> CliError;
    fn bin(&self) -> Command;
    fn team_with_admin(&self, name: &str, username: &str) -> (String, String);
    fn login(&self, username: &str) -> String;
}

impl DaemonExt for Daemon {
    /// Runs the CLI with `--url` and `--token`.
    fn cli(&self, token: &str, args: &[&str]) -> Result<Output, CliError> {
        let mut all = vec!["tollgate-admin", "--url", &self.url, "--token", token];
        all.extend_from_slice(args);
        tollgate_admin::run(all)
    }

    fn ok(&self, token: &str, args: &[&str]) -> Output {
        self.cli(token, args).unwrap_or_else(|e| panic!("{args:?} failed ({}): {}", e.code, e.message))
    }

    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(token, &a).stdout).unwrap()
    }

    fn err(&self, token: &str, args: &[&str]) -> CliError {
        match self.cli(token, args) {
            Ok(o) => panic!("{args:?} succeeded: {}", o.stdout),
            Err(e) => e,
        }
    }

    /// The `tollgate-admin` binary with `--url` set and no credential or
    /// password from this process's environment.
    fn bin(&self) -> Command {
        let mut c = Command::new(admin_bin());
        for v in ["TOLLGATE_URL", "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_TOKEN", "TOLLGATE_PASSWORD", "TOLLGATE_TIMEOUT"] {
            c.env_remove(v);
        }
        c.args(["--url", &self.url]);
        c
    }

    /// A Pro team and an Administrator in it; returns (team id, user id).
    fn team_with_admin(&self, name: &str, username: &str) -> (String, String) {
        let team = self.json(ADMIN, &["teams", "create", name, "--tier", "Pro"]);
        let team_id = team["id"].as_str().unwrap().to_owned();
        let user = self.json(
            ADMIN,
            &[
                "users",
                "create",
                username,
                "--role",
                "Administrator",
                "--password",
                "correct horse",
                "--team",
                &team_id,
            ],
        );
        (team_id, user["id"].as_str().unwrap().to_owned())
    }

    fn login(&self, username: &str) -> String {
        self.ok("unused", &["login", username, "--password", "correct horse"]).stdout.trim().to_owned()
    }
}

/// A process whose stdin, stdout and stderr are a pseudo-terminal, its
/// controlling terminal (so `/dev/tty` is it): what a person at a terminal
/// would see and type.
struct Pty {
    child: std::process::Child,
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    fn spawn(cmd: Command) -> Pty {
        use std::os::unix::ffi::OsStrExt as _;
        use std::os::unix::fs::OpenOptionsExt;

        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(std::ffi::OsStr::from_bytes(name.as_bytes()))
            .expect("open the terminal's end");
        let master = std::fs::File::from(master);
        // util-linux's `setsid --ctty` starts the program in a new session
        // whose controlling terminal is its stdin: this terminal.
        let mut wrapped = Command::new("setsid");
        wrapped.arg("--ctty").arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped.stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave);
        let mut cmd = wrapped;
        let child = cmd.spawn().expect("spawn under a pty");
        // The parent's copies of the terminal's end close with `cmd`: reading
        // the master then ends when the child exits.
        drop(cmd);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut r, sink) = (master.try_clone().unwrap(), Arc::clone(&seen));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child's side is closed.
            while let Ok(n @ 1..) = r.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { child, master, seen, reader: Some(reader) }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal shows `needle`.
    fn expect(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(needle) {
            assert!(Instant::now() < deadline, "the terminal never showed {needle:?}: {:?}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `line` and Enter.
    fn type_line(&mut self, line: &str) {
        self.master.write_all(format!("{line}\r").as_bytes()).unwrap();
    }

    /// Waits for the exit; returns the exit code and everything the terminal showed.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "still running: {:?}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(self.master);
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status.code().unwrap_or(-1), String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned())
    }
}

/// Runs `cmd` with `stdin` as its standard input (`None`: /dev/null).
fn output(mut cmd: Command, stdin: Option<&str>) -> (i32, String, String) {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn rfc3339_ms(s: &str) -> u64 {
    humantime::parse_rfc3339(s).unwrap().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Checks the one list shape of every list command and returns `data`.
fn list_shape(v: &Value) -> &Vec<Value> {
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["count", "data", "nextCursor", "total"], "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(v["count"].as_u64(), Some(data.len() as u64), "{v}");
    assert!(v["nextCursor"].is_null() || v["nextCursor"].is_string(), "{v}");
    data
}

#[test]
fn first_session_through_the_cli() {
    let d = start();

    // Team and user with the admin token.
    let team = d.json(ADMIN, &["teams", "create", "acme", "--tier", "Pro"]);
    let team_id = team["id"].as_str().unwrap().to_owned();
    assert_eq!(team["tier"], "Pro");
    let human = d.ok(ADMIN, &["teams", "get", &team_id]).stdout;
    assert!(human.contains("tier                Pro"), "{human}");
    // The tier's limits next to the use (the test daemon lifts Pro's per-minute limit).
    for row in ["members             0 (unlimited)", "documents           0 / 5000", "requestsThisMinute  unlimited"] {
        assert!(human.contains(row), "{row:?} in\n{human}");
    }
    assert_eq!(d.ok(ADMIN, &["teams", "show", &team_id]).stdout, human, "show is get");
    let released = d.json(ADMIN, &["teams", "release-documents", &team_id, "3"]);
    assert_eq!(released, serde_json::json!({"limit": 5000, "used": 0}));
    let table = d.ok(ADMIN, &["teams", "list"]).stdout;
    assert!(table.starts_with("ID") && table.contains(&team_id) && table.contains("acme"), "{table}");

    // A password on the command line works, with a warning.
    let created = d.ok(
        ADMIN,
        &["users", "create", "alice", "--role", "administrator", "--password", "correct horse", "--team", &team_id],
    );
    assert!(created.stderr.starts_with("warning: --password on the command line is visible"), "{}", created.stderr);
    let user_id = created.stdout.lines().find_map(|l| l.strip_prefix("id")).unwrap().trim().to_owned();
    let list = d.ok(ADMIN, &["users", "list", "--team", &team_id]).stdout;
    assert!(list.starts_with("ID "), "{list}");
    assert!(list.contains("alice") && list.contains("Administrator"), "{list}");

    // Log in: the JWT is the whole of stdout.
    let jwt = d.login("alice");
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let bad = d.err("unused", &["login", "alice", "--password", "wrong"]);
    assert_eq!(bad.code, EXIT_UNAUTHENTICATED);
    assert!(bad.message.contains("invalid_credentials"), "{}", bad.message);

    // A key, created with the user's JWT; the secret is shown once with a warning.
    let created = d.ok(&jwt, &["keys", "create", "--name", "ci", "--permission", "docs:read", "--remaining", "100"]);
    assert!(created.stderr.contains("only time"), "{}", created.stderr);
    let secret =
        created.stdout.lines().find_map(|l| l.strip_prefix("secret: ")).expect("the secret is printed").to_owned();
    let key_id = created.stdout.lines().find_map(|l| l.strip_prefix("id")).unwrap().trim().to_owned();
    let key: Value = d.json(&jwt, &["keys", "get", &key_id]);
    assert!(key.get("key").is_none(), "the secret is never shown again");

    // Verify like a protected service.
    let allowed = d.ok("unused", &["verify", &secret, "--permission", "docs:read"]).stdout;
    assert!(allowed.contains("ALLOW") && allowed.contains(&user_id), "{allowed}");
    let v = d.json("unused", &["verify", &secret]);
    assert_eq!((v["valid"].as_bool(), v["remaining"].as_u64()), (Some(true), Some(98)));
    let denied = d.err("unused", &["verify", &secret, "--permission", "docs:delete"]);
    assert_eq!(denied.code, EXIT_DENIED);
    assert!(denied.stdout.contains("INSUFFICIENT_PERMISSIONS"), "{}", denied.stdout);

    // List: a table with last use, owner and creation, then the list shape in --json.
    let table = d.ok(&jwt, &["keys", "list"]).stdout;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let columns =
        ["ID", "NAME", "START", "STATUS", "REMAINING", "REQUESTS", "LAST USED", "EXPIRES", "OWNER", "CREATED"];
    let mut at = 0;
    for c in columns {
        at += header[at..].find(c).unwrap_or_else(|| panic!("no {c} column after {at}: {header}"));
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&key_id) && row.contains("active"), "{table}");
    // Columns line up: each header starts where its column's cells start.
    assert_eq!(header.find("STATUS"), row.find("active"), "{table}");
    assert_eq!(header.find("OWNER"), row.find(&user_id), "{table}");
    let last_used = &row[header.find("LAST USED").unwrap()..];
    assert!(last_used.starts_with("20"), "used by the verifications above: {table}");
    assert!(table.contains("1 of 1 keys"), "{table}");
    let listed = d.json(&jwt, &["keys", "list"]);
    let data = list_shape(&listed);
    assert_eq!((data[0]["id"].as_str(), listed["total"].as_u64()), (Some(key_id.as_str()), Some(1)));
    let admin_list = d.json(ADMIN, &["keys", "list", "--team", &team_id, "--limit", "1"]);
    assert_eq!(admin_list["count"], 1);

    // Update, then delete the key: it verifies as unknown.
    let up = d.json(&jwt, &["keys", "update", &key_id, "--disable", "--unlimited"]);
    assert_eq!((up["enabled"].as_bool(), &up["remaining"]), (Some(false), &Value::Null));
    assert!(d.ok(&jwt, &["keys", "list", "--inactive"]).stdout.contains(&key_id));
    assert_eq!(d.ok(&jwt, &["keys", "delete", &key_id]).stdout, format!("deleted key {key_id}\n"));
    let gone = d.err("unused", &["--json", "verify", &secret]);
    assert_eq!(gone.code, EXIT_DENIED);
    let verdict: Value = serde_json::from_str(&gone.stdout).unwrap();
    assert_eq!((verdict["valid"].as_bool(), verdict["code"].as_str()), (Some(false), Some("NOT_FOUND")));

    // Access tokens belong to the calling user.
    let tok = d.json(&jwt, &["tokens", "create", "laptop", "--expires-in", "30d"]);
    let plaintext = tok["plaintext"].as_str().unwrap().to_owned();
    let tok_id = tok["token"]["id"].as_str().unwrap().to_owned();
    assert!(d.ok(&jwt, &["tokens", "list"]).stdout.contains(&tok_id));
    assert!(d.ok(&plaintext, &["tokens", "get", &tok_id]).stdout.contains("laptop"));
    let r = d.json(&jwt, &["tokens", "revoke-all"]);
    assert_eq!(r["revokedCount"], 1);
    assert_eq!(d.err(&plaintext, &["tokens", "list"]).code, EXIT_UNAUTHENTICATED);

    // The audit log: the key's life and its denials (written asynchronously).
    let deadline = Instant::now() + Duration::from_secs(10);
    let denials = loop {
        let d = d.json(&jwt, &["logs", "--outcome", "denied"]);
        // (The deleted key's NOT_FOUND names no team: counted, not in the team's log.)
        let found = d["data"].as_array().is_some_and(|i| i.iter().any(|e| e["detail"] == "INSUFFICIENT_PERMISSIONS"));
        if found || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let codes: Vec<&str> = list_shape(&denials).iter().filter_map(|e| e["detail"].as_str()).collect();
    assert!(codes.contains(&"INSUFFICIENT_PERMISSIONS"), "{codes:?}");
    let log = d.ok(&jwt, &["logs", "--action", "DeleteKey"]).stdout;
    assert!(log.starts_with("AT ") && log.contains(&key_id) && log.contains("success"), "{log}");

    // Tier change and team deletion need the admin token.
    let e = d.err(&jwt, &["teams", "set-tier", &team_id, "Free"]);
    assert!(e.message.starts_with("HTTP 403"), "{}", e.message);
    assert_eq!(e.code, EXIT_FORBIDDEN);
    let t = d.json(ADMIN, &["teams", "set-tier", &team_id, "master"]);
    assert_eq!(t["tier"], "Master");
    // Two members do not fit the Free tier: refused (409), unless forced.
    d.ok(ADMIN, &["users", "create", "second", "--role", "Reader", "--password", "correct horse", "--team", &team_id]);
    let e = d.err(ADMIN, &["teams", "set-tier", &team_id, "Free"]);
    assert!(e.message.contains("409") && e.message.contains("members"), "{}", e.message);
    assert_eq!(e.code, EXIT_REFUSED);
    assert_eq!(d.json(ADMIN, &["teams", "set-tier", &team_id, "Free", "--force"])["tier"], "Free");
    d.ok(ADMIN, &["teams", "set-tier", &team_id, "Master"]);

    // Sessions: one by its jti, then every one of the user's.
    let j1 = d.login("alice");
    let j2 = d.login("alice");
    let jti = d.json("unused", &["verify", &j1])["credentialId"].as_str().unwrap().to_owned();
    d.ok(&j1, &["users", "revoke-session", &jti]);
    assert_eq!(d.err("unused", &["verify", &j1]).code, EXIT_DENIED);
    d.ok("unused", &["verify", &j2]);
    d.ok(&j2, &["users", "logout", &user_id]);
    assert_eq!(d.err("unused", &["verify", &j2]).code, EXIT_DENIED);
}

/// One test per class of exit code, each against the real daemon.
#[test]
fn exit_codes_by_class() {
    let d = start();
    let (team_id, _) = d.team_with_admin("classes", "carl");
    let jwt = d.login("carl");

    // 1: a denied verdict.
    assert_eq!(d.err("unused", &["verify", "tg_not-a-key"]).code, EXIT_DENIED);
    // 2: usage, before any call.
    assert_eq!(d.err(ADMIN, &["keys", "create", "--metadata", "[1]"]).code, EXIT_USAGE);
    assert_eq!(d.err(ADMIN, &["keys", "update", "k"]).code, EXIT_USAGE);
    // 3: nothing listens there.
    let port = common::free_port();
    let e = tollgate_admin::run([
        "tollgate-admin",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        ADMIN,
        "teams",
        "get",
        "x",
    ])
    .unwrap_err();
    assert_eq!((e.code, e.kind.as_str()), (EXIT_CONNECTION, "unreachable"), "{}", e.message);
    // 4: a wrong credential.
    let e = d.err("tgadmin_not-the-token", &["teams", "get", "x"]);
    assert_eq!(e.code, EXIT_UNAUTHENTICATED);
    assert!(e.message.starts_with("HTTP 401"), "{}", e.message);
    // 5: a user may not change the tier.
    assert_eq!(d.err(&jwt, &["teams", "set-tier", &team_id, "Free"]).code, EXIT_FORBIDDEN);
    // 6: no such key.
    let e = d.err(ADMIN, &["keys", "get", "no-such-key"]);
    assert_eq!(e.code, EXIT_NOT_FOUND);
    assert!(e.message.contains("HTTP 404: not_found"), "{}", e.message);
    // 7: a key allowed one call a minute, used twice; Retry-After is shown.
    let key = d.json(
        &jwt,
        &["keys", "create", "--permission", "keys:read", "--rate-limit-max", "1", "--rate-limit-window", "1m"],
    );
    assert_eq!(key["rateLimitTimeWindow"], 60_000);
    let key = key["key"].as_str().unwrap().to_owned();
    d.ok(&key, &["keys", "list"]);
    let e = d.err(&key, &["keys", "list"]);
    assert_eq!(e.code, EXIT_RATE_LIMITED, "{}", e.message);
    let secs = e.retry_after().expect("Retry-After");
    assert!((1..=60).contains(&secs), "{secs}");
    assert!(e.message.ends_with(&format!("; retry after {secs} s")), "{}", e.message);
    // 8: a value the daemon refuses (422), named by its flag.
    let e = d.err(ADMIN, &["users", "list"]);
    assert_eq!(e.code, EXIT_REFUSED);
    assert_eq!(e.message, "HTTP 422: validation_failed: --team: the admin token must name a team");
    assert!(!e.message.contains("teamId"), "{}", e.message);
}

#[test]
fn errors_name_the_flags() {
    let d = start();
    let (team_id, _) = d.team_with_admin("flags", "fay");
    let jwt = d.login("fay");
    let cases: [(&[&str], &str); 5] = [
        (&["users", "create", "gus", "--role", "Reader", "--password", "short", "--team", &team_id], "--password: "),
        (&["keys", "create", "--expires-in", "200y"], "--expires-in: must be at most"),
        (&["keys", "create", "--refill-amount", "5"], "--refill-interval: required with refillAmount"),
        (&["keys", "create", "--ip", "not-an-ip"], "--ip: \"not-an-ip\" is not an IP address"),
        (&["tokens", "create", ""], "<NAME>: must be 1 to 255 characters"),
    ];
    for (args, want) in cases {
        let e = d.err(&jwt, args);
        assert_eq!(e.code, EXIT_REFUSED, "{args:?}: {}", e.message);
        assert!(e.message.contains(want), "{args:?}: {}", e.message);
    }
    let e = d.err(&jwt, &["--json", "keys", "create", "--expires-in", "200y"]);
    let v: Value = serde_json::from_str(e.stderr().trim()).unwrap();
    assert_eq!(v["fields"][0]["flag"], "--expires-in");
    assert_eq!(v["fields"][0]["field"], "body.expiresIn");
}

#[test]
fn json_errors_are_one_object_on_stderr() {
    let d = start();
    // The binary itself: stdout empty, stderr one JSON object, per class.
    let run = |args: &[&str]| {
        let mut c = d.bin();
        c.arg("--json").args(args);
        let (code, stdout, stderr) = output(c, None);
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        let v: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"));
        assert_eq!(v["exitCode"].as_i64(), Some(code.into()), "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    };
    let v = run(&["--token", ADMIN, "keys", "get", "nope"]);
    assert_eq!(
        (v["code"].as_str(), v["status"].as_u64(), v["exitCode"].as_i64()),
        (Some("not_found"), Some(404), Some(6))
    );
    let v = run(&["--token", "wrong", "teams", "list"]);
    assert_eq!((v["status"].as_u64(), v["exitCode"].as_i64()), (Some(401), Some(4)));
    let v = run(&["--token", ADMIN, "users", "list"]);
    assert_eq!((v["code"].as_str(), v["status"].as_u64()), (Some("validation_failed"), Some(422)));
    assert_eq!(v["fields"][0]["flag"], "--team");
    let v = run(&["--token", ADMIN, "logs", "--outcome", "bogus"]);
    assert_eq!((v["code"].as_str(), &v["status"], v["exitCode"].as_i64()), (Some("usage"), &Value::Null, Some(2)));
    let v = run(&["keys", "list"]);
    assert_eq!((v["code"].as_str(), v["exitCode"].as_i64()), (Some("usage"), Some(2)), "no credential");
    let mut c = Command::new(admin_bin());
    c.args(["--json", "--url", &format!("http://127.0.0.1:{}", common::free_port()), "--token", "t", "teams", "list"]);
    let (code, _, stderr) = output(c, None);
    let v: Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!((code, v["code"].as_str(), &v["status"]), (3, Some("unreachable"), &Value::Null));

    // A denied verdict: the verdict on stdout, the error object on stderr.
    let mut c = d.bin();
    c.args(["--json", "verify", "tg_nope"]);
    let (code, stdout, stderr) = output(c, None);
    assert_eq!(code, 1);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["valid"], false);
    assert_eq!(serde_json::from_str::<Value>(&stderr).unwrap()["code"], "denied");

    // Warnings are JSON lines too.
    let mut c = d.bin();
    let team = d.json(ADMIN, &["teams", "create", "warned"]);
    c.args(["--json", "--token", ADMIN, "users", "create", "wes", "--role", "Reader", "--password", "correct horse"]);
    c.args(["--team", team["id"].as_str().unwrap()]);
    let (code, stdout, stderr) = output(c, None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["username"], "wes");
    let w: Value = serde_json::from_str(stderr.trim()).unwrap();
    assert!(w["warning"].as_str().unwrap().contains("--password on the command line"), "{w}");
}

#[test]
fn every_list_has_one_shape_and_all_pages() {
    let d = start();
    let (team_id, _) = d.team_with_admin("lists", "lou");
    let jwt = d.login("lou");
    let mut ids: Vec<String> = (0..5)
        .map(|i| d.json(&jwt, &["keys", "create", "--name", &format!("k{i}")])["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    for i in 0..3 {
        d.ok(&jwt, &["tokens", "create", &format!("t{i}")]);
    }

    // Every list command, the same four fields.
    for args in [
        &["teams", "list"][..],
        &["users", "list", "--team", &team_id],
        &["keys", "list"],
        &["tokens", "list"],
        &["logs"],
    ] {
        let token = if args[0] == "teams" || args[0] == "users" { ADMIN } else { &jwt };
        list_shape(&d.json(token, args));
    }

    // keys: one page and its cursor; the next page from it; --all to the end.
    let page = d.json(&jwt, &["keys", "list", "--limit", "2"]);
    let got: Vec<&str> = list_shape(&page).iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!((got, page["total"].as_u64()), (vec![ids[0].as_str(), ids[1].as_str()], Some(5)));
    assert_eq!(page["nextCursor"], ids[1].as_str());
    let next = d.json(&jwt, &["keys", "list", "--limit", "2", "--cursor", &ids[1]]);
    assert_eq!(next["data"][0]["id"], ids[2].as_str());
    let all = d.json(&jwt, &["keys", "list", "--limit", "2", "--all"]);
    let got: Vec<&str> = list_shape(&all).iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(all["nextCursor"], Value::Null);
    let human = d.ok(&jwt, &["keys", "list", "--limit", "2"]).stdout;
    assert!(human.contains(&format!("2 of 5 keys\nnext page: --cursor {}", ids[1])), "{human}");
    assert!(d.ok(&jwt, &["keys", "list", "--limit", "2", "--all"]).stdout.contains("5 of 5 keys\n"));

    // tokens and logs page with --cursor and --all the same way.
    let page = d.json(&jwt, &["tokens", "list", "--limit", "2"]);
    assert_eq!(list_shape(&page).len(), 2);
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    assert_eq!(list_shape(&d.json(&jwt, &["tokens", "list", "--limit", "2", "--cursor", &cursor])).len(), 1);
    let all = d.json(&jwt, &["tokens", "list", "--limit", "2", "--all"]);
    assert_eq!((list_shape(&all).len(), &all["nextCursor"]), (3, &Value::Null));
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_shape(&d.json(&jwt, &["logs", "--action", "CreateKey"])).len() < 5 {
        assert!(Instant::now() < deadline, "the audit log never showed 5 CreateKey");
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = d.json(&jwt, &["logs", "--action", "CreateKey", "--limit", "2", "--all"]);
    assert_eq!((list_shape(&all).len(), &all["nextCursor"]), (5, &Value::Null));
}

#[test]
fn fixed_choices_are_checked_before_any_call() {
    let d = start();
    for (args, flag, choices) in [
        (&["logs", "--outcome", "bogus"][..], "--outcome", "success, failure, denied"),
        (&["teams", "create", "x", "--tier", "Gold"], "--tier", "Free, Start, Master, Pro"),
        (&["teams", "set-tier", "t", "Gold"], "<TIER>", "Free, Start, Master, Pro"),
        (
            &["users", "create", "u", "--role", "Emperor", "--password-stdin"],
            "--role",
            "Administrator, Manager, Author, Reader",
        ),
        (&["users", "update", "u", "--status", "Deleted"], "--status", "Pending, Enabled, Disabled, Blocked"),
        (&["tokens", "create", "t", "--type", "robot"], "--type", "personal, session, service"),
        (&["tokens", "list", "--type", "robot"], "--type", "personal, session, service"),
        (&["completions", "tcsh"], "<SHELL>", "bash"),
    ] {
        let e = d.err(ADMIN, args);
        assert_eq!(e.code, EXIT_USAGE, "{args:?}: {}", e.message);
        assert!(e.message.contains(flag) && e.message.contains(choices), "{args:?}: {}", e.message);
    }
    // Bad durations and times are usage errors naming the flag.
    for (args, flag) in [
        (&["keys", "create", "--expires-in", "soon"][..], "--expires-in"),
        (&["keys", "create", "--expires-in", "500ms"], "--expires-in"),
        (&["keys", "create", "--rate-limit-window", "1 fortnight"], "--rate-limit-window"),
        (&["tokens", "create", "t", "--expires-in", "36h"], "--expires-in"),
        (&["logs", "--since", "yesterday"], "--since"),
        (&["--timeout", "forever", "teams", "list"], "--timeout"),
    ] {
        let e = d.err(ADMIN, args);
        assert_eq!(e.code, EXIT_USAGE, "{args:?}: {}", e.message);
        assert!(e.message.contains(flag), "{args:?}: {}", e.message);
    }
    // Choices ignore case, and what is sent is the daemon's spelling.
    let t = d.json(ADMIN, &["teams", "create", "cased", "--tier", "pRo"]);
    assert_eq!(t["tier"], "Pro");
    // Nothing above reached the daemon's log.
    let log = d.json(ADMIN, &["logs", "--team", t["id"].as_str().unwrap()]);
    assert!(list_shape(&log).iter().all(|e| e["action"] == "CreateTeam"), "{log}");
}

#[test]
fn durations_and_times_in_human_units() {
    let d = start();
    let (team_id, _) = d.team_with_admin("units", "una");
    let jwt = d.login("una");
    let day_ms = 86_400_000;

    let k =
        d.json(&jwt, &["keys", "create", "--expires-in", "30d", "--rate-limit-max", "5", "--rate-limit-window", "1m"]);
    let left = rfc3339_ms(k["expiresAt"].as_str().unwrap()) as i64 - now_ms() as i64;
    assert!((left - 30 * day_ms).abs() < 60_000, "{k}");
    assert_eq!(k["rateLimitTimeWindow"], 60_000);
    // The old plain numbers: seconds for --expires-in, milliseconds for the windows.
    let k =
        d.json(&jwt, &["keys", "create", "--expires-in", "3600", "--refill-amount", "3", "--refill-interval", "90000"]);
    let left = rfc3339_ms(k["expiresAt"].as_str().unwrap()) as i64 - now_ms() as i64;
    assert!((left - 3_600_000).abs() < 60_000, "{k}");
    assert_eq!(k["refillInterval"], 90_000);
    let id = k["id"].as_str().unwrap();
    let k = d.json(&jwt, &["keys", "update", id, "--refill-amount", "3", "--refill-interval", "1h 30m"]);
    assert_eq!(k["refillInterval"], 5_400_000);
    assert!(d.ok(&jwt, &["keys", "get", id]).stdout.contains("3 every 1h 30m"));

    let t = d.json(&jwt, &["tokens", "create", "month", "--expires-in", "30d"]);
    let left = rfc3339_ms(t["token"]["expiresAt"].as_str().unwrap()) as i64 - now_ms() as i64;
    assert!((left - 30 * day_ms).abs() < 60_000, "{t}");
    let t = d.json(&jwt, &["tokens", "create", "week", "--days", "7"]);
    let left = rfc3339_ms(t["token"]["expiresAt"].as_str().unwrap()) as i64 - now_ms() as i64;
    assert!((left - 7 * day_ms).abs() < 60_000, "{t}");

    // --since / --until: a duration ago, an RFC 3339 time, epoch milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_shape(&d.json(ADMIN, &["logs", "--team", &team_id, "--action", "CreateToken"])).len() < 2 {
        assert!(Instant::now() < deadline, "the audit log never showed the tokens");
        std::thread::sleep(Duration::from_millis(50));
    }
    let count = |args: &[&str]| {
        let mut all = vec!["logs", "--team", &team_id, "--action", "CreateToken"];
        all.extend_from_slice(args);
        list_shape(&d.json(ADMIN, &all)).len()
    };
    let later = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600)).to_string();
    let earlier = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(3600)).to_string();
    assert_eq!(count(&["--since", "2h"]), 2);
    assert_eq!(count(&["--until", "2h"]), 0);
    assert_eq!(count(&["--since", &later]), 0);
    assert_eq!(count(&["--since", &earlier, "--until", &later]), 2);
    assert_eq!(count(&["--since", &(now_ms() - 3_600_000).to_string()]), 2);
    assert_eq!(count(&["--until", "0"]), 0);
}

#[test]
fn timeout_gives_up_on_a_daemon_that_never_answers() {
    // Accepts connections, reads nothing, answers nothing.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&held);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let started = Instant::now();
    let e =
        tollgate_admin::run(["tollgate-admin", "--url", &url, "--token", "t", "--timeout", "500ms", "teams", "list"])
            .unwrap_err();
    let took = started.elapsed();
    assert_eq!((e.code, e.kind.as_str()), (EXIT_CONNECTION, "timeout"), "{}", e.message);
    assert!(e.message.contains("did not answer within 500ms (--timeout)"), "{}", e.message);
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(held.lock().unwrap().len(), 1, "the connection was made");

    // The binary, with the timeout from the environment, in JSON.
    let mut c = Command::new(admin_bin());
    c.args(["--json", "--url", &url, "--token", "t", "keys", "list"]).env("TOLLGATE_TIMEOUT", "1s");
    let started = Instant::now();
    let (code, _, stderr) = output(c, None);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let v: Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!((code, v["code"].as_str(), v["exitCode"].as_i64()), (3, Some("timeout"), Some(3)), "{stderr}");
}

#[test]
fn login_asks_for_the_password_on_a_terminal() {
    let d = start();
    d.team_with_admin("prompt", "pat");

    // A terminal: the prompt, the password typed without echo, the JWT.
    let mut c = d.bin();
    c.args(["login", "pat"]);
    let mut pty = Pty::spawn(c);
    pty.expect("Password: ");
    pty.type_line("correct horse");
    let (code, shown) = pty.finish();
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("correct horse"), "the password was echoed: {shown:?}");
    let jwt = shown.lines().last().unwrap().trim();
    assert_eq!(jwt.split('.').count(), 3, "{shown:?}");
    assert!(!shown.contains("warning"), "{shown:?}");
    assert!(d.json("unused", &["verify", jwt])["valid"].as_bool().unwrap());

    // A wrong password typed at the prompt: 401, exit 4.
    let mut c = d.bin();
    c.args(["login", "pat"]);
    let mut pty = Pty::spawn(c);
    pty.expect("Password: ");
    pty.type_line("wrong horse");
    let (code, shown) = pty.finish();
    assert_eq!(code, EXIT_UNAUTHENTICATED, "{shown}");

    // No terminal: refused, before any call, saying what to do.
    let mut c = d.bin();
    c.args(["login", "pat"]);
    let (code, stdout, stderr) = output(c, None);
    assert_eq!((code, stdout.as_str()), (EXIT_USAGE, ""), "{stderr}");
    assert!(stderr.contains("stdin is not a terminal") && stderr.contains("--password-stdin"), "{stderr}");

    // --password-stdin: the first line of stdin; no warning.
    let mut c = d.bin();
    c.args(["login", "pat", "--password-stdin"]);
    let (code, stdout, stderr) = output(c, Some("correct horse\n"));
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    assert_eq!(stdout.trim().split('.').count(), 3, "{stdout}");

    // On the command line: works, with a warning on stderr.
    let mut c = d.bin();
    c.args(["login", "pat", "--password", "correct horse"]);
    let (code, stdout, stderr) = output(c, None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "{stdout}");
    assert!(stderr.starts_with("warning: --password on the command line is visible to other users"), "{stderr}");
    // From the environment: no warning.
    let mut c = d.bin();
    c.args(["login", "pat"]).env("TOLLGATE_PASSWORD", "correct horse");
    let (code, _, stderr) = output(c, None);
    assert_eq!((code, stderr.as_str()), (0, ""));

    // users create asks twice on a terminal; different answers send nothing.
    let team = d.json(ADMIN, &["teams", "create", "prompted", "--tier", "Pro"]);
    let team_id = team["id"].as_str().unwrap();
    let mut c = d.bin();
    c.args(["--token", ADMIN, "users", "create", "quinn", "--role", "Reader", "--team", team_id]);
    let mut pty = Pty::spawn(c);
    pty.expect("New password: ");
    pty.type_line("correct horse");
    pty.expect("Repeat it: ");
    pty.type_line("correct horsf");
    let (code, shown) = pty.finish();
    assert_eq!(code, EXIT_USAGE, "{shown}");
    assert!(shown.contains("the two passwords differ"), "{shown}");
    let mut c = d.bin();
    c.args(["--token", ADMIN, "users", "create", "quinn", "--role", "Reader", "--team", team_id]);
    let mut pty = Pty::spawn(c);
    pty.expect("New password: ");
    pty.type_line("correct horse");
    pty.expect("Repeat it: ");
    pty.type_line("correct horse");
    let (code, shown) = pty.finish();
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("correct horse"), "{shown}");
    assert_eq!(d.login("quinn").split('.').count(), 3);
}

#[test]
fn deleting_a_team_or_user_is_confirmed() {
    let d = start();
    let (team_id, user_id) = d.team_with_admin("doomed", "dora");
    let exists = |what: &str, id: &str| d.cli(ADMIN, &[what, "get", id]).is_ok();

    // No terminal and no --yes: refused, nothing deleted.
    for args in [["teams", "delete", &team_id], ["users", "delete", &user_id]] {
        let mut c = d.bin();
        c.args(["--token", ADMIN]).args(args);
        let (code, _, stderr) = output(c, None);
        assert_eq!(code, EXIT_USAGE, "{args:?}: {stderr}");
        assert!(stderr.contains("pass --yes") && stderr.contains("nothing was deleted"), "{stderr}");
    }
    assert!(exists("teams", &team_id) && exists("users", &user_id));

    // A terminal: the wrong name keeps the team; its name deletes it.
    let mut c = d.bin();
    c.args(["--token", ADMIN, "teams", "delete", &team_id]);
    let mut pty = Pty::spawn(c);
    pty.expect("Type its name to confirm: ");
    pty.type_line("doome");
    let (code, shown) = pty.finish();
    assert_eq!(code, EXIT_USAGE, "{shown}");
    assert!(shown.contains("This deletes team \"doomed\"") && shown.contains("not deleted"), "{shown}");
    assert!(exists("teams", &team_id));
    let mut c = d.bin();
    c.args(["--token", ADMIN, "users", "delete", &user_id]);
    let mut pty = Pty::spawn(c);
    pty.expect("Type its name to confirm: ");
    pty.type_line("dora");
    let (code, shown) = pty.finish();
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains(&format!("deleted user {user_id}")), "{shown}");
    let mut c = d.bin();
    c.args(["--token", ADMIN, "teams", "delete", &team_id]);
    let mut pty = Pty::spawn(c);
    pty.expect("Type its name to confirm: ");
    pty.type_line("doomed");
    let (code, shown) = pty.finish();
    assert_eq!(code, 0, "{shown}");
    assert!(!exists("teams", &team_id));

    // --yes: no question.
    let (other, _) = d.team_with_admin("other", "otto");
    let mut c = d.bin();
    c.args(["--token", ADMIN, "teams", "delete", &other, "--yes"]);
    let (code, stdout, stderr) = output(c, None);
    assert_eq!((code, stdout), (0, format!("deleted team {other}\n")), "{stderr}");
    // A team that does not exist: 404 after --yes, and before the question without it.
    assert_eq!(d.err(ADMIN, &["teams", "delete", &other, "-y"]).code, EXIT_NOT_FOUND);
}

#[test]
fn completions_and_manual() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = tollgate_admin::run(["tollgate-admin", "completions", shell]).unwrap();
        assert!(o.stdout.contains("tollgate-admin") && o.stdout.contains("set-tier"), "{shell}");
    }
    let bash = tollgate_admin::run(["tollgate-admin", "completions", "bash"]).unwrap().stdout;
    assert!(bash.contains("complete -F _tollgate-admin") || bash.contains("complete -F _tollgate__admin"), "{bash}");
    assert!(bash.contains("success failure denied"), "value choices are completed");
    let man = tollgate_admin::run(["tollgate-admin", "man"]).unwrap().stdout;
    assert!(man.contains(".TH tollgate-admin 1") && man.contains("Exit codes"), "{man}");
    // Neither needs a credential nor a daemon; bash can load the script.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tollgate-admin.bash");
    std::fs::write(&script, &bash).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p tollgate-admin", script.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `name`, and a certificate it issued for `localhost`, as PEM
/// files in `dir`: `ca.pem`, `server.crt`, `server.key`.
fn private_ca(dir: &std::path::Path, name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[test]
fn works_against_the_https_listener_with_ca_cert() {
    let pki = tempfile::tempdir().unwrap();
    private_ca(pki.path(), "tollgate test CA");
    let other = tempfile::tempdir().unwrap();
    private_ca(other.path(), "tollgate test CA");
    let d = common::start_http(|c| {
        c.http_server.tls = Some(tollgate::config::TlsConfig {
            cert: pki.path().join("server.crt"),
            key: pki.path().join("server.key"),
            client_ca: None,
        });
    });
    let https = format!("https://localhost:{}", d.addr.port());
    let ca = pki.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let run = |url: &str, ca: Option<&str>, args: &[&str]| {
        let mut all = vec!["tollgate-admin", "--url", url, "--token", ADMIN];
        if let Some(ca) = ca {
            all.extend(["--ca-cert", ca]);
        }
        all.extend_from_slice(args);
        tollgate_admin::run(all)
    };

    // `start_http` returned once the daemon said it was ready.
    if let Err(e) = run(&https, Some(ca), &["teams", "list"]) {
        panic!("no answer over HTTPS: {}", e.message);
    }

    // The CLI works over HTTPS with the private CA: admin calls, login, verify.
    let team = run(&https, Some(ca), &["--json", "teams", "create", "tls-team", "--tier", "Pro"]).unwrap();
    let team: Value = serde_json::from_str(&team.stdout).unwrap();
    let team_id = team["id"].as_str().unwrap();
    let user = ["users", "create", "carol", "--role", "Administrator", "--password", "correct horse", "--team"];
    run(&https, Some(ca), &[&user[..], &[team_id]].concat()).unwrap();
    let jwt = run(&https, Some(ca), &["login", "carol", "--password", "correct horse"]).unwrap().stdout;
    let v = run(&https, Some(ca), &["--json", "verify", jwt.trim()]).unwrap();
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        (v["valid"].as_bool(), v["kind"].as_str(), v["team"].as_str()),
        (Some(true), Some("jwt"), Some(team_id))
    );
    assert!(run(&https, Some(ca), &["teams", "get", team_id]).unwrap().stdout.contains("tls-team"));

    // Without --ca-cert (Mozilla's roots), or with another CA (of the same
    // name): the certificate is refused, nothing is sent, exit 3 with what to do.
    let another = other.path().join("ca.pem");
    for (ca, what, why) in
        [(None, "no --ca-cert", "UnknownIssuer"), (Some(another.to_str().unwrap()), "another CA", "BadSignature")]
    {
        let e = run(&https, ca, &["teams", "get", team_id]).unwrap_err();
        assert_eq!(e.code, EXIT_CONNECTION, "{what}: {}", e.message);
        assert!(e.message.contains("invalid peer certificate"), "{what}: {}", e.message);
        assert!(e.message.contains(why) && e.message.contains("--ca-cert FILE"), "{what}: {}", e.message);
    }

    // Plain HTTP to the TLS port: a clean failure (exit 3) that names https.
    let plain = format!("http://localhost:{}", d.addr.port());
    let e = run(&plain, None, &["teams", "get", team_id]).unwrap_err();
    assert_eq!(e.code, EXIT_CONNECTION, "{}", e.message);
    assert!(e.message.contains("https://"), "{}", e.message);

    // A CA file that holds no certificate is a usage error, before any call.
    let e = run(&https, Some(pki.path().join("server.key").to_str().unwrap()), &["teams", "list"]).unwrap_err();
    assert_eq!(e.code, EXIT_USAGE, "{}", e.message);
}

/// `keys import FILE.jsonl`: the file is checked before anything is sent
/// (a bad line named), then sent in batches; the keys made are written in
/// line order (stdout, or `--out` created 0600); a refused batch says which
/// lines were imported and which were not.
#[test]
fn keys_import_sends_a_jsonl_file_in_batches() {
    use std::os::unix::fs::PermissionsExt;
    let d = start();
    let (team, alice) = d.team_with_admin("importing", "imp-alice");
    let dir = tempfile::tempdir().unwrap();
    let sha = |s: &str| -> String {
        tollgate::core::secret::sha256(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    // 25 entries over 26 lines (a blank one at 13): the 13 even lines adopt a legacy
    // key, odd ones get a generated secret.
    let mut lines = Vec::new();
    for n in 1..=26 {
        lines.push(match n {
            13 => String::new(),
            n if n % 2 == 0 => {
                json!({"userId": alice, "hash": sha(&format!("sk_live_legacy{n}")), "start": "sk_live_le", "name": format!("line {n}")}).to_string()
            }
            n => json!({"userId": alice, "name": format!("line {n}"), "permissions": {"docs": ["read"]}}).to_string(),
        });
    }
    let file = dir.path().join("keys.jsonl");
    let path = file.to_str().unwrap();
    let count = |d: &Daemon| d.json(ADMIN, &["keys", "list", "--team", &team, "--all"])["count"].as_u64().unwrap();

    // A bad line: nothing is sent.
    let mut bad = lines.clone();
    bad[16] = r#"{"userId": "u", "expiresIn": "soon"}"#.to_owned();
    std::fs::write(&file, bad.join("\n")).unwrap();
    let e = d.err(ADMIN, &["keys", "import", path, "--batch", "10"]);
    assert_eq!(e.code, EXIT_USAGE, "{}", e.message);
    assert!(e.message.starts_with(&format!("{path}:17: ")), "{}", e.message);
    bad[16] = r#"{"userId": "u", "hash": "nothex"}"#.to_owned();
    std::fs::write(&file, bad.join("\n")).unwrap();
    assert!(d.err(ADMIN, &["keys", "import", path]).message.contains(":17: hash: must be 64"));
    assert_eq!(count(&d), 0);

    // The binary: the keys on stdout, in line order; progress on stderr
    // (plain lines: stderr is a pipe here).
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let mut cmd = d.bin();
    cmd.args(["--token", ADMIN, "keys", "import", path, "--batch", "10"]);
    let (code, stdout, stderr) = output(cmd, None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("import: 25/25 keys (100%)"), "{stderr}");
    assert!(stderr.contains("imported 25 keys (12 with a generated secret, 13 adopted)"), "{stderr}");
    assert!(stderr.contains("shown this once"), "{stderr}");
    let made: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let numbers: Vec<u64> = made.iter().map(|k| k["line"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=26).filter(|n| *n != 13).collect::<Vec<u64>>());
    for k in &made {
        let n = k["line"].as_u64().unwrap();
        let secret = match k["key"].as_str() {
            Some(s) => s.to_owned(),
            None => format!("sk_live_legacy{n}"),
        };
        assert_eq!(n % 2 == 1, k["key"].is_string(), "line {n}: {k}");
        let v = d.json("unused", &["verify", &secret]);
        assert_eq!(v["valid"], true, "line {n}: {v}");
        let got = d.json(ADMIN, &["keys", "get", k["id"].as_str().unwrap()]);
        assert_eq!(got["name"], format!("line {n}"));
    }
    assert_eq!(count(&d), 25);
    // One audit entry per batch: 10 + 10 + 5.
    let logs = d.json(ADMIN, &["logs", "--team", &team, "--action", "ImportKeys"]);
    let mut targets: Vec<&str> = list_shape(&logs).iter().map(|e| e["target"].as_str().unwrap()).collect();
    targets.sort();
    assert_eq!(targets, ["10 keys", "10 keys", "5 keys"]);

    // A refused batch: line 20 adopts a hash imported above, so batch 2
    // (lines 11-20) is refused; lines 1-10 were imported and written to --out.
    let again: Vec<String> = (1..=21)
        .map(|n| match n {
            20 => json!({"userId": alice, "hash": sha("sk_live_legacy2")}).to_string(),
            n => json!({"userId": alice, "name": format!("again {n}")}).to_string(),
        })
        .collect();
    std::fs::write(&file, again.join("\n")).unwrap();
    let out = dir.path().join("made.jsonl");
    let out_path = out.to_str().unwrap();
    let e = d.err(ADMIN, &["keys", "import", path, "--batch", "10", "--out", out_path]);
    assert_eq!((e.code, e.status()), (EXIT_REFUSED, Some(409)), "{}", e.message);
    for part in [
        &format!("{path}:20: "),
        "batch 2 (lines 11-20) was refused",
        "lines up to 10 were imported (10 keys, written to",
        "lines from 11 on were not imported",
    ] {
        assert!(e.message.contains(part), "{part:?} in {}", e.message);
    }
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 10);
    assert!(written.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["key"].is_string()));
    assert_eq!(count(&d), 35);
    // --out never writes over a file.
    let e = d.err(ADMIN, &["keys", "import", path, "--out", out_path]);
    assert_eq!(e.code, EXIT_USAGE);
    assert!(e.message.contains("cannot create it"), "{}", e.message);
    assert_eq!(count(&d), 35);

    // On a terminal the progress is a bar redrawn in place.
    let few: Vec<String> = (0..4).map(|_| json!({"userId": alice}).to_string()).collect();
    std::fs::write(&file, few.join("\n")).unwrap();
    let mut cmd = d.bin();
    let tty_out = dir.path().join("tty.jsonl");
    cmd.args(["--token", ADMIN, "keys", "import", path, "--batch", "2", "--out", tty_out.to_str().unwrap()]);
    let (code, shown) = Pty::spawn(cmd).finish();
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("\rimport: [###############               ] 2/4 keys (50%)"), "{shown:?}");
    assert!(shown.contains("\rimport: [##############################] 4/4 keys (100%)"), "{shown:?}");
    assert_eq!(std::fs::read_to_string(&tty_out).unwrap().lines().count(), 4);
}
