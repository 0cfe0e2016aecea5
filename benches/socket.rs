//! The socket service's per-request work without the socket: decode a verify
//! frame, verify one hot API key, encode the answer, and whatever the service
//! counts along the way. `cargo bench --bench socket`; BENCHMARKS.md
//! ("Metrics overhead") records the numbers.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::config::Config;
use tollgate::core::model::{RateLimit, Role, Tier, UserStatus};
use tollgate::engine::{Engine, NewKey, now_us};
use tollgate::sidecar::{EngineService, Service as _};
use tollgate_protocol as proto;

fn socket_answer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(tollgate::loadgen::PRO_UNLIMITED).unwrap();
    config.data = dir.path().join("data");
    let e = Engine::open(&config).unwrap();
    let team = e.create_team("bench", Tier::Pro).unwrap();
    let user = e.create_user(&team.id, "bench", "bench password", Role::Administrator, UserStatus::Enabled).unwrap();
    let (_, hot) = e
        .create_key(NewKey {
            user_id: user.id.clone(),
            remaining: Some(u32::MAX),
            rate_limit: Some(RateLimit { max: u32::MAX, window_ms: 1000 }),
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(100).warm_up_time(std::time::Duration::from_secs(2)).measurement_time(std::time::Duration::from_secs(5));
    targets = socket_answer
}
criterion_main!(benches);
