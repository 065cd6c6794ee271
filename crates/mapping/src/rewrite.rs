//! `dataFrom[].rewrite`: regexp, transform and merge, applied in order to key names.

use std::collections::BTreeMap;

use eso_api::ExternalSecretRewrite;

use crate::MappingError;

/// Upper bound on a compiled rewrite regexp, so a hostile pattern cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Apply one rewrite to the map.
pub(crate) fn apply(
    field: &str,
    rw: &ExternalSecretRewrite,
    map: BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, MappingError> {
    let rerr = |reason: String| MappingError::Rewrite {
        field: field.to_string(),
        reason,
    };
    if let Some(r) = &rw.regexp {
        let re = regex::RegexBuilder::new(&r.source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| rerr(format!("invalid regexp: {e}")))?;
        let mut out = BTreeMap::new();
        for (k, v) in map {
            out.insert(re.replace_all(&k, r.target.as_str()).into_owned(), v);
        }
        return Ok(out);
    }
    if let Some(t) = &rw.transform {
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let ctx = eso_template::Value::string_map([("value", k.as_bytes())]);
            let nk = crate::template::render_value(&t.template, ctx)
                .map_err(|e| rerr(format!("transform: {e}")))?;
            out.insert(nk, v);
        }
        return Ok(out);
    }
    if let Some(m) = &rw.merge {
        return crate::engine::merge_json_objects(field, &map, m);
    }
    Err(rerr(
        "exactly one of regexp, transform or merge must be set".to_string(),
    ))
}
