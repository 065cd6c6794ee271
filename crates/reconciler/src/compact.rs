//! Identity strings kept in fewer bytes: a uid or a resourceVersion of a cached record.
//!
//! A uid is a 36-character UUID and a resourceVersion a decimal number; as `String`s they take
//! 24 bytes inline and a heap block each (48 and 16 bytes with jemalloc). A [`Token`] keeps the
//! usual forms inline, in 24 bytes and no allocation, and any other text as it came. It always
//! gives back the exact text it was made from.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

/// The process's hash key: SipHash with random keys, so that names nobody can predict the
/// hashes of (a tenant cannot craft a name that collides with another tenant's object).
static KEY: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);

/// A 64-bit hash of `parts`, stable within this process only (keyed per process, see
/// [`KEY`]). Parts are separated by a byte UTF-8 never contains, so `("ab", "c")` and
/// `("a", "bc")` differ.
pub fn hash(parts: &[&str]) -> u64 {
    let mut h = KEY.build_hasher();
    for p in parts {
        h.write(p.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// The key of a namespaced object in the per-object maps: `namespace/name` in one allocation
/// (neither part can contain a `/`).
pub fn object_key(ns: &str, name: &str) -> Box<str> {
    [ns, "/", name].concat().into_boxed_str()
}

/// The namespace and name of an [`object_key`].
pub fn split_object_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// A uid or resourceVersion (see the module documentation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Token {
    /// A lowercase, hyphenated UUID (what the apiserver gives every object).
    Uuid([u8; 16]),
    /// A decimal number without leading zeros (etcd's resourceVersions).
    Number(u64),
    /// Anything else, kept as it came.
    Text(Box<str>),
}

impl Token {
    /// The token of `s`.
    pub fn new(s: &str) -> Self {
        if let Some(u) = uuid(s) {
            Token::Uuid(u)
        } else if let Some(n) = number(s) {
            Token::Number(n)
        } else {
            Token::Text(Box::from(s))
        }
    }

    /// The token of an optional string.
    pub fn of(s: Option<&str>) -> Option<Self> {
        s.map(Self::new)
    }
}

/// The 16 bytes of a lowercase hyphenated UUID (`8-4-4-4-12` hex digits), or `None` for any
/// other text (uppercase digits included: they would not format back the same).
fn uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().filter(|&&c| c != b'-');
    for byte in &mut out {
        let hi = hex(*digits.next()?)?;
        let lo = hex(*digits.next()?)?;
        *byte = hi << 4 | lo;
    }
    digits.next().is_none().then_some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A decimal number that formats back to `s` (no sign, no leading zero unless it is `0`).
fn number(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || (b.len() > 1 && b[0] == b'0') || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Uuid(u) => {
                // One write of a stack buffer: this runs for every reconcile (the record's
                // uid goes back into the rebuilt object), `{:02x}` per byte measured slower.
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut out = [0u8; 36];
                let mut at = 0;
                for (i, byte) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out[at] = b'-';
                        at += 1;
                    }
                    out[at] = HEX[usize::from(byte >> 4)];
                    out[at + 1] = HEX[usize::from(byte & 0xf)];
                    at += 2;
                }
                f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
            }
            Token::Number(n) => write!(f, "{n}"),
            Token::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_formats_back_to_its_text() {
        for s in [
            "6f1c2d3e-0000-4000-8000-000000000042",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "123456",
            "0",
            "18446744073709551615",
            // Not the usual forms: kept as text.
            "6F1C2D3E-0000-4000-8000-000000000042",
            "6f1c2d3e00004000800000000000004200ab",
            "6f1c2d3e-0000-4000-8000-00000000004",
            "6f1c2d3e-0000-4000-8000-0000000000423",
            "0123",
            "18446744073709551616",
            "",
            "u-1",
            "-1",
            "+1",
        ] {
            assert_eq!(Token::new(s).to_string(), s, "{s}");
        }
    }

    #[test]
    fn object_keys_split_back() {
        assert_eq!(split_object_key(&object_key("team", "db")), ("team", "db"));
        assert_eq!(split_object_key(&object_key("", "db")), ("", "db"));
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_eq!(hash(&["a", "bc"]), hash(&["a", "bc"]));
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
        assert_ne!(hash(&["a"]), hash(&["a", ""]));
    }

    #[test]
    fn the_usual_forms_take_no_allocation() {
        assert!(matches!(
            Token::new("6f1c2d3e-0000-4000-8000-000000000042"),
            Token::Uuid(_)
        ));
        assert_eq!(Token::new("123456"), Token::Number(123_456));
        assert!(matches!(Token::new("0123"), Token::Text(_)));
        assert!(matches!(
            Token::new("6F1C2D3E-0000-4000-8000-000000000042"),
            Token::Text(_)
        ));
        assert_eq!(std::mem::size_of::<Option<Token>>(), 24);
    }
}
