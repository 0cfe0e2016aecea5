//! nginx `auth_request`: `/auth` answers nginx's header-only subrequest.
//!
//! The credential comes from `Authorization: Bearer`, `X-API-Key` or the
//! configured cookie; the original request from `X-Original-Method` and
//! `X-Original-URI` (or, from a trusted proxy, the `X-Forwarded-Method` and
//! `X-Forwarded-Uri` that Traefik and Caddy send), mapped to required
//! permissions by `[[auth.routes]]`; the
//! client address from `X-Real-IP` / `X-Forwarded-For` when the peer is a
//! trusted proxy. nginx accepts only 2xx, 401 and 403 from an auth subrequest
//! (anything else becomes a 500), so the answer is always one of those:
//!
//! - 200, empty body, with `X-Auth-*` identity headers and `X-RateLimit-*`;
//! - 401 with `WWW-Authenticate` for a missing or bad credential;
//! - 403 for a credential that may not do this, including rate-limit and quota
//!   denials, which carry `Retry-After` so that nginx can turn them into a 429
//!   (see `examples/nginx/nginx.conf`).
//!
//! Every denial names its code in `X-Auth-Denial`.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use ipnet::IpNet;

use super::{Body, error};
use crate::config::{AuthConfig, AuthRoute};
use crate::core::verify::{CredentialKind, DenyCode, Verdict, VerifyRequest};
use crate::http::Shared;

/// `X-Auth-Denial` value when no credential was presented (not a verdict code:
/// the verifier was never asked).
pub const MISSING_CREDENTIAL: &str = "MISSING_CREDENTIAL";

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
const X_AUTH_TEAM: HeaderName = HeaderName::from_static("x-auth-team");
const X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");
const X_AUTH_KEY_ID: HeaderName = HeaderName::from_static("x-auth-key-id");
const X_AUTH_KIND: HeaderName = HeaderName::from_static("x-auth-kind");
const X_AUTH_REMAINING: HeaderName = HeaderName::from_static("x-auth-remaining");
const X_AUTH_DENIAL: HeaderName = HeaderName::from_static("x-auth-denial");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

const CHALLENGE: &str = "Bearer realm=\"tollgate\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"tollgate\", error=\"invalid_token\"";

/// Answers one `auth_request` subrequest. Any method is accepted: nginx may
/// pass the original request's method on to the subrequest. Also returns the
/// verdict for the access line: `ALLOW`, the deny code, or
/// [`MISSING_CREDENTIAL`]; `None` when the subrequest itself was refused (400).
pub(super) async fn auth(shared: &Shared, req: Request, peer: Option<IpAddr>) -> (Response, Option<&'static str>) {
    // The subrequest has no body worth reading (the example config strips it);
    // dropping it lets hyper discard whatever arrives.
    let start = std::time::Instant::now();
    let (parts, _body) = req.into_parts();
    // The rules in force now; a reload may swap them while this request runs.
    let config = shared.config.load_full();
    let cfg = &config.auth;
    let Some(credential) = credential(&parts.headers, &cfg.cookie) else {
        shared.metrics.unattributed(crate::metrics::DenySource::Auth, None);
        return (denial(StatusCode::UNAUTHORIZED, MISSING_CREDENTIAL, Some(CHALLENGE)), Some(MISSING_CREDENTIAL));
    };
    // Only asked when there are rules to match.
    let from_proxy = !cfg.routes.is_empty() && peer.is_none_or(|p| trusted(cfg, p.to_canonical()));
    let route = match original_route(&parts.headers, &parts.method, &cfg.routes, from_proxy) {
        Ok(r) => r,
        Err(bad) => return (error(StatusCode::BAD_REQUEST, bad.code, bad.message), None),
    };
    let perms: Vec<(&str, &str)> = route
        .into_iter()
        .flat_map(|r| &r.permissions)
        .flat_map(|(res, acts)| acts.iter().map(move |a| (res.as_str(), a.as_str())))
        .collect();
    let req = VerifyRequest {
        credential,
        ip: client_ip(&parts.headers, peer, cfg),
        permissions: &perms,
        cost: 1,
        quota: None,
    };
    let engine = &shared.engine;
    if let Some(why) = engine.refusing() {
        // Not a verdict: nginx answers its client 500 (fail closed).
        return (crate::http::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why), None);
    }
    let now = crate::engine::now_us();
    let verdict = engine.verify_at(&req, now);
    shared.metrics.count(&verdict, credential);
    if let Verdict::Deny(d) = &verdict {
        shared.audit.verification_denied(&shared.metrics, crate::metrics::DenySource::Auth, credential, d.code, now);
    }
    if let Verdict::Allow(a) = &verdict
        && let Some(t) = a.durable_after
    {
        engine.wait_durable_async(t).await;
    }
    let resp = answer(&verdict);
    shared.metrics.latency(crate::metrics::Interface::Auth, start.elapsed(), 1);
    let code = match &verdict {
        Verdict::Allow(_) => "ALLOW",
        Verdict::Deny(d) => d.code.as_str(),
    };
    (resp, Some(code))
}

/// The credential presented, in order of precedence: `Authorization: Bearer`,
/// `X-API-Key`, the cookie. A header that is present but unreadable yields an
/// empty credential, which the verifier rejects as `MALFORMED`.
fn credential<'h>(headers: &'h HeaderMap, cookie: &str) -> Option<&'h str> {
    for v in headers.get_all(AUTHORIZATION) {
        let Ok(v) = v.to_str() else { return Some("") };
        if let Some((scheme, token)) = v.trim().split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim());
        }
    }
    if let Some(v) = headers.get(X_API_KEY) {
        return Some(v.to_str().map_or("", str::trim));
    }
    for v in headers.get_all(COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name.trim() == cookie
            {
                let value = value.trim();
                return Some(value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value));
            }
        }
    }
    None
}

/// A subrequest that does not say what it is for.
#[derive(Debug)]
struct BadRequest {
    code: &'static str,
    message: &'static str,
}

/// The first `[[auth.routes]]` rule matching the original request, if any.
/// The original request is `X-Original-Method`/`X-Original-URI` (nginx's
/// example config), or, from a trusted proxy (`from_proxy`), the
/// `X-Forwarded-Method`/`X-Forwarded-Uri` that Traefik and Caddy send.
/// Without either URI nothing can be matched: that is the proxy's
/// misconfiguration, answered 400 (nginx logs it and answers 500) rather than
/// guessed at, unless no rule is configured.
fn original_route<'c>(
    headers: &HeaderMap,
    method: &Method,
    routes: &'c [AuthRoute],
    from_proxy: bool,
) -> Result<Option<&'c AuthRoute>, BadRequest> {
    if routes.is_empty() {
        return Ok(None);
    }
    let named = |original: &HeaderName, forwarded: &HeaderName| {
        headers.get(original).or_else(|| from_proxy.then(|| headers.get(forwarded)).flatten())
    };
    let method = match named(&X_ORIGINAL_METHOD, &X_FORWARDED_METHOD) {
        None => method.as_str(),
        Some(v) => v
            .to_str()
            .map_err(|_| BadRequest { code: "bad_original_method", message: "x-original-method is not readable" })?,
    };
    let Some(uri) = named(&X_ORIGINAL_URI, &X_FORWARDED_URI) else {
        return Err(BadRequest {
            code: "missing_original_uri",
            message: "x-original-uri (or x-forwarded-uri from a trusted proxy) is required when auth.routes are \
                      configured",
        });
    };
    let path = normalize_path(uri.as_bytes())
        .ok_or(BadRequest { code: "bad_original_uri", message: "x-original-uri is not a valid path" })?;
    Ok(match_route(routes, method, &path))
}

/// The first rule whose prefix starts `path` and whose methods include
/// `method` (a rule naming `GET` also covers `HEAD`).
fn match_route<'c>(routes: &'c [AuthRoute], method: &str, path: &[u8]) -> Option<&'c AuthRoute> {
    routes.iter().find(|r| {
        path.starts_with(r.prefix.as_bytes())
            && (r.methods.is_empty() || r.methods.iter().any(|m| m == method || (method == "HEAD" && m == "GET")))
    })
}

/// The path of a request URI as nginx sees it for location matching: query
/// dropped, `%XX` decoded, repeated slashes merged, `.` and `..` resolved.
/// `None` for a URI nginx itself would refuse (not absolute, bad escape, `..`
/// above the root). Matching the raw `$request_uri` instead would let
/// `/public/../admin` slip past a rule for `/admin`.
fn normalize_path(uri: &[u8]) -> Option<Vec<u8>> {
    let raw = uri.split(|&b| b == b'?' || b == b'#').next().unwrap_or_default();
    if raw.first() != Some(&b'/') {
        return None;
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(raw[i]);
            i += 1;
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    // A trailing slash (or a trailing `.`/`..`, which names a directory) stays.
    let ends_dir = matches!(decoded.rsplit(|&b| b == b'/').next(), Some(b"" | b"." | b".."));
    if out.is_empty() || ends_dir {
        out.push(b'/');
    }
    Some(out)
}

/// The address of the client behind the proxy. Forwarding headers are believed
/// only from a trusted peer (a Unix-socket peer is one); `X-Real-IP` wins over
/// `X-Forwarded-For`, which is read right to left, skipping trusted proxies.
/// An unreadable forwarded address gives `None` rather than the proxy's own
/// address, so that a key with an IP allowlist fails closed.
fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, cfg: &AuthConfig) -> Option<IpAddr> {
    let peer = peer.map(|p| p.to_canonical());
    let trusted = |ip: IpAddr| trusted(cfg, ip);
    if peer.is_some_and(|p| !trusted(p)) {
        return peer;
    }
    if let Some(v) = headers.get(X_REAL_IP) {
        return parse_ip(v.as_bytes());
    }
    let hops: Vec<&[u8]> =
        headers.get_all(X_FORWARDED_FOR).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).collect();
    if hops.is_empty() {
        return peer;
    }
    let mut client = None;
    for hop in hops.iter().rev() {
        let ip = parse_ip(hop)?;
        client = Some(ip);
        if !trusted(ip) {
            break;
        }
    }
    client
}

/// Whether `ip` is one of `[auth] trusted_proxies`, whose forwarding headers
/// are believed.
fn trusted(cfg: &AuthConfig, ip: IpAddr) -> bool {
    cfg.trusted_proxies.iter().any(|n: &IpNet| n.contains(&ip))
}

fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(b).ok()?.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Whether a denial is about spending (nginx's config turns it into a 429).
fn is_limit(code: DenyCode) -> bool {
    matches!(
        code,
        DenyCode::RateLimited | DenyCode::UsageExceeded | DenyCode::TeamRateLimited | DenyCode::QuotaExceeded
    )
}

/// The status nginx should see for a verdict.
fn status_of(code: DenyCode) -> StatusCode {
    match code {
        DenyCode::Malformed
        | DenyCode::NotFound
        | DenyCode::BadSignature
        | DenyCode::Expired
        | DenyCode::NotYetValid
        | DenyCode::Revoked => StatusCode::UNAUTHORIZED,
        DenyCode::Disabled
        | DenyCode::IpNotAllowed
        | DenyCode::InsufficientPermissions
        | DenyCode::RateLimited
        | DenyCode::UsageExceeded
        | DenyCode::TeamRateLimited
        | DenyCode::QuotaExceeded => StatusCode::FORBIDDEN,
    }
}

fn answer(verdict: &Verdict) -> Response {
    match verdict {
        Verdict::Allow(a) => {
            let mut r = empty(StatusCode::OK);
            let h = r.headers_mut();
            set(h, X_AUTH_SUBJECT, a.subject());
            set(h, X_AUTH_TEAM, a.team());
            h.insert(X_AUTH_ROLES, HeaderValue::from_static(a.role.as_str()));
            set(h, X_AUTH_KEY_ID, a.credential_id());
            h.insert(
                X_AUTH_KIND,
                HeaderValue::from_static(match a.kind {
                    CredentialKind::ApiKey => "api_key",
                    CredentialKind::AccessToken => "access_token",
                    CredentialKind::Jwt => "jwt",
                }),
            );
            if let Some(n) = a.remaining {
                h.insert(X_AUTH_REMAINING, HeaderValue::from(n));
            }
            if let Some(rl) = a.rate_limit {
                h.insert(X_RATELIMIT_LIMIT, HeaderValue::from(rl.limit));
                h.insert(X_RATELIMIT_REMAINING, HeaderValue::from(rl.remaining));
                h.insert(X_RATELIMIT_RESET, HeaderValue::from(secs(rl.reset_ms)));
            }
            r
        }
        Verdict::Deny(d) => {
            let status = status_of(d.code);
            let challenge = (status == StatusCode::UNAUTHORIZED).then_some(CHALLENGE_INVALID);
            let mut r = denial(status, d.code.as_str(), challenge);
            let h = r.headers_mut();
            if is_limit(d.code)
                && let Some(ms) = d.retry_after_ms
            {
                h.insert(RETRY_AFTER, HeaderValue::from(secs(ms).max(1)));
            }
            if let Some(rl) = d.rate_limit {
                h.insert(X_RATELIMIT_LIMIT, HeaderValue::from(rl.limit));
                h.insert(X_RATELIMIT_REMAINING, HeaderValue::from(rl.remaining));
                h.insert(X_RATELIMIT_RESET, HeaderValue::from(secs(rl.reset_ms)));
            }
            r
        }
    }
}

fn denial(status: StatusCode, code: &'static str, challenge: Option<&'static str>) -> Response {
    let mut r = empty(status);
    let h = r.headers_mut();
    h.insert(X_AUTH_DENIAL, HeaderValue::from_static(code));
    if let Some(c) = challenge {
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    r
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// Sets a header from an identifier; ids are ASCII, but a value that is not a
/// valid header is left out rather than answered with an error.
fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Whole seconds, rounded up, as `Retry-After` and `X-RateLimit-Reset` count.
fn secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn credential_precedence_and_shapes() {
        let c = "tollgate_token";
        assert_eq!(credential(&headers(&[]), c), None);
        assert_eq!(credential(&headers(&[("authorization", b"Bearer  abc ")]), c), Some("abc"));
        assert_eq!(credential(&headers(&[("authorization", b"bearer abc")]), c), Some("abc"));
        assert_eq!(
            credential(
                &headers(&[("authorization", b"Bearer a"), ("x-api-key", b"b"), ("cookie", b"tollgate_token=c")]),
                c
            ),
            Some("a")
        );
        // Basic auth is for the upstream, not us: fall through to the next source.
        assert_eq!(credential(&headers(&[("authorization", b"Basic eDp5"), ("x-api-key", b"b")]), c), Some("b"));
        assert_eq!(credential(&headers(&[("authorization", b"Basic eDp5")]), c), None);
        assert_eq!(credential(&headers(&[("cookie", b"a=1; tollgate_token=\"tok\"; b=2")]), c), Some("tok"));
        assert_eq!(credential(&headers(&[("cookie", b"a=1"), ("cookie", b"tollgate_token=t")]), c), Some("t"));
        assert_eq!(credential(&headers(&[("cookie", b"xtollgate_token=t")]), c), None);
        assert_eq!(credential(&headers(&[("cookie", b"tollgate_token=t")]), "other"), None);
        // Unreadable bytes are a malformed credential, not a panic or a missing one.
        assert_eq!(credential(&headers(&[("x-api-key", b"\xff\xfe")]), c), Some(""));
        assert_eq!(credential(&headers(&[("authorization", b"Bearer \xff")]), c), Some(""));
    }

    #[test]
    fn paths_are_normalized_like_nginx() {
        let n = |s: &str| normalize_path(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(n("/files/a.txt?x=/admin").as_deref(), Some("/files/a.txt"));
        assert_eq!(n("/public/../admin/x").as_deref(), Some("/admin/x"));
        assert_eq!(n("/public/%2e%2e/admin").as_deref(), Some("/admin"));
        assert_eq!(n("//files///a").as_deref(), Some("/files/a"));
        assert_eq!(n("/files/").as_deref(), Some("/files/"));
        assert_eq!(n("/files/.").as_deref(), Some("/files/"));
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("/%41dmin").as_deref(), Some("/Admin"));
        assert_eq!(n("/.."), None);
        assert_eq!(n("/a/../../b"), None);
        assert_eq!(n("/bad%zz"), None);
        assert_eq!(n("/bad%4"), None);
        assert_eq!(n("relative"), None);
        assert_eq!(n(""), None);
    }

    fn rule(prefix: &str, methods: &[&str], res: &str) -> AuthRoute {
        AuthRoute {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            permissions: BTreeMap::from([(res.to_owned(), vec!["read".to_owned()])]),
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let routes = [rule("/files/", &["GET"], "files"), rule("/files/", &[], "any"), rule("/", &["POST"], "root")];
        let m = |method: &str, path: &str| {
            match_route(&routes, method, path.as_bytes()).map(|r| r.permissions.keys().next().unwrap().clone())
        };
        assert_eq!(m("GET", "/files/x").as_deref(), Some("files"));
        assert_eq!(m("HEAD", "/files/x").as_deref(), Some("files"));
        assert_eq!(m("PUT", "/files/x").as_deref(), Some("any"));
        assert_eq!(m("POST", "/other").as_deref(), Some("root"));
        assert_eq!(m("GET", "/other"), None);
        assert_eq!(m("GET", "/files"), None);

        let mut h = headers(&[("x-original-method", b"GET")]);
        assert_eq!(original_route(&h, &Method::GET, &routes, false).unwrap_err().code, "missing_original_uri");
        assert!(original_route(&h, &Method::GET, &[], false).unwrap().is_none());
        h.insert(X_ORIGINAL_URI, HeaderValue::from_static("/public/../files/a"));
        assert_eq!(original_route(&h, &Method::POST, &routes, false).unwrap().unwrap().prefix, "/files/");
        h.insert(X_ORIGINAL_URI, HeaderValue::from_static("/../x"));
        assert_eq!(original_route(&h, &Method::GET, &routes, false).unwrap_err().code, "bad_original_uri");

        // Traefik's and Caddy's X-Forwarded-Method/-Uri: believed only from a
        // trusted proxy, and never over an X-Original-* header.
        let fwd = headers(&[("x-forwarded-method", b"PUT"), ("x-forwarded-uri", b"/files/a?x=1")]);
        assert_eq!(original_route(&fwd, &Method::GET, &routes, false).unwrap_err().code, "missing_original_uri");
        let key = |r: Option<&AuthRoute>| r.map(|r| r.permissions.keys().next().unwrap().clone());
        // PUT /files/a: the rule for any method, not the GET one.
        assert_eq!(key(original_route(&fwd, &Method::GET, &routes, true).unwrap()).as_deref(), Some("any"));
        let mut both = fwd.clone();
        both.insert(X_ORIGINAL_URI, HeaderValue::from_static("/other"));
        both.insert(X_ORIGINAL_METHOD, HeaderValue::from_static("POST"));
        assert_eq!(key(original_route(&both, &Method::GET, &routes, true).unwrap()).as_deref(), Some("root"));
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_peers() {
        let cfg = AuthConfig::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let local = Some(ip("127.0.0.1"));
        let outside = Some(ip("203.0.113.9"));
        let real = headers(&[("x-real-ip", b"198.51.100.7")]);
        assert_eq!(client_ip(&real, local, &cfg), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(&real, Some(ip("::1")), &cfg), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(&real, Some(ip("::ffff:127.0.0.1")), &cfg), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(&real, None, &cfg), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(&real, outside, &cfg), outside);
        assert_eq!(client_ip(&headers(&[]), local, &cfg), local);
        assert_eq!(client_ip(&headers(&[]), None, &cfg), None);
        let xff = headers(&[("x-forwarded-for", b"10.9.9.9, 198.51.100.7"), ("x-forwarded-for", b"127.0.0.1")]);
        assert_eq!(client_ip(&xff, local, &cfg), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(&headers(&[("x-forwarded-for", b"127.0.0.1")]), local, &cfg), local);
        assert_eq!(client_ip(&headers(&[("x-real-ip", b"garbage")]), local, &cfg), None);
        assert_eq!(client_ip(&headers(&[("x-forwarded-for", b"1.2.3.4, junk")]), local, &cfg), None);
        assert_eq!(client_ip(&headers(&[("x-real-ip", b"\xff")]), local, &cfg), None);
    }

    #[test]
    fn verdicts_map_to_statuses_nginx_accepts() {
        for &code in DenyCode::ALL {
            let s = status_of(code);
            assert!(s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN, "{code:?}");
            let v = Verdict::Deny(crate::core::verify::Deny {
                code,
                reason: "test",
                retry_after_ms: Some(1500),
                rate_limit: None,
                lease_pending: false,
            });
            let r = answer(&v);
            assert_eq!(r.status(), s);
            assert_eq!(r.headers()[X_AUTH_DENIAL], code.as_str());
            assert_eq!(r.headers().contains_key(WWW_AUTHENTICATE), s == StatusCode::UNAUTHORIZED);
            if is_limit(code) {
                assert_eq!(r.headers()[RETRY_AFTER], "2");
            } else {
                assert!(!r.headers().contains_key(RETRY_AFTER));
            }
        }
        assert_eq!(status_of(DenyCode::RateLimited), StatusCode::FORBIDDEN);
        assert_eq!(status_of(DenyCode::Revoked), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(DenyCode::IpNotAllowed), StatusCode::FORBIDDEN);
    }
}
