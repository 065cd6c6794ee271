//! Prometheus metrics with ESO's names (no client library: a small registry rendered in the text
//! exposition format). Labels never carry secret values: only object names, namespaces, providers,
//! call names and statuses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    values: BTreeMap<Vec<(&'static str, String)>, f64>,
}

/// The metrics registry shared by the controllers and the HTTP endpoint.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn help(name: &str) -> (&'static str, &'static str) {
    match name {
        "externalsecret_sync_calls_total" => {
            ("Total number of ExternalSecret reconciles", "counter")
        }
        "externalsecret_sync_calls_error" => (
            "Total number of failed ExternalSecret reconciles",
            "counter",
        ),
        "externalsecret_status_condition" => ("The status condition of an ExternalSecret", "gauge"),
        "externalsecret_reconcile_duration" => (
            "Duration of the last ExternalSecret reconcile in nanoseconds",
            "gauge",
        ),
        "externalsecret_provider_api_calls_count" => {
            ("Number of API calls made to a provider", "counter")
        }
        "secretstore_status_condition" => ("The status condition of a SecretStore", "gauge"),
        "clustersecretstore_status_condition" => {
            ("The status condition of a ClusterSecretStore", "gauge")
        }
        "eso_secret_writes_total" => (
            "Secret create/update/delete calls made by the operator",
            "counter",
        ),
        "eso_status_writes_total" => ("Status writes made by the operator", "counter"),
        "eso_remote_change_polls_total" => ("Remote change poll rounds completed", "counter"),
        "eso_remote_change_listings_total" => (
            "Remote change listings made (one per provider client scope and poll)",
            "counter",
        ),
        "eso_workload_rollouts_total" => (
            "Workload rollouts started because a managed Secret they use changed",
            "counter",
        ),
        "eso_workload_rollout_tracked" => (
            "Workloads opted in to rollouts on Secret changes, watched",
            "gauge",
        ),
        _ => ("", "gauge"),
    }
}

impl Metrics {
    fn with(&self, name: &'static str, labels: Labels, f: impl FnOnce(&mut f64)) {
        let Ok(mut fams) = self.families.lock() else {
            return;
        };
        let fam = fams.entry(name).or_insert_with(|| {
            let (help, kind) = help(name);
            Family {
                help,
                kind,
                values: BTreeMap::new(),
            }
        });
        f(fam.values.entry(labels).or_insert(0.0));
    }

    /// Add to a counter.
    pub fn inc(&self, name: &'static str, labels: Labels) {
        self.with(name, labels, |v| *v += 1.0);
    }

    /// Set a gauge.
    pub fn set(&self, name: &'static str, labels: Labels, value: f64) {
        self.with(name, labels, |v| *v = value);
    }

    /// Remove every series of `name` whose labels include all of `matching`.
    pub fn remove(&self, name: &'static str, matching: &[(&'static str, &str)]) {
        let Ok(mut fams) = self.families.lock() else {
            return;
        };
        if let Some(fam) = fams.get_mut(name) {
            fam.values.retain(|labels, _| {
                !matching
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            });
        }
    }

    /// Read one series (tests and benchmarks).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        let Ok(fams) = self.families.lock() else {
            return 0.0;
        };
        fams.get(name)
            .map(|f| {
                f.values
                    .iter()
                    .filter(|(l, _)| {
                        labels
                            .iter()
                            .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                    })
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// Set a condition gauge the way ESO does: the current status 1, the other statuses 0.
    pub fn set_condition(
        &self,
        name: &'static str,
        namespace: &str,
        object: &str,
        condition: &str,
        status: &str,
    ) {
        for s in ["True", "False"] {
            let v = if s == status { 1.0 } else { 0.0 };
            let mut labels: Labels = Vec::new();
            if !namespace.is_empty() {
                labels.push(("namespace", namespace.to_string()));
            }
            labels.push(("name", object.to_string()));
            labels.push(("condition", condition.to_string()));
            labels.push(("status", s.to_string()));
            labels.sort();
            self.set(name, labels, v);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(fams) = self.families.lock() else {
            return out;
        };
        for (name, fam) in fams.iter() {
            if !fam.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", fam.help);
            }
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            for (labels, value) in &fam.values {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}=\"{}\"",
                            v.replace('\\', "\\\\")
                                .replace('"', "\\\"")
                                .replace('\n', "\\n")
                        )
                    })
                    .collect();
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
                }
            }
        }
        out
    }
}

/// The metric families with one series per ExternalSecret (removed when it is deleted).
pub const PER_EXTERNAL_SECRET: [&str; 4] = [
    "externalsecret_status_condition",
    "externalsecret_sync_calls_total",
    "externalsecret_sync_calls_error",
    "externalsecret_reconcile_duration",
];

/// ESO's provider call counter, fed by the providers through [`eso_provider::ApiCallObserver`]
/// (providers never depend on the reconciler). Labels, sorted: `call`, `provider`, `status`.
impl eso_provider::ApiCallObserver for Metrics {
    fn api_call(
        &self,
        provider: &'static str,
        call: &'static str,
        status: eso_provider::CallStatus,
    ) {
        self.inc(
            "externalsecret_provider_api_calls_count",
            vec![
                ("call", call.to_string()),
                ("provider", provider.to_string()),
                ("status", status.as_str().to_string()),
            ],
        );
    }
}

/// Labels for one ExternalSecret, sorted.
pub fn es_labels(namespace: &str, name: &str) -> Labels {
    vec![
        ("name", name.to_string()),
        ("namespace", namespace.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_api_calls_are_counted_with_esos_labels() {
        use eso_provider::{ApiCallObserver, CallStatus};
        let m = Metrics::default();
        for _ in 0..3 {
            m.api_call("AWS/SecretsManager", "GetSecretValue", CallStatus::Success);
        }
        m.api_call("AWS/SecretsManager", "GetSecretValue", CallStatus::Error);
        let text = m.render();
        assert!(
            text.contains("# TYPE externalsecret_provider_api_calls_count counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "externalsecret_provider_api_calls_count{call=\"GetSecretValue\",provider=\"AWS/SecretsManager\",status=\"success\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "externalsecret_provider_api_calls_count{call=\"GetSecretValue\",provider=\"AWS/SecretsManager\",status=\"error\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_counters_and_condition_gauges() {
        let m = Metrics::default();
        m.inc("externalsecret_sync_calls_total", es_labels("ns", "a"));
        m.inc("externalsecret_sync_calls_total", es_labels("ns", "a"));
        m.set_condition(
            "externalsecret_status_condition",
            "ns",
            "a",
            "Ready",
            "True",
        );
        let text = m.render();
        assert!(
            text.contains("externalsecret_sync_calls_total{name=\"a\",namespace=\"ns\"} 2"),
            "{text}"
        );
        assert!(text.contains("externalsecret_status_condition{condition=\"Ready\",name=\"a\",namespace=\"ns\",status=\"True\"} 1"), "{text}");
        assert!(text.contains("status=\"False\"} 0"), "{text}");
        assert_eq!(
            m.get("externalsecret_sync_calls_total", &[("name", "a")]),
            2.0
        );
        m.remove(
            "externalsecret_sync_calls_total",
            &[("name", "a"), ("namespace", "ns")],
        );
        assert_eq!(
            m.get("externalsecret_sync_calls_total", &[("name", "a")]),
            0.0
        );
    }

    /// A fixed sequence of calls covering every label shape the controllers use (per
    /// ExternalSecret, condition gauges with and without a namespace, unlabelled counters,
    /// provider calls, escaping, removals), and its exposition output byte for byte.
    fn fixed_calls() -> Metrics {
        use eso_provider::{ApiCallObserver, CallStatus};
        let m = Metrics::default();
        for (ns, name) in [("b", "z"), ("a", "y"), ("a", "x\"a\\b\nc"), ("b", "a"), ("c", "q")] {
            m.inc("externalsecret_sync_calls_total", es_labels(ns, name));
            m.set(
                "externalsecret_reconcile_duration",
                es_labels(ns, name),
                1234.5,
            );
            m.set_condition("externalsecret_status_condition", ns, name, "Ready", "True");
        }
        m.inc("externalsecret_sync_calls_total", es_labels("a", "y"));
        m.inc("externalsecret_sync_calls_error", es_labels("b", "z"));
        m.set_condition("externalsecret_status_condition", "b", "z", "Ready", "False");
        m.set_condition("externalsecret_status_condition", "b", "z", "Deleted", "True");
        m.set_condition("secretstore_status_condition", "a", "aws", "Ready", "True");
        m.set_condition("clustersecretstore_status_condition", "", "global", "Ready", "False");
        m.set_condition("clustersecretstore_status_condition", "", "other", "Ready", "True");
        m.inc("eso_remote_change_polls_total", vec![]);
        m.inc("eso_remote_change_polls_total", vec![]);
        m.set("eso_provider_cache_bytes", vec![], 4096.0);
        m.inc("eso_status_writes_total", vec![("kind", "SecretStore".to_string())]);
        m.inc(
            "eso_workload_rollouts_total",
            vec![("namespace", "a".to_string()), ("kind", "Deployment".to_string())],
        );
        // Not the canonical order: a series of its own, rendered in the order given.
        m.inc(
            "externalsecret_sync_calls_total",
            vec![("namespace", "a".to_string()), ("name", "y".to_string())],
        );
        m.api_call("AWS/SecretsManager", "GetSecretValue", CallStatus::Success);
        m.api_call("AWS/SecretsManager", "GetSecretValue", CallStatus::Success);
        m.api_call("AWS/SecretsManager", "BatchGetSecretValue", CallStatus::Error);
        for family in PER_EXTERNAL_SECRET {
            m.remove(family, &[("name", "q"), ("namespace", "c")]);
        }
        m.remove("clustersecretstore_status_condition", &[("name", "other")]);
        m.set("some_unknown_gauge", vec![("x", "1".to_string())], -0.5);
        m
    }

    #[test]
    fn render_output_is_byte_identical_for_a_fixed_sequence() {
        let text = fixed_calls().render();
        assert_eq!(text, EXPECTED_RENDER, "{text}");
    }

    #[test]
    fn get_and_remove_match_label_subsets() {
        let m = fixed_calls();
        assert_eq!(m.get("externalsecret_sync_calls_total", &[("name", "y")]), 3.0);
        assert_eq!(m.get("externalsecret_sync_calls_total", &[("namespace", "b")]), 2.0);
        assert_eq!(
            m.get(
                "externalsecret_status_condition",
                &[("namespace", "b"), ("status", "True")]
            ),
            2.0
        );
        assert_eq!(m.get("externalsecret_reconcile_duration", &[]), 4.0 * 1234.5);
        m.remove("externalsecret_status_condition", &[("name", "z")]);
        assert_eq!(m.get("externalsecret_status_condition", &[("name", "z")]), 0.0);
        assert_eq!(m.get("externalsecret_status_condition", &[("name", "a")]), 1.0);
        m.remove("externalsecret_sync_calls_total", &[("namespace", "a")]);
        assert_eq!(m.get("externalsecret_sync_calls_total", &[]), 2.0);
    }

    /// Recorded from the registry before series were stored compactly.
    const EXPECTED_RENDER: &str = r#"# HELP clustersecretstore_status_condition The status condition of a ClusterSecretStore
# TYPE clustersecretstore_status_condition gauge
clustersecretstore_status_condition{condition="Ready",name="global",status="False"} 1
clustersecretstore_status_condition{condition="Ready",name="global",status="True"} 0
# TYPE eso_provider_cache_bytes gauge
eso_provider_cache_bytes 4096
# HELP eso_remote_change_polls_total Remote change poll rounds completed
# TYPE eso_remote_change_polls_total counter
eso_remote_change_polls_total 2
# HELP eso_status_writes_total Status writes made by the operator
# TYPE eso_status_writes_total counter
eso_status_writes_total{kind="SecretStore"} 1
# HELP eso_workload_rollouts_total Workload rollouts started because a managed Secret they use changed
# TYPE eso_workload_rollouts_total counter
eso_workload_rollouts_total{namespace="a",kind="Deployment"} 1
# HELP externalsecret_provider_api_calls_count Number of API calls made to a provider
# TYPE externalsecret_provider_api_calls_count counter
externalsecret_provider_api_calls_count{call="BatchGetSecretValue",provider="AWS/SecretsManager",status="error"} 1
externalsecret_provider_api_calls_count{call="GetSecretValue",provider="AWS/SecretsManager",status="success"} 2
# HELP externalsecret_reconcile_duration Duration of the last ExternalSecret reconcile in nanoseconds
# TYPE externalsecret_reconcile_duration gauge
externalsecret_reconcile_duration{name="a",namespace="b"} 1234.5
externalsecret_reconcile_duration{name="x\"a\\b\nc",namespace="a"} 1234.5
externalsecret_reconcile_duration{name="y",namespace="a"} 1234.5
externalsecret_reconcile_duration{name="z",namespace="b"} 1234.5
# HELP externalsecret_status_condition The status condition of an ExternalSecret
# TYPE externalsecret_status_condition gauge
externalsecret_status_condition{condition="Deleted",name="z",namespace="b",status="False"} 0
externalsecret_status_condition{condition="Deleted",name="z",namespace="b",status="True"} 1
externalsecret_status_condition{condition="Ready",name="a",namespace="b",status="False"} 0
externalsecret_status_condition{condition="Ready",name="a",namespace="b",status="True"} 1
externalsecret_status_condition{condition="Ready",name="x\"a\\b\nc",namespace="a",status="False"} 0
externalsecret_status_condition{condition="Ready",name="x\"a\\b\nc",namespace="a",status="True"} 1
externalsecret_status_condition{condition="Ready",name="y",namespace="a",status="False"} 0
externalsecret_status_condition{condition="Ready",name="y",namespace="a",status="True"} 1
externalsecret_status_condition{condition="Ready",name="z",namespace="b",status="False"} 1
externalsecret_status_condition{condition="Ready",name="z",namespace="b",status="True"} 0
# HELP externalsecret_sync_calls_error Total number of failed ExternalSecret reconciles
# TYPE externalsecret_sync_calls_error counter
externalsecret_sync_calls_error{name="z",namespace="b"} 1
# HELP externalsecret_sync_calls_total Total number of ExternalSecret reconciles
# TYPE externalsecret_sync_calls_total counter
externalsecret_sync_calls_total{name="a",namespace="b"} 1
externalsecret_sync_calls_total{name="x\"a\\b\nc",namespace="a"} 1
externalsecret_sync_calls_total{name="y",namespace="a"} 2
externalsecret_sync_calls_total{name="z",namespace="b"} 1
externalsecret_sync_calls_total{namespace="a",name="y"} 1
# HELP secretstore_status_condition The status condition of a SecretStore
# TYPE secretstore_status_condition gauge
secretstore_status_condition{condition="Ready",name="aws",namespace="a",status="False"} 0
secretstore_status_condition{condition="Ready",name="aws",namespace="a",status="True"} 1
# TYPE some_unknown_gauge gauge
some_unknown_gauge{x="1"} -0.5
"#;
}
