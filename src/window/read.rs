//! The window stage's reading half: records are consumed and decoded on a thread of their own
//! while the stage applies the batch before, so decoding (a quarter of the stage's CPU) and
//! the engine run on two cores.
//!
//! A thread, not a task: the stage applies a batch without yielding, and a task it wakes on
//! its way (by taking a batch) waits in its worker's LIFO slot, where no other worker steals
//! it, until the stage yields again — reading and applying would take turns. The thread runs
//! a runtime of its own for the consumer and the schema registry (Avro).
//!
//! Batches come out in the order they were consumed, at most [`READ_AHEAD`] ahead of the one
//! applied.

use std::{collections::HashMap, sync::Arc};

use rdkafka::consumer::StreamConsumer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Error,
    config::WindowAggregateConfig,
    decode::{DecodeError, Decoded, Decoder},
};
use crate::{
    config::Converter,
    sink::postgres::{
        self as sink,
        avro::AvroReader,
        batch::Batch,
        record::{Document, SchemaCache},
        task::{avro_reader, json_document, next_batch},
    },
};

/// One record decoded; the outer `Err` says why it cannot be read at all (never its values).
pub(super) type Outcome = Result<Result<Decoded, DecodeError>, String>;

/// A batch and its records decoded, one outcome per record, in order.
pub(super) struct DecodedBatch {
    pub batch: Batch,
    pub outcomes: Vec<Outcome>,
    /// The PostgreSQL types of group and input columns seen so far, when this batch added some.
    pub column_types: Option<HashMap<String, String>>,
}

type Ready = Result<Option<DecodedBatch>, Error>;

/// Batches decoded ahead of the one applied: one was not enough to ride out the engine's
/// commits and the consumer's uneven fetches (the two took turns waiting for each other).
const READ_AHEAD: usize = 3;

/// The reading thread, seen from the stage.
pub(super) struct Reader {
    ready: mpsc::Receiver<Ready>,
    recycle: mpsc::Sender<Batch>,
    /// Stops the thread when the stage is gone.
    stop: CancellationToken,
}

impl Reader {
    /// Starts reading `consumer` (already assigned) until `shutdown`.
    pub fn start(
        config: Arc<WindowAggregateConfig>,
        consumer: Arc<StreamConsumer>,
        shutdown: &CancellationToken,
    ) -> Result<Self, Error> {
        let (ready_tx, ready) = mpsc::channel(READ_AHEAD);
        let (recycle, spare) = mpsc::channel(READ_AHEAD);
        let stop = shutdown.child_token();
        let name = format!("window-reader {}", config.name);
        let reading = Reading {
            decoder: Decoder::new(&config),
            readers: Readers {
                key: avro_reader(&config.key_converter),
                value: avro_reader(&config.value_converter),
                json_schemas: SchemaCache::default(),
            },
            types_sent: 0,
            config,
            consumer,
            stop: stop.clone(),
            spare,
        };
        let cannot_start = |error: std::io::Error| {
            Error::from(sink::Error::Decoder(format!(
                "cannot start the window stage's reading thread: {error}"
            )))
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(cannot_start)?;
        std::thread::Builder::new()
            .name(name)
            .spawn(move || runtime.block_on(reading.run(ready_tx)))
            .map_err(cannot_start)?;
        Ok(Self {
            ready,
            recycle,
            stop,
        })
    }

    /// The next batch, decoded; `None` once shutdown was asked for (after every batch read
    /// before it).
    pub async fn next(&mut self) -> Result<Option<DecodedBatch>, Error> {
        self.ready.recv().await.unwrap_or_else(|| {
            Err(sink::Error::Decoder(
                "the window stage's reading thread stopped without a word".to_owned(),
            )
            .into())
        })
    }

    /// Hands an applied batch back, so that its buffers are filled again.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.recycle.try_send(batch);
    }
}

impl Drop for Reader {
    /// The stage stopped or failed: the thread stops reading at once.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Avro readers for keys and values written with the AvroConverter, and the JSON schemas seen.
struct Readers {
    key: Option<AvroReader>,
    value: Option<AvroReader>,
    json_schemas: SchemaCache,
}

struct Reading {
    config: Arc<WindowAggregateConfig>,
    consumer: Arc<StreamConsumer>,
    stop: CancellationToken,
    spare: mpsc::Receiver<Batch>,
    decoder: Decoder,
    readers: Readers,
    /// How many column types the stage was told of.
    types_sent: usize,
}

impl Reading {
    /// Reads and decodes into `ready` until shutdown (`Ok(None)` sent last), an error (sent),
    /// or the stage goes away.
    async fn run(mut self, ready: mpsc::Sender<Ready>) {
        // The slot is taken before reading: the batch being applied and those in the channel
        // are all there is.
        while let Ok(slot) = ready.reserve().await {
            let next = self.next().await;
            let last = !matches!(next, Ok(Some(_)));
            slot.send(next);
            if last {
                return;
            }
        }
    }

    async fn next(&mut self) -> Ready {
        let recycled = self.spare.try_recv().ok();
        let Some(batch) = next_batch(
            &self.consumer,
            self.config.batch_size,
            0,
            recycled,
            &self.stop,
        )
        .await?
        else {
            return Ok(None);
        };
        // Connect JSON records the decoder reads without building documents; any other
        // record (Avro, or a JSON shape the fast path leaves) goes through documents.
        let fast_json = match (&self.config.key_converter, &self.config.value_converter) {
            (
                Converter::Json {
                    schemas_enable: key_schemas,
                },
                Converter::Json {
                    schemas_enable: value_schemas,
                },
            ) => Some((*key_schemas, *value_schemas)),
            _ => None,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for record in batch.iter() {
            let value = record.payload().filter(|v| !v.is_empty());
            let key = record.key().filter(|k| !k.is_empty());
            let fast = fast_json
                .zip(value)
                .and_then(|((key_schemas, value_schemas), value)| {
                    self.decoder
                        .decode_json(key, value, key_schemas, value_schemas)
                });
            outcomes.push(match fast {
                Some(decoded) => Ok(decoded),
                None => {
                    decode_documents(
                        &self.config,
                        &mut self.decoder,
                        &mut self.readers,
                        key,
                        value,
                    )
                    .await?
                }
            });
        }
        let types = self.decoder.column_types();
        let column_types = (types.len() != self.types_sent).then(|| {
            self.types_sent = types.len();
            types.clone()
        });
        Ok(Some(DecodedBatch {
            batch,
            outcomes,
            column_types,
        }))
    }
}

/// Decodes a record's key and value (absent when empty) through Connect documents, asking the
/// registry for Avro schemas it has not seen; `Err` only for what retrying may mend (the
/// registry away).
async fn decode_documents(
    config: &WindowAggregateConfig,
    decoder: &mut Decoder,
    readers: &mut Readers,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Outcome, Error> {
    let value = match read_document(
        value,
        readers.value.as_mut(),
        &config.value_converter,
        &mut readers.json_schemas,
        "value",
    )
    .await?
    {
        Ok(value) => value,
        Err(message) => return Ok(Err(message)),
    };
    let key = match read_document(
        key,
        readers.key.as_mut(),
        &config.key_converter,
        &mut readers.json_schemas,
        "key",
    )
    .await?
    {
        Ok(key) => key,
        Err(message) => return Ok(Err(message)),
    };
    Ok(Ok(decoder.decode(key, value)))
}

/// A key or value as a Connect document (`None`: absent or empty); the inner `Err` says why
/// it cannot be read.
async fn read_document(
    bytes: Option<&[u8]>,
    reader: Option<&mut AvroReader>,
    converter: &Converter,
    schemas: &mut SchemaCache,
    part: &str,
) -> Result<Result<Option<Document>, String>, Error> {
    let Some(bytes) = bytes else {
        return Ok(Ok(None));
    };
    match reader {
        None => Ok(json_document(bytes, converter, schemas)
            .map(Some)
            .map_err(|_| format!("the {part} is not JSON; the stage reads Connect JSON or Avro"))),
        Some(reader) => match reader.document(bytes).await {
            Ok(document) => Ok(Ok(Some(document))),
            Err(error) if error.is_transient() => {
                Err(sink::Error::Registry(error.to_string()).into())
            }
            Err(error) => Ok(Err(format!("the {part} cannot be read: {error}"))),
        },
    }
}
