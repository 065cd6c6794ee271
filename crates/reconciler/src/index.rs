//! Indexes kept up to date from the watches, so that a lookup costs one probe instead of a scan
//! of every cached object (a scan per event or per sync is O(N²) over an initial list of N):
//! - [`TargetIndex`]: which ExternalSecrets target which Secret (maps a Secret event to its
//!   ExternalSecrets);
//! - [`CreatedByCounts`]: how many cached Secrets carry each `created-by` label value (lets the
//!   orphan search of a sync, which looks for Secrets this ExternalSecret wrote under another
//!   name, skip the scan when there can be none: the case of every new ExternalSecret).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// `(namespace, target Secret name)` → names of the ExternalSecrets targeting it.
///
/// Most ExternalSecrets target the Secret of their own name (`spec.target.name` unset): those
/// are kept as one 8-byte hash each, not as two map entries with their names (about 360 bytes
/// per ExternalSecret, measured with heaptrack at 10,000). Only the others get map entries.
#[derive(Debug, Default)]
pub struct TargetIndex {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Targets other than the ExternalSecret's own name. Sorted, without duplicates; almost
    /// always one name (a `BTreeSet` of one name costs a whole B-tree node, about 300 bytes).
    by_target: HashMap<(String, String), Vec<Box<str>>>,
    /// `(namespace, ExternalSecret name)` → its target, for the same ExternalSecrets, to move an
    /// entry when the target changes.
    target_of: HashMap<(String, String), String>,
    /// [`own_key`]s of the ExternalSecrets that target the Secret of their own name. A hash
    /// collision can only wake an ExternalSecret for a Secret it does not target: a no-op
    /// reconcile, never a missed one.
    own_name: HashSet<u64>,
    /// A relist in progress: the objects seen so far (replaces the index at its end).
    relisting: Option<Vec<(String, String, String)>>,
}

/// The key of an ExternalSecret (or of a Secret of the same name) in [`Inner::own_name`].
fn own_key(ns: &str, name: &str) -> u64 {
    crate::compact::hash(&[ns, name])
}

impl Inner {
    fn remove(&mut self, ns: &str, name: &str) {
        self.own_name.remove(&own_key(ns, name));
        let key = (ns.to_string(), name.to_string());
        if let Some(old) = self.target_of.remove(&key) {
            let t = (ns.to_string(), old);
            if let Some(set) = self.by_target.get_mut(&t) {
                if let Ok(i) = set.binary_search_by(|n| (**n).cmp(name)) {
                    set.remove(i);
                }
                if set.is_empty() {
                    self.by_target.remove(&t);
                }
            }
        }
    }

    fn insert(&mut self, ns: &str, name: &str, target: &str) {
        self.remove(ns, name);
        if target == name {
            self.own_name.insert(own_key(ns, name));
            return;
        }
        self.target_of
            .insert((ns.to_string(), name.to_string()), target.to_string());
        let set = self
            .by_target
            .entry((ns.to_string(), target.to_string()))
            .or_default();
        if let Err(i) = set.binary_search_by(|n| (**n).cmp(name)) {
            set.insert(i, name.into());
        }
    }
}

impl TargetIndex {
    /// An ExternalSecret was created or changed.
    pub fn apply(&self, ns: &str, name: &str, target: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.insert(ns, name, target);
        }
    }

    /// An ExternalSecret was deleted.
    pub fn delete(&self, ns: &str, name: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.remove(ns, name);
        }
    }

    /// A relist starts: objects reported until [`TargetIndex::relist_done`] replace the index.
    pub fn relist_start(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.relisting = Some(Vec::new());
        }
    }

    /// One object of a relist.
    pub fn relist_item(&self, ns: &str, name: &str, target: &str) {
        if let Ok(mut i) = self.inner.lock() {
            match i.relisting.as_mut() {
                Some(buf) => buf.push((ns.to_string(), name.to_string(), target.to_string())),
                None => i.insert(ns, name, target),
            }
        }
    }

    /// The relist is complete: the index now holds exactly what it listed.
    pub fn relist_done(&self) {
        if let Ok(mut i) = self.inner.lock()
            && let Some(buf) = i.relisting.take()
        {
            i.by_target.clear();
            i.target_of.clear();
            i.own_name.clear();
            for (ns, name, target) in buf {
                i.insert(&ns, &name, &target);
            }
        }
    }

    /// The ExternalSecrets in `ns` that target the Secret `secret`, sorted.
    pub fn targeting(&self, ns: &str, secret: &str) -> Vec<String> {
        let Ok(i) = self.inner.lock() else {
            return Vec::new();
        };
        let mut names: Vec<String> = i
            .by_target
            .get(&(ns.to_string(), secret.to_string()))
            .map(|s| s.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        if i.own_name.contains(&own_key(ns, secret))
            && let Err(at) = names.binary_search_by(|n| n.as_str().cmp(secret))
        {
            names.insert(at, secret.to_string());
        }
        names
    }
}

/// How many cached managed Secrets carry each `created-by` label value, by a hash of the value
/// ([`crate::secrets::created_by_key`]): a count, not the Secrets, so it costs a few bytes per
/// Secret. Hash collisions only make a caller look when it need not.
#[derive(Debug, Default)]
pub struct CreatedByCounts {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    counts: HashMap<u64, u32>,
    /// A relist in progress: the counts of the objects seen so far (replace `counts` at its end).
    relisting: Option<HashMap<u64, u32>>,
}

fn bump(counts: &mut HashMap<u64, u32>, key: u64) {
    *counts.entry(key).or_insert(0) += 1;
}

impl CreatedByCounts {
    /// A cached Secret changed from `old` (absent: new) to `new` (the label keys of both).
    pub fn replace(&self, old: Option<Option<u64>>, new: Option<u64>) {
        let Ok(mut i) = self.inner.lock() else {
            return;
        };
        if let Some(old) = old {
            if old == new {
                return;
            }
            if let Some(k) = old {
                Self::drop_one(&mut i.counts, k);
            }
        }
        if let Some(k) = new {
            bump(&mut i.counts, k);
        }
    }

    /// A cached Secret carrying the label key `key` was deleted.
    pub fn delete(&self, key: Option<u64>) {
        if let (Ok(mut i), Some(k)) = (self.inner.lock(), key) {
            Self::drop_one(&mut i.counts, k);
        }
    }

    fn drop_one(counts: &mut HashMap<u64, u32>, k: u64) {
        if let Some(c) = counts.get_mut(&k) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                counts.remove(&k);
            }
        }
    }

    /// A relist starts: the Secrets reported until [`CreatedByCounts::relist_done`] replace the
    /// counts.
    pub fn relist_start(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.relisting = Some(HashMap::new());
        }
    }

    /// One Secret of a relist.
    pub fn relist_item(&self, key: Option<u64>) {
        let (Ok(mut i), Some(k)) = (self.inner.lock(), key) else {
            return;
        };
        match i.relisting.as_mut() {
            Some(buf) => bump(buf, k),
            None => bump(&mut i.counts, k),
        }
    }

    /// The relist is complete: the counts are now those of what it listed.
    pub fn relist_done(&self) {
        if let Ok(mut i) = self.inner.lock()
            && let Some(buf) = i.relisting.take()
        {
            i.counts = buf;
        }
    }

    /// How many cached Secrets carry the label key `key`.
    pub fn count(&self, key: u64) -> u32 {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.counts.get(&key).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_creates_renames_deletes_and_relists() {
        let idx = TargetIndex::default();
        idx.apply("a", "es1", "s");
        idx.apply("a", "es2", "s");
        idx.apply("b", "es1", "s");
        assert_eq!(idx.targeting("a", "s"), ["es1", "es2"]);
        assert_eq!(idx.targeting("b", "s"), ["es1"]);
        // Renamed target: the entry moves.
        idx.apply("a", "es1", "t");
        assert_eq!(idx.targeting("a", "s"), ["es2"]);
        assert_eq!(idx.targeting("a", "t"), ["es1"]);
        idx.delete("a", "es2");
        assert!(idx.targeting("a", "s").is_empty());
        // A relist replaces everything: objects deleted while the watch was down go.
        idx.relist_start();
        idx.relist_item("b", "es1", "s");
        assert_eq!(
            idx.targeting("a", "t"),
            ["es1"],
            "old view until the relist completes"
        );
        idx.relist_done();
        assert!(idx.targeting("a", "t").is_empty());
        assert_eq!(idx.targeting("b", "s"), ["es1"]);
    }

    #[test]
    fn an_external_secret_targeting_its_own_name_is_found_without_map_entries() {
        let idx = TargetIndex::default();
        idx.apply("a", "db", "db");
        idx.apply("a", "other", "db");
        assert_eq!(idx.targeting("a", "db"), ["db", "other"]);
        assert!(idx.targeting("b", "db").is_empty(), "per namespace");
        assert!(idx.targeting("a", "other").is_empty(), "other targets db");
        if let Ok(i) = idx.inner.lock() {
            assert_eq!((i.own_name.len(), i.target_of.len()), (1, 1));
        }
        // The target is set to another name, then back to the default.
        idx.apply("a", "db", "db-secret");
        assert_eq!(idx.targeting("a", "db"), ["other"]);
        assert_eq!(idx.targeting("a", "db-secret"), ["db"]);
        idx.apply("a", "db", "db");
        assert_eq!(idx.targeting("a", "db"), ["db", "other"]);
        assert!(idx.targeting("a", "db-secret").is_empty());
        // Deleted, and gone after a relist that no longer lists it.
        idx.delete("a", "db");
        assert_eq!(idx.targeting("a", "db"), ["other"]);
        idx.apply("a", "db", "db");
        idx.relist_start();
        idx.relist_item("a", "other", "db");
        idx.relist_done();
        assert_eq!(idx.targeting("a", "db"), ["other"]);
    }

    #[test]
    fn counts_follow_creates_relabels_deletes_and_relists() {
        let c = CreatedByCounts::default();
        c.replace(None, Some(1));
        c.replace(None, Some(1));
        c.replace(None, None);
        assert_eq!((c.count(1), c.count(2)), (2, 0));
        // Same label again (a data change): nothing moves.
        c.replace(Some(Some(1)), Some(1));
        assert_eq!(c.count(1), 2);
        // Relabelled, then the label removed.
        c.replace(Some(Some(1)), Some(2));
        assert_eq!((c.count(1), c.count(2)), (1, 1));
        c.replace(Some(Some(2)), None);
        assert_eq!(c.count(2), 0);
        c.delete(Some(1));
        c.delete(Some(1));
        assert_eq!(c.count(1), 0, "never below zero");
        // A relist replaces the counts at its end.
        c.replace(None, Some(5));
        c.relist_start();
        c.relist_item(Some(7));
        c.relist_item(None);
        assert_eq!(
            (c.count(5), c.count(7)),
            (1, 0),
            "old counts until the relist completes"
        );
        c.relist_done();
        assert_eq!((c.count(5), c.count(7)), (0, 1));
    }
}
