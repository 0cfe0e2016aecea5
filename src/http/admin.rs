//! The admin HTTP API under `/v1/`: login (seed 003), teams, users, API keys
//! (seeds 001 and 002) and access tokens (seed 004), the audit log, reload,
//! plus `/openapi.json`.
//!
//! Routes are declared by resource, each in its module (`auth`, `teams`,
//! `users`, `keys`, `tokens`, `logs`, `config`), and each with what it acts on
//! and how, `(Object, Verb)`, where it is routed (`Routes::guarded`): the
//! route's handler is wrapped so that the caller is authenticated and the
//! credential checked against that rule before the handler runs, the call is
//! audited after it, and the handler's own checks against the object's owner
//! (`Cx::authorize`) take the same rule. That plumbing is `guard`; the
//! extractors (typed query strings, path ids, JSON bodies) and the error
//! answers are `extract`. The route table ([`routes`]) is made by the very
//! registrations that build the router; the OpenAPI document is written
//! apart (`super::openapi`) and checked against it.
//!
//! Every admin call runs on the admin runtime (`Shared::admin_runtime`), not
//! on the workers that serve verifications: its store writes (fsynced, under
//! the engine's admin lock), its audit record and argon2 block that runtime's
//! threads only.
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

mod auth;
mod config;
mod extract;
mod guard;
mod keys;
mod logs;
mod teams;
mod tokens;
mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use parking_lot::Mutex;
use serde_json::Value;

use super::json_response;
use crate::authz::{Object, Verb};
use crate::config::Config;
use crate::core::limits::{FixedWindow, Micros};
use crate::core::model::{Millis, rfc3339};
use crate::core::secret;
use crate::http::Shared;

pub(crate) use guard::credential_owner;

/// What the resource modules use.
mod prelude {
    pub(super) use axum::http::StatusCode;
    pub(super) use serde_json::Value;
    pub(super) use tollgate_api as api;

    pub(super) use super::M::{Delete, Get, Patch, Post};
    pub(super) use super::Routes;
    pub(super) use super::extract::{Fields, Id, Query, Resp, engine_error, no_content, not_found, validation};
    pub(super) use super::guard::Cx;
    pub(super) use crate::authz::{Object, Verb};
    pub(super) use crate::http::{error, json_response};
}

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
    pub fn new(config: &Config) -> Result<AdminState, AdminTokenError> {
        let token = match config.admin_token.clone().or_else(|| std::env::var(ADMIN_TOKEN_ENV).ok()) {
            Some(t) => {
                if t.trim().len() < 16 {
                    return Err(AdminTokenError::TooShort);
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

/// Why the bootstrap admin token cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// `TOLLGATE_ADMIN_TOKEN` (or the configured token) is too short.
    #[error("{ADMIN_TOKEN_ENV}: the admin token must be at least 16 characters")]
    TooShort,
    /// The token file holds a token too short to use.
    #[error("{}: the admin token in this file is shorter than 16 characters", .0.display())]
    FileTooShort(std::path::PathBuf),
    /// The token file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The generated token cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn token_from_file(path: &std::path::Path) -> Result<String, AdminTokenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 16 => return Ok(t.trim().to_owned()),
        Ok(_) => return Err(AdminTokenError::FileTooShort(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(AdminTokenError::Read { path: path.to_owned(), source }),
    }
    let token = secret::generate(&aws_lc_rs::rand::SystemRandom::new(), "tgadmin").plaintext;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(token.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|source| AdminTokenError::Write { path: path.to_owned(), source })?;
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

/// One route of the admin API.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{id}` matches one path segment.
    pub path: &'static str,
    /// The operation's name: the OpenAPI `operationId` and the audit entry's action.
    pub op: &'static str,
    /// What the route acts on and how, for [`crate::authz`]; `None` for the
    /// routes that need no credential (the document itself, login).
    pub authz: Option<(Object, Verb)>,
}

/// The methods admin routes are served with.
#[derive(Clone, Copy, Debug)]
pub(crate) enum M {
    Get,
    Post,
    Patch,
    Delete,
}

impl M {
    fn name(self) -> &'static str {
        match self {
            M::Get => "GET",
            M::Post => "POST",
            M::Patch => "PATCH",
            M::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            M::Get => MethodFilter::GET,
            M::Post => MethodFilter::POST,
            M::Patch => MethodFilter::PATCH,
            M::Delete => MethodFilter::DELETE,
        }
    }
}

/// The admin router being built, and its table.
pub(crate) struct Routes {
    router: Router<Arc<Shared>>,
    table: Vec<Route>,
}

impl Routes {
    /// Routes `method path` to `handler`, which runs only for a credential
    /// that may `rule.1` a `rule.0` (the role matrix, and a key's own grant),
    /// and whose call is audited as `op`. The handler gets the caller and the
    /// rule with [`guard::Cx`].
    fn guarded<H, T>(&mut self, method: M, path: &'static str, op: &'static str, rule: (Object, Verb), handler: H)
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(Route { method: method.name(), path, op, authz: Some(rule) }, method, handler);
    }

    /// Routes `method path` to `handler`, which needs no credential.
    fn open<H, T>(&mut self, method: M, path: &'static str, op: &'static str, handler: H)
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(Route { method: method.name(), path, op, authz: None }, method, handler);
    }

    fn add<H, T>(&mut self, route: Route, method: M, handler: H)
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        let router = std::mem::take(&mut self.router);
        self.router = router.route(route.path, on(method.filter(), guard::Admin::new(route, handler)));
        self.table.push(route);
    }
}

/// Path of the login route (`POST`), whose failures `/metrics` counts.
pub const LOGIN_PATH: &str = "/v1/auth/token";

/// The admin router (its state still to be given) and its route table.
pub(crate) fn build() -> (Router<Arc<Shared>>, Vec<Route>) {
    let mut r = Routes { router: Router::new(), table: Vec::new() };
    r.open(M::Get, "/openapi.json", "OpenApi", openapi_handler);
    auth::routes(&mut r);
    teams::routes(&mut r);
    users::routes(&mut r);
    keys::routes(&mut r);
    tokens::routes(&mut r);
    logs::routes(&mut r);
    config::routes(&mut r);
    (r.router, r.table)
}

/// Every route the admin router serves, as registered with it; the OpenAPI
/// document must list exactly these (tests/it/admin_api.rs).
pub fn routes() -> Vec<Route> {
    build().1
}

// ---- JSON forms shared by the resources ----

fn ts(ms: Millis) -> String {
    rfc3339(ms)
}

/// A time that may be unset (`None` or 0): RFC 3339, or `null`.
fn opt_ts(ms: Option<Millis>) -> Option<String> {
    ms.filter(|&m| m != 0).map(ts)
}

// ---- OpenAPI ----

/// `GET /openapi.json`: [`super::openapi::document`], serialized once.
async fn openapi_handler() -> Response {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(super::openapi::document()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document could not be serialized");
            Value::Null
        })
    });
    json_response(StatusCode::OK, &*DOC)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Each route is registered once, and its operation names it alone (the
    /// audit entry's action and the OpenAPI `operationId`).
    #[test]
    fn routes_and_operations_are_unique() {
        let table = routes();
        let routes: std::collections::HashSet<_> = table.iter().map(|r| (r.method, r.path)).collect();
        let ops: std::collections::HashSet<_> = table.iter().map(|r| r.op).collect();
        assert_eq!(routes.len(), table.len());
        assert_eq!(ops.len(), table.len());
        // Only the document and login need no credential.
        let open: Vec<_> = table.iter().filter(|r| r.authz.is_none()).map(|r| r.op).collect();
        assert_eq!(open, ["OpenApi", "Login"]);
    }
}
