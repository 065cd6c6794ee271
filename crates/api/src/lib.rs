//! # eso-api
//!
//! The custom resource types of an External Secrets Operator (ESO) compatible operator:
//! [`ExternalSecret`], [`SecretStore`], [`ClusterSecretStore`] and [`ClusterExternalSecret`] in
//! group `external-secrets.io`,
//! served at `v1` (storage) and `v1beta1` (identity conversion; the v1 schema is a superset).
//!
//! Field names, types and defaults follow ESO v2.9 so existing YAML applies unchanged.
//! Validation lives in the schema (enums, patterns, CEL rules) so the apiserver rejects bad
//! objects itself. [`crds()`] returns the complete CustomResourceDefinitions (both versions);
//! `cargo xtask crdgen` writes them to `deploy/crds/`.
//!
//! This crate has no runtime: no client, no async, no AWS.
#![warn(missing_docs)]

pub mod cluster_external_secret;
pub mod cluster_push_secret;
pub mod common;
pub mod crd;
pub mod external_secret;
pub mod generators;
pub mod push_secret;
pub mod secret_store;
pub mod well_known;

pub use cluster_external_secret::*;
pub use cluster_push_secret::*;
pub use common::*;
pub use crd::{admission_policies, crds};
pub use external_secret::*;
pub use push_secret::*;
pub use secret_store::*;

/// The API group.
pub const GROUP: &str = "external-secrets.io";
/// The storage version.
pub const VERSION: &str = "v1";
/// The older version, still served.
pub const VERSION_V1BETA1: &str = "v1beta1";

mod duration;
pub use duration::parse_go_duration;

impl ExternalSecretSpec {
    /// The refresh interval; `None` when the string is not a valid duration (the schema prevents
    /// that on a real cluster). An absent field means ESO's default of one hour.
    pub fn refresh_interval_duration(&self) -> Option<std::time::Duration> {
        match &self.refresh_interval {
            None => Some(std::time::Duration::from_secs(3600)),
            Some(s) => parse_go_duration(s),
        }
    }
}

impl SecretStoreSpec {
    /// The store's re-validation interval: seconds (int) or a Go duration; `None` when unset or zero.
    pub fn refresh_interval_duration(&self) -> Option<std::time::Duration> {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let d = match self.refresh_interval.as_ref()? {
            IntOrString::Int(n) => std::time::Duration::from_secs(u64::try_from(*n).ok()?),
            IntOrString::String(s) => parse_go_duration(s)?,
        };
        (!d.is_zero()).then_some(d)
    }
}
