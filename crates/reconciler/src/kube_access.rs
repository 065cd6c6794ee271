//! [`eso_provider::KubeAccess`] implemented with a kube client, and [`RegistryHub`]: the
//! [`ProviderHub`] backed by eso-provider's [`Registry`] (shared caches, any registered factory).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use eso_mapping::{Fetched, Request};
use eso_provider::{
    CacheConfig, KubeAccess, ProviderError, ProviderFactory, Registry, ServiceAccountToken,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::hub::{
    DeleteOutcome, FetchFailure, ProviderHub, PushOutcome, PushRemoteRef, PushRequest,
    StoreContext, Validation,
};

/// Lifetime requested for ServiceAccount tokens.
const TOKEN_TTL_SECONDS: i64 = 600;

fn kube_error(e: kube::Error, what: String) -> ProviderError {
    match &e {
        // A credentials Secret or ServiceAccount that does not exist yet is usually being
        // created (applied in the same batch): retried with backoff, not treated as permanent.
        kube::Error::Api(s) if s.code == 404 => {
            ProviderError::unavailable(format!("{what} not found"))
        }
        kube::Error::Api(s) if s.code == 403 => {
            ProviderError::access_denied(format!("the operator may not read {what}: {}", s.message))
        }
        _ => ProviderError::unavailable(format!("reading {what}: {e}")),
    }
}

/// The Helm chart value that grants the operator TokenRequests (ESO's chart has the same one).
pub const TOKEN_CREATE_CHART_VALUE: &str = "rbac.serviceAccountTokenCreate";

/// A failed TokenRequest. A 403 says which permission is missing and how the chart grants it.
fn token_error(e: kube::Error, namespace: &str, name: &str) -> ProviderError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => ProviderError::access_denied(format!(
            "the operator may not create a token for ServiceAccount {namespace}/{name} (auth.jwt \
             needs create on serviceaccounts/token; with the eso-rs Helm chart set \
             {TOKEN_CREATE_CHART_VALUE}=true, its default): {}",
            s.message
        )),
        _ => kube_error(e, format!("a token for ServiceAccount {namespace}/{name}")),
    }
}

/// Kubernetes reads for providers, through the operator's client.
#[derive(Clone)]
pub struct KubeClientAccess {
    client: Client,
}

impl KubeClientAccess {
    /// Wrap a client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl KubeAccess for KubeClientAccess {
    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get(name)
            .await
            .map_err(|e| kube_error(e, format!("Secret {namespace}/{name}")))?;
        secret
            .data
            .and_then(|mut d| d.remove(key))
            .map(|b| b.0)
            .ok_or_else(|| {
                ProviderError::invalid_config(format!("Secret {namespace}/{name} has no key {key}"))
            })
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountToken, ProviderError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audiences.to_vec(),
                expiration_seconds: Some(TOKEN_TTL_SECONDS),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = api
            .create_token_request(name, &PostParams::default(), &req)
            .await
            .map_err(|e| token_error(e, namespace, name))?;
        let status = out.status.ok_or_else(|| {
            ProviderError::unavailable(format!(
                "TokenRequest for {namespace}/{name} returned no token"
            ))
        })?;
        let expires_at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(status.expiration_timestamp.0.as_second()).unwrap_or_default(),
            );
        Ok(ServiceAccountToken {
            token: status.token,
            expires_at,
        })
    }

    async fn service_account_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let sa = api
            .get(name)
            .await
            .map_err(|e| kube_error(e, format!("ServiceAccount {namespace}/{name}")))?;
        Ok(sa.metadata.annotations.unwrap_or_default())
    }
}

/// A [`ProviderHub`] over eso-provider's [`Registry`].
pub struct RegistryHub {
    registry: Registry,
}

impl RegistryHub {
    /// A hub with no provider registered; add them with [`RegistryHub::with_factory`] (and
    /// [`RegistryHub::with_fake`] for the in-memory `fake` provider).
    pub fn new(client: Client, cache: CacheConfig) -> Self {
        Self {
            registry: Registry::new(Arc::new(KubeClientAccess::new(client)), cache),
        }
    }

    /// Also serve the `fake` provider (in-memory values from the store spec; tests, demos).
    /// Off unless asked for: a store with `provider.fake` otherwise fails validation.
    pub fn with_fake(self) -> Self {
        Self {
            registry: self.registry.with_fake(),
        }
    }

    /// Register a provider factory (AWS, your own).
    pub fn with_factory(self, factory: Arc<dyn ProviderFactory>) -> Self {
        Self {
            registry: self.registry.with_factory(factory),
        }
    }

    /// The registry (cache statistics).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Convert a provider error to the reconciler's failure type.
pub fn failure(e: ProviderError) -> FetchFailure {
    let class = e.class();
    FetchFailure::new(class, e.to_string())
}

#[async_trait]
impl ProviderHub for RegistryHub {
    async fn fetch(
        &self,
        store: &StoreContext,
        es_namespace: &str,
        requests: &[Request],
        max_age: Option<Duration>,
    ) -> Result<Fetched, FetchFailure> {
        self.registry
            .fetch_fresh(store, es_namespace, requests, max_age)
            .await
            .map_err(failure)
    }

    async fn validate(&self, store: &StoreContext) -> Result<Validation, FetchFailure> {
        match self.registry.validate(store).await.map_err(failure)? {
            eso_provider::Validation::Valid(c) => Ok(Validation::Valid(c.as_str().to_string())),
            eso_provider::Validation::Unknown(m) => Ok(Validation::Unknown(m)),
        }
    }

    async fn remote_changes(
        &self,
        store: &StoreContext,
        es_namespace: &str,
    ) -> Result<Option<BTreeMap<String, SystemTime>>, FetchFailure> {
        self.registry
            .last_changed(store, es_namespace)
            .await
            .map_err(failure)
    }

    fn client_scope(&self, store: &StoreContext, es_namespace: &str) -> String {
        // No factory for the store: the poll fails for it anyway; stay per namespace.
        self.registry
            .client_scope(store, es_namespace)
            .unwrap_or_else(|_| es_namespace.to_string())
    }

    fn forget_store(&self, store_uid: &str) {
        self.registry.forget_store(store_uid);
    }

    fn capabilities(&self, store: &StoreContext) -> Option<String> {
        self.registry
            .capabilities(store)
            .ok()
            .map(|c| c.as_str().to_string())
    }

    async fn push(
        &self,
        store: &StoreContext,
        namespace: &str,
        request: &PushRequest,
    ) -> Result<PushOutcome, FetchFailure> {
        self.registry
            .push(store, namespace, request)
            .await
            .map_err(failure)
    }

    async fn delete_pushed(
        &self,
        store: &StoreContext,
        namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<DeleteOutcome, FetchFailure> {
        self.registry
            .delete(store, namespace, remote)
            .await
            .map_err(failure)
    }

    async fn pushed_exists(
        &self,
        store: &StoreContext,
        namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<bool, FetchFailure> {
        self.registry
            .exists(store, namespace, remote)
            .await
            .map_err(failure)
    }

    async fn generate(
        &self,
        spec: &eso_api::generators::GeneratorSpec,
        es_namespace: &str,
    ) -> Result<eso_provider::generators::Generated, FetchFailure> {
        self.registry
            .generate(spec, es_namespace)
            .await
            .map_err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        let status: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": code, "message": message}))
                .unwrap_or_default();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_forbidden_token_request_names_the_chart_value() {
        let e = token_error(
            api_error(
                403,
                "serviceaccounts \"app\" is forbidden: cannot create resource \"serviceaccounts/token\"",
            ),
            "team-a",
            "app",
        );
        assert_eq!(e.class(), eso_provider::ErrorClass::AccessDenied);
        let msg = e.to_string();
        assert!(msg.contains("rbac.serviceAccountTokenCreate=true"), "{msg}");
        assert!(
            msg.contains("team-a/app") && msg.contains("forbidden"),
            "{msg}"
        );
        // Other failures keep their classes (a ServiceAccount not there yet is transient).
        assert_eq!(
            token_error(api_error(404, "not found"), "team-a", "app").class(),
            eso_provider::ErrorClass::Unavailable
        );
    }
}
