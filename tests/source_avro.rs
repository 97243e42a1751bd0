//! The Avro converter end to end: a source writing Avro through the built-in schema registry,
//! read back by Confluent's own Python client and deserializer, against the same table written
//! with the JSON converter; schema evolution mid-stream; an incompatible change stops the
//! source with nothing of its transaction in Kafka.

use std::time::Duration;

use serde_json::{Value, json};
use tributary::{config::PostgresSourceConfig, registry::SchemaRegistry, source::postgres::Error};

use crate::{
    source_all_types::{EDGE_ROW, FULL_ROW, SCHEMA},
    support::{
        kafka::{Collector, Isolation, TestTopic, bootstrap_servers, settings},
        source::{InProcessSource, SourceFixture},
        unique_name,
    },
};

const WAIT: Duration = Duration::from_secs(60);

/// The built-in registry on a topic of its own, serving on an ephemeral port.
pub(crate) struct Registry {
    pub(crate) url: String,
    server: tokio::task::JoinHandle<()>,
    _topic: TestTopic,
}

impl Registry {
    pub(crate) async fn start() -> Self {
        let topic = unique_name("tributary-test-schemas");
        let guard = TestTopic::delete_on_drop(&topic, 1);
        let registry = SchemaRegistry::open(&settings(), &topic, Duration::from_secs(30))
            .await
            .expect("the registry opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = tributary::api::registry::router(registry);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            server,
            _topic: guard,
        }
    }

    /// The connector keys that make keys and values Avro through this registry.
    pub(crate) fn converters(&self) -> [(&'static str, &str); 4] {
        [
            ("key.converter", "io.confluent.connect.avro.AvroConverter"),
            ("key.converter.schema.registry.url", &self.url),
            ("value.converter", "io.confluent.connect.avro.AvroConverter"),
            ("value.converter.schema.registry.url", &self.url),
        ]
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The fixture's connector with the Avro converter for keys and values, under its own name,
/// topic prefix and slot so that it runs beside the fixture's JSON connector.
fn avro_config(fixture: &SourceFixture, registry: &Registry, tables: &str) -> PostgresSourceConfig {
    let prefix = format!("{}-avro", fixture.prefix);
    let slot = format!("{}_avro", fixture.slot);
    let mut keys = vec![
        ("topic.prefix", prefix.as_str()),
        ("slot.name", slot.as_str()),
    ];
    keys.extend(registry.converters());
    let mut config = fixture.config(tables, &keys);
    config.name = format!("{}_avro", fixture.name);
    config
}

/// Waits until a walsender streams the Avro connector's slot (changes after this are captured).
async fn wait_until_avro_streams(fixture: &SourceFixture) {
    let slot = format!("{}_avro", fixture.slot);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let streaming = fixture
            .db
            .client()
            .query(
                "SELECT 1 FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
                  WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')",
                &[&slot],
            )
            .await
            .expect("walsenders");
        if !streaming.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Avro source never streamed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_python(args: &[&str]) -> Value {
    let python = crate::support::python::with_confluent_kafka().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/avro_matches_json.py"
    );
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("the Python reader runs");
    assert!(
        output.status.success(),
        "Confluent's client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "no report ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_avro_deserializer_reads_every_type_as_the_json_converter_writes_it() {
    let registry = Registry::start().await;
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let json_topic = fixture.table_topic("all_types");
    let avro_topic = format!("{}-avro.public.all_types", fixture.prefix);
    let mut json_records =
        Collector::new(fixture.topic(&json_topic).await, Isolation::ReadCommitted);
    let mut avro_records =
        Collector::new(fixture.topic(&avro_topic).await, Isolation::ReadCommitted);

    // The full row exists before the connectors start: both snapshot it (op=r), so the
    // snapshot's encoding is compared too.
    fixture
        .db
        .client()
        .batch_execute(FULL_ROW)
        .await
        .expect("full row");
    let json_config = fixture.config(
        "public.all_types",
        &[
            ("key.converter.schemas.enable", "false"),
            ("value.converter.schemas.enable", "false"),
            ("snapshot.mode", "initial"),
        ],
    );
    let mut json_source = InProcessSource::start(json_config, fixture.destination());
    json_source.wait_until_streaming(&fixture).await;
    let mut avro = avro_config(&fixture, &registry, "public.all_types");
    avro.snapshot_mode = tributary::config::SnapshotMode::Initial;
    let avro_source = InProcessSource::start(avro, fixture.destination());
    // Both slots stream before the rows are written.
    wait_until_avro_streams(&fixture).await;
    let client = fixture.db.client();
    client.batch_execute(EDGE_ROW).await.expect("edge row");
    client
        .batch_execute("DELETE FROM all_types")
        .await
        .expect("delete");
    // A snapshot read, an insert and two deletes, each delete followed by a tombstone.
    json_records.collect(6, WAIT).await;
    let avro = avro_records.collect(6, WAIT).await;
    for record in avro.iter().filter(|r| r.value.is_some()) {
        let value = record.value.as_deref().expect("a value");
        assert_eq!(value[0], 0, "Confluent's magic byte");
    }

    let report = run_python(&[
        &bootstrap_servers(),
        &registry.url,
        &json_topic,
        &avro_topic,
        "4",
    ])
    .await;
    assert_eq!(report["compared"], 4, "{report}");
    assert_eq!(report["mismatches"], json!([]), "{report}");
    assert_eq!(report["ops"], json!(["r", "c", "d", "d"]), "{report}");
    // The full row's numeric column decoded as a decimal with its scale.
    assert!(
        report["after"][0].to_string().contains("decimal"),
        "{report}"
    );
    json_source.stop().await.expect("clean stop");
    avro_source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_and_dropped_columns_get_new_schema_ids_and_an_incompatible_change_stops_the_source()
{
    let registry = Registry::start().await;
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO t SELECT g, g * 10 FROM generate_series(101, 105) g;",
        )
        .await
        .expect("schema");
    let json_topic = fixture.table_topic("t");
    let avro_topic = format!("{}-avro.public.t", fixture.prefix);
    fixture.topic(&json_topic).await;
    let mut avro_records =
        Collector::new(fixture.topic(&avro_topic).await, Isolation::ReadCommitted);
    let client = fixture.db.client();
    // Five rows to snapshot first: the rows between a chunk's first and last are encoded by
    // the copying thread, the others by the producer; both must register and encode alike.
    let json_config = fixture.config(
        "public.t",
        &[
            ("key.converter.schemas.enable", "false"),
            ("value.converter.schemas.enable", "false"),
            ("snapshot.mode", "initial"),
        ],
    );
    let mut json_source = InProcessSource::start(json_config, fixture.destination());
    json_source.wait_until_streaming(&fixture).await;
    let mut avro = avro_config(&fixture, &registry, "public.t");
    avro.snapshot_mode = tributary::config::SnapshotMode::Initial;
    let avro_source = InProcessSource::start(avro, fixture.destination());
    wait_until_avro_streams(&fixture).await;

    client
        .batch_execute(
            "INSERT INTO t VALUES (1, 10);
             ALTER TABLE t ADD COLUMN note text;
             INSERT INTO t VALUES (2, 20, 'added');
             ALTER TABLE t DROP COLUMN note;
             INSERT INTO t VALUES (3, 30);",
        )
        .await
        .expect("evolution");
    avro_records.collect(8, WAIT).await;
    let report = run_python(&[
        &bootstrap_servers(),
        &registry.url,
        &json_topic,
        &avro_topic,
        "8",
    ])
    .await;
    assert_eq!(report["mismatches"], json!([]), "{report}");
    assert_eq!(
        report["ops"],
        json!(["r", "r", "r", "r", "r", "c", "c", "c"]),
        "{report}"
    );
    let ids: Vec<u64> = report["value_schema_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_u64().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 8);
    assert!(
        ids[..6].iter().all(|id| *id == ids[0]),
        "one shape: {ids:?}"
    );
    assert_ne!(
        ids[5], ids[6],
        "the added column gives a new schema: {ids:?}"
    );
    // Dropping it again is the first shape: the registry answers with its id.
    assert_eq!(ids[7], ids[0], "{ids:?}");
    assert_eq!(report["after"][6]["note"], "added", "{report}");

    // Retyping a column is not backward compatible: the source stops, naming the column, and
    // nothing of that transaction reaches the topic.
    client
        .batch_execute(
            "BEGIN; INSERT INTO t VALUES (4, 40);
             ALTER TABLE t ALTER COLUMN n TYPE text;
             INSERT INTO t VALUES (5, 'fifty'); COMMIT;",
        )
        .await
        .expect("incompatible change");
    let ended = avro_source.ended(WAIT).await;
    let message = match ended {
        Err(error @ Error::SchemaRegistry { .. }) => error.to_string(),
        other => panic!("expected the registry's refusal, got {other:?}"),
    };
    assert!(message.contains("public.t"), "{message}");
    assert!(
        message.contains("column n changed from int4 NOT NULL to text NOT NULL"),
        "{message}"
    );
    assert!(message.contains("BACKWARD"), "{message}");
    avro_records.expect_no_more(Duration::from_secs(2)).await;
    json_source.stop().await.expect("clean stop");
}

/// The Avro datum of a Confluent-framed record, decoded with the schema its id names in the
/// registry.
async fn decode_with_registry(registry: &Registry, record: &[u8]) -> apache_avro::types::Value {
    assert_eq!(record[0], 0, "Confluent's magic byte");
    let id = u32::from_be_bytes(record[1..5].try_into().expect("4 bytes"));
    let body: Value = reqwest::get(format!("{}/schemas/ids/{id}", registry.url))
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("JSON");
    let schema = apache_avro::Schema::parse_str(body["schema"].as_str().expect("a schema"))
        .expect("the registered schema parses");
    apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .expect("a reader")
        .read_value(&mut &record[5..])
        .expect("the datum decodes")
}

fn field<'a>(record: &'a apache_avro::types::Value, name: &str) -> &'a apache_avro::types::Value {
    match record {
        apache_avro::types::Value::Record(fields) => fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no field {name} in {record:?}")),
        other => panic!("not a record: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_metadata_and_heartbeats_are_avro_too() {
    use apache_avro::types::Value as Avro;
    let registry = Registry::start().await;
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let prefix = format!("{}-avro", fixture.prefix);
    let mut transactions = Collector::new(
        fixture.topic(&format!("{prefix}.transaction")).await,
        Isolation::ReadCommitted,
    );
    let mut heartbeats = Collector::new(
        fixture
            .topic(&format!("__debezium-heartbeat.{prefix}"))
            .await,
        Isolation::ReadCommitted,
    );
    let mut config = avro_config(&fixture, &registry, "public.t");
    config.provide_transaction_metadata = true;
    config.heartbeat_interval = Some(Duration::from_millis(300));
    let source = InProcessSource::start(config, fixture.destination());
    wait_until_avro_streams(&fixture).await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO t VALUES (1), (2)")
        .await
        .expect("insert");

    // Heartbeats are transactions of their own (with no events): find the insert's END.
    let mut decoded = Vec::new();
    let end = loop {
        let record = transactions.collect(1, WAIT).await.remove(0);
        let value = decode_with_registry(&registry, record.value.as_deref().expect("value")).await;
        let key = decode_with_registry(&registry, record.key.as_deref().expect("key")).await;
        assert_eq!(field(&key, "id"), field(&value, "id"));
        decoded.push(value.clone());
        if field(&value, "event_count") == &Avro::Union(1, Box::new(Avro::Long(2))) {
            break value;
        }
        assert!(decoded.len() < 50, "no END of the insert among {decoded:?}");
    };
    assert_eq!(field(&end, "status"), &Avro::String("END".into()));
    let begin = decoded
        .iter()
        .find(|m| {
            field(m, "id") == field(&end, "id")
                && field(m, "status") == &Avro::String("BEGIN".into())
        })
        .expect("the insert's BEGIN");
    assert_eq!(
        field(begin, "event_count"),
        &Avro::Union(0, Box::new(Avro::Null))
    );
    let Avro::Union(1, collections) = field(&end, "data_collections") else {
        panic!("data_collections: {end:?}");
    };
    let Avro::Array(collections) = collections.as_ref() else {
        panic!("data_collections: {end:?}");
    };
    assert_eq!(collections.len(), 1);
    assert_eq!(
        field(&collections[0], "data_collection"),
        &Avro::String("public.t".into())
    );
    assert_eq!(field(&collections[0], "event_count"), &Avro::Long(2));

    let beat = &heartbeats.collect(1, WAIT).await[0];
    let value = decode_with_registry(&registry, beat.value.as_deref().expect("value")).await;
    assert!(matches!(field(&value, "ts_ms"), Avro::Long(ms) if *ms > 1_700_000_000_000));
    let key = decode_with_registry(&registry, beat.key.as_deref().expect("key")).await;
    assert_eq!(field(&key, "serverName"), &Avro::String(prefix.clone()));
    source.stop().await.expect("clean stop");
}
