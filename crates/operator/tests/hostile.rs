//! The hostile-input corpus (`examples/hostile/`) applied end to end against one real operator,
//! and a small fairness scenario. Each corpus file holds one object and says what must happen:
//! `# expect: rejected <text>` (the apiserver refuses it with a message containing the text),
//! `# expect: not-ready [<text>]` (accepted; Ready=False with a message containing the text) or
//! `# expect: ready`. Meanwhile a healthy canary ExternalSecret keeps following AWS edits and the
//! operator process never exits.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, moto, operator, testenv};

use std::time::{Duration, Instant};

use cluster::{apply, es_ready, eventually, get, namespace, out, root, secret_value};
use operator::{Operator, aws_store_and_creds, moto_url};

/// AWS secrets the corpus refers to as `hostile/<name>` (the test puts them under a unique prefix).
fn remote_secrets() -> Vec<(&'static str, String)> {
    vec![
        (
            "db",
            r#"{"username":"dbuser","password":"dbpassword","host":"dbhost","port":"5432"}"#.into(),
        ),
        ("text", "just some text, not JSON".into()),
        ("array", "[1,2,3]".into()),
        ("bad-keys", r#"{"bad/key":"v1","ok":"v2"}"#.into()),
        ("space-keys", r#"{"has space":"v"}"#.into()),
        // The AWS limit for a secret value is 65,536 bytes.
        ("at-limit", "x".repeat(65_536)),
        (
            "unicode",
            "{\"ключ\":\"значение\",\"naïve\":\"ü\",\"ok\":\"\\u0007bell\\ttab\\nnewline \u{202e}rtl\"}"
                .into(),
        ),
        (
            "nested",
            r#"{"a":{"b":{"c":"deep"}},"list":[1,2,3]}"#.into(),
        ),
        ("nul", "abc\u{0}def".into()),
        (
            "regex-keys",
            r#"{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab":"v"}"#.into(),
        ),
        ("aaaaaaaaaaaaaaaaaaaa", "matched by ^.../(a+)+$".into()),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
            "not matched".into(),
        ),
    ]
}

/// What a corpus file expects.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Rejected(String),
    NotReady(String),
    Ready,
}

fn parse_expect(text: &str) -> Option<Expect> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect:"))?
        .trim();
    if let Some(rest) = line.strip_prefix("rejected") {
        Some(Expect::Rejected(rest.trim().to_string()))
    } else if let Some(rest) = line.strip_prefix("not-ready") {
        Some(Expect::NotReady(rest.trim().to_string()))
    } else if line == "ready" {
        Some(Expect::Ready)
    } else {
        None
    }
}

fn corpus() -> Vec<(String, String, Expect)> {
    let dir = root().join("examples/hostile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/hostile")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&p).expect("read corpus file");
            let expect =
                parse_expect(&text).unwrap_or_else(|| panic!("{name}: no `# expect:` line"));
            (name, text, expect)
        })
        .collect()
}

/// `kind` and `metadata.name` of a one-object YAML file (flow-style metadata, as in the corpus).
fn kind_and_name(text: &str) -> (String, String) {
    let kind = text
        .lines()
        .find_map(|l| l.strip_prefix("kind: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("metadata: {name: "))
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_default()
        .trim()
        .to_string();
    (kind, name)
}

/// The Ready condition of any of our kinds as "status/reason/message".
fn ready_of(env: &testenv::TestEnv, ns: &str, kind: &str, name: &str) -> String {
    if kind == "ExternalSecret" {
        return es_ready(env, ns, name);
    }
    get(
        env,
        &[
            "get",
            &format!("{}.external-secrets.io", kind.to_ascii_lowercase()),
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}/{.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    )
}

fn canary(ns: &str, key: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: canary, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 2s\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: password, remoteRef: {{key: {key}, property: password}}}}\n"
    )
}

/// (file, kind, name, expectation) of every corpus object, for the log.
fn corpus_summary(corpus: &[(String, String, Expect)]) -> Vec<(String, String, String, Expect)> {
    corpus
        .iter()
        .filter(|(_, _, e)| !matches!(e, Expect::Rejected(_)))
        .map(|(file, text, e)| {
            let (kind, name) = kind_and_name(text);
            (file.clone(), kind, name, e.clone())
        })
        .collect()
}

/// Resident memory of a process, in MiB (0 if unknown).
fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

#[test]
fn hostile_corpus_end_to_end() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "hostile");
    let prefix = testenv::unique_name("hostile");
    let url = moto_url(env);
    for (name, value) in remote_secrets() {
        moto::create_secret(&url, &format!("{prefix}/{name}"), &value)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    let canary_key = format!("{prefix}/canary");
    moto::create_secret(&url, &canary_key, r#"{"password":"v1"}"#).expect("create canary");
    apply(env, &aws_store_and_creds(&ns));
    let mut op = Operator::start(env, &ns, None, &[]);
    apply(env, &canary(&ns, &canary_key));
    eventually(Duration::from_secs(60), "canary synced", || {
        (secret_value(env, &ns, "canary", "password").as_deref() == Some("v1")).then_some(())
    });

    let corpus = corpus();
    assert!(
        corpus.len() >= 50,
        "the corpus has {} objects",
        corpus.len()
    );
    let mut failures = Vec::new();
    let mut accepted = Vec::new();
    for (file, text, expect) in &corpus {
        let text = text.replace("hostile/", &format!("{prefix}/"));
        let o = env.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &text);
        let output = out(&o);
        match expect {
            Expect::Rejected(what) => {
                if o.status.success() {
                    failures.push(format!("{file}: accepted, expected rejected ({what})"));
                } else if !output.contains(what.as_str()) {
                    failures.push(format!(
                        "{file}: rejected without {what:?}: {}",
                        output.trim()
                    ));
                }
            }
            _ if !o.status.success() => {
                failures.push(format!(
                    "{file}: rejected, expected {expect:?}: {}",
                    output.trim()
                ));
            }
            _ => {
                let (kind, name) = kind_and_name(&text);
                accepted.push((file.clone(), kind, name, expect.clone()));
            }
        }
    }
    assert!(
        op.child.try_wait().expect("try_wait").is_none(),
        "the operator exited while the corpus was applied\n{}",
        op.log()
    );

    // Every accepted object settles as expected.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending = accepted;
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|(_, kind, name, expect)| {
            let ready = ready_of(env, &ns, kind, name);
            let settled = match expect {
                Expect::Ready => ready.starts_with("True/"),
                Expect::NotReady(what) => {
                    ready.starts_with("False/") && ready.contains(what.as_str())
                }
                Expect::Rejected(_) => true,
            };
            !settled
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    for (file, kind, name, _) in corpus_summary(&corpus) {
        eprintln!(
            "{file}: {kind} {name}: {}",
            ready_of(env, &ns, &kind, &name)
        );
    }
    for (file, kind, name, expect) in &pending {
        failures.push(format!(
            "{file}: {kind} {name} expected {expect:?}, has Ready {:?}",
            ready_of(env, &ns, kind, name)
        ));
    }
    assert!(
        op.child.try_wait().expect("try_wait").is_none(),
        "the operator exited after the corpus was applied\n{}",
        op.log()
    );

    let rss = rss_mib(op.child.id());
    eprintln!("operator RSS after the corpus: {rss} MiB");
    assert!(rss < 1024, "operator RSS {rss} MiB after the corpus");

    // The canary still follows AWS.
    moto::put_value(&url, &canary_key, r#"{"password":"v2"}"#).expect("update canary");
    let t = Instant::now();
    eventually(
        Duration::from_secs(60),
        "canary follows the AWS edit",
        || (secret_value(env, &ns, "canary", "password").as_deref() == Some("v2")).then_some(()),
    );
    eprintln!(
        "{} corpus objects; canary followed the edit in {:.1} s",
        corpus.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(
        op.child.try_wait().expect("try_wait").is_none(),
        "the operator exited\n{}",
        op.log()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Fairness, small: 500 ExternalSecrets whose remote keys do not exist are all attempted and
/// retrying with backoff; a new healthy ExternalSecret in the same namespace (same queue, store
/// and AWS client) is Ready within 10 s. `cargo xtask bench fairness` runs the 5,000 version.
#[test]
fn a_new_external_secret_is_ready_quickly_while_500_others_fail() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "fairness");
    let prefix = testenv::unique_name("fairness");
    let url = moto_url(env);
    moto::create_secret(&url, &format!("{prefix}/good"), r#"{"password":"ok"}"#).expect("create");
    apply(env, &aws_store_and_creds(&ns));
    let mut op = Operator::start(env, &ns, None, &[]);
    let failing = 500;
    let mut batch = String::new();
    for i in 0..failing {
        batch.push_str(&format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: bad-{i}, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: password, remoteRef: {{key: {prefix}/missing-{}, property: password}}}}\n---\n",
            i % 50
        ));
    }
    let o = env.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &batch);
    assert!(o.status.success(), "{}", out(&o));
    let failed = || {
        get(
            env,
            &["get", "externalsecrets.external-secrets.io", "-n", &ns, "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"],
        )
        .lines()
        .filter(|l| *l == "False")
        .count()
    };
    eventually(Duration::from_secs(180), "all 500 attempted", || {
        (failed() >= failing).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3)); // retries under way
    let t = Instant::now();
    apply(
        env,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: good-new, namespace: {ns}}}\n\
             spec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws}}\n  data:\n  - {{secretKey: password, remoteRef: {{key: {prefix}/good, property: password}}}}\n"
        ),
    );
    eventually(
        Duration::from_secs(30),
        "the new ExternalSecret Ready",
        || {
            es_ready(env, &ns, "good-new")
                .starts_with("True/")
                .then_some(())
        },
    );
    let took = t.elapsed();
    eprintln!(
        "new ExternalSecret Ready {:.2} s after it was applied, with {failing} failing",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        op.child.try_wait().expect("try_wait").is_none(),
        "the operator exited"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
