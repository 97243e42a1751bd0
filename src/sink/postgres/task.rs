//! The sink task: consume change topics (read_committed), apply each batch and its offsets in
//! one target transaction, repeat.
//!
//! Kafka group offsets play no part: the task assigns itself every partition of its topics and
//! seeks to the offsets stored in the target database (the beginning when none are stored), so
//! what is applied and where reading resumes can never disagree.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
};
use tokio::sync::oneshot;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Error,
    avro::AvroReader,
    batch::{Batch, Record},
    config::{ErrorTolerance, PostgresSinkConfig, PrimaryKeyMode, TopicSelection},
    connection::{connect, connect_as},
    dlq::DeadLetters,
    record::{
        Change, Decoded, Document, RawDocument, RecordError, RecordPosition, SchemaCache,
        decode_document, decode_raw_document,
    },
    types::Unchanged,
    writer::{
        Encoded, KnownTables, PendingChange, TableName, Writer, claim_generation, encode_ahead,
        ensure_state_tables, load_offsets, reduce,
    },
};
use crate::{
    config::Converter,
    kafka::{ClientSettings, read_committed_consumer},
    metrics::ConsumerMetrics,
};

/// How long a batch waits for more records once it has one.
const BATCH_LINGER: Duration = Duration::from_millis(20);
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the sink looks for new topics and partitions.
const TOPIC_REFRESH: Duration = Duration::from_secs(2);
/// Transient write failures (connection loss, serialization failures, deadlocks) are retried
/// this often, with doubling backoff, before the task fails.
const MAX_WRITE_RETRIES: u32 = 6;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(10);
/// librdkafka prefetches up to `queued.min.messages` (100,000) records per partition by default,
/// ~200 MB of Debezium records with schemas; a batch or two ahead is all the sink can use. Once
/// the queue is full, the next fetch waits `fetch.queue.backoff.ms` (1 s by default), which
/// stalled the sink for 0.2–0.4 s every few batches (20 ms measured no faster than 100 ms).
const CONSUMER_PREFETCH: [(&str, &str); 4] = [
    ("queued.max.messages.kbytes", "32768"),
    ("fetch.max.bytes", "16777216"),
    ("max.partition.fetch.bytes", "4194304"),
    ("fetch.queue.backoff.ms", "100"),
];

/// `kafka` with [`CONSUMER_PREFETCH`] ahead of the worker's own overrides (which still win),
/// for consumers that apply batches as fast as they can read them: the sink and the window
/// stage.
pub(crate) fn with_prefetch_bounds(kafka: &ClientSettings) -> ClientSettings {
    let mut settings = kafka.clone();
    settings.overrides.splice(
        0..0,
        CONSUMER_PREFETCH
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    settings
}

/// Runs the sink until `shutdown` is cancelled (then `Ok`) or an error stops it.
///
/// Contract: a batch's rows and the next offsets of the partitions it read are committed in
/// one target transaction, and reading resumes from the stored offsets, so every record is
/// applied exactly once, across restarts and crashes.
pub async fn run(
    config: PostgresSinkConfig,
    kafka: &ClientSettings,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_metrics(config, kafka, ConsumerMetrics::detached(), shutdown).await
}

/// [`run`], reporting records committed and commit times to `metrics`.
pub async fn run_with_metrics(
    config: PostgresSinkConfig,
    kafka: &ClientSettings,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if !config.ignored_keys.is_empty() {
        info!(connector = %config.name, keys = ?config.ignored_keys, "configuration keys without effect here");
    }
    let config = Arc::new(config);
    let client = connect(&config).await?;
    ensure_state_tables(&client).await?;
    let generation = claim_generation(&client, &config.name).await?;
    // Ahead of the worker's own overrides, which still win.
    let consumer = Arc::new(read_committed_consumer(
        &with_prefetch_bounds(kafka),
        &format!("tributary-sink-{}", config.name),
    )?);
    // Reading and writing overlap (see below), so partition lookups get a connection of their own.
    let catalog = connect_as(&config, " (offsets lookup)").await?;
    let mut assigned: HashSet<(String, i32)> = HashSet::new();
    assign_new_partitions(&consumer, &config, &catalog, &mut assigned).await?;
    info!(connector = %config.name, generation, partitions = assigned.len(), "sink started");

    let dead_letters = match (&config.dead_letter_queue, config.errors_tolerance) {
        (Some(queue), ErrorTolerance::All) => {
            Some(DeadLetters::new(queue.clone(), &config.name, kafka).await?)
        }
        _ => None,
    };
    let unchanged = Arc::new(Unchanged::default());
    let writer = Writer::new(
        config.name.clone(),
        generation,
        config.insert_mode,
        config.schema_changes,
    );
    let (decoder, decoder_thread) = Decoder::start(
        Arc::clone(&config),
        Arc::clone(&unchanged),
        writer.known_tables(),
    )?;
    let reading = Reading {
        config: Arc::clone(&config),
        consumer: Arc::clone(&consumer),
        catalog,
        shutdown: shutdown.clone(),
        assigned,
        last_refresh: Instant::now(),
        unchanged,
        last_batch_bytes: 0,
        spare: None,
        readers: Readers {
            key: avro_reader(&config.key_converter),
            value: avro_reader(&config.value_converter),
            json_schemas: SchemaCache::default(),
        },
        decoder: decoder.clone(),
        known_tables: writer.known_tables(),
    };
    let writing = Writing {
        config: &config,
        consumer: &consumer,
        shutdown: &shutdown,
        decoder,
        client,
        writer,
        dead_letters,
        metrics,
    };
    let result = apply_batches(reading, writing).await;
    // Every sender of the decoder's jobs is gone with `reading` and `writing`: it ends after
    // the job at hand.
    let _ = tokio::task::spawn_blocking(move || decoder_thread.join()).await;
    if result.is_ok() {
        info!(connector = %config.name, "sink stopped");
    }
    result
}

/// The loop of `run` until shutdown (`Ok`) or an error.
///
/// Batch n+1 is read and decoded while batch n is written: the database works on one while
/// a task of its own reads (and the decoder thread decodes) the other. Batches are still
/// written one after the other, in order, and at most two are in hand.
async fn apply_batches(mut reading: Reading, mut writing: Writing<'_>) -> Result<(), Error> {
    let (ready, mut batches) = tokio::sync::mpsc::channel(1);
    let (recycle, spare) = tokio::sync::mpsc::channel(1);
    reading.spare = Some(spare);
    let reader = tokio::spawn(read_batches(reading, ready));
    let result = async {
        loop {
            // The reader sends its last word (shutdown or an error) before it ends.
            let next = batches.recv().await.ok_or_else(|| {
                Error::Decoder("the task reading records stopped without a word".to_owned())
            })?;
            let Some((batch, prepared)) = next? else {
                return Ok(());
            };
            if !writing.store(&batch, prepared).await? {
                return Ok(());
            }
            // One batch waiting is enough; another is freed.
            let _ = recycle.try_send(batch);
        }
    }
    .await;
    // A failed write ends the reading at once.
    reader.abort();
    let _ = reader.await;
    result
}

/// Reads and prepares batches into `ready` until shutdown (`Ok(None)` sent last), an error
/// (sent), or the writer goes away.
async fn read_batches(
    mut reading: Reading,
    ready: tokio::sync::mpsc::Sender<Result<Option<(Batch, Prepared)>, Error>>,
) {
    // The slot is taken before reading: the batch being written and this one are all there is.
    while let Ok(slot) = ready.reserve().await {
        let next = reading.next().await;
        let last = !matches!(next, Ok(Some(_)));
        slot.send(next);
        if last {
            return;
        }
    }
}

/// What the decoder thread is asked to do.
enum DecoderJob {
    /// Decode and prepare a batch of JSON records; the batch comes back with the result.
    Decode(Batch, oneshot::Sender<(Batch, Result<Prepared, Error>)>),
    /// Free a written batch's changes (tens of thousands of allocations).
    Free(TableChanges),
}

/// The sending side of the decoder thread: one thread (not the blocking pool, whose several
/// threads each keep an allocator arena of their own, costing hundreds of MB of RSS), which
/// also frees what it allocated.
#[derive(Clone)]
struct Decoder {
    jobs: mpsc::Sender<DecoderJob>,
}

impl Decoder {
    fn start(
        config: Arc<PostgresSinkConfig>,
        unchanged: Arc<Unchanged>,
        known: KnownTables,
    ) -> Result<(Self, std::thread::JoinHandle<()>), Error> {
        let (jobs, received) = mpsc::channel::<DecoderJob>();
        let thread = std::thread::Builder::new()
            .name(format!("sink-decoder {}", config.name))
            .spawn(move || {
                let mut schemas = (SchemaCache::default(), SchemaCache::default());
                while let Ok(job) = received.recv() {
                    match job {
                        DecoderJob::Decode(batch, reply) => {
                            let documents = read_json_documents(&config, &mut schemas, &batch);
                            let prepared = prepare(&config, &unchanged, &batch, documents).map(
                                |mut prepared| {
                                    // Off the writer's path: it only sends these.
                                    prepared.encoded = encode_ahead(&known, &prepared.changes);
                                    prepared
                                },
                            );
                            // The reader may be gone (a failed write ended the wait).
                            let _ = reply.send((batch, prepared));
                        }
                        DecoderJob::Free(changes) => drop(changes),
                    }
                }
            })
            .map_err(|error| Error::Decoder(format!("cannot start its thread: {error}")))?;
        Ok((Self { jobs }, thread))
    }

    async fn decode(&self, batch: Batch) -> Result<(Batch, Prepared), Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(DecoderJob::Decode(batch, reply))
            .map_err(|_| Error::Decoder("its thread has stopped".to_owned()))?;
        let (batch, prepared) = answer
            .await
            .map_err(|_| Error::Decoder("its thread stopped before answering".to_owned()))?;
        Ok((batch, prepared?))
    }

    fn free(&self, changes: TableChanges) {
        // Without the thread the changes are freed here, by the returned job.
        let _ = self.jobs.send(DecoderJob::Free(changes));
    }
}

/// The reading half: records in, decoded and reduced batches out.
struct Reading {
    config: Arc<PostgresSinkConfig>,
    consumer: Arc<StreamConsumer>,
    catalog: Client,
    shutdown: CancellationToken,
    assigned: HashSet<(String, i32)>,
    last_refresh: Instant,
    unchanged: Arc<Unchanged>,
    readers: Readers,
    /// The size of the last batch's keys and values: room for the next one is taken at once.
    last_batch_bytes: usize,
    /// Written batches come back here to be filled again: their ~20 MB buffers are allocated
    /// once rather than per batch (which left the allocator holding several of them).
    spare: Option<tokio::sync::mpsc::Receiver<Batch>>,
    decoder: Decoder,
    /// The writer's table shapes, for encoding ahead.
    known_tables: KnownTables,
}

impl Reading {
    /// The next batch, prepared; `None` when shutdown was asked for.
    async fn next(&mut self) -> Result<Option<(Batch, Prepared)>, Error> {
        loop {
            // Topics appear while the sink runs (the source creates them on a table's first
            // change).
            if self.last_refresh.elapsed() >= TOPIC_REFRESH {
                if self.catalog.is_closed() {
                    self.catalog = connect_as(&self.config, " (offsets lookup)").await?;
                }
                assign_new_partitions(
                    &self.consumer,
                    &self.config,
                    &self.catalog,
                    &mut self.assigned,
                )
                .await?;
                self.last_refresh = Instant::now();
            }
            let recycled = self.spare.as_mut().and_then(|spare| spare.try_recv().ok());
            let Some(batch) = next_batch(
                &self.consumer,
                self.config.batch_size,
                self.last_batch_bytes,
                recycled,
                &self.shutdown,
            )
            .await?
            else {
                return Ok(None);
            };
            if batch.is_empty() {
                continue;
            }
            self.last_batch_bytes = batch.bytes();
            if self.readers.key.is_some() || self.readers.value.is_some() {
                // Avro needs the registry (asynchronously) for schemas it has not seen.
                let documents = read_documents(&self.config, &mut self.readers, &batch).await?;
                let mut prepared = prepare(&self.config, &self.unchanged, &batch, documents)?;
                prepared.encoded = encode_ahead(&self.known_tables, &prepared.changes);
                return Ok(Some((batch, prepared)));
            }
            // JSON needs nothing but CPU: decoding runs on a thread of its own, next to the
            // task writing the previous batch.
            return self.decoder.decode(batch).await.map(Some);
        }
    }
}

/// The writing half: prepared batches into the target, one transaction each.
struct Writing<'a> {
    config: &'a PostgresSinkConfig,
    consumer: &'a Arc<StreamConsumer>,
    shutdown: &'a CancellationToken,
    decoder: Decoder,
    client: Client,
    writer: Writer,
    dead_letters: Option<DeadLetters>,
    metrics: ConsumerMetrics,
}

impl Writing<'_> {
    /// Writes one batch with its offsets; `false` when shutdown came first (nothing of the
    /// batch is committed then).
    async fn store(&mut self, batch: &Batch, prepared: Prepared) -> Result<bool, Error> {
        let config = self.config;
        let Prepared {
            truncates,
            mut changes,
            mut encoded,
            offsets,
            rejected,
        } = prepared;
        for (index, error) in &rejected {
            warn!(connector = %config.name, error = %error, "record skipped (errors.tolerance=all)");
            if let (Some(dead_letters), Some(message)) = (&self.dead_letters, batch.get(*index)) {
                dead_letters.send(&message.to_message(), error).await?;
            }
        }
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let result = match self
                .writer
                .write(&mut self.client, &truncates, &changes, &encoded, &offsets)
                .await
            {
                Err(err) if err.is_transient() && self.client.is_closed() => connect(config)
                    .await
                    .map(|fresh| self.client = fresh)
                    .and(Err(err)),
                other => other,
            };
            match result {
                Ok(()) => break,
                Err(err)
                    if err.data_sqlstate().is_some()
                        && config.errors_tolerance == ErrorTolerance::All =>
                {
                    let rejected = self
                        .writer
                        .find_rejected(&mut self.client, &truncates, &changes)
                        .await?;
                    if rejected.is_empty() {
                        return Err(err);
                    }
                    // What was encoded ahead still has the rejected changes.
                    encoded.clear();
                    for (table, index, sqlstate) in rejected.into_iter().rev() {
                        let Some(table_changes) = changes.get_mut(&table) else {
                            continue;
                        };
                        let change = table_changes.remove(index);
                        let Some(message) = batch.get(change.origin) else {
                            continue;
                        };
                        let error = RecordError::Rejected {
                            position: RecordPosition {
                                topic: message.topic().to_owned(),
                                partition: message.partition(),
                                offset: message.offset(),
                            },
                            sqlstate,
                        };
                        warn!(connector = %config.name, error = %error, "record skipped (errors.tolerance=all)");
                        if let Some(dead_letters) = &self.dead_letters {
                            dead_letters.send(&message.to_message(), &error).await?;
                        }
                    }
                }
                Err(err) if err.is_transient() && attempt < MAX_WRITE_RETRIES => {
                    attempt += 1;
                    let delay = RETRY_BACKOFF
                        .saturating_mul(1 << attempt.min(6))
                        .min(MAX_RETRY_BACKOFF);
                    warn!(connector = %config.name, attempt, error = %err, "batch not written; retrying");
                    // Nothing of the batch is committed: stopping here loses nothing.
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Ok(false),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(err) => return Err(err),
            }
        }
        // Group offsets are for lag monitoring only: the stored offsets are the truth.
        let mut committed = TopicPartitionList::new();
        for ((topic, partition), next) in &offsets {
            let _ = committed.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(error) = self.consumer.commit(&committed, CommitMode::Async) {
            debug!(connector = %config.name, error = %error, "group offsets not committed");
        }
        self.metrics
            .committed(batch.len() as u64, started.elapsed());
        debug!(connector = %config.name, records = batch.len(), "batch committed");
        self.decoder.free(changes);
        Ok(true)
    }
}

/// Assigns the partitions of the selected topics not assigned yet, each at its stored offset
/// (the beginning when none is stored).
async fn assign_new_partitions(
    consumer: &Arc<StreamConsumer>,
    config: &PostgresSinkConfig,
    client: &Client,
    assigned: &mut HashSet<(String, i32)>,
) -> Result<(), Error> {
    let fresh: Vec<(String, i32)> = topic_partitions(consumer, &config.topics)
        .await?
        .into_iter()
        .filter(|p| !assigned.contains(p))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let stored = load_offsets(client, &config.name).await?;
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in &fresh {
        let offset = match stored.get(&(topic.clone(), *partition)) {
            Some(next) => Offset::Offset(*next),
            None => Offset::Beginning,
        };
        assignment
            .add_partition_offset(topic, *partition, offset)
            .map_err(|source| Error::Consumer {
                context: format!("assigning {topic}/{partition}"),
                source,
            })?;
    }
    consumer
        .incremental_assign(&assignment)
        .map_err(|source| Error::Consumer {
            context: "assigning partitions".to_owned(),
            source,
        })?;
    info!(connector = %config.name, partitions = fresh.len(), "reading new partitions");
    assigned.extend(fresh);
    Ok(())
}

/// Every partition of the selected topics that exist (internal topics never match a pattern).
pub(crate) async fn topic_partitions(
    consumer: &Arc<StreamConsumer>,
    topics: &TopicSelection,
) -> Result<Vec<(String, i32)>, Error> {
    let consumer = Arc::clone(consumer);
    let topics = topics.clone();
    // Metadata requests block on the network: keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let fetch = |topic: Option<&str>| {
            consumer
                .fetch_metadata(topic, METADATA_TIMEOUT)
                .map_err(|source| Error::Consumer {
                    context: "reading topic metadata".to_owned(),
                    source,
                })
        };
        let mut partitions = Vec::new();
        match &topics {
            TopicSelection::Names(names) => {
                for name in names {
                    let metadata = fetch(Some(name))?;
                    // A named topic that does not exist yet is picked up once it does.
                    if let Some(topic) = metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .filter(|t| t.error().is_none())
                    {
                        partitions
                            .extend(topic.partitions().iter().map(|p| (name.clone(), p.id())));
                    }
                }
            }
            TopicSelection::Pattern(pattern) => {
                let metadata = fetch(None)?;
                for topic in metadata.topics() {
                    if !topic.name().starts_with("__") && pattern.is_match(topic.name()) {
                        partitions.extend(
                            topic
                                .partitions()
                                .iter()
                                .map(|p| (topic.name().to_owned(), p.id())),
                        );
                    }
                }
            }
        }
        Ok(partitions)
    })
    .await
    .unwrap_or_else(|_| {
        Err(Error::Table {
            table: "-".to_owned(),
            message: "reading topic metadata panicked".to_owned(),
        })
    })
}

/// Up to `batch_size` records: waits for the first, then takes what arrives within a short
/// linger. Empty when nothing arrived for a while; `None` when shutdown was asked for.
pub(crate) async fn next_batch(
    consumer: &StreamConsumer,
    batch_size: usize,
    expected_bytes: usize,
    recycled: Option<Batch>,
    shutdown: &CancellationToken,
) -> Result<Option<Batch>, Error> {
    let failed = |source| Error::Consumer {
        context: "receiving records".to_owned(),
        source,
    };
    let first = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ok(None),
        message = consumer.recv() => message.map_err(failed)?,
        () = tokio::time::sleep(TOPIC_REFRESH) => return Ok(Some(Batch::default())),
    };
    let mut batch = match recycled {
        Some(mut batch) => {
            batch.clear();
            batch
        }
        None => Batch::with_capacity(batch_size.min(100_000), expected_bytes),
    };
    batch.push(&first);
    drop(first);
    let deadline = tokio::time::Instant::now() + BATCH_LINGER;
    while batch.len() < batch_size {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(message) => batch.push(&message.map_err(failed)?),
            Err(_) => break,
        }
    }
    Ok(Some(batch))
}

type TableChanges = BTreeMap<TableName, Vec<PendingChange>>;
type NextOffsets = BTreeMap<(String, i32), i64>;

/// Decodes and routes a batch, reduces it per key, and notes the next offset per partition.
/// A batch ready to write, and the records of it that cannot be applied (by index), which
/// `errors.tolerance=all` lets through.
struct Prepared {
    /// Tables to empty before `changes` are applied.
    truncates: BTreeSet<TableName>,
    changes: TableChanges,
    /// `changes` encoded as statement parameters for the tables' last known shapes.
    encoded: HashMap<TableName, Encoded>,
    offsets: NextOffsets,
    rejected: Vec<(usize, RecordError)>,
}

/// Avro readers for keys and values written with the AvroConverter, and the schemas of JSON
/// records seen so far.
struct Readers {
    key: Option<AvroReader>,
    value: Option<AvroReader>,
    json_schemas: SchemaCache,
}

pub(crate) fn avro_reader(converter: &Converter) -> Option<AvroReader> {
    match converter {
        Converter::Avro(registry) => Some(AvroReader::new(registry)),
        Converter::Json { .. } => None,
    }
}

/// A JSON key or value as a document: with `schemas.enable=false` the whole JSON is the payload
/// (so a row with just the fields `schema` and `payload` is not taken for an envelope);
/// otherwise `{"schema", "payload"}` is unwrapped when present and a bare payload read as one.
pub(crate) fn json_document(
    bytes: &[u8],
    converter: &Converter,
    schemas: &mut SchemaCache,
) -> Result<Document, serde_json::Error> {
    match converter {
        Converter::Json {
            schemas_enable: false,
        } => serde_json::from_slice(bytes).map(|payload| Document {
            schema: None,
            payload,
        }),
        _ => schemas.document(bytes),
    }
}

/// A record's value: read into a tree (Avro, or JSON on the registry path) or left as JSON text.
enum ValueDocument<'a> {
    Tree(Document),
    Raw(RawDocument<'a>),
}

/// A record's key and value as documents (`None`: absent or empty).
type Documents<'a> = (Option<Document>, Option<ValueDocument<'a>>);

/// `read_documents` for JSON converters, without the registry: values are left as JSON text
/// for `decode_raw_document`. Keys and values have schema caches of their own, so that each
/// remembers its last schema.
fn read_json_documents<'a>(
    config: &PostgresSinkConfig,
    (key_schemas, value_schemas): &mut (SchemaCache, SchemaCache),
    batch: &'a Batch,
) -> Vec<Result<Documents<'a>, RecordError>> {
    let not_json = |message: Record<'_>, part| RecordError::NotJson {
        position: RecordPosition {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        part,
    };
    batch
        .iter()
        .map(|message| {
            let Some(value) = message.payload().filter(|v| !v.is_empty()) else {
                return Ok((None, None));
            };
            let value = match config.value_converter {
                Converter::Json {
                    schemas_enable: false,
                } => serde_json::from_slice(value).map(|payload| RawDocument {
                    schema: None,
                    payload,
                }),
                _ => value_schemas.raw_document(value),
            }
            .map_err(|_| not_json(message, "value"))?;
            let key = match config.primary_key_mode {
                PrimaryKeyMode::RecordKey => message
                    .key()
                    .filter(|k| !k.is_empty())
                    .map(|key| match config.key_converter {
                        Converter::Json {
                            schemas_enable: false,
                        } => json_document(key, &config.key_converter, key_schemas),
                        // Only the (small) payload becomes a tree.
                        _ => key_schemas.raw_document(key).and_then(|raw| {
                            serde_json::from_str(raw.payload.get()).map(|payload| Document {
                                schema: raw.schema,
                                payload,
                            })
                        }),
                    })
                    .transpose()
                    .map_err(|_| not_json(message, "key"))?,
                _ => None,
            };
            Ok((key, Some(ValueDocument::Raw(value))))
        })
        .collect()
}

/// Reads every record's key (when the key is needed) and value into Connect JSON documents.
/// A registry that cannot be reached stops the batch; a record that cannot be read is that
/// record's error.
async fn read_documents<'a>(
    config: &PostgresSinkConfig,
    readers: &mut Readers,
    batch: &'a Batch,
) -> Result<Vec<Result<Documents<'a>, RecordError>>, Error> {
    let mut documents = Vec::with_capacity(batch.len());
    for message in batch.iter() {
        let position = RecordPosition {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let value = message.payload().filter(|v| !v.is_empty());
        let key = match (value, config.primary_key_mode) {
            (Some(_), PrimaryKeyMode::RecordKey) => message.key().filter(|k| !k.is_empty()),
            _ => None,
        };
        let converter = |part: &str| {
            if part == "key" {
                &config.key_converter
            } else {
                &config.value_converter
            }
        };
        let read = async |bytes: Option<&[u8]>,
                          reader: Option<&mut AvroReader>,
                          schemas: &mut SchemaCache,
                          part| {
            let Some(bytes) = bytes else {
                return Ok(Ok(None));
            };
            match reader {
                None => Ok(json_document(bytes, converter(part), schemas)
                    .map(Some)
                    .map_err(|_| RecordError::NotJson {
                        position: position.clone(),
                        part,
                    })),
                Some(reader) => match reader.document(bytes).await {
                    Ok(document) => Ok(Ok(Some(document))),
                    Err(error) if error.is_transient() => Err(Error::Registry(error.to_string())),
                    Err(error) => Ok(Err(RecordError::Unreadable {
                        position: position.clone(),
                        part,
                        reason: error.to_string(),
                    })),
                },
            }
        };
        let value = read(
            value,
            readers.value.as_mut(),
            &mut readers.json_schemas,
            "value",
        )
        .await?;
        let key = read(key, readers.key.as_mut(), &mut readers.json_schemas, "key").await?;
        documents
            .push(value.and_then(|value| key.map(|key| (key, value.map(ValueDocument::Tree)))));
    }
    Ok(documents)
}

fn prepare(
    config: &PostgresSinkConfig,
    unchanged: &Unchanged,
    batch: &Batch,
    documents: Vec<Result<Documents<'_>, RecordError>>,
) -> Result<Prepared, Error> {
    let mut routed: BTreeMap<TableName, Vec<(String, PendingChange)>> = BTreeMap::new();
    let mut offsets = NextOffsets::new();
    let mut rejected = Vec::new();
    let mut truncates = BTreeSet::new();
    let mut routes = Routes::default();
    // One position, its topic copied only when it changes (not once per record).
    let mut position = RecordPosition {
        topic: String::new(),
        partition: 0,
        offset: 0,
    };
    for (index, (message, document)) in batch.iter().zip(documents).enumerate() {
        if position.topic != message.topic() {
            position.topic.clear();
            position.topic.push_str(message.topic());
        }
        position.partition = message.partition();
        position.offset = message.offset();
        note_offset(&mut offsets, &position);
        let routed_change = document
            .and_then(|(key, value)| match value {
                Some(ValueDocument::Raw(value)) => {
                    decode_raw_document(config, unchanged, &position, key, Some(value))
                }
                Some(ValueDocument::Tree(value)) => {
                    decode_document(config, unchanged, &position, key, Some(value))
                }
                None => Ok(None),
            })
            .and_then(|decoded| {
                decoded
                    .map(|d| {
                        routes
                            .table(&config.collection_name_format, &position, &d)
                            .map(|t| (t, d))
                    })
                    .transpose()
            });
        let (table, decoded) = match routed_change {
            Ok(Some(routed_change)) => routed_change,
            Ok(None) => continue,
            Err(error) if config.errors_tolerance == ErrorTolerance::All => {
                rejected.push((index, error));
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if decoded.change == Change::Truncate {
            // What the batch had for the table before is emptied anyway.
            routed.remove(table);
            truncates.insert(table.clone());
            continue;
        }
        let identity = match config.primary_key_mode {
            // Without a key every record is a row of its own.
            PrimaryKeyMode::None => position.to_string(),
            PrimaryKeyMode::RecordKey | PrimaryKeyMode::RecordValue | PrimaryKeyMode::Kafka => {
                decoded.key_identity
            }
        };
        let change = PendingChange {
            key: decoded.key,
            change: decoded.change,
            origin: index,
            // The record key is the source's primary key: a create names a row the target
            // cannot have yet (if it follows the source; the writer checks).
            created: decoded.created && config.primary_key_mode == PrimaryKeyMode::RecordKey,
        };
        match routed.get_mut(table) {
            Some(changes) => changes.push((identity, change)),
            None => {
                // The first table gets room for the rest of the batch (most batches have one
                // table): growing a vector of ten thousand changes copies it again and again.
                let room = if routed.is_empty() {
                    batch.len() - index
                } else {
                    0
                };
                let mut changes = Vec::with_capacity(room);
                changes.push((identity, change));
                routed.insert(table.clone(), changes);
            }
        }
    }
    let changes = routed
        .into_iter()
        .map(|(table, changes)| (table, reduce(changes)))
        .collect();
    Ok(Prepared {
        truncates,
        changes,
        encoded: HashMap::new(),
        offsets,
        rejected,
    })
}

/// Records the offset after `position` as its partition's next offset.
fn note_offset(offsets: &mut NextOffsets, position: &RecordPosition) {
    let next = position.offset + 1;
    // Looked up by reference first: a batch has few partitions and many records.
    let stored = offsets.iter_mut().find(|((topic, partition), _)| {
        *partition == position.partition && *topic == position.topic
    });
    match stored {
        Some((_, stored)) => *stored = (*stored).max(next),
        None => {
            offsets.insert((position.topic.clone(), position.partition), next);
        }
    }
}

/// The table of the last record routed, by what its name was made from: consecutive records
/// nearly always go to the same table.
#[derive(Default)]
struct Routes {
    last: Option<(String, [Option<String>; 3], TableName)>,
}

impl Routes {
    fn table(
        &mut self,
        format: &str,
        position: &RecordPosition,
        decoded: &Decoded,
    ) -> Result<&TableName, RecordError> {
        let sources = [
            &decoded.source_db,
            &decoded.source_schema,
            &decoded.source_table,
        ];
        let known = self.last.as_ref().is_some_and(|(topic, names, _)| {
            *topic == position.topic
                && names
                    .iter()
                    .zip(sources)
                    .all(|(a, b)| a.as_deref() == b.as_deref())
        });
        if !known {
            let table = table_name(format, position, decoded)?;
            self.last = Some((
                position.topic.clone(),
                sources.map(|s| s.as_deref().map(str::to_owned)),
                table,
            ));
        }
        Ok(self
            .last
            .as_ref()
            .map(|(_, _, table)| table)
            .expect("just set"))
    }
}

/// The target table of a record under `collection.name.format`: placeholders filled in (the
/// topic's dots become `_`), then a `.` of the format itself separates schema and table.
fn table_name(
    format: &str,
    position: &RecordPosition,
    decoded: &Decoded,
) -> Result<TableName, RecordError> {
    let mut parts = vec![String::new()];
    let mut rest = format;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').unwrap_or(after.len());
            let name = &after[..end];
            let value = match name {
                "topic" => Some(position.topic.replace('.', "_")),
                "source.db" => decoded.source_db.as_deref().map(str::to_owned),
                "source.schema" => decoded.source_schema.as_deref().map(str::to_owned),
                "source.table" => decoded.source_table.as_deref().map(str::to_owned),
                _ => None,
            };
            let value = value.ok_or_else(|| RecordError::Shape {
                position: position.clone(),
                message: format!(
                    "has no {name} for collection.name.format (no Debezium source block?)"
                ),
            })?;
            if let Some(part) = parts.last_mut() {
                part.push_str(&value);
            }
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap_or('.');
            if c == '.' {
                parts.push(String::new());
            } else if let Some(part) = parts.last_mut() {
                part.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    match parts.as_slice() {
        [name] if !name.is_empty() => Ok(TableName {
            schema: "public".to_owned(),
            name: name.clone(),
        }),
        [schema, name] if !schema.is_empty() && !name.is_empty() => Ok(TableName {
            schema: schema.clone(),
            name: name.clone(),
        }),
        _ => Err(RecordError::Shape {
            position: position.clone(),
            message: format!(
                "collection.name.format {format:?} gives no table name of the form [schema.]table"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded<'a>(schema: &'a str, table: &'a str) -> Decoded<'a> {
        Decoded {
            source_db: Some("db".into()),
            source_schema: Some(schema.into()),
            source_table: Some(table.into()),
            key: Vec::new(),
            key_identity: String::new(),
            change: Change::Delete,
            created: false,
        }
    }

    #[test]
    fn schemaless_json_is_never_unwrapped() {
        let row = serde_json::json!({"schema": {"type": "int32"}, "payload": 1});
        let bytes = row.to_string();
        let mut schemas = SchemaCache::default();
        let plain = Converter::Json {
            schemas_enable: false,
        };
        let document = json_document(bytes.as_bytes(), &plain, &mut schemas).expect("json");
        assert_eq!(document.payload, row);
        assert!(document.schema.is_none());
        let with_schemas = Converter::Json {
            schemas_enable: true,
        };
        let document = json_document(bytes.as_bytes(), &with_schemas, &mut schemas).expect("json");
        assert_eq!(document.payload, serde_json::json!(1));
        assert_eq!(
            document.schema.map(|s| s.kind.clone()).as_deref(),
            Some("int32")
        );
    }

    #[test]
    fn collection_names() {
        let position = RecordPosition {
            topic: "shop.public.orders".into(),
            partition: 0,
            offset: 0,
        };
        let d = decoded("My.Schema", "odd \"t\"");
        let name = |format: &str| table_name(format, &position, &d).map(|t| (t.schema, t.name));
        assert_eq!(
            name("${topic}").expect("ok"),
            ("public".into(), "shop_public_orders".into())
        );
        assert_eq!(
            name("${source.schema}.${source.table}").expect("ok"),
            ("My.Schema".into(), "odd \"t\"".into())
        );
        assert_eq!(
            name("archive.${source.table}_v2").expect("ok"),
            ("archive".into(), "odd \"t\"_v2".into())
        );
        assert!(name("a.b.c").is_err());
    }
}
