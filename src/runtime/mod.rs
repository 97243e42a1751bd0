//! Running connectors: each in its own task, restarted with backoff after transient failures,
//! stopped for good (with the error's advice) after permanent ones. Their configs, target states
//! and statuses persist in [`store`].

pub mod plugins;
pub mod store;
pub mod worker;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::PostgresSourceConfig,
    metrics::Metrics,
    sink::{self, postgres::PostgresSinkConfig},
    source::postgres::{
        self,
        stream::{self, Destination},
    },
    window::{self, WindowAggregateConfig},
};

/// First and longest wait between restarts after a transient failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A task's error as the supervisor sees it: transient ones (connection loss, a broker away)
/// restart the task after a backoff; permanent ones stop it.
pub trait TaskError: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

impl TaskError for postgres::Error {
    fn is_transient(&self) -> bool {
        postgres::Error::is_transient(self)
    }
}

impl TaskError for window::Error {
    fn is_transient(&self) -> bool {
        window::Error::is_transient(self)
    }
}

impl TaskError for sink::postgres::Error {
    fn is_transient(&self) -> bool {
        sink::postgres::Error::is_transient(self)
    }
}

/// Runs a PostgreSQL source until `shutdown`, reconnecting after transient errors. Returns the
/// permanent error that stopped it, if any.
pub async fn supervise_postgres_source(
    config: PostgresSourceConfig,
    destination: Destination,
    shutdown: CancellationToken,
) -> Result<(), postgres::Error> {
    let metrics = destination.metrics.clone();
    supervise(&config.name.clone(), &metrics, shutdown.clone(), || {
        stream::run(&config, &destination, shutdown.clone())
    })
    .await
}

/// Runs the PostgreSQL sink until `shutdown`, restarting it after transient errors.
pub async fn supervise_postgres_sink(
    config: PostgresSinkConfig,
    destination: Destination,
    shutdown: CancellationToken,
) -> Result<(), sink::postgres::Error> {
    let metrics = destination.metrics.clone();
    let consumer_metrics = metrics.consumer(&config.name, 0);
    supervise(&config.name.clone(), &metrics, shutdown.clone(), || {
        sink::postgres::run_with_metrics(
            config.clone(),
            &destination.kafka,
            consumer_metrics.clone(),
            shutdown.clone(),
        )
    })
    .await
}

/// Runs the window stage until `shutdown`, restarting it after transient errors.
pub async fn supervise_window_aggregate(
    config: WindowAggregateConfig,
    destination: Destination,
    shutdown: CancellationToken,
) -> Result<(), window::Error> {
    let metrics = destination.metrics.clone();
    let consumer_metrics = metrics.consumer(&config.name, 0);
    supervise(&config.name.clone(), &metrics, shutdown.clone(), || {
        window::run_with_metrics(
            config.clone(),
            &destination.kafka,
            consumer_metrics.clone(),
            shutdown.clone(),
        )
    })
    .await
}

/// Runs `run` again after each transient failure (with doubling backoff, reset after a run that
/// lasted a while) until it returns `Ok`, `shutdown` is cancelled or a permanent error stops it.
async fn supervise<E, F, Fut>(
    name: &str,
    metrics: &Metrics,
    shutdown: CancellationToken,
    mut run: F,
) -> Result<(), E>
where
    E: TaskError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut backoff = BACKOFF_START;
    loop {
        let started = tokio::time::Instant::now();
        let result = run().await;
        if result.is_err() && !shutdown.is_cancelled() {
            metrics.task_error(name, 0);
        }
        match result {
            Ok(()) => {
                info!(connector = %name, "stopped");
                return Ok(());
            }
            Err(err) if err.is_transient() && !shutdown.is_cancelled() => {
                if started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_START;
                }
                warn!(connector = %name, error = %err, retry_in = ?backoff, "transient failure; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(err) if shutdown.is_cancelled() => {
                warn!(connector = %name, error = %err, "failure while stopping");
                return Ok(());
            }
            Err(err) => {
                error!(connector = %name, error = %err, "stopped by a permanent failure");
                return Err(err);
            }
        }
    }
}
