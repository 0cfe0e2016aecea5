//! The HTTP server (hyper 1, HTTP/1.1): health, JWKS, JSON verification, and
//! the routes of `http/*`. Handlers return JSON; errors are
//! `{"error": {"code", "message"}}` with a stable code, never a 500 for bad input.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::core::verify::{CredentialKind, Verdict, VerifyRequest};
use crate::server::Shared;

pub mod admin;
mod nginx;

/// Largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A response body.
pub type Body = Full<Bytes>;

/// Serves HTTP on a TCP listener until `stop` turns true, then drains.
pub async fn serve_tcp(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut accept_stop = stop.clone();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(TokioIo::new(stream), Some(peer.ip()), shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut accept_stop) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Serves HTTP on a Unix socket until `stop` turns true, then drains. Its peers
/// have no address: `/auth` trusts their forwarding headers, as it does a
/// trusted proxy's.
pub async fn serve_unix(listener: tokio::net::UnixListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut accept_stop = stop.clone();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    conns.spawn(serve_conn(TokioIo::new(stream), None, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "http unix accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut accept_stop) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn serve_conn<I>(io: I, peer: Option<IpAddr>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(&shared, req, peer).await) }
    });
    let conn = http1::Builder::new().keep_alive(true).serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn route(shared: &Shared, req: Request<Incoming>, peer: Option<IpAddr>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            if shared.ready.load(Ordering::Acquire) {
                json_response(StatusCode::OK, &json!({"status": "ready"}))
            } else {
                error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the daemon is starting or stopping")
            }
        }
        (&Method::GET, "/.well-known/jwks.json") => json_response(StatusCode::OK, &shared.engine.jwt().jwks()),
        (&Method::POST, "/v1/verify") => match read_json::<VerifyBody>(req).await {
            Ok(body) => verify(shared, &body, peer).await,
            Err(resp) => resp,
        },
        (_, "/auth") => nginx::auth(shared, req, peer).await,
        (_, "/healthz" | "/readyz" | "/.well-known/jwks.json" | "/v1/verify") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        }
        (_, p) if p.starts_with("/v1/") || p == "/openapi.json" => admin::route(shared, req, peer).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

/// Body of `POST /v1/verify`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VerifyBody {
    credential: String,
    #[serde(default)]
    ip: Option<IpAddr>,
    #[serde(default)]
    permissions: BTreeMap<String, Vec<String>>,
    #[serde(default = "one")]
    cost: u32,
    #[serde(default)]
    quota: Option<QuotaBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    name: String,
    #[serde(default = "one")]
    amount: u32,
}

fn one() -> u32 {
    1
}

async fn verify(shared: &Shared, body: &VerifyBody, peer: Option<IpAddr>) -> Response<Body> {
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
    match &verdict {
        Verdict::Allow(a) => {
            if let Some(t) = a.durable_after {
                engine.wait_durable_async(t).await;
            }
        }
        Verdict::Deny(d) => audit_denied(shared, &body.credential, now, d.code.as_str(), "verify"),
    }
    json_response(StatusCode::OK, &verdict_json(&verdict))
}

/// Hands a denied verification to the audit writer without waiting: only the
/// credential's hash leaves here (computed on the deny path only), never the
/// credential.
pub fn audit_denied(shared: &Shared, credential: &str, at: u64, code: &'static str, action: &'static str) {
    shared.audit.denied(crate::audit::Denied {
        at,
        hash: crate::core::secret::parse(credential),
        jwt: credential.starts_with("eyJ"),
        code,
        action,
    });
}

/// The JSON form of a verdict, shared by every HTTP route that reports one.
pub fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Allow(a) => json!({
            "valid": true,
            "kind": match a.kind {
                CredentialKind::ApiKey => "api_key",
                CredentialKind::AccessToken => "access_token",
                CredentialKind::Jwt => "jwt",
            },
            "subject": &*a.subject,
            "team": &*a.team,
            "credentialId": &*a.credential_id,
            "roles": [a.role.as_str()],
            "permissions": &a.permissions,
            "remaining": a.remaining,
            "rateLimit": a.rate_limit.map(|r| json!({"limit": r.limit, "remaining": r.remaining, "resetMs": r.reset_ms})),
        }),
        Verdict::Deny(d) => json!({
            "valid": false,
            "code": d.code.as_str(),
            "reason": d.reason,
            "retryAfterMs": d.retry_after_ms,
            "rateLimit": d.rate_limit.map(|r| json!({"limit": r.limit, "remaining": r.remaining, "resetMs": r.reset_ms})),
        }),
    }
}

/// Reads a JSON body of at most `MAX_BODY_BYTES`; the error is a ready response.
pub async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("request body larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()))
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON error response with a stable machine code.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": {"code": code, "message": message}}))
}
