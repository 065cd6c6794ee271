//! Who may write the target Secret: ESO's creationPolicy matrix plus a guard that refuses to
//! overwrite a Secret nobody asked us to manage.
//!
//! ## The decision for pre-existing Secrets (ESO #2416, #4548)
//! ESO's `Owner` policy silently adopts an existing Secret of the same name and replaces its data
//! (it wiped argocd-secret that way). Here, under `Owner` and `Orphan`, an existing Secret is
//! written only when it is already ours: controlled by this ExternalSecret, or carrying the
//! `reconcile.external-secrets.io/managed=true` label (a Secret ESO or this operator manages — so
//! an in-place takeover from ESO works), or annotated [`ANNOTATION_ALLOW_ADOPTION`]`: "true"` by
//! its owner. Anything else is refused with Ready=False and a message that says how to proceed.
//! `Merge` and `CreateOrMerge` are explicit requests to write into an existing Secret and are
//! allowed.

use eso_api::{CreationPolicy, well_known::LABEL_MANAGED};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Annotation a user puts on a pre-existing Secret to let an ExternalSecret with
/// creationPolicy Owner/Orphan take it over.
pub const ANNOTATION_ALLOW_ADOPTION: &str = "external-secrets.io/allow-adoption";

/// What is known about an existing target Secret.
#[derive(Clone, Debug, Default)]
pub struct ExistingTarget<'a> {
    /// Its ownerReferences.
    pub owner_references: &'a [OwnerReference],
    /// Value of the managed label.
    pub managed_label: Option<&'a str>,
    /// Value of the adoption annotation.
    pub allow_adoption: Option<&'a str>,
}

/// What to do with the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create the Secret (it does not exist).
    Create,
    /// Write the Secret (replace our data: Owner/Orphan).
    Write,
    /// Merge our keys into the existing Secret (Merge/CreateOrMerge).
    Merge,
    /// Do nothing, successfully (creationPolicy None).
    Nothing,
    /// Merge policy and the Secret does not exist: wait (Ready=True, SecretMissing).
    MissingForMerge,
    /// Controlled by another ExternalSecret.
    OwnedByOtherExternalSecret(String),
    /// Controlled by some other controller.
    ControlledByOther(String),
    /// Exists, not ours, not adoptable.
    RefuseForeign,
}

/// The controller ownerReference, if any.
pub fn controller_of(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter().find(|r| r.controller == Some(true))
}

fn is_external_secret_ref(r: &OwnerReference) -> bool {
    r.kind == "ExternalSecret" && r.api_version.starts_with("external-secrets.io/")
}

/// Decide, given the creation policy, this ExternalSecret's name and the existing target (if any).
pub fn decide(
    policy: CreationPolicy,
    es_name: &str,
    existing: Option<&ExistingTarget<'_>>,
) -> Decision {
    if policy == CreationPolicy::None {
        return Decision::Nothing;
    }
    let Some(existing) = existing else {
        return match policy {
            CreationPolicy::Merge => Decision::MissingForMerge,
            _ => Decision::Create,
        };
    };
    let controller = controller_of(existing.owner_references);
    if let Some(c) = controller {
        if is_external_secret_ref(c) {
            if c.name != es_name {
                return Decision::OwnedByOtherExternalSecret(c.name.clone());
            }
        } else if policy == CreationPolicy::Owner {
            return Decision::ControlledByOther(format!("{}/{}", c.kind, c.name));
        }
    }
    match policy {
        CreationPolicy::Merge | CreationPolicy::CreateOrMerge => Decision::Merge,
        CreationPolicy::Owner | CreationPolicy::Orphan => {
            let ours = controller.is_some_and(|c| is_external_secret_ref(c) && c.name == es_name);
            let managed = existing.managed_label == Some("true");
            let adoptable = existing.allow_adoption == Some("true");
            if ours || managed || adoptable {
                Decision::Write
            } else {
                Decision::RefuseForeign
            }
        }
        CreationPolicy::None => Decision::Nothing,
    }
}

/// The label that marks Secrets as managed.
pub fn managed_label() -> &'static str {
    LABEL_MANAGED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es_ref(name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "external-secrets.io/v1".into(),
            kind: "ExternalSecret".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn matrix() {
        use CreationPolicy::{CreateOrMerge, Merge, Orphan, Owner};
        assert_eq!(decide(Owner, "a", Option::None), Decision::Create);
        assert_eq!(decide(Orphan, "a", Option::None), Decision::Create);
        assert_eq!(decide(CreateOrMerge, "a", Option::None), Decision::Create);
        assert_eq!(decide(Merge, "a", Option::None), Decision::MissingForMerge);
        assert_eq!(
            decide(CreationPolicy::None, "a", Option::None),
            Decision::Nothing
        );

        let mine = [es_ref("a")];
        let t = ExistingTarget {
            owner_references: &mine,
            ..Default::default()
        };
        assert_eq!(decide(Owner, "a", Some(&t)), Decision::Write);
        assert_eq!(decide(Merge, "a", Some(&t)), Decision::Merge);

        let other = [es_ref("b")];
        let t = ExistingTarget {
            owner_references: &other,
            managed_label: Some("true"),
            ..Default::default()
        };
        assert_eq!(
            decide(Owner, "a", Some(&t)),
            Decision::OwnedByOtherExternalSecret("b".into())
        );
        assert_eq!(
            decide(Merge, "a", Some(&t)),
            Decision::OwnedByOtherExternalSecret("b".into())
        );

        let mut dep = es_ref("web");
        dep.api_version = "apps/v1".into();
        dep.kind = "Deployment".into();
        let deps = [dep];
        let t = ExistingTarget {
            owner_references: &deps,
            managed_label: Some("true"),
            ..Default::default()
        };
        assert_eq!(
            decide(Owner, "a", Some(&t)),
            Decision::ControlledByOther("Deployment/web".into())
        );
        assert_eq!(decide(Orphan, "a", Some(&t)), Decision::Write);
    }

    #[test]
    fn foreign_secrets_are_not_clobbered() {
        use CreationPolicy::*;
        let t = ExistingTarget::default();
        assert_eq!(decide(Owner, "a", Some(&t)), Decision::RefuseForeign);
        assert_eq!(decide(Orphan, "a", Some(&t)), Decision::RefuseForeign);
        assert_eq!(decide(Merge, "a", Some(&t)), Decision::Merge);
        assert_eq!(decide(CreateOrMerge, "a", Some(&t)), Decision::Merge);
        // ESO-managed (takeover) and explicitly adoptable Secrets are written.
        let t = ExistingTarget {
            managed_label: Some("true"),
            ..Default::default()
        };
        assert_eq!(decide(Owner, "a", Some(&t)), Decision::Write);
        let t = ExistingTarget {
            allow_adoption: Some("true"),
            ..Default::default()
        };
        assert_eq!(decide(Owner, "a", Some(&t)), Decision::Write);
    }
}
