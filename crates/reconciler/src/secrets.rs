//! The watched target Secrets: label-selected (`reconcile.external-secrets.io/managed=true`,
//! never every Secret in the cluster) and trimmed before they are cached. Values are dropped;
//! the cache keeps metadata, the data *keys*, and the hash of the data as observed, so drift is
//! detected without holding any secret value in memory.

use std::collections::BTreeMap;

use eso_api::well_known::ANNOTATION_DATA_HASH;
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
    secret.metadata.managed_fields = None;
    secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(OBSERVED_HASH.to_string(), hash);
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
