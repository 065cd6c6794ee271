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

/// A character ESO accepts in a key before templating: a Unicode letter (general category L), a
/// Unicode number (category N), `-`, `.` or `_` (Go's `unicode.IsLetter` / `unicode.IsNumber`).
/// Rust's `char::is_alphanumeric` is wider (it also takes combining marks and symbols with the
/// Alphabetic property, such as U+0301 or Ⓐ), hence the general categories.
static ESO_KEY_CHARS: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"[^\p{L}\p{N}._-]").ok());

/// The first character of `key` ESO refuses before templating (see [`ESO_KEY_CHARS`]).
fn first_refused(key: &str) -> Option<(usize, char)> {
    match ESO_KEY_CHARS.as_ref() {
        Some(re) => re
            .find(key)
            .and_then(|m| m.as_str().chars().next().map(|c| (m.start(), c))),
        // Never taken (the pattern is a constant); the closest rule without the table.
        None => key
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))),
    }
}

/// `conversionStrategy`: replace characters ESO does not allow in a key (anything but Unicode
/// letters and numbers, `-`, `.` and `_`). Default: `_`; Unicode: `_U%04x_`. Non-ASCII letters are
/// kept, as in ESO: the final Secret is checked with Kubernetes' rules ([`validate_key`]).
pub fn convert_key(strategy: Option<ConversionStrategy>, key: &str) -> String {
    let unicode = strategy == Some(ConversionStrategy::Unicode);
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some((i, c)) = first_refused(rest) {
        out.push_str(&rest[..i]);
        if unicode {
            out.push_str(&format!("_U{:04x}_", c as u32));
        } else {
            out.push('_');
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// ESO's key check on `dataFrom` keys before templating: at most 253 bytes, Unicode letters and
/// numbers, `-`, `.` and `_` (so `clé` passes here; a template may still map it to a valid
/// Secret key). Empty keys are dropped by the caller, as ESO does.
pub fn validate_remote_key(key: &str) -> Result<(), &'static str> {
    if key.len() > 253 {
        return Err("must be no more than 253 characters");
    }
    if first_refused(key).is_some() {
        return Err("must consist of letters, numbers, '-', '_' or '.'");
    }
    Ok(())
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
    fn eso_key_rules_use_unicode_letters_and_numbers() {
        for ok in ["clé", "ключ", "名前", "x²", "Ⅻ", "a-b.c_d", "..", "Ǆ"] {
            assert!(validate_remote_key(ok).is_ok(), "{ok}");
            assert_eq!(convert_key(None, ok), ok, "{ok} is kept");
        }
        // Not letters or numbers in Go's sense, though Rust's is_alphanumeric accepts them:
        // a combining accent (Mn) and a circled letter (So).
        for bad in ["e\u{301}", "Ⓐ", "a/b", "a b", "🙂"] {
            assert!(validate_remote_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(convert_key(None, "e\u{301}"), "e_");
        assert_eq!(
            convert_key(Some(ConversionStrategy::Unicode), "Ⓐ/é"),
            "_U24b6__U002f_é"
        );
        assert!(validate_remote_key(&"é".repeat(127)).is_err(), "254 bytes");
        assert!(validate_remote_key(&"é".repeat(126)).is_ok());
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
