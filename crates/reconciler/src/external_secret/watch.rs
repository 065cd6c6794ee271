//! Watch mappers: which ExternalSecrets a changed store or namespace wakes, and the names an
//! ExternalSecret refers to (its target Secret, its stores).

use eso_api::{ExternalSecret, StoreKind};
use eso_mapping::StoreRef;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::CachedExternalSecret;

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

/// Map a changed store to the ExternalSecrets that reference it.
pub(crate) fn stores_to_es(
    es_store: &kube::runtime::reflector::Store<CachedExternalSecret>,
    kind: StoreKind,
    namespace: Option<String>,
    store_name: String,
) -> Vec<ObjectRef<CachedExternalSecret>> {
    es_store
        .state()
        .into_iter()
        .filter_map(|c| {
            if let Some(ns) = &namespace
                && c.namespace() != ns.as_str()
            {
                return None;
            }
            let es = c.external_secret().ok()?;
            referenced_stores(&es)
                .iter()
                .any(|s| s.kind == kind && s.name == store_name)
                .then(|| ObjectRef::from_obj(&*c))
        })
        .collect()
}

/// The ExternalSecrets of a namespace that use a ClusterSecretStore (a namespace label change
/// may admit or refuse them).
pub(crate) fn cluster_store_users_in_namespace(
    es_store: &kube::runtime::reflector::Store<CachedExternalSecret>,
    namespace: &str,
) -> Vec<ObjectRef<CachedExternalSecret>> {
    es_store
        .state()
        .into_iter()
        .filter_map(|c| {
            if c.namespace() != namespace {
                return None;
            }
            let es = c.external_secret().ok()?;
            if !referenced_stores(&es)
                .iter()
                .any(|s| s.kind == StoreKind::ClusterSecretStore)
            {
                return None;
            }
            Some(ObjectRef::from_obj(&*c))
        })
        .collect()
}
