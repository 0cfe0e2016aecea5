//! The in-memory index the verifier reads: small entries with atomic counters,
//! built from the store's records by `engine` and swapped or mutated in place when
//! an administrator changes something, so the very next verification sees it.

use std::borrow::Borrow;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crossbeam_queue::SegQueue;
use dashmap::DashMap;
use ipnet::IpNet;

use super::limits::{AnchoredWindow, FixedWindow, Quota, RateLease, Uses};
use super::model::{AccessToken, ApiKey, Millis, RateLimit, Refill, Role, Tier, UserStatus};
use super::perms::PermSet;
use super::readmap::{ReadGuard, ReadMap};

/// Hasher for maps keyed by a SHA-256 digest: the digest is already uniformly
/// distributed, so its first eight bytes are the hash. An attacker cannot
/// choose where their misses land without breaking SHA-256 preimages, and only
/// stored keys (random secrets) occupy buckets.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes in one call; anything else would be a
        // bug, and folding keeps even that correct.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

/// The credential a secret's hash points at (an owned, counted reference;
/// what [`SecretMap::insert`] takes and [`SecretMap::get`] gives).
#[derive(Clone)]
pub enum Secret {
    /// An API key.
    Key(Arc<KeyEntry>),
    /// A personal access token.
    Token(Arc<TokenEntry>),
}

/// The credential a lookup found, borrowed under the map's guard.
#[derive(Clone, Copy)]
pub enum SecretRef<'g> {
    /// An API key.
    Key(&'g Arc<KeyEntry>),
    /// A personal access token.
    Token(&'g Arc<TokenEntry>),
}

impl SecretRef<'_> {
    /// The owned form.
    pub fn to_owned(self) -> Secret {
        match self {
            SecretRef::Key(k) => Secret::Key(k.clone()),
            SecretRef::Token(t) => Secret::Token(t.clone()),
        }
    }
}

/// An entry that is its own key in [`Index::secrets`]: hashed and compared
/// as the SHA-256 it holds and borrowed as `[u8; 32]`, so a map slot is one
/// pointer and holds no copy of the hash.
struct ByHash<T: Hashed>(Arc<T>);

// Not derived: that would ask `T: Clone`.
impl<T: Hashed> Clone for ByHash<T> {
    fn clone(&self) -> ByHash<T> {
        ByHash(self.0.clone())
    }
}

/// What holds the SHA-256 of its secret.
trait Hashed {
    fn secret_hash(&self) -> &[u8; 32];
}

impl Hashed for KeyEntry {
    fn secret_hash(&self) -> &[u8; 32] {
        &self.hash
    }
}

impl Hashed for TokenEntry {
    fn secret_hash(&self) -> &[u8; 32] {
        &self.record.hash
    }
}

impl<T: Hashed> Borrow<[u8; 32]> for ByHash<T> {
    fn borrow(&self) -> &[u8; 32] {
        self.0.secret_hash()
    }
}

impl<T: Hashed> PartialEq for ByHash<T> {
    fn eq(&self, other: &ByHash<T>) -> bool {
        self.0.secret_hash() == other.0.secret_hash()
    }
}

impl<T: Hashed> Eq for ByHash<T> {}

impl<T: Hashed> Hash for ByHash<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `[u8; 32]` hashes, so that a lookup by hash finds it.
        self.0.secret_hash().hash(state);
    }
}

/// A key in [`Index::keys`]: its entry, hashed and compared as its id.
#[derive(Clone)]
struct ById(Arc<KeyEntry>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id.as_str()
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a lookup by `&str` finds it.
        self.0.id.as_str().hash(state);
    }
}

/// A pinned view of [`Index::secrets`]: what a lookup returns stays valid
/// while it is held, even if an administrator replaces or removes the entry
/// meanwhile (it is freed once no guard that could see it is left). Taking
/// one writes only this thread's own slots.
pub struct SecretsGuard<'a> {
    keys: ReadGuard<'a, ByHash<KeyEntry>>,
    tokens: papaya::LocalGuard<'a>,
}

type DigestState = BuildHasherDefault<DigestHasher>;

/// SHA-256 of a secret → its credential: the hot path's one lookup.
///
/// API keys are a [`ReadMap`]: lookups take no lock and write no shared
/// cache line, and are never blocked by a writer; the keys loaded at the
/// start (and folded in since) are a frozen table of 8-byte slots (the
/// entry's `Arc`) with a tag byte each, 1.25 slots a key; the hash is read
/// from the entry itself. Access tokens, a user's few, are a papaya map of
/// their own, looked in when no key has the hash.
pub struct SecretMap {
    keys: ReadMap<ByHash<KeyEntry>, [u8; 32], DigestState>,
    tokens: papaya::HashMap<ByHash<TokenEntry>, (), DigestState>,
}

impl Default for SecretMap {
    fn default() -> SecretMap {
        SecretMap::from_keys(0, std::iter::empty())
    }
}

impl SecretMap {
    /// A map of the `len` keys (distinct hashes) of `keys`, built in one
    /// pass; no token.
    pub fn from_keys(len: usize, keys: impl Iterator<Item = Arc<KeyEntry>>) -> SecretMap {
        SecretMap {
            keys: ReadMap::from_iter(len, keys.map(ByHash), DigestState::default()),
            tokens: papaya::HashMap::builder().hasher(DigestState::default()).build(),
        }
    }

    /// Pins the map, for [`get_in`](SecretMap::get_in).
    pub fn guard(&self) -> SecretsGuard<'_> {
        SecretsGuard { keys: self.keys.guard(), tokens: self.tokens.guard() }
    }

    /// The credential of `hash`, borrowed for as long as `guard` is held.
    pub fn get_in<'g>(&self, hash: &[u8; 32], guard: &'g SecretsGuard<'_>) -> Option<SecretRef<'g>> {
        if let Some(k) = self.keys.get_in(hash, &guard.keys) {
            return Some(SecretRef::Key(&k.0));
        }
        self.tokens.get_key_value(hash, &guard.tokens).map(|(t, ())| SecretRef::Token(&t.0))
    }

    /// The credential of `hash` (a counted reference).
    pub fn get(&self, hash: &[u8; 32]) -> Option<Secret> {
        self.get_in(hash, &self.guard()).map(SecretRef::to_owned)
    }

    /// Whether a credential has `hash`.
    pub fn contains_key(&self, hash: &[u8; 32]) -> bool {
        self.get(hash).is_some()
    }

    /// Adds `secret`, replacing the credential of the same hash.
    pub fn insert(&self, secret: Secret) {
        match secret {
            Secret::Key(k) => {
                self.tokens.remove(&k.hash, &self.tokens.guard());
                self.keys.insert(ByHash(k));
            }
            Secret::Token(t) => {
                self.keys.remove(&t.record.hash);
                self.tokens.insert(ByHash(t), (), &self.tokens.guard());
            }
        }
    }

    /// Removes the credential of `hash`.
    pub fn remove(&self, hash: &[u8; 32]) {
        self.keys.remove(hash);
        self.tokens.remove(hash, &self.tokens.guard());
    }

    /// Credentials held.
    pub fn len(&self) -> usize {
        self.keys.len() + self.tokens.len()
    }

    /// Whether no credential is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`ReadMap::fold_if_quiet`].
    pub fn fold_if_quiet(&self) {
        self.keys.fold_if_quiet();
    }
}

/// Key id → entry (the admin API, a JWT exchanged from a key, the flusher).
/// A [`ReadMap`] like [`SecretMap`], of 8-byte slots: the entry's `Arc`; the
/// id is read from the entry.
pub struct KeyMap(ReadMap<ById, str, std::hash::RandomState>);

impl Default for KeyMap {
    fn default() -> KeyMap {
        KeyMap::from_entries(Vec::new())
    }
}

impl KeyMap {
    /// A map of `entries` (distinct ids), built in one pass.
    pub fn from_entries(entries: Vec<Arc<KeyEntry>>) -> KeyMap {
        KeyMap::from_iter(entries.len(), entries.into_iter())
    }

    /// A map of the `len` entries (distinct ids) of `entries`.
    pub fn from_iter(len: usize, entries: impl Iterator<Item = Arc<KeyEntry>>) -> KeyMap {
        KeyMap(ReadMap::from_iter(len, entries.map(ById), std::hash::RandomState::new()))
    }

    /// The entry of key `id`.
    pub fn get(&self, id: &str) -> Option<Arc<KeyEntry>> {
        self.0.get_in(id, &self.0.guard()).map(|k| k.0.clone())
    }

    /// Adds `entry`, replacing the entry of the same id.
    pub fn insert(&self, entry: Arc<KeyEntry>) {
        self.0.insert(ById(entry));
    }

    /// Removes key `id`.
    pub fn remove(&self, id: &str) {
        self.0.remove(id);
    }

    /// See [`ReadMap::fold_if_quiet`].
    pub fn fold_if_quiet(&self) {
        self.0.fold_if_quiet();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Calls `f` with every entry, in no order; counts no reference. Changes
    /// wait meanwhile: `f` must not change the map.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<KeyEntry>)) {
        self.0.for_each(|k| f(&k.0));
    }

    /// The entries `pick` chooses.
    pub fn matching(&self, pick: impl Fn(&KeyEntry) -> bool) -> Vec<Arc<KeyEntry>> {
        let mut out = Vec::new();
        self.for_each(|k| {
            if pick(k) {
                out.push(k.clone());
            }
        });
        out
    }

    /// Every entry (counted references), in no order.
    pub fn iter(&self) -> std::vec::IntoIter<Arc<KeyEntry>> {
        let mut all = Vec::with_capacity(self.len());
        self.for_each(|k| all.push(k.clone()));
        all.into_iter()
    }
}

/// A team as the verifier sees it.
pub struct TeamEntry {
    /// Team id.
    pub id: Arc<str>,
    tier: AtomicU8,
    /// Requests in the current minute (the tier's per-minute limit).
    pub minute: FixedWindow,
    /// Documents used (the tier's document quota).
    pub documents: Quota,
    /// Set when `documents` changed since the last flush.
    pub dirty: AtomicBool,
    /// Cluster mode only: this node's tokens of the cluster's current
    /// minute of the team (`rate`, in place of `minute`) and the state of
    /// its requests for more (`lease`'s `requested`, `rate_low`,
    /// `rate_dry_until_ms`).
    pub cluster: Option<Box<ClusterCounters>>,
}

impl TeamEntry {
    /// New entry with `documents` already used.
    pub fn new(id: &str, tier: Tier, documents: u64) -> TeamEntry {
        TeamEntry {
            id: id.into(),
            tier: AtomicU8::new(tier as u8),
            minute: FixedWindow::default(),
            documents: Quota::new(documents),
            dirty: AtomicBool::new(false),
            cluster: None,
        }
    }

    /// The entry of a cluster node: its per-minute window is leased from
    /// the cluster's (`cluster` false: unchanged).
    pub fn in_cluster(mut self, cluster: bool) -> TeamEntry {
        if cluster {
            self.cluster = Some(Box::default());
        }
        self
    }

    /// The current tier.
    pub fn tier(&self) -> Tier {
        Tier::ALL[usize::from(self.tier.load(Ordering::Acquire)).min(3)]
    }

    /// Changes the tier; the next verification uses the new limits.
    pub fn set_tier(&self, tier: Tier) {
        self.tier.store(tier as u8, Ordering::Release);
    }
}

/// A user as the verifier sees it. Shared by every credential of the user, so a
/// status or role change reaches all of them at once.
pub struct UserEntry {
    /// User id.
    pub id: Arc<str>,
    /// The user's team.
    pub team: Arc<TeamEntry>,
    role: AtomicU8,
    status: AtomicU8,
    /// JWTs issued before this (milliseconds) are revoked.
    pub revoked_before: AtomicU64,
}

impl UserEntry {
    /// New entry.
    pub fn new(id: &str, team: Arc<TeamEntry>, role: Role, status: UserStatus, revoked_before: u64) -> UserEntry {
        UserEntry {
            id: id.into(),
            team,
            role: AtomicU8::new(role as u8),
            status: AtomicU8::new(status as u8),
            revoked_before: AtomicU64::new(revoked_before),
        }
    }

    /// Current role.
    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            0 => Role::Administrator,
            1 => Role::Manager,
            2 => Role::Author,
            _ => Role::Reader,
        }
    }

    /// Current status.
    pub fn status(&self) -> UserStatus {
        UserStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Applies a role and status change in place.
    pub fn set(&self, role: Role, status: UserStatus) {
        self.role.store(role as u8, Ordering::Release);
        self.status.store(status as u8, Ordering::Release);
    }
}

/// The counters of an API key. Kept in their own `Arc` so that an update of the
/// key's settings (a new `KeyEntry`) carries them over untouched.
pub struct KeyCounters {
    /// Remaining uses (when the key has a limit).
    pub uses: Uses,
    /// Per-key rate limit window.
    pub window: AnchoredWindow,

    /// Allowed verifications.
    pub request_count: AtomicU64,
    /// Time of the last allowed verification, in milliseconds.
    pub last_used_at: AtomicU64,
    /// Set when a counter changed since the last flush.
    pub dirty: AtomicBool,
    /// Start of refill period 0, in milliseconds.
    pub anchor_ms: u64,
    /// Cluster mode only (`None` on one host, where it would cost every key
    /// its bytes): the leases of the key's remaining uses (`uses` then holds
    /// the lease's unspent part) and of its rate-limit window.
    pub cluster: Option<Box<ClusterCounters>>,
}

impl KeyCounters {
    /// Counters at zero, without cluster mode's lease state (the tests' entries).
    #[cfg(test)]
    pub(crate) fn zero() -> KeyCounters {
        KeyCounters {
            uses: Uses::new(0, 0),
            window: AnchoredWindow::default(),
            request_count: AtomicU64::new(0),
            last_used_at: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            anchor_ms: 0,
            cluster: None,
        }
    }
}

/// A key's lease state in cluster mode.
#[derive(Default)]
pub struct ClusterCounters {
    /// Requests for more, low marks, dry periods.
    pub lease: Lease,
    /// This node's tokens of the key's rate-limit window, in place of
    /// `KeyCounters::window`.
    pub rate: RateLease,
}

/// What the verifier knows of a key's lease (cluster mode): whether more
/// uses were asked for, and until when asking again is pointless.
#[derive(Default)]
pub struct Lease {
    /// A request is queued and not yet answered.
    pub requested: AtomicBool,
    /// Below this many unspent uses, ask for more before they run out.
    pub low: std::sync::atomic::AtomicU32,
    /// The largest cost a verification found this node's active part
    /// short of: the leaser activates at least that many.
    pub want: std::sync::atomic::AtomicU32,
    /// A key with a refill: when (ms, this node's clock) the refill period
    /// of the active part ends; from then on it is void until the leaser
    /// brings uses of the next period. 0: none leased yet.
    pub period_end_ms: AtomicU64,
    /// The last request found no uses left cluster-wide: until this time
    /// (ms) an empty lease is final, and no request is made.
    pub dry_until_ms: AtomicU64,
    /// Below this many tokens of the rate-limit window, ask for more.
    pub rate_low: std::sync::atomic::AtomicU32,
    /// The cluster's current window of the key is full: until it ends (ms),
    /// no request for tokens is made.
    pub rate_dry_until_ms: AtomicU64,
}

/// An API key as the verifier sees it: its own settings (expiry, status),
/// pointers to its owner (whose team is the key's team), its counters and the
/// settings it shares with keys configured alike ([`KeyPolicy`]). The stored
/// record (name, metadata, the stored permissions, ...) is not kept: the
/// admin API reads it from the store.
///
/// `repr(C)` keeps the declared order: what every verification reads comes
/// first. With a million keys loaded each line touched is a cache miss, and
/// every byte here is a megabyte of the daemon's memory: 104 bytes, with the
/// `Arc`'s counts a 128-byte malloc chunk.
#[repr(C)]
pub struct KeyEntry {
    /// Live counters.
    pub counters: Arc<KeyCounters>,
    /// Owner (whose team is the key's team).
    pub user: Arc<UserEntry>,
    /// Grant, allowlist and limits, shared by the keys that have the same
    /// (see [`Index::policy`]).
    pub policy: Arc<KeyPolicy>,
    /// Expiry (`Millis::MAX`: none).
    expires_at: Millis,
    /// Key id, inline.
    pub id: Id,
    /// SHA-256 of the secret: the key's place in [`Index::secrets`].
    pub hash: [u8; 32],
    /// Disabled keys are denied.
    pub enabled: bool,
}

impl KeyEntry {
    /// An entry from its parts; `hot` gives the expiry and status (its
    /// limits are `policy`'s).
    pub fn new(
        counters: Arc<KeyCounters>,
        user: Arc<UserEntry>,
        policy: Arc<KeyPolicy>,
        hot: &KeyHot,
        id: &str,
        hash: [u8; 32],
    ) -> KeyEntry {
        KeyEntry { counters, user, policy, expires_at: hot.expires_at, id: id.into(), hash, enabled: hot.enabled }
    }

    /// The key's team id.
    pub fn team_id(&self) -> &str {
        &self.user.team.id
    }

    /// The key's owner id.
    pub fn user_id(&self) -> &str {
        &self.user.id
    }

    /// Expiry.
    pub fn expires_at(&self) -> Option<Millis> {
        (self.expires_at != Millis::MAX).then_some(self.expires_at)
    }

    /// The settings the verifier checks, as one value.
    pub fn hot(&self) -> KeyHot {
        KeyHot { expires_at: self.expires_at, enabled: self.enabled, ..self.policy.limits }
    }

    /// The key's grant: its permissions within its owner's role.
    pub fn permissions(&self) -> &PermSet {
        &self.policy.permissions
    }

    /// Parsed `whitelisted_ips`.
    pub fn ips(&self) -> &[IpNet] {
        &self.policy.ips
    }
}

/// What keys configured alike share: the grant (permissions within the
/// owner's role, itself shared, see [`Index::intern`]), the allowlist, the
/// rate limit, the refill and whether uses are counted. A million keys made
/// with a handful of configurations hold a handful of these; a key whose
/// settings are its own alone holds one of its own (an 80-byte chunk).
pub struct KeyPolicy {
    /// The grant.
    pub permissions: Arc<PermSet>,
    /// Parsed `whitelisted_ips`.
    pub ips: Allowlist,
    /// Rate limit, refill and `counted` (expiry and status unused).
    pub limits: KeyHot,
}

impl KeyPolicy {
    /// The policy of a key with grant `permissions` (interned), allowlist
    /// `ips` and the limits of `hot`; share it with [`Index::intern_policy`].
    pub fn new(permissions: Arc<PermSet>, ips: Vec<IpNet>, hot: &KeyHot) -> KeyPolicy {
        let limits = KeyHot { expires_at: Millis::MAX, enabled: true, ..*hot };
        KeyPolicy { permissions, ips: Allowlist::new(ips), limits }
    }

    /// Per-key rate limit.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.limits.rate_limit()
    }

    /// Refill of the remaining uses.
    pub fn refill(&self) -> Option<Refill> {
        self.limits.refill()
    }

    /// The key has a remaining-use counter.
    pub fn counted(&self) -> bool {
        self.limits.counted
    }
}

/// The last policy a start's thread interned: keys read in id order were
/// mostly made one after the other, alike, so most keys take it without the
/// interner's lock.
#[derive(Default)]
pub struct LastPolicy(Option<Arc<KeyPolicy>>);

impl LastPolicy {
    /// The shared copy of `p`.
    pub fn get(&mut self, index: &Index, p: KeyPolicy) -> Arc<KeyPolicy> {
        match &self.0 {
            Some(last) if **last == p => last.clone(),
            _ => self.0.insert(index.intern_policy(p)).clone(),
        }
    }
}

// Interned by the grant's identity (grants are interned first) and the
// values of the rest.
impl PartialEq for KeyPolicy {
    fn eq(&self, o: &KeyPolicy) -> bool {
        let l = (&self.limits, &o.limits);
        Arc::ptr_eq(&self.permissions, &o.permissions)
            && *self.ips == *o.ips
            && (l.0.window_ms, l.0.interval_ms, l.0.max, l.0.amount, l.0.counted)
                == (l.1.window_ms, l.1.interval_ms, l.1.max, l.1.amount, l.1.counted)
    }
}

impl Eq for KeyPolicy {}

impl Hash for KeyPolicy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let l = &self.limits;
        Arc::as_ptr(&self.permissions).hash(state);
        self.ips.hash(state);
        (l.window_ms, l.interval_ms, l.max, l.amount, l.counted).hash(state);
    }
}

/// A key's parsed `whitelisted_ips` in one pointer, null for the usual empty
/// list (a boxed slice would take two words in every policy).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Allowlist(Option<Box<Box<[IpNet]>>>);

impl Allowlist {
    /// The list `nets`.
    pub fn new(nets: Vec<IpNet>) -> Allowlist {
        Allowlist((!nets.is_empty()).then(|| Box::new(nets.into_boxed_slice())))
    }
}

impl std::ops::Deref for Allowlist {
    type Target = [IpNet];
    fn deref(&self) -> &[IpNet] {
        self.0.as_deref().map_or(&[], |b| b)
    }
}

/// An identifier held inline (no allocation) up to 30 bytes (key ids are
/// 24), on the heap beyond. Hashes, compares and borrows as its `str`, so a
/// map keyed by it is looked up with a `&str`.
#[derive(Clone)]
pub struct Id(IdRepr);

#[derive(Clone)]
enum IdRepr {
    Inline { len: u8, bytes: [u8; Id::INLINE] },
    Heap(Box<str>),
}

impl Id {
    const INLINE: usize = 30;

    /// The id's bytes (UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdRepr::Heap(s) => s.as_bytes(),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a `&str` of `len` bytes (see `From<&str>`).
            IdRepr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            IdRepr::Heap(s) => s,
        }
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        if s.len() <= Id::INLINE {
            let mut bytes = [0u8; Id::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Id(IdRepr::Inline { len: s.len() as u8, bytes })
        } else {
            Id(IdRepr::Heap(s.into()))
        }
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Compared and hashed as bytes, which is how `str` compares and hashes (so
// `Borrow<str>` holds), without checking the UTF-8 again each time.
impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Id {}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // What `str::hash` writes.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings of an API key the verifier reads, next to each other, in
/// 40 bytes (a key's expiry and status are in its entry, the rest in its
/// [`KeyPolicy`]) (`Option`s of the records' types would take 72): an absent
/// expiry, rate limit or refill is a value no valid one has (no expiry is
/// `u64::MAX`; a rate-limit window is at least 1 ms, a refill interval 1 s).
#[derive(Clone, Copy, Debug)]
pub struct KeyHot {
    pub(crate) expires_at: Millis,
    window_ms: u64,
    interval_ms: u64,
    max: u32,
    amount: u32,
    /// Disabled keys are denied.
    pub enabled: bool,
    /// The key has a remaining-use counter.
    pub counted: bool,
}

impl KeyHot {
    /// The hot settings of `record`.
    pub fn of(record: &ApiKey) -> KeyHot {
        KeyHot::new(
            record.expires_at,
            record.rate_limit,
            record.refill,
            record.enabled,
            record.remaining.is_some() || record.refill.is_some(),
        )
    }

    /// Settings from their parts.
    pub fn new(
        expires_at: Option<Millis>,
        rate_limit: Option<RateLimit>,
        refill: Option<Refill>,
        enabled: bool,
        counted: bool,
    ) -> KeyHot {
        KeyHot {
            expires_at: expires_at.unwrap_or(Millis::MAX),
            window_ms: rate_limit.map_or(0, |r| r.window_ms),
            max: rate_limit.map_or(0, |r| r.max),
            interval_ms: refill.map_or(0, |r| r.interval_ms),
            amount: refill.map_or(0, |r| r.amount),
            enabled,
            counted,
        }
    }

    /// Expiry.
    pub fn expires_at(&self) -> Option<Millis> {
        (self.expires_at != Millis::MAX).then_some(self.expires_at)
    }

    /// Per-key rate limit.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        (self.window_ms != 0).then_some(RateLimit { max: self.max, window_ms: self.window_ms })
    }

    /// Refill of the remaining uses.
    pub fn refill(&self) -> Option<Refill> {
        (self.interval_ms != 0).then_some(Refill { amount: self.amount, interval_ms: self.interval_ms })
    }
}

/// An access token as the verifier sees it.
pub struct TokenEntry {
    /// The stored record (its `revoked_at` is stale, see `revoked_at`).
    pub record: AccessToken,
    /// Token id.
    pub id: Arc<str>,
    /// Owner.
    pub user: Arc<UserEntry>,
    /// Revocation time in milliseconds; 0 = not revoked.
    pub revoked_at: AtomicU64,
    /// Time of the last allowed verification, in milliseconds.
    pub last_used_at: AtomicU64,
    /// Allowed verifications.
    pub request_count: AtomicU64,
    /// Set when a counter changed since the last flush.
    pub dirty: AtomicBool,
}

/// Something whose counters must be written to the store.
pub enum Dirty {
    /// A key's usage (its counters; the entry names the key).
    Key(Arc<KeyEntry>),
    /// A token's usage.
    Token(Arc<TokenEntry>),
    /// A team's quota.
    Team(Arc<TeamEntry>),
}

/// Every map the verifier reads.
#[derive(Default)]
pub struct Index {
    /// SHA-256 of a secret → its credential. The hot path's one lookup.
    pub secrets: SecretMap,
    /// Key id → entry.
    pub keys: KeyMap,
    /// Token id → entry.
    pub tokens: DashMap<String, Arc<TokenEntry>>,
    /// User id → entry.
    pub users: DashMap<String, Arc<UserEntry>>,
    /// Username → user id (usernames are unique across teams; login looks here).
    pub usernames: DashMap<String, String>,
    /// Team id → entry.
    pub teams: DashMap<String, Arc<TeamEntry>>,
    /// Revoked JWT ids → the teams whose JWT of that id is revoked (`""`:
    /// every team, a revocation by the platform). A team's member revokes
    /// only its own team's: a jti names no team.
    pub revoked_jti: DashMap<String, Vec<String>>,
    /// Consumption counters (remaining uses, team quotas) changed since the
    /// last flush: written every flush interval (or before the verdict, strict).
    pub dirty: SegQueue<Dirty>,
    /// Credentials whose statistics only (request count, last use) changed:
    /// written on the slower statistics interval, so that a large population of
    /// unlimited keys does not turn every verification into a store write.
    pub stats_dirty: SegQueue<Dirty>,
    /// Flushes started; a change made before reading `n` is durable once flush
    /// `n + 1` is done.
    pub flushes_started: AtomicU64,
    /// The prefixes of the keys adopted by hash (imported from another
    /// issuer, see `Engine::import_keys`); `""` when one came without a
    /// known prefix. Empty: every credential that fails tollgate's checksum
    /// is MALFORMED without a lookup; otherwise those not of tollgate's shape,
    /// and those of tollgate's shape with an adopted prefix, are looked up by
    /// their SHA-256.
    pub adopted_prefixes: arc_swap::ArcSwap<Vec<String>>,
    /// Whether `adopted_prefixes` is not empty: one plain load on the
    /// MALFORMED path instead of the `ArcSwap`'s.
    pub any_adopted: AtomicBool,
    /// The distinct key grants, shared by the keys that have them.
    grants: parking_lot::Mutex<Interner>,
    /// Keys whose lease wants more uses, for the leaser thread.
    pub lease_requests: SegQueue<Arc<KeyEntry>>,
    /// Teams whose lease of the cluster's minute wants more tokens.
    pub team_lease_requests: SegQueue<Arc<TeamEntry>>,
    /// The leaser thread, woken when a request is queued.
    pub leaser: std::sync::OnceLock<std::thread::Thread>,
}

#[derive(Default)]
struct Interner {
    sets: std::collections::HashMap<PermSet, Arc<PermSet>>,
    /// Sets held after the last sweep of the ones no key holds any more.
    swept_at: usize,
    policies: std::collections::HashSet<Arc<KeyPolicy>>,
    /// Policies held after the last sweep.
    policies_swept_at: usize,
}

impl Index {
    /// Cluster mode: asks the leaser for more uses of `key` unless a request
    /// is already queued or the cluster had none left at `now_ms`. Returns
    /// whether a request is in flight (an answer may bring uses).
    pub fn want_lease(&self, key: &Arc<KeyEntry>, now_ms: u64) -> bool {
        let Some(cl) = key.counters.cluster.as_deref() else { return false };
        self.request_lease(key, now_ms, &cl.lease, &cl.lease.dry_until_ms)
    }

    /// [`Index::want_lease`] for tokens of the key's rate-limit window.
    pub fn want_rate_lease(&self, key: &Arc<KeyEntry>, now_ms: u64) -> bool {
        let Some(cl) = key.counters.cluster.as_deref() else { return false };
        self.request_lease(key, now_ms, &cl.lease, &cl.lease.rate_dry_until_ms)
    }

    /// [`Index::want_rate_lease`] for tokens of the team's minute.
    pub fn want_team_rate_lease(&self, team: &Arc<TeamEntry>, now_ms: u64) -> bool {
        let Some(cl) = team.cluster.as_deref() else { return false };
        self.ask(now_ms, &cl.lease, &cl.lease.rate_dry_until_ms, || self.team_lease_requests.push(team.clone()))
    }

    fn request_lease(&self, key: &Arc<KeyEntry>, now_ms: u64, lease: &Lease, dry_until_ms: &AtomicU64) -> bool {
        self.ask(now_ms, lease, dry_until_ms, || self.lease_requests.push(key.clone()))
    }

    fn ask(&self, now_ms: u64, lease: &Lease, dry_until_ms: &AtomicU64, queue: impl FnOnce()) -> bool {
        if now_ms < dry_until_ms.load(Ordering::Relaxed) {
            return false;
        }
        if !lease.requested.swap(true, Ordering::AcqRel) {
            queue();
            if let Some(t) = self.leaser.get() {
                t.unpark();
            }
        }
        true
    }

    /// The shared copy of `set`: a million keys with a handful of distinct
    /// grants hold a handful of sets. (Sets no key holds any more are dropped
    /// whenever the table has doubled since the last sweep.)
    pub fn intern(&self, set: PermSet) -> Arc<PermSet> {
        let mut t = self.grants.lock();
        if let Some(shared) = t.sets.get(&set) {
            return shared.clone();
        }
        if t.sets.len() >= 2 * t.swept_at.max(512) {
            t.sets.retain(|_, s| Arc::strong_count(s) > 1);
            t.swept_at = t.sets.len();
        }
        let shared = Arc::new(set.clone());
        t.sets.insert(set, shared.clone());
        shared
    }

    /// The shared copy of the policy of a key with grant `permissions`
    /// (interned with [`Index::intern`]), allowlist `ips` and the limits of
    /// `hot` (policies no key holds any more are dropped whenever the table
    /// has doubled since the last sweep).
    pub fn policy(&self, permissions: Arc<PermSet>, ips: Vec<IpNet>, hot: &KeyHot) -> Arc<KeyPolicy> {
        self.intern_policy(KeyPolicy::new(permissions, ips, hot))
    }

    /// The shared copy of `p`.
    pub fn intern_policy(&self, p: KeyPolicy) -> Arc<KeyPolicy> {
        let mut t = self.grants.lock();
        if let Some(shared) = t.policies.get(&p) {
            return shared.clone();
        }
        if t.policies.len() >= 2 * t.policies_swept_at.max(512) {
            t.policies.retain(|p| Arc::strong_count(p) > 1);
            t.policies_swept_at = t.policies.len();
        }
        let shared = Arc::new(p);
        t.policies.insert(shared.clone());
        shared
    }

    /// Records a revocation of `jti` for `team` (`""`: every team).
    pub fn revoke_jti(&self, jti: &str, team: &str) {
        let mut teams = self.revoked_jti.entry(jti.to_owned()).or_default();
        if !teams.iter().any(|t| t == team) {
            teams.push(team.to_owned());
        }
    }

    /// Whether the JWT `jti` of `team` is revoked (no allocation: the JWT
    /// path asks this on every verification once any revocation exists).
    pub fn jti_revoked(&self, jti: &str, team: &str) -> bool {
        !self.revoked_jti.is_empty()
            && self.revoked_jti.get(jti).is_some_and(|teams| teams.iter().any(|t| t.is_empty() || t == team))
    }

    /// Queues `item` for the next flush unless `flag` says it already is.
    /// `always` queues regardless (strict durability: the waiter must know its
    /// change is in the queue before it reads `flushes_started`).
    pub fn mark_dirty(&self, flag: &AtomicBool, always: bool, item: impl FnOnce() -> Dirty) {
        // A swap, not a load: it is ordered against the flusher's swap back to
        // false, so either the flusher reads our counters after clearing the
        // flag, or we see the cleared flag and queue the item again.
        if !flag.swap(true, Ordering::AcqRel) || always {
            self.dirty.push(item());
        }
    }

    /// Queues `item` for the next statistics flush unless `flag` says it is
    /// already queued (on either queue: a consumption flush writes the whole
    /// record, statistics included).
    pub fn mark_stats_dirty(&self, flag: &AtomicBool, item: impl FnOnce() -> Dirty) {
        if !flag.swap(true, Ordering::AcqRel) {
            self.stats_dirty.push(item());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Permissions;

    /// Every byte of an entry is a megabyte at a million keys
    /// (ARCHITECTURE.md, "A million keys"): 104 bytes, plus the `Arc`'s two
    /// counts, is a 128-byte malloc chunk (at 136 it was 160).
    #[test]
    fn a_key_entry_is_104_bytes() {
        assert_eq!(std::mem::size_of::<KeyHot>(), 40);
        assert_eq!(std::mem::size_of::<Allowlist>(), 8);
        assert_eq!(std::mem::size_of::<KeyEntry>(), 104);
        // A policy of its own (a key configured like no other) is an
        // 80-byte chunk.
        assert_eq!(std::mem::size_of::<KeyPolicy>(), 56);
        // 48, and the pointer to cluster mode's lease state (`None` on one host).
        assert_eq!(std::mem::size_of::<KeyCounters>(), 56);
    }

    #[test]
    fn keys_configured_alike_share_one_policy_and_others_get_their_own() {
        let index = Index::default();
        let read = index.intern(PermSet::new(&Permissions::default()));
        let rate = RateLimit { max: 7, window_ms: 1000 };
        let hot =
            |exp: Option<Millis>, enabled: bool, rate: Option<RateLimit>| KeyHot::new(exp, rate, None, enabled, false);
        let a = index.policy(read.clone(), Vec::new(), &hot(None, true, Some(rate)));
        // Expiry and status are the entry's own: they do not split a policy.
        let b = index.policy(read.clone(), Vec::new(), &hot(Some(5), false, Some(rate)));
        assert!(Arc::ptr_eq(&a, &b));
        let other_rate = index.policy(read.clone(), Vec::new(), &hot(None, true, Some(RateLimit { max: 8, ..rate })));
        let no_rate = index.policy(read.clone(), Vec::new(), &hot(None, true, None));
        let ips = index.policy(read.clone(), vec!["10.0.0.0/8".parse().unwrap()], &hot(None, true, Some(rate)));
        let mut grant = Permissions::default();
        grant.0.insert("documents".into(), vec!["read".into()]);
        let other_grant = index.policy(index.intern(PermSet::new(&grant)), Vec::new(), &hot(None, true, Some(rate)));
        for p in [&other_rate, &no_rate, &ips, &other_grant] {
            assert!(!Arc::ptr_eq(&a, p));
        }
        assert_eq!(
            (a.rate_limit(), no_rate.rate_limit(), &*ips.ips),
            (Some(rate), None, &["10.0.0.0/8".parse().unwrap()][..])
        );
        // Policies no key holds are dropped once the table has doubled.
        drop((b, other_rate, no_rate, ips, other_grant));
        for max in 0..1100 {
            index.policy(read.clone(), Vec::new(), &hot(None, true, Some(RateLimit { max, window_ms: 60_000 })));
        }
        assert!(index.grants.lock().policies.len() < 1100);
        assert!(Arc::ptr_eq(&a, &index.policy(read, Vec::new(), &hot(None, true, Some(rate)))));
    }

    /// Keys and tokens live in two parts of the map; one hash still names
    /// one credential: adding either kind replaces the other of that hash.
    #[test]
    fn secrets_hold_keys_and_tokens_and_one_hash_names_one_credential() {
        use crate::core::model::AccessToken;
        let index = Index::default();
        let team = Arc::new(TeamEntry::new("t", Tier::Pro, 0));
        let user = Arc::new(UserEntry::new("u", team, Role::Administrator, UserStatus::Enabled, 0));
        let hot = KeyHot::new(None, None, None, true, false);
        let policy = index.policy(index.intern(PermSet::new(&Permissions::default())), Vec::new(), &hot);
        let key = |id: &str, hash: u8| {
            Arc::new(KeyEntry::new(Arc::new(KeyCounters::zero()), user.clone(), policy.clone(), &hot, id, [hash; 32]))
        };
        let token = |id: &str, hash: u8| {
            Arc::new(TokenEntry {
                record: AccessToken {
                    id: id.into(),
                    team_id: "t".into(),
                    user_id: "u".into(),
                    name: "n".into(),
                    token_type: "personal".into(),
                    token_prefix: "tgp".into(),
                    hash: [hash; 32],
                    expires_at: None,
                    revoked_at: None,
                    created_at: 0,
                },
                id: id.into(),
                user: user.clone(),
                revoked_at: AtomicU64::new(0),
                last_used_at: AtomicU64::new(0),
                request_count: AtomicU64::new(0),
                dirty: AtomicBool::new(false),
            })
        };
        let found = |hash: u8| match index.secrets.get(&[hash; 32]) {
            Some(Secret::Key(k)) => format!("key {}", k.id),
            Some(Secret::Token(t)) => format!("token {}", t.id),
            None => "none".into(),
        };
        index.secrets.insert(Secret::Key(key("k1", 1)));
        index.secrets.insert(Secret::Token(token("t2", 2)));
        assert_eq!(
            (found(1), found(2), found(3), index.secrets.len()),
            ("key k1".into(), "token t2".into(), "none".into(), 2)
        );
        // A token of a key's hash replaces the key, and the other way round.
        index.secrets.insert(Secret::Token(token("t1", 1)));
        index.secrets.insert(Secret::Key(key("k2", 2)));
        assert_eq!((found(1), found(2), index.secrets.len()), ("token t1".into(), "key k2".into(), 2));
        assert!(index.secrets.contains_key(&[1; 32]) && index.secrets.contains_key(&[2; 32]));
        index.secrets.remove(&[1; 32]);
        index.secrets.remove(&[2; 32]);
        assert_eq!((found(1), found(2), index.secrets.len()), ("none".into(), "none".into(), 0));
    }

    #[test]
    fn absent_settings_read_back_absent_and_present_ones_unchanged() {
        let none = KeyHot::new(None, None, None, true, false);
        assert_eq!((none.expires_at(), none.rate_limit(), none.refill()), (None, None, None));
        let rate = RateLimit { max: 7, window_ms: 1000 };
        let refill = Refill { amount: 3, interval_ms: 86_400_000 };
        let all = KeyHot::new(Some(42), Some(rate), Some(refill), false, true);
        assert_eq!((all.expires_at(), all.rate_limit(), all.refill()), (Some(42), Some(rate), Some(refill)));
        assert!(!all.enabled && all.counted);
    }

    #[test]
    fn maps_find_entries_by_hash_and_id_and_replace_them() {
        let team = Arc::new(TeamEntry::new("t", Tier::Pro, 0));
        let user = Arc::new(UserEntry::new("u", team, Role::Administrator, UserStatus::Enabled, 0));
        let index = Index::default();
        let grant = index.intern(PermSet::new(&Permissions::default()));
        let entry = |id: &str, hash: u8, enabled: bool| {
            let hot = KeyHot::new(None, None, None, enabled, false);
            Arc::new(KeyEntry::new(
                Arc::new(KeyCounters::zero()),
                user.clone(),
                index.policy(grant.clone(), vec!["10.0.0.0/8".parse().unwrap()], &hot),
                &hot,
                id,
                [hash; 32],
            ))
        };
        for (id, h) in [("key_a", 1), ("key_b", 2)] {
            let e = entry(id, h, true);
            index.secrets.insert(Secret::Key(e.clone()));
            index.keys.insert(e);
        }
        let guard = index.secrets.guard();
        assert!(matches!(index.secrets.get_in(&[2; 32], &guard), Some(SecretRef::Key(k)) if &*k.id == "key_b"));
        assert!(index.secrets.get_in(&[3; 32], &guard).is_none());
        assert_eq!(index.keys.get("key_a").map(|k| k.hash), Some([1; 32]));
        assert_eq!(index.keys.get("key_a").unwrap().ips(), &["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        // A replacement under the same hash and id (a key update) is what the
        // next lookup finds; the borrowed old entry stays readable.
        let old = index.secrets.get_in(&[1; 32], &guard).unwrap();
        let new = entry("key_a", 1, false);
        index.secrets.insert(Secret::Key(new.clone()));
        index.keys.insert(new);
        assert!(matches!(old, SecretRef::Key(k) if k.enabled));
        assert!(matches!(index.secrets.get(&[1; 32]), Some(Secret::Key(k)) if !k.enabled));
        assert!(!index.keys.get("key_a").unwrap().enabled);
        assert_eq!((index.secrets.len(), index.keys.len()), (2, 2));
        index.secrets.remove(&[1; 32]);
        index.keys.remove("key_a");
        assert!(!index.secrets.contains_key(&[1; 32]) && index.keys.get("key_a").is_none());
        let mut ids: Vec<String> = index.keys.iter().map(|k| k.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["key_b"]);
    }
}
