//! tributary: change data capture from PostgreSQL to Kafka, exactly once.
//!
//! The module layout follows `docs/architecture.md`: one module per box of the pipeline.

/// mimalloc for every binary built on this crate (the service and the benchmarks): the
/// sink and the window stage allocate and free small values at a high rate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
