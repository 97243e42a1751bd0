//! Sinks: change topics in Kafka applied to other systems, exactly once.

pub mod postgres;
