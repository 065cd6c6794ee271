//! The `ExternalSecret` custom resource (`external-secrets.io/v1`, also served as `v1beta1`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, preserve_unknown_object};

/// Pattern every Go duration string accepted by the API must match (ESO parses these with
/// Go's `time.ParseDuration`). `0` is accepted on its own.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

/// Which remote values become which keys of which target Secret, refreshed every `refreshInterval`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ExternalSecret",
    plural = "externalsecrets",
    namespaced,
    status = "ExternalSecretStatus",
    shortname = "es",
    category = "external-secrets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"StoreType","type":"string","jsonPath":".spec.secretStoreRef.kind"}"#,
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".spec.secretStoreRef.name"}"#,
    printcolumn = r#"{"name":"Refresh Interval","type":"string","jsonPath":".spec.refreshInterval"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Change","type":"date","jsonPath":".status.refreshTime"}"#,
    selectable = ".spec.secretStoreRef.name",
    selectable = ".spec.secretStoreRef.kind",
    selectable = ".spec.target.name",
    selectable = ".spec.refreshInterval"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.data) && size(self.data) > 0) || (has(self.dataFrom) && size(self.dataFrom) > 0)",
        "message": "spec.data or spec.dataFrom must have at least one entry"
    }
]))]
pub struct ExternalSecretSpec {
    /// The store to read from (default for every entry without its own `sourceRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_ref: Option<SecretStoreRef>,
    /// The Secret to create or update, and how.
    #[serde(default)]
    pub target: ExternalSecretTarget,
    /// When to refresh: `CreatedOnce`, `Periodic` (unset behaves the same) or `OnChange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    /// How often to re-read the remote values (Go duration, e.g. `1h`, `15m`, `30s`). `0` reads once.
    #[serde(
        default = "default_refresh_interval",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
    /// Time windows that allow or deny periodic refreshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_windows: Option<SyncWindows>,
    /// Explicit key-by-key mappings; they override keys produced by `dataFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub data: Vec<ExternalSecretData>,
    /// Whole-secret mappings (extract, find), merged in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub data_from: Vec<ExternalSecretDataFromRemoteRef>,
}

fn default_refresh_interval() -> Option<String> {
    Some(DEFAULT_REFRESH_INTERVAL.to_string())
}

/// The CRD default of `spec.refreshInterval`, exactly as ESO writes it.
pub const DEFAULT_REFRESH_INTERVAL: &str = "1h0m0s";

/// A reference to a SecretStore or ClusterSecretStore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    /// Name of the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    /// `SecretStore` (default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreKind>,
}

/// The two store kinds.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum StoreKind {
    /// A namespaced `SecretStore`.
    #[default]
    SecretStore,
    /// A cluster-scoped `ClusterSecretStore`.
    ClusterSecretStore,
}

impl StoreKind {
    /// The kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }
}

/// When an ExternalSecret is refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RefreshPolicy {
    /// Fetch once, when the Secret is created.
    CreatedOnce,
    /// Fetch every `refreshInterval` (the behaviour when unset).
    Periodic,
    /// Fetch when the ExternalSecret's spec, labels or annotations change.
    OnChange,
}

/// Sync windows gate periodic refreshes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindows {
    /// `allow`: refresh only inside a window; `deny`: never inside a window.
    pub kind: SyncWindowKind,
    /// The windows.
    #[schemars(length(min = 1))]
    pub windows: Vec<SyncWindow>,
}

/// Whether windows allow or deny refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncWindowKind {
    /// Refresh only while a window is open.
    Allow,
    /// Never refresh while a window is open.
    Deny,
}

/// One sync window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// A 5-field cron schedule (UTC) or a descriptor such as `@daily` or `@every 1h`; each
    /// firing opens the window.
    #[schemars(
        length(min = 1),
        regex(
            pattern = r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|@every [^\s]+.*|[^\s]+( [^\s]+){4})$"
        )
    )]
    pub schedule: String,
    /// How long the window stays open (Go duration).
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub duration: String,
}

/// How the target Secret is created, owned and deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.deletionPolicy) || self.deletionPolicy != 'Delete' || !has(self.creationPolicy) || !(self.creationPolicy in ['Merge', 'None', 'CreateOrMerge'])",
        "message": "spec.target.deletionPolicy=Delete is not allowed with spec.target.creationPolicy Merge, None or CreateOrMerge"
    },
    {
        "rule": "!has(self.deletionPolicy) || self.deletionPolicy != 'Merge' || !has(self.creationPolicy) || self.creationPolicy != 'None'",
        "message": "spec.target.deletionPolicy=Merge is not allowed with spec.target.creationPolicy=None"
    },
    {
        "rule": "!has(self.template) || !has(self.template.type) || self.template.type != 'bootstrap.kubernetes.io/token'",
        "message": "spec.target.template.type bootstrap.kubernetes.io/token is not allowed"
    }
]))]
pub struct ExternalSecretTarget {
    /// Name of the target Secret; defaults to the ExternalSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    /// How the Secret is created and owned.
    #[serde(default)]
    pub creation_policy: CreationPolicy,
    /// What happens to the Secret when the remote secret is gone.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Template for the Secret's data, type and metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
    /// A non-Secret target (ESO's generic targets). Not supported by this operator: an
    /// ExternalSecret that sets it is refused (Ready=False) and no Secret is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestReference>,
    /// Make the Secret immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Default for ExternalSecretTarget {
    fn default() -> Self {
        Self {
            name: None,
            creation_policy: CreationPolicy::Owner,
            deletion_policy: DeletionPolicy::Retain,
            template: None,
            manifest: None,
            immutable: None,
        }
    }
}

/// Reference to a generic target kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestReference {
    /// API version of the target resource.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// Kind of the target resource.
    #[schemars(length(min = 1))]
    pub kind: String,
}

/// How the target Secret is created and owned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CreationPolicy {
    /// Create the Secret and own it (ownerReference; garbage-collected with the ExternalSecret).
    #[default]
    Owner,
    /// Create the Secret without owning it.
    Orphan,
    /// Only merge into an existing Secret; never create it.
    Merge,
    /// Do not write the Secret.
    None,
    /// Create the Secret if missing, otherwise merge into it.
    CreateOrMerge,
}

/// What happens to the Secret when the provider says the remote secret is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Secret as it is.
    #[default]
    Retain,
    /// Delete the Secret (only when it is owned by the ExternalSecret).
    Delete,
    /// Remove only the keys this ExternalSecret manages.
    Merge,
}

/// The template for the target Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTemplate {
    /// The Secret's `type` (e.g. `kubernetes.io/tls`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The template engine; only `v2` exists.
    #[serde(default)]
    pub engine_version: TemplateEngineVersion,
    /// Labels, annotations and finalizers for the Secret (values are templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ExternalSecretTemplateMetadata>,
    /// `Replace` (template output only) or `Merge` (template output over the provider data).
    #[serde(default)]
    pub merge_policy: TemplateMergePolicy,
    /// Secret keys and the templates that produce their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Templates read from ConfigMaps, Secrets or literals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_from: Vec<TemplateFrom>,
}

/// Template engine version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateEngineVersion {
    /// Go text/template with sprig functions.
    #[default]
    #[serde(rename = "v2")]
    V2,
}

/// How template output is combined with the provider data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateMergePolicy {
    /// Only the template output.
    #[default]
    Replace,
    /// Provider data, overridden by the template output.
    Merge,
}

/// Metadata templates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTemplateMetadata {
    /// Annotations (values are templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels (values are templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Finalizers to put on the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// One source of templates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFrom {
    /// Templates from a ConfigMap in the ExternalSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TemplateRef>,
    /// Templates from a Secret in the ExternalSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateRef>,
    /// Where the rendered output goes: `Data` (default), `Labels` or `Annotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A literal template, rendered as KeysAndValues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    /// Decode rendered values: `Auto`, `Base64`, `Base64URL` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_decoding_strategy: Option<DecodingStrategy>,
}

/// A ConfigMap or Secret holding templates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Which keys to use, and how.
    #[serde(default)]
    pub items: Vec<TemplateRefItem>,
}

/// One key of a template source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRefItem {
    /// The key in the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// `Values` (default): the key's content is the template for that key; `KeysAndValues`: it
    /// renders to a YAML map of keys and values.
    #[serde(default)]
    pub template_as: TemplateScope,
}

/// How a template item is rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateScope {
    /// One key, one template.
    #[default]
    Values,
    /// The rendered output is a YAML map of keys and values.
    KeysAndValues,
}

/// One `data[]` entry: one remote value into one Secret key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    /// The key in the target Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub secret_key: String,
    /// The remote value.
    pub remote_ref: ExternalSecretDataRemoteRef,
    /// Read this entry from another store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<StoreSourceRef>,
}

/// Which remote secret, version and property to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretDataRemoteRef {
    /// The remote secret's name or ARN (the store's `prefix` is prepended).
    #[schemars(length(min = 1))]
    pub key: String,
    /// `Fetch` reads the secret's tags (as a JSON object) instead of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_policy: Option<MetadataPolicy>,
    /// A gjson path into the JSON value (`a.b`, `list.0`); a path starting with `$` is JSONPath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// A version stage (default `AWSCURRENT`) or `uuid/<version id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Key conversion for extract/find: `Default` or `Unicode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// Value decoding: `Auto`, `Base64`, `Base64URL` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
    /// `Fail` rejects values that contain NUL bytes; `Ignore` (default) accepts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

/// Metadata policy of a remote reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MetadataPolicy {
    /// Read the value.
    #[default]
    None,
    /// Read the tags.
    Fetch,
}

/// Key conversion for extract and find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConversionStrategy {
    /// Replace invalid characters with `_`.
    #[default]
    Default,
    /// Replace invalid characters with `_U<hex>_`.
    Unicode,
}

/// Value decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DecodingStrategy {
    /// Try Base64, then Base64URL, else keep as is.
    Auto,
    /// Standard Base64 with padding.
    Base64,
    /// URL-safe Base64 with padding.
    #[serde(rename = "Base64URL")]
    Base64Url,
    /// No decoding.
    #[default]
    None,
}

/// NUL byte handling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NullBytePolicy {
    /// Accept NUL bytes.
    #[default]
    Ignore,
    /// Reject values containing NUL bytes.
    Fail,
}

/// A store reference for one `data[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "has(self.storeRef) != has(self.generatorRef)", "message": "sourceRef needs exactly one of storeRef or generatorRef" }
]))]
pub struct StoreSourceRef {
    /// The store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<SecretStoreRef>,
    /// A generator: not implemented in `data[]` (nor by ESO); reported unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub generator_ref: Option<serde_json::Value>,
}

/// One `dataFrom[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.extract) ? 1 : 0) + (has(self.find) ? 1 : 0) + (has(self.sourceRef) && has(self.sourceRef.generatorRef) ? 1 : 0) == 1",
        "message": "each spec.dataFrom[] entry needs exactly one of extract, find or sourceRef.generatorRef"
    }
]))]
pub struct ExternalSecretDataFromRemoteRef {
    /// Read one remote secret and use each top-level JSON key as a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExternalSecretDataRemoteRef>,
    /// Read every remote secret matching name, tags or path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<ExternalSecretFind>,
    /// Rewrite the resulting keys, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<ExternalSecretRewrite>,
    /// Read this entry from another store (or a generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<StoreGeneratorSourceRef>,
}

/// A store or generator reference for one `dataFrom[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "has(self.storeRef) != has(self.generatorRef)", "message": "sourceRef needs exactly one of storeRef or generatorRef" }
]))]
pub struct StoreGeneratorSourceRef {
    /// The store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<SecretStoreRef>,
    /// A generator (`apiVersion`, `kind`, `name`): Password, UUID, ECRAuthorizationToken,
    /// STSSessionToken or a ClusterGenerator of those kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub generator_ref: Option<serde_json::Value>,
}

/// Find remote secrets by name, tags or path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "has(self.name) || (has(self.tags) && size(self.tags) > 0)", "message": "spec.dataFrom[].find needs name or tags" }
]))]
pub struct ExternalSecretFind {
    /// Only secrets whose name starts with this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Match secret names by regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Match secrets carrying all of these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Key conversion: `Default` or `Unicode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// Value decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
    /// NUL byte handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

/// A name filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindName {
    /// A regular expression (RE2 syntax) matched against the full secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub regexp: Option<String>,
}

/// One key rewrite; exactly one of `regexp`, `transform` or `merge`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.regexp) ? 1 : 0) + (has(self.transform) ? 1 : 0) + (has(self.merge) ? 1 : 0) == 1",
        "message": "each rewrite[] entry needs exactly one of regexp, transform or merge"
    }
]))]
pub struct ExternalSecretRewrite {
    /// Rename keys with a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    /// Rename keys with a template over `.value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
    /// Merge JSON object values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<RewriteMerge>,
}

/// Regexp rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteRegexp {
    /// The pattern (RE2 syntax).
    #[schemars(length(max = 1024))]
    pub source: String,
    /// The replacement; `$1` / `${name}` expand capture groups.
    pub target: String,
}

/// Template rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteTransform {
    /// A template over `.value` (the key).
    pub template: String,
}

/// Merge rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteMerge {
    /// The key that receives the merged JSON (strategy `JSON`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// Keys merged last, in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority: Vec<String>,
    /// `Strict` (default) or `IgnoreNotFound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_policy: Option<MergePriorityPolicy>,
    /// `Error` (default) or `Ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_policy: Option<MergeConflictPolicy>,
    /// `Extract` (default) or `JSON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<MergeStrategy>,
}

/// Priority policy for merge rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MergePriorityPolicy {
    /// A priority key that does not exist is an error.
    #[default]
    Strict,
    /// Missing priority keys are skipped.
    IgnoreNotFound,
}

/// Conflict policy for merge rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MergeConflictPolicy {
    /// A key present in two inputs is an error.
    #[default]
    Error,
    /// The later input wins.
    Ignore,
}

/// Output strategy for merge rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MergeStrategy {
    /// Flatten the merged object into keys.
    #[default]
    Extract,
    /// Write the merged object as JSON into `into`.
    #[serde(rename = "JSON")]
    Json,
}

/// Observed state of an ExternalSecret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// Start time of the last successful refresh that changed the Secret or this status (ESO
    /// rewrites it at every refresh; this operator only on change, so a no-op refresh makes no
    /// write). Shown as the `Last Change` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// `<generation>-<hash of labels and annotations>` at the last sync, as ESO computes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// Conditions; `Ready` is maintained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The target Secret (servicebinding.io).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
}

/// A local object reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// Name of the Secret.
    #[serde(default)]
    pub name: String,
}
