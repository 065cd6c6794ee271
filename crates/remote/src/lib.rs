//! The plain data a provider is asked for and answers with; no I/O.
//!
//! The mapping engine (`eso-mapping`) *describes* the reads an ExternalSecret needs as
//! [`Request`]s; a provider (`eso-provider`) executes them and answers with [`RemoteSecret`]s;
//! the reconciler hands the answers back to the engine in [`Fetched`]. These types live in their
//! own crate so that provider crates depend on them without compiling the mapping and template
//! engine. `eso-provider` and `eso-mapping` both re-export them.
#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};

use eso_api::StoreKind;

/// Version stage read when an entry names no version (AWS Secrets Manager's current version).
pub const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";

/// Which version of a remote secret to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VersionSelector {
    /// No version given: the provider's current version (AWS: stage `AWSCURRENT`).
    #[default]
    Current,
    /// A version stage (`AWSPREVIOUS`, a custom label, ...).
    Stage(String),
    /// A version id, written `uuid/<id>` in the ExternalSecret.
    Id(String),
}

impl VersionSelector {
    /// Parse ESO's `remoteRef.version`: empty → current, `uuid/<id>` → id, anything else → stage.
    pub fn parse(version: Option<&str>) -> Self {
        match version {
            None | Some("") => VersionSelector::Current,
            Some(v) => match v.strip_prefix("uuid/") {
                Some(id) => VersionSelector::Id(id.to_string()),
                None => VersionSelector::Stage(v.to_string()),
            },
        }
    }
}

/// One remote secret to read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteRef {
    /// The remote key (name or ARN) as written in the ExternalSecret; providers apply their prefix.
    pub key: String,
    /// The version.
    pub version: VersionSelector,
    /// `metadataPolicy: Fetch`: read the secret's tags instead of its value.
    pub metadata: bool,
}

/// A `dataFrom[].find` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindQuery {
    /// Regular expression (RE2 syntax) matched against full secret names.
    pub name_regexp: Option<String>,
    /// Tags every match carries.
    pub tags: BTreeMap<String, String>,
    /// Name prefix.
    pub path: Option<String>,
}

/// The store that serves a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreRef {
    /// SecretStore or ClusterSecretStore.
    pub kind: StoreKind,
    /// Store name.
    pub name: String,
}

/// A read the engine needs before it can map.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Request {
    /// Read one secret.
    Get {
        /// The store.
        store: StoreRef,
        /// The secret.
        remote: RemoteRef,
    },
    /// Find secrets.
    Find {
        /// The store.
        store: StoreRef,
        /// The query.
        query: FindQuery,
    },
}

/// A remote secret as a provider returned it.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RemoteSecret {
    /// A secret value: a string, bytes, or both (AWS allows both).
    Value {
        /// `SecretString`.
        string: Option<String>,
        /// `SecretBinary`.
        binary: Option<Vec<u8>>,
    },
    /// Tags (answer to a `metadataPolicy: Fetch` request).
    Tags(BTreeMap<String, String>),
    /// Nothing (neither string nor binary).
    #[default]
    Empty,
}

impl RemoteSecret {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        RemoteSecret::Value {
            string: Some(s.into()),
            binary: None,
        }
    }

    /// A binary value.
    pub fn binary(b: impl Into<Vec<u8>>) -> Self {
        RemoteSecret::Value {
            string: None,
            binary: Some(b.into()),
        }
    }
}

/// Never prints values: remote secrets must not reach logs through `{:?}`.
impl std::fmt::Debug for RemoteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteSecret::Value { string, binary } => write!(
                f,
                "RemoteSecret::Value {{ string: {}, binary: {} }}",
                string
                    .as_ref()
                    .map_or("none".to_string(), |s| format!("<{} bytes>", s.len())),
                binary
                    .as_ref()
                    .map_or("none".to_string(), |b| format!("<{} bytes>", b.len())),
            ),
            RemoteSecret::Tags(t) => write!(f, "RemoteSecret::Tags(<{} tags>)", t.len()),
            RemoteSecret::Empty => write!(f, "RemoteSecret::Empty"),
        }
    }
}

/// The answers to a plan. `None` means the provider answered authoritatively that the remote
/// secret does not exist (the only answer that may lead to a deletionPolicy action). Any other
/// provider failure never reaches the engine: the reconciler stops before mapping.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    /// Answers to [`Request::Get`].
    pub gets: HashMap<(StoreRef, RemoteRef), Option<RemoteSecret>>,
    /// Answers to [`Request::Find`]: full secret name → value.
    pub finds: HashMap<(StoreRef, FindQuery), Option<BTreeMap<String, RemoteSecret>>>,
    /// Generator output by `spec.dataFrom` index (entries with `sourceRef.generatorRef`; see
    /// `eso_mapping::generator_entries`).
    pub generated: HashMap<usize, GeneratedData>,
}

/// The output of one generator run: key → value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GeneratedData(pub BTreeMap<String, Vec<u8>>);

/// Never prints values: keys and sizes only.
impl std::fmt::Debug for GeneratedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k.as_str(), format!("<{} bytes>", v.len()))),
            )
            .finish()
    }
}
