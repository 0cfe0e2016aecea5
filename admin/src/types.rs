//! Request and response types of the tollgate admin HTTP API, field for field
//! as `src/http/admin.rs` and `src/http.rs` produce and accept them.
//!
//! Responses keep every field the daemon sends, `null`s included, so that a
//! value decoded here and encoded again is the daemon's JSON (the end-to-end
//! test checks this); requests skip unset fields, because the daemon tells an
//! absent field ("unchanged") from `null` ("clear") on updates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{resource: [actions]}`; `*` matches any resource or action.
pub type Permissions = BTreeMap<String, Vec<String>>;

// ---- errors ----

/// The daemon's usual error body: `{"error": {"code", "message"}}`; validation
/// errors (422) also carry seed 004's `{"detail": [{loc, msg, type}]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable machine code and a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Validation failures, one per offending field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Vec<ValidationDetail>>,
}

/// `{"code", "message"}` of an error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine code, e.g. `not_found`, `validation_failed`.
    pub code: String,
    /// Human explanation.
    pub message: String,
}

/// One entry of a 422's `detail` (seed 004).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationDetail {
    /// Where: `["body", "name"]`, `["query", "limit"]`.
    pub loc: Vec<String>,
    /// What is wrong.
    pub msg: String,
    /// Kind of failure, e.g. `missing`, `enum`, `extra_forbidden`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ErrorBody {
    /// One line for a terminal: the code and message, and each field's failure.
    pub fn summary(&self) -> String {
        let mut s = match &self.error {
            Some(e) => format!("{}: {}", e.code, e.message),
            None => String::new(),
        };
        for d in self.detail.iter().flatten() {
            let line = format!("{}: {} ({})", d.loc.join("."), d.msg, d.kind);
            // The `error` message of a 422 already repeats the first detail.
            if !s.contains(&d.msg) {
                if !s.is_empty() {
                    s.push_str("; ");
                }
                s.push_str(&line);
            }
        }
        s
    }
}

// ---- login (seed 003) ----

/// `POST /v1/auth/token` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// A signed JWT.
    pub token: String,
}

// ---- teams ----

/// A team (seed 000).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `Free`, `Start`, `Master` or `Pro`.
    pub tier: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `POST /v1/teams` body (admin token only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTeam {
    /// Display name.
    pub name: String,
    /// Defaults to `Free`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// `PATCH /v1/teams/{id}` body (admin token only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamUpdate {
    /// The new tier.
    pub tier: String,
    /// Lower the tier even below what the team holds (members, documents);
    /// without it such a change is refused (409 `tier_exceeded`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

// ---- users ----

/// A user of a team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Identifier.
    pub id: String,
    /// Owning team.
    pub team_id: String,
    /// Login name.
    pub username: String,
    /// `Administrator`, `Manager`, `Author` or `Reader`.
    pub role: String,
    /// `Pending`, `Enabled`, `Disabled`, `Blocked` or `Deleted`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `GET /v1/users` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Users in the team.
    pub total: u64,
    /// Users in `data`.
    pub count: u64,
    /// The next page, as a path with query (`None` on the last page).
    #[serde(default, rename = "nextUrl")]
    pub next_url: Option<String>,
    /// The previous page, as a path with query.
    #[serde(default, rename = "previousUrl")]
    pub previous_url: Option<String>,
    /// The users, in id order.
    pub data: Vec<User>,
}

/// `GET /v1/teams` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamList {
    /// Teams the caller sees.
    pub total: u64,
    /// Teams in `data`.
    pub count: u64,
    /// The next page, as a path with query (`None` on the last page).
    #[serde(default, rename = "nextUrl")]
    pub next_url: Option<String>,
    /// The previous page, as a path with query.
    #[serde(default, rename = "previousUrl")]
    pub previous_url: Option<String>,
    /// The teams, in id order.
    pub data: Vec<Team>,
}

/// `POST /v1/users` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    /// Required with the admin token; a user caller's own team otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Login name.
    pub username: String,
    /// Password (hashed with argon2id by the daemon).
    pub password: String,
    /// Role.
    pub role: String,
    /// Defaults to `Enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `PATCH /v1/users/{id}` body; unset fields are left unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdate {
    /// New role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New status (not `Deleted`: delete the user instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// New password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

// ---- API keys (seeds 001, 002) ----

/// An API key: seed 002's fields, seed 001's `companyId`/`status`/
/// `whitelistedIPs`/`deletedAt`; `key` (the secret) only in the create answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Identifier.
    pub id: String,
    /// Owning team (seed 001's name).
    pub company_id: String,
    /// Owning team.
    pub team_id: String,
    /// Owning user; the key acts with this user's role.
    pub user_id: String,
    /// Display name.
    pub name: Option<String>,
    /// The secret's prefix.
    pub prefix: String,
    /// The first characters of the secret, to recognise it.
    pub start: String,
    /// Whether the key may be used at all.
    pub enabled: bool,
    /// `active` or `inactive` (disabled or expired).
    pub status: String,
    /// RFC 3339, or null for never.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Always null: deleted keys are gone.
    pub deleted_at: Option<String>,
    /// When `remaining` was last refilled.
    pub last_refill_at: Option<String>,
    /// When the key was last used.
    pub last_request: Option<String>,
    /// Free-form JSON object.
    pub metadata: Value,
    /// Whether the per-key rate limit applies.
    pub rate_limit_enabled: bool,
    /// Requests per window.
    pub rate_limit_max: Option<u32>,
    /// Window in milliseconds.
    pub rate_limit_time_window: Option<u64>,
    /// Uses left; null = unlimited.
    pub remaining: Option<u32>,
    /// Uses restored every `refillInterval`.
    pub refill_amount: Option<u32>,
    /// Milliseconds between refills.
    pub refill_interval: Option<u64>,
    /// Verifications so far.
    pub request_count: u64,
    /// What the key may do.
    pub permissions: Permissions,
    /// Addresses and CIDR blocks allowed to use the key; empty = any.
    #[serde(rename = "whitelistedIPs")]
    pub whitelisted_ips: Vec<String>,
    /// The secret: present once, in the answer to `POST /v1/keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `GET /v1/keys` answer: seed 001's envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyList {
    /// The HTTP status, 200 (seed 001 repeats it in the body).
    pub status: u16,
    /// Keys matching the status filter.
    pub total: u64,
    /// Keys in `data`.
    pub count: u64,
    /// The next page, as a path with query.
    pub next_url: Option<String>,
    /// The previous page, as a path with query.
    pub previous_url: Option<String>,
    /// The keys, in id order.
    pub data: Vec<ApiKey>,
}

/// Query of `GET /v1/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyListQuery {
    /// Required with the admin token.
    pub team_id: Option<String>,
    /// `active` (default) or `inactive`.
    pub status: Option<String>,
    /// 1 to 100, default 25.
    pub limit: Option<u32>,
    /// Offset from the start, or from the cursor.
    pub offset: Option<u32>,
    /// Keys after this id.
    pub starting_after: Option<String>,
    /// Keys before this id.
    pub ending_before: Option<String>,
}

/// `POST /v1/keys` body (seed 002's create fields and seed 001's IP list).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewKey {
    /// Owner; defaults to the calling user (required with the admin token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The secret's prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Lifetime in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Uses allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// Uses restored every `refillInterval` (both or neither).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_amount: Option<u32>,
    /// Milliseconds between refills.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_interval: Option<u64>,
    /// Whether a rate limit applies (needs max and window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_enabled: Option<bool>,
    /// Window in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_time_window: Option<u64>,
    /// Requests per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_max: Option<u32>,
    /// What the key may do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// A JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Allowed addresses and CIDR blocks.
    #[serde(rename = "whitelistedIPs", skip_serializing_if = "Option::is_none")]
    pub whitelisted_ips: Option<Vec<String>>,
}

/// `PATCH /v1/keys/{id}` body. The outer `Option` is "send the field or not";
/// an inner `None` sends `null`, which clears the setting (e.g. no expiry).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUpdate {
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    /// Enable or disable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// New lifetime from now, in seconds; null = never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<Option<u64>>,
    /// Uses left; null = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<Option<u32>>,
    /// Refill amount; null with `refillInterval` null = no refill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_amount: Option<Option<u32>>,
    /// Refill interval in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_interval: Option<Option<u64>>,
    /// `false` turns the rate limit off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_enabled: Option<bool>,
    /// Window in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_time_window: Option<u64>,
    /// Requests per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_max: Option<u32>,
    /// Replaces the permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// Replaces the metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Replaces the IP allowlist (empty = any address).
    #[serde(rename = "whitelistedIPs", skip_serializing_if = "Option::is_none")]
    pub whitelisted_ips: Option<Vec<String>>,
}

// ---- access tokens (seed 004) ----

/// A personal access token (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    /// UUID.
    pub id: String,
    /// 1 to 255 characters.
    pub name: String,
    /// e.g. `personal`, `session`.
    pub token_type: String,
    /// The first characters of the secret.
    pub token_prefix: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or null for never.
    pub expires_at: Option<String>,
    /// RFC 3339, or null if never used.
    pub last_used_at: Option<String>,
    /// RFC 3339, or null if live.
    pub revoked_at: Option<String>,
}

/// `GET /v1/access-tokens` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPage {
    /// The page.
    pub items: Vec<AccessToken>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/access-tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenListQuery {
    /// Only tokens of this type.
    pub token_type: Option<String>,
    /// Include revoked tokens.
    pub include_revoked: bool,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
    /// From a previous `nextCursor`.
    pub cursor: Option<String>,
}

/// `POST /v1/access-tokens` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    /// 1 to 255 characters.
    pub name: String,
    /// Lifetime in days; never expires when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    /// Defaults to `personal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// `POST /v1/access-tokens` answer: the secret, shown once, and the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The secret.
    pub plaintext: String,
    /// The token.
    pub token: AccessToken,
}

/// `DELETE /v1/access-tokens` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedCount {
    /// Tokens revoked.
    pub revoked_count: u64,
}

// ---- audit log ----

/// One audit event of `GET /v1/logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Position in the team's log; also a cursor.
    pub id: String,
    /// RFC 3339.
    pub at: String,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// The team, or `_global` for events that belong to none.
    pub team_id: String,
    /// Who: `admin-token`, `user:<id>/<kind>:<id>`, `api_key:<id>` … (ids only).
    pub actor: String,
    /// An admin operation (`CreateKey` …) or `verify` / `admin` for denials.
    pub action: String,
    /// The object acted on, or empty.
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// HTTP status of an admin call, or a verification's deny code.
    pub detail: String,
    /// The HTTP request id (`X-Request-Id`) of an admin call or login; null
    /// for verifications, samples and events stored before request ids were.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `GET /v1/logs` answer: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    /// The page.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for older events; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/logs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Required with the admin token (`_global` for events of no team).
    pub team_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Oldest, milliseconds since the epoch.
    pub since: Option<u64>,
    /// Newest, milliseconds since the epoch.
    pub until: Option<u64>,
    /// 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// From a previous `nextCursor`.
    pub cursor: Option<String>,
}

// ---- verification ----

/// `POST /v1/verify` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// API key, access token or JWT.
    pub credential: String,
    /// The end client's address (defaults to the caller's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Required permissions, all of them.
    #[serde(skip_serializing_if = "Permissions::is_empty")]
    pub permissions: Permissions,
    /// Uses to spend (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
    /// A team quota to consume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// A team quota to consume, e.g. `documents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Quota name.
    pub name: String,
    /// Amount (default 1).
    pub amount: u32,
}

/// A rate limiter's state in a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitInfo {
    /// Requests per window.
    pub limit: u32,
    /// Requests still possible now.
    pub remaining: u32,
    /// Milliseconds until the full allowance is back.
    pub reset_ms: u64,
}

/// `POST /v1/verify` answer. A refused credential is a verdict (HTTP 200), not
/// an error; the two shapes are told apart by `valid`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Verdict {
    /// `valid: true`.
    Allow(Allow),
    /// `valid: false`.
    Deny(Deny),
}

/// An accepted credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allow {
    /// Always true.
    pub valid: True,
    /// `api_key`, `access_token` or `jwt`.
    pub kind: String,
    /// The user the credential acts as.
    pub subject: String,
    /// The user's team.
    pub team: String,
    /// Key id, token id or JWT `jti`.
    pub credential_id: String,
    /// The user's role, as a one-element list.
    pub roles: Vec<String>,
    /// What the credential may do.
    pub permissions: Permissions,
    /// Uses left, for a key with a limit.
    pub remaining: Option<u32>,
    /// The tightest rate limit that applied.
    pub rate_limit: Option<RateLimitInfo>,
}

/// A refused credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deny {
    /// Always false.
    pub valid: False,
    /// Machine code: `NOT_FOUND`, `EXPIRED`, `RATE_LIMITED`, ...
    pub code: String,
    /// Human explanation.
    pub reason: String,
    /// When retrying can succeed, for limits.
    pub retry_after_ms: Option<u64>,
    /// The limiter's state, for rate limits.
    pub rate_limit: Option<RateLimitInfo>,
}

/// A `bool` that only decodes from `true`, so `Verdict` picks the right shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct True;

/// A `bool` that only decodes from `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct False;

macro_rules! bool_literal {
    ($ty:ident, $value:literal) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bool($value)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                if bool::deserialize(d)? == $value {
                    Ok($ty)
                } else {
                    Err(serde::de::Error::custom(concat!("expected ", $value)))
                }
            }
        }
    };
}
bool_literal!(True, true);
bool_literal!(False, false);

impl Verdict {
    /// Whether the credential was accepted.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts_decode_by_valid() {
        let allow = json!({"valid": true, "kind": "api_key", "subject": "u", "team": "t",
            "credentialId": "k", "roles": ["Reader"], "permissions": {"docs": ["read"]},
            "remaining": null, "rateLimit": {"limit": 2, "remaining": 1, "resetMs": 30000}});
        let v: Verdict = serde_json::from_value(allow.clone()).unwrap();
        assert!(v.is_allowed());
        assert_eq!(serde_json::to_value(&v).unwrap(), allow);
        let deny = json!({"valid": false, "code": "NOT_FOUND", "reason": "unknown credential",
            "retryAfterMs": null, "rateLimit": null});
        let v: Verdict = serde_json::from_value(deny.clone()).unwrap();
        assert!(!v.is_allowed());
        assert_eq!(serde_json::to_value(&v).unwrap(), deny);
    }

    #[test]
    fn key_update_tells_absent_from_null() {
        let up = KeyUpdate { expires_in: Some(None), enabled: Some(false), ..KeyUpdate::default() };
        assert_eq!(serde_json::to_value(&up).unwrap(), json!({"expiresIn": null, "enabled": false}));
    }

    #[test]
    fn error_summary_names_fields() {
        let b: ErrorBody = serde_json::from_value(json!({
            "detail": [{"loc": ["body", "role"], "msg": "must be Administrator", "type": "enum"}],
            "error": {"code": "validation_failed", "message": "role: must be Administrator"}
        }))
        .unwrap();
        assert_eq!(b.summary(), "validation_failed: role: must be Administrator");
    }
}
