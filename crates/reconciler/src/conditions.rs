//! ESO's condition reasons and messages, and condition bookkeeping.

use eso_api::{Condition, ConditionStatus, well_known::CONDITION_READY};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Reason: the Secret is in sync.
pub const REASON_SYNCED: &str = "SecretSynced";
/// Reason: the last sync failed.
pub const REASON_SYNCED_ERROR: &str = "SecretSyncedError";
/// Reason: the Secret was deleted (deletionPolicy Delete).
pub const REASON_DELETED: &str = "SecretDeleted";
/// Reason: the Secret is missing and will not be created (creationPolicy Merge).
pub const REASON_MISSING: &str = "SecretMissing";

/// Message: synced.
pub const MSG_SYNCED: &str = "secret synced";
/// Message: empty data, deletionPolicy Retain.
pub const MSG_RETAINED: &str = "secret retained due to DeletionPolicy=Retain";
/// Message: deleted, deletionPolicy Delete.
pub const MSG_DELETED: &str = "secret deleted due to DeletionPolicy=Delete";
/// Message: Merge with a missing target.
pub const MSG_MISSING: &str = "secret will not be created due to CreationPolicy=Merge";
/// Message prefix: provider failure.
pub const MSG_PROVIDER: &str = "could not get secret data from provider";
/// Message prefix: delete failed / Delete without Owner.
pub const MSG_DELETE_FAILED: &str = "could not delete secret";
/// Orphan cleanup (a renamed target's old Secret) failed.
pub const MSG_ORPHAN_CLEANUP: &str = "could not delete orphaned secrets";
/// Message prefix: write failed.
pub const MSG_UPDATE_FAILED: &str = "could not update secret";
/// Message: immutable.
pub const MSG_IMMUTABLE: &str = "could not update secret, target is immutable";
/// Message: cannot own.
pub const MSG_OWNERSHIP: &str = "failed to take ownership of target secret";
/// Message: owned by another ExternalSecret.
pub const MSG_OWNED_BY_OTHER: &str = "target is owned by another ExternalSecret";

/// Store reason: valid.
pub const STORE_REASON_VALID: &str = "Valid";
/// Store reason: invalid provider configuration.
pub const STORE_REASON_INVALID_PROVIDER: &str = "InvalidProviderConfig";
/// Store reason: invalid store configuration (e.g. unsupported provider).
pub const STORE_REASON_INVALID_STORE: &str = "InvalidStoreConfiguration";
/// Store reason: validation could not be determined.
pub const STORE_REASON_VALIDATION_UNKNOWN: &str = "ValidationUnknown";

/// A Ready condition. ESO's message is kept as the prefix; a sanitized detail (never a secret
/// value) may follow after `": "`, which ESO only puts in Events.
pub fn ready(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: CONDITION_READY.to_string(),
        status,
        reason: Some(reason.to_string()),
        message: Some(message.into()),
        last_transition_time: None,
    }
}

/// Merge `new` into `existing` conditions: `lastTransitionTime` moves only when the status changes.
pub fn set_condition(existing: &[Condition], mut new: Condition, now: Timestamp) -> Vec<Condition> {
    let previous = existing.iter().find(|c| c.type_ == new.type_);
    new.last_transition_time = match previous {
        Some(p) if p.status == new.status => p.last_transition_time.clone().or(Some(Time(now))),
        _ => Some(Time(now)),
    };
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| c.type_ != new.type_)
        .cloned()
        .collect();
    out.push(new);
    out
}

/// The Ready condition, if any.
pub fn get_ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == CONDITION_READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let c = set_condition(
            &[],
            ready(ConditionStatus::True, REASON_SYNCED, MSG_SYNCED),
            t0,
        );
        let c2 = set_condition(
            &c,
            ready(ConditionStatus::True, REASON_SYNCED, MSG_SYNCED),
            t1,
        );
        assert_eq!(c2[0].last_transition_time, Some(Time(t0)));
        let c3 = set_condition(
            &c2,
            ready(ConditionStatus::False, REASON_SYNCED_ERROR, MSG_PROVIDER),
            t1,
        );
        assert_eq!(c3[0].last_transition_time, Some(Time(t1)));
        assert_eq!(c3.len(), 1);
    }
}
