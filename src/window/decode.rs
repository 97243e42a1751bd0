//! Debezium change records (Connect JSON documents, as the sink reads them) into the engine's
//! changes: the kind, the row key, and for each image its event time, group key and aggregate
//! inputs, typed by the record's Connect schema.

use std::{collections::HashMap, str::FromStr};

use bigdecimal::BigDecimal;
use serde_json::{Map, Value as Json};

use super::{
    aggregate::Value,
    config::{EventTimeField, WindowAggregateConfig},
    engine::{ChangeInput, ChangeKind, Contribution, ImageProblem},
    time::{Micros, event_time},
};
use crate::sink::postgres::{
    record::Document,
    types::{Cell, FieldSchema, Unchanged, cell},
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
}

impl Decoder {
    pub fn new(config: &WindowAggregateConfig) -> Self {
        Self {
            event_time: config.event_time.clone(),
            group_by: config.group_by.clone(),
            inputs: config
                .input_columns()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            unchanged: Unchanged::default(),
            types: HashMap::new(),
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
        let op = payload.get("op").and_then(Json::as_str).map(str::to_owned);
        let source = payload.remove("source").unwrap_or(Json::Null);
        let (kind, before, after, before_schema, after_schema) = match op.as_deref() {
            Some(op) => {
                let kind = match op {
                    "c" | "r" => ChangeKind::Insert,
                    "u" => ChangeKind::Update,
                    "d" => ChangeKind::Delete,
                    "m" => return Ok(Decoded::Ignored),
                    "t" => return Err(DecodeError::Truncate),
                    other => {
                        return Err(DecodeError::Shape(format!(
                            "op {other:?} is not a Debezium operation"
                        )));
                    }
                };
                let field = |name: &str| schema.as_ref().and_then(|s| s.field(name)).cloned();
                (
                    kind,
                    payload.remove("before"),
                    payload.remove("after"),
                    field("before"),
                    field("after"),
                )
            }
            // A flattened record (ExtractNewRecordState): the value is the row.
            None => (
                ChangeKind::Insert,
                None,
                Some(Json::Object(payload)),
                None,
                schema,
            ),
        };
        let source_time = source_time(&source);
        let in_snapshot = op.as_deref() == Some("r")
            && source.get("snapshot").and_then(Json::as_str) != Some("last");
        let position = source
            .get("sequence")
            .and_then(Json::as_str)
            .and_then(parse_sequence);
        let row_key = key.and_then(|k| match k.payload {
            Json::Null => None,
            payload => Some(payload.to_string().into_boxed_str()),
        });

        self.note_types(after_schema.as_deref());
        let after = match after {
            Some(Json::Object(row)) => Some(self.image(&row, after_schema.as_deref(), source_time)),
            _ => None,
        };
        // A `before` image is usable only with the event time in it (a key-only image of
        // REPLICA IDENTITY DEFAULT has none), and never for source.ts_ms, whose value belongs
        // to this event, not to the image's own.
        let before = match (before, &self.event_time) {
            (Some(Json::Object(row)), EventTimeField::Column(column))
                if row.get(column).is_some_and(|v| !v.is_null()) =>
            {
                Some(self.image(&row, before_schema.as_deref(), source_time))
            }
            _ => None,
        };
        let time = after
            .as_ref()
            .or(before.as_ref())
            .and_then(|image| image.as_ref().ok())
            .map(|c| c.time);
        Ok(Decoded::Change {
            change: ChangeInput {
                kind,
                row_key,
                before,
                after,
                position,
            },
            time,
            in_snapshot,
        })
    }

    fn image(
        &self,
        row: &Map<String, Json>,
        schema: Option<&FieldSchema>,
        source_time: Option<Micros>,
    ) -> Result<Contribution, ImageProblem> {
        let field_schema = |name: &str| schema.and_then(|s| s.field(name)).map(|s| &**s);
        let time = match &self.event_time {
            EventTimeField::SourceTimestamp => source_time.ok_or(ImageProblem::InvalidEventTime)?,
            EventTimeField::Column(column) => event_time(row.get(column), field_schema(column))
                .map_err(|_| ImageProblem::InvalidEventTime)?,
        };
        let value = |name: &String| self.value(name, row.get(name), field_schema(name));
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

    /// A field as a typed value: integers, exact decimals and booleans by their schema; other
    /// semantic types (timestamps, UUIDs, …) as PostgreSQL text.
    fn value(&self, name: &str, json: Option<&Json>, schema: Option<&FieldSchema>) -> Value {
        let Some(json) = json.filter(|j| !j.is_null()) else {
            return Value::Null;
        };
        let semantic = schema.and_then(|s| s.name.as_deref());
        let kind = schema.map(|s| s.kind.as_str());
        let text = || match cell(name, json, schema, &self.unchanged) {
            Ok(Cell::Text(text)) => Some(text),
            // An unchanged TOASTed value or one that cannot be read counts as NULL.
            _ => None,
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

/// `source.ts_us`, else `source.ts_ms`, in microseconds.
fn source_time(source: &Json) -> Option<Micros> {
    source.get("ts_us").and_then(Json::as_i64).or_else(|| {
        source
            .get("ts_ms")
            .and_then(Json::as_i64)
            .map(|ms| ms * 1000)
    })
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
}
