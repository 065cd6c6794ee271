//! `cargo xtask template-diff [--seconds N] [--seed S] [--max-cases N]`: differential fuzzing of
//! eso-template against Go. Random templates and data go through both engines — ours in
//! process, Go's text/template + sprig v3 through the go-oracle program kept running as one
//! helper process that reads a case per line on stdin and answers a line per case on stdout —
//! and the outputs (bytes) or error classes (parse / exec) must agree.
//!
//! The generator builds templates from a grammar (text, actions with pipelines, variables,
//! `if`/`else if`/`with`/`range`/`else`/`break`/`continue`, `define`/`template`, comments,
//! trim markers, custom delimiters) over typed function signatures, so most cases execute
//! instead of failing early; a share of the cases are mutated (a character deleted, inserted
//! or swapped) to reach parse errors. Integers stay small so Go (which has no fuel limit)
//! always finishes quickly.
//!
//! Functions left out of the generator, with why (docs/migrating-from-eso.md lists the
//! deliberate differences): the clock and random ones (`now`, `date*`, `ago`, `rand*`,
//! `uuidv4`, `shuffle`, `bcrypt`, `htpasswd`, `encryptAES`, `gen*`), `duration` (sprig v3.3.0
//! turns a Go int into 0s), `set`/`unset`/`merge*` (Go mutates the dict passed), `keys`/`values`
//! unsorted (Go's order is random; `keys | sortAlpha` is generated), `b64dec`/`b32dec` of
//! arbitrary text (sprig renders the decoder's error as text; we fail), `derivePassword` (scrypt:
//! slow), `snakecase`/`camelcase`/`kebabcase` (xstrings keeps punctuation other than word
//! separators; ours drops it), `nospace`/`initials` (goutils mangles non-ASCII text byte by byte),
//! `chunk` with a size below 1 (sprig returns odd lists; we fail). Where our limits (fuel, 2 MiB
//! values, nesting) stop a case Go runs unbounded, the case counts as deliberate.
//!
//! Divergences are printed and written to target/template-diff/divergences.jsonl; the command
//! fails when there is any.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eso_template::{ErrorKind, FuncMap, Options, Template, Value, sprig};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Argument kinds of the generated function calls.
#[derive(Clone, Copy, PartialEq)]
enum K {
    /// A string.
    S,
    /// A small integer.
    I,
    /// A float.
    F,
    /// A list.
    L,
    /// A dict.
    M,
    /// Anything.
    A,
    /// A bool.
    B,
}

use K::*;

/// Functions the generator calls: name, argument kinds, result kind.
const FUNCS: &[(&str, &[K], K)] = &[
    // Go built-ins
    ("len", &[A], I),
    ("index", &[A, A], A),
    ("print", &[A, A], S),
    ("println", &[A], S),
    ("printf", &[S, A], S),
    ("html", &[S], S),
    ("js", &[S], S),
    ("urlquery", &[S], S),
    ("eq", &[A, A], B),
    ("ne", &[A, A], B),
    ("lt", &[A, A], B),
    ("le", &[I, I], B),
    ("gt", &[S, S], B),
    ("ge", &[F, F], B),
    ("and", &[A, A], A),
    ("or", &[A, A], A),
    ("not", &[A], B),
    ("slice", &[S, I, I], S),
    // sprig strings
    ("upper", &[S], S),
    ("lower", &[S], S),
    ("title", &[S], S),
    ("untitle", &[S], S),
    ("trim", &[S], S),
    ("swapcase", &[S], S),
    ("quote", &[A], S),
    ("squote", &[A], S),
    ("b64enc", &[S], S),
    ("b32enc", &[S], S),
    ("sha1sum", &[S], S),
    ("sha256sum", &[S], S),
    ("adler32sum", &[S], S),
    ("toString", &[A], S),
    ("trimAll", &[S, S], S),
    ("trimPrefix", &[S, S], S),
    ("trimSuffix", &[S, S], S),
    ("contains", &[S, S], B),
    ("hasPrefix", &[S, S], B),
    ("hasSuffix", &[S, S], B),
    ("repeat", &[I, S], S),
    ("substr", &[I, I, S], S),
    ("trunc", &[I, S], S),
    ("abbrev", &[I, S], S),
    ("abbrevboth", &[I, I, S], S),
    ("indent", &[I, S], S),
    ("nindent", &[I, S], S),
    ("replace", &[S, S, S], S),
    ("plural", &[S, S, I], S),
    ("wrap", &[I, S], S),
    ("wrapWith", &[I, S, S], S),
    ("cat", &[A, A], S),
    ("splitList", &[S, S], L),
    ("split", &[S, S], M),
    ("splitn", &[S, I, S], M),
    ("join", &[S, L], S),
    ("sortAlpha", &[L], L),
    ("regexMatch", &[S, S], B),
    ("regexFind", &[S, S], S),
    ("regexFindAll", &[S, S, I], L),
    ("regexReplaceAll", &[S, S, S], S),
    ("regexReplaceAllLiteral", &[S, S, S], S),
    ("regexSplit", &[S, S, I], L),
    ("regexQuoteMeta", &[S], S),
    ("toJson", &[A], S),
    ("toPrettyJson", &[A], S),
    ("toRawJson", &[A], S),
    ("fromJson", &[S], A),
    ("default", &[A, A], A),
    ("empty", &[A], B),
    ("coalesce", &[A, A], A),
    ("ternary", &[A, A, B], A),
    ("toStrings", &[L], L),
    // lists
    ("list", &[A, A], L),
    ("first", &[L], A),
    ("last", &[L], A),
    ("rest", &[L], L),
    ("initial", &[L], L),
    ("reverse", &[L], L),
    ("uniq", &[L], L),
    ("compact", &[L], L),
    ("has", &[A, L], B),
    ("without", &[L, A], L),
    ("append", &[L, A], L),
    ("prepend", &[L, A], L),
    ("concat", &[L, L], L),
    ("until", &[I], L),
    ("untilStep", &[I, I, I], L),
    ("seq", &[I, I], S),
    // dicts
    ("dict", &[S, A], M),
    ("get", &[M, S], A),
    ("hasKey", &[M, S], B),
    ("pluck", &[S, M], L),
    ("pick", &[M, S], M),
    ("omit", &[M, S], M),
    ("dig", &[S, A, M], A),
    ("deepCopy", &[A], A),
    // numbers
    ("add", &[A, A], I),
    ("add1", &[A], I),
    ("sub", &[A, A], I),
    ("mul", &[A, A], I),
    ("div", &[A, A], I),
    ("mod", &[A, A], I),
    ("max", &[A, A], I),
    ("min", &[A, A], I),
    ("addf", &[A, A], F),
    ("subf", &[A, A], F),
    ("mulf", &[A, A], F),
    ("divf", &[A, A], F),
    ("maxf", &[A, A], F),
    ("minf", &[A, A], F),
    ("floor", &[A], F),
    ("ceil", &[A], F),
    ("round", &[A, I], F),
    ("atoi", &[S], I),
    ("int", &[A], I),
    ("int64", &[A], I),
    ("float64", &[A], F),
    // reflection, paths, encodings, misc
    ("typeOf", &[A], S),
    ("kindOf", &[A], S),
    ("kindIs", &[S, A], B),
    ("typeIs", &[S, A], B),
    ("deepEqual", &[A, A], B),
    ("base", &[S], S),
    ("dir", &[S], S),
    ("ext", &[S], S),
    ("clean", &[S], S),
    ("isAbs", &[S], B),
    ("semverCompare", &[S, S], B),
    ("urlParse", &[S], M),
    ("urlJoin", &[M], S),
    ("decryptAES", &[S, S], S),
    ("fail", &[S], S),
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "abc",
    "Hello World",
    "hello-world_foo bar",
    "x,y,z",
    " padded ",
    "é",
    "héllo wörld",
    "<&>\"'",
    "a\\nb",
    "1",
    "42",
    "-7",
    "3.5",
    "1e3",
    "true",
    "0x1F",
    "{\"a\":1,\"b\":[1,2,\"x\"],\"c\":{\"d\":null}}",
    "[1,2,3]",
    "null",
    "1.2.3",
    ">=1.0",
    "^1.2",
    "https://u:p@h.example:8080/p/a%20th?q=1#f",
    "/a/b/c.txt",
    "a.*b",
    "[a-z]+",
    "%d",
    "%s-%v",
    "%q",
    "%x",
    "%5.2f",
    "aGVsbG8=",
    ".",
    ",",
];
const KEYS: &[&str] = &[
    "user",
    "pass",
    "json",
    "num",
    "empty",
    "list",
    "with-dash",
    "clé",
];

struct Gen<'a> {
    rng: &'a mut Rng,
    vars: Vec<String>,
    depth: usize,
    in_range: bool,
    defines: Vec<String>,
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Gen<'_> {
    fn string_lit(&mut self) -> String {
        let s = *self.rng.pick(STRINGS);
        if self.rng.chance(10) {
            format!("`{}`", s.replace('`', ""))
        } else {
            quote(s)
        }
    }

    fn field(&mut self) -> String {
        let k = *self.rng.pick(KEYS);
        match self.rng.below(4) {
            0 if !k.contains('-') => format!(".{k}"),
            1 => format!("(index . {})", quote(k)),
            2 => ".missing".to_string(),
            _ => format!("(index . {})", quote(k)),
        }
    }

    /// An operand of kind `k`.
    fn arg(&mut self, k: K) -> String {
        if self.depth > 3 || self.rng.chance(45) {
            return self.leaf(k);
        }
        self.depth += 1;
        let r = match k {
            S | I | F | L | M | B if self.rng.chance(80) => self.call_returning(k),
            _ => self.call_any(),
        };
        self.depth -= 1;
        format!("({r})")
    }

    fn leaf(&mut self, k: K) -> String {
        if !self.vars.is_empty() && self.rng.chance(15) {
            return self.rng.pick(&self.vars).clone();
        }
        match k {
            S => match self.rng.below(3) {
                0 => self.field(),
                _ => self.string_lit(),
            },
            I => match self.rng.below(5) {
                0 => "0".into(),
                1 => "-1".into(),
                2 => format!("{}", self.rng.below(6)),
                3 => format!("{}", self.rng.below(20)),
                _ => format!("(len {})", self.field()),
            },
            F => self
                .rng
                .pick(&["1.5", "-0.5", "2.0", "1e3", "0.1", "3"])
                .to_string(),
            B => self.rng.pick(&["true", "false"]).to_string(),
            L => match self.rng.below(4) {
                0 => "(list 1 \"a\" 2.5)".into(),
                1 => "(list)".into(),
                2 => "(splitList \",\" .list)".into(),
                _ => "(list \"b\" \"a\" \"b\")".into(),
            },
            M => match self.rng.below(4) {
                0 => "(dict \"a\" 1 \"b\" \"x\")".into(),
                1 => "(fromJson .json)".into(),
                2 => ".".into(),
                _ => "(dict)".into(),
            },
            A => match self.rng.below(9) {
                0 => self.leaf(S),
                1 => self.leaf(I),
                2 => self.leaf(F),
                3 => self.leaf(L),
                4 => self.leaf(M),
                5 => self.leaf(B),
                6 => "nil".into(),
                7 => ".".into(),
                _ => self.field(),
            },
        }
    }

    fn call(&mut self, name: &str, args: &[K]) -> String {
        let mut s = name.to_string();
        let mut n = args.len();
        // Sometimes a wrong argument count, to compare the errors.
        if self.rng.chance(4) {
            n = if n > 0 && self.rng.chance(50) {
                n - 1
            } else {
                n + 1
            };
        }
        for i in 0..n {
            let k = args.get(i).copied().unwrap_or(A);
            // Sometimes a wrong argument kind.
            let k = if self.rng.chance(8) { A } else { k };
            s.push(' ');
            s.push_str(&self.arg(k));
        }
        s
    }

    fn call_returning(&mut self, k: K) -> String {
        let matching: Vec<&(&str, &[K], K)> = FUNCS.iter().filter(|f| f.2 == k).collect();
        if matching.is_empty() {
            return self.call_any();
        }
        let (name, args, _) = **self.rng.pick(&matching);
        self.call(name, args)
    }

    fn call_any(&mut self) -> String {
        let (name, args, _) = *self.rng.pick(FUNCS);
        self.call(name, args)
    }

    /// A pipeline: a command, maybe piped through functions (the piped value is the last arg).
    fn pipeline(&mut self) -> String {
        let mut p = if self.rng.chance(60) {
            self.call_any()
        } else {
            self.leaf(A)
        };
        while self.rng.chance(30) {
            let (name, args, _) = *self.rng.pick(FUNCS);
            let lead = args.len().saturating_sub(1);
            let mut c = name.to_string();
            for k in &args[..lead] {
                c.push(' ');
                c.push_str(&self.arg(*k));
            }
            p = format!("{p} | {c}");
        }
        p
    }

    fn action(&mut self, inner: &str) -> String {
        let l = if self.rng.chance(15) { "{{- " } else { "{{ " };
        let r = if self.rng.chance(15) { " -}}" } else { " }}" };
        format!("{l}{inner}{r}")
    }

    fn body(&mut self, items: usize) -> String {
        let mut out = String::new();
        let saved = self.vars.len();
        for _ in 0..items {
            out.push_str(&self.item());
        }
        self.vars.truncate(saved);
        out
    }

    fn item(&mut self) -> String {
        let deep = self.depth >= 3;
        match self.rng.below(if deep { 4 } else { 9 }) {
            0 => self
                .rng
                .pick(&["a", " ", "\n", "x-y", "é", "{", "}", "  \n  ", ":"])
                .to_string(),
            1 | 2 => {
                let p = self.pipeline();
                self.action(&p)
            }
            3 => {
                if !self.vars.is_empty() && self.rng.chance(30) {
                    let v = self.rng.pick(&self.vars).clone();
                    let p = self.pipeline();
                    self.action(&format!("{v} = {p}"))
                } else {
                    let v = format!("$v{}", self.vars.len());
                    let p = self.pipeline();
                    let a = self.action(&format!("{v} := {p}"));
                    self.vars.push(v);
                    a
                }
            }
            4 => {
                self.depth += 1;
                let cond = self.pipeline();
                let n = 1 + self.rng.below(2);
                let then = self.body(n);
                let mut s = format!("{}{then}", self.action(&format!("if {cond}")));
                if self.rng.chance(30) {
                    let c2 = self.pipeline();
                    let b = self.body(1);
                    s.push_str(&format!("{}{b}", self.action(&format!("else if {c2}"))));
                }
                if self.rng.chance(40) {
                    let b = self.body(1);
                    s.push_str(&format!("{}{b}", self.action("else")));
                }
                s.push_str(&self.action("end"));
                self.depth -= 1;
                s
            }
            5 => {
                self.depth += 1;
                let p = self.pipeline();
                let n = 1 + self.rng.below(2);
                let b = self.body(n);
                let mut s = format!("{}{b}", self.action(&format!("with {p}")));
                if self.rng.chance(30) {
                    let b = self.body(1);
                    s.push_str(&format!("{}{b}", self.action("else")));
                }
                s.push_str(&self.action("end"));
                self.depth -= 1;
                s
            }
            6 => {
                self.depth += 1;
                let over = match self.rng.below(4) {
                    0 => self.leaf(L),
                    1 => self.leaf(M),
                    2 => format!("{}", self.rng.below(4)),
                    _ => self.pipeline(),
                };
                let head = match self.rng.below(3) {
                    0 => format!("range {over}"),
                    1 => {
                        let v = format!("$e{}", self.vars.len());
                        self.vars.push(v.clone());
                        format!("range {v} := {over}")
                    }
                    _ => {
                        let (k, v) = (
                            format!("$k{}", self.vars.len()),
                            format!("$e{}", self.vars.len() + 1),
                        );
                        self.vars.push(k.clone());
                        self.vars.push(v.clone());
                        format!("range {k}, {v} := {over}")
                    }
                };
                let was = self.in_range;
                self.in_range = true;
                let n = 1 + self.rng.below(2);
                let b = self.body(n);
                self.in_range = was;
                let mut s = format!("{}{b}", self.action(&head));
                if self.rng.chance(25) {
                    let b = self.body(1);
                    s.push_str(&format!("{}{b}", self.action("else")));
                }
                s.push_str(&self.action("end"));
                self.depth -= 1;
                s
            }
            7 => {
                if self.in_range && self.rng.chance(60) {
                    let kw = if self.rng.chance(50) {
                        "break"
                    } else {
                        "continue"
                    };
                    let cond = self.pipeline();
                    format!(
                        "{}{}{}",
                        self.action(&format!("if {cond}")),
                        self.action(kw),
                        self.action("end")
                    )
                } else if !self.defines.is_empty() {
                    let d = self.rng.pick(&self.defines).clone();
                    let p = self.leaf(A);
                    self.action(&format!("template {} {p}", quote(&d)))
                } else {
                    "{{/* c */}}".to_string()
                }
            }
            _ => {
                let p = self.pipeline();
                let f = self.string_lit();
                self.action(&format!("printf {f} {p}"))
            }
        }
    }
}

/// One generated case.
fn generate(rng: &mut Rng) -> serde_json::Value {
    let mut g = Gen {
        rng,
        vars: Vec::new(),
        depth: 0,
        in_range: false,
        defines: Vec::new(),
    };
    let mut tmpl = String::new();
    if g.rng.chance(20) {
        // Non-recursive defines: their bodies cannot call templates.
        let n = 1 + g.rng.below(2);
        let body = g.body(n);
        tmpl.push_str(&format!("{{{{ define \"d0\" }}}}{body}{{{{ end }}}}"));
        g.defines.push("d0".to_string());
    }
    let n = 1 + g.rng.below(4);
    tmpl.push_str(&g.body(n));
    // Mutations reach the parser's error paths.
    if g.rng.chance(12) && !tmpl.is_empty() {
        let mut chars: Vec<char> = tmpl.chars().collect();
        let i = g.rng.below(chars.len());
        match g.rng.below(3) {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(
                i,
                *g.rng.pick(&[
                    '{', '}', '(', ')', '|', '$', '.', '"', '`', '-', ' ', ':', '=',
                ]),
            ),
            _ => {
                let j = g.rng.below(chars.len());
                chars.swap(i, j);
            }
        }
        tmpl = chars.into_iter().collect();
    }
    let mut data = serde_json::Map::new();
    for k in KEYS {
        if g.rng.chance(75) {
            let v = match *k {
                "json" => g
                    .rng
                    .pick(&[
                        STRINGS[18],
                        STRINGS[19],
                        "{}",
                        "{\"n\":1.5e300}",
                        "not json",
                    ])
                    .to_string(),
                "num" => g.rng.pick(&["42", "-3", "1.5", "0", "x"]).to_string(),
                "list" => g.rng.pick(&["a,b,c", "", "x"]).to_string(),
                "empty" => String::new(),
                _ => g.rng.pick(STRINGS).to_string(),
            };
            data.insert((*k).to_string(), serde_json::Value::String(v));
        }
    }
    let mut case = serde_json::json!({"name": "t", "tmpl": tmpl, "data": data});
    if g.rng.chance(5) {
        case["delims"] = serde_json::json!(["[[", "]]"]);
        let t = case["tmpl"]
            .as_str()
            .unwrap_or_default()
            .replace("{{", "[[")
            .replace("}}", "]]");
        case["tmpl"] = serde_json::Value::String(t);
    }
    case
}

/// The deliberate differences (docs/migrating-from-eso.md), recognised by Go's error message:
/// where Go fails and eso-template renders.
fn deliberate(go_msg: &str, got: &Outcome, want: &Outcome) -> Option<&'static str> {
    if let (Outcome::Out(a), Outcome::Out(b)) = (got, want) {
        let a_text = String::from_utf8_lossy(a).to_lowercase();
        if a_text.contains("%!x(float64=") {
            return Some("printf %x/%X of a float (Go's hexadecimal float) is a bad verb here");
        }
        let norm = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace("[]string", "[]interface {}")
                .replace("int64", "int")
                .replace("null", "[]")
                .replace("[]int=", "[]interface {}=")
                .replace("map[string]string=", "map[string]interface {}=")
        };
        // Also when an escaping function (regexQuoteMeta, quote, ...) ran over the type name.
        let unescaped = |b: &[u8]| {
            norm(
                &b.iter()
                    .copied()
                    .filter(|c| *c != b'\\')
                    .collect::<Vec<u8>>(),
            )
        };
        if norm(a) == norm(b) || unescaped(a) == unescaped(b) {
            return Some(
                "one integer and one list type: %T/typeOf say int and []interface {} where Go says int64 or []string; no nil lists (JSON [] where Go says null)",
            );
        }
        return None;
    }
    if *got == Outcome::Err("limit".into()) {
        return Some(
            "eso-template's limits (work budget, 2 MiB values, nesting 50) stopped what Go runs unbounded",
        );
    }
    // Lenient where Go refuses: we render.
    if !matches!(got, Outcome::Out(_)) && *got != Outcome::Err("limit".into()) {
        return None;
    }
    if go_msg.contains("invalid memory address or nil pointer dereference") {
        return Some(
            "sprig functions given nil where a list is expected crash in Go; we treat nil as empty",
        );
    }
    if go_msg.contains("interface conversion: interface {} is") {
        return Some(
            "dig into a string map or nil: Go's sprig crashes on the type assertion; we read it",
        );
    }
    if go_msg.contains("reflect: call of reflect.Value.Type on zero Value") {
        return Some("deepCopy of nil renders nil; Go's copystructure fails");
    }
    let found = go_msg
        .split("expected ")
        .nth(1)
        .is_some_and(|rest| rest.contains("; found "));
    if go_msg.contains("wrong type for value; expected")
        || go_msg.contains("invalid value; expected")
        || go_msg.contains("cannot assign nil to")
        || found
    {
        return Some(
            "Go refuses an argument of another Go type (int64 for int, a string map for map[string]interface{}, ...); eso-template converts",
        );
    }
    if go_msg.contains("error parsing regexp") {
        return Some("the pattern is valid for Rust's regex crate but not for Go's RE2 syntax");
    }
    None
}

/// What an engine made of a case.
#[derive(Debug, PartialEq)]
enum Outcome {
    Out(Vec<u8>),
    Err(String),
}

fn rust_render(funcs: &FuncMap, case: &serde_json::Value) -> Outcome {
    let tmpl = case["tmpl"].as_str().unwrap_or_default();
    let mut opts = Options::new(funcs);
    let delims: Vec<&str> = case["delims"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if let [l, r] = delims.as_slice() {
        opts.left = l;
        opts.right = r;
    }
    let class = |k: ErrorKind| match k {
        ErrorKind::Parse => "parse",
        ErrorKind::Exec => "exec",
        ErrorKind::Limit => "limit",
    };
    let t = match Template::parse("t", tmpl, &opts) {
        Ok(t) => t,
        Err(e) => return Outcome::Err(class(e.kind).into()),
    };
    let data = Value::string_map(
        case["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().unwrap_or_default().as_bytes().to_vec(),
                )
            }),
    );
    match t.execute(&data) {
        Ok(b) => Outcome::Out(b),
        Err(e) => Outcome::Err(class(e.kind).into()),
    }
}

/// The Go side: go-oracle as one long-running process.
struct GoHelper {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl GoHelper {
    fn start(bin: &std::path::Path) -> Result<GoHelper> {
        let mut child = Command::new(bin)
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting go-oracle")?;
        let stdin = child.stdin.take().context("go-oracle stdin")?;
        let stdout = child.stdout.take().context("go-oracle stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(GoHelper {
            child,
            stdin,
            lines,
        })
    }

    /// Render one case; `None` when Go did not answer in time (the helper is then restarted).
    fn render(&mut self, case: &serde_json::Value) -> Result<Option<(Outcome, String)>> {
        writeln!(self.stdin, "{case}")?;
        self.stdin.flush()?;
        let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) else {
            return Ok(None);
        };
        let g: serde_json::Value = serde_json::from_str(&line).context("go-oracle answer")?;
        let msg = g["msg"].as_str().unwrap_or_default().to_string();
        if let Some(o) = g["out"].as_str() {
            return Ok(Some((Outcome::Out(o.as_bytes().to_vec()), msg)));
        }
        if let Some(b) = g["out_b64"].as_str() {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .context("go-oracle out_b64")?;
            return Ok(Some((Outcome::Out(bytes), msg)));
        }
        Ok(Some((
            Outcome::Err(g["err"].as_str().unwrap_or("exec").to_string()),
            msg,
        )))
    }
}

impl Drop for GoHelper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run for `seconds` (or `max_cases`); fail on any divergence.
pub fn run(seconds: u64, seed: u64, max_cases: Option<u64>) -> Result<()> {
    let bin = crate::goldens::build_oracle()?;
    let mut go = GoHelper::start(&bin)?;
    let mut funcs = FuncMap::new();
    sprig::register(&mut funcs, &sprig::SprigEnv::fixed(1_700_000_000, 42));
    let mut rng = Rng(seed);
    let start = Instant::now();
    let deadline = Duration::from_secs(seconds);
    let (mut n, mut outputs, mut timeouts) = (0u64, 0u64, 0u64);
    let mut divergences = Vec::new();
    let mut tolerated: std::collections::BTreeMap<&'static str, u64> = Default::default();
    while start.elapsed() < deadline && max_cases.is_none_or(|m| n < m) {
        let case = generate(&mut rng);
        n += 1;
        let Some((want, go_msg)) = go.render(&case)? else {
            timeouts += 1;
            go = GoHelper::start(&bin)?;
            continue;
        };
        let got = rust_render(&funcs, &case);
        if matches!(want, Outcome::Out(_)) {
            outputs += 1;
        }
        if got != want
            && let Some(why) = deliberate(&go_msg, &got, &want)
        {
            *tolerated.entry(why).or_insert(0u64) += 1;
            continue;
        }
        if got != want {
            let show = |o: &Outcome| match o {
                Outcome::Out(b) => serde_json::json!({"out": String::from_utf8_lossy(b)}),
                Outcome::Err(c) => serde_json::json!({"err": c}),
            };
            let d = serde_json::json!({"case": case, "rust": show(&got), "go": show(&want), "go_msg": go_msg});
            println!("divergence: {d}");
            divergences.push(d);
        }
    }
    println!(
        "template-diff: {n} cases in {:.1}s (seed {seed}): {outputs} rendered by Go, {} errors, {timeouts} Go timeouts, {} divergences",
        start.elapsed().as_secs_f64(),
        n - outputs - timeouts,
        divergences.len()
    );
    for (why, n) in &tolerated {
        println!("  deliberate ({n}): {why}");
    }
    if !divergences.is_empty() {
        let dir = crate::project_root().join("target/template-diff");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("divergences.jsonl");
        let text: String = divergences.iter().map(|d| format!("{d}\n")).collect();
        std::fs::write(&path, text)?;
        bail!(
            "{} divergences between eso-template and Go (written to {})",
            divergences.len(),
            path.display()
        );
    }
    Ok(())
}

/// `--replay FILE`: render each case of a divergences file with eso-template and print the
/// result with the error message (to debug a divergence).
fn replay(path: &str) -> Result<()> {
    let mut funcs = FuncMap::new();
    sprig::register(&mut funcs, &sprig::SprigEnv::fixed(1_700_000_000, 42));
    for line in std::fs::read_to_string(path)?.lines() {
        let d: serde_json::Value = serde_json::from_str(line)?;
        let case = &d["case"];
        let tmpl = case["tmpl"].as_str().unwrap_or_default();
        let data = Value::string_map(case["data"].as_object().into_iter().flatten().map(
            |(k, v)| {
                (
                    k.clone(),
                    v.as_str().unwrap_or_default().as_bytes().to_vec(),
                )
            },
        ));
        let mut opts = Options::new(&funcs);
        let delims: Vec<&str> = case["delims"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if let [l, r] = delims.as_slice() {
            opts.left = l;
            opts.right = r;
        }
        let r = Template::parse("t", tmpl, &opts).and_then(|t| t.execute(&data));
        println!("{tmpl}\n  go:   {} {}", d["go"], d["go_msg"]);
        match r {
            Ok(b) => println!("  rust: {:?}", String::from_utf8_lossy(&b)),
            Err(e) => println!("  rust: {:?} {}", e.kind, e.message),
        }
    }
    Ok(())
}

/// `cargo xtask template-diff [--seconds N] [--seed S] [--max-cases N] | --replay FILE`.
pub fn cli(args: &[String]) -> Result<()> {
    if let Some(i) = args.iter().position(|a| a == "--replay") {
        return replay(
            args.get(i + 1)
                .map_or("target/template-diff/divergences.jsonl", |s| s),
        );
    }
    let val = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse::<u64>().ok())
    };
    let seconds = val("--seconds").unwrap_or(30);
    let seed = val("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    run(seconds, seed, val("--max-cases"))
}
