//! Verification: size checks, splitting and decoding the compact JWS, the
//! header checks (RFC 8725: pinned algorithm, no `none`, no `crit`, a `kid`),
//! the signature, the claims and their times, and the verified-token cache.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::keys::KeyEntry;
use super::{Claims, JwtAlg, JwtKeys};

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

impl JwtKeys {
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
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use super::*;

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
            aws_lc_rs::rand::SecureRandom::fill(&rng, &mut bytes).expect("rng");
            let raw = String::from_utf8_lossy(&bytes).into_owned();
            let mapped: String = bytes.iter().map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()])).collect();
            for header in ["", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzIn0."] {
                assert!(keys.verify(&format!("{header}{raw}"), NOW).is_err());
                assert!(keys.verify(&format!("{header}{mapped}"), NOW).is_err());
            }
        }
    }
}
