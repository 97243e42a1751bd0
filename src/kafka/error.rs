use rdkafka::error::{KafkaError, RDKafkaErrorCode};

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
    #[error("Kafka admin request failed: {0}")]
    Admin(#[source] KafkaError),
}

impl Error {
    /// Whether retrying the same operation later may succeed (broker unreachable, coordinator
    /// moving), as opposed to a problem that needs a change of configuration or a new producer.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::CreateClient { .. } => false,
            Error::InitTransactions { source, .. }
            | Error::CreateTopic { source, .. }
            | Error::Admin(source) => is_retriable(source),
            Error::CreateTopicRejected { code, .. } | Error::DeleteTopicRejected { code, .. } => {
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
            )
        ),
    }
}
