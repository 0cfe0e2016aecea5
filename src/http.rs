//! The HTTP server (hyper 1, HTTP/1.1): health, readiness, metrics, JWKS, JSON
//! verification, and the routes of `http/*`. Handlers return JSON; errors are
//! `{"error": {"code", "message"}}` with a stable code, never a 500 for bad input.
//!
//! Every request has an id (a well-formed `X-Request-Id` is kept, else one is
//! made), sent back in `X-Request-Id`, and runs in an `http` span carrying it.
//! One access line per request at INFO (target `tollgate::access`) gives the
//! method, the route template (never the raw path), the status, the time
//! taken, the client, the id and a verification's verdict; at debug level
//! also the path (query dropped, credential-like segments replaced).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::watch;
use tollgate_api as api;
use tracing::Instrument as _;

use crate::core::verify::{CredentialKind, Verdict, VerifyRequest};
use crate::metrics::Interface;
use crate::server::Shared;

pub mod admin;
pub mod listen;
mod nginx;

/// Largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A response body.
pub type Body = Full<Bytes>;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers on `listener` while the daemon starts (the store opens, the index
/// loads): `/healthz` is 200, `/readyz` and every other route 503, one request
/// per connection. Returns the listener once `done` fires, for the real server.
pub async fn serve_starting(
    listener: listen::Listener,
    conns: Arc<listen::Connections>,
    limits: listen::Limits,
    done: tokio::sync::oneshot::Receiver<()>,
) -> listen::Listener {
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let opts = listen::Options { limits, keep_alive: false, detach_on_stop: true };
        let make = |_| {
            service_fn(|req: Request<Incoming>| async move {
                Ok::<_, Infallible>(starting_answer(req.method(), req.uri().path()))
            })
        };
        let serving = listen::serve(&listener, &conns, opts, make, stop_rx);
        tokio::pin!(serving);
        tokio::select! {
            () = &mut serving => {}
            _ = done => {
                let _ = stop_tx.send(true);
                serving.await;
            }
        }
    }
    listener
}

fn starting_answer(method: &Method, path: &str) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &healthy()),
        (&Method::GET, "/readyz") => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &api::Readiness {
                checks: api::ReadinessChecks {
                    index: "loading".to_owned(),
                    listeners: "not serving (starting or draining)".to_owned(),
                    store: "opening".to_owned(),
                },
                status: "not_ready".to_owned(),
            },
        ),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the daemon is starting: the index is loading"),
    }
}

/// Serves HTTP on `listener` (TCP, TLS or a Unix socket) until `stop` turns
/// true, then drains (see [`listen`]). Unix-socket peers have no address:
/// `/auth` trusts their forwarding headers, as it does a trusted proxy's.
pub async fn serve(
    listener: listen::Listener,
    conns: Arc<listen::Connections>,
    limits: listen::Limits,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let opts = listen::Options { limits, keep_alive: true, detach_on_stop: false };
    let make = |peer: Option<IpAddr>| {
        let shared = shared.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(&shared, req, peer).await) }
        })
    };
    listen::serve(&listener, &conns, opts, make, stop).await;
}

/// Largest request id kept from an `X-Request-Id` header, in bytes.
pub const MAX_REQUEST_ID: usize = 64;

/// A request's id: the caller's `X-Request-Id` when well formed (1 to
/// [`MAX_REQUEST_ID`] characters of `[A-Za-z0-9._-]`), else one made here,
/// unique within the process and across restarts by the process's start time
/// in front (`<start ms, hex>-<sequence>`). Kept inline: making or copying one
/// allocates nothing.
#[derive(Clone, Copy)]
pub struct RequestId {
    buf: [u8; MAX_REQUEST_ID],
    len: u8,
}

impl RequestId {
    /// A new id.
    pub fn generate() -> RequestId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(|| crate::engine::now_us() / 1000);
        let mut id = RequestId { buf: [0; MAX_REQUEST_ID], len: 0 };
        let mut w = &mut id.buf[..];
        // Two u64 in hex and decimal with a dash: at most 16 + 1 + 20 bytes.
        let _ = std::io::Write::write_fmt(&mut w, format_args!("{epoch:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let left = w.len();
        id.len = (MAX_REQUEST_ID - left) as u8;
        id
    }

    /// `value` as an id, if it is well formed.
    pub fn parse(value: &[u8]) -> Option<RequestId> {
        let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if value.is_empty() || value.len() > MAX_REQUEST_ID || !value.iter().all(ok) {
            return None;
        }
        let mut id = RequestId { buf: [0; MAX_REQUEST_ID], len: value.len() as u8 };
        id.buf[..value.len()].copy_from_slice(value);
        Some(id)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (parse checks it, generate writes digits).
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// What a handler tells the access line and the metrics about a request.
pub(crate) struct Outcome {
    /// The route template (`/v1/keys/{id}`), never the raw path: `unmatched`
    /// when no route serves the path.
    route: &'static str,
    /// The verdict of a verification (`/v1/verify`, `/auth`): `ALLOW`, a deny
    /// code, or `MISSING_CREDENTIAL`.
    verdict: Option<&'static str>,
    /// An admin-API request: the index of its route in [`admin::ROUTES`]
    /// (`Some(None)` when none matched).
    admin: Option<Option<usize>>,
}

const X_REQUEST_ID: hyper::header::HeaderName = hyper::header::HeaderName::from_static("x-request-id");

/// One request: its id (kept from `X-Request-Id` or made), its span, the
/// route, the access line at INFO (`tollgate::access`), the admin-API metrics.
async fn handle(shared: &Shared, mut req: Request<Incoming>, peer: Option<IpAddr>) -> Response<Body> {
    let start = Instant::now();
    let incoming =
        req.headers().get(X_REQUEST_ID).and_then(|v| RequestId::parse(v.as_bytes()).map(|id| (id, v.clone())));
    let (id, id_header) = match incoming {
        Some((id, v)) => (id, Some(v)),
        None => (RequestId::generate(), None),
    };
    let span = tracing::info_span!("http", req = %id);
    let method = req.method().clone();
    // The raw path (credential-like segments replaced) only at debug level.
    let path = tracing::enabled!(target: "tollgate::access", tracing::Level::DEBUG)
        .then(|| loggable_path(shared, req.uri().path()));
    if is_admin_path(req.uri().path()) {
        // For the admin API's audit entries (admin calls only: the extension
        // map allocates, and verifications need no id past this function).
        req.extensions_mut().insert(id);
    }
    let mut outcome = Outcome { route: "unmatched", verdict: None, admin: None };
    // A panic in a handler answers 500 instead of dropping the connection
    // (validation comes before every write, so no partial write is left behind).
    let mut resp = std::panic::AssertUnwindSafe(route(shared, req, peer, &mut outcome).instrument(span.clone()))
        .catch_unwind()
        .await
        .unwrap_or_else(|p| span.in_scope(|| panicked(&*p, "http")));
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    if let Some(route) = outcome.admin {
        shared.metrics.admin_request(route, status, elapsed);
        if route.is_some_and(|r| admin::ROUTES[r].path == admin::LOGIN_PATH) && !resp.status().is_success() {
            shared.metrics.login_failed(status);
        }
    }
    crate::logging::access(&crate::logging::Access {
        method: method.as_str(),
        route: outcome.route,
        status,
        micros: elapsed.as_micros() as u64,
        client: peer,
        request_id: id.as_str(),
        verdict: outcome.verdict,
        path: path.as_deref(),
    });
    let header = id_header.or_else(|| HeaderValue::from_str(id.as_str()).ok());
    if let Some(v) = header {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

/// The answer to a request whose handler panicked: a 500 in the usual error
/// shape, and an error line with the panic's message (the panic hook has
/// printed it with its location too).
pub(crate) fn panicked(payload: &(dyn std::any::Any + Send), what: &str) -> Response<Body> {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "{what}: a handler panicked; answered 500");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the daemon's log")
}

/// The path for the request line: [`crate::logging::loggable_path`], and a
/// segment that is the admin token (which may have any shape when it comes
/// from the environment) replaced too.
fn loggable_path(shared: &Shared, path: &str) -> String {
    let path = crate::logging::loggable_path(path);
    let admin = |seg: &str| !seg.is_empty() && shared.admin.is_admin_token(seg);
    if !path.split('/').any(admin) {
        return path.into_owned();
    }
    path.split('/').map(|seg| if admin(seg) { "<credential>" } else { seg }).collect::<Vec<_>>().join("/")
}

/// Whether `path` is the admin API's: `/v1/...` but `/v1/verify`, and `/openapi.json`.
fn is_admin_path(path: &str) -> bool {
    (path.starts_with("/v1/") && path != "/v1/verify") || path == "/openapi.json"
}

/// The fixed routes served here, as the access line names them.
const FIXED_ROUTES: [&str; 6] = ["/healthz", "/readyz", "/metrics", "/.well-known/jwks.json", "/v1/verify", "/auth"];

async fn route(shared: &Shared, req: Request<Incoming>, peer: Option<IpAddr>, out: &mut Outcome) -> Response<Body> {
    let path = req.uri().path();
    if let Some(fixed) = FIXED_ROUTES.iter().find(|&&r| r == path) {
        out.route = fixed;
    } else if is_admin_path(path) {
        let index = admin::route_index(req.method(), path);
        out.admin = Some(index);
        out.route = index.map_or("unmatched", |i| admin::ROUTES[i].path);
    }
    match (req.method(), out.route) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &healthy()),
        (&Method::GET, "/readyz") => {
            let (ready, body) = shared.readiness();
            json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
        }
        (&Method::GET, "/metrics") => metrics(shared, req.headers()),
        (&Method::GET, "/.well-known/jwks.json") => json_response(StatusCode::OK, &shared.engine.jwt().jwks()),
        (&Method::POST, "/v1/verify") => match read_json::<api::VerifyRequest>(req).await {
            Ok(body) => {
                let (resp, verdict) = verify(shared, &body, peer).await;
                out.verdict = Some(verdict);
                resp
            }
            Err(resp) => resp,
        },
        (_, "/auth") => {
            let (resp, verdict) = nginx::auth(shared, req, peer).await;
            out.verdict = verdict;
            resp
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/.well-known/jwks.json" | "/v1/verify") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        }
        _ if out.admin.is_some() => admin::route(shared, req, peer).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

/// The `/healthz` answer.
fn healthy() -> api::Health {
    api::Health { status: "ok".to_owned() }
}

/// `GET /metrics`: the Prometheus text format. Open unless
/// `metrics.require_admin_token` is set (then `Authorization: Bearer <admin token>`).
fn metrics(shared: &Shared, headers: &hyper::HeaderMap) -> Response<Body> {
    if shared.config.load().metrics.require_admin_token {
        let presented = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !presented.is_some_and(|t| shared.admin.is_admin_token(t)) {
            return error(StatusCode::UNAUTHORIZED, "unauthorized", "/metrics needs the admin token as a bearer token");
        }
    }
    let engine = &shared.engine;
    let index = engine.index();
    let jwt = engine.jwt();
    let stats = engine.store().stats();
    let gauges = crate::metrics::Gauges {
        ready: shared.readiness().0,
        teams: index.teams.len(),
        users: index.users.len(),
        keys: index.keys.len(),
        tokens: index.tokens.len(),
        jwt_cache: jwt.cache_stats(),
        jwt_keys: jwt.settings().keys.len(),
        store_writes: stats.writes.snapshot(),
        store_write_failures: stats.failures.load(Ordering::Relaxed),
        flush_failures: engine.flush_failures(),
        audit_dropped: shared.audit.dropped(),
        audit_sampled: shared.audit.sampled(),
        audit_trimmed: shared.audit.trimmed(),
    };
    let mut r = Response::new(Full::new(Bytes::from(crate::metrics::render(&shared.metrics, &gauges))));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    r
}

/// `POST /v1/verify`: the answer, and the verdict's code for the access line.
async fn verify(shared: &Shared, body: &api::VerifyRequest, peer: Option<IpAddr>) -> (Response<Body>, &'static str) {
    let start = Instant::now();
    let perms: Vec<(&str, &str)> =
        body.permissions.iter().flat_map(|(r, acts)| acts.iter().map(move |a| (r.as_str(), a.as_str()))).collect();
    let req = VerifyRequest {
        credential: &body.credential,
        ip: body.ip.or(peer),
        permissions: &perms,
        cost: body.cost,
        quota: body.quota.as_ref().map(|q| (q.name.as_str(), q.amount)),
    };
    let engine = &shared.engine;
    let now = crate::engine::now_us();
    let verdict = engine.verify_at(&req, now);
    shared.metrics.count(&verdict, &body.credential);
    match &verdict {
        Verdict::Allow(a) => {
            if let Some(t) = a.durable_after {
                engine.wait_durable_async(t).await;
            }
        }
        Verdict::Deny(d) => audit_denied(shared, &body.credential, now, d.code.as_str(), "verify"),
    }
    let resp = json_response(StatusCode::OK, &verdict_body(&verdict));
    shared.metrics.latency(Interface::HttpVerify, start.elapsed(), 1);
    let code = match &verdict {
        Verdict::Allow(_) => "ALLOW",
        Verdict::Deny(d) => d.code.as_str(),
    };
    (resp, code)
}

/// Hands a denial to the audit log without waiting; only the credential's
/// hash leaves here (computed on the deny path only), never the credential.
/// `action` is `verify` (`POST /v1/verify`) or `admin` (an admin route's
/// credential check). A denial naming no known credential is counted and
/// sampled ([`AuditLog::unattributed`](crate::audit::AuditLog::unattributed));
/// an attributed one on `/v1/verify` is queued for the writer, and one on an
/// admin route is recorded by the route itself, with the operation refused.
pub fn audit_denied(shared: &Shared, credential: &str, at: u64, code: &'static str, action: &'static str) {
    use crate::metrics::DenySource;
    let Some(code) = crate::core::verify::DenyCode::ALL.iter().copied().find(|c| c.as_str() == code) else {
        return;
    };
    if action == "verify" {
        shared.audit.verification_denied(&shared.metrics, DenySource::HttpVerify, credential, code, at);
    } else if admin::credential_owner(shared, credential, at).is_none() {
        let jwt = crate::core::verify::looks_like_jwt(credential);
        shared.audit.unattributed(&shared.metrics, DenySource::Admin, Some(code), jwt, at);
    }
}

/// The answer form of a verdict ([`api::Verdict`]), shared by every HTTP
/// route that reports one.
pub fn verdict_body(v: &Verdict) -> api::Verdict {
    let rate = |r: &crate::core::limits::RateInfo| api::RateLimitInfo {
        limit: r.limit,
        remaining: r.remaining,
        reset_ms: r.reset_ms,
    };
    match v {
        Verdict::Allow(a) => api::Verdict::Allow(api::Allow {
            credential_id: a.credential_id().to_owned(),
            kind: match a.kind {
                CredentialKind::ApiKey => api::CredentialKind::ApiKey,
                CredentialKind::AccessToken => api::CredentialKind::AccessToken,
                CredentialKind::Jwt => api::CredentialKind::Jwt,
            },
            permissions: a
                .permissions()
                .entries()
                .map(|(resource, actions)| (resource.to_owned(), actions.map(str::to_owned).collect()))
                .collect(),
            rate_limit: a.rate_limit.as_ref().map(rate),
            remaining: a.remaining,
            roles: vec![a.role.as_str().to_owned()],
            subject: a.subject().to_owned(),
            team: a.team().to_owned(),
            valid: api::True,
        }),
        Verdict::Deny(d) => api::Verdict::Deny(api::Deny {
            code: d.code.as_str().to_owned(),
            rate_limit: d.rate_limit.as_ref().map(rate),
            reason: d.reason.to_owned(),
            retry_after_ms: d.retry_after_ms,
            valid: api::False,
        }),
    }
}

/// Reads a JSON body of at most `MAX_BODY_BYTES`; the error is a ready
/// response: 413 for a body over the limit (a `Content-Length` over it is
/// refused before anything is read), 400 for one that ends before its
/// `Content-Length` (the client closed early) or cannot be read.
pub async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            tracing::debug!(error = %e, "request body unreadable");
            return Err(error(
                StatusCode::BAD_REQUEST,
                "incomplete_body",
                "the request body ended before its Content-Length, or could not be read",
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()))
}

/// A JSON response: `body` serialized (one of the [`api`] types, or a
/// `serde_json::Value`).
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        // Only a map with non-string keys or a failing `Serialize` gets here:
        // a bug, answered like a panicking handler.
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be serialized; answered 500");
            let internal = api::ErrorResponse::new("internal", "internal error; see the daemon's log");
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &internal);
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON error response with a stable machine code ([`api::ErrorResponse`]).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &api::ErrorResponse::new(code, message))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn request_ids_are_kept_when_well_formed() {
        assert_eq!(RequestId::parse(b"abc-DEF_0.9").unwrap().as_str(), "abc-DEF_0.9");
        assert_eq!(RequestId::parse(&[b'a'; 64]).unwrap().as_str().len(), 64);
        for bad in [&b""[..], &[b'a'; 65], b"a b", b"a/b", b"a\"b", "é".as_bytes(), b"a\x00"] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a.as_str(), b.as_str());
        assert!(RequestId::parse(a.as_str().as_bytes()).is_some(), "a made id is well formed: {a}");
    }

    /// A panicking handler becomes the usual error answer, whatever the payload.
    #[test]
    fn a_panic_is_a_json_500() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for payload in [
            std::panic::catch_unwind(|| panic!("static message")).unwrap_err(),
            std::panic::catch_unwind(|| panic!("formatted {}", 1)).unwrap_err(),
            std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err(),
        ] {
            let resp = panicked(&*payload, "test");
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "internal");
        }
        // And the guard around a handler's future turns its panic into that answer.
        let resp = rt.block_on(async {
            std::panic::AssertUnwindSafe(async { panic!("in a handler") })
                .catch_unwind()
                .await
                .unwrap_or_else(|p| panicked(&*p, "test"))
        });
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
