//! Property lookup (gjson paths and `$` JSONPath) on arbitrary payloads never panics and is
//! deterministic.
//!
//! Input layout: `<property> NUL <payload>`; without a NUL the whole input is the payload and
//! a few fixed properties are tried.
#![no_main]

use eso_mapping::property::select;
use libfuzzer_sys::fuzz_target;

/// Keeps one run fast: JSONPath descendant queries are superlinear in the document size.
const MAX_INPUT: usize = 8 * 1024;

const FIXED: &[&str] = &[
    "password", "a.b", "a.b.c", "0", "#", "a.#", "$", "$..*", "$.a[0]",
];

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let (property, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let property = String::from_utf8_lossy(property);
    let payload = String::from_utf8_lossy(payload);
    let check = |p: &str| {
        let first = select(&payload, p);
        assert_eq!(first, select(&payload, p), "select is not deterministic");
    };
    if property.is_empty() {
        for p in FIXED {
            check(p);
        }
    } else {
        check(&property);
    }
});
