//! Source behaviours behind options and table settings: TOAST under each replica identity,
//! transaction metadata, heartbeats, column filters, slot handling and the permanent errors
//! that say what to do.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    kafka::{Collector, Isolation},
    source::{InProcessSource, SourceFixture},
};

const WAIT: Duration = Duration::from_secs(60);

/// About 128 kB of text that does not compress well, so PostgreSQL stores it out of line.
const BIG: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 4000) i)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_is_the_placeholder_under_default_and_the_value_under_full() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE docs_default (id int PRIMARY KEY, title text, body text);
             CREATE TABLE docs_full (id int PRIMARY KEY, title text, body text);
             ALTER TABLE docs_full REPLICA IDENTITY FULL;
             ALTER TABLE docs_default ALTER COLUMN body SET STORAGE EXTERNAL;
             ALTER TABLE docs_full ALTER COLUMN body SET STORAGE EXTERNAL;",
        )
        .await
        .expect("schema");
    let config = fixture.config("public.docs_default,public.docs_full", &[]);
    let default_topic = fixture.table_topic("docs_default");
    let full_topic = fixture.table_topic("docs_full");
    let mut default_records = Collector::new(
        fixture.topic(&default_topic).await,
        Isolation::ReadCommitted,
    );
    let mut full_records =
        Collector::new(fixture.topic(&full_topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;

    let client = fixture.db.client();
    client
        .batch_execute(&format!(
            "INSERT INTO docs_default VALUES (1, 'a', {BIG});
             INSERT INTO docs_full VALUES (1, 'a', {BIG});
             UPDATE docs_default SET title = 'b' WHERE id = 1;
             UPDATE docs_full SET title = 'b' WHERE id = 1;"
        ))
        .await
        .expect("changes");
    let body: String = client
        .query_one(&format!("SELECT {BIG}"), &[])
        .await
        .expect("the big value")
        .get(0);

    let seen = default_records.collect(2, WAIT).await;
    assert_eq!(seen[0].payload()["after"]["body"], body.as_str());
    let update = seen[1].payload();
    assert_eq!(update["after"]["title"], "b");
    assert_eq!(update["after"]["body"], "__debezium_unavailable_value");

    let seen = full_records.collect(2, WAIT).await;
    let update = seen[1].payload();
    assert_eq!(update["after"]["title"], "b");
    assert_eq!(
        update["after"]["body"],
        body.as_str(),
        "under FULL the unchanged value comes from the old row"
    );
    assert_eq!(update["before"]["title"], "a");
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_metadata_brackets_each_transaction() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);")
        .await
        .expect("schema");
    let config = fixture.config(
        "public.a,public.b",
        &[("provide.transaction.metadata", "true")],
    );
    let transaction_topic = format!("{}.transaction", fixture.prefix);
    let a_topic = fixture.table_topic("a");
    let mut markers = Collector::new(
        fixture.topic(&transaction_topic).await,
        Isolation::ReadCommitted,
    );
    let mut a_records = Collector::new(fixture.topic(&a_topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;

    fixture
        .db
        .client()
        .batch_execute("BEGIN; INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (3); COMMIT;")
        .await
        .expect("transaction");
    let seen = markers.collect(2, WAIT).await;
    let (begin, end) = (seen[0].payload(), seen[1].payload());
    assert_eq!(begin["status"], "BEGIN");
    assert_eq!(end["status"], "END");
    assert_eq!(begin["id"], end["id"]);
    assert_eq!(end["event_count"], 3);
    assert_eq!(
        end["data_collections"],
        json!([
            {"data_collection": "public.a", "event_count": 2},
            {"data_collection": "public.b", "event_count": 1}
        ])
    );
    let rows = a_records.collect(2, WAIT).await;
    let block = &rows[1].payload()["transaction"];
    assert_eq!(block["id"], begin["id"]);
    assert_eq!(block["total_order"], 2);
    assert_eq!(block["data_collection_order"], 2);
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_their_topic_and_advance_an_idle_slot() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE idle (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let config = fixture.config("public.idle", &[("heartbeat.interval.ms", "300")]);
    let heartbeat_topic = format!("__debezium-heartbeat.{}", fixture.prefix);
    let mut beats = Collector::new(
        fixture.topic(&heartbeat_topic).await,
        Isolation::ReadCommitted,
    );
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let before = fixture.confirmed_flush_lsn().await;

    let seen = beats.collect(3, WAIT).await;
    assert_eq!(
        seen[0].key_json()["payload"],
        json!({"serverName": fixture.prefix})
    );
    assert!(seen[0].payload()["ts_ms"].as_i64().is_some_and(|t| t > 0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fixture.confirmed_flush_lsn().await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeats did not advance the slot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_filters_leave_columns_out_but_keep_the_key() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE people (id int PRIMARY KEY, name text, ssn text)")
        .await
        .expect("schema");
    let config = fixture.config(
        "public.people",
        &[("column.exclude.list", "public.people.ssn,public.people.id")],
    );
    let topic = fixture.table_topic("people");
    let mut records = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO people VALUES (1, 'Ann', '123-45-6789')")
        .await
        .expect("insert");
    let seen = match records.try_collect(1, Duration::from_secs(20)).await {
        Ok(seen) => seen,
        Err(message) => panic!("{message}; the source ended with {:?}", source.stop().await),
    };
    assert_eq!(seen[0].payload()["after"], json!({"id": 1, "name": "Ann"}));
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_drop_on_stop_removes_the_slot_after_a_clean_stop() {
    let fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let config = fixture.config("public.t", &[("slot.drop.on.stop", "true")]);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    source.stop().await.expect("clean stop");
    let left = fixture
        .db
        .client()
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&fixture.slot],
        )
        .await
        .expect("slots");
    assert!(
        left.is_none(),
        "slot {} survived slot.drop.on.stop",
        fixture.slot
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_ahead_of_the_stored_offset_is_refused() {
    let mut fixture = SourceFixture::new().await;
    let client = fixture.db.client();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let config = fixture.config("public.t", &[]);
    let topic = fixture.table_topic("t");
    let mut records = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config.clone(), fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    // Delivered, so an offset is stored.
    records.collect(1, WAIT).await;
    source.stop().await.expect("clean stop");

    // Someone else consumes the slot past what Kafka holds: that WAL is gone for us.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&fixture.slot],
        )
        .await
        .expect("slot")
        .get::<_, bool>(0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the walsender kept the slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("insert");
    client
        .query(
            "SELECT * FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
               'proto_version', '1', 'publication_names', $2)",
            &[&fixture.slot, &format!("{}_pub", fixture.name)],
        )
        .await
        .expect("consume the slot");

    let source = InProcessSource::start(config, fixture.destination());
    let err = source
        .ended(Duration::from_secs(60))
        .await
        .expect_err("the source must refuse to start");
    assert!(!err.is_transient(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("past the last change delivered"),
        "{message}"
    );
    assert!(message.contains(&fixture.slot), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_replication_is_told_how_to_fix_it() {
    let fixture = SourceFixture::new().await;
    let client = fixture.db.client();
    let role = format!("{}_norepl", fixture.name);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT CREATE ON DATABASE {} TO {role};",
            fixture.db.name
        ))
        .await
        .expect("role");
    let config = fixture.config(
        "public.t",
        &[
            ("database.user", role.as_str()),
            ("database.password", "pw"),
        ],
    );
    let source = InProcessSource::start(config, fixture.destination());
    let err = source
        .ended(Duration::from_secs(30))
        .await
        .expect_err("the role may not replicate");
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .ok();
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("ALTER ROLE {role} REPLICATION")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_dropped_while_streaming_stops_the_source_saying_so() {
    let fixture = SourceFixture::new().await;
    let client = fixture.db.client();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let config = fixture.config("public.t", &[]);
    let publication = config.publication_name.clone();
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    client
        .batch_execute(&format!(
            "DROP PUBLICATION {publication}; INSERT INTO t VALUES (1);"
        ))
        .await
        .expect("drop and change");
    let err = source
        .ended(Duration::from_secs(60))
        .await
        .expect_err("the stream cannot go on");
    assert!(!err.is_transient(), "{err}");
    let message = err.to_string();
    assert!(message.contains("was dropped"), "{message}");
    assert!(message.contains(&publication), "{message}");
}
