//! The built-in schema registry over real HTTP, kept on a real compacted Kafka topic: what one
//! registry stored, a second one opened on the same topic (a restart) serves with the same ids
//! and versions; the records on the topic have Confluent's shapes.

use std::time::Duration;

use serde_json::{Value, json};
use tributary::{kafka::TopicAdmin, registry::SchemaRegistry};

use crate::support::{
    kafka::{Collector, Isolation, TestTopic, settings},
    unique_name,
};

const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

const V1: &str = r#"{"type":"record","name":"Value","namespace":"db.public.orders","fields":[{"name":"id","type":"int"}]}"#;
const V2: &str = r#"{"type":"record","name":"Value","namespace":"db.public.orders","fields":[{"name":"id","type":"int"},{"name":"note","type":["null","string"],"default":null}]}"#;
/// A required field without a default: not backward compatible with V2.
const V3_REQUIRED: &str = r#"{"type":"record","name":"Value","namespace":"db.public.orders","fields":[{"name":"id","type":"int"},{"name":"note","type":["null","string"],"default":null},{"name":"qty","type":"long"}]}"#;
const KEY: &str = r#"{"type":"record","name":"Key","namespace":"db.public.orders","fields":[{"name":"id","type":"int"}]}"#;

/// A registry on `topic` serving its API on an ephemeral loopback port.
struct Registry {
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Registry {
    async fn open(topic: &str) -> Self {
        let registry = SchemaRegistry::open(&settings(), topic, REPLAY_TIMEOUT)
            .await
            .unwrap_or_else(|err| panic!("cannot open the registry on {topic}: {err}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app = tributary::api::registry::router(registry);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the registry serves");
        });
        Self {
            base,
            http: reqwest::Client::new(),
            server,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the registry answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": schema })),
        )
        .await
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test]
async fn registry_keeps_ids_and_versions_on_its_topic_across_a_restart() {
    let topic = unique_name("tributary-test-schemas");
    let topic_guard = TestTopic::delete_on_drop(&topic, 1);
    let first = Registry::open(&topic).await;

    // The registry created its topic, compacted.
    let admin = TopicAdmin::new(&settings(), Duration::from_secs(30)).expect("admin client");
    let policy = admin
        .topic_config(&topic, "cleanup.policy")
        .await
        .expect("topic config");
    assert_eq!(policy.as_deref(), Some("compact"));

    assert_eq!(
        first.register("orders-value", V1).await,
        (200, json!({"id": 1}))
    );
    // Identical schema again (spelled differently): same id, no new version.
    let respelled =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(V1).unwrap()).unwrap();
    assert_eq!(
        first.register("orders-value", &respelled).await,
        (200, json!({"id": 1}))
    );
    assert_eq!(
        first.register("orders-key", KEY).await,
        (200, json!({"id": 2}))
    );
    assert_eq!(
        first.register("orders-value", V2).await,
        (200, json!({"id": 3}))
    );
    // The same schema under another subject shares its id.
    assert_eq!(
        first.register("archive-value", V2).await,
        (200, json!({"id": 3}))
    );

    // Incompatible under BACKWARD: 409 with Confluent's code, nothing registered.
    let (status, body) = first.register("orders-value", V3_REQUIRED).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], json!(409));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Schema being registered is incompatible with an earlier schema for subject \"orders-value\""),
        "{body}"
    );
    assert_eq!(
        first
            .call("GET", "/subjects/orders-value/versions", None)
            .await,
        (200, json!([1, 2]))
    );

    // Lookup by schema text.
    let (status, body) = first
        .call(
            "POST",
            "/subjects/orders-value",
            Some(json!({"schema": V1})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"subject": "orders-value", "version": 1, "id": 1, "schema": V1})
        )
    );
    let (status, body) = first
        .call(
            "POST",
            "/subjects/orders-value",
            Some(json!({"schema": KEY})),
        )
        .await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40403)));

    // Per-subject level lets the required field in; the global level stays BACKWARD.
    assert_eq!(
        first
            .call(
                "PUT",
                "/config/orders-value",
                Some(json!({"compatibility": "FORWARD"}))
            )
            .await,
        (200, json!({"compatibility": "FORWARD"}))
    );
    assert_eq!(
        first.register("orders-value", V3_REQUIRED).await,
        (200, json!({"id": 4}))
    );
    assert_eq!(
        first.call("GET", "/config", None).await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );

    // Soft delete of version 1; hard delete of the archive subject after its soft delete.
    assert_eq!(
        first
            .call("DELETE", "/subjects/orders-value/versions/1", None)
            .await,
        (200, json!(1))
    );
    let (status, body) = first
        .call("DELETE", "/subjects/archive-value?permanent=true", None)
        .await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(40405)));
    assert_eq!(
        first.call("DELETE", "/subjects/archive-value", None).await,
        (200, json!([1]))
    );
    assert_eq!(
        first
            .call("DELETE", "/subjects/archive-value?permanent=true", None)
            .await,
        (200, json!([1]))
    );

    // The records on the topic have Confluent's shapes.
    let mut collector = Collector::new(&topic_guard, Isolation::ReadCommitted);
    // 5 registrations, 1 config, 1 soft delete, 1 soft delete, 1 tombstone.
    let records = collector.collect(9, Duration::from_secs(30)).await;
    let first_record = &records[0];
    assert_eq!(
        first_record.key_json(),
        json!({"keytype": "SCHEMA", "subject": "orders-value", "version": 1, "magic": 1})
    );
    assert_eq!(
        first_record.value_json(),
        json!({"subject": "orders-value", "version": 1, "id": 1, "schema": V1, "deleted": false})
    );
    assert!(records.iter().any(|r| r.key_json()
        == json!({"keytype": "CONFIG", "subject": "orders-value", "magic": 0})
        && r.value_json() == json!({"compatibilityLevel": "FORWARD"})));
    let tombstone = records.last().expect("records");
    assert_eq!(
        tombstone.key_json(),
        json!({"keytype": "SCHEMA", "subject": "archive-value", "version": 1, "magic": 1})
    );
    assert_eq!(tombstone.value, None);
    drop(first);

    // Restart: a new registry replaying the same topic serves the same ids and versions.
    let second = Registry::open(&topic).await;
    assert_eq!(
        second.call("GET", "/subjects", None).await,
        (200, json!(["orders-key", "orders-value"]))
    );
    assert_eq!(
        second
            .call("GET", "/subjects/orders-value/versions", None)
            .await,
        (200, json!([2, 3]))
    );
    assert_eq!(
        second
            .call("GET", "/subjects/orders-value/versions?deleted=true", None)
            .await,
        (200, json!([1, 2, 3]))
    );
    let (_, latest) = second
        .call("GET", "/subjects/orders-value/versions/latest", None)
        .await;
    assert_eq!(
        (latest["version"].clone(), latest["id"].clone()),
        (json!(3), json!(4))
    );
    // Soft-deleted version 1 is still readable by id; id 3 lives on in orders-value.
    assert_eq!(
        second.call("GET", "/schemas/ids/1", None).await,
        (200, json!({"schema": V1}))
    );
    assert_eq!(
        second.call("GET", "/schemas/ids/3/versions", None).await,
        (200, json!([{"subject": "orders-value", "version": 2}]))
    );
    assert_eq!(
        second.call("GET", "/config/orders-value", None).await,
        (200, json!({"compatibilityLevel": "FORWARD"}))
    );
    // Registering known schemas answers their ids; a new one gets the next id.
    assert_eq!(
        second.register("orders-key", KEY).await,
        (200, json!({"id": 2}))
    );
    assert_eq!(
        second.register("other-value", V1).await,
        (200, json!({"id": 1}))
    );
    assert_eq!(
        second.register("other-key", r#""string""#).await,
        (200, json!({"id": 5}))
    );
    // The level survives too: an incompatible change under the global BACKWARD is refused.
    let (status, _) = second.register("orders-key", r#""string""#).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_record_that_contradicts_the_registry_stops_the_open_with_its_location() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let topic = unique_name("tributary-test-schemas");
    let _cleanup = TestTopic::delete_on_drop(&topic, 1);
    let registry = Registry::open(&topic).await;
    assert_eq!(registry.register("s", V1).await, (200, json!({"id": 1})));
    drop(registry);

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", settings().bootstrap_servers)
        .create()
        .expect("producer");
    let key = r#"{"keytype":"SCHEMA","subject":"t","version":1,"magic":1}"#;
    let value = r#"{"subject":"t","version":1,"id":1,"schema":"\"string\"","deleted":false}"#;
    producer
        .send(
            FutureRecord::to(&topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .expect("written");

    let err = SchemaRegistry::open(&settings(), &topic, REPLAY_TIMEOUT)
        .await
        .expect_err("id 1 names two different schemas");
    let message = err.to_string();
    assert!(message.contains(&topic), "{message}");
    assert!(message.contains("offset 1"), "{message}");
    assert!(message.contains("id 1"), "{message}");
}

#[tokio::test]
async fn confluents_python_client_registers_fetches_and_serialises_through_the_registry() {
    let python = crate::support::python::with_confluent_kafka().await;
    let topic = unique_name("tributary-test-schemas");
    let _topic_guard = TestTopic::delete_on_drop(&topic, 1);
    let registry = Registry::open(&topic).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/schema_registry_client.py"
    );
    let output = tokio::process::Command::new(python)
        .args([script, &registry.base, "py"])
        .output()
        .await
        .expect("the client script runs");
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the client printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(seen["id_v1"], json!(1), "{seen}");
    assert_eq!(seen["id_v1_again"], json!(1), "{seen}");
    assert_eq!(seen["schema_by_id"]["name"], json!("Value"), "{seen}");
    assert_eq!(
        seen["lookup"],
        json!({"id": 1, "version": 1, "subject": "py-value"})
    );
    assert_eq!(seen["compatible_v2"], json!(true), "{seen}");
    assert_eq!(seen["compatible_incompatible"], json!(false), "{seen}");
    assert_eq!(
        seen["incompatible_error"],
        json!({"status": 409, "code": 409})
    );
    assert_eq!(seen["id_v2"], json!(2), "{seen}");
    assert_eq!(seen["latest"], json!({"id": 2, "version": 2}));
    assert_eq!(seen["versions"], json!([1, 2]));
    assert_eq!(seen["subjects"], json!(["py-value"]));
    assert_eq!(seen["global_level"], json!("BACKWARD"));
    assert_eq!(seen["subject_level"], json!("FULL"));
    assert_eq!(
        seen["missing_version"],
        json!({"status": 404, "code": 40402})
    );
    assert_eq!(
        (seen["wire_magic"].clone(), seen["wire_id"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(seen["decoded"], json!({"id": 7, "note": "hello"}));
    assert_eq!(seen["deleted_versions"], json!([1, 2]));
    assert_eq!(seen["deleted_permanently"], json!([1, 2]));
}
