//! `cargo xtask goldens [--check]`: render the template differential corpus
//! (crates/template/tests/corpus.jsonl) with Go's text/template + sprig v3 (the go-oracle
//! program, built from the Go module proxy) and write crates/template/tests/golden.jsonl, or
//! with `--check` fail when the checked-in goldens differ from what Go renders now.

use anyhow::{Context, Result, bail};
use std::io::Write as _;
use std::process::{Command, Stdio};

/// Build the go-oracle program (Go module proxy for sprig); its path.
pub fn build_oracle() -> Result<std::path::PathBuf> {
    let root = crate::project_root();
    let oracle_dir = root.join("crates/template/go-oracle");
    let bin = root.join("target/go-oracle/go-oracle");
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&oracle_dir)
        .status()
        .context("running `go build` for the template oracle (is Go installed?)")?;
    if !st.success() {
        bail!("go build of crates/template/go-oracle failed");
    }
    Ok(bin)
}

pub fn run(check: bool) -> Result<()> {
    let root = crate::project_root();
    let tests = root.join("crates/template/tests");
    let bin = build_oracle()?;
    let corpus = std::fs::read(tests.join("corpus.jsonl")).context("reading corpus.jsonl")?;
    let mut child = Command::new(&bin)
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting go-oracle")?;
    child
        .stdin
        .take()
        .context("go-oracle stdin")?
        .write_all(&corpus)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("go-oracle failed");
    }
    let path = tests.join("golden.jsonl");
    if check {
        let current = std::fs::read(&path).unwrap_or_default();
        if current != out.stdout {
            bail!(
                "crates/template/tests/golden.jsonl differs from Go's output; run `cargo xtask goldens` and review the diff"
            );
        }
        println!("template goldens match Go");
    } else {
        std::fs::write(&path, &out.stdout)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
