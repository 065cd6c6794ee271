//! Provider wiring for the bundled operator: the registry hub with the fake and AWS providers,
//! with cache counters exported as metrics.

use std::sync::Arc;

use async_trait::async_trait;
use eso_mapping::{Fetched, Request};
use eso_provider::CacheConfig;
use eso_provider_aws::AwsFactory;
use eso_reconciler::hub::{DeleteOutcome, PushOutcome, PushRemoteRef, PushRequest};
use eso_reconciler::kube_access::RegistryHub;
use eso_reconciler::{FetchFailure, Metrics, ProviderHub, StoreContext, Validation};

use crate::{CacheArgs, Fault};

/// The hub plus metrics export.
struct MeteredHub {
    inner: RegistryHub,
    metrics: Arc<Metrics>,
    /// Test-only: every fetch hangs (see `crate::Fault`).
    stuck: bool,
}

impl MeteredHub {
    fn export(&self) {
        let s = self.inner.registry().stats();
        self.metrics.set(
            "eso_provider_remote_reads_total",
            vec![],
            s.remote_reads as f64,
        );
        self.metrics
            .set("eso_provider_cache_hits_total", vec![], s.hits as f64);
        self.metrics.set(
            "eso_provider_cache_coalesced_total",
            vec![],
            s.coalesced as f64,
        );
        self.metrics.set(
            "eso_provider_cache_evictions_total",
            vec![],
            s.evictions as f64,
        );
        self.metrics.set(
            "eso_provider_cache_refreshed_ahead_total",
            vec![],
            s.refreshed_ahead as f64,
        );
        self.metrics.set(
            "eso_provider_clients_built_total",
            vec![],
            s.clients_built as f64,
        );
        self.metrics
            .set("eso_provider_cache_bytes", vec![], s.bytes as f64);
    }
}

#[async_trait]
impl ProviderHub for MeteredHub {
    async fn fetch(
        &self,
        store: &StoreContext,
        es_namespace: &str,
        requests: &[Request],
        max_age: Option<std::time::Duration>,
    ) -> Result<Fetched, FetchFailure> {
        if self.stuck {
            futures::future::pending::<()>().await;
        }
        let r = self
            .inner
            .fetch(store, es_namespace, requests, max_age)
            .await;
        self.export();
        r
    }

    async fn validate(&self, store: &StoreContext) -> Result<Validation, FetchFailure> {
        let r = self.inner.validate(store).await;
        self.export();
        r
    }

    async fn remote_changes(
        &self,
        store: &StoreContext,
        es_namespace: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, std::time::SystemTime>>, FetchFailure>
    {
        let r = self.inner.remote_changes(store, es_namespace).await;
        self.export();
        r
    }

    fn client_scope(&self, store: &StoreContext, es_namespace: &str) -> String {
        self.inner.client_scope(store, es_namespace)
    }

    fn forget_store(&self, store_uid: &str) {
        self.inner.forget_store(store_uid);
    }

    fn capabilities(&self, store: &StoreContext) -> Option<String> {
        self.inner.capabilities(store)
    }

    async fn push(
        &self,
        store: &StoreContext,
        namespace: &str,
        request: &PushRequest,
    ) -> Result<PushOutcome, FetchFailure> {
        self.inner.push(store, namespace, request).await
    }

    async fn delete_pushed(
        &self,
        store: &StoreContext,
        namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<DeleteOutcome, FetchFailure> {
        self.inner.delete_pushed(store, namespace, remote).await
    }

    async fn pushed_exists(
        &self,
        store: &StoreContext,
        namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<bool, FetchFailure> {
        self.inner.pushed_exists(store, namespace, remote).await
    }

    async fn generate(
        &self,
        spec: &eso_api::generators::GeneratorSpec,
        es_namespace: &str,
    ) -> Result<eso_provider::generators::Generated, FetchFailure> {
        self.inner.generate(spec, es_namespace).await
    }
}

/// Build the operator's provider hub.
pub(crate) fn hub(
    client: kube::Client,
    cache: &CacheArgs,
    metrics: Arc<Metrics>,
    fault: Option<Fault>,
) -> Arc<dyn ProviderHub> {
    let config = CacheConfig {
        ttl: cache.ttl,
        max_bytes: usize::try_from(cache.max_bytes).unwrap_or(usize::MAX),
        ..CacheConfig::default()
    };
    // Every AWS call feeds ESO's externalsecret_provider_api_calls_count.
    let aws = AwsFactory::from_env().with_observer(metrics.clone());
    let inner = RegistryHub::new(client, config)
        // The operator has always served `fake` stores (ESO does too); the e2e suite uses them.
        .with_fake()
        .with_factory(Arc::new(aws));
    Arc::new(MeteredHub {
        inner,
        metrics,
        stuck: fault == Some(Fault::StuckReconcile),
    })
}
