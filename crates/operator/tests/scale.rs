//! Scale end to end (issue #11, "Scale and wiring"): the remote change poll with one
//! ClusterSecretStore used from many namespaces.
//!
//! A cluster-wide operator would reconcile everybody's objects on the shared testenv, so this
//! test brings up a private control plane (`eso_testsupport::private`) with its own moto, puts the
//! counting proxy in front of that moto, and runs the operator without `--namespace`. It skips
//! when there is no shared testenv (the binaries come from its build) and fails under
//! `ESO_REQUIRE_TESTENV=1`, like the other end-to-end tests.
//!
//! `ESO_SCALE_NAMESPACES` (default 12) and `ESO_SCALE_REMOTE_SECRETS` (default 150) size it; the
//! figure in docs/STATUS.md was measured with 500 and 2000.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, private, proxy, testenv};

use std::time::{Duration, Instant};

use cluster::{apply, eventually, get};
use operator::Operator;
use private::Private;

fn sized(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A counter from the operator's `/metrics` (0 when absent).
fn counter(op: &Operator, name: &str) -> u64 {
    let Some(body) = operator::http_get(&op.metrics_addr, "/metrics") else {
        return 0;
    };
    body.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64)
}

fn list_secrets(p: &proxy::Proxy) -> u64 {
    p.counts()
        .iter()
        .filter(|(k, _)| k.contains("ListSecrets"))
        .map(|(_, v)| *v)
        .sum()
}

/// (completed poll rounds, ListSecrets seen by the proxy, listings the operator made), read
/// just after a round completed: the next round starts one poll interval later (the interval is
/// chosen so that a round fits in it), so no listing is in flight.
fn after_a_round(op: &Operator, p: &proxy::Proxy) -> (u64, u64, u64) {
    let before = counter(op, "eso_remote_change_polls_total");
    let start = Instant::now();
    loop {
        let now = counter(op, "eso_remote_change_polls_total");
        if now > before {
            return (
                now,
                list_secrets(p),
                counter(op, "eso_remote_change_listings_total"),
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no poll round completed\n{}",
            op.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ready_count(env: &testenv::TestEnv) -> usize {
    get(
        env,
        &[
            "get",
            "externalsecrets.external-secrets.io",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .filter(|l| *l == "True")
    .count()
}

/// One ClusterSecretStore with fixed credentials (secretRef with a namespace) used from N
/// namespaces is listed once per poll, not N times; a referent-auth ClusterSecretStore (secretRef
/// without a namespace: each ExternalSecret's namespace has its own credentials) is listed once
/// per namespace that uses it. Counted at the AWS proxy over several poll rounds.
#[test]
fn remote_change_poll_lists_once_per_provider_scope_across_namespaces() {
    if cluster::env().is_none() {
        return;
    }
    let namespaces = sized("ESO_SCALE_NAMESPACES", 12);
    let remote = sized("ESO_SCALE_REMOTE_SECRETS", 150).max(namespaces);
    let referent = 3.min(namespaces);
    let pages = remote.div_ceil(100) as u64;
    // A round (at most 4 listings at once, `pages` calls each) must fit in one interval.
    let poll = 3.max(pages);

    let private = Private::up("scale");
    let env = &private.env;
    let moto_url = env.moto_url.clone().expect("private moto");
    for i in 0..remote {
        moto::create_secret(&moto_url, &format!("scale-{i}"), r#"{"v":"x"}"#)
            .expect("create remote secret");
    }
    let proxy = proxy::Proxy::start(&moto_url).expect("proxy");

    let creds = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n"
        )
    };
    let store = |name: &str, cred_ns: Option<&str>| {
        let ns = cred_ns.map_or(String::new(), |n| format!(", namespace: {n}"));
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: {name}}}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: access-key{ns}}}\n          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key{ns}}}\n"
        )
    };
    let es = |ns: &str, name: &str, store: &str, key: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  target: {{name: {name}}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: {key}, property: v}}}}\n"
        )
    };
    let mut yaml = String::new();
    yaml.push_str("apiVersion: v1\nkind: Namespace\nmetadata: {name: scale-creds}\n---\n");
    yaml.push_str(&creds("scale-creds"));
    yaml.push_str("---\n");
    yaml.push_str(&store("shared", Some("scale-creds")));
    yaml.push_str("---\n");
    yaml.push_str(&store("referent", None));
    for n in 0..namespaces {
        let ns = format!("scale-{n}");
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n"
        ));
        yaml.push_str(&es(&ns, "shared", "shared", &format!("scale-{n}")));
        if n < referent {
            yaml.push_str("---\n");
            yaml.push_str(&creds(&ns));
            yaml.push_str("---\n");
            yaml.push_str(&es(&ns, "referent", "referent", &format!("scale-{n}")));
        }
    }
    apply(env, &yaml);

    // Cluster-wide (no --namespace): the private control plane has nobody else's objects.
    let op = Operator::start_named(
        env,
        "",
        &format!("scale-{}", std::process::id()),
        Some(&proxy.url),
        &[
            "--remote-change-poll-interval",
            &format!("{poll}s"),
            "--store-requeue-interval",
            "1h",
        ],
    );
    let want = namespaces + referent;
    eventually(
        Duration::from_secs(300),
        &format!("{want} ExternalSecrets Ready\n{}", op.log()),
        || (ready_count(env) == want).then_some(()),
    );

    // A coarse figure first (ListSecrets over four poll intervals), which needs nothing from
    // the operator: it also measures builds without the poll metrics.
    let w0 = list_secrets(&proxy);
    std::thread::sleep(Duration::from_secs(4 * poll));
    println!(
        "ListSecrets in {} s (about 4 polls at {poll} s): {}",
        4 * poll,
        list_secrets(&proxy) - w0
    );
    let (p0, l0, m0) = after_a_round(&op, &proxy);
    let mut last = (p0, l0, m0);
    while last.0 < p0 + 3 {
        last = after_a_round(&op, &proxy);
    }
    let (p1, l1, m1) = last;
    let rounds = p1 - p0;
    let per_round = (l1 - l0) as f64 / rounds as f64;
    let listings = (m1 - m0) as f64 / rounds as f64;
    println!(
        "{namespaces} namespaces (+{referent} with referent auth), {remote} remote secrets: \
         {per_round} ListSecrets per poll over {rounds} polls ({pages} pages per listing, \
         {listings} listings per poll)"
    );
    // One listing for the shared store and one per referent namespace, each `pages` calls.
    assert_eq!(listings, (1 + referent) as f64, "listings per poll round");
    assert_eq!(
        per_round,
        (pages * (1 + referent as u64)) as f64,
        "ListSecrets per poll round\n{}",
        op.log()
    );
    // The shared store's listing reached every namespace: an edit there is seen everywhere.
    std::thread::sleep(Duration::from_millis(1100));
    let last_ns = namespaces - 1;
    moto::put_value(&moto_url, &format!("scale-{last_ns}"), r#"{"v":"edited"}"#)
        .expect("put value");
    eventually(
        Duration::from_secs(60),
        &format!("edit seen in scale-{last_ns}\n{}", op.log()),
        || {
            (cluster::secret_value(env, &format!("scale-{last_ns}"), "shared", "v").as_deref()
                == Some("edited"))
            .then_some(())
        },
    );
    drop(op);
    drop(private);
}
