//! Pods follow their Secrets (issue #17) on the real node: the guide's application Deployment
//! (`examples/seed/my-app-deployment.yaml`, the `printenv` image) carrying
//! `external-secrets.io/rollout-on-secret-change: "true"`, the operator as a host process with
//! `--enable-workload-rollout` against the node instance. An edit in AWS reaches the Secret, the
//! Deployment rolls, and the new pod's log shows the new value. Measured twice: with the guide's
//! `refreshInterval: 1h` (the edit is seen by the remote change poll, default 1 minute) and with
//! `refreshInterval: 1m` and the poll off.
//!
//! Runs only when `ESO_NODE_TESTENV` is set (the node instance's run folder, or `1` for
//! `target/testenv-node`); `cargo xtask node-e2e` runs it after the in-pod suite.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, testenv};

use std::time::{Duration, Instant};

use cluster::{eventually, root, secret_value};
use operator::Operator;
use testenv::TestEnv;

const DB: &str = r#"{"username":"dbuser","password":"dbpassword","host":"dbhost","port":"5432"}"#;

fn node_env() -> Option<TestEnv> {
    let v = std::env::var("ESO_NODE_TESTENV").ok()?;
    let dir = if v == "1" {
        root().join("target/testenv-node")
    } else {
        std::path::PathBuf::from(v)
    };
    let env = testenv::from_dir(&dir).unwrap_or_else(|| {
        panic!(
            "ESO_NODE_TESTENV is set but {} has no env.json: run `cargo xtask testenv --instance node up --node`",
            dir.display()
        )
    });
    assert!(
        std::fs::read_to_string(dir.join("env.json"))
            .unwrap()
            .contains("ESO_TESTENV_NODE"),
        "{} was started without --node",
        dir.display()
    );
    Some(env)
}

fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    let o = env.kubectl(args);
    assert!(
        o.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        cluster::out(&o)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Ready pods of the app: (name, creation order is not needed).
fn ready_pods(env: &TestEnv, ns: &str) -> Vec<String> {
    let json = kubectl(
        env,
        &["get", "pods", "-n", ns, "-l", "app=my-app", "-o", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

fn password_line(env: &TestEnv, ns: &str, pod: &str) -> Option<String> {
    let o = env.kubectl(&["logs", pod, "-n", ns]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("DB_PASSWORD="))
        .map(String::from)
}

/// Edit the password in AWS, then wait for a new Ready pod whose env shows it. Returns the new
/// pod and (edit → Secret, edit → new pod Ready with the new value).
fn edit_and_follow(
    env: &TestEnv,
    ns: &str,
    key: &str,
    old_pod: &str,
    password: &str,
    op: &Operator,
) -> (String, Duration, Duration) {
    let moto = env.moto_url.clone().unwrap();
    let value = DB.replace("dbpassword", password);
    let edited = Instant::now();
    moto::put_value(&moto, key, &value).unwrap();
    let mut synced = None;
    let pod = eventually(
        Duration::from_secs(240),
        &format!("a new pod with {password}\n{}", op.log()),
        || {
            if synced.is_none()
                && secret_value(env, ns, "my-db-secret", "password").as_deref() == Some(password)
            {
                synced = Some(edited.elapsed());
            }
            ready_pods(env, ns)
                .into_iter()
                .find(|p| p != old_pod && password_line(env, ns, p).is_some())
        },
    );
    let ready = edited.elapsed();
    assert_eq!(
        password_line(env, ns, &pod).as_deref(),
        Some(format!("DB_PASSWORD={password}").as_str()),
        "the new pod's env"
    );
    (pod, synced.unwrap_or(ready), ready)
}

#[test]
fn the_guides_app_restarts_with_the_new_password() {
    let Some(env) = node_env() else {
        eprintln!("skipped: set ESO_NODE_TESTENV (see `cargo xtask node-e2e`)");
        return;
    };
    let env = &env;
    let crds = root().join("deploy/crds");
    kubectl(
        env,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ],
    );
    let ns = testenv::unique_name("rollout-node");
    kubectl(env, &["create", "namespace", &ns]);
    let key = testenv::unique_name("my-db-secret");
    moto::create_secret(env.moto_url.as_deref().unwrap(), &key, DB).unwrap();
    let apply = |yaml: &str| {
        let o = env.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], yaml);
        assert!(o.status.success(), "{}", cluster::out(&o));
    };
    apply(&operator::aws_store_and_creds(&ns));
    // The guide's ExternalSecret (examples/seed/external-secret.yaml), on the namespace's store.
    let es = std::fs::read_to_string(root().join("examples/seed/external-secret.yaml"))
        .unwrap()
        .replace("namespace: default", &format!("namespace: {ns}"))
        .replace("name: aws-secret-store", "name: aws")
        .replace("kind: ClusterSecretStore", "kind: SecretStore")
        .replace("key: my-db-secret", &format!("key: {key}"));
    assert!(es.contains("refreshInterval: 1h"));
    apply(&es);

    let mut op = Operator::start(env, &ns, None, &["--enable-workload-rollout"]);
    eventually(
        Duration::from_secs(120),
        &format!("my-db-secret synced\n{}", op.log()),
        || {
            (secret_value(env, &ns, "my-db-secret", "password").as_deref() == Some("dbpassword"))
                .then_some(())
        },
    );

    // The guide's application, opted in.
    let app = std::fs::read_to_string(root().join("examples/seed/my-app-deployment.yaml"))
        .unwrap()
        .replace("namespace: default", &format!("namespace: {ns}"))
        .replace(
            "  name: my-app\n",
            "  name: my-app\n  annotations:\n    external-secrets.io/rollout-on-secret-change: \"true\"\n",
        );
    assert!(app.contains("rollout-on-secret-change"));
    apply(&app);
    kubectl(
        env,
        &[
            "rollout",
            "status",
            "deployment/my-app",
            "-n",
            &ns,
            "--timeout=180s",
        ],
    );
    let first = eventually(Duration::from_secs(60), "my-app printed its env", || {
        ready_pods(env, &ns)
            .into_iter()
            .find(|p| password_line(env, &ns, p).is_some())
    });
    let line = password_line(env, &ns, &first).unwrap();
    eprintln!("before the AWS edit ({first}): {line}");
    assert_eq!(line, "DB_PASSWORD=dbpassword");

    // refreshInterval 1h: the remote change poll (1 minute) sees the edit.
    let (second, synced, ready) = edit_and_follow(env, &ns, &key, &first, "rotated-with-1h", &op);
    eprintln!(
        "refreshInterval 1h (remote change poll 1m): edit -> Secret {:.1}s, -> new pod Ready with the new value {:.1}s ({second}: {})",
        synced.as_secs_f64(),
        ready.as_secs_f64(),
        password_line(env, &ns, &second).unwrap()
    );
    let events = kubectl(
        env,
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.kind=Deployment,involvedObject.name=my-app,reason=SecretChanged",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(
        events.contains("restarted because Secret my-db-secret changed"),
        "{events}"
    );

    // refreshInterval 1m with the poll off; the operator restarts for it, which rolls nothing.
    drop(op);
    kubectl(
        env,
        &[
            "patch",
            "externalsecret",
            "my-db-secret",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"refreshInterval":"1m"}}"#,
        ],
    );
    op = Operator::start_named(
        env,
        &ns,
        &format!("{ns}-1m"),
        None,
        &[
            "--enable-workload-rollout",
            "--remote-change-poll-interval",
            "0",
        ],
    );
    eventually(Duration::from_secs(60), "restarted operator synced", || {
        op.log().contains("caches synced").then_some(())
    });
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        ready_pods(env, &ns),
        std::slice::from_ref(&second),
        "the restart rolled the app\n{}",
        op.log()
    );
    let (third, synced, ready) = edit_and_follow(env, &ns, &key, &second, "rotated-with-1m", &op);
    eprintln!(
        "refreshInterval 1m (poll off): edit -> Secret {:.1}s, -> new pod Ready with the new value {:.1}s ({third}: {})",
        synced.as_secs_f64(),
        ready.as_secs_f64(),
        password_line(env, &ns, &third).unwrap()
    );
    drop(op);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
