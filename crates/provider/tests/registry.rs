//! The shared caches: single-flight, TTL, size cap, NotFound handling, error classes.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use eso_api::{SecretStoreSpec, StoreKind};
use eso_provider::*;

struct Counting {
    reads: Arc<AtomicUsize>,
    delay: Duration,
    fail: Option<ProviderError>,
    size: usize,
}

#[async_trait]
impl SecretsProvider for Counting {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        if remote.key.starts_with("missing") {
            return Err(ProviderError::not_found(remote.key.clone()));
        }
        Ok(RemoteSecret::string("v".repeat(self.size)))
    }
    async fn find(&self, _q: &FindQuery) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(BTreeMap::from([(
            "a".to_string(),
            RemoteSecret::string("1"),
        )]))
    }
    async fn validate(&self) -> Result<Capabilities, ProviderError> {
        Ok(Capabilities::ReadOnly)
    }
}

struct Factory {
    reads: Arc<AtomicUsize>,
    builds: Arc<AtomicUsize>,
    delay: Duration,
    fail: Option<ProviderError>,
    size: usize,
}

#[async_trait]
impl ProviderFactory for Factory {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn handles(&self, _spec: &SecretStoreSpec) -> bool {
        true
    }
    async fn build(
        &self,
        _s: &StoreInfo,
        _ns: &str,
        _k: Arc<dyn KubeAccess>,
    ) -> Result<Arc<dyn SecretsProvider>, ProviderError> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Counting {
            reads: self.reads.clone(),
            delay: self.delay,
            fail: self.fail.clone(),
            size: self.size,
        }))
    }
}

fn setup(
    config: CacheConfig,
    delay_ms: u64,
    fail: Option<ProviderError>,
    size: usize,
) -> (Arc<Registry>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let builds = Arc::new(AtomicUsize::new(0));
    let kube: Arc<dyn KubeAccess> = Arc::new(MockKubeAccess::new());
    let f = Factory {
        reads: reads.clone(),
        builds: builds.clone(),
        delay: Duration::from_millis(delay_ms),
        fail,
        size,
    };
    (
        Arc::new(Registry::new(kube, config).with_factory(Arc::new(f))),
        reads,
        builds,
    )
}

fn store() -> StoreInfo {
    StoreInfo {
        kind: StoreKind::ClusterSecretStore,
        name: "s".into(),
        namespace: None,
        uid: "uid-1".into(),
        generation: 1,
        spec: Arc::new(SecretStoreSpec::default()),
    }
}

fn get(key: &str) -> Request {
    Request::Get {
        store: StoreRef {
            kind: StoreKind::ClusterSecretStore,
            name: "s".into(),
        },
        remote: RemoteRef {
            key: key.into(),
            version: VersionSelector::Current,
            metadata: false,
        },
    }
}

#[tokio::test]
async fn concurrent_reads_of_one_secret_cost_one_remote_read() {
    let (reg, reads, builds) = setup(CacheConfig::default(), 50, None, 4);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            reg.fetch(&store(), &format!("ns{i}"), &[get("db")]).await
        }));
    }
    for t in tasks {
        let f = t.await.unwrap().unwrap();
        assert_eq!(f.gets.len(), 1);
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    // Later reads within the TTL are cache hits.
    reg.fetch(&store(), "x", &[get("db")]).await.unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert!(builds.load(Ordering::SeqCst) >= 1);
    let s = reg.stats();
    assert_eq!(s.remote_reads, 1);
    assert!(s.hits + s.coalesced >= 50);
}

#[tokio::test]
async fn expired_values_are_read_again() {
    let cfg = CacheConfig {
        ttl: Duration::from_millis(20),
        ..Default::default()
    };
    let (reg, reads, _) = setup(cfg, 0, None, 4);
    reg.fetch(&store(), "a", &[get("db")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    reg.fetch(&store(), "a", &[get("db")]).await.unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn not_found_is_answered_none() {
    let (reg, _, _) = setup(CacheConfig::default(), 0, None, 4);
    let f = reg
        .fetch(&store(), "a", &[get("missing-1"), get("db")])
        .await
        .unwrap();
    let values: Vec<bool> = f.gets.values().map(Option::is_some).collect();
    assert_eq!(values.iter().filter(|v| **v).count(), 1);
}

#[tokio::test]
async fn errors_are_not_cached_and_keep_their_class() {
    let (reg, reads, builds) = setup(
        CacheConfig::default(),
        0,
        Some(ProviderError::access_denied("no")),
        4,
    );
    for _ in 0..2 {
        let e = reg.fetch(&store(), "a", &[get("db")]).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::AccessDenied);
    }
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "errors are retried, not served from cache"
    );
    assert_eq!(
        builds.load(Ordering::SeqCst),
        2,
        "access denied rebuilds the client (rotated credentials)"
    );
}

#[tokio::test]
async fn memory_is_bounded() {
    let cfg = CacheConfig {
        max_bytes: 10_000,
        ..Default::default()
    };
    let (reg, _, _) = setup(cfg, 0, None, 1000);
    for i in 0..100 {
        reg.fetch(&store(), "a", &[get(&format!("k{i}"))])
            .await
            .unwrap();
    }
    let s = reg.stats();
    assert!(s.bytes <= 10_000, "{s:?}");
    assert!(s.evictions > 0);
}

#[tokio::test]
async fn unsupported_provider_is_reported() {
    let kube: Arc<dyn KubeAccess> = Arc::new(MockKubeAccess::new());
    let reg = Registry::new(kube, CacheConfig::default()).with_fake();
    let mut spec = SecretStoreSpec::default();
    spec.provider
        .other
        .insert("vault".into(), serde_json::json!({}));
    let s = StoreInfo {
        spec: Arc::new(spec),
        ..store()
    };
    let e = reg.fetch(&s, "a", &[get("db")]).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unsupported);
    assert!(e.to_string().contains("vault"), "{e}");
}

#[tokio::test]
async fn fake_provider_serves_versions_and_value_maps() {
    let kube: Arc<dyn KubeAccess> = Arc::new(MockKubeAccess::new());
    let reg = Registry::new(kube, CacheConfig::default()).with_fake();
    let spec: SecretStoreSpec = serde_json::from_value(serde_json::json!({
        "provider": {"fake": {"data": [
            {"key": "/a", "value": "current"},
            {"key": "/a", "value": "old", "version": "v1"},
            {"key": "/m", "valueMap": {"u": "x"}}
        ]}}
    }))
    .unwrap();
    let s = StoreInfo {
        spec: Arc::new(spec),
        ..store()
    };
    let v1 = Request::Get {
        store: StoreRef {
            kind: StoreKind::ClusterSecretStore,
            name: "s".into(),
        },
        remote: RemoteRef {
            key: "/a".into(),
            version: VersionSelector::Stage("v1".into()),
            metadata: false,
        },
    };
    let f = reg
        .fetch(&s, "a", &[get("/a"), v1, get("/m"), get("/nope")])
        .await
        .unwrap();
    let mut vals: Vec<String> = f
        .gets
        .values()
        .map(|v| match v {
            Some(RemoteSecret::Value {
                string: Some(s), ..
            }) => s.clone(),
            None => "<none>".into(),
            _ => "?".into(),
        })
        .collect();
    vals.sort();
    assert_eq!(vals, vec!["<none>", "current", "old", r#"{"u":"x"}"#]);
}
