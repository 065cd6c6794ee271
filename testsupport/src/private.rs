//! A private control plane for one test (`cargo xtask testenv up --instance <prefix>-<pid>`, in
//! `target/testenv-<prefix>-<pid>`): its own etcd, kube-apiserver, kube-controller-manager and
//! moto, so a test may restart components or run a cluster-wide operator without disturbing the
//! shared testenv.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::cluster::{out, root};
use super::testenv::{self, TestEnv};

/// A private control plane, torn down on drop (even when the test fails).
pub struct Private {
    xtask: PathBuf,
    /// The instance name (`<prefix>-<pid>`).
    pub name: String,
    /// Its state directory, `target/testenv-<name>`.
    pub dir: PathBuf,
    /// The environment to run kubectl and the operator against.
    pub env: TestEnv,
}

fn xtask(bin: &PathBuf, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(root())
        // xtask finds the workspace from CARGO_MANIFEST_DIR (cargo sets it to this crate's).
        .env("CARGO_MANIFEST_DIR", root().join("xtask"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()))
}

/// The xtask binary, built if missing or too old to know `--instance`.
fn xtask_bin() -> PathBuf {
    let bin = root().join("target/debug/xtask");
    let supports_instances = |bin: &PathBuf| {
        bin.is_file()
            && xtask(bin, &["testenv", "status", "--instance", "probe"])
                .status
                .success()
    };
    if !supports_instances(&bin) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let o = Command::new(cargo)
            .args(["build", "-q", "-p", "xtask"])
            .current_dir(root())
            .output()
            .expect("cargo build -p xtask");
        assert!(o.status.success(), "cargo build -p xtask: {}", out(&o));
        assert!(
            supports_instances(&bin),
            "{} does not support --instance",
            bin.display()
        );
    }
    bin
}

impl Private {
    /// `testenv up --instance <prefix>-<pid>`, with the CRDs applied.
    pub fn up(prefix: &str) -> Self {
        let xtask_path = xtask_bin();
        let name = format!("{prefix}-{}", std::process::id());
        let dir = root().join(format!("target/testenv-{name}"));
        let o = xtask(&xtask_path, &["testenv", "up", "--instance", &name]);
        // Tear down whatever started, even if `up` failed half-way.
        let guard = |env| Private {
            xtask: xtask_path.clone(),
            name: name.clone(),
            dir: dir.clone(),
            env,
        };
        let placeholder = TestEnv {
            kubeconfig: PathBuf::new(),
            kubectl: PathBuf::new(),
            helm: None,
            moto_url: None,
            dir: dir.clone(),
        };
        if !o.status.success() {
            drop(guard(placeholder));
            panic!("testenv up --instance {name}: {}", out(&o));
        }
        let env = testenv::from_dir(&dir).expect("private testenv env.json");
        let p = guard(env);
        // CRDs and admission policies, as the shared testenv has them.
        let crds = root().join("deploy/crds");
        let o = p.env.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().expect("utf-8 path"),
        ]);
        assert!(o.status.success(), "applying CRDs: {}", out(&o));
        for crd in [
            "externalsecrets.external-secrets.io",
            "secretstores.external-secrets.io",
            "clustersecretstores.external-secrets.io",
            "clusterexternalsecrets.external-secrets.io",
            "pushsecrets.external-secrets.io",
            "clusterpushsecrets.external-secrets.io",
        ] {
            let o = p.env.kubectl(&[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd}"),
                "--timeout=60s",
            ]);
            assert!(o.status.success(), "CRD {crd}: {}", out(&o));
        }
        p
    }

    /// `testenv restart [--kill] <component>`; returns how long the command took.
    pub fn restart(&self, component: &str, kill: bool) -> Duration {
        let start = Instant::now();
        let mut args = vec!["testenv", "restart", "--instance", &self.name];
        if kill {
            args.push("--kill");
        }
        args.push(component);
        let o = xtask(&self.xtask, &args);
        assert!(o.status.success(), "restart {component}: {}", out(&o));
        println!("{}", String::from_utf8_lossy(&o.stdout).trim());
        start.elapsed()
    }

    /// etcd's client port (from the recorded command line).
    pub fn etcd_port(&self) -> u16 {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.dir.join("components/etcd.json")).expect("etcd record"),
        )
        .expect("etcd record json");
        rec["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .find_map(|a| a.strip_prefix("--listen-client-urls=http://127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .expect("etcd client port")
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let o = xtask(&self.xtask, &["testenv", "down", "--instance", &self.name]);
        if !o.status.success() {
            eprintln!("testenv down --instance {}: {}", self.name, out(&o));
        }
        // Keep the logs for a post-mortem when the test failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
