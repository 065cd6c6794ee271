//! End to end: what ESO users rely on besides syncing — ESO's provider call metric, Go's
//! missing-key message, ESO's key rules before templating, the chart's TokenRequest permission and
//! the IRSA example. The real `eso-operator` binary against testenv (kube-apiserver, etcd,
//! kube-controller-manager, moto), one namespace and one operator process per test.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::{
    apply, es_ready, eventually, get, helm, namespace, root, secret_value,
    service_account_kubeconfig,
};
use operator::{Operator, aws_store_and_creds, fake_store, moto_url};

const CALLS: &str = "externalsecret_provider_api_calls_count";

/// Every `externalsecret_provider_api_calls_count` series in a `/metrics` answer:
/// (provider, call, status) → value.
fn api_calls(metrics: &str) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&format!("{CALLS}{{")) else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        out.insert(
            (label("provider"), label("call"), label("status")),
            value.trim().parse::<f64>().unwrap_or(-1.0) as u64,
        );
    }
    out
}

/// The series, summed over statuses, per AWS operation (the proxy's names).
fn per_operation(calls: &BTreeMap<(String, String, String), u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((_, call, _), n) in calls {
        *out.entry(call.clone()).or_insert(0) += n;
    }
    out
}

/// ESO's `externalsecret_provider_api_calls_count{provider,call,status}` (its Grafana dashboard
/// sums it by those labels): after 5 ExternalSecrets read 5 existing secrets and one reads a
/// missing one, the operator's `/metrics` has GetSecretValue success = 5, error ≥ 1, and for every
/// AWS operation the count equals the requests the counting proxy in front of moto saw.
#[test]
fn provider_api_calls_count_matches_the_aws_calls_made() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "compat-calls");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    apply(env, &aws_store_and_creds(&ns));
    let mut docs = String::new();
    let missing = testenv::unique_name("calls-missing");
    for i in 0..6 {
        let key = if i < 5 {
            let k = testenv::unique_name(&format!("calls-{i}"));
            moto::create_secret(&url, &k, r#"{"v":"x"}"#).expect("create");
            k
        } else {
            missing.clone()
        };
        docs.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{i}, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: {key}, property: v}}}}\n"
        ));
    }
    apply(env, &docs);
    let op = Operator::start(env, &ns, Some(&proxy.url), &[]);
    eventually(
        Duration::from_secs(60),
        &format!("5 synced, 1 failing\n{}", op.log()),
        || {
            ((0..5)
                .all(|i| secret_value(env, &ns, &format!("es-{i}"), "v").as_deref() == Some("x"))
                && es_ready(env, &ns, "es-5").starts_with("False/"))
            .then_some(())
        },
    );
    // The metric and the proxy agree once no call is in flight (the failing one retries with
    // backoff, so they meet between two retries).
    let (calls, seen) = eventually(
        Duration::from_secs(30),
        "the metric to match the proxy's counts",
        || {
            let seen = proxy.counts();
            let metrics = operator::http_get(&op.metrics_addr, "/metrics")?;
            let calls = api_calls(&metrics);
            (per_operation(&calls) == seen && proxy.counts() == seen).then_some((calls, seen))
        },
    );
    let sm = |call: &str, status: &str| {
        calls
            .get(&(
                "AWS/SecretsManager".to_string(),
                call.to_string(),
                status.to_string(),
            ))
            .copied()
            .unwrap_or(0)
    };
    // Concurrent ExternalSecrets share batch reads (BatchGetSecretValue, 20 ids): the six
    // remote keys cost between one and six read calls, each counted once under its own name.
    let reads = sm("GetSecretValue", "success")
        + sm("GetSecretValue", "error")
        + sm("BatchGetSecretValue", "success")
        + sm("BatchGetSecretValue", "error");
    assert!((1..=6).contains(&reads), "{calls:?}");
    assert!(
        calls
            .keys()
            .all(|(p, _, s)| (p == "AWS/SecretsManager" || p == "AWS/STS")
                && (s == "success" || s == "error")),
        "{calls:?}"
    );
    let proxied_reads = seen.get("GetSecretValue").copied().unwrap_or(0)
        + seen.get("BatchGetSecretValue").copied().unwrap_or(0);
    assert_eq!(proxied_reads, reads, "{seen:?}");
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A template referencing a key the data lacks: Ready=False and an Event with Go's (and so
/// ESO's) message `map has no entry for key "nope"`, naming the key and never the values.
#[test]
fn template_missing_key_is_named_in_status_and_events() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "compat-missing-key");
    let value = "V4lue-Never-Shown-0b1d";
    apply(env, &fake_store(&ns, "fake", &[("db", value)]));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: tpl, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake}}\n  target:\n    template:\n      data: {{conf: 'pw={{{{ .pw }}}} user={{{{ .nope }}}}'}}\n  data:\n  - {{secretKey: pw, remoteRef: {{key: db}}}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    let ready = eventually(
        Duration::from_secs(60),
        &format!("Ready=False\n{}", op.log()),
        || {
            // Not the first False: before the store is validated the ExternalSecret waits for
            // it (Ready=False, "not validated yet"), then the template fails.
            let r = es_ready(env, &ns, "tpl");
            (r.starts_with("False/") && r.contains("map has no entry")).then_some(r)
        },
    );
    assert!(
        ready.contains(r#"map has no entry for key "nope""#)
            && ready.contains("spec.target.template.data[conf]"),
        "{ready}"
    );
    let events = eventually(Duration::from_secs(30), "the Event", || {
        let e = get(
            env,
            &[
                "get",
                "events",
                "-n",
                &ns,
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        e.contains("map has no entry for key").then_some(e)
    });
    for (what, text) in [("status", &ready), ("events", &events), ("log", &op.log())] {
        assert!(!text.contains(value), "{what} shows the value");
    }
    assert!(secret_value(env, &ns, "tpl", "conf").is_none());
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A remote JSON key with a non-ASCII letter (`clé`): ESO's Unicode letter rule accepts it
/// before templating, so a template mapping it to `cle` syncs; without a template the key would
/// be the Secret's and Kubernetes' rule refuses it (Ready=False naming the key).
#[test]
fn unicode_letter_in_a_datafrom_key_syncs_when_a_template_maps_it() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "compat-unicode-key");
    let url = moto_url(env);
    let key = testenv::unique_name("unicode-key");
    moto::create_secret(&url, &key, r#"{"clé":"v1","ok":"v2"}"#).expect("create");
    apply(env, &aws_store_and_creds(&ns));
    let es = |name: &str, template: &str| {
        format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n{template}  dataFrom:\n  - extract: {{key: {key}}}\n"
        )
    };
    apply(
        env,
        &(es(
            "mapped",
            "  target:\n    template:\n      data: {cle: '{{ index . \"clé\" }}', ok: '{{ .ok }}'}\n",
        ) + &es("raw", "")),
    );
    let op = Operator::start(env, &ns, None, &[]);
    eventually(
        Duration::from_secs(60),
        &format!("mapped synced\n{}", op.log()),
        || (secret_value(env, &ns, "mapped", "cle").as_deref() == Some("v1")).then_some(()),
    );
    assert_eq!(
        secret_value(env, &ns, "mapped", "ok").as_deref(),
        Some("v2")
    );
    assert!(es_ready(env, &ns, "mapped").starts_with("True/SecretSynced"));
    let raw = eventually(Duration::from_secs(60), "raw Ready=False", || {
        let r = es_ready(env, &ns, "raw");
        r.starts_with("False/").then_some(r)
    });
    assert!(
        raw.contains("invalid secret keys") && raw.contains("clé"),
        "{raw}"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The Ready condition of a SecretStore as "status/reason/message".
fn store_ready(env: &testenv::TestEnv, ns: &str, name: &str) -> String {
    get(
        env,
        &[
            "get",
            "secretstores.external-secrets.io",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}/{.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    )
}

/// examples/irsa/ way A (a ServiceAccount annotated with its role, a SecretStore with
/// `auth.jwt.serviceAccountRef`, an ExternalSecret), applied unchanged but for the remote key,
/// with the operator authenticated as the chart's own ServiceAccount. With
/// `rbac.serviceAccountTokenCreate=false` the TokenRequest is forbidden and the store says which
/// chart value to set; after `helm upgrade` with the chart's default (true) the same running
/// operator gets the token, STS (moto) accepts it, the store turns Ready and the Secret syncs.
#[test]
fn irsa_example_needs_only_the_chart_defaults_and_a_forbidden_token_request_names_the_value() {
    let Some(env) = cluster::env() else { return };
    let chart = root().join("deploy/charts/eso-rs");
    let chart = chart.to_str().unwrap();
    let release_ns = namespace(env, "compat-irsa-rel");
    let release = testenv::unique_name("irsa");
    // Way B: the example's values annotate the operator's own ServiceAccount.
    let values = root().join("examples/irsa/helm-values.yaml");
    let o = helm(
        env,
        &["template", &release, chart, "-f", values.to_str().unwrap()],
    );
    assert!(o.status.success(), "helm template: {}", cluster::out(&o));
    let rendered = String::from_utf8_lossy(&o.stdout).to_string();
    let sa_doc = rendered
        .split("\n---")
        .find(|d| d.contains("kind: ServiceAccount"))
        .unwrap_or_default();
    assert!(
        sa_doc.contains("eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/eso-rs"),
        "{sa_doc}"
    );
    // Default values grant TokenRequests; the value turns them off.
    assert!(rendered.contains("serviceaccounts/token"));
    let o = helm(
        env,
        &[
            "template",
            &release,
            chart,
            "--set",
            "rbac.serviceAccountTokenCreate=false",
        ],
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("serviceaccounts/token"));
    let o = helm(
        env,
        &[
            "install",
            &release,
            chart,
            "-n",
            &release_ns,
            "--set",
            "installCRDs=false",
            "--set",
            "rbac.serviceAccountTokenCreate=false",
        ],
    );
    assert!(o.status.success(), "helm install: {}", cluster::out(&o));
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
    assert!(!sa.is_empty(), "chart created no ServiceAccount");

    let ns = namespace(env, "compat-irsa");
    let key = testenv::unique_name("irsa-db");
    moto::create_secret(
        &moto_url(env),
        &key,
        r#"{"username":"dbuser","password":"pw"}"#,
    )
    .expect("create");
    let dir = root().join("examples/irsa");
    for f in [
        "service-account.yaml",
        "secret-store.yaml",
        "external-secret.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(f))
            .expect("example")
            .replace("key: my-db-secret", &format!("key: {key}"));
        let o = env.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &text);
        assert!(o.status.success(), "{f}: {}", cluster::out(&o));
    }
    let as_sa = testenv::TestEnv {
        kubeconfig: service_account_kubeconfig(env, &release_ns, &sa),
        ..env.clone()
    };
    let op = Operator::start(&as_sa, &ns, None, &[]);
    let denied = eventually(
        Duration::from_secs(60),
        &format!("store Ready=False\n{}", op.log()),
        || {
            let r = store_ready(env, &ns, "aws-irsa");
            r.starts_with("False/").then_some(r)
        },
    );
    assert!(
        denied.contains("rbac.serviceAccountTokenCreate=true") && denied.contains("secrets-reader"),
        "the message names the chart value and the ServiceAccount: {denied}"
    );
    assert!(secret_value(env, &ns, "my-db-secret", "password").is_none());

    let o = helm(
        env,
        &[
            "upgrade",
            &release,
            chart,
            "-n",
            &release_ns,
            "--reset-values",
            "--set",
            "installCRDs=false",
        ],
    );
    assert!(o.status.success(), "helm upgrade: {}", cluster::out(&o));
    eventually(
        Duration::from_secs(90),
        &format!("synced through IRSA after the upgrade\n{}", op.log()),
        || {
            (secret_value(env, &ns, "my-db-secret", "password").as_deref() == Some("pw"))
                .then_some(())
        },
    );
    assert_eq!(
        secret_value(env, &ns, "my-db-secret", "username").as_deref(),
        Some("dbuser")
    );
    eventually(Duration::from_secs(60), "store Ready=True", || {
        store_ready(env, &ns, "aws-irsa")
            .starts_with("True/")
            .then_some(())
    });
    drop(op);
    let _ = helm(env, &["uninstall", &release, "-n", &release_ns]);
    for n in [&ns, &release_ns] {
        let _ = env.kubectl(&["delete", "namespace", n, "--wait=false"]);
    }
}
