//! Refresh-ahead: values past half their TTL ride in the room left in a batch call, so a steady
//! state costs one call per `batch_limit` remote secrets per TTL. Paused tokio time: minutes of
//! refreshes run in milliseconds, and no assertion depends on scheduling.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eso_api::{SecretStoreSpec, StoreKind};
use eso_provider::*;
use tokio::time::Instant;

const LIMIT: usize = 4;
const TTL: Duration = Duration::from_secs(60);

/// What the backend saw: one entry per backend call, the keys it carried.
#[derive(Default)]
struct Seen {
    calls: Vec<Vec<String>>,
    deleted: HashSet<String>,
    /// Keys the backend fails to read (a transient error).
    failing: HashSet<String>,
}

/// A backend with a batch call of [`LIMIT`] current values; versioned reads go alone. Each
/// value is the second (since `epoch`) it was read at, so a test can check its age.
struct Batching {
    seen: Arc<Mutex<Seen>>,
    epoch: Instant,
}

impl Batching {
    fn answer(&self, seen: &Seen, key: &str) -> Result<RemoteSecret, ProviderError> {
        if seen.deleted.contains(key) {
            return Err(ProviderError::not_found(key.to_string()));
        }
        if seen.failing.contains(key) {
            return Err(ProviderError::unavailable(format!("{key}: backend down")));
        }
        Ok(RemoteSecret::string(
            self.epoch.elapsed().as_secs().to_string(),
        ))
    }
}

fn batchable(r: &RemoteRef) -> bool {
    r.version == VersionSelector::Current && !r.metadata
}

#[async_trait]
impl SecretsProvider for Batching {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        let mut seen = self.seen.lock().unwrap();
        seen.calls.push(vec![remote.key.clone()]);
        self.answer(&seen, &remote.key)
    }
    fn batch_limit(&self, remote: &RemoteRef) -> usize {
        if batchable(remote) { LIMIT } else { 1 }
    }
    async fn get_secrets(&self, remotes: &[RemoteRef]) -> Vec<Result<RemoteSecret, ProviderError>> {
        let mut seen = self.seen.lock().unwrap();
        let batch: Vec<&RemoteRef> = remotes.iter().filter(|r| batchable(r)).collect();
        if batch.len() > 1 {
            for chunk in batch.chunks(LIMIT) {
                seen.calls
                    .push(chunk.iter().map(|r| r.key.clone()).collect());
            }
        }
        let mut out = Vec::new();
        for r in remotes {
            if !(batch.len() > 1 && batchable(r)) {
                seen.calls.push(vec![r.key.clone()]);
            }
            out.push(self.answer(&seen, &r.key));
        }
        out
    }
    async fn find(&self, _q: &FindQuery) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        Ok(BTreeMap::new())
    }
    async fn validate(&self) -> Result<Capabilities, ProviderError> {
        Ok(Capabilities::ReadOnly)
    }
}

struct Factory(Arc<Mutex<Seen>>, Instant);

#[async_trait]
impl ProviderFactory for Factory {
    fn name(&self) -> &'static str {
        "batching"
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
        Ok(Arc::new(Batching {
            seen: self.0.clone(),
            epoch: self.1,
        }))
    }
}

fn setup() -> (Registry, Arc<Mutex<Seen>>, Instant) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let epoch = Instant::now();
    let kube: Arc<dyn KubeAccess> = Arc::new(MockKubeAccess::new());
    let cfg = CacheConfig {
        ttl: TTL,
        client_ttl: Duration::from_secs(3600),
        ..Default::default()
    };
    let reg = Registry::new(kube, cfg).with_factory(Arc::new(Factory(seen.clone(), epoch)));
    (reg, seen, epoch)
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

fn request(key: &str, version: VersionSelector) -> Request {
    Request::Get {
        store: StoreRef {
            kind: StoreKind::ClusterSecretStore,
            name: "s".into(),
        },
        remote: RemoteRef {
            key: key.into(),
            version,
            metadata: false,
        },
    }
}

/// One ExternalSecret's fetch of `key` with a 60 s refresh interval: the value's age in seconds.
async fn read_age(reg: &Registry, epoch: Instant, key: &str) -> Option<u64> {
    let f = reg
        .fetch_fresh(
            &store(),
            "ns",
            &[request(key, VersionSelector::Current)],
            Some(TTL),
        )
        .await
        .unwrap();
    match f.gets.into_values().next().flatten() {
        Some(RemoteSecret::Value {
            string: Some(s), ..
        }) => Some(epoch.elapsed().as_secs() - s.parse::<u64>().unwrap()),
        _ => None,
    }
}

fn calls(seen: &Mutex<Seen>) -> usize {
    seen.lock().unwrap().calls.len()
}

#[tokio::test(start_paused = true)]
async fn a_steady_state_costs_one_call_per_batch_of_secrets() {
    let (reg, seen, epoch) = setup();
    let keys: Vec<String> = (0..8).map(|i| format!("db-{i}")).collect();
    // Eight ExternalSecrets, one per remote secret, refreshing every 60 s at staggered times
    // (one every 7.5 s): without refresh-ahead, eight calls a minute, one per secret.
    let mut max_age = 0;
    let mut at_5_min = 0;
    for tick in 0..(8 * 10) {
        let key = &keys[tick % 8];
        let age = read_age(&reg, epoch, key).await.unwrap();
        max_age = max_age.max(age);
        tokio::time::sleep(Duration::from_millis(7_500)).await;
        if tick == 8 * 5 - 1 {
            at_5_min = calls(&seen);
        }
    }
    let steady = calls(&seen) - at_5_min;
    // Two batches of four per TTL (60 s), each value read once per TTL: ≤ 2 calls a minute
    // over the last five minutes (plus one for a group boundary).
    assert!(steady <= 2 * 5 + 1, "{steady} calls in 5 minutes");
    assert!(
        seen.lock().unwrap().calls[at_5_min..]
            .iter()
            .all(|c| c.len() == LIMIT),
        "every steady call is a full batch"
    );
    // Never older than the refresh interval.
    assert!(
        max_age < TTL.as_secs(),
        "a value {max_age} s old was served"
    );
    assert!(reg.stats().refreshed_ahead > 0);
}

#[tokio::test(start_paused = true)]
async fn values_nobody_reads_are_not_refreshed_ahead() {
    let (reg, seen, epoch) = setup();
    read_age(&reg, epoch, "kept").await;
    read_age(&reg, epoch, "dropped").await;
    assert_eq!(calls(&seen), 2);
    // Past the TTL, "kept" is read again; "dropped" (read at 0 s) rides along.
    tokio::time::sleep(Duration::from_secs(61)).await;
    read_age(&reg, epoch, "kept").await;
    assert_eq!(
        seen.lock().unwrap().calls.last().unwrap(),
        &vec!["kept".to_string(), "dropped".to_string()]
    );
    // Nobody read "dropped" since: the next batch leaves it out.
    tokio::time::sleep(Duration::from_secs(61)).await;
    read_age(&reg, epoch, "kept").await;
    assert_eq!(
        seen.lock().unwrap().calls.last().unwrap(),
        &vec!["kept".to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn young_values_and_reads_sent_alone_get_no_company() {
    let (reg, seen, epoch) = setup();
    read_age(&reg, epoch, "a").await;
    // 20 s later: "a" is not past half its TTL, so "b" goes alone.
    tokio::time::sleep(Duration::from_secs(20)).await;
    read_age(&reg, epoch, "b").await;
    assert_eq!(
        seen.lock().unwrap().calls.last().unwrap(),
        &vec!["b".to_string()]
    );
    // 40 s later "a" and "b" are past 30 s, but a versioned read is sent alone: nothing rides.
    tokio::time::sleep(Duration::from_secs(40)).await;
    reg.fetch(
        &store(),
        "ns",
        &[request("a", VersionSelector::Stage("v1".into()))],
    )
    .await
    .unwrap();
    assert_eq!(
        seen.lock().unwrap().calls.last().unwrap(),
        &vec!["a".to_string()]
    );
    assert_eq!(calls(&seen), 3);
    assert_eq!(reg.stats().refreshed_ahead, 0);
}

#[tokio::test(start_paused = true)]
async fn a_secret_deleted_in_the_backend_is_seen_by_the_refresh_ahead() {
    let (reg, seen, epoch) = setup();
    read_age(&reg, epoch, "a").await;
    read_age(&reg, epoch, "gone").await;
    seen.lock().unwrap().deleted.insert("gone".into());
    tokio::time::sleep(Duration::from_secs(61)).await;
    read_age(&reg, epoch, "a").await;
    assert_eq!(reg.stats().refreshed_ahead, 1);
    // Within the TTL of that refresh, the cache answers what the backend said: not found.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(read_age(&reg, epoch, "gone").await, None);
    assert_eq!(calls(&seen), 3, "answered from the refreshed entry");
}

#[tokio::test(start_paused = true)]
async fn a_failed_ride_along_keeps_the_cached_value_until_it_expires() {
    let (reg, seen, epoch) = setup();
    read_age(&reg, epoch, "a").await;
    read_age(&reg, epoch, "flaky").await;
    seen.lock().unwrap().failing.insert("flaky".into());
    // 31 s later a read of "b" carries "a" and "flaky" (both past half the TTL, both in use).
    tokio::time::sleep(Duration::from_secs(31)).await;
    read_age(&reg, epoch, "b").await;
    // "a" and "flaky" are equally old, so their order in the call is not fixed.
    let mut carried = seen.lock().unwrap().calls.last().unwrap().clone();
    carried.sort();
    assert_eq!(carried, ["a", "b", "flaky"]);
    assert_eq!(calls(&seen), 3);
    // The failure is not cached: "flaky" is still the value read at 0 s, from the cache.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(read_age(&reg, epoch, "flaky").await, Some(40));
    assert_eq!(calls(&seen), 3, "answered from the old entry");
    // Once it expires, "flaky" is read on its own again.
    seen.lock().unwrap().failing.clear();
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert_eq!(read_age(&reg, epoch, "flaky").await, Some(0));
    assert_eq!(calls(&seen), 4);
}
