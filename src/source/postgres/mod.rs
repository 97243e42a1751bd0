//! The PostgreSQL source: the logical replication stream (pgoutput) turned into change events.

pub mod frames;
pub mod pgoutput;
pub mod replication;
pub mod tls;
