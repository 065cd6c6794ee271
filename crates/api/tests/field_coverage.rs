//! No field is accepted and silently ignored: every field of every CRD schema (as generated from
//! the types by `eso_api::crds()`) must be listed in `field_coverage.txt` as either
//!
//! - `read [ident]`: the operator reads it. As a cross-check the Rust field name (the snake_case
//!   form of the last path segment, or `ident`) must occur in the source of a crate that consumes
//!   the types (mapping, provider, provider-aws, reconciler, operator) — a new field nobody wires
//!   fails here; or
//! - `unsupported <text>`: the operator refuses or reports it in status (a condition); `<text>`
//!   is a fragment of that message and must occur in the consumers' source.
//!
//! A field added to a type without an entry fails this test, and so does an entry for a field
//! that no longer exists. Objects are covered through their fields; a field with an open schema
//! (`x-kubernetes-preserve-unknown-fields`) is listed as `<path>{*}` for its unknown members.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_in_result
)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

const CONSUMERS: &[&str] = &[
    "mapping",
    "provider",
    "provider-aws",
    "reconciler",
    "operator",
];

/// The kind a path belongs to in the ledger: both store kinds share one spec.
fn ledger_kind(kind: &str) -> &str {
    match kind {
        "SecretStore" | "ClusterSecretStore" => "Store",
        k => k,
    }
}

/// Collect leaf and open fields under `schema` (paths relative to the CRD root).
fn walk(schema: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    let props = schema.get("properties").and_then(Value::as_object);
    let open = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    if open {
        out.insert(format!("{path}{{*}}"), schema.clone());
    }
    if let Some(props) = props {
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let is_container = v.get("properties").is_some()
                || v.get("items")
                    .is_some_and(|i| i.get("properties").is_some());
            if !is_container
                && v.get("x-kubernetes-preserve-unknown-fields").is_none()
                && v.get("items")
                    .is_none_or(|i| i.get("x-kubernetes-preserve-unknown-fields").is_none())
            {
                out.insert(p.clone(), v.clone());
            }
            walk(v, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), out);
    }
    if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk(ap, &format!("{path}{{}}"), out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for sub in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(sub, path, out);
        }
    }
}

fn schema_fields() -> BTreeMap<(String, String), Value> {
    let mut fields = BTreeMap::new();
    for crd in eso_api::crds() {
        let kind = crd.spec.names.kind.clone();
        for v in &crd.spec.versions {
            let schema = serde_json::to_value(
                v.schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .unwrap(),
            )
            .unwrap();
            let Some(spec) = schema.get("properties").and_then(|p| p.get("spec")) else {
                continue;
            };
            let mut out = BTreeMap::new();
            walk(spec, "spec", &mut out);
            for (p, s) in out {
                fields.insert((ledger_kind(&kind).to_string(), p), s);
            }
        }
    }
    fields
}

fn snake(name: &str) -> String {
    let mut s = String::new();
    let mut prev_upper = true;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !prev_upper {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
            prev_upper = true;
        } else {
            s.push(c);
            prev_upper = false;
        }
    }
    s
}

fn consumer_sources() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = String::new();
    fn read_dir(dir: &Path, all: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                read_dir(&p, all);
            } else if p.extension().is_some_and(|x| x == "rs") {
                all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                all.push('\n');
            }
        }
    }
    for c in CONSUMERS {
        read_dir(&root.join(c).join("src"), &mut all);
    }
    all
}

fn contains_ident(src: &str, ident: &str) -> bool {
    src.match_indices(ident).any(|(i, _)| {
        let before = src[..i].chars().next_back();
        let after = src[i + ident.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

#[test]
fn every_schema_field_is_read_or_reported_unsupported() {
    let ledger_text = include_str!("field_coverage.txt");
    let mut ledger: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for (n, line) in ledger_text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(4, ' ');
        let (Some(kind), Some(path), Some(how)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("field_coverage.txt:{}: malformed line {line:?}", n + 1);
        };
        let arg = parts.next().unwrap_or("").to_string();
        assert!(
            ledger
                .insert((kind.into(), path.into()), (how.into(), arg))
                .is_none(),
            "field_coverage.txt:{}: duplicate entry {kind} {path}",
            n + 1
        );
    }
    let fields = schema_fields();
    let src = consumer_sources();
    let mut problems = Vec::new();
    for ((kind, path), schema) in &fields {
        let Some((how, arg)) = ledger.get(&(kind.clone(), path.clone())) else {
            problems.push(format!(
                "{kind} {path}: not in field_coverage.txt — implement it (read) or report it unsupported in status"
            ));
            continue;
        };
        match how.as_str() {
            "read" => {
                let last = path
                    .trim_end_matches("{*}")
                    .trim_end_matches("{}")
                    .trim_end_matches("[]")
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches("[]");
                let ident = if arg.is_empty() {
                    snake(last)
                } else {
                    arg.clone()
                };
                if !contains_ident(&src, &ident) {
                    problems.push(format!(
                        "{kind} {path}: listed as read, but `{ident}` occurs in no consumer crate"
                    ));
                }
            }
            "unsupported" => {
                if arg.is_empty() || !src.contains(arg.as_str()) {
                    problems.push(format!(
                        "{kind} {path}: listed as unsupported, but the message {arg:?} occurs in no consumer crate"
                    ));
                }
            }
            "fixed" => {
                let n = schema.get("enum").and_then(Value::as_array).map(Vec::len);
                if n != Some(1) {
                    problems.push(format!(
                        "{kind} {path}: listed as fixed, but its schema admits more than one value"
                    ));
                }
            }
            "inert" => {
                if arg.is_empty() {
                    problems.push(format!("{kind} {path}: inert needs a reason"));
                }
            }
            other => problems.push(format!("{kind} {path}: unknown handling {other:?}")),
        }
    }
    for (kind, path) in ledger.keys() {
        if !fields.contains_key(&(kind.clone(), path.clone())) {
            problems.push(format!(
                "{kind} {path}: in field_coverage.txt but not in the schema (stale entry)"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_walk_sees_the_fields_issue_16_names() {
    let fields = schema_fields();
    for (k, p) in [
        ("ExternalSecret", "spec.syncWindows.windows[].schedule"),
        ("ExternalSecret", "spec.target.manifest.kind"),
        ("Store", "spec.retrySettings.maxRetries"),
        ("Store", "spec.provider.aws.sessionTagsPolicy"),
        ("Store", "spec.provider.aws.customSessionTags"),
        (
            "ExternalSecret",
            "spec.dataFrom[].sourceRef.generatorRef{*}",
        ),
    ] {
        assert!(
            fields.contains_key(&(k.to_string(), p.to_string())),
            "{k} {p} missing from {:#?}",
            fields.keys().collect::<Vec<_>>()
        );
    }
}
