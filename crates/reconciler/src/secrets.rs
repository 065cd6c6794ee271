//! The watched target Secrets: label-selected (`reconcile.external-secrets.io/managed=true`,
//! never every Secret in the cluster) and trimmed before they are cached. Values are dropped;
//! the cache keeps metadata, the data *keys*, and the hash of the data as observed, so drift is
//! detected without holding any secret value in memory.

use std::collections::{BTreeMap, BTreeSet};

use eso_api::well_known::{ANNOTATION_DATA_HASH, FIELD_MANAGER_PREFIX};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

/// Internal annotation on cached (never written) Secrets: the data hash computed from the data
/// as observed by the watch.
pub const OBSERVED_HASH: &str = "eso.internal/observed-data-hash";

/// Trim a watched Secret for the cache.
pub fn trim(secret: &mut Secret) {
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default();
    let hash = eso_mapping::data_hash(&data);
    if let Some(d) = secret.data.as_mut() {
        for v in d.values_mut() {
            *v = ByteString(Vec::new());
        }
    }
    secret.string_data = None;
    // What each ExternalSecret's field manager owns, condensed to a digest: enough to see that
    // a key, label or annotation was dropped from the ExternalSecret without keeping the lists.
    let managers: BTreeSet<String> = secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|e| e.manager.clone())
        .filter(|m| m.starts_with(FIELD_MANAGER_PREFIX))
        .collect();
    let digests: Vec<(String, String)> = managers
        .iter()
        .map(|m| {
            (
                format!("{OWNED_DIGEST_PREFIX}{m}"),
                Owned::of(secret, m).digest(),
            )
        })
        .collect();
    secret.metadata.managed_fields = None;
    let annotations = secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(OBSERVED_HASH.to_string(), hash);
    annotations.extend(digests);
}

/// Prefix of the internal annotations [`trim`] leaves on cached Secrets: one per ESO field
/// manager found in `managedFields`, whose value is [`Owned::digest`] of what that manager owns.
pub const OWNED_DIGEST_PREFIX: &str = "eso.internal/owned.";

/// The data keys, labels, annotations and finalizers one field manager owns on a Secret, read
/// from `metadata.managedFields` (every operation: ESO writes with Update, this operator with
/// server-side apply under the same manager name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    /// Owned `data` keys.
    pub data: BTreeSet<String>,
    /// Owned label keys.
    pub labels: BTreeSet<String>,
    /// Owned annotation keys.
    pub annotations: BTreeSet<String>,
    /// Owned finalizers (server-side apply entries only).
    pub finalizers: BTreeSet<String>,
}

impl Owned {
    /// What `manager` owns on `secret`, from its `managedFields`.
    pub fn of(secret: &Secret, manager: &str) -> Self {
        Self::select(secret, |m| m == manager)
    }

    /// What every other manager owns on `secret` (fields owned by two managers stay when one
    /// of them lets go).
    pub fn of_others(secret: &Secret, manager: &str) -> Self {
        Self::select(secret, |m| m != manager)
    }

    fn select(secret: &Secret, pick: impl Fn(&str) -> bool) -> Self {
        let mut out = Owned::default();
        for entry in secret.metadata.managed_fields.iter().flatten() {
            if !entry.manager.as_deref().is_some_and(&pick) {
                continue;
            }
            let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
                continue;
            };
            let apply = entry.operation.as_deref() == Some("Apply");
            collect_keys(fields.get("f:data"), &mut out.data);
            let meta = fields.get("f:metadata");
            collect_keys(meta.and_then(|m| m.get("f:labels")), &mut out.labels);
            collect_keys(
                meta.and_then(|m| m.get("f:annotations")),
                &mut out.annotations,
            );
            if apply
                && let Some(serde_json::Value::Object(f)) = meta.and_then(|m| m.get("f:finalizers"))
            {
                for k in f.keys() {
                    if let Some(v) = k.strip_prefix("v:")
                        && let Ok(name) = serde_json::from_str::<String>(v)
                    {
                        out.finalizers.insert(name);
                    }
                }
            }
        }
        out
    }

    /// A short digest of the four sets (names only, never values).
    pub fn digest(&self) -> String {
        // FNV-1a over a framed encoding: stable across runs and processes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        for (tag, set) in [
            (b'd', &self.data),
            (b'l', &self.labels),
            (b'a', &self.annotations),
            (b'f', &self.finalizers),
        ] {
            for k in set {
                eat(tag);
                k.bytes().for_each(&mut eat);
                eat(0);
            }
        }
        format!("{h:016x}")
    }
}

fn collect_keys(fields: Option<&serde_json::Value>, into: &mut BTreeSet<String>) {
    if let Some(serde_json::Value::Object(m)) = fields {
        into.extend(
            m.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(String::from),
        );
    }
}

/// The digest of what `manager` owns on `secret`: from the annotation [`trim`] leaves on cached
/// Secrets, or computed from the `managedFields` of a Secret read directly.
pub fn owned_digest(secret: &Secret, manager: &str) -> String {
    if observed_hash(secret).is_some() {
        return secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{OWNED_DIGEST_PREFIX}{manager}")))
            .cloned()
            .unwrap_or_else(|| Owned::default().digest());
    }
    Owned::of(secret, manager).digest()
}

/// The hash of the data as observed (set by [`trim`]).
pub fn observed_hash(secret: &Secret) -> Option<&str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(OBSERVED_HASH)
        .map(String::as_str)
}

/// The hash of the Secret's data: from the annotation [`trim`] leaves on cached Secrets, or
/// computed from the data of a Secret read directly.
pub fn current_hash(secret: &Secret) -> Option<String> {
    if let Some(h) = observed_hash(secret) {
        return Some(h.to_string());
    }
    let data: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .as_ref()?
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    Some(eso_mapping::data_hash(&data))
}

/// ESO's `isSecretValid` (except the Orphan shortcut, applied by the caller): the Secret exists,
/// carries the managed label, and its data-hash annotation matches its data.
pub fn is_valid(secret: Option<&Secret>) -> bool {
    let Some(secret) = secret else { return false };
    let managed = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(eso_api::well_known::LABEL_MANAGED))
        .is_some_and(|v| v == "true");
    let annotated = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_DATA_HASH));
    managed && annotated.is_some() && annotated.map(String::as_str) == observed_hash(secret)
}

/// The data keys of a (trimmed) Secret.
pub fn data_keys(secret: &Secret) -> Vec<String> {
    secret
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_secrets_keep_keys_and_hash_but_no_values() {
        let mut s = Secret {
            data: Some(BTreeMap::from([(
                "a".to_string(),
                ByteString(b"hi".to_vec()),
            )])),
            ..Secret::default()
        };
        trim(&mut s);
        assert_eq!(data_keys(&s), vec!["a".to_string()]);
        assert!(s.data.as_ref().unwrap()["a"].0.is_empty());
        let expected = eso_mapping::data_hash(&BTreeMap::from([("a".to_string(), b"hi".to_vec())]));
        assert_eq!(observed_hash(&s), Some(expected.as_str()));
        assert!(!is_valid(Some(&s)), "no managed label, no data-hash");
        s.metadata.labels = Some(BTreeMap::from([(
            "reconcile.external-secrets.io/managed".into(),
            "true".into(),
        )]));
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION_DATA_HASH.into(), expected.clone());
        assert!(is_valid(Some(&s)));
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION_DATA_HASH.into(), "other".into());
        assert!(!is_valid(Some(&s)));
    }
}
