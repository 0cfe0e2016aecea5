//! The socket service's per-request work without the socket: decode a verify
//! frame, verify one hot API key, encode the answer, and whatever the service
//! counts along the way. `cargo bench --bench socket`; BENCHMARKS.md
//! ("Metrics overhead") records the numbers.
// `criterion_group!` defines a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::config::Config;
use tollgate::core::limits::WINDOW_MAX_REQUESTS;
use tollgate::core::model::{Permissions, RateLimit, Role, Tier, UserStatus};
use tollgate::engine::{Engine, NewKey, now_us};
use tollgate::sidecar::{EngineService, Service as _};
use tollgate_protocol as proto;

/// The Pro tier with its per-minute team limit lifted (the tests' fixture too).
const PRO_UNLIMITED: &str = include_str!("fixtures/pro_unlimited.toml");

/// An engine on `dir` with the bench tier overrides.
fn engine(dir: &std::path::Path) -> Engine {
    let mut config = Config::parse(PRO_UNLIMITED).unwrap();
    config.data = dir.join("data");
    Engine::open(&config).unwrap()
}

fn socket_answer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let team = e.create_team("bench", Tier::Pro).unwrap();
    let user = e.create_user(&team.id, "bench", "bench password", Role::Administrator, UserStatus::Enabled).unwrap();
    let (_, hot) = e
        .create_key(NewKey {
            user_id: user.id.clone(),
            remaining: Some(u32::MAX),
            // The largest limit, on a window short enough never to deny.
            rate_limit: Some(RateLimit { max: WINDOW_MAX_REQUESTS, window_ms: 100 }),
            ..Default::default()
        })
        .unwrap();
    let svc = EngineService::new(Arc::new(e));
    let mut frame = Vec::new();
    proto::encode_request(7, &proto::Request::Verify(proto::VerifyRequest::new(&hot)), &mut frame).unwrap();
    let mut out = Vec::with_capacity(4096);
    c.bench_function("socket_answer/api_key_hot", |b| {
        b.iter(|| {
            out.clear();
            let (id, req) = proto::decode_request(black_box(&frame)).unwrap();
            black_box(svc.answer(id, req, now_us(), &mut out));
        })
    });
    c.bench_function("socket_answer/malformed", |b| {
        let mut bad = Vec::new();
        let cred = "tg_0000000000000000000000000000000000000";
        proto::encode_request(8, &proto::Request::Verify(proto::VerifyRequest::new(cred)), &mut bad).unwrap();
        b.iter(|| {
            out.clear();
            let (id, req) = proto::decode_request(black_box(&bad)).unwrap();
            black_box(svc.answer(id, req, now_us(), &mut out));
        })
    });
}

/// The same work over the load generator's population of 100k keys, each
/// request for a different key: what the daemon does per request of
/// `tollgate bench`, without the socket. The next frame is touched one request
/// ahead, as a server has just read it.
fn socket_answer_population(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(dir.path()));
    let creds = population(&e, KEYS);
    let frames = tollgate_loadgen::Frames::encode(&creds).unwrap();
    let svc = EngineService::new(e);
    let mut out = Vec::with_capacity(4096);
    let mut i = 0usize;
    c.bench_function("socket_answer/100k_keys", |b| {
        b.iter(|| {
            let next = (i + 7_919) % KEYS;
            black_box(frames.get(next));
            out.clear();
            let (id, req) = proto::decode_request(frames.get(i)).unwrap();
            black_box(svc.answer(id, req, now_us(), &mut out));
            i = next;
        })
    });
}

/// `n` keys of one Administrator of a Pro team, with the permissions
/// `tollgate bench` gives its population (`documents: [read, write, share]`,
/// `invoices: [read]`), made in the engine.
fn population(e: &Engine, n: usize) -> Vec<String> {
    let team = e.create_team("bench", Tier::Pro).unwrap();
    let user = e.create_user(&team.id, "bench", "bench password", Role::Administrator, UserStatus::Enabled).unwrap();
    let mut perms = Permissions::default();
    perms.0.insert("documents".into(), vec!["read".into(), "write".into(), "share".into()]);
    perms.0.insert("invoices".into(), vec!["read".into()]);
    let mut secrets = Vec::with_capacity(n);
    while secrets.len() < n {
        let batch = (0..(n - secrets.len()).min(10_000))
            .map(|_| NewKey { user_id: user.id.clone(), permissions: perms.clone(), ..Default::default() })
            .collect();
        secrets.extend(e.create_keys(batch).unwrap().into_iter().map(|(_, s)| s));
    }
    secrets
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(100).warm_up_time(std::time::Duration::from_secs(2)).measurement_time(std::time::Duration::from_secs(5));
    targets = socket_answer, socket_answer_population
}
criterion_main!(benches);
