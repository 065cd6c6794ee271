//! End to end: ClusterPushSecret (issue #15) with the real `eso-operator` binary against testenv
//! (kube-apiserver, etcd, kube-controller-manager with the garbage collector) and moto, AWS
//! calls through the counting proxy.
//!
//! A ClusterPushSecret is cluster-scoped, so the test runs a cluster-wide operator (no
//! `--namespace`); tests in this file take one lock and every object carries a unique name.
//! Each selected namespace holds its own Secret `src` and a SecretStore `aws` whose `prefix` is
//! the namespace, so the one fanned-out PushSecret spec pushes every namespace's Secret to its
//! own remote secret `<namespace>/<id>/db`.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cluster::{apply, eventually, get};
use operator::{Operator, moto_url};
use serde_json::Value;

const CPS: &str = "clusterpushsecrets.external-secrets.io";
const PS: &str = "pushsecrets.external-secrets.io";
const T: Duration = Duration::from_secs(60);
/// Namespace changes must be honoured through the watch: far below the refresh time (1h).
const AT_ONCE: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A namespace with `labels`, its Secret `src` (`password: <value>`) and an AWS SecretStore
/// `aws` (static keys) prefixing every remote key with `<namespace>/`.
fn team_namespace(env: &testenv::TestEnv, ns: &str, labels: &str, value: &str) {
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{{labels}}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: src, namespace: {ns}}}\nstringData: {{password: '{value}'}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: {ns}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      prefix: {ns}/\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n"
        ),
    );
}

/// The remote value (string, or binary, ESO's default push format, decoded as UTF-8); `None`
/// when absent.
fn remote(url: &str, id: &str) -> Option<String> {
    let out = moto::call(url, "GetSecretValue", &format!("{{\"SecretId\":\"{id}\"}}")).ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    if let Some(s) = v["SecretString"].as_str() {
        return Some(s.to_string());
    }
    let b = cluster::decode_b64(v["SecretBinary"].as_str()?)?;
    Some(String::from_utf8_lossy(&b).into_owned())
}

fn cps_get(env: &testenv::TestEnv, name: &str, jsonpath: &str) -> String {
    get(
        env,
        &["get", CPS, name, "-o", &format!("jsonpath={jsonpath}")],
    )
}

fn provisioned(env: &testenv::TestEnv, name: &str) -> String {
    cps_get(env, name, "{.status.provisionedNamespaces}")
}

fn json_list(items: &[&str]) -> String {
    let mut v: Vec<&str> = items.to_vec();
    v.sort();
    let q: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(","))
}

fn ps_exists(env: &testenv::TestEnv, ns: &str, name: &str) -> bool {
    !get(env, &["get", PS, name, "-n", ns, "-o", "name"]).is_empty()
}

fn label(env: &testenv::TestEnv, ns: &str, kv: &str) {
    let o = env.kubectl(&["label", "namespace", ns, kv, "--overwrite"]);
    assert!(o.status.success(), "{}", cluster::out(&o));
}

/// One ClusterPushSecret over labelled namespaces, followed over time:
/// - each selected namespace gets a PushSecret named `pushSecretName` with the metadata and
///   ESO's controller owner reference, and its own Secret reaches AWS; an unlabelled namespace
///   gets nothing; status lists the provisioned namespaces and the name; ESO's columns;
/// - a PushSecret of the same name not created by the ClusterPushSecret is left untouched and
///   its namespace reported in `failedNamespaces` (Ready False, ESO's message);
/// - a namespace labelled later is provisioned at once (watch, refreshTime 1h);
/// - a namespace whose label is removed loses its PushSecret at once;
/// - the ClusterPushSecret deleted (operator stopped): the garbage collector removes the
///   PushSecrets; the foreign one stays.
#[test]
fn fans_out_push_secrets_follows_namespace_labels_and_is_collected() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let id = testenv::unique_name("cps");
    let a = format!("{id}-a");
    let b = format!("{id}-b");
    let late = format!("{id}-late");
    let theirs = format!("{id}-theirs");
    let sel = format!("cps-team: '{id}'");
    team_namespace(env, &a, &sel, "value-a");
    team_namespace(env, &b, &sel, "value-b");
    team_namespace(env, &late, "", "value-late");
    team_namespace(env, &theirs, &sel, "value-theirs");
    // Theirs: a PushSecret of the same name pushing elsewhere, no owner reference.
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {{name: pushed, namespace: {theirs}, labels: {{owner: them}}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRefs: [{{name: aws}}]\n  selector: {{secret: {{name: src}}}}\n  data:\n  - match: {{secretKey: password, remoteRef: {{remoteKey: {id}/theirs}}}}\n"
        ),
    );
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1alpha1\nkind: ClusterPushSecret\nmetadata: {{name: {id}}}\nspec:\n  refreshTime: 1h\n  pushSecretName: pushed\n  pushSecretMetadata:\n    labels: {{app: db}}\n    annotations: {{note: from-cps}}\n  namespaceSelectors:\n  - matchLabels: {{cps-team: '{id}'}}\n  pushSecretSpec:\n    refreshInterval: 1h\n    secretStoreRefs: [{{name: aws}}]\n    selector: {{secret: {{name: src}}}}\n    data:\n    - match: {{secretKey: password, remoteRef: {{remoteKey: {id}/db}}}}\n"
        ),
    );
    let op = Operator::start_named(
        env,
        "",
        &testenv::unique_name("cps"),
        Some(&proxy.url),
        &["--remote-change-poll-interval", "0"],
    );
    eventually(T, &format!("provisioned a, b\n{}", op.log()), || {
        (provisioned(env, &id) == json_list(&[&a, &b])).then_some(())
    });
    for (ns, v) in [(&a, "value-a"), (&b, "value-b")] {
        eventually(T, &format!("{ns} pushed\n{}", op.log()), || {
            (remote(&url, &format!("{ns}/{id}/db")).as_deref() == Some(v)).then_some(())
        });
        let meta = get(
            env,
            &[
                "get",
                PS,
                "pushed",
                "-n",
                ns,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].apiVersion}/{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}|{.metadata.labels.app}/{.metadata.annotations.note}",
            ],
        );
        assert_eq!(
            meta,
            format!("external-secrets.io/v1alpha1/ClusterPushSecret/{id}/true|db/from-cps")
        );
    }
    assert!(
        !ps_exists(env, &late, "pushed"),
        "unselected namespace got one"
    );
    assert!(remote(&url, &format!("{late}/{id}/db")).is_none());
    assert_eq!(cps_get(env, &id, "{.status.pushSecretName}"), "pushed");
    // The foreign PushSecret: reported, untouched, pushing its own key only.
    eventually(T, &format!("foreign reported\n{}", op.log()), || {
        (cps_get(
            env,
            &id,
            "{.status.failedNamespaces[0].namespace}|{.status.failedNamespaces[0].reason}",
        ) == format!("{theirs}|push secret already exists in namespace"))
        .then_some(())
    });
    assert_eq!(
        cps_get(
            env,
            &id,
            "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].message}"
        ),
        "False/one or more namespaces failed"
    );
    let theirs_now = || {
        get(
            env,
            &[
                "get",
                PS,
                "pushed",
                "-n",
                &theirs,
                "-o",
                "jsonpath={.metadata.ownerReferences}|{.metadata.labels}|{.spec.data[0].match.remoteRef.remoteKey}|{.metadata.generation}",
            ],
        )
    };
    assert_eq!(
        theirs_now(),
        format!("|{{\"owner\":\"them\"}}|{id}/theirs|1")
    );
    eventually(T, "their own push done", || {
        remote(&url, &format!("{theirs}/{id}/theirs")).map(|_| ())
    });
    assert!(remote(&url, &format!("{theirs}/{id}/db")).is_none());
    // ESO's printer columns.
    let table = get(env, &["get", CPS, &id]);
    let header = table.lines().next().unwrap_or_default().to_string();
    for col in ["NAME", "AGE", "STATUS"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(table.contains("NamespacesFailed"), "{table}");
    // No finalizer on the ClusterPushSecret.
    assert_eq!(cps_get(env, &id, "{.metadata.finalizers}"), "");

    // Labelled later: provisioned and pushed at once.
    label(env, &late, &format!("cps-team={id}"));
    eventually(AT_ONCE, &format!("late provisioned\n{}", op.log()), || {
        (provisioned(env, &id) == json_list(&[&a, &b, &late])).then_some(())
    });
    eventually(AT_ONCE, &format!("late pushed\n{}", op.log()), || {
        (remote(&url, &format!("{late}/{id}/db")).as_deref() == Some("value-late")).then_some(())
    });
    // Label removed: its PushSecret is removed at once (deletionPolicy None: the remote stays).
    label(env, &a, "cps-team-");
    eventually(
        AT_ONCE,
        &format!("PushSecret gone from a\n{}", op.log()),
        || {
            (!ps_exists(env, &a, "pushed") && provisioned(env, &id) == json_list(&[&b, &late]))
                .then_some(())
        },
    );
    assert_eq!(
        remote(&url, &format!("{a}/{id}/db")).as_deref(),
        Some("value-a")
    );
    // The foreign one is still reported and untouched.
    assert_eq!(
        theirs_now(),
        format!("|{{\"owner\":\"them\"}}|{id}/theirs|1")
    );
    // Every push went through the counting proxy: one CreateSecret per remote secret.
    assert_eq!(proxy.counts().get("CreateSecret").copied().unwrap_or(0), 4);

    // Deleted with the operator stopped: the garbage collector alone removes the PushSecrets.
    drop(op);
    let o = env.kubectl(&["delete", CPS, &id, "--timeout=30s"]);
    assert!(
        o.status.success(),
        "CPS deletion must not hang: {}",
        cluster::out(&o)
    );
    for ns in [&b, &late] {
        eventually(T, &format!("PushSecret gone from {ns}"), || {
            (!ps_exists(env, ns, "pushed")).then_some(())
        });
    }
    assert!(
        ps_exists(env, &theirs, "pushed"),
        "the foreign PushSecret was collected"
    );
    for ns in [&a, &b, &late, &theirs] {
        let _ = env.kubectl(&[
            "delete",
            "namespace",
            ns,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// The operator runs as the Helm chart's ServiceAccount (the chart's ClusterRole only): the
/// ClusterPushSecret fans out (create with blockOwnerDeletion), writes its status, the
/// PushSecret pushes to AWS, and a namespace that loses its label has its PushSecret deleted; no
/// request is forbidden.
#[test]
fn the_charts_rbac_runs_the_cluster_push_secret_controller() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let chart = cluster::root().join("deploy/charts/eso-rs");
    let release_ns = cluster::namespace(env, "cps-helm");
    let release = testenv::unique_name("cpsrel");
    let o = cluster::helm(
        env,
        &[
            "install",
            &release,
            chart.to_str().unwrap(),
            "-n",
            &release_ns,
            "--set",
            "installCRDs=false",
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
    assert!(!sa.is_empty());
    let as_sa = testenv::TestEnv {
        kubeconfig: cluster::service_account_kubeconfig(env, &release_ns, &sa),
        ..env.clone()
    };
    let id = testenv::unique_name("cpsrbac");
    let ns = format!("{id}-ns");
    team_namespace(env, &ns, &format!("cps-rbac: '{id}'"), "rbac-ok");
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1alpha1\nkind: ClusterPushSecret\nmetadata: {{name: {id}}}\nspec:\n  namespaceSelectors:\n  - matchLabels: {{cps-rbac: '{id}'}}\n  pushSecretSpec:\n    refreshInterval: 1h\n    secretStoreRefs: [{{name: aws}}]\n    selector: {{secret: {{name: src}}}}\n    data:\n    - match: {{secretKey: password, remoteRef: {{remoteKey: {id}/db}}}}\n"
        ),
    );
    let op = Operator::start_named(
        &as_sa,
        "",
        &testenv::unique_name("cps-rbac"),
        Some(&proxy.url),
        &["--remote-change-poll-interval", "0"],
    );
    eventually(T, &format!("pushed as the chart SA\n{}", op.log()), || {
        (remote(&url, &format!("{ns}/{id}/db")).as_deref() == Some("rbac-ok")
            && provisioned(env, &id) == json_list(&[&ns]))
        .then_some(())
    });
    label(env, &ns, "cps-rbac-");
    eventually(
        AT_ONCE,
        &format!("PushSecret deleted as the chart SA\n{}", op.log()),
        || (!ps_exists(env, &ns, &id) && provisioned(env, &id).is_empty()).then_some(()),
    );
    assert!(!op.log().contains("forbidden"), "{}", op.log());
    drop(op);
    let _ = cluster::helm(env, &["uninstall", &release, "-n", &release_ns]);
    let _ = env.kubectl(&["delete", CPS, &id, "--wait=false", "--ignore-not-found"]);
    for n in [&ns, &release_ns] {
        let _ = env.kubectl(&[
            "delete",
            "namespace",
            n,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Over time: an edit of `pushSecretSpec` reaches the PushSecret and AWS (new remote key); a
/// hand edit of the created PushSecret is reverted at once; a `pushSecretName` change replaces
/// the PushSecret (old name deleted); an invalid selector (admitted: the schema does not check
/// operators) fails the whole selection as ESO (`unknown`) and deletes nothing.
#[test]
fn spec_edits_propagate_drift_is_reverted_rename_replaces_bad_selector_reported() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let id = testenv::unique_name("cpsedit");
    let ns = format!("{id}-ns");
    team_namespace(env, &ns, &format!("cps-edit: '{id}'"), "v1");
    let cps = |name: &str, key: &str, selector: &str| {
        format!(
            "apiVersion: external-secrets.io/v1alpha1\nkind: ClusterPushSecret\nmetadata: {{name: {id}}}\nspec:\n  refreshTime: 1h\n  pushSecretName: {name}\n  namespaceSelectors:\n  - {selector}\n  pushSecretSpec:\n    refreshInterval: 1h\n    secretStoreRefs: [{{name: aws}}]\n    selector: {{secret: {{name: src}}}}\n    data:\n    - match: {{secretKey: password, remoteRef: {{remoteKey: {key}}}}}\n"
        )
    };
    let good = format!("matchLabels: {{cps-edit: '{id}'}}");
    apply(env, &cps("first", &format!("{id}/one"), &good));
    let op = Operator::start_named(
        env,
        "",
        &testenv::unique_name("cps-edit"),
        Some(&proxy.url),
        &["--remote-change-poll-interval", "0"],
    );
    eventually(T, &format!("first pushed\n{}", op.log()), || {
        (remote(&url, &format!("{ns}/{id}/one")).as_deref() == Some("v1")).then_some(())
    });
    let key_of = |name: &str| {
        get(
            env,
            &[
                "get",
                PS,
                name,
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.data[0].match.remoteRef.remoteKey}",
            ],
        )
    };
    // Spec edit: the PushSecret follows, the new remote key is written.
    apply(env, &cps("first", &format!("{id}/two"), &good));
    eventually(
        AT_ONCE,
        &format!("spec edit reached AWS\n{}", op.log()),
        || {
            (key_of("first") == format!("{id}/two")
                && remote(&url, &format!("{ns}/{id}/two")).as_deref() == Some("v1"))
            .then_some(())
        },
    );
    // Hand edit of the created PushSecret: reverted.
    let o = env.kubectl(&[
        "patch",
        PS,
        "first",
        "-n",
        &ns,
        "--type=json",
        "-p",
        "[{\"op\":\"replace\",\"path\":\"/spec/data/0/match/remoteRef/remoteKey\",\"value\":\"hand/edit\"}]",
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(
        AT_ONCE,
        &format!("hand edit reverted\n{}", op.log()),
        || (key_of("first") == format!("{id}/two")).then_some(()),
    );
    // Rename: the new name is created, the old one deleted.
    apply(env, &cps("second", &format!("{id}/two"), &good));
    eventually(AT_ONCE, &format!("renamed\n{}", op.log()), || {
        (ps_exists(env, &ns, "second")
            && !ps_exists(env, &ns, "first")
            && cps_get(env, &id, "{.status.pushSecretName}") == "second"
            && provisioned(env, &id) == json_list(&[&ns]))
        .then_some(())
    });
    // A bad selector: reported, nothing deleted.
    apply(
        env,
        &cps(
            "second",
            &format!("{id}/two"),
            "matchExpressions: [{key: k, operator: Bogus, values: [v]}]",
        ),
    );
    eventually(
        AT_ONCE,
        &format!("bad selector reported\n{}", op.log()),
        || {
            cps_get(
                env,
                &id,
                "{.status.failedNamespaces[0].namespace}|{.status.failedNamespaces[0].reason}",
            )
            .starts_with("unknown|")
            .then_some(())
        },
    );
    assert!(
        ps_exists(env, &ns, "second"),
        "a bad selector deleted a PushSecret"
    );
    assert_eq!(provisioned(env, &id), json_list(&[&ns]));
    drop(op);
    let _ = env.kubectl(&["delete", CPS, &id, "--wait=false", "--ignore-not-found"]);
    let _ = env.kubectl(&[
        "delete",
        "namespace",
        &ns,
        "--wait=false",
        "--ignore-not-found",
    ]);
}
