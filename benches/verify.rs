//! Criterion benchmarks of the hot paths. Run with `cargo bench --bench verify`;
//! BENCHMARKS.md records the results and the machine they came from.
// `criterion_group!` defines a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tollgate::config::Config;
use tollgate::core::jwt::{Claims, JwtAlg, JwtKeyConfig, JwtKeys, JwtSettings};
use tollgate::core::limits::{AnchoredWindow, WINDOW_MAX_REQUESTS};
use tollgate::core::model::{RateLimit, Role, Tier, UserStatus};
use tollgate::core::verify::VerifyRequest;
use tollgate::engine::{Engine, NewKey, now_us};

const KEYS: usize = 1_000_000;

/// The Pro tier with its per-minute team limit lifted (the tests' fixture too).
const PRO_UNLIMITED: &str = include_str!("fixtures/pro_unlimited.toml");

fn engine(dir: &std::path::Path) -> Engine {
    let mut c = Config::parse(PRO_UNLIMITED).unwrap();
    c.data = dir.join("data");
    if let Ok(ms) = std::env::var("TOLLGATE_BENCH_FLUSH_MS") {
        c.durability.flush_interval_ms = ms.parse().unwrap();
    }
    Engine::open(&c).unwrap()
}

/// One API key verification with a million keys loaded: checksum, SHA-256,
/// lookup, checks, counters.
fn api_key(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let team = e.create_team("bench", Tier::Pro).unwrap();
    let user = e.create_user(&team.id, "bench", "bench password", Role::Administrator, UserStatus::Enabled).unwrap();
    let t = Instant::now();
    let mut secrets = Vec::with_capacity(KEYS);
    for _ in 0..KEYS / 100_000 {
        let batch = (0..100_000).map(|_| NewKey { user_id: user.id.clone(), ..Default::default() }).collect();
        secrets.extend(e.create_keys(batch).unwrap().into_iter().map(|(_, s)| s));
    }
    eprintln!("loaded {} keys in {:?}", e.index().keys.len(), t.elapsed());
    // Visit keys in a scattered order so the lookups are not cache-friendly. A
    // server verifies bytes it has just read from its socket (in cache), so the
    // next credential is touched one iteration ahead: what is measured is the
    // index, not the bench's own million-string vector.
    let mut i = 0usize;
    c.bench_function("api_key_verify/1M_keys", |b| {
        b.iter(|| {
            let next = (i + 7_919) % KEYS;
            black_box(secrets[next].as_bytes()[0]);
            let v = e.verify_at(&VerifyRequest::new(&secrets[i]), now_us());
            i = next;
            black_box(v)
        })
    });
    let (_, limited) = e
        .create_key(NewKey {
            user_id: user.id.clone(),
            remaining: Some(u32::MAX),
            // The largest limit, on a window short enough never to deny.
            rate_limit: Some(RateLimit { max: WINDOW_MAX_REQUESTS, window_ms: 100 }),
            ..Default::default()
        })
        .unwrap();
    c.bench_function("api_key_verify/with_remaining_and_rate_limit", |b| {
        b.iter(|| black_box(e.verify_at(&VerifyRequest::new(&limited), now_us())))
    });
    c.bench_function("api_key_verify/malformed", |b| {
        b.iter(|| black_box(e.verify_at(&VerifyRequest::new("tg_0000000000000000000000000000000000000"), now_us())))
    });
    let (_, token) = e.create_token(&user.id, "bench", "personal", None).unwrap();
    c.bench_function("access_token_verify", |b| {
        b.iter(|| black_box(e.verify_at(&VerifyRequest::new(&token), now_us())))
    });
    let jwt = e.login("bench", "bench password").unwrap();
    c.bench_function("engine_jwt_verify/EdDSA_cached", |b| {
        b.iter(|| black_box(e.verify_at(&VerifyRequest::new(&jwt), now_us())))
    });
}

fn key_config(alg: JwtAlg) -> JwtKeyConfig {
    let pem = |f: &str| std::fs::read_to_string(format!("{}/tests/keys/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (secret, private) = match alg {
        JwtAlg::HS256 => (Some("a bench secret of at least thirty-two bytes".to_owned()), None),
        JwtAlg::RS256 => (None, Some(pem("rsa2048.pem"))),
        JwtAlg::ES256 => (None, Some(pem("p256.pem"))),
        JwtAlg::EdDSA => (None, Some(pem("ed25519.pem"))),
    };
    JwtKeyConfig { kid: format!("{alg:?}"), alg, secret, private_key_pem: private, public_key_pem: None }
}

/// JWT verification per algorithm, without the cache (every call checks the
/// signature) and with it (a repeated token).
fn jwt(c: &mut Criterion) {
    let now = now_us() / 1_000_000;
    for alg in [JwtAlg::HS256, JwtAlg::RS256, JwtAlg::ES256, JwtAlg::EdDSA] {
        for (label, capacity) in [("cold", 0), ("cached", 1000)] {
            let settings = JwtSettings {
                issuer: "tollgate".into(),
                audience: None,
                leeway_secs: 30,
                ttl_secs: 3600,
                max_lifetime_secs: 86_400,
                max_token_bytes: 4096,
                cache_capacity: capacity,
                signing_kid: format!("{alg:?}"),
                keys: vec![key_config(alg)],
            };
            let keys = JwtKeys::new(&settings).unwrap();
            let token = keys
                .issue(&Claims {
                    iss: "tollgate".into(),
                    sub: "user_0123456789abcdefghij".into(),
                    aud: None,
                    iat: now,
                    iat_ms: None,
                    exp: now + 3600,
                    nbf: now,
                    jti: "5b0f8b1e-4c5c-4b8e-9a57-2f0c1f3e6a11".into(),
                    prv: "tollgate".into(),
                    team: "team_0123456789abcdefghij".into(),
                    roles: vec!["Administrator".into()],
                    subscription: "Pro".into(),
                    key: None,
                })
                .unwrap();
            c.bench_function(&format!("jwt_verify/{alg:?}_{label}"), |b| {
                b.iter(|| black_box(keys.verify(black_box(&token), now)))
            });
        }
    }
}

/// One per-key window update that admits (time advances so that each window
/// holds at most 100 requests).
fn key_window(c: &mut Criterion) {
    let g = Arc::new(AnchoredWindow::default());
    let limit = RateLimit { max: 100, window_ms: 1000 };
    let mut now = now_us();
    c.bench_function("key_window_update", |b| {
        b.iter_batched(
            || {
                now += 10_000;
                now
            },
            |t| black_box(g.try_take(limit, t, 1)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = key_window, jwt, api_key
}
criterion_main!(benches);
