//! The engine end to end: exact counters under concurrency, and persistence
//! across restarts.

use crate::common;

use std::collections::HashMap;
use std::sync::Barrier;

use tollgate::core::model::{Permissions, RateLimit, Refill, Role, Tier, UserStatus};
use tollgate::core::verify::{DenyCode, Verdict, VerifyRequest};
use tollgate::engine::{KeyUpdate, NewKey, now_us};

const THREADS: usize = 8;
const ATTEMPTS: usize = 10_000;

/// Runs `THREADS` × `ATTEMPTS` verifications of `f` and tallies the outcomes.
fn hammer(f: impl Fn(usize) -> Verdict + Sync) -> HashMap<Option<DenyCode>, usize> {
    hammer_with(THREADS, ATTEMPTS, f)
}

/// Runs `threads` × `attempts` verifications of `f` (called with the attempt's
/// number, `thread * attempts + i`) and tallies the outcomes.
fn hammer_with(
    threads: usize,
    attempts: usize,
    f: impl Fn(usize) -> Verdict + Sync,
) -> HashMap<Option<DenyCode>, usize> {
    let barrier = Barrier::new(threads);
    let tallies: Vec<HashMap<Option<DenyCode>, usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    let mut m = HashMap::new();
                    barrier.wait();
                    for i in 0..attempts {
                        *m.entry(f(t * attempts + i).code()).or_default() += 1;
                    }
                    m
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = HashMap::new();
    for m in tallies {
        for (k, v) in m {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

#[test]
fn remaining_uses_admit_exactly_n_under_contention() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "alice");
    let (key, secret) = e.create_key(NewKey { user_id: user, remaining: Some(1000), ..Default::default() }).unwrap();
    let t = hammer(|_| e.verify(&VerifyRequest::new(&secret)));
    assert_eq!(t.get(&None), Some(&1000), "{t:?}");
    assert_eq!(t.get(&Some(DenyCode::UsageExceeded)), Some(&(THREADS * ATTEMPTS - 1000)));
    let (_, usage) = e.key(&key.id).unwrap();
    assert_eq!((usage.remaining, usage.request_count), (0, 1000));
}

#[test]
fn key_rate_limit_admits_exactly_its_max_under_contention() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "bob");
    let limit = RateLimit { max: 1000, window_ms: 3_600_000 };
    let (_, secret) = e.create_key(NewKey { user_id: user, rate_limit: Some(limit), ..Default::default() }).unwrap();
    let now = now_us();
    let t = hammer(|_| e.verify_at(&VerifyRequest::new(&secret), now));
    assert_eq!(t.get(&None), Some(&1000), "{t:?}");
    assert_eq!(t.get(&Some(DenyCode::RateLimited)), Some(&(THREADS * ATTEMPTS - 1000)));
    // Nothing trickles back during the window (no token-bucket refill)...
    assert_eq!(e.verify_at(&VerifyRequest::new(&secret), now + 3_600_000).code(), Some(DenyCode::RateLimited));
    // ...and when it has passed, the next window admits the whole max again.
    let later = now + 3_600_000_000;
    let t = hammer(|_| e.verify_at(&VerifyRequest::new(&secret), later));
    assert_eq!(t.get(&None), Some(&1000), "{t:?}");
}

/// Seed 002: "Once the maxRequests is reached, the request will be rejected
/// until the timeWindow has passed, at which point the timeWindow will be reset."
#[test]
fn key_rate_limit_of_2_per_minute_admits_2_in_the_minute_then_resets() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "bob2");
    let limit = RateLimit { max: 2, window_ms: 60_000 };
    let (_, secret) = e.create_key(NewKey { user_id: user, rate_limit: Some(limit), ..Default::default() }).unwrap();
    let t0 = now_us();
    let at = |ms: u64| e.verify_at(&VerifyRequest::new(&secret), t0 + ms * 1000);
    let mut allowed = Vec::new();
    for ms in (0..60_000).step_by(500) {
        match at(ms) {
            Verdict::Allow(a) => {
                // The team (Pro, per-minute limit lifted) has no rate limit:
                // the verdict reports the key's.
                let rl = a.rate_limit.unwrap();
                assert_eq!((rl.limit, rl.reset_ms), (2, 60_000 - ms), "at {ms} ms");
                allowed.push((ms, rl.remaining));
            }
            Verdict::Deny(d) => {
                assert_eq!(d.code, DenyCode::RateLimited, "at {ms} ms");
                // Retry when the window that started at 0 ends.
                assert_eq!(d.retry_after_ms, Some(60_000 - ms), "at {ms} ms");
                let rl = d.rate_limit.unwrap();
                assert_eq!((rl.limit, rl.remaining, rl.reset_ms), (2, 0, 60_000 - ms), "at {ms} ms");
            }
        }
    }
    assert_eq!(allowed, [(0, 1), (500, 0)], "exactly 2 in the minute");
    // At 60 s the window has passed: a new one starts with this request.
    match at(60_000) {
        Verdict::Allow(a) => assert_eq!(a.rate_limit.map(|r| (r.remaining, r.reset_ms)), Some((1, 60_000))),
        v => panic!("{v:?}"),
    }
    assert!(at(60_500).is_allow());
    assert_eq!(at(61_000).code(), Some(DenyCode::RateLimited));
}

#[test]
fn a_key_rate_limit_above_the_cap_is_refused() {
    use tollgate::core::limits::WINDOW_MAX_REQUESTS;
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "bob5");
    let new = |max| NewKey {
        user_id: user.clone(),
        rate_limit: Some(RateLimit { max, window_ms: 60_000 }),
        ..Default::default()
    };
    let err = e.create_key(new(WINDOW_MAX_REQUESTS + 1)).unwrap_err().to_string();
    assert!(err.contains("rateLimitMax") && err.contains("4194303"), "{err}");
    let (key, _) = e.create_key(new(WINDOW_MAX_REQUESTS)).unwrap();
    let too_many = Some(Some(RateLimit { max: u32::MAX, window_ms: 60_000 }));
    assert!(e.update_key(&key.id, KeyUpdate { rate_limit: too_many, ..Default::default() }).is_err());
}

#[test]
fn key_rate_limit_of_2_admits_2_of_16_threads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "bob3");
    let limit = RateLimit { max: 2, window_ms: 60_000 };
    let (_, secret) = e.create_key(NewKey { user_id: user, rate_limit: Some(limit), ..Default::default() }).unwrap();
    let now = now_us();
    let t = hammer_with(16, 2_000, |_| e.verify_at(&VerifyRequest::new(&secret), now));
    assert_eq!(t.get(&None), Some(&2), "{t:?}");
    assert_eq!(t.get(&Some(DenyCode::RateLimited)), Some(&(16 * 2_000 - 2)));
    let t = hammer_with(16, 2_000, |_| e.verify_at(&VerifyRequest::new(&secret), now + 60_000_000));
    assert_eq!(t.get(&None), Some(&2), "a minute later: {t:?}");
}

/// Many threads with random, disagreeing clocks: each admitted request reports
/// its window (its time + reset - window), and no window admits more than the
/// max, windows do not overlap, and each starts at an admitted request.
#[test]
fn key_rate_limit_never_admits_more_than_max_in_a_window_at_random_times() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "bob4");
    let limit = RateLimit { max: 5, window_ms: 1000 };
    let (_, secret) = e.create_key(NewKey { user_id: user, rate_limit: Some(limit), ..Default::default() }).unwrap();
    let base = now_us();
    let admitted: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
    let t = hammer_with(THREADS, 5_000, |n| {
        // xorshift of the attempt number: reproducible, different per thread.
        let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        x ^= x << 17;
        // Each attempt is 10 ms after the last of its thread, give or take 100 ms.
        let i = (n % 5_000) as u64;
        let now = base + i * 10_000 + x % 200_000;
        let v = e.verify_at(&VerifyRequest::new(&secret), now);
        if let Verdict::Allow(a) = &v {
            let rl = a.rate_limit.unwrap();
            let now_ms = now / 1000;
            admitted.lock().unwrap().push((now_ms + rl.reset_ms - limit.window_ms, now_ms));
        }
        v
    });
    let admitted = admitted.into_inner().unwrap();
    assert_eq!(t.get(&None), Some(&admitted.len()));
    let mut windows: HashMap<u64, (u32, bool)> = HashMap::new();
    for &(start, at) in &admitted {
        assert!(at < start + limit.window_ms, "admitted at {at} in the window of {start}");
        let w = windows.entry(start).or_default();
        w.0 += 1;
        w.1 |= at == start;
    }
    let mut starts: Vec<u64> = windows.keys().copied().collect();
    starts.sort_unstable();
    // About 50 s of clock: each window filled.
    assert!(starts.len() >= 30, "{} windows", starts.len());
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= limit.window_ms, "windows overlap: {pair:?}");
    }
    for (start, (count, anchored)) in windows {
        assert!(count <= limit.max, "the window at {start} admitted {count}");
        assert!(anchored, "the window at {start} does not start at an admitted request");
    }
}

#[test]
fn a_verdict_reports_the_tighter_of_the_key_and_team_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
[tiers.Start]
requests_per_minute = 4
members = 3
documents = 250
log_retention_days = 90
"#;
    let e = common::engine(dir.path(), toml);
    let (_, user) = common::team_and_user(&e, Tier::Start, "olga");
    let key = |max| {
        let rate_limit = Some(RateLimit { max, window_ms: 60_000 });
        e.create_key(NewKey { user_id: user.clone(), rate_limit, ..Default::default() }).unwrap().1
    };
    let (two, hundred, other_two) = (key(2), key(100), key(2));
    // Half a minute into the team's window: it resets in 30 s, a key's new
    // window in 60 s.
    let now = (now_us() / 60_000_000 + 1) * 60_000_000 + 30_000_000;
    let rate = |secret: &str| match e.verify_at(&VerifyRequest::new(secret), now) {
        Verdict::Allow(a) => a.rate_limit.map(|r| (r.limit, r.remaining, r.reset_ms)),
        v => panic!("{v:?}"),
    };
    // Key 1 of 2 left, team 3 of 4: the key's.
    assert_eq!(rate(&two), Some((2, 1, 60_000)));
    // Key 99 of 100, team 2 of 4: the team's.
    assert_eq!(rate(&hundred), Some((4, 2, 30_000)));
    // Key 1 of 2, team 1 of 4: a tie, the key's resets later.
    assert_eq!(rate(&other_two), Some((2, 1, 60_000)));
}

#[test]
fn team_per_minute_limit_is_shared_and_exact_across_keys() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
[tiers.Start]
requests_per_minute = 1000
members = 3
documents = 250
log_retention_days = 90
"#;
    let e = common::engine(dir.path(), toml);
    let (_, user) = common::team_and_user(&e, Tier::Start, "carol");
    let secrets: Vec<String> =
        (0..THREADS).map(|_| e.create_key(NewKey { user_id: user.clone(), ..Default::default() }).unwrap().1).collect();
    // Start of a minute plus one second: the whole test is inside one window.
    let now = (now_us() / 60_000_000 + 1) * 60_000_000 + 1_000_000;
    let t = hammer(|i| e.verify_at(&VerifyRequest::new(&secrets[i / ATTEMPTS]), now));
    assert_eq!(t.get(&None), Some(&1000), "{t:?}");
    assert_eq!(t.get(&Some(DenyCode::TeamRateLimited)), Some(&(THREADS * ATTEMPTS - 1000)));
    // The next minute starts afresh.
    assert!(e.verify_at(&VerifyRequest::new(&secrets[0]), now + 60_000_000).is_allow());
}

#[test]
fn team_document_quota_is_exact_and_a_denial_consumes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (team, user) = common::team_and_user(&e, Tier::Pro, "dave");
    let (key, secret) = e.create_key(NewKey { user_id: user, remaining: Some(6000), ..Default::default() }).unwrap();
    let t = hammer(|_| {
        let mut r = VerifyRequest::new(&secret);
        r.quota = Some(("documents", 1));
        e.verify(&r)
    });
    assert_eq!(t.get(&None), Some(&5000), "{t:?}");
    assert_eq!(e.quota_used(&team).unwrap(), 5000);
    // Quota denials gave back the key's uses: 6000 - 5000 allowed.
    assert_eq!(e.key(&key.id).unwrap().1.remaining, 1000);
    assert_eq!(e.release_quota(&team, 10).unwrap(), 4990);
}

#[test]
fn every_check_has_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "erin");
    let mut perms = Permissions::default();
    perms.0.insert("files".into(), vec!["read".into()]);
    let (key, secret) = e
        .create_key(NewKey {
            user_id: user.clone(),
            permissions: perms,
            whitelisted_ips: vec!["10.0.0.0/8".into(), "2001:db8::1".into()],
            ..Default::default()
        })
        .unwrap();
    let v = |cred: &str, ip: &str, perms: &[(&str, &str)]| {
        let mut r = VerifyRequest::new(cred);
        r.ip = Some(ip.parse().unwrap());
        r.permissions = perms;
        e.verify(&r).code()
    };
    assert_eq!(v(&secret, "10.1.2.3", &[("files", "read")]), None);
    assert_eq!(v(&secret, "2001:db8::1", &[]), None);
    assert_eq!(v(&secret, "11.1.2.3", &[]), Some(DenyCode::IpNotAllowed));
    assert_eq!(v(&secret, "10.1.2.3", &[("files", "write")]), Some(DenyCode::InsufficientPermissions));
    assert_eq!(e.verify(&VerifyRequest::new(&secret)).code(), Some(DenyCode::IpNotAllowed), "no IP, allowlist set");
    let mut forged = secret.clone();
    forged.replace_range(5..6, if &secret[5..6] == "a" { "b" } else { "a" });
    assert_eq!(v(&forged, "10.1.2.3", &[]), Some(DenyCode::Malformed));
    let unknown = e.create_key(NewKey { user_id: user.clone(), ..Default::default() }).unwrap();
    e.delete_key(&unknown.0.id).unwrap();
    assert_eq!(v(&unknown.1, "10.1.2.3", &[]), Some(DenyCode::NotFound));

    e.update_key(&key.id, KeyUpdate { enabled: Some(false), ..Default::default() }).unwrap();
    assert_eq!(v(&secret, "10.1.2.3", &[]), Some(DenyCode::Disabled));
    e.update_key(&key.id, KeyUpdate { enabled: Some(true), expires_at: Some(Some(1)), ..Default::default() }).unwrap();
    assert_eq!(v(&secret, "10.1.2.3", &[]), Some(DenyCode::Expired));
    e.update_key(&key.id, KeyUpdate { expires_at: Some(None), ..Default::default() }).unwrap();
    e.update_user(&user, None, Some(UserStatus::Disabled), None).unwrap();
    assert_eq!(v(&secret, "10.1.2.3", &[]), Some(DenyCode::Disabled));
    e.update_user(&user, None, Some(UserStatus::Enabled), None).unwrap();
    assert_eq!(v(&secret, "10.1.2.3", &[]), None);

    // Access tokens act with their user's role and die when revoked.
    let (tok, plain) = e.create_token(&user, "ci", "personal", Some(30)).unwrap();
    assert!(e.verify(&VerifyRequest::new(&plain)).is_allow());
    e.update_user(&user, Some(Role::Reader), None, None).unwrap();
    let mut r = VerifyRequest::new(&plain);
    r.permissions = &[("documents", "update")];
    assert_eq!(e.verify(&r).code(), Some(DenyCode::InsufficientPermissions));
    e.revoke_token(&tok.id).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&plain)).code(), Some(DenyCode::Revoked));
}

#[test]
fn refill_restores_remaining_each_interval() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "frank");
    let refill = Refill { amount: 3, interval_ms: 60_000 };
    let (key, secret) = e.create_key(NewKey { user_id: user, refill: Some(refill), ..Default::default() }).unwrap();
    let start = key.created_at * 1000;
    let at = |t: u64| e.verify_at(&VerifyRequest::new(&secret), start + t).code();
    assert_eq!([at(0), at(1), at(2)], [None, None, None]);
    match e.verify_at(&VerifyRequest::new(&secret), start + 3) {
        Verdict::Deny(d) => {
            assert_eq!(d.code, DenyCode::UsageExceeded);
            assert_eq!(d.retry_after_ms, Some(60_000));
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(at(60_000_000), None);
}

#[test]
fn everything_acknowledged_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (team, user, kept, deleted, token, used);
    {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        (team, user) = common::team_and_user(&e, Tier::Pro, "grace");
        let k = e
            .create_key(NewKey {
                user_id: user.clone(),
                remaining: Some(10),
                name: Some("kept".into()),
                ..Default::default()
            })
            .unwrap();
        let d = e.create_key(NewKey { user_id: user.clone(), ..Default::default() }).unwrap();
        e.delete_key(&d.0.id).unwrap();
        let t = e.create_token(&user, "laptop", "personal", None).unwrap();
        for _ in 0..4 {
            assert!(e.verify(&VerifyRequest::new(&k.1)).is_allow());
        }
        assert!(e.verify(&VerifyRequest::new(&t.1)).is_allow());
        e.consume_quota(&team, 7).unwrap().unwrap();
        e.set_team_tier(&team, Tier::Master, false).unwrap();
        e.update_key(&k.0.id, KeyUpdate { name: Some(Some("renamed".into())), ..Default::default() }).unwrap();
        used = e.key(&k.0.id).unwrap().1;
        e.shutdown().unwrap();
        (kept, deleted, token) = (k, d, t);
    }
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (k, usage) = e.key(&kept.0.id).unwrap();
    assert_eq!(k.name.as_deref(), Some("renamed"));
    assert_eq!(usage, used);
    assert_eq!((usage.remaining, usage.request_count), (6, 4));
    assert!(e.verify(&VerifyRequest::new(&kept.1)).is_allow());
    assert_eq!(e.verify(&VerifyRequest::new(&deleted.1)).code(), Some(DenyCode::NotFound));
    assert!(e.verify(&VerifyRequest::new(&token.1)).is_allow());
    assert!(e.token(&token.0.id).unwrap().1 > 0, "last_used_at persisted");
    assert_eq!(e.quota_used(&team).unwrap(), 7);
    assert_eq!(e.team(&team).unwrap().tier, Tier::Master);
    // A JWT issued before the restart still verifies (the signing key persisted).
    let jwt = e.login("grace", "correct horse battery").unwrap();
    drop(e);
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    assert!(e.verify(&VerifyRequest::new(&jwt)).is_allow());
    assert_eq!(e.user(&user).unwrap().username, "grace");
}

#[test]
fn jwt_login_revocation_and_user_status() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "heidi");
    assert!(e.login("heidi", "wrong password").is_err());
    assert!(e.login("nobody", "correct horse battery").is_err());
    let jwt = e.login("heidi", "correct horse battery").unwrap();
    match e.verify(&VerifyRequest::new(&jwt)) {
        Verdict::Allow(a) => {
            assert_eq!(a.subject(), user.as_str());
            assert_eq!(a.role, Role::Administrator);
        }
        v => panic!("{v:?}"),
    }
    // Repeated (cached) verification sees a disabled user; leaving Enabled
    // revokes the user's sessions, so enabling again does not revive them.
    let (_, pat) = e.create_token(&user, "t", "personal", None).unwrap();
    e.update_user(&user, None, Some(UserStatus::Disabled), None).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&jwt)).code(), Some(DenyCode::Revoked));
    assert_eq!(e.verify(&VerifyRequest::new(&pat)).code(), Some(DenyCode::Disabled));
    assert!(e.login("heidi", "correct horse battery").is_err());
    e.update_user(&user, None, Some(UserStatus::Enabled), None).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&jwt)).code(), Some(DenyCode::Revoked));
    assert!(e.verify(&VerifyRequest::new(&pat)).is_allow());
    // A login right after a revocation (the same second) is not revoked by it.
    let fresh = e.login("heidi", "correct horse battery").unwrap();
    assert!(e.verify(&VerifyRequest::new(&fresh)).is_allow());
    e.revoke_user_jwts(&user).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&fresh)).code(), Some(DenyCode::Revoked));
    // A password change revokes too.
    let fresh = e.login("heidi", "correct horse battery").unwrap();
    e.update_user(&user, None, None, Some("another good password")).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&fresh)).code(), Some(DenyCode::Revoked));
    e.update_user(&user, None, None, Some("correct horse battery")).unwrap();
    // Login with an API key as the username.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, key) = e.create_key(NewKey { user_id: user.clone(), ..Default::default() }).unwrap();
    let jwt2 = e.login_with_key(&key, None).unwrap();
    assert!(e.verify(&VerifyRequest::new(&jwt2)).is_allow());
    e.delete_user(&user).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&jwt2)).code(), Some(DenyCode::Revoked));
    // The user's keys are deleted with it.
    assert_eq!(e.verify(&VerifyRequest::new(&key)).code(), Some(DenyCode::NotFound));
    assert!(e.keys(&e.user(&user).unwrap().team_id).unwrap().is_empty());
}

#[test]
fn tier_member_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), "");
    let (team, _) = common::team_and_user(&e, Tier::Free, "ivan");
    let err = e.create_user(&team, "judy", "correct horse battery", Role::Reader, UserStatus::Enabled).unwrap_err();
    assert!(err.to_string().contains("Free tier allows 1 members"), "{err}");
}

#[test]
fn a_tier_downgrade_below_what_the_team_holds_is_refused_unless_forced() {
    use tollgate::engine::EngineError;
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), "");
    let pass = "correct horse battery";
    // Start: 3 members, 250 documents; Free: 1 member, 10 documents.
    let (team, _) = common::team_and_user(&e, Tier::Start, "kate");
    let second = e.create_user(&team, "leo", pass, Role::Reader, UserStatus::Disabled).unwrap();
    let err = e.set_team_tier(&team, Tier::Free, false).unwrap_err();
    assert!(matches!(err, EngineError::TierExceeded(_)), "{err:?}");
    assert!(err.to_string().contains("2 members > Free's 1"), "{err}");
    assert!(!err.to_string().contains("documents"), "{err}");
    assert_eq!(e.team(&team).unwrap().tier, Tier::Start, "nothing changed");
    // Documents too, both named at once.
    e.consume_quota(&team, 20).unwrap().unwrap();
    let err = e.set_team_tier(&team, Tier::Free, false).unwrap_err().to_string();
    assert!(err.contains("2 members > Free's 1") && err.contains("20 documents > Free's 10"), "{err}");
    // Upgrades and sideways moves within the limits are not affected.
    e.set_team_tier(&team, Tier::Master, false).unwrap();
    e.set_team_tier(&team, Tier::Start, false).unwrap();
    // A deleted user is not a member; documents at the limit do not exceed it.
    e.delete_user(&second.id).unwrap();
    e.release_quota(&team, 10).unwrap();
    assert_eq!(e.set_team_tier(&team, Tier::Free, false).unwrap().tier, Tier::Free);

    // Forced, the downgrade applies and the new limits bind from then on.
    let (team, _) = common::team_and_user(&e, Tier::Start, "mia");
    e.create_user(&team, "ned", pass, Role::Reader, UserStatus::Enabled).unwrap();
    e.consume_quota(&team, 11).unwrap().unwrap();
    assert!(e.set_team_tier(&team, Tier::Free, false).is_err());
    assert_eq!(e.set_team_tier(&team, Tier::Free, true).unwrap().tier, Tier::Free);
    assert_eq!(e.team(&team).unwrap().tier, Tier::Free);
    let err = e.create_user(&team, "otto", pass, Role::Reader, UserStatus::Enabled).unwrap_err();
    assert!(err.to_string().contains("Free tier allows 1 members"), "{err}");
    assert_eq!(e.consume_quota(&team, 1).unwrap(), Err(11));
}

#[test]
fn usernames_are_unique_across_restarts_deletions_and_team_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let pass = "correct horse battery";
    let (team, user) = {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        common::team_and_user(&e, Tier::Pro, "ann")
    };
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    // The name index is rebuilt from the store.
    assert!(e.login("ann", pass).is_ok());
    assert!(e.create_user(&team, "ann", pass, Role::Reader, UserStatus::Enabled).is_err(), "taken");
    // Deleting anonymizes: the name no longer logs in and is free again.
    e.delete_user(&user).unwrap();
    assert!(e.login("ann", pass).is_err());
    assert!(e.user_by_name("ann").unwrap().is_none());
    let again = e.create_user(&team, "ann", pass, Role::Reader, UserStatus::Enabled).unwrap();
    assert_eq!(e.user_by_name("ann").unwrap().unwrap().id, again.id);
    // Deleting the team frees its users' names.
    e.delete_team(&team).unwrap();
    assert!(e.user_by_name("ann").unwrap().is_none());
    let other = e.create_team("other", Tier::Pro).unwrap();
    e.create_user(&other.id, "ann", pass, Role::Reader, UserStatus::Enabled).unwrap();
    assert!(e.login("ann", pass).is_ok());
}

#[test]
fn statistics_of_many_keys_survive_a_restart_through_the_shard_records() {
    let dir = tempfile::tempdir().unwrap();
    let toml =
        format!("{}\n[durability]\nflush_interval_ms = 20\nstats_flush_interval_ms = 50\n", common::PRO_UNLIMITED);
    let (ids, deleted);
    {
        let e = common::engine(dir.path(), &toml);
        let (_, user) = common::team_and_user(&e, Tier::Pro, "stats");
        let keys = e.create_keys((0..600).map(|_| NewKey { user_id: user.clone(), ..Default::default() }).collect());
        let keys = keys.unwrap();
        for (i, (_, secret)) in keys.iter().enumerate() {
            for _ in 0..=(i % 3) {
                assert!(e.verify(&VerifyRequest::new(secret)).is_allow());
            }
        }
        ids = keys.iter().map(|(k, _)| k.id.clone()).collect::<Vec<_>>();
        deleted = ids[7].clone();
        e.delete_key(&deleted).unwrap();
        // The statistics flush (every 50 ms here, and at shutdown) writes
        // shard records, not one usage record per key.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let e = common::engine(dir.path(), &toml);
    for (i, id) in ids.iter().enumerate() {
        if *id == deleted {
            assert!(e.key(id).is_err(), "a deleted key stays deleted");
            continue;
        }
        let (_, usage) = e.key(id).unwrap();
        assert_eq!(usage.request_count, (i % 3 + 1) as u64, "key {i}");
        assert!(usage.last_used_at > 0);
    }
}

#[test]
fn a_new_data_directory_is_private_and_an_existing_one_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // common::config puts the data in <dir>/data, which does not exist yet.
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    drop(e);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    std::fs::set_permissions(dir.path().join("data"), std::fs::Permissions::from_mode(0o750)).unwrap();
    drop(common::engine(dir.path(), common::PRO_UNLIMITED));
    assert_eq!(mode(&dir.path().join("data")), 0o750, "the owner's choice stands");
}

#[test]
fn a_grant_reports_who_and_what_for_every_kind_of_credential() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (team, user) = common::team_and_user(&e, Tier::Pro, "ivan");
    let allow = |credential: &str| match e.verify(&VerifyRequest::new(credential)) {
        Verdict::Allow(a) => a,
        v => panic!("{v:?}"),
    };
    let perms_json = |a: &tollgate::core::verify::Allow| serde_json::to_value(a.permissions()).unwrap();

    let mut perms = Permissions::default();
    perms.0.insert("documents".into(), vec!["read".into(), "write".into()]);
    let (key, secret) =
        e.create_key(NewKey { user_id: user.clone(), permissions: perms, ..Default::default() }).unwrap();
    let a = allow(&secret);
    assert_eq!((a.subject(), a.team(), a.credential_id()), (user.as_str(), team.as_str(), key.id.as_str()));
    assert_eq!(perms_json(&a), serde_json::json!({"documents": ["read", "write"]}));

    // An update replaces the key's entry: the next grant reports the new
    // permissions, and a grant made before it keeps reporting what it granted.
    let mut narrower = Permissions::default();
    narrower.0.insert("documents".into(), vec!["read".into()]);
    e.update_key(&key.id, KeyUpdate { permissions: Some(narrower), ..Default::default() }).unwrap();
    assert_eq!(perms_json(&allow(&secret)), serde_json::json!({"documents": ["read"]}));
    assert_eq!(perms_json(&a), serde_json::json!({"documents": ["read", "write"]}));

    // Access tokens and JWTs act with their user's role as of the verification.
    // (A role change revokes earlier JWTs: these are issued after it.)
    let (tok, plain) = e.create_token(&user, "ci", "personal", None).unwrap();
    let old_jwt = e.login("ivan", "correct horse battery").unwrap();
    e.update_user(&user, Some(Role::Reader), None, None).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&old_jwt)).code(), Some(DenyCode::Revoked));
    let jwt = e.login("ivan", "correct horse battery").unwrap();
    let jwt2 = e.login("ivan", "correct horse battery").unwrap();
    for (cred, id) in [(plain.as_str(), Some(tok.id.as_str())), (jwt.as_str(), None)] {
        let a = allow(cred);
        assert_eq!((a.subject(), a.team(), a.role), (user.as_str(), team.as_str(), Role::Reader));
        if let Some(id) = id {
            assert_eq!(a.credential_id(), id);
        }
        assert_eq!(a.permissions(), Role::Reader.permissions());
    }
    // A JWT's id is its own `jti`.
    let (j1, j2) = (allow(&jwt), allow(&jwt2));
    assert!(!j1.credential_id().is_empty() && j1.credential_id() != j2.credential_id());
}

#[test]
fn jti_revocations_are_scoped_to_their_team_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (jwt_a, jwt_b, other) = {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        let (team_a, _) = common::team_and_user(&e, Tier::Pro, "anna");
        common::team_and_user(&e, Tier::Pro, "bert");
        let (jwt_a, jwt_b) =
            (e.login("anna", "correct horse battery").unwrap(), e.login("bert", "correct horse battery").unwrap());
        let other = e.login("anna", "correct horse battery").unwrap();
        let jti = |t: &str| match e.verify(&VerifyRequest::new(t)) {
            Verdict::Allow(a) => a.credential_id().to_owned(),
            v => panic!("{v:?}"),
        };
        // Team a's member names b's jti: nothing happens to b's token.
        e.revoke_jti(&jti(&jwt_b), Some(&team_a), u64::MAX).unwrap();
        e.revoke_jti(&jti(&jwt_a), Some(&team_a), u64::MAX).unwrap();
        for bad in ["", "a\u{1f}b", &"x".repeat(129)] {
            assert!(e.revoke_jti(bad, None, u64::MAX).is_err(), "{bad:?}");
        }
        (jwt_a, jwt_b, other)
    };
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    assert_eq!(e.verify(&VerifyRequest::new(&jwt_a)).code(), Some(DenyCode::Revoked));
    assert!(e.verify(&VerifyRequest::new(&jwt_b)).is_allow());
    assert!(e.verify(&VerifyRequest::new(&other)).is_allow());
}

/// An admin-API call's credential check (`verify_admin_at`) neither meets nor
/// spends the team's per-minute tier limit (it limits the team's API
/// requests), while the key's own uses are spent exactly, from many threads.
#[test]
fn admin_calls_do_not_spend_the_team_minute_but_spend_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), "");
    let (_, user) = common::team_and_user(&e, Tier::Free, "dora");
    let (_, secret) =
        e.create_key(NewKey { user_id: user.clone(), remaining: Some(5000), ..Default::default() }).unwrap();
    let now = (now_us() / 60_000_000 + 1) * 60_000_000 + 1_000_000;
    // The Free tier allows 2 requests a minute; the admin checks go through.
    let t = hammer_with(4, 1000, |_| e.verify_admin_at(&VerifyRequest::new(&secret), now));
    assert_eq!(t.get(&None), Some(&4000), "{t:?}");
    // The minute is untouched: two API requests pass, the third is limited.
    assert!(e.verify_at(&VerifyRequest::new(&secret), now).is_allow());
    assert!(e.verify_at(&VerifyRequest::new(&secret), now).is_allow());
    assert_eq!(e.verify_at(&VerifyRequest::new(&secret), now).code(), Some(DenyCode::TeamRateLimited));
    // The key's own uses were spent by every check: 5000 - 4000 - 2 left.
    let t = hammer_with(4, 500, |_| e.verify_admin_at(&VerifyRequest::new(&secret), now));
    assert_eq!(t.get(&None), Some(&998), "{t:?}");
    assert_eq!(t.get(&Some(DenyCode::UsageExceeded)), Some(&1002), "{t:?}");
}

/// A new refill interval starts its periods at the change. Before, the stored
/// period (counted in the old interval) was kept: after 100 periods of 1 s, a
/// change to hourly refills held the next refill off for 100 hours.
#[test]
fn a_new_refill_interval_starts_its_periods_at_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    let (_, user) = common::team_and_user(&e, Tier::Pro, "refill-change");
    let refill = |interval_ms| Some(Refill { interval_ms, amount: 2 });
    let (key, secret) =
        e.create_key(NewKey { user_id: user, remaining: Some(2), refill: refill(1000), ..Default::default() }).unwrap();
    let t0 = now_us();
    let at = |secs: u64| e.verify_at(&VerifyRequest::new(&secret), t0 + secs * 1_000_000);
    // Period 100 of 1 s: refilled, then both uses spent.
    assert!(at(100).is_allow() && at(100).is_allow());
    assert_eq!(at(100).code(), Some(DenyCode::UsageExceeded));
    e.update_key(&key.id, KeyUpdate { refill: Some(refill(3_600_000)), ..Default::default() }).unwrap();
    // What was left carries over (nothing: the 1 s refill was not yet due at
    // the change), and the first hourly refill comes an hour after it.
    assert_eq!(at(3000).code(), Some(DenyCode::UsageExceeded));
    assert!(at(3601).is_allow());
    // A refill needs remaining uses: clearing them while it stays is refused.
    let err = e.update_key(&key.id, KeyUpdate { remaining: Some(None), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("refill"), "{err}");
}
