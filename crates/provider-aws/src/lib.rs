//! AWS Secrets Manager provider for eso-provider. The only crate in the workspace that links the AWS SDK.
#![warn(missing_docs)]
