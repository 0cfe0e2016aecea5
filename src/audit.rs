//! The audit log: who did what to which object, when, and with what outcome,
//! for every admin API call and every denied verification that names a known
//! credential. What names no known credential is counted, and only sampled.
//!
//! Events live in the store's `Audit` table under `<team>/<micros>/<seq>`, the
//! time and sequence as fixed-width lowercase hex, so the ids of one team sort
//! by time: a team's page of events, its events older than the retention
//! cutoff, or its oldest events past [`AuditConfig::max_events_per_team`], are
//! one contiguous range scan. Events that belong to no team go to the
//! pseudo-team [`GLOBAL`], readable with the admin token, bounded the same way.
//!
//! Unattributed failures (no credential, or an unknown, malformed or
//! unverifiable one, on any interface; a login naming no known user) cost
//! nothing to send, so they are never stored one by one: each is counted in
//! `/metrics` (`tollgate_unattributed_denials_total{interface,code}`), and at
//! most [`AuditConfig::unattributed_samples_per_minute`] of them, over all
//! interfaces, are stored as samples, with no target (nothing the caller
//! presented is kept).
//!
//! Denied verifications come from the hot path, which must never wait on
//! disk: they go through a bounded channel to a writer thread, and when the
//! channel is full the event is dropped and counted ([`AuditLog::dropped`]).
//! The hot path sends only the credential's SHA-256 (never the secret); the
//! writer resolves it to a key or token, and thereby to a team, off the hot
//! path. Admin events are written directly: the admin path already waits on
//! the store. Targets are ids, cut to [`MAX_TARGET_BYTES`], and anything shaped
//! like a credential is replaced by a `[redacted …]` marker ([`clean_target`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::AuditConfig;
use crate::core::index::Secret;
use crate::core::limits::Micros;
use crate::core::model::Tier;
use crate::core::verify::{DenyCode, looks_like_jwt};
use crate::engine::{ACCESS_TOKEN_PREFIX, Engine, now_us};
use crate::metrics::{DenySource, Metrics};
use crate::store::{Batch, StoreError, Table};

/// Pseudo-team of events that belong to no team.
pub const GLOBAL: &str = "_global";
/// Denied verifications queued for the writer before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;
/// Most events the writer puts in one store batch.
const WRITE_BATCH: usize = 512;
/// How often the writer prunes events past their team's retention.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const DAY_US: Micros = 86_400_000_000;
const MINUTE_US: Micros = 60_000_000;
/// Longest target stored, in bytes; longer ones are cut (at a character boundary).
pub const MAX_TARGET_BYTES: usize = 64;
/// Events read per chunk when rewriting a team's events.
const SCRUB_CHUNK: usize = 1024;
/// Bits of the sampler's word holding the count of the current minute.
const SAMPLE_COUNT_BITS: u32 = 24;

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Microseconds since the epoch.
    pub at: Micros,
    /// The team it belongs to, or [`GLOBAL`].
    pub team: String,
    /// Who: `admin-token`, `user:<id>/api_key:<id>`, `api_key:<id>`, `unknown` …
    /// Ids only, never a secret.
    pub actor: String,
    /// What: an admin operation (`CreateKey`, `DeleteUser` …) or `verify`.
    pub action: String,
    /// The object acted on (an id), or empty.
    pub target: String,
    /// `success`, `failure` (an admin call refused or failed) or `denied` (a
    /// verification), with `detail` saying why.
    pub outcome: String,
    /// HTTP status of an admin call, or the deny code of a verification.
    pub detail: String,
    /// The HTTP request id of an admin call or login (`X-Request-Id`, kept
    /// or made by the server); empty for verifications, samples, and events
    /// stored before request ids were (record version 1).
    pub request_id: String,
}

/// An event as record version 1 stored it: without `request_id`.
#[derive(Deserialize)]
struct AuditEventV1 {
    at: Micros,
    team: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    detail: String,
}

impl crate::store::Versioned for AuditEvent {
    /// 2: with `request_id`.
    const VERSION: u8 = 2;

    fn decode_version(version: u8, body: &[u8]) -> Result<Self, String> {
        if version >= 2 {
            return crate::store::decode_body(body);
        }
        let AuditEventV1 { at, team, actor, action, target, outcome, detail } = crate::store::decode_body(body)?;
        Ok(AuditEvent { at, team, actor, action, target, outcome, detail, request_id: String::new() })
    }
}

/// A denied verification as the hot path hands it over: cheap to build.
pub struct Denied {
    /// When.
    pub at: Micros,
    /// SHA-256 of the credential when it is a well-formed key or token.
    pub hash: Option<[u8; 32]>,
    /// Whether the credential looked like a JWT.
    pub jwt: bool,
    /// The deny code.
    pub code: &'static str,
    /// What was asked of the credential, e.g. `verify`, `admin:CreateKey`.
    pub action: &'static str,
}

/// The audit log of one daemon.
pub struct AuditLog {
    engine: Arc<Engine>,
    tx: SyncSender<Denied>,
    dropped: AtomicU64,
    seq: AtomicU32,
    /// Set by `shutdown`: the writer drains the queue and exits.
    closing: AtomicBool,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Most events kept per team.
    max_per_team: u64,
    /// Unattributed failures stored per minute.
    samples_per_minute: u64,
    /// `(minute << SAMPLE_COUNT_BITS) | samples taken in it`.
    sampler: AtomicU64,
    sampled: AtomicU64,
    trimmed: AtomicU64,
    /// Events stored per team, to trim the oldest past `max_per_team`. Held
    /// while a team is trimmed, so two trims do not count one removal twice.
    counts: parking_lot::Mutex<HashMap<String, u64>>,
}

impl AuditLog {
    /// Starts the writer thread; it stops when the last `AuditLog` handle is
    /// dropped (after writing what is queued).
    pub fn start(engine: Arc<Engine>) -> std::io::Result<Arc<AuditLog>> {
        AuditLog::start_with(engine, &AuditConfig::default())
    }

    /// Like [`start`](Self::start), with the bounds of `config`. Counts the
    /// events already stored per team first (ids only, no decoding).
    pub fn start_with(engine: Arc<Engine>, config: &AuditConfig) -> std::io::Result<Arc<AuditLog>> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        engine
            .store()
            .for_each_id(Table::Audit, |id| {
                let team = id.split('/').next().unwrap_or_default();
                match counts.get_mut(team) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(team.to_owned(), 1);
                    }
                }
            })
            .map_err(std::io::Error::other)?;
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let log = Arc::new(AuditLog {
            engine,
            tx,
            dropped: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            writer: parking_lot::Mutex::new(None),
            max_per_team: config.max_events_per_team.max(1),
            samples_per_minute: u64::from(config.unattributed_samples_per_minute).min((1 << SAMPLE_COUNT_BITS) - 1),
            sampler: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            trimmed: AtomicU64::new(0),
            counts: parking_lot::Mutex::new(counts),
        });
        let weak = Arc::downgrade(&log);
        let handle = std::thread::Builder::new().name("tollgate-audit".into()).spawn(move || writer(&weak, &rx))?;
        *log.writer.lock() = Some(handle);
        Ok(log)
    }

    /// Writes what is queued and stops the writer; call before the engine's
    /// final flush so that the last denials are on disk. Blocks (briefly).
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }

    /// Queues a denied verification; never blocks. Returns false (and counts
    /// it) when the queue is full.
    pub fn denied(&self, d: Denied) -> bool {
        match self.tx.try_send(d) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Denied verifications dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Unattributed failures stored as samples so far.
    pub fn sampled(&self) -> u64 {
        self.sampled.load(Ordering::Relaxed)
    }

    /// Events removed to keep teams within `max_events_per_team`.
    pub fn trimmed(&self) -> u64 {
        self.trimmed.load(Ordering::Relaxed)
    }

    /// A denied verification on `source` (the socket, `/v1/verify`, `/auth`):
    /// one that names a known credential is queued for the writer (which
    /// files it under the credential's team); any other is counted in
    /// `metrics` and perhaps sampled. Never blocks; the hash is computed on
    /// the deny path only.
    pub fn verification_denied(
        &self,
        metrics: &Metrics,
        source: DenySource,
        credential: &str,
        code: DenyCode,
        at: Micros,
    ) {
        match attributable(credential, code) {
            Some(hash) => {
                self.denied(Denied { at, hash: Some(hash), jwt: false, code: code.as_str(), action: source.action() });
            }
            None => self.unattributed(metrics, source, Some(code), looks_like_jwt(credential), at),
        }
    }

    /// A failure that names no known credential (`code` `None`: none was
    /// presented): counted in `metrics`, and stored only if the sampler has
    /// room this minute, with no target.
    pub fn unattributed(&self, metrics: &Metrics, source: DenySource, code: Option<DenyCode>, jwt: bool, at: Micros) {
        metrics.unattributed(source, code);
        if self.take_sample(at) {
            let code = crate::metrics::unattributed_code(code);
            self.denied(Denied { at, hash: None, jwt, code, action: source.action() });
        }
    }

    /// Takes one of this minute's samples; false when they are used up.
    fn take_sample(&self, at: Micros) -> bool {
        if self.samples_per_minute == 0 {
            return false;
        }
        let minute = at / MINUTE_US;
        let mut cur = self.sampler.load(Ordering::Relaxed);
        loop {
            let (m, n) = (cur >> SAMPLE_COUNT_BITS, cur & ((1 << SAMPLE_COUNT_BITS) - 1));
            let next = if m == minute {
                if n >= self.samples_per_minute {
                    return false;
                }
                cur + 1
            } else if m < minute {
                (minute << SAMPLE_COUNT_BITS) | 1
            } else {
                // A clock that went back: this minute's samples were taken.
                return false;
            };
            match self.sampler.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.sampled.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Writes one event now (admin path), trimming its team to
    /// `max_events_per_team`. Not fsynced: the engine's next flush makes it
    /// durable, as for request counters.
    pub fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut b = Batch::default();
        b.put_versioned(Table::Audit, &self.id(event), event);
        self.engine.store().apply(b, false)?;
        self.added(&event.team, 1)
    }

    /// Counts `n` new events of `team` and removes its oldest past the bound.
    fn added(&self, team: &str, n: u64) -> Result<(), StoreError> {
        let mut counts = self.counts.lock();
        let count = counts.entry(team.to_owned()).or_insert(0);
        *count += n;
        if *count <= self.max_per_team {
            return Ok(());
        }
        let excess = usize::try_from(*count - self.max_per_team).unwrap_or(usize::MAX);
        let ids = self.engine.store().ids_range(Table::Audit, &format!("{team}/"), &format!("{team}/~"), excess)?;
        let mut b = Batch::default();
        for id in &ids {
            b.remove(Table::Audit, id);
        }
        self.engine.store().apply(b, false)?;
        // Fewer than expected means the count was high (events removed
        // elsewhere): what is left is the truth.
        *count = if ids.len() < excess { self.max_per_team.min(*count) } else { *count - ids.len() as u64 };
        self.trimmed.fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `username` from every event of `team` and of [`GLOBAL`]
    /// (a field that is the name, or `username:<name>` as logins were once
    /// recorded, becomes `user:<user_id>`): deleting a user anonymizes the
    /// log too. Returns how many events were rewritten.
    pub fn scrub_user(&self, team: &str, user_id: &str, username: &str) -> Result<usize, StoreError> {
        let tagged = format!("username:{username}");
        let replacement = format!("user:{user_id}");
        let mut n = 0;
        for t in [team, GLOBAL] {
            let mut from = format!("{t}/");
            let to = format!("{t}/~");
            loop {
                let chunk: Vec<(String, AuditEvent)> =
                    self.engine.store().scan_range_versioned(Table::Audit, &from, &to, false, SCRUB_CHUNK)?;
                let mut b = Batch::default();
                for (id, mut e) in chunk.iter().cloned() {
                    let mut changed = false;
                    for field in [&mut e.actor, &mut e.target, &mut e.detail] {
                        if *field == tagged || *field == username {
                            field.clone_from(&replacement);
                            changed = true;
                        }
                    }
                    if changed {
                        b.put_versioned(Table::Audit, &id, &e);
                        n += 1;
                    }
                }
                self.engine.store().apply(b, false)?;
                match chunk.last() {
                    Some((last, _)) if chunk.len() == SCRUB_CHUNK => from = format!("{last}\0"),
                    _ => break,
                }
            }
        }
        Ok(n)
    }

    fn id(&self, e: &AuditEvent) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}/{:016x}/{seq:08x}", e.team, e.at)
    }

    /// A page of `team`'s events, newest first, between `since` and `until`
    /// (microseconds, inclusive), strictly older than `cursor` (an id from a
    /// previous page), filtered by action and outcome. Returns the events with
    /// their ids, and whether more may follow.
    pub fn query(&self, q: &Query<'_>) -> Result<(Vec<(String, AuditEvent)>, bool), StoreError> {
        let from = format!("{}/{:016x}", q.team, q.since);
        let mut to = match q.cursor {
            Some(c) => format!("{}/{c}", q.team),
            None => format!("{}/{:016x}/~", q.team, q.until),
        };
        let mut out = Vec::new();
        // Filters are applied after the scan, so scan in chunks until the page
        // is full or the range is exhausted.
        loop {
            let chunk: Vec<(String, AuditEvent)> =
                self.engine.store().scan_range_versioned(Table::Audit, &from, &to, true, 256)?;
            let exhausted = chunk.len() < 256;
            if let Some((last, _)) = chunk.last() {
                to = last.clone();
            }
            for (id, e) in chunk {
                let keep = q.action.is_none_or(|a| e.action == a) && q.outcome.is_none_or(|o| e.outcome == o);
                if keep {
                    if out.len() == q.limit {
                        return Ok((out, true));
                    }
                    let short = id.strip_prefix(q.team).and_then(|s| s.strip_prefix('/')).unwrap_or(&id).to_owned();
                    out.push((short, e));
                }
            }
            if exhausted {
                return Ok((out, false));
            }
        }
    }

    /// Removes every team's events older than its tier's retention
    /// (`TierLimits::log_retention_days`; unlimited keeps all), and the
    /// [`GLOBAL`] events older than the Free tier's. Returns how many.
    pub fn prune(&self, now: Micros) -> Result<usize, StoreError> {
        let tiers = self.engine.tiers();
        let days = |t: Tier| tiers[t.index()].log_retention_days.get();
        let mut teams: Vec<(String, Option<u64>)> =
            self.engine.index().teams.iter().map(|e| (e.key().clone(), days(e.value().tier()))).collect();
        teams.push((GLOBAL.to_owned(), days(Tier::Free)));
        let mut n = 0;
        for (team, days) in teams {
            if let Some(d) = days {
                let cutoff = now.saturating_sub(d.saturating_mul(DAY_US));
                let mut counts = self.counts.lock();
                let removed = self.engine.store().remove_range(
                    Table::Audit,
                    &format!("{team}/"),
                    &format!("{team}/{cutoff:016x}"),
                )?;
                if let Some(c) = counts.get_mut(&team) {
                    *c = c.saturating_sub(removed as u64);
                }
                n += removed;
            }
        }
        Ok(n)
    }

    /// The team and actor (`api_key:<id>`, `access_token:<id>`) of a
    /// credential's SHA-256, through the index.
    pub fn owner_of(&self, hash: &[u8; 32]) -> Option<(String, String)> {
        self.engine.index().secrets.get(hash).map(|s| match s {
            Secret::Key(k) => (k.team_id().to_owned(), format!("api_key:{}", k.id)),
            Secret::Token(t) => (t.user.team.id.to_string(), format!("access_token:{}", t.id)),
        })
    }

    /// Turns a queued denial into an event: a hash is resolved to its key or
    /// token (and so its team) through the index; one no longer there (deleted
    /// since) is unattributed and stored only if the sampler has room. A
    /// denial queued without a hash was sampled already.
    fn resolve(&self, d: &Denied) -> Option<AuditEvent> {
        let (team, actor, target) = match d.hash {
            Some(h) => match self.owner_of(&h) {
                Some((team, actor)) => (team, actor.clone(), actor),
                None if self.take_sample(d.at) => (GLOBAL.to_owned(), "unknown".to_owned(), String::new()),
                None => return None,
            },
            None => {
                let who = if d.jwt { "jwt" } else { "unknown" };
                (GLOBAL.to_owned(), who.to_owned(), String::new())
            }
        };
        Some(AuditEvent {
            at: d.at,
            team,
            actor,
            action: d.action.to_owned(),
            target,
            outcome: "denied".to_owned(),
            detail: d.code.to_owned(),
            request_id: String::new(),
        })
    }
}

/// Filters of [`AuditLog::query`].
pub struct Query<'a> {
    /// Team (or [`GLOBAL`]).
    pub team: &'a str,
    /// Only this action.
    pub action: Option<&'a str>,
    /// Only this outcome.
    pub outcome: Option<&'a str>,
    /// Oldest time, microseconds.
    pub since: Micros,
    /// Newest time, microseconds.
    pub until: Micros,
    /// Page size.
    pub limit: usize,
    /// The last id of the previous page.
    pub cursor: Option<&'a str>,
}

fn writer(log: &std::sync::Weak<AuditLog>, rx: &Receiver<Denied>) {
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(d) => Some(d),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(log) = log.upgrade() else { return };
        let closing = log.closing.load(Ordering::Acquire);
        // While closing, take everything queued, not just one batch.
        let take = if closing { usize::MAX } else { WRITE_BATCH - 1 };
        if let Some(first) = first {
            let mut batch = Batch::default();
            let mut per_team: HashMap<String, u64> = HashMap::new();
            for d in std::iter::once(first).chain(rx.try_iter().take(take)) {
                if let Some(e) = log.resolve(&d) {
                    batch.put_versioned(Table::Audit, &log.id(&e), &e);
                    *per_team.entry(e.team).or_insert(0) += 1;
                }
            }
            match log.engine.store().apply(batch, false) {
                Ok(()) => {
                    for (team, n) in per_team {
                        if let Err(e) = log.added(&team, n) {
                            tracing::warn!(error = %e, "audit: cannot trim a team's events");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "audit: cannot write denied verifications"),
            }
        }
        if closing {
            return;
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            match log.prune(now_us()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "audit: pruned events past retention"),
                Err(e) => tracing::warn!(error = %e, "audit: prune failed"),
            }
        }
    }
}

/// The SHA-256 of `credential` when its denial names a known credential: a
/// well-formed key or access token that the verifier found (any code but
/// `MALFORMED` and `NOT_FOUND`). JWTs are never attributed here: the hot path
/// does not know whose a refused token is.
pub fn attributable(credential: &str, code: DenyCode) -> Option<[u8; 32]> {
    if matches!(code, DenyCode::Malformed | DenyCode::NotFound) || looks_like_jwt(credential) {
        return None;
    }
    crate::core::secret::parse(credential)
}

/// What an admin call's target may be stored as: credential-shaped values
/// (a tollgate secret, even with a bad checksum, the `tgadmin` admin token,
/// anything `is_admin_token` recognises, a JWT) are replaced by a
/// `[redacted …]` marker; anything else is cut to [`MAX_TARGET_BYTES`].
pub fn clean_target(target: &str, is_admin_token: impl Fn(&str) -> bool) -> String {
    if let Some(marker) = credential_marker(target) {
        return marker.to_owned();
    }
    if !target.is_empty() && is_admin_token(target) {
        return "[redacted admin token]".to_owned();
    }
    let mut end = target.len().min(MAX_TARGET_BYTES);
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    target[..end].to_owned()
}

/// The redaction marker of a credential-shaped string, or `None`.
pub fn credential_marker(s: &str) -> Option<&'static str> {
    if s.starts_with("tgadmin") {
        return Some("[redacted admin token]");
    }
    if looks_like_jwt(s) || s.starts_with("eyJ") {
        return Some("[redacted jwt]");
    }
    let shaped = crate::core::secret::parse(s).is_some()
        || s.rsplit_once('_').is_some_and(|(_, body)| {
            body.len() >= crate::core::secret::RANDOM_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if shaped {
        let token = s.strip_prefix(ACCESS_TOKEN_PREFIX).is_some_and(|r| r.starts_with('_'));
        return Some(if token { "[redacted access token]" } else { "[redacted api key]" });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ids_cut_short_and_credentials_are_redacted() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = crate::core::secret::generate(&rng, "tg").plaintext;
        let pat = crate::core::secret::generate(&rng, ACCESS_TOKEN_PREFIX).plaintext;
        let admin = crate::core::secret::generate(&rng, "tgadmin").plaintext;
        let no = |_: &str| false;
        assert_eq!(clean_target(&key, no), "[redacted api key]");
        let mut typo = key.clone();
        typo.pop();
        typo.push('0');
        assert_eq!(clean_target(&typo, no), "[redacted api key]", "a mistyped key is still a secret");
        assert_eq!(clean_target(&pat, no), "[redacted access token]");
        assert_eq!(clean_target(&admin, no), "[redacted admin token]");
        assert_eq!(clean_target("eyJhbGciOi.e30.sig", no), "[redacted jwt]");
        assert_eq!(clean_target("my-admin-token-0123456789", |t| t.starts_with("my-admin")), "[redacted admin token]");
        assert_eq!(clean_target("key_0123456789abcdefghij", no), "key_0123456789abcdefghij");
        assert_eq!(clean_target("user_AbCdEfGhIjKlMnOpQrSt", no), "user_AbCdEfGhIjKlMnOpQrSt");
        assert_eq!(clean_target(&"x".repeat(60_000), no).len(), MAX_TARGET_BYTES);
        assert_eq!(clean_target(&"é".repeat(100), no).len(), MAX_TARGET_BYTES);
        assert_eq!(clean_target("", no), "");
    }

    #[test]
    fn only_found_keys_and_tokens_are_attributable() {
        let key = crate::core::secret::generate(&aws_lc_rs::rand::SystemRandom::new(), "tg").plaintext;
        assert!(attributable(&key, DenyCode::Revoked).is_some());
        assert!(attributable(&key, DenyCode::NotFound).is_none());
        assert!(attributable("tg_nope", DenyCode::Revoked).is_none());
        assert!(attributable("eyJhbGciOi.e30.sig", DenyCode::Expired).is_none());
    }
}
