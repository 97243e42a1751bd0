//! tributary: change data capture from PostgreSQL to Kafka, exactly once.
//!
//! The module layout follows `docs/architecture.md`: one module per box of the pipeline.

/// mimalloc for every binary built on this crate (the service and the benchmarks): the
/// sink and the window stage allocate and free small values at a high rate. With the `override`
/// feature it also serves C's malloc, so librdkafka's per-message buffers (allocated on one
/// thread, freed on another) skip glibc's arenas, and `kafka::bulk` may hand Rust buffers to
/// librdkafka's `free` (checked at run time); `no_thp` keeps it from asking for transparent
/// huge pages, whose 2 MiB zeroing on first touch cost a snapshot more than it saved.
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
