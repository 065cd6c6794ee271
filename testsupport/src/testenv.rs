//! Access to the local control plane started by `cargo xtask testenv up`, for integration tests.
//!
//! The environment is found through `ESO_TESTENV_KUBECONFIG` (set by `cargo xtask ci` and
//! `eval "$(cargo xtask testenv env)"`) or, failing that, `target/testenv/env.json`. When there
//! is none, tests skip — unless `ESO_REQUIRE_TESTENV=1`, then they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A running test environment.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The kubectl built with the control plane.
    pub kubectl: PathBuf,
    /// helm, if built.
    pub helm: Option<PathBuf>,
    /// The moto server, e.g. `http://127.0.0.1:40123`.
    pub moto_url: Option<String>,
    /// `target/testenv`.
    pub dir: PathBuf,
}

impl TestEnv {
    /// Run kubectl against the environment.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl.display()))
    }

    /// Run kubectl with `stdin` as its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl.display()));
        if let Some(mut s) = child.stdin.take() {
            let _ = s.write_all(stdin.as_bytes());
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for kubectl: {e}"))
    }
}

fn root() -> PathBuf {
    // This crate lives in `<root>/testsupport`.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vars() -> Option<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for k in [
        "ESO_TESTENV_KUBECONFIG",
        "ESO_TESTENV_KUBECTL",
        "ESO_TESTENV_HELM",
        "ESO_TESTENV_MOTO_URL",
        "ESO_TESTENV_DIR",
    ] {
        if let Ok(v) = std::env::var(k) {
            vars.insert(k.to_string(), v);
        }
    }
    if vars.contains_key("ESO_TESTENV_KUBECONFIG") {
        return Some(vars);
    }
    let file = std::fs::read(root().join("target/testenv/env.json")).ok()?;
    serde_json::from_slice(&file).ok()
}

/// The environment, or `None` (after printing why) when it is not running and not required.
pub fn require() -> Option<TestEnv> {
    let required = std::env::var("ESO_REQUIRE_TESTENV").is_ok_and(|v| v == "1");
    let found = vars().and_then(|v| {
        let kubeconfig = PathBuf::from(v.get("ESO_TESTENV_KUBECONFIG")?);
        let kubectl = PathBuf::from(v.get("ESO_TESTENV_KUBECTL")?);
        if !kubeconfig.is_file() || !kubectl.is_file() {
            return None;
        }
        Some(TestEnv {
            kubeconfig,
            kubectl,
            helm: v
                .get("ESO_TESTENV_HELM")
                .map(PathBuf::from)
                .filter(|p| p.is_file()),
            moto_url: v.get("ESO_TESTENV_MOTO_URL").cloned(),
            dir: v
                .get("ESO_TESTENV_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target/testenv")),
        })
    });
    match found {
        Some(env) => Some(env),
        None if required => {
            panic!("ESO_REQUIRE_TESTENV=1 but no testenv is running: run `cargo xtask testenv up`")
        }
        None => {
            eprintln!(
                "skipped: no testenv (run `cargo xtask testenv up`, or set ESO_REQUIRE_TESTENV=1 to fail instead)"
            );
            None
        }
    }
}

/// The environment described by `<dir>/env.json` (e.g. a private instance started with
/// `cargo xtask testenv up --instance NAME`, in `target/testenv-NAME`), if it is there.
pub fn from_dir(dir: &Path) -> Option<TestEnv> {
    let file = std::fs::read(dir.join("env.json")).ok()?;
    let v: BTreeMap<String, String> = serde_json::from_slice(&file).ok()?;
    Some(TestEnv {
        kubeconfig: PathBuf::from(v.get("ESO_TESTENV_KUBECONFIG")?),
        kubectl: PathBuf::from(v.get("ESO_TESTENV_KUBECTL")?),
        helm: v
            .get("ESO_TESTENV_HELM")
            .map(PathBuf::from)
            .filter(|p| p.is_file()),
        moto_url: v.get("ESO_TESTENV_MOTO_URL").cloned(),
        dir: dir.to_path_buf(),
    })
}

/// A name unique across test processes and calls, valid as a Kubernetes name (≤ 63 chars).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    let mut prefix: String = prefix
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    prefix.truncate(30);
    format!("{prefix}-{:x}-{t:x}-{n}", std::process::id())
}
