//! ESO's `fake` provider: secrets declared inline in the store (`spec.provider.fake.data[]`).
//! It proves the trait with a second implementation and serves tests and the demo without AWS.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use eso_api::{FakeProviderData, SecretStoreSpec};

use crate::{
    Capabilities, FindQuery, KubeAccess, ProviderError, ProviderFactory, RemoteRef, RemoteSecret,
    SecretsProvider, StoreInfo, VersionSelector,
};

/// Builds [`FakeProvider`]s for stores with `spec.provider.fake`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeFactory;

#[async_trait]
impl ProviderFactory for FakeFactory {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn handles(&self, spec: &SecretStoreSpec) -> bool {
        spec.provider.fake.is_some()
    }

    async fn build(
        &self,
        store: &StoreInfo,
        _es_namespace: &str,
        _kube: Arc<dyn KubeAccess>,
    ) -> Result<Arc<dyn SecretsProvider>, ProviderError> {
        let data = store
            .spec
            .provider
            .fake
            .as_ref()
            .map(|f| f.data.clone())
            .unwrap_or_default();
        Ok(Arc::new(FakeProvider { data }))
    }
}

/// The fake provider: a list of key/value/valueMap/version entries.
#[derive(Clone, Debug, Default)]
pub struct FakeProvider {
    data: Vec<FakeProviderData>,
}

impl FakeProvider {
    /// A provider over the given entries.
    pub fn new(data: Vec<FakeProviderData>) -> Self {
        Self { data }
    }

    fn value(d: &FakeProviderData) -> RemoteSecret {
        if d.value_map.is_empty() {
            RemoteSecret::string(d.value.clone().unwrap_or_default())
        } else {
            RemoteSecret::string(serde_json::to_string(&d.value_map).unwrap_or_default())
        }
    }
}

fn version_matches(entry: Option<&str>, wanted: &VersionSelector) -> bool {
    let entry = entry.unwrap_or("");
    match wanted {
        VersionSelector::Current => entry.is_empty(),
        VersionSelector::Stage(s) | VersionSelector::Id(s) => entry == s,
    }
}

#[async_trait]
impl SecretsProvider for FakeProvider {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        if remote.metadata {
            return Err(ProviderError::unsupported(
                "the fake provider has no metadata (metadataPolicy: Fetch)",
            ));
        }
        self.data
            .iter()
            .find(|d| d.key == remote.key && version_matches(d.version.as_deref(), &remote.version))
            .map(Self::value)
            .ok_or_else(|| ProviderError::not_found(remote.key.clone()))
    }

    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        if !query.tags.is_empty() {
            return Err(ProviderError::unsupported(
                "the fake provider cannot find by tags",
            ));
        }
        let re = match &query.name_regexp {
            Some(r) => Some(
                regex::Regex::new(r)
                    .map_err(|e| ProviderError::invalid_config(format!("find.name.regexp: {e}")))?,
            ),
            None => None,
        };
        Ok(self
            .data
            .iter()
            .filter(|d| d.version.as_deref().unwrap_or("").is_empty())
            .filter(|d| {
                query
                    .path
                    .as_ref()
                    .is_none_or(|p| d.key.starts_with(p.as_str()))
            })
            .filter(|d| re.as_ref().is_none_or(|re| re.is_match(&d.key)))
            .map(|d| (d.key.clone(), Self::value(d)))
            .collect())
    }

    async fn validate(&self) -> Result<Capabilities, ProviderError> {
        Ok(Capabilities::ReadWrite)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ReadWrite
    }
}
