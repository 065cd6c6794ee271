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

/// Run until the channel closes: every `poll`, find changed remote secrets and send the
/// ExternalSecrets that use them to the controller.
pub(crate) async fn watch(
    ctx: Arc<Context>,
    es_store: Store<DeserializeGuard<ExternalSecret>>,
    poll: Duration,
    trigger: mpsc::UnboundedSender<ObjectRef<DeserializeGuard<ExternalSecret>>>,
) {
    let mut skip_until: HashMap<(StoreRef, String), Instant> = HashMap::new();
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
                    let changed_at = keys
                        .iter()
                        .filter_map(|k| changes.get(k))
                        .chain(if any { newest.as_ref() } else { None })
                        .max()
                        .copied()
                        .unwrap_or(since);
                    ctx.force_refresh(
                        &ObjectRef::new(&obj.name).within(obj.namespace.as_deref().unwrap_or("")),
                        changed_at,
                    );
                    if trigger.unbounded_send(obj).is_err() {
                        return;
                    }
                }
            }
        }
        skip_until.retain(|k, t| seen_stores.contains(k) || Instant::now() < *t);
    }
}
