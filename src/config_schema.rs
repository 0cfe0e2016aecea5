//! The configuration file's schema: every key with its type, default, whether
//! a reload applies it, and what it does. Two things read it:
//!
//! - `check-config` (through [`check`]), which checks a file key by key
//!   against it before anything is deserialized, so that every unknown key,
//!   wrong type and bad choice of a file is reported in one run (serde stops at
//!   the first);
//! - `tollgate config-reference` ([`markdown`]), which writes
//!   `docs/configuration.md`.
//!
//! The table is written by hand; its tests hold it to the code: the keys of
//! each table are the fields serde asks for (a field added to a config type
//! and not here fails them), each default is `Config::default()`'s (the
//! column is computed from it), each type parses with serde, and the reload
//! column is what [`crate::reload::keep_bound_at_start`] keeps.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Config, ConfigError};
use crate::core::model::{Limit, Tier};

/// A key's type in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `true` or `false`.
    Bool,
    /// An integer from 0 to 4294967295.
    U32,
    /// A non-negative integer.
    U64,
    /// A string.
    Str,
    /// A file or directory path (a string).
    Path,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// An array of integers from 0 to 4294967295.
    U32List,
    /// An array of strings.
    StrList,
    /// An array of IP addresses or CIDR blocks (strings).
    NetList,
    /// A non-negative integer or `"unlimited"`.
    Limit,
    /// A table of arrays of strings: `{ resource = ["action", ...] }`.
    Permissions,
    /// A table of the keys under it.
    Section,
    /// An array of tables (`[[...]]`) of the keys under `path[]`.
    TableArray,
}

impl Ty {
    /// How the reference writes the type.
    pub fn describe(self) -> String {
        match self {
            Ty::Bool => "boolean".into(),
            Ty::U32 => "integer (0 to 4294967295)".into(),
            Ty::U64 => "non-negative integer".into(),
            Ty::Str => "string".into(),
            Ty::Path => "path (string)".into(),
            Ty::Choice(c) => c.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(" or "),
            Ty::U32List => "array of integers (0 to 4294967295)".into(),
            Ty::StrList => "array of strings".into(),
            Ty::NetList => "array of IP addresses or CIDR blocks".into(),
            Ty::Limit => "non-negative integer or \"unlimited\"".into(),
            Ty::Permissions => "table of arrays of strings".into(),
            Ty::Section => "table".into(),
            Ty::TableArray => "array of tables".into(),
        }
    }
}

/// Whether a reload applies a new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// A reload puts the new value in force.
    Applied,
    /// Bound at start: a reload keeps the old value and says the key needs a
    /// restart.
    Restart,
    /// The file it names is read again on every reload (while TLS is on).
    FilesReread,
    /// A table: its keys say.
    Table,
}

impl Reload {
    fn describe(self) -> &'static str {
        match self {
            Reload::Applied => "applied",
            Reload::Restart => "restart",
            Reload::FilesReread => "applied (file read again)",
            Reload::Table => "",
        }
    }
}

/// One key of the file.
#[derive(Clone, Debug)]
pub struct Key {
    /// Dotted path; `[]` marks the entries of an array of tables
    /// (`jwt.keys[].kid`).
    pub path: String,
    /// Its type.
    pub ty: Ty,
    /// Must be written when its table is (an entry of `[[jwt.keys]]`, a
    /// `[tiers.*]` table).
    pub required: bool,
    /// Whether a reload applies it.
    pub reload: Reload,
    /// What it does.
    pub doc: &'static str,
    /// The default as TOML text (`None`: unset, or no default).
    pub default: Option<String>,
}

impl Key {
    /// The table the key is in (`""` for the top level).
    pub fn parent(&self) -> &str {
        self.path.rsplit_once('.').map_or("", |(p, _)| p)
    }

    /// The key's own name.
    pub fn name(&self) -> &str {
        self.path.rsplit_once('.').map_or(self.path.as_str(), |(_, n)| n)
    }
}

/// A value as TOML text.
trait Toml {
    fn toml(&self) -> String;
}

impl Toml for bool {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl Toml for u32 {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl Toml for u64 {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl Toml for usize {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl Toml for str {
    fn toml(&self) -> String {
        toml::Value::String(self.to_owned()).to_string()
    }
}
impl Toml for String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}
impl Toml for std::path::PathBuf {
    fn toml(&self) -> String {
        self.to_string_lossy().toml()
    }
}
impl Toml for IpNet {
    fn toml(&self) -> String {
        self.to_string().toml()
    }
}
impl Toml for Limit {
    fn toml(&self) -> String {
        self.get().map_or_else(|| "unlimited".toml(), |n| n.to_string())
    }
}
impl<T: Toml> Toml for Vec<T> {
    fn toml(&self) -> String {
        format!("[{}]", self.iter().map(Toml::toml).collect::<Vec<_>>().join(", "))
    }
}

fn some<T: Toml + ?Sized>(v: &T) -> Option<String> {
    Some(v.toml())
}

/// Every key of the file, in the reference's order.
pub fn keys() -> Vec<Key> {
    use Reload::{Applied, FilesReread, Restart, Table};
    let d = Config::default();
    let mut k: Vec<Key> = Vec::new();
    let mut add = |path: &str, ty: Ty, reload: Reload, doc: &'static str, default: Option<String>| {
        k.push(Key { path: path.to_owned(), ty, required: false, reload, doc, default });
    };
    add("data", Ty::Path, Restart, "Directory of the sled store and the generated key files.", some(&d.data));
    add("socket", Ty::Path, Restart, "Unix socket of the binary protocol (1 to 100 bytes).", some(&d.socket));
    add("socket_mode", Ty::Str, Restart, "Octal file mode of the socket.", some(&d.socket_mode));
    add(
        "socket_allowed_uids",
        Ty::U32List,
        Restart,
        "If not empty, only these peer uids may connect to the socket.",
        some(&d.socket_allowed_uids),
    );
    add(
        "max_connections",
        Ty::U64,
        Restart,
        "Socket connections served at once (at least 1).",
        some(&d.max_connections),
    );
    add(
        "socket_handshake_timeout_ms",
        Ty::U64,
        Restart,
        "A new socket connection must send its hello within this (1 to 3600000 ms), or is closed.",
        some(&d.socket_handshake_timeout_ms),
    );
    add(
        "socket_frame_timeout_ms",
        Ty::U64,
        Restart,
        "A frame that has started must arrive within this (1 to 3600000 ms), or the connection is closed.",
        some(&d.socket_frame_timeout_ms),
    );
    add(
        "socket_write_timeout_ms",
        Ty::U64,
        Restart,
        "A client must take its answers within this (1 to 3600000 ms), or the connection is closed.",
        some(&d.socket_write_timeout_ms),
    );
    add(
        "socket_drain_grace_ms",
        Ty::U64,
        Restart,
        "On SIGTERM, time socket connections get to send the answers they owe (0 to 3600000 ms).",
        some(&d.socket_drain_grace_ms),
    );
    add(
        "http",
        Ty::Str,
        Restart,
        "Address of the HTTP listener; not loopback: HTTPS, or `http_server.insecure`.",
        some(&d.http),
    );
    add(
        "http_socket",
        Ty::Path,
        Restart,
        "If set, the HTTP server also listens on this Unix socket (plain HTTP; for nginx).",
        None,
    );
    add("http_socket_mode", Ty::Str, Restart, "Octal file mode of `http_socket`.", some(&d.http_socket_mode));
    add(
        "demo",
        Ty::Bool,
        Restart,
        "Demo access (seed 003; `serve --demo`): a read-only demo key, made once; refused on a non-loopback plain-HTTP listener.",
        some(&d.demo),
    );

    let h = &d.http_server;
    add("http_server", Ty::Section, Table, "Every HTTP listener: TCP (plain or HTTPS) and `http_socket`.", None);
    add(
        "http_server.header_read_timeout_ms",
        Ty::U64,
        Restart,
        "A request head (and a new connection's first, TLS handshake included) must arrive within this of its first byte (1 to 3600000 ms).",
        some(&h.header_read_timeout_ms),
    );
    add(
        "http_server.idle_timeout_ms",
        Ty::U64,
        Restart,
        "A keep-alive connection with no request in progress is closed after this (1 to 86400000 ms).",
        some(&h.idle_timeout_ms),
    );
    add(
        "http_server.body_timeout_ms",
        Ty::U64,
        Restart,
        "Once its head is read, a request's body must arrive and its answer be ready within this (1 to 3600000 ms).",
        some(&h.body_timeout_ms),
    );
    add(
        "http_server.max_connections",
        Ty::U64,
        Restart,
        "HTTP connections open at once, all listeners together (1 to 1000000); beyond it the longest-idle one is closed. Lowered at start to the open-file limit less 64.",
        some(&h.max_connections),
    );
    add(
        "http_server.drain_grace_ms",
        Ty::U64,
        Restart,
        "On SIGTERM, time left to requests in progress (0 to 3600000 ms); then connections drop.",
        some(&h.drain_grace_ms),
    );
    add(
        "http_server.insecure",
        Ty::Bool,
        Restart,
        "Allow plain HTTP on a non-loopback `http` (`--insecure-http`).",
        some(&h.insecure),
    );
    add(
        "http_server.tls",
        Ty::Section,
        Restart,
        "HTTPS on the TCP listener (`--tls-cert`, `--tls-key`, `--tls-client-ca`). Turning it on or off needs a restart.",
        None,
    );
    add(
        "http_server.tls.cert",
        Ty::Path,
        FilesReread,
        "PEM certificate chain, leaf first. Required with `[http_server.tls]`.",
        None,
    );
    add("http_server.tls.key", Ty::Path, FilesReread, "PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).", None);
    add(
        "http_server.tls.client_ca",
        Ty::Path,
        FilesReread,
        "If set, clients must present a certificate issued by one of these CAs (PEM).",
        None,
    );

    add("durability", Ty::Section, Table, "How counters reach the disk.", None);
    add(
        "durability.mode",
        Ty::Choice(&["relaxed", "strict"]),
        Restart,
        "`relaxed`: counters flushed every `flush_interval_ms`; `strict`: a verdict waits until its counters are on disk.",
        some("relaxed"),
    );
    add(
        "durability.flush_interval_ms",
        Ty::U64,
        Restart,
        "Relaxed: the longest a consumption counter change waits to be written (1 to 60000 ms).",
        some(&d.durability.flush_interval_ms),
    );
    add(
        "durability.stats_flush_interval_ms",
        Ty::U64,
        Restart,
        "Either mode: the longest a request count or last use waits to be written (`flush_interval_ms` to 3600000 ms).",
        some(&d.durability.stats_flush_interval_ms),
    );

    add("store", Ty::Section, Table, "The store's own memory.", None);
    add(
        "store.cache_mb",
        Ty::U64,
        Restart,
        "The store's page cache, 1 to 65536 MiB; it serves the admin API's reads and the writes (verification reads the index in memory).",
        some(&d.store.cache_mb),
    );

    let c = &d.cluster;
    add(
        "cluster",
        Ty::Section,
        Table,
        "Cluster mode: one node of a cluster whose truth is a PostgreSQL database (README, \"Running a cluster\").",
        None,
    );
    add(
        "cluster.postgres_url",
        Ty::Str,
        Restart,
        "`postgres://user:password@host:port/db?sslmode=prefer` (or key=value form); `serve --postgres`, `TOLLGATE_POSTGRES_URL`. Absent: one host, the embedded store alone. Never logged.",
        None,
    );
    add(
        "cluster.ca_file",
        Ty::Path,
        Restart,
        "PEM CA certificates trusted for PostgreSQL's certificate; Mozilla's roots when absent.",
        None,
    );
    add(
        "cluster.pool_size",
        Ty::U64,
        Restart,
        "Connections in the pool (admin writes, leases, catch-up), 1 to 64; the change listener has one more.",
        some(&c.pool_size),
    );
    add(
        "cluster.lease_ttl_ms",
        Ty::U64,
        Restart,
        "How long a node's lease row outlives its last heartbeat (1000 to 3600000 ms).",
        some(&c.lease_ttl_ms),
    );
    add(
        "cluster.lease_max",
        Ty::U32,
        Restart,
        "The most uses of one key a node holds at once (1 to 1000000); it may spend a quarter of them, the rest is a reserve a crash does not lose.",
        some(&c.lease_max),
    );
    add(
        "cluster.lease_wait_ms",
        Ty::U64,
        Restart,
        "How long a verification that found its lease empty waits for the lease it asked for (at most 10000 ms).",
        some(&c.lease_wait_ms),
    );
    add(
        "cluster.max_staleness_ms",
        Ty::U64,
        Restart,
        "How long a node may go without knowing it has every change before `on_stale` applies (1000 to 86400000 ms).",
        some(&c.max_staleness_ms),
    );
    add(
        "cluster.on_stale",
        Ty::Choice(&["refuse", "serve"]),
        Restart,
        "Past `max_staleness_ms`: `refuse` verifications (fail closed) or `serve` from memory (fail open).",
        some(match c.on_stale {
            crate::config::OnStale::Refuse => "refuse",
            crate::config::OnStale::Serve => "serve",
        }),
    );
    add(
        "cluster.log_retention_secs",
        Ty::U64,
        Restart,
        "How long the change log keeps a change (1 to 31536000 s); older ones are deleted by one node at a time, the newest always kept. A node whose position was deleted (down longer than this) loads a snapshot.",
        some(&c.log_retention_secs),
    );

    let j = &d.jwt;
    add("jwt", Ty::Section, Table, "JWT issuing and verification.", None);
    add("jwt.issuer", Ty::Str, Applied, "`iss` of issued tokens, required on verified ones.", some(&j.issuer));
    add("jwt.audience", Ty::Str, Applied, "`aud` required on verified tokens, if set.", None);
    add("jwt.leeway_secs", Ty::U64, Applied, "Clock skew tolerated on exp/nbf/iat (0 to 300 s).", some(&j.leeway_secs));
    add("jwt.ttl_secs", Ty::U64, Applied, "Lifetime of issued tokens (1 to 31622400 s).", some(&j.ttl_secs));
    add(
        "jwt.max_lifetime_secs",
        Ty::U64,
        Applied,
        "Longest `exp - iat` accepted on any verified token, other issuers' too (`ttl_secs` to 31622400 s).",
        some(&j.max_lifetime_secs),
    );
    add(
        "jwt.max_token_bytes",
        Ty::U64,
        Applied,
        "Longer tokens are MALFORMED (256 to 65536).",
        some(&j.max_token_bytes),
    );
    add(
        "jwt.cache_capacity",
        Ty::U64,
        Applied,
        "Verified tokens remembered (0 = no cache; at most 10000000).",
        some(&j.cache_capacity),
    );
    add(
        "jwt.signing_kid",
        Ty::Str,
        Applied,
        "The key that signs new tokens; default: the first key with a private part.",
        None,
    );
    add(
        "jwt.keys",
        Ty::TableArray,
        Applied,
        "Keys; with none, an Ed25519 key is generated in `<data>/jwt-signing-key.pem`. Key files are read again on every reload.",
        some(&Vec::<String>::new()),
    );
    add("jwt.keys[].kid", Ty::Str, Applied, "Key id, sent as `kid`. Required.", None);
    add(
        "jwt.keys[].alg",
        Ty::Choice(&["HS256", "RS256", "ES256", "EdDSA"]),
        Applied,
        "The algorithm this key is pinned to. Required.",
        None,
    );
    add(
        "jwt.keys[].secret_env",
        Ty::Str,
        Applied,
        "HS256: environment variable holding the secret (at least 32 bytes).",
        None,
    );
    add("jwt.keys[].private_key_file", Ty::Path, Applied, "PEM private key (signs and verifies).", None);
    add("jwt.keys[].public_key_file", Ty::Path, Applied, "PEM public key (verifies only).", None);

    add(
        "tiers",
        Ty::Section,
        Table,
        "Tier limits (seed 000), overriding the defaults tier by tier; a tier is given as a whole.",
        None,
    );
    let table = d.tiers.table();
    for tier in Tier::ALL {
        let t = table[tier.index()];
        let p = format!("tiers.{tier}");
        add(&p, Ty::Section, Applied, "One tier's limits; all four keys required.", None);
        add(
            &format!("{p}.requests_per_minute"),
            Ty::Limit,
            Applied,
            "The team's verifications per calendar minute (socket, `/v1/verify`, `/auth`); admin calls and logins do not count. At least 1.",
            some(&t.requests_per_minute),
        );
        add(&format!("{p}.members"), Ty::Limit, Applied, "Users in the team.", some(&t.members));
        add(
            &format!("{p}.documents"),
            Ty::Limit,
            Applied,
            "The documents quota (consumed by verifications, released over the socket or HTTP).",
            some(&t.documents),
        );
        add(
            &format!("{p}.log_retention_days"),
            Ty::Limit,
            Applied,
            "Days the audit log is kept.",
            some(&t.log_retention_days),
        );
    }

    add("log", Ty::Section, Table, "Log output (stderr).", None);
    add(
        "log.level",
        Ty::Str,
        Applied,
        "`tracing` filter, e.g. `info` or `tollgate=debug`; `RUST_LOG` overrides (and pins) it.",
        some(&d.log.level),
    );
    add(
        "log.format",
        Ty::Choice(&["human", "json"]),
        Restart,
        "Human-readable lines, or one JSON object per line; `--log-format` overrides.",
        some("human"),
    );

    add("metrics", Ty::Section, Table, "`/metrics`.", None);
    add(
        "metrics.require_admin_token",
        Ty::Bool,
        Applied,
        "`GET /metrics` needs `Authorization: Bearer <admin token>`.",
        some(&d.metrics.require_admin_token),
    );

    let a = &d.admin_api;
    add("admin_api", Ty::Section, Table, "The admin HTTP API (`/v1/...`).", None);
    add(
        "admin_api.allow_query_token",
        Ty::Bool,
        Restart,
        "Accept a credential in `?token=` (seed 003); URLs end up in logs.",
        some(&a.allow_query_token),
    );
    add(
        "admin_api.login_failures_per_minute",
        Ty::U32,
        Restart,
        "Failed logins allowed per username and per client address each minute (at least 1).",
        some(&a.login_failures_per_minute),
    );
    add(
        "admin_api.allowed_origins",
        Ty::StrList,
        Restart,
        "Origins (`scheme://host[:port]`) whose pages may make cookie-authenticated changes.",
        some(&a.allowed_origins),
    );

    let au = &d.auth;
    add("auth", Ty::Section, Table, "`/auth` (nginx `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth).", None);
    add(
        "auth.cookie",
        Ty::Str,
        Applied,
        "Cookie read for the credential after `Authorization: Bearer` and `X-API-Key`.",
        some(&au.cookie),
    );
    add(
        "auth.trusted_proxies",
        Ty::NetList,
        Applied,
        "Peers whose `X-Real-IP` / `X-Forwarded-For` and `X-Forwarded-Method`/`-Uri` are believed (a Unix-socket peer always is).",
        some(&au.trusted_proxies),
    );
    add(
        "auth.routes",
        Ty::TableArray,
        Applied,
        "Permissions the original request needs; the first matching rule wins, no rule matching: none needed.",
        some(&Vec::<String>::new()),
    );
    add("auth.routes[].prefix", Ty::Str, Applied, "Path prefix of the original URI, e.g. `/files/`. Required.", None);
    add(
        "auth.routes[].methods",
        Ty::StrList,
        Applied,
        "Upper-case methods the rule applies to; empty: every method (GET also covers HEAD).",
        some(&Vec::<String>::new()),
    );
    add(
        "auth.routes[].permissions",
        Ty::Permissions,
        Applied,
        "Permissions required, `{ resource = [\"action\", ...] }`.",
        Some("{}".into()),
    );

    add("audit", Ty::Section, Table, "The audit log's bounds.", None);
    add(
        "audit.max_events_per_team",
        Ty::U64,
        Restart,
        "Events kept per team (and for `_global`), 1 to 100000000; the oldest are removed first.",
        some(&d.audit.max_events_per_team),
    );
    add(
        "audit.unattributed_samples_per_minute",
        Ty::U32,
        Restart,
        "Failures naming no known credential stored per minute, all interfaces together (0 to 60000); the rest are only counted in `/metrics`.",
        some(&d.audit.unattributed_samples_per_minute),
    );

    for key in &mut k {
        key.required = matches!(key.path.as_str(), "jwt.keys[].kid" | "jwt.keys[].alg" | "auth.routes[].prefix")
            || (key.path.starts_with("tiers.") && key.path.matches('.').count() == 2);
    }
    k
}

// ---- checking a file ----

/// Checks a parsed file against the schema: every unknown key, wrong type,
/// bad choice and missing required key, each as `path: message` (the path
/// with indexes, `jwt.keys[1].alg`). What is wrong is removed from `table`,
/// so that the rest deserializes (a removed key takes its default).
pub fn check(table: &mut toml::Table) -> Vec<ConfigError> {
    let keys = keys();
    let mut errs = Vec::new();
    check_table(table, "", "", &keys, &mut errs);
    errs
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

/// Checks one table; `false` if it lacks a required key (then the caller
/// removes it whole).
fn check_table(table: &mut toml::Table, schema: &str, shown: &str, keys: &[Key], errs: &mut Vec<ConfigError>) -> bool {
    let children: Vec<&Key> = keys.iter().filter(|k| k.parent() == schema).collect();
    let mut complete = true;
    for req in children.iter().filter(|k| k.required) {
        if !table.contains_key(req.name()) {
            let at = if shown.is_empty() { String::new() } else { format!("{shown}: ") };
            errs.push(ConfigError(format!("{at}missing field `{}`", req.name())));
            complete = false;
        }
    }
    let names: Vec<String> = table.keys().cloned().collect();
    for name in names {
        let path = join(shown, &name);
        let Some(key) = children.iter().find(|k| k.name() == name) else {
            let names: Vec<&str> = children.iter().map(|k| k.name()).collect();
            errs.push(ConfigError(format!("{path}: unknown field `{name}`, expected {}", one_of(&names))));
            table.remove(&name);
            continue;
        };
        let ok = table.get_mut(&name).is_some_and(|v| check_value(v, key, &path, keys, errs));
        if !ok {
            table.remove(&name);
        }
    }
    complete
}

/// serde's wording, so that a message reads the same whichever found it.
fn type_error(path: &str, ty: Ty, v: &toml::Value) -> ConfigError {
    use toml::Value as V;
    let found = match v {
        V::String(s) => format!("string {s:?}"),
        V::Integer(n) => format!("integer `{n}`"),
        V::Float(f) => format!("floating point `{f}`"),
        V::Boolean(b) => format!("boolean `{b}`"),
        V::Datetime(d) => format!("datetime `{d}`"),
        V::Array(_) => "sequence".to_owned(),
        V::Table(_) => "map".to_owned(),
    };
    let expected = match ty {
        Ty::Bool => "a boolean".to_owned(),
        Ty::Str => "a string".to_owned(),
        Ty::Path => "a path (string)".to_owned(),
        Ty::Section => "a table".to_owned(),
        Ty::TableArray => "an array of tables".to_owned(),
        Ty::Limit => "a non-negative integer or \"unlimited\"".to_owned(),
        Ty::Permissions => "a table of arrays of strings".to_owned(),
        Ty::Choice(c) => one_of(c),
        other => {
            let d = other.describe();
            let article = if d.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            format!("{article} {d}")
        }
    };
    ConfigError(format!("{path}: invalid type: {found}, expected {expected}"))
}

/// serde's list of expected names: "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_owned(),
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => format!("one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
    }
}

fn check_value(v: &mut toml::Value, key: &Key, path: &str, keys: &[Key], errs: &mut Vec<ConfigError>) -> bool {
    use toml::Value as V;
    let n_errs = errs.len();
    let int_in = |v: &V, max: i64| matches!(v, V::Integer(n) if (0..=max).contains(n));
    match (key.ty, &mut *v) {
        (Ty::Section, V::Table(t)) => return check_table(t, &key.path, path, keys, errs),
        (Ty::TableArray, V::Array(items)) => {
            let schema = format!("{}[]", key.path);
            let mut keep = Vec::with_capacity(items.len());
            for (i, item) in items.iter_mut().enumerate() {
                let at = format!("{path}[{i}]");
                keep.push(match item {
                    V::Table(t) => check_table(t, &schema, &at, keys, errs),
                    other => {
                        errs.push(type_error(&at, Ty::Section, other));
                        false
                    }
                });
            }
            let mut it = keep.into_iter();
            items.retain(|_| it.next().unwrap_or(false));
            return true;
        }
        (Ty::Bool, V::Boolean(_)) | (Ty::Str | Ty::Path, V::String(_)) => {}
        (Ty::U32, n) if int_in(n, i64::from(u32::MAX)) => {}
        (Ty::U64, n) if int_in(n, i64::MAX) => {}
        (Ty::Limit, n) if int_in(n, i64::MAX) => {}
        (Ty::Limit, V::String(s)) if s == "unlimited" => {}
        (Ty::Choice(choices), V::String(s)) => {
            if !choices.contains(&s.as_str()) {
                errs.push(ConfigError(format!("{path}: unknown variant `{s}`, expected {}", one_of(choices))));
            }
        }
        (Ty::U32List | Ty::StrList | Ty::NetList, V::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                match (key.ty, item) {
                    (Ty::U32List, n) if int_in(n, i64::from(u32::MAX)) => {}
                    (Ty::StrList, V::String(_)) => {}
                    (Ty::NetList, V::String(s)) => {
                        // Named by the list (the element's place is the line).
                        if s.parse::<IpNet>().is_err() && s.parse::<IpAddr>().is_err() {
                            errs.push(ConfigError(format!("{path}: {s:?} is not an IP address or CIDR block")));
                        }
                    }
                    (Ty::U32List, other) => errs.push(type_error(&at, Ty::U32, other)),
                    (_, other) => errs.push(type_error(&at, Ty::Str, other)),
                }
            }
        }
        (Ty::Permissions, V::Table(t)) => {
            for (res, acts) in t.iter() {
                let at = format!("{path}.{res}");
                match acts {
                    V::Array(a) if a.iter().all(V::is_str) => {}
                    other => errs.push(type_error(&at, Ty::StrList, other)),
                }
            }
        }
        (ty, other) => errs.push(type_error(path, ty, other)),
    }
    errs.len() == n_errs
}

// ---- the reference ----

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The reference as Markdown: what `tollgate config-reference` prints and
/// `docs/configuration.md` holds.
pub fn markdown() -> String {
    let keys = keys();
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated by `tollgate config-reference` from src/config_schema.rs; do not edit.\n     \
         Regenerate: cargo run -- config-reference > docs/configuration.md -->\n\n\
         Every key of the configuration file (`tollgate serve --config FILE`, `TOLLGATE_CONFIG`), \
         generated from the daemon's schema of it by `tollgate config-reference`; \
         `tests/it/config_reference.rs` fails when this file and the code disagree, and the schema's \
         tests hold it to the configuration types (every field, its type, its default, and what a \
         reload does with it). `tollgate check-config FILE` checks a file against the same schema \
         and lists every problem in one run.\n\n\
         Every key is optional, except the ones marked *required* inside a table that is written \
         (an entry of `[[jwt.keys]]` or `[[auth.routes]]`, a `[tiers.*]` table). \
         **Reload**: *applied* means a reload (SIGHUP, `systemctl reload`, `tollgate reload`, \
         `POST /v1/admin/reload`) puts a new value in force; *restart* means the value is bound \
         at start: a reload keeps the old one and says the key needs a restart. Command-line \
         settings (`--data`, `--socket`, `--http`, `--log-format`, `--tls-*`, `--insecure-http`, \
         `--demo`) win over the file's, and a reload keeps them.\n",
    );
    let sections: Vec<&Key> = keys.iter().filter(|k| matches!(k.ty, Ty::Section | Ty::TableArray)).collect();
    let mut emit = |title: String, doc: &str, table: &str| {
        let rows: Vec<&Key> = keys.iter().filter(|k| k.parent() == table && !matches!(k.ty, Ty::Section)).collect();
        if rows.is_empty() {
            return;
        }
        let _ = write!(out, "\n## {title}\n\n");
        if !doc.is_empty() {
            let _ = write!(out, "{doc}\n\n");
        }
        out.push_str("| key | type | default | reload | description |\n|---|---|---|---|---|\n");
        for k in rows {
            let default = match (&k.default, k.required) {
                (Some(d), true) => format!("`{}` (*required* once the table is written)", cell(d)),
                (None, true) => "*required*".to_owned(),
                (Some(d), _) => format!("`{}`", cell(d)),
                (None, _) => "unset".to_owned(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                k.name(),
                cell(&k.ty.describe()),
                default,
                k.reload.describe(),
                cell(k.doc)
            );
        }
    };
    emit("Top level".into(), "", "");
    for s in sections {
        let title = match s.ty {
            Ty::TableArray => format!("`[[{}]]` (each entry)", s.path),
            _ => format!("`[{}]`", s.path),
        };
        let table = if s.ty == Ty::TableArray { format!("{}[]", s.path) } else { s.path.clone() };
        let doc = match s.reload {
            Reload::Restart | Reload::Applied if s.ty == Ty::Section => {
                format!("{} (Reload: {}.)", s.doc, s.reload.describe())
            }
            _ => s.doc.to_owned(),
        };
        emit(title, &doc, &table);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Tiers, TlsConfig};

    /// The fields serde asks for in the table at `schema` (`""`, `jwt`,
    /// `jwt.keys[]`): the list in its unknown-field error.
    fn serde_fields(schema: &str) -> Vec<String> {
        let text = match schema.strip_suffix("[]") {
            Some(array) => format!("[[{array}]]\n__probe = 1\n"),
            None if schema.is_empty() => "__probe = 1\n".to_owned(),
            None => format!("[{schema}]\n__probe = 1\n"),
        };
        let e = toml::from_str::<Config>(&text).expect_err(&text).message().to_owned();
        let list = e.split_once("expected").map_or("", |(_, l)| l);
        let fields: Vec<String> = list.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        assert!(e.contains("unknown field `__probe`") && !fields.is_empty(), "{text:?}: {e}");
        fields
    }

    fn table_names(keys: &[Key]) -> Vec<String> {
        let mut t: Vec<String> = vec![String::new()];
        for k in keys {
            match k.ty {
                Ty::Section => t.push(k.path.clone()),
                Ty::TableArray => t.push(format!("{}[]", k.path)),
                _ => {}
            }
        }
        t
    }

    #[test]
    fn every_field_of_every_table_is_listed_and_nothing_else() {
        let keys = keys();
        for table in table_names(&keys) {
            let mut listed: Vec<String> =
                keys.iter().filter(|k| k.parent() == table).map(|k| k.name().to_owned()).collect();
            let mut fields = serde_fields(&table);
            listed.sort();
            fields.sort();
            assert_eq!(
                listed, fields,
                "the keys of [{table}] in src/config_schema.rs are not the config type's fields"
            );
        }
        let mut paths: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), keys.len(), "a key is listed twice");
    }

    /// A TOML document setting `key` to `value`, with the required keys of
    /// its table at their sample values.
    fn doc_setting(keys: &[Key], key: &Key, value: &str) -> String {
        let parent = key.parent();
        let sample = |k: &Key| match k.path.as_str() {
            "jwt.keys[].kid" => "\"k1\"".to_owned(),
            "jwt.keys[].alg" => "\"EdDSA\"".to_owned(),
            "auth.routes[].prefix" => "\"/x/\"".to_owned(),
            _ => k.default.clone().unwrap_or_default(),
        };
        let mut lines = vec![format!("{} = {value}", key.name())];
        for k in keys.iter().filter(|k| k.parent() == parent && k.required && k.path != key.path) {
            lines.push(format!("{} = {}", k.name(), sample(k)));
        }
        let header = match parent.strip_suffix("[]") {
            Some(a) => format!("[[{a}]]\n"),
            None if parent.is_empty() => String::new(),
            None => format!("[{parent}]\n"),
        };
        format!("{header}{}\n", lines.join("\n"))
    }

    fn normalized(mut c: Config) -> Config {
        // A tier written out at its defaults is the same table as none.
        if c.tiers.table() == crate::core::model::TierLimits::DEFAULTS {
            c.tiers = Tiers::default();
        }
        c
    }

    fn leaves(keys: &[Key]) -> impl Iterator<Item = &Key> {
        keys.iter().filter(|k| !matches!(k.ty, Ty::Section | Ty::TableArray))
    }

    #[test]
    fn each_default_is_the_codes_and_each_type_the_one_serde_reads() {
        let keys = keys();
        for k in leaves(&keys) {
            if let Some(default) = k.default.as_ref().filter(|_| !k.path.contains("[]")) {
                let text = doc_setting(&keys, k, default);
                let c = toml::from_str::<Config>(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(normalized(c), Config::default(), "the default of {} is not {default}", k.path);
            }
            // A value of the listed type is read by serde and passes the
            // schema; a value of another type fails both.
            let good = alt(k);
            let wrong = if matches!(k.ty, Ty::Bool) { "\"yes\"" } else { "true" };
            for (value, ok) in [(good.as_str(), true), (wrong, false)] {
                let text = doc_setting(&keys, k, value);
                let by_serde = toml::from_str::<Config>(&text);
                let mut table: toml::Table = text.parse().unwrap();
                let by_schema = check(&mut table);
                assert_eq!(by_serde.is_ok(), ok, "{}: serde on {text:?}: {by_serde:?}", k.path);
                assert_eq!(by_schema.is_empty(), ok, "{}: schema on {text:?}: {by_schema:?}", k.path);
            }
        }
    }

    /// A value of the key's type different from its default.
    fn alt(k: &Key) -> String {
        let d = k.default.as_deref().unwrap_or("");
        match k.ty {
            Ty::Bool => (d != "true").to_string(),
            Ty::U32 | Ty::U64 | Ty::Limit => (d.parse::<u64>().unwrap_or(0) + 1).to_string(),
            Ty::Str => if d == "\"alt\"" { "\"alt2\"" } else { "\"alt\"" }.to_owned(),
            Ty::Path => "\"/alt\"".to_owned(),
            Ty::Choice(c) => format!("\"{}\"", c.iter().find(|c| format!("\"{c}\"") != d).unwrap()),
            Ty::U32List => "[7]".to_owned(),
            Ty::StrList => "[\"GET\"]".to_owned(),
            Ty::NetList => "[\"10.0.0.0/8\"]".to_owned(),
            Ty::Permissions => "{ files = [\"read\"] }".to_owned(),
            Ty::Section | Ty::TableArray => unreachable!(),
        }
    }

    #[test]
    fn the_reload_column_is_what_a_reload_does() {
        let keys = keys();
        let tls = "[http_server.tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n";
        let mut checked = 0;
        for k in keys.iter().filter(|k| !k.path.contains("[]") && !matches!(k.ty, Ty::Section)) {
            let under_tls = k.path.starts_with("http_server.tls.");
            let (base, mut text) = match k.ty {
                Ty::TableArray if k.path == "jwt.keys" => {
                    (String::new(), "[[jwt.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\n".to_owned())
                }
                Ty::TableArray => (String::new(), "[[auth.routes]]\nprefix = \"/x/\"\n".to_owned()),
                _ => (String::new(), doc_setting(&keys, k, &alt(k))),
            };
            let base = if under_tls { tls.to_owned() } else { base };
            if under_tls {
                let mut entries = vec![("cert", "\"/c.pem\"".to_owned()), ("key", "\"/k.pem\"".to_owned())];
                entries.retain(|(n, _)| *n != k.name());
                entries.push((k.name(), alt(k)));
                text = format!(
                    "[http_server.tls]\n{}\n",
                    entries.iter().map(|(n, v)| format!("{n} = {v}")).collect::<Vec<_>>().join("\n")
                );
            }
            let old: Config = toml::from_str(&base).unwrap();
            let mut new: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_ne!(new, old, "{}: {text:?} changes nothing", k.path);
            let kept = crate::reload::keep_bound_at_start(&old, &mut new, old.http_server.tls.is_some());
            let named = kept.iter().any(|n| k.path == *n || k.path.starts_with(&format!("{n}.")));
            assert_eq!(named, k.reload == Reload::Restart, "{}: a reload reports {kept:?}", k.path);
            if k.reload == Reload::Restart {
                assert_eq!(new, old, "{}: a reload does not keep the old value", k.path);
            }
            checked += 1;
        }
        // Turning TLS on needs a restart.
        let mut new: Config = toml::from_str(tls).unwrap();
        let kept = crate::reload::keep_bound_at_start(&Config::default(), &mut new, false);
        assert_eq!(kept, ["http_server.tls"]);
        assert_eq!(new.http_server.tls, None::<TlsConfig>);
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn check_reports_every_problem_and_keeps_the_rest() {
        let text = r#"
            htp = "x"
            max_connections = "many"
            [durability]
            mode = "sometimes"
            [jwt]
            ttl_secs = -1
            [[jwt.keys]]
            alg = "HS512"
            [tiers.Pro]
            requests_per_minute = "lots"
            [auth]
            trusted_proxies = ["127.0.0.1", "localhost"]
            [log]
            level = "debug"
        "#;
        let mut table: toml::Table = text.parse().unwrap();
        let errs: Vec<String> = check(&mut table).into_iter().map(|e| e.0).collect();
        let expect = [
            "htp: unknown field `htp`",
            "max_connections: invalid type: string \"many\", expected a non-negative integer",
            "durability.mode: unknown variant `sometimes`, expected `relaxed` or `strict`",
            "jwt.ttl_secs: invalid type: integer `-1`, expected a non-negative integer",
            "jwt.keys[0]: missing field `kid`",
            "jwt.keys[0].alg: unknown variant `HS512`",
            "tiers.Pro: missing field `members`",
            "tiers.Pro.requests_per_minute: invalid type: string \"lots\", expected a non-negative integer or",
            "auth.trusted_proxies: \"localhost\" is not an IP address",
        ];
        for e in expect {
            assert!(errs.iter().any(|m| m.starts_with(e)), "{e:?} not in {errs:#?}");
        }
        assert_eq!(errs.len(), 11, "{errs:#?}"); // tiers.Pro also misses documents and log_retention_days
        // What is left deserializes, the good keys kept.
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(c.log.level, "debug");
        assert!(c.jwt.keys.is_empty());
    }

    #[test]
    fn the_markdown_lists_every_key() {
        let md = markdown();
        for k in keys().iter().filter(|k| k.ty != Ty::Section) {
            assert!(md.contains(&format!("| `{}` |", k.name())), "{}", k.path);
        }
    }
}
