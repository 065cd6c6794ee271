//! Tests of the pipeline without a cluster: the pure stages ([`decide`], [`schedule`]) as
//! tables, and whole reconciles against a mock apiserver (`tower-test`), asserting the exact
//! requests each makes.

use std::time::{Duration, Instant};

use eso_api::{ExternalSecret, RefreshPolicy};
use k8s_openapi::jiff::Timestamp;

use super::EsState;
use super::decide::{self, Decision, Deferral, Facts, SyncReason};
use super::schedule::{self, Timing};

const V: &str = "1-abc";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn noon() -> Timestamp {
    t("2026-12-02T12:00:00Z")
}

/// An ExternalSecret with a refresh policy and interval, synced at `synced` (version, refresh
/// time) with the Ready status `ready`.
fn es(
    policy: Option<RefreshPolicy>,
    interval: &str,
    synced: Option<(&str, &str)>,
    ready: Option<&str>,
) -> ExternalSecret {
    let mut status = serde_json::json!({});
    if let Some((v, at)) = synced {
        status["syncedResourceVersion"] = v.into();
        status["refreshTime"] = at.into();
    }
    if let Some(r) = ready {
        status["conditions"] = serde_json::json!([{"type": "Ready", "status": r}]);
    }
    let mut e: ExternalSecret = serde_json::from_value(serde_json::json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"refreshInterval": interval},
        "status": status,
    }))
    .unwrap();
    e.spec.refresh_policy = policy;
    e
}

/// Synced an hour ago with a 1h-and-more interval: fresh.
fn fresh() -> ExternalSecret {
    es(None, "2h", Some((V, "2026-12-02T11:00:00Z")), Some("True"))
}

/// Synced three hours ago with a 1h interval: overdue by time.
fn overdue() -> ExternalSecret {
    es(None, "1h", Some((V, "2026-12-02T09:00:00Z")), Some("True"))
}

fn facts<'a>(es: &'a ExternalSecret, state: &'a EsState, now_instant: Instant) -> Facts<'a> {
    Facts {
        es,
        deleting: false,
        class_matches: true,
        state,
        current_version: V,
        secret_valid: true,
        window_blocked: false,
        forced: false,
        stores_admit: true,
        now: noon(),
        now_instant,
    }
}

/// Checked in this process a minute ago, successfully.
fn checked() -> EsState {
    EsState {
        last_check: Some(t("2026-12-02T11:59:00Z")),
        synced_version: Some(super::version_key(V)),
        ..EsState::default()
    }
}

fn sync_windows_closed_at_noon(e: &mut ExternalSecret) {
    use eso_api::{SyncWindow, SyncWindowKind, SyncWindows};
    e.spec.sync_windows = Some(SyncWindows {
        kind: SyncWindowKind::Allow,
        windows: vec![SyncWindow {
            schedule: "0 22 * * *".into(),
            duration: "1h".into(),
        }],
    });
}

#[test]
fn decide_table() {
    let now = Instant::now();
    let later = now + Duration::from_secs(30);
    let earlier = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
    let up = Decision::UpToDate { ready: "True" };
    let hour = Duration::from_secs(3600);
    let none = EsState::default();
    let failed = EsState {
        failed: true,
        ..checked()
    };
    let deferred = |t| EsState {
        deferred_until: Some(t),
        ..EsState::default()
    };
    // A stale status (a reconcile woken by our own Secret write sees the old one), with the
    // in-memory state of the sync that just ran.
    let lagging = es(
        None,
        "1h",
        Some(("0-old", "2026-12-02T11:00:00Z")),
        Some("True"),
    );
    let mut blocked = overdue();
    sync_windows_closed_at_noon(&mut blocked);
    let mut blocked_new = es(None, "1h", None, None);
    sync_windows_closed_at_noon(&mut blocked_new);

    let s = &checked();
    // Each case is checked in its own statement (the objects it borrows live that long).
    macro_rules! table {
        ($(($what:expr, $facts:expr, $want:expr $(,)?)),* $(,)?) => {$(
            assert_eq!(decide::decide(&$facts), $want, "{}", $what);
        )*};
    }
    table![
        // deletion and class
        (
            "deletion → cleanup, whatever else holds",
            Facts {
                deleting: true,
                class_matches: false,
                forced: true,
                ..facts(&fresh(), s, now)
            },
            Decision::Cleanup,
        ),
        (
            "a store of another controller class → wait for a change",
            Facts {
                class_matches: false,
                forced: true,
                ..facts(&fresh(), s, now)
            },
            Decision::AwaitChange,
        ),
        // nothing due
        (
            "fresh, checked here → up to date",
            facts(&fresh(), s, now),
            up
        ),
        (
            "fresh, first seen after a restart → up to date",
            facts(&fresh(), &none, now),
            up,
        ),
        (
            "no Ready condition → metric True",
            facts(
                &es(None, "2h", Some((V, "2026-12-02T11:00:00Z")), None),
                s,
                now
            ),
            up,
        ),
        // forced, failed, refused
        (
            "remote change → sync",
            Facts {
                forced: true,
                ..facts(&fresh(), s, now)
            },
            Decision::Sync(SyncReason::Forced),
        ),
        (
            "forced wins over every other reason, and is never deferred",
            Facts {
                forced: true,
                stores_admit: false,
                ..facts(&overdue(), &failed, now)
            },
            Decision::Sync(SyncReason::Forced),
        ),
        (
            "last attempt failed here → retried",
            facts(&fresh(), &failed, now),
            Decision::Sync(SyncReason::FailedBefore),
        ),
        (
            "Ready=False found after a start → retried",
            facts(
                &es(None, "2h", Some((V, "2026-12-02T11:00:00Z")), Some("False")),
                &none,
                now,
            ),
            Decision::Sync(SyncReason::FailedBefore),
        ),
        (
            "Ready=False, but checked here since → not a retry",
            facts(
                &es(None, "2h", Some((V, "2026-12-02T11:00:00Z")), Some("False")),
                s,
                now,
            ),
            Decision::UpToDate { ready: "False" },
        ),
        (
            "failed, but the windows are closed → held back",
            Facts {
                window_blocked: true,
                ..facts(&blocked, &failed, now)
            },
            Decision::UpToDate { ready: "True" },
        ),
        (
            "a ClusterSecretStore refuses the namespace → reported at once",
            Facts {
                stores_admit: false,
                ..facts(&fresh(), s, now)
            },
            Decision::Sync(SyncReason::Refused),
        ),
        (
            "refused after a restart, overdue by time only → still spread (as before)",
            Facts {
                stores_admit: false,
                ..facts(&overdue(), &none, now)
            },
            Decision::Defer(Deferral::Start { interval: hour }),
        ),
        // due by schedule
        (
            "never synced → sync",
            facts(&es(None, "1h", None, None), &none, now),
            Decision::Sync(SyncReason::Due),
        ),
        (
            "spec changed → sync, not deferred",
            Facts {
                current_version: "2-def",
                ..facts(&overdue(), &none, now)
            },
            Decision::Sync(SyncReason::Due),
        ),
        (
            "overdue, checked here over an interval ago → sync",
            facts(
                &overdue(),
                &EsState {
                    last_check: Some(t("2026-12-02T10:30:00Z")),
                    ..checked()
                },
                now,
            ),
            Decision::Sync(SyncReason::Due),
        ),
        (
            "synced here, status lagging → no second read",
            facts(&lagging, s, now),
            up,
        ),
        (
            "synced here over an interval ago, status lagging → sync",
            facts(
                &lagging,
                &EsState {
                    last_check: Some(t("2026-12-02T10:30:00Z")),
                    ..checked()
                },
                now,
            ),
            Decision::Sync(SyncReason::Due),
        ),
        (
            "overdue, windows closed → held back",
            Facts {
                window_blocked: true,
                ..facts(&blocked, s, now)
            },
            up,
        ),
        (
            "first sync, windows closed → not held back",
            Facts {
                window_blocked: true,
                ..facts(&blocked_new, &none, now)
            },
            Decision::Sync(SyncReason::Due),
        ),
        // restart spread
        (
            "overdue after a restart, remote change seen → sync at once",
            Facts {
                forced: true,
                ..facts(&overdue(), &none, now)
            },
            Decision::Sync(SyncReason::Forced),
        ),
        (
            "overdue after a restart, first attempt here failed → retried at once",
            facts(
                &overdue(),
                &EsState {
                    failed: true,
                    ..EsState::default()
                },
                now,
            ),
            Decision::Sync(SyncReason::FailedBefore),
        ),
        (
            "overdue by time only after a restart → deferred within the spread",
            facts(&overdue(), &none, now),
            Decision::Defer(Deferral::Start { interval: hour }),
        ),
        (
            "deferred, not yet due → keeps waiting",
            facts(&overdue(), &deferred(later), now),
            Decision::Defer(Deferral::Until(later)),
        ),
        (
            "deferred and due → sync",
            facts(&overdue(), &deferred(earlier), now),
            Decision::Sync(SyncReason::Due),
        ),
        (
            "overdue after a restart, Secret invalid → sync at once",
            Facts {
                secret_valid: false,
                ..facts(&overdue(), &none, now)
            },
            Decision::Sync(SyncReason::Due),
        ),
        (
            "overdue after a restart, Ready unknown → sync at once",
            facts(
                &es(None, "1h", Some((V, "2026-12-02T09:00:00Z")), None),
                &none,
                now,
            ),
            Decision::Sync(SyncReason::Due),
        ),
        // policies
        (
            "CreatedOnce, synced → never again",
            Facts {
                current_version: "2-def",
                ..facts(
                    &es(
                        Some(RefreshPolicy::CreatedOnce),
                        "1h",
                        Some((V, "2026-01-01T00:00:00Z")),
                        Some("True"),
                    ),
                    &none,
                    now,
                )
            },
            up,
        ),
        (
            "CreatedOnce, never synced → sync",
            facts(
                &es(Some(RefreshPolicy::CreatedOnce), "1h", None, None),
                &none,
                now,
            ),
            Decision::Sync(SyncReason::Due),
        ),
        (
            "OnChange, unchanged for long → up to date",
            facts(
                &es(
                    Some(RefreshPolicy::OnChange),
                    "1h",
                    Some((V, "2026-01-01T00:00:00Z")),
                    Some("True"),
                ),
                &none,
                now,
            ),
            up,
        ),
        (
            "OnChange, spec changed → sync",
            Facts {
                current_version: "2-def",
                ..facts(
                    &es(
                        Some(RefreshPolicy::OnChange),
                        "1h",
                        Some((V, "2026-01-01T00:00:00Z")),
                        Some("True"),
                    ),
                    &none,
                    now,
                )
            },
            Decision::Sync(SyncReason::Due),
        ),
        (
            "OnChange is never deferred: spec changed after a restart → sync",
            Facts {
                current_version: "2-def",
                ..facts(
                    &es(
                        Some(RefreshPolicy::OnChange),
                        "1h",
                        Some((V, "2026-01-01T00:00:00Z")),
                        Some("True"),
                    ),
                    &none,
                    now,
                )
            },
            Decision::Sync(SyncReason::Due),
        ),
        (
            "Periodic is the default",
            facts(
                &es(
                    Some(RefreshPolicy::Periodic),
                    "1h",
                    Some((V, "2026-12-02T09:00:00Z")),
                    Some("True"),
                ),
                &none,
                now,
            ),
            Decision::Defer(Deferral::Start { interval: hour }),
        ),
        (
            "interval 0, synced → never again, not even after a spec change",
            Facts {
                current_version: "2-def",
                ..facts(
                    &es(None, "0s", Some((V, "2026-01-01T00:00:00Z")), Some("True")),
                    &none,
                    now,
                )
            },
            up,
        ),
        (
            "interval 0, never synced → sync",
            facts(&es(None, "0s", None, None), &none, now),
            Decision::Sync(SyncReason::Due),
        ),
        // repair
        (
            "not due, Secret invalid → repaired",
            Facts {
                secret_valid: false,
                ..facts(&fresh(), s, now)
            },
            Decision::Sync(SyncReason::InvalidSecret),
        ),
        (
            "not due, Secret invalid, windows closed → repaired anyway",
            Facts {
                secret_valid: false,
                window_blocked: true,
                ..facts(&blocked, s, now)
            },
            Decision::Sync(SyncReason::InvalidSecret),
        ),
    ];
}

#[test]
fn window_blocked_only_for_periodic_refreshes() {
    let mut p = overdue();
    sync_windows_closed_at_noon(&mut p);
    assert!(decide::window_blocked(&p, noon()));
    assert!(!decide::window_blocked(&p, t("2026-12-02T22:30:00Z")));
    for policy in [RefreshPolicy::CreatedOnce, RefreshPolicy::OnChange] {
        p.spec.refresh_policy = Some(policy);
        assert!(!decide::window_blocked(&p, noon()), "{policy:?}");
    }
    assert!(!decide::window_blocked(&overdue(), noon()), "no windows");
}

const NO_JITTER: Timing = Timing {
    jitter_fraction: 0.0,
    restart_spread: Duration::from_secs(300),
};

#[test]
fn next_requeue_table() {
    let seed = schedule::seed_of("ns", "x");
    let min = Duration::from_secs(60);
    let checked_now = Some(noon());
    type Case = (
        &'static str,
        ExternalSecret,
        Option<Timestamp>,
        bool,
        Option<Duration>,
    );
    let cases: Vec<Case> = vec![
        (
            "after a sync: one interval",
            overdue(),
            checked_now,
            false,
            Some(Duration::from_secs(3600)),
        ),
        (
            "fresh: the rest of the interval",
            fresh(),
            None,
            true,
            Some(Duration::from_secs(3600)),
        ),
        (
            "overdue, no restart spread: at once",
            overdue(),
            None,
            false,
            Some(Duration::ZERO),
        ),
        (
            "CreatedOnce: no timer",
            es(Some(RefreshPolicy::CreatedOnce), "1h", None, None),
            checked_now,
            false,
            None,
        ),
        (
            "OnChange: no timer",
            es(Some(RefreshPolicy::OnChange), "1h", None, None),
            checked_now,
            false,
            None,
        ),
        (
            "interval 0: no timer",
            es(None, "0s", None, None),
            checked_now,
            false,
            None,
        ),
    ];
    for (what, e, last, restart, want) in cases {
        assert_eq!(
            schedule::next_requeue(&e, noon(), last, restart, NO_JITTER, seed),
            want,
            "{what}"
        );
    }
    // Overdue and first seen (no sync in this reconcile): spread over min(interval, spread).
    let d = schedule::next_requeue(&overdue(), noon(), None, true, NO_JITTER, seed).unwrap();
    assert!(d < Duration::from_secs(300), "{d:?}");
    let short = es(None, "1m", Some((V, "2026-12-02T09:00:00Z")), Some("True"));
    let d = schedule::next_requeue(&short, noon(), None, true, NO_JITTER, seed).unwrap();
    assert!(d < min, "{d:?}");
    // Jitter adds at most its fraction of the interval, the same for the same seed.
    let jittered = Timing {
        jitter_fraction: 0.1,
        ..NO_JITTER
    };
    let a = schedule::next_requeue(&overdue(), noon(), checked_now, false, jittered, seed);
    let b = schedule::next_requeue(&overdue(), noon(), checked_now, false, jittered, seed);
    assert_eq!(a, b);
    let a = a.unwrap();
    assert!(
        a >= Duration::from_secs(3600) && a < Duration::from_secs(3960),
        "{a:?}"
    );
}

#[test]
fn restart_spread_and_deferral_wait() {
    let now = Instant::now();
    let spread = Duration::from_secs(300);
    let seeds: Vec<u64> = (0..50)
        .map(|i| schedule::seed_of("ns", &format!("es-{i}")))
        .collect();
    let at: Vec<Instant> = seeds
        .iter()
        .map(|s| schedule::restart_deferral(now, Duration::from_secs(3600), spread, *s))
        .collect();
    assert!(at.iter().all(|t| *t >= now && *t < now + spread));
    assert!(
        at.iter().any(|t| *t != at[0]),
        "objects are spread, not all at one instant"
    );
    // The window is the interval when that is shorter.
    let short = schedule::restart_deferral(now, Duration::from_secs(10), spread, seeds[0]);
    assert!(short < now + Duration::from_secs(10));
    // Deterministic per object.
    assert_eq!(
        schedule::restart_deferral(now, Duration::from_secs(3600), spread, seeds[3]),
        at[3]
    );
    assert_eq!(schedule::until(now, now), schedule::MIN_REQUEUE);
    assert_eq!(
        schedule::until(now + Duration::from_secs(5), now),
        Duration::from_secs(5)
    );
    assert_eq!(
        schedule::seed_of("ns", "x"),
        schedule::seed_of("ns", "x"),
        "stable"
    );
    assert_ne!(schedule::seed_of("ns", "xy"), schedule::seed_of("nsx", "y"));
}

#[test]
fn backoff_table() {
    let max = Duration::from_secs(300);
    let within = |d: Duration, lo: f64, hi: f64| {
        d >= Duration::from_secs_f64(lo) && d <= Duration::from_secs_f64(hi)
    };
    for (failures, waiting, interval, lo, hi) in [
        (1, false, None, 0.8, 1.2),
        (2, false, None, 1.6, 2.4),
        (4, false, None, 6.4, 9.6),
        (30, false, None, 240.0, 360.0),
        (30, true, None, 24.0, 36.0),
        (30, false, Some(Duration::from_secs(10)), 8.0, 12.0),
        // refreshInterval 0 does not cap
        (30, false, Some(Duration::ZERO), 240.0, 360.0),
    ] {
        let d = schedule::backoff(failures, waiting, max, interval, 7);
        assert!(
            within(d, lo, hi),
            "{failures} failures, waiting {waiting}, interval {interval:?}: {d:?}"
        );
    }
    assert_eq!(
        schedule::backoff(1, false, Duration::ZERO, None, 7),
        schedule::MIN_BACKOFF
    );
}

/// Whole reconciles against a mock apiserver.
mod in_process {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use eso_api::ExternalSecret;
    use eso_api::well_known::FINALIZER_EXTERNAL_SECRET;
    use k8s_openapi::api::core::v1::Secret;
    use kube::Client;
    use kube::client::Body;
    use kube::core::error_boundary::DeserializeGuard;
    use kube::runtime::controller::Action;
    use kube::runtime::watcher::Event;
    use serde_json::{Value, json};

    use crate::hub::{FailureClass, FetchFailure, ProviderHub, StoreContext, Validation};
    use crate::{Config, Context, Error, TestWriters};

    /// One request the apiserver saw.
    #[derive(Clone, Debug)]
    struct Call {
        method: String,
        path: String,
        query: String,
        body: Value,
    }

    impl Call {
        fn line(&self) -> String {
            format!("{} {}", self.method, self.path)
        }
    }

    type Seen = Arc<Mutex<Vec<Call>>>;

    fn not_found() -> (u16, Value) {
        (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }

    /// A client whose apiserver answers with `respond` and records every request.
    fn mock_client(respond: impl Fn(&Call) -> (u16, Value) + Send + 'static) -> (Client, Seen) {
        let (svc, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, answer) = respond(&call);
                log.lock().unwrap().push(call);
                send.send_response(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        (Client::new(svc, "default"), seen)
    }

    /// Echo an object back as the apiserver would store it.
    fn stored(mut body: Value) -> Value {
        body["metadata"]["resourceVersion"] = json!("7");
        if body["metadata"]["uid"].is_null() {
            body["metadata"]["uid"] = json!("uid-obj");
        }
        if body["metadata"]["name"].is_null() {
            body["metadata"]["name"] = json!("ev-1");
        }
        body
    }

    fn store() -> DeserializeGuard<eso_api::SecretStore> {
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": {"name": "fake", "namespace": "default", "uid": "uid-store", "generation": 1},
            "spec": {"provider": {"fake": {"data": [{"key": "db-pass", "value": "s3cret"}]}}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap()))
    }

    fn external_secret(status: Value) -> ExternalSecret {
        serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db", "namespace": "default", "uid": "uid-es",
                         "generation": 1, "resourceVersion": "3"},
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRef": {"name": "fake", "kind": "SecretStore"},
                "target": {"name": "db-secret"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db-pass"}}],
            },
            "status": status,
        }))
        .unwrap()
    }

    fn listed(w: &mut TestWriters) {
        macro_rules! list {
            ($($w:expr),*) => {$(
                $w.apply_watcher_event(&Event::Init);
                $w.apply_watcher_event(&Event::InitDone);
            )*};
        }
        list!(
            w.secrets,
            w.stores,
            w.cluster_stores,
            w.namespaces,
            w.external_secrets
        );
    }

    /// A context over the mock apiserver, caches listed, the fake store and `es` cached.
    fn context(
        hub: Option<Arc<dyn ProviderHub>>,
        es: &ExternalSecret,
        respond: impl Fn(&Call) -> (u16, Value) + Send + 'static,
    ) -> (Arc<Context>, TestWriters, Seen) {
        let (client, seen) = mock_client(respond);
        let hub = hub.unwrap_or_else(|| {
            Arc::new(
                crate::kube_access::RegistryHub::new(
                    client.clone(),
                    eso_provider::CacheConfig::default(),
                )
                .with_fake(),
            )
        });
        let config = Config {
            jitter_fraction: 0.0,
            ..Config::default()
        };
        let (ctx, mut w) = Context::for_tests_with_client(config, hub, client);
        listed(&mut w);
        w.stores.apply_watcher_event(&Event::Apply(store()));
        w.external_secrets
            .apply_watcher_event(&Event::Apply(super::super::CachedExternalSecret::of(es)));
        (ctx, w, seen)
    }

    async fn reconcile(es: &ExternalSecret, ctx: &Arc<Context>) -> Result<Action, Error> {
        super::super::reconcile(
            Arc::new(super::super::CachedExternalSecret::of(es)),
            ctx.clone(),
        )
        .await
    }

    fn calls(seen: &Seen) -> Vec<Call> {
        seen.lock().unwrap().clone()
    }

    const SECRET: &str = "/api/v1/namespaces/default/secrets/db-secret";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
    const ES: &str = "/apis/external-secrets.io/v1/namespaces/default/externalsecrets/db";

    /// First sync: the uncached target is looked up (never overwritten blindly), applied,
    /// announced, and the status applied. A reconcile right after (woken by that very Secret,
    /// the cached status still the old one) makes no request at all.
    #[tokio::test]
    async fn first_sync_applies_the_secret_and_the_status_then_a_no_op_makes_no_request() {
        let es = external_secret(json!({}));
        let es_json = serde_json::to_value(&es).unwrap();
        let (ctx, w, seen) = context(None, &es, move |c| {
            match (c.method.as_str(), c.path.as_str()) {
                ("GET", SECRET) => not_found(),
                ("PATCH", SECRET) | ("POST", EVENTS) => (200, stored(c.body.clone())),
                ("PATCH", p) if p == format!("{ES}/status") => {
                    let mut o = es_json.clone();
                    o["status"] = c.body["status"].clone();
                    (200, o)
                }
                _ => not_found(),
            }
        });
        let action = reconcile(&es, &ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(3600)));
        let c = calls(&seen);
        let lines: Vec<String> = c.iter().map(Call::line).collect();
        assert_eq!(
            lines,
            [
                format!("GET {SECRET}"),
                format!("PATCH {SECRET}"),
                format!("POST {EVENTS}"),
                format!("PATCH {ES}/status"),
            ]
        );
        // The Secret: server-side apply by this ExternalSecret's field manager, owned by it.
        let apply = &c[1];
        assert!(apply.query.contains("fieldManager="), "{}", apply.query);
        assert!(apply.query.contains("force=true"), "{}", apply.query);
        assert_eq!(apply.body["data"]["password"], json!("czNjcmV0"));
        assert_eq!(
            apply.body["metadata"]["labels"]["reconcile.external-secrets.io/managed"],
            json!("true")
        );
        assert_eq!(
            apply.body["metadata"]["ownerReferences"][0]["uid"],
            json!("uid-es")
        );
        assert_eq!(c[2].body["reason"], json!("Created"));
        assert_eq!(c[2].body["type"], json!("Normal"));
        // The status: Ready=True, the synced version, the binding, a refresh time.
        let status = &c[3].body["status"];
        assert_eq!(status["conditions"][0]["type"], json!("Ready"));
        assert_eq!(status["conditions"][0]["status"], json!("True"));
        assert_eq!(status["conditions"][0]["reason"], json!("SecretSynced"));
        assert_eq!(status["binding"]["name"], json!("db-secret"));
        assert!(status["syncedResourceVersion"].is_string());
        assert!(status["refreshTime"].is_string());
        assert!(c[3].query.contains("fieldManager=external-secrets"));

        // The Secret reaches the cache as the watch would put it there.
        let secret: Secret = serde_json::from_value(stored(apply.body.clone())).unwrap();
        w.secrets
            .apply_watcher_event(&Event::Apply(crate::secrets::WatchedSecret::of(&secret)));
        seen.lock().unwrap().clear();
        let action = reconcile(&es, &ctx).await.unwrap();
        assert_eq!(
            calls(&seen).iter().map(Call::line).collect::<Vec<_>>(),
            Vec::<String>::new(),
            "a no-op refresh makes no apiserver request"
        );
        assert_ne!(action, Action::await_change());
    }

    /// An object synced before this process started, its Secret valid and its refresh not
    /// due: nothing is read, nothing written.
    #[tokio::test]
    async fn an_up_to_date_object_after_a_restart_makes_no_request() {
        let version = eso_mapping::synced_resource_version(1, None, None);
        let refreshed = k8s_openapi::jiff::Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(60))
            .unwrap();
        let es = external_secret(json!({
            "syncedResourceVersion": version,
            "refreshTime": refreshed.to_string(),
            "binding": {"name": "db-secret"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}],
        }));
        let (ctx, w, seen) = context(None, &es, |_| (500, json!({})));
        w.secrets
            .apply_watcher_event(&Event::Apply(crate::secrets::WatchedSecret::of(
                &valid_secret(),
            )));
        let action = reconcile(&es, &ctx).await.unwrap();
        assert!(calls(&seen).is_empty(), "{:?}", calls(&seen));
        // Back at the end of the interval.
        assert_ne!(action, Action::await_change());
        assert_eq!(
            ctx.metrics.get(
                "externalsecret_status_condition",
                &[
                    ("namespace", "default"),
                    ("name", "db"),
                    ("condition", "Ready"),
                    ("status", "True")
                ]
            ),
            1.0
        );
    }

    /// The target as this operator writes it (labelled, hashed, owned).
    fn valid_secret() -> Secret {
        let mut data = std::collections::BTreeMap::new();
        data.insert("password".to_string(), b"s3cret".to_vec());
        let hash = eso_mapping::data_hash(&data);
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "db-secret", "namespace": "default", "uid": "uid-secret",
                "labels": {"reconcile.external-secrets.io/managed": "true"},
                "annotations": {"reconcile.external-secrets.io/data-hash": hash},
                "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                     "name": "db", "uid": "uid-es", "controller": true}],
            },
            "data": {"password": "czNjcmV0"},
        }))
        .unwrap()
    }

    struct FailingHub;
    #[async_trait::async_trait]
    impl ProviderHub for FailingHub {
        async fn fetch(
            &self,
            _: &StoreContext,
            _: &str,
            _: &[eso_mapping::Request],
            _: Option<Duration>,
        ) -> Result<eso_mapping::Fetched, FetchFailure> {
            Err(FetchFailure::new(
                FailureClass::Unavailable,
                "the provider is down",
            ))
        }
        async fn validate(&self, _: &StoreContext) -> Result<Validation, FetchFailure> {
            Ok(Validation::Unknown(String::new()))
        }
    }

    /// A provider failure: Ready=False in the status, a Warning Event naming the failing step,
    /// and the error handed to the backoff; the Secret is not touched.
    #[tokio::test]
    async fn a_provider_failure_reports_ready_false_and_a_warning() {
        let es = external_secret(json!({}));
        let es_json = serde_json::to_value(&es).unwrap();
        let (ctx, _w, seen) = context(Some(Arc::new(FailingHub)), &es, move |c| {
            match (c.method.as_str(), c.path.as_str()) {
                ("POST", EVENTS) => (200, stored(c.body.clone())),
                ("PATCH", p) if p == format!("{ES}/status") => {
                    let mut o = es_json.clone();
                    o["status"] = c.body["status"].clone();
                    (200, o)
                }
                _ => not_found(),
            }
        });
        let err = reconcile(&es, &ctx).await.unwrap_err();
        assert!(matches!(err, Error::Provider(_)), "{err:?}");
        let c = calls(&seen);
        assert_eq!(
            c.iter().map(Call::line).collect::<Vec<_>>(),
            [format!("PATCH {ES}/status"), format!("POST {EVENTS}")]
        );
        let ready = &c[0].body["status"]["conditions"][0];
        assert_eq!(ready["status"], json!("False"));
        assert_eq!(ready["reason"], json!("SecretSyncedError"));
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("the provider is down"),
            "{ready}"
        );
        assert_eq!(c[1].body["type"], json!("Warning"));
        assert_eq!(c[1].body["reason"], json!("UpdateFailed"));
        assert_eq!(c[1].body["action"], json!("Fetch"));
        // The next wake-up retries (the failure is remembered in memory).
        let state = ctx.es_state(&kube::runtime::reflector::ObjectRef::new("db").within("default"));
        assert!(state.failed);
    }

    /// Deletion of an object carrying ESO's finalizer under deletionPolicy Delete: its own
    /// Secret is deleted, then the finalizer removed.
    #[tokio::test]
    async fn deletion_with_the_finalizer_cleans_up() {
        let mut es = external_secret(json!({}));
        es.metadata.finalizers = Some(vec![FINALIZER_EXTERNAL_SECRET.to_string()]);
        es.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        es.spec.target.deletion_policy = eso_api::DeletionPolicy::Delete;
        let es_json = serde_json::to_value(&es).unwrap();
        let (ctx, w, seen) = context(None, &es, move |c| {
            match (c.method.as_str(), c.path.as_str()) {
                ("DELETE", SECRET) => (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                ("PATCH", ES) => (200, es_json.clone()),
                _ => not_found(),
            }
        });
        w.secrets
            .apply_watcher_event(&Event::Apply(crate::secrets::WatchedSecret::of(
                &valid_secret(),
            )));
        let action = reconcile(&es, &ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let c = calls(&seen);
        assert_eq!(
            c.iter().map(Call::line).collect::<Vec<_>>(),
            [format!("DELETE {SECRET}"), format!("PATCH {ES}")]
        );
        assert_eq!(c[1].body["metadata"]["finalizers"], json!([]));
        assert_eq!(c[1].body["metadata"]["resourceVersion"], json!("3"));
    }

    /// Deletion without the finalizer (this operator never adds it): nothing to do, no request.
    #[tokio::test]
    async fn deletion_without_the_finalizer_makes_no_request() {
        let mut es = external_secret(json!({}));
        es.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let (ctx, _w, seen) = context(None, &es, |_| not_found());
        assert_eq!(reconcile(&es, &ctx).await.unwrap(), Action::await_change());
        assert!(calls(&seen).is_empty());
    }
}
