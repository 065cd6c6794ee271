//! sprig's key and certificate generators as ESO v2.9 exposes them: `genPrivateKey`,
//! `genCA`/`genCAWithKey`, `genSelfSignedCert`/`genSelfSignedCertWithKey`,
//! `genSignedCert`/`genSignedCertWithKey` and `buildCustomCert`.
//!
//! Certificates follow Go's `x509.CreateCertificate` with sprig's template: X.509 v3, a random
//! 128-bit serial, the common name as the only subject attribute, validity from now for
//! `daysValid` days, key usage digital signature + key encipherment (+ certificate signing for a
//! CA), extended key usage server + client auth, basic constraints (CA:TRUE for a CA), a subject
//! key identifier on CAs, the CA's key identifier as authority key identifier on signed
//! certificates, and the IP addresses and DNS names given as SANs. Generated keys: RSA 2048
//! (certificates), RSA 4096 (`genPrivateKey "rsa"`), ECDSA P-256, Ed25519. Keys, serials and
//! signatures draw from the operating system's CSPRNG.
//!
//! QUIRK (docs/migrating-from-eso.md): DSA keys (`genPrivateKey "dsa"`, a DSA key passed to a
//! `*WithKey` function) and signing with an Ed25519 key are refused with an error; Go supports
//! them (DSA is deprecated in Go and refused by most TLS stacks).

use std::collections::BTreeMap;
use std::net::IpAddr;

use eso_template::{FuncError, Value};

use super::{
    OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, OID_RSA, bit_string, ec_alg, parse_sec1, pem_blocks,
    pem_encode, pkcs8, read_all, read_tlv, seq, tlv, uint,
};
use crate::template::{bytes_to_text, s, text_to_bytes};

/// Extra fuel for a call that generates an RSA 2048 key (tens to hundreds of milliseconds).
pub(crate) const RSA_2048_COST: u64 = 400_000;
/// Extra fuel for `genPrivateKey` (RSA 4096 takes up to seconds; the other types are cheap but
/// the type is only known at run time).
pub(crate) const RSA_4096_COST: u64 = 2_000_000;
/// Extra fuel for signing with a given key.
pub(crate) const SIGN_COST: u64 = 20_000;

fn e(msg: impl Into<String>) -> FuncError {
    FuncError(msg.into())
}

fn rng() -> getrandom::SysRng {
    getrandom::SysRng
}

fn random_bytes<const N: usize>() -> Result<[u8; N], FuncError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| e("random source unavailable"))?;
    Ok(b)
}

/// A private key the generators can sign with (or at least encode).
enum Key {
    Rsa(Box<rsa::PrivateKey>),
    Ec(p256::SecretKey),
    Ed25519([u8; 32]),
}

const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// DER `DigestInfo` prefix for SHA-256 (PKCS#1 v1.5 signatures).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

impl Key {
    fn generate_rsa(bits: usize) -> Result<Key, FuncError> {
        rsa::PrivateKey::new(&mut rng(), bits)
            .map(|k| Key::Rsa(Box::new(k)))
            .map_err(|_| e("error generating rsa key"))
    }

    /// Go's `pemBlockForKey`.
    fn to_pem(&self) -> Result<String, FuncError> {
        match self {
            Key::Rsa(k) => {
                use rsa::pkcs1::EncodeRsaPrivateKey as _;
                let der = k.to_pkcs1_der().map_err(|_| e("error pem-encoding key"))?;
                Ok(pem_encode("RSA PRIVATE KEY", der.as_bytes()))
            }
            Key::Ec(k) => {
                let d = k.to_bytes();
                let public = k.public_key().to_sec1_bytes();
                let der = seq(&[
                    &uint(&[1]),
                    &tlv(0x04, &d),
                    &tlv(0xa0, &tlv(0x06, OID_P256)),
                    &tlv(0xa1, &bit_string(&public)),
                ]);
                Ok(pem_encode("EC PRIVATE KEY", &der))
            }
            Key::Ed25519(seed) => {
                let der = pkcs8(&seq(&[&tlv(0x06, OID_ED25519)]), &tlv(0x04, seed));
                Ok(pem_encode("PRIVATE KEY", &der))
            }
        }
    }

    /// DER `SubjectPublicKeyInfo`.
    fn spki(&self) -> Result<Vec<u8>, FuncError> {
        match self {
            Key::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                let der = k
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|_| e("error encoding rsa public key"))?;
                Ok(der.as_bytes().to_vec())
            }
            Key::Ec(k) => Ok(seq(&[
                &ec_alg(OID_P256),
                &bit_string(&k.public_key().to_sec1_bytes()),
            ])),
            Key::Ed25519(_) => Err(unsupported("ed25519")),
        }
    }

    /// The BIT STRING content of the public key (what the subject key identifier hashes).
    fn public_bits(&self) -> Result<Vec<u8>, FuncError> {
        let spki = self.spki()?;
        let (outer, _) = read_tlv(&spki).ok_or_else(|| e("public key encoding"))?;
        let items = read_all(outer.content).ok_or_else(|| e("public key encoding"))?;
        let bits = items.get(1).ok_or_else(|| e("public key encoding"))?;
        Ok(bits.content.get(1..).unwrap_or_default().to_vec())
    }

    fn signature_algorithm(&self) -> Result<Vec<u8>, FuncError> {
        match self {
            Key::Rsa(_) => Ok(seq(&[&tlv(0x06, OID_SHA256_RSA), &[0x05, 0x00]])),
            Key::Ec(_) => Ok(seq(&[&tlv(0x06, OID_ECDSA_SHA256)])),
            Key::Ed25519(_) => Err(unsupported("ed25519")),
        }
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, FuncError> {
        use sha2::Digest as _;
        match self {
            Key::Rsa(k) => {
                let mut info = SHA256_DIGEST_INFO.to_vec();
                info.extend_from_slice(&sha2::Sha256::digest(tbs));
                k.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &info)
                    .map_err(|_| e("error creating certificate: rsa signature failed"))
            }
            Key::Ec(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sk = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = sk.sign(tbs);
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Key::Ed25519(_) => Err(unsupported("ed25519")),
        }
    }
}

fn unsupported(kind: &str) -> FuncError {
    e(format!(
        "{kind} keys are not supported for certificates in eso-rs (use an RSA or ECDSA P-256 key)"
    ))
}

/// Go's `parsePrivateKeyPEM` (first PEM block), for the key types eso-rs can sign with.
fn parse_key(text: &str) -> Result<Key, FuncError> {
    let bytes = text_to_bytes(text);
    let block = pem_blocks(&bytes)
        .into_iter()
        .next()
        .ok_or_else(|| e("no PEM data in input"))?;
    let bad = |what: &str| e(format!("parsing {what} private key from PEM"));
    match block.label.as_str() {
        "PRIVATE KEY" => {
            let (outer, _) = read_tlv(&block.der).ok_or_else(|| e("decoding PEM as PKCS#8"))?;
            let items = read_all(outer.content).ok_or_else(|| e("decoding PEM as PKCS#8"))?;
            let alg = items
                .get(1)
                .and_then(|a| read_all(a.content))
                .and_then(|a| a.first().map(|o| o.content.to_vec()))
                .ok_or_else(|| e("decoding PEM as PKCS#8"))?;
            if alg == OID_RSA {
                use rsa::pkcs8::DecodePrivateKey as _;
                rsa::PrivateKey::from_pkcs8_der(&block.der)
                    .map(|k| Key::Rsa(Box::new(k)))
                    .map_err(|_| e("decoding PEM as PKCS#8"))
            } else if alg == OID_EC_PUBLIC_KEY {
                use p256::pkcs8::DecodePrivateKey as _;
                p256::SecretKey::from_pkcs8_der(&block.der)
                    .map(Key::Ec)
                    .map_err(|_| unsupported("EC keys other than P-256"))
            } else if alg == OID_ED25519 {
                Err(unsupported("ed25519"))
            } else {
                Err(e("decoding PEM as PKCS#8: unknown key algorithm"))
            }
        }
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            rsa::PrivateKey::from_pkcs1_der(&block.der)
                .map(|k| Key::Rsa(Box::new(k)))
                .map_err(|_| bad("RSA"))
        }
        "EC PRIVATE KEY" => {
            let (d, curve, _) = parse_sec1(&block.der).ok_or_else(|| bad("EC"))?;
            if curve.is_some_and(|c| c != OID_P256) {
                return Err(unsupported("EC keys other than P-256"));
            }
            p256::SecretKey::from_slice(d)
                .map(Key::Ec)
                .map_err(|_| bad("EC"))
        }
        "DSA PRIVATE KEY" => Err(unsupported("dsa")),
        l if l.ends_with(" PRIVATE KEY") => Err(e(format!("invalid private key type {l}"))),
        l => Err(e(format!("no private key data in PEM block of type {l}"))),
    }
}

/// `genPrivateKey TYPE`: a new key in PEM ("rsa" or "": RSA 4096; "ecdsa": P-256; "ed25519").
pub(crate) fn gen_private_key(a: &[Value]) -> Result<Value, FuncError> {
    want("genPrivateKey", a, 1)?;
    let key = match s(&a[0]).as_str() {
        "" | "rsa" => Key::generate_rsa(4096)?,
        "ecdsa" => Key::Ec(
            p256::SecretKey::from_slice(&ec_scalar()?)
                .map_err(|_| e("failed to generate private key"))?,
        ),
        "ed25519" => Key::Ed25519(random_bytes::<32>()?),
        "dsa" => return Err(unsupported("dsa")),
        other => return Ok(Value::from(format!("Unknown type {other}"))),
    };
    Ok(Value::from(key.to_pem()?))
}

/// A uniformly random valid P-256 scalar (rejection sampling).
fn ec_scalar() -> Result<[u8; 32], FuncError> {
    for _ in 0..64 {
        let b = random_bytes::<32>()?;
        if p256::SecretKey::from_slice(&b).is_ok() {
            return Ok(b);
        }
    }
    Err(e("failed to generate private key"))
}

fn want(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() != n {
        return Err(e(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

/// A Go `int` argument.
fn days(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Int(i) => Ok(*i),
        o => Err(e(format!(
            "wrong type for value; expected int; got {}",
            o.type_name()
        ))),
    }
}

/// A Go `[]interface{}` argument of strings (nil is an empty list).
fn strings(v: &Value, what: &str) -> Result<Vec<String>, FuncError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::List(l) => l
            .iter()
            .map(|x| match x {
                Value::Str(b) => Ok(bytes_to_text(b)),
                _ => Err(e(format!("error parsing {what}: value is not a string"))),
            })
            .collect(),
        o => Err(e(format!(
            "wrong type for value; expected []interface {{}}; got {}",
            o.type_name()
        ))),
    }
}

fn ips(v: &Value) -> Result<Vec<IpAddr>, FuncError> {
    strings(v, "ip")?
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| e("error parsing ip: not an IP address"))
        })
        .collect()
}

/// The `certificate` struct sprig returns: `.Cert` and `.Key`.
fn certificate(cert: String, key: String) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Cert".to_string(), Value::from(text_to_bytes(&cert)));
    m.insert("Key".to_string(), Value::from(text_to_bytes(&key)));
    Value::map(m)
}

/// A `certificate` argument (the map a generator returned).
fn certificate_arg(v: &Value) -> Result<(String, String), FuncError> {
    match v {
        Value::Map(m) => {
            let get = |k: &str| m.entries.get(k).map(s).unwrap_or_default();
            Ok((get("Cert"), get("Key")))
        }
        o => Err(e(format!(
            "wrong type for value; expected sprig.certificate; got {}",
            o.type_name()
        ))),
    }
}

/// Go's ASN.1 time: UTCTime through 2049, GeneralizedTime after.
fn asn1_time(t: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    use chrono::Datelike as _;
    if (1950..2050).contains(&t.year()) {
        tlv(0x17, t.format("%y%m%d%H%M%SZ").to_string().as_bytes())
    } else {
        tlv(0x18, t.format("%Y%m%d%H%M%SZ").to_string().as_bytes())
    }
}

/// Go's `pkix.Name{CommonName: cn}` as DER (PrintableString when it fits, else UTF8String).
fn name(cn: &str) -> Vec<u8> {
    if cn.is_empty() {
        return seq(&[]);
    }
    let printable = cn
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b" '()+,-./:=?*".contains(&c));
    let value = if printable {
        tlv(0x13, cn.as_bytes())
    } else {
        tlv(0x0c, cn.as_bytes())
    };
    let atv = seq(&[&tlv(0x06, &[0x55, 0x04, 0x03]), &value]);
    seq(&[&tlv(0x31, &atv)])
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![tlv(0x06, oid)];
    if critical {
        parts.push(vec![0x01, 0x01, 0xff]);
    }
    parts.push(tlv(0x04, value));
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    seq(&refs)
}

/// The issuing side of a certificate: its subject (DER) and subject key identifier.
struct Issuer<'a> {
    subject: Vec<u8>,
    key_id: Option<Vec<u8>>,
    key: &'a Key,
}

struct Request<'a> {
    cn: &'a str,
    ips: Vec<IpAddr>,
    dns: Vec<String>,
    days: i64,
    ca: bool,
}

/// Go's `x509.CreateCertificate` for sprig's template; the certificate PEM.
fn create(
    req: &Request<'_>,
    subject_key: &Key,
    issuer: Option<&Issuer<'_>>,
) -> Result<String, FuncError> {
    use sha1::Digest as _;
    let serial = random_bytes::<16>()?;
    let now = chrono::Utc::now();
    let now = now - chrono::Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&now)));
    let not_after = now + chrono::Duration::hours(24 * req.days);
    let subject = name(req.cn);
    let ski = if req.ca {
        Some(sha1::Sha1::digest(subject_key.public_bits()?).to_vec())
    } else {
        None
    };
    let (issuer_name, signer, aki) = match issuer {
        Some(i) => (i.subject.clone(), i.key, i.key_id.clone()),
        None => (subject.clone(), subject_key, None),
    };
    let mut exts = Vec::new();
    // keyUsage: digitalSignature | keyEncipherment (| keyCertSign)
    let ku = if req.ca {
        bit_string_unused(&[0xa4], 2)
    } else {
        bit_string_unused(&[0xa0], 5)
    };
    exts.push(extension(&[0x55, 0x1d, 0x0f], true, &ku));
    let eku = seq(&[
        &tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]),
        &tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]),
    ]);
    exts.push(extension(&[0x55, 0x1d, 0x25], false, &eku));
    let bc = if req.ca {
        seq(&[&[0x01, 0x01, 0xff]])
    } else {
        seq(&[])
    };
    exts.push(extension(&[0x55, 0x1d, 0x13], true, &bc));
    if let Some(id) = &ski {
        exts.push(extension(&[0x55, 0x1d, 0x0e], false, &tlv(0x04, id)));
    }
    if let Some(id) = &aki {
        exts.push(extension(
            &[0x55, 0x1d, 0x23],
            false,
            &seq(&[&tlv(0x80, id)]),
        ));
    }
    if !req.dns.is_empty() || !req.ips.is_empty() {
        let mut names = Vec::new();
        for d in &req.dns {
            names.push(tlv(0x82, d.as_bytes()));
        }
        for ip in &req.ips {
            let b = match ip {
                IpAddr::V4(v) => v.octets().to_vec(),
                IpAddr::V6(v) => v.octets().to_vec(),
            };
            names.push(tlv(0x87, &b));
        }
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        exts.push(extension(&[0x55, 0x1d, 0x11], false, &seq(&refs)));
    }
    let ext_refs: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
    let alg = signer.signature_algorithm()?;
    let tbs = seq(&[
        &tlv(0xa0, &uint(&[2])),
        &uint(&serial),
        &alg,
        &issuer_name,
        &seq(&[&asn1_time(now), &asn1_time(not_after)]),
        &subject,
        &subject_key.spki()?,
        &tlv(0xa3, &seq(&ext_refs)),
    ]);
    let sig = signer.sign(&tbs)?;
    let cert = seq(&[&tbs, &alg, &bit_string(&sig)]);
    Ok(pem_encode("CERTIFICATE", &cert))
}

fn bit_string_unused(bytes: &[u8], unused: u8) -> Vec<u8> {
    let mut content = vec![unused];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

fn request<'a>(cn: &'a str, a: &[Value], ca: bool) -> Result<Request<'a>, FuncError> {
    if ca {
        return Ok(Request {
            cn,
            ips: Vec::new(),
            dns: Vec::new(),
            days: days(&a[1])?,
            ca,
        });
    }
    Ok(Request {
        cn,
        ips: ips(&a[1])?,
        dns: strings(&a[2], "alternate dns name")?,
        days: days(&a[3])?,
        ca,
    })
}

fn self_signed(req: &Request<'_>, key: Key) -> Result<Value, FuncError> {
    let cert = create(req, &key, None)?;
    Ok(certificate(cert, key.to_pem()?))
}

/// `genCA CN DAYS`.
pub(crate) fn gen_ca(a: &[Value]) -> Result<Value, FuncError> {
    want("genCA", a, 2)?;
    let cn = s(&a[0]);
    let req = request(&cn, a, true)?;
    self_signed(&req, Key::generate_rsa(2048)?)
}

/// `genCAWithKey CN DAYS KEY`.
pub(crate) fn gen_ca_with_key(a: &[Value]) -> Result<Value, FuncError> {
    want("genCAWithKey", a, 3)?;
    let cn = s(&a[0]);
    let req = request(&cn, a, true)?;
    let key = parse_key(&s(&a[2])).map_err(|m| e(format!("parsing private key: {}", m.0)))?;
    self_signed(&req, key)
}

/// `genSelfSignedCert CN IPS DNS DAYS`.
pub(crate) fn gen_self_signed_cert(a: &[Value]) -> Result<Value, FuncError> {
    want("genSelfSignedCert", a, 4)?;
    let cn = s(&a[0]);
    let req = request(&cn, a, false)?;
    self_signed(&req, Key::generate_rsa(2048)?)
}

/// `genSelfSignedCertWithKey CN IPS DNS DAYS KEY`.
pub(crate) fn gen_self_signed_cert_with_key(a: &[Value]) -> Result<Value, FuncError> {
    want("genSelfSignedCertWithKey", a, 5)?;
    let cn = s(&a[0]);
    let req = request(&cn, a, false)?;
    let key = parse_key(&s(&a[4])).map_err(|m| e(format!("parsing private key: {}", m.0)))?;
    self_signed(&req, key)
}

fn signed(req: &Request<'_>, ca: &Value, key: Key) -> Result<Value, FuncError> {
    let (ca_cert, ca_key) = certificate_arg(ca)?;
    let der = pem_blocks(&text_to_bytes(&ca_cert))
        .into_iter()
        .next()
        .ok_or_else(|| e("unable to decode certificate"))?
        .der;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| e("error parsing certificate: decodedSignerCert.Bytes"))?;
    let subject = parsed.tbs_certificate.subject.as_raw().to_vec();
    let key_id = parsed
        .extensions()
        .iter()
        .find_map(|x| match x.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        });
    let signer =
        parse_key(&ca_key).map_err(|m| e(format!("error parsing private key: {}", m.0)))?;
    let issuer = Issuer {
        subject,
        key_id,
        key: &signer,
    };
    let cert = create(req, &key, Some(&issuer))?;
    Ok(certificate(cert, key.to_pem()?))
}

/// `genSignedCert CN IPS DNS DAYS CA`.
pub(crate) fn gen_signed_cert(a: &[Value]) -> Result<Value, FuncError> {
    want("genSignedCert", a, 5)?;
    let cn = s(&a[0]);
    let req = request(&cn, a, false)?;
    signed(&req, &a[4], Key::generate_rsa(2048)?)
}

/// `genSignedCertWithKey CN IPS DNS DAYS CA KEY`.
pub(crate) fn gen_signed_cert_with_key(a: &[Value]) -> Result<Value, FuncError> {
    want("genSignedCertWithKey", a, 6)?;
    let cn = s(&a[0]);
    let req = request(&cn, a, false)?;
    let key = parse_key(&s(&a[5])).map_err(|m| e(format!("parsing private key: {}", m.0)))?;
    signed(&req, &a[4], key)
}

/// `buildCustomCert B64CERT B64KEY`: the certificate struct from base64 PEM inputs, checked.
pub(crate) fn build_custom_cert(a: &[Value]) -> Result<Value, FuncError> {
    use base64::Engine as _;
    want("buildCustomCert", a, 2)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    // Go's decoder skips line breaks.
    let clean = |v: &Value| s(v).replace(['\r', '\n'], "");
    let cert = b64
        .decode(clean(&a[0]).as_bytes())
        .map_err(|_| e("unable to decode base64 certificate"))?;
    let key = b64
        .decode(clean(&a[1]).as_bytes())
        .map_err(|_| e("unable to decode base64 private key"))?;
    let block = pem_blocks(&cert)
        .into_iter()
        .next()
        .ok_or_else(|| e("unable to decode certificate"))?;
    x509_parser::parse_x509_certificate(&block.der).map_err(|_| {
        e("error parsing certificate: decodedCert.Bytes: x509: malformed certificate")
    })?;
    let key_text = bytes_to_text(&key);
    match parse_key(&key_text) {
        Ok(_) => {}
        // Go only parses the key here: types eso-rs cannot sign with are still accepted.
        Err(m) if m.0.contains("not supported") => {}
        Err(m) => return Err(e(format!("error parsing private key: {}", m.0))),
    }
    Ok(certificate(bytes_to_text(&cert), key_text))
}
