//! tributary: change data capture from PostgreSQL to Kafka, exactly once.
//!
//! The module layout follows `docs/architecture.md`: one module per box of the pipeline.

pub mod api;
pub mod config;
pub mod event;
pub mod format;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod window;
