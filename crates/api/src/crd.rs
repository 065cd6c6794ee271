//! The complete CustomResourceDefinitions and admission policies, as applied to a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;

use crate::{
    ClusterExternalSecret, ClusterPushSecret, ClusterSecretStore, ExternalSecret, GROUP,
    PushSecret, SecretStore, VERSION, VERSION_V1BETA1,
};

/// Label ESO puts on its CRDs.
const COMPONENT_LABEL: (&str, &str) = ("external-secrets.io/component", "controller");

/// The CRDs of `external-secrets.io`: ExternalSecret, SecretStore, ClusterSecretStore and
/// ClusterExternalSecret each serve `v1` (storage) and `v1beta1` (same schema, identity
/// conversion); PushSecret and ClusterPushSecret serve `v1alpha1` (as ESO); then the generator
/// CRDs (`generators.external-secrets.io/v1alpha1`).
///
/// The `v1beta1` version is marked deprecated so `kubectl` prints a hint, but it is served:
/// existing ESO YAML written against `v1beta1` applies unchanged.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        finish(ExternalSecret::crd()),
        finish(SecretStore::crd()),
        finish(ClusterSecretStore::crd()),
        finish(PushSecret::crd()),
        finish(ClusterExternalSecret::crd()),
        finish(ClusterPushSecret::crd()),
        generator(crate::generators::Password::crd()),
        generator(crate::generators::Uuid::crd()),
        generator(crate::generators::EcrAuthorizationToken::crd()),
        generator(crate::generators::StsSessionToken::crd()),
        generator(crate::generators::ClusterGenerator::crd()),
    ]
}

/// A generator CRD: labelled and kept like the others; `spec` is optional as in ESO (a `UUID`
/// is often written without one).
fn generator(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut crd = finish(crd);
    for v in &mut crd.spec.versions {
        if let Some(s) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            && let Some(req) = s.required.as_mut()
        {
            req.retain(|r| r != "spec");
            if req.is_empty() {
                s.required = None;
            }
        }
    }
    crd
}

fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let labels = crd.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(COMPONENT_LABEL.0.to_string(), COMPONENT_LABEL.1.to_string());
    // Keep CRDs (and so every ExternalSecret and every Secret it owns) on `helm uninstall`.
    let annotations = crd.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert("helm.sh/resource-policy".to_string(), "keep".to_string());

    if let Some(v1) = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == VERSION)
        .cloned()
    {
        let mut beta = v1;
        beta.name = VERSION_V1BETA1.to_string();
        beta.served = true;
        beta.storage = false;
        beta.deprecated = Some(true);
        beta.deprecation_warning = Some(format!(
            "{GROUP}/{VERSION_V1BETA1} {} is deprecated; use {GROUP}/{VERSION} (same fields)",
            crd.spec.names.kind
        ));
        crd.spec.versions.push(beta);
    }
    crd
}

/// Admission policies (CEL, no webhook) for rules a CRD schema cannot express because they need
/// the object's namespace: a namespaced `SecretStore` may only reference credentials in its own
/// namespace.
pub fn admission_policies() -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    const NAME: &str = "secretstore-namespace-isolation.external-secrets.io";
    // Every level is guarded with has(): CEL errors on a missing intermediate field, and an
    // erroring expression denies the request.
    let same_ns = |path: &str| {
        let parts: Vec<&str> = path.split('.').collect();
        let mut guards = Vec::new();
        for i in 2..=parts.len() {
            guards.push(format!("!has({})", parts[..i].join(".")));
        }
        guards.push(format!("!has({path}.namespace)"));
        format!(
            "{} || {path}.namespace == object.metadata.namespace",
            guards.join(" || ")
        )
    };
    let refs = [
        "object.spec.provider.aws.auth.secretRef.accessKeyIDSecretRef",
        "object.spec.provider.aws.auth.secretRef.secretAccessKeySecretRef",
        "object.spec.provider.aws.auth.secretRef.sessionTokenSecretRef",
        "object.spec.provider.aws.auth.jwt.serviceAccountRef",
    ];
    let validations = refs
        .iter()
        .map(|r| Validation {
            expression: same_ns(r),
            message: Some(format!(
                "{}: a SecretStore may only reference credentials in its own namespace (leave namespace empty or set it to the store's namespace)",
                r.trim_start_matches("object.")
            )),
            reason: Some("Forbidden".to_string()),
            message_expression: None,
        })
        .collect();
    let policy = ValidatingAdmissionPolicy {
        metadata: ObjectMeta {
            name: Some(NAME.to_string()),
            labels: Some(BTreeMap::from([(
                COMPONENT_LABEL.0.to_string(),
                COMPONENT_LABEL.1.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_string()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![GROUP.to_string()]),
                    api_versions: Some(vec!["*".to_string()]),
                    operations: Some(vec!["CREATE".to_string(), "UPDATE".to_string()]),
                    resources: Some(vec!["secretstores".to_string()]),
                    ..NamedRuleWithOperations::default()
                }]),
                ..MatchResources::default()
            }),
            validations: Some(validations),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        ..ValidatingAdmissionPolicy::default()
    };
    let binding = ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(NAME.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(NAME.to_string()),
            validation_actions: Some(vec!["Deny".to_string()]),
            ..ValidatingAdmissionPolicyBindingSpec::default()
        }),
    };
    (policy, binding)
}
