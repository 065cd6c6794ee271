//! Decide: what is due for an ExternalSecret and why. A pure function from plain data (the
//! object, its in-memory [`EsState`], facts read from the caches, the clock) to a
//! [`Decision`]; nothing here reads a cache, the clock or the cluster.

use std::time::{Duration, Instant};

use eso_api::{ExternalSecret, RefreshPolicy};
use k8s_openapi::jiff::Timestamp;

use super::EsState;
use crate::conditions::get_ready;
use crate::refresh;

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts<'a> {
    /// The ExternalSecret as cached.
    pub es: &'a ExternalSecret,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Every referenced store that is known belongs to this controller class.
    pub class_matches: bool,
    /// What this process remembers of the object.
    pub state: &'a EsState,
    /// [`eso_mapping::synced_resource_version`] of the object as it is now.
    pub current_version: &'a str,
    /// The target Secret is valid (or the policy is Orphan, where it is never looked at).
    pub secret_valid: bool,
    /// The sync windows hold back periodic refreshes now ([`window_blocked`]).
    pub window_blocked: bool,
    /// A remote change was seen (the forced mark was taken).
    pub forced: bool,
    /// Every referenced ClusterSecretStore admits the namespace.
    pub stores_admit: bool,
    /// Wall clock.
    pub now: Timestamp,
    /// Monotonic clock (restart-spread deferrals).
    pub now_instant: Instant,
}

/// Why a sync runs (the first reason that holds, in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncReason {
    /// A remote change was seen by the change watcher.
    Forced,
    /// The last attempt failed (in this process, or Ready=False found after a start).
    FailedBefore,
    /// A ClusterSecretStore no longer admits the namespace: reported at once.
    Refused,
    /// Due: first sync, spec change, or the interval has passed ([`refresh::should_refresh`]).
    Due,
    /// Not due, but the target Secret is missing or invalid: repaired.
    InvalidSecret,
}

/// When a deferred refresh after a restart runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deferral {
    /// Already scheduled for this instant.
    Until(Instant),
    /// First seen overdue: schedule it within the restart spread of this refresh interval.
    Start {
        /// The object's refresh interval.
        interval: Duration,
    },
}

/// What a reconcile does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Being deleted: run the finalizer cleanup.
    Cleanup,
    /// A referenced store belongs to another controller class: wait for a change.
    AwaitChange,
    /// Overdue by time only after a (re)start: refresh later, within the restart spread.
    Defer(Deferral),
    /// Nothing to do; come back on schedule. `ready` is the Ready status to report in metrics.
    UpToDate {
        /// Ready condition status for the metric (`True` when the object has none).
        ready: &'static str,
    },
    /// Read the provider and write the Secret.
    Sync(SyncReason),
}

/// The Ready condition's status as stored, if any.
pub(crate) fn ready_status(es: &ExternalSecret) -> Option<&'static str> {
    let st = get_ready(&es.status.as_ref()?.conditions)?.status;
    Some(st.as_str())
}

/// spec.syncWindows hold back periodic refreshes (ESO: Periodic or unset policy only): a
/// remote change seen by the change watcher and the retry of a failed periodic refresh wait
/// for a window too (the forced mark is kept until then). The first sync, a spec change and
/// the repair of an invalid Secret are not held back, as in ESO.
pub(crate) fn window_blocked(es: &ExternalSecret, now: Timestamp) -> bool {
    matches!(es.spec.refresh_policy, None | Some(RefreshPolicy::Periodic))
        && !crate::windows::allows(es.spec.sync_windows.as_ref(), now)
}

/// Whether the last successful sync in this process covers the object as it is now (the cached
/// object can lag behind our own status write).
fn synced_here(f: &Facts<'_>) -> bool {
    let es = f.es;
    f.state.synced_version == Some(super::version_key(f.current_version))
        && f.state.last_check.is_some_and(|t| {
            match es.spec.refresh_interval_duration().filter(|i| !i.is_zero()) {
                Some(i)
                    if !matches!(
                        es.spec.refresh_policy,
                        Some(RefreshPolicy::CreatedOnce) | Some(RefreshPolicy::OnChange)
                    ) =>
                {
                    Duration::try_from(f.now.duration_since(t)).is_ok_and(|since| since < i)
                }
                _ => true,
            }
        })
}

/// What is due, and why.
pub(crate) fn decide(f: &Facts<'_>) -> Decision {
    let es = f.es;
    if f.deleting {
        return Decision::Cleanup;
    }
    if !f.class_matches {
        return Decision::AwaitChange;
    }
    let state = f.state;
    // A failed last attempt is retried when the object is woken (a store turning Ready, a
    // namespace's labels changing, the backoff) rather than waiting for the next refresh.
    let failed_before = !f.window_blocked
        && (state.failed || (state.last_check.is_none() && ready_status(es) == Some("False")));
    // A ClusterSecretStore that no longer admits this namespace (its labels changed) is
    // reported at once, not at the next refresh; the Secret is kept.
    let refused = !f.stores_admit;
    let due =
        !synced_here(f) && refresh::should_refresh(es, f.current_version, f.now, state.last_check);
    let reason = if f.forced {
        Some(SyncReason::Forced)
    } else if failed_before {
        Some(SyncReason::FailedBefore)
    } else if refused {
        Some(SyncReason::Refused)
    } else if due {
        Some(SyncReason::Due)
    } else {
        None
    };
    // After a restart or failover nothing is known in memory, and an object whose Secret did
    // not change for one interval has an old `refreshTime` (it is written only on change): it
    // looks overdue. When it is overdue by time only — spec, labels and annotations as last
    // synced, the last sync successful, the Secret valid — its refresh is scheduled within the
    // restart spread (deterministically per object) instead of at once, so a restart costs no
    // more provider reads per interval than steady state. A remote change is still seen at the
    // next change poll, which forces a refresh.
    if reason.is_some()
        && !f.forced
        && !failed_before
        && f.secret_valid
        && state.last_check.is_none()
        && state.deferred_until.is_none_or(|t| t > f.now_instant)
        && ready_status(es) == Some("True")
        && es
            .status
            .as_ref()
            .and_then(|s| s.synced_resource_version.as_deref())
            == Some(f.current_version)
        && matches!(es.spec.refresh_policy, None | Some(RefreshPolicy::Periodic))
        && let Some(interval) = es.spec.refresh_interval_duration().filter(|i| !i.is_zero())
    {
        return Decision::Defer(match state.deferred_until {
            Some(t) => Deferral::Until(t),
            None => Deferral::Start { interval },
        });
    }
    match reason {
        Some(r) => Decision::Sync(r),
        None if f.secret_valid => Decision::UpToDate {
            ready: ready_status(es).unwrap_or("True"),
        },
        None => Decision::Sync(SyncReason::InvalidSecret),
    }
}
