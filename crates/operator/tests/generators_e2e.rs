//! Generators end to end (issue #16): the real `eso-operator` binary, the real control plane and
//! moto (STS, ECR) behind the counting proxy. Password, UUID and a ClusterGenerator through
//! `dataFrom[].sourceRef.generatorRef`; `refreshPolicy: CreatedOnce` keeps a generated password;
//! a periodic refresh generates a new one; STSSessionToken and ECRAuthorizationToken read from
//! moto with ESO's output keys (an ESO dockerconfigjson template works unchanged); a generator
//! of another cloud is reported unsupported; no generated value reaches the log, Events or status.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, operator, proxy, testenv};

use std::time::Duration;

use cluster::{apply, es_ready, eventually, get, namespace, secret_value};
use operator::{Operator, moto_url};

const GEN: &str = "generators.external-secrets.io/v1alpha1";

fn rv(env: &testenv::TestEnv, ns: &str, name: &str) -> String {
    get(
        env,
        &[
            "get",
            "secret",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
}

#[test]
fn password_uuid_and_cluster_generator_created_once_and_periodic() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-gen");
    let cg = testenv::unique_name("cg-pw");
    let docs = format!(
        "apiVersion: {GEN}\nkind: Password\nmetadata: {{name: pw, namespace: {ns}}}\nspec: {{length: 32, digits: 5, symbols: 4, symbolCharacters: '-_+=*', noUpper: false, allowRepeat: false}}\n\
         ---\napiVersion: {GEN}\nkind: UUID\nmetadata: {{name: id, namespace: {ns}}}\n\
         ---\napiVersion: {GEN}\nkind: ClusterGenerator\nmetadata: {{name: {cg}}}\nspec:\n  kind: Password\n  generator:\n    passwordSpec: {{length: 16, digits: 2, symbols: 0, noUpper: true, allowRepeat: true}}\n\
         ---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: once, namespace: {ns}}}\n\
         spec:\n  refreshPolicy: CreatedOnce\n  dataFrom:\n  - sourceRef: {{generatorRef: {{apiVersion: {GEN}, kind: Password, name: pw}}}}\n  - sourceRef: {{generatorRef: {{apiVersion: {GEN}, kind: UUID, name: id}}}}\n\
         ---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: periodic, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 1s\n  dataFrom:\n  - sourceRef: {{generatorRef: {{apiVersion: {GEN}, kind: ClusterGenerator, name: {cg}}}}}\n    rewrite:\n    - regexp: {{source: '^password$', target: db-password}}\n\
         ---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: other-cloud, namespace: {ns}}}\n\
         spec:\n  dataFrom:\n  - sourceRef: {{generatorRef: {{apiVersion: {GEN}, kind: GCRAccessToken, name: gcr}}}}\n"
    );
    apply(env, &docs);
    let op = Operator::start(env, &ns, None, &[]);
    let pw = eventually(
        Duration::from_secs(60),
        &format!("password generated\n{}", op.log()),
        || secret_value(env, &ns, "once", "password"),
    );
    assert_eq!(pw.chars().count(), 32, "length");
    assert_eq!(pw.chars().filter(char::is_ascii_digit).count(), 5);
    assert_eq!(pw.chars().filter(|c| "-_+=*".contains(*c)).count(), 4);
    let distinct: std::collections::BTreeSet<char> = pw.chars().collect();
    assert_eq!(distinct.len(), 32, "no repeated character");
    let uuid = secret_value(env, &ns, "once", "uuid").expect("uuid");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");

    let first = eventually(
        Duration::from_secs(60),
        &format!("cluster generator\n{}", op.log()),
        || secret_value(env, &ns, "periodic", "db-password"),
    );
    assert_eq!(first.len(), 16);
    assert!(!first.chars().any(|c| c.is_ascii_uppercase()), "noUpper");
    // Periodic: a new password after a refresh; CreatedOnce: the same Secret, untouched.
    let once_rv = rv(env, &ns, "once");
    eventually(
        Duration::from_secs(30),
        &format!("periodic regenerates\n{}", op.log()),
        || {
            (secret_value(env, &ns, "periodic", "db-password").as_deref() != Some(first.as_str()))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rv(env, &ns, "once"),
        once_rv,
        "CreatedOnce rewrote the Secret"
    );
    assert_eq!(
        secret_value(env, &ns, "once", "password").as_deref(),
        Some(pw.as_str())
    );

    // Another cloud's generator: Ready=False naming it, no Secret.
    let ready = eventually(
        Duration::from_secs(30),
        &format!("other cloud refused\n{}", op.log()),
        || {
            let r = es_ready(env, &ns, "other-cloud");
            r.starts_with("False/").then_some(r)
        },
    );
    let msg = get(
        env,
        &[
            "get",
            "externalsecret",
            "other-cloud",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    );
    assert!(
        msg.contains("GCRAccessToken") && msg.contains("not supported"),
        "{ready}: {msg}"
    );
    assert!(
        !env.kubectl(&["get", "secret", "other-cloud", "-n", &ns])
            .status
            .success()
    );

    // No generated value anywhere but the Secrets.
    let events = get(env, &["get", "events", "-n", &ns, "-o", "yaml"]);
    let statuses = get(env, &["get", "externalsecrets", "-n", &ns, "-o", "yaml"]);
    let log = op.log();
    for v in [pw.as_str(), uuid.as_str(), first.as_str()] {
        for (what, text) in [("log", &log), ("events", &events), ("status", &statuses)] {
            assert!(!text.contains(v), "a generated value reached the {what}");
        }
    }
    let _ = env.kubectl(&["delete", "clustergenerator", &cg, "--wait=false"]);
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn sts_session_token_and_ecr_token_from_moto() {
    let Some(env) = cluster::env() else { return };
    let ns = namespace(env, "e2e-gen-aws");
    let url = moto_url(env);
    let proxy = proxy::Proxy::start(&url).expect("proxy");
    let auth = "  auth:\n    secretRef:\n      accessKeyIDSecretRef: {name: aws-creds, key: access-key}\n      secretAccessKeySecretRef: {name: aws-creds, key: secret-key}\n";
    let template = r#"{"auths":{"{{ .proxy_endpoint }}":{"username":"{{ .username }}","password":"{{ .password }}","auth":"{{ printf "%s:%s" .username .password | b64enc }}"}}}"#;
    let docs = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-creds, namespace: {ns}}}\nstringData: {{access-key: testing, secret-key: testing}}\n\
         ---\napiVersion: {GEN}\nkind: STSSessionToken\nmetadata: {{name: sts, namespace: {ns}}}\nspec:\n  region: us-east-1\n{auth}  requestParameters: {{sessionDuration: 900}}\n\
         ---\napiVersion: {GEN}\nkind: ECRAuthorizationToken\nmetadata: {{name: ecr, namespace: {ns}}}\nspec:\n  region: us-east-1\n{auth}\
         ---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: sts, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 1h\n  dataFrom:\n  - sourceRef: {{generatorRef: {{apiVersion: {GEN}, kind: STSSessionToken, name: sts}}}}\n\
         ---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: registry, namespace: {ns}}}\n\
         spec:\n  refreshInterval: 1h\n  target:\n    template:\n      type: kubernetes.io/dockerconfigjson\n      data:\n        .dockerconfigjson: '{template}'\n  dataFrom:\n  - sourceRef: {{generatorRef: {{apiVersion: {GEN}, kind: ECRAuthorizationToken, name: ecr}}}}\n"
    );
    apply(env, &docs);
    let op = Operator::start(env, &ns, Some(&proxy.url), &[]);
    for k in [
        "access_key_id",
        "secret_access_key",
        "session_token",
        "expiration",
    ] {
        eventually(
            Duration::from_secs(60),
            &format!("sts key {k}\n{}", op.log()),
            || secret_value(env, &ns, "sts", k).filter(|v| !v.is_empty()),
        );
    }
    let exp: i64 = secret_value(env, &ns, "sts", "expiration")
        .unwrap()
        .parse()
        .expect("expiration is Unix seconds");
    assert!(exp > 1_600_000_000, "{exp}");
    let dcj = eventually(
        Duration::from_secs(60),
        &format!("dockerconfigjson\n{}", op.log()),
        || secret_value(env, &ns, "registry", ".dockerconfigjson"),
    );
    let v: serde_json::Value = serde_json::from_str(&dcj).expect("valid JSON");
    let auths = v["auths"].as_object().expect("auths");
    assert_eq!(auths.len(), 1);
    let (endpoint, entry) = auths.iter().next().unwrap();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    assert_eq!(entry["username"], "AWS");
    let typ = get(
        env,
        &[
            "get",
            "secret",
            "registry",
            "-n",
            &ns,
            "-o",
            "jsonpath={.type}",
        ],
    );
    assert_eq!(typ, "kubernetes.io/dockerconfigjson");
    let counts = proxy.counts();
    assert!(
        counts.get("GetSessionToken").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert!(
        counts.get("GetAuthorizationToken").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    let token = secret_value(env, &ns, "sts", "session_token").unwrap();
    assert!(
        !op.log().contains(&token),
        "the session token reached the log"
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
