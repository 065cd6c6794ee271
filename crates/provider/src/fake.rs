//! ESO's `fake` provider: secrets declared inline in the store (`spec.provider.fake.data[]`).
//! It proves the trait with a second implementation and serves tests and the demo without AWS.
//!
//! It implements the write side too (PushSecret): pushed values are kept in memory per store
//! (lost on restart) and read back like declared entries; the declared entries
//! (`spec.provider.fake.data`) are not owned by the operator, so a push to one of their keys is
//! refused ([`PushOutcome::NotOwned`]) and they are never deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eso_api::{FakeProviderData, SecretStoreSpec};

use crate::{
    Capabilities, DeleteOutcome, FindQuery, KubeAccess, ProviderError, ProviderFactory,
    PushOutcome, PushRemoteRef, PushRequest, RemoteRef, RemoteSecret, SecretsProvider, StoreInfo,
    VersionSelector,
};

/// Values pushed to one fake store: remote key → bytes.
type Pushed = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Builds [`FakeProvider`]s for stores with `spec.provider.fake`. Pushed values live here, per
/// store UID, so they survive client rebuilds.
#[derive(Clone, Debug, Default)]
pub struct FakeFactory {
    pushed: Arc<Mutex<HashMap<String, Pushed>>>,
}

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
        let pushed = self
            .pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(store.uid.clone())
            .or_default()
            .clone();
        Ok(Arc::new(FakeProvider { data, pushed }))
    }

    fn capabilities(&self, _spec: &SecretStoreSpec) -> Capabilities {
        Capabilities::ReadWrite
    }
}

/// The fake provider: a list of key/value/valueMap/version entries.
#[derive(Clone, Debug, Default)]
pub struct FakeProvider {
    data: Vec<FakeProviderData>,
    pushed: Pushed,
}

impl FakeProvider {
    /// A provider over the given entries.
    pub fn new(data: Vec<FakeProviderData>) -> Self {
        Self {
            data,
            pushed: Pushed::default(),
        }
    }

    fn pushed(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn declared(&self, key: &str) -> bool {
        self.data.iter().any(|d| d.key == key)
    }

    /// The JSON object stored under `key`, for property pushes.
    fn object(
        bytes: &[u8],
        key: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
        if bytes.is_empty() {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(ProviderError::invalid_config(format!(
                "remote secret {key} is not a JSON object, so a property cannot be set in it"
            ))),
        }
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
        if remote.version == VersionSelector::Current
            && let Some(v) = self.pushed().get(&remote.key)
        {
            return Ok(match String::from_utf8(v.clone()) {
                Ok(s) => RemoteSecret::string(s),
                Err(e) => RemoteSecret::Value {
                    string: None,
                    binary: Some(e.into_bytes()),
                },
            });
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

    async fn push_secret(&self, request: &PushRequest) -> Result<PushOutcome, ProviderError> {
        let key = &request.remote.key;
        if self.declared(key) {
            return Ok(PushOutcome::NotOwned);
        }
        let mut pushed = self.pushed();
        let old = pushed.get(key).cloned();
        let new = match &request.remote.property {
            None => request.value.clone(),
            Some(p) => {
                let mut obj = Self::object(old.as_deref().unwrap_or_default(), key)?;
                obj.insert(
                    p.clone(),
                    serde_json::Value::String(String::from_utf8_lossy(&request.value).into_owned()),
                );
                serde_json::to_vec(&obj)
                    .map_err(|e| ProviderError::invalid_config(format!("encoding {key}: {e}")))?
            }
        };
        Ok(match old {
            Some(o) if o == new => PushOutcome::Unchanged,
            Some(_) => {
                pushed.insert(key.clone(), new);
                PushOutcome::Updated
            }
            None => {
                pushed.insert(key.clone(), new);
                PushOutcome::Created
            }
        })
    }

    async fn delete_secret(&self, remote: &PushRemoteRef) -> Result<DeleteOutcome, ProviderError> {
        let mut pushed = self.pushed();
        let Some(old) = pushed.get(&remote.key).cloned() else {
            return Ok(if self.declared(&remote.key) {
                DeleteOutcome::NotOwned
            } else {
                DeleteOutcome::NotFound
            });
        };
        match &remote.property {
            None => {
                pushed.remove(&remote.key);
            }
            Some(p) => {
                let mut obj = Self::object(&old, &remote.key)?;
                if obj.remove(p).is_none() {
                    return Ok(DeleteOutcome::NotFound);
                }
                if obj.is_empty() {
                    pushed.remove(&remote.key);
                } else {
                    let bytes = serde_json::to_vec(&obj).map_err(|e| {
                        ProviderError::invalid_config(format!("encoding {}: {e}", remote.key))
                    })?;
                    pushed.insert(remote.key.clone(), bytes);
                }
            }
        }
        Ok(DeleteOutcome::Deleted)
    }

    async fn secret_exists(&self, remote: &PushRemoteRef) -> Result<bool, ProviderError> {
        if let Some(v) = self.pushed().get(&remote.key) {
            return Ok(match &remote.property {
                None => true,
                Some(p) => Self::object(v, &remote.key).is_ok_and(|o| o.contains_key(p)),
            });
        }
        Ok(self.declared(&remote.key))
    }
}

#[cfg(test)]
mod push_tests {
    use super::*;

    fn req(key: &str, property: Option<&str>, value: &str) -> PushRequest {
        PushRequest {
            remote: PushRemoteRef {
                key: key.into(),
                property: property.map(str::to_string),
            },
            value: value.as_bytes().to_vec(),
            metadata: None,
            resolved: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn push_compares_merges_refuses_foreign_and_deletes_properties() {
        let p = FakeProvider::new(vec![FakeProviderData {
            key: "theirs".into(),
            value: Some("x".into()),
            ..FakeProviderData::default()
        }]);
        assert_eq!(
            p.push_secret(&req("k", None, "v1")).await.unwrap(),
            PushOutcome::Created
        );
        assert_eq!(
            p.push_secret(&req("k", None, "v1")).await.unwrap(),
            PushOutcome::Unchanged
        );
        assert_eq!(
            p.push_secret(&req("k", None, "v2")).await.unwrap(),
            PushOutcome::Updated
        );
        assert_eq!(
            p.push_secret(&req("theirs", None, "v")).await.unwrap(),
            PushOutcome::NotOwned
        );
        p.push_secret(&req("j", Some("a"), "1")).await.unwrap();
        p.push_secret(&req("j", Some("b"), "2")).await.unwrap();
        let j = |p: &FakeProvider| p.pushed().get("j").cloned().unwrap_or_default();
        assert_eq!(j(&p), br#"{"a":"1","b":"2"}"#);
        let a = PushRemoteRef {
            key: "j".into(),
            property: Some("a".into()),
        };
        assert!(p.secret_exists(&a).await.unwrap());
        assert_eq!(p.delete_secret(&a).await.unwrap(), DeleteOutcome::Deleted);
        assert_eq!(j(&p), br#"{"b":"2"}"#);
        assert!(!p.secret_exists(&a).await.unwrap());
        let theirs = PushRemoteRef {
            key: "theirs".into(),
            property: None,
        };
        assert_eq!(
            p.delete_secret(&theirs).await.unwrap(),
            DeleteOutcome::NotOwned
        );
        let gone = PushRemoteRef {
            key: "nope".into(),
            property: None,
        };
        assert_eq!(
            p.delete_secret(&gone).await.unwrap(),
            DeleteOutcome::NotFound
        );
    }
}
