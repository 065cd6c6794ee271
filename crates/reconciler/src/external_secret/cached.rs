//! The ExternalSecret cache record: what the reflector keeps of each watched ExternalSecret.
//!
//! A deserialized [`ExternalSecret`] is large even when most of it is empty: every optional
//! field of its spec and of `ObjectMeta` takes its full size inline. The record keeps the
//! identity fields (name, namespace, generation, deletionTimestamp, finalizers) in a small
//! `ObjectMeta`, the uid and resourceVersion as compact tokens (inline, next to it: outside the
//! `ObjectMeta`, they are not copied into every reflector key and scheduler entry that kube
//! makes of the object), the `syncedResourceVersion` it has now, and the rest —
//! labels, annotations, owner references, spec and status — as the compact JSON of the typed
//! object, LZ4-compressed against a dictionary of a typical body (`dictionary`): field
//! names and common values cost a few bytes each instead of their length. A reconcile rebuilds the [`ExternalSecret`] from it
//! ([`CachedExternalSecret::external_secret`]), which costs a few microseconds and no request:
//! a no-op refresh still makes no apiserver call.
//!
//! Dropped on arrival: `managedFields` (never read) and kubectl's
//! `last-applied-configuration` annotation (a second copy of the object; the mapping engine
//! never copies it to the Secret). The `syncedResourceVersion` is computed before that, from
//! the labels and annotations as the apiserver sent them.
//!
//! [`wakes`] is the controller's event filter, ESO's: an arrival wakes the controller only when
//! the generation, labels, annotations, finalizers, deletionTimestamp or uid changed (or the
//! object is new, or its validity changed). Status-only updates, above all this operator's own
//! status writes, do not: they cost a reconcile each during a large sync and decided nothing.

use std::collections::BTreeMap;

use std::sync::LazyLock;
use std::time::Duration;

use eso_api::{ExternalSecret, ExternalSecretSpec, ExternalSecretStatus, RefreshPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::error_boundary::DeserializeGuard;
use serde::{Deserialize, Serialize};

use crate::compact::Token;

/// An ExternalSecret as the cache keeps it (see the module documentation).
///
/// It is a [`kube::Resource`] (kind `ExternalSecret`), so it lives in an ordinary reflector
/// store and drives the controller.
#[derive(Clone, Debug)]
pub struct CachedExternalSecret {
    /// Name, namespace, generation, deletionTimestamp, finalizers.
    meta: ObjectMeta,
    uid: Option<Token>,
    resource_version: Option<Token>,
    /// [`eso_mapping::synced_resource_version`] of the object as it arrived.
    version: Box<str>,
    /// The compact JSON of [`Body`], packed ([`pack`]), or why the object did not deserialize.
    body: Result<Box<[u8]>, Box<str>>,
}

/// The part of an ExternalSecret kept as JSON.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_references: Option<Vec<OwnerReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_timestamp: Option<Time>,
    spec: ExternalSecretSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<ExternalSecretStatus>,
}

/// Why an ExternalSecret could not be rebuilt from its record.
#[derive(Debug, thiserror::Error)]
pub enum InvalidExternalSecret {
    /// The object as the apiserver sent it does not deserialize (a field of the wrong type).
    #[error("the ExternalSecret does not deserialize: {0}")]
    Invalid(String),
    /// The record's JSON does not read back (a bug: it was written by this module).
    #[error("the cached ExternalSecret does not read back: {0}")]
    Corrupt(String),
}

impl CachedExternalSecret {
    /// The record of a deserialized ExternalSecret.
    pub fn of(es: &ExternalSecret) -> Self {
        let m = &es.metadata;
        let version = eso_mapping::synced_resource_version(
            m.generation.unwrap_or(0),
            m.labels.as_ref(),
            m.annotations.as_ref(),
        );
        let annotations = m.annotations.as_ref().and_then(|a| {
            let kept: BTreeMap<String, String> = a
                .iter()
                .filter(|(k, _)| k.as_str() != eso_mapping::LAST_APPLIED)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty() || a.is_empty()).then_some(kept)
        });
        let body = Body {
            labels: m.labels.clone(),
            annotations,
            owner_references: m.owner_references.clone(),
            creation_timestamp: m.creation_timestamp.clone(),
            spec: es.spec.clone(),
            status: es.status.clone(),
        };
        Self {
            meta: identity(m),
            uid: Token::of(m.uid.as_deref()),
            resource_version: Token::of(m.resource_version.as_deref()),
            version: version.into_boxed_str(),
            body: serde_json::to_vec(&body)
                .map(|json| pack(&json))
                .map_err(|e| e.to_string().into_boxed_str()),
        }
    }

    /// The record of what the watch delivered: an ExternalSecret, or one that did not
    /// deserialize (kept with its error, so the controller can report it).
    pub fn of_guard(guard: &DeserializeGuard<ExternalSecret>) -> Self {
        match &guard.0 {
            Ok(es) => Self::of(es),
            Err(invalid) => Self {
                meta: ObjectMeta {
                    name: invalid.metadata.name.clone(),
                    namespace: invalid.metadata.namespace.clone(),
                    generation: invalid.metadata.generation,
                    ..ObjectMeta::default()
                },
                uid: Token::of(invalid.metadata.uid.as_deref()),
                resource_version: Token::of(invalid.metadata.resource_version.as_deref()),
                version: Box::from(""),
                body: Err(invalid.to_string().into_boxed_str()),
            },
        }
    }

    /// The ExternalSecret again, as the apiserver sent it (less `managedFields` and kubectl's
    /// last-applied annotation).
    pub fn external_secret(&self) -> Result<ExternalSecret, InvalidExternalSecret> {
        let bytes = self
            .body
            .as_ref()
            .map_err(|e| InvalidExternalSecret::Invalid(e.to_string()))?;
        let body: Body = serde_json::from_slice(&unpack(bytes)?)
            .map_err(|e| InvalidExternalSecret::Corrupt(e.to_string()))?;
        let mut metadata = self.meta.clone();
        metadata.uid = self.uid();
        metadata.resource_version = self.resource_version();
        metadata.labels = body.labels;
        metadata.annotations = body.annotations;
        metadata.owner_references = body.owner_references;
        metadata.creation_timestamp = body.creation_timestamp;
        Ok(ExternalSecret {
            metadata,
            spec: body.spec,
            status: body.status,
        })
    }

    /// The refresh policy and interval of the spec (as [`ExternalSecretSpec`] reads them: an
    /// unset interval is an hour), read from the record's JSON without rebuilding the object:
    /// the remote change poller asks this of every ExternalSecret each round and rebuilds only
    /// those it watches. `None` when the object did not deserialize.
    pub fn refresh_settings(&self) -> Option<(Option<RefreshPolicy>, Option<Duration>)> {
        #[derive(Deserialize)]
        struct Peek {
            spec: PeekSpec,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct PeekSpec {
            #[serde(default)]
            refresh_policy: Option<RefreshPolicy>,
            // Missing means unset: the record writes the spec's default out explicitly.
            #[serde(default)]
            refresh_interval: Option<String>,
        }
        let json = unpack(self.body.as_ref().ok()?).ok()?;
        let peek: Peek = serde_json::from_slice(&json).ok()?;
        let spec = ExternalSecretSpec {
            refresh_policy: peek.spec.refresh_policy,
            refresh_interval: peek.spec.refresh_interval,
            ..ExternalSecretSpec::default()
        };
        Some((spec.refresh_policy, spec.refresh_interval_duration()))
    }

    /// Whether the object deserialized when it arrived.
    pub fn is_valid(&self) -> bool {
        self.body.is_ok()
    }

    /// `<generation>-<hash of labels and annotations>` of the object as it arrived: what
    /// `status.syncedResourceVersion` is compared with.
    pub fn synced_version(&self) -> &str {
        &self.version
    }

    /// Name (empty if the apiserver sent none).
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// Namespace (empty if none).
    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    /// The uid (kept outside the record's `ObjectMeta`: `meta().uid` is `None`).
    pub fn uid(&self) -> Option<String> {
        self.uid.as_ref().map(Token::to_string)
    }

    /// The resourceVersion (kept outside the record's `ObjectMeta`).
    pub fn resource_version(&self) -> Option<String> {
        self.resource_version.as_ref().map(Token::to_string)
    }

    /// Bytes of the kept JSON, packed (for the memory benchmark).
    pub fn body_len(&self) -> usize {
        self.body.as_ref().map_or(0, |b| b.len())
    }

    /// Bytes of the kept JSON, unpacked (for the memory benchmark).
    pub fn json_len(&self) -> usize {
        self.body
            .as_ref()
            .ok()
            .and_then(|b| unpack(b).ok())
            .map_or(0, |j| j.len())
    }
}

/// The dictionary record bodies are compressed against: the JSON of a typical body, made by
/// the same serializer (so field names and their order are those of the records), with the
/// values most objects share. Built once per process; records are never persisted, so it only
/// has to stay the same while the process runs. Empty (no dictionary: still correct, just
/// larger) if the sample stopped deserializing.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let sample = serde_json::json!({
            "labels": {"app.kubernetes.io/name": "", "app.kubernetes.io/instance": "",
                       "app.kubernetes.io/managed-by": "Helm", "app": ""},
            "annotations": {"meta.helm.sh/release-name": "", "meta.helm.sh/release-namespace": "",
                            "argocd.argoproj.io/tracking-id": ""},
            "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
                                 "name": "", "uid": "", "controller": true, "blockOwnerDeletion": true}],
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "spec": {
                "refreshInterval": "1h", "refreshPolicy": "Periodic",
                "secretStoreRef": {"name": "aws-secretsmanager", "kind": "ClusterSecretStore"},
                "target": {"name": "", "creationPolicy": "Owner", "deletionPolicy": "Retain",
                           "immutable": false,
                           "template": {"type": "Opaque", "engineVersion": "v2", "mergePolicy": "Replace",
                                        "metadata": {"labels": {}, "annotations": {}},
                                        "data": {"": "{{ .password }}"}}},
                "data": [
                    {"secretKey": "password", "remoteRef": {"key": "", "property": "password",
                     "conversionStrategy": "Default", "decodingStrategy": "None", "metadataPolicy": "None"}},
                    {"secretKey": "username", "remoteRef": {"key": "", "property": "username",
                     "conversionStrategy": "Default", "decodingStrategy": "None", "metadataPolicy": "None"}}
                ],
                "dataFrom": [{"extract": {"key": "", "conversionStrategy": "Default",
                              "decodingStrategy": "None", "metadataPolicy": "None"}}]
            },
            "status": {
                "binding": {"name": ""},
                "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced",
                                "message": "secret synced", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "refreshTime": "2026-01-01T00:00:00Z",
                "syncedResourceVersion": "1-"
            }
        });
        serde_json::from_value::<Body>(sample)
            .ok()
            .and_then(|b| serde_json::to_vec(&b).ok())
            .unwrap_or_default()
    });
    &DICTIONARY
}

/// A body's JSON, compressed for the record.
fn pack(json: &[u8]) -> Box<[u8]> {
    lz4_flex::block::compress_prepend_size_with_dict(json, dictionary()).into_boxed_slice()
}

/// The JSON of a packed body.
fn unpack(packed: &[u8]) -> Result<Vec<u8>, InvalidExternalSecret> {
    lz4_flex::block::decompress_size_prepended_with_dict(packed, dictionary())
        .map_err(|e| InvalidExternalSecret::Corrupt(e.to_string()))
}

/// Whether `new` should wake the controller, `old` being the cached record it replaces (see
/// the module documentation): a new object, another uid, a changed `syncedResourceVersion`
/// (generation, labels, annotations), finalizers or deletionTimestamp, or a change of validity
/// (or of the reason an invalid object does not deserialize). Reads no JSON.
pub fn wakes(old: Option<&CachedExternalSecret>, new: &CachedExternalSecret) -> bool {
    let Some(old) = old else {
        return true;
    };
    let (o, n) = (&old.meta, &new.meta);
    old.uid != new.uid
        || old.version != new.version
        || o.finalizers != n.finalizers
        || o.deletion_timestamp != n.deletion_timestamp
        || match (&old.body, &new.body) {
            (Ok(_), Ok(_)) => false,
            (Err(a), Err(b)) => a != b,
            _ => true,
        }
}

/// The identity fields kept in the record's `ObjectMeta`.
fn identity(m: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        generation: m.generation,
        deletion_timestamp: m.deletion_timestamp.clone(),
        finalizers: m.finalizers.clone(),
        ..ObjectMeta::default()
    }
}

impl kube::Resource for CachedExternalSecret {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        <ExternalSecret as kube::Resource>::kind(&())
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        <ExternalSecret as kube::Resource>::group(&())
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        <ExternalSecret as kube::Resource>::version(&())
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        <ExternalSecret as kube::Resource>::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// Deserializes an ExternalSecret (or one that does not deserialize) and keeps its record
/// (kube-runtime asks for deserializable objects).
impl<'de> Deserialize<'de> for CachedExternalSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DeserializeGuard::<ExternalSecret>::deserialize(d).map(|g| Self::of_guard(&g))
    }
}

/// Project a watch event on ExternalSecrets into one on records.
pub fn project_event(
    ev: kube::runtime::watcher::Event<DeserializeGuard<ExternalSecret>>,
) -> kube::runtime::watcher::Event<CachedExternalSecret> {
    use kube::runtime::watcher::Event;
    match ev {
        Event::Apply(g) => Event::Apply(CachedExternalSecret::of_guard(&g)),
        Event::Delete(g) => Event::Delete(CachedExternalSecret::of_guard(&g)),
        Event::InitApply(g) => Event::InitApply(CachedExternalSecret::of_guard(&g)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use kube::runtime::reflector::ObjectRef;

    fn es() -> ExternalSecret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {
                "name": "db", "namespace": "team", "uid": "u-1", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2026-12-02T10:00:00Z",
                "labels": {"app": "web"},
                "annotations": {
                    "note": "x",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\":\"copy\"}"
                },
                "finalizers": ["externalsecrets.external-secrets.io/externalsecret-cleanup"],
                "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
                                     "name": "all", "uid": "u-c", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {
                "refreshInterval": "1m",
                "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
                "target": {"name": "db-secret", "template": {"data": {"url": "{{ .password }}"}}},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced",
                                "message": "secret synced", "lastTransitionTime": "2026-12-02T10:00:05Z"}],
                "refreshTime": "2026-12-02T10:00:05Z",
                "syncedResourceVersion": "3-abc",
                "binding": {"name": "db-secret"}
            }
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    #[test]
    fn rebuilds_the_object_less_managed_fields_and_last_applied() {
        let original = es();
        let rec = CachedExternalSecret::of(&original);
        let back = rec.external_secret().unwrap_or_else(|e| panic!("{e}"));
        let mut want = original.clone();
        want.metadata.managed_fields = None;
        if let Some(a) = want.metadata.annotations.as_mut() {
            a.remove(eso_mapping::LAST_APPLIED);
        }
        assert_eq!(back, want);
        assert_eq!(rec.name(), "db");
        assert_eq!(rec.namespace(), "team");
        assert_eq!(rec.uid().as_deref(), Some("u-1"));
        assert_eq!(rec.resource_version().as_deref(), Some("42"));
        // Not in the ObjectMeta kube copies into its reflector keys and scheduler entries.
        assert_eq!(rec.meta().uid, None);
        assert_eq!(rec.meta().resource_version, None);
        let key = ObjectRef::from_obj(&rec);
        assert_eq!((key.extra.uid, key.extra.resource_version), (None, None));
    }

    #[test]
    fn the_body_is_kept_compressed_and_reads_back() {
        assert!(
            dictionary().len() > 1000,
            "the dictionary sample deserializes"
        );
        let rec = CachedExternalSecret::of(&es());
        let (packed, json) = (rec.body_len(), rec.json_len());
        // Measured: this object's 819 bytes of JSON are kept in 195.
        assert!(
            packed * 2 < json,
            "{packed} packed bytes for {json} bytes of JSON"
        );
        assert!(rec.external_secret().is_ok());
        // A corrupt record is reported, never a panic.
        let broken = CachedExternalSecret {
            body: Ok(Box::from(&[200u8, 0, 0, 0, 1, 2, 3][..])),
            ..rec
        };
        assert!(matches!(
            broken.external_secret(),
            Err(InvalidExternalSecret::Corrupt(_))
        ));
    }

    #[test]
    fn the_synced_version_counts_every_annotation_as_sent() {
        let original = es();
        let rec = CachedExternalSecret::of(&original);
        let m = &original.metadata;
        assert_eq!(
            rec.synced_version(),
            eso_mapping::synced_resource_version(3, m.labels.as_ref(), m.annotations.as_ref())
        );
        // An edit of the last-applied annotation alone (kubectl apply) still changes it, as in ESO.
        let mut edited = original.clone();
        if let Some(a) = edited.metadata.annotations.as_mut() {
            a.insert(eso_mapping::LAST_APPLIED.into(), "{}".into());
        }
        assert_ne!(
            CachedExternalSecret::of(&edited).synced_version(),
            rec.synced_version()
        );
    }

    #[test]
    fn an_object_that_does_not_deserialize_is_kept_with_its_error() {
        let g: DeserializeGuard<ExternalSecret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "bad", "namespace": "team", "uid": "u-2"},
            "spec": {"data": "not a list"}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
        let rec = CachedExternalSecret::of_guard(&g);
        assert!(!rec.is_valid());
        assert_eq!(rec.name(), "bad");
        assert!(matches!(
            rec.external_secret(),
            Err(InvalidExternalSecret::Invalid(_))
        ));
    }

    #[test]
    fn only_annotation_last_applied_leaves_an_empty_map_out() {
        let mut e = es();
        e.metadata.annotations = Some(BTreeMap::from([(
            eso_mapping::LAST_APPLIED.to_string(),
            "{}".to_string(),
        )]));
        let back = CachedExternalSecret::of(&e)
            .external_secret()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.metadata.annotations, None);
    }

    /// ESO's event filter: the controller wakes for what can change a sync, not for status.
    #[test]
    fn only_changes_that_can_change_a_sync_wake_the_controller() {
        let base = es();
        let rec = CachedExternalSecret::of(&base);
        let wakes_after = |edit: &dyn Fn(&mut ExternalSecret)| {
            let mut e = base.clone();
            edit(&mut e);
            wakes(Some(&rec), &CachedExternalSecret::of(&e))
        };
        assert!(wakes(None, &rec), "a new object wakes it");
        assert!(!wakes_after(&|_| {}), "the same object again does not");
        assert!(
            !wakes_after(&|e| {
                e.metadata.resource_version = Some("43".into());
                if let Some(s) = e.status.as_mut() {
                    s.refresh_time = None;
                    s.conditions.clear();
                    s.synced_resource_version = Some("stale".into());
                }
            }),
            "a status-only update (our own write, or anyone's) does not"
        );
        assert!(
            wakes_after(&|e| e.metadata.generation = Some(4)),
            "a spec edit wakes it"
        );
        assert!(wakes_after(&|e| {
            e.metadata
                .labels
                .get_or_insert_default()
                .insert("x".into(), "y".into());
        }));
        assert!(
            wakes_after(&|e| {
                e.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert("force-sync".into(), "1".into());
            }),
            "an annotation (the force-sync idiom) wakes it"
        );
        assert!(
            wakes_after(&|e| e.metadata.finalizers = None),
            "a finalizer removed"
        );
        assert!(wakes_after(&|e| {
            e.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }));
        assert!(
            wakes_after(&|e| e.metadata.uid = Some("u-9".into())),
            "recreated"
        );

        let invalid = |spec: serde_json::Value| {
            let g: DeserializeGuard<ExternalSecret> = serde_json::from_value(serde_json::json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "db", "namespace": "team", "uid": "u-1"},
                "spec": spec
            }))
            .unwrap_or_else(|e| panic!("fixture: {e}"));
            CachedExternalSecret::of_guard(&g)
        };
        let bad = invalid(serde_json::json!({"data": "not a list"}));
        assert!(
            wakes(Some(&rec), &bad),
            "becoming invalid wakes it (to report it)"
        );
        assert!(!wakes(
            Some(&bad),
            &invalid(serde_json::json!({"data": "not a list"}))
        ));
        assert!(wakes(Some(&bad), &invalid(serde_json::json!({"data": 7}))));
        assert!(wakes(Some(&bad), &rec), "fixed");
    }

    /// The poller's peek agrees with the rebuilt spec: set, defaulted, zero, policies.
    #[test]
    fn refresh_settings_match_the_spec() {
        let check = |spec: serde_json::Value| {
            let mut v = serde_json::to_value(es()).unwrap_or_else(|e| panic!("{e}"));
            v["spec"] = spec;
            let e: ExternalSecret = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
            let rec = CachedExternalSecret::of(&e);
            let got = rec.refresh_settings();
            assert_eq!(
                got,
                Some((e.spec.refresh_policy, e.spec.refresh_interval_duration())),
                "{:?}",
                e.spec
            );
            got
        };
        let data = serde_json::json!([{"secretKey": "k", "remoteRef": {"key": "r"}}]);
        let got = check(serde_json::json!({"refreshInterval": "90s", "data": data}));
        assert_eq!(got, Some((None, Some(Duration::from_secs(90)))));
        check(serde_json::json!({"data": data}));
        check(serde_json::json!({"refreshInterval": "0", "data": data}));
        check(serde_json::json!({"refreshInterval": null, "data": data}));
        check(serde_json::json!({"refreshPolicy": "OnChange", "data": data}));
        check(
            serde_json::json!({"refreshPolicy": "CreatedOnce", "refreshInterval": "1h30m", "data": data}),
        );
    }
}
