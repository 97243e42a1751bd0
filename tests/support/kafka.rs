//! Kafka for tests: the broker started by `scripts/services.sh`, unique topics, and a consumer
//! that collects what it sees.

use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::Headers,
};
use tributary::kafka::{ClientSettings, TopicAdmin, TopicSpec};

use super::{START_SERVICES, run_detached, unique_name};

pub fn bootstrap_servers() -> String {
    if let Ok(servers) = std::env::var("TRIBUTARY_KAFKA_BOOTSTRAP") {
        return servers;
    }
    let port = std::env::var("TRIBUTARY_KAFKA_PORT").unwrap_or_else(|_| "9092".to_owned());
    format!("127.0.0.1:{port}")
}

/// Client settings for the test broker, after checking that it answers.
pub fn settings() -> ClientSettings {
    let settings = ClientSettings::new(bootstrap_servers());
    if let Err(message) = check_broker(&settings, Duration::from_secs(10)) {
        panic!("{message}");
    }
    settings
}

/// Asks the broker for metadata, or says why it did not answer and how to start it.
pub fn check_broker(settings: &ClientSettings, timeout: Duration) -> Result<(), String> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .create()
        .expect("a metadata probe client can be created");
    probe
        .fetch_metadata(None, timeout)
        .map(|_| ())
        .map_err(|err| {
            format!(
                "Kafka is not reachable at {} ({err}); {START_SERVICES}",
                settings.bootstrap_servers
            )
        })
}

/// A topic that exists for one test and is deleted when the value is dropped.
pub struct TestTopic {
    pub name: String,
    pub partitions: i32,
    settings: ClientSettings,
}

impl TestTopic {
    pub async fn create(partitions: i32) -> Self {
        Self::create_with(partitions, &[]).await
    }

    /// A topic with topic-level configs such as `max.message.bytes`.
    pub async fn create_with(partitions: i32, configs: &[(&str, &str)]) -> Self {
        let settings = settings();
        let name = unique_name("tributary-test");
        let mut spec = TopicSpec::new(&name, partitions);
        spec.configs = configs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        admin(&settings)
            .ensure_topic(&spec)
            .await
            .unwrap_or_else(|err| panic!("cannot create test topic {name}: {err}"));
        Self {
            name,
            partitions,
            settings,
        }
    }

    /// Takes charge of a topic something else creates (or created) under `name`: it is deleted
    /// when the value is dropped.
    pub fn delete_on_drop(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            settings: settings(),
        }
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let name = self.name.clone();
        let settings = self.settings.clone();
        run_detached(async move {
            if let Err(err) = admin(&settings).delete_topic(&name).await {
                eprintln!("could not delete test topic {name}: {err}");
            }
        });
    }
}

fn admin(settings: &ClientSettings) -> TopicAdmin {
    TopicAdmin::new(settings, Duration::from_secs(30)).expect("an admin client can be created")
}

/// One consumed record, copied out of librdkafka's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .map(|v| std::str::from_utf8(v).expect("record value is UTF-8"))
    }

    /// The value parsed as JSON; null for a tombstone.
    pub fn value_json(&self) -> serde_json::Value {
        json_of(self.value.as_deref())
    }

    /// The key parsed as JSON; null for a null key.
    pub fn key_json(&self) -> serde_json::Value {
        json_of(self.key.as_deref())
    }

    /// The value's `payload` when the converter wrapped it with its schema, else the value
    /// itself (schemas off); null for a tombstone.
    pub fn payload(&self) -> serde_json::Value {
        unwrap_payload(self.value_json())
    }

    /// As `payload`, for the key.
    pub fn key_payload(&self) -> serde_json::Value {
        unwrap_payload(self.key_json())
    }
}

fn json_of(bytes: Option<&[u8]>) -> serde_json::Value {
    bytes.map_or(serde_json::Value::Null, |bytes| {
        serde_json::from_slice(bytes).expect("records are JSON")
    })
}

fn unwrap_payload(mut json: serde_json::Value) -> serde_json::Value {
    match json.get_mut("payload") {
        Some(payload) => payload.take(),
        None => json,
    }
}

/// Which records a collector may see.
#[derive(Debug, Clone, Copy)]
pub enum Isolation {
    /// Only records of committed transactions (what every tributary consumer uses).
    ReadCommitted,
    /// Everything written, aborted transactions included: to prove something was written.
    ReadUncommitted,
}

/// Reads every partition of a topic from the beginning, without a consumer group.
pub struct Collector {
    consumer: StreamConsumer,
    topic: String,
    seen: Vec<Record>,
    errors: u32,
    last_error: Option<String>,
}

impl Collector {
    pub fn new(topic: &TestTopic, isolation: Isolation) -> Self {
        let level = match isolation {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &topic.settings.bootstrap_servers)
            .set("group.id", unique_name("tributary-test-collector"))
            .set("isolation.level", level)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a test consumer can be created");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..topic.partitions {
            assignment
                .add_partition_offset(&topic.name, partition, Offset::Beginning)
                .expect("offset can be set");
        }
        consumer
            .assign(&assignment)
            .expect("the test topic's partitions can be assigned");
        Self {
            consumer,
            topic: topic.name.clone(),
            seen: Vec::new(),
            errors: 0,
            last_error: None,
        }
    }

    /// Waits for `count` more records; after `timeout` fails, listing what it did see.
    pub async fn collect(&mut self, count: usize, timeout: Duration) -> Vec<Record> {
        self.try_collect(count, timeout)
            .await
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// As `collect`, but returns the failure instead of panicking, for callers that add context.
    pub async fn try_collect(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Record>, String> {
        let start = self.seen.len();
        let deadline = Instant::now() + timeout;
        while self.seen.len() - start < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(message)) => self.seen.push(copy(&message)),
                // The client reconnects by itself (a broker restart, say); keep waiting.
                Ok(Err(err)) => {
                    self.errors += 1;
                    self.last_error = Some(err.to_string());
                    if self.errors >= 10_000 {
                        return Err(format!("consuming {} keeps failing: {err}", self.topic));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    return Err(format!(
                        "expected {count} records on {} within {timeout:?}, saw {} ({} consumer errors, the last: {:?}); the last records:\n{}",
                        self.topic,
                        self.seen.len() - start,
                        self.errors,
                        self.last_error,
                        describe(&self.seen[start.max(self.seen.len().saturating_sub(5))..])
                    ));
                }
            }
        }
        Ok(self.seen[start..].to_vec())
    }

    /// Fails if any further record arrives within `quiet`: for "exactly these, nothing more".
    pub async fn expect_no_more(&mut self, quiet: Duration) {
        if let Ok(Ok(message)) = tokio::time::timeout(quiet, self.consumer.recv()).await {
            let extra = copy(&message);
            panic!(
                "expected no more records on {}, but got another:\n{}",
                self.topic,
                describe(std::slice::from_ref(&extra))
            );
        }
    }
}

fn copy(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Record {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

fn describe(records: &[Record]) -> String {
    if records.is_empty() {
        return "  (nothing)".to_owned();
    }
    records
        .iter()
        .map(|r| {
            format!(
                "  p{}@{} key={:?} value={:?}",
                r.partition,
                r.offset,
                r.key.as_deref().map(abbreviate),
                r.value.as_deref().map(abbreviate)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The start and end of a long record: enough to recognise it.
fn abbreviate(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 300 {
        return text.into_owned();
    }
    let head: String = chars[..100].iter().collect();
    let tail: String = chars[chars.len() - 200..].iter().collect();
    format!("{head}…{tail}")
}

/// The high watermark of partition 0 of `topic`: one past its last record or transaction marker.
pub fn end_offset(topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers())
        .set("group.id", unique_name("watermarks"))
        .create()
        .expect("a consumer for watermarks");
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("cannot read the watermarks of {topic}: {err}"))
        .1
}
