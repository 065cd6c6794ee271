//! Remote change detection: see an edit in AWS within about a minute, whatever the
//! ExternalSecret's `refreshInterval`, for one cheap call per store.
//!
//! ESO only notices a remote edit when an ExternalSecret's `refreshInterval` elapses (the
//! user's guide, with `refreshInterval: 1h`, expects "a little more than one minute"). Every
//! `change_poll_interval`, this task asks each store in use when its remote secrets last changed
//! (AWS: ListSecrets, 100 secrets per call, no secret value read) and refreshes only the
//! ExternalSecrets that reference a secret changed after their last check. A store whose provider
//! cannot tell, or whose credentials may not list, is skipped (and retried less often); those
//! ExternalSecrets keep their ordinary refresh schedule.
//!
//! One listing per provider client scope and poll, not per namespace: a ClusterSecretStore whose
//! credentials do not depend on the ExternalSecret's namespace ([`ProviderHub::client_scope`]) is
//! listed once for all the namespaces that use it, and the answer fanned out to each of their
//! ExternalSecrets (the namespace conditions still apply per namespace). A store with referent
//! authentication is one scope per namespace. At most [`MAX_CONCURRENT_POLLS`] listings run at
//! once.
//!
//! [`ProviderHub::client_scope`]: crate::ProviderHub::client_scope

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use eso_api::{ExternalSecret, RefreshPolicy};
use eso_mapping::{Request, StoreRef};
use futures::StreamExt;
use futures::channel::mpsc;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{debug, info};

use crate::Context;
use crate::external_secret::CachedExternalSecret;
use crate::hub::{FailureClass, StoreContext};

/// Skip a store this long after it answered AccessDenied/Unsupported for listing.
const BACKOFF: Duration = Duration::from_secs(600);

/// What to look for: the remote keys of each ExternalSecret, per store and credential namespace.
type Watch = BTreeMap<(StoreRef, String), Vec<User>>;

fn collect(es_store: &Store<CachedExternalSecret>, poll: Duration) -> Watch {
    let mut watch: Watch = BTreeMap::new();
    for cached in es_store.state() {
        // Only periodic ExternalSecrets whose own interval is longer than the poll benefit;
        // the others are not rebuilt at all (this runs over every object each round).
        let Some((policy, interval)) = cached.refresh_settings() else {
            continue;
        };
        if matches!(
            policy,
            Some(RefreshPolicy::CreatedOnce) | Some(RefreshPolicy::OnChange)
        ) {
            continue;
        }
        match interval {
            Some(i) if !i.is_zero() && i > poll => {}
            _ => continue,
        }
        let Ok(es) = cached.external_secret() else {
            continue;
        };
        let ns = es.namespace().unwrap_or_default();
        let Ok(requests) = eso_mapping::plan(&es.spec) else {
            continue;
        };
        let mut by_store: BTreeMap<StoreRef, (Vec<String>, bool)> = BTreeMap::new();
        for r in requests {
            match r {
                Request::Get { store, remote } => {
                    by_store.entry(store).or_default().0.push(remote.key)
                }
                Request::Find { store, .. } => by_store.entry(store).or_default().1 = true,
            }
        }
        let obj = ObjectRef::from_obj(cached.as_ref());
        for (store, (keys, any)) in by_store {
            watch
                .entry((store, ns.clone()))
                .or_default()
                .push((obj.clone(), keys, any));
        }
    }
    watch
}

/// The ExternalSecret's last check: in-memory check time or `status.refreshTime`.
fn anchor(es: &ExternalSecret, ctx: &Context) -> Option<SystemTime> {
    let ns = es.namespace().unwrap_or_default();
    let last = ctx
        .es_state(&ObjectRef::new(&es.name_any()).within(&ns))
        .last_check;
    let refreshed = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0);
    let t = match (last, refreshed) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b)?,
    };
    Some(SystemTime::from(t))
}

/// When each remote secret's current change was first seen: `(LastChangedDate, first seen)`.
type Seen = HashMap<String, (SystemTime, SystemTime)>;

/// Record the changes of one listing made at `observed`, keeping the first sighting of a change.
fn remember(seen: &mut Seen, changes: &BTreeMap<String, SystemTime>, observed: SystemTime) {
    seen.retain(|k, _| changes.contains_key(k));
    for (k, t) in changes {
        let e = seen.entry(k.clone()).or_insert((*t, observed));
        if e.0 != *t {
            *e = (*t, observed);
        }
    }
}

/// The time after which a provider read reflects the changes of `keys` (`changed_at` for a `find`):
/// one second after the change (LastChangedDate has one-second resolution) or, if sooner, the
/// first listing that showed it (a read started after that listing cannot predate the change).
/// ExternalSecrets sharing a changed secret then share one read, and a refresh repeated while the
/// sync cannot complete (e.g. the kube-apiserver is down) reuses it instead of reading again.
fn fresh_after(keys: &[String], seen: &Seen, changed_at: Option<SystemTime>) -> Option<SystemTime> {
    keys.iter()
        .filter_map(|k| seen.get(k))
        .map(|(t, first)| (*t + Duration::from_secs(1)).min(*first))
        .chain(changed_at.map(|t| t + Duration::from_secs(1)))
        .max()
}

/// At most this many provider scopes are polled at once: a store with referent authentication
/// is one scope per namespace, and hundreds of namespaces must not mean hundreds of concurrent
/// listings (AWS allows ListSecrets at 100/s per account and Region, shared with everything else).
pub const MAX_CONCURRENT_POLLS: usize = 4;

/// One provider client scope: the store (UID, generation) and the credential scope its client
/// uses. ExternalSecrets whose requests go through the same scope see the same remote secrets,
/// so one listing serves them all, whatever namespace they live in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ScopeKey {
    uid: String,
    generation: i64,
    scope: String,
}

/// An ExternalSecret watching a store: its remote keys, and whether it has a `find`.
type User = (ObjectRef<CachedExternalSecret>, Vec<String>, bool);

/// The ExternalSecrets served by one scope, and the store as resolved for one of them.
struct Group {
    store: StoreContext,
    /// The namespace the listing is made for (any namespace of the scope: they share a client).
    ns: String,
    users: Vec<User>,
}

/// Fold the per-(store, namespace) watch list into one group per provider scope. `resolve`
/// applies ESO's store rules for a namespace (a namespace a ClusterSecretStore does not admit
/// gets nothing); `scope` is the provider's credential scope for it.
fn group(
    watch: Watch,
    mut resolve: impl FnMut(&StoreRef, &str, &[User]) -> Option<StoreContext>,
    scope: impl Fn(&StoreContext, &str) -> String,
) -> BTreeMap<ScopeKey, Group> {
    let mut groups: BTreeMap<ScopeKey, Group> = BTreeMap::new();
    for ((store_ref, ns), users) in watch {
        let Some(store) = resolve(&store_ref, &ns, &users) else {
            continue;
        };
        let key = ScopeKey {
            uid: store.uid.clone(),
            generation: store.generation,
            scope: scope(&store, &ns),
        };
        groups
            .entry(key)
            .or_insert_with(|| Group {
                store,
                ns,
                users: Vec::new(),
            })
            .users
            .extend(users);
    }
    groups
}

/// What the poll remembers between rounds.
#[derive(Default)]
struct PollState {
    /// Scopes that cannot list (AccessDenied, unsupported), skipped until then.
    skip_until: HashMap<ScopeKey, Instant>,
    /// First sightings of each scope's changes.
    seen: HashMap<ScopeKey, Seen>,
}

/// Run until the channel closes: every `poll`, find changed remote secrets and send the
/// ExternalSecrets that use them to the controller.
pub(crate) async fn watch(
    ctx: Arc<Context>,
    es_store: Store<CachedExternalSecret>,
    poll: Duration,
    trigger: mpsc::UnboundedSender<ObjectRef<CachedExternalSecret>>,
) {
    let mut state = PollState::default();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if trigger.is_closed() || !poll_once(&ctx, &es_store, poll, &mut state, &trigger).await {
            return;
        }
    }
}

/// One round: one listing per provider scope in use (at most [`MAX_CONCURRENT_POLLS`] at a
/// time), fanned out to every ExternalSecret of the scope. `false` when the controller is gone.
async fn poll_once(
    ctx: &Arc<Context>,
    es_store: &Store<CachedExternalSecret>,
    poll: Duration,
    state: &mut PollState,
    trigger: &mpsc::UnboundedSender<ObjectRef<CachedExternalSecret>>,
) -> bool {
    let watch = collect(es_store, poll);
    let groups = group(
        watch,
        |store_ref, ns, users| {
            let first = users.first().and_then(|(o, _, _)| es_store.get(o))?;
            let first_es = first.external_secret().ok()?;
            crate::stores::resolve_for(&first_es, ns, store_ref, ctx).ok()
        },
        |store, ns| ctx.hub.client_scope(store, ns),
    );
    let in_use: HashSet<ScopeKey> = groups.keys().cloned().collect();
    let now = Instant::now();
    let due: Vec<(ScopeKey, Group)> = groups
        .into_iter()
        .filter(|(k, _)| state.skip_until.get(k).is_none_or(|t| now >= *t))
        .collect();
    let mut listings = futures::stream::iter(due.into_iter().map(|(key, g)| {
        let ctx = ctx.clone();
        async move {
            ctx.metrics.inc("eso_remote_change_listings_total", vec![]);
            let r = ctx.hub.remote_changes(&g.store, &g.ns).await;
            (key, g, r)
        }
    }))
    .buffer_unordered(MAX_CONCURRENT_POLLS);
    let mut alive = true;
    while let Some((key, g, result)) = listings.next().await {
        let store_name = &g.store.name;
        let scope = &key.scope;
        let changes = match result {
            Ok(Some(c)) => c,
            Ok(None) => {
                state.skip_until.insert(key, Instant::now() + BACKOFF);
                continue;
            }
            Err(e) => {
                if matches!(
                    e.class,
                    FailureClass::AccessDenied
                        | FailureClass::Unsupported
                        | FailureClass::InvalidConfig
                ) {
                    info!(store = %store_name, %scope, error = %e,
                        "remote change detection unavailable for this store (needs secretsmanager:ListSecrets); \
                         ExternalSecrets using it refresh on their refreshInterval only");
                    state.skip_until.insert(key, Instant::now() + BACKOFF);
                } else {
                    debug!(store = %store_name, %scope, error = %e, "remote change poll failed");
                }
                continue;
            }
        };
        let store_seen = state.seen.entry(key.clone()).or_default();
        remember(store_seen, &changes, SystemTime::now());
        let newest = changes.values().max().copied();
        for (obj, keys, any) in g.users {
            let Some(cached) = es_store.get(&obj) else {
                continue;
            };
            let Ok(es) = cached.external_secret() else {
                continue;
            };
            let Some(since) = anchor(&es, ctx) else {
                continue;
            };
            // LastChangedDate has one-second resolution: allow for it (at most one extra refresh).
            let changed_after = |t: &SystemTime| *t + Duration::from_secs(1) > since;
            let hit = keys
                .iter()
                .any(|k| changes.get(k).is_some_and(changed_after))
                || (any && newest.as_ref().is_some_and(changed_after));
            debug!(name = %obj.name, ?since, changed = ?keys.iter().map(|k| changes.get(k)).collect::<Vec<_>>(), hit, "remote change check");
            if hit {
                debug!(ns = %obj.namespace.as_deref().unwrap_or(""), name = %obj.name, "remote secret changed: refreshing");
                let fresh = fresh_after(&keys, store_seen, if any { newest } else { None })
                    .unwrap_or(since);
                ctx.force_refresh(
                    &ObjectRef::new(&obj.name).within(obj.namespace.as_deref().unwrap_or("")),
                    fresh,
                );
                if trigger.unbounded_send(obj).is_err() {
                    alive = false;
                }
            }
        }
    }
    let now = Instant::now();
    state
        .skip_until
        .retain(|k, t| in_use.contains(k) || now < *t);
    state.seen.retain(|k, _| in_use.contains(k));
    ctx.metrics.inc("eso_remote_change_polls_total", vec![]);
    alive
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{FetchFailure, ProviderHub, Validation};
    use kube::core::error_boundary::DeserializeGuard;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers every listing with the same changes; counts listings and their concurrency.
    /// Stores named `referent-*` have one credential scope per namespace, others one in all.
    struct CountingHub {
        changes: BTreeMap<String, SystemTime>,
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ProviderHub for CountingHub {
        async fn fetch(
            &self,
            _: &StoreContext,
            _: &str,
            _: &[Request],
            _: Option<Duration>,
        ) -> Result<eso_mapping::Fetched, FetchFailure> {
            Err(FetchFailure::new(
                FailureClass::Unavailable,
                "not in this test",
            ))
        }
        async fn validate(&self, _: &StoreContext) -> Result<Validation, FetchFailure> {
            Ok(Validation::Unknown(String::new()))
        }
        async fn remote_changes(
            &self,
            _: &StoreContext,
            _: &str,
        ) -> Result<Option<BTreeMap<String, SystemTime>>, FetchFailure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(Some(self.changes.clone()))
        }
        fn client_scope(&self, store: &StoreContext, es_namespace: &str) -> String {
            if store.name.starts_with("referent") {
                es_namespace.to_string()
            } else {
                String::new()
            }
        }
    }

    fn cluster_store(name: &str) -> DeserializeGuard<eso_api::ClusterSecretStore> {
        let css: eso_api::ClusterSecretStore = serde_json::from_value(serde_json::json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ClusterSecretStore",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
            "spec": {"provider": {"fake": {"data": []}}},
            // Validated (the flood gate uses only stores whose Ready condition is True).
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        DeserializeGuard(Ok(css))
    }

    fn external_secret(ns: &str, name: &str, store: &str, key: &str) -> CachedExternalSecret {
        let es: ExternalSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                "data": [{"secretKey": "v", "remoteRef": {"key": key}}],
            },
            "status": {"refreshTime": "2020-01-01T00:00:00Z"},
        }))
        .unwrap();
        CachedExternalSecret::of(&es)
    }

    /// The figure: one ClusterSecretStore with fixed credentials used from 500
    /// namespaces over 2,000 remote secrets. Polling once per (store, namespace) made 500
    /// listings per poll (x20 ListSecrets pages); one per provider scope makes one, and its
    /// answer still reaches all 2,000 ExternalSecrets. A referent-auth store stays per namespace,
    /// with at most MAX_CONCURRENT_POLLS listings at once.
    #[tokio::test]
    async fn one_listing_per_provider_scope_fanned_out_to_every_namespace() {
        const NAMESPACES: usize = 500;
        const SECRETS: usize = 2000;
        let changed = SystemTime::now();
        let hub = Arc::new(CountingHub {
            changes: (0..SECRETS).map(|i| (format!("s{i}"), changed)).collect(),
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        for (store, per_ns) in [("shared", SECRETS / NAMESPACES), ("referent-auth", 1)] {
            hub.calls.store(0, Ordering::SeqCst);
            hub.max_in_flight.store(0, Ordering::SeqCst);
            let (ctx, mut w) = crate::Context::for_tests(crate::Config::default(), hub.clone());
            w.cluster_stores
                .apply_watcher_event(&kube::runtime::watcher::Event::Apply(cluster_store(store)));
            for n in 0..NAMESPACES {
                for j in 0..per_ns {
                    let i = n * per_ns + j;
                    w.external_secrets
                        .apply_watcher_event(&kube::runtime::watcher::Event::Apply(
                            external_secret(
                                &format!("ns-{n}"),
                                &format!("es-{j}"),
                                store,
                                &format!("s{i}"),
                            ),
                        ));
                }
            }
            let (tx, mut rx) = mpsc::unbounded();
            let mut state = PollState::default();
            let alive = poll_once(
                &ctx,
                &ctx.external_secrets,
                Duration::from_secs(60),
                &mut state,
                &tx,
            )
            .await;
            assert!(alive);
            drop(tx);
            let mut triggered = HashSet::new();
            while let Some(o) = rx.next().await {
                triggered.insert(o);
            }
            let calls = hub.calls.load(Ordering::SeqCst);
            let max = hub.max_in_flight.load(Ordering::SeqCst);
            if store == "shared" {
                assert_eq!(
                    calls, 1,
                    "one listing for one shared scope, not one per namespace"
                );
                assert_eq!(
                    triggered.len(),
                    SECRETS,
                    "every ExternalSecret sees the change"
                );
            } else {
                assert_eq!(calls, NAMESPACES, "referent auth: one scope per namespace");
                assert_eq!(triggered.len(), NAMESPACES);
                assert!(max <= MAX_CONCURRENT_POLLS && max > 1, "concurrency {max}");
            }
        }
    }

    fn at(s: u64, ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)
    }

    #[test]
    fn a_change_is_fresh_from_its_first_sighting_or_one_second_after_it() {
        let mut seen = Seen::new();
        // Changed at 100.x (listed as 100), first listed at 100.4: reads from 100.4 on see it.
        let listing = BTreeMap::from([("a".to_string(), at(100, 0)), ("b".to_string(), at(50, 0))]);
        remember(&mut seen, &listing, at(100, 400));
        let keys = vec!["a".to_string()];
        assert_eq!(fresh_after(&keys, &seen, None), Some(at(100, 400)));
        // A later listing of the same change keeps the first sighting, so a refresh repeated
        // while the sync cannot complete reuses the read made after it.
        remember(&mut seen, &listing, at(102, 400));
        assert_eq!(fresh_after(&keys, &seen, None), Some(at(100, 400)));
        // Seen late (after the one-second window): one second after the change is enough.
        let mut late = Seen::new();
        remember(&mut late, &listing, at(105, 0));
        assert_eq!(fresh_after(&keys, &late, None), Some(at(101, 0)));
        // A new change restarts the clock; keys no longer listed are dropped.
        let listing2 = BTreeMap::from([("a".to_string(), at(103, 0))]);
        remember(&mut seen, &listing2, at(103, 200));
        assert_eq!(fresh_after(&keys, &seen, None), Some(at(103, 200)));
        assert!(!seen.contains_key("b"));
        // Several keys: the newest requirement wins; a find adds one second to its newest change.
        let both = vec!["a".to_string(), "b".to_string()];
        assert_eq!(fresh_after(&both, &seen, None), Some(at(103, 200)));
        assert_eq!(
            fresh_after(&both, &seen, Some(at(104, 0))),
            Some(at(105, 0))
        );
        assert_eq!(fresh_after(&[], &seen, None), None);
    }
}
