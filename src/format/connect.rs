//! The Kafka Connect model both formats are built on.
//!
//! Debezium describes every event with a Kafka Connect schema; a converter then renders schema and
//! data in its own way (`JsonConverter` as JSON, Confluent's `AvroConverter` as Avro). This module
//! holds what does not depend on the converter:
//!
//! - [`ConnectSchema`]: enough of Connect's schema model (type, optional, name, version, doc,
//!   parameters, default) to print either rendering;
//! - the per-column mapping ([`column_mapping`]): PostgresValueConverter's choice of Connect schema
//!   and of value conversion ([`Encoding`]) for a PostgreSQL type under the configured modes;
//! - the fixed schemas (`source`, `transaction`, message events) and the key/envelope schemas of a
//!   table;
//! - the value arithmetic both renderings share (decimal bytes, bit strings, durations, ISO
//!   timestamps, the unavailable-value placeholder).

use std::sync::Arc;

use bigdecimal::{BigDecimal, RoundingMode, ToPrimitive};
use md5::{Digest, Md5};
use serde_json::{Map, Value as Json, json};

use super::{BinaryHandling, DecimalHandling, Error, TimePrecision};
use crate::event::{
    BaseType, Column, Date, Numeric, PgType, Row, TableSchema, Timestamp, TypeKind,
};

/// The connector options that decide a column's Connect schema and how its values look; every
/// format takes them from its own options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueModes {
    pub(crate) decimal_handling: DecimalHandling,
    pub(crate) time_precision: TimePrecision,
    pub(crate) binary_handling: BinaryHandling,
    pub(crate) money_fraction_digits: u32,
}

/// Debezium's default `unavailable.value.placeholder`.
pub const DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// `io.debezium.time.MicroDuration`'s average month: 365.25 / 12 days.
pub(crate) const DAYS_PER_MONTH_AVG: f64 = 365.25 / 12.0;

pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// pgjdbc's `PGStatement.DATE_POSITIVE_INFINITY` / `DATE_NEGATIVE_INFINITY`, which Debezium
/// writes (as microseconds) for `timestamp 'infinity'` / `'-infinity'`.
pub(crate) const TIMESTAMP_POSITIVE_INFINITY_MICROS: i64 = 9_223_372_036_825_200_000;
pub(crate) const TIMESTAMP_NEGATIVE_INFINITY_MICROS: i64 = -9_223_372_036_832_400_000;

/// Debezium maps `date 'infinity'` / `'-infinity'` to the LocalDates -5877611-06-21 and
/// -5877611-06-22 and writes their epoch days.
pub(crate) const DATE_POSITIVE_INFINITY_DAYS: i32 = -2_147_472_693;
pub(crate) const DATE_NEGATIVE_INFINITY_DAYS: i32 = -2_147_472_692;

/// `source.snapshot`'s allowed values, in `SnapshotRecord` order.
pub(crate) const SNAPSHOT_ALLOWED: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";
/// The `transaction` block of a data event (`provide.transaction.metadata=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionBlock {
    /// `"<txId>:<LSN>"`.
    pub id: String,
    /// 1-based position of the event in its transaction.
    pub total_order: i64,
    /// 1-based position of the event among its table's events in the transaction.
    pub data_collection_order: i64,
}

pub(crate) fn check_row_shape(table: &TableSchema, row: &Row) -> Result<(), Error> {
    if row.0.len() != table.columns.len() {
        return Err(Error::RowShape {
            table: table.id.clone(),
            expected: table.columns.len(),
            found: row.0.len(),
        });
    }
    Ok(())
}

/// The configured placeholder in the forms Debezium derives from it.
#[derive(Debug)]
pub(crate) struct Placeholder {
    pub(crate) bytes: Vec<u8>,
    pub(crate) text: String,
    /// `UUID.nameUUIDFromBytes(bytes)`.
    pub(crate) uuid: String,
}

impl Placeholder {
    pub(crate) fn new(configured: &str) -> Self {
        let bytes = configured
            .strip_prefix("hex:")
            .and_then(decode_hex)
            .unwrap_or_else(|| configured.as_bytes().to_vec());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let uuid = name_based_uuid(&bytes);
        Self { bytes, text, uuid }
    }
}

pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A version-3 (MD5, name-based) UUID of `name`, as Java's `UUID.nameUUIDFromBytes`.
pub(crate) fn name_based_uuid(name: &[u8]) -> String {
    let hash: [u8; 16] = Md5::digest(name).into();
    uuid::Builder::from_md5_bytes(hash).into_uuid().to_string()
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    hex
}

// ---------------------------------------------------------------------------------------------
// Connect schemas

/// A Kafka Connect schema, enough of it to print what `JsonConverter.asJsonSchema` prints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConnectSchema {
    pub(crate) kind: SchemaKind,
    pub(crate) optional: bool,
    pub(crate) name: Option<String>,
    pub(crate) version: Option<i32>,
    pub(crate) doc: Option<&'static str>,
    pub(crate) parameters: Vec<(&'static str, String)>,
    pub(crate) default: Option<Json>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SchemaKind {
    /// `boolean`, `int16`, `int32`, `int64`, `float`, `double`, `string`, `bytes`.
    Primitive(&'static str),
    Array(Box<ConnectSchema>),
    Struct(Vec<(String, ConnectSchema)>),
}

impl ConnectSchema {
    pub(crate) fn primitive(type_name: &'static str) -> Self {
        Self {
            kind: SchemaKind::Primitive(type_name),
            optional: false,
            name: None,
            version: None,
            doc: None,
            parameters: Vec::new(),
            default: None,
        }
    }

    pub(crate) fn array(items: ConnectSchema) -> Self {
        Self {
            kind: SchemaKind::Array(Box::new(items)),
            ..Self::primitive("array")
        }
    }

    pub(crate) fn structure(fields: Vec<(&str, ConnectSchema)>, name: &str, version: i32) -> Self {
        Self {
            kind: SchemaKind::Struct(
                fields
                    .into_iter()
                    .map(|(field, schema)| (field.to_owned(), schema))
                    .collect(),
            ),
            ..Self::primitive("struct")
        }
        .named(name, Some(version))
    }

    /// A semantic type: a primitive with a name and version 1.
    pub(crate) fn semantic(type_name: &'static str, name: &str) -> Self {
        Self::primitive(type_name).named(name, Some(1))
    }

    pub(crate) fn named(mut self, name: &str, version: Option<i32>) -> Self {
        self.name = Some(name.to_owned());
        self.version = version;
        self
    }

    pub(crate) fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    pub(crate) fn parameter(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.parameters.push((key, value.into()));
        self
    }

    pub(crate) fn to_json(&self) -> Json {
        let mut object = Map::new();
        match &self.kind {
            SchemaKind::Primitive(type_name) => {
                object.insert("type".into(), json!(type_name));
            }
            SchemaKind::Array(items) => {
                object.insert("type".into(), json!("array"));
                object.insert("items".into(), items.to_json());
            }
            SchemaKind::Struct(fields) => {
                object.insert("type".into(), json!("struct"));
                let fields = fields
                    .iter()
                    .map(|(field, schema)| {
                        let mut json = schema.to_json();
                        if let Json::Object(object) = &mut json {
                            object.insert("field".into(), json!(field));
                        }
                        json
                    })
                    .collect();
                object.insert("fields".into(), Json::Array(fields));
            }
        }
        object.insert("optional".into(), json!(self.optional));
        if let Some(name) = &self.name {
            object.insert("name".into(), json!(name));
        }
        if let Some(version) = self.version {
            object.insert("version".into(), json!(version));
        }
        if let Some(doc) = self.doc {
            object.insert("doc".into(), json!(doc));
        }
        if !self.parameters.is_empty() {
            let parameters = self
                .parameters
                .iter()
                .map(|(key, value)| ((*key).to_owned(), json!(value)))
                .collect();
            object.insert("parameters".into(), Json::Object(parameters));
        }
        if let Some(default) = &self.default {
            object.insert("default".into(), default.clone());
        }
        Json::Object(object)
    }
}

/// `io.debezium.connector.postgresql.Source` (PostgresSourceInfoStructMaker).
pub(crate) fn source_schema() -> ConnectSchema {
    let string = || ConnectSchema::primitive("string");
    let int64 = || ConnectSchema::primitive("int64");
    let mut snapshot = ConnectSchema::semantic("string", "io.debezium.data.Enum")
        .parameter("allowed", SNAPSHOT_ALLOWED)
        .optional();
    snapshot.default = Some(json!("false"));
    ConnectSchema::structure(
        vec![
            ("version", string()),
            ("connector", string()),
            ("name", string()),
            ("ts_ms", int64()),
            ("snapshot", snapshot),
            ("db", string()),
            ("sequence", string().optional()),
            ("ts_us", int64().optional()),
            ("ts_ns", int64().optional()),
            ("schema", string()),
            ("table", string()),
            ("txId", int64().optional()),
            ("lsn", int64().optional()),
            ("xmin", int64().optional()),
            ("origin", string().optional()),
            ("origin_lsn", int64().optional()),
        ],
        "io.debezium.connector.postgresql.Source",
        1,
    )
}

/// `event.block`.
pub(crate) fn transaction_schema() -> ConnectSchema {
    ConnectSchema::structure(
        vec![
            ("id", ConnectSchema::primitive("string")),
            ("total_order", ConnectSchema::primitive("int64")),
            ("data_collection_order", ConnectSchema::primitive("int64")),
        ],
        "event.block",
        1,
    )
    .optional()
}

pub(crate) fn binary_schema(mode: BinaryHandling) -> ConnectSchema {
    match mode {
        BinaryHandling::Bytes => ConnectSchema::primitive("bytes"),
        _ => ConnectSchema::primitive("string"),
    }
}

// ---------------------------------------------------------------------------------------------
// Per-table plans
#[derive(Debug)]
pub(crate) struct ColumnPlan {
    /// Position in the table's columns (and in every row).
    pub(crate) index: usize,
    pub(crate) name: String,
    /// `name` as a JSON string, escaped once.
    pub(crate) json_name: String,
    pub(crate) optional: bool,
    pub(crate) part_of_key: bool,
    pub(crate) schema: ConnectSchema,
    pub(crate) encoding: Encoding,
    pub(crate) toast: ToastMarker,
}

/// The plans of the columns Debezium keeps, in table order.
pub(crate) fn column_plans(table: &TableSchema, modes: &ValueModes) -> Vec<ColumnPlan> {
    table
        .columns
        .iter()
        .enumerate()
        .filter_map(|(index, column)| {
            let (schema, encoding) = column_mapping(column, &column.pg_type, modes)?;
            let schema = if column.optional {
                schema.optional()
            } else {
                schema
            };
            Some(ColumnPlan {
                index,
                name: column.name.clone(),
                json_name: serde_json::to_string(&column.name).unwrap_or_default(),
                optional: column.optional,
                part_of_key: column.part_of_key,
                schema,
                encoding,
                toast: ToastMarker::for_type(&column.pg_type.name),
            })
        })
        .collect()
}

/// A table's Connect schemas: the key (`<prefix>.<schema>.<table>.Key`; None when no kept column
/// is part of the key, so the key is null) and the envelope (`….Envelope`, version 2, whose
/// `before`/`after` are the optional row struct `….Value`).
#[derive(Debug)]
pub(crate) struct TableSchemas {
    pub(crate) key: Option<ConnectSchema>,
    pub(crate) envelope: ConnectSchema,
}

impl TableSchemas {
    pub(crate) fn new(
        table: &TableSchema,
        columns: &[ColumnPlan],
        topic_prefix: &str,
        source_schema: &ConnectSchema,
        transaction_schema: &ConnectSchema,
    ) -> Self {
        let record_name = format!("{topic_prefix}.{}.{}", table.id.schema, table.id.table);
        let fields = |key_only: bool| -> Vec<(&str, ConnectSchema)> {
            columns
                .iter()
                .filter(|c| !key_only || c.part_of_key)
                .map(|c| (c.name.as_str(), c.schema.clone()))
                .collect()
        };
        let key = columns.iter().any(|c| c.part_of_key).then(|| {
            let mut schema = ConnectSchema::structure(fields(true), "", 0);
            schema.name = Some(format!("{record_name}.Key"));
            schema.version = None;
            schema
        });
        let mut row = ConnectSchema::structure(fields(false), "", 0).optional();
        row.name = Some(format!("{record_name}.Value"));
        row.version = None;
        let envelope = ConnectSchema::structure(
            vec![
                ("before", row.clone()),
                ("after", row),
                ("source", source_schema.clone()),
                ("transaction", transaction_schema.clone()),
                ("op", ConnectSchema::primitive("string")),
                ("ts_ms", ConnectSchema::primitive("int64").optional()),
                ("ts_us", ConnectSchema::primitive("int64").optional()),
                ("ts_ns", ConnectSchema::primitive("int64").optional()),
            ],
            &format!("{record_name}.Envelope"),
            2,
        );
        Self { key, envelope }
    }
}

/// `io.debezium.connector.postgresql.MessageKey`: the key of a logical decoding message.
pub(crate) fn message_key_schema() -> ConnectSchema {
    ConnectSchema::structure(
        vec![("prefix", ConnectSchema::primitive("string").optional())],
        "io.debezium.connector.postgresql.MessageKey",
        1,
    )
}

/// `io.debezium.connector.postgresql.MessageValue`: the value of a logical decoding message.
pub(crate) fn message_value_schema(
    binary: BinaryHandling,
    source_schema: &ConnectSchema,
    transaction_schema: &ConnectSchema,
) -> ConnectSchema {
    let block_schema = ConnectSchema::structure(
        vec![
            ("prefix", ConnectSchema::primitive("string").optional()),
            ("content", binary_schema(binary).optional()),
        ],
        "io.debezium.connector.postgresql.Message",
        1,
    );
    ConnectSchema::structure(
        vec![
            ("op", ConnectSchema::primitive("string")),
            ("ts_ms", ConnectSchema::primitive("int64").optional()),
            ("source", source_schema.clone()),
            ("transaction", transaction_schema.clone()),
            ("message", block_schema),
        ],
        "io.debezium.connector.postgresql.MessageValue",
        1,
    )
}

/// Whether a cached plan was built for another version of the table.
pub(crate) fn is_stale(planned: &Arc<TableSchema>, table: &Arc<TableSchema>) -> bool {
    !Arc::ptr_eq(planned, table) && **planned != **table
}

/// Which of Debezium's unchanged-TOAST markers a column gets, by its type name
/// (`UnchangedToastedReplicationMessageColumn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToastMarker {
    Plain,
    TextArray,
    BinaryArray,
    IntArray,
    Hstore,
    UuidArray,
}

impl ToastMarker {
    pub(crate) fn for_type(type_name: &str) -> Self {
        match type_name {
            "_text" | "_varchar" | "_bpchar" | "_json" | "_jsonb" => Self::TextArray,
            "_bytea" => Self::BinaryArray,
            "_int4" | "_date" | "_int8" => Self::IntArray,
            "hstore" => Self::Hstore,
            "_uuid" => Self::UuidArray,
            _ => Self::Plain,
        }
    }
}

/// How a column's values are written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Encoding {
    Boolean,
    /// bit(1): true when the bit is set.
    BitAsBoolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Every STRING mapping whose value is PostgreSQL's text: text, json, uuid, enums, inet...
    Text,
    /// Connect `Decimal` bytes at a fixed scale.
    Decimal {
        scale: u32,
    },
    VariableScaleDecimal,
    DecimalAsDouble,
    /// The plain decimal text, rescaled to `scale` when the column declares one.
    DecimalAsString {
        scale: Option<u32>,
    },
    Binary(BinaryHandling),
    /// bit(n>1), varbit: little-endian bytes.
    Bits,
    /// Days since the epoch.
    Date,
    /// Time of day in milliseconds or microseconds.
    Time {
        millis: bool,
    },
    /// Timestamp without zone in milliseconds or microseconds since the epoch.
    Timestamp {
        millis: bool,
    },
    /// ISO-8601 UTC text with `fraction_width` fractional digits (0: as few as needed).
    ZonedTimestamp {
        fraction_width: u32,
    },
    ZonedTime,
    MicroDuration,
    HstoreJson,
    Array(Box<Encoding>),
}

/// Why a single value could not be written; the caller adds table and column.
#[derive(Debug)]
pub(crate) enum Failure {
    Mismatch(&'static str),
    SpecialNumeric,
    NoPlaceholder,
}

impl Encoding {
    /// Whether the Connect type is STRING (so Debezium's generic placeholder fits).
    pub(crate) fn is_string(&self) -> bool {
        matches!(
            self,
            Encoding::Text
                | Encoding::DecimalAsString { .. }
                | Encoding::ZonedTimestamp { .. }
                | Encoding::ZonedTime
                | Encoding::HstoreJson
                | Encoding::Binary(BinaryHandling::Base64)
                | Encoding::Binary(BinaryHandling::Base64UrlSafe)
                | Encoding::Binary(BinaryHandling::Hex)
        )
    }

    /// What a value of this encoding must be, for error messages.
    pub(crate) fn expected(&self) -> &'static str {
        match self {
            Encoding::Boolean => "boolean",
            Encoding::BitAsBoolean | Encoding::Bits => "bit string",
            Encoding::Int16 => "int2",
            Encoding::Int32 => "int4",
            Encoding::Int64 => "int8",
            Encoding::Float32 => "float4",
            Encoding::Float64 => "float8",
            Encoding::Text => "text value",
            Encoding::Decimal { .. }
            | Encoding::VariableScaleDecimal
            | Encoding::DecimalAsDouble
            | Encoding::DecimalAsString { .. } => "numeric",
            Encoding::Binary(_) => "bytea",
            Encoding::Date => "date",
            Encoding::Time { .. } => "time",
            Encoding::Timestamp { .. } => "timestamp",
            Encoding::ZonedTimestamp { .. } => "timestamptz",
            Encoding::ZonedTime => "timetz",
            Encoding::MicroDuration => "interval",
            Encoding::HstoreJson => "hstore",
            Encoding::Array(_) => "one-dimensional array",
        }
    }
}

/// The Connect schema and encoding of a column of type `pg_type` (which may be the element type
/// of an array column), or None when Debezium drops such columns.
pub(crate) fn column_mapping(
    column: &Column,
    pg_type: &PgType,
    modes: &ValueModes,
) -> Option<(ConnectSchema, Encoding)> {
    let base = match &pg_type.kind {
        TypeKind::Base(base) => *base,
        TypeKind::Domain(inner) => return column_mapping(column, inner, modes),
        TypeKind::Enum(labels) => {
            return Some((
                ConnectSchema::semantic("string", "io.debezium.data.Enum")
                    .parameter("allowed", labels.join(",")),
                Encoding::Text,
            ));
        }
        TypeKind::Array(element) => return array_mapping(column, element, modes),
        TypeKind::Unknown => return unknown_mapping(pg_type),
    };
    let primitive = ConnectSchema::primitive;
    let semantic = ConnectSchema::semantic;
    // pgjdbc reports precision 6 for time types without a declared one.
    let time_precision = column.time_precision().unwrap_or(6);
    Some(match base {
        BaseType::Bool => (primitive("boolean"), Encoding::Boolean),
        BaseType::Int2 => (primitive("int16"), Encoding::Int16),
        BaseType::Int4 => (primitive("int32"), Encoding::Int32),
        BaseType::Int8 | BaseType::Oid => (primitive("int64"), Encoding::Int64),
        BaseType::Float4 => (primitive("float"), Encoding::Float32),
        BaseType::Float8 => (primitive("double"), Encoding::Float64),
        BaseType::Numeric => numeric_mapping(column, modes.decimal_handling),
        BaseType::Money => money_mapping(modes),
        BaseType::Text
        | BaseType::Inet
        | BaseType::Cidr
        | BaseType::MacAddr
        | BaseType::MacAddr8 => (primitive("string"), Encoding::Text),
        BaseType::Bytea => (
            binary_schema(modes.binary_handling),
            Encoding::Binary(modes.binary_handling),
        ),
        BaseType::Uuid => (semantic("string", "io.debezium.data.Uuid"), Encoding::Text),
        BaseType::Json | BaseType::Jsonb => {
            (semantic("string", "io.debezium.data.Json"), Encoding::Text)
        }
        BaseType::Xml => (semantic("string", "io.debezium.data.Xml"), Encoding::Text),
        BaseType::TsVector => (
            semantic("string", "io.debezium.data.Tsvector"),
            Encoding::Text,
        ),
        BaseType::Hstore => (
            semantic("string", "io.debezium.data.Json"),
            Encoding::HstoreJson,
        ),
        BaseType::Date => match modes.time_precision {
            TimePrecision::Connect => (
                semantic("int32", "org.apache.kafka.connect.data.Date"),
                Encoding::Date,
            ),
            _ => (semantic("int32", "io.debezium.time.Date"), Encoding::Date),
        },
        BaseType::Time => match modes.time_precision {
            TimePrecision::Adaptive if time_precision <= 3 => (
                semantic("int32", "io.debezium.time.Time"),
                Encoding::Time { millis: true },
            ),
            TimePrecision::Adaptive | TimePrecision::AdaptiveTimeMicroseconds => (
                semantic("int64", "io.debezium.time.MicroTime"),
                Encoding::Time { millis: false },
            ),
            // Connect's Time is INT32 milliseconds.
            TimePrecision::Connect => (
                semantic("int32", "org.apache.kafka.connect.data.Time"),
                Encoding::Time { millis: true },
            ),
        },
        BaseType::Timestamp => match modes.time_precision {
            TimePrecision::Connect => (
                semantic("int64", "org.apache.kafka.connect.data.Timestamp"),
                Encoding::Timestamp { millis: true },
            ),
            _ if time_precision <= 3 => (
                semantic("int64", "io.debezium.time.Timestamp"),
                Encoding::Timestamp { millis: true },
            ),
            _ => (
                semantic("int64", "io.debezium.time.MicroTimestamp"),
                Encoding::Timestamp { millis: false },
            ),
        },
        BaseType::TimestampTz => (
            semantic("string", "io.debezium.time.ZonedTimestamp"),
            Encoding::ZonedTimestamp {
                fraction_width: time_precision,
            },
        ),
        BaseType::TimeTz => (
            semantic("string", "io.debezium.time.ZonedTime"),
            Encoding::ZonedTime,
        ),
        BaseType::Interval => (
            semantic("int64", "io.debezium.time.MicroDuration"),
            Encoding::MicroDuration,
        ),
        BaseType::Bit | BaseType::VarBit => {
            // pgjdbc reports an unconstrained varbit's length as Integer.MAX_VALUE.
            let length = column.length().unwrap_or(i32::MAX as u32);
            if length > 1 {
                (
                    ConnectSchema::semantic("bytes", "io.debezium.data.Bits")
                        .parameter("length", length.to_string()),
                    Encoding::Bits,
                )
            } else {
                (primitive("boolean"), Encoding::BitAsBoolean)
            }
        }
    })
}

pub(crate) fn numeric_mapping(column: &Column, mode: DecimalHandling) -> (ConnectSchema, Encoding) {
    let declared = column.numeric_precision_scale();
    match (mode, declared) {
        (DecimalHandling::Precise, Some((precision, scale))) => (
            ConnectSchema::semantic("bytes", "org.apache.kafka.connect.data.Decimal")
                .parameter("scale", scale.to_string())
                .parameter("connect.decimal.precision", precision.to_string()),
            Encoding::Decimal { scale },
        ),
        (DecimalHandling::Precise, None) => (
            ConnectSchema {
                doc: Some("Variable scaled decimal"),
                ..ConnectSchema::structure(
                    vec![
                        ("scale", ConnectSchema::primitive("int32")),
                        ("value", ConnectSchema::primitive("bytes")),
                    ],
                    "io.debezium.data.VariableScaleDecimal",
                    1,
                )
            },
            Encoding::VariableScaleDecimal,
        ),
        (DecimalHandling::Double, _) => (
            ConnectSchema::primitive("double"),
            Encoding::DecimalAsDouble,
        ),
        (DecimalHandling::String, declared) => (
            ConnectSchema::primitive("string"),
            Encoding::DecimalAsString {
                scale: declared.map(|(_, scale)| scale),
            },
        ),
    }
}

pub(crate) fn money_mapping(modes: &ValueModes) -> (ConnectSchema, Encoding) {
    let scale = modes.money_fraction_digits;
    match modes.decimal_handling {
        // No precision parameter: Debezium builds money's schema with Decimal.builder(scale).
        DecimalHandling::Precise => (
            ConnectSchema::semantic("bytes", "org.apache.kafka.connect.data.Decimal")
                .parameter("scale", scale.to_string()),
            Encoding::Decimal { scale },
        ),
        DecimalHandling::Double => (
            ConnectSchema::primitive("double"),
            Encoding::DecimalAsDouble,
        ),
        DecimalHandling::String => (
            ConnectSchema::primitive("string"),
            Encoding::DecimalAsString { scale: None },
        ),
    }
}

/// PostgresValueConverter's array schemas: most element schemas are optional; enum and tsvector
/// elements (built through the generic path) are not; some arrays are dropped.
pub(crate) fn array_mapping(
    column: &Column,
    element: &PgType,
    modes: &ValueModes,
) -> Option<(ConnectSchema, Encoding)> {
    let element_optional = match &element.kind {
        TypeKind::Base(
            BaseType::Money | BaseType::Interval | BaseType::Bit | BaseType::VarBit | BaseType::Xml,
        )
        | TypeKind::Domain(_)
        | TypeKind::Array(_) => return None,
        // name[] is its own (unmapped) array type although name decodes as text.
        TypeKind::Base(BaseType::Text) if element.name == "name" => return None,
        TypeKind::Base(BaseType::TsVector) | TypeKind::Enum(_) => false,
        TypeKind::Unknown => unknown_mapping(element).is_some(),
        TypeKind::Base(_) => true,
    };
    let (schema, encoding) = column_mapping(column, element, modes)?;
    let schema = if element_optional {
        schema.optional()
    } else {
        schema
    };
    Some((
        ConnectSchema::array(schema),
        Encoding::Array(Box::new(encoding)),
    ))
}

/// Types outside the event model's base types that Debezium still maps (by oid or name).
pub(crate) fn unknown_mapping(pg_type: &PgType) -> Option<(ConnectSchema, Encoding)> {
    const RANGE_OIDS: [u32; 6] = [3904, 3906, 3908, 3910, 3912, 3926];
    if RANGE_OIDS.contains(&pg_type.oid) || pg_type.name == "isbn" {
        return Some((ConnectSchema::primitive("string"), Encoding::Text));
    }
    if pg_type.name == "ltree" {
        return Some((
            ConnectSchema::semantic("string", "io.debezium.data.Ltree"),
            Encoding::Text,
        ));
    }
    // Any other type tributary does not know travels as PostgreSQL's text form (the source logs
    // a warning once per type). Debezium drops such columns unless include.unknown.datatypes is
    // set; keeping the data is the safer default.
    Some((ConnectSchema::primitive("string"), Encoding::Text))
}

/// `io.debezium.data.Bits`: bit i (counted from the right of PostgreSQL's text) is bit i%8 of
/// byte i/8, with as many bytes as the highest set bit needs (Java's `BitSet.toByteArray`).
pub(crate) fn bits_le_bytes(bits: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, digit) in bits.bytes().rev().enumerate() {
        if digit == b'1' {
            let byte = i / 8;
            if bytes.len() <= byte {
                bytes.resize(byte + 1, 0);
            }
            bytes[byte] |= 1 << (i % 8);
        }
    }
    bytes
}

/// `MicroDuration.durationMicros` over the fields pgjdbc's PGInterval parses from PostgreSQL's
/// text, with the same floating-point steps so results match to the microsecond.
pub(crate) fn duration_micros(months: i32, days: i32, micros: i64) -> i64 {
    let years = months / 12;
    let months = months % 12;
    let hours = micros / 3_600_000_000;
    let minutes = (micros % 3_600_000_000) / 60_000_000;
    let second_micros = micros % 60_000_000;
    let seconds = (second_micros / 1_000_000) as f64 + (second_micros % 1_000_000) as f64 / 1e6;
    let number_of_days = f64::from(years * 12 + months) * DAYS_PER_MONTH_AVG + f64::from(days);
    let number_of_seconds =
        ((number_of_days * 24.0 + hours as f64) * 60.0 + minutes as f64) * 60.0 + seconds;
    (number_of_seconds * 1e6) as i64
}

/// `ZonedTimestamp`: ISO-8601 in UTC (`Z`), with exactly `fraction_width` fractional digits
/// when it is 1..=9 (Debezium pads to the column's precision), else as few as needed.
pub(crate) fn zoned_timestamp(micros: i64, fraction_width: u32) -> String {
    let mut text = Vec::with_capacity(32);
    push_zoned_timestamp(&mut text, micros, fraction_width);
    String::from_utf8(text).expect("ASCII digits and punctuation")
}

/// Appends [`zoned_timestamp`]'s text (without quotes) to `out`.
pub(crate) fn push_zoned_timestamp(out: &mut Vec<u8>, micros: i64, fraction_width: u32) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let time_of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    // Written digit by digit: every timestamptz of every event passes here, and `format!`
    // was a visible share of a snapshot's CPU.
    if year > 9999 {
        out.push(b'+');
    } else if year < 0 {
        out.push(b'-');
    }
    push_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, u64::from(month), 2);
    out.push(b'-');
    push_padded(out, u64::from(day), 2);
    out.push(b'T');
    push_local_time(out, time_of_day, fraction_width);
    out.push(b'Z');
}

/// `n` in decimal, zero-padded on the left to `width` digits (more when it has more).
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    // Months, days, hours, minutes, seconds: the common case, without a digit buffer.
    if width == 2 && n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    for _ in digits.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(digits.as_bytes());
}

/// `ZonedTime`: the time shifted to UTC, ISO-8601 with as few fractional digits as needed;
/// PostgreSQL's end-of-day `24:00:00+00` stays `24:00:00Z`.
pub(crate) fn zoned_time(micros: i64, offset_seconds: i32) -> String {
    if micros == MICROS_PER_DAY && offset_seconds == 0 {
        return "24:00:00Z".to_owned();
    }
    let utc = (micros - i64::from(offset_seconds) * 1_000_000).rem_euclid(MICROS_PER_DAY);
    let mut text = Vec::with_capacity(18);
    push_local_time(&mut text, utc, 0);
    text.push(b'Z');
    String::from_utf8(text).expect("ASCII digits and punctuation")
}

/// `HH:mm:ss` and the fraction as Java's `ISO_LOCAL_TIME` (width 0) or a fixed-width
/// `appendFraction` prints it.
fn push_local_time(out: &mut Vec<u8>, micros_of_day: i64, fraction_width: u32) {
    let seconds = micros_of_day / 1_000_000;
    let nanos = (micros_of_day % 1_000_000) * 1000;
    push_padded(out, (seconds / 3600).unsigned_abs(), 2);
    out.push(b':');
    push_padded(out, ((seconds / 60) % 60).unsigned_abs(), 2);
    out.push(b':');
    push_padded(out, (seconds % 60).unsigned_abs(), 2);
    if nanos == 0 && !(1..=9).contains(&fraction_width) {
        return;
    }
    let mut digits = [b'0'; 9];
    let mut rest = nanos.unsigned_abs();
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let shown = if (1..=9).contains(&fraction_width) {
        fraction_width as usize
    } else {
        9 - digits.iter().rev().take_while(|&&d| d == b'0').count()
    };
    out.push(b'.');
    out.extend_from_slice(&digits[..shown]);
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------
// Value arithmetic shared by the formats

/// The unscaled value of `decimal` at `scale` (half-up), as the minimal two's-complement
/// big-endian bytes Connect's `Decimal` carries (`BigInteger.toByteArray`).
pub(crate) fn decimal_bytes_at_scale(decimal: &BigDecimal, scale: u32) -> Vec<u8> {
    unscaled_bytes(&decimal.with_scale_round(i64::from(scale), RoundingMode::HalfUp))
}

/// [`decimal_bytes_at_scale`] handed to `use_bytes`, without allocating when the decimal
/// already has that scale and its unscaled value fits an `i64` (a numeric(p, s) column's values
/// with p <= 18: three allocations per value less).
pub(crate) fn with_decimal_bytes_at_scale<R>(
    decimal: &BigDecimal,
    scale: u32,
    use_bytes: impl FnOnce(&[u8]) -> R,
) -> R {
    let (unscaled, exponent) = decimal.as_bigint_and_scale();
    if exponent == i64::from(scale)
        && let Some(small) = unscaled.to_i64()
    {
        let bytes = small.to_be_bytes();
        return use_bytes(minimal_twos_complement(&bytes));
    }
    use_bytes(&decimal_bytes_at_scale(decimal, scale))
}

/// The shortest two's complement form, as Java's `BigInteger.toByteArray`: leading bytes that
/// only repeat the sign are dropped.
fn minimal_twos_complement(bytes: &[u8; 8]) -> &[u8] {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let sign_only = match bytes[start] {
            0x00 => bytes[start + 1] & 0x80 == 0,
            0xff => bytes[start + 1] & 0x80 != 0,
            _ => false,
        };
        if !sign_only {
            break;
        }
        start += 1;
    }
    &bytes[start..]
}

/// `io.debezium.data.VariableScaleDecimal`'s scale and unscaled bytes: trailing zeros stripped,
/// never a negative scale.
pub(crate) fn variable_scale_parts(decimal: &BigDecimal) -> (i32, Vec<u8>) {
    let mut normalized = decimal.normalized();
    if normalized.fractional_digit_count() < 0 {
        normalized = normalized.with_scale(0);
    }
    // Scales beyond i32 cannot come from PostgreSQL (numeric scale is at most 16383).
    let scale = i32::try_from(normalized.fractional_digit_count()).unwrap_or(i32::MAX);
    (scale, unscaled_bytes(&normalized))
}

pub(crate) fn unscaled_bytes(decimal: &BigDecimal) -> Vec<u8> {
    let (unscaled, _) = decimal.as_bigint_and_exponent();
    unscaled.to_signed_bytes_be()
}

/// `decimal.handling.mode=double`.
pub(crate) fn numeric_as_f64(numeric: &Numeric) -> f64 {
    match numeric {
        Numeric::Finite(decimal) => decimal.to_string().parse::<f64>().unwrap_or(f64::NAN),
        Numeric::NaN => f64::NAN,
        Numeric::PositiveInfinity => f64::INFINITY,
        Numeric::NegativeInfinity => f64::NEG_INFINITY,
    }
}

/// `decimal.handling.mode=string`: plain text, rescaled to the declared scale if any.
pub(crate) fn numeric_as_string(numeric: &Numeric, scale: Option<u32>) -> String {
    match numeric {
        Numeric::Finite(decimal) => match scale {
            Some(scale) => decimal
                .with_scale_round(i64::from(scale), RoundingMode::HalfUp)
                .to_plain_string(),
            None => decimal.to_plain_string(),
        },
        Numeric::NaN => "NAN".to_owned(),
        Numeric::PositiveInfinity => "POSITIVE_INFINITY".to_owned(),
        Numeric::NegativeInfinity => "NEGATIVE_INFINITY".to_owned(),
    }
}

/// The zero a NOT NULL `decimal.handling.mode=string` column falls back to.
pub(crate) fn zero_decimal_string(scale: Option<u32>) -> String {
    BigDecimal::from(0)
        .with_scale(i64::from(scale.unwrap_or(0)))
        .to_plain_string()
}

/// Days since the epoch, with Debezium's values for the infinities.
pub(crate) fn date_days(date: &Date) -> i32 {
    match date {
        Date::Days(days) => *days,
        Date::PositiveInfinity => DATE_POSITIVE_INFINITY_DAYS,
        Date::NegativeInfinity => DATE_NEGATIVE_INFINITY_DAYS,
    }
}

/// Microseconds since the epoch, with pgjdbc's values for the infinities.
pub(crate) fn timestamp_micros(timestamp: &Timestamp) -> i64 {
    match timestamp {
        Timestamp::Micros(micros) => *micros,
        Timestamp::PositiveInfinity => TIMESTAMP_POSITIVE_INFINITY_MICROS,
        Timestamp::NegativeInfinity => TIMESTAMP_NEGATIVE_INFINITY_MICROS,
    }
}

/// A `ZonedTimestamp` value: ISO-8601 UTC text, or PostgreSQL's spelling of the infinities.
pub(crate) fn zoned_timestamp_text(timestamp: &Timestamp, fraction_width: u32) -> String {
    match timestamp {
        Timestamp::Micros(micros) => zoned_timestamp(*micros, fraction_width),
        Timestamp::PositiveInfinity => "infinity".to_owned(),
        Timestamp::NegativeInfinity => "-infinity".to_owned(),
    }
}

/// hstore as `io.debezium.data.Json`: a JSON object in PostgreSQL's pair order.
pub(crate) fn hstore_json(pairs: &[(String, Option<String>)]) -> String {
    let object: Map<String, Json> = pairs
        .iter()
        .map(|(key, value)| (key.clone(), json!(value)))
        .collect();
    Json::Object(object).to_string()
}

/// BYTEA as text under `binary.handling.mode` base64, base64-url-safe (padded, as Java's
/// encoder) or hex; `bytes` mode is rendered by the format (JsonConverter prints base64).
pub(crate) fn binary_as_text(mode: BinaryHandling, bytes: &[u8]) -> String {
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD, URL_SAFE},
    };
    match mode {
        BinaryHandling::Bytes | BinaryHandling::Base64 => STANDARD.encode(bytes),
        BinaryHandling::Base64UrlSafe => URL_SAFE.encode(bytes),
        BinaryHandling::Hex => encode_hex(bytes),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The allocation-free path gives the bytes the BigInt path gives, at the decimal's own
        /// scale and at others (which take the BigInt path).
        #[test]
        fn decimal_bytes_without_allocating_equal_the_bigint_ones(
            unscaled in prop_oneof![any::<i64>(), -300i64..300, Just(i64::MIN), Just(i64::MAX)],
            own_scale in 0u32..20,
            scale in 0u32..20,
        ) {
            let decimal = BigDecimal::new(unscaled.into(), i64::from(own_scale));
            for target in [own_scale, scale] {
                let expected = decimal_bytes_at_scale(&decimal, target);
                let got = with_decimal_bytes_at_scale(&decimal, target, <[u8]>::to_vec);
                prop_assert_eq!(got, expected, "{} at scale {}", decimal, target);
            }
        }
    }

    #[test]
    fn zoned_timestamp_pads_to_column_precision() {
        // 2024-02-29T12:45:00.5Z
        let micros = 1_709_210_700_500_000;
        assert_eq!(zoned_timestamp(micros, 6), "2024-02-29T12:45:00.500000Z");
        assert_eq!(zoned_timestamp(micros, 3), "2024-02-29T12:45:00.500Z");
        assert_eq!(zoned_timestamp(micros, 0), "2024-02-29T12:45:00.5Z");
        assert_eq!(
            zoned_timestamp(1_709_210_700_000_000, 0),
            "2024-02-29T12:45:00Z"
        );
        // Leading zeros of the fraction stay, trailing ones go.
        assert_eq!(
            zoned_timestamp(1_709_210_700_000_010, 0),
            "2024-02-29T12:45:00.00001Z"
        );
        assert_eq!(
            zoned_timestamp(5_000_123, 9),
            "1970-01-01T00:00:05.000123000Z"
        );
        assert_eq!(zoned_time(86_399_999_999, 0), "23:59:59.999999Z");
        // Before the epoch and outside four-digit years.
        assert_eq!(zoned_timestamp(-1, 6), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            zoned_timestamp(253_402_300_800_000_000, 0),
            "+10000-01-01T00:00:00Z"
        );
        // 0001-01-01 BC is ISO year 0.
        assert_eq!(
            zoned_timestamp(-62_167_219_200_000_000, 0),
            "0000-01-01T00:00:00Z"
        );
    }

    #[test]
    fn zoned_time_shifts_to_utc() {
        assert_eq!(zoned_time(3_600_000_000, 7200), "23:00:00Z");
        assert_eq!(zoned_time(45_296_789_000, -3600), "13:34:56.789Z");
        assert_eq!(zoned_time(MICROS_PER_DAY, 0), "24:00:00Z");
    }

    #[test]
    fn bits_are_little_endian_from_the_rightmost_bit() {
        assert_eq!(bits_le_bytes("101"), vec![0x05]);
        assert_eq!(bits_le_bytes("110"), vec![0x06]);
        assert_eq!(bits_le_bytes("1000000001"), vec![0x01, 0x02]);
        assert_eq!(bits_le_bytes("000"), Vec::<u8>::new());
    }

    #[test]
    fn intervals_use_the_average_month() {
        // 1 mon = 30.4375 days.
        assert_eq!(duration_micros(1, 0, 0), 2_629_800_000_000);
        // -1 days -00:00:01.5
        assert_eq!(duration_micros(0, -1, -1_500_000), -86_401_500_000);
    }

    #[test]
    fn name_based_uuid_matches_java() {
        // UUID.nameUUIDFromBytes(new byte[0])
        assert_eq!(name_based_uuid(b""), "d41d8cd9-8f00-3204-a980-0998ecf8427e");
    }
}
