//! The admin API's extractors and error answers: typed query strings
//! ([`Query`]), the path's `{id}` ([`Id`]), JSON object bodies read field by
//! field ([`Fields`]), and the shapes of 404, 422 (seed 004's `detail` with
//! field locations) and engine errors. Every rejection is the ready answer in
//! the API's error shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tollgate_api as api;

use crate::core::model::Permissions;
use crate::engine::{Cursor, EngineError};
use crate::http::{Body, error, json_response, read_json, read_json_within};

/// An answer; handlers return `Result<Resp, Resp>`, the error being the ready answer.
pub(crate) type Resp = Response;

// ---- the path ----

/// The `{id}` segment of the path, percent-decoded.
pub(crate) struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Resp;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Resp> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Id(id)),
            Err(e) => Err(error(StatusCode::BAD_REQUEST, "invalid_path", &e.body_text())),
        }
    }
}

// ---- query strings ----

/// A query string deserialized into `T` (`serde_urlencoded`; the field names
/// are the parameters'), one of [`api`]'s query types, which are the ones the
/// OpenAPI document describes. They deny unknown fields, and each has a
/// `token` field for `admin_api.allow_query_token`. A parameter that is
/// unknown, repeated or of the wrong form is a 422 naming it
/// (`["query", name]`); [`api::query`] gives the message and type.
pub(crate) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Resp;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Resp> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de).map(Query).map_err(|e| {
            let field = e.path().to_string();
            query_error(&field, &e.into_inner().to_string())
        })
    }
}

/// The 422 for a query string that did not deserialize: `field` is the
/// parameter serde was at, `error` serde's message.
fn query_error(field: &str, error: &str) -> Resp {
    // serde's own messages: "unknown field `x`, expected ...", "duplicate field `x`".
    let named = |prefix: &str| error.strip_prefix(prefix).and_then(|r| r.split('`').next()).map(str::to_owned);
    if let Some(name) = named("unknown field `") {
        return validation(&["query", &name], "unknown query parameter", "extra_forbidden");
    }
    if let Some(name) = named("duplicate field `") {
        return validation(&["query", &name], "given more than once", "value_error");
    }
    let (kind, msg) = api::query::split(error);
    validation(&["query", field], msg, kind)
}

/// A list route's page: `limit` (1 to 100, default 25), `offset` (from the
/// start or from the cursor), and at most one cursor, `startingAfter` or
/// `endingBefore` (an object id; empty is none).
pub(crate) fn paging<'a>(
    limit: Option<u32>,
    offset: Option<u32>,
    after: Option<&'a str>,
    before: Option<&'a str>,
) -> Result<(usize, usize, Cursor<'a>), Resp> {
    let limit = limit.map_or(25, |l| l as usize);
    let offset = offset.map_or(0, |o| o as usize);
    match (after.filter(|s| !s.is_empty()), before.filter(|s| !s.is_empty())) {
        (Some(_), Some(_)) => {
            Err(validation(&["query", "endingBefore"], "give startingAfter or endingBefore, not both", "value_error"))
        }
        (Some(a), None) => Ok((limit, offset, Cursor::After(a))),
        (None, Some(b)) => Ok((limit, offset, Cursor::Before(b))),
        (None, None) => Ok((limit, offset, Cursor::Start)),
    }
}

/// `nextUrl` and `previousUrl` of a page: `base` (a path with its query) and
/// the cursor after the page's last object, or before its first.
pub(crate) fn links<T>(
    base: &str,
    page: &crate::engine::Page<T>,
    id: impl Fn(&T) -> &str,
) -> (Option<String>, Option<String>) {
    let next = page.items.last().filter(|_| page.more_after).map(|l| format!("{base}&startingAfter={}", id(l)));
    let prev = page.items.first().filter(|_| page.more_before).map(|f| format!("{base}&endingBefore={}", id(f)));
    (next, prev)
}

// ---- errors ----

pub(crate) fn not_found(what: &str) -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", &format!("{what} not found"))
}

pub(crate) fn no_content() -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A 422 in seed 004's shape, with the usual `error` object beside it.
pub(crate) fn validation(loc: &[&str], msg: &str, kind: &str) -> Resp {
    let field = loc.last().copied().unwrap_or("");
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &api::ValidationErrorResponse {
            detail: vec![api::ValidationDetail {
                loc: loc.iter().map(|l| (*l).to_owned()).collect(),
                msg: msg.to_owned(),
                kind: kind.to_owned(),
            }],
            error: api::ApiError { code: "validation_failed".to_owned(), message: format!("{field}: {msg}") },
        },
    )
}

pub(crate) fn engine_error(e: EngineError) -> Resp {
    match e {
        EngineError::NotFound(what) => not_found(what),
        EngineError::Invalid { field, reason } => validation(&["body", field], &reason, "value_error"),
        EngineError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", &m),
        EngineError::LimitReached(m) => error(StatusCode::CONFLICT, "limit_reached", &m),
        EngineError::TierExceeded(m) => error(StatusCode::CONFLICT, "tier_exceeded", &m),
        EngineError::BadCredentials => error(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid credentials"),
        // A batch's entry (Engine::import_keys): the import route names it (`entry_error`).
        EngineError::Entry { error, .. } => engine_error(*error),
        EngineError::Store(crate::store::StoreError::Unavailable(why)) => {
            tracing::warn!(error = %why, "admin api: the cluster's database cannot be reached");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the cluster's database cannot be reached: the change was not made (verification goes on from memory); \
                 retry later",
            )
        }
        e @ (EngineError::Store(_) | EngineError::Config(_)) => {
            tracing::error!(error = %e, "admin api: engine failure");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the daemon's log")
        }
    }
}

/// The error answer `resp` about entry `index` of a batch
/// (`POST /v1/keys/import`), made to name it: a 422's locations go under
/// `["body", "keys", "<index>"]` and its message reads
/// `keys[3].expiresIn: ...`; a wrong type's message `keys[3].name: expected
/// ...`; any other error's `keys[3]: ...`. So each check of a route that
/// reads one object answers for an entry of a batch as well.
pub(crate) async fn entry_error(index: usize, resp: Resp) -> Resp {
    let (parts, body) = resp.into_parts();
    // The daemon's own error answers: small JSON documents in memory.
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let at = format!("keys[{index}]");
    if let Ok(mut v) = serde_json::from_slice::<api::ValidationErrorResponse>(&bytes) {
        for d in &mut v.detail {
            let rest = d.loc.split_off(d.loc.len().min(1));
            d.loc.extend(["keys".to_owned(), index.to_string()]);
            d.loc.extend(rest);
        }
        v.error.message = format!("{at}.{}", v.error.message);
        return json_response(parts.status, &v);
    }
    if let Ok(mut e) = serde_json::from_slice::<api::ErrorResponse>(&bytes) {
        e.error.message = if e.error.code == "invalid_type" {
            format!("{at}.{}", e.error.message)
        } else {
            format!("{at}: {}", e.error.message)
        };
        return json_response(parts.status, &e);
    }
    Response::from_parts(parts, Body::from(bytes))
}

// ---- request bodies ----

/// A JSON object body with typed, named access to its fields. A wrong type is a
/// 400 naming the field; a missing or invalid value is a 422 in seed 004's shape.
pub(crate) struct Fields(Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = Resp;

    async fn from_request(req: Request, _: &S) -> Result<Self, Resp> {
        match read_json::<Value>(req).await? {
            Value::Object(m) => Ok(Fields(m)),
            _ => Err(error(StatusCode::BAD_REQUEST, "invalid_json", "the request body must be a JSON object")),
        }
    }
}

/// The body of `POST /v1/keys/import`, `{"keys": [ ... ]}`, read up to
/// [`api::MAX_IMPORT_BODY_BYTES`]: 1 to [`api::MAX_IMPORT_KEYS`] entries,
/// each a JSON object read as [`Fields`] (its errors are about the entry:
/// see [`entry_error`]).
pub(crate) struct ImportBody(pub Vec<Fields>);

impl<S: Send + Sync> FromRequest<S> for ImportBody {
    type Rejection = Resp;

    async fn from_request(req: Request, _: &S) -> Result<Self, Resp> {
        let mut body = match read_json_within::<Value>(req, api::MAX_IMPORT_BODY_BYTES).await? {
            Value::Object(m) => Fields(m),
            _ => return Err(error(StatusCode::BAD_REQUEST, "invalid_json", "the request body must be a JSON object")),
        };
        body.only(&["keys"])?;
        let entries = match body.get("keys") {
            Some(Some(Value::Array(a))) => a,
            Some(Some(_)) => return Err(wrong_type("keys", "an array of objects")),
            _ => return Err(validation(&["body", "keys"], "field required", "missing")),
        };
        let max = api::MAX_IMPORT_KEYS;
        if entries.is_empty() || entries.len() > max {
            let msg = format!("must hold 1 to {max} entries (this one holds {})", entries.len());
            return Err(validation(&["body", "keys"], &msg, "value_error"));
        }
        entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| match e {
                Value::Object(m) => Ok(Fields(m)),
                _ => Err(wrong_type(&format!("keys[{i}]"), "a JSON object")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ImportBody)
    }
}

fn wrong_type(field: &str, expected: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "invalid_type", &format!("{field}: expected {expected}"))
}

impl Fields {
    pub(crate) fn only(&mut self, allowed: &[&str]) -> Result<(), Resp> {
        self.only_with(allowed, &[])
    }

    /// [`Fields::only`] for fields listed in two parts.
    pub(crate) fn only_with(&mut self, allowed: &[&str], also: &[&str]) -> Result<(), Resp> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str()) && !also.contains(&k.as_str())) {
            Some(k) => Err(validation(&["body", k], "unknown field", "extra_forbidden")),
            None => Ok(()),
        }
    }

    /// `None` = absent, `Some(None)` = null.
    fn get(&mut self, name: &str) -> Option<Option<Value>> {
        self.0.remove(name).map(|v| if v.is_null() { None } else { Some(v) })
    }

    pub(crate) fn opt_str(&mut self, name: &str) -> Result<Option<Option<String>>, Resp> {
        match self.get(name) {
            Some(Some(Value::String(s))) => Ok(Some(Some(s))),
            Some(Some(_)) => Err(wrong_type(name, "a string")),
            other => Ok(other.map(|_| None)),
        }
    }

    pub(crate) fn required_str(&mut self, name: &str) -> Result<String, Resp> {
        self.opt_str(name)?.flatten().ok_or_else(|| validation(&["body", name], "field required", "missing"))
    }

    pub(crate) fn opt_bool(&mut self, name: &str) -> Result<Option<Option<bool>>, Resp> {
        match self.get(name) {
            Some(Some(Value::Bool(b))) => Ok(Some(Some(b))),
            Some(Some(_)) => Err(wrong_type(name, "true or false")),
            other => Ok(other.map(|_| None)),
        }
    }

    /// A non-negative integer; seed 002's examples send numbers as strings, so a
    /// string of digits is accepted too.
    pub(crate) fn opt_u64(&mut self, name: &str) -> Result<Option<Option<u64>>, Resp> {
        let bad = || validation(&["body", name], "must be a non-negative integer", "value_error");
        match self.get(name) {
            Some(Some(Value::Number(n))) => n.as_u64().map(|n| Some(Some(n))).ok_or_else(bad),
            Some(Some(Value::String(s))) => s.trim().parse::<u64>().map(|n| Some(Some(n))).map_err(|_| bad()),
            Some(Some(_)) => Err(wrong_type(name, "an integer")),
            other => Ok(other.map(|_| None)),
        }
    }

    pub(crate) fn opt_u32(&mut self, name: &str) -> Result<Option<Option<u32>>, Resp> {
        match self.opt_u64(name)? {
            Some(Some(n)) => u32::try_from(n)
                .map(|n| Some(Some(n)))
                .map_err(|_| validation(&["body", name], "must be at most 4294967295", "value_error")),
            other => Ok(other.map(|_| None)),
        }
    }

    pub(crate) fn opt_object(&mut self, name: &str) -> Result<Option<Option<Value>>, Resp> {
        match self.get(name) {
            Some(Some(v @ Value::Object(_))) => Ok(Some(Some(v))),
            Some(Some(_)) => Err(wrong_type(name, "a JSON object")),
            other => Ok(other.map(|_| None)),
        }
    }

    /// `{resource: [actions]}`, or that object as a JSON string (seed 002 sends
    /// permissions as a string in its update example).
    pub(crate) fn opt_permissions(&mut self, name: &str) -> Result<Option<Option<Permissions>>, Resp> {
        let v = match self.get(name) {
            Some(Some(Value::String(s))) => serde_json::from_str::<Value>(&s)
                .map_err(|_| validation(&["body", name], "must be a JSON object of string arrays", "value_error"))?,
            Some(Some(v)) => v,
            other => return Ok(other.map(|_| None)),
        };
        if !v.is_object() {
            return Err(wrong_type(name, "an object of string arrays"));
        }
        serde_json::from_value::<Permissions>(v).map(|p| Some(Some(p))).map_err(|_| {
            validation(&["body", name], "must map each resource to an array of action strings", "value_error")
        })
    }

    /// An array of IPs and CIDR blocks, or seed 001's comma-separated string.
    pub(crate) fn opt_ips(&mut self, name: &str) -> Result<Option<Option<Vec<String>>>, Resp> {
        match self.get(name) {
            Some(Some(Value::String(s))) => {
                Ok(Some(Some(s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())))
            }
            Some(Some(Value::Array(items))) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(wrong_type(name, "an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| Some(Some(v))),
            Some(Some(_)) => Err(wrong_type(name, "an array of strings")),
            other => Ok(other.map(|_| None)),
        }
    }
}
