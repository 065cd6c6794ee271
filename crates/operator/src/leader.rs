//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the Lease and runs the controllers; the others wait. The holder renews every
//! `retry_period`; if it cannot renew within `renew_deadline` (shorter than `lease_duration`) it
//! stops at once — the process exits — so an old leader never writes after another replica could
//! have taken over. A leader that shuts down gracefully releases the Lease so a standby takes
//! over without waiting for it to expire. Each successful renewal is recorded in a
//! [`crate::fence::LeaseClock`]: the controllers' client refuses writes once it is older than the
//! renew deadline, which covers a leader frozen and resumed before this loop notices.
//!
//! The election runs apart from the controllers ([`Elector::spawn`]): on its own OS thread, with
//! its own current-thread tokio runtime and its own Kubernetes client (a separate connection pool
//! and tower stack, built on that thread from a clone of the operator's `kube::Config`).
//! Reconciles that keep every worker of the main runtime busy (CPU-heavy mapping, thousands of
//! tasks) or queue many requests on the controllers' client therefore cannot delay a renewal past
//! the renew deadline. The main runtime learns of a loss through a channel and exits at once; the
//! thread also revokes the [`crate::fence::LeaseClock`] as soon as the Lease is lost or released,
//! so no write leaves even before that exit. On SIGTERM the main runtime asks the thread to
//! release the Lease and waits for it, for a bounded time.
//!
//! Each attempt is bounded by the time left before the renew deadline (at least one retry period),
//! so a request that hangs ends in a loss at the deadline instead of at the client's read timeout.
//! The Lease is read and written through [`LeaseStore`], and every duration is measured on tokio's
//! clock, so the unit tests drive acquisition, renewal, the deadline, loss and release with a fake
//! store and paused time.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Wall-clock source for the Lease's timestamps (`acquireTime`, `renewTime`) and for judging
/// whether another holder's Lease has expired: the system clock, or in tests one that follows
/// tokio's paused clock.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl WallClock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Timestamp::now))
    }

    fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

/// Leader election settings (ESO's defaults: 15 s / 10 s / 2 s).
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Lease name (`--leader-election-id`).
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name + random suffix).
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up.
    pub renew_deadline: Duration,
    /// Interval between attempts.
    pub retry_period: Duration,
    /// Records each successful acquisition and renewal for the write fence ([`crate::fence`]).
    pub clock: Arc<crate::fence::LeaseClock>,
    /// Wall clock for the Lease's timestamps ([`WallClock::system`] outside tests).
    pub wall: WallClock,
}

/// Errors of leader election.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be renewed before the renew deadline, or another replica holds it.
    #[error("lost leadership of Lease {namespace}/{name}: could not renew within {deadline:?}")]
    Lost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The renew deadline.
        deadline: Duration,
    },
    /// The election thread could not start its client, or ended unexpectedly.
    #[error("leader election failed: {reason}")]
    Failed {
        /// What went wrong.
        reason: String,
    },
}

/// A failed Lease read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first (HTTP 409: the Lease exists, or its resourceVersion moved).
    #[error("the Lease was written concurrently (conflict)")]
    Conflict,
    /// No answer within the time left before the renew deadline.
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
    /// Any other failure (network, API server, permissions).
    #[error("{0}")]
    Other(String),
}

/// The Lease operations leader election uses: the Kubernetes API ([`KubeLeases`]) or, in tests,
/// an in-memory store.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// The Lease `name`, if it exists.
    async fn get(&self, name: &str) -> Result<Option<Lease>, StoreError>;
    /// Create the Lease ([`StoreError::Conflict`] if it exists).
    async fn create(&self, lease: &Lease) -> Result<(), StoreError>;
    /// Replace the Lease `name`, guarded by the resourceVersion in `lease`'s metadata
    /// ([`StoreError::Conflict`] if it changed since it was read).
    async fn replace(&self, name: &str, lease: &Lease) -> Result<(), StoreError>;
}

/// [`LeaseStore`] on the Kubernetes API.
pub struct KubeLeases(Api<Lease>);

impl KubeLeases {
    /// Leases through `api` (namespaced to the Lease's namespace).
    pub fn new(api: Api<Lease>) -> Self {
        Self(api)
    }
}

fn store_error(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 => StoreError::Conflict,
        e => StoreError::Other(e.to_string()),
    }
}

#[async_trait::async_trait]
impl LeaseStore for KubeLeases {
    async fn get(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.0.get_opt(name).await.map_err(store_error)
    }

    async fn create(&self, lease: &Lease) -> Result<(), StoreError> {
        self.0
            .create(&PostParams::default(), lease)
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<(), StoreError> {
        self.0
            .replace(name, &PostParams::default(), lease)
            .await
            .map(drop)
            .map_err(store_error)
    }
}

/// Elapsed time from a MicroTime to `now`.
fn since(now: Timestamp, t: &MicroTime) -> Duration {
    let d = now.as_nanosecond() - t.0.as_nanosecond();
    if d <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(d).unwrap_or(u64::MAX))
    }
}

/// Try once to acquire or renew. Ok(true): we hold the Lease now.
async fn try_acquire(store: &dyn LeaseStore, cfg: &LeaderConfig) -> Result<bool, StoreError> {
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    let now = || MicroTime(cfg.wall.now());
    match store.get(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match store.create(&lease).await {
                Ok(()) => Ok(true),
                Err(StoreError::Conflict) => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let ours = holder == cfg.identity;
            let expired = holder.is_empty()
                || spec.renew_time.as_ref().is_none_or(|t| {
                    since(cfg.wall.now(), t)
                        > Duration::from_secs(
                            u64::try_from(spec.lease_duration_seconds.unwrap_or(secs))
                                .unwrap_or(15),
                        )
                });
            if !ours && !expired {
                return Ok(false);
            }
            if !ours {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(secs);
            // replace with the resourceVersion we read: a concurrent writer makes this fail (409).
            match store.replace(&cfg.name, &lease).await {
                Ok(()) => Ok(true),
                Err(StoreError::Conflict) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// [`try_acquire`], giving up after `limit`.
async fn try_acquire_within(
    store: &dyn LeaseStore,
    cfg: &LeaderConfig,
    limit: Duration,
) -> Result<bool, StoreError> {
    tokio::time::timeout(limit, try_acquire(store, cfg))
        .await
        .unwrap_or(Err(StoreError::Timeout(limit)))
}

/// Block until this replica holds the Lease.
pub async fn acquire(store: &dyn LeaseStore, cfg: &LeaderConfig) {
    info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for leadership");
    loop {
        // Taken before the request: the Lease's renewTime is no older than this.
        let attempt = Instant::now();
        match try_acquire_within(store, cfg, cfg.renew_deadline.max(cfg.retry_period)).await {
            Ok(true) => {
                cfg.clock.renewed_at(attempt.into_std());
                info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                return;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election: could not read or write the Lease"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Renew until renewal fails for the renew deadline, or another replica holds the Lease; then
/// return the error. Call right after [`acquire`] returned.
pub async fn hold(store: &dyn LeaseStore, cfg: &LeaderConfig) -> LeaderError {
    let lost = || LeaderError::Lost {
        namespace: cfg.namespace.clone(),
        name: cfg.name.clone(),
        deadline: cfg.renew_deadline,
    };
    let mut last_renew = Instant::now();
    loop {
        tokio::time::sleep(cfg.retry_period).await;
        let attempt = Instant::now();
        // A hung request must not outlive the deadline; a late attempt (the process was frozen)
        // still gets one retry period, as the Lease may well still be ours.
        let limit = cfg
            .renew_deadline
            .saturating_sub(last_renew.elapsed())
            .max(cfg.retry_period);
        match try_acquire_within(store, cfg, limit).await {
            Ok(true) => {
                last_renew = Instant::now();
                cfg.clock.renewed_at(attempt.into_std());
            }
            Ok(false) => return lost(),
            Err(e) => {
                warn!(error = %e, "leader election: renew failed");
                if last_renew.elapsed() >= cfg.renew_deadline {
                    return lost();
                }
            }
        }
    }
}

/// Release the Lease (graceful shutdown) so a standby takes over at once.
pub async fn release(store: &dyn LeaseStore, cfg: &LeaderConfig) {
    if let Ok(Some(mut lease)) = store.get(&cfg.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(&cfg.identity)
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = store.replace(&cfg.name, &lease).await {
            warn!(error = %e, "could not release the Lease");
        } else {
            info!(lease = %cfg.name, "released leadership");
        }
    }
}

/// Where the election thread stands.
#[derive(Clone, Debug)]
pub enum State {
    /// Waiting to acquire the Lease.
    Waiting,
    /// Holding the Lease.
    Leading,
    /// The Lease was lost (or the thread failed): stop at once.
    Lost(LeaderError),
    /// Stopped on request (the Lease, if held, was released).
    Released,
}

/// Leader election running on its own OS thread (see the module docs).
pub struct Elector {
    state: watch::Receiver<State>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for Elector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elector")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// Start the election thread: it acquires the Lease, then holds it until it is lost or
    /// [`Elector::shutdown`] is called. `make_store` runs on that thread, inside its runtime,
    /// so a Kubernetes client built there has its connections and tower stack driven by it.
    pub fn spawn<S, F>(cfg: LeaderConfig, make_store: F) -> std::io::Result<Self>
    where
        S: LeaseStore + 'static,
        F: FnOnce() -> Result<S, String> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("leader-election")
            .build()?;
        let (state_tx, state) = watch::channel(State::Waiting);
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("leader-election".into())
            .spawn(move || {
                runtime.block_on(elect(cfg, make_store, state_tx, stop_rx));
                // Dropping the runtime ends the client's connection tasks.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        Ok(Self {
            state,
            stop: Some(stop),
            done: Some(done),
            thread: Some(thread),
        })
    }

    /// Resolves once this replica holds the Lease; an error if the election ended first.
    pub fn acquired(&self) -> impl Future<Output = Result<(), LeaderError>> + Send + 'static {
        let mut rx = self.state.clone();
        async move {
            let state = match rx.wait_for(|s| !matches!(s, State::Waiting)).await {
                Ok(s) => s.clone(),
                Err(_) => return Err(thread_ended()),
            };
            match state {
                State::Leading => Ok(()),
                State::Lost(e) => Err(e),
                State::Waiting | State::Released => Err(thread_ended()),
            }
        }
    }

    /// Resolves when the Lease is lost (or the election thread ends without a release).
    pub fn lost(&self) -> impl Future<Output = LeaderError> + Send + 'static {
        let mut rx = self.state.clone();
        async move {
            let state = match rx.wait_for(|s| matches!(s, State::Lost(_))).await {
                Ok(s) => s.clone(),
                Err(_) => return thread_ended(),
            };
            match state {
                State::Lost(e) => e,
                _ => thread_ended(),
            }
        }
    }

    /// The current state.
    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Stop the election: release the Lease if this replica holds it, and wait up to `timeout`
    /// for the thread to finish. Returns whether it finished in time.
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(done) = self.done.take() else {
            return true;
        };
        // The thread signals `done` (or drops it, if it panicked) as its last act.
        if tokio::time::timeout(timeout, done).await.is_err() {
            warn!(
                ?timeout,
                "leader election thread did not finish in time; the Lease may not be released"
            );
            return false;
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("leader election thread panicked");
        }
        true
    }
}

fn thread_ended() -> LeaderError {
    LeaderError::Failed {
        reason: "the leader election thread ended".into(),
    }
}

/// The election thread's work (see [`Elector::spawn`]). A dropped `stop` sender counts as a stop.
async fn elect<S, F>(
    cfg: LeaderConfig,
    make_store: F,
    state: watch::Sender<State>,
    mut stop: oneshot::Receiver<()>,
) where
    S: LeaseStore,
    F: FnOnce() -> Result<S, String>,
{
    let store = match make_store() {
        Ok(s) => s,
        Err(reason) => {
            state.send_replace(State::Lost(LeaderError::Failed { reason }));
            return;
        }
    };
    let stopped = tokio::select! {
        () = acquire(&store, &cfg) => false,
        _ = &mut stop => true,
    };
    if !stopped {
        state.send_replace(State::Leading);
        tokio::select! {
            e = hold(&store, &cfg) => {
                // No write from now on, even before the main runtime gets to exit.
                cfg.clock.revoke();
                state.send_replace(State::Lost(e));
                return;
            }
            _ = &mut stop => {}
        }
    }
    cfg.clock.revoke();
    // Also when stopped while waiting: an acquisition cut short may have gone through.
    release(&store, &cfg).await;
    state.send_replace(State::Released);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An in-memory Lease API: one Lease, resourceVersion-guarded replaces, an outage switch
    /// (every call fails) and a hang switch (no call ever answers).
    #[derive(Clone, Default)]
    struct Fake {
        inner: Arc<Mutex<Inner>>,
        down: Arc<AtomicBool>,
        hang: Arc<AtomicBool>,
    }

    #[derive(Default)]
    struct Inner {
        lease: Option<Lease>,
        version: u64,
        /// When each successful create or replace happened.
        writes: Vec<Instant>,
    }

    impl Fake {
        fn lease(&self) -> Option<Lease> {
            self.inner.lock().unwrap().lease.clone()
        }

        fn spec(&self) -> LeaseSpec {
            self.lease().and_then(|l| l.spec).unwrap_or_default()
        }

        fn holder(&self) -> Option<String> {
            self.spec().holder_identity
        }

        fn writes(&self) -> Vec<Instant> {
            self.inner.lock().unwrap().writes.clone()
        }

        fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }

        /// Another replica writes the Lease: it holds it, renewed at `renewed` (15 s lease).
        fn take_over(&self, who: &str, renewed: Timestamp) {
            let mut inner = self.inner.lock().unwrap();
            inner.version += 1;
            let version = inner.version.to_string();
            let lease = inner.lease.get_or_insert_with(Lease::default);
            lease.metadata.resource_version = Some(version);
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(who.to_string());
            spec.renew_time = Some(MicroTime(renewed));
            spec.lease_duration_seconds = Some(15);
        }

        async fn gate(&self) -> Result<(), StoreError> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Other("connection refused".into()));
            }
            Ok(())
        }

        fn write(&self, lease: &Lease) {
            let mut inner = self.inner.lock().unwrap();
            inner.version += 1;
            let mut lease = lease.clone();
            lease.metadata.resource_version = Some(inner.version.to_string());
            inner.lease = Some(lease);
            inner.writes.push(Instant::now());
        }
    }

    #[async_trait::async_trait]
    impl LeaseStore for Fake {
        async fn get(&self, _name: &str) -> Result<Option<Lease>, StoreError> {
            self.gate().await?;
            Ok(self.lease())
        }

        async fn create(&self, lease: &Lease) -> Result<(), StoreError> {
            self.gate().await?;
            if self.lease().is_some() {
                return Err(StoreError::Conflict);
            }
            self.write(lease);
            Ok(())
        }

        async fn replace(&self, _name: &str, lease: &Lease) -> Result<(), StoreError> {
            self.gate().await?;
            match self.lease() {
                None => Err(StoreError::Other("not found".into())),
                Some(cur) if cur.metadata.resource_version != lease.metadata.resource_version => {
                    Err(StoreError::Conflict)
                }
                Some(_) => {
                    self.write(lease);
                    Ok(())
                }
            }
        }
    }

    /// A wall clock that follows tokio's clock (so it advances with paused time).
    fn test_wall() -> WallClock {
        let base = Timestamp::now();
        let start = Instant::now();
        WallClock(Arc::new(move || {
            base.checked_add(start.elapsed()).unwrap_or(base)
        }))
    }

    fn cfg_with(
        identity: &str,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> LeaderConfig {
        LeaderConfig {
            name: "eso".into(),
            namespace: "ns".into(),
            identity: identity.into(),
            lease_duration,
            renew_deadline,
            retry_period,
            clock: Arc::new(crate::fence::LeaseClock::new(renew_deadline)),
            wall: test_wall(),
        }
    }

    /// The operator's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    fn cfg(identity: &str) -> LeaderConfig {
        cfg_with(
            identity,
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2),
        )
    }

    /// Short real-time settings for the tests of the election thread.
    fn fast(identity: &str) -> LeaderConfig {
        cfg_with(
            identity,
            Duration::from_secs(1),
            Duration::from_millis(500),
            Duration::from_millis(20),
        )
    }

    fn max_gap(writes: &[Instant]) -> Duration {
        writes
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_creates_a_missing_lease_and_confirms_the_fence() {
        let store = Fake::default();
        let c = cfg("me");
        assert!(c.clock.check().is_err());
        acquire(&store, &c).await;
        let spec = store.spec();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
        assert!(c.clock.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_holder_keeps_the_lease_until_it_expires() {
        let store = Fake::default();
        let c = cfg("me");
        store.take_over("other", c.wall.now());
        let start = Instant::now();
        // The other holder's Lease (15 s) is fresh: we keep waiting and never write.
        assert!(
            tokio::time::timeout(Duration::from_secs(14), acquire(&store, &c))
                .await
                .is_err()
        );
        assert_eq!(store.holder().as_deref(), Some("other"));
        assert!(store.writes().is_empty());
        assert!(c.clock.check().is_err());
        // Once it has expired, the next attempt takes it over.
        acquire(&store, &c).await;
        let took = start.elapsed();
        assert!(
            took > Duration::from_secs(15) && took <= Duration::from_secs(17),
            "{took:?}"
        );
        let spec = store.spec();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert!(c.clock.check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn hold_renews_every_retry_period() {
        let store = Fake::default();
        let c = cfg("me");
        acquire(&store, &c).await;
        let acquired = store.spec().renew_time.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(61), hold(&store, &c))
                .await
                .is_err(),
            "lost the Lease with a healthy API"
        );
        let writes = store.writes();
        assert_eq!(
            writes.len(),
            1 + 30,
            "one acquisition and a renewal every 2 s"
        );
        assert_eq!(max_gap(&writes), Duration::from_secs(2));
        let renewed = store.spec().renew_time.unwrap();
        assert_eq!(since(renewed.0, &acquired), Duration::from_secs(60));
        assert_eq!(store.holder().as_deref(), Some("me"));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_gives_up_at_the_renew_deadline_when_the_api_is_down() {
        let store = Fake::default();
        let c = cfg("me");
        acquire(&store, &c).await;
        store.set_down(true);
        let start = Instant::now();
        let e = hold(&store, &c).await;
        assert!(matches!(e, LeaderError::Lost { .. }), "{e}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_survives_an_outage_shorter_than_the_renew_deadline() {
        let store = Fake::default();
        let c = cfg("me");
        acquire(&store, &c).await;
        store.set_down(true);
        let s = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(9)).await;
            s.set_down(false);
        });
        assert!(
            tokio::time::timeout(Duration::from_secs(40), hold(&store, &c))
                .await
                .is_err(),
            "gave up after a 9 s outage with a 10 s renew deadline"
        );
        assert_eq!(store.holder().as_deref(), Some("me"));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_gives_up_at_the_renew_deadline_when_a_request_hangs() {
        let store = Fake::default();
        let c = cfg("me");
        acquire(&store, &c).await;
        store.hang.store(true, Ordering::SeqCst);
        let start = Instant::now();
        // Without a bound on each attempt this would wait for the client's read timeout.
        let e = tokio::time::timeout(Duration::from_secs(60), hold(&store, &c))
            .await
            .expect("hold waited on a hung request past the renew deadline");
        assert!(matches!(e, LeaderError::Lost { .. }), "{e}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_stops_at_once_when_another_replica_took_the_lease() {
        let store = Fake::default();
        let c = cfg("me");
        acquire(&store, &c).await;
        store.take_over("other", c.wall.now());
        let start = Instant::now();
        let e = hold(&store, &c).await;
        assert!(matches!(e, LeaderError::Lost { .. }), "{e}");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "at the next attempt"
        );
        assert_eq!(store.holder().as_deref(), Some("other"));
    }

    #[tokio::test(start_paused = true)]
    async fn release_clears_only_our_own_lease() {
        let store = Fake::default();
        let c = cfg("me");
        acquire(&store, &c).await;
        release(&store, &c).await;
        let spec = store.spec();
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.renew_time, None);

        store.take_over("other", c.wall.now());
        let before = store.writes().len();
        release(&store, &c).await;
        assert_eq!(store.holder().as_deref(), Some("other"));
        assert_eq!(store.writes().len(), before);
    }

    #[tokio::test]
    async fn elector_holds_on_its_thread_and_releases_on_shutdown() {
        let store = Fake::default();
        let c = fast("me");
        let clock = c.clock.clone();
        let s = store.clone();
        let el = Elector::spawn(c, move || Ok(s)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), el.acquired())
            .await
            .expect("acquired in time")
            .unwrap();
        assert_eq!(store.holder().as_deref(), Some("me"));
        assert!(clock.check().is_ok());
        // It keeps renewing on its own.
        let n = store.writes().len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.writes().len() > n, "no renewal");
        assert!(matches!(el.state(), State::Leading));

        assert!(el.shutdown(Duration::from_secs(10)).await);
        assert_eq!(store.holder(), None, "the Lease was not released");
        assert!(matches!(clock.check(), Err(None)), "the fence stayed open");
    }

    #[tokio::test]
    async fn elector_reports_a_loss_and_revokes_the_fence() {
        let store = Fake::default();
        let c = fast("me");
        let clock = c.clock.clone();
        let wall = c.wall.clone();
        let s = store.clone();
        let el = Elector::spawn(c, move || Ok(s)).unwrap();
        let lost = el.lost();
        el.acquired().await.unwrap();
        store.take_over("other", wall.now());
        let e = tokio::time::timeout(Duration::from_secs(10), lost)
            .await
            .expect("loss reported in time");
        assert!(matches!(e, LeaderError::Lost { .. }), "{e}");
        assert!(matches!(clock.check(), Err(None)), "the fence stayed open");
        assert!(matches!(el.state(), State::Lost(_)));
        // A lost Lease is left to its new holder.
        assert!(el.shutdown(Duration::from_secs(10)).await);
        assert_eq!(store.holder().as_deref(), Some("other"));
    }

    #[tokio::test]
    async fn elector_stopped_while_waiting_leaves_the_holder_alone() {
        let store = Fake::default();
        let c = fast("me");
        store.take_over("other", c.wall.now());
        let s = store.clone();
        let el = Elector::spawn(c, move || Ok(s)).unwrap();
        let acquired = el.acquired();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(el.state(), State::Waiting));
        assert!(el.shutdown(Duration::from_secs(10)).await);
        assert_eq!(store.holder().as_deref(), Some("other"));
        assert!(store.writes().is_empty());
        assert!(acquired.await.is_err());
    }

    #[tokio::test]
    async fn elector_reports_a_client_that_cannot_be_built() {
        let el =
            Elector::spawn(fast("me"), || Err::<Fake, _>("no kubeconfig".to_string())).unwrap();
        let e = el.acquired().await.unwrap_err();
        assert!(e.to_string().contains("no kubeconfig"), "{e}");
        let e = el.lost().await;
        assert!(e.to_string().contains("no kubeconfig"), "{e}");
        assert!(el.shutdown(Duration::from_secs(10)).await);
    }

    /// The point of the election thread: with every worker of the main runtime blocked for three
    /// renew deadlines, the Lease is still renewed every retry period and the fence stays open;
    /// the same loop run as a task of that runtime (as before) misses every renewal meanwhile.
    /// Real time: paused time cannot express a blocked OS thread.
    #[test]
    fn renewal_keeps_its_schedule_while_the_main_runtime_is_starved() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (retry, deadline) = (Duration::from_millis(50), Duration::from_millis(500));
            let block = Duration::from_millis(1500);
            let settings = |who| cfg_with(who, Duration::from_secs(2), deadline, retry);

            let own = Fake::default();
            let own_cfg = settings("own-thread");
            let own_clock = own_cfg.clock.clone();
            let s = own.clone();
            let el = Elector::spawn(own_cfg, move || Ok(s)).unwrap();
            el.acquired().await.unwrap();

            let shared = Fake::default();
            let shared_cfg = settings("main-runtime");
            let shared_clock = shared_cfg.clock.clone();
            acquire(&shared, &shared_cfg).await;
            let s = shared.clone();
            let held = tokio::spawn(async move { hold(&s, &shared_cfg).await });
            tokio::time::sleep(Duration::from_millis(200)).await;

            // Block the runtime's only worker.
            let (start, fences) = tokio::spawn(async move {
                let start = Instant::now();
                std::thread::sleep(block);
                (start, (own_clock.check(), shared_clock.check()))
            })
            .await
            .unwrap();
            let end = start + block;
            let within = |w: &[Instant]| w.iter().filter(|t| **t > start && **t <= end).count();

            let mut writes = own.writes();
            let during = within(&writes);
            // 30 renewals are due in the block; a loaded CI machine may delay some, never all.
            assert!(during >= 3, "{during} renewals in {block:?}");
            writes.push(end);
            assert!(
                max_gap(&writes) < deadline,
                "renewal gap {:?}",
                max_gap(&writes)
            );
            assert!(matches!(el.state(), State::Leading), "{:?}", el.state());
            assert!(
                fences.0.is_ok(),
                "fenced while the runtime was busy: {:?}",
                fences.0
            );

            // Without the thread: no renewal for the whole block, and writes were fenced.
            assert_eq!(within(&shared.writes()), 0);
            assert!(fences.1.is_err());

            held.abort();
            assert!(el.shutdown(Duration::from_secs(10)).await);
            assert_eq!(own.holder(), None);
        });
    }
}
