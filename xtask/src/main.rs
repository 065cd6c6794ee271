//! `cargo xtask`: project automation.
//!
//! - `cargo xtask crdgen [--check]`: write (or check) `deploy/crds/*.yaml` from the eso-api types.
//! - `cargo xtask testenv up|down|env|status`: a real control plane (etcd, kube-apiserver,
//!   kube-controller-manager) and a moto server on loopback; `--instance NAME` for a private one,
//!   `restart [--kill] <component>` to restart one of its processes.
//! - `cargo xtask goldens [--check]`: template differential goldens from Go (go-oracle).
//! - `cargo xtask template-diff [--seconds N] [--seed S]`: differential fuzzing against Go.
//! - `cargo xtask ci`: everything CI runs.

mod apicount;
mod apidocs;
mod bench;
mod ci;
mod crdgen;
mod demo;
mod fuzz;
mod goldens;
mod image;
mod kubectl;
mod manifests;
mod node;
mod template_diff;
mod testenv;

use anyhow::{Result, bail};
use eso_testsupport::proxy;
use std::path::PathBuf;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r.to_vec()),
        None => {
            print_help();
            return Ok(());
        }
    };
    match cmd {
        "crdgen" => crdgen::run(rest.iter().any(|a| a == "--check")),
        "testenv" => testenv::run(&rest),
        "ci" => ci::run(&rest),
        "demo" => demo::run(&rest),
        "bench" => bench::run(&rest),
        "apidocs" => apidocs::run(rest.iter().any(|a| a == "--check")),
        "manifests" => manifests::run(rest.iter().any(|a| a == "--check")),
        "fuzz" => fuzz::cli(&rest),
        "image" => image::run(&rest),
        "node-e2e" => node::e2e(&rest),
        "goldens" => goldens::run(rest.iter().any(|a| a == "--check")),
        "template-diff" => template_diff::cli(&rest),
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => bail!("unknown xtask command {other:?}; run `cargo xtask help`"),
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         crdgen [--check]            write deploy/crds from the eso-api types (--check: fail if stale)\n\
         testenv up|down|env|status  local control plane + moto on loopback\n\
         testenv restart [--kill] C  restart etcd|apiserver|controller-manager|moto (same args and data)\n\
         testenv --instance NAME ... a private control plane in target/testenv-NAME\n\
         testenv up --node           also a node (scheduler, containerd, kubelet, kube-proxy; root)\n\
         image [--rootfs DIR] [--dev] the operator image as an OCI archive in target/image (offline)\n\
         node-e2e [--keep] [--dev-image]  the chart in pods on the node: the user's guide end to end (root)\n\
         ci                          fmt, clippy, crdgen --check, testenv up, tests, testenv down\n\
         apidocs [--check]           write docs/api-reference.md from the eso-api types\n\
         manifests [--check]         write deploy/manifests (kustomize base) from the Helm chart\n\
         goldens [--check]           render the template corpus with Go + sprig (go-oracle), write/check the goldens\n\
         template-diff [--seconds N] [--seed S] [--max-cases N]  random templates through eso-template and Go, compared\n\
         demo [down]                 the user's seed flow end to end on the local control plane\n\
         fuzz [--seconds N] [target]  bounded cargo-fuzz runs (pinned nightly + cargo-fuzz, installed on demand)\n\
         bench [--es N --distinct D --big M --interval S]  operator benchmarks on the local control plane\n\
         bench fairness|soak [...] [-- <operator flags>]   fairness under failures, 10-minute load (see bench.rs)"
    );
}

/// The workspace root (the parent of this crate's directory).
pub fn project_root() -> PathBuf {
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            dir.parent().map(PathBuf::from).unwrap_or(dir)
        }
        // Run as `target/debug/xtask` from the project root: absolute paths all the same (the
        // testenv's kubeconfig names its certificates by path).
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}
