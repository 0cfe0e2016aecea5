//! The plumbing every guarded admin route shares: the hop to the admin
//! runtime ([`Admin`]), who is calling (the credential from a header, a cookie
//! or, when allowed, the query), the check of the route's rule before the
//! handler runs, the handler's context ([`Cx`]) with the owner checks of the
//! role matrix ([`crate::authz`]), and the audit entry of every call.

use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::handler::Handler;
use axum::http::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderValue, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures_util::FutureExt as _;
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument as _;

use super::extract::{Resp, engine_error, not_found, validation};
use super::{AdminState, Route};
use crate::authz::{self, Member, Object, Owner, Reach, Refusal, Verb};
use crate::core::model::{Millis, Permissions, Role, User, UserStatus, rfc3339};
use crate::core::secret;
use crate::core::verify::{CredentialKind, DenyCode, Verdict, VerifyRequest};
use crate::engine::now_us;
use crate::http::Shared;
use crate::http::{Body, Peer, RequestId, error, panicked};

// ---- the route wrapper ----

/// An admin route's handler, wrapped: the call runs on the admin runtime and,
/// for a route with a rule, only after the caller passed it (see [`run`]).
#[derive(Clone)]
pub(crate) struct Admin<H> {
    route: Route,
    inner: H,
}

impl<H> Admin<H> {
    pub(crate) fn new(route: Route, inner: H) -> Admin<H> {
        Admin { route, inner }
    }
}

impl<H, T> Handler<T, Arc<Shared>> for Admin<H>
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    type Future = Pin<Box<dyn Future<Output = Response> + Send>>;

    /// Runs the call on the admin runtime (`Shared::admin_runtime`); the
    /// connection's task here only waits for the answer.
    fn call(self, req: Request, shared: Arc<Shared>) -> Self::Future {
        Box::pin(async move {
            // The request's id (see `http::Access`) on every line the call logs.
            let span = match req.extensions().get::<crate::http::RequestId>() {
                Some(id) => tracing::info_span!("http", req = %id),
                None => tracing::info_span!("http"),
            };
            let call = run(self.route, self.inner, req, shared.clone()).instrument(span);
            let task = shared.admin_runtime.clone().spawn(call);
            match task.await {
                Ok(resp) => resp,
                Err(e) if e.is_panic() => panicked(&*e.into_panic(), "admin api"),
                // The admin runtime is shutting down.
                Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "shutting down"),
            }
        })
    }
}

/// What the guard reads from the query string: the credential (when
/// `admin_api.allow_query_token`) and the team named, for the audit entry.
/// Anything else is the handler's to check.
#[derive(Deserialize, Default)]
struct GuardQuery {
    token: Option<String>,
    #[serde(rename = "teamId")]
    team_id: Option<String>,
}

/// One admin call: a route without a rule runs as is; otherwise the caller
/// is authenticated and checked against the rule (refusals audited), the
/// handler runs with the caller on the request (a panic is a 500, audited
/// like any failure), and the call is audited.
async fn run<H, T>(route: Route, inner: H, req: Request, shared: Arc<Shared>) -> Response
where
    H: Handler<T, Arc<Shared>>,
{
    let Some((object, verb)) = route.authz else { return inner.call(req, shared).await };
    let request_id = req.extensions().get::<RequestId>().map(|id| id.as_str().to_owned()).unwrap_or_default();
    let peer: Option<IpAddr> = req.extensions().get::<Peer>().and_then(|p| p.0);
    // A query string that does not parse names no token and no team here; the
    // handler's own `Query` answers it.
    let query: GuardQuery = serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let id = match RawPathParams::from_request_parts(&mut parts, &shared).await {
        Ok(p) => p.iter().next().map(|(_, v)| v.to_owned()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut req = Request::from_parts(parts, body);
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let token = query.token.as_deref();
    let caller = match authenticate(&shared, req.headers(), token, peer, object, verb, changes).await {
        Ok(c) => c,
        Err(resp) => {
            audit_refused(&shared, req.headers(), token, route.op, &id, &resp, request_id);
            return resp;
        }
    };
    // Known before the call: a deleted object cannot be looked up afterwards.
    let team_hint = team_hint(&shared, &caller, route.path, &id, query.team_id.as_deref());
    req.extensions_mut().insert(Granted { caller: caller.clone(), rule: (object, verb) });
    let resp = AssertUnwindSafe(inner.call(req, shared.clone()))
        .catch_unwind()
        .await
        .unwrap_or_else(|p| panicked(&*p, "admin api"));
    audit_call(&shared, &caller, route.op, &id, team_hint, resp, request_id).await
}

// ---- authentication ----

/// Who is calling.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    /// The bootstrap admin token.
    Admin,
    /// A verified credential of a user.
    User(Arc<UserCaller>),
}

/// A user's verified credential and what it holds.
#[derive(Debug)]
pub(crate) struct UserCaller {
    pub(crate) user: Arc<str>,
    pub(crate) team: Arc<str>,
    pub(crate) role: Role,
    pub(crate) kind: CredentialKind,
    /// Key id, token id, or the JWT's `jti`.
    pub(crate) credential_id: Arc<str>,
    /// What the credential may do: its ceiling for anything it creates.
    pub(crate) grant: Permissions,
    /// For an API key, or a JWT exchanged from one: the key's expiry (a key
    /// made with it may not outlive it). `None` for unscoped credentials.
    pub(crate) key_expiry: Option<Option<Millis>>,
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
    query_token: Option<&'a str>,
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
        return query_token.filter(|t| !t.is_empty()).map(|t| (t, Source::Query));
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
    query_token: Option<&str>,
    peer: Option<IpAddr>,
    object: Object,
    verb: Verb,
    changes: bool,
) -> Result<Caller, Resp> {
    let Some((cred, source)) = credential(headers, query_token, &shared.admin) else {
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
    // Not an API request of the team: its per-minute tier limit does not
    // apply (Engine::verify_admin_at); the credential's own limits do.
    match engine.verify_admin_at(&req, now) {
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
                key_expiry: a.key().map(|k| k.expires_at()),
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
            crate::http::audit_denied(shared, cred, now, d.code.as_str(), "admin");
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

pub(crate) fn set_retry_after(resp: &mut Resp, ms: u64) {
    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
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
/// path (the `{id}` of a team, a user or a key) or the query's `teamId`;
/// otherwise `audit_call` reads it from the answer.
fn team_hint(shared: &Shared, caller: &Caller, path: &str, id: &str, team_id: Option<&str>) -> Option<String> {
    if let Caller::User(u) = caller {
        return Some(u.team.to_string());
    }
    let index = shared.engine.index();
    if path.starts_with("/v1/teams/{id}") {
        Some(id.to_owned())
    } else if path.starts_with("/v1/users/{id}") {
        index.users.get(id).map(|u| u.team.id.to_string())
    } else if path.starts_with("/v1/keys/{id}") {
        index.keys.get(id).map(|k| k.team_id().to_owned())
    } else {
        team_id.map(str::to_owned)
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
    query_token: Option<&str>,
    op: &str,
    id: &str,
    resp: &Resp,
    request_id: String,
) {
    let now = now_us();
    let Some((cred, _)) = credential(headers, query_token, &shared.admin) else {
        shared.audit.unattributed(&shared.metrics, crate::metrics::DenySource::Admin, None, false, now);
        return;
    };
    let Some((team, actor)) = credential_owner(shared, cred, now) else { return };
    let event = crate::audit::AuditEvent {
        at: now,
        team,
        actor,
        action: op.to_owned(),
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
/// Returns the answer, its body read (the handlers' bodies are whole JSON
/// documents in memory) and put back.
async fn audit_call(
    shared: &Shared,
    caller: &Caller,
    op: &str,
    id: &str,
    team_hint: Option<String>,
    resp: Resp,
    request_id: String,
) -> Resp {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "admin api: cannot read an answer's body for its audit entry");
        bytes::Bytes::new()
    });
    let resp = Response::from_parts(parts, Body::from(bytes.clone()));
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let ok = resp.status().is_success();
    let team = team_hint
        .or_else(|| if ok { field("teamId") } else { None })
        .or_else(|| if ok && op == "CreateTeam" { field("id") } else { None })
        .unwrap_or_else(|| crate::audit::GLOBAL.to_owned());
    let actor = match caller {
        Caller::Admin => "admin-token".to_owned(),
        Caller::User(u) => format!("user:{}/{}:{}", u.user, kind_str(u.kind), u.credential_id),
    };
    let target = if id.is_empty() && ok {
        field("id")
            .or_else(|| body.get("token").and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_owned))
            // An import is one entry, with how many keys it made (never their secrets or hashes).
            .or_else(|| {
                let count = body.get("count").and_then(Value::as_u64).filter(|_| op == "ImportKeys");
                count.map(|n| format!("{n} keys"))
            })
            .unwrap_or_default()
    } else {
        id.to_owned()
    };
    let target = crate::audit::clean_target(&target, |t| shared.admin.is_admin_token(t));
    let event = crate::audit::AuditEvent {
        at: now_us(),
        team,
        actor,
        action: op.to_owned(),
        target,
        outcome: if ok { "success" } else { "failure" }.to_owned(),
        detail: resp.status().as_u16().to_string(),
        request_id,
    };
    if let Err(e) = shared.audit.record(&event) {
        tracing::warn!(error = %e, "audit: cannot record an admin call");
    }
    resp
}

// ---- the handler's context ----

/// An admin call that got past its route's rule: the handles, the caller,
/// and the rule `(Object, Verb)` the route was declared with, which the
/// checks against an object's owner take as well. Only a guarded route's
/// handler can have one (see [`Admin`]).
pub(crate) struct Cx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) caller: Caller,
    pub(crate) rule: (Object, Verb),
}

/// What [`Admin`] puts on a request that passed its route's rule.
#[derive(Clone)]
struct Granted {
    caller: Caller,
    rule: (Object, Verb),
}

impl FromRequestParts<Arc<Shared>> for Cx {
    type Rejection = Resp;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Resp> {
        match parts.extensions.get::<Granted>() {
            Some(g) => Ok(Cx { shared: shared.clone(), caller: g.caller.clone(), rule: g.rule }),
            // A handler taking `Cx` registered with `Routes::open`: a bug, refused rather than run unchecked.
            None => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "this route has no authorization rule")),
        }
    }
}

impl Cx {
    /// The calling user, `None` for the admin token.
    pub(crate) fn member(&self) -> Option<&UserCaller> {
        match &self.caller {
            Caller::Admin => None,
            Caller::User(u) => Some(u),
        }
    }

    /// The caller's team, `None` for the admin token.
    pub(crate) fn team(&self) -> Option<&str> {
        self.member().map(|u| &*u.team)
    }

    /// Whether the caller may see objects of `team_id`.
    pub(crate) fn sees(&self, team_id: &str) -> bool {
        self.team().is_none_or(|t| t == team_id)
    }

    /// Asks the role matrix whether the caller may do what the route does
    /// (its rule) to an object of `owner`.
    pub(crate) fn authorize(&self, owner: Owner<'_>) -> Result<(), Resp> {
        let (object, verb) = self.rule;
        let who = self.member().map(|u| Member { user: &u.user, team: &u.team, role: u.role });
        authz::decide(who, object, verb, owner).map_err(|r| match r {
            Refusal::NotFound => not_found(object.resource().trim_end_matches('s')),
            r => refused(r),
        })
    }

    /// A team-wide object of `team` (the team, its user list, its log).
    pub(crate) fn of_team(team: &str) -> Owner<'_> {
        Owner { team, user: None }
    }

    /// The caller's own team, for platform-only objects (the admin token's is "").
    pub(crate) fn own_team(&self) -> Owner<'_> {
        Owner { team: self.team().unwrap_or(""), user: None }
    }

    /// Refuses what only the platform may do to a user's status: set or lift
    /// Blocked.
    pub(crate) fn may_set_status(&self, current: UserStatus, new: Option<UserStatus>) -> Result<(), Resp> {
        let touches_block = new == Some(UserStatus::Blocked)
            || (current == UserStatus::Blocked && new.is_some_and(|s| s != UserStatus::Blocked));
        if touches_block && self.member().is_some() {
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "only the admin token may block or unblock a user"));
        }
        Ok(())
    }

    /// Refuses handing out a role above the caller's own.
    pub(crate) fn may_grant_role(&self, role: Role) -> Result<(), Resp> {
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
    pub(crate) fn within_grant(
        &self,
        perms: Option<&Permissions>,
        expires_at: Option<Option<Millis>>,
    ) -> Result<(), Resp> {
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
    pub(crate) fn target_team(&self, named: Option<String>, loc: &'static str) -> Result<String, Resp> {
        match (self.team(), named) {
            (None, Some(t)) => Ok(t),
            (None, None) => Err(validation(&[loc, "teamId"], "the admin token must name a team", "missing")),
            (Some(mine), Some(t)) if t != mine => Err(not_found("team")),
            (Some(mine), _) => Ok(mine.to_owned()),
        }
    }

    /// A live (not deleted) user of a team the caller sees.
    pub(crate) fn live_user(&self, id: &str) -> Result<User, Resp> {
        match self.shared.engine.user(id) {
            Ok(u) if self.sees(&u.team_id) && u.status != UserStatus::Deleted => Ok(u),
            Ok(_) => Err(not_found("user")),
            Err(e) => Err(engine_error(e)),
        }
    }

    /// User `id`, if the caller may do what the route does to (or for) them.
    pub(crate) fn user_for(&self, id: &str) -> Result<User, Resp> {
        let u = self.live_user(id)?;
        self.authorize(Owner { team: &u.team_id, user: Some((&u.id, u.role)) })?;
        Ok(u)
    }

    /// How far the caller's role reaches with the route's rule; `None` for the admin token.
    pub(crate) fn reach(&self) -> Option<Reach> {
        self.member().map(|u| authz::reach(u.role, self.rule.0, self.rule.1))
    }

    pub(crate) fn caller_user(&self) -> Result<&UserCaller, Resp> {
        self.member().ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "no_user",
                "access tokens belong to a user; call with a user's credential, not the admin token",
            )
        })
    }
}
