//! The ClusterPushSecret controller: one PushSecret spec fanned out to every namespace chosen by
//! `namespaceSelectors` (ESO v2.9 semantics), run with [`run`] beside the other controllers. The
//! PushSecret controller then pushes each namespace's Secret.
//!
//! It follows the ClusterExternalSecret controller's design and shares its helpers
//! ([`crate::cluster_external_secret::selector_matches`], the owner-reference test):
//! - **Selection**: the selectors are ORed; none selects nothing; terminating namespaces are
//!   skipped; an invalid selector fails the whole selection (reported as namespace `unknown`,
//!   nothing created or deleted).
//! - **Watches, no polling**: ClusterPushSecrets, Namespaces (metadata only) and PushSecrets
//!   (metadata only). A namespace appearing, disappearing or changing labels wakes every
//!   ClusterPushSecret that selects it now or listed it before; a change to a created PushSecret
//!   wakes its owner; the deletion of a foreign PushSecret that blocked a namespace wakes the
//!   ClusterPushSecret. `refreshTime` (default 1h) re-evaluates anyway.
//! - **Writes**: server-side apply with ESO's controller owner reference (`ClusterPushSecret`,
//!   `external-secrets.io/v1alpha1`), so PushSecrets created by ESO are adopted in place; only
//!   where the cached object differs from what was last applied. A PushSecret of the same name
//!   without that owner reference is never touched and the namespace is listed in
//!   `status.failedNamespaces` (`push secret already exists in namespace`, ESO's reason).
//! - **Deletion** (as ESO, which has no finalizer on ClusterPushSecrets either): the garbage
//!   collector deletes the PushSecrets with their owner; each PushSecret's own finalizer then
//!   applies its `deletionPolicy`. A namespace that is no longer selected has its PushSecret
//!   deleted by the controller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eso_api::{
    ClusterPushSecret, ClusterPushSecretNamespaceFailure, ClusterPushSecretSpec,
    ClusterPushSecretStatus, ConditionStatus, GROUP, PUSH_SECRET_VERSION, PushSecret,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use crate::cluster_external_secret::{
    Applied, MSG_NAMESPACES_FAILED, NamespaceInfo, REASON_FAILED, REASON_PROVISIONED,
    SelectorError, UNKNOWN_NAMESPACE, controlled_by, hash_of, is_not_found, listed, namespace_info,
    selector_matches,
};
use crate::conditions;

/// The kind, as written in owner references.
pub const KIND: &str = "ClusterPushSecret";
/// Field manager of the PushSecrets written.
pub const FIELD_MANAGER: &str = "external-secrets-clusterpushsecret";
/// ESO's reason for a namespace holding a PushSecret that is not ours.
pub const MSG_EXISTS: &str = "push secret already exists in namespace";

/// Errors of a ClusterPushSecret reconcile.
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

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// Settings of the ClusterPushSecret controller (non-exhaustive: start from `default()` and
/// use the `with_*` setters).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CpsConfig {
    /// Re-evaluation interval when `refreshTime` is unset (one hour).
    pub default_refresh: Duration,
    /// PushSecrets applied or deleted at once within one reconcile.
    pub write_concurrency: usize,
}

impl Default for CpsConfig {
    fn default() -> Self {
        Self {
            default_refresh: Duration::from_secs(3600),
            write_concurrency: 8,
        }
    }
}

/// Whether a ClusterPushSecret's spec selects a namespace with `labels` (any selector matches).
pub fn selects(
    spec: &ClusterPushSecretSpec,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    for sel in &spec.namespace_selectors {
        if selector_matches(sel, labels)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The namespaces a ClusterPushSecret targets, sorted: every existing, non-terminating namespace
/// one of its selectors matches. An invalid selector fails the whole selection.
pub fn select_namespaces(
    spec: &ClusterPushSecretSpec,
    namespaces: &[NamespaceInfo],
) -> Result<BTreeSet<String>, SelectorError> {
    let mut out = BTreeSet::new();
    for ns in namespaces {
        if !ns.terminating && selects(spec, &ns.labels)? {
            out.insert(ns.name.clone());
        }
    }
    Ok(out)
}

/// The name of the PushSecrets a ClusterPushSecret creates.
pub fn push_secret_name(cps: &ClusterPushSecret) -> String {
    cps.spec
        .push_secret_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| cps.name_any())
}

/// Whether the owner references name the ClusterPushSecret `cps_name` as controller (ESO's
/// test: group, kind and name; the uid is not compared, so a recreated object adopts).
pub fn owned_by(
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    cps_name: &str,
) -> bool {
    controlled_by(refs, KIND, cps_name)
}

/// The PushSecret applied to `namespace` for `cps` (server-side apply body).
pub fn desired_push_secret(
    cps: &ClusterPushSecret,
    namespace: &str,
    name: &str,
) -> serde_json::Value {
    let meta = cps.spec.push_secret_metadata.clone().unwrap_or_default();
    let mut metadata = serde_json::json!({
        "name": name,
        "namespace": namespace,
        "ownerReferences": [{
            "apiVersion": format!("{GROUP}/{PUSH_SECRET_VERSION}"),
            "kind": KIND,
            "name": cps.name_any(),
            "uid": cps.uid().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if !meta.labels.is_empty() {
        metadata["labels"] = serde_json::json!(meta.labels);
    }
    if !meta.annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(meta.annotations);
    }
    serde_json::json!({
        "apiVersion": format!("{GROUP}/{PUSH_SECRET_VERSION}"),
        "kind": "PushSecret",
        "metadata": metadata,
        "spec": cps.spec.push_secret_spec,
    })
}

/// Everything a reconcile needs.
pub struct CpsContext {
    client: Client,
    config: CpsConfig,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    children: Store<PartialObjectMeta<PushSecret>>,
    applied: Mutex<HashMap<(String, String), Applied>>,
}

impl std::fmt::Debug for CpsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpsContext")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Reconcile one ClusterPushSecret.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<ClusterPushSecret>>,
    ctx: Arc<CpsContext>,
) -> Result<Action, Error> {
    if !listed(&ctx.namespaces) || !listed(&ctx.children) {
        return Err(Error::NotReady);
    }
    let api: Api<ClusterPushSecret> = Api::all(ctx.client.clone());
    let cps = match &guard.0 {
        Ok(c) => c,
        Err(e) => {
            let name = e.metadata.name.clone().unwrap_or_default();
            warn!(%name, error = %e, "ClusterPushSecret cannot be read");
            let patch = serde_json::json!({"status": {"conditions": [conditions::ready(
                ConditionStatus::False, "InvalidSpec", format!("invalid ClusterPushSecret: {e}"))]}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err("report an unreadable ClusterPushSecret"))?;
            return Ok(Action::await_change());
        }
    };
    let cps_name = cps.name_any();
    let owned_children = || -> Vec<(String, String)> {
        ctx.children
            .state()
            .iter()
            .filter(|c| owned_by(c.owner_references(), &cps_name))
            .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
            .collect()
    };
    if cps.metadata.deletion_timestamp.is_some() {
        // Being deleted (another finalizer holds it): remove the PushSecrets now.
        delete_all(&ctx, owned_children()).await;
        return Ok(Action::await_change());
    }

    let ps_name = push_secret_name(cps);
    let namespaces: Vec<NamespaceInfo> = ctx
        .namespaces
        .state()
        .iter()
        .map(|n| namespace_info(n))
        .collect();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut provisioned: Vec<String> = Vec::new();
    match select_namespaces(&cps.spec, &namespaces) {
        Err(e) => {
            failed.insert(UNKNOWN_NAMESPACE.to_string(), e.to_string());
            provisioned = cps
                .status
                .as_ref()
                .map(|s| s.provisioned_namespaces.clone())
                .unwrap_or_default();
        }
        Ok(targets) => {
            // Ours but no longer wanted: another name (pushSecretName changed) or a namespace
            // no longer selected.
            let outdated: Vec<(String, String)> = owned_children()
                .into_iter()
                .filter(|(ns, name)| *name != ps_name || !targets.contains(ns))
                .collect();
            for (ns, err) in delete_all(&ctx, outdated).await {
                failed.insert(ns, err);
            }
            let results = futures::stream::iter(targets.iter().cloned())
                .map(|ns| {
                    let ctx = ctx.clone();
                    let ps_name = ps_name.clone();
                    async move {
                        let r = provision(&ctx, cps, &ns, &ps_name).await;
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
    write_status(&api, cps, &ps_name, provisioned, failed).await?;
    let every = cps
        .spec
        .refresh_interval
        .as_ref()
        .map_or(Some(ctx.config.default_refresh), |_| {
            cps.spec.refresh_interval_duration()
        });
    Ok(every.map_or_else(Action::await_change, Action::requeue))
}

/// Delete PushSecrets we own; returns the namespaces where that failed, with the reason.
async fn delete_all(ctx: &CpsContext, items: Vec<(String, String)>) -> Vec<(String, String)> {
    futures::stream::iter(items)
        .map(|(ns, name)| async move {
            let api: Api<PushSecret> = Api::namespaced(ctx.client.clone(), &ns);
            let r = match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(format!(
                    "push secret in non matching namespace could not be deleted: {e}"
                )),
            };
            if r.is_ok() {
                debug!(namespace = %ns, %name, "deleted PushSecret no longer selected");
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

/// Make the PushSecret in `ns` match: skip when the cached object is ours and unchanged since
/// our last apply; refuse when it exists and is not ours.
async fn provision(
    ctx: &CpsContext,
    cps: &ClusterPushSecret,
    ns: &str,
    ps_name: &str,
) -> Result<(), String> {
    let key = (ns.to_string(), ps_name.to_string());
    let cached = ctx.children.get(&ObjectRef::new(ps_name).within(ns));
    if let Some(c) = &cached
        && !owned_by(c.owner_references(), &cps.name_any())
    {
        return Err(MSG_EXISTS.to_string());
    }
    let body = desired_push_secret(cps, ns, ps_name);
    let hash = hash_of(&body);
    if let Some(c) = &cached {
        let last = ctx.applied.lock().ok().and_then(|a| a.get(&key).copied());
        let meta = cps.spec.push_secret_metadata.clone().unwrap_or_default();
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
            .any(|r| Some(&r.uid) == cps.metadata.uid.as_ref());
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
    let api: Api<PushSecret> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .patch(
            ps_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(ps) => {
            if let Ok(mut a) = ctx.applied.lock() {
                a.insert(
                    key,
                    Applied {
                        generation: ps.metadata.generation,
                        hash,
                    },
                );
            }
            debug!(namespace = %ns, name = %ps_name, cps = %cps.name_any(), "applied PushSecret");
            Ok(())
        }
        Err(e) => Err(format!("could not create or update push secret: {e}")),
    }
}

async fn write_status(
    api: &Api<ClusterPushSecret>,
    cps: &ClusterPushSecret,
    ps_name: &str,
    provisioned: Vec<String>,
    failed: BTreeMap<String, String>,
) -> Result<(), Error> {
    let old = cps.status.clone().unwrap_or_default();
    let ready = if failed.is_empty() {
        conditions::ready(ConditionStatus::True, REASON_PROVISIONED, "")
    } else {
        conditions::ready(ConditionStatus::False, REASON_FAILED, MSG_NAMESPACES_FAILED)
    };
    let ready = eso_api::Condition {
        message: ready.message.filter(|m| !m.is_empty()),
        ..ready
    };
    let new = ClusterPushSecretStatus {
        push_secret_name: Some(ps_name.to_string()),
        failed_namespaces: failed
            .into_iter()
            .map(|(namespace, reason)| ClusterPushSecretNamespaceFailure {
                namespace,
                reason: Some(reason),
            })
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
        "pushSecretName": new.push_secret_name,
        "failedNamespaces": or_null(serde_json::json!(new.failed_namespaces), new.failed_namespaces.is_empty()),
        "provisionedNamespaces": or_null(serde_json::json!(new.provisioned_namespaces), new.provisioned_namespaces.is_empty()),
        "conditions": new.conditions,
    }});
    api.patch_status(
        &cps.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err("write the ClusterPushSecret status"))?;
    Ok(())
}

/// Retry policy: caches not ready, shortly; API errors, with a bounded delay.
pub fn error_policy(
    _obj: Arc<DeserializeGuard<ClusterPushSecret>>,
    error: &Error,
    _ctx: Arc<CpsContext>,
) -> Action {
    match error {
        Error::NotReady => Action::requeue(Duration::from_millis(500)),
        Error::Kube { .. } => {
            warn!(error = %error, "ClusterPushSecret reconcile failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// The ClusterPushSecrets a namespace event concerns: those that select it now, or list it in
/// their status (provisioned or failed) so a namespace that stopped matching is cleaned up.
fn concerned(
    store: &Store<DeserializeGuard<ClusterPushSecret>>,
    ns: &NamespaceInfo,
    gone: bool,
) -> Vec<ObjectRef<DeserializeGuard<ClusterPushSecret>>> {
    store
        .state()
        .iter()
        .filter_map(|g| {
            let cps = g.0.as_ref().ok()?;
            let listed = cps.status.as_ref().is_some_and(|s| {
                s.provisioned_namespaces.contains(&ns.name)
                    || s.failed_namespaces.iter().any(|f| f.namespace == ns.name)
            });
            // A bad selector counts as "may select" so the reconcile reports it.
            let selects = !gone && selects(&cps.spec, &ns.labels).unwrap_or(true);
            (listed || selects).then(|| ObjectRef::new(&cps.name_any()))
        })
        .collect()
}

/// Run the ClusterPushSecret controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: CpsConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (cps_store, cps_writer) = reflector::store::<DeserializeGuard<ClusterPushSecret>>();
    let cps_stream = watcher(
        Api::<DeserializeGuard<ClusterPushSecret>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|g: &mut DeserializeGuard<ClusterPushSecret>| {
        if let Ok(c) = &mut g.0 {
            c.metadata.managed_fields = None;
        }
    })
    .reflect(cps_writer)
    .applied_objects();

    let (ns_store, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let (wake_tx, wake_rx) =
        futures::channel::mpsc::unbounded::<ObjectRef<DeserializeGuard<ClusterPushSecret>>>();
    let ns_task = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|n: &mut PartialObjectMeta<Namespace>| n.metadata.managed_fields = None)
    .reflect(ns_writer)
    .for_each({
        let cps_store = cps_store.clone();
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
                for r in concerned(&cps_store, &namespace_info(n), gone) {
                    let _ = wake_tx.unbounded_send(r);
                }
            }
            futures::future::ready(())
        }
    });

    let (child_store, child_writer) = reflector::store::<PartialObjectMeta<PushSecret>>();
    let child_stream = watcher(
        Api::<PartialObjectMeta<PushSecret>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|e: &mut PartialObjectMeta<PushSecret>| e.metadata.managed_fields = None)
    .reflect(child_writer)
    .touched_objects();
    let cps_for_children = cps_store.clone();
    let ctx = Arc::new(CpsContext {
        client: client.clone(),
        config,
        namespaces: ns_store,
        children: child_store,
        applied: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_stream(cps_stream, cps_store)
        .watches_stream(child_stream, move |ps: PartialObjectMeta<PushSecret>| {
            let ns = ps.namespace().unwrap_or_default();
            let name = ps.name_any();
            let mut out: Vec<ObjectRef<DeserializeGuard<ClusterPushSecret>>> = ps
                .owner_references()
                .iter()
                .filter(|r| r.kind == KIND && r.api_version.split('/').next() == Some(GROUP))
                .map(|r| ObjectRef::new(&r.name))
                .collect();
            for g in cps_for_children.state() {
                if let Ok(c) = &g.0
                    && push_secret_name(c) == name
                    && c.status
                        .as_ref()
                        .is_some_and(|s| s.failed_namespaces.iter().any(|f| f.namespace == ns))
                {
                    out.push(ObjectRef::new(&c.name_any()));
                }
            }
            out
        })
        .reconcile_on(wake_rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "ClusterPushSecret controller event");
            }
        });
    tracing::info!("ClusterPushSecret controller started");
    tokio::select! {
        _ = controller => {},
        _ = ns_task => {},
    }
    tracing::info!("ClusterPushSecret controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ns(name: &str, kv: &[(&str, &str)], terminating: bool) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: labels(kv),
            terminating,
        }
    }

    fn sel(kv: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(kv)),
            match_expressions: None,
        }
    }

    #[test]
    fn selectors_are_ored_none_selects_nothing_terminating_skipped() {
        let all = vec![
            ns("a", &[("team", "x")], false),
            ns("b", &[("env", "prod")], false),
            ns("c", &[("team", "y")], false),
            ns("d", &[("team", "x")], true),
        ];
        let none = ClusterPushSecretSpec::default();
        assert!(
            select_namespaces(&none, &all)
                .unwrap_or_default()
                .is_empty()
        );
        let spec = ClusterPushSecretSpec {
            namespace_selectors: vec![sel(&[("team", "x")]), sel(&[("env", "prod")])],
            ..Default::default()
        };
        let got: Vec<String> = select_namespaces(&spec, &all)
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(got, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn a_bad_selector_fails_the_selection() {
        let bad = LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Bogus".into(),
                    values: None,
                },
            ]),
            match_labels: None,
        };
        let spec = ClusterPushSecretSpec {
            namespace_selectors: vec![bad],
            ..Default::default()
        };
        assert!(select_namespaces(&spec, &[ns("a", &[], false)]).is_err());
    }

    #[test]
    fn ownership_needs_a_cluster_push_secret_controller_reference() {
        let r = |kind: &str, name: &str| OwnerReference {
            api_version: "external-secrets.io/v1alpha1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        assert!(owned_by(&[r(KIND, "c")], "c"));
        assert!(!owned_by(&[r(KIND, "other")], "c"));
        // A ClusterExternalSecret of the same name does not own a PushSecret.
        assert!(!owned_by(&[r("ClusterExternalSecret", "c")], "c"));
    }

    #[test]
    fn desired_object_carries_owner_and_metadata() {
        let mut cps = ClusterPushSecret::new("db", ClusterPushSecretSpec::default());
        cps.metadata.uid = Some("uid-1".into());
        cps.spec.push_secret_metadata = Some(eso_api::PushSecretMetadata {
            labels: labels(&[("app", "db")]),
            annotations: labels(&[("note", "n")]),
        });
        assert_eq!(push_secret_name(&cps), "db");
        cps.spec.push_secret_name = Some("push".into());
        assert_eq!(push_secret_name(&cps), "push");
        let body = desired_push_secret(&cps, "ns1", "push");
        assert_eq!(body["apiVersion"], "external-secrets.io/v1alpha1");
        assert_eq!(body["kind"], "PushSecret");
        assert_eq!(body["metadata"]["namespace"], "ns1");
        assert_eq!(body["metadata"]["labels"]["app"], "db");
        assert_eq!(body["metadata"]["annotations"]["note"], "n");
        let owner = &body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["apiVersion"], "external-secrets.io/v1alpha1");
        assert_eq!(owner["kind"], KIND);
        assert_eq!(owner["uid"], "uid-1");
        assert_eq!(owner["controller"], true);
    }
}
