//! Bounded cargo-fuzz runs (nightly toolchain + cargo-fuzz, installed on demand).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Fuzz targets: (crate dir with a `fuzz/` project, target name).
const TARGETS: &[(&str, &str)] = &[];

fn ensure_cargo_fuzz() -> Result<()> {
    let ok = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    println!("installing cargo-fuzz (once)");
    let status = Command::new("cargo")
        .args(["install", "--locked", "cargo-fuzz"])
        .status()
        .context("cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("could not install cargo-fuzz");
    }
    Ok(())
}

/// Whether any fuzz target is registered (CI says "skipped" rather than "ok" when none is).
pub fn has_targets() -> bool {
    !TARGETS.is_empty()
}

/// Run every fuzz target for `seconds` each.
pub fn run(seconds: u64) -> Result<()> {
    if TARGETS.is_empty() {
        println!("no fuzz targets registered");
        return Ok(());
    }
    ensure_cargo_fuzz()?;
    let root = crate::project_root();
    for (dir, target) in TARGETS {
        let dir = root.join(Path::new(dir));
        println!("fuzzing {target} for {seconds}s in {}", dir.display());
        let status = Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={seconds}"),
            ])
            .current_dir(&dir)
            .status()
            .with_context(|| format!("running fuzz target {target}"))?;
        if !status.success() {
            bail!("fuzz target {target} found a failure (see the artifact path above)");
        }
    }
    Ok(())
}
