//! Template values: Go's dynamic values as the templates ESO runs see them.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A byte string (Go strings are bytes: binary provider values stay intact).
pub type Bytes = Arc<[u8]>;

/// A map value. `strings` marks Go's `map[string]string` (ESO's data context), whose absent key
/// reads as `""` through `index`; other maps (`map[string]interface{}`) read as no value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    /// The entries, in key order (Go visits map keys sorted).
    pub entries: BTreeMap<String, Value>,
    /// Every value is a string (Go `map[string]string`).
    pub strings: bool,
}

/// A template value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Go's nil / no value.
    #[default]
    Nil,
    /// A bool.
    Bool(bool),
    /// An integer (Go int, int64).
    Int(i64),
    /// A float64.
    Float(f64),
    /// A byte string.
    Str(Bytes),
    /// A list (Go slice).
    List(Arc<Vec<Value>>),
    /// A map with string keys.
    Map(Arc<Map>),
    /// A time (Go `time.Time`, from sprig's date functions).
    Time(chrono::DateTime<chrono::FixedOffset>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl AsRef<[u8]>) -> Value {
        Value::Str(Arc::from(s.as_ref()))
    }
    /// A list value.
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Arc::new(v))
    }
    /// A `map[string]interface{}` value.
    pub fn map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Arc::new(Map {
            entries: m,
            strings: false,
        }))
    }
    /// A `map[string]string` value (ESO's data context).
    pub fn string_map<K: Into<String>, V: AsRef<[u8]>>(
        it: impl IntoIterator<Item = (K, V)>,
    ) -> Value {
        Value::Map(Arc::new(Map {
            entries: it
                .into_iter()
                .map(|(k, v)| (k.into(), Value::str(v)))
                .collect(),
            strings: true,
        }))
    }
    /// Go's truthiness: false, 0, nil and empty strings, lists and maps are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.entries.is_empty(),
            Value::Time(_) => true,
        }
    }
    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Go's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(m) if m.strings => "map[string]string",
            Value::Map(_) => "map[string]interface {}",
            Value::Time(_) => "time.Time",
        }
    }
    /// Go's reflect kind name (sprig `kindOf`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Time(_) => "struct",
        }
    }
    /// Bytes of text the value holds (strings and keys, nested): what limits are measured in.
    pub fn text_size(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::List(l) => l.iter().map(Value::text_size).sum(),
            Value::Map(m) => m.entries.iter().map(|(k, v)| k.len() + v.text_size()).sum(),
            _ => 8,
        }
    }
    /// Sprig's `strval`: the value as text (strings as they are, others as `%v`).
    pub fn to_text(&self) -> Vec<u8> {
        match self {
            Value::Str(s) => s.to_vec(),
            other => crate::fmt::sprint_value(other),
        }
    }
    /// Whether the value is empty for sprig's `empty`/`default` (a time never is).
    pub fn is_empty(&self) -> bool {
        !self.truthy()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::str(s.as_bytes())
    }
}
impl From<Vec<u8>> for Value {
    fn from(s: Vec<u8>) -> Self {
        Value::Str(Arc::from(s))
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// A JSON value as a template value (numbers become float64, as in Go's encoding/json).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(a) => Value::list(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            Value::map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// A template value as JSON (strings that are not UTF-8 are converted lossily, as Go does).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Str(s) => serde_json::Value::String(String::from_utf8_lossy(s).into_owned()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => serde_json::Value::Object(
            m.entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Value::Time(t) => serde_json::Value::String(t.to_rfc3339()),
    }
}
