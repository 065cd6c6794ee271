//! `cargo xtask bench`: operator benchmarks on the local control plane.
//!
//! Measures, with the release binary against kube-apiserver + etcd + moto behind a counting proxy:
//! - time for N new ExternalSecrets over D distinct AWS secrets to become Ready;
//! - AWS calls during that initial sync and during one refresh cycle;
//! - apiserver writes (from its own `apiserver_request_total`) during a no-op refresh cycle;
//! - operator RSS (from /proc) at N and at a larger count.
//!
//! `cargo xtask bench [--es 1000] [--distinct 100] [--big 10000] [--interval 60]`
//!
//! Two more scenarios (on an already running testenv; see their functions):
//! - `cargo xtask bench fairness [--failing 5000] [--missing 500]`: a new ExternalSecret's time
//!   to Ready while thousands of others fail and retry;
//! - `cargo xtask bench soak [--es 10000] [--distinct 100] [--minutes 10] [--interval 60]`: RSS,
//!   errors and AWS calls per minute over a long run.
//!
//! Both pass arguments after `--` to the operator (`-- --provider-cache-ttl 60s`).
//!
//! Each writes its table to `target/bench-report.md` (and `target/bench-report-<scenario>.md`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::kubectl::Kubectl;

use crate::proxy::Proxy;

use eso_testsupport::moto;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl Kubectl {
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

/// Run the benchmark selected by the first argument (`fairness`, `soak`, or none: the default
/// sync/refresh/RSS benchmark) and print a table.
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("fairness") => return fairness(&args[1..]),
        Some("soak") => return soak(&args[1..]),
        _ => {}
    }
    let n = arg(args, "--es", 1000);
    let distinct = arg(args, "--distinct", 100);
    let big = arg(args, "--big", 10000);
    let interval = arg(args, "--interval", 60);
    let Setup {
        root,
        k,
        proxy,
        prefix,
        ns,
    } = Setup::new("bench", distinct, true)?;

    // Operator first, then the objects: "1,000 new ExternalSecrets".
    let mut child = start_operator(&root, &k, &ns, &proxy, "bench-operator", &[])?;
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

/// What every scenario needs: the release binary, testenv, the CRDs, a counting proxy in front of
/// moto, a fresh namespace with `distinct` AWS secrets (`<prefix>-<i>`, `{"password":"p<i>"}`)
/// and a SecretStore `aws` reading them through the proxy. `fairness` and `soak` use a running
/// testenv and never start one (it may be shared).
struct Setup {
    root: PathBuf,
    k: Kubectl,
    proxy: Proxy,
    prefix: String,
    ns: String,
}

impl Setup {
    fn new(tag: &str, distinct: u64, start_testenv: bool) -> Result<Self> {
        let root = crate::project_root();
        println!("==> building eso-operator (release)");
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "eso-operator"])
            .current_dir(&root)
            .status()?;
        if !st.success() {
            bail!("release build failed");
        }
        if start_testenv {
            crate::testenv::up()?;
        }
        let envs = crate::testenv::env_vars()
            .context("testenv is not running: start it with `cargo xtask testenv up`")?;
        let moto_url = envs
            .iter()
            .find(|(k, _)| k == "ESO_TESTENV_MOTO_URL")
            .map(|(_, v)| v.clone())
            .context("no moto url")?;
        let k = Kubectl {
            bin: crate::testenv::tool_path("kubectl")?,
            envs,
        };
        k.install_crds(&root)?;
        let proxy = Proxy::start(&moto_url)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let prefix = format!("{tag}-{stamp}");
        let ns = prefix.clone();
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
        Ok(Self {
            root,
            k,
            proxy,
            prefix,
            ns,
        })
    }

    fn write_report(&self, name: &str, report: &str) -> Result<()> {
        println!("\n{report}");
        for file in [
            "bench-report.md".to_string(),
            format!("bench-report-{name}.md"),
        ] {
            let out = self.root.join("target").join(file);
            std::fs::write(&out, report)?;
            println!("(also written to {})", out.display());
        }
        let _ = self
            .k
            .run(&["delete", "namespace", &self.ns, "--wait=false"], None);
        Ok(())
    }
}

/// Arguments after `--`: passed to the operator (e.g. `-- --provider-cache-ttl 60s`).
fn operator_args(args: &[String]) -> &[String] {
    args.iter()
        .position(|a| a == "--")
        .and_then(|i| args.get(i + 1..))
        .unwrap_or(&[])
}

/// The release operator scoped to `ns`, AWS through `proxy`, logging to
/// target/testenv/logs/<log_name>.log, with `extra` arguments.
fn start_operator(
    root: &std::path::Path,
    k: &Kubectl,
    ns: &str,
    proxy: &Proxy,
    log_name: &str,
    extra: &[String],
) -> Result<std::process::Child> {
    let logs = root.join("target/testenv/logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("{log_name}.log")))?;
    let child = Command::new(root.join("target/release/eso-operator"))
        .args([
            "--namespace",
            ns,
            "--metrics-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
            "--concurrent",
            "20",
        ])
        .args(extra)
        .envs(k.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_SECRETSMANAGER_ENDPOINT", &proxy.url)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    Ok(child)
}

/// Ready condition status of every ExternalSecret in `ns` whose name starts with `name_prefix`:
/// (True, False, no condition yet).
fn ready_states(k: &Kubectl, ns: &str, name_prefix: &str) -> (usize, usize, usize) {
    let out = k
        .run(
            &["get", "es", "-n", ns, "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"],
            None,
        )
        .unwrap_or_default();
    let (mut t, mut f, mut none) = (0, 0, 0);
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), status) = (parts.next(), parts.next()) else {
            continue;
        };
        if !name.starts_with(name_prefix) {
            continue;
        }
        match status {
            Some("True") => t += 1,
            Some("False") => f += 1,
            _ => none += 1,
        }
    }
    (t, f, none)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn diff(
    now: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    now.iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `cargo xtask bench fairness [--failing 5000] [--missing 500]`: `--failing` ExternalSecrets
/// whose remote keys (`--missing` distinct ones) do not exist in AWS, all attempted and retrying
/// with backoff; then one new healthy ExternalSecret: time to its Ready=True, RSS before/after.
///
/// All objects live in one namespace (the operator runs namespace-scoped, because testenv is
/// shared and a cluster-wide operator would reconcile other people's objects). One namespace is
/// the stricter case: the failing and the new ExternalSecret share one work queue, one store and
/// one AWS client.
fn fairness(args: &[String]) -> Result<()> {
    let failing = arg(args, "--failing", 5000);
    let missing = arg(args, "--missing", 500).max(1);
    let s = Setup::new("fairness", 1, false)?;
    let mut child = start_operator(
        &s.root,
        &s.k,
        &s.ns,
        &s.proxy,
        "bench-fairness-operator",
        operator_args(args),
    )?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss_kib(pid);
    let calls0 = s.proxy.counts();

    let t0 = Instant::now();
    let mut batch = String::new();
    for i in 0..failing {
        batch.push_str(&format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: bad-{i}, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  data:\n  - secretKey: password\n    remoteRef: {{key: {prefix}-missing-{}, property: password}}\n---\n",
            i % missing,
            ns = s.ns,
            prefix = s.prefix,
        ));
        if (i + 1).is_multiple_of(500) || i + 1 == failing {
            s.k.run(&["apply", "--server-side", "-f", "-"], Some(&batch))?;
            batch.clear();
        }
    }
    let applied = t0.elapsed();
    // Every failing ExternalSecret attempted at least once (Ready=False).
    loop {
        let (_, f, _) = ready_states(&s.k, &s.ns, "bad-");
        if f as u64 >= failing {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1200) {
            let _ = child.kill();
            bail!("only {f}/{failing} failing ExternalSecrets attempted after 1200 s");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let all_failed = t0.elapsed();
    // Let the first retries (1 s, 2 s, 4 s, 8 s backoff) pile up.
    std::thread::sleep(Duration::from_secs(10));
    let rss_failing = rss_kib(pid);
    let calls_failing = diff(&s.proxy.counts(), &calls0);
    let calls1 = s.proxy.counts();

    // The new, healthy ExternalSecret.
    let t1 = Instant::now();
    s.k.run(
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: good-new, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  data:\n  - secretKey: password\n    remoteRef: {{key: {prefix}-0, property: password}}\n",
            ns = s.ns,
            prefix = s.prefix,
        )),
    )?;
    let new_ready = loop {
        let st =
            s.k.run(
                &[
                    "get",
                    "es",
                    "good-new",
                    "-n",
                    &s.ns,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            )
            .unwrap_or_default();
        if st.trim() == "True" {
            break t1.elapsed();
        }
        if t1.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            bail!("the new ExternalSecret was not Ready after 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let calls_new = diff(&s.proxy.counts(), &calls1);
    std::thread::sleep(Duration::from_secs(5));
    let rss_after = rss_kib(pid);
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();

    let report = format!(
        "| fairness measure | value | target |\n|---|---|---|\n\
         | {failing} ExternalSecrets over {missing} missing AWS keys applied | {:.1} s | |\n\
         | → all attempted (Ready=False) | {:.1} s after the first apply | |\n\
         | AWS calls until then (+10 s of retries) | {calls_failing:?} | |\n\
         | one new healthy ExternalSecret (same namespace, queue, store) → Ready=True | **{:.2} s** | a few seconds |\n\
         | AWS calls meanwhile | {calls_new:?} | |\n\
         | operator RSS idle / with {failing} failing / after the new one | {:.1} / {:.1} / {:.1} MiB | |\n\
         | operator still running | {alive} | true |\n\
         | operator arguments beyond the defaults | {:?} | |\n",
        applied.as_secs_f64(),
        all_failed.as_secs_f64(),
        new_ready.as_secs_f64(),
        mib(rss_idle),
        mib(rss_failing),
        mib(rss_after),
        operator_args(args),
    );
    s.write_report("fairness", &report)
}

/// `cargo xtask bench soak [--es 10000] [--distinct 100] [--minutes 10] [--interval 60]`:
/// `--es` ExternalSecrets at a `--interval` refresh for `--minutes` after they are all Ready;
/// every 30 s: operator RSS, ExternalSecrets not Ready, AWS calls by operation; per minute: AWS
/// calls in that window.
fn soak(args: &[String]) -> Result<()> {
    let n = arg(args, "--es", 10000);
    let distinct = arg(args, "--distinct", 100);
    let minutes = arg(args, "--minutes", 10);
    let interval = arg(args, "--interval", 60);
    let s = Setup::new("soak", distinct, false)?;
    let mut child = start_operator(
        &s.root,
        &s.k,
        &s.ns,
        &s.proxy,
        "bench-soak-operator",
        operator_args(args),
    )?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss_kib(pid);

    let t0 = Instant::now();
    create_es(&s.k, &s.ns, 0, n, distinct, interval, &s.prefix)?;
    let applied = t0.elapsed();
    loop {
        let r = ready_count(&s.k, &s.ns);
        if r as u64 >= n {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1200) {
            let _ = child.kill();
            bail!("only {r}/{n} Ready after 1200 s");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let all_ready = t0.elapsed();
    println!(
        "==> {n} Ready after {:.0} s; soaking {minutes} min",
        all_ready.as_secs_f64()
    );

    let mut rows = String::new();
    let mut rss_samples = Vec::new();
    let mut max_not_ready = 0u64;
    let mut window_totals = Vec::new();
    let start = Instant::now();
    let mut window_start = s.proxy.counts();
    let mut prev = window_start.clone();
    for step in 1..=minutes * 2 {
        let due = Duration::from_secs(30 * step);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let rss = rss_kib(pid);
        rss_samples.push(rss);
        let not_ready = n.saturating_sub(ready_count(&s.k, &s.ns) as u64);
        max_not_ready = max_not_ready.max(not_ready);
        let now = s.proxy.counts();
        let half = diff(&now, &prev);
        prev = now.clone();
        let window = if step % 2 == 0 {
            let w = diff(&now, &window_start);
            window_totals.push(w.clone());
            window_start = now;
            format!("{w:?}")
        } else {
            String::new()
        };
        let alive = child.try_wait().ok().flatten().is_none();
        let line = format!(
            "| {:>4} s | {:.1} MiB | {not_ready} | {half:?} | {window} |{}\n",
            30 * step,
            mib(rss),
            if alive { "" } else { " operator exited!" }
        );
        print!("{line}");
        let _ = std::io::stdout().flush();
        rows.push_str(&line);
        if !alive {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    let min = rss_samples.iter().copied().min().unwrap_or(0);
    let max = rss_samples.iter().copied().max().unwrap_or(0);
    let first = rss_samples.first().copied().unwrap_or(0);
    let last = rss_samples.last().copied().unwrap_or(0);
    let gets: Vec<u64> = window_totals
        .iter()
        .map(|w| {
            w.iter()
                .filter(|(op, _)| op.contains("GetSecretValue"))
                .map(|(_, n)| *n)
                .sum()
        })
        .collect();
    let report = format!(
        "| soak measure | value | target |\n|---|---|---|\n\
         | {n} ExternalSecrets over {distinct} AWS secrets, refreshInterval {interval}s → all Ready | {:.0} s (applied in {:.0} s) | |\n\
         | soak duration | {minutes} min | |\n\
         | operator arguments beyond the defaults | {:?} | |\n\
         | operator RSS idle / first sample / last sample / min / max | {:.1} / {:.1} / {:.1} / {:.1} / {:.1} MiB | flat |\n\
         | ExternalSecrets not Ready (max over the samples) | {max_not_ready} | 0 |\n\
         | GetSecretValue/BatchGetSecretValue calls per 1-minute window | {gets:?} | {distinct} each |\n\n\
         | t | RSS | not Ready | AWS calls in the last 30 s | AWS calls in the last minute |\n|---|---|---|---|---|\n{rows}",
        all_ready.as_secs_f64(),
        applied.as_secs_f64(),
        operator_args(args),
        mib(rss_idle),
        mib(first),
        mib(last),
        mib(min),
        mib(max),
    );
    s.write_report("soak", &report)
}
