//! The JDBC-style PostgreSQL sink: Debezium change topics applied to tables in a target
//! PostgreSQL database, exactly once.
//!
//! Each batch of records is written in one target transaction together with the next offset of
//! every topic-partition it consumed (table `tributary_offsets`); on start the consumer seeks to
//! the stored offsets. A task fences older instances of the same connector through a generation
//! number (table `tributary_sink_generations`), so a stale task cannot commit over a newer one.

pub(crate) mod avro;
pub(crate) mod batch;
pub mod config;
pub(crate) mod connection;
pub mod definitions;
mod dlq;
pub(crate) mod offsets;
pub mod record;
pub mod task;
pub mod types;
pub(crate) mod writer;

pub use config::{
    DeadLetterQueue, ErrorTolerance, FieldFilter, InsertMode, POSTGRES_SINK_CLASSES,
    PostgresSinkConfig, PrimaryKeyMode, SchemaChanges, TopicSelection,
};
pub use connection::validate_live;
pub use definitions::postgres_sink_definitions;
pub use offsets::PartitionOffset;
pub use task::{run, run_with_metrics};

use record::RecordError;

/// What can stop the sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("target database: {context}: {source}")]
    Database {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
    #[error("Kafka consumer: {context}: {source}")]
    Consumer {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("cannot send a record to dead-letter topic {topic}: {source}")]
    DeadLetter {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
    #[error(
        "connector {connector} was started again elsewhere (generation {current} > ours, {ours}); \
         this task stops so that it cannot overwrite newer writes"
    )]
    Fenced {
        connector: String,
        ours: i64,
        current: i64,
    },
    #[error("decoding a batch of records failed unexpectedly: {0}")]
    Decoder(String),
}

impl Error {
    pub(crate) fn database(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| Self::Database { context, source }
    }

    /// The SQLSTATE when the target database rejected data (classes 22, data exception, and
    /// 23, integrity constraint violation): the records are at fault, not the connection.
    pub fn data_sqlstate(&self) -> Option<&str> {
        match self {
            Self::Database { source, .. } => source
                .as_db_error()
                .map(|db| db.code().code())
                .filter(|code| code.starts_with("22") || code.starts_with("23")),
            _ => None,
        }
    }

    /// A row with the same unique key is already there (SQLSTATE 23505).
    pub fn is_unique_violation(&self) -> bool {
        self.data_sqlstate() == Some("23505")
    }

    /// Whether retrying (after a backoff) can succeed: connection loss, serialization failures,
    /// deadlocks, a broker that is away. Bad records, missing tables and fencing are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => match source.as_db_error() {
                Some(db) => {
                    let code = db.code().code();
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || code == "53300"
                        || code == "40001"
                        || code == "40P01"
                }
                None => true,
            },
            Self::Kafka(e) => e.is_transient(),
            Self::Consumer { .. } | Self::DeadLetter { .. } | Self::Registry(_) => true,
            Self::Record(_)
            | Self::Table { .. }
            | Self::Fenced { .. }
            | Self::Tls(_)
            | Self::Decoder(_) => false,
        }
    }
}
