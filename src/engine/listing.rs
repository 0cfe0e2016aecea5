//! Ordered ids for the admin API's list routes, kept in memory beside the
//! index so that a page costs O(log n + limit) instead of a scan of the store
//! or of the whole index.
//!
//! Writers (the engine's admin operations, under the admin lock, after the
//! store write succeeded) and readers (the list routes) take the `Listing`'s
//! own mutex for the few set operations they need; it is never held across I/O
//! and never taken by a verification.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::core::index::KeyEntry;
use crate::core::model::Millis;

/// What the listing files a key by: its entry (whose id orders it), owners
/// and status.
#[derive(Clone, Copy)]
pub struct Filed<'a> {
    /// The key's entry.
    pub entry: &'a Arc<KeyEntry>,
    /// Owning team.
    pub team: &'a str,
    /// Owning user.
    pub user: &'a str,
    /// Enabled.
    pub enabled: bool,
    /// Expiry.
    pub expires_at: Option<Millis>,
}

impl<'a> Filed<'a> {
    /// How `e` is filed.
    pub fn of(e: &'a Arc<KeyEntry>) -> Filed<'a> {
        Filed { entry: e, team: e.team_id(), user: e.user_id(), enabled: e.enabled, expires_at: e.expires_at() }
    }
}

/// Where a page starts: seed 001's cursors, which are object ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor<'a> {
    /// From the first object (after `offset` of them).
    Start,
    /// The objects whose id sorts after this one (the id need not exist).
    After(&'a str),
    /// The objects whose id sorts before this one, the last `limit` of them.
    Before(&'a str),
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The objects, in id order.
    pub items: Vec<T>,
    /// Objects in the whole listing (after its filter).
    pub total: usize,
    /// Whether an object sorts before the page's first one.
    pub more_before: bool,
    /// Whether an object sorts after the page's last one.
    pub more_after: bool,
}

impl<T> Page<T> {
    /// The same page with other items (records looked up from the ids).
    pub fn map<U>(self, items: Vec<U>) -> Page<U> {
        Page { items, total: self.total, more_before: self.more_before, more_after: self.more_after }
    }
}

/// The page of `set` at `cursor`, skipping `offset`, at most `limit` ids.
pub fn page_of<K: Borrow<str> + Ord>(
    set: &BTreeSet<K>,
    cursor: Cursor<'_>,
    offset: usize,
    limit: usize,
) -> Page<String> {
    let owned = |k: &K| -> String { k.borrow().to_owned() };
    let items: Vec<String> = match cursor {
        Cursor::Start => set.iter().skip(offset).take(limit).map(owned).collect(),
        Cursor::After(a) => {
            set.range::<str, _>((Bound::Excluded(a), Bound::Unbounded)).skip(offset).take(limit).map(owned).collect()
        }
        Cursor::Before(b) => {
            let mut v: Vec<String> = set
                .range::<str, _>((Bound::Unbounded, Bound::Excluded(b)))
                .rev()
                .skip(offset)
                .take(limit)
                .map(owned)
                .collect();
            v.reverse();
            v
        }
    };
    let more_before = items
        .first()
        .is_some_and(|f| set.range::<str, _>((Bound::Unbounded, Bound::Excluded(f.as_str()))).next_back().is_some());
    let more_after = items
        .last()
        .is_some_and(|l| set.range::<str, _>((Bound::Excluded(l.as_str()), Bound::Unbounded)).next().is_some());
    Page { items, total: set.len(), more_before, more_after }
}

/// A key in a listing set: its entry, ordered and borrowed as its id. One
/// pointer per key and set, where a copy of the id took 32 bytes (at a
/// million keys, two sets each: about 40 MB less, ARCHITECTURE.md). The
/// entry an update replaces is re-filed with it, so a set holds the live
/// entry; only the id is ever read from it.
#[derive(Clone)]
pub struct Listed(Arc<KeyEntry>);

impl Listed {
    fn id(&self) -> &str {
        &self.0.id
    }
}

impl Borrow<str> for Listed {
    fn borrow(&self) -> &str {
        self.id()
    }
}

impl PartialEq for Listed {
    fn eq(&self, other: &Listed) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Listed {}

impl PartialOrd for Listed {
    fn partial_cmp(&self, other: &Listed) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// As `str` orders, so that `range::<str, _>` finds ids.
impl Ord for Listed {
    fn cmp(&self, other: &Listed) -> std::cmp::Ordering {
        self.id().cmp(other.id())
    }
}

impl std::fmt::Debug for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.id(), f)
    }
}

/// The keys of one team or one user, split by status as `GET /v1/keys`
/// filters them: active is enabled and not expired.
#[derive(Default, Debug)]
pub struct KeySets {
    active: BTreeSet<Listed>,
    inactive: BTreeSet<Listed>,
    /// `(expires_at, key)` of the active keys that expire: swept into
    /// `inactive` when a listing finds them expired (each key moves once).
    expiring: BTreeSet<(Millis, Listed)>,
}

impl KeySets {
    fn insert(&mut self, k: &Filed<'_>, now: Millis) {
        let key = Listed(k.entry.clone());
        if k.enabled && k.expires_at.is_none_or(|e| now < e) {
            if let Some(e) = k.expires_at {
                self.expiring.insert((e, key.clone()));
            }
            self.active.insert(key);
        } else {
            self.inactive.insert(key);
        }
    }

    fn remove(&mut self, k: &Filed<'_>) {
        let id: &str = &k.entry.id;
        self.active.remove(id);
        self.inactive.remove(id);
        if let Some(e) = k.expires_at {
            // Found by its id: the entry filed may be one the update replaced.
            self.expiring.remove(&(e, Listed(k.entry.clone())));
        }
    }

    /// Moves the keys expired at `now` from active to inactive. A key that
    /// expires is inactive from then on (only an update, which re-files it,
    /// can change that), so each key is moved at most once.
    fn sweep(&mut self, now: Millis) {
        while let Some((e, _)) = self.expiring.first()
            && *e <= now
        {
            if let Some((_, id)) = self.expiring.pop_first() {
                self.active.remove(&id);
                self.inactive.insert(id);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.active.is_empty() && self.inactive.is_empty()
    }

    /// The keys with that status at `now`.
    pub fn with_status(&mut self, active: bool, now: Millis) -> &BTreeSet<Listed> {
        self.sweep(now);
        if active { &self.active } else { &self.inactive }
    }
}

/// Adds `items` to `set`: built in one pass when `set` is empty (the
/// standard library's bulk build from sorted items), else one at a time.
fn merge<T: Ord>(set: &mut BTreeSet<T>, items: Vec<T>) {
    if set.is_empty() {
        *set = items.into_iter().collect();
    } else {
        set.extend(items);
    }
}

/// The ordered ids of every listing.
#[derive(Default, Debug)]
pub struct Listing {
    /// Every team.
    pub teams: BTreeSet<String>,
    /// Users of each team (Deleted ones included: they are listed anonymized).
    users: HashMap<String, BTreeSet<String>>,
    /// Keys of each team.
    team_keys: HashMap<String, KeySets>,
    /// Keys of each user.
    user_keys: HashMap<String, KeySets>,
}

impl Listing {
    /// Files a new team.
    pub fn add_team(&mut self, id: &str) {
        self.teams.insert(id.to_owned());
    }

    /// Forgets a team and everything filed under it.
    pub fn remove_team(&mut self, id: &str) {
        self.teams.remove(id);
        for u in self.users.remove(id).unwrap_or_default() {
            self.user_keys.remove(&u);
        }
        self.team_keys.remove(id);
    }

    /// Files a user under its team.
    pub fn add_user(&mut self, team: &str, id: &str) {
        self.users.entry(team.to_owned()).or_default().insert(id.to_owned());
    }

    /// The user ids of a team, if it has any.
    pub fn users_of(&self, team: &str) -> Option<&BTreeSet<String>> {
        self.users.get(team)
    }

    /// Files a key (new, or re-filed after an update) under its team and user.
    pub fn add_key(&mut self, k: &Filed<'_>, now: Millis) {
        for (map, owner) in [(&mut self.team_keys, k.team), (&mut self.user_keys, k.user)] {
            match map.get_mut(owner) {
                Some(sets) => sets.insert(k, now),
                None => map.entry(owner.to_owned()).or_default().insert(k, now),
            }
        }
    }

    /// Unfiles a key as it was filed (its expiry finds it among the expiring).
    pub fn remove_key(&mut self, k: &Filed<'_>) {
        for (map, owner) in [(&mut self.team_keys, k.team), (&mut self.user_keys, k.user)] {
            if let Some(sets) = map.get_mut(owner) {
                sets.remove(k);
                if sets.is_empty() {
                    map.remove(owner);
                }
            }
        }
    }

    /// Files keys given in id order, all at once: each set is built from
    /// sorted ids in one pass (packed nodes, no search per id). Startup's way.
    pub fn add_sorted_keys<'a>(&mut self, keys: impl Iterator<Item = Filed<'a>>, now: Millis) {
        #[derive(Default)]
        struct Sorted {
            active: Vec<Listed>,
            inactive: Vec<Listed>,
            expiring: Vec<(Millis, Listed)>,
        }
        let mut teams: HashMap<&str, Sorted> = HashMap::new();
        let mut users: HashMap<&str, Sorted> = HashMap::new();
        for k in keys {
            for (map, owner) in [(&mut teams, k.team), (&mut users, k.user)] {
                let s = map.entry(owner).or_default();
                let key = Listed(k.entry.clone());
                if k.enabled && k.expires_at.is_none_or(|e| now < e) {
                    if let Some(e) = k.expires_at {
                        s.expiring.push((e, key.clone()));
                    }
                    s.active.push(key);
                } else {
                    s.inactive.push(key);
                }
            }
        }
        for (map, sorted) in [(&mut self.team_keys, teams), (&mut self.user_keys, users)] {
            for (owner, s) in sorted {
                let sets = map.entry(owner.to_owned()).or_default();
                merge(&mut sets.active, s.active);
                merge(&mut sets.inactive, s.inactive);
                merge(&mut sets.expiring, s.expiring);
            }
        }
    }

    /// The key sets of a team, or of one user when `user` is given.
    pub fn keys_of(&mut self, team: &str, user: Option<&str>) -> Option<&mut KeySets> {
        match user {
            None => self.team_keys.get_mut(team),
            Some(u) => self.user_keys.get_mut(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::index::{KeyCounters, KeyHot, KeyPolicy, TeamEntry, UserEntry};
    use crate::core::model::{Permissions, Role, Tier, UserStatus};
    use crate::core::perms::PermSet;

    /// An entry of key `id` (only its id is read by the listing).
    fn entry(id: &str) -> Arc<KeyEntry> {
        let team = Arc::new(TeamEntry::new("t", Tier::Pro, 0));
        let hot = KeyHot::new(None, None, None, true, false);
        let grant = Arc::new(PermSet::new(&Permissions::default()));
        Arc::new(KeyEntry::new(
            Arc::new(KeyCounters::zero()),
            Arc::new(UserEntry::new("u", team, Role::Administrator, UserStatus::Enabled, 0)),
            Arc::new(KeyPolicy::new(grant, Vec::new(), &hot)),
            &hot,
            id,
            [0; 32],
        ))
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ids(set: &BTreeSet<Listed>) -> Vec<&str> {
        set.iter().map(Listed::id).collect()
    }

    #[test]
    fn pages_like_a_sorted_slice() {
        let s = set(&["a", "b", "c", "d", "e"]);
        let p = page_of(&s, Cursor::Start, 0, 2);
        assert_eq!((p.items, p.total, p.more_before, p.more_after), (vec!["a".into(), "b".into()], 5, false, true));
        let p = page_of(&s, Cursor::After("b"), 0, 2);
        assert_eq!((p.items, p.more_before, p.more_after), (vec!["c".into(), "d".into()], true, true));
        let p = page_of(&s, Cursor::After("bb"), 1, 10);
        assert_eq!((p.items, p.more_before, p.more_after), (vec!["d".into(), "e".into()], true, false));
        let p = page_of(&s, Cursor::Before("d"), 0, 2);
        assert_eq!((p.items, p.more_before, p.more_after), (vec!["b".into(), "c".into()], true, true));
        let p = page_of(&s, Cursor::Before("b"), 0, 5);
        assert_eq!((p.items, p.more_before, p.more_after), (vec!["a".into()], false, true));
        let p = page_of(&s, Cursor::After("e"), 0, 5);
        assert!(p.items.is_empty() && !p.more_before && !p.more_after);
        let p = page_of(&s, Cursor::Start, 7, 5);
        assert!(p.items.is_empty());
    }

    #[test]
    fn expired_keys_move_to_inactive_once() {
        let entries: Vec<Arc<KeyEntry>> = ["k1", "k2", "k3", "k4"].into_iter().map(entry).collect();
        let key = |i: usize, exp: Option<Millis>, enabled: bool| Filed {
            entry: &entries[i],
            team: "t",
            user: "u",
            enabled,
            expires_at: exp,
        };
        let mut l = Listing::default();
        l.add_key(&key(0, None, true), 100);
        l.add_key(&key(1, Some(200), true), 100);
        l.add_key(&key(2, Some(50), true), 100);
        l.add_key(&key(3, None, false), 100);
        let sets = l.keys_of("t", None).unwrap();
        assert_eq!(ids(sets.with_status(true, 150)), ["k1", "k2"]);
        assert_eq!(ids(sets.with_status(false, 150)), ["k3", "k4"]);
        assert_eq!(ids(sets.with_status(true, 200)), ["k1"]);
        assert_eq!(ids(l.keys_of("x", Some("u")).unwrap().with_status(false, 300)), ["k2", "k3", "k4"]);
        // Unfiled by another entry of the same id (an update's new one).
        let k2 = entry("k2");
        l.remove_key(&Filed { entry: &k2, team: "t", user: "u", enabled: true, expires_at: Some(200) });
        assert_eq!(ids(l.keys_of("t", None).unwrap().with_status(false, 300)), ["k3", "k4"]);
        assert_eq!(Arc::strong_count(&entries[1]), 1, "the listing let go of the entry it held");
    }
}
