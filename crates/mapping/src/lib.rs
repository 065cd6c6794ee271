//! Pure mapping engine: remote secret values + an ExternalSecret spec → Kubernetes Secret data.
//!
//! No I/O, no async, no kube client; deterministic. The reconciler calls [`plan`] to learn which
//! remote reads are needed, has a provider execute them into [`Fetched`], and calls [`map`].
//! Semantics follow External Secrets Operator (data/dataFrom order, gjson properties, decoding,
//! key conversion, rewrite, templates v2), and the ESO hashes ([`data_hash`],
//! [`synced_resource_version`]) so ESO-managed Secrets are taken over in place.
//!
//! ```
//! use eso_mapping::{plan, map, Fetched, MappingInput, RemoteSecret, Request, TemplateSources};
//! let spec: eso_api::ExternalSecretSpec = serde_json::from_value(serde_json::json!({
//!     "secretStoreRef": {"name": "aws", "kind": "ClusterSecretStore"},
//!     "target": {"name": "db"},
//!     "data": [{"secretKey": "password", "remoteRef": {"key": "prod/db", "property": "password"}}]
//! })).unwrap();
//! let mut fetched = Fetched::default();
//! for r in plan(&spec).unwrap() {
//!     if let Request::Get { store, remote } = r {
//!         fetched.gets.insert((store, remote), Some(RemoteSecret::string(r#"{"password":"pw"}"#)));
//!     }
//! }
//! let sources = TemplateSources::default();
//! let input = MappingInput { namespace: "ns", name: "es", spec: &spec, labels: None,
//!     annotations: None, fetched: &fetched, template_sources: &sources };
//! assert_eq!(map(&input).unwrap().data["password"], b"pw");
//! ```
#![warn(missing_docs)]

mod crypto;
mod engine;
mod error;
mod hash;
pub mod property;
mod rewrite;
pub mod template;
pub mod transform;

pub use engine::{
    LAST_APPLIED, Mapped, MappingInput, MissingSecret, TemplateSources, generator_entries, map,
    plan,
};
pub use error::MappingError;
/// The request and answer types, defined in `eso-remote` (so providers need not compile this
/// engine) and re-exported here.
pub use eso_remote as remote;
pub use eso_remote::{
    DEFAULT_VERSION_STAGE, Fetched, FindQuery, GeneratedData, RemoteRef, RemoteSecret, Request,
    StoreRef, VersionSelector,
};
pub use hash::{
    FIELD_MANAGER_PREFIX, MAX_SECRET_SIZE, base64_encode, check_size, created_by_label, data_hash,
    field_manager, secret_size, synced_resource_version,
};
