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
//! [`Recorder::record`] hands the Event to a background publisher and returns at once, so a
//! reconcile never waits for an Event before it writes the status (during a large initial sync
//! that wait was one apiserver round trip per object on the way to Ready). The queue holds at
//! most [`QUEUE_CAPACITY`] Events; when it is full a Normal Event is dropped and counted
//! ([`Recorder::dropped`]), as client-go's broadcaster drops Events past its 1,000-event queue,
//! and a Warning waits for room (up to [`WARNING_WAIT`]), so bad input is announced. At most
//! [`PUBLISH_CONCURRENCY`] Events are sent at a time. [`Recorder::publish`] sends one directly.
//!
//! Events never carry secret values: callers put key names and paths in notes, never data.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

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
/// At most this many Events wait for the background publisher (client-go's broadcaster: 1,000).
pub const QUEUE_CAPACITY: usize = 1000;
/// At most this many Events are being sent to the apiserver at once.
pub const PUBLISH_CONCURRENCY: usize = 4;
/// How long a Warning waits for room in a full queue before it is dropped (and counted): the
/// apiserver would have to be stalled for that long.
pub const WARNING_WAIT: Duration = Duration::from_secs(30);

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
    inner: Arc<Inner>,
    /// The background publisher's queue, started on the first [`Recorder::record`]; `None`
    /// when [`Recorder::unqueued`] (record publishes inline).
    queue: Option<OnceLock<mpsc::Sender<Queued>>>,
    dropped: AtomicU64,
}

/// The publishing half, shared with the background publisher.
struct Inner {
    client: Client,
    reporter: Reporter,
    capacity: usize,
    series: Mutex<HashMap<u64, Series>>,
}

/// An Event waiting for the background publisher.
struct Queued {
    event: Event,
    regarding: ObjectReference,
}

/// What [`Recorder::record`] did with an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recorded {
    /// Queued for the background publisher (or, unqueued, published).
    Queued,
    /// Dropped: the queue was full (Normal Events only), or the apiserver refused it
    /// (unqueued only).
    Dropped,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("reporter", &self.inner.reporter)
            .field("series", &self.len())
            .field("dropped", &self.dropped())
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
            inner: Arc::new(Inner {
                client,
                reporter,
                capacity: capacity.max(1),
                series: Mutex::new(HashMap::new()),
            }),
            queue: Some(OnceLock::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// A recorder whose [`Recorder::record`] publishes before it returns (no background
    /// publisher): for tests that assert the order of requests.
    pub fn unqueued(client: Client, reporter: Reporter) -> Self {
        Self {
            queue: None,
            ..Self::new(client, reporter)
        }
    }

    /// How many series are remembered now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many Events were dropped since this recorder was made (see the module
    /// documentation).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Record `event` about `regarding`: queue it for the background publisher, which starts
    /// on the first call (so the first call must be made within a Tokio runtime). A Normal
    /// Event is dropped when the queue is full; a Warning waits for room (up to
    /// [`WARNING_WAIT`]). Failures to publish are logged at debug level: Events are best
    /// effort.
    pub async fn record(&self, event: Event, regarding: ObjectReference) -> Recorded {
        let Some(queue) = &self.queue else {
            return match self.inner.publish(&event, &regarding).await {
                Ok(()) => Recorded::Queued,
                Err(e) => {
                    debug!(error = %e, reason = %event.reason, "could not publish event");
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Recorded::Dropped
                }
            };
        };
        let tx = queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(publisher(self.inner.clone(), rx));
            tx
        });
        let item = Queued { event, regarding };
        let sent = match item.event.type_ {
            EventType::Warning => tokio::time::timeout(WARNING_WAIT, tx.send(item))
                .await
                .is_ok_and(|sent| sent.is_ok()),
            EventType::Normal => tx.try_send(item).is_ok(),
        };
        if sent {
            Recorded::Queued
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Recorded::Dropped
        }
    }

    /// Publish `ev` about `regarding` now (cluster-scoped objects: in the `default`
    /// namespace), without the queue.
    ///
    /// # Errors
    /// The apiserver's refusal to create or patch the Event.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.inner.publish(ev, regarding).await
    }

    #[cfg(test)]
    fn bump(&self, k: u64, now: Instant) -> Option<Series> {
        self.inner.bump(k, now)
    }

    #[cfg(test)]
    fn insert(&self, k: u64, s: Series) {
        self.inner.insert(k, s)
    }

    #[cfg(test)]
    fn generate(&self, ev: &Event, regarding: &ObjectReference) -> K8sEvent {
        self.inner.generate(ev, regarding)
    }
}

/// The background publisher: sends queued Events, [`PUBLISH_CONCURRENCY`] at a time, until
/// the recorder is dropped.
async fn publisher(inner: Arc<Inner>, mut rx: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(PUBLISH_CONCURRENCY));
    while let Some(item) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.publish(&item.event, &item.regarding).await {
                debug!(error = %e, reason = %item.event.reason, "could not publish event");
            }
            drop(permit);
        });
    }
}

impl Inner {
    fn len(&self) -> usize {
        self.series.lock().map(|m| m.len()).unwrap_or(0)
    }

    async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
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
        let m = r.inner.series.lock().unwrap_or_else(|e| e.into_inner());
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
        let m = r.inner.series.lock().unwrap_or_else(|e| e.into_inner());
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

    fn warning(note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            ..ev("UpdateFailed", note)
        }
    }

    /// Unqueued, an Event the apiserver refuses (nothing listens on the address) is counted
    /// as dropped and the caller goes on.
    #[tokio::test]
    async fn unqueued_a_refused_event_is_counted_as_dropped() {
        #[allow(clippy::unwrap_used)]
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let r = Recorder::unqueued(
            client,
            Reporter {
                controller: "t".into(),
                instance: None,
            },
        );
        assert_eq!(
            r.record(ev("Created", "n"), obj("a")).await,
            Recorded::Dropped
        );
        assert_eq!(r.dropped(), 1);
    }

    /// Against an apiserver that never answers: the reconcile side never waits for a Normal
    /// Event (past the queue's capacity it is dropped and counted), while a Warning waits for
    /// room instead of being lost.
    #[tokio::test]
    async fn a_full_queue_drops_normal_events_and_holds_warnings() {
        let (svc, handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let r = Recorder::new(
            Client::new(svc, "default"),
            Reporter {
                controller: "t".into(),
                instance: None,
            },
        );
        // Fill: the publisher takes PUBLISH_CONCURRENCY (+1 waiting for a slot) off the queue
        // and hangs on the silent apiserver; the rest stays queued.
        let mut queued = 0usize;
        for i in 0..(QUEUE_CAPACITY + PUBLISH_CONCURRENCY + 10) {
            match r.record(ev("Created", &format!("{i}")), obj("a")).await {
                Recorded::Queued => queued += 1,
                Recorded::Dropped => {}
            }
            if i == 0 {
                // Let the publisher start and take its share.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(queued >= QUEUE_CAPACITY, "{queued}");
        assert!(
            queued <= QUEUE_CAPACITY + PUBLISH_CONCURRENCY + 1,
            "{queued}"
        );
        assert!(r.dropped() >= 9, "{}", r.dropped());
        // Let the publisher take what it can, then fill the room it made.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut refill = 0;
        while r.record(ev("Created", "more"), obj("a")).await == Recorded::Queued {
            refill += 1;
            assert!(
                refill <= PUBLISH_CONCURRENCY + 1,
                "the publisher hangs, so room is bounded"
            );
        }
        let dropped = r.dropped();
        let held = tokio::time::timeout(
            Duration::from_millis(200),
            r.record(warning("bad"), obj("a")),
        )
        .await;
        assert!(held.is_err(), "a Warning waits for room in the queue");
        assert_eq!(r.dropped(), dropped, "and is not counted as dropped");
        drop(handle);
    }
}
