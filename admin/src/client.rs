//! A typed, blocking client of the tollgate admin HTTP API.
//!
//! It speaks plain HTTP/1.1 over `TcpStream` itself, one connection per call
//! with `Connection: close`: the daemon's admin API listens on loopback or a
//! private address (TLS belongs to a proxy in front of it), calls are rare and
//! small, and this keeps the operator tool free of an HTTP stack's dependency
//! tree. `https://` URLs are refused with a clear message rather than sent in
//! clear text.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::types::*;

/// Largest response body read, so a wrong URL cannot make the tool eat memory.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

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
    },
    /// No answer: bad address, refused or reset connection, timeout.
    Connection(String),
    /// An answer that is not HTTP or not the JSON this client expects.
    Protocol(String),
    /// The base URL cannot be used.
    Url(String),
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
            ClientError::Status { status, body } => {
                let s = body.summary();
                if s.is_empty() { write!(f, "HTTP {status}") } else { write!(f, "HTTP {status}: {s}") }
            }
            ClientError::Connection(m) => write!(f, "cannot reach the daemon: {m}"),
            ClientError::Protocol(m) => write!(f, "unexpected answer from the daemon: {m}"),
            ClientError::Url(m) => write!(f, "bad URL: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A raw answer: status and JSON body (`Value::Null` when empty).
#[derive(Clone, Debug, PartialEq)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// The body parsed as JSON, `Null` if empty.
    pub body: Value,
}

/// A client of one daemon, with one credential (admin token, JWT, API key or
/// access token, all sent as `Authorization: Bearer`).
#[derive(Clone, Debug)]
pub struct AdminClient {
    host: String,
    port: u16,
    base_path: String,
    credential: Option<String>,
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

impl AdminClient {
    /// A client of the daemon at `base_url` (`http://host:port`, optionally with
    /// a path prefix when behind a proxy). `credential` is sent on every call
    /// but `login`.
    pub fn new(base_url: &str, credential: Option<&str>) -> Result<AdminClient, ClientError> {
        let rest = if let Some(r) = base_url.strip_prefix("http://") {
            r
        } else if base_url.starts_with("https://") {
            return Err(ClientError::Url(format!(
                "{base_url}: https is not supported; reach the daemon over http on a trusted network, or through a local proxy"
            )));
        } else if base_url.contains("://") {
            return Err(ClientError::Url(format!("{base_url}: only http:// URLs")));
        } else {
            base_url
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
                None if after.is_empty() => (h, 80),
                None => return Err(bad_port(after)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(ClientError::Url(format!("{base_url}: no host")));
        }
        Ok(AdminClient {
            host: host.to_owned(),
            port,
            base_path: path.to_owned(),
            credential: credential.map(str::to_owned),
        })
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
        let conn = |e: std::io::Error| ClientError::Connection(e.to_string());
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| ClientError::Connection(format!("cannot resolve {}: {e}", self.host)))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(format!("{a}: {e}")),
            }
        }
        let mut stream = stream.ok_or_else(|| {
            ClientError::Connection(last.unwrap_or_else(|| format!("{} resolves to no address", self.host)))
        })?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(conn)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(conn)?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: tollgate-admin/{}\r\n",
            self.base_path,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(a) = authorization {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        if body.is_some() || matches!(method, "POST" | "PATCH" | "PUT") {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(conn)?;
        stream.write_all(payload.as_bytes()).map_err(conn)?;
        read_response(stream)
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
    Err(ClientError::Status { status: r.status, body: serde_json::from_value(r.body.clone()).unwrap_or_default() })
}

/// Decodes a 2xx answer as `T`, or turns the error status into `ClientError`.
pub fn decode<T: DeserializeOwned>(r: RawResponse) -> Result<T, ClientError> {
    check(&r)?;
    serde_json::from_value(r.body).map_err(|e| ClientError::Protocol(format!("HTTP {}: {e}", r.status)))
}

fn read_response(stream: TcpStream) -> Result<RawResponse, ClientError> {
    let io = |e: std::io::Error| ClientError::Connection(e.to_string());
    let proto = |m: &str| ClientError::Protocol(m.to_owned());
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|l| l.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| proto(&format!("not an HTTP status line: {:?}", line.trim_end())))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(io)? == 0 {
            return Err(proto("connection closed inside the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse().map_err(|_| proto("bad Content-Length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| proto("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_RESPONSE_BYTES {
                return Err(proto("response too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(io)?;
            line.clear();
            r.read_line(&mut line).map_err(io)?;
        }
    } else if let Some(n) = length {
        if n > MAX_RESPONSE_BYTES {
            return Err(proto("response too large"));
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else if status != 204 && status != 304 {
        r.take(MAX_RESPONSE_BYTES as u64 + 1).read_to_end(&mut body).map_err(io)?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(proto("response too large"));
        }
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Protocol(format!("HTTP {status}: the body is not JSON ({e})")))?
    };
    Ok(RawResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let c = AdminClient::new("http://127.0.0.1:7070", None).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.base_path.as_str()), ("127.0.0.1", 7070, ""));
        let c = AdminClient::new("localhost:8080/tollgate/", None).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.base_path.as_str()), ("localhost", 8080, "/tollgate"));
        let c = AdminClient::new("http://[::1]:7070", None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 7070));
        let c = AdminClient::new("http://example", None).unwrap();
        assert_eq!(c.port, 80);
        assert!(AdminClient::new("https://example", None).is_err());
        assert!(AdminClient::new("http://example:http", None).is_err());
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
