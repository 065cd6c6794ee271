//! The generators that need no backend: `Password` and `UUID` (ESO v2.9 semantics), from the
//! operating system's CSPRNG (`getrandom`). Generated values are returned as bytes and never
//! logged; [`Generated`]'s `Debug` prints key names and sizes only.
//!
//! Password, as ESO's (sethvargo/go-password): `length` characters (default 24), of which
//! `digits` are digits and `symbols` are drawn from `symbolCharacters` (each default: a quarter
//! of the length, rounded down), the rest letters (lowercase only with `noUpper`); unless
//! `allowRepeat`, no character appears twice. Each character class is drawn uniformly and the
//! characters are placed at uniformly random positions. One password per `secretKeys` entry
//! (default `password`), then `encoding` (`raw`, `base64`, `base64url`, `base32`, `hex`).

use std::collections::{BTreeMap, BTreeSet};

use eso_api::generators::{PasswordEncoding, PasswordSpec};

use crate::ProviderError;

/// ESO's default symbol characters.
pub const DEFAULT_SYMBOLS: &str = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

/// A generator's output: key → value (the type the mapping engine takes, so nothing converts).
pub use eso_remote::GeneratedData as Generated;

/// A source of uniformly random bytes.
pub trait RandomSource {
    /// Fill `buf`.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ProviderError>;
}

/// The operating system's CSPRNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ProviderError> {
        getrandom::fill(buf).map_err(|e| {
            ProviderError::unavailable(format!("the operating system's random source failed: {e}"))
        })
    }
}

/// A uniform integer in `[0, n)` by rejection sampling (no modulo bias). `n` must be > 0.
fn below(rng: &mut dyn RandomSource, n: usize) -> Result<usize, ProviderError> {
    let n = n as u64;
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b)?;
        let v = u64::from_le_bytes(b);
        if v < zone {
            return Ok(usize::try_from(v % n).unwrap_or(0));
        }
    }
}

fn count(v: Option<i64>, length: usize) -> Result<usize, ProviderError> {
    match v {
        // ESO: int(float32(length) * 0.25).
        None => Ok(length / 4),
        Some(n) => usize::try_from(n).map_err(|_| {
            ProviderError::invalid_config("Password: digits and symbols must not be negative")
        }),
    }
}

/// One password for `spec`.
pub fn password(spec: &PasswordSpec, rng: &mut dyn RandomSource) -> Result<String, ProviderError> {
    let length = usize::try_from(spec.length)
        .ok()
        .filter(|l| *l > 0)
        .unwrap_or(24);
    let digits = count(spec.digits, length)?;
    let symbols = count(spec.symbols, length)?;
    let symbol_set: Vec<char> = spec
        .symbol_characters
        .as_deref()
        .unwrap_or(DEFAULT_SYMBOLS)
        .chars()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut letter_set: Vec<char> = LOWER.chars().collect();
    if !spec.no_upper {
        letter_set.extend(UPPER.chars());
    }
    let digit_set: Vec<char> = DIGITS.chars().collect();
    if digits + symbols > length {
        return Err(ProviderError::invalid_config(format!(
            "Password: {digits} digits and {symbols} symbols do not fit in length {length}"
        )));
    }
    let letters = length - digits - symbols;
    if symbols > 0 && symbol_set.is_empty() {
        return Err(ProviderError::invalid_config(
            "Password: symbols are requested but symbolCharacters is empty",
        ));
    }
    if !spec.allow_repeat {
        for (what, need, have) in [
            ("letters", letters, letter_set.len()),
            ("digits", digits, digit_set.len()),
            ("symbols", symbols, symbol_set.len()),
        ] {
            if need > have {
                return Err(ProviderError::invalid_config(format!(
                    "Password: {need} {what} without repeats, but only {have} distinct are available (set allowRepeat: true)"
                )));
            }
        }
    }
    let mut out: Vec<char> = Vec::with_capacity(length);
    for (n, set) in [
        (letters, &letter_set),
        (digits, &digit_set),
        (symbols, &symbol_set),
    ] {
        let mut pool: Vec<char> = set.clone();
        for _ in 0..n {
            let i = below(rng, pool.len())?;
            let c = if spec.allow_repeat {
                pool[i]
            } else {
                // Without repeats: draw without replacement.
                pool.swap_remove(i)
            };
            // Insert at a uniformly random position (0..=len).
            let at = below(rng, out.len() + 1)?;
            out.insert(at, c);
        }
    }
    Ok(out.into_iter().collect())
}

fn base32(b: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(b.len().div_ceil(5) * 8);
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = buf.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                let idx = ((v >> (35 - i * 5)) & 31) as usize;
                out.push(char::from(ALPHABET[idx]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn encode(v: &str, e: PasswordEncoding) -> Vec<u8> {
    use base64::Engine as _;
    match e {
        PasswordEncoding::Raw => v.as_bytes().to_vec(),
        PasswordEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .encode(v)
            .into_bytes(),
        PasswordEncoding::Base64url => base64::engine::general_purpose::URL_SAFE
            .encode(v)
            .into_bytes(),
        PasswordEncoding::Base32 => base32(v.as_bytes()).into_bytes(),
        PasswordEncoding::Hex => v
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    }
}

/// Run a Password generator: one password per key.
pub fn run_password(
    spec: &PasswordSpec,
    rng: &mut dyn RandomSource,
) -> Result<Generated, ProviderError> {
    let keys: Vec<String> = if spec.secret_keys.is_empty() {
        vec!["password".to_string()]
    } else {
        spec.secret_keys.clone()
    };
    let distinct: BTreeSet<&String> = keys.iter().collect();
    if keys.iter().any(String::is_empty) || distinct.len() != keys.len() {
        return Err(ProviderError::invalid_config(
            "Password: secretKeys must be non-empty and unique",
        ));
    }
    let encoding = spec.encoding.unwrap_or_default();
    let mut out = BTreeMap::new();
    for k in keys {
        let p = password(spec, rng)?;
        out.insert(k, encode(&p, encoding));
    }
    Ok(Generated(out))
}

/// A random (version 4) UUID in its canonical text form.
pub fn uuid_v4(rng: &mut dyn RandomSource) -> Result<String, ProviderError> {
    let mut b = [0u8; 16];
    rng.fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}

/// Run a UUID generator: key `uuid`.
pub fn run_uuid(rng: &mut dyn RandomSource) -> Result<Generated, ProviderError> {
    Ok(Generated(BTreeMap::from([(
        "uuid".to_string(),
        uuid_v4(rng)?.into_bytes(),
    )])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: serde_json::Value) -> PasswordSpec {
        serde_json::from_value(yaml).unwrap()
    }

    fn classes(p: &str, symbols: &str) -> (usize, usize, usize, usize) {
        let lower = p.chars().filter(char::is_ascii_lowercase).count();
        let upper = p.chars().filter(char::is_ascii_uppercase).count();
        let digits = p.chars().filter(char::is_ascii_digit).count();
        let sym = p.chars().filter(|c| symbols.contains(*c)).count();
        (lower, upper, digits, sym)
    }

    #[test]
    fn defaults_match_eso() {
        let s = spec(serde_json::json!({}));
        for _ in 0..200 {
            let p = password(&s, &mut OsRandom).unwrap();
            assert_eq!(p.chars().count(), 24);
            let (l, u, d, y) = classes(&p, DEFAULT_SYMBOLS);
            assert_eq!((l + u, d, y), (12, 6, 6), "{}", p.len());
            let distinct: BTreeSet<char> = p.chars().collect();
            assert_eq!(distinct.len(), 24, "no repeats by default");
        }
    }

    #[test]
    fn explicit_counts_no_upper_and_custom_symbols() {
        let s = spec(serde_json::json!({
            "length": 40, "digits": 5, "symbols": 3, "symbolCharacters": "-_", "noUpper": true, "allowRepeat": true
        }));
        for _ in 0..200 {
            let p = password(&s, &mut OsRandom).unwrap();
            assert_eq!(p.len(), 40);
            let (l, u, d, y) = classes(&p, "-_");
            assert_eq!((l, u, d, y), (32, 0, 5, 3), "{}", p.len());
        }
    }

    #[test]
    fn statistics_are_uniform_enough() {
        // 2,000 passwords of 20 lowercase/uppercase letters with repeats allowed: every letter
        // appears, none more than twice its expected share; every position holds digits at
        // the expected rate.
        let s =
            spec(serde_json::json!({"length": 20, "digits": 4, "symbols": 0, "allowRepeat": true}));
        let mut freq: BTreeMap<char, usize> = BTreeMap::new();
        let mut digit_at = [0usize; 20];
        let n = 2000;
        for _ in 0..n {
            let p = password(&s, &mut OsRandom).unwrap();
            for (i, c) in p.chars().enumerate() {
                if c.is_ascii_digit() {
                    digit_at[i] += 1;
                } else {
                    *freq.entry(c).or_default() += 1;
                }
            }
        }
        assert_eq!(freq.len(), 52, "every letter drawn");
        let expected = (n * 16) / 52;
        for (c, f) in &freq {
            assert!(
                *f > expected / 2 && *f < expected * 2,
                "{c}: {f} vs {expected}"
            );
        }
        let per_pos = n * 4 / 20;
        for (i, d) in digit_at.iter().enumerate() {
            assert!(*d > per_pos / 2 && *d < per_pos * 2, "position {i}: {d}");
        }
    }

    #[test]
    fn impossible_specs_are_config_errors() {
        for bad in [
            serde_json::json!({"length": 4, "digits": 3, "symbols": 3}),
            serde_json::json!({"length": 20, "digits": 11, "symbols": 0}),
            serde_json::json!({"length": 10, "symbols": 3, "symbolCharacters": "ab"}),
            serde_json::json!({"length": 10, "digits": -1}),
        ] {
            let e = password(&spec(bad.clone()), &mut OsRandom).unwrap_err();
            assert_eq!(e.class(), crate::ErrorClass::InvalidConfig, "{bad}");
        }
        let dup = spec(serde_json::json!({"secretKeys": ["a", "a"]}));
        assert!(run_password(&dup, &mut OsRandom).is_err());
    }

    #[test]
    fn keys_and_encodings() {
        let s = spec(serde_json::json!({"secretKeys": ["a", "b"], "encoding": "hex", "length": 8}));
        let g = run_password(&s, &mut OsRandom).unwrap();
        assert_eq!(g.0.len(), 2);
        assert_ne!(g.0["a"], g.0["b"]);
        assert_eq!(g.0["a"].len(), 16);
        assert!(g.0["a"].iter().all(u8::is_ascii_hexdigit));
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
        assert_eq!(base32(b"f"), "MY======");
        assert_eq!(
            String::from_utf8(encode("foobar", PasswordEncoding::Base64)).unwrap(),
            "Zm9vYmFy"
        );
        let dbg = format!("{g:?}");
        assert!(
            !dbg.contains(&String::from_utf8_lossy(&g.0["a"]).to_string()),
            "{dbg}"
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let u = uuid_v4(&mut OsRandom).unwrap();
            assert_eq!(u.len(), 36);
            assert_eq!(&u[14..15], "4");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
            seen.insert(u);
        }
        assert_eq!(seen.len(), 100);
    }
}
