//! Configuration: the worker's own file, and connector configs with Debezium/Kafka Connect key
//! names. Validation reports every bad key at once, each with what is wrong and what to do.

mod connector;
pub mod converter;
pub mod definitions;
pub(crate) mod keys;
pub mod postgres_source;
mod providers;
mod ssl;
mod worker;

pub use connector::{ConnectorConfig, config_string};
pub use converter::{Converter, RegistryConfig};
pub use definitions::{
    ConfigGroup, ConfigKeyDefinition, ConfigKind, Importance, Width, config_groups,
    definitions_json, postgres_source_definition, postgres_source_definitions,
};
pub use keys::{ValidationError, ValidationErrors};
pub use postgres_source::{
    AutocreateMode, BinaryHandling, DecimalHandling, PostgresSourceConfig, SnapshotMode,
    SnapshotSettings, TablePatterns, TimePrecision,
};
pub use providers::resolve as resolve_providers;
pub use ssl::{SslConfig, SslMode};
pub use worker::WorkerConfig;
