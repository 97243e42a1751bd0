//! Running the PostgreSQL sink in process against a target test database, and comparing the
//! tables it writes with their source tables.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tributary::{
    config::ConnectorConfig,
    sink::postgres::{self, PostgresSinkConfig},
};

use super::{
    kafka,
    postgres::{TestDatabase, port},
    unique_name,
};

/// A sink connector config (Debezium JDBC sink keys) writing into `target`; with no `topics`,
/// `extra` names them (`topics.regex`).
pub fn config(
    target: &TestDatabase,
    name: &str,
    topics: &[&str],
    extra: &[(&str, &str)],
) -> PostgresSinkConfig {
    let mut config = serde_json::json!({
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "connection.url": format!("jdbc:postgresql://127.0.0.1:{}/{}", port(), target.name),
        "connection.username": "postgres",
    });
    if !topics.is_empty() {
        config["topics"] = serde_json::Value::String(topics.join(","));
    }
    for (key, value) in extra {
        config[*key] = serde_json::Value::String((*value).to_owned());
    }
    let json = serde_json::json!({"name": name, "config": config}).to_string();
    let connector = ConnectorConfig::from_json(&json).expect("the sink connector JSON is valid");
    PostgresSinkConfig::from_connector(&connector)
        .unwrap_or_else(|err| panic!("the sink connector config is invalid: {err}"))
}

/// A connector name no other test uses.
pub fn connector_name() -> String {
    unique_name("sink")
}

/// The sink running in this process.
pub struct InProcessSink {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), postgres::Error>>,
}

impl InProcessSink {
    pub fn start(config: PostgresSinkConfig) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let settings = kafka::settings();
        let task = tokio::spawn(async move { postgres::run(config, &settings, token).await });
        Self { shutdown, task }
    }

    /// Stops the sink; fails if it had stopped with an error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match self.task.await.expect("the sink task does not panic") {
            Ok(()) => {}
            Err(err) => panic!("the sink failed: {err}"),
        }
    }

    /// Drops the sink wherever it is (mid-transaction, say), as a crash would: nothing after its
    /// last commit is kept.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits for the sink to end on its own (with an error, normally).
    pub async fn ended(self, within: Duration) -> Result<(), postgres::Error> {
        tokio::time::timeout(within, self.task)
            .await
            .expect("the sink should have stopped")
            .expect("the sink task does not panic")
    }

    /// Fails with the sink's error if it has stopped on its own.
    pub async fn check_running(&mut self) {
        if self.task.is_finished() {
            let ended = (&mut self.task).await;
            panic!("the sink stopped: {ended:?}");
        }
    }
}

/// The full contents of a table, one text row per line, ordered by `order_by`.
pub async fn contents(client: &Client, table: &str, order_by: &str) -> String {
    client
        .query_one(
            &format!("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY {order_by}), '') FROM {table} t"),
            &[],
        )
        .await
        .unwrap_or_else(|err| panic!("cannot read {table}: {}", super::postgres::with_causes(&err)))
        .get(0)
}

/// Waits until `target_table` in `target` has the contents of `source_table` in `source`.
pub async fn wait_until_equal(
    sink: &mut InProcessSink,
    source: &Client,
    source_table: &str,
    target: &Client,
    target_table: &str,
    order_by: &str,
) {
    let expected = contents(source, source_table, order_by).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        sink.check_running().await;
        let exists: bool = target
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&target_table])
            .await
            .expect("to_regclass")
            .get(0);
        let got = if exists {
            contents(target, target_table, order_by).await
        } else {
            String::new()
        };
        if got == expected {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "target table {target_table} did not become equal to source table {source_table} within 90 s\n\
                 expected:\n{expected}\n\ngot:\n{got}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
