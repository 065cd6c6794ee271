//! `plan` (what to read) and `map` (remote values + spec → Secret data), in ESO's order.

use std::collections::{BTreeMap, BTreeSet};

use eso_api::{
    DeletionPolicy, ExternalSecretDataRemoteRef, ExternalSecretFind, ExternalSecretRewrite,
    ExternalSecretSpec, MergeConflictPolicy, MergePriorityPolicy, MergeStrategy, MetadataPolicy,
    SecretStoreRef, StoreKind, TemplateMergePolicy, TemplateScope,
};

use crate::property::{flatten_object, select_for};
use crate::transform::{check_null, convert_key, decode_for, validate_key, validate_remote_key};
use crate::{
    Fetched, FindQuery, MappingError, RemoteRef, RemoteSecret, Request, StoreRef, VersionSelector,
};

/// Annotation never copied from the ExternalSecret to the Secret (QUIRK decision: ESO copies it).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// ConfigMaps and Secrets named by `template.templateFrom`, read by the caller: name → key → bytes.
#[derive(Clone, Debug, Default)]
pub struct TemplateSources {
    /// ConfigMaps (data and binaryData).
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secrets.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// Everything `map` needs.
#[derive(Clone, Copy, Debug)]
pub struct MappingInput<'a> {
    /// The ExternalSecret's namespace.
    pub namespace: &'a str,
    /// The ExternalSecret's name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a ExternalSecretSpec,
    /// Its labels (copied to the Secret when there is no template).
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// Its annotations (copied to the Secret when there is no template).
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// The provider answers to [`plan`]'s requests.
    pub fetched: &'a Fetched,
    /// templateFrom sources.
    pub template_sources: &'a TemplateSources,
}

/// A remote secret the provider said does not exist, skipped because deletionPolicy is not Retain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSecret {
    /// `spec.data[i]` or `spec.dataFrom[i]`.
    pub field: String,
    /// The remote key (for `data[]`).
    pub key: Option<String>,
}

impl std::fmt::Display for MissingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "secret does not exist at provider using {} (key={k})",
                self.field
            ),
            None => write!(f, "secret does not exist at provider using {}", self.field),
        }
    }
}

/// The target Secret as the engine computed it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    /// Secret data. Empty when no remote secret exists (deletionPolicy decides what happens).
    pub data: BTreeMap<String, Vec<u8>>,
    /// `template.type`, when set.
    pub type_: Option<String>,
    /// Labels for the Secret (the managed label is added by the caller).
    pub labels: BTreeMap<String, String>,
    /// Annotations for the Secret (the data-hash annotation is added by the caller).
    pub annotations: BTreeMap<String, String>,
    /// Finalizers from `template.metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// Remote secrets that do not exist and were skipped.
    pub missing: Vec<MissingSecret>,
}

/// Never prints values.
impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("type_", &self.type_)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations.keys().collect::<Vec<_>>())
            .field("missing", &self.missing)
            .finish()
    }
}

fn store_of(
    default: Option<&SecretStoreRef>,
    over: Option<&SecretStoreRef>,
    field: &str,
) -> Result<StoreRef, MappingError> {
    let r = over.or(default).ok_or_else(|| MappingError::Unsupported {
        field: field.to_string(),
        reason: "no secretStoreRef and no sourceRef.storeRef".to_string(),
    })?;
    let name =
        r.name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| MappingError::Unsupported {
                field: field.to_string(),
                reason: "the store reference has no name".to_string(),
            })?;
    Ok(StoreRef {
        kind: r.kind.unwrap_or(StoreKind::SecretStore),
        name,
    })
}

fn remote_ref(r: &ExternalSecretDataRemoteRef) -> RemoteRef {
    RemoteRef {
        key: r.key.clone(),
        version: VersionSelector::parse(r.version.as_deref()),
        metadata: r.metadata_policy == Some(MetadataPolicy::Fetch),
    }
}

fn find_query(f: &ExternalSecretFind, field: &str) -> Result<FindQuery, MappingError> {
    let name_regexp = f
        .name
        .as_ref()
        .and_then(|n| n.regexp.clone())
        .filter(|r| !r.is_empty());
    if name_regexp.is_none() && f.tags.is_empty() {
        return Err(MappingError::Unsupported {
            field: format!("{field}.find"),
            reason: "unexpected find operator: set name.regexp or tags".to_string(),
        });
    }
    if let Some(re) = &name_regexp {
        regex::Regex::new(re).map_err(|e| MappingError::Unsupported {
            field: format!("{field}.find.name.regexp"),
            reason: format!("invalid regular expression: {e}"),
        })?;
    }
    Ok(FindQuery {
        name_regexp,
        tags: f.tags.clone(),
        path: f.path.clone().filter(|p| !p.is_empty()),
    })
}

fn generator_error(field: &str) -> MappingError {
    MappingError::Unsupported {
        field: format!("{field}.sourceRef.generatorRef"),
        reason: "generators are not supported in spec.data[] (ESO does not implement them there either); use spec.dataFrom[].sourceRef.generatorRef".to_string(),
    }
}

/// The `spec.dataFrom` entries that run a generator: (index, the `generatorRef` object). The
/// caller runs them and puts the output in [`Fetched::generated`] under the same index.
pub fn generator_entries(spec: &ExternalSecretSpec) -> Vec<(usize, &serde_json::Value)> {
    spec.data_from
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            e.source_ref
                .as_ref()
                .and_then(|s| s.generator_ref.as_ref())
                .map(|g| (i, g))
        })
        .collect()
}

/// The reads `map` will need, deduplicated, in spec order.
pub fn plan(spec: &ExternalSecretSpec) -> Result<Vec<Request>, MappingError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |r: Request| {
        if seen.insert(r.clone()) {
            out.push(r);
        }
    };
    let default = spec.secret_store_ref.as_ref();
    if let Some(m) = &spec.target.manifest {
        // ESO writes a generic target (ConfigMap, custom resources) instead of a Secret. Writing
        // a Secret in its place would be wrong, so the ExternalSecret is refused until the field
        // is removed; nothing is read or written.
        return Err(MappingError::Unsupported {
            field: "spec.target.manifest".to_string(),
            reason: format!(
                "generic targets ({}/{}) are not supported by this operator; remove spec.target.manifest to sync into a Secret",
                m.api_version, m.kind
            ),
        });
    }
    if spec.target.deletion_policy == DeletionPolicy::Retain {
        let mut keys = BTreeSet::new();
        for (i, d) in spec.data.iter().enumerate() {
            if !keys.insert(d.secret_key.as_str()) {
                return Err(MappingError::Unsupported {
                    field: format!("spec.data[{i}].secretKey"),
                    reason: format!(
                        "spec.data[].secretKey must be unique when deletionPolicy is Retain (duplicate {:?})",
                        d.secret_key
                    ),
                });
            }
        }
    }
    for (i, e) in spec.data_from.iter().enumerate() {
        let field = format!("spec.dataFrom[{i}]");
        if e.source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            if e.extract.is_some() || e.find.is_some() {
                return Err(MappingError::Unsupported {
                    field,
                    reason: "exactly one of extract, find or sourceRef.generatorRef must be set"
                        .to_string(),
                });
            }
            // Run by the caller (generator_entries), not read from a store.
            continue;
        }
        let store = store_of(
            default,
            e.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()),
            &field,
        )?;
        match (&e.extract, &e.find) {
            (Some(x), None) => push(Request::Get {
                store,
                remote: remote_ref(x),
            }),
            (None, Some(f)) => push(Request::Find {
                store,
                query: find_query(f, &field)?,
            }),
            _ => {
                return Err(MappingError::Unsupported {
                    field,
                    reason: "exactly one of extract, find or sourceRef.generatorRef must be set"
                        .to_string(),
                });
            }
        }
    }
    for (i, d) in spec.data.iter().enumerate() {
        let field = format!("spec.data[{i}]");
        if d.source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            return Err(generator_error(&field));
        }
        let store = store_of(
            default,
            d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()),
            &field,
        )?;
        push(Request::Get {
            store,
            remote: remote_ref(&d.remote_ref),
        });
    }
    Ok(out)
}

/// The payload a property is evaluated against: binary wins over string (as in ESO); tags become
/// a JSON object with sorted keys.
fn payload(secret: &RemoteSecret) -> Option<std::borrow::Cow<'_, str>> {
    match secret {
        RemoteSecret::Value {
            binary: Some(b), ..
        } => Some(String::from_utf8_lossy(b)),
        RemoteSecret::Value {
            string: Some(s), ..
        } => Some(std::borrow::Cow::Borrowed(s.as_str())),
        RemoteSecret::Tags(t) => serde_json::to_string(t).ok().map(std::borrow::Cow::Owned),
        _ => None,
    }
}

/// The raw value without property: string first, then binary.
fn raw_value(secret: &RemoteSecret) -> Option<Vec<u8>> {
    match secret {
        RemoteSecret::Value {
            string: Some(s), ..
        } => Some(s.clone().into_bytes()),
        RemoteSecret::Value {
            binary: Some(b), ..
        } => Some(b.clone()),
        RemoteSecret::Tags(t) => serde_json::to_string(t).ok().map(String::into_bytes),
        _ => None,
    }
}

/// One value for `data[]` (or the narrowed payload of `extract`).
fn value_of(
    field: &str,
    r: &ExternalSecretDataRemoteRef,
    secret: &RemoteSecret,
    memo: &mut crate::property::JsonMemo,
) -> Result<Vec<u8>, MappingError> {
    let empty = || MappingError::EmptyRemote {
        field: field.to_string(),
        key: r.key.clone(),
    };
    match r.property.as_deref().filter(|p| !p.is_empty()) {
        None => raw_value(secret).ok_or_else(empty),
        Some(p) => {
            let body = payload(secret).ok_or_else(empty)?;
            Ok(select_for(field, &r.key, &body, p, memo)?.into_bytes())
        }
    }
}

struct KeyOpts<'a> {
    rewrite: &'a [ExternalSecretRewrite],
    conversion: Option<eso_api::ConversionStrategy>,
    decoding: Option<eso_api::DecodingStrategy>,
    null: Option<eso_api::NullBytePolicy>,
    /// The keys go into the Secret as they are (no template): check them with Kubernetes' rules
    /// here, where the field at fault is known. With a template, ESO's Unicode rules apply here
    /// and Kubernetes' rules to the templated result.
    final_keys: bool,
}

/// rewrite → (conversion when no rewrite) → key validation → decoding → null bytes.
fn process_map(
    field: &str,
    input: Vec<(String, Vec<u8>)>,
    o: &KeyOpts<'_>,
) -> Result<BTreeMap<String, Vec<u8>>, MappingError> {
    let mut map: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if o.rewrite.is_empty() {
        for (k, v) in input {
            let nk = convert_key(o.conversion, &k);
            if map.insert(nk.clone(), v).is_some() {
                return Err(MappingError::KeyCollision {
                    field: field.to_string(),
                    secret_key: nk,
                });
            }
        }
    } else {
        map = input.into_iter().collect();
        for (j, rw) in o.rewrite.iter().enumerate() {
            map = crate::rewrite::apply(&format!("{field}.rewrite[{j}]"), rw, map)?;
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if k.is_empty() {
            continue;
        }
        let check = if o.final_keys {
            validate_key
        } else {
            validate_remote_key
        };
        check(&k).map_err(|reason| MappingError::InvalidKey {
            field: field.to_string(),
            secret_key: k.clone(),
            reason,
        })?;
        let v = decode_for(field, &k, o.decoding, &v)?;
        check_null(field, &k, o.null, &v)?;
        out.insert(k, v);
    }
    Ok(out)
}

fn answer<'a>(
    fetched: &'a Fetched,
    store: &StoreRef,
    remote: RemoteRef,
    field: &str,
) -> Result<Option<&'a RemoteSecret>, MappingError> {
    match fetched.gets.get(&(store.clone(), remote)) {
        Some(v) => Ok(v.as_ref()),
        None => Err(MappingError::NotFetched {
            field: field.to_string(),
        }),
    }
}

/// Provider data before templating, and the missing secrets.
type ProviderData = (BTreeMap<String, Vec<u8>>, Vec<MissingSecret>);

/// Provider data before templating, and the missing secrets.
fn provider_data(input: &MappingInput<'_>) -> Result<ProviderData, MappingError> {
    let spec = input.spec;
    let retain = spec.target.deletion_policy == DeletionPolicy::Retain;
    let final_keys = spec.target.template.is_none();
    let default = spec.secret_store_ref.as_ref();
    let mut memo = crate::property::JsonMemo::default();
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut missing = Vec::new();
    for (i, e) in spec.data_from.iter().enumerate() {
        let field = format!("spec.dataFrom[{i}]");
        if e.source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            // ESO: the generator's keys, rewritten, validated; no conversion or decoding.
            let generated =
                input
                    .fetched
                    .generated
                    .get(&i)
                    .ok_or_else(|| MappingError::NotFetched {
                        field: field.clone(),
                    })?;
            let flat = generated
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let o = KeyOpts {
                rewrite: &e.rewrite,
                conversion: None,
                decoding: None,
                null: None,
                final_keys,
            };
            out.extend(process_map(&field, flat, &o)?);
            continue;
        }
        let store = store_of(
            default,
            e.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()),
            &field,
        )?;
        let part = if let Some(x) = &e.extract {
            let Some(secret) = answer(input.fetched, &store, remote_ref(x), &field)? else {
                if retain {
                    return Err(MappingError::SecretDoesNotExist {
                        field,
                        key: x.key.clone(),
                    });
                }
                missing.push(MissingSecret { field, key: None });
                continue;
            };
            let narrowed = value_of(&field, x, secret, &mut memo)?;
            let text = String::from_utf8_lossy(&narrowed);
            let flat = flatten_object(&text).ok_or_else(|| MappingError::NotAJsonObject {
                field: field.clone(),
                key: x.key.clone(),
            })?;
            let o = KeyOpts {
                rewrite: &e.rewrite,
                conversion: x.conversion_strategy,
                decoding: x.decoding_strategy,
                null: x.null_byte_policy,
                final_keys,
            };
            process_map(&field, flat, &o)?
        } else if let Some(f) = &e.find {
            let q = find_query(f, &field)?;
            let found = match input.fetched.finds.get(&(store.clone(), q)) {
                Some(v) => v.clone().unwrap_or_default(),
                None => return Err(MappingError::NotFetched { field }),
            };
            let mut flat = Vec::with_capacity(found.len());
            for (name, secret) in found {
                if let Some(v) = raw_value(&secret) {
                    flat.push((name, v));
                }
            }
            let o = KeyOpts {
                rewrite: &e.rewrite,
                conversion: f.conversion_strategy,
                decoding: f.decoding_strategy,
                null: f.null_byte_policy,
                final_keys,
            };
            process_map(&field, flat, &o)?
        } else {
            return Err(generator_error(&field));
        };
        out.extend(part);
    }
    for (i, d) in spec.data.iter().enumerate() {
        let field = format!("spec.data[{i}]");
        let store = store_of(
            default,
            d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()),
            &field,
        )?;
        let r = &d.remote_ref;
        let Some(secret) = answer(input.fetched, &store, remote_ref(r), &field)? else {
            if retain {
                return Err(MappingError::SecretDoesNotExist {
                    field,
                    key: r.key.clone(),
                });
            }
            missing.push(MissingSecret {
                field,
                key: Some(r.key.clone()),
            });
            continue;
        };
        let v = value_of(&field, r, secret, &mut memo)?;
        let v = decode_for(&field, &d.secret_key, r.decoding_strategy, &v)?;
        check_null(&field, &d.secret_key, r.null_byte_policy, &v)?;
        out.insert(d.secret_key.clone(), v);
    }
    Ok((out, missing))
}

/// Map the provider answers to the target Secret.
pub fn map(input: &MappingInput<'_>) -> Result<Mapped, MappingError> {
    let (data, missing) = provider_data(input)?;
    let mut mapped = Mapped {
        missing,
        ..Default::default()
    };
    if data.is_empty() {
        // Nothing exists remotely: the caller applies deletionPolicy; templates are not rendered.
        return Ok(mapped);
    }
    match input.spec.target.template.as_ref() {
        None => {
            mapped.data = data;
            mapped.labels = input.labels.cloned().unwrap_or_default();
            mapped.annotations = input.annotations.cloned().unwrap_or_default();
            mapped.annotations.remove(LAST_APPLIED);
        }
        Some(t) => {
            let tctx = crate::template::context_bytes(&data);
            let field = "spec.target.template";
            let terr = |f: String| {
                move |reason: String| MappingError::Template {
                    field: f.clone(),
                    reason,
                }
            };
            if t.merge_policy == TemplateMergePolicy::Merge
                || (t.data.is_empty() && t.template_from.is_empty())
            {
                mapped.data = data.clone();
            }
            for (i, tf) in t.template_from.iter().enumerate() {
                let f = format!("{field}.templateFrom[{i}]");
                let mut rendered: Vec<(String, String)> = Vec::new();
                for (kind, r, sources) in [
                    (
                        "configmap",
                        tf.config_map.as_ref(),
                        &input.template_sources.config_maps,
                    ),
                    (
                        "secret",
                        tf.secret.as_ref(),
                        &input.template_sources.secrets,
                    ),
                ] {
                    let Some(r) = r else { continue };
                    let src = sources.get(&r.name);
                    for item in &r.items {
                        let body = src.and_then(|m| m.get(&item.key)).ok_or_else(|| {
                            MappingError::Template {
                                field: f.clone(),
                                reason: format!(
                                    "error in {kind} {}: missing key {}",
                                    r.name, item.key
                                ),
                            }
                        })?;
                        let body = String::from_utf8_lossy(body);
                        let out = crate::template::render_with(&body, &tctx)
                            .map_err(terr(format!("{f}[{}]", item.key)))?;
                        match item.template_as {
                            TemplateScope::Values => rendered.push((item.key.clone(), out)),
                            TemplateScope::KeysAndValues => {
                                rendered.extend(keys_and_values(&f, &out)?)
                            }
                        }
                    }
                }
                if let Some(lit) = &tf.literal {
                    let out = crate::template::render_with(lit, &tctx)
                        .map_err(terr(format!("{f}.literal")))?;
                    rendered.extend(keys_and_values(&f, &out)?);
                }
                match tf
                    .target
                    .as_deref()
                    .unwrap_or("Data")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "labels" => mapped.labels.extend(rendered),
                    "annotations" => mapped.annotations.extend(rendered),
                    "data" | "" => {
                        for (k, v) in rendered {
                            let v = crate::template::text_to_bytes(&v);
                            let v = decode_for(&f, &k, tf.values_decoding_strategy, &v)?;
                            mapped.data.insert(k, v);
                        }
                    }
                    other => {
                        return Err(MappingError::Unsupported {
                            field: format!("{f}.target"),
                            reason: format!(
                                "templateFrom[].target must be Data, Annotations or Labels for a Secret target, not {other:?}"
                            ),
                        });
                    }
                }
            }
            for (k, body) in &t.data {
                let out = crate::template::render_bytes(body, &tctx)
                    .map_err(terr(format!("{field}.data[{k}]")))?;
                mapped.data.insert(k.clone(), out);
            }
            if let Some(md) = &t.metadata {
                for (k, body) in &md.labels {
                    let out = crate::template::render_with(body, &tctx)
                        .map_err(terr(format!("{field}.metadata.labels[{k}]")))?;
                    mapped.labels.insert(k.clone(), out);
                }
                for (k, body) in &md.annotations {
                    let out = crate::template::render_with(body, &tctx)
                        .map_err(terr(format!("{field}.metadata.annotations[{k}]")))?;
                    mapped.annotations.insert(k.clone(), out);
                }
                mapped.finalizers = md.finalizers.clone();
            }
            mapped.type_ = t.type_.clone().filter(|s| !s.is_empty());
            if mapped.type_.as_deref() == Some("kubernetes.io/service-account-token")
                && mapped
                    .annotations
                    .contains_key("kubernetes.io/service-account.name")
            {
                return Err(MappingError::Unsupported {
                    field: format!("{field}.metadata.annotations"),
                    reason: "a kubernetes.io/service-account-token Secret may not set the kubernetes.io/service-account.name annotation".to_string(),
                });
            }
            for k in mapped.data.keys() {
                validate_key(k).map_err(|reason| MappingError::InvalidKey {
                    field: field.to_string(),
                    secret_key: k.clone(),
                    reason,
                })?;
            }
        }
    }
    Ok(mapped)
}

/// A KeysAndValues template renders YAML `map[string]string`.
fn keys_and_values(field: &str, rendered: &str) -> Result<Vec<(String, String)>, MappingError> {
    let m: BTreeMap<String, String> =
        serde_saphyr::from_str(rendered).map_err(|_| MappingError::Template {
            field: field.to_string(),
            reason: "a KeysAndValues template must render a YAML map of strings".to_string(),
        })?;
    Ok(m.into_iter().collect())
}

pub(crate) fn merge_json_objects(
    field: &str,
    map: &BTreeMap<String, Vec<u8>>,
    m: &eso_api::RewriteMerge,
) -> Result<BTreeMap<String, Vec<u8>>, MappingError> {
    let rerr = |reason: String| MappingError::Rewrite {
        field: field.to_string(),
        reason,
    };
    let strict = m.priority_policy != Some(MergePriorityPolicy::IgnoreNotFound);
    for p in &m.priority {
        if strict && !map.contains_key(p) {
            return Err(rerr(format!("priority key {p} not found")));
        }
    }
    let mut order: Vec<&String> = map.keys().filter(|k| !m.priority.contains(k)).collect();
    order.extend(m.priority.iter().filter(|p| map.contains_key(*p)));
    let mut merged = serde_json::Map::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for k in order {
        let Some(raw) = map.get(k) else { continue };
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)
            .map_err(|_| rerr(format!("value of key {k} is not a JSON object")))?;
        for (ik, iv) in obj {
            let conflict = merged.get(&ik).is_some_and(|prev| prev != &iv);
            if conflict
                && m.conflict_policy != Some(MergeConflictPolicy::Ignore)
                && !m.priority.contains(k)
            {
                return Err(rerr(format!(
                    "conflict on key {ik} between {} and {k}",
                    from.get(&ik).cloned().unwrap_or_default()
                )));
            }
            from.insert(ik.clone(), k.clone());
            merged.insert(ik, iv);
        }
    }
    match m.strategy.unwrap_or(MergeStrategy::Extract) {
        MergeStrategy::Extract => Ok(merged
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s.into_bytes())
            })
            .collect()),
        MergeStrategy::Json => {
            let into = m
                .into
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| rerr("strategy JSON needs `into`".to_string()))?;
            let mut out = map.clone();
            out.insert(
                into,
                serde_json::Value::Object(merged).to_string().into_bytes(),
            );
            Ok(out)
        }
    }
}
