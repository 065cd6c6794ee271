//! Report: what a reconcile tells the world — the status subresource (written only when it
//! changes), Events, and the per-ExternalSecret metrics.

use std::time::Duration;

use crate::events::Recorded;
use eso_api::well_known::CONDITION_READY;
use eso_api::{Binding, ConditionStatus, ExternalSecret, ExternalSecretStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;

use super::{STATUS_MANAGER, SyncFailure, Synced};
use crate::conditions::*;
use crate::{Context, Error};

/// Count a reconcile (`externalsecret_sync_calls_total`).
pub(crate) fn reconcile_started(ctx: &Context, ns: &str, name: &str) {
    ctx.metrics.inc(
        "externalsecret_sync_calls_total",
        crate::metrics::es_labels(ns, name),
    );
}

/// Record a reconcile's duration, and count it as an error when it failed.
pub(crate) fn reconcile_finished(ctx: &Context, ns: &str, name: &str, took: Duration, ok: bool) {
    ctx.metrics.set(
        "externalsecret_reconcile_duration",
        crate::metrics::es_labels(ns, name),
        took.as_nanos() as f64,
    );
    if !ok {
        ctx.metrics.inc(
            "externalsecret_sync_calls_error",
            crate::metrics::es_labels(ns, name),
        );
    }
}

/// Set the Ready condition metric.
pub(crate) fn ready_metric(ctx: &Context, ns: &str, name: &str, status: &str) {
    ctx.metrics.set_condition(
        "externalsecret_status_condition",
        ns,
        name,
        CONDITION_READY,
        status,
    );
}

/// The status after a successful sync, `Some` when it must be written (something in it
/// changed, the Secret was written, or `refreshTime` was never set).
pub(crate) fn synced_status(
    old_status: &ExternalSecretStatus,
    done: &Synced,
    current_version: &str,
    now_ts: Timestamp,
) -> Option<ExternalSecretStatus> {
    let mut status = old_status.clone();
    status.conditions = set_condition(
        &old_status.conditions,
        ready(ConditionStatus::True, done.reason, done.message),
        now_ts,
    );
    status.synced_resource_version = Some(current_version.to_string());
    if let Some(b) = &done.binding {
        status.binding = Some(Binding { name: b.clone() });
    }
    let changed = status_differs(old_status, &status) || done.wrote_secret;
    if changed || status.refresh_time.is_none() {
        status.refresh_time = Some(Time(now_ts));
        Some(status)
    } else {
        None
    }
}

/// The status after a failed sync (Ready=False), `Some` when it differs from the stored one.
pub(crate) fn failed_status(
    old_status: &ExternalSecretStatus,
    message: String,
    now_ts: Timestamp,
) -> Option<ExternalSecretStatus> {
    let mut status = old_status.clone();
    status.conditions = set_condition(
        &old_status.conditions,
        ready(ConditionStatus::False, REASON_SYNCED_ERROR, message),
        now_ts,
    );
    status_differs(old_status, &status).then_some(status)
}

/// The Event action naming the failing step: the recorder folds repeated events with the same
/// (reason, action) into one series and keeps only the first note, so a store problem followed
/// by a mapping error must not share a key.
pub(crate) fn failure_action(failure: &SyncFailure) -> &'static str {
    match failure {
        SyncFailure::Provider(_) => "Fetch",
        SyncFailure::Mapping(_) | SyncFailure::Waiting(_) => "Map",
        _ => "Write",
    }
}

/// Only compare what matters: conditions (type/status/reason/message), version, binding.
pub(crate) fn status_differs(a: &ExternalSecretStatus, b: &ExternalSecretStatus) -> bool {
    let key = |s: &ExternalSecretStatus| {
        let mut c: Vec<_> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status,
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect();
        c.sort_by(|x, y| x.0.cmp(&y.0));
        (c, s.synced_resource_version.clone(), s.binding.clone())
    };
    key(a) != key(b)
}

pub(crate) async fn write_status(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    status: &ExternalSecretStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "status": status,
    });
    let _ = es;
    ctx.metrics.inc(
        "eso_status_writes_total",
        vec![("kind", "ExternalSecret".to_string())],
    );
    api.patch_status(
        name,
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube {
        action: "write ExternalSecret status",
        source,
    })?;
    Ok(())
}

/// Record an Event (action `Sync`).
pub(crate) async fn event(
    ctx: &Context,
    es: &ExternalSecret,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    event_action(ctx, es, type_, reason, "Sync", note).await;
}

/// Record an Event with an explicit action.
pub(crate) async fn event_action(
    ctx: &Context,
    es: &ExternalSecret,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.to_string(),
        secondary: None,
    };
    if ctx.recorder.record(ev, es.object_ref(&())).await == Recorded::Dropped {
        ctx.metrics.inc("eso_events_dropped_total", vec![]);
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
