//! Credentials: static keys from Kubernetes Secrets, ServiceAccount tokens exchanged with STS
//! (IRSA without a projected volume), the SDK default chain, and role chains with external ID and
//! session tags. Every provider here is wrapped in the SDK's identity cache by the client that
//! uses it, so credentials are refreshed before they expire, not per reconcile.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_sts::types::Tag;
use eso_provider::{CallObserver, KubeAccess, ProviderError};

/// Annotation on a ServiceAccount naming the role to assume with its token (IRSA).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// Annotation on a ServiceAccount naming the audience of its token (default [`STS_AUDIENCE`]).
pub const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
/// Audience STS expects in web identity tokens.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Session name used for every assumed role (visible in CloudTrail).
pub const SESSION_NAME: &str = "external-secrets-provider-aws";

/// The audiences of a ServiceAccount token for AssumeRoleWithWebIdentity (ESO): the
/// [`AUDIENCE_ANNOTATION`] of the ServiceAccount (default [`STS_AUDIENCE`]), then the store's
/// `serviceAccountRef.audiences`.
pub(crate) fn jwt_audiences(
    annotations: &std::collections::BTreeMap<String, String>,
    extra: &[String],
) -> Vec<String> {
    let first = annotations
        .get(AUDIENCE_ANNOTATION)
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| STS_AUDIENCE.to_string());
    std::iter::once(first)
        .chain(extra.iter().cloned())
        .collect()
}

/// Static keys read from Kubernetes Secrets.
pub(crate) fn static_keys(
    akid: Vec<u8>,
    secret: Vec<u8>,
    token: Option<Vec<u8>>,
) -> Result<SharedCredentialsProvider, ProviderError> {
    let text = |what: &str, v: Vec<u8>| {
        String::from_utf8(v)
            .map(|s| s.trim().to_string())
            .map_err(|_| {
                ProviderError::invalid_config(format!(
                    "{what} in the referenced Secret is not UTF-8 text"
                ))
            })
    };
    let akid = text("access key id", akid)?;
    let secret = text("secret access key", secret)?;
    let token = token.map(|t| text("session token", t)).transpose()?;
    if akid.is_empty() || secret.is_empty() {
        return Err(ProviderError::invalid_config(
            "the referenced access key id or secret access key is empty",
        ));
    }
    Ok(SharedCredentialsProvider::new(Credentials::new(
        akid,
        secret,
        token,
        None,
        "kubernetes-secret",
    )))
}

/// AssumeRoleWithWebIdentity with a fresh TokenRequest token for a ServiceAccount.
#[derive(Clone)]
pub(crate) struct ServiceAccountWebIdentity {
    pub kube: Arc<dyn KubeAccess>,
    pub namespace: String,
    pub service_account: String,
    pub audiences: Vec<String>,
    pub role_arn: String,
    pub sts: aws_sdk_sts::Client,
    pub calls: CallObserver,
}

impl std::fmt::Debug for ServiceAccountWebIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountWebIdentity")
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

impl ServiceAccountWebIdentity {
    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let token = self
            .kube
            .service_account_token(&self.namespace, &self.service_account, &self.audiences)
            .await
            .map_err(CredentialsError::provider_error)?;
        let sent = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(SESSION_NAME)
            .web_identity_token(token.token)
            .send()
            .await;
        let out = self
            .calls
            .record(crate::PROVIDER_STS, "AssumeRoleWithWebIdentity", sent)
            .map_err(|e| CredentialsError::provider_error(crate::errors::chain(&e)))?;
        to_credentials(out.credentials, "sts-web-identity")
    }
}

impl ProvideCredentials for ServiceAccountWebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

fn to_credentials(
    c: Option<aws_sdk_sts::types::Credentials>,
    source: &'static str,
) -> Result<Credentials, CredentialsError> {
    let c = c.ok_or_else(|| CredentialsError::provider_error("STS returned no credentials"))?;
    let expiry = SystemTime::try_from(c.expiration).ok();
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        expiry,
        source,
    ))
}

/// AssumeRole with the given base credentials (one link of a role chain).
#[derive(Clone, Debug)]
pub(crate) struct AssumeRole {
    pub sts: aws_sdk_sts::Client,
    pub role_arn: String,
    pub external_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub calls: CallObserver,
}

impl AssumeRole {
    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let mut req = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.external_id.clone());
        for (k, v) in &self.tags {
            let tag = Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(CredentialsError::provider_error)?;
            req = req.tags(tag);
        }
        for k in &self.transitive_tag_keys {
            req = req.transitive_tag_keys(k);
        }
        let out = self
            .calls
            .record(crate::PROVIDER_STS, "AssumeRole", req.send().await)
            .map_err(|e| CredentialsError::provider_error(crate::errors::chain(&e)))?;
        to_credentials(out.credentials, "sts-assume-role")
    }
}

impl ProvideCredentials for AssumeRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}
