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
use std::{
    cell::{Cell, RefCell},
    collections::hash_map::Entry,
    sync::Arc,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value as Json, json};

use super::connect::{
    ColumnPlan, ConnectSchema, Encoding, Failure, Placeholder, TableSchemas, ToastMarker,
    ValueModes, binary_as_text, bits_le_bytes, check_row_shape, column_plans, date_days,
    decimal_bytes_at_scale, duration_micros, hstore_json, is_stale, message_key_schema,
    message_value_schema, numeric_as_f64, numeric_as_string, push_zoned_timestamp, source_schema,
    timestamp_micros, transaction_schema, variable_scale_parts, with_decimal_bytes_at_scale,
    zero_decimal_string, zoned_time, zoned_timestamp_text,
};
pub use super::connect::{DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER, TransactionBlock};
use super::{
    BinaryHandling, CONNECTOR_NAME, ConnectorContext, DecimalHandling, Error, TimePrecision,
};
use crate::event::{
    Datum, Lsn, Numeric, Op, Row, RowChange, SourceInfo, TableSchema, Timestamp, Value,
};

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

impl JsonOptions {
    pub(crate) fn modes(&self) -> ValueModes {
        ValueModes {
            decimal_handling: self.decimal_handling,
            time_precision: self.time_precision,
            binary_handling: self.binary_handling,
            money_fraction_digits: self.money_fraction_digits,
        }
    }
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

/// Encodes change events as Debezium + `JsonConverter` would write them.
#[derive(Debug)]
pub struct JsonEncoder {
    options: JsonOptions,
    context: ConnectorContext,
    placeholder: Placeholder,
    source_schema: ConnectSchema,
    transaction_schema: ConnectSchema,
    /// Plans by relation id; a plan is reused while its table schema is unchanged. foldhash:
    /// looked up twice per record (key and value), SipHash was a hundredth of a snapshot's CPU.
    plans: foldhash::HashMap<u32, TablePlan>,
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
            plans: foldhash::HashMap::default(),
        }
    }

    /// The record key of a row change: the key columns of the new row (the old row for a
    /// delete), or None (a null key) when the table has no key columns.
    pub fn key(&mut self, change: &RowChange) -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::with_capacity(64);
        Ok(self.key_into(change, &mut out)?.then_some(out))
    }

    /// As [`Self::key`], appended to `out`: true when there is a key (nothing is appended for
    /// a null key; after an error `out` may end with part of one).
    pub fn key_into(&mut self, change: &RowChange, out: &mut Vec<u8>) -> Result<bool, Error> {
        let schemas_enable = self.options.schemas_enable;
        let (plan, ctx) = self.plan_and_context(&change.table);
        let Some(key_schema) = &plan.key_schema_json else {
            return Ok(false);
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
        start_document(out, schemas_enable, key_schema);
        ctx.write_row(out, &change.table, plan, row, true)?;
        close_document(out, schemas_enable);
        Ok(true)
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
        self.value_with_room(change, processed_at_micros, transaction, 0)
    }

    /// As [`Self::value`], in a buffer with `room` bytes to spare after the value (for the
    /// caller to append to without regrowing it).
    pub fn value_with_room(
        &mut self,
        change: &RowChange,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
        room: usize,
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
        let mut out = open_document(
            schemas_enable,
            &plan.envelope_schema_json,
            plan.value_capacity.get() + room,
        );
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
        // Without a transaction block the tail is a function of this key alone.
        let key = transaction.is_none().then(|| TailKey {
            source: change.source.clone(),
            op: change.op,
            processed_at_micros,
        });
        let mut cache = plan.tail.borrow_mut();
        if let Some(tail) = cache.get(key.as_ref()) {
            out.extend_from_slice(tail);
        } else {
            let tail_start = out.len();
            out.extend_from_slice(b",\"source\":");
            ctx.write_source(
                &mut out,
                &change.source,
                &change.table.id.schema,
                &change.table.id.table,
            );
            write_envelope_tail(&mut out, transaction, change.op.code(), processed_at_micros);
            cache.remember(key, &out[tail_start..]);
        }
        close_document(&mut out, schemas_enable);
        // The next record of the table starts with room for one like this, without regrowing.
        plan.value_capacity
            .set(out.len() - plan.envelope_schema_json.len() * usize::from(schemas_enable) + 64);
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
        let schema = message_key_schema();
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
        let schema = message_value_schema(binary, &self.source_schema, &self.transaction_schema);
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
        // One lookup per record: every key and value of a snapshot passes here.
        let new_plan = || {
            TablePlan::new(
                table,
                &self.options,
                &self.context.topic_prefix,
                &self.source_schema,
                &self.transaction_schema,
            )
        };
        let plan = match self.plans.entry(table.relation_id) {
            Entry::Occupied(entry) if !is_stale(&entry.get().table, table) => entry.into_mut(),
            Entry::Occupied(mut entry) => {
                entry.insert(new_plan());
                entry.into_mut()
            }
            Entry::Vacant(entry) => entry.insert(new_plan()),
        };
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
    let schema_len = if schemas_enable {
        schema_json.len() + 24
    } else {
        0
    };
    let mut out = Vec::with_capacity(schema_len + payload_capacity);
    start_document(&mut out, schemas_enable, schema_json);
    out
}

/// As [`open_document`], appended to `out`.
fn start_document(out: &mut Vec<u8>, schemas_enable: bool, schema_json: &str) {
    if schemas_enable {
        out.extend_from_slice(b"{\"schema\":");
        out.extend_from_slice(schema_json.as_bytes());
        out.extend_from_slice(b",\"payload\":");
    }
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

/// Appends `text` as a JSON string, byte for byte as [`push_json`] writes it: a string with
/// nothing to escape (nearly every one) is copied whole instead of byte by byte.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    if has_json_escapes(text.as_bytes()) {
        push_json(out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Whether `bytes` holds a byte JSON escapes: a control character, `"` or `\`. Blocks are
/// checked without an early exit inside, which compiles to vector instructions.
fn has_json_escapes(bytes: &[u8]) -> bool {
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | escaped(b)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| escaped(b))
}

/// `source.sequence`: the JSON text of `["<last commit LSN>","<LSN>"]` (a part `null` when
/// unknown) as a JSON string, written straight: it is in every event.
fn push_sequence(out: &mut Vec<u8>, last_commit: Option<Lsn>, lsn: Option<Lsn>) {
    out.extend_from_slice(b"\"[");
    for (i, part) in [last_commit, lsn].into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match part {
            Some(lsn) => {
                out.extend_from_slice(b"\\\"");
                out.extend_from_slice(itoa::Buffer::new().format(lsn.0).as_bytes());
                out.extend_from_slice(b"\\\"");
            }
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"]\"");
}

fn push_i64(out: &mut Vec<u8>, number: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
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
            self.write_datum(out, table, column, &row.0[column.index])?;
        }
        out.push(b'}');
        Ok(())
    }

    /// Appends `source` as [`Self::source`] builds it.
    fn write_source(&self, out: &mut Vec<u8>, source: &SourceInfo, schema: &str, table: &str) {
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
        push_sequence(out, source.sequence.0, source.sequence.1);
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

    /// Appends the JSON of one column's datum.
    fn write_datum(
        &self,
        out: &mut Vec<u8>,
        table: &TableSchema,
        column: &ColumnPlan,
        datum: &Datum,
    ) -> Result<(), Error> {
        let result = match datum {
            // A NOT NULL column without a value (the non-key columns of a DEFAULT delete's old
            // row) gets its type's fallback, as JdbcValueConverters.convertValue does.
            Datum::Null if column.optional => {
                out.extend_from_slice(b"null");
                Ok(())
            }
            Datum::Null => {
                push_json(out, &column.encoding.fallback());
                Ok(())
            }
            Datum::Unchanged => self.unavailable(column).map(|json| push_json(out, &json)),
            Datum::Value(value) => column.encoding.write(value, out),
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

fn encode_binary(mode: BinaryHandling, bytes: &[u8]) -> Json {
    // JsonConverter prints BYTES as standard base64.
    Json::String(binary_as_text(mode, bytes))
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
    /// Payload bytes to reserve for the next value: the last one's size and some.
    value_capacity: Cell<usize>,
    tail: RefCell<TailCache>,
}

/// What a value's bytes after `after` depend on: `source`, `op` and the processing time (and
/// the transaction block, when there is one: such values are not cached).
#[derive(Debug, Clone, PartialEq)]
struct TailKey {
    source: SourceInfo,
    op: Op,
    processed_at_micros: i64,
}

/// The end of a table's last value, from `,"source":` on. The rows a snapshot batch reads share
/// it (same source block, same processing time), so it is written once and copied; streaming
/// events each have their own LSN, so they only pay the comparison.
#[derive(Debug, Default)]
struct TailCache {
    /// The key of the last tail written (None: not reusable).
    key: Option<TailKey>,
    /// Its bytes once the same key came twice in a row, else empty (a tail never is).
    bytes: Vec<u8>,
}

impl TailCache {
    /// The tail of `key` when it is the one kept.
    fn get(&self, key: Option<&TailKey>) -> Option<&[u8]> {
        (key.is_some() && key == self.key.as_ref() && !self.bytes.is_empty())
            .then_some(self.bytes.as_slice())
    }

    /// After writing the tail `bytes` for `key`: kept when `key` repeats the last one.
    fn remember(&mut self, key: Option<TailKey>, bytes: &[u8]) {
        self.bytes.clear();
        if key.is_some() && key == self.key {
            self.bytes.extend_from_slice(bytes);
        }
        self.key = key;
    }
}

impl TablePlan {
    fn new(
        table: &Arc<TableSchema>,
        options: &JsonOptions,
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
        let serialize =
            |schema: &ConnectSchema| serde_json::to_string(&schema.to_json()).unwrap_or_default();
        Self {
            table: Arc::clone(table),
            columns,
            key_schema_json: schemas.key.as_ref().map(serialize),
            envelope_schema_json: serialize(&schemas.envelope),
            value_capacity: Cell::new(512),
            tail: RefCell::new(TailCache::default()),
        }
    }
}

impl Encoding {
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
            Encoding::DecimalAsString { scale } => json!(zero_decimal_string(*scale)),
            Encoding::Binary(_) | Encoding::Bits => json!(""),
            Encoding::ZonedTimestamp { .. } => json!("1970-01-01T00:00:00Z"),
            Encoding::ZonedTime => json!("00:00:00Z"),
            Encoding::HstoreJson => json!("{}"),
            Encoding::Array(_) => json!([]),
        }
    }

    /// Appends the JSON of `value`, the same bytes as [`Self::encode`] builds, straight into
    /// `out` for the common types: a snapshot writes every column of every row here.
    fn write(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), Failure> {
        match (self, value) {
            (Encoding::Boolean, Value::Bool(b)) => {
                out.extend_from_slice(if *b { b"true" } else { b"false" });
            }
            (Encoding::Int16, Value::Int16(n)) => push_i64(out, i64::from(*n)),
            (Encoding::Int32, Value::Int32(n)) | (Encoding::Int64, Value::Int32(n)) => {
                push_i64(out, i64::from(*n));
            }
            (Encoding::Int64, Value::Int64(n)) => push_i64(out, *n),
            (Encoding::Text, Value::Text(text)) => push_json_str(out, text),
            (Encoding::Date, Value::Date(date)) => push_i64(out, i64::from(date_days(date))),
            (Encoding::Time { millis }, Value::Time(micros)) => {
                push_i64(out, if *millis { micros / 1000 } else { *micros });
            }
            (Encoding::Timestamp { millis }, Value::Timestamp(timestamp)) => {
                let micros = timestamp_micros(timestamp);
                push_i64(
                    out,
                    if *millis {
                        micros.div_euclid(1000)
                    } else {
                        micros
                    },
                );
            }
            (
                Encoding::ZonedTimestamp { fraction_width },
                Value::TimestampTz(Timestamp::Micros(micros)),
            ) => {
                out.push(b'"');
                push_zoned_timestamp(out, *micros, *fraction_width);
                out.push(b'"');
            }
            (Encoding::Decimal { scale }, Value::Numeric(Numeric::Finite(decimal))) => {
                out.push(b'"');
                with_decimal_bytes_at_scale(decimal, *scale, |bytes| {
                    let start = out.len();
                    out.resize(start + 4 * bytes.len().div_ceil(3), 0);
                    let written = STANDARD
                        .encode_slice(bytes, &mut out[start..])
                        .expect("sized for padded base64");
                    out.truncate(start + written);
                });
                out.push(b'"');
            }
            (encoding, value) => push_json(out, &encoding.encode(value)?),
        }
        Ok(())
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
                json!(STANDARD.encode(decimal_bytes_at_scale(decimal, *scale)))
            }
            (Encoding::VariableScaleDecimal, Value::Numeric(numeric)) => {
                let Numeric::Finite(decimal) = numeric else {
                    return Err(Failure::SpecialNumeric);
                };
                let (scale, unscaled) = variable_scale_parts(decimal);
                json!({"scale": scale, "value": STANDARD.encode(unscaled)})
            }
            (Encoding::DecimalAsDouble, Value::Numeric(numeric)) => {
                float64(numeric_as_f64(numeric))
            }
            (Encoding::DecimalAsString { scale }, Value::Numeric(numeric)) => {
                json!(numeric_as_string(numeric, *scale))
            }
            (Encoding::Binary(mode), Value::Bytes(bytes)) => encode_binary(*mode, bytes),
            (Encoding::Bits, Value::Bits(bits)) => json!(STANDARD.encode(bits_le_bytes(bits))),
            (Encoding::Date, Value::Date(date)) => json!(date_days(date)),
            (Encoding::Time { millis: true }, Value::Time(micros)) => json!(micros / 1000),
            (Encoding::Time { millis: false }, Value::Time(micros)) => json!(micros),
            (Encoding::Timestamp { millis }, Value::Timestamp(timestamp)) => {
                let micros = timestamp_micros(timestamp);
                if *millis {
                    json!(micros.div_euclid(1000))
                } else {
                    json!(micros)
                }
            }
            (Encoding::ZonedTimestamp { fraction_width }, Value::TimestampTz(timestamp)) => {
                json!(zoned_timestamp_text(timestamp, *fraction_width))
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
            (Encoding::HstoreJson, Value::Hstore(pairs)) => json!(hstore_json(pairs)),
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

#[cfg(test)]
mod tests {
    //! Expected documents are written by hand from Debezium's and Kafka's sources
    //! (PostgresValueConverter, SchemaFactory, PostgresSourceInfoStructMaker, JsonConverter).

    use serde_json::json;

    use super::*;

    use crate::event::{BaseType, Date, ReplicaIdentity, TableId, Timestamp};
    use crate::format::fixtures::*;

    #[test]
    fn values_written_straight_equal_the_json_built() {
        let long = "x".repeat(40);
        let texts = [
            String::new(),
            "plain".to_owned(),
            "quote \" backslash \\ tab \t newline \n bell \u{7} del \u{7f}".to_owned(),
            format!("{long}\"{long}"),
            format!("{long}\u{1f}"),
            "ünïcödé ✓ 🦀".to_owned(),
        ];
        let mut cases: Vec<(Encoding, Value)> = texts
            .into_iter()
            .map(|text| (Encoding::Text, Value::Text(text)))
            .collect();
        cases.extend([
            (Encoding::Boolean, Value::Bool(true)),
            (Encoding::Boolean, Value::Bool(false)),
            (Encoding::Int16, Value::Int16(i16::MIN)),
            (Encoding::Int32, Value::Int32(-7)),
            (Encoding::Int64, Value::Int32(i32::MAX)),
            (Encoding::Int64, Value::Int64(i64::MIN)),
            (Encoding::Date, Value::Date(Date::Days(-719_000))),
            (Encoding::Date, Value::Date(Date::PositiveInfinity)),
            (Encoding::Time { millis: true }, Value::Time(45_296_789_123)),
            (
                Encoding::Time { millis: false },
                Value::Time(45_296_789_123),
            ),
            (
                Encoding::Timestamp { millis: true },
                Value::Timestamp(Timestamp::Micros(-1)),
            ),
            (
                Encoding::Timestamp { millis: false },
                Value::Timestamp(Timestamp::NegativeInfinity),
            ),
            (
                Encoding::ZonedTimestamp { fraction_width: 6 },
                Value::TimestampTz(Timestamp::Micros(1_709_210_700_500_000)),
            ),
            (
                Encoding::ZonedTimestamp { fraction_width: 0 },
                Value::TimestampTz(Timestamp::PositiveInfinity),
            ),
            (Encoding::Float64, Value::Float64(1.5)),
        ]);
        for (text, scale) in [
            ("0", 2),
            ("-0.01", 2),
            ("12.345", 2),
            ("-128", 0),
            ("99999999999999999999999999.99", 2),
        ] {
            let decimal: bigdecimal::BigDecimal = text.parse().expect("decimal");
            cases.push((
                Encoding::Decimal { scale },
                Value::Numeric(Numeric::Finite(decimal)),
            ));
        }
        for (encoding, value) in cases {
            let built = encoding.encode(&value).expect("encodes");
            let mut written = Vec::new();
            encoding.write(&value, &mut written).expect("writes");
            assert_eq!(
                String::from_utf8(written).expect("utf-8"),
                built.to_string(),
                "{encoding:?} {value:?}"
            );
        }
        assert!(matches!(
            Encoding::Int32.write(&Value::Text("1".into()), &mut Vec::new()),
            Err(Failure::Mismatch(_))
        ));
    }

    #[test]
    fn a_repeated_source_tail_is_copied_byte_for_byte() {
        let table = all_types_table(ReplicaIdentity::Default);
        let fresh = |change: &RowChange, at: i64, tx: Option<&TransactionBlock>| {
            encoder(JsonOptions::default())
                .value(change, at, tx)
                .expect("value")
        };
        let mut encoder = encoder(JsonOptions::default());
        let mut read = change(&table, Op::Read, None, Some(full_row()));
        let block = TransactionBlock {
            id: "7:42".into(),
            total_order: 3,
            data_collection_order: 1,
        };
        // The third of a kind is the first copied; then a transaction block, another time and
        // another marker must each be written anew.
        for _ in 0..4 {
            let value = encoder.value(&read, PROCESSED_MICROS, None).expect("value");
            assert_eq!(value, fresh(&read, PROCESSED_MICROS, None));
        }
        // Kept: the value's end from `,"source":` on, before the document's closing brace.
        let kept = encoder.plans[&table.relation_id]
            .tail
            .borrow()
            .bytes
            .clone();
        let value = fresh(&read, PROCESSED_MICROS, None);
        let tail_start = memchr::memmem::find(&value, b",\"source\":").expect("a source block");
        assert_eq!(kept, value[tail_start..value.len() - 1]);
        let with_block = encoder
            .value(&read, PROCESSED_MICROS, Some(&block))
            .expect("value");
        assert_eq!(with_block, fresh(&read, PROCESSED_MICROS, Some(&block)));
        let later = encoder
            .value(&read, PROCESSED_MICROS + 1, None)
            .expect("value");
        assert_eq!(later, fresh(&read, PROCESSED_MICROS + 1, None));
        read.source.snapshot = crate::event::SnapshotMarker::Last;
        for _ in 0..3 {
            let value = encoder
                .value(&read, PROCESSED_MICROS + 1, None)
                .expect("value");
            assert_eq!(value, fresh(&read, PROCESSED_MICROS + 1, None));
        }
    }

    #[test]
    fn sequence_written_straight_equals_its_json_string() {
        for (a, b) in [
            (Some(Lsn(97_500_058_000)), Some(Lsn(97_500_059_720))),
            (None, Some(Lsn(7))),
            (None, None),
        ] {
            let text =
                serde_json::to_string(&[a.map(|l| l.0.to_string()), b.map(|l| l.0.to_string())])
                    .expect("strings");
            let mut out = Vec::new();
            push_sequence(&mut out, a, b);
            assert_eq!(out, serde_json::to_vec(&text).expect("a string"));
        }
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
    fn float32_keeps_its_shortest_form() {
        assert_eq!(float32(0.1).to_string(), "0.1");
        assert_eq!(float32(f32::NEG_INFINITY), json!("-Infinity"));
    }
}
