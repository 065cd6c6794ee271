//! The `ClusterExternalSecret` custom resource (`external-secrets.io/v1`, also served as
//! `v1beta1`): one ExternalSecret spec fanned out to every selected namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::external_secret::ExternalSecretSpec;

/// Creates an ExternalSecret named `externalSecretName` (default: this object's name) with
/// `externalSecretSpec` in every namespace chosen by `namespaceSelectors`, `namespaceSelector`
/// and `namespaces` (all ORed), and removes it from namespaces that are no longer chosen.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ClusterExternalSecret",
    plural = "clusterexternalsecrets",
    status = "ClusterExternalSecretStatus",
    shortname = "ces",
    category = "external-secrets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".spec.externalSecretSpec.secretStoreRef.name"}"#,
    printcolumn = r#"{"name":"Refresh Interval","type":"string","jsonPath":".spec.refreshTime"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterExternalSecretSpec {
    /// The spec of every ExternalSecret created.
    pub external_secret_spec: ExternalSecretSpec,
    /// The name of the ExternalSecrets created; defaults to the name of the ClusterExternalSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub external_secret_name: Option<String>,
    /// Labels and annotations of the ExternalSecrets created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_metadata: Option<ExternalSecretMetadata>,
    /// Namespaces whose labels match this selector. Deprecated: use `namespaceSelectors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces whose labels match any of these selectors (ORed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Namespaces by name, ORed with the selectors. Deprecated: use `namespaceSelectors`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ))]
    pub namespaces: Vec<String>,
    /// How often the namespaces are re-evaluated and the ExternalSecrets re-applied (Go
    /// duration; default `1h`). Namespace changes are also seen at once through a watch.
    #[serde(
        default,
        rename = "refreshTime",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
}

/// Labels and annotations put on each ExternalSecret a ClusterExternalSecret creates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretMetadata {
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A namespace the ExternalSecret could not be applied to, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterExternalSecretNamespaceFailure {
    /// The namespace.
    pub namespace: String,
    /// Why the ExternalSecret could not be applied there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Observed state of a ClusterExternalSecret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterExternalSecretStatus {
    /// The name of the ExternalSecrets created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_name: Option<String>,
    /// Namespaces where applying the ExternalSecret failed, sorted by namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_namespaces: Vec<ClusterExternalSecretNamespaceFailure>,
    /// Namespaces that hold the ExternalSecret, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioned_namespaces: Vec<String>,
    /// Conditions; `Ready` is maintained (`False` with the message `one or more namespaces
    /// failed` when any namespace failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ClusterExternalSecretSpec {
    /// The refresh interval: ESO's default of one hour when unset; `None` when the string is
    /// not a valid duration (the schema prevents that on a real cluster) or is zero.
    pub fn refresh_interval_duration(&self) -> Option<std::time::Duration> {
        let d = match &self.refresh_interval {
            None => std::time::Duration::from_secs(3600),
            Some(s) => crate::parse_go_duration(s)?,
        };
        (!d.is_zero()).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::external_secret::DURATION_PATTERN;

    #[test]
    fn duration_pattern_is_the_shared_one() {
        // The literal in the schemars attribute must stay equal to the shared constant.
        assert_eq!(
            DURATION_PATTERN,
            r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
        );
    }

    #[test]
    fn esos_yaml_parses() {
        let y = serde_json::json!({
            "externalSecretSpec": {"secretStoreRef": {"name": "aws", "kind": "ClusterSecretStore"},
                                   "data": [{"secretKey": "k", "remoteRef": {"key": "db"}}]},
            "externalSecretName": "db",
            "externalSecretMetadata": {"labels": {"a": "b"}},
            "namespaceSelectors": [{"matchLabels": {"team": "x"}}],
            "namespaceSelector": {"matchLabels": {"old": "y"}},
            "namespaces": ["n1"],
            "refreshTime": "1m"
        });
        let s: ClusterExternalSecretSpec = serde_json::from_value(y).unwrap_or_default();
        assert_eq!(s.external_secret_name.as_deref(), Some("db"));
        assert_eq!(s.namespaces, vec!["n1".to_string()]);
        assert_eq!(s.namespace_selectors.len(), 1);
        assert!(s.namespace_selector.is_some());
        assert_eq!(
            s.refresh_interval_duration(),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            ClusterExternalSecretSpec::default().refresh_interval_duration(),
            Some(std::time::Duration::from_secs(3600))
        );
    }
}
