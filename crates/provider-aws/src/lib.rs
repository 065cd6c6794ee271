//! AWS Secrets Manager and Parameter Store providers for eso-provider. The only crate in the
//! workspace that links the AWS SDK.
//!
//! [`AwsFactory`] builds a [`SecretsManagerProvider`] (`service: SecretsManager`) or a
//! [`ParameterStoreProvider`] (`service: ParameterStore`) per store and credential identity:
//! static keys from Kubernetes Secrets (`auth.secretRef`), a ServiceAccount token exchanged with
//! STS (`auth.jwt`), or the SDK default chain (IRSA environment, EKS Pod Identity, IMDS); then the
//! `additionalRoles` chain and `role` with `externalID` and session tags. Reads use
//! GetSecretValue, BatchGetSecretValue (up to 20 ids per call) and ListSecrets; validation uses
//! STS GetCallerIdentity, which proves the credentials with no IAM permission needed. Parameter
//! Store reads are described in [`ParameterStoreProvider`].
//!
//! Every AWS call is reported to the factory's [`CallObserver`] (see [`AwsFactory::with_observer`])
//! with ESO's label values: provider [`PROVIDER_SECRETS_MANAGER`] (`AWS/SecretsManager`) and the
//! operation name (`GetSecretValue`, `BatchGetSecretValue`, `ListSecrets`, `DescribeSecret`, and
//! for PushSecret `CreateSecret`, `PutSecretValue`, `DeleteSecret`, `TagResource`,
//! `UntagResource`, `UpdateSecret`, `GetResourcePolicy`, `PutResourcePolicy`), and
//! [`PROVIDER_STS`] (`AWS/STS`) for `GetCallerIdentity`, `AssumeRole` and
//! `AssumeRoleWithWebIdentity`, which ESO does not count.
#![warn(missing_docs)]

mod auth;
mod errors;
mod push;
mod ssm;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use eso_api::{AwsProvider, AwsServiceType, AwsSessionTagsPolicy, SecretStoreSpec, StoreKind};
use eso_provider::{
    ApiCallObserver, CallObserver, Capabilities, DeleteOutcome, FindQuery, KubeAccess,
    ProviderError, ProviderFactory, PushOutcome, PushRemoteRef, PushRequest, RemoteRef,
    RemoteSecret, SecretsProvider, StoreInfo, VersionSelector,
};

pub use auth::{AUDIENCE_ANNOTATION, ROLE_ARN_ANNOTATION, SESSION_NAME, STS_AUDIENCE};
pub use push::{MANAGED_BY_TAG, MANAGED_BY_VALUE, METADATA_API_VERSION, METADATA_KIND};
pub use ssm::{GET_PARAMETERS_LIMIT, ParameterStoreProvider};

/// Largest id list BatchGetSecretValue accepts.
pub const BATCH_LIMIT: usize = 20;

/// `provider` label of Secrets Manager calls (ESO's value).
pub const PROVIDER_SECRETS_MANAGER: &str = "AWS/SecretsManager";
/// `provider` label of STS calls (credentials, validation, the STSSessionToken generator).
pub const PROVIDER_STS: &str = "AWS/STS";
/// `provider` label of ECR calls (the ECRAuthorizationToken generator).
pub const PROVIDER_ECR: &str = "AWS/ECR";

/// Endpoints, the HTTP client and the call observer shared by every store.
#[derive(Clone, Debug)]
pub struct AwsFactory {
    secretsmanager_endpoint: Option<String>,
    ssm_endpoint: Option<String>,
    sts_endpoint: Option<String>,
    ecr_endpoint: Option<String>,
    http: SharedHttpClient,
    calls: CallObserver,
}

fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl AwsFactory {
    /// Endpoints from the environment: `AWS_SECRETSMANAGER_ENDPOINT` / `AWS_SSM_ENDPOINT` /
    /// `AWS_STS_ENDPOINT` (the variables ESO reads), else `AWS_ENDPOINT_URL_SECRETS_MANAGER` /
    /// `AWS_ENDPOINT_URL_SSM` / `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`. Unset means the
    /// public AWS endpoints.
    pub fn from_env() -> Self {
        Self {
            secretsmanager_endpoint: env_first(&[
                "AWS_SECRETSMANAGER_ENDPOINT",
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                "AWS_ENDPOINT_URL",
            ]),
            ssm_endpoint: env_first(&[
                "AWS_SSM_ENDPOINT",
                "AWS_ENDPOINT_URL_SSM",
                "AWS_ENDPOINT_URL",
            ]),
            sts_endpoint: env_first(&[
                "AWS_STS_ENDPOINT",
                "AWS_ENDPOINT_URL_STS",
                "AWS_ENDPOINT_URL",
            ]),
            ecr_endpoint: env_first(&[
                "AWS_ECR_ENDPOINT",
                "AWS_ENDPOINT_URL_ECR",
                "AWS_ENDPOINT_URL",
            ]),
            http: http_client(),
            calls: CallObserver::default(),
        }
    }

    /// Explicit endpoints (tests, private endpoints). Parameter Store uses the Secrets Manager
    /// endpoint unless [`AwsFactory::with_ssm_endpoint`] sets another.
    pub fn with_endpoints(secretsmanager: Option<String>, sts: Option<String>) -> Self {
        Self {
            ssm_endpoint: secretsmanager.clone(),
            ecr_endpoint: secretsmanager.clone(),
            secretsmanager_endpoint: secretsmanager,
            sts_endpoint: sts,
            http: http_client(),
            calls: CallObserver::default(),
        }
    }

    /// Report every AWS call made by the providers this factory builds to `observer` (the
    /// operator passes its metrics registry).
    pub fn with_observer(mut self, observer: Arc<dyn ApiCallObserver>) -> Self {
        self.calls = CallObserver::new(observer);
        self
    }

    /// Set the Parameter Store (SSM) endpoint.
    pub fn with_ssm_endpoint(mut self, ssm: Option<String>) -> Self {
        self.ssm_endpoint = ssm;
        self
    }

    fn aws(spec: &SecretStoreSpec) -> Option<&AwsProvider> {
        spec.provider.aws.as_ref()
    }

    fn sts_client(
        &self,
        region: &Region,
        creds: Option<SharedCredentialsProvider>,
    ) -> aws_sdk_sts::Client {
        let mut b = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(self.http.clone());
        if let Some(e) = &self.sts_endpoint {
            b = b.endpoint_url(e);
        }
        if let Some(c) = creds {
            b = b.credentials_provider(c);
        }
        aws_sdk_sts::Client::from_conf(b.build())
    }

    /// Namespace credentials are read from, enforcing namespace isolation for SecretStores.
    fn credential_namespace(
        store: &StoreInfo,
        es_namespace: &str,
        referenced: Option<&str>,
        what: &str,
    ) -> Result<String, ProviderError> {
        match store.kind {
            StoreKind::SecretStore => {
                let own = store
                    .namespace
                    .clone()
                    .unwrap_or_else(|| es_namespace.to_string());
                match referenced {
                    Some(ns) if ns != own => Err(ProviderError::invalid_config(format!(
                        "SecretStore {}/{} references {what} in namespace {ns}; a SecretStore may only use its own namespace",
                        own, store.name
                    ))),
                    _ => Ok(own),
                }
            }
            StoreKind::ClusterSecretStore => Ok(referenced
                .map(str::to_string)
                .unwrap_or_else(|| es_namespace.to_string())),
        }
    }

    async fn base_credentials(
        &self,
        store: &StoreInfo,
        aws: &AwsProvider,
        es_namespace: &str,
        kube: Arc<dyn KubeAccess>,
        region: &Region,
    ) -> Result<SharedCredentialsProvider, ProviderError> {
        let auth = aws.auth.as_ref();
        if let Some(sr) = auth.and_then(|a| a.secret_ref.as_ref()) {
            let read = |sel: &eso_api::SecretKeySelector, what: &'static str| {
                let kube = kube.clone();
                let sel = sel.clone();
                async move {
                    let ns = Self::credential_namespace(
                        store,
                        es_namespace,
                        sel.namespace.as_deref(),
                        what,
                    )?;
                    let key = sel.key.clone().ok_or_else(|| {
                        ProviderError::invalid_config(format!(
                            "auth.secretRef: the {what} reference has no key"
                        ))
                    })?;
                    kube.secret_key(&ns, &sel.name, &key).await
                }
            };
            let akid = read(&sr.access_key_id_secret_ref, "access key id").await?;
            let secret = read(&sr.secret_access_key_secret_ref, "secret access key").await?;
            let token = match &sr.session_token_secret_ref {
                Some(t) => Some(read(t, "session token").await?),
                None => None,
            };
            return auth::static_keys(akid, secret, token);
        }
        if let Some(jwt) = auth.and_then(|a| a.jwt.as_ref()) {
            let sa = jwt.service_account_ref.as_ref().ok_or_else(|| {
                ProviderError::invalid_config("auth.jwt.serviceAccountRef is required")
            })?;
            let ns = Self::credential_namespace(
                store,
                es_namespace,
                sa.namespace.as_deref(),
                "a ServiceAccount",
            )?;
            let annotations = kube.service_account_annotations(&ns, &sa.name).await?;
            let role_arn = annotations
                .get(auth::ROLE_ARN_ANNOTATION)
                .cloned()
                .ok_or_else(|| {
                    ProviderError::invalid_config(format!(
                        "ServiceAccount {ns}/{} has no {} annotation naming the role to assume",
                        sa.name,
                        auth::ROLE_ARN_ANNOTATION
                    ))
                })?;
            // ESO: the token's first audience is the ServiceAccount's
            // `eks.amazonaws.com/audience` annotation (default sts.amazonaws.com), then the
            // store's `serviceAccountRef.audiences`.
            let audiences = auth::jwt_audiences(&annotations, &sa.audiences);
            let provider = auth::ServiceAccountWebIdentity {
                kube,
                namespace: ns,
                service_account: sa.name.clone(),
                audiences,
                role_arn,
                sts: self.sts_client(region, None),
                calls: self.calls.clone(),
            };
            return Ok(SharedCredentialsProvider::new(provider));
        }
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(self.http.clone())
            .load()
            .await;
        conf.credentials_provider().ok_or_else(|| {
            ProviderError::access_denied(
                "no auth in the store and the AWS default credential chain found no credentials",
            )
        })
    }

    /// Credentials for a generator in `namespace`: its `auth` and `role` as an AWS SecretStore
    /// in that namespace would use them (credential references stay in the namespace).
    async fn generator_credentials(
        &self,
        auth: Option<&eso_api::AwsAuth>,
        role: Option<&String>,
        region: &str,
        namespace: &str,
        kube: Arc<dyn KubeAccess>,
    ) -> Result<(SharedCredentialsProvider, Region), ProviderError> {
        if region.is_empty() {
            return Err(ProviderError::invalid_config(
                "the generator's spec.region is required",
            ));
        }
        let aws = AwsProvider {
            auth: auth.cloned(),
            role: role.cloned(),
            region: region.to_string(),
            ..AwsProvider::default()
        };
        let store = StoreInfo {
            kind: StoreKind::SecretStore,
            name: "generator".to_string(),
            namespace: Some(namespace.to_string()),
            uid: String::new(),
            generation: 0,
            spec: Arc::new(SecretStoreSpec::default()),
        };
        let region = Region::new(region.to_string());
        let creds = self
            .credentials(&store, &aws, namespace, kube, &region)
            .await?;
        Ok((creds, region))
    }

    /// STSSessionToken: GetSessionToken with the generator's request parameters. Output keys
    /// as ESO: `access_key_id`, `secret_access_key`, `session_token`, `expiration`.
    async fn sts_session_token(
        &self,
        spec: &eso_api::generators::StsSessionTokenSpec,
        namespace: &str,
        kube: Arc<dyn KubeAccess>,
    ) -> Result<eso_provider::generators::Generated, ProviderError> {
        let (creds, region) = self
            .generator_credentials(
                spec.auth.as_ref(),
                spec.role.as_ref(),
                &spec.region,
                namespace,
                kube,
            )
            .await?;
        let sts = self.sts_client(&region, Some(creds));
        let p = spec.request_parameters.clone().unwrap_or_default();
        let sent = sts
            .get_session_token()
            .set_duration_seconds(p.session_duration)
            .set_serial_number(p.serial_number)
            .set_token_code(p.token_code)
            .send()
            .await;
        let out = self
            .calls
            .record(PROVIDER_STS, "GetSessionToken", sent)
            .map_err(|e| errors::classify(&e, "GetSessionToken", ""))?;
        let c = out
            .credentials
            .ok_or_else(|| ProviderError::unavailable("GetSessionToken returned no credentials"))?;
        Ok(eso_provider::generators::Generated(BTreeMap::from([
            ("access_key_id".to_string(), c.access_key_id.into_bytes()),
            (
                "secret_access_key".to_string(),
                c.secret_access_key.into_bytes(),
            ),
            ("session_token".to_string(), c.session_token.into_bytes()),
            (
                "expiration".to_string(),
                c.expiration.secs().to_string().into_bytes(),
            ),
        ])))
    }

    /// ECRAuthorizationToken: GetAuthorizationToken. Output keys as ESO: `username`,
    /// `password` (the two halves of the decoded token), `proxy_endpoint`, `expires_at` (Unix
    /// seconds). `scope: public` (ECR Public) is reported unsupported.
    async fn ecr_token(
        &self,
        spec: &eso_api::generators::EcrAuthorizationTokenSpec,
        namespace: &str,
        kube: Arc<dyn KubeAccess>,
    ) -> Result<eso_provider::generators::Generated, ProviderError> {
        use base64::Engine as _;
        match spec.scope.as_deref() {
            None | Some("") | Some("private") => {}
            Some("public") => {
                return Err(ProviderError::unsupported(
                    "ECRAuthorizationToken scope public (ECR Public) is not supported by this operator; private is",
                ));
            }
            Some(other) => {
                return Err(ProviderError::invalid_config(format!(
                    "ECRAuthorizationToken scope {other:?}: use private or public"
                )));
            }
        }
        let (creds, region) = self
            .generator_credentials(
                spec.auth.as_ref(),
                spec.role.as_ref(),
                &spec.region,
                namespace,
                kube,
            )
            .await?;
        let mut b = aws_sdk_ecr::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .http_client(self.http.clone())
            .credentials_provider(creds);
        if let Some(e) = &self.ecr_endpoint {
            b = b.endpoint_url(e);
        }
        let client = aws_sdk_ecr::Client::from_conf(b.build());
        let sent = client.get_authorization_token().send().await;
        let out = self
            .calls
            .record(PROVIDER_ECR, "GetAuthorizationToken", sent)
            .map_err(|e| errors::classify(&e, "GetAuthorizationToken", ""))?;
        let data = out.authorization_data.unwrap_or_default();
        let [d] = data.as_slice() else {
            return Err(ProviderError::unavailable(format!(
                "GetAuthorizationToken returned {} authorization tokens, expected 1",
                data.len()
            )));
        };
        let token = d.authorization_token.as_deref().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ProviderError::unavailable(
                    "GetAuthorizationToken returned a token that is not base64 text",
                )
            })?;
        let (user, pass) = decoded
            .split_once(':')
            .filter(|(_, p)| !p.contains(':'))
            .ok_or_else(|| ProviderError::unavailable("unexpected ECR token format"))?;
        let mut m = BTreeMap::from([
            ("username".to_string(), user.as_bytes().to_vec()),
            ("password".to_string(), pass.as_bytes().to_vec()),
            (
                "proxy_endpoint".to_string(),
                d.proxy_endpoint.clone().unwrap_or_default().into_bytes(),
            ),
        ]);
        let exp = d.expires_at.map_or(0, |t| t.secs());
        m.insert("expires_at".to_string(), exp.to_string().into_bytes());
        Ok(eso_provider::generators::Generated(m))
    }

    /// The store's credentials: base auth, then `additionalRoles`, then `role` (with external
    /// ID and session tags).
    async fn credentials(
        &self,
        store: &StoreInfo,
        aws: &AwsProvider,
        es_namespace: &str,
        kube: Arc<dyn KubeAccess>,
        region: &Region,
    ) -> Result<SharedCredentialsProvider, ProviderError> {
        let mut creds = self
            .base_credentials(store, aws, es_namespace, kube, region)
            .await?;
        for role in &aws.additional_roles {
            let sts = self.sts_client(region, Some(creds.clone()));
            creds = SharedCredentialsProvider::new(auth::AssumeRole {
                sts,
                role_arn: role.clone(),
                external_id: None,
                tags: Vec::new(),
                transitive_tag_keys: Vec::new(),
                calls: self.calls.clone(),
            });
        }
        if let Some(role) = aws.role.as_ref().filter(|r| !r.is_empty()) {
            let sts = self.sts_client(region, Some(creds.clone()));
            let tags = session_tags(aws, store, es_namespace);
            creds = SharedCredentialsProvider::new(auth::AssumeRole {
                sts,
                role_arn: role.clone(),
                external_id: aws.external_id.clone().filter(|s| !s.is_empty()),
                tags,
                transitive_tag_keys: aws.transitive_tag_keys.clone(),
                calls: self.calls.clone(),
            });
        }
        Ok(creds)
    }
}

#[async_trait]
impl ProviderFactory for AwsFactory {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn handles(&self, spec: &SecretStoreSpec) -> bool {
        Self::aws(spec).is_some()
    }

    fn auth_scope(&self, store: &StoreInfo, es_namespace: &str) -> String {
        // Session tags naming the ExternalSecret's namespace make the credentials of a
        // ClusterSecretStore differ per namespace.
        let per_namespace_tags = store.kind == StoreKind::ClusterSecretStore
            && Self::aws(&store.spec).is_some_and(|a| {
                a.role.as_ref().is_some_and(|r| !r.is_empty())
                    && matches!(
                        a.session_tags_policy,
                        Some(AwsSessionTagsPolicy::Simple | AwsSessionTagsPolicy::Custom)
                    )
            });
        if self.is_referent(store) || per_namespace_tags {
            es_namespace.to_string()
        } else {
            String::new()
        }
    }

    fn is_referent(&self, store: &StoreInfo) -> bool {
        if store.kind != StoreKind::ClusterSecretStore {
            return false;
        }
        let Some(auth) = Self::aws(&store.spec).and_then(|a| a.auth.as_ref()) else {
            return false;
        };
        if let Some(sr) = &auth.secret_ref {
            return sr.access_key_id_secret_ref.namespace.is_none()
                || sr.secret_access_key_secret_ref.namespace.is_none();
        }
        if let Some(sa) = auth
            .jwt
            .as_ref()
            .and_then(|j| j.service_account_ref.as_ref())
        {
            return sa.namespace.is_none();
        }
        false
    }

    async fn generate(
        &self,
        spec: &eso_api::generators::GeneratorSpec,
        namespace: &str,
        kube: Arc<dyn KubeAccess>,
    ) -> Option<Result<eso_provider::generators::Generated, ProviderError>> {
        use eso_api::generators::GeneratorSpec;
        match spec {
            GeneratorSpec::Sts(s) => Some(self.sts_session_token(s, namespace, kube).await),
            GeneratorSpec::Ecr(e) => Some(self.ecr_token(e, namespace, kube).await),
            _ => None,
        }
    }

    async fn build(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
        kube: Arc<dyn KubeAccess>,
    ) -> Result<Arc<dyn SecretsProvider>, ProviderError> {
        let aws = Self::aws(&store.spec)
            .ok_or_else(|| ProviderError::invalid_config("store has no aws provider"))?;
        if !matches!(
            aws.service,
            AwsServiceType::SecretsManager | AwsServiceType::ParameterStore
        ) {
            return Err(ProviderError::unsupported(format!(
                "aws service {:?} is not supported; SecretsManager and ParameterStore are",
                aws.service
            )));
        }
        if aws.region.is_empty() {
            return Err(ProviderError::invalid_config(
                "spec.provider.aws.region is required",
            ));
        }
        let region = Region::new(aws.region.clone());
        let creds = self
            .credentials(store, aws, es_namespace, kube, &region)
            .await?;
        let retry = retry_config(&store.spec)?;
        if aws.service == AwsServiceType::ParameterStore {
            let mut b = aws_sdk_ssm::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(region)
                .http_client(self.http.clone())
                .credentials_provider(creds);
            if let Some(r) = retry {
                b = b.retry_config(r);
            }
            if let Some(e) = &self.ssm_endpoint {
                b = b.endpoint_url(e);
            }
            return Ok(Arc::new(ParameterStoreProvider::new(
                aws_sdk_ssm::Client::from_conf(b.build()),
                aws.prefix.clone().unwrap_or_default(),
            )));
        }
        let mut b = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(self.http.clone())
            .credentials_provider(creds.clone());
        if let Some(r) = retry {
            b = b.retry_config(r);
        }
        if let Some(e) = &self.secretsmanager_endpoint {
            b = b.endpoint_url(e);
        }
        Ok(Arc::new(SecretsManagerProvider {
            no_batch: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            client: aws_sdk_secretsmanager::Client::from_conf(b.build()),
            sts: self.sts_client(&region, Some(creds)),
            prefix: aws.prefix.clone().unwrap_or_default(),
            calls: self.calls.clone(),
            delete_settings: aws.secrets_manager.clone(),
        }))
    }

    /// Secrets Manager stores are `ReadWrite` (PushSecret is implemented); Parameter Store
    /// stores `ReadOnly` (PutParameter is not).
    fn capabilities(&self, spec: &SecretStoreSpec) -> Capabilities {
        match Self::aws(spec).map(|a| a.service) {
            Some(AwsServiceType::SecretsManager) => Capabilities::ReadWrite,
            _ => Capabilities::ReadOnly,
        }
    }
}

/// The session tags of the final `role` (ESO): `sessionTagsPolicy: Simple` replaces
/// `sessionTags` with esoNamespace (the ExternalSecret's namespace), esoStoreName and
/// esoStoreKind; `Custom` adds the non-empty `customSessionTags` to those three (which win over
/// a custom tag of the same name). `None` or unset: `sessionTags` as written.
pub fn session_tags(
    aws: &AwsProvider,
    store: &StoreInfo,
    es_namespace: &str,
) -> Vec<(String, String)> {
    let custom = match aws.session_tags_policy {
        None | Some(AwsSessionTagsPolicy::None) => {
            return aws
                .session_tags
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect();
        }
        Some(AwsSessionTagsPolicy::Simple) => BTreeMap::new(),
        Some(AwsSessionTagsPolicy::Custom) => aws.custom_session_tags.clone(),
    };
    let mut tags: BTreeMap<String, String> = custom
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect();
    let namespace = store
        .namespace
        .clone()
        .unwrap_or_else(|| es_namespace.to_string());
    tags.insert("esoNamespace".to_string(), namespace);
    tags.insert("esoStoreName".to_string(), store.name.clone());
    tags.insert("esoStoreKind".to_string(), store.kind.as_str().to_string());
    tags.into_iter().collect()
}

/// The SDK retry settings from the store's `retrySettings` (ESO): `maxRetries` is the number of
/// attempts in total, as in ESO (default 3; 0 is taken as 1: no retry), `retryInterval` the
/// longest delay between two attempts (the SDK's backoff is jittered up to it). Unset: the SDK's
/// standard retries.
pub fn retry_config(
    spec: &SecretStoreSpec,
) -> Result<Option<aws_smithy_types::retry::RetryConfig>, ProviderError> {
    let Some(rs) = spec.retry_settings.as_ref() else {
        return Ok(None);
    };
    let attempts = rs
        .max_retries
        .map_or(3, |n| u32::try_from(n).unwrap_or(0).max(1));
    let mut c = aws_smithy_types::retry::RetryConfig::standard().with_max_attempts(attempts);
    if let Some(i) = rs.retry_interval.as_deref() {
        let d = eso_api::parse_go_duration(i).ok_or_else(|| {
            ProviderError::invalid_config(format!(
                "spec.retrySettings.retryInterval {i:?} is not a Go duration"
            ))
        })?;
        if !d.is_zero() {
            c = c.with_initial_backoff(d).with_max_backoff(d);
        }
    }
    Ok(Some(c))
}

/// AWS Secrets Manager for one store and credential identity.
#[derive(Clone, Debug)]
pub struct SecretsManagerProvider {
    /// Set once BatchGetSecretValue is denied: the identity only has GetSecretValue (ESO's
    /// minimal policy), so reads go one by one from then on.
    no_batch: Arc<std::sync::atomic::AtomicBool>,
    client: aws_sdk_secretsmanager::Client,
    sts: aws_sdk_sts::Client,
    prefix: String,
    calls: CallObserver,
    /// `spec.provider.aws.secretsManager`: how pushed secrets are deleted.
    delete_settings: Option<eso_api::AwsSecretsManagerSettings>,
}

impl SecretsManagerProvider {
    fn id(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Report a Secrets Manager call.
    fn sm<T, E>(&self, call: &'static str, result: Result<T, E>) -> Result<T, E> {
        self.calls.record(PROVIDER_SECRETS_MANAGER, call, result)
    }

    async fn get_value(
        &self,
        id: &str,
        version: &VersionSelector,
        key: &str,
    ) -> Result<RemoteSecret, ProviderError> {
        let mut req = self.client.get_secret_value().secret_id(id);
        req = match version {
            VersionSelector::Current => req.version_stage(eso_provider::DEFAULT_VERSION_STAGE),
            VersionSelector::Stage(s) => req.version_stage(s),
            VersionSelector::Id(v) => req.version_id(v),
        };
        let out = self
            .sm("GetSecretValue", req.send().await)
            .map_err(|e| errors::classify(&e, "GetSecretValue", key))?;
        Ok(RemoteSecret::Value {
            string: out.secret_string,
            binary: out.secret_binary.map(|b| b.into_inner()),
        })
    }

    async fn tags(&self, key: &str) -> Result<RemoteSecret, ProviderError> {
        let id = self.id(key);
        let out = self
            .sm(
                "DescribeSecret",
                self.client.describe_secret().secret_id(&id).send().await,
            )
            .map_err(|e| errors::classify(&e, "DescribeSecret", key))?;
        let tags: BTreeMap<String, String> = out
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
            .collect();
        Ok(RemoteSecret::Tags(tags))
    }

    async fn batch(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, Result<RemoteSecret, ProviderError>>, ProviderError> {
        let out = self
            .sm(
                "BatchGetSecretValue",
                self.client
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(ids.to_vec()))
                    .send()
                    .await,
            )
            .map_err(|e| errors::classify(&e, "BatchGetSecretValue", &ids.join(",")))?;
        let mut res = BTreeMap::new();
        for v in out.secret_values.unwrap_or_default() {
            let value = RemoteSecret::Value {
                string: v.secret_string,
                binary: v.secret_binary.map(|b| b.into_inner()),
            };
            if let Some(n) = v.name.clone() {
                res.insert(n, Ok(value.clone()));
            }
            if let Some(a) = v.arn {
                res.insert(a, Ok(value));
            }
        }
        for e in out.errors.unwrap_or_default() {
            if let Some(id) = e.secret_id {
                let err = errors::from_code(
                    e.error_code.as_deref().unwrap_or("Unknown"),
                    e.message.as_deref().unwrap_or(""),
                    "BatchGetSecretValue",
                    &id,
                );
                res.insert(id, Err(err));
            }
        }
        Ok(res)
    }
}

/// Whether a read can go in a batch call (BatchGetSecretValue, GetParameters): the current
/// value by name. Versions, labels, ARNs and tags are read alone.
pub(crate) fn batchable(r: &RemoteRef) -> bool {
    !r.metadata && r.version == VersionSelector::Current && !r.key.starts_with("arn:")
}

#[async_trait]
impl SecretsProvider for SecretsManagerProvider {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        if remote.metadata {
            return self.tags(&remote.key).await;
        }
        self.get_value(&self.id(&remote.key), &remote.version, &remote.key)
            .await
    }

    /// Current versions by name: [`BATCH_LIMIT`] per BatchGetSecretValue (until AWS denies the
    /// call); others alone.
    fn batch_limit(&self, remote: &RemoteRef) -> usize {
        if batchable(remote) && !self.no_batch.load(std::sync::atomic::Ordering::Relaxed) {
            BATCH_LIMIT
        } else {
            1
        }
    }

    /// Current versions by name are read with BatchGetSecretValue, 20 per call; other requests one by one.
    async fn get_secrets(&self, remotes: &[RemoteRef]) -> Vec<Result<RemoteSecret, ProviderError>> {
        let batchable: Vec<usize> = remotes
            .iter()
            .enumerate()
            .filter(|(_, r)| batchable(r))
            .map(|(i, _)| i)
            .collect();
        let mut out: Vec<Option<Result<RemoteSecret, ProviderError>>> = vec![None; remotes.len()];
        if batchable.len() > 1 && !self.no_batch.load(std::sync::atomic::Ordering::Relaxed) {
            for chunk in batchable.chunks(BATCH_LIMIT) {
                let ids: Vec<String> = chunk
                    .iter()
                    .filter_map(|i| remotes.get(*i))
                    .map(|r| self.id(&r.key))
                    .collect();
                match self.batch(&ids).await {
                    Ok(mut found) => {
                        for i in chunk {
                            if let Some(r) = remotes.get(*i) {
                                // Not in the answer at all: read it singly rather than drop it.
                                if let Some(v) = found.remove(&self.id(&r.key))
                                    && let Some(slot) = out.get_mut(*i)
                                {
                                    *slot = Some(v.map_err(|e| match e {
                                        ProviderError::NotFound { .. } => {
                                            ProviderError::not_found(r.key.clone())
                                        }
                                        other => other,
                                    }));
                                }
                            }
                        }
                    }
                    // Denied: fall back to single reads (left empty here) for good.
                    Err(e) if e.class() == eso_provider::ErrorClass::AccessDenied => {
                        self.no_batch
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        for i in chunk {
                            if let Some(slot) = out.get_mut(*i) {
                                *slot = Some(Err(e.clone()));
                            }
                        }
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(remotes.len());
        for (slot, r) in out.into_iter().zip(remotes) {
            results.push(match slot {
                Some(v) => v,
                None => self.get_secret(r).await,
            });
        }
        results
    }

    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        let re = match &query.name_regexp {
            Some(r) => Some(
                regex::Regex::new(r)
                    .map_err(|e| ProviderError::invalid_config(format!("find.name.regexp: {e}")))?,
            ),
            None => None,
        };
        let mut filters = Vec::new();
        let filter = |k: FilterNameStringType, v: &str| Filter::builder().key(k).values(v).build();
        if let Some(p) = &query.path {
            filters.push(filter(FilterNameStringType::Name, p));
        }
        for (k, v) in &query.tags {
            filters.push(filter(FilterNameStringType::TagKey, k));
            filters.push(filter(FilterNameStringType::TagValue, v));
        }
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sent = self
                .client
                .list_secrets()
                .set_filters(if filters.is_empty() {
                    None
                } else {
                    Some(filters.clone())
                })
                .set_next_token(token.take())
                .max_results(100)
                .send()
                .await;
            let out = self.sm("ListSecrets", sent).map_err(|e| {
                errors::classify(&e, "ListSecrets", query.path.as_deref().unwrap_or(""))
            })?;
            for s in out.secret_list.unwrap_or_default() {
                // Match tags exactly (AWS filters do not pair keys with values).
                let tags: BTreeMap<String, String> = s
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                    .collect();
                if !query.tags.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                    continue;
                }
                if let Some(n) = s.name
                    && re.as_ref().is_none_or(|re| re.is_match(&n))
                {
                    names.push(n);
                }
            }
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut result = BTreeMap::new();
        for chunk in names.chunks(BATCH_LIMIT) {
            let ids: Vec<String> = chunk.to_vec();
            let mut found = self.batch(&ids).await?;
            for n in chunk {
                match found.remove(n) {
                    Some(Ok(v)) => {
                        result.insert(n.clone(), v);
                    }
                    // Deleted between list and read: skip it.
                    Some(Err(ProviderError::NotFound { .. })) => {}
                    Some(Err(e)) => return Err(e),
                    None => {
                        // Names from ListSecrets are full names: read without the store prefix.
                        match self.get_value(n, &VersionSelector::Current, n).await {
                            Ok(v) => {
                                result.insert(n.clone(), v);
                            }
                            Err(ProviderError::NotFound { .. }) => {}
                            Err(other) => return Err(other),
                        }
                    }
                }
            }
        }
        Ok(result)
    }

    /// ListSecrets, paginated (100 per call): name and ARN → LastChangedDate, prefix stripped.
    async fn last_changed(
        &self,
    ) -> Result<Option<BTreeMap<String, std::time::SystemTime>>, ProviderError> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let sent = self
                .client
                .list_secrets()
                .set_filters(if self.prefix.is_empty() {
                    None
                } else {
                    Some(vec![
                        Filter::builder()
                            .key(FilterNameStringType::Name)
                            .values(&self.prefix)
                            .build(),
                    ])
                })
                .set_next_token(token.take())
                .max_results(100)
                .send()
                .await;
            let page = self
                .sm("ListSecrets", sent)
                .map_err(|e| errors::classify(&e, "ListSecrets", &self.prefix))?;
            for s in page.secret_list.unwrap_or_default() {
                let Some(changed) = s
                    .last_changed_date
                    .and_then(|d| std::time::SystemTime::try_from(d).ok())
                else {
                    continue;
                };
                if let Some(name) = s
                    .name
                    .as_deref()
                    .and_then(|n| n.strip_prefix(self.prefix.as_str()))
                {
                    out.insert(name.to_string(), changed);
                }
                if let Some(arn) = s.arn {
                    out.insert(arn, changed);
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        Ok(Some(out))
    }

    async fn validate(&self) -> Result<Capabilities, ProviderError> {
        let sent = self.sts.get_caller_identity().send().await;
        self.calls
            .record(PROVIDER_STS, "GetCallerIdentity", sent)
            .map_err(|e| errors::classify(&e, "GetCallerIdentity", ""))?;
        Ok(Capabilities::ReadWrite)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ReadWrite
    }

    /// DescribeSecret (ownership, versions), then GetSecretValue only when a current value
    /// exists, and CreateSecret or PutSecretValue only when the value differs.
    async fn push_secret(&self, request: &PushRequest) -> Result<PushOutcome, ProviderError> {
        self.push(request).await
    }

    /// DescribeSecret, then DeleteSecret (honouring `secretsManager.forceDeleteWithoutRecovery`
    /// / `recoveryWindowInDays`), or PutSecretValue without the property.
    async fn delete_secret(&self, remote: &PushRemoteRef) -> Result<DeleteOutcome, ProviderError> {
        self.delete(remote).await
    }

    async fn secret_exists(&self, remote: &PushRemoteRef) -> Result<bool, ProviderError> {
        self.exists(remote).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(kind: StoreKind, auth: serde_json::Value) -> StoreInfo {
        let spec: SecretStoreSpec = serde_json::from_value(serde_json::json!({
            "provider": {"aws": {"service": "SecretsManager", "region": "us-east-1", "auth": auth}}
        }))
        .unwrap();
        StoreInfo {
            kind,
            name: "s".into(),
            namespace: (kind == StoreKind::SecretStore).then(|| "team-a".to_string()),
            uid: "u".into(),
            generation: 1,
            spec: Arc::new(spec),
        }
    }

    fn keys(ns: Option<&str>) -> serde_json::Value {
        let mut r = serde_json::json!({"name": "creds", "key": "k"});
        if let Some(ns) = ns {
            r["namespace"] = ns.into();
        }
        serde_json::json!({"secretRef": {"accessKeyIDSecretRef": r.clone(), "secretAccessKeySecretRef": r}})
    }

    #[test]
    fn secret_store_credentials_stay_in_its_namespace() {
        let s = store(StoreKind::SecretStore, keys(None));
        assert_eq!(
            AwsFactory::credential_namespace(&s, "team-a", None, "x").unwrap(),
            "team-a"
        );
        assert_eq!(
            AwsFactory::credential_namespace(&s, "team-a", Some("team-a"), "x").unwrap(),
            "team-a"
        );
        let e =
            AwsFactory::credential_namespace(&s, "team-a", Some("kube-system"), "x").unwrap_err();
        assert_eq!(e.class(), eso_provider::ErrorClass::InvalidConfig);
    }

    #[test]
    fn cluster_store_uses_the_reference_or_the_external_secret_namespace() {
        let s = store(StoreKind::ClusterSecretStore, keys(None));
        assert_eq!(
            AwsFactory::credential_namespace(&s, "app", None, "x").unwrap(),
            "app"
        );
        assert_eq!(
            AwsFactory::credential_namespace(&s, "app", Some("creds"), "x").unwrap(),
            "creds"
        );
        let f = AwsFactory::with_endpoints(None, None);
        assert!(
            f.is_referent(&s),
            "no namespace in the reference: referent auth"
        );
        assert_eq!(f.auth_scope(&s, "app"), "app");
        let fixed = store(StoreKind::ClusterSecretStore, keys(Some("creds")));
        assert!(!f.is_referent(&fixed));
        assert_eq!(f.auth_scope(&fixed, "app"), "");
        assert!(!f.is_referent(&store(StoreKind::SecretStore, keys(None))));
    }

    #[test]
    fn jwt_audience_annotation_comes_first() {
        let none = BTreeMap::new();
        assert_eq!(auth::jwt_audiences(&none, &[]), [STS_AUDIENCE]);
        let ann = BTreeMap::from([(AUDIENCE_ANNOTATION.to_string(), "my-aud".to_string())]);
        assert_eq!(
            auth::jwt_audiences(&ann, &["extra".to_string()]),
            ["my-aud", "extra"]
        );
        let empty = BTreeMap::from([(AUDIENCE_ANNOTATION.to_string(), String::new())]);
        assert_eq!(auth::jwt_audiences(&empty, &[]), [STS_AUDIENCE]);
    }

    fn with_aws(kind: StoreKind, aws: serde_json::Value) -> StoreInfo {
        let mut base = serde_json::json!({"service": "SecretsManager", "region": "us-east-1", "role": "arn:aws:iam::123456789012:role/r"});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), aws.as_object()) {
            b.extend(extra.clone());
        }
        let spec: SecretStoreSpec =
            serde_json::from_value(serde_json::json!({"provider": {"aws": base}})).unwrap();
        StoreInfo {
            spec: Arc::new(spec),
            ..store(kind, keys(Some("creds")))
        }
    }

    #[test]
    fn session_tags_policies() {
        let tags = |s: &StoreInfo, ns: &str| session_tags(AwsFactory::aws(&s.spec).unwrap(), s, ns);
        let explicit = serde_json::json!({"sessionTags": [{"key": "team", "value": "a"}]});
        let s = with_aws(StoreKind::SecretStore, explicit.clone());
        assert_eq!(tags(&s, "team-a"), [("team".into(), "a".into())]);
        let mut simple = explicit.clone();
        simple["sessionTagsPolicy"] = "Simple".into();
        let s = with_aws(StoreKind::SecretStore, simple.clone());
        assert_eq!(
            tags(&s, "team-a"),
            [
                ("esoNamespace".to_string(), "team-a".to_string()),
                ("esoStoreKind".into(), "SecretStore".into()),
                ("esoStoreName".into(), "s".into()),
            ]
        );
        let c = with_aws(StoreKind::ClusterSecretStore, simple);
        assert_eq!(tags(&c, "app")[0], ("esoNamespace".into(), "app".into()));
        assert_eq!(tags(&c, "app")[1].1, "ClusterSecretStore");
        let f = AwsFactory::with_endpoints(None, None);
        assert_eq!(f.auth_scope(&c, "app"), "app", "tags differ per namespace");
        let mut custom = explicit;
        custom["sessionTagsPolicy"] = "Custom".into();
        custom["customSessionTags"] = serde_json::json!({"cost": "42", "empty": ""});
        let s = with_aws(StoreKind::SecretStore, custom);
        let t = tags(&s, "team-a");
        assert_eq!(t.len(), 4, "{t:?}");
        assert!(t.contains(&("cost".into(), "42".into())));
        assert!(!t.iter().any(|(k, _)| k == "team" || k == "empty"));
    }

    #[test]
    fn retry_settings_map_to_sdk_retries() {
        let spec = |rs: serde_json::Value| -> SecretStoreSpec {
            serde_json::from_value(serde_json::json!({
                "provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}},
                "retrySettings": rs
            }))
            .unwrap()
        };
        let none: SecretStoreSpec = serde_json::from_value(serde_json::json!({
            "provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}
        }))
        .unwrap();
        assert!(retry_config(&none).unwrap().is_none());
        let c = retry_config(&spec(
            serde_json::json!({"maxRetries": 5, "retryInterval": "250ms"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.max_attempts(), 5);
        assert_eq!(c.initial_backoff(), std::time::Duration::from_millis(250));
        assert_eq!(c.max_backoff(), std::time::Duration::from_millis(250));
        let c = retry_config(&spec(serde_json::json!({"maxRetries": 0})))
            .unwrap()
            .unwrap();
        assert_eq!(c.max_attempts(), 1);
        let c = retry_config(&spec(serde_json::json!({}))).unwrap().unwrap();
        assert_eq!(c.max_attempts(), 3);
    }

    #[test]
    fn static_keys_are_validated() {
        assert!(auth::static_keys(b"AKID".to_vec(), b"secret".to_vec(), None).is_ok());
        assert!(auth::static_keys(b"".to_vec(), b"secret".to_vec(), None).is_err());
        assert!(auth::static_keys(vec![0xff], b"secret".to_vec(), None).is_err());
    }

    #[tokio::test]
    async fn jwt_without_role_annotation_is_a_clear_config_error() {
        let mut kube = eso_provider::MockKubeAccess::new();
        kube.expect_service_account_annotations()
            .returning(|_, _| Ok(BTreeMap::new()));
        let s = store(
            StoreKind::SecretStore,
            serde_json::json!({"jwt": {"serviceAccountRef": {"name": "app"}}}),
        );
        let f = AwsFactory::with_endpoints(
            Some("http://127.0.0.1:9".into()),
            Some("http://127.0.0.1:9".into()),
        );
        let e = match f.build(&s, "team-a", Arc::new(kube)).await {
            Ok(_) => panic!("built without a role"),
            Err(e) => e,
        };
        assert_eq!(e.class(), eso_provider::ErrorClass::InvalidConfig);
        assert!(e.to_string().contains(ROLE_ARN_ANNOTATION), "{e}");
    }

    #[tokio::test]
    async fn unsupported_service_is_reported() {
        let spec: SecretStoreSpec = serde_json::from_value(serde_json::json!({
            "provider": {"aws": {"service": "CertificateManager", "region": "us-east-1"}}
        }))
        .unwrap();
        let s = StoreInfo {
            spec: Arc::new(spec),
            ..store(StoreKind::SecretStore, keys(None))
        };
        let f = AwsFactory::with_endpoints(None, None);
        let e = match f
            .build(&s, "team-a", Arc::new(eso_provider::MockKubeAccess::new()))
            .await
        {
            Ok(_) => panic!("built"),
            Err(e) => e,
        };
        assert_eq!(e.class(), eso_provider::ErrorClass::Unsupported);
    }
}
