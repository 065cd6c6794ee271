//! The evaluator: Go `text/template` execution semantics, with limits inside.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use crate::fmt as gofmt;
use crate::funcs::{Builtin, FuncEntry};
use crate::parse::{Arg, Cmd, Node, Pipe};
use crate::value::Value;
use crate::{Error, ErrorKind, Limits};

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Exec<'a> {
    pub trees: &'a HashMap<String, Arc<Vec<Node>>>,
    pub name: &'a str,
    pub tmpl: String,
    pub out: Vec<u8>,
    pub vars: Vec<(String, Value)>,
    pub fuel: u64,
    pub depth: usize,
    pub calls: Vec<String>,
    pub limits: &'a Limits,
}

type R<T> = Result<T, Error>;

impl Exec<'_> {
    fn limit(&self, msg: String) -> Error {
        Error::new(ErrorKind::Limit, format!("template: {}: {msg}", self.name))
    }

    fn charge(&mut self, units: u64) -> R<()> {
        match self.fuel.checked_sub(units) {
            Some(rest) => {
                self.fuel = rest;
                Ok(())
            }
            None => {
                self.fuel = 0;
                Err(self.limit(format!(
                    "template execution exceeded its work budget ({} units: actions, loop iterations, function calls and KiB of text they handle); reduce nested ranges or the size of the data they iterate over",
                    self.limits.fuel
                )))
            }
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.limits.max_nesting {
            return Err(self.limit(format!(
                "template nested deeper than {} levels (blocks, parentheses and template calls)",
                self.limits.max_nesting
            )));
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> R<()> {
        if self.out.len().saturating_add(b.len()) > self.limits.max_output {
            return Err(self.limit(format!(
                "template output over {} MiB",
                self.limits.max_output >> 20
            )));
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    fn err_at(&self, line: usize, col: usize, at: &str, msg: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Exec,
            format!(
                "template: {}:{line}:{col}: executing \"{}\" at <{at}>: {msg}",
                self.name, self.tmpl
            ),
        )
    }

    pub(crate) fn run(&mut self, nodes: &[Node], dot: &Value) -> R<()> {
        self.walk(nodes, dot).map(|_| ())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> R<Flow> {
        for n in nodes {
            self.charge(1)?;
            match n {
                Node::Text(t) => self.write(t)?,
                Node::Action(p) => {
                    let v = self.pipeline(dot, p)?;
                    if p.decl.is_empty() {
                        match &v {
                            Value::Nil => self.write(b"<no value>")?,
                            Value::Str(s) => self.write(s)?,
                            other => {
                                let b = gofmt::sprint_value(other);
                                self.write(&b)?
                            }
                        }
                    }
                }
                Node::If(p, body, els) | Node::With(p, body, els) => {
                    self.enter()?;
                    let mark = self.vars.len();
                    let v = self.pipeline(dot, p)?;
                    let with = matches!(n, Node::With(..));
                    let flow = if v.truthy() {
                        if with {
                            self.walk(body, &v)?
                        } else {
                            self.walk(body, dot)?
                        }
                    } else {
                        self.walk(els, dot)?
                    };
                    self.vars.truncate(mark);
                    self.depth -= 1;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(p, body, els) => {
                    self.enter()?;
                    let mark = self.vars.len();
                    self.range(dot, p, body, els)?;
                    self.vars.truncate(mark);
                    self.depth -= 1;
                }
                Node::Template(name, p, line, col) => {
                    let arg = match p {
                        Some(p) => {
                            let mark = self.vars.len();
                            let v = self.pipeline(dot, p)?;
                            self.vars.truncate(mark);
                            v
                        }
                        None => Value::Nil,
                    };
                    let Some(tree) = self.trees.get(name).cloned() else {
                        return Err(self.err_at(
                            *line,
                            *col,
                            &format!("{{{{template \"{name}\"}}}}"),
                            format!("template: no such template \"{name}\""),
                        ));
                    };
                    if self.depth + 1 > self.limits.max_nesting
                        && self.calls.iter().any(|c| c == name)
                    {
                        return Err(self.limit(format!(
                            "template \"{name}\" calls itself: nested deeper than {} levels (blocks, parentheses and template calls)",
                            self.limits.max_nesting
                        )));
                    }
                    self.enter()?;
                    let saved_vars =
                        std::mem::replace(&mut self.vars, vec![("$".to_string(), arg.clone())]);
                    let saved_tmpl = std::mem::replace(&mut self.tmpl, name.clone());
                    self.calls.push(name.clone());
                    let r = self.walk(&tree, &arg);
                    self.calls.pop();
                    self.tmpl = saved_tmpl;
                    self.vars = saved_vars;
                    self.depth -= 1;
                    r?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, dot: &Value, p: &Pipe, body: &[Node], els: &[Node]) -> R<()> {
        let v = self.pipe_value(dot, p)?;
        let nvars = p.decl.len();
        // As Go's evalPipeline: the range's variables first hold the ranged-over value (what
        // the `else` branch sees), then each iteration overwrites them.
        for name in &p.decl {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => {
                        return Err(self.err_at(
                            p.line,
                            p.col,
                            "range",
                            format!("undefined variable: {name}"),
                        ));
                    }
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        let set = |s: &mut Self, k: Value, e: Value| {
            let vals: Vec<Value> = if nvars == 2 { vec![k, e] } else { vec![e] };
            if p.assign {
                for (name, val) in p.decl.iter().zip(vals) {
                    if let Some(slot) = s.vars.iter_mut().rev().find(|(n, _)| n == name) {
                        slot.1 = val;
                    }
                }
            } else {
                let top = s.vars.len() - nvars.min(s.vars.len());
                for (slot, val) in s.vars[top..].iter_mut().zip(vals) {
                    slot.1 = val;
                }
            }
        };
        let mut any = false;
        macro_rules! iter {
            ($k:expr, $e:expr) => {{
                any = true;
                self.charge(1)?;
                let mark = self.vars.len();
                let e: Value = $e;
                set(self, $k, e.clone());
                let flow = self.walk(body, &e)?;
                self.vars.truncate(mark);
                match flow {
                    Flow::Break => break,
                    Flow::Continue | Flow::Normal => {}
                }
            }};
        }
        match &v {
            Value::List(l) => {
                for (i, e) in l.iter().enumerate() {
                    iter!(Value::Int(i as i64), e.clone());
                }
            }
            Value::Map(m) => {
                for (k, e) in m.entries.iter() {
                    iter!(Value::str(k), e.clone());
                }
            }
            Value::Int(n) => {
                if nvars == 2 {
                    return Err(self.err_at(
                        p.line,
                        p.col,
                        "range",
                        "can't use two variables with range over int",
                    ));
                }
                for i in 0..*n {
                    iter!(Value::Int(i), Value::Int(i));
                }
            }
            Value::Nil => {}
            other => {
                return Err(self.err_at(
                    p.line,
                    p.col,
                    "range",
                    format!(
                        "range can't iterate over a value of type {}",
                        other.type_name()
                    ),
                ));
            }
        }
        if !any {
            self.walk(els, dot)?;
        }
        Ok(())
    }

    /// Evaluate a pipeline and bind its declaration (if any).
    fn pipeline(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let v = self.pipe_value(dot, p)?;
        if let Some(name) = p.decl.first() {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => {
                        return Err(self.err_at(
                            p.line,
                            p.col,
                            name,
                            format!("undefined variable: {name}"),
                        ));
                    }
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn pipe_value(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let mut fin: Option<Value> = None;
        for c in &p.cmds {
            fin = Some(self.command(dot, c, fin, p)?);
        }
        Ok(fin.unwrap_or_default())
    }

    fn command(&mut self, dot: &Value, c: &Cmd, fin: Option<Value>, p: &Pipe) -> R<Value> {
        let has_args = c.args.len() > 1 || fin.is_some();
        let Some(first) = c.args.first() else {
            return Ok(Value::Nil);
        };
        let at = |s: &Self, msg: String| s.err_at(p.line, p.col, &c.src, msg);
        match first {
            Arg::Builtin(b) => self.builtin(*b, dot, &c.args[1..], fin, c, p),
            Arg::Func(f) => {
                let mut args = Vec::with_capacity(c.args.len());
                for a in &c.args[1..] {
                    args.push(self.arg(dot, a, c, p)?);
                }
                if let Some(v) = fin {
                    args.push(v);
                }
                self.call(f, &args, c, p)
            }
            Arg::Field(chain) => {
                if has_args {
                    let last = chain.last().map(String::as_str).unwrap_or("");
                    return Err(at(
                        self,
                        format!("{last} is not a method but has arguments"),
                    ));
                }
                self.chain(dot.clone(), chain, c, p)
            }
            Arg::Var(name, chain) => {
                if has_args {
                    return Err(at(
                        self,
                        format!("can't give argument to non-function {name}"),
                    ));
                }
                let v = self.var(name, c, p)?;
                self.chain(v, chain, c, p)
            }
            Arg::Pipe(inner, chain) => {
                if has_args {
                    return Err(at(self, "can't give argument to non-function".to_string()));
                }
                let v = self.paren(dot, inner)?;
                self.chain(v, chain, c, p)
            }
            Arg::Nil => Err(at(self, "nil is not a command".to_string())),
            Arg::Dot | Arg::Const(_) => {
                if has_args {
                    return Err(at(
                        self,
                        format!(
                            "can't give argument to non-function {}",
                            c.src.split(' ').next().unwrap_or("")
                        ),
                    ));
                }
                Ok(match first {
                    Arg::Dot => dot.clone(),
                    Arg::Const(v) => v.clone(),
                    _ => Value::Nil,
                })
            }
        }
    }

    fn paren(&mut self, dot: &Value, inner: &Pipe) -> R<Value> {
        self.enter()?;
        let mark = self.vars.len();
        let v = self.pipeline(dot, inner);
        // A declaration inside parentheses stays visible (Go keeps it), so do not truncate on success.
        if v.is_err() {
            self.vars.truncate(mark);
        }
        self.depth -= 1;
        v
    }

    fn var(&self, name: &str, c: &Cmd, p: &Pipe) -> R<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.err_at(p.line, p.col, &c.src, format!("undefined variable: {name}"))),
        }
    }

    fn chain(&self, mut v: Value, chain: &[String], c: &Cmd, p: &Pipe) -> R<Value> {
        for f in chain {
            v = match &v {
                Value::Map(m) => match m.entries.get(f) {
                    Some(x) => x.clone(),
                    None => {
                        return Err(self.err_at(
                            p.line,
                            p.col,
                            &field_src(c, f),
                            format!("map has no entry for key \"{f}\""),
                        ));
                    }
                },
                Value::Nil => {
                    return Err(self.err_at(
                        p.line,
                        p.col,
                        &field_src(c, f),
                        format!("nil pointer evaluating interface {{}}.{f}"),
                    ));
                }
                other => {
                    return Err(self.err_at(
                        p.line,
                        p.col,
                        &field_src(c, f),
                        format!("can't evaluate field {f} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(v)
    }

    fn arg(&mut self, dot: &Value, a: &Arg, c: &Cmd, p: &Pipe) -> R<Value> {
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(Value::Nil),
            Arg::Const(v) => Ok(v.clone()),
            Arg::Field(chain) => self.chain(dot.clone(), chain, c, p),
            Arg::Var(name, chain) => {
                let v = self.var(name, c, p)?;
                self.chain(v, chain, c, p)
            }
            Arg::Pipe(inner, chain) => {
                let v = self.paren(dot, inner)?;
                self.chain(v, chain, c, p)
            }
            Arg::Func(f) => self.call(f, &[], c, p),
            Arg::Builtin(b) => self.builtin(*b, dot, &[], None, c, p),
        }
    }

    fn call(&mut self, f: &FuncEntry, args: &[Value], c: &Cmd, p: &Pipe) -> R<Value> {
        let in_size: usize = args.iter().map(Value::text_size).sum();
        self.charge(1 + f.cost + (in_size >> 10) as u64)?;
        let v = (f.f)(args).map_err(|e| {
            if e.0.contains("result would be over") || e.0.contains("result over") {
                self.limit(format!("{}: {}", f.name, e.0))
            } else {
                self.err_at(
                    p.line,
                    p.col,
                    &c.src,
                    format!("error calling {}: {}", f.name, e.0),
                )
            }
        })?;
        let size = v.text_size();
        if size > self.limits.max_value {
            return Err(self.limit(format!(
                "{}: result over {} MiB",
                f.name,
                self.limits.max_value >> 20
            )));
        }
        self.charge((size >> 10) as u64)?;
        Ok(v)
    }

    fn builtin(
        &mut self,
        b: Builtin,
        dot: &Value,
        rest: &[Arg],
        fin: Option<Value>,
        c: &Cmd,
        p: &Pipe,
    ) -> R<Value> {
        self.charge(1)?;
        let nargs = rest.len() + usize::from(fin.is_some());
        let err = |s: &Self, msg: String| s.err_at(p.line, p.col, &c.src, msg);
        if matches!(b, Builtin::And | Builtin::Or) {
            if nargs == 0 {
                return Err(err(
                    self,
                    format!(
                        "wrong number of args for {}: want at least 1 got 0",
                        b.name()
                    ),
                ));
            }
            let mut last = Value::Nil;
            for a in rest {
                last = self.arg(dot, a, c, p)?;
                if last.truthy() == (b == Builtin::Or) {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(nargs);
        for a in rest {
            args.push(self.arg(dot, a, c, p)?);
        }
        if let Some(f) = fin {
            args.push(f);
        }
        let want = |s: &Self, n: usize| -> R<()> {
            if args.len() != n {
                return Err(err(
                    s,
                    format!(
                        "wrong number of args for {}: want {n} got {}",
                        b.name(),
                        args.len()
                    ),
                ));
            }
            Ok(())
        };
        let r = match b {
            Builtin::And | Builtin::Or => Value::Nil,
            Builtin::Not => {
                want(self, 1)?;
                Value::Bool(!args[0].truthy())
            }
            Builtin::Len => {
                want(self, 1)?;
                match &args[0] {
                    Value::Str(s) => Value::Int(s.len() as i64),
                    Value::List(l) => Value::Int(l.len() as i64),
                    Value::Map(m) => Value::Int(m.entries.len() as i64),
                    Value::Nil => {
                        return Err(err(self, "error calling len: len of nil pointer".into()));
                    }
                    o => {
                        return Err(err(
                            self,
                            format!("error calling len: len of type {}", o.type_name()),
                        ));
                    }
                }
            }
            Builtin::Index => {
                if args.is_empty() {
                    return Err(err(
                        self,
                        "wrong number of args for index: want at least 1 got 0".into(),
                    ));
                }
                let mut v = args[0].clone();
                for k in &args[1..] {
                    v = index_one(&v, k)
                        .map_err(|m| err(self, format!("error calling index: {m}")))?;
                }
                v
            }
            Builtin::Slice => {
                if args.is_empty() {
                    return Err(err(
                        self,
                        "wrong number of args for slice: want at least 1 got 0".into(),
                    ));
                }
                slice(&args[0], &args[1..])
                    .map_err(|m| err(self, format!("error calling slice: {m}")))?
            }
            Builtin::Print => Value::from(gofmt::sprint(&args)),
            Builtin::Println => Value::from(gofmt::sprintln(&args)),
            Builtin::Printf => {
                let Some(Value::Str(f)) = args.first() else {
                    return Err(err(self, "wrong type for value; expected string".into()));
                };
                for a in &args[1..] {
                    if let Value::Int(w) = a {
                        let _ = w;
                    }
                }
                let f = f.clone();
                let out = gofmt::sprintf(&f, &args[1..]);
                if out.len() > self.limits.max_value {
                    return Err(self.limit(format!(
                        "printf: result over {} MiB",
                        self.limits.max_value >> 20
                    )));
                }
                Value::from(out)
            }
            Builtin::Html => Value::from(html_escape(&eval_args(&args))),
            Builtin::Js => Value::from(js_escape(&eval_args(&args))),
            Builtin::Urlquery => Value::from(query_escape(&eval_args(&args))),
            Builtin::Eq => {
                if args.len() < 2 {
                    return Err(err(
                        self,
                        "error calling eq: missing argument for comparison".into(),
                    ));
                }
                let mut t = false;
                for a in &args[1..] {
                    if eq(&args[0], a).map_err(|m| err(self, format!("error calling eq: {m}")))? {
                        t = true;
                        break;
                    }
                }
                Value::Bool(t)
            }
            Builtin::Ne => {
                want(self, 2)?;
                Value::Bool(
                    !eq(&args[0], &args[1])
                        .map_err(|m| err(self, format!("error calling ne: {m}")))?,
                )
            }
            Builtin::Lt | Builtin::Le | Builtin::Gt | Builtin::Ge => {
                want(self, 2)?;
                let o = cmp(&args[0], &args[1])
                    .map_err(|m| err(self, format!("error calling {}: {m}", b.name())))?;
                Value::Bool(match b {
                    Builtin::Lt => o == Ordering::Less,
                    Builtin::Le => o != Ordering::Greater,
                    Builtin::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                })
            }
            Builtin::Call => {
                return Err(err(
                    self,
                    "error calling call: non-function of type value".into(),
                ));
            }
        };
        let size = r.text_size();
        self.charge((size >> 10) as u64)?;
        Ok(r)
    }
}

fn field_src(c: &Cmd, f: &str) -> String {
    let first = c.src.split(' ').next().unwrap_or("");
    if first.contains(&format!(".{f}")) {
        first.to_string()
    } else {
        format!(".{f}")
    }
}

fn index_one(v: &Value, k: &Value) -> Result<Value, String> {
    match v {
        Value::List(l) => {
            let Value::Int(i) = k else {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    k.type_name()
                ));
            };
            if *i < 0 || *i as usize >= l.len() {
                return Err(format!("index out of range: {i}"));
            }
            Ok(l[*i as usize].clone())
        }
        Value::Str(s) => {
            let Value::Int(i) = k else {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    k.type_name()
                ));
            };
            if *i < 0 || *i as usize >= s.len() {
                return Err(format!("index out of range: {i}"));
            }
            Ok(Value::Int(i64::from(s[*i as usize])))
        }
        Value::Map(m) => {
            let key = match k {
                Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                o => {
                    return Err(format!(
                        "value has type {}; should be string",
                        o.type_name()
                    ));
                }
            };
            Ok(match m.entries.get(&key) {
                Some(v) => v.clone(),
                None if m.strings => Value::str(""),
                None => Value::Nil,
            })
        }
        Value::Nil => Err("index of untyped nil".into()),
        o => Err(format!("can't index item of type {}", o.type_name())),
    }
}

fn slice(v: &Value, idx: &[Value]) -> Result<Value, String> {
    if idx.len() > 3 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let len = match v {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Nil => return Err("slice of untyped nil".into()),
        o => return Err(format!("can't slice item of type {}", o.type_name())),
    };
    if matches!(v, Value::Str(_)) && idx.len() == 3 {
        return Err("cannot 3-index slice a string".into());
    }
    let mut ix = [0usize, len, len];
    for (n, i) in idx.iter().enumerate() {
        let Value::Int(i) = i else {
            return Err(format!(
                "cannot index slice/array with type {}",
                i.type_name()
            ));
        };
        if *i < 0 || *i as usize > len {
            return Err(format!("index out of range: {i}"));
        }
        ix[n] = *i as usize;
    }
    if ix[0] > ix[1] {
        return Err(format!("invalid slice index: {} > {}", ix[0], ix[1]));
    }
    if idx.len() == 3 && ix[1] > ix[2] {
        return Err(format!("invalid slice index: {} > {}", ix[1], ix[2]));
    }
    Ok(match v {
        Value::Str(s) => Value::str(&s[ix[0]..ix[1]]),
        Value::List(l) => Value::list(l[ix[0]..ix[1]].to_vec()),
        _ => Value::Nil,
    })
}

#[derive(PartialEq)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

/// Go's `eq` for one pair.
pub(crate) fn eq(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka != kb {
        if ka != Kind::Invalid && kb != Kind::Invalid {
            return Err("incompatible types for comparison".into());
        }
        return Ok(false);
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        _ => return Err("non-comparable type".into()),
    })
}

fn cmp(a: &Value, b: &Value) -> Result<Ordering, String> {
    let (ka, kb) = (kind(a), kind(b));
    if matches!(ka, Kind::Invalid | Kind::Bool | Kind::Other)
        || matches!(kb, Kind::Invalid | Kind::Bool | Kind::Other)
    {
        return Err("invalid type for comparison".into());
    }
    if ka != kb {
        return Err("incompatible types for comparison".into());
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        _ => Ordering::Equal,
    })
}

fn eval_args(args: &[Value]) -> Vec<u8> {
    if let [Value::Str(s)] = args {
        return s.to_vec();
    }
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(args[i - 1], Value::Str(_)) && !matches!(a, Value::Str(_)) {
            out.push(b' ');
        }
        match a {
            Value::Nil => out.extend_from_slice(b"<no value>"),
            a => out.extend(gofmt::sprint_value(a)),
        }
    }
    out
}

fn html_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'"' => out.extend_from_slice(b"&#34;"),
            0 => out.extend_from_slice("\u{fffd}".as_bytes()),
            b => out.push(b),
        }
    }
    out
}

fn js_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\'' => out.extend_from_slice(b"\\'"),
                '"' => out.extend_from_slice(b"\\\""),
                '<' => out.extend_from_slice(b"\\u003C"),
                '>' => out.extend_from_slice(b"\\u003E"),
                '&' => out.extend_from_slice(b"\\u0026"),
                '=' => out.extend_from_slice(b"\\u003D"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes())
                }
                c if c.is_ascii() => out.push(c as u8),
                c if c.is_control() => {
                    out.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes())
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            b => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    out
}
