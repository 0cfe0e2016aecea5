//! Verification cost against the number of keys loaded: `cargo run --release
//! --example verify_scaling -- 1000 100000 1000000`. Prints ns per verification
//! of scattered keys for each population (one thread, one run each): owned
//! verdicts one at a time, then the socket's path — batches of
//! `LOOK_AHEAD` under one guard — verified one by one (`Engine::verify_in`)
//! and looked up ahead (`Engine::look_up_all`, then `Engine::verify_looked`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate::config::Config;
use tollgate::core::model::{Role, Tier, UserStatus};
use tollgate::core::verify::VerifyRequest;
use tollgate::engine::{Engine, LOOK_AHEAD, NewKey, now_us};

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
        eprintln!("{n} keys loaded; measuring for 3 s each way");
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
        let owned = start.elapsed().as_nanos() as f64 / ops as f64;
        // The socket's path, batches of LOOK_AHEAD credentials under one guard:
        // verified one after the other, then looked up ahead of verifying.
        let [one_by_one, looked_ahead] = [false, true].map(|ahead| {
            let mut i = 0usize;
            let mut ops = 0u64;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                for _ in 0..1000 / LOOK_AHEAD {
                    let batch: Vec<&str> = (0..LOOK_AHEAD).map(|k| secrets[(i + k * 7_919) % n].as_str()).collect();
                    i = (i + LOOK_AHEAD * 7_919) % n;
                    let now = now_us();
                    let guard = e.index().secrets.guard();
                    if ahead {
                        let creds: Vec<Option<&str>> = batch.iter().map(|c| Some(*c)).collect();
                        for (c, looked) in batch.iter().zip(e.look_up_all(&creds, &guard)) {
                            black_box(e.verify_looked(&VerifyRequest::new(c), now, &guard, looked).is_allow());
                        }
                    } else {
                        for c in &batch {
                            black_box(e.verify_in(&VerifyRequest::new(c), now, &guard).is_allow());
                        }
                    }
                    ops += LOOK_AHEAD as u64;
                }
            }
            start.elapsed().as_nanos() as f64 / ops as f64
        });
        println!(
            "{n:>9} keys: {owned:>7.0} ns/verify; batches of {LOOK_AHEAD}: {one_by_one:>7.0} one by one, {looked_ahead:>7.0} looked up ahead"
        );
    }
}
