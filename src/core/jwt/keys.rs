//! Key configuration and loading: the settings, each key's algorithm and
//! material, PEM/DER parsing (including the RSA public key DER walk and the
//! P-256 curve OID check) and the precomputed per-key verifier.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as rsig, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::JwtKeys;
use super::issue::Signer;

/// Longest key id accepted in the configuration.
const MAX_KID_LEN: usize = 128;
/// Smallest HS256 secret accepted; RFC 7518 section 3.2 requires a key at
/// least as long as the hash output.
const MIN_HS256_SECRET: usize = 32;

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
    pub(super) fn from_name(name: &str) -> Option<Self> {
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

/// Precomputed verification material for one key.
pub(super) enum Verifier {
    /// Boxed: aws-lc-rs keeps the HMAC context (over 1 KB) in the key.
    Hmac(Box<aws_lc_rs::hmac::Key>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ecdsa(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Verifier {
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hmac(key) => aws_lc_rs::hmac::verify(key, message, signature).is_ok(),
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
}

/// One verification key, looked up by `kid`.
pub(super) struct KeyEntry {
    pub(super) kid: Box<str>,
    pub(super) alg: JwtAlg,
    pub(super) verifier: Verifier,
    /// The encoded header [`JwtKeys::issue`] writes for this key.
    pub(super) canonical_header_b64: String,
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
pub(super) fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Loads one key's material, returning its verifier and, when it has
/// private material, its signer.
pub(super) fn load_key(cfg: &JwtKeyConfig) -> Result<(Verifier, Option<Signer>), JwtConfigError> {
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
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        return Ok((Verifier::Hmac(Box::new(key.clone())), Some(Signer::Hmac(Box::new(key)))));
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
            let comps = rsig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            (Some(Verifier::Rsa { n: comps.n, e: comps.e }), Some(Signer::Rsa(pair)))
        }
        (JwtAlg::ES256, Some(pem)) => {
            let key = jsonwebtoken::EncodingKey::from_ec_pem(pem)
                .map_err(|_| err("private_key_pem is not a pkcs#8 ec private key"))?;
            let pair = rsig::EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, key.inner())
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use super::*;

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
}
