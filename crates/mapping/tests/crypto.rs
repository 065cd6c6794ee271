//! ESO's certificate/key template functions (issue #3): PKCS#12 in and out, chains, SANs, JWK,
//! rsaDecrypt. Expected outputs under `fixtures/expected/` were produced once by ESO v2.9's own
//! Go functions on the fixtures that `fixtures/gen.sh` generates with openssl (see
//! `fixtures/README.md`); PKCS#12 outputs are checked by round trip through our parser and
//! `openssl pkcs12`.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use eso_mapping::template::{bytes_to_text, render, text_to_bytes};
use eso_mapping::{Fetched, MappingInput, RemoteSecret, Request, TemplateSources, map, plan};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}
fn expected(name: &str) -> String {
    String::from_utf8(fixture(&format!("expected/{name}"))).unwrap()
}

/// The data every test renders against: fixtures by file name, binary ones included.
fn data() -> BTreeMap<String, String> {
    [
        "leaf-nopass.p12",
        "leaf-pass1234.p12",
        "leaf-disjunct.p12",
        "leaf-ec.p12",
        "leaf-legacy.p12",
        "leaf.crt",
        "leaf.key",
        "leaf.pkcs8.key",
        "leaf-ec.crt",
        "leaf-ec.key",
        "chain.pem",
        "cas.pem",
        "disjunct-cas.pem",
        "root-ca.crt",
        "oaep-sha1.bin",
        "oaep-sha256.bin",
        "oaep-sha512.bin",
        "jwk-rsa.json",
        "jwk-rsa-public.json",
        "jwk-ec-p256.json",
        "jwk-ec-p256-public.json",
        "jwk-ec-p384.json",
        "jwk-ec-p384-public.json",
        "jwk-ed25519.json",
        "jwk-ed25519-public.json",
    ]
    .into_iter()
    .map(|n| (n.replace(['-', '.'], "_"), bytes_to_text(&fixture(n))))
    .chain([
        (
            "garbage".to_string(),
            bytes_to_text(b"\x30\x82\xff\xffnot-a-pfx\x00\x01"),
        ),
        ("empty".to_string(), String::new()),
        ("junk_text".to_string(), "hello, not PEM".to_string()),
    ])
    .collect()
}

fn r(tpl: &str) -> Result<String, String> {
    render(tpl, &data())
}

/// Base64 lines of every private key fixture: none may ever appear in an error.
fn secret_markers() -> Vec<String> {
    let mut out = vec!["S3NT1NEL".to_string()];
    for n in [
        "leaf.key",
        "leaf.pkcs8.key",
        "leaf-ec.key",
        "intermediate-ca.key",
    ] {
        let text = String::from_utf8(fixture(n)).unwrap();
        out.extend(
            text.lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 20)
                .map(|l| l[..20].to_string()),
        );
    }
    for n in ["jwk-rsa.json", "jwk-ec-p256.json", "jwk-ed25519.json"] {
        let v: serde_json::Value = serde_json::from_slice(&fixture(n)).unwrap();
        out.push(v["d"].as_str().unwrap()[..16].to_string());
    }
    out.push("hello from rsaDecrypt".to_string());
    out
}

/// `tpl` must fail, naming `func`, without echoing any secret material.
fn assert_err(tpl: &str, func: &str) {
    let e = match r(tpl) {
        Ok(v) => panic!("{tpl} should fail, rendered {} bytes", v.len()),
        Err(e) => e,
    };
    assert!(e.contains(func), "{tpl}: error does not name {func}: {e}");
    for m in secret_markers() {
        assert!(!e.contains(&m), "{tpl}: error leaks secret material: {e}");
    }
}

fn ok(tpl: &str) -> String {
    r(tpl).unwrap_or_else(|e| panic!("{tpl}: {e}"))
}

#[test]
fn pkcs12key_matches_eso() {
    for (tpl, want) in [
        (
            "{{ .leaf_nopass_p12 | pkcs12key }}",
            "pkcs12key-leaf-nopass.pem",
        ),
        (
            r#"{{ .leaf_pass1234_p12 | pkcs12keyPass "1234" }}"#,
            "pkcs12key-leaf-pass1234.pem",
        ),
        (
            "{{ .leaf_disjunct_p12 | pkcs12key }}",
            "pkcs12key-leaf-disjunct.pem",
        ),
        ("{{ .leaf_ec_p12 | pkcs12key }}", "pkcs12key-leaf-ec.pem"),
        (
            r#"{{ pkcs12keyPass "legacy" .leaf_legacy_p12 }}"#,
            "pkcs12key-leaf-legacy.pem",
        ),
        (
            r#"{{ .leaf_nopass_p12 | pkcs12keyPass "" }}"#,
            "pkcs12key-leaf-nopass.pem",
        ),
    ] {
        assert_eq!(ok(tpl), expected(want), "{tpl}");
    }
    for (tpl, func) in [
        (
            r#"{{ .leaf_pass1234_p12 | pkcs12keyPass "S3NT1NEL" }}"#,
            "pkcs12keyPass",
        ),
        ("{{ .leaf_pass1234_p12 | pkcs12key }}", "pkcs12key"),
        ("{{ .garbage | pkcs12key }}", "pkcs12key"),
        ("{{ .empty | pkcs12key }}", "pkcs12key"),
        ("{{ .leaf_key | pkcs12key }}", "pkcs12key"),
        (r#"{{ .garbage | pkcs12keyPass "x" }}"#, "pkcs12keyPass"),
    ] {
        assert_err(tpl, func);
    }
}

#[test]
fn pkcs12cert_matches_eso_ordering() {
    for (tpl, want) in [
        // Bags are root-before-intermediate: ESO reorders leaf → intermediate → root.
        (
            "{{ .leaf_nopass_p12 | pkcs12cert }}",
            "pkcs12cert-leaf-nopass.pem",
        ),
        (
            r#"{{ .leaf_pass1234_p12 | pkcs12certPass "1234" }}"#,
            "pkcs12cert-leaf-pass1234.pem",
        ),
        // An unrelated root breaks ordering: bag order, leaf first.
        (
            "{{ .leaf_disjunct_p12 | pkcs12cert }}",
            "pkcs12cert-leaf-disjunct.pem",
        ),
        ("{{ .leaf_ec_p12 | pkcs12cert }}", "pkcs12cert-leaf-ec.pem"),
        (
            r#"{{ .leaf_legacy_p12 | pkcs12certPass "legacy" }}"#,
            "pkcs12cert-leaf-legacy.pem",
        ),
    ] {
        assert_eq!(ok(tpl), expected(want), "{tpl}");
    }
    for (tpl, func) in [
        (
            r#"{{ .leaf_pass1234_p12 | pkcs12certPass "S3NT1NEL" }}"#,
            "pkcs12certPass",
        ),
        ("{{ .leaf_legacy_p12 | pkcs12cert }}", "pkcs12cert"),
        ("{{ .garbage | pkcs12cert }}", "pkcs12cert"),
        ("{{ .empty | pkcs12cert }}", "pkcs12cert"),
        ("{{ .chain_pem | pkcs12cert }}", "pkcs12cert"),
    ] {
        assert_err(tpl, func);
    }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_else(|e| panic!("output is not base64: {e}"))
}

/// Run `openssl pkcs12` on `p12`; `None` when openssl is not installed (outside CI).
fn openssl_pkcs12(p12: &[u8], pass: &str, extra: &[&str]) -> Option<Result<String, String>> {
    let dir = std::env::temp_dir().join(format!(
        "eso-mapping-crypto-{}-{}",
        std::process::id(),
        p12.len() + pass.len() + extra.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.p12", sha(p12)));
    std::fs::write(&file, p12).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("pkcs12")
        .arg("-in")
        .arg(&file)
        .arg("-passin")
        .arg(format!("pass:{pass}"))
        .args(extra)
        .output();
    let _ = std::fs::remove_file(&file);
    match out {
        // CI (`ESO_REQUIRE_TESTENV=1`) always has openssl (the testenv needs it): never skip there.
        Err(e) if std::env::var_os("ESO_REQUIRE_TESTENV").is_some() => {
            panic!("openssl is required under ESO_REQUIRE_TESTENV: {e}")
        }
        Err(_) => None,
        Ok(o) if o.status.success() => Some(Ok(String::from_utf8_lossy(&o.stdout).into_owned())),
        Ok(o) => Some(Err(String::from_utf8_lossy(&o.stderr).into_owned())),
    }
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

fn count_certs(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn pem_to_pkcs12_round_trips() {
    let leaf_pem = String::from_utf8(fixture("leaf.crt")).unwrap();
    let rsa_key = expected("pkcs12key-leaf-nopass.pem");
    let ec_key = expected("pkcs12key-leaf-ec.pem");
    // (template, password, certificates expected, key expected)
    for (tpl, pass, certs, key) in [
        ("{{ pemToPkcs12 .leaf_crt .leaf_key }}", "", 1, &rsa_key),
        (
            "{{ pemToPkcs12 .chain_pem .leaf_pkcs8_key }}",
            "",
            1,
            &rsa_key,
        ),
        (
            r#"{{ pemToPkcs12Pass .leaf_crt .leaf_key "p@ss" }}"#,
            "p@ss",
            1,
            &rsa_key,
        ),
        (
            "{{ fullPemToPkcs12 .chain_pem .leaf_key }}",
            "",
            3,
            &rsa_key,
        ),
        (
            r#"{{ fullPemToPkcs12Pass .chain_pem .leaf_pkcs8_key "p@ss" }}"#,
            "p@ss",
            3,
            &rsa_key,
        ),
        (
            "{{ pemToPkcs12 .leaf_ec_crt .leaf_ec_key }}",
            "",
            1,
            &ec_key,
        ),
    ] {
        let p12 = b64(&ok(tpl));
        // Our own parser.
        let mut d = BTreeMap::from([("p".to_string(), bytes_to_text(&p12))]);
        d.insert("pass".into(), pass.into());
        let got_key = render("{{ pkcs12keyPass .pass .p }}", &d).unwrap();
        assert_eq!(&got_key, key, "{tpl}");
        let got_certs = render("{{ pkcs12certPass .pass .p }}", &d).unwrap();
        assert_eq!(count_certs(&got_certs), certs, "{tpl}");
        assert!(
            got_certs.starts_with(leaf_pem.trim_end()) || tpl.contains("leaf_ec"),
            "{tpl}"
        );
        if certs == 3 {
            assert_eq!(got_certs, expected("pkcs12cert-leaf-nopass.pem"), "{tpl}");
        }
        assert!(render(r#"{{ pkcs12keyPass "S3NT1NEL" .p }}"#, &d).is_err());
        // openssl.
        if let Some(out) = openssl_pkcs12(&p12, pass, &["-nodes"]) {
            let out = out.unwrap_or_else(|e| panic!("{tpl}: openssl rejected the output: {e}"));
            assert_eq!(count_certs(&out), certs, "{tpl}: {out}");
            assert!(out.contains("-----BEGIN PRIVATE KEY-----"), "{tpl}");
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
            let got: String = out.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(got.contains(&body), "{tpl}: openssl sees another key");
        }
        if !pass.is_empty()
            && let Some(out) = openssl_pkcs12(&p12, "wrong", &["-nodes"])
        {
            assert!(out.is_err(), "{tpl}: openssl accepted a wrong password");
        }
    }
    for (tpl, func) in [
        ("{{ pemToPkcs12 .junk_text .leaf_key }}", "pemToPkcs12"),
        ("{{ pemToPkcs12 .leaf_crt .junk_text }}", "pemToPkcs12"),
        ("{{ pemToPkcs12 .leaf_crt .leaf_crt }}", "pemToPkcs12"),
        ("{{ pemToPkcs12 .leaf_key .leaf_key }}", "pemToPkcs12"),
        ("{{ pemToPkcs12 .garbage .garbage }}", "pemToPkcs12"),
        (
            r#"{{ pemToPkcs12Pass .empty .leaf_key "S3NT1NEL" }}"#,
            "pemToPkcs12Pass",
        ),
        ("{{ fullPemToPkcs12 .chain_pem .empty }}", "fullPemToPkcs12"),
        (
            r#"{{ fullPemToPkcs12Pass .garbage .leaf_key "S3NT1NEL" }}"#,
            "fullPemToPkcs12Pass",
        ),
    ] {
        assert_err(tpl, func);
    }
}

/// Salts and IVs derive from the inputs: the same inputs give the same file (no Secret rewrite on
/// every refresh, unlike ESO); any change to the key, a certificate or the password changes it.
#[test]
fn pkcs12_encoders_are_deterministic() {
    for tpl in [
        "{{ fullPemToPkcs12 .chain_pem .leaf_key }}",
        r#"{{ pemToPkcs12Pass .leaf_crt .leaf_key "p" }}"#,
        "{{ pemTruststoreToPKCS12 .cas_pem }}",
    ] {
        assert_eq!(ok(tpl), ok(tpl), "{tpl}");
    }
    let outputs = [
        ok("{{ fullPemToPkcs12 .chain_pem .leaf_key }}"),
        ok("{{ fullPemToPkcs12 .leaf_crt .leaf_key }}"),
        ok(r#"{{ fullPemToPkcs12Pass .chain_pem .leaf_key "p" }}"#),
        ok(r#"{{ fullPemToPkcs12Pass .chain_pem .leaf_key "q" }}"#),
        ok("{{ pemTruststoreToPKCS12 .cas_pem }}"),
        ok(r#"{{ pemTruststoreToPKCS12Pass .cas_pem "p" }}"#),
    ];
    for (i, a) in outputs.iter().enumerate() {
        for b in &outputs[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn pem_truststore_to_pkcs12_round_trips() {
    for (tpl, pass, certs) in [
        ("{{ pemTruststoreToPKCS12 .cas_pem }}", "", 2),
        (
            r#"{{ pemTruststoreToPKCS12Pass .disjunct_cas_pem "changeit" }}"#,
            "changeit",
            3,
        ),
        ("{{ pemTruststoreToPKCS12 .root_ca_crt }}", "", 1),
    ] {
        let p12 = b64(&ok(tpl));
        // Our PKCS#12 reader sees trusted certificate entries and no key.
        let ks = p12_keystore::KeyStore::from_pkcs12(
            &p12,
            pass,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .unwrap();
        assert_eq!(ks.entries_len(), certs, "{tpl}");
        assert!(ks.private_key_chain().is_none(), "{tpl}");
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&p12, pass).unwrap();
        assert!(archive.certs.iter().all(|c| c.trusted), "{tpl}");
        assert!(
            p12_keystore::Pkcs12Archive::from_pkcs12(&p12, "wrong").is_err() || pass.is_empty()
        );
        if let Some(out) = openssl_pkcs12(&p12, pass, &["-nokeys"]) {
            let out = out.unwrap_or_else(|e| panic!("{tpl}: openssl rejected the output: {e}"));
            assert_eq!(count_certs(&out), certs, "{tpl}");
        }
    }
    for (tpl, func) in [
        (
            "{{ pemTruststoreToPKCS12 .leaf_key }}",
            "pemTruststoreToPKCS12",
        ),
        (
            "{{ pemTruststoreToPKCS12 .garbage }}",
            "pemTruststoreToPKCS12",
        ),
        (
            r#"{{ pemTruststoreToPKCS12Pass .leaf_key "S3NT1NEL" }}"#,
            "pemTruststoreToPKCS12Pass",
        ),
    ] {
        assert_err(tpl, func);
    }
}

#[test]
fn filter_cert_chain_matches_eso() {
    for t in ["leaf", "intermediate", "root"] {
        for src in ["chain", "cas"] {
            let tpl = format!(r#"{{{{ .{src}_pem | filterCertChain "{t}" }}}}"#);
            assert_eq!(
                ok(&tpl),
                expected(&format!("filterCertChain-{t}-{src}.pem")),
                "{tpl}"
            );
        }
    }
    assert_eq!(ok(r#"{{ .chain_pem | filterCertChain "other" }}"#), "");
    // A self-signed root alone is not a leaf, but is a root.
    assert_eq!(ok(r#"{{ .root_ca_crt | filterCertChain "leaf" }}"#), "");
    assert_eq!(
        ok(r#"{{ .root_ca_crt | filterCertChain "root" }}"#),
        String::from_utf8(fixture("root-ca.crt")).unwrap()
    );
    for tpl in [
        r#"{{ .disjunct_cas_pem | filterCertChain "leaf" }}"#,
        r#"{{ .garbage | filterCertChain "leaf" }}"#,
        r#"{{ .empty | filterCertChain "root" }}"#,
        r#"{{ .leaf_key | filterCertChain "leaf" }}"#,
    ] {
        assert_err(tpl, "filterCertChain");
    }
}

#[test]
fn cert_sans_matches_eso() {
    let want: Vec<String> = expected("certSANs-leaf.txt")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        ok(r#"{{ .leaf_crt | certSANs | join "," }}"#),
        want.join(",")
    );
    assert_eq!(
        ok(r#"{{ range .chain_pem | certSANs }}[{{ . }}]{{ end }}"#),
        want.iter().map(|s| format!("[{s}]")).collect::<String>()
    );
    assert_eq!(ok(r#"{{ .root_ca_crt | certSANs | join "," }}"#), "");
    for tpl in [
        "{{ .garbage | certSANs }}",
        "{{ .junk_text | certSANs }}",
        "{{ .leaf_key | certSANs }}",
    ] {
        assert_err(tpl, "certSANs");
    }
}

#[test]
fn jwk_to_pem_matches_eso() {
    for k in ["rsa", "ec_p256", "ec_p384", "ed25519"] {
        let f = k.replace('_', "-");
        assert_eq!(
            ok(&format!("{{{{ .jwk_{k}_json | jwkPrivateKeyPem }}}}")),
            expected(&format!("jwkPrivateKeyPem-{f}.pem")),
            "{k}"
        );
        let public = expected(&format!("jwkPublicKeyPem-{f}-public.pem"));
        assert_eq!(
            ok(&format!("{{{{ .jwk_{k}_public_json | jwkPublicKeyPem }}}}")),
            public,
            "{k}"
        );
        // ESO fails on a private JWK here; we return its public half (documented difference).
        assert_eq!(
            ok(&format!("{{{{ .jwk_{k}_json | jwkPublicKeyPem }}}}")),
            public,
            "{k}"
        );
        assert_err(
            &format!("{{{{ .jwk_{k}_public_json | jwkPrivateKeyPem }}}}"),
            "jwkPrivateKeyPem",
        );
    }
    for (tpl, func) in [
        ("{{ .garbage | jwkPublicKeyPem }}", "jwkPublicKeyPem"),
        ("{{ .empty | jwkPrivateKeyPem }}", "jwkPrivateKeyPem"),
        (
            r#"{{ `{"kty":"oct","k":"AAAA"}` | jwkPrivateKeyPem }}"#,
            "jwkPrivateKeyPem",
        ),
        (
            r#"{{ `{"kty":"OKP","crv":"X25519","x":"AA"}` | jwkPublicKeyPem }}"#,
            "jwkPublicKeyPem",
        ),
        (
            r#"{{ `{"kty":"OKP","crv":"Ed25519","x":"AA"}` | jwkPublicKeyPem }}"#,
            "jwkPublicKeyPem",
        ),
        (
            r#"{{ `{"kty":"EC","crv":"P-256","x":"!!","y":"AA"}` | jwkPublicKeyPem }}"#,
            "jwkPublicKeyPem",
        ),
        (
            r#"{{ `{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}` | jwkPublicKeyPem }}"#,
            "jwkPublicKeyPem",
        ),
        (
            r#"{{ `{"kty":"RSA","e":"AQAB"}` | jwkPublicKeyPem }}"#,
            "jwkPublicKeyPem",
        ),
    ] {
        assert_err(tpl, func);
    }
    // An RSA private JWK without CRT parameters: an error naming what is missing, not the key.
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("jwk-rsa.json")).unwrap();
    for f in ["p", "q", "dp", "dq", "qi"] {
        v.as_object_mut().unwrap().remove(f);
    }
    let d = BTreeMap::from([("j".to_string(), v.to_string())]);
    let e = render("{{ .j | jwkPrivateKeyPem }}", &d).unwrap_err();
    assert!(e.contains("jwkPrivateKeyPem") && e.contains("\"p\""), "{e}");
    for m in secret_markers() {
        assert!(!e.contains(&m), "{e}");
    }
}

#[test]
fn rsa_decrypt_matches_eso() {
    for h in ["SHA1", "SHA256", "SHA512"] {
        let tpl = format!(
            r#"{{{{ rsaDecrypt "RSA-OAEP" "{h}" .oaep_{}_bin .leaf_key }}}}"#,
            h.to_lowercase()
        );
        assert_eq!(ok(&tpl), expected(&format!("rsaDecrypt-{h}.txt")), "{tpl}");
    }
    // ESO treats "None" and unknown hashes as SHA-256, and a PKCS#8 key works too.
    assert_eq!(
        ok(r#"{{ rsaDecrypt "RSA-OAEP" "None" .oaep_sha256_bin .leaf_pkcs8_key }}"#),
        expected("rsaDecrypt-SHA256.txt")
    );
    // The ciphertext usually arrives base64-encoded.
    let mut d = data();
    d.insert(
        "ct".into(),
        base64::engine::general_purpose::STANDARD.encode(fixture("oaep-sha1.bin")),
    );
    assert_eq!(
        render(
            r#"{{ rsaDecrypt "RSA-OAEP" "SHA1" (.ct | b64dec) .leaf_key }}"#,
            &d
        )
        .unwrap(),
        expected("rsaDecrypt-SHA1.txt")
    );
    assert_eq!(
        ok(r#"{{ rsaDecrypt "None" "SHA1" "plain" .leaf_key }}"#),
        "plain"
    );
    for tpl in [
        r#"{{ rsaDecrypt "RSA-OAEP" "SHA1" .oaep_sha256_bin .leaf_key }}"#,
        r#"{{ rsaDecrypt "RSA-OAEP" "SHA256" .oaep_sha256_bin .leaf_ec_key }}"#,
        r#"{{ rsaDecrypt "RSA-OAEP" "SHA256" .garbage .leaf_key }}"#,
        r#"{{ rsaDecrypt "RSA-OAEP" "SHA256" .oaep_sha256_bin .garbage }}"#,
        r#"{{ rsaDecrypt "RSA-PKCS1" "SHA256" .oaep_sha256_bin .leaf_key }}"#,
        r#"{{ rsaDecrypt "RSA-OAEP" .oaep_sha256_bin .leaf_key }}"#,
    ] {
        assert_err(tpl, "rsaDecrypt");
    }
}

#[test]
fn binary_values_round_trip_through_templates() {
    let p12 = fixture("leaf-nopass.p12");
    assert_eq!(text_to_bytes(&bytes_to_text(&p12)), p12);
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(text_to_bytes(&bytes_to_text(&all)), all);
    assert_eq!(bytes_to_text("héllo ✓".as_bytes()), "héllo ✓");
}

/// The way a user's ExternalSecret uses them: binary and base64 PKCS#12 from the provider.
#[test]
fn external_secret_templates() {
    let spec: eso_api::ExternalSecretSpec = serde_saphyr::from_str(
        r#"
secretStoreRef: {name: aws, kind: ClusterSecretStore}
target:
  name: tls
  template:
    type: kubernetes.io/tls
    data:
      tls.crt: "{{ .p12 | pkcs12cert }}"
      tls.key: "{{ .p12 | pkcs12key }}"
      ca.crt: '{{ .p12b64 | b64dec | pkcs12certPass "1234" | filterCertChain "root" }}'
      sans: '{{ .p12 | pkcs12cert | certSANs | join "," }}'
      keystore.p12: '{{ fullPemToPkcs12Pass (.p12 | pkcs12cert) (.p12 | pkcs12key) "changeit" | b64dec }}'
      copy.p12: "{{ .p12 }}"
data:
  - secretKey: p12
    remoteRef: {key: tls/p12}
  - secretKey: p12b64
    remoteRef: {key: tls/p12-b64}
"#,
    )
    .unwrap();
    let mut fetched = Fetched::default();
    let p12 = fixture("leaf-nopass.p12");
    for req in plan(&spec).unwrap() {
        if let Request::Get { store, remote } = req {
            let v = match remote.key.as_str() {
                "tls/p12" => RemoteSecret::binary(p12.clone()),
                _ => RemoteSecret::string(
                    base64::engine::general_purpose::STANDARD.encode(fixture("leaf-pass1234.p12")),
                ),
            };
            fetched.gets.insert((store, remote), Some(v));
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
    let out = map(&input).unwrap();
    let s = |k: &str| String::from_utf8(out.data[k].clone()).unwrap();
    assert_eq!(s("tls.crt"), expected("pkcs12cert-leaf-nopass.pem"));
    assert_eq!(s("tls.key"), expected("pkcs12key-leaf-nopass.pem"));
    assert_eq!(
        s("ca.crt"),
        String::from_utf8(fixture("root-ca.crt")).unwrap()
    );
    assert_eq!(
        s("sans"),
        expected("certSANs-leaf.txt").trim_end().replace('\n', ",")
    );
    assert_eq!(
        out.data["copy.p12"], p12,
        "binary values pass through byte for byte"
    );
    let ks =
        p12_keystore::Pkcs12Archive::from_pkcs12(&out.data["keystore.p12"], "changeit").unwrap();
    assert_eq!(ks.certs.len(), 3);
    assert_eq!(out.type_.as_deref(), Some("kubernetes.io/tls"));

    // A failing function surfaces as a template error naming the field, without the data.
    let bad: eso_api::ExternalSecretSpec = serde_saphyr::from_str(
        r#"
secretStoreRef: {name: aws, kind: ClusterSecretStore}
target:
  template:
    data:
      tls.key: '{{ .p12 | pkcs12keyPass "S3NT1NEL" }}'
data:
  - secretKey: p12
    remoteRef: {key: tls/p12}
"#,
    )
    .unwrap();
    let mut fetched = Fetched::default();
    for req in plan(&bad).unwrap() {
        if let Request::Get { store, remote } = req {
            fetched
                .gets
                .insert((store, remote), Some(RemoteSecret::binary(p12.clone())));
        }
    }
    let input = MappingInput {
        spec: &bad,
        fetched: &fetched,
        ..input
    };
    let e = map(&input).unwrap_err().to_string();
    assert!(e.contains("tls.key") && e.contains("pkcs12keyPass"), "{e}");
    assert!(!e.contains("S3NT1NEL"), "{e}");
}

/// Writes our PKCS#12 outputs to `$ESO_CRYPTO_DUMP` so they can be read back by ESO's Go
/// functions (see fixtures/README.md). Run with `--ignored`.
#[test]
#[ignore = "manual cross-check against ESO's Go code"]
fn dump_pkcs12_outputs() {
    let Ok(dir) = std::env::var("ESO_CRYPTO_DUMP") else {
        return;
    };
    for (name, tpl) in [
        ("pemToPkcs12.p12", "{{ pemToPkcs12 .leaf_crt .leaf_key }}"),
        (
            "fullPemToPkcs12.p12",
            "{{ fullPemToPkcs12 .chain_pem .leaf_key }}",
        ),
        (
            "fullPemToPkcs12Pass-1234.p12",
            r#"{{ fullPemToPkcs12Pass .chain_pem .leaf_key "1234" }}"#,
        ),
        (
            "fullPemToPkcs12-ec.p12",
            "{{ fullPemToPkcs12 (print .leaf_ec_crt .cas_pem) .leaf_ec_key }}",
        ),
        (
            "pemTruststoreToPKCS12.p12",
            "{{ pemTruststoreToPKCS12 .cas_pem }}",
        ),
        (
            "pemTruststoreToPKCS12Pass-changeit.p12",
            r#"{{ pemTruststoreToPKCS12Pass .disjunct_cas_pem "changeit" }}"#,
        ),
    ] {
        std::fs::write(PathBuf::from(&dir).join(name), b64(&ok(tpl))).unwrap();
    }
}
