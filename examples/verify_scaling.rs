//! Verification cost against the number of keys loaded: `cargo run --release
//! --example verify_scaling -- 1000 100000 1000000`. Prints ns per verification
//! of scattered keys for each population (one thread, one run each).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate::config::Config;
use tollgate::core::model::{Role, Tier, UserStatus};
use tollgate::core::verify::VerifyRequest;
use tollgate::engine::{Engine, NewKey, now_us};

/// The Pro tier with its per-minute team limit lifted (the tests' and benches' fixture).
const PRO_UNLIMITED: &str = include_str!("../benches/fixtures/pro_unlimited.toml");

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("key counts")).collect();
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::parse(PRO_UNLIMITED).unwrap();
        c.data = dir.path().join("data");
        let e = Engine::open(&c).unwrap();
        let team = e.create_team("t", Tier::Pro).unwrap();
        let user = e.create_user(&team.id, "u", "password password", Role::Administrator, UserStatus::Enabled).unwrap();
        let mut secrets = Vec::with_capacity(n);
        while secrets.len() < n {
            let batch = (0..(n - secrets.len()).min(100_000))
                .map(|_| NewKey { user_id: user.id.clone(), ..Default::default() })
                .collect();
            secrets.extend(e.create_keys(batch).unwrap().into_iter().map(|(_, s)| s));
        }
        eprintln!("{n} keys loaded; measuring for 3 s");
        let mut i = 0usize;
        let mut ops = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for _ in 0..1000 {
                // The next credential is touched one verification ahead, as a
                // server's request bytes are in cache (see benches/verify.rs).
                let next = (i + 7_919) % n;
                black_box(secrets[next].as_bytes()[0]);
                black_box(e.verify_at(&VerifyRequest::new(&secrets[i]), now_us()));
                i = next;
            }
            ops += 1000;
        }
        println!("{n:>9} keys: {:>7.0} ns/verify", start.elapsed().as_nanos() as f64 / ops as f64);
    }
}
