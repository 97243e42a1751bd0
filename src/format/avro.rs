//! Avro.
