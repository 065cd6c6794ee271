//! Publish: the target Secret's side of a sync — who may write it (ownership), the
//! server-side apply and the removal of what this ExternalSecret no longer wants, the deletion
//! of an emptied or orphaned Secret, and the finalizer cleanup on deletion. Events to record are
//! returned as [`Note`]s; this module records none itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use eso_api::well_known::{
    ANNOTATION_DATA_HASH, FINALIZER_EXTERNAL_SECRET, LABEL_CREATED_BY, LABEL_MANAGED,
};
use eso_api::{CreationPolicy, DeletionPolicy, ExternalSecret};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::info;

use super::watch::target_name;
use super::{Note, SyncFailure, Synced};
use crate::conditions::*;
use crate::ownership::{self, ANNOTATION_ALLOW_ADOPTION, Decision, ExistingTarget};
use crate::secrets::CachedSecret;
use crate::{Context, Error, secrets};

/// Deletion: ESO's cleanup for objects that still carry ESO's finalizer (objects created under
/// ESO). This operator never adds the finalizer: an Owner Secret is removed by the garbage
/// collector through its ownerReference, and nothing else is ever deleted on ExternalSecret
/// deletion, so no finalizer is needed to block namespace deletion (ESO #5426).
pub(crate) async fn cleanup(
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
            let ours = secret.controlled_by_external_secret(name);
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

/// The mapping produced no data: what `deletionPolicy` says. `None`: carry on (Merge).
/// `Some((synced, notes))`: the sync is done (the Secret deleted under Delete, kept under Retain).
pub(crate) async fn emptied(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    existing: Option<&CachedSecret>,
    ctx: &Context,
) -> Result<Option<(Synced, Vec<Note>)>, SyncFailure> {
    let policy = es.spec.target.creation_policy;
    let mut notes = Vec::new();
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
                let ours = secret.controlled_by_external_secret(name);
                if ours {
                    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
                    ctx.metrics.inc(
                        "eso_secret_writes_total",
                        vec![("verb", "delete".to_string())],
                    );
                    match api.delete(target, &DeleteParams::default()).await {
                        Ok(_) => notes.push(Note {
                            reason: "Deleted",
                            message: MSG_DELETED.to_string(),
                        }),
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
            Ok(Some((
                Synced {
                    reason: REASON_DELETED,
                    message: MSG_DELETED,
                    wrote_secret: false,
                    binding: None,
                },
                notes,
            )))
        }
        DeletionPolicy::Retain => Ok(Some((
            Synced {
                reason: REASON_SYNCED,
                message: MSG_RETAINED,
                wrote_secret: false,
                binding: None,
            },
            notes,
        ))),
        DeletionPolicy::Merge => Ok(None),
    }
}

/// The target as it is, for the ownership decision. The cache only holds Secrets labelled as
/// managed. A Secret absent from it may still exist (created by someone else): read it before
/// deciding, so a foreign Secret is never overwritten by a blind create (ESO #2416 wiped
/// argocd-secret that way). `Some` only when it was read here.
pub(crate) async fn read_uncached(
    es: &ExternalSecret,
    ns: &str,
    target: &str,
    existing: Option<&CachedSecret>,
    ctx: &Context,
) -> Result<Option<CachedSecret>, SyncFailure> {
    match existing {
        Some(_) => Ok(None),
        None if es.spec.target.creation_policy != CreationPolicy::None => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            Ok(api
                .get_opt(target)
                .await
                .map_err(SyncFailure::Kube)?
                .map(|s| CachedSecret::of(&s)))
        }
        None => Ok(None),
    }
}

/// Who may write the target: `Ok(Ok(decision))` to write (Create, Write, Merge),
/// `Ok(Err(synced))` when nothing is written, `Err` when the Secret belongs to someone else.
pub(crate) fn ownership(
    policy: CreationPolicy,
    name: &str,
    target: &str,
    existing: Option<&CachedSecret>,
) -> Result<Result<Decision, Synced>, SyncFailure> {
    // The ownership decision reads the controller reference, the managed label and the
    // adoption annotation; the cache keeps exactly those.
    let owner_refs: Vec<OwnerReference> = existing
        .and_then(|s| s.controller())
        .map(|c| OwnerReference {
            api_version: c.api_version().to_string(),
            kind: c.kind().to_string(),
            name: c.name().to_string(),
            uid: c.uid().to_string(),
            controller: Some(true),
            block_owner_deletion: None,
        })
        .into_iter()
        .collect();
    let view = existing.map(|s| ExistingTarget {
        owner_references: &owner_refs,
        managed_label: s.managed().then_some("true"),
        allow_adoption: s.allow_adoption().then_some("true"),
    });
    let decision = ownership::decide(policy, name, view.as_ref());
    match decision {
        Decision::Nothing => Ok(Err(Synced {
            reason: REASON_SYNCED,
            message: MSG_SYNCED,
            wrote_secret: false,
            binding: None,
        })),
        Decision::MissingForMerge => Ok(Err(Synced {
            reason: REASON_MISSING,
            message: MSG_MISSING,
            wrote_secret: false,
            binding: None,
        })),
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
        Decision::Create | Decision::Write | Decision::Merge => Ok(Ok(decision)),
    }
}

/// The Event for a write, and the log line.
pub(crate) fn written(ns: &str, name: &str, target: &str, verb: &'static str) -> Note {
    let message = if verb == "Created" {
        "secret created"
    } else {
        "secret updated"
    };
    info!(%ns, %name, secret = %target, "{}", message);
    Note {
        reason: verb,
        message: message.to_string(),
    }
}

/// ESO's orphan cleanup under creationPolicy Owner: a Secret this ExternalSecret created under
/// another name (its `target.name` was changed) still holds the old values; it is deleted.
/// Found in the managed-Secret cache by the `created-by` label and checked to be controlled by
/// this very ExternalSecret (name and uid), so nothing else is ever deleted.
///
/// Returns the Events to record for the Secrets deleted, also when a later deletion failed.
pub(crate) async fn delete_orphans(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    ctx: &Context,
) -> (Vec<Note>, Result<(), SyncFailure>) {
    let mut notes = Vec::new();
    // The previous target is recorded in status.binding; without one (or when it differs) look.
    let bound = es
        .status
        .as_ref()
        .and_then(|s| s.binding.as_ref())
        .map(|b| b.name.as_str());
    if bound == Some(target) {
        return (notes, Ok(()));
    }
    let created_by = eso_mapping::created_by_label(ns, name);
    // No cached Secret but (at most) the target carries this ExternalSecret's label: nothing
    // to look for (every new ExternalSecret; scanning every cached Secret for each of them was
    // O(N²) over a large initial sync).
    if let Some(counts) = &ctx.created_by {
        let carriers = counts.count(secrets::created_by_key(&created_by));
        let target_carries = ctx
            .secret(ns, target)
            .is_some_and(|s| s.created_by_is(&created_by));
        if carriers <= u32::from(target_carries) {
            return (notes, Ok(()));
        }
    }
    let uid = es.uid().unwrap_or_default();
    let orphans: Vec<(String, Option<String>)> = ctx
        .secrets
        .in_namespace(ns)
        .into_iter()
        .filter(|(secret, _)| secret != target)
        .filter(|(_, s)| s.created_by_is(&created_by))
        .filter(|(_, s)| {
            s.controller().is_some_and(|c| {
                c.kind() == "ExternalSecret"
                    && c.name() == name
                    && (uid.is_empty() || c.uid() == uid)
            })
        })
        .map(|(secret, s)| (secret, s.uid()))
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
                notes.push(Note {
                    reason: "Deleted",
                    message: format!(
                        "secret {orphan} deleted because it was orphaned (target is now {target})"
                    ),
                });
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                let failure = SyncFailure::Write {
                    message: MSG_ORPHAN_CLEANUP,
                    detail: e.to_string(),
                    permanent: false,
                };
                return (notes, Err(failure));
            }
        }
    }
    (notes, Ok(()))
}

/// Server-side apply the Secret. Returns `Some("Created" | "Updated")` when a write happened.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_secret(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    existing: Option<&CachedSecret>,
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
        && secret.immutable()
        && !secret.observed_hash_is(&hash)
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
        && secret.owned_digest(&manager) == desired_digest
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
    secret: &CachedSecret,
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
    if !secret.observed_hash_is(hash) {
        return false;
    }
    if labels.iter().any(|(k, v)| !secret.has_label(k, v)) {
        return false;
    }
    if annotations
        .iter()
        .any(|(k, v)| !secret.has_annotation(k, v))
    {
        return false;
    }
    let has_owner = secret.controlled_by_external_secret(es_name);
    if owner != has_owner {
        return false;
    }
    if let Some(t) = type_
        && secret.type_() != t
    {
        return false;
    }
    if immutable && !secret.immutable() {
        return false;
    }
    if !merge && secret.data_key_count() != data.len() {
        return false;
    }
    true
}
