//! Traefik's ForwardAuth and Envoy's ext_authz (HTTP service mode) in front of
//! the real daemon. Neither proxy is packaged in Debian, so neither runs here:
//! each test reads the documented example (`examples/traefik/dynamic.yml`,
//! `examples/envoy/envoy.yaml`) and plays the proxy's side of its contract,
//! as the proxy's source does it (Traefik: `pkg/middlewares/auth/forward.go`;
//! Envoy: `source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc`):
//! which of the client's headers reach tollgate and which it adds, how the
//! check request's path is built, what reaches the client on a denial and
//! the application on an allow. A change to an example's lists, prefix or
//! header mutations changes what these tests send.
//!
//! What this cannot catch: a proxy that does not behave as its source did
//! when read, or an example that the real proxy refuses to load.

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::common;

use common::HttpResp;
use common::proxy::Fixture;

type Headers = Vec<(String, String)>;

/// A request as it reaches the proxy.
struct ClientReq<'a> {
    method: &'a str,
    uri: &'a str,
    headers: Headers,
    /// The address the client connects from.
    remote: &'a str,
}

/// Where the proxy sent the request: on to the application (with these
/// headers), or back to the client.
#[derive(Debug)]
enum Outcome {
    Upstream(Headers),
    Client(HttpResp),
}

impl Outcome {
    fn upstream(self) -> Headers {
        match self {
            Outcome::Upstream(h) => h,
            Outcome::Client(r) => panic!("expected the request to reach the application, the client got {r:?}"),
        }
    }

    fn client(self) -> HttpResp {
        match self {
            Outcome::Client(r) => r,
            Outcome::Upstream(h) => panic!("expected a denial, the application got {h:?}"),
        }
    }
}

fn header<'h>(h: &'h Headers, name: &str) -> Option<&'h str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn client(method: &'static str, uri: &'static str, remote: &'static str, headers: &[&str]) -> ClientReq<'static> {
    let mut h: Headers = vec![("Host".into(), "app.example".into())];
    h.extend(headers.iter().map(|l| {
        let (k, v) = l.split_once(':').expect("Name: value");
        (k.trim().to_owned(), v.trim().to_owned())
    }));
    ClientReq { method, uri, headers: h, remote }
}

// ---------------------------------------------------------------- Traefik

/// What the test needs of `examples/traefik/dynamic.yml`.
struct Traefik {
    /// The path of `forwardAuth.address`.
    path: String,
    auth_request_headers: Vec<String>,
    auth_response_headers: Vec<String>,
    trust_forward_header: bool,
    /// `customRequestHeaders` of the middleware after it: an empty value removes.
    custom_request_headers: Vec<(String, String)>,
}

impl Traefik {
    fn from_example() -> Traefik {
        let text = include_str!("../../examples/traefik/dynamic.yml");
        let address = yaml_scalar(text, "address");
        let path =
            address.strip_prefix("http://127.0.0.1:7070").expect("the example's address is tollgate's").to_owned();
        let middlewares = yaml_list(text, "middlewares");
        assert_eq!(middlewares, ["tollgate", "drop-credentials"], "the router's middlewares, in order");
        Traefik {
            path,
            auth_request_headers: yaml_list(text, "authRequestHeaders"),
            auth_response_headers: yaml_list(text, "authResponseHeaders"),
            trust_forward_header: yaml_scalar(text, "trustForwardHeader") == "true",
            custom_request_headers: yaml_map(text, "customRequestHeaders"),
        }
    }

    /// ForwardAuth's `ServeHTTP` and `writeHeader`, then the headers middleware.
    fn handle(&self, tollgate: SocketAddr, req: &ClientReq) -> Outcome {
        const HOP: [&str; 8] = [
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailers",
            "transfer-encoding",
            "upgrade",
        ];
        // Every header of the client's but the hop-by-hop ones, then only
        // those authRequestHeaders names, if any are named. (Go's client
        // sends Host from the address, not from these headers.)
        let mut fwd: Headers = req
            .headers
            .iter()
            .filter(|(k, _)| !HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) && !k.eq_ignore_ascii_case("host"))
            .filter(|(k, _)| {
                self.auth_request_headers.is_empty()
                    || self.auth_request_headers.iter().any(|a| a.eq_ignore_ascii_case(k))
            })
            .cloned()
            .collect();
        let mut set = |name: &str, value: String| {
            fwd.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            fwd.push((name.to_owned(), value));
        };
        let prior = header(&req.headers, "x-forwarded-for").filter(|_| self.trust_forward_header);
        set("X-Forwarded-For", prior.map_or(req.remote.to_owned(), |p| format!("{p}, {}", req.remote)));
        let trusted = |name: &str, default: String| match header(&req.headers, name) {
            Some(v) if self.trust_forward_header => v.to_owned(),
            _ => default,
        };
        set("X-Forwarded-Method", trusted("x-forwarded-method", req.method.to_owned()));
        set("X-Forwarded-Proto", trusted("x-forwarded-proto", "http".to_owned()));
        set("X-Forwarded-Host", trusted("x-forwarded-host", header(&req.headers, "host").unwrap_or("").to_owned()));
        set("X-Forwarded-Uri", trusted("x-forwarded-uri", req.uri.to_owned()));
        fwd.push(("Host".into(), tollgate.to_string()));

        let r = send(tollgate, "GET", &self.path, &fwd);
        if !(200..300).contains(&r.status) {
            // Status, headers and body to the client as tollgate gave them.
            return Outcome::Client(r);
        }
        let mut up = req.headers.clone();
        for name in &self.auth_response_headers {
            up.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            up.extend(r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).cloned());
        }
        for (name, value) in &self.custom_request_headers {
            up.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            if !value.is_empty() {
                up.push((name.clone(), value.clone()));
            }
        }
        Outcome::Upstream(up)
    }
}

#[test]
fn traefik_forward_auth_contract() {
    let traefik = Traefik::from_example();
    assert_eq!(traefik.path, "/auth");
    // The example's tollgate has no [[auth.routes]] (see its comment).
    let fx = Fixture::start_with("");
    let t = fx.addr();
    let (good_id, good) = &fx.good;
    let local = "127.0.0.1";

    for cred in [
        format!("Authorization: Bearer {good}"),
        format!("X-API-Key: {good}"),
        format!("Cookie: a=b; tollgate_token={good}"),
    ] {
        let up =
            traefik.handle(t, &client_owned("GET", "/files/a?x=1", local, &[&cred, "X-Auth-Subject: root"])).upstream();
        assert_eq!(header(&up, "x-auth-subject"), Some(fx.user.as_str()), "{cred}: {up:?}");
        assert_eq!(header(&up, "x-auth-team"), Some(fx.team.as_str()), "{up:?}");
        assert_eq!(header(&up, "x-auth-roles"), Some("Reader"), "{up:?}");
        assert_eq!(header(&up, "x-auth-key-id"), Some(good_id.as_str()), "{up:?}");
        assert_eq!(header(&up, "x-auth-kind"), Some("api_key"), "{up:?}");
        assert_eq!(up.iter().filter(|(k, _)| k.eq_ignore_ascii_case("x-auth-subject")).count(), 1, "{up:?}");
        assert_eq!(header(&up, "authorization"), None, "{up:?}");
        assert_eq!(header(&up, "x-api-key"), None, "{up:?}");
    }

    let r = traefik.handle(t, &client("GET", "/files/a", local, &[])).client();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\""), "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("MISSING_CREDENTIAL"), "{r:?}");
    let r = traefik.handle(t, &client("GET", "/files/a", local, &["Authorization: Bearer tg_nope"])).client();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\", error=\"invalid_token\""), "{r:?}");

    // The client's address reaches the allowlist through X-Forwarded-For, and
    // what the client claims does not.
    let local_only = format!("X-API-Key: {}", fx.local_only);
    traefik.handle(t, &client_owned("GET", "/", local, &[&local_only])).upstream();
    let elsewhere = format!("X-API-Key: {}", fx.elsewhere);
    traefik.handle(t, &client_owned("GET", "/", "198.51.100.7", &[&elsewhere])).upstream();
    for spoof in ["X-Real-IP: 198.51.100.7", "X-Forwarded-For: 198.51.100.7"] {
        let r = traefik.handle(t, &client_owned("GET", "/", local, &[&elsewhere, spoof])).client();
        assert_eq!(r.status, 403, "{spoof}: {r:?}");
        assert_eq!(r.header("x-auth-denial"), Some("IP_NOT_ALLOWED"), "{r:?}");
    }

    // Limits: Traefik passes tollgate's 403 on as it is (it cannot turn it
    // into a 429), with Retry-After and the rate-limit headers.
    let limited = format!("X-API-Key: {}", fx.limited);
    for _ in 0..2 {
        traefik.handle(t, &client_owned("GET", "/", local, &[&limited])).upstream();
    }
    let r = traefik.handle(t, &client_owned("GET", "/", local, &[&limited])).client();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("RATE_LIMITED"), "{r:?}");
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
    assert!((1..=60).contains(&retry), "{r:?}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"), "{r:?}");
    drop(fx);

    // With [[auth.routes]]: Traefik names the original request in
    // X-Forwarded-Method/-Uri, which tollgate reads from a trusted proxy
    // (Traefik on loopback), so per-path permissions hold behind it too.
    let fx = Fixture::start();
    let bearer = format!("Authorization: Bearer {}", fx.good.1);
    // files:read opens /files/.
    let up = traefik.handle(fx.addr(), &client_owned("GET", "/files/a", local, &[&bearer])).upstream();
    assert_eq!(header(&up, "x-auth-key-id"), Some(fx.good.0.as_str()), "{up:?}");
    let r = traefik.handle(fx.addr(), &client_owned("GET", "/admin/x", local, &[&bearer])).client();
    assert_eq!(r.status, 403, "/admin/ needs admin:write: {r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("INSUFFICIENT_PERMISSIONS"), "{r:?}");
    // A method outside the /files/ rule's falls to no rule: open to a good key.
    traefik.handle(fx.addr(), &client_owned("DELETE", "/files/a", local, &[&bearer])).upstream();
}

// ---------------------------------------------------------------- Envoy

/// What the test needs of `examples/envoy/envoy.yaml`.
struct Envoy {
    path_prefix: String,
    /// header_mutation's request mutations, in order: (name, format).
    mutations: Vec<(String, String)>,
    allowed_headers: Vec<String>,
    allowed_upstream_headers: Vec<String>,
    /// The route's request_headers_to_remove.
    remove_upstream: Vec<String>,
}

impl Envoy {
    fn from_example() -> Envoy {
        let text = include_str!("../../examples/envoy/envoy.yaml");
        let filters: Vec<&str> =
            text.lines().filter_map(|l| l.trim().strip_prefix("- name: envoy.filters.http.")).collect();
        assert_eq!(filters, ["header_mutation", "ext_authz", "router"], "the HTTP filters, in order");
        let mutations = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("header: { key: "))
            .map(|l| {
                let (key, rest) = l.split_once(", value: ").expect("header: { key: k, value: \"v\" }");
                let value = rest.trim_end_matches('}').trim().trim_matches('"');
                (key.trim().to_owned(), value.to_owned())
            })
            .collect();
        let remove = yaml_scalar(text, "request_headers_to_remove");
        let remove_upstream = remove
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .collect();
        Envoy {
            path_prefix: yaml_scalar(text, "path_prefix"),
            mutations,
            allowed_headers: yaml_list(text, "allowed_headers"),
            allowed_upstream_headers: yaml_list(text, "allowed_upstream_headers"),
            remove_upstream,
        }
    }

    /// header_mutation, then ext_authz's `RawHttpClientImpl::check` and
    /// `toResponse`, then the route's header removal.
    fn handle(&self, tollgate: SocketAddr, req: &ClientReq) -> Outcome {
        let mut headers = req.headers.clone();
        for (name, format) in &self.mutations {
            let value = match format.as_str() {
                "%REQ(:PATH)%" => req.uri.to_owned(),
                "%REQ(:METHOD)%" => req.method.to_owned(),
                "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" => req.remote.to_owned(),
                other => panic!("the test does not know Envoy's {other}"),
            };
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value));
        }
        // Always sent: Authorization, Host, :method, :path; and Content-Length: 0.
        let mut check: Headers = headers
            .iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                k == "authorization" || k == "host" || self.allowed_headers.contains(&k)
            })
            .cloned()
            .collect();
        check.push(("content-length".into(), "0".into()));
        let target = format!("{}{}", self.path_prefix, req.uri);
        let r = send(tollgate, req.method, &target, &check);
        if r.status >= 500 {
            return Outcome::Client(HttpResp { status: 403, headers: vec![], text: String::new() });
        }
        if r.status != 200 {
            // allowed_client_headers is empty: every header but Host.
            let headers = r.headers.into_iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")).collect();
            return Outcome::Client(HttpResp { status: r.status, headers, text: r.text });
        }
        for name in &self.allowed_upstream_headers {
            if let Some((k, v)) = r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
                headers.push((k.clone(), v.clone()));
            }
        }
        headers.retain(|(k, _)| !self.remove_upstream.iter().any(|r| r.eq_ignore_ascii_case(k)));
        Outcome::Upstream(headers)
    }
}

#[test]
fn envoy_ext_authz_contract() {
    let envoy = Envoy::from_example();
    let fx = Fixture::start();
    let t = fx.addr();
    let (good_id, good) = &fx.good;
    let local = "127.0.0.1";

    for cred in [
        format!("Authorization: Bearer {good}"),
        format!("X-API-Key: {good}"),
        format!("Cookie: a=b; tollgate_token={good}"),
    ] {
        let up =
            envoy.handle(t, &client_owned("GET", "/files/a?x=1", local, &[&cred, "X-Auth-Subject: root"])).upstream();
        assert_eq!(header(&up, "x-auth-subject"), Some(fx.user.as_str()), "{cred}: {up:?}");
        assert_eq!(header(&up, "x-auth-team"), Some(fx.team.as_str()), "{up:?}");
        assert_eq!(header(&up, "x-auth-roles"), Some("Reader"), "{up:?}");
        assert_eq!(header(&up, "x-auth-key-id"), Some(good_id.as_str()), "{up:?}");
        assert_eq!(header(&up, "x-auth-kind"), Some("api_key"), "{up:?}");
        assert_eq!(up.iter().filter(|(k, _)| k.eq_ignore_ascii_case("x-auth-subject")).count(), 1, "{up:?}");
        assert_eq!(header(&up, "authorization"), None, "{up:?}");
        assert_eq!(header(&up, "x-api-key"), None, "{up:?}");
    }

    let r = envoy.handle(t, &client("GET", "/files/a", local, &[])).client();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\""), "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("MISSING_CREDENTIAL"), "{r:?}");
    let r = envoy.handle(t, &client("GET", "/files/a", local, &["Authorization: Bearer tg_nope"])).client();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate\", error=\"invalid_token\""), "{r:?}");

    // Routes: matched on the request itself, whatever the client claims.
    let bearer = format!("Authorization: Bearer {good}");
    for (path, extra) in [
        ("/admin/users", None),
        ("/public/../admin/users", None),
        ("/admin/users?x=/files/", None),
        ("/admin/users", Some("X-Original-URI: /elsewhere")),
    ] {
        let headers: Vec<&str> = std::iter::once(bearer.as_str()).chain(extra).collect();
        let r = envoy.handle(t, &client_owned("GET", path, local, &headers)).client();
        assert_eq!(r.status, 403, "{path} {extra:?}: {r:?}");
        assert_eq!(r.header("x-auth-denial"), Some("INSUFFICIENT_PERMISSIONS"), "{r:?}");
    }
    envoy.handle(t, &client_owned("GET", "/elsewhere", local, &[&bearer])).upstream();
    // The rule for /files/ names GET only: a DELETE matches no rule.
    envoy.handle(t, &client_owned("DELETE", "/files/a", local, &[&bearer])).upstream();

    let local_only = format!("X-API-Key: {}", fx.local_only);
    envoy.handle(t, &client_owned("GET", "/files/a", local, &[&local_only])).upstream();
    let elsewhere = format!("X-API-Key: {}", fx.elsewhere);
    envoy.handle(t, &client_owned("GET", "/files/a", "198.51.100.7", &[&elsewhere])).upstream();
    for spoof in ["X-Real-IP: 198.51.100.7", "X-Forwarded-For: 198.51.100.7"] {
        let r = envoy.handle(t, &client_owned("GET", "/files/a", local, &[&elsewhere, spoof])).client();
        assert_eq!(r.status, 403, "{spoof}: {r:?}");
        assert_eq!(r.header("x-auth-denial"), Some("IP_NOT_ALLOWED"), "{r:?}");
    }

    // Envoy passes tollgate's 403 on, Retry-After included.
    let limited = format!("X-API-Key: {}", fx.limited);
    for _ in 0..2 {
        envoy.handle(t, &client_owned("GET", "/files/a", local, &[&limited])).upstream();
    }
    let r = envoy.handle(t, &client_owned("GET", "/files/a", local, &[&limited])).client();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-auth-denial"), Some("RATE_LIMITED"), "{r:?}");
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
    assert!((1..=60).contains(&retry), "{r:?}");

    let (revoked_id, revoked) = &fx.revoked;
    let revoked = format!("Authorization: Bearer {revoked}");
    envoy.handle(t, &client_owned("GET", "/files/a", local, &[&revoked])).upstream();
    fx.engine.delete_key(revoked_id).unwrap();
    let r = envoy.handle(t, &client_owned("GET", "/files/a", local, &[&revoked])).client();
    assert_eq!(r.status, 401, "{r:?}");
}

// ---------------------------------------------------------------- helpers

fn client_owned<'a>(method: &'a str, uri: &'a str, remote: &'a str, headers: &[&str]) -> ClientReq<'a> {
    let mut req = client("GET", "/", "127.0.0.1", headers);
    req.method = method;
    req.uri = uri;
    req.remote = remote;
    req
}

/// One request with exactly these headers (plus `Connection: close`).
fn send(addr: SocketAddr, method: &str, target: &str, headers: &Headers) -> HttpResp {
    let mut s = std::net::TcpStream::connect(addr).expect("tollgate accepts");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    HttpResp { status, headers, text: String::from_utf8_lossy(&buf[split + 4..]).into_owned() }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines under the `key:` line, deeper than it, comments skipped; none
/// when there is no such line (an absent list is an empty one).
fn yaml_block<'t>(text: &'t str, key: &str) -> Vec<&'t str> {
    let header = format!("{key}:");
    let starts: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.trim() == header).map(|(i, _)| i).collect();
    assert!(starts.len() <= 1, "the example has {} `{key}:` blocks, not one", starts.len());
    let Some(&start) = starts.first() else { return Vec::new() };
    let lines: Vec<&str> = text.lines().collect();
    let depth = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .take_while(|l| indent(l) > depth)
        .collect()
}

/// The items of a YAML list under `key` (`- item` or `- exact: item`).
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    if let Some(inline) = text.lines().find_map(|l| l.trim().strip_prefix(&format!("{key}: ["))) {
        return inline.trim_end_matches(']').split(',').map(|s| s.trim().trim_matches('"').to_owned()).collect();
    }
    yaml_block(text, key)
        .into_iter()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|i| i.strip_prefix("exact: ").unwrap_or(i).trim().trim_matches('"').to_owned())
        .collect()
}

/// The `name: value` pairs under `key`.
fn yaml_map(text: &str, key: &str) -> Vec<(String, String)> {
    yaml_block(text, key)
        .into_iter()
        .map(|l| {
            let (k, v) = l.trim().split_once(':').expect("name: value");
            (k.trim().to_owned(), v.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// The value of the one `key: value` line.
fn yaml_scalar(text: &str, key: &str) -> String {
    let prefix = format!("{key}:");
    let values: Vec<&str> =
        text.lines().filter_map(|l| l.trim().strip_prefix(&prefix)).map(str::trim).filter(|v| !v.is_empty()).collect();
    assert_eq!(values.len(), 1, "the example has {} `{key}:` values, not one", values.len());
    values[0].trim_matches('"').to_owned()
}
