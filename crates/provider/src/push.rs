//! The write side of a provider (PushSecret): typed requests and outcomes.
//!
//! A provider that can write implements [`crate::SecretsProvider::push_secret`],
//! [`crate::SecretsProvider::delete_secret`] and [`crate::SecretsProvider::secret_exists`], and
//! reports [`crate::Capabilities::ReadWrite`]. The defaults answer `Unsupported`.
//!
//! Ownership is the provider's job: a remote secret this operator did not create (on AWS: no
//! `managed-by: external-secrets` tag) is never overwritten ([`PushOutcome::NotOwned`]) nor
//! deleted ([`DeleteOutcome::NotOwned`]).

/// A remote secret, or one property of a JSON remote secret, as a PushSecret names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushRemoteRef {
    /// The remote key (the store's prefix is added by the provider).
    pub key: String,
    /// A top-level property of a JSON remote secret, set while keeping the others.
    pub property: Option<String>,
}

/// One value to write.
#[derive(Clone, PartialEq)]
pub struct PushRequest {
    /// Where it goes.
    pub remote: PushRemoteRef,
    /// The bytes to write (never logged: `Debug` prints the length only).
    pub value: Vec<u8>,
    /// Provider-specific settings: the PushSecret entry's `metadata` (ESO's
    /// `kubernetes.external-secrets.io/v1alpha1` `PushSecretMetadata` object), unparsed. A
    /// provider that does not understand a field fails with `InvalidConfig` rather than ignore it.
    pub metadata: Option<serde_json::Value>,
    /// Resolved Kubernetes inputs the metadata refers to (e.g. an AWS resource policy read from a
    /// ConfigMap or Secret), by the name the provider asked for (see
    /// [`PushRequest::RESOURCE_POLICY`]).
    pub resolved: std::collections::BTreeMap<String, String>,
}

impl PushRequest {
    /// The key under which the reconciler puts a resolved `resourcePolicy.policySourceRef`.
    pub const RESOURCE_POLICY: &'static str = "resourcePolicy";
}

impl std::fmt::Debug for PushRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushRequest")
            .field("remote", &self.remote)
            .field("value_bytes", &self.value.len())
            .field("metadata", &self.metadata.is_some())
            .finish()
    }
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote secret did not exist and was created.
    Created,
    /// The remote value (or its metadata) differed and was written.
    Updated,
    /// The remote value and metadata already matched: nothing was written (no new version).
    Unchanged,
    /// The remote secret exists but this operator did not create it: left untouched.
    NotOwned,
}

impl PushOutcome {
    /// A short name for logs and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            PushOutcome::Created => "created",
            PushOutcome::Updated => "updated",
            PushOutcome::Unchanged => "unchanged",
            PushOutcome::NotOwned => "not owned",
        }
    }
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted (the whole remote secret, or the property removed from it).
    Deleted,
    /// Nothing to delete: the remote secret (or property) does not exist.
    NotFound,
    /// The remote secret exists but this operator did not create it: left untouched.
    NotOwned,
}
