//! The Kafka Connect-compatible REST API over real HTTP, driving a real source connector.

use std::time::Duration;

use serde_json::{Value, json};
use tributary::runtime::worker::Worker;

use crate::support::{
    kafka::{Collector, Isolation},
    serve::{ServeProcess, free_port},
    source::SourceFixture,
};

/// A worker serving the API on an ephemeral loopback port.
struct Api {
    base: String,
    http: reqwest::Client,
    worker: Worker,
}

impl Api {
    async fn start(fixture: &SourceFixture) -> Self {
        Self::start_with(fixture, tributary::api::ApiOptions::default()).await
    }

    async fn start_with(fixture: &SourceFixture, options: tributary::api::ApiOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("address");
        let worker = Worker::new(fixture.destination(), address.to_string());
        let app = tributary::api::router_with(worker.clone(), options);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            worker,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value, location)
    }

    async fn raw(&self, method: &str, path: &str, body: &'static str) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the API answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /metrics`, checked to be Prometheus-readable text.
    async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("the API answers");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        response.text().await.expect("text")
    }

    async fn wait_for_state(&self, name: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, status, _) = self
                .call("GET", &format!("/connectors/{name}/status"), None)
                .await;
            if status["connector"]["state"] == want {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never reached {want}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits for the slot to be streamed, failing with the task's trace if it failed instead.
async fn wait_until_streaming(api: &Api, fixture: &SourceFixture, name: &str) {
    tokio::select! {
        _ = fixture.wait_until_streaming() => {}
        trace = async {
            loop {
                let (_, status, _) = api.call("GET", &format!("/connectors/{name}/status"), None).await;
                if status["tasks"][0]["state"] == "FAILED" {
                    return status["tasks"][0]["trace"].clone();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } => panic!("the task failed: {trace}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_lifecycle_over_http_moves_data_only_when_running() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let topic = fixture.table_topic("t");
    let mut records = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let api = Api::start(&fixture).await;
    let connector: Value = serde_json::from_str(&fixture.connector_json(
        "public.t",
        &[
            // postgres is trusted on loopback: the password only has to stay hidden.
            ("database.password", "tributary-scram-pw"),
        ],
    ))
    .expect("JSON");
    let name = connector["name"].as_str().expect("name").to_owned();
    let mut bodies = Vec::new();

    let (status, body, _) = api.call("GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body["version"].is_string());
    let (status, body, _) = api.call("GET", "/connectors", None).await;
    assert_eq!((status, body), (200, json!([])));

    let (status, body, location) = api
        .call("POST", "/connectors", Some(connector.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(location, format!("/connectors/{name}"));
    assert_eq!(body["name"], name.as_str());
    assert_eq!(body["type"], "source");
    assert_eq!(body["tasks"], json!([{"connector": name, "task": 0}]));
    assert_eq!(body["config"]["database.password"], "[hidden]");
    bodies.push(body);

    let (status, body, _) = api
        .call("POST", "/connectors", Some(connector.clone()))
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"error_code": 409, "message": format!("Connector {name} already exists")})
    );

    let status = api.wait_for_state(&name, "RUNNING").await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING");
    bodies.push(status);
    wait_until_streaming(&api, &fixture, &name).await;
    let client = fixture.db.client();
    client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    assert_eq!(
        records.collect(1, Duration::from_secs(30)).await[0].payload()["after"]["id"],
        1
    );

    // The topic written is an active topic; the metrics count the event.
    let topics_path = format!("/connectors/{name}/topics");
    let (status, body, _) = api.call("GET", &topics_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ &name: {"topics": [&topic]} }));
    let metrics = api.metrics().await;
    assert!(
        metrics.contains(&format!(
            "tributary_source_events_total{{connector=\"{name}\",task=\"0\",op=\"create\"}} 1\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "tributary_kafka_commit_seconds_count{{connector=\"{name}\",task=\"0\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "tributary_source_lag_milliseconds{{connector=\"{name}\",task=\"0\"}}"
        )),
        "{metrics}"
    );

    // Paused: nothing moves; resumed: what happened meanwhile arrives, once.
    let (status, _, _) = api
        .call("PUT", &format!("/connectors/{name}/pause"), None)
        .await;
    assert_eq!(status, 202);
    api.wait_for_state(&name, "PAUSED").await;
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("insert");
    records.expect_no_more(Duration::from_secs(2)).await;
    let (status, body, _) = api
        .call("DELETE", &format!("/connectors/{name}/offsets"), None)
        .await;
    assert_eq!(status, 400, "offsets change only when STOPPED: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Connectors must be in the STOPPED state")),
        "{body}"
    );
    let (status, _, _) = api
        .call("PUT", &format!("/connectors/{name}/resume"), None)
        .await;
    assert_eq!(status, 202);
    api.wait_for_state(&name, "RUNNING").await;
    assert_eq!(
        records.collect(1, Duration::from_secs(30)).await[0].payload()["after"]["id"],
        2
    );
    records.expect_no_more(Duration::from_secs(1)).await;

    let (status, body, _) = api.call("PUT", &format!("{topics_path}/reset"), None).await;
    assert_eq!((status, body), (202, Value::Null));
    let (_, body, _) = api.call("GET", &topics_path, None).await;
    assert_eq!(body, json!({ &name: {"topics": []} }), "reset forgets them");

    // Stopped: no tasks, config kept.
    let (status, _, _) = api
        .call("PUT", &format!("/connectors/{name}/stop"), None)
        .await;
    assert_eq!(status, 204);
    let stopped = api.wait_for_state(&name, "STOPPED").await;
    assert_eq!(stopped["tasks"], json!([]));
    let (status, tasks, _) = api
        .call("GET", &format!("/connectors/{name}/tasks"), None)
        .await;
    assert_eq!((status, tasks), (200, json!([])));
    let (status, config, _) = api
        .call("GET", &format!("/connectors/{name}/config"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(config["database.password"], "[hidden]");
    bodies.push(config);

    // Offsets: shown, reset and set while STOPPED (Connect's KIP-875 endpoints).
    let offsets_path = format!("/connectors/{name}/offsets");
    let (status, offsets, _) = api.call("GET", &offsets_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        offsets["offsets"][0]["partition"],
        json!({"server": fixture.prefix})
    );
    let stored_lsn = offsets["offsets"][0]["offset"]["lsn"]
        .as_u64()
        .expect("an lsn");
    assert!(stored_lsn > 0);
    let (status, body, _) = api.call("DELETE", &offsets_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["message"],
        "The offsets for this connector have been reset successfully"
    );
    let (_, offsets, _) = api.call("GET", &offsets_path, None).await;
    assert_eq!(offsets, json!({"offsets": []}));
    let (status, body, _) = api.call("PATCH", &offsets_path, Some(json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Partitions / offsets need to be provided for an alter offsets request"
    );
    let altered = json!({"offsets": [{"partition": {"server": fixture.prefix}, "offset": {"lsn": stored_lsn, "ts_usec": 0}}]});
    let (status, body, _) = api.call("PATCH", &offsets_path, Some(altered)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["message"],
        "The offsets for this connector have been altered successfully"
    );
    let (_, offsets, _) = api.call("GET", &offsets_path, None).await;
    assert_eq!(offsets["offsets"][0]["offset"]["lsn"], stored_lsn);

    // Config changes: PATCH, and PUT with a name that does not match.
    let (status, body, _) = api
        .call(
            "PATCH",
            &format!("/connectors/{name}/config"),
            Some(json!({"heartbeat.interval.ms": "5000"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["heartbeat.interval.ms"], "5000");
    let (status, body, _) = api
        .call(
            "PUT",
            &format!("/connectors/{name}/config"),
            Some(json!({"name": "other"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        format!(
            "Connector name configuration (other) doesn't match connector name in the URL ({name})"
        )
    );

    let (status, _, _) = api
        .call("DELETE", &format!("/connectors/{name}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body, _) = api.call("GET", &format!("/connectors/{name}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error_code": 404, "message": format!("Connector {name} not found")})
    );
    let (status, _, _) = api.call("GET", &topics_path, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = api
        .call("GET", &format!("/connectors/{name}/tasks"), None)
        .await;
    assert_eq!(status, 404, "tasks gone with the connector");
    let slots = client
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&fixture.slot],
        )
        .await
        .expect("slots");
    assert_eq!(slots.len(), 1, "the slot stays (slot.drop.on.stop is off)");
    assert!(
        !api.metrics().await.contains(&name),
        "a deleted connector leaves no series"
    );

    for body in &bodies {
        assert!(
            !body.to_string().contains("tributary-scram-pw"),
            "a response shows the password: {body}"
        );
    }
    api.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_connects_answers() {
    let fixture = SourceFixture::new().await;
    let api = Api::start(&fixture).await;

    let (status, body) = api.raw("POST", "/connectors", "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid JSON")),
        "{body}"
    );

    let (status, body, _) = api
        .call("POST", "/connectors", Some(json!({"name": "bad", "config": {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "slot.name": "Bad-Slot"}})))
        .await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.starts_with("Connector configuration is invalid and contains the following"),
        "{message}"
    );
    assert!(message.contains("slot.name"), "{message}");
    assert!(
        message.contains("database.hostname: is required"),
        "{message}"
    );
    let (status, body, _) = api.call("GET", "/connectors", None).await;
    assert_eq!(
        (status, body),
        (200, json!([])),
        "nothing is created on 400"
    );

    let (status, body, _) = api
        .call(
            "POST",
            "/connectors",
            Some(json!({"name": "a", "config": {"name": "b"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // connector.class must name a plugin, in Connect's words.
    let (status, body, _) = api
        .call(
            "POST",
            "/connectors",
            Some(json!({"name": "c", "config": {"database.hostname": "h"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("contains no connector type")),
        "{body}"
    );
    let (status, body, _) = api
        .call(
            "POST",
            "/connectors",
            Some(
                json!({"name": "c", "config": {"connector.class": "com.example.NoSuchConnector"}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "Failed to find any class that implements Connector and which name matches com.example.NoSuchConnector, available connectors are: io.debezium.connector.postgresql.PostgresConnector, io.debezium.connector.jdbc.JdbcSinkConnector, tributary.WindowAggregate"
    );

    for (method, path) in [
        ("GET", "/connectors/missing"),
        ("GET", "/connectors/missing/status"),
        ("PUT", "/connectors/missing/pause"),
        ("DELETE", "/connectors/missing"),
        ("POST", "/connectors/missing/restart"),
        ("GET", "/connectors/missing/topics"),
        ("PUT", "/connectors/missing/topics/reset"),
        ("GET", "/connectors/missing/offsets"),
    ] {
        let (status, body, _) = api.call(method, path, None).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(
            body["message"], "Connector missing not found",
            "{method} {path}"
        );
    }

    let (status, body, _) = api
        .call(
            "PUT",
            "/connector-plugins/NoSuchConnector/config/validate",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body, _) = api
        .call(
            "PUT",
            "/connector-plugins/PostgresConnector/config/validate",
            Some(json!({"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "database.password": "s3cret", "slot.name": "Bad-Slot"})),
        )
        .await;
    assert_eq!(
        status, 200,
        "validate answers 200 even for an invalid config"
    );
    assert!(
        body["error_count"].as_u64().is_some_and(|n| n >= 2),
        "{body}"
    );
    let slot = body["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["value"]["name"] == "slot.name")
        .expect("slot.name reported");
    assert_eq!(slot["definition"]["type"], "STRING", "{slot}");
    assert!(
        body["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("Postgres"))),
        "{body}"
    );
    assert!(
        slot["value"]["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("a-z")),
        "{slot}"
    );
    assert!(
        !body.to_string().contains("s3cret"),
        "validate shows the password"
    );

    let untracked = Api::start_with(
        &fixture,
        tributary::api::ApiOptions {
            topic_tracking_reset: false,
            ..Default::default()
        },
    )
    .await;
    let connector: Value =
        serde_json::from_str(&fixture.connector_json("public.t", &[])).expect("JSON");
    let mut connector_stopped = connector.clone();
    connector_stopped["initial_state"] = json!("STOPPED");
    let name = connector["name"].as_str().expect("name");
    let (status, body, _) = untracked
        .call("POST", "/connectors", Some(connector_stopped))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = untracked
        .call("PUT", &format!("/connectors/{name}/topics/reset"), None)
        .await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error_code": 403, "message": "Topic tracking reset is disabled."})
        )
    );
    let untracked = Api::start_with(
        &fixture,
        tributary::api::ApiOptions {
            topic_tracking: false,
            ..Default::default()
        },
    )
    .await;
    let (status, body, _) = untracked
        .call("GET", &format!("/connectors/{name}/topics"), None)
        .await;
    assert_eq!(status, 403, "{body}");

    let (status, definitions, _) = api
        .call("GET", "/connector-plugins/PostgresConnector/config", None)
        .await;
    assert_eq!(status, 200);
    let definition = |key: &str| -> Value {
        definitions
            .as_array()
            .expect("a list of ConfigKeyInfo")
            .iter()
            .find(|d| d["name"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} is not defined: {definitions}"))
    };
    assert_eq!(definition("database.hostname")["required"], true);
    assert_eq!(definition("database.hostname")["type"], "STRING");
    assert_eq!(definition("database.password")["type"], "PASSWORD");
    assert_eq!(definition("database.port")["default_value"], "5432");
    assert_eq!(definition("slot.name")["group"], "Postgres");
    let (status, body, _) = api
        .call("GET", "/connector-plugins/NoSuchConnector/config", None)
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error_code": 404, "message": "Unknown connector plugin NoSuchConnector"})
        )
    );

    let (status, plugins, _) = api.call("GET", "/connector-plugins", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        plugins[0]["class"],
        "io.debezium.connector.postgresql.PostgresConnector"
    );
    assert_eq!(plugins[0]["type"], "source");
    assert_eq!(
        plugins[1]["class"],
        "io.debezium.connector.jdbc.JdbcSinkConnector"
    );
    assert_eq!(plugins[1]["type"], "sink");
    let (status, sink_keys, _) = api
        .call("GET", "/connector-plugins/postgres-sink/config", None)
        .await;
    assert_eq!(status, 200);
    let sink_key = |name: &str| {
        sink_keys
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not among the sink's keys: {sink_keys}"))
    };
    assert_eq!(sink_key("connection.password")["type"], "PASSWORD");
    assert_eq!(sink_key("batch.size")["default_value"], "500");
    assert_eq!(sink_key("connection.url")["required"], true);

    // The sink's validate connects to the target and reports on the key at fault.
    let (status, validated, _) = api
        .call(
            "PUT",
            "/connector-plugins/JdbcSinkConnector/config/validate",
            Some(json!({
                "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
                "name": "replica",
                "topics": "a.public.t",
                "connection.url": "jdbc:postgresql://127.0.0.1:1/nowhere",
                "connection.username": "postgres",
                "connection.password": "sekret",
                "insert.mode": "merge",
            })),
        )
        .await;
    assert_eq!(status, 200, "{validated}");
    let errors_of = |body: &Value, key: &str| -> Vec<String> {
        body["configs"]
            .as_array()
            .and_then(|configs| configs.iter().find(|c| c["value"]["name"] == key))
            .map(|c| {
                c["value"]["errors"]
                    .as_array()
                    .map(|e| {
                        e.iter()
                            .filter_map(|m| m.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    assert_eq!(validated["error_count"], 1, "{validated}");
    assert!(
        errors_of(&validated, "insert.mode")[0].contains("upsert"),
        "{validated}"
    );
    assert!(!validated.to_string().contains("sekret"));
    let (_, validated, _) = api
        .call(
            "PUT",
            "/connector-plugins/postgres-sink/config/validate",
            Some(json!({
                "connector.class": "postgres-sink",
                "name": "replica",
                "topics": "a.public.t",
                "connection.url": "jdbc:postgresql://127.0.0.1:1/nowhere",
                "connection.username": "postgres",
            })),
        )
        .await;
    assert_eq!(validated["error_count"], 1, "{validated}");
    assert!(
        errors_of(&validated, "connection.url")[0].contains("127.0.0.1:1/nowhere"),
        "{validated}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_comes_back_with_its_connectors_and_states() {
    let mut fixture = SourceFixture::new().await;
    let other = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let topic = fixture.table_topic("t");
    let mut records = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let configs_topic = format!("{}-configs", fixture.offsets_topic);
    let status_topic = format!("{}-status", fixture.offsets_topic);
    let _guards = [
        crate::support::kafka::TestTopic::delete_on_drop(configs_topic, 1),
        crate::support::kafka::TestTopic::delete_on_drop(status_topic.clone(), 1),
    ];
    let dir = std::env::temp_dir().join(crate::support::unique_name("tributary-serve"));
    let port = free_port();
    let config = ServeProcess::config(&fixture, port);
    let mut serve = ServeProcess::start(&dir, &config, port).await;
    let http = reqwest::Client::new();

    let running: Value =
        serde_json::from_str(&fixture.connector_json("public.t", &[])).expect("JSON");
    let name = running["name"].as_str().expect("name").to_owned();
    let mut stopped: Value =
        serde_json::from_str(&other.connector_json("public.x", &[])).expect("JSON");
    stopped["initial_state"] = json!("STOPPED");
    let stopped_name = stopped["name"].as_str().expect("name").to_owned();
    for body in [&running, &stopped] {
        let response = http
            .post(format!("{}/connectors", serve.base))
            .json(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 201);
    }
    fixture.wait_until_streaming().await;
    let client = fixture.db.client();
    client
        .batch_execute("INSERT INTO t SELECT g FROM generate_series(1, 50) g")
        .await
        .expect("insert");
    records.collect(50, Duration::from_secs(30)).await;
    // The active topic is recorded on the status topic on its own time; the kill comes once it
    // is stored (what a restart can know of).
    let statuses = tributary::runtime::store::StatusStore::new(
        &crate::support::kafka::settings(),
        &status_topic,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored = statuses
            .load(Duration::from_secs(30))
            .await
            .expect("the status topic reads");
        if stored.topics.get(&name).is_some_and(|t| t.contains(&topic)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the active topic was never stored:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    serve.child.kill().await.expect("kill -9");
    client
        .batch_execute("INSERT INTO t SELECT g FROM generate_series(51, 100) g")
        .await
        .expect("insert while down");
    let serve = ServeProcess::start(&dir, &config, port).await;

    let names: Vec<String> = http
        .get(format!("{}/connectors", serve.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let mut sorted = names.clone();
    sorted.sort();
    let mut expected = vec![name.clone(), stopped_name.clone()];
    expected.sort();
    assert_eq!(sorted, expected);
    let status: Value = http
        .get(format!("{}/connectors/{stopped_name}/status", serve.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["connector"]["state"], "STOPPED", "{status}");

    let topics: Value = http
        .get(format!("{}/connectors/{name}/topics", serve.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        topics,
        json!({ &name: {"topics": [&topic]} }),
        "active topics survive the restart"
    );

    let seen = match records.try_collect(50, Duration::from_secs(60)).await {
        Ok(seen) => seen,
        Err(message) => panic!("{message}\nworker log:\n{}", serve.log()),
    };
    let ids: Vec<i64> = seen
        .iter()
        .map(|r| r.payload()["after"]["id"].as_i64().expect("an id"))
        .collect();
    assert_eq!(
        ids,
        (51..=100).collect::<Vec<_>>(),
        "the rows written while the worker was down, once"
    );
    records.expect_no_more(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_the_live_database_and_reports_on_the_right_key() {
    let fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE nokey (v int);")
        .await
        .expect("schema");
    let api = Api::start(&fixture).await;
    let find = |body: &Value, key: &str| -> Vec<String> {
        body["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .filter(|c| c["value"]["name"] == key)
            .flat_map(|c| c["value"]["errors"].as_array().cloned().unwrap_or_default())
            .map(|e| e.as_str().unwrap_or_default().to_owned())
            .collect()
    };

    let good: Value = serde_json::from_str(&fixture.connector_json("public.t", &[])).expect("JSON");
    let (status, body, _) = api
        .call(
            "PUT",
            "/connector-plugins/PostgresConnector/config/validate",
            Some(good["config"].clone()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["error_count"], 0, "{body}");

    let bad: Value = serde_json::from_str(&fixture.connector_json(
        "public.t,public.nokey",
        &[
            ("database.user", "tributary"),
            ("database.password", "wrong-password"),
        ],
    ))
    .expect("JSON");
    let (status, body, _) = api
        .call(
            "PUT",
            "/connector-plugins/PostgresConnector/config/validate",
            Some(bad["config"].clone()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["error_count"], 1, "{body}");
    let errors = find(&body, "database.password");
    assert!(errors.iter().any(|e| e.contains("password")), "{body}");
    assert!(
        !body.to_string().contains("wrong-password"),
        "validate shows the password"
    );

    let keyless: Value =
        serde_json::from_str(&fixture.connector_json("public.t,public.nokey", &[])).expect("JSON");
    let (_, body, _) = api
        .call(
            "PUT",
            "/connector-plugins/PostgresConnector/config/validate",
            Some(keyless["config"].clone()),
        )
        .await;
    let errors = find(&body, "table.include.list");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("nokey") && e.contains("REPLICA IDENTITY FULL")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_levels_change_at_run_time() {
    let fixture = SourceFixture::new().await;
    let applied = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&applied);
    let levels = tributary::api::LogLevels::new(
        "INFO",
        std::sync::Arc::new(move |directives: &str| {
            *sink.lock().expect("lock") = directives.to_owned();
            Ok(())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let worker = Worker::new(fixture.destination(), "test");
    let app = tributary::api::router_with(
        worker,
        tributary::api::ApiOptions {
            loggers: Some(levels),
            ..Default::default()
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    let response = http
        .put(format!("{base}/admin/loggers/tributary::source"))
        .json(&json!({"level": "DEBUG"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!(["tributary::source"])
    );
    assert_eq!(
        *applied.lock().expect("lock"),
        "info,tributary::source=debug"
    );

    let all: Value = http
        .get(format!("{base}/admin/loggers"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(all["root"]["level"], "INFO");
    assert_eq!(all["tributary::source"]["level"], "DEBUG");
    assert!(all["tributary::source"]["last_modified"].as_i64().is_some());
    let child: Value = http
        .get(format!("{base}/admin/loggers/tributary::source::postgres"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(child["level"], "DEBUG");

    let missing = http
        .put(format!("{base}/admin/loggers/x"))
        .json(&json!({}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(missing.status().as_u16(), 400);
    let invalid = http
        .put(format!("{base}/admin/loggers/x"))
        .json(&json!({"level": "LOUD"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(invalid.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_leaves_the_task_failed_with_its_trace_until_restarted() {
    let fixture = SourceFixture::new().await;
    let client = fixture.db.client();
    let role = format!("{}_norepl", fixture.name);
    client
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        .await
        .expect("role");
    let api = Api::start(&fixture).await;
    let connector: Value = serde_json::from_str(&fixture.connector_json(
        "public.t",
        &[
            ("database.user", role.as_str()),
            ("database.password", "pw"),
        ],
    ))
    .expect("JSON");
    let name = connector["name"].as_str().expect("name").to_owned();
    let (status, _, _) = api.call("POST", "/connectors", Some(connector)).await;
    assert_eq!(status, 201);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let task = loop {
        let (_, status, _) = api
            .call("GET", &format!("/connectors/{name}/tasks/0/status"), None)
            .await;
        if status["state"] == "FAILED" {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never failed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let trace = task["trace"].as_str().expect("a trace");
    assert!(
        trace.contains(&format!("ALTER ROLE {role} REPLICATION")),
        "{trace}"
    );
    // It stays FAILED; a restart runs it again (and it fails again, for the same reason).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, status, _) = api
        .call("GET", &format!("/connectors/{name}/status"), None)
        .await;
    assert_eq!(status["tasks"][0]["state"], "FAILED");
    let (code, body, _) = api
        .call(
            "POST",
            &format!("/connectors/{name}/restart?includeTasks=true&onlyFailed=true"),
            None,
        )
        .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["tasks"][0]["state"], "RESTARTING", "{body}");
    assert_eq!(body["connector"]["state"], "RESTARTING", "{body}");
    let (_, _, _) = api
        .call("DELETE", &format!("/connectors/{name}"), None)
        .await;
    api.worker.shutdown().await;
    client
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_configured_requests_without_them_get_401() {
    let fixture = SourceFixture::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let worker = Worker::new(fixture.destination(), "test");
    let auth = tributary::api::RestAuth {
        bearer_token: Some("t0ken".to_owned()),
        basic: Some("admin:pa55".to_owned()),
    };
    let app = tributary::api::router_with(
        worker,
        tributary::api::ApiOptions {
            auth,
            ..Default::default()
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let get = |authorization: Option<&'static str>| {
        let mut request = http.get(format!("{base}/connectors"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    let denied = get(None).await.expect("GET");
    assert_eq!(denied.status().as_u16(), 401);
    assert!(denied.headers().contains_key("www-authenticate"));
    let body: Value = denied.json().await.expect("JSON");
    assert_eq!(body["error_code"], 401);
    assert_eq!(
        get(Some("Bearer wrong"))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        get(Some("Bearer t0ken"))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    // base64("admin:pa55") and base64("admin:nope")
    assert_eq!(
        get(Some("Basic YWRtaW46cGE1NQ=="))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        get(Some("Basic YWRtaW46bm9wZQ=="))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_config_providers_resolve_at_start_and_stay_placeholders_in_storage() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let topic = fixture.table_topic("t");
    let mut records = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let secrets = std::env::temp_dir().join(format!("{}.properties", fixture.name));
    std::fs::write(
        &secrets,
        format!("dbname={}\npassword=from-a-file\n", fixture.db.name),
    )
    .expect("properties");
    let api = Api::start(&fixture).await;
    let dbname = format!("${{file:{}:dbname}}", secrets.display());
    let password = format!("${{file:{}:password}}", secrets.display());
    let connector: Value = serde_json::from_str(&fixture.connector_json(
        "public.t",
        &[
            ("database.dbname", dbname.as_str()),
            ("database.password", password.as_str()),
        ],
    ))
    .expect("JSON");
    let name = connector["name"].as_str().expect("name").to_owned();
    let (status, body, _) = api.call("POST", "/connectors", Some(connector)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["config"]["database.dbname"],
        dbname.as_str(),
        "the placeholder is what is kept"
    );
    wait_until_streaming(&api, &fixture, &name).await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    let seen = records.collect(1, Duration::from_secs(30)).await;
    assert_eq!(seen[0].payload()["source"]["db"], fixture.db.name.as_str());
    api.worker.shutdown().await;
    let _ = std::fs::remove_file(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_every_response_and_log_line() {
    let fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let configs_topic = format!("{}-configs", fixture.offsets_topic);
    let status_topic = format!("{}-status", fixture.offsets_topic);
    let _guards = [
        crate::support::kafka::TestTopic::delete_on_drop(configs_topic, 1),
        crate::support::kafka::TestTopic::delete_on_drop(status_topic, 1),
    ];
    let token = crate::support::unique_name("token");
    let password = crate::support::unique_name("pw");
    let dir = std::env::temp_dir().join(crate::support::unique_name("tributary-secrets"));
    let port = free_port();
    let config = format!(
        "{}bearer_token = \"{token}\"\n",
        ServeProcess::config(&fixture, port)
    );
    let serve = ServeProcess::start(&dir, &config, port).await;
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();
    let mut call = async |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{}{path}", serve.base))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        bodies.push(text.clone());
        (status, text)
    };

    // A role that needs a password, given a wrong one: the task fails on authentication.
    let connector: Value = serde_json::from_str(&fixture.connector_json(
        "public.t",
        &[
            ("database.user", "tributary"),
            ("database.password", &password),
        ],
    ))
    .expect("JSON");
    let name = connector["name"].as_str().expect("name").to_owned();
    let (status, text) = call(
        reqwest::Method::POST,
        "/connectors".into(),
        Some(connector.clone()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = call(
            reqwest::Method::GET,
            format!("/connectors/{name}/status"),
            None,
        )
        .await;
        let status: Value = serde_json::from_str(&text).expect("JSON");
        if status["tasks"][0]["state"] == "FAILED" {
            assert!(
                status["tasks"][0]["trace"]
                    .as_str()
                    .is_some_and(|t| t.contains("password") || t.contains("authentication")),
                "{status}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task never failed: {status}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for path in [
        format!("/connectors/{name}"),
        format!("/connectors/{name}/config"),
        format!("/connectors/{name}/tasks"),
        "/connectors?expand=info&expand=status".to_owned(),
    ] {
        let (status, _) = call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200);
    }
    let (status, _) = call(
        reqwest::Method::PATCH,
        format!("/connectors/{name}/config"),
        Some(json!({"database.password": format!("{password}-changed")})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        reqwest::Method::PUT,
        "/connector-plugins/PostgresConnector/config/validate".into(),
        Some(connector["config"].clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        reqwest::Method::POST,
        "/connectors".into(),
        Some(json!({"name": "invalid", "config": {"connector.class": "postgres", "database.password": password, "database.port": "not-a-port"}})),
    )
    .await;
    assert_eq!(status, 400);

    assert!(
        bodies.iter().any(|b| b.contains("[hidden]")),
        "the password is shown masked"
    );
    for body in &bodies {
        assert!(
            !body.contains(&password),
            "a response shows the password: {body}"
        );
        assert!(!body.contains(&token), "a response shows the token: {body}");
    }
    let log = serve.log();
    assert!(log.contains(&name), "the log covers the connector:\n{log}");
    assert!(
        !log.contains(&password),
        "the log shows the password:\n{log}"
    );
    assert!(!log.contains(&token), "the log shows the token:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
