//! The worker's config and status stores on the real broker: what a call stored is what a new
//! store instance (a restarted worker) loads, the newest record per key wins, tombstones remove,
//! an empty or just-created topic loads at once, and a corrupt record is reported where it is.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use tributary::{
    kafka::{self as tk, TopicAdmin, compacted::StateRole},
    runtime::store::{
        ConfigStore, ConnectorRecord, State, StatusRecord, StatusSnapshot, StatusStore, StoreError,
        TargetState,
    },
};

use crate::support::{
    kafka::{self, TestTopic},
    unique_name,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const WORKER: &str = "127.0.0.1:8083";

async fn fresh_configs() -> (ConfigStore, TestTopic) {
    let name = unique_name("tributary-test-configs");
    let guard = TestTopic::delete_on_drop(&name, 1);
    let store = ConfigStore::new(&kafka::settings(), name);
    store
        .ensure_topic()
        .await
        .unwrap_or_else(|err| panic!("cannot create configs topic: {err}"));
    (store, guard)
}

async fn fresh_statuses() -> (StatusStore, TestTopic) {
    let name = unique_name("tributary-test-status");
    let guard = TestTopic::delete_on_drop(&name, 1);
    let store = StatusStore::new(&kafka::settings(), name);
    store
        .ensure_topic()
        .await
        .unwrap_or_else(|err| panic!("cannot create status topic: {err}"));
    (store, guard)
}

fn connector(name: &str, prefix: &str, target_state: TargetState) -> ConnectorRecord {
    ConnectorRecord {
        name: name.to_owned(),
        config: BTreeMap::from([
            ("name".to_owned(), name.to_owned()),
            (
                "connector.class".to_owned(),
                "io.debezium.connector.postgresql.PostgresConnector".to_owned(),
            ),
            ("database.password".to_owned(), "s3cret".to_owned()),
            ("topic.prefix".to_owned(), prefix.to_owned()),
        ]),
        target_state,
    }
}

async fn load_configs(store: &ConfigStore) -> BTreeMap<String, ConnectorRecord> {
    store
        .load(TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("loading configs failed: {err}"))
}

async fn load_statuses(store: &StatusStore) -> StatusSnapshot {
    store
        .load(TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("loading statuses failed: {err}"))
}

/// A plain producer for writing records the stores would never write.
fn raw_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka::bootstrap_servers())
        .create()
        .expect("a producer can be created")
}

async fn send_raw(topic: &str, key: &str, value: Option<&[u8]>) -> (i32, i64) {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    let delivery = raw_producer()
        .send(record, TIMEOUT)
        .await
        .unwrap_or_else(|(err, _)| panic!("sending to {topic} failed: {err}"));
    (delivery.partition, delivery.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topics_load_empty_quickly_and_are_compacted() {
    let (configs, _configs_guard) = fresh_configs().await;
    let (statuses, _status_guard) = fresh_statuses().await;
    // Setup is idempotent.
    configs.ensure_topic().await.expect("ensure configs twice");
    statuses.ensure_topic().await.expect("ensure status twice");

    let admin = TopicAdmin::new(&kafka::settings(), TIMEOUT).expect("admin");
    for topic in [configs.topic(), statuses.topic()] {
        let policy = admin
            .topic_config(topic, "cleanup.policy")
            .await
            .expect("describe");
        assert_eq!(policy.as_deref(), Some("compact"), "{topic}");
    }

    let started = Instant::now();
    assert!(load_configs(&configs).await.is_empty());
    assert_eq!(load_statuses(&statuses).await, StatusSnapshot::default());
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "two empty topics took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_just_created_topic_takes_writes_and_reads_at_once() {
    let (configs, _guard) = fresh_configs().await;
    let record = connector("inventory", "shop", TargetState::Running);
    configs
        .put(&record)
        .await
        .expect("put right after creation");
    let loaded = load_configs(&configs).await;
    assert_eq!(loaded, BTreeMap::from([("inventory".to_owned(), record)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_round_trip_newest_wins_and_tombstones_remove() {
    let (configs, guard) = fresh_configs().await;
    let alpha = connector("alpha", "a", TargetState::Running);
    let beta = connector("beta", "b", TargetState::Running);
    configs.put(&alpha).await.expect("put alpha");
    configs.put(&beta).await.expect("put beta");
    assert_eq!(
        load_configs(&configs).await,
        BTreeMap::from([
            ("alpha".to_owned(), alpha.clone()),
            ("beta".to_owned(), beta.clone())
        ])
    );

    // An update replaces config and target state alike.
    let mut alpha2 = connector("alpha", "a2", TargetState::Paused);
    alpha2
        .config
        .insert("slot.name".to_owned(), "alpha_slot".to_owned());
    configs.put(&alpha2).await.expect("update alpha");
    let beta_stopped = ConnectorRecord {
        target_state: TargetState::Stopped,
        ..beta.clone()
    };
    configs.put(&beta_stopped).await.expect("stop beta");
    configs.delete("alpha").await.expect("delete alpha");
    configs.put(&alpha2).await.expect("alpha again");
    configs.delete("beta").await.expect("delete beta");

    let loaded = load_configs(&configs).await;
    assert_eq!(
        loaded,
        BTreeMap::from([("alpha".to_owned(), alpha2.clone())])
    );
    assert_eq!(loaded["alpha"].config["topic.prefix"], "a2");
    assert_eq!(loaded["alpha"].config["database.password"], "s3cret");

    // Deleting what is not there is harmless.
    configs.delete("gamma").await.expect("delete unknown");
    // Records with keys of other shapes (Connect's target-state or task records) are skipped.
    send_raw(
        &guard.name,
        "target-state-alpha",
        Some(br#"{"state":"STARTED"}"#),
    )
    .await;
    send_raw(&guard.name, "session-key", Some(b"opaque")).await;

    // A worker restarted from scratch sees the same state.
    let restarted = ConfigStore::new(&kafka::settings(), configs.topic());
    assert_eq!(
        load_configs(&restarted).await,
        BTreeMap::from([("alpha".to_owned(), alpha2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_states_survive_a_restart() {
    let (configs, guard) = fresh_configs().await;
    let records = [
        connector("runs", "r", TargetState::Running),
        connector("paused", "p", TargetState::Paused),
        connector("stopped", "s", TargetState::Stopped),
    ];
    for record in &records {
        configs.put(record).await.expect("put");
    }
    drop(configs);

    let restarted = ConfigStore::new(&kafka::settings(), guard.name.clone());
    let loaded = load_configs(&restarted).await;
    let states: BTreeMap<&str, TargetState> = loaded
        .iter()
        .map(|(name, record)| (name.as_str(), record.target_state))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("paused", TargetState::Paused),
            ("runs", TargetState::Running),
            ("stopped", TargetState::Stopped),
        ])
    );
    for record in records {
        assert_eq!(loaded[&record.name], record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_round_trip_newest_wins_and_tombstones_remove() {
    let (statuses, guard) = fresh_statuses().await;
    statuses
        .put_connector("alpha", &StatusRecord::new(State::Unassigned, WORKER))
        .await
        .expect("put");
    statuses
        .put_connector("alpha", &StatusRecord::new(State::Running, WORKER))
        .await
        .expect("put");
    statuses
        .put_task("alpha", 0, &StatusRecord::new(State::Running, WORKER))
        .await
        .expect("put task");
    let failure = "replication slot alpha_slot is active for PID 42\n\tat stream::run";
    statuses
        .put_task("alpha", 1, &StatusRecord::failed(failure, WORKER))
        .await
        .expect("put task");
    // A connector whose name looks like another's task key.
    statuses
        .put_connector("alpha-0", &StatusRecord::new(State::Paused, "other:8083"))
        .await
        .expect("put");
    statuses
        .put_task(
            "alpha-0",
            7,
            &StatusRecord::new(State::Paused, "other:8083"),
        )
        .await
        .expect("put");
    // Active-topic records, in Connect's shape; the key is what counts.
    send_raw(
        &guard.name,
        "status-topic-orders:connector-alpha",
        Some(br#"{"topic":{"name":"orders"}}"#),
    )
    .await;
    statuses
        .put_topic("alpha", 0, "alpha.public.items", 1)
        .await
        .expect("put topic");
    statuses
        .put_topic("alpha", 0, "gone", 1)
        .await
        .expect("put topic");
    statuses
        .delete_topic("alpha", "gone")
        .await
        .expect("delete topic");

    let snapshot = load_statuses(&statuses).await;
    assert_eq!(
        snapshot.connector("alpha"),
        Some(&StatusRecord::new(State::Running, WORKER))
    );
    assert_eq!(
        snapshot.task("alpha", 0),
        Some(&StatusRecord::new(State::Running, WORKER))
    );
    // A failed task keeps its error.
    let failed = snapshot.task("alpha", 1).expect("task 1");
    assert_eq!(failed.state, State::Failed);
    assert_eq!(failed.trace.as_deref(), Some(failure));
    assert_eq!(snapshot.tasks["alpha"].len(), 2);
    assert_eq!(
        snapshot.topics["alpha"],
        ["alpha.public.items", "orders"],
        "active topics, the deleted one gone"
    );
    assert_eq!(
        snapshot.tasks["alpha-0"],
        BTreeMap::from([(7, StatusRecord::new(State::Paused, "other:8083"))])
    );

    // Restart of the failed task: RESTARTING, then RUNNING.
    statuses
        .put_task("alpha", 1, &StatusRecord::new(State::Restarting, WORKER))
        .await
        .expect("restarting");
    assert_eq!(
        load_statuses(&statuses)
            .await
            .task("alpha", 1)
            .map(|s| s.state),
        Some(State::Restarting)
    );
    statuses
        .put_task("alpha", 1, &StatusRecord::new(State::Running, WORKER))
        .await
        .expect("running");

    statuses.delete_connector("alpha", 2).await.expect("delete");
    // A restarted worker sees only what is left.
    let restarted = StatusStore::new(&kafka::settings(), statuses.topic());
    let snapshot = load_statuses(&restarted).await;
    assert_eq!(snapshot.connector("alpha"), None);
    assert_eq!(snapshot.task("alpha", 1), None);
    assert!(!snapshot.tasks.contains_key("alpha"));
    assert_eq!(snapshot.connectors.keys().collect::<Vec<_>>(), ["alpha-0"]);
    assert_eq!(snapshot.tasks.keys().collect::<Vec<_>>(), ["alpha-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_newest_record_is_an_error_naming_where_it_is() {
    let (configs, guard) = fresh_configs().await;
    configs
        .put(&connector("alpha", "a", TargetState::Running))
        .await
        .expect("put");
    let (partition, at) = send_raw(
        &guard.name,
        "connector-alpha",
        Some(br#"{"config":{"database.password":"hunter2","port":5432}}"#),
    )
    .await;

    let err = configs
        .load(TIMEOUT)
        .await
        .expect_err("a corrupt newest config must not load");
    match &err {
        StoreError::CorruptRecord {
            topic,
            partition: p,
            offset,
            key,
            ..
        } => {
            assert_eq!(topic, configs.topic());
            assert_eq!((*p, *offset), (partition, at));
            assert_eq!(key, "connector-alpha");
        }
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains(configs.topic())
            && message.contains(&format!("offset {at}"))
            && message.contains("connector-alpha"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2") && !message.contains("5432"),
        "{message}"
    );

    // A valid record written over it heals the topic; the corrupt one is superseded.
    let fixed = connector("alpha", "a3", TargetState::Paused);
    configs.put(&fixed).await.expect("put over it");
    assert_eq!(load_configs(&configs).await["alpha"], fixed);

    // Statuses too.
    let (statuses, status_guard) = fresh_statuses().await;
    let (_, at) = send_raw(
        &status_guard.name,
        "status-task-alpha-0",
        Some(b"{\"state\":"),
    )
    .await;
    let err = statuses.load(TIMEOUT).await.expect_err("corrupt status");
    assert!(
        matches!(&err, StoreError::CorruptRecord { offset, key, .. } if *offset == at && key == "status-task-alpha-0"),
        "{err:?}"
    );
    // A tombstone over it removes the problem.
    send_raw(&status_guard.name, "status-task-alpha-0", None).await;
    assert_eq!(load_statuses(&statuses).await, StatusSnapshot::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_non_compacted_topic_is_refused() {
    let missing = ConfigStore::new(&kafka::settings(), unique_name("tributary-test-missing"));
    let err = missing.load(TIMEOUT).await.expect_err("no topic");
    assert!(
        matches!(
            err,
            StoreError::Kafka(tk::Error::StateTopicMissing {
                role: StateRole::Configs,
                ..
            })
        ),
        "expected StateTopicMissing, got {err:?}"
    );
    assert!(!err.is_transient());

    let plain = TestTopic::create(1).await;
    let err = StatusStore::new(&kafka::settings(), &plain.name)
        .ensure_topic()
        .await
        .expect_err("a topic with cleanup.policy=delete must be refused");
    assert!(
        matches!(&err, StoreError::Kafka(tk::Error::StateTopicNotCompacted { policy, role: StateRole::Status, .. }) if policy == "delete"),
        "expected StateTopicNotCompacted, got {err:?}"
    );
    assert!(err.to_string().contains(&plain.name), "{err}");
}
