//! Running the PostgreSQL source against a test database: connector configs, the topics it
//! writes (created up front so collectors can attach, deleted afterwards), and the source
//! itself, in process or as the `tributary` binary.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tributary::{
    config::{ConnectorConfig, PostgresSourceConfig},
    kafka::{TopicAdmin, TopicSpec},
    source::postgres::{self, snapshot::SnapshotProgress, stream::Destination},
};

use super::{
    kafka::{self, TestTopic},
    postgres::{TestDatabase, port},
    unique_name,
};

/// A database to capture and the names of everything the source creates for it.
pub struct SourceFixture {
    pub db: TestDatabase,
    pub name: String,
    pub prefix: String,
    pub slot: String,
    pub offsets_topic: String,
    topics: Vec<TestTopic>,
}

/// With TRIBUTARY_TEST_LOG=<file>, in-process sources log there (debug level).
fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(path) = std::env::var("TRIBUTARY_TEST_LOG") {
            let file = std::fs::File::create(path).expect("the test log file");
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info,tributary=trace"))
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .try_init();
        }
    });
}

impl SourceFixture {
    pub async fn new() -> Self {
        init_test_log();
        let db = TestDatabase::create().await;
        let name = unique_name("src");
        let offsets_topic = unique_name("tributary-test-offsets");
        Self {
            db,
            prefix: name.replace('_', "-"),
            slot: format!("{name}_slot"),
            offsets_topic: offsets_topic.clone(),
            topics: vec![TestTopic::delete_on_drop(offsets_topic, 1)],
            name,
        }
    }

    /// The connector config, Debezium style, capturing `tables` (a table.include.list).
    pub fn connector_json(&self, tables: &str, extra: &[(&str, &str)]) -> String {
        let mut config = serde_json::json!({
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.hostname": "127.0.0.1",
            "database.port": port().to_string(),
            "database.user": "postgres",
            "database.dbname": self.db.name,
            "database.sslmode": "disable",
            "topic.prefix": self.prefix,
            "plugin.name": "pgoutput",
            "slot.name": self.slot,
            "publication.name": format!("{}_pub", self.name),
            "publication.autocreate.mode": "filtered",
            "table.include.list": tables,
            "snapshot.mode": "no_data",
            "transaction.boundary.interval.ms": "50",
        });
        for (key, value) in extra {
            config[*key] = serde_json::Value::String((*value).to_owned());
        }
        serde_json::json!({"name": self.name, "config": config}).to_string()
    }

    pub fn config(&self, tables: &str, extra: &[(&str, &str)]) -> PostgresSourceConfig {
        let connector = ConnectorConfig::from_json(&self.connector_json(tables, extra))
            .expect("the test connector JSON is valid");
        PostgresSourceConfig::from_connector(&connector)
            .unwrap_or_else(|err| panic!("the test connector config is invalid: {err}"))
    }

    /// The superuser configuration of the captured database.
    pub fn db_config(&self) -> tokio_postgres::Config {
        super::postgres::superuser_config(&self.db.name)
    }

    pub fn destination(&self) -> Destination {
        Destination {
            kafka: kafka::settings(),
            offsets_topic: self.offsets_topic.clone(),
            metrics: tributary::metrics::Metrics::new(),
        }
    }

    /// Creates `name` (a topic the source will write) now, so a collector can attach before
    /// the first event; deleted when the fixture is dropped.
    pub async fn topic(&mut self, name: &str) -> &TestTopic {
        let settings = kafka::settings();
        TopicAdmin::new(&settings, Duration::from_secs(30))
            .expect("admin client")
            .ensure_topic(&TopicSpec::new(name, 1))
            .await
            .unwrap_or_else(|err| panic!("cannot create topic {name}: {err}"));
        self.topics.push(TestTopic::delete_on_drop(name, 1));
        self.topics.last().expect("just pushed")
    }

    pub fn table_topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }

    /// Waits until a walsender streams from the slot: changes committed after this are captured.
    ///
    /// "Active" is not enough: the slot is active while CREATE_REPLICATION_SLOT still builds its
    /// snapshot, and a change committed before the slot's consistent point is (rightly) not
    /// streamed. A walsender in `catchup` or `streaming` state has passed START_REPLICATION.
    pub async fn wait_until_streaming(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let row = self
                .db
                .client()
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots s
                       JOIN pg_stat_replication r ON r.pid = s.active_pid
                      WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')",
                    &[&self.slot],
                )
                .await
                .expect("pg_replication_slots");
            if row.is_some() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the source did not start streaming from slot {} within 120 s",
                self.slot
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn confirmed_flush_lsn(&self) -> tributary::event::Lsn {
        self.db
            .client()
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .expect("slot row")
            .get::<_, Option<String>>(0)
            .map(|lsn| lsn.parse().expect("an LSN"))
            // NULL until the slot's first confirmation.
            .unwrap_or(tributary::event::Lsn::ZERO)
    }
}

/// The source running in this process.
pub struct InProcessSource {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), postgres::Error>>,
}

impl InProcessSource {
    pub fn start(config: PostgresSourceConfig, destination: Destination) -> Self {
        Self::start_with_progress(config, destination, Arc::default())
    }

    /// Starts the source reporting its snapshot progress into `progress`.
    pub fn start_with_progress(
        config: PostgresSourceConfig,
        destination: Destination,
        progress: Arc<SnapshotProgress>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            postgres::stream::run_with_progress(&config, &destination, token, progress).await
        });
        Self { shutdown, task }
    }

    /// Waits until the source streams; fails with the source's own error if it stopped.
    pub async fn wait_until_streaming(&mut self, fixture: &SourceFixture) {
        tokio::select! {
            _ = fixture.wait_until_streaming() => {}
            ended = &mut self.task => {
                panic!("the source stopped before streaming: {:?}", ended.expect("no panic"));
            }
        }
    }

    /// Stops the source and returns how it ended.
    pub async fn stop(self) -> Result<(), postgres::Error> {
        self.shutdown.cancel();
        self.task.await.expect("the source task does not panic")
    }

    /// Waits for the source to end on its own (an error).
    pub async fn ended(self, within: Duration) -> Result<(), postgres::Error> {
        tokio::time::timeout(within, self.task)
            .await
            .expect("the source should have stopped")
            .expect("the source task does not panic")
    }
}

/// The `tributary standalone` binary running one connector.
pub struct ProcessSource {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl ProcessSource {
    pub fn start(fixture: &SourceFixture, connector_json: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name("tributary-test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let worker = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[worker]\noffsets_topic = \"{}\"\n",
            kafka::bootstrap_servers(),
            fixture.offsets_topic
        );
        std::fs::write(dir.join("tributary.toml"), worker).expect("worker config");
        std::fs::write(dir.join("connector.json"), connector_json).expect("connector config");
        let log = std::fs::File::create(dir.join("tributary.log")).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("standalone")
            .arg("--config")
            .arg(dir.join("tributary.toml"))
            .arg(dir.join("connector.json"))
            .env("TRIBUTARY_LOG", "info,tributary=debug")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("the tributary binary starts");
        Self { child, dir }
    }

    /// Waits until the process streams; on failure shows its log.
    pub async fn wait_until_streaming(&mut self, fixture: &SourceFixture) {
        let waited = tokio::time::timeout(Duration::from_secs(90), async {
            tokio::select! {
                _ = fixture.wait_until_streaming() => None,
                status = self.child.wait() => Some(status),
            }
        })
        .await;
        match waited {
            Ok(None) => {}
            Ok(Some(status)) => panic!(
                "tributary exited ({status:?}) before streaming; its log:\n{}",
                self.log()
            ),
            Err(_) => panic!(
                "tributary did not start streaming within 90 s; its log:\n{}",
                self.log()
            ),
        }
    }

    /// SIGKILL: no chance to flush, commit or say goodbye.
    pub async fn kill_9(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tributary.log")).unwrap_or_default()
    }
}

impl Drop for ProcessSource {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The workload of the crash and restart tests: transaction `t` inserts rows
/// `t*rows+1 ..= t*rows+rows` and then updates the first of them.
pub fn insert_then_update_sql(t: i32, rows: i32) -> String {
    let first = t * rows + 1;
    let last = first + rows - 1;
    format!(
        "BEGIN;
         INSERT INTO events SELECT g, 0 FROM generate_series({first}, {last}) g;
         UPDATE events SET v = 1 WHERE id = {first};
         COMMIT;"
    )
}

/// The events that workload must produce, in commit order: `(op, id)`.
pub fn insert_then_update_events(transactions: i32, rows: i32) -> Vec<(String, i64)> {
    (0..transactions)
        .flat_map(|t| {
            let first = i64::from(t * rows + 1);
            (first..first + i64::from(rows))
                .map(|id| ("c".to_owned(), id))
                .chain([("u".to_owned(), first)])
        })
        .collect()
}

/// Fails unless the records are exactly `expected`, naming the first difference.
pub fn assert_exactly(
    records: &[super::kafka::Record],
    expected: &[(String, i64)],
    process: &ProcessSource,
) {
    let got: Vec<(String, i64)> = records
        .iter()
        .map(|record| {
            let payload = record.payload();
            (
                payload["op"].as_str().unwrap_or("?").to_owned(),
                payload["after"]["id"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    if got != expected {
        let at = got
            .iter()
            .zip(expected)
            .position(|(g, e)| g != e)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "records differ from the committed changes at position {at}: got {:?}, expected {:?}\nsource log:\n{}",
            got.get(at..at + 5),
            expected.get(at..at + 5),
            process.log()
        );
    }
}
