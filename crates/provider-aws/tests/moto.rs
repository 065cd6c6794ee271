//! The AWS provider against moto (real HTTP, real SDK) through a counting, fault-injecting proxy.
//! Needs `cargo xtask testenv up` (skips without it unless ESO_REQUIRE_TESTENV=1).
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
    async fn secret_key(
        &self,
        _ns: &str,
        _name: &str,
        _key: &str,
    ) -> Result<Vec<u8>, ProviderError> {
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
        "service": "SecretsManager", "region": "us-east-1",
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
        name: "aws".into(),
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

fn current(key: &str) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        version: VersionSelector::Current,
        metadata: false,
    }
}

fn string_of(v: &RemoteSecret) -> String {
    match v {
        RemoteSecret::Value {
            string: Some(s), ..
        } => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn field(json: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v[name].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn read_paths_versions_binary_and_arn() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let name = testenv::unique_name("paths");
    let created = moto::create_secret(&e.moto, &name, "v1").unwrap();
    let arn = field(&created, "ARN");
    let v1_id = field(&created, "VersionId");
    moto::put_value(&e.moto, &name, "v2").unwrap();

    assert_eq!(
        string_of(&p.get_secret(&current(&name)).await.unwrap()),
        "v2"
    );
    assert_eq!(
        string_of(&p.get_secret(&current(&arn)).await.unwrap()),
        "v2"
    );
    let prev = RemoteRef {
        key: name.clone(),
        version: VersionSelector::Stage("AWSPREVIOUS".into()),
        metadata: false,
    };
    assert_eq!(string_of(&p.get_secret(&prev).await.unwrap()), "v1");
    let by_id = RemoteRef {
        key: name.clone(),
        version: VersionSelector::Id(v1_id),
        metadata: false,
    };
    assert_eq!(string_of(&p.get_secret(&by_id).await.unwrap()), "v1");

    let bin = testenv::unique_name("bin");
    moto::call(
        &e.moto,
        "CreateSecret",
        &format!(r#"{{"Name":"{bin}","SecretBinary":"AP/+"}}"#),
    )
    .unwrap();
    match p.get_secret(&current(&bin)).await.unwrap() {
        RemoteSecret::Value {
            binary: Some(b), ..
        } => assert_eq!(b, vec![0x00, 0xff, 0xfe]),
        other => panic!("{other:?}"),
    }

    let tagged = testenv::unique_name("tags");
    moto::create_secret_with_tags(&e.moto, &tagged, "x", &[("team", "a")]).unwrap();
    let meta = RemoteRef {
        key: tagged,
        version: VersionSelector::Current,
        metadata: true,
    };
    assert_eq!(
        p.get_secret(&meta).await.unwrap(),
        RemoteSecret::Tags(BTreeMap::from([("team".into(), "a".into())]))
    );

    // The store prefix is prepended to keys.
    let pp = provider(&e, &store(serde_json::json!({"prefix": name.clone()}))).await;
    assert_eq!(string_of(&pp.get_secret(&current("")).await.unwrap()), "v2");
}

#[tokio::test]
async fn not_found_and_marked_for_deletion_are_authoritative() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let e1 = p
        .get_secret(&current(&testenv::unique_name("never")))
        .await
        .unwrap_err();
    assert_eq!(e1.class(), ErrorClass::NotFound);
    let gone = testenv::unique_name("gone");
    moto::create_secret(&e.moto, &gone, "x").unwrap();
    moto::force_delete(&e.moto, &gone).unwrap();
    assert_eq!(
        p.get_secret(&current(&gone)).await.unwrap_err().class(),
        ErrorClass::NotFound
    );
    let marked = testenv::unique_name("marked");
    moto::create_secret(&e.moto, &marked, "x").unwrap();
    moto::call(
        &e.moto,
        "DeleteSecret",
        &format!(r#"{{"SecretId":"{marked}","RecoveryWindowInDays":7}}"#),
    )
    .unwrap();
    let err = p.get_secret(&current(&marked)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
}

#[tokio::test]
async fn batch_reads_keep_missing_ids() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let a = testenv::unique_name("ba");
    let b = testenv::unique_name("bb");
    moto::create_secret(&e.moto, &a, "A").unwrap();
    moto::create_secret(&e.moto, &b, "B").unwrap();
    let before = e.proxy.counts();
    let missing = testenv::unique_name("missing");
    let r = p
        .get_secrets(&[current(&a), current(&missing), current(&b)])
        .await;
    assert_eq!(r.len(), 3);
    assert_eq!(string_of(r[0].as_ref().unwrap()), "A");
    assert_eq!(r[1].as_ref().unwrap_err().class(), ErrorClass::NotFound);
    assert_eq!(string_of(r[2].as_ref().unwrap()), "B");
    let after = e.proxy.counts();
    let delta =
        |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    assert_eq!(delta("BatchGetSecretValue"), 1, "{after:?}");
}

#[tokio::test]
async fn find_by_name_tags_and_path() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let team = testenv::unique_name("team");
    let base = testenv::unique_name("find");
    moto::create_secret_with_tags(&e.moto, &format!("{base}/db"), "1", &[("team", &team)]).unwrap();
    moto::create_secret_with_tags(&e.moto, &format!("{base}/api"), "2", &[("team", &team)])
        .unwrap();
    moto::create_secret(&e.moto, &format!("{base}-other"), "3").unwrap();
    let by_name = p
        .find(&FindQuery {
            name_regexp: Some(format!("^{base}/")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_name.keys().cloned().collect::<Vec<_>>(),
        [format!("{base}/api"), format!("{base}/db")]
    );
    let by_tags = p
        .find(&FindQuery {
            tags: BTreeMap::from([("team".into(), team.clone())]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_tags.len(), 2);
    let by_path = p
        .find(&FindQuery {
            path: Some(base.clone()),
            name_regexp: Some("other".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_path.keys().cloned().collect::<Vec<_>>(),
        [format!("{base}-other")]
    );
}

#[tokio::test]
async fn throttling_and_5xx_are_transient_classes() {
    let Some(e) = env() else { return };
    let p = provider(&e, &store(serde_json::json!({}))).await;
    let k = testenv::unique_name("faults");
    moto::create_secret(&e.moto, &k, "x").unwrap();
    e.proxy.inject(proxy::Fault::Throttle, u32::MAX);
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::Throttled
    );
    e.proxy.inject(proxy::Fault::Unavailable, u32::MAX);
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::Unavailable
    );
    e.proxy.inject(proxy::Fault::Drop, u32::MAX);
    assert_eq!(
        p.get_secret(&current(&k)).await.unwrap_err().class(),
        ErrorClass::Unavailable
    );
    // One transient failure is retried by the SDK with backoff.
    e.proxy.inject(proxy::Fault::Throttle, 1);
    assert_eq!(string_of(&p.get_secret(&current(&k)).await.unwrap()), "x");
}

fn get(key: &str) -> Request {
    Request::Get {
        store: StoreRef {
            kind: StoreKind::SecretStore,
            name: "aws".into(),
        },
        remote: current(key),
    }
}

#[tokio::test]
async fn hundred_concurrent_reads_of_one_key_reach_aws_once() {
    let Some(e) = env() else { return };
    let k = testenv::unique_name("dedup");
    moto::create_secret(&e.moto, &k, "x").unwrap();
    let reg = Arc::new(
        Registry::new(Arc::new(StaticKeys), CacheConfig::default()).with_factory(factory(&e)),
    );
    let s = store(serde_json::json!({}));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (reg, s, k) = (reg.clone(), s.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            reg.fetch(&s, "ns", &[get(&k)]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        e.proxy.counts().get("GetSecretValue").copied().unwrap_or(0),
        1,
        "{:?}",
        e.proxy.counts()
    );
}

/// 1,000 lookups from 1,000 ExternalSecrets over 100 distinct secrets in one window: at most 100
/// AWS requests; with an assumed role, one AssumeRole for all of them.
#[tokio::test]
async fn thousand_lookups_hundred_secrets_one_assume_role() {
    let Some(e) = env() else { return };
    let base = testenv::unique_name("k");
    for i in 0..100 {
        moto::create_secret(&e.moto, &format!("{base}-{i}"), &i.to_string()).unwrap();
    }
    let reg = Arc::new(
        Registry::new(Arc::new(StaticKeys), CacheConfig::default()).with_factory(factory(&e)),
    );
    let s = store(
        serde_json::json!({"role": "arn:aws:iam::123456789012:role/reader", "externalID": "x"}),
    );
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (reg, s, k) = (reg.clone(), s.clone(), format!("{base}-{}", i % 100));
        tasks.push(tokio::spawn(async move {
            reg.fetch(&s, &format!("ns{i}"), &[get(&k)]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let counts = e.proxy.counts();
    let sm: u64 = ["GetSecretValue", "BatchGetSecretValue"]
        .iter()
        .map(|o| counts.get(*o).copied().unwrap_or(0))
        .sum();
    println!("AWS calls for 1000 lookups over 100 secrets: {counts:?}");
    assert!(sm <= 100, "{counts:?}");
    assert_eq!(
        counts.get("AssumeRole").copied().unwrap_or(0),
        1,
        "{counts:?}"
    );
}

/// `auth.jwt`: a ServiceAccount token (from TokenRequest, here a stub) exchanged with STS
/// AssumeRoleWithWebIdentity for the role in the ServiceAccount's annotation, then reads; the
/// credentials are reused (one STS call for many reads).
#[tokio::test]
async fn jwt_service_account_auth_assumes_the_annotated_role_once() {
    let Some(e) = env() else { return };
    let k = testenv::unique_name("jwt");
    moto::create_secret(&e.moto, &k, "via-web-identity").unwrap();
    let spec = serde_json::json!({"auth": {"jwt": {"serviceAccountRef": {"name": "app"}}}});
    let reg = Arc::new(
        Registry::new(
            Arc::new(StaticKeys),
            CacheConfig {
                ttl: std::time::Duration::ZERO,
                ..Default::default()
            },
        )
        .with_factory(factory(&e)),
    );
    let s = store(spec);
    for _ in 0..20 {
        let f = reg.fetch(&s, "ns", &[get(&k)]).await.unwrap();
        let v = f.gets.values().next().cloned().flatten().unwrap();
        assert_eq!(string_of(&v), "via-web-identity");
    }
    let counts = e.proxy.counts();
    assert_eq!(
        counts
            .get("AssumeRoleWithWebIdentity")
            .copied()
            .unwrap_or(0),
        1,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("GetSecretValue").copied().unwrap_or(0),
        20,
        "cache TTL 0: every fetch reads"
    );
}

/// Records every reported call.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(&'static str, &'static str, CallStatus)>>);

impl ApiCallObserver for Recorder {
    fn api_call(&self, provider: &'static str, call: &'static str, status: CallStatus) {
        self.0.lock().unwrap().push((provider, call, status));
    }
}

impl Recorder {
    fn count(&self, provider: &str, call: &str, status: Option<CallStatus>) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, c, s)| *p == provider && *c == call && status.is_none_or(|w| w == *s))
            .count() as u64
    }
}

/// Every AWS call the provider makes (each read path, validation, role chains, web identity) is
/// reported once with ESO's label values, as many times as the proxy saw the request, with
/// "error" for a failed call. ESO's `externalsecret_provider_api_calls_count` is fed from this.
#[tokio::test]
async fn every_aws_call_is_reported_to_the_observer_once() {
    let Some(e) = env() else { return };
    let rec = Arc::new(Recorder::default());
    let f = AwsFactory::with_endpoints(Some(e.proxy.url.clone()), Some(e.proxy.url.clone()))
        .with_observer(rec.clone());
    let a = testenv::unique_name("obs-a");
    let b = testenv::unique_name("obs-b");
    moto::create_secret(&e.moto, &a, "A").unwrap();
    moto::create_secret_with_tags(&e.moto, &b, "B", &[("t", "v")]).unwrap();

    // Static keys plus a role: validation needs AssumeRole, then GetCallerIdentity.
    let s = store(serde_json::json!({"role": "arn:aws:iam::123456789012:role/obs"}));
    let p = f.build(&s, "ns", Arc::new(StaticKeys)).await.unwrap();
    p.validate().await.unwrap();
    p.get_secret(&current(&a)).await.unwrap();
    let missing = p
        .get_secret(&current(&testenv::unique_name("obs-none")))
        .await;
    assert_eq!(missing.unwrap_err().class(), ErrorClass::NotFound);
    let both = p.get_secrets(&[current(&a), current(&b)]).await;
    assert!(both.iter().all(Result::is_ok));
    p.get_secret(&RemoteRef {
        key: b.clone(),
        version: VersionSelector::Current,
        metadata: true,
    })
    .await
    .unwrap();
    p.find(&FindQuery {
        name_regexp: Some(format!("^{a}$")),
        ..Default::default()
    })
    .await
    .unwrap();
    p.last_changed().await.unwrap();
    // auth.jwt: a ServiceAccount token exchanged with AssumeRoleWithWebIdentity.
    let jwt = f
        .build(
            &store(serde_json::json!({"auth": {"jwt": {"serviceAccountRef": {"name": "app"}}}})),
            "ns",
            Arc::new(StaticKeys),
        )
        .await
        .unwrap();
    jwt.validate().await.unwrap();

    let sm = "AWS/SecretsManager";
    let sts = "AWS/STS";
    assert_eq!(
        rec.count(sm, "GetSecretValue", Some(CallStatus::Success)),
        1
    );
    assert_eq!(rec.count(sm, "GetSecretValue", Some(CallStatus::Error)), 1);
    assert_eq!(
        rec.count(sm, "BatchGetSecretValue", None),
        2,
        "get_secrets + find"
    );
    assert_eq!(rec.count(sm, "DescribeSecret", None), 1);
    // One per page of 100: moto's account holds every test's secrets.
    assert!(
        rec.count(sm, "ListSecrets", None) >= 2,
        "find + last_changed"
    );
    // The STS and Secrets Manager clients each cache the assumed role's credentials.
    assert!(rec.count(sts, "AssumeRole", None) >= 1);
    assert_eq!(rec.count(sts, "AssumeRoleWithWebIdentity", None), 1);
    assert_eq!(rec.count(sts, "GetCallerIdentity", None), 2);
    // Exactly what reached AWS: one report per request the proxy forwarded, nothing else.
    let seen = e.proxy.counts();
    let reported = rec.0.lock().unwrap().len() as u64;
    assert_eq!(reported, seen.values().sum::<u64>(), "{seen:?}");
    for (op, n) in &seen {
        let provider = if op.starts_with("AssumeRole") || op == "GetCallerIdentity" {
            sts
        } else {
            sm
        };
        let call = rec
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, c, _)| *p == provider && c == op)
            .count() as u64;
        assert_eq!(call, *n, "{op}: {seen:?}");
    }
}
