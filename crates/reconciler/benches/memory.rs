//! Heap bytes per cached object, measured with dhat's heap statistics: what each watched
//! ExternalSecret and managed Secret costs in the reflector caches (and the other per-object
//! state), the way the operator stores them. Not criterion: it measures bytes, not time.
//!
//! `cargo bench -p eso-reconciler --bench memory` (add `-- 10000` for another object count).

#![allow(clippy::panic)]

use eso_api::ExternalSecret;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::{reflector, watcher};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live() -> isize {
    dhat::HeapStats::get().curr_bytes as isize
}

/// An ExternalSecret as the apiserver sends it after a sync (the bench's shape: one data entry).
fn es_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {
            "name": format!("es-{i}"),
            "namespace": "bench",
            "uid": format!("6f1c2d3e-0000-4000-8000-{i:012}"),
            "resourceVersion": format!("{}", 100000 + i),
            "generation": 1,
            "creationTimestamp": "2026-12-02T10:00:00Z",
            "managedFields": [{
                "manager": "kubectl", "operation": "Apply", "apiVersion": "external-secrets.io/v1",
                "time": "2026-12-02T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:refreshInterval": {}, "f:secretStoreRef": {"f:name": {}}, "f:data": {}}}
            }]
        },
        "spec": {
            "refreshInterval": "1m",
            "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
            "target": {"creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [{"secretKey": "password", "remoteRef": {"key": format!("bench-{}", i % 100), "property": "password",
                      "conversionStrategy": "Default", "decodingStrategy": "None", "metadataPolicy": "None"}}]
        },
        "status": {
            "binding": {"name": format!("es-{i}")},
            "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced",
                            "message": "secret synced", "lastTransitionTime": "2026-12-02T10:00:05Z"}],
            "refreshTime": "2026-12-02T10:00:05Z",
            "syncedResourceVersion": "1-0f6a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
        }
    })
}

/// The Secret this operator writes for it, as the watch delivers it.
fn secret_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("es-{i}"),
            "namespace": "bench",
            "uid": format!("7a1c2d3e-0000-4000-8000-{i:012}"),
            "resourceVersion": format!("{}", 200000 + i),
            "creationTimestamp": "2026-12-02T10:00:05Z",
            "labels": {"reconcile.external-secrets.io/managed": "true",
                       "reconcile.external-secrets.io/created-by": "0f6a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef01234"},
            "annotations": {"reconcile.external-secrets.io/data-hash": "3b9d4c0a8e7f6a5b4c3d2e1f00112233445566778899aabbccddeeff"},
            "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": format!("es-{i}"),
                                 "uid": format!("6f1c2d3e-0000-4000-8000-{i:012}"), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{
                "manager": format!("externalsecrets.external-secrets.io/es-{i}"), "operation": "Apply", "apiVersion": "v1",
                "time": "2026-12-02T10:00:05Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:password": {}}, "f:metadata": {
                    "f:annotations": {"f:reconcile.external-secrets.io/data-hash": {}},
                    "f:labels": {"f:reconcile.external-secrets.io/created-by": {}, "f:reconcile.external-secrets.io/managed": {}},
                    "f:ownerReferences": {"k:{\"uid\":\"x\"}": {}}}, "f:type": {}}
            }]
        },
        "data": {"password": "c2VjcmV0LXZhbHVlLTEyMzQ1Ng=="},
        "type": "Opaque"
    })
}

fn measure<K, F>(
    n: usize,
    mut make: impl FnMut(usize) -> K,
    prepare: F,
) -> (isize, reflector::Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    F: Fn(&mut K),
{
    let before = live();
    let (reader, mut writer) = reflector::store::<K>();
    for i in 0..n {
        let mut obj = make(i);
        prepare(&mut obj);
        writer.apply_watcher_event(&watcher::Event::Apply(obj));
    }
    (live() - before, reader)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let _profiler = dhat::Profiler::builder().testing().build();
    println!("objects: {n}");
    println!(
        "inline sizes: ObjectMeta {} B, CachedSecret {} B, CachedExternalSecret {} B, ObjectRef {} B, ExternalSecret {} B",
        std::mem::size_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(),
        std::mem::size_of::<eso_reconciler::secrets::CachedSecret>(),
        std::mem::size_of::<eso_reconciler::external_secret::CachedExternalSecret>(),
        std::mem::size_of::<reflector::ObjectRef<Secret>>(),
        std::mem::size_of::<ExternalSecret>(),
    );

    let (es_bytes, _es) = measure(
        n,
        |i| {
            serde_json::from_value::<DeserializeGuard<ExternalSecret>>(es_json(i))
                .unwrap_or_else(|e| panic!("bench fixture: {e}"))
        },
        |g: &mut DeserializeGuard<ExternalSecret>| {
            if let Ok(es) = &mut g.0 {
                es.metadata.managed_fields = None;
            }
        },
    );
    println!(
        "ExternalSecret cache (DeserializeGuard<ExternalSecret>, no managedFields): {:>8.0} bytes/object",
        es_bytes as f64 / n as f64
    );

    let (es_record_bytes, _er) = measure(
        n,
        |i| {
            let g = serde_json::from_value::<DeserializeGuard<ExternalSecret>>(es_json(i))
                .unwrap_or_else(|e| panic!("bench fixture: {e}"));
            eso_reconciler::external_secret::CachedExternalSecret::of_guard(&g)
        },
        |_| {},
    );
    println!(
        "ExternalSecret cache (CachedExternalSecret): {:>8.0} bytes/object (its {} B of JSON kept in {} B)",
        es_record_bytes as f64 / n as f64,
        _er.state().first().map_or(0, |r| r.json_len()),
        _er.state().first().map_or(0, |r| r.body_len())
    );
    if std::env::var_os("ESO_MEMORY_SHOW_BODY").is_some()
        && let Some(r) = _er.state().first()
        && let Ok(es) = r.external_secret()
    {
        println!("{}", serde_json::to_string(&es.spec).unwrap_or_default());
        println!("{}", serde_json::to_string(&es.status).unwrap_or_default());
    }

    // The same objects applied with client-side `kubectl apply` (or Argo CD's default), which
    // stores a copy of the object in the last-applied-configuration annotation.
    let kubectl_applied = |i: usize| {
        let mut v = es_json(i);
        let copy = serde_json::json!({"apiVersion": v["apiVersion"], "kind": v["kind"],
            "metadata": {"name": v["metadata"]["name"], "namespace": v["metadata"]["namespace"]},
            "spec": v["spec"]});
        v["metadata"]["annotations"] = serde_json::json!({
            "kubectl.kubernetes.io/last-applied-configuration": copy.to_string()
        });
        serde_json::from_value::<DeserializeGuard<ExternalSecret>>(v)
            .unwrap_or_else(|e| panic!("bench fixture: {e}"))
    };
    let (typed_kubectl, _tk) = measure(
        n,
        kubectl_applied,
        |g: &mut DeserializeGuard<ExternalSecret>| {
            if let Ok(es) = &mut g.0 {
                es.metadata.managed_fields = None;
            }
        },
    );
    let (record_kubectl, _rk) = measure(
        n,
        |i| eso_reconciler::external_secret::CachedExternalSecret::of_guard(&kubectl_applied(i)),
        |_| {},
    );
    println!(
        "kubectl-applied ExternalSecret: {:>8.0} bytes/object typed, {:>8.0} as a record",
        typed_kubectl as f64 / n as f64,
        record_kubectl as f64 / n as f64
    );

    // The Secret cache as the operator fills it: one record per Secret under `namespace/name`.
    let before = live();
    let cache = eso_reconciler::secrets::SecretCache::default();
    for i in 0..n {
        let s = serde_json::from_value::<Secret>(secret_json(i))
            .unwrap_or_else(|e| panic!("bench fixture: {e}"));
        cache.apply_watcher_event(&watcher::Event::Apply(
            eso_reconciler::secrets::WatchedSecret::of(&s),
        ));
    }
    let record_bytes = live() - before;
    println!(
        "Secret cache (SecretCache of CachedSecret records): {:>8.0} bytes/object ({} cached)",
        record_bytes as f64 / n as f64,
        cache.len()
    );
}
