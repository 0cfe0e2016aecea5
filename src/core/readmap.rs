//! A concurrent hash set for a large population that changes rarely: most of
//! it in a frozen table of one pointer per slot, the recent changes in a small
//! lock-free map, folded into a new frozen table from time to time.
//!
//! Each entry is its own key (an `Arc`'d record hashed and compared as a field
//! it borrows, as [`super::index::Secret`] by its SHA-256). papaya, which held
//! every entry on its own before, keeps each in a box of its own (a 32-byte
//! malloc chunk) behind a 9-byte slot at about 2.1 slots an entry: 51 bytes a
//! key per map at a million keys. The frozen table here keeps the entry's
//! pointer in the slot and one tag byte beside it, at 1.25 slots an entry:
//! 11 bytes a key for an 8-byte entry, 21 for a 16-byte one.
//!
//! - **Reads take no lock and write no shared line.** A read pins the delta
//!   (papaya: this thread's own slot) and the frozen table (`arc-swap`: this
//!   thread's own debt slot); it looks in the delta first — a change made
//!   since the last fold is there, a removal as a tombstone — then in the
//!   frozen table: the tags (a 7-bit fingerprint per slot, 0 for empty) are
//!   probed linearly and only a slot whose tag matches is compared.
//! - **Writers** (administrative changes: an insert replaces the entry of the
//!   same key, a remove leaves a tombstone) take the writer mutex and change
//!   the delta only. When the delta holds more entries than the frozen table
//!   (and more than [`FOLD_MIN`]), the writer folds it: builds the next
//!   frozen table from the current one and the delta, publishes it, moves
//!   `epoch`, then clears the delta. Each fold is linear in the entries and
//!   the tables double: an import of a million keys folds 8 times, and each
//!   key is copied into about two tables. (Folding once the delta held a
//!   quarter of the table took 24 folds: 1M keys imported over HTTP in
//!   37.5–38.8 s against 31.7 s.) A periodic task folds a delta that no
//!   write touched for a while ([`ReadMap::fold_if_quiet`]).
//! - **Why a read is never wrong across a fold.** A read looks in the delta,
//!   then in the frozen table it pinned, then loads `epoch`. A fold publishes
//!   the new table and moves `epoch` before it clears the delta, so a read
//!   that missed in the delta because it was cleared sees the new `epoch`,
//!   and a read whose pinned table is older than `epoch` looks again, in the
//!   newer table (pinned for as long as the read's guard).
//! - **Memory.** A fold briefly holds both tables; a removed entry is held by
//!   its tombstone until the next fold, a replaced one by the frozen table.

use std::borrow::Borrow;
use std::cell::OnceCell;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

/// The delta is folded once it holds more entries than the frozen table
/// and more than this many.
pub const FOLD_MIN: usize = 4096;

/// The frozen table: open addressing, linear probing, `slots.len()` =
/// `tags.len()` = the entries × 5/4 (at least one empty slot, so every probe
/// ends). Never changed once built.
struct Frozen<E> {
    /// 0: empty; else `0x80 | 7 bits of the hash`.
    tags: Box<[u8]>,
    slots: Box<[Option<E>]>,
    /// Entries held.
    len: usize,
    /// The fold that built it.
    epoch: u64,
}

impl<E> Frozen<E> {
    fn empty(epoch: u64) -> Frozen<E> {
        Frozen { tags: vec![0].into_boxed_slice(), slots: vec![None].into_boxed_slice(), len: 0, epoch }
    }
}

/// Where hash `h` starts probing in a table of `n` slots, and its tag.
fn place(h: u64, n: usize) -> (usize, u8) {
    // The high bits of `h` pick the slot (a multiply, no power-of-two size);
    // the low ones make the tag.
    (((u128::from(h) * n as u128) >> 64) as usize, 0x80 | (h as u8 & 0x7f))
}

impl<E> Frozen<E> {
    fn get<Q>(&self, q: &Q, h: u64) -> Option<&E>
    where
        Q: ?Sized + Eq,
        E: Borrow<Q>,
    {
        self.slot_of(q, h).and_then(|i| self.slots[i].as_ref())
    }

    /// The slot holding the entry of `q` (hash `h`).
    fn slot_of<Q>(&self, q: &Q, h: u64) -> Option<usize>
    where
        Q: ?Sized + Eq,
        E: Borrow<Q>,
    {
        let n = self.tags.len();
        let (mut i, tag) = place(h, n);
        loop {
            match self.tags[i] {
                0 => return None,
                t if t == tag => {
                    if let Some(e) = &self.slots[i]
                        && e.borrow() == q
                    {
                        return Some(i);
                    }
                }
                _ => {}
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// A table of `entries`, whose keys are distinct and which are at most
    /// `max`; `hash` hashes a key. Filled straight from the iterator: a
    /// million entries collected first would be a 16 MB temporary, which
    /// glibc keeps in the heap once freed.
    fn build(max: usize, entries: impl Iterator<Item = E>, hash: impl Fn(&E) -> u64, epoch: u64) -> Frozen<E> {
        let n = max + max / 4 + 1;
        let mut tags = vec![0u8; n].into_boxed_slice();
        let mut slots: Box<[Option<E>]> = std::iter::repeat_with(|| None).take(n).collect();
        let mut len = 0;
        // At most `max`: the table always keeps an empty slot.
        for e in entries.take(max) {
            len += 1;
            let (mut i, tag) = place(hash(&e), n);
            while tags[i] != 0 {
                i = if i + 1 == n { 0 } else { i + 1 };
            }
            tags[i] = tag;
            slots[i] = Some(e);
        }
        Frozen { tags, slots, len, epoch }
    }
}

/// A pinned frozen table, and the newer ones a read moved to during a fold:
/// each lives as long as the [`ReadGuard`], so what a read returns does.
struct Pinned<E> {
    frozen: arc_swap::Guard<Arc<Frozen<E>>>,
    newer: OnceCell<Box<Pinned<E>>>,
}

/// What a read holds: the delta's epoch and the frozen tables it read.
pub struct ReadGuard<'m, E> {
    delta: papaya::LocalGuard<'m>,
    pinned: Pinned<E>,
}

/// See the module documentation. `E` is an entry that is its own key: it
/// hashes and compares as the `Q` it borrows.
pub struct ReadMap<E, Q: ?Sized, S> {
    frozen: ArcSwap<Frozen<E>>,
    /// The epoch of the newest frozen table (moved before the delta is cleared).
    epoch: AtomicU64,
    /// Changes since the frozen table: `true` holds the entry, `false` is a
    /// tombstone (the key was removed).
    delta: papaya::HashMap<E, bool, S>,
    /// Entries in the delta, moved after a writer adds one and before it
    /// returns: 0 lets a read skip the delta (the usual state after a start
    /// or a fold) without probing it.
    in_delta: AtomicUsize,
    /// Writes made, and the count the last [`ReadMap::fold_if_quiet`] saw.
    writes: AtomicU64,
    writes_seen: AtomicU64,
    hasher: S,
    writer: parking_lot::Mutex<()>,
    len: AtomicUsize,
    _key: PhantomData<fn(&Q)>,
}

impl<E, Q, S> ReadMap<E, Q, S>
where
    E: Borrow<Q> + Hash + Eq + Clone,
    Q: ?Sized + Hash + Eq,
    S: BuildHasher + Clone,
{
    /// A map of `entries` (distinct keys), built in one pass.
    pub fn from_entries(entries: Vec<E>, hasher: S) -> ReadMap<E, Q, S> {
        ReadMap::from_iter(entries.len(), entries.into_iter(), hasher)
    }

    /// A map of the `len` entries (distinct keys) of `entries`, built in
    /// one pass.
    pub fn from_iter(len: usize, entries: impl Iterator<Item = E>, hasher: S) -> ReadMap<E, Q, S> {
        let frozen =
            if len == 0 { Frozen::empty(0) } else { Frozen::build(len, entries, |e| hasher.hash_one(e.borrow()), 0) };
        let len = frozen.len;
        ReadMap {
            frozen: ArcSwap::from_pointee(frozen),
            epoch: AtomicU64::new(0),
            delta: papaya::HashMap::builder().hasher(hasher.clone()).resize_mode(papaya::ResizeMode::Blocking).build(),
            in_delta: AtomicUsize::new(0),
            writes: AtomicU64::new(0),
            writes_seen: AtomicU64::new(0),
            hasher,
            writer: parking_lot::Mutex::new(()),
            len: AtomicUsize::new(len),
            _key: PhantomData,
        }
    }

    /// Pins the map for reads.
    pub fn guard(&self) -> ReadGuard<'_, E> {
        ReadGuard { delta: self.delta.guard(), pinned: Pinned { frozen: self.frozen.load(), newer: OnceCell::new() } }
    }

    /// The entry of `q`, borrowed for as long as `guard` is held.
    pub fn get_in<'g>(&self, q: &Q, guard: &'g ReadGuard<'_, E>) -> Option<&'g E> {
        let h = self.hasher.hash_one(q);
        let mut pinned = &guard.pinned;
        loop {
            // An entry added to the delta after `in_delta` was read is a
            // change the read is ordered before.
            if self.in_delta.load(Ordering::Acquire) != 0
                && let Some((e, live)) = self.delta.get_key_value(q, &guard.delta)
            {
                return live.then_some(e);
            }
            let found = pinned.frozen.get(q, h);
            // A table at least as new as the last fold: the delta read
            // before it was read after its publication, so between them
            // they hold every change.
            if pinned.frozen.epoch >= self.epoch.load(Ordering::Acquire) {
                return found;
            }
            // A fold ran since the table was pinned: what it took out of
            // the delta is in a newer table.
            pinned =
                pinned.newer.get_or_init(|| Box::new(Pinned { frozen: self.frozen.load(), newer: OnceCell::new() }));
        }
    }

    /// Whether `q` has an entry.
    pub fn contains(&self, q: &Q) -> bool {
        self.get_in(q, &self.guard()).is_some()
    }

    /// Adds `e`, replacing the entry of the same key.
    pub fn insert(&self, e: E) {
        let _w = self.writer.lock();
        if !self.contains(e.borrow()) {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        self.delta.insert(e, true, &self.delta.guard());
        self.written();
        self.fold_if_due();
    }

    /// After a change to the delta, before the writer returns.
    fn written(&self) {
        self.in_delta.store(self.delta.len(), Ordering::Release);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes the entry of `q`, if any.
    pub fn remove(&self, q: &Q) {
        let _w = self.writer.lock();
        let guard = self.guard();
        let Some(e) = self.get_in(q, &guard) else { return };
        self.len.fetch_sub(1, Ordering::Relaxed);
        if self.pinned_frozen_has(q) {
            self.delta.insert(e.clone(), false, &self.delta.guard());
        } else {
            self.delta.remove(q, &self.delta.guard());
        }
        drop(guard);
        self.written();
        self.fold_if_due();
    }

    /// Whether the current frozen table has `q` (writer only: no fold runs).
    fn pinned_frozen_has(&self, q: &Q) -> bool {
        self.frozen.load().get(q, self.hasher.hash_one(q)).is_some()
    }

    fn fold_if_due(&self) {
        if self.delta.len() > FOLD_MIN.max(self.frozen.load().len) {
            self.fold();
        }
    }

    /// Folds the delta if it holds anything and no write came since the
    /// last call: a periodic task calls it, so that the delta a burst of
    /// writes (an import) left behind stops costing reads a probe.
    pub fn fold_if_quiet(&self) {
        let writes = self.writes.load(Ordering::Relaxed);
        if self.writes_seen.swap(writes, Ordering::Relaxed) != writes || self.in_delta.load(Ordering::Relaxed) == 0 {
            return;
        }
        let _w = self.writer.lock();
        if self.writes.load(Ordering::Relaxed) == writes {
            self.fold();
        }
    }

    /// Writer only.
    fn fold(&self) {
        let frozen = self.frozen.load_full();
        let guard = self.delta.guard();
        // The frozen table's slots whose key the delta replaces or removes,
        // found from the delta's side (its entries are the fewer): the
        // table is then walked once, in order, without a probe per entry.
        let mut shadowed = vec![false; frozen.slots.len()];
        let mut live = 0;
        for (e, is_live) in self.delta.iter(&guard) {
            if let Some(i) = frozen.slot_of(e.borrow(), self.hasher.hash_one(e.borrow())) {
                shadowed[i] = true;
            }
            live += usize::from(*is_live);
        }
        let kept = frozen.slots.iter().zip(&shadowed).filter(|(_, s)| !**s).filter_map(|(e, _)| e.clone());
        let added = self.delta.iter(&guard).filter(|(_, live)| **live).map(|(e, _)| e.clone());
        let epoch = frozen.epoch + 1;
        // The entries held, counted from the two parts (not taken on trust
        // from `len`), so that a mass update does not leave a table sized
        // for its keys twice over.
        let held = frozen.len - shadowed.iter().filter(|s| **s).count() + live;
        let next = Frozen::build(held, kept.chain(added), |e| self.hasher.hash_one(e.borrow()), epoch);
        debug_assert_eq!(next.len, self.len.load(Ordering::Relaxed));
        drop(frozen);
        self.frozen.store(Arc::new(next));
        self.epoch.store(epoch, Ordering::Release);
        self.delta.clear(&guard);
        self.in_delta.store(0, Ordering::Release);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every entry, in no order. Writers wait meanwhile (a
    /// fold would move entries between the two parts); readers do not.
    pub fn for_each(&self, mut f: impl FnMut(&E)) {
        let _w = self.writer.lock();
        let guard = self.delta.guard();
        let frozen = self.frozen.load();
        for e in frozen.slots.iter().flatten() {
            if !self.delta.contains_key(e.borrow(), &guard) {
                f(e);
            }
        }
        for (e, live) in self.delta.iter(&guard) {
            if *live {
                f(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::hash::RandomState;

    /// An entry keyed by its first field, carrying a version.
    #[derive(Clone, Debug)]
    struct E(Arc<(u64, u64)>);

    impl Borrow<u64> for E {
        fn borrow(&self) -> &u64 {
            &self.0.0
        }
    }
    impl PartialEq for E {
        fn eq(&self, o: &E) -> bool {
            self.0.0 == o.0.0
        }
    }
    impl Eq for E {}
    impl Hash for E {
        fn hash<H: std::hash::Hasher>(&self, s: &mut H) {
            self.0.0.hash(s);
        }
    }

    fn e(k: u64, v: u64) -> E {
        E(Arc::new((k, v)))
    }

    fn version(m: &ReadMap<E, u64, RandomState>, k: u64) -> Option<u64> {
        m.get_in(&k, &m.guard()).map(|e| e.0.1)
    }

    /// Random inserts, replacements and removals, checked against a
    /// `HashMap` after every step, across many folds.
    #[test]
    fn agrees_with_a_hash_map_across_folds() {
        let m = ReadMap::from_entries((0..1_000).map(|k| e(k, 0)).collect(), RandomState::new());
        let mut model: HashMap<u64, u64> = (0..1_000).map(|k| (k, 0)).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 1..=200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 3_000;
            if x.is_multiple_of(3) {
                m.remove(&k);
                model.remove(&k);
            } else {
                m.insert(e(k, step));
                model.insert(k, step);
            }
            // Folds besides the ones the writes make (when the delta
            // outgrows the frozen table), at steps no multiple of the checks'.
            if step % 1_499 == 0 {
                let _w = m.writer.lock();
                m.fold();
            }
            if step % 997 == 0 {
                for k in 0..3_000 {
                    assert_eq!(version(&m, k), model.get(&k).copied(), "key {k} at step {step}");
                }
                assert_eq!(m.len(), model.len());
            }
        }
        assert!(m.epoch.load(Ordering::Relaxed) >= 130, "folded {} times", m.epoch.load(Ordering::Relaxed));
        let mut all = Vec::new();
        m.for_each(|e| all.push((e.0.0, e.0.1)));
        all.sort();
        let mut want: Vec<(u64, u64)> = model.into_iter().collect();
        want.sort();
        assert_eq!(all, want);
    }

    /// Readers on other threads never miss a key that stays, nor see a
    /// version older than one already seen, while a writer folds again and
    /// again.
    #[test]
    fn readers_never_miss_a_key_across_folds() {
        let m = ReadMap::from_entries((0..1_000).map(|k| e(k, 0)).collect(), RandomState::new());
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut seen = vec![0u64; 1_000];
                    while !done.load(Ordering::Relaxed) {
                        let g = m.guard();
                        for k in 0..1_000u64 {
                            let v = m.get_in(&k, &g).map(|e| e.0.1);
                            let v = v.unwrap_or_else(|| panic!("key {k} missed"));
                            assert!(v >= seen[k as usize], "key {k} went back from {} to {v}", seen[k as usize]);
                            seen[k as usize] = v;
                        }
                    }
                });
            }
            // The readers stop when the writer is done, or has panicked
            // (the test then fails instead of hanging).
            struct Done<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _done = Done(&done);
            // Keys 0..1000 are replaced with ever newer versions; keys
            // from 1000 on come and go, so the delta fills and folds.
            for round in 1..=40u64 {
                for k in 0..1_000 {
                    m.insert(e(k, round));
                }
                for k in 1_000..6_000 {
                    m.insert(e(k, round));
                }
                for k in 1_000..6_000 {
                    m.remove(&k);
                }
            }
        });
        assert!(m.epoch.load(Ordering::Relaxed) >= 40);
        assert_eq!(m.len(), 1_000);
    }

    #[test]
    fn a_quiet_delta_is_folded_and_a_busy_one_is_not() {
        let m = ReadMap::from_entries((0..100).map(|k| e(k, 0)).collect(), RandomState::new());
        m.insert(e(5, 1));
        m.remove(&6);
        m.fold_if_quiet();
        assert_eq!(m.epoch.load(Ordering::Relaxed), 0, "written since the last look: not folded");
        m.fold_if_quiet();
        assert_eq!((m.epoch.load(Ordering::Relaxed), m.in_delta.load(Ordering::Relaxed)), (1, 0));
        assert_eq!((version(&m, 5), version(&m, 6), version(&m, 7), m.len()), (Some(1), None, Some(0), 99));
        m.fold_if_quiet();
        assert_eq!(m.epoch.load(Ordering::Relaxed), 1, "nothing to fold");
    }

    #[test]
    fn an_empty_map_finds_nothing_and_grows() {
        let m: ReadMap<E, u64, RandomState> = ReadMap::from_entries(Vec::new(), RandomState::new());
        assert!(m.is_empty() && version(&m, 0).is_none());
        for k in 0..(3 * FOLD_MIN as u64) {
            m.insert(e(k, 1));
        }
        assert_eq!((m.len(), version(&m, 5), version(&m, u64::MAX)), (3 * FOLD_MIN, Some(1), None));
        m.remove(&5);
        m.remove(&5);
        assert_eq!((m.len(), version(&m, 5)), (3 * FOLD_MIN - 1, None));
    }
}
