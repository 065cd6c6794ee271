//! Schedule: when to come back. Pure functions of plain data (the object, the clock, the
//! configured jitter and restart spread, a per-object seed); [`super`] turns their answers into
//! a controller [`Action`](kube::runtime::controller::Action) and a watchdog due time.

use std::time::{Duration, Instant};

use eso_api::ExternalSecret;
use k8s_openapi::jiff::Timestamp;

use crate::refresh;

/// Shortest requeue: a wake-up sooner than this is rounded up.
pub(crate) const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// Shortest retry after a failure.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// Wait while the caches have not listed yet.
pub(crate) const CACHES_NOT_READY: Duration = Duration::from_millis(500);

/// Longest wait between retries while a dependency (templateFrom source) is missing.
pub const WAITING_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The per-object seed of every jitter: stable across runs, no randomness needed.
pub(crate) fn seed_of(namespace: &str, name: &str) -> u64 {
    // FNV-1a
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The scheduling settings of a [`Config`](crate::Config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// Up to this fraction of the interval is added to every periodic refresh.
    pub jitter_fraction: f64,
    /// Overdue objects seen after a restart are spread over at most this long.
    pub restart_spread: Duration,
}

/// How long until the next reconcile (`None`: only a change wakes the object). The watchdog
/// expects the object by then; the requeue itself is at least [`MIN_REQUEUE`].
///
/// `first_seen_may_be_restart`: no sync ran in this reconcile, so an object overdue by schedule
/// (its Secret valid) is spread over the restart window instead of refreshing at once.
pub(crate) fn next_requeue(
    es: &ExternalSecret,
    now: Timestamp,
    last_check: Option<Timestamp>,
    first_seen_may_be_restart: bool,
    timing: Timing,
    seed: u64,
) -> Option<Duration> {
    let mut d = refresh::next_refresh(es, now, last_check, timing.jitter_fraction, seed)?;
    // After a restart, overdue-by-schedule objects whose Secret is valid are spread over
    // a window instead of all refreshing at once (ESO #4231).
    if first_seen_may_be_restart && d.is_zero() {
        let window = es
            .spec
            .refresh_interval_duration()
            .unwrap_or(Duration::from_secs(60))
            .min(timing.restart_spread);
        d = refresh::jitter(window, 1.0, seed);
    }
    Some(d)
}

/// The instant a refresh deferred after a restart runs: within `min(interval, restart_spread)`
/// of `now`, at a point fixed by the object's seed.
pub(crate) fn restart_deferral(
    now: Instant,
    interval: Duration,
    restart_spread: Duration,
    seed: u64,
) -> Instant {
    let window = interval.min(restart_spread);
    now + refresh::jitter(window, 1.0, seed)
}

/// How long until a deferred refresh is due (at least [`MIN_REQUEUE`]).
pub(crate) fn until(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now).max(MIN_REQUEUE)
}

/// Backoff for transient failures: exponential from 1 s with ±20 % jitter, capped at the
/// refresh interval (so recovery never waits longer than one refresh), at `max_backoff` and,
/// while a dependency is missing (`waiting`), at [`WAITING_BACKOFF_CAP`].
pub(crate) fn backoff(
    failures: u32,
    waiting: bool,
    max_backoff: Duration,
    refresh_interval: Option<Duration>,
    seed: u64,
) -> Duration {
    let mut cap = max_backoff;
    if waiting {
        // A missing dependency usually appears soon (applied in the same batch): look again
        // at least every WAITING_BACKOFF_CAP.
        cap = cap.min(WAITING_BACKOFF_CAP);
    }
    if let Some(i) = refresh_interval
        && !i.is_zero()
    {
        cap = cap.min(i);
    }
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let d = base.min(cap);
    let j = refresh::jitter(d, 0.4, seed ^ u64::from(failures));
    (d.mul_f64(0.8) + j).max(MIN_BACKOFF)
}
