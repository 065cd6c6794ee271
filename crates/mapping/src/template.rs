//! Template engine v2 for the mapping: [`eso_template`] (Go `text/template` semantics) with the
//! sprig functions ESO v2.9 exposes and ESO's own functions (PKCS#12, JWK, PEM, YAML,
//! `rsaDecrypt`), registered through its function map. No function performs I/O: there is no
//! `env`, `expandenv` or `getHostByName`. `now` and the `rand*`/`uuidv4`/`bcrypt` functions read
//! the system clock and a randomly seeded generator, as in ESO.
//!
//! Execution follows ESO: `missingkey=error`, the data context is Go's `map[string]string` of
//! all provider values (byte strings: binary values pass intact). Limits (fuel, nesting, output
//! size) live inside the engine. Parsed templates are cached by their text, so a refresh
//! re-executes without re-parsing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use eso_template::{FuncError, FuncMap, Limits, Options, Template, Value, sprig};

use crate::crypto;

/// First of the 128 private-use code points (U+10FE80..=U+10FEFF) that stand for the raw bytes
/// 0x80..=0xFF of a value that is not valid UTF-8, in the `String` API ([`render`],
/// [`render_with`]). The engine itself works on bytes ([`render_bytes`]).
const RAW_BYTE_BASE: u32 = 0x10_FE00;

/// A provider value as template text for the `String` API: valid UTF-8 is kept as is, and each
/// byte of an invalid sequence becomes the private-use code point U+10FE00 + byte.
/// [`text_to_bytes`] reverses this.
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

/// Work one template execution may do, in units: one per action, loop iteration, template call
/// and function call, plus one per KiB of text a function call takes or returns. Spending all of
/// it takes well under a second in a release build (see the `template` benchmarks). Counting
/// work instead of reading a clock keeps the engine deterministic.
pub const MAX_WORK_UNITS: u64 = eso_template::DEFAULT_FUEL;

/// Largest text a template, or one function inside it, may produce: twice what a Secret can
/// hold.
pub const MAX_RENDERED: usize = eso_template::MAX_OUTPUT;

/// Deepest nesting a template may have: blocks (`if`, `range`, `with`, `define`, `block`, each
/// `else if`/`else with`), parentheses, and `template` calls (recursion included), added up
/// along the deepest path.
pub const MAX_TEMPLATE_NESTING: usize = eso_template::MAX_NESTING;

/// The functions templates may call: sprig (as ESO vendors it) plus ESO's own.
fn funcs() -> &'static FuncMap {
    static FUNCS: OnceLock<FuncMap> = OnceLock::new();
    FUNCS.get_or_init(|| {
        let mut m = FuncMap::new();
        sprig::register(&mut m, &sprig::SprigEnv::system());
        register_eso(&mut m);
        m
    })
}

/// The names of the functions templates may call, sorted (Go's built-ins such as `index` and
/// `printf` are not listed: the engine always has them).
pub fn function_names() -> Vec<&'static str> {
    funcs().names()
}

fn register_eso(m: &mut FuncMap) {
    type F = fn(&[Value]) -> Result<Value, FuncError>;
    let eso: &[(&str, F)] = &[
        ("toYaml", to_yaml),
        ("fromYaml", from_yaml),
        ("filterPEM", filter_pem),
        ("required", required),
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
    ];
    for (name, f) in eso {
        let f = *f;
        m.insert(name, f);
    }
    use crypto::certgen as cg;
    let generators: &[(&str, u64, F)] = &[
        ("genPrivateKey", cg::RSA_4096_COST, cg::gen_private_key),
        ("genCA", cg::RSA_2048_COST, cg::gen_ca),
        ("genCAWithKey", cg::SIGN_COST, cg::gen_ca_with_key),
        (
            "genSelfSignedCert",
            cg::RSA_2048_COST,
            cg::gen_self_signed_cert,
        ),
        (
            "genSelfSignedCertWithKey",
            cg::SIGN_COST,
            cg::gen_self_signed_cert_with_key,
        ),
        ("genSignedCert", cg::RSA_2048_COST, cg::gen_signed_cert),
        (
            "genSignedCertWithKey",
            cg::SIGN_COST,
            cg::gen_signed_cert_with_key,
        ),
        ("buildCustomCert", 0, cg::build_custom_cert),
    ];
    for (name, cost, f) in generators {
        let f = *f;
        m.insert_with_cost(name, *cost, f);
    }
}

/// Parsed templates by text (parse errors too), bounded: cleared when full.
type Cache = Mutex<HashMap<String, Result<Arc<Template>, String>>>;
const CACHE_ENTRIES: usize = 1024;

fn parsed(text: &str) -> Result<Arc<Template>, String> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some(hit) = c.get(text)
    {
        return hit.clone();
    }
    let r = Template::parse("template", text, &Options::new(funcs()))
        .map(Arc::new)
        .map_err(|e| e.message);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(text.to_string(), r.clone());
    }
    r
}

/// Render `text` with `data` (string keys to string values, see [`bytes_to_text`]) as `.`.
pub fn render(text: &str, data: &BTreeMap<String, String>) -> Result<String, String> {
    render_with(text, &context(data))
}

/// The template context for `data` (build it once, render many templates with [`render_with`]).
pub fn context(data: &BTreeMap<String, String>) -> Value {
    Value::string_map(data.iter().map(|(k, v)| (k.clone(), text_to_bytes(v))))
}

/// The template context for raw provider values.
pub fn context_bytes(data: &BTreeMap<String, Vec<u8>>) -> Value {
    Value::string_map(data.iter().map(|(k, v)| (k.clone(), v.as_slice())))
}

/// Render `text` with a prebuilt context; the output as text (see [`bytes_to_text`]).
pub fn render_with(text: &str, ctx: &Value) -> Result<String, String> {
    render_bytes(text, ctx).map(|b| bytes_to_text(&b))
}

/// Render `text` with a prebuilt context; the output bytes.
pub fn render_bytes(text: &str, ctx: &Value) -> Result<Vec<u8>, String> {
    render_budgeted(text, ctx, MAX_WORK_UNITS)
}

/// Render `text` with an arbitrary context value.
pub fn render_value(text: &str, ctx: Value) -> Result<String, String> {
    render_with(text, &ctx)
}

/// [`render_bytes`] with a work budget of `budget` units (see [`MAX_WORK_UNITS`]).
fn render_budgeted(text: &str, ctx: &Value, budget: u64) -> Result<Vec<u8>, String> {
    let t = parsed(text)?;
    let limits = Limits {
        fuel: budget,
        ..Limits::default()
    };
    t.execute_with(ctx, &limits).map_err(|e| {
        let mut msg = redact(e.message, ctx);
        if msg.contains("map has no entry for key") {
            // ESO runs templates with missingkey=error; say how to make a key optional.
            msg.push_str(" (missingkey=error: `index . \"KEY\"` renders an absent key as empty)");
        }
        msg
    })
}

/// Replace every context value (the secret data) that occurs in an execution error by
/// `<redacted>`. The engine's own messages never quote values, but a function may echo an
/// argument (`fail`, `required`); the error ends up in the ExternalSecret's status and Events,
/// where a secret value must never appear. Values shorter than 4 bytes are left alone: they
/// would mangle the message and reveal next to nothing.
fn redact(mut msg: String, ctx: &Value) -> String {
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Str(s) if s.len() >= 4 => out.push(String::from_utf8_lossy(s).into_owned()),
            Value::List(a) => a.iter().for_each(|v| collect(v, out)),
            Value::Map(m) => m.entries.values().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut values = Vec::new();
    collect(ctx, &mut values);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if msg.contains(&v) {
            msg = msg.replace(&v, "<redacted>");
        }
    }
    msg
}

/// A string argument as text (see [`bytes_to_text`]); any other value as Go prints it.
pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        v => bytes_to_text(&v.to_text()),
    }
}

/// Argument `i` of exactly `n`.
pub(crate) fn arg<'a>(
    name: &str,
    args: &'a [Value],
    i: usize,
    n: usize,
) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    args.get(i)
        .ok_or_else(|| FuncError(format!("wrong number of args for {name}: want {n}")))
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError(msg.into())
}

/// Helm's `required MSG VALUE` (kept from earlier releases; ESO does not define it).
fn required(a: &[Value]) -> Result<Value, FuncError> {
    let msg = s(arg("required", a, 0, 2)?);
    let v = arg("required", a, 1, 2)?;
    if v.is_empty() {
        Err(err(msg))
    } else {
        Ok(v.clone())
    }
}

fn to_yaml(a: &[Value]) -> Result<Value, FuncError> {
    serde_saphyr::to_string(&eso_template::to_json(arg("toYaml", a, 0, 1)?))
        .map(|y| Value::from(y.trim_end().to_string()))
        .map_err(|e| err(format!("toYaml: {e}")))
}

fn from_yaml(a: &[Value]) -> Result<Value, FuncError> {
    let v: serde_json::Value = serde_saphyr::from_str(&s(arg("fromYaml", a, 0, 1)?))
        .map_err(|_| err("fromYaml: input is not valid YAML"))?;
    Ok(eso_template::from_json(&v))
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
    Ok(Value::from(text_to_bytes(&out)))
}

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
        // sprig: regexMatch is false for an invalid pattern; mustRegexMatch fails.
        assert_eq!(r(r#"{{ regexMatch "(" "x" }}"#).as_deref(), Some("false"));
        assert!(render(r#"{{ mustRegexMatch "(" "x" }}"#, &d).is_err());
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
            // Unclosed actions (the previous engine, gtmpl, spun forever on some of them).
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
        // Each of these made the previous engine (gtmpl) panic on a UTF-8 boundary (fuzz target `templates`).
        for t in [
            "{{ é }}",
            "{{ .é }}",
            "{{ \"a\" | é }}",
            "{{ 1é }}",
            "{{ \"a\"é }}",
            "{{é}}",
            "{{- é -}}",
            "{{ \"\\é\" }}",
            "{{ .cert | \u{fffd}filterPEM \"CERTIFICATE\" }}",
        ] {
            // Go accepts Unicode letters in identifiers: each of these is an error there too
            // (an undefined function or variable, a missing key, a bad escape), never a panic.
            let r = render(t, &data());
            assert!(
                r.as_ref().is_err_and(|e| e.contains("template")),
                "{t}: {r:?}"
            );
        }
        // Literals, comments, text and identifiers keep any character; backslash escapes next
        // to non-ASCII characters work, also in raw strings (all as Go renders them).
        let d = BTreeMap::from([("clé".to_string(), "v".to_string())]);
        for (t, want) in [
            ("héllo {{ \"wörld\" }}", "héllo wörld"),
            ("{{ `é` }}{{/* é */}}{{- /* é */ -}}", "é"),
            ("{{ index . \"clé\" }}—", "v—"),
            ("{{ .clé }}", "v"),
            ("{{ $é := 1 }}", ""),
            ("{{ \"\\x41aéa\" }}", "Aaéa"),
            ("{{ \"\\u0041aéaaa\" }}", "Aaéaaa"),
            ("{{ `\\é` }}", "\\é"),
            ("{{ `\\x41aéa` }}", "\\x41aéa"),
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
        // The previous engine (gtmpl) panicked on these (fuzz target `templates`).
        let d = BTreeMap::from([("v".to_string(), "x".to_string())]);
        for (t, want) in [
            ("é{{- .v }}", "éx"),
            ("a é \n\t{{- .v }}", "a éx"),
            ("{{ .v }}ü {{- \"y\" -}} ö{{- /* c */}}!", "xüyö!"),
            ("é {{-3}}", "é -3"),
        ] {
            assert_eq!(render(t, &d).as_deref(), Ok(want), "{t}");
        }
        // ASCII text before the marker.
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
            "{{ index .pw 100 }}",
            "{{ lt .pw 1 }}",
            "{{ mustRegexMatch .pw .pw }}{{ mustRegexMatch (printf \"(%s\" .pw) .n }}",
            "{{ fail .pw }}",
            "{{ required .pw \"\" }}",
        ] {
            let e = render(t, &d).unwrap_err();
            assert!(!e.contains("SENTINEL"), "{t}: {e}");
        }
        // A function that echoes a value (fail, required) has it redacted.
        assert!(
            render("{{ fail .pw }}", &d)
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
            assert_eq!(
                render_budgeted(one, &ctx, 50_000).as_deref(),
                Ok(b"done".as_slice())
            );
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
