//! `eso-operator render`: run the mapping engine offline on an ExternalSecret manifest and remote
//! values from files, printing the Secret it would produce. No cluster, no AWS.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use eso_api::ExternalSecret;
use eso_mapping::{Fetched, MappingInput, RemoteSecret, Request, TemplateSources};

fn remote(bytes: &[u8]) -> RemoteSecret {
    match std::str::from_utf8(bytes) {
        Ok(s) => RemoteSecret::string(s),
        Err(_) => RemoteSecret::binary(bytes.to_vec()),
    }
}

/// Render the Secret for `yaml` (one ExternalSecret, v1 or v1beta1) given remote values by key.
/// Keys not given are treated as not existing at the provider.
pub fn render(yaml: &str, remotes: &[(String, Vec<u8>)]) -> Result<String> {
    let es: ExternalSecret =
        serde_saphyr::from_str(yaml).context("parsing the ExternalSecret manifest")?;
    if es
        .spec
        .target
        .template
        .as_ref()
        .is_some_and(|t| !t.template_from.iter().all(|f| f.literal.is_some()))
    {
        bail!(
            "templateFrom with a ConfigMap or Secret needs the cluster; render supports literal templateFrom only"
        );
    }
    let values: BTreeMap<&str, &[u8]> = remotes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut fetched = Fetched::default();
    for r in eso_mapping::plan(&es.spec)? {
        match r {
            Request::Get { store, remote: rr } => {
                let v = values.get(rr.key.as_str()).map(|b| remote(b));
                fetched.gets.insert((store, rr), v);
            }
            Request::Find { store, query } => {
                let re = query.name_regexp.as_deref().map(regex_lite).transpose()?;
                let found = values
                    .iter()
                    .filter(|(k, _)| query.path.as_deref().is_none_or(|p| k.starts_with(p)))
                    .filter(|(k, _)| re.as_ref().is_none_or(|re| re.is_match(k)))
                    .map(|(k, v)| ((*k).to_string(), remote(v)))
                    .collect();
                fetched.finds.insert((store, query), Some(found));
            }
        }
    }
    let ns = es
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = es.metadata.name.clone().unwrap_or_default();
    let sources = TemplateSources::default();
    let input = MappingInput {
        namespace: &ns,
        name: &name,
        spec: &es.spec,
        labels: es.metadata.labels.as_ref(),
        annotations: es.metadata.annotations.as_ref(),
        fetched: &fetched,
        template_sources: &sources,
    };
    let mapped = eso_mapping::map(&input)?;
    eso_mapping::check_size(&mapped.data)?;
    let target = es
        .spec
        .target
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name.clone());
    let mut annotations = mapped.annotations.clone();
    annotations.insert(
        eso_api::well_known::ANNOTATION_DATA_HASH.to_string(),
        eso_mapping::data_hash(&mapped.data),
    );
    let mut labels = mapped.labels.clone();
    labels.insert(
        eso_api::well_known::LABEL_MANAGED.to_string(),
        "true".to_string(),
    );
    let data: BTreeMap<&String, String> = mapped
        .data
        .iter()
        .map(|(k, v)| (k, eso_mapping::base64_encode(v)))
        .collect();
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": target, "namespace": ns, "labels": labels, "annotations": annotations },
        "type": mapped.type_.clone().unwrap_or_else(|| "Opaque".into()),
        "data": data,
    });
    let mut out = serde_saphyr::to_string(&secret)?;
    for m in &mapped.missing {
        out.push_str(&format!("# {m}\n"));
    }
    Ok(out)
}

fn regex_lite(re: &str) -> Result<regex::Regex> {
    regex::Regex::new(re).with_context(|| format!("invalid find.name.regexp {re:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ES: &str = r#"
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {name: db, namespace: apps}
spec:
  refreshInterval: 1m
  secretStoreRef: {name: aws, kind: ClusterSecretStore}
  target: {name: db-credentials}
  data:
    - secretKey: password
      remoteRef: {key: prod/db, property: password}
"#;

    #[test]
    fn renders_the_seed_flow() {
        let out = render(
            ES,
            &[("prod/db".into(), br#"{"password":"hunter2"}"#.to_vec())],
        )
        .unwrap();
        assert!(out.contains("name: db-credentials"), "{out}");
        assert!(
            out.contains(&eso_mapping::base64_encode(b"hunter2")),
            "{out}"
        );
        assert!(
            out.contains("reconcile.external-secrets.io/data-hash"),
            "{out}"
        );
    }

    #[test]
    fn missing_remote_is_reported() {
        // deletionPolicy Retain (the default): a missing remote secret is an error.
        let err = render(ES, &[]).unwrap_err().to_string();
        assert!(err.contains("Secret does not exist"), "{err}");
        // deletionPolicy Delete: the entry is skipped and reported.
        let es = ES.replace(
            "target: {name: db-credentials}",
            "target: {name: db-credentials, deletionPolicy: Delete}",
        );
        let out = render(&es, &[]).unwrap();
        assert!(out.contains("secret does not exist at provider"), "{out}");
    }
}
