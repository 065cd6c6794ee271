//! A Go `text/template` engine with the sprig functions ESO v2 exposes.
//!
//! Templates are parsed once into an AST ([`Template::parse`]) and executed many times
//! ([`Template::execute`]) against a [`Value`]; a parsed template is `Send + Sync` and cheap to
//! share, so callers cache it by its text. Semantics follow Go's `text/template` as ESO runs it
//! (`Option("missingkey=error")`): pipelines, variables (`:=` and `=`), `if`/`else if`/`with`/
//! `else with`/`range` (over lists, maps in key order, and integers)/`else`/`break`/`continue`/
//! `define`/`template`/`block`, trim markers, comments, custom delimiters, Go truthiness and
//! comparison, and Go's `fmt` verbs. Values are byte strings, so binary data passes intact.
//!
//! Limits live inside the evaluator ([`Limits`]): fuel per execution (actions, loop iterations,
//! function calls, KiB of text handled), nesting depth (blocks, parentheses and template calls,
//! recursion included), output size and function result size. There is no thread-local state
//! and no text rewriting.
//!
//! Purity: no I/O. The clock (`now`, `date` without a time, `ago`) and randomness (`rand*`,
//! `uuidv4`, `shuffle`, `bcrypt`/`htpasswd` salts) come from a [`sprig::SprigEnv`] the caller
//! builds, so tests pin both. No other function reads the clock or an RNG.
//!
//! ```
//! use eso_template::{FuncMap, Template, Options, Value, sprig};
//! let mut funcs = FuncMap::new();
//! sprig::register(&mut funcs, &sprig::SprigEnv::fixed(0, 7));
//! let t = Template::parse("t", "{{ .user | upper }}:{{ index . \"pass\" | b64enc }}", &Options::new(&funcs)).unwrap();
//! let data = Value::string_map([("user", "admin"), ("pass", "pw")]);
//! assert_eq!(t.execute(&data).unwrap(), b"ADMIN:cHc=");
//! ```
#![warn(missing_docs)]

mod exec;
mod extra;
pub mod fmt;
mod funcs;
mod parse;
pub mod sprig;
mod value;

use std::collections::HashMap;
use std::sync::Arc;

pub use funcs::{Builtin, Func, FuncEntry, FuncError, FuncMap};
pub use value::{Bytes, Map, Value, from_json, to_json};

/// Deepest nesting by default (blocks, parentheses, template calls, added up along a path).
pub const MAX_NESTING: usize = 50;
/// Default largest output, and largest value one function may return: 2 MiB.
pub const MAX_OUTPUT: usize = 2 << 20;
/// Default fuel per execution. Measured: spending it all takes well under a second in release.
pub const DEFAULT_FUEL: u64 = 4_000_000;

/// What an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text does not parse.
    Parse,
    /// Execution failed (missing key, wrong types, a function error).
    Exec,
    /// A limit was reached (fuel, nesting, output or value size).
    Limit,
}

/// A template error; its message follows Go's (`template: NAME:LINE: ...`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The class.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: String) -> Self {
        Error { kind, message }
    }
}

/// Execution limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Work units per execution.
    pub fuel: u64,
    /// Deepest nesting.
    pub max_nesting: usize,
    /// Largest output in bytes.
    pub max_output: usize,
    /// Largest text one function result may hold.
    pub max_value: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: DEFAULT_FUEL,
            max_nesting: MAX_NESTING,
            max_output: MAX_OUTPUT,
            max_value: MAX_OUTPUT,
        }
    }
}

/// Parse options.
#[derive(Clone)]
pub struct Options<'a> {
    /// Functions templates may call (on top of Go's built-ins).
    pub funcs: &'a FuncMap,
    /// Left delimiter (`{{`).
    pub left: &'a str,
    /// Right delimiter (`}}`).
    pub right: &'a str,
    /// Execution limits.
    pub limits: Limits,
}

impl<'a> Options<'a> {
    /// Default delimiters and limits with `funcs`.
    pub fn new(funcs: &'a FuncMap) -> Self {
        Options {
            funcs,
            left: "{{",
            right: "}}",
            limits: Limits::default(),
        }
    }
}

/// A parsed template set (the named template plus its `define`s and `block`s).
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    trees: Arc<HashMap<String, Arc<Vec<parse::Node>>>>,
    limits: Limits,
}

impl Template {
    /// Parse `text` as the template `name`.
    pub fn parse(name: &str, text: &str, opts: &Options<'_>) -> Result<Template, Error> {
        Self::parse_bytes(name, text.as_bytes(), opts)
    }

    /// Parse template text given as bytes.
    pub fn parse_bytes(name: &str, text: &[u8], opts: &Options<'_>) -> Result<Template, Error> {
        let left = if opts.left.is_empty() {
            "{{"
        } else {
            opts.left
        };
        let right = if opts.right.is_empty() {
            "}}"
        } else {
            opts.right
        };
        let p = parse::parse(name, text, left.as_bytes(), right.as_bytes(), opts.funcs)?;
        Ok(Template {
            name: name.to_string(),
            trees: Arc::new(p.trees),
            limits: opts.limits.clone(),
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Execute with `data` as dot; the rendered bytes.
    pub fn execute(&self, data: &Value) -> Result<Vec<u8>, Error> {
        self.execute_with(data, &self.limits)
    }

    /// Execute with other limits.
    pub fn execute_with(&self, data: &Value, limits: &Limits) -> Result<Vec<u8>, Error> {
        let Some(root) = self.trees.get(&self.name) else {
            return Err(Error::new(
                ErrorKind::Exec,
                format!(
                    "template: {}: \"{}\" is an incomplete or empty template",
                    self.name, self.name
                ),
            ));
        };
        let mut ex = exec::Exec {
            trees: &self.trees,
            name: &self.name,
            tmpl: self.name.clone(),
            out: Vec::new(),
            vars: vec![("$".to_string(), data.clone())],
            fuel: limits.fuel,
            depth: 0,
            calls: Vec::new(),
            limits,
        };
        ex.run(root, data)?;
        Ok(ex.out)
    }
}
