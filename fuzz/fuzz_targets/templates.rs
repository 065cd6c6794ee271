//! Template rendering (Go text/template via eso-template + sprig and ESO functions) never panics and never
//! hangs on an arbitrary template and data map.
//!
//! Input layout: `<template> NUL <data>`, where data is `key=value` lines.
#![no_main]

use std::collections::BTreeMap;

use eso_mapping::template::render;
use libfuzzer_sys::fuzz_target;

/// Keeps one run fast (libFuzzer's per-input timeout catches anything that still hangs).
const MAX_TEMPLATE: usize = 2 * 1024;
const MAX_DATA: usize = 4 * 1024;

fuzz_target!(|data: &[u8]| {
    let (template, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if template.len() > MAX_TEMPLATE || rest.len() > MAX_DATA {
        return;
    }
    let template = String::from_utf8_lossy(template);
    // Nested `range`s, a `range` over a `repeat`-built list and `define` chains calling each
    // other several times per level are bounded by the engine's work budget, but an input that
    // spends the whole budget takes seconds; skip them to keep the exec rate (and the bounded
    // CI run) fast. One `range` over data is still fuzzed; the budget has its own unit tests.
    if template.matches("range").count() > 1
        || (template.contains("range") && template.contains("repeat"))
        || (template.contains("define") && template.matches("template").count() > 2)
    {
        return;
    }
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(rest).lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        map.insert(k.to_string(), v.to_string());
    }
    let _ = render(&template, &map);
});
