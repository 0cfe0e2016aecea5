//! The bodies of tollgate's HTTP API, defined once: the daemon serializes its
//! answers from these types and `tollgate-admin` decodes them, so the two
//! cannot drift apart.
//!
//! - admin requests and answers under `/v1/` (login, teams, users, API keys,
//!   access tokens, the audit log, reload), their pages and query parameters;
//! - the verdict of `POST /v1/verify` and its request;
//! - the error answers: `{"error": {"code", "message"}}`, and the 422
//!   validation answer that adds seed 004's `{"detail": [{loc, msg, type}]}`;
//! - `/healthz` and `/readyz`.
//!
//! **Wire format.** Fields are declared in the order of their JSON names
//! (byte order), so a serialized answer is byte for byte what the daemon sent
//! when it built its JSON through `serde_json::Value` (whose objects are
//! sorted); the tests hold every type to that. Answers keep every field the
//! daemon sends, `null`s included, so that a value decoded here and encoded
//! again is the daemon's JSON. Requests skip unset fields, because the daemon
//! tells an absent field ("unchanged") from `null` ("clear") on updates.
//!
//! With the `openapi` feature every type derives `utoipa::ToSchema` (query
//! types also `utoipa::IntoParams`); the doc comments become the schemas'
//! descriptions.
//!
//! This crate never depends on the daemon.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `{resource: [actions]}`; `*` as a resource or an action matches any.
pub type Permissions = BTreeMap<String, Vec<String>>;

/// Decodes a present field, `null` included, as `Some`: with `default`, an
/// absent field stays `None`, so `Option<Option<T>>` tells "absent" from "null".
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---- errors ----

/// `{"code", "message"}` of an error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable machine code, e.g. `not_found`, `validation_failed`,
    /// `unauthorized`, `rate_limited`, `body_too_large`.
    pub code: String,
    /// Human explanation.
    pub message: String,
}

/// The daemon's usual error answer (every 4xx and 5xx but a 422).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    /// The stable machine code and a message.
    pub error: ApiError,
}

impl ErrorResponse {
    /// An error answer with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse { error: ApiError { code: code.into(), message: message.into() } }
    }
}

/// A 422: seed 004's `detail`, one entry per offending field, beside the usual
/// `error` object (code `validation_failed`, message naming the first field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidationErrorResponse {
    /// The failures, one per offending field.
    pub detail: Vec<ValidationDetail>,
    /// `validation_failed` and `<field>: <msg>`.
    pub error: ApiError,
}

/// One entry of a 422's `detail` (seed 004).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidationDetail {
    /// Where: `["body", "name"]`, `["query", "limit"]`.
    pub loc: Vec<String>,
    /// What is wrong.
    pub msg: String,
    /// Kind of failure, e.g. `missing`, `enum`, `extra_forbidden`, `value_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Any error answer as a client reads it: [`ErrorResponse`] or
/// [`ValidationErrorResponse`], or neither (both `None`) when the body was not
/// the daemon's (a proxy's error page, say).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Validation failures, on a 422.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Vec<ValidationDetail>>,
    /// The stable machine code and a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
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

impl From<ErrorResponse> for ErrorBody {
    fn from(e: ErrorResponse) -> ErrorBody {
        ErrorBody { detail: None, error: Some(e.error) }
    }
}

impl From<ValidationErrorResponse> for ErrorBody {
    fn from(e: ValidationErrorResponse) -> ErrorBody {
        ErrorBody { detail: Some(e.detail), error: Some(e.error) }
    }
}

// ---- health ----

/// `GET /healthz`: the process answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: 200 when ready, 503 otherwise, with what is not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// Each part's state.
    pub checks: ReadinessChecks,
    /// `ready` or `not_ready`.
    pub status: String,
}

/// The parts [`Readiness`] looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadinessChecks {
    /// Cluster mode only: `following` (listening for changes, the last one
    /// applied named), or `degraded: ...` while PostgreSQL cannot be reached
    /// (verification goes on from memory; admin writes answer 503). Does not
    /// make the daemon unready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `loaded`, or `loading` while the daemon starts.
    pub index: String,
    /// `bound`, or `not serving (starting or draining)`.
    pub listeners: String,
    /// `ok`, `opening`, or `the last write failed`.
    pub store: String,
}

// ---- login (seed 003) and configuration ----

/// `POST /v1/auth/token` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// A signed JWT.
    pub token: String,
}

/// `POST /v1/admin/reload` answer (200; a refused configuration is a 422).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReloadResponse {
    /// What the reload did.
    pub report: ReloadReport,
    /// Always `reloaded`.
    pub status: String,
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReloadReport {
    /// What changed and is now in force, one line per section.
    pub applied: Vec<String>,
    /// The configuration file read.
    pub file: String,
    /// Keys whose new value needs a restart; the old value stays in force.
    pub needs_restart: Vec<String>,
}

// ---- query strings ----

/// How the query types decode their values (from a query string, where every
/// value is a string, or from JSON): ranges and flags are checked while
/// decoding, so the daemon's handlers extract these very types. A value's
/// error is `<type><KIND_SEP><message>` ([`query::error`]), which the daemon
/// splits ([`query::split`]) into a 422's `type` and `msg`.
pub mod query {
    use std::fmt::{self, Display};

    use serde::Deserializer;
    use serde::de::{self, Visitor};

    /// Separates the `type` of a 422 from its message in a decoding error.
    pub const KIND_SEP: char = '\u{1f}';

    /// A decoding error of `kind` (a 422's `type`) with `msg`.
    pub fn error<E: de::Error>(kind: &str, msg: impl Display) -> E {
        E::custom(format!("{kind}{KIND_SEP}{msg}"))
    }

    /// `(type, message)` of a decoding error; `value_error` when it has no type.
    pub fn split(error: &str) -> (&str, &str) {
        error.split_once(KIND_SEP).unwrap_or(("value_error", error))
    }

    /// A string or an unsigned integer, as text.
    struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    /// An integer from `MIN` to `MAX`.
    pub(crate) fn int<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        let bad = || error("value_error", format_args!("must be an integer from {MIN} to {MAX}"));
        match d.deserialize_any(Text)?.parse::<u64>() {
            Ok(n) if (MIN..=MAX).contains(&n) => T::try_from(n).map(Some).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// A boolean: `true`/`1` or `false`/`0`, in any case.
    pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match d.deserialize_any(Text)?.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(error("bool_parsing", "must be true or false")),
        }
    }

    /// `active` or `inactive`.
    pub(crate) fn key_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s = d.deserialize_any(Text)?;
        match s.as_str() {
            "active" | "inactive" => Ok(Some(s)),
            _ => Err(error("enum", "must be active or inactive")),
        }
    }
}

// ---- paging ----

/// Query of the offset/cursor pages (`GET /v1/teams`; with `teamId`,
/// `GET /v1/users`): `startingAfter` and `endingBefore` are ids from a page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    /// Objects before this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_before: Option<String>,
    /// 1 to 100, default 25.
    #[serde(default, deserialize_with = "query::int::<_, _, 1, 100>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<u32>,
    /// Skip this many, from the start or from the cursor.
    #[serde(default, deserialize_with = "query::int::<_, _, 0, 4294967295>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub offset: Option<u32>,
    /// Objects after this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_after: Option<String>,
    /// The credential, when `admin_api.allow_query_token` is set (the
    /// `queryToken` security scheme, not a parameter); never sent by
    /// tollgate-admin.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", param(ignore), schema(ignore))]
    pub token: Option<String>,
}

/// Query of `GET /v1/users`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserListQuery {
    /// Users before this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_before: Option<String>,
    /// 1 to 100, default 25.
    #[serde(default, deserialize_with = "query::int::<_, _, 1, 100>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<u32>,
    /// Skip this many, from the start or from the cursor.
    #[serde(default, deserialize_with = "query::int::<_, _, 0, 4294967295>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub offset: Option<u32>,
    /// Users after this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_after: Option<String>,
    /// The team; required with the admin token, the caller's own otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The credential, when `admin_api.allow_query_token` is set (the
    /// `queryToken` security scheme, not a parameter); never sent by
    /// tollgate-admin.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", param(ignore), schema(ignore))]
    pub token: Option<String>,
}

// ---- teams ----

/// A team (seed 000).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// RFC 3339.
    pub created_at: String,
    /// Identifier.
    pub id: String,
    /// What the tier allows (the daemon's `[tiers.*]` in force).
    pub limits: TeamLimits,
    /// Display name.
    pub name: String,
    /// `Free`, `Start`, `Master` or `Pro`.
    pub tier: String,
    /// RFC 3339.
    pub updated_at: String,
    /// What the team uses now, against `limits`.
    pub usage: TeamUsage,
}

/// A tier's limits; `null` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TeamLimits {
    /// The documents quota.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub documents: Option<u64>,
    /// Days the audit log is kept.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub log_retention_days: Option<u64>,
    /// Users in the team.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub members: Option<u64>,
    /// Verifications per minute for the whole team (socket, `/v1/verify`,
    /// `/auth`; admin calls and logins do not count).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub requests_per_minute: Option<u64>,
}

/// What a team uses now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TeamUsage {
    /// Documents of the quota in use (consumed by verifications that name
    /// the `documents` quota or by the socket's QuotaConsume, given back by
    /// a release).
    pub documents: u64,
    /// Users of the team (deleted ones not counted).
    pub members: u64,
    /// Verifications counted in the current calendar minute (UTC); `null`
    /// when the tier has no per-minute limit (then nothing is counted). In
    /// cluster mode, the requests the nodes took of the cluster's minute
    /// (a few of them may be held by a node unspent).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub requests_this_minute: Option<u64>,
}

/// `POST /v1/teams/{id}/documents/release` body: give back documents of the
/// team's quota, as the socket's QuotaRelease does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DocumentsRelease {
    /// Documents to give back, 1 to 4294967295; the use never goes below zero.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub amount: u32,
}

/// `POST /v1/teams/{id}/documents/release` answer (the socket's QuotaResult).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentsUsage {
    /// The tier's documents quota; `null` when unlimited.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub limit: Option<u64>,
    /// Documents in use after the release.
    pub used: u64,
}

/// `GET /v1/teams` answer: every team for the admin token, the caller's own
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamList {
    /// Teams in `data`.
    pub count: u64,
    /// The teams, in id order.
    pub data: Vec<Team>,
    /// The next page, as a path with query (`null` on the last page).
    #[serde(default, rename = "nextUrl")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_url: Option<String>,
    /// The previous page, as a path with query (`null` on the first).
    #[serde(default, rename = "previousUrl")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub previous_url: Option<String>,
    /// Teams the caller sees.
    pub total: u64,
}

/// `POST /v1/teams` body (admin token only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Display name.
    pub name: String,
    /// `Free` (the default), `Start`, `Master` or `Pro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// `PATCH /v1/teams/{id}` body (admin token only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TeamUpdate {
    /// Lower the tier even below what the team holds (members, documents);
    /// without it such a change is refused (409 `tier_exceeded`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The new tier.
    pub tier: String,
}

// ---- users ----

/// A user of a team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// RFC 3339.
    pub created_at: String,
    /// Identifier.
    pub id: String,
    /// `Administrator`, `Manager`, `Author` or `Reader`.
    pub role: String,
    /// `Pending`, `Enabled`, `Disabled`, `Blocked` or `Deleted`.
    pub status: String,
    /// Owning team.
    pub team_id: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Login name.
    pub username: String,
}

/// `GET /v1/users` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    /// Users in `data`.
    pub count: u64,
    /// The users, in id order.
    pub data: Vec<User>,
    /// The next page, as a path with query (`null` on the last page).
    #[serde(default, rename = "nextUrl")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_url: Option<String>,
    /// The previous page, as a path with query (`null` on the first).
    #[serde(default, rename = "previousUrl")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub previous_url: Option<String>,
    /// Users in the team.
    pub total: u64,
}

/// `POST /v1/users` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    /// Password (at least 8 characters; hashed with argon2id by the daemon).
    pub password: String,
    /// `Administrator`, `Manager`, `Author` or `Reader`.
    pub role: String,
    /// `Pending`, `Enabled` (the default), `Disabled` or `Blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Required with the admin token; the caller's own team otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Login name, unique across the daemon.
    pub username: String,
}

/// `PATCH /v1/users/{id}` body; absent fields are left unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// New password (on their own account, the only change a user may make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// New role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New status (not `Deleted`: delete the user instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

// ---- API keys (seeds 001, 002) ----

/// An API key: seed 002's fields, and seed 001's `companyId`, `status`,
/// `whitelistedIPs` and `deletedAt`; `key` (the secret) only in the answer to
/// `POST /v1/keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Owning team (seed 001's name for `teamId`).
    pub company_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Always `null`: deleted keys are gone.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub deleted_at: Option<String>,
    /// Whether the key may be used at all (a disabled key verifies as `DISABLED`).
    pub enabled: bool,
    /// RFC 3339, or `null` for never.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub expires_at: Option<String>,
    /// Identifier.
    pub id: String,
    /// The secret: present once, in the answer to `POST /v1/keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When `remaining` was last refilled (RFC 3339), or `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_refill_at: Option<String>,
    /// When the key was last used (RFC 3339), or `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_request: Option<String>,
    /// Free-form JSON object.
    pub metadata: Value,
    /// Display name.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub name: Option<String>,
    /// What the key may do, within its owner's role.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Vec<String>>))]
    pub permissions: Permissions,
    /// The secret's prefix (before `_`).
    pub prefix: String,
    /// Whether the per-key rate limit applies.
    pub rate_limit_enabled: bool,
    /// Requests per window.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rate_limit_max: Option<u32>,
    /// Window in milliseconds.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rate_limit_time_window: Option<u64>,
    /// Uses restored every `refillInterval`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub refill_amount: Option<u32>,
    /// Milliseconds between refills.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub refill_interval: Option<u64>,
    /// Uses left; `null` = unlimited.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub remaining: Option<u32>,
    /// Verifications allowed so far.
    pub request_count: u64,
    /// The first characters of the secret, to recognise it.
    pub start: String,
    /// `active`, or `inactive` (disabled or expired).
    pub status: String,
    /// Owning team.
    pub team_id: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Owning user; the key acts with this user's role.
    pub user_id: String,
    /// Addresses and CIDR blocks allowed to use the key; empty = any.
    #[serde(rename = "whitelistedIPs")]
    pub whitelisted_ips: Vec<String>,
}

/// `GET /v1/keys` answer: seed 001's envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyList {
    /// Keys in `data`.
    pub count: u64,
    /// The keys, in id order.
    pub data: Vec<ApiKey>,
    /// The next page, as a path with query (`null` on the last page).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_url: Option<String>,
    /// The previous page, as a path with query (`null` on the first).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub previous_url: Option<String>,
    /// The HTTP status, 200 (seed 001 repeats it in the body).
    pub status: u16,
    /// Keys matching the status filter.
    pub total: u64,
}

/// Query of `GET /v1/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyListQuery {
    /// Keys before this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_before: Option<String>,
    /// 1 to 100, default 25.
    #[serde(default, deserialize_with = "query::int::<_, _, 1, 100>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<u32>,
    /// Skip this many, from the start or from the cursor.
    #[serde(default, deserialize_with = "query::int::<_, _, 0, 4294967295>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub offset: Option<u32>,
    /// Keys after this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_after: Option<String>,
    /// `active` (the default) or `inactive`.
    #[serde(default, deserialize_with = "query::key_status", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(pattern = "^(active|inactive)$"))]
    pub status: Option<String>,
    /// The team; required with the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The credential, when `admin_api.allow_query_token` is set (the
    /// `queryToken` security scheme, not a parameter); never sent by
    /// tollgate-admin.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", param(ignore), schema(ignore))]
    pub token: Option<String>,
}

/// `POST /v1/keys` body (seed 002's create fields and seed 001's IP list).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewKey {
    /// Lifetime in seconds; never expires when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// A JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the key may do (within the owner's role and the caller's grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, Vec<String>>>))]
    pub permissions: Option<Permissions>,
    /// The secret's prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Whether a rate limit applies (needs `rateLimitMax` and `rateLimitTimeWindow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_enabled: Option<bool>,
    /// Requests per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_max: Option<u32>,
    /// Window in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_time_window: Option<u64>,
    /// Uses restored every `refillInterval` (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_amount: Option<u32>,
    /// Milliseconds between refills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_interval: Option<u64>,
    /// Uses allowed; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// Owner; defaults to the calling user (required with the admin token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Allowed addresses and CIDR blocks; any when absent or empty.
    #[serde(default, rename = "whitelistedIPs", skip_serializing_if = "Option::is_none")]
    pub whitelisted_ips: Option<Vec<String>>,
}

/// Most entries one `POST /v1/keys/import` takes.
pub const MAX_IMPORT_KEYS: usize = 10_000;

/// Largest body `POST /v1/keys/import` reads (16 MiB; other routes take
/// 64 KiB): 10,000 entries of up to 1.6 KiB each. A larger body is a 413;
/// tollgate-admin splits its batches to stay under it.
pub const MAX_IMPORT_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One entry of `POST /v1/keys/import`: the fields of `POST /v1/keys`
/// ([`NewKey`]) and, to adopt a key issued elsewhere so that it keeps its
/// secret, `hash` (and a display `start`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportKey {
    /// Lifetime in seconds; never expires when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// The SHA-256 of the existing secret, 64 hex digits: the key is adopted
    /// and verifies with that secret, whatever its format. Absent: tollgate
    /// generates a secret and returns it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-fA-F]{64}$"))]
    pub hash: Option<String>,
    /// A JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the key may do (within the owner's role and the caller's grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, Vec<String>>>))]
    pub permissions: Option<Permissions>,
    /// The secret's prefix. For an adopted key, what precedes its last `_`
    /// (taken from `start` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Whether a rate limit applies (needs `rateLimitMax` and `rateLimitTimeWindow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_enabled: Option<bool>,
    /// Requests per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_max: Option<u32>,
    /// Window in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_time_window: Option<u64>,
    /// Uses restored every `refillInterval` (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_amount: Option<u32>,
    /// Milliseconds between refills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_interval: Option<u64>,
    /// Uses allowed; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// With `hash`: the first characters of the existing secret, shown in
    /// listings (at most 40, no control characters; never the whole secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 40))]
    pub start: Option<String>,
    /// Owner; defaults to the calling user (required with the admin token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Allowed addresses and CIDR blocks; any when absent or empty.
    #[serde(default, rename = "whitelistedIPs", skip_serializing_if = "Option::is_none")]
    pub whitelisted_ips: Option<Vec<String>>,
}

/// `POST /v1/keys/import` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyImport {
    /// 1 to 10,000 entries, imported in one atomic, durable write: all of
    /// them or, if one is refused, none.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
    pub keys: Vec<ImportKey>,
}

/// A key of the answer to `POST /v1/keys/import`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportedKey {
    /// Identifier.
    pub id: String,
    /// The generated secret (shown this once); absent for an adopted key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub start: String,
    /// Owning user.
    pub user_id: String,
}

/// `POST /v1/keys/import` answer: the keys in the order of the entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyImportResult {
    /// Keys imported.
    pub count: u64,
    /// The keys, entry by entry.
    pub keys: Vec<ImportedKey>,
    /// The team of the keys when they are all of one team, else `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub team_id: Option<String>,
}

/// `PATCH /v1/keys/{id}` body. The outer `Option` is "send the field or not";
/// an inner `None` sends `null`, which clears the setting (e.g. no expiry).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyUpdate {
    /// Enable or disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// New lifetime from now, in seconds; `null` = never expires.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub expires_in: Option<Option<u64>>,
    /// Replaces the metadata (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Display name; `null` removes it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    /// Replaces the permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, Vec<String>>>))]
    pub permissions: Option<Permissions>,
    /// `false` turns the rate limit off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_enabled: Option<bool>,
    /// Requests per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_max: Option<u32>,
    /// Window in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_time_window: Option<u64>,
    /// Refill amount; `null` with `refillInterval` `null` = no refill.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub refill_amount: Option<Option<u32>>,
    /// Refill interval in milliseconds.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub refill_interval: Option<Option<u64>>,
    /// Uses left; `null` = unlimited.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub remaining: Option<Option<u32>>,
    /// Replaces the IP allowlist (empty = any address).
    #[serde(default, rename = "whitelistedIPs", skip_serializing_if = "Option::is_none")]
    pub whitelisted_ips: Option<Vec<String>>,
}

// ---- access tokens (seed 004) ----

/// A personal access token (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or `null` for never.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub expires_at: Option<String>,
    /// UUID.
    pub id: String,
    /// RFC 3339, or `null` if never used.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_used_at: Option<String>,
    /// 1 to 255 characters.
    pub name: String,
    /// RFC 3339, or `null` if live.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub revoked_at: Option<String>,
    /// The first characters of the secret.
    pub token_prefix: String,
    /// e.g. `personal`, `session`.
    pub token_type: String,
}

/// `GET /v1/access-tokens` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenPage {
    /// The page, oldest first.
    pub items: Vec<AccessToken>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/access-tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenListQuery {
    /// From a previous `nextCursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Include revoked tokens.
    #[serde(default, deserialize_with = "query::flag", skip_serializing_if = "std::ops::Not::not")]
    pub include_revoked: bool,
    /// 1 to 200, default 50.
    #[serde(default, deserialize_with = "query::int::<_, _, 1, 200>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 200))]
    pub limit: Option<u32>,
    /// Only tokens of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The credential, when `admin_api.allow_query_token` is set (the
    /// `queryToken` security scheme, not a parameter); never sent by
    /// tollgate-admin.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", param(ignore), schema(ignore))]
    pub token: Option<String>,
}

/// Query of `DELETE /v1/access-tokens` (`excludeCurrent` is accepted too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RevokeAllQuery {
    /// Keep the access token making the call (default true; `true`/`1` or
    /// `false`/`0`); also accepted as `excludeCurrent`.
    #[serde(default = "yes", alias = "excludeCurrent", deserialize_with = "query::flag")]
    pub exclude_current: bool,
    /// The credential, when `admin_api.allow_query_token` is set (the
    /// `queryToken` security scheme, not a parameter); never sent by
    /// tollgate-admin.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", param(ignore), schema(ignore))]
    pub token: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /v1/access-tokens` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewToken {
    /// Lifetime in days; never expires when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    /// 1 to 255 characters.
    pub name: String,
    /// Defaults to `personal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// `POST /v1/access-tokens` answer: the secret, shown once, and the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    /// The secret.
    pub plaintext: String,
    /// The token.
    pub token: AccessToken,
}

/// `DELETE /v1/access-tokens` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RevokedCount {
    /// Tokens revoked.
    pub revoked_count: u64,
}

// ---- audit log ----

/// One audit event of `GET /v1/logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// An admin operation (`CreateKey` …) or `verify` / `admin` for denials.
    pub action: String,
    /// Who: `admin-token`, `user:<id>/<kind>:<id>`, `api_key:<id>` … (ids only).
    pub actor: String,
    /// RFC 3339.
    pub at: String,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// HTTP status of an admin call, or a verification's deny code.
    pub detail: String,
    /// Position in the team's log; also a cursor.
    pub id: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The HTTP request id (`X-Request-Id`) of an admin call or login; `null`
    /// for verifications, samples and events stored before request ids were.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub request_id: Option<String>,
    /// The object acted on, or empty.
    pub target: String,
    /// The team, or `_global` for events that belong to none.
    pub team_id: String,
}

/// `GET /v1/logs` answer: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    /// The page.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for older events; `null` on the last page.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/logs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogQuery {
    /// Only this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// From a previous `nextCursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1 to 200 (default 50).
    #[serde(default, deserialize_with = "query::int::<_, _, 1, 200>", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 200))]
    pub limit: Option<u32>,
    /// Only this outcome: `success`, `failure` or `denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Oldest, milliseconds since the epoch (at most 18446744073709551).
    #[serde(
        default,
        deserialize_with = "query::int::<_, _, 0, 18446744073709551>",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub since: Option<u64>,
    /// The team; required with the admin token (`_global` for events of no team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Newest, milliseconds since the epoch (at most 18446744073709551).
    #[serde(
        default,
        deserialize_with = "query::int::<_, _, 0, 18446744073709551>",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    pub until: Option<u64>,
    /// The credential, when `admin_api.allow_query_token` is set (the
    /// `queryToken` security scheme, not a parameter); never sent by
    /// tollgate-admin.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", param(ignore), schema(ignore))]
    pub token: Option<String>,
}

// ---- verification ----

/// `POST /v1/verify` body. Needs no credential of the caller's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Uses to spend (default 1).
    #[serde(default = "one")]
    pub cost: u32,
    /// API key, access token or JWT.
    pub credential: String,
    /// The end client's address, for IP allowlists (defaults to the caller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "ip"))]
    pub ip: Option<IpAddr>,
    /// Required permissions, all of them.
    #[serde(default, skip_serializing_if = "Permissions::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Vec<String>>))]
    pub permissions: Permissions,
    /// A team quota to consume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl VerifyRequest {
    /// A request for `credential` alone: cost 1, no permission, no quota.
    pub fn new(credential: impl Into<String>) -> VerifyRequest {
        VerifyRequest { cost: 1, credential: credential.into(), ip: None, permissions: Permissions::new(), quota: None }
    }
}

fn one() -> u32 {
    1
}

/// A team quota to consume, e.g. `documents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Amount (default 1).
    #[serde(default = "one")]
    pub amount: u32,
    /// Quota name.
    pub name: String,
}

/// A rate limiter's state in a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Verdict {
    /// `valid: true`.
    Allow(Allow),
    /// `valid: false`.
    Deny(Deny),
}

impl Verdict {
    /// Whether the credential was accepted.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// What kind of credential was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An API key (seeds 001, 002).
    ApiKey,
    /// A personal access token (seed 004).
    AccessToken,
    /// A JWT issued by `POST /v1/auth/token`.
    Jwt,
}

impl CredentialKind {
    /// The JSON name: `api_key`, `access_token` or `jwt`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::AccessToken => "access_token",
            CredentialKind::Jwt => "jwt",
        }
    }
}

/// An accepted credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Allow {
    /// Key id, token id or JWT `jti`.
    pub credential_id: String,
    /// What was verified.
    pub kind: CredentialKind,
    /// What the credential may do.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Vec<String>>))]
    pub permissions: Permissions,
    /// The tightest rate limit that applied, or `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rate_limit: Option<RateLimitInfo>,
    /// Uses left, for a key with a limit; else `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub remaining: Option<u32>,
    /// The user's role, as a one-element list.
    pub roles: Vec<String>,
    /// The user the credential acts as.
    pub subject: String,
    /// The user's team.
    pub team: String,
    /// Always `true`.
    #[cfg_attr(feature = "openapi", schema(value_type = bool))]
    pub valid: True,
}

/// A refused credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Deny {
    /// Machine code: `NOT_FOUND`, `EXPIRED`, `RATE_LIMITED`, ...
    pub code: String,
    /// The limiter's state, for rate limits; else `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rate_limit: Option<RateLimitInfo>,
    /// Human explanation.
    pub reason: String,
    /// When retrying can succeed, for limits; else `null`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub retry_after_ms: Option<u64>,
    /// Always `false`.
    #[cfg_attr(feature = "openapi", schema(value_type = bool))]
    pub valid: False,
}

/// A `bool` that is always `true` and only decodes from `true`, so that
/// [`Verdict`] picks the right shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct True;

/// A `bool` that is always `false` and only decodes from `false`.
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
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
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

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    /// `value` serialized directly is the same bytes as through
    /// `serde_json::Value` (sorted objects, as the daemon's `json!` answers
    /// were), and decodes back to itself.
    fn wire<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> String {
        let direct = serde_json::to_string(value).unwrap();
        let through_value = serde_json::to_value(value).unwrap().to_string();
        assert_eq!(direct, through_value, "{}: fields not in JSON-name order", std::any::type_name::<T>());
        assert_eq!(&serde_json::from_str::<T>(&direct).unwrap(), value, "{direct}");
        direct
    }

    fn perms() -> Permissions {
        Permissions::from([("docs".to_owned(), vec!["read".to_owned(), "create".to_owned()])])
    }

    fn key() -> ApiKey {
        ApiKey {
            company_id: "t".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            deleted_at: None,
            enabled: true,
            expires_at: Some("2027-01-01T00:00:00Z".into()),
            id: "k".into(),
            key: Some("tg_secret".into()),
            last_refill_at: None,
            last_request: None,
            metadata: json!({"z": 1, "a": [true]}),
            name: Some("ci".into()),
            permissions: perms(),
            prefix: "tg".into(),
            rate_limit_enabled: true,
            rate_limit_max: Some(5),
            rate_limit_time_window: Some(1000),
            refill_amount: Some(10),
            refill_interval: Some(60_000),
            remaining: Some(3),
            request_count: 7,
            start: "tg_sec".into(),
            status: "active".into(),
            team_id: "t".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            user_id: "u".into(),
            whitelisted_ips: vec!["10.0.0.0/8".into()],
        }
    }

    fn imported() -> KeyImportResult {
        let generated =
            ImportedKey { id: "k".into(), key: Some("tg_s".into()), start: "tg_s".into(), user_id: "u".into() };
        let adopted = ImportedKey { key: None, start: "sk_live".into(), ..generated.clone() };
        KeyImportResult { count: 2, keys: vec![generated, adopted], team_id: Some("t".into()) }
    }

    fn token() -> AccessToken {
        AccessToken {
            created_at: "c".into(),
            expires_at: None,
            id: "i".into(),
            last_used_at: Some("l".into()),
            name: "n".into(),
            revoked_at: None,
            token_prefix: "p".into(),
            token_type: "personal".into(),
        }
    }

    fn team() -> Team {
        Team {
            created_at: "c".into(),
            id: "t".into(),
            name: "n".into(),
            tier: "Pro".into(),
            updated_at: "u".into(),
            limits: TeamLimits {
                requests_per_minute: Some(100),
                members: None,
                documents: Some(5000),
                log_retention_days: None,
            },
            usage: TeamUsage { members: 1, documents: 0, requests_this_minute: Some(0) },
        }
    }

    fn user() -> User {
        User {
            created_at: "c".into(),
            id: "u".into(),
            role: "Reader".into(),
            status: "Enabled".into(),
            team_id: "t".into(),
            updated_at: "u".into(),
            username: "alice".into(),
        }
    }

    fn event() -> AuditEvent {
        AuditEvent {
            action: "CreateKey".into(),
            actor: "admin-token".into(),
            at: "a".into(),
            at_ms: 1,
            detail: "201".into(),
            id: "0/1".into(),
            outcome: "success".into(),
            request_id: None,
            target: "k".into(),
            team_id: "t".into(),
        }
    }

    fn allow() -> Allow {
        Allow {
            credential_id: "k".into(),
            kind: CredentialKind::ApiKey,
            permissions: perms(),
            rate_limit: Some(RateLimitInfo { limit: 2, remaining: 1, reset_ms: 30000 }),
            remaining: None,
            roles: vec!["Reader".into()],
            subject: "u".into(),
            team: "t".into(),
            valid: True,
        }
    }

    fn deny() -> Deny {
        Deny {
            code: "NOT_FOUND".into(),
            rate_limit: None,
            reason: "unknown credential".into(),
            retry_after_ms: None,
            valid: False,
        }
    }

    #[test]
    fn answers_serialize_in_json_name_order() {
        let (team, user) = (team(), user());
        wire(&team);
        wire(&TeamList { count: 1, data: vec![team], next_url: Some("/n".into()), previous_url: None, total: 2 });
        wire(&user);
        wire(&UserList { count: 1, data: vec![user], next_url: None, previous_url: Some("/p".into()), total: 1 });
        assert!(wire(&key()).contains(r#""id":"k","key":"tg_secret","lastRefillAt":null"#));
        let mut listed = key();
        listed.key = None;
        wire(&KeyList { count: 1, data: vec![listed], next_url: None, previous_url: None, status: 200, total: 1 });
        wire(&imported());
        wire(&token());
        wire(&TokenPage { items: vec![token()], next_cursor: Some("c".into()) });
        wire(&CreatedToken { plaintext: "s".into(), token: token() });
        wire(&RevokedCount { revoked_count: 2 });
        wire(&DocumentsUsage { limit: Some(250), used: 3 });
        wire(&LogPage { items: vec![event()], next_cursor: None });
        wire(&LoginResponse { token: "j".into() });
        wire(&ReloadResponse {
            report: ReloadReport { applied: vec!["a".into()], file: "f".into(), needs_restart: vec![] },
            status: "reloaded".into(),
        });
        wire(&Health { status: "ok".into() });
        wire(&Readiness {
            checks: ReadinessChecks {
                cluster: None,
                index: "loaded".into(),
                listeners: "bound".into(),
                store: "ok".into(),
            },
            status: "ready".into(),
        });
        wire(&ErrorResponse::new("not_found", "key not found"));
        let detail =
            ValidationDetail { loc: vec!["body".into(), "role".into()], msg: "bad".into(), kind: "enum".into() };
        let v = ValidationErrorResponse {
            detail: vec![detail],
            error: ApiError { code: "validation_failed".into(), message: "role: bad".into() },
        };
        assert_eq!(
            wire(&v),
            r#"{"detail":[{"loc":["body","role"],"msg":"bad","type":"enum"}],"error":{"code":"validation_failed","message":"role: bad"}}"#
        );
        wire(&ErrorBody::from(v));
    }

    #[test]
    fn requests_serialize_in_json_name_order() {
        wire(&NewTeam { name: "n".into(), tier: Some("Pro".into()) });
        wire(&TeamUpdate { force: true, tier: "Free".into() });
        wire(&NewUser {
            password: "p".into(),
            role: "Reader".into(),
            status: Some("Enabled".into()),
            team_id: Some("t".into()),
            username: "u".into(),
        });
        wire(&UserUpdate { password: Some("p".into()), role: Some("r".into()), status: Some("s".into()) });
        wire(&NewKey {
            expires_in: Some(1),
            metadata: Some(json!({})),
            name: Some("n".into()),
            permissions: Some(perms()),
            prefix: Some("p".into()),
            rate_limit_enabled: Some(true),
            rate_limit_max: Some(1),
            rate_limit_time_window: Some(1),
            refill_amount: Some(1),
            refill_interval: Some(1),
            remaining: Some(1),
            user_id: Some("u".into()),
            whitelisted_ips: Some(vec![]),
        });
        wire(&KeyImport {
            keys: vec![ImportKey {
                expires_in: Some(1),
                hash: Some("ab".repeat(32)),
                metadata: Some(json!({})),
                name: Some("n".into()),
                permissions: Some(perms()),
                prefix: Some("p".into()),
                rate_limit_enabled: Some(true),
                rate_limit_max: Some(1),
                rate_limit_time_window: Some(1),
                refill_amount: Some(1),
                refill_interval: Some(1),
                remaining: Some(1),
                start: Some("p_x".into()),
                user_id: Some("u".into()),
                whitelisted_ips: Some(vec![]),
            }],
        });
        wire(&KeyUpdate {
            enabled: Some(true),
            expires_in: Some(None),
            metadata: Some(json!({})),
            name: Some(Some("n".into())),
            permissions: Some(perms()),
            rate_limit_enabled: Some(false),
            rate_limit_max: Some(1),
            rate_limit_time_window: Some(1),
            refill_amount: Some(None),
            refill_interval: Some(Some(1)),
            remaining: Some(None),
            whitelisted_ips: Some(vec![]),
        });
        wire(&NewToken { expires_in_days: Some(1), name: "n".into(), token_type: Some("personal".into()) });
        wire(&VerifyRequest {
            cost: 2,
            credential: "c".into(),
            ip: Some("::1".parse().unwrap()),
            permissions: perms(),
            quota: Some(Quota { amount: 1, name: "documents".into() }),
        });
        wire(&KeyListQuery {
            ending_before: Some("e".into()),
            limit: Some(1),
            offset: Some(1),
            starting_after: Some("s".into()),
            status: Some("active".into()),
            team_id: Some("t".into()),
            token: None,
        });
        wire(&LogQuery {
            action: Some("a".into()),
            cursor: Some("c".into()),
            limit: Some(1),
            outcome: Some("o".into()),
            since: Some(1),
            team_id: Some("t".into()),
            until: Some(2),
            token: None,
        });
        wire(&TokenListQuery {
            cursor: Some("c".into()),
            include_revoked: true,
            limit: Some(1),
            token_type: Some("t".into()),
            token: None,
        });
        wire(&PageQuery {
            ending_before: Some("e".into()),
            limit: Some(1),
            offset: Some(2),
            starting_after: Some("s".into()),
            token: None,
        });
        wire(&UserListQuery {
            ending_before: None,
            limit: Some(1),
            offset: None,
            starting_after: Some("s".into()),
            team_id: Some("t".into()),
            token: None,
        });
        wire(&RevokeAllQuery { exclude_current: false, token: None });
    }

    /// The query types check what the daemon's handlers rely on: ranges,
    /// flags, the key status, unknown parameters; `token` is accepted and
    /// never sent.
    #[test]
    fn queries_check_their_values() {
        let q: PageQuery = serde_json::from_value(json!({"limit": "100", "offset": 0, "token": "t"})).unwrap();
        assert_eq!((q.limit, q.offset, q.token.as_deref()), (Some(100), Some(0), Some("t")));
        assert!(!serde_json::to_string(&q).unwrap().contains("token"));
        for bad in [json!({"limit": "0"}), json!({"limit": "101"}), json!({"limit": "x"}), json!({"limits": 1})] {
            let e = serde_json::from_value::<PageQuery>(bad.clone()).unwrap_err().to_string();
            assert!(
                bad.get("limits").is_some() || query::split(&e).1.starts_with("must be an integer from 1 to 100"),
                "{e}"
            );
        }
        let e = serde_json::from_value::<TokenListQuery>(json!({"includeRevoked": "yes"})).unwrap_err().to_string();
        assert_eq!(query::split(&e).0, "bool_parsing");
        let q: TokenListQuery = serde_json::from_value(json!({"includeRevoked": "TRUE"})).unwrap();
        assert!(q.include_revoked);
        let e = serde_json::from_value::<KeyListQuery>(json!({"status": "gone"})).unwrap_err().to_string();
        assert_eq!(query::split(&e).0, "enum");
        let q: RevokeAllQuery = serde_json::from_value(json!({"excludeCurrent": "0"})).unwrap();
        assert!(!q.exclude_current);
        let q: LogQuery = serde_json::from_value(json!({"since": "18446744073709551"})).unwrap();
        assert_eq!(q.since, Some(18_446_744_073_709_551));
        assert!(serde_json::from_value::<LogQuery>(json!({"until": "18446744073709552"})).is_err());
    }

    #[test]
    fn verdicts_decode_by_valid() {
        let allow = Verdict::Allow(allow());
        assert_eq!(
            wire(&allow),
            r#"{"credentialId":"k","kind":"api_key","permissions":{"docs":["read","create"]},"rateLimit":{"limit":2,"remaining":1,"resetMs":30000},"remaining":null,"roles":["Reader"],"subject":"u","team":"t","valid":true}"#
        );
        assert!(allow.is_allowed());
        let deny = Verdict::Deny(deny());
        assert_eq!(
            wire(&deny),
            r#"{"code":"NOT_FOUND","rateLimit":null,"reason":"unknown credential","retryAfterMs":null,"valid":false}"#
        );
        assert!(!deny.is_allowed());
        // `valid` decides: an allow's fields with `valid: false` is no verdict.
        let mut wrong: Value = serde_json::to_value(&allow).unwrap();
        wrong["valid"] = json!(false);
        assert!(serde_json::from_value::<Verdict>(wrong).is_err());
    }

    #[test]
    fn key_update_tells_absent_from_null() {
        let up = KeyUpdate { expires_in: Some(None), enabled: Some(false), ..KeyUpdate::default() };
        assert_eq!(serde_json::to_value(&up).unwrap(), json!({"expiresIn": null, "enabled": false}));
        let back: KeyUpdate = serde_json::from_value(json!({"expiresIn": null, "remaining": 3})).unwrap();
        assert_eq!((back.expires_in, back.remaining, back.name), (Some(None), Some(Some(3)), None));
    }

    #[test]
    fn requests_refuse_unknown_fields_and_default_like_the_daemon() {
        let r: VerifyRequest = serde_json::from_value(json!({"credential": "c", "quota": {"name": "d"}})).unwrap();
        assert_eq!((r.cost, r.quota.map(|q| q.amount)), (1, Some(1)));
        assert!(serde_json::from_value::<VerifyRequest>(json!({"credential": "c", "costs": 2})).is_err());
        assert!(serde_json::from_value::<VerifyRequest>(json!({"credential": "c", "ip": "10.0.0.300"})).is_err());
        assert!(serde_json::from_value::<NewTeam>(json!({"name": "n", "plan": "Pro"})).is_err());
        assert!(serde_json::from_value::<RevokeAllQuery>(json!({})).unwrap().exclude_current);
    }

    #[test]
    fn error_summary_names_fields() {
        let b: ErrorBody = serde_json::from_value(json!({
            "detail": [{"loc": ["body", "role"], "msg": "must be Administrator", "type": "enum"}],
            "error": {"code": "validation_failed", "message": "role: must be Administrator"}
        }))
        .unwrap();
        assert_eq!(b.summary(), "validation_failed: role: must be Administrator");
        let b: ErrorBody = serde_json::from_value(json!({
            "detail": [{"loc": ["query", "limit"], "msg": "too big", "type": "value_error"},
                       {"loc": ["query", "offset"], "msg": "negative", "type": "value_error"}],
        }))
        .unwrap();
        assert_eq!(b.summary(), "query.limit: too big (value_error); query.offset: negative (value_error)");
        assert_eq!(
            ErrorBody::from(ErrorResponse::new("not_found", "key not found")).summary(),
            "not_found: key not found"
        );
    }

    /// An answer's schema has exactly the fields the answer sends, all of them
    /// required but those in `optional` (skipped when unset).
    #[cfg(feature = "openapi")]
    fn schema_matches<T: utoipa::ToSchema + Serialize>(sample: &T, optional: &[&str]) {
        let name = std::any::type_name::<T>();
        let schema = serde_json::to_value(T::schema()).unwrap();
        let sent: std::collections::BTreeSet<String> =
            serde_json::to_value(sample).unwrap().as_object().unwrap().keys().cloned().collect();
        let props: std::collections::BTreeSet<String> =
            schema["properties"].as_object().unwrap_or_else(|| panic!("{name}: {schema}")).keys().cloned().collect();
        assert_eq!(props, sent, "{name}: the schema's properties are not the fields sent");
        let required: std::collections::BTreeSet<String> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        let expected = sent.iter().filter(|f| !optional.contains(&f.as_str())).cloned().collect();
        assert_eq!(required, expected, "{name}: required fields");
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn schemas_describe_the_answers() {
        use utoipa::openapi::{ComponentsBuilder, OpenApiBuilder};

        schema_matches(&team(), &[]);
        schema_matches(&team().limits, &[]);
        schema_matches(&team().usage, &[]);
        schema_matches(&DocumentsUsage { limit: None, used: 0 }, &[]);
        schema_matches(&TeamList { count: 0, data: vec![], next_url: None, previous_url: None, total: 0 }, &[]);
        schema_matches(&user(), &[]);
        schema_matches(&UserList { count: 0, data: vec![], next_url: None, previous_url: None, total: 0 }, &[]);
        schema_matches(&key(), &["key"]);
        schema_matches(
            &KeyList { count: 0, data: vec![], next_url: None, previous_url: None, status: 200, total: 0 },
            &[],
        );
        schema_matches(&imported(), &[]);
        schema_matches(&imported().keys[0], &["key"]);
        schema_matches(&token(), &[]);
        schema_matches(&TokenPage { items: vec![], next_cursor: None }, &[]);
        schema_matches(&CreatedToken { plaintext: "s".into(), token: token() }, &[]);
        schema_matches(&event(), &[]);
        schema_matches(&LogPage { items: vec![], next_cursor: None }, &[]);
        schema_matches(&allow(), &[]);
        schema_matches(&deny(), &[]);
        schema_matches(&ErrorResponse::new("c", "m"), &[]);

        // Every type composes into one document whose references all resolve.
        // `schema_from` adds a type alone; `schemas` adds the types it refers to.
        fn add<T: utoipa::ToSchema>(b: ComponentsBuilder) -> ComponentsBuilder {
            let mut nested = Vec::new();
            T::schemas(&mut nested);
            b.schema_from::<T>().schemas_from_iter(nested)
        }
        let mut b = ComponentsBuilder::new();
        b = add::<ErrorResponse>(b);
        b = add::<ValidationErrorResponse>(b);
        b = add::<ErrorBody>(b);
        b = add::<Health>(b);
        b = add::<Readiness>(b);
        b = add::<LoginResponse>(b);
        b = add::<ReloadResponse>(b);
        b = add::<PageQuery>(b);
        b = add::<UserListQuery>(b);
        b = add::<Team>(b);
        b = add::<TeamList>(b);
        b = add::<NewTeam>(b);
        b = add::<TeamUpdate>(b);
        b = add::<User>(b);
        b = add::<UserList>(b);
        b = add::<NewUser>(b);
        b = add::<UserUpdate>(b);
        b = add::<ApiKey>(b);
        b = add::<KeyList>(b);
        b = add::<KeyListQuery>(b);
        b = add::<NewKey>(b);
        b = add::<KeyUpdate>(b);
        b = add::<KeyImport>(b);
        b = add::<KeyImportResult>(b);
        b = add::<AccessToken>(b);
        b = add::<TokenPage>(b);
        b = add::<TokenListQuery>(b);
        b = add::<RevokeAllQuery>(b);
        b = add::<NewToken>(b);
        b = add::<CreatedToken>(b);
        b = add::<RevokedCount>(b);
        b = add::<AuditEvent>(b);
        b = add::<LogPage>(b);
        b = add::<LogQuery>(b);
        b = add::<VerifyRequest>(b);
        b = add::<Verdict>(b);
        let components = b.build();
        let doc = serde_json::to_value(OpenApiBuilder::new().components(Some(components)).build()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.iter().any(|r| r == "#/components/schemas/Allow"), "{all:?}");
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
    }
}
