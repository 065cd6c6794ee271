//! Embedding the controllers in your own operator: build a hub (here the bundled registry with
//! the `fake` provider; add `eso_provider_aws::AwsFactory` or your own factory the same way), run
//! the controllers, and stop them when you are done.
//!
//! Needs a cluster with the CRDs installed (`KUBECONFIG`); CI runs it against testenv:
//! `cargo run -p eso-reconciler --example custom_controller`.

use std::sync::Arc;
use std::time::Duration;

use eso_provider::CacheConfig;
use eso_reconciler::kube_access::RegistryHub;
use eso_reconciler::{Config, Handles};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await?;
    let ns = format!("embed-example-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?,
        )
        .await?;

    // Your objects: a fake store and an ExternalSecret (any YAML an ESO user writes works).
    let apply = |api: Api<kube::api::DynamicObject>, body: serde_json::Value| async move {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.patch(
            &name,
            &PatchParams::apply("custom-controller-example"),
            &Patch::Apply(&body),
        )
        .await
    };
    let gvk = |kind: &str| {
        kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("external-secrets.io", "v1", kind),
            &format!("{}s", kind.to_lowercase()),
        )
    };
    apply(
        Api::namespaced_with(client.clone(), &ns, &gvk("SecretStore")),
        serde_json::json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "fake", "namespace": ns},
            "spec": {"provider": {"fake": {"data": [{"key": "/app/db", "value": "{\"password\":\"from-fake\"}"}]}}}}),
    )
    .await?;
    apply(
        Api::namespaced_with(client.clone(), &ns, &gvk("ExternalSecret")),
        serde_json::json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {"secretStoreRef": {"name": "fake", "kind": "SecretStore"}, "refreshInterval": "1m",
                     "target": {"name": "db-credentials"},
                     "data": [{"secretKey": "password", "remoteRef": {"key": "/app/db", "property": "password"}}]}}),
    )
    .await?;

    // The embedding itself: a hub, a config, handles, and a shutdown future.
    let hub = RegistryHub::new(client.clone(), CacheConfig::default()).with_fake();
    let config = Config::default()
        .with_namespace(Some(ns.clone()))
        .with_remote_change_poll(None);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(eso_reconciler::run(
        client.clone(),
        config,
        Arc::new(hub),
        Handles::new(),
        async {
            let _ = stopped.await;
        },
    ));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut value = None;
    for _ in 0..120 {
        if let Some(s) = secrets.get_opt("db-credentials").await? {
            value = s.data.and_then(|d| {
                d.get("password")
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
            if value.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = stop.send(());
    let _ = controllers.await;
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    match value.as_deref() {
        Some("from-fake") => {
            println!(
                "custom controller: Secret {ns}/db-credentials synced by the embedded controllers"
            );
            Ok(())
        }
        other => Err(format!("Secret not synced (password: {other:?})").into()),
    }
}
