//! The engine's side of cluster mode (ARCHITECTURE.md, "Cluster mode"): the
//! start from a snapshot, the changes of other nodes applied to the store and
//! the index in log order (the applier thread), and the leases of remaining
//! uses (the leaser thread). `src/cluster.rs` talks to PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::listing::Filed;
use super::{ADOPTED_PREFIXES, Engine, EngineError, counters, key_entry, key_usage, now_ms, parse_ips, token_entry};
use crate::cluster::{Change, Cluster, Returned};
use crate::core::index::{ClusterCounters, Id, KeyCounters, Secret, TeamEntry, UserEntry};
use crate::core::model::{AccessToken, ApiKey, Team, Usage, User};
use crate::store::{Batch, Op, Span, Store, StoreError, Table};

/// How long a node that found no uses left cluster-wide for a key waits
/// before it asks again (a lease returned meanwhile by a stopping node is
/// found after at most this long).
const DRY_MS: u64 = 1_000;
/// The first lease of a key on a node, before demand is known.
const FIRST_LEASE: u32 = 10;
/// Why a verification naming the `documents` quota is denied while
/// PostgreSQL cannot be reached.
const UNCOUNTED: &str = "the cluster's database cannot be reached: team documents cannot be acquired";
/// Why a following node loads a snapshot.
pub(super) const PRUNED: &str =
    "the change log no longer holds the changes after this node's position (pruned while it was away)";
/// The id, in the node's own table, of its position in the change log.
const POSITION: &str = "cluster_position";
/// How often a node that has nothing new to apply records again that it
/// read the whole log (the time a start from its local copy counts its
/// staleness from).
const POSITION_EVERY_MS: u64 = 1_000;

/// Where this node's store is in the cluster's change log, kept in its own
/// (not replicated) table and written in the same batch as the records it
/// describes: the last change applied, and when the node last read the
/// whole log up to it (it then had every change committed before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Position {
    /// The last change applied.
    pub(super) seq: i64,
    /// When (ms since the epoch) this node knew it had every change.
    pub(super) at_ms: u64,
}

impl Position {
    /// The write that records it.
    pub(super) fn op(self) -> Op {
        let mut b = Batch::default();
        b.put(Table::Node, POSITION, &self);
        b.into_parts().0.remove(0)
    }

    /// What the store says (`None`: it never followed a cluster).
    fn read(store: &Store) -> Result<Option<Position>, StoreError> {
        store.get(Table::Node, POSITION)
    }
}

/// The replicated tables in the order their records depend on each other
/// (a user needs its team, a key or token its user): records put in this
/// order, removed in the reverse.
const DEPENDENCY_ORDER: [Table; 6] =
    [Table::Meta, Table::Teams, Table::Users, Table::Keys, Table::Tokens, Table::RevokedJti];

/// What this node holds of the cluster.
pub(super) struct Replica {
    pub(super) cluster: Arc<Cluster>,
    /// The last change of the log applied to this node's store and index.
    pub(super) applied: AtomicI64,
    /// This node's leases: key id → what it knows of its lease.
    leases: Mutex<HashMap<Id, Held>>,
    /// Rate-limit windows this node holds tokens of: key id → the window's
    /// end on PostgreSQL's clock and on this node's (fixed at its first
    /// grant, so later grants of the same window add to the same tokens).
    /// Teams' minutes too, by team id.
    rate_windows: Mutex<HashMap<String, (i64, u64)>>,
    /// Leaser rounds completed, and the condition a verification waiting for
    /// a lease sleeps on.
    rounds: Mutex<u64>,
    round_done: Condvar,
    /// Wakes the applier: a change was announced (or the listener reconnected).
    wake: Arc<(Mutex<bool>, Condvar)>,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Last time (ms) this node knew it had every change: its listener was
    /// connected and a read of the log after that succeeded.
    current_at_ms: AtomicU64,
    /// Past `max_staleness_ms` with `on_stale = "refuse"`: verifications
    /// are refused.
    stale: AtomicBool,
    /// Document releases are kept in the store, waiting for PostgreSQL.
    pending_releases: AtomicBool,
    /// Whether this node applied the migrations and loaded a snapshot in
    /// this life (false after a start from its local copy while PostgreSQL
    /// was down, until it is back).
    joined: AtomicBool,
    /// When the position was last recorded in the store.
    position_at_ms: AtomicU64,
}

/// A lease of one key held by this node: its active part is the key's
/// `KeyCounters::uses`, its reserve is recorded in the lease row.
struct Held {
    /// The shared count's generation it was granted under.
    generation: i64,
    /// What this node holds in all (active + reserve) after a request:
    /// doubles while activations come within a second of each other,
    /// halves when one lasts over ten.
    size: u32,
    /// When uses were last activated.
    granted: Instant,
    /// The reserve the lease row recorded at the last answer (the row's is
    /// the one that counts: this steers only how much to ask for).
    reserve: u32,
    /// The refill period the active part is of (0 without a refill).
    period: i64,
}

/// How many uses a node activates at a time for a lease of `size`, and so
/// the most its active part holds (unless a verification's cost asks for
/// more): what a node killed loses of a key (ARCHITECTURE.md, "Cluster
/// mode").
fn chunk(size: u32) -> u32 {
    size.div_ceil(4).max(1)
}

impl Replica {
    /// Joins the cluster at start: applies the migrations and loads a
    /// consistent snapshot into `store`. When PostgreSQL cannot be reached,
    /// a node whose store holds a position (it followed the cluster before)
    /// starts from that local copy, degraded, its staleness counted from the
    /// position's time (so `on_stale` applies at once if that is older than
    /// `max_staleness_ms`); a node without one (a new data directory) has
    /// nothing to serve and does not start.
    pub(super) fn join(cluster: Arc<Cluster>, store: &Store) -> Result<Replica, EngineError> {
        let fresh = cluster.migrate().and_then(|applied| {
            for name in applied {
                tracing::info!(migration = %name, "cluster: schema migration applied");
            }
            cluster.snapshot()
        });
        match fresh {
            Ok((head, ops)) => {
                tracing::info!(node = %cluster.node(), seq = head, records = ops.len(), "cluster: snapshot loaded");
                let now = now_ms();
                load_snapshot(store, Position { seq: head, at_ms: now }, ops)?;
                Ok(Replica::new(cluster, Position { seq: head, at_ms: now }, true))
            }
            Err(StoreError::Unavailable(why)) => match Position::read(store)? {
                Some(p) => {
                    tracing::warn!(
                        node = %cluster.node(),
                        seq = p.seq,
                        behind_ms = now_ms().saturating_sub(p.at_ms),
                        error = %why,
                        "cluster: PostgreSQL cannot be reached: starting from this node's local copy (degraded; admin \
                         writes refused until it is back, cluster.on_stale applies past cluster.max_staleness_ms)"
                    );
                    let r = Replica::new(cluster, p, false);
                    r.check_staleness(false);
                    Ok(r)
                }
                None => Err(StoreError::Unavailable(format!(
                    "{why}; this node has no local copy of the cluster's records (its data directory never \
                     followed the cluster), so it cannot start before PostgreSQL can be reached"
                ))
                .into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    fn new(cluster: Arc<Cluster>, at: Position, joined: bool) -> Replica {
        Replica {
            cluster,
            applied: AtomicI64::new(at.seq),
            leases: Mutex::default(),
            rate_windows: Mutex::default(),
            rounds: Mutex::new(0),
            round_done: Condvar::new(),
            wake: Arc::default(),
            stop: AtomicBool::new(false),
            threads: Mutex::default(),
            current_at_ms: AtomicU64::new(at.at_ms),
            stale: AtomicBool::new(false),
            // The store is read once at start for releases kept before.
            pending_releases: AtomicBool::new(true),
            joined: AtomicBool::new(joined),
            position_at_ms: AtomicU64::new(at.at_ms),
        }
    }

    /// After a round of the applier: notes whether this node is current,
    /// and refuses or stops refusing verifications.
    fn check_staleness(&self, caught_up: bool) {
        let now = now_ms();
        if caught_up && self.cluster.health().listening.load(Ordering::Acquire) {
            self.current_at_ms.store(now, Ordering::Release);
        }
        let settings = self.cluster.settings();
        // Up to the moment its listener lost its connection, every change was
        // announced to this node, and read if the reads were succeeding then
        // (the applier reads at least every second).
        let current = self.current_at_ms.load(Ordering::Acquire);
        let lost = self.cluster.health().lost_at_ms.load(Ordering::Acquire);
        let since = if lost > current && lost - current <= 2_000 { lost } else { current };
        let behind = now.saturating_sub(since);
        let stale = settings.on_stale == crate::config::OnStale::Refuse && behind > settings.max_staleness_ms;
        if self.stale.swap(stale, Ordering::AcqRel) != stale {
            if stale {
                tracing::error!(
                    behind_ms = behind,
                    max_staleness_ms = settings.max_staleness_ms,
                    "cluster: this node may have missed changes for too long: verifications are refused until it \
                     catches up (cluster.on_stale = \"refuse\")"
                );
            } else {
                tracing::info!("cluster: caught up again; verifications are served");
            }
        }
    }

    /// Waits, at most until `deadline`, for the leaser round after `seen`.
    fn wait_round(&self, seen: u64, deadline: Instant) {
        let mut rounds = self.rounds.lock();
        while *rounds == seen && Instant::now() < deadline {
            self.round_done.wait_until(&mut rounds, deadline);
        }
    }
}

/// Replaces the replicated tables of `store` with a snapshot's records, in
/// one batch with the position they are at.
fn load_snapshot(store: &Store, at: Position, ops: Vec<Op>) -> Result<(), StoreError> {
    let mut all = Vec::new();
    for table in Table::REPLICATED {
        for id in store.raw_ids(table)? {
            all.push(Op { table: table.tag(), id, value: None });
        }
    }
    // A record of the snapshot removed above is put back: in a batch the
    // last write of a record wins.
    all.extend(ops);
    all.push(at.op());
    store.apply(Batch::from_ops(all), true)
}

impl Engine {
    /// Cluster mode: starts following the change log (the listener and the
    /// applier) and the leaser. Called once the engine is shared; nothing
    /// happens without `--postgres`.
    pub fn start_cluster(self: &Arc<Self>) -> Result<(), EngineError> {
        let Some(r) = &self.replica else { return Ok(()) };
        // Team documents are the cluster's: this node's entries show them
        // (they are read again on every acquire, release and admin read).
        match r.cluster.documents() {
            Ok(documents) => {
                let documents: HashMap<String, u64> = documents.into_iter().collect();
                for t in self.index.teams.iter() {
                    t.documents.set(documents.get(&*t.id).copied().unwrap_or(0));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: team documents shown as this node last knew them"),
        }
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::Db(format!("cannot start {name}: {e}")))
        };
        let weak = Arc::downgrade(self);
        let wake = r.wake.clone();
        let applier = spawn("tollgate-applier", Box::new(move || applier(&weak, &wake)))?;
        let weak = Arc::downgrade(self);
        let leaser = spawn("tollgate-leaser", Box::new(move || leaser(&weak)))?;
        let _ = self.index.leaser.set(leaser.thread().clone());
        r.threads.lock().extend([applier, leaser]);
        let wake = r.wake.clone();
        r.cluster.listen(Arc::new(move || {
            let (flag, cond) = &*wake;
            *flag.lock() = true;
            cond.notify_one();
        }));
        Ok(())
    }

    /// The last change of the cluster's log this node has applied (0 when
    /// not in cluster mode).
    pub fn applied_seq(&self) -> i64 {
        self.replica.as_ref().map_or(0, |r| r.applied.load(Ordering::Acquire))
    }

    /// Cluster mode, `on_stale = "refuse"`: why verifications are refused
    /// now (this node may have missed changes for longer than
    /// `max_staleness_ms`), or `None` when they are served.
    pub fn refusing(&self) -> Option<&'static str> {
        let r = self.replica.as_ref()?;
        r.stale.load(Ordering::Relaxed).then_some(
            "this cluster node may have missed changes for longer than cluster.max_staleness_ms (PostgreSQL \
             unreachable): it refuses to verify until it catches up",
        )
    }

    /// Cluster mode: how this node follows the cluster, for `/readyz`
    /// (`None` without a cluster).
    pub fn cluster_state(&self) -> Option<String> {
        let r = self.replica.as_ref()?;
        let h = r.cluster.health();
        let applied = r.applied.load(Ordering::Acquire);
        if r.stale.load(Ordering::Relaxed) {
            let behind = now_ms().saturating_sub(r.current_at_ms.load(Ordering::Acquire)) / 1000;
            return Some(format!(
                "stale: no change read for {behind} s, past cluster.max_staleness_ms; verifications refused"
            ));
        }
        if h.listening.load(Ordering::Acquire) && r.joined.load(Ordering::Acquire) {
            return Some(format!("following (change {applied} applied)"));
        }
        let last = match h.last_ok_ms.load(Ordering::Relaxed) {
            0 => "none since this node started from its local copy".to_owned(),
            at => format!("{} s ago", now_ms().saturating_sub(at) / 1000),
        };
        Some(format!(
            "degraded: PostgreSQL unreachable (last answer {last}, change {applied} applied); verifying from \
             memory, admin writes refused"
        ))
    }

    /// The cluster this node belongs to, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.replica.as_ref().map(|r| &r.cluster)
    }

    /// Applies every change of the log this node has not applied yet (a
    /// snapshot when the log no longer holds the next one), then records
    /// that it read the whole log.
    pub fn catch_up(&self) -> Result<(), EngineError> {
        let Some(r) = &self.replica else { return Ok(()) };
        let _g = self.admin.lock();
        self.ensure_joined()?;
        loop {
            let changes = r.cluster.changes_after(r.applied.load(Ordering::Acquire))?;
            if changes.is_empty() {
                break;
            }
            if self.pruned_past(&changes) {
                self.reload_snapshot(PRUNED)?;
                continue;
            }
            self.apply_changes(changes)?;
        }
        let now = now_ms();
        if now.saturating_sub(r.position_at_ms.load(Ordering::Relaxed)) >= POSITION_EVERY_MS {
            let at = Position { seq: r.applied.load(Ordering::Acquire), at_ms: now };
            match self.store.apply(Batch::from_ops(vec![at.op()]), false) {
                Ok(()) => r.position_at_ms.store(now, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "cluster: cannot record this node's position in the change log"),
            }
        }
        Ok(())
    }

    /// A node that started from its local copy while PostgreSQL was down
    /// does what a start does once PostgreSQL answers, before anything else:
    /// applies the migrations and loads a snapshot (its local copy is not
    /// trusted to be a prefix of this database's log). The caller holds the
    /// admin lock.
    pub(super) fn ensure_joined(&self) -> Result<(), EngineError> {
        let Some(r) = &self.replica else { return Ok(()) };
        if !r.joined.load(Ordering::Acquire) {
            for name in r.cluster.migrate()? {
                tracing::info!(migration = %name, "cluster: schema migration applied");
            }
            self.reload_snapshot("this node started from its local copy while PostgreSQL was down")?;
            r.joined.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Whether `changes` (read after this node's position) start past the
    /// next one: the log was pruned past this node's position (it was
    /// away longer than `cluster.log_retention_secs`).
    pub(super) fn pruned_past(&self, changes: &[(i64, Change)]) -> bool {
        let Some(r) = &self.replica else { return false };
        changes.first().is_some_and(|(seq, _)| *seq > r.applied.load(Ordering::Acquire) + 1)
    }

    /// Applies changes read from the log, in order. The caller holds the
    /// admin lock.
    pub(super) fn apply_changes(&self, changes: Vec<(i64, Change)>) -> Result<(), EngineError> {
        let Some(r) = &self.replica else { return Ok(()) };
        for (seq, change) in changes {
            let applied = r.applied.load(Ordering::Acquire);
            if seq <= applied {
                continue;
            }
            if seq != applied + 1 {
                return Err(StoreError::Db(format!(
                    "cluster: change {seq} follows {applied}: the log has a gap where it should have none"
                ))
                .into());
            }
            self.apply_change(Position { seq, at_ms: now_ms() }, &change)?;
            r.applied.store(seq, Ordering::Release);
        }
        Ok(())
    }

    /// Loads a consistent snapshot (`why`: the log no longer holds the
    /// changes after this node's position, or the node started from its
    /// local copy) and applies the difference between it
    /// and this node's records as one change (records put in dependency
    /// order, then removed in the reverse; a key whose shared count was set
    /// meanwhile — its generation is not the one this node's lease is of —
    /// starts with an empty lease, as a change setting it would have made
    /// it). The caller holds the admin lock.
    pub(super) fn reload_snapshot(&self, why: &str) -> Result<(), EngineError> {
        let Some(r) = &self.replica else { return Ok(()) };
        let from = r.applied.load(Ordering::Acquire);
        let (head, ops) = r.cluster.snapshot()?;
        let mut theirs: HashMap<(u8, String), Vec<u8>> =
            ops.into_iter().filter_map(|o| Some(((o.table, o.id), o.value?))).collect();
        // Keys whose count was set since this node's lease of it was granted.
        let held: Vec<(String, i64)> = r
            .leases
            .lock()
            .iter()
            .filter(|(_, h)| h.generation != 0)
            .map(|(id, h)| (id.to_string(), h.generation))
            .collect();
        let generations = r.cluster.generations(held.iter().map(|(id, _)| id.clone()).collect())?;
        let reset: HashSet<String> =
            held.into_iter().filter(|(id, g)| generations.get(id) != Some(g)).map(|(id, _)| id).collect();
        let (mut puts, mut removes) = (Vec::new(), Vec::new());
        for table in DEPENDENCY_ORDER {
            let tag = table.tag();
            self.store.for_each_raw(table, &Span::ALL, |id, raw| -> Result<(), StoreError> {
                match theirs.remove(&(tag, id.to_owned())) {
                    Some(v) if v == raw.bytes() && !(table == Table::Keys && reset.contains(id)) => {}
                    Some(v) => puts.push(Op { table: tag, id: id.to_owned(), value: Some(v) }),
                    None => removes.push(Op { table: tag, id: id.to_owned(), value: None }),
                }
                Ok(())
            })?;
        }
        puts.extend(theirs.into_iter().map(|((table, id), v)| Op { table, id, value: Some(v) }));
        let rank = |op: &Op| DEPENDENCY_ORDER.iter().position(|t| t.tag() == op.table).unwrap_or(usize::MAX);
        puts.sort_by_key(rank);
        removes.sort_by_key(|op| std::cmp::Reverse(rank(op)));
        let (put, removed) = (puts.len(), removes.len());
        puts.extend(removes);
        let change = Change { ops: puts, credits: reset.into_iter().map(|id| (id, None)).collect() };
        self.apply_change(Position { seq: head, at_ms: now_ms() }, &change)?;
        r.applied.store(head, Ordering::Release);
        tracing::warn!(
            from,
            to = head,
            records_put = put,
            records_removed = removed,
            "cluster: snapshot loaded: {why}"
        );
        Ok(())
    }

    /// Applies one change made on another node: its records to the store
    /// (with the position `at` in one batch), then to the index as the
    /// operation that made it changed this node's.
    fn apply_change(&self, at: Position, change: &Change) -> Result<(), EngineError> {
        // What the index update needs of the records as they were.
        let mut old_users: HashMap<&str, User> = HashMap::new();
        for op in &change.ops {
            if op.table() == Some(Table::Users)
                && let Some(u) = self.store.get::<User>(Table::Users, &op.id)?
            {
                old_users.entry(&op.id).or_insert(u);
            }
        }
        let mut ops = change.ops.clone();
        ops.push(at.op());
        self.store.apply(Batch::from_ops(ops), false)?;
        let reset: HashSet<&str> = change.credits.iter().map(|(k, _)| k.as_str()).collect();
        let now = now_ms();
        // Adopted prefixes first: a key adopted in this change is looked up
        // by its format as soon as it is in the index.
        for op in change.ops.iter().filter(|o| o.table() == Some(Table::Meta)) {
            if op.id == ADOPTED_PREFIXES
                && let Some(v) = &op.value
            {
                let prefixes: Vec<String> = Store::decode_value(Table::Meta, &op.id, v)?;
                self.index.any_adopted.store(!prefixes.is_empty(), Ordering::Release);
                self.index.adopted_prefixes.store(Arc::new(prefixes));
            }
        }
        for op in &change.ops {
            let Some(table) = op.table() else { continue };
            match (table, &op.value) {
                (Table::Teams, Some(v)) => {
                    let t: Team = Store::decode_value(table, &op.id, v)?;
                    match self.index.teams.get(&op.id) {
                        Some(e) => e.set_tier(t.tier),
                        None => {
                            self.index
                                .teams
                                .insert(op.id.clone(), Arc::new(TeamEntry::new(&op.id, t.tier, 0).in_cluster(true)));
                            self.listing.lock().add_team(&op.id);
                        }
                    }
                }
                (Table::Teams, None) => {
                    self.index.teams.remove(&op.id);
                    self.listing.lock().remove_team(&op.id);
                }
                (Table::Users, Some(v)) => {
                    let u: User = Store::decode_value(table, &op.id, v)?;
                    self.apply_user(&u, old_users.get(op.id.as_str()))?;
                }
                (Table::Users, None) => {
                    if let Some(old) = old_users.get(op.id.as_str()) {
                        self.index.usernames.remove(&old.username);
                    }
                    self.index.users.remove(&op.id);
                }
                (Table::Keys, Some(v)) => {
                    let k: ApiKey = Store::decode_value(table, &op.id, v)?;
                    self.apply_key(&k, reset.contains(op.id.as_str()), now)?;
                }
                (Table::Keys, None) => {
                    if let Some(e) = self.index.keys.get(op.id.as_str()) {
                        self.index.keys.remove(op.id.as_str());
                        self.index.secrets.remove(&e.hash);
                        self.listing.lock().remove_key(&Filed::of(&e));
                    }
                }
                (Table::Tokens, Some(v)) => {
                    let t: AccessToken = Store::decode_value(table, &op.id, v)?;
                    match self.index.tokens.get(&op.id).map(|e| e.clone()) {
                        Some(e) => {
                            if let Some(at) = t.revoked_at {
                                let _ = e.revoked_at.compare_exchange(0, at, Ordering::AcqRel, Ordering::Acquire);
                            }
                        }
                        None => {
                            let Some(user) = self.index.users.get(&t.user_id).map(|u| u.clone()) else { continue };
                            let entry = token_entry(t.clone(), user, &Usage::default());
                            self.index.secrets.insert(Secret::Token(entry.clone()));
                            self.index.tokens.insert(t.id, entry);
                        }
                    }
                }
                (Table::Tokens, None) => {
                    if let Some((_, e)) = self.index.tokens.remove(&op.id) {
                        self.index.secrets.remove(&e.record.hash);
                    }
                }
                (Table::RevokedJti, Some(_)) => {
                    let (team, jti) = op.id.split_once('\u{1f}').unwrap_or(("", &op.id));
                    self.index.revoke_jti(jti, team);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A user record from another node: created, or its role, status,
    /// username and revocation applied (a role change regrants its keys
    /// first, as `update_user` does).
    fn apply_user(&self, u: &User, old: Option<&User>) -> Result<(), EngineError> {
        if let Some(old) = old
            && old.username != u.username
        {
            self.index.usernames.remove(&old.username);
        }
        self.index.usernames.insert(u.username.clone(), u.id.clone());
        let Some(e) = self.index.users.get(&u.id).map(|e| e.clone()) else {
            let Some(team) = self.index.teams.get(&u.team_id).map(|t| t.clone()) else {
                tracing::warn!(user = %u.id, team = %u.team_id, "cluster: user of a missing team skipped");
                return Ok(());
            };
            let entry = Arc::new(UserEntry::new(&u.id, team, u.role, u.status, u.revoked_before));
            self.index.users.insert(u.id.clone(), entry);
            self.listing.lock().add_user(&u.team_id, &u.id);
            return Ok(());
        };
        if e.role() != u.role {
            let keys: Vec<_> = self.index.keys.iter().filter(|k| Arc::ptr_eq(&k.user, &e)).collect();
            for k in keys {
                let Some(record) = self.store.get::<ApiKey>(Table::Keys, &k.id)? else { continue };
                let entry = key_entry(&self.index, &record, k.ips().to_vec(), e.clone(), u.role, k.counters.clone());
                self.index.secrets.insert(Secret::Key(entry.clone()));
                self.index.keys.insert(entry);
            }
        }
        e.revoked_before.store(u.revoked_before, Ordering::Release);
        e.set(u.role, u.status);
        Ok(())
    }

    /// A key record from another node: created, or changed in place. Its
    /// counters carry over unless its remaining uses were set (`reset`): then
    /// this node's lease of the old count is void and it starts empty.
    fn apply_key(&self, k: &ApiKey, reset: bool, now: u64) -> Result<(), EngineError> {
        let Some(user) = self.index.users.get(&k.user_id).map(|u| u.clone()) else {
            tracing::warn!(key = %k.id, "cluster: key of a missing user skipped");
            return Ok(());
        };
        let ips = parse_ips(&k.whitelisted_ips)?;
        let old = self.index.keys.get(k.id.as_str());
        let counters: Arc<KeyCounters> = match &old {
            Some(o) if !reset => o.counters.clone(),
            Some(o) => {
                let usage = Usage { remaining: 0, period: 0, anchor: now, ..key_usage(&o.counters) };
                let mut c = counters(&usage, k.refill);
                c.window = o.counters.window.snapshot();
                // The rate-limit tokens carry over; the lease of uses starts empty.
                let rate = o.counters.cluster.as_ref().map_or_else(Default::default, |o| o.rate.snapshot());
                c.cluster = Some(Box::new(ClusterCounters { rate, ..Default::default() }));
                Arc::new(c)
            }
            // A key with a limit starts with an empty lease.
            None => Arc::new(KeyCounters {
                cluster: Some(Box::default()),
                ..counters(&Usage { remaining: 0, anchor: k.created_at, ..Usage::default() }, k.refill)
            }),
        };
        let role = user.role();
        let entry = key_entry(&self.index, k, ips, user, role, counters);
        self.index.secrets.insert(Secret::Key(entry.clone()));
        let mut listing = self.listing.lock();
        if let Some(o) = &old {
            listing.remove_key(&Filed::of(o));
        }
        listing.add_key(&Filed::of(&entry), now);
        drop(listing);
        self.index.keys.insert(entry);
        Ok(())
    }

    /// Cluster mode: the remaining uses of keys with a limit are the
    /// cluster's, not this node's lease: the shared count, plus what other
    /// nodes hold (as of their last heartbeat), plus this node's active
    /// part — or the refill amount when a refill period has passed since the
    /// count was last leased from (then no lease held counts). A key with a
    /// refill shows its periods on PostgreSQL's clock. When PostgreSQL
    /// cannot be reached, this node's active part is shown, as it is.
    pub(super) fn cluster_remaining(&self, keys: &mut [(ApiKey, Usage)]) {
        let Some(r) = &self.replica else { return };
        let ids: Vec<(String, Option<crate::core::model::Refill>)> =
            keys.iter().filter(|(k, _)| k.remaining.is_some()).map(|(k, _)| (k.id.clone(), k.refill)).collect();
        if ids.is_empty() {
            return;
        }
        match r.cluster.remaining(ids) {
            Ok(shared) => {
                let leases = r.leases.lock();
                for (k, usage) in keys.iter_mut() {
                    let Some(s) = shared.get(&k.id) else { continue };
                    // This node's active part counts if it is of the current period.
                    let mine = leases.get(k.id.as_str()).is_none_or(|h| h.period as u64 == s.period);
                    let total = if s.due {
                        s.uses
                    } else if mine {
                        u64::from(usage.remaining).saturating_add(s.uses)
                    } else {
                        s.uses
                    };
                    usage.remaining = u32::try_from(total).unwrap_or(u32::MAX);
                    if k.refill.is_some() {
                        usage.anchor = s.anchor_ms;
                        usage.period = s.period;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: remaining uses shown as this node's lease"),
        }
    }

    /// Cluster mode: acquires team documents in PostgreSQL (exact across
    /// the cluster); this node's entry shows the count it answered.
    pub(super) fn acquire_documents(
        &self,
        team: &TeamEntry,
        amount: u64,
        limit: Option<u64>,
    ) -> Result<Result<u64, u64>, StoreError> {
        let Some(r) = &self.replica else { return Err(StoreError::Db("not a cluster node".into())) };
        let took = r.cluster.acquire_documents(&team.id, amount, limit)?;
        let (Ok(used) | Err(used)) = took;
        team.documents.set(used);
        Ok(took)
    }

    /// [`Engine::acquire_documents`] for a verification naming the
    /// `documents` quota: the deny reason when not acquired. The thread
    /// waits for PostgreSQL (a runtime's worker hands its other tasks over).
    pub(super) fn acquire_verifying(
        &self,
        team: &TeamEntry,
        amount: u64,
        limit: Option<u64>,
    ) -> Result<u64, &'static str> {
        let mut out = Err(UNCOUNTED);
        let mut acquire = || {
            out = match self.acquire_documents(team, amount, limit) {
                Ok(Ok(used)) => Ok(used),
                Ok(Err(_)) => Err("team document quota reached"),
                Err(e) => {
                    tracing::warn!(team = %team.id, error = %e, "cluster: documents cannot be acquired");
                    Err(UNCOUNTED)
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(acquire)
            }
            _ => acquire(),
        }
        out
    }

    /// Cluster mode: releases team documents in PostgreSQL. A release it
    /// cannot take now (unreachable, or no answer) is kept in this node's
    /// store under its id and retried by the leaser until applied — once,
    /// by its id — so no acknowledged release is lost; meanwhile this
    /// node's count shows it released.
    pub(super) fn release_documents(&self, team: &TeamEntry, amount: u64) -> Result<u64, EngineError> {
        let Some(r) = &self.replica else { return Err(StoreError::Db("not a cluster node".into()).into()) };
        let id = crate::core::secret::new_id(&self.rng, "rel_");
        match r.cluster.release_documents(&id, &team.id, amount) {
            Ok(used) => {
                team.documents.set(used);
                Ok(used)
            }
            Err(e) => {
                let mut b = Batch::default();
                b.put(Table::Releases, &id, &(team.id.to_string(), amount));
                self.store.apply(b, true)?;
                r.pending_releases.store(true, Ordering::Release);
                tracing::warn!(
                    team = %team.id,
                    amount,
                    error = %e,
                    "cluster: a document release is kept and retried until PostgreSQL takes it"
                );
                Ok(team.documents.release(amount))
            }
        }
    }

    /// Retries the releases PostgreSQL has not acknowledged (leaser).
    fn retry_releases(&self, r: &Replica) {
        if !r.pending_releases.swap(false, Ordering::AcqRel) {
            return;
        }
        let pending = match self.store.scan::<(String, u64)>(Table::Releases) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: kept document releases cannot be read");
                r.pending_releases.store(true, Ordering::Release);
                return;
            }
        };
        for (id, (team, amount)) in pending {
            match r.cluster.release_documents(&id, &team, amount) {
                Ok(used) => {
                    if let Some(t) = self.index.teams.get(&team) {
                        t.documents.set(used);
                    }
                    let mut b = Batch::default();
                    b.remove(Table::Releases, &id);
                    if let Err(e) = self.store.apply(b, true) {
                        // Applied already: a second try is a no-op.
                        tracing::warn!(error = %e, "cluster: an applied document release stays kept");
                    }
                    tracing::info!(team = %team, amount, "cluster: a kept document release was applied");
                }
                Err(_) => {
                    r.pending_releases.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// Cluster mode: after a verification denied for want of uses while a
    /// lease was asked for, waits (at most `cluster.lease_wait_ms`) for the
    /// leaser's answer and verifies again. Only a lease that ran out waits:
    /// a verification with uses in its lease never does.
    pub(super) fn wait_for_lease(
        &self,
        mut verdict: crate::core::verify::Verdict,
        again: impl Fn() -> crate::core::verify::Verdict,
    ) -> crate::core::verify::Verdict {
        use crate::core::verify::Verdict;
        let Some(r) = &self.replica else { return verdict };
        let wait = Duration::from_millis(r.cluster.settings().lease_wait_ms);
        let deadline = Instant::now() + wait;
        let block = |f: &mut dyn FnMut()| match tokio::runtime::Handle::try_current() {
            // A worker of the multi-threaded runtime hands its other tasks
            // to the others while it waits.
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
            // A single-threaded runtime would stall: no waiting there.
            Ok(_) => {}
            Err(_) => f(),
        };
        while let Verdict::Deny(d) = &verdict {
            if !d.lease_pending || Instant::now() >= deadline {
                break;
            }
            let seen = *r.rounds.lock();
            let mut waited = false;
            block(&mut || {
                r.wait_round(seen, deadline);
                waited = true;
            });
            if !waited {
                break;
            }
            verdict = again();
        }
        verdict
    }

    /// Returns this node's unspent leases (shutdown): every key's active
    /// part and the reserve its row records, in one transaction. Idempotent.
    pub(super) fn return_leases(&self) {
        let Some(r) = &self.replica else { return };
        if r.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(t) = self.index.leaser.get() {
            t.unpark();
        }
        {
            let (flag, cond) = &*r.wake;
            *flag.lock() = true;
            cond.notify_all();
        }
        let me = std::thread::current().id();
        for h in r.threads.lock().drain(..) {
            // The last handle on the engine may be dropped by one of these.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        r.cluster.stop();
        let held: Vec<(Id, Held)> = r.leases.lock().drain().collect();
        let mut back = Vec::with_capacity(held.len());
        let (mut active, mut reserve) = (0u64, 0u64);
        for (id, h) in held {
            let n = self.index.keys.get(id.as_str()).map_or(0, |e| e.counters.uses.drain());
            active += u64::from(n);
            reserve += u64::from(h.reserve);
            back.push(Returned { key: id.to_string(), active: n, generation: h.generation, period: h.period });
        }
        match r.cluster.return_leases(back) {
            Ok(()) => tracing::info!(active, reserve, "cluster: leases returned"),
            Err(e) => tracing::warn!(
                active,
                error = %e,
                "cluster: leases could not be returned (their reserves come back when their rows expire)"
            ),
        }
    }

    /// One leaser round: serves every queued request, then wakes the
    /// verifications waiting for it.
    fn lease_round(&self, r: &Replica) {
        let mut seen = HashSet::new();
        let mut seen_teams = HashSet::new();
        while let Some(t) = self.index.team_lease_requests.pop() {
            if seen_teams.insert(t.id.clone()) {
                self.serve_team_rate_lease(r, &t);
            }
            if let Some(cl) = t.cluster.as_deref() {
                cl.lease.requested.store(false, Ordering::Release);
            }
        }
        while let Some(e) = self.index.lease_requests.pop() {
            if seen.insert(e.id.clone()) {
                self.serve_rate_lease(r, &e.id, &e.counters);
                self.serve_lease(r, &e.id, &e.counters);
            }
            if let Some(cl) = e.counters.cluster.as_deref() {
                cl.lease.requested.store(false, Ordering::Release);
            }
        }
        *r.rounds.lock() += 1;
        r.round_done.notify_all();
    }

    /// Leases tokens of key `id`'s current rate-limit window for `counters`
    /// (if they are still the key's and it has a rate limit).
    fn serve_rate_lease(&self, r: &Replica, id: &Id, c: &Arc<KeyCounters>) {
        let Some(limit) = self
            .index
            .keys
            .get(id.as_str())
            .filter(|e| Arc::ptr_eq(&e.counters, c))
            .and_then(|e| e.policy.rate_limit())
        else {
            return;
        };
        let Some(cl) = c.cluster.as_deref() else { return };
        self.lease_window(r, id.as_str(), cl, limit.max, limit.window_ms, false);
    }

    /// Leases tokens of the cluster's current minute of `team` (if its tier
    /// has a per-minute limit): calendar minutes on PostgreSQL's clock, as
    /// on one host on the node's.
    fn serve_team_rate_lease(&self, r: &Replica, team: &Arc<TeamEntry>) {
        let Some(cl) = team.cluster.as_deref() else { return };
        let tiers = self.tiers.load();
        let Some(rpm) = tiers[team.tier().index()].requests_per_minute.get() else { return };
        let rpm = u32::try_from(rpm).unwrap_or(u32::MAX);
        self.lease_window(r, &team.id, cl, rpm, crate::core::verify::MINUTE_US / 1000, true);
    }

    /// Leases tokens of a window of the cluster's (row `row` of
    /// `tollgate_windows`) into `cl.rate`, when they are running low:
    /// `max / 64` at a time (at least 1, at most `lease_max`), so that what
    /// other nodes hold unspent at a window's end is small beside the limit.
    fn lease_window(&self, r: &Replica, row: &str, cl: &ClusterCounters, max: u32, window_ms: u64, aligned: bool) {
        let now_us = crate::core::clock::now_us();
        if cl.rate.available(now_us) >= cl.lease.rate_low.load(Ordering::Relaxed).max(1) {
            return;
        }
        let want = (max / 64).clamp(1, r.cluster.settings().lease_max);
        match r.cluster.take_rate(row, want, max, window_ms, aligned) {
            Ok((ends, pg_now, granted)) => {
                // The window's end on this node's clock: as far ahead as it is
                // on PostgreSQL's, as first seen for this window.
                let end = {
                    let mut windows = r.rate_windows.lock();
                    match windows.get(row) {
                        Some(&(pg_end, local_end)) if pg_end == ends => local_end,
                        _ => {
                            let local_end =
                                (now_us / 1000).saturating_add(u64::try_from(ends.saturating_sub(pg_now)).unwrap_or(0));
                            windows.insert(row.to_owned(), (ends, local_end));
                            local_end
                        }
                    }
                };
                if granted > 0 {
                    cl.rate.grant(end, granted);
                    cl.lease.rate_low.store(granted.div_ceil(2), Ordering::Relaxed);
                } else {
                    // The window is full cluster-wide until it ends.
                    cl.lease.rate_dry_until_ms.store(end, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(window = %row, error = %e, "cluster: cannot lease rate-limit tokens");
                cl.lease.rate_dry_until_ms.store(now_ms() + 100, Ordering::Relaxed);
            }
        }
    }

    /// Activates uses of key `id` for `counters` (if they are still the
    /// key's, it has a count, and this node's active part is running low):
    /// one statement takes from the shared count into the lease's reserve
    /// and moves up to a chunk of the reserve to the active part, which is
    /// then added to the counter. The active part never holds more than a
    /// chunk (or the largest cost a verification asked for).
    fn serve_lease(&self, r: &Replica, id: &Id, c: &Arc<KeyCounters>) {
        let current =
            |c: &Arc<KeyCounters>| self.index.keys.get(id.as_str()).is_some_and(|e| Arc::ptr_eq(&e.counters, c));
        let Some((counted, refill)) = self.index.keys.get(id.as_str()).map(|e| (e.policy.counted(), e.policy.refill()))
        else {
            return;
        };
        let Some(cl) = c.cluster.as_deref() else { return };
        let now = now_ms();
        // What is held of a refill period that has ended counts for nothing.
        let ended = refill.is_some() && now >= cl.lease.period_end_ms.load(Ordering::Acquire);
        let active = if ended { 0 } else { c.uses.load().1 };
        let cost = cl.lease.want.swap(0, Ordering::Relaxed);
        if !current(c) || !counted || (active >= cl.lease.low.load(Ordering::Relaxed).max(1) && active >= cost) {
            return;
        }
        let max = r.cluster.settings().lease_max;
        let (size, reserve) = {
            let mut leases = r.leases.lock();
            match leases.get_mut(id) {
                Some(h) => {
                    let since = h.granted.elapsed();
                    if since < Duration::from_secs(1) {
                        h.size = h.size.saturating_mul(2).min(max);
                    } else if since > Duration::from_secs(10) {
                        h.size = (h.size / 2).max(1);
                    }
                    (h.size, h.reserve)
                }
                None => {
                    let size = FIRST_LEASE.min(max);
                    leases.insert(
                        id.clone(),
                        Held { generation: 0, size, granted: Instant::now(), reserve: 0, period: 0 },
                    );
                    (size, 0)
                }
            }
        };
        let target = chunk(size).max(cost);
        let activate = target.saturating_sub(active);
        // The reserve is filled up to the lease's size (this activation
        // included), so the next few activations need not touch the count.
        let want = size.max(activate).saturating_sub(reserve);
        match r.cluster.take_lease(id, want, activate, active, refill) {
            Ok(Some(g)) => {
                let new_period = {
                    let mut leases = r.leases.lock();
                    let h = leases.get_mut(id);
                    let new_period = h.as_ref().is_some_and(|h| h.period != g.period);
                    if let Some(h) = h {
                        h.generation = g.generation;
                        h.reserve = g.reserve;
                        h.period = g.period;
                        if g.moved > 0 {
                            h.granted = Instant::now();
                        }
                    }
                    new_period
                };
                if refill.is_some() {
                    // The period's end on this node's clock: as far ahead
                    // as on PostgreSQL's.
                    let left = u64::try_from(g.period_ends_ms.saturating_sub(g.pg_now_ms)).unwrap_or(0);
                    if new_period || ended {
                        // Uses of an ended period are void (never returned:
                        // the count has been refilled).
                        c.uses.drain();
                    }
                    cl.lease.period_end_ms.store(now_ms().saturating_add(left), Ordering::Release);
                }
                if g.moved == 0 {
                    let dry = now + DRY_MS;
                    let dry = match refill {
                        Some(_) => dry.min(cl.lease.period_end_ms.load(Ordering::Acquire)),
                        None => dry,
                    };
                    cl.lease.dry_until_ms.store(dry, Ordering::Relaxed);
                } else if current(c) {
                    c.uses.add(g.moved);
                    cl.lease.low.store(target.div_ceil(2), Ordering::Relaxed);
                    cl.lease.dry_until_ms.store(0, Ordering::Relaxed);
                } else {
                    // The key changed meanwhile (deleted, or its count set).
                    r.leases.lock().remove(id);
                    let back =
                        Returned { key: id.to_string(), active: g.moved, generation: g.generation, period: g.period };
                    if let Err(e) = r.cluster.return_leases(vec![back]) {
                        tracing::warn!(key = %id, error = %e, "cluster: a lease could not be returned");
                    }
                }
            }
            Ok(None) => cl.lease.dry_until_ms.store(now + DRY_MS, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(key = %id, error = %e, "cluster: cannot lease remaining uses");
                cl.lease.dry_until_ms.store(now + 100, Ordering::Relaxed);
            }
        }
    }
}

/// The applier thread: applies the log whenever a change is announced, and
/// at least every second (a notification lost with a connection is no
/// change lost); prunes the log every `log_retention_secs / 2` (at least
/// every second, at most every minute).
fn applier(engine: &Weak<Engine>, wake: &(Mutex<bool>, Condvar)) {
    let mut failing = false;
    let mut pruned = Instant::now();
    loop {
        {
            let (flag, cond) = wake;
            let mut woken = flag.lock();
            if !*woken {
                cond.wait_for(&mut woken, Duration::from_secs(1));
            }
            *woken = false;
        }
        let Some(engine) = engine.upgrade() else { return };
        let Some(r) = &engine.replica else { return };
        if r.stop.load(Ordering::Acquire) {
            return;
        }
        let result = engine.catch_up();
        r.check_staleness(result.is_ok());
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!(applied = engine.applied_seq(), "cluster: caught up with the change log");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cluster: cannot read the change log; retrying");
                }
                failing = true;
            }
        }
        let retention = Duration::from_secs(r.cluster.settings().log_retention_secs);
        if !failing && pruned.elapsed() >= (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(60)) {
            pruned = Instant::now();
            match r.cluster.prune_log(retention) {
                Ok(Some(n)) if n > 0 => tracing::info!(changes = n, "cluster: change log pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cluster: cannot prune the change log"),
            }
        }
    }
}

/// The leaser thread: serves lease requests as they come, and keeps this
/// node's leases alive.
fn leaser(engine: &Weak<Engine>) {
    let mut beat = Instant::now();
    loop {
        let Some(engine) = engine.upgrade() else { return };
        let Some(r) = &engine.replica else { return };
        if r.stop.load(Ordering::Acquire) {
            // Waiting verifications stop waiting.
            *r.rounds.lock() += 1;
            r.round_done.notify_all();
            return;
        }
        engine.lease_round(r);
        engine.retry_releases(r);
        let every = Duration::from_millis(r.cluster.settings().lease_ttl_ms / 3);
        if beat.elapsed() >= every {
            beat = Instant::now();
            let held: Vec<(String, u32)> = r
                .leases
                .lock()
                .keys()
                .filter_map(|id| engine.index.keys.get(id.as_str()).map(|e| (id.to_string(), e.counters.uses.load().1)))
                .collect();
            match r.cluster.heartbeat(held) {
                Ok(beat) => {
                    // A row that expired (this node was cut off longer than
                    // the TTL) gave its reserve back: it is no longer ours.
                    for (id, h) in r.leases.lock().iter_mut() {
                        h.reserve = beat.mine.get(id.as_str()).copied().unwrap_or(0);
                    }
                    if beat.expired > 0 {
                        tracing::info!(
                            rows = beat.expired,
                            uses = beat.returned,
                            "cluster: expired leases ended, their reserves given back"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cluster: lease heartbeat failed"),
            }
        }
        // A request queued while this thread waited for PostgreSQL (the
        // heartbeat, or a lease) may have had its unpark consumed by that
        // wait (a blocking channel parks this thread too): it is served
        // now rather than after `every` (10 s by default), during which
        // its key would ask for nothing more.
        let queued = !engine.index.lease_requests.is_empty() || !engine.index.team_lease_requests.is_empty();
        drop(engine);
        if !queued {
            std::thread::park_timeout(every);
        }
    }
}
