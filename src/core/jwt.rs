//! RFC 8725 hardened JSON Web Tokens for tollgate seed claims.
//!
//! This module issues and verifies compact JWS tokens (JWTs) on the hot path
//! of the daemon, so it deliberately does *not* use `jsonwebtoken::decode`:
//! that function deserializes the claims twice, allocates a verifier per call
//! and costs several microseconds even for HS256. Instead the token is parsed
//! by hand, with stack buffers for the header and signature, the signature is
//! checked with precomputed `ring` keys, and the payload is deserialized
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
//! Verified tokens are cached by the SHA-256 digest of the whole token, so a
//! repeated token costs one hash and one map lookup; the cache never compares
//! secrets with token bytes and only ever contains fully verified tokens.
//! Expiry is rechecked on every cache hit.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quick_cache::sync::Cache;
use ring::rand::SystemRandom;
use ring::signature::{self as rsig, KeyPair};
use serde::{Deserialize, Serialize};

/// Largest encoded header accepted; real headers are well under 200 bytes,
/// and the bound lets the header be decoded into a stack buffer.
const MAX_HEADER_B64: usize = 1024;
/// Decoded size of the largest accepted header.
const HEADER_BUF: usize = MAX_HEADER_B64 / 4 * 3;
/// Largest encoded signature accepted (an RSA-8192 signature is 1366 chars).
const MAX_SIG_B64: usize = 1368;
/// Decoded size of the largest accepted signature.
const SIG_BUF: usize = MAX_SIG_B64 / 4 * 3;
/// Payloads whose decoded size fits here are decoded on the stack; larger
/// ones fall back to a heap buffer.
const PAYLOAD_STACK_BUF: usize = 1536;
/// Longest key id accepted in the configuration.
const MAX_KID_LEN: usize = 128;
/// Smallest HS256 secret accepted; RFC 7518 section 3.2 requires a key at
/// least as long as the hash output.
const MIN_HS256_SECRET: usize = 32;

/// The claims carried by a tollgate seed token.
///
/// Every field except `aud` is required and must have the declared JSON type;
/// a token with a missing or wrongly typed claim is rejected as malformed.
/// Unknown extra claims are ignored so that issuers can add fields without
/// breaking older verifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer; must equal [`JwtSettings::issuer`].
    pub iss: String,
    /// The user id the token was issued to.
    pub sub: String,
    /// The audience; checked only when [`JwtSettings::audience`] is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issue time in seconds since the Unix epoch; the caller uses it for
    /// "revoke everything issued before" checks.
    pub iat: u64,
    /// Expiry time in seconds since the Unix epoch.
    pub exp: u64,
    /// Start of validity in seconds since the Unix epoch.
    pub nbf: u64,
    /// Unique token id; the caller uses it for revocation.
    pub jti: String,
    /// The identity provider id that authenticated the user.
    pub prv: String,
    /// The team the user belongs to.
    pub team: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The subscription (plan) of the user's team.
    pub subscription: String,
}

/// A JWS signature algorithm supported by tollgate.
///
/// Each configured key is pinned to exactly one of these, which is what makes
/// algorithm confusion impossible. The serde names are the JOSE names.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlg {
    /// HMAC with SHA-256 and a shared secret of at least 32 bytes.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048 to 8192 bit modulus.
    RS256,
    /// ECDSA on P-256 with SHA-256 (fixed-length `r || s` signatures).
    ES256,
    /// Ed25519. This is the default because it is fast, compact and needs
    /// no secret distribution, which is why the daemon generates an Ed25519
    /// key on first start.
    #[default]
    EdDSA,
}

impl JwtAlg {
    /// Returns the JOSE name of the algorithm, as written in headers and JWKS.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlg::HS256 => "HS256",
            JwtAlg::RS256 => "RS256",
            JwtAlg::ES256 => "ES256",
            JwtAlg::EdDSA => "EdDSA",
        }
    }

    /// Maps a header `alg` value to a supported algorithm; anything else
    /// (including `none`) yields `None`.
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(JwtAlg::HS256),
            "RS256" => Some(JwtAlg::RS256),
            "ES256" => Some(JwtAlg::ES256),
            "EdDSA" => Some(JwtAlg::EdDSA),
            _ => None,
        }
    }
}

impl fmt::Display for JwtAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<JwtAlg> for jsonwebtoken::Algorithm {
    /// Converts to the `jsonwebtoken` algorithm so that other code (for
    /// example tests, or clients) can verify tollgate tokens with that crate.
    fn from(alg: JwtAlg) -> Self {
        match alg {
            JwtAlg::HS256 => jsonwebtoken::Algorithm::HS256,
            JwtAlg::RS256 => jsonwebtoken::Algorithm::RS256,
            JwtAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            JwtAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// One configured key.
///
/// A key with a private key PEM (or an HS256 secret) can sign and verify; a
/// key with only a public key PEM can only verify, which is how a retired
/// signing key stays valid for already issued tokens during a rotation.
/// The `Debug` output redacts the secret and the private key.
#[derive(Clone, Default, Deserialize)]
pub struct JwtKeyConfig {
    /// The key id written to and matched against the token header `kid`.
    /// It must be 1 to 128 printable ASCII characters without `"` or `\`.
    pub kid: String,
    /// The algorithm this key is pinned to.
    pub alg: JwtAlg,
    /// The raw HS256 secret (at least 32 bytes); only valid for HS256.
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM text of the private key: PKCS#8 for EdDSA and ES256, PKCS#1 or
    /// PKCS#8 for RS256. Only valid for asymmetric algorithms.
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// PEM text of the public key (SubjectPublicKeyInfo, or PKCS#1 for RSA).
    /// Optional when `private_key_pem` is given, in which case both must match.
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

impl fmt::Debug for JwtKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeyConfig")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("private_key_pem", &self.private_key_pem.as_ref().map(|_| "[redacted]"))
            .field("public_key_pem", &self.public_key_pem)
            .finish()
    }
}

/// JWT settings, meant to be embedded in the daemon's TOML configuration.
///
/// The daemon reads PEM files itself and passes their text in
/// [`JwtKeyConfig`]; this keeps file handling and reload logic in one place.
#[derive(Clone, Debug, Deserialize)]
pub struct JwtSettings {
    /// Expected `iss` claim; tokens from any other issuer are rejected.
    pub issuer: String,
    /// Expected `aud` claim. When set, tokens must carry exactly this
    /// audience; when unset, the `aud` claim is not checked.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Lifetime of issued tokens, in seconds; used by the caller to set `exp`.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// Tokens longer than this are rejected before any decoding, which bounds
    /// the work an attacker can cause.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Number of verified tokens remembered; 0 disables the cache.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
    /// The key id used by [`JwtKeys::issue`]; it must have a private key or
    /// an HS256 secret.
    pub signing_kid: String,
    /// All keys accepted for verification, including the signing key.
    pub keys: Vec<JwtKeyConfig>,
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_ttl_secs() -> u64 {
    900
}

fn default_max_token_bytes() -> usize {
    4096
}

fn default_cache_capacity() -> usize {
    100_000
}

/// Why a JWT configuration was refused by [`JwtKeys::new`].
///
/// Messages are lowercase and name the offending key id, so they can be
/// shown to an operator as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    /// A setting outside any key is invalid.
    #[error("invalid jwt settings: {0}")]
    Settings(&'static str),
    /// Two keys share the same key id, so `kid` lookups would be ambiguous.
    #[error("duplicate jwt key id `{0}`")]
    DuplicateKid(String),
    /// `signing_kid` names a key that is not configured.
    #[error("jwt signing key `{0}` is not among the configured keys")]
    SigningKeyMissing(String),
    /// `signing_kid` names a key that has only a public key.
    #[error("jwt signing key `{0}` has no private key or secret, so it cannot sign")]
    SigningKeyCannotSign(String),
    /// A key's material is missing, malformed or does not match its `alg`.
    #[error("jwt key `{kid}`: {reason}")]
    Key {
        /// The key id of the offending key.
        kid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why [`JwtKeys::issue`] failed.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The claims could not be serialized to JSON.
    #[error("cannot serialize jwt claims: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The cryptographic backend refused to sign (for example the system
    /// random number generator failed while signing with ECDSA or RSA).
    #[error("cannot sign jwt")]
    Sign,
}

/// Why a token was rejected by [`JwtKeys::verify`].
///
/// The variants are coarse on purpose, so that the daemon can map them to
/// responses and metrics; the `&'static str` carries a human-readable reason
/// for logs and never contains token data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtReject {
    /// The token is not a well-formed, supported JWT (size, encoding, JSON,
    /// header fields, or missing/wrongly typed claims, or `iat` in the future).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token was not issued by us for this audience: unknown or missing
    /// `kid`, algorithm not pinned to the key, signature mismatch, wrong
    /// issuer or wrong audience.
    #[error("bad token signature: {0}")]
    BadSignature(&'static str),
    /// The token's `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` (minus leeway) is still in the future.
    #[error("token not yet valid")]
    NotYetValid,
}

impl JwtReject {
    /// Returns a stable snake_case label, suitable as a metrics label value.
    pub const fn code(&self) -> &'static str {
        match self {
            JwtReject::Malformed(_) => "malformed",
            JwtReject::BadSignature(_) => "bad_signature",
            JwtReject::Expired => "expired",
            JwtReject::NotYetValid => "not_yet_valid",
        }
    }
}

/// Precomputed verification material for one key.
enum Verifier {
    Hmac(ring::hmac::Key),
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ecdsa(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Verifier {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hmac(key) => ring::hmac::verify(key, message, signature).is_ok(),
            Verifier::Rsa { n, e } => rsig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
                .verify(&rsig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Verifier::Ecdsa(point) => {
                rsig::UnparsedPublicKey::new(&rsig::ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
            Verifier::Ed25519(public) => {
                rsig::UnparsedPublicKey::new(&rsig::ED25519, public).verify(message, signature).is_ok()
            }
        }
    }

    /// Builds the public JWK for this key; HMAC keys are never published.
    fn jwk(&self, kid: &str, alg: JwtAlg) -> Option<serde_json::Value> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            Verifier::Hmac(_) => None,
            Verifier::Rsa { n, e } => Some(serde_json::json!({
                "kty": "RSA", "use": "sig", "alg": alg.as_str(), "kid": kid,
                "n": b64(n), "e": b64(e),
            })),
            Verifier::Ecdsa(point) => {
                let (x, y) = point.get(1..)?.split_at_checked(32)?;
                Some(serde_json::json!({
                    "kty": "EC", "use": "sig", "alg": alg.as_str(), "kid": kid,
                    "crv": "P-256", "x": b64(x), "y": b64(y),
                }))
            }
            Verifier::Ed25519(public) => Some(serde_json::json!({
                "kty": "OKP", "use": "sig", "alg": alg.as_str(), "kid": kid,
                "crv": "Ed25519", "x": b64(public),
            })),
        }
    }
}

/// Private signing material for one key, parsed once at load time because
/// parsing an RSA private key costs far more than signing with it.
enum Signer {
    Hmac(ring::hmac::Key),
    Rsa(rsig::RsaKeyPair),
    Ecdsa(rsig::EcdsaKeyPair),
    Ed25519(rsig::Ed25519KeyPair),
}

impl Signer {
    fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, JwtError> {
        match self {
            Signer::Hmac(key) => Ok(ring::hmac::sign(key, message).as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&rsig::RSA_PKCS1_SHA256, rng, message, &mut sig).map_err(|_| JwtError::Sign)?;
                Ok(sig)
            }
            Signer::Ecdsa(pair) => pair.sign(rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| JwtError::Sign),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// One verification key, looked up by `kid`.
struct KeyEntry {
    kid: Box<str>,
    alg: JwtAlg,
    verifier: Verifier,
}

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

/// The subset of the JOSE header we look at, borrowed from a stack buffer.
///
/// Strings are borrowed, so a header whose `alg`, `kid` or `typ` contains
/// JSON escapes is rejected; tollgate key ids never need escaping.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Option<&'a str>,
    #[serde(borrow, default)]
    kid: Option<&'a str>,
    #[serde(borrow, default)]
    typ: Option<&'a str>,
    /// True when `crit` is present with any value, including `null`.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// Deserializes and discards any JSON value, recording only its presence.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The header written by [`JwtKeys::issue`].
#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Returns true when `json` starts (after whitespace) with `{`; serde's
/// derived struct deserializers would otherwise also accept JSON arrays.
fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')).is_some_and(|b| *b == b'{')
}

/// Splits a compact JWS into header, payload, signature and signing input.
fn split_token(token: &[u8]) -> Result<(&[u8], &[u8], &[u8], &[u8]), JwtReject> {
    const NOT_THREE: JwtReject = JwtReject::Malformed("token is not three base64url segments");
    let first = token.iter().position(|b| *b == b'.').ok_or(NOT_THREE)?;
    let (header, rest) = token.split_at(first);
    let rest = rest.get(1..).ok_or(NOT_THREE)?;
    let second = rest.iter().position(|b| *b == b'.').ok_or(NOT_THREE)?;
    let (payload, rest) = rest.split_at(second);
    let signature = rest.get(1..).ok_or(NOT_THREE)?;
    if header.is_empty() || payload.is_empty() || signature.is_empty() || signature.contains(&b'.') {
        return Err(NOT_THREE);
    }
    let signing_input = token.get(..first + 1 + second).ok_or(NOT_THREE)?;
    Ok((header, payload, signature, signing_input))
}

/// Parses a DER `RSAPublicKey` (PKCS#1) into big-endian `(n, e)` without
/// leading zero bytes.
fn parse_rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&len0, rest) = rest.split_first()?;
        let (len, rest) = if len0 < 0x80 {
            (usize::from(len0), rest)
        } else {
            let count = usize::from(len0 & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let (len_bytes, rest) = rest.split_at_checked(count)?;
            let len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        let (value, rest) = rest.split_at_checked(len)?;
        Some((tag, value, rest))
    }
    fn unsigned(int: &[u8]) -> Option<Vec<u8>> {
        let start = int.iter().position(|b| *b != 0)?;
        Some(int.get(start..)?.to_vec())
    }
    let (tag, body, rest) = tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag_n, n, rest) = tlv(body)?;
    let (tag_e, e, rest) = tlv(rest)?;
    if tag_n != 0x02 || tag_e != 0x02 || !rest.is_empty() {
        return None;
    }
    Some((unsigned(n)?, unsigned(e)?))
}

/// Number of significant bits in a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        Some(first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// Key ids are restricted so that they never need JSON escaping in headers.
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Loads one key's material, returning its verifier and, when it has
/// private material, its signer.
fn load_key(cfg: &JwtKeyConfig) -> Result<(Verifier, Option<Signer>), JwtConfigError> {
    let err = |reason: &'static str| JwtConfigError::Key { kid: cfg.kid.clone(), reason };
    let private_pem = cfg.private_key_pem.as_deref().map(str::as_bytes);
    let public_pem = cfg.public_key_pem.as_deref();
    if let Some(public) = public_pem
        && public.contains("PRIVATE KEY")
    {
        return Err(err("public_key_pem contains a private key"));
    }
    let public_pem = public_pem.map(str::as_bytes);

    if cfg.alg == JwtAlg::HS256 {
        if private_pem.is_some() || public_pem.is_some() {
            return Err(err("hs256 keys take a secret, not pem keys"));
        }
        let secret = cfg.secret.as_deref().ok_or_else(|| err("hs256 key has no secret"))?;
        if secret.len() < MIN_HS256_SECRET {
            return Err(err("hs256 secret must be at least 32 bytes"));
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        return Ok((Verifier::Hmac(key.clone()), Some(Signer::Hmac(key))));
    }
    if cfg.secret.is_some() {
        return Err(err("only hs256 keys take a secret"));
    }
    if private_pem.is_none() && public_pem.is_none() {
        return Err(err("neither private_key_pem nor public_key_pem is set"));
    }

    let (derived, signer): (Option<Verifier>, Option<Signer>) = match (cfg.alg, private_pem) {
        (_, None) => (None, None),
        (JwtAlg::HS256, Some(_)) => return Err(err("hs256 keys take a secret, not pem keys")),
        (JwtAlg::RS256, Some(pem)) => {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem)
                .map_err(|_| err("private_key_pem is not a pkcs#1 or pkcs#8 rsa private key"))?;
            let pair = rsig::RsaKeyPair::from_der(key.inner())
                .map_err(|_| err("private_key_pem is not a valid rsa private key of 2048 to 8192 bits"))?;
            let comps = rsig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
            (Some(Verifier::Rsa { n: comps.n, e: comps.e }), Some(Signer::Rsa(pair)))
        }
        (JwtAlg::ES256, Some(pem)) => {
            let key = jsonwebtoken::EncodingKey::from_ec_pem(pem)
                .map_err(|_| err("private_key_pem is not a pkcs#8 ec private key"))?;
            let pair = rsig::EcdsaKeyPair::from_pkcs8(
                &rsig::ECDSA_P256_SHA256_FIXED_SIGNING,
                key.inner(),
                &SystemRandom::new(),
            )
            .map_err(|_| err("private_key_pem is not a valid pkcs#8 p-256 private key"))?;
            let point = pair.public_key().as_ref().to_vec();
            (Some(Verifier::Ecdsa(point)), Some(Signer::Ecdsa(pair)))
        }
        (JwtAlg::EdDSA, Some(pem)) => {
            let key = jsonwebtoken::EncodingKey::from_ed_pem(pem)
                .map_err(|_| err("private_key_pem is not a pkcs#8 ed25519 private key"))?;
            let pair = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
                .map_err(|_| err("private_key_pem is not a valid pkcs#8 ed25519 private key"))?;
            let public = pair.public_key().as_ref().to_vec();
            (Some(Verifier::Ed25519(public)), Some(Signer::Ed25519(pair)))
        }
    };

    let configured: Option<Verifier> = match (cfg.alg, public_pem) {
        (_, None) => None,
        (JwtAlg::HS256, Some(_)) => return Err(err("hs256 keys take a secret, not pem keys")),
        (JwtAlg::RS256, Some(pem)) => {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem)
                .map_err(|_| err("public_key_pem is not an rsa public key"))?;
            let (n, e) =
                parse_rsa_public_key(key.as_bytes()).ok_or_else(|| err("public_key_pem is not an rsa public key"))?;
            if !(2048..=8192).contains(&bit_len(&n)) {
                return Err(err("rsa public key must be 2048 to 8192 bits"));
            }
            if e.last().is_none_or(|b| b & 1 == 0) || bit_len(&e) < 2 || e.len() > 5 {
                return Err(err("rsa public exponent is invalid"));
            }
            Some(Verifier::Rsa { n, e })
        }
        (JwtAlg::ES256, Some(pem)) => {
            let key = jsonwebtoken::DecodingKey::from_ec_pem(pem)
                .map_err(|_| err("public_key_pem is not an ec public key"))?;
            let point = key.as_bytes();
            if point.len() != 65 || point.first() != Some(&4) {
                return Err(err("public_key_pem is not an uncompressed p-256 public key"));
            }
            Some(Verifier::Ecdsa(point.to_vec()))
        }
        (JwtAlg::EdDSA, Some(pem)) => {
            let key = jsonwebtoken::DecodingKey::from_ed_pem(pem)
                .map_err(|_| err("public_key_pem is not an ed25519 public key"))?;
            if key.as_bytes().len() != 32 {
                return Err(err("public_key_pem is not an ed25519 public key"));
            }
            Some(Verifier::Ed25519(key.as_bytes().to_vec()))
        }
    };

    let verifier = match (derived, configured) {
        (Some(d), Some(c)) => {
            let same = match (&d, &c) {
                (Verifier::Rsa { n: n1, e: e1 }, Verifier::Rsa { n: n2, e: e2 }) => n1 == n2 && e1 == e2,
                (Verifier::Ecdsa(a), Verifier::Ecdsa(b)) => a == b,
                (Verifier::Ed25519(a), Verifier::Ed25519(b)) => a == b,
                _ => false,
            };
            if !same {
                return Err(err("public_key_pem does not match private_key_pem"));
            }
            d
        }
        (Some(v), None) | (None, Some(v)) => v,
        (None, None) => return Err(err("neither private_key_pem nor public_key_pem is set")),
    };
    Ok((verifier, signer))
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
            if cfg.kid == settings.signing_kid {
                let signer = signer.ok_or_else(|| JwtConfigError::SigningKeyCannotSign(cfg.kid.clone()))?;
                let header =
                    serde_json::to_vec(&OutHeader { alg: cfg.alg.as_str(), typ: "JWT", kid: &cfg.kid }).map_err(
                        |_| JwtConfigError::Key { kid: cfg.kid.clone(), reason: "cannot serialize the token header" },
                    )?;
                signing = Some(SigningKey { header_b64: URL_SAFE_NO_PAD.encode(header), signer });
            }
            keys.push(KeyEntry { kid: cfg.kid.clone().into_boxed_str(), alg: cfg.alg, verifier });
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

    /// Generates a fresh Ed25519 private key as PKCS#8 PEM text, so the
    /// daemon can create a default signing key on first start without any
    /// external tooling.
    ///
    /// # Panics
    ///
    /// Panics only if the operating system's CSPRNG is unavailable, in which
    /// case no secure key could be produced at all.
    pub fn generate_ed25519_pkcs8_pem() -> String {
        #[allow(clippy::expect_used)]
        let doc = rsig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("the system CSPRNG failed while generating an ed25519 key");
        let b64 = STANDARD.encode(doc.as_ref());
        let mut pem = String::with_capacity(b64.len() + 64);
        pem.push_str("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// Signs `claims` with the signing key and returns the compact token.
    ///
    /// The header is `{"alg":…,"typ":"JWT","kid":…}`, with `alg` taken from
    /// the signing key. The claims are signed as given: the caller is
    /// responsible for `iss`, times and `jti`, and for staying under
    /// `max_token_bytes`, since longer tokens are rejected by [`Self::verify`].
    pub fn issue(&self, claims: &Claims) -> Result<String, JwtError> {
        let payload = serde_json::to_vec(claims)?;
        let header = &self.signing.header_b64;
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 700);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.signing.signer.sign(token.as_bytes(), &self.rng)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// Verifies a token at time `now_secs` (seconds since the Unix epoch) and
    /// returns its claims.
    ///
    /// Tokens already verified are served from the cache, keyed by the
    /// SHA-256 of the token, after rechecking `exp` and `nbf`; everything
    /// else goes through the full check. Revocation (`jti`, `iat`) is left
    /// to the caller.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Arc<Claims>, JwtReject> {
        let bytes = token.as_bytes();
        if bytes.len() > self.settings.max_token_bytes {
            return Err(JwtReject::Malformed("token exceeds max_token_bytes"));
        }
        let Some(cache) = &self.cache else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return self.verify_uncached(bytes, now_secs).map(Arc::new);
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        if let Some(claims) = cache.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.check_times(&claims, now_secs)?;
            return Ok(claims);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let claims = Arc::new(self.verify_uncached(bytes, now_secs)?);
        cache.insert(key, Arc::clone(&claims));
        Ok(claims)
    }

    /// Full verification without the cache.
    fn verify_uncached(&self, token: &[u8], now: u64) -> Result<Claims, JwtReject> {
        use JwtReject::{BadSignature, Malformed};
        let (header_b64, payload_b64, sig_b64, signing_input) = split_token(token)?;

        if header_b64.len() > MAX_HEADER_B64 {
            return Err(Malformed("header is too large"));
        }
        let mut header_buf = [0u8; HEADER_BUF];
        let header_len = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut header_buf)
            .map_err(|_| Malformed("header is not base64url"))?;
        let header_json = header_buf.get(..header_len).unwrap_or_default();
        if !is_json_object(header_json) {
            return Err(Malformed("header is not a json object"));
        }
        let header: RawHeader<'_> =
            serde_json::from_slice(header_json).map_err(|_| Malformed("header is not valid json"))?;
        if header.crit {
            return Err(Malformed("crit header is not supported"));
        }
        let alg = match header.alg {
            None => return Err(Malformed("header has no alg")),
            Some(name) if name.eq_ignore_ascii_case("none") => {
                return Err(Malformed("alg none is forbidden"));
            }
            Some(name) => JwtAlg::from_name(name).ok_or(Malformed("unsupported alg"))?,
        };
        if header.typ.is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(Malformed("typ is not JWT"));
        }
        let kid = header.kid.ok_or(BadSignature("header has no kid"))?;
        let key = self.keys.iter().find(|k| *k.kid == *kid).ok_or(BadSignature("unknown kid"))?;
        if key.alg != alg {
            return Err(BadSignature("alg does not match the key's pinned alg"));
        }

        if sig_b64.len() > MAX_SIG_B64 {
            return Err(Malformed("signature is too large"));
        }
        let mut sig_buf = [0u8; SIG_BUF];
        let sig_len =
            URL_SAFE_NO_PAD.decode_slice(sig_b64, &mut sig_buf).map_err(|_| Malformed("signature is not base64url"))?;

        // The payload is decoded (not parsed) before the signature check so
        // that encoding errors are reported as malformed, and parsed only
        // after the signature is known to be good.
        let mut payload_stack = [0u8; PAYLOAD_STACK_BUF];
        let payload_heap: Vec<u8>;
        let payload: &[u8] = if payload_b64.len() / 4 * 3 + 3 <= PAYLOAD_STACK_BUF {
            let len = URL_SAFE_NO_PAD
                .decode_slice(payload_b64, &mut payload_stack)
                .map_err(|_| Malformed("payload is not base64url"))?;
            payload_stack.get(..len).unwrap_or_default()
        } else {
            payload_heap = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| Malformed("payload is not base64url"))?;
            &payload_heap
        };

        let signature = sig_buf.get(..sig_len).unwrap_or_default();
        if !key.verifier.verify(signing_input, signature) {
            return Err(BadSignature("signature mismatch"));
        }

        if !is_json_object(payload) {
            return Err(Malformed("claims are not a json object"));
        }
        let claims: Claims = serde_json::from_slice(payload).map_err(|e| {
            if e.is_data() {
                Malformed("claims are missing or wrongly typed")
            } else {
                Malformed("claims are not valid json")
            }
        })?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    /// Checks issuer, audience and times of freshly decoded claims.
    fn check_claims(&self, claims: &Claims, now: u64) -> Result<(), JwtReject> {
        if claims.iss != self.settings.issuer {
            return Err(JwtReject::BadSignature("wrong issuer"));
        }
        if let Some(expected) = &self.settings.audience
            && claims.aud.as_deref() != Some(expected.as_str())
        {
            return Err(JwtReject::BadSignature("wrong audience"));
        }
        if claims.iat > now.saturating_add(self.settings.leeway_secs) {
            return Err(JwtReject::Malformed("iat is in the future"));
        }
        self.check_times(claims, now)
    }

    /// Checks `exp` and `nbf`; this is the only check repeated on cache hits,
    /// because it is the only one whose outcome changes with time.
    fn check_times(&self, claims: &Claims, now: u64) -> Result<(), JwtReject> {
        let leeway = self.settings.leeway_secs;
        if now > claims.exp.saturating_add(leeway) {
            return Err(JwtReject::Expired);
        }
        if now.saturating_add(leeway) < claims.nbf {
            return Err(JwtReject::NotYetValid);
        }
        Ok(())
    }

    /// Returns the public keys as a JWKS document (`{"keys":[…]}`) for
    /// publishing at a well-known endpoint. HS256 secrets are never included.
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
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
