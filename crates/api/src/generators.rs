//! Generators (`generators.external-secrets.io/v1alpha1`): `Password`, `UUID`,
//! `ECRAuthorizationToken`, `STSSessionToken` and the cluster-scoped `ClusterGenerator`, as ESO
//! v2.9 defines them. An ExternalSecret uses one with `dataFrom[].sourceRef.generatorRef`.
//! Generator kinds of other clouds are accepted in a `ClusterGenerator` (its `generator` block
//! is kept as written) and reported unsupported when used.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret_store::AwsAuth;

/// API group of the generators.
pub const GENERATORS_GROUP: &str = "generators.external-secrets.io";
/// API version of the generators.
pub const GENERATORS_VERSION: &str = "v1alpha1";

fn default_length() -> i64 {
    24
}

/// A random password (ESO's `Password` generator). Output: one key per `secretKeys` entry
/// (default `password`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "Password",
    plural = "passwords",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSpec {
    /// Length of the password (default 24).
    #[serde(default = "default_length")]
    #[schemars(range(min = 1, max = 4096))]
    pub length: i64,
    /// Number of digits (default: a quarter of the length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub digits: Option<i64>,
    /// Number of symbols (default: a quarter of the length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub symbols: Option<i64>,
    /// The symbol characters to draw from (default ``~!@#$%^&*()_+`-={}|[]\:"<>?,./``).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_characters: Option<String>,
    /// No uppercase letters.
    #[serde(default)]
    pub no_upper: bool,
    /// Allow a character to appear more than once.
    #[serde(default)]
    pub allow_repeat: bool,
    /// The output keys, each with its own password (default `["password"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub secret_keys: Vec<String>,
    /// Encoding of the output: `raw` (default), `base64`, `base64url`, `base32`, `hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<PasswordEncoding>,
}

/// How a generated password is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasswordEncoding {
    /// As generated.
    #[default]
    Raw,
    /// Standard base64 with padding.
    Base64,
    /// URL-safe base64 with padding.
    Base64url,
    /// Base32 with padding.
    Base32,
    /// Lowercase hex.
    Hex,
}

/// A random (version 4) UUID (ESO's `UUID` generator). Output key: `uuid`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "UUID",
    root = "Uuid",
    plural = "uuids",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq",
    derive = "Default"
)]
pub struct UuidSpec {}

/// An ECR registry token from GetAuthorizationToken (ESO's `ECRAuthorizationToken`). Output
/// keys: `username`, `password`, `proxy_endpoint` (private scope only) and `expires_at` (Unix
/// seconds), as in ESO.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "ECRAuthorizationToken",
    root = "EcrAuthorizationToken",
    plural = "ecrauthorizationtokens",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct EcrAuthorizationTokenSpec {
    /// The AWS region.
    pub region: String,
    /// Credentials, as in an AWS SecretStore (none: the SDK default chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// A role to assume before calling ECR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `private` (default) or `public` (ECR Public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Temporary credentials from STS GetSessionToken (ESO's `STSSessionToken`). Output keys:
/// `access_key_id`, `secret_access_key`, `session_token`, `expiration` (Unix seconds).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "STSSessionToken",
    root = "StsSessionToken",
    plural = "stssessiontokens",
    namespaced,
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct StsSessionTokenSpec {
    /// The AWS region.
    pub region: String,
    /// Credentials, as in an AWS SecretStore (none: the SDK default chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// A role to assume before calling STS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// GetSessionToken parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_parameters: Option<StsRequestParameters>,
}

/// GetSessionToken parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StsRequestParameters {
    /// How long the credentials are valid, in seconds (900 to 129600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<i32>,
    /// The MFA device's serial number or ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The MFA code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_code: Option<String>,
}

/// A cluster-scoped generator usable from every namespace (ESO's `ClusterGenerator`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "generators.external-secrets.io",
    version = "v1alpha1",
    kind = "ClusterGenerator",
    plural = "clustergenerators",
    category = "external-secrets",
    category = "external-secrets-generators",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGeneratorSpec {
    /// The generator kind (any of ESO's; only Password, UUID, ECRAuthorizationToken and
    /// STSSessionToken are implemented, the others are reported unsupported when used).
    pub kind: GeneratorKind,
    /// The generator's spec, in the member matching `kind` (e.g. `passwordSpec`).
    pub generator: ClusterGeneratorBody,
}

/// The spec of a ClusterGenerator; members of other kinds are kept as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ClusterGeneratorBody {
    /// Spec of a Password generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_spec: Option<PasswordSpec>,
    /// Spec of a UUID generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid_spec: Option<UuidSpec>,
    /// Spec of an ECRAuthorizationToken generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr_authorization_token_spec: Option<EcrAuthorizationTokenSpec>,
    /// Spec of an STSSessionToken generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_session_token_spec: Option<StsSessionTokenSpec>,
}

/// ESO's generator kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs, clippy::upper_case_acronyms)]
pub enum GeneratorKind {
    ACRAccessToken,
    BeyondtrustWorkloadCredentialsDynamicSecret,
    CloudsmithAccessToken,
    ECRAuthorizationToken,
    Fake,
    GCRAccessToken,
    GithubAccessToken,
    GitlabDeployToken,
    QuayAccessToken,
    Password,
    SSHKey,
    STSSessionToken,
    UUID,
    VaultDynamicSecret,
    Webhook,
    Grafana,
    MFA,
}

impl GeneratorKind {
    /// The kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorKind::ACRAccessToken => "ACRAccessToken",
            GeneratorKind::BeyondtrustWorkloadCredentialsDynamicSecret => {
                "BeyondtrustWorkloadCredentialsDynamicSecret"
            }
            GeneratorKind::CloudsmithAccessToken => "CloudsmithAccessToken",
            GeneratorKind::ECRAuthorizationToken => "ECRAuthorizationToken",
            GeneratorKind::Fake => "Fake",
            GeneratorKind::GCRAccessToken => "GCRAccessToken",
            GeneratorKind::GithubAccessToken => "GithubAccessToken",
            GeneratorKind::GitlabDeployToken => "GitlabDeployToken",
            GeneratorKind::QuayAccessToken => "QuayAccessToken",
            GeneratorKind::Password => "Password",
            GeneratorKind::SSHKey => "SSHKey",
            GeneratorKind::STSSessionToken => "STSSessionToken",
            GeneratorKind::UUID => "UUID",
            GeneratorKind::VaultDynamicSecret => "VaultDynamicSecret",
            GeneratorKind::Webhook => "Webhook",
            GeneratorKind::Grafana => "Grafana",
            GeneratorKind::MFA => "MFA",
        }
    }
}

/// A resolved generator: what to run.
#[derive(Clone, Debug, PartialEq)]
pub enum GeneratorSpec {
    /// Password.
    Password(PasswordSpec),
    /// UUID.
    Uuid,
    /// ECRAuthorizationToken.
    Ecr(EcrAuthorizationTokenSpec),
    /// STSSessionToken.
    Sts(StsSessionTokenSpec),
}

impl ClusterGeneratorSpec {
    /// The spec to run, or why not (a kind this operator does not implement, or the member for
    /// `kind` missing).
    pub fn resolve(&self) -> Result<GeneratorSpec, String> {
        let g = &self.generator;
        let missing = |member: &str| {
            format!(
                "ClusterGenerator of kind {} has no spec.generator.{member}",
                self.kind.as_str()
            )
        };
        match self.kind {
            GeneratorKind::Password => g
                .password_spec
                .clone()
                .map(GeneratorSpec::Password)
                .ok_or_else(|| missing("passwordSpec")),
            GeneratorKind::UUID => Ok(GeneratorSpec::Uuid),
            GeneratorKind::ECRAuthorizationToken => g
                .ecr_authorization_token_spec
                .clone()
                .map(GeneratorSpec::Ecr)
                .ok_or_else(|| missing("ecrAuthorizationTokenSpec")),
            GeneratorKind::STSSessionToken => g
                .sts_session_token_spec
                .clone()
                .map(GeneratorSpec::Sts)
                .ok_or_else(|| missing("stsSessionTokenSpec")),
            other => Err(format!(
                "generator kind {} is not supported by this operator (Password, UUID, ECRAuthorizationToken and STSSessionToken are)",
                other.as_str()
            )),
        }
    }
}
