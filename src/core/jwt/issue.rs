//! Issuing: the signing material and the header tollgate writes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature as rsig;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::{Claims, JwtKeys};

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

/// Private signing material for one key, parsed once at load time because
/// parsing an RSA private key costs far more than signing with it.
pub(super) enum Signer {
    /// Boxed: aws-lc-rs keeps the HMAC context (over 1 KB) in the key.
    Hmac(Box<aws_lc_rs::hmac::Key>),
    Rsa(rsig::RsaKeyPair),
    Ecdsa(rsig::EcdsaKeyPair),
    Ed25519(rsig::Ed25519KeyPair),
}

impl Signer {
    pub(super) fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, JwtError> {
        match self {
            Signer::Hmac(key) => Ok(aws_lc_rs::hmac::sign(key, message).as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&rsig::RSA_PKCS1_SHA256, rng, message, &mut sig).map_err(|_| JwtError::Sign)?;
                Ok(sig)
            }
            Signer::Ecdsa(pair) => pair.sign(rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| JwtError::Sign),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// The header written by [`JwtKeys::issue`].
#[derive(Serialize)]
pub(super) struct OutHeader<'a> {
    pub(super) alg: &'a str,
    pub(super) typ: &'a str,
    pub(super) kid: &'a str,
}

impl JwtKeys {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

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
}
