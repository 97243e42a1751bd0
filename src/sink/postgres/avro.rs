//! Confluent Avro (`AvroConverter`) records as the Connect JSON documents the rest of the sink
//! reads: `{"schema": <Connect schema>, "payload": <value>}`.
//!
//! The wire format is a zero byte, the schema id (4 bytes, big-endian) and the Avro binary
//! datum. The writer schema comes from the registry (cached per id); its `connect.*` properties
//! (written by Confluent's AvroData and by tributary's source) give back the Connect types:
//! `connect.type` int8/int16, `connect.name` (Debezium's semantic names), `connect.parameters`.

use std::{collections::HashMap, sync::Arc};

use apache_avro::{Schema, reader::datum::GenericDatumReader, types::Value as Avro};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value as Json, json};

use super::{record::Document, types::FieldSchema};
use crate::format::registry_client::{RegistryClient, RegistryConfig, RegistryError};

/// Why an Avro record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("not in the Confluent Avro wire format (magic byte 0 and a schema id)")]
    NotWireFormat,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("schema {id} from the registry is not valid Avro: {reason}")]
    BadSchema { id: u32, reason: String },
    #[error("the datum does not match schema {id}: {reason}")]
    BadDatum { id: u32, reason: String },
}

impl AvroError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Registry(e) if e.is_transient())
    }
}

#[derive(Debug)]
struct WriterSchema {
    avro: Schema,
    json: Json,
    /// The Connect schema, read once.
    connect: Option<Arc<FieldSchema>>,
    /// Named types by name and full name, for references such as `"after": ["null", "Value"]`.
    named: HashMap<String, Json>,
}

/// Reads Avro records, fetching each writer schema from the registry once.
#[derive(Debug)]
pub(crate) struct AvroReader {
    client: RegistryClient,
    schemas: HashMap<u32, Arc<WriterSchema>>,
}

impl AvroReader {
    pub(crate) fn new(config: &RegistryConfig) -> Self {
        Self {
            client: RegistryClient::new(config),
            schemas: HashMap::new(),
        }
    }

    /// The record as a document: Connect schema and JSON payload.
    pub(crate) async fn document(&mut self, bytes: &[u8]) -> Result<Document, AvroError> {
        let (id, mut datum) = match bytes {
            [0, a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), rest),
            _ => return Err(AvroError::NotWireFormat),
        };
        let schema = match self.schemas.get(&id) {
            Some(schema) => Arc::clone(schema),
            None => {
                let text = self.client.schema_by_id(id).await?;
                let bad = |reason: String| AvroError::BadSchema { id, reason };
                let avro = Schema::parse_str(&text).map_err(|e| bad(e.to_string()))?;
                let json: Json = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
                let mut named = HashMap::new();
                collect_named(&json, None, &mut named);
                let connect = FieldSchema::from_json(&connect_schema(&json, &named)).map(Arc::new);
                let schema = Arc::new(WriterSchema {
                    avro,
                    json,
                    connect,
                    named,
                });
                self.schemas.insert(id, Arc::clone(&schema));
                schema
            }
        };
        let value = read_datum(&schema.avro, &mut datum).map_err(|e| AvroError::BadDatum {
            id,
            reason: e.to_string(),
        })?;
        Ok(Document {
            schema: schema.connect.clone(),
            payload: payload(&value, &schema.json, &schema.named),
        })
    }
}

fn read_datum(schema: &Schema, datum: &mut &[u8]) -> Result<Avro, apache_avro::Error> {
    GenericDatumReader::builder(schema)
        .build()?
        .read_value(datum)
}

fn collect_named(schema: &Json, namespace: Option<&str>, named: &mut HashMap<String, Json>) {
    match schema {
        Json::Array(branches) => {
            for branch in branches {
                collect_named(branch, namespace, named);
            }
        }
        Json::Object(object) => {
            let namespace = object.get("namespace").and_then(Json::as_str).or(namespace);
            if let Some(name) = object.get("name").and_then(Json::as_str)
                && matches!(
                    object.get("type").and_then(Json::as_str),
                    Some("record" | "enum" | "fixed")
                )
            {
                named.insert(name.to_owned(), schema.clone());
                if let Some(namespace) = namespace {
                    named.insert(format!("{namespace}.{name}"), schema.clone());
                }
            }
            if let Some(fields) = object.get("fields").and_then(Json::as_array) {
                for field in fields {
                    if let Some(field_type) = field.get("type") {
                        collect_named(field_type, namespace, named);
                    }
                }
            }
            for key in ["items", "values"] {
                if let Some(inner) = object.get(key) {
                    collect_named(inner, namespace, named);
                }
            }
            if let Some(inner @ (Json::Object(_) | Json::Array(_))) = object.get("type") {
                collect_named(inner, namespace, named);
            }
        }
        _ => {}
    }
}

/// Follows a reference to a named type; anything else is itself.
fn resolve<'a>(schema: &'a Json, named: &'a HashMap<String, Json>) -> &'a Json {
    match schema {
        Json::String(name) => named.get(name).unwrap_or(schema),
        Json::Object(object) if object.get("type").is_some_and(Json::is_object) => {
            resolve(&object["type"], named)
        }
        _ => schema,
    }
}

fn connect_schema(schema: &Json, named: &HashMap<String, Json>) -> Json {
    let schema = resolve(schema, named);
    match schema {
        Json::Array(branches) => {
            let non_null: Vec<&Json> = branches.iter().filter(|b| *b != "null").collect();
            let mut inner = match non_null.as_slice() {
                [only] => connect_schema(only, named),
                _ => json!({"type": "struct"}),
            };
            inner["optional"] = json!(non_null.len() < branches.len());
            inner
        }
        Json::String(primitive) => json!({"type": connect_primitive(primitive), "optional": false}),
        Json::Object(object) => {
            let kind = object
                .get("type")
                .and_then(Json::as_str)
                .unwrap_or("string");
            let mut out = Map::new();
            let connect_type = object
                .get("connect.type")
                .and_then(Json::as_str)
                .map(str::to_owned);
            match kind {
                "record" => {
                    out.insert("type".into(), json!("struct"));
                    let fields: Vec<Json> = object
                        .get("fields")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .map(|field| {
                            let mut member =
                                connect_schema(field.get("type").unwrap_or(&Json::Null), named);
                            member["field"] = field.get("name").cloned().unwrap_or(Json::Null);
                            member
                        })
                        .collect();
                    out.insert("fields".into(), Json::Array(fields));
                }
                "array" => {
                    out.insert("type".into(), json!("array"));
                    out.insert(
                        "items".into(),
                        connect_schema(object.get("items").unwrap_or(&Json::Null), named),
                    );
                }
                "map" => {
                    out.insert("type".into(), json!("map"));
                }
                "enum" => {
                    out.insert("type".into(), json!("string"));
                }
                primitive => {
                    out.insert(
                        "type".into(),
                        json!(
                            connect_type
                                .as_deref()
                                .unwrap_or(connect_primitive(primitive))
                        ),
                    );
                }
            }
            out.insert("optional".into(), json!(false));
            if let Some(name) = object.get("connect.name") {
                out.insert("name".into(), name.clone());
            }
            if let Some(parameters) = object.get("connect.parameters") {
                out.insert("parameters".into(), parameters.clone());
            }
            Json::Object(out)
        }
        _ => json!({"type": "string", "optional": true}),
    }
}

fn connect_primitive(avro: &str) -> &str {
    match avro {
        "int" => "int32",
        "long" => "int64",
        "float" => "float",
        "double" => "double",
        "boolean" => "boolean",
        "bytes" | "fixed" => "bytes",
        _ => "string",
    }
}

fn payload(value: &Avro, schema: &Json, named: &HashMap<String, Json>) -> Json {
    let schema = resolve(schema, named);
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => json!(b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => json!(i),
        Avro::Long(l)
        | Avro::TimeMicros(l)
        | Avro::TimestampMillis(l)
        | Avro::TimestampMicros(l)
        | Avro::TimestampNanos(l)
        | Avro::LocalTimestampMillis(l)
        | Avro::LocalTimestampMicros(l)
        | Avro::LocalTimestampNanos(l) => json!(l),
        Avro::Float(f) => json!(f),
        Avro::Double(d) => json!(d),
        Avro::Bytes(bytes) | Avro::Fixed(_, bytes) => json!(STANDARD.encode(bytes)),
        Avro::Decimal(decimal) => <Vec<u8>>::try_from(decimal)
            .map(|bytes| json!(STANDARD.encode(bytes)))
            .unwrap_or(Json::Null),
        Avro::String(text) | Avro::Enum(_, text) => json!(text),
        Avro::Uuid(uuid) => json!(uuid.to_string()),
        Avro::Union(index, inner) => {
            let branch = schema
                .as_array()
                .and_then(|branches| branches.get(*index as usize))
                .unwrap_or(&Json::Null);
            payload(inner, branch, named)
        }
        Avro::Array(items) => {
            let item_schema = schema.get("items").unwrap_or(&Json::Null);
            Json::Array(
                items
                    .iter()
                    .map(|i| payload(i, item_schema, named))
                    .collect(),
            )
        }
        Avro::Map(entries) => {
            let value_schema = schema.get("values").unwrap_or(&Json::Null);
            Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), payload(v, value_schema, named)))
                    .collect(),
            )
        }
        Avro::Record(fields) => {
            let field_schemas = schema.get("fields").and_then(Json::as_array);
            Json::Object(
                fields
                    .iter()
                    .map(|(name, v)| {
                        let field_schema = field_schemas
                            .and_then(|fs| fs.iter().find(|f| f["name"] == *name.as_str()))
                            .and_then(|f| f.get("type"))
                            .unwrap_or(&Json::Null);
                        (name.clone(), payload(v, field_schema, named))
                    })
                    .collect(),
            )
        }
        other => json!(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = r#"{"type":"record","name":"Envelope","namespace":"db.public.t","fields":[
        {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
            {"name":"id","type":"int"},
            {"name":"rank","type":{"type":"int","connect.type":"int16"}},
            {"name":"balance","type":["null",{"type":"bytes","scale":2,"precision":10,"connect.version":1,
              "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
              "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}],"default":null},
            {"name":"joined","type":["null",{"type":"int","connect.version":1,"connect.name":"io.debezium.time.Date"}],"default":null}
        ]}],"default":null},
        {"name":"after","type":["null","Value"],"default":null},
        {"name":"op","type":"string"}]}"#;

    #[test]
    fn avro_becomes_connect_json() {
        let avro = Schema::parse_str(VALUE).expect("valid");
        let json: Json = serde_json::from_str(VALUE).expect("json");
        let mut named = HashMap::new();
        collect_named(&json, None, &mut named);
        let row = Avro::Record(vec![
            ("id".into(), Avro::Int(7)),
            ("rank".into(), Avro::Int(2)),
            (
                "balance".into(),
                Avro::Union(1, Box::new(Avro::Decimal(vec![0x04, 0xE2].into()))),
            ),
            ("joined".into(), Avro::Union(1, Box::new(Avro::Int(19782)))),
        ]);
        let value = Avro::Record(vec![
            ("before".into(), Avro::Union(0, Box::new(Avro::Null))),
            ("after".into(), Avro::Union(1, Box::new(row))),
            ("op".into(), Avro::String("c".into())),
        ]);
        let mut datum = Vec::new();
        apache_avro::writer::datum::GenericDatumWriter::builder(&avro)
            .build()
            .expect("a writer")
            .write_value_ref(&mut datum, &value)
            .expect("encodes");
        let decoded = read_datum(&avro, &mut datum.as_slice()).expect("decodes");
        assert_eq!(
            payload(&decoded, &json, &named),
            json!({"before": null, "after": {"id": 7, "rank": 2, "balance": "BOI=", "joined": 19782}, "op": "c"})
        );
        let schema = connect_schema(&json, &named);
        let after = &schema["fields"][1];
        assert_eq!(after["optional"], json!(true));
        assert_eq!(after["fields"][1]["type"], json!("int16"));
        assert_eq!(
            after["fields"][2]["name"],
            json!("org.apache.kafka.connect.data.Decimal")
        );
        assert_eq!(after["fields"][2]["parameters"]["scale"], json!("2"));
        assert_eq!(after["fields"][2]["optional"], json!(true));
        assert_eq!(after["fields"][3]["name"], json!("io.debezium.time.Date"));
    }
}
