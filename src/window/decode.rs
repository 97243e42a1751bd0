//! Debezium change records (Connect JSON documents, as the sink reads them) into the engine's
//! changes: the kind, the row key, and for each image its event time, group key and aggregate
//! inputs, typed by the record's Connect schema.

use std::{collections::HashMap, str::FromStr, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use bigdecimal::{BigDecimal, num_bigint::BigInt};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};
use serde_json::{Map, Value as Json, value::RawValue};

use super::{
    aggregate::Value,
    config::{EventTimeField, WindowAggregateConfig},
    engine::{ChangeInput, ChangeKind, Contribution, ImageProblem},
    time::{Micros, event_time},
};
use crate::sink::postgres::{
    record::{Document, RawEnvelope},
    types::{FieldSchema, Unchanged, cell},
};

/// A record as the engine and the watermark see it.
#[derive(Debug)]
pub enum Decoded {
    /// Tombstones, logical messages: nothing to aggregate.
    Ignored,
    Change {
        change: ChangeInput,
        /// The time to advance the partition's watermark with.
        time: Option<Micros>,
        /// Inside a snapshot (`op=r`, not the snapshot's last record).
        in_snapshot: bool,
    },
}

/// Why a record cannot be decoded (never its values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "a truncate (op t) cannot be applied to windowed results; rebuild the result table and \
         the stage's state, or do not truncate captured tables"
    )]
    Truncate,
    #[error("{0}")]
    Shape(String),
}

/// Reads the fields the config names out of change records.
#[derive(Debug)]
pub struct Decoder {
    event_time: EventTimeField,
    group_by: Vec<String>,
    inputs: Vec<String>,
    unchanged: Unchanged,
    /// PostgreSQL types of the group and input columns, from the first schema naming them.
    types: HashMap<String, String>,
    /// The columns an image is read for: group, inputs and the event time.
    columns: Vec<String>,
    schemas: RecentSchemas,
    /// The text of the last key schema: keys are split by comparing it, never parsed.
    key_schema: Box<str>,
}

impl Decoder {
    pub fn new(config: &WindowAggregateConfig) -> Self {
        let inputs: Vec<String> = config
            .input_columns()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut columns: Vec<String> = config.group_by.iter().chain(&inputs).cloned().collect();
        if let EventTimeField::Column(column) = &config.event_time {
            columns.push(column.clone());
        }
        Self {
            event_time: config.event_time.clone(),
            group_by: config.group_by.clone(),
            inputs,
            unchanged: Unchanged::default(),
            types: HashMap::new(),
            columns,
            schemas: RecentSchemas::default(),
            key_schema: Box::default(),
        }
    }

    /// The PostgreSQL types of group and input columns seen in record schemas so far.
    pub fn column_types(&self) -> &HashMap<String, String> {
        &self.types
    }

    fn note_types(&mut self, schema: Option<&FieldSchema>) {
        let Some(schema) = schema else {
            return;
        };
        if self.types.len() >= self.group_by.len() + self.inputs.len() {
            return;
        }
        for name in self.group_by.iter().chain(&self.inputs) {
            if !self.types.contains_key(name)
                && let Some(field) = schema.field(name)
            {
                self.types.insert(name.clone(), field.postgres_type());
            }
        }
    }

    /// Decodes one record; the error says what is wrong (never a value).
    pub fn decode(
        &mut self,
        key: Option<Document>,
        value: Option<Document>,
    ) -> Result<Decoded, DecodeError> {
        let Some(Document { schema, payload }) = value else {
            return Ok(Decoded::Ignored);
        };
        let Json::Object(mut payload) = payload else {
            return if payload.is_null() {
                Ok(Decoded::Ignored)
            } else {
                Err(DecodeError::Shape(
                    "the value is not a JSON object".to_owned(),
                ))
            };
        };
        let row_key = key.and_then(|k| row_key_text(&k.payload));
        let op = payload.get("op").and_then(Json::as_str).map(str::to_owned);
        let Some(op) = op else {
            // A flattened record (ExtractNewRecordState): the value is the row.
            let image = Image {
                row: Some(Row::Object(payload)),
                schema,
            };
            return Ok(self.change(
                ChangeKind::Insert,
                false,
                SourceInfo::default(),
                row_key,
                Image::default(),
                image,
            ));
        };
        let kind = change_kind(&op)?;
        let Some(kind) = kind else {
            return Ok(Decoded::Ignored);
        };
        let source = SourceInfo::of(&payload.remove("source").unwrap_or(Json::Null));
        let field = |name: &str| schema.as_ref().and_then(|s| s.field(name)).cloned();
        let object = |json: Option<Json>| match json {
            Some(Json::Object(row)) => Some(Row::Object(row)),
            _ => None,
        };
        let before = Image {
            row: object(payload.remove("before")),
            schema: field("before"),
        };
        let after = Image {
            row: object(payload.remove("after")),
            schema: field("after"),
        };
        Ok(self.change(kind, op == "r", source, row_key, before, after))
    }

    /// Decodes a record whose key and value are Connect JSON (`*_schemas`: written with
    /// `schemas.enable=true`) without building the whole document: only the envelope fields,
    /// the source position and the columns the config names are read, and a schema is parsed
    /// once per distinct text. `None` when the record has a shape only `decode` handles
    /// (flattened rows, escaped names, anything unexpected); `decode` then gives the same
    /// outcome as it would have.
    pub fn decode_json(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        key_schemas: bool,
        value_schemas: bool,
    ) -> Option<Result<Decoded, DecodeError>> {
        let known = if value_schemas {
            self.schemas.split_known(value)
        } else {
            None
        };
        let (schema, payload) = if let Some(known) = known {
            known
        } else if value_schemas {
            let envelope: RawEnvelope<'_> = serde_json::from_slice(value).ok()?;
            (
                self.schemas.get(envelope.schema.get()),
                envelope.payload.get(),
            )
        } else {
            (None, serde_json::from_slice::<&RawValue>(value).ok()?.get())
        };
        if payload == "null" {
            return Some(Ok(Decoded::Ignored));
        }
        let columns = WantedColumns(&self.columns);
        let mut reader = serde_json::Deserializer::from_str(payload);
        let payload = PayloadSeed(columns).deserialize(&mut reader).ok()?;
        reader.end().ok()?;
        let op = payload.op?;
        let row_key = match key {
            None => None,
            Some(key) => self.row_key(key, key_schemas)?,
        };
        let kind = match change_kind(op) {
            Ok(Some(kind)) => kind,
            Ok(None) => return Some(Ok(Decoded::Ignored)),
            Err(error) => return Some(Err(error)),
        };
        let source = match &payload.source {
            Some(fields) => SourceInfo::of_fields(fields)?,
            None => SourceInfo::default(),
        };
        let field = |name: &str| schema.as_ref().and_then(|s| s.field(name)).cloned();
        let before = Image {
            row: payload.before,
            schema: field("before"),
        };
        let after = Image {
            row: payload.after,
            schema: field("after"),
        };
        Some(Ok(self.change(
            kind,
            op == "r",
            source,
            row_key,
            before,
            after,
        )))
    }

    /// The change of one record, from its parts.
    fn change(
        &mut self,
        kind: ChangeKind,
        snapshot_record: bool,
        source: SourceInfo,
        row_key: Option<Arc<str>>,
        before: Image,
        after: Image,
    ) -> Decoded {
        let in_snapshot = snapshot_record && !source.last_of_snapshot;
        self.note_types(after.schema.as_deref());
        let after_image = after
            .row
            .as_ref()
            .map(|row| self.image(row, after.schema.as_deref(), source.time));
        // A `before` image is usable only with the event time in it (a key-only image of
        // REPLICA IDENTITY DEFAULT has none), and never for source.ts_ms, whose value belongs
        // to this event, not to the image's own.
        let before_image = match (&before.row, &self.event_time) {
            (Some(row), EventTimeField::Column(column))
                if self.field(row, column).is_some_and(|v| !v.is_null()) =>
            {
                Some(self.image(row, before.schema.as_deref(), source.time))
            }
            _ => None,
        };
        let time = after_image
            .as_ref()
            .or(before_image.as_ref())
            .and_then(|image| image.as_ref().ok())
            .map(|c| c.time);
        Decoded::Change {
            change: ChangeInput {
                kind,
                row_key,
                before: before_image,
                after: after_image,
                position: source.position,
            },
            time,
            in_snapshot,
        }
    }

    fn image(
        &self,
        row: &Row,
        schema: Option<&FieldSchema>,
        source_time: Option<Micros>,
    ) -> Result<Contribution, ImageProblem> {
        let field_schema = |name: &str| schema.and_then(|s| s.field(name)).map(|s| &**s);
        let time = match &self.event_time {
            EventTimeField::SourceTimestamp => source_time.ok_or(ImageProblem::InvalidEventTime)?,
            EventTimeField::Column(column) => {
                event_time(self.field(row, column), field_schema(column))
                    .map_err(|_| ImageProblem::InvalidEventTime)?
            }
        };
        let value = |name: &String| self.value(name, self.field(row, name), field_schema(name));
        let group: Vec<Value> = self.group_by.iter().map(value).collect();
        if group.contains(&Value::Null) {
            return Err(ImageProblem::NullGroupKey);
        }
        Ok(Contribution {
            time,
            group: group.into(),
            inputs: self.inputs.iter().map(value).collect(),
        })
    }

    /// A field of a row (`None`: absent).
    fn field<'r>(&self, row: &'r Row, name: &str) -> Option<&'r Json> {
        match row {
            Row::Object(object) => object.get(name),
            Row::Wanted(values) => {
                let index = self.columns.iter().position(|c| c == name)?;
                values.get(index)?.as_ref()
            }
        }
    }

    /// A field as a typed value: integers, exact decimals and booleans by their schema; other
    /// semantic types (timestamps, UUIDs, …) as PostgreSQL text.
    fn value(&self, name: &str, json: Option<&Json>, schema: Option<&FieldSchema>) -> Value {
        let Some(json) = json.filter(|j| !j.is_null()) else {
            return Value::Null;
        };
        let semantic = schema.and_then(|s| s.name.as_deref());
        let kind = schema.map(|s| s.kind.as_str());
        if semantic == Some("org.apache.kafka.connect.data.Decimal")
            && kind == Some("bytes")
            && let Some(decimal) = schema.and_then(|s| connect_decimal(json, s))
        {
            return Value::Num(decimal);
        }
        let text = || match cell(name, json, schema, &self.unchanged) {
            // Dates and timestamps as the text of their (typed) cell.
            Ok(cell) => cell.into_text(),
            // A value that cannot be read counts as NULL, as an unchanged TOASTed one does.
            Err(_) => None,
        };
        let number = |text: &str| match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => BigDecimal::from_str(text).map_or(Value::Null, Value::Num),
        };
        match (semantic, kind) {
            (None, Some("int8" | "int16" | "int32" | "int64")) => {
                json.as_i64().map_or(Value::Null, Value::Int)
            }
            (None, Some("float32" | "float64" | "float" | "double")) => {
                BigDecimal::from_str(&json.to_string()).map_or(Value::Null, Value::Num)
            }
            (None, Some("boolean")) => json.as_bool().map_or(Value::Null, Value::Bool),
            (
                Some(
                    "org.apache.kafka.connect.data.Decimal"
                    | "io.debezium.data.VariableScaleDecimal",
                ),
                _,
            ) => text()
                .and_then(|t| BigDecimal::from_str(&t).ok())
                .map_or(Value::Null, Value::Num),
            (None, None) => match json {
                Json::Number(n) => number(&n.to_string()),
                Json::Bool(b) => Value::Bool(*b),
                Json::String(s) => Value::Text(s.as_str().into()),
                other => Value::Text(other.to_string().into()),
            },
            _ => text().map_or(Value::Null, |t| Value::Text(t.into())),
        }
    }
}

/// A row's fields as read: the whole object (the general path), or only the columns the
/// stage reads, in [`Decoder`]'s `columns` order (the JSON path: no map, no names kept).
#[derive(Debug)]
enum Row {
    Object(Map<String, Json>),
    Wanted(Vec<Option<Json>>),
}

/// A row image as read: the row's fields (or none) and its Connect schema.
#[derive(Debug, Default)]
struct Image {
    row: Option<Row>,
    schema: Option<Arc<FieldSchema>>,
}

/// What the stage reads of `source`.
#[derive(Debug, Default)]
struct SourceInfo {
    /// `source.ts_us`, else `source.ts_ms`, in microseconds.
    time: Option<Micros>,
    /// `source.snapshot` is `last`.
    last_of_snapshot: bool,
    position: Option<(u64, u64)>,
}

/// The `source` fields the stage reads, unparsed.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    ts_us: Option<&'a RawValue>,
    #[serde(borrow)]
    ts_ms: Option<&'a RawValue>,
    #[serde(borrow)]
    snapshot: Option<&'a RawValue>,
    #[serde(borrow)]
    sequence: Option<&'a RawValue>,
}

impl SourceInfo {
    fn of(source: &Json) -> Self {
        Self::from_fields(
            source.get("ts_us"),
            source.get("ts_ms"),
            source.get("snapshot"),
            source.get("sequence"),
        )
    }

    /// From the `source` fields as read; `None` when one is not what Debezium writes.
    fn of_fields(fields: &Fields<'_>) -> Option<Self> {
        if let Some(info) = Self::of_plain_fields(fields) {
            return Some(info);
        }
        let json = |raw: Option<&RawValue>| -> Option<Option<Json>> {
            raw.map(|raw| serde_json::from_str(raw.get()).ok())
                .map_or(Some(None), |parsed| parsed.map(Some))
        };
        Some(Self::from_fields(
            json(fields.ts_us)?.as_ref(),
            json(fields.ts_ms)?.as_ref(),
            json(fields.snapshot)?.as_ref(),
            json(fields.sequence)?.as_ref(),
        ))
    }

    /// The fields as the JsonConverter writes them (integers, plain strings, the sequence as
    /// `"[\"<lsn>\",\"<lsn>\"]"`), read without building JSON values; `None` for anything
    /// else, which `from_fields` reads.
    fn of_plain_fields(fields: &Fields<'_>) -> Option<Self> {
        let integer = |raw: Option<&RawValue>| -> Option<Option<i64>> {
            match raw.map(RawValue::get) {
                None | Some("null") => Some(None),
                Some(text) => text.parse().ok().map(Some),
            }
        };
        let time = match integer(fields.ts_us)? {
            Some(us) => Some(us),
            None => integer(fields.ts_ms)?.map(|ms| ms * 1000),
        };
        let last_of_snapshot = match fields.snapshot.map(RawValue::get) {
            Some(text) if text.contains('\\') => return None,
            Some(text) => text == r#""last""#,
            None => false,
        };
        let position = match fields.sequence.map(RawValue::get) {
            None | Some("null") => None,
            Some(text) => {
                let inner = text.strip_prefix(r#""["#)?.strip_suffix(r#"]""#)?;
                let (first, second) = inner.split_once(',')?;
                let lsn = |part: &str| -> Option<Option<u64>> {
                    if part == "null" {
                        return Some(None);
                    }
                    let digits = part.strip_prefix(r#"\""#)?.strip_suffix(r#"\""#)?;
                    digits.parse().ok().map(Some)
                };
                lsn(first)?.zip(lsn(second)?)
            }
        };
        Some(Self {
            time,
            last_of_snapshot,
            position,
        })
    }

    fn from_fields(
        ts_us: Option<&Json>,
        ts_ms: Option<&Json>,
        snapshot: Option<&Json>,
        sequence: Option<&Json>,
    ) -> Self {
        Self {
            time: ts_us
                .and_then(Json::as_i64)
                .or_else(|| ts_ms.and_then(Json::as_i64).map(|ms| ms * 1000)),
            last_of_snapshot: snapshot.and_then(Json::as_str) == Some("last"),
            position: sequence.and_then(Json::as_str).and_then(parse_sequence),
        }
    }
}

/// The kind of a Debezium `op`; `None` for records with nothing to aggregate.
fn change_kind(op: &str) -> Result<Option<ChangeKind>, DecodeError> {
    Ok(Some(match op {
        "c" | "r" => ChangeKind::Insert,
        "u" => ChangeKind::Update,
        "d" => ChangeKind::Delete,
        "m" => return Ok(None),
        "t" => return Err(DecodeError::Truncate),
        other => {
            return Err(DecodeError::Shape(format!(
                "op {other:?} is not a Debezium operation"
            )));
        }
    }))
}

/// The row key: the record key's payload as compact JSON text (`None` for a null key).
fn row_key_text(payload: &Json) -> Option<Arc<str>> {
    (!payload.is_null()).then(|| payload.to_string().into())
}

impl Decoder {
    /// A Connect JSON key's row key: the payload's compact JSON text (`None` for a null
    /// payload); `None` outside when the key is not the JSON `decode_json` expects.
    fn row_key(&mut self, key: &[u8], schemas: bool) -> Option<Option<Arc<str>>> {
        let known = schemas
            .then(|| {
                key.strip_prefix(br#"{"schema":"#)?
                    .strip_prefix(self.key_schema.as_bytes())?
                    .strip_prefix(br#","payload":"#)?
                    .strip_suffix(b"}")
            })
            .flatten()
            .filter(|_| !self.key_schema.is_empty());
        let payload: &RawValue = match known {
            Some(payload) => serde_json::from_slice(payload).ok()?,
            None if schemas => {
                let envelope: RawEnvelope<'_> = serde_json::from_slice(key).ok()?;
                self.key_schema = envelope.schema.get().into();
                envelope.payload
            }
            None => serde_json::from_slice(key).ok()?,
        };
        let text = payload.get();
        // The text as it is when serde_json would print it the same (no spaces, escapes or
        // fractions, which it could write differently): the same row must always have the
        // same key, whichever path read it.
        if text
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\\' | b'.'))
        {
            return Some(row_key_text(&serde_json::from_str(text).ok()?));
        }
        Some((text != "null").then(|| text.into()))
    }
}

/// Reads the named fields of a JSON object, skipping the others unparsed.
#[derive(Clone, Copy)]
struct WantedColumns<'c>(&'c [String]);

impl<'de> DeserializeSeed<'de> for WantedColumns<'_> {
    type Value = Row;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WantedColumns<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a row object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = vec![None; self.0.len()];
        // Borrowed names only: an escaped name makes the record take the general path.
        while let Some(name) = map.next_key::<&'de str>()? {
            match self.0.iter().position(|wanted| wanted == name) {
                // A repeated name: the last value counts, as in a parsed object.
                Some(index) => values[index] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Row::Wanted(values))
    }
}

/// The fields of a change payload the stage reads, parsed in one pass: the images straight
/// into their wanted columns, `source` into its raw fields, everything else skipped.
struct Payload<'de> {
    op: Option<&'de str>,
    before: Option<Row>,
    after: Option<Row>,
    source: Option<Fields<'de>>,
}

#[derive(Clone, Copy)]
struct PayloadSeed<'c>(WantedColumns<'c>);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Payload<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a change payload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut payload = Payload {
            op: None,
            before: None,
            after: None,
            source: None,
        };
        // Borrowed names only: an escaped one makes the record take the general path.
        while let Some(name) = map.next_key::<&'de str>()? {
            match name {
                "op" => payload.op = map.next_value()?,
                "before" => payload.before = map.next_value_seed(NullOr(self.0))?,
                "after" => payload.after = map.next_value_seed(NullOr(self.0))?,
                "source" => payload.source = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(payload)
    }
}

/// `null`, or what the inner seed reads.
struct NullOr<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for NullOr<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for NullOr<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null or an object")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// Parsed value schemas by their text: a topic repeats a few schemas, and comparing texts is
/// much cheaper than hashing or parsing them.
#[derive(Debug, Default)]
struct RecentSchemas {
    schemas: Vec<(Box<str>, Option<Arc<FieldSchema>>)>,
}

/// A bound on remembered schemas (most recently seen first).
const RECENT_SCHEMAS: usize = 16;

impl RecentSchemas {
    /// `{"schema":<the last schema seen>,"payload":<JSON>}`, as the JsonConverter writes it,
    /// split without reading the schema again: its text is compared, the payload checked.
    fn split_known<'v>(&self, value: &'v [u8]) -> Option<(Option<Arc<FieldSchema>>, &'v str)> {
        let (text, schema) = self.schemas.first()?;
        let rest = value.strip_prefix(br#"{"schema":"#)?;
        let rest = rest.strip_prefix(text.as_bytes())?;
        let payload = rest.strip_prefix(br#","payload":"#)?.strip_suffix(b"}")?;
        // Checked as JSON when it is read (`Payload`), not twice.
        let payload = std::str::from_utf8(payload).ok()?;
        Some((schema.clone(), payload.trim_ascii()))
    }

    fn get(&mut self, text: &str) -> Option<Arc<FieldSchema>> {
        if let Some(index) = self.schemas.iter().position(|(t, _)| &**t == text) {
            if index > 0 {
                let entry = self.schemas.remove(index);
                self.schemas.insert(0, entry);
            }
            return self.schemas[0].1.clone();
        }
        let parsed = serde_json::from_str::<Json>(text)
            .ok()
            .and_then(|json| FieldSchema::from_json(&json))
            .map(Arc::new);
        self.schemas.truncate(RECENT_SCHEMAS - 1);
        self.schemas.insert(0, (text.into(), parsed.clone()));
        parsed
    }
}

/// Connect's Decimal (base64 of the two's-complement big-endian unscaled value) straight into
/// a decimal, without the text `cell` would make of it; `None` leaves it to `cell`.
fn connect_decimal(json: &Json, schema: &FieldSchema) -> Option<BigDecimal> {
    let scale: i64 = schema.parameters.get("scale")?.as_str()?.parse().ok()?;
    let bytes = STANDARD.decode(json.as_str()?).ok()?;
    Some(BigDecimal::new(BigInt::from_signed_bytes_be(&bytes), scale))
}

/// Debezium's `source.sequence`: `["<last commit LSN>","<LSN>"]`. A null part (the first
/// transaction after a connector restart may have no last commit LSN) makes the position
/// unknown: such a change is never taken for a repeat, since comparing it could drop a real one.
fn parse_sequence(text: &str) -> Option<(u64, u64)> {
    let parsed: Json = serde_json::from_str(text).ok()?;
    let lsn = |i: usize| -> Option<u64> {
        match parsed.get(i)? {
            Json::String(s) => s.parse().ok(),
            other => other.as_u64(),
        }
    };
    Some((lsn(0)?, lsn(1)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn source_fields_read_plainly_equal_the_general_reading() {
        for source in [
            r#"{"ts_us":1700000000000001,"ts_ms":1700000000000,"snapshot":"false","sequence":"[\"24023928\",\"24023984\"]"}"#,
            r#"{"ts_ms":1700000000000,"snapshot":"last","sequence":"[null,\"24023984\"]"}"#,
            r#"{"ts_us":null,"ts_ms":5,"snapshot":"l\u0061st","sequence":"[1,2]"}"#,
            r#"{"ts_us":1.5,"ts_ms":5,"snapshot":true,"sequence":"[\"1\", \"2\"]"}"#,
            r#"{"ts_ms":7,"sequence":"[\"1\",\"2\",\"3\"]"}"#,
            r#"{"sequence":null,"snapshot":null}"#,
        ] {
            let fields: Fields<'_> = serde_json::from_str(source).expect("JSON");
            let json: Json = serde_json::from_str(source).expect("JSON");
            assert_eq!(
                format!("{:?}", SourceInfo::of_fields(&fields).expect("an object")),
                format!("{:?}", SourceInfo::of(&json)),
                "{source}"
            );
        }
    }

    #[test]
    fn a_sequence_with_a_null_part_is_no_position() {
        assert_eq!(parse_sequence(r#"["10","20"]"#), Some((10, 20)));
        // The first transaction after a source restart: comparing it with (10, 20) as (0, 30)
        // would take it for an older change and drop it.
        assert_eq!(parse_sequence(r#"[null,"30"]"#), None);
        assert_eq!(parse_sequence("not json"), None);
    }
    use crate::config::ConnectorConfig;

    fn decoder(event_time: &str) -> Decoder {
        let config: std::collections::BTreeMap<String, String> = [
            ("topics", "t"),
            ("connection.url", "jdbc:postgresql://h/db?user=u"),
            ("table.name", "r"),
            ("event.time.field", event_time),
            ("window.type", "tumbling"),
            ("window.size", "1m"),
            ("group.by", "customer"),
            ("aggregates", "revenue=sum(amount),n=count(*)"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let config = WindowAggregateConfig::from_connector(&ConnectorConfig {
            name: "w".into(),
            config,
        })
        .expect("valid");
        Decoder::new(&config)
    }

    fn document(json: Json) -> Option<Document> {
        Some(Document::from_json(json))
    }

    fn row_schema() -> Json {
        json!([
            {"field": "id", "type": "int32", "optional": false},
            {"field": "customer", "type": "int32", "optional": true},
            {"field": "amount", "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
             "parameters": {"scale": "2", "connect.decimal.precision": "10"}},
            {"field": "created_at", "type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp"}
        ])
    }

    fn envelope(op: &str, before: Json, after: Json) -> Json {
        json!({
            "schema": {"type": "struct", "fields": [
                {"field": "before", "type": "struct", "optional": true, "fields": row_schema()},
                {"field": "after", "type": "struct", "optional": true, "fields": row_schema()},
                {"field": "source", "type": "struct", "fields": []},
                {"field": "op", "type": "string"}
            ]},
            "payload": {"before": before, "after": after, "op": op,
                        "source": {"ts_ms": 5, "sequence": "[\"10\",\"20\"]", "snapshot": "false"}}
        })
    }

    #[test]
    fn typed_images_from_an_envelope() {
        // 12.34 as Connect Decimal bytes: unscaled 1234 = 0x04D2.
        let after = json!({"id": 1, "customer": 7, "amount": "BNI=", "created_at": 90_000_000});
        let mut decoder = decoder("created_at");
        let decoded = decoder
            .decode(
                document(json!({"id": 1})),
                document(envelope("u", Json::Null, after)),
            )
            .expect("decodes");
        let Decoded::Change {
            change,
            time,
            in_snapshot,
        } = decoded
        else {
            panic!("a change");
        };
        assert_eq!(decoder.column_types()["amount"], "numeric(10,2)");
        assert_eq!(time, Some(90_000_000));
        assert!(!in_snapshot);
        assert_eq!(change.kind, ChangeKind::Update);
        assert_eq!(change.row_key.as_deref(), Some(r#"{"id":1}"#));
        assert_eq!(change.position, Some((10, 20)));
        assert!(change.before.is_none());
        let after = change.after.expect("after").expect("valid");
        assert_eq!(&*after.group, &[Value::Int(7)]);
        assert_eq!(
            &*after.inputs,
            &[Value::Num(BigDecimal::from_str("12.34").expect("decimal"))]
        );
    }

    #[test]
    fn key_only_before_images_and_bad_times() {
        let mut decoder = decoder("created_at");
        let before = json!({"id": 1, "customer": null, "amount": null, "created_at": null});
        let Decoded::Change { change, .. } = decoder
            .decode(
                document(json!({"id": 1})),
                document(envelope("d", before, Json::Null)),
            )
            .expect("decodes")
        else {
            panic!("a change");
        };
        assert!(
            change.before.is_none(),
            "a key-only before image is not used"
        );
        let after = json!({"id": 2, "customer": 1, "amount": null, "created_at": null});
        let Decoded::Change { change, .. } = decoder
            .decode(
                document(json!({"id": 2})),
                document(envelope("c", Json::Null, after)),
            )
            .expect("decodes")
        else {
            panic!("a change");
        };
        assert_eq!(change.after, Some(Err(ImageProblem::InvalidEventTime)));
        let mut by_commit = self::decoder("source.ts_ms");
        let after = json!({"id": 2, "customer": null, "amount": null, "created_at": null});
        let Decoded::Change { change, .. } = by_commit
            .decode(
                document(json!({"id": 2})),
                document(envelope("c", Json::Null, after)),
            )
            .expect("decodes")
        else {
            panic!("a change");
        };
        assert_eq!(change.after, Some(Err(ImageProblem::NullGroupKey)));
        assert!(matches!(decoder.decode(None, None), Ok(Decoded::Ignored)));
        let err = decoder
            .decode(None, document(json!({"op": "t", "source": {}})))
            .expect_err("truncate");
        assert_eq!(err, DecodeError::Truncate);
    }

    /// The fast path reads every record it accepts exactly as the general path does, and
    /// leaves the shapes it does not handle to it.
    #[test]
    fn the_json_fast_path_agrees_with_the_general_path() {
        let after = json!({"id": 1, "customer": 7, "amount": "BNI=", "created_at": 90_000_000});
        let before = json!({"id": 1, "customer": 3, "amount": "/y4=", "created_at": 30_000_000});
        let key_only = json!({"id": 1, "customer": null, "amount": null, "created_at": null});
        let key = json!({"schema": {"type": "struct", "fields": [{"field": "id", "type": "int32"}]},
                         "payload": {"id": 1}});
        let mut snapshot = envelope("r", Json::Null, after.clone());
        snapshot["payload"]["source"]["snapshot"] = json!("last");
        let mut escaped = envelope("c", Json::Null, json!({"id": 1, "cust\\u006fmer": 7}));
        escaped["payload"]["after"]["customer"] = json!(7);
        let records = [
            (Some(key.clone()), envelope("c", Json::Null, after.clone())),
            (
                Some(key.clone()),
                envelope("u", before.clone(), after.clone()),
            ),
            (Some(key.clone()), envelope("d", key_only, Json::Null)),
            (None, envelope("d", before, Json::Null)),
            (Some(key.clone()), snapshot),
            (Some(key.clone()), envelope("t", Json::Null, Json::Null)),
            (Some(key.clone()), envelope("m", Json::Null, Json::Null)),
            (Some(key.clone()), envelope("x", Json::Null, Json::Null)),
            (Some(key.clone()), json!({"schema": null, "payload": null})),
        ];
        // One decoder throughout: from the second record on, the schema is known by its text.
        let mut fast_decoder = decoder("created_at");
        for (key, value) in records {
            let key_bytes = key.as_ref().map(|k| k.to_string().into_bytes());
            let value_bytes = value.to_string().into_bytes();
            let fast = fast_decoder
                .decode_json(key_bytes.as_deref(), &value_bytes, true, true)
                .expect("the fast path reads an envelope");
            let general =
                decoder("created_at").decode(key.map(Document::from_json), document(value));
            assert_eq!(format!("{fast:?}"), format!("{general:?}"));
        }
        // Keys read as text are the keys the general path prints, however they are spaced,
        // escaped or written; the second of two equal schemas is known by its text.
        for payload in [
            r#"{"id":1}"#,
            r#"{"id":1}"#,
            r#"{ "id" : 1 }"#,
            r#"{"id":1.50}"#,
            r#"{"id":"a\u0062c"}"#,
            r#"{"id":"ü"}"#,
            "null",
        ] {
            let key =
                format!(r#"{{"schema":{{"type":"struct","optional":false}},"payload":{payload}}}"#);
            let value = envelope("c", Json::Null, after.clone());
            let fast = fast_decoder
                .decode_json(
                    Some(key.as_bytes()),
                    value.to_string().as_bytes(),
                    true,
                    true,
                )
                .expect("the fast path reads the key");
            let general = decoder("created_at").decode(
                Some(Document::from_json(
                    serde_json::from_str(&key).expect("JSON"),
                )),
                document(value),
            );
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{key}");
        }
        // A decimal straight from its bytes equals the one read through its text.
        let Ok(Decoded::Change { change, .. }) = decoder("created_at")
            .decode_json(
                None,
                envelope("c", Json::Null, after).to_string().as_bytes(),
                true,
                true,
            )
            .expect("read")
        else {
            panic!("a change");
        };
        assert_eq!(
            change.after.expect("after").expect("valid").inputs[0],
            Value::Num(BigDecimal::from_str("12.34").expect("decimal"))
        );
        // Flattened rows and values that are not JSON are the general path's.
        let flat = json!({"id": 1, "customer": 7, "amount": null, "created_at": 5});
        let mut decoder = decoder("created_at");
        assert!(
            decoder
                .decode_json(None, flat.to_string().as_bytes(), false, false)
                .is_none()
        );
        assert!(decoder.decode_json(None, b"not json", true, true).is_none());
        // An escaped field name takes the general path too.
        assert!(
            decoder
                .decode_json(None, escaped.to_string().as_bytes(), true, true)
                .is_none()
        );
    }
}
