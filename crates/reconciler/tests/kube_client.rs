//! One TLS crypto backend on purpose: building a real HTTPS kube client must not panic with
//! "Could not automatically determine the process-level CryptoProvider" (which happens when both
//! ring and aws-lc-rs are compiled into rustls, e.g. via default features of kube and the AWS SDK).
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::testenv;

#[tokio::test]
async fn https_client_builds_without_a_process_level_crypto_provider() {
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config);
    assert!(
        client.is_ok(),
        "building an HTTPS client failed: {:?}",
        client.err()
    );
}

#[tokio::test]
async fn https_client_talks_to_the_real_apiserver() {
    let Some(env) = testenv::require() else {
        return;
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&env.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    assert!(config.cluster_url.scheme_str() == Some("https"));
    let client = kube::Client::try_from(config).expect("client");
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let list = api
        .list(&Default::default())
        .await
        .expect("list namespaces over TLS");
    assert!(
        list.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
}
