//! Fields ESO users set that must not be silently ignored (issue #16), end to end: the real
//! `eso-operator` binary, the real control plane and moto behind the counting proxy.
//!
//! - `spec.syncWindows`: periodic refreshes happen only as the windows allow.
//! - `spec.target.manifest`: refused with a condition; no Secret is written in its place.
//! - `spec.retrySettings`: drives the AWS SDK's retries.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::time::Duration;

use cluster::{apply, es_ready, eventually, get, namespace, secret_value};
use operator::{Operator, aws_store_and_creds, moto_url};

fn es(ns: &str, name: &str, key: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: aws}}\n{extra}  data:\n  - secretKey: v\n    remoteRef: {{key: {key}}}\n"
    )
}

/// The UTC hour twelve hours from now: a daily window starting then is closed for hours.
fn far_hour() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now / 3600 + 12) % 24
}

/// An `allow` window that is closed and a `deny` window that is open hold back the periodic
/// refresh (refreshInterval 1s) after the first sync, while an open `allow` window lets it
/// through; removing the windows (a spec change) refreshes at once.
#[test]
fn sync_windows_hold_back_periodic_refreshes() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-windows");
    let url = moto_url(env);
    let key = testenv::unique_name("windows");
    moto::create_secret(&url, &key, "first").expect("create");
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let closed_allow = format!(
        "  syncWindows:\n    kind: allow\n    windows:\n    - {{schedule: '0 {} * * *', duration: 30m}}\n",
        far_hour()
    );
    let open_deny = "  syncWindows:\n    kind: deny\n    windows:\n    - {schedule: '* * * * *', duration: 1h}\n";
    let open_allow = "  syncWindows:\n    kind: allow\n    windows:\n    - {schedule: '@hourly', duration: 2h}\n";
    let mut docs = aws_store_and_creds(&ns);
    docs.push_str(&es(&ns, "closed-allow", &key, &closed_allow));
    docs.push_str(&es(&ns, "open-deny", &key, open_deny));
    docs.push_str(&es(&ns, "open-allow", &key, open_allow));
    apply(env, &docs);
    let op = Operator::start(
        env,
        &ns,
        Some(&proxy.url),
        &[
            "--provider-cache-ttl",
            "0s",
            "--remote-change-poll-interval",
            "0",
        ],
    );
    for name in ["closed-allow", "open-deny", "open-allow"] {
        eventually(
            Duration::from_secs(60),
            &format!("{name}: the first sync is never held back\n{}", op.log()),
            || (secret_value(env, &ns, name, "v").as_deref() == Some("first")).then_some(()),
        );
    }
    moto::put_value(&url, &key, "second").expect("put");
    eventually(
        Duration::from_secs(30),
        &format!("open allow window: refreshed\n{}", op.log()),
        || (secret_value(env, &ns, "open-allow", "v").as_deref() == Some("second")).then_some(()),
    );
    // Several refresh intervals later the held-back ones still have the old value.
    std::thread::sleep(Duration::from_secs(4));
    for name in ["closed-allow", "open-deny"] {
        assert_eq!(
            secret_value(env, &ns, name, "v").as_deref(),
            Some("first"),
            "{name} refreshed outside its sync windows\n{}",
            op.log()
        );
        assert!(es_ready(env, &ns, name).starts_with("True/"), "{name}");
    }
    // Removing the windows is a spec change: refreshed at once.
    let o = env.kubectl(&[
        "patch",
        "externalsecret",
        "closed-allow",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/syncWindows"}]"#,
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(
        Duration::from_secs(30),
        &format!("windows removed: refreshed\n{}", op.log()),
        || (secret_value(env, &ns, "closed-allow", "v").as_deref() == Some("second")).then_some(()),
    );
    assert_eq!(
        secret_value(env, &ns, "open-deny", "v").as_deref(),
        Some("first")
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `target.manifest` (ESO's generic targets) is refused with Ready=False naming the field and an
/// Event; neither a Secret nor the ConfigMap is written, and AWS is not read. An existing
/// ExternalSecret that gains the field keeps its Secret unchanged.
#[test]
fn generic_target_manifest_is_refused_and_no_secret_is_written() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-manifest");
    let url = moto_url(env);
    let key = testenv::unique_name("manifest");
    moto::create_secret(&url, &key, "value").expect("create");
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let manifest = "  target:\n    manifest: {apiVersion: v1, kind: ConfigMap}\n";
    let mut docs = aws_store_and_creds(&ns);
    docs.push_str(&es(&ns, "to-configmap", &key, manifest));
    docs.push_str(&es(&ns, "plain", &key, ""));
    apply(env, &docs);
    let op = Operator::start(env, &ns, Some(&proxy.url), &[]);
    let ready = eventually(
        Duration::from_secs(60),
        &format!("refused\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "to-configmap");
            r.starts_with("False/").then_some(r)
        },
    );
    let message = get(
        env,
        &[
            "get",
            "externalsecret",
            "to-configmap",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    );
    assert!(
        message.contains("spec.target.manifest") && message.contains("generic targets"),
        "{ready}: {message}"
    );
    eventually(
        Duration::from_secs(30),
        "the plain ExternalSecret syncs",
        || (secret_value(env, &ns, "plain", "v").as_deref() == Some("value")).then_some(()),
    );
    for kind in ["secret", "configmap"] {
        let o = env.kubectl(&["get", kind, "to-configmap", "-n", &ns]);
        assert!(
            !o.status.success(),
            "a {kind} was written for a manifest target"
        );
    }
    let events = get(env, &["get", "events", "-n", &ns, "-o", "yaml"]);
    assert!(events.contains("generic targets"), "{events}");

    // An ExternalSecret that already synced and then gains the field keeps its Secret.
    let rv = |name: &str| {
        get(
            env,
            &[
                "get",
                "secret",
                name,
                "-n",
                &ns,
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
    };
    let before = rv("plain");
    let o = env.kubectl(&[
        "patch",
        "externalsecret",
        "plain",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"target":{"manifest":{"apiVersion":"v1","kind":"ConfigMap"}}}}"#,
    ]);
    assert!(o.status.success(), "{}", cluster::out(&o));
    eventually(Duration::from_secs(30), "plain refused", || {
        es_ready(env, &ns, "plain")
            .starts_with("False/")
            .then_some(())
    });
    assert_eq!(rv("plain"), before, "the existing Secret was touched");
    assert_eq!(
        secret_value(env, &ns, "plain", "v").as_deref(),
        Some("value")
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `retrySettings.maxRetries: 6` with a tiny `retryInterval`: four throttled answers in a row are
/// absorbed by the SDK inside one reconcile (the default, 3 attempts, would fail it), so the
/// ExternalSecret never reports a failure and exactly five reads reach AWS.
#[test]
fn retry_settings_drive_the_sdk_retries() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-retry");
    let url = moto_url(env);
    let key = testenv::unique_name("retry");
    moto::create_secret(&url, &key, "value").expect("create");
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let store = aws_store_and_creds(&ns).replace(
        "spec:\n  provider:\n",
        "spec:\n  retrySettings: {maxRetries: 6, retryInterval: 10ms}\n  provider:\n",
    );
    assert!(store.contains("retrySettings"));
    apply(env, &store);
    let op = Operator::start(env, &ns, Some(&proxy.url), &[]);
    eventually(
        Duration::from_secs(60),
        &format!("store Ready\n{}", op.log()),
        || {
            (get(
                env,
                &[
                    "get",
                    "secretstore",
                    "aws",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            ) == "True")
                .then_some(())
        },
    );
    let reads = |c: &std::collections::BTreeMap<String, u64>| {
        c.get("GetSecretValue").copied().unwrap_or(0)
            + c.get("BatchGetSecretValue").copied().unwrap_or(0)
    };
    let before = reads(&proxy.counts());
    proxy.inject(proxy::Fault::Throttle, 4);
    apply(env, &es(&ns, "retried", &key, "").replace("1s", "1h"));
    eventually(
        Duration::from_secs(60),
        &format!("synced through four throttles\n{}", op.log()),
        || (secret_value(env, &ns, "retried", "v").as_deref() == Some("value")).then_some(()),
    );
    assert_eq!(reads(&proxy.counts()) - before, 5, "{:?}", proxy.counts());
    let events = get(env, &["get", "events", "-n", &ns, "-o", "yaml"]);
    assert!(
        !events.contains("UpdateFailed"),
        "a retried read failed the sync: {events}"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
