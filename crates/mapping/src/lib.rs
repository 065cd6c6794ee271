//! Pure mapping engine: remote secret values + ExternalSecret spec -> Kubernetes Secret data.
//! No I/O, no async. (Being written.)
#![warn(missing_docs)]

pub mod remote;
pub use remote::*;
