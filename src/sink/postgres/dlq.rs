//! The dead-letter topic: records that cannot be applied, as they were read, with Kafka
//! Connect's `__connect.errors.*` headers saying where they came from and what was wrong.
//!
//! A dead letter is delivered (acknowledged by the broker) before the batch whose offsets move
//! past its record commits, so none is lost; after a crash between the two it is sent again
//! (at least once, as in Kafka Connect).

use std::time::Duration;

use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};

use super::{Error, config::DeadLetterQueue, record::RecordError};
use crate::kafka::{ClientSettings, TopicAdmin, TopicSpec, idempotent_producer};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends rejected records to the configured dead-letter topic.
pub(crate) struct DeadLetters {
    queue: DeadLetterQueue,
    connector: String,
    producer: FutureProducer,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.queue.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// Creates the topic when missing and a producer for it.
    pub(crate) async fn new(
        queue: DeadLetterQueue,
        connector: &str,
        kafka: &ClientSettings,
    ) -> Result<Self, Error> {
        let mut spec = TopicSpec::new(&queue.topic, 1);
        spec.replication_factor = queue.replication_factor;
        TopicAdmin::new(kafka, Duration::from_secs(30))?
            .ensure_topic(&spec)
            .await?;
        Ok(Self {
            producer: idempotent_producer(kafka, DELIVERY_TIMEOUT)?,
            queue,
            connector: connector.to_owned(),
        })
    }

    /// Sends `message` as it was read (key, value, headers), plus the error context headers
    /// when configured; returns once the broker has it.
    pub(crate) async fn send(
        &self,
        message: &OwnedMessage,
        error: &RecordError,
    ) -> Result<(), Error> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(header);
            }
        }
        if self.queue.context_headers {
            let (stage, class) = match error {
                RecordError::NotJson { .. } => ("VALUE_CONVERTER", "NotJson"),
                RecordError::Unreadable { .. } => ("VALUE_CONVERTER", "Unreadable"),
                RecordError::Shape { .. } => ("TASK_PUT", "Shape"),
                RecordError::Value { .. } => ("TASK_PUT", "Value"),
                RecordError::Rejected { .. } => ("TASK_PUT", "Rejected"),
            };
            let partition = message.partition().to_string();
            let offset = message.offset().to_string();
            let text = error.to_string();
            for (key, value) in [
                ("__connect.errors.topic", message.topic()),
                ("__connect.errors.partition", partition.as_str()),
                ("__connect.errors.offset", offset.as_str()),
                ("__connect.errors.connector.name", self.connector.as_str()),
                ("__connect.errors.task.id", "0"),
                ("__connect.errors.stage", stage),
                (
                    "__connect.errors.class.name",
                    "io.debezium.connector.jdbc.JdbcSinkConnectorTask",
                ),
                ("__connect.errors.exception.class.name", class),
                ("__connect.errors.exception.message", text.as_str()),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.queue.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(source, _)| Error::DeadLetter {
                topic: self.queue.topic.clone(),
                source,
            })
    }
}
