//! The PostgreSQL source end to end: real database changes in, what a read_committed consumer
//! reads out of real Kafka topics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    kafka::{Collector, Isolation, Record},
    source::{
        InProcessSource, ProcessSource, SourceFixture, assert_exactly, insert_then_update_events,
        insert_then_update_sql,
    },
};

const WAIT: Duration = Duration::from_secs(60);

fn ops(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match r.payload().get("op") {
            Some(Value::String(op)) => op.clone(),
            _ => "tombstone".to_owned(),
        })
        .collect()
}

fn header<'a>(record: &'a Record, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_becomes_the_debezium_records() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, balance numeric(10,2), tags text[]);
             CREATE TABLE accounts (id int PRIMARY KEY, note text);
             ALTER TABLE accounts REPLICA IDENTITY FULL;",
        )
        .await
        .expect("schema");
    let config = fixture.config(
        "public.customers,public.accounts",
        &[("skipped.operations", "none")],
    );
    let customers_topic = fixture.table_topic("customers");
    let accounts_topic = fixture.table_topic("accounts");
    let message_topic = format!("{}.message", fixture.prefix);
    let mut customers = Collector::new(
        fixture.topic(&customers_topic).await,
        Isolation::ReadCommitted,
    );
    let mut accounts = Collector::new(
        fixture.topic(&accounts_topic).await,
        Isolation::ReadCommitted,
    );
    let mut messages = Collector::new(
        fixture.topic(&message_topic).await,
        Isolation::ReadCommitted,
    );
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;

    let client = fixture.db.client();
    client
        .batch_execute(
            "INSERT INTO customers VALUES (1, 'Ann', 12.50, '{a,b}');
             UPDATE customers SET name = 'Anne' WHERE id = 1;
             UPDATE customers SET id = 2 WHERE id = 1;
             DELETE FROM customers WHERE id = 2;
             INSERT INTO accounts VALUES (7, 'x');
             UPDATE accounts SET note = 'y' WHERE id = 7;
             DELETE FROM accounts WHERE id = 7;
             TRUNCATE customers;
             SELECT pg_logical_emit_message(true, 'audit', 'hello');",
        )
        .await
        .expect("changes");

    let seen = customers.collect(8, WAIT).await;
    assert_eq!(
        ops(&seen),
        ["c", "u", "d", "tombstone", "c", "d", "tombstone", "t"],
        "customers records"
    );
    // Create: key and full row; numeric(10,2) 12.50 is Connect Decimal bytes 0x04E2.
    assert_eq!(seen[0].key_payload(), json!({"id": 1}));
    let create = seen[0].payload();
    assert_eq!(create["before"], Value::Null);
    assert_eq!(
        create["after"],
        json!({"id": 1, "name": "Ann", "balance": "BOI=", "tags": ["a", "b"]})
    );
    let block = &create["source"];
    assert_eq!(block["connector"], "postgresql");
    assert_eq!(block["name"], fixture.prefix.as_str());
    assert_eq!(block["db"], fixture.db.name.as_str());
    assert_eq!(block["schema"], "public");
    assert_eq!(block["table"], "customers");
    assert_eq!(block["snapshot"], "false");
    assert!(block["txId"].as_i64().is_some_and(|x| x > 0), "{block}");
    assert!(block["lsn"].as_i64().is_some_and(|x| x > 0), "{block}");
    let schema = seen[0].value_json()["schema"].clone();
    assert_eq!(
        schema["name"],
        format!("{}.public.customers.Envelope", fixture.prefix)
    );
    // Update under REPLICA IDENTITY DEFAULT: no before image.
    let update = seen[1].payload();
    assert_eq!(update["before"], Value::Null);
    assert_eq!(update["after"]["name"], "Anne");
    // Primary-key change: delete of the old key (+ tombstone), create of the new one, each
    // naming the other key in a header.
    assert_eq!(seen[2].key_payload(), json!({"id": 1}));
    assert_eq!(seen[2].payload()["before"]["id"], 1);
    assert_eq!(seen[3].key_payload(), json!({"id": 1}));
    assert!(seen[3].value.is_none());
    assert_eq!(seen[4].key_payload(), json!({"id": 2}));
    assert_eq!(seen[4].payload()["after"]["name"], "Anne");
    let newkey: Value =
        serde_json::from_slice(header(&seen[2], "__debezium.newkey").expect("newkey header"))
            .expect("JSON key");
    assert_eq!(newkey["payload"], json!({"id": 2}));
    let oldkey: Value =
        serde_json::from_slice(header(&seen[4], "__debezium.oldkey").expect("oldkey header"))
            .expect("JSON key");
    assert_eq!(oldkey["payload"], json!({"id": 1}));
    // Delete under DEFAULT: the key columns in before; tombstone after it.
    assert_eq!(seen[5].payload()["before"]["id"], 2);
    assert_eq!(seen[5].payload()["after"], Value::Null);
    assert!(seen[6].value.is_none() && seen[6].key_payload() == json!({"id": 2}));
    // Truncate: null key, no images.
    assert!(seen[7].key.is_none());
    assert_eq!(seen[7].payload()["after"], Value::Null);
    customers.expect_no_more(Duration::from_secs(1)).await;

    // REPLICA IDENTITY FULL: updates and deletes carry the whole old row.
    let seen = accounts.collect(4, WAIT).await;
    assert_eq!(ops(&seen), ["c", "u", "d", "tombstone"]);
    assert_eq!(seen[1].payload()["before"], json!({"id": 7, "note": "x"}));
    assert_eq!(seen[1].payload()["after"], json!({"id": 7, "note": "y"}));
    assert_eq!(seen[2].payload()["before"], json!({"id": 7, "note": "y"}));

    let seen = messages.collect(1, WAIT).await;
    let message = seen[0].payload();
    assert_eq!(message["op"], "m");
    assert_eq!(message["message"]["prefix"], "audit");
    // bytes are base64 in JSON: "hello"
    assert_eq!(message["message"]["content"], "aGVsbG8=");
    assert_eq!(seen[0].key_payload(), json!({"prefix": "audit"}));

    source.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_three_tables_is_delivered_whole_and_then_confirmed() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);
             CREATE TABLE c (id int PRIMARY KEY);",
        )
        .await
        .expect("schema");
    let config = fixture.config("public.a,public.b,public.c", &[]);
    let mut collectors = Vec::new();
    for table in ["a", "b", "c"] {
        let topic = fixture.table_topic(table);
        collectors.push(Collector::new(
            fixture.topic(&topic).await,
            Isolation::ReadCommitted,
        ));
    }
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;

    let client = fixture.db.client();
    client
        .batch_execute(
            "BEGIN; INSERT INTO a VALUES (1); INSERT INTO b VALUES (2); INSERT INTO c VALUES (3); COMMIT;",
        )
        .await
        .expect("transaction");
    let end_lsn: tributary::event::Lsn = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn")
        .get::<_, String>(0)
        .parse()
        .expect("an LSN");
    let mut tx_ids = Vec::new();
    for (collector, id) in collectors.iter_mut().zip([1, 2, 3]) {
        let seen = collector.collect(1, WAIT).await;
        assert_eq!(seen[0].payload()["after"]["id"], id);
        tx_ids.push(seen[0].payload()["source"]["txId"].clone());
    }
    assert!(
        tx_ids.iter().all(|t| *t == tx_ids[0]),
        "one transaction: {tx_ids:?}"
    );

    // The slot is confirmed once Kafka has the transaction.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fixture.confirmed_flush_lsn().await < end_lsn {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot not confirmed to {end_lsn}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    source.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_captured_table_beside_a_busy_one_still_advances_the_slot() {
    let fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id serial PRIMARY KEY, v text);")
        .await
        .expect("schema");
    let config = fixture.config("public.quiet", &[]);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let start = fixture.confirmed_flush_lsn().await;

    let client = fixture.db.client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        client
            .batch_execute(
                "INSERT INTO busy (v) SELECT repeat('x', 100) FROM generate_series(1, 100)",
            )
            .await
            .expect("busy writes");
        let confirmed = fixture.confirmed_flush_lsn().await;
        if confirmed > start {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "confirmed_flush_lsn stayed at {start} while only an uncaptured table changed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    source.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_transient_error_naming_it() {
    let fixture = SourceFixture::new().await;
    let config = fixture.config("public.x", &[("database.port", "1")]);
    let source = InProcessSource::start(config, fixture.destination());
    let err = source
        .ended(Duration::from_secs(30))
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_are_just_names() {
    let mut fixture = SourceFixture::new().await;
    let table = "we\"ird; DROP TABLE x; -- ü";
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE \"we\"\"ird; DROP TABLE x; -- ü\" (\"id key\" int PRIMARY KEY, \"sp ace'\" text, \"ünï\" int)",
        )
        .await
        .expect("schema");
    // The include list is a regex: escape the name.
    let pattern = format!("public\\.{}", regex_escape(table));
    let config = fixture.config(&pattern, &[]);
    let topic = fixture.table_topic("we_ird__DROP_TABLE_x__--__");
    let mut collector = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO \"we\"\"ird; DROP TABLE x; -- ü\" VALUES (1, 'it''s', 3)")
        .await
        .expect("insert");
    let seen = collector.collect(1, WAIT).await;
    assert_eq!(
        seen[0].payload()["after"],
        json!({"id key": 1, "sp ace'": "it's", "ünï": 3})
    );
    assert_eq!(seen[0].payload()["source"]["table"], table);
    source.stop().await.expect("a clean stop");
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_alphanumeric() || c == ' ' || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// Under a steady write load the process is killed with SIGKILL three times at random moments
/// and started again; every committed change must appear exactly once, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_times_under_load_loses_and_duplicates_nothing() {
    const TRANSACTIONS: i32 = 300;
    const ROWS_PER_TRANSACTION: i32 = 10;
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, v int NOT NULL)")
        .await
        .expect("schema");
    let connector = fixture.connector_json("public.events", &[]);
    let topic = fixture.table_topic("events");
    let mut collector = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let mut process = ProcessSource::start(&fixture, &connector);
    process.wait_until_streaming(&fixture).await;

    // Each transaction inserts ten rows and updates the first of them.
    let writer_db = crate::support::postgres::connect(&fixture.db_config()).await;
    let writer = tokio::spawn(async move {
        for t in 0..TRANSACTIONS {
            writer_db
                .batch_execute(&insert_then_update_sql(t, ROWS_PER_TRANSACTION))
                .await
                .expect("writer transaction");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });

    for round in 0..3 {
        let pause = 300 + (uuid::Uuid::new_v4().as_u128() % 1200) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        process.kill_9().await;
        eprintln!("round {round}: killed after {pause} ms");
        process = ProcessSource::start(&fixture, &connector);
    }
    writer.await.expect("writer finished");

    let expected = insert_then_update_events(TRANSACTIONS, ROWS_PER_TRANSACTION);
    let seen = match collector
        .try_collect(expected.len(), Duration::from_secs(120))
        .await
    {
        Ok(seen) => seen,
        Err(message) => panic!("{message}\nsource log:\n{}", process.log()),
    };
    assert_exactly(&seen, &expected, &process);
    collector.expect_no_more(Duration::from_secs(2)).await;

    // `source.sequence` goes on across the restarts: only the very first transaction (no
    // transaction before it) lacks a last commit LSN, and positions only ever grow.
    let positions: Vec<(Option<u64>, u64)> = seen
        .iter()
        .map(|record| {
            let text = record.payload()["source"]["sequence"]
                .as_str()
                .expect("a sequence")
                .to_owned();
            let parts: Vec<Option<String>> = serde_json::from_str(&text).expect("a JSON array");
            let lsn =
                |part: &Option<String>| part.as_ref().map(|p| p.parse::<u64>().expect("an LSN"));
            (lsn(&parts[0]), lsn(&parts[1]).expect("the change's LSN"))
        })
        .collect();
    let without_last_commit = positions.iter().take_while(|p| p.0.is_none()).count();
    assert!(
        positions[without_last_commit..]
            .iter()
            .all(|p| p.0.is_some()),
        "a transaction after a restart has no last commit LSN"
    );
    assert!(
        positions[without_last_commit..]
            .windows(2)
            .all(|w| w[0] < w[1]),
        "source.sequence went back"
    );
}
