//! The source offset store on the real broker: offsets written inside producer transactions are
//! read back exactly when their transaction committed, per connector, without hanging on an empty
//! topic or an open transaction, and a corrupt record is reported where it is.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tributary::kafka::{
    Error, OffsetRecord, OffsetStore, SourceOffset, TopicAdmin, transactional_producer,
};

use crate::support::{
    kafka::{self, Collector, Isolation, TestTopic},
    unique_name,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const SERVER: &str = "dbserver1";

/// A fresh offsets store, its topic created by the store and deleted when the guard drops.
async fn fresh_store(partitions: i32) -> (OffsetStore, TestTopic) {
    let name = unique_name("tributary-test-offsets");
    let guard = TestTopic::delete_on_drop(&name, partitions);
    let store = OffsetStore::new(&kafka::settings(), name).with_partitions(partitions);
    store
        .ensure_topic()
        .await
        .unwrap_or_else(|err| panic!("cannot create offsets topic: {err}"));
    (store, guard)
}

async fn producer() -> FutureProducer {
    transactional_producer(&kafka::settings(), &unique_name("txn"), TIMEOUT)
        .await
        .expect("transactions initialise")
}

fn offset(lsn: u64) -> SourceOffset {
    SourceOffset {
        lsn,
        lsn_commit: Some(lsn - 8),
        tx_id: Some(700 + u32::try_from(lsn % 1000).expect("small")),
        ts_usec: 1_700_000_000_000_000 + i64::try_from(lsn).expect("small"),
        snapshot_completed: true,
    }
}

/// Sends one record and returns (partition, offset) where it landed.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> (i32, i64) {
    let mut record = FutureRecord::to(topic).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    let delivery = producer
        .send(record, TIMEOUT)
        .await
        .unwrap_or_else(|(err, _)| panic!("sending to {topic} failed: {err}"));
    (delivery.partition, delivery.offset)
}

async fn send_offset(producer: &FutureProducer, record: &OffsetRecord) {
    send(producer, &record.topic, &record.key, Some(&record.value)).await;
}

async fn send_change(producer: &FutureProducer, topic: &TestTopic, value: &str) {
    send(producer, &topic.name, b"row-key", Some(value.as_bytes())).await;
}

/// One committed transaction holding just this offset.
async fn commit_offset(producer: &FutureProducer, record: &OffsetRecord) {
    producer.begin_transaction().expect("begin");
    send_offset(producer, record).await;
    producer.commit_transaction(TIMEOUT).expect("commit");
}

async fn load(store: &OffsetStore, connector: &str) -> Option<SourceOffset> {
    store
        .load(connector, SERVER, TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("loading the offset of {connector} failed: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topic_has_no_offset_and_answers_quickly() {
    let (store, _guard) = fresh_store(1).await;
    // Creating again is fine: setup is idempotent.
    store.ensure_topic().await.expect("ensure_topic twice");
    let policy = TopicAdmin::new(&kafka::settings(), TIMEOUT)
        .expect("admin")
        .topic_config(store.topic(), "cleanup.policy")
        .await
        .expect("describe");
    assert_eq!(policy.as_deref(), Some("compact"));

    let started = Instant::now();
    assert_eq!(load(&store, "inventory").await, None);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "an empty topic took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_partitions_still_give_the_newest_offset() {
    let (store, _guard) = fresh_store(3).await;
    let started = Instant::now();
    assert_eq!(load(&store, "inventory").await, None);
    assert!(started.elapsed() < Duration::from_secs(5));

    let producer = producer().await;
    for lsn in [100, 200, 300] {
        commit_offset(&producer, &store.record("inventory", SERVER, &offset(lsn))).await;
    }
    assert_eq!(load(&store, "inventory").await, Some(offset(300)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_give_the_newest_per_connector() {
    let (store, _guard) = fresh_store(1).await;
    let changes = TestTopic::create(1).await;
    let producer = producer().await;

    // Each transaction: change events first, the offset record last.
    producer.begin_transaction().expect("begin");
    send_change(&producer, &changes, "a-1").await;
    send_change(&producer, &changes, "a-2").await;
    send_offset(&producer, &store.record("alpha", SERVER, &offset(100))).await;
    producer.commit_transaction(TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    send_change(&producer, &changes, "b-1").await;
    send_offset(&producer, &store.record("beta", SERVER, &offset(150))).await;
    producer.commit_transaction(TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    send_change(&producer, &changes, "a-3").await;
    send_offset(&producer, &store.record("alpha", SERVER, &offset(300))).await;
    producer.commit_transaction(TIMEOUT).expect("commit");

    // Same connector name, other server: a different source partition.
    commit_offset(&producer, &store.record("beta", "dbserver2", &offset(999))).await;

    assert_eq!(load(&store, "alpha").await, Some(offset(300)));
    assert_eq!(load(&store, "beta").await, Some(offset(150)));
    assert_eq!(
        store
            .load("beta", "dbserver2", TIMEOUT)
            .await
            .expect("load"),
        Some(offset(999))
    );
    assert_eq!(load(&store, "gamma").await, None);

    // The change events of those transactions were committed alongside.
    let mut committed = Collector::new(&changes, Isolation::ReadCommitted);
    let seen = committed.collect(4, TIMEOUT).await;
    let values: Vec<_> = seen.iter().filter_map(|r| r.value_str()).collect();
    assert_eq!(values, ["a-1", "a-2", "b-1", "a-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_offset_is_ignored() {
    let (store, guard) = fresh_store(1).await;
    let producer = producer().await;
    commit_offset(&producer, &store.record("alpha", SERVER, &offset(100))).await;

    producer.begin_transaction().expect("begin");
    send_offset(&producer, &store.record("alpha", SERVER, &offset(200))).await;
    producer.abort_transaction(TIMEOUT).expect("abort");

    // The aborted record really is in the log...
    let mut everything = Collector::new(&guard, Isolation::ReadUncommitted);
    assert_eq!(everything.collect(2, TIMEOUT).await.len(), 2);
    // ...and the store skips it.
    assert_eq!(load(&store, "alpha").await, Some(offset(100)));

    // A later commit is seen again past the aborted one.
    commit_offset(&producer, &store.record("alpha", SERVER, &offset(300))).await;
    assert_eq!(load(&store, "alpha").await, Some(offset(300)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_neither_shows_nor_blocks() {
    let (store, _guard) = fresh_store(1).await;
    let producer = producer().await;
    commit_offset(&producer, &store.record("alpha", SERVER, &offset(100))).await;

    producer.begin_transaction().expect("begin");
    send_offset(&producer, &store.record("alpha", SERVER, &offset(200))).await;
    producer.flush(TIMEOUT).expect("flush");

    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let loaded = store.load("alpha", SERVER, timeout).await;
    let elapsed = started.elapsed();
    assert_eq!(loaded.expect("load"), Some(offset(100)));
    assert!(
        elapsed < timeout,
        "load waited {elapsed:?} with a transaction open"
    );

    producer.commit_transaction(TIMEOUT).expect("commit");
    assert_eq!(load(&store, "alpha").await, Some(offset(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_resets_the_offset() {
    let (store, _guard) = fresh_store(1).await;
    let producer = producer().await;
    let record = store.record("alpha", SERVER, &offset(100));
    commit_offset(&producer, &record).await;

    producer.begin_transaction().expect("begin");
    send(&producer, &record.topic, &record.key, None).await;
    producer.commit_transaction(TIMEOUT).expect("commit");
    assert_eq!(load(&store, "alpha").await, None);

    commit_offset(&producer, &store.record("alpha", SERVER, &offset(50))).await;
    assert_eq!(load(&store, "alpha").await, Some(offset(50)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_offset_is_an_error_naming_where_it_is() {
    let (store, _guard) = fresh_store(1).await;
    let producer = producer().await;
    let record = store.record("alpha", SERVER, &offset(100));
    commit_offset(&producer, &record).await;

    producer.begin_transaction().expect("begin");
    let (partition, at) = send(&producer, &record.topic, &record.key, Some(b"not json")).await;
    producer.commit_transaction(TIMEOUT).expect("commit");

    let err = store
        .load("alpha", SERVER, TIMEOUT)
        .await
        .expect_err("a corrupt newest offset must not load");
    match &err {
        Error::CorruptOffset {
            topic,
            partition: p,
            offset,
            ..
        } => {
            assert_eq!(topic, store.topic());
            assert_eq!((*p, *offset), (partition, at));
        }
        other => panic!("expected CorruptOffset, got {other:?}"),
    }
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains(store.topic()) && message.contains(&format!("offset {at}")),
        "{message}"
    );
    // Another connector's offset on the same topic is unaffected.
    assert_eq!(load(&store, "beta").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_non_compacted_topic_is_refused() {
    let missing = OffsetStore::new(&kafka::settings(), unique_name("tributary-test-missing"));
    let err = missing
        .load("alpha", SERVER, TIMEOUT)
        .await
        .expect_err("no topic, no offsets");
    assert!(
        matches!(err, Error::OffsetTopicMissing { .. }),
        "expected OffsetTopicMissing, got {err:?}"
    );

    let plain = TestTopic::create(1).await;
    let err = OffsetStore::new(&kafka::settings(), &plain.name)
        .ensure_topic()
        .await
        .expect_err("a topic with cleanup.policy=delete must be refused");
    assert!(
        matches!(&err, Error::OffsetTopicNotCompacted { policy, .. } if policy == "delete"),
        "expected OffsetTopicNotCompacted, got {err:?}"
    );
}
