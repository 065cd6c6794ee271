//! End to end: ClusterExternalSecret (issue #15) with the real `eso-operator` binary against
//! testenv (kube-apiserver, etcd, kube-controller-manager with the garbage collector and the
//! namespace controller).
//!
//! A ClusterExternalSecret is cluster-scoped and fans out across namespaces, so each test runs
//! a cluster-wide operator (no `--namespace`). Tests in this file take one lock, so only one
//! such operator runs at a time; every object carries a unique name, so one test's objects never
//! concern another. The behaviour tests use a `fake` ClusterSecretStore (no AWS). The AWS call
//! count over 200 namespaces runs on a private control plane (`eso_testsupport::private`) with
//! moto behind the counting proxy, so nothing else in the cluster can add AWS calls;
//! `ESO_CES_NAMESPACES` (default 200) sizes it.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, private, proxy, testenv};

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster::{apply, eventually, get, secret_value};
use operator::Operator;

const CES: &str = "clusterexternalsecrets.external-secrets.io";
const ES: &str = "externalsecrets.external-secrets.io";
/// Namespace changes must be honoured through the watch: far below any refresh interval used.
const AT_ONCE: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cluster-wide operator.
fn operator(env: &testenv::TestEnv, tag: &str, aws: Option<&str>) -> Operator {
    Operator::start_named(env, "", &testenv::unique_name(tag), aws, &[])
}

fn fake_cluster_store(name: &str, data: &[(&str, &str)]) -> String {
    let entries: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("      - {{key: {k}, value: '{v}'}}"))
        .collect();
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: {name}}}\nspec:\n  provider:\n    fake:\n      data:\n{}\n",
        entries.join("\n")
    )
}

/// A ClusterExternalSecret reading `key` from the ClusterSecretStore `store` into `v`, with
/// `extra` spec lines (two-space indented).
fn ces(name: &str, store: &str, key: &str, extra: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: {name}}}\nspec:\n  refreshTime: 1h\n{extra}  externalSecretSpec:\n    refreshInterval: 1h\n    secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n    data:\n    - {{secretKey: v, remoteRef: {{key: {key}}}}}\n"
    )
}

fn create_ns(env: &testenv::TestEnv, name: &str, labels: &[(&str, &str)]) {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: '{v}'")).collect();
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{}}}}}\n",
            l.join(", ")
        ),
    );
}

fn es_exists(env: &testenv::TestEnv, ns: &str, name: &str) -> bool {
    !get(env, &["get", ES, name, "-n", ns, "-o", "name"]).is_empty()
}

fn ces_get(env: &testenv::TestEnv, name: &str, jsonpath: &str) -> String {
    get(
        env,
        &["get", CES, name, "-o", &format!("jsonpath={jsonpath}")],
    )
}

fn provisioned(env: &testenv::TestEnv, name: &str) -> String {
    ces_get(env, name, "{.status.provisionedNamespaces}")
}

fn json_list(items: &[&str]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(","))
}

fn ready(env: &testenv::TestEnv, name: &str) -> String {
    ces_get(
        env,
        name,
        "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].message}",
    )
}

fn cleanup(env: &testenv::TestEnv, ces_name: &str, store: &str, namespaces: &[&str]) {
    let _ = env.kubectl(&[
        "delete",
        CES,
        ces_name,
        "--wait=false",
        "--ignore-not-found",
    ]);
    let _ = env.kubectl(&[
        "delete",
        "clustersecretstores.external-secrets.io",
        store,
        "--wait=false",
        "--ignore-not-found",
    ]);
    for ns in namespaces {
        let _ = env.kubectl(&[
            "delete",
            "namespace",
            ns,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// `namespaces` (by name), `namespaceSelectors` and the deprecated `namespaceSelector` are
/// ORed; each chosen namespace gets an ExternalSecret named `externalSecretName`, with the
/// metadata, ESO's controller owner reference, and a synced Secret; the status lists the
/// provisioned namespaces (sorted) and the name, Ready=True; `kubectl get` shows ESO's columns.
#[test]
fn fans_out_by_names_and_selectors_with_esos_status_and_owner() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let id = testenv::unique_name("fan");
    let store = format!("{id}-store");
    let named = format!("{id}-named");
    let sel1 = format!("{id}-sel1");
    let sel2 = format!("{id}-sel2");
    let old = format!("{id}-old");
    let other = format!("{id}-other");
    create_ns(env, &named, &[]);
    create_ns(env, &sel1, &[("ces-team", &id)]);
    create_ns(env, &sel2, &[("ces-team", &id), ("tier", "b")]);
    create_ns(env, &old, &[("ces-old", &id)]);
    create_ns(env, &other, &[("ces-team", "someone-else")]);
    apply(env, &fake_cluster_store(&store, &[("db", "s3cr3t")]));
    let extra = format!(
        "  externalSecretName: fanned\n  externalSecretMetadata:\n    labels: {{app: db}}\n    annotations: {{note: from-ces}}\n  namespaces: [{named}]\n  namespaceSelectors:\n  - matchLabels: {{ces-team: '{id}'}}\n  namespaceSelector:\n    matchLabels: {{ces-old: '{id}'}}\n"
    );
    apply(env, &ces(&id, &store, "db", &extra));
    let op = operator(env, "ces-fan", None);
    let mut want = vec![named.as_str(), old.as_str(), sel1.as_str(), sel2.as_str()];
    want.sort();
    eventually(
        Duration::from_secs(60),
        &format!("provisioned {want:?}\n{}", op.log()),
        || (provisioned(env, &id) == json_list(&want)).then_some(()),
    );
    for ns in &want {
        eventually(Duration::from_secs(60), &format!("Secret in {ns}"), || {
            (secret_value(env, ns, "fanned", "v").as_deref() == Some("s3cr3t")).then_some(())
        });
        let owner = get(
            env,
            &[
                "get",
                ES,
                "fanned",
                "-n",
                ns,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].apiVersion}/{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}/{.metadata.ownerReferences[0].blockOwnerDeletion}",
            ],
        );
        assert_eq!(
            owner,
            format!("external-secrets.io/v1/ClusterExternalSecret/{id}/true/true")
        );
        let meta = get(
            env,
            &[
                "get",
                ES,
                "fanned",
                "-n",
                ns,
                "-o",
                "jsonpath={.metadata.labels.app}/{.metadata.annotations.note}",
            ],
        );
        assert_eq!(meta, "db/from-ces");
    }
    assert!(
        !es_exists(env, &other, "fanned"),
        "unselected namespace got one"
    );
    assert_eq!(ces_get(env, &id, "{.status.externalSecretName}"), "fanned");
    assert_eq!(ready(env, &id), "True/");
    assert_eq!(ces_get(env, &id, "{.status.failedNamespaces}"), "");
    // ESO's printer columns.
    let table = get(env, &["get", CES, &id]);
    let header = table.lines().next().unwrap_or_default().to_string();
    for col in ["NAME", "STORE", "REFRESH INTERVAL", "READY"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table.contains(&store) && table.contains("1h") && table.contains("True"),
        "{table}"
    );
    // No finalizer on the ClusterExternalSecret or on any namespace.
    assert_eq!(ces_get(env, &id, "{.metadata.finalizers}"), "");
    for ns in &want {
        assert_eq!(
            get(
                env,
                &[
                    "get",
                    "namespace",
                    ns,
                    "-o",
                    "jsonpath={.metadata.finalizers}"
                ]
            ),
            ""
        );
    }
    // The short name and the v1beta1 version are served.
    assert!(get(env, &["get", "ces", &id, "-o", "name"]).contains(&id));
    assert!(
        !get(
            env,
            &[
                "get",
                "clusterexternalsecrets.v1beta1.external-secrets.io",
                &id,
                "-o",
                "name"
            ]
        )
        .is_empty()
    );
    drop(op);
    cleanup(env, &id, &store, &[&named, &sel1, &sel2, &old, &other]);
}

/// Namespaces that appear, get labelled, lose the label or are deleted after the
/// ClusterExternalSecret (refreshTime 1h) are honoured at once through the Namespace watch.
#[test]
fn namespace_changes_after_the_ces_are_honoured_at_once() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let id = testenv::unique_name("nsw");
    let store = format!("{id}-store");
    let a = format!("{id}-a");
    let b = format!("{id}-b");
    apply(env, &fake_cluster_store(&store, &[("db", "one")]));
    let extra = format!("  namespaceSelectors:\n  - matchLabels: {{ces-sel: '{id}'}}\n");
    apply(env, &ces(&id, &store, "db", &extra));
    let op = operator(env, "ces-nsw", None);
    eventually(
        AT_ONCE,
        &format!("Ready with nothing\n{}", op.log()),
        || (ready(env, &id) == "True/").then_some(()),
    );
    assert_eq!(provisioned(env, &id), "");

    // A labelled namespace created later.
    create_ns(env, &a, &[("ces-sel", &id)]);
    eventually(
        AT_ONCE,
        &format!("ES in new namespace\n{}", op.log()),
        || (secret_value(env, &a, &id, "v").as_deref() == Some("one")).then_some(()),
    );
    // An unlabelled namespace, labelled afterwards.
    create_ns(env, &b, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!es_exists(env, &b, &id));
    let o = env.kubectl(&["label", "namespace", &b, &format!("ces-sel={id}")]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(
        AT_ONCE,
        &format!("ES after labelling\n{}", op.log()),
        || es_exists(env, &b, &id).then_some(()),
    );
    let mut both = vec![a.as_str(), b.as_str()];
    both.sort();
    eventually(AT_ONCE, "both provisioned", || {
        (provisioned(env, &id) == json_list(&both)).then_some(())
    });
    // Label removed: the ExternalSecret goes (and its Secret with it, through its owner).
    let o = env.kubectl(&["label", "namespace", &a, "ces-sel-"]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(
        AT_ONCE,
        &format!("ES removed from {a}\n{}", op.log()),
        || (!es_exists(env, &a, &id)).then_some(()),
    );
    eventually(AT_ONCE, "status without a", || {
        (provisioned(env, &id) == json_list(&[&b])).then_some(())
    });
    eventually(Duration::from_secs(60), "Secret garbage-collected", || {
        secret_value(env, &a, &id, "v").is_none().then_some(())
    });
    // Namespace deleted while the ClusterExternalSecret exists: it goes away (nothing holds it)
    // and leaves the status.
    let o = env.kubectl(&["delete", "namespace", &b, "--wait=false"]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(Duration::from_secs(90), "namespace deleted", || {
        get(env, &["get", "namespace", &b, "-o", "name"])
            .is_empty()
            .then_some(())
    });
    eventually(AT_ONCE, &format!("status empty\n{}", op.log()), || {
        provisioned(env, &id).is_empty().then_some(())
    });
    assert_eq!(ready(env, &id), "True/");
    // Recreated with the label: provisioned again.
    eventually(Duration::from_secs(30), "recreate namespace", || {
        env.kubectl_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {b}, labels: {{ces-sel: '{id}'}}}}\n"),
        )
        .status
        .success()
        .then_some(())
    });
    eventually(
        AT_ONCE,
        &format!("ES in recreated namespace\n{}", op.log()),
        || es_exists(env, &b, &id).then_some(()),
    );
    drop(op);
    cleanup(env, &id, &store, &[&a, &b]);
}

/// An ExternalSecret of the same name that the ClusterExternalSecret does not own is never
/// changed; the namespace is listed in failedNamespaces with ESO's reason and Ready=False; once
/// that ExternalSecret is deleted the namespace is provisioned at once.
#[test]
fn a_foreign_external_secret_is_left_untouched_and_reported() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let id = testenv::unique_name("foreign");
    let store = format!("{id}-store");
    let mine = format!("{id}-mine");
    let theirs = format!("{id}-theirs");
    create_ns(env, &mine, &[]);
    create_ns(env, &theirs, &[]);
    apply(
        env,
        &fake_cluster_store(&store, &[("db", "ces-value"), ("other", "their-value")]),
    );
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: shared, namespace: {theirs}, labels: {{owner: them}}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: other}}}}\n"
        ),
    );
    let rv_before = get(
        env,
        &[
            "get",
            ES,
            "shared",
            "-n",
            &theirs,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    let extra = format!("  externalSecretName: shared\n  namespaces: [{mine}, {theirs}]\n");
    apply(env, &ces(&id, &store, "db", &extra));
    let op = operator(env, "ces-foreign", None);
    eventually(
        Duration::from_secs(60),
        &format!("failed namespace reported\n{}", op.log()),
        || {
            (ces_get(
                env,
                &id,
                "{.status.failedNamespaces[0].namespace}|{.status.failedNamespaces[0].reason}",
            ) == format!("{theirs}|external secret already exists in namespace"))
            .then_some(())
        },
    );
    assert_eq!(provisioned(env, &id), json_list(&[&mine]));
    assert_eq!(ready(env, &id), "False/one or more namespaces failed");
    eventually(
        Duration::from_secs(60),
        "their Secret synced by the ES controller",
        || {
            (secret_value(env, &theirs, "shared", "v").as_deref() == Some("their-value"))
                .then_some(())
        },
    );
    // Untouched: no owner reference, same spec and labels. (The ES controller writes its status,
    // which moves the resourceVersion, so compare what the CES would have written.)
    let theirs_now = get(
        env,
        &[
            "get",
            ES,
            "shared",
            "-n",
            &theirs,
            "-o",
            "jsonpath={.metadata.ownerReferences}|{.metadata.labels}|{.spec.data[0].remoteRef.key}|{.metadata.generation}",
        ],
    );
    assert_eq!(
        theirs_now, "|{\"owner\":\"them\"}|other|1",
        "rv before {rv_before}"
    );
    eventually(Duration::from_secs(60), "our Secret synced", || {
        (secret_value(env, &mine, "shared", "v").as_deref() == Some("ces-value")).then_some(())
    });
    // Their ExternalSecret deleted: the namespace is provisioned at once.
    let o = env.kubectl(&["delete", ES, "shared", "-n", &theirs]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    let mut both = vec![mine.as_str(), theirs.as_str()];
    both.sort();
    eventually(
        AT_ONCE,
        &format!("provisioned after the foreign ES left\n{}", op.log()),
        || (provisioned(env, &id) == json_list(&both) && ready(env, &id) == "True/").then_some(()),
    );
    assert_eq!(ces_get(env, &id, "{.status.failedNamespaces}"), "");
    eventually(Duration::from_secs(60), "now ours", || {
        (secret_value(env, &theirs, "shared", "v").as_deref() == Some("ces-value")).then_some(())
    });
    drop(op);
    cleanup(env, &id, &store, &[&mine, &theirs]);
}

/// Editing the ClusterExternalSecret's externalSecretSpec reaches every ExternalSecret (and
/// Secret); editing a created ExternalSecret by hand is reverted; changing externalSecretName
/// replaces the ExternalSecrets (old name deleted).
#[test]
fn spec_edits_propagate_drift_is_reverted_and_rename_replaces() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let id = testenv::unique_name("edit");
    let store = format!("{id}-store");
    let n1 = format!("{id}-1");
    let n2 = format!("{id}-2");
    create_ns(env, &n1, &[("ces-edit", &id)]);
    create_ns(env, &n2, &[("ces-edit", &id)]);
    apply(
        env,
        &fake_cluster_store(&store, &[("first", "v1"), ("second", "v2")]),
    );
    let extra = format!("  namespaceSelectors:\n  - matchLabels: {{ces-edit: '{id}'}}\n");
    apply(env, &ces(&id, &store, "first", &extra));
    let op = operator(env, "ces-edit", None);
    for ns in [&n1, &n2] {
        eventually(
            Duration::from_secs(60),
            &format!("v1 in {ns}\n{}", op.log()),
            || (secret_value(env, ns, &id, "v").as_deref() == Some("v1")).then_some(()),
        );
    }
    let uid_before = get(
        env,
        &["get", ES, &id, "-n", &n1, "-o", "jsonpath={.metadata.uid}"],
    );
    apply(env, &ces(&id, &store, "second", &extra));
    for ns in [&n1, &n2] {
        eventually(
            Duration::from_secs(60),
            &format!("v2 in {ns}\n{}", op.log()),
            || (secret_value(env, ns, &id, "v").as_deref() == Some("v2")).then_some(()),
        );
    }
    // Updated in place, not recreated.
    assert_eq!(
        get(
            env,
            &["get", ES, &id, "-n", &n1, "-o", "jsonpath={.metadata.uid}"]
        ),
        uid_before
    );
    // A hand edit of a created ExternalSecret is reverted (the owner is woken by the change).
    let o = env.kubectl(&[
        "patch",
        ES,
        &id,
        "-n",
        &n1,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/data/0/remoteRef/key","value":"first"}]"#,
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(AT_ONCE, &format!("drift reverted\n{}", op.log()), || {
        (get(
            env,
            &[
                "get",
                ES,
                &id,
                "-n",
                &n1,
                "-o",
                "jsonpath={.spec.data[0].remoteRef.key}",
            ],
        ) == "second")
            .then_some(())
    });
    // A deleted ExternalSecret comes back.
    let o = env.kubectl(&["delete", ES, &id, "-n", &n2]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(AT_ONCE, &format!("recreated\n{}", op.log()), || {
        es_exists(env, &n2, &id).then_some(())
    });
    // Renamed: the old ExternalSecrets go, the new ones come.
    let renamed = format!("{extra}  externalSecretName: renamed\n");
    apply(env, &ces(&id, &store, "second", &renamed));
    for ns in [&n1, &n2] {
        eventually(AT_ONCE, &format!("renamed in {ns}\n{}", op.log()), || {
            (es_exists(env, ns, "renamed") && !es_exists(env, ns, &id)).then_some(())
        });
    }
    eventually(AT_ONCE, "status name", || {
        (ces_get(env, &id, "{.status.externalSecretName}") == "renamed").then_some(())
    });
    drop(op);
    cleanup(env, &id, &store, &[&n1, &n2]);
}

/// Deleting the ClusterExternalSecret removes every ExternalSecret it created (owner references,
/// the garbage collector) and their Secrets; there is no finalizer to hold anything.
#[test]
fn deleting_the_ces_removes_its_external_secrets() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let id = testenv::unique_name("del");
    let store = format!("{id}-store");
    let n1 = format!("{id}-1");
    let n2 = format!("{id}-2");
    create_ns(env, &n1, &[]);
    create_ns(env, &n2, &[]);
    apply(env, &fake_cluster_store(&store, &[("db", "x")]));
    apply(
        env,
        &ces(&id, &store, "db", &format!("  namespaces: [{n1}, {n2}]\n")),
    );
    let op = operator(env, "ces-del", None);
    for ns in [&n1, &n2] {
        eventually(
            Duration::from_secs(60),
            &format!("Secret in {ns}\n{}", op.log()),
            || secret_value(env, ns, &id, "v").map(|_| ()),
        );
    }
    // Deleted with the operator stopped: the garbage collector alone cleans up.
    drop(op);
    let o = env.kubectl(&["delete", CES, &id, "--timeout=30s"]);
    assert!(
        o.status.success(),
        "CES deletion must not hang: {}",
        cluster::out(&o)
    );
    for ns in [&n1, &n2] {
        eventually(
            Duration::from_secs(60),
            &format!("ES and Secret gone in {ns}"),
            || {
                (!es_exists(env, ns, &id) && secret_value(env, ns, &id, "v").is_none())
                    .then_some(())
            },
        );
    }
    cleanup(env, &id, &store, &[&n1, &n2]);
}

/// Objects ESO left: a ClusterExternalSecret with ESO's cleanup finalizer, a Namespace with
/// ESO's per-CES finalizer and an ExternalSecret ESO created (ESO's owner reference). The
/// ExternalSecret is adopted in place (same uid), both finalizers are removed, and deleting the
/// namespace and then the ClusterExternalSecret never hangs.
#[test]
fn objects_left_by_eso_are_taken_over_and_never_block_deletion() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let id = testenv::unique_name("takeover");
    let store = format!("{id}-store");
    let ns = format!("{id}-ns");
    let ns_fin = format!("externalsecrets.external-secrets.io/ces-{id}");
    apply(env, &fake_cluster_store(&store, &[("db", "adopted")]));
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, finalizers: ['{ns_fin}']}}\n"
        ),
    );
    let mut doc = ces(&id, &store, "db", &format!("  namespaces: [{ns}]\n"));
    doc = doc.replace(
        &format!("metadata: {{name: {id}}}"),
        &format!("metadata: {{name: {id}, finalizers: ['externalsecrets.external-secrets.io/clusterexternalsecret-cleanup']}}"),
    );
    apply(env, &doc);
    let uid = ces_get(env, &id, "{.metadata.uid}");
    assert!(!uid.is_empty());
    // What ESO's CreateOrUpdate leaves (status included would need a subresource write; the
    // spec and owner reference are what matter).
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {id}\n  namespace: {ns}\n  ownerReferences:\n  - {{apiVersion: external-secrets.io/v1, kind: ClusterExternalSecret, name: {id}, uid: {uid}, controller: true, blockOwnerDeletion: true}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: db}}}}\n"
        ),
    );
    let es_uid = get(
        env,
        &["get", ES, &id, "-n", &ns, "-o", "jsonpath={.metadata.uid}"],
    );
    let op = operator(env, "ces-takeover", None);
    eventually(
        Duration::from_secs(60),
        &format!("finalizers removed\n{}", op.log()),
        || {
            (ces_get(env, &id, "{.metadata.finalizers}").is_empty()
                && get(
                    env,
                    &[
                        "get",
                        "namespace",
                        &ns,
                        "-o",
                        "jsonpath={.metadata.finalizers}",
                    ],
                )
                .is_empty())
            .then_some(())
        },
    );
    eventually(
        Duration::from_secs(60),
        &format!("provisioned\n{}", op.log()),
        || (provisioned(env, &id) == json_list(&[&ns]) && ready(env, &id) == "True/").then_some(()),
    );
    assert_eq!(
        get(
            env,
            &["get", ES, &id, "-n", &ns, "-o", "jsonpath={.metadata.uid}"]
        ),
        es_uid
    );
    eventually(Duration::from_secs(60), "Secret", || {
        (secret_value(env, &ns, &id, "v").as_deref() == Some("adopted")).then_some(())
    });
    // The namespace can be deleted while the ClusterExternalSecret selects it.
    let o = env.kubectl(&["delete", "namespace", &ns, "--timeout=90s"]);
    assert!(o.status.success(), "namespace stuck: {}", cluster::out(&o));
    // A finalizer ESO adds to a namespace while we run is removed too.
    let ns2 = format!("{id}-late");
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns2}, finalizers: ['externalsecrets.external-secrets.io/ces-somebody']}}\n"
        ),
    );
    eventually(
        AT_ONCE,
        &format!("late finalizer removed\n{}", op.log()),
        || {
            get(
                env,
                &[
                    "get",
                    "namespace",
                    &ns2,
                    "-o",
                    "jsonpath={.metadata.finalizers}",
                ],
            )
            .is_empty()
            .then_some(())
        },
    );
    let o = env.kubectl(&["delete", CES, &id, "--timeout=30s"]);
    assert!(
        o.status.success(),
        "CES deletion hangs: {}",
        cluster::out(&o)
    );
    drop(op);
    cleanup(env, &id, &store, &[&ns, &ns2]);
}

/// GetSecretValue + BatchGetSecretValue calls seen by the proxy.
fn reads(p: &proxy::Proxy) -> u64 {
    p.counts()
        .iter()
        .filter(|(k, _)| k.contains("GetSecretValue"))
        .map(|(_, v)| *v)
        .sum()
}

/// The AWS economy: one ClusterExternalSecret over N (default 200) namespaces reading one
/// remote secret costs one read per refresh window, not N (ESO: N). Private control plane,
/// moto behind the counting proxy, a ClusterSecretStore with fixed credentials.
#[test]
fn one_ces_over_many_namespaces_reads_the_remote_secret_once_per_window() {
    let Some(shared) = cluster::env() else { return };
    let _serial = serial();
    let n: usize = std::env::var("ESO_CES_NAMESPACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let p = private::Private::up("ces-scale");
    let env = &p.env;
    let url = env
        .moto_url
        .clone()
        .or_else(|| shared.moto_url.clone())
        .expect("moto");
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let key = testenv::unique_name("ces-shared");
    moto::create_secret(&url, &key, r#"{"password":"pw"}"#).expect("create secret");
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ces-creds}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: aws-creds, namespace: ces-creds}\nstringData: {access-key: testing, secret-key: testing}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: aws}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {name: aws-creds, key: access-key, namespace: ces-creds}\n          secretAccessKeySecretRef: {name: aws-creds, key: secret-key, namespace: ces-creds}\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: fan-{i}, labels: {{ces-scale: 'yes'}}}}\n"
        ));
    }
    apply(env, &yaml);
    let window = 30u64;
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: shared}}\nspec:\n  namespaceSelectors:\n  - matchLabels: {{ces-scale: 'yes'}}\n  externalSecretSpec:\n    refreshInterval: {window}s\n    secretStoreRef: {{name: aws, kind: ClusterSecretStore}}\n    data:\n    - {{secretKey: password, remoteRef: {{key: {key}, property: password}}}}\n"
        ),
    );
    let start = Instant::now();
    let op = Operator::start_named(
        env,
        "",
        &format!("ces-scale-{}", std::process::id()),
        Some(&proxy.url),
        &[],
    );
    let synced = || {
        get(
            env,
            &["get", ES, "-A", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"],
        )
        .lines()
        .filter(|l| *l == "True")
        .count()
    };
    eventually(
        Duration::from_secs(400),
        &format!("{n} ExternalSecrets Ready\n{}", op.log()),
        || (synced() == n).then_some(()),
    );
    let first = reads(&proxy);
    println!(
        "{n} namespaces provisioned and synced in {:.1} s with {first} read call(s) ({:?})",
        start.elapsed().as_secs_f64(),
        proxy.counts()
    );
    eventually(
        Duration::from_secs(60),
        "status lists every namespace",
        || {
            (ces_get(env, "shared", "{.status.provisionedNamespaces}")
                .matches("fan-")
                .count()
                == n)
                .then_some(())
        },
    );
    // Three refresh windows.
    let windows = 3u64;
    std::thread::sleep(Duration::from_secs(window * windows + window / 2));
    let later = reads(&proxy) - first;
    println!(
        "{n} ExternalSecrets over {windows} refresh windows of {window} s: {later} read call(s) ({:?})",
        proxy.counts()
    );
    assert!(first <= 2, "initial sync of {n} namespaces: {first} reads");
    assert!(
        later <= windows + 1,
        "{later} reads over {windows} windows for one remote secret and {n} namespaces"
    );
    // Each ExternalSecret was applied once: the status writes of 200 ExternalSecrets (each
    // waking the ClusterExternalSecret through the child watch) and the refreshes cost no
    // further apply, because an unchanged child is skipped.
    let applies = op.log().matches("applied ExternalSecret").count();
    println!("ExternalSecret applies by the ClusterExternalSecret controller: {applies}");
    assert_eq!(applies, n, "one apply per namespace");
    drop(op);
}

/// The chart's RBAC is enough for the ClusterExternalSecret controller: with the operator
/// authenticated as the chart's ServiceAccount, ExternalSecrets are created (server-side apply
/// with blockOwnerDeletion), deleted when their namespace stops matching, ESO's finalizers are
/// removed from the ClusterExternalSecret and a Namespace, and the status is written.
#[test]
fn the_charts_rbac_runs_the_cluster_external_secret_controller() {
    let Some(env) = cluster::env() else { return };
    let _serial = serial();
    let chart = cluster::root().join("deploy/charts/eso-rs");
    let release_ns = cluster::namespace(env, "ces-helm");
    let release = testenv::unique_name("cesrel");
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
    let id = testenv::unique_name("rbac");
    let store = format!("{id}-store");
    let ns = format!("{id}-ns");
    let fin = format!("externalsecrets.external-secrets.io/ces-{id}");
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ces-rbac: '{id}'}}, finalizers: ['{fin}']}}\n"
        ),
    );
    apply(env, &fake_cluster_store(&store, &[("db", "rbac-ok")]));
    let doc = ces(&id, &store, "db", &format!("  namespaceSelectors:\n  - matchLabels: {{ces-rbac: '{id}'}}\n")).replace(
        &format!("metadata: {{name: {id}}}"),
        &format!("metadata: {{name: {id}, finalizers: ['externalsecrets.external-secrets.io/clusterexternalsecret-cleanup']}}"),
    );
    apply(env, &doc);
    let op = operator(&as_sa, "ces-rbac", None);
    eventually(
        Duration::from_secs(60),
        &format!("Secret as the chart SA\n{}", op.log()),
        || (secret_value(env, &ns, &id, "v").as_deref() == Some("rbac-ok")).then_some(()),
    );
    eventually(
        AT_ONCE,
        &format!("finalizers removed and status\n{}", op.log()),
        || {
            (ces_get(env, &id, "{.metadata.finalizers}").is_empty()
                && get(
                    env,
                    &[
                        "get",
                        "namespace",
                        &ns,
                        "-o",
                        "jsonpath={.metadata.finalizers}",
                    ],
                )
                .is_empty()
                && provisioned(env, &id) == json_list(&[&ns]))
            .then_some(())
        },
    );
    let o = env.kubectl(&["label", "namespace", &ns, "ces-rbac-"]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(
        AT_ONCE,
        &format!("ES deleted as the chart SA\n{}", op.log()),
        || (!es_exists(env, &ns, &id) && provisioned(env, &id).is_empty()).then_some(()),
    );
    assert!(!op.log().contains("forbidden"), "{}", op.log());
    drop(op);
    let _ = cluster::helm(env, &["uninstall", &release, "-n", &release_ns]);
    cleanup(env, &id, &store, &[&ns, &release_ns]);
}
