//! Heap bytes the metrics registry holds per ExternalSecret, measured with dhat's counting global
//! allocator: 10,000 ExternalSecrets over 10 namespaces, each with the series one successful
//! reconcile sets (sync calls, reconcile duration, the Ready condition gauge pair).
//!
//! `cargo test -p eso-reconciler --test metrics_memory -- --nocapture` prints the figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use eso_reconciler::Metrics;
use eso_reconciler::metrics::es_labels;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live() -> isize {
    dhat::HeapStats::get().curr_bytes as isize
}

const N: usize = 10_000;

fn reconcile_series(m: &Metrics, ns: &str, name: &str) {
    m.inc("externalsecret_sync_calls_total", es_labels(ns, name));
    m.set(
        "externalsecret_reconcile_duration",
        es_labels(ns, name),
        1_500_000.0,
    );
    m.set_condition("externalsecret_status_condition", ns, name, "Ready", "True");
}

#[test]
fn metrics_bytes_per_external_secret() {
    let names: Vec<(String, String)> = (0..N)
        .map(|i| (format!("team-{}", i % 10), format!("app-secret-{i}")))
        .collect();
    let _profiler = dhat::Profiler::builder().testing().build();
    let m = Metrics::default();
    let before = live();
    for (ns, name) in &names {
        reconcile_series(&m, ns, name);
    }
    // A second reconcile of each: steady state, nothing new is kept.
    for (ns, name) in &names {
        reconcile_series(&m, ns, name);
    }
    let after = live();
    let per_es = (after - before) as f64 / N as f64;
    println!("metrics registry: {per_es:.0} bytes per ExternalSecret ({N} ExternalSecrets)");
    assert!(
        per_es < 250.0,
        "metrics registry holds {per_es:.0} bytes per ExternalSecret"
    );
    // Deleting every ExternalSecret gives (nearly) everything back.
    for (ns, name) in &names {
        for family in eso_reconciler::metrics::PER_EXTERNAL_SECRET {
            m.remove(family, &[("namespace", ns), ("name", name)]);
        }
    }
    let left = live() - before;
    assert!(left < 64 * 1024, "{left} bytes left after removing all");
    assert_eq!(
        m.get("externalsecret_sync_calls_total", &[]),
        0.0,
        "series left"
    );
}
