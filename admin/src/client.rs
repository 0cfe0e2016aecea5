//! A typed, blocking client of the tollgate admin HTTP API, over `ureq`
//! (HTTP/1.1, rustls on aws-lc-rs for `https://`).
//!
//! One agent per client: calls reuse its connections (a listing that follows
//! `nextUrl` opens one). It never goes through a proxy from the environment
//! and never follows redirects, so the credential goes to the URL given and
//! nowhere else. `https://` verifies the daemon's certificate against Mozilla's
//! roots (`webpki-roots`), or only against the CAs given with
//! [`AdminClient::with_ca_pem`] (`--ca-cert`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ureq::http;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::types::*;

/// Largest response body read, so a wrong URL cannot make the tool eat memory.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Longest wait to connect (and finish the TLS handshake), unless the whole
/// call's timeout is shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default for the whole of one call, from connecting to the answer's last
/// byte ([`AdminClient::with_timeout`], `--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with a call.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon answered with an error status; `body` is its parsed error
    /// (empty when the body was not the daemon's JSON error shape).
    Status {
        /// HTTP status.
        status: u16,
        /// The parsed `{"error": ...}` / `{"detail": [...]}` body.
        body: ErrorBody,
        /// The `Retry-After` header, in seconds (on a 429).
        retry_after: Option<u64>,
    },
    /// No answer: bad address, refused or reset connection, a TLS handshake
    /// that failed (an untrusted certificate, say).
    Connection(String),
    /// The call took longer than the client's timeout.
    Timeout(String),
    /// An answer that is not HTTP or not the JSON this client expects.
    Protocol(String),
    /// The base URL cannot be used.
    Url(String),
    /// The credential or the CA certificates given cannot be used; nothing
    /// was sent.
    Config(String),
}

impl ClientError {
    /// The HTTP status, for `Status` errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Status { status, body, retry_after } => {
                let s = body.summary();
                if s.is_empty() { write!(f, "HTTP {status}") } else { write!(f, "HTTP {status}: {s}") }?;
                match retry_after {
                    Some(secs) => write!(f, "; retry after {secs} s"),
                    None => Ok(()),
                }
            }
            ClientError::Connection(m) => write!(f, "cannot reach the daemon: {m}"),
            ClientError::Timeout(m) => write!(f, "no answer in time: {m}"),
            ClientError::Protocol(m) => write!(f, "unexpected answer from the daemon: {m}"),
            ClientError::Url(m) => write!(f, "bad URL: {m}"),
            ClientError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClientError {}

/// A raw answer: status, JSON body (`Value::Null` when empty) and
/// `Retry-After`.
#[derive(Clone, Debug, PartialEq)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// The body parsed as JSON, `Null` if empty.
    pub body: Value,
    /// The `Retry-After` header in seconds, when it is a number.
    pub retry_after: Option<u64>,
}

/// A client of one daemon, with one credential (admin token, JWT, API key or
/// access token, all sent as `Authorization: Bearer`).
#[derive(Clone, Debug)]
pub struct AdminClient {
    /// `http` or `https`.
    scheme: &'static str,
    /// `host:port`, `[v6]:port` for IPv6.
    authority: String,
    /// The path prefix (behind a proxy), without a trailing `/`.
    base_path: String,
    credential: Option<String>,
    /// The certificates an `https://` daemon's must chain to.
    roots: RootCerts,
    /// The longest one call may take.
    timeout: Duration,
    agent: ureq::Agent,
}

/// Percent-encodes a path segment or query value (everything but RFC 3986's
/// unreserved characters), so ids and cursors travel unchanged.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

/// The agent: direct connections (no proxy from the environment), no
/// redirects, every status returned as an answer, `timeout` for the whole of
/// each call (connecting at most 10 s of it), and `roots` to verify
/// certificates against.
fn agent(roots: RootCerts, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .user_agent(concat!("tollgate-admin/", env!("CARGO_PKG_VERSION")))
        .accept("application/json")
        .tls_config(
            TlsConfig::builder()
                .root_certs(roots)
                // The daemon's crypto stack; ureq is built without its default (ring).
                .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .build(),
        )
        .build();
    ureq::Agent::new_with_config(config)
}

impl AdminClient {
    /// A client of the daemon at `base_url` (`http://host:port` or
    /// `https://host:port`, optionally with a path prefix when behind a proxy;
    /// no scheme means `http`). `credential` is sent on every call but
    /// `login` and `verify`; one with a control character (a line break, say)
    /// is refused here, before anything is sent.
    pub fn new(base_url: &str, credential: Option<&str>) -> Result<AdminClient, ClientError> {
        let (scheme, default_port, rest) = if let Some(r) = base_url.strip_prefix("http://") {
            ("http", 80, r)
        } else if let Some(r) = base_url.strip_prefix("https://") {
            ("https", 443, r)
        } else if base_url.contains("://") {
            return Err(ClientError::Url(format!("{base_url}: only http:// and https:// URLs")));
        } else {
            ("http", 80, base_url)
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let bad_port = |p: &str| ClientError::Url(format!("{base_url}: bad port {p:?}"));
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| ClientError::Url(format!("{base_url}: unclosed [")))?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None if after.is_empty() => (h, default_port),
                None => return Err(bad_port(after)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(ClientError::Url(format!("{base_url}: no host")));
        }
        let odd = |c: char| c.is_control() || c == ' ' || matches!(c, '?' | '#' | '@');
        if host.contains(odd) || path.contains(|c: char| c.is_control() || c == ' ' || c == '#' || c == '?') {
            return Err(ClientError::Url(format!("{base_url:?}: unexpected character in the host or path")));
        }
        if let Some(c) = credential
            && c.chars().any(|ch| ch.is_control())
        {
            return Err(ClientError::Config(
                "the credential contains a control character (a line break?); nothing was sent".to_owned(),
            ));
        }
        Ok(AdminClient {
            scheme,
            authority: if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") },
            base_path: path.to_owned(),
            credential: credential.map(str::to_owned),
            roots: RootCerts::WebPki,
            timeout: DEFAULT_TIMEOUT,
            agent: agent(RootCerts::WebPki, DEFAULT_TIMEOUT),
        })
    }

    /// The longest one call may take, from connecting to the last byte of
    /// the answer (30 s by default): a daemon that accepts the connection and
    /// never answers is given up on with [`ClientError::Timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> AdminClient {
        self.timeout = timeout;
        self.agent = agent(self.roots.clone(), timeout);
        self
    }

    /// Trusts only the CA certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) for `https://`, instead of Mozilla's roots: a
    /// daemon whose certificate a private CA signed.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<AdminClient, ClientError> {
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(ClientError::Config(format!("not PEM: {e}"))),
            }
        }
        if certs.is_empty() {
            return Err(ClientError::Config("no PEM CERTIFICATE in it".to_owned()));
        }
        self.roots = RootCerts::Specific(Arc::new(certs));
        self.agent = agent(self.roots.clone(), self.timeout);
        Ok(self)
    }

    /// Sends one request with the client's credential; any status comes back.
    pub fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> Result<RawResponse, ClientError> {
        let auth = self.credential.as_ref().map(|c| format!("Bearer {c}"));
        self.send(method, path, auth.as_deref(), body)
    }

    /// Sends a request and decodes a 2xx answer as `T`; other statuses become
    /// `ClientError::Status`.
    pub fn call<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<&Value>) -> Result<T, ClientError> {
        decode(self.raw(method, path, body)?)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&Value>,
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}://{}{}{path}", self.scheme, self.authority, self.base_path);
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(a) = authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let payload = body.map(Value::to_string).unwrap_or_default();
        if body.is_some() || matches!(method, "POST" | "PATCH" | "PUT") {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(payload).map_err(|e| ClientError::Url(format!("{url}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| self.failure(e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes =
            resp.body_mut().with_config().limit(MAX_RESPONSE_BYTES).read_to_vec().map_err(|e| self.failure(e))?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("HTTP {status}: the body is not JSON ({e})")))?
        };
        Ok(RawResponse { status, body, retry_after })
    }

    /// A `ureq` failure as this client's error, naming the daemon's address
    /// and, for TLS, what usually fixes it.
    fn failure(&self, e: ureq::Error) -> ClientError {
        let at = &self.authority;
        match e {
            ureq::Error::BodyExceedsLimit(_) => ClientError::Protocol("response too large".to_owned()),
            // A failed handshake comes as an I/O error wrapping rustls's.
            ureq::Error::Io(e) => match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                Some(tls) => self.tls_failure(tls),
                // Closed or reset once the request was sent: maybe TLS.
                None if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
                {
                    ClientError::Connection(format!("{at}: {e}{}", self.plain_to_tls_hint()))
                }
                None => ClientError::Connection(format!("{at}: {e}")),
            },
            ureq::Error::HostNotFound => ClientError::Connection(format!("cannot resolve {at}")),
            ureq::Error::ConnectionFailed => ClientError::Connection(format!("{at}: connection failed")),
            ureq::Error::Timeout(ureq::Timeout::Connect) => ClientError::Timeout(format!(
                "{at}: could not connect within {}",
                humantime::format_duration(CONNECT_TIMEOUT.min(self.timeout))
            )),
            ureq::Error::Timeout(_) => ClientError::Timeout(format!(
                "{at} did not answer within {} (--timeout)",
                humantime::format_duration(self.timeout)
            )),
            ureq::Error::Rustls(e) => self.tls_failure(&e),
            ureq::Error::Tls(m) => ClientError::Connection(format!("{at}: TLS: {m}")),
            ureq::Error::Protocol(e) => {
                ClientError::Protocol(format!("{at}: not an HTTP answer ({e}){}", self.plain_to_tls_hint()))
            }
            e => ClientError::Protocol(format!("{at}: {e}")),
        }
    }

    /// A failed TLS handshake, with what usually fixes it.
    fn tls_failure(&self, e: &rustls::Error) -> ClientError {
        use rustls::CertificateError as C;
        let hint = match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                "; if a private CA signed the daemon's certificate, give it with --ca-cert FILE"
            }
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                "; use a URL with a host name the certificate holds"
            }
            rustls::Error::InvalidCertificate(_) => "",
            _ => "; does the daemon serve HTTPS (--tls-cert) on that port?",
        };
        ClientError::Connection(format!("{}: TLS: {e}{hint}", self.authority))
    }

    /// On `http://`: the daemon may be listening with TLS on that port.
    fn plain_to_tls_hint(&self) -> &'static str {
        if self.scheme == "http" { " (if the daemon serves HTTPS on that port, use an https:// URL)" } else { "" }
    }

    // ---- login (seed 003) ----

    /// Exchanges a username and password for a JWT (Basic auth).
    pub fn login(&self, username: &str, password: &str) -> Result<LoginResponse, ClientError> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        decode(self.send("POST", "/v1/auth/token", Some(&format!("Basic {basic}")), None)?)
    }

    /// Exchanges an API key (as the username, no password) for a JWT.
    pub fn login_with_key(&self, key: &str) -> Result<LoginResponse, ClientError> {
        self.login(key, "")
    }

    // ---- teams ----

    /// `POST /v1/teams` (admin token only).
    pub fn create_team(&self, team: &NewTeam) -> Result<Team, ClientError> {
        self.call("POST", "/v1/teams", Some(&to_json(team)?))
    }

    /// `GET /v1/teams`: every team for the admin token, the caller's own
    /// otherwise (every page, following `nextUrl`).
    pub fn list_teams(&self) -> Result<TeamList, ClientError> {
        let mut all: TeamList = self.call("GET", "/v1/teams?limit=100", None)?;
        while let Some(next) = all.next_url.take() {
            let page: TeamList = self.call("GET", &next, None)?;
            all.data.extend(page.data);
            all.next_url = page.next_url;
        }
        all.count = all.data.len() as u64;
        Ok(all)
    }

    /// `GET /v1/teams/{id}`.
    pub fn get_team(&self, id: &str) -> Result<Team, ClientError> {
        self.call("GET", &format!("/v1/teams/{}", encode(id)), None)
    }

    /// `PATCH /v1/teams/{id}` (admin token only); `force` lowers the tier
    /// below what the team holds.
    pub fn set_team_tier(&self, id: &str, tier: &str, force: bool) -> Result<Team, ClientError> {
        let body = to_json(&TeamUpdate { tier: tier.to_owned(), force })?;
        self.call("PATCH", &format!("/v1/teams/{}", encode(id)), Some(&body))
    }

    /// `POST /v1/teams/{id}/documents/release`: gives back `amount` documents
    /// of the team's quota.
    pub fn release_documents(&self, id: &str, amount: u32) -> Result<DocumentsUsage, ClientError> {
        let body = to_json(&DocumentsRelease { amount })?;
        self.call("POST", &format!("/v1/teams/{}/documents/release", encode(id)), Some(&body))
    }

    /// `DELETE /v1/teams/{id}` (admin token only): the team and everything in it.
    pub fn delete_team(&self, id: &str) -> Result<(), ClientError> {
        self.empty("DELETE", &format!("/v1/teams/{}", encode(id)))
    }

    // ---- users ----

    /// `POST /v1/users`.
    pub fn create_user(&self, user: &NewUser) -> Result<User, ClientError> {
        self.call("POST", "/v1/users", Some(&to_json(user)?))
    }

    /// `GET /v1/users` (every page, following `nextUrl`); `team_id` is
    /// required with the admin token.
    pub fn list_users(&self, team_id: Option<&str>) -> Result<UserList, ClientError> {
        let q = query(&[("teamId", team_id.map(str::to_owned)), ("limit", Some("100".to_owned()))]);
        let mut all: UserList = self.call("GET", &format!("/v1/users{q}"), None)?;
        while let Some(next) = all.next_url.take() {
            let page: UserList = self.call("GET", &next, None)?;
            all.data.extend(page.data);
            all.next_url = page.next_url;
        }
        all.count = all.data.len() as u64;
        Ok(all)
    }

    /// `GET /v1/users/{id}`.
    pub fn get_user(&self, id: &str) -> Result<User, ClientError> {
        self.call("GET", &format!("/v1/users/{}", encode(id)), None)
    }

    /// `PATCH /v1/users/{id}`.
    pub fn update_user(&self, id: &str, update: &UserUpdate) -> Result<User, ClientError> {
        let body = to_json(update)?;
        self.call("PATCH", &format!("/v1/users/{}", encode(id)), Some(&body))
    }

    /// `DELETE /v1/users/{id}` (anonymizes the user).
    pub fn delete_user(&self, id: &str) -> Result<(), ClientError> {
        self.empty("DELETE", &format!("/v1/users/{}", encode(id)))
    }

    /// `DELETE /v1/users/{id}/sessions`: revokes every JWT issued to the user.
    pub fn revoke_user_sessions(&self, id: &str) -> Result<(), ClientError> {
        self.empty("DELETE", &format!("/v1/users/{}/sessions", encode(id)))
    }

    /// `DELETE /v1/auth/sessions/{jti}`: revokes one JWT.
    pub fn revoke_session(&self, jti: &str) -> Result<(), ClientError> {
        self.empty("DELETE", &format!("/v1/auth/sessions/{}", encode(jti)))
    }

    // ---- API keys ----

    /// `GET /v1/keys` path with its query, as `nextUrl` has it.
    pub fn keys_path(q: &KeyListQuery) -> String {
        let q = query(&[
            ("teamId", q.team_id.clone()),
            ("status", q.status.clone()),
            ("limit", q.limit.map(|l| l.to_string())),
            ("offset", q.offset.map(|o| o.to_string())),
            ("startingAfter", q.starting_after.clone()),
            ("endingBefore", q.ending_before.clone()),
        ]);
        format!("/v1/keys{q}")
    }

    /// `GET /v1/keys`: one page of seed 001's envelope.
    pub fn list_keys(&self, q: &KeyListQuery) -> Result<KeyList, ClientError> {
        self.call("GET", &Self::keys_path(q), None)
    }

    /// `POST /v1/keys`; the answer's `key` is the secret, shown this once.
    pub fn create_key(&self, key: &NewKey) -> Result<ApiKey, ClientError> {
        self.call("POST", "/v1/keys", Some(&to_json(key)?))
    }

    /// `POST /v1/keys/import`: up to [`crate::types::MAX_IMPORT_KEYS`]
    /// keys in one atomic write; the answer holds the generated secrets, once.
    pub fn import_keys(&self, batch: &KeyImport) -> Result<KeyImportResult, ClientError> {
        self.call("POST", "/v1/keys/import", Some(&to_json(batch)?))
    }

    /// `GET /v1/keys/{id}`.
    pub fn get_key(&self, id: &str) -> Result<ApiKey, ClientError> {
        self.call("GET", &format!("/v1/keys/{}", encode(id)), None)
    }

    /// `PATCH /v1/keys/{id}`.
    pub fn update_key(&self, id: &str, update: &KeyUpdate) -> Result<ApiKey, ClientError> {
        let body = to_json(update)?;
        self.call("PATCH", &format!("/v1/keys/{}", encode(id)), Some(&body))
    }

    /// `DELETE /v1/keys/{id}`.
    pub fn delete_key(&self, id: &str) -> Result<(), ClientError> {
        self.empty("DELETE", &format!("/v1/keys/{}", encode(id)))
    }

    // ---- access tokens (seed 004): always the calling user's own ----

    /// `GET /v1/access-tokens` path with its query.
    pub fn tokens_path(q: &TokenListQuery) -> String {
        let q = query(&[
            ("tokenType", q.token_type.clone()),
            ("includeRevoked", q.include_revoked.then(|| "true".to_owned())),
            ("limit", q.limit.map(|l| l.to_string())),
            ("cursor", q.cursor.clone()),
        ]);
        format!("/v1/access-tokens{q}")
    }

    /// `GET /v1/access-tokens`.
    pub fn list_tokens(&self, q: &TokenListQuery) -> Result<TokenPage, ClientError> {
        self.call("GET", &Self::tokens_path(q), None)
    }

    /// `POST /v1/access-tokens`; `plaintext` is the secret, shown this once.
    pub fn create_token(&self, token: &NewToken) -> Result<CreatedToken, ClientError> {
        self.call("POST", "/v1/access-tokens", Some(&to_json(token)?))
    }

    /// `GET /v1/access-tokens/{id}`.
    pub fn get_token(&self, id: &str) -> Result<AccessToken, ClientError> {
        self.call("GET", &format!("/v1/access-tokens/{}", encode(id)), None)
    }

    /// `DELETE /v1/access-tokens/{id}`.
    pub fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.empty("DELETE", &format!("/v1/access-tokens/{}", encode(id)))
    }

    /// `DELETE /v1/access-tokens`: revokes all, except the token making the call
    /// when `exclude_current`.
    pub fn revoke_all_tokens(&self, exclude_current: bool) -> Result<RevokedCount, ClientError> {
        self.call("DELETE", &format!("/v1/access-tokens?exclude_current={exclude_current}"), None)
    }

    // ---- audit log ----

    /// `GET /v1/logs` path with its query.
    pub fn logs_path(q: &LogQuery) -> String {
        let q = query(&[
            ("teamId", q.team_id.clone()),
            ("action", q.action.clone()),
            ("outcome", q.outcome.clone()),
            ("since", q.since.map(|v| v.to_string())),
            ("until", q.until.map(|v| v.to_string())),
            ("limit", q.limit.map(|v| v.to_string())),
            ("cursor", q.cursor.clone()),
        ]);
        format!("/v1/logs{q}")
    }

    /// `GET /v1/logs`: one page of the team's audit log, newest first.
    pub fn list_logs(&self, q: &LogQuery) -> Result<LogPage, ClientError> {
        self.call("GET", &Self::logs_path(q), None)
    }

    // ---- verification ----

    /// `POST /v1/verify`. Needs no credential; a refusal is `Ok(Verdict::Deny)`.
    pub fn verify(&self, req: &VerifyRequest) -> Result<Verdict, ClientError> {
        decode(self.send("POST", "/v1/verify", None, Some(&to_json(req)?))?)
    }

    fn empty(&self, method: &str, path: &str) -> Result<(), ClientError> {
        let r = self.raw(method, path, None)?;
        check(&r)
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Value, ClientError> {
    serde_json::to_value(v).map_err(|e| ClientError::Protocol(format!("cannot encode: {e}")))
}

fn check(r: &RawResponse) -> Result<(), ClientError> {
    if (200..300).contains(&r.status) {
        return Ok(());
    }
    Err(ClientError::Status {
        status: r.status,
        body: serde_json::from_value(r.body.clone()).unwrap_or_default(),
        retry_after: r.retry_after,
    })
}

/// Decodes a 2xx answer as `T`, or turns the error status into `ClientError`.
pub fn decode<T: DeserializeOwned>(r: RawResponse) -> Result<T, ClientError> {
    check(&r)?;
    serde_json::from_value(r.body).map_err(|e| ClientError::Protocol(format!("HTTP {}: {e}", r.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let parts = |c: &AdminClient| (c.scheme, c.authority.clone(), c.base_path.clone());
        let c = AdminClient::new("http://127.0.0.1:7070", None).unwrap();
        assert_eq!(parts(&c), ("http", "127.0.0.1:7070".into(), "".into()));
        let c = AdminClient::new("localhost:8080/tollgate/", None).unwrap();
        assert_eq!(parts(&c), ("http", "localhost:8080".into(), "/tollgate".into()));
        let c = AdminClient::new("http://[::1]:7070", None).unwrap();
        assert_eq!(parts(&c), ("http", "[::1]:7070".into(), "".into()));
        let c = AdminClient::new("http://example", None).unwrap();
        assert_eq!(parts(&c), ("http", "example:80".into(), "".into()));
        let c = AdminClient::new("https://example", None).unwrap();
        assert_eq!(parts(&c), ("https", "example:443".into(), "".into()));
        let c = AdminClient::new("https://[::1]/p", None).unwrap();
        assert_eq!(parts(&c), ("https", "[::1]:443".into(), "/p".into()));
        for bad in ["http://example:http", "ftp://example", "http://", "http://[::1", "http://a b:1", "http://h:1/a b"]
        {
            assert!(matches!(AdminClient::new(bad, None), Err(ClientError::Url(_))), "{bad}");
        }
    }

    #[test]
    fn control_characters_in_the_credential_are_refused() {
        for bad in ["tok\r\nX-Injected: 1", "tok\n", "tok\r", "t\u{0}k", "t\u{7f}"] {
            let e = AdminClient::new("http://127.0.0.1:1", Some(bad)).unwrap_err();
            assert!(matches!(e, ClientError::Config(_)), "{bad:?}: {e}");
        }
        assert!(AdminClient::new("http://127.0.0.1:1", Some("tgadmin_abc.def-ghi~")).is_ok());
    }

    #[test]
    fn ca_certificates_must_be_pem() {
        let c = AdminClient::new("https://example", None).unwrap();
        let e = c.clone().with_ca_pem(b"not a certificate").unwrap_err();
        assert!(matches!(e, ClientError::Config(_)), "{e}");
        let e = c.with_ca_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err();
        assert!(matches!(e, ClientError::Config(_)), "{e}");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
        assert_eq!(
            AdminClient::keys_path(&KeyListQuery {
                team_id: Some("t1".into()),
                limit: Some(5),
                ..KeyListQuery::default()
            }),
            "/v1/keys?teamId=t1&limit=5"
        );
    }
}
