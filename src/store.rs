//! Persistence. sled is the source of truth and this is the only file that names
//! it: everyone else sees `Store`, `Table` and the project's own types, so the
//! engine underneath can be swapped.
//!
//! Layout: one sled tree; a record's key is `<table byte>/<id>` and its value a
//! format version byte followed by the record in postcard. One tree means a
//! `batch` covering several tables (a team and all its keys, say) is atomic.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version byte in front of every record of a layout that never changed. A
/// record type whose layout changes implements [`Versioned`]: it is written
/// with its own version byte, and decodes the older ones itself.
const RECORD_VERSION: u8 = 1;

/// A record type whose layout has changed since version 1 (postcard is not
/// self-describing: a field added to a struct makes older records unreadable
/// as the new struct, `#[serde(default)]` notwithstanding). Written with
/// `VERSION` by [`Batch::put_versioned`]; read by
/// [`Store::scan_range_versioned`], which hands the record's version and
/// postcard body to `decode_version`.
pub trait Versioned: Serialize + Sized {
    /// The version new records are written with.
    const VERSION: u8;
    /// Decodes a record written with `version` (this one or an older one);
    /// [`decode_body`] reads a postcard body as any type.
    fn decode_version(version: u8, body: &[u8]) -> Result<Self, String>;
}

/// Reads a record's postcard body (what follows the version byte) as `T`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|e| e.to_string())
}

/// The kinds of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `model::Team`.
    Teams,
    /// `model::User`.
    Users,
    /// `model::ApiKey`.
    Keys,
    /// `model::AccessToken`.
    Tokens,
    /// `model::Usage` of a key or token, by credential id.
    Usage,
    /// Documents used by a team (`u64`), by team id.
    TeamUsage,
    /// Revoked JWT ids → their `exp` (`u64`).
    RevokedJti,
    /// Daemon metadata (e.g. the admin token's hash).
    Meta,
    /// Statistics shards (`Vec<model::Stat>`), by shard number.
    Stats,
    /// Audit events (`audit::AuditEvent`), by `<team>/<time>/<seq>` so that one
    /// team's events are one contiguous, time-ordered range.
    Audit,
    /// Cluster mode: document releases PostgreSQL has not acknowledged yet
    /// (`(team id, amount)`), by release id; retried until it has.
    Releases,
    /// This node's own metadata, never replicated: in cluster mode, the
    /// position in the change log its replicated records are at.
    Node,
}

impl Table {
    /// The tables cluster mode keeps in PostgreSQL and replicates to every
    /// node; the others (counters, statistics, audit) are each node's own.
    pub const REPLICATED: [Table; 6] =
        [Table::Teams, Table::Users, Table::Keys, Table::Tokens, Table::RevokedJti, Table::Meta];

    /// Whether cluster mode replicates this table.
    pub fn replicated(self) -> bool {
        Table::REPLICATED.contains(&self)
    }

    /// The table of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Table> {
        [
            Table::Teams,
            Table::Users,
            Table::Keys,
            Table::Tokens,
            Table::Usage,
            Table::TeamUsage,
            Table::RevokedJti,
            Table::Meta,
            Table::Stats,
            Table::Audit,
            Table::Releases,
            Table::Node,
        ]
        .into_iter()
        .find(|t| t.tag() == tag)
    }

    /// The tag byte that starts this table's keys.
    pub fn tag(self) -> u8 {
        match self {
            Table::Teams => b't',
            Table::Users => b'u',
            Table::Keys => b'k',
            Table::Tokens => b'a',
            Table::Usage => b'c',
            Table::TeamUsage => b'q',
            Table::RevokedJti => b'j',
            Table::Meta => b'm',
            Table::Audit => b'l',
            Table::Stats => b's',
            Table::Releases => b'r',
            Table::Node => b'n',
        }
    }
}

/// How long `Store::open` waits for a lock that a just-closed store still holds.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption).
    #[error("store: {0}")]
    Db(String),
    /// Another process holds the database's lock: another daemon runs on
    /// the same data directory.
    #[error(
        "another process holds the lock on {0}: a tollgate daemon (or a tool) is already running on this data \
         directory; stop it, or give this daemon its own data directory (--data)"
    )]
    Locked(String),
    /// Cluster mode: PostgreSQL cannot be reached (or did not answer in
    /// time); the operation was not acknowledged.
    #[error("the cluster's database cannot be reached: {0}")]
    Unavailable(String),
    /// A record could not be decoded.
    #[error("store: record {key} is unreadable: {why}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What went wrong.
        why: String,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// A group of writes applied atomically by `Store::apply`.
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
    credits: Vec<(String, Option<u32>)>,
}

/// One write of a [`Batch`]: a record put (its stored bytes) or removed.
/// Cluster mode ships these in the change log (`src/cluster.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Op {
    /// The table's tag byte.
    pub table: u8,
    /// The record's id.
    pub id: String,
    /// The stored bytes (version byte + postcard); `None`: removed.
    pub value: Option<Vec<u8>>,
}

impl Op {
    /// The op's table, if its tag is known.
    pub fn table(&self) -> Option<Table> {
        Table::from_tag(self.table)
    }
}

impl Batch {
    /// Writes `value` of a type with its own version byte as `table/id`.
    pub fn put_versioned<T: Versioned>(&mut self, table: Table, id: &str, value: &T) {
        self.ops.push(Op { table: table.tag(), id: id.to_owned(), value: Some(encode_as(T::VERSION, value)) });
    }

    /// Writes `value` as `table/id`.
    pub fn put<T: Serialize>(&mut self, table: Table, id: &str, value: &T) {
        self.ops.push(Op { table: table.tag(), id: id.to_owned(), value: Some(encode(value)) });
    }

    /// Removes `table/id`.
    pub fn remove(&mut self, table: Table, id: &str) {
        self.ops.push(Op { table: table.tag(), id: id.to_owned(), value: None });
    }

    /// Records that key `id`'s remaining uses start again at `remaining`
    /// (`None`: the key no longer has a limit). The embedded store ignores
    /// it; in cluster mode it resets the key's shared count and its leases.
    pub fn reset_credits(&mut self, id: &str, remaining: Option<u32>) {
        self.credits.push((id.to_owned(), remaining));
    }

    /// Number of writes queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The writes, in order, and the credit resets.
    pub fn into_parts(self) -> (Vec<Op>, Vec<(String, Option<u32>)>) {
        (self.ops, self.credits)
    }

    /// A batch of these writes.
    pub fn from_ops(ops: Vec<Op>) -> Batch {
        Batch { ops, credits: Vec::new() }
    }

    fn into_sled(self) -> sled::Batch {
        let mut b = sled::Batch::default();
        for op in self.ops {
            let mut k = Vec::with_capacity(2 + op.id.len());
            k.push(op.table);
            k.push(b'/');
            k.extend_from_slice(op.id.as_bytes());
            match op.value {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        b
    }
}

/// The database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    stats: Arc<StoreStats>,
    /// The last write counter given to a batch (see [`Store::generation`]).
    generation: Arc<AtomicU64>,
    /// This opening's random epoch, written with every counter.
    epoch: u64,
}

/// Where the store keeps its write generation: outside every table (a
/// table's keys start with its tag letter), so no scan, range or snapshot of
/// a table sees it.
const GENERATION: &[u8] = b"\xffgeneration";

/// How the store's writes have gone, for `/metrics` and `/readyz`.
#[derive(Default)]
pub struct StoreStats {
    /// Latency of `apply` (the batch, and the fsync when durable).
    pub writes: crate::core::histogram::Histogram,
    /// Writes that failed.
    pub failures: AtomicU64,
    /// Whether the last write failed (cleared by the next one that succeeds).
    pub failing: AtomicBool,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, with a page cache of
    /// `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        // sled's own periodic flush is off: durability is decided by the engine,
        // which flushes after every acknowledged admin write and on its own
        // counter schedule.
        // sled releases its file lock from a background thread after the last
        // handle is dropped, so a store closed a moment ago (a restart in the
        // same process, or a daemon still exiting) can be briefly locked.
        // Another live daemon holds it for good and fails after the grace.
        let deadline = Instant::now() + LOCK_GRACE;
        loop {
            match sled::Config::new().path(dir).flush_every_ms(None).cache_capacity(cache_bytes).open() {
                Ok(db) => {
                    // The counter goes on from the last one written; the
                    // epoch is new, so that two histories of one directory
                    // (a backup restored, then written to) never write the
                    // same generation.
                    let counter = (read_generation(&db)? & u128::from(u64::MAX)) as u64;
                    let mut epoch = [0u8; 8];
                    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut epoch)
                        .map_err(|_| StoreError::Db("the system CSPRNG failed".into()))?;
                    let (generation, epoch) = (Arc::new(AtomicU64::new(counter)), u64::from_be_bytes(epoch));
                    return Ok(Store { db, stats: Arc::default(), generation, epoch });
                }
                // sled reports it as `Other` with this text (sled 0.34 config.rs).
                Err(sled::Error::Io(e))
                    if e.to_string().starts_with("could not acquire lock") && Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                    return Err(StoreError::Locked(dir.join("db").display().to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Write latency and failures so far.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Applies `batch` atomically; with `durable`, waits until it is on disk.
    /// Writes of at least one record are timed; the flusher's idle rounds
    /// (nothing queued) are not, so they do not drown the real writes.
    pub fn apply(&self, batch: Batch, durable: bool) -> Result<(), StoreError> {
        let start = Instant::now();
        let timed = !batch.is_empty();
        let result = self.apply_untimed(batch, durable);
        if timed {
            self.stats.writes.observe(start.elapsed());
        }
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.failing.store(result.is_err(), Ordering::Relaxed);
        result
    }

    fn apply_untimed(&self, batch: Batch, durable: bool) -> Result<(), StoreError> {
        if !batch.is_empty() {
            self.apply_sled(batch.into_sled())?;
        }
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    /// Every write goes through here: the batch carries the store's next
    /// write generation, so the generation on disk changes with (and only
    /// with) what the store holds, whatever a crash keeps of the writes.
    fn apply_sled(&self, mut batch: sled::Batch) -> Result<(), StoreError> {
        let counter = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let g = (u128::from(self.epoch) << 64) | u128::from(counter);
        batch.insert(GENERATION, &g.to_be_bytes());
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// The write generation on disk: it changes with every write the store
    /// takes, so a file derived from the store (the key image,
    /// `engine::image`) that recorded it is current while it is equal.
    /// Values of concurrent writes may land out of order, but every write
    /// leaves a value no earlier state of the store had; and since each
    /// opening writes its own random epoch beside the counter, no other
    /// history of the directory (a backup restored and written to) has it
    /// either.
    pub fn generation(&self) -> Result<u128, StoreError> {
        read_generation(&self.db)
    }

    /// Writes one record durably.
    pub fn put<T: Serialize>(&self, table: Table, id: &str, value: &T) -> Result<(), StoreError> {
        let mut b = Batch::default();
        b.put(table, id, value);
        self.apply(b, true)
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table: Table, id: &str) -> Result<Option<T>, StoreError> {
        let k = key(table, id);
        match self.db.get(&k)? {
            None => Ok(None),
            Some(v) => decode(&k, &v).map(Some),
        }
    }

    /// Every record of `table`, as `(id, record)`, in id order.
    pub fn scan<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        let prefix = [table.tag(), b'/'];
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[2..]).into_owned();
            out.push((id, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Every record of `table`, as `(id, record)`, in id order, one at a time
    /// (nothing is collected: a million records are never all in memory).
    pub fn iter<T: DeserializeOwned>(
        &self,
        table: Table,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + '_ {
        self.iter_in(table, &Span::ALL)
    }

    /// [`Store::iter`] over the ids of `span`.
    pub fn iter_in<T: DeserializeOwned>(
        &self,
        table: Table,
        span: &Span,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + '_ {
        self.db.range(span.keys(table)).map(|item| {
            let (k, v) = item?;
            Ok((String::from_utf8_lossy(&k[2..]).into_owned(), decode(&k, &v)?))
        })
    }

    /// Cuts the ids of `table` into at most `parts` spans holding about as
    /// many records each when generated ids are uniform as base62 numbers
    /// (random ones, and time-ordered ones made at an even rate): the ids
    /// between the first and the last are divided evenly as such numbers. In
    /// id order; together they cover every id.
    pub fn split(&self, table: Table, parts: usize) -> Result<Vec<Span>, StoreError> {
        let prefix = [table.tag(), b'/'];
        let first = self.db.scan_prefix(prefix).keys().next().transpose()?;
        let last = self.db.scan_prefix(prefix).keys().next_back().transpose()?;
        let (Some(first), Some(last)) = (first, last) else { return Ok(vec![Span::ALL]) };
        let (a, b) = (&first[2..], &last[2..]);
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        // Generated ids are base62 after their prefix (random, or a creation
        // time then random: `secret::new_timed_id`), so the characters after
        // the common prefix are read as base62 digits, where both kinds are
        // uniform: read as bytes, the gaps between '9' and 'A' and between 'Z'
        // and 'a', and 256 values per place instead of 62, skew the cuts of
        // time-ordered ids. Another byte counts as the digit it sorts before.
        const PLACES: usize = 10; // 62^10 < 2^64
        let number =
            |id: &[u8]| (0..PLACES).fold(0u64, |n, i| n * 62 + id.get(common + i).map_or(0, |&b| base62_rank(b)));
        let (lo, hi) = (number(a), number(b));
        let mut cuts: Vec<Vec<u8>> = (1..parts.max(1))
            .map(|i| {
                let mut v = lo + ((u128::from(hi - lo) * i as u128) / parts as u128) as u64;
                let mut digits = [0u8; PLACES];
                for slot in digits.iter_mut().rev() {
                    *slot = BASE62[(v % 62) as usize];
                    v /= 62;
                }
                let mut cut = a[..common].to_vec();
                cut.extend_from_slice(&digits);
                cut
            })
            .collect();
        cuts.dedup();
        let mut spans = Vec::with_capacity(cuts.len() + 1);
        let mut from = None;
        for cut in cuts {
            spans.push(Span { from: from.take(), to: Some(cut.clone()) });
            from = Some(cut);
        }
        spans.push(Span { from, to: None });
        Ok(spans)
    }

    /// Calls `f` with the id and the undecoded record of every entry of
    /// `table` in `span`, in id order; `f` decodes what it needs with
    /// [`decode_borrowed`] (strings borrowed from the record, not copied).
    /// Stops at `f`'s first error.
    pub fn for_each_raw<E: From<StoreError>>(
        &self,
        table: Table,
        span: &Span,
        mut f: impl FnMut(&str, Raw<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for item in self.db.range(span.keys(table)) {
            let (k, v) = item.map_err(StoreError::from)?;
            let id = std::str::from_utf8(&k[2..]).map_err(|_| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                why: "the id is not UTF-8".to_owned(),
            })?;
            f(id, Raw { key: &k, bytes: &v })?;
        }
        Ok(())
    }

    /// Records of `table` with `from <= id < to`, in id order, or in reverse with
    /// `rev`, at most `limit` of them. The audit log's per-team time ranges.
    pub fn scan_range<T: DeserializeOwned>(
        &self,
        table: Table,
        from: &str,
        to: &str,
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.scan_range_with(table, from, to, rev, limit, decode)
    }

    /// [`Store::scan_range`] for a record type with its own versions.
    pub fn scan_range_versioned<T: Versioned>(
        &self,
        table: Table,
        from: &str,
        to: &str,
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.scan_range_with(table, from, to, rev, limit, decode_versioned)
    }

    fn scan_range_with<T>(
        &self,
        table: Table,
        from: &str,
        to: &str,
        rev: bool,
        limit: usize,
        decode: impl Fn(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let range = self.db.range(key(table, from)..key(table, to));
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if rev { Box::new(range.rev()) } else { Box::new(range) };
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[2..]).into_owned();
            out.push((id, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// The ids (not the records) of `table` with `from <= id < to`, in id
    /// order, at most `limit`: the oldest events of an audit team, to trim.
    pub fn ids_range(&self, table: Table, from: &str, to: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.range(key(table, from)..key(table, to)).keys().take(limit) {
            let k = item?;
            out.push(String::from_utf8_lossy(&k[2..]).into_owned());
        }
        Ok(out)
    }

    /// Calls `f` with every id of `table`, in id order, without decoding the
    /// records (counting the audit events per team at start).
    pub fn for_each_id(&self, table: Table, mut f: impl FnMut(&str)) -> Result<(), StoreError> {
        let prefix = [table.tag(), b'/'];
        for item in self.db.scan_prefix(prefix).keys() {
            let k = item?;
            f(&String::from_utf8_lossy(&k[2..]));
        }
        Ok(())
    }

    /// Removes the records of `table` with `from <= id < to`; returns how many.
    /// Not flushed: the engine's next flush makes it durable.
    pub fn remove_range(&self, table: Table, from: &str, to: &str) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.db.range(key(table, from)..key(table, to)) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        if n > 0 {
            self.apply_sled(batch)?;
        }
        Ok(n)
    }

    /// Every `(id, stored bytes)` of `table`, undecoded (cluster mode
    /// compares a snapshot with what this store holds).
    pub fn raw_ids(&self, table: Table) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.for_each_id(table, |id| out.push(id.to_owned()))?;
        Ok(out)
    }

    /// Reads a record's stored bytes as `T` (a value that came from
    /// another node's store, in cluster mode).
    pub fn decode_value<T: DeserializeOwned>(table: Table, id: &str, bytes: &[u8]) -> Result<T, StoreError> {
        decode(&key(table, id), bytes)
    }

    /// Waits until every write so far is on disk (fsync).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The generation on disk: the random epoch of the opening that wrote it
/// (high 64 bits), then the write counter.
fn read_generation(db: &sled::Db) -> Result<u128, StoreError> {
    match db.get(GENERATION)? {
        None => Ok(0),
        // 8 bytes: a counter written before epochs were (no epoch).
        Some(v) if v.len() == 8 => Ok(u128::from(u64::from_be_bytes(v.as_ref().try_into().unwrap_or_default()))),
        Some(v) => v
            .as_ref()
            .try_into()
            .map(u128::from_be_bytes)
            .map_err(|_| StoreError::Db(format!("the store's write generation is {} bytes, not 16", v.len()))),
    }
}

fn key(table: Table, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + id.len());
    k.push(table.tag());
    k.push(b'/');
    k.extend_from_slice(id.as_bytes());
    k
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(RECORD_VERSION, value)
}

fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    // postcard fails only on types it cannot represent (maps with non-string
    // keys are fine; `serde_json::Value` is not used in records), which would be
    // a programming error caught by the store's tests.
    postcard::to_extend(value, vec![version]).expect("record types are postcard-encodable")
}

/// The base62 digits in byte order (`secret`'s alphabet).
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `b`'s place among the base62 digits; a byte that is not one counts as
/// the digit it sorts before (61 past 'z'), so the order of ids is kept.
fn base62_rank(b: u8) -> u64 {
    (BASE62.partition_point(|&d| d < b) as u64).min(61)
}

/// A span of ids, `from <= id < to` (`None`: unbounded), compared as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
}

impl Span {
    /// Every id.
    pub const ALL: Span = Span { from: None, to: None };

    fn keys(&self, table: Table) -> std::ops::Range<Vec<u8>> {
        let bound = |id: &Option<Vec<u8>>, open: u8| {
            let mut k = vec![table.tag()];
            match id {
                Some(id) => {
                    k.push(b'/');
                    k.extend_from_slice(id);
                }
                // Just before or just after every `<tag>/...` key.
                None => k.push(open),
            }
            k
        };
        bound(&self.from, b'/')..bound(&self.to, b'/' + 1)
    }
}

/// A record as stored, handed out by [`Store::for_each_raw`].
#[derive(Clone, Copy)]
pub struct Raw<'a> {
    key: &'a [u8],
    bytes: &'a [u8],
}

impl<'a> Raw<'a> {
    /// The stored bytes (version byte + postcard), as cluster mode ships them.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Decodes a record of a layout that never changed as `T`, which may borrow
/// its strings from the record.
pub fn decode_borrowed<'a, T: serde::Deserialize<'a>>(raw: Raw<'a>) -> Result<T, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt { key: String::from_utf8_lossy(raw.key).into_owned(), why };
    match raw.bytes.split_first() {
        Some((&RECORD_VERSION, body)) => postcard::from_bytes(body).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

fn decode_versioned<T: Versioned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), why };
    match bytes.split_first() {
        Some((&v, body)) if (1..=T::VERSION).contains(&v) => T::decode_version(v, body).map_err(corrupt),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), why };
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => postcard::from_bytes(body).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Team, Tier};

    fn team(id: &str) -> Team {
        Team { id: id.into(), name: format!("team {id}"), tier: Tier::Start, created_at: 1, updated_at: 2 }
    }

    /// Time-ordered ids made at an even rate (as an import makes them) are
    /// cut into spans of about as many ids each, and the spans cover them all.
    #[test]
    fn split_shares_time_ordered_ids_evenly() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // 20,000 ids over 40 s from a time near a base62 carry ('Z' to 'a').
        let start = 1_796_000_000_000u64;
        let mut b = Batch::default();
        for i in 0..20_000u64 {
            b.put(Table::TeamUsage, &crate::core::secret::new_timed_id(&rng, "key_", start + i * 2), &i);
        }
        s.apply(b, false).unwrap();
        for parts in [2, 3, 8] {
            let spans = s.split(Table::TeamUsage, parts).unwrap();
            let counts: Vec<usize> = spans.iter().map(|sp| s.iter_in::<u64>(Table::TeamUsage, sp).count()).collect();
            assert_eq!(counts.iter().sum::<usize>(), 20_000, "{counts:?}");
            let even = 20_000 / parts;
            assert!(counts.iter().all(|&c| c.abs_diff(even) < even / 5), "{parts} parts: {counts:?}");
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1 << 20).unwrap();
            s.put(Table::Teams, "a", &team("a")).unwrap();
            s.put(Table::Teams, "b", &team("b")).unwrap();
            s.put(Table::TeamUsage, "a", &7u64).unwrap();
            let mut b = Batch::default();
            b.remove(Table::Teams, "b");
            b.put(Table::Meta, "x", &"y".to_owned());
            s.apply(b, true).unwrap();
        }
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let teams: Vec<(String, Team)> = s.scan(Table::Teams).unwrap();
        assert_eq!(teams, vec![("a".to_owned(), team("a"))]);
        assert_eq!(s.get::<u64>(Table::TeamUsage, "a").unwrap(), Some(7));
        assert_eq!(s.get::<String>(Table::Meta, "x").unwrap().as_deref(), Some("y"));
        assert_eq!(s.get::<u64>(Table::TeamUsage, "b").unwrap(), None);
    }

    #[test]
    fn a_store_in_use_is_refused_after_the_grace_and_a_closed_one_reopens_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), 1 << 20).unwrap();
        let start = Instant::now();
        assert!(Store::open(dir.path(), 1 << 20).is_err(), "two stores on one directory");
        assert!(start.elapsed() >= LOCK_GRACE);
        drop(first);
        for _ in 0..20 {
            Store::open(dir.path(), 1 << 20).expect("a store just closed reopens");
        }
    }

    #[test]
    fn unknown_version_and_garbage_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        s.db.insert(b"t/x", vec![9u8, 1, 2]).unwrap();
        s.db.insert(b"t/y", vec![RECORD_VERSION, 0xff, 0xff]).unwrap();
        s.db.insert(b"t/z", Vec::<u8>::new()).unwrap();
        assert!(matches!(s.get::<Team>(Table::Teams, "x"), Err(StoreError::Corrupt { .. })));
        assert!(matches!(s.get::<Team>(Table::Teams, "y"), Err(StoreError::Corrupt { .. })));
        assert!(matches!(s.get::<Team>(Table::Teams, "z"), Err(StoreError::Corrupt { .. })));
        assert!(s.scan::<Team>(Table::Teams).is_err());
    }
}
