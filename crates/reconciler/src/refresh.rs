//! When to refresh an ExternalSecret and when to come back (ESO's `shouldRefresh`,
//! `isSecretValid` and `getRequeueResult`, plus jitter and an in-memory check time).
//!
//! ## refreshTime without a write per interval
//! ESO rewrites `status.refreshTime` after every successful refresh, so every ExternalSecret costs
//! one status write per interval even when nothing changed. This operator writes status only when
//! something in it changes (a condition, `syncedResourceVersion`, `binding`) or the Secret was
//! written. `status.refreshTime` is therefore the start of the last refresh that changed the
//! Secret or the status. The time of the last successful *check* is kept in memory and used for
//! scheduling ([`next_refresh`]); after a restart, ExternalSecrets whose `refreshTime` is still
//! fresh make no provider call, and overdue ones are spread over a jitter window instead of all
//! firing at once.

use std::time::Duration;

use eso_api::{ExternalSecret, RefreshPolicy};
use k8s_openapi::jiff::Timestamp;

/// Whether the provider must be read now (ESO `shouldRefresh`).
///
/// `current_version` is [`eso_mapping::synced_resource_version`] of the object as it is now;
/// `last_check` is the in-memory time of the last successful check in this process.
pub fn should_refresh(
    es: &ExternalSecret,
    current_version: &str,
    now: Timestamp,
    last_check: Option<Timestamp>,
) -> bool {
    let status = es.status.as_ref();
    let synced_version = status
        .and_then(|s| s.synced_resource_version.as_deref())
        .unwrap_or("");
    let refresh_time = status.and_then(|s| s.refresh_time.as_ref()).map(|t| t.0);
    let never_synced = synced_version.is_empty() || refresh_time.is_none();
    match es.spec.refresh_policy {
        Some(RefreshPolicy::CreatedOnce) => never_synced,
        Some(RefreshPolicy::OnChange) => never_synced || synced_version != current_version,
        Some(RefreshPolicy::Periodic) | None => {
            let interval = es
                .spec
                .refresh_interval_duration()
                .unwrap_or(Duration::ZERO);
            // QUIRK kept from ESO: with refreshInterval 0 a synced object is never refreshed,
            // not even after a spec change (only drift repair rewrites it).
            if interval.is_zero() && !synced_version.is_empty() {
                return false;
            }
            if synced_version != current_version {
                return true;
            }
            let Some(refresh_time) = refresh_time else {
                return true;
            };
            if refresh_time > now {
                return true;
            }
            let anchor = last_check.map_or(refresh_time, |c| c.max(refresh_time));
            // Due by time: ESO checks the sync windows only now, after the first sync, a spec
            // change and a refreshTime in the future have already forced a refresh.
            !is_before(now, add(anchor, interval))
                && crate::windows::allows(es.spec.sync_windows.as_ref(), now)
        }
    }
}

/// How long until the next periodic refresh is due, with up to `jitter_fraction` of the interval
/// added (deterministically from `seed`, so the schedule of one object is stable). `None`: no
/// periodic refresh (interval 0, or a policy that never refreshes on a timer).
pub fn next_refresh(
    es: &ExternalSecret,
    now: Timestamp,
    last_check: Option<Timestamp>,
    jitter_fraction: f64,
    seed: u64,
) -> Option<Duration> {
    if matches!(
        es.spec.refresh_policy,
        Some(RefreshPolicy::CreatedOnce) | Some(RefreshPolicy::OnChange)
    ) {
        return None;
    }
    let interval = es.spec.refresh_interval_duration()?;
    if interval.is_zero() {
        return None;
    }
    let refresh_time = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0);
    let anchor = match (refresh_time, last_check) {
        (Some(r), Some(c)) => r.max(c),
        (Some(r), None) => r,
        (None, Some(c)) => c,
        (None, None) => now,
    };
    let elapsed = duration_between(anchor, now);
    let remaining = interval.saturating_sub(elapsed);
    if remaining.is_zero() && !crate::windows::allows(es.spec.sync_windows.as_ref(), now) {
        // Due but held back by the sync windows: come back when they may let it through
        // (ESO requeues with its rate limiter and checks again). Capped so a schedule that
        // never fires costs one wake-up per interval, not a busy loop.
        let wait = crate::windows::blocked_for(es.spec.sync_windows.as_ref(), now)
            .unwrap_or(interval)
            .min(MAX_WINDOW_WAIT.max(interval));
        // A small jitter only: a large one could miss a short window.
        let spread = wait.min(Duration::from_secs(60));
        return Some(wait + jitter(spread, jitter_fraction, seed));
    }
    Some(remaining + jitter(interval, jitter_fraction, seed))
}

/// Longest wait for a sync window to open before the schedule is looked at again.
const MAX_WINDOW_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A deterministic jitter in `[0, interval * fraction)`.
pub fn jitter(interval: Duration, fraction: f64, seed: u64) -> Duration {
    if fraction <= 0.0 {
        return Duration::ZERO;
    }
    // splitmix64 for a well-spread value from the seed
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction.min(1.0) * unit)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let nanos = i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    let target = t.as_nanosecond().saturating_add(nanos);
    Timestamp::from_nanosecond(target).unwrap_or(Timestamp::MAX)
}

fn is_before(a: Timestamp, b: Timestamp) -> bool {
    a < b
}

fn duration_between(earlier: Timestamp, later: Timestamp) -> Duration {
    let diff = later.as_nanosecond() - earlier.as_nanosecond();
    if diff <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(diff).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eso_api::{ExternalSecretSpec, ExternalSecretStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn es(
        policy: Option<RefreshPolicy>,
        interval: &str,
        synced: Option<&str>,
        refreshed: Option<i64>,
    ) -> ExternalSecret {
        let mut es = ExternalSecret::new(
            "x",
            ExternalSecretSpec {
                refresh_policy: policy,
                refresh_interval: Some(interval.to_string()),
                ..ExternalSecretSpec::default()
            },
        );
        es.status = Some(ExternalSecretStatus {
            synced_resource_version: synced.map(String::from),
            refresh_time: refreshed.map(|s| Time(ts(s))),
            ..ExternalSecretStatus::default()
        });
        es
    }

    #[test]
    fn periodic_table() {
        // never synced
        assert!(should_refresh(
            &es(None, "1h", None, None),
            "1-a",
            ts(0),
            None
        ));
        // synced, fresh
        assert!(!should_refresh(
            &es(None, "1h", Some("1-a"), Some(0)),
            "1-a",
            ts(10),
            None
        ));
        // synced, due
        assert!(should_refresh(
            &es(None, "1h", Some("1-a"), Some(0)),
            "1-a",
            ts(3600),
            None
        ));
        // spec changed
        assert!(should_refresh(
            &es(None, "1h", Some("1-a"), Some(0)),
            "2-a",
            ts(10),
            None
        ));
        // refreshTime in the future
        assert!(should_refresh(
            &es(None, "1h", Some("1-a"), Some(100)),
            "1-a",
            ts(10),
            None
        ));
        // interval 0 and synced: never, even after a spec change (ESO quirk kept)
        assert!(!should_refresh(
            &es(None, "0", Some("1-a"), Some(0)),
            "2-a",
            ts(99999),
            None
        ));
        // interval 0 and never synced: once
        assert!(should_refresh(
            &es(None, "0", None, None),
            "1-a",
            ts(0),
            None
        ));
        // an in-memory check postpones the next refresh
        assert!(!should_refresh(
            &es(None, "1h", Some("1-a"), Some(0)),
            "1-a",
            ts(3600),
            Some(ts(3000))
        ));
        assert!(should_refresh(
            &es(Some(RefreshPolicy::Periodic), "1h", Some("1-a"), Some(0)),
            "1-a",
            ts(7000),
            Some(ts(3000))
        ));
    }

    #[test]
    fn created_once_and_on_change() {
        let p = Some(RefreshPolicy::CreatedOnce);
        assert!(should_refresh(&es(p, "1m", None, None), "1-a", ts(0), None));
        assert!(!should_refresh(
            &es(p, "1m", Some("1-a"), Some(0)),
            "2-b",
            ts(99999),
            None
        ));
        let p = Some(RefreshPolicy::OnChange);
        assert!(should_refresh(&es(p, "1m", None, None), "1-a", ts(0), None));
        assert!(!should_refresh(
            &es(p, "1m", Some("1-a"), Some(0)),
            "1-a",
            ts(99999),
            None
        ));
        assert!(should_refresh(
            &es(p, "1m", Some("1-a"), Some(0)),
            "2-a",
            ts(1),
            None
        ));
    }

    #[test]
    fn requeue_after_interval_minus_elapsed_plus_jitter() {
        let e = es(None, "10m", Some("1-a"), Some(0));
        assert_eq!(
            next_refresh(&e, ts(60), None, 0.0, 1),
            Some(Duration::from_secs(540))
        );
        assert_eq!(
            next_refresh(&e, ts(6000), None, 0.0, 1),
            Some(Duration::ZERO)
        );
        let j = next_refresh(&e, ts(60), None, 0.1, 7).unwrap();
        assert!(
            j >= Duration::from_secs(540) && j < Duration::from_secs(600),
            "{j:?}"
        );
        assert_eq!(
            next_refresh(&es(None, "0", Some("1-a"), Some(0)), ts(1), None, 0.1, 1),
            None
        );
        assert_eq!(
            next_refresh(
                &es(Some(RefreshPolicy::CreatedOnce), "1m", None, None),
                ts(1),
                None,
                0.1,
                1
            ),
            None
        );
    }

    #[test]
    fn sync_windows_gate_only_the_periodic_refresh() {
        use eso_api::{SyncWindow, SyncWindowKind, SyncWindows};
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let with_window = |synced: Option<&str>, refreshed: Option<Timestamp>| {
            let mut e = es(None, "1h", synced, None);
            e.spec.sync_windows = Some(SyncWindows {
                kind: SyncWindowKind::Allow,
                windows: vec![SyncWindow {
                    schedule: "0 22 * * *".into(),
                    duration: "1h".into(),
                }],
            });
            if let Some(st) = e.status.as_mut() {
                st.refresh_time = refreshed.map(Time);
            }
            e
        };
        let noon = t("2026-12-02T12:00:00Z");
        let e = with_window(Some("1-a"), Some(t("2026-12-02T09:00:00Z")));
        // Due by time but outside the window: held back, and woken when it opens (22:00).
        assert!(!should_refresh(&e, "1-a", noon, None));
        assert_eq!(
            next_refresh(&e, noon, None, 0.0, 1),
            Some(Duration::from_secs(10 * 3600))
        );
        // Inside the window: refreshed.
        assert!(should_refresh(&e, "1-a", t("2026-12-02T22:30:00Z"), None));
        // The first sync and a spec change are never held back (ESO).
        assert!(should_refresh(&with_window(None, None), "1-a", noon, None));
        assert!(should_refresh(&e, "2-a", noon, None));
        // Not yet due: the normal schedule.
        assert_eq!(
            next_refresh(&e, t("2026-12-02T09:30:00Z"), None, 0.0, 1),
            Some(Duration::from_secs(30 * 60))
        );
    }

    #[test]
    fn jitter_is_bounded_and_spread() {
        let i = Duration::from_secs(100);
        let values: Vec<_> = (0..1000).map(|s| jitter(i, 0.1, s)).collect();
        assert!(values.iter().all(|v| *v < Duration::from_secs(10)));
        let distinct: std::collections::HashSet<_> =
            values.iter().map(|v| v.as_millis() / 500).collect();
        assert!(distinct.len() >= 15, "poorly spread: {}", distinct.len());
    }
}
