//! The Node.js client (`clients/node/`) against the real daemon: starts
//! daemons on temp dirs, creates the credentials its tests need through the
//! engine, and runs `node --test` on `clients/node/test/*.test.js` with them in
//! `TOLLGATE_*` environment variables.
//!
//! Without `node` the test fails when `CI` is set and is skipped (loudly)
//! otherwise.

use crate::common;

use common::SocketDaemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::core::model::{Permissions, RateLimit, Tier};
use tollgate::engine::NewKey;

/// How long the whole Node suite may take before it is killed.
const SUITE_LIMIT: Duration = Duration::from_secs(120);

/// The environment clients/node/test/daemon.test.js reads.
fn fixtures(main: &SocketDaemon, busy: &SocketDaemon) -> Vec<(&'static str, String)> {
    let e = &main.engine;
    let (team, user) = common::team_and_user(e, Tier::Pro, "nodeuser");
    let mut docs = Permissions::default();
    docs.0.insert("documents".into(), vec!["read".into(), "write".into()]);
    let (key_id, key) = main.key(&user, NewKey { permissions: docs, ..Default::default() });
    let (_, counted) = main.key(&user, NewKey { remaining: Some(1_000_000), ..Default::default() });
    let ips = vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()];
    let (_, ip_key) = main.key(&user, NewKey { whitelisted_ips: ips, ..Default::default() });
    let (_, rate_key) =
        main.key(&user, NewKey { rate_limit: Some(RateLimit { max: 3, window_ms: 60_000 }), ..Default::default() });
    let mut docs_read = Permissions::default();
    docs_read.0.insert("documents".into(), vec!["read".into()]);
    let (_, mw_rate_key) = main.key(
        &user,
        NewKey {
            permissions: docs_read,
            rate_limit: Some(RateLimit { max: 2, window_ms: 60_000 }),
            ..Default::default()
        },
    );
    let common::DeadCredentials { disabled, expired, deleted, revoked_token } = main.dead_credentials(&user);
    let (_, token) = e.create_token(&user, "node", "personal", None).unwrap();
    let jwt = e.issue_jwt(&user).unwrap();
    let (quota_team, _) = common::team_and_user(e, Tier::Pro, "nodequota");
    let path = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    vec![
        ("TOLLGATE_SOCKET", path(&main.socket)),
        ("TOLLGATE_BUSY_SOCKET", path(&busy.socket)),
        ("TOLLGATE_TEST_TEAM", team),
        ("TOLLGATE_TEST_USER", user),
        ("TOLLGATE_TEST_KEY", key),
        ("TOLLGATE_TEST_KEY_ID", key_id),
        ("TOLLGATE_TEST_COUNTED_KEY", counted),
        ("TOLLGATE_TEST_IP_KEY", ip_key),
        ("TOLLGATE_TEST_RATE_KEY", rate_key),
        ("TOLLGATE_TEST_MW_RATE_KEY", mw_rate_key),
        ("TOLLGATE_TEST_DISABLED_KEY", disabled),
        ("TOLLGATE_TEST_EXPIRED_KEY", expired),
        ("TOLLGATE_TEST_DELETED_KEY", deleted),
        ("TOLLGATE_TEST_TOKEN", token),
        ("TOLLGATE_TEST_REVOKED_TOKEN", revoked_token),
        ("TOLLGATE_TEST_JWT", jwt),
        ("TOLLGATE_TEST_QUOTA_TEAM", quota_team),
    ]
}

/// `# name N` from node's TAP summary.
fn summary(out: &str, name: &str) -> Option<u64> {
    out.lines().find_map(|l| l.strip_prefix(&format!("# {name} "))?.trim().parse().ok())
}

#[test]
fn node_client_suite_passes_against_the_real_daemon() {
    let Some(node) = common::require_tool("node", &[], "apt-get install -y nodejs") else { return };
    let strict = format!("{}\n[durability]\nmode = \"strict\"\nflush_interval_ms = 20\n", common::PRO_UNLIMITED);
    let main = SocketDaemon::start(&strict);
    let busy = SocketDaemon::start(&format!("max_connections = 1\n{}", common::PRO_UNLIMITED));
    let env = fixtures(&main, &busy);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("clients/node/test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".test.js")))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut child = Command::new(node)
        .arg("--test")
        .args(&files)
        .current_dir(root.join("clients/node"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + SUITE_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report = format!("--- node stdout ---\n{stdout}\n--- node stderr ---\n{stderr}");
    assert!(out.status.success(), "the Node suite failed ({})\n{report}", out.status);
    // Nothing may be skipped or left undone: each would mean the daemon was
    // not exercised.
    assert_eq!(summary(&stdout, "fail"), Some(0), "{report}");
    assert_eq!(summary(&stdout, "skipped"), Some(0), "{report}");
    assert_eq!(summary(&stdout, "todo"), Some(0), "{report}");
    assert_eq!(summary(&stdout, "cancelled"), Some(0), "{report}");
    let passed = summary(&stdout, "pass").unwrap_or(0);
    assert!(passed >= 20, "only {passed} Node tests passed\n{report}");
    println!("{stdout}");
}
