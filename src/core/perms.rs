//! Permissions packed for the hot path.
//!
//! The stored form, [`Permissions`], is a `BTreeMap<String, Vec<String>>`: one
//! heap allocation per resource name, per action list and per action. Checking
//! one permission against it chases five to ten pointers, each a cache miss
//! once a million keys are loaded. [`PermSet`] holds the same grants in two
//! arrays (all names in one string, their spans in one `u32` array), both
//! inline unless the set is large. A key's set lives inside its index entry,
//! right after the settings the verifier reads, so a check or an encoding of
//! the whole set reads lines the entry's lookup has already brought in.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use smallvec::SmallVec;

/// `{resource: [actions]}`; `*` as a resource or action matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Permissions(pub BTreeMap<String, Vec<String>>);

impl Permissions {
    /// Whether `action` on `resource` is granted. The entry naming the resource,
    /// when there is one, decides alone; otherwise the `*` entry decides.
    pub fn allows(&self, resource: &str, action: &str) -> bool {
        self.0
            .get(resource)
            .or_else(|| self.0.get("*"))
            .is_some_and(|acts| acts.iter().any(|a| a == action || a == "*"))
    }

    /// The actions granted on `resource`, `None` standing for every resource
    /// not named: the resource's own entry decides alone, else the `*` entry.
    fn actions_on(&self, resource: Option<&str>) -> &[String] {
        resource.and_then(|r| self.0.get(r)).or_else(|| self.0.get("*")).map_or(&[], Vec::as_slice)
    }

    /// Named resources of both sets (not `*`), then `None` for all others:
    /// every class of resource on which the two sets can differ.
    fn resources<'a>(&'a self, other: &'a Permissions) -> impl Iterator<Item = Option<&'a str>> {
        let named: std::collections::BTreeSet<&str> =
            self.0.keys().chain(other.0.keys()).map(String::as_str).filter(|r| *r != "*").collect();
        named.into_iter().map(Some).chain([None])
    }

    /// What this set grants beyond `ceiling`, as `resource:action` strings
    /// (`*` for "any"); empty when every permission here is also in `ceiling`.
    pub fn excess_over(&self, ceiling: &Permissions) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.resources(ceiling) {
            let cap = ceiling.actions_on(r);
            let cap_all = cap.iter().any(|a| a == "*");
            for a in self.actions_on(r) {
                if !(cap_all || (a != "*" && cap.contains(a))) {
                    let item = format!("{}:{a}", r.unwrap_or("*"));
                    if !out.contains(&item) {
                        out.push(item);
                    }
                }
            }
        }
        out
    }

    /// The permissions both sets grant: `allows(r, a)` of the result is
    /// `self.allows(r, a) && other.allows(r, a)` for every `r` and `a`.
    pub fn intersect(&self, other: &Permissions) -> Permissions {
        fn meet(a: &[String], b: &[String]) -> Vec<String> {
            let mut v: Vec<String> = if a.iter().any(|x| x == "*") {
                b.to_vec()
            } else if b.iter().any(|x| x == "*") {
                a.to_vec()
            } else {
                a.iter().filter(|x| b.contains(x)).cloned().collect()
            };
            v.sort();
            v.dedup();
            v
        }
        let star = meet(self.actions_on(None), other.actions_on(None));
        let mut out = BTreeMap::new();
        for r in self.resources(other).flatten() {
            let acts = meet(self.actions_on(Some(r)), other.actions_on(Some(r)));
            // An entry equal to the `*` entry says nothing the `*` entry does not.
            if acts != star {
                out.insert(r.to_owned(), acts);
            }
        }
        if !star.is_empty() {
            out.insert("*".to_owned(), star);
        }
        Permissions(out)
    }
}

/// Immutable `{resource: [actions]}` with `*` wildcards.
///
/// A key's grant is shared behind an `Arc` by every key with the same grant
/// (`Index::intern`); a verdict borrows it through the key's entry and never
/// clones that `Arc`, so the hot path writes no refcount of a shared set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PermSet {
    /// Per resource, in name order: `start, end` of its name in `text`, the
    /// number of actions `n`, then `n` pairs of `start, end`.
    spans: SmallVec<[u32; 16]>,
    /// Every resource and action name, concatenated (UTF-8: built from `&str`s).
    text: SmallVec<[u8; 56]>,
}

impl PermSet {
    /// The empty set.
    pub fn empty() -> &'static PermSet {
        static EMPTY: LazyLock<PermSet> = LazyLock::new(|| PermSet { text: SmallVec::new(), spans: SmallVec::new() });
        &EMPTY
    }

    /// Packs `p`.
    ///
    /// # Panics
    /// If the names together exceed 4 GiB (request bodies are capped far below).
    pub fn new(p: &Permissions) -> PermSet {
        let mut text = String::new();
        let mut spans = Vec::new();
        for (resource, actions) in &p.0 {
            let mut span = |s: &str| {
                let start = u32::try_from(text.len()).expect("permissions under 4 GiB");
                text.push_str(s);
                [start, u32::try_from(text.len()).expect("permissions under 4 GiB")]
            };
            spans.extend(span(resource));
            spans.push(u32::try_from(actions.len()).expect("permissions under 4 GiB"));
            for a in actions {
                spans.extend(span(a));
            }
        }
        PermSet { text: SmallVec::from_slice(text.as_bytes()), spans: SmallVec::from_vec(spans) }
    }

    /// Whether `action` on `resource` is granted. The entry naming the resource,
    /// when there is one, decides alone; otherwise the `*` entry decides (the
    /// rule of [`Permissions::allows`]).
    pub fn allows(&self, resource: &str, action: &str) -> bool {
        let mut star = None;
        for (r, mut actions) in self.entries() {
            if r == resource {
                return actions.any(|a| a == action || a == "*");
            }
            if r == "*" {
                star = Some(actions);
            }
        }
        star.is_some_and(|mut acts| acts.any(|a| a == action || a == "*"))
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The stored form of the set (for comparing grants off the hot path).
    pub fn to_permissions(&self) -> Permissions {
        Permissions(self.entries().map(|(r, acts)| (r.to_owned(), acts.map(str::to_owned).collect())).collect())
    }

    /// `(resource, actions)` in resource name order.
    pub fn entries(&self) -> Entries<'_> {
        // Always valid (built by concatenating `&str`s); checking is cheaper
        // than a pointer chase and keeps this crate free of `unsafe`.
        let text = std::str::from_utf8(&self.text).unwrap_or_default();
        Entries { spans: &self.spans, text, at: 0 }
    }
}

/// Iterator over a [`PermSet`]'s resources.
pub struct Entries<'a> {
    spans: &'a [u32],
    text: &'a str,
    at: usize,
}

/// Iterator over one resource's actions.
#[derive(Clone)]
pub struct Actions<'a> {
    text: &'a str,
    spans: &'a [u32],
}

fn slice(text: &str, start: u32, end: u32) -> &str {
    text.get(start as usize..end as usize).unwrap_or_default()
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, Actions<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.spans;
        let &[start, end, n] = s.get(self.at..self.at + 3)? else { return None };
        let acts_end = (self.at + 3 + 2 * n as usize).min(s.len());
        let actions = Actions { text: self.text, spans: &s[self.at + 3..acts_end] };
        self.at = acts_end;
        Some((slice(self.text, start, end), actions))
    }
}

impl<'a> Iterator for Actions<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let (&[start, end], rest) = self.spans.split_first_chunk::<2>()?;
        self.spans = rest;
        Some(slice(self.text, start, end))
    }
}

impl Actions<'_> {
    /// Actions left.
    pub fn count_left(&self) -> usize {
        self.spans.len() / 2
    }
}

impl Serialize for PermSet {
    /// The same JSON as [`Permissions`]: `{"resource": ["action", …]}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (r, actions) in self.entries() {
            map.serialize_entry(r, &ActionList(actions))?;
        }
        map.end()
    }
}

struct ActionList<'a>(Actions<'a>);

impl Serialize for ActionList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.count_left()))?;
        for a in self.0.clone() {
            seq.serialize_element(a)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn perms(entries: &[(&str, &[&str])]) -> Permissions {
        Permissions(
            entries.iter().map(|(r, a)| ((*r).to_owned(), a.iter().map(|s| (*s).to_owned()).collect())).collect(),
        )
    }

    #[test]
    fn allows_matches_the_stored_form_on_every_pair() {
        let p = perms(&[("files", &["read", "write"]), ("*", &["list"]), ("admin", &["*"]), ("empty", &[])]);
        let set = PermSet::new(&p);
        for r in ["files", "admin", "empty", "other", "*", ""] {
            for a in ["read", "write", "list", "delete", "*", ""] {
                assert_eq!(set.allows(r, a), p.allows(r, a), "{r}:{a}");
            }
        }
        assert!(!PermSet::empty().allows("files", "read"));
        assert!(PermSet::empty().is_empty());
    }

    #[test]
    fn a_set_too_large_to_be_inline_behaves_the_same() {
        let names: Vec<String> = (0..40).map(|i| format!("resource-number-{i}")).collect();
        let p = Permissions(names.iter().map(|n| (n.clone(), vec!["read".to_owned(), format!("act-{n}")])).collect());
        let set = PermSet::new(&p);
        for n in &names {
            assert!(set.allows(n, "read") && set.allows(n, &format!("act-{n}")) && !set.allows(n, "write"));
        }
        assert_eq!(serde_json::to_value(&set).unwrap(), serde_json::to_value(&p).unwrap());
    }

    #[test]
    fn iterates_and_serializes_like_the_stored_form() {
        let p = perms(&[("b", &["x", "y"]), ("a", &["z"]), ("c", &[])]);
        let set = PermSet::new(&p);
        let back: BTreeMap<String, Vec<String>> =
            set.entries().map(|(r, a)| (r.to_owned(), a.map(str::to_owned).collect())).collect();
        assert_eq!(back, p.0);
        assert_eq!(serde_json::to_value(&set).unwrap(), serde_json::to_value(&p).unwrap());
    }
}
