//! Failure tests that restart the shared PostgreSQL and Kafka: a binary of their own, because
//! cargo runs test binaries one after another, so no other test sees the services go away.

// The shared helpers serve both test binaries; not every one is used here.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use tokio_postgres::Client;

use support::{
    kafka::{Collector, Isolation},
    postgres,
    source::{
        ProcessSource, SourceFixture, assert_exactly, insert_then_update_events,
        insert_then_update_sql,
    },
};

async fn connect_with_retry(config: &tokio_postgres::Config) -> Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match postgres::try_connect(config).await {
            Ok(client) => return client,
            Err(message) => {
                assert!(tokio::time::Instant::now() < deadline, "{message}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn restart(service: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let status = tokio::process::Command::new(script)
        .args(["restart", service])
        .status()
        .await
        .expect("scripts/services.sh runs");
    assert!(
        status.success(),
        "scripts/services.sh restart {service} failed"
    );
}

/// While rows are written steadily, PostgreSQL restarts, then Kafka restarts; every committed
/// change must still arrive exactly once, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_restarts_lose_and_duplicate_nothing() {
    const TRANSACTIONS: i32 = 400;
    const ROWS: i32 = 10;
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

    let db = fixture.db_config();
    let writer = tokio::spawn(async move {
        let mut client = connect_with_retry(&db).await;
        for t in 0..TRANSACTIONS {
            let first = t * ROWS + 1;
            let sql = insert_then_update_sql(t, ROWS);
            while client.batch_execute(&sql).await.is_err() {
                // The server went away mid-transaction: did the commit make it?
                client = connect_with_retry(&db).await;
                let committed = client
                    .query_opt("SELECT 1 FROM events WHERE id = $1", &[&first])
                    .await
                    .map(|row| row.is_some())
                    .unwrap_or(false);
                if committed {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    tokio::time::sleep(Duration::from_millis(1500)).await;
    restart("postgres").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    restart("kafka").await;
    writer.await.expect("the writer finished");

    let expected = insert_then_update_events(TRANSACTIONS, ROWS);
    let seen = match collector
        .try_collect(expected.len(), Duration::from_secs(180))
        .await
    {
        Ok(seen) => seen,
        Err(message) => panic!("{message}\nsource log:\n{}", process.log()),
    };
    assert_exactly(&seen, &expected, &process);
    collector.expect_no_more(Duration::from_secs(2)).await;
}
