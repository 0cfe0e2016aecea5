//! The audit log: who did what to which object, when, and with what outcome,
//! for every admin API call and every denied verification.
//!
//! Events live in the store's `Audit` table under `<team>/<micros>/<seq>`, the
//! time and sequence as fixed-width lowercase hex, so the ids of one team sort
//! by time: a team's page of events, or its events older than the retention
//! cutoff, are one contiguous range scan. Events that belong to no team (an
//! unknown credential, a failed admin-token call with no target) go to the
//! pseudo-team [`GLOBAL`], readable with the admin token.
//!
//! Denied verifications come from the hot path, which must never wait on
//! disk: they go through a bounded channel to a writer thread, and when the
//! channel is full the event is dropped and counted ([`AuditLog::dropped`]).
//! The hot path sends only the credential's SHA-256 (never the secret); the
//! writer resolves it to a key or token, and thereby to a team, off the hot
//! path. Admin events are written directly: the admin path already waits on
//! the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::index::Secret;
use crate::core::limits::Micros;
use crate::core::model::Tier;
use crate::engine::{Engine, now_us};
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
}

impl AuditLog {
    /// Starts the writer thread; it stops when the last `AuditLog` handle is
    /// dropped (after writing what is queued).
    pub fn start(engine: Arc<Engine>) -> std::io::Result<Arc<AuditLog>> {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let log = Arc::new(AuditLog {
            engine,
            tx,
            dropped: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            writer: parking_lot::Mutex::new(None),
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

    /// Writes one event now (admin path). Not fsynced: the engine's next flush
    /// makes it durable, as for request counters.
    pub fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut b = Batch::default();
        b.put(Table::Audit, &self.id(event), event);
        self.engine.store().apply(b, false)
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
                self.engine.store().scan_range(Table::Audit, &from, &to, true, 256)?;
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
                n += self.engine.store().remove_range(
                    Table::Audit,
                    &format!("{team}/"),
                    &format!("{team}/{cutoff:016x}"),
                )?;
            }
        }
        Ok(n)
    }

    /// Turns a denied verification into an event, resolving the credential's
    /// hash to its key or token (and so its team) through the index.
    fn resolve(&self, d: &Denied) -> AuditEvent {
        let found = d.hash.and_then(|h| {
            self.engine.index().secrets.get(&h).map(|s| match s.value() {
                Secret::Key(k) => (k.record.team_id.clone(), format!("api_key:{}", k.id)),
                Secret::Token(t) => (t.user.team.id.to_string(), format!("access_token:{}", t.id)),
            })
        });
        let (team, actor) = found.unwrap_or_else(|| {
            let who = if d.jwt { "jwt" } else { "unknown" };
            (GLOBAL.to_owned(), who.to_owned())
        });
        AuditEvent {
            at: d.at,
            team,
            actor: actor.clone(),
            action: d.action.to_owned(),
            target: actor,
            outcome: "denied".to_owned(),
            detail: d.code.to_owned(),
        }
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
            for d in std::iter::once(first).chain(rx.try_iter().take(take)) {
                let e = log.resolve(&d);
                batch.put(Table::Audit, &log.id(&e), &e);
            }
            if let Err(e) = log.engine.store().apply(batch, false) {
                tracing::warn!(error = %e, "audit: cannot write denied verifications");
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
