//! Kubernetes Events with a bounded memory cost.
//!
//! kube-runtime's `Recorder` keeps a full `events.k8s.io/v1` Event (about 3 KB) for every
//! distinct event it published in the last six minutes, and prunes that cache only when it
//! publishes again: after the initial sync of 10,000 ExternalSecrets ("Created" for each) it holds
//! 10,000 Events until the next one is published, however long the cluster stays quiet.
//!
//! [`Recorder`] has the same `new`/`publish` shape, and remembers only what folding a repeated
//! event into a series needs — the Event's name and namespace, the series count and when it was
//! last seen — in a map bounded by [`SERIES_CAPACITY`], pruned on insert. A repeated event within
//! [`SERIES_TTL`] patches the series (`kubectl describe` shows `(x5 over 3m)`); anything else
//! creates a new Event. The note is part of the key, so a changed message is a new Event instead
//! of the first message counted again (which is what kube's recorder shows).
//!
//! Events never carry secret values: callers put key names and paths in notes, never data.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

/// How long a published event can still be folded into a series (kube's recorder: 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// At most this many series are remembered; past it, expired ones are dropped, then the oldest.
pub const SERIES_CAPACITY: usize = 4096;

/// What folding a repeat into the published Event needs.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    namespace: String,
    count: i32,
    last: Instant,
}

/// Publishes Events for objects, folding repeats into series, with bounded memory.
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    capacity: usize,
    series: Mutex<HashMap<u64, Series>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("reporter", &self.reporter)
            .field("series", &self.len())
            .finish()
    }
}

fn type_str(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

fn hash_ref(r: &ObjectReference, h: &mut DefaultHasher) {
    r.api_version.hash(h);
    r.kind.hash(h);
    r.namespace.hash(h);
    r.name.hash(h);
    r.uid.hash(h);
    r.field_path.hash(h);
}

/// The series key: everything that makes two events "the same" for `kubectl describe`.
fn key(ev: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    type_str(ev.type_).hash(&mut h);
    ev.reason.hash(&mut h);
    ev.action.hash(&mut h);
    ev.note.hash(&mut h);
    hash_ref(regarding, &mut h);
    if let Some(s) = &ev.secondary {
        hash_ref(s, &mut h);
    }
    h.finish()
}

impl Recorder {
    /// A recorder publishing as `reporter` (controller name and, usually, the pod name).
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_capacity(client, reporter, SERIES_CAPACITY)
    }

    /// As [`Recorder::new`], remembering at most `capacity` series.
    pub fn with_capacity(client: Client, reporter: Reporter, capacity: usize) -> Self {
        Self {
            client,
            reporter,
            capacity: capacity.max(1),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// How many series are remembered now.
    pub fn len(&self) -> usize {
        self.series.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publish `ev` about `regarding` (cluster-scoped objects: in the `default` namespace).
    ///
    /// # Errors
    /// The apiserver's refusal to create or patch the Event.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let k = key(ev, regarding);
        let now = Instant::now();
        let repeat = self.bump(k, now);
        if let Some(s) = repeat {
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &s.namespace);
            let patch = serde_json::json!({
                "series": EventSeries {
                    count: s.count,
                    last_observed_time: MicroTime(Timestamp::now()),
                }
            });
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // The Event expired in the apiserver (its TTL) or was deleted: start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => self.forget(k),
                Err(e) => return Err(e),
            }
        }
        let event = self.generate(ev, regarding);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let created = api.create(&PostParams::default(), &event).await?;
        let name = created.metadata.name.unwrap_or_default();
        self.insert(
            k,
            Series {
                name,
                namespace,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    /// A live series for `k` with its count raised, or `None` (expired entries are dropped).
    fn bump(&self, k: u64, now: Instant) -> Option<Series> {
        let mut m = self.series.lock().ok()?;
        match m.get_mut(&k) {
            Some(s) if now.duration_since(s.last) < SERIES_TTL => {
                // A series starts at 2: the first occurrence plus this one.
                s.count = s.count.saturating_add(1).max(2);
                s.last = now;
                Some(s.clone())
            }
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    fn forget(&self, k: u64) {
        if let Ok(mut m) = self.series.lock() {
            m.remove(&k);
        }
    }

    fn insert(&self, k: u64, s: Series) {
        let Ok(mut m) = self.series.lock() else {
            return;
        };
        if m.len() >= self.capacity && !m.contains_key(&k) {
            let now = s.last;
            m.retain(|_, v| now.duration_since(v.last) < SERIES_TTL);
            while m.len() >= self.capacity {
                let oldest = m.iter().min_by_key(|(_, v)| v.last).map(|(k, _)| *k);
                match oldest {
                    Some(o) => {
                        m.remove(&o);
                    }
                    None => break,
                }
            }
        }
        m.insert(k, s);
    }

    fn generate(&self, ev: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = Timestamp::now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let base = regarding
            .name
            .clone()
            .unwrap_or_else(|| self.reporter.controller.clone());
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(type_str(ev.type_).to_string()),
            metadata: ObjectMeta {
                namespace: Some(namespace),
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(capacity: usize) -> Recorder {
        #[allow(clippy::unwrap_used)]
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        Recorder::with_capacity(
            client,
            Reporter {
                controller: "t".into(),
                instance: None,
            },
            capacity,
        )
    }

    fn series(n: &str, last: Instant) -> Series {
        Series {
            name: n.into(),
            namespace: "ns".into(),
            count: 1,
            last,
        }
    }

    fn ev(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Sync".into(),
            secondary: None,
        }
    }

    fn obj(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("ExternalSecret".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn memory_is_bounded_by_capacity() {
        let r = recorder(3);
        let now = Instant::now();
        for i in 0..10u64 {
            r.insert(i, series(&format!("e{i}"), now + Duration::from_millis(i)));
        }
        assert_eq!(r.len(), 3);
        // The newest survive.
        let m = r.series.lock().unwrap_or_else(|e| e.into_inner());
        assert!(m.contains_key(&9) && m.contains_key(&8) && m.contains_key(&7));
    }

    #[tokio::test]
    async fn expired_series_are_dropped_before_the_newest() {
        let r = recorder(2);
        let start = Instant::now();
        r.insert(1, series("old", start));
        r.insert(2, series("young", start + SERIES_TTL));
        r.insert(
            3,
            series("new", start + SERIES_TTL + Duration::from_secs(1)),
        );
        let m = r.series.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!m.contains_key(&1), "the expired series goes first");
        assert!(m.contains_key(&2) && m.contains_key(&3));
    }

    #[tokio::test]
    async fn a_repeat_within_the_ttl_is_a_series_later_a_new_event() {
        let r = recorder(8);
        let start = Instant::now();
        r.insert(7, series("e", start));
        let s = r.bump(7, start + Duration::from_secs(10));
        assert_eq!(s.map(|s| (s.name, s.count)), Some(("e".to_string(), 2)));
        let s = r.bump(7, start + Duration::from_secs(20));
        assert_eq!(s.map(|s| s.count), Some(3));
        assert!(
            r.bump(7, start + Duration::from_secs(20) + SERIES_TTL)
                .is_none()
        );
        assert!(r.is_empty(), "an expired series is forgotten");
    }

    #[test]
    fn the_key_separates_objects_reasons_and_notes() {
        let a = key(&ev("Created", "x"), &obj("a"));
        assert_eq!(a, key(&ev("Created", "x"), &obj("a")));
        assert_ne!(a, key(&ev("Created", "x"), &obj("b")));
        assert_ne!(a, key(&ev("Updated", "x"), &obj("a")));
        assert_ne!(a, key(&ev("Created", "y"), &obj("a")));
    }

    #[tokio::test]
    async fn events_are_named_after_their_object_in_its_namespace() {
        let r = recorder(1);
        let e = r.generate(&ev("Created", "n"), &obj("db"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert!(e.metadata.name.is_some_and(|n| n.starts_with("db.")));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_instance.as_deref(), Some("t"));
        let cluster = ObjectReference {
            kind: Some("ClusterSecretStore".into()),
            name: Some("css".into()),
            ..Default::default()
        };
        let e = r.generate(&ev("Valid", "n"), &cluster);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
    }
}
