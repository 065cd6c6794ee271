//! AWS Systems Manager Parameter Store (`service: ParameterStore`).
//!
//! Reads use GetParameters (10 names per call) for current values by name, GetParameter for
//! versions, labels and ARNs, always WithDecryption so SecureString values arrive decrypted;
//! `metadataPolicy: Fetch` uses ListTagsForResource; `find` uses GetParametersByPath (name
//! regexp, optionally under `path`) or DescribeParameters with tag filters; change detection and
//! validation use DescribeParameters, which reads no value.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ssm::types::{ParameterStringFilter, ResourceTypeForTagging};
use eso_provider::{
    Capabilities, ErrorClass, FindQuery, ProviderError, RemoteRef, RemoteSecret, SecretsProvider,
    VersionSelector,
};

use crate::errors;

/// Largest name list GetParameters accepts.
pub const GET_PARAMETERS_LIMIT: usize = 10;

/// Largest page GetParametersByPath serves.
const BY_PATH_PAGE: i32 = 10;

/// Largest page DescribeParameters serves.
const DESCRIBE_PAGE: i32 = 50;

/// Parameter Store for one store and credential identity.
#[derive(Clone, Debug)]
pub struct ParameterStoreProvider {
    /// Set once GetParameters is denied: the identity only has ssm:GetParameter (ESO's minimal
    /// policy), so reads go one by one from then on.
    no_batch: Arc<AtomicBool>,
    /// Set once GetParametersByPath is denied: `find` by name lists with DescribeParameters instead.
    no_by_path: Arc<AtomicBool>,
    client: aws_sdk_ssm::Client,
    prefix: String,
}

fn value_of(key: &str, op: &str, value: Option<String>) -> Result<RemoteSecret, ProviderError> {
    match value {
        Some(v) => Ok(RemoteSecret::string(v)),
        None => Err(ProviderError::unavailable(format!(
            "{op} {key}: AWS answered without a parameter value"
        ))),
    }
}

fn filter(key: &str, option: &str, value: &str) -> Result<ParameterStringFilter, ProviderError> {
    ParameterStringFilter::builder()
        .key(key)
        .option(option)
        .values(value)
        .build()
        .map_err(|e| ProviderError::invalid_config(format!("parameter filter {key}: {e}")))
}

impl ParameterStoreProvider {
    pub(crate) fn new(client: aws_sdk_ssm::Client, prefix: String) -> Self {
        Self {
            no_batch: Arc::new(AtomicBool::new(false)),
            no_by_path: Arc::new(AtomicBool::new(false)),
            client,
            prefix,
        }
    }

    /// The parameter name AWS sees: prefix + key.
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// ESO's selector form: `name:version` (a version number or a label).
    fn selector(&self, remote: &RemoteRef) -> String {
        let name = self.name(&remote.key);
        match &remote.version {
            VersionSelector::Current => name,
            VersionSelector::Stage(v) => format!("{name}:{v}"),
            // ESO passes `uuid/<id>` through unchanged; Parameter Store rejects it the same way.
            VersionSelector::Id(id) => format!("{name}:uuid/{id}"),
        }
    }

    async fn tags(&self, key: &str) -> Result<RemoteSecret, ProviderError> {
        let out = self
            .client
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(self.name(key))
            .send()
            .await
            .map_err(|e| errors::classify(&e, "ListTagsForResource", key))?;
        let tags = out
            .tag_list
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        Ok(RemoteSecret::Tags(tags))
    }

    /// One GetParameters call: full name → value for the names AWS returned.
    async fn batch(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        let out = self
            .client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| errors::classify(&e, "GetParameters", &names.join(",")))?;
        let mut found = BTreeMap::new();
        for p in out.parameters.unwrap_or_default() {
            // A selector in the answer means a versioned read; only current values are batched.
            if p.selector.as_deref().is_some_and(|s| !s.is_empty()) {
                continue;
            }
            if let (Some(n), Some(v)) = (p.name, p.value) {
                found.insert(n, RemoteSecret::string(v));
            }
        }
        Ok(found)
    }

    /// Values of full parameter names (from a listing), GetParameters 10 at a time. Names that
    /// vanished between the listing and the read are left out.
    async fn values_of(
        &self,
        names: Vec<String>,
        out: &mut BTreeMap<String, RemoteSecret>,
    ) -> Result<(), ProviderError> {
        for chunk in names.chunks(GET_PARAMETERS_LIMIT) {
            if !self.no_batch.load(Ordering::Relaxed) {
                match self.batch(chunk).await {
                    Ok(found) => {
                        out.extend(found);
                        continue;
                    }
                    Err(e) if e.class() == ErrorClass::AccessDenied => {
                        self.no_batch.store(true, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
            for n in chunk {
                match self.get_one(n, n).await {
                    Ok(v) => {
                        out.insert(n.clone(), v);
                    }
                    Err(ProviderError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// GetParameter WithDecryption for a selector (`name`, `name:3`, `name:label`, an ARN).
    async fn get_one(&self, selector: &str, key: &str) -> Result<RemoteSecret, ProviderError> {
        let out = self
            .client
            .get_parameter()
            .name(selector)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| errors::classify(&e, "GetParameter", key))?;
        value_of(key, "GetParameter", out.parameter.and_then(|p| p.value))
    }

    /// DescribeParameters with `filters`, every page: full names.
    async fn describe(
        &self,
        filters: Vec<ParameterStringFilter>,
        what: &str,
    ) -> Result<Vec<aws_sdk_ssm::types::ParameterMetadata>, ProviderError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_parameters()
                .set_parameter_filters((!filters.is_empty()).then(|| filters.clone()))
                .set_next_token(token.take())
                .max_results(DESCRIBE_PAGE)
                .send()
                .await
                .map_err(|e| errors::classify(&e, "DescribeParameters", what))?;
            all.extend(page.parameters.unwrap_or_default());
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(all)
    }

    /// GetParametersByPath, recursive, decrypted, every page; `keep` filters names.
    async fn by_path(
        &self,
        path: &str,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(true)
                .max_results(BY_PATH_PAGE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| errors::classify(&e, "GetParametersByPath", path))?;
            for p in page.parameters.unwrap_or_default() {
                if let (Some(n), Some(v)) = (p.name, p.value)
                    && keep(&n)
                {
                    out.insert(n, RemoteSecret::string(v));
                }
            }
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SecretsProvider for ParameterStoreProvider {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<RemoteSecret, ProviderError> {
        if remote.metadata {
            return self.tags(&remote.key).await;
        }
        self.get_one(&self.selector(remote), &remote.key).await
    }

    /// Current values by name: [`GET_PARAMETERS_LIMIT`] per GetParameters (until AWS denies the
    /// call); others alone.
    fn batch_limit(&self, remote: &RemoteRef) -> usize {
        if crate::batchable(remote) && !self.no_batch.load(Ordering::Relaxed) {
            GET_PARAMETERS_LIMIT
        } else {
            1
        }
    }

    /// Current values by name are read with GetParameters, 10 per call; versions, labels, ARNs,
    /// tags, and names AWS did not return in a batch are read one by one (so a missing
    /// parameter is only reported NotFound on GetParameter's authoritative ParameterNotFound).
    async fn get_secrets(&self, remotes: &[RemoteRef]) -> Vec<Result<RemoteSecret, ProviderError>> {
        let batchable: Vec<usize> = remotes
            .iter()
            .enumerate()
            .filter(|(_, r)| crate::batchable(r))
            .map(|(i, _)| i)
            .collect();
        let mut out: Vec<Option<Result<RemoteSecret, ProviderError>>> = vec![None; remotes.len()];
        if batchable.len() > 1 && !self.no_batch.load(Ordering::Relaxed) {
            for chunk in batchable.chunks(GET_PARAMETERS_LIMIT) {
                let mut names: Vec<String> = chunk
                    .iter()
                    .filter_map(|i| remotes.get(*i))
                    .map(|r| self.name(&r.key))
                    .collect();
                names.sort();
                names.dedup();
                match self.batch(&names).await {
                    Ok(found) => {
                        for i in chunk {
                            if let (Some(r), Some(slot)) = (remotes.get(*i), out.get_mut(*i))
                                && let Some(v) = found.get(&self.name(&r.key))
                            {
                                *slot = Some(Ok(v.clone()));
                            }
                        }
                    }
                    Err(e) if e.class() == ErrorClass::AccessDenied => {
                        self.no_batch.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        for i in chunk {
                            if let Some(slot) = out.get_mut(*i) {
                                *slot = Some(Err(e.clone()));
                            }
                        }
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(remotes.len());
        for (slot, r) in out.into_iter().zip(remotes) {
            results.push(match slot {
                Some(v) => v,
                None => self.get_secret(r).await,
            });
        }
        results
    }

    /// ESO's two find modes. `name.regexp` without tags: GetParametersByPath under `path`
    /// (default `/`), recursive, names matched by the regexp (DescribeParameters + GetParameters
    /// when GetParametersByPath is denied). `tags`: DescribeParameters with one `tag:<key>`
    /// Equals filter per tag (and `path` as a recursive Path filter), names matched by the
    /// regexp if one is given, then GetParameters. Keys are full parameter names.
    async fn find(
        &self,
        query: &FindQuery,
    ) -> Result<BTreeMap<String, RemoteSecret>, ProviderError> {
        let re = match &query.name_regexp {
            Some(r) => Some(
                regex::Regex::new(r)
                    .map_err(|e| ProviderError::invalid_config(format!("find.name.regexp: {e}")))?,
            ),
            None => None,
        };
        if re.is_none() && query.tags.is_empty() {
            return Err(ProviderError::invalid_config(
                "unexpected find operator: set name.regexp or tags",
            ));
        }
        let matches = |n: &str| re.as_ref().is_none_or(|re| re.is_match(n));
        let path = query.path.as_deref().unwrap_or("/");
        if query.tags.is_empty() && !self.no_by_path.load(Ordering::Relaxed) {
            match self.by_path(path, &matches).await {
                Ok(found) => return Ok(found),
                Err(e) if e.class() == ErrorClass::AccessDenied => {
                    tracing::info!(
                        path,
                        "GetParametersByPath denied; listing with DescribeParameters instead (grant ssm:GetParametersByPath to save calls)"
                    );
                    self.no_by_path.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let mut filters = Vec::new();
        for (k, v) in &query.tags {
            filters.push(filter(&format!("tag:{k}"), "Equals", v)?);
        }
        if query.path.is_some() || query.tags.is_empty() {
            filters.push(filter("Path", "Recursive", path)?);
        }
        let names: Vec<String> = self
            .describe(filters, path)
            .await?
            .into_iter()
            .filter_map(|p| p.name)
            .filter(|n| matches(n))
            .collect();
        let mut out = BTreeMap::new();
        self.values_of(names, &mut out).await?;
        Ok(out)
    }

    /// DescribeParameters (50 per call, names under the store prefix): name (prefix stripped)
    /// and ARN → LastModifiedDate. No value is read.
    async fn last_changed(&self) -> Result<Option<BTreeMap<String, SystemTime>>, ProviderError> {
        let filters = if self.prefix.is_empty() {
            Vec::new()
        } else {
            vec![filter("Name", "BeginsWith", &self.prefix)?]
        };
        let mut out = BTreeMap::new();
        for p in self.describe(filters, &self.prefix).await? {
            let Some(changed) = p
                .last_modified_date
                .and_then(|d| SystemTime::try_from(d).ok())
            else {
                continue;
            };
            if let Some(name) = p
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(self.prefix.as_str()))
            {
                out.insert(name.to_string(), changed);
            }
            if let Some(arn) = p.arn {
                out.insert(arn, changed);
            }
        }
        Ok(Some(out))
    }

    /// DescribeParameters with MaxResults 1: proves the credentials and ssm:DescribeParameters.
    async fn validate(&self) -> Result<Capabilities, ProviderError> {
        self.client
            .describe_parameters()
            .max_results(1)
            .send()
            .await
            .map_err(|e| errors::classify(&e, "DescribeParameters", &self.prefix))?;
        Ok(Capabilities::ReadOnly)
    }

    /// PutParameter is not implemented: Parameter Store stores cannot be pushed to.
    fn capabilities(&self) -> Capabilities {
        Capabilities::ReadOnly
    }
}
