//! The engine end to end on specs as users write them (ESO semantics, eso-behaviour.md §2.6–2.7).
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use eso_mapping::{
    Fetched, Mapped, MappingError, MappingInput, RemoteSecret, Request, TemplateSources, map, plan,
};

const SENTINEL: &str = "S3NT1NEL-VALUE";

/// Map `spec` (YAML) with remote values by key; keys absent from `remotes` do not exist.
fn run_with(
    spec: &str,
    remotes: &[(&str, RemoteSecret)],
    sources: &TemplateSources,
) -> Result<Mapped, MappingError> {
    let spec: eso_api::ExternalSecretSpec = serde_saphyr::from_str(spec).unwrap();
    let values: BTreeMap<&str, RemoteSecret> = remotes.iter().cloned().collect();
    let mut fetched = Fetched::default();
    for r in plan(&spec)? {
        match r {
            Request::Get { store, remote } => {
                let v = if remote.metadata {
                    values.get(remote.key.as_str()).map(|_| {
                        RemoteSecret::Tags(BTreeMap::from([
                            ("team".into(), "a".into()),
                            ("env".into(), "prod".into()),
                        ]))
                    })
                } else {
                    values.get(remote.key.as_str()).cloned()
                };
                fetched.gets.insert((store, remote), v);
            }
            Request::Find { store, query } => {
                let re = regex::Regex::new(query.name_regexp.as_deref().unwrap_or("")).unwrap();
                let found = values
                    .iter()
                    .filter(|(k, _)| re.is_match(k))
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                fetched.finds.insert((store, query), Some(found));
            }
        }
    }
    let input = MappingInput {
        namespace: "ns",
        name: "es",
        spec: &spec,
        labels: None,
        annotations: None,
        fetched: &fetched,
        template_sources: sources,
    };
    map(&input)
}

fn run(spec: &str, remotes: &[(&str, RemoteSecret)]) -> Result<Mapped, MappingError> {
    run_with(spec, remotes, &TemplateSources::default())
}

fn s(v: &str) -> RemoteSecret {
    RemoteSecret::string(v)
}

fn text(m: &Mapped, k: &str) -> String {
    String::from_utf8(
        m.data
            .get(k)
            .unwrap_or_else(|| panic!("no key {k}: {m:?}"))
            .clone(),
    )
    .unwrap()
}

const HEAD: &str = "secretStoreRef: {name: aws, kind: ClusterSecretStore}\n";

#[test]
fn seed_flow_properties() {
    let spec = format!(
        "{HEAD}data:\n- {{secretKey: username, remoteRef: {{key: my-db, property: username}}}}\n\
         - {{secretKey: port, remoteRef: {{key: my-db, property: port}}}}\n- {{secretKey: all, remoteRef: {{key: my-db}}}}\n"
    );
    let body = r#"{"username":"dbuser","port":5432}"#;
    let m = run(&spec, &[("my-db", s(body))]).unwrap();
    assert_eq!(text(&m, "username"), "dbuser");
    assert_eq!(text(&m, "port"), "5432");
    assert_eq!(text(&m, "all"), body);
}

#[test]
fn data_overrides_data_from_and_later_data_from_wins() {
    let spec = format!(
        "{HEAD}dataFrom:\n- extract: {{key: one}}\n- extract: {{key: two}}\ndata:\n- {{secretKey: a, remoteRef: {{key: three}}}}\n"
    );
    let m = run(
        &spec,
        &[
            ("one", s(r#"{"a":"1","b":"1","c":"1"}"#)),
            ("two", s(r#"{"b":"2"}"#)),
            ("three", s("3")),
        ],
    )
    .unwrap();
    assert_eq!(
        (text(&m, "a"), text(&m, "b"), text(&m, "c")),
        ("3".into(), "2".into(), "1".into())
    );
}

#[test]
fn extract_flattens_one_level_and_property_narrows() {
    let spec = format!("{HEAD}dataFrom:\n- extract: {{key: k, property: inner}}\n");
    let m = run(
        &spec,
        &[(
            "k",
            s(r#"{"inner":{"s":"x","o":{"d":1},"n":null,"f":1.5}}"#),
        )],
    )
    .unwrap();
    assert_eq!(text(&m, "s"), "x");
    assert_eq!(text(&m, "o"), r#"{"d":1}"#);
    assert_eq!(text(&m, "n"), "");
    assert_eq!(text(&m, "f"), "1.5");
    let e = run(
        &format!("{HEAD}dataFrom:\n- extract: {{key: k}}\n"),
        &[("k", s("plain"))],
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("spec.dataFrom[0]") && e.to_string().contains("unable to unmarshal"),
        "{e}"
    );
}

#[test]
fn find_names_are_converted_and_rewritten() {
    let spec = format!("{HEAD}dataFrom:\n- find: {{name: {{regexp: '^app/'}}}}\n");
    let m = run(
        &spec,
        &[("app/db", s("1")), ("app/api", s("2")), ("other", s("3"))],
    )
    .unwrap();
    assert_eq!(m.data.keys().collect::<Vec<_>>(), ["app_api", "app_db"]);

    let spec = format!(
        "{HEAD}dataFrom:\n- find: {{name: {{regexp: '^app/'}}}}\n  rewrite:\n  - regexp: {{source: 'app/(.*)', target: 'APP_$1'}}\n  - transform: {{template: '{{{{ .value | lower }}}}'}}\n"
    );
    let m = run(&spec, &[("app/db", s("1"))]).unwrap();
    assert_eq!(m.data.keys().collect::<Vec<_>>(), ["app_db"]);

    // With a rewrite, no conversion happens: an invalid key is an error naming the field.
    let spec = format!(
        "{HEAD}dataFrom:\n- find: {{name: {{regexp: '^app/'}}}}\n  rewrite:\n  - regexp: {{source: 'x', target: 'y'}}\n"
    );
    let e = run(&spec, &[("app/db", s("1"))]).unwrap_err().to_string();
    assert!(
        e.contains("invalid secret keys") && e.contains("spec.dataFrom[0]"),
        "{e}"
    );
}

#[test]
fn unicode_conversion_and_collisions() {
    let spec = format!("{HEAD}dataFrom:\n- extract: {{key: k, conversionStrategy: Unicode}}\n");
    let m = run(&spec, &[("k", s(r#"{"a/b":"1"}"#))]).unwrap();
    assert_eq!(text(&m, "a_U002f_b"), "1");
    let spec = format!("{HEAD}dataFrom:\n- extract: {{key: k}}\n");
    let e = run(&spec, &[("k", s(r#"{"a/b":"1","a_b":"2"}"#))]).unwrap_err();
    assert!(matches!(e, MappingError::KeyCollision { .. }), "{e}");
}

#[test]
fn rewrite_merge() {
    let spec = format!(
        "{HEAD}dataFrom:\n- extract: {{key: k}}\n  rewrite:\n  - merge: {{priority: [b]}}\n"
    );
    let m = run(
        &spec,
        &[(
            "k",
            s(r#"{"a":"{\"x\":\"1\",\"y\":\"a\"}","b":"{\"y\":\"b\"}"}"#),
        )],
    )
    .unwrap();
    assert_eq!((text(&m, "x"), text(&m, "y")), ("1".into(), "b".into()));
    let spec = format!("{HEAD}dataFrom:\n- extract: {{key: k}}\n  rewrite:\n  - merge: {{}}\n");
    let e = run(
        &spec,
        &[("k", s(r#"{"a":"{\"y\":\"a\"}","b":"{\"y\":\"b\"}"}"#))],
    )
    .unwrap_err();
    assert!(e.to_string().contains("conflict on key y"), "{e}");
}

#[test]
fn decoding_strategies_and_null_bytes() {
    let spec = format!(
        "{HEAD}data:\n- {{secretKey: b, remoteRef: {{key: k, decodingStrategy: Base64}}}}\n- {{secretKey: u, remoteRef: {{key: u, decodingStrategy: Auto}}}}\n"
    );
    let m = run(&spec, &[("k", s("AP8=")), ("u", s("not base64!"))]).unwrap();
    assert_eq!(m.data["b"], vec![0u8, 0xff]);
    assert_eq!(text(&m, "u"), "not base64!");
    let spec = format!(
        "{HEAD}data:\n- {{secretKey: b, remoteRef: {{key: k, decodingStrategy: Base64, nullBytePolicy: Fail}}}}\n"
    );
    let e = run(&spec, &[("k", s("AP8="))]).unwrap_err();
    assert!(matches!(e, MappingError::NullByte { .. }), "{e}");
}

#[test]
fn binary_values_survive_and_parse_with_a_property() {
    let spec = format!(
        "{HEAD}data:\n- {{secretKey: raw, remoteRef: {{key: bin}}}}\n- {{secretKey: p, remoteRef: {{key: js, property: a}}}}\n"
    );
    let m = run(
        &spec,
        &[
            ("bin", RemoteSecret::binary(vec![0xff, 0xfe, 0])),
            ("js", RemoteSecret::binary(br#"{"a":"b"}"#.to_vec())),
        ],
    )
    .unwrap();
    assert_eq!(m.data["raw"], vec![0xff, 0xfe, 0]);
    assert_eq!(text(&m, "p"), "b");
}

#[test]
fn versions_and_metadata_are_described_in_the_plan() {
    let spec: eso_api::ExternalSecretSpec = serde_saphyr::from_str(&format!(
        "{HEAD}data:\n- {{secretKey: a, remoteRef: {{key: k, version: uuid/123}}}}\n- {{secretKey: b, remoteRef: {{key: k, version: AWSPREVIOUS}}}}\n- {{secretKey: c, remoteRef: {{key: k, metadataPolicy: Fetch, property: team}}}}\n- {{secretKey: d, remoteRef: {{key: k}}}}\n"
    ))
    .unwrap();
    let reqs = plan(&spec).unwrap();
    let versions: Vec<String> = reqs
        .iter()
        .map(|r| match r {
            Request::Get { remote, .. } => format!("{:?}/{}", remote.version, remote.metadata),
            Request::Find { .. } => "find".into(),
        })
        .collect();
    assert_eq!(
        versions,
        [
            "Id(\"123\")/false",
            "Stage(\"AWSPREVIOUS\")/false",
            "Current/true",
            "Current/false"
        ]
    );
    let m = run(&format!("{HEAD}data:\n- {{secretKey: c, remoteRef: {{key: k, metadataPolicy: Fetch, property: team}}}}\n"), &[("k", s("x"))]).unwrap();
    assert_eq!(text(&m, "c"), "a");
}

#[test]
fn missing_remote_depends_on_deletion_policy() {
    let spec = format!(
        "{HEAD}data:\n- {{secretKey: a, remoteRef: {{key: gone}}}}\n- {{secretKey: b, remoteRef: {{key: here}}}}\n"
    );
    let e = run(&spec, &[("here", s("1"))]).unwrap_err();
    assert!(
        e.to_string().contains("Secret does not exist") && e.to_string().contains("spec.data[0]"),
        "{e}"
    );
    let spec = spec.replace(HEAD, &format!("{HEAD}target: {{deletionPolicy: Delete}}\n"));
    let m = run(&spec, &[("here", s("1"))]).unwrap();
    assert_eq!(m.data.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(
        m.missing[0].to_string(),
        "secret does not exist at provider using spec.data[0] (key=gone)"
    );
    let m = run(&spec, &[]).unwrap();
    assert!(
        m.data.is_empty(),
        "all gone: empty data, deletionPolicy decides"
    );
}

#[test]
fn missing_property_is_a_hard_error_without_the_value() {
    let spec = format!(
        "{HEAD}target: {{deletionPolicy: Delete}}\ndata:\n- {{secretKey: a, remoteRef: {{key: k, property: nope}}}}\n"
    );
    let e = run(&spec, &[("k", s(&format!(r#"{{"pw":"{SENTINEL}"}}"#)))])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "spec.data[0]: key nope does not exist in secret k");
    assert!(!e.contains(SENTINEL));
}

#[test]
fn template_precedence_and_metadata() {
    let spec = format!(
        "{HEAD}target:\n  template:\n    type: kubernetes.io/basic-auth\n    mergePolicy: Merge\n    metadata:\n      labels: {{app: '{{{{ .user }}}}'}}\n      annotations: {{note: fixed}}\n    templateFrom:\n    - literal: 'from-literal: {{{{ .user }}}}'\n    data:\n      username: '{{{{ .user | upper }}}}'\n      password: '{{{{ .pass }}}}'\ndataFrom:\n- extract: {{key: k}}\n"
    );
    let m = run(&spec, &[("k", s(r#"{"user":"admin","pass":"pw"}"#))]).unwrap();
    assert_eq!(text(&m, "username"), "ADMIN");
    assert_eq!(
        text(&m, "user"),
        "admin",
        "mergePolicy Merge keeps provider data"
    );
    assert_eq!(text(&m, "from-literal"), "admin");
    assert_eq!(m.labels["app"], "admin");
    assert_eq!(m.annotations["note"], "fixed");
    assert_eq!(m.type_.as_deref(), Some("kubernetes.io/basic-auth"));

    // Replace (default): only template output.
    let spec = spec.replace("    mergePolicy: Merge\n", "");
    let m = run(&spec, &[("k", s(r#"{"user":"admin","pass":"pw"}"#))]).unwrap();
    assert!(!m.data.contains_key("user"));
}

#[test]
fn template_from_config_map_values_and_keys_and_values() {
    let spec = format!(
        "{HEAD}target:\n  template:\n    templateFrom:\n    - configMap:\n        name: tpl\n        items:\n        - {{key: app.conf}}\n        - {{key: kv, templateAs: KeysAndValues}}\ndata:\n- {{secretKey: pw, remoteRef: {{key: k}}}}\n"
    );
    let mut sources = TemplateSources::default();
    sources.config_maps.insert(
        "tpl".into(),
        BTreeMap::from([
            ("app.conf".to_string(), b"password={{ .pw }}".to_vec()),
            ("kv".to_string(), b"A: '{{ .pw }}'\nB: b".to_vec()),
        ]),
    );
    let m = run_with(&spec, &[("k", s("secret"))], &sources).unwrap();
    assert_eq!(text(&m, "app.conf"), "password=secret");
    assert_eq!(
        (text(&m, "A"), text(&m, "B")),
        ("secret".into(), "b".into())
    );
    let e = run_with(&spec, &[("k", s("secret"))], &TemplateSources::default()).unwrap_err();
    assert!(e.to_string().contains("missing key app.conf"), "{e}");
}

#[test]
fn template_errors_name_the_field_not_the_value() {
    let spec = format!(
        "{HEAD}target:\n  template:\n    data: {{x: '{{{{ .missing }}}}'}}\ndata:\n- {{secretKey: pw, remoteRef: {{key: k}}}}\n"
    );
    let e = run(&spec, &[("k", s(SENTINEL))]).unwrap_err().to_string();
    // Go's (and so ESO's) message, naming the key the template references.
    assert!(
        e.contains("spec.target.template.data[x]")
            && e.contains("map has no entry for key \"missing\""),
        "{e}"
    );
    assert!(!e.contains(SENTINEL));
}

/// ESO checks `dataFrom` keys with Unicode letter/number rules before templating and Kubernetes'
/// rules on the final Secret: a remote key `clé` can be mapped by a template to a valid key;
/// without a template (or when the template keeps it) the Secret key is refused.
#[test]
fn unicode_letters_in_datafrom_keys_pass_until_the_final_secret() {
    let remote = [("k", s(r#"{"clé":"v1","ok":"v2"}"#))];
    let templated = format!(
        "{HEAD}target:\n  template:\n    data: {{cle: '{{{{ index . \"clé\" }}}}', ok: '{{{{ .ok }}}}'}}\ndataFrom:\n- extract: {{key: k}}\n"
    );
    let m = run(&templated, &remote).unwrap();
    assert_eq!(m.data.keys().collect::<Vec<_>>(), ["cle", "ok"]);
    assert_eq!(
        (text(&m, "cle"), text(&m, "ok")),
        ("v1".into(), "v2".into())
    );
    // find too, and a rewrite producing the non-ASCII key.
    let find = format!(
        "{HEAD}target:\n  template:\n    data: {{x: '{{{{ index . \"é\" }}}}'}}\ndataFrom:\n- find: {{name: {{regexp: '^k$'}}}}\n  rewrite:\n  - regexp: {{source: '^k$', target: 'é'}}\n"
    );
    assert_eq!(
        text(&run(&find, &remote).unwrap(), "x"),
        r#"{"clé":"v1","ok":"v2"}"#
    );
    // No template: the keys are the Secret's, refused with Kubernetes' rule, naming the field.
    let plain = format!("{HEAD}dataFrom:\n- extract: {{key: k}}\n");
    let e = run(&plain, &remote).unwrap_err().to_string();
    assert!(
        e.contains("spec.dataFrom[0]") && e.contains("\"clé\"") && e.contains("alphanumeric"),
        "{e}"
    );
    // A template that keeps the provider keys (mergePolicy Merge): refused on the final Secret.
    let merged = format!(
        "{HEAD}target:\n  template:\n    mergePolicy: Merge\n    data: {{x: y}}\ndataFrom:\n- extract: {{key: k}}\n"
    );
    let e = run(&merged, &remote).unwrap_err().to_string();
    assert!(
        e.contains("spec.target.template") && e.contains("\"clé\""),
        "{e}"
    );
    // Not a letter or number in Go's sense (a rewrite skips conversion): refused before
    // templating, as ESO does.
    let rewritten = format!(
        "{HEAD}target:\n  template:\n    data: {{x: y}}\ndataFrom:\n- extract: {{key: k}}\n  rewrite:\n  - regexp: {{source: '^ok$', target: 'a b'}}\n"
    );
    let e = run(&rewritten, &remote).unwrap_err().to_string();
    assert!(
        e.contains("spec.dataFrom[0]") && e.contains("\"a b\"") && e.contains("letters"),
        "{e}"
    );
}

#[test]
fn no_template_copies_labels_and_annotations_but_not_last_applied() {
    let spec: eso_api::ExternalSecretSpec = serde_saphyr::from_str(&format!(
        "{HEAD}data:\n- {{secretKey: a, remoteRef: {{key: k}}}}\n"
    ))
    .unwrap();
    let mut fetched = Fetched::default();
    for r in plan(&spec).unwrap() {
        if let Request::Get { store, remote } = r {
            fetched.gets.insert((store, remote), Some(s("v")));
        }
    }
    let labels = BTreeMap::from([("team".to_string(), "x".to_string())]);
    let ann = BTreeMap::from([
        (
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{...}".to_string(),
        ),
        ("owner".to_string(), "me".to_string()),
    ]);
    let sources = TemplateSources::default();
    let m = map(&MappingInput {
        namespace: "ns",
        name: "es",
        spec: &spec,
        labels: Some(&labels),
        annotations: Some(&ann),
        fetched: &fetched,
        template_sources: &sources,
    })
    .unwrap();
    assert_eq!(m.labels["team"], "x");
    assert_eq!(m.annotations.keys().collect::<Vec<_>>(), ["owner"]);
}

#[test]
fn generator_output_is_merged_in_order_and_rewritten() {
    let spec: eso_api::ExternalSecretSpec = serde_saphyr::from_str(&format!(
        "{HEAD}dataFrom:\n- extract: {{key: k}}\n- sourceRef: {{generatorRef: {{apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: p}}}}\n  rewrite:\n  - regexp: {{source: '^password$', target: db-password}}\n"
    ))
    .unwrap();
    let gens = eso_mapping::generator_entries(&spec);
    assert_eq!(gens.len(), 1);
    assert_eq!(gens[0].0, 1);
    assert_eq!(gens[0].1["kind"], "Password");
    // The generator is not a store read.
    let reqs = plan(&spec).unwrap();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let mut fetched = Fetched::default();
    for r in reqs {
        if let Request::Get { store, remote } = r {
            fetched.gets.insert(
                (store, remote),
                Some(s(r#"{"db-password":"old","user":"u"}"#)),
            );
        }
    }
    fetched.generated.insert(
        1,
        eso_mapping::GeneratedData(BTreeMap::from([(
            "password".to_string(),
            SENTINEL.as_bytes().to_vec(),
        )])),
    );
    assert!(!format!("{fetched:?}").contains(SENTINEL));
    let input = MappingInput {
        namespace: "ns",
        name: "es",
        spec: &spec,
        labels: None,
        annotations: None,
        fetched: &fetched,
        template_sources: &TemplateSources::default(),
    };
    let m = map(&input).unwrap();
    assert_eq!(
        m.data["db-password"],
        SENTINEL.as_bytes(),
        "later entry wins"
    );
    assert_eq!(m.data["user"], b"u");
    // Missing generator output is a caller bug, not an empty Secret.
    let mut without = fetched.clone();
    without.generated.clear();
    let input = MappingInput {
        fetched: &without,
        ..input
    };
    assert!(matches!(map(&input), Err(MappingError::NotFetched { .. })));
}

#[test]
fn generators_in_data_are_reported_unsupported() {
    let spec = format!(
        "{HEAD}data:\n- secretKey: a\n  remoteRef: {{key: k}}\n  sourceRef: {{generatorRef: {{apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: p}}}}\n"
    );
    let e = run(&spec, &[]).unwrap_err().to_string();
    assert!(e.contains("generators are not supported"), "{e}");
}

#[test]
fn generic_targets_are_refused_not_written_as_a_secret() {
    let spec = format!(
        "{HEAD}target:\n  manifest: {{apiVersion: v1, kind: ConfigMap}}\ndata:\n- {{secretKey: a, remoteRef: {{key: k}}}}\n"
    );
    let e = run(&spec, &[("k", s("v"))]).unwrap_err().to_string();
    assert!(e.contains("spec.target.manifest"), "{e}");
    assert!(e.contains("v1/ConfigMap"), "{e}");
}

#[test]
fn debug_output_never_shows_values() {
    let m = run(
        &format!("{HEAD}data:\n- {{secretKey: a, remoteRef: {{key: k}}}}\n"),
        &[("k", s(SENTINEL))],
    )
    .unwrap();
    assert!(!format!("{m:?}").contains(SENTINEL));
    assert!(!format!("{:?}", s(SENTINEL)).contains(SENTINEL));
}
