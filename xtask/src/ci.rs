//! `cargo xtask ci`: everything CI runs, in order, against a real local control plane.
//!
//! fmt --check, clippy -D warnings, crdgen --check, docs, template goldens --check (Go), a
//! bounded template-diff run (random templates through eso-template and Go), testenv up, all workspace tests with
//! `ESO_REQUIRE_TESTENV=1` (tests that need the control plane fail instead of skipping), the
//! compiled examples, testenv down (always, even after a failure), and a bounded fuzz run when
//! fuzz targets are registered. Between the two, the in-pod suite on a real node
//! (`cargo xtask node-e2e --dev-image`: the Helm chart, the operator image, the user's guide in
//! pods); it needs root on Linux, and `--skip-node` leaves it out where the node cannot run.
//!
//! The Go builds (control plane, node) start in a background thread at the beginning, so they
//! use the core the Rust build leaves idle in its serial phases (linking, the large AWS crates);
//! on a warm cache they return at once.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// One timed step.
fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n==> {name}");
    let start = Instant::now();
    let r = f();
    let secs = start.elapsed().as_secs_f64();
    match &r {
        Ok(()) => println!("<== {name}: ok ({secs:.1}s)"),
        Err(e) => println!("<== {name}: FAILED ({secs:.1}s): {e:#}"),
    }
    r
}

fn cargo(args: &[&str], envs: &[(String, String)]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(crate::project_root());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Run an example binary built by the "build tests" step.
fn example(name: &str, envs: &[(String, String)]) -> Result<()> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    let bin = dir.join("debug").join("examples").join(name);
    if !bin.is_file() {
        bail!(
            "{} was not built by `cargo test --workspace --no-run`",
            bin.display()
        );
    }
    let mut cmd = Command::new(&bin);
    cmd.current_dir(crate::project_root());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("example {name} failed ({status})");
    }
    Ok(())
}

/// The template-diff seed: `ESO_TEMPLATE_DIFF_SEED`, or 9.
fn ci_seed() -> u64 {
    std::env::var("ESO_TEMPLATE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9)
}

/// Run CI. `--skip-fuzz` skips the bounded fuzz run; `--fuzz-seconds N` sets its length;
/// `--skip-node` leaves out the in-pod suite on the testenv node (`cargo xtask node-e2e`).
pub fn run(args: &[String]) -> Result<()> {
    let total = Instant::now();
    let node = !args.iter().any(|a| a == "--skip-node");
    if node {
        crate::node::preflight().context(
            "the in-pod suite needs a Linux machine with root; \
             run `cargo xtask ci --skip-node` to leave it out",
        )?;
    }
    let go_builds = std::thread::spawn(move || -> Result<()> {
        let start = Instant::now();
        crate::testenv::build_binaries()?;
        if node {
            crate::testenv::build_node_binaries()?;
        }
        println!(
            "(background: Go binaries ready after {:.0}s)",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    });
    let skip_fuzz = args.iter().any(|a| a == "--skip-fuzz");
    let fuzz_seconds: u64 = args
        .iter()
        .position(|a| a == "--fuzz-seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);

    step("cargo fmt --check", || {
        cargo(&["fmt", "--all", "--", "--check"], &[])
    })?;
    step("cargo clippy -D warnings", || {
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )
    })?;
    // The operator's diagnosis features (allocator statistics, dhat heap profile) are off by
    // default: checked here so they keep building.
    step("cargo clippy, operator diagnosis features", || {
        for features in [
            &["--features", "allocator-stats"][..],
            &["--no-default-features", "--features", "dhat-heap"][..],
        ] {
            let mut args = vec!["clippy", "-p", "eso-operator", "--all-targets"];
            args.extend_from_slice(features);
            args.extend_from_slice(&["--", "-D", "warnings"]);
            cargo(&args, &[])?;
        }
        Ok(())
    })?;
    step("crdgen --check", || crate::crdgen::run(true))?;
    step("apidocs --check", || crate::apidocs::run(true))?;
    // About a minute: go build of the oracle (sprig from the module proxy) and 318 renders.
    step("template goldens --check (Go oracle)", || {
        crate::goldens::run(true)
    })?;
    // Bounded differential fuzzing against Go (the oracle is built by the step above).
    // A fixed seed and case count keep the step reproducible (a failure replays exactly);
    // `ESO_TEMPLATE_DIFF_SEED` explores other seeds. At most 20 s on a slow machine.
    step("template-diff (random templates vs Go)", || {
        crate::template_diff::run(20, ci_seed(), Some(12_000))
    })?;
    step("cargo doc (warnings are errors)", || {
        cargo(
            &["doc", "--workspace", "--no-deps", "--exclude", "xtask"],
            &[("RUSTDOCFLAGS".into(), "-D warnings".into())],
        )
    })?;
    // Build test binaries before the control plane starts, so its clock does not tick during compiles.
    step("build tests", || {
        cargo(&["test", "--workspace", "--no-run"], &[])
    })?;

    step("Go binaries (built in the background)", || {
        go_builds
            .join()
            .map_err(|_| anyhow::anyhow!("the background Go build panicked"))?
    })?;

    let result = (|| -> Result<()> {
        step("testenv up", || crate::testenv::up().map(|_| ()))?;
        step("manifests --check", || crate::manifests::run(true))?;
        let mut envs = crate::testenv::env_vars()?;
        envs.push(("ESO_REQUIRE_TESTENV".into(), "1".into()));
        envs.push(("RUST_BACKTRACE".into(), "1".into()));
        step("cargo test --workspace", || {
            cargo(&["test", "--workspace"], &envs)
        })?;
        // The examples were compiled by `cargo test --workspace --no-run` with the workspace's
        // features; run those binaries (`cargo run -p` would resolve features for one package
        // and rebuild much of the dependency tree).
        step("example: custom controller (embedding)", || {
            example("custom_controller", &envs)
        })?;
        step("example: custom provider", || {
            example("custom_provider", &envs)
        })?;
        Ok(())
    })();
    let down = step("testenv down", crate::testenv::down);
    result?;
    down?;

    if node {
        // The chart in pods on a real node, the user's guide end to end. The image is the
        // dev-profile static build (same layout; see `image::Profile`); the release image is
        // `cargo xtask image`. Costs are in docs/node.md.
        step("node e2e (cargo xtask node-e2e --dev-image)", || {
            crate::node::e2e(&["--dev-image".to_string()])
        })?;
    }

    if !crate::fuzz::has_targets() {
        println!("\n(fuzzing skipped: no fuzz targets registered yet)");
    } else if skip_fuzz {
        println!("\n(fuzzing skipped)");
    } else {
        step("fuzz (bounded)", || crate::fuzz::run(fuzz_seconds))?;
    }
    println!(
        "\nci: all steps passed in {:.1}s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
