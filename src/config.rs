//! Configuration: a TOML file, every field optional, with defaults that make
//! `tollgate serve` work with no file at all. Validated as a whole before
//! anything is opened or bound; an error names the field and the reason, and,
//! read from a file, the file, line and column ([`SourceFile`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::core::jwt::{JwtAlg, JwtKeyConfig};
use crate::core::model::{Tier, TierLimits};

/// A configuration error, with the place it was found: by convention the
/// text starts with the key path (`durability.flush_interval_ms: ...`), which
/// [`SourceFile::locate`] turns into a file position.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The daemon's configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
    /// Milliseconds a new socket connection may take to send its hello; a
    /// connection that has not is closed.
    pub socket_handshake_timeout_ms: u64,
    /// Milliseconds a socket frame may take to arrive once it has started; a
    /// connection whose frame stalls longer is closed.
    pub socket_frame_timeout_ms: u64,
    /// Milliseconds one write of answers may wait for a socket client that
    /// does not read them; then the connection is closed.
    pub socket_write_timeout_ms: u64,
    /// On SIGTERM, milliseconds socket connections get to send the answers
    /// they owe; connections still open after it are dropped.
    pub socket_drain_grace_ms: u64,
    /// Address of the HTTP listener.
    pub http: String,
    /// If set, the HTTP server also listens on this Unix socket (for nginx's
    /// `proxy_pass http://unix:/path:/auth`).
    pub http_socket: Option<PathBuf>,
    /// Octal file mode of `http_socket`.
    pub http_socket_mode: String,
    /// Connection handling of the HTTP listeners (timeouts, cap, drain, TLS).
    pub http_server: HttpServerConfig,
    /// How counters reach the disk.
    pub durability: Durability,
    /// The store's own memory.
    pub store: StoreConfig,
    /// Cluster mode (`[cluster]`): the shared PostgreSQL, leases.
    pub cluster: ClusterConfig,
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
    /// `/metrics`.
    pub metrics: MetricsConfig,
    /// The audit log's bounds.
    pub audit: AuditConfig,
    /// The file this configuration was read from, if any: a reload reads it again.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Command-line settings that take the place of the file's; a reload keeps them.
    #[serde(skip)]
    pub overrides: Overrides,
    /// The bootstrap admin token. Never read from the config file: `serve` takes
    /// it from `TOLLGATE_ADMIN_TOKEN` when this is `None` (tests set it here).
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// Demo access (seed 003): a read-only API key of a demo team's Reader,
    /// made once and kept in `<data>/demo-key`. Off by default; refused on a
    /// non-loopback plain-HTTP listener.
    pub demo: bool,
}

/// Settings given on the command line, which win over the file's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--http`.
    pub http: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-client-ca`.
    pub tls_client_ca: Option<PathBuf>,
    /// `--insecure-http` (only ever turns `http_server.insecure` on).
    pub insecure_http: bool,
    /// `--demo` (only ever turns `demo` on).
    pub demo: bool,
    /// `--postgres` (`TOLLGATE_POSTGRES_URL`): `cluster.postgres_url`.
    pub postgres: Option<SecretString>,
}

/// The `[http_server]` section: how the HTTP listeners (TCP, TLS and the
/// HTTP Unix socket) treat connections. (`http` itself is the address.)
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// A request's head (request line and headers) must arrive within this
    /// many milliseconds of its first byte, and a new connection must send
    /// (and, with TLS, finish its handshake and send) a whole head within it.
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request in progress is closed after
    /// this many milliseconds.
    pub idle_timeout_ms: u64,
    /// Once its head is read, a request's body must arrive, and its answer be
    /// ready, within this many milliseconds; otherwise the connection is closed.
    pub body_timeout_ms: u64,
    /// Most HTTP connections open at once, over all HTTP listeners. Above it,
    /// the longest-idle connection not serving a request is closed to make
    /// room; if every one is serving, the new connection is closed at once.
    /// Lowered at start to fit the process's open-file limit.
    pub max_connections: usize,
    /// On SIGTERM, requests in progress get this many milliseconds to finish;
    /// connections still open after it are dropped.
    pub drain_grace_ms: u64,
    /// Serve plain HTTP on a TCP address that is not loopback (refused
    /// otherwise): tokens would cross the network in clear.
    pub insecure: bool,
    /// HTTPS on the TCP listener.
    pub tls: Option<TlsConfig>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
            drain_grace_ms: 10_000,
            insecure: false,
            tls: None,
        }
    }
}

/// The `[http_server.tls]` section: PEM files, read again on every reload.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// If set, clients must present a certificate issued by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

/// The `[metrics]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Ask for the bootstrap admin token (`Authorization: Bearer`) on
    /// `/metrics`. Off by default: the counts are not secret and the HTTP
    /// listener is on localhost unless configured otherwise.
    pub require_admin_token: bool,
}

/// The `[audit]` section: how much the audit log keeps.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Most events kept per team (and for the pseudo-team of unattributed
    /// events); the oldest are removed first. Retention per tier applies too.
    pub max_events_per_team: u64,
    /// Unattributed failures (no credential, or an unknown, malformed or
    /// unverifiable one) stored each minute, over all interfaces together, as
    /// samples; the rest are only counted in `/metrics`. 0 stores none.
    pub unattributed_samples_per_minute: u32,
}

/// Upper bound of `audit.max_events_per_team`.
pub const MAX_AUDIT_EVENTS_PER_TEAM: u64 = 100_000_000;
/// Upper bound of `audit.unattributed_samples_per_minute`.
pub const MAX_AUDIT_SAMPLES_PER_MINUTE: u32 = 60_000;

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { max_events_per_team: 100_000, unattributed_samples_per_minute: 60 }
    }
}

/// Settings of the admin HTTP API (`/v1/...`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminApiConfig {
    /// Accept a credential in the `?token=` query parameter (seed 003 allows it
    /// but URLs end up in logs, so it is off by default).
    pub allow_query_token: bool,
    /// Failed logins allowed per username and per client address each minute.
    pub login_failures_per_minute: u32,
    /// Origins (`scheme://host[:port]`) whose pages may make state-changing
    /// calls authenticated by a cookie. A cookie-authenticated request that
    /// changes something and carries an `Origin` header not listed here is
    /// refused (cross-site request forgery); the default lists none.
    pub allowed_origins: Vec<String>,
}

impl Default for AdminApiConfig {
    fn default() -> Self {
        AdminApiConfig { allow_query_token: false, login_failures_per_minute: 10, allowed_origins: Vec::new() }
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
            socket_handshake_timeout_ms: 5_000,
            socket_frame_timeout_ms: 10_000,
            socket_write_timeout_ms: 10_000,
            socket_drain_grace_ms: 10_000,
            http: "127.0.0.1:7070".to_owned(),
            http_socket: None,
            http_socket_mode: "0660".to_owned(),
            http_server: HttpServerConfig::default(),
            durability: Durability::default(),
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
            jwt: JwtConfig::default(),
            tiers: Tiers::default(),
            log: LogConfig::default(),
            admin_api: AdminApiConfig::default(),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            file: None,
            overrides: Overrides::default(),
            admin_token: None,
            demo: false,
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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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

/// The `[store]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's page cache, in MiB (sled's `cache_capacity`). The
    /// verifier never reads the store (the in-memory index holds what it
    /// needs), so this serves only the admin API's reads and the writes.
    pub cache_mb: u64,
}

/// Default of `store.cache_mb`.
pub const DEFAULT_STORE_CACHE_MB: u64 = 32;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { cache_mb: DEFAULT_STORE_CACHE_MB }
    }
}

/// The `[cluster]` section. With `postgres_url` (or `serve --postgres`) the
/// daemon is one node of a cluster whose truth is that database
/// (ARCHITECTURE.md, "Cluster mode"); without it, the embedded store alone.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `postgres://user:password@host:port/db?sslmode=prefer`, or the
    /// key=value form. Holds a password: never logged.
    pub postgres_url: Option<SecretString>,
    /// PEM CA certificates trusted for the server's certificate (TLS);
    /// Mozilla's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool (admin writes, leases, catch-up); the
    /// change listener has one more of its own.
    pub pool_size: usize,
    /// How long a node's lease row outlives its last heartbeat.
    pub lease_ttl_ms: u64,
    /// The largest number of uses of one key a node holds at once (active
    /// part and reserve); it activates a quarter of that at a time.
    pub lease_max: u32,
    /// How long a verification that found its lease empty waits for the
    /// lease it asked for before it is denied.
    pub lease_wait_ms: u64,
    /// How long a node may go without knowing it has every change (its
    /// change listener down, or the log unreadable) before `on_stale` applies.
    pub max_staleness_ms: u64,
    /// What a node does past `max_staleness_ms`.
    pub on_stale: OnStale,
    /// How long the change log keeps a change: older ones are deleted (one
    /// node at a time, the newest change always kept). A node whose
    /// position was deleted meanwhile loads a snapshot instead.
    pub log_retention_secs: u64,
}

/// What a cluster node does when it may have missed changes for longer than
/// `cluster.max_staleness_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    /// Fail closed: refuse to answer verifications (socket: `SERVER_BUSY`
    /// errors; HTTP: 503) and report not ready, until it has caught up. A
    /// revocation made elsewhere is then never honoured late by more than
    /// the maximum staleness.
    #[default]
    Refuse,
    /// Fail open: keep verifying from memory (a revocation made elsewhere
    /// meanwhile is not seen until the node catches up).
    Serve,
}

/// A string that holds a secret (a connection string with its password):
/// its `Debug` shows `[redacted]`, so printing a configuration shows none.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            postgres_url: None,
            ca_file: None,
            pool_size: 4,
            lease_ttl_ms: 30_000,
            lease_max: 100,
            lease_wait_ms: 100,
            max_staleness_ms: 60_000,
            on_stale: OnStale::Refuse,
            log_retention_secs: 86_400,
        }
    }
}

impl ClusterConfig {
    /// The section's problems; with `jwt` (a daemon's configuration), also
    /// the JWT keys every node must share.
    pub fn problems(&self, jwt: Option<&JwtConfig>) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let Some(url) = &self.postgres_url else { return errs };
        if let Err(e) = url.0.parse::<tokio_postgres::Config>() {
            // The URL may hold a password: only the parser's reason is shown.
            errs.push(ConfigError(format!("cluster.postgres_url: not a PostgreSQL connection string: {e}")));
        }
        if !(1..=64).contains(&self.pool_size) {
            errs.push(ConfigError("cluster.pool_size: must be between 1 and 64".into()));
        }
        if !(1_000..=3_600_000).contains(&self.lease_ttl_ms) {
            errs.push(ConfigError("cluster.lease_ttl_ms: must be between 1000 and 3600000".into()));
        }
        if !(1..=1_000_000).contains(&self.lease_max) {
            errs.push(ConfigError("cluster.lease_max: must be between 1 and 1000000".into()));
        }
        if self.lease_wait_ms > 10_000 {
            errs.push(ConfigError("cluster.lease_wait_ms: must be at most 10000".into()));
        }
        if !(1_000..=86_400_000).contains(&self.max_staleness_ms) {
            errs.push(ConfigError("cluster.max_staleness_ms: must be between 1000 and 86400000".into()));
        }
        if !(1..=31_536_000).contains(&self.log_retention_secs) {
            errs.push(ConfigError("cluster.log_retention_secs: must be between 1 and 31536000 (a year)".into()));
        }
        if jwt.is_some_and(|j| j.keys.is_empty()) {
            errs.push(ConfigError(
                "cluster: cluster mode needs [[jwt.keys]] that every node shares (a generated signing key is one \
                 node's own, and its JWTs would be refused by the others)"
                    .into(),
            ));
        }
        errs
    }
}

/// A JWT key in the config file. Key material comes from files (or, for HS256,
/// an environment variable) so the config file itself holds no secret.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
    /// Longest lifetime (`exp - iat`) a verified token may claim, in seconds;
    /// at least `ttl_secs`.
    pub max_lifetime_secs: u64,
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
            max_lifetime_secs: 86_400,
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
        let read = |i: usize, kid: &str, what: &str, p: &Path| {
            std::fs::read_to_string(p).map_err(|e| {
                ConfigError(format!("jwt.keys[{i}].{what}: cannot read {} (key {kid:?}): {e}", p.display()))
            })
        };
        let mut out = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let secret = match &k.secret_env {
                None => None,
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    ConfigError(format!(
                        "jwt.keys[{i}].secret_env: environment variable {var} is not set (key {:?})",
                        k.kid
                    ))
                })?),
            };
            let private_key_pem =
                k.private_key_file.as_deref().map(|p| read(i, &k.kid, "private_key_file", p)).transpose()?;
            let public_key_pem =
                k.public_key_file.as_deref().map(|p| read(i, &k.kid, "public_key_file", p)).transpose()?;
            out.push(JwtKeyConfig { kid: k.kid.clone(), alg: k.alg, secret, private_key_pem, public_key_pem });
        }
        Ok(out)
    }
}

/// Per-tier overrides; a tier left out keeps seed 000's limits.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
    /// Every problem found is reported, one per line, each located in the file.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, Overrides::default())
    }

    /// Like [`Config::load`], with command-line settings applied before the
    /// checks (they take part in them: `--insecure-http`, `--tls-cert`, ...).
    pub fn load_with(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        match path {
            None => {
                let mut config = Config::default();
                config.apply_overrides(overrides);
                config.validate()?;
                Ok(config)
            }
            Some(p) => SourceFile::read(p)?
                .config_with(overrides)
                .map_err(|errs| ConfigError(errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join("\n"))),
        }
    }

    /// Parses TOML text (without validating). The error names the key and the
    /// line and column.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let source = SourceFile { path: PathBuf::from("<config>"), text: text.to_owned() };
        source.parse()
    }

    /// Applies command-line settings (and remembers them for reloads).
    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(d) = &o.data {
            self.data.clone_from(d);
        }
        if let Some(s) = &o.socket {
            self.socket.clone_from(s);
        }
        if let Some(h) = &o.http {
            self.http.clone_from(h);
        }
        if let Some(f) = o.log_format {
            self.log.format = f;
        }
        if o.tls_cert.is_some() || o.tls_key.is_some() || o.tls_client_ca.is_some() {
            let tls = self.http_server.tls.get_or_insert_with(TlsConfig::default);
            if let Some(c) = &o.tls_cert {
                tls.cert.clone_from(c);
            }
            if let Some(k) = &o.tls_key {
                tls.key.clone_from(k);
            }
            if let Some(ca) = &o.tls_client_ca {
                tls.client_ca = Some(ca.clone());
            }
        }
        if o.insecure_http {
            self.http_server.insecure = true;
        }
        if o.demo {
            self.demo = true;
        }
        if let Some(url) = &o.postgres {
            self.cluster.postgres_url = Some(url.clone());
        }
        self.overrides = o;
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
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Checks every field and returns every problem, each starting with its
    /// key path.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut check = |ok: bool, msg: &dyn Fn() -> String| {
            if !ok {
                errs.push(ConfigError(msg()));
            }
        };
        let r = self.socket_mode_bits();
        check(r.is_ok(), &|| r.as_ref().err().map(|e| e.0.clone()).unwrap_or_default());
        let r = self.http_addr();
        check(r.is_ok(), &|| r.as_ref().err().map(|e| e.0.clone()).unwrap_or_default());
        check(!self.data.as_os_str().is_empty(), &|| "data: must not be empty".into());
        check(!self.socket.as_os_str().is_empty() && self.socket.as_os_str().len() <= 100, &|| {
            "socket: must be a path of 1 to 100 bytes (the Unix socket limit is 108)".into()
        });
        check(self.max_connections != 0, &|| "max_connections: must be at least 1".into());
        for (key, v, lo) in [
            ("socket_handshake_timeout_ms", self.socket_handshake_timeout_ms, 1),
            ("socket_frame_timeout_ms", self.socket_frame_timeout_ms, 1),
            ("socket_write_timeout_ms", self.socket_write_timeout_ms, 1),
            ("socket_drain_grace_ms", self.socket_drain_grace_ms, 0),
        ] {
            check((lo..=3_600_000).contains(&v), &|| format!("{key}: must be between {lo} and 3600000 (milliseconds)"));
        }
        let d = &self.durability;
        check((1..=60_000).contains(&d.flush_interval_ms), &|| {
            "durability.flush_interval_ms: must be between 1 and 60000".into()
        });
        check((d.flush_interval_ms..=3_600_000).contains(&d.stats_flush_interval_ms), &|| {
            format!(
                "durability.stats_flush_interval_ms: must be between flush_interval_ms ({}) and 3600000",
                d.flush_interval_ms
            )
        });
        check((1..=65_536).contains(&self.store.cache_mb), &|| {
            "store.cache_mb: must be between 1 and 65536 (MiB)".into()
        });
        let j = &self.jwt;
        check(!j.issuer.is_empty(), &|| "jwt.issuer: must not be empty".into());
        check(j.ttl_secs != 0 && j.ttl_secs <= 366 * 86_400, &|| "jwt.ttl_secs: must be between 1 and 31622400".into());
        check(j.max_lifetime_secs >= j.ttl_secs && j.max_lifetime_secs <= 366 * 86_400, &|| {
            format!("jwt.max_lifetime_secs: must be between ttl_secs ({}) and 31622400", j.ttl_secs)
        });
        check(j.leeway_secs <= 300, &|| "jwt.leeway_secs: more than 300 seconds defeats expiry".into());
        check((256..=65_536).contains(&j.max_token_bytes), &|| {
            "jwt.max_token_bytes: must be between 256 and 65536".into()
        });
        check(j.cache_capacity <= 10_000_000, &|| "jwt.cache_capacity: at most 10000000".into());
        for (tier, limits) in Tier::ALL.iter().zip(self.tiers.table()) {
            check(limits.requests_per_minute.get() != Some(0), &|| {
                format!("tiers.{tier}.requests_per_minute: must be at least 1 or \"unlimited\"")
            });
        }
        check(self.admin_api.login_failures_per_minute != 0, &|| {
            "admin_api.login_failures_per_minute: must be at least 1".into()
        });
        // Browsers send `scheme://host[:port]` exactly: anything else would
        // never match, silently.
        for (i, o) in self.admin_api.allowed_origins.iter().enumerate() {
            let well_formed = o.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https")
                    && !host.is_empty()
                    && !host.contains('/')
                    && host.chars().all(|c| c.is_ascii_graphic())
            });
            check(well_formed, &|| {
                format!("admin_api.allowed_origins[{i}]: {o:?} is not an origin (scheme://host[:port], no path)")
            });
        }
        check((1..=MAX_AUDIT_EVENTS_PER_TEAM).contains(&self.audit.max_events_per_team), &|| {
            format!("audit.max_events_per_team: must be between 1 and {MAX_AUDIT_EVENTS_PER_TEAM}")
        });
        check(self.audit.unattributed_samples_per_minute <= MAX_AUDIT_SAMPLES_PER_MINUTE, &|| {
            format!("audit.unattributed_samples_per_minute: must be between 0 and {MAX_AUDIT_SAMPLES_PER_MINUTE}")
        });
        check(!(j.keys.is_empty() && j.signing_kid.is_some()), &|| {
            "jwt.signing_kid: set, but no jwt.keys are configured".into()
        });
        if let Some(kid) = &j.signing_kid
            && !j.keys.is_empty()
            && !j.keys.iter().any(|k| k.kid == *kid)
        {
            errs.push(ConfigError(format!("jwt.signing_kid: {kid:?} is not the kid of any [[jwt.keys]]")));
        }
        for (i, k) in j.keys.iter().enumerate() {
            if k.secret_env.is_none() && k.private_key_file.is_none() && k.public_key_file.is_none() {
                errs.push(ConfigError(format!(
                    "jwt.keys[{i}]: key {:?} has no material: set private_key_file, public_key_file or secret_env",
                    k.kid
                )));
            }
        }
        if let Err(e) = self.http_socket_mode_bits() {
            errs.push(e);
        }
        if let Some(p) = &self.http_socket {
            if p.as_os_str().is_empty() || p.as_os_str().len() > 100 {
                errs.push(ConfigError(
                    "http_socket: must be a path of 1 to 100 bytes (the Unix socket limit is 108)".into(),
                ));
            }
            if *p == self.socket {
                errs.push(ConfigError("http_socket: must differ from socket".into()));
            }
        }
        if let Err(e) = parse_level_directives(&self.log.level) {
            errs.push(e);
        }
        errs.extend(self.http_server_problems());
        errs.extend(self.cluster.problems(Some(&self.jwt)));
        errs.extend(self.auth.problems());
        errs
    }
}

impl Config {
    fn http_server_problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let h = &self.http_server;
        let mut range = |key: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                errs.push(ConfigError(format!("http_server.{key}: must be between {lo} and {hi} (milliseconds)")));
            }
        };
        range("header_read_timeout_ms", h.header_read_timeout_ms, 1, 3_600_000);
        range("idle_timeout_ms", h.idle_timeout_ms, 1, 86_400_000);
        range("body_timeout_ms", h.body_timeout_ms, 1, 3_600_000);
        range("drain_grace_ms", h.drain_grace_ms, 0, 3_600_000);
        if !(1..=1_000_000).contains(&h.max_connections) {
            errs.push(ConfigError("http_server.max_connections: must be between 1 and 1000000".into()));
        }
        if let Some(t) = &h.tls {
            if t.cert.as_os_str().is_empty() {
                errs.push(ConfigError(
                    "http_server.tls.cert: missing: HTTPS needs a certificate file (--tls-cert) and its key (--tls-key)"
                        .into(),
                ));
            }
            if t.key.as_os_str().is_empty() {
                errs.push(ConfigError(
                    "http_server.tls.key: missing: HTTPS needs a private key file (--tls-key) and its certificate (--tls-cert)"
                        .into(),
                ));
            }
            if t.client_ca.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                errs.push(ConfigError("http_server.tls.client_ca: must not be empty".into()));
            }
        }
        if let Ok(addr) = self.http_addr()
            && !addr.ip().is_loopback()
            && h.tls.is_none()
            && self.demo
        {
            errs.push(ConfigError(format!(
                "demo: demo access is for trying tollgate on this machine; it is refused with plain HTTP on {addr} \
                 (serve on a loopback address, or over HTTPS)"
            )));
        }
        if let Ok(addr) = self.http_addr()
            && !addr.ip().is_loopback()
            && h.tls.is_none()
            && !h.insecure
        {
            errs.push(ConfigError(format!(
                "http: {addr} is not a loopback address, and plain HTTP there sends tokens across the network in \
                 clear: give a certificate (--tls-cert FILE --tls-key FILE, or [http_server.tls] cert and key), or \
                 accept the risk with --insecure-http ([http_server] insecure = true)"
            )));
        }
        errs
    }
}

/// Checks a `log.level` filter the way the daemon will read it.
fn parse_level_directives(level: &str) -> Result<(), ConfigError> {
    tracing_subscriber::EnvFilter::try_new(level).map(|_| ()).map_err(|e| {
        ConfigError(format!("log.level: {level:?} is not a tracing filter like \"info\" or \"tollgate=debug\": {e}"))
    })
}

impl AuthConfig {
    fn problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if !is_token(&self.cookie) {
            errs.push(ConfigError(format!("auth.cookie: {:?} is not a cookie name", self.cookie)));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !r.prefix.starts_with('/') {
                errs.push(ConfigError(format!("auth.routes[{i}].prefix: {:?} must start with \"/\"", r.prefix)));
            }
            // Requests are matched on normalized paths, which never hold these.
            if r.prefix.split('/').any(|seg| seg == "." || seg == "..") || r.prefix.contains("//") {
                errs.push(ConfigError(format!("auth.routes[{i}].prefix: {:?} must be a normalized path", r.prefix)));
            }
            for m in &r.methods {
                if !is_token(m) || m.bytes().any(|b| b.is_ascii_lowercase()) {
                    errs.push(ConfigError(format!("auth.routes[{i}].methods: {m:?} is not an upper-case HTTP method")));
                }
            }
            for (res, acts) in &r.permissions {
                if res.is_empty() {
                    errs.push(ConfigError(format!("auth.routes[{i}].permissions: a resource name is empty")));
                }
                if acts.is_empty() || acts.iter().any(String::is_empty) {
                    errs.push(ConfigError(format!(
                        "auth.routes[{i}].permissions.{res}: list one or more non-empty actions"
                    )));
                }
            }
        }
        errs
    }
}

/// A configuration file's text, kept so that every error found in it, by the
/// TOML parser, by validation or later by loading the keys it names, can be
/// reported as `file:line:column: key: message` with the line quoted.
pub struct SourceFile {
    /// Where the text came from.
    pub path: PathBuf,
    text: String,
}

impl SourceFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<SourceFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        Ok(SourceFile { path: path.to_owned(), text })
    }

    /// Parses the text (without validating); every problem is located, one
    /// per line.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let (config, problems) = self.parse_lenient()?;
        if problems.is_empty() {
            return Ok(config);
        }
        let located = self.locate_all(&problems);
        Err(ConfigError(located.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join("\n")))
    }

    /// Parses the text key by key against the schema
    /// ([`crate::config_schema::check`]): every unknown key, wrong type, bad
    /// choice and missing required key is returned (unlocated: each starts
    /// with its key path), with the configuration the rest makes (what is
    /// wrong left at its default). `Err` only for text that is not TOML.
    pub fn parse_lenient(&self) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let Ok(mut table) = self.text.parse::<toml::Table>() else {
            // Not TOML: the parser's error, located by its span.
            return Err(self
                .parse_strict()
                .err()
                .unwrap_or_else(|| ConfigError(format!("{}: not TOML", self.path.display()))));
        };
        let mut problems = crate::config_schema::check(&mut table);
        match toml::Value::Table(table).try_into::<Config>() {
            Ok(config) => Ok((config, problems)),
            // The schema let through something serde refuses: report it, and
            // what the schema found, with serde's own located error.
            Err(e) => {
                problems.push(ConfigError(e.message().trim_end().to_owned()));
                match self.parse_strict() {
                    Err(located) => Err(ConfigError(
                        self.locate_all(&problems)
                            .iter()
                            .map(|e| e.0.as_str())
                            .chain([located.0.as_str()])
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )),
                    Ok(config) => Ok((config, problems)),
                }
            }
        }
    }

    /// serde's reading of the text, which stops at the first problem.
    fn parse_strict(&self) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(&self.text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            match e.span() {
                Some(span) => {
                    let key = self.key_at(span.start);
                    self.render(Some(span.start), key.as_deref(), &message)
                }
                None => self.render(None, None, &message),
            }
        })
    }

    /// Parses and validates; every problem is returned, located.
    pub fn config(&self) -> Result<Config, Vec<ConfigError>> {
        self.config_with(Overrides::default())
    }

    /// Parses, applies command-line settings, validates; every problem is
    /// returned, located.
    pub fn config_with(&self, overrides: Overrides) -> Result<Config, Vec<ConfigError>> {
        let (mut config, mut problems) = self.parse_lenient().map_err(|e| vec![e])?;
        config.file = Some(self.path.clone());
        config.apply_overrides(overrides);
        problems.extend(config.problems());
        if problems.is_empty() { Ok(config) } else { Err(self.locate_all(&problems)) }
    }

    /// Locates every problem, in file order; problems with no place in the
    /// file (a default that is wrong together with a value set elsewhere) last.
    pub fn locate_all(&self, problems: &[ConfigError]) -> Vec<ConfigError> {
        let mut located: Vec<(Option<usize>, ConfigError)> =
            problems.iter().map(|e| (self.offset_of_error(e), self.locate(e))).collect();
        located.sort_by_key(|(offset, _)| offset.unwrap_or(usize::MAX));
        located.into_iter().map(|(_, e)| e).collect()
    }

    fn offset_of_error(&self, e: &ConfigError) -> Option<usize> {
        e.0.split_once(": ").filter(|(k, _)| is_key_path(k)).and_then(|(k, m)| self.offset_of(k, points_at_key(m)))
    }

    /// Locates an error whose text starts with a key path
    /// (`jwt.keys[0].private_key_file: ...`): the position of that key's value
    /// in the file, or of the nearest enclosing table that is written out.
    pub fn locate(&self, e: &ConfigError) -> ConfigError {
        let (key, message) = match e.0.split_once(": ") {
            Some((k, m)) if is_key_path(k) => (Some(k), m),
            _ => (None, e.0.as_str()),
        };
        let offset = key.and_then(|k| self.offset_of(k, points_at_key(message)));
        self.render(offset, key, message)
    }

    fn render(&self, offset: Option<usize>, key: Option<&str>, message: &str) -> ConfigError {
        let file = self.path.display();
        let key = key.map(|k| format!("{k}: ")).unwrap_or_default();
        // Some messages (from deserializers) already start with their key.
        let message = message.strip_prefix(key.as_str()).unwrap_or(message);
        let Some(offset) = offset.filter(|&o| o <= self.text.len()) else {
            return ConfigError(format!("{file}: {key}{message}"));
        };
        let before = self.text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text.get(line_start..offset).map_or(1, |s| s.chars().count() + 1);
        let source_line = self.text.get(line_start..).and_then(|s| s.lines().next()).unwrap_or_default();
        let gutter = line.to_string().len();
        ConfigError(format!(
            "{file}:{line}:{col}: {key}{message}\n{:gutter$} |\n{line} | {source_line}\n{:gutter$} | {:>col$}",
            "", "", "^"
        ))
    }

    /// Byte offset of the value at `path` (of its key, with `at_key`), or of
    /// the deepest part of the path that is written in the file.
    fn offset_of(&self, path: &str, at_key: bool) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut found: Option<std::ops::Range<usize>> = None;
        let mut table: Option<&dyn toml_edit::TableLike> = Some(doc.as_table());
        let mut item: Option<&toml_edit::Item> = None;
        for seg in path_segments(path) {
            match seg {
                Seg::Key(k) => {
                    let Some((key, v)) = table.and_then(|t| t.get_key_value(k)) else { break };
                    found = if at_key { key.span().or(v.span()) } else { v.span().or(key.span()) }.or(found);
                    table = v.as_table_like();
                    item = Some(v);
                }
                Seg::Index(i) => {
                    let Some(it) = item else { break };
                    if let Some(t) = it.as_array_of_tables().and_then(|a| a.get(i)) {
                        found = t.span().or(found);
                        table = Some(t);
                    } else if let Some(v) = it.as_array().and_then(|a| a.get(i)) {
                        found = v.span().or(found);
                        table = v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike);
                    } else {
                        break;
                    }
                    item = None;
                }
            }
        }
        found.map(|r| r.start)
    }

    /// The key path of the innermost key or value covering byte `offset`.
    fn key_at(&self, offset: usize) -> Option<String> {
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut path = String::new();
        walk_table(doc.as_table(), offset, &mut path);
        (!path.is_empty()).then_some(path)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` as `[Key(a), Key(b), Index(2), Key(c)]`; a bracket holding
/// anything but a number is taken as a key.
fn path_segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        for idx in rest.split('[') {
            let idx = idx.trim_end_matches(']');
            if let Ok(i) = idx.parse() {
                out.push(Seg::Index(i));
            } else if !idx.is_empty() {
                out.push(Seg::Key(idx));
            }
        }
    }
    out
}

/// A message about the key itself (it should not be there), not its value.
fn points_at_key(message: &str) -> bool {
    message.starts_with("unknown field")
}

fn is_key_path(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.[]-".contains(&b))
}

fn covers(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|r| r.start <= offset && offset < r.end.max(r.start + 1))
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn walk_table(t: &dyn toml_edit::TableLike, offset: usize, path: &mut String) -> bool {
    for (k, item) in t.iter() {
        let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
        if covers(key_span, offset) {
            push_key(path, k);
            return true;
        }
        let len = path.len();
        push_key(path, k);
        if walk_item(item, offset, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn walk_item(item: &toml_edit::Item, offset: usize, path: &mut String) -> bool {
    if let Some(aot) = item.as_array_of_tables() {
        for (i, t) in aot.iter().enumerate() {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            if walk_table(t, offset, path) || covers(t.span(), offset) {
                return true;
            }
            path.truncate(len);
        }
        return false;
    }
    if let Some(t) = item.as_table_like() {
        return walk_table(t, offset, path) || covers(item.span(), offset);
    }
    if let Some(a) = item.as_array() {
        for (i, v) in a.iter().enumerate() {
            if covers(v.span(), offset) {
                path.push_str(&format!("[{i}]"));
                return true;
            }
        }
    }
    covers(item.span(), offset)
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
        assert_eq!((c.audit.max_events_per_team, c.audit.unattributed_samples_per_minute), (100_000, 60));
        assert_eq!(c.store.cache_mb, DEFAULT_STORE_CACHE_MB);
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
            ("[store]\ncache_mb = 0", "store.cache_mb"),
            ("[store]\ncache_mb = 65537", "store.cache_mb"),
            ("[store]\ncache = 5", "unknown field `cache`"),
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
            ("[audit]\nmax_events_per_team = 0", "audit.max_events_per_team"),
            ("[audit]\nunattributed_samples_per_minute = 1000000", "audit.unattributed_samples_per_minute"),
            ("[audit]\nmax_events = 5", "unknown field `max_events`"),
            ("demo = true\nhttp = \"0.0.0.0:7070\"\n[http_server]\ninsecure = true", "demo:"),
            ("[jwt]\nmax_lifetime_secs = 0", "jwt.max_lifetime_secs"),
            ("[admin_api]\nallowed_origins = [\"https://console.example/\"]", "admin_api.allowed_origins[0]"),
            ("[admin_api]\nallowed_origins = [\"https://a.example\", \"\"]", "admin_api.allowed_origins[1]"),
            ("[admin_api]\nallowed_origins = [\"console.example\"]", "admin_api.allowed_origins[0]"),
            ("[jwt]\nttl_secs = 7200\nmax_lifetime_secs = 3600", "jwt.max_lifetime_secs"),
            ("[jwt]\nmax_lifetime_secs = 18446744073709551615", "number too large"),
            ("[jwt]\nmax_lifetime_secs = 9223372036854775807", "jwt.max_lifetime_secs"),
            ("[jwt]\nmax_lifetime_secs = -1", "max_lifetime_secs"),
            ("[http_server]\nheader_read_timeout_ms = 0", "http_server.header_read_timeout_ms"),
            ("[http_server]\nidle_timeout_ms = 0", "http_server.idle_timeout_ms"),
            ("[http_server]\nbody_timeout_ms = 0", "http_server.body_timeout_ms"),
            ("[http_server]\nmax_connections = 0", "http_server.max_connections"),
            ("[http_server]\ndrain_grace_ms = 3600001", "http_server.drain_grace_ms"),
            ("[http_server]\ntimeout = 1", "unknown field `timeout`"),
            ("socket_handshake_timeout_ms = 0", "socket_handshake_timeout_ms"),
            ("socket_frame_timeout_ms = 0", "socket_frame_timeout_ms"),
            ("socket_write_timeout_ms = 0", "socket_write_timeout_ms"),
            ("socket_write_timeout_ms = 3600001", "socket_write_timeout_ms"),
            ("socket_drain_grace_ms = 3600001", "socket_drain_grace_ms"),
            ("[http_server.tls]\ncert = \"/c.pem\"", "http_server.tls.key: missing"),
            ("[http_server.tls]\nkey = \"/k.pem\"", "http_server.tls.cert: missing"),
            ("http = \"0.0.0.0:7070\"", "--insecure-http"),
            ("http = \"[::]:7070\"", "--tls-cert"),
            ("[cluster]\npostgres_url = \"postgres://db/tg\"", "cluster: cluster mode needs [[jwt.keys]]"),
            ("[cluster]\npostgres_url = \"postgres://u:hunter2@db:notaport/tg\"", "cluster.postgres_url"),
            ("[cluster]\npostgres_url = \"postgres://db/tg\"\nlease_max = 0", "cluster.lease_max"),
            ("[cluster]\npostgres_url = \"postgres://db/tg\"\nlease_ttl_ms = 10", "cluster.lease_ttl_ms"),
            ("[cluster]\npostgres_url = \"postgres://db/tg\"\nmax_staleness_ms = 0", "cluster.max_staleness_ms"),
            ("[cluster]\non_stale = \"maybe\"", "unknown variant `maybe`"),
            ("[cluster]\npostgres_url = \"postgres://db/tg\"\nlog_retention_secs = 0", "cluster.log_retention_secs"),
            (
                "[cluster]\npostgres_url = \"postgres://db/tg\"\nlog_retention_secs = 31536001",
                "cluster.log_retention_secs",
            ),
            ("[cluster]\nlog_retention_secs = -1", "log_retention_secs"),
            ("[cluster]\nlog_retention_secs = 18446744073709551615", "number too large"),
        ];
        for (text, needle) in cases {
            let e = Config::parse(text).and_then(|c| c.validate()).unwrap_err();
            assert!(e.0.contains(needle), "{text:?} gave {:?}, expected mention of {needle:?}", e.0);
        }
    }

    #[test]
    fn the_postgres_password_is_in_no_message_nor_debug_output() {
        let text = "[cluster]\npostgres_url = \"postgres://u:hunter2@db:notaport/tg\"\nlease_max = 0";
        let c = Config::parse(text).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "Debug shows the password");
        for e in c.problems() {
            assert!(!e.0.contains("hunter2"), "{}", e.0);
        }
        // Without postgres_url the rest of [cluster] is not checked: nothing runs.
        Config::parse("[cluster]\nlease_max = 0").unwrap().validate().unwrap();
    }

    #[test]
    fn non_loopback_plain_http_needs_tls_or_insecure() {
        for ok in [
            "http = \"127.0.0.1:7070\"",
            "http = \"[::1]:7070\"",
            "http = \"0.0.0.0:7070\"\n[http_server]\ninsecure = true",
            "http = \"0.0.0.0:7070\"\n[http_server.tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"",
        ] {
            Config::parse(ok).unwrap().validate().unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        let mut c = Config::parse("http = \"0.0.0.0:7070\"").unwrap();
        assert!(c.validate().is_err());
        c.apply_overrides(Overrides { insecure_http: true, ..Overrides::default() });
        c.validate().unwrap();
        let mut c = Config::default();
        c.apply_overrides(Overrides {
            http: Some("10.1.2.3:443".into()),
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            ..Overrides::default()
        });
        c.validate().unwrap();
        let d = HttpServerConfig::default();
        assert_eq!(
            (d.header_read_timeout_ms, d.idle_timeout_ms, d.body_timeout_ms, d.max_connections, d.drain_grace_ms),
            (10_000, 60_000, 30_000, 1024, 10_000)
        );
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
        assert!(e.0.contains("jwt.keys[0].private_key_file"), "{}", e.0);
    }
}
