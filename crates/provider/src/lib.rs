//! The provider trait every secret backend implements, its error classes, shared caches, and the `fake` provider.
#![warn(missing_docs)]
