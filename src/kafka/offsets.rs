//! The source offset store: where a source connector records, inside each Kafka transaction, how
//! far it has delivered, and where it reads that back on restart.
//!
//! Records follow Kafka Connect's offsets topic format for Debezium (key
//! `["<connector>",{"server":"<topic prefix>"}]`, value a JSON object) on a compacted topic, so the
//! newest record per key is the connector's position and Connect-style tooling can read it.
//!
//! Contract: the offset record is the last record of the producer transaction that carries the
//! change events it covers. Read back with `read_committed`, it therefore names exactly the last
//! PostgreSQL transaction whose events are durably in Kafka; an aborted or still-open transaction
//! never moves it. Nothing upstream (the slot's flushed LSN) may be acknowledged before that
//! transaction has committed.

use std::{collections::HashMap, time::Duration};

use rdkafka::Message;
use serde::{Deserialize, Serialize};

use super::{
    ClientSettings, Error,
    compacted::{self, StateRole},
};

/// Offsets topic name when the worker configuration names none (Kafka Connect uses
/// `connect-offsets`).
pub const DEFAULT_OFFSETS_TOPIC: &str = "tributary-offsets";

/// What the topic holds, for the shared state-topic errors.
const ROLE: StateRole = StateRole::Offsets;

/// Offset of a source connector, Debezium-compatible in spirit: what was last delivered.
///
/// Field names follow Debezium's PostgreSQL offsets. Unknown fields are ignored on read, so an
/// offset written by a newer version (or by Debezium) still loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    /// End LSN of the Commit of the last PostgreSQL transaction delivered (as a `u64`); streaming
    /// resumes after it and drops every transaction whose commit end LSN is not greater.
    pub lsn: u64,
    /// LSN of that transaction's Commit record (pgoutput's `commit_lsn`); absent for offsets that
    /// do not close a transaction, such as a snapshot's consistent point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn_commit: Option<u64>,
    /// PostgreSQL transaction id of that transaction, when known.
    #[serde(rename = "txId", default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<u32>,
    /// Commit time of that transaction, microseconds since the Unix epoch.
    pub ts_usec: i64,
    /// Whether the initial snapshot has finished; offsets written before the snapshot feature
    /// existed only ever came from streaming, hence the default.
    #[serde(default = "snapshot_completed_default")]
    pub snapshot_completed: bool,
}

const fn snapshot_completed_default() -> bool {
    true
}

/// One record to add to a producer transaction, after the change events it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Writes (as records for the caller's transaction) and reads source offsets on one compacted topic.
#[derive(Clone)]
pub struct OffsetStore {
    topic: String,
    partitions: i32,
    settings: ClientSettings,
}

impl std::fmt::Debug for OffsetStore {
    // Client settings may carry credentials in their overrides; leave them out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetStore")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl OffsetStore {
    /// A store on `topic` with one partition (as Debezium and Connect recommend for small setups).
    pub fn new(settings: &ClientSettings, topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            partitions: 1,
            settings: settings.clone(),
        }
    }

    /// The number of partitions `ensure_topic` creates the topic with; an existing topic keeps its own.
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Creates the compacted topic when missing. An existing topic must be compacted only: with
    /// `delete` in its cleanup policy, offsets would vanish after the retention time and the
    /// connector would lose its position.
    pub async fn ensure_topic(&self) -> Result<(), Error> {
        compacted::ensure_compacted_topic(&self.settings, ROLE, &self.topic, self.partitions)
            .await
            .map_err(offsets_error)
    }

    /// The record that stores `offset` for `connector`, whose topics are prefixed `server`. Send it
    /// as the last record of the producer transaction holding the events it covers.
    pub fn record(&self, connector: &str, server: &str, offset: &SourceOffset) -> OffsetRecord {
        OffsetRecord {
            topic: self.topic.clone(),
            key: offset_key(connector, server).to_string().into_bytes(),
            // Integers, booleans and options: serialising cannot fail.
            value: serde_json::to_vec(offset).expect("a SourceOffset always serialises"),
        }
    }

    /// Writes `offset` for (`connector`, `server`) on its own, outside any source transaction,
    /// or a tombstone (a reset) when None; durable when it returns. For operators (the REST
    /// offsets endpoints) while the connector is stopped.
    pub async fn write(
        &self,
        connector: &str,
        server: &str,
        offset: Option<&SourceOffset>,
    ) -> Result<(), Error> {
        use rdkafka::producer::FutureRecord;
        let timeout = Duration::from_secs(30);
        let producer = super::idempotent_producer(&self.settings, timeout)?;
        let key = offset_key(connector, server).to_string();
        let value =
            offset.map(|o| serde_json::to_vec(o).expect("a SourceOffset always serialises"));
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(&key);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        producer
            .send(record, timeout)
            .await
            .map_err(|(source, _)| Error::WriteStateTopic {
                topic: self.topic.clone(),
                key: key.clone(),
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Reads the topic from the beginning to its end (`read_committed`, so up to the last stable
    /// offset) and returns the newest offset for (`connector`, `server`), or `None` when there is
    /// none or the newest record is a tombstone (a reset).
    ///
    /// Records of aborted or still-open transactions are never returned. The whole read, metadata
    /// included, is bounded by `timeout`; not reaching the end in time is an error rather than a
    /// possibly stale answer. Only the newest record for the key is decoded: an older, superseded
    /// record that is not valid JSON does not matter for the position and is left to compaction.
    pub async fn load(
        &self,
        connector: &str,
        server: &str,
        timeout: Duration,
    ) -> Result<Option<SourceOffset>, Error> {
        let wanted = offset_key(connector, server);
        let key = wanted.to_string();
        let settings = self.settings.clone();
        let topic = self.topic.clone();
        // librdkafka's consumer calls block; keep them off the async workers.
        let newest =
            tokio::task::spawn_blocking(move || read_newest(&settings, &topic, &wanted, timeout))
                .await
                .expect("reading the offsets topic does not panic")?;
        let Some(found) = newest else {
            return Ok(None);
        };
        let Some(value) = found.value else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|err| Error::CorruptOffset {
                topic: self.topic.clone(),
                partition: found.partition,
                offset: found.offset,
                key,
                reason: err.to_string(),
            })
    }
}

/// Kafka Connect's offset key for a Debezium source: the connector name and its source partition.
fn offset_key(connector: &str, server: &str) -> serde_json::Value {
    serde_json::json!([connector, { "server": server }])
}

/// The newest record with the wanted key in one partition.
#[derive(Debug)]
struct Found {
    partition: i32,
    offset: i64,
    timestamp: i64,
    /// `None` for a tombstone.
    value: Option<Vec<u8>>,
}

fn read_newest(
    settings: &ClientSettings,
    topic: &str,
    wanted: &serde_json::Value,
    timeout: Duration,
) -> Result<Option<Found>, Error> {
    let mut newest: HashMap<i32, Found> = HashMap::new();
    compacted::replay(settings, ROLE, topic, timeout, |message| {
        if is_wanted(message.key(), wanted) {
            let partition = message.partition();
            newest.insert(
                partition,
                Found {
                    partition,
                    offset: message.offset(),
                    timestamp: message.timestamp().to_millis().unwrap_or(i64::MIN),
                    value: message.payload().map(<[u8]>::to_vec),
                },
            );
        }
    })
    .map_err(offsets_error)?;
    // A key normally lives in one partition; should a change of partitioner have spread it, the
    // record written last wins.
    Ok(newest
        .into_values()
        .max_by_key(|found| (found.timestamp, found.partition)))
}

/// The shared state-topic errors, in the offset store's own terms (and advice).
fn offsets_error(err: Error) -> Error {
    match err {
        Error::StateTopicMissing { topic, .. } => Error::OffsetTopicMissing { topic },
        Error::StateTopicNotCompacted { topic, policy, .. } => {
            Error::OffsetTopicNotCompacted { topic, policy }
        }
        Error::ReadStateTopic { topic, source, .. } => Error::LoadOffsets { topic, source },
        Error::ReadStateTopicTimedOut {
            topic,
            partitions,
            timeout,
            ..
        } => Error::LoadOffsetsTimedOut {
            topic,
            partitions,
            timeout,
        },
        other => other,
    }
}

/// Keys are compared as JSON, so a key Kafka Connect wrote (other spacing) matches too; keys that
/// are not JSON belong to someone else and are skipped.
fn is_wanted(key: Option<&[u8]>, wanted: &serde_json::Value) -> bool {
    key.and_then(|key| serde_json::from_slice::<serde_json::Value>(key).ok())
        .is_some_and(|key| &key == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> OffsetStore {
        OffsetStore::new(&ClientSettings::new("127.0.0.1:9"), DEFAULT_OFFSETS_TOPIC)
    }

    fn offset() -> SourceOffset {
        SourceOffset {
            lsn: 0x16_B374_D848,
            lsn_commit: Some(0x16_B374_D800),
            tx_id: Some(771),
            ts_usec: 1_700_000_000_123_456,
            snapshot_completed: true,
        }
    }

    #[test]
    fn record_key_is_connects_offset_key_for_debezium() {
        let record = store().record("inventory", "dbserver1", &offset());
        assert_eq!(record.topic, "tributary-offsets");
        assert_eq!(
            std::str::from_utf8(&record.key).expect("UTF-8"),
            r#"["inventory",{"server":"dbserver1"}]"#
        );
    }

    #[test]
    fn record_key_escapes_names() {
        let record = store().record("a\"b", "x\\y", &offset());
        let key: serde_json::Value = serde_json::from_slice(&record.key).expect("JSON");
        assert_eq!(key, serde_json::json!(["a\"b", {"server": "x\\y"}]));
    }

    #[test]
    fn record_value_uses_debezium_field_names() {
        let record = store().record("inventory", "dbserver1", &offset());
        let value: serde_json::Value = serde_json::from_slice(&record.value).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({
                "lsn": 0x16_B374_D848_u64,
                "lsn_commit": 0x16_B374_D800_u64,
                "txId": 771,
                "ts_usec": 1_700_000_000_123_456_i64,
                "snapshot_completed": true,
            })
        );
    }

    #[test]
    fn absent_optional_fields_are_left_out_and_read_back_as_none() {
        let offset = SourceOffset {
            lsn_commit: None,
            tx_id: None,
            snapshot_completed: false,
            ..offset()
        };
        let json = serde_json::to_value(&offset).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"lsn": 0x16_B374_D848_u64, "ts_usec": 1_700_000_000_123_456_i64, "snapshot_completed": false})
        );
        let back: SourceOffset = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, offset);
    }

    #[test]
    fn round_trips_through_json() {
        let record = store().record("c", "s", &offset());
        let back: SourceOffset = serde_json::from_slice(&record.value).expect("reads back");
        assert_eq!(back, offset());
    }

    #[test]
    fn unknown_fields_are_tolerated_and_snapshot_completed_defaults_to_true() {
        // Shaped like a Debezium PostgreSQL offset, plus a field from some future version.
        let json = r#"{"transaction_id":null,"lsn_proc":97,"messageType":"INSERT","lsn_commit":96,
                       "lsn":97,"txId":555,"ts_usec":1700000000000000,"future_field":{"x":[1]}}"#;
        let offset: SourceOffset = serde_json::from_str(json).expect("tolerant read");
        assert_eq!(
            offset,
            SourceOffset {
                lsn: 97,
                lsn_commit: Some(96),
                tx_id: Some(555),
                ts_usec: 1_700_000_000_000_000,
                snapshot_completed: true,
            }
        );
    }

    #[test]
    fn missing_lsn_or_wrong_types_are_rejected() {
        assert!(serde_json::from_str::<SourceOffset>(r#"{"ts_usec":1}"#).is_err());
        assert!(serde_json::from_str::<SourceOffset>(r#"{"lsn":"0/1","ts_usec":1}"#).is_err());
        assert!(serde_json::from_str::<SourceOffset>(r#"{"lsn":-1,"ts_usec":1}"#).is_err());
    }

    #[test]
    fn keys_match_as_json_not_as_bytes() {
        let wanted = offset_key("inventory", "dbserver1");
        assert!(is_wanted(
            Some(br#"[ "inventory", { "server" : "dbserver1" } ]"#),
            &wanted
        ));
        assert!(!is_wanted(
            Some(br#"["inventory",{"server":"dbserver2"}]"#),
            &wanted
        ));
        assert!(!is_wanted(
            Some(br#"["other",{"server":"dbserver1"}]"#),
            &wanted
        ));
        assert!(!is_wanted(Some(b"not json"), &wanted));
        assert!(!is_wanted(None, &wanted));
    }

    #[test]
    fn store_debug_leaves_settings_out() {
        let mut settings = ClientSettings::new("broker:9092");
        settings
            .overrides
            .push(("sasl.password".to_owned(), "hunter2".to_owned()));
        let printed = format!("{:?}", OffsetStore::new(&settings, "t").with_partitions(3));
        assert!(printed.contains("\"t\"") && printed.contains('3'));
        assert!(!printed.contains("hunter2"));
    }
}
