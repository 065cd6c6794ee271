//! Decoding, key conversion, key validation and null-byte checks (ESO's order and rules).

use base64::Engine as _;
use eso_api::{ConversionStrategy, DecodingStrategy, NullBytePolicy};

use crate::MappingError;

/// Apply `decodingStrategy` to one value.
pub fn decode(strategy: Option<DecodingStrategy>, v: &[u8]) -> Result<Vec<u8>, &'static str> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    match strategy.unwrap_or(DecodingStrategy::None) {
        DecodingStrategy::None => Ok(v.to_vec()),
        DecodingStrategy::Base64 => STANDARD.decode(v).map_err(|_| "Base64"),
        DecodingStrategy::Base64Url => URL_SAFE.decode(v).map_err(|_| "Base64URL"),
        DecodingStrategy::Auto => Ok(STANDARD
            .decode(v)
            .or_else(|_| URL_SAFE.decode(v))
            .unwrap_or_else(|_| v.to_vec())),
    }
}

pub(crate) fn decode_for(
    field: &str,
    secret_key: &str,
    strategy: Option<DecodingStrategy>,
    v: &[u8],
) -> Result<Vec<u8>, MappingError> {
    decode(strategy, v).map_err(|s| MappingError::Decode {
        field: field.to_string(),
        secret_key: secret_key.to_string(),
        strategy: s.to_string(),
    })
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// `conversionStrategy`: replace characters that cannot appear in a Secret key.
/// Default: `_`; Unicode: `_U%04x_`.
pub fn convert_key(strategy: Option<ConversionStrategy>, key: &str) -> String {
    let unicode = strategy == Some(ConversionStrategy::Unicode);
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if allowed(c) {
            out.push(c);
        } else if unicode {
            out.push_str(&format!("_U{:04x}_", c as u32));
        } else {
            out.push('_');
        }
    }
    out
}

/// Kubernetes Secret key rules: 1..=253 characters of `[-._a-zA-Z0-9]`.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("must not be empty");
    }
    if key.len() > 253 {
        return Err("must be no more than 253 characters");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err("must consist of alphanumeric characters, '-', '_' or '.'");
    }
    if key == "." || key == ".." {
        return Err("must not be '.' or '..'");
    }
    Ok(())
}

pub(crate) fn check_null(
    field: &str,
    secret_key: &str,
    policy: Option<NullBytePolicy>,
    v: &[u8],
) -> Result<(), MappingError> {
    if policy == Some(NullBytePolicy::Fail) && v.contains(&0) {
        return Err(MappingError::NullByte {
            field: field.to_string(),
            secret_key: secret_key.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(
            decode(Some(DecodingStrategy::Base64), b"aGk=").ok(),
            Some(b"hi".to_vec())
        );
        assert!(decode(Some(DecodingStrategy::Base64), b"!!").is_err());
        assert_eq!(
            decode(Some(DecodingStrategy::Base64Url), b"-_8=").ok(),
            Some(vec![0xfb, 0xff])
        );
        assert_eq!(
            decode(Some(DecodingStrategy::Auto), b"-_8=").ok(),
            Some(vec![0xfb, 0xff])
        );
        assert_eq!(
            decode(Some(DecodingStrategy::Auto), b"plain text").ok(),
            Some(b"plain text".to_vec())
        );
        assert_eq!(decode(None, b"aGk=").ok(), Some(b"aGk=".to_vec()));
    }

    #[test]
    fn conversion() {
        assert_eq!(convert_key(None, "a/b/c"), "a_b_c");
        assert_eq!(
            convert_key(Some(ConversionStrategy::Unicode), "a/b"),
            "a_U002f_b"
        );
    }

    #[test]
    fn key_validation() {
        assert!(validate_key("ok-key_1.x").is_ok());
        assert!(validate_key("a/b").is_err());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"a".repeat(254)).is_err());
        assert!(validate_key("..").is_err());
    }
}
