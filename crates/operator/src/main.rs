//! `eso-operator`: syncs AWS Secrets Manager secrets into Kubernetes Secrets, accepting External
//! Secrets Operator (ESO) YAML unchanged.
//!
//! `eso-operator [flags]` runs the controllers; `eso-operator render -f es.yaml --remote k=file`
//! prints the Secret the operator would write, offline.

mod fence;
mod http;
mod leader;
mod render;
mod wiring;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use tracing::{error, info};

/// Command line (ESO's flag names where they exist).
#[derive(Parser, Debug)]
#[command(
    name = "eso-operator",
    version,
    about = "External Secrets Operator compatible controller for AWS Secrets Manager"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the Secret an ExternalSecret would produce, from local files (no cluster, no AWS).
    Render {
        /// The ExternalSecret YAML (external-secrets.io/v1 or v1beta1).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// A remote secret: `<key>=<file>` (the file holds the secret string or bytes). Repeatable.
        #[arg(long = "remote", value_name = "KEY=FILE")]
        remotes: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "ESO_NAMESPACE", default_value = "")]
    namespace: String,
    /// Number of concurrent ExternalSecret reconciles.
    #[arg(long, default_value_t = 10)]
    concurrent: u16,
    /// Only stores with this `spec.controller` (or none) are handled.
    #[arg(long, default_value = "default")]
    controller_class: String,
    /// Run only while holding a coordination.k8s.io Lease. A bare switch, or `=true`/`=false`
    /// as ESO's (Go) flag takes it, so ESO-style arguments keep working.
    #[arg(
        long,
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    enable_leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "external-secrets-controller")]
    leader_election_id: String,
    /// Namespace of the Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Lease duration.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_election_lease_duration: Duration,
    /// Renew deadline.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_election_renew_deadline: Duration,
    /// Retry period.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_election_retry_period: Duration,
    /// Prometheus metrics address.
    #[arg(long, default_value = ":8080")]
    metrics_addr: String,
    /// Health probes address (`/healthz`, `/readyz`). `--live-addr` is accepted too.
    #[arg(long, alias = "live-addr", default_value = ":8082")]
    health_addr: String,
    /// Kubernetes client QPS (accepted for ESO compatibility).
    #[arg(long, default_value_t = 50.0)]
    client_qps: f32,
    /// Kubernetes client burst (accepted for ESO compatibility).
    #[arg(long, default_value_t = 100)]
    client_burst: u32,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    loglevel: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Store re-validation interval when a store sets none.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    store_requeue_interval: Duration,
    /// Refuse to use stores whose Ready condition is False.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_flood_gate: bool,
    /// Run the ClusterSecretStore controller.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_cluster_store_reconciler: bool,
    /// Run the PushSecret controller (ESO's flag).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_push_secret_reconciler: bool,
    /// Run the ClusterExternalSecret controller (cluster-wide installs only: with `--namespace`
    /// it does not run, as it creates ExternalSecrets in other namespaces).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_cluster_external_secret_reconciler: bool,
    /// Run the ClusterPushSecret controller (ESO's flag; cluster-wide installs only: with
    /// `--namespace` it does not run, as it creates PushSecrets in other namespaces).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_cluster_push_secret_reconciler: bool,
    /// How long provider answers are shared between ExternalSecrets (single-flight cache TTL).
    /// An ExternalSecret never takes an answer older than its own refreshInterval, and the remote
    /// change poll makes an edited secret be read again, so a TTL equal to the poll interval costs
    /// no freshness while each remote secret is read at most about once per TTL, not once per
    /// refresh: entries still in use are refreshed ahead, in the spare room of batched reads that
    /// go out anyway (BatchGetSecretValue / GetParameters), once they are half a TTL old.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    provider_cache_ttl: Duration,
    /// How often each store in use is asked which remote secrets changed (AWS: one ListSecrets
    /// call per 100 secrets, no value read), so an edit in AWS reaches the Secret within this
    /// interval even with a long refreshInterval. 0 disables it (ESO behaviour).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    remote_change_poll_interval: Duration,
    /// Upper bound of the provider value cache, in MiB.
    #[arg(long, default_value_t = 64)]
    provider_cache_mib: u64,
    /// After a (re)start, refreshes that are overdue only by time (spec unchanged, Secret valid)
    /// are spread over min(refreshInterval, this) instead of all running at once.
    #[arg(long, env = "ESO_RESTART_SPREAD", default_value = "5m", value_parser = parse_duration)]
    restart_spread: Duration,
    /// Roll Deployments, StatefulSets and DaemonSets annotated
    /// `external-secrets.io/rollout-on-secret-change: "true"` (or listing Secrets, or carrying
    /// Reloader's annotations) when the data of a managed Secret they use changes. Off by
    /// default; needs get/list/watch/patch on apps deployments, statefulsets and daemonsets.
    #[arg(
        long,
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    enable_workload_rollout: bool,
    /// Rollouts per second allowed in one namespace (token bucket refill).
    #[arg(long, default_value_t = 1.0)]
    rollout_namespace_qps: f64,
    /// Rollouts one namespace may start at once (token bucket size).
    #[arg(long, default_value_t = 10)]
    rollout_namespace_burst: u32,
    /// A workload is looked at this long after the first Secret change that concerns it, so a
    /// burst of changes becomes one rollout.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    rollout_debounce: Duration,
    /// Liveness fails when work is overdue by this long.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    liveness_stall_threshold: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    eso_api::parse_go_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 15s, 5m, 1h)"))
}

fn parse_addr(s: &str) -> Result<SocketAddr> {
    let s = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    s.parse().with_context(|| format!("invalid address {s:?}"))
}

fn init_logging(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},kube=warn,aws=warn,hyper=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// jemalloc (feature `jemalloc`, on by default): with its background thread purging unused
/// pages after jemalloc's decay time (10 s), the RSS goes back down after the initial sync's
/// burst of allocations; glibc's malloc kept most of that peak (see docs/STATUS.md, #13).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// One global allocator: dhat's replaces jemalloc's, so the default features must be off.
#[cfg(all(feature = "dhat-heap", feature = "jemalloc"))]
compile_error!(
    "feature `dhat-heap` replaces jemalloc: build with `--no-default-features --features dhat-heap`"
);

#[cfg(all(feature = "dhat-heap", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

/// Feature `dhat-heap`: profile the heap, and write the profile (`dhat-heap.json`, with the
/// bytes live at that moment as "t-end") once the file named by `ESO_DHAT_DUMP` appears.
#[cfg(feature = "dhat-heap")]
fn start_heap_profile() {
    let profiler = dhat::Profiler::new_heap();
    let trigger = std::env::var("ESO_DHAT_DUMP").unwrap_or_else(|_| "dhat-dump".into());
    std::thread::spawn(move || {
        while !std::path::Path::new(&trigger).exists() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        drop(profiler);
    });
}

/// Turn on jemalloc's background purge thread (a no-op without the `jemalloc` feature).
fn allocator_background_purge() {
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "jemalloc background thread not enabled; unused memory is returned only on allocation");
    }
}

/// jemalloc's statistics in the Prometheus text format (feature `allocator-stats`; empty
/// without it): bytes the program holds (`allocated`), in the pages jemalloc uses for them
/// (`active`), mapped and resident (`resident`), kept mapped for reuse (`retained`), and
/// jemalloc's own bookkeeping (`metadata`).
fn allocator_metrics() -> String {
    #[cfg(feature = "allocator-stats")]
    {
        use std::fmt::Write as _;
        use tikv_jemalloc_ctl::{epoch, stats};
        if epoch::advance().is_err() {
            return String::new();
        }
        let mut out = String::from(
            "# HELP eso_allocator_bytes jemalloc statistics, by kind.\n# TYPE eso_allocator_bytes gauge\n",
        );
        let kinds = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("retained", stats::retained::read()),
            ("metadata", stats::metadata::read()),
        ];
        for (kind, value) in kinds {
            if let Ok(v) = value {
                let _ = writeln!(out, "eso_allocator_bytes{{kind=\"{kind}\"}} {v}");
            }
        }
        out
    }
    #[cfg(not(feature = "allocator-stats"))]
    String::new()
}

fn main() -> Result<()> {
    #[cfg(feature = "dhat-heap")]
    start_heap_profile();
    let cli = Cli::parse();
    if let Some(Command::Render { file, remotes }) = &cli.command {
        // A clear one-line error and a non-zero exit, never a backtrace.
        if let Err(e) = render_command(file, remotes) {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    init_logging(&cli.run.loglevel, &cli.run.log_format);
    allocator_background_purge();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run(cli.run))
}

fn render_command(file: &PathBuf, remotes: &[String]) -> Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut values = Vec::new();
    for r in remotes {
        let Some((key, path)) = r.split_once('=') else {
            bail!("--remote expects <key>=<file>, got {r:?}");
        };
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading remote value for {key:?} from {path}"))?;
        values.push((key.to_string(), bytes));
    }
    let out = render::render(&yaml, &values)?;
    print!("{out}");
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let kube_config = kube::Config::infer()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    // With leader election the controllers write through a fenced client: no write unless the
    // Lease was renewed within the renew deadline (see fence.rs). The Lease itself has a client
    // of its own, on the election thread (see leader.rs).
    let lease_clock = Arc::new(fence::LeaseClock::new(args.leader_election_renew_deadline));
    let controller_client = if args.enable_leader_election {
        kube::client::ClientBuilder::try_from(kube_config.clone())
            .context("building the Kubernetes client")?
            .with_layer(&fence::WriteFenceLayer::new(lease_clock.clone()))
            .build()
    } else {
        kube::Client::try_from(kube_config.clone()).context("building the Kubernetes client")?
    };
    let fault = fault_injection()?;
    let handles = eso_reconciler::Handles::new().with_watchdog(Arc::new(
        eso_reconciler::Watchdog::new(args.liveness_stall_threshold),
    ));

    // Probes and metrics first: a standby replica must answer probes while it waits.
    let leading = Arc::new(std::sync::atomic::AtomicBool::new(
        !args.enable_leader_election,
    ));
    {
        let h = handles.clone();
        let leading = leading.clone();
        let addr = parse_addr(&args.health_addr)?;
        tokio::spawn(async move {
            let handler: http::Handler = Arc::new(move |path| match path {
                "/healthz" | "/livez" => match h.watchdog.healthy() {
                    Ok(()) => (200, "ok\n".into()),
                    Err(e) => (503, format!("{e}\n")),
                },
                "/readyz" => {
                    if !leading.load(Ordering::SeqCst) || h.ready.load(Ordering::SeqCst) {
                        (200, "ok\n".into())
                    } else {
                        (503, "caches not synced\n".into())
                    }
                }
                _ => (404, "not found\n".into()),
            });
            if let Err(e) = http::serve(addr, handler).await {
                error!(error = %e, %addr, "health server failed");
            }
        });
        let metrics = handles.metrics.clone();
        let addr = parse_addr(&args.metrics_addr)?;
        tokio::spawn(async move {
            let handler: http::Handler = Arc::new(move |path| match path {
                "/metrics" => (200, metrics.render() + &allocator_metrics()),
                _ => (404, "not found\n".into()),
            });
            if let Err(e) = http::serve(addr, handler).await {
                error!(error = %e, %addr, "metrics server failed");
            }
        });
    }

    let leader_cfg = leader::LeaderConfig {
        name: args.leader_election_id.clone(),
        namespace: args.leader_election_namespace.clone(),
        identity: format!(
            "{}_{}",
            std::env::var("POD_NAME").unwrap_or_else(|_| "eso-operator".into()),
            std::process::id()
        ),
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
        clock: lease_clock,
        wall: leader::WallClock::system(),
    };
    // The election runs on its own thread, runtime and client, so busy controllers cannot
    // starve the renewal (see leader.rs).
    let mut elector = None;
    if args.enable_leader_election {
        let lease_namespace = args.leader_election_namespace.clone();
        let el = leader::Elector::spawn(leader_cfg, move || {
            let client = kube::Client::try_from(kube_config)
                .map_err(|e| format!("building the Kubernetes client for the Lease: {e}"))?;
            Ok(leader::KubeLeases::new(kube::Api::namespaced(
                client,
                &lease_namespace,
            )))
        })
        .context("starting the leader election thread")?;
        let acquired = el.acquired();
        tokio::select! {
            r = acquired => r?,
            _ = shutdown_signal() => {
                info!("shutting down before becoming leader");
                el.shutdown(LEASE_RELEASE_TIMEOUT).await;
                return Ok(());
            }
        }
        elector = Some(el);
        leading.store(true, Ordering::SeqCst);
    }

    let config = eso_reconciler::Config::default()
        .with_controller_class(args.controller_class.clone())
        .with_namespace((!args.namespace.is_empty()).then(|| args.namespace.clone()))
        .with_concurrency(args.concurrent.max(1))
        .with_flood_gate(args.enable_flood_gate)
        .with_store_requeue_interval(args.store_requeue_interval)
        .with_enable_cluster_stores(args.enable_cluster_store_reconciler)
        .with_remote_change_poll(Some(args.remote_change_poll_interval).filter(|d| !d.is_zero()))
        .with_restart_spread(args.restart_spread)
        .with_rollout(args.enable_workload_rollout.then(|| {
            eso_reconciler::rollout::RolloutConfig::default()
                .with_debounce(args.rollout_debounce)
                .with_namespace_qps(args.rollout_namespace_qps)
                .with_namespace_burst(args.rollout_namespace_burst)
        }))
        .with_instance(std::env::var("POD_NAME").ok());
    let hub = wiring::hub(
        controller_client.clone(),
        &args_cache(&args),
        handles.metrics.clone(),
        fault,
    );
    info!(
        namespace = %args.namespace, concurrent = args.concurrent, class = %args.controller_class,
        client_qps = args.client_qps, client_burst = args.client_burst, "starting controllers"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (push_stop_tx, push_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pushes = args.enable_push_secret_reconciler.then(|| {
        tokio::spawn(eso_reconciler::push_secret::run(
            controller_client.clone(),
            config.clone(),
            hub.clone(),
            handles.clone(),
            async move {
                let _ = push_stop_rx.await;
            },
        ))
    });
    let (ces_stop_tx, ces_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ces_controller =
        if args.enable_cluster_external_secret_reconciler && args.namespace.is_empty() {
            Some(tokio::spawn(eso_reconciler::cluster_external_secret::run(
                controller_client.clone(),
                eso_reconciler::cluster_external_secret::CesConfig::default(),
                async move {
                    let _ = ces_stop_rx.await;
                },
            )))
        } else {
            if args.enable_cluster_external_secret_reconciler {
                info!("--namespace is set: the ClusterExternalSecret controller does not run");
            }
            None
        };
    let (cps_stop_tx, cps_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cps_controller = if args.enable_cluster_push_secret_reconciler && args.namespace.is_empty()
    {
        Some(tokio::spawn(eso_reconciler::cluster_push_secret::run(
            controller_client.clone(),
            eso_reconciler::cluster_push_secret::CpsConfig::default(),
            async move {
                let _ = cps_stop_rx.await;
            },
        )))
    } else {
        if args.enable_cluster_push_secret_reconciler {
            info!("--namespace is set: the ClusterPushSecret controller does not run");
        }
        None
    };
    let controllers = tokio::spawn(eso_reconciler::run(
        controller_client,
        config,
        hub,
        handles.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    let lost = elector.as_ref().map(leader::Elector::lost);
    let lost = async move {
        match lost {
            Some(lost) => lost.await,
            None => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {
            info!("SIGTERM: stopping controllers");
            let _ = stop_tx.send(());
            let _ = push_stop_tx.send(());
            let _ = ces_stop_tx.send(());
            let _ = cps_stop_tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(20), controllers).await;
            if let Some(p) = pushes {
                let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
            }
            if let Some(c) = ces_controller {
                let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
            }
            if let Some(c) = cps_controller {
                let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
            }
            if let Some(el) = elector {
                el.shutdown(LEASE_RELEASE_TIMEOUT).await;
            }
            Ok(())
        }
        e = lost => {
            // Stop at once: never write after losing the Lease.
            error!(error = %e, "leadership lost; exiting");
            std::process::exit(1);
        }
    }
}

/// How long a shutdown waits for the election thread to release the Lease.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Test-only fault injection, read once at startup from `ESO_FAULT_INJECT` (not a flag, not in
/// any CRD, off by default). Used by the end-to-end tests to prove the liveness probe fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Every provider read (so every reconcile that reaches one) blocks forever.
    StuckReconcile,
}

fn fault_injection() -> Result<Option<Fault>> {
    match std::env::var("ESO_FAULT_INJECT").ok().as_deref() {
        None | Some("") => Ok(None),
        Some("stuck-reconcile") => {
            tracing::warn!(
                "ESO_FAULT_INJECT=stuck-reconcile: TEST-ONLY fault injection, every reconcile will hang"
            );
            Ok(Some(Fault::StuckReconcile))
        }
        Some(other) => bail!(
            "unknown ESO_FAULT_INJECT value {other:?} (test-only; the only value is stuck-reconcile; unset it in production)"
        ),
    }
}

struct CacheArgs {
    ttl: Duration,
    max_bytes: u64,
}

fn args_cache(args: &RunArgs) -> CacheArgs {
    CacheArgs {
        ttl: args.provider_cache_ttl,
        max_bytes: args.provider_cache_mib.saturating_mul(1024 * 1024),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod allocator_tests {
    /// With `allocator-stats`, the five kinds are exported and the heap is not empty; without
    /// it, nothing is added to `/metrics`.
    #[test]
    fn allocator_metrics_follow_the_feature() {
        let _held = vec![0u8; 1 << 20];
        let text = super::allocator_metrics();
        if cfg!(feature = "allocator-stats") {
            for kind in ["allocated", "active", "resident", "retained", "metadata"] {
                assert!(
                    text.contains(&format!("eso_allocator_bytes{{kind=\"{kind}\"}} ")),
                    "{text}"
                );
            }
            let allocated: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("eso_allocator_bytes{kind=\"allocated\"} "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(allocated >= 1 << 20, "{text}");
        } else {
            assert!(text.is_empty(), "{text}");
        }
    }
}

#[cfg(test)]
mod cli_tests {
    use super::Cli;
    use clap::Parser;

    /// `--enable-leader-election` alone and ESO's `--enable-leader-election=true` both turn it
    /// on (ESO's chart renders the second; refusing it made every such pod crash-loop).
    #[test]
    fn cluster_external_secret_reconciler_flag_defaults_on_as_in_eso() {
        let ces = |args: &[&str]| {
            let mut all = vec!["eso-operator"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.run.enable_cluster_external_secret_reconciler)
        };
        assert_eq!(ces(&[]).ok(), Some(true));
        assert_eq!(
            ces(&["--enable-cluster-external-secret-reconciler=false"]).ok(),
            Some(false)
        );
        assert_eq!(
            ces(&["--enable-cluster-external-secret-reconciler", "true"]).ok(),
            Some(true)
        );
    }

    #[test]
    fn cluster_push_secret_reconciler_flag_defaults_on_as_in_eso() {
        let cps = |args: &[&str]| {
            let mut all = vec!["eso-operator"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.run.enable_cluster_push_secret_reconciler)
        };
        assert_eq!(cps(&[]).ok(), Some(true));
        assert_eq!(
            cps(&["--enable-cluster-push-secret-reconciler=false"]).ok(),
            Some(false)
        );
    }

    #[test]
    fn leader_election_flag_takes_both_forms() {
        let on = |args: &[&str]| {
            let mut all = vec!["eso-operator"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.run.enable_leader_election)
        };
        assert_eq!(on(&[]).ok(), Some(false));
        assert_eq!(on(&["--enable-leader-election"]).ok(), Some(true));
        assert_eq!(on(&["--enable-leader-election=true"]).ok(), Some(true));
        assert_eq!(on(&["--enable-leader-election=false"]).ok(), Some(false));
        assert!(on(&["--enable-leader-election=maybe"]).is_err());
        // The switch does not swallow the next argument.
        assert_eq!(
            on(&["--enable-leader-election", "--concurrent=3"]).ok(),
            Some(true)
        );
    }
}
