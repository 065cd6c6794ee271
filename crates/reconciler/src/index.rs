//! Which ExternalSecrets target which Secret: an index kept up to date from the ExternalSecret
//! watch, so a Secret event is mapped to its ExternalSecrets with one lookup instead of a scan of
//! every cached ExternalSecret (a scan per event is O(N²) over the initial list of N Secrets).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// `(namespace, target Secret name)` → names of the ExternalSecrets targeting it.
#[derive(Debug, Default)]
pub struct TargetIndex {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_target: HashMap<(String, String), BTreeSet<String>>,
    /// `(namespace, ExternalSecret name)` → its target, to move an entry when the target changes.
    target_of: HashMap<(String, String), String>,
    /// A relist in progress: the objects seen so far (replaces the index at its end).
    relisting: Option<Vec<(String, String, String)>>,
}

impl Inner {
    fn remove(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        if let Some(old) = self.target_of.remove(&key) {
            let t = (ns.to_string(), old);
            if let Some(set) = self.by_target.get_mut(&t) {
                set.remove(name);
                if set.is_empty() {
                    self.by_target.remove(&t);
                }
            }
        }
    }

    fn insert(&mut self, ns: &str, name: &str, target: &str) {
        self.remove(ns, name);
        self.target_of
            .insert((ns.to_string(), name.to_string()), target.to_string());
        self.by_target
            .entry((ns.to_string(), target.to_string()))
            .or_default()
            .insert(name.to_string());
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
            for (ns, name, target) in buf {
                i.insert(&ns, &name, &target);
            }
        }
    }

    /// The ExternalSecrets in `ns` that target the Secret `secret`.
    pub fn targeting(&self, ns: &str, secret: &str) -> Vec<String> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| {
                i.by_target
                    .get(&(ns.to_string(), secret.to_string()))
                    .map(|s| s.iter().cloned().collect())
            })
            .unwrap_or_default()
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
}
