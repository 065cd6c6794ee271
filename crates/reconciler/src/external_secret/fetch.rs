//! Fetch: everything a sync reads besides the Secret cache — provider values through the hub
//! (per store, sharing cached answers no older than this object may use), generator output and
//! the ConfigMaps and Secrets named by `template.templateFrom`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eso_api::ExternalSecret;
use eso_mapping::{Fetched, Request, StoreRef};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::SyncFailure;
use crate::hub::{FailureClass, FetchFailure, StoreContext};
use crate::{Context, stores};

/// What a sync read: provider values (with generator output) and template sources.
pub(crate) struct Inputs {
    /// Values per request, and generated data per `dataFrom` index.
    pub fetched: Fetched,
    /// `templateFrom` ConfigMaps and Secrets.
    pub template_sources: eso_mapping::TemplateSources,
}

/// Read everything the plan needs.
pub(crate) async fn fetch(
    es: &ExternalSecret,
    ns: &str,
    requests: &[Request],
    forced: Option<std::time::SystemTime>,
    ctx: &Arc<Context>,
) -> Result<Inputs, SyncFailure> {
    let mut fetched = fetch_all(es, ns, requests, forced, ctx).await?;
    fetched.generated = run_generators(es, ns, ctx).await?;
    let template_sources = read_template_sources(es, ns, ctx).await?;
    Ok(Inputs {
        fetched,
        template_sources,
    })
}

/// How old a shared cached answer may be for this ExternalSecret: never older than its refresh
/// interval, nor than its own last check (so a forced or spec-triggered refresh always sees a
/// value read after the previous sync, while many ExternalSecrets refreshing in the same window
/// still share one read).
fn cache_max_age(
    es: &ExternalSecret,
    ns: &str,
    forced: Option<std::time::SystemTime>,
    ctx: &Context,
) -> Option<Duration> {
    // After a remote change, only values read after `fresh_after` count (see changes::fresh_after).
    let after_change = forced.map(|fresh_after| {
        std::time::SystemTime::now()
            .duration_since(fresh_after)
            .unwrap_or(Duration::ZERO)
    });
    let interval = es.spec.refresh_interval_duration().filter(|d| !d.is_zero());
    let name = es.name_any();
    let last_check = ctx.es_state(&ObjectRef::new(&name).within(ns)).last_check;
    let refreshed = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0);
    let anchor = match (last_check, refreshed) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let since = anchor.and_then(|t| {
        Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(t)).ok()
    });
    [interval, since, after_change].into_iter().flatten().min()
}

/// Resolve every store the plan needs and fetch through the hub.
async fn fetch_all(
    es: &ExternalSecret,
    ns: &str,
    requests: &[Request],
    forced: Option<std::time::SystemTime>,
    ctx: &Arc<Context>,
) -> Result<Fetched, SyncFailure> {
    let mut by_store: BTreeMap<StoreRef, Vec<Request>> = BTreeMap::new();
    for r in requests {
        let store = match r {
            Request::Get { store, .. } | Request::Find { store, .. } => store.clone(),
        };
        by_store.entry(store).or_default().push(r.clone());
    }
    let mut fetched = Fetched::default();
    for (store_ref, reqs) in by_store {
        let store: StoreContext =
            stores::resolve_for(es, ns, &store_ref, ctx).map_err(SyncFailure::Provider)?;
        let part = ctx
            .hub
            .fetch(&store, ns, &reqs, cache_max_age(es, ns, forced, ctx))
            .await
            .map_err(SyncFailure::Provider)?;
        fetched.gets.extend(part.gets);
        fetched.finds.extend(part.finds);
    }
    Ok(fetched)
}

/// Run the generators named by `dataFrom[].sourceRef.generatorRef` (ESO: every sync generates
/// anew; `refreshPolicy: CreatedOnce` therefore keeps the first value). Values go to the mapping
/// engine only; nothing here logs them.
async fn run_generators(
    es: &ExternalSecret,
    ns: &str,
    ctx: &Context,
) -> Result<std::collections::HashMap<usize, eso_mapping::GeneratedData>, SyncFailure> {
    use eso_api::generators::{
        ClusterGeneratorSpec, EcrAuthorizationTokenSpec, GENERATORS_GROUP, GENERATORS_VERSION,
        GeneratorSpec, PasswordSpec, StsSessionTokenSpec,
    };
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let mut out = std::collections::HashMap::new();
    for (i, gref) in eso_mapping::generator_entries(&es.spec) {
        let field = format!("spec.dataFrom[{i}].sourceRef.generatorRef");
        let text = |k: &str| gref.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let (api_version, kind, gname) = (text("apiVersion"), text("kind"), text("name"));
        if kind.is_empty() || gname.is_empty() {
            return Err(SyncFailure::Mapping(format!(
                "{field}: kind and name are required"
            )));
        }
        let expected = format!("{GENERATORS_GROUP}/{GENERATORS_VERSION}");
        if api_version != expected {
            return Err(SyncFailure::Provider(FetchFailure::new(
                FailureClass::Unsupported,
                format!(
                    "{field}: apiVersion {api_version:?} is not supported; generators are {expected}"
                ),
            )));
        }
        let plural = match kind {
            "Password" => "passwords",
            "UUID" => "uuids",
            "ECRAuthorizationToken" => "ecrauthorizationtokens",
            "STSSessionToken" => "stssessiontokens",
            "ClusterGenerator" => "clustergenerators",
            other => {
                return Err(SyncFailure::Provider(FetchFailure::new(
                    FailureClass::Unsupported,
                    format!(
                        "{field}: generator kind {other} is not supported by this operator (Password, UUID, ECRAuthorizationToken, STSSessionToken and ClusterGenerator are)"
                    ),
                )));
            }
        };
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GENERATORS_GROUP, GENERATORS_VERSION, kind),
            plural,
        );
        let api: Api<DynamicObject> = if kind == "ClusterGenerator" {
            Api::all_with(ctx.client.clone(), &ar)
        } else {
            Api::namespaced_with(ctx.client.clone(), ns, &ar)
        };
        let where_ = if kind == "ClusterGenerator" {
            format!("{kind} {gname}")
        } else {
            format!("{kind} {ns}/{gname}")
        };
        let obj = match api.get_opt(gname).await {
            Ok(Some(o)) => o,
            Ok(None) => return Err(SyncFailure::Waiting(format!("{field}: {where_} not found"))),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(SyncFailure::Waiting(format!(
                    "{field}: {where_} not found (is its CRD installed?)"
                )));
            }
            Err(e) => return Err(SyncFailure::Kube(e)),
        };
        let spec_value = obj.data.get("spec").cloned().unwrap_or_else(|| json!({}));
        let bad = |e: serde_json::Error| {
            SyncFailure::Mapping(format!("{field}: {where_} has an invalid spec: {e}"))
        };
        let spec = match kind {
            "Password" => GeneratorSpec::Password(
                serde_json::from_value::<PasswordSpec>(spec_value).map_err(bad)?,
            ),
            "UUID" => GeneratorSpec::Uuid,
            "ECRAuthorizationToken" => GeneratorSpec::Ecr(
                serde_json::from_value::<EcrAuthorizationTokenSpec>(spec_value).map_err(bad)?,
            ),
            "STSSessionToken" => GeneratorSpec::Sts(
                serde_json::from_value::<StsSessionTokenSpec>(spec_value).map_err(bad)?,
            ),
            _ => {
                let cg = serde_json::from_value::<ClusterGeneratorSpec>(spec_value).map_err(bad)?;
                cg.resolve().map_err(|m| {
                    SyncFailure::Provider(FetchFailure::new(
                        FailureClass::Unsupported,
                        format!("{field}: {m}"),
                    ))
                })?
            }
        };
        let generated = ctx.hub.generate(&spec, ns).await.map_err(|f| {
            SyncFailure::Provider(FetchFailure::new(
                f.class,
                format!("{field}: {where_}: {}", f.message),
            ))
        })?;
        out.insert(i, generated);
    }
    Ok(out)
}

/// ConfigMaps and Secrets named by `template.templateFrom` (direct reads, only when used).
async fn read_template_sources(
    es: &ExternalSecret,
    ns: &str,
    ctx: &Context,
) -> Result<eso_mapping::TemplateSources, SyncFailure> {
    let mut sources = eso_mapping::TemplateSources::default();
    let Some(template) = es.spec.target.template.as_ref() else {
        return Ok(sources);
    };
    for tf in &template.template_from {
        if let Some(cm) = &tf.config_map {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
            let obj = api
                .get_opt(&cm.name)
                .await
                .map_err(SyncFailure::Kube)?
                .ok_or_else(|| {
                    SyncFailure::Waiting(format!("template ConfigMap {ns}/{} not found", cm.name))
                })?;
            let mut data: BTreeMap<String, Vec<u8>> = obj
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in obj.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            sources.config_maps.insert(cm.name.clone(), data);
        }
        if let Some(sec) = &tf.secret {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            let obj = api
                .get_opt(&sec.name)
                .await
                .map_err(SyncFailure::Kube)?
                .ok_or_else(|| {
                    SyncFailure::Waiting(format!("template Secret {ns}/{} not found", sec.name))
                })?;
            let data = obj
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            sources.secrets.insert(sec.name.clone(), data);
        }
    }
    Ok(sources)
}
