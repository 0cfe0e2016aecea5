//! RFC 8725 hardened JSON Web Tokens for tollgate seed claims.
//!
//! This module issues and verifies compact JWS tokens (JWTs) on the hot path
//! of the daemon, so it deliberately does *not* use `jsonwebtoken::decode`:
//! that function deserializes the claims twice, allocates a verifier per call
//! and costs several microseconds even for HS256. Instead the token is parsed
//! by hand, with stack buffers for the header and signature, the signature is
//! checked with precomputed `aws-lc-rs` keys, and the payload is deserialized
//! exactly once. `jsonwebtoken` is only used at configuration time, to turn
//! PEM text into DER key material.
//!
//! Security rules enforced here (RFC 8725):
//!
//! * The algorithm is pinned per key: the key selected by `kid` decides which
//!   algorithm is acceptable, never the token. A token whose header `alg`
//!   differs from the key's algorithm is rejected before any cryptography
//!   runs, which defeats the classic HS256/RS256 confusion attack.
//! * `alg: none`, unknown algorithms and any `crit` header are rejected.
//! * A `kid` is always required, even when only one key is configured, so
//!   that adding a second key during a rotation never changes which tokens
//!   are accepted.
//! * The header `typ`, when present, must be `JWT` (case-insensitive), so
//!   other JOSE objects cannot be replayed as access tokens.
//! * The token size is checked before any decoding, and all known claims must
//!   be present and correctly typed.
//!
//! The module is split by concern: `claims` (the token's claims),
//! `keys` (configuration, PEM/DER key parsing, the per-key verifier),
//! `verify` (parsing and checking a token), `issue` (signing) and `jwks`
//! (publishing the public keys). [`JwtKeys`], built here, ties them together.
//!
//! Verified tokens are cached by the SHA-256 digest of the whole token, so a
//! repeated token costs one hash and one map lookup; the cache never compares
//! secrets with token bytes and only ever contains fully verified tokens.
//! Expiry is rechecked on every cache hit.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::SystemRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quick_cache::sync::Cache;

mod claims;
mod issue;
mod jwks;
mod keys;
mod verify;

#[cfg(test)]
mod fixtures;

pub use claims::Claims;
pub use issue::JwtError;
pub use keys::{JwtAlg, JwtConfigError, JwtKeyConfig, JwtSettings};
pub use verify::JwtReject;

use issue::{OutHeader, Signer};
use keys::{KeyEntry, load_key, valid_kid};

/// The signing key plus its precomputed, base64url-encoded header.
struct SigningKey {
    header_b64: String,
    signer: Signer,
}

/// The loaded, validated key set plus the verified-token cache.
///
/// It is immutable once built: on configuration reload the daemon builds a
/// new `JwtKeys` and swaps it in whole, which also drops the cache so a
/// removed key can never keep its tokens alive.
pub struct JwtKeys {
    settings: JwtSettings,
    keys: Vec<KeyEntry>,
    signing: SigningKey,
    jwks: serde_json::Value,
    cache: Option<Cache<[u8; 32], Arc<Claims>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    rng: SystemRandom,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<(&str, JwtAlg)> = self.keys.iter().map(|k| (&*k.kid, k.alg)).collect();
        f.debug_struct("JwtKeys")
            .field("issuer", &self.settings.issuer)
            .field("signing_kid", &self.settings.signing_kid)
            .field("keys", &kids)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Validates the settings and loads every key, so that all configuration
    /// mistakes surface at startup or reload instead of at verification time.
    ///
    /// Checks: a non-empty issuer, a usable `max_token_bytes`, at least one
    /// key, well-formed and unique key ids, HS256 secrets of at least 32
    /// bytes, parseable PEMs whose type matches the key's `alg`, matching
    /// private/public pairs, and a signing key that has private material.
    pub fn new(settings: &JwtSettings) -> Result<Self, JwtConfigError> {
        if settings.issuer.is_empty() {
            return Err(JwtConfigError::Settings("issuer must not be empty"));
        }
        if settings.max_token_bytes < 64 {
            return Err(JwtConfigError::Settings("max_token_bytes must be at least 64"));
        }
        if settings.keys.is_empty() {
            return Err(JwtConfigError::Settings("no keys are configured"));
        }
        let mut keys: Vec<KeyEntry> = Vec::with_capacity(settings.keys.len());
        let mut signing = None;
        let mut jwks = Vec::new();
        for cfg in &settings.keys {
            if !valid_kid(&cfg.kid) {
                return Err(JwtConfigError::Key {
                    kid: cfg.kid.clone(),
                    reason: "kid must be 1 to 128 printable ascii characters without quotes or backslashes",
                });
            }
            if keys.iter().any(|k| *k.kid == *cfg.kid) {
                return Err(JwtConfigError::DuplicateKid(cfg.kid.clone()));
            }
            let (verifier, signer) = load_key(cfg)?;
            if let Some(jwk) = verifier.jwk(&cfg.kid, cfg.alg) {
                jwks.push(jwk);
            }
            let header =
                serde_json::to_vec(&OutHeader { alg: cfg.alg.as_str(), typ: "JWT", kid: &cfg.kid }).map_err(|_| {
                    JwtConfigError::Key { kid: cfg.kid.clone(), reason: "cannot serialize the token header" }
                })?;
            let canonical_header_b64 = URL_SAFE_NO_PAD.encode(header);
            if cfg.kid == settings.signing_kid {
                let signer = signer.ok_or_else(|| JwtConfigError::SigningKeyCannotSign(cfg.kid.clone()))?;
                signing = Some(SigningKey { header_b64: canonical_header_b64.clone(), signer });
            }
            keys.push(KeyEntry { kid: cfg.kid.clone().into_boxed_str(), alg: cfg.alg, verifier, canonical_header_b64 });
        }
        let signing = signing.ok_or_else(|| JwtConfigError::SigningKeyMissing(settings.signing_kid.clone()))?;
        let cache = (settings.cache_capacity > 0).then(|| Cache::new(settings.cache_capacity));
        Ok(JwtKeys {
            settings: settings.clone(),
            keys,
            signing,
            jwks: serde_json::json!({ "keys": jwks }),
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rng: SystemRandom::new(),
        })
    }

    /// Returns the settings this key set was built from, so callers can read
    /// `ttl_secs`, `issuer` and `audience` when building claims.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Returns `(hits, misses)` of the verified-token cache since this key
    /// set was built; with the cache disabled every verification is a miss.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_keys_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JwtKeys>();
    }
}
