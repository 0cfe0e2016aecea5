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
    /// The issue time in milliseconds, set by tollgate on the tokens it
    /// issues, so that a revocation and a login in the same second are told
    /// apart. Ignored unless it falls in the second `iat` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<u64>,
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
    /// The API key this token was exchanged from, if any: the token then
    /// carries that key's grant, is checked (and counted) as the key on every
    /// use, and dies with it. A tollgate claim; absent from other issuers' tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Claims {
    /// When the token was issued, in milliseconds: `iat_ms` when it agrees
    /// with `iat`, else the start of `iat`'s second (so a revocation made in
    /// that second revokes it).
    pub fn issued_ms(&self) -> u64 {
        self.iat_ms.filter(|ms| ms / 1000 == self.iat).unwrap_or(self.iat.saturating_mul(1000))
    }
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
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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
    /// Longest lifetime (`exp - iat`, seconds) a token may claim; a token
    /// signed by a configured key with a longer one is rejected (RFC 8725
    /// 3.10: an issuer's mistake or a stolen signing key cannot mint tokens
    /// that never expire). Tokens tollgate issues live `ttl_secs`.
    #[serde(default = "default_max_lifetime_secs")]
    pub max_lifetime_secs: u64,
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

fn default_max_lifetime_secs() -> u64 {
    86_400
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
    /// The encoded header [`JwtKeys::issue`] writes for this key.
    canonical_header_b64: String,
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

/// The still-encoded segments of a compact JWS.
struct Segments<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
    /// `header.payload`, the bytes covered by the signature.
    signing_input: &'a [u8],
}

/// Splits a compact JWS into exactly three non-empty segments.
fn split_token(token: &[u8]) -> Result<Segments<'_>, JwtReject> {
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
    Ok(Segments { header, payload, signature, signing_input })
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

/// DER encoding of the prime256v1 (P-256) curve OID.
const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Returns true when the DER inside a PEM text contains `needle`; used to
/// confirm the curve of an EC public key, which `jsonwebtoken` does not check.
fn pem_der_contains(pem: &[u8], needle: &[u8]) -> bool {
    let body: Vec<u8> = String::from_utf8_lossy(pem)
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .flat_map(|line| line.trim().bytes())
        .collect();
    STANDARD.decode(body).is_ok_and(|der| der.windows(needle.len()).any(|w| w == needle))
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
            if !pem_der_contains(pem, &P256_OID_DER) {
                return Err(err("public_key_pem is not on the p-256 curve"));
            }
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

    /// Decodes and checks the header and returns the key it designates.
    ///
    /// Tokens we issued carry a byte-identical header per key, so comparing
    /// the encoded header with each key's canonical header skips decoding
    /// and JSON parsing on the common path. That comparison involves only
    /// public bytes, and any other header goes through the full checks.
    fn select_key(&self, header_b64: &[u8]) -> Result<&KeyEntry, JwtReject> {
        use JwtReject::{BadSignature, Malformed};
        if let Some(key) = self.keys.iter().find(|k| k.canonical_header_b64.as_bytes() == header_b64) {
            return Ok(key);
        }
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
        Ok(key)
    }

    /// Full verification without the cache.
    fn verify_uncached(&self, token: &[u8], now: u64) -> Result<Claims, JwtReject> {
        use JwtReject::{BadSignature, Malformed};
        let Segments { header: header_b64, payload: payload_b64, signature: sig_b64, signing_input } =
            split_token(token)?;

        let key = self.select_key(header_b64)?;

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
        // One UTF-8 check over the whole payload is cheaper than serde_json's
        // per-string checks on a byte slice.
        let payload = std::str::from_utf8(payload).map_err(|_| Malformed("claims are not valid json"))?;
        let claims: Claims = serde_json::from_str(payload).map_err(|e| {
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
        if claims.exp.saturating_sub(claims.iat) > self.settings.max_lifetime_secs {
            return Err(JwtReject::Malformed("lifetime (exp - iat) exceeds max_lifetime_secs"));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 2048-bit RSA test key (PKCS#8), generated with `openssl genrsa 2048`.
    const RSA_PRIVATE_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCuEIzAHPwQAl+o
ZNFHBvXCPOYCrAc0PhA8t82f/pu2DOG0LKPlny8f2wTPij6xhIRlDVD065X7e6nM
i1xXayGXLahDcwzL/8X3LlGPFKDZsO+bDkk1qivl83JLsYHNrN3L29Lp85iwgOAI
Q4atOBIr+AwwLpTeKSsS+shmbIgc5BROBQNf2h/tH1B85HgfEZ1iunrGUsjyId2+
1gSSp6OCcl0u+AxtXhbz3ylf7XEQzVsT+HVzRn+l/qhLIdRHzDPMijhKAuPoqCYI
PkjhxFP/4iXOE92bmonDySJS49XhLWkQICVXu+7Q5pxgFvfJhSGGXVmJfKgmvFQl
9Ms5MKJPAgMBAAECggEAD1aYAInNUF/VLBKOOnMLju0s24lrLRhW9/K+ZN3bvMQP
03+nhaFsVqNHHj6xXZUu0XTF8H8d/UYdZU/WeEGReS/lxuPJeeR0/l4Pg8sujWBB
DOnKW7c+HQpBxRfEN2qHNOKPCFyV1N/WXgQNRxBM0aEO+ePw7E62Y/rDU/s2V01A
nqhqtCj5bsBa49275JFoKXRwwVdasJ+TIOyXMgMY2VzrrGDVyFn3CJk7YcjNCVl7
0C4Y5mT+5tU9+xES2Hp/TA+yMjdWZv8POz6Nn8w6KKd9p0xDEfCKaD7KDNTe1G3O
aT3AFEa3YSOg9lXvpdm9yS9yIA4k8Ef5p997evpEOQKBgQDa1pJek/h42DwTlZQd
lvzZhUUuiAq/hvZo7gNna8MG2dozSBoe74Cc9SNLlY8tW335L9vkFDUdRli2bTw6
52mJxZi3dx4qAJFRmshqK4lctmkLa5YMfYYSII2X0Mz4osYO3l6nIxAe+KtdJXkY
Ynca9vg9HLEMI/NenkFifXm+IwKBgQDLn5BfWgO3JA69lLOHPwN9H0KTfVtRivx6
gxUDb8HGh3JOGvmrp6JecRdGDTVP+w+V8r5/h4AmOg0EmrESuY9m7r1zFfCI3Sns
7ZSvOExYSLwowbbDaTDHN7ndmPdzMg1Tw7ld2Cpi70g7G6Kd2XNguoRODR8Uyd7Q
68oiXNyP5QKBgGl15H3ds22RT4pkmEeWPu4Y0pk1CHD6en9gzJUnkooXrJbwFV55
LzL00/iV77T9FX1j+gU1U89y2ke35sHASdUSO6GWrxuwwFdiT1kS+BSM95yAUYRd
baIIvBPAlTbxQp9hvJ2xQRCb6AFwkKYWta1x/Xl9/TiLjro3a+0p6OSfAoGAALPC
KbIDxUPokRrMK7E579qFvkB2aieSi1GcZvChuG+LI13QcpkXZD/7lpBBGM+C1D+M
DKCI/pjApr1p0ui05+P230i6FZ69oEWJd7k3+i32CCXy3WWld2pnx63ZXJpVlW5d
W0d9je3JT/rearDvRuwdvK8q5kVz8UB+5/NuB0kCgYEAxctgD0j/SXXQflYNRBrg
cuByFkD7IOOkp+rZ2NAjXui+WDRPbfE/ZrbUAGgs5KqfWRFSjdyE4GIsE4FqmZM2
Z9lQrJfcVCnq9iBMzkeKjioLqC25wL9Bx4dMf278JNWa8uoq1uxdVE0wbONNSjG9
v6PS+rZRz7xitnrUi30PIwM=
-----END PRIVATE KEY-----
";

    /// The same RSA key in PKCS#1 form (`openssl rsa -traditional`).
    const RSA_PRIVATE_PKCS1: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEArhCMwBz8EAJfqGTRRwb1wjzmAqwHND4QPLfNn/6btgzhtCyj
5Z8vH9sEz4o+sYSEZQ1Q9OuV+3upzItcV2shly2oQ3MMy//F9y5RjxSg2bDvmw5J
Naor5fNyS7GBzazdy9vS6fOYsIDgCEOGrTgSK/gMMC6U3ikrEvrIZmyIHOQUTgUD
X9of7R9QfOR4HxGdYrp6xlLI8iHdvtYEkqejgnJdLvgMbV4W898pX+1xEM1bE/h1
c0Z/pf6oSyHUR8wzzIo4SgLj6KgmCD5I4cRT/+IlzhPdm5qJw8kiUuPV4S1pECAl
V7vu0OacYBb3yYUhhl1ZiXyoJrxUJfTLOTCiTwIDAQABAoIBAA9WmACJzVBf1SwS
jjpzC47tLNuJay0YVvfyvmTd27zED9N/p4WhbFajRx4+sV2VLtF0xfB/Hf1GHWVP
1nhBkXkv5cbjyXnkdP5eD4PLLo1gQQzpylu3Ph0KQcUXxDdqhzTijwhcldTf1l4E
DUcQTNGhDvnj8OxOtmP6w1P7NldNQJ6oarQo+W7AWuPdu+SRaCl0cMFXWrCfkyDs
lzIDGNlc66xg1chZ9wiZO2HIzQlZe9AuGOZk/ubVPfsREth6f0wPsjI3Vmb/Dzs+
jZ/MOiinfadMQxHwimg+ygzU3tRtzmk9wBRGt2EjoPZV76XZvckvciAOJPBH+aff
e3r6RDkCgYEA2taSXpP4eNg8E5WUHZb82YVFLogKv4b2aO4DZ2vDBtnaM0gaHu+A
nPUjS5WPLVt9+S/b5BQ1HUZYtm08OudpicWYt3ceKgCRUZrIaiuJXLZpC2uWDH2G
EiCNl9DM+KLGDt5epyMQHvirXSV5GGJ3Gvb4PRyxDCPzXp5BYn15viMCgYEAy5+Q
X1oDtyQOvZSzhz8DfR9Ck31bUYr8eoMVA2/BxodyThr5q6eiXnEXRg01T/sPlfK+
f4eAJjoNBJqxErmPZu69cxXwiN0p7O2UrzhMWEi8KMG2w2kwxze53Zj3czINU8O5
XdgqYu9IOxuindlzYLqETg0fFMne0OvKIlzcj+UCgYBpdeR93bNtkU+KZJhHlj7u
GNKZNQhw+np/YMyVJ5KKF6yW8BVeeS8y9NP4le+0/RV9Y/oFNVPPctpHt+bBwEnV
Ejuhlq8bsMBXYk9ZEvgUjPecgFGEXW2iCLwTwJU28UKfYbydsUEQm+gBcJCmFrWt
cf15ff04i466N2vtKejknwKBgACzwimyA8VD6JEazCuxOe/ahb5AdmonkotRnGbw
obhviyNd0HKZF2Q/+5aQQRjPgtQ/jAygiP6YwKa9adLotOfj9t9IuhWevaBFiXe5
N/ot9ggl8t1lpXdqZ8et2VyaVZVuXVtHfY3tyU/63mqw70bsHbyvKuZFc/FAfufz
bgdJAoGBAMXLYA9I/0l10H5WDUQa4HLgchZA+yDjpKfq2djQI17ovlg0T23xP2a2
1ABoLOSqn1kRUo3chOBiLBOBapmTNmfZUKyX3FQp6vYgTM5Hio4qC6gtucC/QceH
TH9u/CTVmvLqKtbsXVRNMGzjTUoxvb+j0vq2Uc+8YrZ61It9DyMD
-----END RSA PRIVATE KEY-----
";

    /// The public half of the RSA test key (SubjectPublicKeyInfo).
    const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArhCMwBz8EAJfqGTRRwb1
wjzmAqwHND4QPLfNn/6btgzhtCyj5Z8vH9sEz4o+sYSEZQ1Q9OuV+3upzItcV2sh
ly2oQ3MMy//F9y5RjxSg2bDvmw5JNaor5fNyS7GBzazdy9vS6fOYsIDgCEOGrTgS
K/gMMC6U3ikrEvrIZmyIHOQUTgUDX9of7R9QfOR4HxGdYrp6xlLI8iHdvtYEkqej
gnJdLvgMbV4W898pX+1xEM1bE/h1c0Z/pf6oSyHUR8wzzIo4SgLj6KgmCD5I4cRT
/+IlzhPdm5qJw8kiUuPV4S1pECAlV7vu0OacYBb3yYUhhl1ZiXyoJrxUJfTLOTCi
TwIDAQAB
-----END PUBLIC KEY-----
";

    const ISSUER: &str = "https://tollgate.test";
    const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
    const NOW: u64 = 1_700_000_000;
    const LEEWAY: u64 = 30;

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    /// Returns a ring-generated P-256 key as (private PKCS#8 PEM, public SPKI PEM).
    fn es256_pems() -> (String, String) {
        let rng = SystemRandom::new();
        let doc =
            rsig::EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate p-256");
        let pair = rsig::EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
            .expect("parse p-256");
        // SubjectPublicKeyInfo prefix for id-ecPublicKey + prime256v1.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        (pem("PRIVATE KEY", doc.as_ref()), pem("PUBLIC KEY", &spki))
    }

    /// Returns the public SPKI PEM for an Ed25519 PKCS#8 PEM.
    fn ed25519_public_pem(private_pem: &str) -> String {
        let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("ed pem");
        let pair = rsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner()).expect("ed key");
        let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        spki.extend_from_slice(pair.public_key().as_ref());
        pem("PUBLIC KEY", &spki)
    }

    fn hs_key(kid: &str) -> JwtKeyConfig {
        JwtKeyConfig { kid: kid.into(), alg: JwtAlg::HS256, secret: Some(HS_SECRET.into()), ..Default::default() }
    }

    fn rsa_key(kid: &str) -> JwtKeyConfig {
        JwtKeyConfig {
            kid: kid.into(),
            alg: JwtAlg::RS256,
            private_key_pem: Some(RSA_PRIVATE_PKCS8.into()),
            public_key_pem: Some(RSA_PUBLIC.into()),
            ..Default::default()
        }
    }

    fn es_key(kid: &str) -> JwtKeyConfig {
        let (private, public) = es256_pems();
        JwtKeyConfig {
            kid: kid.into(),
            alg: JwtAlg::ES256,
            private_key_pem: Some(private),
            public_key_pem: Some(public),
            ..Default::default()
        }
    }

    fn ed_key(kid: &str) -> JwtKeyConfig {
        let private = JwtKeys::generate_ed25519_pkcs8_pem();
        let public = ed25519_public_pem(&private);
        JwtKeyConfig {
            kid: kid.into(),
            alg: JwtAlg::EdDSA,
            private_key_pem: Some(private),
            public_key_pem: Some(public),
            ..Default::default()
        }
    }

    fn settings(signing_kid: &str, keys: Vec<JwtKeyConfig>) -> JwtSettings {
        JwtSettings {
            issuer: ISSUER.into(),
            audience: None,
            leeway_secs: LEEWAY,
            ttl_secs: 900,
            max_lifetime_secs: 86_400,
            max_token_bytes: 4096,
            cache_capacity: 1024,
            signing_kid: signing_kid.into(),
            keys,
        }
    }

    fn keys_with(key: JwtKeyConfig) -> JwtKeys {
        let kid = key.kid.clone();
        JwtKeys::new(&settings(&kid, vec![key])).expect("valid settings")
    }

    fn claims() -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "user-42".into(),
            aud: None,
            iat: NOW,
            iat_ms: None,
            exp: NOW + 900,
            nbf: NOW,
            jti: "jti-1".into(),
            prv: "github".into(),
            team: "team-7".into(),
            roles: vec!["admin".into(), "dev".into()],
            subscription: "pro".into(),
            key: None,
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// Builds an HS256-signed token from raw header and payload JSON.
    fn hs_token(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sig = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    const HS_HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"hs"}"#;

    fn claims_json() -> serde_json::Value {
        serde_json::to_value(claims()).expect("claims json")
    }

    fn roundtrip(keys: &JwtKeys, alg: JwtAlg) {
        let token = keys.issue(&claims()).expect("issue");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().expect("header")).expect("b64"))
                .expect("json");
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], keys.settings().signing_kid.as_str());
        let got = keys.verify(&token, NOW + 1).expect("verify");
        assert_eq!(*got, claims());
        // Second verification is a cache hit with the same claims.
        let again = keys.verify(&token, NOW + 2).expect("verify cached");
        assert_eq!(*again, claims());
        assert_eq!(keys.cache_stats(), (1, 1));

        // Interop: jsonwebtoken verifies our token with a key taken from our JWKS
        // (or the shared secret for HS256), proving signatures and JWKS are standard.
        let decoding_key = if alg == JwtAlg::HS256 {
            jsonwebtoken::DecodingKey::from_secret(HS_SECRET.as_bytes())
        } else {
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks()).expect("jwks parses");
            let jwk = set.find(&keys.settings().signing_kid).expect("signing key in jwks");
            jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key from jwk")
        };
        let mut validation = jsonwebtoken::Validation::new(alg.into());
        validation.set_issuer(&[ISSUER]);
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<Claims>(&token, &decoding_key, &validation).expect("jsonwebtoken accepts our token");
        assert_eq!(data.claims, claims());
    }

    #[test]
    fn roundtrip_hs256() {
        roundtrip(&keys_with(hs_key("hs")), JwtAlg::HS256);
    }

    #[test]
    fn roundtrip_rs256() {
        roundtrip(&keys_with(rsa_key("rsa")), JwtAlg::RS256);
    }

    #[test]
    fn roundtrip_rs256_pkcs1_private_only() {
        let key = JwtKeyConfig {
            kid: "rsa1".into(),
            alg: JwtAlg::RS256,
            private_key_pem: Some(RSA_PRIVATE_PKCS1.into()),
            ..Default::default()
        };
        roundtrip(&keys_with(key), JwtAlg::RS256);
    }

    #[test]
    fn roundtrip_es256() {
        roundtrip(&keys_with(es_key("es")), JwtAlg::ES256);
    }

    #[test]
    fn roundtrip_eddsa() {
        roundtrip(&keys_with(ed_key("ed")), JwtAlg::EdDSA);
    }

    #[test]
    fn public_only_keys_verify_tokens_from_the_private_key() {
        let signer = keys_with(rsa_key("rsa"));
        let token = signer.issue(&claims()).expect("issue");
        let verifier =
            JwtKeys::new(&settings("hs", vec![hs_key("hs"), JwtKeyConfig { private_key_pem: None, ..rsa_key("rsa") }]))
                .expect("public-only rsa key");
        assert_eq!(*verifier.verify(&token, NOW).expect("verify"), claims());
    }

    #[test]
    fn alg_none_rejected() {
        let keys = keys_with(hs_key("hs"));
        let payload = b64(&claims_json().to_string());
        for alg in ["none", "None", "NONE"] {
            let header = b64(&format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"hs"}}"#));
            for sig in ["", "AAAA"] {
                let token = format!("{header}.{payload}.{sig}");
                assert!(matches!(keys.verify(&token, NOW), Err(JwtReject::Malformed(_))), "alg {alg} sig {sig:?}");
            }
        }
        let token = format!("{}.{payload}.AAAA", b64(r#"{"alg":"none","kid":"hs"}"#));
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::Malformed("alg none is forbidden")));
    }

    #[test]
    fn missing_or_unknown_alg_rejected() {
        let keys = keys_with(hs_key("hs"));
        let payload = claims_json().to_string();
        for header in [
            r#"{"typ":"JWT","kid":"hs"}"#,
            r#"{"alg":"HS512","kid":"hs"}"#,
            r#"{"alg":null,"kid":"hs"}"#,
            r#"{"alg":5,"kid":"hs"}"#,
        ] {
            let token = hs_token(HS_SECRET.as_bytes(), header, &payload);
            assert!(matches!(keys.verify(&token, NOW), Err(JwtReject::Malformed(_))), "{header}");
        }
    }

    #[test]
    fn hs_rs_alg_confusion_rejected() {
        let keys = keys_with(rsa_key("rsa"));
        let header = r#"{"alg":"HS256","typ":"JWT","kid":"rsa"}"#;
        let token = hs_token(RSA_PUBLIC.as_bytes(), header, &claims_json().to_string());
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::BadSignature("alg does not match the key's pinned alg")));
        // Also with the DER bytes of the public key as the HMAC secret.
        let der = jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).expect("der");
        let token = hs_token(der.as_bytes(), header, &claims_json().to_string());
        assert!(matches!(keys.verify(&token, NOW), Err(JwtReject::BadSignature(_))));
    }

    #[test]
    fn other_alg_against_pinned_key_rejected() {
        // An EdDSA-labelled token presented for the ES256 key is refused before
        // any cryptography, whatever its signature.
        let ed = keys_with(ed_key("k"));
        let token = ed.issue(&claims()).expect("issue");
        let es = keys_with(es_key("k"));
        assert_eq!(es.verify(&token, NOW), Err(JwtReject::BadSignature("alg does not match the key's pinned alg")));
    }

    #[test]
    fn crit_header_rejected() {
        let keys = keys_with(hs_key("hs"));
        let payload = claims_json().to_string();
        for crit in [r#"["exp"]"#, "[]", "null", r#""x""#] {
            let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"hs","crit":{crit}}}"#);
            let token = hs_token(HS_SECRET.as_bytes(), &header, &payload);
            assert_eq!(
                keys.verify(&token, NOW),
                Err(JwtReject::Malformed("crit header is not supported")),
                "crit {crit}"
            );
        }
    }

    #[test]
    fn unknown_kid_rejected() {
        let keys = keys_with(hs_key("hs"));
        let payload = claims_json().to_string();
        let token = hs_token(HS_SECRET.as_bytes(), r#"{"alg":"HS256","typ":"JWT","kid":"other"}"#, &payload);
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::BadSignature("unknown kid")));
    }

    #[test]
    fn missing_kid_rejected_even_with_a_single_key() {
        let keys = keys_with(hs_key("hs"));
        let token = hs_token(HS_SECRET.as_bytes(), r#"{"alg":"HS256","typ":"JWT"}"#, &claims_json().to_string());
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::BadSignature("header has no kid")));
    }

    #[test]
    fn wrong_typ_rejected_and_missing_typ_accepted() {
        let keys = keys_with(hs_key("hs"));
        let payload = claims_json().to_string();
        let bad = hs_token(HS_SECRET.as_bytes(), r#"{"alg":"HS256","typ":"at+jwt","kid":"hs"}"#, &payload);
        assert!(matches!(keys.verify(&bad, NOW), Err(JwtReject::Malformed(_))));
        let ok = hs_token(HS_SECRET.as_bytes(), r#"{"alg":"HS256","kid":"hs"}"#, &payload);
        assert!(keys.verify(&ok, NOW).is_ok());
    }

    #[test]
    fn expired_rejected() {
        let keys = keys_with(hs_key("hs"));
        let token = keys.issue(&claims()).expect("issue");
        let exp = claims().exp;
        assert_eq!(keys.verify(&token, exp + LEEWAY + 1), Err(JwtReject::Expired));
    }

    #[test]
    fn not_yet_valid_rejected() {
        let keys = keys_with(hs_key("hs"));
        let mut c = claims();
        c.nbf = NOW + 100;
        let token = keys.issue(&c).expect("issue");
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::NotYetValid));
    }

    #[test]
    fn leeway_honoured_both_ways() {
        // Fresh key sets per check so the cache does not mask the full path.
        let exp = claims().exp;
        let keys = keys_with(hs_key("hs"));
        let token = keys.issue(&claims()).expect("issue");
        assert!(keys_with(hs_key("hs")).verify(&token, exp + LEEWAY).is_ok());
        assert_eq!(keys_with(hs_key("hs")).verify(&token, exp + LEEWAY + 1), Err(JwtReject::Expired));

        let mut c = claims();
        c.nbf = NOW + 100;
        let token = keys.issue(&c).expect("issue");
        assert!(keys_with(hs_key("hs")).verify(&token, NOW + 100 - LEEWAY).is_ok());
        assert_eq!(keys_with(hs_key("hs")).verify(&token, NOW + 100 - LEEWAY - 1), Err(JwtReject::NotYetValid));
    }

    #[test]
    fn iat_in_the_future_rejected() {
        let keys = keys_with(hs_key("hs"));
        let mut c = claims();
        c.iat = NOW + LEEWAY + 1;
        c.nbf = 0;
        let token = keys.issue(&c).expect("issue");
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::Malformed("iat is in the future")));
    }

    #[test]
    fn lifetime_beyond_the_maximum_rejected() {
        let keys = keys_with(hs_key("hs"));
        let mut c = claims();
        c.exp = c.iat + 86_400;
        assert!(keys.verify(&keys.issue(&c).expect("issue"), NOW).is_ok(), "exactly the maximum");
        for exp in [c.iat + 86_401, u64::MAX] {
            c.exp = exp;
            let token = keys.issue(&c).expect("issue");
            assert_eq!(
                keys.verify(&token, NOW),
                Err(JwtReject::Malformed("lifetime (exp - iat) exceeds max_lifetime_secs"))
            );
        }
    }

    #[test]
    fn wrong_issuer_rejected() {
        let keys = keys_with(hs_key("hs"));
        let mut c = claims();
        c.iss = "https://evil.test".into();
        let token = keys.issue(&c).expect("issue");
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::BadSignature("wrong issuer")));
    }

    #[test]
    fn audience_checked_only_when_configured() {
        let mut s = settings("hs", vec![hs_key("hs")]);
        s.audience = Some("tollgate-api".into());
        let keys = JwtKeys::new(&s).expect("settings");
        let mut c = claims();
        c.aud = Some("someone-else".into());
        let wrong = keys.issue(&c).expect("issue");
        assert_eq!(keys.verify(&wrong, NOW), Err(JwtReject::BadSignature("wrong audience")));
        let missing = keys.issue(&claims()).expect("issue");
        assert_eq!(keys.verify(&missing, NOW), Err(JwtReject::BadSignature("wrong audience")));
        c.aud = Some("tollgate-api".into());
        let right = keys.issue(&c).expect("issue");
        assert!(keys.verify(&right, NOW).is_ok());

        // Without a configured audience, a token carrying one is accepted.
        let open = keys_with(hs_key("hs"));
        assert_eq!(open.verify(&wrong, NOW).expect("accepted").aud.as_deref(), Some("someone-else"));
    }

    #[test]
    fn string_typed_exp_rejected() {
        let keys = keys_with(hs_key("hs"));
        let mut payload = claims_json();
        payload["exp"] = serde_json::Value::String((NOW + 900).to_string());
        let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, &payload.to_string());
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::Malformed("claims are missing or wrongly typed")));
        for (claim, value) in [
            ("exp", serde_json::json!(1.5)),
            ("exp", serde_json::json!(-1)),
            ("roles", serde_json::json!("admin")),
            ("sub", serde_json::json!(42)),
            ("aud", serde_json::json!(["a", "b"])),
        ] {
            let mut payload = claims_json();
            payload[claim] = value;
            let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, &payload.to_string());
            assert!(matches!(keys.verify(&token, NOW), Err(JwtReject::Malformed(_))), "{claim}");
        }
    }

    #[test]
    fn missing_claim_rejected() {
        let keys = keys_with(hs_key("hs"));
        for claim in ["iss", "sub", "iat", "exp", "nbf", "jti", "prv", "team", "roles", "subscription"] {
            let mut payload = claims_json();
            payload.as_object_mut().expect("object").remove(claim);
            let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, &payload.to_string());
            assert_eq!(
                keys.verify(&token, NOW),
                Err(JwtReject::Malformed("claims are missing or wrongly typed")),
                "{claim}"
            );
        }
    }

    #[test]
    fn unknown_extra_claims_accepted() {
        let keys = keys_with(hs_key("hs"));
        let mut payload = claims_json();
        payload["extra"] = serde_json::json!({"nested": [1, 2, 3]});
        let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, &payload.to_string());
        assert_eq!(*keys.verify(&token, NOW).expect("verify"), claims());
    }

    #[test]
    fn non_object_claims_and_duplicate_claims_rejected() {
        let keys = keys_with(hs_key("hs"));
        let c = claims();
        let array =
            serde_json::json!([c.iss, c.sub, null, c.iat, c.exp, c.nbf, c.jti, c.prv, c.team, c.roles, c.subscription]);
        let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, &array.to_string());
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::Malformed("claims are not a json object")));
        let dup = claims_json().to_string().replacen('{', r#"{"exp":99999999999,"#, 1);
        let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, &dup);
        assert!(matches!(keys.verify(&token, NOW), Err(JwtReject::Malformed(_))));
        let token = hs_token(HS_SECRET.as_bytes(), HS_HEADER, "not json");
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::Malformed("claims are not a json object")));
    }

    #[test]
    fn oversize_rejected_before_decoding() {
        let keys = keys_with(hs_key("hs"));
        let mut c = claims();
        c.roles = (0..400).map(|i| format!("role-{i}")).collect();
        let token = keys.issue(&c).expect("issue");
        assert!(token.len() > 4096);
        assert_eq!(keys.verify(&token, NOW), Err(JwtReject::Malformed("token exceeds max_token_bytes")));
        // Garbage of the same size gets the same answer: nothing was decoded.
        let garbage = "!".repeat(4097);
        assert_eq!(keys.verify(&garbage, NOW), Err(JwtReject::Malformed("token exceeds max_token_bytes")));
    }

    #[test]
    fn large_payload_under_limit_verifies() {
        // Exercises the heap fallback for payloads larger than the stack buffer.
        let mut s = settings("hs", vec![hs_key("hs")]);
        s.max_token_bytes = 16 * 1024;
        let keys = JwtKeys::new(&s).expect("settings");
        let mut c = claims();
        c.roles = (0..400).map(|i| format!("role-{i}")).collect();
        let token = keys.issue(&c).expect("issue");
        assert_eq!(*keys.verify(&token, NOW).expect("verify"), c);
    }

    #[test]
    fn tampered_payload_rejected() {
        let keys = keys_with(hs_key("hs"));
        let token = keys.issue(&claims()).expect("issue");
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c.roles.push("superuser".into());
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).expect("json"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(keys.verify(&forged, NOW), Err(JwtReject::BadSignature("signature mismatch")));
        // Flipping one signature character is also caught.
        let mut sig = parts[2].as_bytes().to_vec();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let forged = format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(sig).expect("ascii"));
        assert!(matches!(keys.verify(&forged, NOW), Err(JwtReject::BadSignature(_))));
        // Forged tokens are never cached: both attempts above were misses,
        // and the genuine token still verifies through the full path.
        assert_eq!(keys.cache_stats(), (0, 2));
        assert!(keys.verify(&token, NOW).is_ok());
        assert_eq!(keys.cache_stats(), (0, 3));
    }

    #[test]
    fn cached_token_still_expires() {
        let keys = keys_with(hs_key("hs"));
        let token = keys.issue(&claims()).expect("issue");
        assert!(keys.verify(&token, NOW).is_ok());
        assert!(keys.verify(&token, NOW + 10).is_ok());
        assert_eq!(keys.cache_stats(), (1, 1));
        assert_eq!(keys.verify(&token, claims().exp + LEEWAY + 1), Err(JwtReject::Expired));
        assert_eq!(keys.cache_stats(), (2, 1));
    }

    #[test]
    fn cached_token_still_not_yet_valid_before_nbf() {
        let keys = keys_with(hs_key("hs"));
        let token = keys.issue(&claims()).expect("issue");
        assert!(keys.verify(&token, NOW).is_ok());
        assert_eq!(keys.verify(&token, NOW - LEEWAY - 1), Err(JwtReject::NotYetValid));
    }

    #[test]
    fn disabled_cache_still_verifies() {
        let mut s = settings("hs", vec![hs_key("hs")]);
        s.cache_capacity = 0;
        let keys = JwtKeys::new(&s).expect("settings");
        let token = keys.issue(&claims()).expect("issue");
        assert!(keys.verify(&token, NOW).is_ok());
        assert!(keys.verify(&token, NOW).is_ok());
        assert_eq!(keys.cache_stats(), (0, 2));
    }

    #[test]
    fn rotation() {
        let old = ed_key("old");
        let new = es_key("new");
        // Step 1: only the old key.
        let v1 = JwtKeys::new(&settings("old", vec![old.clone()])).expect("v1");
        let old_token = v1.issue(&claims()).expect("issue");
        // Step 2: add the new key, keep signing with the old one.
        let v2 = JwtKeys::new(&settings("old", vec![old.clone(), new.clone()])).expect("v2");
        assert!(v2.verify(&old_token, NOW).is_ok());
        // Step 3: switch signing to the new key; old tokens still verify.
        let v3 = JwtKeys::new(&settings("new", vec![old.clone(), new.clone()])).expect("v3");
        let new_token = v3.issue(&claims()).expect("issue");
        assert!(v3.verify(&old_token, NOW).is_ok());
        assert!(v3.verify(&new_token, NOW).is_ok());
        // The old key can be kept as public-only during the overlap.
        let old_public = JwtKeyConfig { private_key_pem: None, ..old.clone() };
        let v3b = JwtKeys::new(&settings("new", vec![old_public, new.clone()])).expect("v3b");
        assert!(v3b.verify(&old_token, NOW).is_ok());
        // Step 4: drop the old key; its tokens are refused, new ones verify.
        let v4 = JwtKeys::new(&settings("new", vec![new])).expect("v4");
        assert_eq!(v4.verify(&old_token, NOW), Err(JwtReject::BadSignature("unknown kid")));
        assert!(v4.verify(&new_token, NOW).is_ok());
    }

    #[test]
    fn jwks_contains_public_keys_and_no_secret() {
        let keys = JwtKeys::new(&settings("hs", vec![hs_key("hs"), rsa_key("rsa"), es_key("es"), ed_key("ed")]))
            .expect("settings");
        let jwks = keys.jwks();
        let list = jwks["keys"].as_array().expect("keys array");
        assert_eq!(list.len(), 3);
        let by_kid =
            |kid: &str| list.iter().find(|k| k["kid"] == kid).unwrap_or_else(|| panic!("{kid} missing")).clone();
        let rsa = by_kid("rsa");
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["use"], "sig");
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(rsa["n"].as_str().expect("n")).expect("b64").len(), 256);
        let es = by_kid("es");
        assert_eq!((es["kty"].as_str(), es["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert_eq!(es["alg"], "ES256");
        assert!(es["x"].is_string() && es["y"].is_string());
        let ed = by_kid("ed");
        assert_eq!((ed["kty"].as_str(), ed["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
        assert_eq!(ed["alg"], "EdDSA");
        assert!(list.iter().all(|k| k["kid"] != "hs"));
        let text = jwks.to_string();
        assert!(!text.contains("\"oct\"") && !text.contains("\"k\""));
        assert!(!text.contains(&URL_SAFE_NO_PAD.encode(HS_SECRET)));
        assert!(!text.contains(HS_SECRET));
        assert!(!text.contains("\"d\""), "no private exponents");
    }

    fn config_error(s: &JwtSettings) -> JwtConfigError {
        match JwtKeys::new(s) {
            Ok(_) => panic!("config unexpectedly accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn config_errors() {
        let e = config_error(&settings("hs", vec![hs_key("hs"), hs_key("hs")]));
        assert_eq!(e, JwtConfigError::DuplicateKid("hs".into()));
        assert_eq!(e.to_string(), "duplicate jwt key id `hs`");

        let e = config_error(&settings("nope", vec![hs_key("hs")]));
        assert_eq!(e, JwtConfigError::SigningKeyMissing("nope".into()));

        let public_only = JwtKeyConfig { private_key_pem: None, ..rsa_key("rsa") };
        let e = config_error(&settings("rsa", vec![public_only]));
        assert_eq!(e, JwtConfigError::SigningKeyCannotSign("rsa".into()));

        let short = JwtKeyConfig { secret: Some("too-short".into()), ..hs_key("hs") };
        let e = config_error(&settings("hs", vec![short]));
        assert_eq!(e.to_string(), "jwt key `hs`: hs256 secret must be at least 32 bytes");

        let e = config_error(&settings("hs", vec![hs_key("hs"), JwtKeyConfig { secret: None, ..hs_key("hs2") }]));
        assert!(e.to_string().contains("hs2"), "{e}");

        for bad in ["", "not a pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"] {
            for alg in [JwtAlg::RS256, JwtAlg::ES256, JwtAlg::EdDSA] {
                let key =
                    JwtKeyConfig { kid: "bad".into(), alg, private_key_pem: Some(bad.into()), ..Default::default() };
                let e = config_error(&settings("bad", vec![key]));
                assert!(matches!(&e, JwtConfigError::Key { kid, .. } if kid == "bad"), "{e}");
                let key =
                    JwtKeyConfig { kid: "bad".into(), alg, public_key_pem: Some(bad.into()), ..Default::default() };
                let e = config_error(&settings("hs", vec![hs_key("hs"), key]));
                assert!(matches!(&e, JwtConfigError::Key { kid, .. } if kid == "bad"), "{e}");
            }
        }
    }

    #[test]
    fn config_rejects_alg_and_key_type_mismatch() {
        let (es_private, es_public) = es256_pems();
        let ed_private = JwtKeys::generate_ed25519_pkcs8_pem();
        let cases = [
            (JwtAlg::RS256, Some(es_private.clone()), None),
            (JwtAlg::ES256, Some(RSA_PRIVATE_PKCS8.to_string()), None),
            (JwtAlg::ES256, Some(ed_private.clone()), None),
            (JwtAlg::EdDSA, Some(es_private.clone()), None),
            (JwtAlg::EdDSA, None, Some(RSA_PUBLIC.to_string())),
            (JwtAlg::RS256, None, Some(es_public.clone())),
            (JwtAlg::RS256, None, Some(RSA_PRIVATE_PKCS1.to_string())),
            (JwtAlg::ES256, Some(es_private.clone()), Some(es256_pems().1)),
            (JwtAlg::HS256, Some(ed_private.clone()), None),
            (JwtAlg::EdDSA, None, None),
        ];
        for (i, (alg, private_key_pem, public_key_pem)) in cases.into_iter().enumerate() {
            let key = JwtKeyConfig { kid: format!("k{i}"), alg, secret: None, private_key_pem, public_key_pem };
            let e = config_error(&settings("hs", vec![hs_key("hs"), key]));
            assert!(matches!(&e, JwtConfigError::Key { kid, .. } if *kid == format!("k{i}")), "case {i}: {e}");
        }
        let asym_with_secret = JwtKeyConfig { secret: Some(HS_SECRET.into()), ..rsa_key("rsa") };
        assert!(matches!(config_error(&settings("rsa", vec![asym_with_secret])), JwtConfigError::Key { .. }));
    }

    #[test]
    fn config_rejects_bad_kids_and_settings() {
        for kid in ["", "has space", "quo\"te", "back\\slash", &"k".repeat(129)] {
            let e = config_error(&settings(kid, vec![hs_key(kid)]));
            assert!(matches!(e, JwtConfigError::Key { .. }), "{kid:?}: {e}");
        }
        let mut s = settings("hs", vec![hs_key("hs")]);
        s.issuer.clear();
        assert!(matches!(config_error(&s), JwtConfigError::Settings(_)));
        let s = settings("hs", vec![]);
        assert!(matches!(config_error(&s), JwtConfigError::Settings(_)));
    }

    #[test]
    fn settings_deserialize_from_json_with_defaults() {
        let s: JwtSettings = serde_json::from_value(serde_json::json!({
            "issuer": ISSUER,
            "signing_kid": "ed",
            "keys": [{"kid": "ed", "alg": "EdDSA", "private_key_pem": JwtKeys::generate_ed25519_pkcs8_pem()},
                     {"kid": "hs", "alg": "HS256", "secret": HS_SECRET}],
        }))
        .expect("settings");
        assert_eq!(s.keys[1].alg, JwtAlg::HS256);
        assert!(s.max_token_bytes > 0 && s.cache_capacity > 0);
        let keys = JwtKeys::new(&s).expect("keys");
        assert!(keys.verify(&keys.issue(&claims()).expect("issue"), NOW).is_ok());
        let debug = format!("{:?} {:?}", s, keys);
        assert!(!debug.contains(HS_SECRET) && !debug.contains("BEGIN PRIVATE"), "{debug}");
        assert!(serde_json::from_value::<JwtAlg>(serde_json::json!("none")).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let keys = JwtKeys::new(&settings("hs", vec![hs_key("hs"), rsa_key("rsa"), es_key("es"), ed_key("ed")]))
            .expect("settings");
        let long = "A".repeat(3000);
        let fixed: Vec<String> = vec![
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "....".into(),
            "a.b".into(),
            "a.b.c".into(),
            "a.b.c.d".into(),
            ".b.c".into(),
            "a..c".into(),
            "a.b.".into(),
            "é.ü.ß".into(),
            "\0.\0.\0".into(),
            format!("{long}.{long}"),
            format!("{}.e30.AAAA", long),
            format!("{}.{long}.AAAA", b64(r#"{"alg":"HS256","kid":"hs"}"#)),
            format!("{}.e30.{long}", b64(r#"{"alg":"RS256","kid":"rsa"}"#)),
            format!("{}.e30.{}", b64(r#"{"alg":"ES256","kid":"es"}"#), "A".repeat(1200)),
            format!("{}.e30.AAAA", b64("[]")),
            format!("{}.e30.AAAA", b64("null")),
            format!("{}.e30.AAAA", b64(r#"{"alg":"HS256","kid":"h\u0073"}"#)),
            format!("{}.e30.AAAA", b64(r#"{"alg":"HS256","kid":"hs","kid":"hs"}"#)),
            format!("{}.e30.AAAA=", b64(r#"{"alg":"HS256","kid":"hs"}"#)),
            format!("{}.e30.A", b64(r#"{"alg":"EdDSA","kid":"ed"}"#)),
            format!("{}.e30.", b64(r#"{"alg":"EdDSA","kid":"ed"}"#)),
        ];
        for token in &fixed {
            let result = keys.verify(token, NOW);
            assert!(
                matches!(result, Err(JwtReject::Malformed(_) | JwtReject::BadSignature(_))),
                "{token:.80}: {result:?}"
            );
        }
        let rng = SystemRandom::new();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"";
        for i in 0..3000usize {
            let mut bytes = vec![0u8; i % 700];
            ring::rand::SecureRandom::fill(&rng, &mut bytes).expect("rng");
            let raw = String::from_utf8_lossy(&bytes).into_owned();
            let mapped: String = bytes.iter().map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()])).collect();
            for header in ["", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzIn0."] {
                assert!(keys.verify(&format!("{header}{raw}"), NOW).is_err());
                assert!(keys.verify(&format!("{header}{mapped}"), NOW).is_err());
            }
        }
    }

    #[test]
    fn jwt_keys_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JwtKeys>();
    }
}
