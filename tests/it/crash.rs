//! Crash safety: a child process (this test binary, re-executed) writes through
//! the engine and prints an acknowledgement after each write returns; the parent
//! kills it with SIGKILL at a random moment, reopens the store and checks that
//! every acknowledged write is there.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::core::model::Tier;
use tollgate::core::verify::VerifyRequest;
use tollgate::engine::NewKey;

const CHILD_ENV: &str = "TOLLGATE_CRASH_CHILD";
const INITIAL_REMAINING: u32 = 1_000_000;

fn toml(mode: &str) -> String {
    format!("{}\n[durability]\nmode = \"{mode}\"\nflush_interval_ms = 50\n", common::PRO_UNLIMITED)
}

/// The child's body, run (as an ignored test, by name) by `run_and_kill`.
#[test]
#[ignore = "the crash tests' child process; run by crash::* tests"]
fn crash_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_ENV), std::env::var("TOLLGATE_CRASH_MODE")) else {
        panic!("{CHILD_ENV} and TOLLGATE_CRASH_MODE are set by the crash tests that run this child");
    };
    let e = common::engine(std::path::Path::new(&dir), &toml(&mode));
    let (_, user) = common::team_and_user(&e, Tier::Pro, "crash");
    let (_, counted) = e
        .create_key(NewKey { user_id: user.clone(), remaining: Some(INITIAL_REMAINING), ..Default::default() })
        .unwrap();
    println!("COUNTED {counted}");
    let start = Instant::now();
    for i in 0u64.. {
        // Alternate admin writes and counted verifications.
        if i % 500 == 0 {
            let (k, s) = e.create_key(NewKey { user_id: user.clone(), ..Default::default() }).unwrap();
            println!("KEY {} {s}", k.id);
        }
        assert!(e.verify(&VerifyRequest::new(&counted)).is_allow());
        println!("USE {} {}", i + 1, start.elapsed().as_micros());
    }
}

struct Outcome {
    dir: tempfile::TempDir,
    counted: String,
    keys: Vec<(String, String)>,
    /// (acknowledged use count, microseconds since the child started)
    uses: Vec<(u64, u64)>,
    killed_at_us: u64,
}

fn run_and_kill(mode: &str, run_for: Duration) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("TOLLGATE_CRASH_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut counted, mut keys, mut uses) = (String::new(), Vec::new(), Vec::new());
    let mut first_use: Option<Instant> = None;
    let mut killed_at_us = 0;
    while let Some(Ok(line)) = lines.next() {
        // The test harness may print "test crash_child ... " before our first line.
        let line = line.find("COUNTED ").map_or(line.as_str(), |at| &line[at..]);
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["COUNTED", s] => counted = (*s).to_owned(),
            ["KEY", id, s] => keys.push(((*id).to_owned(), (*s).to_owned())),
            ["USE", n, t] => {
                let (n, t): (u64, u64) = (n.parse().unwrap(), t.parse().unwrap());
                let first = *first_use.get_or_insert_with(|| Instant::now() - Duration::from_micros(t));
                uses.push((n, t));
                if first.elapsed() >= run_for && killed_at_us == 0 {
                    child.kill().unwrap(); // SIGKILL
                    killed_at_us = first.elapsed().as_micros() as u64;
                    // Keep reading: lines still in the pipe were printed, so
                    // acknowledged, before the kill.
                }
            }
            _ => {}
        }
    }
    let _ = child.wait();
    assert!(!uses.is_empty() && !keys.is_empty() && !counted.is_empty(), "the child did not get going");
    Outcome { dir, counted, keys, uses, killed_at_us }
}

fn reopen_and_check_keys(o: &Outcome, mode: &str) -> (tollgate::engine::Engine, u32) {
    let e = common::engine(o.dir.path(), &toml(mode));
    for (id, secret) in &o.keys {
        assert!(e.key(id).is_ok(), "acknowledged key {id} lost");
        assert!(e.verify(&VerifyRequest::new(secret)).is_allow());
    }
    let ids: Vec<String> = e.index().keys.iter().map(|k| k.id.to_string()).collect();
    let id = ids.into_iter().find(|id| e.key(id).unwrap().0.remaining == Some(INITIAL_REMAINING)).unwrap();
    let remaining = e.key(&id).unwrap().1.remaining;
    (e, remaining)
}

#[test]
fn strict_mode_loses_no_acknowledged_use_on_sigkill() {
    let o = run_and_kill("strict", Duration::from_millis(1500));
    let (e, remaining) = reopen_and_check_keys(&o, "strict");
    let acked = o.uses.last().unwrap().0;
    let consumed = u64::from(INITIAL_REMAINING - remaining);
    // Every acknowledged use is on disk; at most the one in flight beyond it.
    assert!(consumed >= acked && consumed <= acked + 1, "acked {acked}, persisted {consumed}");
    let v = e.verify(&VerifyRequest::new(&o.counted));
    assert!(v.is_allow(), "{v:?}");
}

#[test]
fn relaxed_mode_loses_at_most_the_flush_interval_on_sigkill() {
    let o = run_and_kill("relaxed", Duration::from_millis(1500));
    let (e, remaining) = reopen_and_check_keys(&o, "relaxed");
    assert!(e.verify(&VerifyRequest::new(&o.counted)).is_allow());
    let consumed = u64::from(INITIAL_REMAINING - remaining);
    let acked = o.uses.last().unwrap().0;
    // Uses acknowledged more than the flush interval (50 ms) plus a generous
    // scheduling margin before the kill must be on disk.
    let margin_us = 50_000 + 700_000;
    let must_have = o.uses.iter().filter(|(_, t)| t + margin_us < o.killed_at_us).map(|(n, _)| *n).max().unwrap_or(0);
    assert!(consumed >= must_have, "persisted {consumed} < {must_have} acknowledged well before the kill");
    assert!(consumed <= acked + 1, "persisted {consumed} more than acknowledged {acked}");
    assert!(must_have > 0, "the test ran too briefly to mean anything");
}
