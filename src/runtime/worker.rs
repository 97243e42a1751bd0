//! The worker: the connectors of one `tributary serve` process, their target states (what the
//! user asked for) and their actual states (what runs), managed like Kafka Connect manages them.
//!
//! Each connector has one task (a PostgreSQL slot is read by one task). A task runs in its own
//! tokio task under the supervisor loop of this module: transient failures restart it with
//! backoff, a permanent failure leaves it FAILED with the error as its trace until restarted.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::plugins::{self, TaskConfig};
use super::store::{ConfigStore, ConnectorRecord, StatusRecord, StatusStore, StoreError};
use crate::{
    config::{ConnectorConfig, ValidationErrors},
    kafka::{OffsetStore, SourceOffset},
    sink::postgres::{
        self as sink,
        offsets::{change_offsets, stored_offsets},
    },
    source::postgres::stream::Destination,
};

pub use super::store::{State, TargetState};

/// Why a worker request failed; the API maps each to Connect's status code.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("Connector {0} not found")]
    NotFound(String),
    #[error("Connector {0} already exists")]
    AlreadyExists(String),
    #[error("Task {1} of connector {0} not found")]
    TaskNotFound(String, u32),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{0}/stop' endpoint"
    )]
    NotStopped(String),
    /// A sink's target database could not be read or written.
    #[error("{0}")]
    Target(String),
    /// The config or status topic could not be written: nothing was changed.
    #[error("cannot store the change: {0}")]
    Store(#[from] StoreError),
}

/// A connector's offsets as `GET /connectors/{name}/offsets` shows them.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorOffsets {
    /// A source's one partition, `{"server": <topic.prefix>}`.
    Source {
        server: String,
        offset: Option<SourceOffset>,
    },
    /// A sink's next offset per topic-partition.
    Sink(Vec<sink::PartitionOffset>),
}

/// A change of offsets (`PATCH /connectors/{name}/offsets`).
#[derive(Debug, Clone, PartialEq)]
pub enum OffsetChange {
    /// The source's partition (`{"server": …}`) and its new offset (None: forget it).
    Source {
        server: String,
        offset: Option<SourceOffset>,
    },
    /// Sink partitions and their new next offsets (None: forget the partition).
    Sink(Vec<sink::PartitionOffset>),
}

/// Where a connector's offsets live.
enum OffsetOwner {
    Source { store: OffsetStore, server: String },
    Sink(Box<sink::PostgresSinkConfig>),
    Window(Box<crate::window::WindowAggregateConfig>),
}

/// The status of one connector and its task, as `GET /connectors/{name}/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: State,
    /// None when the connector is STOPPED (a stopped connector has no tasks).
    pub task: Option<(State, Option<String>)>,
}

struct Entry {
    config: BTreeMap<String, String>,
    target: TargetState,
    connector_state: State,
    task_state: State,
    trace: Option<String>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

/// The connectors of this process.
#[derive(Clone)]
pub struct Worker {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    destination: Destination,
    /// Where configs and target states (and statuses, for other readers) survive the process.
    stores: Option<Arc<(ConfigStore, StatusStore)>>,
    pub worker_id: String,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

/// The configs invalid for the source, in Kafka Connect's words.
pub fn invalid_config_message(errors: &ValidationErrors) -> String {
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    format!(
        "Connector configuration is invalid and contains the following {} error(s):\n{}\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`",
        lines.len(),
        lines.join("\n")
    )
}

impl Worker {
    /// A worker whose connectors live only as long as the process.
    pub fn new(destination: Destination, worker_id: impl Into<String>) -> Self {
        Self {
            entries: Arc::new(Mutex::new(BTreeMap::new())),
            destination,
            stores: None,
            worker_id: worker_id.into(),
        }
    }

    /// A worker whose connectors are stored in Kafka: it starts with every stored connector in
    /// its stored target state (a worker killed and started again carries on where it was).
    pub async fn with_stores(
        destination: Destination,
        worker_id: impl Into<String>,
        configs: ConfigStore,
        statuses: StatusStore,
    ) -> Result<Self, StoreError> {
        configs.ensure_topic().await?;
        statuses.ensure_topic().await?;
        let stored = configs.load(Duration::from_secs(60)).await?;
        let known = statuses.load(Duration::from_secs(60)).await?;
        let mut worker = Self::new(destination, worker_id);
        for (name, topics) in known.topics {
            if stored.contains_key(&name) {
                worker
                    .destination
                    .metrics
                    .restore_active_topics(&name, topics);
            }
        }
        worker.stores = Some(Arc::new((configs, statuses)));
        worker.record_new_topics();
        for (name, record) in stored {
            match Self::check(&name, &record.config) {
                Ok(source) => {
                    worker.insert(&name, record.config, record.target_state);
                    worker.apply(&name, Some(source));
                }
                Err(error) => {
                    warn!(connector = %name, error = %error, "stored config is not valid any more");
                    worker.insert(&name, record.config, record.target_state);
                    worker.apply(&name, None);
                }
            }
            info!(connector = %name, target = %record.target_state, "restored");
        }
        Ok(worker)
    }

    /// Stores each topic a connector writes to for the first time, as Connect does, so the
    /// active topics survive restarts.
    fn record_new_topics(&self) {
        let Some(stores) = self.stores.clone() else {
            return;
        };
        let mut new_topics = self.destination.metrics.subscribe_active_topics();
        let entries = Arc::downgrade(&self.entries);
        tokio::spawn(async move {
            while let Some((connector, topic)) = new_topics.recv().await {
                // Gone with its worker, or deleted meanwhile: nothing to record.
                let Some(entries) = entries.upgrade() else {
                    return;
                };
                if !entries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&connector)
                {
                    continue;
                }
                if let Err(error) = stores
                    .1
                    .put_topic(&connector, 0, &topic, now_millis())
                    .await
                {
                    warn!(connector = %connector, topic = %topic, error = %error, "could not record the active topic");
                }
            }
        });
    }

    fn insert(&self, name: &str, config: BTreeMap<String, String>, target: TargetState) {
        self.lock().insert(
            name.to_owned(),
            Entry {
                config,
                target,
                connector_state: State::Unassigned,
                task_state: State::Unassigned,
                trace: None,
                running: None,
            },
        );
    }

    /// Writes the connector's config and target state; durable before it returns.
    async fn persist(
        &self,
        name: &str,
        config: &BTreeMap<String, String>,
        target: TargetState,
    ) -> Result<(), WorkerError> {
        if let Some(stores) = &self.stores {
            stores
                .0
                .put(&ConnectorRecord {
                    name: name.to_owned(),
                    config: config.clone(),
                    target_state: target,
                })
                .await?;
        }
        Ok(())
    }

    /// Publishes the current states on the status topic (best effort: it informs, it does not
    /// decide anything).
    fn publish_status(&self, name: &str) {
        let Some(stores) = self.stores.clone() else {
            return;
        };
        let Some((connector, task, trace)) = self
            .lock()
            .get(name)
            .map(|e| (e.connector_state, e.task_state, e.trace.clone()))
        else {
            return;
        };
        let worker_id = self.worker_id.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let statuses = &stores.1;
            let task_record = StatusRecord {
                state: task,
                trace,
                worker_id: worker_id.clone(),
            };
            let result = async {
                statuses
                    .put_connector(&name, &StatusRecord::new(connector, worker_id))
                    .await?;
                statuses.put_task(&name, 0, &task_record).await
            }
            .await;
            if let Err(error) = result {
                warn!(connector = %name, error = %error, "could not publish the status");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a config without starting anything: `connector.class` must name a plugin of
    /// [`plugins::PLUGINS`], and the config must be valid for it.
    pub fn check(name: &str, config: &BTreeMap<String, String>) -> Result<TaskConfig, WorkerError> {
        let Some(class) = config
            .get("connector.class")
            .filter(|c| !c.trim().is_empty())
        else {
            return Err(WorkerError::Invalid(format!(
                "Connector config contains no connector type: set connector.class to one of {}",
                plugins::PLUGINS
                    .iter()
                    .map(|p| p.class)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let Some(plugin) = plugins::find(class) else {
            return Err(WorkerError::Invalid(plugins::unknown_class_message(class)));
        };
        let mut config = config.clone();
        // Every spelling the plugin answers to is its class.
        config.insert("connector.class".to_owned(), plugin.class.to_owned());
        let connector = ConnectorConfig {
            name: name.to_owned(),
            config,
        };
        (plugin.parse)(&connector)
            .map_err(|errors| WorkerError::Invalid(invalid_config_message(&errors)))
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn config(&self, name: &str) -> Result<BTreeMap<String, String>, WorkerError> {
        self.lock()
            .get(name)
            .map(|e| e.config.clone())
            .ok_or_else(|| WorkerError::NotFound(name.to_owned()))
    }

    pub fn target_state(&self, name: &str) -> Result<TargetState, WorkerError> {
        self.lock()
            .get(name)
            .map(|e| e.target)
            .ok_or_else(|| WorkerError::NotFound(name.to_owned()))
    }

    pub fn status(&self, name: &str) -> Result<ConnectorStatus, WorkerError> {
        let entries = self.lock();
        let entry = entries
            .get(name)
            .ok_or_else(|| WorkerError::NotFound(name.to_owned()))?;
        Ok(ConnectorStatus {
            name: name.to_owned(),
            connector: entry.connector_state,
            task: (entry.target != TargetState::Stopped)
                .then(|| (entry.task_state, entry.trace.clone())),
        })
    }

    /// Creates a connector in `initial` state. The config must be valid.
    pub async fn create(
        &self,
        name: &str,
        config: BTreeMap<String, String>,
        initial: TargetState,
    ) -> Result<(), WorkerError> {
        let source = Self::check(name, &config)?;
        if self.lock().contains_key(name) {
            return Err(WorkerError::AlreadyExists(name.to_owned()));
        }
        self.persist(name, &config, initial).await?;
        self.insert(name, config, initial);
        self.apply(name, Some(source));
        Ok(())
    }

    /// Replaces a connector's config (creating it when absent); true when it was created. A
    /// running connector restarts with the new config.
    pub async fn put_config(
        &self,
        name: &str,
        config: BTreeMap<String, String>,
    ) -> Result<bool, WorkerError> {
        let source = Self::check(name, &config)?;
        let exists = self.lock().contains_key(name);
        if !exists {
            self.create(name, config, TargetState::Running).await?;
            return Ok(true);
        }
        // The same config again changes nothing: the running task keeps running.
        if self.config(name)? == config {
            return Ok(false);
        }
        let target = self.target_state(name)?;
        self.persist(name, &config, target).await?;
        self.halt(name).await;
        if let Some(entry) = self.lock().get_mut(name) {
            entry.config = config;
        }
        self.apply(name, Some(source));
        Ok(false)
    }

    pub async fn delete(&self, name: &str) -> Result<(), WorkerError> {
        if !self.lock().contains_key(name) {
            return Err(WorkerError::NotFound(name.to_owned()));
        }
        if let Some(stores) = &self.stores {
            stores.0.delete(name).await?;
            stores.1.delete_connector(name, 1).await?;
        }
        self.halt(name).await;
        self.lock().remove(name);
        if let Some(stores) = &self.stores {
            for topic in self.destination.metrics.active_topics(name) {
                stores.1.delete_topic(name, &topic).await?;
            }
        }
        self.destination.metrics.remove_connector(name);
        info!(connector = %name, "deleted");
        Ok(())
    }

    pub async fn set_target(&self, name: &str, target: TargetState) -> Result<(), WorkerError> {
        let config = self.config(name)?;
        if self.target_state(name)? == target {
            return Ok(());
        }
        self.persist(name, &config, target).await?;
        if let Some(entry) = self.lock().get_mut(name) {
            entry.target = target;
        }
        self.halt(name).await;
        self.apply(name, None);
        Ok(())
    }

    /// Restarts the connector's task (when `only_failed`, only if it failed); true when it did.
    pub async fn restart(&self, name: &str, only_failed: bool) -> Result<bool, WorkerError> {
        let failed = {
            let entries = self.lock();
            let entry = entries
                .get(name)
                .ok_or_else(|| WorkerError::NotFound(name.to_owned()))?;
            entry.task_state == State::Failed || entry.connector_state == State::Failed
        };
        if only_failed && !failed {
            return Ok(false);
        }
        if let Some(entry) = self.lock().get_mut(name) {
            entry.connector_state = State::Restarting;
            entry.task_state = State::Restarting;
        }
        self.halt(name).await;
        self.apply(name, None);
        Ok(true)
    }

    /// The connector's stored offsets: a source's one partition (`{"server": <topic.prefix>}`)
    /// from the offsets topic, a sink's partitions from its target database.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets, WorkerError> {
        match self.offset_owner(name)? {
            OffsetOwner::Source { store, server } => {
                let offset = store
                    .load(name, &server, Duration::from_secs(60))
                    .await
                    .map_err(|e| WorkerError::Store(StoreError::Kafka(e)))?;
                Ok(ConnectorOffsets::Source { server, offset })
            }
            OffsetOwner::Sink(config) => stored_offsets(&config.target(), name)
                .await
                .map(ConnectorOffsets::Sink)
                .map_err(|e| WorkerError::Target(e.to_string())),
            OffsetOwner::Window(config) => stored_offsets(&config.target(), name)
                .await
                .map(ConnectorOffsets::Sink)
                .map_err(|e| WorkerError::Target(e.to_string())),
        }
    }

    /// Applies `change` (None: resets every offset); only while the connector is STOPPED, as
    /// Connect requires.
    pub async fn write_offsets(
        &self,
        name: &str,
        change: Option<OffsetChange>,
    ) -> Result<(), WorkerError> {
        if self.target_state(name)? != TargetState::Stopped {
            return Err(WorkerError::NotStopped(name.to_owned()));
        }
        let reset = change.is_none();
        match (self.offset_owner(name)?, change) {
            (OffsetOwner::Source { store, server }, change) => {
                let offset = match change {
                    None => None,
                    Some(OffsetChange::Source {
                        server: given,
                        offset,
                    }) => {
                        if given != server {
                            return Err(WorkerError::Invalid(format!(
                                "The partition {{\"server\": \"{given}\"}} is not this connector's; its partition is {{\"server\": \"{server}\"}} (its topic.prefix)"
                            )));
                        }
                        offset
                    }
                    Some(OffsetChange::Sink(_)) => {
                        return Err(WorkerError::Invalid(
                            "This is a source connector: its one partition is {\"server\": <topic.prefix>}".to_owned(),
                        ));
                    }
                };
                store
                    .write(name, &server, offset.as_ref())
                    .await
                    .map_err(|e| WorkerError::Store(StoreError::Kafka(e)))?;
            }
            (OffsetOwner::Sink(config), change) => {
                let partitions = match change {
                    None => None,
                    Some(OffsetChange::Sink(partitions)) => Some(partitions),
                    Some(OffsetChange::Source { .. }) => {
                        return Err(WorkerError::Invalid(
                            "This is a sink connector: its partitions are {\"kafka_topic\": <topic>, \"kafka_partition\": <n>}".to_owned(),
                        ));
                    }
                };
                change_offsets(&config.target(), name, partitions.as_deref())
                    .await
                    .map_err(|e| WorkerError::Target(e.to_string()))?;
            }
            // A window stage's offsets and its state go together: moving one without the other
            // would count changes twice or never, so only a reset (of both) is allowed.
            (OffsetOwner::Window(config), None) => {
                crate::window::reset(&config)
                    .await
                    .map_err(|e| WorkerError::Target(e.to_string()))?;
            }
            (OffsetOwner::Window(_), Some(_)) => {
                return Err(WorkerError::Invalid(
                    "The offsets of a window aggregate cannot be altered: its window state holds what it has read. Reset them (DELETE /connectors/{name}/offsets) to recompute every window from the beginning of the topics".to_owned(),
                ));
            }
        }
        info!(connector = %name, reset, "offsets changed");
        Ok(())
    }

    fn offset_owner(&self, name: &str) -> Result<OffsetOwner, WorkerError> {
        let config = self.config(name)?;
        Ok(match Self::check(name, &config)? {
            TaskConfig::PostgresSource(source) => OffsetOwner::Source {
                store: OffsetStore::new(&self.destination.kafka, &self.destination.offsets_topic),
                server: source.topic_prefix,
            },
            TaskConfig::PostgresSink(config) => OffsetOwner::Sink(config),
            TaskConfig::WindowAggregate(config) => OffsetOwner::Window(config),
        })
    }

    /// The topics the connector has written to since they were last reset.
    pub fn active_topics(&self, name: &str) -> Result<Vec<String>, WorkerError> {
        self.config(name)?;
        Ok(self.destination.metrics.active_topics(name))
    }

    /// Forgets the connector's active topics (the topics themselves stay).
    pub async fn reset_active_topics(&self, name: &str) -> Result<(), WorkerError> {
        self.config(name)?;
        let topics = self.destination.metrics.reset_active_topics(name);
        if let Some(stores) = &self.stores {
            for topic in &topics {
                stores.1.delete_topic(name, topic).await?;
            }
        }
        info!(connector = %name, topics = topics.len(), "active topics reset");
        Ok(())
    }

    /// The metrics of this worker's tasks.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.destination.metrics
    }

    /// Stops every task (on shutdown).
    pub async fn shutdown(&self) {
        for name in self.names() {
            self.halt(&name).await;
        }
    }

    /// Stops the task if one runs, and waits for it.
    async fn halt(&self, name: &str) {
        let running = self.lock().get_mut(name).and_then(|e| e.running.take());
        if let Some((token, handle)) = running {
            token.cancel();
            let _ = handle.await;
        }
    }

    /// Starts or leaves alone the task according to the target state.
    fn apply(&self, name: &str, source: Option<TaskConfig>) {
        self.start_or_hold(name, source);
        self.publish_status(name);
    }

    fn start_or_hold(&self, name: &str, source: Option<TaskConfig>) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        match entry.target {
            TargetState::Paused => {
                entry.connector_state = State::Paused;
                entry.task_state = State::Paused;
            }
            TargetState::Stopped => {
                entry.connector_state = State::Stopped;
                entry.task_state = State::Unassigned;
            }
            TargetState::Running => {
                let source = match source {
                    Some(source) => source,
                    None => match Self::check(name, &entry.config) {
                        Ok(source) => source,
                        Err(error) => {
                            entry.connector_state = State::Failed;
                            entry.task_state = State::Failed;
                            entry.trace = Some(error.to_string());
                            return;
                        }
                    },
                };
                entry.connector_state = State::Running;
                entry.task_state = State::Running;
                entry.trace = None;
                let token = CancellationToken::new();
                let handle = tokio::spawn(run_task(
                    self.clone(),
                    name.to_owned(),
                    source,
                    token.clone(),
                ));
                entry.running = Some((token, handle));
            }
        }
    }

    fn record_failure(&self, name: &str, trace: String) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.task_state = State::Failed;
            entry.trace = Some(trace);
        }
        self.publish_status(name);
    }
}

/// One connector task under the shared supervisor (transient failures restart it with
/// backoff); a permanent failure leaves the task FAILED with the error as its trace.
async fn run_task(worker: Worker, name: String, config: TaskConfig, shutdown: CancellationToken) {
    let destination = worker.destination.clone();
    let failure = match config {
        TaskConfig::PostgresSource(config) => {
            super::supervise_postgres_source(*config, destination, shutdown)
                .await
                .err()
                .map(|e| e.to_string())
        }
        TaskConfig::PostgresSink(config) => {
            super::supervise_postgres_sink(*config, destination, shutdown)
                .await
                .err()
                .map(|e| e.to_string())
        }
        TaskConfig::WindowAggregate(config) => {
            super::supervise_window_aggregate(*config, destination, shutdown)
                .await
                .err()
                .map(|e| e.to_string())
        }
    };
    if let Some(trace) = failure {
        worker.record_failure(&name, trace);
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
