//! The real `tollgate` executable: defaults that work with no flags, bad
//! configuration refused before anything binds, graceful shutdown on SIGTERM.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::common;

use common::{free_port, try_http};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn get(port: u16, path: &str) -> Option<common::HttpResp> {
    try_http(([127, 0, 0, 1], port).into(), "GET", path, &[], None)
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
    // Only the HTTP address differs from the defaults (a port the daemon
    // picks, which it tells systemd), so parallel test runs do not collide.
    let notify = common::Notify::bind(dir.path());
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, addr) = notify.ready(&mut child, String::new);
    let port = addr.port();
    let health = get(port, "/readyz").expect("/readyz answers");
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["status"], "ready", "{health:?}");
    assert!(get(port, "/.well-known/jwks.json").unwrap().text.contains("\"OKP\""));
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

/// Runs `tollgate check-config` on `text` written to `<dir>/tollgate.toml`.
fn check_config(dir: &std::path::Path, text: &str) -> (Option<i32>, String, String) {
    let cfg = dir.join("tollgate.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN).args(["check-config"]).arg(&cfg).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_names_file_key_line_and_column_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let keys = format!("{}/tests/keys", env!("CARGO_MANIFEST_DIR"));
    // (config, what stderr must contain: location, key, explanation)
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "http = \"127.0.0.1:7070\"\n[durability]\nflush_interval_ms = 0\n".into(),
            vec![
                "tollgate.toml:3:21: durability.flush_interval_ms: must be between 1 and 60000",
                "3 | flush_interval_ms = 0",
            ],
        ),
        ("htp = \"x\"\n".into(), vec!["tollgate.toml:1:1: htp: unknown field `htp`, expected one of"]),
        ("http = 7070\n".into(), vec!["tollgate.toml:1:8: http: invalid type: integer `7070`, expected a string"]),
        (
            "[durability]\nmode = \"sometimes\"\n".into(),
            vec!["tollgate.toml:2:8: durability.mode: unknown variant `sometimes`, expected `relaxed` or `strict`"],
        ),
        ("[log]\nlevel = \"tollgate=loud\"\n".into(), vec!["tollgate.toml:2:9: log.level:", "not a tracing filter"]),
        (
            "[auth]\ntrusted_proxies = [\"10.0.0.0/33\"]\n".into(),
            vec!["tollgate.toml:2:19: auth.trusted_proxies: \"10.0.0.0/33\" is not an IP address or CIDR block"],
        ),
        (
            "[[auth.routes]]\nprefix = \"/ok/\"\n[[auth.routes]]\nprefix = \"files\"\n".into(),
            vec!["tollgate.toml:4:10: auth.routes[1].prefix: \"files\" must start with \"/\""],
        ),
        (
            "[tiers.Pro]\nrequests_per_minute = 0\nmembers = 1\ndocuments = 1\nlog_retention_days = 1\n".into(),
            vec!["tollgate.toml:2:23: tiers.Pro.requests_per_minute: must be at least 1 or \"unlimited\""],
        ),
        ("this is not toml = = =\n".into(), vec!["tollgate.toml:1:6:"]),
        (
            "[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\nprivate_key_file = \"/nonexistent/k1.pem\"\n".into(),
            vec!["tollgate.toml:4:20: jwt.keys[0].private_key_file: cannot read /nonexistent/k1.pem"],
        ),
        (
            format!("[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\nprivate_key_file = \"{keys}/p256.pem\"\n"),
            vec!["jwt.keys[0]: jwt key `k1`:", "ed25519"],
        ),
        (
            format!(
                "[jwt]\nsigning_kid = \"k9\"\n[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\nprivate_key_file = \"{keys}/ed25519.pem\"\n"
            ),
            vec!["tollgate.toml:2:15: jwt.signing_kid: \"k9\" is not the kid of any [[jwt.keys]]"],
        ),
        (
            "[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\n".into(),
            vec!["tollgate.toml:1:1: jwt.keys[0]: key \"k1\" has no material"],
        ),
    ];
    for (text, needles) in &cases {
        let (code, _, err) = check_config(dir.path(), text);
        assert_eq!(code, Some(2), "{text}\n{err}");
        for n in needles {
            assert!(err.contains(n), "for\n{text}\nexpected {n:?} in:\n{err}");
        }
    }

    // Every problem of a file is reported, in file order.
    let (code, _, err) = check_config(
        dir.path(),
        "max_connections = 0\n[jwt]\nleeway_secs = 3600\nttl_secs = 0\n[auth]\ncookie = \"a b\"\n",
    );
    assert_eq!(code, Some(2));
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[0].contains(":1:19: max_connections"), "{err}");
    assert!(lines[1].contains(":3:15: jwt.leeway_secs"), "{err}");
    assert!(lines[2].contains(":4:12: jwt.ttl_secs"), "{err}");
    assert!(lines[3].contains(":6:10: auth.cookie"), "{err}");
    assert!(err.contains("4 problem(s)"), "{err}");

    // Key files are checked too when another section has problems.
    let (code, _, err) = check_config(
        dir.path(),
        "[durability]\nflush_interval_ms = 0\n[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\nprivate_key_file = \"/nonexistent/k1.pem\"\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains(":2:21: durability.flush_interval_ms") && err.contains(":6:20: jwt.keys[0].private_key_file"),
        "{err}"
    );

    // A good file, with key files, passes; nothing is created.
    let good = format!(
        "[jwt]\nsigning_kid = \"k2\"\n[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\npublic_key_file = \"{keys}/ed25519.pub.pem\"\n\
         [[jwt.keys]]\nkid = \"k2\"\nalg = \"ES256\"\nprivate_key_file = \"{keys}/p256.pem\"\n"
    );
    let (code, out, err) = check_config(dir.path(), &good);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
    assert!(!dir.path().join("tollgate-data").exists());
    let (code, _, err) = check_config(dir.path(), "");
    assert_eq!(code, Some(0), "an empty file is the defaults: {err}");
}

#[test]
fn bench_runs_echo_and_daemon_and_reports_the_ratio_and_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["bench", "--duration", "0.5", "--keys", "200", "--connections", "2", "--depth", "8"])
        .arg("--socket")
        .arg(dir.path().join("bench.sock"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in ["echo:", "tollgate:", "0 denies", "ratio: tollgate =", "us per answer in the server"] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    // The daemon was a child process on the given socket, stopped at the end.
    assert!(!dir.path().join("bench.sock").exists(), "the daemon's socket is left behind");
    // JWTs from logins over HTTP, the daemon only.
    let out = std::process::Command::new(BIN)
        .args(["bench", "--duration", "0.3", "--keys", "3", "--mode", "tollgate", "--credential-kind", "jwt"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 jwt credentials") && stdout.contains("0 denies"), "{stdout}");
    assert!(!stdout.contains("echo:"), "{stdout}");
    for bad in [&["bench", "--depth", "0"][..], &["bench", "--duration", "0"], &["bench", "--duration", "soon"]] {
        let out = std::process::Command::new(BIN).args(bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty(), "{bad:?}: no message");
    }
}

/// `serve --demo` on a fresh directory prints a key that, pasted into the
/// printed curl commands, gets a token and a valid verdict; the key is kept
/// 0600 and reused by the next `--demo` start; it is never logged.
#[test]
fn demo_access_prints_a_key_that_works_as_printed() {
    let d = common::BinDaemon::start("", &["--demo"]);
    let out = d.log_text();
    let key = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("tg_") && !l.contains(' '))
        .unwrap_or_else(|| panic!("no key printed:\n{out}"))
        .to_owned();
    // The printed commands, run as printed (key and address substituted by the daemon).
    let token_cmd = out.lines().map(str::trim).find(|l| l.starts_with("curl -s -X POST -u")).expect("token curl");
    assert_eq!(token_cmd, format!("curl -s -X POST -u '{key}:' http://{}/v1/auth/token", d.addr));
    let r = common::http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &common::basic(&key, ""))], None);
    assert_eq!(r.status, 200, "{}", r.text);
    let verify_cmd = out.lines().map(str::trim).find(|l| l.contains("/v1/verify -d")).expect("verify curl");
    let body = verify_cmd.split_once(" -d '").unwrap().1.trim_end_matches('\'');
    let v = common::http(d.addr, "POST", "/v1/verify", &[], Some(body)).json();
    assert_eq!((v["valid"].as_bool(), v["roles"][0].as_str()), (Some(true), Some("Reader")), "{v}");
    // Read-only.
    let body = serde_json::json!({"credential": key, "permissions": {"docs": ["delete"]}}).to_string();
    assert_eq!(common::http(d.addr, "POST", "/v1/verify", &[], Some(&body)).json()["code"], "INSUFFICIENT_PERMISSIONS");
    let file = d.dir.path().join("data").join(tollgate::demo::DEMO_KEY_FILE);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
    // Printed once, to stdout; not in any log line.
    assert_eq!(out.matches(&key).count(), 4, "{out}"); // the key, and the three commands
    assert!(!out.lines().any(|l| l.contains("INFO") && l.contains(&key)));
}

#[test]
fn demo_access_is_made_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), "");
    let data = dir.path().join("data");
    let first = tollgate::demo::ensure(&e, &data).unwrap();
    let again = tollgate::demo::ensure(&e, &data).unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.key, again.key);
    assert_eq!(e.teams().unwrap().len(), 1);
    // A demo key that no longer works is replaced.
    let (key, _) = e.keys(&e.teams().unwrap()[0].id).unwrap().remove(0);
    e.update_key(&key.id, tollgate::engine::KeyUpdate { enabled: Some(false), ..Default::default() }).unwrap();
    let fresh = tollgate::demo::ensure(&e, &data).unwrap();
    assert!(fresh.created && fresh.key != first.key);
}

#[test]
fn a_data_directory_in_use_is_refused_once_in_plain_words() {
    let d = common::BinDaemon::start("", &[]);
    let data = d.dir.path().join("data");
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(other.path())
        .env_remove("RUST_LOG")
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--socket")
        .arg(other.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let needle = "already running on this data directory";
    assert_eq!(err.matches(needle).count(), 1, "said once, in words: {err}");
    assert!(!err.contains("Os {") && !err.contains("WouldBlock"), "no Rust debug text: {err}");
    assert!(err.contains(&data.join("db").display().to_string()), "names the directory: {err}");
    // The first daemon is untouched.
    assert_eq!(get(d.addr.port(), "/readyz").map(|r| r.status), Some(200));
    d.stop();
}

/// The daemon's threads by priority (ARCHITECTURE.md, "Three runtimes, two
/// priorities"): the socket and HTTP workers at the niceness the daemon was
/// started with, the admin runtime and every storage thread (sled's I/O pool
/// and flusher, the counter flusher, the audit writer) at 10 above it. Read
/// from `/proc/PID/task/*/stat` after an admin write, which starts sled's pool.
#[test]
fn storage_and_admin_threads_run_niced_and_verification_threads_do_not() {
    let d = common::BinDaemon::start("", &[]);
    d.call("POST", "/v1/teams", common::ADMIN_TOKEN, Some(serde_json::json!({"name": "t"})), 201);
    let pid = d.child.id();
    // (thread name, niceness) of every thread; stat's field 19 is the nice
    // value, counted after the `(comm)` field, which may hold spaces.
    let threads: Vec<(String, i64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let nice = rest.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect();
    let base = threads.iter().find(|(n, _)| n == "tollgate-socket").map(|t| t.1).expect("a socket worker");
    let niced = |prefix: &str| {
        let of: Vec<_> = threads.iter().filter(|(n, _)| n.starts_with(prefix)).collect();
        assert!(!of.is_empty(), "no {prefix} thread in {threads:?}");
        assert!(of.iter().all(|t| t.1 == (base + 10).min(19)), "{prefix} threads at base + 10: {threads:?}");
    };
    niced("tollgate-admin");
    niced("sled-io");
    niced("tollgate-flushe");
    niced("tollgate-audit");
    let at_base: Vec<_> = threads.iter().filter(|(n, _)| n == "tollgate" || n == "tollgate-socket").collect();
    assert!(at_base.iter().all(|t| t.1 == base), "verification workers at the daemon's niceness: {threads:?}");
    d.stop();
}

/// A bootstrap admin token too short to trust stops the start with one plain
/// sentence naming where it came from, from the environment or from
/// `<data>/admin-token`, and exits 1.
#[test]
fn a_short_admin_token_is_refused_naming_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |envs: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.current_dir(dir.path()).env_remove("RUST_LOG").env_remove("TOLLGATE_ADMIN_TOKEN");
        c.args(["serve", "--http", "127.0.0.1:0", "--data", "data", "--socket", "s.sock"]);
        c.envs(envs.iter().copied()).output().unwrap()
    };
    let out = serve(&[("TOLLGATE_ADMIN_TOKEN", "short")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let needle = "TOLLGATE_ADMIN_TOKEN: the admin token must be at least 16 characters";
    assert_eq!(err.matches(needle).count(), 1, "{err}");
    assert!(!err.contains("short\""), "the token is not echoed: {err}");

    std::fs::write(dir.path().join("data/admin-token"), "too-short\n").unwrap();
    let out = serve(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("admin-token: the admin token in this file is shorter than 16 characters"), "{err}");
    assert!(!err.contains("too-short"), "the token is not echoed: {err}");
}

/// The shipped systemd unit, run as systemd would run it (its ExecStartPre,
/// ExecStart and ExecReload lines, with the binary and the configuration
/// file's paths replaced): `systemctl reload` succeeds on a good file and
/// fails on a refused one, and a bad configuration exits with the status the
/// unit does not restart.
#[test]
fn the_systemd_unit_reloads_and_reports_a_refused_reload() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("contrib/systemd/tollgate.service")).unwrap();
    let shipped = std::fs::read_to_string(root.join("contrib/systemd/tollgate.toml")).unwrap();
    let line = |key: &str| -> String {
        let v: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix(key)).collect();
        assert_eq!(v.len(), 1, "one {key} line in the unit");
        v[0].to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tollgate.toml");
    // A fixed port, not 0: `tollgate reload --config` (ExecReload) finds the
    // daemon at the file's address.
    let port = free_port();
    let d = dir.path().display();
    let config = |extra: &str| {
        let text = shipped
            .replace("/var/lib/tollgate", &format!("{d}/data"))
            .replace("/run/tollgate/tollgate.sock", &format!("{d}/tollgate.sock"))
            .replace("127.0.0.1:7070", &format!("127.0.0.1:{port}"));
        assert!(text.contains(&format!("{d}/data")) && text.contains(&format!("127.0.0.1:{port}")));
        std::fs::write(&cfg, format!("{text}\n{extra}")).unwrap();
    };
    let argv = |cmd: &str| -> Vec<String> {
        let cmd = cmd.replace("/etc/tollgate/tollgate.toml", &cfg.display().to_string());
        let mut words: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words.remove(0), "/usr/bin/tollgate", "{cmd}");
        words
    };
    let run = |cmd: &str| Command::new(BIN).args(argv(cmd)).env_remove("TOLLGATE_ADMIN_TOKEN").output().unwrap();
    config("");
    assert!(run(&line("ExecStartPre=")).status.success());
    // The unit is Type=notify: the daemon says READY=1 (and its port) to the harness as to systemd.
    let notify = common::Notify::bind(dir.path());
    let mut daemon = Command::new(BIN)
        .args(argv(&line("ExecStart=")))
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &notify.path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_, addr) = notify.ready(&mut daemon, String::new);
    assert_eq!(addr.port(), port);
    assert_eq!(get(port, "/readyz").map(|r| r.status), Some(200));
    let reload = run(&line("ExecReload="));
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    // A file the daemon refuses (a JWT key file that does not exist): exit 1.
    config(
        "[jwt]\nsigning_kid = \"k1\"\n[[jwt.keys]]\nkid = \"k1\"\nalgorithm = \"EdDSA\"\nprivate_key_file = \"/nonexistent.pem\"\n",
    );
    let refused = run(&line("ExecReload="));
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    // A configuration that does not parse: the status the unit never restarts.
    std::fs::write(&cfg, "http = = =").unwrap();
    let prevent: Vec<i32> = line("RestartPreventExitStatus=").split_whitespace().map(|s| s.parse().unwrap()).collect();
    let bad = run(&line("ExecStartPre="));
    assert!(prevent.contains(&bad.status.code().unwrap()), "check-config exits {:?}", bad.status.code());
    let _ = Command::new("kill").arg(daemon.id().to_string()).status();
    assert!(daemon.wait().unwrap().success());
}

/// The shipped unit as systemd reads it: `systemd-analyze verify` (the binary
/// path replaced by the one under test) prints nothing. It exits 0 even for
/// a misspelt key or a bad value, which it only warns about, so any output
/// fails the test.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(tool) = common::require_tool(
        "systemd-analyze",
        &["/usr/bin/systemd-analyze", "/bin/systemd-analyze"],
        "apt-get install -y systemd",
    ) else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("contrib/systemd/tollgate.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.service");
    std::fs::write(&path, unit.replace("/usr/bin/tollgate", BIN)).unwrap();
    let out = Command::new(&tool).arg("verify").arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    // The check can fail: a bad value is reported.
    std::fs::write(&path, unit.replace("/usr/bin/tollgate", BIN).replace("RestartSec=2", "RestartSec=two")).unwrap();
    let out = Command::new(&tool).arg("verify").arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("two") || !out.status.success(), "a bad value goes unreported: {said}");
}

/// README.md's configuration reference is a configuration the daemon reads,
/// and it says the defaults: parsed, it equals the built-in defaults.
#[test]
fn the_readme_configuration_reference_parses_to_the_defaults() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("## Configuration reference").nth(1).expect("the section");
    let block = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its toml block");
    let mut parsed = tollgate::config::Config::parse(block).unwrap_or_else(|e| panic!("the README's reference: {e}"));
    let defaults = tollgate::config::Config::default();
    // [tiers.Free] is written out: the same limits as the built-in Free tier.
    assert_eq!(format!("{:?}", parsed.tiers.table()), format!("{:?}", defaults.tiers.table()));
    parsed.tiers = defaults.tiers.clone();
    assert_eq!(format!("{parsed:?}"), format!("{defaults:?}"), "the reference shows other values than the defaults");
}

/// `serve` runs itself again, in place, with glibc's mmap threshold fixed
/// (ARCHITECTURE.md, "A million keys": the start's temporaries would stay
/// resident): the process the harness spawned is the daemon that said
/// READY=1, with the variable in its environment; an operator's own malloc
/// tuning (either variable) is left as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn serve_fixes_the_mmap_threshold_in_place_unless_malloc_is_tuned_already() {
    let environ = |d: &common::BinDaemon| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{}/environ", d.child.id())).unwrap();
        raw.split(|b| *b == 0).map(|e| String::from_utf8_lossy(e).into_owned()).collect()
    };
    let threshold = |env: &[String]| -> Vec<String> {
        env.iter().filter(|e| e.starts_with("MALLOC_MMAP_THRESHOLD_=")).cloned().collect()
    };
    for var in ["MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"] {
        assert!(std::env::var_os(var).is_none(), "precondition: the tests run with no {var} (the daemons inherit it)");
    }
    let d = common::BinDaemon::start("", &[]);
    assert_eq!(threshold(&environ(&d)), ["MALLOC_MMAP_THRESHOLD_=131072"]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.child.id())).unwrap();
    assert!(cmdline.split(|b| *b == 0).any(|a| a == b"serve"), "the same command runs: {cmdline:?}");
    d.stop();
    let d = common::BinDaemon::start_with_env("", &[], &[("MALLOC_MMAP_THRESHOLD_", "262144")]);
    assert_eq!(threshold(&environ(&d)), ["MALLOC_MMAP_THRESHOLD_=262144"]);
    d.stop();
    let tunables = "glibc.malloc.trim_threshold=131072";
    let d = common::BinDaemon::start_with_env("", &[], &[("GLIBC_TUNABLES", tunables)]);
    let env = environ(&d);
    assert!(threshold(&env).is_empty() && env.contains(&format!("GLIBC_TUNABLES={tunables}")), "{env:?}");
    d.stop();
}
