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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use eso_api::{ExternalSecret, RefreshPolicy};
use eso_mapping::{Request, StoreRef};
use futures::channel::mpsc;
use kube::ResourceExt;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{debug, info};

use crate::Context;
use crate::hub::FailureClass;

/// Skip a store this long after it answered AccessDenied/Unsupported for listing.
const BACKOFF: Duration = Duration::from_secs(600);

/// What to look for: the remote keys of each ExternalSecret, per store and credential namespace.
type Watch = BTreeMap<
    (StoreRef, String),
    Vec<(
        ObjectRef<DeserializeGuard<ExternalSecret>>,
        Vec<String>,
        bool,
    )>,
>;

fn collect(es_store: &Store<DeserializeGuard<ExternalSecret>>, poll: Duration) -> Watch {
    let mut watch: Watch = BTreeMap::new();
    for guard in es_store.state() {
        let Ok(es) = &guard.0 else { continue };
        // Only periodic ExternalSecrets whose own interval is longer than the poll benefit.
        if matches!(
            es.spec.refresh_policy,
            Some(RefreshPolicy::CreatedOnce) | Some(RefreshPolicy::OnChange)
        ) {
            continue;
        }
        match es.spec.refresh_interval_duration() {
            Some(i) if !i.is_zero() && i > poll => {}
            _ => continue,
        }
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
        let obj = ObjectRef::from_obj(guard.as_ref());
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

/// Run until the channel closes: every `poll`, find changed remote secrets and send the
/// ExternalSecrets that use them to the controller.
pub(crate) async fn watch(
    ctx: Arc<Context>,
    es_store: Store<DeserializeGuard<ExternalSecret>>,
    poll: Duration,
    trigger: mpsc::UnboundedSender<ObjectRef<DeserializeGuard<ExternalSecret>>>,
) {
    let mut skip_until: HashMap<(StoreRef, String), Instant> = HashMap::new();
    let mut seen: HashMap<(StoreRef, String), Seen> = HashMap::new();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if trigger.is_closed() {
            return;
        }
        let watch = collect(&es_store, poll);
        let mut seen_stores: HashSet<(StoreRef, String)> = HashSet::new();
        for ((store_ref, ns), users) in watch {
            let key = (store_ref.clone(), ns.clone());
            if skip_until.get(&key).is_some_and(|t| Instant::now() < *t) {
                continue;
            }
            seen_stores.insert(key.clone());
            let Some(first) = users.first().and_then(|(o, _, _)| es_store.get(o)) else {
                continue;
            };
            let Ok(first_es) = &first.0 else { continue };
            let Ok(store) = crate::stores::resolve_for(first_es, &ns, &store_ref, &ctx) else {
                continue;
            };
            let changes = match ctx.hub.remote_changes(&store, &ns).await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    skip_until.insert(key, Instant::now() + BACKOFF);
                    continue;
                }
                Err(e) => {
                    if matches!(
                        e.class,
                        FailureClass::AccessDenied
                            | FailureClass::Unsupported
                            | FailureClass::InvalidConfig
                    ) {
                        info!(store = %store_ref.name, %ns, error = %e,
                            "remote change detection unavailable for this store (needs secretsmanager:ListSecrets); \
                             ExternalSecrets using it refresh on their refreshInterval only");
                        skip_until.insert(key, Instant::now() + BACKOFF);
                    } else {
                        debug!(store = %store_ref.name, %ns, error = %e, "remote change poll failed");
                    }
                    continue;
                }
            };
            let store_seen = seen.entry(key.clone()).or_default();
            remember(store_seen, &changes, SystemTime::now());
            let newest = changes.values().max().copied();
            for (obj, keys, any) in users {
                let Some(guard) = es_store.get(&obj) else {
                    continue;
                };
                let Ok(es) = &guard.0 else { continue };
                let Some(since) = anchor(es, &ctx) else {
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
                        return;
                    }
                }
            }
        }
        skip_until.retain(|k, t| seen_stores.contains(k) || Instant::now() < *t);
        seen.retain(|k, _| seen_stores.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
