//! The `SecretStore` and `ClusterSecretStore` custom resources.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeySelector, ServiceAccountSelector};

/// How to reach a secret backend. `SecretStore` is namespaced; [`ClusterSecretStore`] shares
/// this spec and is cluster-scoped.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "SecretStore",
    plural = "secretstores",
    namespaced,
    status = "SecretStoreStatus",
    shortname = "ss",
    category = "external-secrets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Capabilities","type":"string","jsonPath":".status.capabilities"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreSpec {
    /// Controller class: only the operator started with the same `--controller-class` handles this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The backend; exactly one provider.
    pub provider: SecretStoreProvider,
    /// Retry settings for provider calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<SecretStoreRetrySettings>,
    /// How often the store is re-validated: seconds (integer) or a Go duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        { "rule": "type(self) == int ? self >= 0 : self.matches('^(0|([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$')", "message": "spec.refreshInterval must be a number of seconds or a Go duration such as 5m" }
    ]))]
    pub refresh_interval: Option<IntOrString>,
    /// Namespace conditions (ClusterSecretStore only): which namespaces may use the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterSecretStoreCondition>,
}

/// A cluster-scoped store usable from every namespace its `conditions` allow.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ClusterSecretStore",
    plural = "clustersecretstores",
    status = "SecretStoreStatus",
    shortname = "css",
    category = "external-secrets",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Capabilities","type":"string","jsonPath":".status.capabilities"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
pub struct ClusterSecretStoreSpec {
    /// The same fields as a SecretStore.
    #[serde(flatten)]
    pub store: SecretStoreSpec,
}

impl std::ops::Deref for ClusterSecretStoreSpec {
    type Target = SecretStoreSpec;
    fn deref(&self) -> &SecretStoreSpec {
        &self.store
    }
}

/// The backend of a store. Exactly one key is set. Blocks for providers this operator does not
/// implement (vault, gcpsm, ...) are accepted and kept in [`SecretStoreProvider::other`], and the
/// store reports them as unsupported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreProvider {
    /// AWS (Secrets Manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    /// The `fake` provider: static data from the store spec (tests and demos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fake: Option<FakeProvider>,
    /// Any other provider block, kept as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl SecretStoreProvider {
    /// The name of the configured provider block (`aws`, `fake`, or the unknown key).
    pub fn kind_name(&self) -> Option<&str> {
        if self.aws.is_some() {
            Some("aws")
        } else if self.fake.is_some() {
            Some("fake")
        } else {
            self.other.keys().next().map(String::as_str)
        }
    }
}

impl JsonSchema for SecretStoreProvider {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretStoreProvider".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let aws = generator.subschema_for::<AwsProvider>();
        let fake = generator.subschema_for::<FakeProvider>();
        schemars::json_schema!({
            "description": "The backend of a store; exactly one provider. Blocks of providers this operator does not implement are kept and reported as unsupported.",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": { "aws": aws, "fake": fake },
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

/// Retry settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRetrySettings {
    /// Maximum number of retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_retries: Option<i32>,
    /// Delay between retries (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"))]
    pub retry_interval: Option<String>,
}

/// Which namespaces may use a ClusterSecretStore. Entries are ORed, and so are the members of an entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreCondition {
    /// Namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces whose name matches one of these regular expressions (unanchored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_regexes: Vec<String>,
}

/// Observed state of a store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreStatus {
    /// Conditions; `Ready` is maintained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `ReadOnly`, `WriteOnly` or `ReadWrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
}

/// The AWS provider block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.customSessionTags) || !self.customSessionTags.exists(k, k in ['esoNamespace', 'esoStoreName', 'esoStoreKind'])",
        "message": "spec.provider.aws.customSessionTags may not use the reserved keys esoNamespace, esoStoreName or esoStoreKind"
    }
]))]
pub struct AwsProvider {
    /// `SecretsManager` or `ParameterStore` (implemented); `CertificateManager` (accepted, reported as unsupported).
    pub service: AwsServiceType,
    /// How to authenticate; without it the SDK default chain is used (IRSA, Pod Identity, IMDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// A role ARN to assume (after `additionalRoles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The AWS region.
    #[schemars(length(min = 1))]
    pub region: String,
    /// Roles assumed in order before `role`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_roles: Vec<String>,
    /// External ID for the final `role`.
    #[serde(
        default,
        rename = "externalID",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    /// Session tags for the final `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tags: Option<Vec<AwsTag>>,
    /// Secrets Manager settings (used when deleting pushed secrets; accepted and validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<AwsSecretsManagerSettings>,
    /// Session tag keys that are transitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_tag_keys: Vec<String>,
    /// Prefix prepended to every remote key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `None` (default), `Simple` (adds esoNamespace/esoStoreName/esoStoreKind tags) or `Custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tags_policy: Option<AwsSessionTagsPolicy>,
    /// Extra session tags (policy `Custom`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_session_tags: BTreeMap<String, String>,
}

/// AWS services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AwsServiceType {
    /// AWS Secrets Manager.
    #[default]
    SecretsManager,
    /// AWS Systems Manager Parameter Store.
    ParameterStore,
    /// AWS Certificate Manager (not implemented).
    CertificateManager,
}

/// Session tags policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AwsSessionTagsPolicy {
    /// Only `sessionTags`.
    #[default]
    None,
    /// Add esoNamespace, esoStoreName and esoStoreKind.
    Simple,
    /// Simple plus `customSessionTags`.
    Custom,
}

/// A session tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsTag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// Secrets Manager deletion settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.forceDeleteWithoutRecovery) && self.forceDeleteWithoutRecovery && has(self.recoveryWindowInDays))",
        "message": "spec.provider.aws.secretsManager: forceDeleteWithoutRecovery and recoveryWindowInDays are mutually exclusive"
    }
]))]
pub struct AwsSecretsManagerSettings {
    /// Delete without a recovery window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_delete_without_recovery: Option<bool>,
    /// Recovery window, 7 to 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 7, max = 30))]
    pub recovery_window_in_days: Option<i64>,
}

/// AWS authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuth {
    /// Static keys from Kubernetes Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsAuthSecretRef>,
    /// A ServiceAccount token exchanged with STS (IRSA style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
}

/// Static credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuthSecretRef {
    /// The access key ID.
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id_secret_ref: SecretKeySelector,
    /// The secret access key.
    pub secret_access_key_secret_ref: SecretKeySelector,
    /// An optional session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_secret_ref: Option<SecretKeySelector>,
}

/// Web identity authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsJwtAuth {
    /// The ServiceAccount whose token is exchanged; it carries `eks.amazonaws.com/role-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
}

/// The `fake` provider: static data from the store spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FakeProvider {
    /// The remote secrets this store serves.
    #[serde(default)]
    pub data: Vec<FakeProviderData>,
}

/// One fake remote secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FakeProviderData {
    /// The remote key.
    pub key: String,
    /// The value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Deprecated: a map value (served as a JSON object).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_map: BTreeMap<String, String>,
    /// The version this value is served under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
