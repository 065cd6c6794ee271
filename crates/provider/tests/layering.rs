//! Layering: provider crates never compile the mapping and template engine. The types a provider
//! is asked for and answers with live in `eso-remote`; `eso-mapping` may only appear among
//! dev-dependencies (examples and tests drive the engine end to end).
#![allow(clippy::panic)]

use std::path::Path;

/// Crates that must not have `eso-mapping` (or `eso-template`) as a normal or build dependency.
const PROVIDER_MANIFESTS: &[&str] = &["Cargo.toml", "../provider-aws/Cargo.toml"];

/// Packages a provider crate must not depend on outside dev-dependencies.
const FORBIDDEN: &[&str] = &["eso-mapping", "eso-template"];

/// The forbidden packages a manifest names in `[dependencies]`, `[build-dependencies]` or a
/// `[target.'…'.dependencies]` table, in any of the spellings Cargo accepts (`name = …`,
/// `renamed = { package = "name" }`, `[dependencies.name]`).
fn forbidden_deps(manifest: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_deps = false;
    for raw in manifest.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[').trim_end_matches(']').trim();
            let table = header.rsplit('.').next().unwrap_or(header);
            let normal = |t: &str| t == "dependencies" || t == "build-dependencies";
            in_deps = normal(table);
            // `[dependencies.eso-mapping]`: the dependency is named in the header itself.
            if let Some((parent, name)) = header.rsplit_once('.') {
                let parent_table = parent.rsplit('.').next().unwrap_or(parent);
                if normal(parent_table) && FORBIDDEN.contains(&name.trim_matches('"')) {
                    found.push(name.trim_matches('"').to_string());
                }
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let key = key.split('.').next().unwrap_or(key);
        for name in FORBIDDEN {
            let renamed = value.contains(&format!("package = \"{name}\""));
            if key == *name || renamed {
                found.push((*name).to_string());
            }
        }
    }
    found
}

#[test]
fn provider_crates_do_not_depend_on_the_mapping_engine() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for manifest in PROVIDER_MANIFESTS {
        let path = dir.join(manifest);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let found = forbidden_deps(&text);
        assert!(
            found.is_empty(),
            "{} depends on {found:?}: provider crates must only use eso-remote / eso-provider \
             (dev-dependencies are fine)",
            path.display()
        );
    }
}

#[test]
fn the_check_sees_every_spelling() {
    for manifest in [
        "[dependencies]\neso-mapping.workspace = true\n",
        "[dependencies]\neso-mapping = { path = \"../mapping\" }\n",
        "[dependencies]\nengine = { package = \"eso-mapping\", path = \"x\" }\n",
        "[dependencies.eso-mapping]\nworkspace = true\n",
        "[target.'cfg(unix)'.dependencies]\neso-template.workspace = true\n",
        "[build-dependencies]\neso-mapping.workspace = true\n",
    ] {
        assert!(!forbidden_deps(manifest).is_empty(), "missed: {manifest}");
    }
    for manifest in [
        "[dev-dependencies]\neso-mapping.workspace = true\n",
        "[dependencies]\neso-remote.workspace = true\n# eso-mapping = old\n",
        "[dependencies.eso-remote]\nworkspace = true\n",
    ] {
        assert!(
            forbidden_deps(manifest).is_empty(),
            "false alarm: {manifest}"
        );
    }
}
