//! `cargo xtask ci`: everything CI runs, in order, against a real local control plane.
//!
//! fmt --check, clippy -D warnings, crdgen --check, docs, template goldens --check (Go), a
//! bounded template-diff run (random templates through eso-template and Go), testenv up, all workspace tests with
//! `ESO_REQUIRE_TESTENV=1` (tests that need the control plane fail instead of skipping), the
//! compiled examples, testenv down (always, even after a failure), and a bounded fuzz run when
//! fuzz targets are registered. `--node` adds the opt-in in-pod suite (`cargo xtask node-e2e`).

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

/// The template-diff seed: `ESO_TEMPLATE_DIFF_SEED`, or 9.
fn ci_seed() -> u64 {
    std::env::var("ESO_TEMPLATE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9)
}

/// Run CI. `--skip-fuzz` skips the bounded fuzz run; `--fuzz-seconds N` sets its length;
/// `--node` adds the in-pod suite on the testenv node (`cargo xtask node-e2e`).
pub fn run(args: &[String]) -> Result<()> {
    let total = Instant::now();
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

    let result = (|| -> Result<()> {
        step("testenv up", || crate::testenv::up().map(|_| ()))?;
        step("manifests --check", || crate::manifests::run(true))?;
        let mut envs = crate::testenv::env_vars()?;
        envs.push(("ESO_REQUIRE_TESTENV".into(), "1".into()));
        envs.push(("RUST_BACKTRACE".into(), "1".into()));
        step("cargo test --workspace", || {
            cargo(&["test", "--workspace"], &envs)
        })?;
        step("example: custom controller (embedding)", || {
            cargo(
                &[
                    "run",
                    "--quiet",
                    "-p",
                    "eso-reconciler",
                    "--example",
                    "custom_controller",
                ],
                &envs,
            )
        })?;
        step("example: custom provider", || {
            cargo(
                &[
                    "run",
                    "--quiet",
                    "-p",
                    "eso-provider",
                    "--example",
                    "custom_provider",
                ],
                &envs,
            )
        })?;
        Ok(())
    })();
    let down = step("testenv down", crate::testenv::down);
    result?;
    down?;

    if args.iter().any(|a| a == "--node") {
        // Opt-in (root, Linux): the chart in pods on a real node, the user's guide end to end.
        // Cold it adds the node binaries (go build), Debian packages and the static release
        // build of the operator image; see docs/node.md for the measured costs.
        step("node e2e (cargo xtask node-e2e)", || crate::node::e2e(&[]))?;
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
