//! The window stage: event-time windows over Debezium change topics, aggregated into a
//! PostgreSQL analytics table, exactly once.
//!
//! ```text
//!  change topics ──► reading thread (read_committed, seeks to stored offsets)
//!                      │ decode: op, before/after image, event time, group key, inputs
//!                      ▼ one batch ahead
//!                    task
//!                      ▼
//!                    engine (pure): retract old image, add new; cells per (window, group);
//!                      │            watermark = min over active partitions (max t − D)
//!                      ▼ every commit.interval.ms
//!                    one PostgreSQL transaction: generation check, result upserts/deletes,
//!                    state-log chunk (changed cells and row images), partition clocks +
//!                    watermark, offsets; it runs while the next changes are applied
//! ```
//!
//! Semantics (normative): `shared/reference/windowing-semantics.md`. Windows are `[start, end)`
//! aligned to the epoch; a change whose window has closed (W ≥ end + allowed lateness) is not
//! applied to it and goes to `late.events.topic` with headers saying why; it is never dropped
//! silently. The connection, generation fencing and offsets table are the PostgreSQL sink's.

mod aggregate;
mod config;
mod decode;
mod engine;
mod read;
mod state_codec;
mod store;
mod task;
mod time;
mod watermark;

pub use aggregate::{AggregateFn, AggregateSpec, Value};
pub use config::{EventTimeField, WINDOW_AGGREGATE_CLASSES, WindowAggregateConfig};
pub use engine::{ChangelogMode, EmitMode};
pub use store::reset;
pub use task::{run, run_with_metrics};
pub use time::{Window, WindowKind, parse_duration};

/// Every config key of the window stage (`GET /connector-plugins/…/config`).
pub fn window_aggregate_definitions() -> &'static [crate::config::definitions::ConfigKeyDefinition]
{
    config::window_aggregate_definitions()
}

/// Connects to the stage's target database and checks what it needs there (validate).
pub async fn validate_live(
    config: &WindowAggregateConfig,
) -> Vec<crate::source::postgres::validate::Finding> {
    crate::sink::postgres::connection::validate_target(&config.target(), &config.name).await
}

/// What can stop the window stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target database, the generation fencing or the Kafka consumer (shared with the sink).
    #[error(transparent)]
    Sink(#[from] crate::sink::postgres::Error),
    #[error("late-events topic {topic}: cannot send a record: {source}")]
    LateEvents {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A record the stage cannot read (its position, never its contents).
    #[error("record {position}: {message}")]
    Record { position: String, message: String },
    /// Stored state that does not fit this config.
    #[error("connector {connector}: stored window state cannot be used: {message}")]
    State { connector: String, message: String },
    #[error("result table {table}: {message}")]
    Table { table: String, message: String },
}

impl Error {
    /// Whether retrying after a backoff can succeed: connection loss, serialization failures,
    /// a broker that is away. Unreadable records, unusable state, fencing are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sink(e) => e.is_transient(),
            Self::LateEvents { .. } => true,
            Self::Record { .. } | Self::State { .. } | Self::Table { .. } => false,
        }
    }

    pub(crate) fn database(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| Self::Sink(crate::sink::postgres::Error::Database { context, source })
    }
}
