//! # eso-reconciler
//!
//! kube-runtime controllers for `ExternalSecret`, `SecretStore` and `ClusterSecretStore` with
//! External Secrets Operator semantics, embeddable in any Rust controller: call [`run`] with a
//! [`Config`] (built from `default()` with `with_*` setters), a [`ProviderHub`] (e.g.
//! [`kube_access::RegistryHub`]) and [`Handles`]; that is the whole embedding API. The `ClusterExternalSecret`
//! controller runs on its own ([`cluster_external_secret::run`]), as does the `ClusterPushSecret`
//! controller ([`cluster_push_secret::run`]).
//!
//! What is watched (and nothing else):
//! - ExternalSecrets (through [`DeserializeGuard`], so one malformed object never stops the watch);
//! - Secrets labelled `reconcile.external-secrets.io/managed=true` only, trimmed to metadata, key
//!   names and a hash before caching ([`secrets`]);
//! - SecretStores and ClusterSecretStores (a store turning Ready wakes the ExternalSecrets that use it);
//! - Namespaces, metadata only (ClusterSecretStore namespace conditions; only the watched
//!   namespace with [`Config::namespace`]).
//! - With [`Config::rollout`] only: Deployments, StatefulSets and DaemonSets, projected to their
//!   metadata and Secret references ([`rollout`]); only opted-in ones are kept.
//!
//! With [`Config::enable_cluster_stores`] off, neither ClusterSecretStores nor Namespaces are
//! watched (so a namespace-scoped operator needs only a Role in its namespace), and an
//! ExternalSecret referencing a ClusterSecretStore gets `Ready=False` saying so.
#![warn(missing_docs)]

pub mod changes;
pub mod cluster_external_secret;
pub mod cluster_push_secret;
mod compact;
pub mod conditions;
pub mod events;
pub mod external_secret;
pub mod hub;
pub mod index;
pub mod kube_access;
pub mod metrics;
mod offload;
pub mod ownership;
pub mod push_secret;
pub mod refresh;
pub mod rollout;
pub mod secrets;
pub mod stores;
pub mod windows;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::Recorder;
use eso_api::{ClusterSecretStore, ExternalSecret, SecretStore};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

pub use hub::{FailureClass, FetchFailure, ProviderHub, StoreContext, Validation};
pub use metrics::Metrics;

use external_secret::EsState;

/// Controller settings (the operator maps its flags onto these).
///
/// Non-exhaustive: start from [`Config::default`] and change what you need with the `with_*`
/// setters, so a field added in a later release does not break your code:
///
/// ```
/// use std::time::Duration;
/// let config = eso_reconciler::Config::default()
///     .with_namespace(Some("team-a".to_string()))
///     .with_concurrency(4)
///     .with_remote_change_poll(None)
///     .with_instance(std::env::var("POD_NAME").ok());
/// assert_eq!(config.concurrency, 4);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Only handle stores whose `spec.controller` is empty or equals this (`--controller-class`).
    pub controller_class: String,
    /// Watch one namespace only (`--namespace`); `None`: all namespaces. To run with a Role in
    /// that namespace only (no ClusterRole), also turn `enable_cluster_stores` off.
    pub namespace: Option<String>,
    /// Concurrent ExternalSecret reconciles (`--concurrent`).
    pub concurrency: u16,
    /// Refuse to use stores whose Ready condition is False (ESO's flood gate).
    pub flood_gate: bool,
    /// Periodic refreshes are delayed by up to this fraction of the interval.
    pub jitter_fraction: f64,
    /// Upper bound of the error backoff.
    pub max_backoff: Duration,
    /// After a restart, overdue refreshes of valid Secrets are spread over up to this window.
    pub restart_spread: Duration,
    /// Store re-validation interval when the store sets none (`--store-requeue-interval`).
    pub store_requeue_interval: Duration,
    /// Run the ClusterSecretStore controller and honour ClusterSecretStore references. Off:
    /// ClusterSecretStores and Namespaces are not watched, and an ExternalSecret that references
    /// a ClusterSecretStore is reported `Ready=False` with the reason.
    pub enable_cluster_stores: bool,
    /// Events reporter name.
    pub reporter: String,
    /// How often stores are asked which remote secrets changed (one cheap call per store), so
    /// an edit is seen within this interval even with a long `refreshInterval`. `None` disables
    /// it (ESO behaviour: changes are seen at each ExternalSecret's interval).
    pub remote_change_poll: Option<Duration>,
    /// Roll Deployments, StatefulSets and DaemonSets that opted in when the managed Secrets
    /// they use change ([`rollout`]). `None` (the default): workloads are not watched.
    pub rollout: Option<rollout::RolloutConfig>,
    /// Instance name in the Events' reporter (the operator passes `POD_NAME`); `None`: no
    /// instance.
    pub instance: Option<String>,
}

/// `with_<field>` setters for a non-exhaustive settings struct.
macro_rules! setters {
    ($ty:ty { $($(#[$doc:meta])* $setter:ident => $field:ident : $fty:ty),* $(,)? }) => {
        impl $ty {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $setter(mut self, value: $fty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

impl Default for Config {
    fn default() -> Self {
        Self {
            controller_class: "default".to_string(),
            namespace: None,
            concurrency: 10,
            flood_gate: true,
            jitter_fraction: 0.1,
            max_backoff: Duration::from_secs(300),
            restart_spread: Duration::from_secs(300),
            store_requeue_interval: Duration::from_secs(300),
            enable_cluster_stores: true,
            reporter: "external-secrets".to_string(),
            remote_change_poll: Some(Duration::from_secs(60)),
            rollout: None,
            instance: None,
        }
    }
}

setters!(Config {
    /// Sets [`Config::controller_class`].
    with_controller_class => controller_class: String,
    /// Sets [`Config::namespace`].
    with_namespace => namespace: Option<String>,
    /// Sets [`Config::concurrency`].
    with_concurrency => concurrency: u16,
    /// Sets [`Config::flood_gate`].
    with_flood_gate => flood_gate: bool,
    /// Sets [`Config::jitter_fraction`].
    with_jitter_fraction => jitter_fraction: f64,
    /// Sets [`Config::max_backoff`].
    with_max_backoff => max_backoff: Duration,
    /// Sets [`Config::restart_spread`].
    with_restart_spread => restart_spread: Duration,
    /// Sets [`Config::store_requeue_interval`].
    with_store_requeue_interval => store_requeue_interval: Duration,
    /// Sets [`Config::enable_cluster_stores`].
    with_enable_cluster_stores => enable_cluster_stores: bool,
    /// Sets [`Config::reporter`].
    with_reporter => reporter: String,
    /// Sets [`Config::remote_change_poll`].
    with_remote_change_poll => remote_change_poll: Option<Duration>,
    /// Sets [`Config::rollout`].
    with_rollout => rollout: Option<rollout::RolloutConfig>,
    /// Sets [`Config::instance`].
    with_instance => instance: Option<String>,
});

setters!(rollout::RolloutConfig {
    /// Sets [`rollout::RolloutConfig::debounce`].
    with_debounce => debounce: Duration,
    /// Sets [`rollout::RolloutConfig::namespace_qps`].
    with_namespace_qps => namespace_qps: f64,
    /// Sets [`rollout::RolloutConfig::namespace_burst`].
    with_namespace_burst => namespace_burst: u32,
    /// Sets [`rollout::RolloutConfig::concurrency`].
    with_concurrency => concurrency: usize,
});

setters!(cluster_external_secret::CesConfig {
    /// Sets [`cluster_external_secret::CesConfig::default_refresh`].
    with_default_refresh => default_refresh: Duration,
    /// Sets [`cluster_external_secret::CesConfig::write_concurrency`].
    with_write_concurrency => write_concurrency: usize,
});

setters!(cluster_push_secret::CpsConfig {
    /// Sets [`cluster_push_secret::CpsConfig::default_refresh`].
    with_default_refresh => default_refresh: Duration,
    /// Sets [`cluster_push_secret::CpsConfig::write_concurrency`].
    with_write_concurrency => write_concurrency: usize,
});

/// Errors a reconcile can end with (all reach `error_policy`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed while trying to {action}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A provider failed (transient classes back off).
    #[error("provider: {0}")]
    Provider(FetchFailure),
    /// The sync failed for another reason (already reported in status).
    #[error("{0}")]
    Sync(String),
    /// A dependency of the ExternalSecret is missing; retried with a short bounded backoff.
    #[error("waiting: {0}")]
    Waiting(String),
}

/// Liveness: detects a work queue that stopped draining.
#[derive(Debug)]
pub struct Watchdog {
    inner: Mutex<WatchdogState>,
    stall_after: Duration,
}

#[derive(Debug)]
struct WatchdogState {
    in_flight: HashMap<u64, Instant>,
    next_id: u64,
    last_progress: Instant,
    /// When each object's next reconcile is due, by [`Watchdog::key`]. Per object, so an
    /// object that is deleted (or reconciled early) takes its due time with it.
    due: HashMap<u64, Instant>,
}

/// Marks one reconcile in flight until dropped.
#[derive(Debug)]
pub struct Busy<'a> {
    dog: &'a Watchdog,
    id: u64,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.dog.inner.lock() {
            s.in_flight.remove(&self.id);
            s.last_progress = Instant::now();
        }
    }
}

impl Watchdog {
    /// A watchdog that reports unhealthy when work is overdue by `stall_after`.
    pub fn new(stall_after: Duration) -> Self {
        Self {
            inner: Mutex::new(WatchdogState {
                in_flight: HashMap::new(),
                next_id: 0,
                last_progress: Instant::now(),
                due: HashMap::new(),
            }),
            stall_after,
        }
    }

    /// A key for an object (`kind`, namespace, name), for [`Watchdog::start`],
    /// [`Watchdog::expect_by`] and [`Watchdog::forget`]. Stable within the process; keyed
    /// with a random per-process key, so no name can be made to collide with another's.
    pub fn key(kind: &str, namespace: &str, name: &str) -> u64 {
        compact::hash(&[kind, namespace, name])
    }

    /// Record the start of a reconcile of the object `key` (its due time is met).
    pub fn start(&self, key: u64) -> Busy<'_> {
        let mut id = 0;
        if let Ok(mut s) = self.inner.lock() {
            s.next_id += 1;
            id = s.next_id;
            s.in_flight.insert(id, Instant::now());
            s.last_progress = Instant::now();
            s.due.remove(&key);
        }
        Busy { dog: self, id }
    }

    /// Record that the object `key` is scheduled for a reconcile `after` from now.
    pub fn expect_by(&self, key: u64, after: Duration) {
        if let Ok(mut s) = self.inner.lock() {
            s.due.insert(key, Instant::now() + after);
        }
    }

    /// Record that the object `key` is scheduled for a reconcile at `at`.
    pub(crate) fn expect_at(&self, key: u64, at: Instant) {
        if let Ok(mut s) = self.inner.lock() {
            s.due.insert(key, at);
        }
    }

    /// Read the due times, by key (`None` if the lock is poisoned).
    pub(crate) fn with_due<T>(&self, f: impl FnOnce(&HashMap<u64, Instant>) -> T) -> Option<T> {
        self.inner.lock().ok().map(|s| f(&s.due))
    }

    /// Forget the object `key` (it was deleted): its due time no longer counts.
    pub fn forget(&self, key: u64) {
        if let Ok(mut s) = self.inner.lock() {
            s.due.remove(&key);
        }
    }

    /// How many objects have a due time (tests, diagnostics).
    pub fn scheduled(&self) -> usize {
        self.inner.lock().map(|s| s.due.len()).unwrap_or(0)
    }

    /// Healthy unless a reconcile has been running longer than the threshold, or scheduled work
    /// is overdue by the threshold while nothing made progress.
    pub fn healthy(&self) -> Result<(), String> {
        let Ok(s) = self.inner.lock() else {
            return Err("watchdog poisoned".into());
        };
        let now = Instant::now();
        if let Some(oldest) = s.in_flight.values().min()
            && now.duration_since(*oldest) > self.stall_after
        {
            return Err(format!(
                "a reconcile has been running for {:?}",
                now.duration_since(*oldest)
            ));
        }
        if let Some(due) = s.due.values().min()
            && now > *due + self.stall_after
            && now.duration_since(s.last_progress) > self.stall_after
        {
            return Err(format!(
                "work queue stalled: work overdue by {:?}",
                now.duration_since(*due)
            ));
        }
        Ok(())
    }
}

/// Everything a reconcile needs (internal: embedders use [`run`]).
pub(crate) struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// Providers.
    pub hub: Arc<dyn ProviderHub>,
    /// Event recorder (bounded memory; see [`events`]).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Liveness.
    pub watchdog: Arc<Watchdog>,
    secrets: secrets::SecretCache,
    stores: Store<DeserializeGuard<SecretStore>>,
    cluster_stores: Store<DeserializeGuard<ClusterSecretStore>>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    external_secrets: Store<external_secret::CachedExternalSecret>,
    /// `created-by` label counts of the cached Secrets (`index::CreatedByCounts`); `None` where
    /// the cache is filled without the watch (in-process tests): the orphan search then scans.
    created_by: Option<Arc<index::CreatedByCounts>>,
    /// The refresh timer (`external_secret::timer`); `None` where reconciles are driven
    /// without the controller (in-process tests): requeues are then kube's `Action::requeue`.
    timer: Option<Arc<external_secret::timer::Timer>>,
    /// Per-ExternalSecret state, keyed `namespace/name` (one allocation per object).
    state: Mutex<HashMap<Box<str>, EsState>>,
    forced: Mutex<HashMap<ObjectRef<ExternalSecret>, std::time::SystemTime>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    fn secret(&self, ns: &str, name: &str) -> Option<Arc<secrets::CachedSecret>> {
        self.secrets.get(ns, name)
    }

    /// Whether every cache this configuration runs has completed its initial list. The one
    /// readiness definition: reconciles decide nothing before it holds (after a restart every
    /// Secret would look missing, every namespace unlabelled), and `/readyz` reports it
    /// ([`Handles::ready`]). ClusterSecretStores and Namespaces (which only serve
    /// ClusterSecretStore namespace conditions) are watched, and so count, only when
    /// [`Config::enable_cluster_stores`] is set. Polled, not awaited: it must not depend on a
    /// wakeup from the reflectors, and a reconcile holding a slot must not stall them.
    pub fn caches_ready(&self) -> bool {
        fn listed<K>(s: &Store<K>) -> bool
        where
            K: kube::Resource + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            use futures::FutureExt as _;
            s.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        }
        self.secrets.is_listed()
            && listed(&self.stores)
            && listed(&self.external_secrets)
            && (!self.config.enable_cluster_stores
                || (listed(&self.cluster_stores) && listed(&self.namespaces)))
    }

    fn es_state(&self, key: &ObjectRef<ExternalSecret>) -> EsState {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.get(state_key(key).as_ref()).cloned())
            .unwrap_or_default()
    }

    fn update_state<T>(
        &self,
        key: &ObjectRef<ExternalSecret>,
        f: impl FnOnce(&mut EsState) -> T,
    ) -> T {
        match self.state.lock() {
            Ok(mut s) => f(s.entry(state_key(key)).or_default()),
            Err(_) => f(&mut EsState::default()),
        }
    }

    /// Mark an ExternalSecret for a provider read at its next reconcile (a remote change was seen).
    /// `fresh_after`: cached values read before it may predate the change and are not used.
    fn force_refresh(&self, key: &ObjectRef<ExternalSecret>, fresh_after: std::time::SystemTime) {
        if let Ok(mut f) = self.forced.lock() {
            let e = f.entry(key.clone()).or_insert(fresh_after);
            *e = (*e).max(fresh_after);
        }
    }

    fn take_forced(&self, key: &ObjectRef<ExternalSecret>) -> Option<std::time::SystemTime> {
        self.forced.lock().ok().and_then(|mut f| f.remove(key))
    }

    /// Drop everything kept for an ExternalSecret that left the cluster: its in-memory state, a
    /// pending forced refresh, its due time and its metric series (a deleted failing object must
    /// not keep an alert firing).
    pub(crate) fn forget_es(&self, ns: &str, name: &str) {
        let key = ObjectRef::new(name).within(ns);
        if let Ok(mut s) = self.state.lock() {
            s.remove(state_key(&key).as_ref());
        }
        if let Ok(mut f) = self.forced.lock() {
            f.remove(&key);
        }
        self.watchdog.forget(external_secret::es_dog_key(ns, name));
        for family in metrics::PER_EXTERNAL_SECRET {
            self.metrics
                .remove(family, &[("namespace", ns), ("name", name)]);
        }
    }

    /// After a relist, forget every ExternalSecret that is no longer in the cache (deleted while
    /// the watch was down, so no delete event was seen).
    fn sweep_es(&self, cache: &Store<external_secret::CachedExternalSecret>) {
        let known: Vec<Box<str>> = self
            .state
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        for k in known {
            let (ns, name) = compact::split_object_key(&k);
            if cache.get(&ObjectRef::new(name).within(ns)).is_none() {
                self.forget_es(ns, name);
            }
        }
    }

    /// Drop what is kept for a deleted store: the provider's cached values and clients (keyed
    /// by uid), its due time and its metric series.
    pub(crate) fn forget_store(&self, kind: eso_api::StoreKind, ns: &str, name: &str, uid: &str) {
        if !uid.is_empty() {
            self.hub.forget_store(uid);
        }
        self.watchdog.forget(Watchdog::key(kind.as_str(), ns, name));
        let family = match kind {
            eso_api::StoreKind::SecretStore => "secretstore_status_condition",
            eso_api::StoreKind::ClusterSecretStore => "clustersecretstore_status_condition",
        };
        if ns.is_empty() {
            self.metrics.remove(family, &[("name", name)]);
        } else {
            self.metrics
                .remove(family, &[("namespace", ns), ("name", name)]);
        }
    }
}

/// The [`Context`] state key of an ExternalSecret: `namespace/name` (neither contains a `/`).
fn state_key(key: &ObjectRef<ExternalSecret>) -> Box<str> {
    compact::object_key(key.namespace.as_deref().unwrap_or(""), &key.name)
}

/// An object that left a watched cache.
enum Gone {
    ExternalSecret(String, String),
    /// A relist completed: objects missing from it are gone.
    Relisted,
    Store(eso_api::StoreKind, String, String, String),
}

fn scoped<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Handles to observe a running set of controllers.
///
/// Non-exhaustive: build with [`Handles::new`] (or `default()`) and replace parts with the
/// `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Handles {
    /// True once every cache has synced (readiness).
    pub ready: Arc<AtomicBool>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Liveness watchdog.
    pub watchdog: Arc<Watchdog>,
}

impl Handles {
    /// New handles (pass the same ones to [`run`] and to your health endpoints).
    pub fn new() -> Self {
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            metrics: Arc::new(Metrics::default()),
            watchdog: Arc::new(Watchdog::new(Duration::from_secs(120))),
        }
    }
}

setters!(Handles {
    /// Sets [`Handles::ready`] (shared with your readiness endpoint).
    with_ready => ready: Arc<AtomicBool>,
    /// Sets [`Handles::metrics`].
    with_metrics => metrics: Arc<Metrics>,
    /// Sets [`Handles::watchdog`] (e.g. one with your own stall threshold).
    with_watchdog => watchdog: Arc<Watchdog>,
});

impl Default for Handles {
    fn default() -> Self {
        Self::new()
    }
}

/// Run the ExternalSecret, SecretStore and ClusterSecretStore controllers until `shutdown`
/// resolves. This (with the builders of [`Config`], [`Handles`] and
/// [`kube_access::RegistryHub`]) is the embedding API:
///
/// ```no_run
/// use std::sync::Arc;
/// use eso_reconciler::{Config, Handles, kube_access::RegistryHub};
///
/// # async fn demo() -> Result<(), kube::Error> {
/// let client = kube::Client::try_default().await?;
/// let hub = RegistryHub::new(client.clone(), eso_provider::CacheConfig::default())
///     .with_fake(); // and `.with_factory(..)` for AWS or your own provider
/// let config = Config::default()
///     .with_namespace(Some("team-a".to_string()))
///     .with_instance(std::env::var("POD_NAME").ok());
/// let handles = Handles::new(); // share `handles.ready` / `.metrics` with your endpoints
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let controllers = tokio::spawn(eso_reconciler::run(client, config, Arc::new(hub), handles, async {
///     let _ = stopped.await;
/// }));
/// // ... later:
/// let _ = stop.send(());
/// let _ = controllers.await;
/// # Ok(())
/// # }
/// ```
pub async fn run(
    client: Client,
    config: Config,
    hub: Arc<dyn ProviderHub>,
    handles: Handles,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = config.namespace.clone();
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    // Stores: controllers own the reflectors; the ExternalSecret controller reads them.
    // Deletions seen by the watches, handled once the Context exists.
    let (gone_tx, mut gone_rx) = futures::channel::mpsc::unbounded::<Gone>();
    let (es_store, es_writer) = reflector::store::<external_secret::CachedExternalSecret>();
    let targets = Arc::new(index::TargetIndex::default());
    // One watch per store kind: its events update the store cache first, then wake the
    // ExternalSecrets that use the store (so a woken ExternalSecret sees the new status).
    let (store_wake_tx, store_wake_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<external_secret::CachedExternalSecret>>();
    let ss_api: Api<DeserializeGuard<SecretStore>> = scoped(&client, &ns);
    let (ss_store, ss_writer) = reflector::store::<DeserializeGuard<SecretStore>>();
    let ss_tx = gone_tx.clone();
    let ss_stream = watcher(ss_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(ss_writer)
        .inspect({
            let es_store = es_store.clone();
            let wake = store_wake_tx.clone();
            move |ev| {
                let touched = match ev {
                    Ok(watcher::Event::Delete(g)) => {
                        let _ = ss_tx.unbounded_send(Gone::Store(
                            eso_api::StoreKind::SecretStore,
                            g.namespace().unwrap_or_default(),
                            g.name_any(),
                            g.uid().unwrap_or_default(),
                        ));
                        Some(g)
                    }
                    Ok(watcher::Event::Apply(g)) => Some(g),
                    _ => None,
                };
                if let Some(g) = touched {
                    for r in external_secret::stores_to_es(
                        &es_store,
                        eso_api::StoreKind::SecretStore,
                        g.namespace(),
                        g.name_any(),
                    ) {
                        let _ = wake.unbounded_send(r);
                    }
                }
            }
        })
        .applied_objects();
    let ss_controller = Controller::for_stream(ss_stream, ss_store.clone());
    let css_api: Api<DeserializeGuard<ClusterSecretStore>> = Api::all(client.clone());
    let (css_store, css_writer) = reflector::store::<DeserializeGuard<ClusterSecretStore>>();
    let css_tx = gone_tx.clone();
    let css_stream = watcher(css_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(css_writer)
        .inspect({
            let es_store = es_store.clone();
            let wake = store_wake_tx.clone();
            move |ev| {
                let touched = match ev {
                    Ok(watcher::Event::Delete(g)) => {
                        let _ = css_tx.unbounded_send(Gone::Store(
                            eso_api::StoreKind::ClusterSecretStore,
                            String::new(),
                            g.name_any(),
                            g.uid().unwrap_or_default(),
                        ));
                        Some(g)
                    }
                    Ok(watcher::Event::Apply(g)) => Some(g),
                    _ => None,
                };
                if let Some(g) = touched {
                    for r in external_secret::stores_to_es(
                        &es_store,
                        eso_api::StoreKind::ClusterSecretStore,
                        None,
                        g.name_any(),
                    ) {
                        let _ = wake.unbounded_send(r);
                    }
                }
            }
        })
        .applied_objects();
    // ClusterSecretStores (cluster-scoped) only when enabled: a namespace-scoped install
    // (`--namespace`, Role-only RBAC) runs with `enable_cluster_stores: false` and may not list
    // them (the stream is never polled then, and the cache stays empty).
    let css_controller = config
        .enable_cluster_stores
        .then(|| Controller::for_stream(css_stream, css_store.clone()));

    // Managed Secret events for the rollout controller, when it runs.
    let (rollout_tx, rollout_rx) = match config.rollout {
        Some(_) => {
            let (tx, rx) = futures::channel::mpsc::unbounded::<(String, String)>();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    // Managed Secrets, label-selected, each kept as a small record (`secrets::CachedSecret`) in
    // the operator's own cache (`secrets::SecretCache`: no ObjectMeta, the name once).
    let secret_cache = secrets::SecretCache::default();
    let secret_api: Api<Secret> = scoped(&client, &ns);
    // The `created-by` counts are updated before the cache replaces the record (the record it
    // replaces is the one whose label is counted).
    let created_by = Arc::new(index::CreatedByCounts::default());
    let secret_stream = watcher(
        secret_api,
        watcher::Config::default().labels(&format!("{}=true", eso_api::well_known::LABEL_MANAGED)),
    )
    .default_backoff()
    .map_ok({
        let cache = secret_cache.clone();
        let counts = created_by.clone();
        move |ev| {
            let ev = secrets::project_event(ev);
            match &ev {
                watcher::Event::Apply(s) => counts.replace(
                    cache
                        .get(s.namespace(), s.name())
                        .map(|old| old.created_by_key()),
                    s.record().created_by_key(),
                ),
                watcher::Event::Delete(s) => counts.delete(
                    cache
                        .get(s.namespace(), s.name())
                        .map_or_else(|| s.record().created_by_key(), |old| old.created_by_key()),
                ),
                watcher::Event::Init => counts.relist_start(),
                watcher::Event::InitApply(s) => counts.relist_item(s.record().created_by_key()),
                watcher::Event::InitDone => counts.relist_done(),
            }
            cache.apply_watcher_event(&ev);
            ev
        }
    })
    .inspect({
        let tx = rollout_tx.clone();
        move |ev| {
            let Some(tx) = &tx else { return };
            match ev {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))
                | Ok(watcher::Event::Delete(s)) => {
                    let _ = tx.unbounded_send((s.namespace().to_string(), s.name().to_string()));
                }
                _ => {}
            }
        }
    })
    .touched_objects();

    // Namespaces, metadata only, for ClusterSecretStore namespace conditions: not watched when
    // ClusterSecretStores are disabled, and only the watched namespace with `--namespace`.
    let (ns_reader, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let ns_watch = match &ns {
        Some(n) => watcher::Config::default().fields(&format!("metadata.name={n}")),
        None => watcher::Config::default(),
    };
    let ns_stream = config.enable_cluster_stores.then(|| {
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            ns_watch,
        )
        .default_backoff()
        .reflect(ns_writer)
        .applied_objects()
    });

    // ExternalSecrets are cached as records (`external_secret::CachedExternalSecret`): identity
    // fields plus the compact JSON of the rest, without managedFields.
    //
    // ESO's event filter (`cached::wakes`): an arrival wakes the controller only when it can
    // change a sync, not for a status-only update. It is decided before the record replaces
    // the cached one, and read after the reflector, by the next stages of this one stream,
    // which handle one event at a time: `woken` always belongs to the object passing through.
    let woken = Arc::new(AtomicBool::new(true));
    let es_api: Api<DeserializeGuard<ExternalSecret>> = scoped(&client, &ns);
    let es_stream = watcher(es_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .map_ok({
            let cache = es_store.clone();
            let woken = woken.clone();
            move |ev| {
                let ev = external_secret::cached::project_event(ev);
                if let watcher::Event::Apply(c) | watcher::Event::InitApply(c) = &ev {
                    let old = cache.get(&ObjectRef::from_obj(c));
                    woken.store(
                        external_secret::cached::wakes(old.as_deref(), c),
                        Ordering::Relaxed,
                    );
                }
                ev
            }
        })
        .reflect(es_writer)
        .inspect({
            let targets = targets.clone();
            let target_of = |c: &external_secret::CachedExternalSecret| {
                c.external_secret()
                    .ok()
                    .map(|es| external_secret::target_name(&es))
            };
            let woken = woken.clone();
            move |ev| match ev {
                // The target name is in the spec: it can only change in an arrival that wakes.
                Ok(watcher::Event::Apply(c)) if woken.load(Ordering::Relaxed) => {
                    if let Some(t) = target_of(c) {
                        targets.apply(c.namespace(), c.name(), &t);
                    }
                }
                Ok(watcher::Event::Apply(_)) => {}
                Ok(watcher::Event::Init) => targets.relist_start(),
                Ok(watcher::Event::InitApply(c)) => {
                    if let Some(t) = target_of(c) {
                        targets.relist_item(c.namespace(), c.name(), &t);
                    }
                }
                Ok(watcher::Event::Delete(c)) => {
                    targets.delete(c.namespace(), c.name());
                    let _ = gone_tx.unbounded_send(Gone::ExternalSecret(
                        c.namespace().to_string(),
                        c.name().to_string(),
                    ));
                }
                Ok(watcher::Event::InitDone) => {
                    targets.relist_done();
                    let _ = gone_tx.unbounded_send(Gone::Relisted);
                }
                Err(_) => {}
            }
        })
        .applied_objects()
        .try_filter(move |_| std::future::ready(woken.load(Ordering::Relaxed)));
    let es_controller = Controller::for_stream(es_stream, es_store.clone())
        .with_config(ControllerConfig::default().concurrency(config.concurrency));

    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: config.instance.clone(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    // Refreshes wait in the compact timer, not in kube's scheduler (`external_secret::timer`).
    let timer = Arc::new(external_secret::timer::Timer::new(handles.watchdog.clone()));
    let (due_tx, due_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<external_secret::CachedExternalSecret>>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        hub,
        recorder,
        metrics: handles.metrics.clone(),
        watchdog: handles.watchdog.clone(),
        secrets: secret_cache.clone(),
        stores: ss_store.clone(),
        cluster_stores: css_store.clone(),
        namespaces: ns_reader.clone(),
        external_secrets: es_store.clone(),
        created_by: Some(created_by),
        timer: Some(timer.clone()),
        state: Mutex::new(HashMap::new()),
        forced: Mutex::new(HashMap::new()),
    });
    {
        let ctx = ctx.clone();
        let cache = es_store.clone();
        tokio::spawn(async move {
            while let Some(g) = gone_rx.next().await {
                match g {
                    Gone::ExternalSecret(ns, name) => {
                        debug!(%ns, %name, "ExternalSecret deleted: forgetting its state");
                        ctx.forget_es(&ns, &name);
                    }
                    Gone::Relisted => ctx.sweep_es(&cache),
                    Gone::Store(kind, ns, name, uid) => {
                        debug!(kind = kind.as_str(), %ns, %name, "store deleted: forgetting its caches");
                        ctx.forget_store(kind, &ns, &name, &uid);
                    }
                }
            }
        });
    }
    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded();
    // A namespace whose labels change may now match (or no longer match) a ClusterSecretStore's
    // conditions: the ExternalSecrets in it that use one are looked at again at once, instead of
    // at their next refresh (a cheap check; no provider call unless they were refused).
    let (wake_tx, wake_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<external_secret::CachedExternalSecret>>();
    if let Some(poll) = config.remote_change_poll.filter(|p| !p.is_zero()) {
        tokio::spawn(changes::watch(
            ctx.clone(),
            es_store.clone(),
            poll,
            trigger_tx,
        ));
    } else {
        drop(trigger_tx);
    }

    // Readiness: the same definition reconciles use (`Context::caches_ready`).
    tokio::spawn(report_ready(ctx.clone(), handles.ready.clone()));

    let es_controller = es_controller
        .watches_stream(secret_stream, move |s: secrets::WatchedSecret| {
            let ns = s.namespace().to_string();
            targets
                .targeting(&ns, s.name())
                .into_iter()
                .map(|name| ObjectRef::new(&name).within(&ns))
                .collect::<Vec<ObjectRef<external_secret::CachedExternalSecret>>>()
        })
        .reconcile_on(futures::stream::select(
            futures::stream::select(trigger_rx, wake_rx),
            futures::stream::select(store_wake_rx, due_rx),
        ))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            external_secret::reconcile,
            external_secret::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "ExternalSecret controller event");
            }
        });
    let ss = ss_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            stores::reconcile_store,
            stores::store_error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let css = async {
        match css_controller {
            Some(c) => {
                c.graceful_shutdown_on(shutdown.clone())
                    .run(
                        stores::reconcile_cluster_store,
                        stores::store_error_policy,
                        ctx.clone(),
                    )
                    .for_each(|_| async {})
                    .await
            }
            None => futures::future::pending::<()>().await,
        }
    };
    let es_for_ns = es_store.clone();
    let ns_task = async {
        match ns_stream {
            Some(s) => {
                s.for_each(move |r| {
                    match r {
                        Ok(n) => {
                            for obj in external_secret::cluster_store_users_in_namespace(
                                &es_for_ns,
                                &n.name_any(),
                            ) {
                                let _ = wake_tx.unbounded_send(obj);
                            }
                        }
                        Err(e) => warn!(error = %e, "namespace watch"),
                    }
                    futures::future::ready(())
                })
                .await
            }
            None => futures::future::pending::<()>().await,
        }
    };
    let rollout_task = async {
        match (config.rollout.clone(), rollout_rx) {
            (Some(rc), Some(rx)) => {
                rollout::run(
                    client.clone(),
                    ns.clone(),
                    rc,
                    secret_cache.clone(),
                    rx,
                    Recorder::new(
                        client.clone(),
                        Reporter {
                            controller: config.reporter.clone(),
                            instance: config.instance.clone(),
                        },
                    ),
                    handles.metrics.clone(),
                    shutdown.clone(),
                )
                .await;
                futures::future::pending::<()>().await
            }
            _ => futures::future::pending::<()>().await,
        }
    };
    let timer_task = async {
        timer.run(due_tx).await;
        futures::future::pending::<()>().await
    };
    tokio::select! {
        _ = es_controller => {},
        _ = timer_task => {},
        _ = ss => {},
        _ = css => {},
        _ = ns_task => {},
        _ = rollout_task => {},
    }
    info!("controllers stopped");
}

#[cfg(test)]
impl Context {
    /// A context over caches the test fills (nothing is watched; the client points nowhere).
    pub(crate) fn for_tests(config: Config, hub: Arc<dyn ProviderHub>) -> (Arc<Self>, TestWriters) {
        #[allow(clippy::unwrap_used)]
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        Self::for_tests_with_client(config, hub, client)
    }

    /// [`Context::for_tests`] over a given client (a mock apiserver).
    pub(crate) fn for_tests_with_client(
        config: Config,
        hub: Arc<dyn ProviderHub>,
        client: Client,
    ) -> (Arc<Self>, TestWriters) {
        let secrets = secrets::SecretCache::default();
        let secrets_w = secrets.clone();
        let (stores, stores_w) = reflector::store();
        let (cluster_stores, cluster_stores_w) = reflector::store();
        let (namespaces, namespaces_w) = reflector::store();
        let (external_secrets, external_secrets_w) = reflector::store();
        let recorder = Recorder::unqueued(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        );
        let ctx = Arc::new(Self {
            client,
            config,
            hub,
            recorder,
            metrics: Arc::new(Metrics::default()),
            watchdog: Arc::new(Watchdog::new(Duration::from_secs(120))),
            secrets,
            stores,
            cluster_stores,
            namespaces,
            external_secrets,
            created_by: None,
            timer: None,
            state: Mutex::new(HashMap::new()),
            forced: Mutex::new(HashMap::new()),
        });
        let writers = TestWriters {
            secrets: secrets_w,
            stores: stores_w,
            cluster_stores: cluster_stores_w,
            namespaces: namespaces_w,
            external_secrets: external_secrets_w,
        };
        (ctx, writers)
    }
}

/// The writers behind a [`Context::for_tests`] context's caches.
#[cfg(test)]
pub(crate) struct TestWriters {
    pub secrets: secrets::SecretCache,
    pub stores: reflector::store::Writer<DeserializeGuard<SecretStore>>,
    pub cluster_stores: reflector::store::Writer<DeserializeGuard<ClusterSecretStore>>,
    pub namespaces: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    pub external_secrets: reflector::store::Writer<external_secret::CachedExternalSecret>,
}

#[cfg(test)]
mod readiness_tests {
    use super::*;

    fn listed<K>(w: &mut reflector::store::Writer<K>)
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        w.apply_watcher_event(&watcher::Event::Init);
        w.apply_watcher_event(&watcher::Event::InitDone);
    }

    struct NoHub;
    #[async_trait::async_trait]
    impl ProviderHub for NoHub {
        async fn fetch(
            &self,
            _: &StoreContext,
            _: &str,
            _: &[eso_mapping::Request],
            _: Option<Duration>,
        ) -> Result<eso_mapping::Fetched, FetchFailure> {
            Err(FetchFailure::new(FailureClass::Unavailable, "no provider"))
        }
        async fn validate(&self, _: &StoreContext) -> Result<Validation, FetchFailure> {
            Ok(Validation::Unknown(String::new()))
        }
    }

    /// `--enable-cluster-store-reconciler=false`: nothing fills the ClusterSecretStore and
    /// Namespace caches, and readiness (reconciles and `/readyz` alike) must not wait for them.
    #[tokio::test]
    async fn readiness_waits_only_for_the_caches_that_are_watched() {
        for enabled in [false, true] {
            let config = Config {
                enable_cluster_stores: enabled,
                ..Config::default()
            };
            let (ctx, mut w) = Context::for_tests(config, Arc::new(NoHub));
            let ready = Arc::new(AtomicBool::new(false));
            tokio::spawn(report_ready(ctx.clone(), ready.clone()));
            assert!(!ctx.caches_ready());
            w.secrets.apply_watcher_event(&watcher::Event::Init);
            w.secrets.apply_watcher_event(&watcher::Event::InitDone);
            listed(&mut w.stores);
            assert!(!ctx.caches_ready(), "ExternalSecrets not listed yet");
            listed(&mut w.external_secrets);
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(ctx.caches_ready(), !enabled);
            assert_eq!(
                ready.load(Ordering::SeqCst),
                !enabled,
                "/readyz follows caches_ready"
            );
            if enabled {
                listed(&mut w.cluster_stores);
                assert!(!ctx.caches_ready(), "Namespaces not listed yet");
                listed(&mut w.namespaces);
                assert!(ctx.caches_ready());
                tokio::time::sleep(Duration::from_millis(500)).await;
                assert!(ready.load(Ordering::SeqCst));
            }
        }
    }
}

/// Set `ready` once [`Context::caches_ready`] holds (polled: readiness must not depend on a
/// wakeup from the reflectors).
async fn report_ready(ctx: Arc<Context>, ready: Arc<AtomicBool>) {
    while !ctx.caches_ready() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ready.store(true, Ordering::SeqCst);
    info!("caches synced");
}

#[cfg(test)]
mod watchdog_tests {
    use super::*;

    #[test]
    fn a_stuck_reconcile_fails_liveness() {
        let dog = Watchdog::new(Duration::from_millis(100));
        let busy = dog.start(1);
        assert!(dog.healthy().is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(dog.healthy().unwrap_err().contains("running for"));
        drop(busy);
        assert!(dog.healthy().is_ok());
    }

    #[test]
    fn a_queue_that_stops_draining_fails_liveness() {
        let dog = Watchdog::new(Duration::from_millis(100));
        drop(dog.start(1));
        dog.expect_by(1, Duration::from_millis(10));
        assert!(dog.healthy().is_ok(), "work scheduled, not overdue yet");
        std::thread::sleep(Duration::from_millis(300));
        assert!(dog.healthy().unwrap_err().contains("stalled"));
        // The queue drains again: healthy.
        drop(dog.start(1));
        assert!(dog.healthy().is_ok());
    }

    #[test]
    fn a_deleted_object_takes_its_due_time_with_it() {
        // A quiet cluster: one object scheduled, then deleted before its reconcile. Without
        // `forget`, its due time would pass and liveness would fail with nothing to do.
        let dog = Watchdog::new(Duration::from_millis(50));
        let (a, b) = (
            Watchdog::key("ExternalSecret", "ns", "a"),
            Watchdog::key("ExternalSecret", "ns", "b"),
        );
        dog.expect_by(a, Duration::from_millis(10));
        dog.expect_by(b, Duration::from_secs(3600));
        dog.forget(a);
        std::thread::sleep(Duration::from_millis(200));
        assert!(dog.healthy().is_ok(), "{:?}", dog.healthy());
        assert_eq!(dog.scheduled(), 1);
        // An object reconciled early: its later due time replaces the earlier one.
        dog.expect_by(b, Duration::from_millis(10));
        drop(dog.start(b));
        dog.expect_by(b, Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(200));
        assert!(dog.healthy().is_ok(), "{:?}", dog.healthy());
    }

    #[test]
    fn idle_without_scheduled_work_is_healthy() {
        let dog = Watchdog::new(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert!(dog.healthy().is_ok());
    }
}
