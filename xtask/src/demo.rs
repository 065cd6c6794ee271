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

use eso_testsupport::moto;

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

/// `cargo xtask demo [--node [--dev-image]] [down]`.
pub fn run(args: &[String]) -> Result<()> {
    let node = args.iter().any(|a| a == "--node");
    if args.iter().any(|a| a == "down") {
        if node {
            return crate::testenv::Instance::named("node")?.down();
        }
        stop_operator();
        return crate::testenv::down();
    }
    if node {
        let profile = if args.iter().any(|a| a == "--dev-image") {
            crate::image::Profile::Dev
        } else {
            crate::image::Profile::Release
        };
        return run_node(profile);
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

fn show(cmd: &str, output: &str) {
    println!("$ {cmd}");
    let o = output.trim_end();
    if !o.is_empty() {
        println!("{o}");
    }
}

/// The annotation that opts a workload in to restarts when its Secrets change.
const ROLLOUT_ANNOTATION: &str = "external-secrets.io/rollout-on-secret-change";

/// `cargo xtask demo --node`: the guide literally, with the operator in a pod on the testenv
/// node (instance `node`): helm install, kubectl get pods, the manifests, the decoded Secret, the
/// application's env from its log, then an AWS edit seen in the Secret and in a new pod of the
/// application (which opted in to rollouts).
fn run_node(profile: crate::image::Profile) -> Result<()> {
    let root = crate::project_root();
    let inst = crate::testenv::Instance::named("node")?;
    println!(
        "==> the local control plane with a node (cargo xtask testenv --instance node up --node)"
    );
    inst.up_with(true)?;
    println!("==> the operator image (cargo xtask image), loaded into the node's containerd");
    let built = crate::image::build_operator_image(None, false, profile)?;
    crate::node::import(inst.dir(), &built.archive)?;
    let envs = inst.env_vars()?;
    let moto_url = envs
        .iter()
        .find(|(k, _)| k == "ESO_TESTENV_MOTO_URL")
        .map(|(_, v)| v.clone())
        .context("testenv did not export ESO_TESTENV_MOTO_URL")?;
    let k = Kubectl {
        bin: crate::testenv::tool_path("kubectl")?,
        envs: envs.clone(),
    };
    let helm = |args: &[&str]| -> Result<String> {
        let o = Command::new(crate::testenv::tool_path("helm")?)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&root)
            .output()?;
        if !o.status.success() {
            bail!(
                "helm {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    };
    let _ = helm(&[
        "uninstall",
        "external-secrets",
        "--namespace",
        "external-secrets",
    ]);
    for (kind, ns, name) in [
        ("deployment", "default", "my-app"),
        ("externalsecret", "default", "my-db-secret"),
        ("secret", "default", "my-db-secret"),
    ] {
        let _ = k.run(
            &[
                "delete",
                kind,
                name,
                "-n",
                ns,
                "--ignore-not-found",
                "--wait=true",
            ],
            None,
        );
    }

    println!(
        "\n==> §1 (two additions: AWS_ENDPOINT_URL, so the SDK talks to moto instead of AWS, and\n    rollout.enabled, so the application's pods follow their Secret)"
    );
    let endpoint = format!(
        "extraEnv[0].name=AWS_ENDPOINT_URL,extraEnv[0].value={moto_url},rollout.enabled=true"
    );
    show(
        &format!(
            "helm install external-secrets deploy/charts/eso-rs --namespace external-secrets --create-namespace --set {endpoint}"
        ),
        &helm(&[
            "install",
            "external-secrets",
            "deploy/charts/eso-rs",
            "--namespace",
            "external-secrets",
            "--create-namespace",
            "--set",
            &endpoint,
        ])?,
    );
    k.run(
        &[
            "rollout",
            "status",
            "deployment/external-secrets-eso-rs",
            "-n",
            "external-secrets",
            "--timeout=180s",
        ],
        None,
    )?;
    show(
        "kubectl get pods -n external-secrets",
        &k.run(&["get", "pods", "-n", "external-secrets"], None)?,
    );

    println!("\n==> §3 aws secretsmanager create-secret --name my-db-secret (moto at {moto_url})");
    match moto::create_secret(&moto_url, "my-db-secret", DB) {
        Ok(_) => {}
        Err(e) if e.contains("ResourceExists") => {
            moto::put_value(&moto_url, "my-db-secret", DB).map_err(anyhow::Error::msg)?;
        }
        Err(e) => bail!("creating the AWS secret in moto: {e}"),
    }
    println!("\n==> §4-6 (examples/seed; region set to us-east-1)");
    for f in [
        "aws-secret.yaml",
        "cluster-secret-store.yaml",
        "external-secret.yaml",
    ] {
        let text = std::fs::read_to_string(root.join("examples/seed").join(f))?
            .replace("region: your-region", "region: us-east-1");
        show(
            &format!("kubectl apply -f {f}"),
            &k.run(&["apply", "-f", "-"], Some(&text))?,
        );
    }
    println!("\n==> §7");
    let values = wait_for("the synced Secret", Duration::from_secs(120), || {
        get_secret(&k).filter(|v| {
            v.iter()
                .any(|(key, val)| key == "password" && val == "dbpassword")
        })
    })?;
    show(
        "kubectl get secrets my-db-secret",
        &k.run(&["get", "secrets", "my-db-secret", "-n", "default"], None)?,
    );
    println!("$ bash examples/seed/get-secret.sh");
    for (key, v) in &values {
        println!("{key}: {v}");
    }

    println!("\n==> §8");
    let app = std::fs::read_to_string(root.join("examples/seed/my-app-deployment.yaml"))?;
    show(
        "kubectl apply -f examples/seed/my-app-deployment.yaml",
        &k.run(&["apply", "-f", "-"], Some(&app))?,
    );
    k.run(
        &[
            "rollout",
            "status",
            "deployment/my-app",
            "-n",
            "default",
            "--timeout=120s",
        ],
        None,
    )?;
    let logs = wait_for("the application's log", Duration::from_secs(60), || {
        k.run(&["logs", "deployment/my-app", "-n", "default"], None)
            .ok()
            .filter(|l| l.contains("DB_USERNAME="))
    })?;
    let db: Vec<&str> = logs.lines().filter(|l| l.starts_with("DB_")).collect();
    show("kubectl logs deployment/my-app | grep ^DB_", &db.join("\n"));

    println!("\n==> the application opts in to restarts when its Secrets change");
    show(
        &format!("kubectl annotate deployment my-app {ROLLOUT_ANNOTATION}=true"),
        &k.run(
            &[
                "annotate",
                "deployment",
                "my-app",
                "-n",
                "default",
                &format!("{ROLLOUT_ANNOTATION}=true"),
                "--overwrite",
            ],
            None,
        )?,
    );
    // The operator records the Secrets' data on first sight (that alone rolls nothing); the
    // AWS edit below must come after it.
    wait_for(
        "the operator's rollout record",
        Duration::from_secs(60),
        || {
            k.run(
                &[
                    "get",
                    "deployment",
                    "my-app",
                    "-n",
                    "default",
                    "-o",
                    "jsonpath={.metadata.annotations.external-secrets\\.io/rollout-state}",
                ],
                None,
            )
            .ok()
            .filter(|s| !s.trim().is_empty())
        },
    )?;
    let password_line = |logs: &str| {
        logs.lines()
            .find(|l| l.starts_with("DB_PASSWORD="))
            .unwrap_or_default()
            .to_string()
    };
    show(
        "kubectl logs deployment/my-app | grep ^DB_PASSWORD",
        &password_line(&logs),
    );

    println!(
        "\n==> editing the secret in AWS (new password); the operator sees it within about a minute"
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
        "$ bash examples/seed/get-secret.sh   # {:.0}s after the edit",
        edited.elapsed().as_secs_f64()
    );
    for (key, v) in &values {
        println!("{key}: {v}");
    }
    let new_logs = wait_for(
        "a new application pod with the new password",
        Duration::from_secs(180),
        || {
            k.run(&["logs", "deployment/my-app", "-n", "default"], None)
                .ok()
                .filter(|l| l.contains("DB_PASSWORD=rotated-in-aws"))
        },
    )?;
    println!(
        "\n==> the Deployment rolled: a new pod started with the new value ({:.0}s after the AWS edit)",
        edited.elapsed().as_secs_f64()
    );
    show(
        "kubectl logs deployment/my-app | grep ^DB_PASSWORD",
        &password_line(&new_logs),
    );
    show(
        "kubectl get pods -n default -l app=my-app",
        &k.run(&["get", "pods", "-n", "default", "-l", "app=my-app"], None)?,
    );
    println!(
        "\nEverything keeps running. Try it yourself:\n  eval \"$(cargo xtask testenv env --instance node)\"\n  kubectl get pods -A\n\n\
         Stop everything (and check nothing is left behind) with:\n  cargo xtask demo --node down"
    );
    Ok(())
}
