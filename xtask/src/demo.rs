//! `cargo xtask demo`: the user's seed flow, end to end, on the local control plane.
//!
//! Brings up testenv, installs the CRDs, creates the seed's AWS secret in moto, applies the seed
//! manifests (only the endpoint, region and credentials adapted), runs the operator, prints the
//! synced Secret decoded (as the seed's get-secret.sh does), then changes the AWS secret and shows
//! the Secret follow. `cargo xtask demo down` stops the operator and the control plane.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::kubectl::Kubectl;

#[path = "../../testsupport/moto.rs"]
mod moto;

const DB: &str = r#"{"username":"dbuser","password":"dbpassword","host":"dbhost","port":"5432"}"#;
const ROTATED: &str =
    r#"{"username":"dbuser","password":"rotated-in-aws","host":"dbhost","port":"5432"}"#;

fn state_dir() -> PathBuf {
    crate::project_root().join("target").join("testenv")
}

fn pid_file() -> PathBuf {
    state_dir().join("demo-operator.pid")
}

fn decode(b64: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut buf, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in b64.trim().bytes() {
        let Some(v) = T.iter().position(|&x| x == c) else {
            break;
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn get_secret(k: &Kubectl) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for key in ["username", "password", "host", "port"] {
        let v = k
            .run(
                &[
                    "get",
                    "secret",
                    "my-db-secret",
                    "-n",
                    "default",
                    "-o",
                    &format!("jsonpath={{.data.{key}}}"),
                ],
                None,
            )
            .ok()?;
        if v.is_empty() {
            return None;
        }
        out.push((key.to_string(), decode(&v)));
    }
    Some(out)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn stop_operator() {
    if let Ok(pid) = std::fs::read_to_string(pid_file()) {
        let pid = pid.trim().to_string();
        let _ = Command::new("kill").arg(&pid).status();
        let _ = std::fs::remove_file(pid_file());
        println!("stopped the demo operator (pid {pid})");
    }
}

/// `cargo xtask demo [down]`.
pub fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("down") {
        stop_operator();
        return crate::testenv::down();
    }
    let root = crate::project_root();
    println!("==> building eso-operator");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-p", "eso-operator"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build -p eso-operator failed");
    }

    println!(
        "==> starting the local control plane (kube-apiserver, etcd, kube-controller-manager, moto)"
    );
    crate::testenv::up()?;
    let envs = crate::testenv::env_vars()?;
    let moto_url = envs
        .iter()
        .find(|(k, _)| k == "ESO_TESTENV_MOTO_URL")
        .map(|(_, v)| v.clone())
        .context("testenv did not export ESO_TESTENV_MOTO_URL")?;
    let k = Kubectl {
        bin: crate::testenv::tool_path("kubectl")?,
        envs: envs.clone(),
    };

    println!("==> installing the CRDs");
    k.install_crds(&root)?;

    println!("==> aws secretsmanager create-secret --name my-db-secret (moto at {moto_url})");
    match moto::create_secret(&moto_url, "my-db-secret", DB) {
        Ok(_) => {}
        Err(e) if e.contains("ResourceExists") => {
            moto::put_value(&moto_url, "my-db-secret", DB).map_err(anyhow::Error::msg)?;
        }
        Err(e) => bail!("creating the AWS secret in moto: {e}"),
    }

    // Start from a clean slate so a second run shows the whole flow again.
    stop_operator();
    for kind in ["externalsecret", "secret"] {
        let _ = k.run(
            &[
                "delete",
                kind,
                "my-db-secret",
                "-n",
                "default",
                "--ignore-not-found",
            ],
            None,
        );
    }
    println!("==> applying the seed manifests (examples/seed; region set to us-east-1)");
    let _ = k.run(&["create", "namespace", "external-secrets"], None);
    for f in [
        "aws-secret.yaml",
        "cluster-secret-store.yaml",
        "external-secret.yaml",
    ] {
        let text = std::fs::read_to_string(root.join("examples/seed").join(f))?
            .replace("region: your-region", "region: us-east-1");
        k.run(&["apply", "-f", "-"], Some(&text))?;
        println!("    kubectl apply -f {f}");
    }

    stop_operator();
    println!("==> starting eso-operator (log: target/testenv/logs/demo-operator.log)");
    let logs = state_dir().join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join("demo-operator.log"))?;
    let bin = root.join("target/debug/eso-operator");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--metrics-addr",
        "127.0.0.1:18080",
        "--health-addr",
        "127.0.0.1:18082",
    ])
    .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(log));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    std::fs::write(pid_file(), child.id().to_string())?;

    println!("==> waiting for the Secret (kubectl get secrets my-db-secret)");
    let values = wait_for("the synced Secret", Duration::from_secs(90), || {
        get_secret(&k).filter(|v| {
            v.iter()
                .any(|(key, val)| key == "password" && val == "dbpassword")
        })
    })?;
    println!(
        "{}",
        k.run(&["get", "secrets", "my-db-secret", "-n", "default"], None)?
            .trim_end()
    );
    println!(
        "{}",
        k.run(
            &["get", "externalsecret", "my-db-secret", "-n", "default"],
            None
        )?
        .trim_end()
    );
    println!("\n==> bash examples/seed/get-secret.sh");
    for (key, v) in &values {
        println!("{key}: {v}");
    }

    println!(
        "\n==> editing the secret in AWS (new password); refreshInterval stays 1h as in the guide.\n    \
         Waiting up to a little more than one minute (the operator polls for remote changes every minute)..."
    );
    let edited = Instant::now();
    moto::put_value(&moto_url, "my-db-secret", ROTATED).map_err(anyhow::Error::msg)?;
    let values = wait_for("the rotated password", Duration::from_secs(100), || {
        get_secret(&k).filter(|v| {
            v.iter()
                .any(|(key, val)| key == "password" && val == "rotated-in-aws")
        })
    })?;
    println!(
        "==> bash examples/seed/get-secret.sh ({:.0}s after the edit)",
        edited.elapsed().as_secs_f64()
    );
    for (key, v) in &values {
        println!("{key}: {v}");
    }
    println!(
        "\nThe operator keeps running (pid {}). It sees AWS edits within a minute (one ListSecrets call per store),\n\
         whatever the refreshInterval.\n\n\
         Try it yourself:\n  eval \"$(cargo xtask testenv env)\"\n  kubectl get es,secret -n default\n\n\
         Stop everything with:\n  cargo xtask demo down",
        child.id()
    );
    Ok(())
}
