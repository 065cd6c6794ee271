//! The one error type providers return, classified so the reconciler knows what to do.

/// How the reconciler treats a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The remote secret does not exist. Authoritative: the only class that may ever lead to a
    /// deletionPolicy action.
    NotFound,
    /// Credentials are missing, invalid, expired or lack permission.
    AccessDenied,
    /// The provider throttled the request.
    Throttled,
    /// The provider is unreachable or failing; transient.
    Unavailable,
    /// The store or request is misconfigured; permanent until the spec changes.
    InvalidConfig,
    /// The store's provider, or a feature it uses, is not supported.
    Unsupported,
}

impl ErrorClass {
    /// A short stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NotFound => "NotFound",
            ErrorClass::AccessDenied => "AccessDenied",
            ErrorClass::Throttled => "Throttled",
            ErrorClass::Unavailable => "Unavailable",
            ErrorClass::InvalidConfig => "InvalidConfig",
            ErrorClass::Unsupported => "Unsupported",
        }
    }

    /// Whether retrying later may succeed without a spec change.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::Throttled | ErrorClass::Unavailable | ErrorClass::AccessDenied
        )
    }
}

/// A provider failure. Messages say what failed and what to do; they never contain a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The remote secret does not exist (or is scheduled for deletion).
    #[error("Secret does not exist: {key}")]
    NotFound {
        /// The remote key.
        key: String,
    },
    /// Access denied or credentials invalid.
    #[error("access denied: {message}")]
    AccessDenied {
        /// Details (which identity, which action) without secret material.
        message: String,
    },
    /// Throttled.
    #[error("throttled by the provider: {message}")]
    Throttled {
        /// Details.
        message: String,
    },
    /// Unreachable or failing.
    #[error("provider unavailable: {message}")]
    Unavailable {
        /// Details.
        message: String,
    },
    /// Misconfiguration.
    #[error("invalid store configuration: {message}")]
    InvalidConfig {
        /// What is wrong and where.
        message: String,
    },
    /// Not supported.
    #[error("unsupported: {message}")]
    Unsupported {
        /// What is not supported.
        message: String,
    },
}

impl ProviderError {
    /// The class.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::NotFound { .. } => ErrorClass::NotFound,
            ProviderError::AccessDenied { .. } => ErrorClass::AccessDenied,
            ProviderError::Throttled { .. } => ErrorClass::Throttled,
            ProviderError::Unavailable { .. } => ErrorClass::Unavailable,
            ProviderError::InvalidConfig { .. } => ErrorClass::InvalidConfig,
            ProviderError::Unsupported { .. } => ErrorClass::Unsupported,
        }
    }

    /// Shorthand constructors.
    pub fn access_denied(m: impl Into<String>) -> Self {
        ProviderError::AccessDenied { message: m.into() }
    }
    /// Shorthand.
    pub fn unavailable(m: impl Into<String>) -> Self {
        ProviderError::Unavailable { message: m.into() }
    }
    /// Shorthand.
    pub fn throttled(m: impl Into<String>) -> Self {
        ProviderError::Throttled { message: m.into() }
    }
    /// Shorthand.
    pub fn invalid_config(m: impl Into<String>) -> Self {
        ProviderError::InvalidConfig { message: m.into() }
    }
    /// Shorthand.
    pub fn unsupported(m: impl Into<String>) -> Self {
        ProviderError::Unsupported { message: m.into() }
    }
    /// Shorthand.
    pub fn not_found(key: impl Into<String>) -> Self {
        ProviderError::NotFound { key: key.into() }
    }
}
