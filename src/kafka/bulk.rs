//! The source's transactional producer: no delivery future per record, failed deliveries only
//! reported (the commit is the check), and record values handed to librdkafka instead of copied.
//! The crate's one `unsafe` module: librdkafka's C call that takes a buffer over.
#![allow(unsafe_code)]

use std::{
    ffi::{CString, c_void},
    mem::ManuallyDrop,
    ops::Deref,
    ptr::{self, NonNull},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext, Message, bindings as rdsys,
    config::FromClientConfigAndContext,
    error::{IsError, KafkaError, KafkaResult},
    producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer},
};
use rdsys::rd_kafka_vtype_t as RDKafkaVtype;
use tracing::warn;

use super::{
    ClientSettings, Error,
    client::{init_transactions, transactional_config},
};

/// As [`super::transactional_producer`], for senders that learn the outcome from
/// `commit_transaction` alone: no delivery future per record, and librdkafka reports failed
/// deliveries only (they are logged; the transaction then fails to commit). Each record costs a
/// few allocations and a callback less, which is a visible share of a snapshot's CPU.
pub async fn bulk_transactional_producer(
    settings: &ClientSettings,
    transactional_id: &str,
    init_timeout: Duration,
) -> Result<Arc<BulkProducer>, Error> {
    let mut config = transactional_config(settings, transactional_id);
    config.set("delivery.report.only.error", "true");
    let inner =
        ThreadedProducer::from_config_and_context(&config, BulkContext).map_err(|source| {
            Error::CreateClient {
                client: "transactional producer",
                bootstrap_servers: settings.bootstrap_servers.clone(),
                source,
            }
        })?;
    let inner = init_transactions(inner, transactional_id, init_timeout).await?;
    Ok(Arc::new(BulkProducer { inner }))
}

/// A transactional producer without delivery futures; see [`bulk_transactional_producer`].
/// Everything of [`ThreadedProducer`] (transactions, `send`) is reached through it.
pub struct BulkProducer {
    inner: ThreadedProducer<BulkContext>,
}

impl Deref for BulkProducer {
    type Target = ThreadedProducer<BulkContext>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::fmt::Debug for BulkProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkProducer").finish_non_exhaustive()
    }
}

/// A record `send_owned` could not queue, returned whole.
#[derive(Debug)]
pub struct Refused {
    pub error: KafkaError,
    pub record: OwnedRecord,
}

/// A record's value and key in one buffer, the value first and the key after it. librdkafka
/// takes the buffer over by its start (the value) and copies the key, so a record costs one
/// allocation, freed on librdkafka's thread, where a separate key cost a second.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    bytes: Vec<u8>,
    /// Where the value ends and the key begins; None for a null value (`bytes` is the key).
    value_len: Option<usize>,
    has_key: bool,
}

impl OwnedRecord {
    /// `value` with `key` appended to it (into its spare capacity when it has room).
    pub fn new(key: Option<&[u8]>, value: Option<Vec<u8>>) -> Self {
        match value {
            Some(mut bytes) => {
                let value_len = bytes.len();
                bytes.extend_from_slice(key.unwrap_or_default());
                Self {
                    bytes,
                    value_len: Some(value_len),
                    has_key: key.is_some(),
                }
            }
            None => Self {
                bytes: key.unwrap_or_default().to_vec(),
                value_len: None,
                has_key: key.is_some(),
            },
        }
    }

    /// A value whose buffer already ends with its key, `key_len` bytes (None: a null key).
    pub fn from_value_then_key(bytes: Vec<u8>, key_len: Option<usize>) -> Self {
        let value_len = bytes.len() - key_len.unwrap_or(0);
        Self {
            bytes,
            value_len: Some(value_len),
            has_key: key_len.is_some(),
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.has_key
            .then(|| &self.bytes[self.value_len.unwrap_or(0)..])
    }

    pub fn value(&self) -> Option<&[u8]> {
        self.value_len.map(|len| &self.bytes[..len])
    }

    /// The bytes of key and value together.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// One topic's librdkafka handle, looked up once. Naming the topic on every send made
/// librdkafka look it up by name under a lock for each record (a fortieth of a snapshot's CPU).
/// Holds the producer, so the handle is always destroyed before the client it belongs to.
pub struct TopicHandle {
    native: NonNull<rdsys::rd_kafka_topic_t>,
    name: String,
    producer: Arc<BulkProducer>,
}

// SAFETY: librdkafka topic handles are reference-counted and may be used from any thread.
unsafe impl Send for TopicHandle {}
unsafe impl Sync for TopicHandle {}

impl TopicHandle {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_topic_new and is released once; the producer
        // it belongs to is still alive (`self.producer` is dropped after this).
        unsafe { rdsys::rd_kafka_topic_destroy(self.native.as_ptr()) };
    }
}

impl std::fmt::Debug for TopicHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BulkProducer {
    /// The handle of `topic` for [`Self::send_owned`]; its settings are the producer's (the
    /// same handle librdkafka makes when a send names the topic).
    pub fn topic(self: &Arc<Self>, topic: &str) -> Result<TopicHandle, KafkaError> {
        let name = CString::new(topic).map_err(|_| {
            KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::InvalidTopic)
        })?;
        // SAFETY: a valid client and NUL-terminated name; a null configuration means the
        // producer's default topic configuration.
        let native = unsafe {
            rdsys::rd_kafka_topic_new(
                self.inner.client().native_ptr(),
                name.as_ptr(),
                ptr::null_mut(),
            )
        };
        match NonNull::new(native) {
            Some(native) => Ok(TopicHandle {
                native,
                name: topic.to_owned(),
                producer: Arc::clone(self),
            }),
            // SAFETY: reads this thread's last librdkafka error, set by the failed call.
            None => Err(KafkaError::MessageProduction(
                unsafe { rdsys::rd_kafka_last_error() }.into(),
            )),
        }
    }

    /// Commits the open transaction once all its records are acknowledged. rust-rdkafka's
    /// `commit_transaction` waits for them by polling for delivery reports in 100 ms steps, and
    /// this producer reports no successes, so every commit took a whole number of 100 ms steps
    /// (a snapshot's source held its records for 0.1–0.4 s of each second); librdkafka's flush
    /// wakes when the last record is acknowledged. Failed deliveries are still reported (the
    /// polling thread serves them) and fail the commit.
    pub fn commit_transaction(&self, timeout: Duration) -> KafkaResult<()> {
        let started = Instant::now();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: a valid producer handle; rd_kafka_flush may be called from any thread.
        let flushed =
            unsafe { rdsys::rd_kafka_flush(self.inner.client().native_ptr(), timeout_ms) };
        if flushed.is_error() {
            return Err(KafkaError::Flush(flushed.into()));
        }
        // Nothing is queued now (the source sends nothing while it commits): the wrapper's own
        // flush returns at once.
        self.inner
            .commit_transaction(timeout.saturating_sub(started.elapsed()))
    }

    /// Queues a record (no headers) whose buffer librdkafka takes over and frees once the
    /// record is sent, rather than copying its value: the copy, from memory another thread
    /// wrote, was a twentieth of a snapshot's CPU. Where librdkafka's `free` is not the
    /// allocator the buffer came from, the value is copied as usual. The key is always copied
    /// (it is small).
    ///
    /// On failure (a full queue) nothing was taken: the record comes back.
    #[allow(clippy::result_large_err)] // by value: a full queue is retried at once, unboxed
    pub fn send_owned(
        &self,
        topic: &TopicHandle,
        record: OwnedRecord,
        timestamp_ms: i64,
    ) -> Result<(), Refused> {
        // An empty Vec has no allocation for librdkafka to free.
        let hand_over =
            record.value_len.is_some() && record.bytes.capacity() > 0 && frees_our_memory();
        let mut record = ManuallyDrop::new(record);
        let value_ptr = match record.value_len {
            Some(_) => record.bytes.as_mut_ptr().cast::<c_void>(),
            None => ptr::null_mut(),
        };
        let value_len = record.value_len.unwrap_or(0);
        let (key_ptr, key_len) = match record.key() {
            Some(k) => (k.as_ptr().cast::<c_void>().cast_mut(), k.len()),
            None => (ptr::null_mut(), 0),
        };
        let flags = if hand_over {
            rdsys::RD_KAFKA_MSG_F_FREE
        } else {
            rdsys::RD_KAFKA_MSG_F_COPY
        };
        debug_assert!(ptr::eq(Arc::as_ptr(&topic.producer), self));
        // SAFETY: the pointers are valid for their lengths for the duration of the call (the
        // key lies in the same buffer, after the value, and librdkafka copies it before the
        // call returns), the topic handle is this producer's (made by `topic`, alive while
        // borrowed); with RD_KAFKA_MSG_F_FREE librdkafka owns the buffer after a successful
        // call and frees it, by the value's pointer (the buffer's start), with `free`, which
        // `frees_our_memory` checked is the allocator that made it. On error librdkafka keeps
        // nothing (its documented contract), so the buffer is ours again.
        let error = unsafe {
            rdsys::rd_kafka_producev(
                self.inner.client().native_ptr(),
                RDKafkaVtype::RD_KAFKA_VTYPE_RKT,
                topic.native.as_ptr(),
                RDKafkaVtype::RD_KAFKA_VTYPE_PARTITION,
                -1, // unassigned: the partitioner chooses
                RDKafkaVtype::RD_KAFKA_VTYPE_MSGFLAGS,
                flags,
                RDKafkaVtype::RD_KAFKA_VTYPE_VALUE,
                value_ptr,
                value_len,
                RDKafkaVtype::RD_KAFKA_VTYPE_KEY,
                key_ptr,
                key_len,
                RDKafkaVtype::RD_KAFKA_VTYPE_TIMESTAMP,
                timestamp_ms,
                RDKafkaVtype::RD_KAFKA_VTYPE_END,
            )
        };
        if error.is_error() {
            return Err(Refused {
                error: KafkaError::MessageProduction(error.into()),
                record: ManuallyDrop::into_inner(record),
            });
        }
        if !hand_over {
            // Copied by librdkafka: the buffer is still ours to drop.
            drop(ManuallyDrop::into_inner(record));
        }
        Ok(())
    }

    /// Queues `records` in order, as [`Self::send_owned`] does one, through librdkafka's batch
    /// call: the clock, the producer's state and the topic's lock are taken once per
    /// [`BATCH_MESSAGES`] records instead of once per record (a snapshot sends millions).
    ///
    /// On `Ok`, `records` holds those a full queue refused (the tail, in order; empty when all
    /// were queued): wait, then call again with them. On `Err` a record was refused for another
    /// reason; the transaction cannot commit, and `records` is emptied.
    pub fn send_owned_batch(
        &self,
        topic: &TopicHandle,
        records: &mut Vec<OwnedRecord>,
    ) -> Result<(), KafkaError> {
        debug_assert!(ptr::eq(Arc::as_ptr(&topic.producer), self));
        let hand_over = frees_our_memory();
        let flags = if hand_over {
            rdsys::RD_KAFKA_MSG_F_FREE
        } else {
            rdsys::RD_KAFKA_MSG_F_COPY
        };
        let mut refused = Vec::new();
        let mut failure = None;
        let mut pending = std::mem::take(records).into_iter();
        loop {
            let chunk: Vec<OwnedRecord> = pending.by_ref().take(BATCH_MESSAGES).collect();
            if chunk.is_empty() {
                break;
            }
            // SAFETY: rd_kafka_message_t is plain data; all-zero is a valid (empty) message.
            let mut messages: [rdsys::rd_kafka_message_t; BATCH_MESSAGES] =
                unsafe { std::mem::zeroed() };
            let mut chunk: Vec<ManuallyDrop<OwnedRecord>> =
                chunk.into_iter().map(ManuallyDrop::new).collect();
            for (message, record) in messages.iter_mut().zip(chunk.iter_mut()) {
                if record.value_len.is_some() && record.bytes.capacity() == 0 {
                    // An empty value still needs a block of its own for librdkafka to free.
                    record.bytes.reserve(1);
                }
                if record.value_len.is_some() {
                    message.payload = record.bytes.as_mut_ptr().cast::<c_void>();
                    message.len = record.value_len.unwrap_or(0);
                }
                if let Some(key) = record.key() {
                    prefetch(key);
                    message.key = key.as_ptr().cast::<c_void>().cast_mut();
                    message.key_len = key.len();
                }
            }
            let count = i32::try_from(chunk.len()).expect("at most BATCH_MESSAGES");
            // SAFETY: as in `send_owned`: every pointer is valid for its length during the call
            // (keys are copied before it returns); the topic handle is this producer's. A record
            // whose message reports no error is librdkafka's from here (RD_KAFKA_MSG_F_FREE), a
            // full queue leaves a record untouched, and the error codes are read below.
            unsafe {
                rdsys::rd_kafka_produce_batch(
                    topic.native.as_ptr(),
                    -1, // unassigned: the partitioner chooses
                    flags,
                    messages.as_mut_ptr(),
                    count,
                );
            }
            for (message, record) in messages.iter().zip(chunk) {
                match message.err {
                    rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                        // Copied (or a null value, whose buffer held only the key): ours to drop.
                        if !hand_over || record.value_len.is_none() {
                            drop(ManuallyDrop::into_inner(record));
                        }
                    }
                    rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL => {
                        refused.push(ManuallyDrop::into_inner(record));
                    }
                    error => {
                        // Whether librdkafka freed the buffer depends on where it failed (the
                        // partitioner frees it, an early check does not): left alone, at worst
                        // one record's bytes leak on a path that ends the task.
                        if !hand_over {
                            drop(ManuallyDrop::into_inner(record));
                        }
                        failure.get_or_insert(KafkaError::MessageProduction(error.into()));
                    }
                }
            }
            if !refused.is_empty() || failure.is_some() {
                break;
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        refused.extend(pending);
        *records = refused;
        Ok(())
    }
}

/// Asks the CPU to start loading `bytes` (at most a cache line or two: a key). librdkafka copies
/// each key as it queues the message; the records were encoded on another thread milliseconds
/// earlier, so without this every copy waited for memory in turn (5 % of a snapshot's CPU).
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Records per call of librdkafka's batch send: its messages live on the stack (72 bytes
/// each), and beyond a few hundred the per-call costs are already negligible.
const BATCH_MESSAGES: usize = 256;

/// Whether librdkafka's `free` releases memory from Rust's global allocator: true when both are
/// mimalloc (the crate's global allocator, with its `override` feature serving C's malloc).
/// Checked once, on a block librdkafka's own allocator returns.
fn frees_our_memory() -> bool {
    static SAME: OnceLock<bool> = OnceLock::new();
    *SAME.get_or_init(|| {
        // SAFETY: a block from librdkafka's allocator, only inspected, then given back to it.
        unsafe {
            let block = rdsys::rd_kafka_mem_malloc(ptr::null_mut(), 16);
            let ours = libmimalloc_sys::mi_is_in_heap_region(block.cast_const());
            rdsys::rd_kafka_mem_free(ptr::null_mut(), block);
            ours
        }
    })
}

/// Logs the deliveries that failed; successful ones are not reported at all.
#[derive(Debug)]
pub struct BulkContext;

impl ClientContext for BulkContext {}

impl ProducerContext for BulkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            warn!(
                topic = message.topic(),
                partition = message.partition(),
                error = %error,
                "a record was not delivered; its Kafka transaction cannot commit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::{ClientConfig, producer::PurgeConfig, types::RDKafkaErrorCode};

    use super::*;

    /// A producer whose queue holds one record and whose broker never answers.
    fn one_record_producer() -> Arc<BulkProducer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("queue.buffering.max.messages", "1")
            .set("delivery.report.only.error", "true");
        let inner = ThreadedProducer::from_config_and_context(&config, BulkContext)
            .expect("a producer needs no broker to be created");
        Arc::new(BulkProducer { inner })
    }

    /// Empties the queue: purged records leave librdkafka's count only once the polling thread
    /// has served their (failed) delivery reports, so wait for that before the next send.
    fn purge_all(producer: &BulkProducer) {
        producer.purge(PurgeConfig::default().queue());
        producer
            .flush(Duration::from_secs(10))
            .expect("purged records are destroyed");
    }

    #[test]
    fn a_refused_value_comes_back_whole_and_a_taken_one_is_freed_by_librdkafka() {
        let producer = one_record_producer();
        let topic = &producer.topic("bulk-test").expect("a topic handle");
        assert_eq!(topic.name(), "bulk-test");
        assert!(
            producer.topic("bulk\0test").is_err(),
            "a name with NUL has no handle"
        );
        let taken = OwnedRecord::new(Some(b"k1"), Some(b"taken by librdkafka".to_vec()));
        producer
            .send_owned(topic, taken, 0)
            .expect("the first record fits the queue");
        let refused = OwnedRecord::new(Some(b"k2"), Some(b"refused: the queue is full".to_vec()));
        let err = producer
            .send_owned(topic, refused.clone(), 0)
            .expect_err("the queue holds one record");
        assert!(
            matches!(
                err.error,
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
            ),
            "{err:?}"
        );
        assert_eq!(err.record, refused);
        // Records without a value, and with an empty one and no key, are not handed over
        // (nothing to free); an empty value before a key is.
        for (key, value) in [
            (None, Some(Vec::new())),
            (Some(&b"k3"[..]), Some(Vec::new())),
            (Some(&b"k4"[..]), None),
            (None, None),
        ] {
            purge_all(&producer);
            producer
                .send_owned(topic, OwnedRecord::new(key, value), 0)
                .expect("queued");
        }
        // Purged and destroyed: librdkafka frees the buffers it took (a wrong allocator aborts).
        purge_all(&producer);
    }

    #[test]
    fn a_record_keeps_its_key_after_its_value() {
        let record = OwnedRecord::new(Some(b"key"), Some(b"value".to_vec()));
        assert_eq!(record.key(), Some(&b"key"[..]));
        assert_eq!(record.value(), Some(&b"value"[..]));
        assert_eq!(record.len(), 8);
        let tombstone = OwnedRecord::new(Some(b"key"), None);
        assert_eq!(
            (tombstone.key(), tombstone.value()),
            (Some(&b"key"[..]), None)
        );
        let keyless = OwnedRecord::new(None, Some(b"value".to_vec()));
        assert_eq!(
            (keyless.key(), keyless.value()),
            (None, Some(&b"value"[..]))
        );
        let empty_value = OwnedRecord::new(Some(b"key"), Some(Vec::new()));
        assert_eq!(
            (empty_value.key(), empty_value.value()),
            (Some(&b"key"[..]), Some(&b""[..]))
        );
        let encoded = OwnedRecord::from_value_then_key(b"valuekey".to_vec(), Some(3));
        assert_eq!(
            encoded,
            OwnedRecord::new(Some(b"key"), Some(b"value".to_vec()))
        );
        let unkeyed = OwnedRecord::from_value_then_key(b"value".to_vec(), None);
        assert_eq!(unkeyed, keyless);
    }

    #[test]
    fn librdkafka_frees_with_the_global_allocator() {
        // The build pairs mimalloc as global allocator with its malloc override; if that ever
        // changes, values are copied again, and this says why sends got slower.
        assert!(frees_our_memory());
    }
}
