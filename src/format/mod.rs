//! How change events become Kafka record bytes.
//!
//! Every captured row change is written as a Kafka record whose key and value match, byte for
//! byte where it matters, what Debezium's PostgreSQL connector would produce behind a given
//! Kafka Connect converter. A format turns the [`crate::event`] model into those bytes:
//!
//! ```text
//!   RowChange ──▶ per-table plan (Connect schema + per-column encoding, cached) ──▶ key bytes
//!                                                                             └──▶ value bytes
//! ```
//!
//! - [`json`]: Kafka Connect's `JsonConverter` shape, with `schemas.enable` on
//!   (`{"schema": …, "payload": …}`) or off (payload only).
//! - [`avro`]: Confluent's `AvroConverter` shape: Avro schemas derived from the same Connect
//!   schemas, datums in the Confluent wire format.
//!
//! Both are built on one Connect model (`connect`): the per-column mapping is decided once.
//!
//! The Debezium options that change how values look (`decimal.handling.mode`,
//! `time.precision.mode`, `binary.handling.mode`) are shared by every format and live here.

pub mod avro;
pub(crate) mod connect;
#[cfg(test)]
mod fixtures;
pub mod json;
pub mod registry_client;

use crate::event::TableId;

/// The connector version written into `source.version`, in Debezium's spelling.
pub const CONNECTOR_VERSION: &str = "3.7.0.Final";

/// The connector name written into `source.connector`.
pub const CONNECTOR_NAME: &str = "postgresql";

/// Debezium's `decimal.handling.mode`: how NUMERIC, DECIMAL and MONEY columns are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalHandling {
    /// `precise`: Connect `Decimal` (bytes of the unscaled value), or a `VariableScaleDecimal`
    /// struct when the column has no declared scale. NaN and infinities cannot be written.
    #[default]
    Precise,
    /// `double`: FLOAT64; NaN and infinities become the IEEE values.
    Double,
    /// `string`: the plain decimal text; NaN and infinities as `NAN`, `POSITIVE_INFINITY`,
    /// `NEGATIVE_INFINITY`.
    String,
}

/// Debezium's `time.precision.mode` (the modes tributary supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimePrecision {
    /// `adaptive`: milliseconds for precision ≤ 3, microseconds above.
    #[default]
    Adaptive,
    /// `adaptive_time_microseconds`: as `adaptive`, but TIME is always microseconds.
    AdaptiveTimeMicroseconds,
    /// `connect`: Kafka Connect's own Date/Time/Timestamp logical types (milliseconds).
    Connect,
}

/// Debezium's `binary.handling.mode`: how BYTEA columns and message contents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryHandling {
    /// `bytes`: Connect BYTES (the JSON converter prints them as base64).
    #[default]
    Bytes,
    /// `base64`: a STRING holding standard base64.
    Base64,
    /// `base64-url-safe`: a STRING holding URL-safe base64 (padded, as Java's encoder does).
    Base64UrlSafe,
    /// `hex`: a STRING holding lowercase hexadecimal.
    Hex,
}

/// What the connector configuration adds to every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorContext {
    /// `topic.prefix`: the first part of every topic and schema name, and `source.name`.
    pub topic_prefix: String,
    /// `database.dbname`: `source.db`.
    pub database: String,
    /// `source.version`; normally [`CONNECTOR_VERSION`].
    pub connector_version: &'static str,
}

impl ConnectorContext {
    pub fn new(topic_prefix: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            topic_prefix: topic_prefix.into(),
            database: database.into(),
            connector_version: CONNECTOR_VERSION,
        }
    }
}

/// Why an event could not be encoded. All of these are permanent: the same event fails the same
/// way on every retry, so the pipeline must stop (as Debezium's default `fail` mode does) or be
/// reconfigured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "column {column} of table {table} holds NaN or Infinity, which decimal.handling.mode=precise \
         cannot represent; set decimal.handling.mode to string or double"
    )]
    SpecialNumericInPreciseMode { table: TableId, column: String },
    #[error(
        "column {column} of table {table} is an unchanged TOASTed value that its type cannot carry as \
         the unavailable-value placeholder; run ALTER TABLE {table} REPLICA IDENTITY FULL to capture it"
    )]
    UnavailableValueNotRepresentable { table: TableId, column: String },
    #[error("column {column} of table {table} carries a value that is not a {expected}")]
    UnexpectedValue {
        table: TableId,
        column: String,
        expected: &'static str,
    },
    #[error("a row of table {table} has {found} columns but its schema has {expected}")]
    RowShape {
        table: TableId,
        expected: usize,
        found: usize,
    },
    #[error("the Avro schema of {subject} is not valid Avro: {reason}")]
    InvalidAvroSchema { subject: String, reason: String },
    /// The value does not fit the schema built for it: a fault in the mapping, not in the data.
    /// No detail from the Avro library: its messages can quote row values.
    #[error("an event of {subject} does not fit its Avro schema; please report this as a bug")]
    AvroEncoding { subject: String },
    #[error("a {op} event for table {table} has no {image} row image")]
    MissingImage {
        table: TableId,
        op: &'static str,
        image: &'static str,
    },
}

impl Error {
    /// Encoding errors never heal by retrying.
    pub fn is_transient(&self) -> bool {
        false
    }
}
