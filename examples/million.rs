//! Fills a data directory with API keys through `Engine::create_keys`, for the
//! memory and startup measurements of BENCHMARKS.md ("A million keys"):
//!
//! ```text
//! cargo run --release --example million -- DIR [KEYS] [BATCH]
//! ```
//!
//! Creates one Pro team and one user, then `KEYS` keys (default 1,000,000) in
//! batches of `BATCH` (default 50,000), and prints the time taken, the
//! process's RSS now and its peak (VmRSS, VmHWM), and the data directory's
//! size. `benches/million-engine.sh` then starts the daemon on `DIR` and reads its
//! RSS once `/readyz` is ready.

use std::time::Instant;

use tollgate::config::Config;
use tollgate::core::model::{Role, Tier, UserStatus};
use tollgate::engine::{Engine, NewKey};

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        .unwrap_or(0)
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_size(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: million DIR [KEYS] [BATCH]");
        std::process::exit(2);
    };
    let n: usize = args.next().map_or(1_000_000, |a| a.parse().expect("KEYS is a number"));
    let batch: usize = args.next().map_or(50_000, |a| a.parse().expect("BATCH is a number"));
    let mut c = Config::parse(
        "[tiers.Pro]\nrequests_per_minute = \"unlimited\"\nmembers = \"unlimited\"\ndocuments = 5000\n\
         log_retention_days = \"unlimited\"\n",
    )
    .expect("config");
    c.data = dir.into();
    let start = Instant::now();
    let e = Engine::open(&c).expect("open the engine");
    let team = e.create_team("million", Tier::Pro).expect("team");
    let user = e
        .create_user(
            &team.id,
            &format!("million-{}", team.id),
            "password password",
            Role::Administrator,
            UserStatus::Enabled,
        )
        .expect("user");
    let mut made = 0;
    while made < n {
        let news =
            (0..(n - made).min(batch)).map(|_| NewKey { user_id: user.id.clone(), ..Default::default() }).collect();
        made += e.create_keys(news).expect("create keys").len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "created {made} keys in {secs:.1} s ({:.0} keys/s); VmRSS {} MB, VmHWM {} MB",
        made as f64 / secs,
        status_kb("VmRSS:") / 1024,
        status_kb("VmHWM:") / 1024
    );
    e.shutdown().expect("shutdown");
    drop(e);
    println!("data directory: {} MB", dir_size(&c.data) / 1_000_000);
}
