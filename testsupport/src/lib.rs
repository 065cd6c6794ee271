//! Helpers shared by the workspace's integration tests (a dev-dependency of each crate that has
//! some), `cargo xtask bench` and `cargo xtask demo` (a normal dependency of xtask: std and
//! serde_json only).
//!
//! - [`testenv`]: find the local control plane started by `cargo xtask testenv up`.
//! - [`cluster`]: install the CRDs once, make namespaces, apply YAML, wait, read Secrets.
//! - [`operator`]: the `eso-operator` binary as a child process, and store manifests.
//! - [`private`]: a private control plane for one test (`testenv up --instance`).
//! - [`moto`]: a tiny client for moto's Secrets Manager and Parameter Store APIs.
//! - [`proxy`]: a counting, fault-injecting HTTP proxy in front of moto.
//!
//! This is test code: helpers panic with a message instead of returning errors.
#![warn(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::unwrap_in_result,
    clippy::expect_used,
    clippy::panic
)]

pub mod cluster;
pub mod moto;
pub mod operator;
pub mod private;
pub mod proxy;
pub mod testenv;
