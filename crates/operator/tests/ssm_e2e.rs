//! End to end for Parameter Store: the real `eso-operator` binary, the real control plane and
//! moto (from `cargo xtask testenv up`), in its own namespace with its own operator process.
//! The manifests are examples/common/parameter-store.yaml, with only the parameter hierarchy
//! made unique.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, testenv};

use std::time::Duration;

use cluster::{es_ready, eventually, get, namespace, root, secret_value};
use operator::{Operator, moto_url};

/// A SecureString, a JSON property, a pinned version and a path find sync from Parameter Store;
/// an edit of the SecureString reaches the Secret through remote change detection
/// (DescribeParameters' LastModifiedDate) although the ExternalSecret's refreshInterval is 1h.
#[test]
fn parameter_store_secure_string_syncs_and_follows_an_edit() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-ssm");
    let base = format!("/{}", testenv::unique_name("e2e-ssm"));
    let url = moto_url(env);
    let put = |name: &str, type_: &str, value: &str| {
        moto::put_parameter(&url, &format!("{base}/{name}"), type_, value, &[]).expect("put")
    };
    put("db-password", "SecureString", "first-password");
    put("db-password", "SecureString", "second-password");
    put("config", "String", r#"{"api":{"user":"svc-user"}}"#);
    put("flags/alpha", "String", "on");
    put("flags/beta", "StringList", "x,y");

    let text = std::fs::read_to_string(root().join("examples/common/parameter-store.yaml"))
        .expect("example")
        .replace("/prod/app/", &format!("{base}/"));
    assert!(text.contains("service: ParameterStore") && text.contains("refreshInterval: 1h"));
    let o = env.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &text);
    assert!(o.status.success(), "{}", cluster::out(&o));

    let op = Operator::start(env, &ns, None, &["--remote-change-poll-interval", "2s"]);
    for (k, v) in [
        ("db-password", "second-password"),
        ("api-user", "svc-user"),
        ("previous-password", "first-password"),
        ("flag-alpha", "on"),
        ("flag-beta", "x,y"),
    ] {
        eventually(
            Duration::from_secs(60),
            &format!("key {k} synced\n{}", op.log()),
            || (secret_value(env, &ns, "app-parameters", k).as_deref() == Some(v)).then_some(()),
        );
    }
    let ready = es_ready(env, &ns, "app-parameters");
    assert!(ready.starts_with("True/SecretSynced"), "{ready}");
    let store_ready = get(
        env,
        &[
            "get",
            "secretstores.external-secrets.io",
            "aws-parameter-store",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(store_ready, "True", "{}", op.log());

    std::thread::sleep(Duration::from_millis(1100));
    put("db-password", "SecureString", "edited-in-ssm");
    eventually(
        Duration::from_secs(30),
        &format!("SSM edit seen with refreshInterval 1h\n{}", op.log()),
        || {
            (secret_value(env, &ns, "app-parameters", "db-password").as_deref()
                == Some("edited-in-ssm"))
            .then_some(())
        },
    );
    assert_eq!(
        secret_value(env, &ns, "app-parameters", "previous-password").as_deref(),
        Some("first-password"),
        "the pinned version does not move"
    );
    assert!(
        !op.log().contains("edited-in-ssm") && !op.log().contains("second-password"),
        "a parameter value reached the operator log"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
