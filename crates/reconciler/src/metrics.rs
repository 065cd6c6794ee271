//! Prometheus metrics with ESO's names (no client library: a small registry rendered in the text
//! exposition format). Labels never carry secret values: only object names, namespaces, providers,
//! call names and statuses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

/// How the series of one object (a namespace and a name) are kept: one `f64` per slot, a slot
/// being a family plus, for condition gauges, the condition and status. Label strings are only
/// built when the registry is rendered.
#[derive(Default)]
struct ObjectSeries {
    /// Bit `i` set: slot `i` has a value.
    present: u32,
    values: Box<[f64]>,
}

/// What the labels of a slot's series are, besides the object's `name` and `namespace`.
#[derive(Clone, PartialEq, Eq)]
enum SlotShape {
    /// `{name, namespace}` in that order (as [`es_labels`] builds them).
    Plain,
    /// `{condition, name, namespace, status}` (as [`Metrics::set_condition`] builds them).
    Condition { condition: Box<str>, status: bool },
}

#[derive(Clone)]
struct Slot {
    family: &'static str,
    shape: SlotShape,
}

/// At most this many slots (the ExternalSecret families and their conditions need a handful);
/// further shapes are stored like any other series.
const MAX_SLOTS: usize = 32;

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    /// Series of any other label shape.
    values: BTreeMap<Labels, f64>,
}

#[derive(Default)]
struct Registry {
    families: BTreeMap<&'static str, Family>,
    slots: Vec<Slot>,
    /// Per-object series: namespace → name → values by slot. The namespace string is stored
    /// once for all its objects.
    objects: BTreeMap<Box<str>, BTreeMap<Box<str>, ObjectSeries>>,
}

/// The metrics registry shared by the controllers and the HTTP endpoint.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Registry>,
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
        "eso_events_dropped_total" => (
            "Events dropped because the Event queue was full (Normal at once, Warnings after 30 s)",
            "counter",
        ),
        "eso_workload_rollout_tracked" => (
            "Workloads opted in to rollouts on Secret changes, watched",
            "gauge",
        ),
        _ => ("", "gauge"),
    }
}

fn label<'a>(labels: &'a [(&'static str, String)], i: usize, key: &str) -> Option<&'a str> {
    labels
        .get(i)
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

impl Slot {
    /// The labels of this slot's series for one object, in the order they are rendered.
    fn labels(&self, namespace: &str, name: &str) -> Labels {
        match &self.shape {
            SlotShape::Plain => vec![
                ("name", name.to_string()),
                ("namespace", namespace.to_string()),
            ],
            SlotShape::Condition { condition, status } => vec![
                ("condition", condition.to_string()),
                ("name", name.to_string()),
                ("namespace", namespace.to_string()),
                ("status", if *status { "True" } else { "False" }.to_string()),
            ],
        }
    }
}

/// Whether a series' labels include every pair of `matching`.
fn matches(labels: &[(&'static str, String)], matching: &[(&'static str, &str)]) -> bool {
    matching
        .iter()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
}

impl Registry {
    fn family(&mut self, name: &'static str) -> &mut Family {
        self.families.entry(name).or_insert_with(|| {
            let (help, kind) = help(name);
            Family {
                help,
                kind,
                values: BTreeMap::new(),
            }
        })
    }

    /// The slot for `family` and `shape`, registered on first use; `None` when all are taken.
    fn slot(&mut self, family: &'static str, shape: SlotShape) -> Option<usize> {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.family == family && s.shape == shape)
        {
            return Some(i);
        }
        if self.slots.len() >= MAX_SLOTS {
            return None;
        }
        self.slots.push(Slot { family, shape });
        Some(self.slots.len() - 1)
    }

    /// The compact form of a series: (slot, namespace, name), when its labels have one of the
    /// per-object shapes.
    fn compact<'a>(
        &mut self,
        family: &'static str,
        labels: &'a [(&'static str, String)],
    ) -> Option<(usize, &'a str, &'a str)> {
        match labels.len() {
            2 => {
                let name = label(labels, 0, "name")?;
                let ns = label(labels, 1, "namespace")?;
                Some((self.slot(family, SlotShape::Plain)?, ns, name))
            }
            4 => {
                let condition = label(labels, 0, "condition")?;
                let name = label(labels, 1, "name")?;
                let ns = label(labels, 2, "namespace")?;
                let status = match label(labels, 3, "status")? {
                    "True" => true,
                    "False" => false,
                    _ => return None,
                };
                let shape = SlotShape::Condition {
                    condition: condition.into(),
                    status,
                };
                Some((self.slot(family, shape)?, ns, name))
            }
            _ => None,
        }
    }

    fn with(&mut self, name: &'static str, labels: Labels, f: impl FnOnce(&mut f64)) {
        self.family(name);
        if let Some((slot, ns, obj)) = self.compact(name, &labels) {
            let names = match self.objects.get_mut(ns) {
                Some(n) => n,
                None => self.objects.entry(ns.into()).or_default(),
            };
            let series = match names.get_mut(obj) {
                Some(s) => s,
                None => names.entry(obj.into()).or_default(),
            };
            if series.values.len() <= slot {
                let mut v = std::mem::take(&mut series.values).into_vec();
                v.resize(self.slots.len().max(slot + 1), 0.0);
                series.values = v.into_boxed_slice();
            }
            if series.present & (1 << slot) == 0 {
                series.present |= 1 << slot;
                series.values[slot] = 0.0;
            }
            f(&mut series.values[slot]);
            return;
        }
        if let Some(fam) = self.families.get_mut(name) {
            f(fam.values.entry(labels).or_insert(0.0));
        }
    }

    /// Every per-object series of `family`: (labels, value), unordered.
    fn object_series(&self, family: &'static str) -> Vec<(Labels, f64)> {
        let slots: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].family == family)
            .collect();
        let mut out = Vec::new();
        if slots.is_empty() {
            return out;
        }
        for (ns, names) in &self.objects {
            for (name, series) in names {
                for &i in &slots {
                    if series.present & (1 << i) != 0 {
                        out.push((self.slots[i].labels(ns, name), series.values[i]));
                    }
                }
            }
        }
        out
    }
}

impl Metrics {
    fn with(&self, name: &'static str, labels: Labels, f: impl FnOnce(&mut f64)) {
        if let Ok(mut reg) = self.inner.lock() {
            reg.with(name, labels, f);
        }
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
        let Ok(mut reg) = self.inner.lock() else {
            return;
        };
        let reg = &mut *reg;
        if let Some(fam) = reg.families.get_mut(name) {
            fam.values.retain(|labels, _| !matches(labels, matching));
        }
        let slots: Vec<usize> = (0..reg.slots.len())
            .filter(|&i| reg.slots[i].family == name)
            .collect();
        if slots.is_empty() {
            return;
        }
        let ns_wanted = matching
            .iter()
            .find(|(k, _)| *k == "namespace")
            .map(|(_, v)| *v);
        let name_wanted = matching.iter().find(|(k, _)| *k == "name").map(|(_, v)| *v);
        let slot_list = &reg.slots;
        reg.objects.retain(|ns, names| {
            if ns_wanted.is_some_and(|w| w != &**ns) {
                return true;
            }
            let visit = |obj: &str, series: &mut ObjectSeries| {
                for &i in &slots {
                    if series.present & (1 << i) != 0
                        && matches(&slot_list[i].labels(ns, obj), matching)
                    {
                        series.present &= !(1 << i);
                    }
                }
            };
            match name_wanted {
                // The common case (one object deleted): no scan over the namespace.
                Some(w) => {
                    if let Some(series) = names.get_mut(w) {
                        visit(w, series);
                        if series.present == 0 {
                            names.remove(w);
                        }
                    }
                }
                None => names.retain(|obj, series| {
                    visit(obj, series);
                    series.present != 0
                }),
            }
            !names.is_empty()
        });
    }

    /// Read one series (tests and benchmarks): the sum of the series of `name` whose labels
    /// include all of `labels`.
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        let Ok(reg) = self.inner.lock() else {
            return 0.0;
        };
        let general: f64 = reg
            .families
            .get(name)
            .map(|f| {
                f.values
                    .iter()
                    .filter(|(l, _)| matches(l, labels))
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0.0);
        let objects: f64 = reg
            .object_series(name)
            .iter()
            .filter(|(l, _)| matches(l, labels))
            .map(|(_, v)| *v)
            .sum();
        general + objects
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

    /// The text exposition format. Series are ordered by their labels (as label/value pairs in
    /// the order they are rendered), whichever way they are stored.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(reg) = self.inner.lock() else {
            return out;
        };
        for (name, fam) in reg.families.iter() {
            if !fam.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", fam.help);
            }
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            let mut series = reg.object_series(name);
            series.extend(fam.values.iter().map(|(l, v)| (l.clone(), *v)));
            series.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, value) in &series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(k);
                        out.push_str("=\"");
                        for c in v.chars() {
                            match c {
                                '\\' => out.push_str("\\\\"),
                                '"' => out.push_str("\\\""),
                                '\n' => out.push_str("\\n"),
                                c => out.push(c),
                            }
                        }
                        out.push('"');
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
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
        for (ns, name) in [
            ("b", "z"),
            ("a", "y"),
            ("a", "x\"a\\b\nc"),
            ("b", "a"),
            ("c", "q"),
        ] {
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
        m.set_condition(
            "externalsecret_status_condition",
            "b",
            "z",
            "Ready",
            "False",
        );
        m.set_condition(
            "externalsecret_status_condition",
            "b",
            "z",
            "Deleted",
            "True",
        );
        m.set_condition("secretstore_status_condition", "a", "aws", "Ready", "True");
        m.set_condition(
            "clustersecretstore_status_condition",
            "",
            "global",
            "Ready",
            "False",
        );
        m.set_condition(
            "clustersecretstore_status_condition",
            "",
            "other",
            "Ready",
            "True",
        );
        m.inc("eso_remote_change_polls_total", vec![]);
        m.inc("eso_remote_change_polls_total", vec![]);
        m.set("eso_provider_cache_bytes", vec![], 4096.0);
        m.inc(
            "eso_status_writes_total",
            vec![("kind", "SecretStore".to_string())],
        );
        m.inc(
            "eso_workload_rollouts_total",
            vec![
                ("namespace", "a".to_string()),
                ("kind", "Deployment".to_string()),
            ],
        );
        // Not the canonical order: a series of its own, rendered in the order given.
        m.inc(
            "externalsecret_sync_calls_total",
            vec![("namespace", "a".to_string()), ("name", "y".to_string())],
        );
        m.api_call("AWS/SecretsManager", "GetSecretValue", CallStatus::Success);
        m.api_call("AWS/SecretsManager", "GetSecretValue", CallStatus::Success);
        m.api_call(
            "AWS/SecretsManager",
            "BatchGetSecretValue",
            CallStatus::Error,
        );
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
        assert_eq!(
            m.get("externalsecret_sync_calls_total", &[("name", "y")]),
            3.0
        );
        assert_eq!(
            m.get("externalsecret_sync_calls_total", &[("namespace", "b")]),
            2.0
        );
        assert_eq!(
            m.get(
                "externalsecret_status_condition",
                &[("namespace", "b"), ("status", "True")]
            ),
            2.0
        );
        assert_eq!(
            m.get("externalsecret_reconcile_duration", &[]),
            4.0 * 1234.5
        );
        m.remove("externalsecret_status_condition", &[("name", "z")]);
        assert_eq!(
            m.get("externalsecret_status_condition", &[("name", "z")]),
            0.0
        );
        assert_eq!(
            m.get("externalsecret_status_condition", &[("name", "a")]),
            1.0
        );
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
