//! ESO-compatible hashes and names, so Secrets that ESO manages today are taken over in place.
//!
//! ESO hashes the Go `fmt` rendering (`%+v`) of values with SHA3-224. Go prints maps with sorted
//! keys as `map[k:v k2:v2]` and byte slices as decimal lists (`[104 105]`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha3::{Digest, Sha3_224};

/// Kubernetes' limit on the total size of a Secret's data.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Prefix of the field manager ESO uses for Secret writes.
pub const FIELD_MANAGER_PREFIX: &str = "externalsecrets.external-secrets.io";

fn sha3_hex(input: &str) -> String {
    hex::encode(Sha3_224::digest(input.as_bytes()))
}

fn go_bytes(out: &mut String, v: &[u8]) {
    out.push('[');
    for (i, b) in v.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b}");
    }
    out.push(']');
}

fn go_string_map(out: &mut String, m: Option<&BTreeMap<String, String>>) {
    out.push_str("map[");
    if let Some(m) = m {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(k);
            out.push(':');
            out.push_str(v);
        }
    }
    out.push(']');
}

/// The `reconcile.external-secrets.io/data-hash` annotation: SHA3-224 of Go's `%+v` of the
/// Secret's `map[string][]byte` data.
pub fn data_hash(data: &BTreeMap<String, Vec<u8>>) -> String {
    let mut s = String::from("map[");
    for (i, (k, v)) in data.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(k);
        s.push(':');
        go_bytes(&mut s, v);
    }
    s.push(']');
    sha3_hex(&s)
}

/// `status.syncedResourceVersion`: `"<generation>-<sha3-224 of %+v of {annotations, labels}>"`.
pub fn synced_resource_version(
    generation: i64,
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> String {
    let mut s = String::from("{annotations:");
    go_string_map(&mut s, annotations);
    s.push_str(" labels:");
    go_string_map(&mut s, labels);
    s.push('}');
    format!("{generation}-{}", sha3_hex(&s))
}

/// The `reconcile.external-secrets.io/created-by` label value: SHA3-224 of `"<ns>/<name>"`.
pub fn created_by_label(namespace: &str, name: &str) -> String {
    sha3_hex(&format!("{namespace}/{name}"))
}

/// The field manager for Secret writes, as ESO names it (hashed past 63 characters).
pub fn field_manager(es_name: &str) -> String {
    if es_name.len() > 63 {
        format!("{FIELD_MANAGER_PREFIX}/sha3/{}", sha3_hex(es_name))
    } else {
        format!("{FIELD_MANAGER_PREFIX}/{es_name}")
    }
}

/// Standard base64 with padding (Secret `data` encoding).
pub fn base64_encode(v: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// Total size a Secret's data takes (keys and values), as the apiserver counts it.
pub fn secret_size(data: &BTreeMap<String, Vec<u8>>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Reject data over the 1 MiB Kubernetes limit before any write is attempted.
pub fn check_size(data: &BTreeMap<String, Vec<u8>>) -> Result<(), crate::MappingError> {
    let size = secret_size(data);
    if size > MAX_SECRET_SIZE {
        return Err(crate::MappingError::TooLarge { size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed with Go 1.26:
    //   fmt.Sprintf("%x", sha3.Sum224([]byte(fmt.Sprintf("%+v", x))))
    #[test]
    fn go_rendering_of_data() {
        let mut s = String::from("map[");
        go_bytes(&mut s, b"hi");
        assert_eq!(s, "map[[104 105]");
        assert_eq!(data_hash(&BTreeMap::new()), sha3_hex("map[]"));
        let d = BTreeMap::from([
            ("b".to_string(), b"".to_vec()),
            ("a".to_string(), b"hi".to_vec()),
        ]);
        assert_eq!(data_hash(&d), sha3_hex("map[a:[104 105] b:[]]"));
    }

    #[test]
    fn go_rendering_of_meta() {
        let labels = BTreeMap::from([("x".to_string(), "1".to_string())]);
        let v = synced_resource_version(3, Some(&labels), None);
        assert_eq!(
            v,
            format!("3-{}", sha3_hex("{annotations:map[] labels:map[x:1]}"))
        );
    }

    #[test]
    fn field_manager_is_hashed_when_long() {
        assert_eq!(
            field_manager("db"),
            "externalsecrets.external-secrets.io/db"
        );
        let long = "a".repeat(64);
        assert!(field_manager(&long).starts_with("externalsecrets.external-secrets.io/sha3/"));
        assert_eq!(created_by_label("ns", "n").len(), 56);
    }

    #[test]
    fn size_limit() {
        let ok = BTreeMap::from([("k".to_string(), vec![0u8; MAX_SECRET_SIZE - 1])]);
        assert!(check_size(&ok).is_ok());
        let big = BTreeMap::from([("kk".to_string(), vec![0u8; MAX_SECRET_SIZE])]);
        assert!(check_size(&big).is_err());
    }
}
