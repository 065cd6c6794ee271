//! The sprig functions of ESO v2.9's map that need more than string handling: `abbrevboth`,
//! `encryptAES`/`decryptAES` (AES-256-CBC, PKCS#7 padding, IV first, base64 — sprig's format),
//! `derivePassword` (the Master Password algorithm), `semver`/`semverCompare` (Masterminds
//! semver v3 rules) and `urlParse`/`urlJoin` (Go `net/url`).
//!
//! `semver` returns a map with `Major`, `Minor`, `Patch`, `Prerelease`, `Metadata` and
//! `Original` (Go returns a `*Version` whose methods templates call by the same names).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;

use crate::funcs::{FuncError, FuncMap};
use crate::value::Value;

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

fn int(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Nil => Err(e("invalid value; expected int")),
        o => Err(e(format!(
            "wrong type for value; expected int; got {}",
            o.type_name()
        ))),
    }
}

/// Extra fuel for one `derivePassword` call (scrypt with N=32768, r=8: tens of ms).
pub const DERIVE_PASSWORD_COST: u64 = 100_000;

pub(crate) fn register(m: &mut FuncMap) {
    m.insert("abbrevboth", |a| {
        want("abbrevboth", a, 3)?;
        let (l, r, v) = (int(&a[0])?, int(&a[1])?, s(&a[2])?);
        if r < 4 || (l > 0 && r < 7) {
            return Ok(Value::str(v));
        }
        Ok(Value::from(abbreviate_full(v, l, r)))
    });
    m.insert("encryptAES", |a| {
        want("encryptAES", a, 2)?;
        encrypt_aes(s(&a[0])?, s(&a[1])?).map(Value::from)
    });
    m.insert("decryptAES", |a| {
        want("decryptAES", a, 2)?;
        decrypt_aes(s(&a[0])?, s(&a[1])?).map(Value::from)
    });
    m.insert_with_cost("derivePassword", DERIVE_PASSWORD_COST, |a| {
        want("derivePassword", a, 5)?;
        let counter = match &a[0] {
            Value::Int(i) if (0..=i64::from(u32::MAX)).contains(i) => *i as u32,
            o => {
                return Err(e(format!(
                    "wrong type for value; expected uint32; got {}",
                    o.type_name()
                )));
            }
        };
        derive_password(counter, &st(&a[1])?, s(&a[2])?, s(&a[3])?, s(&a[4])?).map(Value::from)
    });
    m.insert("semver", |a| {
        want("semver", a, 1)?;
        let v = Version::parse(&st(&a[0])?)?;
        Ok(v.to_value())
    });
    m.insert("semverCompare", |a| {
        want("semverCompare", a, 2)?;
        let c = Constraints::parse(&st(&a[0])?)?;
        let v = Version::parse(&st(&a[1])?)?;
        Ok(Value::Bool(c.check(&v)))
    });
    m.insert("urlParse", |a| {
        want("urlParse", a, 1)?;
        let u = Url::parse(&st(&a[0])?).map_err(|m| e(format!("unable to parse url: {m}")))?;
        Ok(u.to_value())
    });
    m.insert("urlJoin", |a| {
        want("urlJoin", a, 1)?;
        let d = match &a[0] {
            Value::Map(m) if !m.strings => m.clone(),
            // A nil map reads as empty in Go.
            Value::Nil => std::sync::Arc::new(crate::value::Map::default()),
            o => {
                return Err(e(format!(
                    "wrong type for value; expected map[string]interface {{}}; got {}",
                    o.type_name()
                )));
            }
        };
        let get = |k: &str| -> Result<String, FuncError> {
            match d.entries.get(k) {
                None => Ok(String::new()),
                Some(Value::Str(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
                Some(o) => Err(e(format!(
                    "unable to parse {k} key, must be of type string, but {} found",
                    o.kind_name()
                ))),
            }
        };
        let mut u = Url {
            scheme: get("scheme")?,
            host: get("host")?,
            path: get("path")?,
            query: get("query")?,
            opaque: get("opaque")?,
            fragment: get("fragment")?,
            user: None,
        };
        let ui = get("userinfo")?;
        if !ui.is_empty() {
            let t = Url::parse(&format!("proto://{ui}@host"))
                .map_err(|m| e(format!("unable to parse userinfo in dict: {m}")))?;
            u.user = t.user;
        }
        Ok(Value::from(u.to_string()))
    });
}

/// goutils `AbbreviateFull` (byte offsets, as in Go).
fn abbreviate_full(v: &[u8], offset: i64, max: i64) -> Vec<u8> {
    let len = v.len() as i64;
    if v.is_empty() || max < 4 {
        return Vec::new();
    }
    if len <= max {
        return v.to_vec();
    }
    let mut off = offset.min(len);
    if len - off < max - 3 {
        off = len - (max - 3);
    }
    let mut out = Vec::new();
    if off <= 4 {
        out.extend_from_slice(&v[..(max - 3) as usize]);
        out.extend_from_slice(b"...");
        return out;
    }
    if max < 7 {
        return Vec::new();
    }
    out.extend_from_slice(b"...");
    if off + max - 3 < len {
        out.extend_from_slice(&abbreviate_full(&v[off as usize..], 0, max - 3));
    } else {
        out.extend_from_slice(&v[(len - (max - 3)) as usize..]);
    }
    out
}

fn aes_key(password: &[u8]) -> aes::Aes256 {
    use aes::cipher::KeyInit as _;
    let mut key = [0u8; 32];
    let n = password.len().min(32);
    key[..n].copy_from_slice(&password[..n]);
    aes::Aes256::new(&key.into())
}

fn encrypt_aes(password: &[u8], plain: &[u8]) -> Result<String, FuncError> {
    use aes::cipher::BlockCipherEncrypt as _;
    if plain.is_empty() {
        return Ok(String::new());
    }
    let cipher = aes_key(password);
    let pad = 16 - plain.len() % 16;
    let mut content = plain.to_vec();
    content.extend(std::iter::repeat_n(pad as u8, pad));
    let mut iv = [0u8; 16];
    getrandom::fill(&mut iv).map_err(|_| e("random source unavailable"))?;
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in content.chunks(16) {
        let mut block = [0u8; 16];
        for (i, b) in block.iter_mut().enumerate() {
            *b = chunk[i] ^ prev[i];
        }
        let mut ga = block.into();
        cipher.encrypt_block(&mut ga);
        prev = ga.into();
        out.extend_from_slice(&prev);
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

fn decrypt_aes(password: &[u8], crypt64: &[u8]) -> Result<Vec<u8>, FuncError> {
    use aes::cipher::BlockCipherDecrypt as _;
    if crypt64.is_empty() {
        return Ok(Vec::new());
    }
    let crypt = base64::engine::general_purpose::STANDARD
        .decode(crypt64)
        .map_err(|_| e("illegal base64 data"))?;
    // Go panics (slice bounds, "input not full blocks") on these; the panic becomes an error.
    if crypt.len() < 16 {
        return Err(e("ciphertext shorter than the AES block size"));
    }
    if (crypt.len() - 16) % 16 != 0 {
        return Err(e("crypto/cipher: input not full blocks"));
    }
    let cipher = aes_key(password);
    let mut prev: [u8; 16] = crypt[..16].try_into().map_err(|_| e("bad IV"))?;
    let mut out = Vec::with_capacity(crypt.len() - 16);
    for chunk in crypt[16..].chunks(16) {
        let mut ga: [u8; 16] = chunk.try_into().map_err(|_| e("bad block"))?;
        let saved = ga;
        let mut g = ga.into();
        cipher.decrypt_block(&mut g);
        ga = g.into();
        for i in 0..16 {
            out.push(ga[i] ^ prev[i]);
        }
        prev = saved;
    }
    let Some(&pad) = out.last() else {
        return Err(e("empty ciphertext"));
    };
    // Go slices `len - pad` unchecked: a pad byte larger than the text panics.
    if usize::from(pad) > out.len() {
        return Err(e("slice bounds out of range"));
    }
    out.truncate(out.len() - usize::from(pad));
    Ok(out)
}

const MASTER_PASSWORD_SEED: &[u8] = b"com.lyndir.masterpassword";

fn password_templates(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return None,
    })
}

fn template_chars(c: u8) -> &'static [u8] {
    match c {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

fn derive_password(
    counter: u32,
    kind: &str,
    password: &[u8],
    user: &[u8],
    site: &[u8],
) -> Result<String, FuncError> {
    use hmac::{KeyInit as _, Mac as _};
    let Some(templates) = password_templates(kind) else {
        return Ok(format!("cannot find password template {kind}"));
    };
    let mut salt = MASTER_PASSWORD_SEED.to_vec();
    salt.extend_from_slice(&(user.len() as u32).to_be_bytes());
    salt.extend_from_slice(user);
    let params = scrypt::Params::new(15, 8, 2).map_err(|_| e("scrypt parameters"))?;
    let mut key = [0u8; 64];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|_| e("scrypt output"))?;
    let mut msg = MASTER_PASSWORD_SEED.to_vec();
    msg.extend_from_slice(&(site.len() as u32).to_be_bytes());
    msg.extend_from_slice(site);
    msg.extend_from_slice(&counter.to_be_bytes());
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| e("hmac key length"))?;
    mac.update(&msg);
    let seed = mac.finalize().into_bytes();
    let temp = templates[usize::from(seed[0]) % templates.len()].as_bytes();
    let out: String = temp
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let set = template_chars(*c);
            char::from(set[usize::from(seed[i + 1]) % set.len()])
        })
        .collect();
    Ok(out)
}

// --- semver (Masterminds semver v3 rules)

/// A parsed version.
#[derive(Debug, Clone, PartialEq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    meta: String,
    original: String,
}

const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

struct Res4 {
    version: regex::Regex,
    constraint: regex::Regex,
    range: regex::Regex,
    find: regex::Regex,
    valid: regex::Regex,
}

fn res() -> Result<&'static Res4, FuncError> {
    static R: OnceLock<Option<Res4>> = OnceLock::new();
    R.get_or_init(|| {
        let version = regex::Regex::new(
            r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$",
        )
        .ok()?;
        let constraint = regex::Regex::new(&format!(r"^\s*({OPS})\s*({CV})\s*$")).ok()?;
        let range = regex::Regex::new(&format!(r"\s*({CV})\s+-\s+({CV})\s*")).ok()?;
        let find = regex::Regex::new(&format!(r"({OPS})\s*({CV})")).ok()?;
        let valid = regex::Regex::new(&format!(
            r"^(\s*({OPS})\s*({CV})\s*)((?:\s+|,\s*)({OPS})\s*({CV})\s*)*$"
        ))
        .ok()?;
        Some(Res4 {
            version,
            constraint,
            range,
            find,
            valid,
        })
    })
    .as_ref()
    .ok_or_else(|| e("semver patterns"))
}

impl Version {
    fn parse(v: &str) -> Result<Version, FuncError> {
        let m = res()?
            .version
            .captures(v)
            .ok_or_else(|| e("Invalid Semantic Version"))?;
        let seg = |i: usize| -> Result<u64, FuncError> {
            match m.get(i) {
                None => Ok(0),
                Some(g) => g
                    .as_str()
                    .trim_start_matches('.')
                    .parse::<u64>()
                    .map_err(|err| e(format!("Error parsing version segment: {err}"))),
            }
        };
        let pre = m.get(5).map_or("", |g| g.as_str()).to_string();
        let meta = m.get(8).map_or("", |g| g.as_str()).to_string();
        for p in pre.split('.').filter(|_| !pre.is_empty()) {
            if p.bytes().all(|c| c.is_ascii_digit()) {
                if p.len() > 1 && p.starts_with('0') {
                    return Err(e("Version segment starts with 0"));
                }
            } else if !p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                return Err(e("Invalid Prerelease string"));
            }
        }
        Ok(Version {
            major: seg(1)?,
            minor: seg(2)?,
            patch: seg(3)?,
            pre,
            meta,
            original: v.to_string(),
        })
    }

    fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("Major".to_string(), Value::Int(self.major as i64));
        m.insert("Minor".to_string(), Value::Int(self.minor as i64));
        m.insert("Patch".to_string(), Value::Int(self.patch as i64));
        m.insert("Prerelease".to_string(), Value::from(self.pre.as_str()));
        m.insert("Metadata".to_string(), Value::from(self.meta.as_str()));
        m.insert("Original".to_string(), Value::from(self.original.as_str()));
        Value::map(m)
    }

    fn cmp(&self, o: &Version) -> Ordering {
        let c = (self.major, self.minor, self.patch).cmp(&(o.major, o.minor, o.patch));
        if c != Ordering::Equal {
            return c;
        }
        match (self.pre.is_empty(), o.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_pre(&self.pre, &o.pre),
        }
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let (sa, sb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..sa.len().max(sb.len()) {
        let (x, y) = (
            sa.get(i).copied().unwrap_or(""),
            sb.get(i).copied().unwrap_or(""),
        );
        let d = compare_pre_part(x, y);
        if d != Ordering::Equal {
            return d;
        }
    }
    Ordering::Equal
}

fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (s.parse::<u64>(), o.parse::<u64>()) {
        (Err(_), Err(_)) => {
            if s > o {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Ok(a), Ok(b)) => {
            if a > b {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
    }
}

struct Constraint {
    op: String,
    con: Version,
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

struct Constraints(Vec<Vec<Constraint>>);

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

impl Constraints {
    fn parse(text: &str) -> Result<Constraints, FuncError> {
        let r = res()?;
        // Hyphen ranges become `>= a, <= b`.
        let mut c = text.to_string();
        let ranges: Vec<(String, String, String)> = r
            .range
            .captures_iter(text)
            .map(|m| {
                (
                    m.get(0).map_or("", |g| g.as_str()).to_string(),
                    m.get(1).map_or("", |g| g.as_str()).to_string(),
                    m.get(11).map_or("", |g| g.as_str()).to_string(),
                )
            })
            .collect();
        for (whole, a, b) in ranges {
            c = c.replacen(&whole, &format!(">= {a}, <= {b} "), 1);
        }
        let mut or = Vec::new();
        for part in c.split("||") {
            if !r.valid.is_match(part) {
                return Err(e(format!("improper constraint: {part}")));
            }
            let mut found: Vec<&str> = r.find.find_iter(part).map(|m| m.as_str()).collect();
            if found.is_empty() {
                found.push(part);
            }
            let mut and = Vec::new();
            for f in found {
                and.push(Constraint::parse(f)?);
            }
            or.push(and);
        }
        Ok(Constraints(or))
    }

    fn check(&self, v: &Version) -> bool {
        self.0.iter().any(|and| and.iter().all(|c| c.check(v)))
    }
}

impl Constraint {
    fn parse(c: &str) -> Result<Constraint, FuncError> {
        let r = res()?;
        if c.is_empty() {
            return Ok(Constraint {
                op: String::new(),
                con: Version::parse("0.0.0")?,
                dirty: true,
                minor_dirty: false,
                patch_dirty: false,
            });
        }
        let m = r
            .constraint
            .captures(c)
            .ok_or_else(|| e(format!("improper constraint: {c}")))?;
        let g = |i: usize| m.get(i).map_or("", |g| g.as_str());
        let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
        let ver = if is_x(g(3)) || g(3).is_empty() {
            dirty = true;
            format!("0.0.0{}", g(6))
        } else if is_x(g(4).trim_start_matches('.')) || g(4).is_empty() {
            dirty = true;
            minor_dirty = true;
            format!("{}.0.0{}", g(3), g(6))
        } else if is_x(g(5).trim_start_matches('.')) || g(5).is_empty() {
            dirty = true;
            patch_dirty = true;
            format!("{}{}.0{}", g(3), g(4), g(6))
        } else {
            g(2).to_string()
        };
        let con = Version::parse(&ver).map_err(|_| e("constraint Parser Error"))?;
        Ok(Constraint {
            op: g(1).to_string(),
            con,
            dirty,
            minor_dirty,
            patch_dirty,
        })
    }

    fn check(&self, v: &Version) -> bool {
        let c = &self.con;
        let pre_excluded = !v.pre.is_empty() && c.pre.is_empty();
        match self.op.as_str() {
            "" | "=" => {
                if pre_excluded {
                    return false;
                }
                if self.dirty {
                    return self.tilde(v);
                }
                v.cmp(c) == Ordering::Equal
            }
            "!=" => {
                if self.dirty {
                    if pre_excluded {
                        return false;
                    }
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_pre(&v.pre, &c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                v.cmp(c) != Ordering::Equal
            }
            ">" => {
                if pre_excluded {
                    return false;
                }
                if !self.dirty {
                    return v.cmp(c) == Ordering::Greater;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || self.minor_dirty {
                    false
                } else if self.patch_dirty {
                    v.minor > c.minor
                } else {
                    v.cmp(c) == Ordering::Greater
                }
            }
            "<" => !pre_excluded && v.cmp(c) == Ordering::Less,
            ">=" | "=>" => !pre_excluded && v.cmp(c) != Ordering::Less,
            "<=" | "=<" => {
                if pre_excluded {
                    return false;
                }
                if !self.dirty {
                    return v.cmp(c) != Ordering::Greater;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            "~" | "~>" => !pre_excluded && self.tilde(v),
            "^" => {
                if pre_excluded || v.cmp(c) == Ordering::Less {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
            _ => false,
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if !v.pre.is_empty() && c.pre.is_empty() {
            return false;
        }
        if v.cmp(c) == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

// --- net/url

#[derive(Debug, Clone, Default)]
struct Url {
    scheme: String,
    opaque: String,
    user: Option<(String, Option<String>)>,
    host: String,
    path: String,
    query: String,
    fragment: String,
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go `url.unescape` (path/fragment/userinfo modes: `+` stays).
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(unhex),
                b.get(i + 2).copied().and_then(unhex),
            ) else {
                let end = (i + 3).min(b.len());
                return Err(format!(
                    "invalid URL escape {:?}",
                    String::from_utf8_lossy(&b[i..end])
                ));
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Clone, Copy, PartialEq)]
enum Enc {
    Path,
    Host,
    User,
    Fragment,
}

/// Go `url.shouldEscape`.
fn should_escape(c: u8, mode: Enc) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Enc::Host
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Enc::Path => c == b'?',
            Enc::User => matches!(c, b'@' | b'/' | b'?' | b':'),
            Enc::Fragment => false,
            Enc::Host => true,
        },
        b'!' | b'(' | b')' | b'*' if mode == Enc::Fragment => false,
        _ => true,
    }
}

fn escape(s: &str, mode: Enc) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

impl Url {
    /// Go `url.Parse` (the parts templates read; errors as Go words them, roughly).
    fn parse(raw: &str) -> Result<Url, String> {
        let (rest, frag) = match raw.split_once('#') {
            Some((a, f)) => (a, Some(f)),
            None => (raw, None),
        };
        let mut u = Url::default();
        if let Some(f) = frag {
            u.fragment = unescape(f)?;
        }
        if rest.bytes().any(|c| c < 0x20 || c == 0x7f) {
            return Err("net/url: invalid control character in URL".into());
        }
        // Scheme.
        let mut rest = rest;
        for (i, c) in rest.bytes().enumerate() {
            if c.is_ascii_alphabetic() {
                continue;
            }
            if c.is_ascii_digit() || c == b'+' || c == b'-' || c == b'.' {
                if i == 0 {
                    break;
                }
                continue;
            }
            if c == b':' {
                if i == 0 {
                    return Err("missing protocol scheme".into());
                }
                u.scheme = rest[..i].to_ascii_lowercase();
                rest = &rest[i + 1..];
            }
            break;
        }
        if let Some((a, q)) = rest.split_once('?') {
            u.query = q.to_string();
            rest = a;
        }
        if !rest.starts_with('/') && !u.scheme.is_empty() {
            u.opaque = rest.to_string();
            return Ok(u);
        }
        if u.scheme.is_empty()
            && let Some(colon) = rest.find(':')
            && rest.find('/').is_none_or(|s| colon < s)
        {
            return Err("first path segment in URL cannot contain colon".into());
        }
        if let Some(after) = rest.strip_prefix("//")
            && (!u.scheme.is_empty() || !after.starts_with('/'))
        {
            let (auth, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let host = match auth.rfind('@') {
                Some(i) => {
                    let ui = &auth[..i];
                    let (name, pw) = match ui.split_once(':') {
                        Some((n, p)) => (unescape(n)?, Some(unescape(p)?)),
                        None => (unescape(ui)?, None),
                    };
                    u.user = Some((name, pw));
                    &auth[i + 1..]
                }
                None => auth,
            };
            u.host = unescape(host)?;
            rest = path;
        }
        u.path = unescape(rest)?;
        Ok(u)
    }

    fn hostname(&self) -> String {
        let h = &self.host;
        if let Some(r) = h.strip_prefix('[') {
            return r.split(']').next().unwrap_or("").to_string();
        }
        match h.rfind(':') {
            Some(i) if h[i + 1..].bytes().all(|c| c.is_ascii_digit()) => h[..i].to_string(),
            _ => h.clone(),
        }
    }

    fn userinfo(&self) -> String {
        match &self.user {
            None => String::new(),
            Some((n, None)) => escape(n, Enc::User),
            Some((n, Some(p))) => format!("{}:{}", escape(n, Enc::User), escape(p, Enc::User)),
        }
    }

    fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        for (k, v) in [
            ("scheme", self.scheme.clone()),
            ("host", self.host.clone()),
            ("hostname", self.hostname()),
            ("path", self.path.clone()),
            ("query", self.query.clone()),
            ("opaque", self.opaque.clone()),
            ("fragment", self.fragment.clone()),
            ("userinfo", self.userinfo()),
        ] {
            m.insert(k.to_string(), Value::from(v));
        }
        Value::map(m)
    }
}

impl std::fmt::Display for Url {
    /// Go `(*url.URL).String`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = String::new();
        if !self.scheme.is_empty() {
            buf.push_str(&self.scheme);
            buf.push(':');
        }
        if !self.opaque.is_empty() {
            buf.push_str(&self.opaque);
        } else {
            if !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some() {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    buf.push_str("//");
                }
                if self.user.is_some() {
                    buf.push_str(&self.userinfo());
                    buf.push('@');
                }
                buf.push_str(&escape(&self.host, Enc::Host));
            }
            let path = escape(&self.path, Enc::Path);
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                buf.push('/');
            }
            if buf.is_empty()
                && let Some(colon) = path.find(':')
                && path.find('/').is_none_or(|s| colon < s)
            {
                buf.push_str("./");
            }
            buf.push_str(&path);
        }
        if !self.query.is_empty() {
            buf.push('?');
            buf.push_str(&self.query);
        }
        if !self.fragment.is_empty() {
            buf.push('#');
            buf.push_str(&escape(&self.fragment, Enc::Fragment));
        }
        f.write_str(&buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aes_round_trip_and_fresh_iv() {
        let a = encrypt_aes(b"secretkey", b"plain text").unwrap();
        let b = encrypt_aes(b"secretkey", b"plain text").unwrap();
        assert_ne!(a, b, "each encryption draws a new IV");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 16 + 16, "IV plus one padded block");
        assert_eq!(
            decrypt_aes(b"secretkey", a.as_bytes()).unwrap(),
            b"plain text"
        );
        assert_eq!(encrypt_aes(b"k", b"").unwrap(), "");
        for n in [1, 15, 16, 17, 100] {
            let p = vec![b'x'; n];
            let c = encrypt_aes(b"k", &p).unwrap();
            assert_eq!(decrypt_aes(b"k", c.as_bytes()).unwrap(), p);
        }
        assert!(decrypt_aes(b"k", b"AAAA").is_err());
    }

    #[test]
    fn semver_rules() {
        let ok = |c: &str, v: &str| {
            Constraints::parse(c)
                .unwrap()
                .check(&Version::parse(v).unwrap())
        };
        assert!(ok(">=1.2.0", "1.2.3"));
        assert!(!ok(">=1.2.0", "1.1.9"));
        assert!(ok("^1.2", "1.9.0"));
        assert!(!ok("^1.2", "2.0.0"));
        assert!(ok("~1.2.3", "1.2.9"));
        assert!(!ok("~1.2.3", "1.3.0"));
        assert!(ok("1.2 - 1.4", "1.3.5"));
        assert!(ok("<1 || >=3", "3.1.0"));
        assert!(!ok(">=1.0.0", "1.2.0-beta"));
        assert!(ok(">=1.0.0-0", "1.2.0-beta"));
        assert!(ok("1.x", "1.7.7"));
        assert!(Version::parse("1.2.3.4").is_err());
    }
}
