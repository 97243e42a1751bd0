//! Kafka clients as tributary uses them: transactional producers, `read_committed` consumers,
//! topic administration, the compacted state topics and the source offset store.
//!
//! Every client is configured here so that the delivery guarantees live in one place: producers are
//! idempotent (`acks=all`) and, for change events, transactional; consumers never read past an open or aborted
//! transaction, and offsets are committed by their owners, not automatically.

mod admin;
mod bulk;
mod client;
pub mod compacted;
mod error;
mod offsets;

pub use admin::{TopicAdmin, TopicSpec};
pub use bulk::{
    BulkContext, BulkProducer, OwnedRecord, Refused, TopicHandle, bulk_transactional_producer,
};
pub use client::{
    ClientSettings, idempotent_producer, read_committed_consumer, transactional_producer,
};
pub use error::Error;
pub use offsets::{DEFAULT_OFFSETS_TOPIC, OffsetRecord, OffsetStore, SourceOffset};
