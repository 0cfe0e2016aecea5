//! The admin HTTP API under `/v1/`: login (seed 003), teams, users, API keys
//! (seeds 001 and 002) and access tokens (seed 004), plus `/openapi.json`.
//!
//! Every route is listed once, in `ROUTES`; the router dispatches from that
//! table and the OpenAPI document is built from it, so the two cannot drift.
//!
//! A caller is either the bootstrap admin token (everything, every team) or a
//! credential the engine verifies (JWT, API key or access token), which acts
//! with its user's role inside its own team only. Objects of another team
//! answer 404, exactly as objects that do not exist. Such a credential is
//! verified like any other, so an admin call counts against the team's
//! per-minute limit (seed 000's request rate) and a key's remaining uses; an
//! API key must also hold the permission itself (`{"keys": ["read"]}` etc.).

// Handlers return `Result<Response, Response>`: the error is the ready answer.
// It is large, but this is the admin path, not the verification hot path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, COOKIE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tollgate_api as api;

use super::{Body, error, json_response, read_json};
use crate::authz::{self, Member, Object, Owner, Reach, Refusal, Verb};
use crate::config::Config;
use crate::core::limits::{FixedWindow, Micros};
use crate::core::model::{
    AccessToken, ApiKey, Millis, Permissions, RateLimit, Refill, Role, Team, Tier, Usage, User, UserStatus, rfc3339,
};
use crate::core::secret;
use crate::core::verify::{CredentialKind, DenyCode, Verdict, VerifyRequest};
use crate::engine::{Cursor, EngineError, KeyUpdate, NewKey, Page, now_us, remaining_at};
use crate::server::Shared;

/// File in the data directory holding the generated bootstrap admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Environment variable that sets the bootstrap admin token.
pub const ADMIN_TOKEN_ENV: &str = "TOLLGATE_ADMIN_TOKEN";
/// Cookie that may carry a credential (besides `auth.cookie`, when another).
pub const TOKEN_COOKIE: &str = "tollgate_token";
/// Seed 004's cookie, accepted beside [`TOKEN_COOKIE`].
pub const SEED_COOKIE: &str = "vai_token";
/// Most (username or address) entries the login limiter remembers; beyond it the
/// least recently failed entry is forgotten, so memory stays bounded.
const MAX_LOGIN_SLOTS: usize = 10_000;
const MINUTE_US: Micros = 60_000_000;

type Resp = Response<Body>;

// ---- state ----

/// State of the admin API, created once per server.
pub struct AdminState {
    token_digest: [u8; 32],
    allow_query_token: bool,
    login: LoginLimiter,
    /// Cookie names that may carry a credential.
    cookies: Vec<String>,
    /// Origins allowed on cookie-authenticated state-changing calls.
    allowed_origins: Vec<String>,
}

impl AdminState {
    /// Resolves the bootstrap admin token: `config.admin_token`, else
    /// `TOLLGATE_ADMIN_TOKEN`, else the token in `<data>/admin-token`, generated
    /// (mode 0600) on first start. Only the file's path is logged.
    pub fn new(config: &Config) -> anyhow::Result<AdminState> {
        let token = match config.admin_token.clone().or_else(|| std::env::var(ADMIN_TOKEN_ENV).ok()) {
            Some(t) => {
                if t.trim().len() < 16 {
                    anyhow::bail!("{ADMIN_TOKEN_ENV}: the admin token must be at least 16 characters");
                }
                t.trim().to_owned()
            }
            None => token_from_file(&config.data.join(ADMIN_TOKEN_FILE))?,
        };
        Ok(AdminState {
            token_digest: secret::sha256(token.as_bytes()),
            allow_query_token: config.admin_api.allow_query_token,
            login: LoginLimiter::new(config.admin_api.login_failures_per_minute),
            cookies: {
                let mut c = vec![config.auth.cookie.clone(), TOKEN_COOKIE.to_owned(), SEED_COOKIE.to_owned()];
                c.dedup();
                c
            },
            allowed_origins: config.admin_api.allowed_origins.clone(),
        })
    }

    /// Compares SHA-256 digests, so the time taken depends on neither token's
    /// length, with a branch-free fold over every byte (ring's
    /// `verify_slices_are_equal` does the same but is deprecated in ring 0.17).
    pub(crate) fn is_admin_token(&self, presented: &str) -> bool {
        let digest = secret::sha256(presented.as_bytes());
        let diff = digest.iter().zip(&self.token_digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

fn token_from_file(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 16 => return Ok(t.trim().to_owned()),
        Ok(_) => anyhow::bail!("{}: the admin token in this file is shorter than 16 characters", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    let token = secret::generate(&ring::rand::SystemRandom::new(), "tgadmin").plaintext;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(token.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the bootstrap admin token");
    Ok(token)
}

/// Counts failed logins per username and per client address in fixed one-minute
/// windows. An attempt takes a slot up front and gives it back if it succeeds,
/// so only failures stay counted.
struct LoginLimiter {
    limit: u32,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

struct Slot {
    window: FixedWindow,
    touched: AtomicU64,
}

impl LoginLimiter {
    fn new(limit: u32) -> LoginLimiter {
        LoginLimiter { limit, slots: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, key: &str, now: Micros) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        if let Some(s) = slots.get(key) {
            s.touched.store(now, Ordering::Relaxed);
            return s.clone();
        }
        if slots.len() >= MAX_LOGIN_SLOTS {
            slots.retain(|_, s| now.saturating_sub(s.touched.load(Ordering::Relaxed)) < MINUTE_US);
            if slots.len() >= MAX_LOGIN_SLOTS {
                let oldest =
                    slots.iter().min_by_key(|(_, s)| s.touched.load(Ordering::Relaxed)).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    slots.remove(&k);
                }
            }
        }
        let s = Arc::new(Slot { window: FixedWindow::default(), touched: AtomicU64::new(now) });
        slots.insert(key.to_owned(), s.clone());
        s
    }

    /// Takes one attempt for every key, or none: `Err` is the retry delay in ms.
    fn take(&self, keys: &[String], now: Micros) -> Result<(), u64> {
        let mut taken = Vec::new();
        for k in keys {
            let s = self.slot(k, now);
            match s.window.try_take(self.limit, MINUTE_US, now, 1) {
                Ok(_) => taken.push(s),
                Err(d) => {
                    for t in taken {
                        t.window.undo(MINUTE_US, now, 1);
                    }
                    return Err(d.retry_after_ms);
                }
            }
        }
        Ok(())
    }

    /// Gives back the attempts of a successful login.
    fn undo(&self, keys: &[String], now: Micros) {
        for k in keys {
            let s = self.slot(k, now);
            s.window.undo(MINUTE_US, now, 1);
        }
    }
}

// ---- routes ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    OpenApi,
    Login,
    RevokeSession,
    CreateTeam,
    ListTeams,
    GetTeam,
    UpdateTeam,
    DeleteTeam,
    CreateUser,
    ListUsers,
    GetUser,
    UpdateUser,
    DeleteUser,
    RevokeUserSessions,
    ListKeys,
    CreateKey,
    GetKey,
    UpdateKey,
    DeleteKey,
    ListTokens,
    CreateToken,
    RevokeAllTokens,
    GetToken,
    RevokeToken,
    ListLogs,
    Reload,
}

/// One route of the admin API.
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{id}` matches one path segment.
    pub path: &'static str,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// What the route acts on and how, for [`authz`]; `None` for the routes
    /// that need no credential (the document itself, login).
    pub authz: Option<(Object, Verb)>,
    op: Op,
}

const fn r(method: &'static str, path: &'static str, summary: &'static str, op: Op) -> Route {
    Route { method, path, summary, authz: authz_of(op), op }
}

/// What `op` acts on and how; `None` for the routes that need no credential.
const fn authz_of(op: Op) -> Option<(Object, Verb)> {
    use Object::*;
    use Verb::*;
    match op {
        Op::OpenApi | Op::Login => None,
        Op::RevokeSession | Op::RevokeUserSessions => Some((Sessions, Delete)),
        Op::CreateTeam => Some((Teams, Create)),
        Op::ListTeams | Op::GetTeam => Some((Teams, Read)),
        Op::UpdateTeam => Some((Teams, Update)),
        Op::DeleteTeam => Some((Teams, Delete)),
        Op::CreateUser => Some((Users, Create)),
        Op::ListUsers | Op::GetUser => Some((Users, Read)),
        Op::UpdateUser => Some((Users, Update)),
        Op::DeleteUser => Some((Users, Delete)),
        Op::CreateKey => Some((Keys, Create)),
        Op::ListKeys | Op::GetKey => Some((Keys, Read)),
        Op::UpdateKey => Some((Keys, Update)),
        Op::DeleteKey => Some((Keys, Delete)),
        Op::CreateToken => Some((Tokens, Create)),
        Op::ListTokens | Op::GetToken => Some((Tokens, Read)),
        Op::RevokeAllTokens | Op::RevokeToken => Some((Tokens, Delete)),
        Op::ListLogs => Some((Logs, Read)),
        Op::Reload => Some((Config, Update)),
    }
}

/// Every route the admin router serves; the OpenAPI document lists exactly these.
pub const ROUTES: &[Route] = &[
    r("GET", "/openapi.json", "This document", Op::OpenApi),
    r("POST", "/v1/auth/token", "Exchange Basic credentials or an API key for a JWT", Op::Login),
    r(
        "DELETE",
        "/v1/auth/sessions/{id}",
        "Revoke one JWT by its jti: the caller's own, or any of the team's (Administrator, admin token)",
        Op::RevokeSession,
    ),
    r("POST", "/v1/teams", "Create a team (admin token only)", Op::CreateTeam),
    r("GET", "/v1/teams", "List teams: every team for the admin token, the caller's own otherwise", Op::ListTeams),
    r("GET", "/v1/teams/{id}", "Get a team", Op::GetTeam),
    r(
        "PATCH",
        "/v1/teams/{id}",
        "Change a team's tier (admin token only; 409 if the team holds more than the tier allows, unless forced)",
        Op::UpdateTeam,
    ),
    r("DELETE", "/v1/teams/{id}", "Delete a team and everything in it (admin token only)", Op::DeleteTeam),
    r("POST", "/v1/users", "Create a user", Op::CreateUser),
    r("GET", "/v1/users", "List a team's users", Op::ListUsers),
    r("GET", "/v1/users/{id}", "Get a user", Op::GetUser),
    r("PATCH", "/v1/users/{id}", "Change a user's role, status or password", Op::UpdateUser),
    r("DELETE", "/v1/users/{id}", "Delete (anonymize) a user", Op::DeleteUser),
    r(
        "DELETE",
        "/v1/users/{id}/sessions",
        "Revoke every JWT issued to the user so far (log out everywhere)",
        Op::RevokeUserSessions,
    ),
    r("GET", "/v1/keys", "List API keys", Op::ListKeys),
    r("POST", "/v1/keys", "Create an API key", Op::CreateKey),
    r("GET", "/v1/keys/{id}", "Get an API key", Op::GetKey),
    r("PATCH", "/v1/keys/{id}", "Change an API key", Op::UpdateKey),
    r("DELETE", "/v1/keys/{id}", "Delete an API key", Op::DeleteKey),
    r("GET", "/v1/access-tokens", "List the caller's access tokens", Op::ListTokens),
    r("POST", "/v1/access-tokens", "Create an access token for the caller", Op::CreateToken),
    r("DELETE", "/v1/access-tokens", "Revoke all of the caller's access tokens", Op::RevokeAllTokens),
    r("GET", "/v1/access-tokens/{id}", "Get one of the caller's access tokens", Op::GetToken),
    r("DELETE", "/v1/access-tokens/{id}", "Revoke one of the caller's access tokens", Op::RevokeToken),
    r(
        "GET",
        "/v1/logs",
        "List the team's audit log: admin calls and denied verifications (filters: action, outcome, since, until in ms; limit, cursor)",
        Op::ListLogs,
    ),
    r(
        "POST",
        "/v1/admin/reload",
        "Reload the configuration file, as SIGHUP does (admin token only); 422 with every problem if it is refused",
        Op::Reload,
    ),
];

/// Matches `path` against a template; `Some` carries the `{id}` segment, if any.
fn match_path<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut id = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(id),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                id = Some(ps);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// Path of the login route (`POST`), whose failures `/metrics` counts.
pub const LOGIN_PATH: &str = "/v1/auth/token";

/// The index in [`ROUTES`] of the route serving `method` on `path`, if any:
/// what the access line and the admin-API metrics name a request by.
pub fn route_index(method: &hyper::Method, path: &str) -> Option<usize> {
    ROUTES.iter().position(|r| r.method == method.as_str() && match_path(r.path, path).is_some())
}

/// The request id [`super::handle`] put on an admin request, for its audit entry.
fn request_id(req: &Request<Incoming>) -> String {
    req.extensions().get::<super::RequestId>().map(|id| id.as_str().to_owned()).unwrap_or_default()
}

/// Serves `/v1/...` (other than `/v1/verify`) and `/openapi.json`.
pub async fn route(shared: &Shared, req: Request<Incoming>, peer: Option<IpAddr>) -> Resp {
    let path = req.uri().path().to_owned();
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        if let Some(id) = match_path(route.path, &path) {
            if route.method == req.method().as_str() {
                let id = id.map(str::to_owned);
                return on_admin_runtime(shared, route.op, id, req, peer).await;
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        return error(StatusCode::NOT_FOUND, "not_found", "no such route");
    }
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route");
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        resp.headers_mut().insert(ALLOW, v);
    }
    resp
}

/// Runs an admin call on the admin runtime (`Shared::admin_runtime`), not on
/// the workers that serve verifications: its store writes (fsynced, under the
/// engine's admin lock), its audit record and argon2 block that runtime's
/// threads only. The connection's task here just waits for the answer.
async fn on_admin_runtime(
    shared: &Shared,
    op: Op,
    id: Option<String>,
    req: Request<Incoming>,
    peer: Option<IpAddr>,
) -> Resp {
    let Some(owned) = shared.arc() else {
        return dispatch(shared, op, id, req, peer).await.unwrap_or_else(|e| e);
    };
    let task =
        shared.admin_runtime.spawn(async move { dispatch(&owned, op, id, req, peer).await.unwrap_or_else(|e| e) });
    match task.await {
        Ok(resp) => resp,
        Err(e) if e.is_panic() => super::panicked(&*e.into_panic(), "admin api"),
        // The admin runtime is shutting down.
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "shutting down"),
    }
}

async fn dispatch(
    shared: &Shared,
    op: Op,
    id: Option<String>,
    req: Request<Incoming>,
    peer: Option<IpAddr>,
) -> Result<Resp, Resp> {
    let id = id.unwrap_or_default();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let request_id = request_id(&req);
    let (object, verb) = match op {
        Op::OpenApi => return Ok(json_response(StatusCode::OK, &openapi())),
        Op::Login => return Ok(login(shared, req.headers(), peer, request_id).await),
        _ => match authz_of(op) {
            Some(object_verb) => object_verb,
            None => return unreachable_route(),
        },
    };
    let changes = !matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD);
    let caller = match authenticate(shared, req.headers(), &query, peer, object, verb, changes).await {
        Ok(c) => c,
        Err(resp) => {
            audit_refused(shared, req.headers(), &query, op, &id, &resp, request_id);
            return Err(resp);
        }
    };
    // Known before the call: a deleted object cannot be looked up afterwards.
    let team_hint = team_hint(shared, &caller, op, &id, &query);
    let cx = Cx { shared, caller: caller.clone() };
    // A panic is a 500 that is audited like any other failure.
    let result = std::panic::AssertUnwindSafe(run_op(&cx, op, &id, &query, req))
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(super::panicked(&*p, "admin api")));
    let resp = match &result {
        Ok(r) | Err(r) => r,
    };
    audit_call(shared, &caller, op, &id, team_hint, resp, request_id).await;
    result
}

async fn run_op(
    cx: &Cx<'_>,
    op: Op,
    id: &str,
    query: &HashMap<String, String>,
    req: Request<Incoming>,
) -> Result<Resp, Resp> {
    let id = id.to_owned();
    let query = query.clone();
    match op {
        Op::OpenApi | Op::Login => unreachable_route(),
        Op::RevokeSession => cx.revoke_session(&id),
        Op::RevokeUserSessions => cx.revoke_user_sessions(&id),
        Op::CreateTeam => cx.create_team(body(req).await?),
        Op::ListTeams => cx.list_teams(&query),
        Op::GetTeam => cx.get_team(&id),
        Op::UpdateTeam => cx.update_team(&id, body(req).await?),
        Op::DeleteTeam => cx.delete_team(&id),
        Op::CreateUser => cx.create_user(body(req).await?).await,
        Op::ListUsers => cx.list_users(&query),
        Op::GetUser => cx.get_user(&id),
        Op::UpdateUser => cx.update_user(&id, body(req).await?).await,
        Op::DeleteUser => cx.delete_user(&id),
        Op::ListKeys => cx.list_keys(&query),
        Op::CreateKey => cx.create_key(body(req).await?),
        Op::GetKey => cx.get_key(&id),
        Op::UpdateKey => cx.update_key(&id, body(req).await?),
        Op::DeleteKey => cx.delete_key(&id),
        Op::ListTokens => cx.list_tokens(&query),
        Op::CreateToken => cx.create_token(body(req).await?),
        Op::RevokeAllTokens => cx.revoke_all_tokens(&query),
        Op::GetToken => cx.get_token(&id),
        Op::RevokeToken => cx.revoke_token(&id),
        Op::ListLogs => cx.list_logs(&query),
        Op::Reload => cx.reload().await,
    }
}

// ---- audit ----

fn kind_str(k: CredentialKind) -> &'static str {
    match k {
        CredentialKind::ApiKey => "api_key",
        CredentialKind::AccessToken => "access_token",
        CredentialKind::Jwt => "jwt",
    }
}

/// The team an admin call concerns, when it can be told from the caller, the
/// path or the query; otherwise `audit_call` reads it from the answer.
fn team_hint(shared: &Shared, caller: &Caller, op: Op, id: &str, query: &HashMap<String, String>) -> Option<String> {
    if let Caller::User(u) = caller {
        return Some(u.team.to_string());
    }
    let index = shared.engine.index();
    match op {
        Op::GetTeam | Op::UpdateTeam | Op::DeleteTeam => Some(id.to_owned()),
        Op::GetUser | Op::UpdateUser | Op::DeleteUser | Op::RevokeUserSessions => {
            index.users.get(id).map(|u| u.team.id.to_string())
        }
        Op::GetKey | Op::UpdateKey | Op::DeleteKey => index.keys.get(id).map(|k| k.team_id().to_owned()),
        _ => query.get("teamId").cloned(),
    }
}

/// Records an admin call refused before it ran. With no credential it is
/// counted and sampled (`MISSING`); with one that names a known key, token or
/// user (refused by its status, permissions, role or rate limit) it is stored
/// under that team; an unknown credential was counted and sampled already by
/// `authenticate` (through `audit_denied`), with its deny code. Nothing the
/// caller presented is stored: the target is cleaned ([`crate::audit::clean_target`]).
fn audit_refused(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    op: Op,
    id: &str,
    resp: &Resp,
    request_id: String,
) {
    let now = now_us();
    let Some((cred, _)) = credential(headers, query, &shared.admin) else {
        shared.audit.unattributed(&shared.metrics, crate::metrics::DenySource::Admin, None, false, now);
        return;
    };
    let Some((team, actor)) = credential_owner(shared, cred, now) else { return };
    let event = crate::audit::AuditEvent {
        at: now,
        team,
        actor,
        action: format!("{op:?}"),
        target: crate::audit::clean_target(id, |t| shared.admin.is_admin_token(t)),
        outcome: "failure".to_owned(),
        detail: resp.status().as_u16().to_string(),
        request_id,
    };
    if let Err(e) = shared.audit.record(&event) {
        tracing::warn!(error = %e, "audit: cannot record a refused admin call");
    }
}

/// The team and actor of a presented credential that names a known key or
/// token, or a JWT with a good signature of a known user; `None` otherwise.
pub(crate) fn credential_owner(shared: &Shared, cred: &str, now: u64) -> Option<(String, String)> {
    if crate::core::verify::looks_like_jwt(cred) {
        let claims = shared.engine.jwt().verify(cred, now / 1_000_000).ok()?;
        let team = shared.engine.index().users.get(claims.sub.as_str())?.team.id.to_string();
        return Some((team, format!("user:{}/jwt:{}", claims.sub, claims.jti)));
    }
    shared.audit.owner_of(&secret::parse(cred)?)
}

/// Records an admin call: actor (ids only), operation, target, outcome. The
/// team is the hint, else the answer's `teamId` (or a new team's `id`), else
/// [`audit::GLOBAL`](crate::audit::GLOBAL).
async fn audit_call(
    shared: &Shared,
    caller: &Caller,
    op: Op,
    id: &str,
    team_hint: Option<String>,
    resp: &Resp,
    request_id: String,
) {
    use http_body_util::BodyExt as _;
    let body: Value = match resp.body().clone().collect().await {
        Ok(b) => serde_json::from_slice(&b.to_bytes()).unwrap_or(Value::Null),
        Err(never) => match never {},
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let ok = resp.status().is_success();
    let team = team_hint
        .or_else(|| if ok { field("teamId") } else { None })
        .or_else(|| if ok && op == Op::CreateTeam { field("id") } else { None })
        .unwrap_or_else(|| crate::audit::GLOBAL.to_owned());
    let actor = match caller {
        Caller::Admin => "admin-token".to_owned(),
        Caller::User(u) => format!("user:{}/{}:{}", u.user, kind_str(u.kind), u.credential_id),
    };
    let target = if id.is_empty() && ok {
        field("id")
            .or_else(|| body.get("token").and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    } else {
        id.to_owned()
    };
    let target = crate::audit::clean_target(&target, |t| shared.admin.is_admin_token(t));
    let event = crate::audit::AuditEvent {
        at: now_us(),
        team,
        actor,
        action: format!("{op:?}"),
        target,
        outcome: if ok { "success" } else { "failure" }.to_owned(),
        detail: resp.status().as_u16().to_string(),
        request_id,
    };
    if let Err(e) = shared.audit.record(&event) {
        tracing::warn!(error = %e, "audit: cannot record an admin call");
    }
}

fn unreachable_route() -> Result<Resp, Resp> {
    Err(error(StatusCode::NOT_FOUND, "not_found", "no such route"))
}

// ---- authentication ----

/// Who is calling.
#[derive(Clone, Debug)]
enum Caller {
    /// The bootstrap admin token.
    Admin,
    /// A verified credential of a user.
    User(Arc<UserCaller>),
}

/// A user's verified credential and what it holds.
#[derive(Debug)]
struct UserCaller {
    user: Arc<str>,
    team: Arc<str>,
    role: Role,
    kind: CredentialKind,
    /// Key id, token id, or the JWT's `jti`.
    credential_id: Arc<str>,
    /// What the credential may do: its ceiling for anything it creates.
    grant: Permissions,
    /// For an API key, or a JWT exchanged from one: the key's expiry (a key
    /// made with it may not outlive it). `None` for unscoped credentials.
    key_expiry: Option<Option<Millis>>,
}

impl UserCaller {
    /// Whether the credential is scoped by a key's permissions.
    fn scoped(&self) -> bool {
        self.key_expiry.is_some()
    }
}

/// Where a credential came from: a cookie is sent by browsers on their own,
/// so requests authenticated by one are checked for forgery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Header,
    Cookie,
    Query,
}

fn credential<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
    state: &AdminState,
) -> Option<(&'a str, Source)> {
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(a) = header(AUTHORIZATION.as_str())
        && let Some((scheme, rest)) = a.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
        && !rest.trim().is_empty()
    {
        return Some((rest.trim(), Source::Header));
    }
    if let Some(k) = header("x-api-key").map(str::trim).filter(|k| !k.is_empty()) {
        return Some((k, Source::Header));
    }
    for cookies in headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for c in cookies.split(';') {
            if let Some((name, value)) = c.trim().split_once('=')
                && state.cookies.iter().any(|n| n == name.trim())
            {
                let value = value.trim().trim_matches('"');
                if !value.is_empty() {
                    return Some((value, Source::Cookie));
                }
            }
        }
    }
    if state.allow_query_token {
        return query.get("token").map(String::as_str).filter(|t| !t.is_empty()).map(|t| (t, Source::Query));
    }
    None
}

/// Refuses a cookie-authenticated request that changes something unless it
/// is JSON (a form or `text/plain` post can be sent cross-site without a
/// preflight) and, when the browser names its origin, the origin is allowed.
fn check_forgery(headers: &HeaderMap, state: &AdminState) -> Result<(), Resp> {
    let json = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(error(
            StatusCode::FORBIDDEN,
            "csrf",
            "a cookie-authenticated request that changes something must be Content-Type: application/json",
        ));
    }
    if let Some(origin) = headers.get(hyper::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state.allowed_origins.iter().any(|o| o == origin) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "csrf",
                "this Origin may not make cookie-authenticated changes (admin_api.allowed_origins)",
            ));
        }
    }
    Ok(())
}

async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    peer: Option<IpAddr>,
    object: Object,
    verb: Verb,
    changes: bool,
) -> Result<Caller, Resp> {
    let Some((cred, source)) = credential(headers, query, &shared.admin) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing credential: send Authorization: Bearer, X-API-Key or the tollgate_token (or vai_token) cookie",
        ));
    };
    if source == Source::Cookie && changes {
        check_forgery(headers, &shared.admin)?;
    }
    if shared.admin.is_admin_token(cred) {
        return Ok(Caller::Admin);
    }
    let req = VerifyRequest { credential: cred, ip: peer, permissions: &[], cost: 1, quota: None };
    let engine = &shared.engine;
    let now = now_us();
    match engine.verify_at(&req, now) {
        Verdict::Allow(a) => {
            if let Some(t) = a.durable_after {
                engine.wait_durable_async(t).await;
            }
            let caller = UserCaller {
                user: a.subject().into(),
                team: a.team().into(),
                role: a.role,
                kind: a.kind,
                credential_id: a.credential_id().into(),
                grant: a.permissions().to_permissions(),
                key_expiry: a.key().map(|k| k.hot.expires_at),
            };
            // A key (or a JWT exchanged from one) calls only the routes its
            // grant names; other credentials act with their user's role, and
            // the role matrix decides in the handler.
            if caller.scoped() && !caller.grant.allows(object.resource(), verb.action()) {
                return Err(forbidden(object.resource(), verb.action()));
            }
            Ok(Caller::User(Arc::new(caller)))
        }
        Verdict::Deny(d) => Err({
            super::audit_denied(shared, cred, now, d.code.as_str(), "admin");
            match d.code {
                DenyCode::RateLimited | DenyCode::TeamRateLimited | DenyCode::UsageExceeded => {
                    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", d.reason);
                    if let Some(ms) = d.retry_after_ms {
                        set_retry_after(&mut resp, ms);
                    }
                    resp
                }
                code => error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    &format!("credential refused: {} ({})", d.reason, code.as_str()),
                ),
            }
        }),
    }
}

fn forbidden(resource: &str, action: &str) -> Resp {
    error(StatusCode::FORBIDDEN, "forbidden", &format!("this credential may not {action} {resource}"))
}

fn refused(r: Refusal) -> Resp {
    match r {
        Refusal::NotFound => not_found("object"),
        Refusal::Forbidden(why) => error(StatusCode::FORBIDDEN, "forbidden", &why),
    }
}

fn set_retry_after(resp: &mut Resp, ms: u64) {
    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
}

// ---- login (seed 003) ----

async fn login(shared: &Shared, headers: &HeaderMap, peer: Option<IpAddr>, request_id: String) -> Resp {
    let bad = |msg: &str| error(StatusCode::BAD_REQUEST, "bad_request", msg);
    let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return bad("username and password not specified: send Authorization: Basic base64(username:password)");
    };
    let Some((scheme, encoded)) = auth.split_once(' ') else {
        return bad("malformed Authorization header");
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return bad("use Basic authentication to get a token");
    }
    let Some(decoded) =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok())
    else {
        return bad("malformed Basic credentials: expected base64 of username:password");
    };
    let (username, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    if username.is_empty() {
        return bad("username is not specified");
    }
    let with_key = password.is_empty() && secret::parse(username).is_some();
    if password.is_empty() && !with_key {
        return bad("password is not specified");
    }
    let mut keys = vec![format!("ip:{}", peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()))];
    if !with_key {
        keys.push(format!("user:{username}"));
    }
    let now = now_us();
    if let Err(ms) = shared.admin.login.take(&keys, now) {
        let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many failed logins; retry later");
        set_retry_after(&mut resp, ms);
        return resp;
    }
    let engine = shared.engine.clone();
    // Audited by id, never by name: the user a password login names, or the
    // key used as the username (a secret, never written down). A login that
    // names no known user or key is counted and sampled, not stored.
    let named: Option<(String, String)> = if with_key {
        secret::parse(username).and_then(|h| shared.audit.owner_of(&h))
    } else {
        shared.engine.index().usernames.get(username).and_then(|id| {
            let team = shared.engine.index().users.get(id.as_str())?.team.id.to_string();
            Some((team, format!("user:{}", id.as_str())))
        })
    };
    let (username, password) = (username.to_owned(), password.to_owned());
    let result = tokio::task::spawn_blocking(move || {
        if with_key { engine.login_with_key(&username, peer) } else { engine.login(&username, &password) }
    })
    .await;
    // The new token says who logged in (verifying it again is cheap: it is
    // cached from now on).
    let who = match &result {
        Ok(Ok(token)) => match shared.engine.verify_at(&VerifyRequest::new(token), now_us()) {
            Verdict::Allow(a) => Some((a.team().to_owned(), format!("user:{}", a.subject()))),
            Verdict::Deny(_) => None,
        },
        _ => None,
    };
    let resp = match result {
        Ok(Ok(token)) => {
            shared.admin.login.undo(&keys, now);
            json_response(StatusCode::OK, &api::LoginResponse { token })
        }
        Ok(Err(EngineError::BadCredentials)) => {
            error(StatusCode::UNAUTHORIZED, "invalid_credentials", "username and/or password is invalid")
        }
        Ok(Err(e)) => engine_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "login task failed"),
    };
    let Some((named_team, target)) = named else {
        let code = Some(DenyCode::NotFound);
        shared.audit.unattributed(&shared.metrics, crate::metrics::DenySource::Login, code, false, now_us());
        return resp;
    };
    let (team, actor) = who.unwrap_or_else(|| (named_team, "unknown".to_owned()));
    let event = crate::audit::AuditEvent {
        at: now_us(),
        team,
        actor,
        action: "Login".to_owned(),
        target,
        outcome: if resp.status().is_success() { "success" } else { "failure" }.to_owned(),
        detail: resp.status().as_u16().to_string(),
        request_id,
    };
    if let Err(e) = shared.audit.record(&event) {
        tracing::warn!(error = %e, "audit: cannot record a login");
    }
    resp
}

// ---- handlers ----

struct Cx<'a> {
    shared: &'a Shared,
    caller: Caller,
}

/// The settings a key is created with and updated by (`POST` adds `userId`
/// and `prefix`, `PATCH` adds `enabled`).
const KEY_SETTINGS: &[&str] = &[
    "name",
    "expiresIn",
    "remaining",
    "refillAmount",
    "refillInterval",
    "rateLimitEnabled",
    "rateLimitTimeWindow",
    "rateLimitMax",
    "permissions",
    "metadata",
    "whitelistedIPs",
];

impl Cx<'_> {
    /// The calling user, `None` for the admin token.
    fn member(&self) -> Option<&UserCaller> {
        match &self.caller {
            Caller::Admin => None,
            Caller::User(u) => Some(u),
        }
    }

    /// The caller's team, `None` for the admin token.
    fn team(&self) -> Option<&str> {
        self.member().map(|u| &*u.team)
    }

    /// Whether the caller may see objects of `team_id`.
    fn sees(&self, team_id: &str) -> bool {
        self.team().is_none_or(|t| t == team_id)
    }

    /// Asks the role matrix whether the caller may `verb` an `object` of `owner`.
    fn authorize(&self, object: Object, verb: Verb, owner: Owner<'_>) -> Result<(), Resp> {
        let who = self.member().map(|u| Member { user: &u.user, team: &u.team, role: u.role });
        authz::decide(who, object, verb, owner).map_err(|r| match r {
            Refusal::NotFound => not_found(object.resource().trim_end_matches('s')),
            r => refused(r),
        })
    }

    /// A team-wide object of `team` (the team, its user list, its log).
    fn of_team(team: &str) -> Owner<'_> {
        Owner { team, user: None }
    }

    /// The caller's own team, for platform-only objects (the admin token's is "").
    fn own_team(&self) -> Owner<'_> {
        Owner { team: self.team().unwrap_or(""), user: None }
    }

    /// Refuses what only the platform may do to a user's status: set or lift
    /// Blocked.
    fn may_set_status(&self, current: UserStatus, new: Option<UserStatus>) -> Result<(), Resp> {
        let touches_block = new == Some(UserStatus::Blocked)
            || (current == UserStatus::Blocked && new.is_some_and(|s| s != UserStatus::Blocked));
        if touches_block && self.member().is_some() {
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "only the admin token may block or unblock a user"));
        }
        Ok(())
    }

    /// Refuses handing out a role above the caller's own.
    fn may_grant_role(&self, role: Role) -> Result<(), Resp> {
        match self.member() {
            Some(u) if role.outranks(u.role) => {
                Err(error(StatusCode::FORBIDDEN, "forbidden", &format!("a {} may not grant the {role} role", u.role)))
            }
            _ => Ok(()),
        }
    }

    /// Caps what the caller creates or changes by what it holds: `perms`
    /// within its grant and, for a key-scoped caller, an expiry no later than
    /// that key's. 403 naming what exceeds.
    fn within_grant(&self, perms: Option<&Permissions>, expires_at: Option<Option<Millis>>) -> Result<(), Resp> {
        let Some(u) = self.member() else { return Ok(()) };
        if let Some(p) = perms {
            let excess = p.excess_over(&u.grant);
            if !excess.is_empty() {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "exceeds_grant",
                    &format!("permissions exceed this credential's grant: {}", excess.join(", ")),
                ));
            }
        }
        if let (Some(Some(parent)), Some(asked)) = (u.key_expiry, expires_at)
            && asked.is_none_or(|a| a > parent)
        {
            return Err(error(
                StatusCode::FORBIDDEN,
                "exceeds_grant",
                &format!("expiry exceeds this credential's: it is a key that expires at {}", rfc3339(parent)),
            ));
        }
        Ok(())
    }

    /// The team a request names (`teamId`), or the caller's own.
    fn target_team(&self, named: Option<String>, loc: &'static str) -> Result<String, Resp> {
        match (self.team(), named) {
            (None, Some(t)) => Ok(t),
            (None, None) => Err(validation(&[loc, "teamId"], "the admin token must name a team", "missing")),
            (Some(mine), Some(t)) if t != mine => Err(not_found("team")),
            (Some(mine), _) => Ok(mine.to_owned()),
        }
    }

    /// A live (not deleted) user of a team the caller sees.
    fn live_user(&self, id: &str) -> Result<User, Resp> {
        match self.shared.engine.user(id) {
            Ok(u) if self.sees(&u.team_id) && u.status != UserStatus::Deleted => Ok(u),
            Ok(_) => Err(not_found("user")),
            Err(e) => Err(engine_error(e)),
        }
    }

    /// User `id`, if the caller may `verb` it.
    fn user_for(&self, id: &str, object: Object, verb: Verb) -> Result<User, Resp> {
        let u = self.live_user(id)?;
        self.authorize(object, verb, Owner { team: &u.team_id, user: Some((&u.id, u.role)) })?;
        Ok(u)
    }

    /// The owner of key `k`; an owner gone from the index ranks highest, so
    /// that only those who may act on anyone may act on the key.
    fn key_owner<'k>(&self, k: &'k ApiKey) -> Owner<'k> {
        let role = self.shared.engine.index().users.get(&k.user_id).map_or(Role::Administrator, |u| u.role());
        Owner { team: &k.team_id, user: Some((&k.user_id, role)) }
    }

    /// Key `id`, if the caller may `verb` it.
    fn key_for(&self, id: &str, verb: Verb) -> Result<(ApiKey, Usage), Resp> {
        let (k, u) = match self.shared.engine.key(id) {
            Ok((k, u)) if self.sees(&k.team_id) => (k, u),
            Ok(_) => return Err(not_found("key")),
            Err(e) => return Err(engine_error(e)),
        };
        self.authorize(Object::Keys, verb, self.key_owner(&k))?;
        Ok((k, u))
    }

    fn caller_user(&self) -> Result<&UserCaller, Resp> {
        self.member().ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "no_user",
                "access tokens belong to a user; call with a user's credential, not the admin token",
            )
        })
    }

    // ---- sessions ----

    /// `DELETE /v1/auth/sessions/{jti}`: revokes one JWT. Anyone may revoke
    /// the JWT they call with; another one needs a team-wide reach
    /// (Administrator) or the admin token. A member's revocation applies to
    /// its own team's JWTs only (a jti names no team); it is kept for the
    /// longest lifetime a token may have.
    fn revoke_session(&self, jti: &str) -> Result<Resp, Resp> {
        if let Some(u) = self.member() {
            let own = u.kind == CredentialKind::Jwt && *u.credential_id == *jti;
            if !own && authz::reach(u.role, Object::Sessions, Verb::Delete) != Reach::Team {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &format!("a {} may revoke only the session it calls with", u.role),
                ));
            }
        }
        let s = self.shared.engine.jwt();
        let s = s.settings();
        let exp = (now_us() / 1_000_000).saturating_add(s.max_lifetime_secs).saturating_add(s.leeway_secs);
        self.shared.engine.revoke_jti(jti, self.team(), exp).map_err(engine_error)?;
        Ok(no_content())
    }

    /// `DELETE /v1/users/{id}/sessions`: revokes every JWT issued to the user.
    fn revoke_user_sessions(&self, id: &str) -> Result<Resp, Resp> {
        self.user_for(id, Object::Sessions, Verb::Delete)?;
        self.shared.engine.revoke_user_jwts(id).map_err(engine_error)?;
        Ok(no_content())
    }

    // ---- configuration ----

    /// `POST /v1/admin/reload`: the same reload as SIGHUP, with the outcome in
    /// the answer (200 with what changed, 422 with every problem found).
    async fn reload(&self) -> Result<Resp, Resp> {
        self.authorize(Object::Config, Verb::Update, self.own_team())?;
        let Some(shared) = self.shared.arc() else {
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the daemon is stopping"));
        };
        let outcome = tokio::task::spawn_blocking(move || crate::reload::reload(&shared))
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("reload task failed: {e}")))?;
        match outcome {
            Ok(report) => Ok(json_response(
                StatusCode::OK,
                &api::ReloadResponse {
                    report: api::ReloadReport {
                        applied: report.applied,
                        file: report.file,
                        needs_restart: report.needs_restart,
                    },
                    status: "reloaded".to_owned(),
                },
            )),
            Err(e @ crate::reload::ReloadError::NoFile) => {
                Err(error(StatusCode::CONFLICT, "no_config_file", &e.to_string()))
            }
            Err(e) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, "config_refused", &e.to_string())),
        }
    }

    // ---- teams ----

    fn create_team(&self, mut b: Fields) -> Result<Resp, Resp> {
        self.authorize(Object::Teams, Verb::Create, self.own_team())?;
        b.only(&["name", "tier"])?;
        let name = b.required_str("name")?;
        let tier = b.opt_str("tier")?.flatten().map_or(Ok(Tier::Free), |t| parse_tier(&t))?;
        let team = self.shared.engine.create_team(&name, tier).map_err(engine_error)?;
        Ok(json_response(StatusCode::CREATED, &team_body(&team)))
    }

    fn list_teams(&self, q: &HashMap<String, String>) -> Result<Resp, Resp> {
        check_query(q, &["limit", "offset", "startingAfter", "endingBefore", "token"])?;
        let (limit, offset, cursor) = paging(q)?;
        let page = match self.team() {
            None => self.shared.engine.teams_page(cursor, offset, limit).map_err(engine_error)?,
            // A team's member sees only its own team: a listing of one.
            Some(own) => {
                let mine = match self.shared.engine.team(own) {
                    Ok(_) => std::collections::BTreeSet::from([own.to_owned()]),
                    Err(EngineError::NotFound(_)) => std::collections::BTreeSet::new(),
                    Err(e) => return Err(engine_error(e)),
                };
                let page = crate::engine::page_of(&mine, cursor, offset, limit);
                let teams = page.items.iter().filter_map(|id| self.shared.engine.team(id).ok()).collect();
                page.map(teams)
            }
        };
        let data: Vec<api::Team> = page.items.iter().map(team_body).collect();
        let (next_url, previous_url) = links(&format!("/v1/teams?limit={limit}"), &page, |t| &t.id);
        Ok(json_response(
            StatusCode::OK,
            &api::TeamList { count: data.len() as u64, data, next_url, previous_url, total: page.total as u64 },
        ))
    }

    fn get_team(&self, id: &str) -> Result<Resp, Resp> {
        self.authorize(Object::Teams, Verb::Read, Self::of_team(id))?;
        let team = self.shared.engine.team(id).map_err(engine_error)?;
        Ok(json_response(StatusCode::OK, &team_body(&team)))
    }

    fn update_team(&self, id: &str, mut b: Fields) -> Result<Resp, Resp> {
        self.authorize(Object::Teams, Verb::Update, Self::of_team(id))?;
        b.only(&["tier", "force"])?;
        let tier = parse_tier(&b.required_str("tier")?)?;
        // A downgrade below what the team holds is refused unless forced.
        let force = b.opt_bool("force")?.flatten().unwrap_or(false);
        let team = self.shared.engine.set_team_tier(id, tier, force).map_err(engine_error)?;
        Ok(json_response(StatusCode::OK, &team_body(&team)))
    }

    fn delete_team(&self, id: &str) -> Result<Resp, Resp> {
        self.authorize(Object::Teams, Verb::Delete, Self::of_team(id))?;
        self.shared.engine.delete_team(id).map_err(engine_error)?;
        Ok(no_content())
    }

    // ---- users ----

    async fn create_user(&self, mut b: Fields) -> Result<Resp, Resp> {
        b.only(&["teamId", "username", "password", "role", "status"])?;
        let team = self.target_team(b.opt_str("teamId")?.flatten(), "body")?;
        self.authorize(Object::Users, Verb::Create, Self::of_team(&team))?;
        let username = b.required_str("username")?;
        let password = b.required_str("password")?;
        let role = parse_role(&b.required_str("role")?)?;
        let status = b.opt_str("status")?.flatten().map_or(Ok(UserStatus::Enabled), |s| parse_status(&s))?;
        if status == UserStatus::Deleted {
            return Err(validation(&["body", "status"], "a new user cannot be Deleted", "value_error"));
        }
        self.may_grant_role(role)?;
        self.may_set_status(UserStatus::Pending, Some(status))?;
        let engine = self.shared.engine.clone();
        let user = tokio::task::spawn_blocking(move || engine.create_user(&team, &username, &password, role, status))
            .await
            .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "user creation task failed"))?
            .map_err(engine_error)?;
        Ok(json_response(StatusCode::CREATED, &user_body(&user)))
    }

    fn list_users(&self, q: &HashMap<String, String>) -> Result<Resp, Resp> {
        check_query(q, &["teamId", "limit", "offset", "startingAfter", "endingBefore", "token"])?;
        let (limit, offset, cursor) = paging(q)?;
        let team = self.target_team(q.get("teamId").cloned(), "query")?;
        self.authorize(Object::Users, Verb::Read, Self::of_team(&team))?;
        if self.team().is_none() {
            self.shared.engine.team(&team).map_err(engine_error)?;
        }
        let page = self.shared.engine.users_page(&team, cursor, offset, limit).map_err(engine_error)?;
        let data: Vec<api::User> = page.items.iter().map(user_body).collect();
        let mut base = format!("/v1/users?limit={limit}");
        if self.team().is_none() {
            base.push_str(&format!("&teamId={team}"));
        }
        let (next_url, previous_url) = links(&base, &page, |u| &u.id);
        Ok(json_response(
            StatusCode::OK,
            &api::UserList { count: data.len() as u64, data, next_url, previous_url, total: page.total as u64 },
        ))
    }

    fn get_user(&self, id: &str) -> Result<Resp, Resp> {
        let user = self.user_for(id, Object::Users, Verb::Read)?;
        Ok(json_response(StatusCode::OK, &user_body(&user)))
    }

    async fn update_user(&self, id: &str, mut b: Fields) -> Result<Resp, Resp> {
        b.only(&["role", "status", "password"])?;
        let role = b.opt_str("role")?.flatten().map(|r| parse_role(&r)).transpose()?;
        let status = b.opt_str("status")?.flatten().map(|s| parse_status(&s)).transpose()?;
        let password = b.opt_str("password")?.flatten();
        if status == Some(UserStatus::Deleted) {
            return Err(validation(&["body", "status"], "use DELETE /v1/users/{id} to delete a user", "value_error"));
        }
        let user = self.user_for(id, Object::Users, Verb::Update)?;
        if let Some(me) = self.member()
            && *me.user == *user.id
            && (role.is_some() || status.is_some())
        {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "on their own account a user may change only the password",
            ));
        }
        if let Some(r) = role {
            self.may_grant_role(r)?;
        }
        self.may_set_status(user.status, status)?;
        let engine = self.shared.engine.clone();
        let id = id.to_owned();
        let user = tokio::task::spawn_blocking(move || engine.update_user(&id, role, status, password.as_deref()))
            .await
            .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "user update task failed"))?
            .map_err(engine_error)?;
        Ok(json_response(StatusCode::OK, &user_body(&user)))
    }

    fn delete_user(&self, id: &str) -> Result<Resp, Resp> {
        let user = self.user_for(id, Object::Users, Verb::Delete)?;
        if self.member().is_some_and(|me| *me.user == *user.id) {
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "a user may not delete their own account"));
        }
        let name = self.shared.engine.delete_user(id).map_err(engine_error)?;
        // Anonymize the audit log too (events written before ids replaced names).
        if let Err(e) = self.shared.audit.scrub_user(&user.team_id, id, &name) {
            tracing::warn!(error = %e, "audit: cannot scrub a deleted user's name");
        }
        Ok(no_content())
    }

    // ---- API keys (seeds 001, 002) ----

    fn list_keys(&self, q: &HashMap<String, String>) -> Result<Resp, Resp> {
        check_query(q, &["status", "limit", "offset", "startingAfter", "endingBefore", "teamId", "token"])?;
        let active = match q.get("status").map(String::as_str) {
            None | Some("active") => true,
            Some("inactive") => false,
            Some(_) => {
                return Err(validation(&["query", "status"], "must be active or inactive", "enum"));
            }
        };
        let (limit, offset, cursor) = paging(q)?;
        let team = self.target_team(q.get("teamId").cloned(), "query")?;
        // Who reaches only their own keys lists only those.
        let only = match self.member() {
            Some(u) if authz::reach(u.role, Object::Keys, Verb::Read) == Reach::Own => Some(u.user.clone()),
            _ => None,
        };
        let now = now_us() / 1000;
        // Cursors are key ids, and keys are in id order: a page after (or before)
        // an id is well defined however many keys were added or removed since.
        let page = self
            .shared
            .engine
            .keys_page(&team, only.as_deref(), active, now, cursor, offset, limit)
            .map_err(engine_error)?;
        let base = {
            let mut s = format!("/v1/keys?status={}&limit={limit}", if active { "active" } else { "inactive" });
            if self.team().is_none() {
                s.push_str(&format!("&teamId={team}"));
            }
            s
        };
        let (next_url, previous_url) = links(&base, &page, |(k, _)| &k.id);
        let data: Vec<api::ApiKey> = page.items.iter().map(|(k, u)| key_body(k, u, None)).collect();
        Ok(json_response(
            StatusCode::OK,
            &api::KeyList {
                count: data.len() as u64,
                data,
                next_url,
                previous_url,
                status: 200,
                total: page.total as u64,
            },
        ))
    }

    fn create_key(&self, mut b: Fields) -> Result<Resp, Resp> {
        b.only_with(KEY_SETTINGS, &["userId", "prefix"])?;
        let user_id = match (b.opt_str("userId")?.flatten(), &self.caller) {
            (Some(u), _) => u,
            (None, Caller::User(u)) => u.user.to_string(),
            (None, Caller::Admin) => {
                return Err(validation(&["body", "userId"], "field required", "missing"));
            }
        };
        let refill = match (b.opt_u32("refillAmount")?.flatten(), b.opt_u64("refillInterval")?.flatten()) {
            (None, None) => None,
            (Some(amount), Some(interval_ms)) => Some(Refill { amount, interval_ms }),
            (Some(_), None) => {
                return Err(validation(&["body", "refillInterval"], "required with refillAmount", "missing"));
            }
            (None, Some(_)) => {
                return Err(validation(&["body", "refillAmount"], "required with refillInterval", "missing"));
            }
        };
        let rate_limit = rate_limit(
            b.opt_bool("rateLimitEnabled")?.flatten(),
            b.opt_u32("rateLimitMax")?.flatten(),
            b.opt_u64("rateLimitTimeWindow")?.flatten(),
            None,
        )?
        .flatten();
        let new = NewKey {
            name: b.opt_str("name")?.flatten(),
            prefix: b.opt_str("prefix")?.flatten(),
            expires_in_secs: b.opt_u64("expiresIn")?.flatten(),
            remaining: b.opt_u32("remaining")?.flatten(),
            refill,
            rate_limit,
            permissions: b.opt_permissions("permissions")?.flatten().unwrap_or_default(),
            metadata: b.opt_object("metadata")?.flatten().map(|m| m.to_string()),
            whitelisted_ips: b.opt_ips("whitelistedIPs")?.flatten().unwrap_or_default(),
            user_id,
        };
        self.user_for(&new.user_id, Object::Keys, Verb::Create)?;
        let expires_at = new
            .expires_in_secs
            .map(|s| crate::engine::expiry_after_secs(now_us() / 1000, s))
            .transpose()
            .map_err(engine_error)?;
        self.within_grant(Some(&new.permissions), Some(expires_at))?;
        let (key, plaintext) = self.shared.engine.create_key(new).map_err(engine_error)?;
        let (key, usage) = self.shared.engine.key(&key.id).map_err(engine_error)?;
        Ok(json_response(StatusCode::CREATED, &key_body(&key, &usage, Some(&plaintext))))
    }

    fn get_key(&self, id: &str) -> Result<Resp, Resp> {
        let (k, u) = self.key_for(id, Verb::Read)?;
        Ok(json_response(StatusCode::OK, &key_body(&k, &u, None)))
    }

    fn update_key(&self, id: &str, mut b: Fields) -> Result<Resp, Resp> {
        b.only_with(KEY_SETTINGS, &["enabled"])?;
        let name = b.opt_str("name")?;
        let enabled = b.opt_bool("enabled")?.flatten();
        // Bounded here (the engine checks the absolute time again): no saturated,
        // far-future expiry can reach the store.
        let expires_at = match b.opt_u64("expiresIn")? {
            Some(Some(secs)) => {
                Some(Some(crate::engine::expiry_after_secs(now_us() / 1000, secs).map_err(engine_error)?))
            }
            Some(None) => Some(None),
            None => None,
        };
        let remaining = b.opt_u32("remaining")?;
        let refill_amount = b.opt_u32("refillAmount")?;
        let refill_interval = b.opt_u64("refillInterval")?;
        let rl_enabled = b.opt_bool("rateLimitEnabled")?.flatten();
        let rl_max = b.opt_u32("rateLimitMax")?.flatten();
        let rl_window = b.opt_u64("rateLimitTimeWindow")?.flatten();
        let permissions = b.opt_permissions("permissions")?.flatten();
        let metadata = b.opt_object("metadata")?.flatten().map(|m| m.to_string());
        let whitelisted_ips = b.opt_ips("whitelistedIPs")?.map(Option::unwrap_or_default);
        let (old, _) = self.key_for(id, Verb::Update)?;
        self.within_grant(permissions.as_ref(), expires_at)?;
        let refill = match (refill_amount, refill_interval) {
            (None, None) => None,
            (Some(None), Some(None)) => Some(None),
            (a, i) => {
                let amount = a.flatten().or(old.refill.map(|r| r.amount));
                let interval_ms = i.flatten().or(old.refill.map(|r| r.interval_ms));
                match (amount, interval_ms) {
                    (Some(amount), Some(interval_ms)) => Some(Some(Refill { amount, interval_ms })),
                    (None, _) => {
                        return Err(validation(&["body", "refillAmount"], "required with refillInterval", "missing"));
                    }
                    (_, None) => {
                        return Err(validation(&["body", "refillInterval"], "required with refillAmount", "missing"));
                    }
                }
            }
        };
        let up = KeyUpdate {
            name,
            enabled,
            expires_at,
            remaining,
            refill,
            rate_limit: rate_limit(rl_enabled, rl_max, rl_window, old.rate_limit)?,
            permissions,
            metadata,
            whitelisted_ips,
        };
        self.shared.engine.update_key(id, up).map_err(engine_error)?;
        let (k, u) = self.shared.engine.key(id).map_err(engine_error)?;
        Ok(json_response(StatusCode::OK, &key_body(&k, &u, None)))
    }

    fn delete_key(&self, id: &str) -> Result<Resp, Resp> {
        self.key_for(id, Verb::Delete)?;
        self.shared.engine.delete_key(id).map_err(engine_error)?;
        Ok(no_content())
    }

    // ---- access tokens (seed 004) ----

    fn list_tokens(&self, q: &HashMap<String, String>) -> Result<Resp, Resp> {
        check_query(q, &["tokenType", "includeRevoked", "limit", "cursor", "token"])?;
        let user = &*self.caller_user()?.user;
        let include_revoked = query_bool(q, "includeRevoked", false)?;
        let limit = query_int(q, "limit", 50, 1, 200)? as usize;
        let token_type = q.get("tokenType").filter(|t| !t.is_empty());
        let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                c.split_once('.')
                    .and_then(|(at, id)| Some((at.parse::<u64>().ok()?, id.to_owned())))
                    .ok_or_else(|| validation(&["query", "cursor"], "not a cursor this API returned", "value_error"))?,
            ),
        };
        let tokens: Vec<(AccessToken, Millis)> = self
            .shared
            .engine
            .tokens(user)
            .into_iter()
            .filter(|(t, _)| include_revoked || t.revoked_at.is_none())
            .filter(|(t, _)| token_type.is_none_or(|ty| t.token_type == *ty))
            .collect();
        // Tokens are in (createdAt, id) order; the cursor is the last position seen.
        let start = cursor
            .map_or(0, |(at, id)| tokens.partition_point(|(t, _)| (t.created_at, t.id.as_str()) <= (at, id.as_str())));
        let end = (start + limit).min(tokens.len());
        let page = &tokens[start..end];
        let next =
            (end < tokens.len()).then(|| page.last().map(|(t, _)| format!("{}.{}", t.created_at, t.id))).flatten();
        let items: Vec<api::AccessToken> = page.iter().map(|(t, used)| token_body(t, *used)).collect();
        Ok(json_response(StatusCode::OK, &api::TokenPage { items, next_cursor: next }))
    }

    fn create_token(&self, mut b: Fields) -> Result<Resp, Resp> {
        b.only(&["name", "expiresInDays", "tokenType"])?;
        let name = b.required_str("name")?;
        let days = b.opt_u32("expiresInDays")?.flatten();
        let token_type = b.opt_str("tokenType")?.flatten().unwrap_or_else(|| "personal".to_owned());
        if name.is_empty() || name.chars().count() > 255 {
            return Err(validation(&["body", "name"], "must be 1 to 255 characters", "string_length"));
        }
        let me = self.caller_user()?;
        // An access token acts with its user's whole role: only a credential
        // holding that whole role may make one.
        let lacks = me.role.grant().excess_over(&me.grant);
        if !lacks.is_empty() {
            return Err(error(
                StatusCode::FORBIDDEN,
                "exceeds_grant",
                &format!(
                    "an access token carries the whole {} role; this credential's grant lacks: {}",
                    me.role,
                    lacks.join(", ")
                ),
            ));
        }
        let user = &*me.user;
        let (token, plaintext) =
            self.shared.engine.create_token(user, &name, &token_type, days).map_err(engine_error)?;
        Ok(json_response(StatusCode::CREATED, &api::CreatedToken { plaintext, token: token_body(&token, 0) }))
    }

    fn revoke_all_tokens(&self, q: &HashMap<String, String>) -> Result<Resp, Resp> {
        check_query(q, &["exclude_current", "excludeCurrent", "token"])?;
        let exclude = match q.get("exclude_current") {
            Some(_) => query_bool(q, "exclude_current", true)?,
            None => query_bool(q, "excludeCurrent", true)?,
        };
        let me = self.caller_user()?;
        let user = &*me.user;
        let keep = (me.kind == CredentialKind::AccessToken && exclude).then_some(&*me.credential_id);
        let n = self.shared.engine.revoke_all_tokens(user, keep).map_err(engine_error)?;
        Ok(json_response(StatusCode::OK, &api::RevokedCount { revoked_count: n as u64 }))
    }

    fn own_token(&self, id: &str) -> Result<(AccessToken, Millis), Resp> {
        let user = &*self.caller_user()?.user;
        match self.shared.engine.token(id) {
            Ok((t, used)) if t.user_id == user => Ok((t, used)),
            Ok(_) => Err(not_found("token")),
            Err(e) => Err(engine_error(e)),
        }
    }

    fn get_token(&self, id: &str) -> Result<Resp, Resp> {
        let (t, used) = self.own_token(id)?;
        Ok(json_response(StatusCode::OK, &token_body(&t, used)))
    }

    // ---- audit log ----

    fn list_logs(&self, q: &HashMap<String, String>) -> Result<Resp, Resp> {
        check_query(q, &["teamId", "action", "outcome", "since", "until", "limit", "cursor", "token"])?;
        let team = self.target_team(q.get("teamId").cloned(), "query")?;
        self.authorize(Object::Logs, Verb::Read, Self::of_team(&team))?;
        let since_ms = query_int(q, "since", 0, 0, u64::MAX / 1000)?;
        let until_ms = query_int(q, "until", u64::MAX / 1000, 0, u64::MAX / 1000)?;
        let limit = query_int(q, "limit", 50, 1, 200)? as usize;
        let cursor = q.get("cursor").filter(|c| !c.is_empty());
        // A cursor is `<16 hex>/<8 hex>`, as this route returns them.
        if let Some(c) = cursor {
            let well_formed = c.split_once('/').is_some_and(|(t, n)| {
                t.len() == 16 && n.len() == 8 && t.bytes().chain(n.bytes()).all(|b| b.is_ascii_hexdigit())
            });
            if !well_formed {
                return Err(validation(&["query", "cursor"], "not a cursor this API returned", "value_error"));
            }
        }
        let nonempty = |name: &str| q.get(name).map(String::as_str).filter(|s| !s.is_empty());
        let query = crate::audit::Query {
            team: &team,
            action: nonempty("action"),
            outcome: nonempty("outcome"),
            since: since_ms.saturating_mul(1000),
            until: until_ms.saturating_mul(1000).saturating_add(999),
            limit,
            cursor: cursor.map(String::as_str),
        };
        let (events, more) = self.shared.audit.query(&query).map_err(|e| {
            tracing::error!(error = %e, "audit: query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the daemon's log")
        })?;
        let next = more.then(|| events.last().map(|(id, _)| id.clone())).flatten();
        let items: Vec<api::AuditEvent> = events
            .into_iter()
            .map(|(id, e)| api::AuditEvent {
                action: e.action,
                actor: e.actor,
                at: rfc3339(e.at / 1000),
                at_ms: e.at / 1000,
                detail: e.detail,
                id,
                outcome: e.outcome,
                request_id: (!e.request_id.is_empty()).then_some(e.request_id),
                target: e.target,
                team_id: e.team,
            })
            .collect();
        Ok(json_response(StatusCode::OK, &api::LogPage { items, next_cursor: next }))
    }

    fn revoke_token(&self, id: &str) -> Result<Resp, Resp> {
        self.own_token(id)?;
        self.shared.engine.revoke_token(id).map_err(engine_error)?;
        Ok(no_content())
    }
}

/// Folds the rate-limit fields of a request into the key's rate limit:
/// `None` = unchanged, `Some(None)` = off.
fn rate_limit(
    enabled: Option<bool>,
    max: Option<u32>,
    window: Option<u64>,
    old: Option<RateLimit>,
) -> Result<Option<Option<RateLimit>>, Resp> {
    if enabled == Some(false) {
        return Ok(Some(None));
    }
    if enabled.is_none() && max.is_none() && window.is_none() {
        return Ok(None);
    }
    let max = max.or(old.map(|r| r.max));
    let window_ms = window.or(old.map(|r| r.window_ms));
    match (max, window_ms) {
        (Some(max), Some(window_ms)) => Ok(Some(Some(RateLimit { max, window_ms }))),
        (None, _) => Err(validation(&["body", "rateLimitMax"], "required to enable rate limiting", "missing")),
        (_, None) => Err(validation(&["body", "rateLimitTimeWindow"], "required to enable rate limiting", "missing")),
    }
}

// ---- JSON forms ----

fn ts(ms: Millis) -> String {
    rfc3339(ms)
}

/// A time that may be unset (`None` or 0): RFC 3339, or `null`.
fn opt_ts(ms: Option<Millis>) -> Option<String> {
    ms.filter(|&m| m != 0).map(ts)
}

fn status_str(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Pending => "Pending",
        UserStatus::Enabled => "Enabled",
        UserStatus::Disabled => "Disabled",
        UserStatus::Blocked => "Blocked",
        UserStatus::Deleted => "Deleted",
    }
}

fn team_body(t: &Team) -> api::Team {
    api::Team {
        created_at: ts(t.created_at),
        id: t.id.clone(),
        name: t.name.clone(),
        tier: t.tier.as_str().to_owned(),
        updated_at: ts(t.updated_at),
    }
}

fn user_body(u: &User) -> api::User {
    api::User {
        created_at: ts(u.created_at),
        id: u.id.clone(),
        role: u.role.as_str().to_owned(),
        status: status_str(u.status).to_owned(),
        team_id: u.team_id.clone(),
        updated_at: ts(u.updated_at),
        username: u.username.clone(),
    }
}

fn key_active(k: &ApiKey, now: Millis) -> bool {
    k.enabled && k.expires_at.is_none_or(|e| now < e)
}

fn key_body(k: &ApiKey, u: &Usage, secret: Option<&str>) -> api::ApiKey {
    let now = now_us() / 1000;
    // Checked: the anchor and interval are stored values (an overflow shows no time).
    let last_refill = k.refill.and_then(|r| {
        let period = crate::core::limits::period_of(r, u.anchor, now);
        (period > 0).then(|| r.interval_ms.checked_mul(u64::from(period)).and_then(|d| u.anchor.checked_add(d)))?
    });
    let metadata: Value = serde_json::from_str(&k.metadata).unwrap_or_else(|_| Value::Object(Map::new()));
    api::ApiKey {
        company_id: k.team_id.clone(),
        created_at: ts(k.created_at),
        deleted_at: None,
        enabled: k.enabled,
        expires_at: opt_ts(k.expires_at),
        id: k.id.clone(),
        key: secret.map(str::to_owned),
        last_refill_at: opt_ts(last_refill),
        last_request: opt_ts(Some(u.last_used_at)),
        metadata,
        name: k.name.clone(),
        permissions: k.permissions.0.clone(),
        prefix: k.prefix.clone(),
        rate_limit_enabled: k.rate_limit.is_some(),
        rate_limit_max: k.rate_limit.map(|r| r.max),
        rate_limit_time_window: k.rate_limit.map(|r| r.window_ms),
        refill_amount: k.refill.map(|r| r.amount),
        refill_interval: k.refill.map(|r| r.interval_ms),
        remaining: remaining_at(k, u, now),
        request_count: u.request_count,
        start: k.start.clone(),
        status: if key_active(k, now) { "active" } else { "inactive" }.to_owned(),
        team_id: k.team_id.clone(),
        updated_at: ts(k.updated_at),
        user_id: k.user_id.clone(),
        whitelisted_ips: k.whitelisted_ips.clone(),
    }
}

fn token_body(t: &AccessToken, last_used: Millis) -> api::AccessToken {
    api::AccessToken {
        created_at: ts(t.created_at),
        expires_at: opt_ts(t.expires_at),
        id: t.id.clone(),
        last_used_at: opt_ts(Some(last_used)),
        name: t.name.clone(),
        revoked_at: opt_ts(t.revoked_at),
        token_prefix: t.token_prefix.clone(),
        token_type: t.token_type.clone(),
    }
}

// ---- errors ----

fn not_found(what: &str) -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", &format!("{what} not found"))
}

fn no_content() -> Resp {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A 422 in seed 004's shape, with the usual `error` object beside it.
fn validation(loc: &[&str], msg: &str, kind: &str) -> Resp {
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

fn engine_error(e: EngineError) -> Resp {
    match e {
        EngineError::NotFound(what) => not_found(what),
        EngineError::Invalid { field, reason } => validation(&["body", field], &reason, "value_error"),
        EngineError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", &m),
        EngineError::LimitReached(m) => error(StatusCode::CONFLICT, "limit_reached", &m),
        EngineError::TierExceeded(m) => error(StatusCode::CONFLICT, "tier_exceeded", &m),
        EngineError::BadCredentials => error(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid credentials"),
        // Only batches (Engine::import_keys) report an entry; no route calls one yet.
        EngineError::Entry { error, .. } => engine_error(*error),
        e @ (EngineError::Store(_) | EngineError::Config(_)) => {
            tracing::error!(error = %e, "admin api: engine failure");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the daemon's log")
        }
    }
}

fn parse_tier(s: &str) -> Result<Tier, Resp> {
    s.parse().map_err(|e: String| validation(&["body", "tier"], &e, "enum"))
}

fn parse_role(s: &str) -> Result<Role, Resp> {
    [Role::Administrator, Role::Manager, Role::Author, Role::Reader]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| validation(&["body", "role"], "must be Administrator, Manager, Author or Reader", "enum"))
}

fn parse_status(s: &str) -> Result<UserStatus, Resp> {
    [UserStatus::Pending, UserStatus::Enabled, UserStatus::Disabled, UserStatus::Blocked, UserStatus::Deleted]
        .into_iter()
        .find(|st| status_str(*st).eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            validation(&["body", "status"], "must be Pending, Enabled, Disabled, Blocked or Deleted", "enum")
        })
}

// ---- query strings ----

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn check_query(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), Resp> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(validation(&["query", k], "unknown query parameter", "extra_forbidden")),
        None => Ok(()),
    }
}

/// The page a list route is asked for: `limit` (1 to 100, default 25),
/// `offset` (from the start or from the cursor), and at most one cursor,
/// `startingAfter` or `endingBefore` (an object id).
fn paging(q: &HashMap<String, String>) -> Result<(usize, usize, Cursor<'_>), Resp> {
    let limit = query_int(q, "limit", 25, 1, 100)? as usize;
    let offset = query_int(q, "offset", 0, 0, u64::from(u32::MAX))? as usize;
    let after = q.get("startingAfter").filter(|s| !s.is_empty());
    let before = q.get("endingBefore").filter(|s| !s.is_empty());
    match (after, before) {
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
fn links<T>(base: &str, page: &Page<T>, id: impl Fn(&T) -> &str) -> (Option<String>, Option<String>) {
    let next = page.items.last().filter(|_| page.more_after).map(|l| format!("{base}&startingAfter={}", id(l)));
    let prev = page.items.first().filter(|_| page.more_before).map(|f| format!("{base}&endingBefore={}", id(f)));
    (next, prev)
}

fn query_int(q: &HashMap<String, String>, name: &str, default: u64, min: u64, max: u64) -> Result<u64, Resp> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(validation(&["query", name], &format!("must be an integer from {min} to {max}"), "value_error")),
        },
    }
}

fn query_bool(q: &HashMap<String, String>, name: &str, default: bool) -> Result<bool, Resp> {
    match q.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(_) => Err(validation(&["query", name], "must be true or false", "bool_parsing")),
    }
}

// ---- request bodies ----

/// A JSON object body with typed, named access to its fields. A wrong type is a
/// 400 naming the field; a missing or invalid value is a 422 in seed 004's shape.
struct Fields(Map<String, Value>);

async fn body(req: Request<Incoming>) -> Result<Fields, Resp> {
    match read_json::<Value>(req).await? {
        Value::Object(m) => Ok(Fields(m)),
        _ => Err(error(StatusCode::BAD_REQUEST, "invalid_json", "the request body must be a JSON object")),
    }
}

fn wrong_type(field: &str, expected: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "invalid_type", &format!("{field}: expected {expected}"))
}

impl Fields {
    fn only(&mut self, allowed: &[&str]) -> Result<(), Resp> {
        self.only_with(allowed, &[])
    }

    /// [`Fields::only`] for fields listed in two parts.
    fn only_with(&mut self, allowed: &[&str], also: &[&str]) -> Result<(), Resp> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str()) && !also.contains(&k.as_str())) {
            Some(k) => Err(validation(&["body", k], "unknown field", "extra_forbidden")),
            None => Ok(()),
        }
    }

    /// `None` = absent, `Some(None)` = null.
    fn get(&mut self, name: &str) -> Option<Option<Value>> {
        self.0.remove(name).map(|v| if v.is_null() { None } else { Some(v) })
    }

    fn opt_str(&mut self, name: &str) -> Result<Option<Option<String>>, Resp> {
        match self.get(name) {
            Some(Some(Value::String(s))) => Ok(Some(Some(s))),
            Some(Some(_)) => Err(wrong_type(name, "a string")),
            other => Ok(other.map(|_| None)),
        }
    }

    fn required_str(&mut self, name: &str) -> Result<String, Resp> {
        self.opt_str(name)?.flatten().ok_or_else(|| validation(&["body", name], "field required", "missing"))
    }

    fn opt_bool(&mut self, name: &str) -> Result<Option<Option<bool>>, Resp> {
        match self.get(name) {
            Some(Some(Value::Bool(b))) => Ok(Some(Some(b))),
            Some(Some(_)) => Err(wrong_type(name, "true or false")),
            other => Ok(other.map(|_| None)),
        }
    }

    /// A non-negative integer; seed 002's examples send numbers as strings, so a
    /// string of digits is accepted too.
    fn opt_u64(&mut self, name: &str) -> Result<Option<Option<u64>>, Resp> {
        let bad = || validation(&["body", name], "must be a non-negative integer", "value_error");
        match self.get(name) {
            Some(Some(Value::Number(n))) => n.as_u64().map(|n| Some(Some(n))).ok_or_else(bad),
            Some(Some(Value::String(s))) => s.trim().parse::<u64>().map(|n| Some(Some(n))).map_err(|_| bad()),
            Some(Some(_)) => Err(wrong_type(name, "an integer")),
            other => Ok(other.map(|_| None)),
        }
    }

    fn opt_u32(&mut self, name: &str) -> Result<Option<Option<u32>>, Resp> {
        match self.opt_u64(name)? {
            Some(Some(n)) => u32::try_from(n)
                .map(|n| Some(Some(n)))
                .map_err(|_| validation(&["body", name], "must be at most 4294967295", "value_error")),
            other => Ok(other.map(|_| None)),
        }
    }

    fn opt_object(&mut self, name: &str) -> Result<Option<Option<Value>>, Resp> {
        match self.get(name) {
            Some(Some(v @ Value::Object(_))) => Ok(Some(Some(v))),
            Some(Some(_)) => Err(wrong_type(name, "a JSON object")),
            other => Ok(other.map(|_| None)),
        }
    }

    /// `{resource: [actions]}`, or that object as a JSON string (seed 002 sends
    /// permissions as a string in its update example).
    fn opt_permissions(&mut self, name: &str) -> Result<Option<Option<Permissions>>, Resp> {
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
    fn opt_ips(&mut self, name: &str) -> Result<Option<Option<Vec<String>>>, Resp> {
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

// ---- OpenAPI ----

/// The OpenAPI 3.0 document of `ROUTES`.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{:?}", route.op),
            "responses": {
                "200": { "description": "success" },
                "400": { "description": "malformed request" },
                "401": { "description": "missing or refused credential" },
                "404": { "description": "not found (or another team's)" },
                "422": { "description": "validation error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ValidationError" } } } },
            },
        });
        if route.path.contains("{id}") {
            op["parameters"] =
                json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        if matches!(route.op, Op::OpenApi) {
            op["security"] = json!([]);
        } else if matches!(route.op, Op::Login) {
            op["security"] = json!([{ "basicAuth": [] }]);
        }
        if matches!(route.method, "POST" | "PATCH") && !matches!(route.op, Op::Login | Op::Reload) {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        entry[route.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "tollgate admin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "security": [{ "bearerAuth": [] }, { "apiKeyHeader": [] }, { "cookieAuth": [] }],
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer" },
                "basicAuth": { "type": "http", "scheme": "basic" },
                "apiKeyHeader": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "cookieAuth": { "type": "apiKey", "in": "cookie", "name": TOKEN_COOKIE },
            },
            "schemas": {
                "ValidationError": {
                    "type": "object",
                    "properties": { "detail": { "type": "array", "items": { "type": "object", "properties": {
                        "loc": { "type": "array", "items": { "type": "string" } },
                        "msg": { "type": "string" },
                        "type": { "type": "string" },
                    } } } },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_templates() {
        assert_eq!(match_path("/v1/keys", "/v1/keys"), Some(None));
        assert_eq!(match_path("/v1/keys/{id}", "/v1/keys/key_1"), Some(Some("key_1")));
        assert_eq!(match_path("/v1/keys/{id}", "/v1/keys/"), None);
        assert_eq!(match_path("/v1/keys/{id}", "/v1/keys/a/b"), None);
        assert_eq!(match_path("/v1/keys", "/v1/keys/a"), None);
    }

    #[test]
    fn query_decoding() {
        let q = parse_query("a=1&b=x%20y+z&c&d=%zz");
        assert_eq!(q["a"], "1");
        assert_eq!(q["b"], "x y z");
        assert_eq!(q["c"], "");
        assert_eq!(q["d"], "%zz");
    }

    #[test]
    fn login_limiter_counts_failures_only() {
        let l = LoginLimiter::new(2);
        let k = vec!["user:a".to_owned()];
        let now = 1_000_000_000;
        for _ in 0..5 {
            l.take(&k, now).unwrap();
            l.undo(&k, now);
        }
        l.take(&k, now).unwrap();
        l.take(&k, now).unwrap();
        assert!(l.take(&k, now).is_err());
        assert!(l.take(&k, now + MINUTE_US).is_ok());
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = openapi();
        for r in ROUTES {
            assert!(doc["paths"][r.path][r.method.to_ascii_lowercase()].is_object(), "{} {}", r.method, r.path);
        }
    }
}
