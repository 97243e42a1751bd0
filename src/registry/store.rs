//! The registry kept on a compacted Kafka topic: every change is written there first, with
//! `acks=all`, and applied in memory only once the broker has it; on start the topic is replayed.
//!
//! Writes are serialised within the process, so ids and versions never collide between two
//! concurrent calls. Several processes writing to one topic at once are not coordinated (Confluent
//! elects a leader for that); run one registry per topic.

use std::{
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard},
    time::Duration,
};

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::Mutex;

use super::{
    compatibility::CompatibilityLevel,
    error::{RegistryError, StoreError},
    records::Record,
    state::{Candidate, Planned, RegisteredSchema, RegistryState, VersionSelector},
};
use crate::kafka::{
    self, ClientSettings,
    compacted::{self, StateRole},
};

/// Topic name when the configuration names none (Confluent's default).
pub const DEFAULT_SCHEMAS_TOPIC: &str = "_schemas";

/// How long one write may take, retries included, before the call fails with a store error.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where changes go: a Kafka topic, or nowhere (a registry that lives and dies with the process).
enum Journal {
    Kafka {
        topic: String,
        producer: FutureProducer,
    },
    Memory,
}

/// The schema registry. Clones share one registry.
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    state: RwLock<RegistryState>,
    /// Held from planning a change until it is applied, across the write to Kafka.
    writer: Mutex<()>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topic = match &self.inner.journal {
            Journal::Kafka { topic, .. } => Some(topic.as_str()),
            Journal::Memory => None,
        };
        f.debug_struct("SchemaRegistry")
            .field("topic", &topic)
            .finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// Opens the registry on `topic`: creates it (compacted, one partition) when missing, then
    /// replays it to its end within `timeout`. A record that cannot be part of the registry stops
    /// the start with an error naming its partition, offset and key.
    pub async fn open(
        settings: &ClientSettings,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        compacted::ensure_compacted_topic(settings, StateRole::Schemas, topic, 1).await?;
        let latest = compacted::read_latest(settings, StateRole::Schemas, topic, timeout).await?;
        let mut state = RegistryState::default();
        for (key, stored) in &latest {
            let corrupt = |reason: String| StoreError::CorruptRecord {
                topic: topic.to_owned(),
                partition: stored.partition,
                offset: stored.offset,
                key: String::from_utf8_lossy(key).into_owned(),
                reason,
            };
            // Newest per key, keys in byte order: each record names its subject, version and
            // id, so the order across keys does not change the outcome.
            let Some(record) = Record::decode(key, stored.value.as_deref()).map_err(corrupt)?
            else {
                continue;
            };
            state.apply(&record).map_err(corrupt)?;
        }
        let producer = kafka::idempotent_producer(settings, DELIVERY_TIMEOUT)?;
        Ok(Self::with(
            Journal::Kafka {
                topic: topic.to_owned(),
                producer,
            },
            state,
        ))
    }

    /// A registry kept in memory only, for tests and tools: everything is lost on exit.
    pub fn in_memory() -> Self {
        Self::with(Journal::Memory, RegistryState::default())
    }

    fn with(journal: Journal, state: RegistryState) -> Self {
        Self {
            inner: Arc::new(Inner {
                journal,
                state: RwLock::new(state),
                writer: Mutex::new(()),
            }),
        }
    }

    fn state(&self) -> RwLockReadGuard<'_, RegistryState> {
        // A panic while applying cannot leave a half-applied record behind that matters more
        // than stopping every later call; keep serving.
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Plans a change, writes its records and applies them, one change at a time.
    async fn change<T>(
        &self,
        plan: impl FnOnce(&RegistryState) -> Result<Planned<T>, RegistryError>,
    ) -> Result<T, RegistryError> {
        let _writing = self.inner.writer.lock().await;
        let planned = plan(&self.state())?;
        for record in &planned.records {
            self.write(record).await?;
            let mut state = self
                .inner
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            state
                .apply(record)
                .expect("a record planned against the current state applies to it");
        }
        Ok(planned.answer)
    }

    async fn write(&self, record: &Record) -> Result<(), StoreError> {
        let Journal::Kafka { topic, producer } = &self.inner.journal else {
            return Ok(());
        };
        let (key, value) = record.encode();
        let mut message = FutureRecord::<[u8], [u8]>::to(topic).key(&key);
        if let Some(value) = &value {
            message = message.payload(value);
        }
        producer
            .send(message, DELIVERY_TIMEOUT)
            .await
            .map_err(|(source, _)| kafka::Error::WriteStateTopic {
                topic: topic.clone(),
                key: String::from_utf8_lossy(&key).into_owned(),
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Registers an Avro schema under `subject`; answers its id (the existing one when the
    /// subject already has the schema).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let candidate = Candidate::parse(schema)?;
        self.change(|state| state.plan_register(subject, &candidate))
            .await
    }

    /// The version of `subject` that holds `schema`.
    pub fn lookup(
        &self,
        subject: &str,
        schema: &str,
        include_deleted: bool,
    ) -> Result<RegisteredSchema, RegistryError> {
        let candidate = Candidate::parse(schema)?;
        self.state().lookup(subject, &candidate, include_deleted)
    }

    /// The schema text of `id`.
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        self.state().schema(id)
    }

    /// The subjects and versions that use `id`.
    pub fn versions_of_id(
        &self,
        id: u32,
        include_deleted: bool,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        self.state().id_versions(id, include_deleted)
    }

    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.state().subjects(include_deleted)
    }

    pub fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        self.state().versions(subject, include_deleted)
    }

    pub fn version(
        &self,
        subject: &str,
        version: VersionSelector,
        include_deleted: bool,
    ) -> Result<RegisteredSchema, RegistryError> {
        self.state().version(subject, version, include_deleted)
    }

    /// Soft deletes a version, or removes a soft-deleted one when `permanent`; answers its number.
    pub async fn delete_version(
        &self,
        subject: &str,
        version: VersionSelector,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        self.change(|state| state.plan_delete_version(subject, version, permanent))
            .await
    }

    /// Soft deletes a subject, or removes a soft-deleted one when `permanent`; answers the
    /// versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        self.change(|state| state.plan_delete_subject(subject, permanent))
            .await
    }

    /// Findings of `schema` against one version of `subject` under its level (empty:
    /// compatible).
    pub fn test_compatibility(
        &self,
        subject: &str,
        version: VersionSelector,
        schema: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let candidate = Candidate::parse(schema)?;
        self.state()
            .test_against_version(subject, version, &candidate)
    }

    /// Findings of `schema` against every version its registration would be checked against.
    pub fn test_compatibility_with_subject(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let candidate = Candidate::parse(schema)?;
        Ok(self.state().test_against_subject(subject, &candidate))
    }

    pub fn global_compatibility(&self) -> CompatibilityLevel {
        self.state().global_level()
    }

    pub async fn set_global_compatibility(
        &self,
        level: CompatibilityLevel,
    ) -> Result<CompatibilityLevel, RegistryError> {
        self.change(|state| Ok(state.plan_set_level(None, level)))
            .await
    }

    /// The subject's own level, if it has one.
    pub fn subject_compatibility(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.state().subject_level(subject)
    }

    /// The level registrations under `subject` are checked with.
    pub fn effective_compatibility(&self, subject: &str) -> CompatibilityLevel {
        self.state().effective_level(subject)
    }

    pub async fn set_subject_compatibility(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<CompatibilityLevel, RegistryError> {
        self.change(|state| Ok(state.plan_set_level(Some(subject), level)))
            .await
    }

    /// Removes the subject's own level; answers the level it had.
    pub async fn delete_subject_compatibility(
        &self,
        subject: &str,
    ) -> Result<CompatibilityLevel, RegistryError> {
        self.change(|state| state.plan_delete_subject_level(subject))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"}]}"#;

    #[tokio::test]
    async fn concurrent_registrations_get_distinct_ids_and_versions() {
        let registry = SchemaRegistry::in_memory();
        registry
            .set_global_compatibility(CompatibilityLevel::None)
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20 {
            let registry = registry.clone();
            tasks.spawn(async move {
                let schema = format!(r#"{{"type":"fixed","name":"F{n}","size":{}}}"#, n + 1);
                registry.register("s", &schema).await.unwrap()
            });
        }
        let mut ids = Vec::new();
        while let Some(id) = tasks.join_next().await {
            ids.push(id.unwrap());
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=20).collect::<Vec<u32>>());
        assert_eq!(
            registry.versions("s", false).unwrap(),
            (1..=20).collect::<Vec<u32>>()
        );
    }

    #[tokio::test]
    async fn a_refused_change_writes_and_applies_nothing() {
        let registry = SchemaRegistry::in_memory();
        assert_eq!(registry.register("s", V1).await.unwrap(), 1);
        let err = registry.register("s", r#""string""#).await.unwrap_err();
        assert_eq!(err.error_code(), 409);
        assert_eq!(registry.versions("s", false).unwrap(), vec![1]);
        let err = registry.register("s", "{").await.unwrap_err();
        assert_eq!(err.error_code(), 42201);
    }
}
