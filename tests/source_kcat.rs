//! What the source writes, read by `kcat`: a Kafka client tributary did not write, as the
//! ecosystem reads it. The records must be Debezium JSON documents, and a read_committed
//! reader must not see records of an aborted Kafka transaction.

use std::time::Duration;

use rdkafka::producer::{FutureRecord, Producer};
use serde_json::{Value, json};
use tributary::kafka::transactional_producer;

use crate::support::{
    kafka::{self, Collector, Isolation},
    source::{InProcessSource, SourceFixture},
    unique_name,
};

const WAIT: Duration = Duration::from_secs(30);
const ABORTED_MARKER: &str = "written-then-aborted";

/// One record as `kcat -J` prints it.
#[derive(Debug)]
struct KcatRecord {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    /// `headers` as kcat prints them: a flat `[name, value, name, value...]` list.
    headers: Vec<Value>,
}

impl KcatRecord {
    fn key_json(&self) -> Value {
        parse_document(self.key.as_deref())
    }

    fn value_json(&self) -> Value {
        parse_document(self.value.as_deref())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1)?.as_str())
    }
}

fn parse_document(text: Option<&str>) -> Value {
    match text {
        Some(text) => serde_json::from_str(text)
            .unwrap_or_else(|err| panic!("kcat printed a record that is not JSON ({err}): {text}")),
        None => Value::Null,
    }
}

/// Fails, saying how to install it, when kcat is not on the PATH.
fn require_kcat() {
    match std::process::Command::new("kcat").arg("-V").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "kcat -V failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => panic!(
            "kcat is needed to read topics as an independent consumer but cannot be run ({err}): \
             apt-get install kcat (scripts/test.sh installs it)"
        ),
    }
}

/// Reads `topic` from the beginning to its current end with kcat at `isolation_level`.
async fn kcat_read(topic: &str, isolation_level: &str) -> Vec<KcatRecord> {
    require_kcat();
    let run = tokio::process::Command::new("kcat")
        .args(["-C", "-b", &kafka::bootstrap_servers(), "-t", topic])
        .args(["-X", &format!("isolation.level={isolation_level}")])
        .args(["-o", "beginning", "-e", "-J", "-q"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("kcat did not reach the end of {topic} within 20 s"))
        .expect("kcat runs");
    let stdout = String::from_utf8(output.stdout).expect("kcat prints UTF-8");
    assert!(
        output.status.success(),
        "kcat failed ({}): {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let envelope: Value = serde_json::from_str(line).unwrap_or_else(|err| {
                panic!("kcat -J printed a line that is not JSON ({err}): {line}")
            });
            assert_eq!(envelope["topic"], topic, "{line}");
            KcatRecord {
                offset: envelope["offset"].as_i64().expect("an offset"),
                key: envelope["key"].as_str().map(str::to_owned),
                value: envelope["payload"].as_str().map(str::to_owned),
                headers: envelope["headers"].as_array().cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// Checks that a value is a Debezium envelope with a schema of `table` and returns its payload.
fn envelope(record: &KcatRecord, prefix: &str, table: &str) -> Value {
    let value = record.value_json();
    assert_eq!(
        value["schema"]["name"],
        format!("{prefix}.public.{table}.Envelope"),
        "{value}"
    );
    assert_eq!(value["schema"]["version"], 2, "{value}");
    let payload = value["payload"].clone();
    let source = &payload["source"];
    assert_eq!(source["connector"], "postgresql", "{payload}");
    assert_eq!(source["name"], prefix, "{payload}");
    assert_eq!(source["schema"], "public", "{payload}");
    assert_eq!(source["table"], table, "{payload}");
    assert!(
        source["lsn"].as_i64().is_some_and(|lsn| lsn > 0),
        "{payload}"
    );
    assert!(source["txId"].as_i64().is_some(), "{payload}");
    assert!(payload["ts_ms"].as_i64().is_some(), "{payload}");
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_reads_debezium_records_and_never_an_aborted_transaction() {
    require_kcat();
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, qty int)")
        .await
        .expect("schema");
    let config = fixture.config("public.orders", &[]);
    let topic = fixture.table_topic("orders");
    let mut collector = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;

    fixture
        .db
        .client()
        .batch_execute(
            "INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 1);
             UPDATE orders SET qty = 5 WHERE id = 1;
             UPDATE orders SET id = 3 WHERE id = 2;
             DELETE FROM orders WHERE id = 3;",
        )
        .await
        .expect("changes");
    // c, c, u, key change (d + tombstone + c), d + tombstone.
    collector.collect(8, WAIT).await;
    source.stop().await.expect("a clean stop");

    // A record on the same topic in a Kafka transaction that is aborted.
    let producer = transactional_producer(&kafka::settings(), &unique_name("txn"), WAIT)
        .await
        .expect("transactions initialise");
    producer.begin_transaction().expect("begin");
    producer
        .send(
            FutureRecord::to(&topic)
                .key(ABORTED_MARKER)
                .payload(ABORTED_MARKER),
            WAIT,
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("sending the aborted record failed: {err}"));
    producer.abort_transaction(WAIT).expect("abort");

    let committed = kcat_read(&topic, "read_committed").await;
    let ops: Vec<String> = committed
        .iter()
        .map(|r| match &r.value {
            Some(_) => r.value_json()["payload"]["op"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
            None => "tombstone".to_owned(),
        })
        .collect();
    assert_eq!(
        ops,
        ["c", "c", "u", "d", "tombstone", "c", "d", "tombstone"],
        "{committed:#?}"
    );
    let keys: Vec<Value> = committed
        .iter()
        .map(|r| r.key_json()["payload"].clone())
        .collect();
    assert_eq!(
        keys,
        [1, 2, 1, 2, 2, 3, 3, 3].map(|id| json!({"id": id})),
        "{committed:#?}"
    );
    for record in &committed {
        let key = record.key_json();
        assert_eq!(
            key["schema"]["name"],
            format!("{}.public.orders.Key", fixture.prefix),
            "{key}"
        );
    }

    let prefix = fixture.prefix.as_str();
    let create = envelope(&committed[0], prefix, "orders");
    assert_eq!(create["before"], Value::Null);
    assert_eq!(create["after"], json!({"id": 1, "item": "apple", "qty": 3}));
    let second = envelope(&committed[1], prefix, "orders");
    assert_eq!(second["after"], json!({"id": 2, "item": "pear", "qty": 1}));
    assert_eq!(
        second["source"]["txId"], create["source"]["txId"],
        "one PostgreSQL transaction"
    );
    let update = envelope(&committed[2], prefix, "orders");
    assert_eq!(update["before"], Value::Null, "REPLICA IDENTITY DEFAULT");
    assert_eq!(update["after"], json!({"id": 1, "item": "apple", "qty": 5}));
    // The key change: the delete names the new key, the create the old one.
    let moved_away = envelope(&committed[3], prefix, "orders");
    assert_eq!(moved_away["before"]["id"], 2);
    assert_eq!(moved_away["after"], Value::Null);
    let newkey = parse_document(committed[3].header("__debezium.newkey"));
    assert_eq!(newkey["payload"], json!({"id": 3}));
    let moved_in = envelope(&committed[5], prefix, "orders");
    assert_eq!(
        moved_in["after"],
        json!({"id": 3, "item": "pear", "qty": 1})
    );
    let oldkey = parse_document(committed[5].header("__debezium.oldkey"));
    assert_eq!(oldkey["payload"], json!({"id": 2}));
    // A DEFAULT delete: the key columns in before; NOT NULL others get their type's zero.
    let delete = envelope(&committed[6], prefix, "orders");
    assert_eq!(delete["before"], json!({"id": 3, "item": "", "qty": null}));
    assert_eq!(delete["after"], Value::Null);

    // The aborted record is in the log (read_uncommitted shows it) but not to read_committed.
    let everything = kcat_read(&topic, "read_uncommitted").await;
    let aborted: Vec<&KcatRecord> = everything
        .iter()
        .filter(|r| r.value.as_deref() == Some(ABORTED_MARKER))
        .collect();
    assert_eq!(aborted.len(), 1, "{everything:#?}");
    assert_eq!(aborted[0].key.as_deref(), Some(ABORTED_MARKER));
    assert!(
        aborted[0].offset > committed.last().expect("records").offset,
        "the aborted record follows the source's"
    );
    assert!(
        committed
            .iter()
            .all(|r| r.value.as_deref() != Some(ABORTED_MARKER)
                && r.key.as_deref() != Some(ABORTED_MARKER)),
        "read_committed must not show the aborted record"
    );
}
