//! End to end: the real `eso-operator` binary against a real kube-apiserver + etcd +
//! kube-controller-manager and moto (from `cargo xtask testenv up`). Each test runs in its own
//! namespace with its own operator process scoped to it.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::time::Duration;

use cluster::{
    apply, es_ready, eventually, get, helm, namespace, root, secret_value,
    service_account_kubeconfig,
};
use operator::{Operator, aws_store_and_creds, fake_store, moto_url};

const DB: &str = r#"{"username":"dbuser","password":"dbpassword","host":"dbhost","port":"5432"}"#;

/// The seed manifests, with only namespaces, names, region and the refresh interval adapted.
fn seed(
    dir: &str,
    file: &str,
    ns: &str,
    cred_ns: &str,
    store: &str,
    key: &str,
    refresh: &str,
) -> String {
    let src = if file == "aws-secret.yaml" {
        "seed"
    } else {
        dir
    };
    std::fs::read_to_string(root().join("examples").join(src).join(file))
        .expect("seed file")
        .replace("namespace: default", &format!("namespace: {ns}"))
        .replace(
            "namespace: external-secrets",
            &format!("namespace: {cred_ns}"),
        )
        .replace("name: aws-secret-store", &format!("name: {store}"))
        .replace("key: my-db-secret", &format!("key: {key}"))
        .replace("region: your-region", "region: us-east-1")
        .replace(
            "refreshInterval: 1h",
            &format!("refreshInterval: {refresh}"),
        )
}

fn seed_flow(dir: &str, store_file: &str) {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-seed");
    let cred_ns = if store_file == "secret-store.yaml" {
        ns.clone()
    } else {
        namespace(env, "e2e-creds")
    };
    let store = testenv::unique_name("aws-store");
    let key = testenv::unique_name("my-db-secret");
    moto::create_secret(&moto_url(env), &key, DB).expect("create remote secret");

    let mut es = seed(
        dir,
        "external-secret.yaml",
        &ns,
        &cred_ns,
        &store,
        &key,
        "2s",
    );
    if store_file == "secret-store.yaml" {
        es = es.replace("kind: ClusterSecretStore", "kind: SecretStore");
    }
    apply(
        env,
        &seed(dir, "aws-secret.yaml", &ns, &cred_ns, &store, &key, "2s"),
    );
    apply(
        env,
        &seed(dir, store_file, &ns, &cred_ns, &store, &key, "2s"),
    );
    apply(env, &es);
    let op = Operator::start(env, &ns, None, &[]);

    for (k, v) in [
        ("username", "dbuser"),
        ("password", "dbpassword"),
        ("host", "dbhost"),
        ("port", "5432"),
    ] {
        eventually(
            Duration::from_secs(60),
            &format!("key {k} synced\n{}", op.log()),
            || (secret_value(env, &ns, "my-db-secret", k).as_deref() == Some(v)).then_some(()),
        );
    }
    let ready = es_ready(env, &ns, "my-db-secret");
    assert!(
        ready.starts_with("True/SecretSynced/secret synced"),
        "{ready}"
    );
    // ESO's metadata for in-place takeover.
    assert_eq!(
        get(
            env,
            &[
                "get",
                "secret",
                "my-db-secret",
                "-n",
                &ns,
                "-o",
                "jsonpath={.metadata.labels.reconcile\\.external-secrets\\.io/managed}"
            ]
        ),
        "true"
    );
    assert_eq!(
        get(
            env,
            &[
                "get",
                "secret",
                "my-db-secret",
                "-n",
                &ns,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].kind}"
            ]
        ),
        "ExternalSecret"
    );
    assert_eq!(
        get(
            env,
            &[
                "get",
                "secret",
                "my-db-secret",
                "-n",
                &ns,
                "-o",
                "jsonpath={.metadata.annotations.reconcile\\.external-secrets\\.io/data-hash}"
            ]
        )
        .len(),
        56
    );
    // The store proved access.
    let kind = if store_file == "secret-store.yaml" {
        "secretstores.external-secrets.io"
    } else {
        "clustersecretstores.external-secrets.io"
    };
    let mut args = vec![
        "get",
        kind,
        store.as_str(),
        "-o",
        "jsonpath={.status.conditions[0].status}/{.status.conditions[0].reason}",
    ];
    if store_file == "secret-store.yaml" {
        args.extend(["-n", ns.as_str()]);
    }
    eventually(Duration::from_secs(30), "store Ready", || {
        (get(env, &args) == "True/Valid").then_some(())
    });

    // Edit in AWS: the Secret follows within the refresh interval.
    moto::put_value(&moto_url(env), &key, &DB.replace("dbpassword", "rotated")).expect("put value");
    eventually(Duration::from_secs(30), "rotated password", || {
        (secret_value(env, &ns, "my-db-secret", "password").as_deref() == Some("rotated"))
            .then_some(())
    });

    // Deleting the ExternalSecret garbage-collects the Owner Secret (kube-controller-manager).
    let o = env.kubectl(&[
        "delete",
        "externalsecrets.external-secrets.io",
        "my-db-secret",
        "-n",
        &ns,
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(Duration::from_secs(60), "Secret garbage-collected", || {
        get(
            env,
            &["get", "secret", "my-db-secret", "-n", &ns, "-o", "name"],
        )
        .is_empty()
        .then_some(())
    });
    drop(op);
    if store_file != "secret-store.yaml" {
        let _ = env.kubectl(&[
            "delete",
            "clustersecretstores.external-secrets.io",
            &store,
            "--wait=false",
        ]);
        let _ = env.kubectl(&["delete", "namespace", &cred_ns, "--wait=false"]);
    }
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn seed_flow_cluster_secret_store_v1beta1() {
    seed_flow("seed", "cluster-secret-store.yaml");
}

#[test]
fn seed_flow_secret_store_v1() {
    seed_flow("v1", "secret-store.yaml");
}

#[test]
fn fake_provider_drift_repair_and_conflict() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-fake");
    apply(
        env,
        &fake_store(
            &ns,
            "fake",
            &[("app", r#"{"user":"admin","pass":"s3cr3t"}"#)],
        ),
    );
    let es = |name: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target: {{name: app}}\n\
             \x20 data:\n  - secretKey: user\n    remoteRef: {{key: app, property: user}}\n\
             \x20 dataFrom:\n  - extract: {{key: app}}\n"
        )
    };
    apply(env, &es("first"));
    let op = Operator::start(env, &ns, None, &[]);
    eventually(Duration::from_secs(60), "fake sync", || {
        (secret_value(env, &ns, "app", "pass").as_deref() == Some("s3cr3t")).then_some(())
    });
    assert_eq!(
        secret_value(env, &ns, "app", "user").as_deref(),
        Some("admin")
    );

    // Drift: an edited value is restored, a foreign key removed, a deleted Secret recreated.
    let o = env.kubectl(&[
        "patch",
        "secret",
        "app",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"pass":"aGFja2Vk","extra":"eA=="}}"#,
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(Duration::from_secs(30), "drift repaired", || {
        (secret_value(env, &ns, "app", "pass").as_deref() == Some("s3cr3t")
            && secret_value(env, &ns, "app", "extra").is_none())
        .then_some(())
    });
    let o = env.kubectl(&["delete", "secret", "app", "-n", &ns]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(Duration::from_secs(30), "Secret recreated", || {
        (secret_value(env, &ns, "app", "pass").as_deref() == Some("s3cr3t")).then_some(())
    });

    // Conflict: a second ExternalSecret targeting the same Secret is refused; the Secret does not flap.
    apply(env, &es("second"));
    let msg = eventually(Duration::from_secs(30), "conflict reported", || {
        let r = es_ready(env, &ns, "second");
        r.starts_with("False/SecretSyncedError/target is owned by another ExternalSecret")
            .then_some(r)
    });
    assert!(msg.contains("first"), "{msg}");
    let rv1 = get(
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
    std::thread::sleep(Duration::from_secs(5));
    let rv2 = get(
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
    assert_eq!(rv1, rv2, "the Secret flapped");
    assert!(es_ready(env, &ns, "first").starts_with("True/SecretSynced"));
    drop(op);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn pre_existing_foreign_secret_is_not_overwritten() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-foreign");
    apply(env, &fake_store(&ns, "fake", &[("k", "remote")]));
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: precious, namespace: {ns}}}\nstringData: {{admin: keep-me}}\n"
        ),
    );
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: grab, namespace: {ns}}}\n\
         spec:\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  target: {{name: precious}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let _op = Operator::start(env, &ns, None, &[]);
    let r = eventually(Duration::from_secs(30), "refusal", || {
        // The first attempt may race the store cache ("not found"); wait for the ownership verdict.
        let r = es_ready(env, &ns, "grab");
        (r.starts_with("False/") && r.contains("refusing")).then_some(r)
    });
    assert!(r.contains("refusing to overwrite"), "{r}");
    assert_eq!(
        secret_value(env, &ns, "precious", "admin").as_deref(),
        Some("keep-me")
    );
    assert!(secret_value(env, &ns, "precious", "v").is_none());
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn datafrom_find_and_template_from_moto() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-find");
    let prefix = testenv::unique_name("app");
    let url = moto_url(env);
    moto::create_secret_with_tags(
        &url,
        &format!("{prefix}/db"),
        "db-value",
        &[("team", &prefix)],
    )
    .expect("create");
    moto::create_secret_with_tags(
        &url,
        &format!("{prefix}/api"),
        "api-value",
        &[("team", &prefix)],
    )
    .expect("create");
    moto::create_secret(
        &url,
        &format!("{prefix}-json"),
        r#"{"user":"u1","port":5432}"#,
    )
    .expect("create");
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: {ns}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: found, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  dataFrom:\n  - find:\n      tags: {{team: {prefix}}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: templated, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  target:\n    template:\n      type: kubernetes.io/basic-auth\n      data:\n        username: '{{{{ .user | upper }}}}'\n        url: 'postgres://{{{{ .user }}}}@db:{{{{ .port }}}}'\n  dataFrom:\n  - extract: {{key: {prefix}-json}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    let db_key = format!("{prefix}_db");
    eventually(
        Duration::from_secs(60),
        &format!("find results\n{}", op.log()),
        || (secret_value(env, &ns, "found", &db_key).as_deref() == Some("db-value")).then_some(()),
    );
    assert_eq!(
        secret_value(env, &ns, "found", &format!("{prefix}_api")).as_deref(),
        Some("api-value")
    );
    eventually(
        Duration::from_secs(60),
        &format!("template\n{}", op.log()),
        || (secret_value(env, &ns, "templated", "username").as_deref() == Some("U1")).then_some(()),
    );
    assert_eq!(
        secret_value(env, &ns, "templated", "url").as_deref(),
        Some("postgres://u1@db:5432")
    );
    assert_eq!(
        get(
            env,
            &[
                "get",
                "secret",
                "templated",
                "-n",
                &ns,
                "-o",
                "jsonpath={.type}"
            ]
        ),
        "kubernetes.io/basic-auth"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn deletion_policy_delete_removes_secret_when_remote_is_gone() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-delete");
    let key = testenv::unique_name("gone");
    let url = moto_url(env);
    moto::create_secret(&url, &key, r#"{"a":"1"}"#).expect("create");
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: {ns}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: del, namespace: {ns}}}\nspec:\n  refreshInterval: 2s\n  secretStoreRef: {{name: aws}}\n  target: {{deletionPolicy: Delete}}\n  dataFrom:\n  - extract: {{key: {key}}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: keep, namespace: {ns}}}\nspec:\n  refreshInterval: 2s\n  secretStoreRef: {{name: aws}}\n  dataFrom:\n  - extract: {{key: {key}}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    for s in ["del", "keep"] {
        eventually(
            Duration::from_secs(60),
            &format!("{s} synced\n{}", op.log()),
            || (secret_value(env, &ns, s, "a").as_deref() == Some("1")).then_some(()),
        );
    }
    moto::force_delete(&url, &key).expect("delete remote");
    eventually(
        Duration::from_secs(30),
        "Delete policy removes the Secret",
        || {
            get(env, &["get", "secret", "del", "-n", &ns, "-o", "name"])
                .is_empty()
                .then_some(())
        },
    );
    let r = eventually(Duration::from_secs(30), "del status", || {
        let r = es_ready(env, &ns, "del");
        r.starts_with("True/SecretDeleted").then_some(r)
    });
    assert!(r.contains("DeletionPolicy=Delete"));
    // Retain: the Secret stays as it was, Ready=False.
    eventually(Duration::from_secs(30), "keep reports the error", || {
        es_ready(env, &ns, "keep")
            .starts_with("False/")
            .then_some(())
    });
    assert_eq!(secret_value(env, &ns, "keep", "a").as_deref(), Some("1"));
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn namespace_isolation_at_runtime() {
    let Some(env) = cluster::env() else { return };
    let a = namespace(env, "e2e-iso-a");
    let b = namespace(env, "e2e-iso-b");
    apply(env, &fake_store(&a, "only-a", &[("k", "v")]));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: steal, namespace: {b}}}\n\
         spec:\n  secretStoreRef: {{name: only-a, kind: SecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let _op = Operator::start(env, &b, None, &[]);
    let r = eventually(Duration::from_secs(30), "not found", || {
        let r = es_ready(env, &b, "steal");
        r.starts_with("False/").then_some(r)
    });
    assert!(r.contains("not found"), "{r}");
    assert!(get(env, &["get", "secret", "steal", "-n", &b, "-o", "name"]).is_empty());
    let _ = env.kubectl(&["delete", "namespace", &a, &b, "--wait=false"]);
}

/// A ClusterSecretStore's namespace conditions: a namespace that does not match is refused
/// (Ready=False, nothing written); labelling it admits it at the next reconcile; removing the
/// label refuses it again and the synced Secret is kept, not emptied.
#[test]
fn cluster_store_conditions_follow_namespace_labels() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-cond");
    let store = format!("cond-{ns}");
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
         spec:\n  refreshInterval: 2s\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    let r = eventually(
        Duration::from_secs(30),
        &format!("refused while the namespace does not match\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "es");
            r.starts_with("False/").then_some(r)
        },
    );
    assert!(r.contains("not allowed from namespace"), "{r}");
    assert!(get(env, &["get", "secret", "es", "-n", &ns, "-o", "name"]).is_empty());

    let label = format!("team={ns}");
    let _ = env.kubectl(&["label", "namespace", &ns, &label]);
    eventually(
        Duration::from_secs(30),
        &format!("admitted after the label\n{}", op.log()),
        || (secret_value(env, &ns, "es", "v").as_deref() == Some("v1")).then_some(()),
    );

    let _ = env.kubectl(&["label", "namespace", &ns, "team-"]);
    let r = eventually(
        Duration::from_secs(30),
        &format!("refused again after the label is removed\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "es");
            r.starts_with("False/").then_some(r)
        },
    );
    assert!(r.contains("not allowed from namespace"), "{r}");
    assert_eq!(
        secret_value(env, &ns, "es", "v").as_deref(),
        Some("v1"),
        "the synced Secret is kept"
    );
    let _ = env.kubectl(&["delete", "clustersecretstore", &store, "--wait=false"]);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// AWS unreachable for longer than two refresh intervals: the Secret never changes, Ready=False
/// with the reason, and it recovers within about one refresh once AWS is back.
#[test]
fn outage_keeps_the_secret_and_recovers() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-outage");
    let key = testenv::unique_name("outage");
    let url = moto_url(env);
    moto::create_secret(&url, &key, r#"{"a":"before"}"#).expect("create");
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    apply(env, &aws_store_and_creds(&ns));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: o, namespace: {ns}}}\nspec:\n  refreshInterval: 3s\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: a, remoteRef: {{key: {key}, property: a}}}}\n"
        ),
    );
    let op = Operator::start(env, &ns, Some(&proxy.url), &["--provider-cache-ttl", "1s"]);
    eventually(
        Duration::from_secs(60),
        &format!("synced\n{}", op.log()),
        || (secret_value(env, &ns, "o", "a").as_deref() == Some("before")).then_some(()),
    );
    let rv = get(
        env,
        &[
            "get",
            "secret",
            "o",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    for fault in [
        proxy::Fault::Drop,
        proxy::Fault::Throttle,
        proxy::Fault::Unavailable,
    ] {
        proxy.inject(fault, u32::MAX);
        let r = eventually(
            Duration::from_secs(60),
            &format!("Ready=False under {fault:?}\n{}", op.log()),
            || {
                let r = es_ready(env, &ns, "o");
                r.starts_with("False/SecretSyncedError/could not get secret data from provider")
                    .then_some(r)
            },
        );
        std::thread::sleep(Duration::from_secs(7));
        assert_eq!(
            secret_value(env, &ns, "o", "a").as_deref(),
            Some("before"),
            "{fault:?}: {r}"
        );
        assert_eq!(
            get(
                env,
                &[
                    "get",
                    "secret",
                    "o",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.metadata.resourceVersion}"
                ]
            ),
            rv,
            "{fault:?}: Secret written during the outage"
        );
        proxy.inject(proxy::Fault::None, 0);
        eventually(
            Duration::from_secs(30),
            &format!("recovery after {fault:?}\n{}", op.log()),
            || es_ready(env, &ns, "o").starts_with("True/").then_some(()),
        );
    }
    // A change made while AWS was down arrives after recovery.
    moto::put_value(&url, &key, r#"{"a":"after"}"#).expect("put");
    eventually(Duration::from_secs(30), "new value after recovery", || {
        (secret_value(env, &ns, "o", "a").as_deref() == Some("after")).then_some(())
    });
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The guide's v1beta1 manifests as written (ClusterSecretStore, `refreshInterval: 1h`) in a
/// fresh namespace, with a fresh remote secret. Returns (namespace, credentials namespace, key).
fn apply_seed_as_written(env: &testenv::TestEnv, prefix: &str) -> (String, String, String) {
    let ns = namespace(env, prefix);
    let cred_ns = namespace(env, "e2e-creds");
    let store = testenv::unique_name("aws-store");
    let key = testenv::unique_name("my-db-secret");
    moto::create_secret(&moto_url(env), &key, DB).expect("create remote secret");
    for f in [
        "aws-secret.yaml",
        "cluster-secret-store.yaml",
        "external-secret.yaml",
    ] {
        let text = seed("seed", f, &ns, &cred_ns, &store, &key, "1h");
        if f == "external-secret.yaml" {
            assert!(text.contains("refreshInterval: 1h"), "{text}");
        }
        apply(env, &text);
    }
    (ns, cred_ns, key)
}

/// The guide's promise with its manifests unchanged (`refreshInterval: 1h`): edit the secret in
/// AWS and the Secret follows within about a minute. Remote change detection (one ListSecrets per
/// store per poll) makes it true; the poll is shortened to 2s here.
#[test]
fn seed_flow_as_written_follows_aws_edits_within_the_poll_interval() {
    let Some(env) = cluster::env() else { return };
    let (ns, _cred_ns, key) = apply_seed_as_written(env, "e2e-asis");
    let op = Operator::start(env, &ns, None, &["--remote-change-poll-interval", "2s"]);
    eventually(
        Duration::from_secs(60),
        &format!("initial sync\n{}", op.log()),
        || {
            (secret_value(env, &ns, "my-db-secret", "password").as_deref() == Some("dbpassword"))
                .then_some(())
        },
    );
    // LastChangedDate has one-second resolution: make the edit land in a later second.
    std::thread::sleep(Duration::from_millis(1100));
    moto::put_value(
        &moto_url(env),
        &key,
        &DB.replace("dbpassword", "edited-in-aws"),
    )
    .expect("put value");
    eventually(
        Duration::from_secs(20),
        &format!("AWS edit seen with refreshInterval 1h\n{}", op.log()),
        || {
            (secret_value(env, &ns, "my-db-secret", "password").as_deref() == Some("edited-in-aws"))
                .then_some(())
        },
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The Helm chart: lint, server-side strict validation of what it renders, install, the seed
/// flow run with the chart ServiceAccount's own identity (its RBAC is enough), requests outside
/// that RBAC refused (TokenRequests granted, as ESO's chart does), and `helm uninstall` leaving
/// synced Secrets and the CRDs in place.
#[test]
fn helm_chart_installs_and_its_rbac_runs_the_seed_flow() {
    let Some(env) = cluster::env() else { return };
    let chart = root().join("deploy/charts/eso-rs");
    let chart = chart.to_str().unwrap();
    let o = helm(env, &["lint", chart]);
    assert!(o.status.success(), "helm lint: {}", cluster::out(&o));

    let release_ns = namespace(env, "e2e-helm");
    let release = testenv::unique_name("rel");
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
        ],
    );
    assert!(o.status.success(), "helm template: {}", cluster::out(&o));
    let rendered = String::from_utf8_lossy(&o.stdout).to_string();
    let o = env.kubectl_stdin(
        &[
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            &release_ns,
            "-f",
            "-",
        ],
        &rendered,
    );
    assert!(
        o.status.success(),
        "rendered chart fails strict server-side validation: {}",
        cluster::out(&o)
    );
    // The kustomize base (generated from the chart, checked in CI) validates server-side too.
    // A server-side dry run does not create the base's namespace, and its namespaced objects
    // are refused when that namespace does not exist yet (it may or may not, depending on the
    // other tests): create it first.
    let base = root().join("deploy/manifests");
    let _ = env.kubectl(&["create", "namespace", "external-secrets"]);
    let o = env.kubectl(&["apply", "--dry-run=server", "-k", base.to_str().unwrap()]);
    assert!(o.status.success(), "deploy/manifests: {}", cluster::out(&o));
    // With CRDs: they validate too and carry the keep policy.
    let o = helm(env, &["template", &release, chart, "-n", &release_ns]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("helm.sh/resource-policy: keep"));

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

    // Least privilege: outside the chart's rules, requests are refused.
    let who = format!("system:serviceaccount:{release_ns}:{sa}");
    for (verb, resource) in [
        ("list", "pods"),
        ("delete", "clustersecretstores.external-secrets.io"),
        ("create", "deployments.apps"),
    ] {
        let o = env.kubectl(&["auth", "can-i", verb, resource, "--as", &who, "-A"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "no",
            "{who} may {verb} {resource}"
        );
    }
    // TokenRequests for auth.jwt stores are granted by default, as in ESO's chart. (The
    // subresource needs --subresource: `can-i create serviceaccounts/token` asks about a
    // ServiceAccount named "token".)
    let o = env.kubectl(&[
        "auth",
        "can-i",
        "create",
        "serviceaccounts",
        "--subresource=token",
        "--as",
        &who,
        "-A",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "yes");

    // The seed flow, with the operator authenticated as the chart's ServiceAccount.
    let (ns, cred_ns, _key) = apply_seed_as_written(env, "e2e-helm-app");
    let as_sa = testenv::TestEnv {
        kubeconfig: service_account_kubeconfig(env, &release_ns, &sa),
        ..env.clone()
    };
    let op = Operator::start(&as_sa, &ns, None, &[]);
    eventually(
        Duration::from_secs(60),
        &format!("seed flow as the chart ServiceAccount\n{}", op.log()),
        || {
            (secret_value(env, &ns, "my-db-secret", "password").as_deref() == Some("dbpassword"))
                .then_some(())
        },
    );
    let ready = es_ready(env, &ns, "my-db-secret");
    assert!(ready.starts_with("True/SecretSynced"), "{ready}");
    drop(op);

    // helm uninstall keeps every synced Secret (and the CRDs).
    let o = helm(env, &["uninstall", &release, "-n", &release_ns, "--wait"]);
    assert!(o.status.success(), "helm uninstall: {}", cluster::out(&o));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        secret_value(env, &ns, "my-db-secret", "password").as_deref(),
        Some("dbpassword")
    );
    assert!(
        env.kubectl(&["get", "crd", "externalsecrets.external-secrets.io"])
            .status
            .success()
    );
    for n in [&ns, &cred_ns, &release_ns] {
        let _ = env.kubectl(&["delete", "namespace", n, "--wait=false"]);
    }
}

/// `/readyz` answers 200 within `timeout`.
fn becomes_ready(op: &Operator, timeout: Duration) {
    eventually(timeout, &format!("/readyz 200\n{}", op.log()), || {
        operator::http_get(&op.health_addr, "/readyz")
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            .then_some(())
    });
}

/// `--enable-cluster-store-reconciler=false`: the operator becomes ready (it used to wait for a
/// ClusterSecretStore cache nothing fills: 503 forever), syncs SecretStore users, and an
/// ExternalSecret that references a ClusterSecretStore is told why it is refused instead of
/// being skipped silently (ESO) or told the store does not exist.
#[test]
fn cluster_store_reconciler_disabled_is_ready_and_refuses_cluster_stores_in_status() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-nocss");
    let css = testenv::unique_name("css");
    apply(env, &fake_store(&ns, "fake", &[("k", "v1")]));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: {css}}}\nspec:\n  provider:\n    fake:\n      data:\n      - {{key: k, value: v1}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: via-ss, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: via-css, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {css}, kind: ClusterSecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let op = Operator::start(env, &ns, None, &["--enable-cluster-store-reconciler=false"]);
    becomes_ready(&op, Duration::from_secs(30));
    eventually(Duration::from_secs(30), "SecretStore user synced", || {
        (secret_value(env, &ns, "via-ss", "v").as_deref() == Some("v1")).then_some(())
    });
    let refused = eventually(
        Duration::from_secs(30),
        &format!("ClusterSecretStore user refused\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "via-css");
            r.starts_with("False/").then_some(r)
        },
    );
    assert!(
        refused.contains("--enable-cluster-store-reconciler=false")
            && refused.contains(&css)
            && refused.contains("SecretStore in namespace"),
        "{refused}"
    );
    assert!(
        get(env, &["get", "secret", "via-css", "-n", &ns, "-o", "name"]).is_empty(),
        "no Secret for the refused ExternalSecret"
    );
    drop(op);
    let _ = env.kubectl(&[
        "delete",
        "clustersecretstores.external-secrets.io",
        &css,
        "--wait=false",
    ]);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The chart's namespace-scoped RBAC (`scopedRBAC: true`: a Role and RoleBinding, no ClusterRole)
/// is enough for the operator: it is run with the rendered chart's flags as the chart's
/// ServiceAccount, whose only grant is that Role. It becomes ready, syncs a SecretStore
/// user from moto, is never refused a request, and reports a ClusterSecretStore reference as
/// unsupported in this mode in the ExternalSecret's status.
#[test]
fn scoped_rbac_chart_runs_the_operator_with_a_role_only() {
    let Some(env) = cluster::env() else { return };
    let chart = root().join("deploy/charts/eso-rs");
    let chart = chart.to_str().unwrap();
    let release_ns = namespace(env, "e2e-scoped-rel");
    let ns = namespace(env, "e2e-scoped");
    let release = testenv::unique_name("rel");
    let render = |only: &str| {
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
                "scopedRBAC=true",
                "--set",
                &format!("scopedNamespace={ns}"),
                "--show-only",
                only,
            ],
        );
        assert!(o.status.success(), "helm template: {}", cluster::out(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let rbac = format!(
        "{}\n---\n{}",
        render("templates/serviceaccount.yaml"),
        render("templates/rbac.yaml")
    );
    assert!(
        !rbac.contains("ClusterRole"),
        "scoped RBAC renders a ClusterRole:\n{rbac}"
    );
    let deployment = render("templates/deployment.yaml");
    let args: Vec<String> = deployment
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- --"))
        .map(|a| format!("--{}", a.trim_matches('"')))
        .collect();
    assert!(args.contains(&format!("--namespace={ns}")), "{args:?}");
    let flag = "--enable-cluster-store-reconciler=false";
    assert!(args.iter().any(|a| a == flag), "chart flags: {args:?}");
    // The objects carry their namespaces (the ServiceAccount and leader election Role in the
    // release namespace, the controller Role and RoleBinding in the watched one).
    let o = env.kubectl_stdin(&["apply", "-f", "-"], &rbac);
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
    assert!(!sa.is_empty(), "chart rendered no ServiceAccount");
    let who = format!("system:serviceaccount:{release_ns}:{sa}");
    for (verb, resource, scope) in [
        ("list", "clustersecretstores.external-secrets.io", "-A"),
        ("list", "namespaces", "-A"),
        ("list", "externalsecrets.external-secrets.io", "-A"),
    ] {
        let o = env.kubectl(&["auth", "can-i", verb, resource, "--as", &who, scope]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "no",
            "{who} may {verb} {resource}"
        );
    }
    eventually(Duration::from_secs(30), "the Role is in effect", || {
        let o = env.kubectl(&[
            "auth",
            "can-i",
            "list",
            "externalsecrets.external-secrets.io",
            "--as",
            &who,
            "-n",
            &ns,
        ]);
        (String::from_utf8_lossy(&o.stdout).trim() == "yes").then_some(())
    });

    let key = testenv::unique_name("scoped");
    moto::create_secret(&moto_url(env), &key, DB).expect("create remote secret");
    let css = testenv::unique_name("css");
    apply(env, &aws_store_and_creds(&ns));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: {css}}}\nspec:\n  provider:\n    fake:\n      data:\n      - {{key: k, value: v1}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: db, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  data:\n  - {{secretKey: password, remoteRef: {{key: {key}, property: password}}}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: via-css, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {css}, kind: ClusterSecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let as_sa = testenv::TestEnv {
        kubeconfig: service_account_kubeconfig(env, &release_ns, &sa),
        ..env.clone()
    };
    // The chart's own flags (the Deployment never runs here: testenv has no kubelet).
    let op = Operator::start(&as_sa, &ns, None, &[flag]);
    becomes_ready(&op, Duration::from_secs(30));
    eventually(
        Duration::from_secs(60),
        &format!("synced as the scoped ServiceAccount\n{}", op.log()),
        || {
            (secret_value(env, &ns, "db", "password").as_deref() == Some("dbpassword"))
                .then_some(())
        },
    );
    let ready = es_ready(env, &ns, "db");
    assert!(ready.starts_with("True/SecretSynced"), "{ready}");
    let refused = eventually(
        Duration::from_secs(30),
        "ClusterSecretStore user refused",
        || {
            let r = es_ready(env, &ns, "via-css");
            r.starts_with("False/").then_some(r)
        },
    );
    assert!(
        refused.contains("namespace-scoped") && refused.contains("scopedRBAC"),
        "{refused}"
    );
    // The store proved access with the Role (status patch allowed).
    eventually(Duration::from_secs(30), "SecretStore Ready", || {
        (get(
            env,
            &[
                "get",
                "secretstores.external-secrets.io",
                "aws",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.conditions[0].status}",
            ],
        ) == "True")
            .then_some(())
    });
    let log = op.log().to_lowercase();
    assert!(
        !log.contains("forbidden"),
        "a request outside the Role was made:\n{}",
        op.log()
    );
    drop(op);
    let _ = env.kubectl(&[
        "delete",
        "clustersecretstores.external-secrets.io",
        &css,
        "--wait=false",
    ]);
    for n in [&ns, &release_ns] {
        let _ = env.kubectl(&["delete", "namespace", n, "--wait=false"]);
    }
}

/// A recognizable secret value pushed through failure paths (missing property, non-JSON value
/// with a property, template with a missing key, invalid keys from extract, a successful sync)
/// appears in no log line (debug level), Event or status message, raw or base64-encoded.
#[test]
fn sentinel_value_never_leaks_into_logs_events_status_or_metrics() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-sentinel");
    let sentinel = "S3ntinel-Value-7f3a91";
    let b64 = cluster::encode_b64(sentinel.as_bytes());
    let url = moto_url(env);
    let json_key = testenv::unique_name("sentinel-json");
    let text_key = testenv::unique_name("sentinel-text");
    moto::create_secret(
        &url,
        &json_key,
        &format!(r#"{{"pw":"{sentinel}","bad/key":"{sentinel}"}}"#),
    )
    .expect("create");
    moto::create_secret(&url, &text_key, sentinel).expect("create");
    apply(env, &aws_store_and_creds(&ns));
    let es = |name: &str, body: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  refreshInterval: 2s\n  secretStoreRef: {{name: aws}}\n{body}"
        )
    };
    apply(
        env,
        &es(
            "missing-property",
            &format!(
                "  data:\n  - {{secretKey: a, remoteRef: {{key: {json_key}, property: nope}}}}\n"
            ),
        ),
    );
    apply(
        env,
        &es(
            "not-json",
            &format!(
                "  data:\n  - {{secretKey: a, remoteRef: {{key: {text_key}, property: pw}}}}\n"
            ),
        ),
    );
    apply(
        env,
        &es(
            "bad-template",
            &format!(
                "  target:\n    template:\n      data: {{x: '{{{{ .pw }}}}{{{{ .missing }}}}'}}\n  data:\n  - {{secretKey: pw, remoteRef: {{key: {json_key}, property: pw}}}}\n"
            ),
        ),
    );
    apply(
        env,
        &es(
            "bad-keys",
            &format!(
                "  dataFrom:\n  - extract: {{key: {json_key}}}\n    rewrite:\n    - regexp: {{source: 'x', target: 'y'}}\n"
            ),
        ),
    );
    apply(
        env,
        &es(
            "good",
            &format!(
                "  data:\n  - {{secretKey: pw, remoteRef: {{key: {json_key}, property: pw}}}}\n"
            ),
        ),
    );
    let op = Operator::start(env, &ns, None, &[]);
    eventually(
        Duration::from_secs(60),
        &format!("good synced\n{}", op.log()),
        || (secret_value(env, &ns, "good", "pw").as_deref() == Some(sentinel)).then_some(()),
    );
    for name in ["missing-property", "not-json", "bad-template", "bad-keys"] {
        eventually(
            Duration::from_secs(60),
            &format!("{name} Ready=False"),
            || es_ready(env, &ns, name).starts_with("False/").then_some(()),
        );
    }
    std::thread::sleep(Duration::from_secs(5)); // a few failing retries
    let log = op.log();
    let events = get(env, &["get", "events", "-n", &ns, "-o", "yaml"]);
    let status = get(env, &["get", "externalsecrets", "-n", &ns, "-o", "yaml"]);
    let metrics = operator::http_get(&op.metrics_addr, "/metrics").expect("metrics answer");
    assert!(
        metrics.contains("externalsecret"),
        "the metrics endpoint serves the operator's metrics: {metrics}"
    );
    for (what, text) in [
        ("operator log", &log),
        ("events", &events),
        ("ExternalSecret status", &status),
        ("metrics", &metrics),
    ] {
        assert!(!text.contains(sentinel), "{what} contains the secret value");
        assert!(
            !text.contains(&b64),
            "{what} contains the base64 secret value"
        );
    }
    assert!(
        events.contains("does not exist in secret"),
        "events explain the failure: {events}"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// SIGKILL mid-run and restart: ExternalSecrets whose refreshTime is still fresh cause no AWS
/// read after the restart (no re-fetch storm) and no Secret write.
#[test]
fn restart_after_sigkill_makes_no_aws_calls_for_fresh_external_secrets() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-restart");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    apply(env, &aws_store_and_creds(&ns));
    let mut docs = String::new();
    for i in 0..20 {
        let key = testenv::unique_name(&format!("restart-{i}"));
        moto::create_secret(&url, &key, r#"{"v":"x"}"#).expect("create");
        docs.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{i}, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: {key}, property: v}}}}\n"
        ));
    }
    apply(env, &docs);
    let mut op = Operator::start(env, &ns, Some(&proxy.url), &[]);
    eventually(
        Duration::from_secs(60),
        &format!("20 synced\n{}", op.log()),
        || {
            (0..20)
                .all(|i| secret_value(env, &ns, &format!("es-{i}"), "v").as_deref() == Some("x"))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let versions = get(
        env,
        &[
            "get",
            "secrets",
            "-n",
            &ns,
            "-l",
            "reconcile.external-secrets.io/managed=true",
            "-o",
            "jsonpath={.items[*].metadata.resourceVersion}",
        ],
    );
    let reads = |p: &proxy::Proxy| {
        let c = p.counts();
        c.get("GetSecretValue").copied().unwrap_or(0)
            + c.get("BatchGetSecretValue").copied().unwrap_or(0)
    };
    let before = reads(&proxy);
    // SIGKILL: no graceful shutdown.
    let _ = op.child.kill();
    let _ = op.child.wait();
    op = Operator::start(env, &ns, Some(&proxy.url), &[]);
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        op.log().contains("caches synced"),
        "restarted operator never synced its caches\n{}",
        op.log()
    );
    assert_eq!(
        reads(&proxy),
        before,
        "AWS reads after a restart with fresh ExternalSecrets: {:?}",
        proxy.counts()
    );
    let after = get(
        env,
        &[
            "get",
            "secrets",
            "-n",
            &ns,
            "-l",
            "reconcile.external-secrets.io/managed=true",
            "-o",
            "jsonpath={.items[*].metadata.resourceVersion}",
        ],
    );
    assert_eq!(after, versions, "Secrets written after the restart");
    for i in 0..20 {
        assert!(es_ready(env, &ns, &format!("es-{i}")).starts_with("True/"));
    }
    drop(op);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Two replicas with leader election: only the Lease holder writes; SIGKILL the leader and the
/// standby takes over within the lease duration and keeps the Secret in sync.
#[test]
fn leader_election_fails_over_within_the_lease_duration() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-leader");
    apply(env, &fake_store(&ns, "fake", &[("k", "v1")]));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: led, namespace: {ns}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ),
    );
    let flags = [
        "--enable-leader-election",
        "--leader-election-namespace",
        ns.as_str(),
        "--leader-election-id",
        "eso-test",
        "--leader-election-lease-duration",
        "6s",
        "--leader-election-renew-deadline",
        "4s",
        "--leader-election-retry-period",
        "1s",
    ];
    let mut a = Operator::start(env, &ns, None, &flags);
    eventually(
        Duration::from_secs(60),
        &format!("leader A syncs\n{}", a.log()),
        || (secret_value(env, &ns, "led", "v").as_deref() == Some("v1")).then_some(()),
    );
    let holder = |env: &testenv::TestEnv| {
        get(
            env,
            &[
                "get",
                "lease",
                "eso-test",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
    };
    let first = holder(env);
    assert!(
        first.ends_with(&format!("_{}", a.child.id())),
        "lease held by {first:?}"
    );
    // The standby waits; it must not take the lease from a live leader.
    let mut b = Operator::start_named(env, &ns, &format!("{ns}-b"), None, &flags);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        holder(env),
        first,
        "the standby took the lease from a live leader"
    );

    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = std::time::Instant::now();
    let new_holder = eventually(
        Duration::from_secs(30),
        &format!("B takes the lease\n{}", b.log()),
        || {
            let h = holder(env);
            (h.ends_with(&format!("_{}", b.child.id()))).then_some(h)
        },
    );
    // B now serves: a remote change reaches the Secret.
    apply(env, &fake_store(&ns, "fake", &[("k", "v2")]));
    eventually(
        Duration::from_secs(30),
        &format!("B syncs\n{}", b.log()),
        || (secret_value(env, &ns, "led", "v").as_deref() == Some("v2")).then_some(()),
    );
    let failover = killed.elapsed();
    println!(
        "leader failover: lease to {new_holder} and a fresh sync {failover:?} after SIGKILL of the leader"
    );
    assert!(
        failover < Duration::from_secs(6 + 10),
        "failover took {failover:?}"
    );
    let _ = b.child.kill();
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// SIGTERM on the leader: the election thread releases the Lease before the process exits 0, so
/// the standby takes over at once instead of after the lease duration (15 s here).
#[test]
fn leader_releases_the_lease_on_sigterm() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-release");
    let flags = [
        "--enable-leader-election",
        "--leader-election-namespace",
        ns.as_str(),
        "--leader-election-id",
        "eso-release",
        "--leader-election-lease-duration",
        "15s",
        "--leader-election-renew-deadline",
        "10s",
        "--leader-election-retry-period",
        "1s",
    ];
    let holder = |env: &testenv::TestEnv| {
        get(
            env,
            &[
                "get",
                "lease",
                "eso-release",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
    };
    let mut a = Operator::start(env, &ns, None, &flags);
    eventually(
        Duration::from_secs(60),
        &format!("A leads\n{}", a.log()),
        || {
            holder(env)
                .ends_with(&format!("_{}", a.child.id()))
                .then_some(())
        },
    );
    let mut b = Operator::start_named(env, &ns, &format!("{ns}-b"), None, &flags);
    std::thread::sleep(Duration::from_secs(3));
    assert!(holder(env).ends_with(&format!("_{}", a.child.id())));

    let term = std::process::Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let sent = std::time::Instant::now();
    let status = eventually(
        Duration::from_secs(30),
        &format!("A exits on SIGTERM\n{}", a.log()),
        || a.child.try_wait().expect("try_wait"),
    );
    assert!(status.success(), "A exited with {status}\n{}", a.log());
    assert!(a.log().contains("released leadership"), "{}", a.log());
    eventually(
        Duration::from_secs(30),
        &format!("B takes the released Lease\n{}", b.log()),
        || {
            holder(env)
                .ends_with(&format!("_{}", b.child.id()))
                .then_some(())
        },
    );
    let took = sent.elapsed();
    println!("lease released on SIGTERM: the standby held it {took:?} after the signal");
    assert!(
        took < Duration::from_secs(10),
        "the standby waited {took:?}: the Lease was not released"
    );
    let _ = b.child.kill();
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A values file written for ESO's chart installs unchanged: shared names keep their meaning
/// (replicas, leader election, concurrency, `extraArgs` as a map, PDB, security contexts with
/// ESO's `enabled` switch), the objects pass server-side strict validation, and the ESO-only
/// values are listed as ignored in NOTES.
#[test]
fn helm_chart_takes_an_eso_values_file() {
    let Some(env) = cluster::env() else { return };
    let chart = root().join("deploy/charts/eso-rs");
    let values = chart.join("ci/eso-values.yaml");
    let (chart, values) = (chart.to_str().unwrap(), values.to_str().unwrap());
    let ns = namespace(env, "e2e-esovalues");
    let o = helm(
        env,
        &[
            "template",
            "esov",
            chart,
            "-n",
            &ns,
            "-f",
            values,
            "--set",
            "installCRDs=false",
        ],
    );
    assert!(o.status.success(), "helm template: {}", cluster::out(&o));
    let rendered = String::from_utf8_lossy(&o.stdout).to_string();
    for want in [
        "replicas: 2",
        "- --concurrent=4",
        "- --enable-leader-election\n",
        "- \"--loglevel=debug\"",
        "kind: PodDisruptionBudget",
        "eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/eso",
        "runAsUser: 1000",
    ] {
        assert!(
            rendered.contains(want),
            "{want:?} not rendered:\n{rendered}"
        );
    }
    assert!(
        !rendered.contains("enabled: true"),
        "ESO's `enabled` switches are not rendered"
    );
    let o = env.kubectl_stdin(
        &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
        &rendered,
    );
    assert!(
        o.status.success(),
        "server-side validation: {}",
        cluster::out(&o)
    );
    let o = helm(
        env,
        &[
            "install",
            "esov",
            chart,
            "-n",
            &ns,
            "-f",
            values,
            "--set",
            "installCRDs=false",
            "--dry-run=client",
        ],
    );
    assert!(
        o.status.success(),
        "helm install --dry-run: {}",
        cluster::out(&o)
    );
    let notes = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        notes.contains("Ignored values (ESO chart features this chart does not have): webhook, certController, processClusterExternalSecret, processPushSecret"),
        "{notes}"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
