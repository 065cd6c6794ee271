//! The provider trait every secret backend implements, its error classes, the caches every
//! provider gets for free, and the `fake` provider.
//!
//! A provider is one small crate: implement [`SecretsProvider`] (read one secret, read many,
//! validate, capabilities; optionally the write side: push, delete, exists) and a
//! [`ProviderFactory`] that builds it from a store spec. Register the
//! factory on a [`Registry`], which adds single-flight, time-bounded, size-capped caching of
//! values and of built clients. Report every backend API call to a [`CallObserver`] (the
//! operator exports them as ESO's `externalsecret_provider_api_calls_count`). See
//! `docs/providers.md` and `examples/custom_provider.rs`.
#![warn(missing_docs)]

mod calls;
mod error;
pub mod fake;
pub mod generators;
mod push;
mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use eso_api::{SecretStoreSpec, StoreKind};

pub use calls::{ApiCallObserver, CallObserver, CallStatus, NoObserver};
pub use error::{ErrorClass, ProviderError};
/// The request and answer types (crate `eso-remote`), re-exported so a provider author finds
/// them next to the trait.
pub use eso_remote::{
    DEFAULT_VERSION_STAGE, Fetched, FindQuery, GeneratedData, RemoteRef, RemoteSecret, Request,
    StoreRef, VersionSelector,
};
pub use push::{DeleteOutcome, PushOutcome, PushRemoteRef, PushRequest};
pub use registry::{CacheConfig, CacheStats, Registry, Validation};

/// A store resolved from the cluster.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    /// SecretStore or ClusterSecretStore.
    pub kind: StoreKind,
    /// Name.
    pub name: String,
    /// Namespace of a SecretStore; `None` for a ClusterSecretStore.
    pub namespace: Option<String>,
    /// UID (part of every cache identity).
    pub uid: String,
    /// Generation (a spec change gives new clients and a cold value cache).
    pub generation: i64,
    /// The spec.
    pub spec: Arc<SecretStoreSpec>,
}

/// What a store can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capabilities {
    /// Read secrets.
    ReadOnly,
    /// Write secrets only.
    WriteOnly,
    /// Both.
    ReadWrite,
}

impl Capabilities {
    /// The status string ESO uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Capabilities::ReadOnly => "ReadOnly",
            Capabilities::WriteOnly => "WriteOnly",
            Capabilities::ReadWrite => "ReadWrite",
        }
    }
}

/// A secret backend, built for one store and one credential identity.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SecretsProvider: Send + Sync {
    /// Read one secret. `Err(NotFound)` only when the backend says authoritatively that it does not exist.
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError>;

    /// Read several secrets; one result per input, in order. The default reads them one by one;
    /// override it when the backend has a batch call.
    async fn get_secrets(&self, remotes: &[RemoteRef]) -> Vec<Result<RemoteSecret, ProviderError>> {
        let mut out = Vec::with_capacity(remotes.len());
        for r in remotes {
            out.push(self.get_secret(r).await);
        }
        out
    }

    /// How many reads like `remote` one backend request of [`SecretsProvider::get_secrets`]
    /// carries (AWS: 20 per BatchGetSecretValue, 10 per GetParameters); 1, the default, when
    /// such a read is sent alone. When a batch goes out with room left, the registry fills it
    /// with cached values of the same kind that are past half their TTL and still in use, so
    /// in a steady state values are refreshed 20 to a call instead of one call each.
    fn batch_limit(&self, remote: &RemoteRef) -> usize {
        let _ = remote;
        1
    }

    /// Find secrets by name regexp, tags and path. Keys are full remote names.
    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError>;

    /// Prove the configuration works with one cheap authenticated call.
    async fn validate(&self) -> Result<Capabilities, ProviderError>;

    /// When each remote secret visible to this store last changed (keys as ExternalSecrets name
    /// them, i.e. without the store's prefix). `Ok(None)`: the backend cannot tell cheaply; then
    /// changes are only seen at each ExternalSecret's refresh interval.
    async fn last_changed(&self) -> Result<Option<BTreeMap<String, SystemTime>>, ProviderError> {
        Ok(None)
    }

    /// What the store can do: `ReadWrite` only when the write methods below are implemented.
    fn capabilities(&self) -> Capabilities {
        Capabilities::ReadOnly
    }

    /// Write one value (PushSecret). Must compare before writing, so an unchanged value creates
    /// no new remote version, and must refuse ([`PushOutcome::NotOwned`]) a remote secret this
    /// operator did not create. The default: `Unsupported`.
    async fn push_secret(&self, request: &PushRequest) -> Result<PushOutcome, ProviderError> {
        Err(ProviderError::unsupported(format!(
            "this store's provider cannot write secrets (PushSecret to {})",
            request.remote.key
        )))
    }

    /// Delete a pushed value: the property when `remote.property` is set (the remote secret is
    /// deleted when it was the last one), else the remote secret. Never deletes a remote secret
    /// this operator did not create ([`DeleteOutcome::NotOwned`]). The default: `Unsupported`.
    async fn delete_secret(&self, remote: &PushRemoteRef) -> Result<DeleteOutcome, ProviderError> {
        Err(ProviderError::unsupported(format!(
            "this store's provider cannot delete secrets ({})",
            remote.key
        )))
    }

    /// Whether the remote secret (or the property, when set) exists (`updatePolicy:
    /// IfNotExists`). The default: `Unsupported`.
    async fn secret_exists(&self, remote: &PushRemoteRef) -> Result<bool, ProviderError> {
        Err(ProviderError::unsupported(format!(
            "this store's provider cannot check secrets for PushSecret ({})",
            remote.key
        )))
    }
}

/// A short-lived ServiceAccount token from the TokenRequest API.
#[derive(Clone)]
pub struct ServiceAccountToken {
    /// The JWT. Never logged.
    pub token: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for ServiceAccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The Kubernetes reads a provider may need to build credentials. The reconciler implements it
/// with a kube client; tests with mocks.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait KubeAccess: Send + Sync {
    /// One key of a Secret. Missing Secret or key → `InvalidConfig`; forbidden → `AccessDenied`.
    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Vec<u8>, ProviderError>;

    /// A token for a ServiceAccount with the given audiences.
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountToken, ProviderError>;

    /// A ServiceAccount's annotations (e.g. `eks.amazonaws.com/role-arn`).
    async fn service_account_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ProviderError>;
}

/// Builds providers from store specs.
#[async_trait]
pub trait ProviderFactory: Send + Sync {
    /// Provider name (`aws`, `fake`, ...), for messages and metrics.
    fn name(&self) -> &'static str;

    /// Whether this factory serves the store.
    fn handles(&self, spec: &SecretStoreSpec) -> bool;

    /// The credential identity a request from an ExternalSecret in `es_namespace` uses. Requests
    /// with the same store and scope share clients and cached values. Most stores return `""`;
    /// a ClusterSecretStore whose credentials are resolved in the ExternalSecret's namespace
    /// (referent auth) returns that namespace.
    fn auth_scope(&self, _store: &StoreInfo, _es_namespace: &str) -> String {
        String::new()
    }

    /// Whether credentials depend on the ExternalSecret's namespace (validation then can't prove access).
    fn is_referent(&self, _store: &StoreInfo) -> bool {
        false
    }

    /// What stores served by this factory can do, known without building a client (reported in
    /// a store's status when access cannot be validated). The default: `ReadOnly`.
    fn capabilities(&self, _spec: &SecretStoreSpec) -> Capabilities {
        Capabilities::ReadOnly
    }

    /// Build a provider for the store and scope.
    async fn build(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
        kube: Arc<dyn KubeAccess>,
    ) -> Result<Arc<dyn SecretsProvider>, ProviderError>;

    /// Run a generator this factory's backend serves (e.g. AWS: ECRAuthorizationToken,
    /// STSSessionToken) for an ExternalSecret in `namespace` (credentials are read there).
    /// `None`: not this factory's generator.
    async fn generate(
        &self,
        _spec: &eso_api::generators::GeneratorSpec,
        _namespace: &str,
        _kube: Arc<dyn KubeAccess>,
    ) -> Option<Result<generators::Generated, ProviderError>> {
        None
    }
}
