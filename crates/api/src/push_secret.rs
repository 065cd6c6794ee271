//! The `PushSecret` custom resource (`external-secrets.io/v1alpha1`): Kubernetes Secret data
//! written to one or more stores.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, preserve_unknown_object};
use crate::external_secret::{ExternalSecretTemplate, StoreKind};

/// The version PushSecret is served at (ESO serves it at `v1alpha1` only).
pub const PUSH_SECRET_VERSION: &str = "v1alpha1";

/// The finalizer a PushSecret with `deletionPolicy: Delete` carries (ESO's name), so remote
/// secrets are deleted before the object goes.
pub const PUSH_SECRET_FINALIZER: &str = "pushsecret.externalsecrets.io/finalizer";

/// Which Secret to push, to which stores, under which remote names.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1alpha1",
    kind = "PushSecret",
    plural = "pushsecrets",
    namespaced,
    status = "PushSecretStatus",
    shortname = "ps",
    category = "external-secrets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.refreshTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretSpec {
    /// How often to push again (Go duration). `0` pushes once per change of the PushSecret.
    #[serde(
        default = "default_refresh_interval",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
    /// The stores to push to (each by name or by label selector).
    pub secret_store_refs: Vec<PushSecretStoreRef>,
    /// `Replace` (default) overwrites; `IfNotExists` leaves an existing remote secret alone.
    #[serde(default)]
    pub update_policy: PushSecretUpdatePolicy,
    /// `None` (default) leaves remote secrets when the PushSecret or an entry goes; `Delete`
    /// deletes them.
    #[serde(default)]
    pub deletion_policy: PushSecretDeletionPolicy,
    /// Where the data comes from.
    pub selector: PushSecretSelector,
    /// Which keys go to which remote secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<PushSecretData>,
    /// ESO's bulk push (`dataTo`): accepted, reported as unsupported in the Ready condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserve_unknown_list")]
    pub data_to: Vec<serde_json::Value>,
    /// A template applied to the Secret's data before pushing (`data`, `mergePolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
}

fn preserve_unknown_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

fn default_refresh_interval() -> Option<String> {
    Some("1h0m0s".to_string())
}

/// A store a PushSecret writes to: by name, or every store matching a label selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.name) || has(self.labelSelector)",
        "message": "secretStoreRefs: each entry needs a name or a labelSelector"
    }
]))]
pub struct PushSecretStoreRef {
    /// The store's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    /// Every store of `kind` whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// `SecretStore` (default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreKind>,
}

/// Update policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushSecretUpdatePolicy {
    /// Overwrite the remote value when it differs.
    #[default]
    Replace,
    /// Write only when the remote secret does not exist.
    IfNotExists,
}

/// Deletion policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushSecretDeletionPolicy {
    /// Delete remote secrets this PushSecret created when it (or the entry) goes.
    Delete,
    /// Leave them.
    #[default]
    None,
}

/// The source of the pushed data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.secret) != has(self.generatorRef)",
        "message": "selector: set exactly one of secret and generatorRef"
    }
]))]
pub struct PushSecretSelector {
    /// A Secret in the PushSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<PushSecretSecret>,
    /// A generator (accepted, reported as unsupported by this operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub generator_ref: Option<serde_json::Value>,
}

/// The source Secret: by name, or every Secret in the namespace matching a label selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.name) != has(self.selector)",
        "message": "selector.secret: set exactly one of name and selector"
    }
]))]
pub struct PushSecretSecret {
    /// The Secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    /// A label selector over Secrets in the PushSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// One push: a Secret key (or the whole Secret) to a remote secret (or one property of it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretData {
    /// What goes where.
    #[serde(rename = "match")]
    pub match_: PushSecretMatch,
    /// Provider-specific settings (ESO's `PushSecretMetadata` object, e.g. AWS tags,
    /// description, `secretPushFormat`, `kmsKeyId`, `resourcePolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<serde_json::Value>,
    /// `None` (default) or `ReverseUnicode` (decode `_Uxxxx_` in the Secret's key names).
    #[serde(default)]
    pub conversion_strategy: PushSecretConversionStrategy,
}

impl PushSecretData {
    /// The key of this entry in `status.syncedPushSecrets` (ESO: `remoteKey` or
    /// `remoteKey/property`).
    pub fn status_key(&self) -> String {
        let r = &self.match_.remote_ref;
        match r.property.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("{}/{p}", r.remote_key),
            None => r.remote_key.clone(),
        }
    }
}

/// Key conversion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PushSecretConversionStrategy {
    /// Key names as they are.
    #[default]
    None,
    /// Decode `_Uxxxx_` sequences in key names.
    ReverseUnicode,
}

/// The Secret key and the remote reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretMatch {
    /// The Secret key to push; omitted: the whole Secret as a JSON object of its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Where it goes.
    pub remote_ref: PushSecretRemoteRef,
}

/// A remote secret, or one property of a JSON remote secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretRemoteRef {
    /// The remote secret's name (the store's prefix is prepended).
    #[schemars(length(min = 1))]
    pub remote_key: String,
    /// A top-level property of the JSON remote secret to set, keeping the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// Observed state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretStatus {
    /// When the last successful push finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// The PushSecret's `metadata.generation` and source Secret versions at the last push
    /// (ESO stores the resourceVersion here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// Per store (`Kind/name`), the entries pushed (key: `remoteKey` or `remoteKey/property`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub synced_push_secrets: BTreeMap<String, BTreeMap<String, PushSecretData>>,
    /// Conditions; `Ready` is maintained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
