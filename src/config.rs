//! Configuration: a TOML file, every field optional, with defaults that make
//! `tollgate serve` work with no file at all. Validated as a whole before
//! anything is opened or bound; an error names the field and the reason.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::core::jwt::{JwtAlg, JwtKeyConfig};
use crate::core::model::{Tier, TierLimits};

/// A configuration error, with the place it was found.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The daemon's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the sled store (and generated key files).
    pub data: PathBuf,
    /// Path of the Unix socket for the binary protocol.
    pub socket: PathBuf,
    /// Octal file mode of the socket.
    pub socket_mode: String,
    /// If not empty, only these peer uids may connect to the socket.
    pub socket_allowed_uids: Vec<u32>,
    /// Most socket connections served at once.
    pub max_connections: usize,
    /// Milliseconds a socket frame may take to arrive once it has started; a
    /// connection whose frame stalls longer is closed.
    pub socket_frame_timeout_ms: u64,
    /// Address of the HTTP listener.
    pub http: String,
    /// If set, the HTTP server also listens on this Unix socket (for nginx's
    /// `proxy_pass http://unix:/path:/auth`).
    pub http_socket: Option<PathBuf>,
    /// Octal file mode of `http_socket`.
    pub http_socket_mode: String,
    /// How counters reach the disk.
    pub durability: Durability,
    /// JWT issuing and verification.
    pub jwt: JwtConfig,
    /// Tier limits, overriding seed 000's defaults tier by tier.
    pub tiers: Tiers,
    /// Log output.
    pub log: LogConfig,
    /// nginx `auth_request` (`/auth`).
    pub auth: AuthConfig,
    /// The admin HTTP API.
    pub admin_api: AdminApiConfig,
    /// The bootstrap admin token. Never read from the config file: `serve` takes
    /// it from `TOLLGATE_ADMIN_TOKEN` when this is `None` (tests set it here).
    #[serde(skip)]
    pub admin_token: Option<String>,
}

/// Settings of the admin HTTP API (`/v1/...`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminApiConfig {
    /// Accept a credential in the `?token=` query parameter (seed 003 allows it
    /// but URLs end up in logs, so it is off by default).
    pub allow_query_token: bool,
    /// Failed logins allowed per username and per client address each minute.
    pub login_failures_per_minute: u32,
}

impl Default for AdminApiConfig {
    fn default() -> Self {
        AdminApiConfig { allow_query_token: false, login_failures_per_minute: 10 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from("./tollgate-data"),
            socket: PathBuf::from("./tollgate.sock"),
            socket_mode: "0660".to_owned(),
            socket_allowed_uids: Vec::new(),
            max_connections: 1024,
            socket_frame_timeout_ms: 10_000,
            http: "127.0.0.1:7070".to_owned(),
            http_socket: None,
            http_socket_mode: "0660".to_owned(),
            durability: Durability::default(),
            jwt: JwtConfig::default(),
            tiers: Tiers::default(),
            log: LogConfig::default(),
            admin_api: AdminApiConfig::default(),
            admin_token: None,
            auth: AuthConfig::default(),
        }
    }
}

/// Whether a verification waits for its counters to be on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Counters are flushed every `flush_interval_ms`; a crash loses at most
    /// that interval's counter changes. Admin writes are always durable.
    #[default]
    Relaxed,
    /// A verification that changed a counter is answered only once the change
    /// is on disk (group commit): a crash loses nothing acknowledged.
    Strict,
}

/// Counter persistence.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Durability {
    /// Relaxed or strict.
    pub mode: DurabilityMode,
    /// Relaxed mode: the longest a consumption counter change (remaining
    /// uses, team quota) waits to be written.
    pub flush_interval_ms: u64,
    /// The longest a statistics change (request count, last use) waits to be
    /// written, in either mode.
    pub stats_flush_interval_ms: u64,
}

impl Default for Durability {
    fn default() -> Self {
        Durability { mode: DurabilityMode::Relaxed, flush_interval_ms: 200, stats_flush_interval_ms: 10_000 }
    }
}

/// A JWT key in the config file. Key material comes from files (or, for HS256,
/// an environment variable) so the config file itself holds no secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyFile {
    /// Key id, sent as `kid`.
    pub kid: String,
    /// The algorithm this key is pinned to.
    pub alg: JwtAlg,
    /// HS256: environment variable holding the secret (at least 32 bytes).
    pub secret_env: Option<String>,
    /// PEM private key (signs and verifies).
    pub private_key_file: Option<PathBuf>,
    /// PEM public key (verifies only).
    pub public_key_file: Option<PathBuf>,
}

/// JWT settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// `iss` of issued tokens, required on verified ones.
    pub issuer: String,
    /// `aud` required on verified tokens, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on exp/nbf/iat, in seconds.
    pub leeway_secs: u64,
    /// Lifetime of issued tokens, in seconds.
    pub ttl_secs: u64,
    /// Longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// Verified tokens remembered (a repeated token skips the signature check).
    pub cache_capacity: usize,
    /// Key that signs new tokens; defaults to the first key with a private part.
    pub signing_kid: Option<String>,
    /// Keys; when empty, an Ed25519 key is generated in the data directory.
    pub keys: Vec<JwtKeyFile>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuer: "tollgate".to_owned(),
            audience: None,
            leeway_secs: 30,
            ttl_secs: 3600,
            max_token_bytes: 4096,
            cache_capacity: 100_000,
            signing_kid: None,
            keys: Vec::new(),
        }
    }
}

impl JwtConfig {
    /// Reads the configured key files into key configs.
    pub fn load_keys(&self) -> Result<Vec<JwtKeyConfig>, ConfigError> {
        let read = |kid: &str, what: &str, p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("jwt.keys[{kid}].{what}: cannot read {}: {e}", p.display())))
        };
        let mut out = Vec::new();
        for k in &self.keys {
            let secret = match &k.secret_env {
                None => None,
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    ConfigError(format!("jwt.keys[{}].secret_env: environment variable {var} is not set", k.kid))
                })?),
            };
            let private_key_pem =
                k.private_key_file.as_deref().map(|p| read(&k.kid, "private_key_file", p)).transpose()?;
            let public_key_pem =
                k.public_key_file.as_deref().map(|p| read(&k.kid, "public_key_file", p)).transpose()?;
            out.push(JwtKeyConfig { kid: k.kid.clone(), alg: k.alg, secret, private_key_pem, public_key_pem });
        }
        Ok(out)
    }
}

/// Per-tier overrides; a tier left out keeps seed 000's limits.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tiers {
    /// Free.
    #[serde(rename = "Free")]
    pub free: Option<TierLimits>,
    /// Start.
    #[serde(rename = "Start")]
    pub start: Option<TierLimits>,
    /// Master.
    #[serde(rename = "Master")]
    pub master: Option<TierLimits>,
    /// Pro.
    #[serde(rename = "Pro")]
    pub pro: Option<TierLimits>,
}

impl Tiers {
    /// The effective table, indexed by `Tier::index`.
    pub fn table(&self) -> [TierLimits; 4] {
        let mut t = TierLimits::DEFAULTS;
        for (tier, o) in Tier::ALL.iter().zip([self.free, self.start, self.master, self.pro]) {
            if let Some(limits) = o {
                t[tier.index()] = limits;
            }
        }
        t
    }
}

/// Log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `tollgate=debug`.
    pub level: String,
    /// Human or JSON.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".to_owned(), format: LogFormat::Human }
    }
}

/// The `[auth]` section: how `/auth` reads an nginx `auth_request` subrequest.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Cookie that may carry the credential (after `Authorization: Bearer`
    /// and `X-API-Key`).
    pub cookie: String,
    /// Peers whose `X-Real-IP` / `X-Forwarded-For` are believed: addresses or
    /// CIDR blocks. A Unix-socket peer is always trusted.
    #[serde(deserialize_with = "de_nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// Permissions required by the original request; the first matching rule
    /// wins, and a request no rule matches needs no permission.
    pub routes: Vec<AuthRoute>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            cookie: "tollgate_token".to_owned(),
            trusted_proxies: vec![
                IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
            routes: Vec::new(),
        }
    }
}

/// One `[[auth.routes]]` rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRoute {
    /// Path prefix of the original URI, e.g. `/files/`.
    pub prefix: String,
    /// Methods the rule applies to (upper case); empty = every method. A rule
    /// naming `GET` also applies to `HEAD`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Permissions required, `{resource = [actions]}`.
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
}

/// Parses a list of addresses or CIDR blocks; a bare address is a /32 or /128.
fn de_nets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                serde::de::Error::custom(format!("auth.trusted_proxies: {s:?} is not an IP address or CIDR block"))
            })
        })
        .collect()
}

/// Whether `s` is an HTTP token (RFC 9110 `tchar`s), as method and cookie names are.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Config {
    /// Reads `path` (or the defaults when `None`) and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read config {}: {e}", p.display())))?;
                Config::parse(&text).map_err(|e| ConfigError(format!("{}: {}", p.display(), e.0)))?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (without validating).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))
    }

    /// The socket mode as a number.
    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        match u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => err(format!("socket_mode: {:?} is not an octal file mode like \"0660\"", self.socket_mode)),
        }
    }

    /// The HTTP socket mode as a number.
    pub fn http_socket_mode_bits(&self) -> Result<u32, ConfigError> {
        match u32::from_str_radix(self.http_socket_mode.trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => err(format!("http_socket_mode: {:?} is not an octal file mode like \"0660\"", self.http_socket_mode)),
        }
    }

    /// The HTTP address, parsed.
    pub fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.http
            .parse()
            .map_err(|_| ConfigError(format!("http: {:?} is not an address like 127.0.0.1:7070", self.http)))
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_mode_bits()?;
        self.http_addr()?;
        if self.data.as_os_str().is_empty() {
            return err("data: must not be empty");
        }
        if self.socket.as_os_str().is_empty() || self.socket.as_os_str().len() > 100 {
            return err("socket: must be a path of 1 to 100 bytes (the Unix socket limit is 108)");
        }
        if self.max_connections == 0 {
            return err("max_connections: must be at least 1");
        }
        if !(1..=3_600_000).contains(&self.socket_frame_timeout_ms) {
            return err("socket_frame_timeout_ms: must be between 1 and 3600000");
        }
        if !(1..=60_000).contains(&self.durability.flush_interval_ms) {
            return err("durability.flush_interval_ms: must be between 1 and 60000");
        }
        if !(self.durability.flush_interval_ms..=3_600_000).contains(&self.durability.stats_flush_interval_ms) {
            return err("durability.stats_flush_interval_ms: must be between flush_interval_ms and 3600000");
        }
        let j = &self.jwt;
        if j.issuer.is_empty() {
            return err("jwt.issuer: must not be empty");
        }
        if j.ttl_secs == 0 || j.ttl_secs > 366 * 86_400 {
            return err("jwt.ttl_secs: must be between 1 and 31622400");
        }
        if j.leeway_secs > 300 {
            return err("jwt.leeway_secs: more than 300 seconds defeats expiry");
        }
        if !(256..=65_536).contains(&j.max_token_bytes) {
            return err("jwt.max_token_bytes: must be between 256 and 65536");
        }
        if j.cache_capacity > 10_000_000 {
            return err("jwt.cache_capacity: at most 10000000");
        }
        for (tier, limits) in Tier::ALL.iter().zip(self.tiers.table()) {
            if limits.requests_per_minute.get() == Some(0) {
                return err(format!("tiers.{tier}.requests_per_minute: must be at least 1 or \"unlimited\""));
            }
        }
        if self.admin_api.login_failures_per_minute == 0 {
            return err("admin_api.login_failures_per_minute: must be at least 1");
        }
        if j.keys.is_empty() && j.signing_kid.is_some() {
            return err("jwt.signing_kid: set, but no jwt.keys are configured");
        }
        self.http_socket_mode_bits()?;
        if let Some(p) = &self.http_socket {
            if p.as_os_str().is_empty() || p.as_os_str().len() > 100 {
                return err("http_socket: must be a path of 1 to 100 bytes (the Unix socket limit is 108)");
            }
            if *p == self.socket {
                return err("http_socket: must differ from socket");
            }
        }
        self.auth.validate()
    }
}

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !is_token(&self.cookie) {
            return err(format!("auth.cookie: {:?} is not a cookie name", self.cookie));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !r.prefix.starts_with('/') {
                return err(format!("auth.routes[{i}].prefix: {:?} must start with \"/\"", r.prefix));
            }
            // Requests are matched on normalized paths, which never hold these.
            if r.prefix.split('/').any(|seg| seg == "." || seg == "..") || r.prefix.contains("//") {
                return err(format!("auth.routes[{i}].prefix: {:?} must be a normalized path", r.prefix));
            }
            for m in &r.methods {
                if !is_token(m) || m.bytes().any(|b| b.is_ascii_lowercase()) {
                    return err(format!("auth.routes[{i}].methods: {m:?} is not an upper-case HTTP method"));
                }
            }
            for (res, acts) in &r.permissions {
                if res.is_empty() {
                    return err(format!("auth.routes[{i}].permissions: a resource name is empty"));
                }
                if acts.is_empty() || acts.iter().any(String::is_empty) {
                    return err(format!("auth.routes[{i}].permissions.{res}: list one or more non-empty actions"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Limit;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.http, "127.0.0.1:7070");
        assert_eq!(c.socket, PathBuf::from("./tollgate.sock"));
        assert_eq!(c.socket_mode_bits().unwrap(), 0o660);
        assert_eq!(c.tiers.table(), TierLimits::DEFAULTS);
    }

    #[test]
    fn tiers_override_one_by_one() {
        let c = Config::parse(
            r#"
            [tiers.Free]
            requests_per_minute = 5
            members = 2
            documents = "unlimited"
            log_retention_days = 7
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        let t = c.tiers.table();
        assert_eq!(t[0].requests_per_minute, Limit::Max(5));
        assert_eq!(t[0].documents.get(), None);
        assert_eq!(t[3], TierLimits::DEFAULTS[3]);
    }

    #[test]
    fn bad_config_says_where() {
        let cases = [
            ("http = 7070", "http"),
            ("htp = \"x\"", "unknown field `htp`"),
            ("socket_mode = \"999\"", "socket_mode"),
            ("http = \"localhost\"", "http"),
            ("[durability]\nmode = \"sometimes\"", "unknown variant `sometimes`"),
            ("[durability]\nflush_interval_ms = 0", "durability.flush_interval_ms"),
            ("[jwt]\nleeway_secs = 3600", "jwt.leeway_secs"),
            ("[tiers.Gold]\nrequests_per_minute = 1", "unknown field `Gold`"),
            ("[tiers.Pro]\nrequests_per_minute = 0\nmembers = 1\ndocuments = 1\nlog_retention_days = 1", "tiers.Pro"),
            (
                "[tiers.Pro]\nrequests_per_minute = \"lots\"\nmembers = 1\ndocuments = 1\nlog_retention_days = 1",
                "requests_per_minute",
            ),
            ("[[jwt.keys]]\nkid = \"a\"\nalg = \"HS512\"", "HS512"),
            ("[jwt]\nsigning_kid = \"a\"", "jwt.signing_kid"),
            ("http_socket_mode = \"9\"", "http_socket_mode"),
            ("http_socket = \"\"", "http_socket"),
            ("http_socket = \"./tollgate.sock\"", "http_socket"),
            ("[auth]\ncookie = \"a b\"", "auth.cookie"),
            ("[auth]\ntrusted_proxies = [\"10.0.0.0/33\"]", "auth.trusted_proxies"),
            ("[auth]\ntrusted_proxies = [\"localhost\"]", "auth.trusted_proxies"),
            ("[[auth.routes]]\nprefix = \"files\"", "auth.routes[0].prefix"),
            ("[[auth.routes]]\nprefix = \"/a/../b\"", "auth.routes[0].prefix"),
            ("[[auth.routes]]\nprefix = \"/\"\nmethods = [\"get\"]", "auth.routes[0].methods"),
            ("[[auth.routes]]\nprefix = \"/\"\npermissions = { files = [] }", "auth.routes[0].permissions.files"),
            ("[[auth.routes]]\nprefix = \"/\"\nmethod = [\"GET\"]", "unknown field `method`"),
        ];
        for (text, needle) in cases {
            let e = Config::parse(text).and_then(|c| c.validate()).unwrap_err();
            assert!(e.0.contains(needle), "{text:?} gave {:?}, expected mention of {needle:?}", e.0);
        }
    }

    #[test]
    fn auth_section_parses() {
        let c = Config::parse(
            r#"
            http_socket = "/run/tollgate/http.sock"
            [auth]
            cookie = "session"
            trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]
            [[auth.routes]]
            prefix = "/files/"
            methods = ["GET"]
            permissions = { files = ["read"] }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.auth.trusted_proxies.len(), 2);
        assert!(c.auth.trusted_proxies[1].contains(&"192.168.1.1".parse::<IpAddr>().unwrap()));
        assert_eq!(c.auth.routes[0].permissions["files"], ["read"]);
        let d = Config::default();
        assert_eq!(d.auth.cookie, "tollgate_token");
        assert_eq!(d.http_socket_mode_bits().unwrap(), 0o660);
        assert!(d.auth.trusted_proxies.iter().any(|n| n.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST))));
        assert!(d.auth.trusted_proxies.iter().any(|n| n.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST))));
    }

    #[test]
    fn missing_key_file_is_reported() {
        let c = Config::parse("[[jwt.keys]]\nkid = \"k1\"\nalg = \"RS256\"\nprivate_key_file = \"/nonexistent.pem\"")
            .unwrap();
        let e = c.jwt.load_keys().unwrap_err();
        assert!(e.0.contains("jwt.keys[k1].private_key_file"), "{}", e.0);
    }
}
