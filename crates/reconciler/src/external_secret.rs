//! The ExternalSecret controller: `reconcile` + `error_policy`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eso_api::well_known::{
    ANNOTATION_DATA_HASH, CONDITION_READY, FINALIZER_EXTERNAL_SECRET, LABEL_CREATED_BY,
    LABEL_MANAGED,
};
use eso_api::{
    Binding, ConditionStatus, CreationPolicy, DeletionPolicy, ExternalSecret, ExternalSecretStatus,
    RefreshPolicy, StoreKind,
};
use eso_mapping::{Fetched, Request, StoreRef};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::conditions::*;
use crate::hub::{FailureClass, FetchFailure, StoreContext};
use crate::ownership::{self, ANNOTATION_ALLOW_ADOPTION, Decision, ExistingTarget};
use crate::refresh;
use crate::{Context, Error, secrets, stores};

/// Field manager for status writes.
pub const STATUS_MANAGER: &str = "external-secrets";

/// Why a sync did not complete; each maps to ESO's Ready condition and an Event.
#[derive(Debug)]
pub(crate) enum SyncFailure {
    /// Provider or store problem (reason SecretSyncedError, message "could not get secret data from provider").
    Provider(FetchFailure),
    /// The mapping engine rejected the spec or the remote data.
    Mapping(String),
    /// A target write failed.
    Write {
        message: &'static str,
        detail: String,
        permanent: bool,
    },
    /// Kubernetes API failure.
    Kube(kube::Error),
    /// Something the ExternalSecret depends on is not there yet (a templateFrom ConfigMap or
    /// Secret): retried with a short bounded backoff, not left until the next refresh.
    Waiting(String),
}

impl SyncFailure {
    fn condition_message(&self) -> (String, String) {
        match self {
            SyncFailure::Provider(f) => {
                (format!("{MSG_PROVIDER}: {}", f.message), f.message.clone())
            }
            SyncFailure::Mapping(m) | SyncFailure::Waiting(m) => {
                (format!("{MSG_PROVIDER}: {m}"), m.clone())
            }
            SyncFailure::Write {
                message, detail, ..
            } => {
                if detail.is_empty() {
                    ((*message).to_string(), (*message).to_string())
                } else {
                    (format!("{message}: {detail}"), detail.clone())
                }
            }
            SyncFailure::Kube(e) => (format!("{MSG_UPDATE_FAILED}: {e}"), e.to_string()),
        }
    }

    /// Permanent failures wait for a change (or the next refresh) instead of backing off.
    fn permanent(&self) -> bool {
        match self {
            SyncFailure::Provider(f) => matches!(
                f.class,
                FailureClass::InvalidConfig | FailureClass::Unsupported
            ),
            SyncFailure::Mapping(_) => true,
            SyncFailure::Write { permanent, .. } => *permanent,
            SyncFailure::Kube(_) | SyncFailure::Waiting(_) => false,
        }
    }
}

/// What a successful sync did.
struct Synced {
    reason: &'static str,
    message: &'static str,
    wrote_secret: bool,
    binding: Option<String>,
}

/// In-memory per-object state (never persisted).
#[derive(Clone, Debug, Default)]
pub(crate) struct EsState {
    pub last_check: Option<Timestamp>,
    pub failures: u32,
    /// `syncedResourceVersion` of the last successful sync in this process. The cached object
    /// can lag behind our own status write (a reconcile triggered by the Secret we just created
    /// sees the old status); this keeps such a reconcile from reading the provider again.
    pub synced_version: Option<String>,
    /// The last sync attempt in this process failed: the next reconcile (a wake-up by a store,
    /// a namespace or a retry) tries again instead of trusting the schedule.
    pub failed: bool,
    /// First seen after a (re)start while overdue only by time: its refresh is scheduled for
    /// this instant within the restart spread instead of at once. Reconciles woken before then
    /// (a store or Secret event) keep waiting; the one at or after it reads the provider.
    pub deferred_until: Option<Instant>,
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// The watchdog key of an ExternalSecret.
pub(crate) fn es_dog_key(namespace: &str, name: &str) -> u64 {
    crate::Watchdog::key("ExternalSecret", namespace, name)
}

fn seed_of(namespace: &str, name: &str) -> u64 {
    // FNV-1a: stable across runs, no randomness needed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The target Secret's name.
pub fn target_name(es: &ExternalSecret) -> String {
    es.spec.target.name.clone().unwrap_or_else(|| es.name_any())
}

/// The store an ExternalSecret names by default.
pub(crate) fn default_store(es: &ExternalSecret) -> Option<StoreRef> {
    let r = es.spec.secret_store_ref.as_ref()?;
    Some(StoreRef {
        kind: r.kind.unwrap_or_default(),
        name: r.name.clone()?,
    })
}

/// Every store an ExternalSecret references (spec, data[].sourceRef, dataFrom[].sourceRef).
pub fn referenced_stores(es: &ExternalSecret) -> Vec<StoreRef> {
    let mut out = Vec::new();
    if let Some(s) = default_store(es) {
        out.push(s);
    }
    let mut push = |r: Option<&eso_api::SecretStoreRef>| {
        if let Some(r) = r
            && let Some(name) = &r.name
        {
            out.push(StoreRef {
                kind: r.kind.unwrap_or_default(),
                name: name.clone(),
            });
        }
    };
    for d in &es.spec.data {
        push(d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()));
    }
    for d in &es.spec.data_from {
        push(d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()));
    }
    out.sort();
    out.dedup();
    out
}

/// Reconcile one ExternalSecret.
pub(crate) async fn reconcile(
    guard: Arc<DeserializeGuard<ExternalSecret>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let es = match &guard.0 {
        Ok(es) => es,
        Err(invalid) => {
            // One malformed object never stops the watch: report it and wait for a change.
            warn!(error = %invalid, "ignoring an ExternalSecret that does not deserialize");
            return Ok(Action::await_change());
        }
    };
    let ns = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let started = Instant::now();
    let _busy = ctx.watchdog.start(es_dog_key(&ns, &name));
    ctx.metrics.inc(
        "externalsecret_sync_calls_total",
        crate::metrics::es_labels(&ns, &name),
    );
    let result = reconcile_inner(es, &ns, &name, &ctx).await;
    ctx.metrics.set(
        "externalsecret_reconcile_duration",
        crate::metrics::es_labels(&ns, &name),
        started.elapsed().as_nanos() as f64,
    );
    if result.is_err() {
        ctx.metrics.inc(
            "externalsecret_sync_calls_error",
            crate::metrics::es_labels(&ns, &name),
        );
    }
    // Deleted while this reconcile ran: the delete event's cleanup may have run before the
    // series above were set again.
    if ctx
        .external_secrets
        .get(&ObjectRef::new(&name).within(&ns))
        .is_none()
    {
        ctx.forget_es(&ns, &name);
    }
    result
}

async fn reconcile_inner(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    // Decisions read the Secret and store caches: never decide on a cache that has not listed
    // yet (after a restart every Secret would look missing and be rewritten). Not awaited: a
    // reconcile holding a slot must not stall the streams that fill those caches.
    if !ctx.caches_ready() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let key = ObjectRef::<ExternalSecret>::new(name).within(ns);
    if es.meta().deletion_timestamp.is_some() {
        return cleanup(es, ns, name, ctx).await;
    }
    if !stores::class_matches(es, ctx) {
        debug!(%ns, %name, "skipping: a referenced store belongs to another controller class");
        return Ok(Action::await_change());
    }
    let target = target_name(es);
    let existing = ctx.secret(ns, &target);
    let current_version = eso_mapping::synced_resource_version(
        es.metadata.generation.unwrap_or(0),
        es.metadata.labels.as_ref(),
        es.metadata.annotations.as_ref(),
    );
    let state = ctx.es_state(&key);
    let now_ts = now();
    let valid = es.spec.target.creation_policy == CreationPolicy::Orphan
        || secrets::is_valid(existing.as_deref());
    // spec.syncWindows hold back periodic refreshes (ESO: Periodic or unset policy only): a
    // remote change seen by the change watcher and the retry of a failed periodic refresh wait
    // for a window too (the forced mark is kept until then). The first sync, a spec change and
    // the repair of an invalid Secret are not held back, as in ESO.
    let window_blocked = matches!(es.spec.refresh_policy, None | Some(RefreshPolicy::Periodic))
        && !crate::windows::allows(es.spec.sync_windows.as_ref(), now_ts);
    // A remote change seen by the change watcher forces a read newer than the change.
    let forced = if window_blocked {
        None
    } else {
        ctx.take_forced(&key)
    };
    let synced_here = state.synced_version.as_deref() == Some(current_version.as_str())
        && state.last_check.is_some_and(|t| {
            match es.spec.refresh_interval_duration().filter(|i| !i.is_zero()) {
                Some(i)
                    if !matches!(
                        es.spec.refresh_policy,
                        Some(RefreshPolicy::CreatedOnce) | Some(RefreshPolicy::OnChange)
                    ) =>
                {
                    Duration::try_from(now_ts.duration_since(t)).is_ok_and(|since| since < i)
                }
                _ => true,
            }
        });
    // A failed last attempt is retried when the object is woken (a store turning Ready, a
    // namespace's labels changing, the backoff) rather than waiting for the next refresh.
    let failed_before = !window_blocked
        && (state.failed || (state.last_check.is_none() && ready_status(es) == Some("False")));
    // A ClusterSecretStore that no longer admits this namespace (its labels changed) is
    // reported at once, not at the next refresh; the Secret is kept.
    let refused = !stores::cluster_stores_admit(es, ns, ctx);
    let needs_refresh = forced.is_some()
        || failed_before
        || refused
        || (!synced_here
            && refresh::should_refresh(es, &current_version, now_ts, state.last_check));
    debug!(%ns, %name, needs_refresh, valid, "reconcile");
    // After a restart or failover nothing is known in memory, and an object whose Secret did
    // not change for one interval has an old `refreshTime` (it is written only on change): it
    // looks overdue. When it is overdue by time only — spec, labels and annotations as last
    // synced, the last sync successful, the Secret valid — its refresh is scheduled within the
    // restart spread (deterministically per object) instead of at once, so a restart costs no
    // more provider reads per interval than steady state. A remote change is still seen at the
    // next change poll, which forces a refresh.
    if needs_refresh
        && forced.is_none()
        && !failed_before
        && valid
        && state.last_check.is_none()
        && state.deferred_until.is_none_or(|t| t > Instant::now())
        && ready_status(es) == Some("True")
        && es
            .status
            .as_ref()
            .and_then(|s| s.synced_resource_version.as_deref())
            == Some(current_version.as_str())
        && matches!(es.spec.refresh_policy, None | Some(RefreshPolicy::Periodic))
        && let Some(interval) = es.spec.refresh_interval_duration().filter(|i| !i.is_zero())
    {
        let until = match state.deferred_until {
            Some(t) => t,
            None => {
                let window = interval.min(ctx.config.restart_spread);
                let t = Instant::now() + refresh::jitter(window, 1.0, seed_of(ns, name));
                ctx.update_state(&key, |s| s.deferred_until = Some(t));
                t
            }
        };
        let d = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        ctx.metrics.set_condition(
            "externalsecret_status_condition",
            ns,
            name,
            CONDITION_READY,
            "True",
        );
        debug!(%ns, %name, after = ?d, "overdue after a restart: refresh scheduled within the spread");
        ctx.watchdog.expect_by(es_dog_key(ns, name), d);
        return Ok(Action::requeue(d));
    }
    if !needs_refresh && valid {
        ctx.metrics.set_condition(
            "externalsecret_status_condition",
            ns,
            name,
            CONDITION_READY,
            ready_status(es).unwrap_or("True"),
        );
        return Ok(requeue(es, ns, name, ctx, now_ts, state.last_check, true));
    }

    let outcome = sync(es, ns, name, &target, existing.as_deref(), forced, ctx).await;
    let old_status = es.status.clone().unwrap_or_default();
    match outcome {
        Ok(done) => {
            let mut status = old_status.clone();
            status.conditions = set_condition(
                &old_status.conditions,
                ready(ConditionStatus::True, done.reason, done.message),
                now_ts,
            );
            status.synced_resource_version = Some(current_version.clone());
            if let Some(b) = done.binding {
                status.binding = Some(Binding { name: b });
            }
            let changed = status_differs(&old_status, &status) || done.wrote_secret;
            if changed || status.refresh_time.is_none() {
                status.refresh_time = Some(Time(now_ts));
                write_status(es, ns, name, &status, ctx).await?;
            }
            ctx.metrics.set_condition(
                "externalsecret_status_condition",
                ns,
                name,
                CONDITION_READY,
                "True",
            );
            ctx.update_state(&key, |s| {
                s.last_check = Some(now_ts);
                s.failures = 0;
                s.failed = false;
                s.synced_version = Some(current_version.clone());
            });
            Ok(requeue(es, ns, name, ctx, now_ts, Some(now_ts), false))
        }
        Err(failure) => {
            let (message, detail) = failure.condition_message();
            let mut status = old_status.clone();
            status.conditions = set_condition(
                &old_status.conditions,
                ready(ConditionStatus::False, REASON_SYNCED_ERROR, message),
                now_ts,
            );
            if status_differs(&old_status, &status) {
                write_status(es, ns, name, &status, ctx).await?;
            }
            ctx.metrics.set_condition(
                "externalsecret_status_condition",
                ns,
                name,
                CONDITION_READY,
                "False",
            );
            // The event action names the failing step: the recorder folds repeated events with
            // the same (reason, action) into one series and keeps only the first note, so a
            // store problem followed by a mapping error must not share a key.
            let action = match &failure {
                SyncFailure::Provider(_) => "Fetch",
                SyncFailure::Mapping(_) | SyncFailure::Waiting(_) => "Map",
                _ => "Write",
            };
            publish_action(ctx, es, EventType::Warning, "UpdateFailed", action, &detail).await;
            ctx.update_state(&key, |s| s.failed = true);
            if failure.permanent() {
                ctx.update_state(&key, |s| s.failures = 0);
                // Wait for a spec change, a store change, or the next refresh.
                return Ok(requeue(es, ns, name, ctx, now_ts, Some(now_ts), false));
            }
            Err(match failure {
                SyncFailure::Provider(f) => Error::Provider(f),
                SyncFailure::Kube(e) => Error::Kube {
                    action: "sync",
                    source: e,
                },
                SyncFailure::Waiting(m) => Error::Waiting(m),
                other => Error::Sync(other.condition_message().0),
            })
        }
    }
}

fn ready_status(es: &ExternalSecret) -> Option<&'static str> {
    let st = get_ready(&es.status.as_ref()?.conditions)?.status;
    Some(st.as_str())
}

fn requeue(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    ctx: &Context,
    now_ts: Timestamp,
    last_check: Option<Timestamp>,
    first_seen_may_be_restart: bool,
) -> Action {
    let jitter = ctx.config.jitter_fraction;
    let after = refresh::next_refresh(es, now_ts, last_check, jitter, seed_of(ns, name));
    match after {
        Some(mut d) => {
            // After a restart, overdue-by-schedule objects whose Secret is valid are spread over
            // a window instead of all refreshing at once (ESO #4231).
            if first_seen_may_be_restart && d.is_zero() {
                let window = es
                    .spec
                    .refresh_interval_duration()
                    .unwrap_or(Duration::from_secs(60))
                    .min(ctx.config.restart_spread);
                d = refresh::jitter(window, 1.0, seed_of(ns, name));
            }
            ctx.watchdog.expect_by(es_dog_key(ns, name), d);
            Action::requeue(d.max(Duration::from_millis(100)))
        }
        None => Action::await_change(),
    }
}

/// Only compare what matters: conditions (type/status/reason/message), version, binding.
fn status_differs(a: &ExternalSecretStatus, b: &ExternalSecretStatus) -> bool {
    let key = |s: &ExternalSecretStatus| {
        let mut c: Vec<_> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status,
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect();
        c.sort_by(|x, y| x.0.cmp(&y.0));
        (c, s.synced_resource_version.clone(), s.binding.clone())
    };
    key(a) != key(b)
}

async fn write_status(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    status: &ExternalSecretStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "status": status,
    });
    let _ = es;
    ctx.metrics.inc(
        "eso_status_writes_total",
        vec![("kind", "ExternalSecret".to_string())],
    );
    api.patch_status(
        name,
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube {
        action: "write ExternalSecret status",
        source,
    })?;
    Ok(())
}

pub(crate) async fn publish(
    ctx: &Context,
    es: &ExternalSecret,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_action(ctx, es, type_, reason, "Sync", note).await;
}

/// Publish an Event with an explicit action.
pub(crate) async fn publish_action(
    ctx: &Context,
    es: &ExternalSecret,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &es.object_ref(&())).await {
        debug!(error = %e, "could not publish event");
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Deletion: ESO's cleanup for objects that still carry ESO's finalizer (objects created under
/// ESO). This operator never adds the finalizer: an Owner Secret is removed by the garbage
/// collector through its ownerReference, and nothing else is ever deleted on ExternalSecret
/// deletion, so no finalizer is needed to block namespace deletion (ESO #5426).
async fn cleanup(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    ctx.forget_es(ns, name);
    let finalizers = es.finalizers();
    if !finalizers.iter().any(|f| f == FINALIZER_EXTERNAL_SECRET) {
        return Ok(Action::await_change());
    }
    if es.spec.target.deletion_policy == DeletionPolicy::Delete {
        let target = target_name(es);
        if let Some(secret) = ctx.secret(ns, &target) {
            let ours = ownership::controller_of(secret.owner_references())
                .is_some_and(|c| c.kind == "ExternalSecret" && c.name == name);
            if ours {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
                match api.delete(&target, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Kube {
                            action: "delete target Secret",
                            source,
                        });
                    }
                }
            }
        }
    }
    let remaining: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER_EXTERNAL_SECRET)
        .collect();
    let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({ "metadata": { "finalizers": remaining, "resourceVersion": es.resource_version() } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(source) => Err(Error::Kube {
            action: "remove finalizer",
            source,
        }),
    }
}

/// Read everything, map it, write the Secret.
async fn sync(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    existing: Option<&Secret>,
    forced: Option<std::time::SystemTime>,
    ctx: &Arc<Context>,
) -> Result<Synced, SyncFailure> {
    let requests = eso_mapping::plan(&es.spec).map_err(|e| SyncFailure::Mapping(e.to_string()))?;
    let mut fetched = fetch_all(es, ns, &requests, forced, ctx).await?;
    fetched.generated = run_generators(es, ns, ctx).await?;
    let template_sources = read_template_sources(es, ns, ctx).await?;
    let mapped = crate::offload::map(es, ns, name, fetched, template_sources)
        .await
        .map_err(|e| SyncFailure::Mapping(e.to_string()))?;
    for missing in &mapped.missing {
        publish(
            ctx,
            es,
            EventType::Normal,
            "MissingProviderSecret",
            &missing.to_string(),
        )
        .await;
    }

    let policy = es.spec.target.creation_policy;
    if mapped.data.is_empty() {
        match es.spec.target.deletion_policy {
            DeletionPolicy::Delete => {
                if policy != CreationPolicy::Owner {
                    return Err(SyncFailure::Write {
                        message: MSG_DELETE_FAILED,
                        detail: "deletionPolicy Delete needs creationPolicy Owner".into(),
                        permanent: true,
                    });
                }
                if let Some(secret) = existing {
                    let ours = ownership::controller_of(secret.owner_references())
                        .is_some_and(|c| c.kind == "ExternalSecret" && c.name == name);
                    if ours {
                        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
                        ctx.metrics.inc(
                            "eso_secret_writes_total",
                            vec![("verb", "delete".to_string())],
                        );
                        match api.delete(target, &DeleteParams::default()).await {
                            Ok(_) => {
                                publish(ctx, es, EventType::Normal, "Deleted", MSG_DELETED).await
                            }
                            Err(kube::Error::Api(s)) if s.code == 404 => {}
                            Err(e) => {
                                return Err(SyncFailure::Write {
                                    message: MSG_DELETE_FAILED,
                                    detail: e.to_string(),
                                    permanent: false,
                                });
                            }
                        }
                    }
                }
                return Ok(Synced {
                    reason: REASON_DELETED,
                    message: MSG_DELETED,
                    wrote_secret: false,
                    binding: None,
                });
            }
            DeletionPolicy::Retain => {
                return Ok(Synced {
                    reason: REASON_SYNCED,
                    message: MSG_RETAINED,
                    wrote_secret: false,
                    binding: None,
                });
            }
            DeletionPolicy::Merge => {}
        }
    }

    // The cache only holds Secrets labelled as managed. A Secret absent from it may still exist
    // (created by someone else): read it before deciding, so a foreign Secret is never
    // overwritten by a blind create (ESO #2416 wiped argocd-secret that way).
    let live;
    let existing = match existing {
        Some(s) => Some(s),
        None if policy != CreationPolicy::None => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            live = api.get_opt(target).await.map_err(SyncFailure::Kube)?;
            live.as_ref()
        }
        None => None,
    };
    let owner_refs = existing.map(|s| s.owner_references()).unwrap_or(&[]);
    let labels = existing.and_then(|s| s.metadata.labels.as_ref());
    let annotations = existing.and_then(|s| s.metadata.annotations.as_ref());
    let view = existing.map(|_| ExistingTarget {
        owner_references: owner_refs,
        managed_label: labels
            .and_then(|l| l.get(LABEL_MANAGED))
            .map(String::as_str),
        allow_adoption: annotations
            .and_then(|a| a.get(ANNOTATION_ALLOW_ADOPTION))
            .map(String::as_str),
    });
    let decision = ownership::decide(policy, name, view.as_ref());
    match decision {
        Decision::Nothing => Ok(Synced {
            reason: REASON_SYNCED,
            message: MSG_SYNCED,
            wrote_secret: false,
            binding: None,
        }),
        Decision::MissingForMerge => Ok(Synced {
            reason: REASON_MISSING,
            message: MSG_MISSING,
            wrote_secret: false,
            binding: None,
        }),
        Decision::OwnedByOtherExternalSecret(other) => Err(SyncFailure::Write {
            message: MSG_OWNED_BY_OTHER,
            detail: format!("Secret {target} is controlled by ExternalSecret {other}"),
            permanent: true,
        }),
        Decision::ControlledByOther(other) => Err(SyncFailure::Write {
            message: MSG_OWNERSHIP,
            detail: format!("Secret {target} is controlled by {other}"),
            permanent: true,
        }),
        Decision::RefuseForeign => Err(SyncFailure::Write {
            message: MSG_OWNERSHIP,
            detail: format!(
                "Secret {target} already exists and was not created by an ExternalSecret; refusing to overwrite it. \
                 Delete it, use creationPolicy Merge, or annotate it {ANNOTATION_ALLOW_ADOPTION}=true to let this ExternalSecret take it over"
            ),
            permanent: true,
        }),
        Decision::Create | Decision::Write | Decision::Merge => {
            if policy == CreationPolicy::Owner {
                delete_orphans(es, ns, name, target, ctx).await?;
            }
            let wrote =
                write_secret(es, ns, name, target, existing, &mapped, decision, ctx).await?;
            if let Some(verb) = wrote {
                publish(
                    ctx,
                    es,
                    EventType::Normal,
                    verb,
                    if verb == "Created" {
                        "secret created"
                    } else {
                        "secret updated"
                    },
                )
                .await;
                info!(%ns, %name, secret = %target, "{}", if verb == "Created" { "secret created" } else { "secret updated" });
            }
            Ok(Synced {
                reason: REASON_SYNCED,
                message: MSG_SYNCED,
                wrote_secret: wrote.is_some(),
                binding: Some(target.to_string()),
            })
        }
    }
}

/// ESO's orphan cleanup under creationPolicy Owner: a Secret this ExternalSecret created under
/// another name (its `target.name` was changed) still holds the old values; it is deleted.
/// Found in the managed-Secret cache by the `created-by` label and checked to be controlled by
/// this very ExternalSecret (name and uid), so nothing else is ever deleted.
async fn delete_orphans(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    ctx: &Context,
) -> Result<(), SyncFailure> {
    // The previous target is recorded in status.binding; without one (or when it differs) look.
    let bound = es
        .status
        .as_ref()
        .and_then(|s| s.binding.as_ref())
        .map(|b| b.name.as_str());
    if bound == Some(target) {
        return Ok(());
    }
    let created_by = eso_mapping::created_by_label(ns, name);
    let uid = es.uid().unwrap_or_default();
    let orphans: Vec<(String, Option<String>)> = ctx
        .secrets
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns) && s.name_any() != target)
        .filter(|s| s.labels().get(LABEL_CREATED_BY) == Some(&created_by))
        .filter(|s| {
            ownership::controller_of(s.owner_references()).is_some_and(|c| {
                c.kind == "ExternalSecret" && c.name == name && (uid.is_empty() || c.uid == uid)
            })
        })
        .map(|s| (s.name_any(), s.uid()))
        .collect();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    for (orphan, orphan_uid) in orphans {
        let dp = DeleteParams {
            preconditions: orphan_uid.map(|u| kube::api::Preconditions {
                uid: Some(u),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        ctx.metrics.inc(
            "eso_secret_writes_total",
            vec![("verb", "delete".to_string())],
        );
        match api.delete(&orphan, &dp).await {
            Ok(_) => {
                info!(%ns, %name, secret = %orphan, "deleted the Secret left behind by a target rename");
                publish(
                    ctx,
                    es,
                    EventType::Normal,
                    "Deleted",
                    &format!(
                        "secret {orphan} deleted because it was orphaned (target is now {target})"
                    ),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                return Err(SyncFailure::Write {
                    message: MSG_ORPHAN_CLEANUP,
                    detail: e.to_string(),
                    permanent: false,
                });
            }
        }
    }
    Ok(())
}

/// How old a shared cached answer may be for this ExternalSecret: never older than its refresh
/// interval, nor than its own last check (so a forced or spec-triggered refresh always sees a
/// value read after the previous sync, while many ExternalSecrets refreshing in the same window
/// still share one read).
fn cache_max_age(
    es: &ExternalSecret,
    ns: &str,
    forced: Option<std::time::SystemTime>,
    ctx: &Context,
) -> Option<Duration> {
    // After a remote change, only values read after `fresh_after` count (see changes::fresh_after).
    let after_change = forced.map(|fresh_after| {
        std::time::SystemTime::now()
            .duration_since(fresh_after)
            .unwrap_or(Duration::ZERO)
    });
    let interval = es.spec.refresh_interval_duration().filter(|d| !d.is_zero());
    let name = es.name_any();
    let last_check = ctx.es_state(&ObjectRef::new(&name).within(ns)).last_check;
    let refreshed = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0);
    let anchor = match (last_check, refreshed) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let since = anchor.and_then(|t| Duration::try_from(now().duration_since(t)).ok());
    [interval, since, after_change].into_iter().flatten().min()
}

/// Resolve every store the plan needs and fetch through the hub.
async fn fetch_all(
    es: &ExternalSecret,
    ns: &str,
    requests: &[Request],
    forced: Option<std::time::SystemTime>,
    ctx: &Arc<Context>,
) -> Result<Fetched, SyncFailure> {
    let mut by_store: BTreeMap<StoreRef, Vec<Request>> = BTreeMap::new();
    for r in requests {
        let store = match r {
            Request::Get { store, .. } | Request::Find { store, .. } => store.clone(),
        };
        by_store.entry(store).or_default().push(r.clone());
    }
    let mut fetched = Fetched::default();
    for (store_ref, reqs) in by_store {
        let store: StoreContext =
            stores::resolve_for(es, ns, &store_ref, ctx).map_err(SyncFailure::Provider)?;
        let part = ctx
            .hub
            .fetch(&store, ns, &reqs, cache_max_age(es, ns, forced, ctx))
            .await
            .map_err(SyncFailure::Provider)?;
        fetched.gets.extend(part.gets);
        fetched.finds.extend(part.finds);
    }
    Ok(fetched)
}

/// Run the generators named by `dataFrom[].sourceRef.generatorRef` (ESO: every sync generates
/// anew; `refreshPolicy: CreatedOnce` therefore keeps the first value). Values go to the mapping
/// engine only; nothing here logs them.
async fn run_generators(
    es: &ExternalSecret,
    ns: &str,
    ctx: &Context,
) -> Result<std::collections::HashMap<usize, eso_mapping::GeneratedData>, SyncFailure> {
    use eso_api::generators::{
        ClusterGeneratorSpec, EcrAuthorizationTokenSpec, GENERATORS_GROUP, GENERATORS_VERSION,
        GeneratorSpec, PasswordSpec, StsSessionTokenSpec,
    };
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let mut out = std::collections::HashMap::new();
    for (i, gref) in eso_mapping::generator_entries(&es.spec) {
        let field = format!("spec.dataFrom[{i}].sourceRef.generatorRef");
        let text = |k: &str| gref.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let (api_version, kind, gname) = (text("apiVersion"), text("kind"), text("name"));
        if kind.is_empty() || gname.is_empty() {
            return Err(SyncFailure::Mapping(format!(
                "{field}: kind and name are required"
            )));
        }
        let expected = format!("{GENERATORS_GROUP}/{GENERATORS_VERSION}");
        if api_version != expected {
            return Err(SyncFailure::Provider(FetchFailure::new(
                FailureClass::Unsupported,
                format!(
                    "{field}: apiVersion {api_version:?} is not supported; generators are {expected}"
                ),
            )));
        }
        let plural = match kind {
            "Password" => "passwords",
            "UUID" => "uuids",
            "ECRAuthorizationToken" => "ecrauthorizationtokens",
            "STSSessionToken" => "stssessiontokens",
            "ClusterGenerator" => "clustergenerators",
            other => {
                return Err(SyncFailure::Provider(FetchFailure::new(
                    FailureClass::Unsupported,
                    format!(
                        "{field}: generator kind {other} is not supported by this operator (Password, UUID, ECRAuthorizationToken, STSSessionToken and ClusterGenerator are)"
                    ),
                )));
            }
        };
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GENERATORS_GROUP, GENERATORS_VERSION, kind),
            plural,
        );
        let api: Api<DynamicObject> = if kind == "ClusterGenerator" {
            Api::all_with(ctx.client.clone(), &ar)
        } else {
            Api::namespaced_with(ctx.client.clone(), ns, &ar)
        };
        let where_ = if kind == "ClusterGenerator" {
            format!("{kind} {gname}")
        } else {
            format!("{kind} {ns}/{gname}")
        };
        let obj = match api.get_opt(gname).await {
            Ok(Some(o)) => o,
            Ok(None) => return Err(SyncFailure::Waiting(format!("{field}: {where_} not found"))),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(SyncFailure::Waiting(format!(
                    "{field}: {where_} not found (is its CRD installed?)"
                )));
            }
            Err(e) => return Err(SyncFailure::Kube(e)),
        };
        let spec_value = obj.data.get("spec").cloned().unwrap_or_else(|| json!({}));
        let bad = |e: serde_json::Error| {
            SyncFailure::Mapping(format!("{field}: {where_} has an invalid spec: {e}"))
        };
        let spec = match kind {
            "Password" => GeneratorSpec::Password(
                serde_json::from_value::<PasswordSpec>(spec_value).map_err(bad)?,
            ),
            "UUID" => GeneratorSpec::Uuid,
            "ECRAuthorizationToken" => GeneratorSpec::Ecr(
                serde_json::from_value::<EcrAuthorizationTokenSpec>(spec_value).map_err(bad)?,
            ),
            "STSSessionToken" => GeneratorSpec::Sts(
                serde_json::from_value::<StsSessionTokenSpec>(spec_value).map_err(bad)?,
            ),
            _ => {
                let cg = serde_json::from_value::<ClusterGeneratorSpec>(spec_value).map_err(bad)?;
                cg.resolve().map_err(|m| {
                    SyncFailure::Provider(FetchFailure::new(
                        FailureClass::Unsupported,
                        format!("{field}: {m}"),
                    ))
                })?
            }
        };
        let generated = ctx.hub.generate(&spec, ns).await.map_err(|f| {
            SyncFailure::Provider(FetchFailure::new(
                f.class,
                format!("{field}: {where_}: {}", f.message),
            ))
        })?;
        out.insert(i, eso_mapping::GeneratedData(generated.0));
    }
    Ok(out)
}

/// ConfigMaps and Secrets named by `template.templateFrom` (direct reads, only when used).
async fn read_template_sources(
    es: &ExternalSecret,
    ns: &str,
    ctx: &Context,
) -> Result<eso_mapping::TemplateSources, SyncFailure> {
    let mut sources = eso_mapping::TemplateSources::default();
    let Some(template) = es.spec.target.template.as_ref() else {
        return Ok(sources);
    };
    for tf in &template.template_from {
        if let Some(cm) = &tf.config_map {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
            let obj = api
                .get_opt(&cm.name)
                .await
                .map_err(SyncFailure::Kube)?
                .ok_or_else(|| {
                    SyncFailure::Waiting(format!("template ConfigMap {ns}/{} not found", cm.name))
                })?;
            let mut data: BTreeMap<String, Vec<u8>> = obj
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in obj.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            sources.config_maps.insert(cm.name.clone(), data);
        }
        if let Some(sec) = &tf.secret {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            let obj = api
                .get_opt(&sec.name)
                .await
                .map_err(SyncFailure::Kube)?
                .ok_or_else(|| {
                    SyncFailure::Waiting(format!("template Secret {ns}/{} not found", sec.name))
                })?;
            let data = obj
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            sources.secrets.insert(sec.name.clone(), data);
        }
    }
    Ok(sources)
}

/// Server-side apply the Secret. Returns `Some("Created" | "Updated")` when a write happened.
#[allow(clippy::too_many_arguments)]
async fn write_secret(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    existing: Option<&Secret>,
    mapped: &eso_mapping::Mapped,
    decision: Decision,
    ctx: &Context,
) -> Result<Option<&'static str>, SyncFailure> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let policy = es.spec.target.creation_policy;
    let merge = decision == Decision::Merge;

    let manager = eso_mapping::field_manager(name);

    // The data the Secret will hold, for the hash: ours, or (Merge) the live data with ours on
    // top, less the keys this ExternalSecret wrote before and no longer maps (they are removed
    // below; keys written by anyone else stay).
    let full_data: BTreeMap<String, Vec<u8>> = if merge {
        let live = api.get_opt(target).await.map_err(SyncFailure::Kube)?;
        let (owned, others) = live
            .as_ref()
            .map(|s| {
                (
                    secrets::Owned::of(s, &manager),
                    secrets::Owned::of_others(s, &manager),
                )
            })
            .unwrap_or_default();
        let mut d: BTreeMap<String, Vec<u8>> = live
            .and_then(|s| s.data)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .filter(|(k, _)| {
                !owned.data.contains(k) || others.data.contains(k) || mapped.data.contains_key(k)
            })
            .collect();
        for (k, v) in &mapped.data {
            d.insert(k.clone(), v.clone());
        }
        d
    } else {
        mapped.data.clone()
    };
    eso_mapping::check_size(&full_data).map_err(|e| SyncFailure::Mapping(e.to_string()))?;
    let hash = eso_mapping::data_hash(&full_data);

    let mut labels: BTreeMap<String, String> = mapped.labels.clone();
    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
    let mut annotations: BTreeMap<String, String> = mapped.annotations.clone();
    annotations.insert(ANNOTATION_DATA_HASH.to_string(), hash.clone());
    let owner = policy == CreationPolicy::Owner;
    if owner {
        labels.insert(
            LABEL_CREATED_BY.to_string(),
            eso_mapping::created_by_label(ns, name),
        );
    }

    // What this ExternalSecret's field manager will own once the Secret is written: compared
    // with what it owns now, so a key, label, annotation or finalizer dropped from the
    // ExternalSecret is noticed without reading the provider or the Secret's values.
    let desired = secrets::Owned {
        data: mapped.data.keys().cloned().collect(),
        labels: labels.keys().cloned().collect(),
        annotations: annotations.keys().cloned().collect(),
        finalizers: mapped.finalizers.iter().cloned().collect(),
    };
    let desired_digest = desired.digest();

    let immutable = es.spec.target.immutable.unwrap_or(false);
    if let Some(secret) = existing
        && secret.immutable == Some(true)
        && secrets::current_hash(secret).as_deref() != Some(hash.as_str())
    {
        return Err(SyncFailure::Write {
            message: MSG_IMMUTABLE,
            detail: String::new(),
            permanent: true,
        });
    }

    // Nothing to do when the live Secret already matches.
    if let Some(secret) = existing
        && up_to_date(
            secret,
            &labels,
            &annotations,
            &hash,
            owner,
            name,
            mapped.type_.as_deref(),
            immutable,
            &mapped.data,
            merge,
        )
        && secrets::owned_digest(secret, &manager) == desired_digest
    {
        return Ok(None);
    }

    let data: BTreeMap<String, String> = mapped
        .data
        .iter()
        .map(|(k, v)| (k.clone(), eso_mapping::base64_encode(v)))
        .collect();
    let mut metadata = json!({
        "name": target,
        "namespace": ns,
        "labels": labels,
        "annotations": annotations,
    });
    if owner {
        let uid = es.uid().unwrap_or_default();
        metadata["ownerReferences"] = json!([{
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "name": name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
    }
    if !mapped.finalizers.is_empty() {
        metadata["finalizers"] = json!(mapped.finalizers);
    }
    let mut body =
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data });
    if let Some(t) = &mapped.type_ {
        body["type"] = json!(t);
    }
    if immutable {
        body["immutable"] = json!(true);
    }
    ctx.metrics.inc(
        "eso_secret_writes_total",
        vec![("verb", "apply".to_string())],
    );
    let written = api
        .patch(
            target,
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(classify_write_error)?;

    // Server-side apply removes what this manager applied before and omits now. What it does
    // not remove is removed explicitly: under Owner/Orphan every data key we did not write (the
    // Secret holds exactly our data), and under every policy the keys, labels and annotations
    // this ExternalSecret's manager still owns through an Update (written by ESO before the
    // switch) but no longer wants. Labels, annotations and Merge keys of others stay.
    let owned = secrets::Owned::of(&written, &manager);
    let others = secrets::Owned::of_others(&written, &manager);
    let live_keys = written
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let stale_data: Vec<&String> = live_keys
        .iter()
        .filter(|k| {
            !mapped.data.contains_key(*k)
                && (!merge || (owned.data.contains(*k) && !others.data.contains(*k)))
        })
        .collect();
    let live_labels = written.metadata.labels.clone().unwrap_or_default();
    let live_annotations = written.metadata.annotations.clone().unwrap_or_default();
    let stale_labels: Vec<&String> = owned
        .labels
        .iter()
        .filter(|k| {
            !desired.labels.contains(*k)
                && !others.labels.contains(*k)
                && live_labels.contains_key(*k)
        })
        .collect();
    let stale_annotations: Vec<&String> = owned
        .annotations
        .iter()
        .filter(|k| {
            !desired.annotations.contains(*k)
                && !others.annotations.contains(*k)
                && live_annotations.contains_key(*k)
        })
        .collect();
    if !stale_data.is_empty() || !stale_labels.is_empty() || !stale_annotations.is_empty() {
        let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
        let mut ops = vec![
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": written.resource_version()}),
        ];
        for k in &stale_data {
            ops.push(json!({"op": "remove", "path": format!("/data/{}", escape(k))}));
        }
        for k in &stale_labels {
            ops.push(json!({"op": "remove", "path": format!("/metadata/labels/{}", escape(k))}));
        }
        for k in &stale_annotations {
            ops.push(
                json!({"op": "remove", "path": format!("/metadata/annotations/{}", escape(k))}),
            );
        }
        let patch: json_patch::Patch =
            serde_json::from_value(json!(ops)).map_err(|e| SyncFailure::Write {
                message: MSG_UPDATE_FAILED,
                detail: e.to_string(),
                permanent: false,
            })?;
        ctx.metrics.inc(
            "eso_secret_writes_total",
            vec![("verb", "patch".to_string())],
        );
        api.patch(target, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(classify_write_error)?;
    }
    Ok(Some(if existing.is_some() {
        "Updated"
    } else {
        "Created"
    }))
}

fn classify_write_error(e: kube::Error) -> SyncFailure {
    match &e {
        kube::Error::Api(s) if s.code == 422 && s.message.contains("immutable") => {
            SyncFailure::Write {
                message: MSG_IMMUTABLE,
                detail: s.message.clone(),
                permanent: true,
            }
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => SyncFailure::Write {
            message: MSG_UPDATE_FAILED,
            detail: s.message.clone(),
            permanent: true,
        },
        _ => SyncFailure::Kube(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn up_to_date(
    secret: &Secret,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    hash: &str,
    owner: bool,
    es_name: &str,
    type_: Option<&str>,
    immutable: bool,
    data: &BTreeMap<String, Vec<u8>>,
    merge: bool,
) -> bool {
    if secrets::current_hash(secret).as_deref() != Some(hash) {
        return false;
    }
    let live_labels = secret.metadata.labels.clone().unwrap_or_default();
    let live_annotations = secret.metadata.annotations.clone().unwrap_or_default();
    if labels.iter().any(|(k, v)| live_labels.get(k) != Some(v)) {
        return false;
    }
    if annotations
        .iter()
        .any(|(k, v)| live_annotations.get(k) != Some(v))
    {
        return false;
    }
    let has_owner = ownership::controller_of(secret.owner_references())
        .is_some_and(|c| c.kind == "ExternalSecret" && c.name == es_name);
    if owner != has_owner {
        return false;
    }
    if let Some(t) = type_
        && secret.type_.as_deref() != Some(t)
    {
        return false;
    }
    if immutable && secret.immutable != Some(true) {
        return false;
    }
    if !merge && secrets::data_keys(secret).len() != data.len() {
        return false;
    }
    true
}

/// Longest wait between retries while a dependency (templateFrom source) is missing.
pub const WAITING_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Backoff for transient failures: exponential from 1 s with ±20 % jitter, capped at the
/// refresh interval (so recovery never waits longer than one refresh) and at `max_backoff`.
pub(crate) fn error_policy(
    guard: Arc<DeserializeGuard<ExternalSecret>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let Ok(es) = &guard.0 else {
        return Action::await_change();
    };
    let ns = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let key = ObjectRef::<ExternalSecret>::new(&name).within(&ns);
    let failures = ctx.update_state(&key, |s| {
        s.failures = s.failures.saturating_add(1);
        s.failures
    });
    let mut cap = ctx.config.max_backoff;
    if matches!(error, Error::Waiting(_)) {
        // A missing dependency usually appears soon (applied in the same batch): look again
        // at least every WAITING_BACKOFF_CAP.
        cap = cap.min(WAITING_BACKOFF_CAP);
    }
    if let Some(i) = es.spec.refresh_interval_duration()
        && !i.is_zero()
    {
        cap = cap.min(i);
    }
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let d = base.min(cap);
    let j = refresh::jitter(d, 0.4, seed_of(&ns, &name) ^ u64::from(failures));
    let d = (d.mul_f64(0.8) + j).max(Duration::from_millis(500));
    warn!(%ns, %name, error = %error, retry_in = ?d, "sync failed");
    ctx.watchdog.expect_by(es_dog_key(&ns, &name), d);
    Action::requeue(d)
}

/// Map a changed store to the ExternalSecrets that reference it.
pub(crate) fn stores_to_es(
    es_store: &kube::runtime::reflector::Store<DeserializeGuard<ExternalSecret>>,
    kind: StoreKind,
    namespace: Option<String>,
    store_name: String,
) -> Vec<ObjectRef<DeserializeGuard<ExternalSecret>>> {
    es_store
        .state()
        .into_iter()
        .filter_map(|g| {
            let es = g.0.as_ref().ok()?;
            if let Some(ns) = &namespace
                && es.namespace().as_deref() != Some(ns.as_str())
            {
                return None;
            }
            referenced_stores(es)
                .iter()
                .any(|s| s.kind == kind && s.name == store_name)
                .then(|| ObjectRef::from_obj(&*g))
        })
        .collect()
}

/// The ExternalSecrets of a namespace that use a ClusterSecretStore (a namespace label change
/// may admit or refuse them).
pub(crate) fn cluster_store_users_in_namespace(
    es_store: &kube::runtime::reflector::Store<DeserializeGuard<ExternalSecret>>,
    namespace: &str,
) -> Vec<ObjectRef<DeserializeGuard<ExternalSecret>>> {
    es_store
        .state()
        .into_iter()
        .filter_map(|g| {
            let es = g.0.as_ref().ok()?;
            if es.namespace().as_deref() != Some(namespace) {
                return None;
            }
            if !referenced_stores(es)
                .iter()
                .any(|s| s.kind == StoreKind::ClusterSecretStore)
            {
                return None;
            }
            Some(ObjectRef::from_obj(&*g))
        })
        .collect()
}
