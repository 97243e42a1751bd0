use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::compacted::StateRole;

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create a Kafka {client} for {bootstrap_servers}: {source}")]
    CreateClient {
        client: &'static str,
        bootstrap_servers: String,
        source: KafkaError,
    },
    #[error(
        "Kafka transactions for transactional.id {transactional_id} could not be initialised: {source}"
    )]
    InitTransactions {
        transactional_id: String,
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {source}")]
    CreateTopic { topic: String, source: KafkaError },
    #[error("cannot create topic {topic}: {code}")]
    CreateTopicRejected {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("cannot delete topic {topic}: {code}")]
    DeleteTopicRejected {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("cannot read the configuration of topic {topic}: {code}")]
    DescribeConfigsRejected {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("Kafka admin request failed: {0}")]
    Admin(#[source] KafkaError),
    #[error(
        "offsets topic {topic} has cleanup.policy={policy}, so stored offsets would expire; \
         set cleanup.policy=compact on it or configure another offsets topic"
    )]
    OffsetTopicNotCompacted { topic: String, policy: String },
    #[error(
        "offsets topic {topic} does not exist; create it (the worker does so on start) \
         or check the configured offsets topic name"
    )]
    OffsetTopicMissing { topic: String },
    #[error("cannot read source offsets from topic {topic}: {source}")]
    LoadOffsets { topic: String, source: KafkaError },
    #[error(
        "reading source offsets from topic {topic} did not reach the end of partitions \
         {partitions:?} within {timeout:?}; the broker may be slow or unreachable"
    )]
    LoadOffsetsTimedOut {
        topic: String,
        partitions: Vec<i32>,
        timeout: Duration,
    },
    #[error(
        "{role} topic {topic} has cleanup.policy={policy}, so stored state would expire; \
         set cleanup.policy=compact on it or configure another {role} topic"
    )]
    StateTopicNotCompacted {
        role: StateRole,
        topic: String,
        policy: String,
    },
    #[error(
        "{role} topic {topic} does not exist; create it (the worker does so on start) \
         or check the configured {role} topic name"
    )]
    StateTopicMissing { role: StateRole, topic: String },
    #[error("cannot read {role} topic {topic}: {source}")]
    ReadStateTopic {
        role: StateRole,
        topic: String,
        source: KafkaError,
    },
    #[error(
        "reading {role} topic {topic} did not reach the end of partitions {partitions:?} \
         within {timeout:?}; the broker may be slow or unreachable"
    )]
    ReadStateTopicTimedOut {
        role: StateRole,
        topic: String,
        partitions: Vec<i32>,
        timeout: Duration,
    },
    #[error("writing record {key} to topic {topic} failed: {source}")]
    WriteStateTopic {
        topic: String,
        key: String,
        // Boxed: with the two names inline it would make every `Result<_, Error>` larger.
        source: Box<KafkaError>,
    },
    #[error(
        "the source offset at topic {topic} partition {partition} offset {offset} is not valid \
         ({reason}); write a valid offset or a tombstone (null value) for key {key} to reset it"
    )]
    CorruptOffset {
        topic: String,
        partition: i32,
        offset: i64,
        key: String,
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed (broker unreachable, coordinator
    /// moving), as opposed to a problem that needs a change of configuration or a new producer.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::CreateClient { .. } => false,
            Error::InitTransactions { source, .. }
            | Error::CreateTopic { source, .. }
            | Error::Admin(source)
            | Error::LoadOffsets { source, .. }
            | Error::ReadStateTopic { source, .. } => is_retriable(source),
            Error::WriteStateTopic { source, .. } => is_retriable(source),
            // A slow or restarting broker; the same read later may well finish.
            Error::LoadOffsetsTimedOut { .. } | Error::ReadStateTopicTimedOut { .. } => true,
            // Each needs someone to change the topic, its records or the configuration.
            Error::OffsetTopicNotCompacted { .. }
            | Error::OffsetTopicMissing { .. }
            | Error::StateTopicNotCompacted { .. }
            | Error::StateTopicMissing { .. }
            | Error::CorruptOffset { .. } => false,
            Error::CreateTopicRejected { code, .. }
            | Error::DeleteTopicRejected { code, .. }
            | Error::DescribeConfigsRejected { code, .. } => {
                matches!(
                    code,
                    RDKafkaErrorCode::RequestTimedOut
                        | RDKafkaErrorCode::OperationTimedOut
                        | RDKafkaErrorCode::NotController
                        | RDKafkaErrorCode::BrokerNotAvailable
                )
            }
        }
    }
}

fn is_retriable(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_retriable(),
        other => matches!(
            other.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::CoordinatorNotAvailable
                    | RDKafkaErrorCode::NotCoordinator
                    | RDKafkaErrorCode::CoordinatorLoadInProgress
                    | RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::NotEnoughReplicas
                    | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::NotLeaderForPartition
            )
        ),
    }
}
