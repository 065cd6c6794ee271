//! The ExternalSecret controller: `reconcile` + `error_policy`.
//!
//! A reconcile is a pipeline; each stage is a module and hands plain data to the next, and
//! only this module calls them:
//!
//! 1. `decide` — what is due and why (pure: object, in-memory state, cache facts, clock →
//!    `decide::Decision`);
//! 2. `fetch` — provider values, generator output, template sources;
//! 3. `map` — the Secret the mapping engine makes of them;
//! 4. `publish` — ownership, server-side apply, orphan and emptied-Secret deletion, the
//!    finalizer cleanup;
//! 5. `report` — status (written only on change), Events, metrics;
//! 6. `schedule` — when to come back (pure).
//!
//! `watch` holds the watch mappers (which ExternalSecrets a store or namespace change wakes).

use std::sync::Arc;
use std::time::Instant;

use eso_api::{CreationPolicy, ExternalSecret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use crate::conditions::*;
use crate::hub::{FailureClass, FetchFailure};
use crate::ownership::Decision as Ownership;
use crate::{Context, Error, secrets, stores};

pub mod cached;
pub(crate) mod decide;
pub(crate) mod fetch;
pub(crate) mod map;
pub(crate) mod publish;
pub(crate) mod report;
pub(crate) mod schedule;
pub(crate) mod timer;
pub(crate) mod watch;

#[cfg(test)]
mod tests;

pub use cached::{CachedExternalSecret, InvalidExternalSecret};
use decide::{Decision, Deferral};
pub use schedule::WAITING_BACKOFF_CAP;
pub(crate) use watch::{cluster_store_users_in_namespace, stores_to_es};
pub use watch::{referenced_stores, target_name};

/// Field manager for status writes.
pub const STATUS_MANAGER: &str = "external-secrets";

/// Why a sync did not complete; each maps to ESO's Ready condition and an Event.
#[derive(Debug)]
pub(crate) enum SyncFailure {
    /// Provider or store problem (reason SecretSyncedError, message "could not get secret data from provider").
    Provider(FetchFailure),
    /// The mapping engine rejected the spec or the remote data.
    Mapping(String),
    /// A target write failed.
    Write {
        message: &'static str,
        detail: String,
        permanent: bool,
    },
    /// Kubernetes API failure.
    Kube(kube::Error),
    /// Something the ExternalSecret depends on is not there yet (a templateFrom ConfigMap or
    /// Secret): retried with a short bounded backoff, not left until the next refresh.
    Waiting(String),
}

impl SyncFailure {
    pub(crate) fn condition_message(&self) -> (String, String) {
        match self {
            SyncFailure::Provider(f) => {
                (format!("{MSG_PROVIDER}: {}", f.message), f.message.clone())
            }
            SyncFailure::Mapping(m) | SyncFailure::Waiting(m) => {
                (format!("{MSG_PROVIDER}: {m}"), m.clone())
            }
            SyncFailure::Write {
                message, detail, ..
            } => {
                if detail.is_empty() {
                    ((*message).to_string(), (*message).to_string())
                } else {
                    (format!("{message}: {detail}"), detail.clone())
                }
            }
            SyncFailure::Kube(e) => (format!("{MSG_UPDATE_FAILED}: {e}"), e.to_string()),
        }
    }

    /// Permanent failures wait for a change (or the next refresh) instead of backing off.
    pub(crate) fn permanent(&self) -> bool {
        match self {
            SyncFailure::Provider(f) => matches!(
                f.class,
                FailureClass::InvalidConfig | FailureClass::Unsupported
            ),
            SyncFailure::Mapping(_) => true,
            SyncFailure::Write { permanent, .. } => *permanent,
            SyncFailure::Kube(_) | SyncFailure::Waiting(_) => false,
        }
    }
}

/// What a successful sync did.
#[derive(Debug)]
pub(crate) struct Synced {
    /// Ready condition reason.
    pub reason: &'static str,
    /// Ready condition message.
    pub message: &'static str,
    /// The Secret was written (created or updated).
    pub wrote_secret: bool,
    /// The Secret now bound (`status.binding`).
    pub binding: Option<String>,
}

/// A Normal Event a stage asks to be recorded.
#[derive(Debug)]
pub(crate) struct Note {
    /// Event reason.
    pub reason: &'static str,
    /// Event note.
    pub message: String,
}

/// In-memory per-object state (never persisted).
#[derive(Clone, Debug, Default)]
pub(crate) struct EsState {
    pub last_check: Option<Timestamp>,
    pub failures: u32,
    /// `syncedResourceVersion` of the last successful sync in this process. The cached object
    /// can lag behind our own status write (a reconcile triggered by the Secret we just created
    /// sees the old status); this keeps such a reconcile from reading the provider again.
    /// Kept as [`version_key`] of it: 8 bytes instead of a 50-character string per object.
    pub synced_version: Option<u64>,
    /// The last sync attempt in this process failed: the next reconcile (a wake-up by a store,
    /// a namespace or a retry) tries again instead of trusting the schedule.
    pub failed: bool,
    /// First seen after a (re)start while overdue only by time: its refresh is scheduled for
    /// this instant within the restart spread instead of at once. Reconciles woken before then
    /// (a store or Secret event) keep waiting; the one at or after it reads the provider.
    pub deferred_until: Option<Instant>,
}

/// The key [`EsState::synced_version`] keeps of a `syncedResourceVersion`.
pub(crate) fn version_key(version: &str) -> u64 {
    crate::compact::hash(&[version])
}

/// The watchdog key of an ExternalSecret.
pub(crate) fn es_dog_key(namespace: &str, name: &str) -> u64 {
    crate::Watchdog::key("ExternalSecret", namespace, name)
}

/// Reconcile one ExternalSecret.
pub(crate) async fn reconcile(
    cached: Arc<CachedExternalSecret>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let es = match cached.external_secret() {
        Ok(es) => es,
        Err(invalid) => {
            // One malformed object never stops the watch: report it and wait for a change.
            warn!(ns = %cached.namespace(), name = %cached.name(), error = %invalid,
                "ignoring an ExternalSecret that does not deserialize");
            return Ok(Action::await_change());
        }
    };
    let ns = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let started = Instant::now();
    let _busy = ctx.watchdog.start(es_dog_key(&ns, &name));
    report::reconcile_started(&ctx, &ns, &name);
    let result = reconcile_inner(&es, cached.synced_version(), &ns, &name, &ctx).await;
    report::reconcile_finished(&ctx, &ns, &name, started.elapsed(), result.is_ok());
    // Deleted while this reconcile ran: the delete event's cleanup may have run before the
    // series above were set again.
    if ctx
        .external_secrets
        .get(&ObjectRef::new(&name).within(&ns))
        .is_none()
    {
        ctx.forget_es(&ns, &name);
    }
    result
}

/// The scheduling settings of the context.
fn timing(ctx: &Context) -> schedule::Timing {
    schedule::Timing {
        jitter_fraction: ctx.config.jitter_fraction,
        restart_spread: ctx.config.restart_spread,
    }
}

/// Turn a [`schedule`] answer into an action; the watchdog expects the object by then.
fn requeue(ctx: &Context, ns: &str, name: &str, after: Option<std::time::Duration>) -> Action {
    match after {
        Some(d) => come_back(ctx, ns, name, d.max(schedule::MIN_REQUEUE)),
        None => Action::await_change(),
    }
}

/// Reconcile the object again `after` from now: through the refresh timer when the
/// controller runs one ([`timer`]: the action is then `await_change`), else as kube's
/// `Action::requeue`. The watchdog expects the object by then either way.
fn come_back(ctx: &Context, ns: &str, name: &str, after: std::time::Duration) -> Action {
    match &ctx.timer {
        Some(timer) => {
            timer.schedule(ns, name, after);
            Action::await_change()
        }
        None => {
            ctx.watchdog.expect_by(es_dog_key(ns, name), after);
            Action::requeue(after)
        }
    }
}

/// decide → fetch → map → publish → report → schedule.
async fn reconcile_inner(
    es: &ExternalSecret,
    current_version: &str,
    ns: &str,
    name: &str,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    // Decisions read the Secret and store caches: never decide on a cache that has not listed
    // yet (after a restart every Secret would look missing and be rewritten). Not awaited: a
    // reconcile holding a slot must not stall the streams that fill those caches.
    if !ctx.caches_ready() {
        return Ok(Action::requeue(schedule::CACHES_NOT_READY));
    }
    let key = ObjectRef::<ExternalSecret>::new(name).within(ns);
    let seed = schedule::seed_of(ns, name);

    // 1. decide
    let deleting = es.metadata.deletion_timestamp.is_some();
    let class_matches = deleting || stores::class_matches(es, ctx);
    let target = target_name(es);
    let existing = ctx.secret(ns, &target);
    let state = ctx.es_state(&key);
    let now_ts = Timestamp::now();
    let window_blocked = decide::window_blocked(es, now_ts);
    // A remote change seen by the change watcher forces a read newer than the change. The mark
    // is kept while the sync windows hold the refresh back (and untouched on deletion or a
    // class mismatch, which never sync).
    let forced = if deleting || !class_matches || window_blocked {
        None
    } else {
        ctx.take_forced(&key)
    };
    let facts = decide::Facts {
        es,
        deleting,
        class_matches,
        state: &state,
        current_version,
        secret_valid: es.spec.target.creation_policy == CreationPolicy::Orphan
            || existing
                .as_deref()
                .is_some_and(secrets::CachedSecret::is_valid),
        window_blocked,
        forced: forced.is_some(),
        stores_admit: deleting || !class_matches || stores::cluster_stores_admit(es, ns, ctx),
        now: now_ts,
        now_instant: Instant::now(),
    };
    let decision = decide::decide(&facts);
    debug!(%ns, %name, ?decision, valid = facts.secret_valid, "reconcile");
    match decision {
        Decision::Cleanup => return publish::cleanup(es, ns, name, ctx).await,
        Decision::AwaitChange => {
            debug!(%ns, %name, "skipping: a referenced store belongs to another controller class");
            return Ok(Action::await_change());
        }
        Decision::Defer(deferral) => {
            let until = match deferral {
                Deferral::Until(t) => t,
                Deferral::Start { interval } => {
                    let t = schedule::restart_deferral(
                        facts.now_instant,
                        interval,
                        ctx.config.restart_spread,
                        seed,
                    );
                    ctx.update_state(&key, |s| s.deferred_until = Some(t));
                    t
                }
            };
            let d = schedule::until(until, facts.now_instant);
            report::ready_metric(ctx, ns, name, "True");
            debug!(%ns, %name, after = ?d, "overdue after a restart: refresh scheduled within the spread");
            return Ok(come_back(ctx, ns, name, d));
        }
        Decision::UpToDate { ready } => {
            report::ready_metric(ctx, ns, name, ready);
            let after =
                schedule::next_requeue(es, now_ts, state.last_check, true, timing(ctx), seed);
            return Ok(requeue(ctx, ns, name, after));
        }
        Decision::Sync(_) => {}
    }

    // 2.–4. fetch → map → publish
    let outcome = sync(es, ns, name, &target, existing.as_deref(), forced, ctx).await;

    // 5. report, 6. schedule
    let old_status = es.status.clone().unwrap_or_default();
    match outcome {
        Ok(done) => {
            if let Some(status) = report::synced_status(&old_status, &done, current_version, now_ts)
            {
                report::write_status(es, ns, name, &status, ctx).await?;
            }
            report::ready_metric(ctx, ns, name, "True");
            ctx.update_state(&key, |s| {
                s.last_check = Some(now_ts);
                s.failures = 0;
                s.failed = false;
                s.synced_version = Some(version_key(current_version));
            });
            let after = schedule::next_requeue(es, now_ts, Some(now_ts), false, timing(ctx), seed);
            Ok(requeue(ctx, ns, name, after))
        }
        Err(failure) => {
            let (message, detail) = failure.condition_message();
            if let Some(status) = report::failed_status(&old_status, message, now_ts) {
                report::write_status(es, ns, name, &status, ctx).await?;
            }
            report::ready_metric(ctx, ns, name, "False");
            let action = report::failure_action(&failure);
            report::event_action(ctx, es, EventType::Warning, "UpdateFailed", action, &detail)
                .await;
            ctx.update_state(&key, |s| s.failed = true);
            if failure.permanent() {
                ctx.update_state(&key, |s| s.failures = 0);
                // Wait for a spec change, a store change, or the next refresh.
                let after =
                    schedule::next_requeue(es, now_ts, Some(now_ts), false, timing(ctx), seed);
                return Ok(requeue(ctx, ns, name, after));
            }
            Err(match failure {
                SyncFailure::Provider(f) => Error::Provider(f),
                SyncFailure::Kube(e) => Error::Kube {
                    action: "sync",
                    source: e,
                },
                SyncFailure::Waiting(m) => Error::Waiting(m),
                other => Error::Sync(other.condition_message().0),
            })
        }
    }
}

/// Record the Events a stage asked for.
async fn notes(ctx: &Context, es: &ExternalSecret, notes: Vec<Note>) {
    for n in notes {
        report::event(ctx, es, EventType::Normal, n.reason, &n.message).await;
    }
}

/// fetch → map → publish: read everything, map it, write the Secret.
async fn sync(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    target: &str,
    existing: Option<&secrets::CachedSecret>,
    forced: Option<std::time::SystemTime>,
    ctx: &Arc<Context>,
) -> Result<Synced, SyncFailure> {
    let requests = map::plan(es)?;
    let inputs = fetch::fetch(es, ns, &requests, forced, ctx).await?;
    let mapped = map::map(es, ns, name, inputs).await?;
    for missing in &mapped.missing {
        report::event(
            ctx,
            es,
            EventType::Normal,
            "MissingProviderSecret",
            &missing.to_string(),
        )
        .await;
    }

    if mapped.data.is_empty()
        && let Some((done, events)) = publish::emptied(es, ns, name, target, existing, ctx).await?
    {
        notes(ctx, es, events).await;
        return Ok(done);
    }

    let live = publish::read_uncached(es, ns, target, existing, ctx).await?;
    let existing = existing.or(live.as_ref());
    let policy = es.spec.target.creation_policy;
    let decision: Ownership = match publish::ownership(policy, name, target, existing)? {
        Ok(write) => write,
        Err(done) => return Ok(done),
    };
    if policy == CreationPolicy::Owner {
        let (events, result) = publish::delete_orphans(es, ns, name, target, ctx).await;
        notes(ctx, es, events).await;
        result?;
    }
    let wrote =
        publish::write_secret(es, ns, name, target, existing, &mapped, decision, ctx).await?;
    if let Some(verb) = wrote {
        let note = publish::written(ns, name, target, verb);
        notes(ctx, es, vec![note]).await;
    }
    Ok(Synced {
        reason: REASON_SYNCED,
        message: MSG_SYNCED,
        wrote_secret: wrote.is_some(),
        binding: Some(target.to_string()),
    })
}

/// Backoff for transient failures: exponential from 1 s with ±20 % jitter, capped at the
/// refresh interval (so recovery never waits longer than one refresh) and at `max_backoff`.
pub(crate) fn error_policy(
    cached: Arc<CachedExternalSecret>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let Ok(es) = cached.external_secret() else {
        return Action::await_change();
    };
    let ns = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let key = ObjectRef::<ExternalSecret>::new(&name).within(&ns);
    let failures = ctx.update_state(&key, |s| {
        s.failures = s.failures.saturating_add(1);
        s.failures
    });
    let d = schedule::backoff(
        failures,
        matches!(error, Error::Waiting(_)),
        ctx.config.max_backoff,
        es.spec.refresh_interval_duration(),
        schedule::seed_of(&ns, &name),
    );
    warn!(%ns, %name, error = %error, retry_in = ?d, "sync failed");
    come_back(&ctx, &ns, &name, d)
}
