//! The PostgreSQL source: logical replication (pgoutput) and the decoding of column values.

pub mod types;
