//! The engine's error type. Messages name the ExternalSecret field, the remote key and the
//! property at fault; they never contain a secret value.

/// Why mapping failed. Every variant is permanent until the spec or the remote data changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// `property` names something the remote value does not have (or the value is not JSON).
    #[error("{field}: key {property} does not exist in secret {key}")]
    PropertyNotFound {
        /// The ExternalSecret field, e.g. `spec.data[0]`.
        field: String,
        /// The remote key.
        key: String,
        /// The property.
        property: String,
    },
    /// A JSONPath property (starting with `$`) is not valid.
    #[error("{field}: invalid JSONPath property {property} for secret {key}: {reason}")]
    InvalidJsonPath {
        /// The ExternalSecret field.
        field: String,
        /// The remote key.
        key: String,
        /// The property.
        property: String,
        /// Parser message.
        reason: String,
    },
    /// `extract`/`find` needs a JSON object and the remote value is not one.
    #[error("{field}: unable to unmarshal secret {key}: the value is not a JSON object")]
    NotAJsonObject {
        /// The ExternalSecret field.
        field: String,
        /// The remote key.
        key: String,
    },
    /// The remote secret has neither a string nor a binary value.
    #[error("{field}: invalid secret received. no secret string nor binary for key: {key}")]
    EmptyRemote {
        /// The ExternalSecret field.
        field: String,
        /// The remote key.
        key: String,
    },
    /// The provider said the remote secret does not exist and deletionPolicy is Retain.
    #[error("error processing {field} (key: {key}), err: Secret does not exist")]
    SecretDoesNotExist {
        /// The ExternalSecret field.
        field: String,
        /// The remote key.
        key: String,
    },
    /// Decoding (`decodingStrategy`) failed.
    #[error(
        "{field}: error decoding key {secret_key} with strategy {strategy}: the value is not valid {strategy}"
    )]
    Decode {
        /// The ExternalSecret field.
        field: String,
        /// The target key.
        secret_key: String,
        /// The strategy.
        strategy: String,
    },
    /// `nullBytePolicy: Fail` and a value contains a NUL byte.
    #[error(
        "{field}: fetched secret value for key {secret_key:?} contains null bytes; set nullBytePolicy: Ignore to allow them"
    )]
    NullByte {
        /// The ExternalSecret field.
        field: String,
        /// The target key.
        secret_key: String,
    },
    /// Two source keys become the same key after conversion.
    #[error("{field}: secret name collision during conversion: {secret_key}")]
    KeyCollision {
        /// The ExternalSecret field.
        field: String,
        /// The colliding key.
        secret_key: String,
    },
    /// A Secret key is not valid in Kubernetes.
    #[error(
        "{field}: invalid secret keys (TIP: use rewrite or conversionStrategy to change keys): {secret_key:?} {reason}"
    )]
    InvalidKey {
        /// The ExternalSecret field.
        field: String,
        /// The key.
        secret_key: String,
        /// Why.
        reason: &'static str,
    },
    /// A rewrite failed.
    #[error("{field}: rewrite failed: {reason}")]
    Rewrite {
        /// The ExternalSecret field.
        field: String,
        /// Why (regexp compile error, template error, merge conflict).
        reason: String,
    },
    /// A template failed to parse or render.
    #[error("{field}: template error: {reason}")]
    Template {
        /// The template field, e.g. `spec.target.template.data[config]`.
        field: String,
        /// Why.
        reason: String,
    },
    /// The Secret would exceed the Kubernetes size limit.
    #[error("the target Secret would be {size} bytes, over the 1 MiB Kubernetes limit")]
    TooLarge {
        /// Total size of keys and values.
        size: usize,
    },
    /// A spec shape the engine does not support (generators, `find` without criteria, ...).
    #[error("{field}: {reason}")]
    Unsupported {
        /// The ExternalSecret field.
        field: String,
        /// What is unsupported.
        reason: String,
    },
    /// The plan's answer for a request is missing (a bug in the caller).
    #[error("{field}: no provider answer for this request")]
    NotFetched {
        /// The ExternalSecret field.
        field: String,
    },
}
