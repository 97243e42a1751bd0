//! The PostgreSQL source: the logical replication stream (pgoutput) turned into change events.

mod copy_format;
pub mod database;
mod encode;
mod error;
pub mod frames;
pub mod pgoutput;
pub mod relations;
pub mod replication;
pub mod snapshot;
pub mod stream;
pub mod tls;
pub mod types;
pub mod validate;

pub use error::Error;
