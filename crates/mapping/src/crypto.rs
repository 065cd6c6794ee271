//! ESO's certificate and key helpers for templates: PKCS#12 in and out, certificate chains,
//! SANs, JWK to PEM, and RSA-OAEP decryption.
//!
//! Semantics follow ESO v2.9 (`runtime/template/v2`): PKCS#12 extraction takes the first
//! certificate bag as the leaf and the others as CA certificates in bag order, then orders the
//! chain leaf → intermediates → root by key identifiers when that yields one chain; encoding
//! produces base64 text of a PKCS#12 laid out like go-pkcs12's `Modern` encoder: PBES2
//! (PBKDF2-HMAC-SHA256, AES-256-CBC) and an HMAC-SHA256 MAC, 2048 iterations each, with salts and
//! IVs derived from the inputs (ESO's are random) so unchanged inputs render unchanged bytes. Binary inputs (a PKCS#12 file, a ciphertext) arrive as
//! the template engine's binary-safe strings (see [`crate::template::bytes_to_text`]).
//!
//! Errors name the function and the failing step, never the key material or input bytes.

use base64::Engine as _;
use eso_template::{FuncError, Value};
use p12_keystore::Pkcs12Archive;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::template::{arg, bytes_to_text, s, text_to_bytes};

/// Iterations used for PKCS#12 key derivation and MAC, as go-pkcs12's `Modern` encoder.
const PKCS12_ITERATIONS: u32 = 2048;

/// Why a crypto template function failed. Messages never contain key material or input bytes.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The PKCS#12 data could not be decoded or decrypted.
    #[error(
        "{func}: unable to decode PKCS#12 ({reason}); check the password and that the input is the raw (not base64) PKCS#12 file"
    )]
    Pkcs12Decode {
        /// Template function.
        func: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A PEM input had no usable block.
    #[error("{func}: {what}: no PEM block found")]
    NoPem {
        /// Template function.
        func: &'static str,
        /// Which argument.
        what: &'static str,
    },
    /// A certificate could not be parsed.
    #[error("{func}: {what}: failed to parse X.509 certificate")]
    BadCertificate {
        /// Template function.
        func: &'static str,
        /// Which argument.
        what: &'static str,
    },
    /// A private key could not be parsed.
    #[error("{func}: unable to parse private key (expected PKCS#1 RSA, PKCS#8 or SEC1 EC in PEM)")]
    BadPrivateKey {
        /// Template function.
        func: &'static str,
    },
    /// The PKCS#12 output could not be built.
    #[error("{func}: unable to encode PKCS#12: {reason}")]
    Pkcs12Encode {
        /// Template function.
        func: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The certificate chain could not be ordered.
    #[error("{func}: {reason}")]
    Chain {
        /// Template function.
        func: &'static str,
        /// What went wrong.
        reason: &'static str,
    },
    /// A JWK could not be used.
    #[error("{func}: invalid JWK: {reason}")]
    Jwk {
        /// Template function.
        func: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// RSA decryption failed.
    #[error("rsaDecrypt: {0}")]
    Rsa(String),
}

impl From<CryptoError> for FuncError {
    fn from(e: CryptoError) -> Self {
        FuncError(e.to_string())
    }
}

type R<T> = Result<T, CryptoError>;

pub(crate) mod certgen;

// ---------------------------------------------------------------------------------------------
// PEM

/// One PEM block's decoded bytes (ESO never checks the type label of these inputs).
struct Block {
    label: String,
    der: Vec<u8>,
}

/// Decode every well-formed PEM block in `input`, skipping junk around and between them (as
/// repeated Go `pem.Decode` calls do). Malformed blocks are skipped.
fn pem_blocks(input: &[u8]) -> Vec<Block> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(start) = find(rest, BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = find(after, b"-----") else {
            break;
        };
        let label = String::from_utf8_lossy(&after[..label_end]).into_owned();
        let body_and_more = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = find(body_and_more, end_marker.as_bytes()) else {
            rest = body_and_more;
            continue;
        };
        let body = &body_and_more[..end];
        rest = &body_and_more[end + end_marker.len()..];
        if label.contains('\n') {
            continue;
        }
        // Drop RFC 1421 headers ("Key: value" lines) and whitespace.
        let text = String::from_utf8_lossy(body);
        let b64: String = text
            .lines()
            .filter(|l| !l.contains(':'))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(Block { label, der });
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `pem.Encode`: 64-column base64 lines, trailing newline.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// ---------------------------------------------------------------------------------------------
// Minimal DER reading and writing (only what key normalisation and JWK encoding need).

/// One DER element: tag byte and content.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

/// Read one element from the front of `input`; returns it and the remaining bytes.
fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((
        Tlv {
            tag,
            content: &rest[..len],
            raw: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// All elements of a constructed value's content.
fn read_all(mut input: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (t, rest) = read_tlv(input)?;
        out.push(t);
        input = rest;
    }
    Some(out)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// DER INTEGER from unsigned big-endian bytes.
fn uint(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    tlv(0x02, &content)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Field size in bytes of a supported named curve.
fn curve_len(oid: &[u8]) -> Option<usize> {
    match oid {
        o if o == OID_P256 => Some(32),
        o if o == OID_P384 => Some(48),
        o if o == OID_P521 => Some(66),
        _ => None,
    }
}

fn rsa_alg() -> Vec<u8> {
    seq(&[&tlv(0x06, OID_RSA), &[0x05, 0x00]])
}

fn ec_alg(curve: &[u8]) -> Vec<u8> {
    seq(&[&tlv(0x06, OID_EC_PUBLIC_KEY), &tlv(0x06, curve)])
}

/// PKCS#8 `PrivateKeyInfo` (version 0, no attributes).
fn pkcs8(alg: &[u8], private_key: &[u8]) -> Vec<u8> {
    seq(&[&uint(&[0]), alg, &tlv(0x04, private_key)])
}

/// SEC1 `ECPrivateKey` as Go writes it inside PKCS#8: no curve parameters, public key kept.
fn sec1_inner(d: &[u8], public: Option<&[u8]>) -> Vec<u8> {
    let mut parts = vec![uint(&[1]), tlv(0x04, d)];
    if let Some(p) = public {
        parts.push(tlv(0xa1, &bit_string(p)));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    seq(&refs)
}

/// A SEC1 `ECPrivateKey`: private scalar, curve OID if present, public point if present.
type Sec1<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

/// Parse a SEC1 `ECPrivateKey`.
fn parse_sec1(der: &[u8]) -> Option<Sec1<'_>> {
    let (outer, _) = read_tlv(der)?;
    if outer.tag != 0x30 {
        return None;
    }
    let items = read_all(outer.content)?;
    let version = items.first()?;
    if version.tag != 0x02 || version.content != [1] {
        return None;
    }
    let d = items.get(1).filter(|t| t.tag == 0x04)?.content;
    let mut curve = None;
    let mut public = None;
    for t in items.iter().skip(2) {
        match t.tag {
            0xa0 => curve = read_tlv(t.content).map(|(o, _)| o.content),
            0xa1 => {
                public = read_tlv(t.content)
                    .filter(|(b, _)| b.tag == 0x03)
                    .and_then(|(b, _)| b.content.split_first().map(|(_, p)| p))
            }
            _ => {}
        }
    }
    Some((d, curve, public))
}

/// Re-encode a PKCS#8 key the way Go's `x509.MarshalPKCS8PrivateKey` would after parsing it:
/// attributes dropped, EC keys without inner curve parameters and with a fixed-width scalar.
fn normalise_pkcs8(der: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = read_tlv(der)?;
    if outer.tag != 0x30 {
        return None;
    }
    let items = read_all(outer.content)?;
    let alg = items.get(1).filter(|t| t.tag == 0x30)?;
    let key = items.get(2).filter(|t| t.tag == 0x04)?;
    let alg_items = read_all(alg.content)?;
    let alg_oid = alg_items.first().filter(|t| t.tag == 0x06)?.content;
    if alg_oid == OID_EC_PUBLIC_KEY {
        let curve = alg_items.get(1).filter(|t| t.tag == 0x06)?.content;
        let n = curve_len(curve)?;
        let (d, _, public) = parse_sec1(key.content)?;
        let d = fixed_width(d, n)?;
        return Some(pkcs8(&ec_alg(curve), &sec1_inner(&d, public)));
    }
    Some(pkcs8(alg.raw, key.content))
}

/// Left-pad (or strip leading zeros from) a big-endian number to exactly `n` bytes.
fn fixed_width(be: &[u8], n: usize) -> Option<Vec<u8>> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.len() > n {
        return None;
    }
    let mut out = vec![0; n - trimmed.len()];
    out.extend(trimmed);
    Some(out)
}

/// Go's `parsePrivateKey` as used by ESO: PKCS#1 RSA, then PKCS#8, then SEC1 EC; the result is
/// PKCS#8 DER.
fn private_key_pkcs8(func: &'static str, pem_text: &[u8]) -> R<Vec<u8>> {
    let block = pem_blocks(pem_text)
        .into_iter()
        .next()
        .ok_or(CryptoError::NoPem {
            func,
            what: "private key",
        })?;
    let der = block.der;
    if is_pkcs1_rsa(&der) {
        return Ok(pkcs8(&rsa_alg(), &der));
    }
    if let Some(k) = normalise_pkcs8(&der) {
        return Ok(k);
    }
    if let Some((d, Some(curve), public)) = parse_sec1(&der)
        && let Some(n) = curve_len(curve)
        && let Some(d) = fixed_width(d, n)
    {
        return Ok(pkcs8(&ec_alg(curve), &sec1_inner(&d, public)));
    }
    Err(CryptoError::BadPrivateKey { func })
}

/// A PKCS#1 `RSAPrivateKey`: SEQUENCE of nine INTEGERs, version 0.
fn is_pkcs1_rsa(der: &[u8]) -> bool {
    let Some((outer, rest)) = read_tlv(der) else {
        return false;
    };
    if outer.tag != 0x30 || !rest.is_empty() {
        return false;
    }
    read_all(outer.content).is_some_and(|items| {
        items.len() >= 9
            && items.iter().all(|t| t.tag == 0x02)
            && items.first().is_some_and(|v| v.content == [0])
    })
}

// ---------------------------------------------------------------------------------------------
// Certificates and chains

/// A parsed certificate with the fields ESO's chain logic looks at.
struct Cert {
    der: Vec<u8>,
    /// Authority key identifier (`None` when absent, like Go's nil).
    aki: Option<Vec<u8>>,
    /// Subject key identifier.
    ski: Option<Vec<u8>>,
}

impl Cert {
    fn parse(der: Vec<u8>) -> Option<Self> {
        let (_, c) = x509_parser::parse_x509_certificate(&der).ok()?;
        let mut aki = None;
        let mut ski = None;
        for ext in c.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
                _ => {}
            }
        }
        drop(c);
        Some(Self { der, aki, ski })
    }

    /// Go's `bytes.Equal` on possibly-nil slices: nil equals empty.
    fn aki_is(&self, other: &Option<Vec<u8>>) -> bool {
        self.aki.as_deref().unwrap_or_default() == other.as_deref().unwrap_or_default()
    }

    fn is_root(&self) -> bool {
        self.aki.is_none() || self.aki_is(&self.ski)
    }
}

/// Every PEM block in `input`, parsed as a certificate (any block that is not one is an error,
/// as in ESO).
fn parse_certs(func: &'static str, what: &'static str, input: &[u8]) -> R<Vec<Cert>> {
    pem_blocks(input)
        .into_iter()
        .map(|b| Cert::parse(b.der).ok_or(CryptoError::BadCertificate { func, what }))
        .collect()
}

/// ESO's chain ordering: link each certificate to the first other one whose subject key id equals
/// its authority key id; exactly one certificate must be no one's parent (the leaf); walk up.
fn order_chain(func: &'static str, certs: Vec<Cert>) -> R<Vec<Cert>> {
    let n = certs.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i != j && certs[i].aki_is(&certs[j].ski) {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let mut leaf = None;
    for (i, p) in is_parent.iter().enumerate() {
        if !p {
            if leaf.is_some() {
                return Err(CryptoError::Chain {
                    func,
                    reason: "found multiple leaf or disjunct certificates",
                });
            }
            leaf = Some(i);
        }
    }
    let mut cur = leaf.ok_or(CryptoError::Chain {
        func,
        reason: "no leaf certificate found",
    })?;
    let mut order = vec![cur];
    while let Some(p) = parent[cur] {
        if order.len() >= n {
            return Err(CryptoError::Chain {
                func,
                reason: "constructing chain resulted in cycle",
            });
        }
        order.push(p);
        cur = p;
    }
    let mut slots: Vec<Option<Cert>> = certs.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn certs_pem<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> String {
    certs
        .into_iter()
        .map(|d| pem_encode("CERTIFICATE", d))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PKCS#12 decoding

/// Go-pkcs12's `DecodeChain`: exactly one key, the first certificate bag is the leaf.
struct Decoded {
    key: Vec<u8>,
    leaf: Vec<u8>,
    cas: Vec<Vec<u8>>,
}

fn decode_p12(func: &'static str, pass: &str, input: &[u8]) -> R<Decoded> {
    let fail = |reason: &str| CryptoError::Pkcs12Decode {
        func,
        reason: reason.to_string(),
    };
    let archive = std::panic::catch_unwind(|| Pkcs12Archive::from_pkcs12(input, pass))
        .map_err(|_| fail("malformed input"))?
        .map_err(|e| fail(&p12_reason(&e)))?;
    let mut keys = archive.keys.into_iter();
    let key = keys.next().ok_or_else(|| fail("private key missing"))?;
    if keys.next().is_some() {
        return Err(fail("expected exactly one key bag"));
    }
    let mut certs = archive.certs.into_iter().map(|c| c.cert.as_der().to_vec());
    let leaf = certs.next().ok_or_else(|| fail("certificate missing"))?;
    Ok(Decoded {
        key: key.key.as_der().to_vec(),
        leaf,
        cas: certs.collect(),
    })
}

/// A short, data-free reason for a p12-keystore error.
fn p12_reason(e: &p12_keystore::error::Error) -> String {
    use p12_keystore::error::Error as E;
    match e {
        E::MacError(_) => "MAC verification failed: wrong password or corrupted data",
        E::InvalidVersion => "unsupported PKCS#12 version",
        E::UnsupportedContentType => "unsupported content type",
        E::UnsupportedEncryptionScheme => "unsupported encryption scheme",
        E::UnsupportedMacAlgorithm => "unsupported MAC algorithm",
        E::InvalidParameters => "invalid encryption parameters",
        E::DerError(_) => "not a DER-encoded PKCS#12 file",
        E::X509Error(_) | E::UnsupportedCertificateType => "invalid certificate bag",
        E::InvalidPrivateKey => "invalid private key bag",
        _ => "decryption failed: wrong password or corrupted data",
    }
    .to_string()
}

fn pkcs12_key(func: &'static str, pass: &str, input: &str) -> R<String> {
    let d = decode_p12(func, pass, &text_to_bytes(input))?;
    let key = normalise_pkcs8(&d.key).ok_or(CryptoError::BadPrivateKey { func })?;
    Ok(pem_encode("PRIVATE KEY", &key))
}

fn pkcs12_cert(func: &'static str, pass: &str, input: &str) -> R<String> {
    let d = decode_p12(func, pass, &text_to_bytes(input))?;
    let mut all = vec![d.leaf];
    all.extend(d.cas);
    let parsed: Option<Vec<Cert>> = all.iter().cloned().map(Cert::parse).collect();
    if let Some(parsed) = parsed
        && let Ok(ordered) = order_chain(func, parsed)
    {
        return Ok(certs_pem(ordered.iter().map(|c| c.der.as_slice())));
    }
    // ESO falls back to bag order (leaf first) when the chain cannot be ordered.
    Ok(certs_pem(all.iter().map(Vec::as_slice)))
}

// ---------------------------------------------------------------------------------------------
// PKCS#12 encoding

/// OIDs (DER content bytes) used when writing PKCS#12.
mod oid {
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    pub const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    pub const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    pub const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    pub const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    pub const X509_CERTIFICATE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
    pub const FRIENDLY_NAME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14];
    pub const LOCAL_KEY_ID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x15];
    /// Oracle's Java trust-store attribute (2.16.840.1.113894.746875.1.1).
    pub const JAVA_TRUSTED: &[u8] = &[
        0x60, 0x86, 0x48, 0x01, 0x86, 0xf9, 0x66, 0xad, 0xca, 0x7b, 0x01, 0x01,
    ];
    pub const ANY_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
}

/// DER `SET OF`: elements sorted by their encoding.
fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    tlv(0x31, &parts.concat())
}

fn attribute(oid_bytes: &[u8], value: Vec<u8>) -> Vec<u8> {
    seq(&[&tlv(0x06, oid_bytes), &set_of(vec![value])])
}

/// `friendlyName` as a BMPString (UTF-16BE).
fn friendly_name(name: &str) -> Vec<u8> {
    let bmp: Vec<u8> = name.encode_utf16().flat_map(u16::to_be_bytes).collect();
    attribute(oid::FRIENDLY_NAME, tlv(0x1e, &bmp))
}

fn safe_bag(bag_oid: &[u8], value: &[u8], attributes: Vec<Vec<u8>>) -> Vec<u8> {
    let explicit = tlv(0xa0, value);
    if attributes.is_empty() {
        seq(&[&tlv(0x06, bag_oid), &explicit])
    } else {
        seq(&[&tlv(0x06, bag_oid), &explicit, &set_of(attributes)])
    }
}

fn cert_bag(der: &[u8], attributes: Vec<Vec<u8>>) -> Vec<u8> {
    let value = seq(&[
        &tlv(0x06, oid::X509_CERTIFICATE),
        &tlv(0xa0, &tlv(0x04, der)),
    ]);
    safe_bag(oid::CERT_BAG, &value, attributes)
}

/// Salts and IVs for one PKCS#12 file, derived from everything that goes into it (key,
/// certificates, password). Identical inputs give an identical file, so a template using the
/// encoders renders the same bytes on every refresh and the Secret is not rewritten each time;
/// the only thing this reveals is that two files hold the same contents under the same password.
struct Salts {
    seed: [u8; 32],
}

impl Salts {
    fn new(pass: &str, parts: &[&[u8]]) -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"eso-rs pkcs12 salts v1");
        for p in std::iter::once(pass.as_bytes()).chain(parts.iter().copied()) {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self {
            seed: h.finalize().into(),
        }
    }

    fn get<const N: usize>(&self, label: &str) -> [u8; N] {
        use hmac::{KeyInit as _, Mac as _};
        let mut out = [0u8; N];
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.seed) {
            mac.update(label.as_bytes());
            let d = mac.finalize().into_bytes();
            for (o, b) in out.iter_mut().zip(d.iter()) {
                *o = *b;
            }
        }
        out
    }
}

/// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) encryption: (AlgorithmIdentifier DER, ciphertext).
fn pbes2_encrypt(
    func: &'static str,
    salts: &Salts,
    label: &str,
    pass: &str,
    plaintext: &[u8],
) -> R<(Vec<u8>, Vec<u8>)> {
    use pkcs5::der::Encode as _;
    let fail = || CryptoError::Pkcs12Encode {
        func,
        reason: "encryption failed".to_string(),
    };
    let salt: [u8; 16] = salts.get(&format!("{label} salt"));
    let iv: [u8; 16] = salts.get(&format!("{label} iv"));
    let params =
        pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PKCS12_ITERATIONS, &salt, iv)
            .map_err(|_| fail())?;
    let ciphertext = params
        .encrypt(pass.as_bytes(), plaintext)
        .map_err(|_| fail())?;
    let alg = seq(&[
        &tlv(0x06, oid::PBES2),
        &params.to_der().map_err(|_| fail())?,
    ]);
    Ok((alg, ciphertext))
}

/// A PKCS#12 file laid out as go-pkcs12's `Modern` encoder does: one encrypted safe with the
/// certificate bags, then (if there is a key) one plain safe with the shrouded key bag; an
/// HMAC-SHA256 MAC. Returned as base64, like ESO.
fn encode_pfx(
    func: &'static str,
    salts: &Salts,
    cert_bags: &[Vec<u8>],
    key_bag: Option<Vec<u8>>,
    pass: &str,
) -> R<String> {
    use hmac::{KeyInit as _, Mac as _};
    let refs: Vec<&[u8]> = cert_bags.iter().map(Vec::as_slice).collect();
    let (alg, ciphertext) = pbes2_encrypt(func, salts, "certs", pass, &seq(&refs))?;
    let encrypted_content_info = seq(&[&tlv(0x06, oid::DATA), &alg, &tlv(0x80, &ciphertext)]);
    let encrypted_data = seq(&[&uint(&[0]), &encrypted_content_info]);
    let mut safes = vec![seq(&[
        &tlv(0x06, oid::ENCRYPTED_DATA),
        &tlv(0xa0, &encrypted_data),
    ])];
    if let Some(bag) = key_bag {
        safes.push(seq(&[
            &tlv(0x06, oid::DATA),
            &tlv(0xa0, &tlv(0x04, &seq(&[&bag]))),
        ]));
    }
    let refs: Vec<&[u8]> = safes.iter().map(Vec::as_slice).collect();
    let auth_safe = seq(&refs);

    let mac_salt: [u8; 8] = salts.get("mac salt");
    let mac_key = pkcs12::kdf::derive_key_utf8::<sha2::Sha256>(
        pass,
        &mac_salt,
        pkcs12::kdf::Pkcs12KeyType::Mac,
        PKCS12_ITERATIONS as i32,
        32,
    )
    .map_err(|_| CryptoError::Pkcs12Encode {
        func,
        reason: "the password cannot be encoded as a BMPString".to_string(),
    })?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&mac_key).map_err(|_| {
        CryptoError::Pkcs12Encode {
            func,
            reason: "MAC failed".to_string(),
        }
    })?;
    mac.update(&auth_safe);
    let digest = mac.finalize().into_bytes();
    let mac_data = seq(&[
        &seq(&[
            &seq(&[&tlv(0x06, oid::SHA256), &[0x05, 0x00]]),
            &tlv(0x04, &digest),
        ]),
        &tlv(0x04, &mac_salt),
        &uint(&PKCS12_ITERATIONS.to_be_bytes()),
    ]);
    let pfx = seq(&[
        &uint(&[3]),
        &seq(&[&tlv(0x06, oid::DATA), &tlv(0xa0, &tlv(0x04, &auth_safe))]),
        &mac_data,
    ]);
    Ok(base64::engine::general_purpose::STANDARD.encode(pfx))
}

/// Go's `pkix.Name.String()` for the common attributes (RFC 2253 order: last RDN first), used as
/// a truststore entry's friendly name (what Java shows as its alias).
fn subject_string(der: &[u8]) -> String {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(der) else {
        return String::new();
    };
    let mut rdns: Vec<String> = Vec::new();
    for rdn in c.subject().iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let key = match atv.attr_type().to_id_string().as_str() {
                    "2.5.4.3" => "CN".to_string(),
                    "2.5.4.6" => "C".to_string(),
                    "2.5.4.7" => "L".to_string(),
                    "2.5.4.8" => "ST".to_string(),
                    "2.5.4.9" => "STREET".to_string(),
                    "2.5.4.10" => "O".to_string(),
                    "2.5.4.11" => "OU".to_string(),
                    "2.5.4.5" => "SERIALNUMBER".to_string(),
                    "2.5.4.17" => "POSTALCODE".to_string(),
                    other => other.to_string(),
                };
                let value = atv.as_str().map(str::to_string).unwrap_or_default();
                format!("{key}={}", escape_dn(&value))
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

/// RFC 2253 escaping of an attribute value.
fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// ESO's `certsKeyToPkcs12`: key + leaf + CA certificates → base64 PKCS#12.
fn to_pkcs12(
    func: &'static str,
    leaf: Vec<u8>,
    cas: Vec<Vec<u8>>,
    key_pem: &str,
    pass: &str,
) -> R<String> {
    use sha1::Digest as _;
    let key = private_key_pkcs8(func, key_pem.as_bytes())?;
    let mut parts: Vec<&[u8]> = vec![&key, &leaf];
    parts.extend(cas.iter().map(Vec::as_slice));
    let salts = Salts::new(pass, &parts);
    let local_key_id = attribute(oid::LOCAL_KEY_ID, tlv(0x04, &sha1::Sha1::digest(&leaf)));
    let mut bags = vec![cert_bag(&leaf, vec![local_key_id.clone()])];
    bags.extend(cas.iter().map(|c| cert_bag(c, vec![])));
    let (alg, ciphertext) = pbes2_encrypt(func, &salts, "key", pass, &key)?;
    let key_bag = safe_bag(
        oid::SHROUDED_KEY_BAG,
        &seq(&[&alg, &tlv(0x04, &ciphertext)]),
        vec![local_key_id],
    );
    encode_pfx(func, &salts, &bags, Some(key_bag), pass)
}

/// First certificate of `cert` (ESO's `pemToPkcs12`), or all of them (`fullPemToPkcs12`).
fn pem_to_pkcs12(func: &'static str, full: bool, cert: &str, key: &str, pass: &str) -> R<String> {
    let mut blocks = pem_blocks(cert.as_bytes()).into_iter();
    let leaf = blocks.next().ok_or(CryptoError::NoPem {
        func,
        what: "certificate",
    })?;
    let mut certs = vec![leaf.der];
    if full {
        certs.extend(blocks.map(|b| b.der));
    }
    for der in &certs {
        if Cert::parse(der.clone()).is_none() {
            return Err(CryptoError::BadCertificate {
                func,
                what: "certificate",
            });
        }
    }
    let mut certs = certs.into_iter();
    let leaf = certs.next().unwrap_or_default();
    to_pkcs12(func, leaf, certs.collect(), key, pass)
}

/// ESO's `pemTruststoreToPKCS12`: trusted-certificate bags only (Java truststore style), each
/// with its subject as friendly name.
fn truststore_to_pkcs12(func: &'static str, cert: &str, pass: &str) -> R<String> {
    let certs = parse_certs(func, "certificate", cert.as_bytes())?;
    if certs.is_empty() && !cert.trim().is_empty() {
        return Err(CryptoError::NoPem {
            func,
            what: "certificate",
        });
    }
    let parts: Vec<&[u8]> = certs.iter().map(|c| c.der.as_slice()).collect();
    let salts = Salts::new(pass, &parts);
    let bags: Vec<Vec<u8>> = certs
        .iter()
        .map(|c| {
            cert_bag(
                &c.der,
                vec![
                    attribute(oid::JAVA_TRUSTED, tlv(0x06, oid::ANY_EXTENDED_KEY_USAGE)),
                    friendly_name(&subject_string(&c.der)),
                ],
            )
        })
        .collect();
    encode_pfx(func, &salts, &bags, None, pass)
}

// ---------------------------------------------------------------------------------------------
// JWK

fn jwk_field(func: &'static str, jwk: &serde_json::Value, name: &str) -> R<Option<Vec<u8>>> {
    match jwk.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(v)) => {
            let v = v.trim_end_matches('=');
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v)
                .map(Some)
                .map_err(|_| CryptoError::Jwk {
                    func,
                    reason: format!("member {name:?} is not base64url"),
                })
        }
        Some(_) => Err(CryptoError::Jwk {
            func,
            reason: format!("member {name:?} must be a string"),
        }),
    }
}

fn jwk_required(func: &'static str, jwk: &serde_json::Value, name: &str) -> R<Vec<u8>> {
    jwk_field(func, jwk, name)?.ok_or_else(|| CryptoError::Jwk {
        func,
        reason: format!("missing member {name:?}"),
    })
}

/// A parsed JWK: SubjectPublicKeyInfo DER and, for private keys, PKCS#8 DER.
struct JwkKeys {
    spki: Vec<u8>,
    pkcs8: Option<Vec<u8>>,
}

fn parse_jwk(func: &'static str, text: &str) -> R<JwkKeys> {
    let jwk: serde_json::Value = serde_json::from_str(text).map_err(|_| CryptoError::Jwk {
        func,
        reason: "not a JSON object".to_string(),
    })?;
    let kty = jwk.get("kty").and_then(|v| v.as_str()).unwrap_or_default();
    match kty {
        "RSA" => {
            let n = jwk_required(func, &jwk, "n")?;
            let e = jwk_required(func, &jwk, "e")?;
            let spki = seq(&[&rsa_alg(), &bit_string(&seq(&[&uint(&n), &uint(&e)]))]);
            let pkcs8 = match jwk_field(func, &jwk, "d")? {
                None => None,
                Some(d) => {
                    let mut parts = vec![uint(&[0]), uint(&n), uint(&e), uint(&d)];
                    for f in ["p", "q", "dp", "dq", "qi"] {
                        let v = jwk_field(func, &jwk, f)?.ok_or_else(|| CryptoError::Jwk {
                            func,
                            reason: format!(
                                "RSA private key without member {f:?} (the CRT parameters p, q, dp, dq, qi are required)"
                            ),
                        })?;
                        parts.push(uint(&v));
                    }
                    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                    Some(pkcs8(&rsa_alg(), &seq(&refs)))
                }
            };
            Ok(JwkKeys { spki, pkcs8 })
        }
        "EC" => {
            let crv = jwk.get("crv").and_then(|v| v.as_str()).unwrap_or_default();
            let curve = match crv {
                "P-256" => OID_P256,
                "P-384" => OID_P384,
                "P-521" => OID_P521,
                other => {
                    return Err(CryptoError::Jwk {
                        func,
                        reason: format!("unsupported EC curve {other:?}"),
                    });
                }
            };
            let size = curve_len(curve).unwrap_or_default();
            let coord = |name: &str| -> R<Vec<u8>> {
                fixed_width(&jwk_required(func, &jwk, name)?, size).ok_or_else(|| {
                    CryptoError::Jwk {
                        func,
                        reason: format!("member {name:?} is too long for curve {crv}"),
                    }
                })
            };
            let mut point = vec![0x04];
            point.extend(coord("x")?);
            point.extend(coord("y")?);
            let spki = seq(&[&ec_alg(curve), &bit_string(&point)]);
            let pkcs8 = match jwk.get("d") {
                None | Some(serde_json::Value::Null) => None,
                Some(_) => Some(pkcs8(
                    &ec_alg(curve),
                    &sec1_inner(&coord("d")?, Some(&point)),
                )),
            };
            Ok(JwkKeys { spki, pkcs8 })
        }
        "OKP" => {
            let crv = jwk.get("crv").and_then(|v| v.as_str()).unwrap_or_default();
            if crv != "Ed25519" {
                return Err(CryptoError::Jwk {
                    func,
                    reason: format!("unsupported OKP curve {crv:?} (Ed25519 is supported)"),
                });
            }
            let x = jwk_required(func, &jwk, "x")?;
            if x.len() != 32 {
                return Err(CryptoError::Jwk {
                    func,
                    reason: "member \"x\" must be 32 bytes for Ed25519".to_string(),
                });
            }
            let alg = seq(&[&tlv(0x06, OID_ED25519)]);
            let spki = seq(&[&alg, &bit_string(&x)]);
            let pkcs8 = match jwk_field(func, &jwk, "d")? {
                None => None,
                Some(d) if d.len() == 32 => Some(pkcs8(&alg, &tlv(0x04, &d))),
                Some(_) => {
                    return Err(CryptoError::Jwk {
                        func,
                        reason: "member \"d\" must be 32 bytes for Ed25519".to_string(),
                    });
                }
            };
            Ok(JwkKeys { spki, pkcs8 })
        }
        other => Err(CryptoError::Jwk {
            func,
            reason: format!(
                "unsupported key type {other:?} (RSA, EC and OKP Ed25519 are supported)"
            ),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// RSA

fn rsa_decrypt(scheme: &str, hash: &str, input: &str, key_pem: &str) -> R<String> {
    use rsa::pkcs8::DecodePrivateKey as _;
    match scheme {
        "None" => Ok(input.to_string()),
        "RSA-OAEP" => {
            let pkcs8 = private_key_pkcs8("rsaDecrypt", key_pem.as_bytes())?;
            let key = rsa::PrivateKey::from_pkcs8_der(&pkcs8)
                .map_err(|_| CryptoError::Rsa("could not parse RSA private key".to_string()))?;
            let ct = text_to_bytes(input);
            let out = match hash {
                "SHA1" => key.decrypt(rsa::Oaep::<sha1::Sha1>::new(), &ct),
                "SHA512" => key.decrypt(rsa::Oaep::<sha2::Sha512>::new(), &ct),
                // ESO: "None", "SHA256" and anything else use SHA-256.
                _ => key.decrypt(rsa::Oaep::<sha2::Sha256>::new(), &ct),
            }
            .map_err(|_| {
                CryptoError::Rsa(
                    "error decrypting data with RSA (wrong key, hash or corrupted input)"
                        .to_string(),
                )
            })?;
            Ok(bytes_to_text(&out))
        }
        other => Err(CryptoError::Rsa(format!(
            "decryption scheme {other} is not supported"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Template function adapters (argument order as in ESO's Go signatures).

fn text(v: String) -> Result<Value, FuncError> {
    Ok(Value::from(text_to_bytes(&v)))
}

/// `pkcs12key INPUT`: the private key of a PKCS#12 file as PKCS#8 PEM.
pub(crate) fn pkcs12key(a: &[Value]) -> Result<Value, FuncError> {
    text(pkcs12_key("pkcs12key", "", &s(arg("pkcs12key", a, 0, 1)?))?)
}
/// `pkcs12keyPass PASSWORD INPUT`.
pub(crate) fn pkcs12key_pass(a: &[Value]) -> Result<Value, FuncError> {
    let f = "pkcs12keyPass";
    text(pkcs12_key(f, &s(arg(f, a, 0, 2)?), &s(arg(f, a, 1, 2)?))?)
}
/// `pkcs12cert INPUT`: the certificate chain of a PKCS#12 file as PEM, leaf first.
pub(crate) fn pkcs12cert(a: &[Value]) -> Result<Value, FuncError> {
    text(pkcs12_cert(
        "pkcs12cert",
        "",
        &s(arg("pkcs12cert", a, 0, 1)?),
    )?)
}
/// `pkcs12certPass PASSWORD INPUT`.
pub(crate) fn pkcs12cert_pass(a: &[Value]) -> Result<Value, FuncError> {
    let f = "pkcs12certPass";
    text(pkcs12_cert(f, &s(arg(f, a, 0, 2)?), &s(arg(f, a, 1, 2)?))?)
}
/// `pemToPkcs12 CERT KEY`: base64 PKCS#12 of the first certificate and the key.
pub(crate) fn pem_to_pkcs12_fn(a: &[Value]) -> Result<Value, FuncError> {
    let f = "pemToPkcs12";
    text(pem_to_pkcs12(
        f,
        false,
        &s(arg(f, a, 0, 2)?),
        &s(arg(f, a, 1, 2)?),
        "",
    )?)
}
/// `pemToPkcs12Pass CERT KEY PASSWORD`.
pub(crate) fn pem_to_pkcs12_pass(a: &[Value]) -> Result<Value, FuncError> {
    let f = "pemToPkcs12Pass";
    text(pem_to_pkcs12(
        f,
        false,
        &s(arg(f, a, 0, 3)?),
        &s(arg(f, a, 1, 3)?),
        &s(arg(f, a, 2, 3)?),
    )?)
}
/// `fullPemToPkcs12 CERTS KEY`: base64 PKCS#12 of every certificate and the key.
pub(crate) fn full_pem_to_pkcs12(a: &[Value]) -> Result<Value, FuncError> {
    let f = "fullPemToPkcs12";
    text(pem_to_pkcs12(
        f,
        true,
        &s(arg(f, a, 0, 2)?),
        &s(arg(f, a, 1, 2)?),
        "",
    )?)
}
/// `fullPemToPkcs12Pass CERTS KEY PASSWORD`.
pub(crate) fn full_pem_to_pkcs12_pass(a: &[Value]) -> Result<Value, FuncError> {
    let f = "fullPemToPkcs12Pass";
    text(pem_to_pkcs12(
        f,
        true,
        &s(arg(f, a, 0, 3)?),
        &s(arg(f, a, 1, 3)?),
        &s(arg(f, a, 2, 3)?),
    )?)
}
/// `pemTruststoreToPKCS12 CERTS`: base64 PKCS#12 truststore.
pub(crate) fn pem_truststore_to_pkcs12(a: &[Value]) -> Result<Value, FuncError> {
    let f = "pemTruststoreToPKCS12";
    text(truststore_to_pkcs12(f, &s(arg(f, a, 0, 1)?), "")?)
}
/// `pemTruststoreToPKCS12Pass CERTS PASSWORD`.
pub(crate) fn pem_truststore_to_pkcs12_pass(a: &[Value]) -> Result<Value, FuncError> {
    let f = "pemTruststoreToPKCS12Pass";
    text(truststore_to_pkcs12(
        f,
        &s(arg(f, a, 0, 2)?),
        &s(arg(f, a, 1, 2)?),
    )?)
}

/// `filterCertChain leaf|intermediate|root CHAIN`.
pub(crate) fn filter_cert_chain(a: &[Value]) -> Result<Value, FuncError> {
    let f = "filterCertChain";
    let kind = s(arg(f, a, 0, 2)?);
    let input = s(arg(f, a, 1, 2)?);
    let ordered = order_chain(f, parse_certs(f, "chain", input.as_bytes())?)?;
    let out = match kind.as_str() {
        "leaf" => ordered
            .first()
            .filter(|c| c.aki.is_some() && !c.aki_is(&c.ski))
            .map(|c| pem_encode("CERTIFICATE", &c.der))
            .unwrap_or_default(),
        "intermediate" => certs_pem(
            ordered
                .iter()
                .skip(1)
                .take_while(|c| !c.is_root())
                .map(|c| c.der.as_slice()),
        ),
        "root" => ordered
            .last()
            .filter(|c| c.is_root())
            .map(|c| pem_encode("CERTIFICATE", &c.der))
            .unwrap_or_default(),
        _ => String::new(),
    };
    text(out)
}

/// `certSANs CERT`: the first certificate's SANs as a list: DNS names, IPs, emails, URIs.
pub(crate) fn cert_sans(a: &[Value]) -> Result<Value, FuncError> {
    let f = "certSANs";
    let input = s(arg(f, a, 0, 1)?);
    let block = pem_blocks(input.as_bytes())
        .into_iter()
        .next()
        .ok_or(CryptoError::NoPem {
            func: f,
            what: "certificate",
        })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.der).map_err(|_| {
        CryptoError::BadCertificate {
            func: f,
            what: "certificate",
        }
    })?;
    let (mut dns, mut ips, mut emails, mut uris) = (vec![], vec![], vec![], vec![]);
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push(n.to_string()),
                    GeneralName::RFC822Name(n) => emails.push(n.to_string()),
                    GeneralName::URI(n) => uris.push(n.to_string()),
                    GeneralName::IPAddress(b) => ips.push(ip_string(b)),
                    _ => {}
                }
            }
        }
    }
    Ok(Value::list(
        dns.into_iter()
            .chain(ips)
            .chain(emails)
            .chain(uris)
            .map(Value::from)
            .collect(),
    ))
}

/// Go's `net.IP.String` for a 4- or 16-byte address.
fn ip_string(b: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return std::net::Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(b) {
        let ip = std::net::Ipv6Addr::from(v6);
        return match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => ip.to_string(),
        };
    }
    format!("?{}", hex::encode(b))
}

/// `jwkPublicKeyPem JWK`: the public key as SubjectPublicKeyInfo PEM. Unlike ESO (which
/// fails), a private JWK yields its public half.
pub(crate) fn jwk_public_key_pem(a: &[Value]) -> Result<Value, FuncError> {
    let f = "jwkPublicKeyPem";
    let k = parse_jwk(f, &s(arg(f, a, 0, 1)?))?;
    text(pem_encode("PUBLIC KEY", &k.spki))
}

/// `jwkPrivateKeyPem JWK`: the private key as PKCS#8 PEM.
pub(crate) fn jwk_private_key_pem(a: &[Value]) -> Result<Value, FuncError> {
    let f = "jwkPrivateKeyPem";
    let k = parse_jwk(f, &s(arg(f, a, 0, 1)?))?;
    let der = k.pkcs8.ok_or_else(|| CryptoError::Jwk {
        func: f,
        reason: "the JWK is a public key (no \"d\" member)".to_string(),
    })?;
    text(pem_encode("PRIVATE KEY", &der))
}

/// `rsaDecrypt SCHEME HASH CIPHERTEXT PRIVATE_KEY_PEM`: scheme `RSA-OAEP` (or `None`, which
/// returns the input), hash `SHA1`/`SHA256`/`SHA512` (anything else means SHA-256).
pub(crate) fn rsa_decrypt_fn(a: &[Value]) -> Result<Value, FuncError> {
    let f = "rsaDecrypt";
    text(rsa_decrypt(
        &s(arg(f, a, 0, 4)?),
        &s(arg(f, a, 1, 4)?),
        &s(arg(f, a, 2, 4)?),
        &s(arg(f, a, 3, 4)?),
    )?)
}
