//! The reconciler's view of providers: a store-aware "fetch these requests" interface.
//!
//! The bundled operator implements it with eso-provider's registry (the fake and AWS providers,
//! shared caches). An embedding controller can implement it with anything.

use async_trait::async_trait;
use eso_mapping::{Fetched, Request};

/// The write side's request and outcome types (the providers' own).
pub use eso_provider::{DeleteOutcome, PushOutcome, PushRemoteRef, PushRequest};

/// A store, resolved from the cluster, as a provider needs it (the same type providers get).
pub use eso_provider::StoreInfo as StoreContext;

/// How a provider failure is classified (the provider's own classes). Only
/// [`FailureClass::NotFound`] is authoritative, and it never reaches here for single reads: it is
/// answered as `None` in [`Fetched`].
pub use eso_provider::ErrorClass as FailureClass;

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

    /// The credential scope of `store` for an ExternalSecret in `es_namespace`: two namespaces
    /// with the same scope are served by the same client and see the same remote secrets, so
    /// one [`ProviderHub::remote_changes`] answer serves both. The default is the namespace
    /// itself (always correct, never shared); a hub that knows better (e.g. a ClusterSecretStore
    /// with fixed credentials is one scope for every namespace) returns a shared value.
    fn client_scope(&self, _store: &StoreContext, es_namespace: &str) -> String {
        es_namespace.to_string()
    }

    /// Forget cached values and clients of a store (e.g. it was deleted or changed).
    fn forget_store(&self, _store_uid: &str) {}

    /// What the store can do (`ReadOnly`, `ReadWrite`), known without calling the provider;
    /// reported when validation cannot be proven. `None`: unknown (the status keeps its value).
    fn capabilities(&self, _store: &StoreContext) -> Option<String> {
        None
    }

    /// Write one value to `store` on behalf of a PushSecret in `namespace`. The provider
    /// compares first (no write when unchanged) and refuses remote secrets it did not create.
    /// The default: unsupported.
    async fn push(
        &self,
        _store: &StoreContext,
        _namespace: &str,
        request: &PushRequest,
    ) -> Result<PushOutcome, FetchFailure> {
        Err(FetchFailure::new(
            FailureClass::Unsupported,
            format!(
                "this operator cannot push to this store ({})",
                request.remote.key
            ),
        ))
    }

    /// Delete a pushed value (the property, or the remote secret) on behalf of a PushSecret in
    /// `namespace`; never a remote secret this operator did not create. The default: unsupported.
    async fn delete_pushed(
        &self,
        _store: &StoreContext,
        _namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<DeleteOutcome, FetchFailure> {
        Err(FetchFailure::new(
            FailureClass::Unsupported,
            format!(
                "this operator cannot delete from this store ({})",
                remote.key
            ),
        ))
    }

    /// Whether a remote secret (or property) exists (`updatePolicy: IfNotExists`). The default:
    /// unsupported.
    async fn pushed_exists(
        &self,
        _store: &StoreContext,
        _namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<bool, FetchFailure> {
        Err(FetchFailure::new(
            FailureClass::Unsupported,
            format!("this operator cannot check this store ({})", remote.key),
        ))
    }

    /// Run a generator for an ExternalSecret in `es_namespace` (credentials are read there).
    /// The default runs Password and UUID locally and reports every other kind unsupported.
    async fn generate(
        &self,
        spec: &eso_api::generators::GeneratorSpec,
        _es_namespace: &str,
    ) -> Result<eso_provider::generators::Generated, FetchFailure> {
        use eso_api::generators::GeneratorSpec;
        use eso_provider::generators as g;
        let r = match spec {
            GeneratorSpec::Password(p) => g::run_password(p, &mut g::OsRandom),
            GeneratorSpec::Uuid => g::run_uuid(&mut g::OsRandom),
            _ => Err(eso_provider::ProviderError::unsupported(
                "this provider hub runs no AWS generators",
            )),
        };
        r.map_err(crate::kube_access::failure)
    }
}
