//! Kafka clients as tributary uses them: transactional producers, `read_committed` consumers and
//! topic administration.
//!
//! Every client is configured here so that the delivery guarantees live in one place: producers are
//! idempotent and transactional (`acks=all`), consumers never read past an open or aborted
//! transaction, and offsets are committed by their owners, not automatically.

mod admin;
mod client;
mod error;

pub use admin::{TopicAdmin, TopicSpec};
pub use client::{ClientSettings, read_committed_consumer, transactional_producer};
pub use error::Error;
