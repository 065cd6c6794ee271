//! Template engine v2: Go `text/template` syntax, via the `gtmpl` crate, plus the sprig functions
//! ESO users rely on. No function performs I/O: there is no `env`, `expandenv`, DNS, file or
//! network access, and nothing non-deterministic (`now`, random) is offered.
//!
//! Why `gtmpl`: it parses and executes Go template syntax (actions, pipelines, `if`/`range`/
//! `with`, variables, trim markers, `index`, `printf`) the way `text/template` does, so existing
//! ESO templates render unchanged; writing a second Go-template engine would only add risk.
//! Go's `missingkey=error` is emulated: a reference to a key the data lacks renders gtmpl's
//! `<no value>` marker (or reaches a function as an argument), which we turn into an error unless
//! the template itself contains it. The error names the key as Go does
//! (`map has no entry for key "nope"`): the failed template is executed once more with every map
//! as a gtmpl object, on which gtmpl reports the field it could not find. A key name comes from the
//! template text, never from the data, so no value can appear in the message.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use gtmpl::{Context, Func, Template, Value};
use gtmpl_value::FuncError;

use crate::crypto;

const NO_VALUE: &str = "<no value>";

/// The message when a missing key cannot be named.
const MISSING_KEY: &str = "map has no entry for a key the template references (missingkey=error)";

/// First of the 128 private-use code points (U+10FE80..=U+10FEFF) that stand for the raw bytes
/// 0x80..=0xFF of a value that is not valid UTF-8.
const RAW_BYTE_BASE: u32 = 0x10_FE00;

/// A provider value as template text. Go templates work on byte strings, so binary values (a
/// PKCS#12 file, a ciphertext) must reach functions such as `pkcs12cert` intact: valid UTF-8 is
/// kept as is, and each byte of an invalid sequence becomes the private-use code point
/// U+10FE00 + byte. [`text_to_bytes`] reverses this on rendered output, so `{{ .binary }}`
/// also round-trips byte for byte. (A valid UTF-8 value that itself contains U+10FE80..=U+10FEFF
/// would be turned into raw bytes on output; those code points have no assigned meaning.)
pub fn bytes_to_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.extend(char::from_u32(RAW_BYTE_BASE + u32::from(*b)));
        }
    }
    out
}

/// The bytes a template string stands for (see [`bytes_to_text`]).
pub fn text_to_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        match u32::from(c).checked_sub(RAW_BYTE_BASE) {
            Some(b @ 0x80..=0xff) => out.push(b as u8),
            _ => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out
}

/// Render `text` with `data` (string keys to string values) as `.`.
pub fn render(text: &str, data: &BTreeMap<String, String>) -> Result<String, String> {
    render_with(text, &context(data))
}

/// The template context for `data` (build it once, render many templates with [`render_with`]).
pub fn context(data: &BTreeMap<String, String>) -> Value {
    Value::Map(
        data.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<HashMap<_, _>>(),
    )
}

/// Render `text` with a prebuilt context.
pub fn render_with(text: &str, ctx: &Value) -> Result<String, String> {
    render_budgeted(text, ctx, MAX_WORK_UNITS)
}

/// Render `text` with an arbitrary context value.
pub fn render_value(text: &str, ctx: Value) -> Result<String, String> {
    render_budgeted(text, &ctx, MAX_WORK_UNITS)
}

/// [`render_value`] with a work budget of `budget` units (see [`MAX_WORK_UNITS`]).
fn render_budgeted(text: &str, ctx: &Value, budget: u64) -> Result<String, String> {
    check_action_chars(text)?;
    check_nesting(text)?;
    let mut t = Template::default();
    t.add_funcs(FUNCS);
    t.add_func(TICK, tick);
    let trimmed = pre_trim_left(text);
    t.parse(rewrite_for_gtmpl(&trimmed).into_owned())
        .map_err(|e| e.to_string())?;
    let mut w = Capped(Vec::new());
    WORK_LEFT.with(|left| left.set(budget));
    if let Err(e) = t.execute(&mut w, &Context::from(ctx.clone())) {
        let msg = e.to_string();
        if msg.contains(MISSING_KEY) {
            return Err(missing_key_error(&t, ctx, budget));
        }
        return Err(redact(msg, ctx));
    }
    let out = String::from_utf8(w.0).map_err(|e| e.to_string())?;
    if out.contains(NO_VALUE) && !text.contains(NO_VALUE) {
        return Err(missing_key_error(&t, ctx, budget));
    }
    Ok(out)
}

thread_local! {
    /// Set while [`missing_key_error`] re-executes a template: maps built by functions are then
    /// gtmpl objects too, so a missing key in them is reported by name.
    static NAMING_MISSING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A map built by a template function (`dict`, `fromJson`).
fn map_value(m: HashMap<String, Value>) -> Value {
    if NAMING_MISSING.with(std::cell::Cell::get) {
        Value::Object(m)
    } else {
        Value::Map(m)
    }
}

/// `v` with every map turned into a gtmpl object (a missing field on an object is an error
/// naming the field; on a map it is `<no value>`).
fn as_objects(v: &Value) -> Value {
    match v {
        Value::Map(m) | Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), as_objects(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(as_objects).collect()),
        other => other.clone(),
    }
}

/// The missing-key error for a template whose execution met a key the data lacks: Go's
/// `map has no entry for key "<name>"` when the key can be named (the first one missing in
/// execution order, as Go stops there), else the generic message.
fn missing_key_error(t: &Template, ctx: &Value, budget: u64) -> String {
    /// Clears the flag however the execution ends.
    struct Naming;
    impl Drop for Naming {
        fn drop(&mut self) {
            NAMING_MISSING.with(|n| n.set(false));
        }
    }
    NAMING_MISSING.with(|n| n.set(true));
    let naming = Naming;
    WORK_LEFT.with(|left| left.set(budget));
    let mut w = Capped(Vec::new());
    let r = t.execute(&mut w, &Context::from(as_objects(ctx)));
    drop(naming);
    match r {
        Err(gtmpl::error::ExecError::NoFiledFor(name, _)) => {
            format!("map has no entry for key {name:?}")
        }
        _ => MISSING_KEY.to_string(),
    }
}

/// Replace every context value (the secret data) that occurs in an execution error by
/// `<redacted>`. gtmpl's own messages quote the values they fail on ("unable to get 1 in …",
/// "unable to compare … and 1") and a function may echo an argument; the error ends up in the
/// ExternalSecret's status and Events, where a secret value must never appear. Values shorter
/// than 4 bytes are left alone: they would mangle the message and reveal next to nothing.
fn redact(mut msg: String, ctx: &Value) -> String {
    fn collect<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) if s.len() >= 4 => out.push(s),
            Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            Value::Map(m) | Value::Object(m) => m.values().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut values = Vec::new();
    collect(ctx, &mut values);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if msg.contains(v) {
            msg = msg.replace(v, "<redacted>");
        }
    }
    msg
}

/// Work one template execution may do, in units: one per `range` iteration, `define`/`block`
/// execution and function call, plus one per KiB of text a function call takes or returns.
/// gtmpl has no way to stop an execution, so without a bound a few nested `range`s over long
/// lists (even with an empty body) keep a reconcile worker busy for hours. Real templates use a
/// few thousand units; this allows about four million loop iterations or four GiB of text moved
/// through functions, a few seconds of CPU. Counting work instead of reading a clock keeps the
/// engine deterministic: a template that fits does so on every machine.
pub const MAX_WORK_UNITS: u64 = 4_000_000;

thread_local! {
    /// Units left for the execution running on this thread ([`render_value`] sets it; gtmpl
    /// executes synchronously and calls our functions on the same thread).
    static WORK_LEFT: std::cell::Cell<u64> = const { std::cell::Cell::new(MAX_WORK_UNITS) };
}

/// Charge `units` to the running execution; an error once the budget is spent.
fn charge(units: u64) -> Result<(), FuncError> {
    WORK_LEFT.with(|left| match left.get().checked_sub(units) {
        Some(rest) => {
            left.set(rest);
            Ok(())
        }
        None => {
            left.set(0);
            Err(err(format!(
                "template execution exceeded its work budget ({MAX_WORK_UNITS} units: loop \
                 iterations, function calls and KiB of text they handle); reduce nested \
                 ranges or the size of the data they iterate over"
            )))
        }
    })
}

/// Name of the function [`insert_ticks`] calls at the start of every loop iteration and every
/// `define`/`block` execution. It renders nothing.
const TICK: &str = "esoTick";

fn tick(_: &[Value]) -> Result<Value, FuncError> {
    charge(1)?;
    Ok(Value::String(String::new()))
}

/// Rewrite the template text before gtmpl parses it, fixing two places where gtmpl's execution
/// differs from Go's `text/template`, and adding the work-budget ticks:
///
/// * `range` over a map: Go visits the keys in sorted order; gtmpl iterates a `HashMap`, so the
///   order changed from one render to the next and a Secret built by a `range` over `.` was
///   rewritten at every refresh. Every `range X` becomes
///   `{{$r := X}}{{$k := esoKeys $r}}{{range $i, $v := esoValues $r}}{{$key := index $k $i}}`
///   (with the user's own variable names), which visits maps in key order and arrays in order.
/// * `{{range X}}...{{else}}...{{end}}`: gtmpl runs the `else` branch even when the range had
///   elements; it becomes `{{range ...}}...{{end}}{{if empty $r}}...{{end}}`.
/// * `{{esoTick}}` after every `range`, `define` and `block` action, so each loop iteration and
///   each template execution is charged to the work budget even when its body calls nothing.
///
/// The output is unchanged otherwise: the inserted actions render nothing, the original
/// action's left trim marker goes on the first inserted action and its right trim marker on
/// the last, so the same whitespace is trimmed. A `range` written with `=` (assignment to
/// existing variables) is left as it is.
fn rewrite_for_gtmpl(text: &str) -> Cow<'_, str> {
    enum Block {
        Range(Option<usize>),
        Other,
    }
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    let mut stack: Vec<Block> = Vec::new();
    let mut next_id = 0usize;
    while let Some(start) = rest.find("{{") {
        let Some((action, after)) = split_action(&rest[start + 2..]) else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = after;
        let left = action.starts_with("- ") || action == "-";
        let inner = if left { &action[1..] } else { action };
        let right = inner.trim_end().ends_with(" -") && inner.trim().len() > 1;
        let inner = if right {
            inner.trim_end().strip_suffix('-').unwrap_or(inner)
        } else {
            inner
        };
        let body = inner.trim();
        let keyword = body
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        let (l, r) = (if left { "- " } else { "" }, if right { " -" } else { "" });
        match keyword {
            "range" => {
                let spec = body.get(5..).map(str::trim).and_then(parse_range);
                match spec {
                    Some((vars, pipe)) => {
                        changed = true;
                        let id = next_id;
                        next_id += 1;
                        out.push_str(&format!(
                            "{{{{{l}$esoR{id} := {pipe}}}}}{{{{$esoK{id} := esoKeys $esoR{id}}}}}"
                        ));
                        match vars {
                            RangeVars::None => out.push_str(&format!(
                                "{{{{range esoValues $esoR{id}}}}}"
                            )),
                            RangeVars::Value(v) => out.push_str(&format!(
                                "{{{{range {v} := esoValues $esoR{id}}}}}"
                            )),
                            RangeVars::KeyValue(k, v) => out.push_str(&format!(
                                "{{{{range $esoI{id}, {v} := esoValues $esoR{id}}}}}{{{{{k} := index $esoK{id} $esoI{id}}}}}"
                            )),
                        }
                        out.push_str(&format!("{{{{{TICK}{r}}}}}"));
                        stack.push(Block::Range(Some(id)));
                        continue;
                    }
                    None => stack.push(Block::Range(None)),
                }
            }
            "define" | "block" => {
                changed = true;
                stack.push(Block::Other);
                out.push_str(&format!("{{{{{action}}}}}{{{{{TICK}{r}}}}}"));
                continue;
            }
            "if" | "with" => stack.push(Block::Other),
            "else" if body == "else" => {
                if let Some(Block::Range(Some(id))) = stack.last() {
                    changed = true;
                    let id = *id;
                    if let Some(top) = stack.last_mut() {
                        *top = Block::Other;
                    }
                    out.push_str(&format!("{{{{{l}end}}}}{{{{if empty $esoR{id}{r}}}}}"));
                    continue;
                }
            }
            "end" => {
                stack.pop();
            }
            _ => {}
        }
        out.push_str("{{");
        out.push_str(action);
        out.push_str("}}");
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The variables a `range` declares.
enum RangeVars<'a> {
    None,
    Value(&'a str),
    KeyValue(&'a str, &'a str),
}

/// Split what follows `range` into its declared variables and its pipeline; `None` for the
/// assignment form (`$i, $v = X`) and anything unexpected, which are left to gtmpl as written.
fn parse_range(spec: &str) -> Option<(RangeVars<'_>, &str)> {
    if spec.is_empty() {
        return None;
    }
    let is_var = |s: &str| {
        s.strip_prefix('$')
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    };
    // A declaration is `$a :=` or `$a, $b :=` before the pipeline; `$x` alone is a pipeline.
    let decl_end = spec.find(":=").filter(|&i| {
        let head = &spec[..i];
        head.split(',').count() <= 2 && head.split(',').all(|v| is_var(v.trim()))
    });
    let Some(i) = decl_end else {
        // The assignment form `$a, $b = X` (not `==`) is left to gtmpl as written.
        let assigns = spec.find('=').is_some_and(|i| {
            spec.as_bytes().get(i + 1) != Some(&b'=')
                && spec[..i].split(',').all(|v| is_var(v.trim()))
        });
        return (!assigns).then_some((RangeVars::None, spec));
    };
    let (decl, pipe) = (&spec[..i], spec[i + 2..].trim());
    if pipe.is_empty() {
        return None;
    }
    match decl.split_once(',') {
        Some((k, v)) => Some((RangeVars::KeyValue(k.trim(), v.trim()), pipe)),
        None => Some((RangeVars::Value(decl.trim()), pipe)),
    }
}

/// `esoValues X`: a map's values in key order (Go's `range` order), an array as it is, nothing
/// for nil.
fn eso_values(a: &[Value]) -> Result<Value, FuncError> {
    match a.first() {
        Some(Value::Map(m) | Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Ok(Value::Array(
                keys.into_iter().filter_map(|k| m.get(k).cloned()).collect(),
            ))
        }
        Some(Value::Array(v)) => Ok(Value::Array(v.clone())),
        Some(Value::Nil | Value::NoValue) | None => Ok(Value::Array(Vec::new())),
        Some(_) => Err(err(
            "range can't iterate over a string, number or bool (only lists and maps)",
        )),
    }
}

/// `esoKeys X`: a map's keys in sorted order, an array's indices.
fn eso_keys(a: &[Value]) -> Result<Value, FuncError> {
    match a.first() {
        Some(Value::Map(m) | Value::Object(m)) => {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort();
            Ok(Value::Array(keys.into_iter().map(Value::String).collect()))
        }
        Some(Value::Array(v)) => Ok(Value::Array((0..v.len()).map(Value::from).collect())),
        _ => Ok(Value::Array(Vec::new())),
    }
}

/// Largest text a template, or one function inside it, may produce: twice what a Secret can
/// hold. Without it a `range` over a long list of `repeat`s, or `b64enc` applied twenty times,
/// allocates gigabytes and the operator is OOM-killed.
pub const MAX_RENDERED: usize = 2 << 20;

/// The rendered text, refusing writes past [`MAX_RENDERED`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(buf.len()) > MAX_RENDERED {
            return Err(std::io::Error::other(format!(
                "template output over {} MiB",
                MAX_RENDERED >> 20
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of text in a value (strings, keys, nested).
fn text_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_size).sum(),
        Value::Map(m) | Value::Object(m) => m.iter().map(|(k, v)| k.len() + text_size(v)).sum(),
        _ => 0,
    }
}

/// A function result, refused when it holds more than [`MAX_RENDERED`] bytes of text.
fn cap(name: &str, r: Result<Value, FuncError>) -> Result<Value, FuncError> {
    let v = r?;
    if text_size(&v) > MAX_RENDERED {
        return Err(err(format!(
            "{name}: result over {} MiB",
            MAX_RENDERED >> 20
        )));
    }
    Ok(v)
}

/// Refuse a result that would exceed [`MAX_RENDERED`] before building it.
fn precheck(name: &str, size: usize) -> Result<(), FuncError> {
    if size > MAX_RENDERED {
        return Err(err(format!(
            "{name}: result would be over {} MiB",
            MAX_RENDERED >> 20
        )));
    }
    Ok(())
}

/// `[(name, function)]` with every function's result capped by [`cap`].
macro_rules! capped_funcs {
    ($(($name:expr, $f:path $(,)?)),* $(,)?) => {
        [$(($name, {
            fn capped(a: &[Value]) -> Result<Value, FuncError> {
                charge(1 + (a.iter().map(text_size).sum::<usize>() >> 10) as u64)?;
                let r = cap($name, $f(a))?;
                charge((text_size(&r) >> 10) as u64)?;
                Ok(r)
            }
            capped as Func
        })),*]
    };
}

/// Deepest nesting a template may have: blocks (`if`, `range`, `with`, `define`, `block`, each
/// `else if`/`else with`), parentheses inside an action, and `template` calls, added up along
/// the deepest path. gtmpl parses and executes recursively, so without a bound a few kilobytes of
/// `((((` or `{{ if }}` — or a `define` that calls itself — overflow the stack and abort the whole
/// operator. Real templates stay far below this.
pub const MAX_TEMPLATE_NESTING: usize = 50;

/// Refuse templates nested deeper than [`MAX_TEMPLATE_NESTING`] and recursive `template` calls,
/// before gtmpl sees them. The scan only looks at actions (`{{ ... }}`), skipping string, raw
/// string and character literals and comments; it never fails on text gtmpl would reject anyway.
fn check_nesting(text: &str) -> Result<(), String> {
    #[derive(Default)]
    struct Body {
        /// Deepest static nesting inside this body.
        depth: usize,
        /// `(call depth, callee)` for each `template`/`block` call.
        calls: Vec<(usize, String)>,
    }
    // Open blocks: (weight, Some(define name) for define/block).
    let mut frames: Vec<(usize, Option<String>)> = Vec::new();
    let mut bodies: BTreeMap<Option<String>, Body> = BTreeMap::new();
    let too_deep = || {
        format!(
            "template nested deeper than {MAX_TEMPLATE_NESTING} levels (blocks, parentheses and template calls)"
        )
    };
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some((action, after)) = split_action(&rest[start + 2..]) else {
            // gtmpl's lexer never returns on some unclosed actions (`{{ .a ` spins forever).
            return Err("unclosed action in the template: a {{ without its }}".to_string());
        };
        rest = after;
        let action = action.trim_start_matches('-').trim_end_matches('-').trim();
        if action.starts_with("/*") {
            continue;
        }
        let words: Vec<&str> = action.split_whitespace().take(2).collect();
        let level: usize = frames.iter().map(|f| f.0).sum();
        let current = frames.iter().rev().find_map(|f| f.1.clone());
        let name = || {
            words
                .get(1)
                .map(|w| w.trim_matches(|c| c == '"' || c == '`').to_string())
        };
        let body = bodies.entry(current.clone()).or_default();
        body.depth = body.depth.max(level + paren_depth(action));
        match words.first().copied() {
            Some("if" | "range" | "with") => frames.push((1, None)),
            Some("define") => frames.push((1, name())),
            Some("block") => {
                let callee = name().unwrap_or_default();
                body.calls.push((level + 1, callee.clone()));
                frames.push((1, Some(callee)));
            }
            Some("template") => body.calls.push((level + 1, name().unwrap_or_default())),
            Some("else") if matches!(words.get(1), Some(&("if" | "with" | "range"))) => {
                if let Some(f) = frames.last_mut() {
                    f.0 += 1;
                }
            }
            Some("end") => {
                frames.pop();
            }
            _ => {}
        }
        if level + 1 > MAX_TEMPLATE_NESTING * 2 {
            return Err(too_deep());
        }
    }
    // Effective depth of each body, following template calls; a cycle is recursion.
    fn effective(
        name: &Option<String>,
        bodies: &BTreeMap<Option<String>, Body>,
        done: &mut BTreeMap<Option<String>, usize>,
        path: &mut Vec<Option<String>>,
    ) -> Result<usize, String> {
        if let Some(d) = done.get(name) {
            return Ok(*d);
        }
        if path.contains(name) {
            return Err(format!(
                "template {:?} calls itself (recursive templates are not supported)",
                name.clone().unwrap_or_default()
            ));
        }
        let Some(body) = bodies.get(name) else {
            return Ok(0);
        };
        path.push(name.clone());
        let mut d = body.depth;
        for (at, callee) in &body.calls {
            let callee = Some(callee.clone());
            d = d.max(at.saturating_add(effective(&callee, bodies, done, path)?));
        }
        path.pop();
        done.insert(name.clone(), d);
        Ok(d)
    }
    let mut done = BTreeMap::new();
    for name in bodies.keys() {
        if effective(name, &bodies, &mut done, &mut Vec::new())? > MAX_TEMPLATE_NESTING {
            return Err(too_deep());
        }
    }
    Ok(())
}

/// Split `s` (just after `{{`) into the action and what follows its `}}`, skipping literals
/// and comments. `None` when the action is never closed.
fn split_action(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => {
                return Some((s.get(..i).unwrap_or(""), s.get(i + 2..).unwrap_or("")));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Apply a left trim marker (`{{- `) ourselves when the text before it ends in a non-ASCII
/// character (after trailing whitespace): gtmpl measures that character as one byte and panics
/// on the broken UTF-8 boundary (found by the `templates` fuzz target). The trailing whitespace
/// is removed and the marker dropped, which is exactly what the trim means; any other template
/// is passed on unchanged.
fn pre_trim_left(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(start) = rest.find("{{") {
        let (before, inner) = (&rest[..start], &rest[start + 2..]);
        let Some((action, after)) = split_action(inner) else {
            break;
        };
        let before_trimmed = before.trim_end();
        match action.strip_prefix("- ") {
            Some(untrimmed)
                if before_trimmed
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_ascii()) =>
            {
                changed = true;
                out.push_str(before_trimmed);
                out.push_str("{{");
                out.push_str(untrimmed);
            }
            _ => {
                out.push_str(before);
                out.push_str("{{");
                out.push_str(action);
            }
        }
        out.push_str("}}");
        rest = after;
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Refuse a non-ASCII character inside an action (`{{ ... }}`) outside a string, raw string or
/// character literal or a leading comment, and a backslash escape of a non-ASCII character in a
/// literal. gtmpl's lexer steps back one byte, not one character, after such a character and
/// panics on the broken UTF-8 boundary (found by the `templates` fuzz target). Text outside
/// actions, and literals, may hold any character; a data key with non-ASCII characters is read
/// with `index . "clé"`.
fn check_action_chars(text: &str) -> Result<(), String> {
    let refuse = |c: char| {
        Err(format!(
            "template action contains {c:?} outside a string literal; only ASCII is supported \
             there (use index . \"key\" for keys with non-ASCII characters)"
        ))
    };
    let refuse_escape = |c: char| {
        Err(format!(
            "template literal has a backslash escape and the non-ASCII character {c:?}; gtmpl \
             cannot unescape that (write the character itself, without escapes)"
        ))
    };
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some((action, after)) = split_action(&rest[start + 2..]) else {
            // gtmpl's lexer never returns on some unclosed actions (`{{ .a ` spins forever).
            return Err("unclosed action in the template: a {{ without its }}".to_string());
        };
        rest = after;
        let body = action.strip_prefix("- ").unwrap_or(action);
        let body = match body.strip_prefix("/*") {
            Some(comment) => comment.split_once("*/").map_or("", |(_, tail)| tail),
            None => action,
        };
        let mut chars = body.chars().peekable();
        let mut quote: Option<char> = None;
        // In the open literal: a `\x`/`\u` escape seen; a non-ASCII character seen.
        let (mut hex_escape, mut non_ascii) = (false, None);
        while let Some(c) = chars.next() {
            let Some(q) = quote else {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                    (hex_escape, non_ascii) = (false, None);
                } else if !c.is_ascii() {
                    return refuse(c);
                }
                continue;
            };
            if c == q {
                quote = None;
            } else if c == '\\' {
                // gtmpl unescapes raw strings too, but a backtick still ends them.
                match chars.peek().copied() {
                    Some(n) if !n.is_ascii() => return refuse_escape(n),
                    Some(n) if q != '`' || n != '`' => {
                        hex_escape |= matches!(n, 'x' | 'u');
                        chars.next();
                    }
                    _ => {}
                }
            } else if !c.is_ascii() {
                non_ascii = non_ascii.or(Some(c));
            }
            if let (true, Some(n)) = (hex_escape, non_ascii) {
                return refuse_escape(n);
            }
        }
    }
    Ok(())
}

/// Deepest parenthesis nesting in an action, outside literals.
fn paren_depth(action: &str) -> usize {
    let (mut depth, mut max, mut quote) = (0usize, 0usize, None);
    let mut escaped = false;
    for c in action.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

/// Go's `missingkey=error`: a function handed a missing key fails.
fn no_missing(name: &str, args: &[Value]) -> Result<(), FuncError> {
    if args.iter().any(|a| matches!(a, Value::NoValue)) {
        return Err(err(format!("{name}: {MISSING_KEY}")));
    }
    Ok(())
}

pub(crate) fn arg<'a>(
    name: &str,
    args: &'a [Value],
    i: usize,
    n: usize,
) -> Result<&'a Value, FuncError> {
    no_missing(name, args)?;
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.to_string(), n));
    }
    args.get(i)
        .ok_or_else(|| FuncError::ExactlyXArgs(name.to_string(), n))
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn b64enc(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(s(arg("b64enc", a, 0, 1)?)),
    ))
}
fn b64dec(a: &[Value]) -> Result<Value, FuncError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s(arg("b64dec", a, 0, 1)?))
        .map_err(|_| err("b64dec: input is not valid base64"))?;
    Ok(Value::String(bytes_to_text(&raw)))
}
fn upper(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(s(arg("upper", a, 0, 1)?).to_uppercase()))
}
fn lower(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(s(arg("lower", a, 0, 1)?).to_lowercase()))
}
fn title(a: &[Value]) -> Result<Value, FuncError> {
    let v = s(arg("title", a, 0, 1)?);
    let mut out = String::with_capacity(v.len());
    let mut start = true;
    for c in v.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}
fn trim(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(s(arg("trim", a, 0, 1)?).trim().to_string()))
}
fn trim_all(a: &[Value]) -> Result<Value, FuncError> {
    let cut: Vec<char> = s(arg("trimAll", a, 0, 2)?).chars().collect();
    Ok(Value::String(
        s(arg("trimAll", a, 1, 2)?)
            .trim_matches(cut.as_slice())
            .to_string(),
    ))
}
fn trim_prefix(a: &[Value]) -> Result<Value, FuncError> {
    let p = s(arg("trimPrefix", a, 0, 2)?);
    let v = s(arg("trimPrefix", a, 1, 2)?);
    Ok(Value::String(
        v.strip_prefix(p.as_str()).unwrap_or(&v).to_string(),
    ))
}
fn trim_suffix(a: &[Value]) -> Result<Value, FuncError> {
    let p = s(arg("trimSuffix", a, 0, 2)?);
    let v = s(arg("trimSuffix", a, 1, 2)?);
    Ok(Value::String(
        v.strip_suffix(p.as_str()).unwrap_or(&v).to_string(),
    ))
}
fn replace(a: &[Value]) -> Result<Value, FuncError> {
    let old = s(arg("replace", a, 0, 3)?);
    let new = s(arg("replace", a, 1, 3)?);
    let text = s(arg("replace", a, 2, 3)?);
    if new.len() > old.len() {
        let hits = if old.is_empty() {
            text.chars().count() + 1
        } else {
            text.matches(old.as_str()).count()
        };
        precheck(
            "replace",
            text.len()
                .saturating_add(hits.saturating_mul(new.len() - old.len())),
        )?;
    }
    Ok(Value::String(text.replace(&old, &new)))
}
fn quote(a: &[Value]) -> Result<Value, FuncError> {
    no_missing("quote", a)?;
    Ok(Value::String(
        a.iter()
            .map(|v| format!("{:?}", s(v)))
            .collect::<Vec<_>>()
            .join(" "),
    ))
}
fn squote(a: &[Value]) -> Result<Value, FuncError> {
    no_missing("squote", a)?;
    Ok(Value::String(
        a.iter()
            .map(|v| format!("'{}'", s(v)))
            .collect::<Vec<_>>()
            .join(" "),
    ))
}
fn to_string(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(s(arg("toString", a, 0, 1)?)))
}
fn nospace(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        s(arg("nospace", a, 0, 1)?)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    ))
}
fn contains(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(
        s(arg("contains", a, 1, 2)?).contains(&s(arg("contains", a, 0, 2)?)),
    ))
}
fn has_prefix(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(
        s(arg("hasPrefix", a, 1, 2)?).starts_with(&s(arg("hasPrefix", a, 0, 2)?)),
    ))
}
fn has_suffix(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(
        s(arg("hasSuffix", a, 1, 2)?).ends_with(&s(arg("hasSuffix", a, 0, 2)?)),
    ))
}
fn repeat(a: &[Value]) -> Result<Value, FuncError> {
    let n: usize = s(arg("repeat", a, 0, 2)?)
        .parse()
        .map_err(|_| err("repeat: count must be an integer"))?;
    let v = s(arg("repeat", a, 1, 2)?);
    if n.saturating_mul(v.len()) > 1024 * 1024 {
        return Err(err("repeat: result would exceed 1 MiB"));
    }
    Ok(Value::String(v.repeat(n)))
}
fn indent_by(name: &str, a: &[Value], newline: bool) -> Result<Value, FuncError> {
    let n: usize = s(arg(name, a, 0, 2)?)
        .parse()
        .map_err(|_| err(format!("{name}: width must be an integer")))?;
    let pad = " ".repeat(n.min(1024));
    let body = s(arg(name, a, 1, 2)?);
    let lines = body.matches('\n').count() + 2;
    precheck(
        name,
        body.len().saturating_add(lines.saturating_mul(pad.len())),
    )?;
    let indented = format!("{pad}{}", body.replace('\n', &format!("\n{pad}")));
    Ok(Value::String(if newline {
        format!("\n{indented}")
    } else {
        indented
    }))
}
fn indent(a: &[Value]) -> Result<Value, FuncError> {
    indent_by("indent", a, false)
}
fn nindent(a: &[Value]) -> Result<Value, FuncError> {
    indent_by("nindent", a, true)
}
fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Function(_) => false,
    }
}
fn default(a: &[Value]) -> Result<Value, FuncError> {
    no_missing("default", a)?;
    let def = a
        .first()
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs("default".into(), 1))?;
    match a.get(1) {
        Some(v) if !is_empty(v) => Ok(v.clone()),
        _ => Ok(def),
    }
}
fn empty(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(is_empty(arg("empty", a, 0, 1)?)))
}
fn required(a: &[Value]) -> Result<Value, FuncError> {
    let msg = s(arg("required", a, 0, 2)?);
    let v = arg("required", a, 1, 2)?;
    if is_empty(v) {
        Err(err(msg))
    } else {
        Ok(v.clone())
    }
}
fn ternary(a: &[Value]) -> Result<Value, FuncError> {
    let t = arg("ternary", a, 0, 3)?;
    let f = arg("ternary", a, 1, 3)?;
    Ok(if is_empty(arg("ternary", a, 2, 3)?) {
        f.clone()
    } else {
        t.clone()
    })
}
fn list(a: &[Value]) -> Result<Value, FuncError> {
    no_missing("list", a)?;
    Ok(Value::Array(a.to_vec()))
}
fn dict(a: &[Value]) -> Result<Value, FuncError> {
    no_missing("dict", a)?;
    let mut m = HashMap::new();
    for pair in a.chunks(2) {
        let k = pair.first().map(s).unwrap_or_default();
        m.insert(
            k,
            pair.get(1).cloned().unwrap_or(Value::String(String::new())),
        );
    }
    Ok(map_value(m))
}
fn get(a: &[Value]) -> Result<Value, FuncError> {
    match arg("get", a, 0, 2)? {
        Value::Map(m) | Value::Object(m) => Ok(m
            .get(&s(arg("get", a, 1, 2)?))
            .cloned()
            .unwrap_or(Value::String(String::new()))),
        _ => Err(err("get: first argument must be a dict")),
    }
}
fn join(a: &[Value]) -> Result<Value, FuncError> {
    let sep = s(arg("join", a, 0, 2)?);
    match arg("join", a, 1, 2)? {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(s).collect();
            let size = parts
                .iter()
                .map(String::len)
                .sum::<usize>()
                .saturating_add(sep.len().saturating_mul(parts.len().saturating_sub(1)));
            precheck("join", size)?;
            Ok(Value::String(parts.join(&sep)))
        }
        other => Ok(Value::String(s(other))),
    }
}
fn split_list(a: &[Value]) -> Result<Value, FuncError> {
    let sep = s(arg("splitList", a, 0, 2)?);
    let v = s(arg("splitList", a, 1, 2)?);
    Ok(Value::Array(
        v.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn to_json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                n.as_f64()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json_value).collect()),
        Value::Map(m) | Value::Object(m) => {
            let sorted: BTreeMap<_, _> = m
                .iter()
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        Value::Function(_) => serde_json::Value::Null,
    }
}

fn from_json_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            }
        }
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(from_json_value).collect()),
        serde_json::Value::Object(o) => map_value(
            o.into_iter()
                .map(|(k, v)| (k, from_json_value(v)))
                .collect(),
        ),
    }
}

fn to_json(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        to_json_value(arg("toJson", a, 0, 1)?).to_string(),
    ))
}
fn to_pretty_json(a: &[Value]) -> Result<Value, FuncError> {
    serde_json::to_string_pretty(&to_json_value(arg("toPrettyJson", a, 0, 1)?))
        .map(Value::String)
        .map_err(|e| err(format!("toPrettyJson: {e}")))
}
fn from_json(a: &[Value]) -> Result<Value, FuncError> {
    let v: serde_json::Value = serde_json::from_str(&s(arg("fromJson", a, 0, 1)?))
        .map_err(|_| err("fromJson: input is not valid JSON"))?;
    Ok(from_json_value(v))
}
fn to_yaml(a: &[Value]) -> Result<Value, FuncError> {
    serde_yaml::to_string(&to_json_value(arg("toYaml", a, 0, 1)?))
        .map(|y| Value::String(y.trim_end().to_string()))
        .map_err(|e| err(format!("toYaml: {e}")))
}
fn from_yaml(a: &[Value]) -> Result<Value, FuncError> {
    let v: serde_json::Value = serde_yaml::from_str(&s(arg("fromYaml", a, 0, 1)?))
        .map_err(|_| err("fromYaml: input is not valid YAML"))?;
    Ok(from_json_value(v))
}
fn sha256sum(a: &[Value]) -> Result<Value, FuncError> {
    use sha2::Digest as _;
    Ok(Value::String(hex::encode(sha2::Sha256::digest(
        text_to_bytes(&s(arg("sha256sum", a, 0, 1)?)),
    ))))
}
/// ESO's `filterPEM TYPE`: keep only the PEM blocks of the given type.
fn filter_pem(a: &[Value]) -> Result<Value, FuncError> {
    let kind = s(arg("filterPEM", a, 0, 2)?);
    let input = s(arg("filterPEM", a, 1, 2)?);
    let begin = format!("-----BEGIN {kind}-----");
    let end = format!("-----END {kind}-----");
    let mut out = String::new();
    let mut rest = input.as_str();
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start..];
        let Some(stop) = after.find(&end) else { break };
        out.push_str(&after[..stop + end.len()]);
        out.push('\n');
        rest = &after[stop + end.len()..];
    }
    if out.is_empty() {
        return Err(err(format!("filterPEM: no PEM block of type {kind}")));
    }
    Ok(Value::String(out))
}

fn compile(name: &str, re: &str) -> Result<regex::Regex, FuncError> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| err(format!("{name}: invalid regexp: {e}")))
}
fn regex_match(a: &[Value]) -> Result<Value, FuncError> {
    let re = compile("regexMatch", &s(arg("regexMatch", a, 0, 2)?))?;
    Ok(Value::Bool(re.is_match(&s(arg("regexMatch", a, 1, 2)?))))
}
fn regex_find(a: &[Value]) -> Result<Value, FuncError> {
    let re = compile("regexFind", &s(arg("regexFind", a, 0, 2)?))?;
    let v = s(arg("regexFind", a, 1, 2)?);
    Ok(Value::String(
        re.find(&v)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
    ))
}
fn regex_replace_all(a: &[Value]) -> Result<Value, FuncError> {
    let re = compile("regexReplaceAll", &s(arg("regexReplaceAll", a, 0, 3)?))?;
    let v = s(arg("regexReplaceAll", a, 1, 3)?);
    let repl = s(arg("regexReplaceAll", a, 2, 3)?);
    Ok(Value::String(
        re.replace_all(&v, repl.as_str()).into_owned(),
    ))
}
fn regex_replace_all_literal(a: &[Value]) -> Result<Value, FuncError> {
    let re = compile(
        "regexReplaceAllLiteral",
        &s(arg("regexReplaceAllLiteral", a, 0, 3)?),
    )?;
    let v = s(arg("regexReplaceAllLiteral", a, 1, 3)?);
    let repl = s(arg("regexReplaceAllLiteral", a, 2, 3)?);
    Ok(Value::String(
        re.replace_all(&v, regex::NoExpand(&repl)).into_owned(),
    ))
}
fn int_arg(name: &str, v: &Value) -> Result<i64, FuncError> {
    s(v).parse::<i64>()
        .map_err(|_| err(format!("{name}: expected an integer")))
}
fn substr(a: &[Value]) -> Result<Value, FuncError> {
    let start = int_arg("substr", arg("substr", a, 0, 3)?)?;
    let end = int_arg("substr", arg("substr", a, 1, 3)?)?;
    let v: Vec<char> = s(arg("substr", a, 2, 3)?).chars().collect();
    let len = v.len() as i64;
    let start = start.clamp(0, len) as usize;
    let end = if end < 0 { len } else { end.clamp(0, len) } as usize;
    Ok(Value::String(if start >= end {
        String::new()
    } else {
        v[start..end].iter().collect()
    }))
}
fn trunc(a: &[Value]) -> Result<Value, FuncError> {
    let n = int_arg("trunc", arg("trunc", a, 0, 2)?)?;
    let v: Vec<char> = s(arg("trunc", a, 1, 2)?).chars().collect();
    let len = v.len() as i64;
    let out: String = if n >= 0 {
        v.iter().take(n.min(len) as usize).collect()
    } else {
        v.iter().skip((len + n).max(0) as usize).collect()
    };
    Ok(Value::String(out))
}
fn has_key(a: &[Value]) -> Result<Value, FuncError> {
    match arg("hasKey", a, 0, 2)? {
        Value::Map(m) | Value::Object(m) => {
            Ok(Value::Bool(m.contains_key(&s(arg("hasKey", a, 1, 2)?))))
        }
        _ => Err(err("hasKey: first argument must be a dict")),
    }
}

/// The functions templates may call, on top of gtmpl's built-ins (`index`, `printf`, `len`, ...).
const FUNCS: &[(&str, Func)] = &capped_funcs![
    ("b64enc", b64enc),
    ("b64dec", b64dec),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("trim", trim),
    ("trimAll", trim_all),
    ("trimPrefix", trim_prefix),
    ("trimSuffix", trim_suffix),
    ("replace", replace),
    ("quote", quote),
    ("squote", squote),
    ("toString", to_string),
    ("nospace", nospace),
    ("contains", contains),
    ("hasPrefix", has_prefix),
    ("hasSuffix", has_suffix),
    ("repeat", repeat),
    ("indent", indent),
    ("nindent", nindent),
    ("default", default),
    ("empty", empty),
    ("required", required),
    ("ternary", ternary),
    ("list", list),
    ("dict", dict),
    ("get", get),
    ("join", join),
    ("splitList", split_list),
    ("toJson", to_json),
    ("toRawJson", to_json),
    ("toPrettyJson", to_pretty_json),
    ("fromJson", from_json),
    ("toYaml", to_yaml),
    ("fromYaml", from_yaml),
    ("sha256sum", sha256sum),
    ("filterPEM", filter_pem),
    ("filterCertChain", crypto::filter_cert_chain),
    ("certSANs", crypto::cert_sans),
    ("pkcs12key", crypto::pkcs12key),
    ("pkcs12keyPass", crypto::pkcs12key_pass),
    ("pkcs12cert", crypto::pkcs12cert),
    ("pkcs12certPass", crypto::pkcs12cert_pass),
    ("pemToPkcs12", crypto::pem_to_pkcs12_fn),
    ("pemToPkcs12Pass", crypto::pem_to_pkcs12_pass),
    ("fullPemToPkcs12", crypto::full_pem_to_pkcs12),
    ("fullPemToPkcs12Pass", crypto::full_pem_to_pkcs12_pass),
    ("pemTruststoreToPKCS12", crypto::pem_truststore_to_pkcs12),
    (
        "pemTruststoreToPKCS12Pass",
        crypto::pem_truststore_to_pkcs12_pass,
    ),
    ("jwkPublicKeyPem", crypto::jwk_public_key_pem),
    ("jwkPrivateKeyPem", crypto::jwk_private_key_pem),
    ("rsaDecrypt", crypto::rsa_decrypt_fn),
    ("regexMatch", regex_match),
    ("regexFind", regex_find),
    ("regexReplaceAll", regex_replace_all),
    ("regexReplaceAllLiteral", regex_replace_all_literal),
    ("substr", substr),
    ("trunc", trunc),
    ("hasKey", has_key),
    ("esoValues", eso_values),
    ("esoKeys", eso_keys),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("user".to_string(), "admin".to_string()),
            ("pass".to_string(), "s3cr3t".to_string()),
            ("with-dash".to_string(), "d".to_string()),
            ("json".to_string(), r#"{"a":"b","n":[1,2]}"#.to_string()),
        ])
    }

    /// Go (and so ESO) names the missing key: `map has no entry for key "nope"`; the message
    /// never carries a value of the data.
    #[test]
    fn a_missing_key_is_named_like_go_does() {
        let d = data();
        let named = |t: &str, key: &str| {
            let e = render(t, &d).unwrap_err();
            assert!(
                e.contains(&format!("map has no entry for key \"{key}\"")),
                "{t}: {e}"
            );
            for v in d.values() {
                assert!(!e.contains(v.as_str()), "{t}: a value in {e}");
            }
        };
        named("{{ .nope }}", "nope");
        named("x {{ .user }} {{ .nope }} y", "nope");
        // Go stops at the first missing key in execution order.
        named("{{ .first }}{{ .second }}", "first");
        // Handed to a function, piped, inside with/range, through a variable.
        named(r#"{{ .nope | default "x" }}"#, "nope");
        named("{{ b64enc .nope }}", "nope");
        named("{{ with .user }}{{ $.nope }}{{ end }}", "nope");
        named("{{ range $k, $v := . }}{{ $.missing }}{{ end }}", "missing");
        named("{{ $x := . }}{{ $x.gone }}", "gone");
        // A key missing from a map built by the template itself (Go: the same message).
        named("{{ (.json | fromJson).nope }}", "nope");
        named(r#"{{ (dict "a" "b").zz }}"#, "zz");
        // Present keys still render, and a template that writes the marker itself is fine.
        assert_eq!(render("{{ .user }}", &d).ok().as_deref(), Some("admin"));
        assert_eq!(
            render("<no value> {{ .user }}", &d).ok().as_deref(),
            Some("<no value> admin")
        );
        // After a naming pass, maps from functions behave as maps again.
        assert_eq!(
            render(r#"{{ (dict "a" "b").zz | default "y" }}"#, &d).ok(),
            None
        );
        assert_eq!(
            render(r#"{{ hasKey (dict "a" "b") "a" }}"#, &d)
                .ok()
                .as_deref(),
            Some("true")
        );
    }

    #[test]
    fn eso_style_templates() {
        let d = data();
        let r = |t: &str| render(t, &d);
        assert_eq!(
            r("postgres://{{ .user }}:{{ .pass }}@db").ok().as_deref(),
            Some("postgres://admin:s3cr3t@db")
        );
        assert_eq!(r(r#"{{ index . "with-dash" }}"#).ok().as_deref(), Some("d"));
        assert_eq!(r("{{ .user | b64enc }}").ok().as_deref(), Some("YWRtaW4="));
        assert_eq!(r("{{ .user | upper }}").ok().as_deref(), Some("ADMIN"));
        assert_eq!(
            r(r#"{{ (.json | fromJson).a }}"#).ok().as_deref(),
            Some("b")
        );
        assert_eq!(
            r(r#"{{- if eq .user "admin" }}yes{{ else }}no{{ end -}}"#)
                .ok()
                .as_deref(),
            Some("yes")
        );
        assert!(
            r(r#"{{ .nope | default "x" }}"#).is_err(),
            "missingkey=error"
        );
        assert_eq!(r(r#"{{ "" | default "x" }}"#).ok().as_deref(), Some("x"));
        assert_eq!(r("{{ .user | quote }}").ok().as_deref(), Some("\"admin\""));
        assert_eq!(
            r(r#"{{ dict "a" .user | toJson }}"#).ok().as_deref(),
            Some(r#"{"a":"admin"}"#)
        );
    }

    #[test]
    fn sprig_regex_and_string_functions() {
        let d = data();
        let r = |t: &str| render(t, &d).ok();
        assert_eq!(
            r(r#"{{ regexMatch "^ad" .user }}"#).as_deref(),
            Some("true")
        );
        assert_eq!(
            r(r#"{{ regexFind "[0-9]+" "ab123c" }}"#).as_deref(),
            Some("123")
        );
        assert_eq!(
            r(r#"{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}"#).as_deref(),
            Some("-W-xxW-")
        );
        assert_eq!(
            r(r#"{{ regexReplaceAllLiteral "a(x*)b" "-ab-" "${1}" }}"#).as_deref(),
            Some("-${1}-")
        );
        assert_eq!(r(r#"{{ substr 1 3 .user }}"#).as_deref(), Some("dm"));
        assert_eq!(r(r#"{{ trunc 3 .user }}"#).as_deref(), Some("adm"));
        assert_eq!(r(r#"{{ trunc -2 .user }}"#).as_deref(), Some("in"));
        assert_eq!(
            r(r#"{{ hasKey (dict "a" "b") "a" }}"#).as_deref(),
            Some("true")
        );
        assert!(render(r#"{{ regexMatch "(" "x" }}"#, &d).is_err());
    }

    #[test]
    fn missing_key_is_an_error() {
        assert!(render("{{ .missing }}", &data()).is_err());
    }

    #[test]
    fn no_io_functions() {
        for f in [
            "env \"HOME\"",
            "expandenv \"$HOME\"",
            "getHostByName \"example.com\"",
            "now",
        ] {
            assert!(
                render(&format!("{{{{ {f} }}}}"), &data()).is_err(),
                "{f} must not exist"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_values() {
        let e = render("{{ .pass | b64dec }}", &data())
            .err()
            .unwrap_or_default();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    /// Run `f` on a thread with the 2 MiB stack tokio gives its workers.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn deep_nesting_recursion_and_unclosed_actions_are_refused() {
        let n = 5000;
        let hostile = [
            format!("{{{{ {}.pass{} }}}}", "(".repeat(n), ")".repeat(n)),
            format!("{}x{}", "{{ if true }}".repeat(n), "{{ end }}".repeat(n)),
            format!("{{{{ if false }}}}{}{{{{ end }}}}", "{{ else if false }}".repeat(n)),
            format!("{}x{}", "{{ range $i, $v := . }}".repeat(n), "{{ end }}".repeat(n)),
            r#"{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}"#.to_string(),
            r#"{{ define "a" }}{{ template "b" }}{{ end }}{{ define "b" }}{{ if true }}{{ template "a" }}{{ end }}{{ end }}{{ template "a" }}"#.to_string(),
            r#"{{ block "x" . }}{{ template "x" . }}{{ end }}"#.to_string(),
            // Unclosed actions: gtmpl's lexer spins forever on some of them.
            "{{ .pass ".to_string(),
            "{{ if eq .pass \"x\" ".to_string(),
            "ok {{ (index . \"pass\") ".to_string(),
            "{{ \"}}\" ".to_string(),
            "{{/* }} ".to_string(),
            // A long call chain, no cycle: depth adds up through the calls.
            (0..200)
                .map(|i| format!("{{{{ define \"t{i}\" }}}}{{{{ template \"t{}\" }}}}{{{{ end }}}}", i + 1))
                .collect::<String>()
                + "{{ define \"t200\" }}x{{ end }}{{ template \"t0\" }}",
        ];
        for t in hostile {
            let d = data();
            let head: String = t.chars().take(60).collect();
            let r = on_small_stack(move || render(&t, &d));
            let e = r.err().unwrap_or_default();
            assert!(e.contains("template"), "{head}: {e}");
        }
    }

    #[test]
    fn nesting_at_the_limit_renders_on_a_small_stack() {
        let n = MAX_TEMPLATE_NESTING;
        let h = n / 2;
        let ok = [
            format!("{{{{ {}.pass{} }}}}", "(".repeat(n), ")".repeat(n)),
            format!("{}x{}", "{{ if true }}".repeat(n), "{{ end }}".repeat(n)),
            format!(
                "{{{{ if false }}}}{}y{{{{ end }}}}",
                "{{ else if false }}".repeat(n - 1)
            ),
            format!(
                "{}{{{{ {}.pass{} }}}}{}",
                "{{ with . }}".repeat(h),
                "(".repeat(n - h),
                ")".repeat(n - h),
                "{{ end }}".repeat(h)
            ),
            // Not nesting: long pipelines, many actions, literals with braces and parens.
            format!("{{{{ .pass{} }}}}", " | upper".repeat(2000)),
            "{{ .pass }}".repeat(5000),
            r#"{{ "((((}}{{ if" }}{{/* {{ if ( */}}{{ `))}}` }}"#.to_string(),
            r#"{{ define "t" }}{{ .pass }}{{ end }}{{ template "t" . }}{{ template "t" . }}"#
                .to_string(),
        ];
        for t in ok {
            let d = data();
            let head: String = t.chars().take(60).collect();
            let r = on_small_stack(move || render(&t, &d));
            assert!(r.is_ok(), "{head}: {r:?}");
        }
    }

    #[test]
    fn non_ascii_in_actions_is_refused_not_a_panic() {
        // Each of these made gtmpl's lexer panic on a UTF-8 boundary (fuzz target `templates`).
        for t in [
            "{{ é }}",
            "{{ .é }}",
            "{{ \"a\" | é }}",
            "{{ 1é }}",
            "{{ \"a\"é }}",
            "{{é}}",
            "{{- é -}}",
            "{{ $é := 1 }}",
            "{{ \"\\é\" }}",
            "{{ .cert | \u{fffd}filterPEM \"CERTIFICATE\" }}",
            // Backslash escapes next to non-ASCII characters, also in raw strings.
            "{{ \"\\x41aéa\" }}",
            "{{ \"\\u0041aéaaa\" }}",
            "{{ `\\é` }}",
            "{{ `\\x41aéa` }}",
        ] {
            let r = render(t, &data());
            assert!(
                r.as_ref().is_err_and(|e| e.contains("non-ASCII")),
                "{t}: {r:?}"
            );
        }
        // Literals, comments and text keep any character.
        let d = BTreeMap::from([("clé".to_string(), "v".to_string())]);
        for (t, want) in [
            ("héllo {{ \"wörld\" }}", "héllo wörld"),
            ("{{ `é` }}{{/* é */}}{{- /* é */ -}}", "é"),
            ("{{ index . \"clé\" }}—", "v—"),
            ("{{ \"\\n é\" }}", "\n é"),
        ] {
            assert_eq!(render(t, &d).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn output_and_function_results_are_capped() {
        let d = data();
        let hostile = [
            // Output accumulating over a loop.
            r#"{{ range $i, $e := splitList "," (repeat 3000 "a,") }}{{ repeat 1048576 "b" }}{{ end }}"#.to_string(),
            // Exponential growth through a chain of functions.
            format!("{{{{ repeat 1048576 \"a\"{} }}}}", " | b64enc".repeat(40)),
            // Quadratic growth in one call.
            r#"{{ repeat 1048576 "a" | replace "a" (repeat 1048576 "b") }}"#.to_string(),
            r#"{{ join (repeat 1048576 "s") (splitList "," (repeat 100000 ",")) }}"#.to_string(),
            r#"{{ repeat 1048576 "\n" | indent 1000 }}"#.to_string(),
        ];
        for t in hostile {
            let head: String = t.chars().take(60).collect();
            let started = std::time::Instant::now();
            let e = render(&t, &d).err().unwrap_or_default();
            assert!(e.contains("MiB"), "{head}: {e}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{head}"
            );
        }
        // Up to the cap is fine.
        let ok = render(r#"{{ repeat 1048576 "a" | b64enc | b64dec }}"#, &d).unwrap_or_default();
        assert_eq!(ok.len(), 1 << 20);
    }

    #[test]
    fn left_trim_after_non_ascii_text_renders_not_a_panic() {
        // gtmpl's lexer panicked on these (fuzz target `templates`).
        let d = BTreeMap::from([("v".to_string(), "x".to_string())]);
        for (t, want) in [
            ("é{{- .v }}", "éx"),
            ("a é \n\t{{- .v }}", "a éx"),
            ("{{ .v }}ü {{- \"y\" -}} ö{{- /* c */}}!", "xüyö!"),
            ("é {{-3}}", "é -3"),
        ] {
            assert_eq!(render(t, &d).as_deref(), Ok(want), "{t}");
        }
        // ASCII text before the marker is left to gtmpl, unchanged.
        assert_eq!(render("a \n{{- .v }}", &d).as_deref(), Ok("ax"));
    }

    #[test]
    fn ranges_follow_go_and_ticks_leave_the_output_unchanged() {
        let d = BTreeMap::from([
            ("a".to_string(), "x,y,z".to_string()),
            ("b".to_string(), "v".to_string()),
        ]);
        for (t, want) in [
            (
                "{{ range splitList \",\" .a }}[{{ . }}]{{ end }}",
                "[x][y][z]",
            ),
            (
                "{{- range $i, $e := splitList \",\" .a -}}\n  {{ $i }}={{ $e }}\n{{- end }}",
                "0=x1=y2=z",
            ),
            (
                "{{ range splitList \",\" .a -}}   {{ . }} {{- else }}none{{ end }}",
                "xyz",
            ),
            (
                "{{ define \"t\" -}}\n  <{{ . }}>{{ end }}{{ template \"t\" .b }}",
                "<v>",
            ),
            ("{{ block \"u\" .b }}({{ . }}){{ end }}", "(v)"),
            ("{{ \"range\" }} {{/* range */}}{{ .b }}", "range v"),
        ] {
            assert_eq!(render(t, &d).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn execution_errors_never_quote_a_data_value() {
        let d = BTreeMap::from([
            ("pw".to_string(), "SENTINELxyz".to_string()),
            ("n".to_string(), "1".to_string()),
        ]);
        for t in [
            "{{ range .pw }}{{ end }}",
            "{{ index .pw 1 }}",
            "{{ lt .pw 1 }}",
            "{{ regexMatch .pw .pw }}{{ regexMatch (printf \"(%s\" .pw) .n }}",
        ] {
            let e = render(t, &d).unwrap_err();
            assert!(!e.contains("SENTINEL"), "{t}: {e}");
        }
        assert!(
            render("{{ index .pw 1 }}", &d)
                .unwrap_err()
                .contains("<redacted>")
        );
    }

    #[test]
    fn range_over_a_map_visits_keys_in_sorted_order_every_time() {
        let d: BTreeMap<String, String> = (0..20)
            .map(|i| (format!("key{i:02}"), format!("v{i}")))
            .collect();
        let want: String = d.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        for _ in 0..10 {
            assert_eq!(
                render("{{ range $k, $v := . }}{{ $k }}={{ $v }}\n{{ end }}", &d).as_deref(),
                Ok(want.as_str())
            );
        }
    }

    #[test]
    fn loops_are_bounded_by_the_work_budget() {
        let items = vec!["i"; 100].join(",");
        let d = BTreeMap::from([("l".to_string(), items)]);
        let ctx = context(&d);
        // 100 x 100 x 100 iterations with an empty body: a million ticks.
        let nested = "{{ $l := splitList \",\" .l }}{{ range $l }}{{ range $l }}{{ range $l }}{{ end }}{{ end }}{{ end }}done";
        let e = render_budgeted(nested, &ctx, 50_000).unwrap_err();
        assert!(e.contains("work budget"), "{e}");
        // One level fits easily, and the budget is per execution.
        let one = "{{ range splitList \",\" .l }}{{ end }}done";
        for _ in 0..3 {
            assert_eq!(render_budgeted(one, &ctx, 50_000).as_deref(), Ok("done"));
        }
        // Exponential define chains are charged per execution too.
        let mut chain = String::from("{{ define \"t0\" }}{{ end }}");
        for i in 1..20 {
            chain.push_str(&format!(
                "{{{{ define \"t{i}\" }}}}{{{{ template \"t{}\" }}}}{{{{ template \"t{}\" }}}}{{{{ end }}}}",
                i - 1,
                i - 1
            ));
        }
        chain.push_str("{{ template \"t19\" }}");
        let e = render_budgeted(&chain, &ctx, 50_000).unwrap_err();
        assert!(e.contains("work budget"), "{e}");
        // Text moved through functions is charged per KiB.
        let big = "{{ $x := repeat 1000000 \"a\" }}{{ range splitList \",\" .l }}{{ $x | b64enc | len }}{{ end }}";
        let e = render_budgeted(big, &ctx, 50_000).unwrap_err();
        assert!(e.contains("work budget"), "{e}");
    }
}
