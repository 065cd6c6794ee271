//! Every manifest in examples/invalid-runtime is refused by the engine with the expected message.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use eso_mapping::{Fetched, MappingInput, RemoteSecret, Request, TemplateSources, map, plan};

fn refuse(text: &str) -> String {
    let es: serde_json::Value = serde_saphyr::from_str(text).unwrap();
    let spec: eso_api::ExternalSecretSpec = serde_json::from_value(es["spec"].clone()).unwrap();
    let requests = match plan(&spec) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    let mut fetched = Fetched::default();
    for r in requests {
        match r {
            Request::Get { store, remote } => {
                fetched
                    .gets
                    .insert((store, remote), Some(RemoteSecret::string("v")));
            }
            Request::Find { store, query } => {
                fetched.finds.insert((store, query), Some(BTreeMap::new()));
            }
        }
    }
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
    match map(&input) {
        Ok(m) => panic!("accepted: keys {:?}", m.data.keys().collect::<Vec<_>>()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn runtime_invalid_examples_are_refused() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/invalid-runtime");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap()
            .to_string();
        let msg = refuse(&text);
        assert!(
            msg.contains(&expect),
            "{}: {msg:?} lacks {expect:?}",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 3);
}
