//! Cluster mode: PostgreSQL as the truth shared by every node (ARCHITECTURE.md,
//! "Cluster mode"). This file and `cluster/tls.rs` are the only ones that
//! name tokio-postgres; the engine sees `Cluster`, `AdminTx` and `Change`.
//!
//! What is in the database: the replicated records (`tollgate_records`, the
//! same bytes as the embedded store's values), the change log
//! (`tollgate_changes`, gapless `seq`), the remaining uses not leased to any
//! node (`tollgate_credits`) and the leases (`tollgate_leases`). The schema is
//! `migrations/*.sql`, applied under an advisory lock.
//!
//! The PostgreSQL client is async; the engine is not. The cluster runs its
//! own small runtime (`tollgate-pg` threads) and the engine's threads (the
//! admin runtime's, the applier's, the leaser's) wait for its answers: no
//! verification thread ever does.

pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use tokio_postgres::AsyncMessage;

use crate::config::ClusterConfig;
use crate::store::{Op, StoreError, Table};

/// The channel every change is announced on (its payload: the `seq`).
pub const CHANNEL: &str = "tollgate_changes";
/// Advisory lock taken while migrating ("tollgate" in ASCII).
const MIGRATE_LOCK: i64 = 0x746f_6c6c_6761_7465;
/// Advisory lock every admin write holds for its transaction.
const ADMIN_LOCK: i64 = MIGRATE_LOCK + 1;
/// Advisory lock a node holds while it prunes the change log (the others
/// skip their turn meanwhile).
const PRUNE_LOCK: i64 = MIGRATE_LOCK + 16;
/// The longest any one call to PostgreSQL may take before it is an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Change-log rows read per catch-up query.
const CATCH_UP_BATCH: i64 = 1000;

/// A versioned schema change, from `migrations/`.
pub struct Migration {
    /// Its version: the number its file name starts with.
    pub version: i32,
    /// The file's name.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

/// Every migration, in order (a unit test checks this against `migrations/`).
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_cluster.sql", sql: include_str!("../migrations/0001_cluster.sql") },
    Migration { version: 2, name: "0002_rate_windows.sql", sql: include_str!("../migrations/0002_rate_windows.sql") },
    Migration { version: 3, name: "0003_lease_reserve.sql", sql: include_str!("../migrations/0003_lease_reserve.sql") },
    Migration {
        version: 4,
        name: "0004_team_documents.sql",
        sql: include_str!("../migrations/0004_team_documents.sql"),
    },
    Migration {
        version: 5,
        name: "0005_refill_periods.sql",
        sql: include_str!("../migrations/0005_refill_periods.sql"),
    },
];

/// One committed admin change as the log carries it: the record writes (of
/// the replicated tables) in order, and the keys whose remaining uses were
/// set (`None`: the key has no limit any more, or is gone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The writes.
    pub ops: Vec<Op>,
    /// Keys whose shared count starts again.
    pub credits: Vec<(String, Option<u32>)>,
}

/// Version byte in front of every change-log body.
const CHANGE_VERSION: u8 = 1;

impl Change {
    fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![CHANGE_VERSION]).expect("changes are postcard-encodable")
    }

    fn decode(seq: i64, bytes: &[u8]) -> Result<Change, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt { key: format!("tollgate_changes/{seq}"), why };
        match bytes.split_first() {
            Some((&CHANGE_VERSION, body)) => postcard::from_bytes(body).map_err(|e| corrupt(e.to_string())),
            Some((v, _)) => {
                Err(corrupt(format!("unknown change version {v}: a newer tollgate wrote it; upgrade this node")))
            }
            None => Err(corrupt("empty change".into())),
        }
    }
}

/// How the connection to PostgreSQL stands, for `/readyz` and `/metrics`.
#[derive(Default)]
pub struct Health {
    /// The change listener is connected and listening.
    pub listening: AtomicBool,
    /// Last time (ms since the epoch) a call to PostgreSQL succeeded.
    pub last_ok_ms: AtomicU64,
    /// Calls that failed.
    pub failures: AtomicU64,
    /// When (ms since the epoch) the listener last lost a connection on
    /// which it was listening: every change committed before then was
    /// announced to this node.
    pub lost_at_ms: AtomicU64,
}

/// What one lease statement ([`Cluster::take_lease`]) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Uses taken from the shared count into the node's reserve.
    pub taken: u32,
    /// Uses moved from the reserve to the node's active part: what it may
    /// spend now.
    pub moved: u32,
    /// The reserve the lease row records after it.
    pub reserve: u32,
    /// The shared count's generation.
    pub generation: i64,
    /// The refill period it is of (0 without a refill).
    pub period: i64,
    /// PostgreSQL's time then (ms since the epoch).
    pub pg_now_ms: i64,
    /// When the period ends on PostgreSQL's clock (0 without a refill).
    pub period_ends_ms: i64,
}

/// A lease given back ([`Cluster::return_leases`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Returned {
    /// The key.
    pub key: String,
    /// Its unspent active uses (drained: the node can no longer spend them).
    pub active: u32,
    /// The generation and refill period they were leased under.
    pub generation: i64,
    /// See `generation`.
    pub period: i64,
}

/// A key's count as the admin API shows it ([`Cluster::remaining`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shared {
    /// Uses not held by this node: the shared count and the other nodes'
    /// leases of its generation and period; with `due`, the refill amount.
    pub uses: u64,
    /// A refill period has passed since the count was last leased from:
    /// the next lease refills it, and no lease held now counts.
    pub due: bool,
    /// Refills: when period 0 started (PostgreSQL's clock, ms).
    pub anchor_ms: u64,
    /// Refills: the current period.
    pub period: u64,
}

/// What a heartbeat found ([`Cluster::heartbeat`]).
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    /// This node's lease rows: key, recorded reserve.
    pub mine: std::collections::HashMap<String, u32>,
    /// Expired lease rows (of any node) ended.
    pub expired: u64,
    /// Uses of their reserves given back to the shared counts.
    pub returned: u64,
}

/// A node's handle on the cluster's database.
pub struct Cluster {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    pg: tokio_postgres::Config,
    tls: tls::MakeRustls,
    node: String,
    settings: ClusterConfig,
    health: Arc<Health>,
    stopping: Arc<AtomicBool>,
}

/// A PostgreSQL error: one the server reported (a constraint, a bad
/// statement) is a store failure; a connection that failed, closed or timed
/// out makes the database unavailable.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_some() {
        StoreError::Db(format!("postgresql: {}", chain(&e)))
    } else {
        StoreError::Unavailable(format!("postgresql: {}", chain(&e)))
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("postgresql: {}", chain(&e)))
}

/// An error and its causes, `: `-separated (the TLS or I/O cause of a
/// failed connection is in a source, not in the top error's text).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl Cluster {
    /// Connects to `settings.postgres_url` (checking one connection) as node
    /// `node`.
    pub fn connect(settings: &ClusterConfig, node: String) -> Result<Arc<Cluster>, StoreError> {
        let cluster = Cluster::open(settings, node)?;
        cluster.call(|c| async move { c.batch_execute("SELECT 1").await })?;
        Ok(cluster)
    }

    /// The handle on `settings.postgres_url` for node `node`, without
    /// connecting yet: the first call connects (a node may start while
    /// PostgreSQL is down).
    pub fn open(settings: &ClusterConfig, node: String) -> Result<Arc<Cluster>, StoreError> {
        let url = settings.postgres_url.as_ref().ok_or_else(|| StoreError::Db("cluster: no postgres_url".into()))?;
        let mut pg: tokio_postgres::Config =
            url.0.parse().map_err(|e| StoreError::Db(format!("cluster.postgres_url: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        pg.application_name(format!("tollgate {node}"));
        let tls = tls::MakeRustls::new(settings.ca_file.as_deref()).map_err(StoreError::Db)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tollgate-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(format!("cluster: cannot start its runtime: {e}")))?;
        let manager =
            Manager::from_config(pg.clone(), tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = {
            let _guard = rt.enter();
            Pool::builder(manager)
                .max_size(settings.pool_size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CALL_TIMEOUT))
                .create_timeout(Some(CALL_TIMEOUT))
                .recycle_timeout(Some(CALL_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Db(format!("postgresql: {e}")))?
        };
        let cluster = Arc::new(Cluster {
            rt: Some(rt),
            pool,
            pg,
            tls,
            node,
            settings: settings.clone(),
            health: Arc::default(),
            stopping: Arc::default(),
        });
        Ok(cluster)
    }

    /// This node's id (random per start: a restarted node never takes over
    /// the leases of its previous life).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The settings in force.
    pub fn settings(&self) -> &ClusterConfig {
        &self.settings
    }

    /// How the connection stands.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives as long as the cluster")
    }

    /// Runs `fut` on the cluster's runtime and waits for it, at most
    /// [`CALL_TIMEOUT`]. Never called from a thread of that runtime.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let r = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unavailable(format!("postgresql: no answer within {CALL_TIMEOUT:?}"))),
            };
            let _ = tx.send(r);
        });
        let r = rx
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("postgresql: the cluster runtime stopped".into())));
        self.record(&r);
        r
    }

    fn record<T>(&self, r: &Result<T, StoreError>) {
        match r {
            Ok(_) => self.health.last_ok_ms.store(crate::core::clock::now_us() / 1000, Ordering::Relaxed),
            Err(_) => {
                self.health.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs `f` with a pooled connection.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let pool = self.pool.clone();
        self.block(async move {
            let client = pool.get().await.map_err(pool_err)?;
            f(client).await.map_err(pg_err)
        })
    }

    /// Applies the migrations this database lacks, under an advisory lock
    /// (two nodes starting together: the second waits, then finds them
    /// applied). Returns the names of those it applied. Refuses a database
    /// whose schema is newer than this build knows.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.call(|mut c| async move {
            c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK]).await?;
            let result = migrate_locked(&mut c).await;
            let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]).await;
            let applied = result?;
            unlocked?;
            Ok(applied)
        })?
        .map_err(StoreError::Db)
    }

    /// A consistent snapshot: the head of the log and every replicated
    /// record as of it (one REPEATABLE READ transaction).
    pub fn snapshot(&self) -> Result<(i64, Vec<Op>), StoreError> {
        self.call(|mut c| async move {
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let head: i64 = tx.query_one("SELECT coalesce(max(seq), 0) FROM tollgate_changes", &[]).await?.get(0);
            let rows = tx.query("SELECT tbl, id, value FROM tollgate_records", &[]).await?;
            tx.commit().await?;
            Ok((head, rows))
        })
        .and_then(|(head, rows)| {
            let mut ops = Vec::with_capacity(rows.len());
            for row in rows {
                let (tbl, id, value): (String, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
                let table = tag_of(&tbl).ok_or_else(|| StoreError::Corrupt {
                    key: format!("tollgate_records/{tbl}/{id}"),
                    why: "unknown table".into(),
                })?;
                ops.push(Op { table, id, value: Some(value) });
            }
            Ok((head, ops))
        })
    }

    /// The changes after `seq`, in order (at most `CATCH_UP_BATCH`).
    pub fn changes_after(&self, seq: i64) -> Result<Vec<(i64, Change)>, StoreError> {
        let rows = self.call(move |c| async move {
            c.query(
                "SELECT seq, body FROM tollgate_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq, &CATCH_UP_BATCH],
            )
            .await
        })?;
        decode_rows(rows)
    }

    /// Deletes the changes older than `retention` (by their commit time),
    /// never the newest (the head gives the next change its `seq`, and a
    /// starting node its position). One node at a time: `None` when another
    /// holds the prune lock, else how many were deleted.
    pub fn prune_log(&self, retention: Duration) -> Result<Option<u64>, StoreError> {
        let ms = retention.as_millis() as f64;
        self.call(move |mut c| async move {
            let tx = c.transaction().await?;
            let mine: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK]).await?.get(0);
            if !mine {
                return Ok(None);
            }
            let n = tx
                .execute(
                    "DELETE FROM tollgate_changes
                     WHERE seq < (SELECT max(seq) FROM tollgate_changes)
                       AND at < now() - $1 * interval '1 millisecond'",
                    &[&ms],
                )
                .await?;
            tx.commit().await?;
            Ok(Some(n))
        })
    }

    /// Starts an admin write: a transaction holding the cluster's admin lock,
    /// so admin writes are serialized across every node as the engine's admin
    /// mutex serializes them on one. The caller catches up with
    /// [`AdminTx::changes_after`] before it reads anything to decide on.
    pub fn begin_admin(self: &Arc<Self>) -> Result<AdminTx, StoreError> {
        let pool = self.pool.clone();
        let obj = self.block(async move {
            let c = pool.get().await.map_err(pool_err)?;
            c.batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '10s'; SELECT pg_advisory_xact_lock({ADMIN_LOCK})"
            ))
            .await
            .map_err(pg_err)?;
            Ok(c)
        })?;
        Ok(AdminTx { cluster: self.clone(), obj: Some(obj) })
    }

    /// Leases uses of `key` to this node with one statement: takes up to
    /// `want` from the shared count into this node's reserve (the reserve
    /// its lease row records, whatever this node believes it to be), then
    /// moves up to `activate` of the reserve to the node's active part,
    /// recording the reserve left. The node spends only what this returns
    /// as moved, once the statement has committed: the recorded reserve is
    /// never spent, so an expired row's reserve can be given back
    /// ([`Cluster::heartbeat`]). `active` is the node's unspent active
    /// part before this (recorded as part of the row's `amount`).
    ///
    /// With a `refill` (the key's amount and interval), a count whose
    /// period has passed on PostgreSQL's clock is first set to the refill
    /// amount for the current period; a lease of an older period counts no
    /// reserve. `None` when the key has no shared count.
    pub fn take_lease(
        &self,
        key: &str,
        want: u32,
        activate: u32,
        active: u32,
        refill: Option<crate::core::model::Refill>,
    ) -> Result<Option<Grant>, StoreError> {
        let (key, node, ttl) = (key.to_owned(), self.node.clone(), self.settings.lease_ttl_ms as f64);
        let (want, activate, active) = (i64::from(want), i64::from(activate), i64::from(active));
        let (amount, every) =
            refill.map_or((0, 0), |r| (i64::from(r.amount), i64::try_from(r.interval_ms).unwrap_or(i64::MAX).max(1)));
        let row = self.call(move |c| async move {
            c.query_opt(
                "WITH n AS (
                     SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms
                 ), c0 AS (
                     SELECT key_id, generation, remaining, period, set_ms
                     FROM tollgate_credits WHERE key_id = $1 FOR UPDATE
                 ), c AS (
                     SELECT c0.key_id, c0.generation, c0.set_ms, n.ms,
                            CASE WHEN $8::bigint > 0 AND (n.ms - c0.set_ms) / GREATEST($8::bigint, 1) > c0.period
                                 THEN (n.ms - c0.set_ms) / GREATEST($8::bigint, 1) ELSE c0.period END AS period,
                            CASE WHEN $8::bigint > 0 AND (n.ms - c0.set_ms) / GREATEST($8::bigint, 1) > c0.period
                                 THEN $7::bigint ELSE c0.remaining END AS remaining
                     FROM c0, n
                 ), o AS (
                     SELECT l.reserve FROM tollgate_leases l
                     JOIN c ON l.key_id = c.key_id AND l.generation = c.generation AND l.period = c.period
                     WHERE l.node = $2 FOR UPDATE OF l
                 ), p AS (
                     SELECT c.*, LEAST(c.remaining, $3) AS g, coalesce((SELECT reserve FROM o), 0) AS have FROM c
                 ), m AS (
                     SELECT p.*, LEAST($4, p.have + p.g) AS mv FROM p
                 ), u AS (
                     UPDATE tollgate_credits t SET remaining = m.remaining - m.g, period = m.period
                     FROM m WHERE t.key_id = m.key_id
                     RETURNING m.g, m.mv, m.have + m.g - m.mv AS reserve, m.generation, m.period, m.ms, m.set_ms
                 ), l AS (
                     INSERT INTO tollgate_leases (key_id, node, generation, period, amount, reserve, expires_at)
                     SELECT $1, $2, u.generation, u.period, $5 + u.mv + u.reserve, u.reserve,
                            now() + $6 * interval '1 millisecond'
                     FROM u
                     ON CONFLICT (key_id, node) DO UPDATE SET
                         amount = EXCLUDED.amount,
                         reserve = EXCLUDED.reserve,
                         generation = EXCLUDED.generation,
                         period = EXCLUDED.period,
                         expires_at = EXCLUDED.expires_at
                 )
                 SELECT g, mv, reserve, generation, period, ms,
                        CASE WHEN $8::bigint > 0 THEN set_ms + (period + 1) * $8 ELSE 0 END
                 FROM u",
                &[&key, &node, &want, &activate, &active, &ttl, &amount, &every],
            )
            .await
        })?;
        let n = |r: &tokio_postgres::Row, i| u32::try_from(r.get::<_, i64>(i)).unwrap_or(0);
        Ok(row.map(|r| Grant {
            taken: n(&r, 0),
            moved: n(&r, 1),
            reserve: n(&r, 2),
            generation: r.get(3),
            period: r.get(4),
            pg_now_ms: r.get(5),
            period_ends_ms: r.get(6),
        }))
    }

    /// Leases up to `want` requests of the current window of `key` (a key's
    /// rate limit, or a team's minute: the row's id) — `max` per
    /// `window_ms`, opened if the last one has ended: now, or with
    /// `aligned` at the start of the window of the epoch's multiples of
    /// `window_ms` containing now (a calendar minute) — with one locked
    /// update; returns the window's end and PostgreSQL's time now (ms since
    /// the epoch, its clock: the nodes' clocks never decide a window), and
    /// the requests granted.
    pub fn take_rate(
        &self,
        key: &str,
        want: u32,
        max: u32,
        window_ms: u64,
        aligned: bool,
    ) -> Result<(i64, i64, u32), StoreError> {
        let key = key.to_owned();
        let (want, max, window) =
            (i64::from(want), i64::from(max), i64::try_from(window_ms).unwrap_or(i64::MAX).max(1));
        let row = self.call(move |c| async move {
            c.execute(
                "INSERT INTO tollgate_windows (key_id, started_ms, used) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING",
                &[&key],
            )
            .await?;
            c.query_one(
                "WITH n AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
                 w AS (SELECT key_id, started_ms, used FROM tollgate_windows WHERE key_id = $1 FOR UPDATE),
                 c AS (
                     SELECT w.key_id, n.ms,
                            CASE WHEN n.ms < w.started_ms + $4 THEN w.started_ms
                                 WHEN $5 THEN n.ms - n.ms % $4
                                 ELSE n.ms END AS start,
                            CASE WHEN n.ms >= w.started_ms + $4 THEN 0 ELSE w.used END AS base
                     FROM w, n
                 ),
                 u AS (
                     UPDATE tollgate_windows t
                     SET started_ms = c.start, used = c.base + LEAST($2, GREATEST($3 - c.base, 0))
                     FROM c WHERE t.key_id = c.key_id
                     RETURNING c.start + $4 AS ends, c.ms, LEAST($2, GREATEST($3 - c.base, 0)) AS g
                 )
                 SELECT ends, ms, g FROM u",
                &[&key, &want, &max, &window, &aligned],
            )
            .await
        })?;
        let granted = u32::try_from(row.get::<_, i64>(2)).unwrap_or(0);
        Ok((row.get(0), row.get(1), granted))
    }

    /// The requests taken by the nodes in the current window of `key` (a
    /// team's minute, a key's rate limit) if it has not ended at
    /// PostgreSQL's time now (`window_ms` long); 0 otherwise.
    pub fn window_used(&self, key: &str, window_ms: u64) -> Result<u64, StoreError> {
        let key = key.to_owned();
        let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
        let row = self.call(move |c| async move {
            c.query_opt(
                "SELECT used FROM tollgate_windows
                 WHERE key_id = $1 AND (extract(epoch FROM clock_timestamp()) * 1000)::bigint < started_ms + $2",
                &[&key, &window],
            )
            .await
        })?;
        Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    /// Acquires `amount` documents of `team`'s quota if that keeps it
    /// within `limit` (`None`: unlimited), with one statement; returns the
    /// documents used after it, or (refused) as they stand.
    pub fn acquire_documents(
        &self,
        team: &str,
        amount: u64,
        limit: Option<u64>,
    ) -> Result<Result<u64, u64>, StoreError> {
        let team = team.to_owned();
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let (took, used) = self.call(move |c| async move {
            let took = c
                .query_opt(
                    "INSERT INTO tollgate_documents AS d (team_id, used) SELECT $1::text, $2::bigint WHERE $2::bigint <= $3::bigint
                     ON CONFLICT (team_id) DO UPDATE SET used = d.used + EXCLUDED.used
                         WHERE d.used <= $3 - EXCLUDED.used
                     RETURNING used",
                    &[&team, &amount, &limit],
                )
                .await?;
            match took {
                Some(r) => Ok((true, r.get::<_, i64>(0))),
                None => {
                    let r = c
                        .query_one(
                            "SELECT coalesce((SELECT used FROM tollgate_documents WHERE team_id = $1), 0)",
                            &[&team],
                        )
                        .await?;
                    Ok((false, r.get::<_, i64>(0)))
                }
            }
        })?;
        let used = u64::try_from(used).unwrap_or(0);
        Ok(if took { Ok(used) } else { Err(used) })
    }

    /// Releases `amount` documents of `team`'s quota (never below zero)
    /// once: release `id` applied before (an answer lost, then retried) is
    /// not applied again. Returns the documents used after it.
    pub fn release_documents(&self, id: &str, team: &str, amount: u64) -> Result<u64, StoreError> {
        let (id, team) = (id.to_owned(), team.to_owned());
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        let used = self.call(move |mut c| async move {
            let tx = c.transaction().await?;
            let first = tx
                .execute("INSERT INTO tollgate_document_releases (id) VALUES ($1) ON CONFLICT DO NOTHING", &[&id])
                .await?;
            if first == 1 {
                tx.execute(
                    "UPDATE tollgate_documents SET used = GREATEST(used - $2, 0) WHERE team_id = $1",
                    &[&team, &amount],
                )
                .await?;
            }
            let used: i64 = tx
                .query_one("SELECT coalesce((SELECT used FROM tollgate_documents WHERE team_id = $1), 0)", &[&team])
                .await?
                .get(0);
            tx.commit().await?;
            Ok(used)
        })?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    /// The documents every team uses (teams that never acquired any are
    /// absent).
    pub fn documents(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.call(|c| async move { c.query("SELECT team_id, used FROM tollgate_documents", &[]).await })?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))).collect())
    }

    /// The documents `team` uses.
    pub fn documents_used(&self, team: &str) -> Result<u64, StoreError> {
        let team = team.to_owned();
        let row = self.call(move |c| async move {
            c.query_one("SELECT coalesce((SELECT used FROM tollgate_documents WHERE team_id = $1), 0)", &[&team]).await
        })?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// The uses of `keys` (with their refill, if any) not held by this
    /// node: each key's shared count plus the other nodes' leases of its
    /// generation and period, as of their last heartbeat — or, when a
    /// refill is due on PostgreSQL's clock, the refill amount. Keys
    /// without a count are absent.
    pub fn remaining(
        &self,
        keys: Vec<(String, Option<crate::core::model::Refill>)>,
    ) -> Result<std::collections::HashMap<String, Shared>, StoreError> {
        let node = self.node.clone();
        let (mut ids, mut amounts, mut everys) = (Vec::new(), Vec::new(), Vec::new());
        for (k, r) in keys {
            ids.push(k);
            amounts.push(r.map_or(0, |r| i64::from(r.amount)));
            everys.push(r.map_or(0, |r| i64::try_from(r.interval_ms).unwrap_or(i64::MAX).max(1)));
        }
        let rows = self.call(move |c| async move {
            c.query(
                "WITH n AS (
                     SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms
                 ), k AS (
                     SELECT * FROM unnest($1::text[], $3::bigint[], $4::bigint[]) AS k(key_id, amount, every)
                 ), c AS (
                     SELECT c.*, k.amount, k.every,
                            k.every > 0 AND (n.ms - c.set_ms) / GREATEST(k.every, 1) > c.period AS due,
                            CASE WHEN k.every > 0 THEN GREATEST(c.period, (n.ms - c.set_ms) / GREATEST(k.every, 1))
                                 ELSE c.period END AS now_period
                     FROM tollgate_credits c JOIN k USING (key_id), n
                 )
                 SELECT c.key_id,
                        CASE WHEN c.due THEN c.amount ELSE c.remaining + coalesce((
                            SELECT sum(l.amount) FROM tollgate_leases l
                            WHERE l.key_id = c.key_id AND l.node <> $2 AND l.generation = c.generation
                              AND l.period = c.period), 0)::bigint END,
                        c.due, c.set_ms, c.now_period
                 FROM c",
                &[&ids, &node, &amounts, &everys],
            )
            .await
        })?;
        let u = |r: &tokio_postgres::Row, i| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|r| {
                let shared = Shared { uses: u(r, 1), due: r.get(2), anchor_ms: u(r, 3), period: u(r, 4) };
                (r.get::<_, String>(0), shared)
            })
            .collect())
    }

    /// The generation of each of `keys`' shared count (the seq of the change
    /// that last set it); keys without a count are absent.
    pub fn generations(&self, keys: Vec<String>) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows = self.call(move |c| async move {
            c.query("SELECT key_id, generation FROM tollgate_credits WHERE key_id = ANY($1)", &[&keys]).await
        })?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect())
    }

    /// Gives back this node's leases of `keys` (key, unspent active uses,
    /// the generation they were leased under) and ends them: each key's
    /// active uses and the reserve its lease row records go back to the
    /// shared count if its generation is still theirs (a count set since
    /// gets nothing). A row another node expired meanwhile has given its
    /// reserve back already and is gone: only the active part is returned.
    pub fn return_leases(&self, keys: Vec<Returned>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let node = self.node.clone();
        let (mut ids, mut ns, mut gens, mut periods) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in keys {
            ids.push(k.key);
            ns.push(i64::from(k.active));
            gens.push(k.generation);
            periods.push(k.period);
        }
        self.call(move |mut c| async move {
            let tx = c.transaction().await?;
            // The counts first, in key order, as every statement that locks
            // both a count and a lease row does (no deadlock).
            tx.execute("SELECT 1 FROM tollgate_credits WHERE key_id = ANY($1) ORDER BY key_id FOR UPDATE", &[&ids])
                .await?;
            tx.execute(
                "WITH h AS (
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $5::bigint[])
                         AS h(key_id, n, generation, period)
                 ), d AS (
                     DELETE FROM tollgate_leases l WHERE l.node = $4 AND l.key_id = ANY($1)
                     RETURNING l.key_id, l.generation, l.period, l.reserve
                 )
                 UPDATE tollgate_credits c SET remaining = c.remaining
                     + coalesce((SELECT sum(h.n) FROM h WHERE h.key_id = c.key_id
                                 AND h.generation = c.generation AND h.period = c.period), 0)
                     + coalesce((SELECT sum(d.reserve) FROM d WHERE d.key_id = c.key_id
                                 AND d.generation = c.generation AND d.period = c.period), 0)
                 WHERE c.key_id = ANY($1)",
                &[&ids, &ns, &gens, &node, &periods],
            )
            .await?;
            tx.commit().await
        })
    }

    /// Keeps this node's leases alive (`expires_at` moved to now + TTL) and
    /// records what each holds (`held`: key, unspent active uses, plus the
    /// recorded reserve), then ends the expired leases of every node,
    /// giving their recorded reserve back to the shared count (if its
    /// generation is still theirs). Returns this node's rows (key, recorded
    /// reserve): a key held and absent there lost its row (it expired, and
    /// its reserve went back).
    pub fn heartbeat(&self, held: Vec<(String, u32)>) -> Result<Heartbeat, StoreError> {
        let (node, ttl) = (self.node.clone(), self.settings.lease_ttl_ms as f64);
        let (keys, amounts): (Vec<String>, Vec<i64>) = held.into_iter().map(|(k, n)| (k, i64::from(n))).unzip();
        self.call(move |mut c| async move {
            c.execute(
                "UPDATE tollgate_leases l SET amount = h.amount + l.reserve,
                     expires_at = now() + $2 * interval '1 millisecond'
                 FROM unnest($3::text[], $4::bigint[]) AS h(key_id, amount)
                 WHERE l.node = $1 AND l.key_id = h.key_id",
                &[&node, &ttl, &keys, &amounts],
            )
            .await?;
            let rows = c
                .query(
                    "UPDATE tollgate_leases SET expires_at = now() + $2 * interval '1 millisecond' WHERE node = $1
                     RETURNING key_id, reserve",
                    &[&node, &ttl],
                )
                .await?;
            let tx = c.transaction().await?;
            tx.execute(
                "SELECT 1 FROM tollgate_credits WHERE key_id IN
                     (SELECT key_id FROM tollgate_leases WHERE expires_at < now())
                 ORDER BY key_id FOR UPDATE",
                &[],
            )
            .await?;
            let expired = tx
                .query_one(
                    "WITH d AS (
                         DELETE FROM tollgate_leases WHERE expires_at < now()
                         RETURNING key_id, generation, period, reserve
                     ), s AS (
                         SELECT key_id, generation, period, sum(reserve) AS r FROM d
                         GROUP BY key_id, generation, period
                     ), u AS (
                         UPDATE tollgate_credits c SET remaining = c.remaining + s.r
                         FROM s WHERE c.key_id = s.key_id AND c.generation = s.generation AND c.period = s.period
                         RETURNING s.r
                     )
                     SELECT (SELECT count(*) FROM d), coalesce((SELECT sum(r) FROM u), 0)::bigint",
                    &[],
                )
                .await?;
            tx.commit().await?;
            // Release ids are kept a week: a release retried later than
            // that would be applied again.
            c.execute("DELETE FROM tollgate_document_releases WHERE at < now() - interval '7 days'", &[]).await?;
            let mine = rows.iter().map(|r| (r.get::<_, String>(0), u32::try_from(r.get::<_, i64>(1)).unwrap_or(0)));
            Ok(Heartbeat {
                mine: mine.collect(),
                expired: u64::try_from(expired.get::<_, i64>(0)).unwrap_or(0),
                returned: u64::try_from(expired.get::<_, i64>(1)).unwrap_or(0),
            })
        })
    }

    /// Listens for changes on a connection of its own, forever: `wake` is
    /// called for every change announced and after every (re)connection (a
    /// notification missed while disconnected is caught up from the log).
    pub fn listen(self: &Arc<Self>, wake: Arc<dyn Fn() + Send + Sync>) {
        let (pg, tls, health, stopping) =
            (self.pg.clone(), self.tls.clone(), self.health.clone(), self.stopping.clone());
        self.rt().spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !stopping.load(Ordering::Acquire) {
                let result = listen_once(&pg, &tls, &health, &*wake).await;
                if health.listening.swap(false, Ordering::AcqRel) {
                    health.lost_at_ms.store(crate::core::clock::now_us() / 1000, Ordering::Release);
                    backoff = Duration::from_millis(100);
                }
                if let Err(e) = result
                    && !stopping.load(Ordering::Acquire)
                {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "cluster: change listener has no connection");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Stops the listener (shutdown).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn listen_once(
    pg: &tokio_postgres::Config,
    tls: &tls::MakeRustls,
    health: &Health,
    wake: &(dyn Fn() + Send + Sync),
) -> Result<(), StoreError> {
    let (client, mut conn) = pg.connect(tls.clone()).await.map_err(pg_err)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection is driven by its own task; notifications come back here.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(pg_err)?;
    health.listening.store(true, Ordering::Release);
    tracing::info!("cluster: listening for changes");
    wake();
    while rx.recv().await.is_some() {
        // Several notifications queued: one catch-up reads them all.
        while rx.try_recv().is_ok() {}
        wake();
    }
    drop(client);
    match driver.await {
        Ok(Ok(())) => Err(StoreError::Db("postgresql: the listener's connection closed".into())),
        Ok(Err(e)) => Err(pg_err(e)),
        Err(e) => Err(StoreError::Db(format!("postgresql: the listener's task failed: {e}"))),
    }
}

/// The migrations applied, or why none may be (a schema newer than this
/// build).
async fn migrate_locked(c: &mut Object) -> Result<Result<Vec<String>, String>, tokio_postgres::Error> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS tollgate_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let done: Vec<i32> =
        c.query("SELECT version FROM tollgate_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    if let Some(newer) = done.iter().copied().filter(|v| *v > schema_version()).max() {
        return Ok(Err(format!(
            "the database's schema is at version {newer}, newer than this tollgate knows ({}): upgrade this node",
            schema_version()
        )));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        if done.contains(&m.version) {
            continue;
        }
        let tx = c.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute("INSERT INTO tollgate_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name]).await?;
        tx.commit().await?;
        applied.push(m.name.to_owned());
    }
    Ok(Ok(applied))
}

/// The newest schema version this build knows.
pub fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn tag_of(tbl: &str) -> Option<u8> {
    match tbl.as_bytes() {
        [b] if Table::from_tag(*b).is_some_and(Table::replicated) => Some(*b),
        _ => None,
    }
}

fn decode_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<(i64, Change)>, StoreError> {
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            Ok((seq, Change::decode(seq, r.get::<_, &[u8]>(1))?))
        })
        .collect()
}

/// An admin write in progress: a transaction holding the cluster's admin
/// lock. Committed by [`AdminTx::commit`]; rolled back when dropped.
pub struct AdminTx {
    cluster: Arc<Cluster>,
    obj: Option<Object>,
}

impl AdminTx {
    /// The changes after `seq` (read under the lock: nothing can be
    /// committed between them and this transaction's own change).
    pub fn changes_after(&mut self, seq: i64) -> Result<Vec<(i64, Change)>, StoreError> {
        let obj = self.obj.take().ok_or_else(|| StoreError::Db("postgresql: the admin transaction ended".into()))?;
        let (obj, rows) = self.cluster.block(async move {
            let r = obj
                .query(
                    "SELECT seq, body FROM tollgate_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&seq, &CATCH_UP_BATCH],
                )
                .await;
            Ok((obj, r))
        })?;
        self.obj = Some(obj);
        decode_rows(rows.map_err(pg_err)?)
    }

    /// Commits `change` as log entry `seq` (the head this node has applied,
    /// plus one), with its records and credits, and announces it.
    pub fn commit(mut self, seq: i64, change: &Change) -> Result<(), StoreError> {
        let obj = self.obj.take().ok_or_else(|| StoreError::Db("postgresql: the admin transaction ended".into()))?;
        let body = change.encode();
        // The records' final state: the last write of each wins, as in the log.
        let mut last: BTreeMap<(u8, &str), Option<&[u8]>> = BTreeMap::new();
        for op in &change.ops {
            if op.table().is_some_and(Table::replicated) {
                last.insert((op.table, &op.id), op.value.as_deref());
            }
        }
        let (mut put_t, mut put_i, mut put_v, mut del_t, mut del_i) = (vec![], vec![], vec![], vec![], vec![]);
        for ((t, id), v) in last {
            let t = (t as char).to_string();
            match v {
                Some(v) => {
                    put_t.push(t);
                    put_i.push(id.to_owned());
                    put_v.push(v.to_vec());
                }
                None => {
                    del_t.push(t);
                    del_i.push(id.to_owned());
                }
            }
        }
        let (set_k, set_n): (Vec<String>, Vec<i64>) =
            change.credits.iter().filter_map(|(k, n)| n.map(|n| (k.clone(), i64::from(n)))).unzip();
        let mut clear: Vec<String> = change.credits.iter().map(|(k, _)| k.clone()).collect();
        // A removed key takes its count, leases and rate window with it; a
        // removed team its minute.
        let removed: Vec<String> = change
            .ops
            .iter()
            .filter(|o| o.value.is_none() && matches!(o.table(), Some(Table::Keys | Table::Teams)))
            .map(|o| o.id.clone())
            .collect();
        clear.extend(removed.iter().cloned());
        let node = self.cluster.node.clone();
        self.cluster.block(async move {
            let r = async {
                obj.execute(
                    "INSERT INTO tollgate_changes (seq, node, body) VALUES ($1, $2, $3)",
                    &[&seq, &node, &body],
                )
                .await?;
                if !put_t.is_empty() {
                    obj.execute(
                        "INSERT INTO tollgate_records (tbl, id, value)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
                         ON CONFLICT (tbl, id) DO UPDATE SET value = EXCLUDED.value",
                        &[&put_t, &put_i, &put_v],
                    )
                    .await?;
                }
                if !del_t.is_empty() {
                    obj.execute(
                        "DELETE FROM tollgate_records r USING unnest($1::text[], $2::text[]) AS d(tbl, id)
                         WHERE r.tbl = d.tbl AND r.id = d.id",
                        &[&del_t, &del_i],
                    )
                    .await?;
                }
                if !clear.is_empty() {
                    // The counts before their lease rows, as every statement
                    // locking both (a lease taken meanwhile: no deadlock).
                    obj.execute(
                        "SELECT 1 FROM tollgate_credits WHERE key_id = ANY($1) ORDER BY key_id FOR UPDATE",
                        &[&clear],
                    )
                    .await?;
                    obj.execute("DELETE FROM tollgate_leases WHERE key_id = ANY($1)", &[&clear]).await?;
                    obj.execute("DELETE FROM tollgate_credits WHERE key_id = ANY($1)", &[&clear]).await?;
                }
                if !removed.is_empty() {
                    obj.execute("DELETE FROM tollgate_windows WHERE key_id = ANY($1)", &[&removed]).await?;
                    obj.execute("DELETE FROM tollgate_documents WHERE team_id = ANY($1)", &[&removed]).await?;
                }
                if !set_k.is_empty() {
                    obj.execute(
                        "INSERT INTO tollgate_credits (key_id, remaining, generation)
                         SELECT k, n, $3 FROM unnest($1::text[], $2::bigint[]) AS s(k, n)",
                        &[&set_k, &set_n, &seq],
                    )
                    .await?;
                }
                obj.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()]).await?;
                obj.batch_execute("COMMIT").await
            }
            .await;
            if r.is_err() {
                // The connection is in an unknown state: it leaves the pool.
                drop(Object::take(obj));
            }
            r.map_err(pg_err)
        })
    }
}

impl Drop for AdminTx {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            let _ = self.cluster.block(async move {
                if obj.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(obj));
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed, "migrations/ and cluster::MIGRATIONS differ");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
        }
    }

    #[test]
    fn a_change_survives_its_encoding_and_garbage_is_an_error() {
        let c = Change {
            ops: vec![
                Op { table: b'k', id: "key_1".into(), value: Some(vec![1, 2, 3]) },
                Op { table: b'k', id: "key_2".into(), value: None },
            ],
            credits: vec![("key_1".into(), Some(5)), ("key_2".into(), None)],
        };
        assert_eq!(Change::decode(1, &c.encode()).unwrap(), c);
        assert!(Change::decode(1, &[]).is_err());
        assert!(Change::decode(1, &[9, 1]).is_err());
        assert!(Change::decode(1, &[CHANGE_VERSION, 0xff, 0xff, 0xff]).is_err());
    }
}
