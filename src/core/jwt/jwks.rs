//! The public keys as a JWKS document (RFC 7517), for `/.well-known/jwks.json`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::keys::Verifier;
use super::{JwtAlg, JwtKeys};

impl Verifier {
    /// Builds the public JWK for this key; HMAC keys are never published.
    pub(super) fn jwk(&self, kid: &str, alg: JwtAlg) -> Option<serde_json::Value> {
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

impl JwtKeys {
    /// Returns the public keys as a JWKS document (`{"keys":[…]}`) for
    /// publishing at a well-known endpoint. HS256 secrets are never included.
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

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
}
