//! The ClusterExternalSecret controller: one ExternalSecret spec fanned out to every selected
//! namespace (ESO v2.9 semantics), run with [`run`] beside the other controllers.
//!
//! - **Selection**: `namespaces` (by name), `namespaceSelector` (deprecated) and every entry of
//!   `namespaceSelectors` are ORed ([`select_namespaces`]); terminating namespaces are skipped.
//! - **Watches, no polling**: ClusterExternalSecrets, Namespaces (metadata only) and
//!   ExternalSecrets (metadata only). A namespace that appears, disappears or changes labels
//!   wakes every ClusterExternalSecret that selects it now or provisioned it before, at once;
//!   so does a change to one of the created ExternalSecrets, or the deletion of a foreign
//!   ExternalSecret that blocked a namespace. `refreshTime` (default 1h) re-evaluates anyway.
//! - **Writes**: server-side apply of each ExternalSecret with ESO's controller owner reference
//!   (so ExternalSecrets created by ESO are adopted in place), only where the cached object
//!   differs from what was last applied (a reconcile over 200 unchanged namespaces makes no
//!   write). An ExternalSecret of the same name without that owner reference is never touched
//!   and the namespace is listed in `status.failedNamespaces`.
//! - **Deletion** (QUIRK, see docs/migrating-from-eso.md): no finalizer. The created
//!   ExternalSecrets carry a controller owner reference, so the garbage collector deletes them
//!   with the ClusterExternalSecret; a namespace that is no longer selected has its
//!   ExternalSecret deleted by the controller. ESO's own finalizers — on ClusterExternalSecrets
//!   (`externalsecrets.external-secrets.io/clusterexternalsecret-cleanup`) and on Namespaces
//!   (`externalsecrets.external-secrets.io/ces-<name>`) — are removed wherever they are seen,
//!   so an installation taken over from ESO can never leave a namespace stuck Terminating.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eso_api::{
    ClusterExternalSecret, ClusterExternalSecretNamespaceFailure, ClusterExternalSecretStatus,
    ConditionStatus, ExternalSecret, GROUP, VERSION, well_known::ANNOTATION_FORCE_SYNC,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::conditions;

/// The kind, as written in owner references.
pub const KIND: &str = "ClusterExternalSecret";
/// ESO's finalizer on ClusterExternalSecrets; removed, never added.
pub const ESO_CES_FINALIZER: &str =
    "externalsecrets.external-secrets.io/clusterexternalsecret-cleanup";
/// Prefix of ESO's per-ClusterExternalSecret finalizers on Namespaces; removed, never added.
pub const ESO_NAMESPACE_FINALIZER_PREFIX: &str = "externalsecrets.external-secrets.io/ces-";
/// Field manager of the ExternalSecrets written.
pub const FIELD_MANAGER: &str = "external-secrets-clusterexternalsecret";
/// ESO's reason for a namespace holding an ExternalSecret that is not ours.
pub const MSG_EXISTS: &str = "external secret already exists in namespace";
/// ESO's Ready=False message.
pub const MSG_NAMESPACES_FAILED: &str = "one or more namespaces failed";
/// Ready reason: every selected namespace holds the ExternalSecret.
pub const REASON_PROVISIONED: &str = "Provisioned";
/// Ready reason: at least one namespace failed.
pub const REASON_FAILED: &str = "NamespacesFailed";
/// The namespace name ESO reports when the selection itself fails (a bad selector).
pub const UNKNOWN_NAMESPACE: &str = "unknown";

/// Errors of a ClusterExternalSecret reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed while trying to {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The caches have not listed yet; retried shortly.
    #[error("caches not synced yet")]
    NotReady,
}

/// A label selector that cannot be evaluated (ESO fails the whole selection for it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to convert label selector: {0}")]
pub struct SelectorError(String);

/// Settings of the ClusterExternalSecret controller (non-exhaustive: start from `default()`
/// and use the `with_*` setters).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CesConfig {
    /// Re-evaluation interval when `refreshTime` is unset (ESO: one hour).
    pub default_refresh: Duration,
    /// ExternalSecrets applied or deleted at once within one reconcile.
    pub write_concurrency: usize,
}

impl Default for CesConfig {
    fn default() -> Self {
        Self {
            default_refresh: Duration::from_secs(3600),
            write_concurrency: 8,
        }
    }
}

/// Whether `labels` match a Kubernetes label selector (`matchLabels` and `matchExpressions`
/// ANDed; an empty selector matches everything). An unknown operator, or `In`/`NotIn` without
/// values, is an error, as in Kubernetes.
pub fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    for e in sel.match_expressions.iter().flatten() {
        let v = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError(format!(
                    "key {:?}: operator {} needs at least one value",
                    e.key, e.operator
                )));
            }
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError(format!(
                    "key {:?}: operator {} takes no values",
                    e.key, e.operator
                )));
            }
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            other => {
                return Err(SelectorError(format!(
                    "key {:?}: {other:?} is not a valid label selector operator",
                    e.key
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v)))
}

/// Whether a ClusterExternalSecret's spec selects the namespace `name` with `labels`: by name
/// (`namespaces`), or by any selector (`namespaceSelector`, `namespaceSelectors`).
pub fn selects(
    spec: &eso_api::ClusterExternalSecretSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    if spec.namespaces.iter().any(|n| n == name) {
        return Ok(true);
    }
    for sel in spec
        .namespace_selector
        .iter()
        .chain(spec.namespace_selectors.iter())
    {
        if selector_matches(sel, labels)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One namespace as the selection sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Being deleted (never provisioned).
    pub terminating: bool,
}

/// The namespaces a ClusterExternalSecret targets, sorted: every existing, non-terminating
/// namespace it selects. A named namespace that does not exist is not targeted (as in ESO,
/// which lists namespaces by their `kubernetes.io/metadata.name` label). An invalid selector
/// fails the whole selection.
pub fn select_namespaces(
    spec: &eso_api::ClusterExternalSecretSpec,
    namespaces: &[NamespaceInfo],
) -> Result<BTreeSet<String>, SelectorError> {
    let mut out = BTreeSet::new();
    for ns in namespaces {
        if !ns.terminating && selects(spec, &ns.name, &ns.labels)? {
            out.insert(ns.name.clone());
        }
    }
    Ok(out)
}

/// The name of the ExternalSecrets a ClusterExternalSecret creates.
pub fn external_secret_name(ces: &ClusterExternalSecret) -> String {
    ces.spec
        .external_secret_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ces.name_any())
}

/// Whether the owner references name the ClusterExternalSecret `ces_name` as controller (ESO's
/// test: group, kind and name; the uid is not compared, so a recreated object adopts).
pub fn owned_by(refs: &[OwnerReference], ces_name: &str) -> bool {
    controlled_by(refs, KIND, ces_name)
}

/// Whether the owner references name the `kind` (of group `external-secrets.io`, any version)
/// called `name` as controller. Shared by the ClusterExternalSecret and ClusterPushSecret
/// controllers.
pub(crate) fn controlled_by(refs: &[OwnerReference], kind: &str, name: &str) -> bool {
    refs.iter().any(|r| {
        r.controller == Some(true)
            && r.kind == kind
            && r.api_version.split('/').next() == Some(GROUP)
            && r.name == name
    })
}

/// The ExternalSecret applied to `namespace` for `ces` (server-side apply body).
pub fn desired_external_secret(
    ces: &ClusterExternalSecret,
    namespace: &str,
    name: &str,
) -> serde_json::Value {
    let meta = ces
        .spec
        .external_secret_metadata
        .clone()
        .unwrap_or_default();
    let mut annotations = meta.annotations;
    if let Some(v) = ces.annotations().get(ANNOTATION_FORCE_SYNC) {
        annotations.insert(ANNOTATION_FORCE_SYNC.to_string(), v.clone());
    }
    let mut metadata = serde_json::json!({
        "name": name,
        "namespace": namespace,
        "ownerReferences": [{
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "name": ces.name_any(),
            "uid": ces.uid().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if !meta.labels.is_empty() {
        metadata["labels"] = serde_json::json!(meta.labels);
    }
    if !annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(annotations);
    }
    serde_json::json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "ExternalSecret",
        "metadata": metadata,
        "spec": ces.spec.external_secret_spec,
    })
}

pub(crate) fn hash_of(v: &serde_json::Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// What was last applied to one ExternalSecret: its generation right after, and the body's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) generation: Option<i64>,
    pub(crate) hash: u64,
}

/// Everything a reconcile needs.
pub struct CesContext {
    client: Client,
    config: CesConfig,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    children: Store<PartialObjectMeta<ExternalSecret>>,
    applied: Mutex<HashMap<(String, String), Applied>>,
}

impl std::fmt::Debug for CesContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CesContext")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn listed<K>(s: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    use futures::FutureExt as _;
    s.wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

pub(crate) fn namespace_info(n: &PartialObjectMeta<Namespace>) -> NamespaceInfo {
    NamespaceInfo {
        name: n.name_any(),
        labels: n.labels().clone(),
        terminating: n.metadata.deletion_timestamp.is_some(),
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Remove every finalizer matching `drop` from an object with a merge patch guarded by its
/// resourceVersion (a concurrent change makes it fail and the next event retries).
async fn remove_finalizers<K>(
    api: &Api<K>,
    obj: &K,
    drop: impl Fn(&str) -> bool,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let finalizers = obj.meta().finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| drop(f)) {
        return Ok(false);
    }
    let keep: Vec<String> = finalizers.into_iter().filter(|f| !drop(f)).collect();
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": obj.meta().resource_version, "finalizers": keep}
    });
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Remove ESO's per-ClusterExternalSecret finalizers from a namespace (every one of them: this
/// operator cleans up through owner references, and an ESO finalizer left behind would keep the
/// namespace Terminating forever once ESO is gone).
async fn clear_namespace_finalizers(client: &Client, ns: &PartialObjectMeta<Namespace>) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    match remove_finalizers(&api, ns, |f| f.starts_with(ESO_NAMESPACE_FINALIZER_PREFIX)).await {
        Ok(true) => {
            info!(namespace = %ns.name_any(), "removed ESO's ClusterExternalSecret finalizers from the namespace")
        }
        Ok(false) => {}
        Err(e) => {
            warn!(namespace = %ns.name_any(), error = %e, "could not remove ESO's ClusterExternalSecret finalizers from the namespace")
        }
    }
}

fn has_eso_namespace_finalizer(ns: &PartialObjectMeta<Namespace>) -> bool {
    ns.finalizers()
        .iter()
        .any(|f| f.starts_with(ESO_NAMESPACE_FINALIZER_PREFIX))
}

/// Reconcile one ClusterExternalSecret.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<ClusterExternalSecret>>,
    ctx: Arc<CesContext>,
) -> Result<Action, Error> {
    if !listed(&ctx.namespaces) || !listed(&ctx.children) {
        return Err(Error::NotReady);
    }
    let api: Api<ClusterExternalSecret> = Api::all(ctx.client.clone());
    let ces = match &guard.0 {
        Ok(c) => c,
        Err(e) => {
            // Not readable as a ClusterExternalSecret: say so in status rather than ignore it.
            let name = e.metadata.name.clone().unwrap_or_default();
            warn!(%name, error = %e, "ClusterExternalSecret cannot be read");
            let patch = serde_json::json!({"status": {"conditions": [conditions::ready(
                ConditionStatus::False, "InvalidSpec", format!("invalid ClusterExternalSecret: {e}"))]}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err("report an unreadable ClusterExternalSecret"))?;
            return Ok(Action::await_change());
        }
    };
    let ces_name = ces.name_any();
    // ESO's finalizer: removed, so deleting a ClusterExternalSecret created under ESO never hangs.
    remove_finalizers(&api, ces, |f| f == ESO_CES_FINALIZER)
        .await
        .map_err(kube_err("remove ESO's finalizer"))?;
    // ESO's namespace finalizers for this ClusterExternalSecret.
    for ns in ctx.namespaces.state() {
        if has_eso_namespace_finalizer(&ns) {
            clear_namespace_finalizers(&ctx.client, &ns).await;
        }
    }
    let owned_children = |es_name: Option<&str>| -> Vec<(String, String)> {
        ctx.children
            .state()
            .iter()
            .filter(|c| owned_by(c.owner_references(), &ces_name))
            .filter(|c| es_name.is_none_or(|n| c.name_any() == n))
            .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
            .collect()
    };
    if ces.metadata.deletion_timestamp.is_some() {
        // Being deleted (another finalizer holds it): remove the ExternalSecrets now rather
        // than wait for the garbage collector.
        let gone = owned_children(None);
        delete_all(&ctx, gone).await;
        return Ok(Action::await_change());
    }

    let es_name = external_secret_name(ces);
    let namespaces: Vec<NamespaceInfo> = ctx
        .namespaces
        .state()
        .iter()
        .map(|n| namespace_info(n))
        .collect();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut provisioned: Vec<String> = Vec::new();
    match select_namespaces(&ces.spec, &namespaces) {
        Err(e) => {
            // As ESO: the whole selection fails, nothing is created or deleted.
            failed.insert(UNKNOWN_NAMESPACE.to_string(), e.to_string());
            provisioned = ces
                .status
                .as_ref()
                .map(|s| s.provisioned_namespaces.clone())
                .unwrap_or_default();
        }
        Ok(targets) => {
            // Ours, but no longer wanted: another name (externalSecretName changed) or a
            // namespace no longer selected.
            let outdated: Vec<(String, String)> = owned_children(None)
                .into_iter()
                .filter(|(ns, name)| *name != es_name || !targets.contains(ns))
                .collect();
            for (ns, err) in delete_all(&ctx, outdated).await {
                failed.insert(ns, err);
            }
            let results = futures::stream::iter(targets.iter().cloned())
                .map(|ns| {
                    let ctx = ctx.clone();
                    let es_name = es_name.clone();
                    async move {
                        let r = provision(&ctx, ces, &ns, &es_name).await;
                        (ns, r)
                    }
                })
                .buffer_unordered(ctx.config.write_concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
            for (ns, r) in results {
                match r {
                    Ok(()) => provisioned.push(ns),
                    Err(reason) => {
                        failed.insert(ns, reason);
                    }
                }
            }
        }
    }
    provisioned.sort();
    provisioned.dedup();
    write_status(&api, ces, &es_name, provisioned, failed).await?;
    let every = ces
        .spec
        .refresh_interval
        .as_ref()
        .map_or(Some(ctx.config.default_refresh), |_| {
            ces.spec.refresh_interval_duration()
        });
    Ok(every.map_or_else(Action::await_change, Action::requeue))
}

/// Delete ExternalSecrets we own; returns the namespaces where that failed, with the reason.
async fn delete_all(ctx: &CesContext, items: Vec<(String, String)>) -> Vec<(String, String)> {
    futures::stream::iter(items)
        .map(|(ns, name)| async move {
            let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), &ns);
            let r = match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(format!(
                    "external secret in non matching namespace could not be deleted: {e}"
                )),
            };
            if r.is_ok() {
                debug!(namespace = %ns, %name, "deleted ExternalSecret no longer selected");
                if let Ok(mut a) = ctx.applied.lock() {
                    a.remove(&(ns.clone(), name.clone()));
                }
            }
            (ns, r)
        })
        .buffer_unordered(ctx.config.write_concurrency.max(1))
        .filter_map(|(ns, r)| async move { r.err().map(|e| (ns, e)) })
        .collect()
        .await
}

/// Make the ExternalSecret in `ns` match: skip when the cached object is ours and unchanged
/// since our last apply; refuse when it exists and is not ours.
async fn provision(
    ctx: &CesContext,
    ces: &ClusterExternalSecret,
    ns: &str,
    es_name: &str,
) -> Result<(), String> {
    let ces_name = ces.name_any();
    let key = (ns.to_string(), es_name.to_string());
    let cached = ctx.children.get(&ObjectRef::new(es_name).within(ns));
    if let Some(c) = &cached
        && !owned_by(c.owner_references(), &ces_name)
    {
        return Err(MSG_EXISTS.to_string());
    }
    let body = desired_external_secret(ces, ns, es_name);
    let hash = hash_of(&body);
    if let Some(c) = &cached {
        let last = ctx.applied.lock().ok().and_then(|a| a.get(&key).copied());
        let meta = ces
            .spec
            .external_secret_metadata
            .clone()
            .unwrap_or_default();
        let labels_ok = meta
            .labels
            .iter()
            .all(|(k, v)| c.labels().get(k) == Some(v));
        let annotations_ok = meta
            .annotations
            .iter()
            .all(|(k, v)| c.annotations().get(k) == Some(v));
        let uid_ok = c
            .owner_references()
            .iter()
            .any(|r| Some(&r.uid) == ces.metadata.uid.as_ref());
        if last
            == Some(Applied {
                generation: c.metadata.generation,
                hash,
            })
            && labels_ok
            && annotations_ok
            && uid_ok
        {
            return Ok(());
        }
    }
    let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .patch(
            es_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(es) => {
            if let Ok(mut a) = ctx.applied.lock() {
                a.insert(
                    key,
                    Applied {
                        generation: es.metadata.generation,
                        hash,
                    },
                );
            }
            debug!(namespace = %ns, name = %es_name, ces = %ces_name, "applied ExternalSecret");
            Ok(())
        }
        Err(e) => Err(format!("could not create or update ExternalSecret: {e}")),
    }
}

async fn write_status(
    api: &Api<ClusterExternalSecret>,
    ces: &ClusterExternalSecret,
    es_name: &str,
    provisioned: Vec<String>,
    failed: BTreeMap<String, String>,
) -> Result<(), Error> {
    let old = ces.status.clone().unwrap_or_default();
    let ready = if failed.is_empty() {
        conditions::ready(ConditionStatus::True, REASON_PROVISIONED, "")
    } else {
        conditions::ready(ConditionStatus::False, REASON_FAILED, MSG_NAMESPACES_FAILED)
    };
    let ready = eso_api::Condition {
        message: ready.message.filter(|m| !m.is_empty()),
        ..ready
    };
    let new = ClusterExternalSecretStatus {
        external_secret_name: Some(es_name.to_string()),
        failed_namespaces: failed
            .into_iter()
            .map(
                |(namespace, reason)| ClusterExternalSecretNamespaceFailure {
                    namespace,
                    reason: Some(reason),
                },
            )
            .collect(),
        provisioned_namespaces: provisioned,
        conditions: conditions::set_condition(
            &old.conditions,
            ready,
            k8s_openapi::jiff::Timestamp::now(),
        ),
    };
    if new == old {
        return Ok(());
    }
    let or_null = |v: serde_json::Value, empty: bool| {
        if empty { serde_json::Value::Null } else { v }
    };
    let patch = serde_json::json!({"status": {
        "externalSecretName": new.external_secret_name,
        "failedNamespaces": or_null(serde_json::json!(new.failed_namespaces), new.failed_namespaces.is_empty()),
        "provisionedNamespaces": or_null(serde_json::json!(new.provisioned_namespaces), new.provisioned_namespaces.is_empty()),
        "conditions": new.conditions,
    }});
    api.patch_status(
        &ces.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err("write the ClusterExternalSecret status"))?;
    Ok(())
}

/// Retry policy: caches not ready, shortly; API errors, with a bounded delay.
pub fn error_policy(
    _obj: Arc<DeserializeGuard<ClusterExternalSecret>>,
    error: &Error,
    _ctx: Arc<CesContext>,
) -> Action {
    match error {
        Error::NotReady => Action::requeue(Duration::from_millis(500)),
        Error::Kube { .. } => {
            warn!(error = %error, "ClusterExternalSecret reconcile failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// The ClusterExternalSecrets a namespace event concerns: those that select it now, or list it
/// in their status (provisioned or failed) so a namespace that stopped matching is cleaned up.
fn concerned(
    ces_store: &Store<DeserializeGuard<ClusterExternalSecret>>,
    ns: &NamespaceInfo,
    gone: bool,
) -> Vec<ObjectRef<DeserializeGuard<ClusterExternalSecret>>> {
    ces_store
        .state()
        .iter()
        .filter_map(|g| {
            let ces = g.0.as_ref().ok()?;
            let listed = ces.status.as_ref().is_some_and(|s| {
                s.provisioned_namespaces.contains(&ns.name)
                    || s.failed_namespaces.iter().any(|f| f.namespace == ns.name)
            });
            // A bad selector counts as "may select" so the reconcile reports it.
            let selects = !gone && selects(&ces.spec, &ns.name, &ns.labels).unwrap_or(true);
            (listed || selects).then(|| ObjectRef::new(&ces.name_any()))
        })
        .collect()
}

/// Run the ClusterExternalSecret controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: CesConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (ces_store, ces_writer) = reflector::store::<DeserializeGuard<ClusterExternalSecret>>();
    let ces_stream = watcher(
        Api::<DeserializeGuard<ClusterExternalSecret>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|g: &mut DeserializeGuard<ClusterExternalSecret>| {
        if let Ok(c) = &mut g.0 {
            c.metadata.managed_fields = None;
        }
    })
    .reflect(ces_writer)
    .applied_objects();

    // Namespaces, metadata only: every event is mapped to the ClusterExternalSecrets concerned.
    let (ns_store, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let (wake_tx, wake_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<DeserializeGuard<ClusterExternalSecret>>>();
    let (fin_tx, mut fin_rx) = futures::channel::mpsc::unbounded::<PartialObjectMeta<Namespace>>();
    let ns_task = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|n: &mut PartialObjectMeta<Namespace>| n.metadata.managed_fields = None)
    .reflect(ns_writer)
    .for_each({
        let ces_store = ces_store.clone();
        move |ev| {
            let (n, gone) = match &ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => (Some(n), false),
                Ok(watcher::Event::Delete(n)) => (Some(n), true),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => (None, false),
                Err(e) => {
                    warn!(error = %e, "namespace watch");
                    (None, false)
                }
            };
            if let Some(n) = n {
                if !gone && has_eso_namespace_finalizer(n) {
                    let _ = fin_tx.unbounded_send(n.clone());
                }
                for r in concerned(&ces_store, &namespace_info(n), gone) {
                    let _ = wake_tx.unbounded_send(r);
                }
            }
            futures::future::ready(())
        }
    });
    let fin_task = {
        let client = client.clone();
        async move {
            while let Some(n) = fin_rx.next().await {
                clear_namespace_finalizers(&client, &n).await;
            }
        }
    };

    // Created ExternalSecrets, metadata only (owner, labels, generation): a change to one wakes
    // its owner; the deletion of a foreign one wakes the ClusterExternalSecret it blocked.
    let (child_store, child_writer) = reflector::store::<PartialObjectMeta<ExternalSecret>>();
    let child_stream = watcher(
        Api::<PartialObjectMeta<ExternalSecret>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|e: &mut PartialObjectMeta<ExternalSecret>| e.metadata.managed_fields = None)
    .reflect(child_writer)
    .touched_objects();
    let ces_for_children = ces_store.clone();
    let ctx = Arc::new(CesContext {
        client: client.clone(),
        config,
        namespaces: ns_store,
        children: child_store,
        applied: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_stream(ces_stream, ces_store)
        .watches_stream(
            child_stream,
            move |es: PartialObjectMeta<ExternalSecret>| {
                let ns = es.namespace().unwrap_or_default();
                let name = es.name_any();
                let mut out: Vec<ObjectRef<DeserializeGuard<ClusterExternalSecret>>> = es
                    .owner_references()
                    .iter()
                    .filter(|r| r.kind == KIND && r.api_version.split('/').next() == Some(GROUP))
                    .map(|r| ObjectRef::new(&r.name))
                    .collect();
                for g in ces_for_children.state() {
                    if let Ok(c) = &g.0
                        && external_secret_name(c) == name
                        && c.status
                            .as_ref()
                            .is_some_and(|s| s.failed_namespaces.iter().any(|f| f.namespace == ns))
                    {
                        out.push(ObjectRef::new(&c.name_any()));
                    }
                }
                out
            },
        )
        .reconcile_on(wake_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "ClusterExternalSecret controller event");
            }
        });
    info!("ClusterExternalSecret controller started");
    tokio::select! {
        _ = controller => {},
        _ = ns_task => {},
        _ = fin_task => {},
    }
    info!("ClusterExternalSecret controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ns(name: &str, kv: &[(&str, &str)]) -> NamespaceInfo {
        let mut l = labels(kv);
        l.insert("kubernetes.io/metadata.name".into(), name.into());
        NamespaceInfo {
            name: name.into(),
            labels: l,
            terminating: false,
        }
    }

    fn sel(kv: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(kv)),
            match_expressions: None,
        }
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    fn names(s: &BTreeSet<String>) -> Vec<&str> {
        s.iter().map(String::as_str).collect()
    }

    fn all() -> Vec<NamespaceInfo> {
        vec![
            ns("a", &[("team", "x")]),
            ns("b", &[("team", "y")]),
            ns("c", &[("team", "x"), ("env", "prod")]),
            NamespaceInfo {
                terminating: true,
                ..ns("d", &[("team", "x")])
            },
        ]
    }

    #[test]
    fn nothing_selected_without_selectors_or_names() {
        let spec = eso_api::ClusterExternalSecretSpec::default();
        assert!(
            select_namespaces(&spec, &all())
                .unwrap_or_default()
                .is_empty()
        );
    }

    #[test]
    fn names_selectors_and_deprecated_selector_are_ored() {
        let spec = eso_api::ClusterExternalSecretSpec {
            namespaces: vec!["b".into(), "missing".into()],
            namespace_selectors: vec![sel(&[("env", "prod")])],
            namespace_selector: Some(sel(&[("team", "x")])),
            ..Default::default()
        };
        let got = select_namespaces(&spec, &all()).unwrap_or_default();
        // "d" is terminating; "missing" does not exist.
        assert_eq!(names(&got), vec!["a", "b", "c"]);
    }

    #[test]
    fn selectors_and_match_labels_with_expressions() {
        let mut s = sel(&[("team", "x")]);
        s.match_expressions = expr("env", "NotIn", &["prod"]).match_expressions;
        let spec = eso_api::ClusterExternalSecretSpec {
            namespace_selectors: vec![s],
            ..Default::default()
        };
        assert_eq!(
            names(&select_namespaces(&spec, &all()).unwrap_or_default()),
            vec!["a"]
        );
    }

    #[test]
    fn empty_selector_matches_every_live_namespace() {
        let spec = eso_api::ClusterExternalSecretSpec {
            namespace_selectors: vec![LabelSelector::default()],
            ..Default::default()
        };
        assert_eq!(
            names(&select_namespaces(&spec, &all()).unwrap_or_default()),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn expression_operators() {
        let l = labels(&[("k", "v")]);
        let m = |s: LabelSelector| selector_matches(&s, &l);
        assert_eq!(m(expr("k", "In", &["v", "w"])), Ok(true));
        assert_eq!(m(expr("k", "In", &["w"])), Ok(false));
        assert_eq!(m(expr("k", "NotIn", &["w"])), Ok(true));
        assert_eq!(m(expr("z", "NotIn", &["w"])), Ok(true));
        assert_eq!(m(expr("k", "Exists", &[])), Ok(true));
        assert_eq!(m(expr("z", "Exists", &[])), Ok(false));
        assert_eq!(m(expr("z", "DoesNotExist", &[])), Ok(true));
        assert!(m(expr("k", "Equals", &["v"])).is_err());
        assert!(m(expr("k", "In", &[])).is_err());
        assert!(m(expr("k", "Exists", &["v"])).is_err());
    }

    #[test]
    fn a_bad_selector_fails_the_whole_selection() {
        let spec = eso_api::ClusterExternalSecretSpec {
            namespaces: vec!["a".into()],
            namespace_selectors: vec![expr("k", "Bogus", &["v"])],
            ..Default::default()
        };
        // "a" is chosen by name before the selector is looked at, but "b" needs the selector.
        assert!(select_namespaces(&spec, &all()).is_err());
    }

    #[test]
    fn ownership_is_esos_controller_reference_test() {
        let r = |api: &str, kind: &str, name: &str, controller: Option<bool>| OwnerReference {
            api_version: api.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller,
            block_owner_deletion: None,
        };
        assert!(owned_by(
            &[r("external-secrets.io/v1", KIND, "c", Some(true))],
            "c"
        ));
        // v1beta1 (ESO before v1) still counts.
        assert!(owned_by(
            &[r("external-secrets.io/v1beta1", KIND, "c", Some(true))],
            "c"
        ));
        assert!(!owned_by(
            &[r("external-secrets.io/v1", KIND, "c", None)],
            "c"
        ));
        assert!(!owned_by(
            &[r("external-secrets.io/v1", KIND, "other", Some(true))],
            "c"
        ));
        assert!(!owned_by(
            &[r("example.com/v1", KIND, "c", Some(true))],
            "c"
        ));
        assert!(!owned_by(&[], "c"));
    }

    #[test]
    fn desired_object_carries_owner_metadata_and_force_sync() {
        let mut ces =
            ClusterExternalSecret::new("db", eso_api::ClusterExternalSecretSpec::default());
        ces.metadata.uid = Some("uid-1".into());
        ces.metadata.annotations = Some(labels(&[(ANNOTATION_FORCE_SYNC, "t1"), ("other", "x")]));
        ces.spec.external_secret_metadata = Some(eso_api::ExternalSecretMetadata {
            labels: labels(&[("app", "db")]),
            annotations: labels(&[("note", "n")]),
        });
        ces.spec.external_secret_name = Some("creds".into());
        assert_eq!(external_secret_name(&ces), "creds");
        let body = desired_external_secret(&ces, "ns1", "creds");
        assert_eq!(body["metadata"]["namespace"], "ns1");
        assert_eq!(body["metadata"]["labels"]["app"], "db");
        assert_eq!(body["metadata"]["annotations"]["note"], "n");
        assert_eq!(body["metadata"]["annotations"][ANNOTATION_FORCE_SYNC], "t1");
        assert!(body["metadata"]["annotations"].get("other").is_none());
        let owner = &body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], KIND);
        assert_eq!(owner["uid"], "uid-1");
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
        ces.spec.external_secret_name = None;
        assert_eq!(external_secret_name(&ces), "db");
    }
}
