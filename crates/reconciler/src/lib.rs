//! kube-runtime controllers for ExternalSecret, SecretStore and ClusterSecretStore, embeddable in other Rust controllers.
#![warn(missing_docs)]
