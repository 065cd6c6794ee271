//! Labels, annotations, finalizers and field managers ESO writes. They are copied exactly so a
//! Secret that ESO manages today is taken over in place.

/// Label on every managed Secret.
pub const LABEL_MANAGED: &str = "reconcile.external-secrets.io/managed";
/// Label on Secrets created with creationPolicy Owner: sha3-224 hex of `"<namespace>/<name>"`.
pub const LABEL_CREATED_BY: &str = "reconcile.external-secrets.io/created-by";
/// Annotation holding the hash of the Secret's data.
pub const ANNOTATION_DATA_HASH: &str = "reconcile.external-secrets.io/data-hash";
/// Force-sync annotation (any change of an ExternalSecret annotation forces a refresh).
pub const ANNOTATION_FORCE_SYNC: &str = "external-secrets.io/force-sync";
/// The ExternalSecret finalizer.
pub const FINALIZER_EXTERNAL_SECRET: &str =
    "externalsecrets.external-secrets.io/externalsecret-cleanup";
/// Prefix of the field manager used for Secret writes (`<prefix>/<es name>`).
pub const FIELD_MANAGER_PREFIX: &str = "externalsecrets.external-secrets.io";
/// Condition type maintained on every resource.
pub const CONDITION_READY: &str = "Ready";
