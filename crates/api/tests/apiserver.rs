//! The generated CRDs against a real kube-apiserver (from `cargo xtask testenv up`).
//!
//! Skips when no testenv is configured, fails when `ESO_REQUIRE_TESTENV=1` (as in `cargo xtask ci`).
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{cluster, testenv};

use cluster::{namespace, out, root};

fn installed() -> Option<&'static testenv::TestEnv> {
    cluster::env()
}

#[test]
fn crds_are_established_with_both_versions_served() {
    let Some(env) = installed() else { return };
    let o = env.kubectl(&[
        "get",
        "crd",
        "externalsecrets.external-secrets.io",
        "-o",
        "jsonpath={range .spec.versions[*]}{.name}={.served}/{.storage} {end}",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "v1=true/true v1beta1=true/false"
    );
    let o = env.kubectl(&[
        "api-resources",
        "--api-group=external-secrets.io",
        "-o",
        "name",
    ]);
    let names = String::from_utf8_lossy(&o.stdout).to_string();
    for r in [
        "externalsecrets",
        "secretstores",
        "clustersecretstores",
        "clusterexternalsecrets",
        "pushsecrets",
        "clusterpushsecrets",
    ] {
        assert!(names.contains(r), "{r} not served: {names}");
    }
    let o = env.kubectl(&[
        "get",
        "crd",
        "-l",
        "external-secrets.io/component=controller",
        "-o",
        "name",
    ]);
    // The six external-secrets.io CRDs and the five generator CRDs (labelled as ESO's are).
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 11);
}

#[test]
fn seed_manifests_apply_unchanged() {
    let Some(env) = installed() else { return };
    // The seeds name fixed namespaces; make sure they exist, then server-side dry-run the exact files.
    let _ = env.kubectl(&["create", "namespace", "external-secrets"]);
    for f in [
        "aws-secret.yaml",
        "cluster-secret-store.yaml",
        "secret-store.yaml",
        "external-secret.yaml",
    ] {
        let path = root().join("examples/seed").join(f);
        let o = env.kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            path.to_str().unwrap_or_default(),
        ]);
        assert!(o.status.success(), "{f}: {}", out(&o));
    }
}

/// Apply a seed/v1 set into fresh namespaces (renaming only namespaces and the cluster store)
/// and check what the apiserver stored.
fn apply_flow(dir: &str) {
    let Some(env) = installed() else { return };
    let ns = namespace(env, "seed");
    let cred_ns = namespace(env, "creds");
    let css = testenv::unique_name("css");
    for f in [
        "aws-secret.yaml",
        "cluster-secret-store.yaml",
        "secret-store.yaml",
        "external-secret.yaml",
    ] {
        let src = if f == "aws-secret.yaml" { "seed" } else { dir };
        let text =
            std::fs::read_to_string(root().join("examples").join(src).join(f)).unwrap_or_default();
        let text = text
            .replace("namespace: default", &format!("namespace: {ns}"))
            .replace(
                "namespace: external-secrets",
                &format!("namespace: {cred_ns}"),
            )
            .replace(
                "name: aws-secret-store\nspec",
                &format!("name: {css}\nspec"),
            )
            .replace(
                "name: aws-secret-store\n    kind: ClusterSecretStore",
                &format!("name: {css}\n    kind: ClusterSecretStore"),
            );
        let o = env.kubectl_stdin(&["apply", "-f", "-"], &text);
        assert!(o.status.success(), "{dir}/{f}: {}", out(&o));
    }
    // Stored as v1, readable in both versions, and the CRD defaults were applied.
    let o = env.kubectl(&["get", "externalsecrets.v1.external-secrets.io", "my-db-secret", "-n", &ns, "-o", "jsonpath={.spec.target.creationPolicy}/{.spec.target.deletionPolicy}/{.spec.refreshInterval}/{.spec.data[3].remoteRef.property}"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Owner/Retain/1h/port",
        "{}",
        out(&o)
    );
    let o = env.kubectl(&[
        "get",
        "externalsecrets.v1beta1.external-secrets.io",
        "my-db-secret",
        "-n",
        &ns,
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "external-secrets.io/v1beta1",
        "{}",
        out(&o)
    );
    // Strategy fields get no defaults (GitOps diffs, ESO #6797).
    let o = env.kubectl(&["get", "es", "my-db-secret", "-n", &ns, "-o", "json"]);
    let json = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        !json.contains("decodingStrategy")
            && !json.contains("conversionStrategy")
            && !json.contains("metadataPolicy"),
        "{json}"
    );
    // Printer columns.
    let o = env.kubectl(&["get", "es", "-n", &ns]);
    let header = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    for col in [
        "NAME",
        "STORETYPE",
        "STORE",
        "REFRESH INTERVAL",
        "STATUS",
        "READY",
    ] {
        assert!(header.contains(col), "missing column {col} in {header:?}");
    }
    let o = env.kubectl(&["get", "es", "-n", &ns, "--no-headers"]);
    let row = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        row.contains("ClusterSecretStore") && row.contains(&css) && row.contains("1h"),
        "{row}"
    );
    let o = env.kubectl(&["get", "css", &css]);
    let header = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    for col in ["AGE", "STATUS", "CAPABILITIES", "READY"] {
        assert!(header.contains(col), "missing column {col} in {header:?}");
    }
    let o = env.kubectl(&["get", "ss", "-n", &ns, "-o", "name"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("secretstore"),
        "{}",
        out(&o)
    );
    // The category lists all three kinds.
    let o = env.kubectl(&["get", "external-secrets", "-n", &ns, "-o", "name"]);
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        s.contains("externalsecret") && s.contains("secretstore"),
        "{s}"
    );
    let _ = env.kubectl(&["delete", "css", &css, "--wait=false"]);
    let _ = env.kubectl(&["delete", "namespace", &ns, &cred_ns, "--wait=false"]);
}

#[test]
fn seed_flow_v1beta1_applies_and_is_stored_as_v1() {
    apply_flow("seed");
}

#[test]
fn seed_flow_v1_applies() {
    apply_flow("v1");
}

#[test]
fn invalid_objects_are_rejected_naming_the_field() {
    let Some(env) = installed() else { return };
    let ns = namespace(env, "invalid");
    let dir = root().join("examples/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    assert!(files.len() >= 15, "only {} invalid examples", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", path.display()))
            .to_string();
        // Cluster-scoped objects get a unique name so parallel runs never collide.
        let text = text.replace(
            "metadata: {name: ",
            &format!("metadata: {{name: {}-", testenv::unique_name("x")),
        );
        let o = env.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], &text);
        let msg = out(&o);
        if o.status.success() {
            failures.push(format!(
                "{}: accepted, expected rejection mentioning {expect:?}",
                path.display()
            ));
        } else if !msg.contains(&expect) {
            failures.push(format!(
                "{}: rejected, but message lacks {expect:?}: {msg}",
                path.display()
            ));
        }
    }
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unsupported_features_are_accepted_and_kept() {
    let Some(env) = installed() else { return };
    let ns = namespace(env, "accepted");
    for f in [
        "other-provider-store.yaml",
        "generator-ref.yaml",
        "everything.yaml",
    ] {
        let path = root().join("examples/accepted").join(f);
        let o = env.kubectl(&["create", "-n", &ns, "-f", path.to_str().unwrap_or_default()]);
        assert!(o.status.success(), "{f}: {}", out(&o));
    }
    let o = env.kubectl(&[
        "get",
        "ss",
        "vault-store",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.provider.vault.auth.kubernetes.role}",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "demo", "{}", out(&o));
    let o = env.kubectl(&[
        "get",
        "es",
        "generated-password",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.dataFrom[0].sourceRef.generatorRef.kind}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Password",
        "{}",
        out(&o)
    );
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn common_examples_apply() {
    apply_examples("common", 7);
}

/// examples/irsa/ (linked from docs/getting-started.md): its Kubernetes objects pass the
/// apiserver's validation (the chart values and the IAM trust policy are not Kubernetes objects).
#[test]
fn irsa_examples_apply() {
    apply_examples("irsa", 4);
}

/// Apply every Kubernetes object file (YAML with a `kind`) of examples/<dir> in a fresh namespace.
fn apply_examples(dir: &str, at_least: usize) {
    let Some(env) = installed() else { return };
    let ns = namespace(env, dir);
    let dir = root().join("examples").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().and_then(|e| e.to_str()) == Some("yaml")
            && std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("kind: "))
    });
    files.sort();
    assert!(
        files.len() >= at_least,
        "only {} examples in {}",
        files.len(),
        dir.display()
    );
    for path in &files {
        // Cluster-scoped stores get a unique name so parallel runs never collide.
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let text = text
            .replace(
                "name: aws-irsa-example",
                &format!("name: {}", testenv::unique_name("irsa")),
            )
            .replace(
                "name: aws-irsa-operator",
                &format!("name: {}", testenv::unique_name("irsa-op")),
            )
            .replace(
                "name: aws-pod-identity-example",
                &format!("name: {}", testenv::unique_name("podid")),
            );
        let o = env.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &text);
        assert!(o.status.success(), "{}: {}", path.display(), out(&o));
    }
    let _ = env.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
