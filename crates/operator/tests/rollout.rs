//! Opt-in rollout of the workloads whose managed Secrets changed (issue #17), end to end: the
//! real `eso-operator` binary with `--enable-workload-rollout`, the real control plane and moto.
//! Without a node, Deployments, StatefulSets and DaemonSets are plain API objects: a rollout is
//! observed as the pod-template annotation patch (its value changes once per rollout; the
//! operator's counter counts them: a Deployment's `metadata.generation` also counts metadata
//! writes, so it is not used),
//! template changes), the Event and the metric. The node suite (tests/node.rs) shows new pods.
//! Edits in AWS reach the Secrets through the remote change poll (2 s here), never by waiting
//! on a refresh interval.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, testenv};

use std::time::{Duration, Instant};

use cluster::{apply, es_ready, eventually, get, helm, namespace, root, secret_value};
use operator::{Operator, aws_store_and_creds, http_get, moto_url};

const AUTO: &str = "external-secrets.io/rollout-on-secret-change";
const LIST: &str = "external-secrets.io/rollout-secrets";
const STATE: &str = "external-secrets.io/rollout-state";
const DIGEST: &str = "external-secrets.io/secrets-digest";

fn es(ns: &str, name: &str, remote: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  target: {{name: {name}}}\n\
         \x20 data:\n  - secretKey: value\n    remoteRef: {{key: {remote}}}\n"
    )
}

/// A pod spec whose container uses `env_secret` through `secretKeyRef` (and more, in `extra`).
fn pod(env_secret: &str, extra_container: &str, volumes: &str) -> String {
    format!(
        "    metadata: {{labels: {{app: x}}}}\n    spec:\n      containers:\n      - name: c\n        image: localhost/none:1\n\
         \x20       env:\n        - name: VALUE\n          valueFrom: {{secretKeyRef: {{name: {env_secret}, key: value}}}}\n{extra_container}{volumes}"
    )
}

fn workload(kind: &str, ns: &str, name: &str, annotations: &[(&str, &str)], pod: &str) -> String {
    let ann: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    let extra = if kind == "StatefulSet" {
        "  serviceName: x\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{{}}}\n\
         spec:\n{extra}  selector: {{matchLabels: {{app: x}}}}\n  template:\n{pod}",
        ann.join(", ")
    )
}

fn jsonpath(env: &testenv::TestEnv, kind: &str, ns: &str, name: &str, path: &str) -> String {
    get(
        env,
        &[
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={path}"),
        ],
    )
}

fn annotation(path_prefix: &str, key: &str) -> String {
    format!("{{{path_prefix}.annotations.{}}}", key.replace('.', "\\."))
}

fn state(env: &testenv::TestEnv, kind: &str, ns: &str, name: &str) -> String {
    jsonpath(env, kind, ns, name, &annotation(".metadata", STATE))
}

fn digest(env: &testenv::TestEnv, kind: &str, ns: &str, name: &str) -> String {
    jsonpath(
        env,
        kind,
        ns,
        name,
        &annotation(".spec.template.metadata", DIGEST),
    )
}

fn total(op: &Operator) -> f64 {
    metric(op, "")
}

/// The notes of the rollout Events on a workload.
fn rollout_events(env: &testenv::TestEnv, kind: &str, ns: &str, name: &str) -> Vec<String> {
    let out = get(
        env,
        &[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &format!("involvedObject.kind={kind},involvedObject.name={name},reason=SecretChanged"),
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ],
    );
    out.lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn metric(op: &Operator, needle: &str) -> f64 {
    let body = http_get(&op.metrics_addr, "/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("eso_workload_rollouts_total") && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_ready(env: &testenv::TestEnv, ns: &str, name: &str, op: &Operator) {
    eventually(
        Duration::from_secs(60),
        &format!("{ns}/{name} Ready\n{}", op.log()),
        || es_ready(env, ns, name).starts_with("True/").then_some(()),
    );
}

fn wait_value(env: &testenv::TestEnv, ns: &str, name: &str, want: &str, op: &Operator) {
    eventually(
        Duration::from_secs(60),
        &format!("{ns}/{name} = {want}\n{}", op.log()),
        || (secret_value(env, ns, name, "value").as_deref() == Some(want)).then_some(()),
    );
}

/// The chart's ServiceAccount and (Cluster)Role with `rollout.enabled`, applied; a kubeconfig
/// that authenticates as that ServiceAccount. Without the value, the chart grants nothing on
/// workloads and passes no rollout flag.
fn chart_identity(env: &testenv::TestEnv) -> std::path::PathBuf {
    let chart = root().join("deploy/charts/eso-rs");
    let chart = chart.to_str().unwrap();
    let release_ns = namespace(env, "ro-rel");
    let release = testenv::unique_name("ro");
    let render = |only: &str, enabled: bool| {
        let o = helm(
            env,
            &[
                "template",
                &release,
                chart,
                "-n",
                &release_ns,
                "--set",
                "installCRDs=false",
                "--set",
                &format!("rollout.enabled={enabled}"),
                "--show-only",
                only,
            ],
        );
        assert!(o.status.success(), "helm template: {}", cluster::out(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let off = render("templates/rbac.yaml", false);
    assert!(!off.contains("deployments"), "{off}");
    assert!(!render("templates/deployment.yaml", false).contains("rollout"));
    let on = render("templates/rbac.yaml", true);
    assert!(
        on.contains(r#"resources: ["deployments", "statefulsets", "daemonsets"]"#)
            && on.contains(r#"verbs: ["get", "list", "watch", "patch"]"#),
        "{on}"
    );
    let dep = render("templates/deployment.yaml", true);
    assert!(dep.contains("- --enable-workload-rollout"), "{dep}");
    let objects = format!(
        "{}\n---\n{on}",
        render("templates/serviceaccount.yaml", true)
    );
    let o = env.kubectl_stdin(&["apply", "-n", &release_ns, "-f", "-"], &objects);
    assert!(o.status.success(), "apply RBAC: {}", cluster::out(&o));
    let sa = get(
        env,
        &[
            "get",
            "sa",
            "-n",
            &release_ns,
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    let who = format!("system:serviceaccount:{release_ns}:{sa}");
    eventually(
        Duration::from_secs(30),
        "the ClusterRole is in effect",
        || {
            let o = env.kubectl(&[
                "auth",
                "can-i",
                "patch",
                "deployments.apps",
                "--as",
                &who,
                "-A",
            ]);
            (String::from_utf8_lossy(&o.stdout).trim() == "yes").then_some(())
        },
    );
    cluster::service_account_kubeconfig(env, &release_ns, &sa)
}

/// The whole behaviour over time, with the operator running under the chart's own RBAC:
/// first sight records and rolls nothing; a no-op refresh, a label or annotation change of a
/// managed Secret, a change of a Secret the workload does not reference, of an unmanaged Secret,
/// and of any Secret for a workload without the annotation roll nothing; a data change in AWS
/// rolls exactly the workloads that track that Secret, once each (Deployment, StatefulSet,
/// DaemonSet; ours and Reloader's annotations), with an Event and the counter; an operator
/// restart rolls nothing; a reverted template (`kubectl rollout undo`) is not rolled forward
/// again; two Secrets changing together roll a workload that uses both once.
#[test]
fn opted_in_workloads_roll_once_when_their_managed_secrets_change() {
    let Some(env) = cluster::env() else { return };
    let kubeconfig = chart_identity(env);
    let ns = namespace(env, "ro");
    let url = moto_url(env);
    let prefix = testenv::unique_name("ro");
    let (db_key, other_key) = (format!("{prefix}-db"), format!("{prefix}-other"));
    moto::create_secret(&url, &db_key, "db-v1").unwrap();
    moto::create_secret(&url, &other_key, "other-v1").unwrap();
    apply(env, &aws_store_and_creds(&ns));
    apply(env, &es(&ns, "db", &db_key));
    apply(env, &es(&ns, "other", &other_key));
    let o = env.kubectl(&[
        "create",
        "secret",
        "generic",
        "plain",
        "-n",
        &ns,
        "--from-literal=value=unmanaged-v1",
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));

    let env_from = |s: &str| format!("        envFrom:\n        - secretRef: {{name: {s}}}\n");
    let secret_vol =
        |s: &str| format!("      volumes:\n      - name: v\n        secret: {{secretName: {s}}}\n");
    let projected = |s: &str| {
        format!(
            "      volumes:\n      - name: v\n        projected: {{sources: [{{secret: {{name: {s}}}}}]}}\n"
        )
    };
    // (kind, name, annotations, pod, rolls when db changes, rolls when other changes)
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
        String,
        bool,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "Deployment",
            "app",
            vec![(AUTO, "true")],
            pod("db", &env_from("plain"), ""),
            true,
            false,
        ),
        (
            "Deployment",
            "both",
            vec![(AUTO, "true")],
            pod("db", &env_from("other"), ""),
            true,
            true,
        ),
        (
            "Deployment",
            "quiet",
            vec![],
            pod("db", &env_from("other"), ""),
            false,
            false,
        ),
        (
            "Deployment",
            "listed",
            vec![(LIST, "other")],
            pod("db", "", ""),
            false,
            true,
        ),
        (
            "Deployment",
            "plain-user",
            vec![(AUTO, "true")],
            pod("plain", "", ""),
            false,
            false,
        ),
        (
            "Deployment",
            "reloader-auto",
            vec![("reloader.stakater.com/auto", "true")],
            pod("plain", "", &secret_vol("db")),
            true,
            false,
        ),
        (
            "Deployment",
            "reloader-named",
            vec![("secret.reloader.stakater.com/reload", "other")],
            pod("db", "", ""),
            false,
            true,
        ),
        (
            "Deployment",
            "reloader-off",
            vec![
                ("reloader.stakater.com/auto", "false"),
                ("secret.reloader.stakater.com/reload", "db,other"),
            ],
            pod("db", "", ""),
            false,
            false,
        ),
        (
            "StatefulSet",
            "sts",
            vec![(AUTO, "true")],
            pod("plain", "", &secret_vol("db")),
            true,
            false,
        ),
        (
            "DaemonSet",
            "ds",
            vec![(AUTO, "true")],
            pod("plain", "", &projected("db")),
            true,
            false,
        ),
    ];
    for (kind, name, ann, pod, _, _) in &cases {
        apply(env, &workload(kind, &ns, name, ann, pod));
    }
    let ann_of = |name: &str| {
        cases
            .iter()
            .find(|c| c.1 == name)
            .map(|c| !c.2.is_empty() && c.1 != "reloader-off")
            .unwrap()
    };

    let flags = [
        "--enable-workload-rollout",
        "--rollout-debounce",
        "3s",
        "--remote-change-poll-interval",
        "2s",
    ];
    let kc = kubeconfig.to_str().unwrap().to_string();
    let start = |log: &str| {
        Operator::start_with_env(env, &ns, log, None, &flags, &[("KUBECONFIG", kc.as_str())])
    };
    let mut op = start(&ns);
    wait_ready(env, &ns, "db", &op);
    wait_ready(env, &ns, "other", &op);

    // First sight: every opted-in workload gets its record, none is rolled.
    for (kind, name, _, _, _, _) in &cases {
        if ann_of(name) {
            eventually(
                Duration::from_secs(30),
                &format!("{kind}/{name} recorded\n{}", op.log()),
                || (!state(env, kind, &ns, name).is_empty() || *name == "plain-user").then_some(()),
            );
        }
    }
    let want_state = |name: &str| -> Vec<&str> {
        match name {
            "app" | "reloader-auto" | "sts" | "ds" => vec!["db"],
            "both" => vec!["db", "other"],
            "listed" | "reloader-named" => vec!["other"],
            _ => vec![],
        }
    };
    for (kind, name, _, _, _, _) in &cases {
        let s = state(env, kind, &ns, name);
        let names: Vec<&str> = s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(names, want_state(name), "{kind}/{name} record {s:?}");
        assert!(
            !s.contains("db-v1") && !s.contains("other-v1"),
            "values in the record"
        );
        assert_eq!(
            digest(env, kind, &ns, name),
            "",
            "{kind}/{name} rolled at first sight"
        );
    }
    assert_eq!(total(&op), 0.0);

    // Nothing that is not a data change of a tracked managed Secret rolls anything: a forced
    // no-op refresh, a label and an annotation on the managed Secret, the unmanaged Secret's
    // data changing.
    for args in [
        vec![
            "annotate",
            "externalsecrets.external-secrets.io",
            "db",
            "force-sync=1",
        ],
        vec!["label", "secret", "db", "team=a"],
        vec!["annotate", "secret", "db", "note=x"],
    ] {
        let mut a = args.clone();
        a.extend(["-n", &ns, "--overwrite"]);
        let o = env.kubectl(&a);
        assert!(o.status.success(), "{a:?}: {}", cluster::out(&o));
    }
    let o = env.kubectl(&[
        "patch",
        "secret",
        "plain",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"stringData":{"value":"unmanaged-v2"}}"#,
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    std::thread::sleep(Duration::from_secs(6)); // twice the debounce
    for (kind, name, _, _, _, _) in &cases {
        assert_eq!(
            digest(env, kind, &ns, name),
            "",
            "{kind}/{name} rolled by a non-change\n{}",
            op.log()
        );
    }
    assert_eq!(total(&op), 0.0);

    // The data of db changes in AWS: exactly the workloads tracking db roll, once each.
    let edited = Instant::now();
    moto::put_value(&url, &db_key, "db-v2").unwrap();
    wait_value(env, &ns, "db", "db-v2", &op);
    let synced = edited.elapsed();
    for (kind, name, _, _, on_db, _) in &cases {
        if *on_db {
            eventually(
                Duration::from_secs(30),
                &format!("{kind}/{name} rolled\n{}", op.log()),
                || (!digest(env, kind, &ns, name).is_empty()).then_some(()),
            );
        }
    }
    eprintln!(
        "AWS edit -> Secret {synced:?}, -> last workload patched {:?}",
        edited.elapsed()
    );
    std::thread::sleep(Duration::from_secs(4));
    let digests = |cases: &[Case]| -> Vec<String> {
        cases
            .iter()
            .map(|(kind, name, ..)| digest(env, kind, &ns, name))
            .collect()
    };
    let after_db = digests(&cases);
    for (c, d) in cases.iter().zip(&after_db) {
        assert_eq!(
            !d.is_empty(),
            c.4,
            "{}/{} digest {d:?}\n{}",
            c.0,
            c.1,
            op.log()
        );
    }
    // One rollout each (the counter), for one Secret used by five workloads.
    assert_eq!(total(&op), 5.0, "{}", op.log());
    let events = rollout_events(env, "Deployment", &ns, "app");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("restarted because Secret db changed"),
        "{events:?}"
    );
    assert!(!events[0].contains("db-v"), "a value in an Event");
    let describe = get(env, &["describe", "deployment", "app", "-n", &ns]);
    assert!(
        describe.contains("restarted because Secret db changed"),
        "{describe}"
    );
    assert_eq!(rollout_events(env, "StatefulSet", &ns, "sts").len(), 1);
    assert_eq!(rollout_events(env, "DaemonSet", &ns, "ds").len(), 1);
    assert_eq!(metric(&op, "kind=\"Deployment\""), 3.0); // app, both, reloader-auto
    assert_eq!(metric(&op, "kind=\"StatefulSet\""), 1.0);
    assert_eq!(metric(&op, "kind=\"DaemonSet\""), 1.0);
    let app_digest = digest(env, "Deployment", &ns, "app");

    // An operator restart recomputes the same record: nothing rolls.
    drop(op);
    op = start(&format!("{ns}-2"));
    eventually(Duration::from_secs(30), "restarted operator ready", || {
        http_get(&op.health_addr, "/readyz")
            .filter(|r| r.starts_with("HTTP/1.1 200"))
            .map(|_| ())
    });
    eventually(
        Duration::from_secs(30),
        "caches synced and workloads looked at",
        || op.log().contains("caches synced").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        digests(&cases),
        after_db,
        "rolled by a restart\n{}",
        op.log()
    );
    assert_eq!(total(&op), 0.0, "{}", op.log());
    assert_eq!(digest(env, "Deployment", &ns, "app"), app_digest);

    // `kubectl rollout undo` puts the previous template back (here: without the digest). The
    // record is unchanged, so the workload is not rolled forward again.
    let o = env.kubectl(&[
        "patch",
        "deployment",
        "app",
        "-n",
        &ns,
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op":"remove","path":"/spec/template/metadata/annotations/{}"}}]"#,
            DIGEST.replace('/', "~1")
        ),
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(digest(env, "Deployment", &ns, "app"), "", "rolled forward");
    assert_eq!(total(&op), 0.0, "{}", op.log());

    // db and other change together: `both` rolls once, naming both; each other workload once.
    moto::put_value(&url, &db_key, "db-v3").unwrap();
    moto::put_value(&url, &other_key, "other-v2").unwrap();
    wait_value(env, &ns, "db", "db-v3", &op);
    wait_value(env, &ns, "other", "other-v2", &op);
    eventually(
        Duration::from_secs(30),
        &format!("listed rolled\n{}", op.log()),
        || (!digest(env, "Deployment", &ns, "listed").is_empty()).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(5));
    let after_both = digests(&cases);
    for ((c, before), now) in cases.iter().zip(&after_db).zip(&after_both) {
        let rolled = if c.1 == "app" {
            !now.is_empty()
        } else {
            now != before
        };
        assert_eq!(
            rolled,
            c.4 || c.5,
            "{}/{}: {before:?} -> {now:?}\n{}",
            c.0,
            c.1,
            op.log()
        );
    }
    // app, both, reloader-auto, sts, ds (db) and listed, reloader-named (other): `both` once.
    assert_eq!(total(&op), 7.0, "{}", op.log());
    let events = rollout_events(env, "Deployment", &ns, "both");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("restarted because Secrets db, other changed")),
        "{events:?}"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A Secret used by many workloads in one namespace: each is rolled once, at most
/// `--rollout-namespace-burst` at once and then `--rollout-namespace-qps`; another namespace has
/// its own budget.
#[test]
fn rollouts_are_rate_limited_per_namespace() {
    let Some(env) = cluster::env() else { return };
    let url = moto_url(env);
    let key = testenv::unique_name("ro-rate");
    moto::create_secret(&url, &key, "v1").unwrap();
    let ns = namespace(env, "ro-rate");
    apply(env, &aws_store_and_creds(&ns));
    apply(env, &es(&ns, "db", &key));
    let names: Vec<String> = (0..4).map(|i| format!("w{i}")).collect();
    for n in &names {
        apply(
            env,
            &workload("Deployment", &ns, n, &[(AUTO, "true")], &pod("db", "", "")),
        );
    }
    let op = Operator::start(
        env,
        &ns,
        None,
        &[
            "--enable-workload-rollout",
            "--rollout-debounce",
            "1s",
            "--remote-change-poll-interval",
            "2s",
            "--rollout-namespace-qps",
            "0.25",
            "--rollout-namespace-burst",
            "2",
        ],
    );
    wait_ready(env, &ns, "db", &op);
    for n in &names {
        eventually(
            Duration::from_secs(30),
            &format!("{n} recorded\n{}", op.log()),
            || (!state(env, "Deployment", &ns, n).is_empty()).then_some(()),
        );
    }
    moto::put_value(&url, &key, "v2").unwrap();
    wait_value(env, &ns, "db", "v2", &op);
    let t0 = Instant::now();
    let mut rolled_at = Vec::new();
    let mut pending: Vec<&String> = names.iter().collect();
    while !pending.is_empty() && t0.elapsed() < Duration::from_secs(40) {
        pending.retain(|n| {
            if digest(env, "Deployment", &ns, n).is_empty() {
                true
            } else {
                rolled_at.push(t0.elapsed());
                false
            }
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(pending.is_empty(), "not rolled: {pending:?}\n{}", op.log());
    eprintln!("rollouts after the Secret changed: {rolled_at:?}");
    // Two at once (the burst), then one per 4 s.
    assert!(rolled_at[1] < Duration::from_secs(3), "{rolled_at:?}");
    assert!(
        rolled_at[2] >= rolled_at[1] + Duration::from_secs(2),
        "{rolled_at:?}"
    );
    assert!(
        rolled_at[3] >= rolled_at[2] + Duration::from_secs(2),
        "{rolled_at:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(&op, ""), 4.0, "each rolled once\n{}", op.log());
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The memory figure of docs/STATUS.md: the operator's RSS with `ESO_ROLLOUT_SCALE` Deployments
/// (default 5,000; 1 in 100 opted in) in one namespace, with and without
/// `--enable-workload-rollout`. Opt-in (`ESO_ROLLOUT_SCALE=5000`): it creates thousands of
/// objects. `cargo test -p eso-operator --release --test rollout -- --nocapture memory`
#[test]
fn memory_with_thousands_of_deployments() {
    let Some(n) = std::env::var("ESO_ROLLOUT_SCALE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        eprintln!("ESO_ROLLOUT_SCALE unset: skipped");
        return;
    };
    let Some(env) = cluster::env() else { return };
    let url = moto_url(env);
    let key = testenv::unique_name("ro-mem");
    moto::create_secret(&url, &key, "v1").unwrap();
    let ns = namespace(env, "ro-mem");
    apply(env, &aws_store_and_creds(&ns));
    apply(env, &es(&ns, "db", &key));
    // Realistic objects: labels, annotations, two containers with env, resources and probes.
    let mut batch = String::new();
    let t0 = Instant::now();
    for i in 0..n {
        let ann = if i % 100 == 0 {
            format!("{AUTO}: \"true\", ")
        } else {
            String::new()
        };
        batch.push_str(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n  labels: {{app.kubernetes.io/name: app-{i}, app.kubernetes.io/part-of: shop, team: payments}}\n  annotations: {{{ann}deployment.kubernetes.io/revision: \"1\", owner: team-payments@example.com}}\n\
             spec:\n  replicas: 3\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}, version: v1}}}}\n    spec:\n      containers:\n\
             \x20     - name: app\n        image: registry.example.com/shop/app-{i}:1.2.3\n        ports: [{{containerPort: 8080, name: http}}]\n\
             \x20       env:\n        - {{name: DB_HOST, value: db.example.internal}}\n        - {{name: DB_PORT, value: \"5432\"}}\n        - name: DB_PASSWORD\n          valueFrom: {{secretKeyRef: {{name: db, key: value}}}}\n\
             \x20       resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{memory: 256Mi}}}}\n\
             \x20       readinessProbe: {{httpGet: {{path: /ready, port: 8080}}, periodSeconds: 5}}\n\
             \x20     - name: sidecar\n        image: registry.example.com/proxy:2.0\n        args: [--listen=:9000, --upstream=127.0.0.1:8080]\n---\n"
        ));
        if (i + 1) % 500 == 0 || i + 1 == n {
            let o = env.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &batch);
            assert!(o.status.success(), "{}", cluster::out(&o));
            batch.clear();
        }
    }
    eprintln!("{n} Deployments applied in {:?}", t0.elapsed());
    let measure = |flags: &[&str], log: &str| -> (u64, u64) {
        let op = Operator::start_named(env, &ns, log, None, flags);
        wait_ready(env, &ns, "db", &op);
        eventually(Duration::from_secs(60), "caches synced", || {
            op.log().contains("caches synced").then_some(())
        });
        std::thread::sleep(Duration::from_secs(15));
        let a = rss_kib(op.child.id());
        std::thread::sleep(Duration::from_secs(10));
        let b = rss_kib(op.child.id());
        (a, b)
    };
    let off = measure(&[], &format!("{ns}-off"));
    let on = measure(&["--enable-workload-rollout"], &format!("{ns}-on"));
    let opted = n.div_ceil(100);
    eventually(
        Duration::from_secs(120),
        "opted-in workloads recorded",
        || {
            let s = get(
                env,
                &[
                    "get",
                    "deployments",
                    "-n",
                    &ns,
                    "-o",
                    &format!(
                        "jsonpath={{range .items[*]}}{}{{\"\\n\"}}{{end}}",
                        annotation(".metadata", STATE)
                    ),
                ],
            );
            (s.lines().filter(|l| !l.is_empty()).count() >= opted).then_some(())
        },
    );
    eprintln!(
        "RSS with {n} Deployments ({opted} opted in): rollout off {:.1} / {:.1} MiB, on {:.1} / {:.1} MiB",
        off.0 as f64 / 1024.0,
        off.1 as f64 / 1024.0,
        on.0 as f64 / 1024.0,
        on.1 as f64 / 1024.0
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
