//! Opt-in rollout of the workloads (Deployments, StatefulSets, DaemonSets) whose Secrets
//! changed: environment variables never change in a running pod, so when the data of a Secret
//! this operator manages changes, the workloads that asked for it get a new rollout.
//!
//! ## Opting in (annotations on the workload's own metadata)
//! - [`ANNOTATION_AUTO`]`: "true"`: every Secret the pod template references
//!   (`env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`, `volumes[].secret`,
//!   `volumes[].projected.sources[].secret`, in containers and init containers).
//! - [`ANNOTATION_SECRETS`]`: "a,b"`: these Secrets, referenced by the template or not. Each
//!   entry is a name or an anchored regular expression (`db-.*`).
//! - Stakater Reloader's annotations, so a team can remove Reloader without editing manifests:
//!   [`RELOADER_AUTO`] / [`RELOADER_SECRET_AUTO`] `"true"` (like ours), [`RELOADER_SECRET_RELOAD`]
//!   (like [`ANNOTATION_SECRETS`]), [`RELOADER_SEARCH`]` "true"` (referenced Secrets annotated
//!   [`RELOADER_MATCH`]` "true"`), [`RELOADER_IGNORE`]` "true"` on a Secret (never triggers), and
//!   [`RELOADER_AUTO`]` "false"` (turns Reloader's annotations off for the workload).
//!
//! ## What triggers, and what a rollout is
//! Only Secrets in the operator's managed-Secret cache (labelled
//! `reconcile.external-secrets.io/managed=true`), and only when their
//! `reconcile.external-secrets.io/data-hash` changed: a no-op refresh, a label, annotation or
//! status change never rolls anything. Each tracked Secret is condensed to a token, a digest of
//! its uid and data hash (the uid keys it, so someone who can read the workload but not the
//! Secret cannot test guesses of a value against it). The tokens the pods were last started with
//! are recorded on the workload's metadata ([`ANNOTATION_STATE`], `name=token,…`); a rollout is
//! one merge patch that sets [`ANNOTATION_TEMPLATE_DIGEST`] on the pod template (the workload's
//! own strategy, PodDisruptionBudgets and `kubectl rollout undo` then behave as usual) together
//! with the new record.
//!
//! - A workload seen for the first time (just opted in, or the feature just enabled) gets its
//!   record written without a rollout: enabling the feature restarts nothing.
//! - An operator restart recomputes the same tokens from the same Secrets: nothing happens.
//! - `kubectl rollout undo` reverts the template, not the record: no roll forward again.
//! - A tracked Secret that appears (created after the workload) is recorded without a rollout
//!   (Reloader's `reloadOnCreate=false`); one that is deleted keeps its token (no rollout;
//!   re-created, it has a new uid, so it counts as changed).
//!
//! Decisions are made from caches; before writing, the workload is read again and the patch
//! carries its `resourceVersion`, so a stale cache costs a read, never a second rollout. A burst
//! of Secret changes is coalesced per workload (see [`RolloutConfig::debounce`]); rollouts are
//! rate-limited per namespace; each one records a Normal Event on the workload (`kubectl
//! describe` shows it) and counts in `eso_workload_rollouts_total`.
//!
//! ## Memory
//! Workloads are watched through [`WorkloadView`], a projection that deserializes only the
//! metadata and the parts of the pod template that name Secrets; only opted-in workloads are kept
//! ([`Tracked`]), so thousands of other Deployments cost next to nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::Recorder;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicResourceScope};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::Metrics;
use crate::secrets::{CachedSecret, SecretCache};

/// Workload annotation: `"true"` rolls the workload when any managed Secret its pod template
/// references changes.
pub const ANNOTATION_AUTO: &str = "external-secrets.io/rollout-on-secret-change";
/// Workload annotation: a comma-separated list of Secret names (or anchored regular
/// expressions) whose change rolls the workload.
pub const ANNOTATION_SECRETS: &str = "external-secrets.io/rollout-secrets";
/// Workload annotation written by the operator: the tokens of the tracked Secrets the running
/// pods were started with (`name=token,…`; tokens are keyed digests, never values).
pub const ANNOTATION_STATE: &str = "external-secrets.io/rollout-state";
/// Pod-template annotation written by the operator at a rollout: a digest of
/// [`ANNOTATION_STATE`]. Changing it is what starts the new pods.
pub const ANNOTATION_TEMPLATE_DIGEST: &str = "external-secrets.io/secrets-digest";

/// Reloader: `"true"` every referenced Secret (and ConfigMap, not handled here); `"false"`
/// disables Reloader's annotations for the workload.
pub const RELOADER_AUTO: &str = "reloader.stakater.com/auto";
/// Reloader: `"true"` every referenced Secret.
pub const RELOADER_SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
/// Reloader: a comma-separated list of Secret names (or patterns).
pub const RELOADER_SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
/// Reloader: `"true"` referenced Secrets annotated [`RELOADER_MATCH`].
pub const RELOADER_SEARCH: &str = "reloader.stakater.com/search";
/// Reloader, on a Secret: `"true"` makes it count for [`RELOADER_SEARCH`] workloads.
pub const RELOADER_MATCH: &str = "reloader.stakater.com/match";
/// Reloader, on a Secret: `"true"` means its changes never roll anything.
pub const RELOADER_IGNORE: &str = "reloader.stakater.com/ignore";

/// Counter family: rollouts started, by namespace and kind.
pub const METRIC_ROLLOUTS: &str = "eso_workload_rollouts_total";
/// Gauge family: opted-in workloads tracked.
pub const METRIC_TRACKED: &str = "eso_workload_rollout_tracked";

/// Rollout controller settings (non-exhaustive: start from `default()` and use the `with_*`
/// setters).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RolloutConfig {
    /// A workload is looked at this long after the first Secret change that concerns it, so a
    /// burst of changes (several Secrets of one ExternalSecret refresh, several ExternalSecrets
    /// of one remote edit) becomes one rollout.
    pub debounce: Duration,
    /// Rollouts per second per namespace (token bucket refill).
    pub namespace_qps: f64,
    /// Rollouts a namespace may start at once (token bucket size).
    pub namespace_burst: u32,
    /// Workloads evaluated (read and patched) at once.
    pub concurrency: usize,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_secs(2),
            namespace_qps: 1.0,
            namespace_burst: 10,
            concurrency: 4,
        }
    }
}

/// The workload kinds handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet];

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    /// The API resource (apps/v1).
    pub fn api_resource(self) -> ApiResource {
        let plural = match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
        };
        ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: self.as_str().into(),
            plural: plural.into(),
        }
    }
}

/// A workload as watched: its metadata and the parts of its pod template that name Secrets.
/// Every other field of the object is skipped while deserializing.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WorkloadView {
    /// The workload's metadata: name, namespace, uid, resourceVersion and the annotations this
    /// controller reads ([`is_read_annotation`]); everything else (managedFields, labels, the
    /// other annotations such as kubectl's last-applied-configuration) is skipped unallocated.
    #[serde(default, deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    /// The spec, projected.
    #[serde(default)]
    pub spec: Option<ViewSpec>,
}

/// Whether this controller reads the workload annotation `key` (others are not kept).
pub fn is_read_annotation(key: &str) -> bool {
    matches!(
        key,
        ANNOTATION_AUTO
            | ANNOTATION_SECRETS
            | ANNOTATION_STATE
            | RELOADER_AUTO
            | RELOADER_SECRET_AUTO
            | RELOADER_SECRET_RELOAD
            | RELOADER_SEARCH
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    annotations: Option<ReadAnnotations>,
}

/// An annotation map that keeps only [`is_read_annotation`] keys; other values are skipped
/// without being allocated.
struct ReadAnnotations(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for ReadAnnotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ReadAnnotations;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    if is_read_annotation(&k) {
                        let v: String = m.next_value()?;
                        out.insert(k.into_owned(), v);
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(ReadAnnotations(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn lean_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = LeanMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        annotations: m.annotations.map(|a| a.0),
        ..ObjectMeta::default()
    })
}

/// `spec`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewSpec {
    /// `spec.template`, projected.
    #[serde(default)]
    pub template: Option<ViewTemplate>,
}

/// `spec.template`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewTemplate {
    /// `spec.template.spec`, projected.
    #[serde(default)]
    pub spec: Option<ViewPodSpec>,
}

/// A pod spec, projected to its Secret references.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewPodSpec {
    /// Containers.
    #[serde(default)]
    pub containers: Option<Vec<ViewContainer>>,
    /// Init containers.
    #[serde(default)]
    pub init_containers: Option<Vec<ViewContainer>>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Option<Vec<ViewVolume>>,
}

/// A container, projected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewContainer {
    /// `env[]`.
    #[serde(default)]
    pub env: Option<Vec<ViewEnv>>,
    /// `envFrom[]`.
    #[serde(default)]
    pub env_from: Option<Vec<ViewEnvFrom>>,
}

/// `env[]`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewEnv {
    /// `valueFrom`.
    #[serde(default)]
    pub value_from: Option<ViewEnvSource>,
}

/// `env[].valueFrom`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewEnvSource {
    /// `secretKeyRef`.
    #[serde(default)]
    pub secret_key_ref: Option<NameRef>,
}

/// `envFrom[]`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewEnvFrom {
    /// `secretRef`.
    #[serde(default)]
    pub secret_ref: Option<NameRef>,
}

/// A `{name: …}` reference.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NameRef {
    /// The name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A volume, projected.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewVolume {
    /// `secret`.
    #[serde(default)]
    pub secret: Option<ViewSecretVolume>,
    /// `projected`.
    #[serde(default)]
    pub projected: Option<ViewProjected>,
}

/// `volumes[].secret`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewSecretVolume {
    /// `secretName`.
    #[serde(default)]
    pub secret_name: Option<String>,
}

/// `volumes[].projected`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewProjected {
    /// `sources[]`.
    #[serde(default)]
    pub sources: Option<Vec<ViewProjection>>,
}

/// `volumes[].projected.sources[]`, projected.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ViewProjection {
    /// `secret`.
    #[serde(default)]
    pub secret: Option<NameRef>,
}

impl Resource for WorkloadView {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl WorkloadView {
    /// Every Secret name the pod template references.
    pub fn referenced_secrets(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(pod) = self
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
        else {
            return out;
        };
        let containers = pod
            .containers
            .iter()
            .flatten()
            .chain(pod.init_containers.iter().flatten());
        for c in containers {
            for e in c.env.iter().flatten() {
                if let Some(n) = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .and_then(|r| r.name.clone())
                {
                    out.insert(n);
                }
            }
            for e in c.env_from.iter().flatten() {
                if let Some(n) = e.secret_ref.as_ref().and_then(|r| r.name.clone()) {
                    out.insert(n);
                }
            }
        }
        for v in pod.volumes.iter().flatten() {
            if let Some(n) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                out.insert(n);
            }
            for p in v
                .projected
                .as_ref()
                .and_then(|p| p.sources.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(n) = p.secret.as_ref().and_then(|s| s.name.clone()) {
                    out.insert(n);
                }
            }
        }
        out.retain(|n| !n.is_empty());
        out
    }
}

/// One entry of an explicit list: a literal name or an anchored pattern.
#[derive(Clone, Debug)]
pub enum NamePattern {
    /// A Secret name.
    Name(String),
    /// An anchored regular expression over Secret names.
    Pattern(regex::Regex),
}

impl NamePattern {
    fn parse(entry: &str) -> Option<Self> {
        let e = entry.trim();
        if e.is_empty() {
            return None;
        }
        // Secret names are DNS subdomains: lowercase alphanumerics, '-' and '.'. Anything else
        // (a '.' only matters as a pattern when other metacharacters are there) is a pattern.
        let literal = e
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if literal {
            return Some(Self::Name(e.to_string()));
        }
        regex::Regex::new(&format!("^(?:{e})$"))
            .ok()
            .map(Self::Pattern)
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Name(n) => n == name,
            Self::Pattern(r) => r.is_match(name),
        }
    }
}

/// How a workload chose its Secrets.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Every referenced Secret.
    pub auto: bool,
    /// Referenced Secrets annotated `reloader.stakater.com/match: "true"`.
    pub search: bool,
    /// Listed Secrets (referenced or not).
    pub listed: Vec<NamePattern>,
    /// Entries that could not be parsed (reported in a log line; they match nothing).
    pub invalid: Vec<String>,
}

impl Selection {
    /// The selection a workload's annotations ask for; `None`: not opted in.
    pub fn of(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let is_true = |k: &str| annotations.get(k).is_some_and(|v| v.trim() == "true");
        let mut s = Selection {
            auto: is_true(ANNOTATION_AUTO),
            ..Selection::default()
        };
        let mut lists: Vec<&String> = annotations.get(ANNOTATION_SECRETS).into_iter().collect();
        // Reloader's annotations, unless `reloader.stakater.com/auto: "false"`.
        let reloader_off = annotations
            .get(RELOADER_AUTO)
            .is_some_and(|v| v.trim() == "false");
        if !reloader_off {
            s.auto |= is_true(RELOADER_AUTO) || is_true(RELOADER_SECRET_AUTO);
            s.search = is_true(RELOADER_SEARCH);
            lists.extend(annotations.get(RELOADER_SECRET_RELOAD));
        }
        for entry in lists.iter().flat_map(|l| l.split(',')) {
            match NamePattern::parse(entry) {
                Some(p) => s.listed.push(p),
                None if entry.trim().is_empty() => {}
                None => s.invalid.push(entry.trim().to_string()),
            }
        }
        (s.auto || s.search || !s.listed.is_empty()).then_some(s)
    }

    fn has_patterns(&self) -> bool {
        self.listed
            .iter()
            .any(|p| matches!(p, NamePattern::Pattern(_)))
    }

    /// Whether a change of Secret `name` (with `annotations`) concerns the workload.
    fn tracks(
        &self,
        name: &str,
        referenced: &BTreeSet<String>,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let ann = |k: &str| {
            annotations
                .and_then(|a| a.get(k))
                .is_some_and(|v| v.trim() == "true")
        };
        if ann(RELOADER_IGNORE) {
            return false;
        }
        let is_ref = referenced.contains(name);
        (self.auto && is_ref)
            || (self.search && is_ref && ann(RELOADER_MATCH))
            || self.listed.iter().any(|p| p.matches(name))
    }

    /// Whether Secret `name` may concern the workload (before its annotations are known).
    fn may_track(&self, name: &str, referenced: &BTreeSet<String>) -> bool {
        ((self.auto || self.search) && referenced.contains(name))
            || self.listed.iter().any(|p| p.matches(name))
    }
}

/// An opted-in workload, as kept in memory.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// Its uid (for Events).
    pub uid: String,
    /// What it asked for.
    pub selection: Selection,
    /// The Secrets its pod template references.
    pub referenced: BTreeSet<String>,
    /// The record of [`ANNOTATION_STATE`], if any.
    pub state: Option<String>,
}

impl Tracked {
    /// Project a workload; `None` when it did not opt in.
    pub fn of(w: &WorkloadView) -> Option<Self> {
        let annotations = w.metadata.annotations.as_ref()?;
        let selection = Selection::of(annotations)?;
        Some(Tracked {
            uid: w.metadata.uid.clone().unwrap_or_default(),
            selection,
            referenced: w.referenced_secrets(),
            state: annotations.get(ANNOTATION_STATE).cloned(),
        })
    }
}

/// A workload's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The token of one managed Secret: a digest of its uid and data hash (16 hex digits).
pub fn token(uid: &str, data_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"eso-rs rollout token v1\0");
    h.update(uid.as_bytes());
    h.update([0]);
    h.update(data_hash.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Parse [`ANNOTATION_STATE`]; `None` when absent or unreadable (then it is written afresh,
/// without a rollout).
pub fn parse_state(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=')?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Some(out)
}

/// Render [`ANNOTATION_STATE`].
pub fn render_state(state: &BTreeMap<String, String>) -> String {
    state
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The pod-template digest of a record.
pub fn template_digest(state: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(render_state(state).as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// What to do with a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changed.
    Nothing,
    /// Write the record only (first sight, a Secret appeared, references changed): no rollout.
    Record(BTreeMap<String, String>),
    /// Roll: the Secrets named changed.
    Rollout {
        /// The new record.
        state: BTreeMap<String, String>,
        /// The tracked Secrets whose data changed.
        changed: Vec<String>,
    },
}

/// The managed Secrets as the decision sees them: name → (uid, data hash, annotations).
pub trait SecretLookup {
    /// The managed Secret `name` in `ns`: its token and annotations.
    fn managed(&self, ns: &str, name: &str) -> Option<(String, BTreeMap<String, String>)>;
    /// Names of the managed Secrets in `ns` (for patterns).
    fn names(&self, ns: &str) -> Vec<String>;
}

impl SecretLookup for SecretCache {
    fn managed(&self, ns: &str, name: &str) -> Option<(String, BTreeMap<String, String>)> {
        let s = self.get(ns, name)?;
        cached_token(&s)
    }

    fn names(&self, ns: &str) -> Vec<String> {
        self.in_namespace(ns)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }
}

/// The token and annotations of a Secret this operator manages; `None` for any other Secret.
/// The annotations the decision reads (Reloader's `match` and `ignore`) are kept in the cached
/// record as flags.
fn cached_token(s: &CachedSecret) -> Option<(String, BTreeMap<String, String>)> {
    let hash = s.annotated_hash()?;
    let mut annotations = BTreeMap::new();
    if s.reloader_match() {
        annotations.insert(RELOADER_MATCH.to_string(), "true".to_string());
    }
    if s.reloader_ignore() {
        annotations.insert(RELOADER_IGNORE.to_string(), "true".to_string());
    }
    s.managed().then(|| {
        (
            token(s.uid().as_deref().unwrap_or_default(), &hash),
            annotations,
        )
    })
}

/// Decide for one workload in `ns`, from the managed Secrets.
pub fn decide(ns: &str, t: &Tracked, secrets: &impl SecretLookup) -> Decision {
    let mut candidates: BTreeSet<String> = t
        .referenced
        .iter()
        .filter(|n| t.selection.may_track(n, &t.referenced))
        .cloned()
        .collect();
    for p in &t.selection.listed {
        if let NamePattern::Name(n) = p {
            candidates.insert(n.clone());
        }
    }
    if t.selection.has_patterns() {
        candidates.extend(
            secrets
                .names(ns)
                .into_iter()
                .filter(|n| t.selection.may_track(n, &t.referenced)),
        );
    }
    let current: BTreeMap<String, String> = candidates
        .iter()
        .filter_map(|n| {
            let (tok, ann) = secrets.managed(ns, n)?;
            t.selection
                .tracks(n, &t.referenced, Some(&ann))
                .then(|| (n.clone(), tok))
        })
        .collect();
    let Some(before) = t.state.as_deref().and_then(parse_state) else {
        return Decision::Record(current);
    };
    let mut changed = Vec::new();
    let mut next = BTreeMap::new();
    for n in &candidates {
        match (current.get(n), before.get(n)) {
            (Some(now), Some(was)) => {
                if now != was {
                    changed.push(n.clone());
                }
                next.insert(n.clone(), now.clone());
            }
            // Appeared (or became managed / tracked): recorded, no rollout.
            (Some(now), None) => {
                next.insert(n.clone(), now.clone());
            }
            // Gone (deleted, no longer managed or tracked): keep what the pods have, so the
            // same data coming back is no change.
            (None, Some(was)) => {
                next.insert(n.clone(), was.clone());
            }
            (None, None) => {}
        }
    }
    if !changed.is_empty() {
        Decision::Rollout {
            state: next,
            changed,
        }
    } else if next != before {
        Decision::Record(next)
    } else {
        Decision::Nothing
    }
}

/// The opted-in workloads, by namespace.
#[derive(Debug, Default)]
struct Index {
    by_ns: HashMap<String, HashMap<(Kind, String), Tracked>>,
    /// During a relist of a kind: the keys seen so far.
    relist: HashMap<Kind, HashSet<(String, String)>>,
}

impl Index {
    fn get(&self, k: &Key) -> Option<Tracked> {
        self.by_ns
            .get(&k.namespace)
            .and_then(|m| m.get(&(k.kind, k.name.clone())))
            .cloned()
    }

    fn put(&mut self, k: &Key, t: Option<Tracked>) {
        match t {
            Some(t) => {
                self.by_ns
                    .entry(k.namespace.clone())
                    .or_default()
                    .insert((k.kind, k.name.clone()), t);
            }
            None => {
                if let Some(m) = self.by_ns.get_mut(&k.namespace) {
                    m.remove(&(k.kind, k.name.clone()));
                    if m.is_empty() {
                        self.by_ns.remove(&k.namespace);
                    }
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.by_ns.values().map(HashMap::len).sum()
    }

    /// The workloads in `ns` a change of Secret `name` may concern.
    fn concerned(&self, ns: &str, name: &str) -> Vec<Key> {
        self.by_ns
            .get(ns)
            .map(|m| {
                m.iter()
                    .filter(|(_, t)| t.selection.may_track(name, &t.referenced))
                    .map(|((kind, n), _)| Key {
                        kind: *kind,
                        namespace: ns.to_string(),
                        name: n.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn relist_done(&mut self, kind: Kind) {
        let seen = self.relist.remove(&kind).unwrap_or_default();
        let mut drop = Vec::new();
        for (ns, m) in &self.by_ns {
            for (k, n) in m.keys() {
                if *k == kind && !seen.contains(&(ns.clone(), n.clone())) {
                    drop.push(Key {
                        kind,
                        namespace: ns.clone(),
                        name: n.clone(),
                    });
                }
            }
        }
        for k in drop {
            self.put(&k, None);
        }
    }
}

/// Pending evaluations: key → when it is due (the earliest request wins, so a burst does not
/// postpone it forever).
#[derive(Debug, Default)]
struct Queue {
    due: Mutex<HashMap<Key, Instant>>,
    wake: tokio::sync::Notify,
}

impl Queue {
    fn push(&self, k: Key, after: Duration) {
        let at = Instant::now() + after;
        if let Ok(mut d) = self.due.lock() {
            let e = d.entry(k).or_insert(at);
            *e = (*e).min(at);
        }
        self.wake.notify_one();
    }

    /// Take what is due; the earliest future due time.
    fn take_due(&self) -> (Vec<Key>, Option<Instant>) {
        let now = Instant::now();
        let Ok(mut d) = self.due.lock() else {
            return (Vec::new(), None);
        };
        let ready: Vec<Key> = d
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &ready {
            d.remove(k);
        }
        (ready, d.values().min().copied())
    }
}

/// A token bucket per namespace.
#[derive(Debug)]
struct Limiter {
    qps: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    fn new(qps: f64, burst: u32) -> Self {
        Self {
            qps: if qps > 0.0 { qps } else { f64::INFINITY },
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `ns`, or say how long to wait for one.
    fn take(&self, ns: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, at) = b.entry(ns.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.qps).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - *tokens) / self.qps).clamp(0.01, 3600.0),
            ))
        }
    }
}

/// Errors of one workload evaluation (logged; the workload is looked at again later).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Reading or patching the workload failed.
    #[error("could not {action} {kind} {namespace}/{name}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The workload kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// The rollout controller's shared state.
struct Controller {
    client: Client,
    config: RolloutConfig,
    secrets: SecretCache,
    index: Mutex<Index>,
    queue: Queue,
    limiter: Limiter,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl Controller {
    fn api(&self, kind: Kind, ns: &str) -> Api<WorkloadView> {
        Api::namespaced_with(self.client.clone(), ns, &kind.api_resource())
    }

    fn tracked(&self, k: &Key) -> Option<Tracked> {
        self.index.lock().ok().and_then(|i| i.get(k))
    }

    fn set_tracked(&self, k: &Key, t: Option<Tracked>) {
        if let Ok(mut i) = self.index.lock() {
            i.put(k, t);
            self.metrics.set(METRIC_TRACKED, vec![], i.len() as f64);
        }
    }

    /// A workload event: keep (or drop) its projection and look at it now.
    fn on_workload(&self, kind: Kind, w: &WorkloadView, relist: bool) {
        let key = Key {
            kind,
            namespace: w.namespace().unwrap_or_default(),
            name: w.name_any(),
        };
        if relist && let Ok(mut i) = self.index.lock() {
            i.relist
                .entry(kind)
                .or_default()
                .insert((key.namespace.clone(), key.name.clone()));
        }
        let t = Tracked::of(w);
        if let Some(t) = &t
            && !t.selection.invalid.is_empty()
        {
            debug!(kind = kind.as_str(), ns = %key.namespace, name = %key.name,
                invalid = ?t.selection.invalid, "rollout: unusable entries in the Secret list (they match nothing)");
        }
        let opted_in = t.is_some();
        self.set_tracked(&key, t);
        if opted_in {
            self.queue.push(key, Duration::ZERO);
        }
    }

    /// A managed Secret changed (or appeared, or left): the workloads it may concern are looked
    /// at after the debounce.
    fn on_secret(&self, ns: &str, name: &str) {
        let keys = self
            .index
            .lock()
            .map(|i| i.concerned(ns, name))
            .unwrap_or_default();
        for k in keys {
            self.queue.push(k, self.config.debounce);
        }
    }

    async fn evaluate(&self, key: Key) -> Result<(), RolloutError> {
        let Some(t) = self.tracked(&key) else {
            return Ok(());
        };
        if decide(&key.namespace, &t, &self.secrets) == Decision::Nothing {
            return Ok(());
        }
        // Something to write: decide again on a fresh read of the workload.
        let kube_err = |action: &'static str| {
            let key = key.clone();
            move |source| RolloutError::Kube {
                action,
                kind: key.kind.as_str(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                source,
            }
        };
        let api = self.api(key.kind, &key.namespace);
        let Some(fresh) = api.get_opt(&key.name).await.map_err(kube_err("read"))? else {
            self.set_tracked(&key, None);
            return Ok(());
        };
        let Some(t) = Tracked::of(&fresh) else {
            self.set_tracked(&key, None);
            return Ok(());
        };
        let decision = decide(&key.namespace, &t, &self.secrets);
        let (state, changed) = match decision {
            Decision::Nothing => {
                self.set_tracked(&key, Some(t));
                return Ok(());
            }
            Decision::Record(state) => (state, Vec::new()),
            Decision::Rollout { state, changed } => {
                if let Err(wait) = self.limiter.take(&key.namespace) {
                    debug!(kind = key.kind.as_str(), ns = %key.namespace, name = %key.name,
                        ?wait, "rollout: namespace rate limit, later");
                    self.queue.push(key, wait);
                    return Ok(());
                }
                (state, changed)
            }
        };
        let rendered = render_state(&state);
        let mut patch = serde_json::json!({
            "metadata": {
                "resourceVersion": fresh.metadata.resource_version,
                "annotations": { ANNOTATION_STATE: rendered },
            }
        });
        if !changed.is_empty() {
            patch["spec"] = serde_json::json!({
                "template": { "metadata": { "annotations": {
                    ANNOTATION_TEMPLATE_DIGEST: template_digest(&state),
                } } }
            });
        }
        match api
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(after) => {
                self.set_tracked(&key, Tracked::of(&after));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Changed since the read: look again.
                self.queue.push(key, Duration::from_millis(200));
                return Ok(());
            }
            Err(e) => return Err(kube_err("patch")(e)),
        }
        if changed.is_empty() {
            debug!(kind = key.kind.as_str(), ns = %key.namespace, name = %key.name,
                "rollout: recorded the tracked Secrets (no rollout)");
            return Ok(());
        }
        let list = changed.join(", ");
        info!(kind = key.kind.as_str(), ns = %key.namespace, name = %key.name,
            secrets = %list, "rollout: restarting because managed Secrets changed");
        self.metrics.inc(
            METRIC_ROLLOUTS,
            vec![
                ("namespace", key.namespace.clone()),
                ("kind", key.kind.as_str().to_string()),
            ],
        );
        let note = if changed.len() == 1 {
            format!("restarted because Secret {list} changed")
        } else {
            format!("restarted because Secrets {list} changed")
        };
        let ev = Event {
            type_: EventType::Normal,
            reason: "SecretChanged".into(),
            note: Some(note),
            action: "Rollout".into(),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some(key.kind.as_str().into()),
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            uid: Some(t.uid.clone()),
            ..ObjectReference::default()
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            debug!(error = %e, "could not publish the rollout event");
        }
        Ok(())
    }
}

/// The Secret events the rollout controller wants: (namespace, name) of a managed Secret that
/// was applied or deleted. Feed it from the managed-Secret watch.
pub type SecretEvents = futures::channel::mpsc::UnboundedReceiver<(String, String)>;

/// Run the rollout controller until `shutdown` resolves: watch the workloads (in `namespace`,
/// or everywhere), react to `secret_events`, read the managed Secrets from `secrets`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    namespace: Option<String>,
    config: RolloutConfig,
    secrets: SecretCache,
    mut secret_events: SecretEvents,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let ctl = Arc::new(Controller {
        client: client.clone(),
        limiter: Limiter::new(config.namespace_qps, config.namespace_burst),
        config,
        secrets: secrets.clone(),
        index: Mutex::new(Index::default()),
        queue: Queue::default(),
        recorder,
        metrics,
    });
    ctl.metrics.set(METRIC_TRACKED, vec![], 0.0);
    info!("rollout controller: watching Deployments, StatefulSets and DaemonSets");
    let watches = futures::stream::select_all(Kind::ALL.into_iter().map(|kind| {
        let ar = kind.api_resource();
        let api: Api<WorkloadView> = match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        // Small list pages: the transient cost of a page, not of the whole list, and only
        // the projection of each object is ever allocated.
        watcher(api, watcher::Config::default().page_size(100))
            .default_backoff()
            .map(move |ev| (kind, ev))
            .boxed()
    }));
    let workloads = {
        let ctl = ctl.clone();
        watches.for_each(move |(kind, ev)| {
            match ev {
                Ok(watcher::Event::Apply(w)) => ctl.on_workload(kind, &w, false),
                Ok(watcher::Event::InitApply(w)) => ctl.on_workload(kind, &w, true),
                Ok(watcher::Event::Delete(w)) => {
                    let key = Key {
                        kind,
                        namespace: w.namespace().unwrap_or_default(),
                        name: w.name_any(),
                    };
                    ctl.set_tracked(&key, None);
                }
                Ok(watcher::Event::Init) => {
                    if let Ok(mut i) = ctl.index.lock() {
                        i.relist.insert(kind, HashSet::new());
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Ok(mut i) = ctl.index.lock() {
                        i.relist_done(kind);
                    }
                }
                Err(e) => warn!(kind = kind.as_str(), error = %e, "rollout: workload watch"),
            }
            futures::future::ready(())
        })
    };
    let secret_task = {
        let ctl = ctl.clone();
        async move {
            while let Some((ns, name)) = secret_events.next().await {
                ctl.on_secret(&ns, &name);
            }
            futures::future::pending::<()>().await;
        }
    };
    let worker = {
        let ctl = ctl.clone();
        async move {
            // Decide nothing before the managed Secrets are listed.
            secrets.wait_until_listed().await;
            loop {
                let (ready, next) = ctl.queue.take_due();
                if ready.is_empty() {
                    let sleep = next
                        .map(|at| at.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = ctl.queue.wake.notified() => {}
                        _ = tokio::time::sleep(sleep) => {}
                    }
                    continue;
                }
                futures::stream::iter(ready)
                    .for_each_concurrent(ctl.config.concurrency.max(1), |k| {
                        let ctl = ctl.clone();
                        async move {
                            if let Err(e) = ctl.evaluate(k.clone()).await {
                                warn!(error = %e, "rollout");
                                ctl.queue.push(k, Duration::from_secs(5));
                            }
                        }
                    })
                    .await;
            }
        }
    };
    tokio::select! {
        _ = workloads => {},
        _ = secret_task => {},
        _ = worker => {},
        _ = shutdown => {},
    }
    info!("rollout controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake(BTreeMap<String, (String, BTreeMap<String, String>)>);

    impl Fake {
        fn with(mut self, name: &str, uid: &str, hash: &str) -> Self {
            self.0
                .insert(name.into(), (token(uid, hash), BTreeMap::new()));
            self
        }
        fn annotated(mut self, name: &str, k: &str, v: &str) -> Self {
            if let Some(e) = self.0.get_mut(name) {
                e.1.insert(k.into(), v.into());
            }
            self
        }
    }

    impl SecretLookup for Fake {
        fn managed(&self, _: &str, name: &str) -> Option<(String, BTreeMap<String, String>)> {
            self.0.get(name).cloned()
        }
        fn names(&self, _: &str) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    fn workload(annotations: &[(&str, &str)]) -> WorkloadView {
        let spec = serde_json::json!({
            "metadata": {
                "name": "app", "namespace": "ns", "uid": "w1", "labels": {"a": "b"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>(),
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {
                        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
                        "containers": [{
                            "name": "c", "image": "x",
                            "env": [
                                {"name": "A", "value": "plain"},
                                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                            ],
                            "envFrom": [{"secretRef": {"name": "env-all"}}, {"configMapRef": {"name": "cm2"}}],
                        }],
                        "volumes": [
                            {"name": "v1", "secret": {"secretName": "tls"}},
                            {"name": "v2", "projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "cm3"}}]}},
                            {"name": "v3", "emptyDir": {}},
                        ],
                    },
                },
            },
            "status": {"replicas": 3},
        });
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn only_the_annotations_read_are_kept() {
        let w = workload(&[
            (ANNOTATION_AUTO, "true"),
            (
                "kubectl.kubernetes.io/last-applied-configuration",
                "{\"big\":1}",
            ),
        ]);
        let a = w.metadata.annotations.as_ref().unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), [ANNOTATION_AUTO]);
        assert_eq!(w.metadata.name.as_deref(), Some("app"));
        assert_eq!(w.metadata.uid.as_deref(), Some("w1"));
        assert!(w.metadata.managed_fields.is_none() && w.metadata.labels.is_none());
    }

    #[test]
    fn every_kind_of_secret_reference_is_found() {
        let w = workload(&[]);
        let refs: Vec<String> = w.referenced_secrets().into_iter().collect();
        assert_eq!(refs, ["db", "env-all", "init-env", "proj", "tls"]);
        assert!(Tracked::of(&w).is_none(), "not opted in");
    }

    #[test]
    fn annotations_select_secrets() {
        let refs: BTreeSet<String> = ["db", "tls"].into_iter().map(String::from).collect();
        let s = Selection::of(&BTreeMap::from([(ANNOTATION_AUTO.into(), "true".into())])).unwrap();
        assert!(s.tracks("db", &refs, None));
        assert!(!s.tracks("other", &refs, None));
        let s = Selection::of(&BTreeMap::from([(
            ANNOTATION_SECRETS.into(),
            "other, api-.*".into(),
        )]))
        .unwrap();
        assert!(!s.tracks("db", &refs, None));
        assert!(s.tracks("other", &refs, None), "listed, not referenced");
        assert!(s.tracks("api-key", &refs, None), "pattern");
        assert!(!s.tracks("xapi-key", &refs, None), "anchored");
        // Reloader.
        for k in [RELOADER_AUTO, RELOADER_SECRET_AUTO] {
            let s = Selection::of(&BTreeMap::from([(k.into(), "true".into())])).unwrap();
            assert!(s.tracks("db", &refs, None), "{k}");
        }
        let s = Selection::of(&BTreeMap::from([(
            RELOADER_SECRET_RELOAD.into(),
            "tls".into(),
        )]))
        .unwrap();
        assert!(s.tracks("tls", &refs, None) && !s.tracks("db", &refs, None));
        // auto: "false" turns Reloader's annotations off, not ours.
        assert!(
            Selection::of(&BTreeMap::from([
                (RELOADER_AUTO.into(), "false".into()),
                (RELOADER_SECRET_RELOAD.into(), "tls".into()),
            ]))
            .is_none()
        );
        assert!(
            Selection::of(&BTreeMap::from([
                (RELOADER_AUTO.into(), "false".into()),
                (ANNOTATION_AUTO.into(), "true".into()),
            ]))
            .is_some()
        );
        // search + match; ignore.
        let s = Selection::of(&BTreeMap::from([(RELOADER_SEARCH.into(), "true".into())])).unwrap();
        let matched = BTreeMap::from([(RELOADER_MATCH.to_string(), "true".to_string())]);
        assert!(s.tracks("db", &refs, Some(&matched)));
        assert!(!s.tracks("db", &refs, None));
        let s = Selection::of(&BTreeMap::from([(ANNOTATION_AUTO.into(), "true".into())])).unwrap();
        let ignored = BTreeMap::from([(RELOADER_IGNORE.to_string(), "true".to_string())]);
        assert!(!s.tracks("db", &refs, Some(&ignored)));
        assert!(Selection::of(&BTreeMap::from([(ANNOTATION_AUTO.into(), "yes".into())])).is_none());
    }

    fn tracked(state: Option<&str>) -> Tracked {
        let mut t = Tracked::of(&workload(&[(ANNOTATION_AUTO, "true")])).unwrap();
        t.state = state.map(String::from);
        t
    }

    #[test]
    fn decisions_over_time() {
        let secrets = Fake::default()
            .with("db", "u1", "h1")
            .with("tls", "u2", "h2");
        // First sight: record, no rollout.
        let Decision::Record(state) = decide("ns", &tracked(None), &secrets) else {
            panic!("first sight records")
        };
        assert_eq!(state.keys().collect::<Vec<_>>(), ["db", "tls"]);
        let rec = render_state(&state);
        // Unchanged (a restart, a no-op refresh): nothing.
        assert_eq!(
            decide("ns", &tracked(Some(&rec)), &secrets),
            Decision::Nothing
        );
        // The data hash of db changes: rollout naming db.
        let changed = Fake::default()
            .with("db", "u1", "h1b")
            .with("tls", "u2", "h2");
        match decide("ns", &tracked(Some(&rec)), &changed) {
            Decision::Rollout { changed, state } => {
                assert_eq!(changed, ["db"]);
                assert_ne!(template_digest(&state), "");
            }
            d => panic!("{d:?}"),
        }
        // A Secret not referenced: not tracked at all.
        let other = secrets_plus(&secrets, "unrelated");
        assert_eq!(
            decide("ns", &tracked(Some(&rec)), &other),
            Decision::Nothing
        );
        // db deleted: its token is kept, nothing happens; back with the same uid and data:
        // nothing; recreated (new uid): rollout.
        let gone = Fake::default().with("tls", "u2", "h2");
        assert_eq!(decide("ns", &tracked(Some(&rec)), &gone), Decision::Nothing);
        let recreated = Fake::default()
            .with("db", "u9", "h1")
            .with("tls", "u2", "h2");
        assert!(matches!(
            decide("ns", &tracked(Some(&rec)), &recreated),
            Decision::Rollout { .. }
        ));
        // A referenced Secret that appears later: recorded, no rollout.
        let only_tls = Fake::default().with("tls", "u2", "h2");
        let Decision::Record(s1) = decide("ns", &tracked(None), &only_tls) else {
            panic!()
        };
        let Decision::Record(s2) = decide("ns", &tracked(Some(&render_state(&s1))), &secrets)
        else {
            panic!("appeared: record only")
        };
        assert_eq!(s2, state);
        // Reloader's ignore on the changed Secret: no rollout.
        let ignored = Fake::default()
            .with("db", "u1", "h1b")
            .annotated("db", RELOADER_IGNORE, "true")
            .with("tls", "u2", "h2");
        assert!(!matches!(
            decide("ns", &tracked(Some(&rec)), &ignored),
            Decision::Rollout { .. }
        ));
    }

    fn secrets_plus(f: &Fake, name: &str) -> Fake {
        let mut g = Fake(f.0.clone());
        g.0.insert(name.into(), (token("x", "y"), BTreeMap::new()));
        g
    }

    #[test]
    fn tokens_hide_the_data_hash_and_depend_on_the_uid() {
        let t = token("uid-1", "abc");
        assert_eq!(t.len(), 16);
        assert_eq!(t, token("uid-1", "abc"), "stable across restarts");
        assert_ne!(t, token("uid-2", "abc"));
        assert!(!t.contains("abc"));
        let st = parse_state("b=2,a=1").unwrap();
        assert_eq!(render_state(&st), "a=1,b=2");
        assert!(parse_state("garbage").is_none());
        assert_eq!(parse_state("").unwrap().len(), 0);
    }

    #[test]
    fn the_limiter_allows_a_burst_then_waits() {
        let l = Limiter::new(1.0, 3);
        assert!((0..3).all(|_| l.take("a").is_ok()));
        let wait = l.take("a").unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
        assert!(l.take("b").is_ok(), "per namespace");
    }

    #[test]
    fn the_queue_coalesces_a_burst() {
        let q = Queue::default();
        let k = Key {
            kind: Kind::Deployment,
            namespace: "ns".into(),
            name: "a".into(),
        };
        for _ in 0..100 {
            q.push(k.clone(), Duration::ZERO);
        }
        let (ready, next) = q.take_due();
        assert_eq!(ready, [k]);
        assert!(next.is_none());
    }
}
