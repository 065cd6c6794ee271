//! Arbitrary bytes as YAML and JSON into the CRD types (v1 and v1beta1 share the Rust types);
//! an ExternalSecret that parses goes through `plan` and `map` with canned remote answers.
//! Nothing may panic.
#![no_main]

use std::collections::BTreeMap;

use eso_api::{ClusterSecretStore, ExternalSecret, SecretStore};
use eso_mapping::{Fetched, MappingInput, RemoteSecret, Request, TemplateSources, map, plan};
use libfuzzer_sys::fuzz_target;

/// Keeps one run fast.
const MAX_INPUT: usize = 16 * 1024;

/// The remote value every planned read answers with (a JSON object, so properties resolve).
const PAYLOAD: &str = r#"{"username":"u","password":"p","a":{"b":[1,"two",{"c":null}]},"n":1.5}"#;

fn exercise(es: &ExternalSecret) {
    let Ok(requests) = plan(&es.spec) else {
        return;
    };
    let mut fetched = Fetched::default();
    for (i, r) in requests.into_iter().enumerate() {
        match r {
            Request::Get { store, remote } => {
                // Every third read is "not found", to reach the deletion-policy paths.
                let v = (i % 3 != 2).then(|| RemoteSecret::string(PAYLOAD));
                fetched.gets.insert((store, remote), v);
            }
            Request::Find { store, query } => {
                let found = BTreeMap::from([
                    ("app/db".to_string(), RemoteSecret::string(PAYLOAD)),
                    (
                        "app/bin".to_string(),
                        RemoteSecret::binary(vec![0, 159, 146, 150]),
                    ),
                ]);
                fetched.finds.insert((store, query), Some(found));
            }
        }
    }
    let mut sources = TemplateSources::default();
    sources.config_maps.insert(
        "cm".to_string(),
        BTreeMap::from([("tpl".to_string(), b"{{ .password }}".to_vec())]),
    );
    let input = MappingInput {
        namespace: "ns",
        name: es.metadata.name.as_deref().unwrap_or("es"),
        spec: &es.spec,
        labels: es.metadata.labels.as_ref(),
        annotations: es.metadata.annotations.as_ref(),
        fetched: &fetched,
        template_sources: &sources,
    };
    let _ = map(&input);
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(es) = serde_json::from_slice::<ExternalSecret>(data) {
        exercise(&es);
    }
    let _ = serde_json::from_slice::<SecretStore>(data);
    let _ = serde_json::from_slice::<ClusterSecretStore>(data);
    // YAML, a single document (a multi-document stream is an error, which is fine).
    if let Ok(es) = serde_saphyr::from_slice::<ExternalSecret>(data) {
        exercise(&es);
    }
    let _ = serde_saphyr::from_slice::<SecretStore>(data);
    let _ = serde_saphyr::from_slice::<ClusterSecretStore>(data);
});
