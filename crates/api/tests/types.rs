//! The types accept ESO YAML unchanged and keep what they do not implement.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_api::*;
use std::path::Path;

fn example(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn seed_external_secret_parses_with_defaults() {
    let es: ExternalSecret = serde_saphyr::from_str(&example("seed/external-secret.yaml")).unwrap();
    assert_eq!(es.spec.data.len(), 4);
    assert_eq!(es.spec.data[3].remote_ref.property.as_deref(), Some("port"));
    assert_eq!(es.spec.target.creation_policy, CreationPolicy::Owner);
    assert_eq!(es.spec.target.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(es.spec.refresh_interval.as_deref(), Some("1h"));
    let store = es.spec.secret_store_ref.unwrap();
    assert_eq!(store.kind, Some(StoreKind::ClusterSecretStore));
}

#[test]
fn omitted_refresh_interval_defaults_like_eso() {
    let es: ExternalSecretSpec = serde_json::from_value(serde_json::json!({
        "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]
    }))
    .unwrap();
    assert_eq!(
        es.refresh_interval.as_deref(),
        Some(DEFAULT_REFRESH_INTERVAL)
    );
}

#[test]
fn strategy_fields_are_not_defaulted_when_serialized() {
    let es: ExternalSecretSpec = serde_json::from_value(serde_json::json!({
        "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]
    }))
    .unwrap();
    let out = serde_json::to_string(&es).unwrap();
    assert!(!out.contains("decodingStrategy"), "{out}");
    assert!(!out.contains("conversionStrategy"), "{out}");
    assert!(!out.contains("metadataPolicy"), "{out}");
}

#[test]
fn cluster_store_seed_parses() {
    let css: ClusterSecretStore =
        serde_saphyr::from_str(&example("seed/cluster-secret-store.yaml")).unwrap();
    let aws = css.spec.provider.aws.as_ref().unwrap();
    assert_eq!(aws.service, AwsServiceType::SecretsManager);
    let sr = aws.auth.as_ref().unwrap().secret_ref.as_ref().unwrap();
    assert_eq!(
        sr.access_key_id_secret_ref.namespace.as_deref(),
        Some("external-secrets")
    );
    assert_eq!(
        sr.secret_access_key_secret_ref.key.as_deref(),
        Some("secret-key")
    );
    assert_eq!(css.spec.provider.kind_name(), Some("aws"));
    // The flattened ClusterSecretStore spec serializes exactly like a SecretStore spec.
    let v = serde_json::to_value(&css.spec).unwrap();
    assert!(
        v.get("provider").is_some() && v.get("store").is_none(),
        "{v}"
    );
}

#[test]
fn unknown_provider_blocks_are_kept() {
    let ss: SecretStore =
        serde_saphyr::from_str(&example("accepted/other-provider-store.yaml")).unwrap();
    assert_eq!(ss.spec.provider.kind_name(), Some("vault"));
    let v = serde_json::to_value(&ss).unwrap();
    assert_eq!(
        v["spec"]["provider"]["vault"]["auth"]["kubernetes"]["role"],
        "demo"
    );
}

#[test]
fn generator_refs_are_kept() {
    let es: ExternalSecret =
        serde_saphyr::from_str(&example("accepted/generator-ref.yaml")).unwrap();
    let v = serde_json::to_value(&es).unwrap();
    assert_eq!(
        v["spec"]["dataFrom"][0]["sourceRef"]["generatorRef"]["kind"],
        "Password"
    );
}

#[test]
fn everything_example_round_trips() {
    let text = example("accepted/everything.yaml");
    let es: ExternalSecret = serde_saphyr::from_str(&text).unwrap();
    let again: ExternalSecret = serde_json::from_value(serde_json::to_value(&es).unwrap()).unwrap();
    assert_eq!(es, again);
    assert_eq!(
        es.spec.data[1].remote_ref.version.as_deref(),
        Some("AWSPREVIOUS")
    );
    assert_eq!(
        es.spec.data[2].remote_ref.metadata_policy,
        Some(MetadataPolicy::Fetch)
    );
    let t = es.spec.target.template.as_ref().unwrap();
    assert_eq!(t.merge_policy, TemplateMergePolicy::Merge);
    assert_eq!(t.template_from.len(), 2);
}

#[test]
fn crds_serve_v1_as_storage_and_v1beta1() {
    let all = crds();
    assert_eq!(all.len(), 11);
    // The v1 + v1beta1 kinds (PushSecret and ClusterPushSecret serve v1alpha1 only).
    let crds: Vec<_> = all
        .into_iter()
        .filter(|c| c.spec.group == eso_api::GROUP && !c.spec.names.kind.ends_with("PushSecret"))
        .collect();
    assert_eq!(crds.len(), 4);
    let alpha: Vec<_> = crds_alpha();
    assert_eq!(
        alpha,
        vec![
            ("PushSecret".to_string(), true),
            ("ClusterPushSecret".to_string(), false)
        ]
    );
    for crd in &crds {
        let versions: Vec<_> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(
            versions,
            vec![("v1", true, true), ("v1beta1", true, false)],
            "{:?}",
            crd.metadata.name
        );
        assert_eq!(crd.spec.versions[0].schema, crd.spec.versions[1].schema);
        assert!(
            crd.spec
                .names
                .categories
                .as_ref()
                .unwrap()
                .contains(&"external-secrets".to_string())
        );
    }
    let short: Vec<_> = crds
        .iter()
        .map(|c| c.spec.names.short_names.clone().unwrap()[0].clone())
        .collect();
    assert_eq!(short, vec!["es", "ss", "css", "ces"]);
}

#[test]
fn v1beta1_store_refresh_interval_as_integer_is_accepted() {
    let ss: SecretStore = serde_json::from_value(serde_json::json!({
        "apiVersion": "external-secrets.io/v1beta1", "kind": "SecretStore",
        "metadata": {"name": "s"},
        "spec": {"refreshInterval": 300, "provider": {"fake": {"data": []}}}
    }))
    .unwrap();
    assert!(ss.spec.refresh_interval.is_some());
}

/// examples/irsa/ (linked from docs/getting-started.md): every file parses, and the pieces fit
/// together: the SecretStore uses the annotated ServiceAccount, the ExternalSecret that store, the
/// default-chain store has no auth, the chart values annotate the operator's ServiceAccount.
#[test]
fn irsa_examples_parse_and_fit_together() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/irsa");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "cluster-secret-store-default-chain.yaml",
            "external-secret.yaml",
            "helm-values.yaml",
            "secret-store.yaml",
            "service-account.yaml",
            "trust-policy.json",
        ]
    );
    let role = "eks.amazonaws.com/role-arn";
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_saphyr::from_str(&example("irsa/service-account.yaml")).unwrap();
    let sa_name = sa.metadata.name.clone().unwrap();
    assert!(
        sa.metadata.annotations.unwrap()[role].starts_with("arn:aws:iam::"),
        "the ServiceAccount names its role"
    );
    let ss: SecretStore = serde_saphyr::from_str(&example("irsa/secret-store.yaml")).unwrap();
    let aws = ss.spec.provider.aws.as_ref().unwrap();
    assert_eq!(aws.service, AwsServiceType::SecretsManager);
    let jwt = aws.auth.as_ref().unwrap().jwt.as_ref().unwrap();
    let sa_ref = jwt.service_account_ref.as_ref().unwrap();
    assert_eq!(sa_ref.name, sa_name);
    assert!(
        sa_ref.namespace.is_none(),
        "a SecretStore uses its own namespace"
    );
    let es: ExternalSecret = serde_saphyr::from_str(&example("irsa/external-secret.yaml")).unwrap();
    let store = es.spec.secret_store_ref.unwrap();
    assert_eq!(store.name, ss.metadata.name);
    assert_eq!(store.kind, Some(StoreKind::SecretStore));
    assert_eq!(es.spec.data_from.len(), 1);
    let css: ClusterSecretStore =
        serde_saphyr::from_str(&example("irsa/cluster-secret-store-default-chain.yaml")).unwrap();
    let aws = css.spec.provider.aws.as_ref().unwrap();
    assert!(aws.auth.is_none(), "the default chain: no auth block");
    let values: serde_json::Value =
        serde_saphyr::from_str(&example("irsa/helm-values.yaml")).unwrap();
    assert!(
        values["serviceAccount"]["annotations"][role]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );
    let trust: serde_json::Value =
        serde_json::from_str(&example("irsa/trust-policy.json")).unwrap();
    let stmt = &trust["Statement"][0];
    assert_eq!(stmt["Action"], "sts:AssumeRoleWithWebIdentity");
    let cond = stmt["Condition"]["StringEquals"].as_object().unwrap();
    assert!(
        cond.values().any(|v| v == "sts.amazonaws.com"),
        "the audience the operator requests"
    );
    assert!(
        cond.values()
            .any(|v| v.as_str().unwrap().ends_with(&format!(":{sa_name}"))),
        "the trust policy names the example's ServiceAccount"
    );
}

/// The v1alpha1-only kinds, with whether each is namespaced.
fn crds_alpha() -> Vec<(String, bool)> {
    crds()
        .into_iter()
        .filter(|c| c.spec.names.kind.ends_with("PushSecret"))
        .map(|c| {
            assert_eq!(c.spec.versions.len(), 1);
            assert_eq!(c.spec.versions[0].name, "v1alpha1");
            (c.spec.names.kind.clone(), c.spec.scope == "Namespaced")
        })
        .collect()
}
