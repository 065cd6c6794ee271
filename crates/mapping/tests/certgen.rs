//! sprig's key and certificate generators (genPrivateKey, genCA*, genSelfSignedCert*,
//! genSignedCert*, buildCustomCert) as ESO v2.9 exposes them. Their outputs are random (keys,
//! serials, validity from now), so these tests check properties: what the certificate says
//! (subject, issuer, SANs, CA flag, key usage, key identifiers, validity), that signatures verify
//! (by us, and by `openssl verify` when openssl is installed), and that each call is fresh.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use eso_mapping::template::render;
use x509_parser::prelude::*;

fn r(t: &str, data: &[(&str, &str)]) -> Result<String, String> {
    let d: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    render(t, &d)
}

fn der(pem_text: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
    p.contents
}

fn with_cert<T>(pem_text: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let d = der(pem_text);
    let (_, c) = parse_x509_certificate(&d).unwrap();
    f(&c)
}

fn cn(c: &X509Certificate<'_>) -> String {
    c.subject()
        .iter_common_name()
        .next()
        .map(|a| a.as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn ski(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.extensions()
        .iter()
        .find_map(|x| match x.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn aki(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.extensions()
        .iter()
        .find_map(|x| match x.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// Whether `c`'s signature verifies with `key` (RSA PKCS#1 v1.5 or ECDSA P-256, SHA-256).
fn verify(c: &X509Certificate<'_>, key: &SubjectPublicKeyInfo<'_>) -> Result<(), ()> {
    use sha2::Digest as _;
    let tbs = c.tbs_certificate.as_ref();
    let sig = c.signature_value.data.as_ref();
    match key.parsed().map_err(|_| ())? {
        x509_parser::public_key::PublicKey::RSA(_) => {
            use rsa::pkcs8::DecodePublicKey as _;
            let k = rsa::PublicKey::from_public_key_der(key.raw).map_err(|_| ())?;
            k.verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(tbs),
                sig,
            )
            .map_err(|_| ())
        }
        x509_parser::public_key::PublicKey::EC(point) => {
            use p256::ecdsa::signature::Verifier as _;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point.data()).map_err(|_| ())?;
            let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| ())?;
            vk.verify(tbs, &sig).map_err(|_| ())
        }
        _ => Err(()),
    }
}

/// `openssl verify -CAfile ca leaf` (None when openssl is not installed).
fn openssl_verify(ca: &str, leaf: &str) -> Option<bool> {
    let dir = std::env::temp_dir().join(format!("eso-certgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cap, lp) = (dir.join("ca.pem"), dir.join("leaf.pem"));
    std::fs::write(&cap, ca).unwrap();
    std::fs::write(&lp, leaf).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&cap)
        .arg(&lp)
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Some(out.status.success())
}

const CA: &str = r#"{{- $ca := genCA "my-ca" 30 -}}{{ $ca.Cert }}@@{{ $ca.Key }}"#;

#[test]
fn gen_ca_is_a_self_signed_ca() {
    let out = r(CA, &[]).unwrap();
    let (cert, key) = out.split_once("@@").unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    with_cert(cert, |c| {
        assert_eq!(c.version(), X509Version::V3);
        assert_eq!(cn(c), "my-ca");
        assert_eq!(c.subject().as_raw(), c.issuer().as_raw());
        let bc = c.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && ku.key_cert_sign());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(ski(c).is_some());
        let days =
            (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86400;
        assert_eq!(days, 30);
        let now = chrono_now();
        assert!((c.validity().not_before.timestamp() - now).abs() < 120);
        assert!(verify(c, c.public_key()).is_ok(), "self-signature verifies");
        match c.public_key().parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(k) => assert_eq!(k.key_size(), 2048),
            other => panic!("not RSA: {other:?}"),
        }
    });
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn gen_signed_cert_chains_to_its_ca() {
    let t = r#"{{- $ca := genCA "root" 365 -}}
{{- $c := genSignedCert "svc.example" (list "10.0.0.1" "::1") (list "svc.example" "*.svc.example") 10 $ca -}}
{{ $ca.Cert }}@@{{ $c.Cert }}@@{{ $c.Key }}"#;
    let out = r(t, &[]).unwrap();
    let parts: Vec<&str> = out.split("@@").collect();
    let (ca, leaf, key) = (parts[0], parts[1], parts[2]);
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    let ca_ski = with_cert(ca, ski).unwrap();
    let ca_der = der(ca);
    let (_, ca_c) = parse_x509_certificate(&ca_der).unwrap();
    with_cert(leaf, |c| {
        assert_eq!(cn(c), "svc.example");
        assert_eq!(c.issuer().as_raw(), ca_c.subject().as_raw());
        assert_eq!(aki(c), Some(ca_ski.clone()));
        assert!(ski(c).is_none(), "sprig only gives CAs a subject key id");
        assert!(!c.basic_constraints().unwrap().unwrap().value.ca);
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let san = c.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|g| format!("{g}")).collect();
        assert_eq!(
            names,
            [
                "DNSName(svc.example)",
                "DNSName(*.svc.example)",
                "IPAddress(0a:00:00:01)",
                "IPAddress(00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01)"
            ]
        );
        assert!(verify(c, ca_c.public_key()).is_ok());
        assert!(verify(c, c.public_key()).is_err());
    });
    if let Some(ok) = openssl_verify(ca, leaf) {
        assert!(ok, "openssl verify accepts the chain");
    }
}

#[test]
fn with_key_variants_use_the_given_key() {
    // ECDSA P-256 key from genPrivateKey, used for a CA, a self-signed and a signed cert.
    let t = r#"{{- $k := genPrivateKey "ecdsa" -}}
{{- $ca := genCAWithKey "ec-ca" 5 $k -}}
{{- $ss := genSelfSignedCertWithKey "self" nil (list "a.example") 5 $k -}}
{{- $leaf := genSignedCertWithKey "leaf" nil nil 5 $ca $k -}}
{{ $k }}@@{{ $ca.Key }}@@{{ $ca.Cert }}@@{{ $ss.Cert }}@@{{ $leaf.Cert }}@@{{ $leaf.Key }}"#;
    let out = r(t, &[]).unwrap();
    let p: Vec<&str> = out.split("@@").collect();
    assert!(p[0].starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    assert_eq!(p[0], p[1], "the CA keeps the given key");
    assert_eq!(p[0], p[5]);
    let ca_der = der(p[2]);
    let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
    assert!(verify(&ca, ca.public_key()).is_ok());
    with_cert(p[3], |c| {
        assert_eq!(cn(c), "self");
        assert!(verify(c, c.public_key()).is_ok());
        assert_eq!(c.public_key().raw, ca.public_key().raw);
    });
    with_cert(p[4], |c| {
        assert!(verify(c, ca.public_key()).is_ok());
        assert!(c.subject_alternative_name().unwrap().is_none());
    });
    if let Some(ok) = openssl_verify(p[2], p[4]) {
        assert!(ok);
    }
    // An RSA key in PKCS#1 and in PKCS#8 form.
    let t = r#"{{- $ca := genCA "x" 1 -}}{{ $ca.Key }}"#;
    let rsa_key = r(t, &[]).unwrap();
    let out = r(
        r#"{{ (genCAWithKey "k" 1 .key).Key }}"#,
        &[("key", &rsa_key)],
    )
    .unwrap();
    assert_eq!(out, rsa_key);
}

#[test]
fn gen_private_key_types() {
    let ed = r(r#"{{ genPrivateKey "ed25519" }}"#, &[]).unwrap();
    assert!(ed.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let ec = r(r#"{{ genPrivateKey "ecdsa" }}"#, &[]).unwrap();
    assert!(ec.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    assert_ne!(ec, r(r#"{{ genPrivateKey "ecdsa" }}"#, &[]).unwrap());
    assert_eq!(
        r(r#"{{ genPrivateKey "rsa3" }}"#, &[]).unwrap(),
        "Unknown type rsa3"
    );
    let err = r(r#"{{ genPrivateKey "dsa" }}"#, &[]).unwrap_err();
    assert!(err.contains("dsa keys are not supported"), "{err}");
    let err = r(r#"{{ genCAWithKey "x" 1 .k }}"#, &[("k", &ed)]).unwrap_err();
    assert!(err.contains("ed25519 keys are not supported"), "{err}");
    let err = r(r#"{{ genCAWithKey "x" 1 "nope" }}"#, &[]).unwrap_err();
    assert!(err.contains("no PEM data"), "{err}");
}

#[test]
fn gen_private_key_rsa_is_4096_bits() {
    let k = r(r#"{{ genPrivateKey "rsa" }}"#, &[]).unwrap();
    assert!(k.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let (_, p) = x509_parser::pem::parse_x509_pem(k.as_bytes()).unwrap();
    let key = rsa::PrivateKey::from_pkcs1_der(&p.contents).unwrap();
    assert_eq!(key.size() * 8, 4096);
}

#[test]
fn each_call_is_fresh_and_build_custom_cert_round_trips() {
    let t = r#"{{- $a := genSelfSignedCert "a" nil nil 1 -}}{{- $b := genSelfSignedCert "a" nil nil 1 -}}
{{- $c := buildCustomCert ($a.Cert | b64enc) ($a.Key | b64enc) -}}
{{ $a.Cert }}@@{{ $b.Cert }}@@{{ eq $c.Cert $a.Cert }} {{ eq $c.Key $a.Key }}"#;
    let out = r(t, &[]).unwrap();
    let p: Vec<&str> = out.split("@@").collect();
    assert_ne!(p[0], p[1]);
    let s0 = with_cert(p[0], |c| c.raw_serial().to_vec());
    let s1 = with_cert(p[1], |c| c.raw_serial().to_vec());
    assert_ne!(s0, s1, "random serials");
    assert_eq!(p[2], "true true");
    let err = r(r#"{{ buildCustomCert "!!" "" }}"#, &[]).unwrap_err();
    assert!(err.contains("unable to decode base64 certificate"), "{err}");
    let err = r(
        r#"{{ genSelfSignedCert "a" (list "not-an-ip") nil 1 }}"#,
        &[],
    )
    .unwrap_err();
    assert!(err.contains("error parsing ip"), "{err}");
}
