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
    source::postgres::{
        self,
        stream::{self, Destination},
    },
};

/// First and longest wait between restarts after a transient failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs a PostgreSQL source until `shutdown`, reconnecting after transient errors. Returns the
/// permanent error that stopped it, if any.
pub async fn supervise_postgres_source(
    config: PostgresSourceConfig,
    destination: Destination,
    shutdown: CancellationToken,
) -> Result<(), postgres::Error> {
    let mut backoff = BACKOFF_START;
    loop {
        let started = tokio::time::Instant::now();
        let result = stream::run(&config, &destination, shutdown.clone()).await;
        if result.is_err() && !shutdown.is_cancelled() {
            destination.metrics.task_error(&config.name, 0);
        }
        match result {
            Ok(()) => {
                info!(connector = %config.name, "stopped");
                return Ok(());
            }
            Err(err) if err.is_transient() && !shutdown.is_cancelled() => {
                // A run that lasted a while starts the backoff over.
                if started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_START;
                }
                warn!(connector = %config.name, error = %err, retry_in = ?backoff, "transient failure; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(err) if shutdown.is_cancelled() => {
                warn!(connector = %config.name, error = %err, "failure while stopping");
                return Ok(());
            }
            Err(err) => {
                error!(connector = %config.name, error = %err, "stopped by a permanent failure");
                return Err(err);
            }
        }
    }
}
