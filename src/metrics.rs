//! Counters behind `/metrics`, and their Prometheus text exposition.
//!
//! The verification paths count with relaxed atomic adds on cache-padded
//! shards: each thread picks a shard once (round robin) and only ever writes
//! that one, so two worker threads counting the same verdict never fight over
//! a cache line. Nothing here locks or allocates on the counting side; a
//! scrape sums the shards. Counts are exact once the counting threads are
//! quiet; a scrape taken meanwhile may see one verdict counted and its latency
//! not yet, which Prometheus tolerates.
//!
//! Gauges that the daemon already knows (keys loaded, JWT cache hits, store
//! failures) are read at scrape time instead of being counted twice.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::core::verify::{CredentialKind, DenyCode, VerdictOf};

/// Shards of the hot counters (a power of two). More than the worker threads of any machine
/// tollgate is likely to run on would buy little: a shared shard only costs
/// when two threads write it at the same instant.
const SHARDS: usize = 16;
const _: () = assert!(SHARDS.is_power_of_two());

/// Label values of `kind`: the three credential kinds, and `unknown` for a
/// credential too malformed to tell (no `prefix_` and not a JWT).
pub const KINDS: [&str; 4] = ["api_key", "access_token", "jwt", "unknown"];
const KIND_UNKNOWN: usize = 3;

/// Verdict slots: `ALLOW`, then every deny code in wire order.
const VERDICTS: usize = 1 + DenyCode::ALL.len();

/// The interfaces whose requests are timed, as the `interface` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Interface {
    /// The Unix-socket protocol: every request frame, from the start of the
    /// batch that holds it until its answer is written.
    Socket = 0,
    /// `POST /v1/verify`, from the parsed body until the answer is ready.
    HttpVerify = 1,
    /// nginx `GET /auth`, from the headers until the answer is ready.
    Auth = 2,
}

impl Interface {
    const ALL: [Interface; 3] = [Interface::Socket, Interface::HttpVerify, Interface::Auth];

    fn label(self) -> &'static str {
        match self {
            Interface::Socket => "socket",
            Interface::HttpVerify => "http_verify",
            Interface::Auth => "auth",
        }
    }
}

/// Where a denial that names no known credential came from: the `interface`
/// label of `tollgate_unattributed_denials_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum DenySource {
    /// The Unix-socket protocol.
    Socket = 0,
    /// `POST /v1/verify`.
    HttpVerify = 1,
    /// nginx `GET /auth`.
    Auth = 2,
    /// An admin route called with no credential or a refused one.
    Admin = 3,
    /// `POST /v1/auth/token` naming no known user or key.
    Login = 4,
}

impl DenySource {
    const ALL: [DenySource; 5] =
        [DenySource::Socket, DenySource::HttpVerify, DenySource::Auth, DenySource::Admin, DenySource::Login];

    /// The `interface` label.
    pub fn label(self) -> &'static str {
        match self {
            DenySource::Socket => "socket",
            DenySource::HttpVerify => "http_verify",
            DenySource::Auth => "auth",
            DenySource::Admin => "admin",
            DenySource::Login => "login",
        }
    }

    /// The `action` of an audit event about it.
    pub fn action(self) -> &'static str {
        match self {
            DenySource::Socket => "socket",
            DenySource::HttpVerify => "verify",
            DenySource::Auth => "auth",
            DenySource::Admin => "admin",
            DenySource::Login => "Login",
        }
    }
}

/// Code slots of unattributed denials: `MISSING` (no credential at all), then
/// every deny code in wire order.
const UNATTRIBUTED_CODES: usize = 1 + DenyCode::ALL.len();

/// The `code` label of an unattributed denial: `MISSING` for no credential.
pub fn unattributed_code(code: Option<DenyCode>) -> &'static str {
    code.map_or("MISSING", DenyCode::as_str)
}

pub use crate::core::histogram::{BUCKETS_US, Histogram, HistogramSnapshot};

/// One thread's share of the hot counters.
struct Shard {
    verdicts: [[AtomicU64; VERDICTS]; KINDS.len()],
    latency: [Histogram; Interface::ALL.len()],
    unattributed: [[AtomicU64; UNATTRIBUTED_CODES]; DenySource::ALL.len()],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            verdicts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            unattributed: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::default()),
        }
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard index, assigned round robin on first use.
#[inline]
fn shard_index() -> usize {
    SHARD.with(|s| {
        let i = s.get();
        if i < SHARDS {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(i);
        i
    })
}

/// The daemon's counters. One per running server (tests run several daemons
/// in one process; each has its own).
pub struct Metrics {
    shards: Box<[CachePadded<Shard>; SHARDS]>,
    socket_open: AtomicU64,
    socket_accepted: AtomicU64,
    socket_refused: AtomicU64,
    jwt_cache_hits_before: AtomicU64,
    jwt_cache_misses_before: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    /// Whether the last reload (or the start, before any) applied.
    last_reload_ok: AtomicBool,
    /// When the last reload (or the start) was tried, in ms since the epoch.
    last_reload_ms: AtomicU64,
    started_unix_secs: u64,
    /// Admin-API requests: per (method, route template), one histogram per
    /// status slot, in the order first seen. Not sharded, and behind a lock:
    /// admin calls are few and each does far more than one lookup. The routes
    /// are the router's templates (and `unmatched`), so the set is bounded.
    admin: parking_lot::Mutex<Vec<AdminSeries>>,
    /// Failed logins by reason slot ([`LOGIN_FAILURES`]).
    login_failures: [AtomicU64; LOGIN_FAILURES.len()],
}

/// The `status` label values of the admin-API metrics: the statuses the admin
/// API answers with; any other is counted as `other`.
pub const ADMIN_STATUSES: [u16; 16] = [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503, 504];
const ADMIN_STATUS_SLOTS: usize = ADMIN_STATUSES.len() + 1;

/// The admin-API requests of one route: histograms by status slot.
struct AdminSeries {
    method: &'static str,
    route: Box<str>,
    by_status: Box<[Histogram]>,
}

/// The `reason` label of `tollgate_login_failures_total`, by the answer's
/// status: 401 wrong username, password or key; 429 too many failures from
/// the address or for the username; 400 no or malformed Basic credentials;
/// anything else (a disabled user's 403, a 500) is `other`.
pub const LOGIN_FAILURES: [(&str, u16); 4] =
    [("invalid_credentials", 401), ("rate_limited", 429), ("bad_request", 400), ("other", 0)];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            shards: Box::new(std::array::from_fn(|_| CachePadded::new(Shard::default()))),
            socket_open: AtomicU64::new(0),
            socket_accepted: AtomicU64::new(0),
            socket_refused: AtomicU64::new(0),
            jwt_cache_hits_before: AtomicU64::new(0),
            jwt_cache_misses_before: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            last_reload_ok: AtomicBool::new(true),
            last_reload_ms: AtomicU64::new(crate::core::clock::now_us() / 1000),
            started_unix_secs: crate::core::clock::now_us() / 1_000_000,
            admin: parking_lot::Mutex::new(Vec::new()),
            login_failures: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The credential kind a verdict is counted under. An allow knows its kind;
/// a deny is classified by the credential's shape, as the verifier does:
/// a JWT is `eyJ…` with two dots, an access token has the `tgpat_` prefix,
/// anything else with a `prefix_` is an API key.
#[inline]
pub fn kind_index(kind: Option<CredentialKind>, credential: &str) -> usize {
    match kind {
        Some(CredentialKind::ApiKey) => 0,
        Some(CredentialKind::AccessToken) => 1,
        Some(CredentialKind::Jwt) => 2,
        None if crate::core::verify::looks_like_jwt(credential) => 2,
        None if credential
            .strip_prefix(crate::engine::ACCESS_TOKEN_PREFIX)
            .is_some_and(|rest| rest.starts_with('_')) =>
        {
            1
        }
        None if credential.contains('_') => 0,
        None => KIND_UNKNOWN,
    }
}

fn unattributed_label(slot: usize) -> &'static str {
    unattributed_code(slot.checked_sub(1).and_then(|i| DenyCode::ALL.get(i)).copied())
}

fn verdict_label(slot: usize) -> &'static str {
    match slot.checked_sub(1).and_then(|i| DenyCode::ALL.get(i)) {
        None => "ALLOW",
        Some(c) => c.as_str(),
    }
}

impl Metrics {
    #[inline]
    fn shard(&self) -> &Shard {
        // A fixed-size array and an index below SHARDS: no division, and
        // the bounds check folds away.
        &self.shards[shard_index() & (SHARDS - 1)]
    }

    /// Counts one verification: `code` is `None` for an allow.
    #[inline]
    pub fn verdict(&self, kind: Option<CredentialKind>, credential: &str, code: Option<DenyCode>) {
        let k = kind_index(kind, credential);
        let v = code.map_or(0, |c| c as usize);
        if let Some(slot) = self.shard().verdicts.get(k).and_then(|row| row.get(v)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `verdict` for `credential` (logged at trace level, without the
    /// credential).
    #[inline]
    pub fn count(&self, verdict: &VerdictOf<'_>, credential: &str) {
        let (kind, code) = match verdict {
            VerdictOf::Allow(a) => (Some(a.kind), None),
            VerdictOf::Deny(d) => (None, Some(d.code)),
        };
        self.verdict(kind, credential, code);
        tracing::trace!(
            target: "tollgate::verify",
            kind = KINDS[kind_index(kind, credential)],
            verdict = code.map_or("ALLOW", DenyCode::as_str),
            "verified"
        );
    }

    /// Records the latency of `n` requests of `interface`.
    #[inline]
    pub fn latency(&self, interface: Interface, d: Duration, n: u64) {
        if let Some(h) = self.shard().latency.get(interface as usize) {
            h.observe_n(d, n);
        }
    }

    /// Counts a denial that names no known credential (`code` `None`: no
    /// credential was presented at all).
    #[inline]
    pub fn unattributed(&self, source: DenySource, code: Option<DenyCode>) {
        let c = code.map_or(0, |c| c as usize);
        if let Some(slot) = self.shard().unattributed.get(source as usize).and_then(|row| row.get(c)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Unattributed denials counted for `(interface, code)`, summed over
    /// shards; `code` is a deny code or `MISSING`. For tests and the exposition.
    pub fn unattributed_denials(&self, interface: &str, code: &str) -> u64 {
        let Some(i) = DenySource::ALL.iter().position(|s| s.label() == interface) else { return 0 };
        let Some(c) = (0..UNATTRIBUTED_CODES).find(|&c| unattributed_label(c) == code) else { return 0 };
        self.shards.iter().map(|s| s.unattributed[i][c].load(Ordering::Relaxed)).sum()
    }

    /// A socket connection was accepted and is now served.
    pub fn socket_opened(&self) {
        self.socket_accepted.fetch_add(1, Ordering::Relaxed);
        self.socket_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A served socket connection ended.
    pub fn socket_closed(&self) {
        self.socket_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A socket connection was refused (too many connections).
    pub fn socket_refused(&self) {
        self.socket_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Socket connections being served now.
    pub fn socket_connections(&self) -> u64 {
        self.socket_open.load(Ordering::Relaxed)
    }

    /// Keeps the JWT cache counts of a key set that a reload replaced, so the
    /// exported counters never go backwards.
    pub fn retire_jwt_cache(&self, (hits, misses): (u64, u64)) {
        self.jwt_cache_hits_before.fetch_add(hits, Ordering::Relaxed);
        self.jwt_cache_misses_before.fetch_add(misses, Ordering::Relaxed);
    }

    /// Counts a configuration reload, and remembers its result and time.
    pub fn reloaded(&self, ok: bool) {
        if ok { &self.reloads_ok } else { &self.reloads_refused }.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(ok, Ordering::Relaxed);
        self.last_reload_ms.store(crate::core::clock::now_us() / 1000, Ordering::Relaxed);
    }

    /// Records one admin-API request: `method` and `route` (its template) of
    /// the route that served it, or `any` and `unmatched` for a path or method
    /// no route serves. The caller passes only the router's templates, so the
    /// series stay bounded. A status outside [`ADMIN_STATUSES`] counts as `other`.
    pub fn admin_request(&self, method: &'static str, route: &str, status: u16, d: Duration) {
        let s = ADMIN_STATUSES.iter().position(|&x| x == status).unwrap_or(ADMIN_STATUS_SLOTS - 1);
        let mut series = self.admin.lock();
        let i = match series.iter().position(|a| a.method == method && *a.route == *route) {
            Some(i) => i,
            None => {
                series.push(AdminSeries {
                    method,
                    route: route.into(),
                    by_status: (0..ADMIN_STATUS_SLOTS).map(|_| Histogram::default()).collect(),
                });
                series.len() - 1
            }
        };
        series[i].by_status[s].observe(d);
    }

    /// Counts a failed login (`POST /v1/auth/token`) answered with `status`.
    pub fn login_failed(&self, status: u16) {
        let slot = LOGIN_FAILURES.iter().position(|&(_, s)| s == status).unwrap_or(LOGIN_FAILURES.len() - 1);
        self.login_failures[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed logins counted under `reason` (a [`LOGIN_FAILURES`] label).
    pub fn login_failures(&self, reason: &str) -> u64 {
        LOGIN_FAILURES
            .iter()
            .position(|&(r, _)| r == reason)
            .map_or(0, |i| self.login_failures[i].load(Ordering::Relaxed))
    }

    /// Verifications counted for `(kind, verdict)`, summed over shards;
    /// `verdict` is `"ALLOW"` or a deny code. For tests and the exposition.
    pub fn verifications(&self, kind: &str, verdict: &str) -> u64 {
        let Some(k) = KINDS.iter().position(|&x| x == kind) else { return 0 };
        let Some(v) = (0..VERDICTS).find(|&v| verdict_label(v) == verdict) else { return 0 };
        self.shards.iter().map(|s| s.verdicts[k][v].load(Ordering::Relaxed)).sum()
    }

    /// The latency histogram of `interface`, summed over shards.
    pub fn latency_snapshot(&self, interface: Interface) -> HistogramSnapshot {
        let mut out = HistogramSnapshot::default();
        for s in self.shards.iter() {
            out.add(&s.latency[interface as usize].snapshot());
        }
        out
    }
}

/// What a scrape reads besides the counters above.
pub struct Gauges {
    /// Whether `/readyz` would answer ready.
    pub ready: bool,
    /// Teams, users, API keys and access tokens in the index.
    pub teams: usize,
    /// Users in the index.
    pub users: usize,
    /// API keys in the index.
    pub keys: usize,
    /// Access tokens in the index.
    pub tokens: usize,
    /// `(hits, misses)` of the JWT key set in force.
    pub jwt_cache: (u64, u64),
    /// JWT keys configured (verification keys, the signing key included).
    pub jwt_keys: usize,
    /// Store writes: latency histogram.
    pub store_writes: HistogramSnapshot,
    /// Store writes that failed.
    pub store_write_failures: u64,
    /// Counter flushes that failed (and were retried).
    pub flush_failures: u64,
    /// Denied verifications the audit log dropped because its queue was full.
    pub audit_dropped: u64,
    /// Unattributed denials stored in the audit log as samples.
    pub audit_sampled: u64,
    /// Audit events removed because their team had more than
    /// `audit.max_events_per_team`.
    pub audit_trimmed: u64,
}

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn render(m: &Metrics, g: &Gauges) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    header(o, "tollgate_build_info", "gauge", "Always 1; the version is a label.");
    line(o, "tollgate_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    single(
        o,
        "tollgate_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the Unix epoch.",
        m.started_unix_secs,
    );
    single(
        o,
        "tollgate_ready",
        "gauge",
        "1 when /readyz answers ready: index loaded, listeners bound, store writable.",
        u64::from(g.ready),
    );

    header(
        o,
        "tollgate_verifications_total",
        "counter",
        "Verifications answered on the socket, /v1/verify and /auth, by credential kind and verdict (ALLOW or the deny code).",
    );
    for (k, kind) in KINDS.iter().enumerate() {
        for v in 0..VERDICTS {
            let n: u64 = m.shards.iter().map(|s| s.verdicts[k][v].load(Ordering::Relaxed)).sum();
            line(o, "tollgate_verifications_total", &[("kind", kind), ("verdict", verdict_label(v))], n);
        }
    }
    header(
        o,
        "tollgate_request_duration_seconds",
        "histogram",
        "Time to answer a verification request, by interface (socket: every request frame, batch start to answer written).",
    );
    for i in Interface::ALL {
        histogram(o, "tollgate_request_duration_seconds", &[("interface", i.label())], &m.latency_snapshot(i));
    }

    single(
        o,
        "tollgate_socket_connections",
        "gauge",
        "Socket connections being served.",
        m.socket_open.load(Ordering::Relaxed),
    );
    single(
        o,
        "tollgate_socket_connections_accepted_total",
        "counter",
        "Socket connections accepted and served.",
        m.socket_accepted.load(Ordering::Relaxed),
    );
    single(
        o,
        "tollgate_socket_connections_refused_total",
        "counter",
        "Socket connections refused as too many.",
        m.socket_refused.load(Ordering::Relaxed),
    );

    header(o, "tollgate_loaded", "gauge", "Objects in the in-memory index, by kind.");
    for (what, n) in [("teams", g.teams), ("users", g.users), ("keys", g.keys), ("tokens", g.tokens)] {
        line(o, "tollgate_loaded", &[("object", what)], n as u64);
    }
    single(o, "tollgate_jwt_keys", "gauge", "JWT keys configured (the signing key included).", g.jwt_keys as u64);
    single(
        o,
        "tollgate_jwt_cache_hits_total",
        "counter",
        "JWT verifications answered from the verified-token cache.",
        m.jwt_cache_hits_before.load(Ordering::Relaxed) + g.jwt_cache.0,
    );
    single(
        o,
        "tollgate_jwt_cache_misses_total",
        "counter",
        "JWT verifications that checked the signature.",
        m.jwt_cache_misses_before.load(Ordering::Relaxed) + g.jwt_cache.1,
    );

    header(
        o,
        "tollgate_store_write_duration_seconds",
        "histogram",
        "Store writes (batch applied and, if durable, fsynced).",
    );
    histogram(o, "tollgate_store_write_duration_seconds", &[], &g.store_writes);
    single(o, "tollgate_store_write_failures_total", "counter", "Store writes that failed.", g.store_write_failures);
    single(
        o,
        "tollgate_usage_flush_failures_total",
        "counter",
        "Flushes of usage counters (remaining uses, request counts, last-used times) that failed and were retried.",
        g.flush_failures,
    );
    single(
        o,
        "tollgate_audit_dropped_total",
        "counter",
        "Denied verifications not written to the audit log (queue full).",
        g.audit_dropped,
    );
    header(
        o,
        "tollgate_unattributed_denials_total",
        "counter",
        "Denials naming no known credential (none, unknown, malformed or an unverifiable JWT), by interface and code (MISSING: no credential); counted, and only sampled into the audit log.",
    );
    for (i, src) in DenySource::ALL.iter().enumerate() {
        for c in 0..UNATTRIBUTED_CODES {
            let n: u64 = m.shards.iter().map(|s| s.unattributed[i][c].load(Ordering::Relaxed)).sum();
            line(
                o,
                "tollgate_unattributed_denials_total",
                &[("interface", src.label()), ("code", unattributed_label(c))],
                n,
            );
        }
    }
    single(
        o,
        "tollgate_audit_unattributed_sampled_total",
        "counter",
        "Unattributed denials stored in the audit log as samples (audit.unattributed_samples_per_minute).",
        g.audit_sampled,
    );
    single(
        o,
        "tollgate_audit_trimmed_total",
        "counter",
        "Audit events removed, oldest first, to keep a team within audit.max_events_per_team.",
        g.audit_trimmed,
    );

    header(o, "tollgate_config_reloads_total", "counter", "Configuration reloads, by result (applied or refused).");
    line(o, "tollgate_config_reloads_total", &[("result", "applied")], m.reloads_ok.load(Ordering::Relaxed));
    line(o, "tollgate_config_reloads_total", &[("result", "refused")], m.reloads_refused.load(Ordering::Relaxed));
    single(
        o,
        "tollgate_last_reload_success",
        "gauge",
        "1 if the last configuration reload applied (or none was tried since the start), 0 if it was refused.",
        u64::from(m.last_reload_ok.load(Ordering::Relaxed)),
    );
    header(
        o,
        "tollgate_last_reload_timestamp_seconds",
        "gauge",
        "When the last configuration reload was tried (the start time if none was), in seconds since the Unix epoch.",
    );
    line(o, "tollgate_last_reload_timestamp_seconds", &[], Seconds(m.last_reload_ms.load(Ordering::Relaxed)));

    header(
        o,
        "tollgate_admin_request_duration_seconds",
        "histogram",
        "Admin-API requests (/v1/... but /v1/verify, and /openapi.json), by method and route template (unmatched: no route), and status (other: not a listed one); _count is the number of requests.",
    );
    // By route, then method; `unmatched` last.
    let series = m.admin.lock();
    let mut order: Vec<&AdminSeries> = series.iter().collect();
    order.sort_by_key(|a| (&*a.route == "unmatched", &*a.route, a.method));
    for a in order {
        let (method, route) = (a.method, &*a.route);
        for s in 0..ADMIN_STATUS_SLOTS {
            let snap = a.by_status[s].snapshot();
            if snap.count == 0 {
                continue;
            }
            let status = ADMIN_STATUSES.get(s).map_or_else(|| "other".to_owned(), u16::to_string);
            let labels = [("method", method), ("route", route), ("status", status.as_str())];
            histogram(o, "tollgate_admin_request_duration_seconds", &labels, &snap);
        }
    }
    header(
        o,
        "tollgate_login_failures_total",
        "counter",
        "Failed logins (POST /v1/auth/token), by reason: invalid_credentials (401), rate_limited (429), bad_request (400), other.",
    );
    for (i, (reason, _)) in LOGIN_FAILURES.iter().enumerate() {
        line(o, "tollgate_login_failures_total", &[("reason", reason)], m.login_failures[i].load(Ordering::Relaxed));
    }

    if let Some(p) = ProcessStats::read() {
        p.render(o);
    }
    out
}

/// A time in milliseconds, shown in seconds.
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// The standard `process_*` metrics, read from `/proc/self` at scrape time
/// (Linux only; nothing is exported where `/proc` is missing).
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks per second (`USER_HZ`).
    pub ticks_per_sec: u64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
    /// When the process started, in ms since the Unix epoch.
    pub start_ms: u64,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/status`, `/proc/self/fd`,
    /// `/proc/self/limits` and the boot time from `/proc/stat`.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// Parses what [`ProcessStats::read`] reads (see proc(5)). Times in
    /// `stat` are in `USER_HZ` ticks, which the kernel fixes at 100 for user
    /// space (as Prometheus's own procfs reader assumes; `sysconf` would need
    /// `unsafe`, which this crate forbids).
    pub fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: u64) -> Option<Self> {
        const USER_HZ: u64 = 100;
        // Fields after the command, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field n is f[n - 3].
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_ticks = field(14)? + field(15)?;
        let start_ticks = field(22)?;
        let kib = |name: &str| -> Option<u64> {
            let v = status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
            Some(v.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
        };
        let btime: u64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|soft| soft.parse().ok());
        Some(ProcessStats {
            cpu_ticks,
            ticks_per_sec: USER_HZ,
            resident_bytes: kib("VmRSS")?,
            virtual_bytes: kib("VmSize")?,
            open_fds,
            max_fds,
            start_ms: btime * 1000 + start_ticks * 1000 / USER_HZ,
        })
    }

    fn render(&self, o: &mut String) {
        header(o, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        let cpu_ms = self.cpu_ticks * 1000 / self.ticks_per_sec;
        line(o, "process_cpu_seconds_total", &[], Seconds(cpu_ms));
        single(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", self.resident_bytes);
        single(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", self.virtual_bytes);
        single(o, "process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds);
        if let Some(max) = self.max_fds {
            single(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
        }
        header(o, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        line(o, "process_start_time_seconds", &[], Seconds(self.start_ms));
    }
}

/// A metric with one unlabeled sample.
fn single(o: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(o, name, kind, help);
    line(o, name, &[], value);
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(o: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    o.push_str(name);
    if !labels.is_empty() {
        o.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            // Label values here are fixed identifiers and route templates;
            // none holds a backslash, a quote or a newline.
            let _ = write!(o, "{k}=\"{v}\"");
        }
        o.push('}');
    }
    let _ = writeln!(o, " {value}");
}

fn histogram(o: &mut String, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
    let mut cumulative = 0;
    let lead: String = labels.iter().map(|(k, v)| format!("{k}=\"{v}\",")).collect();
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = match BUCKETS_US.get(i) {
            Some(&us) => format!("{}", us as f64 / 1e6),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(o, "{name}_bucket{{{lead}le=\"{le}\"}} {cumulative}");
    }
    let labels = match lead.strip_suffix(',') {
        Some(l) => format!("{{{l}}}"),
        None => String::new(),
    };
    let _ = writeln!(o, "{name}_sum{labels} {}", h.sum_ns as f64 / 1e9);
    let _ = writeln!(o, "{name}_count{labels} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_counted_per_kind_and_code_across_threads() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.verdict(Some(CredentialKind::ApiKey), "", None);
                        m.verdict(None, "tgpat_x", Some(DenyCode::Revoked));
                        m.verdict(None, "eyJa.b.c", Some(DenyCode::Expired));
                        m.verdict(None, "garbage", Some(DenyCode::Malformed));
                        m.verdict(None, "tg_typo", Some(DenyCode::Malformed));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.verifications("api_key", "ALLOW"), 8000);
        assert_eq!(m.verifications("access_token", "REVOKED"), 8000);
        assert_eq!(m.verifications("jwt", "EXPIRED"), 8000);
        assert_eq!(m.verifications("unknown", "MALFORMED"), 8000);
        assert_eq!(m.verifications("api_key", "MALFORMED"), 8000);
        assert_eq!(m.verifications("api_key", "REVOKED"), 0);
        assert_eq!(m.verifications("nope", "ALLOW"), 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let m = Metrics::default();
        m.latency(Interface::Socket, Duration::from_micros(5), 3);
        m.latency(Interface::Socket, Duration::from_micros(30), 1);
        m.latency(Interface::Socket, Duration::from_secs(10), 1);
        let s = m.latency_snapshot(Interface::Socket);
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets[0], 3);
        assert_eq!(s.buckets[2], 1);
        assert_eq!(s.buckets[BUCKETS_US.len()], 1);
        let g = Gauges {
            ready: true,
            teams: 1,
            users: 2,
            keys: 3,
            tokens: 4,
            jwt_cache: (5, 6),
            jwt_keys: 1,
            store_writes: HistogramSnapshot::default(),
            store_write_failures: 0,
            flush_failures: 0,
            audit_dropped: 0,
            audit_sampled: 7,
            audit_trimmed: 0,
        };
        m.unattributed(DenySource::Auth, Some(DenyCode::NotFound));
        m.unattributed(DenySource::Admin, None);
        m.unattributed(DenySource::Admin, None);
        assert_eq!(m.unattributed_denials("admin", "MISSING"), 2);
        m.retire_jwt_cache((10, 20));
        let text = render(&m, &g);
        assert!(
            text.contains("tollgate_request_duration_seconds_bucket{interface=\"socket\",le=\"0.00001\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("tollgate_request_duration_seconds_bucket{interface=\"socket\",le=\"0.00005\"} 4\n"));
        assert!(text.contains("tollgate_request_duration_seconds_bucket{interface=\"socket\",le=\"+Inf\"} 5\n"));
        assert!(text.contains("tollgate_request_duration_seconds_count{interface=\"socket\"} 5\n"));
        assert!(text.contains("tollgate_request_duration_seconds_count{interface=\"auth\"} 0\n"));
        assert!(text.contains("tollgate_loaded{object=\"keys\"} 3\n"));
        assert!(text.contains("tollgate_jwt_cache_hits_total 15\n"));
        assert!(text.contains("tollgate_jwt_cache_misses_total 26\n"));
        assert!(text.contains("tollgate_store_write_duration_seconds_count 0\n"));
        assert!(text.contains("tollgate_unattributed_denials_total{interface=\"auth\",code=\"NOT_FOUND\"} 1\n"));
        assert!(text.contains("tollgate_unattributed_denials_total{interface=\"admin\",code=\"MISSING\"} 2\n"));
        assert!(text.contains("tollgate_audit_unattributed_sampled_total 7\n"));
        // Every sample line is `name{labels} value` or `name value`, and
        // every metric has HELP and TYPE before its samples.
        let mut typed = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
                continue;
            }
            if l.starts_with('#') {
                continue;
            }
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
            let name = series.split('{').next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(typed.contains(name) || typed.contains(base), "{l} has no TYPE");
        }
    }

    #[test]
    fn process_stats_are_parsed_from_proc() {
        // A command with spaces and a parenthesis, as proc(5) allows.
        let stat = "4242 (tollgate (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    12345 1048576000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let status = "Name:\ttollgate\nVmSize:\t 1024000 kB\nVmRSS:\t   20000 kB\nThreads:\t9\n";
        let p = ProcessStats::parse(stat, status, boot, limits, 12).unwrap();
        assert_eq!(p.cpu_ticks, 300);
        assert_eq!(p.virtual_bytes, 1_024_000 * 1024);
        assert_eq!(p.resident_bytes, 20_000 * 1024);
        assert_eq!(p.start_ms, 1_700_000_000_000 + 123_450);
        assert_eq!(p.max_fds, Some(1024));
        assert_eq!(p.open_fds, 12);
        let mut o = String::new();
        p.render(&mut o);
        assert!(o.contains("process_cpu_seconds_total 3.000\n"), "{o}");
        assert!(o.contains("process_start_time_seconds 1700000123.450\n"), "{o}");
        let unlimited = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(ProcessStats::parse(stat, status, boot, unlimited, 12).unwrap().max_fds, None);
        assert!(ProcessStats::parse("garbage", status, boot, limits, 1).is_none());
        // This process's own, on Linux.
        if cfg!(target_os = "linux") {
            let me = ProcessStats::read().unwrap();
            assert!(me.resident_bytes > 0 && me.open_fds > 0 && me.start_ms > 0);
        }
    }

    #[test]
    fn admin_requests_are_rendered_by_route_and_status_only_once_seen() {
        let m = Metrics::default();
        m.admin_request("GET", "/v1/keys/{id}", 404, Duration::from_micros(300));
        m.admin_request("any", "unmatched", 404, Duration::from_micros(30));
        m.admin_request("any", "unmatched", 299, Duration::from_micros(30));
        m.login_failed(401);
        m.login_failed(403);
        let g = Gauges {
            ready: true,
            teams: 0,
            users: 0,
            keys: 0,
            tokens: 0,
            jwt_cache: (0, 0),
            jwt_keys: 0,
            store_writes: HistogramSnapshot::default(),
            store_write_failures: 0,
            flush_failures: 0,
            audit_dropped: 0,
            audit_sampled: 0,
            audit_trimmed: 0,
        };
        let text = render(&m, &g);
        let series = |s: &str| text.lines().find_map(|l| l.strip_prefix(s)?.strip_prefix(' ')).map(str::to_owned);
        let c = "tollgate_admin_request_duration_seconds_count";
        assert_eq!(series(&format!("{c}{{method=\"GET\",route=\"/v1/keys/{{id}}\",status=\"404\"}}")).unwrap(), "1");
        assert_eq!(series(&format!("{c}{{method=\"any\",route=\"unmatched\",status=\"404\"}}")).unwrap(), "1");
        assert_eq!(series(&format!("{c}{{method=\"any\",route=\"unmatched\",status=\"other\"}}")).unwrap(), "1");
        assert_eq!(text.matches(&format!("{c}{{")).count(), 3, "series appear once seen: {text}");
        assert_eq!(series("tollgate_login_failures_total{reason=\"invalid_credentials\"}").unwrap(), "1");
        assert_eq!(series("tollgate_login_failures_total{reason=\"other\"}").unwrap(), "1");
        assert_eq!(series("tollgate_last_reload_success").unwrap(), "1");
        m.reloaded(false);
        assert_eq!(series_of(&render(&m, &g), "tollgate_last_reload_success"), "0");
    }

    fn series_of(text: &str, s: &str) -> String {
        text.lines().find_map(|l| l.strip_prefix(s)?.strip_prefix(' ')).unwrap().to_owned()
    }

    #[test]
    fn every_deny_code_has_its_slot() {
        for (i, c) in DenyCode::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i + 1, "deny codes are numbered from 1 in wire order");
            assert_eq!(verdict_label(i + 1), c.as_str());
        }
        assert_eq!(verdict_label(0), "ALLOW");
    }
}
