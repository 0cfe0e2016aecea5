//! The key image (`engine::image`): a clean shutdown writes it, the next
//! start reads it instead of the store's records and builds the same index;
//! a store written since, or a damaged image, makes the start read the store
//! — an image never brings back what the store no longer holds.

use crate::common;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tollgate::core::model::{Permissions, RateLimit, Refill, Tier};
use tollgate::core::secret;
use tollgate::core::verify::{DenyCode, Verdict, VerifyRequest};
use tollgate::engine::{Engine, ImportKey, KeyUpdate, NewKey};

const FOREIGN: &str = "sk_live_51HqLyjWDarjtT1zdp7dcXHEqV9lHx1sEZcFn";

fn image(dir: &Path) -> std::path::PathBuf {
    dir.join("data").join("keys.img")
}

fn hex(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the admin API and the verifier say of each key: its record and
/// counters, and the verdict (code, and for a grant its permissions) from
/// inside and outside the allowlist. Verifying spends a use, so the
/// verdicts are read last.
fn observe(e: &Engine, keys: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = keys.iter().map(|(id, _)| format!("{:?}", e.key(id).unwrap())).collect();
    let inside: IpAddr = "10.1.2.3".parse().unwrap();
    for (_, secret) in keys {
        for ip in [Some(inside), None] {
            let v = e.verify(&VerifyRequest { ip, ..VerifyRequest::new(secret) });
            out.push(match v {
                Verdict::Allow(a) => format!("allow {} {}", a.credential_id(), serde_json::json!(a.permissions())),
                Verdict::Deny(d) => format!("deny {:?}", d.code),
            });
        }
    }
    out
}

/// Keys of every shape: plain, counted and partly spent, refilled, rate
/// limited, disabled, allowlisted, with a narrower grant, adopted by hash
/// (a foreign format), and one deleted.
fn keys_of_every_shape(e: &Engine) -> Vec<(String, String)> {
    let (_, user) = common::team_and_user(e, Tier::Pro, "imager");
    let mk = |new: NewKey| {
        let (k, s) = e.create_key(NewKey { user_id: user.clone(), ..new }).unwrap();
        (k.id, s)
    };
    let mut perms = Permissions::default();
    perms.0.insert("documents".into(), vec!["read".into()]);
    let mut keys = vec![
        mk(NewKey::default()),
        mk(NewKey { remaining: Some(5), ..Default::default() }),
        mk(NewKey {
            remaining: Some(2),
            refill: Some(Refill { amount: 2, interval_ms: 86_400_000 }),
            ..Default::default()
        }),
        mk(NewKey { rate_limit: Some(RateLimit { max: 100, window_ms: 60_000 }), ..Default::default() }),
        mk(NewKey { whitelisted_ips: vec!["10.0.0.0/8".into()], ..Default::default() }),
        mk(NewKey { permissions: perms, name: Some("reader".into()), ..Default::default() }),
        mk(NewKey { expires_in_secs: Some(3600), ..Default::default() }),
    ];
    let disabled = mk(NewKey::default());
    e.update_key(&disabled.0, KeyUpdate { enabled: Some(false), ..Default::default() }).unwrap();
    keys.push(disabled);
    let deleted = mk(NewKey::default());
    e.delete_key(&deleted.0).unwrap();
    let deleted_secret = deleted.1;
    let adopted = e
        .import_keys(vec![ImportKey {
            key: NewKey { user_id: user.clone(), remaining: Some(9), ..Default::default() },
            hash: Some(hex(secret::sha256(FOREIGN.as_bytes()))),
            start: Some("sk_live_51".into()),
        }])
        .unwrap();
    keys.push((adopted[0].0.id.clone(), FOREIGN.to_owned()));
    // The deleted key's secret, under a live key's id (its record is gone).
    keys.push((keys[0].0.clone(), deleted_secret));
    // Spend some uses, so the image carries counters that moved.
    for (_, s) in &keys[1..3] {
        assert!(e.verify(&VerifyRequest::new(s)).is_allow());
    }
    keys
}

#[test]
fn a_clean_restart_reads_the_image_and_builds_the_index_the_store_would() {
    let dir = tempfile::tempdir().unwrap();
    let keys = {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        assert!(!e.loaded_from_image(), "a new data directory has no image");
        let keys = keys_of_every_shape(&e);
        e.shutdown().unwrap();
        keys
    };
    let meta = std::fs::metadata(image(dir.path())).expect("a clean shutdown writes the key image");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // The same directory twice: one start reads the image, the other the
    // store (its image removed); both must see the same keys.
    let twin = tempfile::tempdir().unwrap();
    common::copy_dir(&dir.path().join("data"), &twin.path().join("data"));
    std::fs::remove_file(image(twin.path())).unwrap();
    let from_image = {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        assert!(e.loaded_from_image());
        // The adopted prefixes came back too: a mistyped key of tollgate's
        // own format is still MALFORMED without a lookup.
        let mut typo = keys[0].1.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(e.verify(&VerifyRequest::new(&typo)).code(), Some(DenyCode::Malformed));
        assert_eq!(e.verify(&VerifyRequest::new("sk_live_unknown")).code(), Some(DenyCode::NotFound));
        observe(&e, &keys)
    };
    let from_store = {
        let e = common::engine(twin.path(), common::PRO_UNLIMITED);
        assert!(!e.loaded_from_image());
        observe(&e, &keys)
    };
    assert_eq!(from_image, from_store);
    assert!(from_image.iter().any(|v| v.starts_with("deny Disabled")), "{from_image:?}");
    assert!(from_image.iter().any(|v| v.starts_with("deny NotFound")), "{from_image:?}");
}

#[test]
fn a_store_written_after_the_image_is_read_instead_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (revoked, disabled, spent) = {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        let (_, user) = common::team_and_user(&e, Tier::Pro, "stale");
        let mk = |remaining| e.create_key(NewKey { user_id: user.clone(), remaining, ..Default::default() }).unwrap();
        let out = (mk(None), mk(None), mk(Some(1)));
        e.shutdown().unwrap();
        out
    };
    let old_image = std::fs::read(image(dir.path())).unwrap();
    {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        assert!(e.loaded_from_image());
        e.delete_key(&revoked.0.id).unwrap();
        e.update_key(&disabled.0.id, KeyUpdate { enabled: Some(false), ..Default::default() }).unwrap();
        assert!(e.verify(&VerifyRequest::new(&spent.1)).is_allow());
        e.flush().unwrap();
    }
    // What a crash after those writes leaves: the image of before them.
    std::fs::write(image(dir.path()), &old_image).unwrap();
    let e = common::engine(dir.path(), common::PRO_UNLIMITED);
    assert!(!e.loaded_from_image(), "the store moved on since the image");
    assert_eq!(e.verify(&VerifyRequest::new(&revoked.1)).code(), Some(DenyCode::NotFound));
    assert_eq!(e.verify(&VerifyRequest::new(&disabled.1)).code(), Some(DenyCode::Disabled));
    assert_eq!(e.verify(&VerifyRequest::new(&spent.1)).code(), Some(DenyCode::UsageExceeded));
}

#[test]
fn a_damaged_image_is_read_past_and_the_store_read_instead() {
    let dir = tempfile::tempdir().unwrap();
    // More keys than one section holds (16,384), so the image has several.
    let secrets: Vec<String> = {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        let (_, user) = common::team_and_user(&e, Tier::Pro, "damaged");
        let made = e
            .create_keys((0..20_000).map(|_| NewKey { user_id: user.clone(), ..Default::default() }).collect())
            .unwrap();
        e.shutdown().unwrap();
        made.into_iter().map(|(_, s)| s).collect()
    };
    let good = std::fs::read(image(dir.path())).unwrap();
    {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        assert!(e.loaded_from_image());
        assert_eq!(e.index().keys.len(), 20_000);
    }
    let flipped = {
        let mut b = good.clone();
        let at = b.len() / 2;
        b[at] ^= 0x40;
        b
    };
    let damages: [(&str, Vec<u8>); 4] = [
        ("a flipped byte", flipped),
        ("cut short", good[..good.len() - 1000].to_vec()),
        ("garbage", vec![0xAB; 4096]),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(image(dir.path()), &bytes).unwrap();
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        assert!(!e.loaded_from_image(), "{what}: read anyway");
        assert_eq!(e.index().keys.len(), 20_000, "{what}");
        for s in secrets.iter().step_by(997) {
            assert!(e.verify(&VerifyRequest::new(s)).is_allow(), "{what}");
        }
        // Its clean shutdown wrote a good image again.
        drop(e);
        assert_ne!(std::fs::read(image(dir.path())).unwrap(), bytes, "{what}");
    }
}

#[test]
fn an_image_from_another_history_of_the_directory_is_not_read() {
    // A directory copied (a backup), then both copies written to the same
    // number of times, differently: each copy's image belongs to its own
    // history only, though the two made as many writes since the copy.
    let (live, backup) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = {
        let e = common::engine(live.path(), common::PRO_UNLIMITED);
        let (_, user) = common::team_and_user(&e, Tier::Pro, "histories");
        let mk = || e.create_key(NewKey { user_id: user.clone(), ..Default::default() }).unwrap();
        let keys = (mk(), mk());
        e.shutdown().unwrap();
        keys
    };
    common::copy_dir(&live.path().join("data"), &backup.path().join("data"));
    for (dir, gone) in [(&live, &a), (&backup, &b)] {
        let e = common::engine(dir.path(), common::PRO_UNLIMITED);
        assert!(e.loaded_from_image());
        e.delete_key(&gone.0.id).unwrap();
    }
    // The live directory's image (key a deleted) put in the backup (key b
    // deleted): its start must read the backup's own store.
    std::fs::copy(image(live.path()), image(backup.path())).unwrap();
    let e = common::engine(backup.path(), common::PRO_UNLIMITED);
    assert!(!e.loaded_from_image(), "an image of another history was read");
    assert!(e.verify(&VerifyRequest::new(&a.1)).is_allow());
    assert_eq!(e.verify(&VerifyRequest::new(&b.1)).code(), Some(DenyCode::NotFound));
}
