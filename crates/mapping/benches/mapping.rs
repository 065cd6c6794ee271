//! `cargo bench -p eso-mapping`: 50 `data[]` entries over a 10 KiB JSON secret, a 20-key template,
//! and the certificate/key template functions.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use eso_mapping::{Fetched, MappingInput, RemoteSecret, Request, TemplateSources, map, plan};

fn fetched_for(spec: &eso_api::ExternalSecretSpec, value: &str) -> Fetched {
    let mut f = Fetched::default();
    for r in plan(spec).unwrap() {
        if let Request::Get { store, remote } = r {
            f.gets
                .insert((store, remote), Some(RemoteSecret::string(value)));
        }
    }
    f
}

fn bench(c: &mut Criterion) {
    // A ~10 KiB JSON document with 50 properties of ~200 bytes.
    let doc: BTreeMap<String, String> = (0..50)
        .map(|i| (format!("key{i}"), "x".repeat(200)))
        .collect();
    let body = serde_json::to_string(&doc).unwrap();
    let data: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"secretKey": format!("k{i}"), "remoteRef": {"key": "big", "property": format!("key{i}")}}))
        .collect();
    let spec: eso_api::ExternalSecretSpec =
        serde_json::from_value(serde_json::json!({"secretStoreRef": {"name": "s"}, "data": data}))
            .unwrap();
    let fetched = fetched_for(&spec, &body);
    let sources = TemplateSources::default();
    let input = MappingInput {
        namespace: "ns",
        name: "es",
        spec: &spec,
        labels: None,
        annotations: None,
        fetched: &fetched,
        template_sources: &sources,
    };
    c.bench_function("map 50 data[] over 10 KiB JSON", |b| {
        b.iter(|| map(&input).unwrap())
    });

    let tdata: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| {
            (
                format!("t{i}"),
                serde_json::Value::from(format!(
                    "{{{{ .key{i} | upper }}}}-{{{{ .key{} }}}}",
                    (i + 1) % 50
                )),
            )
        })
        .collect();
    let tspec: eso_api::ExternalSecretSpec = serde_json::from_value(serde_json::json!({
        "secretStoreRef": {"name": "s"},
        "target": {"template": {"data": tdata}},
        "dataFrom": [{"extract": {"key": "big"}}]
    }))
    .unwrap();
    let tfetched = fetched_for(&tspec, &body);
    let tinput = MappingInput {
        spec: &tspec,
        fetched: &tfetched,
        ..input
    };
    c.bench_function("map extract + 20-key template", |b| {
        b.iter(|| map(&tinput).unwrap())
    });
}

/// The certificate helpers users put in TLS templates: extracting a PKCS#12 (key + 3-cert chain,
/// PBES2 with 2048 PBKDF2 iterations) and building one.
fn bench_crypto(c: &mut Criterion) {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let read = |n: &str| std::fs::read(format!("{fixtures}{n}")).unwrap();
    let data: BTreeMap<String, String> = [
        ("p12", read("leaf-nopass.p12")),
        ("chain", read("chain.pem")),
        ("key", read("leaf.key")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), eso_mapping::template::bytes_to_text(&v)))
    .collect();
    let ctx = eso_mapping::template::context(&data);
    let render = |t: &str| eso_mapping::template::render_with(t, &ctx).unwrap();
    c.bench_function("template pkcs12cert + pkcs12key", |b| {
        b.iter(|| render("{{ .p12 | pkcs12cert }}{{ .p12 | pkcs12key }}"))
    });
    c.bench_function("template fullPemToPkcs12", |b| {
        b.iter(|| render("{{ fullPemToPkcs12 .chain .key }}"))
    });
    c.bench_function("template filterCertChain + certSANs", |b| {
        b.iter(|| {
            render(r#"{{ .chain | filterCertChain "root" }}{{ .chain | certSANs | join "," }}"#)
        })
    });
}

criterion_group!(benches, bench, bench_crypto);
criterion_main!(benches);
