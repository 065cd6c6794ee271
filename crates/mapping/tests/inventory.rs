//! The function inventory: every function in ESO v2.9's template function map
//! (tests/fixtures/eso-v2.9-funcs.txt) is implemented, or on the explicit deny list below with
//! its reason; every function we define that ESO does not is on the extras list with its reason;
//! and the I/O functions ESO removed stay undefined.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use eso_mapping::template::{function_names, render};

/// Functions in ESO's map that eso-rs deliberately does not define (each documented in
/// docs/migrating-from-eso.md). Empty: every function in ESO v2.9's map is implemented.
const DENY: &[(&str, &str)] = &[];

/// Functions eso-rs defines that ESO's map does not.
const EXTRAS: &[(&str, &str)] = &[(
    "required",
    "Helm's `required`, kept from earlier eso-rs releases (docs/migrating-from-eso.md)",
)];

/// Functions ESO's vendored sprig removed because they do I/O; they must stay undefined.
const REMOVED_IO: &[&str] = &["env", "expandenv", "getHostByName"];

fn eso_names() -> BTreeSet<&'static str> {
    include_str!("fixtures/eso-v2.9-funcs.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_eso_function_is_implemented_or_denied() {
    let eso = eso_names();
    assert_eq!(eso.len(), 227, "ESO v2.9.0's map has 227 functions");
    let ours: BTreeSet<&str> = function_names().into_iter().collect();
    let deny: BTreeSet<&str> = DENY.iter().map(|(n, _)| *n).collect();
    let missing: Vec<&&str> = eso
        .iter()
        .filter(|n| !ours.contains(**n) && !deny.contains(**n))
        .collect();
    assert!(
        missing.is_empty(),
        "not implemented and not denied: {missing:?}"
    );
    for d in &deny {
        assert!(eso.contains(d), "deny-listed {d} is not in ESO's map");
        assert!(!ours.contains(d), "deny-listed {d} is defined");
    }
    let extras: BTreeSet<&str> = EXTRAS.iter().map(|(n, _)| *n).collect();
    let unexpected: Vec<&&str> = ours
        .iter()
        .filter(|n| !eso.contains(**n) && !extras.contains(**n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "defined but not in ESO's map: {unexpected:?}"
    );
}

#[test]
fn io_functions_stay_undefined() {
    let ours: BTreeSet<&str> = function_names().into_iter().collect();
    for f in REMOVED_IO {
        assert!(!ours.contains(f), "{f} must not be defined");
        let err = render(&format!("{{{{ {f} \"x\" }}}}"), &Default::default()).unwrap_err();
        assert!(err.contains("not defined"), "{f}: {err}");
    }
}
