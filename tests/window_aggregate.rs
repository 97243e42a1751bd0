//! The window stage end to end: changes in a source table, through the source connector and
//! Kafka, aggregated by the stage into a result table in a second database. After draining, the
//! result table must equal one SQL aggregation over the source table; crashes of the stage do not
//! change that. Hand-written records on a two-partition topic check emission on window close,
//! late events and an idle partition.

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tributary::{
    config::ConnectorConfig,
    window::{self, WindowAggregateConfig},
};

use crate::support::{
    kafka::{self, Collector, Isolation, TestTopic},
    postgres::{TestDatabase, port, with_causes},
    source::{InProcessSource, SourceFixture},
    unique_name,
};

fn window_config(
    target: &TestDatabase,
    name: &str,
    topics: &str,
    extra: &[(&str, &str)],
) -> WindowAggregateConfig {
    let mut config = serde_json::json!({
        "connector.class": "tributary.WindowAggregate",
        "topics": topics,
        "connection.url": format!("jdbc:postgresql://127.0.0.1:{}/{}", port(), target.name),
        "connection.username": "postgres",
        "table.name": "analytics.results",
        "commit.interval.ms": "200",
    });
    for (key, value) in extra {
        config[*key] = serde_json::Value::String((*value).to_owned());
    }
    let json = serde_json::json!({"name": name, "config": config}).to_string();
    let connector = ConnectorConfig::from_json(&json).expect("valid JSON");
    WindowAggregateConfig::from_connector(&connector)
        .unwrap_or_else(|err| panic!("the window config is invalid: {err}"))
}

/// The stage running in this process.
struct InProcessWindow {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), window::Error>>,
}

impl InProcessWindow {
    fn start(config: WindowAggregateConfig) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let settings = kafka::settings();
        let task = tokio::spawn(async move { window::run(config, &settings, token).await });
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        match self.task.await.expect("the window task does not panic") {
            Ok(()) => {}
            Err(err) => panic!("the window stage failed: {err}"),
        }
    }

    /// Drops the task wherever it is, as a crash would: nothing after its last commit is kept.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn check_running(&mut self) {
        if self.task.is_finished() {
            let ended = (&mut self.task).await;
            panic!("the window stage stopped: {ended:?}");
        }
    }
}

/// Waits until `query` on the target gives what `expected_query` gives on the source.
async fn wait_until_equal(
    stage: &mut InProcessWindow,
    source: &Client,
    expected_query: &str,
    target: &Client,
    query: &str,
) {
    let text = |q: &str| format!("SELECT coalesce(string_agg(r::text, E'\\n'), '') FROM ({q}) r");
    let expected: String = source
        .query_one(&text(expected_query), &[])
        .await
        .unwrap_or_else(|e| panic!("expected query: {}", with_causes(&e)))
        .get(0);
    assert!(!expected.is_empty(), "the workload produced no rows");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        stage.check_running().await;
        let got: String = match target.query_one(&text(query), &[]).await {
            Ok(row) => row.get(0),
            Err(_) => String::new(), // the table does not exist yet
        };
        if got == expected {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "the result table did not become equal within 90 s\nexpected:\n{expected}\n\ngot:\n{got}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A small deterministic generator (the workload must be reproducible from its seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Transactions of random inserts, and (with `changes`) updates of the amount, the group and the
/// event time, and deletes; event times fall out of order over two hours.
fn workload(seed: u64, transactions: usize, changes: bool) -> Vec<String> {
    let mut rng = Lcg(seed);
    let mut next_id = 1;
    let mut live: Vec<u64> = Vec::new();
    let mut sql = Vec::new();
    for _ in 0..transactions {
        let mut statements = vec!["BEGIN".to_owned()];
        for _ in 0..20 {
            let choice = if changes && live.len() >= 3 {
                rng.next(10)
            } else {
                0
            };
            let time = format!(
                "timestamp '2024-03-01 00:00:00' + interval '{} seconds'",
                rng.next(7200)
            );
            match choice {
                0..=4 => {
                    statements.push(format!(
                        "INSERT INTO orders VALUES ({next_id}, {}, {}.{:02}, {time})",
                        rng.next(4),
                        rng.next(100),
                        rng.next(100)
                    ));
                    live.push(next_id);
                    next_id += 1;
                }
                5 => {
                    let id = live[rng.next(live.len() as u64) as usize];
                    statements.push(format!(
                        "UPDATE orders SET amount = {}.{:02} WHERE id = {id}",
                        rng.next(100),
                        rng.next(100)
                    ));
                }
                6 => {
                    let id = live[rng.next(live.len() as u64) as usize];
                    statements.push(format!(
                        "UPDATE orders SET customer = {} WHERE id = {id}",
                        rng.next(4)
                    ));
                }
                7 => {
                    let id = live[rng.next(live.len() as u64) as usize];
                    statements.push(format!(
                        "UPDATE orders SET created_at = {time} WHERE id = {id}"
                    ));
                }
                _ => {
                    let index = rng.next(live.len() as u64) as usize;
                    let id = live.swap_remove(index);
                    statements.push(format!("DELETE FROM orders WHERE id = {id}"));
                }
            }
        }
        statements.push("COMMIT".to_owned());
        sql.push(statements.join(";\n"));
    }
    sql
}

const AGGREGATES: &str = "revenue=sum(amount),orders=count(*),avg_amount=avg(amount),\
                          max_amount=max(amount),min_amount=min(amount),amounts=count_distinct(amount),\
                          priced=count(amount)";

/// What the result table is read as (numbers at fixed scales, so both sides print alike).
const RESULT_QUERY: &str = "SELECT customer, window_start, window_end, revenue::numeric(14,2),
        orders, round(avg_amount, 6), max_amount, min_amount, amounts, priced
   FROM analytics.results ORDER BY customer, window_start, window_end";

fn fixed_windows_query(size_seconds: u32, advance_seconds: u32) -> String {
    let hops = size_seconds / advance_seconds - 1;
    format!(
        "SELECT customer, ws, ws + interval '{size_seconds} seconds' AS we,
                sum(amount)::numeric(14,2), count(*), round(avg(amount), 6), max(amount), min(amount),
                count(DISTINCT amount), count(amount)
           FROM (SELECT o.*, to_timestamp(floor(extract(epoch FROM created_at) / {advance_seconds})
                                          * {advance_seconds} - k * {advance_seconds}) AS ws
                   FROM orders o CROSS JOIN generate_series(0, {hops}) k) w
          GROUP BY customer, ws ORDER BY customer, ws, we"
    )
}

/// The source table `orders` and its change topic (created now, deleted with the fixture).
async fn orders_table_and_topic(fixture: &mut SourceFixture) -> String {
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount numeric(10,2),
                                  created_at timestamp NOT NULL)",
        )
        .await
        .expect("schema");
    let topic = fixture.table_topic("orders");
    fixture.topic(&topic).await;
    topic
}

async fn orders_fixture() -> (SourceFixture, String, InProcessSource) {
    let mut fixture = SourceFixture::new().await;
    let topic = orders_table_and_topic(&mut fixture).await;
    let mut source =
        InProcessSource::start(fixture.config("public.orders", &[]), fixture.destination());
    source.wait_until_streaming(&fixture).await;
    (fixture, topic, source)
}

fn aggregate_keys<'a>(window: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut keys = vec![
        ("event.time.field", "created_at"),
        ("group.by", "customer"),
        ("aggregates", AGGREGATES),
        // Everything is in time: the comparison is with the full aggregation.
        ("allowed.lateness", "1000d"),
    ];
    keys.extend_from_slice(window);
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_equal_group_by_across_crashes() {
    let (fixture, topic, source) = orders_fixture().await;
    let target = TestDatabase::create().await;
    let name = unique_name("window");
    let config = || {
        window_config(
            &target,
            &name,
            &topic,
            &aggregate_keys(&[("window.type", "tumbling"), ("window.size", "5m")]),
        )
    };
    let client = fixture.db.client();
    let mut stage = InProcessWindow::start(config());
    let mut rng = Lcg(7);
    for (round, transaction) in workload(42, 30, true).into_iter().enumerate() {
        client.batch_execute(&transaction).await.expect("workload");
        if round % 5 == 4 {
            // Crash somewhere in the middle of reading, decoding or committing.
            tokio::time::sleep(Duration::from_millis(100 + rng.next(600))).await;
            stage.crash().await;
            stage = InProcessWindow::start(config());
        }
    }
    wait_until_equal(
        &mut stage,
        client,
        &fixed_windows_query(300, 300),
        target.client(),
        RESULT_QUERY,
    )
    .await;
    // A clean stop and start changes nothing either.
    stage.stop().await;
    let mut stage = InProcessWindow::start(config());
    client
        .batch_execute(&workload(43, 3, true).join(";\n").replace(
            "INSERT INTO orders VALUES (",
            "INSERT INTO orders VALUES (10000 + ",
        ))
        .await
        .expect("more workload");
    wait_until_equal(
        &mut stage,
        client,
        &fixed_windows_query(300, 300),
        target.client(),
        RESULT_QUERY,
    )
    .await;
    // The result table's key is (group, window_start, window_end).
    let key: String = target
        .client()
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'analytics.results'::regclass AND contype = 'p'",
            &[],
        )
        .await
        .expect("primary key")
        .get(0);
    assert_eq!(key, "PRIMARY KEY (customer, window_start, window_end)");
    stage.stop().await;
    source.stop().await.expect("source stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_without_its_state_rewrites_the_result_rows_already_there() {
    let (fixture, topic, source) = orders_fixture().await;
    let target = TestDatabase::create().await;
    let name = unique_name("window");
    let config = || {
        window_config(
            &target,
            &name,
            &topic,
            &aggregate_keys(&[("window.type", "tumbling"), ("window.size", "5m")]),
        )
    };
    let client = fixture.db.client();
    let mut stage = InProcessWindow::start(config());
    client
        .batch_execute(&workload(44, 6, true).join(";\n"))
        .await
        .expect("workload");
    let expected = fixed_windows_query(300, 300);
    wait_until_equal(&mut stage, client, &expected, target.client(), RESULT_QUERY).await;
    stage.stop().await;
    // The stage's state and offsets are gone (as if dropped by hand) while its result rows
    // stay, some of them wrong: started again, it recomputes every window from the topic,
    // and its first writes of those windows meet the rows already there.
    let removed = target
        .client()
        .execute(
            "UPDATE analytics.results SET orders = orders + 1000 WHERE customer % 2 = 0",
            &[],
        )
        .await
        .expect("stale results");
    assert!(removed > 0);
    for table in [
        "tributary_offsets",
        "tributary_window_state",
        "tributary_window_partitions",
        "tributary_window_watermarks",
    ] {
        target
            .client()
            .execute(
                &format!("DELETE FROM public.{table} WHERE connector = $1"),
                &[&name],
            )
            .await
            .expect("forgetting the state");
    }
    let mut stage = InProcessWindow::start(config());
    wait_until_equal(&mut stage, client, &expected, target.client(), RESULT_QUERY).await;
    stage.stop().await;
    source.stop().await.expect("source stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_windows_equal_group_by() {
    let (fixture, topic, source) = orders_fixture().await;
    let target = TestDatabase::create().await;
    let config = window_config(
        &target,
        &unique_name("window"),
        &topic,
        &aggregate_keys(&[
            ("window.type", "hopping"),
            ("window.size", "10m"),
            ("window.advance", "5m"),
        ]),
    );
    let client = fixture.db.client();
    let mut stage = InProcessWindow::start(config);
    for transaction in workload(99, 15, true) {
        client.batch_execute(&transaction).await.expect("workload");
    }
    wait_until_equal(
        &mut stage,
        client,
        &fixed_windows_query(600, 300),
        target.client(),
        RESULT_QUERY,
    )
    .await;
    stage.stop().await;
    source.stop().await.expect("source stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_equal_gaps_and_islands() {
    let (fixture, topic, source) = orders_fixture().await;
    let target = TestDatabase::create().await;
    let config = window_config(
        &target,
        &unique_name("window"),
        &topic,
        &aggregate_keys(&[("window.type", "session"), ("window.gap", "3m")]),
    );
    let client = fixture.db.client();
    let mut stage = InProcessWindow::start(config);
    // Sessions do not split on retraction (v1), so the workload inserts out of order and
    // updates amounts only; a fresh sessionization is then the reference.
    for transaction in workload(5, 15, false) {
        client.batch_execute(&transaction).await.expect("workload");
    }
    client
        .batch_execute("UPDATE orders SET amount = amount + 1 WHERE id % 7 = 0")
        .await
        .expect("updates");
    let sessions = "WITH t AS (SELECT *, extract(epoch FROM created_at) AS e FROM orders),
             m AS (SELECT *, CASE WHEN e - lag(e) OVER (PARTITION BY customer ORDER BY e) <= 180
                                  THEN 0 ELSE 1 END AS starts FROM t),
             s AS (SELECT *, sum(starts) OVER (PARTITION BY customer ORDER BY e, id) AS session FROM m)
        SELECT customer, to_timestamp(min(e)), to_timestamp(max(e) + 180),
               sum(amount)::numeric(14,2), count(*), round(avg(amount), 6), max(amount), min(amount),
               count(DISTINCT amount), count(amount)
          FROM s GROUP BY customer, session ORDER BY 1, 2, 3";
    wait_until_equal(&mut stage, client, sessions, target.client(), RESULT_QUERY).await;
    stage.stop().await;
    source.stop().await.expect("source stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_change_topics_aggregate_as_json_ones_do() {
    let registry = crate::source_avro::Registry::start().await;
    let mut fixture = SourceFixture::new().await;
    let topic = orders_table_and_topic(&mut fixture).await;
    let avro = registry.converters();
    let mut source = InProcessSource::start(
        fixture.config("public.orders", &avro),
        fixture.destination(),
    );
    source.wait_until_streaming(&fixture).await;
    let target = TestDatabase::create().await;
    let mut keys = aggregate_keys(&[("window.type", "tumbling"), ("window.size", "5m")]);
    keys.extend(avro);
    let config = window_config(&target, &unique_name("window"), &topic, &keys);
    let client = fixture.db.client();
    let mut stage = InProcessWindow::start(config);
    for transaction in workload(11, 15, true) {
        client.batch_execute(&transaction).await.expect("workload");
    }
    wait_until_equal(
        &mut stage,
        client,
        &fixed_windows_query(300, 300),
        target.client(),
        RESULT_QUERY,
    )
    .await;
    stage.stop().await;
    source.stop().await.expect("source stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_stops_the_stage_at_its_position_every_time() {
    let input = TestTopic::create(1).await;
    let target = TestDatabase::create().await;
    let config = || {
        window_config(
            &target,
            "unreadable",
            &input.name,
            &[
                ("value.converter.schemas.enable", "false"),
                ("key.converter.schemas.enable", "false"),
                ("event.time.field", "ts"),
                ("group.by", "g"),
                ("aggregates", "n=count(*)"),
                ("window.type", "tumbling"),
                ("window.size", "10s"),
            ],
        )
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka::bootstrap_servers())
        .create()
        .expect("producer");
    send(&producer, &input.name, 0, 1, 1, 1_000).await;
    producer
        .send(
            FutureRecord::to(&input.name)
                .partition(0)
                .key(r#"{"id": 2}"#)
                .payload("{not json"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("cannot send a test record: {err}"));
    send(&producer, &input.name, 0, 3, 1, 2_000).await;
    let expected = format!("record {}/0@1: the value is not JSON", input.name);
    for attempt in 0..2 {
        let stage = InProcessWindow::start(config());
        let ended = tokio::time::timeout(Duration::from_secs(30), stage.task)
            .await
            .expect("the stage stops on the unreadable record")
            .expect("the window task does not panic");
        let error = ended
            .expect_err("an unreadable record is an error")
            .to_string();
        assert!(
            error.starts_with(&expected),
            "attempt {attempt}: {error:?} does not start with {expected:?}"
        );
        // Nothing of the batch holding it was committed: a restart meets it again.
        assert_eq!(rows(target.client()).await, "", "attempt {attempt}");
    }
}

/// A hand-written Debezium insert (schemaless JSON), event time `ts` in epoch milliseconds.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    id: i64,
    group: i64,
    ts: i64,
) {
    let key = serde_json::json!({"id": id}).to_string();
    let value = serde_json::json!({
        "op": "c", "before": null,
        "after": {"id": id, "g": group, "amount": 10, "ts": ts},
        "source": {"ts_ms": 0}
    })
    .to_string();
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("cannot send a test record: {err}"));
}

async fn rows(client: &Client) -> String {
    match client
        .query_opt("SELECT 1 FROM pg_class WHERE relname = 'results'", &[])
        .await
    {
        Ok(Some(_)) => client
            .query_one(
                "SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY s, g), '') FROM
                   (SELECT g, extract(epoch FROM window_start)::int AS s,
                           extract(epoch FROM window_end)::int AS e, n, _final
                      FROM analytics.results) r",
                &[],
            )
            .await
            .expect("results")
            .get(0),
        _ => String::new(),
    }
}

async fn wait_for_rows(stage: &mut InProcessWindow, client: &Client, expected: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        stage.check_running().await;
        let got = rows(client).await;
        if got == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "results did not become {expected:?}; got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_window_close_writes_each_window_once_late_events_go_to_their_topic() {
    let input = TestTopic::create(2).await;
    let late = TestTopic::create(1).await;
    let mut late_records = Collector::new(&late, Isolation::ReadCommitted);
    let target = TestDatabase::create().await;
    let config = window_config(
        &target,
        &unique_name("window"),
        &input.name,
        &[
            ("value.converter.schemas.enable", "false"),
            ("key.converter.schemas.enable", "false"),
            ("event.time.field", "ts"),
            ("group.by", "g"),
            ("aggregates", "n=count(*)"),
            ("window.type", "tumbling"),
            ("window.size", "10s"),
            ("emit.mode", "on_window_close"),
            // Partition 1 never gets a record: it must not hold the watermark for long.
            ("idle.timeout", "1s"),
            ("late.events.topic", &late.name),
        ],
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka::bootstrap_servers())
        .create()
        .expect("producer");
    let mut stage = InProcessWindow::start(config);
    send(&producer, &input.name, 0, 1, 1, 1_000).await;
    send(&producer, &input.name, 0, 2, 1, 5_000).await;
    send(&producer, &input.name, 0, 3, 2, 9_999).await;
    // W = 9.999 s < 10 s: nothing is final, nothing is written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rows(target.client()).await,
        "",
        "written before the watermark passed the end"
    );
    send(&producer, &input.name, 0, 4, 1, 12_000).await;
    wait_for_rows(&mut stage, target.client(), "(1,0,10,2,t)\n(2,0,10,1,t)").await;
    let written: String = target
        .client()
        .query_one("SELECT max(_updated_at)::text FROM analytics.results", &[])
        .await
        .expect("updated at")
        .get(0);
    // A change for the closed window: too late, to the late topic with the reason.
    send(&producer, &input.name, 0, 5, 1, 3_000).await;
    let got = late_records.collect(1, Duration::from_secs(30)).await;
    let headers: Vec<(String, String)> = got[0]
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert!(
        headers.contains(&("tributary.late.reason".into(), "window_closed".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("tributary.late.windows".into(), "[0,10000000)".into())),
        "{headers:?}"
    );
    assert_eq!(
        got[0].key_json(),
        serde_json::json!({"id": 5}),
        "the original record"
    );
    // Later windows close in turn; the closed one is never written again.
    send(&producer, &input.name, 0, 6, 1, 25_000).await;
    wait_for_rows(
        &mut stage,
        target.client(),
        "(1,0,10,2,t)\n(2,0,10,1,t)\n(1,10,20,1,t)",
    )
    .await;
    let still: String = target
        .client()
        .query_one(
            "SELECT max(_updated_at)::text FROM analytics.results WHERE window_start = 'epoch'",
            &[],
        )
        .await
        .expect("updated at")
        .get(0);
    assert_eq!(still, written, "window [0,10) was written again");
    stage.stop().await;
}

/// What `query` gives, as text (empty when it fails, e.g. before the table exists).
async fn query_text(client: &Client, query: &str) -> String {
    let text = format!("SELECT coalesce(string_agg(r::text, E'\\n'), '') FROM ({query}) r");
    match client.query_one(&text, &[]).await {
        Ok(row) => row.get(0),
        Err(error) => format!("(query failed: {})", with_causes(&error)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_registered_over_rest_survives_kill_9_and_a_reset_recomputes_every_window() {
    use crate::support::serve::{ServeProcess, free_port, metric_value};

    let mut fixture = SourceFixture::new().await;
    let topic = orders_table_and_topic(&mut fixture).await;
    let _state_topics = [
        TestTopic::delete_on_drop(format!("{}-configs", fixture.offsets_topic), 1),
        TestTopic::delete_on_drop(format!("{}-status", fixture.offsets_topic), 1),
    ];
    let target = TestDatabase::create().await;
    let dir = std::env::temp_dir().join(unique_name("tributary-window-serve"));
    let rest_port = free_port();
    let worker_config = ServeProcess::config(&fixture, rest_port);
    let mut serve = ServeProcess::start(&dir, &worker_config, rest_port).await;
    let http = reqwest::Client::new();
    let call =
        |method: reqwest::Method, base: String, path: String, body: Option<serde_json::Value>| {
            let mut request = http.request(method, format!("{base}{path}"));
            if let Some(body) = body {
                request = request.json(&body);
            }
            async move {
                let response = request.send().await.expect("HTTP");
                (
                    response.status().as_u16(),
                    response.text().await.unwrap_or_default(),
                )
            }
        };
    let source: serde_json::Value =
        serde_json::from_str(&fixture.connector_json("public.orders", &[])).expect("JSON");
    let (status, body) = call(
        reqwest::Method::POST,
        serve.base.clone(),
        "/connectors".into(),
        Some(source),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let name = unique_name("window");
    let late_topic = TestTopic::delete_on_drop(unique_name("late"), 1);
    let mut config = serde_json::json!({
        "connector.class": "window-aggregate",
        "topics": topic,
        "connection.url": format!("jdbc:postgresql://127.0.0.1:{}/{}", port(), target.name),
        "connection.username": "postgres",
        "table.name": "analytics.results",
        "commit.interval.ms": "200",
        "window.type": "tumbling",
        "window.size": "5m",
        // Not created beforehand: the stage creates it.
        "late.events.topic": late_topic.name,
    });
    for (key, value) in aggregate_keys(&[]) {
        config[key] = serde_json::Value::String(value.to_owned());
    }
    let (status, body) = call(
        reqwest::Method::POST,
        serve.base.clone(),
        "/connectors".into(),
        Some(serde_json::json!({"name": name, "config": config.clone()})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    fixture.wait_until_streaming().await;

    let client = fixture.db.client();
    let mut rng = Lcg(11);
    for (round, transaction) in workload(99, 36, true).into_iter().enumerate() {
        client.batch_execute(&transaction).await.expect("workload");
        if round % 12 == 11 {
            tokio::time::sleep(Duration::from_millis(150 + rng.next(500))).await;
            serve.child.kill().await.expect("kill -9");
            serve = ServeProcess::start(&dir, &worker_config, rest_port).await;
        }
    }
    let expected = query_text(client, &fixed_windows_query(300, 300)).await;
    assert!(!expected.is_empty());
    let wait_equal = |serve: &ServeProcess| {
        let expected = expected.clone();
        let target = target.client();
        let log_path = serve.log_path();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                let got = query_text(target, RESULT_QUERY).await;
                if got == expected {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the result table did not become equal\nexpected:\n{expected}\n\ngot:\n{got}\n\nlog:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    wait_equal(&serve).await;

    let base = serve.base.clone();
    // The same config PUT again leaves the running stage alone.
    let starts = || serve.log().matches("window stage started").count();
    let started_before = starts();
    let (status, body) = call(
        reqwest::Method::PUT,
        base.clone(),
        format!("/connectors/{name}/config"),
        Some(config.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        starts(),
        started_before,
        "an unchanged config restarted the stage"
    );
    assert_eq!(
        kafka::end_offset(&late_topic.name),
        0,
        "the late topic exists, and nothing was late"
    );
    let offsets_path = format!("/connectors/{name}/offsets");
    let (status, body) = call(
        reqwest::Method::GET,
        base.clone(),
        offsets_path.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(r#""kafka_topic":"{topic}""#)),
        "{body}"
    );
    // Offsets and window state move together: altering is refused, a reset empties both.
    let (status, _) = call(
        reqwest::Method::PUT,
        base.clone(),
        format!("/connectors/{name}/stop"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        reqwest::Method::PATCH,
        base.clone(),
        offsets_path.clone(),
        Some(serde_json::json!({"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0}, "offset": {"kafka_offset": 0}}]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot be altered"), "{body}");
    let (status, body) = call(
        reqwest::Method::DELETE,
        base.clone(),
        offsets_path.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        query_text(target.client(), RESULT_QUERY).await,
        "",
        "the reset empties the results"
    );
    let (status, _) = call(
        reqwest::Method::PUT,
        base.clone(),
        format!("/connectors/{name}/resume"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_equal(&serve).await;
    // What the stage committed is in the worker's metrics. (Checked after the reset: before
    // it, the last restarted process may have found everything committed already.)
    let (_, metrics) = call(reqwest::Method::GET, base.clone(), "/metrics".into(), None).await;
    let series = |family: &str| -> f64 {
        metric_value(&metrics, family, &name)
            .unwrap_or_else(|| panic!("no {family} for {name} in:\n{metrics}"))
    };
    assert!(series("tributary_consumed_records_total") > 0.0);
    // 2024-03-01, the workload's day, in milliseconds.
    assert!(series("tributary_window_watermark_milliseconds") >= 1_709_251_200_000.0);
    let _ = std::fs::remove_dir_all(&dir);
}
