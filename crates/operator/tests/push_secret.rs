//! PushSecret end to end (issue #15): the real `eso-operator` binary against the local control
//! plane and moto, AWS calls through the counting, fault-injecting proxy.
//!
//! Remote secrets are inspected directly on moto (not through the proxy, so counts are the
//! operator's own). Every test ends by checking that the sentinel value never reached the
//! operator's log, the namespace's Events or the PushSecret's status.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::time::Duration;

use cluster::{apply, eventually, get, namespace};
use operator::{Operator, moto_url};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// A value that must never appear outside the data path.
const SENTINEL: &str = "SENTINEL-push-7f3a9c";

fn env() -> Option<&'static testenv::TestEnv> {
    let env = cluster::env()?;
    let o = env.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/pushsecrets.external-secrets.io",
        "--timeout=60s",
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    Some(env)
}

/// An AWS SecretStore `name` with static keys, and `secretsManager` settings (YAML flow map or "").
fn aws_store(ns: &str, name: &str, sm: &str) -> String {
    let sm = if sm.is_empty() {
        String::new()
    } else {
        format!("      secretsManager: {sm}\n")
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n---\n\
         apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: {ns}, labels: {{push: 'yes'}}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n{sm}      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n"
    )
}

fn source(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let d: Vec<String> = data.iter().map(|(k, v)| format!("  {k}: '{v}'")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n{}\n",
        d.join("\n")
    )
}

/// A PushSecret; `data` is the YAML list under `spec.data` (indented by 2).
fn push_secret(ns: &str, name: &str, extra: &str, data: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  secretStoreRefs: [{{name: aws}}]\n  selector: {{secret: {{name: src}}}}\n{extra}  data:\n{data}"
    )
}

/// `status/reason/message` of a PushSecret's Ready condition.
fn ps_ready(env: &testenv::TestEnv, ns: &str, name: &str) -> String {
    get(
        env,
        &[
            "get",
            "pushsecrets.external-secrets.io",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}/{.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    )
}

fn wait_ready(env: &testenv::TestEnv, ns: &str, name: &str, op: &Operator) {
    eventually(T, &format!("PushSecret {name} Ready\n{}", op.log()), || {
        ps_ready(env, ns, name)
            .starts_with("True/Synced/")
            .then_some(())
    });
}

fn ps_json(env: &testenv::TestEnv, ns: &str, name: &str) -> Value {
    serde_json::from_str(&get(
        env,
        &[
            "get",
            "pushsecrets.external-secrets.io",
            name,
            "-n",
            ns,
            "-o",
            "json",
        ],
    ))
    .unwrap_or(Value::Null)
}

/// The remote value (string, or binary decoded as UTF-8); `None` when absent or deleted.
fn remote(url: &str, id: &str) -> Option<String> {
    let out = moto::call(url, "GetSecretValue", &format!("{{\"SecretId\":\"{id}\"}}")).ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    if let Some(s) = v["SecretString"].as_str() {
        return Some(s.to_string());
    }
    let b = cluster::decode_b64(v["SecretBinary"].as_str()?)?;
    Some(String::from_utf8_lossy(&b).into_owned())
}

fn describe(url: &str, id: &str) -> Option<Value> {
    let out = moto::call(url, "DescribeSecret", &format!("{{\"SecretId\":\"{id}\"}}")).ok()?;
    serde_json::from_str(&out).ok()
}

fn tag(d: &Value, key: &str) -> Option<String> {
    d["Tags"].as_array()?.iter().find_map(|t| {
        (t["Key"].as_str() == Some(key)).then(|| t["Value"].as_str().unwrap_or("").to_string())
    })
}

/// How many versions the remote secret has.
fn versions(url: &str, id: &str) -> usize {
    moto::call(
        url,
        "ListSecretVersionIds",
        &format!("{{\"SecretId\":\"{id}\",\"IncludeDeprecated\":true}}"),
    )
    .ok()
    .and_then(|o| serde_json::from_str::<Value>(&o).ok())
    .and_then(|v| v["Versions"].as_array().map(Vec::len))
    .unwrap_or(0)
}

fn count(p: &proxy::Proxy, op: &str) -> u64 {
    p.counts().get(op).copied().unwrap_or(0)
}

fn assert_no_sentinel(env: &testenv::TestEnv, ns: &str, op: &Operator) {
    let log = op.log();
    assert!(!log.contains(SENTINEL), "sentinel in the operator log");
    let events = get(env, &["get", "events", "-n", ns, "-o", "json"]);
    assert!(!events.contains(SENTINEL), "sentinel in Events");
    let ps = get(
        env,
        &[
            "get",
            "pushsecrets.external-secrets.io",
            "-n",
            ns,
            "-o",
            "json",
        ],
    );
    assert!(!ps.contains(SENTINEL), "sentinel in PushSecret status");
}

fn start(env: &testenv::TestEnv, ns: &str, proxy: &proxy::Proxy) -> Operator {
    Operator::start(
        env,
        ns,
        Some(&proxy.url),
        &["--remote-change-poll-interval", "0"],
    )
}

/// Push one key and the whole Secret (string format, tags, description); a Secret edit reaches
/// AWS at once through the Secret watch (refreshInterval 1h); a refresh with nothing changed
/// writes nothing: no PutSecretValue and no new version over several 1s refreshes. The store
/// reports ReadWrite; a Parameter Store store ReadOnly.
#[test]
fn push_update_whole_secret_and_no_write_when_unchanged() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let pw = format!("{ns}/password");
    let all = format!("{ns}/all");
    let quiet = format!("{ns}/quiet");
    apply(env, &aws_store(&ns, "aws", ""));
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: ssm, namespace: {ns}}}\nspec:\n  provider:\n    aws:\n      service: ParameterStore\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n"
        ),
    );
    apply(
        env,
        &source(&ns, "src", &[("username", "admin"), ("password", SENTINEL)]),
    );
    let meta = "apiVersion: kubernetes.external-secrets.io/v1alpha1\n      kind: PushSecretMetadata\n      spec: {secretPushFormat: string, description: pushed by e2e, tags: {team: payments}}";
    apply(
        env,
        &push_secret(
            &ns,
            "main",
            "  refreshInterval: 1h\n",
            &format!(
                "  - match: {{secretKey: password, remoteRef: {{remoteKey: {pw}}}}}\n  - match: {{remoteRef: {{remoteKey: {all}}}}}\n    metadata:\n      {meta}\n"
            ),
        ),
    );
    apply(
        env,
        &push_secret(
            &ns,
            "quiet",
            "  refreshInterval: 1s\n",
            &format!("  - match: {{secretKey: username, remoteRef: {{remoteKey: {quiet}}}}}\n"),
        ),
    );
    let op = start(env, &ns, &proxy);
    wait_ready(env, &ns, "main", &op);
    wait_ready(env, &ns, "quiet", &op);
    assert_eq!(remote(&url, &pw).as_deref(), Some(SENTINEL));
    let whole: Value = serde_json::from_str(&remote(&url, &all).unwrap()).unwrap();
    assert_eq!(whole["username"], "admin");
    assert_eq!(whole["password"], SENTINEL);
    let d = describe(&url, &all).unwrap();
    assert_eq!(tag(&d, "managed-by").as_deref(), Some("external-secrets"));
    assert_eq!(tag(&d, "team").as_deref(), Some("payments"));
    assert_eq!(d["Description"], "pushed by e2e");
    let d = describe(&url, &pw).unwrap();
    assert_eq!(tag(&d, "managed-by").as_deref(), Some("external-secrets"));
    // syncedPushSecrets as ESO writes it.
    let st = ps_json(env, &ns, "main");
    let synced = &st["status"]["syncedPushSecrets"]["SecretStore/aws"];
    assert!(
        synced.get(&pw).is_some() && synced.get(&all).is_some(),
        "{st}"
    );
    assert_eq!(
        get(
            env,
            &[
                "get",
                "secretstores.external-secrets.io",
                "aws",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.capabilities}"
            ]
        ),
        "ReadWrite"
    );
    eventually(T, "ParameterStore store ReadOnly", || {
        (get(
            env,
            &[
                "get",
                "secretstores.external-secrets.io",
                "ssm",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.capabilities}",
            ],
        ) == "ReadOnly")
            .then_some(())
    });

    // No write when nothing changed: several refreshes of `quiet`, no PutSecretValue, one version.
    let puts = count(&proxy, "PutSecretValue");
    let described = count(&proxy, "DescribeSecret");
    assert_eq!(versions(&url, &quiet), 1);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        count(&proxy, "DescribeSecret") >= described + 2,
        "quiet was not refreshed: {:?}",
        proxy.counts()
    );
    assert_eq!(
        count(&proxy, "PutSecretValue"),
        puts,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(
        versions(&url, &quiet),
        1,
        "a no-op refresh created a version"
    );

    // A Secret edit is pushed at once (refreshInterval is 1h).
    let edited = format!("{SENTINEL}-2");
    apply(
        env,
        &source(&ns, "src", &[("username", "admin"), ("password", &edited)]),
    );
    eventually(T, &format!("edited value pushed\n{}", op.log()), || {
        (remote(&url, &pw).as_deref() == Some(edited.as_str())).then_some(())
    });
    eventually(T, "whole secret updated", || {
        remote(&url, &all)
            .is_some_and(|v| v.contains(&edited))
            .then_some(())
    });
    assert_eq!(versions(&url, &pw), 2);
    assert_no_sentinel(env, &ns, &op);
}

/// A property is merged into an existing JSON secret without losing its other keys;
/// `updatePolicy: IfNotExists` leaves an existing secret alone and creates a missing one.
#[test]
fn property_merge_and_if_not_exists() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push-merge");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let merged = format!("{ns}/merged");
    let existing = format!("{ns}/existing");
    let fresh = format!("{ns}/fresh");
    let owned = [("managed-by", "external-secrets")];
    moto::create_secret_with_tags(&url, &merged, r#"{"keep":"1","other":{"x":"y"}}"#, &owned)
        .unwrap();
    moto::create_secret_with_tags(&url, &existing, "original", &owned).unwrap();
    apply(env, &aws_store(&ns, "aws", ""));
    apply(env, &source(&ns, "src", &[("password", SENTINEL)]));
    apply(
        env,
        &push_secret(
            &ns,
            "merge",
            "",
            &format!(
                "  - match: {{secretKey: password, remoteRef: {{remoteKey: {merged}, property: password}}}}\n    metadata: {{apiVersion: kubernetes.external-secrets.io/v1alpha1, kind: PushSecretMetadata, spec: {{secretPushFormat: string}}}}\n"
            ),
        ),
    );
    apply(
        env,
        &push_secret(
            &ns,
            "ine",
            "  updatePolicy: IfNotExists\n",
            &format!(
                "  - match: {{secretKey: password, remoteRef: {{remoteKey: {existing}}}}}\n  - match: {{secretKey: password, remoteRef: {{remoteKey: {fresh}}}}}\n"
            ),
        ),
    );
    let op = start(env, &ns, &proxy);
    wait_ready(env, &ns, "merge", &op);
    wait_ready(env, &ns, "ine", &op);
    let m: Value = serde_json::from_str(&remote(&url, &merged).unwrap()).unwrap();
    assert_eq!(m["keep"], "1");
    assert_eq!(m["other"]["x"], "y");
    assert_eq!(m["password"], SENTINEL);
    assert_eq!(remote(&url, &existing).as_deref(), Some("original"));
    assert_eq!(versions(&url, &existing), 1);
    assert_eq!(remote(&url, &fresh).as_deref(), Some(SENTINEL));
    assert!(ps_ready(env, &ns, "ine").contains("Existing secrets in providers unchanged"));
    // Editing the Secret: IfNotExists still leaves both alone.
    apply(env, &source(&ns, "src", &[("password", "changed")]));
    eventually(T, "merge updated", || {
        remote(&url, &merged)
            .is_some_and(|v| v.contains("changed") && v.contains("keep"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(remote(&url, &existing).as_deref(), Some("original"));
    assert_eq!(remote(&url, &fresh).as_deref(), Some(SENTINEL));
    assert_no_sentinel(env, &ns, &op);
}

/// A remote secret this operator did not create (no managed-by tag) is neither written nor
/// deleted, and the PushSecret says so; entries of its own still push.
#[test]
fn foreign_remote_secret_is_left_untouched_and_reported() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push-foreign");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let foreign = format!("{ns}/foreign");
    let mine = format!("{ns}/mine");
    moto::create_secret(&url, &foreign, "theirs").unwrap();
    apply(
        env,
        &aws_store(&ns, "aws", "{forceDeleteWithoutRecovery: true}"),
    );
    apply(env, &source(&ns, "src", &[("password", SENTINEL)]));
    apply(
        env,
        &push_secret(
            &ns,
            "ps",
            "  deletionPolicy: Delete\n",
            &format!(
                "  - match: {{secretKey: password, remoteRef: {{remoteKey: {foreign}}}}}\n  - match: {{secretKey: password, remoteRef: {{remoteKey: {mine}}}}}\n"
            ),
        ),
    );
    let op = start(env, &ns, &proxy);
    let r = eventually(
        T,
        &format!("PushSecret reports the foreign secret\n{}", op.log()),
        || {
            let r = ps_ready(env, &ns, "ps");
            r.starts_with("False/Errored/").then_some(r)
        },
    );
    assert!(
        r.contains(&foreign) && r.contains("not created by external-secrets"),
        "{r}"
    );
    assert_eq!(remote(&url, &foreign).as_deref(), Some("theirs"));
    assert_eq!(versions(&url, &foreign), 1);
    eventually(T, "own entry pushed", || {
        (remote(&url, &mine).as_deref() == Some(SENTINEL)).then_some(())
    });
    let events = get(env, &["get", "events", "-n", &ns, "-o", "json"]);
    assert!(
        events.contains("not created by external-secrets"),
        "no Event"
    );
    // Deleting the PushSecret (deletionPolicy Delete) deletes its own secret only.
    let o = env.kubectl(&[
        "delete",
        "pushsecrets.external-secrets.io",
        "ps",
        "-n",
        &ns,
        "--wait=false",
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(T, &format!("PushSecret gone\n{}", op.log()), || {
        get(
            env,
            &[
                "get",
                "pushsecrets.external-secrets.io",
                "-n",
                &ns,
                "-o",
                "name",
            ],
        )
        .is_empty()
        .then_some(())
    });
    assert!(describe(&url, &mine).is_none(), "own secret not deleted");
    assert_eq!(remote(&url, &foreign).as_deref(), Some("theirs"));
    assert_no_sentinel(env, &ns, &op);
}

/// deletionPolicy Delete: an entry removed from spec.data is deleted (force, no recovery), then
/// deleting the PushSecret deletes the rest; a removed property is taken out of the JSON secret
/// keeping the others. recoveryWindowInDays schedules the deletion. deletionPolicy None leaves
/// everything, and its PushSecret goes at once.
#[test]
fn deletion_policies() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push-del");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let (a, b, j, w, n) = (
        format!("{ns}/a"),
        format!("{ns}/b"),
        format!("{ns}/json"),
        format!("{ns}/windowed"),
        format!("{ns}/none"),
    );
    apply(
        env,
        &aws_store(&ns, "aws", "{forceDeleteWithoutRecovery: true}"),
    );
    apply(
        env,
        &aws_store(&ns, "aws-window", "{recoveryWindowInDays: 7}"),
    );
    apply(env, &source(&ns, "src", &[("k1", SENTINEL), ("k2", "two")]));
    let entries = |with_b: bool| {
        let mut s = format!(
            "  - match: {{secretKey: k1, remoteRef: {{remoteKey: {a}}}}}\n  - match: {{secretKey: k1, remoteRef: {{remoteKey: {j}, property: p1}}}}\n"
        );
        if with_b {
            s.push_str(&format!(
                "  - match: {{secretKey: k2, remoteRef: {{remoteKey: {b}}}}}\n  - match: {{secretKey: k2, remoteRef: {{remoteKey: {j}, property: p2}}}}\n"
            ));
        }
        s
    };
    apply(
        env,
        &push_secret(&ns, "del", "  deletionPolicy: Delete\n", &entries(true)),
    );
    apply(
        env,
        &push_secret(
            &ns,
            "win",
            "  deletionPolicy: Delete\n",
            &format!("  - match: {{secretKey: k2, remoteRef: {{remoteKey: {w}}}}}\n"),
        )
        .replace(
            "secretStoreRefs: [{name: aws}]",
            "secretStoreRefs: [{name: aws-window}]",
        ),
    );
    apply(
        env,
        &push_secret(
            &ns,
            "none",
            "",
            &format!("  - match: {{secretKey: k2, remoteRef: {{remoteKey: {n}}}}}\n"),
        ),
    );
    let op = start(env, &ns, &proxy);
    for ps in ["del", "win", "none"] {
        wait_ready(env, &ns, ps, &op);
    }
    let fin = get(
        env,
        &[
            "get",
            "pushsecrets.external-secrets.io",
            "del",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
    );
    assert!(
        fin.contains("pushsecret.externalsecrets.io/finalizer"),
        "{fin}"
    );
    let none_fin = get(
        env,
        &[
            "get",
            "pushsecrets.external-secrets.io",
            "none",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
    );
    assert!(none_fin.is_empty(), "{none_fin}");
    let jv: Value = serde_json::from_str(&remote(&url, &j).unwrap()).unwrap();
    assert_eq!(
        (jv["p1"].as_str(), jv["p2"].as_str()),
        (Some(SENTINEL), Some("two"))
    );

    // Remove the b entries: b deleted, p2 removed from the JSON secret, p1 kept.
    apply(
        env,
        &push_secret(&ns, "del", "  deletionPolicy: Delete\n", &entries(false)),
    );
    eventually(T, &format!("b deleted\n{}", op.log()), || {
        describe(&url, &b).is_none().then_some(())
    });
    let jv: Value = serde_json::from_str(&remote(&url, &j).unwrap()).unwrap();
    assert_eq!(jv.get("p2"), None, "{jv}");
    assert_eq!(jv["p1"], SENTINEL);
    assert!(remote(&url, &a).is_some());

    // Delete the PushSecrets.
    for ps in ["del", "win", "none"] {
        let o = env.kubectl(&[
            "delete",
            "pushsecrets.external-secrets.io",
            ps,
            "-n",
            &ns,
            "--wait=false",
        ]);
        assert!(o.status.success(), "{}", cluster::out(&o));
    }
    eventually(T, &format!("PushSecrets gone\n{}", op.log()), || {
        get(
            env,
            &[
                "get",
                "pushsecrets.external-secrets.io",
                "-n",
                &ns,
                "-o",
                "name",
            ],
        )
        .is_empty()
        .then_some(())
    });
    assert!(describe(&url, &a).is_none(), "a not deleted");
    assert!(
        describe(&url, &j).is_none(),
        "json secret not deleted with its last property"
    );
    let wd = describe(&url, &w).expect("windowed deletion is scheduled, not immediate");
    assert!(wd.get("DeletedDate").is_some_and(|d| !d.is_null()), "{wd}");
    assert_eq!(
        remote(&url, &n).as_deref(),
        Some("two"),
        "deletionPolicy None deleted"
    );
    assert_no_sentinel(env, &ns, &op);
}

/// AccessDenied and throttling on every AWS call: the remote value stays, the PushSecret is
/// Ready=False naming the AWS error, and it recovers when the fault clears.
#[test]
fn aws_errors_are_reported_and_recovered() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push-fault");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let key = format!("{ns}/faulty");
    apply(env, &aws_store(&ns, "aws", ""));
    apply(env, &source(&ns, "src", &[("password", SENTINEL)]));
    apply(
        env,
        &push_secret(
            &ns,
            "ps",
            "  refreshInterval: 1h\n",
            &format!("  - match: {{secretKey: password, remoteRef: {{remoteKey: {key}}}}}\n"),
        ),
    );
    let op = start(env, &ns, &proxy);
    wait_ready(env, &ns, "ps", &op);
    for (fault, code, value) in [
        (proxy::Fault::AccessDenied, "AccessDenied", "second"),
        (proxy::Fault::Throttle, "Throttl", "third"),
    ] {
        let before = remote(&url, &key);
        proxy.inject(fault, u32::MAX);
        apply(env, &source(&ns, "src", &[("password", value)]));
        let r = eventually(T, &format!("{fault:?} reported\n{}", op.log()), || {
            let r = ps_ready(env, &ns, "ps");
            r.starts_with("False/Errored/").then_some(r)
        });
        assert!(r.contains(code), "{r}");
        assert_eq!(remote(&url, &key), before, "value changed under {fault:?}");
        let st = ps_json(env, &ns, "ps");
        assert!(
            st["status"]["syncedPushSecrets"]["SecretStore/aws"]
                .get(&key)
                .is_some(),
            "synced entry lost under {fault:?}: {st}"
        );
        proxy.inject(proxy::Fault::None, 0);
        eventually(
            T,
            &format!("recovered from {fault:?}\n{}", op.log()),
            || {
                (ps_ready(env, &ns, "ps").starts_with("True/")
                    && remote(&url, &key).as_deref() == Some(value))
                .then_some(())
            },
        );
    }
    assert_no_sentinel(env, &ns, &op);
}

/// `secretStoreRefs` by label selector (two stores at once, one by name too) and
/// `selector.secret.selector` (every labelled Secret); the status lists every store. A Secret
/// labelled later is picked up through the Secret watch. The CRD refuses a store ref with
/// neither name nor labelSelector, and a selector with both name and selector.
#[test]
fn label_selected_stores_and_secrets() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push-sel");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    apply(env, &aws_store(&ns, "aws", ""));
    apply(env, &aws_store(&ns, "aws-b", ""));
    let key = format!("{ns}/by-label");
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: one, namespace: {ns}, labels: {{push: 'yes'}}}}\nstringData: {{password: {SENTINEL}}}\n"
        ),
    );
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {{name: sel, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRefs:\n  - labelSelector: {{matchLabels: {{push: 'yes'}}}}\n  - {{name: aws, kind: SecretStore}}\n  selector: {{secret: {{selector: {{matchLabels: {{push: 'yes'}}}}}}}}\n  data:\n  - match: {{remoteRef: {{remoteKey: {key}}}}}\n"
        ),
    );
    let op = start(env, &ns, &proxy);
    wait_ready(env, &ns, "sel", &op);
    let st = ps_json(env, &ns, "sel");
    let synced = &st["status"]["syncedPushSecrets"];
    assert!(
        synced["SecretStore/aws"].get(&key).is_some()
            && synced["SecretStore/aws-b"].get(&key).is_some(),
        "{st}"
    );
    let v: Value = serde_json::from_str(&remote(&url, &key).unwrap()).unwrap();
    assert_eq!(v["password"], SENTINEL);
    // A second labelled Secret appears: pushed too (the last one, in name order, wins the key).
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: two, namespace: {ns}, labels: {{push: 'yes'}}}}\nstringData: {{user: bob}}\n"
        ),
    );
    eventually(T, &format!("labelled Secret pushed\n{}", op.log()), || {
        remote(&url, &key)
            .is_some_and(|v| v.contains("bob"))
            .then_some(())
    });
    for (bad, why) in [
        (
            "  secretStoreRefs: [{kind: SecretStore}]\n  selector: {secret: {name: x}}\n",
            "needs a name or a labelSelector",
        ),
        (
            "  secretStoreRefs: [{name: aws}]\n  selector: {secret: {name: x, selector: {matchLabels: {a: b}}}}\n",
            "exactly one of name and selector",
        ),
    ] {
        let o = env.kubectl_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &format!(
                "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {{name: bad, namespace: {ns}}}\nspec:\n{bad}  data:\n  - match: {{remoteRef: {{remoteKey: k}}}}\n"
            ),
        );
        assert!(
            !o.status.success() && cluster::out(&o).contains(why),
            "{}",
            cluster::out(&o)
        );
    }
    assert_no_sentinel(env, &ns, &op);
}

/// `metadata.spec.resourcePolicy.policySourceRef` (a ConfigMap key) is put on the created
/// secret; refreshes with nothing changed read it (GetResourcePolicy) but do not write it again.
#[test]
fn resource_policy_from_a_config_map() {
    let Some(env) = env() else { return };
    let ns = namespace(env, "e2e-push-policy");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let key = format!("{ns}/with-policy");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"secretsmanager:DeleteSecret","Resource":"*"}]}"#;
    apply(env, &aws_store(&ns, "aws", ""));
    apply(env, &source(&ns, "src", &[("password", SENTINEL)]));
    apply(
        env,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: policy, namespace: {ns}}}\ndata:\n  policy.json: '{policy}'\n"
        ),
    );
    apply(
        env,
        &push_secret(
            &ns,
            "ps",
            "  refreshInterval: 1s\n",
            &format!(
                "  - match: {{secretKey: password, remoteRef: {{remoteKey: {key}}}}}\n    metadata:\n      apiVersion: kubernetes.external-secrets.io/v1alpha1\n      kind: PushSecretMetadata\n      spec: {{resourcePolicy: {{blockPublicPolicy: true, policySourceRef: {{kind: ConfigMap, name: policy, key: policy.json}}}}}}\n"
            ),
        ),
    );
    let op = start(env, &ns, &proxy);
    wait_ready(env, &ns, "ps", &op);
    let got = moto::call(
        &url,
        "GetResourcePolicy",
        &format!("{{\"SecretId\":\"{key}\"}}"),
    )
    .unwrap();
    let got: Value = serde_json::from_str(&got).unwrap();
    let got: Value = serde_json::from_str(got["ResourcePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(got, serde_json::from_str::<Value>(policy).unwrap());
    let puts = count(&proxy, "PutResourcePolicy");
    let gets = count(&proxy, "GetResourcePolicy");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        count(&proxy, "GetResourcePolicy") > gets,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(
        count(&proxy, "PutResourcePolicy"),
        puts,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(count(&proxy, "DeleteResourcePolicy"), 0);
    assert_eq!(versions(&url, &key), 1);
    assert_no_sentinel(env, &ns, &op);
}
