//! `cargo xtask bench`: operator benchmarks on the local control plane.
//!
//! The release binary runs as a host process against kube-apiserver + etcd + moto. AWS calls are
//! counted by a proxy in front of moto; the operator's apiserver requests (every verb: GET, LIST,
//! WATCH, PATCH, APPLY, POST, PUT, ...) by a relay in front of `kubectl proxy` that only the
//! operator uses (see `apicount.rs`), so the bench's own kubectl calls are never counted.
//!
//! `cargo xtask bench [--es 1000] [--distinct 100] [--big 10000] [--interval 60] [--big-interval 60]`
//! measures, at `--es` and at `--big`: time to all Ready, AWS reads (GetSecretValue +
//! BatchGetSecretValue) during the sync against the distinct remote secrets, then over one steady
//! window (a refresh interval + 10 % + 5 s): operator apiserver requests by verb and resource,
//! AWS calls, operator CPU per minute (utime + stime from /proc) and RSS.
//!
//! Three more scenarios (see their functions):
//! - `cargo xtask bench scale [--counts 1000,10000,30000,100000] [--distinct 100]
//!   [--steady-secs 120] [--write-plot]`: RSS, CPU, time to Ready and AWS reads as the
//!   ExternalSecret count grows; `--write-plot` writes `docs/img/rss-vs-objects.svg`;
//! - `cargo xtask bench fairness [--failing 5000] [--missing 500]`: a new ExternalSecret's time
//!   to Ready while thousands of others fail and retry (on an already running testenv);
//! - `cargo xtask bench plot --points 1000:30.5,10000:48.6`: the same plot from figures of
//!   several `scale` runs (count:MiB pairs);
//! - `cargo xtask bench soak [--es 10000] [--distinct 100] [--minutes 10] [--interval 60]`: RSS,
//!   errors and AWS calls per minute over a long run (on an already running testenv).
//!
//! `scale`, `fairness` and `soak` pass arguments after `--` to the operator
//! (`-- --provider-cache-ttl 60s`).
//!
//! `ESO_BENCH_NO_BUILD=1` skips the release build and measures the binary already built;
//! `ESO_BENCH_BIN=/path/to/eso-operator` measures that binary instead (set both for an A/B).
//!
//! Each writes its table to `target/bench-report.md` and `target/bench-report-<scenario>.md`.

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

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `RssAnon:`, `RssFile:`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
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

/// Operator CPU time (user + system) in seconds, from `/proc/<pid>/stat` (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at field 3 (state);
            // utime and stime are fields 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The 1-, 5- and 15-minute load averages (the machine is shared; CPU figures need them).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// AWS value reads (GetSecretValue + BatchGetSecretValue) in a proxy count.
fn reads(c: &std::collections::BTreeMap<String, u64>) -> u64 {
    c.iter()
        .filter(|(op, _)| op.as_str() == "GetSecretValue" || op.as_str() == "BatchGetSecretValue")
        .map(|(_, n)| *n)
        .sum()
}

/// Ready states of the ExternalSecrets of a namespace, kept current by a `kubectl get --watch`
/// running in a thread (restarted when the watch ends). Counting Ready by listing every object
/// each poll loads the apiserver with the bench's own work (a list of 10,000 ExternalSecrets
/// every 2 s is most of its CPU during a sync), and would slow the operator it measures; a
/// watch costs one event per status change.
struct ReadyWatch {
    ready: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, bool>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    child: std::sync::Arc<std::sync::Mutex<Option<std::process::Child>>>,
}

impl ReadyWatch {
    fn start(k: &Kubectl, ns: &str) -> Result<Self> {
        use std::io::BufRead;
        let ready = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let child = std::sync::Arc::new(std::sync::Mutex::new(None::<std::process::Child>));
        let (bin, envs, ns) = (k.bin.clone(), k.envs.clone(), ns.to_string());
        let (r, st, ch) = (ready.clone(), stop.clone(), child.clone());
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let spawned = Command::new(&bin)
                    .args([
                        "get",
                        "es",
                        "-n",
                        &ns,
                        "--watch",
                        "-o",
                        "jsonpath={.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
                    ])
                    .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut c) = spawned else {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                };
                let out = c.stdout.take();
                if let Ok(mut g) = ch.lock() {
                    *g = Some(c);
                }
                if let Some(out) = out {
                    for line in std::io::BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        let mut parts = line.split_whitespace();
                        if let Some(name) = parts.next() {
                            let is_ready = parts.next() == Some("True");
                            if let Ok(mut m) = r.lock() {
                                m.insert(name.to_string(), is_ready);
                            }
                        }
                    }
                }
                if let Ok(mut g) = ch.lock()
                    && let Some(mut c) = g.take()
                {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Ok(Self { ready, stop, child })
    }

    fn count(&self) -> usize {
        self.ready
            .lock()
            .map(|m| m.values().filter(|v| **v).count())
            .unwrap_or(0)
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut g) = self.child.lock()
            && let Some(mut c) = g.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait until `want` ExternalSecrets are Ready (as `watch` sees them), checking every `poll`;
/// the elapsed time since `since`. Fails after `limit`.
fn wait_ready(
    watch: &ReadyWatch,
    want: u64,
    since: Instant,
    poll: Duration,
    limit: Duration,
) -> Result<Duration> {
    loop {
        let r = watch.count() as u64;
        if r >= want {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            bail!("only {r}/{want} Ready after {:.0} s", limit.as_secs_f64());
        }
        std::thread::sleep(poll);
    }
}

/// What one steady window measured.
struct Steady {
    secs: f64,
    api: crate::apicount::Counts,
    aws: std::collections::BTreeMap<String, u64>,
    cpu_per_min: f64,
    rss_kib: u64,
    /// The anonymous part of the RSS (heap, stacks); the rest is the binary's mapped pages.
    anon_kib: u64,
    load: String,
}

impl Steady {
    fn api_total(&self) -> u64 {
        self.api.values().sum()
    }
}

/// Sleep `secs` while the bench makes no apiserver call, then report the operator's apiserver
/// requests, AWS calls, CPU per minute and RSS over that window.
fn steady(pid: u32, api: &crate::apicount::ApiCounter, proxy: &Proxy, secs: u64) -> Steady {
    let (api0, aws0, cpu0, t0) = (api.counts(), proxy.counts(), cpu_secs(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    Steady {
        secs: elapsed,
        api: crate::apicount::diff(&api.counts(), &api0),
        aws: diff(&proxy.counts(), &aws0),
        cpu_per_min: cpu * 60.0 / elapsed,
        rss_kib: rss_kib(pid),
        anon_kib: status_kib(pid, "RssAnon:"),
        load: loadavg(),
    }
}

/// Run the benchmark selected by the first argument (`fairness`, `soak`, `scale`, or none: the
/// default sync/refresh/RSS benchmark) and print a table.
///
/// The default benchmark: `--es` ExternalSecrets, all Ready, one steady window (a refresh
/// interval and a bit) measured; then up to `--big`, all Ready, another steady window. The
/// ExternalSecrets beyond `--es` refresh every `--big-interval` seconds (default: `--interval`).
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("fairness") => return fairness(&args[1..]),
        Some("soak") => return soak(&args[1..]),
        Some("scale") => return scale(&args[1..]),
        Some("plot") => return plot(&args[1..]),
        _ => {}
    }
    let n = arg(args, "--es", 1000);
    let distinct = arg(args, "--distinct", 100);
    let big = arg(args, "--big", 10000);
    let interval = arg(args, "--interval", 60);
    let big_interval = arg(args, "--big-interval", interval);
    let window = interval + interval / 10 + 5;
    let s = Setup::new("bench", distinct, true)?;
    let (k, ns, proxy) = (&s.k, &s.ns, &s.proxy);
    let api = crate::apicount::ApiCounter::start(k, &s.root.join("target/testenv"))?;

    // Operator first, then the objects: "1,000 new ExternalSecrets".
    let watch = ReadyWatch::start(k, ns)?;
    let mut child = start_operator(&s.root, k, ns, proxy, Some(&api), "bench-operator", &[])?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss_kib(pid);
    let aws0 = proxy.counts();
    let api0 = api.counts();

    let start = Instant::now();
    create_es_parallel(k, ns, 0, n, distinct, interval, &s.prefix, 4)?;
    let created = start.elapsed();
    let all_ready = match wait_ready(
        &watch,
        n,
        start,
        Duration::from_millis(500),
        Duration::from_secs(600),
    ) {
        Ok(d) => d,
        Err(e) => {
            let _ = child.kill();
            return Err(e);
        }
    };
    let initial = diff(&proxy.counts(), &aws0);
    let initial_api = crate::apicount::diff(&api.counts(), &api0);
    let rss_n_ready = rss_kib(pid);

    // One no-op refresh cycle: no apiserver call from the bench in it.
    println!(
        "==> {n} Ready after {:.1} s; steady window of {window} s starts in 5 s (operator pid {pid})",
        all_ready.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let w_n = steady(pid, &api, proxy, window);

    // Scale to `big`.
    let mut big_row = None;
    if big > n {
        let (aws1, api1) = (proxy.counts(), api.counts());
        let t = Instant::now();
        create_es_parallel(k, ns, n, big, distinct, big_interval, &s.prefix, 4)?;
        // How long the apiserver took to accept the objects: all Ready cannot come sooner.
        let applied = t.elapsed();
        let ready = wait_ready(
            &watch,
            big,
            t,
            Duration::from_secs(2),
            Duration::from_secs(1800),
        );
        let ready = match ready {
            Ok(d) => d,
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        let sync = diff(&proxy.counts(), &aws1);
        let sync_api = crate::apicount::diff(&api.counts(), &api1);
        println!(
            "==> {big} Ready after {:.1} s; steady window of {window} s starts in 5 s (operator pid {pid})",
            ready.as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(5));
        let w = steady(pid, &api, proxy, window);
        big_row = Some((applied, ready, sync, sync_api, w));
    }
    let _ = child.kill();
    let _ = child.wait();

    let mut report = format!(
        "| measure | value | target |\n|---|---|---|\n\
         | {n} new ExternalSecrets over {distinct} AWS secrets → all Ready | {:.1} s (objects applied in {:.1} s) | < 30 s |\n\
         | AWS reads (GetSecretValue + BatchGetSecretValue) during that initial sync | {} ({initial:?}) | = {distinct} |\n\
         | operator apiserver requests during that initial sync | {} | |\n\
         | steady window of {:.0} s at {n} (refreshInterval {interval}s): AWS calls | {} ({:?}) | ≤ {distinct} per interval |\n\
         | same window: operator apiserver requests, all verbs | **{}** ({}) | 0 |\n\
         | same window: operator CPU per minute | {:.2} s (load average {}) | |\n\
         | operator RSS idle / {n} all Ready / after the steady window | {:.1} / {:.1} / {:.1} MiB | |\n",
        all_ready.as_secs_f64(),
        created.as_secs_f64(),
        reads(&initial),
        crate::apicount::show(&initial_api),
        w_n.secs,
        w_n.aws.values().sum::<u64>(),
        w_n.aws,
        w_n.api_total(),
        crate::apicount::show(&w_n.api),
        w_n.cpu_per_min,
        w_n.load,
        mib(rss_idle),
        mib(rss_n_ready),
        mib(w_n.rss_kib),
    );
    if let Some((applied, ready, sync, sync_api, w)) = big_row {
        report.push_str(&format!(
            "| {n} → {big} ExternalSecrets (the new ones refreshInterval {big_interval}s) → all Ready | {:.1} s (objects applied in {:.1} s, 4 parallel server-side applies) | < 60 s |\n\
             | AWS reads during that sync (includes the first {n} refreshing) | {} ({sync:?}) | = {distinct} per interval |\n\
             | operator apiserver requests during that sync | {} | |\n\
             | steady window of {:.0} s at {big}: AWS calls | {} ({:?}) | ≤ {distinct} per interval |\n\
             | same window: operator apiserver requests, all verbs | **{}** ({}) | 0 |\n\
             | same window: operator CPU per minute | {:.2} s (load average {}) | < 1.5 s |\n\
             | operator RSS with {big} ExternalSecrets after the steady window | **{:.1} MiB** (anonymous {:.1} MiB) | < 40 MiB |\n",
            ready.as_secs_f64(),
            applied.as_secs_f64(),
            reads(&sync),
            crate::apicount::show(&sync_api),
            w.secs,
            w.aws.values().sum::<u64>(),
            w.aws,
            w.api_total(),
            crate::apicount::show(&w.api),
            w.cpu_per_min,
            w.load,
            mib(w.rss_kib),
            mib(w.anon_kib),
        ));
    }
    s.write_report("default", &report)
}

/// `cargo xtask bench scale [--counts 1000,10000,30000,100000] [--distinct 100]
/// [--steady-secs 120] [--interval 60] [--parallel 6] [--write-plot]`: grows one namespace to
/// each count in turn (the objects of the earlier counts stay), created by `--parallel`
/// concurrent server-side applies of 500 objects each; per count: time to all Ready, AWS reads
/// during that sync, then a steady window: RSS, CPU per minute, AWS calls and operator apiserver
/// requests. Writes `target/bench-report-scale.md`; with `--write-plot` also the SVG plot of RSS
/// against the object count, `docs/img/rss-vs-objects.svg`.
fn scale(args: &[String]) -> Result<()> {
    let counts: Vec<u64> = args
        .iter()
        .position(|a| a == "--counts")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10000, 30000, 100000]);
    let distinct = arg(args, "--distinct", 100);
    let steady_secs = arg(args, "--steady-secs", 120);
    let interval = arg(args, "--interval", 60);
    let parallel = arg(args, "--parallel", 6).max(1) as usize;
    let write_plot = args.iter().any(|a| a == "--write-plot");
    let s = Setup::new("scale", distinct, true)?;
    let api = crate::apicount::ApiCounter::start(&s.k, &s.root.join("target/testenv"))?;
    let watch = ReadyWatch::start(&s.k, &s.ns)?;
    let mut child = start_operator(
        &s.root,
        &s.k,
        &s.ns,
        &s.proxy,
        Some(&api),
        "bench-scale-operator",
        operator_args(args),
    )?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let mut points = vec![(0u64, mib(rss_kib(pid)))];
    let mut rows = String::new();
    let mut have = 0u64;
    for &count in &counts {
        if count <= have {
            continue;
        }
        let aws0 = s.proxy.counts();
        let t = Instant::now();
        create_es_parallel(
            &s.k, &s.ns, have, count, distinct, interval, &s.prefix, parallel,
        )?;
        let applied = t.elapsed();
        let poll = Duration::from_millis(500);
        let ready = match wait_ready(&watch, count, t, poll, Duration::from_secs(3600)) {
            Ok(d) => d,
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        let sync = diff(&s.proxy.counts(), &aws0);
        have = count;
        std::thread::sleep(Duration::from_secs(5));
        let w = steady(pid, &api, &s.proxy, steady_secs);
        let per_window = reads(&w.aws) as f64 * interval as f64 / w.secs;
        let line = format!(
            "| {count} | {:.0} s | {:.0} s | {} | {:.1} MiB | {:.2} s | {per_window:.0} | {} ({}) | {} |\n",
            applied.as_secs_f64(),
            ready.as_secs_f64(),
            reads(&sync),
            mib(w.rss_kib),
            w.cpu_per_min,
            w.api_total(),
            crate::apicount::show(&w.api),
            w.load,
        );
        print!("{line}");
        let _ = std::io::stdout().flush();
        rows.push_str(&line);
        points.push((count, mib(w.rss_kib)));
        if child.try_wait().ok().flatten().is_some() {
            bail!("the operator exited at {count} ExternalSecrets");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let report = format!(
        "ExternalSecrets over {distinct} AWS secrets, refreshInterval {interval}s, created by {parallel} \
         parallel server-side applies; steady windows of {steady_secs} s. Operator arguments beyond the defaults: {:?}.\n\n\
         | ExternalSecrets | applied in | all Ready after | AWS reads in that sync | RSS after the steady window | CPU per minute | AWS reads per {interval}s window | operator apiserver requests in the window | load average |\n\
         |---|---|---|---|---|---|---|---|---|\n{rows}",
        operator_args(args),
    );
    if write_plot {
        let svg = rss_plot(&points);
        let out = s.root.join("docs/img/rss-vs-objects.svg");
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, svg)?;
        println!("(plot written to {})", out.display());
    }
    s.write_report("scale", &report)
}

/// `cargo xtask bench plot --points <count>:<MiB>,...`: writes `docs/img/rss-vs-objects.svg`
/// from figures measured by several `scale` runs (a 100,000 step alone takes most of an hour).
fn plot(args: &[String]) -> Result<()> {
    let raw = args
        .iter()
        .position(|a| a == "--points")
        .and_then(|i| args.get(i + 1))
        .context("usage: cargo xtask bench plot --points <count>:<MiB>,...")?;
    let mut points = Vec::new();
    for pair in raw.split(',') {
        let (count, mib) = pair
            .split_once(':')
            .with_context(|| format!("{pair}: not <count>:<MiB>"))?;
        points.push((
            count
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{pair}: count"))?,
            mib.trim()
                .parse::<f64>()
                .with_context(|| format!("{pair}: MiB"))?,
        ));
    }
    points.sort_by_key(|p| p.0);
    let root = crate::project_root();
    let out = root.join("docs/img/rss-vs-objects.svg");
    std::fs::write(&out, rss_plot(&points))?;
    println!("(plot written to {})", out.display());
    Ok(())
}

/// An SVG line plot of operator RSS (MiB) against the ExternalSecret count, hand-written.
fn rss_plot(points: &[(u64, f64)]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let max_x = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max);
    // Round the axes up to a "nice" step.
    let nice = |v: f64| {
        let mag = 10f64.powf(v.log10().floor());
        let m = v / mag;
        let step = if m <= 1.0 {
            1.0
        } else if m <= 2.0 {
            2.0
        } else if m <= 5.0 {
            5.0
        } else {
            10.0
        };
        step * mag
    };
    let (ax, ay) = (nice(max_x), nice(max_y * 1.05));
    let px = |x: f64| left + x / ax * (w - left - right);
    let py = |y: f64| h - bottom - y / ay * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">eso-operator RSS against ExternalSecrets</text>\n",
        w / 2.0
    );
    for i in 0..=5 {
        let (x, y) = (ax * i as f64 / 5.0, ay * i as f64 / 5.0);
        svg.push_str(&format!(
            "<line x1=\"{l}\" y1=\"{yy:.1}\" x2=\"{r}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{tl}\" y=\"{ty:.1}\" text-anchor=\"end\">{y:.0}</text>\n\
             <line x1=\"{xx:.1}\" y1=\"{t}\" x2=\"{xx:.1}\" y2=\"{b}\" stroke=\"#ddd\"/>\n\
             <text x=\"{xx:.1}\" y=\"{tb}\" text-anchor=\"middle\">{x:.0}</text>\n",
            l = left,
            r = w - right,
            yy = py(y),
            tl = left - 6.0,
            ty = py(y) + 4.0,
            xx = px(x),
            t = top,
            b = h - bottom,
            tb = h - bottom + 18.0,
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">ExternalSecrets</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">RSS (MiB)</text>\n",
        (left + w - right) / 2.0,
        h - 12.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
    ));
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x as f64), py(*y)))
        .collect();
    svg.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n",
        path.join(" ")
    ));
    for (x, y) in points {
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{y:.1}</text>\n",
            px(*x as f64),
            py(*y),
            px(*x as f64),
            py(*y) - 8.0,
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Create ExternalSecrets `es-<from>`..`es-<to>` with `parallel` concurrent server-side applies
/// of 500 objects each; each batch is built just before it is sent (never all in memory).
#[allow(clippy::too_many_arguments)]
fn create_es_parallel(
    k: &Kubectl,
    ns: &str,
    from: u64,
    to: u64,
    distinct: u64,
    interval: u64,
    prefix: &str,
    parallel: usize,
) -> Result<()> {
    const BATCH: u64 = 500;
    let next = std::sync::atomic::AtomicU64::new(from);
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                sc.spawn(|| -> Result<()> {
                    loop {
                        let lo = next.fetch_add(BATCH, std::sync::atomic::Ordering::SeqCst);
                        if lo >= to {
                            return Ok(());
                        }
                        create_es(k, ns, lo, (lo + BATCH).min(to), distinct, interval, prefix)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| bail!("apply thread panicked")))
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
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
        // `ESO_BENCH_NO_BUILD=1`: measure the release binary already in target/release.
        if std::env::var_os("ESO_BENCH_NO_BUILD").is_none() {
            println!("==> building eso-operator (release)");
            let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "-p", "eso-operator"])
                .current_dir(&root)
                .status()?;
            if !st.success() {
                bail!("release build failed");
            }
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
    api: Option<&crate::apicount::ApiCounter>,
    log_name: &str,
    extra: &[String],
) -> Result<std::process::Child> {
    let logs = root.join("target/testenv/logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("{log_name}.log")))?;
    // `ESO_BENCH_BIN`: measure another build of the operator (an A/B of two trees).
    let bin = std::env::var_os("ESO_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/eso-operator"));
    let mut cmd = Command::new(bin);
    cmd.args([
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
    .stderr(Stdio::from(log));
    if let Some(api) = api {
        cmd.env("KUBECONFIG", &api.kubeconfig);
    }
    Ok(cmd.spawn()?)
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
        None,
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
        None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_plot_has_one_marker_per_point_and_labelled_axes() {
        let svg = rss_plot(&[(0, 9.5), (1000, 14.0), (10000, 38.2), (30000, 80.0)]);
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains(">38.2</text>"), "{svg}");
        assert!(svg.contains("RSS (MiB)") && svg.contains("ExternalSecrets"));
        // x axis rounded up to 50,000, y to 100 MiB.
        assert!(
            svg.contains(">50000</text>") && svg.contains(">100</text>"),
            "{svg}"
        );
    }

    #[test]
    fn cpu_time_of_this_process_is_read() {
        // Busy until the kernel has accounted a clock tick (the machine may be loaded).
        let spin = Instant::now();
        while cpu_secs(std::process::id()) == 0.0 && spin.elapsed() < Duration::from_secs(30) {}
        assert!(cpu_secs(std::process::id()) > 0.0);
        assert_eq!(cpu_secs(u32::MAX), 0.0);
    }
}
