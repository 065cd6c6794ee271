//! The Parameter Store provider (`service: ParameterStore`) against moto (real HTTP, real SDK)
//! through the counting, fault-injecting proxy. Needs `cargo xtask testenv up` (skips without it
//! unless ESO_REQUIRE_TESTENV=1).
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use eso_testsupport::{moto, proxy, testenv};

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use eso_api::{SecretStoreSpec, StoreKind};
use eso_provider::*;
use eso_provider_aws::AwsFactory;

struct StaticKeys;

#[async_trait]
impl KubeAccess for StaticKeys {
    async fn secret_key(&self, _: &str, _: &str, _: &str) -> Result<Vec<u8>, ProviderError> {
        Ok(b"testing".to_vec())
    }
    async fn service_account_token(
        &self,
        _: &str,
        _: &str,
        _: &[String],
    ) -> Result<ServiceAccountToken, ProviderError> {
        Ok(ServiceAccountToken {
            token: "header.payload.sig".into(),
            expires_at: std::time::SystemTime::now(),
        })
    }
    async fn service_account_annotations(
        &self,
        _: &str,
        _: &str,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        Ok(BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::123456789012:role/irsa".to_string(),
        )]))
    }
}

fn store(extra: serde_json::Value) -> StoreInfo {
    let mut aws = serde_json::json!({
        "service": "ParameterStore", "region": "us-east-1",
        "auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "c", "key": "a"},
            "secretAccessKeySecretRef": {"name": "c", "key": "s"}}}
    });
    if let (Some(a), Some(e)) = (aws.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    let spec: SecretStoreSpec =
        serde_json::from_value(serde_json::json!({"provider": {"aws": aws}})).unwrap();
    StoreInfo {
        kind: StoreKind::SecretStore,
        name: "ssm".into(),
        namespace: Some("ns".into()),
        uid: testenv::unique_name("uid"),
        generation: 1,
        spec: Arc::new(spec),
    }
}

struct Env {
    moto: String,
    proxy: proxy::Proxy,
}

fn env() -> Option<Env> {
    let e = testenv::require()?;
    let moto = e.moto_url.clone().expect("moto url");
    let proxy = proxy::Proxy::start(&moto).expect("proxy");
    Some(Env { moto, proxy })
}

impl Env {
    fn delta(&self, before: &BTreeMap<String, u64>, op: &str) -> u64 {
        self.proxy.counts().get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
    }
}

fn factory(e: &Env) -> Arc<AwsFactory> {
    Arc::new(AwsFactory::with_endpoints(
        Some(e.proxy.url.clone()),
        Some(e.proxy.url.clone()),
    ))
}

async fn provider(e: &Env, s: &StoreInfo) -> Arc<dyn SecretsProvider> {
    factory(e)
        .build(s, "ns", Arc::new(StaticKeys))
        .await
        .unwrap()
}

fn at(key: &str, version: VersionSelector) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        version,
        metadata: false,
    }
}

fn current(key: &str) -> RemoteRef {
    at(key, VersionSelector::Current)
}

fn string_of(v: &RemoteSecret) -> String {
    match v {
        RemoteSecret::Value {
            string: Some(s), ..
        } => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// A unique parameter hierarchy, e.g. `/eso-ssm-12345-0`.
fn base(prefix: &str) -> String {
    format!("/{}", testenv::unique_name(prefix))
}

#[tokio::test]
async fn reads_by_name_arn_version_label_securestring_stringlist_and_prefix() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let b = base("reads");
    let plain = format!("{b}/plain");
    moto::put_parameter(&e.moto, &plain, "String", r#"{"user":"v1"}"#, &[]).unwrap();
    moto::put_parameter(&e.moto, &plain, "String", r#"{"user":"v2"}"#, &[]).unwrap();
    moto::ssm_call(
        &e.moto,
        "LabelParameterVersion",
        &format!(r#"{{"Name":"{plain}","ParameterVersion":1,"Labels":["stable"]}}"#),
    )
    .unwrap();
    let secure = format!("{b}/secure");
    moto::put_parameter(&e.moto, &secure, "SecureString", "s3cr3t", &[]).unwrap();
    let list = format!("{b}/list");
    moto::put_parameter(&e.moto, &list, "StringList", "a,b,c", &[]).unwrap();

    let read = |r: RemoteRef| {
        let p = p.clone();
        async move { string_of(&p.get_secret(&r).await.unwrap()) }
    };
    assert_eq!(read(current(&plain)).await, r#"{"user":"v2"}"#);
    let arn = format!("arn:aws:ssm:us-east-1:123456789012:parameter{plain}");
    assert_eq!(read(current(&arn)).await, r#"{"user":"v2"}"#);
    // ESO's `name:version` selector: a version number or a label.
    assert_eq!(
        read(at(&plain, VersionSelector::Stage("1".into()))).await,
        r#"{"user":"v1"}"#
    );
    assert_eq!(
        read(at(&plain, VersionSelector::Stage("stable".into()))).await,
        r#"{"user":"v1"}"#
    );
    // WithDecryption: the SecureString's plaintext, not its ciphertext.
    assert_eq!(read(current(&secure)).await, "s3cr3t");
    // StringList: the comma-separated value, as ESO returns it.
    assert_eq!(read(current(&list)).await, "a,b,c");

    // The store prefix is prepended to keys (and to ARNs, as ESO does).
    let pp = provider(&e, &store(serde_json::json!({"prefix": format!("{b}/")}))).await;
    assert_eq!(
        string_of(&pp.get_secret(&current("secure")).await.unwrap()),
        "s3cr3t"
    );
    let got = pp.get_secrets(&[current("plain"), current("list")]).await;
    assert_eq!(string_of(got[0].as_ref().unwrap()), r#"{"user":"v2"}"#);
    assert_eq!(string_of(got[1].as_ref().unwrap()), "a,b,c");
}

#[tokio::test]
async fn missing_parameters_and_versions_are_authoritative_not_found() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let b = base("nf");
    let err = p
        .get_secret(&current(&format!("{b}/never")))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    let k = format!("{b}/k");
    moto::put_parameter(&e.moto, &k, "String", "x", &[]).unwrap();
    let err = p
        .get_secret(&at(&k, VersionSelector::Stage("99".into())))
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::NotFound,
        "ParameterVersionNotFound: {err}"
    );
    moto::delete_parameter(&e.moto, &k).unwrap();
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::NotFound
    );
}

#[tokio::test]
async fn batches_use_get_parameters_and_confirm_missing_names_singly() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let b = base("batch");
    let names: Vec<String> = (0..12).map(|i| format!("{b}/p{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        moto::put_parameter(&e.moto, n, "SecureString", &format!("v{i}"), &[]).unwrap();
    }
    let missing = format!("{b}/missing");
    let mut refs: Vec<RemoteRef> = names.iter().map(|n| current(n)).collect();
    refs.insert(3, current(&missing));
    let before = e.proxy.counts();
    let r = p.get_secrets(&refs).await;
    assert_eq!(r.len(), 13);
    assert_eq!(string_of(r[0].as_ref().unwrap()), "v0");
    assert_eq!(r[3].as_ref().unwrap_err().class(), ErrorClass::NotFound);
    assert_eq!(string_of(r[12].as_ref().unwrap()), "v11");
    assert_eq!(e.delta(&before, "GetParameters"), 2, "13 names: 10 + 3");
    assert_eq!(
        e.delta(&before, "GetParameter"),
        1,
        "only the name AWS did not return is read singly (for an authoritative answer)"
    );
}

#[tokio::test]
async fn denied_batch_falls_back_to_get_parameter_for_good() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let b = base("deny");
    moto::put_parameter(&e.moto, &format!("{b}/a"), "String", "A", &[]).unwrap();
    moto::put_parameter(&e.moto, &format!("{b}/b"), "String", "B", &[]).unwrap();
    let refs = [current(&format!("{b}/a")), current(&format!("{b}/b"))];
    // ESO's minimal policy grants ssm:GetParameter only.
    e.proxy.inject(proxy::Fault::AccessDenied, 1);
    let before = e.proxy.counts();
    let r = p.get_secrets(&refs).await;
    assert_eq!(string_of(r[0].as_ref().unwrap()), "A");
    assert_eq!(string_of(r[1].as_ref().unwrap()), "B");
    assert_eq!(e.delta(&before, "GetParameters"), 1);
    assert_eq!(e.delta(&before, "GetParameter"), 2);
    let before = e.proxy.counts();
    p.get_secrets(&refs).await;
    assert_eq!(
        e.delta(&before, "GetParameters"),
        0,
        "not retried once denied"
    );
}

#[tokio::test]
async fn metadata_fetch_reads_tags() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let k = format!("{}/tagged", base("meta"));
    moto::put_parameter(
        &e.moto,
        &k,
        "String",
        "x",
        &[("team", "a"), ("env", "prod")],
    )
    .unwrap();
    let before = e.proxy.counts();
    let meta = RemoteRef {
        key: k,
        version: VersionSelector::Current,
        metadata: true,
    };
    assert_eq!(
        p.get_secret(&meta).await.unwrap(),
        RemoteSecret::Tags(BTreeMap::from([
            ("env".into(), "prod".into()),
            ("team".into(), "a".into())
        ]))
    );
    assert_eq!(e.delta(&before, "ListTagsForResource"), 1);
    assert_eq!(e.delta(&before, "GetParameter"), 0, "no value read");
}

fn find(name: Option<&str>, tags: &[(&str, &str)], path: Option<&str>) -> FindQuery {
    FindQuery {
        name_regexp: name.map(str::to_string),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        path: path.map(str::to_string),
    }
}

#[tokio::test]
async fn find_by_path_name_regexp_and_tags() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let b = base("find");
    let team = testenv::unique_name("team");
    moto::put_parameter(
        &e.moto,
        &format!("{b}/app/db"),
        "SecureString",
        "1",
        &[("team", &team)],
    )
    .unwrap();
    moto::put_parameter(
        &e.moto,
        &format!("{b}/app/deep/api"),
        "String",
        "2",
        &[("team", &team)],
    )
    .unwrap();
    moto::put_parameter(
        &e.moto,
        &format!("{b}/other/x"),
        "String",
        "3",
        &[("team", &team)],
    )
    .unwrap();
    moto::put_parameter(&e.moto, &format!("{b}/app/untagged"), "String", "4", &[]).unwrap();

    // name.regexp under a path: GetParametersByPath, recursive, decrypted.
    let before = e.proxy.counts();
    let got = p
        .find(&find(Some("(db|api)$"), &[], Some(&format!("{b}/app"))))
        .await
        .unwrap();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [format!("{b}/app/db"), format!("{b}/app/deep/api")]
    );
    assert_eq!(string_of(&got[&format!("{b}/app/db")]), "1");
    assert!(e.delta(&before, "GetParametersByPath") >= 1);
    assert_eq!(
        e.delta(&before, "GetParameter") + e.delta(&before, "GetParameters"),
        0
    );

    // name.regexp without a path: ESO searches from `/`.
    let got = p
        .find(&find(Some(&format!("^{b}/")), &[], None))
        .await
        .unwrap();
    assert_eq!(got.len(), 4, "{:?}", got.keys());

    // tags: DescribeParameters with tag filters, then GetParameters (10 per call).
    let before = e.proxy.counts();
    let got = p.find(&find(None, &[("team", &team)], None)).await.unwrap();
    assert_eq!(got.len(), 3, "{:?}", got.keys());
    assert_eq!(string_of(&got[&format!("{b}/other/x")]), "3");
    assert!(e.delta(&before, "DescribeParameters") >= 1);
    assert_eq!(e.delta(&before, "GetParameters"), 1);
    assert_eq!(e.delta(&before, "GetParameter"), 0);

    // tags and path together; tags and name together (both apply).
    let got = p
        .find(&find(None, &[("team", &team)], Some(&format!("{b}/app"))))
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "{:?}", got.keys());
    let got = p
        .find(&find(Some("x$"), &[("team", &team)], None))
        .await
        .unwrap();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [format!("{b}/other/x")]
    );
}

#[tokio::test]
async fn find_by_name_lists_with_describe_parameters_when_by_path_is_denied() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let b = base("fallback");
    moto::put_parameter(&e.moto, &format!("{b}/a"), "String", "A", &[]).unwrap();
    moto::put_parameter(&e.moto, &format!("{b}/b"), "String", "B", &[]).unwrap();
    e.proxy.inject(proxy::Fault::AccessDenied, 1);
    let before = e.proxy.counts();
    let got = p.find(&find(Some(".*"), &[], Some(&b))).await.unwrap();
    assert_eq!(got.len(), 2, "{:?}", got.keys());
    assert_eq!(string_of(&got[&format!("{b}/b")]), "B");
    assert_eq!(e.delta(&before, "GetParametersByPath"), 1);
    assert!(e.delta(&before, "DescribeParameters") >= 1);
    assert_eq!(e.delta(&before, "GetParameters"), 1);
}

#[tokio::test]
async fn throttling_denial_and_5xx_are_transient_classes() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let k = format!("{}/k", base("faults"));
    moto::put_parameter(&e.moto, &k, "String", "x", &[]).unwrap();
    e.proxy.inject(proxy::Fault::Throttle, u32::MAX);
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::Throttled
    );
    e.proxy.inject(proxy::Fault::AccessDenied, u32::MAX);
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::AccessDenied
    );
    e.proxy.inject(proxy::Fault::Unavailable, u32::MAX);
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::Unavailable
    );
    e.proxy.inject(proxy::Fault::Throttle, 1);
    assert_eq!(string_of(&p.get_secret(&current(&k)).await.unwrap()), "x");
}

#[tokio::test]
async fn validate_is_one_describe_parameters_call() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let before = e.proxy.counts();
    assert_eq!(p.validate().await.unwrap(), Capabilities::ReadOnly);
    assert_eq!(e.delta(&before, "DescribeParameters"), 1);
    assert_eq!(e.proxy.total() - before.values().sum::<u64>(), 1);
    e.proxy.inject(proxy::Fault::AccessDenied, 1);
    assert_eq!(
        p.validate().await.unwrap_err().class(),
        ErrorClass::AccessDenied
    );
}

#[tokio::test]
async fn last_changed_follows_edits_without_reading_values() {
    let Some(e) = env() else { return };
    let b = base("changes");
    let p = provider(&e, &store(serde_json::json!({"prefix": format!("{b}/")}))).await;
    moto::put_parameter(&e.moto, &format!("{b}/a"), "SecureString", "1", &[]).unwrap();
    moto::put_parameter(&e.moto, &format!("{b}/b"), "String", "1", &[]).unwrap();
    let before = e.proxy.counts();
    let first = p.last_changed().await.unwrap().unwrap();
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        ["a", "b"],
        "prefix stripped"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    moto::put_parameter(&e.moto, &format!("{b}/a"), "SecureString", "2", &[]).unwrap();
    let second = p.last_changed().await.unwrap().unwrap();
    assert!(second["a"] > first["a"], "the edit moved LastModifiedDate");
    assert_eq!(second["b"], first["b"]);
    // Two polls, one page each (an SDK retry may add a call under load).
    assert!(e.delta(&before, "DescribeParameters") >= 2);
    assert_eq!(
        e.delta(&before, "GetParameter")
            + e.delta(&before, "GetParameters")
            + e.delta(&before, "GetParametersByPath"),
        0,
        "no value read"
    );
}

fn get(key: &str) -> Request {
    Request::Get {
        store: StoreRef {
            kind: StoreKind::SecretStore,
            name: "ssm".into(),
        },
        remote: current(key),
    }
}

/// 1,000 lookups from 1,000 ExternalSecrets (each its own fetch, concurrently) over 100
/// parameters in one refresh window: the shared cache reads each parameter once, and the
/// registry's per-store batch queue groups the concurrent reads into GetParameters calls of 10.
#[tokio::test]
async fn thousand_lookups_hundred_parameters_ten_get_parameters_calls() {
    let Some(e) = env() else { return };
    let b = base("k");
    for i in 0..100 {
        moto::put_parameter(
            &e.moto,
            &format!("{b}/p{i}"),
            "SecureString",
            &i.to_string(),
            &[],
        )
        .unwrap();
    }
    let reg = Arc::new(
        Registry::new(Arc::new(StaticKeys), CacheConfig::default()).with_factory(factory(&e)),
    );
    let s = store(serde_json::json!({}));
    let before = e.proxy.counts();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (reg, s, k) = (reg.clone(), s.clone(), format!("{b}/p{}", i % 100));
        tasks.push(tokio::spawn(async move {
            let f = reg.fetch(&s, &format!("ns{i}"), &[get(&k)]).await.unwrap();
            let v = f.gets.values().next().cloned().flatten().unwrap();
            assert_eq!(string_of(&v), (i % 100).to_string());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let batch = e.delta(&before, "GetParameters");
    let single = e.delta(&before, "GetParameter");
    println!(
        "AWS calls for 1000 lookups over 100 parameters: GetParameters={batch} GetParameter={single} all={:?}",
        e.proxy.counts()
    );
    assert!(batch <= 10, "GetParameters={batch}");
    assert_eq!(single, 0);
    assert_eq!(reg.stats().remote_reads, 100);
}

/// The same with the registry driven from a multi-threaded runtime, as the operator runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_lookups_on_a_multi_threaded_runtime_stay_batched() {
    let Some(e) = env() else { return };
    let b = base("mt");
    for i in 0..100 {
        moto::put_parameter(&e.moto, &format!("{b}/p{i}"), "String", &i.to_string(), &[]).unwrap();
    }
    let reg = Arc::new(
        Registry::new(Arc::new(StaticKeys), CacheConfig::default()).with_factory(factory(&e)),
    );
    let s = store(serde_json::json!({}));
    let before = e.proxy.counts();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (reg, s, k) = (reg.clone(), s.clone(), format!("{b}/p{}", i % 100));
        tasks.push(tokio::spawn(async move {
            reg.fetch(&s, &format!("ns{i}"), &[get(&k)]).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = e.delta(&before, "GetParameters") + e.delta(&before, "GetParameter");
    println!("multi-threaded: {calls} read calls for 100 parameters");
    assert!(calls <= 30, "{:?}", e.proxy.counts());
    assert_eq!(reg.stats().remote_reads, 100);
}
