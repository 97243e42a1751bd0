//! Debezium change events in Kafka Connect's `JsonConverter` shape.
//!
//! With `schemas.enable=true` (Connect's default) a key or value is
//! `{"schema": <Connect schema>, "payload": <data>}`; without, only the payload. The Connect schema
//! JSON follows `JsonConverter.asJsonSchema`: `type`, then `fields`/`items`, `optional`, `name`,
//! `version`, `doc`, `parameters`, `default`, and `field` last for struct members. Objects keep
//! that order (serde_json's `preserve_order`), so the bytes match Java's output except for the
//! spelling of floating-point numbers (`1e20` here, `1.0E20` from Jackson).
//!
//! Per table the encoder builds, once, a plan: for every column its Connect schema and how its
//! values are written (PostgresValueConverter's type mapping under the configured modes). The
//! plan is rebuilt when the table's schema changes.
//!
//! Choices where Debezium gives no usable answer (documented here, tested below):
//! - NaN/±Infinity numerics under `decimal.handling.mode=precise` are an error, as in Debezium.
//! - An unchanged TOASTed value whose type has no placeholder form (numeric, bit varying, most
//!   arrays) is an error, as in Debezium; under `binary.handling.mode=base64`/`base64-url-safe`
//!   an unchanged BYTEA carries the raw placeholder text (as in `hex` mode) where Debezium
//!   writes null.
//! - hstore pairs keep PostgreSQL's order (Debezium's follows a Java HashMap).
//! - Columns of types tributary does not know (composite types, extension types) are written as
//!   optional strings in PostgreSQL's text form, where Debezium drops them by default
//!   (`include.unknown.datatypes=false`). Arrays of interval, money, bit, varbit, xml, name and
//!   domains are left out, as Debezium does.
//! - Geometric types are left out too, where Debezium maps them (`point` to
//!   `io.debezium.data.geometry.Point`, `box`/`path`/`polygon`/... to WKB `Geometry` structs):
//!   not supported yet.

use std::{collections::HashMap, sync::Arc};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE},
};
use bigdecimal::{BigDecimal, RoundingMode};
use md5::{Digest, Md5};
use serde_json::{Map, Value as Json, json};

use super::{
    BinaryHandling, CONNECTOR_NAME, ConnectorContext, DecimalHandling, Error, TimePrecision,
};
use crate::event::{
    BaseType, Column, Date, Datum, Numeric, Op, PgType, Row, RowChange, SourceInfo, TableSchema,
    Timestamp, TypeKind, Value,
};

/// Debezium's default `unavailable.value.placeholder`.
pub const DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// `io.debezium.time.MicroDuration`'s average month: 365.25 / 12 days.
const DAYS_PER_MONTH_AVG: f64 = 365.25 / 12.0;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// pgjdbc's `PGStatement.DATE_POSITIVE_INFINITY` / `DATE_NEGATIVE_INFINITY`, which Debezium
/// writes (as microseconds) for `timestamp 'infinity'` / `'-infinity'`.
const TIMESTAMP_POSITIVE_INFINITY_MICROS: i64 = 9_223_372_036_825_200_000;
const TIMESTAMP_NEGATIVE_INFINITY_MICROS: i64 = -9_223_372_036_832_400_000;

/// Debezium maps `date 'infinity'` / `'-infinity'` to the LocalDates -5877611-06-21 and
/// -5877611-06-22 and writes their epoch days.
const DATE_POSITIVE_INFINITY_DAYS: i32 = -2_147_472_693;
const DATE_NEGATIVE_INFINITY_DAYS: i32 = -2_147_472_692;

/// `source.snapshot`'s allowed values, in `SnapshotRecord` order.
const SNAPSHOT_ALLOWED: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

/// Options of the JSON format: the converter's and the connector's knobs that change bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// The converter's `schemas.enable`.
    pub schemas_enable: bool,
    pub decimal_handling: DecimalHandling,
    pub time_precision: TimePrecision,
    pub binary_handling: BinaryHandling,
    /// `unavailable.value.placeholder`; a `hex:` prefix means the rest is hex-encoded octets.
    pub unavailable_value_placeholder: String,
    /// `money.fraction.digits`.
    pub money_fraction_digits: u32,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            schemas_enable: true,
            decimal_handling: DecimalHandling::default(),
            time_precision: TimePrecision::default(),
            binary_handling: BinaryHandling::default(),
            unavailable_value_placeholder: DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.to_owned(),
            money_fraction_digits: 2,
        }
    }
}

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

/// Encodes change events as Debezium + `JsonConverter` would write them.
#[derive(Debug)]
pub struct JsonEncoder {
    options: JsonOptions,
    context: ConnectorContext,
    placeholder: Placeholder,
    source_schema: ConnectSchema,
    transaction_schema: ConnectSchema,
    /// Plans by relation id; a plan is reused while its table schema is unchanged.
    plans: HashMap<u32, TablePlan>,
}

impl JsonEncoder {
    pub fn new(options: JsonOptions, context: ConnectorContext) -> Self {
        let placeholder = Placeholder::new(&options.unavailable_value_placeholder);
        Self {
            options,
            context,
            placeholder,
            source_schema: source_schema(),
            transaction_schema: transaction_schema(),
            plans: HashMap::new(),
        }
    }

    /// The record key of a row change: the key columns of the new row (the old row for a
    /// delete), or None (a null key) when the table has no key columns.
    pub fn key(&mut self, change: &RowChange) -> Result<Option<Vec<u8>>, Error> {
        let schemas_enable = self.options.schemas_enable;
        let (plan, ctx) = self.plan_and_context(&change.table);
        let Some(key_schema) = &plan.key_schema_json else {
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
        check_row_shape(&change.table, row)?;
        let mut out = open_document(schemas_enable, key_schema, 64);
        ctx.write_row(&mut out, &change.table, plan, row, true)?;
        close_document(&mut out, schemas_enable);
        Ok(Some(out))
    }

    /// The record value of a row change: the envelope with `before`, `after`, `source`,
    /// `transaction`, `op` and the processing time `processed_at_micros` in `ts_ms/us/ns`.
    /// Tombstones are the caller's business (a null value).
    pub fn value(
        &mut self,
        change: &RowChange,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
    ) -> Result<Vec<u8>, Error> {
        let schemas_enable = self.options.schemas_enable;
        let (plan, ctx) = self.plan_and_context(&change.table);
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
        // Written straight into the record's bytes: building a JSON tree per row first cost
        // more than everything else.
        let mut out = open_document(schemas_enable, &plan.envelope_schema_json, 512);
        out.extend_from_slice(b"{\"before\":");
        match &change.before {
            Some(row) => ctx.write_row(&mut out, &change.table, plan, row, false)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"after\":");
        match after {
            Some(row) => ctx.write_row(&mut out, &change.table, plan, row, false)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"source\":");
        ctx.write_source(
            &mut out,
            &change.source,
            &change.table.id.schema,
            &change.table.id.table,
        );
        write_envelope_tail(&mut out, transaction, change.op.code(), processed_at_micros);
        close_document(&mut out, schemas_enable);
        Ok(out)
    }

    /// The record value of a TRUNCATE of `table` (op `t`, no `before`/`after`); its key is null.
    pub fn truncate_value(
        &mut self,
        table: &Arc<TableSchema>,
        source: &SourceInfo,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
    ) -> Vec<u8> {
        let schemas_enable = self.options.schemas_enable;
        let (plan, ctx) = self.plan_and_context(table);
        let source = ctx.source(source, &table.id.schema, &table.id.table);
        let payload = envelope_payload(
            Json::Null,
            Json::Null,
            source,
            transaction,
            Op::Truncate.code(),
            processed_at_micros,
        );
        wrap_serialized(schemas_enable, &plan.envelope_schema_json, &payload)
    }

    /// The topic of logical decoding messages: `<prefix>.message`.
    pub fn message_topic(&self) -> String {
        format!("{}.message", self.context.topic_prefix)
    }

    /// The record key of a logical decoding message: `{prefix}`.
    pub fn message_key(&self, prefix: &str) -> Vec<u8> {
        let schema = ConnectSchema::structure(
            vec![("prefix", ConnectSchema::primitive("string").optional())],
            "io.debezium.connector.postgresql.MessageKey",
            1,
        );
        wrap(
            self.options.schemas_enable,
            &schema,
            json!({ "prefix": prefix }),
        )
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
    ) -> Vec<u8> {
        let binary = self.options.binary_handling;
        let block_schema = ConnectSchema::structure(
            vec![
                ("prefix", ConnectSchema::primitive("string").optional()),
                ("content", binary_schema(binary).optional()),
            ],
            "io.debezium.connector.postgresql.Message",
            1,
        );
        let schema = ConnectSchema::structure(
            vec![
                ("op", ConnectSchema::primitive("string")),
                ("ts_ms", ConnectSchema::primitive("int64").optional()),
                ("source", self.source_schema.clone()),
                ("transaction", self.transaction_schema.clone()),
                ("message", block_schema),
            ],
            "io.debezium.connector.postgresql.MessageValue",
            1,
        );
        let ctx = self.context();
        let mut payload = Map::new();
        payload.insert("op".into(), json!(Op::Message.code()));
        payload.insert("ts_ms".into(), json!(processed_at_micros.div_euclid(1000)));
        payload.insert("source".into(), ctx.source(source, "", ""));
        payload.insert("transaction".into(), transaction_payload(transaction));
        let mut message = Map::new();
        message.insert("prefix".into(), json!(prefix));
        message.insert("content".into(), encode_binary(binary, content));
        payload.insert("message".into(), Json::Object(message));
        wrap(self.options.schemas_enable, &schema, Json::Object(payload))
    }

    fn context(&self) -> EncodeContext<'_> {
        EncodeContext {
            context: &self.context,
            placeholder: &self.placeholder,
        }
    }

    /// The table's plan (built or rebuilt when its schema changed) and the encoding context.
    fn plan_and_context(&mut self, table: &Arc<TableSchema>) -> (&TablePlan, EncodeContext<'_>) {
        let stale = match self.plans.get(&table.relation_id) {
            Some(plan) => !Arc::ptr_eq(&plan.table, table) && *plan.table != **table,
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
        let plan = &self.plans[&table.relation_id];
        let ctx = EncodeContext {
            context: &self.context,
            placeholder: &self.placeholder,
        };
        (plan, ctx)
    }
}

/// Starts a record: `{"schema":<schema_json>,"payload":` when schemas are on; the payload
/// follows, then [`close_document`].
fn open_document(schemas_enable: bool, schema_json: &str, payload_capacity: usize) -> Vec<u8> {
    if !schemas_enable {
        return Vec::with_capacity(payload_capacity);
    }
    let mut out = Vec::with_capacity(schema_json.len() + 24 + payload_capacity);
    out.extend_from_slice(b"{\"schema\":");
    out.extend_from_slice(schema_json.as_bytes());
    out.extend_from_slice(b",\"payload\":");
    out
}

fn close_document(out: &mut Vec<u8>, schemas_enable: bool) {
    if schemas_enable {
        out.push(b'}');
    }
}

/// Appends `value` as JSON (compact, as serde_json writes it).
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing strings, numbers and JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn push_i64(out: &mut Vec<u8>, number: i64) {
    use std::io::Write as _;
    let _ = write!(out, "{number}");
}

/// `,"transaction":…,"op":…,"ts_ms":…,"ts_us":…,"ts_ns":…}`: the envelope after `source`.
fn write_envelope_tail(
    out: &mut Vec<u8>,
    transaction: Option<&TransactionBlock>,
    op: &str,
    processed_at_micros: i64,
) {
    out.extend_from_slice(b",\"transaction\":");
    push_json(out, &transaction_payload(transaction));
    out.extend_from_slice(b",\"op\":");
    push_json(out, op);
    out.extend_from_slice(b",\"ts_ms\":");
    push_i64(out, processed_at_micros.div_euclid(1000));
    out.extend_from_slice(b",\"ts_us\":");
    push_i64(out, processed_at_micros);
    out.extend_from_slice(b",\"ts_ns\":");
    push_i64(out, processed_at_micros.saturating_mul(1000));
    out.push(b'}');
}

/// As `wrap`, with the schema already serialized: the same bytes, without rebuilding it.
fn wrap_serialized(schemas_enable: bool, schema_json: &str, payload: &Json) -> Vec<u8> {
    if !schemas_enable {
        return serde_json::to_vec(payload).unwrap_or_default();
    }
    let mut out = Vec::with_capacity(schema_json.len() + 512);
    out.extend_from_slice(b"{\"schema\":");
    out.extend_from_slice(schema_json.as_bytes());
    out.extend_from_slice(b",\"payload\":");
    // Writing a Value into a Vec cannot fail: every key is a string.
    let _ = serde_json::to_writer(&mut out, payload);
    out.push(b'}');
    out
}

/// `{"schema", "payload"}` or the bare payload, serialized.
fn wrap(schemas_enable: bool, schema: &ConnectSchema, payload: Json) -> Vec<u8> {
    let document = if schemas_enable {
        let mut envelope = Map::new();
        envelope.insert("schema".into(), schema.to_json());
        envelope.insert("payload".into(), payload);
        Json::Object(envelope)
    } else {
        payload
    };
    // Serializing a Value into a Vec cannot fail: every key is a string.
    serde_json::to_vec(&document).unwrap_or_default()
}

fn envelope_payload(
    before: Json,
    after: Json,
    source: Json,
    transaction: Option<&TransactionBlock>,
    op: &str,
    processed_at_micros: i64,
) -> Json {
    let mut payload = Map::new();
    payload.insert("before".into(), before);
    payload.insert("after".into(), after);
    payload.insert("source".into(), source);
    payload.insert("transaction".into(), transaction_payload(transaction));
    payload.insert("op".into(), json!(op));
    payload.insert("ts_ms".into(), json!(processed_at_micros.div_euclid(1000)));
    payload.insert("ts_us".into(), json!(processed_at_micros));
    payload.insert(
        "ts_ns".into(),
        json!(processed_at_micros.saturating_mul(1000)),
    );
    Json::Object(payload)
}

fn transaction_payload(transaction: Option<&TransactionBlock>) -> Json {
    match transaction {
        Some(tx) => json!({
            "id": tx.id,
            "total_order": tx.total_order,
            "data_collection_order": tx.data_collection_order,
        }),
        None => Json::Null,
    }
}

fn check_row_shape(table: &TableSchema, row: &Row) -> Result<(), Error> {
    if row.0.len() != table.columns.len() {
        return Err(Error::RowShape {
            table: table.id.clone(),
            expected: table.columns.len(),
            found: row.0.len(),
        });
    }
    Ok(())
}

/// What encoding a value needs besides its column plan.
struct EncodeContext<'a> {
    context: &'a ConnectorContext,
    placeholder: &'a Placeholder,
}

impl EncodeContext<'_> {
    /// Appends the row (only its key columns when `key_only`) as a JSON object.
    fn write_row(
        &self,
        out: &mut Vec<u8>,
        table: &TableSchema,
        plan: &TablePlan,
        row: &Row,
        key_only: bool,
    ) -> Result<(), Error> {
        check_row_shape(table, row)?;
        out.push(b'{');
        let mut first = true;
        for column in plan.columns.iter().filter(|c| !key_only || c.part_of_key) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(column.json_name.as_bytes());
            out.push(b':');
            let value = self.encode_datum(table, column, &row.0[column.index])?;
            push_json(out, &value);
        }
        out.push(b'}');
        Ok(())
    }

    /// Appends `source` as [`Self::source`] builds it.
    fn write_source(&self, out: &mut Vec<u8>, source: &SourceInfo, schema: &str, table: &str) {
        let sequence = serde_json::to_string(&[
            source.sequence.0.map(|lsn| lsn.0.to_string()),
            source.sequence.1.map(|lsn| lsn.0.to_string()),
        ])
        .unwrap_or_default();
        out.extend_from_slice(b"{\"version\":");
        push_json(out, self.context.connector_version);
        out.extend_from_slice(b",\"connector\":");
        push_json(out, CONNECTOR_NAME);
        out.extend_from_slice(b",\"name\":");
        push_json(out, &self.context.topic_prefix);
        out.extend_from_slice(b",\"ts_ms\":");
        push_i64(out, source.ts_micros.div_euclid(1000));
        out.extend_from_slice(b",\"snapshot\":");
        push_json(out, source.snapshot.code());
        out.extend_from_slice(b",\"db\":");
        push_json(out, &self.context.database);
        out.extend_from_slice(b",\"sequence\":");
        push_json(out, &sequence);
        out.extend_from_slice(b",\"ts_us\":");
        push_i64(out, source.ts_micros);
        out.extend_from_slice(b",\"ts_ns\":");
        push_i64(out, source.ts_micros.saturating_mul(1000));
        out.extend_from_slice(b",\"schema\":");
        push_json(out, schema);
        out.extend_from_slice(b",\"table\":");
        push_json(out, table);
        out.extend_from_slice(b",\"txId\":");
        match source.tx_id {
            Some(tx_id) => push_i64(out, i64::from(tx_id)),
            None => out.extend_from_slice(b"null"),
        }
        // Debezium writes the LSN as a signed 64-bit integer.
        out.extend_from_slice(b",\"lsn\":");
        push_i64(out, source.lsn.0 as i64);
        out.extend_from_slice(b",\"xmin\":null,\"origin\":null,\"origin_lsn\":null}");
    }

    fn encode_datum(
        &self,
        table: &TableSchema,
        column: &ColumnPlan,
        datum: &Datum,
    ) -> Result<Json, Error> {
        let result = match datum {
            // A NOT NULL column without a value (the non-key columns of a DEFAULT delete's old
            // row) gets its type's fallback, as JdbcValueConverters.convertValue does.
            Datum::Null if column.optional => return Ok(Json::Null),
            Datum::Null => return Ok(column.encoding.fallback()),
            Datum::Unchanged => self.unavailable(column),
            Datum::Value(value) => column.encoding.encode(value),
        };
        result.map_err(|failure| match failure {
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
        })
    }

    /// Debezium's placeholder for an unchanged TOASTed value, adapted to the column's type
    /// (`UnchangedToastedPlaceholder`): the marker depends on the type name, its rendering on
    /// the column's converter.
    fn unavailable(&self, column: &ColumnPlan) -> Result<Json, Failure> {
        let placeholder = self.placeholder;
        match (&column.toast, &column.encoding) {
            (ToastMarker::TextArray, Encoding::Array(_)) => Ok(json!([placeholder.text])),
            (ToastMarker::BinaryArray, Encoding::Array(element)) => Ok(Json::Array(vec![
                element.encode(&Value::Bytes(placeholder.bytes.clone()))?,
            ])),
            (ToastMarker::IntArray, Encoding::Array(_)) => Ok(Json::Array(
                // Java bytes are signed.
                placeholder.bytes.iter().map(|b| json!(*b as i8)).collect(),
            )),
            (ToastMarker::UuidArray, Encoding::Array(_)) => Ok(json!([placeholder.uuid])),
            (ToastMarker::Hstore, Encoding::HstoreJson) => {
                let mut object = Map::new();
                object.insert(placeholder.text.clone(), json!(placeholder.text));
                Ok(Json::String(Json::Object(object).to_string()))
            }
            (_, Encoding::Binary(BinaryHandling::Bytes)) => {
                Ok(encode_binary(BinaryHandling::Bytes, &placeholder.bytes))
            }
            (_, encoding) if encoding.is_string() => Ok(json!(placeholder.text)),
            _ => Err(Failure::NoPlaceholder),
        }
    }

    fn source(&self, source: &SourceInfo, schema: &str, table: &str) -> Json {
        let sequence = serde_json::to_string(&[
            source.sequence.0.map(|lsn| lsn.0.to_string()),
            source.sequence.1.map(|lsn| lsn.0.to_string()),
        ])
        .unwrap_or_default();
        let mut object = Map::new();
        object.insert("version".into(), json!(self.context.connector_version));
        object.insert("connector".into(), json!(CONNECTOR_NAME));
        object.insert("name".into(), json!(self.context.topic_prefix));
        object.insert("ts_ms".into(), json!(source.ts_micros.div_euclid(1000)));
        object.insert("snapshot".into(), json!(source.snapshot.code()));
        object.insert("db".into(), json!(self.context.database));
        object.insert("sequence".into(), json!(sequence));
        object.insert("ts_us".into(), json!(source.ts_micros));
        object.insert("ts_ns".into(), json!(source.ts_micros.saturating_mul(1000)));
        object.insert("schema".into(), json!(schema));
        object.insert("table".into(), json!(table));
        object.insert("txId".into(), json!(source.tx_id.map(i64::from)));
        // Debezium writes the LSN as a signed 64-bit integer.
        object.insert("lsn".into(), json!(source.lsn.0 as i64));
        object.insert("xmin".into(), Json::Null);
        object.insert("origin".into(), Json::Null);
        object.insert("origin_lsn".into(), Json::Null);
        Json::Object(object)
    }
}

/// The configured placeholder in the forms Debezium derives from it.
#[derive(Debug)]
struct Placeholder {
    bytes: Vec<u8>,
    text: String,
    /// `UUID.nameUUIDFromBytes(bytes)`.
    uuid: String,
}

impl Placeholder {
    fn new(configured: &str) -> Self {
        let bytes = configured
            .strip_prefix("hex:")
            .and_then(decode_hex)
            .unwrap_or_else(|| configured.as_bytes().to_vec());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let uuid = name_based_uuid(&bytes);
        Self { bytes, text, uuid }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A version-3 (MD5, name-based) UUID of `name`, as Java's `UUID.nameUUIDFromBytes`.
fn name_based_uuid(name: &[u8]) -> String {
    let mut hash: [u8; 16] = Md5::digest(name).into();
    hash[6] = (hash[6] & 0x0f) | 0x30;
    hash[8] = (hash[8] & 0x3f) | 0x80;
    let hex = encode_hex(&hash);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    hex
}

fn encode_binary(mode: BinaryHandling, bytes: &[u8]) -> Json {
    Json::String(match mode {
        // JsonConverter prints BYTES as standard base64.
        BinaryHandling::Bytes | BinaryHandling::Base64 => STANDARD.encode(bytes),
        BinaryHandling::Base64UrlSafe => URL_SAFE.encode(bytes),
        BinaryHandling::Hex => encode_hex(bytes),
    })
}

// ---------------------------------------------------------------------------------------------
// Connect schemas

/// A Kafka Connect schema, enough of it to print what `JsonConverter.asJsonSchema` prints.
#[derive(Debug, Clone, PartialEq)]
struct ConnectSchema {
    kind: SchemaKind,
    optional: bool,
    name: Option<String>,
    version: Option<i32>,
    doc: Option<&'static str>,
    parameters: Vec<(&'static str, String)>,
    default: Option<Json>,
}

#[derive(Debug, Clone, PartialEq)]
enum SchemaKind {
    /// `boolean`, `int16`, `int32`, `int64`, `float`, `double`, `string`, `bytes`.
    Primitive(&'static str),
    Array(Box<ConnectSchema>),
    Struct(Vec<(String, ConnectSchema)>),
}

impl ConnectSchema {
    fn primitive(type_name: &'static str) -> Self {
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

    fn array(items: ConnectSchema) -> Self {
        Self {
            kind: SchemaKind::Array(Box::new(items)),
            ..Self::primitive("array")
        }
    }

    fn structure(fields: Vec<(&str, ConnectSchema)>, name: &str, version: i32) -> Self {
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
    fn semantic(type_name: &'static str, name: &str) -> Self {
        Self::primitive(type_name).named(name, Some(1))
    }

    fn named(mut self, name: &str, version: Option<i32>) -> Self {
        self.name = Some(name.to_owned());
        self.version = version;
        self
    }

    fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    fn parameter(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.parameters.push((key, value.into()));
        self
    }

    fn to_json(&self) -> Json {
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
fn source_schema() -> ConnectSchema {
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
fn transaction_schema() -> ConnectSchema {
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

fn binary_schema(mode: BinaryHandling) -> ConnectSchema {
    match mode {
        BinaryHandling::Bytes => ConnectSchema::primitive("bytes"),
        _ => ConnectSchema::primitive("string"),
    }
}

// ---------------------------------------------------------------------------------------------
// Per-table plans

#[derive(Debug)]
struct TablePlan {
    table: Arc<TableSchema>,
    /// The columns Debezium keeps, in table order.
    columns: Vec<ColumnPlan>,
    /// The key and envelope schemas, serialized once: they are most of every record's bytes,
    /// and building them per record cost more than everything else the encoder does. The key
    /// schema is None when the table has no (mapped) key column: the key is null.
    key_schema_json: Option<String>,
    envelope_schema_json: String,
}

#[derive(Debug)]
struct ColumnPlan {
    /// Position in the table's columns (and in every row).
    index: usize,
    name: String,
    /// `name` as a JSON string, escaped once.
    json_name: String,
    optional: bool,
    part_of_key: bool,
    schema: ConnectSchema,
    encoding: Encoding,
    toast: ToastMarker,
}

impl TablePlan {
    fn new(
        table: &Arc<TableSchema>,
        options: &JsonOptions,
        topic_prefix: &str,
        source_schema: &ConnectSchema,
        transaction_schema: &ConnectSchema,
    ) -> Self {
        let columns: Vec<ColumnPlan> = table
            .columns
            .iter()
            .enumerate()
            .filter_map(|(index, column)| {
                let (schema, encoding) = column_mapping(column, &column.pg_type, options)?;
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
            .collect();
        let record_name = format!("{topic_prefix}.{}.{}", table.id.schema, table.id.table);
        let fields = |key_only: bool| -> Vec<(&str, ConnectSchema)> {
            columns
                .iter()
                .filter(|c| !key_only || c.part_of_key)
                .map(|c| (c.name.as_str(), c.schema.clone()))
                .collect()
        };
        let key_schema = columns.iter().any(|c| c.part_of_key).then(|| {
            let mut schema = ConnectSchema::structure(fields(true), "", 0);
            schema.name = Some(format!("{record_name}.Key"));
            schema.version = None;
            schema
        });
        let mut row_schema = ConnectSchema::structure(fields(false), "", 0).optional();
        row_schema.name = Some(format!("{record_name}.Value"));
        row_schema.version = None;
        let envelope_schema = ConnectSchema::structure(
            vec![
                ("before", row_schema.clone()),
                ("after", row_schema),
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
        let serialize =
            |schema: &ConnectSchema| serde_json::to_string(&schema.to_json()).unwrap_or_default();
        Self {
            table: Arc::clone(table),
            columns,
            key_schema_json: key_schema.as_ref().map(serialize),
            envelope_schema_json: serialize(&envelope_schema),
        }
    }
}

/// Which of Debezium's unchanged-TOAST markers a column gets, by its type name
/// (`UnchangedToastedReplicationMessageColumn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToastMarker {
    Plain,
    TextArray,
    BinaryArray,
    IntArray,
    Hstore,
    UuidArray,
}

impl ToastMarker {
    fn for_type(type_name: &str) -> Self {
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
enum Encoding {
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
enum Failure {
    Mismatch(&'static str),
    SpecialNumeric,
    NoPlaceholder,
}

/// The Connect schema and encoding of a column of type `pg_type` (which may be the element type
/// of an array column), or None when Debezium drops such columns.
fn column_mapping(
    column: &Column,
    pg_type: &PgType,
    options: &JsonOptions,
) -> Option<(ConnectSchema, Encoding)> {
    let base = match &pg_type.kind {
        TypeKind::Base(base) => *base,
        TypeKind::Domain(inner) => return column_mapping(column, inner, options),
        TypeKind::Enum(labels) => {
            return Some((
                ConnectSchema::semantic("string", "io.debezium.data.Enum")
                    .parameter("allowed", labels.join(",")),
                Encoding::Text,
            ));
        }
        TypeKind::Array(element) => return array_mapping(column, element, options),
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
        BaseType::Numeric => numeric_mapping(column, options.decimal_handling),
        BaseType::Money => money_mapping(options),
        BaseType::Text
        | BaseType::Inet
        | BaseType::Cidr
        | BaseType::MacAddr
        | BaseType::MacAddr8 => (primitive("string"), Encoding::Text),
        BaseType::Bytea => (
            binary_schema(options.binary_handling),
            Encoding::Binary(options.binary_handling),
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
        BaseType::Date => match options.time_precision {
            TimePrecision::Connect => (
                semantic("int32", "org.apache.kafka.connect.data.Date"),
                Encoding::Date,
            ),
            _ => (semantic("int32", "io.debezium.time.Date"), Encoding::Date),
        },
        BaseType::Time => match options.time_precision {
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
        BaseType::Timestamp => match options.time_precision {
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

fn numeric_mapping(column: &Column, mode: DecimalHandling) -> (ConnectSchema, Encoding) {
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

fn money_mapping(options: &JsonOptions) -> (ConnectSchema, Encoding) {
    let scale = options.money_fraction_digits;
    match options.decimal_handling {
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
fn array_mapping(
    column: &Column,
    element: &PgType,
    options: &JsonOptions,
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
    let (schema, encoding) = column_mapping(column, element, options)?;
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
fn unknown_mapping(pg_type: &PgType) -> Option<(ConnectSchema, Encoding)> {
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

impl Encoding {
    /// Whether the Connect type is STRING (so Debezium's generic placeholder fits).
    fn is_string(&self) -> bool {
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

    /// The value Debezium writes for NULL in a NOT NULL column (`convertValue`'s fallback).
    fn fallback(&self) -> Json {
        match self {
            Encoding::Boolean | Encoding::BitAsBoolean => json!(false),
            Encoding::Int16
            | Encoding::Int32
            | Encoding::Int64
            | Encoding::Date
            | Encoding::Time { .. }
            | Encoding::Timestamp { .. }
            | Encoding::MicroDuration => json!(0),
            Encoding::Float32 | Encoding::Float64 | Encoding::DecimalAsDouble => json!(0.0),
            Encoding::Text => json!(""),
            Encoding::Decimal { .. } => json!(STANDARD.encode([0u8])),
            Encoding::VariableScaleDecimal => json!({"scale": 0, "value": STANDARD.encode([0u8])}),
            Encoding::DecimalAsString { scale } => {
                let zero = BigDecimal::from(0).with_scale(i64::from(scale.unwrap_or(0)));
                json!(zero.to_plain_string())
            }
            Encoding::Binary(_) | Encoding::Bits => json!(""),
            Encoding::ZonedTimestamp { .. } => json!("1970-01-01T00:00:00Z"),
            Encoding::ZonedTime => json!("00:00:00Z"),
            Encoding::HstoreJson => json!("{}"),
            Encoding::Array(_) => json!([]),
        }
    }

    fn encode(&self, value: &Value) -> Result<Json, Failure> {
        Ok(match (self, value) {
            (Encoding::Boolean, Value::Bool(b)) => json!(b),
            (Encoding::BitAsBoolean, Value::Bits(bits)) => json!(bits.contains('1')),
            (Encoding::BitAsBoolean, Value::Bool(b)) => json!(b),
            (Encoding::Int16, Value::Int16(n)) => json!(n),
            (Encoding::Int32, Value::Int32(n)) => json!(n),
            (Encoding::Int64, Value::Int64(n)) => json!(n),
            (Encoding::Int64, Value::Int32(n)) => json!(n),
            (Encoding::Float32, Value::Float32(f)) => float32(*f),
            (Encoding::Float64, Value::Float64(f)) => float64(*f),
            (Encoding::Text, Value::Text(s)) => json!(s),
            (Encoding::Decimal { scale }, Value::Numeric(numeric)) => {
                let Numeric::Finite(decimal) = numeric else {
                    return Err(Failure::SpecialNumeric);
                };
                let scaled = decimal.with_scale_round(i64::from(*scale), RoundingMode::HalfUp);
                json!(unscaled_base64(&scaled))
            }
            (Encoding::VariableScaleDecimal, Value::Numeric(numeric)) => {
                let Numeric::Finite(decimal) = numeric else {
                    return Err(Failure::SpecialNumeric);
                };
                let mut normalized = decimal.normalized();
                if normalized.fractional_digit_count() < 0 {
                    normalized = normalized.with_scale(0);
                }
                json!({
                    "scale": normalized.fractional_digit_count(),
                    "value": unscaled_base64(&normalized),
                })
            }
            (Encoding::DecimalAsDouble, Value::Numeric(numeric)) => match numeric {
                Numeric::Finite(decimal) => {
                    float64(decimal.to_string().parse::<f64>().unwrap_or(f64::NAN))
                }
                Numeric::NaN => float64(f64::NAN),
                Numeric::PositiveInfinity => float64(f64::INFINITY),
                Numeric::NegativeInfinity => float64(f64::NEG_INFINITY),
            },
            (Encoding::DecimalAsString { scale }, Value::Numeric(numeric)) => match numeric {
                Numeric::Finite(decimal) => match scale {
                    Some(scale) => json!(
                        decimal
                            .with_scale_round(i64::from(*scale), RoundingMode::HalfUp)
                            .to_plain_string()
                    ),
                    None => json!(decimal.to_plain_string()),
                },
                Numeric::NaN => json!("NAN"),
                Numeric::PositiveInfinity => json!("POSITIVE_INFINITY"),
                Numeric::NegativeInfinity => json!("NEGATIVE_INFINITY"),
            },
            (Encoding::Binary(mode), Value::Bytes(bytes)) => encode_binary(*mode, bytes),
            (Encoding::Bits, Value::Bits(bits)) => json!(STANDARD.encode(bits_le_bytes(bits))),
            (Encoding::Date, Value::Date(date)) => json!(match date {
                Date::Days(days) => *days,
                Date::PositiveInfinity => DATE_POSITIVE_INFINITY_DAYS,
                Date::NegativeInfinity => DATE_NEGATIVE_INFINITY_DAYS,
            }),
            (Encoding::Time { millis: true }, Value::Time(micros)) => json!(micros / 1000),
            (Encoding::Time { millis: false }, Value::Time(micros)) => json!(micros),
            (Encoding::Timestamp { millis }, Value::Timestamp(timestamp)) => {
                let micros = match timestamp {
                    Timestamp::Micros(micros) => *micros,
                    Timestamp::PositiveInfinity => TIMESTAMP_POSITIVE_INFINITY_MICROS,
                    Timestamp::NegativeInfinity => TIMESTAMP_NEGATIVE_INFINITY_MICROS,
                };
                if *millis {
                    json!(micros.div_euclid(1000))
                } else {
                    json!(micros)
                }
            }
            (Encoding::ZonedTimestamp { fraction_width }, Value::TimestampTz(timestamp)) => {
                match timestamp {
                    Timestamp::Micros(micros) => json!(zoned_timestamp(*micros, *fraction_width)),
                    Timestamp::PositiveInfinity => json!("infinity"),
                    Timestamp::NegativeInfinity => json!("-infinity"),
                }
            }
            (
                Encoding::ZonedTime,
                Value::TimeTz {
                    micros,
                    offset_seconds,
                },
            ) => json!(zoned_time(*micros, *offset_seconds)),
            (
                Encoding::MicroDuration,
                Value::Interval {
                    months,
                    days,
                    micros,
                },
            ) => json!(duration_micros(*months, *days, *micros)),
            (Encoding::HstoreJson, Value::Hstore(pairs)) => {
                let object: Map<String, Json> = pairs
                    .iter()
                    .map(|(key, value)| (key.clone(), json!(value)))
                    .collect();
                json!(Json::Object(object).to_string())
            }
            (Encoding::Array(element), Value::Array(items)) => Json::Array(
                items
                    .iter()
                    .map(|item| match item {
                        Some(value) => element.encode(value),
                        None => Ok(Json::Null),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (encoding, _) => return Err(Failure::Mismatch(encoding.expected())),
        })
    }

    /// What a value of this encoding must be, for error messages.
    fn expected(&self) -> &'static str {
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

/// Base64 of the unscaled value's minimal two's-complement big-endian bytes
/// (`BigInteger.toByteArray`).
fn unscaled_base64(decimal: &BigDecimal) -> String {
    let (unscaled, _) = decimal.as_bigint_and_exponent();
    STANDARD.encode(unscaled.to_signed_bytes_be())
}

/// A FLOAT32 as Jackson writes it: the shortest decimal that round-trips the f32 (not the
/// widened f64), and non-finite values as quoted strings (`QUOTE_NON_NUMERIC_NUMBERS`).
fn float32(value: f32) -> Json {
    if !value.is_finite() {
        return non_finite(f64::from(value));
    }
    float64(value.to_string().parse::<f64>().unwrap_or(0.0))
}

fn float64(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or_else(|| non_finite(value), Json::Number)
}

fn non_finite(value: f64) -> Json {
    json!(if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    })
}

/// `io.debezium.data.Bits`: bit i (counted from the right of PostgreSQL's text) is bit i%8 of
/// byte i/8, with as many bytes as the highest set bit needs (Java's `BitSet.toByteArray`).
fn bits_le_bytes(bits: &str) -> Vec<u8> {
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
fn duration_micros(months: i32, days: i32, micros: i64) -> i64 {
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
fn zoned_timestamp(micros: i64, fraction_width: u32) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let time_of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let year = if year > 9999 {
        format!("+{year}")
    } else if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{}Z",
        local_time(time_of_day, fraction_width)
    )
}

/// `ZonedTime`: the time shifted to UTC, ISO-8601 with as few fractional digits as needed;
/// PostgreSQL's end-of-day `24:00:00+00` stays `24:00:00Z`.
fn zoned_time(micros: i64, offset_seconds: i32) -> String {
    if micros == MICROS_PER_DAY && offset_seconds == 0 {
        return "24:00:00Z".to_owned();
    }
    let utc = (micros - i64::from(offset_seconds) * 1_000_000).rem_euclid(MICROS_PER_DAY);
    format!("{}Z", local_time(utc, 0))
}

/// `HH:mm:ss` and the fraction as Java's `ISO_LOCAL_TIME` (width 0) or a fixed-width
/// `appendFraction` prints it.
fn local_time(micros_of_day: i64, fraction_width: u32) -> String {
    let seconds = micros_of_day / 1_000_000;
    let nanos = (micros_of_day % 1_000_000) * 1000;
    let mut text = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    );
    let digits = format!("{nanos:09}");
    if (1..=9).contains(&fraction_width) {
        text.push('.');
        text.push_str(&digits[..fraction_width as usize]);
    } else if nanos != 0 {
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests {
    //! Expected documents are written by hand from Debezium's and Kafka's sources
    //! (PostgresValueConverter, SchemaFactory, PostgresSourceInfoStructMaker, JsonConverter).

    use std::str::FromStr;

    use serde_json::json;

    use super::*;
    use crate::event::{Lsn, ReplicaIdentity, SnapshotMarker, TableId};

    const PREFIX: &str = "dbserver1";
    /// 2024-02-29T12:45:00.123456Z
    const COMMIT_MICROS: i64 = 1_709_210_700_123_456;
    const PROCESSED_MICROS: i64 = 1_709_210_701_000_001;

    fn base(oid: u32, name: &str, base: BaseType) -> PgType {
        PgType {
            oid,
            name: name.into(),
            kind: TypeKind::Base(base),
        }
    }

    fn array(oid: u32, name: &str, element: PgType) -> PgType {
        PgType {
            oid,
            name: name.into(),
            kind: TypeKind::Array(Box::new(element)),
        }
    }

    fn column(name: &str, pg_type: PgType, type_modifier: i32) -> Column {
        Column {
            name: name.into(),
            pg_type,
            type_modifier,
            part_of_key: false,
            optional: true,
        }
    }

    fn mood() -> PgType {
        PgType {
            oid: 16_400,
            name: "mood".into(),
            kind: TypeKind::Enum(vec!["sad".into(), "ok".into(), "happy".into()]),
        }
    }

    /// numeric(p,s)'s atttypmod.
    fn numeric_typmod(precision: i32, scale: i32) -> i32 {
        ((precision << 16) | scale) + 4
    }

    fn all_types_table(replica_identity: ReplicaIdentity) -> Arc<TableSchema> {
        let int4 = || base(23, "int4", BaseType::Int4);
        let text = || base(25, "text", BaseType::Text);
        let mut id = column("id", int4(), -1);
        id.part_of_key = true;
        id.optional = false;
        let mut name = column("name", text(), -1);
        name.optional = false;
        Arc::new(TableSchema {
            relation_id: 16_385,
            id: TableId::new("public", "all_types"),
            replica_identity,
            columns: vec![
                id,
                name,
                column(
                    "price",
                    base(1700, "numeric", BaseType::Numeric),
                    numeric_typmod(10, 2),
                ),
                column("amount", base(1700, "numeric", BaseType::Numeric), -1),
                column(
                    "created_at",
                    base(1184, "timestamptz", BaseType::TimestampTz),
                    -1,
                ),
                column("ts3", base(1114, "timestamp", BaseType::Timestamp), 3),
                column("ts6", base(1114, "timestamp", BaseType::Timestamp), 6),
                column("birthday", base(1082, "date", BaseType::Date), -1),
                column("alarm", base(1083, "time", BaseType::Time), -1),
                column("alarm_tz", base(1266, "timetz", BaseType::TimeTz), -1),
                column("span", base(1186, "interval", BaseType::Interval), -1),
                column("blob", base(17, "bytea", BaseType::Bytea), -1),
                column("uid", base(2950, "uuid", BaseType::Uuid), -1),
                column("doc", base(3802, "jsonb", BaseType::Jsonb), -1),
                column("mood", mood(), -1),
                column("flag", base(16, "bool", BaseType::Bool), -1),
                column("bits", base(1560, "bit", BaseType::Bit), 3),
                column("ints", array(1007, "_int4", int4()), -1),
                column("tags", array(1009, "_text", text()), -1),
                column("attrs", base(16_500, "hstore", BaseType::Hstore), -1),
                column("cash", base(790, "money", BaseType::Money), -1),
            ],
        })
    }

    fn numeric(text: &str) -> Datum {
        Datum::Value(Value::Numeric(Numeric::Finite(
            BigDecimal::from_str(text).expect("valid decimal"),
        )))
    }

    fn text(value: &str) -> Datum {
        Datum::Value(Value::Text(value.into()))
    }

    fn full_row() -> Row {
        Row(vec![
            Datum::Value(Value::Int32(1)),
            text("Anne"),
            numeric("12.30"),
            numeric("3.14159"),
            Datum::Value(Value::TimestampTz(Timestamp::Micros(COMMIT_MICROS))),
            Datum::Value(Value::Timestamp(Timestamp::Micros(1_709_210_700_123_000))),
            Datum::Value(Value::Timestamp(Timestamp::Micros(COMMIT_MICROS))),
            Datum::Value(Value::Date(Date::Days(19_782))),
            // 08:30:15.5
            Datum::Value(Value::Time(30_615_500_000)),
            // 08:30:00+02
            Datum::Value(Value::TimeTz {
                micros: 30_600_000_000,
                offset_seconds: 7200,
            }),
            // 1 year 2 mons 3 days 04:05:06.78
            Datum::Value(Value::Interval {
                months: 14,
                days: 3,
                micros: 14_706_780_000,
            }),
            Datum::Value(Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
            text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            text(r#"{"a": 1}"#),
            text("happy"),
            Datum::Value(Value::Bool(true)),
            Datum::Value(Value::Bits("101".into())),
            Datum::Value(Value::Array(vec![
                Some(Value::Int32(1)),
                None,
                Some(Value::Int32(3)),
            ])),
            Datum::Value(Value::Array(vec![
                Some(Value::Text("a".into())),
                Some(Value::Text("b".into())),
            ])),
            Datum::Value(Value::Hstore(vec![
                ("k".into(), Some("v".into())),
                ("n".into(), None),
            ])),
            numeric("12.34"),
        ])
    }

    /// The payload of `full_row()` under the default modes.
    fn full_row_payload() -> Json {
        json!({
            "id": 1,
            "name": "Anne",
            "price": "BM4=",
            "amount": {"scale": 5, "value": "BMsv"},
            "created_at": "2024-02-29T12:45:00.123456Z",
            "ts3": 1_709_210_700_123_i64,
            "ts6": 1_709_210_700_123_456_i64,
            "birthday": 19_782,
            "alarm": 30_615_500_000_i64,
            "alarm_tz": "06:30:00Z",
            "span": 37_091_106_780_000_i64,
            "blob": "3q2+7w==",
            "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "doc": "{\"a\": 1}",
            "mood": "happy",
            "flag": true,
            "bits": "BQ==",
            "ints": [1, null, 3],
            "tags": ["a", "b"],
            "attrs": "{\"k\":\"v\",\"n\":null}",
            "cash": "BNI=",
        })
    }

    fn source_info() -> SourceInfo {
        SourceInfo {
            lsn: Lsn(0x16_B374_D848),
            sequence: (Some(Lsn(97_500_058_000)), Some(Lsn(0x16_B374_D848))),
            tx_id: Some(571),
            ts_micros: COMMIT_MICROS,
            snapshot: SnapshotMarker::No,
        }
    }

    fn source_payload(schema: &str, table: &str) -> Json {
        json!({
            "version": "3.7.0.Final",
            "connector": "postgresql",
            "name": "dbserver1",
            "ts_ms": 1_709_210_700_123_i64,
            "snapshot": "false",
            "db": "inventory",
            "sequence": "[\"97500058000\",\"97500059720\"]",
            "ts_us": 1_709_210_700_123_456_i64,
            "ts_ns": 1_709_210_700_123_456_000_i64,
            "schema": schema,
            "table": table,
            "txId": 571,
            "lsn": 97_500_059_720_i64,
            "xmin": null,
            "origin": null,
            "origin_lsn": null,
        })
    }

    fn source_schema_json() -> Json {
        json!({
            "type": "struct",
            "fields": [
                {"type": "string", "optional": false, "field": "version"},
                {"type": "string", "optional": false, "field": "connector"},
                {"type": "string", "optional": false, "field": "name"},
                {"type": "int64", "optional": false, "field": "ts_ms"},
                {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
                 "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
                 "default": "false", "field": "snapshot"},
                {"type": "string", "optional": false, "field": "db"},
                {"type": "string", "optional": true, "field": "sequence"},
                {"type": "int64", "optional": true, "field": "ts_us"},
                {"type": "int64", "optional": true, "field": "ts_ns"},
                {"type": "string", "optional": false, "field": "schema"},
                {"type": "string", "optional": false, "field": "table"},
                {"type": "int64", "optional": true, "field": "txId"},
                {"type": "int64", "optional": true, "field": "lsn"},
                {"type": "int64", "optional": true, "field": "xmin"},
                {"type": "string", "optional": true, "field": "origin"},
                {"type": "int64", "optional": true, "field": "origin_lsn"}
            ],
            "optional": false,
            "name": "io.debezium.connector.postgresql.Source",
            "version": 1,
            "field": "source"
        })
    }

    fn transaction_schema_json() -> Json {
        json!({
            "type": "struct",
            "fields": [
                {"type": "string", "optional": false, "field": "id"},
                {"type": "int64", "optional": false, "field": "total_order"},
                {"type": "int64", "optional": false, "field": "data_collection_order"}
            ],
            "optional": true,
            "name": "event.block",
            "version": 1,
            "field": "transaction"
        })
    }

    /// The value fields of `all_types_table()` under the default modes.
    fn all_types_fields() -> Json {
        json!([
            {"type": "int32", "optional": false, "field": "id"},
            {"type": "string", "optional": false, "field": "name"},
            {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
             "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "price"},
            {"type": "struct", "fields": [
                {"type": "int32", "optional": false, "field": "scale"},
                {"type": "bytes", "optional": false, "field": "value"}
             ], "optional": true, "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
             "doc": "Variable scaled decimal", "field": "amount"},
            {"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "created_at"},
            {"type": "int64", "optional": true, "name": "io.debezium.time.Timestamp", "version": 1, "field": "ts3"},
            {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "ts6"},
            {"type": "int32", "optional": true, "name": "io.debezium.time.Date", "version": 1, "field": "birthday"},
            {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTime", "version": 1, "field": "alarm"},
            {"type": "string", "optional": true, "name": "io.debezium.time.ZonedTime", "version": 1, "field": "alarm_tz"},
            {"type": "int64", "optional": true, "name": "io.debezium.time.MicroDuration", "version": 1, "field": "span"},
            {"type": "bytes", "optional": true, "field": "blob"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Uuid", "version": 1, "field": "uid"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "doc"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "sad,ok,happy"}, "field": "mood"},
            {"type": "boolean", "optional": true, "field": "flag"},
            {"type": "bytes", "optional": true, "name": "io.debezium.data.Bits", "version": 1,
             "parameters": {"length": "3"}, "field": "bits"},
            {"type": "array", "items": {"type": "int32", "optional": true}, "optional": true, "field": "ints"},
            {"type": "array", "items": {"type": "string", "optional": true}, "optional": true, "field": "tags"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "attrs"},
            {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
             "parameters": {"scale": "2"}, "field": "cash"}
        ])
    }

    fn row_schema_json(field: &str) -> Json {
        json!({
            "type": "struct",
            "fields": all_types_fields(),
            "optional": true,
            "name": "dbserver1.public.all_types.Value",
            "field": field
        })
    }

    fn encoder(options: JsonOptions) -> JsonEncoder {
        JsonEncoder::new(options, ConnectorContext::new(PREFIX, "inventory"))
    }

    fn without_schemas() -> JsonOptions {
        JsonOptions {
            schemas_enable: false,
            ..JsonOptions::default()
        }
    }

    fn parse(bytes: &[u8]) -> Json {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    fn change(
        table: &Arc<TableSchema>,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
    ) -> RowChange {
        RowChange {
            table: Arc::clone(table),
            op,
            before,
            after,
            source: source_info(),
        }
    }

    #[test]
    fn insert_writes_key_and_envelope_with_schemas_byte_for_byte() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions::default());
        let insert = change(&table, Op::Create, None, Some(full_row()));

        let key = encoder.key(&insert).expect("key").expect("table has a key");
        let expected_key = json!({
            "schema": {
                "type": "struct",
                "fields": [{"type": "int32", "optional": false, "field": "id"}],
                "optional": false,
                "name": "dbserver1.public.all_types.Key"
            },
            "payload": {"id": 1}
        });
        assert_eq!(
            String::from_utf8(key).expect("utf-8"),
            expected_key.to_string()
        );

        let value = encoder
            .value(&insert, PROCESSED_MICROS, None)
            .expect("value");
        let expected_value = json!({
            "schema": {
                "type": "struct",
                "fields": [
                    row_schema_json("before"),
                    row_schema_json("after"),
                    source_schema_json(),
                    transaction_schema_json(),
                    {"type": "string", "optional": false, "field": "op"},
                    {"type": "int64", "optional": true, "field": "ts_ms"},
                    {"type": "int64", "optional": true, "field": "ts_us"},
                    {"type": "int64", "optional": true, "field": "ts_ns"}
                ],
                "optional": false,
                "name": "dbserver1.public.all_types.Envelope",
                "version": 2
            },
            "payload": {
                "before": null,
                "after": full_row_payload(),
                "source": source_payload("public", "all_types"),
                "transaction": null,
                "op": "c",
                "ts_ms": 1_709_210_701_000_i64,
                "ts_us": 1_709_210_701_000_001_i64,
                "ts_ns": 1_709_210_701_000_001_000_i64
            }
        });
        // String equality: field order is part of the contract.
        assert_eq!(
            String::from_utf8(value).expect("utf-8"),
            expected_value.to_string()
        );
    }

    #[test]
    fn update_with_full_old_row_and_transaction_block() {
        let table = all_types_table(ReplicaIdentity::Full);
        let mut encoder = encoder(without_schemas());
        let mut after = full_row();
        after.0[1] = text("Anne Marie");
        let update = change(&table, Op::Update, Some(full_row()), Some(after));
        let transaction = TransactionBlock {
            id: "571:97500059720".into(),
            total_order: 2,
            data_collection_order: 1,
        };

        let value = parse(
            &encoder
                .value(&update, PROCESSED_MICROS, Some(&transaction))
                .expect("value"),
        );
        let mut expected_after = full_row_payload();
        expected_after["name"] = json!("Anne Marie");
        assert_eq!(value["before"], full_row_payload());
        assert_eq!(value["after"], expected_after);
        assert_eq!(value["op"], json!("u"));
        assert_eq!(
            value["transaction"],
            json!({"id": "571:97500059720", "total_order": 2, "data_collection_order": 1})
        );
        let key = parse(&encoder.key(&update).expect("key").expect("some"));
        assert_eq!(key, json!({"id": 1}));
    }

    #[test]
    fn update_without_old_row_has_null_before() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(without_schemas());
        let update = change(&table, Op::Update, None, Some(full_row()));
        let value = parse(
            &encoder
                .value(&update, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["before"], Json::Null);
        assert_eq!(value["after"], full_row_payload());
        assert_eq!(value["op"], json!("u"));
    }

    #[test]
    fn delete_under_default_identity_keeps_key_and_fills_not_null_columns() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(without_schemas());
        let mut before = Row(vec![Datum::Null; table.columns.len()]);
        before.0[0] = Datum::Value(Value::Int32(7));
        let delete = change(&table, Op::Delete, Some(before), None);

        let value = parse(
            &encoder
                .value(&delete, PROCESSED_MICROS, None)
                .expect("value"),
        );
        // "name" is NOT NULL: Debezium writes the type's fallback, "".
        let expected_before = json!({
            "id": 7, "name": "", "price": null, "amount": null, "created_at": null, "ts3": null,
            "ts6": null, "birthday": null, "alarm": null, "alarm_tz": null, "span": null,
            "blob": null, "uid": null, "doc": null, "mood": null, "flag": null, "bits": null,
            "ints": null, "tags": null, "attrs": null, "cash": null
        });
        assert_eq!(value["before"], expected_before);
        assert_eq!(value["after"], Json::Null);
        assert_eq!(value["op"], json!("d"));
        let key = parse(&encoder.key(&delete).expect("key").expect("some"));
        assert_eq!(key, json!({"id": 7}));
    }

    #[test]
    fn table_without_key_has_null_key_and_optional_fields() {
        let table = Arc::new(TableSchema {
            relation_id: 1,
            id: TableId::new("public", "log"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![column("line", base(25, "text", BaseType::Text), -1)],
        });
        let mut encoder = encoder(JsonOptions::default());
        let insert = change(&table, Op::Create, None, Some(Row(vec![text("x")])));
        assert_eq!(encoder.key(&insert).expect("key"), None);
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(
            value["schema"]["fields"][1],
            json!({
                "type": "struct",
                "fields": [{"type": "string", "optional": true, "field": "line"}],
                "optional": true,
                "name": "dbserver1.public.log.Value",
                "field": "after"
            })
        );
        assert_eq!(value["payload"]["after"], json!({"line": "x"}));
    }

    #[test]
    fn truncate_has_no_row_images() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(without_schemas());
        let value = parse(&encoder.truncate_value(&table, &source_info(), PROCESSED_MICROS, None));
        assert_eq!(
            value,
            json!({
                "before": null,
                "after": null,
                "source": source_payload("public", "all_types"),
                "transaction": null,
                "op": "t",
                "ts_ms": 1_709_210_701_000_i64,
                "ts_us": 1_709_210_701_000_001_i64,
                "ts_ns": 1_709_210_701_000_001_000_i64
            })
        );
    }

    #[test]
    fn message_key_and_value_with_schemas() {
        let encoder = encoder(JsonOptions::default());
        assert_eq!(encoder.message_topic(), "dbserver1.message");
        let key = parse(&encoder.message_key("audit"));
        assert_eq!(
            key,
            json!({
                "schema": {
                    "type": "struct",
                    "fields": [{"type": "string", "optional": true, "field": "prefix"}],
                    "optional": false,
                    "name": "io.debezium.connector.postgresql.MessageKey",
                    "version": 1
                },
                "payload": {"prefix": "audit"}
            })
        );

        let mut source = source_info();
        source.tx_id = None;
        let value = encoder.message_value("audit", b"hello", &source, PROCESSED_MICROS, None);
        let mut expected_source = source_payload("", "");
        expected_source["txId"] = Json::Null;
        let mut source_schema = source_schema_json();
        source_schema["field"] = json!("source");
        let expected = json!({
            "schema": {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": false, "field": "op"},
                    {"type": "int64", "optional": true, "field": "ts_ms"},
                    source_schema,
                    transaction_schema_json(),
                    {"type": "struct", "fields": [
                        {"type": "string", "optional": true, "field": "prefix"},
                        {"type": "bytes", "optional": true, "field": "content"}
                     ], "optional": false, "name": "io.debezium.connector.postgresql.Message",
                     "version": 1, "field": "message"}
                ],
                "optional": false,
                "name": "io.debezium.connector.postgresql.MessageValue",
                "version": 1
            },
            "payload": {
                "op": "m",
                "ts_ms": 1_709_210_701_000_i64,
                "source": expected_source,
                "transaction": null,
                "message": {"prefix": "audit", "content": "aGVsbG8="}
            }
        });
        assert_eq!(
            String::from_utf8(value).expect("utf-8"),
            expected.to_string()
        );
    }

    #[test]
    fn message_content_follows_binary_mode() {
        let encoder = encoder(JsonOptions {
            binary_handling: BinaryHandling::Hex,
            ..JsonOptions::default()
        });
        let value = parse(&encoder.message_value("p", b"hi", &source_info(), 0, None));
        assert_eq!(value["payload"]["message"]["content"], json!("6869"));
        assert_eq!(
            value["schema"]["fields"][4]["fields"][1],
            json!({"type": "string", "optional": true, "field": "content"})
        );
    }

    #[test]
    fn decimal_double_mode() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions {
            decimal_handling: DecimalHandling::Double,
            ..JsonOptions::default()
        });
        let mut row = full_row();
        row.0[3] = Datum::Value(Value::Numeric(Numeric::NaN));
        let insert = change(&table, Op::Create, None, Some(row));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        let after = &value["payload"]["after"];
        assert_eq!(after["price"], json!(12.3));
        // Jackson quotes non-finite doubles.
        assert_eq!(after["amount"], json!("NaN"));
        assert_eq!(after["cash"], json!(12.34));
        let fields = &value["schema"]["fields"][1]["fields"];
        assert_eq!(
            fields[2],
            json!({"type": "double", "optional": true, "field": "price"})
        );
        assert_eq!(
            fields[3],
            json!({"type": "double", "optional": true, "field": "amount"})
        );
        assert_eq!(
            fields[20],
            json!({"type": "double", "optional": true, "field": "cash"})
        );
    }

    #[test]
    fn decimal_string_mode() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions {
            decimal_handling: DecimalHandling::String,
            ..JsonOptions::default()
        });
        let mut row = full_row();
        row.0[2] = numeric("5.5");
        row.0[3] = Datum::Value(Value::Numeric(Numeric::PositiveInfinity));
        let insert = change(&table, Op::Create, None, Some(row.clone()));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        let after = &value["payload"]["after"];
        assert_eq!(after["price"], json!("5.50"));
        assert_eq!(after["amount"], json!("POSITIVE_INFINITY"));
        assert_eq!(after["cash"], json!("12.34"));
        assert_eq!(
            value["schema"]["fields"][1]["fields"][3],
            json!({"type": "string", "optional": true, "field": "amount"})
        );

        row.0[3] = numeric("-0.000100");
        let insert = change(&table, Op::Create, None, Some(row));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["payload"]["after"]["amount"], json!("-0.000100"));
    }

    #[test]
    fn special_numeric_in_precise_mode_is_an_error() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions::default());
        let mut row = full_row();
        row.0[2] = Datum::Value(Value::Numeric(Numeric::NaN));
        let insert = change(&table, Op::Create, None, Some(row));
        let error = encoder
            .value(&insert, PROCESSED_MICROS, None)
            .expect_err("NaN cannot be a Decimal");
        assert_eq!(
            error,
            Error::SpecialNumericInPreciseMode {
                table: TableId::new("public", "all_types"),
                column: "price".into()
            }
        );
        assert!(error.to_string().contains("decimal.handling.mode"));
    }

    #[test]
    fn precise_decimals_are_twos_complement_at_column_scale() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(without_schemas());
        let mut row = full_row();
        row.0[2] = numeric("-12.3"); // rescaled to -12.30: unscaled -1230 = 0xFB32
        row.0[3] = numeric("1200.500"); // stripped to 1200.5: scale 1, unscaled 12005 = 0x2EE5
        let insert = change(&table, Op::Create, None, Some(row));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["after"]["price"], json!("+zI="));
        assert_eq!(
            value["after"]["amount"],
            json!({"scale": 1, "value": "LuU="})
        );

        let mut row = full_row();
        row.0[2] = numeric("0");
        row.0[3] = numeric("1.2E+3"); // 1200: negative scale becomes scale 0, unscaled 1200 = 0x04B0
        let insert = change(&table, Op::Create, None, Some(row));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["after"]["price"], json!("AA=="));
        assert_eq!(
            value["after"]["amount"],
            json!({"scale": 0, "value": "BLA="})
        );
    }

    #[test]
    fn connect_time_precision_mode() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions {
            time_precision: TimePrecision::Connect,
            ..JsonOptions::default()
        });
        let insert = change(&table, Op::Create, None, Some(full_row()));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        let after = &value["payload"]["after"];
        assert_eq!(after["ts3"], json!(1_709_210_700_123_i64));
        assert_eq!(after["ts6"], json!(1_709_210_700_123_i64));
        assert_eq!(after["birthday"], json!(19_782));
        assert_eq!(after["alarm"], json!(30_615_500));
        // Zoned types do not depend on the mode.
        assert_eq!(after["created_at"], json!("2024-02-29T12:45:00.123456Z"));
        let fields = &value["schema"]["fields"][1]["fields"];
        assert_eq!(
            fields[6],
            json!({"type": "int64", "optional": true, "name": "org.apache.kafka.connect.data.Timestamp", "version": 1, "field": "ts6"})
        );
        assert_eq!(
            fields[7],
            json!({"type": "int32", "optional": true, "name": "org.apache.kafka.connect.data.Date", "version": 1, "field": "birthday"})
        );
        assert_eq!(
            fields[8],
            json!({"type": "int32", "optional": true, "name": "org.apache.kafka.connect.data.Time", "version": 1, "field": "alarm"})
        );
    }

    #[test]
    fn adaptive_time_precision_follows_column_precision() {
        let mut time3 = column("t3", base(1083, "time", BaseType::Time), 3);
        time3.optional = false;
        let table = Arc::new(TableSchema {
            relation_id: 2,
            id: TableId::new("public", "times"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![time3],
        });
        let row = Row(vec![Datum::Value(Value::Time(30_615_500_000))]);
        let insert = change(&table, Op::Create, None, Some(row));

        let mut adaptive = encoder(JsonOptions::default());
        let value = parse(
            &adaptive
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["payload"]["after"]["t3"], json!(30_615_500));
        assert_eq!(
            value["schema"]["fields"][1]["fields"][0],
            json!({"type": "int32", "optional": false, "name": "io.debezium.time.Time", "version": 1, "field": "t3"})
        );

        let mut micro_time = encoder(JsonOptions {
            time_precision: TimePrecision::AdaptiveTimeMicroseconds,
            ..JsonOptions::default()
        });
        let value = parse(
            &micro_time
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["payload"]["after"]["t3"], json!(30_615_500_000_i64));
        assert_eq!(
            value["schema"]["fields"][1]["fields"][0]["name"],
            json!("io.debezium.time.MicroTime")
        );
    }

    #[test]
    fn binary_modes() {
        let table = all_types_table(ReplicaIdentity::Default);
        for (mode, expected) in [
            (BinaryHandling::Base64, "3q2+7w=="),
            (BinaryHandling::Base64UrlSafe, "3q2-7w=="),
            (BinaryHandling::Hex, "deadbeef"),
        ] {
            let mut encoder = encoder(JsonOptions {
                binary_handling: mode,
                ..JsonOptions::default()
            });
            let insert = change(&table, Op::Create, None, Some(full_row()));
            let value = parse(
                &encoder
                    .value(&insert, PROCESSED_MICROS, None)
                    .expect("value"),
            );
            assert_eq!(
                value["payload"]["after"]["blob"],
                json!(expected),
                "{mode:?}"
            );
            assert_eq!(
                value["schema"]["fields"][1]["fields"][11],
                json!({"type": "string", "optional": true, "field": "blob"}),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn unchanged_toast_values_become_the_placeholder() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut row = full_row();
        for index in [1, 11, 13, 17, 18, 19] {
            row.0[index] = Datum::Unchanged;
        }
        let update = change(&table, Op::Update, None, Some(row.clone()));

        let mut bytes_mode = encoder(without_schemas());
        let value = parse(
            &bytes_mode
                .value(&update, PROCESSED_MICROS, None)
                .expect("value"),
        );
        let after = &value["after"];
        assert_eq!(after["name"], json!("__debezium_unavailable_value"));
        // The placeholder's UTF-8 bytes, printed as base64.
        assert_eq!(
            after["blob"],
            json!("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==")
        );
        assert_eq!(after["doc"], json!("__debezium_unavailable_value"));
        assert_eq!(
            after["ints"],
            json!([
                95, 95, 100, 101, 98, 101, 122, 105, 117, 109, 95, 117, 110, 97, 118, 97, 105, 108,
                97, 98, 108, 101, 95, 118, 97, 108, 117, 101
            ])
        );
        assert_eq!(after["tags"], json!(["__debezium_unavailable_value"]));
        assert_eq!(
            after["attrs"],
            json!("{\"__debezium_unavailable_value\":\"__debezium_unavailable_value\"}")
        );

        let mut hex_mode = encoder(JsonOptions {
            schemas_enable: false,
            binary_handling: BinaryHandling::Hex,
            ..JsonOptions::default()
        });
        let value = parse(
            &hex_mode
                .value(&update, PROCESSED_MICROS, None)
                .expect("value"),
        );
        // Debezium's hex converter returns the placeholder text as is.
        assert_eq!(
            value["after"]["blob"],
            json!("__debezium_unavailable_value")
        );

        let mut custom = encoder(JsonOptions {
            schemas_enable: false,
            unavailable_value_placeholder: "hex:3f3f".into(),
            ..JsonOptions::default()
        });
        let value = parse(
            &custom
                .value(&update, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["after"]["name"], json!("??"));
        assert_eq!(value["after"]["blob"], json!("Pz8="));
    }

    #[test]
    fn unchanged_toast_without_placeholder_form_is_an_error() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut row = full_row();
        row.0[3] = Datum::Unchanged;
        let update = change(&table, Op::Update, None, Some(row));
        let error = encoder(JsonOptions::default())
            .value(&update, PROCESSED_MICROS, None)
            .expect_err("a VariableScaleDecimal cannot hold the placeholder");
        assert!(matches!(
            error,
            Error::UnavailableValueNotRepresentable { ref column, .. } if column == "amount"
        ));
        assert!(error.to_string().contains("REPLICA IDENTITY FULL"));
    }

    #[test]
    fn infinities() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(without_schemas());
        let mut row = full_row();
        row.0[4] = Datum::Value(Value::TimestampTz(Timestamp::NegativeInfinity));
        row.0[5] = Datum::Value(Value::Timestamp(Timestamp::PositiveInfinity));
        row.0[6] = Datum::Value(Value::Timestamp(Timestamp::NegativeInfinity));
        row.0[7] = Datum::Value(Value::Date(Date::PositiveInfinity));
        let insert = change(&table, Op::Create, None, Some(row));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        let after = &value["after"];
        assert_eq!(after["created_at"], json!("-infinity"));
        assert_eq!(after["ts3"], json!(9_223_372_036_825_200_i64));
        assert_eq!(after["ts6"], json!(-9_223_372_036_832_400_000_i64));
        assert_eq!(after["birthday"], json!(-2_147_472_693));
    }

    #[test]
    fn plan_is_rebuilt_when_the_table_changes() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions::default());
        let insert = change(&table, Op::Create, None, Some(full_row()));
        encoder
            .value(&insert, PROCESSED_MICROS, None)
            .expect("value");

        let mut altered = (*table).clone();
        altered.columns.truncate(2);
        altered.columns[1].name = "label".into();
        let altered = Arc::new(altered);
        let row = Row(vec![Datum::Value(Value::Int32(1)), text("x")]);
        let insert = change(&altered, Op::Create, None, Some(row));
        let value = parse(
            &encoder
                .value(&insert, PROCESSED_MICROS, None)
                .expect("value"),
        );
        assert_eq!(value["payload"]["after"], json!({"id": 1, "label": "x"}));
        assert_eq!(
            value["schema"]["fields"][1]["fields"][1],
            json!({"type": "string", "optional": false, "field": "label"})
        );
    }

    #[test]
    fn row_of_wrong_shape_or_type_is_an_error() {
        let table = all_types_table(ReplicaIdentity::Default);
        let mut encoder = encoder(JsonOptions::default());
        let short = change(&table, Op::Create, None, Some(Row(vec![Datum::Null])));
        assert!(matches!(
            encoder.value(&short, 0, None),
            Err(Error::RowShape {
                expected: 21,
                found: 1,
                ..
            })
        ));
        let mut row = full_row();
        row.0[0] = text("1");
        let wrong = change(&table, Op::Create, None, Some(row));
        assert!(matches!(
            encoder.key(&wrong),
            Err(Error::UnexpectedValue {
                expected: "int4",
                ..
            })
        ));
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
    fn float32_keeps_its_shortest_form() {
        assert_eq!(float32(0.1).to_string(), "0.1");
        assert_eq!(float32(f32::NEG_INFINITY), json!("-Infinity"));
    }

    #[test]
    fn name_based_uuid_matches_java() {
        // UUID.nameUUIDFromBytes(new byte[0])
        assert_eq!(name_based_uuid(b""), "d41d8cd9-8f00-3204-a980-0998ecf8427e");
    }
}
