//! Behaviour over time, end to end (the real `eso-operator` binary against testenv): objects that
//! are edited, renamed and deleted, that are older than their refresh interval, and operators
//! that restart. Intervals are realistic (1h, 2m); time is made to pass by backdating
//! `status.refreshTime`, never by waiting on 2-second intervals.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::time::{Duration, Instant};

use cluster::{apply, es_ready, eventually, get, namespace, secret_value};
use operator::{Operator, aws_store_and_creds, fake_store, http_get, moto_url};

fn kubectl_ok(env: &testenv::TestEnv, args: &[&str]) {
    let o = env.kubectl(args);
    assert!(o.status.success(), "kubectl {args:?}: {}", cluster::out(&o));
}

/// `kubectl annotate … force-sync=1 --overwrite`: ESO's idiom for an immediate refresh.
fn force_sync(env: &testenv::TestEnv, ns: &str, name: &str) {
    kubectl_ok(
        env,
        &[
            "annotate",
            "externalsecrets.external-secrets.io",
            name,
            "-n",
            ns,
            "force-sync=1",
            "--overwrite",
        ],
    );
}

fn secret_json(env: &testenv::TestEnv, ns: &str, name: &str) -> serde_json::Value {
    let s = get(env, &["get", "secret", name, "-n", ns, "-o", "json"]);
    serde_json::from_str(&s).unwrap_or(serde_json::Value::Null)
}

fn keys(v: &serde_json::Value, field: &[&str]) -> Vec<String> {
    let mut cur = v;
    for f in field {
        cur = &cur[*f];
    }
    let mut k: Vec<String> = cur
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn wait_ready(env: &testenv::TestEnv, ns: &str, name: &str, op: &Operator) {
    eventually(
        Duration::from_secs(60),
        &format!("{ns}/{name} Ready\n{}", op.log()),
        || es_ready(env, ns, name).starts_with("True/").then_some(()),
    );
}

fn es(ns: &str, name: &str, store: &str, policy: &str, body: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: SecretStore}}\n  target:\n    name: {name}\n    creationPolicy: {policy}\n{body}"
    )
}

/// Under Merge, a `data[]` entry removed from the ExternalSecret leaves the Secret; a key written
/// by someone else stays. Then every remote key disappears under `deletionPolicy: Merge`: our
/// keys go, the Secret and the foreign key stay.
#[test]
fn merge_removes_only_the_keys_this_external_secret_wrote() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-merge");
    apply(
        env,
        &fake_store(&ns, "fake", &[("user", "alice"), ("pass", "s3cret")]),
    );
    kubectl_ok(
        env,
        &[
            "create",
            "secret",
            "generic",
            "app",
            "-n",
            &ns,
            "--from-literal=foreign=keep-me",
        ],
    );
    let data = "    deletionPolicy: Merge\n  data:\n  - secretKey: user\n    remoteRef: {key: user}\n  - secretKey: pass\n    remoteRef: {key: pass}\n";
    apply(env, &es(&ns, "app", "fake", "Merge", data));
    let op = Operator::start(env, &ns, None, &[]);
    eventually(
        Duration::from_secs(60),
        &format!("merged\n{}", op.log()),
        || (secret_value(env, &ns, "app", "pass").as_deref() == Some("s3cret")).then_some(()),
    );
    assert_eq!(
        keys(&secret_json(env, &ns, "app"), &["data"]),
        ["foreign", "pass", "user"]
    );

    // Drop `pass` from the ExternalSecret.
    let data =
        "    deletionPolicy: Merge\n  data:\n  - secretKey: user\n    remoteRef: {key: user}\n";
    apply(env, &es(&ns, "app", "fake", "Merge", data));
    eventually(
        Duration::from_secs(30),
        &format!("pass removed\n{}", op.log()),
        || (keys(&secret_json(env, &ns, "app"), &["data"]) == ["foreign", "user"]).then_some(()),
    );
    assert_eq!(
        secret_value(env, &ns, "app", "foreign").as_deref(),
        Some("keep-me")
    );
    // The data-hash covers what the Secret now holds: it is valid, and stays so (no rewrite loop).
    let rv = get(
        env,
        &[
            "get",
            "secret",
            "app",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        get(
            env,
            &[
                "get",
                "secret",
                "app",
                "-n",
                &ns,
                "-o",
                "jsonpath={.metadata.resourceVersion}"
            ]
        ),
        rv,
        "the Secret is rewritten again and again\n{}",
        op.log()
    );

    // Every remote key gone (deletionPolicy Merge): our keys leave, the Secret stays.
    apply(env, &fake_store(&ns, "fake", &[("other", "x")]));
    force_sync(env, &ns, "app");
    eventually(
        Duration::from_secs(30),
        &format!("our keys removed\n{}", op.log()),
        || (keys(&secret_json(env, &ns, "app"), &["data"]) == ["foreign"]).then_some(()),
    );
    wait_ready(env, &ns, "app", &op);
}

/// A label or annotation removed from the ExternalSecret (no template: they are copied) or from
/// `template.metadata` leaves the Secret; a label someone else put on the Secret stays.
#[test]
fn removed_labels_and_annotations_leave_the_secret() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-meta");
    apply(env, &fake_store(&ns, "fake", &[("user", "alice")]));
    let with_labels = |labels: &str, annotations: &str, tmpl_labels: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: plain\n  namespace: {ns}\n  labels: {{{labels}}}\n  annotations: {{{annotations}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target: {{name: plain}}\n  data:\n  - secretKey: user\n    remoteRef: {{key: user}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: templated\n  namespace: {ns}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target:\n    name: templated\n    template:\n      metadata:\n        labels: {{{tmpl_labels}}}\n  data:\n  - secretKey: user\n    remoteRef: {{key: user}}\n"
        )
    };
    apply(
        env,
        &with_labels("team: a, tier: web", "note: hello", "app: x, env: prod"),
    );
    let op = Operator::start(env, &ns, None, &[]);
    wait_ready(env, &ns, "plain", &op);
    wait_ready(env, &ns, "templated", &op);
    eventually(Duration::from_secs(30), "labels copied", || {
        let p = secret_json(env, &ns, "plain");
        let t = secret_json(env, &ns, "templated");
        (p["metadata"]["labels"]["tier"] == "web" && t["metadata"]["labels"]["env"] == "prod")
            .then_some(())
    });
    kubectl_ok(
        env,
        &["label", "secret", "plain", "-n", &ns, "foreign=stays"],
    );
    kubectl_ok(
        env,
        &["label", "secret", "templated", "-n", &ns, "foreign=stays"],
    );

    // Remove `tier` and the annotation from the ExternalSecret, `env` from the template.
    apply(env, &with_labels("team: a", "", "app: x"));
    eventually(
        Duration::from_secs(30),
        &format!("removed metadata left the Secrets\n{}", op.log()),
        || {
            let p = secret_json(env, &ns, "plain");
            let t = secret_json(env, &ns, "templated");
            let gone = p["metadata"]["labels"].get("tier").is_none()
                && p["metadata"]["annotations"].get("note").is_none()
                && t["metadata"]["labels"].get("env").is_none();
            gone.then_some(())
        },
    );
    let p = secret_json(env, &ns, "plain");
    let t = secret_json(env, &ns, "templated");
    assert_eq!(p["metadata"]["labels"]["team"], "a");
    assert_eq!(p["metadata"]["labels"]["foreign"], "stays");
    assert_eq!(t["metadata"]["labels"]["app"], "x");
    assert_eq!(t["metadata"]["labels"]["foreign"], "stays");
    assert_eq!(
        p["metadata"]["labels"]["reconcile.external-secrets.io/managed"],
        "true"
    );
}

/// `target.name` renamed under Owner: the new Secret is created and the old one, which still
/// carries the old values, is deleted (ESO's orphan cleanup). A Secret of another
/// ExternalSecret is never touched.
#[test]
fn renamed_target_removes_the_old_secret() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-rename");
    apply(env, &fake_store(&ns, "fake", &[("user", "alice")]));
    let body = |target: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target: {{name: {target}}}\n  data:\n  - secretKey: user\n    remoteRef: {{key: user}}\n"
        )
    };
    apply(env, &body("old-name"));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: other, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target: {{name: other}}\n  data:\n  - secretKey: user\n    remoteRef: {{key: user}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    eventually(Duration::from_secs(60), "old-name synced", || {
        secret_value(env, &ns, "old-name", "user").map(|_| ())
    });
    wait_ready(env, &ns, "other", &op);
    apply(env, &body("new-name"));
    eventually(
        Duration::from_secs(30),
        &format!("new-name created, old-name deleted\n{}", op.log()),
        || {
            let new = secret_value(env, &ns, "new-name", "user").is_some();
            let old_gone =
                get(env, &["get", "secret", "old-name", "-n", &ns, "-o", "name"]).is_empty();
            (new && old_gone).then_some(())
        },
    );
    assert_eq!(
        secret_value(env, &ns, "other", "user").as_deref(),
        Some("alice"),
        "another ExternalSecret's Secret is untouched"
    );
    wait_ready(env, &ns, "app", &op);
}

fn metrics(op: &Operator) -> String {
    http_get(&op.metrics_addr, "/metrics").unwrap_or_default()
}

/// A deleted, failing ExternalSecret leaves no series in /metrics (its alert stops firing), and
/// a deleted store's condition series goes too.
#[test]
fn deleted_objects_leave_no_metrics_behind() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-gone");
    apply(env, &fake_store(&ns, "fake", &[("user", "alice")]));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: failing, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target: {{name: failing}}\n  data:\n  - secretKey: user\n    remoteRef: {{key: user, property: no.such.property}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    let failing = format!(
        "externalsecret_status_condition{{condition=\"Ready\",name=\"failing\",namespace=\"{ns}\",status=\"False\"}} 1"
    );
    eventually(
        Duration::from_secs(60),
        &format!("failing series\n{}", op.log()),
        || metrics(&op).contains(&failing).then_some(()),
    );
    let store_series = format!(
        "secretstore_status_condition{{condition=\"Ready\",name=\"fake\",namespace=\"{ns}\""
    );
    assert!(metrics(&op).contains(&store_series), "{}", metrics(&op));

    kubectl_ok(
        env,
        &[
            "delete",
            "externalsecrets.external-secrets.io",
            "failing",
            "-n",
            &ns,
        ],
    );
    kubectl_ok(
        env,
        &[
            "delete",
            "secretstores.external-secrets.io",
            "fake",
            "-n",
            &ns,
        ],
    );
    eventually(
        Duration::from_secs(30),
        &format!("series removed\n{}", op.log()),
        || {
            let m = metrics(&op);
            (!m.contains(&format!("name=\"failing\",namespace=\"{ns}\""))
                && !m.contains(&store_series))
            .then_some(())
        },
    );
    // The operator stays healthy with nothing left to do (no stale due time).
    let health = http_get(&op.health_addr, "/healthz").unwrap_or_default();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// The reconciles counted for `ns/name` (`externalsecret_sync_calls_total`), once two reads a
/// second apart agree (the reconcile woken by the Secret just written has run).
fn settled_reconciles(op: &Operator, ns: &str, name: &str) -> f64 {
    let series = format!("externalsecret_sync_calls_total{{name=\"{name}\",namespace=\"{ns}\"}} ");
    let read = || {
        metrics(op)
            .lines()
            .find_map(|l| {
                l.strip_prefix(&series)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    let mut last = read();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("reconciles of {ns}/{name} never settled\n{}", op.log());
}

/// ESO's event filter: a status-only update (anyone's; this operator's own status writes are
/// the common case) does not wake the controller, an annotation (the force-sync idiom) does.
#[test]
fn a_status_only_update_does_not_wake_the_controller() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-status");
    apply(env, &fake_store(&ns, "fake", &[("user", "alice")]));
    let data = "  data:\n  - secretKey: user\n    remoteRef: {key: user}\n";
    apply(env, &es(&ns, "app", "fake", "Owner", data));
    let op = Operator::start(env, &ns, None, &[]);
    wait_ready(env, &ns, "app", &op);
    let before = settled_reconciles(&op, &ns, "app");
    let now = k8s_time(std::time::SystemTime::now());
    kubectl_ok(
        env,
        &[
            "patch",
            "externalsecrets.external-secrets.io",
            "app",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!("{{\"status\":{{\"refreshTime\":\"{now}\"}}}}"),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        settled_reconciles(&op, &ns, "app"),
        before,
        "a status-only update woke the controller\n{}",
        op.log()
    );
    force_sync(env, &ns, "app");
    eventually(
        Duration::from_secs(30),
        &format!("an annotation wakes the controller\n{}", op.log()),
        || (settled_reconciles(&op, &ns, "app") > before).then_some(()),
    );
}

/// A templateFrom ConfigMap that does not exist yet: Ready=False, then the ConfigMap appears and
/// the ExternalSecret (refreshInterval 1h) syncs within the short dependency backoff instead of
/// waiting an hour.
#[test]
fn a_missing_template_configmap_is_retried_until_it_appears() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-dep");
    apply(env, &fake_store(&ns, "fake", &[("user", "alice")]));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target:\n    name: app\n    template:\n      templateFrom:\n      - configMap:\n          name: tmpl\n          items:\n          - key: config\n  data:\n  - secretKey: user\n    remoteRef: {{key: user}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    eventually(
        Duration::from_secs(60),
        &format!("Ready=False naming the ConfigMap\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "app");
            (r.starts_with("False/") && r.contains("tmpl")).then_some(())
        },
    );
    // Let a few retries pass so the backoff has grown, then create the ConfigMap.
    std::thread::sleep(Duration::from_secs(8));
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: tmpl, namespace: {ns}}}\ndata:\n  config: 'user={{{{ .user }}}}'\n"
        ),
    );
    let start = Instant::now();
    eventually(
        Duration::from_secs(45),
        &format!("synced after the ConfigMap appeared\n{}", op.log()),
        || (secret_value(env, &ns, "app", "config").as_deref() == Some("user=alice")).then_some(()),
    );
    eprintln!("synced {:?} after the ConfigMap appeared", start.elapsed());
    wait_ready(env, &ns, "app", &op);
}

/// ExternalSecrets older than their interval survive a restart without a re-read storm: 20
/// ExternalSecrets (refreshInterval 2m, 20 remote secrets) synced, then their `refreshTime`
/// backdated by 10 minutes (as if unchanged for five intervals: this operator writes it only on
/// change), then the operator restarts with a 60 s restart spread. Without the spread all 20 are
/// read within a second; with it they are spread over the window and all read within it.
#[test]
fn a_restart_spreads_the_refreshes_that_are_overdue_only_by_time() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-restart");
    let proxy = proxy::Proxy::start(&moto_url(env)).expect("proxy");
    apply(env, &aws_store_and_creds(&ns));
    let n = 20;
    let mut docs = Vec::new();
    for i in 0..n {
        let key = testenv::unique_name(&format!("lc-restart-{i}"));
        moto::create_secret(&moto_url(env), &key, r#"{"v":"1"}"#).expect("create");
        docs.push(format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{i}, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 2m\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  target: {{name: es-{i}}}\n  data:\n  - secretKey: v\n    remoteRef: {{key: {key}, property: v}}\n"
        ));
    }
    apply(env, &docs.join("---\n"));
    // The spread is given through the environment, so that the previous build (which has no
    // such flag) runs the same test: `ESO_OPERATOR_BIN=<old build>` shows 20 of 20 read at once.
    let args = ["--remote-change-poll-interval", "0"];
    let vars = [("ESO_RESTART_SPREAD", "60s")];
    let op = Operator::start_with_env(env, &ns, &ns, Some(&proxy.url), &args, &vars);
    for i in 0..n {
        wait_ready(env, &ns, &format!("es-{i}"), &op);
    }
    drop(op);

    // Backdate refreshTime by 10 minutes (5 intervals).
    let old = k8s_time(std::time::SystemTime::now() - Duration::from_secs(600));
    for i in 0..n {
        kubectl_ok(
            env,
            &[
                "patch",
                "externalsecrets.external-secrets.io",
                &format!("es-{i}"),
                "-n",
                &ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!("{{\"status\":{{\"refreshTime\":\"{old}\"}}}}"),
            ],
        );
    }
    let reads = |p: &proxy::Proxy| {
        let c = p.counts();
        c.get("GetSecretValue").copied().unwrap_or(0)
            + c.get("BatchGetSecretValue").copied().unwrap_or(0)
    };
    let before = reads(&proxy);
    let op = Operator::start_with_env(env, &ns, &format!("{ns}-2"), Some(&proxy.url), &args, &vars);
    // Caches synced and every object seen once (a reconcile per object) within a few seconds.
    eventually(Duration::from_secs(30), "operator ready", || {
        http_get(&op.health_addr, "/readyz")
            .filter(|r| r.starts_with("HTTP/1.1 200"))
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(3));
    let early = reads(&proxy) - before;
    assert!(
        early <= n / 3,
        "{early} of {n} overdue-by-time ExternalSecrets were re-read within 3 s of the restart\n{}",
        op.log()
    );
    // All of them are refreshed within the spread window (60 s) plus slack.
    eventually(
        Duration::from_secs(75),
        &format!("all re-read within the spread\n{}", op.log()),
        || (reads(&proxy) - before >= n).then_some(()),
    );
    eprintln!("re-reads within 3 s of the restart: {early} of {n}");
}

fn k8s_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // civil-from-days (Howard Hinnant), UTC
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A ClusterSecretStore's namespace conditions with a realistic interval (1h): labelling the
/// namespace admits a refused ExternalSecret within seconds (the namespace watch wakes it), and
/// removing the label refuses it again within seconds, the synced Secret kept.
#[test]
fn namespace_labels_admit_and_refuse_without_waiting_for_the_interval() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "lc-nslabel");
    let store = format!("lc-{ns}");
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: {store}}}\nspec:\n  conditions:\n  - namespaceSelector:\n      matchLabels: {{team: {ns}}}\n  provider:\n    fake:\n      data:\n      - key: k\n        value: v1\n"
        ),
    );
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    eventually(
        Duration::from_secs(30),
        &format!("refused\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "es");
            (r.starts_with("False/") && r.contains("not allowed from namespace")).then_some(())
        },
    );
    // Let the first retries pass, so only a wake-up can explain a quick admission.
    std::thread::sleep(Duration::from_secs(5));
    kubectl_ok(env, &["label", "namespace", &ns, &format!("team={ns}")]);
    let start = Instant::now();
    eventually(
        Duration::from_secs(15),
        &format!("admitted after the label\n{}", op.log()),
        || (secret_value(env, &ns, "es", "v").as_deref() == Some("v1")).then_some(()),
    );
    eprintln!("admitted {:?} after the label", start.elapsed());
    wait_ready(env, &ns, "es", &op);

    kubectl_ok(env, &["label", "namespace", &ns, "team-"]);
    eventually(
        Duration::from_secs(15),
        &format!("refused again after the label is removed\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "es");
            (r.starts_with("False/") && r.contains("not allowed from namespace")).then_some(())
        },
    );
    assert_eq!(
        secret_value(env, &ns, "es", "v").as_deref(),
        Some("v1"),
        "the synced Secret is kept"
    );
    let _ = env.kubectl(&["delete", "clustersecretstore", &store, "--wait=false"]);
}
