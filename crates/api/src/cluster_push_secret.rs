//! The `ClusterPushSecret` custom resource (`external-secrets.io/v1alpha1`, cluster-scoped): one
//! PushSecret spec fanned out to every selected namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::push_secret::PushSecretSpec;

/// Creates a PushSecret named `pushSecretName` (default: this object's name) with
/// `pushSecretSpec` in every namespace chosen by `namespaceSelectors` (ORed), and removes it
/// from namespaces that are no longer chosen.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1alpha1",
    kind = "ClusterPushSecret",
    plural = "clusterpushsecrets",
    status = "ClusterPushSecretStatus",
    category = "external-secrets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPushSecretSpec {
    /// The spec of every PushSecret created.
    pub push_secret_spec: PushSecretSpec,
    /// The name of the PushSecrets created; defaults to the name of the ClusterPushSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub push_secret_name: Option<String>,
    /// Labels and annotations of the PushSecrets created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_metadata: Option<PushSecretMetadata>,
    /// Namespaces whose labels match any of these selectors (ORed). None: no namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// How often the namespaces are re-evaluated and the PushSecrets re-applied (Go duration;
    /// default `1h`). Namespace changes are also seen at once through a watch.
    #[serde(
        default,
        rename = "refreshTime",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
}

/// Labels and annotations put on each PushSecret a ClusterPushSecret creates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretMetadata {
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A namespace the PushSecret could not be applied to, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPushSecretNamespaceFailure {
    /// The namespace.
    pub namespace: String,
    /// Why the PushSecret could not be applied there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Observed state of a ClusterPushSecret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPushSecretStatus {
    /// The name of the PushSecrets created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    /// Namespaces where applying the PushSecret failed, sorted by namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_namespaces: Vec<ClusterPushSecretNamespaceFailure>,
    /// Namespaces that hold the PushSecret, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioned_namespaces: Vec<String>,
    /// Conditions; `Ready` is maintained (`False` with the message `one or more namespaces
    /// failed` when any namespace failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ClusterPushSecretSpec {
    /// The refresh interval: one hour when unset; `None` when the string is not a valid
    /// duration (the schema prevents that on a real cluster) or is zero.
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

    #[test]
    fn esos_yaml_parses() {
        let y = serde_json::json!({
            "pushSecretSpec": {
                "secretStoreRefs": [{"name": "aws", "kind": "ClusterSecretStore"}],
                "selector": {"secret": {"name": "db"}},
                "data": [{"match": {"secretKey": "k", "remoteRef": {"remoteKey": "team/db"}}}]
            },
            "pushSecretName": "db-push",
            "pushSecretMetadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}},
            "namespaceSelectors": [{"matchLabels": {"team": "x"}}],
            "refreshTime": "1m"
        });
        let s: ClusterPushSecretSpec = serde_json::from_value(y).unwrap_or_default();
        assert_eq!(s.push_secret_name.as_deref(), Some("db-push"));
        assert_eq!(s.namespace_selectors.len(), 1);
        assert_eq!(s.push_secret_spec.data.len(), 1);
        assert_eq!(
            s.refresh_interval_duration(),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            ClusterPushSecretSpec::default().refresh_interval_duration(),
            Some(std::time::Duration::from_secs(3600))
        );
    }
}
