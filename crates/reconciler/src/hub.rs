//! The reconciler's view of providers: a store-aware "fetch these requests" interface.
//!
//! The bundled operator implements it with eso-provider's registry (the fake and AWS providers,
//! shared caches). An embedding controller can implement it with anything.

use std::sync::Arc;

use async_trait::async_trait;
use eso_api::{SecretStoreSpec, StoreKind};
use eso_mapping::{Fetched, Request};

/// A store, resolved from the cluster, as a provider needs it.
#[derive(Clone, Debug)]
pub struct StoreContext {
    /// SecretStore or ClusterSecretStore.
    pub kind: StoreKind,
    /// Store name.
    pub name: String,
    /// Namespace of a SecretStore; `None` for a ClusterSecretStore.
    pub namespace: Option<String>,
    /// UID of the store object (part of cache identities).
    pub uid: String,
    /// Generation of the store object (a spec change invalidates cached clients).
    pub generation: i64,
    /// The spec.
    pub spec: Arc<SecretStoreSpec>,
}

/// How a provider failure is classified. Only [`FailureClass::NotFound`] is authoritative, and
/// it never reaches here for single reads: it is answered as `None` in [`Fetched`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// The remote secret does not exist.
    NotFound,
    /// Credentials are missing, invalid or lack permission.
    AccessDenied,
    /// The provider throttled us.
    Throttled,
    /// The provider is unreachable or failing (transient).
    Unavailable,
    /// The store or request is misconfigured (permanent until the spec changes).
    InvalidConfig,
    /// The store's provider or a feature is not supported by this operator.
    Unsupported,
}

impl FailureClass {
    /// A short stable name (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::NotFound => "NotFound",
            FailureClass::AccessDenied => "AccessDenied",
            FailureClass::Throttled => "Throttled",
            FailureClass::Unavailable => "Unavailable",
            FailureClass::InvalidConfig => "InvalidConfig",
            FailureClass::Unsupported => "Unsupported",
        }
    }
}

/// A provider failure with a message safe to show users (never a secret value).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct FetchFailure {
    /// The class.
    pub class: FailureClass,
    /// What failed and what to do about it.
    pub message: String,
}

impl FetchFailure {
    /// A new failure.
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// Store validation result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Access proven; capabilities (`ReadOnly`, `ReadWrite`).
    Valid(String),
    /// Could not be determined (e.g. referent auth: credentials depend on the ExternalSecret's namespace).
    Unknown(String),
}

/// Executes requests against providers.
#[async_trait]
pub trait ProviderHub: Send + Sync + 'static {
    /// Run `requests` (all served by `store`) on behalf of an ExternalSecret in `es_namespace`.
    /// Shared cached answers older than `max_age` (the ExternalSecret's refresh interval) must not be used.
    /// Remote secrets that authoritatively do not exist are answered `None`; any other failure
    /// fails the whole call.
    async fn fetch(
        &self,
        store: &StoreContext,
        es_namespace: &str,
        requests: &[Request],
        max_age: Option<std::time::Duration>,
    ) -> Result<Fetched, FetchFailure>;

    /// Prove access with one cheap authenticated call.
    async fn validate(&self, store: &StoreContext) -> Result<Validation, FetchFailure>;

    /// When each remote secret of the store last changed, if the provider can tell cheaply.
    /// The default (`Ok(None)`) disables remote change detection for this hub.
    async fn remote_changes(
        &self,
        _store: &StoreContext,
        _es_namespace: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, std::time::SystemTime>>, FetchFailure>
    {
        Ok(None)
    }

    /// Forget cached values and clients of a store (e.g. it was deleted or changed).
    fn forget_store(&self, _store_uid: &str) {}
}
