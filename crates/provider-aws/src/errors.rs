//! Mapping AWS SDK errors to provider error classes.

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use eso_provider::ProviderError;

/// Error codes that mean "your credentials or permissions are the problem".
const ACCESS_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "DecryptionFailure",
    // Parameter Store: the SecureString's KMS key is unusable for this identity.
    "InvalidKeyId",
];

/// Parameter Store's authoritative "does not exist" answers (GetParameter).
const SSM_NOT_FOUND_CODES: &[&str] = &[
    "ParameterNotFound",
    "ParameterVersionNotFound",
    "ParameterVersionLabelNotFound",
];

const THROTTLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
];

/// Classify an SDK error. `key` is the remote key (for NotFound and messages); `op` the AWS operation.
pub(crate) fn classify<E, R>(err: &SdkError<E, R>, op: &str, key: &str) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("");
            from_code(code, message, op, key)
        }
        SdkError::TimeoutError(_) => {
            ProviderError::unavailable(format!("{op} {key}: request timed out"))
        }
        SdkError::DispatchFailure(d) => {
            if d.is_user() {
                ProviderError::invalid_config(format!(
                    "{op} {key}: could not send the request: {}",
                    chain(err)
                ))
            } else {
                ProviderError::unavailable(format!("{op} {key}: AWS unreachable: {}", chain(err)))
            }
        }
        SdkError::ResponseError(_) => ProviderError::unavailable(format!(
            "{op} {key}: invalid response from AWS: {}",
            chain(err)
        )),
        SdkError::ConstructionFailure(_) => {
            let msg = chain(err);
            if msg.contains("credentials") || msg.contains("Credentials") {
                ProviderError::access_denied(format!("{op} {key}: no usable credentials: {msg}"))
            } else {
                ProviderError::invalid_config(format!("{op} {key}: {msg}"))
            }
        }
        _ => ProviderError::unavailable(format!("{op} {key}: {}", chain(err))),
    }
}

/// Classify by AWS error code.
pub(crate) fn from_code(code: &str, message: &str, op: &str, key: &str) -> ProviderError {
    if code == "ResourceNotFoundException"
        || SSM_NOT_FOUND_CODES.contains(&code)
        || ((code == "InvalidParameterException" || code == "InvalidRequestException")
            && (message.contains("marked for deletion") || message.contains("marked deleted")))
    {
        return ProviderError::not_found(key.to_string());
    }
    let detail = format!("{op} {key}: {code}: {message}");
    // KMS failures while decrypting a SecureString (`KMS.AccessDeniedException`,
    // `KMS.DisabledException`, ...): credentials or key policy, never a missing parameter.
    if ACCESS_CODES.contains(&code) || code.starts_with("KMS.") || code.starts_with("Kms") {
        ProviderError::access_denied(detail)
    } else if THROTTLE_CODES.contains(&code) {
        ProviderError::throttled(detail)
    } else if code == "InternalServiceError"
        || code == "InternalServerError"
        || code == "InternalFailure"
        || code == "ServiceUnavailable"
        || code == "Unknown"
    {
        ProviderError::unavailable(detail)
    } else {
        ProviderError::invalid_config(detail)
    }
}

/// The error and its sources, one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use eso_provider::ErrorClass;

    #[test]
    fn codes() {
        assert_eq!(
            from_code("ResourceNotFoundException", "", "GetSecretValue", "k").class(),
            ErrorClass::NotFound
        );
        assert_eq!(
            from_code("InvalidRequestException", "You can't perform this operation on the secret because it was marked for deletion.", "G", "k").class(),
            ErrorClass::NotFound
        );
        assert_eq!(
            from_code("InvalidRequestException", "other", "G", "k").class(),
            ErrorClass::InvalidConfig
        );
        assert_eq!(
            from_code("AccessDeniedException", "", "G", "k").class(),
            ErrorClass::AccessDenied
        );
        assert_eq!(
            from_code("UnrecognizedClientException", "", "G", "k").class(),
            ErrorClass::AccessDenied
        );
        assert_eq!(
            from_code("ThrottlingException", "", "G", "k").class(),
            ErrorClass::Throttled
        );
        assert_eq!(
            from_code("InternalServiceError", "", "G", "k").class(),
            ErrorClass::Unavailable
        );
    }

    #[test]
    fn parameter_store_codes() {
        for c in [
            "ParameterNotFound",
            "ParameterVersionNotFound",
            "ParameterVersionLabelNotFound",
        ] {
            assert_eq!(
                from_code(c, "", "GetParameter", "/k").class(),
                ErrorClass::NotFound,
                "{c}"
            );
        }
        for c in [
            "InvalidKeyId",
            "KMS.AccessDeniedException",
            "KMS.DisabledException",
            "KMS.KMSInvalidStateException",
            "AccessDeniedException",
        ] {
            assert_eq!(
                from_code(c, "", "GetParameter", "/k").class(),
                ErrorClass::AccessDenied,
                "{c}"
            );
        }
        assert_eq!(
            from_code("ThrottlingException", "", "GetParameters", "/k").class(),
            ErrorClass::Throttled
        );
        assert_eq!(
            from_code("InternalServerError", "", "GetParameter", "/k").class(),
            ErrorClass::Unavailable
        );
        assert_eq!(
            from_code("ValidationException", "", "GetParameter", "/k").class(),
            ErrorClass::InvalidConfig
        );
    }
}
