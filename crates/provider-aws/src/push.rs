//! The Secrets Manager write side (PushSecret): CreateSecret / PutSecretValue after a compare,
//! tags, description, KMS key and resource policy from ESO's `PushSecretMetadata`, and deletes
//! that honour the store's `secretsManager` settings.
//!
//! Ownership: a remote secret is ours when it carries the tag `managed-by: external-secrets`
//! (ESO's tag, so secrets pushed by ESO are taken over). Anything else is never written to,
//! re-tagged or deleted.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use eso_provider::{DeleteOutcome, ProviderError, PushOutcome, PushRemoteRef, PushRequest};
use serde::Deserialize;

use crate::{SecretsManagerProvider, errors};

/// The ownership tag key (ESO's).
pub const MANAGED_BY_TAG: &str = "managed-by";
/// The ownership tag value (ESO's).
pub const MANAGED_BY_VALUE: &str = "external-secrets";
/// `apiVersion` of ESO's push metadata object.
pub const METADATA_API_VERSION: &str = "kubernetes.external-secrets.io/v1alpha1";
/// `kind` of ESO's push metadata object.
pub const METADATA_KIND: &str = "PushSecretMetadata";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    spec: MetadataSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MetadataSpec {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret_push_format: Option<String>,
    #[serde(default, alias = "kmsKeyID")]
    kms_key_id: Option<String>,
    #[serde(default)]
    resource_policy: Option<ResourcePolicySpec>,
    #[serde(default)]
    replication_locations: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourcePolicySpec {
    #[serde(default)]
    block_public_policy: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    policy_source_ref: Option<serde_json::Value>,
}

/// Push settings parsed from an entry's metadata, defaults applied.
#[derive(Debug, Default)]
struct Settings {
    /// User tags (without the ownership tag); `None`: tags are not managed.
    tags: Option<BTreeMap<String, String>>,
    description: Option<String>,
    string_format: bool,
    kms_key_id: Option<String>,
    /// (policy JSON, blockPublicPolicy)
    resource_policy: Option<(String, Option<bool>)>,
}

fn parse_settings(req: &PushRequest) -> Result<Settings, ProviderError> {
    let Some(raw) = &req.metadata else {
        return Ok(Settings::default());
    };
    let key = &req.remote.key;
    let m: Metadata = serde_json::from_value(raw.clone()).map_err(|e| {
        ProviderError::invalid_config(format!(
            "data[{key}].metadata: not a {METADATA_API_VERSION} {METADATA_KIND}: {e}"
        ))
    })?;
    if m.api_version != METADATA_API_VERSION || m.kind != METADATA_KIND {
        return Err(ProviderError::invalid_config(format!(
            "data[{key}].metadata: expected apiVersion {METADATA_API_VERSION} and kind {METADATA_KIND}, got {:?} {:?}",
            m.api_version, m.kind
        )));
    }
    let s = m.spec;
    if !s.replication_locations.is_empty() {
        return Err(ProviderError::unsupported(format!(
            "data[{key}].metadata.spec.replicationLocations: replica regions are not supported by this operator"
        )));
    }
    if s.tags.contains_key(MANAGED_BY_TAG) {
        return Err(ProviderError::invalid_config(format!(
            "data[{key}].metadata.spec.tags: the {MANAGED_BY_TAG} tag is reserved for ownership"
        )));
    }
    let string_format = match s.secret_push_format.as_deref() {
        None | Some("") | Some("binary") => false,
        Some("string") => true,
        Some(other) => {
            return Err(ProviderError::invalid_config(format!(
                "data[{key}].metadata.spec.secretPushFormat: {other:?} is neither string nor binary"
            )));
        }
    };
    let resource_policy = match s.resource_policy {
        None => None,
        Some(rp) => {
            let json = req
                .resolved
                .get(PushRequest::RESOURCE_POLICY)
                .cloned()
                .ok_or_else(|| {
                    ProviderError::invalid_config(format!(
                        "data[{key}].metadata.spec.resourcePolicy needs a policySourceRef (kind ConfigMap or Secret, name, key)"
                    ))
                })?;
            Some((json, rp.block_public_policy))
        }
    };
    Ok(Settings {
        tags: (!s.tags.is_empty()).then_some(s.tags),
        description: s.description.filter(|d| !d.is_empty()),
        string_format,
        kms_key_id: s.kms_key_id.filter(|k| !k.is_empty()),
        resource_policy,
    })
}

fn tags_of(d: &DescribeSecretOutput) -> BTreeMap<String, String> {
    d.tags
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect()
}

fn owned(d: &DescribeSecretOutput) -> bool {
    tags_of(d).get(MANAGED_BY_TAG).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// A property path (`a.b` nests) split into its segments.
fn path(property: &str) -> Vec<&str> {
    property.split('.').collect()
}

type Object = serde_json::Map<String, serde_json::Value>;

fn parse_object(bytes: &[u8], key: &str) -> Result<Object, ProviderError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(ProviderError::invalid_config(format!(
            "remote secret {key} is not a JSON object, so a property cannot be set in or removed from it"
        ))),
    }
}

fn set_path(obj: &mut Object, segs: &[&str], value: serde_json::Value) {
    match segs {
        [] => {}
        [last] => {
            obj.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = obj
                .entry((*first).to_string())
                .or_insert_with(|| serde_json::Value::Object(Object::new()));
            if !entry.is_object() {
                *entry = serde_json::Value::Object(Object::new());
            }
            if let serde_json::Value::Object(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

fn remove_path(obj: &mut Object, segs: &[&str]) -> bool {
    match segs {
        [] => false,
        [last] => obj.remove(*last).is_some(),
        [first, rest @ ..] => {
            let Some(serde_json::Value::Object(inner)) = obj.get_mut(*first) else {
                return false;
            };
            let removed = remove_path(inner, rest);
            if removed && inner.is_empty() {
                obj.remove(*first);
            }
            removed
        }
    }
}

fn has_path(obj: &Object, segs: &[&str]) -> bool {
    match segs {
        [] => false,
        [last] => obj.contains_key(*last),
        [first, rest @ ..] => match obj.get(*first) {
            Some(serde_json::Value::Object(inner)) => has_path(inner, rest),
            _ => false,
        },
    }
}

/// The current value of a secret: its bytes and whether it was stored as a string.
struct Current {
    bytes: Vec<u8>,
    string: bool,
}

fn json_value(v: &[u8]) -> serde_json::Value {
    serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
}

impl SecretsManagerProvider {
    async fn describe(&self, key: &str) -> Result<Option<DescribeSecretOutput>, ProviderError> {
        let id = self.id(key);
        match self.sm(
            "DescribeSecret",
            self.client.describe_secret().secret_id(&id).send().await,
        ) {
            Ok(d) => Ok(Some(d)),
            Err(e) => match errors::classify(&e, "DescribeSecret", key) {
                ProviderError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The AWSCURRENT value, or `None` when the secret has no version yet.
    async fn current(
        &self,
        key: &str,
        d: &DescribeSecretOutput,
    ) -> Result<Option<Current>, ProviderError> {
        if d.version_ids_to_stages
            .as_ref()
            .is_none_or(|v| v.is_empty())
        {
            return Ok(None);
        }
        let out = self
            .sm(
                "GetSecretValue",
                self.client
                    .get_secret_value()
                    .secret_id(self.id(key))
                    .version_stage(eso_provider::DEFAULT_VERSION_STAGE)
                    .send()
                    .await,
            )
            .map_err(|e| errors::classify(&e, "GetSecretValue", key))?;
        Ok(Some(match (out.secret_string, out.secret_binary) {
            (Some(s), _) => Current {
                bytes: s.into_bytes(),
                string: true,
            },
            (None, Some(b)) => Current {
                bytes: b.into_inner(),
                string: false,
            },
            (None, None) => Current {
                bytes: Vec::new(),
                string: false,
            },
        }))
    }

    async fn put_value(
        &self,
        key: &str,
        value: Vec<u8>,
        string: bool,
    ) -> Result<(), ProviderError> {
        let mut req = self.client.put_secret_value().secret_id(self.id(key));
        req = if string {
            req.secret_string(String::from_utf8(value).map_err(|_| {
                ProviderError::invalid_config(format!(
                    "{key}: secretPushFormat string needs a UTF-8 value; use binary"
                ))
            })?)
        } else {
            req.secret_binary(Blob::new(value))
        };
        self.sm("PutSecretValue", req.send().await)
            .map_err(|e| errors::classify(&e, "PutSecretValue", key))?;
        Ok(())
    }

    /// Bring tags, description and resource policy of an existing secret to what the metadata
    /// asks; only what the metadata sets is managed. Returns whether anything was written.
    async fn reconcile_metadata(
        &self,
        key: &str,
        d: &DescribeSecretOutput,
        s: &Settings,
    ) -> Result<bool, ProviderError> {
        let id = self.id(key);
        let mut wrote = false;
        if let Some(want) = &s.tags {
            let have = tags_of(d);
            let set: Vec<Tag> = want
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(*v))
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            let unset: Vec<String> = have
                .keys()
                .filter(|k| k.as_str() != MANAGED_BY_TAG && !want.contains_key(*k))
                .cloned()
                .collect();
            if !set.is_empty() {
                self.sm(
                    "TagResource",
                    self.client
                        .tag_resource()
                        .secret_id(&id)
                        .set_tags(Some(set))
                        .send()
                        .await,
                )
                .map_err(|e| errors::classify(&e, "TagResource", key))?;
                wrote = true;
            }
            if !unset.is_empty() {
                self.sm(
                    "UntagResource",
                    self.client
                        .untag_resource()
                        .secret_id(&id)
                        .set_tag_keys(Some(unset))
                        .send()
                        .await,
                )
                .map_err(|e| errors::classify(&e, "UntagResource", key))?;
                wrote = true;
            }
        }
        if let Some(want) = &s.description
            && d.description.as_deref() != Some(want.as_str())
        {
            self.sm(
                "UpdateSecret",
                self.client
                    .update_secret()
                    .secret_id(&id)
                    .description(want)
                    .send()
                    .await,
            )
            .map_err(|e| errors::classify(&e, "UpdateSecret", key))?;
            wrote = true;
        }
        if let Some((policy, block)) = &s.resource_policy {
            let have = self
                .sm(
                    "GetResourcePolicy",
                    self.client
                        .get_resource_policy()
                        .secret_id(&id)
                        .send()
                        .await,
                )
                .map_err(|e| errors::classify(&e, "GetResourcePolicy", key))?
                .resource_policy;
            let same = match (
                have.as_deref(),
                serde_json::from_str::<serde_json::Value>(policy),
            ) {
                (Some(h), Ok(w)) => serde_json::from_str::<serde_json::Value>(h).ok() == Some(w),
                _ => false,
            };
            if !same {
                self.put_policy(key, policy, *block).await?;
                wrote = true;
            }
        }
        Ok(wrote)
    }

    async fn put_policy(
        &self,
        key: &str,
        policy: &str,
        block: Option<bool>,
    ) -> Result<(), ProviderError> {
        self.sm(
            "PutResourcePolicy",
            self.client
                .put_resource_policy()
                .secret_id(self.id(key))
                .resource_policy(policy)
                .set_block_public_policy(block)
                .send()
                .await,
        )
        .map_err(|e| errors::classify(&e, "PutResourcePolicy", key))?;
        Ok(())
    }

    pub(crate) async fn push(&self, req: &PushRequest) -> Result<PushOutcome, ProviderError> {
        let key = req.remote.key.as_str();
        let s = parse_settings(req)?;
        let Some(d) = self.describe(key).await? else {
            return self.create(req, &s).await;
        };
        if !owned(&d) {
            return Ok(PushOutcome::NotOwned);
        }
        if d.deleted_date.is_some() {
            return Err(ProviderError::unavailable(format!(
                "remote secret {key} is scheduled for deletion; restore it (RestoreSecret) or wait for the recovery window to end"
            )));
        }
        let meta_written = self.reconcile_metadata(key, &d, &s).await?;
        let current = self.current(key, &d).await?;
        let (new, unchanged) = match (&req.remote.property, &current) {
            (None, Some(c)) => (req.value.clone(), c.bytes == req.value),
            (None, None) => (req.value.clone(), false),
            (Some(p), c) => {
                let old = parse_object(c.as_ref().map_or(&[][..], |c| &c.bytes), key)?;
                let mut merged = old.clone();
                set_path(&mut merged, &path(p), json_value(&req.value));
                let bytes = serde_json::to_vec(&merged)
                    .map_err(|e| ProviderError::invalid_config(format!("encoding {key}: {e}")))?;
                (bytes, c.is_some() && merged == old)
            }
        };
        if unchanged {
            return Ok(if meta_written {
                PushOutcome::Updated
            } else {
                PushOutcome::Unchanged
            });
        }
        self.put_value(key, new, s.string_format).await?;
        Ok(PushOutcome::Updated)
    }

    async fn create(&self, req: &PushRequest, s: &Settings) -> Result<PushOutcome, ProviderError> {
        let key = req.remote.key.as_str();
        let value = match &req.remote.property {
            None => req.value.clone(),
            Some(p) => {
                let mut obj = Object::new();
                set_path(&mut obj, &path(p), json_value(&req.value));
                serde_json::to_vec(&obj)
                    .map_err(|e| ProviderError::invalid_config(format!("encoding {key}: {e}")))?
            }
        };
        let mut tags: Vec<Tag> = s
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        tags.push(
            Tag::builder()
                .key(MANAGED_BY_TAG)
                .value(MANAGED_BY_VALUE)
                .build(),
        );
        let description = s
            .description
            .clone()
            .unwrap_or_else(|| format!("secret '{MANAGED_BY_TAG}:{MANAGED_BY_VALUE}'"));
        let mut c = self
            .client
            .create_secret()
            .name(self.id(key))
            .description(description)
            .set_kms_key_id(s.kms_key_id.clone())
            .set_tags(Some(tags));
        c = if s.string_format {
            c.secret_string(String::from_utf8(value).map_err(|_| {
                ProviderError::invalid_config(format!(
                    "{key}: secretPushFormat string needs a UTF-8 value; use binary"
                ))
            })?)
        } else {
            c.secret_binary(Blob::new(value))
        };
        self.sm("CreateSecret", c.send().await)
            .map_err(|e| errors::classify(&e, "CreateSecret", key))?;
        if let Some((policy, block)) = &s.resource_policy {
            self.put_policy(key, policy, *block).await?;
        }
        Ok(PushOutcome::Created)
    }

    pub(crate) async fn delete(
        &self,
        remote: &PushRemoteRef,
    ) -> Result<DeleteOutcome, ProviderError> {
        let key = remote.key.as_str();
        let Some(d) = self.describe(key).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        if d.deleted_date.is_some() {
            return Ok(DeleteOutcome::NotFound);
        }
        if !owned(&d) {
            return Ok(DeleteOutcome::NotOwned);
        }
        if let Some(p) = &remote.property {
            let current = self.current(key, &d).await?;
            let mut obj = parse_object(current.as_ref().map_or(&[][..], |c| &c.bytes), key)?;
            if !remove_path(&mut obj, &path(p)) {
                return Ok(DeleteOutcome::NotFound);
            }
            if !obj.is_empty() {
                let bytes = serde_json::to_vec(&obj)
                    .map_err(|e| ProviderError::invalid_config(format!("encoding {key}: {e}")))?;
                self.put_value(key, bytes, current.is_some_and(|c| c.string))
                    .await?;
                return Ok(DeleteOutcome::Deleted);
            }
        }
        let settings = self.delete_settings.clone().unwrap_or_default();
        let force = settings.force_delete_without_recovery.unwrap_or(false);
        let window = settings.recovery_window_in_days.filter(|_| !force);
        let sent = self
            .client
            .delete_secret()
            .secret_id(self.id(key))
            .set_force_delete_without_recovery(force.then_some(true))
            .set_recovery_window_in_days(window)
            .send()
            .await;
        match self.sm("DeleteSecret", sent) {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) => match errors::classify(&e, "DeleteSecret", key) {
                ProviderError::NotFound { .. } => Ok(DeleteOutcome::NotFound),
                other => Err(other),
            },
        }
    }

    pub(crate) async fn exists(&self, remote: &PushRemoteRef) -> Result<bool, ProviderError> {
        let key = remote.key.as_str();
        let Some(d) = self.describe(key).await? else {
            return Ok(false);
        };
        if d.deleted_date.is_some() {
            return Ok(false);
        }
        let Some(p) = &remote.property else {
            return Ok(true);
        };
        let Some(current) = self.current(key, &d).await? else {
            return Ok(false);
        };
        Ok(parse_object(&current.bytes, key).is_ok_and(|o| has_path(&o, &path(p))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(metadata: serde_json::Value) -> PushRequest {
        PushRequest {
            remote: PushRemoteRef {
                key: "k".into(),
                property: None,
            },
            value: b"v".to_vec(),
            metadata: Some(metadata),
            resolved: BTreeMap::new(),
        }
    }

    #[test]
    fn metadata_follows_eso_format() {
        let s = parse_settings(&req(serde_json::json!({
            "apiVersion": METADATA_API_VERSION, "kind": METADATA_KIND,
            "spec": {"tags": {"team": "a"}, "description": "d", "secretPushFormat": "string", "kmsKeyID": "alias/x"}
        })))
        .unwrap();
        assert!(s.string_format);
        assert_eq!(s.kms_key_id.as_deref(), Some("alias/x"));
        assert_eq!(s.description.as_deref(), Some("d"));
        assert_eq!(s.tags.unwrap().get("team").map(String::as_str), Some("a"));
        for bad in [
            serde_json::json!({"apiVersion": "v1", "kind": METADATA_KIND}),
            serde_json::json!({"apiVersion": METADATA_API_VERSION, "kind": METADATA_KIND, "spec": {"tagz": {}}}),
            serde_json::json!({"apiVersion": METADATA_API_VERSION, "kind": METADATA_KIND, "spec": {"tags": {"managed-by": "me"}}}),
            serde_json::json!({"apiVersion": METADATA_API_VERSION, "kind": METADATA_KIND, "spec": {"secretPushFormat": "yaml"}}),
            serde_json::json!({"apiVersion": METADATA_API_VERSION, "kind": METADATA_KIND, "spec": {"resourcePolicy": {}}}),
        ] {
            let e = parse_settings(&req(bad.clone())).unwrap_err();
            assert!(!e.to_string().contains("\"v\""), "{e}");
        }
    }

    #[test]
    fn property_paths_nest_and_unnest() {
        let mut o = Object::new();
        set_path(&mut o, &path("a.b"), json_value(b"1"));
        set_path(&mut o, &path("c"), json_value(b"2"));
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"a":{"b":"1"},"c":"2"}"#
        );
        assert!(has_path(&o, &path("a.b")));
        assert!(remove_path(&mut o, &path("a.b")));
        assert!(!has_path(&o, &path("a")));
        assert!(!remove_path(&mut o, &path("x")));
        assert!(parse_object(b"not json", "k").is_err());
        assert!(parse_object(b"", "k").unwrap().is_empty());
    }
}
