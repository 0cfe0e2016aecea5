//! The engine: the index, the store behind it, JWT keys, and the flusher thread
//! that writes counters. Every administrative change is written to the store
//! (and flushed) before the index is touched and before the caller hears back,
//! so an acknowledged change survives a crash and the next verification sees it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use ipnet::IpNet;
use parking_lot::{Condvar, Mutex};

use crate::config::{Config, ConfigError, DurabilityMode};
use crate::core::index::{
    Dirty, Index, KeyCounters, KeyEntry, KeyHot, KeyPolicy, LastPolicy, Secret, SecretsGuard, TeamEntry, TokenEntry,
    UserEntry,
};
use crate::core::jwt::{Claims, JwtKeyConfig, JwtKeys, JwtSettings};
use crate::core::limits::{Micros, WINDOW_MAX_REQUESTS, period_of};
use crate::core::model::{
    AccessToken, ApiKey, Millis, Permissions, RateLimit, Refill, Role, STAT_SHARDS, Stat, Team, Tier, TierLimits,
    Usage, User, UserStatus, stat_shard,
};
use crate::core::perms::PermSet;
use crate::core::secret;
use crate::core::verify::{Looked, Verdict, VerdictOf, Verifier, VerifyRequest};
use crate::store::{Batch, Span, Store, StoreError, Table, decode_borrowed};
use smallvec::SmallVec;

mod image;
mod listing;
mod replica;
pub use listing::{Cursor, Page, page_of};
use listing::{Filed, Listing};

/// File in the data directory holding the generated JWT signing key.
const DEFAULT_JWT_KEY_FILE: &str = "jwt-signing-key.pem";
/// Default prefix of API keys.
pub const DEFAULT_KEY_PREFIX: &str = "tg";
/// Prefix of personal access tokens; API keys may not use it.
pub const ACCESS_TOKEN_PREFIX: &str = "tgpat";

/// An administrative operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The object does not exist (or belongs to another team).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The object conflicts with an existing one.
    #[error("{0}")]
    Conflict(String),
    /// A tier limit forbids it.
    #[error("{0}")]
    LimitReached(String),
    /// The team already holds more than the tier it would move to allows.
    #[error("{0}")]
    TierExceeded(String),
    /// Wrong username or password, or the user cannot log in.
    #[error("invalid credentials")]
    BadCredentials,
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Entry `index` of a batch (an import) was refused; nothing was written.
    #[error("keys[{index}]: {error}")]
    Entry {
        /// The entry's position in the batch, from 0.
        index: usize,
        /// Why it was refused.
        error: Box<EngineError>,
    },
}

fn invalid<T>(field: &'static str, reason: impl Into<String>) -> Result<T, EngineError> {
    Err(EngineError::Invalid { field, reason: reason.into() })
}

/// The longest lifetime a key or access token may be given: 100 years of
/// 365.25 days. Every date the API stores is at most this far from now, so it
/// stays far from the end of year 9999 (the last one RFC 3339 can write).
pub const MAX_LIFETIME_DAYS: u32 = 36_525;
/// [`MAX_LIFETIME_DAYS`] in seconds (`expiresIn` of API keys).
pub const MAX_LIFETIME_SECS: u64 = MAX_LIFETIME_DAYS as u64 * 86_400;
/// [`MAX_LIFETIME_DAYS`] in milliseconds.
pub const MAX_LIFETIME_MS: u64 = MAX_LIFETIME_SECS * 1000;
/// The shortest refill interval, in milliseconds.
pub const MIN_REFILL_INTERVAL_MS: u64 = 1000;
/// The longest refill interval, in milliseconds: the longest lifetime.
pub const MAX_REFILL_INTERVAL_MS: u64 = MAX_LIFETIME_MS;
/// The longest rate-limit window, in milliseconds: 366 days.
pub const MAX_RATE_WINDOW_MS: u64 = 366 * 86_400_000;

/// The expiry `secs` seconds after `now` (ms): `secs` must be 1 to
/// [`MAX_LIFETIME_SECS`] (`expiresIn` of an API key).
pub fn expiry_after_secs(now: Millis, secs: u64) -> Result<Millis, EngineError> {
    if secs == 0 {
        return invalid("expiresIn", "must be at least 1 second");
    }
    if secs > MAX_LIFETIME_SECS {
        return invalid("expiresIn", format!("must be at most {MAX_LIFETIME_SECS} seconds (100 years)"));
    }
    match secs.checked_mul(1000).and_then(|ms| now.checked_add(ms)) {
        Some(at) => Ok(at),
        None => invalid("expiresIn", "out of range"),
    }
}

pub use crate::core::clock::now_us;

/// How many requests a batch looks up at once ([`Engine::look_up_all`]): enough
/// for their lookups' cache misses to overlap, few enough that what the
/// lookups brought into the cache is still there when they are verified.
pub const LOOK_AHEAD: usize = 32;

fn now_ms() -> Millis {
    now_us() / 1000
}

/// Settings of a new API key (seed 002's fields plus seed 001's allowlist).
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    /// Owning user (the team is the user's).
    pub user_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Prefix; `tg` when `None`.
    pub prefix: Option<String>,
    /// Lifetime in seconds.
    pub expires_in_secs: Option<u64>,
    /// Remaining uses; unlimited when `None`.
    pub remaining: Option<u32>,
    /// Refill of remaining uses.
    pub refill: Option<Refill>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Permissions.
    pub permissions: Permissions,
    /// JSON metadata text; `{}` when `None`.
    pub metadata: Option<String>,
    /// IPs and CIDR blocks.
    pub whitelisted_ips: Vec<String>,
}

/// Why a change of a key's refill alone is refused in cluster mode: the
/// cluster's count restarts its periods only when it is set.
const CLUSTER_REFILL: &str = "in cluster mode a change of the refill sets the remaining uses too: give remaining \
                              (the shared count and its refill periods start again from it)";

/// Most entries [`Engine::import_keys`] takes in one call.
pub const MAX_IMPORT: usize = 10_000;
/// Meta record holding the adopted keys' prefixes (`Vec<String>`).
const ADOPTED_PREFIXES: &str = "adopted_prefixes";
/// Longest display `start` of an adopted key.
pub const MAX_START_LEN: usize = 40;

/// One entry of [`Engine::import_keys`]: the fields of a key creation, and,
/// to adopt a key issued elsewhere (Unkey's migration does the same), the
/// SHA-256 of its secret.
#[derive(Clone, Debug, Default)]
pub struct ImportKey {
    /// The fields of a creation. For an adopted key, `prefix` is the
    /// prefix of its secret (before the last `_`), for display and for
    /// recognizing its format; when absent, it is taken from `start`.
    pub key: NewKey,
    /// SHA-256 of the existing secret, 64 hex digits: the key is adopted and
    /// verifies with that secret. `None`: tollgate generates a secret.
    pub hash: Option<String>,
    /// The first characters of the existing secret, shown in listings (at
    /// most [`MAX_START_LEN`]); only with `hash`.
    pub start: Option<String>,
}

/// A key imported: its record, and its secret when tollgate generated it
/// (shown this once; `None` for an adopted key).
pub type Imported = (ApiKey, Option<String>);

/// A key creation validated, before the store and the index are touched.
struct CheckedKey {
    new: NewKey,
    prefix: String,
    ips: Vec<IpNet>,
    metadata: String,
    expires_at: Option<Millis>,
    adopt: Option<Adoption>,
}

/// What an adopted key brings: its hash, display start and prefix.
struct Adoption {
    hash: [u8; 32],
    start: String,
    prefix: String,
}

/// The error of import entry `index`.
fn entry_error(index: usize, error: EngineError) -> EngineError {
    EngineError::Entry { index, error: Box::new(error) }
}

/// Validates a key creation (of a generated key, or of an adopted one).
fn check_new_key(new: NewKey, adopt: Option<Adoption>, now: Millis) -> Result<CheckedKey, EngineError> {
    let prefix = match &adopt {
        Some(a) => a.prefix.clone(),
        None => {
            let prefix = new.prefix.clone().unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
            secret::validate_prefix(&prefix).or_else(|e| invalid("prefix", e))?;
            if prefix == ACCESS_TOKEN_PREFIX {
                return invalid("prefix", format!("{ACCESS_TOKEN_PREFIX:?} is reserved for access tokens"));
            }
            prefix
        }
    };
    if let Some(n) = &new.name {
        check_name("name", n)?;
    }
    validate_limits(new.refill, new.rate_limit)?;
    let ips = parse_ips(&new.whitelisted_ips)?;
    let metadata = check_metadata(new.metadata.as_deref().unwrap_or("{}"))?;
    let expires_at = new.expires_in_secs.map(|s| expiry_after_secs(now, s)).transpose()?;
    Ok(CheckedKey { new, prefix, ips, metadata, expires_at, adopt })
}

/// Validates what adopts a key: 64 hex digits of hash, a display start,
/// and the prefix (given, or what precedes the last `_` of `start`; empty
/// when neither says).
fn check_adoption(hash: &str, start: Option<String>, prefix: Option<&str>) -> Result<Adoption, EngineError> {
    let bytes = hash.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return invalid("hash", "must be 64 hexadecimal digits (the SHA-256 of the secret)");
    }
    let mut digest = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
        digest[i] = hex(pair[0]) << 4 | hex(pair[1]);
    }
    let start = start.unwrap_or_default();
    if start.chars().count() > MAX_START_LEN || start.chars().any(char::is_control) {
        return invalid("start", format!("must be at most {MAX_START_LEN} characters with no control characters"));
    }
    // `start` is shown in every listing: never the secret itself.
    if !start.is_empty() && secret::sha256(start.as_bytes()) == digest {
        return invalid("start", "is the whole secret (its hash is `hash`): give only its first characters");
    }
    let prefix = match prefix {
        Some(p) => {
            secret::validate_prefix(p).or_else(|e| invalid("prefix", e))?;
            if p == ACCESS_TOKEN_PREFIX {
                return invalid("prefix", format!("{ACCESS_TOKEN_PREFIX:?} is reserved for access tokens"));
            }
            p.to_owned()
        }
        None => start
            .rsplit_once('_')
            .map(|(p, _)| p)
            .filter(|p| secret::validate_prefix(p).is_ok() && *p != ACCESS_TOKEN_PREFIX)
            .unwrap_or_default()
            .to_owned(),
    };
    Ok(Adoption { hash: digest, start, prefix })
}

/// Changes to an API key; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct KeyUpdate {
    /// New name.
    pub name: Option<Option<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New expiry (absolute, ms) or none.
    pub expires_at: Option<Option<Millis>>,
    /// Reset remaining uses (and restart the refill period).
    pub remaining: Option<Option<u32>>,
    /// New refill.
    pub refill: Option<Option<Refill>>,
    /// New rate limit.
    pub rate_limit: Option<Option<RateLimit>>,
    /// New permissions.
    pub permissions: Option<Permissions>,
    /// New metadata JSON text.
    pub metadata: Option<String>,
    /// New allowlist.
    pub whitelisted_ips: Option<Vec<String>>,
}

struct Durable {
    done: Mutex<u64>,
    cond: Condvar,
    notify: tokio::sync::Notify,
    failures: AtomicU64,
}

/// The verification engine.
pub struct Engine {
    index: Arc<Index>,
    store: Store,
    jwt: ArcSwap<JwtKeys>,
    tiers: ArcSwap<[TierLimits; 4]>,
    strict: bool,
    rng: SystemRandom,
    /// Serializes administrative changes (never taken by verification).
    admin: Mutex<()>,
    /// Ordered ids behind the list routes (never taken by verification, never
    /// held across I/O): changed after the store write, under `admin`.
    listing: Mutex<Listing>,
    durable: Arc<Durable>,
    stop: Arc<AtomicBool>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    flusher_thread: std::thread::Thread,
    /// Cluster mode: the cluster, the log position, the leases.
    replica: Option<replica::Replica>,
    /// The data directory (the key image is written there at shutdown).
    data: std::path::PathBuf,
    /// Whether the start read the keys from the key image.
    from_image: bool,
}

/// The admin lock held: the engine's mutex and, in cluster mode, a
/// transaction holding the cluster's admin lock, after this node caught up
/// with the change log (so what the operation reads is the cluster's latest).
struct AdminGuard<'a> {
    _local: parking_lot::MutexGuard<'a, ()>,
    tx: Option<crate::cluster::AdminTx>,
}

impl Engine {
    /// Opens the store in `config.data`, loads the index and starts the flusher.
    pub fn open(config: &Config) -> Result<Engine, EngineError> {
        create_data_dir(&config.data)?;
        let jwt = JwtKeys::new(&jwt_settings(config)?).map_err(|e| ConfigError(format!("jwt: {e}")))?;
        let store = Store::open(&config.data, config.store.cache_mb.saturating_mul(1 << 20))?;
        let started = std::time::Instant::now();
        let replica = match &config.cluster.postgres_url {
            None => None,
            Some(_) => {
                let node = secret::new_id(&SystemRandom::new(), "node_");
                let cluster = crate::cluster::Cluster::open(&config.cluster, node)?;
                Some(replica::Replica::join(cluster, &store)?)
            }
        };
        let (index, listing, from_image) = load_index(&store, replica.is_some(), &config.data)?;
        if replica.is_some() {
            // Remaining uses are leased: every key with a limit starts with
            // an empty lease (a lease of this node's previous life was
            // returned at its shutdown, or is lost with its crash).
            for k in index.keys.iter() {
                if k.policy.counted() {
                    k.counters.uses.set(0, 0);
                }
            }
        }
        tracing::info!(
            keys = index.keys.len(),
            tokens = index.tokens.len(),
            users = index.users.len(),
            secs = started.elapsed().as_secs_f64(),
            "index loaded"
        );
        let (index, listing) = (Arc::new(index), Mutex::new(listing));
        let durable = Arc::new(Durable {
            done: Mutex::new(0),
            cond: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            failures: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_millis(config.durability.flush_interval_ms);
        let stats_interval = Duration::from_millis(config.durability.stats_flush_interval_ms);
        let handle = {
            let (index, store, durable, stop) = (index.clone(), store.clone(), durable.clone(), stop.clone());
            std::thread::Builder::new()
                .name("tollgate-flusher".into())
                .spawn(move || flusher(&index, &store, &durable, &stop, interval, stats_interval))
                .map_err(|e| StoreError::Db(format!("cannot start flusher: {e}")))?
        };
        Ok(Engine {
            flusher_thread: handle.thread().clone(),
            index,
            store,
            jwt: ArcSwap::from_pointee(jwt),
            tiers: ArcSwap::from_pointee(config.tiers.table()),
            strict: config.durability.mode == DurabilityMode::Strict,
            rng: SystemRandom::new(),
            admin: Mutex::new(()),
            listing,
            durable,
            stop,
            flusher: Mutex::new(Some(handle)),
            replica,
            data: config.data.clone(),
            from_image,
        })
    }

    /// Whether this engine's start read its keys from the key image
    /// (`engine::image`) instead of the store's records.
    pub fn loaded_from_image(&self) -> bool {
        self.from_image
    }

    /// Takes the admin lock (in cluster mode, the cluster's too, after
    /// applying every change of the log this node has not applied).
    fn lock_admin(&self) -> Result<AdminGuard<'_>, EngineError> {
        let local = self.admin.lock();
        let Some(r) = &self.replica else { return Ok(AdminGuard { _local: local, tx: None }) };
        self.ensure_joined()?;
        let mut tx = r.cluster.begin_admin()?;
        loop {
            let changes = tx.changes_after(r.applied.load(Ordering::Acquire))?;
            if changes.is_empty() {
                break;
            }
            if self.pruned_past(&changes) {
                drop(tx);
                self.reload_snapshot(replica::PRUNED)?;
                tx = r.cluster.begin_admin()?;
                continue;
            }
            self.apply_changes(changes)?;
        }
        Ok(AdminGuard { _local: local, tx: Some(tx) })
    }

    /// Writes an admin change durably: to the store, or in cluster mode to
    /// PostgreSQL first (the replicated records, a change-log entry and its
    /// notification, in one transaction), then to this node's store.
    fn commit(&self, g: &mut AdminGuard<'_>, batch: Batch) -> Result<(), EngineError> {
        let Some(r) = &self.replica else { return Ok(self.store.apply(batch, true)?) };
        let tx = g.tx.take().ok_or_else(|| StoreError::Db("cluster: one admin lock, one change".into()))?;
        let (ops, credits) = batch.into_parts();
        let replicated: Vec<_> = ops.iter().filter(|o| o.table().is_some_and(Table::replicated)).cloned().collect();
        if replicated.is_empty() && credits.is_empty() {
            drop(tx);
            return Ok(self.store.apply(Batch::from_ops(ops), true)?);
        }
        let seq = r.applied.load(Ordering::Acquire) + 1;
        tx.commit(seq, &crate::cluster::Change { ops: replicated, credits })?;
        // Committed cluster-wide. Should this node's store fail now, the
        // applier reads the change back from the log (`applied` has not
        // moved), so the node still converges.
        let mut ops = ops;
        ops.push(replica::Position { seq, at_ms: now_ms() }.op());
        self.store.apply(Batch::from_ops(ops), true)?;
        r.applied.store(seq, Ordering::Release);
        Ok(())
    }

    /// [`Engine::commit`] of one record.
    fn commit_put<T: serde::Serialize>(
        &self,
        g: &mut AdminGuard<'_>,
        table: Table,
        id: &str,
        value: &T,
    ) -> Result<(), EngineError> {
        let mut b = Batch::default();
        b.put(table, id, value);
        self.commit(g, b)
    }

    /// Whether remaining uses are leased from a cluster.
    fn leasing(&self) -> bool {
        self.replica.is_some()
    }

    /// A new key's counters: in cluster mode, with empty leases.
    fn new_counters(&self, usage: &Usage, refill: Option<Refill>) -> KeyCounters {
        KeyCounters { cluster: self.leasing().then(Box::default), ..counters(usage, refill) }
    }

    /// Verifies at the current time; in strict mode, returns once the
    /// verification's counter changes are on disk.
    pub fn verify(&self, req: &VerifyRequest<'_>) -> Verdict {
        let v = self.verify_at(req, now_us());
        if let Verdict::Allow(a) = &v
            && let Some(ticket) = a.durable_after
        {
            self.wait_durable(ticket);
        }
        v
    }

    /// Verifies at time `now` without waiting for durability (the pure verifier;
    /// strict-mode callers must wait for `Allow::durable_after` themselves).
    pub fn verify_at(&self, req: &VerifyRequest<'_>, now: Micros) -> Verdict {
        let verdict = self.verifier_at(true, |v| v.verify(req, now));
        self.after_lease(verdict, req, true)
    }

    /// As [`verify_at`](Engine::verify_at), the verdict borrowing the
    /// credential's index entry under `guard` (taken with
    /// `index().secrets.guard()`, held while the verdict is read): nothing
    /// shared is written to find the entry nor to build the verdict. The
    /// socket service's path; hold the guard for one request or a batch.
    pub fn verify_in<'g>(&self, req: &VerifyRequest<'_>, now: Micros, guard: &'g SecretsGuard<'_>) -> VerdictOf<'g> {
        self.verify_looked(req, now, guard, None)
    }

    /// Looks `credentials` up as [`verify_in`](Engine::verify_in) would,
    /// deciding nothing and writing nothing, in three passes over the batch (every digest, then every lookup, then
    /// every entry's first lines) so that the lookups' cache misses overlap:
    /// `looked[i]` is for `credentials[i]` (`None` for one that is not
    /// UTF-8; one that is not looked up, a JWT or a credential MALFORMED
    /// without a lookup, says so, and its checksum is not checked again).
    pub fn look_up_all<'g>(
        &self,
        credentials: &[Option<&str>],
        guard: &'g SecretsGuard<'_>,
    ) -> SmallVec<[Option<Looked<'g>>; LOOK_AHEAD]> {
        use crate::core::verify::{look_up_hash, lookup_hash, touch};
        let hashes: SmallVec<[Option<[u8; 32]>; LOOK_AHEAD]> =
            credentials.iter().map(|c| c.and_then(|c| lookup_hash(&self.index, c))).collect();
        let looked: SmallVec<[Option<Looked<'g>>; LOOK_AHEAD]> = credentials
            .iter()
            .zip(&hashes)
            .map(|(c, h)| {
                let c = (*c)?;
                // No hash: a credential the verification would refuse
                // (MALFORMED, or a JWT, or empty) without a lookup; it is
                // told so instead of checking the checksum again.
                Some(h.as_ref().map_or_else(|| Looked::unhashed(c), |h| look_up_hash(&self.index, c, h, guard)))
            })
            .collect();
        for l in looked.iter().flatten() {
            touch(*l);
        }
        looked
    }

    /// As [`verify_in`](Engine::verify_in), reusing the lookup that
    /// [`look_up_all`](Engine::look_up_all) made of `req.credential` under `guard`;
    /// the decision is `verify_in`'s in every other respect.
    pub fn verify_looked<'g>(
        &self,
        req: &VerifyRequest<'_>,
        now: Micros,
        guard: &'g SecretsGuard<'_>,
        looked: Option<Looked<'g>>,
    ) -> VerdictOf<'g> {
        let verdict = self.verifier_at(true, |v| v.verify_looked(req, now, guard, looked));
        self.after_lease(verdict, req, true)
    }

    /// Verifies the credential of an admin-API call: as [`verify_at`], but
    /// the team's per-minute tier limit neither applies nor counts the call
    /// (it is on the team's API requests); the credential's own limits do.
    ///
    /// [`verify_at`]: Engine::verify_at
    pub fn verify_admin_at(&self, req: &VerifyRequest<'_>, now: Micros) -> Verdict {
        let verdict = self.verifier_at(false, |v| v.verify(req, now));
        self.after_lease(verdict, req, false)
    }

    /// Cluster mode: a denial for want of a lease this node has asked for
    /// is verified again once the lease is answered, within
    /// `cluster.lease_wait_ms` (see `replica::wait_for_lease`).
    fn after_lease<'a>(&self, verdict: VerdictOf<'a>, req: &VerifyRequest<'_>, team_limit: bool) -> VerdictOf<'a> {
        match verdict {
            VerdictOf::Deny(d) if d.lease_pending => {
                self.wait_for_lease(VerdictOf::Deny(d), || self.verifier_at(team_limit, |v| v.verify(req, now_us())))
            }
            verdict => verdict,
        }
    }

    fn verifier_at<T>(&self, team_limit: bool, f: impl FnOnce(&Verifier<'_>) -> T) -> T {
        let tiers = self.tiers.load();
        // Cluster mode: team documents are acquired in PostgreSQL.
        let acquire = |team: &TeamEntry, amount: u64, limit: Option<u64>| self.acquire_verifying(team, amount, limit);
        let documents: Option<&crate::core::verify::SharedQuota<'_>> = self.leasing().then_some(&acquire);
        f(&Verifier { index: &self.index, jwt: &self.jwt, tiers: &tiers, strict: self.strict, team_limit, documents })
    }

    /// Blocks until flush generation `ticket` is on disk.
    pub fn wait_durable(&self, ticket: u64) {
        self.flusher_thread.unpark();
        let mut done = self.durable.done.lock();
        while *done < ticket {
            self.durable.cond.wait(&mut done);
        }
    }

    /// Waits (asynchronously) until flush generation `ticket` is on disk.
    pub async fn wait_durable_async(&self, ticket: u64) {
        self.flusher_thread.unpark();
        loop {
            let notified = self.durable.notify.notified();
            if *self.durable.done.lock() >= ticket {
                return;
            }
            notified.await;
        }
    }

    /// Writes every pending counter change, statistics included, and waits
    /// until it is on disk.
    pub fn flush(&self) -> Result<(), EngineError> {
        flush_counters(&self.index, &self.store, &self.durable, true)?;
        Ok(())
    }

    /// Stops the flusher after a last flush, then writes the key image
    /// (one host only: in cluster mode a start loads the cluster's
    /// snapshot). Called on shutdown; idempotent.
    pub fn shutdown(&self) -> Result<(), EngineError> {
        self.return_leases();
        self.stop.store(true, Ordering::Release);
        self.flusher_thread.unpark();
        let stopped = self.flusher.lock().take().map(|h| h.join()).is_some();
        self.flush()?;
        if stopped && self.replica.is_none() {
            self.write_image();
        }
        Ok(())
    }

    /// Writes the key image of the index as the store now holds it (every
    /// counter flushed). A failure costs the next start its speed, not its
    /// correctness: the image left behind records an older generation.
    fn write_image(&self) {
        let started = std::time::Instant::now();
        let written =
            self.store.generation().and_then(|g| image::write(&self.data, &self.index, g, |k| key_usage(&k.counters)));
        match written {
            Ok(keys) => tracing::info!(keys, ms = started.elapsed().as_millis(), "key image written"),
            Err(e) => tracing::warn!(error = %e, "key image not written: the next start reads the store"),
        }
    }

    /// Counter flushes that failed (and were retried).
    pub fn flush_failures(&self) -> u64 {
        self.durable.failures.load(Ordering::Relaxed)
    }

    /// The JWT keys in force.
    pub fn jwt(&self) -> Arc<JwtKeys> {
        self.jwt.load_full()
    }

    /// The tier table in force.
    pub fn tiers(&self) -> [TierLimits; 4] {
        **self.tiers.load()
    }

    /// Puts a new JWT key set in force (configuration reload) and returns the
    /// one it replaces. A verification already running finishes with the old
    /// set; the next one uses the new set.
    pub fn replace_jwt(&self, keys: JwtKeys) -> Arc<JwtKeys> {
        self.jwt.swap(Arc::new(keys))
    }

    /// Puts a new tier table in force (configuration reload).
    pub fn replace_tiers(&self, tiers: [TierLimits; 4]) {
        self.tiers.store(Arc::new(tiers));
    }

    /// The store, for records the engine does not own (the audit log); they
    /// share its flushes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The index (read-only use: metrics, listings).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Holds the admin lock until the guard drops: every administrative
    /// change waits meanwhile. For tests (a verification must not wait for it).
    #[doc(hidden)]
    pub fn hold_admin_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.admin.lock()
    }

    // ---- teams ----

    /// Creates a team.
    pub fn create_team(&self, name: &str, tier: Tier) -> Result<Team, EngineError> {
        check_name("name", name)?;
        let mut g = self.lock_admin()?;
        let now = now_ms();
        let team = Team {
            id: secret::new_id(&self.rng, "team_"),
            name: name.to_owned(),
            tier,
            created_at: now,
            updated_at: now,
        };
        self.commit_put(&mut g, Table::Teams, &team.id, &team)?;
        self.index
            .teams
            .insert(team.id.clone(), Arc::new(TeamEntry::new(&team.id, tier, 0).in_cluster(self.leasing())));
        self.listing.lock().add_team(&team.id);
        Ok(team)
    }

    /// A team by id.
    pub fn team(&self, id: &str) -> Result<Team, EngineError> {
        self.store.get(Table::Teams, id)?.ok_or(EngineError::NotFound("team"))
    }

    /// Every team (a scan of the store: the list route uses [`Engine::teams_page`]).
    pub fn teams(&self) -> Result<Vec<Team>, EngineError> {
        Ok(self.store.scan(Table::Teams)?.into_iter().map(|(_, t)| t).collect())
    }

    /// A page of teams in id order: O(log n + limit + offset) in the listing,
    /// then one store read per team on the page.
    pub fn teams_page(&self, cursor: Cursor<'_>, offset: usize, limit: usize) -> Result<Page<Team>, EngineError> {
        let page = page_of(&self.listing.lock().teams, cursor, offset, limit);
        let mut teams = Vec::with_capacity(page.items.len());
        for id in &page.items {
            // Deleted since the ids were taken: left out of the page.
            if let Some(t) = self.store.get(Table::Teams, id)? {
                teams.push(t);
            }
        }
        Ok(page.map(teams))
    }

    /// Changes a team's tier; the next verification uses the new limits.
    ///
    /// Unless `force`, a tier whose member or document limit the team already
    /// exceeds is refused with `TierExceeded`, naming what exceeds. Members are
    /// the users whose status is not Deleted. (Members are counted under the
    /// admin lock that user creation also takes; documents can still be
    /// consumed by verifications under the old limit while this runs.)
    pub fn set_team_tier(&self, id: &str, tier: Tier, force: bool) -> Result<Team, EngineError> {
        let mut g = self.lock_admin()?;
        let mut team = self.team(id)?;
        if !force {
            let limits = self.tiers.load()[tier.index()];
            let mut over = Vec::new();
            let members = self.users_of(id).iter().filter(|u| u.status() != UserStatus::Deleted).count() as u64;
            if let Some(max) = limits.members.get()
                && members > max
            {
                over.push(format!("{members} members > {tier}'s {max}"));
            }
            let documents = self.index.teams.get(id).map_or(0, |t| self.documents_used(&t));
            if let Some(max) = limits.documents.get()
                && documents > max
            {
                over.push(format!("{documents} documents > {tier}'s {max}"));
            }
            if !over.is_empty() {
                return Err(EngineError::TierExceeded(format!(
                    "the team exceeds the {tier} tier: {}; force the change to apply it anyway",
                    over.join(", ")
                )));
            }
        }
        team.tier = tier;
        team.updated_at = now_ms();
        self.commit_put(&mut g, Table::Teams, id, &team)?;
        if let Some(e) = self.index.teams.get(id) {
            e.set_tier(tier);
        }
        Ok(team)
    }

    /// Deletes a team with its users, keys and tokens.
    pub fn delete_team(&self, id: &str) -> Result<(), EngineError> {
        let mut g = self.lock_admin()?;
        self.team(id)?;
        let mut b = Batch::default();
        b.remove(Table::Teams, id);
        b.remove(Table::TeamUsage, id);
        let users: Vec<String> = self.users_of(id).into_iter().map(|u| u.id.to_string()).collect();
        let keys: Vec<Arc<KeyEntry>> = self.index.keys.matching(|k| *k.user.team.id == *id);
        let tokens: Vec<Arc<TokenEntry>> =
            self.index.tokens.iter().filter(|t| *t.user.team.id == *id).map(|t| t.clone()).collect();
        for u in &users {
            b.remove(Table::Users, u);
        }
        for k in &keys {
            b.remove(Table::Keys, &k.id);
            b.remove(Table::Usage, &k.id);
        }
        for t in &tokens {
            b.remove(Table::Tokens, &t.id);
            b.remove(Table::Usage, &t.id);
        }
        self.commit(&mut g, b)?;
        for k in keys {
            self.index.secrets.remove(&k.hash);
            self.index.keys.remove(&k.id);
        }
        for t in tokens {
            self.index.secrets.remove(&t.record.hash);
            self.index.tokens.remove(&*t.id);
        }
        self.index.usernames.retain(|_, uid| !users.contains(uid));
        for u in users {
            self.index.users.remove(&u);
        }
        self.index.teams.remove(id);
        self.listing.lock().remove_team(id);
        Ok(())
    }

    /// The users of a team, from the listing (O(the team's users), not a scan
    /// of every user).
    fn users_of(&self, team: &str) -> Vec<Arc<UserEntry>> {
        let ids: Vec<String> =
            self.listing.lock().users_of(team).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        ids.iter().filter_map(|id| self.index.users.get(id.as_str()).map(|u| u.clone())).collect()
    }

    // ---- users ----

    /// Creates a user, enforcing the tier's member limit and unique usernames.
    pub fn create_user(
        &self,
        team_id: &str,
        username: &str,
        password: &str,
        role: Role,
        status: UserStatus,
    ) -> Result<User, EngineError> {
        check_name("username", username)?;
        if username.contains(':') {
            return invalid("username", "must not contain ':' (it separates Basic credentials)");
        }
        if password.len() < 8 || password.len() > 1024 {
            return invalid("password", "must be 8 to 1024 bytes");
        }
        let hash = self.hash_password(password)?;
        let mut g = self.lock_admin()?;
        let team = self.index.teams.get(team_id).map(|t| t.clone()).ok_or(EngineError::NotFound("team"))?;
        if self.user_by_name(username)?.is_some() {
            return Err(EngineError::Conflict(format!("username {username:?} is taken")));
        }
        let members = self.users_of(team_id).iter().filter(|u| u.status() != UserStatus::Deleted).count() as u64;
        if let Some(max) = self.tiers.load()[team.tier().index()].members.get()
            && members >= max
        {
            return Err(EngineError::LimitReached(format!("the {} tier allows {max} members", team.tier())));
        }
        let now = now_ms();
        let user = User {
            id: secret::new_id(&self.rng, "user_"),
            team_id: team_id.to_owned(),
            username: username.to_owned(),
            password_hash: hash,
            role,
            status,
            revoked_before: 0,
            created_at: now,
            updated_at: now,
        };
        self.commit_put(&mut g, Table::Users, &user.id, &user)?;
        self.index.usernames.insert(user.username.clone(), user.id.clone());
        self.index.users.insert(user.id.clone(), Arc::new(UserEntry::new(&user.id, team, role, status, 0)));
        self.listing.lock().add_user(team_id, &user.id);
        Ok(user)
    }

    fn hash_password(&self, password: &str) -> Result<String, EngineError> {
        let mut salt = [0u8; 16];
        self.rng.fill(&mut salt).map_err(|_| StoreError::Db("CSPRNG failed".into()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Db(e.to_string()))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| EngineError::Invalid { field: "password", reason: e.to_string() })
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Result<User, EngineError> {
        self.store.get(Table::Users, id)?.ok_or(EngineError::NotFound("user"))
    }

    /// A user by username.
    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, EngineError> {
        let Some(id) = self.index.usernames.get(username).map(|id| id.clone()) else { return Ok(None) };
        Ok(self.store.get(Table::Users, &id)?)
    }

    /// Every user of a team, in id order.
    pub fn users(&self, team_id: &str) -> Result<Vec<User>, EngineError> {
        Ok(self.users_page(team_id, Cursor::Start, 0, usize::MAX)?.items)
    }

    /// A page of a team's users in id order (Deleted ones included, as they
    /// are stored: anonymized): O(log n + limit + offset) in the listing, then
    /// one store read per user on the page.
    pub fn users_page(
        &self,
        team_id: &str,
        cursor: Cursor<'_>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<User>, EngineError> {
        let page = match self.listing.lock().users_of(team_id) {
            Some(set) => page_of(set, cursor, offset, limit),
            None => Page { items: Vec::new(), total: 0, more_before: false, more_after: false },
        };
        let mut users = Vec::with_capacity(page.items.len());
        for id in &page.items {
            if let Some(u) = self.store.get::<User>(Table::Users, id)? {
                users.push(u);
            }
        }
        Ok(page.map(users))
    }

    /// Changes a user's role, status or password; takes effect on the next verification.
    pub fn update_user(
        &self,
        id: &str,
        role: Option<Role>,
        status: Option<UserStatus>,
        password: Option<&str>,
    ) -> Result<User, EngineError> {
        let hash = match password {
            Some(p) if p.len() < 8 || p.len() > 1024 => return invalid("password", "must be 8 to 1024 bytes"),
            Some(p) => Some(self.hash_password(p)?),
            None => None,
        };
        let mut g = self.lock_admin()?;
        let mut user = self.user(id)?;
        if user.status == UserStatus::Deleted {
            return Err(EngineError::NotFound("user"));
        }
        let old = (user.role, user.status);
        user.role = role.unwrap_or(user.role);
        user.status = status.unwrap_or(user.status);
        // Sessions issued before a change of password or role, or before the
        // account stopped being Enabled, are revoked with it.
        let revoke = hash.is_some()
            || user.role != old.0
            || (old.1 == UserStatus::Enabled && user.status != UserStatus::Enabled);
        if let Some(h) = hash {
            user.password_hash = h;
        }
        if revoke {
            user.revoked_before = user.revoked_before.max(now_ms() + 1);
        }
        user.updated_at = now_ms();
        let entry = self.index.users.get(id).map(|e| e.clone());
        // A change of role changes the grant of each of the user's keys: their
        // stored permissions are read before anything is written.
        let mut regranted = Vec::new();
        if let Some(e) = &entry
            && user.role != old.0
        {
            for k in self.index.keys.matching(|k| std::ptr::eq(&*k.user, &**e)) {
                let record: ApiKey = self.store.get(Table::Keys, &k.id)?.ok_or(EngineError::NotFound("key"))?;
                regranted.push((k, record));
            }
        }
        self.commit_put(&mut g, Table::Users, id, &user)?;
        if let Some(e) = entry {
            // The user's keys get their grant within the new role before
            // the role itself changes, so a demotion never leaves a key
            // wider than its owner.
            for (k, record) in regranted {
                let entry = key_entry(&self.index, &record, k.ips().to_vec(), e.clone(), user.role, k.counters.clone());
                self.index.secrets.insert(Secret::Key(entry.clone()));
                self.index.keys.insert(entry);
            }
            e.revoked_before.store(user.revoked_before, Ordering::Release);
            e.set(user.role, user.status);
        }
        Ok(user)
    }

    /// Deletes a user as seed 000 says: the account is anonymized (no username,
    /// no password, status Deleted) and every credential of it stops working.
    /// Returns the name it had, for the caller to scrub from the audit log.
    pub fn delete_user(&self, id: &str) -> Result<String, EngineError> {
        let mut g = self.lock_admin()?;
        let mut user = self.user(id)?;
        let old_name = std::mem::replace(&mut user.username, format!("deleted-{}", user.id));
        let now = now_ms();
        user.password_hash.clear();
        user.status = UserStatus::Deleted;
        user.revoked_before = now + 1;
        user.updated_at = now;
        // One durable batch: the anonymized user, its keys gone, its access
        // tokens revoked. A deleted user's credentials are not listed as
        // active: keys verify NOT_FOUND, tokens REVOKED, JWTs REVOKED.
        let keys: Vec<Arc<KeyEntry>> = self.index.keys.matching(|k| k.user_id() == id);
        let tokens: Vec<Arc<TokenEntry>> = self
            .index
            .tokens
            .iter()
            .filter(|t| t.record.user_id == id && t.revoked_at.load(Ordering::Acquire) == 0)
            .map(|t| t.clone())
            .collect();
        let mut b = Batch::default();
        b.put(Table::Users, id, &user);
        for k in &keys {
            b.remove(Table::Keys, &k.id);
            b.remove(Table::Usage, &k.id);
        }
        for t in &tokens {
            let mut rec = token_record(t);
            rec.revoked_at.get_or_insert(now);
            b.put(Table::Tokens, &t.id, &rec);
        }
        self.commit(&mut g, b)?;
        let mut listing = self.listing.lock();
        for k in keys {
            self.index.secrets.remove(&k.hash);
            self.index.keys.remove(&k.id);
            listing.remove_key(&Filed::of(&k));
        }
        drop(listing);
        for t in &tokens {
            let _ = t.revoked_at.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        self.index.usernames.remove(&old_name);
        self.index.usernames.insert(user.username.clone(), user.id.clone());
        if let Some(e) = self.index.users.get(id) {
            e.set(user.role, UserStatus::Deleted);
            e.revoked_before.store(user.revoked_before, Ordering::Release);
        }
        Ok(old_name)
    }

    /// Revokes every JWT issued to the user until now.
    pub fn revoke_user_jwts(&self, id: &str) -> Result<(), EngineError> {
        let mut g = self.lock_admin()?;
        let mut user = self.user(id)?;
        user.revoked_before = now_ms() + 1;
        self.commit_put(&mut g, Table::Users, id, &user)?;
        if let Some(e) = self.index.users.get(id) {
            e.revoked_before.store(user.revoked_before, Ordering::Release);
        }
        Ok(())
    }

    /// Revokes one JWT by its `jti`, kept until `exp` (seconds). With a
    /// team, only that team's JWT of that id is revoked: a team's member can
    /// never revoke another team's session, whatever id it names.
    pub fn revoke_jti(&self, jti: &str, team: Option<&str>, exp: u64) -> Result<(), EngineError> {
        if jti.is_empty() || jti.len() > 128 || jti.chars().any(char::is_control) {
            return invalid("jti", "must be 1 to 128 characters with no control characters");
        }
        // Stored as `jti` (every team) or `team \x1f jti`, with its expiry.
        let key = match team {
            None => jti.to_owned(),
            Some(t) => format!("{t}\u{1f}{jti}"),
        };
        let mut g = self.lock_admin()?;
        self.commit_put(&mut g, Table::RevokedJti, &key, &exp)?;
        self.index.revoke_jti(jti, team.unwrap_or(""));
        Ok(())
    }

    // ---- login and JWTs ----

    /// Exchanges a username and password for a JWT (seed 003).
    pub fn login(&self, username: &str, password: &str) -> Result<String, EngineError> {
        let user = self.user_by_name(username)?;
        // Hash even for an unknown user, so timing does not reveal which names exist.
        let stored = user.as_ref().map_or(DUMMY_HASH.as_str(), |u| u.password_hash.as_str());
        let ok = PasswordHash::new(stored)
            .ok()
            .is_some_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        match user {
            Some(u) if ok && u.status == UserStatus::Enabled => self.issue_jwt(&u.id),
            _ => Err(EngineError::BadCredentials),
        }
    }

    /// Exchanges an API key (seed 003: the key as Basic username, no password)
    /// for a JWT of the key's owner. The key must verify (and is counted).
    ///
    /// The JWT is bound to the key: it carries the key's grant (its
    /// permissions within the owner's role), is checked and counted as the key
    /// on every use, stops working when the key is deleted, disabled or
    /// expires, and never expires after the key.
    pub fn login_with_key(&self, key: &str, ip: Option<IpAddr>) -> Result<String, EngineError> {
        let mut req = VerifyRequest::new(key);
        req.ip = ip;
        // A login is an admin-API call, not one of the team's API requests.
        match self.verify_admin_at(&req, now_us()) {
            Verdict::Allow(a) if a.kind == crate::core::verify::CredentialKind::ApiKey => {
                let k = a.key().ok_or(EngineError::BadCredentials)?;
                self.issue_jwt_for(a.subject(), Some((&k.id, k.expires_at())))
            }
            _ => Err(EngineError::BadCredentials),
        }
    }

    /// Issues a JWT for an enabled user.
    pub fn issue_jwt(&self, user_id: &str) -> Result<String, EngineError> {
        self.issue_jwt_for(user_id, None)
    }

    /// Issues a JWT for an enabled user, bound to `key` (its id and expiry)
    /// when it is exchanged from one.
    fn issue_jwt_for(&self, user_id: &str, key: Option<(&str, Option<Millis>)>) -> Result<String, EngineError> {
        let user = self.user(user_id)?;
        if user.status != UserStatus::Enabled {
            return Err(EngineError::BadCredentials);
        }
        let team = self.team(&user.team_id)?;
        let jwt = self.jwt.load();
        let s = jwt.settings();
        let now = now_ms() / 1000;
        let iat = now;
        let mut exp = iat.saturating_add(s.ttl_secs);
        if let Some((_, Some(key_expiry))) = key {
            exp = exp.min(key_expiry / 1000);
        }
        let claims = Claims {
            iss: s.issuer.clone(),
            sub: user.id.clone(),
            aud: s.audience.clone(),
            iat,
            iat_ms: Some(now_ms()),
            exp,
            nbf: now,
            jti: secret::new_uuid(&self.rng),
            prv: "tollgate".to_owned(),
            team: team.id.clone(),
            roles: vec![user.role.as_str().to_owned()],
            subscription: team.tier.as_str().to_owned(),
            key: key.map(|(id, _)| id.to_owned()),
        };
        jwt.issue(&claims).map_err(|e| EngineError::Config(ConfigError(format!("jwt: cannot sign: {e}"))))
    }

    // ---- API keys ----

    /// Creates an API key; returns the record and the secret, shown this once.
    pub fn create_key(&self, new: NewKey) -> Result<(ApiKey, String), EngineError> {
        let mut v = self.create_keys(vec![new])?;
        Ok(v.remove(0))
    }

    /// Creates many API keys in one durable write (fixtures, benches):
    /// all are created or, if one is invalid, none.
    pub fn create_keys(&self, news: Vec<NewKey>) -> Result<Vec<(ApiKey, String)>, EngineError> {
        let now = now_ms();
        let checked = news.into_iter().map(|new| check_new_key(new, None, now)).collect::<Result<Vec<_>, _>>()?;
        let stored = self.store_keys(checked, now).map_err(|(_, e)| e)?;
        // Every key here was generated, so each has its secret.
        Ok(stored.into_iter().map(|(key, secret)| (key, secret.unwrap_or_default())).collect())
    }

    /// Imports up to [`MAX_IMPORT`] API keys in one atomic write, on disk
    /// before this returns: all are imported or, if one entry is refused,
    /// none, and the error names that entry ([`EngineError::Entry`]).
    ///
    /// An entry with a `hash` adopts a key issued elsewhere: the key keeps
    /// its secret, which tollgate never sees, and verifies with it whatever
    /// its format. An entry without one gets a new secret, returned here once.
    pub fn import_keys(&self, entries: Vec<ImportKey>) -> Result<Vec<Imported>, EngineError> {
        if entries.len() > MAX_IMPORT {
            return invalid("keys", format!("at most {MAX_IMPORT} entries per import"));
        }
        let now = now_ms();
        let mut checked = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let adopt = match (entry.hash, entry.start) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(entry_error(
                        index,
                        EngineError::Invalid { field: "start", reason: "only with hash".into() },
                    ));
                }
                (Some(hash), start) => {
                    Some(check_adoption(&hash, start, entry.key.prefix.as_deref()).map_err(|e| entry_error(index, e))?)
                }
            };
            checked.push(check_new_key(entry.key, adopt, now).map_err(|e| entry_error(index, e))?);
        }
        self.store_keys(checked, now).map_err(|(index, e)| match index {
            Some(index) => entry_error(index, e),
            None => e,
        })
    }

    /// Writes checked keys in one durable batch and puts them in the index;
    /// an error names the entry it is about, if it is about one.
    fn store_keys(&self, checked: Vec<CheckedKey>, now: Millis) -> Result<Vec<Imported>, (Option<usize>, EngineError)> {
        if checked.is_empty() {
            return Ok(Vec::new());
        }
        let mut g = self.lock_admin().map_err(|e| (None, e))?;
        let mut batch = Batch::default();
        let mut created = Vec::with_capacity(checked.len());
        let mut hashes = std::collections::HashSet::with_capacity(checked.len());
        let mut prefixes = (**self.index.adopted_prefixes.load()).clone();
        let adopted_before = prefixes.len();
        for (i, c) in checked.into_iter().enumerate() {
            let user = self.live_user(&c.new.user_id).map_err(|e| (Some(i), e))?;
            let (hash, start, plaintext) = match c.adopt {
                Some(a) => {
                    if self.index.secrets.contains_key(&a.hash) {
                        return Err((Some(i), EngineError::Conflict("a key or token with this hash exists".into())));
                    }
                    if !prefixes.contains(&a.prefix) {
                        prefixes.push(a.prefix.clone());
                    }
                    (a.hash, a.start, None)
                }
                None => {
                    let s = secret::generate(&self.rng, &c.prefix);
                    (s.hash, s.start, Some(s.plaintext))
                }
            };
            if !hashes.insert(hash) {
                return Err((
                    Some(i),
                    EngineError::Conflict("an earlier entry of this import has the same hash".into()),
                ));
            }
            let new = c.new;
            let key = ApiKey {
                // In creation order: an import of 10,000 keys appends to
                // the keys table instead of touching a leaf per key.
                id: secret::new_timed_id(&self.rng, "key_", now),
                team_id: user.team.id.to_string(),
                user_id: user.id.to_string(),
                name: new.name,
                prefix: c.prefix,
                start,
                hash,
                enabled: true,
                expires_at: c.expires_at,
                remaining: new.remaining.or(new.refill.map(|r| r.amount)),
                refill: new.refill,
                rate_limit: new.rate_limit,
                permissions: new.permissions,
                metadata: c.metadata,
                whitelisted_ips: new.whitelisted_ips,
                created_at: now,
                updated_at: now,
            };
            // No usage record: a key without one loads with the counters it
            // starts with here (remaining as created, anchored at creation).
            batch.put(Table::Keys, &key.id, &key);
            if key.remaining.is_some() {
                batch.reset_credits(&key.id, key.remaining);
            }
            created.push((key, plaintext, c.ips, user));
        }
        if prefixes.len() != adopted_before {
            batch.put(Table::Meta, ADOPTED_PREFIXES, &prefixes);
        }
        // A failed write is no entry's fault.
        self.commit(&mut g, batch).map_err(|e| (None, e))?;
        if prefixes.len() != adopted_before {
            // Before the keys are in the index: a verification that finds an
            // adopted key already looks its format up.
            self.index.adopted_prefixes.store(Arc::new(prefixes));
            self.index.any_adopted.store(true, Ordering::Release);
        }
        let mut listing = self.listing.lock();
        Ok(created
            .into_iter()
            .map(|(key, plaintext, ips, user)| {
                // Cluster mode: the uses are the cluster's; this node starts
                // with an empty lease.
                let remaining = if self.leasing() { 0 } else { key.remaining.unwrap_or(0) };
                let usage = Usage { remaining, anchor: now, ..Usage::default() };
                let role = user.role();
                let entry =
                    key_entry(&self.index, &key, ips, user, role, Arc::new(self.new_counters(&usage, key.refill)));
                self.index.secrets.insert(Secret::Key(entry.clone()));
                listing.add_key(&Filed::of(&entry), now);
                self.index.keys.insert(entry);
                (key, plaintext)
            })
            .collect())
    }

    fn live_user(&self, id: &str) -> Result<Arc<UserEntry>, EngineError> {
        match self.index.users.get(id) {
            Some(u) if u.status() != UserStatus::Deleted => Ok(u.clone()),
            _ => Err(EngineError::NotFound("user")),
        }
    }

    /// An API key with its live counters folded in.
    pub fn key(&self, id: &str) -> Result<(ApiKey, Usage), EngineError> {
        let e = self.index.keys.get(id).ok_or(EngineError::NotFound("key"))?;
        let record = self.store.get(Table::Keys, id)?.ok_or(EngineError::NotFound("key"))?;
        let mut one = [(record, key_usage(&e.counters))];
        self.cluster_remaining(&mut one);
        let [key] = one;
        Ok(key)
    }

    /// A page of the API keys of a team (or of one user of it), active (enabled
    /// and not expired at `now`) or not, in id order, with live counters:
    /// O(log n + limit + offset) in the listing.
    #[allow(clippy::too_many_arguments)]
    pub fn keys_page(
        &self,
        team_id: &str,
        user_id: Option<&str>,
        active: bool,
        now: Millis,
        cursor: Cursor<'_>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<(ApiKey, Usage)>, EngineError> {
        let page = match self.listing.lock().keys_of(team_id, user_id) {
            Some(sets) => page_of(sets.with_status(active, now), cursor, offset, limit),
            None => Page { items: Vec::new(), total: 0, more_before: false, more_after: false },
        };
        let mut keys = Vec::with_capacity(page.items.len());
        for id in &page.items {
            // Deleted since the ids were taken: left out of the page.
            let Some(e) = self.index.keys.get(id.as_str()) else { continue };
            if e.team_id() != team_id {
                continue;
            }
            if let Some(record) = self.store.get::<ApiKey>(Table::Keys, id)? {
                keys.push((record, key_usage(&e.counters)));
            }
        }
        self.cluster_remaining(&mut keys);
        Ok(page.map(keys))
    }

    /// Every API key of a team, in id order, with live counters (the list
    /// route uses [`Engine::keys_page`]).
    pub fn keys(&self, team_id: &str) -> Result<Vec<(ApiKey, Usage)>, EngineError> {
        let mut entries: Vec<Arc<KeyEntry>> = self.index.keys.matching(|e| e.team_id() == team_id);
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        let mut v = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(record) = self.store.get::<ApiKey>(Table::Keys, &e.id)? {
                v.push((record, key_usage(&e.counters)));
            }
        }
        self.cluster_remaining(&mut v);
        Ok(v)
    }

    /// Changes an API key; the next verification sees the change.
    pub fn update_key(&self, id: &str, up: KeyUpdate) -> Result<ApiKey, EngineError> {
        // A past expiry is allowed (it expires the key now); a far one is not.
        if let Some(Some(at)) = up.expires_at
            && at.saturating_sub(now_ms()) > MAX_LIFETIME_MS
        {
            return invalid("expiresIn", format!("must be at most {MAX_LIFETIME_SECS} seconds (100 years) from now"));
        }
        let ips = up.whitelisted_ips.as_deref().map(parse_ips).transpose()?;
        let metadata = up.metadata.as_deref().map(check_metadata).transpose()?;
        if let Some(Some(n)) = &up.name {
            check_name("name", n)?;
        }
        let mut g = self.lock_admin()?;
        let old = self.index.keys.get(id).ok_or(EngineError::NotFound("key"))?;
        let mut k: ApiKey = self.store.get(Table::Keys, id)?.ok_or(EngineError::NotFound("key"))?;
        let (old_refill, old_record) = (k.refill, k.clone());
        if let Some(v) = up.name {
            k.name = v;
        }
        if let Some(v) = up.enabled {
            k.enabled = v;
        }
        if let Some(v) = up.expires_at {
            k.expires_at = v;
        }
        if let Some(v) = up.refill {
            k.refill = v;
        }
        if let Some(v) = up.rate_limit {
            k.rate_limit = v;
        }
        if let Some(v) = up.permissions {
            k.permissions = v;
        }
        if let Some(v) = metadata {
            k.metadata = v;
        }
        let ips = match ips {
            Some(parsed) => {
                k.whitelisted_ips = up.whitelisted_ips.unwrap_or_default();
                parsed
            }
            None => old.ips().to_vec(),
        };
        validate_limits(k.refill, k.rate_limit)?;
        if self.leasing() && k.refill != old_refill && up.remaining.is_none() {
            return invalid("refill", CLUSTER_REFILL);
        }
        // A refill refills remaining uses: a key without a limit on them has
        // nothing to refill (the verifier would count its uses from 0 and
        // refuse it until the first refill, while it shows as unlimited).
        if k.refill.is_some() && up.remaining.unwrap_or(k.remaining).is_none() {
            return invalid("refill", "a key with a refill needs remaining uses (set remaining, or remove the refill)");
        }
        let now = now_ms();
        k.updated_at = now;
        // Setting `remaining` starts a fresh counter. A new refill starts its
        // periods now with the uses left (a refill due under the old one
        // included): the stored period is counted in the old interval, so
        // carried over it could hold off refills for that many new intervals.
        // Otherwise the live counters carry over untouched. The rate-limit
        // window, request count and last use always carry over.
        let fresh = |remaining: u32| {
            let usage = Usage { remaining, period: 0, anchor: now, ..key_usage(&old.counters) };
            let mut c = counters(&usage, k.refill);
            c.window = old.counters.window.snapshot();
            // The rate-limit tokens carry over; the lease of uses starts empty.
            c.cluster = old.counters.cluster.as_ref().map(|o| {
                Box::new(crate::core::index::ClusterCounters { rate: o.rate.snapshot(), ..Default::default() })
            });
            Arc::new(c)
        };
        let leasing = self.leasing();
        let counters = match up.remaining {
            // Cluster mode: the new count is the cluster's; this node's
            // lease of the old one is void and it starts empty.
            Some(r) => {
                k.remaining = r;
                fresh(if leasing { 0 } else { r.unwrap_or(0) })
            }
            None if k.refill != old_refill => {
                fresh(remaining_at(&old_record, &key_usage(&old.counters), now).unwrap_or(0))
            }
            None => old.counters.clone(),
        };
        let mut b = Batch::default();
        b.put(Table::Keys, id, &k);
        b.put(Table::Usage, id, &key_usage(&counters));
        if up.remaining.is_some() {
            b.reset_credits(id, k.remaining);
        }
        self.commit(&mut g, b)?;
        let entry = key_entry(&self.index, &k, ips, old.user.clone(), old.user.role(), counters);
        self.index.secrets.insert(Secret::Key(entry.clone()));
        let mut listing = self.listing.lock();
        listing.remove_key(&Filed::of(&old));
        listing.add_key(&Filed::of(&entry), now);
        drop(listing);
        self.index.keys.insert(entry);
        Ok(k)
    }

    /// Deletes an API key; the next verification of it is `NOT_FOUND`.
    pub fn delete_key(&self, id: &str) -> Result<(), EngineError> {
        let mut g = self.lock_admin()?;
        let e = self.index.keys.get(id).ok_or(EngineError::NotFound("key"))?;
        let mut b = Batch::default();
        b.remove(Table::Keys, id);
        b.remove(Table::Usage, id);
        self.commit(&mut g, b)?;
        self.index.secrets.remove(&e.hash);
        self.index.keys.remove(id);
        self.listing.lock().remove_key(&Filed::of(&e));
        Ok(())
    }

    // ---- access tokens ----

    /// Creates a personal access token for a user; returns it and its plaintext.
    pub fn create_token(
        &self,
        user_id: &str,
        name: &str,
        token_type: &str,
        expires_in_days: Option<u32>,
    ) -> Result<(AccessToken, String), EngineError> {
        if name.is_empty() || name.chars().count() > 255 {
            return invalid("name", "must be 1 to 255 characters");
        }
        if !matches!(token_type, "personal" | "session" | "service") {
            return invalid("tokenType", "must be personal, session or service");
        }
        let now = now_ms();
        let expires_at = match expires_in_days {
            Some(0) => return invalid("expiresInDays", "must be at least 1"),
            Some(d) if d > MAX_LIFETIME_DAYS => {
                return invalid("expiresInDays", format!("must be at most {MAX_LIFETIME_DAYS} (100 years)"));
            }
            Some(d) => match u64::from(d).checked_mul(86_400_000).and_then(|ms| now.checked_add(ms)) {
                Some(at) => Some(at),
                None => return invalid("expiresInDays", format!("must be at most {MAX_LIFETIME_DAYS} (100 years)")),
            },
            None => None,
        };
        let mut g = self.lock_admin()?;
        let user = self.live_user(user_id)?;
        let s = secret::generate(&self.rng, ACCESS_TOKEN_PREFIX);
        let token = AccessToken {
            id: secret::new_uuid(&self.rng),
            team_id: user.team.id.to_string(),
            user_id: user.id.to_string(),
            name: name.to_owned(),
            token_type: token_type.to_owned(),
            token_prefix: s.start,
            hash: s.hash,
            expires_at,
            revoked_at: None,
            created_at: now,
        };
        self.commit_put(&mut g, Table::Tokens, &token.id, &token)?;
        let entry = token_entry(token.clone(), user, &Usage::default());
        self.index.secrets.insert(Secret::Token(entry.clone()));
        self.index.tokens.insert(token.id.clone(), entry);
        Ok((token, s.plaintext))
    }

    /// An access token with its live `last_used_at`.
    pub fn token(&self, id: &str) -> Result<(AccessToken, Millis), EngineError> {
        let e = self.index.tokens.get(id).map(|e| e.clone()).ok_or(EngineError::NotFound("token"))?;
        Ok((token_record(&e), e.last_used_at.load(Ordering::Relaxed)))
    }

    /// Every access token of a user, oldest first.
    pub fn tokens(&self, user_id: &str) -> Vec<(AccessToken, Millis)> {
        let mut v: Vec<_> = self
            .index
            .tokens
            .iter()
            .filter(|e| e.record.user_id == user_id)
            .map(|e| (token_record(&e), e.last_used_at.load(Ordering::Relaxed)))
            .collect();
        v.sort_by(|a, b| (a.0.created_at, &a.0.id).cmp(&(b.0.created_at, &b.0.id)));
        v
    }

    /// Revokes a token; the next verification of it is `REVOKED`.
    pub fn revoke_token(&self, id: &str) -> Result<(), EngineError> {
        let mut g = self.lock_admin()?;
        self.revoke_tokens(&mut g, |t| *t.id == *id).map(|_| ())
    }

    /// Revokes every live token of a user except `keep`; returns how many.
    pub fn revoke_all_tokens(&self, user_id: &str, keep: Option<&str>) -> Result<usize, EngineError> {
        let mut g = self.lock_admin()?;
        self.revoke_tokens(&mut g, |t| {
            t.record.user_id == user_id && Some(&*t.id) != keep && t.revoked_at.load(Ordering::Acquire) == 0
        })
    }

    fn revoke_tokens(&self, g: &mut AdminGuard<'_>, pick: impl Fn(&TokenEntry) -> bool) -> Result<usize, EngineError> {
        let picked: Vec<Arc<TokenEntry>> = self.index.tokens.iter().filter(|t| pick(t)).map(|t| t.clone()).collect();
        let now = now_ms();
        let mut b = Batch::default();
        for t in &picked {
            let mut rec = token_record(t);
            rec.revoked_at.get_or_insert(now);
            b.put(Table::Tokens, &t.id, &rec);
        }
        self.commit(g, b)?;
        for t in &picked {
            let _ = t.revoked_at.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        Ok(picked.len())
    }

    // ---- quotas ----

    /// Consumes a team quota outside verification; `Err` carries the unchanged use.
    /// In cluster mode the quota is the cluster's: one statement in
    /// PostgreSQL, and an error (`Unavailable`) while it cannot be reached.
    pub fn consume_quota(&self, team_id: &str, amount: u64) -> Result<Result<u64, u64>, EngineError> {
        let team = self.index.teams.get(team_id).map(|t| t.clone()).ok_or(EngineError::NotFound("team"))?;
        let limit = self.tiers.load()[team.tier().index()].documents.get();
        if self.leasing() {
            return Ok(self.acquire_documents(&team, amount, limit)?);
        }
        let r = team.documents.try_consume(amount, limit.unwrap_or(u64::MAX));
        if r.is_ok() {
            self.index.mark_dirty(&team.dirty, self.strict, || Dirty::Team(team.clone()));
        }
        Ok(r)
    }

    /// Releases a team quota (never below zero); returns the new use. In
    /// cluster mode a release PostgreSQL cannot take now is kept (in this
    /// node's store) and retried until it is applied, once.
    pub fn release_quota(&self, team_id: &str, amount: u64) -> Result<u64, EngineError> {
        let team = self.index.teams.get(team_id).map(|t| t.clone()).ok_or(EngineError::NotFound("team"))?;
        if self.leasing() {
            return self.release_documents(&team, amount);
        }
        let used = team.documents.release(amount);
        self.index.mark_dirty(&team.dirty, self.strict, || Dirty::Team(team.clone()));
        Ok(used)
    }

    /// Where a team stands against its tier: the limits in force and what it
    /// uses now.
    pub fn team_standing(&self, team_id: &str) -> Result<TeamStanding, EngineError> {
        let team = self.index.teams.get(team_id).map(|t| t.clone()).ok_or(EngineError::NotFound("team"))?;
        let limits = self.tiers.load()[team.tier().index()];
        let members = self.users_of(team_id).iter().filter(|u| u.status() != UserStatus::Deleted).count() as u64;
        let minute = crate::core::verify::MINUTE_US;
        let local = || u64::from(team.minute.count(minute, now_us()));
        let requests_this_minute = match (limits.requests_per_minute.get(), self.cluster()) {
            (None, _) => None,
            // Cluster mode: what the nodes took of the cluster's minute.
            (Some(_), Some(c)) => Some(c.window_used(team_id, minute / 1000).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cluster: the team's minute shown as this node's");
                local()
            })),
            (Some(_), None) => Some(local()),
        };
        Ok(TeamStanding { limits, members, documents: self.documents_used(&team), requests_this_minute })
    }

    /// Documents used by a team.
    pub fn quota_used(&self, team_id: &str) -> Result<u64, EngineError> {
        let team = self.index.teams.get(team_id).map(|t| t.clone()).ok_or(EngineError::NotFound("team"))?;
        Ok(self.documents_used(&team))
    }

    /// Documents used by `team`: the cluster's count in cluster mode (this
    /// node's last answer while PostgreSQL cannot be reached).
    fn documents_used(&self, team: &TeamEntry) -> u64 {
        if let Some(c) = self.cluster() {
            match c.documents_used(&team.id) {
                Ok(used) => team.documents.set(used),
                Err(e) => tracing::warn!(error = %e, "cluster: documents shown as this node last knew them"),
            }
        }
        team.documents.used()
    }
}

/// A team's limits and use ([`Engine::team_standing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TeamStanding {
    /// The tier's limits in force.
    pub limits: TierLimits,
    /// Users of the team, deleted ones not counted.
    pub members: u64,
    /// Documents of the quota in use.
    pub documents: u64,
    /// Verifications counted in the current minute; `None` when the tier has
    /// no per-minute limit (nothing is counted then).
    pub requests_this_minute: Option<u64>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// An argon2id hash (default parameters) of a random password, verified against
/// when the user does not exist so that a login takes as long either way.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut password = [0u8; 16];
    let filled = rng.fill(&mut salt).and_then(|()| rng.fill(&mut password));
    SaltString::encode_b64(&salt)
        .ok()
        .filter(|_| filled.is_ok())
        .and_then(|salt| argon2::Argon2::default().hash_password(&password, &salt).ok().map(|h| h.to_string()))
        .unwrap_or_default()
});

fn check_name(field: &'static str, s: &str) -> Result<(), EngineError> {
    if s.is_empty() || s.chars().count() > 255 || s.chars().any(char::is_control) {
        return invalid(field, "must be 1 to 255 characters with no control characters");
    }
    Ok(())
}

fn check_metadata(text: &str) -> Result<String, EngineError> {
    if text.len() > 16 * 1024 {
        return invalid("metadata", "larger than 16 KiB");
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => Ok(v.to_string()),
        _ => invalid("metadata", "must be a JSON object"),
    }
}

fn validate_limits(refill: Option<Refill>, rate: Option<RateLimit>) -> Result<(), EngineError> {
    if let Some(r) = refill
        && !(MIN_REFILL_INTERVAL_MS..=MAX_REFILL_INTERVAL_MS).contains(&r.interval_ms)
    {
        return invalid(
            "refillInterval",
            format!("must be between {MIN_REFILL_INTERVAL_MS} ms and {MAX_REFILL_INTERVAL_MS} ms (100 years)"),
        );
    }
    if let Some(r) = rate {
        if r.max == 0 {
            return invalid("rateLimitMax", "must be at least 1");
        }
        if r.max > WINDOW_MAX_REQUESTS {
            return invalid("rateLimitMax", format!("must be at most {WINDOW_MAX_REQUESTS} (requests per window)"));
        }
        if !(1..=MAX_RATE_WINDOW_MS).contains(&r.window_ms) {
            return invalid(
                "rateLimitTimeWindow",
                format!("must be between 1 ms and {MAX_RATE_WINDOW_MS} ms (366 days)"),
            );
        }
    }
    Ok(())
}

/// Parses an allowlist: IP addresses (as /32 or /128) and CIDR blocks.
pub fn parse_ips<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpNet>, EngineError> {
    if list.len() > 1000 {
        return invalid("whitelistedIPs", "at most 1000 entries");
    }
    list.iter()
        .map(|s| {
            let s = s.as_ref().trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .or_else(|_| invalid("whitelistedIPs", format!("{s:?} is not an IP address or CIDR block")))
        })
        .collect()
}

fn counters(u: &Usage, refill: Option<Refill>) -> KeyCounters {
    // `period` is stored in full; the atomic keeps its low 32 bits.
    let period = refill.map_or(0, |_| u.period as u32);
    KeyCounters {
        uses: crate::core::limits::Uses::new(u.remaining, period),
        window: Default::default(),
        request_count: AtomicU64::new(u.request_count),
        last_used_at: AtomicU64::new(u.last_used_at),
        dirty: AtomicBool::new(false),
        anchor_ms: u.anchor,
        cluster: None,
    }
}

fn key_usage(c: &KeyCounters) -> Usage {
    let (period, remaining) = c.uses.load();
    Usage {
        remaining,
        period: u64::from(period),
        anchor: c.anchor_ms,
        request_count: c.request_count.load(Ordering::Relaxed),
        last_used_at: c.last_used_at.load(Ordering::Relaxed),
    }
}

/// Remaining uses a key shows at `now`, counting a refill that is due.
pub fn remaining_at(key: &ApiKey, usage: &Usage, now: Millis) -> Option<u32> {
    key.remaining?;
    match key.refill {
        Some(r) if u64::from(period_of(r, usage.anchor, now)) > usage.period => Some(r.amount),
        _ => Some(usage.remaining),
    }
}

/// The index entry of a key owned by `user`, whose role is `role`: the
/// entry's grant is the key's permissions within that role.
fn key_entry(
    index: &Index,
    record: &ApiKey,
    ips: Vec<IpNet>,
    user: Arc<UserEntry>,
    role: Role,
    counters: Arc<KeyCounters>,
) -> Arc<KeyEntry> {
    let hot = KeyHot::of(record);
    let permissions = index.intern(PermSet::new(&record.permissions.intersect(role.grant())));
    let policy = index.policy(permissions, ips, &hot);
    Arc::new(KeyEntry::new(counters, user, policy, &hot, &record.id, record.hash))
}

fn token_entry(record: AccessToken, user: Arc<UserEntry>, usage: &Usage) -> Arc<TokenEntry> {
    Arc::new(TokenEntry {
        id: record.id.as_str().into(),
        revoked_at: AtomicU64::new(record.revoked_at.unwrap_or(0)),
        last_used_at: AtomicU64::new(usage.last_used_at),
        request_count: AtomicU64::new(usage.request_count),
        dirty: AtomicBool::new(false),
        user,
        record,
    })
}

fn token_record(e: &TokenEntry) -> AccessToken {
    let mut r = e.record.clone();
    let revoked = e.revoked_at.load(Ordering::Acquire);
    r.revoked_at = (revoked != 0).then_some(revoked);
    r
}

/// The JWT settings `config` asks for, with the key files read (and the
/// default key generated in the data directory when no key is configured).
pub fn jwt_settings(config: &Config) -> Result<JwtSettings, EngineError> {
    let j = &config.jwt;
    let mut keys: Vec<JwtKeyConfig> = j.load_keys()?;
    if keys.is_empty() {
        keys.push(default_jwt_key(&config.data)?);
    }
    let signing_kid = match &j.signing_kid {
        Some(k) => k.clone(),
        None => keys
            .iter()
            .find(|k| k.private_key_pem.is_some() || k.secret.is_some())
            .map(|k| k.kid.clone())
            .ok_or_else(|| ConfigError("jwt.keys: no key can sign (none has a private key or secret)".into()))?,
    };
    Ok(JwtSettings {
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        leeway_secs: j.leeway_secs,
        ttl_secs: j.ttl_secs,
        max_lifetime_secs: j.max_lifetime_secs,
        max_token_bytes: j.max_token_bytes,
        cache_capacity: j.cache_capacity,
        signing_kid,
        keys,
    })
}

/// The Ed25519 key generated on first start (0600 in the data directory).
fn default_jwt_key(data: &Path) -> Result<JwtKeyConfig, EngineError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join(DEFAULT_JWT_KEY_FILE);
    let pem = match std::fs::read_to_string(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pem = JwtKeys::generate_ed25519_pkcs8_pem();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(pem.as_bytes()).and_then(|()| f.sync_all()).map(|()| f));
            if let Err(e) = f.as_mut() {
                return Err(StoreError::Db(format!("cannot write {}: {e}", path.display())).into());
            }
            pem
        }
        Err(e) => return Err(StoreError::Db(format!("cannot read {}: {e}", path.display())).into()),
    };
    let kid = format!("ed-{}", hex8(&secret::sha256(pem.as_bytes())));
    Ok(JwtKeyConfig {
        kid,
        alg: crate::core::jwt::JwtAlg::EdDSA,
        secret: None,
        private_key_pem: Some(pem),
        public_key_pem: None,
    })
}

fn hex8(b: &[u8]) -> String {
    b[..4].iter().map(|x| format!("{x:02x}")).collect()
}

/// An [`ApiKey`] record read in place: the same fields in the same order
/// (postcard is not self-describing), its strings borrowed from the record.
/// Startup reads a million of these; only what the index keeps is used.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct KeyView<'a> {
    id: &'a str,
    team_id: &'a str,
    user_id: &'a str,
    #[serde(borrow)]
    name: Option<&'a str>,
    prefix: &'a str,
    start: &'a str,
    hash: [u8; 32],
    enabled: bool,
    expires_at: Option<Millis>,
    remaining: Option<u32>,
    refill: Option<Refill>,
    rate_limit: Option<RateLimit>,
    permissions: Permissions,
    metadata: &'a str,
    #[serde(borrow)]
    whitelisted_ips: Vec<&'a str>,
    created_at: Millis,
    updated_at: Millis,
}

/// Reads the keys whose ids are in `span`, in id order (the index's maps are
/// filled afterwards, once their size is known).
fn load_keys(
    store: &Store,
    index: &Index,
    with_stats: &(dyn Fn(&str, Option<Usage>) -> Option<Usage> + Sync),
    span: &Span,
    cluster: bool,
) -> Result<Vec<Arc<KeyEntry>>, EngineError> {
    // Keys and usage records are both in id order: each key's usage record,
    // if it has one, is found by walking the usage records beside the keys,
    // and the records are decoded in place (no copy of their strings).
    let mut usage = store.iter_in::<Usage>(Table::Usage, span).peekable();
    let mut grants: HashMap<(Role, Permissions), Arc<PermSet>> = HashMap::new();
    let mut last = LastPolicy::default();
    let mut loaded = Vec::new();
    store.for_each_raw(Table::Keys, span, |id, raw| -> Result<(), EngineError> {
        let k: KeyView<'_> = decode_borrowed(raw)?;
        let mut own = None;
        loop {
            match usage.peek() {
                Some(Ok((uid, _))) if uid.as_str() < id => {
                    usage.next();
                }
                Some(Ok((uid, _))) if uid.as_str() == id => {
                    own = usage.next().and_then(Result::ok).map(|(_, u)| u);
                    break;
                }
                Some(Err(_)) => {
                    if let Some(Err(e)) = usage.next() {
                        return Err(e.into());
                    }
                }
                _ => break,
            }
        }
        let Some(user) = index.users.get(k.user_id).map(|u| u.clone()) else {
            tracing::warn!(key = %id, "key of a missing user skipped");
            return Ok(());
        };
        let ips = parse_ips(&k.whitelisted_ips)?;
        let u = match with_stats(id, own) {
            // Statistics only (a shard entry without a usage record): the
            // counters start as at creation.
            Some(u) if u.anchor == 0 => {
                Usage { remaining: k.remaining.unwrap_or(0), anchor: k.created_at, period: 0, ..u }
            }
            Some(u) => u,
            None => Usage { remaining: k.remaining.unwrap_or(0), anchor: k.created_at, ..Usage::default() },
        };
        let role = user.role();
        let permissions = match grants.entry((role, k.permissions)) {
            std::collections::hash_map::Entry::Occupied(o) => o.get().clone(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let set = index.intern(PermSet::new(&v.key().1.intersect(role.grant())));
                v.insert(set).clone()
            }
        };
        let hot =
            KeyHot::new(k.expires_at, k.rate_limit, k.refill, k.enabled, k.remaining.is_some() || k.refill.is_some());
        let policy = last.get(index, KeyPolicy::new(permissions, ips, &hot));
        let entry = loaded_key_entry(id, user, hot, policy, k.hash, &u, cluster);
        loaded.push(entry);
        Ok(())
    })?;
    Ok(loaded)
}

/// A key's index entry from its parts as a start reads them (a store
/// record or the key image).
#[allow(clippy::too_many_arguments)]
fn loaded_key_entry(
    id: &str,
    user: Arc<UserEntry>,
    hot: KeyHot,
    policy: Arc<KeyPolicy>,
    hash: [u8; 32],
    u: &Usage,
    cluster: bool,
) -> Arc<KeyEntry> {
    let counters = Arc::new(KeyCounters { cluster: cluster.then(Box::default), ..counters(u, hot.refill()) });
    Arc::new(KeyEntry::new(counters, user, policy, &hot, id, hash))
}

/// Reads the keys of `img`, one section per job, in id order.
fn load_image_keys(
    index: &Index,
    img: &image::Image,
    threads: usize,
    cluster: bool,
) -> Result<(Vec<LoadedKeys>, ThreadShares), EngineError> {
    let refs = img.refs().map_err(|why| StoreError::Db(format!("key image: {why}")))?;
    let users: Vec<Option<Arc<UserEntry>>> =
        refs.users.iter().map(|id| index.users.get(id.as_ref()).map(|u| u.clone())).collect();
    let (parts, shares) = in_turns(img.sections(), threads, |i| {
        let mut grants: HashMap<(Role, u32), Arc<PermSet>> = HashMap::new();
        let mut last = LastPolicy::default();
        let mut out = Vec::new();
        img.for_each_in(i, |k| -> Result<(), EngineError> {
            let Some(user) = users.get(k.user as usize).cloned().flatten() else {
                tracing::warn!(key = %k.id, "key of a missing user skipped");
                return Ok(());
            };
            let Some(grant) = refs.grants.get(k.grant as usize) else {
                return Err(StoreError::Db(format!("key image: key {} names grant {}", k.id, k.grant)).into());
            };
            let role = user.role();
            let permissions = grants
                .entry((role, k.grant))
                .or_insert_with(|| index.intern(PermSet::new(&grant.intersect(role.grant()))))
                .clone();
            let hot = KeyHot::new(k.expires_at, k.rate_limit, k.refill, k.enabled, k.counted);
            let policy = last.get(index, KeyPolicy::new(permissions, parse_ips(&k.ips)?, &hot));
            out.push(loaded_key_entry(&k.id, user, hot, policy, k.hash, &k.usage, cluster));
            Ok(())
        })?;
        Ok(out)
    });
    Ok((parts.into_iter().collect::<Result<_, _>>()?, shares))
}

/// The index and the listings of the store's records; with `cluster`,
/// every key's counters have (empty) leases.
fn load_index(store: &Store, cluster: bool, data: &Path) -> Result<(Index, Listing, bool), EngineError> {
    let mut index = Index::default();
    let team_usage: HashMap<String, u64> = store.scan(Table::TeamUsage)?.into_iter().collect();
    for (id, t) in store.scan::<Team>(Table::Teams)? {
        let used = team_usage.get(&id).copied().unwrap_or(0);
        index.teams.insert(id.clone(), Arc::new(TeamEntry::new(&id, t.tier, used).in_cluster(cluster)));
    }
    for (id, u) in store.scan::<User>(Table::Users)? {
        let Some(team) = index.teams.get(&u.team_id).map(|t| t.clone()) else {
            tracing::warn!(user = %id, team = %u.team_id, "user of a missing team skipped");
            continue;
        };
        index.usernames.insert(u.username.clone(), id.clone());
        // Before milliseconds, `revoked_before` was kept in seconds.
        let revoked_before =
            if u.revoked_before < 100_000_000_000 { u.revoked_before.saturating_mul(1000) } else { u.revoked_before };
        index.users.insert(id.clone(), Arc::new(UserEntry::new(&id, team, u.role, u.status, revoked_before)));
    }
    // Statistics live in shard records (written on the statistics interval) and,
    // for counted keys, in their usage record too: the larger figure is newer.
    let mut stats: HashMap<String, (u64, u64)> = HashMap::new();
    for (_, shard) in store.scan::<Vec<Stat>>(Table::Stats)? {
        for s in shard {
            let e = stats.entry(s.id).or_default();
            e.0 = e.0.max(s.request_count);
            e.1 = e.1.max(s.last_used_at);
        }
    }
    if let Some(prefixes) = store.get::<Vec<String>>(Table::Meta, ADOPTED_PREFIXES)? {
        index.any_adopted.store(!prefixes.is_empty(), Ordering::Release);
        index.adopted_prefixes.store(Arc::new(prefixes));
    }
    let mut listing = Listing::default();
    for t in index.teams.iter() {
        listing.add_team(t.key());
    }
    for u in index.users.iter() {
        listing.add_user(&u.team.id, u.key());
    }
    let with_stats = |id: &str, usage: Option<Usage>| match stats.get(id) {
        None => usage,
        Some(&(request_count, last_used_at)) => {
            let u = usage.unwrap_or_default();
            Some(Usage {
                request_count: u.request_count.max(request_count),
                last_used_at: u.last_used_at.max(last_used_at),
                ..u
            })
        }
    };
    // The keys are read in spans of ids, one thread per core: each walks
    // its span of keys and the same span of usage records in id order.
    // The spans are more than the threads, which take the next one left
    // when done with one: `Store::split` cuts where ids would be even, and
    // time-ordered ids are not when keys were made at an uneven rate (an
    // import slowed down part of the way): with one span per thread, one
    // thread read 640,000 of 1M imported keys while the other waited.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    let started = std::time::Instant::now();
    // The key image, when the store has not changed since it was written
    // (one host only: cluster mode starts from the cluster's snapshot).
    let img = match cluster {
        true => None,
        false => image::open(data, store.generation()?).unwrap_or_else(|why| {
            tracing::warn!(%why, "key image not used: reading the store");
            None
        }),
    };
    let from_image = match img.as_ref().map(|img| load_image_keys(&index, img, threads, cluster)) {
        Some(Ok(read)) => Some(read),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "key image unreadable: reading the store");
            None
        }
        None => None,
    };
    let image_used = from_image.is_some();
    let (keys, per_thread, spans) = match from_image {
        Some((keys, per_thread)) => (keys, per_thread, img.as_ref().map_or(0, image::Image::sections)),
        None => {
            let spans = store.split(Table::Keys, threads * 8)?;
            let (loaded, per_thread) =
                in_turns(spans.len(), threads, |i| load_keys(store, &index, &with_stats, &spans[i], cluster));
            (loaded.into_iter().collect::<Result<Vec<_>, _>>()?, per_thread, spans.len())
        }
    };
    let read_ms = started.elapsed().as_millis();
    // Maps made at their final size are filled without a rehash, the parts
    // shared between the threads the same way.
    let n: usize = keys.iter().map(Vec::len).sum();
    let all = || keys.iter().flatten().cloned();
    index.secrets = crate::core::index::SecretMap::from_keys(n, all());
    index.keys = crate::core::index::KeyMap::from_iter(n, all());
    // The spans are in id order, so the keys are too: each listing set is
    // built in one pass.
    let filled_ms = started.elapsed().as_millis();
    listing.add_sorted_keys(keys.iter().flatten().map(Filed::of), now_ms());
    drop(keys);
    // What the start spent where (BENCHMARKS.md, "A million keys"): each
    // thread's spans and milliseconds of reading show whether the read was
    // shared evenly.
    tracing::info!(
        keys = n,
        from_image = image_used,
        spans,
        threads = ?per_thread,
        read_ms,
        maps_filled_ms = filled_ms,
        listed_ms = started.elapsed().as_millis(),
        "keys loaded"
    );
    for item in store.iter::<AccessToken>(Table::Tokens) {
        let (id, t) = item?;
        let Some(user) = index.users.get(&t.user_id).map(|u| u.clone()) else {
            continue;
        };
        let u = with_stats(&id, store.get::<Usage>(Table::Usage, &id)?).unwrap_or_default();
        let entry = token_entry(t.clone(), user, &u);
        index.secrets.insert(Secret::Token(entry.clone()));
        index.tokens.insert(id, entry);
    }
    let now = now_ms() / 1000;
    for (key, exp) in store.scan::<u64>(Table::RevokedJti)? {
        if exp >= now {
            let (team, jti) = key.split_once('\u{1f}').unwrap_or(("", &key));
            index.revoke_jti(jti, team);
        }
    }
    Ok((index, listing, image_used))
}

/// The keys one job of the start read, in id order.
type LoadedKeys = Vec<Arc<KeyEntry>>;

/// Each thread's jobs done and milliseconds busy, for the start's log line.
type ThreadShares = Vec<(usize, u128)>;

/// Runs `job(0..jobs)` on `threads` threads, each taking the next job not
/// yet taken; returns the results in job order, and each thread's jobs done
/// and milliseconds busy. A thread that panicked fails the jobs it held.
fn in_turns<T: Send>(
    jobs: usize,
    threads: usize,
    job: impl Fn(usize) -> Result<T, EngineError> + Sync,
) -> (Vec<Result<T, EngineError>>, ThreadShares) {
    let next = AtomicUsize::new(0);
    let mut done: Vec<Option<Result<T, EngineError>>> = (0..jobs).map(|_| None).collect();
    let mut per_thread = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let t = std::time::Instant::now();
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= jobs {
                            break;
                        }
                        mine.push((i, job(i)));
                    }
                    (mine, t.elapsed().as_millis())
                })
            })
            .collect();
        for h in handles {
            if let Ok((mine, ms)) = h.join() {
                per_thread.push((mine.len(), ms));
                for (i, r) in mine {
                    done[i] = Some(r);
                }
            }
        }
    });
    let results = done
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Db("index load: a thread panicked".into()).into())))
        .collect();
    (results, per_thread)
}

/// Queues the statistics shards that hold a credential whose statistics
/// changed: each shard record is rebuilt from the index (every key and token
/// hashing to it), so a flush costs one write per touched shard, not one per
/// credential. The popped items go to `taken` so that a failed write can
/// queue them again.
fn write_stat_shards(index: &Index, batch: &mut Batch, taken: &mut Vec<Dirty>) {
    let mut touched = [false; STAT_SHARDS];
    let queued = index.stats_dirty.len();
    for d in std::iter::from_fn(|| index.stats_dirty.pop()).take(queued) {
        // Cleared before the counters are read below: a later change queues again.
        let shard = match &d {
            Dirty::Key(e) => {
                e.counters.dirty.swap(false, Ordering::AcqRel);
                stat_shard(&e.id)
            }
            Dirty::Token(t) => {
                t.dirty.swap(false, Ordering::AcqRel);
                stat_shard(&t.id)
            }
            Dirty::Team(t) => {
                t.dirty.swap(false, Ordering::AcqRel);
                continue;
            }
        };
        touched[shard] = true;
        taken.push(d);
    }
    if !touched.contains(&true) {
        return;
    }
    let mut shards: Vec<Vec<Stat>> = vec![Vec::new(); STAT_SHARDS];
    let mut add = |id: &str, request_count: u64, last_used_at: u64| {
        let shard = stat_shard(id);
        if touched[shard] && request_count > 0 {
            shards[shard].push(Stat { id: id.to_owned(), request_count, last_used_at });
        }
    };
    index.keys.for_each(|k| {
        let c = &k.counters;
        add(&k.id, c.request_count.load(Ordering::Relaxed), c.last_used_at.load(Ordering::Relaxed));
    });
    for t in index.tokens.iter() {
        add(&t.id, t.request_count.load(Ordering::Relaxed), t.last_used_at.load(Ordering::Relaxed));
    }
    for (shard, stats) in shards.iter().enumerate() {
        if touched[shard] {
            batch.put(Table::Stats, &format!("{shard:02x}"), stats);
        }
    }
}

/// Creates the data directory with mode 0700 if it does not exist: it holds the
/// hashes of every secret, the audit log and the JWT signing key. An existing
/// directory keeps the mode its owner gave it.
fn create_data_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let err = |e: std::io::Error| StoreError::Db(format!("cannot create {}: {e}", path.display()));
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Writes every queued counter change; advances the durable generation.
fn flush_counters(index: &Index, store: &Store, durable: &Durable, stats: bool) -> Result<(), StoreError> {
    let generation = index.flushes_started.fetch_add(1, Ordering::SeqCst) + 1;
    let mut batch = Batch::default();
    let mut taken = Vec::new();
    // Every item popped has its flag cleared and its counters read after that,
    // even when the same counters were already written in this loop: an item
    // queued again meanwhile stands for a change made after that first read,
    // and skipping it would leave the flag set with nothing queued, so the
    // counters would never be written again. The loop takes only what was
    // queued when it started, so a hot key re-queued on every verification
    // cannot keep one flush from finishing.
    let fast = index.dirty.len();
    if stats {
        write_stat_shards(index, &mut batch, &mut taken);
    }
    for d in std::iter::from_fn(|| index.dirty.pop()).take(fast) {
        match &d {
            Dirty::Key(e) => {
                let c = &e.counters;
                c.dirty.swap(false, Ordering::AcqRel);
                // Keys deleted since are not written back.
                if index.keys.get(e.id.as_str()).is_some_and(|cur| Arc::ptr_eq(&cur.counters, c)) {
                    batch.put(Table::Usage, &e.id, &key_usage(c));
                }
            }
            Dirty::Token(t) => {
                t.dirty.swap(false, Ordering::AcqRel);
                if index.tokens.contains_key(&*t.id) {
                    let u = Usage {
                        request_count: t.request_count.load(Ordering::Relaxed),
                        last_used_at: t.last_used_at.load(Ordering::Relaxed),
                        ..Usage::default()
                    };
                    batch.put(Table::Usage, &t.id, &u);
                }
            }
            Dirty::Team(t) => {
                t.dirty.swap(false, Ordering::AcqRel);
                if index.teams.contains_key(&*t.id) {
                    batch.put(Table::TeamUsage, &t.id, &t.documents.used());
                }
            }
        }
        taken.push(d);
    }
    if let Err(e) = store.apply(batch, true) {
        durable.failures.fetch_add(1, Ordering::Relaxed);
        // Put everything back so the next attempt writes it.
        for d in taken {
            let flag = match &d {
                Dirty::Key(e) => &e.counters.dirty,
                Dirty::Token(t) => &t.dirty,
                Dirty::Team(t) => &t.dirty,
            };
            flag.store(true, Ordering::Release);
            index.dirty.push(d);
        }
        return Err(e);
    }
    let mut done = durable.done.lock();
    *done = (*done).max(generation);
    drop(done);
    durable.cond.notify_all();
    durable.notify.notify_waiters();
    Ok(())
}

fn flusher(
    index: &Index,
    store: &Store,
    durable: &Durable,
    stop: &AtomicBool,
    interval: Duration,
    stats_interval: Duration,
) {
    let mut last_stats = std::time::Instant::now();
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(interval);
        let stats = last_stats.elapsed() >= stats_interval;
        if stats {
            last_stats = std::time::Instant::now();
        }
        if let Err(e) = flush_counters(index, store, durable, stats) {
            tracing::error!(error = %e, "counter flush failed; retrying");
        }
        // The changes a burst of admin writes left in the maps' deltas are
        // folded once a tick passed without one (ARCHITECTURE.md, "The
        // index maps"), so that lookups skip the delta again.
        index.secrets.fold_if_quiet();
        index.keys.fold_if_quiet();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KeyView` reads exactly what `ApiKey` writes: a field added to one and
    /// not the other fails here, not on a daemon's start.
    #[test]
    fn key_view_reads_every_field_of_a_stored_key() {
        let mut perms = std::collections::BTreeMap::new();
        perms.insert("docs".to_owned(), vec!["read".to_owned(), "update".to_owned()]);
        let k = ApiKey {
            id: "key_abc".into(),
            team_id: "team_x".into(),
            user_id: "user_y".into(),
            name: Some("name".into()),
            prefix: "sk_live".into(),
            start: "sk_live_ab".into(),
            hash: [7; 32],
            enabled: false,
            expires_at: Some(99),
            remaining: Some(5),
            refill: Some(Refill { amount: 5, interval_ms: 60_000 }),
            rate_limit: Some(RateLimit { max: 3, window_ms: 1000 }),
            permissions: Permissions(perms),
            metadata: r#"{"a":1}"#.into(),
            whitelisted_ips: vec!["10.0.0.0/8".into(), "::1".into()],
            created_at: 11,
            updated_at: 12,
        };
        let bytes = postcard::to_allocvec(&k).unwrap();
        let v: KeyView<'_> = postcard::from_bytes(&bytes).unwrap();
        let back = ApiKey {
            id: v.id.into(),
            team_id: v.team_id.into(),
            user_id: v.user_id.into(),
            name: v.name.map(Into::into),
            prefix: v.prefix.into(),
            start: v.start.into(),
            hash: v.hash,
            enabled: v.enabled,
            expires_at: v.expires_at,
            remaining: v.remaining,
            refill: v.refill,
            rate_limit: v.rate_limit,
            permissions: v.permissions,
            metadata: v.metadata.into(),
            whitelisted_ips: v.whitelisted_ips.iter().map(|s| (*s).to_owned()).collect(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        };
        assert_eq!(back, k);
    }
}
