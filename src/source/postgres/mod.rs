//! The PostgreSQL source: logical replication (pgoutput) into change events.

pub mod replication;
pub mod tls;
