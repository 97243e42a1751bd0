//! Kafka records in, changes to apply out: Debezium envelopes (and flattened records) in
//! Connect JSON, with or without schemas.

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc};

use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value as Json, value::RawValue};

use super::{
    config::{FieldFilter, PostgresSinkConfig, PrimaryKeyMode},
    types::{Cell, FieldSchema, Unchanged, ValueError, cell, cell_of},
};

/// Where a record came from: enough to name it in an error without its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for RecordPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// Why a record cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "record {position}: the {part} is not JSON; the sink reads Connect JSON (JsonConverter)"
    )]
    NotJson {
        position: RecordPosition,
        part: &'static str,
    },
    #[error("record {position}: {message}")]
    Shape {
        position: RecordPosition,
        message: String,
    },
    #[error(
        "record {position}: the target database rejected it (SQLSTATE {sqlstate}); fix the \
         target table or the record"
    )]
    Rejected {
        position: RecordPosition,
        sqlstate: String,
    },
    #[error("record {position}: the {part} cannot be read: {reason}")]
    Unreadable {
        position: RecordPosition,
        part: &'static str,
        reason: String,
    },
    #[error("record {position}: {source}")]
    Value {
        position: RecordPosition,
        source: ValueError,
    },
}

/// A column of a row, with its Connect schema when the record had one.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnValue {
    /// Shared with the schema's field when there is one (no allocation per cell).
    pub name: Arc<str>,
    pub schema: Option<Arc<FieldSchema>>,
    pub cell: Cell,
}

/// What a record asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write this row (insert, update or upsert as configured).
    Write(Vec<ColumnValue>),
    /// Delete the row with this key.
    Delete,
    /// Empty the table (`truncate.enabled`).
    Truncate,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<'a> {
    /// The `source` block's database, schema and table (for `collection.name.format`),
    /// borrowed from the record when it can be.
    pub source_db: Option<Cow<'a, str>>,
    pub source_schema: Option<Cow<'a, str>>,
    pub source_table: Option<Cow<'a, str>>,
    /// The key columns (empty with `primary.key.mode=none`).
    pub key: Vec<ColumnValue>,
    /// The key as text, to find the last change per key within a batch.
    pub key_identity: String,
    pub change: Change,
    /// A Debezium create (`op` "c" in an envelope): the source row did not exist before it.
    /// Flattened records and snapshot reads (`r`) say nothing of the kind.
    pub created: bool,
}

/// A key or value: its Connect schema (when it has one) and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub schema: Option<Arc<FieldSchema>>,
    pub payload: Json,
}

impl Document {
    /// From a Connect JSON document: `{"schema": …, "payload": …}` or a bare payload.
    pub fn from_json(document: Json) -> Self {
        let (schema, payload) = schema_and_payload(document);
        Self {
            schema: schema
                .as_ref()
                .and_then(FieldSchema::from_json)
                .map(Arc::new),
            payload,
        }
    }
}

/// A key or value whose payload is left as JSON text, to be read field by field (see
/// `RawObject`).
#[derive(Debug, Clone)]
pub struct RawDocument<'a> {
    pub schema: Option<Arc<FieldSchema>>,
    pub payload: &'a RawValue,
}

/// Parsed schemas by their JSON text: the records of a topic repeat the same schema, and
/// parsing it is most of the work of reading a record.
#[derive(Debug, Default)]
pub struct SchemaCache {
    schemas: HashMap<Box<str>, Option<Arc<FieldSchema>>>,
    /// The schema of the last value read by `raw_document`, as its JSON text: the next record
    /// of the topic almost always starts with the same bytes, which are then compared rather
    /// than tokenized and hashed (the schema is ~3/4 of a Debezium record).
    last: Option<(Box<str>, Option<Arc<FieldSchema>>)>,
}

/// A bound on cached schemas, against topics whose schema changes with every record.
const MAX_CACHED_SCHEMAS: usize = 1024;

/// How the JsonConverter starts and continues a record with a schema.
const SCHEMA_OPENING: &[u8] = b"{\"schema\":";
const PAYLOAD_OPENING: &[u8] = b",\"payload\":";

impl SchemaCache {
    /// Reads a Connect JSON key or value.
    pub fn document(&mut self, bytes: &[u8]) -> Result<Document, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Envelope<'a> {
            #[serde(borrow)]
            schema: &'a RawValue,
            payload: Json,
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(bytes) else {
            return serde_json::from_slice::<Json>(bytes).map(Document::from_json);
        };
        Ok(Document {
            schema: self.parsed(envelope.schema.get()),
            payload: envelope.payload,
        })
    }

    /// Reads a Connect JSON key or value as `document` does, leaving the payload unparsed.
    pub fn raw_document<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> Result<RawDocument<'a>, serde_json::Error> {
        if let Some(document) = self.after_last_schema(bytes) {
            return Ok(document);
        }
        let Ok(envelope) = serde_json::from_slice::<RawEnvelope<'_>>(bytes) else {
            let whole = serde_json::from_slice::<&RawValue>(bytes)?;
            // As `Document::from_json` reads it: repeated members, the last one counting.
            if let Some(members) = RawObject::parse(whole)
                && members
                    .0
                    .iter()
                    .all(|(name, _)| name == "schema" || name == "payload")
                && let (Some(schema), Some(payload)) =
                    (members.get("schema"), members.get("payload"))
            {
                return Ok(RawDocument {
                    schema: self.parsed(schema.get()),
                    payload,
                });
            }
            return Ok(RawDocument {
                schema: None,
                payload: whole,
            });
        };
        let text = envelope.schema.get();
        let schema = self.parsed(text);
        self.last = Some((text.into(), schema.clone()));
        Ok(RawDocument {
            schema,
            payload: envelope.payload,
        })
    }

    /// `{"schema":<the last schema>,"payload":<payload>}` without reading the schema again;
    /// `None` when `bytes` are not of that form (the full parse decides then).
    fn after_last_schema<'a>(&self, bytes: &'a [u8]) -> Option<RawDocument<'a>> {
        let (text, schema) = self.last.as_ref()?;
        let payload = bytes
            .strip_prefix(SCHEMA_OPENING)?
            .strip_prefix(text.as_bytes())?
            .strip_prefix(PAYLOAD_OPENING)?
            .trim_ascii_end()
            .strip_suffix(b"}")?;
        // Exactly one JSON value, or the record is not of this form after all.
        let payload = serde_json::from_slice::<&RawValue>(payload).ok()?;
        Some(RawDocument {
            schema: schema.clone(),
            payload,
        })
    }

    fn parsed(&mut self, text: &str) -> Option<Arc<FieldSchema>> {
        if let Some(schema) = self.schemas.get(text) {
            return schema.clone();
        }
        let parsed = serde_json::from_str::<Json>(text)
            .ok()
            .and_then(|json| FieldSchema::from_json(&json))
            .map(Arc::new);
        if self.schemas.len() >= MAX_CACHED_SCHEMAS {
            self.schemas.clear();
        }
        self.schemas.insert(text.into(), parsed.clone());
        parsed
    }
}

/// A Connect JSON document with schema, its parts unparsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvelope<'a> {
    #[serde(borrow)]
    pub schema: &'a RawValue,
    #[serde(borrow)]
    pub payload: &'a RawValue,
}

/// A JSON object's members in order, read in one pass, their names borrowed from the record.
#[derive(Debug)]
struct Members<'a, V>(Vec<(Cow<'a, str>, V)>);

/// Members with their values left as JSON text. Reading a record this way builds no
/// `serde_json::Value` tree (a map, a key and a value allocated per member), which was most of
/// the cost of reading a Debezium envelope.
type RawObject<'a> = Members<'a, &'a RawValue>;

/// Members with their values read as `serde_json::Value`s in the same pass: a row image, whose
/// every value becomes a cell (reading it as a `RawObject` and then each value again scanned it
/// twice).
type JsonMembers<'a> = Members<'a, Json>;

impl<'a, V: Deserialize<'a>> Members<'a, V> {
    /// `None` when `raw` is not an object.
    fn parse(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }
}

impl<'a> RawObject<'a> {
    /// The member called `name` (the last one, as a `serde_json` map keeps it).
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(member, _)| member == name)
            .map(|(_, value)| *value)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Members<'de, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> de::Visitor<'de> for Visitor<V> {
            type Value = Members<'de, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(RawText(name)) = map.next_key()? {
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A JSON string, borrowed from the record unless it has escapes.
struct RawText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for RawText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> de::Visitor<'de> for Text {
            type Value = RawText<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(RawText(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(RawText(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(RawText(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// The string `raw` holds; `None` when it is not a string.
fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<RawText<'_>>(raw.get())
        .ok()
        .map(|text| text.0)
}

/// Splits `{"schema": …, "payload": …}`; a document without that shape is a bare payload.
fn schema_and_payload(document: Json) -> (Option<Json>, Json) {
    match document {
        Json::Object(mut object)
            if object.len() == 2
                && object.contains_key("schema")
                && object.contains_key("payload") =>
        {
            let payload = object.remove("payload").unwrap_or(Json::Null);
            let schema = object.remove("schema").filter(|s| !s.is_null());
            (schema, payload)
        }
        other => (None, other),
    }
}

/// Decodes the Connect JSON record at `position`; `Ok(None)` for records with nothing to apply
/// (tombstones, truncates, logical messages, deletes when deletes are off).
pub fn decode<'a>(
    config: &PostgresSinkConfig,
    unchanged: &Unchanged,
    position: &RecordPosition,
    key: Option<&[u8]>,
    value: Option<&'a [u8]>,
) -> Result<Option<Decoded<'a>>, RecordError> {
    let not_json = |part| RecordError::NotJson {
        position: position.clone(),
        part,
    };
    // A tombstone follows a delete that was applied already; its key does not matter.
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let value = SchemaCache::default()
        .raw_document(value)
        .map_err(|_| not_json("value"))?;
    let key = match config.primary_key_mode {
        PrimaryKeyMode::RecordKey => key
            .filter(|k| !k.is_empty())
            .map(|k| SchemaCache::default().document(k))
            .transpose()
            .map_err(|_| not_json("key"))?,
        _ => None,
    };
    decode_raw_document(config, unchanged, position, key, Some(value))
}

/// As `decode`, for key and value already read into Connect JSON documents (`{"schema": …,
/// "payload": …}` or a bare payload).
pub fn decode_document(
    config: &PostgresSinkConfig,
    unchanged: &Unchanged,
    position: &RecordPosition,
    key: Option<Document>,
    value: Option<Document>,
) -> Result<Option<Decoded<'static>>, RecordError> {
    // A tombstone follows a delete that was applied already.
    let Some(document) = value else {
        return Ok(None);
    };
    let Document {
        schema: value_schema,
        payload,
    } = document;
    let Json::Object(mut payload) = payload else {
        return if payload.is_null() {
            Ok(None)
        } else {
            Err(shape_error(position, "the value is not a JSON object"))
        };
    };
    let envelope = match payload.get("op").and_then(Json::as_str) {
        Some(op) => {
            let op = op.to_owned();
            let row_field = row_field(&op);
            let row = match payload.remove(row_field) {
                Some(Json::Object(row)) => Some(Row::Tree(row)),
                _ => None,
            };
            let row_schema = value_schema
                .as_ref()
                .and_then(|s| s.field(row_field))
                .cloned();
            let source = payload.remove("source").unwrap_or(Json::Null);
            let text = |name: &str| {
                source
                    .get(name)
                    .and_then(Json::as_str)
                    .map(|text| Cow::Owned(text.to_owned()))
            };
            Envelope {
                op: Cow::Owned(op),
                flattened: false,
                row,
                row_schema,
                source: SourceNames {
                    db: text("db"),
                    schema: text("schema"),
                    table: text("table"),
                },
            }
        }
        // A flattened record (ExtractNewRecordState): the value is the row.
        None => Envelope {
            op: Cow::Borrowed("c"),
            flattened: true,
            row: Some(Row::Tree(payload)),
            row_schema: value_schema,
            source: SourceNames::default(),
        },
    };
    decode_envelope(config, unchanged, position, key, envelope)
}

/// As `decode_document`, for a value whose payload is still JSON text: the envelope and the
/// row are read member by member, without building a `serde_json::Value` tree.
pub fn decode_raw_document<'a>(
    config: &PostgresSinkConfig,
    unchanged: &Unchanged,
    position: &RecordPosition,
    key: Option<Document>,
    value: Option<RawDocument<'a>>,
) -> Result<Option<Decoded<'a>>, RecordError> {
    let Some(RawDocument {
        schema: value_schema,
        payload,
    }) = value
    else {
        return Ok(None);
    };
    let Some(members) = RawObject::parse(payload) else {
        return if payload.get() == "null" {
            Ok(None)
        } else {
            Err(shape_error(position, "the value is not a JSON object"))
        };
    };
    let envelope = match members.get("op").and_then(raw_str) {
        Some(op) => {
            let row_field = row_field(&op);
            let row = members
                .get(row_field)
                .and_then(JsonMembers::parse)
                .map(Row::Raw);
            let row_schema = value_schema
                .as_ref()
                .and_then(|s| s.field(row_field))
                .cloned();
            let source = members.get("source").and_then(RawObject::parse);
            let text = |name: &str| source.as_ref().and_then(|s| s.get(name)).and_then(raw_str);
            Envelope {
                source: SourceNames {
                    db: text("db"),
                    schema: text("schema"),
                    table: text("table"),
                },
                op,
                flattened: false,
                row,
                row_schema,
            }
        }
        // A flattened record (ExtractNewRecordState): the value is the row.
        None => Envelope {
            op: Cow::Borrowed("c"),
            flattened: true,
            row: JsonMembers::parse(payload).map(Row::Raw),
            row_schema: value_schema,
            source: SourceNames::default(),
        },
    };
    decode_envelope(config, unchanged, position, key, envelope)
}

fn shape_error(position: &RecordPosition, message: impl Into<String>) -> RecordError {
    RecordError::Shape {
        position: position.clone(),
        message: message.into(),
    }
}

/// The member of an envelope holding the row: `before` for deletes, `after` otherwise.
fn row_field(op: &str) -> &'static str {
    if op == "d" { "before" } else { "after" }
}

/// A row image as read from the record.
enum Row<'a> {
    Tree(Map<String, Json>),
    Raw(JsonMembers<'a>),
}

/// The `source` block's names (for `collection.name.format`).
#[derive(Default)]
struct SourceNames<'a> {
    db: Option<Cow<'a, str>>,
    schema: Option<Cow<'a, str>>,
    table: Option<Cow<'a, str>>,
}

/// What every way of reading a value gives: the operation, its row image (`None` when absent
/// or not an object) with its schema, and the source names.
struct Envelope<'a> {
    op: Cow<'a, str>,
    /// The value is the row itself (ExtractNewRecordState): `op` is assumed, not read.
    flattened: bool,
    row: Option<Row<'a>>,
    row_schema: Option<Arc<FieldSchema>>,
    source: SourceNames<'a>,
}

fn decode_envelope<'a>(
    config: &PostgresSinkConfig,
    unchanged: &Unchanged,
    position: &RecordPosition,
    key: Option<Document>,
    envelope: Envelope<'a>,
) -> Result<Option<Decoded<'a>>, RecordError> {
    let shape = |message: String| shape_error(position, message);
    let value_error = |source: ValueError| RecordError::Value {
        position: position.clone(),
        source,
    };
    let Envelope {
        op,
        flattened,
        row,
        row_schema,
        source,
    } = envelope;
    let delete = match op.as_ref() {
        "c" | "r" | "u" => false,
        "d" if config.delete_enabled => true,
        // A truncate has no key and no row: it names its table in the source block.
        "t" if config.truncate_enabled => {
            return Ok(Some(Decoded {
                source_db: source.db,
                source_schema: source.schema,
                source_table: source.table,
                key: Vec::new(),
                key_identity: String::new(),
                change: Change::Truncate,
                created: false,
            }));
        }
        "d" | "t" | "m" => return Ok(None),
        other => return Err(shape(format!("op {other:?} is not a Debezium operation"))),
    };

    let (mut key, mut key_identity) = match config.primary_key_mode {
        PrimaryKeyMode::RecordKey => {
            let document = key.ok_or_else(|| {
                shape("has no key; primary.key.mode=record_key needs one".to_owned())
            })?;
            let Document {
                schema: key_schema,
                payload: key_payload,
            } = document;
            let columns =
                key_columns(config, key_schema, key_payload, unchanged).map_err(|e| match e {
                    KeyError::Shape(message) => shape(message),
                    KeyError::Value(source) => value_error(source),
                })?;
            let identity = identity_of(&columns);
            (columns, identity)
        }
        _ => (Vec::new(), String::new()),
    };

    let change = if delete {
        if key.is_empty() {
            return Err(shape("a delete without key columns".to_owned()));
        }
        Change::Delete
    } else {
        let schema = row_schema.as_deref();
        let mut columns = match row {
            Some(Row::Tree(row)) => row_columns(row, schema, unchanged),
            Some(Row::Raw(row)) => raw_row_columns(row, schema, unchanged),
            None => {
                return Err(shape(format!(
                    "op {op:?} without an {} row image",
                    row_field(&op)
                )));
            }
        }
        .map_err(value_error)?;
        match config.primary_key_mode {
            PrimaryKeyMode::RecordValue => {
                key =
                    config
                        .primary_key_fields
                        .iter()
                        .map(|name| {
                            columns.iter().find(|c| *c.name == **name).cloned().ok_or_else(|| {
                            shape(format!(
                                "the value has no field {name:?} named in primary.key.fields"
                            ))
                        })
                        })
                        .collect::<Result<_, _>>()?;
                key_identity = identity_of(&key);
            }
            PrimaryKeyMode::Kafka => {
                key = kafka_columns(position);
                columns.extend(key.iter().cloned());
                key_identity = position.to_string();
            }
            PrimaryKeyMode::RecordKey | PrimaryKeyMode::None => {}
        }
        if !matches!(config.fields, FieldFilter::All) {
            columns.retain(|c| {
                key.iter().any(|k| k.name == c.name)
                    || config.fields.keeps(&position.topic, &c.name)
            });
        }
        Change::Write(columns)
    };
    Ok(Some(Decoded {
        source_db: source.db,
        source_schema: source.schema,
        source_table: source.table,
        key,
        key_identity,
        change,
        created: !flattened && op == "c",
    }))
}

/// The key columns as one text, equal for keys that name the same target row (the JSON text
/// of the key would cost a serialization per record, and tell `1` and `1.0` apart).
fn identity_of(columns: &[ColumnValue]) -> String {
    let mut identity = String::with_capacity(columns.len() * 32);
    for column in columns {
        // Lengths first: no name or value can run into the next. Typed cells count by their
        // text, so `1` read as an integer and as a string name the same row.
        let mut integer = itoa::Buffer::new();
        let text = match &column.cell {
            // Integer keys are the common case: no allocation for their text.
            Cell::Integer(i) => Some(Cow::Borrowed(integer.format(*i))),
            cell => cell.text(),
        };
        let (tag, text) = match (&column.cell, &text) {
            (_, Some(text)) => ('t', &**text),
            (Cell::Unchanged, None) => ('u', ""),
            (_, None) => ('n', ""),
        };
        // Pushed piece by piece: `write!` parses its format on every record.
        let mut number = itoa::Buffer::new();
        identity.push_str(number.format(column.name.len()));
        identity.push(':');
        identity.push_str(&column.name);
        identity.push(tag);
        identity.push_str(number.format(text.len()));
        identity.push(':');
        identity.push_str(text);
    }
    identity
}

/// `primary.key.mode=kafka`: the record's coordinates as key columns.
fn kafka_columns(position: &RecordPosition) -> Vec<ColumnValue> {
    let column = |name: &str, kind: &str, cell: Cell| ColumnValue {
        name: name.into(),
        schema: FieldSchema::from_json(&serde_json::json!({"type": kind, "optional": false}))
            .map(Arc::new),
        cell,
    };
    vec![
        column(
            "__connect_topic",
            "string",
            Cell::Text(position.topic.clone()),
        ),
        column(
            "__connect_partition",
            "int32",
            Cell::Integer(i64::from(position.partition)),
        ),
        column("__connect_offset", "int64", Cell::Integer(position.offset)),
    ]
}

enum KeyError {
    Shape(String),
    Value(ValueError),
}

fn key_columns(
    config: &PostgresSinkConfig,
    schema: Option<Arc<FieldSchema>>,
    payload: Json,
    unchanged: &Unchanged,
) -> Result<Vec<ColumnValue>, KeyError> {
    let wanted = &config.primary_key_fields;
    match payload {
        Json::Object(fields) => {
            let mut columns = Vec::new();
            for (name, value) in fields {
                if !wanted.is_empty() && !wanted.contains(&name) {
                    continue;
                }
                let field = schema
                    .as_ref()
                    .and_then(|s| s.fields.iter().find(|(field, _)| **field == *name));
                let cell = cell(&name, &value, field.map(|(_, s)| &**s), unchanged)
                    .map_err(KeyError::Value)?;
                let (name, schema) = match field {
                    Some((shared, schema)) => (Arc::clone(shared), Some(Arc::clone(schema))),
                    None => (Arc::from(name), None),
                };
                columns.push(ColumnValue { name, schema, cell });
            }
            if let Some(missing) = wanted
                .iter()
                .find(|w| !columns.iter().any(|c| *c.name == ***w))
            {
                return Err(KeyError::Shape(format!(
                    "the key has no field {missing:?} named in primary.key.fields"
                )));
            }
            if columns.is_empty() {
                return Err(KeyError::Shape("the key has no fields".to_owned()));
            }
            Ok(columns)
        }
        Json::Null => Err(KeyError::Shape(
            "the key is null; primary.key.mode=record_key needs a key (is the source table without a primary key?)"
                .to_owned(),
        )),
        primitive => {
            let [name] = wanted.as_slice() else {
                return Err(KeyError::Shape(
                    "the key is a single value; name its column in primary.key.fields".to_owned(),
                ));
            };
            let cell =
                cell(name, &primitive, schema.as_deref(), unchanged).map_err(KeyError::Value)?;
            Ok(vec![ColumnValue {
                name: name.as_str().into(),
                schema,
                cell,
            }])
        }
    }
}

fn row_columns(
    row: Map<String, Json>,
    schema: Option<&FieldSchema>,
    unchanged: &Unchanged,
) -> Result<Vec<ColumnValue>, ValueError> {
    row.into_iter()
        .map(|(name, value)| {
            let field_schema = schema.and_then(|s| s.field(&name)).cloned();
            let cell = cell(&name, &value, field_schema.as_deref(), unchanged)?;
            Ok(ColumnValue {
                name: name.into(),
                schema: field_schema,
                cell,
            })
        })
        .collect()
}

/// The field of `schema` called `name`, looked for first at `hint` (records list their fields
/// in schema order, so this is nearly always a hit).
fn field_at<'s>(
    schema: &'s FieldSchema,
    hint: usize,
    name: &str,
) -> Option<&'s (Arc<str>, Arc<FieldSchema>)> {
    match schema.fields.get(hint) {
        Some(field) if *field.0 == *name => Some(field),
        _ => schema.fields.iter().find(|(field, _)| **field == *name),
    }
}

fn raw_row_columns(
    row: JsonMembers<'_>,
    schema: Option<&FieldSchema>,
    unchanged: &Unchanged,
) -> Result<Vec<ColumnValue>, ValueError> {
    let mut columns = Vec::with_capacity(row.0.len());
    for (index, (name, value)) in row.0.into_iter().enumerate() {
        let field = schema.and_then(|s| field_at(s, index, &name));
        let cell = cell_of(&name, value, field.map(|(_, s)| &**s), unchanged)?;
        let (name, schema) = match field {
            Some((shared, schema)) => (Arc::clone(shared), Some(Arc::clone(schema))),
            None => (Arc::from(name), None),
        };
        columns.push(ColumnValue { name, schema, cell });
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::ConnectorConfig;

    fn config(extra: &[(&str, &str)]) -> PostgresSinkConfig {
        let mut map: std::collections::BTreeMap<String, String> = [
            ("name", "s"),
            ("connector.class", "postgres-sink"),
            ("topics", "t"),
            ("connection.url", "jdbc:postgresql://h/db"),
            ("connection.username", "u"),
            ("insert.mode", "upsert"),
            ("delete.enabled", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        PostgresSinkConfig::from_connector(&ConnectorConfig {
            name: "s".into(),
            config: map,
        })
        .expect("valid")
    }

    fn position() -> RecordPosition {
        RecordPosition {
            topic: "t".into(),
            partition: 0,
            offset: 9,
        }
    }

    /// Decodes through `decode` (the value read member by member), and checks that reading
    /// the value into a tree (`decode_document`) gives the same.
    fn decode_json(
        config: &PostgresSinkConfig,
        key: Json,
        value: Option<Json>,
    ) -> Option<Decoded<'static>> {
        let key = key.to_string();
        let value = value.map(|v| v.to_string());
        let decoded = decode(
            config,
            &Unchanged::default(),
            &position(),
            Some(key.as_bytes()),
            value.as_deref().map(str::as_bytes),
        )
        .expect("decodes");
        let mut schemas = SchemaCache::default();
        let tree = decode_document(
            config,
            &Unchanged::default(),
            &position(),
            (config.primary_key_mode == PrimaryKeyMode::RecordKey)
                .then(|| schemas.document(key.as_bytes()).expect("json")),
            value
                .as_deref()
                .map(|v| schemas.document(v.as_bytes()).expect("json")),
        )
        .expect("decodes as a tree");
        assert_eq!(decoded, tree);
        tree
    }

    #[test]
    fn a_repeated_schema_is_recognised_by_its_bytes() {
        let schema = r#"{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false}"#;
        let record = |payload: &str| format!(r#"{{"schema":{schema},"payload":{payload}}}"#);
        let mut cache = SchemaCache::default();
        let first = record(r#"{"id":1}"#);
        let document = cache.raw_document(first.as_bytes()).expect("json");
        assert_eq!(document.payload.get(), r#"{"id":1}"#);
        assert!(cache.last.is_some());
        let second = record(r#"{"id":2}"#);
        // Only the fast path can answer without the map of schemas.
        cache.schemas.clear();
        let document = cache.raw_document(second.as_bytes()).expect("json");
        assert_eq!(document.payload.get(), r#"{"id":2}"#);
        assert_eq!(
            document.schema.as_ref().map(|s| s.fields.len()),
            Some(1),
            "the remembered schema"
        );
        assert!(cache.schemas.is_empty());
        // Not one JSON value after the schema: the full parse decides, and refuses.
        let broken = format!(r#"{{"schema":{schema},"payload":{{"id":3}}}}}}"#);
        assert!(cache.raw_document(broken.as_bytes()).is_err());
        // Repeated members: the last one counts, as in a serde_json map.
        let repeated = format!(r#"{{"schema":{schema},"payload":1,"payload":2}}"#);
        let document = cache.raw_document(repeated.as_bytes()).expect("json");
        assert_eq!(document.payload.get(), "2");
        assert!(document.schema.is_some());
        // Another schema, and a bare payload.
        let other = r#"{"schema":{"type":"string"},"payload":"x"}"#;
        let document = cache.raw_document(other.as_bytes()).expect("json");
        assert_eq!(
            document.schema.map(|s| s.kind.clone()).as_deref(),
            Some("string")
        );
        let bare = cache.raw_document(br#" {"id":4} "#).expect("json");
        assert!(bare.schema.is_none());
        assert_eq!(bare.payload.get(), r#"{"id":4}"#);
        assert!(cache.raw_document(b"{\"schema\":").is_err());
    }

    #[test]
    fn raw_members_keep_order_escapes_and_the_last_duplicate() {
        let raw: &RawValue =
            serde_json::from_str(r#"{"a":1,"b\u0041":"x\"y","a":[2]}"#).expect("json");
        let object = RawObject::parse(raw).expect("an object");
        let names: Vec<&str> = object.0.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["a", "bA", "a"]);
        assert_eq!(object.get("a").map(RawValue::get), Some("[2]"));
        assert_eq!(object.get("bA").and_then(raw_str).as_deref(), Some("x\"y"));
        assert!(object.get("a").and_then(raw_str).is_none());
        let not_object: &RawValue = serde_json::from_str("[1]").expect("json");
        assert!(RawObject::parse(not_object).is_none());
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    #[test]
    fn envelope_with_schemas() {
        let row_schema = json!({"type": "struct", "optional": true, "fields": [
            {"type": "int32", "optional": false, "field": "id"},
            {"type": "string", "optional": true, "field": "note"},
            {"type": "int32", "optional": true, "name": "io.debezium.time.Date", "field": "day"}
        ]});
        let value = json!({
            "schema": {"type": "struct", "fields": [
                {"field": "before", "type": "struct", "optional": true, "fields": row_schema["fields"]},
                {"field": "after", "type": "struct", "optional": true, "fields": row_schema["fields"]},
                {"field": "op", "type": "string"}
            ]},
            "payload": {
                "before": null,
                "after": {"id": 1, "note": "__debezium_unavailable_value", "day": 0},
                "source": {"db": "d", "schema": "public", "table": "T x"},
                "op": "u"
            }
        });
        let key = json!({"schema": {"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "id"}]},
                         "payload": {"id": 1}});
        let decoded = decode_json(&config(&[]), key, Some(value)).expect("a change");
        assert_eq!(decoded.source_table.as_deref(), Some("T x"));
        assert_eq!(decoded.key_identity, "2:idt1:1");
        assert_eq!(decoded.key[0].cell, Cell::Integer(1));
        let Change::Write(columns) = decoded.change else {
            panic!("a write");
        };
        let cells: Vec<(&str, &Cell)> = columns.iter().map(|c| (&*c.name, &c.cell)).collect();
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
        assert_eq!(
            cells,
            [
                ("id", &Cell::Integer(1)),
                ("note", &Cell::Unchanged),
                ("day", &Cell::Date(epoch))
            ]
        );
        assert_eq!(
            columns[2]
                .schema
                .as_ref()
                .map(|s| s.postgres_type())
                .as_deref(),
            Some("date")
        );
    }

    #[test]
    fn deletes_tombstones_and_bare_payloads() {
        let config = config(&[]);
        let delete = decode_json(
            &config,
            json!({"id": 4}),
            Some(json!({"before": {"id": 4}, "after": null, "op": "d"})),
        )
        .expect("a delete");
        assert_eq!(delete.change, Change::Delete);
        assert_eq!(delete.key[0].cell, text("4"));
        assert!(decode_json(&config, json!({"id": 4}), None).is_none());
        assert!(
            decode_json(&config, json!({"id": 4}), Some(json!({"op": "t"}))).is_none(),
            "truncate is skipped"
        );
        let truncating = self::config(&[("truncate.enabled", "true")]);
        let truncate = decode(
            &truncating,
            &Unchanged::default(),
            &position(),
            None,
            Some(br#"{"op":"t","source":{"schema":"public","table":"x"}}"#),
        )
        .expect("decodes")
        .expect("a truncate");
        assert_eq!(truncate.change, Change::Truncate);
        assert_eq!(truncate.source_table.as_deref(), Some("x"));
        let without_deletes = self::config(&[("delete.enabled", "false")]);
        assert!(
            decode_json(
                &without_deletes,
                json!({"id": 4}),
                Some(json!({"before": {"id": 4}, "op": "d"}))
            )
            .is_none()
        );
        // Flattened: the value is the row.
        let flat = decode_json(&config, json!({"id": 5}), Some(json!({"id": 5, "n": "x"})))
            .expect("a write");
        assert!(matches!(flat.change, Change::Write(ref c) if c.len() == 2));
    }

    #[test]
    fn value_and_kafka_keys_and_field_filters() {
        let by_value = config(&[
            ("delete.enabled", "false"),
            ("primary.key.mode", "record_value"),
            ("primary.key.fields", "code"),
            ("field.exclude.list", "secret"),
        ]);
        let decoded = decode_json(
            &by_value,
            Json::Null,
            Some(json!({"op": "c", "after": {"code": "x", "secret": "s", "n": 1}})),
        )
        .expect("a write");
        assert_eq!(decoded.key.len(), 1);
        assert_eq!(decoded.key[0].cell, text("x"));
        let Change::Write(columns) = decoded.change else {
            panic!("a write")
        };
        let names: Vec<&str> = columns.iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["code", "n"]);

        let by_offset = config(&[("delete.enabled", "false"), ("primary.key.mode", "kafka")]);
        let decoded = decode_json(
            &by_offset,
            Json::Null,
            Some(json!({"op": "c", "after": {"n": 1}})),
        )
        .expect("a write");
        let key: Vec<(&str, &Cell)> = decoded.key.iter().map(|c| (&*c.name, &c.cell)).collect();
        assert_eq!(
            key,
            [
                ("__connect_topic", &text("t")),
                ("__connect_partition", &Cell::Integer(0)),
                ("__connect_offset", &Cell::Integer(9))
            ]
        );
        assert_eq!(decoded.key_identity, "t/0@9");
    }

    #[test]
    fn bad_records_name_their_position() {
        let config = config(&[]);
        let err = decode(
            &config,
            &Unchanged::default(),
            &position(),
            Some(b"{\"id\":1}"),
            Some(b"not json"),
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("t/0@9"), "{err}");
        let err = decode(
            &config,
            &Unchanged::default(),
            &position(),
            None,
            Some(br#"{"op":"c","after":{"id":1}}"#),
        )
        .expect_err("no key");
        assert!(err.to_string().contains("no key"), "{err}");
        let err = decode(
            &config,
            &Unchanged::default(),
            &position(),
            Some(b"7"),
            Some(br#"{"op":"c","after":{"id":1}}"#),
        )
        .expect_err("primitive key without pk fields");
        assert!(err.to_string().contains("primary.key.fields"), "{err}");
    }
}
