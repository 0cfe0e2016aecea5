//! The Python client (`clients/python/`) against the real daemon: starts
//! daemons on temp dirs, creates the credentials its integration tests need
//! through the engine, and runs
//! `python3 -m unittest discover -s clients/python/tests -v` with them in
//! `TOLLGATE_*` environment variables.
//!
//! Without `python3` the test fails when `CI=true` and is skipped (loudly)
//! otherwise.

use crate::common;

use common::SocketDaemon;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::core::model::{Permissions, RateLimit, Tier};
use tollgate::engine::NewKey;

/// How long the whole Python suite may take before it is killed.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

/// Whether `python3` can be run; fails in CI when it cannot.
fn python_available() -> bool {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            common::missing(&format!("python3 --version exited with {}", out.status), "apt-get install -y python3");
            false
        }
        Err(e) => {
            common::missing(&format!("cannot run python3 ({e})"), "apt-get install -y python3");
            false
        }
    }
}

/// The environment the Python integration tests read (tests/test_daemon.py).
fn fixtures(
    main: &SocketDaemon,
    busy: &SocketDaemon,
    shutdown: &SocketDaemon,
    stop_file: &Path,
) -> Vec<(&'static str, String)> {
    let e = &main.engine;
    let (team, user) = common::team_and_user(e, Tier::Pro, "pyuser");
    let mut docs = Permissions::default();
    docs.0.insert("documents".into(), vec!["read".into(), "write".into()]);
    let (key_id, key) = main.key(&user, NewKey { permissions: docs, ..Default::default() });
    let (_, counted) = main.key(&user, NewKey { remaining: Some(1_000_000), ..Default::default() });
    let (_, uses) = main.key(&user, NewKey { remaining: Some(1000), ..Default::default() });
    let ips = vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()];
    let (_, ip_key) = main.key(&user, NewKey { whitelisted_ips: ips, ..Default::default() });
    let rate = RateLimit { max: 3, window_ms: 60_000 };
    let (_, rate_key) = main.key(&user, NewKey { rate_limit: Some(rate), ..Default::default() });
    // For the README's middleware (test_readme_middleware.py).
    let mw_rate = RateLimit { max: 2, window_ms: 60_000 };
    let (_, mw_rate_key) = main.key(&user, NewKey { rate_limit: Some(mw_rate), ..Default::default() });
    let common::DeadCredentials { disabled, expired, deleted, revoked_token } = main.dead_credentials(&user);
    let (token, token_secret) = e.create_token(&user, "python", "personal", None).unwrap();
    let jwt = e.issue_jwt(&user).unwrap();
    let (_, free_user) = common::team_and_user(e, Tier::Free, "pyfree");
    let (_, free_key) = main.key(&free_user, NewKey::default());
    let (quota_team, _) = common::team_and_user(e, Tier::Pro, "pyquota");

    let (_, shutdown_user) = common::team_and_user(&shutdown.engine, Tier::Pro, "pyshutdown");
    let (_, shutdown_key) = shutdown.key(&shutdown_user, NewKey { remaining: Some(1000), ..Default::default() });

    let path = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    vec![
        ("TOLLGATE_SOCKET", path(&main.socket)),
        ("TOLLGATE_BUSY_SOCKET", path(&busy.socket)),
        ("TOLLGATE_SHUTDOWN_SOCKET", path(&shutdown.socket)),
        ("TOLLGATE_SHUTDOWN_FILE", path(stop_file)),
        ("TOLLGATE_SHUTDOWN_KEY", shutdown_key),
        ("TOLLGATE_TEST_TEAM", team),
        ("TOLLGATE_TEST_USER", user),
        ("TOLLGATE_TEST_KEY", key),
        ("TOLLGATE_TEST_KEY_ID", key_id),
        ("TOLLGATE_TEST_COUNTED_KEY", counted),
        ("TOLLGATE_TEST_USES_KEY", uses),
        ("TOLLGATE_TEST_IP_KEY", ip_key),
        ("TOLLGATE_TEST_RATE_KEY", rate_key),
        ("TOLLGATE_TEST_MW_RATE_KEY", mw_rate_key),
        ("TOLLGATE_TEST_DISABLED_KEY", disabled),
        ("TOLLGATE_TEST_EXPIRED_KEY", expired),
        ("TOLLGATE_TEST_DELETED_KEY", deleted),
        ("TOLLGATE_TEST_TOKEN", token_secret),
        ("TOLLGATE_TEST_TOKEN_ID", token.id),
        ("TOLLGATE_TEST_REVOKED_TOKEN", revoked_token),
        ("TOLLGATE_TEST_JWT", jwt),
        ("TOLLGATE_TEST_FREE_KEY", free_key),
        ("TOLLGATE_TEST_QUOTA_TEAM", quota_team),
    ]
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

#[test]
fn python_client_suite_passes_against_the_real_daemon() {
    if !python_available() {
        return;
    }
    // Strict durability: allows that consume wait for the disk while denies
    // go out at once, so pipelined answers really come back out of order.
    let strict = format!("{}\n[durability]\nmode = \"strict\"\nflush_interval_ms = 20\n", common::PRO_UNLIMITED);
    let main = SocketDaemon::start(&strict);
    let busy = SocketDaemon::start(&format!("max_connections = 1\n{}", common::PRO_UNLIMITED));
    let shutdown_toml =
        format!("{}\n[durability]\nmode = \"strict\"\nflush_interval_ms = 200\n", common::PRO_UNLIMITED);
    let mut shutdown = SocketDaemon::start(&shutdown_toml);
    let scratch = tempfile::tempdir().unwrap();
    let stop_file = scratch.path().join("stop-the-shutdown-daemon");
    let env = fixtures(&main, &busy, &shutdown, &stop_file);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "clients/python/tests", "-v"])
        .current_dir(root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());

    // The shutdown test creates the stop file once its requests are in flight.
    let deadline = Instant::now() + SUITE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if !shutdown.stopped() && stop_file.exists() {
            shutdown.stop();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let report = format!("--- python3 stdout ---\n{stdout}\n--- python3 stderr ---\n{stderr}");
    let Some(status) = status else {
        panic!("the Python suite did not finish within {SUITE_LIMIT:?}\n{report}");
    };
    assert!(status.success(), "the Python suite failed ({status})\n{report}");
    // unittest reports on stderr: "Ran N tests ... OK". Nothing may be skipped:
    // a skipped integration test would mean the daemon was never exercised.
    assert!(stderr.contains("\nOK"), "no OK from unittest\n{report}");
    assert!(!stderr.contains("skipped"), "some Python tests were skipped\n{report}");
    assert!(stop_file.exists() && shutdown.stopped(), "the shutdown test never ran\n{report}");
    println!("{stderr}");
}
