//! The PostgreSQL sink end to end: changes in a source database, through the source connector
//! and Kafka, applied by the sink to a second database; the target tables must equal the
//! source tables.

use tributary::{config::PostgresSourceConfig, event::TableId};

use crate::support::{
    kafka::{self, Collector, Isolation},
    postgres::TestDatabase,
    sink::{self, InProcessSink, wait_until_equal},
    source::{InProcessSource, SourceFixture},
};

/// The change topic of `table` (in schema public), as the source names it.
fn topic_of(config: &PostgresSourceConfig, table: &str) -> String {
    config.table_topic(&TableId::new("public", table))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_drains_into_equal_tables() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, balance numeric(10,2),
                 born date, seen timestamptz, local_at timestamp, tags text[], doc jsonb, uid uuid,
                 blob bytea, flag boolean, score double precision, big text);
             CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric(12,3));",
        )
        .await
        .expect("schema");
    let source_config = fixture.config("public.customers,public.orders", &[]);
    let customers_topic = topic_of(&source_config, "customers");
    let orders_topic = topic_of(&source_config, "orders");
    fixture.topic(&customers_topic).await;
    fixture.topic(&orders_topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;

    let client = fixture.db.client();
    client
        .batch_execute(
            "INSERT INTO customers
                 SELECT g, 'name ' || g, g * 1.25, date '2020-01-01' + g,
                        timestamptz '2024-02-29 12:00:00+00' + g * interval '1 hour',
                        timestamp '2024-01-01 00:00:00.123456' + g * interval '1 minute',
                        ARRAY['a' || g, NULL, 'q\"b\\c'], jsonb_build_object('k', g, 's', 'x y'),
                        md5(g::text)::uuid, decode(md5(g::text), 'hex'), g % 2 = 0, g / 3.0, NULL
                   FROM generate_series(1, 60) g;
             UPDATE customers SET name = 'renamed', balance = NULL WHERE id % 5 = 0;
             DELETE FROM customers WHERE id % 7 = 0;
             UPDATE customers SET id = 1000 WHERE id = 3;
             UPDATE customers SET big = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400))
              WHERE id = 1;
             INSERT INTO orders SELECT g, g % 10, g * 0.125 FROM generate_series(1, 30) g;
             BEGIN;
             UPDATE orders SET total = total + 1 WHERE id < 10;
             DELETE FROM orders WHERE id > 25;
             INSERT INTO orders VALUES (26, 1, 2.5);
             COMMIT;",
        )
        .await
        .expect("workload");
    let target = TestDatabase::create().await;
    let config = sink::config(
        &target,
        &sink::connector_name(),
        &[&customers_topic, &orders_topic],
        &[
            ("insert.mode", "upsert"),
            ("delete.enabled", "true"),
            ("schema.evolution", "basic"),
            ("collection.name.format", "${source.table}"),
        ],
    );
    let mut sink = InProcessSink::start(config);
    wait_until_equal(
        &mut sink,
        client,
        "customers",
        target.client(),
        "customers",
        "id",
    )
    .await;
    wait_until_equal(&mut sink, client, "orders", target.client(), "orders", "id").await;

    // An update that leaves the TOASTed column out of the event (its placeholder instead): the
    // target keeps the value it has.
    let big_length: i32 = client
        .query_one("SELECT length(big) FROM customers WHERE id = 1", &[])
        .await
        .expect("big")
        .get(0);
    assert_eq!(big_length, 12_800);
    client
        .batch_execute("UPDATE customers SET name = 'toast kept' WHERE id = 1")
        .await
        .expect("update");
    wait_until_equal(
        &mut sink,
        client,
        "customers",
        target.client(),
        "customers",
        "id",
    )
    .await;
    let target_big: i32 = target
        .client()
        .query_one("SELECT length(big) FROM customers WHERE id = 1", &[])
        .await
        .expect("big")
        .get(0);
    assert_eq!(target_big, 12_800);

    // A column added at the source is added to the target (schema.evolution=basic).
    client
        .batch_execute(
            "ALTER TABLE orders ADD COLUMN note text, ADD COLUMN due date;
             UPDATE orders SET note = 'first' WHERE id = 1;
             INSERT INTO orders VALUES (500, 5, 5.5, 'new', '2025-01-31');",
        )
        .await
        .expect("add column");
    wait_until_equal(&mut sink, client, "orders", target.client(), "orders", "id").await;

    // The created table has the source's types (numeric precision and scale included).
    let types: Vec<String> = target
        .client()
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'public.customers'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .expect("types")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        [
            "integer",
            "text",
            "numeric(10,2)",
            "date",
            "timestamp with time zone",
            "timestamp(6) without time zone",
            "text[]",
            "jsonb",
            "uuid",
            "bytea",
            "boolean",
            "double precision",
            "text"
        ]
    );
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_stored_offsets_without_duplicates() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, v int)")
        .await
        .expect("schema");
    let source_config = fixture.config("public.events", &[]);
    let topic = topic_of(&source_config, "events");
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    for t in 0..5 {
        client
            .batch_execute(&format!(
                "INSERT INTO events SELECT g, g * 2 FROM generate_series({}, {}) g",
                t * 20 + 1,
                t * 20 + 20
            ))
            .await
            .expect("inserts");
    }

    // Insert mode without a key: every record becomes a row, so a record applied twice would
    // show as a duplicate row.
    let target = TestDatabase::create().await;
    let name = sink::connector_name();
    let config = || {
        sink::config(
            &target,
            &name,
            &[&topic],
            &[
                ("insert.mode", "insert"),
                ("schema.evolution", "basic"),
                ("collection.name.format", "events_log"),
                ("batch.size", "7"),
            ],
        )
    };
    let mut sink = InProcessSink::start(config());
    wait_until_equal(
        &mut sink,
        client,
        "events",
        target.client(),
        "events_log",
        "id",
    )
    .await;
    sink.stop().await;
    let stored = |expected_generation: i64| {
        let target = &target;
        let name = &name;
        let topic = &topic;
        async move {
            let next: i64 = target
                .client()
                .query_one(
                    "SELECT next_offset FROM tributary_offsets WHERE connector = $1 AND topic = $2 AND partition = 0",
                    &[name, topic],
                )
                .await
                .expect("a stored offset")
                .get(0);
            let generation: i64 = target
                .client()
                .query_one(
                    "SELECT generation FROM tributary_sink_generations WHERE connector = $1",
                    &[name],
                )
                .await
                .expect("a generation")
                .get(0);
            assert_eq!(generation, expected_generation);
            next
        }
    };
    // The stored offset is past the last change record; only a transaction marker can follow.
    let first_stop = stored(1).await;
    let end = kafka::end_offset(&topic);
    assert!(
        (end - 1..=end).contains(&first_stop) && first_stop >= 100,
        "stored {first_stop}, topic ends at {end}"
    );

    client
        .batch_execute("INSERT INTO events SELECT g, g * 2 FROM generate_series(101, 150) g")
        .await
        .expect("more inserts");
    let mut sink = InProcessSink::start(config());
    wait_until_equal(
        &mut sink,
        client,
        "events",
        target.client(),
        "events_log",
        "id",
    )
    .await;
    let count: i64 = target
        .client()
        .query_one("SELECT count(*) FROM events_log", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 150);
    sink.stop().await;
    let second_stop = stored(2).await;
    let end = kafka::end_offset(&topic);
    assert!(
        (end - 1..=end).contains(&second_stop) && second_stop >= first_stop + 50,
        "stored {second_stop} after {first_stop}, topic ends at {end}"
    );
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_and_column_names_are_just_names() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            r#"CREATE TABLE "Odd ""Quoted"" Table" ("Id" int PRIMARY KEY, "my column" text,
                   "quote""d" int, "MixedCase" text, "select" text);"#,
        )
        .await
        .expect("schema");
    let source_config = fixture.config(r#"public\.Odd "Quoted" Table"#, &[]);
    let topic = topic_of(&source_config, "Odd \"Quoted\" Table");
    // The sink starts before its topic exists and finds it through topics.regex.
    let target = TestDatabase::create().await;
    let topics_regex = format!("{}\\..*", regex::escape(&fixture.prefix));
    let sink_config = sink::config(
        &target,
        &sink::connector_name(),
        &[],
        &[
            ("topics.regex", &topics_regex),
            ("insert.mode", "upsert"),
            ("delete.enabled", "true"),
            ("schema.evolution", "basic"),
            ("collection.name.format", "${source.schema}.${source.table}"),
        ],
    );
    let mut sink = InProcessSink::start(sink_config);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute(
            r#"INSERT INTO "Odd ""Quoted"" Table"
                   SELECT g, 'v ' || g, g, 'M' || g, 'drop table x; --' FROM generate_series(1, 20) g;
               UPDATE "Odd ""Quoted"" Table" SET "my column" = 'it''s' WHERE "Id" < 5;
               DELETE FROM "Odd ""Quoted"" Table" WHERE "Id" > 15;
               UPDATE "Odd ""Quoted"" Table" SET "Id" = 99 WHERE "Id" = 10;"#,
        )
        .await
        .expect("workload");
    let table = r#"public."Odd ""Quoted"" Table""#;
    wait_until_equal(&mut sink, client, table, target.client(), table, r#""Id""#).await;
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_task_fences_the_older_one_and_lost_connections_are_retried() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .expect("schema");
    let source_config = fixture.config("public.items", &[]);
    let topic = topic_of(&source_config, "items");
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute("INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g")
        .await
        .expect("inserts");
    let target = TestDatabase::create().await;
    let name = sink::connector_name();
    let config = || {
        sink::config(
            &target,
            &name,
            &[&topic],
            &[
                ("insert.mode", "upsert"),
                ("delete.enabled", "true"),
                ("schema.evolution", "basic"),
                ("collection.name.format", "items"),
            ],
        )
    };
    let mut older = InProcessSink::start(config());
    wait_until_equal(&mut older, client, "items", target.client(), "items", "id").await;

    // The server drops the sink's connection: the next batch reconnects and is written.
    let terminated: i64 = target
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = $1",
            &[&format!("tributary sink {name}")],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(terminated, 1);
    client
        .batch_execute("UPDATE items SET v = 'b' WHERE id <= 5")
        .await
        .expect("updates");
    wait_until_equal(&mut older, client, "items", target.client(), "items", "id").await;

    // A second task of the same connector takes over; the older one may not write any more.
    let mut newer = InProcessSink::start(config());
    let generation = || async {
        target
            .client()
            .query_one(
                "SELECT generation FROM tributary_sink_generations WHERE connector = $1",
                &[&name],
            )
            .await
            .expect("generation")
            .get::<_, i64>(0)
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while generation().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newer task did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client
        .batch_execute("DELETE FROM items WHERE id > 8; UPDATE items SET v = 'c' WHERE id = 1")
        .await
        .expect("more changes");
    wait_until_equal(&mut newer, client, "items", target.client(), "items", "id").await;
    match older.ended(std::time::Duration::from_secs(30)).await {
        Err(tributary::sink::postgres::Error::Fenced { ours, current, .. }) => {
            assert_eq!((ours, current), (1, 2));
        }
        other => panic!("the older task should be fenced, it ended with {other:?}"),
    }
    newer.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_lands_in_the_dead_letter_topic_and_the_rest_flows_on() {
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
    };

    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .expect("schema");
    let source_config = fixture.config("public.items", &[]);
    let topic = topic_of(&source_config, "items");
    let mut changes = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let dead_letter_topic = format!("{}-dlq", fixture.prefix);
    let mut dead_letters = Collector::new(
        fixture.topic(&dead_letter_topic).await,
        Isolation::ReadCommitted,
    );
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute("INSERT INTO items SELECT g, 'a' FROM generate_series(1, 5) g")
        .await
        .expect("inserts");
    // Wait for the source's records, so the poison one comes after them.
    changes.collect(5, std::time::Duration::from_secs(60)).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka::bootstrap_servers())
        .create()
        .expect("a producer");
    let poison_offset = producer
        .send(
            FutureRecord::<str, str>::to(&topic)
                .key(r#"{"id":999}"#)
                .payload("this is not JSON"),
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("the poison record is written")
        .offset;
    client
        .batch_execute(
            "INSERT INTO items SELECT g, 'b' FROM generate_series(6, 10) g;
             INSERT INTO items VALUES (11, 'bad'), (12, 'c');",
        )
        .await
        .expect("more inserts");

    // The target table refuses one of the rows: the database's rejection is a poison record too.
    let target = TestDatabase::create().await;
    target
        .client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text CHECK (v <> 'bad'))")
        .await
        .expect("target table");
    let name = sink::connector_name();
    let config = sink::config(
        &target,
        &name,
        &[&topic],
        &[
            ("insert.mode", "upsert"),
            ("schema.evolution", "basic"),
            ("collection.name.format", "items"),
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", &dead_letter_topic),
            ("errors.deadletterqueue.context.headers.enable", "true"),
        ],
    );
    let mut sink = InProcessSink::start(config);
    wait_until_equal(
        &mut sink,
        client,
        "(SELECT * FROM items WHERE v <> 'bad')",
        target.client(),
        "items",
        "id",
    )
    .await;
    let letters = dead_letters
        .collect(2, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(letters.len(), 2);
    let rejected = &letters[1];
    assert_eq!(rejected.key_payload(), serde_json::json!({"id": 11}));
    assert_eq!(rejected.payload()["after"]["v"], "bad");
    let letter = &letters[0];
    assert_eq!(letter.value_str(), Some("this is not JSON"));
    assert_eq!(letter.key.as_deref(), Some(br#"{"id":999}"#.as_slice()));
    let header = |name: &str| {
        letter
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("no header {name}: {:?}", letter.headers))
    };
    assert_eq!(header("__connect.errors.topic"), topic);
    assert_eq!(header("__connect.errors.partition"), "0");
    assert_eq!(header("__connect.errors.offset"), poison_offset.to_string());
    assert_eq!(header("__connect.errors.connector.name"), name);
    assert!(
        header("__connect.errors.exception.message").contains("not JSON"),
        "{}",
        header("__connect.errors.exception.message")
    );
    let rejection = rejected
        .headers
        .iter()
        .find(|(k, _)| k == "__connect.errors.exception.message")
        .and_then(|(_, v)| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(rejection.contains("SQLSTATE 23514"), "{rejection}");
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_of_rows_already_in_the_target_are_upserted() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .expect("schema");
    let source_config = fixture.config("public.items", &[]);
    let topic = topic_of(&source_config, "items");
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute(
            "INSERT INTO items SELECT g, 'new' FROM generate_series(1, 50) g;
             UPDATE items SET v = 'updated' WHERE id % 10 = 0;",
        )
        .await
        .expect("workload");
    // Rows the creates will meet: a stale copy of some (as after a replay or an earlier
    // load) and one of the target's own.
    let target = TestDatabase::create().await;
    target
        .client()
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, v text);
             INSERT INTO items VALUES (7, 'stale'), (20, 'stale'), (100, 'theirs');",
        )
        .await
        .expect("target table");
    let config = sink::config(
        &target,
        &sink::connector_name(),
        &[&topic],
        &[
            ("insert.mode", "upsert"),
            ("collection.name.format", "items"),
        ],
    );
    let mut sink = InProcessSink::start(config);
    let expected = "(SELECT id, v FROM items UNION ALL SELECT 100, 'theirs')";
    wait_until_equal(&mut sink, client, expected, target.client(), "items", "id").await;
    // And creates after that still arrive.
    client
        .batch_execute("INSERT INTO items SELECT g, 'later' FROM generate_series(51, 60) g")
        .await
        .expect("more inserts");
    wait_until_equal(&mut sink, client, expected, target.client(), "items", "id").await;
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_in_the_middle_of_batches_lose_and_duplicate_nothing() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE events (id int PRIMARY KEY, v int);
             CREATE TABLE totals (id int PRIMARY KEY, n int)",
        )
        .await
        .expect("schema");
    let source_config = fixture.config("public.events,public.totals", &[]);
    let events_topic = topic_of(&source_config, "events");
    let totals_topic = topic_of(&source_config, "totals");
    fixture.topic(&events_topic).await;
    fixture.topic(&totals_topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    for t in 0..40 {
        client
            .batch_execute(&format!(
                "INSERT INTO events SELECT g, g FROM generate_series({}, {}) g;
                 INSERT INTO totals VALUES ({}, 0) ON CONFLICT (id) DO UPDATE SET n = totals.n + 1;
                 DELETE FROM totals WHERE id = {};",
                t * 50 + 1,
                t * 50 + 50,
                t % 7,
                (t + 3) % 7
            ))
            .await
            .expect("workload");
    }

    let target = TestDatabase::create().await;
    let name = sink::connector_name();
    let config = |topic: &str, mode: &str, table: &str| {
        sink::config(
            &target,
            &name,
            &[topic],
            &[
                ("insert.mode", mode),
                ("schema.evolution", "basic"),
                ("collection.name.format", table),
                ("batch.size", "37"),
            ],
        )
    };
    // Each round stops a sink mid-stream (in a run while writing this test the events table
    // had 111, 185, 407, 666 and 1073 rows after rounds 1 to 5).
    // Events in insert mode without a key (a record applied twice is a duplicate row); the
    // totals, with deletes, in upsert mode. Both sinks share the connector name, so they also
    // share the offsets table and fence each other: run them one after the other.
    let mut upsert_totals = config(&totals_topic, "upsert", "totals");
    upsert_totals.delete_enabled = true;
    for round in 0..6u64 {
        let sink = InProcessSink::start(config(&events_topic, "insert", "events"));
        tokio::time::sleep(std::time::Duration::from_millis(40 + round * 37)).await;
        sink.crash().await;
        let sink = InProcessSink::start(upsert_totals.clone());
        tokio::time::sleep(std::time::Duration::from_millis(20 + round * 29)).await;
        sink.crash().await;
    }
    let mut sink = InProcessSink::start(config(&events_topic, "insert", "events"));
    wait_until_equal(&mut sink, client, "events", target.client(), "events", "id").await;
    sink.stop().await;
    let mut sink = InProcessSink::start(upsert_totals);
    wait_until_equal(&mut sink, client, "totals", target.client(), "totals", "id").await;
    sink.stop().await;
    let count: i64 = target
        .client()
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2000);
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_empties_the_target_table_when_enabled() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .expect("schema");
    let source_config = fixture.config("public.items", &[("skipped.operations", "none")]);
    let topic = topic_of(&source_config, "items");
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute(
            "INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g;
             TRUNCATE items;
             INSERT INTO items SELECT g, 'b' FROM generate_series(11, 15) g;",
        )
        .await
        .expect("workload");
    let target = TestDatabase::create().await;
    let config = sink::config(
        &target,
        &sink::connector_name(),
        &[&topic],
        &[
            ("insert.mode", "upsert"),
            ("delete.enabled", "true"),
            ("truncate.enabled", "true"),
            ("schema.evolution", "basic"),
            ("collection.name.format", "items"),
        ],
    );
    let mut sink = InProcessSink::start(config);
    wait_until_equal(&mut sink, client, "items", target.client(), "items", "id").await;
    client
        .batch_execute("TRUNCATE items; INSERT INTO items VALUES (1, 'c');")
        .await
        .expect("second truncate");
    wait_until_equal(&mut sink, client, "items", target.client(), "items", "id").await;
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_through_the_registry_drain_into_equal_tables() {
    let registry = crate::source_avro::Registry::start().await;
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, rank smallint, name text NOT NULL,
                 balance numeric(10,2), opened date, seen timestamptz, active boolean, blob bytea,
                 doc jsonb, uid uuid, tags text[], ratio double precision)",
        )
        .await
        .expect("schema");
    let avro = registry.converters();
    let source_config = fixture.config("public.accounts", &avro);
    let topic = topic_of(&source_config, "accounts");
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute(
            "INSERT INTO accounts
                 SELECT g, g % 5, 'n' || g, g * 10.25, date '2021-03-01' + g,
                        timestamptz '2024-05-01 08:00:00+02' + g * interval '1 day', g % 3 = 0,
                        decode(md5(g::text), 'hex'), jsonb_build_object('g', g), md5(g::text)::uuid,
                        ARRAY['t' || g], g / 7.0
                   FROM generate_series(1, 25) g;
             UPDATE accounts SET balance = -1.5, name = 'neg' WHERE id < 4;
             DELETE FROM accounts WHERE id > 20;
             UPDATE accounts SET id = 100 WHERE id = 10;",
        )
        .await
        .expect("workload");
    let target = TestDatabase::create().await;
    let mut extra = vec![
        ("insert.mode", "upsert"),
        ("delete.enabled", "true"),
        ("schema.evolution", "basic"),
        ("collection.name.format", "${source.table}"),
    ];
    extra.extend(avro);
    let config = sink::config(&target, &sink::connector_name(), &[&topic], &extra);
    let mut sink = InProcessSink::start(config);
    wait_until_equal(
        &mut sink,
        client,
        "accounts",
        target.client(),
        "accounts",
        "id",
    )
    .await;
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_without_schemas_into_an_existing_table() {
    let mut fixture = SourceFixture::new().await;
    // Columns named like the parts of a schema envelope are just columns.
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE notes (id int PRIMARY KEY, schema text, payload jsonb)")
        .await
        .expect("schema");
    let plain = [
        ("key.converter.schemas.enable", "false"),
        ("value.converter.schemas.enable", "false"),
    ];
    let source_config = fixture.config("public.notes", &plain);
    let topic = topic_of(&source_config, "notes");
    fixture.topic(&topic).await;
    let mut source = InProcessSource::start(source_config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    let client = fixture.db.client();
    client
        .batch_execute(
            r#"INSERT INTO notes SELECT g, 's' || g, jsonb_build_object('n', g) FROM generate_series(1, 10) g;
               UPDATE notes SET schema = NULL WHERE id = 2;
               DELETE FROM notes WHERE id = 3;"#,
        )
        .await
        .expect("workload");
    // Without schemas the sink cannot create the table: it exists already.
    let target = TestDatabase::create().await;
    target
        .client()
        .batch_execute("CREATE TABLE notes (id int PRIMARY KEY, schema text, payload jsonb)")
        .await
        .expect("target table");
    let mut extra = vec![
        ("insert.mode", "upsert"),
        ("delete.enabled", "true"),
        ("collection.name.format", "notes"),
    ];
    extra.extend(plain);
    let config = sink::config(&target, &sink::connector_name(), &[&topic], &extra);
    let mut sink = InProcessSink::start(config);
    wait_until_equal(&mut sink, client, "notes", target.client(), "notes", "id").await;
    sink.stop().await;
    source.stop().await.expect("source stops cleanly");
}

/// Registers `body` (`{"name", "config"}`) on the worker at `base`; it must be created.
async fn post_connector(http: &reqwest::Client, base: &str, body: &serde_json::Value) {
    let response = http
        .post(format!("{base}/connectors"))
        .json(body)
        .send()
        .await
        .expect("POST /connectors");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "creating {}: {text}", body["name"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_registered_over_rest_survive_kill_9_of_their_worker_mid_batch() {
    use serde_json::json;

    use crate::support::serve::{ServeProcess, free_port, metric_value};

    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
             CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL);",
        )
        .await
        .expect("schema");
    let accounts_topic = fixture.table_topic("accounts");
    let events_topic = fixture.table_topic("events");
    fixture.topic(&accounts_topic).await;
    // Several partitions: the sink stores and resumes an offset for each.
    tributary::kafka::TopicAdmin::new(&kafka::settings(), std::time::Duration::from_secs(30))
        .expect("admin client")
        .ensure_topic(&tributary::kafka::TopicSpec::new(&events_topic, 3))
        .await
        .expect("events topic");
    let _events_guard = kafka::TestTopic::delete_on_drop(events_topic.clone(), 3);
    let client = fixture.db.client();
    let _state_guards = [
        kafka::TestTopic::delete_on_drop(format!("{}-configs", fixture.offsets_topic), 1),
        kafka::TestTopic::delete_on_drop(format!("{}-status", fixture.offsets_topic), 1),
    ];
    let target = TestDatabase::create().await;
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/{}",
        crate::support::postgres::port(),
        target.name
    );

    let dir = std::env::temp_dir().join(crate::support::unique_name("tributary-sink-serve"));
    let port = free_port();
    let worker_config = ServeProcess::config(&fixture, port);
    let mut serve = ServeProcess::start(&dir, &worker_config, port).await;
    let http = reqwest::Client::new();
    let source: serde_json::Value =
        serde_json::from_str(&fixture.connector_json("public.accounts,public.events", &[]))
            .expect("JSON");
    post_connector(&http, &serve.base, &source).await;
    let upsert_name = sink::connector_name();
    let insert_name = sink::connector_name();
    post_connector(
        &http,
        &serve.base,
        &json!({"name": upsert_name, "config": {
            "connector.class": "postgres-sink",
            "topics": accounts_topic,
            "connection.url": url,
            "connection.username": "postgres",
            "insert.mode": "upsert",
            "delete.enabled": "true",
            "schema.evolution": "basic",
            "collection.name.format": "${source.table}",
            "batch.size": "100",
        }}),
    )
    .await;
    // Insert mode without a key: a record applied twice would be a second row.
    post_connector(
        &http,
        &serve.base,
        &json!({"name": insert_name, "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
            "topics": events_topic,
            "connection.url": url,
            "connection.user": "postgres",
            "insert.mode": "insert",
            "pk.mode": "none",
            "auto.create": "true",
            "table.name.format": "events_log",
            "batch.size": "100",
        }}),
    )
    .await;
    fixture.wait_until_streaming().await;

    // A fixed-seed xorshift: the same workload on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random_below = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut next_event = 0;
    let mut partial_kills = 0;
    let mut applied_before_round = 0;
    for round in 0..6 {
        let mut statements = String::new();
        for _ in 0..80 {
            statements.push_str("BEGIN;");
            for _ in 0..25 {
                let id = 1 + random_below(399);
                statements.push_str(&match random_below(10) {
                    0..=5 => format!(
                        "INSERT INTO accounts VALUES ({id}, {}, 'r{round}')
                         ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + 1, note = EXCLUDED.note;",
                        random_below(1000)
                    ),
                    6..=7 => format!("DELETE FROM accounts WHERE id = {id};"),
                    // A key change: a delete of the old key and an insert of the new one.
                    _ => format!(
                        "UPDATE accounts SET id = {} WHERE id = {id};",
                        10_000 + next_event
                    ),
                });
                next_event += 1i64;
                statements.push_str(&format!(
                    "INSERT INTO events VALUES ({next_event}, 'k{}');",
                    next_event % 7
                ));
            }
            statements.push_str("COMMIT;");
        }
        client.batch_execute(&statements).await.expect("workload");
        if round % 2 == 1 {
            // kill -9 as soon as the insert sink is part-way through this round's records.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline {
                let exists: bool = target
                    .client()
                    .query_one("SELECT to_regclass('events_log') IS NOT NULL", &[])
                    .await
                    .expect("lookup")
                    .get(0);
                let applied: i64 = if exists {
                    target
                        .client()
                        .query_one("SELECT count(*) FROM events_log", &[])
                        .await
                        .expect("count")
                        .get(0)
                } else {
                    0
                };
                if applied > applied_before_round && applied < next_event {
                    partial_kills += 1;
                    break;
                }
                if applied == next_event {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            serve.child.kill().await.expect("kill -9");
            serve = ServeProcess::start(&dir, &worker_config, port).await;
        }
        applied_before_round = next_event;
    }

    // Drained: the upsert table equals its source, the insert table has each event once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let expected_accounts = sink::contents(client, "accounts", "id").await;
    let expected_events = sink::contents(client, "events", "id").await;
    loop {
        let accounts = sink::contents(target.client(), "accounts", "id").await;
        let events = sink::contents(target.client(), "events_log", "id, kind").await;
        if accounts == expected_accounts && events == expected_events {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the targets never caught up (accounts equal: {}, events equal: {}); worker log:\n{}",
            accounts == expected_accounts,
            events == expected_events,
            serve.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let rows: i64 = target
        .client()
        .query_one("SELECT count(*) FROM events_log", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, next_event, "one row per source insert, none twice");
    assert!(
        partial_kills >= 2,
        "only {partial_kills} of 3 kills came while records were being applied"
    );

    let status: serde_json::Value = http
        .get(format!("{}/connectors/{insert_name}/status", serve.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["type"], "sink", "{status}");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    // The offsets the REST API shows are the ones stored with the rows: the end of each partition.
    let offsets: serde_json::Value = http
        .get(format!("{}/connectors/{insert_name}/offsets", serve.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let listed = offsets["offsets"].as_array().expect("offsets");
    let mut total = 0;
    for entry in listed {
        assert_eq!(entry["partition"]["kafka_topic"], events_topic.as_str());
        total += entry["offset"]["kafka_offset"]
            .as_i64()
            .expect("kafka_offset");
    }
    // Every record of the topic is applied, plus one transaction marker per Kafka transaction
    // and partition it touched: so at least as many offsets as events.
    assert!(
        total >= next_event,
        "{offsets} accounts for fewer records than the {next_event} events"
    );

    // Offsets reset over REST (only while stopped): the insert sink applies everything again.
    let call = |method: reqwest::Method, path: String| {
        let request = http.request(method, format!("{}{path}", serve.base));
        async move {
            let response = request.send().await.expect("HTTP");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    let offsets_path = format!("/connectors/{insert_name}/offsets");
    let (status, body) = call(reqwest::Method::DELETE, offsets_path.clone()).await;
    assert_eq!(status, 400, "a running connector keeps its offsets: {body}");
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("/connectors/{insert_name}/stop"),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(reqwest::Method::DELETE, offsets_path.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(reqwest::Method::GET, offsets_path).await;
    assert_eq!(body, r#"{"offsets":[]}"#);
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("/connectors/{insert_name}/resume"),
    )
    .await;
    assert_eq!(status, 202);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows: i64 = target
            .client()
            .query_one("SELECT count(*) FROM events_log", &[])
            .await
            .expect("count")
            .get(0);
        if rows == 2 * next_event {
            break;
        }
        assert!(
            rows < 2 * next_event && tokio::time::Instant::now() < deadline,
            "{rows} rows after the reset, expected {}; log:\n{}",
            2 * next_event,
            serve.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Everything re-applied after the reset was counted by this worker process.
    let (_, metrics) = call(reqwest::Method::GET, "/metrics".to_owned()).await;
    let consumed = metric_value(&metrics, "tributary_consumed_records_total", &insert_name)
        .unwrap_or_else(|| panic!("no consumed records for {insert_name} in:\n{metrics}"));
    assert!(consumed >= next_event as f64, "{consumed} < {next_event}");
    let _ = std::fs::remove_dir_all(&dir);
}
