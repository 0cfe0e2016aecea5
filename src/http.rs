//! The HTTP server: an axum [`Router`] served by hyper (HTTP/1.1) through
//! [`listen`], which owns the connections (timeouts, cap, TLS, drain). Routes:
//! health, readiness, metrics, JWKS, JSON verification (`/v1/verify`),
//! nginx's `auth_request` (`/auth`, see `nginx`), and the admin API (`admin`).
//! Handlers return JSON; errors are `{"error": {"code", "message"}}` with a
//! stable code, never a 500 for bad input; an unknown path is a JSON 404, a
//! known path with another method a JSON 405 with `Allow`.
//!
//! Every request goes through the access layer (`AccessLayer`): it has an id (a well-formed
//! `X-Request-Id` is kept, else one is made), sent back in `X-Request-Id`; an
//! admin call runs in an `http` span carrying it (on the admin runtime, see
//! `admin::guard`), a verification opens no span: the id is on its access line,
//! and a span per request costs the verification routes measurably
//! (BENCHMARKS.md, "HTTP on axum"). One access line per request at INFO
//! (target `tollgate::access`) gives the method, the route template (axum's
//! [`MatchedPath`], never the raw path), the status, the time taken, the
//! client, the id and a verification's verdict; at debug level also the path
//! (query dropped, credential-like segments replaced). Inside it,
//! tower-http's `CatchPanicLayer` turns a handler's panic into a JSON 500.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde::Serialize;
use tokio::sync::watch;
use tollgate_api as api;

use crate::config::Config;
use crate::core::verify::{CredentialKind, Verdict, VerifyRequest};
use crate::engine::Engine;
use crate::metrics::Interface;
use crate::metrics::Metrics;

pub mod admin;
pub mod listen;
mod nginx;
pub mod openapi;

/// Largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A response body.
pub type Body = axum::body::Body;

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
            service_fn(|req: hyper::Request<Incoming>| async move {
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

fn starting_answer(method: &Method, path: &str) -> Response {
    match (method, path) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &healthy()),
        (&Method::GET, "/readyz") => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &api::Readiness {
                checks: api::ReadinessChecks {
                    cluster: None,
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
/// true, then drains (see [`listen`]). Each connection serves [`router`] with
/// its peer's address in the request's [`Peer`]; Unix-socket peers have no
/// address: `/auth` trusts their forwarding headers, as it does a trusted proxy's.
pub async fn serve(
    listener: listen::Listener,
    conns: Arc<listen::Connections>,
    limits: listen::Limits,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let opts = listen::Options { limits, keep_alive: true, detach_on_stop: false };
    let app = router(shared);
    let make = |peer: Option<IpAddr>| {
        let app = app.clone();
        service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        })
    };
    listen::serve(&listener, &conns, opts, make, stop).await;
}

/// Every route the daemon serves over HTTP, with the layers around them:
/// the access layer (request id, access line, metrics) outside, tower-http's
/// catch-panic inside it. Admin routes run on the admin runtime (see
/// [`admin`]); the others where the connection is served.
pub fn router(shared: Arc<Shared>) -> Router {
    let (admin, _) = admin::build();
    let (fixed, _) = fixed();
    fixed
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One layer (one boxing of each route), the access layer outside.
        .layer(tower::ServiceBuilder::new().layer(AccessLayer(shared.clone())).layer(catch_panic()))
        .with_state(shared)
}

/// The methods a fixed route is served with.
#[derive(Clone, Copy)]
enum On {
    Get,
    Post,
    /// Every method (`/auth`: nginx may pass the original request's on).
    Any,
}

/// The routes besides the admin API's, and their table: each `(method,
/// path)` is recorded by the registration that routes it.
fn fixed() -> (Router<Arc<Shared>>, Vec<(&'static str, &'static str)>) {
    struct Fixed(Router<Arc<Shared>>, Vec<(&'static str, &'static str)>);
    impl Fixed {
        fn route<H: axum::handler::Handler<T, Arc<Shared>>, T: 'static>(
            mut self,
            on: On,
            path: &'static str,
            handler: H,
        ) -> Fixed {
            let (methods, route) = match on {
                On::Get => (&["GET"][..], get(handler)),
                On::Post => (&["POST"][..], post(handler)),
                On::Any => (&openapi::ANY_METHODS[..], any(handler)),
            };
            self.1.extend(methods.iter().map(|m| (*m, path)));
            Fixed(self.0.route(path, route), self.1)
        }
    }
    let f = Fixed(Router::new(), Vec::new())
        .route(On::Get, "/healthz", healthz)
        .route(On::Get, "/readyz", readyz)
        .route(On::Get, "/metrics", metrics)
        .route(On::Get, "/.well-known/jwks.json", jwks)
        .route(On::Post, "/v1/verify", verify)
        .route(On::Any, "/auth", auth);
    (f.0, f.1)
}

/// Every `(method, path)` the router serves besides the admin API's
/// ([`admin::routes`]), as registered with it; `/auth` (any method) is listed
/// with each method OpenAPI can describe.
pub fn fixed_routes() -> Vec<(&'static str, &'static str)> {
    fixed().1
}

/// What answers for a handler that panicked: [`panicked`].
type PanicHandler = fn(Box<dyn std::any::Any + Send>) -> Response;

/// tower-http's catch-panic, answering with [`panicked`].
fn catch_panic() -> tower_http::catch_panic::CatchPanicLayer<PanicHandler> {
    tower_http::catch_panic::CatchPanicLayer::custom(|p| panicked(&*p, "http"))
}

/// The connection's peer: its IP, `None` on the HTTP Unix socket. Put on
/// every request by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    fn of(ext: &axum::http::Extensions) -> Option<IpAddr> {
        ext.get::<Peer>().and_then(|p| p.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Peer(Peer::of(&parts.extensions)))
    }
}

/// The verdict of a verification, put on its answer for the access line:
/// `ALLOW`, a deny code, or `MISSING_CREDENTIAL`.
#[derive(Clone, Copy)]
struct VerdictCode(&'static str);

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

/// What the HTTP handlers share: built by `server`, which owns the
/// listeners; a reload borrows its parts ([`Shared::live`]).
pub struct Shared {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The configuration in force; a reload swaps it (see `reload`).
    pub config: ArcSwap<Config>,
    /// Set once every listener is bound (the index is loaded before); cleared
    /// when draining starts.
    pub ready: AtomicBool,
    /// The admin API's state: the bootstrap token, login limiters.
    pub admin: crate::http::admin::AdminState,
    /// The audit log of admin calls and denied verifications.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Counters behind `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Serializes reloads (SIGHUP and the admin endpoint may race).
    pub reload_lock: parking_lot::Mutex<()>,
    /// The HTTPS certificate in force, when the TCP listener speaks TLS; a
    /// reload replaces it for new connections.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The runtime the admin API runs on (see `server::ADMIN_WORKERS`): apart from
    /// the one serving the socket, `/auth` and `/v1/verify`.
    pub admin_runtime: tokio::runtime::Handle,
}

impl Shared {
    /// What a configuration reload reads and replaces.
    pub fn live(&self) -> crate::reload::Live<'_> {
        crate::reload::Live {
            config: &self.config,
            engine: &self.engine,
            metrics: &self.metrics,
            tls: self.tls.as_deref(),
            lock: &self.reload_lock,
        }
    }

    /// Whether the daemon should get traffic, and why: the index is loaded
    /// (always, once `Shared` exists), every listener is bound and not
    /// draining, and the store's last write succeeded.
    pub fn readiness(&self) -> (bool, tollgate_api::Readiness) {
        let listeners = self.ready.load(Ordering::Acquire);
        let store_ok = !self.engine.store().stats().failing.load(Ordering::Relaxed);
        // A cluster node refusing to verify (stale) sends its traffic elsewhere.
        let ready = listeners && store_ok && self.engine.refusing().is_none();
        let body = tollgate_api::Readiness {
            checks: tollgate_api::ReadinessChecks {
                cluster: self.engine.cluster_state(),
                index: "loaded".to_owned(),
                listeners: if listeners { "bound" } else { "not serving (starting or draining)" }.to_owned(),
                store: if store_ok { "ok" } else { "the last write failed" }.to_owned(),
            },
            status: if ready { "ready" } else { "not_ready" }.to_owned(),
        };
        (ready, body)
    }
}

const X_REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// The route an access line and the metrics name a request by: the template
/// of the route that served it, `unmatched` when none did (no such path, or
/// an admin path with a method it does not serve).
fn route_name(matched: Option<&MatchedPath>, admin: bool, status: StatusCode) -> &str {
    match matched {
        Some(m) if !(admin && status == StatusCode::METHOD_NOT_ALLOWED) => m.as_str(),
        _ => "unmatched",
    }
}

/// The `method` label of a served admin route (the methods the admin API routes).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "any",
    }
}

/// The layer every route is wrapped in (outermost): [`Access`].
#[derive(Clone)]
struct AccessLayer(Arc<Shared>);

impl<S> tower::Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Access<S> {
        Access { inner, shared: self.0.clone() }
    }
}

/// One request: its id (kept from `X-Request-Id` or made; put on admin
/// requests for their audit entries and their span), the access line at INFO
/// (`tollgate::access`), the admin-API metrics, the id on the answer. A tower
/// service written out rather than `axum::middleware::from_fn`, whose boxed
/// futures and per-request clones of the inner route cost the verification
/// routes measurably (BENCHMARKS.md, "HTTP on axum").
#[derive(Clone)]
struct Access<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> tower::Service<Request> for Access<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
{
    type Response = axum::http::Response<B>;
    type Error = S::Error;
    type Future = AccessFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let incoming =
            req.headers().get(X_REQUEST_ID).and_then(|v| RequestId::parse(v.as_bytes()).map(|id| (id, v.clone())));
        let (id, id_header) = match incoming {
            Some((id, v)) => (id, Some(v)),
            None => (RequestId::generate(), None),
        };
        // The raw path (credential-like segments replaced) only at debug level.
        let path = tracing::enabled!(target: "tollgate::access", tracing::Level::DEBUG)
            .then(|| loggable_path(&self.shared, req.uri().path()));
        let admin = is_admin_path(req.uri().path());
        if admin {
            // For the audit entries (admin calls only: verifications need no
            // id past this layer, and each extension allocates).
            req.extensions_mut().insert(id);
        }
        let done = Done {
            start,
            id,
            id_header,
            method: req.method().clone(),
            peer: Peer::of(req.extensions()),
            path,
            admin,
            matched: req.extensions().get::<MatchedPath>().cloned(),
            shared: self.shared.clone(),
        };
        AccessFuture { inner: self.inner.call(req), done: Some(done) }
    }
}

pin_project_lite::pin_project! {
    /// The route's answer, then the access line.
    struct AccessFuture<F> {
        #[pin]
        inner: F,
        done: Option<Done>,
    }
}

impl<F, B, E> std::future::Future for AccessFuture<F>
where
    F: std::future::Future<Output = Result<axum::http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let mut out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(done)) = (&mut out, this.done.take()) {
            done.finish(resp);
        }
        std::task::Poll::Ready(out)
    }
}

/// What the access line needs of a request, kept until its answer.
struct Done {
    start: Instant,
    id: RequestId,
    id_header: Option<HeaderValue>,
    method: Method,
    peer: Option<IpAddr>,
    path: Option<String>,
    admin: bool,
    matched: Option<MatchedPath>,
    shared: Arc<Shared>,
}

impl Done {
    /// The access line, the admin-API metrics, the id on the answer.
    fn finish<B>(self, resp: &mut axum::http::Response<B>) {
        let status = resp.status();
        let elapsed = self.start.elapsed();
        let route = route_name(self.matched.as_ref(), self.admin, status);
        if self.admin {
            let label = if route == "unmatched" { "any" } else { method_label(&self.method) };
            self.shared.metrics.admin_request(label, route, status.as_u16(), elapsed);
            if route == admin::LOGIN_PATH && self.method == Method::POST && !status.is_success() {
                self.shared.metrics.login_failed(status.as_u16());
            }
        }
        let verdict = resp.extensions().get::<VerdictCode>().map(|v| v.0);
        crate::logging::access(&crate::logging::Access {
            method: self.method.as_str(),
            route,
            status: status.as_u16(),
            micros: elapsed.as_micros() as u64,
            client: self.peer,
            request_id: self.id.as_str(),
            verdict,
            path: self.path.as_deref(),
        });
        let header = self.id_header.or_else(|| HeaderValue::from_str(self.id.as_str()).ok());
        if let Some(v) = header {
            resp.headers_mut().insert(X_REQUEST_ID, v);
        }
    }
}

/// The answer to a request whose handler panicked: a 500 in the usual error
/// shape, and an error line with the panic's message (the panic hook has
/// printed it with its location too).
pub(crate) fn panicked(payload: &(dyn std::any::Any + Send), what: &str) -> Response {
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

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A path that is served, with a method it is not served with; axum adds `Allow`.
async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &healthy())
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let (ready, body) = shared.readiness();
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &shared.engine.jwt().jwks())
}

/// `/auth` (any method): see `nginx`.
async fn auth(State(shared): State<Arc<Shared>>, Peer(peer): Peer, req: Request) -> Response {
    let (mut resp, verdict) = nginx::auth(&shared, req, peer).await;
    if let Some(v) = verdict {
        resp.extensions_mut().insert(VerdictCode(v));
    }
    resp
}

/// The `/healthz` answer.
fn healthy() -> api::Health {
    api::Health { status: "ok".to_owned() }
}

/// `GET /metrics`: the Prometheus text format. Open unless
/// `metrics.require_admin_token` is set (then `Authorization: Bearer <admin token>`).
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if shared.config.load().metrics.require_admin_token {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
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
    let mut r = Response::new(Body::from(crate::metrics::render(&shared.metrics, &gauges)));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    r
}

/// `POST /v1/verify`: the verdict as JSON, its code on the answer for the access line.
async fn verify(
    State(shared): State<Arc<Shared>>,
    Peer(peer): Peer,
    JsonBody(body): JsonBody<api::VerifyRequest>,
) -> Response {
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
    if let Some(why) = engine.refusing() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why);
    }
    let now = crate::engine::now_us();
    let verdict = engine.verify_at(&req, now);
    shared.metrics.count(&verdict, &body.credential);
    match &verdict {
        Verdict::Allow(a) => {
            if let Some(t) = a.durable_after {
                engine.wait_durable_async(t).await;
            }
        }
        Verdict::Deny(d) => audit_denied(&shared, &body.credential, now, d.code.as_str(), "verify"),
    }
    let mut resp = json_response(StatusCode::OK, &verdict_body(&verdict));
    shared.metrics.latency(Interface::HttpVerify, start.elapsed(), 1);
    let code = match &verdict {
        Verdict::Allow(_) => "ALLOW",
        Verdict::Deny(d) => d.code.as_str(),
    };
    resp.extensions_mut().insert(VerdictCode(code));
    resp
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

/// A JSON request body of type `T` (see [`read_json`]); the rejection is the
/// ready error answer. No `Content-Type` is required: `curl -d` sends a form
/// type, and the README's examples use it.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        read_json(req).await.map(JsonBody)
    }
}

/// Reads a JSON body of at most `MAX_BODY_BYTES`; the error is a ready
/// response: 413 for a body over the limit (a `Content-Length` over it is
/// refused before anything is read), 400 for one that ends before its
/// `Content-Length` (the client closed early) or cannot be read, 400 for
/// one that is not JSON of the expected shape.
pub async fn read_json<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, Response> {
    read_json_within(req, MAX_BODY_BYTES).await
}

/// [`read_json`] with a body of at most `limit` bytes (`POST /v1/keys/import`
/// takes [`api::MAX_IMPORT_BODY_BYTES`]).
pub async fn read_json_within<T: serde::de::DeserializeOwned>(req: Request, limit: usize) -> Result<T, Response> {
    let too_large =
        || error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &format!("request body larger than {limit} bytes"));
    let declared =
        req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes: Bytes = match Limited::new(req.into_body(), limit).collect().await {
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
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
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
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON error response with a stable machine code ([`api::ErrorResponse`]).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
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
        // And the layer the router has turns a handler's panic into that answer.
        async fn boom() -> Response {
            panic!("in a handler")
        }
        let app: Router = Router::new().route("/p", get(boom)).layer(catch_panic());
        let req = Request::get("/p").body(Body::empty()).unwrap();
        let resp = rt.block_on(tower::ServiceExt::oneshot(app, req)).unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"], "internal");
    }
}
