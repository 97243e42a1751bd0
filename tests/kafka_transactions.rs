//! Kafka transactions on the real broker: what commits is seen, what aborts is not, and a
//! producer with the same transactional.id fences the old one.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tributary::kafka::{OwnedRecord, bulk_transactional_producer, transactional_producer};

use crate::support::{
    kafka::{self, Collector, Isolation, TestTopic},
    unique_name,
};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn send(producer: &FutureProducer, topic: &TestTopic, partition: i32, value: &str) {
    let key = format!("key-{value}");
    producer
        .send(
            FutureRecord::to(&topic.name)
                .partition(partition)
                .key(&key)
                .payload(value),
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("sending {value} failed: {err}"));
}

fn values(records: &[kafka::Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.value_str().expect("a value"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_only_committed_transactions() {
    let topic = TestTopic::create(1).await;
    let producer = transactional_producer(&kafka::settings(), &unique_name("txn"), TIMEOUT)
        .await
        .expect("transactions initialise");

    producer.begin_transaction().expect("begin");
    for value in ["c1", "c2", "c3"] {
        send(&producer, &topic, 0, value).await;
    }
    producer.commit_transaction(TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    for value in ["aborted1", "aborted2"] {
        send(&producer, &topic, 0, value).await;
    }
    producer.abort_transaction(TIMEOUT).expect("abort");

    producer.begin_transaction().expect("begin");
    for value in ["c4", "c5"] {
        send(&producer, &topic, 0, value).await;
    }
    producer.commit_transaction(TIMEOUT).expect("commit");

    // The aborted records really are in the log...
    let mut uncommitted = Collector::new(&topic, Isolation::ReadUncommitted);
    let everything = uncommitted.collect(7, TIMEOUT).await;
    assert_eq!(
        values(&everything),
        ["c1", "c2", "c3", "aborted1", "aborted2", "c4", "c5"]
    );

    // ...and a read_committed reader skips them, in order, with keys intact.
    let mut committed = Collector::new(&topic, Isolation::ReadCommitted);
    let seen = committed.collect(5, TIMEOUT).await;
    assert_eq!(values(&seen), ["c1", "c2", "c3", "c4", "c5"]);
    assert_eq!(seen[3].key.as_deref(), Some(&b"key-c4"[..]));
    committed.expect_no_more(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_is_invisible_and_a_new_producer_fences_the_old() {
    let topic = TestTopic::create(2).await;
    let settings = kafka::settings();
    let transactional_id = unique_name("txn");

    let zombie = transactional_producer(&settings, &transactional_id, TIMEOUT)
        .await
        .expect("transactions initialise");
    zombie.begin_transaction().expect("begin");
    send(&zombie, &topic, 0, "from-zombie").await;
    zombie.flush(TIMEOUT).expect("flush");

    // While the transaction is open a read_committed reader sees nothing.
    let mut committed = Collector::new(&topic, Isolation::ReadCommitted);
    committed.expect_no_more(Duration::from_secs(2)).await;

    // A new producer with the same id aborts the open transaction and fences the old producer.
    let successor = transactional_producer(&settings, &transactional_id, TIMEOUT)
        .await
        .expect("transactions initialise for the successor");
    successor.begin_transaction().expect("begin");
    send(&successor, &topic, 1, "from-successor").await;
    successor.commit_transaction(TIMEOUT).expect("commit");

    let fenced = zombie.commit_transaction(TIMEOUT);
    assert!(
        fenced.is_err(),
        "the fenced producer's commit must fail, got {fenced:?}"
    );

    let seen = committed.collect(1, TIMEOUT).await;
    assert_eq!(values(&seen), ["from-successor"]);
    assert_eq!(seen[0].partition, 1);
    committed.expect_no_more(Duration::from_secs(2)).await;
}

/// The bulk producer has no delivery reports for successes: a record the broker refuses must
/// still make the commit fail, and nothing of that transaction may become visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_broker_refuses_fails_the_bulk_producers_commit() {
    let topic = TestTopic::create_with(1, &[("max.message.bytes", "2000")]).await;
    let producer = bulk_transactional_producer(&kafka::settings(), &unique_name("txn"), TIMEOUT)
        .await
        .expect("transactions initialise");

    // As the source sends: values handed over (send_owned), not copied.
    let topic_handle = producer.topic(&topic.name).expect("a topic handle");
    let send = |key: &str, value: &str| {
        producer
            .send_owned(
                &topic_handle,
                OwnedRecord::new(Some(key.as_bytes()), Some(value.as_bytes().to_vec())),
                0,
            )
            .map_err(|refused| refused.error)
            .expect("queued");
    };
    producer.begin_transaction().expect("begin");
    for value in ["c1", "c2"] {
        send(value, value);
    }
    producer.commit_transaction(TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    // Small enough for the producer (message.max.bytes is 1 MB), too big for this topic even
    // lz4-compressed: the limit applies to the compressed batch, so the text must not repeat.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let big: String = (0..50_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    for value in ["before-big", big.as_str(), "after-big"] {
        send("k", value);
    }
    let refused = producer.commit_transaction(TIMEOUT);
    assert!(
        refused.is_err(),
        "a refused record must fail the commit, got {refused:?}"
    );
    producer.abort_transaction(TIMEOUT).expect("abort");

    let mut committed = Collector::new(&topic, Isolation::ReadCommitted);
    let seen = committed.collect(2, TIMEOUT).await;
    assert_eq!(values(&seen), ["c1", "c2"]);
    // The key travels after the value in the record's buffer: it must arrive as the key alone.
    let keys: Vec<_> = seen.iter().map(|record| record.key.as_deref()).collect();
    assert_eq!(keys, [Some(&b"c1"[..]), Some(&b"c2"[..])]);
    committed.expect_no_more(Duration::from_secs(2)).await;
}

/// A record's key and value as sent and as read back.
type KeyAndValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The source sends a snapshot's records in batches: every record must arrive once, in order,
/// with its own key and value (null and empty ones too), also when a full queue refuses part
/// of a batch and the rest is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulk_producers_batch_send_delivers_every_record_once_in_order() {
    let topic = TestTopic::create(1).await;
    let mut settings = kafka::settings();
    // A queue of 100 records: a batch of 700 is refused in part, more than once.
    settings
        .overrides
        .push(("queue.buffering.max.messages".into(), "100".into()));
    let producer = bulk_transactional_producer(&settings, &unique_name("txn"), TIMEOUT)
        .await
        .expect("transactions initialise");
    let handle = producer.topic(&topic.name).expect("a topic handle");

    let expected: Vec<KeyAndValue> = (0..700)
        .map(|i| match i {
            // A tombstone, a record without key, an empty value without a key.
            100 => (Some(b"k100".to_vec()), None),
            200 => (None, Some(b"v200".to_vec())),
            300 => (None, Some(Vec::new())),
            _ => (
                Some(format!("k{i}").into_bytes()),
                Some(format!("value {i}").into_bytes()),
            ),
        })
        .collect();
    let mut pending: Vec<OwnedRecord> = expected
        .iter()
        .map(|(key, value)| OwnedRecord::new(key.as_deref(), value.clone()))
        .collect();
    producer.begin_transaction().expect("begin");
    let mut refusals = 0;
    loop {
        producer
            .send_owned_batch(&handle, &mut pending)
            .expect("nothing but a full queue refuses these");
        if pending.is_empty() {
            break;
        }
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refusals > 0, "the 100-record queue never refused anything");
    producer.commit_transaction(TIMEOUT).expect("commit");

    let mut committed = Collector::new(&topic, Isolation::ReadCommitted);
    let seen = committed.collect(expected.len(), TIMEOUT).await;
    let got: Vec<_> = seen
        .iter()
        .map(|record| (record.key.clone(), record.value.clone()))
        .collect();
    assert_eq!(got, expected);
    committed.expect_no_more(Duration::from_secs(2)).await;
}
