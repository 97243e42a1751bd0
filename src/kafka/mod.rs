//! Kafka clients as tributary uses them: transactional producers, `read_committed` consumers,
//! topic administration and the source offset store.
//!
//! Every client is configured here so that the delivery guarantees live in one place: producers are
//! idempotent and transactional (`acks=all`), consumers never read past an open or aborted
//! transaction, and offsets are committed by their owners, not automatically.

mod admin;
mod client;
mod error;
mod offsets;

pub use admin::{TopicAdmin, TopicSpec};
pub use client::{ClientSettings, read_committed_consumer, transactional_producer};
pub use error::Error;
pub use offsets::{DEFAULT_OFFSETS_TOPIC, OffsetRecord, OffsetStore, SourceOffset};
