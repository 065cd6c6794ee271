//! The PushSecret controller (`external-secrets.io/v1alpha1`): Kubernetes Secret data written
//! to stores through [`ProviderHub::push`], with ESO v2.9 semantics.
//!
//! What is watched: PushSecrets (through [`DeserializeGuard`]) and Secrets **metadata only**
//! (no Secret data is cached). A Secret event is mapped to the PushSecrets that select it through
//! an index kept from the PushSecret watch — by name, or by label selector within the namespace
//! — so no event scans every PushSecret. The source Secret is read (GET) at each reconcile.
//!
//! One reconcile: deletion (finalizer) → unsupported fields reported → source Secrets read →
//! skip when nothing changed and the refresh is not due → stores resolved → each entry pushed
//! (the provider compares first: no write, no new remote version, when the value is unchanged;
//! a remote secret not created by this operator is never written) → entries that left the
//! spec deleted when `deletionPolicy: Delete` → status (`syncedPushSecrets`, `Ready`).
//!
//! Store edits do not wake PushSecrets; the next refresh (or an edit of the PushSecret or its
//! Secret) uses the new store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::Recorder;
use eso_api::{
    ClusterSecretStore, ConditionStatus, PUSH_SECRET_FINALIZER, PushSecret,
    PushSecretConversionStrategy, PushSecretData, PushSecretDeletionPolicy, PushSecretStatus,
    PushSecretUpdatePolicy, SecretStore, StoreKind,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::conditions::{get_ready, ready, set_condition};
use crate::hub::{
    DeleteOutcome, ProviderHub, PushOutcome, PushRemoteRef, PushRequest, StoreContext,
};
use crate::stores::{namespace_matches, selector_matches, store_class_matches};
use crate::{Config, Handles, Watchdog};

/// Field manager of PushSecret status writes.
pub const STATUS_MANAGER: &str = "external-secrets-push-status";
/// Ready reason: pushed (ESO's).
pub const REASON_SYNCED: &str = "Synced";
/// Ready reason: failed (ESO's).
pub const REASON_ERRORED: &str = "Errored";
/// Ready reason: the source Secret was deleted and the pushed secrets were cleaned up (ESO's).
pub const REASON_SOURCE_DELETED: &str = "SourceDeleted";

/// Errors a PushSecret reconcile ends with (reported in status and Events first).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed while trying to {action}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Which PushSecrets select which Secrets: by name, and by label selector per namespace.
#[derive(Debug, Default)]
pub struct SourceIndex {
    inner: Mutex<IndexState>,
}

#[derive(Debug, Default)]
struct IndexState {
    /// (namespace, Secret name) → PushSecret names.
    by_name: HashMap<(String, String), BTreeSet<String>>,
    /// namespace → PushSecret name → selector.
    by_selector: HashMap<String, BTreeMap<String, LabelSelector>>,
    /// (namespace, PushSecret) → what it was indexed under, for removal.
    entries: HashMap<(String, String), Source>,
}

#[derive(Clone, Debug)]
enum Source {
    Name(String),
    Selector,
}

impl SourceIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexState> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record (or replace) what a PushSecret selects.
    pub fn apply(&self, ps: &PushSecret) {
        let ns = ps.namespace().unwrap_or_default();
        let name = ps.name_any();
        self.delete(&ns, &name);
        let Some(sel) = &ps.spec.selector.secret else {
            return;
        };
        let mut s = self.lock();
        if let Some(secret) = sel.name.as_ref().filter(|n| !n.is_empty()) {
            s.by_name
                .entry((ns.clone(), secret.clone()))
                .or_default()
                .insert(name.clone());
            s.entries.insert((ns, name), Source::Name(secret.clone()));
        } else if let Some(selector) = &sel.selector {
            s.by_selector
                .entry(ns.clone())
                .or_default()
                .insert(name.clone(), selector.clone());
            s.entries.insert((ns, name), Source::Selector);
        }
    }

    /// Forget a PushSecret.
    pub fn delete(&self, ns: &str, name: &str) {
        let mut s = self.lock();
        match s.entries.remove(&(ns.to_string(), name.to_string())) {
            Some(Source::Name(secret)) => {
                let key = (ns.to_string(), secret);
                if let Some(set) = s.by_name.get_mut(&key) {
                    set.remove(name);
                    if set.is_empty() {
                        s.by_name.remove(&key);
                    }
                }
            }
            Some(Source::Selector) => {
                if let Some(m) = s.by_selector.get_mut(ns) {
                    m.remove(name);
                    if m.is_empty() {
                        s.by_selector.remove(ns);
                    }
                }
            }
            None => {}
        }
    }

    /// The PushSecrets (names, in `ns`) that select a Secret with these labels.
    pub fn selecting(
        &self,
        ns: &str,
        secret: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let s = self.lock();
        let mut out: BTreeSet<String> = s
            .by_name
            .get(&(ns.to_string(), secret.to_string()))
            .cloned()
            .unwrap_or_default();
        if let Some(m) = s.by_selector.get(ns) {
            out.extend(
                m.iter()
                    .filter(|(_, sel)| selector_matches(sel, labels))
                    .map(|(n, _)| n.clone()),
            );
        }
        out.into_iter().collect()
    }
}

/// Everything a PushSecret reconcile needs.
pub struct PushContext {
    client: Client,
    config: Config,
    hub: Arc<dyn ProviderHub>,
    recorder: Recorder,
    watchdog: Arc<Watchdog>,
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl std::fmt::Debug for PushContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushContext")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn dog_key(ns: &str, name: &str) -> u64 {
    Watchdog::key("PushSecret", ns, name)
}

/// Run the PushSecret controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    hub: Arc<dyn ProviderHub>,
    handles: Handles,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = config.namespace.clone();
    let index = Arc::new(SourceIndex::default());
    let ps_api: Api<DeserializeGuard<PushSecret>> = match &ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    };
    let (ps_store, ps_writer) = reflector::store::<DeserializeGuard<PushSecret>>();
    let ps_stream = watcher(ps_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|g: &mut DeserializeGuard<PushSecret>| {
            if let Ok(ps) = &mut g.0 {
                ps.metadata.managed_fields = None;
            }
        })
        .reflect(ps_writer)
        .inspect({
            let index = index.clone();
            move |ev| match ev {
                Ok(watcher::Event::Apply(g)) | Ok(watcher::Event::InitApply(g)) => {
                    if let Ok(ps) = &g.0 {
                        index.apply(ps);
                    }
                }
                Ok(watcher::Event::Delete(g)) => {
                    index.delete(&g.namespace().unwrap_or_default(), &g.name_any());
                }
                _ => {}
            }
        })
        .applied_objects();
    let secret_api: Api<PartialObjectMeta<Secret>> = match &ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    };
    // Metadata only, not cached: each event is mapped through the index and dropped.
    let secret_stream = watcher(secret_api, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(PushContext {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        config: config.clone(),
        hub,
        watchdog: handles.watchdog.clone(),
        failures: Mutex::new(HashMap::new()),
    });
    Controller::for_stream(ps_stream, ps_store)
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .watches_stream(secret_stream, move |s: PartialObjectMeta<Secret>| {
            let ns = s.namespace().unwrap_or_default();
            let labels = s.metadata.labels.clone().unwrap_or_default();
            index
                .selecting(&ns, &s.name_any(), &labels)
                .into_iter()
                .map(|n| ObjectRef::new(&n).within(&ns))
                .collect::<Vec<ObjectRef<DeserializeGuard<PushSecret>>>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "PushSecret controller event");
            }
        })
        .await;
    info!("PushSecret controller stopped");
}

/// Retry after a Kubernetes error.
pub fn error_policy(
    _guard: Arc<DeserializeGuard<PushSecret>>,
    error: &PushError,
    _ctx: Arc<PushContext>,
) -> Action {
    warn!(error = %error, "PushSecret reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

fn kube_err(action: &'static str) -> impl FnOnce(kube::Error) -> PushError {
    move |source| PushError::Kube { action, source }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The reconcile.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<PushSecret>>,
    ctx: Arc<PushContext>,
) -> Result<Action, PushError> {
    let ps = match &guard.0 {
        Ok(ps) => ps,
        Err(e) => {
            warn!(error = %e, "PushSecret does not match the schema; skipped");
            return Ok(Action::await_change());
        }
    };
    let ns = ps.namespace().unwrap_or_default();
    let name = ps.name_any();
    let _busy = ctx.watchdog.start(dog_key(&ns, &name));
    let api: Api<PushSecret> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = ps.finalizers().iter().any(|f| f == PUSH_SECRET_FINALIZER);
    let delete_policy = ps.spec.deletion_policy == PushSecretDeletionPolicy::Delete;

    if ps.metadata.deletion_timestamp.is_some() {
        ctx.watchdog.forget(dog_key(&ns, &name));
        if let Ok(mut f) = ctx.failures.lock() {
            f.remove(&(ns.clone(), name.clone()));
        }
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        if delete_policy {
            let old = ps.status.clone().unwrap_or_default().synced_push_secrets;
            let (left, errors) = delete_entries(&ctx, ps, &old, &BTreeMap::new()).await;
            if !errors.is_empty() {
                let msg = format!(
                    "Failed to Delete Secrets from Provider: {}",
                    errors.join("; ")
                );
                let mut status = ps.status.clone().unwrap_or_default();
                status.synced_push_secrets = left;
                fail(&ctx, ps, status, &msg).await?;
                return Ok(backoff(&ctx, &ns, &name));
            }
        }
        set_finalizer(&api, ps, false).await?;
        return Ok(Action::await_change());
    }
    // Finalizer only with deletionPolicy Delete (ESO).
    if delete_policy != has_finalizer {
        set_finalizer(&api, ps, delete_policy).await?;
        return Ok(Action::requeue(Duration::from_millis(50)));
    }

    let old_status = ps.status.clone().unwrap_or_default();
    if let Some(why) = unsupported(ps) {
        fail(&ctx, ps, old_status, &why).await?;
        return Ok(Action::await_change());
    }
    let interval = ps
        .spec
        .refresh_interval
        .as_deref()
        .map_or(Some(Duration::from_secs(3600)), eso_api::parse_go_duration)
        .unwrap_or(Duration::from_secs(3600));

    // Source Secrets.
    let secrets = match source_secrets(&ctx, ps, &ns).await {
        Ok(s) => s,
        Err(SourceError::Missing(secret)) => {
            if delete_policy && !old_status.synced_push_secrets.is_empty() {
                let (left, errors) =
                    delete_entries(&ctx, ps, &old_status.synced_push_secrets, &BTreeMap::new())
                        .await;
                let mut status = old_status.clone();
                status.synced_push_secrets = left;
                if errors.is_empty() {
                    let now = Timestamp::now();
                    status.conditions = set_condition(
                        &status.conditions,
                        ready(
                            ConditionStatus::False,
                            REASON_SOURCE_DELETED,
                            "source secret deleted; provider secrets cleaned up",
                        ),
                        now,
                    );
                    publish(
                        &ctx,
                        ps,
                        EventType::Normal,
                        REASON_SOURCE_DELETED,
                        "source secret deleted; provider secrets cleaned up",
                    )
                    .await;
                    write_status(&ctx, ps, &status).await?;
                    return Ok(Action::await_change());
                }
                let msg = format!("failed to cleanup provider secrets: {}", errors.join("; "));
                fail(&ctx, ps, status, &msg).await?;
                return Ok(backoff(&ctx, &ns, &name));
            }
            let msg = format!("could not get source secret: Secret {ns}/{secret} not found");
            fail(&ctx, ps, old_status, &msg).await?;
            // The Secret watch wakes this PushSecret when the Secret appears.
            return Ok(Action::await_change());
        }
        Err(SourceError::Kube(e)) => {
            fail(
                &ctx,
                ps,
                old_status,
                &format!("could not get source secret: {e}"),
            )
            .await?;
            return Ok(backoff(&ctx, &ns, &name));
        }
    };

    // Skip when nothing changed and the refresh is not due.
    let version = synced_version(ps, &secrets);
    let ready_true =
        get_ready(&old_status.conditions).is_some_and(|c| c.status == ConditionStatus::True);
    if ready_true && old_status.synced_resource_version.as_deref() == Some(version.as_str()) {
        if interval.is_zero() {
            return Ok(Action::await_change());
        }
        let since = old_status
            .refresh_time
            .as_ref()
            .map(|t| Timestamp::now().duration_since(t.0))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(interval);
        if since < interval {
            let wait = interval - since + Duration::from_secs(1);
            ctx.watchdog.expect_by(dog_key(&ns, &name), wait);
            return Ok(Action::requeue(wait));
        }
    }

    // Stores.
    let stores = match resolve_stores(&ctx, ps, &ns).await {
        Ok(s) => s,
        Err(msg) => {
            fail(&ctx, ps, old_status, &msg).await?;
            return Ok(backoff(&ctx, &ns, &name));
        }
    };
    if stores.is_empty() {
        // ESO: nothing to do when no store is managed by this controller.
        return Ok(Action::await_change());
    }

    let mut synced: BTreeMap<String, BTreeMap<String, PushSecretData>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut wrote = Vec::new();
    for (_, secret_data) in &secrets {
        let data = match apply_template(ps, secret_data) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (store_key, store) in &stores {
            let entries = synced.entry(store_key.clone()).or_default();
            for entry in &ps.spec.data {
                match push_entry(&ctx, ps, &ns, store, entry, &data).await {
                    Ok(outcome) => {
                        if matches!(outcome, Some(PushOutcome::Created | PushOutcome::Updated)) {
                            wrote.push(format!("{store_key}: {}", entry.status_key()));
                        }
                        entries.insert(entry.status_key(), entry.clone());
                    }
                    Err(e) => errors.push(format!(
                        "could not write remote ref {} to target secretstore {}: {e}",
                        entry.status_key(),
                        store.name
                    )),
                }
            }
        }
    }

    let mut status = old_status.clone();
    if !errors.is_empty() {
        // Keep what was synced before (a failed entry must not look removed and be deleted).
        status.synced_push_secrets = merge(&synced, &old_status.synced_push_secrets);
        fail(
            &ctx,
            ps,
            status,
            &format!("set secret failed: {}", errors.join("; ")),
        )
        .await?;
        return Ok(backoff(&ctx, &ns, &name));
    }
    if delete_policy {
        let (left, del_errors) =
            delete_entries(&ctx, ps, &old_status.synced_push_secrets, &synced).await;
        if !del_errors.is_empty() {
            status.synced_push_secrets = merge(&synced, &left);
            let msg = format!(
                "Failed to Delete Secrets from Provider: {}",
                del_errors.join("; ")
            );
            fail(&ctx, ps, status, &msg).await?;
            return Ok(backoff(&ctx, &ns, &name));
        }
    }
    status.synced_push_secrets = synced;
    status.synced_resource_version = Some(version);
    status.refresh_time = Some(Time(Timestamp::now()));
    let mut msg = "PushSecret synced successfully".to_string();
    if ps.spec.update_policy == PushSecretUpdatePolicy::IfNotExists {
        msg.push_str(". Existing secrets in providers unchanged.");
    }
    let was_ready = ready_true;
    status.conditions = set_condition(
        &status.conditions,
        ready(ConditionStatus::True, REASON_SYNCED, msg.clone()),
        Timestamp::now(),
    );
    if !wrote.is_empty() || !was_ready {
        let note = if wrote.is_empty() {
            msg.clone()
        } else {
            format!("{msg}: wrote {}", wrote.join(", "))
        };
        publish(&ctx, ps, EventType::Normal, REASON_SYNCED, &note).await;
    }
    write_status(&ctx, ps, &status).await?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&(ns.clone(), name.clone()));
    }
    if interval.is_zero() {
        return Ok(Action::await_change());
    }
    ctx.watchdog.expect_by(dog_key(&ns, &name), interval);
    Ok(Action::requeue(interval))
}

/// Fields accepted but not implemented: reported, never ignored.
fn unsupported(ps: &PushSecret) -> Option<String> {
    if ps.spec.selector.generator_ref.is_some() {
        return Some(
            "selector.generatorRef is not supported by this operator: push from a Secret".into(),
        );
    }
    if !ps.spec.data_to.is_empty() {
        return Some(
            "spec.dataTo is not supported by this operator: list keys in spec.data".into(),
        );
    }
    if ps
        .spec
        .template
        .as_ref()
        .is_some_and(|t| !t.template_from.is_empty())
    {
        return Some("spec.template.templateFrom is not supported for PushSecret by this operator: use template.data".into());
    }
    None
}

enum SourceError {
    Missing(String),
    Kube(kube::Error),
}

/// The source Secrets (name, data).
async fn source_secrets(
    ctx: &PushContext,
    ps: &PushSecret,
    ns: &str,
) -> Result<Vec<(String, Secret)>, SourceError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(sel) = &ps.spec.selector.secret else {
        return Ok(Vec::new());
    };
    if let Some(n) = sel.name.as_ref().filter(|n| !n.is_empty()) {
        return match api.get(n).await {
            Ok(s) => Ok(vec![(n.clone(), s)]),
            Err(e) if is_not_found(&e) => Err(SourceError::Missing(n.clone())),
            Err(e) => Err(SourceError::Kube(e)),
        };
    }
    let Some(selector) = &sel.selector else {
        return Ok(Vec::new());
    };
    let lp = ListParams::default().labels(&label_selector_string(selector));
    let list = api.list(&lp).await.map_err(SourceError::Kube)?;
    let mut out: Vec<(String, Secret)> = list
        .items
        .into_iter()
        .filter(|s| selector_matches(selector, &s.labels().clone()))
        .map(|s| (s.name_any(), s))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A label selector in the API's string form (`a=b,c in (d,e),!f`).
pub fn label_selector_string(sel: &LabelSelector) -> String {
    let mut parts = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "In" => parts.push(format!("{} in ({values})", e.key)),
            "NotIn" => parts.push(format!("{} notin ({values})", e.key)),
            "Exists" => parts.push(e.key.clone()),
            "DoesNotExist" => parts.push(format!("!{}", e.key)),
            _ => {}
        }
    }
    parts.join(",")
}

/// What a push depends on: the PushSecret's generation, labels and annotations, and each
/// source Secret's resourceVersion. A change of any of them pushes at once.
fn synced_version(ps: &PushSecret, secrets: &[(String, Secret)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |s: &str| {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (k, v) in ps.labels().iter().chain(ps.annotations().iter()) {
        feed(k);
        feed(v);
    }
    for (n, s) in secrets {
        feed(n);
        feed(s.metadata.resource_version.as_deref().unwrap_or(""));
    }
    format!("{}-{h:016x}", ps.metadata.generation.unwrap_or(0))
}

/// The Secret's data after ESO's template: the rendered `template.data` keys over the Secret's
/// own keys.
fn apply_template(ps: &PushSecret, secret: &Secret) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let Some(t) = &ps.spec.template else {
        return Ok(data);
    };
    let tctx = eso_mapping::template::context_bytes(&data);
    let mut rendered = BTreeMap::new();
    for (k, text) in &t.data {
        let v = eso_mapping::template::render_bytes(text, &tctx)
            .map_err(|e| format!("could not execute template for key {k}: {e}"))?;
        rendered.insert(k.clone(), v);
    }
    data.extend(rendered);
    Ok(data)
}

/// ESO's `ReverseUnicode`: `_Uxxxx_` in key names back to the character.
fn reverse_unicode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(i) = rest.find("_U") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let decoded = tail
            .get(..4)
            .filter(|_| tail.as_bytes().get(4) == Some(&b'_'))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[5..];
            }
            None => {
                out.push_str("_U");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The bytes an entry pushes: one key, or the whole Secret as a JSON object of strings.
fn entry_value(
    entry: &PushSecretData,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let converted: BTreeMap<String, &Vec<u8>> = match entry.conversion_strategy {
        PushSecretConversionStrategy::None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
        PushSecretConversionStrategy::ReverseUnicode => {
            data.iter().map(|(k, v)| (reverse_unicode(k), v)).collect()
        }
    };
    match entry.match_.secret_key.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => converted
            .get(k)
            .map(|v| (*v).clone())
            .ok_or_else(|| format!("secret key {k} does not exist")),
        None => {
            let m: BTreeMap<&String, String> = converted
                .iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
                .collect();
            serde_json::to_vec(&m).map_err(|e| format!("encoding the Secret as JSON: {e}"))
        }
    }
}

fn remote_of(entry: &PushSecretData) -> PushRemoteRef {
    PushRemoteRef {
        key: entry.match_.remote_ref.remote_key.clone(),
        property: entry
            .match_
            .remote_ref
            .property
            .clone()
            .filter(|p| !p.is_empty()),
    }
}

/// Push one entry to one store. `Ok(None)`: skipped (IfNotExists and it exists).
async fn push_entry(
    ctx: &PushContext,
    ps: &PushSecret,
    ns: &str,
    store: &StoreContext,
    entry: &PushSecretData,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<PushOutcome>, String> {
    let value = entry_value(entry, data)?;
    let remote = remote_of(entry);
    if ps.spec.update_policy == PushSecretUpdatePolicy::IfNotExists {
        let exists = ctx
            .hub
            .pushed_exists(store, ns, &remote)
            .await
            .map_err(|f| format!("could not verify if secret exists in store: {}", f.message))?;
        if exists {
            return Ok(None);
        }
    }
    let resolved = resolve_metadata_refs(ctx, ns, entry).await?;
    let req = PushRequest {
        remote,
        value,
        metadata: entry.metadata.clone(),
        resolved,
    };
    match ctx.hub.push(store, ns, &req).await {
        Ok(PushOutcome::NotOwned) => Err(format!(
            "remote secret {} exists and was not created by external-secrets (no managed-by: external-secrets tag): left untouched",
            req.remote.key
        )),
        Ok(o) => {
            debug!(%ns, ps = %ps.name_any(), remote = %req.remote.key, outcome = o.as_str(), "pushed");
            Ok(Some(o))
        }
        Err(f) => Err(f.message),
    }
}

/// Kubernetes inputs an entry's metadata points at: `spec.resourcePolicy.policySourceRef`
/// (a ConfigMap or Secret key in the PushSecret's namespace).
async fn resolve_metadata_refs(
    ctx: &PushContext,
    ns: &str,
    entry: &PushSecretData,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let Some(src) = entry
        .metadata
        .as_ref()
        .and_then(|m| m.pointer("/spec/resourcePolicy/policySourceRef"))
    else {
        return Ok(out);
    };
    let field = |f: &str| {
        src.get(f)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("metadata.spec.resourcePolicy.policySourceRef.{f} is required"))
    };
    let (kind, name, key) = (field("kind")?, field("name")?, field("key")?);
    let policy = match kind.as_str() {
        "ConfigMap" => {
            let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
                .get(&name)
                .await
                .map_err(|e| format!("failed to get ConfigMap {ns}/{name}: {e}"))?;
            cm.data
                .and_then(|d| d.get(&key).cloned())
                .ok_or_else(|| format!("key {key} not found in ConfigMap {ns}/{name}"))?
        }
        "Secret" => {
            let s = Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .get(&name)
                .await
                .map_err(|e| format!("failed to get Secret {ns}/{name}: {e}"))?;
            let bytes = s
                .data
                .and_then(|d| d.get(&key).cloned())
                .ok_or_else(|| format!("key {key} not found in Secret {ns}/{name}"))?;
            String::from_utf8(bytes.0)
                .map_err(|_| format!("key {key} of Secret {ns}/{name} is not UTF-8 JSON"))?
        }
        other => {
            return Err(format!(
                "unsupported PolicySourceRef kind: {other} (must be ConfigMap or Secret)"
            ));
        }
    };
    out.insert(PushRequest::RESOURCE_POLICY.to_string(), policy);
    Ok(out)
}

fn store_key(kind: StoreKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

fn store_context(
    kind: StoreKind,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: eso_api::SecretStoreSpec,
) -> StoreContext {
    StoreContext {
        kind,
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or(0),
        spec: Arc::new(spec),
    }
}

/// One store by kind and name (`Ok(None)`: it does not exist).
async fn get_store(
    ctx: &PushContext,
    kind: StoreKind,
    name: &str,
    ns: &str,
) -> Result<Option<(StoreContext, bool)>, String> {
    match kind {
        StoreKind::SecretStore => {
            match Api::<SecretStore>::namespaced(ctx.client.clone(), ns)
                .get_opt(name)
                .await
            {
                Ok(Some(s)) => Ok(Some((
                    store_context(kind, &s.metadata, s.spec.clone()),
                    s.metadata.deletion_timestamp.is_some(),
                ))),
                Ok(None) => Ok(None),
                Err(e) => Err(format!("could not get SecretStore {name:?}, {e}")),
            }
        }
        StoreKind::ClusterSecretStore => {
            match Api::<ClusterSecretStore>::all(ctx.client.clone())
                .get_opt(name)
                .await
            {
                Ok(Some(s)) => Ok(Some((
                    store_context(kind, &s.metadata, s.spec.store.clone()),
                    s.metadata.deletion_timestamp.is_some(),
                ))),
                Ok(None) => Ok(None),
                Err(e) => Err(format!("could not get ClusterSecretStore {name:?}, {e}")),
            }
        }
    }
}

/// The stores the PushSecret writes to, keyed `Kind/name`: stores being deleted and stores of
/// another controller class are left out (ESO); a ClusterSecretStore whose conditions do not
/// admit the namespace is an error.
async fn resolve_stores(
    ctx: &PushContext,
    ps: &PushSecret,
    ns: &str,
) -> Result<BTreeMap<String, StoreContext>, String> {
    let mut found: Vec<StoreContext> = Vec::new();
    for r in &ps.spec.secret_store_refs {
        let kind = r.kind.unwrap_or_default();
        if kind == StoreKind::ClusterSecretStore && !ctx.config.enable_cluster_stores {
            return Err(crate::stores::cluster_stores_disabled(
                r.name.as_deref().unwrap_or("(by label)"),
                ns,
                ctx.config.namespace.is_some(),
            ));
        }
        if let Some(name) = r.name.as_ref().filter(|n| !n.is_empty()) {
            match get_store(ctx, kind, name, ns).await? {
                Some((s, deleting)) => {
                    if !deleting {
                        found.push(s);
                    }
                }
                None => {
                    return Err(format!(
                        "could not get {} {name:?}: not found",
                        kind.as_str()
                    ));
                }
            }
        } else if let Some(sel) = &r.label_selector {
            let lp = ListParams::default().labels(&label_selector_string(sel));
            match kind {
                StoreKind::SecretStore => {
                    let list = Api::<SecretStore>::namespaced(ctx.client.clone(), ns)
                        .list(&lp)
                        .await
                        .map_err(|e| format!("could not list Secret Stores: {e}"))?;
                    for s in list.items {
                        if s.metadata.deletion_timestamp.is_none() {
                            found.push(store_context(kind, &s.metadata, s.spec.clone()));
                        }
                    }
                }
                StoreKind::ClusterSecretStore => {
                    let list = Api::<ClusterSecretStore>::all(ctx.client.clone())
                        .list(&lp)
                        .await
                        .map_err(|e| format!("could not list cluster Secret Stores: {e}"))?;
                    for s in list.items {
                        if s.metadata.deletion_timestamp.is_none() {
                            found.push(store_context(kind, &s.metadata, s.spec.store.clone()));
                        }
                    }
                }
            }
        } else {
            return Err("refStore Name must be provided".to_string());
        }
    }
    let mut out = BTreeMap::new();
    for s in found {
        if !store_class_matches(&s.spec, &ctx.config.controller_class) {
            continue;
        }
        if s.kind == StoreKind::ClusterSecretStore && !s.spec.conditions.is_empty() {
            let labels = Api::<Namespace>::all(ctx.client.clone())
                .get_metadata_opt(ns)
                .await
                .map_err(|e| format!("could not read namespace {ns}: {e}"))?
                .and_then(|n| n.metadata.labels)
                .unwrap_or_default();
            if !namespace_matches(&s.spec.conditions, ns, &labels) {
                return Err(format!(
                    "ClusterSecretStore {:?} does not allow namespace {ns:?} (spec.conditions)",
                    s.name
                ));
            }
        }
        out.insert(store_key(s.kind, &s.name), s);
    }
    Ok(out)
}

/// ESO's merge of two synced maps (`new` wins per entry).
fn merge(
    new: &BTreeMap<String, BTreeMap<String, PushSecretData>>,
    old: &BTreeMap<String, BTreeMap<String, PushSecretData>>,
) -> BTreeMap<String, BTreeMap<String, PushSecretData>> {
    let mut out = old.clone();
    for (k, v) in new {
        out.entry(k.clone()).or_default().extend(v.clone());
    }
    out
}

/// Delete the entries of `old` that are not in `new`. An entry whose remote name (and property)
/// is still pushed through another store in `new` is not deleted (changing `secretStoreRefs`
/// between two stores of the same account must not delete what was just pushed; ESO #5062).
/// Returns what is left of `old` (entries that could not be deleted) and the errors.
async fn delete_entries(
    ctx: &PushContext,
    ps: &PushSecret,
    old: &BTreeMap<String, BTreeMap<String, PushSecretData>>,
    new: &BTreeMap<String, BTreeMap<String, PushSecretData>>,
) -> (
    BTreeMap<String, BTreeMap<String, PushSecretData>>,
    Vec<String>,
) {
    let ns = ps.namespace().unwrap_or_default();
    let still_pushed: BTreeSet<String> = new.values().flat_map(|m| m.keys().cloned()).collect();
    let mut left = BTreeMap::new();
    let mut errors = Vec::new();
    for (store_key, entries) in old {
        let stale: Vec<&PushSecretData> = entries
            .iter()
            .filter(|(k, _)| !new.get(store_key).is_some_and(|m| m.contains_key(*k)))
            .map(|(_, v)| v)
            .collect();
        if stale.is_empty() {
            continue;
        }
        let (kind, name) = match store_key.split_once('/') {
            Some(("ClusterSecretStore", n)) => (StoreKind::ClusterSecretStore, n),
            Some((_, n)) => (StoreKind::SecretStore, n),
            None => (StoreKind::SecretStore, store_key.as_str()),
        };
        let store = match get_store(ctx, kind, name, &ns).await {
            Ok(Some((s, _))) => s,
            Ok(None) => {
                let msg = format!(
                    "{store_key} no longer exists: its pushed secrets ({}) were left in place",
                    stale
                        .iter()
                        .map(|e| e.status_key())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                publish(ctx, ps, EventType::Warning, REASON_ERRORED, &msg).await;
                continue;
            }
            Err(e) => {
                errors.push(e);
                left.insert(store_key.clone(), entries.clone());
                continue;
            }
        };
        for entry in stale {
            if still_pushed.contains(&entry.status_key()) {
                continue;
            }
            match ctx.hub.delete_pushed(&store, &ns, &remote_of(entry)).await {
                Ok(DeleteOutcome::NotOwned) => {
                    let msg = format!(
                        "remote secret {} in {store_key} was not created by external-secrets: not deleted",
                        entry.match_.remote_ref.remote_key
                    );
                    publish(ctx, ps, EventType::Warning, REASON_ERRORED, &msg).await;
                }
                Ok(o) => {
                    debug!(%ns, remote = %entry.status_key(), outcome = ?o, "deleted pushed secret");
                }
                Err(f) => {
                    errors.push(format!(
                        "{store_key}: {}: {}",
                        entry.status_key(),
                        f.message
                    ));
                    left.entry(store_key.clone())
                        .or_insert_with(BTreeMap::new)
                        .insert(entry.status_key(), entry.clone());
                }
            }
        }
    }
    (left, errors)
}

async fn set_finalizer(api: &Api<PushSecret>, ps: &PushSecret, on: bool) -> Result<(), PushError> {
    let mut list: Vec<String> = ps
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != PUSH_SECRET_FINALIZER)
        .cloned()
        .collect();
    if on {
        list.push(PUSH_SECRET_FINALIZER.to_string());
    }
    // resourceVersion makes the update conditional: another writer's finalizer is never lost.
    let patch = json!({
        "metadata": {
            "finalizers": list,
            "resourceVersion": ps.resource_version(),
        }
    });
    match api
        .patch(
            &ps.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(PushError::Kube {
            action: "update PushSecret finalizers",
            source: e,
        }),
    }
}

async fn fail(
    ctx: &PushContext,
    ps: &PushSecret,
    mut status: PushSecretStatus,
    msg: &str,
) -> Result<(), PushError> {
    warn!(ns = %ps.namespace().unwrap_or_default(), name = %ps.name_any(), error = %msg, "PushSecret failed");
    status.conditions = set_condition(
        &status.conditions,
        ready(ConditionStatus::False, REASON_ERRORED, msg),
        Timestamp::now(),
    );
    publish(ctx, ps, EventType::Warning, REASON_ERRORED, msg).await;
    write_status(ctx, ps, &status).await
}

fn backoff(ctx: &PushContext, ns: &str, name: &str) -> Action {
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let c = f.entry((ns.to_string(), name.to_string())).or_insert(0);
            *c = c.saturating_add(1);
            *c
        })
        .unwrap_or(1);
    let d = Duration::from_secs(1)
        .saturating_mul(1u32 << n.min(16).saturating_sub(1))
        .min(ctx.config.max_backoff);
    ctx.watchdog.expect_by(dog_key(ns, name), d);
    Action::requeue(d)
}

async fn write_status(
    ctx: &PushContext,
    ps: &PushSecret,
    status: &PushSecretStatus,
) -> Result<(), PushError> {
    if ps.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<PushSecret> =
        Api::namespaced(ctx.client.clone(), &ps.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "external-secrets.io/v1alpha1",
        "kind": "PushSecret",
        "status": status,
    });
    match api
        .patch_status(
            &ps.name_any(),
            &PatchParams::apply(STATUS_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(kube_err("write PushSecret status")(e)),
    }
}

async fn publish(ctx: &PushContext, ps: &PushSecret, type_: EventType, reason: &str, note: &str) {
    let mut note = note.to_string();
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Push".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ps.object_ref(&())).await {
        debug!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(yaml: serde_json::Value) -> PushSecret {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn index_maps_secrets_by_name_and_selector() {
        let idx = SourceIndex::default();
        idx.apply(&ps(json!({
            "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"secretStoreRefs": [{"name": "s"}], "selector": {"secret": {"name": "src"}}}
        })));
        idx.apply(&ps(json!({
            "apiVersion": "external-secrets.io/v1alpha1", "kind": "PushSecret",
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"secretStoreRefs": [{"name": "s"}], "selector": {"secret": {"selector": {"matchLabels": {"push": "yes"}}}}}
        })));
        let yes = BTreeMap::from([("push".to_string(), "yes".to_string())]);
        assert_eq!(idx.selecting("ns", "src", &BTreeMap::new()), vec!["a"]);
        assert_eq!(idx.selecting("ns", "other", &yes), vec!["b"]);
        assert_eq!(idx.selecting("ns", "src", &yes), vec!["a", "b"]);
        assert!(idx.selecting("other", "src", &yes).is_empty());
        idx.delete("ns", "a");
        assert!(idx.selecting("ns", "src", &BTreeMap::new()).is_empty());
    }

    #[test]
    fn whole_secret_and_single_key_values() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b_U002f_c".to_string(), b"2".to_vec()),
        ]);
        let mut e = PushSecretData::default();
        assert_eq!(
            entry_value(&e, &data).unwrap(),
            br#"{"a":"1","b_U002f_c":"2"}"#
        );
        e.conversion_strategy = PushSecretConversionStrategy::ReverseUnicode;
        assert_eq!(entry_value(&e, &data).unwrap(), br#"{"a":"1","b/c":"2"}"#);
        e.match_.secret_key = Some("b/c".into());
        assert_eq!(entry_value(&e, &data).unwrap(), b"2");
        e.match_.secret_key = Some("zz".into());
        assert_eq!(
            entry_value(&e, &data).unwrap_err(),
            "secret key zz does not exist"
        );
        assert_eq!(reverse_unicode("x_U00zz_y_U0041_"), "x_U00zz_yA");
    }

    #[test]
    fn selector_strings() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"a": "b"},
            "matchExpressions": [{"key": "c", "operator": "In", "values": ["d", "e"]}, {"key": "f", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert_eq!(label_selector_string(&sel), "a=b,c in (d,e),!f");
    }
}
