//! The function map: Go's built-in functions and the custom functions a caller registers.

use std::collections::HashMap;
use std::sync::Arc;

use crate::value::Value;

/// An error a function returns; the engine reports it as `error calling NAME: MESSAGE`.
/// Messages must not quote argument values (they may be secrets).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FuncError(pub String);

impl From<String> for FuncError {
    fn from(s: String) -> Self {
        FuncError(s)
    }
}
impl From<&str> for FuncError {
    fn from(s: &str) -> Self {
        FuncError(s.to_string())
    }
}

/// A template function: evaluated arguments in, a value or an error out.
pub type Func = Arc<dyn Fn(&[Value]) -> Result<Value, FuncError> + Send + Sync>;

/// A registered function with its work cost (charged to the execution's fuel on each call, on
/// top of one unit per KiB of text in its arguments and result).
pub struct FuncEntry {
    /// The name templates call it by.
    pub name: String,
    /// The function.
    pub f: Func,
    /// Extra fuel units per call (expensive functions such as `bcrypt`).
    pub cost: u64,
}

impl std::fmt::Debug for FuncEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FuncEntry({})", self.name)
    }
}

/// Functions by name. Parsing resolves names against the map, so a parsed template keeps the
/// functions it was parsed with.
#[derive(Default, Clone)]
pub struct FuncMap {
    map: HashMap<String, Arc<FuncEntry>>,
}

impl FuncMap {
    /// An empty map (Go's built-ins are always there).
    pub fn new() -> Self {
        Self::default()
    }
    /// Register (or replace) `name`.
    pub fn insert(
        &mut self,
        name: &str,
        f: impl Fn(&[Value]) -> Result<Value, FuncError> + Send + Sync + 'static,
    ) {
        self.insert_with_cost(name, 0, f);
    }
    /// Register (or replace) `name` with an extra fuel cost per call.
    pub fn insert_with_cost(
        &mut self,
        name: &str,
        cost: u64,
        f: impl Fn(&[Value]) -> Result<Value, FuncError> + Send + Sync + 'static,
    ) {
        self.map.insert(
            name.to_string(),
            Arc::new(FuncEntry {
                name: name.to_string(),
                f: Arc::new(f),
                cost,
            }),
        );
    }
    /// Remove `name`.
    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }
    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    /// The entry for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<FuncEntry>> {
        self.map.get(name).cloned()
    }
    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// Go `text/template`'s built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Builtin {
    And,
    Or,
    Not,
    Len,
    Index,
    Slice,
    Print,
    Printf,
    Println,
    Html,
    Js,
    Urlquery,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Call,
}

impl Builtin {
    /// The built-in called `name`.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Some(match name {
            "and" => Builtin::And,
            "or" => Builtin::Or,
            "not" => Builtin::Not,
            "len" => Builtin::Len,
            "index" => Builtin::Index,
            "slice" => Builtin::Slice,
            "print" => Builtin::Print,
            "printf" => Builtin::Printf,
            "println" => Builtin::Println,
            "html" => Builtin::Html,
            "js" => Builtin::Js,
            "urlquery" => Builtin::Urlquery,
            "eq" => Builtin::Eq,
            "ne" => Builtin::Ne,
            "lt" => Builtin::Lt,
            "le" => Builtin::Le,
            "gt" => Builtin::Gt,
            "ge" => Builtin::Ge,
            "call" => Builtin::Call,
            _ => return None,
        })
    }
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::And => "and",
            Builtin::Or => "or",
            Builtin::Not => "not",
            Builtin::Len => "len",
            Builtin::Index => "index",
            Builtin::Slice => "slice",
            Builtin::Print => "print",
            Builtin::Printf => "printf",
            Builtin::Println => "println",
            Builtin::Html => "html",
            Builtin::Js => "js",
            Builtin::Urlquery => "urlquery",
            Builtin::Eq => "eq",
            Builtin::Ne => "ne",
            Builtin::Lt => "lt",
            Builtin::Le => "le",
            Builtin::Gt => "gt",
            Builtin::Ge => "ge",
            Builtin::Call => "call",
        }
    }
}
