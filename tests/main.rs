//! Integration tests against a real PostgreSQL and a real Kafka broker.
//!
//! Start them with `scripts/services.sh up` (or run `scripts/test.sh`, which does). A test whose
//! service is down fails with a message saying so; none is skipped.

mod support;

mod cli;
mod compose;
mod kafka_transactions;
mod offset_store;
mod pgoutput_decode;
mod postgres_replication;
mod replication_connection;
mod rest_api;
mod runtime_store;
mod schema_registry;
mod services;
mod sink_postgres;
mod source_all_types;
mod source_avro;
mod source_kcat;
mod source_options;
mod source_snapshot;
mod source_stream;
mod source_types;
mod source_validate;
mod window_aggregate;
