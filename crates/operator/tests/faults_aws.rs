//! Fault injection end to end (issue #7): the real `eso-operator` binary against the local
//! control plane and moto, with AWS behind a fault-injecting proxy.
//!
//! - AWS down / throttling / 5xx / AccessDenied across every creationPolicy × deletionPolicy:
//!   no managed Secret changes or disappears, every ExternalSecret reports the failure, and all
//!   recover within about one refresh interval.
//! - A stale leader (frozen with SIGSTOP until a standby took the Lease, then resumed) makes no
//!   write.
//! - A stuck reconcile makes `/healthz` fail within the stall threshold; `/readyz` stays up.
//!
//! Each test has its own namespace and its own operator processes scoped to it.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, proxy, testenv};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{apply, es_ready, eventually, get, namespace, secret_value};
use operator::{Operator, aws_store_and_creds, fake_store, moto_url};
use serde_json::Value;

/// Everything observable about a Secret that a fault must not change.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    resource_version: String,
    type_: String,
    data: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    owner_references: String,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The Secret as it is now (`None`: it does not exist).
fn snapshot(env: &testenv::TestEnv, ns: &str, name: &str) -> Option<Snapshot> {
    let o = env.kubectl(&["get", "secret", name, "-n", ns, "-o", "json"]);
    if !o.status.success() {
        assert!(
            cluster::out(&o).contains("NotFound"),
            "reading Secret {ns}/{name}: {}",
            cluster::out(&o)
        );
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("Secret JSON");
    let meta = &v["metadata"];
    Some(Snapshot {
        resource_version: meta["resourceVersion"].as_str().unwrap_or_default().into(),
        type_: v["type"].as_str().unwrap_or_default().into(),
        data: string_map(&v["data"]),
        labels: string_map(&meta["labels"]),
        annotations: string_map(&meta["annotations"]),
        owner_references: meta["ownerReferences"].to_string(),
    })
}

/// Key-by-key differences (key names only, never values).
fn differences(name: &str, before: &Option<Snapshot>, after: &Option<Snapshot>) -> Vec<String> {
    let (b, a) = match (before, after) {
        (None, None) => return vec![],
        (Some(_), None) => return vec![format!("{name}: deleted")],
        (None, Some(_)) => return vec![format!("{name}: created")],
        (Some(b), Some(a)) => (b, a),
    };
    let mut out = Vec::new();
    let mut maps = |what: &str, x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
        for k in x.keys().chain(y.keys()) {
            match (x.get(k), y.get(k)) {
                (Some(_), None) => out.push(format!("{name}: {what} {k} lost")),
                (None, Some(_)) => out.push(format!("{name}: {what} {k} added")),
                (Some(p), Some(q)) if p != q => out.push(format!("{name}: {what} {k} changed")),
                _ => {}
            }
        }
    };
    maps("data", &b.data, &a.data);
    maps("label", &b.labels, &a.labels);
    maps("annotation", &b.annotations, &a.annotations);
    if b.resource_version != a.resource_version {
        out.push(format!(
            "{name}: resourceVersion {} -> {}",
            b.resource_version, a.resource_version
        ));
    }
    if b.type_ != a.type_ {
        out.push(format!("{name}: type changed"));
    }
    if b.owner_references != a.owner_references {
        out.push(format!("{name}: ownerReferences changed"));
    }
    out.sort();
    out.dedup();
    out
}

/// (creationPolicy, deletionPolicy) pairs the CRD admits: every creationPolicy and every
/// deletionPolicy appear (Delete needs Owner or Orphan; Merge is refused with None).
const MATRIX: &[(&str, &str)] = &[
    ("Owner", "Retain"),
    ("Owner", "Delete"),
    ("Owner", "Merge"),
    ("Orphan", "Retain"),
    ("Orphan", "Delete"),
    ("Orphan", "Merge"),
    ("Merge", "Retain"),
    ("Merge", "Merge"),
    ("None", "Retain"),
];

fn es_name(creation: &str, deletion: &str) -> String {
    format!("{}-{}", creation.to_lowercase(), deletion.to_lowercase())
}

const REFRESH: Duration = Duration::from_secs(2);

/// AWS down (connection dropped), ThrottlingException, 503 and AccessDenied, each held for more
/// than two refresh intervals, across every creationPolicy and deletionPolicy: no Secret changes
/// (data, labels, annotations, owner, resourceVersion) or disappears — in particular AccessDenied
/// never triggers deletionPolicy Delete — each ExternalSecret is Ready=False/SecretSyncedError
/// with ESO's message and the provider's reason, and all recover about one refresh after the
/// fault clears.
#[test]
fn aws_faults_change_no_secret_under_any_policy_and_recover() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-faults");
    let url = moto_url(env);
    let key = testenv::unique_name("faults");
    moto::create_secret(&url, &key, r#"{"a":"1","b":"2"}"#).expect("create");
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    apply(env, &aws_store_and_creds(&ns));
    let mut docs = String::new();
    for (creation, deletion) in MATRIX {
        let name = es_name(creation, deletion);
        if matches!(*creation, "Merge" | "None") {
            // Merge needs an existing target; None's target is someone else's and stays theirs.
            docs.push_str(&format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{team: payments}}\n  annotations: {{note: hand-made}}\nstringData: {{foreign: keep-me}}\n"
            ));
        }
        docs.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{tier: backend}}\n  annotations: {{owner-team: payments}}\n\
             spec:\n  refreshInterval: {}s\n  secretStoreRef: {{name: aws}}\n  target: {{creationPolicy: {creation}, deletionPolicy: {deletion}}}\n  dataFrom:\n  - extract: {{key: {key}}}\n",
            REFRESH.as_secs()
        ));
    }
    apply(env, &docs);
    let op = Operator::start(
        env,
        &ns,
        Some(&proxy.url),
        &[
            "--provider-cache-ttl",
            "1s",
            "--remote-change-poll-interval",
            "0",
        ],
    );
    let names: Vec<String> = MATRIX.iter().map(|(c, d)| es_name(c, d)).collect();
    let all_ready = || {
        names
            .iter()
            .all(|n| es_ready(env, &ns, n).starts_with("True/"))
    };
    eventually(
        Duration::from_secs(60),
        &format!("every ExternalSecret Ready\n{}", op.log()),
        || all_ready().then_some(()),
    );
    for (creation, deletion) in MATRIX {
        let name = es_name(creation, deletion);
        let a = secret_value(env, &ns, &name, "a");
        let foreign = secret_value(env, &ns, &name, "foreign");
        match *creation {
            "None" => assert!(
                a.is_none() && foreign.as_deref() == Some("keep-me"),
                "{name}"
            ),
            "Merge" => assert!(
                a.as_deref() == Some("1") && foreign.as_deref() == Some("keep-me"),
                "{name}"
            ),
            _ => assert_eq!(a.as_deref(), Some("1"), "{name}"),
        }
    }
    let snap_all = || -> BTreeMap<String, Option<Snapshot>> {
        names
            .iter()
            .map(|n| (n.clone(), snapshot(env, &ns, n)))
            .collect()
    };
    let diff_all = |b: &BTreeMap<String, Option<Snapshot>>,
                    a: &BTreeMap<String, Option<Snapshot>>| {
        names
            .iter()
            .flat_map(|n| differences(n, &b[n], &a[n]))
            .collect::<Vec<_>>()
    };
    // Steady state first: two refreshes without a write.
    let before = snap_all();
    std::thread::sleep(REFRESH * 2);
    let steady = snap_all();
    assert!(
        diff_all(&before, &steady).is_empty(),
        "Secrets written in steady state: {:?}",
        diff_all(&before, &steady)
    );

    for (fault, reason) in [
        (proxy::Fault::Drop, "Unavailable"),
        (proxy::Fault::Throttle, "ThrottlingException"),
        (proxy::Fault::Unavailable, "ServiceUnavailable"),
        (proxy::Fault::AccessDenied, "AccessDeniedException"),
    ] {
        proxy.inject(fault, u32::MAX);
        let start = Instant::now();
        for n in &names {
            let r = eventually(
                Duration::from_secs(60),
                &format!("{n} Ready=False under {fault:?}\n{}", op.log()),
                || {
                    let r = es_ready(env, &ns, n);
                    r.starts_with(
                        "False/SecretSyncedError/could not get secret data from provider: ",
                    )
                    .then_some(r)
                },
            );
            if fault != proxy::Fault::Drop {
                assert!(r.contains(reason), "{fault:?}: {n}: {r}");
            }
        }
        let all_false = start.elapsed();
        // Hold the fault for more than two refresh intervals after every ExternalSecret saw it.
        std::thread::sleep(REFRESH * 2 + Duration::from_secs(1));
        let during = snap_all();
        let diff = diff_all(&steady, &during);
        assert!(
            diff.is_empty(),
            "{fault:?} changed Secrets: {diff:?}\n{}",
            op.log()
        );
        let held = start.elapsed();
        proxy.inject(proxy::Fault::None, 0);
        let cleared = Instant::now();
        eventually(
            Duration::from_secs(30),
            &format!("recovery after {fault:?}\n{}", op.log()),
            || all_ready().then_some(()),
        );
        let recovery = cleared.elapsed();
        println!(
            "{fault:?}: all 9 Ready=False after {all_false:?}, held {held:?}, all Ready=True {recovery:?} after the fault cleared"
        );
        assert!(
            recovery < REFRESH * 3 + Duration::from_secs(3),
            "{fault:?}: recovery took {recovery:?} (refresh {REFRESH:?})"
        );
        // Recovery with unchanged remote data rewrites nothing either.
        let after = snap_all();
        let diff = diff_all(&steady, &after);
        assert!(diff.is_empty(), "{fault:?}: recovery rewrote: {diff:?}");
    }

    // The remote data changes after the faults: every writing policy follows, None does not.
    moto::put_value(&url, &key, r#"{"a":"after","b":"2"}"#).expect("put");
    for (creation, deletion) in MATRIX {
        let name = es_name(creation, deletion);
        let want = (*creation != "None").then_some("after");
        eventually(
            Duration::from_secs(30),
            &format!("{name} follows the remote change"),
            || (secret_value(env, &ns, &name, "a").as_deref() == want).then_some(()),
        );
    }
    drop(op);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

fn signal(op: &Operator, sig: &str) {
    let o = Command::new("kill")
        .args([sig, &op.child.id().to_string()])
        .output()
        .expect("kill");
    assert!(o.status.success(), "kill {sig}: {}", cluster::out(&o));
}

fn resource_version(env: &testenv::TestEnv, ns: &str, kind: &str, name: &str) -> String {
    get(
        env,
        &[
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
}

/// A leader frozen (SIGSTOP) until the standby holds the Lease, then resumed while the new leader
/// is itself frozen and the remote value has changed: the old leader writes nothing (no Secret,
/// status or Event write — its client fences writes once the Lease is unconfirmed for longer
/// than the renew deadline) and exits; the new leader then syncs the change.
#[test]
fn stale_leader_makes_no_write_after_losing_the_lease() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-stale");
    let url = moto_url(env);
    let key = testenv::unique_name("stale");
    moto::create_secret(&url, &key, r#"{"v":"one"}"#).expect("create");
    apply(env, &aws_store_and_creds(&ns));
    apply(env, &fake_store(&ns, "fake", &[("k", "one")]));
    // One ExternalSecret reads AWS; ten read the fake provider, which answers without a network
    // round trip, so a resumed stale leader would race its own Lease check with their writes.
    let mut docs = format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: led, namespace: {ns}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: {key}, property: v}}}}\n"
    );
    let targets: Vec<String> = std::iter::once("led".to_string())
        .chain((0..10).map(|i| format!("f-{i}")))
        .collect();
    for t in &targets[1..] {
        docs.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {t}, namespace: {ns}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        ));
    }
    apply(env, &docs);
    let all_are = |v: &str| {
        targets
            .iter()
            .all(|t| secret_value(env, &ns, t, "v").as_deref() == Some(v))
    };
    let versions = || -> Vec<String> {
        targets
            .iter()
            .flat_map(|t| {
                [
                    resource_version(env, &ns, "secret", t),
                    resource_version(env, &ns, "externalsecrets.external-secrets.io", t),
                ]
            })
            .collect()
    };
    let flags = [
        "--enable-leader-election",
        "--leader-election-namespace",
        ns.as_str(),
        "--leader-election-id",
        "eso-stale",
        "--leader-election-lease-duration",
        "6s",
        "--leader-election-renew-deadline",
        "4s",
        "--leader-election-retry-period",
        "1s",
        "--provider-cache-ttl",
        "1s",
        "--remote-change-poll-interval",
        "0",
    ];
    let holder = || {
        get(
            env,
            &[
                "get",
                "lease",
                "eso-stale",
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
        &format!("leader A syncs\n{}", a.log()),
        || all_are("one").then_some(()),
    );
    assert!(holder().ends_with(&format!("_{}", a.child.id())));
    let b = Operator::start_named(env, &ns, &format!("{ns}-b"), None, &flags);
    std::thread::sleep(Duration::from_secs(2));

    // Freeze A; B takes the Lease once it expires and starts its controllers.
    signal(&a, "-STOP");
    let frozen = Instant::now();
    eventually(
        Duration::from_secs(30),
        &format!("B takes the Lease\n{}", b.log()),
        || {
            holder()
                .ends_with(&format!("_{}", b.child.id()))
                .then_some(())
        },
    );
    let takeover = frozen.elapsed();
    eventually(
        Duration::from_secs(30),
        &format!("B's caches synced\n{}", b.log()),
        || b.log().contains("caches synced").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2)); // B reconciled (nothing to write)

    // Freeze B too: from now on no legitimate writer exists. Change the value in AWS and wake A.
    signal(&b, "-STOP");
    let rvs = versions();
    let events_before = get(env, &["get", "events", "-n", &ns, "-o", "name"]);
    moto::put_value(&url, &key, r#"{"v":"two"}"#).expect("put");
    apply(env, &fake_store(&ns, "fake", &[("k", "two")]));
    signal(&a, "-CONT");
    let resumed = Instant::now();
    let status = eventually(
        Duration::from_secs(20),
        &format!("the stale leader exits\n{}", a.log()),
        || a.child.try_wait().expect("try_wait"),
    );
    let exit_after = resumed.elapsed();
    // A wrote nothing: the Secrets, the ExternalSecrets (status) and the Events are as they were.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        versions(),
        rvs,
        "the stale leader wrote a Secret or an ExternalSecret status\n{}",
        a.log()
    );
    assert!(all_are("one"));
    assert_eq!(
        get(env, &["get", "events", "-n", &ns, "-o", "name"]),
        events_before,
        "the stale leader published Events"
    );
    assert!(!status.success(), "the stale leader exited with {status}");
    let log_a = a.log();
    assert!(log_a.contains("leadership lost"), "{log_a}");
    let fenced = log_a.matches("write fenced").count();

    // Wake B: it renews its own Lease and syncs the change.
    signal(&b, "-CONT");
    let woke = Instant::now();
    eventually(
        Duration::from_secs(30),
        &format!("B syncs the change\n{}", b.log()),
        || all_are("two").then_some(()),
    );
    println!(
        "stale leader: B took the Lease {takeover:?} after A froze; A exited {exit_after:?} after resuming ({status}), \
         {fenced} write(s) fenced, nothing written; B synced the change {:?} after resuming",
        woke.elapsed()
    );
    drop(b);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// `GET path` on a probe server: (status code, body).
fn probe(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((code, body))
}

/// With the test-only `ESO_FAULT_INJECT=stuck-reconcile` every reconcile hangs: `/healthz`
/// turns 503 once one has been running longer than `--liveness-stall-threshold` (so the kubelet
/// restarts the pod), while `/readyz` stays 200 (caches synced; readiness is not liveness). The
/// same operator without the fault stays healthy over the same time.
#[test]
fn stuck_reconcile_fails_liveness_end_to_end() {
    let Some(env) = cluster::env() else { return };
    const THRESHOLD: Duration = Duration::from_secs(3);
    let stuck_ns = namespace(env, "e2e-stuck");
    let ok_ns = namespace(env, "e2e-unstuck");
    let es = |ns: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: s, namespace: {ns}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: fake, kind: SecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: k}}}}\n"
        )
    };
    for ns in [&stuck_ns, &ok_ns] {
        apply(env, &fake_store(ns, "fake", &[("k", "v")]));
        apply(env, &es(ns));
    }
    let flags = ["--liveness-stall-threshold", "3s"];
    let stuck = Operator::start_with_env(
        env,
        &stuck_ns,
        &stuck_ns,
        None,
        &flags,
        &[("ESO_FAULT_INJECT", "stuck-reconcile")],
    );
    let healthy = Operator::start(env, &ok_ns, None, &flags);
    eventually(
        Duration::from_secs(60),
        &format!("stuck operator ready\n{}", stuck.log()),
        || (probe(&stuck.health_addr, "/readyz")?.0 == 200).then_some(()),
    );
    let ready_at = Instant::now();
    let early = probe(&stuck.health_addr, "/healthz").expect("healthz");
    assert_eq!(early.0, 200, "unhealthy before the threshold: {}", early.1);
    let (code, body) = eventually(
        Duration::from_secs(30),
        &format!("/healthz fails\n{}", stuck.log()),
        || probe(&stuck.health_addr, "/healthz").filter(|(c, _)| *c == 503),
    );
    let unhealthy_after = ready_at.elapsed();
    assert!(
        body.contains("a reconcile has been running for"),
        "{code}: {body}"
    );
    assert!(
        unhealthy_after < THRESHOLD + Duration::from_secs(3),
        "liveness failed only {unhealthy_after:?} after readiness (threshold {THRESHOLD:?})"
    );
    // Readiness is unaffected (caches are synced); nothing was synced.
    assert_eq!(probe(&stuck.health_addr, "/readyz").expect("readyz").0, 200);
    assert!(secret_value(env, &stuck_ns, "s", "v").is_none());
    assert!(stuck.log().contains("TEST-ONLY fault injection"));

    // The control operator synced and stayed healthy well past the threshold.
    eventually(Duration::from_secs(30), "control synced", || {
        (secret_value(env, &ok_ns, "s", "v").as_deref() == Some("v")).then_some(())
    });
    std::thread::sleep(THRESHOLD);
    let (ok_code, ok_body) = probe(&healthy.health_addr, "/healthz").expect("healthz");
    assert_eq!(ok_code, 200, "the control operator is unhealthy: {ok_body}");
    println!(
        "stuck reconcile: /healthz 503 {unhealthy_after:?} after /readyz turned 200 (threshold {THRESHOLD:?}): {}",
        body.trim()
    );
    drop(stuck);
    drop(healthy);
    let _ = env.kubectl(&["delete", "namespace", &stuck_ns, &ok_ns, "--wait=false"]);
}
