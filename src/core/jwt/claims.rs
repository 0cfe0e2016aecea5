//! The claims of a tollgate token.

use serde::{Deserialize, Serialize};

/// The claims carried by a tollgate seed token.
///
/// Every field except `aud` is required and must have the declared JSON type;
/// a token with a missing or wrongly typed claim is rejected as malformed.
/// Unknown extra claims are ignored so that issuers can add fields without
/// breaking older verifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer; must equal [`JwtSettings::issuer`](super::JwtSettings::issuer).
    pub iss: String,
    /// The user id the token was issued to.
    pub sub: String,
    /// The audience; checked only when [`JwtSettings::audience`](super::JwtSettings::audience) is set.
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
#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

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
}
