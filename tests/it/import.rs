//! `Engine::import_keys`: keys adopted by the SHA-256 of their secret verify
//! with that secret whatever its format, generated ones get a secret; one
//! atomic write per call; a refused entry is named and nothing is written.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};

use tollgate::core::model::Tier;
use tollgate::core::secret;
use tollgate::core::verify::{DenyCode, VerifyRequest};
use tollgate::engine::{EngineError, ImportKey, MAX_IMPORT, NewKey};

const PRO: &str = "[tiers.Pro]\nrequests_per_minute = \"unlimited\"\nmembers = \"unlimited\"\ndocuments = 5000\nlog_retention_days = \"unlimited\"\n";

fn hex(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn adopt(user: &str, plaintext: &str, start: Option<&str>) -> ImportKey {
    ImportKey {
        key: NewKey { user_id: user.to_owned(), ..Default::default() },
        hash: Some(hex(secret::sha256(plaintext.as_bytes()))),
        start: start.map(str::to_owned),
    }
}

const FOREIGN: &str = "sk_live_51HqLyjWDarjtT1zdp7dcXHEqV9lHx1sEZcFn";

#[test]
fn adopted_keys_verify_with_their_original_secret_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A secret of tollgate's own format issued by another tollgate.
    let elsewhere = secret::generate(&aws_lc_rs::rand::SystemRandom::new(), "tg").plaintext;
    let (ids, generated) = {
        let e = common::engine(dir.path(), PRO);
        let (_, user) = common::team_and_user(&e, Tier::Pro, "importer");
        assert_eq!(e.verify(&VerifyRequest::new(FOREIGN)).code(), Some(DenyCode::Malformed), "nothing adopted yet");
        let mut limited = adopt(&user, "ak_live_exactly-three-uses", Some("ak_live_ex"));
        limited.key.remaining = Some(3);
        let out = e
            .import_keys(vec![
                adopt(&user, FOREIGN, Some("sk_live_51Hq")),
                adopt(&user, &elsewhere, Some(&elsewhere[..7])),
                ImportKey {
                    key: NewKey { user_id: user.clone(), prefix: Some("gen".into()), ..Default::default() },
                    ..Default::default()
                },
                limited,
            ])
            .unwrap();
        assert_eq!(out.len(), 4);
        assert!(out[0].1.is_none() && out[1].1.is_none() && out[3].1.is_none(), "an adopted key's secret is not known");
        assert_eq!((out[0].0.prefix.as_str(), out[0].0.start.as_str()), ("sk_live", "sk_live_51Hq"));
        let generated = out[2].1.clone().expect("a generated key's secret is returned once");
        assert!(generated.starts_with("gen_") && secret::parse(&generated).is_some());
        // An adopted key with a use limit counts like any other.
        let uses: Vec<_> = (0..5).map(|_| e.verify(&VerifyRequest::new("ak_live_exactly-three-uses")).code()).collect();
        assert_eq!(uses[..3], [None, None, None]);
        assert_eq!(uses[3], Some(DenyCode::UsageExceeded));
        (out.iter().map(|(k, _)| k.id.clone()).collect::<Vec<_>>(), generated)
    };
    let e = common::engine(dir.path(), PRO);
    for secret in [FOREIGN, elsewhere.as_str(), generated.as_str()] {
        let v = e.verify(&VerifyRequest::new(secret));
        assert!(v.is_allow(), "{secret:.10}...: {v:?}");
    }
    assert_eq!(e.key(&ids[3]).unwrap().1.remaining, 0, "the uses survive the restart");
    assert_eq!(e.key(&ids[0]).unwrap().0.start, "sk_live_51Hq");
    // Unknown secrets: a foreign-looking one is looked up and not found; a
    // mistyped key of tollgate's format with a prefix no adopted key has
    // stays MALFORMED without a lookup.
    assert_eq!(e.verify(&VerifyRequest::new("sk_live_nope")).code(), Some(DenyCode::NotFound));
    let mut typo = generated.clone().into_bytes();
    typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&typo)).code(), Some(DenyCode::Malformed));
    // An adopted key has the prefix `tg` (from its start): a `tg_` secret
    // failing the checksum could be that key's, so it is looked up.
    let mut tg_typo = elsewhere.clone().into_bytes();
    tg_typo[5] = if tg_typo[5] == b'a' { b'b' } else { b'a' };
    let tg_typo = String::from_utf8(tg_typo).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(&tg_typo)).code(), Some(DenyCode::NotFound));
    // Deleting an adopted key removes it like any other.
    e.delete_key(&ids[0]).unwrap();
    assert_eq!(e.verify(&VerifyRequest::new(FOREIGN)).code(), Some(DenyCode::NotFound));
}

#[test]
fn a_refused_entry_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), PRO);
    let (team, user) = common::team_and_user(&e, Tier::Pro, "importer");
    let ok = || ImportKey { key: NewKey { user_id: user.clone(), ..Default::default() }, ..Default::default() };
    let entry_of = |r: Result<_, EngineError>| match r {
        Err(EngineError::Entry { index, error }) => (index, *error),
        other => panic!("expected an entry error, got {:?}", other.map(|v: Vec<_>| v.len())),
    };
    let bad_hash = ImportKey { hash: Some("abc".into()), ..ok() };
    let (i, err) = entry_of(e.import_keys(vec![ok(), ok(), bad_hash]));
    assert_eq!(i, 2);
    assert!(matches!(err, EngineError::Invalid { field: "hash", .. }), "{err}");
    let start_alone = ImportKey { start: Some("sk_".into()), ..ok() };
    assert!(matches!(entry_of(e.import_keys(vec![start_alone])), (0, EngineError::Invalid { field: "start", .. })));
    let bad_ip = ImportKey { key: NewKey { whitelisted_ips: vec!["nope".into()], ..ok().key }, ..ok() };
    let (i, err) = entry_of(e.import_keys(vec![ok(), bad_ip]));
    assert_eq!(i, 1);
    assert!(err.to_string().contains("whitelistedIPs"), "{err}");
    let ghost = ImportKey { key: NewKey { user_id: "user_nobody".into(), ..Default::default() }, ..Default::default() };
    assert!(matches!(entry_of(e.import_keys(vec![ok(), ghost])), (1, EngineError::NotFound("user"))));
    let twice = adopt(&user, FOREIGN, None);
    assert!(matches!(entry_of(e.import_keys(vec![twice.clone(), ok(), twice.clone()])), (2, EngineError::Conflict(_))));
    assert!(e.keys(&team).unwrap().is_empty(), "no refused import wrote anything");
    assert_eq!(e.verify(&VerifyRequest::new(FOREIGN)).code(), Some(DenyCode::Malformed));
    e.import_keys(vec![twice.clone()]).unwrap();
    assert!(matches!(entry_of(e.import_keys(vec![ok(), twice])), (1, EngineError::Conflict(_))), "hash exists");
    let too_many = (0..=MAX_IMPORT).map(|_| ok()).collect();
    assert!(matches!(e.import_keys(too_many), Err(EngineError::Invalid { field: "keys", .. })));
    assert_eq!(e.keys(&team).unwrap().len(), 1);
    assert_eq!(e.import_keys(Vec::new()).unwrap().len(), 0);
}

#[test]
fn a_full_import_is_one_call_and_every_key_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), PRO);
    let (team, user) = common::team_and_user(&e, Tier::Pro, "importer");
    let secrets: Vec<String> = (0..MAX_IMPORT).map(|i| format!("legacy-{i}-{}", i * 7919)).collect();
    let entries = secrets.iter().map(|s| adopt(&user, s, None)).collect();
    assert_eq!(e.import_keys(entries).unwrap().len(), MAX_IMPORT);
    assert_eq!(e.keys(&team).unwrap().len(), MAX_IMPORT);
    let allowed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for part in secrets.chunks(MAX_IMPORT / 4) {
            let (e, allowed) = (&e, &allowed);
            s.spawn(move || {
                for secret in part {
                    if e.verify(&VerifyRequest::new(secret)).is_allow() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.into_inner(), MAX_IMPORT);
}
