//! Debezium change events as Confluent's `AvroConverter` writes them.
//!
//! Debezium's Avro output is its Connect schemas and values run through Confluent's `AvroData`:
//! this module does the same to the Connect model the JSON format uses ([`super::connect`]), so
//! both formats carry the same mapping.
//!
//! Schemas follow `AvroData.fromConnectSchema` with its defaults (`connect.meta.data=true`,
//! enhanced schema support off):
//! - STRUCT becomes a record named by the Connect name split at its last dot (`Key`, `Value`,
//!   `Envelope` in namespace `<prefix>.<schema>.<table>`); a record already written is referred
//!   to by name (the second use of `Value`), with the namespace left out where it is the
//!   enclosing one, as Avro's `Schema.toString` prints it.
//! - INT16 is `int` with `connect.type: int16`, INT32 `int`, INT64 `long`, FLOAT32 `float`,
//!   FLOAT64 `double`; Connect's Decimal is `bytes` with `scale`, `precision` (64 when the
//!   schema has none) and `logicalType: decimal`; Connect's Date, Time and Timestamp get
//!   `date`, `time-millis`, `timestamp-millis`; Debezium's semantic types
//!   (`io.debezium.time.*`, `io.debezium.data.*`) only `connect.name`.
//! - `connect.doc`, `connect.version`, `connect.parameters`, `connect.default`, `connect.name`
//!   and `connect.type` in that order, after a record's fields.
//! - An optional schema is `["null", T]` with field default `null`; optional with a default
//!   (`source.snapshot`) is `[T, "null"]` with that default.
//! - Names are adjusted to Avro's rules as Debezium's `schema.name.adjustment.mode=avro` and
//!   `field.name.adjustment.mode=avro` do (`_` for every other character, and for a leading
//!   digit). Unlike Debezium the rule is applied to every dot-separated part of a full name, so
//!   a table named `2024` gives a valid namespace where Debezium's schema would be rejected.
//!
//! A record is the Confluent wire format: byte 0, the 4-byte big-endian schema id the registry
//! gave, then the Avro binary datum (no container header). Schemas are built and parsed once per
//! table and rebuilt when the table's schema changes.

use std::{collections::HashSet, sync::Arc};

use apache_avro::{
    Schema as ParsedSchema, types::Value as AvroValue, writer::datum::GenericDatumWriter,
};
use serde_json::{Map, Value as Json, json};

use super::connect::{
    ColumnPlan, ConnectSchema, Encoding, Failure, Placeholder, SchemaKind, TableSchemas,
    ToastMarker, ValueModes, binary_as_text, bits_le_bytes, check_row_shape, column_plans,
    date_days, decimal_bytes_at_scale, duration_micros, hstore_json, is_stale, message_key_schema,
    message_value_schema, numeric_as_f64, numeric_as_string, source_schema, timestamp_micros,
    transaction_schema, variable_scale_parts, zero_decimal_string, zoned_time,
    zoned_timestamp_text,
};
pub use super::connect::{DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER, TransactionBlock};
use super::{
    BinaryHandling, CONNECTOR_NAME, ConnectorContext, DecimalHandling, Error, TimePrecision,
};
use crate::event::{Datum, Numeric, Op, Row, RowChange, SourceInfo, TableSchema, Value};

/// The first byte of every Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0;

/// `AvroData`'s precision for a Decimal schema without `connect.decimal.precision`.
const DEFAULT_DECIMAL_PRECISION: u32 = 64;

/// Options of the Avro format: the connector's knobs that change schemas or values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroOptions {
    pub decimal_handling: DecimalHandling,
    pub time_precision: TimePrecision,
    pub binary_handling: BinaryHandling,
    /// `unavailable.value.placeholder`; a `hex:` prefix means the rest is hex-encoded octets.
    pub unavailable_value_placeholder: String,
    /// `money.fraction.digits`.
    pub money_fraction_digits: u32,
}

impl AvroOptions {
    fn modes(&self) -> ValueModes {
        ValueModes {
            decimal_handling: self.decimal_handling,
            time_precision: self.time_precision,
            binary_handling: self.binary_handling,
            money_fraction_digits: self.money_fraction_digits,
        }
    }
}

impl Default for AvroOptions {
    fn default() -> Self {
        Self {
            decimal_handling: DecimalHandling::default(),
            time_precision: TimePrecision::default(),
            binary_handling: BinaryHandling::default(),
            unavailable_value_placeholder: DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.to_owned(),
            money_fraction_digits: 2,
        }
    }
}

/// The records of the side topics, whose schemas are fixed: heartbeats and transaction metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SideRecordKind {
    /// `io.debezium.connector.common.ServerNameKey {serverName}`.
    HeartbeatKey = 0,
    /// `io.debezium.connector.common.Heartbeat {ts_ms}`.
    HeartbeatValue = 1,
    /// `io.debezium.connector.common.TransactionMetadataKey {id}`.
    TransactionKey = 2,
    /// `io.debezium.connector.common.TransactionMetadataValue`.
    TransactionValue = 3,
}

impl SideRecordKind {
    const ALL: [SideRecordKind; 4] = [
        SideRecordKind::HeartbeatKey,
        SideRecordKind::HeartbeatValue,
        SideRecordKind::TransactionKey,
        SideRecordKind::TransactionValue,
    ];

    /// The Connect schema Debezium gives these records (no version).
    fn connect_schema(self) -> ConnectSchema {
        let string = || ConnectSchema::primitive("string");
        let int64 = || ConnectSchema::primitive("int64");
        let (fields, name) = match self {
            SideRecordKind::HeartbeatKey => (
                vec![("serverName", string())],
                "io.debezium.connector.common.ServerNameKey",
            ),
            SideRecordKind::HeartbeatValue => (
                vec![("ts_ms", int64())],
                "io.debezium.connector.common.Heartbeat",
            ),
            SideRecordKind::TransactionKey => (
                vec![("id", string())],
                "io.debezium.connector.common.TransactionMetadataKey",
            ),
            SideRecordKind::TransactionValue => {
                let mut collection = ConnectSchema::structure(
                    vec![("data_collection", string()), ("event_count", int64())],
                    "",
                    0,
                );
                collection.name = None;
                collection.version = None;
                (
                    vec![
                        ("status", string()),
                        ("id", string()),
                        ("event_count", int64().optional()),
                        (
                            "data_collections",
                            ConnectSchema::array(collection).optional(),
                        ),
                        ("ts_ms", int64()),
                    ],
                    "io.debezium.connector.common.TransactionMetadataValue",
                )
            }
        };
        let mut schema = ConnectSchema::structure(fields, name, 0);
        schema.version = None;
        schema
    }
}

/// The field values of a side record, in schema order.
#[derive(Debug, Clone, Copy)]
pub enum SideFields<'a> {
    /// `serverName` of a heartbeat key, or `id` of a transaction key.
    Name(&'a str),
    Heartbeat {
        ts_ms: i64,
    },
    Transaction {
        status: &'a str,
        id: &'a str,
        event_count: Option<i64>,
        data_collections: Option<&'a [(String, i64)]>,
        ts_ms: i64,
    },
}

/// Encodes change events as Debezium + Confluent's `AvroConverter` would write them.
///
/// The caller registers the schema texts ([`Self::key_schema`], [`Self::value_schema`], ...)
/// with a schema registry and passes the ids it gets back to the methods that write records.
#[derive(Debug)]
pub struct AvroEncoder {
    options: AvroOptions,
    context: ConnectorContext,
    placeholder: Placeholder,
    source_schema: ConnectSchema,
    transaction_schema: ConnectSchema,
    message_key_schema: ConnectSchema,
    message_value_schema: ConnectSchema,
    message_key: AvroSchema,
    message_value: AvroSchema,
    /// The side topics' schemas, by [`SideRecordKind`].
    side: Vec<(ConnectSchema, AvroSchema)>,
    /// Plans by relation id; a plan is reused while its table schema is unchanged.
    plans: foldhash::HashMap<u32, TablePlan>,
}

impl AvroEncoder {
    pub fn new(options: AvroOptions, context: ConnectorContext) -> Self {
        let placeholder = Placeholder::new(&options.unavailable_value_placeholder);
        let source_schema = source_schema();
        let transaction_schema = transaction_schema();
        let message_key_schema = message_key_schema();
        let message_value_schema =
            message_value_schema(options.binary_handling, &source_schema, &transaction_schema);
        let message_topic = format!("{}.message", context.topic_prefix);
        let side = SideRecordKind::ALL
            .iter()
            .map(|kind| {
                let schema = kind.connect_schema();
                let avro = AvroSchema::new(&schema, format!("{kind:?}"));
                (schema, avro)
            })
            .collect();
        Self {
            side,
            message_key: AvroSchema::new(&message_key_schema, format!("{message_topic}-key")),
            message_value: AvroSchema::new(&message_value_schema, format!("{message_topic}-value")),
            options,
            context,
            placeholder,
            source_schema,
            transaction_schema,
            message_key_schema,
            message_value_schema,
            plans: foldhash::HashMap::default(),
        }
    }

    /// The Avro schema of the table's record keys, or None when its keys are null (no key
    /// column).
    pub fn key_schema(&mut self, table: &Arc<TableSchema>) -> Option<Arc<str>> {
        let plan = self.plan(table);
        plan.key.as_ref().map(|key| Arc::clone(&key.text))
    }

    /// The Avro schema of the table's record values (the `Envelope`).
    pub fn value_schema(&mut self, table: &Arc<TableSchema>) -> Arc<str> {
        Arc::clone(&self.plan(table).value.text)
    }

    /// The record key of a row change, framed with `schema_id` (the registry's id of
    /// [`Self::key_schema`]): the key columns of the new row (the old row for a delete), or None
    /// (a null key) when the table has no key columns.
    pub fn key(&mut self, change: &RowChange, schema_id: u32) -> Result<Option<Vec<u8>>, Error> {
        self.refresh_plan(&change.table);
        let plan = &self.plans[&change.table.relation_id];
        let Some(key_schema) = &plan.key else {
            return Ok(None);
        };
        let (row, image) = match change.op {
            Op::Delete => (change.before.as_ref(), "before"),
            _ => (change.after.as_ref(), "after"),
        };
        let row = row.ok_or_else(|| Error::MissingImage {
            table: change.table.id.clone(),
            op: change.op.code(),
            image,
        })?;
        let datum = row_value(&change.table, plan, &self.placeholder, row, true)?;
        key_schema.frame(schema_id, &datum).map(Some)
    }

    /// The record value of a row change, framed with `schema_id` (the registry's id of
    /// [`Self::value_schema`]): the envelope with `before`, `after`, `source`, `transaction`,
    /// `op` and the processing time `processed_at_micros` in `ts_ms/us/ns`. Tombstones are the
    /// caller's business (a null value).
    pub fn value(
        &mut self,
        change: &RowChange,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
        schema_id: u32,
    ) -> Result<Vec<u8>, Error> {
        self.refresh_plan(&change.table);
        let plan = &self.plans[&change.table.relation_id];
        let after = match (&change.after, change.op) {
            (_, Op::Delete) => None,
            (Some(row), _) => Some(row),
            (None, _) => {
                return Err(Error::MissingImage {
                    table: change.table.id.clone(),
                    op: change.op.code(),
                    image: "after",
                });
            }
        };
        let image = |row: Option<&Row>| -> Result<Option<AvroValue>, Error> {
            row.map(|row| row_value(&change.table, plan, &self.placeholder, row, false))
                .transpose()
        };
        let datum = self.envelope(
            &plan.envelope,
            image(change.before.as_ref())?,
            image(after)?,
            self.source(
                &change.source,
                &change.table.id.schema,
                &change.table.id.table,
            ),
            transaction,
            change.op,
            processed_at_micros,
        );
        plan.value.frame(schema_id, &datum)
    }

    /// The record value of a TRUNCATE of `table` (op `t`, no `before`/`after`), framed with the
    /// id of [`Self::value_schema`]; its key is null.
    pub fn truncate_value(
        &mut self,
        table: &Arc<TableSchema>,
        source: &SourceInfo,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
        schema_id: u32,
    ) -> Result<Vec<u8>, Error> {
        self.refresh_plan(table);
        let plan = &self.plans[&table.relation_id];
        let datum = self.envelope(
            &plan.envelope,
            None,
            None,
            self.source(source, &table.id.schema, &table.id.table),
            transaction,
            Op::Truncate,
            processed_at_micros,
        );
        plan.value.frame(schema_id, &datum)
    }

    /// The topic of logical decoding messages: `<prefix>.message`.
    pub fn message_topic(&self) -> String {
        format!("{}.message", self.context.topic_prefix)
    }

    /// The Avro schema of logical decoding message keys (`MessageKey`).
    pub fn message_key_schema(&self) -> Arc<str> {
        Arc::clone(&self.message_key.text)
    }

    /// The Avro schema of logical decoding message values (`MessageValue`).
    pub fn message_value_schema(&self) -> Arc<str> {
        Arc::clone(&self.message_value.text)
    }

    /// The record key of a logical decoding message: `{prefix}`.
    pub fn message_key(&self, prefix: &str, schema_id: u32) -> Result<Vec<u8>, Error> {
        let datum = record(
            &self.message_key_schema,
            vec![Some(AvroValue::String(prefix.to_owned()))],
        );
        self.message_key.frame(schema_id, &datum)
    }

    /// The record value of a logical decoding message (op `m`): `op`, `ts_ms` (processing
    /// time), `source` (empty schema and table), `transaction` and `message{prefix, content}`.
    pub fn message_value(
        &self,
        prefix: &str,
        content: &[u8],
        source: &SourceInfo,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
        schema_id: u32,
    ) -> Result<Vec<u8>, Error> {
        // The `message` block is the fifth field of the schema built in `new`.
        let block_schema = match &self.message_value_schema.kind {
            SchemaKind::Struct(fields) => fields.get(4).map(|(_, schema)| schema),
            _ => None,
        }
        .ok_or_else(|| Error::AvroEncoding {
            subject: self.message_value.subject.clone(),
        })?;
        let content = match self.options.binary_handling {
            BinaryHandling::Bytes => AvroValue::Bytes(content.to_vec()),
            mode => AvroValue::String(binary_as_text(mode, content)),
        };
        let message = record(
            block_schema,
            vec![Some(AvroValue::String(prefix.to_owned())), Some(content)],
        );
        let datum = record(
            &self.message_value_schema,
            vec![
                Some(AvroValue::String(Op::Message.code().to_owned())),
                Some(AvroValue::Long(processed_at_micros.div_euclid(1000))),
                Some(self.source(source, "", "")),
                self.transaction(transaction),
                Some(message),
            ],
        );
        self.message_value.frame(schema_id, &datum)
    }

    /// The Avro schema of a side topic's keys or values (heartbeats, transaction metadata).
    pub fn side_schema(&self, kind: SideRecordKind) -> Arc<str> {
        Arc::clone(&self.side[kind as usize].1.text)
    }

    /// A side topic's record in the Confluent wire format, from its field values in order.
    pub fn side_record(
        &self,
        kind: SideRecordKind,
        fields: SideFields,
        schema_id: u32,
    ) -> Result<Vec<u8>, Error> {
        let (schema, avro) = &self.side[kind as usize];
        let values = match fields {
            SideFields::Heartbeat { ts_ms } => vec![Some(AvroValue::Long(ts_ms))],
            SideFields::Name(name) => vec![Some(AvroValue::String(name.to_owned()))],
            SideFields::Transaction {
                status,
                id,
                event_count,
                data_collections,
                ts_ms,
            } => {
                let item = match &schema.kind {
                    SchemaKind::Struct(fields) => match fields.get(3).map(|(_, s)| &s.kind) {
                        Some(SchemaKind::Array(item)) => Some(item.as_ref()),
                        _ => None,
                    },
                    _ => None,
                }
                .ok_or_else(|| Error::AvroEncoding {
                    subject: avro.subject.clone(),
                })?;
                vec![
                    Some(AvroValue::String(status.to_owned())),
                    Some(AvroValue::String(id.to_owned())),
                    event_count.map(AvroValue::Long),
                    data_collections.map(|collections| {
                        AvroValue::Array(
                            collections
                                .iter()
                                .map(|(table, count)| {
                                    record(
                                        item,
                                        vec![
                                            Some(AvroValue::String(table.clone())),
                                            Some(AvroValue::Long(*count)),
                                        ],
                                    )
                                })
                                .collect(),
                        )
                    }),
                    Some(AvroValue::Long(ts_ms)),
                ]
            }
        };
        avro.frame(schema_id, &record(schema, values))
    }

    fn refresh_plan(&mut self, table: &Arc<TableSchema>) {
        let stale = match self.plans.get(&table.relation_id) {
            Some(plan) => is_stale(&plan.table, table),
            None => true,
        };
        if stale {
            let plan = TablePlan::new(
                table,
                &self.options,
                &self.context.topic_prefix,
                &self.source_schema,
                &self.transaction_schema,
            );
            self.plans.insert(table.relation_id, plan);
        }
    }

    fn plan(&mut self, table: &Arc<TableSchema>) -> &TablePlan {
        self.refresh_plan(table);
        &self.plans[&table.relation_id]
    }

    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &self,
        envelope: &ConnectSchema,
        before: Option<AvroValue>,
        after: Option<AvroValue>,
        source: AvroValue,
        transaction: Option<&TransactionBlock>,
        op: Op,
        processed_at_micros: i64,
    ) -> AvroValue {
        record(
            envelope,
            vec![
                before,
                after,
                Some(source),
                self.transaction(transaction),
                Some(AvroValue::String(op.code().to_owned())),
                Some(AvroValue::Long(processed_at_micros.div_euclid(1000))),
                Some(AvroValue::Long(processed_at_micros)),
                Some(AvroValue::Long(processed_at_micros.saturating_mul(1000))),
            ],
        )
    }

    /// `source`, with the values the JSON format writes.
    fn source(&self, source: &SourceInfo, schema: &str, table: &str) -> AvroValue {
        let sequence = serde_json::to_string(&[
            source.sequence.0.map(|lsn| lsn.0.to_string()),
            source.sequence.1.map(|lsn| lsn.0.to_string()),
        ])
        .unwrap_or_default();
        let string = |text: &str| Some(AvroValue::String(text.to_owned()));
        let long = |number: i64| Some(AvroValue::Long(number));
        record(
            &self.source_schema,
            vec![
                string(self.context.connector_version),
                string(CONNECTOR_NAME),
                string(&self.context.topic_prefix),
                long(source.ts_micros.div_euclid(1000)),
                string(source.snapshot.code()),
                string(&self.context.database),
                Some(AvroValue::String(sequence)),
                long(source.ts_micros),
                long(source.ts_micros.saturating_mul(1000)),
                string(schema),
                string(table),
                source.tx_id.and_then(|tx_id| long(i64::from(tx_id))),
                // Debezium writes the LSN as a signed 64-bit integer.
                long(source.lsn.0 as i64),
                None,
                None,
                None,
            ],
        )
    }

    fn transaction(&self, transaction: Option<&TransactionBlock>) -> Option<AvroValue> {
        transaction.map(|tx| {
            record(
                &self.transaction_schema,
                vec![
                    Some(AvroValue::String(tx.id.clone())),
                    Some(AvroValue::Long(tx.total_order)),
                    Some(AvroValue::Long(tx.data_collection_order)),
                ],
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Per-table plans

#[derive(Debug)]
struct TablePlan {
    table: Arc<TableSchema>,
    /// The columns Debezium keeps, in table order.
    columns: Vec<ColumnPlan>,
    /// Each column's Avro field name (adjusted to Avro's rules).
    field_names: Vec<String>,
    /// The envelope's Connect schema: which fields are optional, in which union order.
    envelope: ConnectSchema,
    key: Option<AvroSchema>,
    value: AvroSchema,
}

impl TablePlan {
    fn new(
        table: &Arc<TableSchema>,
        options: &AvroOptions,
        topic_prefix: &str,
        source_schema: &ConnectSchema,
        transaction_schema: &ConnectSchema,
    ) -> Self {
        let columns = column_plans(table, &options.modes());
        let schemas = TableSchemas::new(
            table,
            &columns,
            topic_prefix,
            source_schema,
            transaction_schema,
        );
        let topic = format!("{topic_prefix}.{}.{}", table.id.schema, table.id.table);
        Self {
            table: Arc::clone(table),
            field_names: columns.iter().map(|c| avro_name(&c.name)).collect(),
            columns,
            key: schemas
                .key
                .as_ref()
                .map(|key| AvroSchema::new(key, format!("{topic}-key"))),
            value: AvroSchema::new(&schemas.envelope, format!("{topic}-value")),
            envelope: schemas.envelope,
        }
    }
}

self_cell::self_cell!(
    /// A parsed schema with its writer: building a writer resolves every name in the schema,
    /// which cost more than writing a record, so it is built once per schema.
    struct DatumWriter {
        owner: ParsedSchema,
        #[covariant]
        dependent: GenericDatumWriter,
    }
);

impl std::fmt::Debug for DatumWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatumWriter")
    }
}

/// An Avro schema: its text (what the registry stores) and, parsed, what datums are written
/// with.
#[derive(Debug)]
struct AvroSchema {
    text: Arc<str>,
    /// The schema's writer, or why the text is not valid Avro (reported when a record is
    /// written).
    writer: Result<DatumWriter, String>,
    /// The registry subject (`<topic>-key` / `<topic>-value`), for errors.
    subject: String,
}

impl AvroSchema {
    fn new(schema: &ConnectSchema, subject: String) -> Self {
        let text = avro_schema(schema).to_string();
        let writer = ParsedSchema::parse_str(&text)
            .map_err(|error| error.to_string())
            .and_then(|parsed| {
                DatumWriter::try_new(parsed, |parsed| {
                    // Validation walks the value a second time; tests keep it to catch mapping
                    // faults.
                    GenericDatumWriter::builder(parsed)
                        .validate(cfg!(debug_assertions))
                        .build()
                })
                .map_err(|error| error.to_string())
            });
        Self {
            text: text.into(),
            writer,
            subject,
        }
    }

    /// `datum` in the Confluent wire format: magic byte, schema id, Avro binary.
    fn frame(&self, schema_id: u32, datum: &AvroValue) -> Result<Vec<u8>, Error> {
        let writer = self
            .writer
            .as_ref()
            .map_err(|reason| Error::InvalidAvroSchema {
                subject: self.subject.clone(),
                reason: reason.clone(),
            })?;
        let mut out = Vec::with_capacity(256);
        out.push(MAGIC_BYTE);
        out.extend_from_slice(&schema_id.to_be_bytes());
        writer
            .borrow_dependent()
            .write_value_ref(&mut out, datum)
            .map_err(|_| Error::AvroEncoding {
                subject: self.subject.clone(),
            })?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// The row (only its key columns when `key_only`) as an Avro record.
fn row_value(
    table: &TableSchema,
    plan: &TablePlan,
    placeholder: &Placeholder,
    row: &Row,
    key_only: bool,
) -> Result<AvroValue, Error> {
    check_row_shape(table, row)?;
    let mut fields = Vec::with_capacity(plan.columns.len());
    for (column, name) in plan.columns.iter().zip(&plan.field_names) {
        if key_only && !column.part_of_key {
            continue;
        }
        let value = datum_value(column, placeholder, &row.0[column.index])
            .map_err(|failure| failure_error(failure, table, column))?;
        fields.push((name.clone(), optional(&column.schema, value)));
    }
    Ok(AvroValue::Record(fields))
}

fn failure_error(failure: Failure, table: &TableSchema, column: &ColumnPlan) -> Error {
    match failure {
        Failure::Mismatch(expected) => Error::UnexpectedValue {
            table: table.id.clone(),
            column: column.name.clone(),
            expected,
        },
        Failure::SpecialNumeric => Error::SpecialNumericInPreciseMode {
            table: table.id.clone(),
            column: column.name.clone(),
        },
        Failure::NoPlaceholder => Error::UnavailableValueNotRepresentable {
            table: table.id.clone(),
            column: column.name.clone(),
        },
    }
}

/// A column's value; None for SQL NULL in an optional column.
fn datum_value(
    column: &ColumnPlan,
    placeholder: &Placeholder,
    datum: &Datum,
) -> Result<Option<AvroValue>, Failure> {
    match datum {
        Datum::Null if column.optional => Ok(None),
        // A NOT NULL column without a value (the non-key columns of a DEFAULT delete's old
        // row) gets its type's fallback, as JdbcValueConverters.convertValue does.
        Datum::Null => Ok(Some(fallback(&column.encoding, &column.schema))),
        Datum::Unchanged => unavailable(placeholder, column).map(Some),
        Datum::Value(value) => convert(&column.encoding, &column.schema, value).map(Some),
    }
}

/// `value` as the Avro datum of a field of Connect schema `schema` (a union branch when it is
/// optional). A missing value in a required field becomes null, which fails when written.
fn optional(schema: &ConnectSchema, value: Option<AvroValue>) -> AvroValue {
    if !schema.optional {
        return value.unwrap_or(AvroValue::Null);
    }
    // AvroData puts null first unless the schema has a default (which must match the first
    // branch).
    let null_first = schema.default.is_none();
    match (value, null_first) {
        (None, true) => AvroValue::Union(0, Box::new(AvroValue::Null)),
        (Some(value), true) => AvroValue::Union(1, Box::new(value)),
        (Some(value), false) => AvroValue::Union(0, Box::new(value)),
        (None, false) => AvroValue::Union(1, Box::new(AvroValue::Null)),
    }
}

/// A record of the struct `schema` from its field values in order (None: null).
fn record(schema: &ConnectSchema, values: Vec<Option<AvroValue>>) -> AvroValue {
    let SchemaKind::Struct(fields) = &schema.kind else {
        return AvroValue::Null;
    };
    AvroValue::Record(
        fields
            .iter()
            .zip(values)
            .map(|((name, field), value)| (avro_name(name), optional(field, value)))
            .collect(),
    )
}

/// The value `AvroData.fromConnectData` writes for a Connect value, from the event model:
/// the same conversions as the JSON format, in Avro's types.
fn convert(
    encoding: &Encoding,
    schema: &ConnectSchema,
    value: &Value,
) -> Result<AvroValue, Failure> {
    Ok(match (encoding, value) {
        (Encoding::Boolean, Value::Bool(b)) => AvroValue::Boolean(*b),
        (Encoding::BitAsBoolean, Value::Bits(bits)) => AvroValue::Boolean(bits.contains('1')),
        (Encoding::BitAsBoolean, Value::Bool(b)) => AvroValue::Boolean(*b),
        (Encoding::Int16, Value::Int16(n)) => AvroValue::Int(i32::from(*n)),
        (Encoding::Int32, Value::Int32(n)) => AvroValue::Int(*n),
        (Encoding::Int64, Value::Int64(n)) => AvroValue::Long(*n),
        (Encoding::Int64, Value::Int32(n)) => AvroValue::Long(i64::from(*n)),
        (Encoding::Float32, Value::Float32(f)) => AvroValue::Float(*f),
        (Encoding::Float64, Value::Float64(f)) => AvroValue::Double(*f),
        (Encoding::Text, Value::Text(s)) => AvroValue::String(s.clone()),
        (Encoding::Decimal { scale }, Value::Numeric(numeric)) => {
            let Numeric::Finite(decimal) = numeric else {
                return Err(Failure::SpecialNumeric);
            };
            decimal_value(schema, decimal_bytes_at_scale(decimal, *scale))
        }
        (Encoding::VariableScaleDecimal, Value::Numeric(numeric)) => {
            let Numeric::Finite(decimal) = numeric else {
                return Err(Failure::SpecialNumeric);
            };
            let (scale, unscaled) = variable_scale_parts(decimal);
            record(
                schema,
                vec![
                    Some(AvroValue::Int(scale)),
                    Some(AvroValue::Bytes(unscaled)),
                ],
            )
        }
        (Encoding::DecimalAsDouble, Value::Numeric(numeric)) => {
            AvroValue::Double(numeric_as_f64(numeric))
        }
        (Encoding::DecimalAsString { scale }, Value::Numeric(numeric)) => {
            AvroValue::String(numeric_as_string(numeric, *scale))
        }
        (Encoding::Binary(BinaryHandling::Bytes), Value::Bytes(bytes)) => {
            AvroValue::Bytes(bytes.clone())
        }
        (Encoding::Binary(mode), Value::Bytes(bytes)) => {
            AvroValue::String(binary_as_text(*mode, bytes))
        }
        (Encoding::Bits, Value::Bits(bits)) => AvroValue::Bytes(bits_le_bytes(bits)),
        (Encoding::Date, Value::Date(date)) => AvroValue::Int(date_days(date)),
        // Milliseconds of the day fit an int (Connect's Time and Debezium's Time are INT32).
        (Encoding::Time { millis: true }, Value::Time(micros)) => {
            AvroValue::Int(i32::try_from(micros / 1000).map_err(|_| Failure::Mismatch("time"))?)
        }
        (Encoding::Time { millis: false }, Value::Time(micros)) => AvroValue::Long(*micros),
        (Encoding::Timestamp { millis }, Value::Timestamp(timestamp)) => {
            let micros = timestamp_micros(timestamp);
            AvroValue::Long(if *millis {
                micros.div_euclid(1000)
            } else {
                micros
            })
        }
        (Encoding::ZonedTimestamp { fraction_width }, Value::TimestampTz(timestamp)) => {
            AvroValue::String(zoned_timestamp_text(timestamp, *fraction_width))
        }
        (
            Encoding::ZonedTime,
            Value::TimeTz {
                micros,
                offset_seconds,
            },
        ) => AvroValue::String(zoned_time(*micros, *offset_seconds)),
        (
            Encoding::MicroDuration,
            Value::Interval {
                months,
                days,
                micros,
            },
        ) => AvroValue::Long(duration_micros(*months, *days, *micros)),
        (Encoding::HstoreJson, Value::Hstore(pairs)) => AvroValue::String(hstore_json(pairs)),
        (Encoding::Array(element), Value::Array(items)) => {
            let SchemaKind::Array(item_schema) = &schema.kind else {
                return Err(Failure::Mismatch(encoding.expected()));
            };
            AvroValue::Array(
                items
                    .iter()
                    .map(|item| {
                        let value = item
                            .as_ref()
                            .map(|value| convert(element, item_schema, value))
                            .transpose()?;
                        // Enum and tsvector elements are not optional in Debezium's schema.
                        if value.is_none() && !item_schema.optional {
                            return Err(Failure::Mismatch("array without null elements"));
                        }
                        Ok(optional(item_schema, value))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        (encoding, _) => return Err(Failure::Mismatch(encoding.expected())),
    })
}

/// Decimal bytes as the Avro decimal logical type, or plain bytes where `AvroData` could not
/// declare one (scale above precision) and the schema is plain `bytes`.
fn decimal_value(schema: &ConnectSchema, unscaled: Vec<u8>) -> AvroValue {
    if decimal_is_logical(schema) {
        AvroValue::Decimal(unscaled.into())
    } else {
        AvroValue::Bytes(unscaled)
    }
}

fn decimal_is_logical(schema: &ConnectSchema) -> bool {
    let (precision, scale) = decimal_precision_scale(schema);
    scale <= precision
}

fn decimal_precision_scale(schema: &ConnectSchema) -> (u32, u32) {
    let parameter = |key: &str| -> Option<u32> {
        schema
            .parameters
            .iter()
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| value.parse().ok())
    };
    (
        parameter("connect.decimal.precision").unwrap_or(DEFAULT_DECIMAL_PRECISION),
        parameter("scale").unwrap_or(0),
    )
}

/// The value Debezium writes for NULL in a NOT NULL column (`convertValue`'s fallback).
fn fallback(encoding: &Encoding, schema: &ConnectSchema) -> AvroValue {
    match encoding {
        Encoding::Boolean | Encoding::BitAsBoolean => AvroValue::Boolean(false),
        Encoding::Int16 | Encoding::Int32 | Encoding::Date | Encoding::Time { millis: true } => {
            AvroValue::Int(0)
        }
        Encoding::Int64
        | Encoding::Time { millis: false }
        | Encoding::Timestamp { .. }
        | Encoding::MicroDuration => AvroValue::Long(0),
        Encoding::Float32 => AvroValue::Float(0.0),
        Encoding::Float64 | Encoding::DecimalAsDouble => AvroValue::Double(0.0),
        Encoding::Text => AvroValue::String(String::new()),
        Encoding::Decimal { .. } => decimal_value(schema, vec![0]),
        Encoding::VariableScaleDecimal => record(
            schema,
            vec![Some(AvroValue::Int(0)), Some(AvroValue::Bytes(vec![0]))],
        ),
        Encoding::DecimalAsString { scale } => AvroValue::String(zero_decimal_string(*scale)),
        Encoding::Binary(BinaryHandling::Bytes) | Encoding::Bits => AvroValue::Bytes(Vec::new()),
        Encoding::Binary(_) => AvroValue::String(String::new()),
        Encoding::ZonedTimestamp { .. } => AvroValue::String("1970-01-01T00:00:00Z".to_owned()),
        Encoding::ZonedTime => AvroValue::String("00:00:00Z".to_owned()),
        Encoding::HstoreJson => AvroValue::String("{}".to_owned()),
        Encoding::Array(_) => AvroValue::Array(Vec::new()),
    }
}

/// Debezium's placeholder for an unchanged TOASTed value, adapted to the column's type, as the
/// JSON format writes it.
fn unavailable(placeholder: &Placeholder, column: &ColumnPlan) -> Result<AvroValue, Failure> {
    let items = |values: Vec<AvroValue>| -> Result<AvroValue, Failure> {
        let SchemaKind::Array(item_schema) = &column.schema.kind else {
            return Err(Failure::NoPlaceholder);
        };
        Ok(AvroValue::Array(
            values
                .into_iter()
                .map(|value| optional(item_schema, Some(value)))
                .collect(),
        ))
    };
    match (&column.toast, &column.encoding) {
        (ToastMarker::TextArray, Encoding::Array(_)) => {
            items(vec![AvroValue::String(placeholder.text.clone())])
        }
        (ToastMarker::BinaryArray, Encoding::Array(element)) => {
            let SchemaKind::Array(item_schema) = &column.schema.kind else {
                return Err(Failure::NoPlaceholder);
            };
            items(vec![convert(
                element,
                item_schema,
                &Value::Bytes(placeholder.bytes.clone()),
            )?])
        }
        (ToastMarker::IntArray, Encoding::Array(element)) => items(
            placeholder
                .bytes
                .iter()
                // Java bytes are signed.
                .map(|byte| match **element {
                    Encoding::Int64 => AvroValue::Long(i64::from(*byte as i8)),
                    _ => AvroValue::Int(i32::from(*byte as i8)),
                })
                .collect(),
        ),
        (ToastMarker::UuidArray, Encoding::Array(_)) => {
            items(vec![AvroValue::String(placeholder.uuid.clone())])
        }
        (ToastMarker::Hstore, Encoding::HstoreJson) => Ok(AvroValue::String(hstore_json(&[(
            placeholder.text.clone(),
            Some(placeholder.text.clone()),
        )]))),
        (_, Encoding::Binary(BinaryHandling::Bytes)) => {
            Ok(AvroValue::Bytes(placeholder.bytes.clone()))
        }
        (_, encoding) if encoding.is_string() => Ok(AvroValue::String(placeholder.text.clone())),
        _ => Err(Failure::NoPlaceholder),
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// The Avro schema `AvroData.fromConnectSchema` makes of `schema`, as Avro prints it.
fn avro_schema(schema: &ConnectSchema) -> Json {
    SchemaWriter::default().schema(schema, None)
}

/// Writes Avro schemas; remembers the records already defined so later uses refer to them by
/// name.
#[derive(Debug, Default)]
struct SchemaWriter {
    defined: HashSet<String>,
}

impl SchemaWriter {
    /// The schema of a field or item: a union with null when optional.
    fn schema(&mut self, schema: &ConnectSchema, namespace: Option<&str>) -> Json {
        let base = self.base(schema, namespace);
        match (schema.optional, &schema.default) {
            (false, _) => base,
            // A field's default must match the union's first branch.
            (true, Some(_)) => json!([base, "null"]),
            (true, None) => json!(["null", base]),
        }
    }

    fn base(&mut self, schema: &ConnectSchema, namespace: Option<&str>) -> Json {
        let mut object = Map::new();
        let mut connect_type = None;
        let mut logical_type = None;
        match &schema.kind {
            SchemaKind::Primitive(type_name) => {
                let avro_type = match *type_name {
                    "int8" => {
                        connect_type = Some("int8");
                        "int"
                    }
                    "int16" => {
                        connect_type = Some("int16");
                        "int"
                    }
                    "int32" => "int",
                    "int64" => "long",
                    other => other,
                };
                object.insert("type".into(), json!(avro_type));
                match schema.name.as_deref() {
                    Some("org.apache.kafka.connect.data.Decimal") => {
                        let (precision, scale) = decimal_precision_scale(schema);
                        object.insert("scale".into(), json!(scale));
                        object.insert("precision".into(), json!(precision));
                        logical_type = Some("decimal");
                    }
                    Some("org.apache.kafka.connect.data.Date") => logical_type = Some("date"),
                    Some("org.apache.kafka.connect.data.Time") => {
                        logical_type = Some("time-millis");
                    }
                    Some("org.apache.kafka.connect.data.Timestamp") => {
                        logical_type = Some("timestamp-millis");
                    }
                    _ => {}
                }
            }
            SchemaKind::Array(items) => {
                object.insert("type".into(), json!("array"));
                object.insert("items".into(), self.schema(items, namespace));
            }
            SchemaKind::Struct(fields) => {
                let full_name = avro_full_name(
                    schema
                        .name
                        .as_deref()
                        .unwrap_or("io.confluent.connect.avro.ConnectDefault"),
                );
                let (record_namespace, name) = match full_name.rsplit_once('.') {
                    Some((space, name)) => (Some(space), name),
                    None => (None, full_name.as_str()),
                };
                if self.defined.contains(&full_name) {
                    return if record_namespace == namespace {
                        json!(name)
                    } else {
                        json!(full_name)
                    };
                }
                self.defined.insert(full_name.clone());
                object.insert("type".into(), json!("record"));
                object.insert("name".into(), json!(name));
                match (record_namespace, namespace) {
                    (Some(space), enclosing) if enclosing != Some(space) => {
                        object.insert("namespace".into(), json!(space));
                    }
                    (None, Some(_)) => {
                        object.insert("namespace".into(), json!(""));
                    }
                    _ => {}
                }
                let fields = fields
                    .iter()
                    .map(|(field_name, field_schema)| {
                        let mut field = Map::new();
                        field.insert("name".into(), json!(avro_name(field_name)));
                        field.insert("type".into(), self.schema(field_schema, record_namespace));
                        if let Some(default) = &field_schema.default {
                            field.insert("default".into(), default.clone());
                        } else if field_schema.optional {
                            field.insert("default".into(), Json::Null);
                        }
                        Json::Object(field)
                    })
                    .collect();
                object.insert("fields".into(), Json::Array(fields));
            }
        }
        if let Some(doc) = schema.doc {
            object.insert("connect.doc".into(), json!(doc));
        }
        if let Some(version) = schema.version {
            object.insert("connect.version".into(), json!(version));
        }
        if !schema.parameters.is_empty() {
            let parameters = schema
                .parameters
                .iter()
                .map(|(key, value)| ((*key).to_owned(), json!(value)))
                .collect();
            object.insert("connect.parameters".into(), Json::Object(parameters));
        }
        if let Some(default) = &schema.default {
            object.insert("connect.default".into(), default.clone());
        }
        if let Some(name) = &schema.name {
            object.insert("connect.name".into(), json!(avro_full_name(name)));
        }
        if let Some(connect_type) = connect_type {
            object.insert("connect.type".into(), json!(connect_type));
        }
        if let Some(logical_type) = logical_type {
            object.insert("logicalType".into(), json!(logical_type));
        }
        match object.len() {
            // A primitive without properties prints as its bare name.
            1 => object.remove("type").unwrap_or(Json::Null),
            _ => Json::Object(object),
        }
    }
}

/// A full name with every dot-separated part adjusted to Avro's name rules.
fn avro_full_name(name: &str) -> String {
    name.split('.').map(avro_name).collect::<Vec<_>>().join(".")
}

/// An Avro name: `[A-Za-z_][A-Za-z0-9_]*`, every other character (and a leading digit)
/// replaced by `_`, as Debezium's `avro` adjustment mode does.
fn avro_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let valid = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
            if valid { c } else { '_' }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Datums are checked against the JSON format: decoded with the schema and rendered as
    //! `JsonConverter` renders the same Connect values, every record must equal the JSON
    //! encoder's payload for the same event. Expected schema texts are written by hand from
    //! `AvroData.fromConnectSchema` and Avro's `Schema.toString`.

    use apache_avro::reader::datum::GenericDatumReader;
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;
    use crate::event::{BaseType, ReplicaIdentity, TableId};
    use crate::format::fixtures::*;
    use crate::format::json::{JsonEncoder, JsonOptions};

    const KEY_ID: u32 = 7;
    const VALUE_ID: u32 = 0x0102_0304;

    fn encoder(options: AvroOptions) -> AvroEncoder {
        AvroEncoder::new(options, ConnectorContext::new(PREFIX, "inventory"))
    }

    /// The JSON options with the same modes, without schemas: the payload alone.
    fn json_encoder(options: &AvroOptions) -> JsonEncoder {
        JsonEncoder::new(
            JsonOptions {
                schemas_enable: false,
                decimal_handling: options.decimal_handling,
                time_precision: options.time_precision,
                binary_handling: options.binary_handling,
                unavailable_value_placeholder: options.unavailable_value_placeholder.clone(),
                money_fraction_digits: options.money_fraction_digits,
            },
            ConnectorContext::new(PREFIX, "inventory"),
        )
    }

    fn parse_schema(text: &str) -> ParsedSchema {
        ParsedSchema::parse_str(text).expect("valid Avro schema")
    }

    /// Checks the Confluent framing and decodes the datum with `schema_text`.
    fn decode(record: &[u8], schema_id: u32, schema_text: &str) -> AvroValue {
        assert_eq!(record[0], 0, "magic byte");
        assert_eq!(&record[1..5], &schema_id.to_be_bytes(), "schema id");
        let schema = parse_schema(schema_text);
        let mut datum = &record[5..];
        let value = GenericDatumReader::builder(&schema)
            .build()
            .expect("reader")
            .read_value(&mut datum)
            .expect("datum decodes");
        assert!(
            datum.is_empty(),
            "the datum is the whole rest of the record"
        );
        value
    }

    /// A decoded Avro value as `JsonConverter` renders the Connect value it stands for.
    fn to_json(value: &AvroValue) -> Json {
        match value {
            AvroValue::Null => Json::Null,
            AvroValue::Boolean(b) => json!(b),
            AvroValue::Int(n) | AvroValue::Date(n) | AvroValue::TimeMillis(n) => json!(n),
            AvroValue::Long(n) | AvroValue::TimestampMillis(n) => json!(n),
            AvroValue::Float(f) => json!(f.to_string().parse::<f64>().expect("float")),
            AvroValue::Double(f) if f.is_nan() => json!("NaN"),
            AvroValue::Double(f) => json!(f),
            AvroValue::String(s) => json!(s),
            AvroValue::Bytes(bytes) => json!(STANDARD.encode(bytes)),
            AvroValue::Decimal(decimal) => {
                let bytes: Vec<u8> = decimal.try_into().expect("decimal bytes");
                json!(STANDARD.encode(bytes))
            }
            AvroValue::Union(_, inner) => to_json(inner),
            AvroValue::Array(items) => Json::Array(items.iter().map(to_json).collect()),
            AvroValue::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), to_json(value)))
                    .collect(),
            ),
            other => panic!("no Avro value of this kind is written: {other:?}"),
        }
    }

    fn field<'a>(record: &'a AvroValue, name: &str) -> &'a AvroValue {
        let AvroValue::Record(fields) = record else {
            panic!("not a record: {record:?}");
        };
        &fields
            .iter()
            .find(|(field, _)| field == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1
    }

    /// Encodes `change` with both formats and checks that key and value agree.
    fn assert_same_as_json(options: AvroOptions, change: &RowChange) -> AvroValue {
        let mut avro = encoder(options.clone());
        let mut json = json_encoder(&options);
        let transaction = TransactionBlock {
            id: "571:97500059720".into(),
            total_order: 3,
            data_collection_order: 2,
        };

        let value_schema = avro.value_schema(&change.table);
        let value = avro
            .value(change, PROCESSED_MICROS, Some(&transaction), VALUE_ID)
            .expect("avro value");
        let decoded = decode(&value, VALUE_ID, &value_schema);
        let expected: Json = serde_json::from_slice(
            &json
                .value(change, PROCESSED_MICROS, Some(&transaction))
                .expect("json value"),
        )
        .expect("JSON");
        assert_eq!(to_json(&decoded), expected, "{options:?}");

        let key_schema = avro.key_schema(&change.table).expect("the table has a key");
        let key = avro.key(change, KEY_ID).expect("avro key").expect("a key");
        let expected: Json =
            serde_json::from_slice(&json.key(change).expect("json key").expect("a key"))
                .expect("JSON");
        assert_eq!(to_json(&decode(&key, KEY_ID, &key_schema)), expected);
        decoded
    }

    fn all_modes() -> Vec<AvroOptions> {
        let mut modes = vec![AvroOptions::default()];
        for decimal_handling in [DecimalHandling::Double, DecimalHandling::String] {
            modes.push(AvroOptions {
                decimal_handling,
                ..AvroOptions::default()
            });
        }
        for time_precision in [
            TimePrecision::AdaptiveTimeMicroseconds,
            TimePrecision::Connect,
        ] {
            modes.push(AvroOptions {
                time_precision,
                ..AvroOptions::default()
            });
        }
        for binary_handling in [
            BinaryHandling::Base64,
            BinaryHandling::Base64UrlSafe,
            BinaryHandling::Hex,
        ] {
            modes.push(AvroOptions {
                binary_handling,
                ..AvroOptions::default()
            });
        }
        modes
    }

    #[test]
    fn all_types_insert_decodes_to_the_json_values_in_every_mode() {
        let table = all_types_table(ReplicaIdentity::Default);
        let insert = change(&table, Op::Create, None, Some(full_row()));
        for options in all_modes() {
            assert_same_as_json(options, &insert);
        }
    }

    #[test]
    fn all_types_values_have_their_avro_types() {
        let table = all_types_table(ReplicaIdentity::Default);
        let insert = change(&table, Op::Create, None, Some(full_row()));
        let decoded = assert_same_as_json(AvroOptions::default(), &insert);
        let after = field(&decoded, "after");
        let AvroValue::Union(1, after) = after else {
            panic!("after is the Value branch: {after:?}");
        };
        let some = |value: AvroValue| AvroValue::Union(1, Box::new(value));
        assert_eq!(field(after, "id"), &AvroValue::Int(1));
        // 12.30 at scale 2: unscaled 1230 = 0x04CE.
        assert_eq!(
            field(after, "price"),
            &some(AvroValue::Decimal(vec![0x04, 0xCE].into()))
        );
        assert_eq!(
            field(after, "amount"),
            &some(AvroValue::Record(vec![
                ("scale".into(), AvroValue::Int(5)),
                ("value".into(), AvroValue::Bytes(vec![0x04, 0xCB, 0x2F])),
            ]))
        );
        assert_eq!(field(after, "birthday"), &some(AvroValue::Int(19_782)));
        assert_eq!(
            field(after, "ts3"),
            &some(AvroValue::Long(1_709_210_700_123))
        );
        assert_eq!(
            field(after, "ts6"),
            &some(AvroValue::Long(1_709_210_700_123_456))
        );
        assert_eq!(
            field(after, "alarm"),
            &some(AvroValue::Long(30_615_500_000))
        );
        assert_eq!(
            field(after, "blob"),
            &some(AvroValue::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF]))
        );
        assert_eq!(field(after, "bits"), &some(AvroValue::Bytes(vec![0x05])));
        assert_eq!(
            field(after, "ints"),
            &some(AvroValue::Array(vec![
                some(AvroValue::Int(1)),
                AvroValue::Union(0, Box::new(AvroValue::Null)),
                some(AvroValue::Int(3)),
            ]))
        );
        // source.snapshot is [string, null]: its default "false" is the first branch.
        assert_eq!(
            field(field(&decoded, "source"), "snapshot"),
            &AvroValue::Union(0, Box::new(AvroValue::String("false".into())))
        );

        // Connect's own logical types decode as Avro's.
        let connect = AvroOptions {
            time_precision: TimePrecision::Connect,
            ..AvroOptions::default()
        };
        let decoded = assert_same_as_json(connect, &insert);
        let AvroValue::Union(1, after) = field(&decoded, "after") else {
            panic!("after is the Value branch");
        };
        assert_eq!(field(after, "birthday"), &some(AvroValue::Date(19_782)));
        assert_eq!(
            field(after, "alarm"),
            &some(AvroValue::TimeMillis(30_615_500))
        );
        assert_eq!(
            field(after, "ts6"),
            &some(AvroValue::TimestampMillis(1_709_210_700_123))
        );
    }

    #[test]
    fn updates_deletes_and_placeholders_match_the_json_format() {
        let table = all_types_table(ReplicaIdentity::Full);
        let mut after = full_row();
        after.0[1] = text("Anne Marie");
        assert_same_as_json(
            AvroOptions::default(),
            &change(&table, Op::Update, Some(full_row()), Some(after)),
        );

        // DEFAULT identity delete: NOT NULL columns get their type's fallback.
        let table = all_types_table(ReplicaIdentity::Default);
        let mut before = Row(vec![Datum::Null; table.columns.len()]);
        before.0[0] = Datum::Value(Value::Int32(7));
        let delete = change(&table, Op::Delete, Some(before), None);
        let decoded = assert_same_as_json(AvroOptions::default(), &delete);
        assert_eq!(to_json(field(&decoded, "after")), Json::Null);

        // Unchanged TOASTed values in every form the placeholder takes.
        let mut row = full_row();
        for index in [1, 11, 13, 17, 18, 19] {
            row.0[index] = Datum::Unchanged;
        }
        let update = change(&table, Op::Update, None, Some(row));
        for options in [
            AvroOptions::default(),
            AvroOptions {
                binary_handling: BinaryHandling::Hex,
                unavailable_value_placeholder: "hex:3f3f".into(),
                ..AvroOptions::default()
            },
        ] {
            assert_same_as_json(options, &update);
        }
    }

    #[test]
    fn encoding_errors_name_table_and_column() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut avro = encoder(AvroOptions::default());
        let mut row = full_row();
        row.0[2] = Datum::Value(Value::Numeric(Numeric::NaN));
        let insert = change(&table, Op::Create, None, Some(row));
        assert_eq!(
            avro.value(&insert, PROCESSED_MICROS, None, VALUE_ID),
            Err(Error::SpecialNumericInPreciseMode {
                table: TableId::new("public", "all_types"),
                column: "price".into()
            })
        );
        let mut row = full_row();
        row.0[3] = Datum::Unchanged;
        let update = change(&table, Op::Update, None, Some(row));
        assert!(matches!(
            avro.value(&update, PROCESSED_MICROS, None, VALUE_ID),
            Err(Error::UnavailableValueNotRepresentable { ref column, .. }) if column == "amount"
        ));
        let short = change(&table, Op::Create, None, Some(Row(vec![Datum::Null])));
        assert!(matches!(
            avro.key(&short, KEY_ID),
            Err(Error::RowShape { found: 1, .. })
        ));
    }

    #[test]
    fn every_generated_schema_parses() {
        let table = all_types_table(ReplicaIdentity::Default);
        for options in all_modes() {
            let mut avro = encoder(options.clone());
            parse_schema(&avro.value_schema(&table));
            parse_schema(&avro.key_schema(&table).expect("key"));
            parse_schema(&avro.message_key_schema());
            parse_schema(&avro.message_value_schema());
        }
    }

    #[test]
    fn truncate_and_message_match_the_json_format() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut avro = encoder(AvroOptions::default());
        let mut json = json_encoder(&AvroOptions::default());
        let schema = avro.value_schema(&table);
        let value = avro
            .truncate_value(&table, &source_info(), PROCESSED_MICROS, None, VALUE_ID)
            .expect("truncate");
        let expected: Json = serde_json::from_slice(&json.truncate_value(
            &table,
            &source_info(),
            PROCESSED_MICROS,
            None,
        ))
        .expect("JSON");
        assert_eq!(to_json(&decode(&value, VALUE_ID, &schema)), expected);

        for binary_handling in [BinaryHandling::Bytes, BinaryHandling::Hex] {
            let options = AvroOptions {
                binary_handling,
                ..AvroOptions::default()
            };
            let avro = encoder(options.clone());
            let json = json_encoder(&options);
            let mut source = source_info();
            source.tx_id = None;
            let key = avro.message_key("audit", KEY_ID).expect("key");
            assert_eq!(
                to_json(&decode(&key, KEY_ID, &avro.message_key_schema())),
                json!({"prefix": "audit"})
            );
            let value = avro
                .message_value("audit", b"hello", &source, PROCESSED_MICROS, None, VALUE_ID)
                .expect("message");
            let expected: Json = serde_json::from_slice(&json.message_value(
                "audit",
                b"hello",
                &source,
                PROCESSED_MICROS,
                None,
            ))
            .expect("JSON");
            assert_eq!(
                to_json(&decode(&value, VALUE_ID, &avro.message_value_schema())),
                expected
            );
        }
    }

    fn customers() -> Arc<TableSchema> {
        let mut id = column("id", base(23, "int4", BaseType::Int4), -1);
        id.part_of_key = true;
        id.optional = false;
        let mut rank = column("rank", base(21, "int2", BaseType::Int2), -1);
        rank.optional = false;
        Arc::new(TableSchema {
            relation_id: 16_390,
            id: TableId::new("public", "customers"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                id,
                rank,
                column("email", base(25, "text", BaseType::Text), -1),
                column(
                    "balance",
                    base(1700, "numeric", BaseType::Numeric),
                    numeric_typmod(10, 2),
                ),
                column("joined", base(1082, "date", BaseType::Date), -1),
            ],
        })
    }

    const SOURCE_AVRO: &str = r#"{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql","fields":[{"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},{"name":"ts_ms","type":"long"},{"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},{"name":"db","type":"string"},{"name":"sequence","type":["null","string"],"default":null},{"name":"ts_us","type":["null","long"],"default":null},{"name":"ts_ns","type":["null","long"],"default":null},{"name":"schema","type":"string"},{"name":"table","type":"string"},{"name":"txId","type":["null","long"],"default":null},{"name":"lsn","type":["null","long"],"default":null},{"name":"xmin","type":["null","long"],"default":null},{"name":"origin","type":["null","string"],"default":null},{"name":"origin_lsn","type":["null","long"],"default":null}],"connect.version":1,"connect.name":"io.debezium.connector.postgresql.Source"}"#;

    #[test]
    fn key_and_envelope_schemas_have_debeziums_shape() {
        let table = customers();
        let mut avro = encoder(AvroOptions::default());
        assert_eq!(
            &*avro.key_schema(&table).expect("key"),
            r#"{"type":"record","name":"Key","namespace":"dbserver1.public.customers","fields":[{"name":"id","type":"int"}],"connect.name":"dbserver1.public.customers.Key"}"#
        );
        let value_record = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"},{"name":"rank","type":{"type":"int","connect.type":"int16"}},{"name":"email","type":["null","string"],"default":null},{"name":"balance","type":["null",{"type":"bytes","scale":2,"precision":10,"connect.version":1,"connect.parameters":{"scale":"2","connect.decimal.precision":"10"},"connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}],"default":null},{"name":"joined","type":["null",{"type":"int","connect.version":1,"connect.name":"io.debezium.time.Date"}],"default":null}],"connect.name":"dbserver1.public.customers.Value"}"#;
        let expected = format!(
            r#"{{"type":"record","name":"Envelope","namespace":"dbserver1.public.customers","fields":[{{"name":"before","type":["null",{value_record}],"default":null}},{{"name":"after","type":["null","Value"],"default":null}},{{"name":"source","type":{SOURCE_AVRO}}},{{"name":"transaction","type":["null",{{"type":"record","name":"block","namespace":"event","fields":[{{"name":"id","type":"string"}},{{"name":"total_order","type":"long"}},{{"name":"data_collection_order","type":"long"}}],"connect.version":1,"connect.name":"event.block"}}],"default":null}},{{"name":"op","type":"string"}},{{"name":"ts_ms","type":["null","long"],"default":null}},{{"name":"ts_us","type":["null","long"],"default":null}},{{"name":"ts_ns","type":["null","long"],"default":null}}],"connect.version":2,"connect.name":"dbserver1.public.customers.Envelope"}}"#
        );
        assert_eq!(&*avro.value_schema(&table), expected);

        let row = Row(vec![
            Datum::Value(Value::Int32(1)),
            Datum::Value(Value::Int16(-3)),
            Datum::Null,
            numeric("-0.5"), // -0.50: unscaled -50 = 0xCE
            Datum::Value(Value::Date(crate::event::Date::Days(-1))),
        ]);
        let decoded = assert_same_as_json(
            AvroOptions::default(),
            &change(&table, Op::Create, None, Some(row)),
        );
        assert_eq!(
            to_json(field(&decoded, "after")),
            json!({"id": 1, "rank": -3, "email": null, "balance": "zg==", "joined": -1})
        );
    }

    #[test]
    fn message_schemas_have_debeziums_names() {
        let avro = encoder(AvroOptions::default());
        assert_eq!(
            &*avro.message_key_schema(),
            r#"{"type":"record","name":"MessageKey","namespace":"io.debezium.connector.postgresql","fields":[{"name":"prefix","type":["null","string"],"default":null}],"connect.version":1,"connect.name":"io.debezium.connector.postgresql.MessageKey"}"#
        );
        let value: Json =
            serde_json::from_str(&avro.message_value_schema()).expect("schema is JSON");
        // Source is in the same namespace as MessageValue: its namespace is left out.
        assert_eq!(value["fields"][2]["type"]["name"], json!("Source"));
        assert_eq!(value["fields"][2]["type"].get("namespace"), None);
        assert_eq!(
            value["fields"][4]["type"]["fields"][1],
            json!({"name": "content", "type": ["null", "bytes"], "default": null})
        );
    }

    #[test]
    fn money_and_variable_scale_decimals() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut avro = encoder(AvroOptions::default());
        let value: Json = serde_json::from_str(&avro.value_schema(&table)).expect("JSON");
        let fields = &value["fields"][0]["type"][1]["fields"];
        // money: no precision parameter, so AvroData's default precision 64.
        assert_eq!(
            fields[20]["type"][1],
            json!({"type": "bytes", "scale": 2, "precision": 64, "connect.version": 1,
                   "connect.parameters": {"scale": "2"},
                   "connect.name": "org.apache.kafka.connect.data.Decimal",
                   "logicalType": "decimal"})
        );
        assert_eq!(
            fields[3]["type"][1],
            json!({"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
                   "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
                   "connect.doc": "Variable scaled decimal", "connect.version": 1,
                   "connect.name": "io.debezium.data.VariableScaleDecimal"})
        );
        assert_eq!(
            fields[17]["type"][1],
            json!({"type": "array", "items": ["null", "int"]})
        );
    }

    #[test]
    fn a_second_struct_of_the_same_name_is_a_reference() {
        let numeric_column =
            |name: &str| column(name, base(1700, "numeric", BaseType::Numeric), -1);
        let mut id = column("id", base(23, "int4", BaseType::Int4), -1);
        id.part_of_key = true;
        id.optional = false;
        let table = Arc::new(TableSchema {
            relation_id: 3,
            id: TableId::new("public", "amounts"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![id, numeric_column("a"), numeric_column("b")],
        });
        let mut avro = encoder(AvroOptions::default());
        let value: Json = serde_json::from_str(&avro.value_schema(&table)).expect("JSON");
        let fields = &value["fields"][0]["type"][1]["fields"];
        assert_eq!(fields[1]["type"][1]["name"], json!("VariableScaleDecimal"));
        assert_eq!(
            fields[2]["type"],
            json!(["null", "io.debezium.data.VariableScaleDecimal"])
        );
        let row = Row(vec![
            Datum::Value(Value::Int32(1)),
            numeric("1.5"),
            numeric("-20"),
        ]);
        assert_same_as_json(
            AvroOptions::default(),
            &change(&table, Op::Create, None, Some(row)),
        );
    }

    #[test]
    fn names_are_adjusted_to_avro_rules() {
        let mut id = column("1st id", base(23, "int4", BaseType::Int4), -1);
        id.part_of_key = true;
        id.optional = false;
        let table = Arc::new(TableSchema {
            relation_id: 4,
            id: TableId::new("sales-eu", "2024"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![id, column("prix €", base(25, "text", BaseType::Text), -1)],
        });
        let mut avro = encoder(AvroOptions::default());
        let key = avro.key_schema(&table).expect("key");
        assert_eq!(
            &*key,
            r#"{"type":"record","name":"Key","namespace":"dbserver1.sales_eu._024","fields":[{"name":"_st_id","type":"int"}],"connect.name":"dbserver1.sales_eu._024.Key"}"#
        );
        parse_schema(&avro.value_schema(&table));
        let row = Row(vec![Datum::Value(Value::Int32(5)), text("3")]);
        let insert = change(&table, Op::Create, None, Some(row));
        let value = avro
            .value(&insert, PROCESSED_MICROS, None, VALUE_ID)
            .expect("value");
        let decoded = decode(&value, VALUE_ID, &avro.value_schema(&table));
        assert_eq!(
            to_json(field(&decoded, "after")),
            json!({"_st_id": 5, "prix__": "3"})
        );
    }

    #[test]
    fn schemas_are_rebuilt_when_the_table_changes() {
        let table = customers();
        let mut avro = encoder(AvroOptions::default());
        let before = avro.value_schema(&table);
        assert!(Arc::ptr_eq(&before, &avro.value_schema(&table)), "cached");

        let mut altered = (*table).clone();
        altered.columns.truncate(2);
        altered.columns[1].name = "level".into();
        let altered = Arc::new(altered);
        let after = avro.value_schema(&altered);
        assert_ne!(before, after);
        assert!(after.contains(r#"{"name":"level","type":{"type":"int","connect.type":"int16"}}"#));
        let row = Row(vec![
            Datum::Value(Value::Int32(1)),
            Datum::Value(Value::Int16(2)),
        ]);
        let insert = change(&altered, Op::Create, None, Some(row));
        let value = avro
            .value(&insert, PROCESSED_MICROS, None, VALUE_ID)
            .expect("value");
        assert_eq!(
            to_json(field(&decode(&value, VALUE_ID, &after), "after")),
            json!({"id": 1, "level": 2})
        );
    }

    #[test]
    fn table_without_key_has_no_key_schema() {
        let table = Arc::new(TableSchema {
            relation_id: 1,
            id: TableId::new("public", "log"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![column("line", base(25, "text", BaseType::Text), -1)],
        });
        let mut avro = encoder(AvroOptions::default());
        assert_eq!(avro.key_schema(&table), None);
        let insert = change(&table, Op::Create, None, Some(Row(vec![text("x")])));
        assert_eq!(avro.key(&insert, KEY_ID), Ok(None));
    }

    #[test]
    fn wire_format_header() {
        let table = customers();
        let mut avro = encoder(AvroOptions::default());
        let row = Row(vec![
            Datum::Value(Value::Int32(1)),
            Datum::Value(Value::Int16(0)),
            Datum::Null,
            Datum::Null,
            Datum::Null,
        ]);
        let insert = change(&table, Op::Create, None, Some(row));
        let key = avro.key(&insert, 0x0A0B_0C0D).expect("key").expect("some");
        // Magic byte, big-endian id, then the record {id: 1}: zigzag varint 2.
        assert_eq!(key, vec![0x00, 0x0A, 0x0B, 0x0C, 0x0D, 0x02]);
    }
}
