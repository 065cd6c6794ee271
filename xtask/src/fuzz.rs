//! Bounded cargo-fuzz runs: `cargo xtask fuzz [--seconds N] [target]`, and the CI fuzz step.
//!
//! The fuzz project is `fuzz/` (its own workspace). Everything it needs is installed on demand
//! and pinned, so a fresh machine gets the same tools as a developer's:
//! - the nightly toolchain [`NIGHTLY`] (`rustup toolchain install --profile minimal`);
//! - cargo-fuzz [`CARGO_FUZZ_VERSION`], installed with `cargo install --locked` into
//!   `~/.cache/eso-rs/tools/cargo-fuzz-<version>` (keyed by version: a stale one is never used).
//!
//! Targets are built once, without a sanitizer (the code under test is safe Rust; `unsafe_code`
//! is forbidden) and without `-Zbuild-std`, in release mode with debug assertions and overflow
//! checks on. Each then runs for the given time on `fuzz/corpus/<target>` (new inputs, not
//! committed) plus the committed seeds in `fuzz/seeds/<target>`. libFuzzer's output goes to
//! `fuzz/target/fuzz-logs/<target>.log`; a failure prints its tail, with the artifact path.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The pinned nightly toolchain (cargo-fuzz needs nightly for `-Zsanitizer`-style flags).
const NIGHTLY: &str = "nightly-2026-10-15";

/// The pinned cargo-fuzz version.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Fuzz targets of `fuzz/` (see `fuzz/fuzz_targets/<name>.rs`).
const TARGETS: &[&str] = &["property_paths", "templates", "crd_deserialize"];

/// Per-input time limit: an input slower than this is reported as a hang.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// Memory limit per fuzz process, in MiB.
const RSS_LIMIT_MB: u64 = 2048;

/// Whether any fuzz target is registered (CI says "skipped" rather than "ok" when none is).
pub fn has_targets() -> bool {
    !TARGETS.is_empty()
}

/// `cargo xtask fuzz [--seconds N] [target]`: every target (or one) for N seconds (default 30).
pub fn cli(args: &[String]) -> Result<()> {
    let mut seconds = 30;
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v:?} is not a whole number"))?;
            }
            t if TARGETS.contains(&t) => only = Some(t),
            other => bail!(
                "unknown fuzz argument {other:?}; usage: cargo xtask fuzz [--seconds N] [{}]",
                TARGETS.join("|")
            ),
        }
    }
    match only {
        Some(t) => run_targets(seconds, &[t]),
        None => run(seconds),
    }
}

/// Run every fuzz target for `seconds` each (the CI step).
pub fn run(seconds: u64) -> Result<()> {
    run_targets(seconds, TARGETS)
}

fn run_targets(seconds: u64, targets: &[&str]) -> Result<()> {
    let root = crate::project_root();
    let fuzz_dir = root.join("fuzz");
    let target_dir = fuzz_dir.join("target");

    let t = Instant::now();
    ensure_nightly()?;
    println!(
        "toolchain {NIGHTLY} ready ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let cargo_fuzz = ensure_cargo_fuzz()?;
    println!(
        "cargo-fuzz {CARGO_FUZZ_VERSION} ready ({:.1}s)",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let status = fuzz_command(&cargo_fuzz, &fuzz_dir, &target_dir, "build")
        .status()
        .context("running cargo-fuzz build")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    println!("fuzz targets built ({:.1}s)", t.elapsed().as_secs_f64());

    let logs = target_dir.join("fuzz-logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    for target in targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = fuzz_dir.join("seeds").join(target);
        let log_path = logs.join(format!("{target}.log"));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log file handle")?;
        println!(
            "fuzzing {target} for {seconds}s (log: {})",
            log_path.display()
        );
        let status = fuzz_command(&cargo_fuzz, &fuzz_dir, &target_dir, "run")
            .arg(target)
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg("-print_final_stats=1")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .status()
            .with_context(|| format!("running fuzz target {target}"))?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            let lines: Vec<&str> = text.lines().collect();
            // The panic message or libFuzzer's verdict (a hang, out of memory), then the tail
            // with the failing input and how to reproduce it.
            for (i, line) in lines.iter().enumerate() {
                if line.contains("panicked at") || line.contains("ERROR: libFuzzer") {
                    let end = (i + 2).min(lines.len());
                    eprintln!("{}", lines.get(i..end).unwrap_or_default().join("\n"));
                }
            }
            let tail = lines.len().saturating_sub(40);
            eprintln!("{}", lines.get(tail..).unwrap_or_default().join("\n"));
            bail!(
                "fuzz target {target} failed ({status}); the failing input is under \
                 fuzz/artifacts/{target}/ (see the log above). Reproduce: cd fuzz && \
                 RUSTUP_TOOLCHAIN={NIGHTLY} {} run --sanitizer none -a {target} <artifact>",
                cargo_fuzz.display()
            );
        }
        println!("  {target}: {}", summary(&text, &corpus));
    }
    Ok(())
}

/// `cargo-fuzz <sub> --sanitizer none -a` on the pinned nightly, for the project in `fuzz_dir`.
fn fuzz_command(cargo_fuzz: &Path, fuzz_dir: &Path, target_dir: &Path, sub: &str) -> Command {
    let mut cmd = Command::new(cargo_fuzz);
    cmd.arg(sub)
        .arg("--fuzz-dir")
        .arg(fuzz_dir)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--sanitizer", "none", "--debug-assertions"])
        .current_dir(fuzz_dir)
        // `cargo xtask` runs under the workspace's stable toolchain: make cargo-fuzz's nested
        // `cargo` and `cargo metadata` calls use the pinned nightly instead.
        .env("RUSTUP_TOOLCHAIN", NIGHTLY)
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    cmd
}

/// One line from libFuzzer's final statistics: runs, execs/s, corpus size.
fn summary(log: &str, corpus: &Path) -> String {
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".to_string())
    };
    let corpus_files = fs::read_dir(corpus).map(|d| d.count()).unwrap_or(0);
    format!(
        "{} runs, {} exec/s, peak RSS {} MiB, {corpus_files} inputs in fuzz/corpus",
        stat("stat::number_of_executed_units:"),
        stat("stat::average_exec_per_sec:"),
        stat("stat::peak_rss_mb:"),
    )
}

/// Install the pinned nightly (minimal profile) unless rustup already has it.
fn ensure_nightly() -> Result<()> {
    let have = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    println!("installing toolchain {NIGHTLY} (once)");
    let status = Command::new("rustup")
        .args(["toolchain", "install", NIGHTLY, "--profile", "minimal"])
        .status()
        .context("running rustup (is rustup installed?)")?;
    if !status.success() {
        bail!("rustup could not install {NIGHTLY} ({status})");
    }
    Ok(())
}

/// The pinned cargo-fuzz binary, installed into the tool cache when missing.
fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let root = cache
        .join("eso-rs")
        .join("tools")
        .join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let bin = root.join("bin").join("cargo-fuzz");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        })
        .unwrap_or(false);
    if installed {
        return Ok(bin);
    }
    println!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} into {} (once)",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "install",
            "--locked",
            "--force",
            "--version",
            CARGO_FUZZ_VERSION,
            "--root",
        ])
        .arg(&root)
        .arg("cargo-fuzz")
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("could not install cargo-fuzz {CARGO_FUZZ_VERSION} ({status})");
    }
    Ok(bin)
}
