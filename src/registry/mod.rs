//! The built-in schema registry: Confluent Schema Registry semantics for Avro schemas, kept on a
//! compacted Kafka topic (`_schemas`) in Confluent's own record format, so ids survive restarts.
//!
//! - Subjects hold versions 1, 2, …; each version has a schema id. Ids are global: the same
//!   schema (see [`state`] for what "same" means) has one id in every subject.
//! - Registering a schema the subject already holds returns the existing id and writes nothing.
//! - A new version must be compatible with earlier ones under the subject's level (or the global
//!   one; BACKWARD by default), checked with apache-avro's schema resolution rules.
//! - Deletes are soft first (marked deleted, the schema stays readable by id) and permanent only
//!   after that, as in Confluent.
//!
//! The HTTP API over it is in [`crate::api::registry`].

mod compatibility;
mod error;
mod records;
pub mod state;
mod store;

pub use compatibility::{CompatibilityLevel, Earlier, check, check_one};
pub use error::{RegistryError, StoreError};
pub use records::{Record, SchemaValue};
pub use state::{Candidate, RegisteredSchema, VersionSelector};
pub use store::{DEFAULT_SCHEMAS_TOPIC, SchemaRegistry};
