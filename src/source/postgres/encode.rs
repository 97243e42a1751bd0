//! Record keys and values in the connector's converters: Kafka Connect's JSON, or Avro in
//! Confluent's wire format with the schema ids of a registry. One event model, two encoders.

use std::{collections::HashMap, sync::Arc};

use serde_json::json;

use super::Error;
use crate::{
    config::{Converter, PostgresSourceConfig},
    event::{RowChange, SourceInfo, TableSchema},
    format::{
        ConnectorContext,
        avro::{AvroEncoder, AvroOptions, SideFields, SideRecordKind},
        json::{JsonEncoder, JsonOptions, TransactionBlock},
        registry_client::RegistryClient,
    },
    kafka::OwnedRecord,
};

/// The encoders of one task.
#[derive(Debug)]
pub(super) struct RecordEncoder {
    key: Side,
    value: Side,
    /// The last key's length: room left after a value for the key that follows it.
    key_room: usize,
}

#[derive(Debug)]
enum Side {
    // Boxed: both are large, and a task holds two. The flag is `schemas.enable`.
    Json(Box<JsonEncoder>, bool),
    Avro(Box<AvroSide>),
}

/// A table as last registered on one side, with that side's schema and id (None: no key).
type Registered = (Arc<TableSchema>, Option<(Arc<str>, u32)>);

/// An Avro encoder and the ids its current schemas have in the registry.
#[derive(Debug)]
struct AvroSide {
    encoder: AvroEncoder,
    registry: RegistryClient,
    /// Per relation: the table as last registered, and its schema and id.
    ids: HashMap<u32, Registered>,
    /// The logical decoding message schema's id.
    message_id: Option<u32>,
    /// The side records' schema ids, by kind.
    side_ids: HashMap<SideRecordKind, u32>,
}

impl RecordEncoder {
    pub(super) fn new(config: &PostgresSourceConfig) -> Self {
        let context = ConnectorContext::new(&config.topic_prefix, &config.dbname);
        let side = |converter: &Converter| match converter {
            Converter::Json { schemas_enable } => Side::Json(
                Box::new(JsonEncoder::new(
                    JsonOptions {
                        schemas_enable: *schemas_enable,
                        decimal_handling: config.decimal_handling,
                        time_precision: config.time_precision,
                        binary_handling: config.binary_handling,
                        unavailable_value_placeholder: config.unavailable_value_placeholder.clone(),
                        money_fraction_digits: config.money_fraction_digits,
                    },
                    context.clone(),
                )),
                *schemas_enable,
            ),
            Converter::Avro(registry) => Side::Avro(Box::new(AvroSide {
                encoder: AvroEncoder::new(
                    AvroOptions {
                        decimal_handling: config.decimal_handling,
                        time_precision: config.time_precision,
                        binary_handling: config.binary_handling,
                        unavailable_value_placeholder: config.unavailable_value_placeholder.clone(),
                        money_fraction_digits: config.money_fraction_digits,
                    },
                    context.clone(),
                ),
                registry: RegistryClient::new(registry),
                ids: HashMap::new(),
                message_id: None,
                side_ids: HashMap::new(),
            })),
        };
        Self {
            key: side(&config.key_converter),
            value: side(&config.value_converter),
            key_room: 0,
        }
    }

    /// Registers the schemas of `table`'s records on `topic` when they are new (Avro only):
    /// call before encoding its events. A changed table gets its new schemas here.
    pub(super) async fn prepare(
        &mut self,
        table: &Arc<TableSchema>,
        topic: &str,
    ) -> Result<(), Error> {
        if let Side::Avro(side) = &mut self.key {
            let schema = side.encoder.key_schema(table);
            side.register(table, schema, &format!("{topic}-key"))
                .await?;
        }
        if let Side::Avro(side) = &mut self.value {
            let schema = Some(side.encoder.value_schema(table));
            side.register(table, schema, &format!("{topic}-value"))
                .await?;
        }
        Ok(())
    }

    /// A row change's value and key, in one buffer (the key after the value) as the producer
    /// takes them.
    pub(super) fn record(
        &mut self,
        change: &RowChange,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
    ) -> Result<OwnedRecord, Error> {
        let mut bytes = match &mut self.value {
            Side::Json(json, _) => json
                .value_with_room(change, processed_at_micros, transaction, self.key_room)
                .map_err(Error::Encode)?,
            Side::Avro(side) => {
                let id = side.id(&change.table)?;
                side.encoder
                    .value(change, processed_at_micros, transaction, id)
                    .map_err(Error::Encode)?
            }
        };
        let value_len = bytes.len();
        let keyed = match &mut self.key {
            Side::Json(json, _) => json.key_into(change, &mut bytes).map_err(Error::Encode)?,
            Side::Avro(_) => match self.key(change)? {
                Some(key) => {
                    bytes.extend_from_slice(&key);
                    true
                }
                None => false,
            },
        };
        let key_len = bytes.len() - value_len;
        self.key_room = key_len;
        Ok(OwnedRecord::from_value_then_key(
            bytes,
            keyed.then_some(key_len),
        ))
    }

    pub(super) fn key(&mut self, change: &RowChange) -> Result<Option<Vec<u8>>, Error> {
        match &mut self.key {
            Side::Json(json, _) => json.key(change).map_err(Error::Encode),
            Side::Avro(side) => {
                let id = side.id(&change.table)?;
                side.encoder.key(change, id).map_err(Error::Encode)
            }
        }
    }

    pub(super) fn truncate_value(
        &mut self,
        table: &Arc<TableSchema>,
        source: &SourceInfo,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
    ) -> Result<Vec<u8>, Error> {
        match &mut self.value {
            Side::Json(json, _) => {
                Ok(json.truncate_value(table, source, processed_at_micros, transaction))
            }
            Side::Avro(side) => {
                let id = side.id(table)?;
                side.encoder
                    .truncate_value(table, source, processed_at_micros, transaction, id)
                    .map_err(Error::Encode)
            }
        }
    }

    /// Registers the logical decoding message schemas for `topic` (Avro only).
    pub(super) async fn prepare_messages(&mut self, topic: &str) -> Result<(), Error> {
        for (side, suffix) in [(&mut self.key, "key"), (&mut self.value, "value")] {
            if let Side::Avro(avro) = side
                && avro.message_id.is_none()
            {
                let schema = if suffix == "key" {
                    avro.encoder.message_key_schema()
                } else {
                    avro.encoder.message_value_schema()
                };
                let subject = format!("{topic}-{suffix}");
                avro.message_id = Some(avro.register_schema(&subject, &schema).await?);
            }
        }
        Ok(())
    }

    pub(super) fn message_key(&mut self, prefix: &str) -> Result<Vec<u8>, Error> {
        match &self.key {
            Side::Json(json, _) => Ok(json.message_key(prefix)),
            Side::Avro(side) => side
                .encoder
                .message_key(prefix, side.message_id.unwrap_or_default())
                .map_err(Error::Encode),
        }
    }

    pub(super) fn message_value(
        &mut self,
        prefix: &str,
        content: &[u8],
        source: &SourceInfo,
        processed_at_micros: i64,
        transaction: Option<&TransactionBlock>,
    ) -> Result<Vec<u8>, Error> {
        match &self.value {
            Side::Json(json, _) => {
                Ok(json.message_value(prefix, content, source, processed_at_micros, transaction))
            }
            Side::Avro(side) => side
                .encoder
                .message_value(
                    prefix,
                    content,
                    source,
                    processed_at_micros,
                    transaction,
                    side.message_id.unwrap_or_default(),
                )
                .map_err(Error::Encode),
        }
    }
}

/// One transaction metadata record (`BEGIN` or `END`).
#[derive(Debug)]
pub(super) struct TransactionMarker {
    pub status: &'static str,
    /// `<xid>:<commit LSN>`.
    pub id: String,
    pub ts_ms: i64,
    pub event_count: Option<i64>,
    pub data_collections: Option<Vec<(String, i64)>>,
}

impl RecordEncoder {
    /// A heartbeat's key and value for `topic`: `{serverName}` and `{ts_ms}`.
    pub(super) async fn heartbeat(
        &mut self,
        topic: &str,
        server_name: &str,
        ts_ms: i64,
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let key = side_record(
            &mut self.key,
            topic,
            "key",
            SideRecordKind::HeartbeatKey,
            SideFields::Name(server_name),
            || json!({"serverName": server_name}),
        )
        .await?;
        let value = side_record(
            &mut self.value,
            topic,
            "value",
            SideRecordKind::HeartbeatValue,
            SideFields::Heartbeat { ts_ms },
            || json!({"ts_ms": ts_ms}),
        )
        .await?;
        Ok((key, value))
    }

    /// A transaction metadata record's key and value for `topic`.
    pub(super) async fn transaction_marker(
        &mut self,
        topic: &str,
        marker: &TransactionMarker,
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let key = side_record(
            &mut self.key,
            topic,
            "key",
            SideRecordKind::TransactionKey,
            SideFields::Name(&marker.id),
            || json!({"id": marker.id}),
        )
        .await?;
        let value = side_record(
            &mut self.value,
            topic,
            "value",
            SideRecordKind::TransactionValue,
            SideFields::Transaction {
                status: marker.status,
                id: &marker.id,
                event_count: marker.event_count,
                data_collections: marker.data_collections.as_deref(),
                ts_ms: marker.ts_ms,
            },
            || {
                let collections = marker.data_collections.as_ref().map(|collections| {
                    collections
                        .iter()
                        .map(|(table, count)| json!({"data_collection": table, "event_count": count}))
                        .collect::<Vec<_>>()
                });
                json!({
                    "status": marker.status, "id": marker.id, "event_count": marker.event_count,
                    "data_collections": collections, "ts_ms": marker.ts_ms,
                })
            },
        )
        .await?;
        Ok((key, value))
    }
}

/// A side record on one side: JSON (with its Connect schema when schemas are on) or Avro
/// (its schema registered under `<topic>-<suffix>` the first time).
async fn side_record(
    side: &mut Side,
    topic: &str,
    suffix: &str,
    kind: SideRecordKind,
    fields: SideFields<'_>,
    payload: impl FnOnce() -> serde_json::Value,
) -> Result<Vec<u8>, Error> {
    match side {
        Side::Json(_, schemas_enable) => {
            let payload = payload();
            let document = if *schemas_enable {
                json!({"schema": side_json_schema(kind), "payload": payload})
            } else {
                payload
            };
            Ok(serde_json::to_vec(&document).unwrap_or_default())
        }
        Side::Avro(avro) => {
            let id = match avro.side_ids.get(&kind) {
                Some(id) => *id,
                None => {
                    let schema = avro.encoder.side_schema(kind);
                    let id = avro
                        .register_schema(&format!("{topic}-{suffix}"), &schema)
                        .await?;
                    avro.side_ids.insert(kind, id);
                    id
                }
            };
            avro.encoder
                .side_record(kind, fields, id)
                .map_err(Error::Encode)
        }
    }
}

/// The JsonConverter schemas of the side records, as Debezium writes them.
fn side_json_schema(kind: SideRecordKind) -> serde_json::Value {
    match kind {
        SideRecordKind::HeartbeatKey => {
            json!({"type": "struct", "fields": [{"type": "string", "optional": false, "field": "serverName"}],
                                               "optional": false, "name": "io.debezium.connector.common.ServerNameKey"})
        }
        SideRecordKind::HeartbeatValue => {
            json!({"type": "struct", "fields": [{"type": "int64", "optional": false, "field": "ts_ms"}],
                                                 "optional": false, "name": "io.debezium.connector.common.Heartbeat"})
        }
        SideRecordKind::TransactionKey => {
            json!({"type": "struct", "fields": [{"type": "string", "optional": false, "field": "id"}],
                                                 "optional": false, "name": "io.debezium.connector.common.TransactionMetadataKey"})
        }
        SideRecordKind::TransactionValue => json!({"type": "struct", "fields": [
            {"type": "string", "optional": false, "field": "status"},
            {"type": "string", "optional": false, "field": "id"},
            {"type": "int64", "optional": true, "field": "event_count"},
            {"type": "array", "items": {"type": "struct", "fields": [
                {"type": "string", "optional": false, "field": "data_collection"},
                {"type": "int64", "optional": false, "field": "event_count"}], "optional": false},
             "optional": true, "field": "data_collections"},
            {"type": "int64", "optional": false, "field": "ts_ms"}],
            "optional": false, "name": "io.debezium.connector.common.TransactionMetadataValue"}),
    }
}

impl AvroSide {
    async fn register(
        &mut self,
        table: &Arc<TableSchema>,
        schema: Option<Arc<str>>,
        subject: &str,
    ) -> Result<(), Error> {
        let current = self.ids.get(&table.relation_id);
        let unchanged = match (current.map(|(_, entry)| entry), &schema) {
            (Some(Some((registered, _))), Some(schema)) => Arc::ptr_eq(registered, schema),
            (Some(None), None) => true,
            _ => false,
        };
        if unchanged {
            return Ok(());
        }
        let entry = match schema {
            Some(schema) => {
                let id = match self.registry.register(subject, &schema).await {
                    Ok(id) => id,
                    Err(source) => {
                        let previous = current.map(|(previous, _)| Arc::clone(previous));
                        return Err(refused(table, previous.as_deref(), source));
                    }
                };
                Some((schema, id))
            }
            None => None,
        };
        self.ids
            .insert(table.relation_id, (Arc::clone(table), entry));
        Ok(())
    }

    async fn register_schema(&self, subject: &str, schema: &str) -> Result<u32, Error> {
        self.registry
            .register(subject, schema)
            .await
            .map_err(|source| Error::SchemaRegistry {
                table: None,
                source,
            })
    }

    /// The id of `table`'s current schema on this side; [`RecordEncoder::prepare`] registered it.
    fn id(&self, table: &TableSchema) -> Result<u32, Error> {
        match self.ids.get(&table.relation_id).map(|(_, entry)| entry) {
            Some(Some((_, id))) => Ok(*id),
            // No key columns: the key is null and no id is written.
            Some(None) => Ok(0),
            None => Err(Error::Encode(crate::format::Error::AvroEncoding {
                subject: format!("{} (schema not registered before encoding)", table.id),
            })),
        }
    }
}

/// The registry's refusal, with what changed in the table since its last registered schema.
fn refused(
    table: &TableSchema,
    previous: Option<&TableSchema>,
    source: crate::format::registry_client::RegistryError,
) -> Error {
    let changes = previous
        .map(|previous| column_changes(previous, table))
        .unwrap_or_default();
    let table = if changes.is_empty() {
        table.id.to_string()
    } else {
        format!("{} ({})", table.id, changes.join(", "))
    };
    Error::SchemaRegistry {
        table: Some(table),
        source,
    }
}

/// Columns added, dropped or retyped between two versions of a table, in words.
fn column_changes(before: &TableSchema, after: &TableSchema) -> Vec<String> {
    let describe = |c: &crate::event::Column| {
        format!(
            "{}{}",
            c.pg_type.name,
            if c.optional { "" } else { " NOT NULL" }
        )
    };
    let mut changes = Vec::new();
    for column in &after.columns {
        match before.columns.iter().find(|c| c.name == column.name) {
            None => changes.push(format!(
                "column {} added as {}",
                column.name,
                describe(column)
            )),
            Some(old)
                if describe(old) != describe(column)
                    || old.type_modifier != column.type_modifier =>
            {
                changes.push(format!(
                    "column {} changed from {} to {}",
                    column.name,
                    describe(old),
                    describe(column)
                ));
            }
            Some(_) => {}
        }
    }
    for column in &before.columns {
        if !after.columns.iter().any(|c| c.name == column.name) {
            changes.push(format!("column {} dropped", column.name));
        }
    }
    changes
}
