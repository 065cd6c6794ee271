//! The registry: picks a factory for a store, caches built clients per credential identity, and
//! serves reads through a single-flight, time-bounded, size-capped value cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
// tokio's clock (std's outside a paused test runtime), so the TTL logic is tested with paused time.
use tokio::time::Instant;

use crate::{
    Capabilities, DeleteOutcome, Fetched, FindQuery, KubeAccess, ProviderError, ProviderFactory,
    PushOutcome, PushRemoteRef, PushRequest, RemoteRef, RemoteSecret, Request, SecretsProvider,
    StoreInfo,
};

/// Cache limits.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// How long a value read from a provider is served to other ExternalSecrets. Zero disables
    /// value caching (requests in flight are still coalesced).
    pub ttl: Duration,
    /// Upper bound on cached value bytes; the oldest entries are evicted first.
    pub max_bytes: usize,
    /// How long a built client (and its credentials) is reused before it is rebuilt, so rotated
    /// static keys are picked up. A failed authentication evicts it at once.
    pub client_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            max_bytes: 64 * 1024 * 1024,
            client_ttl: Duration::from_secs(300),
        }
    }
}

/// Counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads that went to a provider (one per remote secret or find query; a batch counts its items).
    pub remote_reads: u64,
    /// Reads answered from a fresh cached value.
    pub hits: u64,
    /// Reads that joined a read already in flight.
    pub coalesced: u64,
    /// Entries evicted to stay under `max_bytes`.
    pub evictions: u64,
    /// Values refreshed ahead of expiry in the room left in a provider's batch call (counted in
    /// `remote_reads` too; they cost no extra call).
    pub refreshed_ahead: u64,
    /// Provider clients built.
    pub clients_built: u64,
    /// Bytes of values currently cached.
    pub bytes: u64,
}

/// Store validation outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Access proven.
    Valid(Capabilities),
    /// Could not be proven (credentials depend on the ExternalSecret's namespace).
    Unknown(String),
}

type Scope = (String, i64, String);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Item {
    Get(RemoteRef),
    Find(FindQuery),
}

#[derive(Clone, Debug)]
enum Answer {
    Get(Option<RemoteSecret>),
    Find(BTreeMap<String, RemoteSecret>),
}

fn secret_size(s: &RemoteSecret) -> usize {
    match s {
        RemoteSecret::Value { string, binary } => {
            string.as_ref().map_or(0, String::len) + binary.as_ref().map_or(0, Vec::len)
        }
        RemoteSecret::Tags(t) => t.iter().map(|(k, v)| k.len() + v.len()).sum(),
        RemoteSecret::Empty => 0,
    }
}

impl Answer {
    fn size(&self) -> usize {
        match self {
            Answer::Get(v) => v.as_ref().map_or(0, secret_size),
            Answer::Find(m) => m.iter().map(|(k, v)| k.len() + secret_size(v)).sum(),
        }
    }
}

type Slot = Option<Result<Answer, ProviderError>>;

struct Entry {
    tx: watch::Sender<Slot>,
    /// When the read that produced the value started.
    created: Instant,
    size: usize,
    /// Read (a hit or its own read) since `created`: only values in use are refreshed ahead.
    used: bool,
}

struct Client {
    provider: Arc<dyn SecretsProvider>,
    built: Instant,
}

type Queued = (RemoteRef, (Scope, Item));

/// Reads waiting to be sent to one scope's provider. Whoever holds `leader` takes everything
/// queued and reads it with one `get_secrets` call, so concurrent ExternalSecrets share batch
/// calls (GetParameters, BatchGetSecretValue) instead of one call each.
#[derive(Default)]
struct BatchQueue {
    leader: tokio::sync::Mutex<()>,
    queue: Mutex<Vec<Queued>>,
}

/// Settles, when a fetch is cancelled, the reads it queued or took, so no waiter hangs.
struct Pending<'a> {
    registry: &'a Registry,
    queue: &'a BatchQueue,
    mine: Vec<(Scope, Item)>,
    taken: Vec<(Scope, Item)>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut orphaned = std::mem::take(&mut self.taken);
        if !self.mine.is_empty() {
            let mut q = lock(&self.queue.queue);
            q.retain(|(_, k)| {
                let left = self.mine.contains(k);
                if left {
                    orphaned.push(k.clone());
                }
                !left
            });
        }
        for k in orphaned {
            self.registry.abandon(&k);
        }
    }
}

#[derive(Default)]
struct Counters {
    remote_reads: AtomicU64,
    hits: AtomicU64,
    coalesced: AtomicU64,
    evictions: AtomicU64,
    refreshed_ahead: AtomicU64,
    clients_built: AtomicU64,
}

/// Providers plus the shared caches. Cheap to share behind an `Arc`.
pub struct Registry {
    kube: Arc<dyn KubeAccess>,
    config: CacheConfig,
    factories: Vec<Arc<dyn ProviderFactory>>,
    clients: Mutex<HashMap<Scope, Client>>,
    values: Mutex<HashMap<(Scope, Item), Entry>>,
    batches: Mutex<HashMap<Scope, Arc<BatchQueue>>>,
    bytes: AtomicU64,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Role {
    Owner(watch::Receiver<Slot>),
    Waiter(watch::Receiver<Slot>),
    Hit(Result<Answer, ProviderError>),
}

impl Registry {
    /// A registry with no factories.
    pub fn new(kube: Arc<dyn KubeAccess>, config: CacheConfig) -> Self {
        Self {
            kube,
            config,
            factories: Vec::new(),
            clients: Mutex::new(HashMap::new()),
            values: Mutex::new(HashMap::new()),
            batches: Mutex::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// Add a factory (first match wins).
    pub fn with_factory(mut self, factory: Arc<dyn ProviderFactory>) -> Self {
        self.factories.push(factory);
        self
    }

    /// Add the bundled `fake` provider.
    pub fn with_fake(self) -> Self {
        self.with_factory(Arc::new(crate::fake::FakeFactory::default()))
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            remote_reads: self.counters.remote_reads.load(Ordering::Relaxed),
            hits: self.counters.hits.load(Ordering::Relaxed),
            coalesced: self.counters.coalesced.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            refreshed_ahead: self.counters.refreshed_ahead.load(Ordering::Relaxed),
            clients_built: self.counters.clients_built.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn factory(&self, store: &StoreInfo) -> Result<&Arc<dyn ProviderFactory>, ProviderError> {
        self.factories.iter().find(|f| f.handles(&store.spec)).ok_or_else(|| {
            let mut names: Vec<String> = store.spec.provider.other.keys().cloned().collect();
            if names.is_empty() {
                names.push("(none)".to_string());
            }
            let supported: Vec<&str> = self.factories.iter().map(|f| f.name()).collect();
            ProviderError::unsupported(format!(
                "store {} uses provider {}, which this operator does not support (supported: {})",
                store.name,
                names.join(", "),
                supported.join(", ")
            ))
        })
    }

    /// The credential scope a request from an ExternalSecret in `es_namespace` uses for `store`
    /// (the factory's [`ProviderFactory::auth_scope`](crate::ProviderFactory::auth_scope)).
    /// Requests with the same store (UID, generation) and scope share one client, so they see
    /// the same remote secrets: callers may ask once per scope and share the answer, e.g. one
    /// change listing for a ClusterSecretStore used from any number of namespaces.
    pub fn client_scope(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
    ) -> Result<String, ProviderError> {
        Ok(self.factory(store)?.auth_scope(store, es_namespace))
    }

    async fn client(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
    ) -> Result<(Scope, Arc<dyn SecretsProvider>), ProviderError> {
        let scope: Scope = (
            store.uid.clone(),
            store.generation,
            self.client_scope(store, es_namespace)?,
        );
        let factory = self.factory(store)?;
        {
            let clients = lock(&self.clients);
            if let Some(c) = clients.get(&scope)
                && c.built.elapsed() < self.config.client_ttl
            {
                return Ok((scope, c.provider.clone()));
            }
        }
        let provider = factory
            .build(store, es_namespace, self.kube.clone())
            .await?;
        self.counters.clients_built.fetch_add(1, Ordering::Relaxed);
        let mut clients = lock(&self.clients);
        // Drop clients of older generations of this store.
        clients.retain(|k, _| k.0 != scope.0 || k.1 == scope.1);
        clients.insert(
            scope.clone(),
            Client {
                provider: provider.clone(),
                built: Instant::now(),
            },
        );
        Ok((scope, provider))
    }

    fn evict_client(&self, scope: &Scope) {
        lock(&self.clients).remove(scope);
    }

    /// Look up or claim a cache slot.
    fn claim(&self, key: &(Scope, Item), max_age: Option<Duration>) -> Role {
        let mut values = lock(&self.values);
        if let Some(e) = values.get_mut(key) {
            let ttl = max_age.map_or(self.config.ttl, |m| m.min(self.config.ttl));
            let fresh = e.created.elapsed() < ttl;
            let current = e.tx.borrow().clone();
            match current {
                None => {
                    self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                    return Role::Waiter(e.tx.subscribe());
                }
                Some(Ok(v)) if fresh => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    e.used = true;
                    return Role::Hit(Ok(v));
                }
                _ => {}
            }
            if let Some(old) = values.remove(key) {
                self.bytes.fetch_sub(old.size as u64, Ordering::Relaxed);
            }
        }
        let (tx, rx) = watch::channel(None);
        values.insert(
            key.clone(),
            Entry {
                tx,
                created: Instant::now(),
                size: 0,
                used: true,
            },
        );
        Role::Owner(rx)
    }

    /// Publish an owner's result.
    fn settle(&self, key: &(Scope, Item), result: Result<Answer, ProviderError>) {
        let mut values = lock(&self.values);
        let keep = result.is_ok() && !self.config.ttl.is_zero();
        let size = result.as_ref().map_or(0, Answer::size);
        if let Some(e) = values.get_mut(key) {
            e.tx.send_replace(Some(result));
            if keep {
                e.size = size;
                self.bytes.fetch_add(size as u64, Ordering::Relaxed);
            }
        }
        if !keep {
            values.remove(key);
        }
        if self.bytes.load(Ordering::Relaxed) as usize > self.config.max_bytes {
            self.evict(&mut values);
        }
    }

    /// Drop expired entries, then the oldest, until under 90% of the cap.
    fn evict(&self, values: &mut HashMap<(Scope, Item), Entry>) {
        let target = self.config.max_bytes / 10 * 9;
        let mut ready: Vec<((Scope, Item), Instant, usize)> = values
            .iter()
            .filter(|(_, e)| e.tx.borrow().is_some())
            .map(|(k, e)| (k.clone(), e.created, e.size))
            .collect();
        ready.sort_by_key(|(_, created, _)| *created);
        for (k, _, size) in ready {
            if self.bytes.load(Ordering::Relaxed) as usize <= target {
                break;
            }
            values.remove(&k);
            self.bytes.fetch_sub(size as u64, Ordering::Relaxed);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Settle a read nobody will finish (its fetch was cancelled) with an error.
    fn abandon(&self, key: &(Scope, Item)) {
        let pending = lock(&self.values)
            .get(key)
            .is_some_and(|e| e.tx.borrow().is_none());
        if pending {
            self.settle(
                key,
                Err(ProviderError::unavailable(
                    "the read was cancelled before it finished; retrying later",
                )),
            );
        }
    }

    /// Read `owned` (reads this fetch claimed) through the scope's batch queue: queue them, let
    /// concurrent fetches queue theirs, then, holding the scope's leader lock, read everything
    /// still queued in one `get_secrets` call. Reads queued before the lock was taken are either
    /// settled by an earlier leader or taken now, so every owned read is settled on return.
    async fn read_batched(
        &self,
        scope: &Scope,
        provider: &Arc<dyn SecretsProvider>,
        owned: Vec<Queued>,
    ) {
        let queue = lock(&self.batches)
            .entry(scope.clone())
            .or_default()
            .clone();
        let mut pending = Pending {
            registry: self,
            queue: &queue,
            mine: owned.iter().map(|(_, k)| k.clone()).collect(),
            taken: Vec::new(),
        };
        lock(&queue.queue).extend(owned);
        // Let fetches that are ready to run queue their reads into this batch.
        tokio::task::yield_now().await;
        let _leader = queue.leader.lock().await;
        let batch = std::mem::take(&mut *lock(&queue.queue));
        pending.mine.clear();
        if batch.is_empty() {
            return;
        }
        pending.taken = batch.iter().map(|(_, k)| k.clone()).collect();
        let started = Instant::now();
        let ahead = self.refresh_ahead(scope, provider.as_ref(), &batch);
        let mut refs: Vec<RemoteRef> = batch.iter().map(|(r, _)| r.clone()).collect();
        refs.extend(ahead.iter().cloned());
        self.counters
            .remote_reads
            .fetch_add(refs.len() as u64, Ordering::Relaxed);
        self.counters
            .refreshed_ahead
            .fetch_add(ahead.len() as u64, Ordering::Relaxed);
        let mut results = provider.get_secrets(&refs).await.into_iter();
        for (remote, key) in &batch {
            let res = match results.next() {
                Some(Ok(v)) => Ok(Answer::Get(Some(v))),
                Some(Err(ProviderError::NotFound { .. })) => Ok(Answer::Get(None)),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::unavailable(format!(
                    "provider returned no result for {} (partial batch answer)",
                    remote.key
                ))),
            };
            self.settle(key, res);
        }
        pending.taken.clear();
        for remote in ahead {
            let answer = match results.next() {
                Some(Ok(v)) => Answer::Get(Some(v)),
                Some(Err(ProviderError::NotFound { .. })) => Answer::Get(None),
                // A failed refresh leaves the cached value to expire: the next read that needs
                // it reads it itself and reports its own error.
                _ => continue,
            };
            self.refreshed((scope.clone(), Item::Get(remote)), answer, started);
        }
    }

    /// Cached values of `scope` to read along with `batch`, in the room it leaves in the
    /// provider's batch calls ([`SecretsProvider::batch_limit`]): values of the same batchable
    /// kind, settled, in use since their last read and past half the TTL, oldest first. They
    /// ride in a call that goes out anyway, so they cost no call, and a steady state converges
    /// to one call per `batch_limit` remote secrets per TTL instead of one per remote secret.
    fn refresh_ahead(
        &self,
        scope: &Scope,
        provider: &dyn SecretsProvider,
        batch: &[Queued],
    ) -> Vec<RemoteRef> {
        if self.config.ttl.is_zero() {
            return Vec::new();
        }
        let mut limit = 1;
        let mut batched = 0;
        for (r, _) in batch {
            let l = provider.batch_limit(r);
            if l > 1 {
                limit = limit.max(l);
                batched += 1;
            }
        }
        let room = if batched == 0 {
            0
        } else {
            (limit - batched % limit) % limit
        };
        if room == 0 {
            return Vec::new();
        }
        let half = self.config.ttl / 2;
        let values = lock(&self.values);
        let mut due: Vec<(Instant, &RemoteRef)> = values
            .iter()
            .filter_map(|((s, item), e)| {
                let Item::Get(r) = item else { return None };
                let settled = matches!(&*e.tx.borrow(), Some(Ok(_)));
                (s == scope
                    && e.used
                    && settled
                    && e.created.elapsed() >= half
                    && provider.batch_limit(r) == limit)
                    .then_some((e.created, r))
            })
            .collect();
        due.sort_by_key(|(created, _)| *created);
        due.into_iter().take(room).map(|(_, r)| r.clone()).collect()
    }

    /// Replace a settled value with one refreshed ahead (read from `read_at`). Left alone when
    /// it is gone, being read by an owner right now, or newer.
    fn refreshed(&self, key: (Scope, Item), answer: Answer, read_at: Instant) {
        let mut values = lock(&self.values);
        let Some(e) = values.get_mut(&key) else {
            return;
        };
        if e.tx.borrow().is_none() || e.created >= read_at {
            return;
        }
        let size = answer.size();
        self.bytes.fetch_sub(e.size as u64, Ordering::Relaxed);
        self.bytes.fetch_add(size as u64, Ordering::Relaxed);
        e.size = size;
        e.created = read_at;
        e.used = false;
        e.tx.send_replace(Some(Ok(answer)));
        if self.bytes.load(Ordering::Relaxed) as usize > self.config.max_bytes {
            self.evict(&mut values);
        }
    }

    async fn wait(mut rx: watch::Receiver<Slot>) -> Result<Answer, ProviderError> {
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v
                .clone()
                .unwrap_or_else(|| Err(ProviderError::unavailable("read was cancelled"))),
            Err(_) => Err(ProviderError::unavailable(
                "a concurrent read of the same secret was cancelled; retrying later",
            )),
        }
    }

    /// Execute `requests` for an ExternalSecret in `es_namespace`. Remote secrets that do not
    /// exist are answered `None`; any other failure fails the call (after every read settled).
    pub async fn fetch(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
        requests: &[Request],
    ) -> Result<Fetched, ProviderError> {
        self.fetch_fresh(store, es_namespace, requests, None).await
    }

    /// Like [`Registry::fetch`], but a cached value older than `max_age` is not used (an
    /// ExternalSecret passes its refresh interval, so a rotated value reaches it within one
    /// interval however long the cache TTL is).
    pub async fn fetch_fresh(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
        requests: &[Request],
        max_age: Option<Duration>,
    ) -> Result<Fetched, ProviderError> {
        let (scope, provider) = self.client(store, es_namespace).await?;
        let mut owned_gets: Vec<(RemoteRef, (Scope, Item))> = Vec::new();
        let mut pending: Vec<(&Request, Result<Answer, ProviderError>)> = Vec::new();
        let mut waiting: Vec<(&Request, watch::Receiver<Slot>)> = Vec::new();
        for r in requests {
            let item = match r {
                Request::Get { remote, .. } => Item::Get(remote.clone()),
                Request::Find { query, .. } => Item::Find(query.clone()),
            };
            let key = (scope.clone(), item);
            let role = self.claim(&key, max_age);
            tracing::trace!(
                role = match &role {
                    Role::Hit(_) => "hit",
                    Role::Waiter(_) => "waiter",
                    Role::Owner(_) => "owner",
                },
                ?max_age,
                "value cache"
            );
            match role {
                Role::Hit(v) => pending.push((r, v)),
                Role::Waiter(rx) => waiting.push((r, rx)),
                Role::Owner(rx) => {
                    match r {
                        Request::Get { remote, .. } => owned_gets.push((remote.clone(), key)),
                        Request::Find { query, .. } => {
                            self.counters.remote_reads.fetch_add(1, Ordering::Relaxed);
                            let res = provider.find(query).await.map(Answer::Find);
                            self.settle(&key, res);
                        }
                    }
                    waiting.push((r, rx));
                }
            }
        }
        if !owned_gets.is_empty() {
            self.read_batched(&scope, &provider, owned_gets).await;
        }
        for (r, rx) in waiting {
            pending.push((r, Self::wait(rx).await));
        }
        let mut fetched = Fetched::default();
        let mut first_err = None;
        for (r, res) in pending {
            match (r, res) {
                (Request::Get { store, remote }, Ok(Answer::Get(v))) => {
                    fetched.gets.insert((store.clone(), remote.clone()), v);
                }
                (Request::Find { store, query }, Ok(Answer::Find(m))) => {
                    fetched
                        .finds
                        .insert((store.clone(), query.clone()), Some(m));
                }
                (_, Ok(_)) => {
                    first_err.get_or_insert(ProviderError::unavailable(
                        "cache answer of the wrong kind",
                    ));
                }
                (_, Err(e)) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            if e.class() == crate::ErrorClass::AccessDenied {
                self.evict_client(&scope);
            }
            return Err(e);
        }
        Ok(fetched)
    }

    /// When each remote secret of a store last changed, if the provider can tell cheaply
    /// (AWS: ListSecrets, one call per 100 secrets). Counted as one remote read per call.
    pub async fn last_changed(
        &self,
        store: &StoreInfo,
        es_namespace: &str,
    ) -> Result<Option<BTreeMap<String, std::time::SystemTime>>, ProviderError> {
        let (scope, provider) = self.client(store, es_namespace).await?;
        self.counters.remote_reads.fetch_add(1, Ordering::Relaxed);
        let r = provider.last_changed().await;
        if r.as_ref()
            .is_err_and(|e| e.class() == crate::ErrorClass::AccessDenied)
        {
            self.evict_client(&scope);
        }
        r
    }

    /// Run a generator for an ExternalSecret in `namespace`: Password and UUID here, from the
    /// operating system's CSPRNG; others by the first factory that serves them.
    pub async fn generate(
        &self,
        spec: &eso_api::generators::GeneratorSpec,
        namespace: &str,
    ) -> Result<crate::generators::Generated, ProviderError> {
        use eso_api::generators::GeneratorSpec;
        let mut rng = crate::generators::OsRandom;
        match spec {
            GeneratorSpec::Password(p) => crate::generators::run_password(p, &mut rng),
            GeneratorSpec::Uuid => crate::generators::run_uuid(&mut rng),
            other => {
                for f in &self.factories {
                    if let Some(r) = f.generate(other, namespace, self.kube.clone()).await {
                        return r;
                    }
                }
                Err(ProviderError::unsupported(
                    "no provider registered for this generator",
                ))
            }
        }
    }

    /// Prove access to a store with one cheap authenticated call.
    pub async fn validate(&self, store: &StoreInfo) -> Result<Validation, ProviderError> {
        let factory = self.factory(store)?;
        if factory.is_referent(store) {
            return Ok(Validation::Unknown(
                "credentials are resolved in each ExternalSecret's namespace (referent authentication)".to_string(),
            ));
        }
        let ns = store.namespace.clone().unwrap_or_default();
        let (scope, provider) = self.client(store, &ns).await?;
        match provider.validate().await {
            Ok(c) => Ok(Validation::Valid(c)),
            Err(e) => {
                self.evict_client(&scope);
                Err(e)
            }
        }
    }

    /// What the store's provider can do, without a client (see
    /// [`ProviderFactory::capabilities`](crate::ProviderFactory::capabilities)).
    pub fn capabilities(&self, store: &StoreInfo) -> Result<Capabilities, ProviderError> {
        Ok(self.factory(store)?.capabilities(&store.spec))
    }

    /// After a write: a denied call evicts the client (credentials may have rotated); otherwise
    /// the scope's cached values are dropped, so readers see what was written at their next read.
    fn after_write<T>(&self, scope: &Scope, r: &Result<T, ProviderError>) {
        match r {
            Err(e) if e.class() == crate::ErrorClass::AccessDenied => self.evict_client(scope),
            _ => self.forget_values(scope),
        }
    }

    fn forget_values(&self, scope: &Scope) {
        let mut values = lock(&self.values);
        let mut freed = 0u64;
        values.retain(|k, e| {
            let keep = &k.0 != scope || e.tx.borrow().is_none();
            if !keep {
                freed += e.size as u64;
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Push one value (PushSecret) for an object in `namespace`.
    pub async fn push(
        &self,
        store: &StoreInfo,
        namespace: &str,
        request: &PushRequest,
    ) -> Result<PushOutcome, ProviderError> {
        let (scope, provider) = self.client(store, namespace).await?;
        let r = provider.push_secret(request).await;
        self.after_write(&scope, &r);
        r
    }

    /// Delete a pushed value for an object in `namespace`.
    pub async fn delete(
        &self,
        store: &StoreInfo,
        namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<DeleteOutcome, ProviderError> {
        let (scope, provider) = self.client(store, namespace).await?;
        let r = provider.delete_secret(remote).await;
        self.after_write(&scope, &r);
        r
    }

    /// Whether a remote secret (or property) exists, for an object in `namespace`.
    pub async fn exists(
        &self,
        store: &StoreInfo,
        namespace: &str,
        remote: &PushRemoteRef,
    ) -> Result<bool, ProviderError> {
        let (scope, provider) = self.client(store, namespace).await?;
        let r = provider.secret_exists(remote).await;
        if r.as_ref()
            .is_err_and(|e| e.class() == crate::ErrorClass::AccessDenied)
        {
            self.evict_client(&scope);
        }
        r
    }

    /// Forget clients and values of a store (deleted or changed).
    pub fn forget_store(&self, uid: &str) {
        lock(&self.clients).retain(|k, _| k.0 != uid);
        lock(&self.batches).retain(|k, _| k.0 != uid);
        let mut values = lock(&self.values);
        let mut freed = 0u64;
        values.retain(|k, e| {
            let keep = k.0.0 != uid;
            if !keep {
                freed += e.size as u64;
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }
}
