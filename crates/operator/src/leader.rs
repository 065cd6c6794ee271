//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the Lease and runs the controllers; the others wait. The holder renews every
//! `retry_period`; if it cannot renew within `renew_deadline` (shorter than `lease_duration`) it
//! stops at once — the process exits — so an old leader never writes after another replica could
//! have taken over. A leader that shuts down gracefully releases the Lease so a standby takes
//! over without waiting for it to expire. Each successful renewal is recorded in a
//! [`crate::fence::LeaseClock`]: the controllers' client refuses writes once it is older than the
//! renew deadline, which covers a leader frozen and resumed before this loop notices.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

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
    pub clock: std::sync::Arc<crate::fence::LeaseClock>,
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be renewed before the renew deadline.
    #[error("lost leadership of Lease {namespace}/{name}: could not renew within {deadline:?}")]
    Lost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The renew deadline.
        deadline: Duration,
    },
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Elapsed time since a MicroTime.
fn since(t: &MicroTime) -> Duration {
    let d = Timestamp::now().as_nanosecond() - t.0.as_nanosecond();
    if d <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(d).unwrap_or(u64::MAX))
    }
}

/// Try once to acquire or renew. Ok(true): we hold the Lease now.
async fn try_acquire(api: &Api<Lease>, cfg: &LeaderConfig) -> Result<bool, kube::Error> {
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
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
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let ours = holder == cfg.identity;
            let expired = holder.is_empty()
                || spec.renew_time.as_ref().is_none_or(|t| {
                    since(t)
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
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Block until this replica holds the Lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaderConfig) {
    info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for leadership");
    loop {
        // Taken before the request: the Lease's renewTime is no older than this.
        let attempt = std::time::Instant::now();
        match try_acquire(api, cfg).await {
            Ok(true) => {
                cfg.clock.renewed_at(attempt);
                info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                return;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election: could not read or write the Lease"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Renew until renewal fails for longer than the renew deadline; then return the error.
pub async fn hold(api: &Api<Lease>, cfg: &LeaderConfig) -> LeaderError {
    let mut last_renew = std::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.retry_period).await;
        let attempt = std::time::Instant::now();
        match try_acquire(api, cfg).await {
            Ok(true) => {
                last_renew = std::time::Instant::now();
                cfg.clock.renewed_at(attempt);
            }
            Ok(false) => {
                return LeaderError::Lost {
                    namespace: cfg.namespace.clone(),
                    name: cfg.name.clone(),
                    deadline: cfg.renew_deadline,
                };
            }
            Err(e) => warn!(error = %e, "leader election: renew failed"),
        }
        if last_renew.elapsed() > cfg.renew_deadline {
            return LeaderError::Lost {
                namespace: cfg.namespace.clone(),
                name: cfg.name.clone(),
                deadline: cfg.renew_deadline,
            };
        }
    }
}

/// Release the Lease (graceful shutdown) so a standby takes over at once.
pub async fn release(api: &Api<Lease>, cfg: &LeaderConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(&cfg.identity)
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = api.replace(&cfg.name, &PostParams::default(), &lease).await {
            warn!(error = %e, "could not release the Lease");
        } else {
            info!(lease = %cfg.name, "released leadership");
        }
    }
}
