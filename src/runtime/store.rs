//! The worker's durable state, on compacted Kafka topics: connector configs with their target
//! state (`tributary-configs`) and connector and task statuses (`tributary-status`). Source
//! offsets live on a third topic, in [`crate::kafka::OffsetStore`].
//!
//! Each write is one record, sent by an idempotent producer with `acks=all`, and a call returns
//! only once the broker has acknowledged it: what a call stored survives the worker being killed
//! right after. On start a worker replays each topic to its end (newest record per key wins, a
//! tombstone removes the key) and brings every connector back in its target state.
//!
//! Record keys and values (JSON):
//! - configs: `connector-<name>` → `{"config":{…},"target_state":"RUNNING"}`;
//! - statuses: `status-connector-<name>` and `status-task-<name>-<task>` →
//!   `{"state":"FAILED","trace":"…","worker_id":"host:port"}` (`trace` left out when there is none);
//!   `status-topic-<topic>:connector-<name>` → `{"topic":{"name":…,"connector":…,"task":0,
//!   "discoverTimestamp":<ms>}}`, the topics a connector writes to (Connect's active topics).
//!
//! Unknown fields are ignored on read and keys of other shapes are skipped, so records written by
//! a newer version or by other tools do not stop a worker. Only the newest record of a key is
//! decoded: a corrupt record that has been superseded does not matter and is left to compaction.
//!
//! Connector configs are stored as given, passwords included (Kafka Connect does the same); guard
//! the topic with ACLs. Config values never appear in `Debug` output or in errors.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use crate::kafka::{
    self, ClientSettings,
    compacted::{self, StateRole},
};

/// Configs topic name when the worker configuration names none (Kafka Connect uses
/// `connect-configs`).
pub const DEFAULT_CONFIGS_TOPIC: &str = "tributary-configs";

/// Status topic name when the worker configuration names none (Kafka Connect uses
/// `connect-status`).
pub const DEFAULT_STATUS_TOPIC: &str = "tributary-status";

/// How long a write may take, queueing and retries included, before it fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

const CONNECTOR_PREFIX: &str = "connector-";
const CONNECTOR_STATUS_PREFIX: &str = "status-connector-";
const TASK_STATUS_PREFIX: &str = "status-task-";
const TOPIC_STATUS_PREFIX: &str = "status-topic-";
const TOPIC_STATUS_SEPARATOR: &str = ":connector-";

/// What the user asked a connector to be doing; it survives restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetState {
    #[default]
    Running,
    Paused,
    Stopped,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Running => "RUNNING",
            TargetState::Paused => "PAUSED",
            TargetState::Stopped => "STOPPED",
        }
    }
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connector or task is doing, in Kafka Connect's terms (`AbstractStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Failed,
    Restarting,
    /// Connectors only: a stopped connector has no tasks.
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Failed => "FAILED",
            State::Restarting => "RESTARTING",
            State::Stopped => "STOPPED",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connector as stored: its configuration and its target state.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectorRecord {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub target_state: TargetState,
}

impl std::fmt::Debug for ConnectorRecord {
    // Config values may be passwords: show which keys are set, never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorRecord")
            .field("name", &self.name)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("target_state", &self.target_state)
            .finish()
    }
}

/// The value of a `connector-<name>` record, for writing.
#[derive(Serialize)]
struct ConnectorValueRef<'a> {
    config: &'a BTreeMap<String, String>,
    target_state: TargetState,
}

/// The value of a `connector-<name>` record, as read.
#[derive(Deserialize)]
struct ConnectorValue {
    config: BTreeMap<String, String>,
    /// Kafka Connect starts a connector that has no target state recorded.
    #[serde(default)]
    target_state: TargetState,
}

/// The status of a connector or of one of its tasks, as the worker running it reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub state: State,
    /// The error that made it FAILED (Connect's stack trace); left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// `host:port` of the REST listener of the worker that reported it.
    pub worker_id: String,
}

impl StatusRecord {
    pub fn new(state: State, worker_id: impl Into<String>) -> Self {
        Self {
            state,
            trace: None,
            worker_id: worker_id.into(),
        }
    }

    /// FAILED, with the error that caused it.
    pub fn failed(trace: impl Into<String>, worker_id: impl Into<String>) -> Self {
        Self {
            state: State::Failed,
            trace: Some(trace.into()),
            worker_id: worker_id.into(),
        }
    }
}

/// Every status on the status topic: the newest per connector and per task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub connectors: BTreeMap<String, StatusRecord>,
    /// Per connector, its tasks by number.
    pub tasks: BTreeMap<String, BTreeMap<u32, StatusRecord>>,
    /// Per connector, the topics it has written to.
    pub topics: BTreeMap<String, Vec<String>>,
}

/// The value of an active-topic record, in Connect's shape.
#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    topic: TopicStatus,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicStatus {
    name: String,
    connector: String,
    task: u32,
    #[serde(rename = "discoverTimestamp")]
    discover_timestamp: i64,
}

impl StatusSnapshot {
    pub fn connector(&self, name: &str) -> Option<&StatusRecord> {
        self.connectors.get(name)
    }

    pub fn task(&self, name: &str, task: u32) -> Option<&StatusRecord> {
        self.tasks.get(name).and_then(|tasks| tasks.get(&task))
    }
}

/// What can go wrong storing or loading worker state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(
        "the {role} record with key {key} at topic {topic} partition {partition} offset {offset} \
         is not valid ({reason}); write a valid record or a tombstone (null value) for that key"
    )]
    CorruptRecord {
        role: StateRole,
        topic: String,
        partition: i32,
        offset: i64,
        key: String,
        reason: String,
    },
}

impl StoreError {
    /// Whether the same call later may succeed (broker slow or unreachable), as opposed to a
    /// topic or record that someone has to fix.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Kafka(err) => err.is_transient(),
            StoreError::CorruptRecord { .. } => false,
        }
    }
}

/// One state topic: where to write, lazily with one producer shared by clones of the store.
#[derive(Clone)]
struct StateTopic {
    role: StateRole,
    topic: String,
    settings: ClientSettings,
    producer: Arc<Mutex<Option<FutureProducer>>>,
}

impl StateTopic {
    fn new(role: StateRole, settings: &ClientSettings, topic: String) -> Self {
        Self {
            role,
            topic,
            settings: settings.clone(),
            producer: Arc::new(Mutex::new(None)),
        }
    }

    async fn ensure(&self) -> Result<(), StoreError> {
        compacted::ensure_compacted_topic(&self.settings, self.role, &self.topic, 1).await?;
        Ok(())
    }

    fn producer(&self) -> Result<FutureProducer, StoreError> {
        // The producer is only cloned (an Arc) under the lock, never used across an await.
        let mut slot = self.producer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(producer) = slot.as_ref() {
            return Ok(producer.clone());
        }
        let producer = kafka::idempotent_producer(&self.settings, DELIVERY_TIMEOUT)?;
        *slot = Some(producer.clone());
        Ok(producer)
    }

    /// Writes one record (`None`: a tombstone) and waits until the broker has it.
    async fn write(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let producer = self.producer()?;
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map_err(|(source, _)| kafka::Error::WriteStateTopic {
                topic: self.topic.clone(),
                key: key.to_owned(),
                source: Box::new(source),
            })?;
        Ok(())
    }

    async fn read_latest(
        &self,
        timeout: Duration,
    ) -> Result<BTreeMap<Vec<u8>, compacted::LatestRecord>, StoreError> {
        Ok(compacted::read_latest(&self.settings, self.role, &self.topic, timeout).await?)
    }

    fn corrupt(&self, key: &str, record: &compacted::LatestRecord, reason: String) -> StoreError {
        StoreError::CorruptRecord {
            role: self.role,
            topic: self.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: key.to_owned(),
            reason,
        }
    }
}

impl std::fmt::Debug for StateTopic {
    // Client settings may carry credentials in their overrides; leave them out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTopic")
            .field("role", &self.role)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Connector configs and target states on one compacted topic.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    state: StateTopic,
}

impl ConfigStore {
    pub fn new(settings: &ClientSettings, topic: impl Into<String>) -> Self {
        Self {
            state: StateTopic::new(StateRole::Configs, settings, topic.into()),
        }
    }

    pub fn topic(&self) -> &str {
        &self.state.topic
    }

    /// Creates the topic (compacted, one partition) when missing; an existing topic must be
    /// compacted.
    pub async fn ensure_topic(&self) -> Result<(), StoreError> {
        self.state.ensure().await
    }

    /// Stores the connector's config and target state, replacing what was stored for that name.
    pub async fn put(&self, record: &ConnectorRecord) -> Result<(), StoreError> {
        let value = ConnectorValueRef {
            config: &record.config,
            target_state: record.target_state,
        };
        // Strings and an enum: serialising cannot fail.
        let value = serde_json::to_vec(&value).expect("a connector record always serialises");
        self.state
            .write(&connector_key(&record.name), Some(&value))
            .await
    }

    /// Removes the connector (a tombstone for its key).
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.state.write(&connector_key(name), None).await
    }

    /// Replays the topic to its end: every connector whose newest record is not a tombstone.
    pub async fn load(
        &self,
        timeout: Duration,
    ) -> Result<BTreeMap<String, ConnectorRecord>, StoreError> {
        let mut connectors = BTreeMap::new();
        for (key, record) in self.state.read_latest(timeout).await? {
            let Some(name) = utf8_key(&key).and_then(|key| key.strip_prefix(CONNECTOR_PREFIX))
            else {
                continue;
            };
            let Some(value) = &record.value else {
                continue;
            };
            let value: ConnectorValue = serde_json::from_slice(value).map_err(|err| {
                self.state
                    .corrupt(&lossy(&key), &record, config_error_reason(&err))
            })?;
            connectors.insert(
                name.to_owned(),
                ConnectorRecord {
                    name: name.to_owned(),
                    config: value.config,
                    target_state: value.target_state,
                },
            );
        }
        Ok(connectors)
    }
}

/// Connector and task statuses on one compacted topic.
#[derive(Debug, Clone)]
pub struct StatusStore {
    state: StateTopic,
}

impl StatusStore {
    pub fn new(settings: &ClientSettings, topic: impl Into<String>) -> Self {
        Self {
            state: StateTopic::new(StateRole::Status, settings, topic.into()),
        }
    }

    pub fn topic(&self) -> &str {
        &self.state.topic
    }

    /// Creates the topic (compacted, one partition) when missing; an existing topic must be
    /// compacted.
    pub async fn ensure_topic(&self) -> Result<(), StoreError> {
        self.state.ensure().await
    }

    pub async fn put_connector(&self, name: &str, status: &StatusRecord) -> Result<(), StoreError> {
        self.state
            .write(&connector_status_key(name), Some(&status_value(status)))
            .await
    }

    pub async fn put_task(
        &self,
        name: &str,
        task: u32,
        status: &StatusRecord,
    ) -> Result<(), StoreError> {
        self.state
            .write(&task_status_key(name, task), Some(&status_value(status)))
            .await
    }

    /// Removes the statuses of the connector and of its tasks `0..tasks`. Tasks go first: should
    /// the worker die half-way, the connector's own status is still there to show it existed.
    pub async fn delete_connector(&self, name: &str, tasks: u32) -> Result<(), StoreError> {
        for task in 0..tasks {
            self.state.write(&task_status_key(name, task), None).await?;
        }
        self.state.write(&connector_status_key(name), None).await
    }

    /// Records that `connector`'s task wrote to `topic`.
    pub async fn put_topic(
        &self,
        connector: &str,
        task: u32,
        topic: &str,
        discovered_ms: i64,
    ) -> Result<(), StoreError> {
        let value = TopicRecord {
            topic: TopicStatus {
                name: topic.to_owned(),
                connector: connector.to_owned(),
                task,
                discover_timestamp: discovered_ms,
            },
        };
        let value = serde_json::to_vec(&value).expect("a topic record always serialises");
        self.state
            .write(&topic_status_key(connector, topic), Some(&value))
            .await
    }

    /// Forgets that `connector` wrote to `topic`.
    pub async fn delete_topic(&self, connector: &str, topic: &str) -> Result<(), StoreError> {
        self.state
            .write(&topic_status_key(connector, topic), None)
            .await
    }

    /// Replays the topic to its end: the newest status of every connector and task.
    pub async fn load(&self, timeout: Duration) -> Result<StatusSnapshot, StoreError> {
        let mut snapshot = StatusSnapshot::default();
        for (key, record) in self.state.read_latest(timeout).await? {
            let Some(parsed) = utf8_key(&key).and_then(StatusKey::parse) else {
                continue;
            };
            let Some(value) = &record.value else {
                continue;
            };
            // The key says all about an active topic; its value is informational.
            if let StatusKey::Topic { topic, connector } = parsed {
                snapshot
                    .topics
                    .entry(connector.to_owned())
                    .or_default()
                    .push(topic.to_owned());
                continue;
            }
            let status: StatusRecord = serde_json::from_slice(value)
                .map_err(|err| self.state.corrupt(&lossy(&key), &record, err.to_string()))?;
            match parsed {
                StatusKey::Connector(name) => {
                    snapshot.connectors.insert(name.to_owned(), status);
                }
                StatusKey::Task(name, task) => {
                    snapshot
                        .tasks
                        .entry(name.to_owned())
                        .or_default()
                        .insert(task, status);
                }
                StatusKey::Topic { .. } => {}
            }
        }
        for topics in snapshot.topics.values_mut() {
            topics.sort();
        }
        Ok(snapshot)
    }
}

fn connector_key(name: &str) -> String {
    format!("{CONNECTOR_PREFIX}{name}")
}

fn connector_status_key(name: &str) -> String {
    format!("{CONNECTOR_STATUS_PREFIX}{name}")
}

fn task_status_key(name: &str, task: u32) -> String {
    format!("{TASK_STATUS_PREFIX}{name}-{task}")
}

fn topic_status_key(connector: &str, topic: &str) -> String {
    format!("{TOPIC_STATUS_PREFIX}{topic}{TOPIC_STATUS_SEPARATOR}{connector}")
}

fn status_value(status: &StatusRecord) -> Vec<u8> {
    // Strings and an enum: serialising cannot fail.
    serde_json::to_vec(status).expect("a status record always serialises")
}

/// What a status key names.
#[derive(Debug, PartialEq, Eq)]
enum StatusKey<'a> {
    Connector(&'a str),
    Task(&'a str, u32),
    /// An active topic of a connector.
    Topic {
        topic: &'a str,
        connector: &'a str,
    },
}

impl<'a> StatusKey<'a> {
    /// `None` for keys of other shapes.
    fn parse(key: &'a str) -> Option<Self> {
        // Topic names cannot contain ':', so the first separator is the one.
        if let Some(rest) = key.strip_prefix(TOPIC_STATUS_PREFIX) {
            let (topic, connector) = rest.split_once(TOPIC_STATUS_SEPARATOR)?;
            return Some(StatusKey::Topic { topic, connector });
        }
        if let Some(name) = key.strip_prefix(CONNECTOR_STATUS_PREFIX) {
            return Some(StatusKey::Connector(name));
        }
        // The task number follows the last '-', so connector names may contain '-' themselves.
        let (name, task) = key.strip_prefix(TASK_STATUS_PREFIX)?.rsplit_once('-')?;
        let number: u32 = task.parse().ok()?;
        // Only the spelling this module writes ("7", not "+7" or "007").
        (number.to_string() == task).then_some(StatusKey::Task(name, number))
    }
}

fn utf8_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key).ok()
}

fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Why a config record does not decode, without the value fragments serde_json may quote
/// (those could be passwords): the kind of problem and where, or which field is missing.
fn config_error_reason(err: &serde_json::Error) -> String {
    let message = err.to_string();
    if message.starts_with("missing field") {
        return message;
    }
    let kind = match err.classify() {
        serde_json::error::Category::Io => "cannot be read",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => {
            "not shaped like {\"config\":{string: string},\"target_state\":…}"
        }
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{kind} at line {} column {}", err.line(), err.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConnectorRecord {
        ConnectorRecord {
            name: "inventory".to_owned(),
            config: BTreeMap::from([
                (
                    "connector.class".to_owned(),
                    "io.debezium.connector.postgresql.PostgresConnector".to_owned(),
                ),
                ("database.password".to_owned(), "hunter2".to_owned()),
            ]),
            target_state: TargetState::Paused,
        }
    }

    #[test]
    fn states_use_connects_names() {
        let all = [
            State::Unassigned,
            State::Running,
            State::Paused,
            State::Failed,
            State::Restarting,
            State::Stopped,
        ];
        let json = serde_json::to_string(&all).expect("serialises");
        assert_eq!(
            json,
            r#"["UNASSIGNED","RUNNING","PAUSED","FAILED","RESTARTING","STOPPED"]"#
        );
        for state in all {
            assert_eq!(
                serde_json::to_value(state).expect("serialises"),
                state.as_str()
            );
            assert_eq!(state.to_string(), state.as_str());
        }
        let back: Vec<State> = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, all);
        assert!(serde_json::from_str::<State>(r#""running""#).is_err());
    }

    #[test]
    fn target_states_use_upper_case_names() {
        let all = [
            TargetState::Running,
            TargetState::Paused,
            TargetState::Stopped,
        ];
        assert_eq!(
            serde_json::to_string(&all).expect("serialises"),
            r#"["RUNNING","PAUSED","STOPPED"]"#
        );
        for state in all {
            assert_eq!(
                serde_json::to_value(state).expect("serialises"),
                state.as_str()
            );
        }
        assert!(serde_json::from_str::<TargetState>(r#""STARTED""#).is_err());
    }

    #[test]
    fn connector_value_shape() {
        let record = record();
        let value = ConnectorValueRef {
            config: &record.config,
            target_state: record.target_state,
        };
        assert_eq!(
            serde_json::to_value(&value).expect("serialises"),
            serde_json::json!({
                "config": {
                    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                    "database.password": "hunter2",
                },
                "target_state": "PAUSED",
            })
        );
    }

    #[test]
    fn connector_value_reads_back_tolerating_unknown_fields_and_defaulting_to_running() {
        let value: ConnectorValue =
            serde_json::from_str(r#"{"config":{"a":"1"},"target_state":"STOPPED","future":[1,2]}"#)
                .expect("reads");
        assert_eq!(
            value.config,
            BTreeMap::from([("a".to_owned(), "1".to_owned())])
        );
        assert_eq!(value.target_state, TargetState::Stopped);

        let value: ConnectorValue =
            serde_json::from_str(r#"{"config":{}}"#).expect("no target state");
        assert_eq!(value.target_state, TargetState::Running);
    }

    #[test]
    fn status_value_shape_leaves_out_an_absent_trace() {
        let running = StatusRecord::new(State::Running, "10.0.0.5:8083");
        assert_eq!(
            serde_json::to_value(&running).expect("serialises"),
            serde_json::json!({"state": "RUNNING", "worker_id": "10.0.0.5:8083"})
        );
        let failed = StatusRecord::failed("boom\n\tat here", "10.0.0.5:8083");
        let json = serde_json::to_value(&failed).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"state": "FAILED", "trace": "boom\n\tat here", "worker_id": "10.0.0.5:8083"})
        );
        let back: StatusRecord = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, failed);
        // Connect's own status records carry a generation; it is ignored.
        let connect: StatusRecord = serde_json::from_str(
            r#"{"state":"PAUSED","trace":null,"worker_id":"w:1","generation":3}"#,
        )
        .expect("reads Connect's shape");
        assert_eq!(connect, StatusRecord::new(State::Paused, "w:1"));
    }

    #[test]
    fn keys_follow_connects_naming() {
        assert_eq!(connector_key("inventory"), "connector-inventory");
        assert_eq!(
            connector_status_key("inventory"),
            "status-connector-inventory"
        );
        assert_eq!(task_status_key("inventory", 3), "status-task-inventory-3");
    }

    #[test]
    fn status_keys_parse_back_even_with_dashes_in_names() {
        for (name, task) in [("inventory", 0), ("my-pg-source", 12), ("x-0", 1), ("", 4)] {
            assert_eq!(
                StatusKey::parse(&task_status_key(name, task)),
                Some(StatusKey::Task(name, task))
            );
            assert_eq!(
                StatusKey::parse(&connector_status_key(name)),
                Some(StatusKey::Connector(name))
            );
        }
        assert_eq!(
            StatusKey::parse(&topic_status_key("my-pg:source", "pg.public.orders")),
            Some(StatusKey::Topic {
                topic: "pg.public.orders",
                connector: "my-pg:source"
            })
        );
        for other in [
            "status-topic-orders",
            "status-task-inventory",
            "status-task-inventory-x",
            "status-task-inventory-007",
            "status-task-inventory-+7",
            "status-task-inventory-4294967296",
            "connector-inventory",
        ] {
            assert_eq!(StatusKey::parse(other), None, "{other}");
        }
    }

    #[test]
    fn debug_of_a_connector_record_shows_keys_not_values() {
        let printed = format!("{:?}", record());
        assert!(printed.contains("database.password"), "{printed}");
        assert!(printed.contains("inventory") && printed.contains("Paused"));
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn config_errors_do_not_quote_values() {
        let err = serde_json::from_str::<ConnectorValue>(r#"{"config":{"database.password":5}}"#)
            .err()
            .expect("a number is not a string");
        // serde_json itself would say "invalid type: integer `5`…".
        let reason = config_error_reason(&err);
        assert!(!reason.contains("`5`"), "{reason}");
        let err = serde_json::from_str::<ConnectorValue>(r#"{"config":"hunter2"}"#)
            .err()
            .expect("not a map");
        assert!(err.to_string().contains("hunter2"), "serde_json quotes it");
        let reason = config_error_reason(&err);
        assert!(!reason.contains("hunter2"), "{reason}");
        assert!(reason.contains("line 1"), "{reason}");

        let err = serde_json::from_str::<ConnectorValue>(r#"{"target_state":"PAUSED"}"#)
            .err()
            .expect("no config");
        assert!(config_error_reason(&err).contains("missing field `config`"));
        let err = serde_json::from_str::<ConnectorValue>("not json")
            .err()
            .expect("not JSON");
        assert!(config_error_reason(&err).starts_with("not valid JSON"));
    }

    #[test]
    fn stores_debug_leaves_settings_out() {
        let mut settings = ClientSettings::new("broker:9092");
        settings
            .overrides
            .push(("sasl.password".to_owned(), "hunter2".to_owned()));
        let configs = format!("{:?}", ConfigStore::new(&settings, DEFAULT_CONFIGS_TOPIC));
        let statuses = format!("{:?}", StatusStore::new(&settings, DEFAULT_STATUS_TOPIC));
        assert!(configs.contains("tributary-configs"), "{configs}");
        assert!(statuses.contains("tributary-status"), "{statuses}");
        assert!(!configs.contains("hunter2") && !statuses.contains("hunter2"));
    }

    #[test]
    fn corrupt_records_are_permanent_and_say_where() {
        let err = StoreError::CorruptRecord {
            role: StateRole::Configs,
            topic: "tributary-configs".to_owned(),
            partition: 0,
            offset: 42,
            key: "connector-inventory".to_owned(),
            reason: "not valid JSON at line 1 column 1".to_owned(),
        };
        assert!(!err.is_transient());
        let message = err.to_string();
        for part in [
            "tributary-configs",
            "partition 0",
            "offset 42",
            "connector-inventory",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }
}
