//! SecretStore and ClusterSecretStore: resolution for ExternalSecrets (namespace conditions,
//! controller class, readiness gate) and the store controllers (a Ready condition that proves
//! access).

use std::sync::Arc;
use std::time::Duration;

use eso_api::{
    ClusterSecretStore, ClusterSecretStoreCondition, ConditionStatus, ExternalSecret, SecretStore,
    SecretStoreSpec, SecretStoreStatus, StoreKind, well_known::CONDITION_READY,
};
use eso_mapping::StoreRef;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use crate::conditions::*;
use crate::hub::{FailureClass, FetchFailure, StoreContext, Validation};
use crate::{Context, Error};

/// Providers this operator implements.
pub const SUPPORTED_PROVIDERS: &[&str] = &["aws", "fake"];

/// Whether the operator handles this store (controller class).
pub fn store_class_matches(spec: &SecretStoreSpec, class: &str) -> bool {
    match spec.controller.as_deref() {
        None | Some("") => true,
        Some(c) => c == class,
    }
}

/// ESO: an ExternalSecret is skipped when any store it references has another controller class.
pub(crate) fn class_matches(es: &ExternalSecret, ctx: &Context) -> bool {
    let ns = es.namespace().unwrap_or_default();
    crate::external_secret::referenced_stores(es)
        .iter()
        .all(|r| {
            lookup(ctx, &ns, r)
                .is_none_or(|(spec, ..)| store_class_matches(&spec, &ctx.config.controller_class))
        })
}

type Found = (
    Arc<SecretStoreSpec>,
    String,
    i64,
    Option<String>,
    Vec<eso_api::Condition>,
);

fn lookup(ctx: &Context, ns: &str, r: &StoreRef) -> Option<Found> {
    match r.kind {
        StoreKind::SecretStore => {
            let s = ctx.stores.get(&ObjectRef::new(&r.name).within(ns))?;
            let s = s.0.as_ref().ok()?;
            Some((
                Arc::new(s.spec.clone()),
                s.uid().unwrap_or_default(),
                s.metadata.generation.unwrap_or(0),
                Some(ns.to_string()),
                s.status.clone().unwrap_or_default().conditions,
            ))
        }
        StoreKind::ClusterSecretStore => {
            let s = ctx.cluster_stores.get(&ObjectRef::new(&r.name))?;
            let s = s.0.as_ref().ok()?;
            Some((
                Arc::new(s.spec.store.clone()),
                s.uid().unwrap_or_default(),
                s.metadata.generation.unwrap_or(0),
                None,
                s.status.clone().unwrap_or_default().conditions,
            ))
        }
    }
}

/// Resolve the store an ExternalSecret uses, applying ESO's rules: it must exist, its provider
/// must be supported, a ClusterSecretStore must admit the namespace, and (flood gate) a store
/// whose Ready condition is False is not used.
pub(crate) fn resolve_for(
    es: &ExternalSecret,
    ns: &str,
    r: &StoreRef,
    ctx: &Context,
) -> Result<StoreContext, FetchFailure> {
    let _ = es;
    if r.kind == StoreKind::ClusterSecretStore && !ctx.config.enable_cluster_stores {
        // ESO skips such an ExternalSecret silently (empty status); say why instead.
        return Err(FetchFailure::new(
            FailureClass::InvalidConfig,
            cluster_stores_disabled(&r.name, ns, ctx.config.namespace.is_some()),
        ));
    }
    let Some((spec, uid, generation, namespace, conditions)) = lookup(ctx, ns, r) else {
        return Err(FetchFailure::new(
            FailureClass::InvalidConfig,
            format!("{} {:?} not found", r.kind.as_str(), r.name),
        ));
    };
    if r.kind == StoreKind::ClusterSecretStore && !namespace_allowed(&spec.conditions, ns, ctx) {
        return Err(FetchFailure::new(
            FailureClass::InvalidConfig,
            format!(
                "using cluster store {:?} is not allowed from namespace {ns:?}: denied by spec.condition",
                r.name
            ),
        ));
    }
    let provider = spec.provider.kind_name().unwrap_or("");
    if !SUPPORTED_PROVIDERS.contains(&provider) {
        return Err(FetchFailure::new(
            FailureClass::Unsupported,
            format!(
                "{} {:?} uses provider {provider:?}, which this operator does not support (supported: aws, fake)",
                r.kind.as_str(),
                r.name
            ),
        ));
    }
    // ESO's flood gate: a store is used only once its Ready condition is True. A store not yet
    // validated (no condition) waits too; its validation writes the condition and the store
    // watch wakes this ExternalSecret.
    if ctx.config.flood_gate
        && let Err(why) = store_usable(&conditions)
    {
        return Err(FetchFailure::new(
            FailureClass::Unavailable,
            format!("{} {:?} is not ready: {why}", r.kind.as_str(), r.name),
        ));
    }
    Ok(StoreContext {
        kind: r.kind,
        name: r.name.clone(),
        namespace,
        uid,
        generation,
        spec,
    })
}

/// Whether every ClusterSecretStore the ExternalSecret references (and the operator knows)
/// admits its namespace. A cheap check made at every reconcile.
pub(crate) fn cluster_stores_admit(es: &ExternalSecret, ns: &str, ctx: &Context) -> bool {
    crate::external_secret::referenced_stores(es)
        .iter()
        .filter(|r| r.kind == StoreKind::ClusterSecretStore)
        .all(|r| {
            lookup(ctx, ns, r).is_none_or(|(spec, ..)| namespace_allowed(&spec.conditions, ns, ctx))
        })
}

/// ESO's flood gate: a store may be used only when its Ready condition is True (not False, not
/// Unknown, not absent). `Err` carries why, for the ExternalSecret's condition.
pub fn store_usable(conditions: &[eso_api::Condition]) -> Result<(), String> {
    match get_ready(conditions) {
        Some(c) if c.status == ConditionStatus::True => Ok(()),
        Some(c) => Err(c
            .message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("Ready is {}", c.status.as_str()))),
        None => Err("not validated yet".to_string()),
    }
}

/// Why a ClusterSecretStore reference is refused when ClusterSecretStores are disabled, and
/// what to do about it.
pub fn cluster_stores_disabled(store: &str, ns: &str, namespace_scoped: bool) -> String {
    let why = if namespace_scoped {
        "this operator is namespace-scoped and does not read ClusterSecretStores \
         (--enable-cluster-store-reconciler=false; the Helm chart sets it with scopedRBAC: true)"
    } else {
        "this operator runs with --enable-cluster-store-reconciler=false"
    };
    format!(
        "ClusterSecretStore {store:?} cannot be used: {why}; reference a SecretStore in namespace {ns:?} instead"
    )
}

/// ESO's ClusterSecretStore namespace conditions: no conditions admit every namespace; otherwise
/// any condition must match, and within one, the selector, names and regexes are ORed.
pub(crate) fn namespace_allowed(
    conditions: &[ClusterSecretStoreCondition],
    ns: &str,
    ctx: &Context,
) -> bool {
    if conditions.is_empty() {
        return true;
    }
    let labels = ctx
        .namespaces
        .get(&ObjectRef::new(ns))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    namespace_matches(conditions, ns, &labels)
}

/// The pure part of `namespace_allowed` (the ClusterSecretStore namespace conditions).
pub fn namespace_matches(
    conditions: &[ClusterSecretStoreCondition],
    ns: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    conditions.iter().any(|c| {
        let by_selector = c
            .namespace_selector
            .as_ref()
            .is_some_and(|sel| selector_matches(sel, labels));
        let by_name = c.namespaces.iter().any(|n| n == ns);
        let by_regex = c.namespace_regexes.iter().any(|re| {
            regex::Regex::new(re)
                .map(|r| r.is_match(ns))
                .unwrap_or(false)
        });
        by_selector || by_name || by_regex
    })
}

pub(crate) fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let exprs_ok = sel.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let v = labels.get(&e.key);
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => v.is_some_and(|v| values.contains(v)),
                "NotIn" => v.is_none_or(|v| !values.contains(v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
    });
    let labels_ok = sel
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    exprs_ok && labels_ok
}

/// Reconcile a SecretStore.
pub(crate) async fn reconcile_store(
    guard: Arc<DeserializeGuard<SecretStore>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Ok(store) = &guard.0 else {
        warn!("ignoring a SecretStore that does not deserialize");
        return Ok(Action::await_change());
    };
    let ns = store.namespace().unwrap_or_default();
    let sc = StoreContext {
        kind: StoreKind::SecretStore,
        name: store.name_any(),
        namespace: Some(ns.clone()),
        uid: store.uid().unwrap_or_default(),
        generation: store.metadata.generation.unwrap_or(0),
        spec: Arc::new(store.spec.clone()),
    };
    let api: Api<SecretStore> = Api::namespaced(ctx.client.clone(), &ns);
    let status = store.status.clone().unwrap_or_default();
    reconcile_any(
        &sc,
        &status,
        store.object_ref(&()),
        ctx,
        move |name, patch| {
            let api = api.clone();
            Box::pin(async move {
                api.patch_status(
                    &name,
                    &PatchParams::apply(STORE_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .map(|_| ())
            })
        },
    )
    .await
}

/// Reconcile a ClusterSecretStore.
pub(crate) async fn reconcile_cluster_store(
    guard: Arc<DeserializeGuard<ClusterSecretStore>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Ok(store) = &guard.0 else {
        warn!("ignoring a ClusterSecretStore that does not deserialize");
        return Ok(Action::await_change());
    };
    let sc = StoreContext {
        kind: StoreKind::ClusterSecretStore,
        name: store.name_any(),
        namespace: None,
        uid: store.uid().unwrap_or_default(),
        generation: store.metadata.generation.unwrap_or(0),
        spec: Arc::new(store.spec.store.clone()),
    };
    let api: Api<ClusterSecretStore> = Api::all(ctx.client.clone());
    let status = store.status.clone().unwrap_or_default();
    reconcile_any(
        &sc,
        &status,
        store.object_ref(&()),
        ctx,
        move |name, patch| {
            let api = api.clone();
            Box::pin(async move {
                api.patch_status(
                    &name,
                    &PatchParams::apply(STORE_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .map(|_| ())
            })
        },
    )
    .await
}

/// Field manager of store status writes.
pub const STORE_MANAGER: &str = "external-secrets-store";

type PatchFn = dyn Fn(
        String,
        serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), kube::Error>> + Send>>
    + Send
    + Sync;

async fn reconcile_any<F>(
    sc: &StoreContext,
    old: &SecretStoreStatus,
    obj_ref: k8s_openapi::api::core::v1::ObjectReference,
    ctx: Arc<Context>,
    patch: F,
) -> Result<Action, Error>
where
    F: Fn(
            String,
            serde_json::Value,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), kube::Error>> + Send>>
        + Send
        + Sync,
{
    let _: Option<&PatchFn> = None;
    if !store_class_matches(&sc.spec, &ctx.config.controller_class) {
        debug!(store = %sc.name, "skipping: another controller class");
        return Ok(Action::await_change());
    }
    let dog_key = crate::Watchdog::key(
        sc.kind.as_str(),
        sc.namespace.as_deref().unwrap_or(""),
        &sc.name,
    );
    let _busy = ctx.watchdog.start(dog_key);
    let provider = sc.spec.provider.kind_name().unwrap_or("").to_string();
    let (status, reason, message, capabilities, event_type) =
        if !SUPPORTED_PROVIDERS.contains(&provider.as_str()) {
            (
                ConditionStatus::False,
                STORE_REASON_INVALID_STORE,
                format!("unsupported provider {provider:?}: this operator supports aws and fake"),
                None,
                EventType::Warning,
            )
        } else {
            match ctx.hub.validate(sc).await {
                Ok(Validation::Valid(caps)) => (
                    ConditionStatus::True,
                    STORE_REASON_VALID,
                    "store validated".to_string(),
                    Some(caps),
                    EventType::Normal,
                ),
                Ok(Validation::Unknown(why)) => (
                    ConditionStatus::True,
                    STORE_REASON_VALIDATION_UNKNOWN,
                    format!("could not determine validation status: {why}"),
                    ctx.hub.capabilities(sc),
                    EventType::Warning,
                ),
                Err(f) => (
                    ConditionStatus::False,
                    STORE_REASON_INVALID_PROVIDER,
                    format!("unable to validate store: {}", f.message),
                    None,
                    EventType::Warning,
                ),
            }
        };
    let now = Timestamp::now();
    let mut new = old.clone();
    new.conditions = set_condition(&old.conditions, ready(status, reason, message.clone()), now);
    if capabilities.is_some() {
        new.capabilities = capabilities;
    }
    let changed = {
        let key = |s: &SecretStoreStatus| {
            (
                get_ready(&s.conditions).map(|c| (c.status, c.reason.clone(), c.message.clone())),
                s.capabilities.clone(),
            )
        };
        key(old) != key(&new)
    };
    let metric = match sc.kind {
        StoreKind::SecretStore => "secretstore_status_condition",
        StoreKind::ClusterSecretStore => "clustersecretstore_status_condition",
    };
    ctx.metrics.set_condition(
        metric,
        sc.namespace.as_deref().unwrap_or(""),
        &sc.name,
        CONDITION_READY,
        status.as_str(),
    );
    if changed {
        let body = json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": sc.kind.as_str(),
            "status": new,
        });
        ctx.metrics.inc(
            "eso_status_writes_total",
            vec![("kind", sc.kind.as_str().to_string())],
        );
        patch(sc.name.clone(), body)
            .await
            .map_err(|source| Error::Kube {
                action: "write store status",
                source,
            })?;
        let ev = Event {
            type_: event_type,
            reason: reason.to_string(),
            note: Some(message),
            action: "Validate".to_string(),
            secondary: None,
        };
        if ctx.recorder.record(ev, obj_ref).await == crate::events::Recorded::Dropped {
            ctx.metrics.inc("eso_events_dropped_total", vec![]);
        }
    }
    let every = sc
        .spec
        .refresh_interval_duration()
        .unwrap_or(ctx.config.store_requeue_interval);
    let every = if status == ConditionStatus::False {
        every.min(Duration::from_secs(30))
    } else {
        every
    };
    ctx.watchdog.expect_by(dog_key, every);
    Ok(Action::requeue(every))
}

/// Error policy for store controllers.
pub(crate) fn store_error_policy<K>(_obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, "store reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;

    #[test]
    fn namespace_conditions_like_eso() {
        let labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
        // No conditions: nothing matches here; callers treat an empty list as "every namespace".
        assert!(!namespace_matches(&[], "x", &labels));
        let by_name = ClusterSecretStoreCondition {
            namespaces: vec!["prod".into()],
            ..Default::default()
        };
        assert!(namespace_matches(
            std::slice::from_ref(&by_name),
            "prod",
            &labels
        ));
        assert!(!namespace_matches(
            std::slice::from_ref(&by_name),
            "dev",
            &labels
        ));
        let by_label = ClusterSecretStoreCondition {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(namespace_matches(
            std::slice::from_ref(&by_label),
            "any",
            &labels
        ));
        assert!(!namespace_matches(
            std::slice::from_ref(&by_label),
            "any",
            &BTreeMap::new()
        ));
        let by_regex = ClusterSecretStoreCondition {
            namespace_regexes: vec!["^team-.*".into()],
            ..Default::default()
        };
        assert!(namespace_matches(
            std::slice::from_ref(&by_regex),
            "team-x",
            &labels
        ));
        assert!(!namespace_matches(
            std::slice::from_ref(&by_regex),
            "x-team",
            &labels
        ));
        // conditions are ORed
        assert!(namespace_matches(&[by_name, by_regex], "team-y", &labels));
    }

    #[test]
    fn flood_gate_admits_only_ready_true() {
        let cond = |status: ConditionStatus| eso_api::Condition {
            type_: CONDITION_READY.to_string(),
            status,
            reason: None,
            message: Some("why".into()),
            last_transition_time: None,
        };
        assert!(store_usable(&[cond(ConditionStatus::True)]).is_ok());
        assert_eq!(
            store_usable(&[cond(ConditionStatus::False)]),
            Err("why".into())
        );
        assert_eq!(
            store_usable(&[cond(ConditionStatus::Unknown)]),
            Err("why".into())
        );
        assert_eq!(store_usable(&[]), Err("not validated yet".into()));
    }

    #[test]
    fn controller_class() {
        let mut spec = SecretStoreSpec::default();
        assert!(store_class_matches(&spec, "default"));
        spec.controller = Some("other".into());
        assert!(!store_class_matches(&spec, "default"));
        assert!(store_class_matches(&spec, "other"));
    }
}
