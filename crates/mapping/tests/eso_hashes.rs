//! Hashes checked against values computed with Go 1.26, exactly as ESO computes them:
//! `fmt.Sprintf("%x", sha3.Sum224([]byte(fmt.Sprintf("%+v", x))))`.
//! (The Go program is in docs/ARCHITECTURE.md, "ESO hash compatibility".)
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use eso_mapping::{created_by_label, data_hash, synced_resource_version};

#[test]
fn data_hash_matches_go() {
    let d = BTreeMap::from([
        ("a".to_string(), b"hi".to_vec()),
        ("b".to_string(), Vec::new()),
        ("password".to_string(), b"dbpassword".to_vec()),
    ]);
    assert_eq!(
        data_hash(&d),
        "34ae88a464985b99337a7df749d016b0740987d5dd6ec5001c6e2f2d"
    );
    assert_eq!(
        data_hash(&BTreeMap::new()),
        "74a974446e359fb3e6baff9bd0058950e6edd0f040888d9989b0a11b"
    );
}

#[test]
fn synced_resource_version_matches_go() {
    let ann = BTreeMap::from([
        ("x".to_string(), "1".to_string()),
        ("a b".to_string(), "c:d".to_string()),
    ]);
    assert_eq!(
        synced_resource_version(7, None, Some(&ann)),
        "7-d046794b8657f8326075bb7c6ddc6ab87882453b82dbed03a427e53f"
    );
    assert_eq!(
        synced_resource_version(1, None, None),
        "1-f47fe3c0b255b6dd8047cdffa772587bb829efe7a1cb70febeda2eb2"
    );
}

#[test]
fn created_by_matches_go() {
    assert_eq!(
        created_by_label("ns", "name"),
        "bb23d4143f48a70026bb6cffbf0e5df5557eb3bc56885091e92a5690"
    );
}
