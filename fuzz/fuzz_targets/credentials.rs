//! Arbitrary strings as credentials: the API key parser and the JWT verifier
//! (HS256 key, RFC 8725 checks) must reject garbage without panicking.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate::core::jwt::{JwtAlg, JwtKeyConfig, JwtKeys, JwtSettings};

static KEYS: LazyLock<JwtKeys> = LazyLock::new(|| {
    JwtKeys::new(&JwtSettings {
        issuer: "tollgate".into(),
        audience: None,
        leeway_secs: 30,
        ttl_secs: 900,
        max_token_bytes: 4096,
        cache_capacity: 0,
        signing_kid: "k1".into(),
        keys: vec![JwtKeyConfig {
            kid: "k1".into(),
            alg: JwtAlg::HS256,
            secret: Some("fuzzing-secret-fuzzing-secret-0123456789".into()),
            private_key_pem: None,
            public_key_pem: None,
        }],
    })
    .expect("valid fuzz jwt settings")
});

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(hash) = tollgate::core::secret::parse(s) {
        assert_eq!(hash, tollgate::core::secret::sha256(s.as_bytes()));
    }
    let _ = KEYS.verify(s, 1_700_000_000);
});
