//! Property tests: the engine never panics on arbitrary JSON, paths and templates, and the pure
//! transforms round-trip where they can.
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use base64::Engine as _;
use eso_mapping::property::select;
use eso_mapping::template::render;
use eso_mapping::transform::{convert_key, decode, validate_key};
use proptest::prelude::*;

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z.]{0,6}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn property_selection_never_panics(doc in json(), path in "[a-z0-9.#*?@|\\\\$\\[\\]]{0,16}") {
        let _ = select(&doc.to_string(), &path);
    }

    #[test]
    fn property_selection_on_arbitrary_text_never_panics(text in ".{0,64}", path in ".{0,16}") {
        let _ = select(&text, &path);
    }

    #[test]
    fn top_level_string_properties_come_out_raw(key in "[a-z]{1,8}", value in "[^\\u{0}]{0,32}") {
        let doc = serde_json::json!({ key.clone(): value.clone() });
        prop_assert_eq!(select(&doc.to_string(), &key).unwrap(), Some(value));
    }

    #[test]
    fn templates_never_panic(t in ".{0,64}") {
        let data = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let _ = render(&t, &data);
    }

    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let enc = base64::engine::general_purpose::STANDARD.encode(&bytes);
        prop_assert_eq!(decode(Some(eso_api::DecodingStrategy::Base64), enc.as_bytes()).unwrap(), bytes.clone());
        prop_assert_eq!(decode(Some(eso_api::DecodingStrategy::Auto), enc.as_bytes()).unwrap(), bytes);
    }

    #[test]
    fn converted_keys_are_valid(key in ".{1,64}") {
        let k = convert_key(None, &key);
        // Default conversion leaves only letters, digits and -._ (non-ASCII letters are kept, like ESO).
        if k.is_ascii() && k != "." && k != ".." {
            prop_assert!(validate_key(&k).is_ok(), "{k:?}");
        }
    }
}
