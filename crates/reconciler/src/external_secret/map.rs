//! Map: what the spec asks for ([`plan`]) and the Secret it yields from what was fetched
//! ([`map`]), both through the pure mapping engine (`eso_mapping`).

use eso_api::ExternalSecret;
use eso_mapping::Request;

use super::SyncFailure;
use super::fetch::Inputs;

/// The provider requests the spec needs.
pub(crate) fn plan(es: &ExternalSecret) -> Result<Vec<Request>, SyncFailure> {
    eso_mapping::plan(&es.spec).map_err(|e| SyncFailure::Mapping(e.to_string()))
}

/// The Secret's data, labels, annotations, type and finalizers (and the keys the provider did
/// not have, for `MissingProviderSecret` events). A spec with a template (where the CPU goes:
/// template functions, PKCS#12, a budget-exhausting template) is mapped on the blocking pool
/// ([`crate::offload`]); plain key mapping, microseconds, stays inline, so a no-op refresh pays
/// no thread hand-off and no spec clone.
pub(crate) async fn map(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    inputs: Inputs,
) -> Result<eso_mapping::Mapped, SyncFailure> {
    if es.spec.target.template.is_some() {
        return crate::offload::map(es, ns, name, inputs.fetched, inputs.template_sources)
            .await
            .map_err(|e| SyncFailure::Mapping(e.to_string()));
    }
    map_inline(es, ns, name, &inputs)
}

fn map_inline(
    es: &ExternalSecret,
    ns: &str,
    name: &str,
    inputs: &Inputs,
) -> Result<eso_mapping::Mapped, SyncFailure> {
    let input = eso_mapping::MappingInput {
        namespace: ns,
        name,
        spec: &es.spec,
        labels: es.metadata.labels.as_ref(),
        annotations: es.metadata.annotations.as_ref(),
        fetched: &inputs.fetched,
        template_sources: &inputs.template_sources,
    };
    eso_mapping::map(&input).map_err(|e| SyncFailure::Mapping(e.to_string()))
}
