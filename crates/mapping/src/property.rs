//! `remoteRef.property`: ESO's gjson semantics, plus JSONPath for properties starting with `$`.

use crate::MappingError;

/// The gjson result rendered the way Go gjson's `Result.String()` does.
fn gjson_string(v: &gjson::Value<'_>) -> String {
    match v.kind() {
        gjson::Kind::Null => String::new(),
        gjson::Kind::True => "true".to_string(),
        gjson::Kind::False => "false".to_string(),
        gjson::Kind::String => v.str().to_string(),
        gjson::Kind::Number => format_number(v.json(), v.f64()),
        gjson::Kind::Array | gjson::Kind::Object => v.json().to_string(),
    }
}

/// Integers keep their raw text; other numbers print like Go's `FormatFloat(f, 'f', -1, 64)`
/// (shortest representation, never an exponent).
pub(crate) fn format_number(raw: &str, value: f64) -> String {
    let raw = raw.trim();
    if !raw.is_empty() && !raw.contains(['.', 'e', 'E']) {
        return raw.to_string();
    }
    // Rust's Display for f64 is the shortest round-tripping form without exponent, like Go's 'f', -1.
    format!("{value}")
}

fn is_json(payload: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok()
}

/// Remembers which payloads are valid JSON during one mapping, so 50 properties of one remote
/// secret validate it once (keyed by the payload's address and length while it is borrowed).
#[derive(Debug, Default)]
pub(crate) struct JsonMemo {
    valid: std::collections::HashMap<(usize, usize), bool>,
    /// Top-level members of an object payload, rendered like gjson (first occurrence wins).
    members: std::collections::HashMap<(usize, usize), std::collections::HashMap<String, String>>,
}

impl JsonMemo {
    pub(crate) fn is_json(&mut self, payload: &str) -> bool {
        *self
            .valid
            .entry((payload.as_ptr() as usize, payload.len()))
            .or_insert_with(|| is_json(payload))
    }

    /// A plain top-level key (no gjson syntax): one pass over the payload for all such lookups.
    fn member(&mut self, payload: &str, key: &str) -> Option<String> {
        let members = self
            .members
            .entry((payload.as_ptr() as usize, payload.len()))
            .or_insert_with(|| {
                let mut m = std::collections::HashMap::new();
                let v = gjson::parse(payload);
                if v.kind() == gjson::Kind::Object {
                    v.each(|k, val| {
                        m.entry(k.str().to_string())
                            .or_insert_with(|| gjson_string(&val));
                        true
                    });
                }
                m
            });
        members.get(key).cloned()
    }
}

/// A property gjson reads as one literal top-level key.
fn is_plain_key(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
/// Most `*`/`?` wildcards a gjson property may hold (see [`select`]).
pub const MAX_WILDCARDS: usize = 8;

/// Select `property` from `payload`. `None` when it does not exist; an error for a property
/// with more than [`MAX_WILDCARDS`] wildcards.
pub fn select(payload: &str, property: &str) -> Result<Option<String>, String> {
    select_checked(payload, property, &mut JsonMemo::default())
}

fn select_checked(
    payload: &str,
    property: &str,
    memo: &mut JsonMemo,
) -> Result<Option<String>, String> {
    if property.starts_with('$') {
        return select_jsonpath(payload, property);
    }
    if !memo.is_json(payload) {
        return Ok(None);
    }
    // QUIRK: gjson matches `*`/`?` patterns by backtracking, exponential in the number of
    // wildcards on a long key (a fuzzed path with ~45 `*` ran for over 10 s). A path with more
    // than MAX_WILDCARDS of them is refused instead (docs/migrating-from-eso.md).
    let wildcards = property.chars().filter(|c| matches!(c, '*' | '?')).count();
    if wildcards > MAX_WILDCARDS {
        return Err(format!(
            "property has {wildcards} wildcards (`*`, `?`); at most {MAX_WILDCARDS} are supported"
        ));
    }
    if is_plain_key(property) {
        return Ok(memo.member(payload, property));
    }
    // A dotted property first means a literal top-level key ("foo.bar"), then a nested path.
    if property.contains('.') {
        let escaped = property.replace('.', "\\.");
        let v = gjson::get(payload, &escaped);
        if v.exists() {
            return Ok(Some(gjson_string(&v)));
        }
    }
    let v = gjson::get(payload, property);
    if v.exists() {
        Ok(Some(gjson_string(&v)))
    } else {
        Ok(None)
    }
}

fn json_value_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => {
            let raw = n.to_string();
            format_number(&raw, n.as_f64().unwrap_or_default())
        }
        other => other.to_string(),
    }
}

/// Beyond ESO: a property starting with `$` is a JSONPath (RFC 9535). One match gives its value;
/// several give a JSON array of them; none means the property does not exist.
/// Most brackets and parentheses a JSONPath property may nest or hold (see [`select`]).
pub const MAX_JSONPATH_GROUPS: usize = 16;

fn select_jsonpath(payload: &str, path: &str) -> Result<Option<String>, String> {
    use jsonpath_rust::JsonPath as _;
    // QUIRK: the JSONPath parser backtracks on deeply nested filter expressions (a fuzzed path
    // of nested `in(in(` ran for over 10 s): more groups than this are refused.
    let groups = path.chars().filter(|c| matches!(c, '(' | '[')).count();
    if groups > MAX_JSONPATH_GROUPS {
        return Err(format!(
            "JSONPath property has {groups} brackets and parentheses; at most {MAX_JSONPATH_GROUPS} are supported"
        ));
    }
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(payload) else {
        return Ok(None);
    };
    let found = doc.query(path).map_err(|e| e.to_string())?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(json_value_string(one))),
        many => Ok(Some(
            serde_json::Value::Array(many.iter().map(|v| (*v).clone()).collect()).to_string(),
        )),
    }
}

/// Select a property from a remote payload, with an error naming the field on failure.
pub(crate) fn select_for(
    field: &str,
    key: &str,
    payload: &str,
    property: &str,
    memo: &mut JsonMemo,
) -> Result<String, MappingError> {
    match select_checked(payload, property, memo) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(MappingError::PropertyNotFound {
            field: field.to_string(),
            key: key.to_string(),
            property: property.to_string(),
        }),
        Err(reason) => Err(MappingError::InvalidJsonPath {
            field: field.to_string(),
            key: key.to_string(),
            property: property.to_string(),
            reason,
        }),
    }
}

/// Flatten a JSON object one level, as ESO's `GetSecretMap` does: strings unescaped, every other
/// value as its raw JSON text, `null` as empty.
pub(crate) fn flatten_object(payload: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let v = gjson::parse(payload);
    if v.kind() != gjson::Kind::Object || !is_json(payload) {
        return None;
    }
    let mut out = Vec::new();
    v.each(|k, val| {
        let s = match val.kind() {
            gjson::Kind::String => val.str().to_string(),
            gjson::Kind::Null => String::new(),
            _ => val.json().to_string(),
        };
        out.push((k.str().to_string(), s.into_bytes()));
        true
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gjson_semantics() {
        let p = r#"{"user":"admin","n":42,"f":1.50,"e":1e3,"nul":null,"b":true,"o":{"a": 1},"arr":[1,2],"foo.bar":"lit","foo":{"bar":"nested"},"x":{"y.z":"deep"}}"#;
        let s = |q: &str| select(p, q).ok().flatten();
        assert_eq!(s("user").as_deref(), Some("admin"));
        assert_eq!(s("n").as_deref(), Some("42"));
        assert_eq!(s("f").as_deref(), Some("1.5"));
        assert_eq!(s("e").as_deref(), Some("1000"));
        assert_eq!(s("nul").as_deref(), Some(""));
        assert_eq!(s("b").as_deref(), Some("true"));
        assert_eq!(s("o").as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(s("arr.1").as_deref(), Some("2"));
        assert_eq!(s("foo.bar").as_deref(), Some("lit"));
        assert_eq!(s("missing"), None);
        assert_eq!(select("not json", "a").ok().flatten(), None);
    }

    #[test]
    fn nested_when_no_literal_key() {
        let p = r#"{"foo":{"bar":"nested"}}"#;
        assert_eq!(
            select(p, "foo.bar").ok().flatten().as_deref(),
            Some("nested")
        );
    }

    #[test]
    fn jsonpath_extension() {
        let p = r#"{"a":[{"n":"x"},{"n":"y"}],"b":{"c":"d"}}"#;
        assert_eq!(select(p, "$.b.c").ok().flatten().as_deref(), Some("d"));
        assert_eq!(
            select(p, "$.a[*].n").ok().flatten().as_deref(),
            Some(r#"["x","y"]"#)
        );
        assert_eq!(select(p, "$.zz").ok().flatten(), None);
    }

    #[test]
    fn flatten_one_level() {
        let m = flatten_object(r#"{"a":"s","b":{"c":1},"d":null,"e":2}"#).unwrap_or_default();
        let m: std::collections::BTreeMap<_, _> = m.into_iter().collect();
        assert_eq!(m["a"], b"s");
        assert_eq!(m["b"], br#"{"c":1}"#);
        assert_eq!(m["d"], b"");
        assert_eq!(m["e"], b"2");
        assert!(flatten_object("[1]").is_none());
        assert!(flatten_object("nope").is_none());
    }
}

#[cfg(test)]
mod wildcard_tests {
    use super::*;

    #[test]
    fn many_wildcards_are_refused_quickly_and_a_few_still_match() {
        let key = "\u{fffd}".repeat(300);
        let payload = format!("{{\"{key}\":1}}");
        let property = "*a".repeat(40);
        let started = std::time::Instant::now();
        let err = select(&payload, &property).unwrap_err();
        assert!(err.contains("40 wildcards"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let nested = format!("$.a[?{}@.b{}]", "in(".repeat(20), ")".repeat(20));
        assert!(select("{}", &nested).unwrap_err().contains("brackets"));
        assert_eq!(
            select(r#"{"a":[1,2]}"#, "$.a[1]").unwrap().as_deref(),
            Some("2")
        );
        assert_eq!(
            select(r#"{"password":"x","user":"u"}"#, "pass*")
                .unwrap()
                .as_deref(),
            Some("x")
        );
    }
}
