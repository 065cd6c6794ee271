//! A complete provider in one file: an in-memory "vault" keyed by path, registered on a
//! [`Registry`] next to the bundled fake provider, then read through the shared cache and mapped
//! with eso-mapping. `cargo run -p eso-provider --example custom_provider` (CI runs it).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use eso_api::{SecretStoreSpec, StoreKind};
use eso_provider::{
    CacheConfig, Capabilities, FindQuery, KubeAccess, ProviderError, ProviderFactory, Registry,
    RemoteRef, RemoteSecret, SecretsProvider, ServiceAccountToken, StoreInfo,
};

/// The provider: serves secrets from a map.
struct MemoryVault {
    secrets: BTreeMap<String, String>,
}

#[async_trait]
impl SecretsProvider for MemoryVault {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        self.secrets
            .get(&remote.key)
            .map(|v| RemoteSecret::string(v.clone()))
            .ok_or_else(|| ProviderError::not_found(remote.key.clone()))
    }

    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        let prefix = query.path.clone().unwrap_or_default();
        Ok(self
            .secrets
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), RemoteSecret::string(v.clone())))
            .collect())
    }

    async fn validate(&self) -> Result<Capabilities, ProviderError> {
        Ok(Capabilities::ReadOnly)
    }
}

/// The factory: claims stores whose spec has a `memoryvault` provider block (kept by eso-api in
/// `spec.provider.other`), and builds the provider from it.
struct MemoryVaultFactory;

#[async_trait]
impl ProviderFactory for MemoryVaultFactory {
    fn name(&self) -> &'static str {
        "memoryvault"
    }

    fn handles(&self, spec: &SecretStoreSpec) -> bool {
        spec.provider.other.contains_key("memoryvault")
    }

    async fn build(
        &self,
        store: &StoreInfo,
        _es_namespace: &str,
        _kube: Arc<dyn KubeAccess>,
    ) -> Result<Arc<dyn SecretsProvider>, ProviderError> {
        let block = store
            .spec
            .provider
            .other
            .get("memoryvault")
            .cloned()
            .unwrap_or_default();
        let secrets: BTreeMap<String, String> = serde_json::from_value(block["secrets"].clone())
            .map_err(|e| {
                ProviderError::invalid_config(format!("spec.provider.memoryvault.secrets: {e}"))
            })?;
        Ok(Arc::new(MemoryVault { secrets }))
    }
}

/// This example needs no Kubernetes reads.
struct NoKube;

#[async_trait]
impl KubeAccess for NoKube {
    async fn secret_key(&self, ns: &str, name: &str, _key: &str) -> Result<Vec<u8>, ProviderError> {
        Err(ProviderError::invalid_config(format!(
            "no cluster in this example ({ns}/{name})"
        )))
    }
    async fn service_account_token(
        &self,
        ns: &str,
        name: &str,
        _aud: &[String],
    ) -> Result<ServiceAccountToken, ProviderError> {
        Err(ProviderError::invalid_config(format!(
            "no cluster in this example ({ns}/{name})"
        )))
    }
    async fn service_account_annotations(
        &self,
        _ns: &str,
        _name: &str,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        Ok(BTreeMap::new())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::new(Arc::new(NoKube), CacheConfig::default())
        .with_fake()
        .with_factory(Arc::new(MemoryVaultFactory));

    let spec: SecretStoreSpec = serde_json::from_value(serde_json::json!({
        "provider": {"memoryvault": {"secrets": {"app/db": "{\"user\":\"admin\",\"password\":\"pw\"}"}}}
    }))?;
    let store = StoreInfo {
        kind: StoreKind::SecretStore,
        name: "vault".into(),
        namespace: Some("apps".into()),
        uid: "example-uid".into(),
        generation: 1,
        spec: Arc::new(spec),
    };
    let es: eso_api::ExternalSecretSpec = serde_json::from_value(serde_json::json!({
        "secretStoreRef": {"name": "vault"},
        "data": [{"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}],
        "dataFrom": [{"extract": {"key": "app/db"}}]
    }))?;

    // Ten ExternalSecrets asking for the same secret cost one provider read.
    let requests = eso_mapping::plan(&es)?;
    let mut fetched = None;
    for _ in 0..10 {
        fetched = Some(registry.fetch(&store, "apps", &requests).await?);
    }
    let fetched = fetched.ok_or("no fetch")?;
    let stats = registry.stats();
    assert_eq!(stats.remote_reads, 1, "{stats:?}");

    let sources = eso_mapping::TemplateSources::default();
    let mapped = eso_mapping::map(&eso_mapping::MappingInput {
        namespace: "apps",
        name: "db",
        spec: &es,
        labels: None,
        annotations: None,
        fetched: &fetched,
        template_sources: &sources,
    })?;
    let keys: Vec<&String> = mapped.data.keys().collect();
    assert_eq!(keys, ["password", "user"]);
    println!(
        "custom provider: keys {keys:?}, {} remote read(s) for 10 fetches",
        stats.remote_reads
    );
    Ok(())
}
