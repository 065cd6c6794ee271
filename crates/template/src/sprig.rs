//! The sprig v3 functions ESO v2.9 exposes (its vendored copy of sprig), minus the ones that do
//! I/O (`env`, `expandenv`, `getHostByName`, which ESO removes too). Behaviour follows sprig's
//! documentation and observed output (see the differential corpus); the code is our own.
//!
//! Not provided (documented in docs/migrating-from-eso.md): the certificate and key generators
//! (`genPrivateKey`, `genCA*`, `genSelfSignedCert*`, `genSignedCert*`, `buildCustomCert`),
//! `derivePassword`, `encryptAES`/`decryptAES`, `semver`/`semverCompare`, `urlParse`/`urlJoin`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, TimeZone as _, Utc};

use crate::funcs::{FuncError, FuncMap};
use crate::value::{Map, Value, from_json};

type Res = Result<Value, FuncError>;

/// Clock and randomness for the few functions that need them (`now`, `ago`, `date` defaults;
/// `rand*`, `uuidv4`, `shuffle`, `randBytes`, bcrypt salts). Everything else is pure.
#[derive(Clone)]
pub struct SprigEnv {
    /// The current time.
    pub clock: Arc<dyn Fn() -> DateTime<FixedOffset> + Send + Sync>,
    /// The random source.
    pub rng: Arc<Mutex<Rng>>,
}

impl SprigEnv {
    /// The system clock and an RNG seeded from the operating system.
    pub fn system() -> Self {
        let mut seed = [0u8; 8];
        let s = match getrandom::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
        };
        SprigEnv {
            clock: Arc::new(|| Utc::now().fixed_offset()),
            rng: Arc::new(Mutex::new(Rng::new(s))),
        }
    }
    /// A fixed clock (`unix` seconds, UTC) and a seeded RNG: deterministic, for tests.
    pub fn fixed(unix: i64, seed: u64) -> Self {
        let t = Utc
            .timestamp_opt(unix, 0)
            .single()
            .unwrap_or_default()
            .fixed_offset();
        SprigEnv {
            clock: Arc::new(move || t),
            rng: Arc::new(Mutex::new(Rng::new(seed))),
        }
    }
}

/// A small seedable PRNG (splitmix64). Not for keys: sprig's random functions are for
/// convenience values (its own docs say so).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let r = self.next_u64();
            if r < zone {
                return r % n;
            }
        }
    }
}

fn e(msg: impl Into<String>) -> FuncError {
    FuncError(msg.into())
}

fn want(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() != n {
        return Err(e(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

fn at_least(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() < n {
        return Err(e(format!(
            "wrong number of args for {name}: want at least {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

/// A Go `string` parameter.
fn s(v: &Value) -> Result<&[u8], FuncError> {
    match v {
        Value::Str(b) => Ok(b),
        Value::Nil => Err(e("invalid value; expected string")),
        o => Err(e(format!(
            "wrong type for value; expected string; got {}",
            o.type_name()
        ))),
    }
}

fn st(v: &Value) -> Result<String, FuncError> {
    Ok(String::from_utf8_lossy(s(v)?).into_owned())
}

/// A Go `int` parameter.
fn int(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        Value::Nil => Err(e("invalid value; expected int")),
        o => Err(e(format!(
            "wrong type for value; expected int; got {}",
            o.type_name()
        ))),
    }
}

/// A Go `bool` parameter.
fn boolean(v: &Value) -> Result<bool, FuncError> {
    match v {
        Value::Bool(b) => Ok(*b),
        o => Err(e(format!(
            "wrong type for value; expected bool; got {}",
            o.type_name()
        ))),
    }
}

/// spf13/cast `ToInt64`.
pub fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(b) => {
            // spf13/cast parses the text as it is (no trimming).
            let t = String::from_utf8_lossy(b);
            let t = t.as_ref();
            let t = match t.find('.') {
                Some(i) if t[i + 1..].bytes().all(|c| c == b'0') => &t[..i],
                _ => t,
            };
            parse_go_int(t).unwrap_or(0)
        }
        _ => 0,
    }
}

fn parse_go_int(t: &str) -> Option<i64> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let l = body.to_ascii_lowercase();
    let v = if let Some(h) = l.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = l.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(o) = l.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if l.len() > 1 && l.starts_with('0') {
        i64::from_str_radix(&l[1..], 8).ok()?
    } else {
        if l.is_empty() || !l.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        l.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// spf13/cast `ToFloat64`.
pub fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(b) => String::from_utf8_lossy(b).parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn strval(v: &Value) -> Vec<u8> {
    v.to_text()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The items of a list argument (sprig works on any slice).
fn items(name: &str, v: &Value) -> Result<Arc<Vec<Value>>, FuncError> {
    match v {
        Value::List(l) => Ok(l.clone()),
        o => Err(e(format!("Cannot {name} on type {}", o.kind_name()))),
    }
}

fn dict_of(name: &str, v: &Value) -> Result<Arc<Map>, FuncError> {
    match v {
        Value::Map(m) if !m.strings => Ok(m.clone()),
        // Go passes nil to a map parameter as the nil (empty) map.
        Value::Nil => Ok(Arc::new(Map::default())),
        Value::Map(_) => Err(e(format!(
            "{name}: wrong type for value; expected map[string]interface {{}}; got map[string]string"
        ))),
        o => Err(e(format!(
            "{name}: wrong type for value; expected map[string]interface {{}}; got {}",
            o.type_name()
        ))),
    }
}

fn slist(v: Vec<Vec<u8>>) -> Value {
    Value::list(v.into_iter().map(Value::from).collect())
}

/// Sprig's `strslice`.
fn strslice(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        o => vec![strval(o)],
    }
}

fn precheck(name: &str, size: usize) -> Result<(), FuncError> {
    if size > crate::MAX_OUTPUT {
        return Err(e(format!(
            "result would be over {} MiB",
            crate::MAX_OUTPUT >> 20
        ))
        .with_name(name));
    }
    Ok(())
}

trait WithName {
    fn with_name(self, name: &str) -> Self;
}
impl WithName for FuncError {
    fn with_name(self, _name: &str) -> Self {
        self
    }
}

fn go_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !(c.is_alphanumeric()) && (c.is_whitespace() || !c.is_alphabetic())
        };
        if !c.is_ascii() && (c.is_alphabetic() || c.is_numeric()) {
            prev_sep = false;
        }
    }
    out
}

fn untitle(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = true;
    for c in s.chars() {
        if prev_space {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_space = c.is_whitespace();
    }
    out
}

fn swapcase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else if c.is_lowercase() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn words(s: &str) -> Vec<String> {
    // Split on non-alphanumerics and on lower->upper case changes.
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_lower) {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn snake(s: &str, sep: char) -> String {
    words(s)
        .iter()
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

fn camel(s: &str) -> String {
    // xstrings.ToCamelCase: underscores (and case changes kept) separate words.
    let mut out = String::new();
    let mut upper_next = true;
    for c in s.chars() {
        if c == '_' || c == ' ' || c == '-' {
            upper_next = true;
            continue;
        }
        if upper_next {
            out.extend(c.to_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// goutils `WrapCustom` (byte offsets, as in Go): break at the last space that fits; a longer
/// word is cut (`long_words`) or kept whole up to the next space.
fn wrap(s: &[u8], width: i64, nl: &[u8], long_words: bool) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    let nl: &[u8] = if nl.is_empty() { b"\n" } else { nl };
    let width = width.max(1) as usize;
    let len = s.len();
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(len + len / width * nl.len());
    while len - offset > width {
        if s[offset] == b' ' {
            offset += 1;
            continue;
        }
        let end = (width + offset + 1).min(len);
        match s[offset..end].iter().rposition(|b| *b == b' ') {
            Some(i) => {
                out.extend_from_slice(&s[offset..offset + i]);
                out.extend_from_slice(nl);
                offset += i + 1;
            }
            None if long_words => {
                out.extend_from_slice(&s[offset..offset + width]);
                out.extend_from_slice(nl);
                offset += width;
            }
            None => {
                let end = width + offset;
                match s[end..].iter().position(|b| *b == b' ') {
                    None => {
                        out.extend_from_slice(&s[offset..]);
                        offset = len;
                    }
                    Some(i) => {
                        out.extend_from_slice(&s[offset..end + i]);
                        out.extend_from_slice(nl);
                        offset = end + i + 1;
                    }
                }
            }
        }
    }
    out.extend_from_slice(&s[offset..]);
    out
}

/// Go's `encoding/json` output of a value (sorted keys, HTML escaping optional, Go numbers).
pub fn json_encode(v: &Value, html: bool, indent: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    json_write(&mut out, v, html, indent, 0);
    out
}

fn json_str(out: &mut Vec<u8>, b: &[u8], html: bool) {
    out.push(b'"');
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                '<' | '>' | '&' if html => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => {
                    let mut t = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut t).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

fn json_float(f: f64) -> String {
    if f == f.trunc() && f.abs() < 1e21 {
        return format!("{}", f as i128).replace("-0", if f == 0.0 { "0" } else { "-0" });
    }
    let a = f.abs();
    if (1e-6..1e21).contains(&a) {
        format!("{f}")
    } else {
        let s = crate::fmt::format_float(f, 'e', None, false);
        // Go: shortest digits, and "e-07" becomes "e-7".
        let (_, ex) = s.split_once('e').unwrap_or((&s, "+00"));
        let short = format!("{f:e}");
        let (sm, _) = short.split_once('e').unwrap_or((&short, "0"));
        let sign = &ex[..1];
        let digits = ex[1..].trim_start_matches('0');
        format!(
            "{sm}e{sign}{}",
            if digits.is_empty() { "0" } else { digits }
        )
    }
}

fn json_write(out: &mut Vec<u8>, v: &Value, html: bool, indent: Option<&str>, level: usize) {
    let nl = |out: &mut Vec<u8>, level: usize| {
        if let Some(ind) = indent {
            out.push(b'\n');
            for _ in 0..level {
                out.extend_from_slice(ind.as_bytes());
            }
        }
    };
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(json_float(*f).as_bytes()),
        Value::Str(b) => json_str(out, b, html),
        Value::List(l) => {
            if l.is_empty() {
                out.extend_from_slice(b"[]");
                return;
            }
            out.push(b'[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                nl(out, level + 1);
                json_write(out, x, html, indent, level + 1);
            }
            nl(out, level);
            out.push(b']');
        }
        Value::Map(m) => {
            if m.entries.is_empty() {
                out.extend_from_slice(b"{}");
                return;
            }
            out.push(b'{');
            for (i, (k, x)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                nl(out, level + 1);
                json_str(out, k.as_bytes(), html);
                out.push(b':');
                if indent.is_some() {
                    out.push(b' ');
                }
                json_write(out, x, html, indent, level + 1);
            }
            nl(out, level);
            out.push(b'}');
        }
        Value::Time(t) => json_str(
            out,
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .as_bytes(),
            html,
        ),
    }
}

fn parse_json(b: &[u8]) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_slice(b).map_err(|x| {
        // Never quote input: serde's messages give positions only.
        let m = x.to_string();
        m.split(" at line")
            .next()
            .unwrap_or("invalid JSON")
            .to_string()
    })?;
    Ok(from_json(&v))
}

/// Go's `reflect.DeepEqual` on template values.
fn deep_eq(a: &Value, b: &Value) -> bool {
    a == b
}

fn merge_into(dst: &mut BTreeMap<String, Value>, src: &BTreeMap<String, Value>, overwrite: bool) {
    for (k, v) in src {
        match (dst.get_mut(k), v) {
            (Some(Value::Map(dm)), Value::Map(sm)) if !dm.strings && !sm.strings => {
                let mut inner = dm.entries.clone();
                merge_into(&mut inner, &sm.entries, overwrite);
                *dm = Arc::new(Map {
                    entries: inner,
                    strings: false,
                });
            }
            (Some(d), v) => {
                if overwrite || d.is_empty() {
                    if overwrite && v.is_empty() && !matches!(v, Value::Nil) {
                        // mergo's WithOverride skips empty source values.
                        continue;
                    }
                    if !overwrite || !v.is_empty() {
                        *d = v.clone();
                    }
                }
            }
            (None, v) => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

fn regex(name: &str, re: &[u8]) -> Result<regex::Regex, FuncError> {
    let pat =
        std::str::from_utf8(re).map_err(|_| e(format!("{name}: the pattern is not UTF-8")))?;
    regex::RegexBuilder::new(pat)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| e(format!("{name}: invalid regular expression")))
}

fn rand_string(env: &SprigEnv, n: i64, set: &[u8]) -> Result<Value, FuncError> {
    if n < 0 {
        return Err(e("count must be non-negative"));
    }
    precheck("rand", n as usize)?;
    let mut rng = env.rng.lock().map_err(|_| e("random source unavailable"))?;
    let out: Vec<u8> = (0..n)
        .map(|_| set[rng.below(set.len() as u64) as usize])
        .collect();
    Ok(Value::from(out))
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const NUMERIC: &[u8] = b"0123456789";

fn ascii_set() -> Vec<u8> {
    (32u8..=126).collect()
}

fn bcrypt_hash(env: &SprigEnv, pw: &[u8]) -> Result<String, FuncError> {
    let mut salt = [0u8; 16];
    {
        let mut rng = env.rng.lock().map_err(|_| e("random source unavailable"))?;
        for chunk in salt.chunks_mut(8) {
            let r = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
    // bcrypt reads at most 72 bytes; Go's x/crypto refuses longer passwords.
    if pw.len() > 72 {
        return Ok(
            "failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes".into(),
        );
    }
    let h = bcrypt::hash_with_salt(pw, 10, salt).map_err(|_| e("bcrypt failed"))?;
    Ok(h.format_for_version(bcrypt::Version::TwoA))
}

/// Work units charged for one bcrypt hash (cost 10, about 50 ms): a template can run a
/// handful, not thousands, inside its budget.
pub const BCRYPT_COST: u64 = 200_000;

/// Register the sprig functions in `m`.
pub fn register(m: &mut FuncMap, env: &SprigEnv) {
    strings(m);
    lists(m);
    dicts(m);
    numbers(m);
    encodings(m);
    regexes(m);
    defaults(m);
    paths(m);
    dates(m, env);
    random(m, env);
    crate::extra::register(m);
}

fn strings(m: &mut FuncMap) {
    m.insert("hello", |_| Ok(Value::from("Hello!")));
    m.insert("upper", |a| {
        want("upper", a, 1)?;
        Ok(Value::from(st(&a[0])?.to_uppercase()))
    });
    m.insert("lower", |a| {
        want("lower", a, 1)?;
        Ok(Value::from(st(&a[0])?.to_lowercase()))
    });
    m.insert("title", |a| {
        want("title", a, 1)?;
        Ok(Value::from(go_title(&st(&a[0])?)))
    });
    m.insert("untitle", |a| {
        want("untitle", a, 1)?;
        Ok(Value::from(untitle(&st(&a[0])?)))
    });
    m.insert("swapcase", |a| {
        want("swapcase", a, 1)?;
        Ok(Value::from(swapcase(&st(&a[0])?)))
    });
    m.insert("snakecase", |a| {
        want("snakecase", a, 1)?;
        Ok(Value::from(snake(&st(&a[0])?, '_')))
    });
    m.insert("kebabcase", |a| {
        want("kebabcase", a, 1)?;
        Ok(Value::from(snake(&st(&a[0])?, '-')))
    });
    m.insert("camelcase", |a| {
        want("camelcase", a, 1)?;
        Ok(Value::from(camel(&st(&a[0])?)))
    });
    m.insert("trim", |a| {
        want("trim", a, 1)?;
        Ok(Value::from(st(&a[0])?.trim().to_string()))
    });
    for name in ["trimAll", "trimall"] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            let cut: Vec<char> = st(&a[0])?.chars().collect();
            Ok(Value::from(
                st(&a[1])?.trim_matches(|c| cut.contains(&c)).to_string(),
            ))
        });
    }
    m.insert("trimPrefix", |a| {
        want("trimPrefix", a, 2)?;
        let (p, v) = (s(&a[0])?, s(&a[1])?);
        Ok(Value::str(v.strip_prefix(p).unwrap_or(v)))
    });
    m.insert("trimSuffix", |a| {
        want("trimSuffix", a, 2)?;
        let (p, v) = (s(&a[0])?, s(&a[1])?);
        Ok(Value::str(v.strip_suffix(p).unwrap_or(v)))
    });
    m.insert("nospace", |a| {
        want("nospace", a, 1)?;
        Ok(Value::from(
            st(&a[0])?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        ))
    });
    m.insert("trunc", |a| {
        want("trunc", a, 2)?;
        let (n, v) = (int(&a[0])?, s(&a[1])?);
        Ok(Value::str(if n < 0 {
            let k = n.unsigned_abs() as usize;
            if v.len() > k { &v[v.len() - k..] } else { v }
        } else if (n as usize) < v.len() {
            &v[..n as usize]
        } else {
            v
        }))
    });
    m.insert("substr", |a| {
        want("substr", a, 3)?;
        let (start, end, v) = (int(&a[0])?, int(&a[1])?, s(&a[2])?);
        let len = v.len() as i64;
        // sprig slices without checks: out-of-range bounds panic in Go (an execution error).
        let oob = || e("runtime error: slice bounds out of range");
        let out: &[u8] = if start < 0 {
            if end < 0 || end > len {
                return Err(oob());
            }
            &v[..end as usize]
        } else if end < 0 || end > len {
            if start > len {
                return Err(oob());
            }
            &v[start as usize..]
        } else if start > end {
            return Err(oob());
        } else {
            &v[start as usize..end as usize]
        };
        Ok(Value::str(out))
    });
    m.insert("abbrev", |a| {
        want("abbrev", a, 2)?;
        let (w, v) = (int(&a[0])?, st(&a[1])?);
        if w < 4 {
            // sprig returns the text unchanged below goutils' minimum width.
            return Ok(Value::from(v));
        }
        if v.len() as i64 <= w {
            return Ok(Value::from(v));
        }
        let cut = (w - 3) as usize;
        Ok(Value::from(format!(
            "{}...",
            &v[..v.char_indices().nth(cut).map_or(v.len(), |(i, _)| i)]
        )))
    });
    m.insert("initials", |a| {
        want("initials", a, 1)?;
        Ok(Value::from(
            st(&a[0])?
                .split_whitespace()
                .filter_map(|w| w.chars().next())
                .collect::<String>(),
        ))
    });
    m.insert("repeat", |a| {
        want("repeat", a, 2)?;
        let (n, v) = (int(&a[0])?, s(&a[1])?);
        if n < 0 {
            return Err(e("strings: negative Repeat count"));
        }
        precheck("repeat", (n as usize).saturating_mul(v.len()))?;
        Ok(Value::from(v.repeat(n as usize)))
    });
    m.insert("wrap", |a| {
        want("wrap", a, 2)?;
        Ok(Value::from(wrap(s(&a[1])?, int(&a[0])?, b"\n", false)))
    });
    m.insert("wrapWith", |a| {
        want("wrapWith", a, 3)?;
        Ok(Value::from(wrap(s(&a[2])?, int(&a[0])?, s(&a[1])?, true)))
    });
    m.insert("contains", |a| {
        want("contains", a, 2)?;
        let (sub, v) = (s(&a[0])?, s(&a[1])?);
        Ok(Value::Bool(
            sub.is_empty() || v.windows(sub.len()).any(|w| w == sub),
        ))
    });
    m.insert("hasPrefix", |a| {
        want("hasPrefix", a, 2)?;
        Ok(Value::Bool(s(&a[1])?.starts_with(s(&a[0])?)))
    });
    m.insert("hasSuffix", |a| {
        want("hasSuffix", a, 2)?;
        Ok(Value::Bool(s(&a[1])?.ends_with(s(&a[0])?)))
    });
    m.insert("quote", |a| {
        let parts: Vec<Vec<u8>> = a
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(|x| crate::fmt::quote(&strval(x)))
            .collect();
        Ok(Value::from(parts.join(&b' ')))
    });
    m.insert("squote", |a| {
        let parts: Vec<Vec<u8>> = a
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(|x| [b"'".as_slice(), &strval(x), b"'"].concat())
            .collect();
        Ok(Value::from(parts.join(&b' ')))
    });
    m.insert("cat", |a| {
        let parts: Vec<Vec<u8>> = a
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(crate::fmt::sprint_value)
            .collect();
        Ok(Value::from(parts.join(&b' ')))
    });
    m.insert("indent", |a| {
        want("indent", a, 2)?;
        indent(int(&a[0])?, s(&a[1])?, false)
    });
    m.insert("nindent", |a| {
        want("nindent", a, 2)?;
        indent(int(&a[0])?, s(&a[1])?, true)
    });
    m.insert("replace", |a| {
        want("replace", a, 3)?;
        let (old, new, src) = (s(&a[0])?, s(&a[1])?, s(&a[2])?);
        let count = if old.is_empty() {
            String::from_utf8_lossy(src).chars().count() + 1
        } else {
            let mut n = 0;
            let mut i = 0;
            while i + old.len() <= src.len() {
                if &src[i..i + old.len()] == old {
                    n += 1;
                    i += old.len();
                } else {
                    i += 1;
                }
            }
            n
        };
        precheck("replace", src.len() + count.saturating_mul(new.len()))?;
        Ok(Value::from(replace_bytes(src, old, new)))
    });
    m.insert("plural", |a| {
        want("plural", a, 3)?;
        Ok(if int(&a[2])? == 1 {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
    m.insert("toString", |a| {
        want("toString", a, 1)?;
        Ok(Value::from(strval(&a[0])))
    });
    m.insert("split", |a| {
        want("split", a, 2)?;
        let parts = split_bytes(s(&a[1])?, s(&a[0])?, -1);
        Ok(Value::map(
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("_{i}"), Value::from(p)))
                .collect(),
        ))
    });
    m.insert("splitn", |a| {
        want("splitn", a, 3)?;
        let parts = split_bytes(s(&a[2])?, s(&a[0])?, int(&a[1])?);
        Ok(Value::map(
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("_{i}"), Value::from(p)))
                .collect(),
        ))
    });
    m.insert("splitList", |a| {
        want("splitList", a, 2)?;
        Ok(slist(split_bytes(s(&a[1])?, s(&a[0])?, -1)))
    });
    m.insert("toStrings", |a| {
        want("toStrings", a, 1)?;
        Ok(match &a[0] {
            Value::List(l) => slist(l.iter().map(strval).collect()),
            Value::Nil => Value::list(Vec::new()),
            o => slist(vec![strval(o)]),
        })
    });
    m.insert("join", |a| {
        want("join", a, 2)?;
        let sep = s(&a[0])?;
        let parts = strslice(&a[1]);
        let total: usize = parts.iter().map(Vec::len).sum::<usize>()
            + sep.len().saturating_mul(parts.len().saturating_sub(1));
        precheck("join", total)?;
        Ok(Value::from(parts.join(sep)))
    });
    m.insert("sortAlpha", |a| {
        want("sortAlpha", a, 1)?;
        let mut v = match &a[0] {
            Value::List(_) => strslice(&a[0]),
            o => vec![strval(o)],
        };
        v.sort();
        Ok(slist(v))
    });
    m.insert("sha1sum", |a| {
        want("sha1sum", a, 1)?;
        use sha1::Digest as _;
        Ok(Value::from(hex::encode(sha1::Sha1::digest(s(&a[0])?))))
    });
    m.insert("sha256sum", |a| {
        want("sha256sum", a, 1)?;
        use sha2::Digest as _;
        Ok(Value::from(hex::encode(sha2::Sha256::digest(s(&a[0])?))))
    });
    m.insert("sha512sum", |a| {
        want("sha512sum", a, 1)?;
        use sha2::Digest as _;
        Ok(Value::from(hex::encode(sha2::Sha512::digest(s(&a[0])?))))
    });
    m.insert("adler32sum", |a| {
        want("adler32sum", a, 1)?;
        let (mut x, mut y) = (1u32, 0u32);
        for b in s(&a[0])? {
            x = (x + u32::from(*b)) % 65521;
            y = (y + x) % 65521;
        }
        Ok(Value::from(((y << 16) | x).to_string()))
    });
}

fn indent(n: i64, v: &[u8], newline: bool) -> Res {
    if n < 0 {
        return Err(e("strings: negative Repeat count"));
    }
    let pad = n as usize;
    let lines = v.iter().filter(|b| **b == b'\n').count() + 1;
    precheck("indent", v.len() + lines.saturating_mul(pad) + 1)?;
    let padding = vec![b' '; pad];
    let mut out = Vec::with_capacity(v.len() + lines * pad + 1);
    if newline {
        out.push(b'\n');
    }
    out.extend_from_slice(&padding);
    for &b in v {
        out.push(b);
        if b == b'\n' {
            out.extend_from_slice(&padding);
        }
    }
    Ok(Value::from(out))
}

fn replace_bytes(src: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    if old.is_empty() {
        // Go inserts `new` before every UTF-8 sequence and at the end.
        let mut out = Vec::new();
        out.extend_from_slice(new);
        for c in String::from_utf8_lossy(src).chars() {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            out.extend_from_slice(new);
        }
        return out;
    }
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        if src[i..].starts_with(old) {
            out.extend_from_slice(new);
            i += old.len();
        } else {
            out.push(src[i]);
            i += 1;
        }
    }
    out
}

/// Go's `strings.SplitN` (n < 0: all).
fn split_bytes(v: &[u8], sep: &[u8], n: i64) -> Vec<Vec<u8>> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let chars: Vec<Vec<u8>> = String::from_utf8_lossy(v)
            .chars()
            .map(|c| c.to_string().into_bytes())
            .collect();
        if n > 0 && chars.len() > n as usize {
            let mut head: Vec<Vec<u8>> = chars[..n as usize - 1].to_vec();
            head.push(chars[n as usize - 1..].concat());
            return head;
        }
        return chars;
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= v.len() {
        if n > 0 && out.len() as i64 == n - 1 {
            break;
        }
        if &v[i..i + sep.len()] == sep {
            out.push(v[start..i].to_vec());
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(v[start..].to_vec());
    out
}

fn lists(m: &mut FuncMap) {
    for name in ["list", "tuple"] {
        m.insert(name, |a| Ok(Value::list(a.to_vec())));
    }
    for name in ["first", "mustFirst"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            let l = items("find first", &a[0])?;
            Ok(l.first().cloned().unwrap_or(Value::Nil))
        });
    }
    for name in ["last", "mustLast"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            Ok(items("find last", &a[0])?
                .last()
                .cloned()
                .unwrap_or(Value::Nil))
        });
    }
    for name in ["rest", "mustRest"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            let l = items("find rest", &a[0])?;
            // `rest` returns a (typed) empty []interface{}; `must…` a nil interface{}.
            Ok(if l.is_empty() {
                if name.starts_with("must") {
                    Value::Nil
                } else {
                    Value::list(Vec::new())
                }
            } else {
                Value::list(l[1..].to_vec())
            })
        });
    }
    for name in ["initial", "mustInitial"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            let l = items("find initial", &a[0])?;
            // `initial` returns a (typed) empty []interface{}; `must…` a nil interface{}.
            Ok(if l.is_empty() {
                if name.starts_with("must") {
                    Value::Nil
                } else {
                    Value::list(Vec::new())
                }
            } else {
                Value::list(l[..l.len() - 1].to_vec())
            })
        });
    }
    for name in ["reverse", "mustReverse"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            let mut l = items("find reverse", &a[0])?.to_vec();
            l.reverse();
            Ok(Value::list(l))
        });
    }
    for name in ["uniq", "mustUniq"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            let mut out: Vec<Value> = Vec::new();
            for x in items("find uniq", &a[0])?.iter() {
                if !out.iter().any(|y| deep_eq(x, y)) {
                    out.push(x.clone());
                }
            }
            Ok(Value::list(out))
        });
    }
    for name in ["compact", "mustCompact"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            Ok(Value::list(
                items("compact", &a[0])?
                    .iter()
                    .filter(|x| !x.is_empty())
                    .cloned()
                    .collect(),
            ))
        });
    }
    for name in ["without", "mustWithout"] {
        m.insert(name, move |a| {
            at_least(name, a, 1)?;
            let l = items("find without", &a[0])?;
            Ok(Value::list(
                l.iter()
                    .filter(|x| !a[1..].iter().any(|o| deep_eq(x, o)))
                    .cloned()
                    .collect(),
            ))
        });
    }
    for name in ["has", "mustHas"] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            Ok(Value::Bool(match &a[1] {
                Value::Nil => false,
                h => items("find has", h)?.iter().any(|x| deep_eq(x, &a[0])),
            }))
        });
    }
    for name in ["append", "push", "mustAppend", "mustPush"] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            let mut l = match &a[0] {
                Value::Nil => Vec::new(),
                x => items("push on", x)?.to_vec(),
            };
            l.push(a[1].clone());
            Ok(Value::list(l))
        });
    }
    for name in ["prepend", "mustPrepend"] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            let mut l = vec![a[1].clone()];
            if !matches!(a[0], Value::Nil) {
                l.extend(items("prepend on", &a[0])?.iter().cloned());
            }
            Ok(Value::list(l))
        });
    }
    m.insert("concat", |a| {
        let mut out = Vec::new();
        for x in a {
            out.extend(items("concat", x)?.iter().cloned());
        }
        Ok(Value::list(out))
    });
    for name in ["slice", "mustSlice"] {
        m.insert(name, move |a| {
            at_least(name, a, 1)?;
            let l = match &a[0] {
                Value::List(l) => l.clone(),
                o => {
                    return Err(e(format!(
                        "list should be type of slice or array but {}",
                        o.kind_name()
                    )));
                }
            };
            let len = l.len() as i64;
            let (start, end) = match a.len() {
                1 => (0, len),
                2 => (to_i64(&a[1]), len),
                _ => (to_i64(&a[1]), to_i64(&a[2])),
            };
            if start < 0 || end > len || start > end {
                return Err(e(format!("slice bounds out of range [{start}:{end}]")));
            }
            Ok(Value::list(l[start as usize..end as usize].to_vec()))
        });
    }
    for name in ["chunk", "mustChunk"] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            let size = int(&a[0])?;
            if size <= 0 {
                return Err(e("chunk size must be positive"));
            }
            let l = items("chunk", &a[1])?;
            Ok(Value::list(
                l.chunks(size as usize)
                    .map(|c| Value::list(c.to_vec()))
                    .collect(),
            ))
        });
    }
    m.insert("until", |a| {
        want("until", a, 1)?;
        let n = int(&a[0])?;
        until_step(0, n, if n < 0 { -1 } else { 1 })
    });
    m.insert("untilStep", |a| {
        want("untilStep", a, 3)?;
        until_step(int(&a[0])?, int(&a[1])?, int(&a[2])?)
    });
    m.insert("seq", |a| {
        let p: Vec<i64> = a.iter().map(int).collect::<Result<_, _>>()?;
        let l = match p.as_slice() {
            [] => return Ok(Value::from("")),
            [end] => {
                let inc = if *end < 1 { -1 } else { 1 };
                until_step(1, end + inc, inc)?
            }
            [start, end] => {
                let step = if end < start { -1 } else { 1 };
                until_step(*start, end + step, step)?
            }
            [start, step, end] => {
                let mut inc = 1;
                if end < start {
                    inc = -1;
                    if *step > 0 {
                        return Ok(Value::from(""));
                    }
                }
                until_step(*start, end + inc, *step)?
            }
            _ => return Err(e("seq: too many arguments")),
        };
        let Value::List(l) = l else {
            return Ok(Value::from(""));
        };
        let parts: Vec<String> = l
            .iter()
            .map(|v| String::from_utf8_lossy(&crate::fmt::sprint_value(v)).into_owned())
            .collect();
        Ok(Value::from(parts.join(" ")))
    });
}

fn until_step(start: i64, stop: i64, step: i64) -> Res {
    let n = if stop < start {
        if step >= 0 {
            0
        } else {
            ((start - stop) as u128).div_ceil(step.unsigned_abs() as u128)
        }
    } else if step <= 0 {
        0
    } else {
        ((stop - start) as u128).div_ceil(step as u128)
    };
    if n > 1_000_000 {
        return Err(e(format!(
            "result would be over {} MiB",
            crate::MAX_OUTPUT >> 20
        )));
    }
    Ok(Value::list(
        (0..n as i64)
            .map(|i| Value::Int(start + i * step))
            .collect(),
    ))
}

fn dicts(m: &mut FuncMap) {
    m.insert("dict", |a| {
        let mut out = BTreeMap::new();
        let mut i = 0;
        while i < a.len() {
            let k = lossy(&strval(&a[i]));
            let v = a.get(i + 1).cloned().unwrap_or_else(|| Value::from(""));
            out.insert(k, v);
            i += 2;
        }
        Ok(Value::map(out))
    });
    m.insert("get", |a| {
        want("get", a, 2)?;
        let d = dict_of("get", &a[0])?;
        Ok(d.entries
            .get(&st(&a[1])?)
            .cloned()
            .unwrap_or_else(|| Value::from("")))
    });
    m.insert("set", |a| {
        want("set", a, 3)?;
        let d = dict_of("set", &a[0])?;
        let mut m2 = d.entries.clone();
        m2.insert(st(&a[1])?, a[2].clone());
        Ok(Value::map(m2))
    });
    m.insert("unset", |a| {
        want("unset", a, 2)?;
        let d = dict_of("unset", &a[0])?;
        let mut m2 = d.entries.clone();
        m2.remove(&st(&a[1])?);
        Ok(Value::map(m2))
    });
    m.insert("hasKey", |a| {
        want("hasKey", a, 2)?;
        let d = dict_of("hasKey", &a[0])?;
        Ok(Value::Bool(d.entries.contains_key(&st(&a[1])?)))
    });
    m.insert("pluck", |a| {
        at_least("pluck", a, 1)?;
        let k = st(&a[0])?;
        let mut out = Vec::new();
        for d in &a[1..] {
            if let Some(v) = dict_of("pluck", d)?.entries.get(&k) {
                out.push(v.clone());
            }
        }
        Ok(Value::list(out))
    });
    m.insert("keys", |a| {
        let mut out = Vec::new();
        for d in a {
            out.extend(
                dict_of("keys", d)?
                    .entries
                    .keys()
                    .map(|k| Value::from(k.as_str())),
            );
        }
        Ok(Value::list(out))
    });
    m.insert("values", |a| {
        want("values", a, 1)?;
        Ok(Value::list(
            dict_of("values", &a[0])?
                .entries
                .values()
                .cloned()
                .collect(),
        ))
    });
    m.insert("pick", |a| {
        at_least("pick", a, 1)?;
        let d = dict_of("pick", &a[0])?;
        let mut out = BTreeMap::new();
        for k in &a[1..] {
            let k = st(k)?;
            if let Some(v) = d.entries.get(&k) {
                out.insert(k, v.clone());
            }
        }
        Ok(Value::map(out))
    });
    m.insert("omit", |a| {
        at_least("omit", a, 1)?;
        let d = dict_of("omit", &a[0])?;
        let drop: Vec<String> = a[1..].iter().map(st).collect::<Result<_, _>>()?;
        Ok(Value::map(
            d.entries
                .iter()
                .filter(|(k, _)| !drop.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    });
    for (name, overwrite) in [
        ("merge", false),
        ("mustMerge", false),
        ("mergeOverwrite", true),
        ("mustMergeOverwrite", true),
    ] {
        m.insert(name, move |a| {
            at_least(name, a, 1)?;
            let mut dst = dict_of(name, &a[0])?.entries.clone();
            for src in &a[1..] {
                merge_into(&mut dst, &dict_of(name, src)?.entries, overwrite);
            }
            Ok(Value::map(dst))
        });
    }
    m.insert("dig", |a| {
        at_least("dig", a, 3)?;
        let n = a.len();
        let mut cur = dict_of("dig", &a[n - 1])?;
        let def = &a[n - 2];
        let keys = &a[..n - 2];
        for (i, k) in keys.iter().enumerate() {
            let k = st(k)?;
            match cur.entries.get(&k) {
                None => return Ok(def.clone()),
                Some(v) if i + 1 == keys.len() => return Ok(v.clone()),
                Some(v) => cur = dict_of("dig", v)?,
            }
        }
        Ok(def.clone())
    });
    for name in ["deepCopy", "mustDeepCopy"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            Ok(a[0].clone())
        });
    }
}

fn numbers(m: &mut FuncMap) {
    m.insert("atoi", |a| {
        want("atoi", a, 1)?;
        Ok(Value::Int(st(&a[0])?.parse::<i64>().unwrap_or(0)))
    });
    for name in ["int", "int64"] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            Ok(Value::Int(to_i64(&a[0])))
        });
    }
    m.insert("float64", |a| {
        want("float64", a, 1)?;
        Ok(Value::Float(to_f64(&a[0])))
    });
    m.insert("toDecimal", |a| {
        want("toDecimal", a, 1)?;
        Ok(Value::Int(
            i64::from_str_radix(&lossy(&strval(&a[0])), 8).unwrap_or(0),
        ))
    });
    m.insert("add1", |a| {
        want("add1", a, 1)?;
        Ok(Value::Int(to_i64(&a[0]).wrapping_add(1)))
    });
    m.insert("add", |a| {
        Ok(Value::Int(
            a.iter().map(to_i64).fold(0i64, i64::wrapping_add),
        ))
    });
    m.insert("sub", |a| {
        want("sub", a, 2)?;
        Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    });
    m.insert("mul", |a| {
        at_least("mul", a, 1)?;
        Ok(Value::Int(
            a.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
        ))
    });
    m.insert("div", |a| {
        want("div", a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err(e("runtime error: integer divide by zero"));
        }
        Ok(Value::Int(to_i64(&a[0]).wrapping_div(d)))
    });
    m.insert("mod", |a| {
        want("mod", a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err(e("runtime error: integer divide by zero"));
        }
        Ok(Value::Int(to_i64(&a[0]).wrapping_rem(d)))
    });
    for name in ["max", "biggest"] {
        m.insert(name, move |a| {
            at_least(name, a, 1)?;
            Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
        });
    }
    m.insert("min", |a| {
        at_least("min", a, 1)?;
        Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
    });
    m.insert("maxf", |a| {
        at_least("maxf", a, 1)?;
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::NEG_INFINITY, f64::max),
        ))
    });
    m.insert("minf", |a| {
        at_least("minf", a, 1)?;
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::INFINITY, f64::min),
        ))
    });
    m.insert("add1f", |a| {
        want("add1f", a, 1)?;
        Ok(Value::Float(dec(to_f64(&a[0]) + 1.0)))
    });
    m.insert("addf", |a| {
        Ok(Value::Float(dec(a.iter().map(to_f64).sum())))
    });
    m.insert("subf", |a| {
        at_least("subf", a, 1)?;
        Ok(Value::Float(dec(a[1..]
            .iter()
            .map(to_f64)
            .fold(to_f64(&a[0]), |x, y| x - y))))
    });
    m.insert("mulf", |a| {
        at_least("mulf", a, 1)?;
        Ok(Value::Float(dec(a.iter().map(to_f64).product())))
    });
    m.insert("divf", |a| {
        at_least("divf", a, 1)?;
        let mut x = to_f64(&a[0]);
        for y in &a[1..] {
            let y = to_f64(y);
            if y == 0.0 {
                return Err(e("decimal division by 0"));
            }
            x /= y;
        }
        Ok(Value::Float(dec(x)))
    });
    m.insert("ceil", |a| {
        want("ceil", a, 1)?;
        Ok(Value::Float(to_f64(&a[0]).ceil()))
    });
    m.insert("floor", |a| {
        want("floor", a, 1)?;
        Ok(Value::Float(to_f64(&a[0]).floor()))
    });
    m.insert("round", |a| {
        at_least("round", a, 2)?;
        let x = to_f64(&a[0]);
        let p = to_i64(&a[1]).clamp(-300, 300) as i32;
        let half = a.get(2).map_or(0.5, to_f64);
        let pow = 10f64.powi(p);
        let d = x * pow;
        let (int_part, frac) = (d.trunc(), d.fract());
        let r = if frac.abs() >= half {
            int_part + d.signum()
        } else {
            int_part
        };
        Ok(Value::Float(r / pow))
    });
}

/// Sprig computes the `*f` functions with shopspring/decimal, so `addf 1.1 2.2` is 3.3.
fn dec(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Decimals have no negative zero (and Rust's f64 `sum` starts from -0.0).
    if x == 0.0 {
        return 0.0;
    }
    let s = format!("{x:.12}");
    s.parse().unwrap_or(x)
}

fn encodings(m: &mut FuncMap) {
    m.insert("b64enc", |a| {
        want("b64enc", a, 1)?;
        // No precheck: the engine refuses a result over the limit ("result over 2 MiB").
        let v = s(&a[0])?;
        Ok(Value::from(
            base64::engine::general_purpose::STANDARD.encode(v),
        ))
    });
    m.insert("b64dec", |a| {
        want("b64dec", a, 1)?;
        base64::engine::general_purpose::STANDARD
            .decode(s(&a[0])?)
            .map(Value::from)
            .map_err(|_| {
                e("input is not valid base64 (sprig would render the decoder's error text instead)")
            })
    });
    m.insert("b32enc", |a| {
        want("b32enc", a, 1)?;
        Ok(Value::from(data_encoding::BASE32.encode(s(&a[0])?)))
    });
    m.insert("b32dec", |a| {
        want("b32dec", a, 1)?;
        data_encoding::BASE32
            .decode(s(&a[0])?)
            .map(Value::from)
            .map_err(|_| {
                e("input is not valid base32 (sprig would render the decoder's error text instead)")
            })
    });
    m.insert("hexdec", |a| {
        want("hexdec", a, 1)?;
        hex::decode(s(&a[0])?)
            .map(Value::from)
            .map_err(|_| e("input is not valid hex"))
    });
    for (name, html, pretty, strict) in [
        ("toJson", true, false, false),
        ("mustToJson", true, false, true),
        ("toRawJson", false, false, false),
        ("mustToRawJson", false, false, true),
        ("toPrettyJson", true, true, false),
        ("mustToPrettyJson", true, true, true),
    ] {
        m.insert(name, move |a| {
            want(name, a, 1)?;
            let _ = strict;
            let mut out = json_encode(&a[0], html, if pretty { Some("  ") } else { None });
            if !html && !pretty {
                // toRawJson goes through an Encoder, which adds a newline sprig trims.
                while out.last() == Some(&b'\n') {
                    out.pop();
                }
            }
            Ok(Value::from(out))
        });
    }
    m.insert("fromJson", |a| {
        want("fromJson", a, 1)?;
        Ok(parse_json(s(&a[0])?).unwrap_or(Value::Nil))
    });
    m.insert("mustFromJson", |a| {
        want("mustFromJson", a, 1)?;
        parse_json(s(&a[0])?).map_err(e)
    });
    m.insert("urlquery_sprig_unused", |a| {
        Ok(Value::from(crate::exec::query_escape(&strval(&a[0]))))
    });
    m.remove("urlquery_sprig_unused");
}

fn regexes(m: &mut FuncMap) {
    for (name, strict) in [("regexMatch", false), ("mustRegexMatch", true)] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            match regex(name, s(&a[0])?) {
                Ok(re) => Ok(Value::Bool(re.is_match(&st(&a[1])?))),
                Err(x) if strict => Err(x),
                Err(_) => Ok(Value::Bool(false)),
            }
        });
    }
    for (name, strict) in [("regexFind", false), ("mustRegexFind", true)] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            match regex(name, s(&a[0])?) {
                Ok(re) => Ok(Value::from(
                    re.find(&st(&a[1])?)
                        .map(|x| x.as_str().to_string())
                        .unwrap_or_default(),
                )),
                Err(x) if strict => Err(x),
                Err(_) => Ok(Value::from("")),
            }
        });
    }
    for (name, strict) in [("regexFindAll", false), ("mustRegexFindAll", true)] {
        m.insert(name, move |a| {
            want(name, a, 3)?;
            let n = int(&a[2])?;
            match regex(name, s(&a[0])?) {
                Ok(re) => {
                    let v = st(&a[1])?;
                    let it = re.find_iter(&v).map(|x| Value::from(x.as_str()));
                    Ok(Value::list(if n < 0 {
                        it.collect()
                    } else {
                        it.take(n as usize).collect()
                    }))
                }
                Err(x) if strict => Err(x),
                Err(_) => Ok(Value::list(Vec::new())),
            }
        });
    }
    for (name, strict, literal) in [
        ("regexReplaceAll", false, false),
        ("mustRegexReplaceAll", true, false),
        ("regexReplaceAllLiteral", false, true),
        ("mustRegexReplaceAllLiteral", true, true),
    ] {
        m.insert(name, move |a| {
            want(name, a, 3)?;
            match regex(name, s(&a[0])?) {
                Ok(re) => {
                    let (v, r) = (st(&a[1])?, st(&a[2])?);
                    let out = if literal {
                        re.replace_all(&v, regex::NoExpand(&r)).into_owned()
                    } else {
                        re.replace_all(&v, r.as_str()).into_owned()
                    };
                    Ok(Value::from(out))
                }
                Err(x) if strict => Err(x),
                Err(_) => Ok(a[1].clone()),
            }
        });
    }
    for (name, strict) in [("regexSplit", false), ("mustRegexSplit", true)] {
        m.insert(name, move |a| {
            want(name, a, 3)?;
            let n = int(&a[2])?;
            match regex(name, s(&a[0])?) {
                Ok(re) => {
                    let v = st(&a[1])?;
                    if n == 0 {
                        return Ok(Value::list(Vec::new()));
                    }
                    let parts: Vec<Value> = if n < 0 {
                        re.split(&v).map(Value::from).collect()
                    } else {
                        re.splitn(&v, n as usize).map(Value::from).collect()
                    };
                    Ok(Value::list(parts))
                }
                Err(x) if strict => Err(x),
                Err(_) => Ok(Value::list(Vec::new())),
            }
        });
    }
    m.insert("regexQuoteMeta", |a| {
        want("regexQuoteMeta", a, 1)?;
        // Go's regexp.QuoteMeta escapes exactly these.
        let mut out = Vec::new();
        for &b in s(&a[0])? {
            if br"\.+*?()|[]{}^$".contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
        Ok(Value::from(out))
    });
}

fn defaults(m: &mut FuncMap) {
    m.insert("default", |a| {
        at_least("default", a, 1)?;
        Ok(match a.get(1) {
            Some(g) if !g.is_empty() => g.clone(),
            _ => a[0].clone(),
        })
    });
    m.insert("empty", |a| {
        want("empty", a, 1)?;
        Ok(Value::Bool(a[0].is_empty()))
    });
    m.insert("coalesce", |a| {
        Ok(a.iter()
            .find(|x| !x.is_empty())
            .cloned()
            .unwrap_or(Value::Nil))
    });
    m.insert("all", |a| Ok(Value::Bool(a.iter().all(|x| !x.is_empty()))));
    m.insert("any", |a| Ok(Value::Bool(a.iter().any(|x| !x.is_empty()))));
    m.insert("ternary", |a| {
        want("ternary", a, 3)?;
        Ok(if boolean(&a[2])? {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
    m.insert("fail", |a| {
        want("fail", a, 1)?;
        Err(e(st(&a[0])?))
    });
    m.insert("typeOf", |a| {
        want("typeOf", a, 1)?;
        Ok(Value::from(a[0].type_name()))
    });
    m.insert("kindOf", |a| {
        want("kindOf", a, 1)?;
        Ok(Value::from(a[0].kind_name()))
    });
    m.insert("typeIs", |a| {
        want("typeIs", a, 2)?;
        Ok(Value::Bool(s(&a[0])? == a[1].type_name().as_bytes()))
    });
    m.insert("typeIsLike", |a| {
        want("typeIsLike", a, 2)?;
        let t = a[1].type_name();
        let want_t = s(&a[0])?;
        Ok(Value::Bool(
            want_t == t.as_bytes() || want_t == format!("*{t}").as_bytes(),
        ))
    });
    m.insert("kindIs", |a| {
        want("kindIs", a, 2)?;
        Ok(Value::Bool(s(&a[0])? == a[1].kind_name().as_bytes()))
    });
    m.insert("deepEqual", |a| {
        want("deepEqual", a, 2)?;
        Ok(Value::Bool(deep_eq(&a[0], &a[1])))
    });
}

fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let j = parts.join("/");
    match (rooted, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

fn paths(m: &mut FuncMap) {
    for pre in ["", "os"] {
        let n = |b: &str| {
            if pre.is_empty() {
                b.to_string()
            } else {
                format!("os{}{}", b[..1].to_uppercase(), &b[1..])
            }
        };
        m.insert(&n("base"), |a| {
            want("base", a, 1)?;
            let p = st(&a[0])?;
            if p.is_empty() {
                return Ok(Value::from("."));
            }
            let t = p.trim_end_matches('/');
            if t.is_empty() {
                return Ok(Value::from("/"));
            }
            Ok(Value::from(t.rsplit('/').next().unwrap_or(t).to_string()))
        });
        m.insert(&n("dir"), |a| {
            want("dir", a, 1)?;
            let p = st(&a[0])?;
            let d = match p.rfind('/') {
                Some(i) => &p[..=i],
                None => "",
            };
            Ok(Value::from(clean_path(d)))
        });
        m.insert(&n("clean"), |a| {
            want("clean", a, 1)?;
            Ok(Value::from(clean_path(&st(&a[0])?)))
        });
        m.insert(&n("ext"), |a| {
            want("ext", a, 1)?;
            let p = st(&a[0])?;
            let last = p.rsplit('/').next().unwrap_or("");
            Ok(Value::from(
                last.rfind('.')
                    .map(|i| last[i..].to_string())
                    .unwrap_or_default(),
            ))
        });
        m.insert(&n("isAbs"), |a| {
            want("isAbs", a, 1)?;
            Ok(Value::Bool(st(&a[0])?.starts_with('/')))
        });
    }
}

/// Go reference-layout formatting (`2006-01-02 15:04:05`).
pub fn go_format(t: &DateTime<FixedOffset>, layout: &str) -> String {
    use chrono::{Datelike as _, Timelike as _};
    const TOKENS: &[&str] = &[
        "January",
        "Jan",
        "Monday",
        "Mon",
        "MST",
        "2006",
        "-07:00:00",
        "-0700",
        "-07:00",
        "-07",
        "Z07:00:00",
        "Z0700",
        "Z07:00",
        "Z07",
        "002",
        "__2",
        "_2",
        "01",
        "02",
        "03",
        "04",
        "05",
        "06",
        "15",
        "PM",
        "pm",
        "1",
        "2",
        "3",
        "4",
        "5",
    ];
    let mut out = String::new();
    let mut rest = layout;
    let off = t.offset().local_minus_utc();
    let zone = |sep: &str, secs: bool, z: bool| -> String {
        if z && off == 0 {
            return "Z".into();
        }
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        let mut s = format!("{sign}{:02}{sep}{:02}", a / 3600, a / 60 % 60);
        if secs {
            s.push_str(&format!("{sep}{:02}", a % 60));
        }
        s
    };
    'outer: while !rest.is_empty() {
        // Fractional seconds: .000 / .999 / ,000
        if let Some(c) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
            let n0 = c.bytes().take_while(|b| *b == b'0').count();
            let n9 = c.bytes().take_while(|b| *b == b'9').count();
            let n = n0.max(n9);
            let next = c.as_bytes().get(n);
            if n > 0 && !next.is_some_and(u8::is_ascii_digit) {
                let ns = format!("{:09}", t.nanosecond() % 1_000_000_000);
                let digits = &ns[..n.min(9)];
                if n0 > 0 {
                    out.push_str(&rest[..1]);
                    out.push_str(digits);
                } else {
                    let d = digits.trim_end_matches('0');
                    if !d.is_empty() {
                        out.push_str(&rest[..1]);
                        out.push_str(d);
                    }
                }
                rest = &c[n..];
                continue;
            }
        }
        for tok in TOKENS {
            if let Some(r) = rest.strip_prefix(tok) {
                let s = match *tok {
                    "January" => t.format("%B").to_string(),
                    "Jan" => t.format("%b").to_string(),
                    "Monday" => t.format("%A").to_string(),
                    "Mon" => t.format("%a").to_string(),
                    "MST" => {
                        if off == 0 {
                            "UTC".into()
                        } else {
                            zone("", false, false)
                        }
                    }
                    "2006" => format!("{:04}", t.year()),
                    "06" => format!("{:02}", t.year() % 100),
                    "01" => format!("{:02}", t.month()),
                    "1" => t.month().to_string(),
                    "02" => format!("{:02}", t.day()),
                    "_2" => format!("{:>2}", t.day()),
                    "2" => t.day().to_string(),
                    "002" => format!("{:03}", t.ordinal()),
                    "__2" => format!("{:>3}", t.ordinal()),
                    "15" => format!("{:02}", t.hour()),
                    "03" => format!("{:02}", t.hour12().1),
                    "3" => t.hour12().1.to_string(),
                    "04" => format!("{:02}", t.minute()),
                    "4" => t.minute().to_string(),
                    "05" => format!("{:02}", t.second()),
                    "5" => t.second().to_string(),
                    "PM" => if t.hour() >= 12 { "PM" } else { "AM" }.into(),
                    "pm" => if t.hour() >= 12 { "pm" } else { "am" }.into(),
                    "-0700" => zone("", false, false),
                    "-07:00" => zone(":", false, false),
                    "-07:00:00" => zone(":", true, false),
                    "-07" => zone("", false, false)[..3].to_string(),
                    "Z0700" => zone("", false, true),
                    "Z07:00" => zone(":", false, true),
                    "Z07:00:00" => zone(":", true, true),
                    "Z07" => {
                        let z = zone("", false, true);
                        z[..z.len().min(3)].to_string()
                    }
                    _ => String::new(),
                };
                out.push_str(&s);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Go's `time.Time.String()`.
pub fn go_time_string(t: &DateTime<FixedOffset>) -> String {
    let frac = if t.timestamp_subsec_nanos() == 0 {
        ""
    } else {
        ".999999999"
    };
    go_format(t, &format!("2006-01-02 15:04:05{frac} -0700 MST"))
}

fn time_arg(v: &Value, env: &SprigEnv) -> Option<DateTime<FixedOffset>> {
    match v {
        Value::Time(t) => Some(*t),
        Value::Int(i) => Utc.timestamp_opt(*i, 0).single().map(|t| t.fixed_offset()),
        _ => {
            let _ = env;
            None
        }
    }
}

/// Go's `time.Duration.String()` for whole seconds.
fn go_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let neg = secs < 0;
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if h > 0 {
        out.push_str(&format!("{h}h{m}m{s}s"));
    } else if m > 0 {
        out.push_str(&format!("{m}m{s}s"));
    } else {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parse a Go duration (`1h30m`, `-5m`, `90s`, `1.5h`) into nanoseconds.
fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if n == 0 {
            return None;
        }
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .bytes()
            .take_while(|b| !b.is_ascii_digit() && *b != b'.')
            .count();
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    Some(if neg { -(total as i128) } else { total as i128 })
}

/// Parse `value` with a Go layout (the common layouts, numeric fields only).
fn go_parse(layout: &str, value: &str, default_off: FixedOffset) -> Option<DateTime<FixedOffset>> {
    let mut fmt = String::new();
    let mut rest = layout;
    const MAP: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Jan", "%b"),
        ("Monday", "%A"),
        ("Mon", "%a"),
        ("2006", "%Y"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        ("Z0700", "%z"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        (".000000000", "%.9f"),
        (".000000", "%.6f"),
        (".000", "%.3f"),
        (".999999999", "%.f"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
    ];
    'o: while !rest.is_empty() {
        for (g, c) in MAP {
            if let Some(r) = rest.strip_prefix(g) {
                fmt.push_str(c);
                rest = r;
                continue 'o;
            }
        }
        let ch = rest.chars().next()?;
        if ch == '%' {
            fmt.push_str("%%");
        } else {
            fmt.push(ch);
        }
        rest = &rest[ch.len_utf8()..];
    }
    let value = if value.ends_with('Z') && fmt.contains("%:z") {
        format!("{}+00:00", &value[..value.len() - 1])
    } else {
        value.to_string()
    };
    if fmt.contains("%z") || fmt.contains("%:z") {
        return DateTime::parse_from_str(&value, &fmt).ok();
    }
    if fmt.contains("%H") || fmt.contains("%I") {
        let naive = chrono::NaiveDateTime::parse_from_str(&value, &fmt).ok()?;
        return default_off.from_local_datetime(&naive).single();
    }
    let d = chrono::NaiveDate::parse_from_str(&value, &fmt).ok()?;
    default_off
        .from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
        .single()
}

fn dates(m: &mut FuncMap, env: &SprigEnv) {
    let utc: FixedOffset = chrono::Offset::fix(&Utc);
    let en = env.clone();
    m.insert("now", move |_| Ok(Value::Time((en.clock)())));
    for name in ["date", "dateInZone", "date_in_zone"] {
        let en = env.clone();
        let zoned = name != "date";
        m.insert(name, move |a| {
            want(name, a, if zoned { 3 } else { 2 })?;
            let layout = st(&a[0])?;
            let t = time_arg(&a[1], &en).unwrap_or_else(|| (en.clock)());
            // Zones other than UTC need a tz database (I/O); every zone renders as UTC.
            let t = if zoned { t.with_timezone(&utc) } else { t };
            Ok(Value::from(go_format(&t, &layout)))
        });
    }
    for name in ["htmlDate", "htmlDateInZone"] {
        let en = env.clone();
        m.insert(name, move |a| {
            at_least(name, a, 1)?;
            let t = time_arg(&a[0], &en).unwrap_or_else(|| (en.clock)());
            Ok(Value::from(go_format(&t, "2006-01-02")))
        });
    }
    for (name, strict) in [("toDate", false), ("mustToDate", true)] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            match go_parse(&st(&a[0])?, &st(&a[1])?, utc) {
                Some(t) => Ok(Value::Time(t)),
                None if strict => Err(e("cannot parse the value with the layout")),
                None => Ok(Value::Time(
                    Utc.timestamp_opt(-62_135_596_800, 0)
                        .single()
                        .unwrap_or_default()
                        .fixed_offset(),
                )),
            }
        });
    }
    for (name, strict) in [
        ("dateModify", false),
        ("date_modify", false),
        ("mustDateModify", true),
        ("must_date_modify", true),
    ] {
        m.insert(name, move |a| {
            want(name, a, 2)?;
            let Value::Time(t) = &a[1] else {
                return Err(e(format!(
                    "wrong type for value; expected time.Time; got {}",
                    a[1].type_name()
                )));
            };
            match parse_go_duration(&st(&a[0])?) {
                Some(ns) => Ok(Value::Time(
                    *t + chrono::Duration::nanoseconds(
                        ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                    ),
                )),
                None if strict => Err(e("time: invalid duration")),
                None => Ok(Value::Time(*t)),
            }
        });
    }
    m.insert("unixEpoch", |a| {
        want("unixEpoch", a, 1)?;
        let Value::Time(t) = &a[0] else {
            return Err(e(format!(
                "wrong type for value; expected time.Time; got {}",
                a[0].type_name()
            )));
        };
        Ok(Value::from(t.timestamp().to_string()))
    });
    let en = env.clone();
    m.insert("ago", move |a| {
        want("ago", a, 1)?;
        let t = time_arg(&a[0], &en).unwrap_or_else(|| (en.clock)());
        Ok(Value::from(go_duration(((en.clock)() - t).num_seconds())))
    });
    m.insert("duration", |a| {
        want("duration", a, 1)?;
        Ok(Value::from(go_duration(to_i64(&a[0]))))
    });
    let en = env.clone();
    m.insert("durationRound", move |a| {
        want("durationRound", a, 1)?;
        let secs: i64 = match &a[0] {
            Value::Str(b) => (parse_go_duration(&lossy(b)).unwrap_or(0) / 1_000_000_000) as i64,
            Value::Time(t) => ((en.clock)() - *t).num_seconds(),
            v => to_i64(v) / 1_000_000_000,
        };
        let u = secs.unsigned_abs();
        let (y, mo, d, h, mi) = (31_536_000u64, 2_592_000u64, 86_400u64, 3_600u64, 60u64);
        let r = if u > y {
            format!("{}y", u / y)
        } else if u > mo {
            format!("{}mo", u / mo)
        } else if u > d {
            format!("{}d", u / d)
        } else if u > h {
            format!("{}h", u / h)
        } else if u > mi {
            format!("{}m", u / mi)
        } else {
            format!("{u}s")
        };
        Ok(Value::from(r))
    });
}

fn random(m: &mut FuncMap, env: &SprigEnv) {
    for (name, set) in [
        ("randAlphaNum", ALNUM.to_vec()),
        ("randAlpha", ALPHA.to_vec()),
        ("randNumeric", NUMERIC.to_vec()),
        ("randAscii", ascii_set()),
    ] {
        let en = env.clone();
        m.insert(name, move |a| {
            want(name, a, 1)?;
            rand_string(&en, int(&a[0])?, &set)
        });
    }
    let en = env.clone();
    m.insert("randInt", move |a| {
        want("randInt", a, 2)?;
        let (lo, hi) = (int(&a[0])?, int(&a[1])?);
        if hi <= lo {
            return Err(e("invalid argument to Intn"));
        }
        let mut rng = en.rng.lock().map_err(|_| e("random source unavailable"))?;
        Ok(Value::Int(lo + rng.below((hi - lo) as u64) as i64))
    });
    let en = env.clone();
    m.insert("randBytes", move |a| {
        want("randBytes", a, 1)?;
        let n = int(&a[0])?;
        if n < 0 {
            return Err(e("count must be non-negative"));
        }
        precheck("randBytes", n as usize * 4 / 3)?;
        let mut rng = en.rng.lock().map_err(|_| e("random source unavailable"))?;
        let b: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        Ok(Value::from(
            base64::engine::general_purpose::STANDARD.encode(b),
        ))
    });
    let en = env.clone();
    m.insert("uuidv4", move |a| {
        want("uuidv4", a, 0)?;
        let mut rng = en.rng.lock().map_err(|_| e("random source unavailable"))?;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Ok(Value::from(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )))
    });
    let en = env.clone();
    m.insert("shuffle", move |a| {
        want("shuffle", a, 1)?;
        let mut c: Vec<char> = st(&a[0])?.chars().collect();
        let mut rng = en.rng.lock().map_err(|_| e("random source unavailable"))?;
        for i in (1..c.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            c.swap(i, j);
        }
        Ok(Value::from(c.into_iter().collect::<String>()))
    });
    let en = env.clone();
    m.insert_with_cost("bcrypt", BCRYPT_COST, move |a| {
        want("bcrypt", a, 1)?;
        Ok(Value::from(bcrypt_hash(&en, s(&a[0])?)?))
    });
    let en = env.clone();
    m.insert_with_cost("htpasswd", BCRYPT_COST, move |a| {
        want("htpasswd", a, 3)?;
        let user = st(&a[0])?;
        if user.contains(':') {
            return Err(e("invalid username: it contains ':'"));
        }
        let pw = s(&a[1])?;
        if s(&a[2])? == b"sha" {
            use sha1::Digest as _;
            let d = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(pw));
            return Ok(Value::from(format!("{user}:{{SHA}}{d}")));
        }
        Ok(Value::from(format!("{user}:{}", bcrypt_hash(&en, pw)?)))
    });
}
