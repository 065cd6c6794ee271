//! `cargo xtask bench`: operator benchmarks on the local control plane.
//!
//! Measures, with the release binary against kube-apiserver + etcd + moto behind a counting proxy:
//! - time for N new ExternalSecrets over D distinct AWS secrets to become Ready;
//! - AWS calls during that initial sync and during one refresh cycle;
//! - apiserver writes (from its own `apiserver_request_total`) during a no-op refresh cycle;
//! - operator RSS (from /proc) at N and at a larger count.
//!
//! `cargo xtask bench [--es 1000] [--distinct 100] [--big 10000] [--interval 60]`

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proxy::Proxy;

#[path = "../../testsupport/moto.rs"]
mod moto;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Kubectl {
    bin: PathBuf,
    envs: Vec<(String, String)>,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running kubectl")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Sum of apiserver_request_total for mutating verbs on the given resources.
    fn writes(&self, resources: &[&str]) -> Result<u64> {
        let metrics = self.run(&["get", "--raw", "/metrics"], None)?;
        let mut total = 0.0;
        for line in metrics.lines() {
            if !line.starts_with("apiserver_request_total{") {
                continue;
            }
            let mutating = [
                "verb=\"POST\"",
                "verb=\"PUT\"",
                "verb=\"PATCH\"",
                "verb=\"DELETE\"",
                "verb=\"APPLY\"",
            ]
            .iter()
            .any(|v| line.contains(v));
            let res = resources
                .iter()
                .any(|r| line.contains(&format!("resource=\"{r}\"")));
            if mutating && res {
                total += line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
        }
        Ok(total as u64)
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn ready_count(k: &Kubectl, ns: &str) -> usize {
    k.run(
        &["get", "es", "-n", ns, "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"],
        None,
    )
    .map(|s| s.lines().filter(|l| *l == "True").count())
    .unwrap_or(0)
}

fn create_es(
    k: &Kubectl,
    ns: &str,
    from: u64,
    to: u64,
    distinct: u64,
    interval: u64,
    prefix: &str,
) -> Result<()> {
    let mut batch = String::new();
    for i in from..to {
        batch.push_str(&format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{i}, namespace: {ns}}}\n\
             spec:\n  refreshInterval: {interval}s\n  secretStoreRef: {{name: aws}}\n  data:\n  - secretKey: password\n    remoteRef: {{key: {prefix}-{}, property: password}}\n---\n",
            i % distinct
        ));
        if (i + 1 - from).is_multiple_of(500) || i + 1 == to {
            k.run(&["apply", "--server-side", "-f", "-"], Some(&batch))?;
            batch.clear();
        }
    }
    Ok(())
}

/// Run the benchmark and print a table.
pub fn run(args: &[String]) -> Result<()> {
    let n = arg(args, "--es", 1000);
    let distinct = arg(args, "--distinct", 100);
    let big = arg(args, "--big", 10000);
    let interval = arg(args, "--interval", 60);
    let root = crate::project_root();

    println!("==> building eso-operator (release)");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "eso-operator"])
        .current_dir(&root)
        .status()?;
    if !st.success() {
        bail!("release build failed");
    }
    crate::testenv::up()?;
    let envs = crate::testenv::env_vars()?;
    let moto_url = envs
        .iter()
        .find(|(k, _)| k == "ESO_TESTENV_MOTO_URL")
        .map(|(_, v)| v.clone())
        .context("no moto url")?;
    let k = Kubectl {
        bin: crate::testenv::tool_path("kubectl")?,
        envs: envs.clone(),
    };
    k.run(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &root.join("deploy/crds").display().to_string(),
        ],
        None,
    )?;
    for crd in ["externalsecrets", "secretstores", "clustersecretstores"] {
        k.run(
            &[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd}.external-secrets.io"),
                "--timeout=60s",
            ],
            None,
        )?;
    }
    let proxy = Proxy::start(&moto_url)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prefix = format!("bench-{stamp}");
    let ns = format!("bench-{stamp}");
    k.run(&["create", "namespace", &ns], None)?;
    for i in 0..distinct {
        moto::create_secret(
            &moto_url,
            &format!("{prefix}-{i}"),
            &format!("{{\"password\":\"p{i}\"}}"),
        )
        .map_err(anyhow::Error::msg)?;
    }
    k.run(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: {ns}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n"
        )),
    )?;

    // Operator first, then the objects: "1,000 new ExternalSecrets".
    let logs = root.join("target/testenv/logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join("bench-operator.log"))?;
    let mut child = Command::new(root.join("target/release/eso-operator"))
        .args([
            "--namespace",
            &ns,
            "--metrics-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
            "--concurrent",
            "20",
        ])
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_SECRETSMANAGER_ENDPOINT", &proxy.url)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss_kib(pid);
    let calls_before = proxy.total();

    let start = Instant::now();
    create_es(&k, &ns, 0, n, distinct, interval, &prefix)?;
    let created = start.elapsed();
    loop {
        let r = ready_count(&k, &ns);
        if r as u64 >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            bail!("only {r}/{n} Ready after 600 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_ready = start.elapsed();
    let initial_calls = proxy.total() - calls_before;
    let initial_detail = proxy.counts();
    let rss_n = rss_kib(pid);

    // One no-op refresh cycle.
    std::thread::sleep(Duration::from_secs(5));
    let writes_before = k.writes(&["secrets", "externalsecrets"])?;
    let calls_cycle_before = proxy.total();
    std::thread::sleep(Duration::from_secs(interval + interval / 10 + 5));
    let cycle_calls = proxy.total() - calls_cycle_before;
    let cycle_writes = k.writes(&["secrets", "externalsecrets"])? - writes_before;

    // Scale to `big`.
    let mut rss_big = 0;
    let mut big_ready = Duration::ZERO;
    if big > n {
        let t = Instant::now();
        create_es(&k, &ns, n, big, distinct, interval.max(3600), &prefix)?;
        loop {
            if ready_count(&k, &ns) as u64 >= big || t.elapsed() > Duration::from_secs(1200) {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        big_ready = t.elapsed();
        std::thread::sleep(Duration::from_secs(5));
        rss_big = rss_kib(pid);
    }
    let _ = child.kill();
    let _ = child.wait();

    let report = format!(
        "| measure | value | target |\n|---|---|---|\n\
         | {n} new ExternalSecrets over {distinct} AWS secrets → all Ready | {:.1} s (objects applied in {:.1} s) | < 30 s |\n\
         | AWS calls during that initial sync | {initial_calls} ({initial_detail:?}) | ≤ {distinct} |\n\
         | AWS calls in one refresh cycle ({interval}s) of {n} | {cycle_calls} | ≤ {distinct} |\n\
         | apiserver writes (secrets, externalsecrets) in that no-op cycle | {cycle_writes} | 0 |\n\
         | operator RSS idle | {:.1} MiB | |\n\
         | operator RSS with {n} ExternalSecrets | {:.1} MiB | |\n\
         | operator RSS with {big} ExternalSecrets | {:.1} MiB (all Ready after {:.0} s) | < 50 MiB |\n",
        all_ready.as_secs_f64(),
        created.as_secs_f64(),
        rss_idle as f64 / 1024.0,
        rss_n as f64 / 1024.0,
        rss_big as f64 / 1024.0,
        big_ready.as_secs_f64(),
    );
    println!("\n{report}");
    let out = root.join("target/bench-report.md");
    std::fs::write(&out, &report)?;
    println!("(also written to {})", out.display());
    let _ = k.run(&["delete", "namespace", &ns, "--wait=false"], None);
    Ok(())
}
