//! The watched target Secrets: label-selected (`reconcile.external-secrets.io/managed=true`,
//! never every Secret in the cluster), each cached as a [`CachedSecret`]: a small record of what
//! the decisions read (identity, ownership, flags, the hash of the data as observed, the number
//! of keys, hashes of the label and annotation pairs, a digest of what each field manager owns).
//! No value is kept, so drift is detected without holding any secret value in memory.
//!
//! The records live in a [`SecretCache`] under `namespace/name`, filled from the watch's
//! [`WatchedSecret`]s (the transient form that carries the name and namespace).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use crate::compact::Token;
use eso_api::well_known::{ANNOTATION_DATA_HASH, FIELD_MANAGER_PREFIX};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The data keys, labels, annotations and finalizers one field manager owns on a Secret, read
/// from `metadata.managedFields` (every operation: ESO writes with Update, this operator with
/// server-side apply under the same manager name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    /// Owned `data` keys.
    pub data: BTreeSet<String>,
    /// Owned label keys.
    pub labels: BTreeSet<String>,
    /// Owned annotation keys.
    pub annotations: BTreeSet<String>,
    /// Owned finalizers (server-side apply entries only).
    pub finalizers: BTreeSet<String>,
}

impl Owned {
    /// What `manager` owns on `secret`, from its `managedFields`.
    pub fn of(secret: &Secret, manager: &str) -> Self {
        Self::select(secret, |m| m == manager)
    }

    /// What every other manager owns on `secret` (fields owned by two managers stay when one
    /// of them lets go).
    pub fn of_others(secret: &Secret, manager: &str) -> Self {
        Self::select(secret, |m| m != manager)
    }

    fn select(secret: &Secret, pick: impl Fn(&str) -> bool) -> Self {
        let mut out = Owned::default();
        for entry in secret.metadata.managed_fields.iter().flatten() {
            if !entry.manager.as_deref().is_some_and(&pick) {
                continue;
            }
            let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
                continue;
            };
            let apply = entry.operation.as_deref() == Some("Apply");
            collect_keys(fields.get("f:data"), &mut out.data);
            let meta = fields.get("f:metadata");
            collect_keys(meta.and_then(|m| m.get("f:labels")), &mut out.labels);
            collect_keys(
                meta.and_then(|m| m.get("f:annotations")),
                &mut out.annotations,
            );
            if apply
                && let Some(serde_json::Value::Object(f)) = meta.and_then(|m| m.get("f:finalizers"))
            {
                for k in f.keys() {
                    if let Some(v) = k.strip_prefix("v:")
                        && let Ok(name) = serde_json::from_str::<String>(v)
                    {
                        out.finalizers.insert(name);
                    }
                }
            }
        }
        out
    }

    /// A short digest of the four sets (names only, never values).
    pub fn digest(&self) -> String {
        // FNV-1a over a framed encoding: stable across runs and processes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        for (tag, set) in [
            (b'd', &self.data),
            (b'l', &self.labels),
            (b'a', &self.annotations),
            (b'f', &self.finalizers),
        ] {
            for k in set {
                eat(tag);
                k.bytes().for_each(&mut eat);
                eat(0);
            }
        }
        format!("{h:016x}")
    }
}

fn collect_keys(fields: Option<&serde_json::Value>, into: &mut BTreeSet<String>) {
    if let Some(serde_json::Value::Object(m)) = fields {
        into.extend(
            m.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(String::from),
        );
    }
}

/// What the operator remembers of one managed Secret: a small fixed record, built from the
/// Secret the watch delivers and then dropped (a trimmed `Secret` kept three `BTreeMap`s, their
/// string keys and the whole `ObjectMeta`: about ten times as much). No value, and no label or
/// annotation value except the ones decisions compare by equality, is kept; labels and
/// annotations are kept as hashes of their `(key, value)` pairs, enough to tell whether the
/// labels an ExternalSecret wants are all present.
///
/// It has no name or namespace: the [`SecretCache`] keeps it under `namespace/name`.
#[derive(Clone, Debug, Default)]
pub struct CachedSecret {
    uid: Option<Token>,
    /// `type`, unless `Opaque` (the common case costs nothing).
    type_: Option<Box<str>>,
    flags: u8,
    /// The controller ownerReference: kind, apiVersion, name, uid.
    controller: Option<Box<ControllerRef>>,
    /// The `reconcile.external-secrets.io/data-hash` annotation.
    annotated_hash: Option<Digest>,
    /// The hash of the data as observed.
    observed_hash: Digest,
    /// The `reconcile.external-secrets.io/created-by` label.
    created_by: Option<Digest>,
    data_keys: u32,
    /// Sorted hashes of the `(key, value)` label pairs.
    labels: Box<[u64]>,
    /// Sorted hashes of the `(key, value)` annotation pairs.
    annotations: Box<[u64]>,
    /// For each ESO field manager in `managedFields`: (hash of its name, [`Owned::digest`]).
    owned: Box<[(u64, u64)]>,
}

/// The key [`crate::index::CreatedByCounts`] counts a `created-by` label value under (the
/// same for the label as an ExternalSecret computes it and as a cached Secret carries it).
pub fn created_by_key(value: &str) -> u64 {
    Digest::of(value).key()
}

/// A SHA3-224 hex digest (as this operator and ESO write hashes) kept as its 28 bytes; any
/// other text is kept as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Digest {
    Sha3([u8; 28]),
    Text(Box<str>),
}

impl Default for Digest {
    fn default() -> Self {
        Digest::Text("".into())
    }
}

impl Digest {
    /// A hash of the digest, for [`crate::index::CreatedByCounts`].
    fn key(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(self, &mut h);
        std::hash::Hasher::finish(&h)
    }

    fn of(s: &str) -> Self {
        let mut b = [0u8; 28];
        // Only lowercase hex round-trips to the same text.
        if s.len() == 56
            && !s.bytes().any(|c| c.is_ascii_uppercase())
            && hex::decode_to_slice(s, &mut b).is_ok()
        {
            Digest::Sha3(b)
        } else {
            Digest::Text(s.into())
        }
    }

    fn text(&self) -> String {
        match self {
            Digest::Sha3(b) => hex::encode(b),
            Digest::Text(t) => t.to_string(),
        }
    }
}

/// The controller ownerReference of a cached Secret (its four strings in one allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerRef {
    text: Box<str>,
    ends: [usize; 3],
}

impl ControllerRef {
    /// A reference from its parts.
    pub fn new(kind: &str, api_version: &str, name: &str, uid: &str) -> Self {
        let ends = [
            kind.len(),
            kind.len() + api_version.len(),
            kind.len() + api_version.len() + name.len(),
        ];
        Self {
            text: [kind, api_version, name, uid].concat().into(),
            ends,
        }
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.text.get(..self.ends[0]).unwrap_or_default()
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.text
            .get(self.ends[0]..self.ends[1])
            .unwrap_or_default()
    }

    /// `name`.
    pub fn name(&self) -> &str {
        self.text
            .get(self.ends[1]..self.ends[2])
            .unwrap_or_default()
    }

    /// `uid`.
    pub fn uid(&self) -> &str {
        self.text.get(self.ends[2]..).unwrap_or_default()
    }
}

const F_MANAGED: u8 = 1;
const F_IMMUTABLE: u8 = 2;
const F_ALLOW_ADOPTION: u8 = 4;
const F_RELOADER_MATCH: u8 = 8;
const F_RELOADER_IGNORE: u8 = 16;
const F_HAS_DATA: u8 = 32;

fn pair_hash(k: &str, v: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable within the process, which is all a cache needs.
    let mut h = std::hash::DefaultHasher::new();
    k.hash(&mut h);
    v.hash(&mut h);
    h.finish()
}

fn name_hash(k: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

fn pairs(m: Option<&BTreeMap<String, String>>) -> Box<[u64]> {
    let mut v: Vec<u64> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| pair_hash(k, v))
        .collect();
    v.sort_unstable();
    v.dedup();
    v.into_boxed_slice()
}

fn digest_u64(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap_or_default()
}

impl CachedSecret {
    /// The record of `secret` (as delivered by a watch or read with a GET).
    pub fn of(secret: &Secret) -> Self {
        let labels = secret.metadata.labels.as_ref();
        let annotations = secret.metadata.annotations.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
        let is_true = |v: Option<&str>| v.is_some_and(|v| v == "true");
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default();
        let mut flags = 0;
        if is_true(label(eso_api::well_known::LABEL_MANAGED)) {
            flags |= F_MANAGED;
        }
        if secret.immutable == Some(true) {
            flags |= F_IMMUTABLE;
        }
        if is_true(annotation(crate::ownership::ANNOTATION_ALLOW_ADOPTION)) {
            flags |= F_ALLOW_ADOPTION;
        }
        if annotation(crate::rollout::RELOADER_MATCH).is_some_and(|v| v.trim() == "true") {
            flags |= F_RELOADER_MATCH;
        }
        if annotation(crate::rollout::RELOADER_IGNORE).is_some_and(|v| v.trim() == "true") {
            flags |= F_RELOADER_IGNORE;
        }
        if secret.data.is_some() {
            flags |= F_HAS_DATA;
        }
        let managers: BTreeSet<&str> = secret
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|e| e.manager.as_deref())
            .filter(|m| m.starts_with(FIELD_MANAGER_PREFIX))
            .collect();
        let owned: Vec<(u64, u64)> = managers
            .into_iter()
            .map(|m| (name_hash(m), digest_u64(&Owned::of(secret, m).digest())))
            .collect();
        let controller = crate::ownership::controller_of(
            secret.metadata.owner_references.as_deref().unwrap_or(&[]),
        )
        .map(|c| Box::new(ControllerRef::new(&c.kind, &c.api_version, &c.name, &c.uid)));
        Self {
            // No resourceVersion: nothing reads it from the cache.
            uid: Token::of(secret.metadata.uid.as_deref()),
            type_: secret
                .type_
                .as_deref()
                .filter(|t| *t != "Opaque")
                .map(Into::into),
            flags,
            controller,
            annotated_hash: annotation(ANNOTATION_DATA_HASH).map(Digest::of),
            observed_hash: Digest::of(&eso_mapping::data_hash(&data)),
            created_by: label(eso_api::well_known::LABEL_CREATED_BY).map(Digest::of),
            data_keys: u32::try_from(data.len()).unwrap_or(u32::MAX),
            labels: pairs(labels),
            annotations: pairs(annotations),
            owned: owned.into_boxed_slice(),
        }
    }

    /// Its uid.
    pub fn uid(&self) -> Option<String> {
        self.uid.as_ref().map(Token::to_string)
    }

    /// `type` (`Opaque` when unset, as the apiserver defaults it).
    pub fn type_(&self) -> &str {
        self.type_.as_deref().unwrap_or("Opaque")
    }

    /// `immutable: true`.
    pub fn immutable(&self) -> bool {
        self.flags & F_IMMUTABLE != 0
    }

    /// Labelled `reconcile.external-secrets.io/managed=true`.
    pub fn managed(&self) -> bool {
        self.flags & F_MANAGED != 0
    }

    /// Annotated `external-secrets.io/allow-adoption=true`.
    pub fn allow_adoption(&self) -> bool {
        self.flags & F_ALLOW_ADOPTION != 0
    }

    /// Reloader's `match` annotation is `"true"`.
    pub fn reloader_match(&self) -> bool {
        self.flags & F_RELOADER_MATCH != 0
    }

    /// Reloader's `ignore` annotation is `"true"`.
    pub fn reloader_ignore(&self) -> bool {
        self.flags & F_RELOADER_IGNORE != 0
    }

    /// The controller ownerReference.
    pub fn controller(&self) -> Option<&ControllerRef> {
        self.controller.as_deref()
    }

    /// Controlled by the ExternalSecret `name` (any `external-secrets.io` version).
    pub fn controlled_by_external_secret(&self, name: &str) -> bool {
        self.controller()
            .is_some_and(|c| c.kind() == "ExternalSecret" && c.name() == name)
    }

    /// The `reconcile.external-secrets.io/data-hash` annotation.
    pub fn annotated_hash(&self) -> Option<String> {
        self.annotated_hash.as_ref().map(Digest::text)
    }

    /// The hash of the data as observed ([`eso_mapping::data_hash`]).
    pub fn observed_hash(&self) -> String {
        self.observed_hash.text()
    }

    /// Whether the data as observed has hash `hash` ([`eso_mapping::data_hash`]).
    pub fn observed_hash_is(&self, hash: &str) -> bool {
        self.observed_hash == Digest::of(hash)
    }

    /// The [`created_by_key`] of this Secret's `created-by` label, if it has one.
    pub fn created_by_key(&self) -> Option<u64> {
        self.created_by.as_ref().map(Digest::key)
    }

    /// Whether the `reconcile.external-secrets.io/created-by` label is `value`.
    pub fn created_by_is(&self, value: &str) -> bool {
        self.created_by.as_ref() == Some(&Digest::of(value))
    }

    /// How many data keys it holds.
    pub fn data_key_count(&self) -> usize {
        self.data_keys as usize
    }

    /// Whether it carries label `k` with value `v`.
    pub fn has_label(&self, k: &str, v: &str) -> bool {
        self.labels.binary_search(&pair_hash(k, v)).is_ok()
    }

    /// Whether it carries annotation `k` with value `v`.
    pub fn has_annotation(&self, k: &str, v: &str) -> bool {
        self.annotations.binary_search(&pair_hash(k, v)).is_ok()
    }

    /// [`Owned::digest`] of what field manager `manager` owns on it.
    pub fn owned_digest(&self, manager: &str) -> String {
        let h = name_hash(manager);
        match self.owned.iter().find(|(m, _)| *m == h) {
            Some((_, d)) => format!("{d:016x}"),
            None => Owned::default().digest(),
        }
    }

    /// ESO's `isSecretValid` (except the Orphan shortcut, applied by the caller): labelled as
    /// managed, and its data-hash annotation matches its data.
    pub fn is_valid(&self) -> bool {
        self.managed() && self.annotated_hash.as_ref() == Some(&self.observed_hash)
    }
}

/// A Secret as the watch delivers it: its name and namespace, and its record. Transient: the
/// cache ([`SecretCache`]) keeps only the record, under `namespace/name`.
///
/// It is a [`kube::Resource`] (kind `Secret`, an `ObjectMeta` with the name and namespace
/// only), so a stream of them can wake the ExternalSecret controller.
#[derive(Clone, Debug)]
pub struct WatchedSecret {
    meta: ObjectMeta,
    record: Arc<CachedSecret>,
}

impl WatchedSecret {
    /// The watched form of `secret`.
    pub fn of(secret: &Secret) -> Self {
        Self {
            meta: ObjectMeta {
                name: secret.metadata.name.clone(),
                namespace: secret.metadata.namespace.clone(),
                ..ObjectMeta::default()
            },
            record: Arc::new(CachedSecret::of(secret)),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or_default()
    }

    /// Its record.
    pub fn record(&self) -> &Arc<CachedSecret> {
        &self.record
    }
}

impl kube::Resource for WatchedSecret {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Secret".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "secrets".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// Deserializes a Secret and keeps its record (kube-runtime's `watches_stream` asks for
/// deserializable objects).
impl<'de> serde::Deserialize<'de> for WatchedSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Secret::deserialize(d).map(|s| WatchedSecret::of(&s))
    }
}

/// Project a watch event on Secrets into one on [`WatchedSecret`]s.
pub fn project_event(
    ev: kube::runtime::watcher::Event<Secret>,
) -> kube::runtime::watcher::Event<WatchedSecret> {
    use kube::runtime::watcher::Event;
    match ev {
        Event::Apply(s) => Event::Apply(WatchedSecret::of(&s)),
        Event::Delete(s) => Event::Delete(WatchedSecret::of(&s)),
        Event::InitApply(s) => Event::InitApply(WatchedSecret::of(&s)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

/// The managed Secrets, one record each under `namespace/name`: the operator's Secret cache,
/// filled from the Secret watch ([`SecretCache::apply_watcher_event`]).
///
/// kube's reflector store would keep each record inside a full `ObjectMeta` (328 bytes inline,
/// whatever it holds) under a key of four `String`s; this keeps the name once. Cheap to clone
/// (a shared handle). A relist replaces the contents at its end, as kube's store does, so
/// readers never see a half-listed cache.
#[derive(Clone, Debug, Default)]
pub struct SecretCache {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: RwLock<CacheState>,
    /// Woken when the first list completes.
    listed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct CacheState {
    live: HashMap<Box<str>, Arc<CachedSecret>>,
    /// A relist in progress: what it listed so far.
    relisting: Option<HashMap<Box<str>, Arc<CachedSecret>>>,
    /// The first list completed.
    listed: bool,
}

impl SecretCache {
    /// The record of the Secret `name` in `ns`, if cached.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<CachedSecret>> {
        let key = crate::compact::object_key(ns, name);
        self.inner.state.read().ok()?.live.get(&key).cloned()
    }

    /// Every cached Secret in `ns`: (name, record), in no particular order.
    pub fn in_namespace(&self, ns: &str) -> Vec<(String, Arc<CachedSecret>)> {
        let Ok(state) = self.inner.state.read() else {
            return Vec::new();
        };
        state
            .live
            .iter()
            .filter_map(|(k, v)| {
                let (n, name) = crate::compact::split_object_key(k);
                (n == ns).then(|| (name.to_string(), v.clone()))
            })
            .collect()
    }

    /// How many Secrets are cached.
    pub fn len(&self) -> usize {
        self.inner.state.read().map(|s| s.live.len()).unwrap_or(0)
    }

    /// Whether no Secret is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has completed (before it, a missing Secret proves nothing).
    pub fn is_listed(&self) -> bool {
        self.inner.state.read().map(|s| s.listed).unwrap_or(false)
    }

    /// Wait until the first list has completed.
    pub async fn wait_until_listed(&self) {
        loop {
            // Created before the check: a completion in between still wakes it.
            let listed = self.inner.listed.notified();
            if self.is_listed() {
                return;
            }
            listed.await;
        }
    }

    /// Apply one event of the Secret watch.
    pub fn apply_watcher_event(&self, ev: &kube::runtime::watcher::Event<WatchedSecret>) {
        use kube::runtime::watcher::Event;
        let Ok(mut state) = self.inner.state.write() else {
            return;
        };
        match ev {
            Event::Apply(s) => {
                state.live.insert(
                    crate::compact::object_key(s.namespace(), s.name()),
                    s.record.clone(),
                );
            }
            Event::Delete(s) => {
                state
                    .live
                    .remove(&crate::compact::object_key(s.namespace(), s.name()));
            }
            Event::Init => state.relisting = Some(HashMap::new()),
            Event::InitApply(s) => {
                let key = crate::compact::object_key(s.namespace(), s.name());
                match state.relisting.as_mut() {
                    Some(buf) => buf.insert(key, s.record.clone()),
                    None => state.live.insert(key, s.record.clone()),
                };
            }
            Event::InitDone => {
                if let Some(buf) = state.relisting.take() {
                    state.live = buf;
                }
                state.listed = true;
                self.inner.listed.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, OwnerReference,
    };

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn secret() -> Secret {
        let data = BTreeMap::from([
            ("a".to_string(), ByteString(b"hi".to_vec())),
            ("b".to_string(), ByteString(b"there".to_vec())),
        ]);
        let hash = eso_mapping::data_hash(&BTreeMap::from([
            ("a".to_string(), b"hi".to_vec()),
            ("b".to_string(), b"there".to_vec()),
        ]));
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("team".into()),
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
                labels: map(&[
                    (eso_api::well_known::LABEL_MANAGED, "true"),
                    ("app", "web"),
                    (
                        eso_api::well_known::LABEL_CREATED_BY,
                        &eso_mapping::created_by_label("team", "es"),
                    ),
                ]),
                annotations: map(&[(ANNOTATION_DATA_HASH, &hash), ("note", "x")]),
                owner_references: Some(vec![
                    OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: "not-controller".into(),
                        uid: "u-0".into(),
                        controller: None,
                        block_owner_deletion: None,
                    },
                    OwnerReference {
                        api_version: "external-secrets.io/v1".into(),
                        kind: "ExternalSecret".into(),
                        name: "es".into(),
                        uid: "u-es".into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    },
                ]),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some(format!("{FIELD_MANAGER_PREFIX}/es")),
                    operation: Some("Apply".into()),
                    fields_v1: Some(FieldsV1(serde_json::json!({
                        "f:data": {"f:a": {}, "f:b": {}},
                        "f:metadata": {"f:labels": {"f:app": {}}, "f:annotations": {"f:note": {}}}
                    }))),
                    ..ManagedFieldsEntry::default()
                }]),
                ..ObjectMeta::default()
            },
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    #[tokio::test]
    async fn the_cache_follows_the_watch_and_replaces_its_contents_on_a_relist() {
        use kube::runtime::watcher::Event;
        let named = |ns: &str, name: &str| {
            let mut s = secret();
            s.metadata.namespace = Some(ns.into());
            s.metadata.name = Some(name.into());
            WatchedSecret::of(&s)
        };
        let cache = SecretCache::default();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_until_listed().await }
        });
        cache.apply_watcher_event(&Event::Init);
        cache.apply_watcher_event(&Event::InitApply(named("a", "one")));
        assert!(
            !cache.is_listed() && cache.get("a", "one").is_none(),
            "not before the end"
        );
        cache.apply_watcher_event(&Event::InitDone);
        assert!(cache.is_listed());
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .is_ok(),
            "the first list wakes the waiter"
        );
        cache.apply_watcher_event(&Event::Apply(named("a", "two")));
        cache.apply_watcher_event(&Event::Apply(named("b", "one")));
        assert_eq!(cache.len(), 3);
        let mut in_a: Vec<String> = cache
            .in_namespace("a")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        in_a.sort();
        assert_eq!(in_a, ["one", "two"]);
        assert_eq!(
            cache.get("b", "one").and_then(|r| r.uid()).as_deref(),
            Some("u-1")
        );
        cache.apply_watcher_event(&Event::Delete(named("a", "two")));
        assert!(cache.get("a", "two").is_none());
        // A relist that no longer lists "a/one" (deleted while the watch was down): the old
        // view holds until it completes, then only what it listed is left.
        cache.apply_watcher_event(&Event::Init);
        cache.apply_watcher_event(&Event::InitApply(named("b", "one")));
        assert!(cache.get("a", "one").is_some());
        cache.apply_watcher_event(&Event::InitDone);
        assert!(cache.get("a", "one").is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_record_answers_what_the_secret_would() {
        let s = secret();
        let w = WatchedSecret::of(&s);
        let r = w.record();
        assert_eq!(
            (w.name(), w.namespace(), r.uid().as_deref()),
            ("db", "team", Some("u-1"))
        );
        assert!(r.managed() && r.is_valid());
        assert_eq!(r.data_key_count(), 2);
        assert_eq!(r.type_(), "Opaque");
        assert!(!r.immutable() && !r.allow_adoption());
        // Every label and annotation pair is found; a changed value or a missing key is not.
        for (k, v) in s.metadata.labels.iter().flatten() {
            assert!(r.has_label(k, v), "{k}");
            assert!(!r.has_label(k, &format!("{v}-changed")), "{k}");
        }
        for (k, v) in s.metadata.annotations.iter().flatten() {
            assert!(r.has_annotation(k, v), "{k}");
            assert!(!r.has_label(k, v), "annotations are not labels: {k}");
        }
        assert!(!r.has_label("missing", "true"));
        // The controller reference, not the first one.
        let c = r.controller().unwrap();
        assert_eq!(
            (c.kind(), c.api_version(), c.name(), c.uid()),
            ("ExternalSecret", "external-secrets.io/v1", "es", "u-es")
        );
        assert!(r.controlled_by_external_secret("es"));
        assert!(!r.controlled_by_external_secret("other"));
        assert!(r.created_by_is(&eso_mapping::created_by_label("team", "es")));
        assert!(!r.created_by_is(&eso_mapping::created_by_label("team", "other")));
        // The owned digest is the one computed from managedFields, per manager.
        let manager = format!("{FIELD_MANAGER_PREFIX}/es");
        assert_eq!(r.owned_digest(&manager), Owned::of(&s, &manager).digest());
        assert_eq!(
            r.owned_digest(&format!("{FIELD_MANAGER_PREFIX}/other")),
            Owned::default().digest()
        );
        let hash = s.metadata.annotations.as_ref().unwrap()[ANNOTATION_DATA_HASH].clone();
        assert!(r.observed_hash_is(&hash));
        assert_eq!(r.observed_hash(), hash);
        assert_eq!(r.annotated_hash(), Some(hash));
    }

    #[test]
    fn validity_follows_the_label_and_the_hash_annotation() {
        let mut s = secret();
        s.metadata.labels = map(&[]);
        assert!(!CachedSecret::of(&s).is_valid(), "no managed label");
        let mut s = secret();
        s.metadata.annotations = map(&[(ANNOTATION_DATA_HASH, "not-a-hash")]);
        let r = CachedSecret::of(&s);
        assert!(!r.is_valid(), "hash does not match the data");
        assert_eq!(r.annotated_hash().as_deref(), Some("not-a-hash"));
        let mut s = secret();
        // Uppercase hex is another text, not the same digest.
        let upper = s.metadata.annotations.as_ref().unwrap()[ANNOTATION_DATA_HASH].to_uppercase();
        s.metadata.annotations = map(&[(ANNOTATION_DATA_HASH, &upper)]);
        assert!(!CachedSecret::of(&s).is_valid());
        let mut s = secret();
        s.data
            .as_mut()
            .unwrap()
            .insert("c".into(), ByteString(b"new".to_vec()));
        assert!(
            !CachedSecret::of(&s).is_valid(),
            "data edited behind our back"
        );
    }

    #[test]
    fn flags_and_type_are_kept() {
        let mut s = secret();
        s.immutable = Some(true);
        s.type_ = Some("kubernetes.io/tls".into());
        s.metadata.annotations = map(&[
            (crate::ownership::ANNOTATION_ALLOW_ADOPTION, "true"),
            (crate::rollout::RELOADER_MATCH, " true "),
            (crate::rollout::RELOADER_IGNORE, "false"),
        ]);
        s.metadata.owner_references = None;
        let r = CachedSecret::of(&s);
        assert!(r.immutable() && r.allow_adoption() && r.reloader_match() && !r.reloader_ignore());
        assert_eq!(r.type_(), "kubernetes.io/tls");
        assert!(r.controller().is_none());
        assert!(!r.managed() || !r.is_valid());
    }

    #[test]
    fn values_are_not_kept() {
        let r = CachedSecret::of(&secret());
        let debug = format!("{r:?}");
        assert!(
            !debug.contains("there") && !debug.contains("hi\""),
            "{debug}"
        );
    }
}
