//! Lexer and parser: template text to an AST, following Go's `text/template/parse`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::funcs::{Builtin, FuncEntry, FuncMap};
use crate::value::{Bytes, Value};
use crate::{Error, ErrorKind, MAX_NESTING};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(Vec<u8>),
    Left,
    Right,
    Space,
    Ident(String),
    Keyword(&'static str),
    Field(String),
    Var(String),
    Dot,
    Str(Vec<u8>),
    Number(String),
    Char(char),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with",
];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    left: &'a [u8],
    right: &'a [u8],
    toks: Vec<Token>,
    name: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Lexer<'a> {
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let idx = self.line_starts.partition_point(|&s| s <= pos);
        let start = self
            .line_starts
            .get(idx.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        (idx, pos - start)
    }
    fn err(&self, pos: usize, msg: impl Into<String>) -> Error {
        let (line, _) = self.line_col(pos);
        Error::new(
            ErrorKind::Parse,
            format!("template: {}:{}: {}", self.name, line, msg.into()),
        )
    }
    fn push(&mut self, tok: Tok, pos: usize) {
        let (line, col) = self.line_col(pos);
        self.toks.push(Token { tok, line, col });
    }
    fn at(&self, p: usize, s: &[u8]) -> bool {
        self.src.get(p..p + s.len()) == Some(s)
    }
    fn char_at(&self, p: usize) -> Option<char> {
        let rest = self.src.get(p..)?;
        let end = rest.len().min(4);
        match std::str::from_utf8(&rest[..end]) {
            Ok(s) => s.chars().next(),
            Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&rest[..e.valid_up_to()])
                .ok()?
                .chars()
                .next(),
            Err(_) => Some('\u{fffd}'),
        }
    }

    fn run(mut self) -> Result<Vec<Token>, Error> {
        let mut trim_next = false;
        loop {
            // Text up to the next left delimiter.
            let start = self.pos;
            let found = find(&self.src[self.pos..], self.left).map(|i| i + self.pos);
            let end = found.unwrap_or(self.src.len());
            let mut text = &self.src[start..end];
            let after_left = end + self.left.len();
            let left_trim = found.is_some()
                && self.src.len() >= after_left + 2
                && self.src[after_left] == b'-'
                && is_space(self.src[after_left + 1]);
            if trim_next {
                let n = text.iter().take_while(|b| is_space(**b)).count();
                text = &text[n..];
            }
            if left_trim {
                let n = text.iter().rev().take_while(|b| is_space(**b)).count();
                text = &text[..text.len() - n];
            }
            if !text.is_empty() {
                self.push(Tok::Text(text.to_vec()), start);
            }
            let Some(lpos) = found else {
                self.push(Tok::Eof, self.src.len());
                return Ok(self.toks);
            };
            self.pos = after_left + if left_trim { 2 } else { 0 };
            // Comment?
            if self.at(self.pos, b"/*") {
                let Some(close) = find(&self.src[self.pos + 2..], b"*/") else {
                    return Err(self.err(lpos, "unclosed comment"));
                };
                let mut p = self.pos + 2 + close + 2;
                let mut rtrim = false;
                if self.src.len() >= p + 2 && is_space(self.src[p]) && self.src[p + 1] == b'-' {
                    rtrim = true;
                    p += 2;
                }
                if !self.at(p, self.right) {
                    return Err(self.err(lpos, "comment ends before closing delimiter"));
                }
                self.pos = p + self.right.len();
                trim_next = rtrim;
                continue;
            }
            self.push(Tok::Left, lpos);
            trim_next = self.action()?;
        }
    }

    /// Lex inside an action; returns whether the closing delimiter had a trim marker.
    fn action(&mut self) -> Result<bool, Error> {
        let mut parens = 0i32;
        loop {
            let p = self.pos;
            // Right delimiter, possibly trimmed.
            let trimmed = self.src.len() >= p + 2
                && is_space(self.src[p])
                && self.src[p + 1] == b'-'
                && self.at(p + 2, self.right);
            if trimmed || self.at(p, self.right) {
                if parens != 0 {
                    return Err(self.err(p, "unclosed left paren"));
                }
                let rp = if trimmed { p + 2 } else { p };
                self.push(Tok::Right, rp);
                self.pos = rp + self.right.len();
                return Ok(trimmed);
            }
            let Some(&b) = self.src.get(p) else {
                return Err(self.err(p, "unclosed action"));
            };
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    let mut q = p;
                    while q < self.src.len() && is_space(self.src[q]) {
                        if q + 2 < self.src.len() + 1
                            && self.src.get(q + 1) == Some(&b'-')
                            && self.at(q + 2, self.right)
                        {
                            break;
                        }
                        q += 1;
                    }
                    if q == p {
                        q += 1;
                    }
                    self.push(Tok::Space, p);
                    self.pos = q;
                }
                b'=' => {
                    self.push(Tok::Assign, p);
                    self.pos += 1;
                }
                b':' => {
                    if self.src.get(p + 1) != Some(&b'=') {
                        return Err(self.err(p, "expected :="));
                    }
                    self.push(Tok::Declare, p);
                    self.pos += 2;
                }
                b'|' => {
                    self.push(Tok::Pipe, p);
                    self.pos += 1;
                }
                b',' => {
                    self.push(Tok::Comma, p);
                    self.pos += 1;
                }
                b'"' => {
                    let mut q = p + 1;
                    loop {
                        match self.src.get(q) {
                            None | Some(b'\n') => {
                                return Err(self.err(p, "unterminated quoted string"));
                            }
                            Some(b'\\') => {
                                if matches!(self.src.get(q + 1), None | Some(b'\n')) {
                                    return Err(self.err(p, "unterminated quoted string"));
                                }
                                q += 2;
                            }
                            Some(b'"') => break,
                            Some(_) => q += 1,
                        }
                    }
                    let s = unquote(&self.src[p + 1..q], b'"').map_err(|m| self.err(p, m))?;
                    self.push(Tok::Str(s), p);
                    self.pos = q + 1;
                }
                b'`' => {
                    let Some(close) = self.src[p + 1..].iter().position(|c| *c == b'`') else {
                        return Err(self.err(p, "unterminated raw quoted string"));
                    };
                    let raw: Vec<u8> = self.src[p + 1..p + 1 + close]
                        .iter()
                        .copied()
                        .filter(|c| *c != b'\r')
                        .collect();
                    self.push(Tok::Str(raw), p);
                    self.pos = p + 2 + close;
                }
                b'\'' => {
                    let mut q = p + 1;
                    loop {
                        match self.src.get(q) {
                            None | Some(b'\n') => {
                                return Err(self.err(p, "unterminated character constant"));
                            }
                            Some(b'\\') => q += 2,
                            Some(b'\'') => break,
                            Some(_) => q += 1,
                        }
                    }
                    let body = unquote(&self.src[p + 1..q], b'\'').map_err(|m| self.err(p, m))?;
                    let s = String::from_utf8(body)
                        .map_err(|_| self.err(p, "malformed character constant"))?;
                    let mut it = s.chars();
                    let (Some(c), None) = (it.next(), it.next()) else {
                        return Err(self.err(p, format!("malformed character constant: '{s}'")));
                    };
                    self.push(Tok::Char(c), p);
                    self.pos = q + 1;
                }
                b'$' => {
                    let mut q = p + 1;
                    while let Some(c) = self.char_at(q) {
                        if !is_alnum(c) {
                            break;
                        }
                        q += c.len_utf8();
                    }
                    let name = String::from_utf8_lossy(&self.src[p..q]).into_owned();
                    self.pos = q;
                    self.check_terminator()?;
                    self.push(Tok::Var(name), p);
                }
                b'.' => {
                    if self.src.get(p + 1).is_some_and(u8::is_ascii_digit) {
                        self.number(p)?;
                        continue;
                    }
                    let mut q = p + 1;
                    while let Some(c) = self.char_at(q) {
                        if !is_alnum(c) {
                            break;
                        }
                        q += c.len_utf8();
                    }
                    if q == p + 1 {
                        self.push(Tok::Dot, p);
                        self.pos = q;
                    } else {
                        let name = String::from_utf8_lossy(&self.src[p + 1..q]).into_owned();
                        self.pos = q;
                        self.check_terminator()?;
                        self.push(Tok::Field(name), p);
                    }
                }
                b'(' => {
                    parens += 1;
                    self.push(Tok::LParen, p);
                    self.pos += 1;
                }
                b')' => {
                    parens -= 1;
                    if parens < 0 {
                        return Err(self.err(p, "unexpected right paren"));
                    }
                    self.push(Tok::RParen, p);
                    self.pos += 1;
                }
                b'+' | b'-' | b'0'..=b'9' => self.number(p)?,
                _ => {
                    let c = self.char_at(p).unwrap_or('\u{fffd}');
                    if is_alnum(c) {
                        let mut q = p;
                        while let Some(c) = self.char_at(q) {
                            if !is_alnum(c) {
                                break;
                            }
                            q += c.len_utf8();
                        }
                        let word = String::from_utf8_lossy(&self.src[p..q]).into_owned();
                        self.pos = q;
                        self.check_terminator()?;
                        let tok = match word.as_str() {
                            "true" => Tok::Bool(true),
                            "false" => Tok::Bool(false),
                            "nil" => Tok::Nil,
                            w => match KEYWORDS.iter().find(|k| **k == w) {
                                Some(k) => Tok::Keyword(k),
                                None => Tok::Ident(word),
                            },
                        };
                        self.push(tok, p);
                    } else if c.is_ascii() && !c.is_ascii_control() {
                        return Err(self.err(p, format!("unexpected \"{c}\" in command")));
                    } else {
                        return Err(self.err(
                            p,
                            format!("unrecognized character in action: U+{:04X}", c as u32),
                        ));
                    }
                }
            }
        }
    }

    fn check_terminator(&self) -> Result<(), Error> {
        let p = self.pos;
        let Some(&b) = self.src.get(p) else {
            return Ok(());
        };
        if is_space(b)
            || matches!(b, b'.' | b',' | b'|' | b':' | b')' | b'(')
            || self.at(p, self.right)
        {
            return Ok(());
        }
        let c = self.char_at(p).unwrap_or('\u{fffd}');
        Err(self.err(p, format!("bad character U+{:04X} '{c}'", c as u32)))
    }

    fn number(&mut self, p: usize) -> Result<(), Error> {
        let mut q = p;
        if matches!(self.src.get(q), Some(b'+' | b'-')) {
            q += 1;
        }
        while let Some(&c) = self.src.get(q) {
            let prev = if q > p { self.src[q - 1] } else { 0 };
            let ok = c.is_ascii_alphanumeric()
                || c == b'_'
                || c == b'.'
                || (matches!(c, b'+' | b'-') && matches!(prev, b'e' | b'E' | b'p' | b'P'));
            if !ok {
                break;
            }
            q += 1;
        }
        let s = String::from_utf8_lossy(&self.src[p..q]).into_owned();
        if self.char_at(q).is_some_and(is_alnum) {
            return Err(self.err(p, format!("bad number syntax: \"{s}\"")));
        }
        self.push(Tok::Number(s), p);
        self.pos = q;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `strconv.Unquote` body (the text between the quotes).
fn unquote(s: &[u8], quote: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let hex = |b: &[u8]| -> Result<u32, String> {
        u32::from_str_radix(std::str::from_utf8(b).map_err(|_| "invalid syntax")?, 16)
            .map_err(|_| "invalid syntax".to_string())
    };
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let Some(&e) = s.get(i + 1) else {
            return Err("invalid syntax".into());
        };
        i += 2;
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            // Each quote may only be escaped inside its own kind of literal.
            b'\'' if quote == b'\'' => out.push(b'\''),
            b'"' if quote == b'"' => out.push(b'"'),
            b'x' => {
                let h = s.get(i..i + 2).ok_or("invalid syntax")?;
                out.push(hex(h)? as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let o = s.get(i - 1..i + 2).ok_or("invalid syntax")?;
                let v =
                    u32::from_str_radix(std::str::from_utf8(o).map_err(|_| "invalid syntax")?, 8)
                        .map_err(|_| "invalid syntax")?;
                if v > 255 {
                    return Err("invalid syntax".into());
                }
                out.push(v as u8);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let h = s.get(i..i + n).ok_or("invalid syntax")?;
                let c = char::from_u32(hex(h)?).ok_or("invalid syntax")?;
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                i += n;
            }
            _ => return Err("invalid syntax".into()),
        }
    }
    Ok(out)
}

/// A parsed number literal: its value in an argument position.
fn parse_number(s: &str) -> Option<Value> {
    let clean: String = s.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains('p') || h.contains('.') {
            None
        } else {
            i64::from_str_radix(h, 16).ok()
        }
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Some(Value::Int(if neg { -i } else { i }));
    }
    if lower.starts_with("0x") || lower.ends_with('i') {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    Some(Value::Float(if neg { -f } else { f }))
}

/// One operand of a command.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Dot,
    Nil,
    Const(Value),
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// `$x.a.b`.
    Var(String, Vec<String>),
    /// `(pipeline).a.b`.
    Pipe(Box<Pipe>, Vec<String>),
    Builtin(Builtin),
    Func(Arc<FuncEntry>),
}

/// A command: operands, the first of which may be a function.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub args: Vec<Arg>,
    /// Source text, for error messages.
    pub src: String,
}

/// A pipeline with its optional declaration.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(Bytes),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    Template(String, Option<Pipe>, usize, usize),
    Break,
    Continue,
}

/// The parse result: the named templates.
pub(crate) struct Parsed {
    pub trees: HashMap<String, Arc<Vec<Node>>>,
}

enum End {
    Close,
    Else(Token),
    Eof,
}

struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    name: &'a str,
    funcs: &'a FuncMap,
    vars: Vec<String>,
    depth: usize,
    range_depth: usize,
    trees: HashMap<String, Arc<Vec<Node>>>,
    src: &'a [u8],
}

pub(crate) fn parse(
    name: &str,
    text: &[u8],
    left: &[u8],
    right: &[u8],
    funcs: &FuncMap,
) -> Result<Parsed, Error> {
    let mut line_starts = vec![0];
    line_starts.extend(
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let lx = Lexer {
        src: text,
        pos: 0,
        left,
        right,
        toks: Vec::new(),
        name,
        line_starts,
    };
    let toks = lx.run()?;
    let mut p = Parser {
        toks,
        i: 0,
        name,
        funcs,
        vars: vec!["$".into()],
        depth: 0,
        range_depth: 0,
        trees: HashMap::new(),
        src: text,
    };
    let mut root = Vec::new();
    loop {
        match &p.peek().tok {
            Tok::Eof => break,
            Tok::Left => {
                let save = p.i;
                p.i += 1;
                p.skip_space();
                if p.peek().tok == Tok::Keyword("define") {
                    p.i += 1;
                    p.define()?;
                    continue;
                }
                p.i = save;
            }
            _ => {}
        }
        match p.item(&mut root)? {
            Some(End::Eof) | None => {}
            Some(End::Close) => return Err(p.err_at_prev("unexpected {{end}}")),
            Some(End::Else(_)) => return Err(p.err_at_prev("unexpected {{else}}")),
        }
        if p.peek().tok == Tok::Eof {
            break;
        }
    }
    let name = name.to_string();
    // The root replaces a same-named define only when it has content (Go's rule).
    if !is_empty_list(&root) || !p.trees.contains_key(&name) {
        p.trees.insert(name, Arc::new(root));
    }
    Ok(Parsed { trees: p.trees })
}

fn is_empty_list(l: &[Node]) -> bool {
    l.iter()
        .all(|n| matches!(n, Node::Text(t) if t.iter().all(|b| is_space(*b))))
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.toks
            .get(self.i)
            .unwrap_or_else(|| self.toks.last().unwrap_or(&EOF))
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn skip_space(&mut self) {
        while self.peek().tok == Tok::Space {
            self.i += 1;
        }
    }
    fn next_non_space(&mut self) -> Token {
        self.skip_space();
        self.next()
    }
    fn peek_non_space(&mut self) -> &Token {
        self.skip_space();
        self.peek()
    }
    fn err(&self, line: usize, msg: impl Into<String>) -> Error {
        Error::new(
            ErrorKind::Parse,
            format!("template: {}:{}: {}", self.name, line, msg.into()),
        )
    }
    fn err_at_prev(&self, msg: &str) -> Error {
        let line = self
            .toks
            .get(self.i.saturating_sub(1))
            .map_or(1, |t| t.line);
        self.err(line, msg)
    }
    fn unexpected(&self, t: &Token, ctx: &str) -> Error {
        self.err(t.line, format!("unexpected {} in {ctx}", describe(&t.tok)))
    }
    fn enter(&mut self, line: usize) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(Error::new(
                ErrorKind::Limit,
                format!(
                    "template: {}:{line}: template nested deeper than {MAX_NESTING} levels (blocks, parentheses and template calls)",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Parse one text or action into `list`; Some(end) when the action was `end`/`else`.
    fn item(&mut self, list: &mut Vec<Node>) -> Result<Option<End>, Error> {
        let t = self.next();
        match t.tok {
            Tok::Text(s) => {
                list.push(Node::Text(Arc::from(s)));
                Ok(None)
            }
            Tok::Left => self.action(list),
            Tok::Eof => Ok(Some(End::Eof)),
            other => Err(self.err(t.line, format!("unexpected {} in input", describe(&other)))),
        }
    }

    fn list_until_end(&mut self) -> Result<(Vec<Node>, End), Error> {
        let mut list = Vec::new();
        loop {
            match self.item(&mut list)? {
                None => {}
                Some(End::Eof) => return Err(self.err(self.peek().line, "unexpected EOF")),
                Some(e) => return Ok((list, e)),
            }
        }
    }

    fn expect_right(&mut self, ctx: &str) -> Result<(), Error> {
        let t = self.next_non_space();
        if t.tok != Tok::Right {
            return Err(self.unexpected(&t, ctx));
        }
        Ok(())
    }

    fn action(&mut self, list: &mut Vec<Node>) -> Result<Option<End>, Error> {
        let t = self.peek_non_space().clone();
        if let Tok::Keyword(k) = t.tok {
            self.i += 1;
            match k {
                "end" => {
                    self.expect_right("end")?;
                    return Ok(Some(End::Close));
                }
                "else" => {
                    let p = self.peek_non_space().clone();
                    if !matches!(p.tok, Tok::Keyword("if" | "with")) {
                        self.expect_right("else")?;
                    }
                    return Ok(Some(End::Else(p)));
                }
                "if" | "with" | "range" => {
                    let n = self.control(k, t.line)?;
                    list.push(n);
                    return Ok(None);
                }
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(self.err(t.line, format!("{{{{{k}}}}} outside {{{{range}}}}")));
                    }
                    self.expect_right(k)?;
                    list.push(if k == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                    return Ok(None);
                }
                "template" | "block" => {
                    let nt = self.next_non_space();
                    let Tok::Str(name) = nt.tok else {
                        return Err(self.unexpected(&nt, &format!("{k} clause")));
                    };
                    let name = String::from_utf8_lossy(&name).into_owned();
                    let pipe = if self.peek_non_space().tok == Tok::Right {
                        self.i += 1;
                        None
                    } else {
                        Some(self.pipeline(k, &Tok::Right)?)
                    };
                    if pipe.is_none() && k == "block" {
                        return Err(self.err(t.line, "missing value for block clause"));
                    }
                    if k == "block" {
                        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
                        let saved_range = std::mem::replace(&mut self.range_depth, 0);
                        self.enter(t.line)?;
                        let (body, end) = self.list_until_end()?;
                        self.depth -= 1;
                        self.vars = saved;
                        self.range_depth = saved_range;
                        if !matches!(end, End::Close) {
                            return Err(self.err(t.line, "unexpected {{else}} in block clause"));
                        }
                        self.add_tree(name.clone(), body, t.line)?;
                    }
                    list.push(Node::Template(name, pipe, t.line, t.col));
                    return Ok(None);
                }
                "define" => return Err(self.err(t.line, "unexpected <define> in command")),
                _ => {
                    self.i -= 1;
                }
            }
        }
        let pipe = self.pipeline("command", &Tok::Right)?;
        list.push(Node::Action(pipe));
        Ok(None)
    }

    /// Add a named template; Go refuses a second non-empty definition of one name.
    fn add_tree(&mut self, name: String, body: Vec<Node>, line: usize) -> Result<(), Error> {
        let empty = is_empty_list(&body);
        match self.trees.get(&name) {
            Some(old) if !is_empty_list(old) && !empty => Err(self.err(
                line,
                format!("template: multiple definition of template \"{name}\""),
            )),
            Some(_) if empty => Ok(()),
            _ => {
                self.trees.insert(name, Arc::new(body));
                Ok(())
            }
        }
    }

    fn define(&mut self) -> Result<(), Error> {
        let t = self.next_non_space();
        let Tok::Str(name) = t.tok else {
            return Err(self.unexpected(&t, "define clause"));
        };
        self.expect_right("define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        self.enter(t.line)?;
        let (body, end) = self.list_until_end()?;
        self.depth -= 1;
        self.vars = saved;
        if !matches!(end, End::Close) {
            return Err(self.err(t.line, "unexpected {{else}} in define clause"));
        }
        let name = String::from_utf8_lossy(&name).into_owned();
        self.add_tree(name, body, t.line)
    }

    fn control(&mut self, kind: &str, line: usize) -> Result<Node, Error> {
        self.enter(line)?;
        let mark = self.vars.len();
        let pipe = self.pipeline(kind, &Tok::Right)?;
        if kind == "range" {
            self.range_depth += 1;
        }
        let (body, end) = self.list_until_end()?;
        if kind == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            End::Close => Vec::new(),
            End::Else(tok) => {
                if kind == "if" && tok.tok == Tok::Keyword("if") {
                    self.i += 1;
                    vec![self.control("if", tok.line)?]
                } else if kind == "with" && tok.tok == Tok::Keyword("with") {
                    self.i += 1;
                    vec![self.control("with", tok.line)?]
                } else {
                    if matches!(tok.tok, Tok::Keyword(_)) {
                        return Err(self.unexpected(&tok, "else"));
                    }
                    let (l, e) = self.list_until_end()?;
                    if !matches!(e, End::Close) {
                        return Err(self.err(line, "expected end; found {{else}}"));
                    }
                    l
                }
            }
            End::Eof => return Err(self.err(line, "unexpected EOF")),
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(match kind {
            "if" => Node::If(pipe, body, else_list),
            "with" => Node::With(pipe, body, else_list),
            _ => Node::Range(pipe, body, else_list),
        })
    }

    fn pipeline(&mut self, ctx: &str, end: &Tok) -> Result<Pipe, Error> {
        let start = self.peek_non_space().clone();
        let mut pipe = Pipe {
            decl: Vec::new(),
            assign: false,
            cmds: Vec::new(),
            line: start.line,
            col: start.col,
        };
        // Declarations.
        if let Tok::Var(v) = &start.tok {
            let save = self.i;
            self.i += 1;
            let v = v.clone();
            let next = self.peek_non_space().clone();
            match next.tok {
                Tok::Declare | Tok::Assign => {
                    self.i += 1;
                    pipe.assign = next.tok == Tok::Assign;
                    pipe.decl.push(v);
                }
                Tok::Comma if ctx == "range" => {
                    self.i += 1;
                    let t2 = self.next_non_space();
                    let Tok::Var(v2) = t2.tok else {
                        return Err(
                            self.err(t2.line, "range can only initialize variables".to_string())
                        );
                    };
                    let d = self.next_non_space();
                    match d.tok {
                        Tok::Declare | Tok::Assign => pipe.assign = d.tok == Tok::Assign,
                        _ => return Err(self.err(d.line, "range can only initialize variables")),
                    }
                    pipe.decl.push(v);
                    pipe.decl.push(v2);
                }
                _ => self.i = save,
            }
            // As Go's parser: a declared or assigned variable is known from here on, even in
            // its own pipeline and even when an assignment names an undeclared variable (both
            // fail when executed: "undefined variable").
            for d in &pipe.decl {
                self.vars.push(d.clone());
            }
        }
        loop {
            let t = self.peek_non_space().clone();
            if &t.tok == end {
                self.i += 1;
                break;
            }
            match t.tok {
                Tok::Bool(_)
                | Tok::Char(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::Str(_)
                | Tok::Var(_)
                | Tok::LParen => {
                    let c = self.command()?;
                    pipe.cmds.push(c);
                }
                _ => return Err(self.unexpected(&t, ctx)),
            }
        }
        if pipe.cmds.is_empty() {
            return Err(self.err(start.line, format!("missing value for {ctx}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(c.args.first(), Some(Arg::Const(_) | Arg::Nil | Arg::Dot)) {
                return Err(self.err(
                    start.line,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> Result<Cmd, Error> {
        let start_tok = self.i;
        let mut args = Vec::new();
        loop {
            self.skip_space();
            if let Some(a) = self.operand()? {
                args.push(a);
            }
            let t = self.next();
            match t.tok {
                Tok::Space => continue,
                Tok::Right | Tok::RParen => {
                    self.i -= 1;
                }
                Tok::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.err(self.peek().line, "empty command"));
        }
        let src = self.source(start_tok, self.i);
        Ok(Cmd { args, src })
    }

    fn source(&self, from: usize, to: usize) -> String {
        let mut s = String::new();
        for t in self.toks.get(from..to).unwrap_or(&[]) {
            match &t.tok {
                Tok::Space => s.push(' '),
                Tok::Ident(n) | Tok::Var(n) => s.push_str(n),
                Tok::Field(n) => {
                    s.push('.');
                    s.push_str(n)
                }
                Tok::Keyword(k) => s.push_str(k),
                Tok::Dot => s.push('.'),
                // String literals may hold secrets (a password in the template): never echoed.
                Tok::Str(_) => s.push_str("\"…\""),
                Tok::Number(n) => s.push_str(n),
                Tok::Char(c) => s.push_str(&format!("{c:?}")),
                Tok::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
                Tok::Nil => s.push_str("nil"),
                Tok::Pipe => s.push('|'),
                Tok::LParen => s.push('('),
                Tok::RParen => s.push(')'),
                Tok::Declare => s.push_str(":="),
                Tok::Assign => s.push('='),
                Tok::Comma => s.push(','),
                _ => {}
            }
        }
        let _ = self.src;
        s.trim().trim_end_matches('|').trim().to_string()
    }

    fn operand(&mut self) -> Result<Option<Arg>, Error> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        let mut chain = Vec::new();
        while let Tok::Field(f) = &self.peek().tok {
            chain.push(f.clone());
            self.i += 1;
        }
        if chain.is_empty() {
            return Ok(Some(term));
        }
        Ok(Some(match term {
            Arg::Field(mut f) => {
                f.extend(chain);
                Arg::Field(f)
            }
            Arg::Var(v, mut f) => {
                f.extend(chain);
                Arg::Var(v, f)
            }
            Arg::Pipe(p, mut f) => {
                f.extend(chain);
                Arg::Pipe(p, f)
            }
            Arg::Dot | Arg::Nil | Arg::Const(_) => {
                return Err(self.err(self.peek().line, "unexpected . after term"));
            }
            // As Go: `fn.Field` calls the function without arguments, then reads the field.
            term @ (Arg::Builtin(_) | Arg::Func(_)) => {
                let t = self.peek();
                let (line, col) = (t.line, t.col);
                let name = match &term {
                    Arg::Builtin(b) => b.name().to_string(),
                    Arg::Func(f) => f.name.clone(),
                    _ => String::new(),
                };
                let pipe = Pipe {
                    decl: Vec::new(),
                    assign: false,
                    cmds: vec![Cmd {
                        args: vec![term],
                        src: name,
                    }],
                    line,
                    col,
                };
                Arg::Pipe(Box::new(pipe), chain)
            }
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>, Error> {
        let t = self.next_non_space();
        Ok(Some(match t.tok {
            Tok::Ident(name) => {
                if let Some(b) = Builtin::from_name(&name) {
                    if let Some(f) = self.funcs.get(&name) {
                        Arg::Func(f)
                    } else {
                        Arg::Builtin(b)
                    }
                } else if let Some(f) = self.funcs.get(&name) {
                    Arg::Func(f)
                } else {
                    return Err(self.err(t.line, format!("function \"{name}\" not defined")));
                }
            }
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err(t.line, format!("undefined variable \"{v}\"")));
                }
                Arg::Var(v, Vec::new())
            }
            Tok::Field(f) => Arg::Field(vec![f]),
            Tok::Bool(b) => Arg::Const(Value::Bool(b)),
            Tok::Char(c) => Arg::Const(Value::Int(i64::from(u32::from(c)))),
            Tok::Number(n) => match parse_number(&n) {
                Some(v) => Arg::Const(v),
                None => return Err(self.err(t.line, format!("illegal number syntax: \"{n}\""))),
            },
            Tok::Str(s) => Arg::Const(Value::str(s)),
            Tok::LParen => {
                self.enter(t.line)?;
                let p = self.pipeline("parenthesized pipeline", &Tok::RParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(p), Vec::new())
            }
            _ => {
                self.i -= 1;
                return Ok(None);
            }
        }))
    }
}

static EOF: Token = Token {
    tok: Tok::Eof,
    line: 0,
    col: 0,
};

fn describe(t: &Tok) -> String {
    match t {
        Tok::Text(_) => "text".into(),
        Tok::Left => "\"{{\"".into(),
        Tok::Right => "\"}}\"".into(),
        Tok::Space => "space".into(),
        Tok::Ident(n) => format!("<{n}>"),
        Tok::Keyword(k) => format!("<{k}>"),
        Tok::Field(f) => format!("<.{f}>"),
        Tok::Var(v) => format!("<{v}>"),
        Tok::Dot => "<.>".into(),
        Tok::Str(_) => "quoted string".into(),
        Tok::Number(n) => format!("<{n}>"),
        Tok::Char(c) => format!("<{c:?}>"),
        Tok::Bool(b) => format!("<{b}>"),
        Tok::Nil => "<nil>".into(),
        Tok::Pipe => "<|>".into(),
        Tok::LParen => "<(>".into(),
        Tok::RParen => "<)>".into(),
        Tok::Declare => "<:=>".into(),
        Tok::Assign => "<=>".into(),
        Tok::Comma => "<,>".into(),
        Tok::Eof => "EOF".into(),
    }
}
