//! The initial snapshot end to end: existing rows become `op=r` records, changes made while it
//! runs arrive exactly once as streamed records, the snapshot modes decide what a (re)start
//! does, and a snapshot killed halfway is taken again cleanly.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tributary::{
    kafka::OffsetStore,
    source::postgres::{Error, snapshot::SnapshotProgress},
};

use crate::{
    source_all_types::{EDGE_ROW, FULL_ROW, SCHEMA, full_row_after},
    support::{
        kafka::{self, Collector, Isolation, Record},
        postgres::connect,
        source::{InProcessSource, ProcessSource, SourceFixture},
    },
};

const WAIT: Duration = Duration::from_secs(120);

/// The columns of all_types whose types a snapshot reads in binary.
const BINARY_COLUMNS: &str = "id, c_bool, c_int2, c_int4, c_int8, c_float4, c_float8, c_numeric, \
    c_numeric_any, c_text, c_varchar, c_char, c_name, c_bytea, c_uuid, c_json, c_jsonb, c_date, \
    c_time, c_time3, c_timetz, c_timestamp, c_timestamp3, c_timestamptz, c_interval, c_mood, \
    c_oid, c_price";

/// Smaller records: these tests read many of them.
const NO_SCHEMAS: [(&str, &str); 2] = [
    ("key.converter.schemas.enable", "false"),
    ("value.converter.schemas.enable", "false"),
];

fn op(record: &Record) -> String {
    match record.payload().get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => "tombstone".to_owned(),
    }
}

fn key_id(record: &Record) -> i64 {
    record.key_payload()["id"]
        .as_i64()
        .expect("records of these tables have an integer id key")
}

/// Reads records until one satisfies `done` (it included).
async fn collect_until(
    collector: &mut Collector,
    done: impl Fn(&Record) -> bool,
    within: Duration,
) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut records = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = collector
            .try_collect(1, left)
            .await
            .unwrap_or_else(|message| panic!("{message} (after {} records)", records.len()));
        let finished = done(&next[0]);
        records.extend(next);
        if finished {
            return records;
        }
    }
}

/// The newest `after` per key, deletes removing the key: what a compacted topic converges to.
fn state_per_key(records: &[Record]) -> BTreeMap<i64, Value> {
    let mut state = BTreeMap::new();
    for record in records {
        let id = key_id(record);
        match op(record).as_str() {
            "r" | "c" | "u" => {
                state.insert(id, record.payload()["after"].clone());
            }
            "d" | "tombstone" => {
                state.remove(&id);
            }
            other => panic!("unexpected op {other}"),
        }
    }
    state
}

/// `id -> {"id", "n", "note"}` of the counters table, as the records carry it.
async fn counters_in_table(client: &tokio_postgres::Client) -> BTreeMap<i64, Value> {
    client
        .query("SELECT id, n, note FROM counters", &[])
        .await
        .expect("counters")
        .iter()
        .map(|row| {
            let id: i32 = row.get(0);
            let n: i32 = row.get(1);
            let note: Option<String> = row.get(2);
            (i64::from(id), json!({"id": id, "n": n, "note": note}))
        })
        .collect()
}

/// `rows` counters whose notes need every COPY escape: tabs, newlines, backslashes, NULL.
async fn create_counters(client: &tokio_postgres::Client, rows: i32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, note text);
             INSERT INTO counters
             SELECT g, 0, CASE g % 4 WHEN 0 THEN E'tab\\there' WHEN 1 THEN E'line\\nbreak \\\\ back\\r'
                                     WHEN 2 THEN NULL ELSE 'plain ' || g END
               FROM generate_series(1, {rows}) g;
             ANALYZE counters;"
        ))
        .await
        .expect("counters");
}

/// Changes counters in small transactions until `stop`: increments (each by exactly one),
/// inserts of new ids and, with `deletes`, deletes. Returns how many transactions committed.
fn spawn_workload(
    fixture: &SourceFixture,
    rows: i32,
    deletes: bool,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let config = fixture.db_config();
    tokio::spawn(async move {
        let client = connect(&config).await;
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut random = move |below: i32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as i32 + 1
        };
        let mut committed = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let sql = match committed % 5 {
                0 | 1 => format!("UPDATE counters SET n = n + 1 WHERE id = {}", random(rows)),
                2 => format!(
                    "BEGIN; UPDATE counters SET n = n + 1 WHERE id = {};
                     UPDATE counters SET n = n + 1 WHERE id = {}; COMMIT;",
                    random(rows),
                    random(rows)
                ),
                3 => format!(
                    "INSERT INTO counters VALUES ({}, 0, E'new\\t{committed}') ON CONFLICT (id) DO NOTHING",
                    1_000_000 + committed
                ),
                _ if deletes => format!("DELETE FROM counters WHERE id = {}", random(rows)),
                _ => format!("UPDATE counters SET n = n + 1 WHERE id = {}", random(rows)),
            };
            client.batch_execute(&sql).await.expect("workload change");
            committed += 1;
        }
        committed
    })
}

/// Checks the history of every key: at most one `r`, first; after it each streamed change
/// fits (`c` of an absent key, `u` adding exactly one to `n`, `d` of a present key), so no
/// change committed after the consistent point is missing or repeated. Returns the
/// consistent point (the `r` records' `source.lsn`) and the number of streamed records.
fn assert_histories(records: &[Record]) -> (i64, usize) {
    let mut lsn = None;
    let mut streamed = 0;
    let mut seen: HashMap<i64, Option<i64>> = HashMap::new();
    let mut snapshot_over = false;
    for record in records {
        let id = key_id(record);
        let operation = op(record);
        if operation == "tombstone" {
            assert_eq!(
                seen.get(&id),
                Some(&None),
                "a tombstone of key {id} without delete"
            );
            continue;
        }
        let payload = record.payload();
        let source = &payload["source"];
        let n = payload["after"]["n"].as_i64();
        let state = seen.get(&id).copied();
        if operation == "r" {
            assert!(
                !snapshot_over,
                "key {id}: a snapshot record after streaming began"
            );
            assert_eq!(state, None, "key {id}: read twice");
            assert_ne!(source["snapshot"], "false");
            assert!(payload["before"].is_null());
            let point = source["lsn"].as_i64().expect("lsn");
            assert_eq!(*lsn.get_or_insert(point), point, "one consistent point");
            seen.insert(id, n);
            continue;
        }
        snapshot_over = true;
        streamed += 1;
        assert_eq!(source["snapshot"], "false", "{payload}");
        // A streamed change's own LSN may precede the consistent point: its transaction began
        // before the slot and committed after it. Whether it was streamed exactly when its
        // effect is missing from the snapshot is what the per-key history below checks.
        assert!(lsn.is_some(), "streaming starts after the snapshot");
        match operation.as_str() {
            "c" => {
                assert!(
                    matches!(state, None | Some(None)),
                    "key {id}: created twice"
                );
                seen.insert(id, n);
            }
            "u" => {
                let before = state
                    .flatten()
                    .unwrap_or_else(|| panic!("key {id}: update of a row never created"));
                assert_eq!(
                    n,
                    Some(before + 1),
                    "key {id}: an increment is missing or repeated"
                );
                seen.insert(id, n);
            }
            "d" => {
                assert!(
                    matches!(state, Some(Some(_))),
                    "key {id}: delete of an absent row"
                );
                seen.insert(id, None);
            }
            other => panic!("unexpected op {other}"),
        }
    }
    (lsn.expect("a snapshot was taken"), streamed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_and_concurrent_changes_hand_over_without_gap_or_overlap() {
    const ROWS: i32 = 50_000;
    let mut fixture = SourceFixture::new().await;
    let client = fixture.db.client();
    client.batch_execute(SCHEMA).await.expect("schema");
    client.batch_execute(FULL_ROW).await.expect("full row");
    client.batch_execute(EDGE_ROW).await.expect("edge row");
    client
        .batch_execute(&format!(
            "CREATE TABLE binary_types AS SELECT {BINARY_COLUMNS} FROM all_types;
             ALTER TABLE binary_types ADD PRIMARY KEY (id);"
        ))
        .await
        .expect("binary_types");
    create_counters(client, ROWS).await;

    let mut extra = vec![
        ("snapshot.mode", "initial"),
        ("snapshot.max.threads", "2"),
        ("snapshot.chunk.rows", "5000"),
        ("snapshot.fetch.size", "500"),
    ];
    extra.extend(NO_SCHEMAS);
    let config = fixture.config(
        "public.counters,public.all_types,public.binary_types",
        &extra,
    );
    let counters_topic = fixture.table_topic("counters");
    let types_topic = fixture.table_topic("all_types");
    let binary_topic = fixture.table_topic("binary_types");
    let mut counters = Collector::new(
        fixture.topic(&counters_topic).await,
        Isolation::ReadCommitted,
    );
    let mut types = Collector::new(fixture.topic(&types_topic).await, Isolation::ReadCommitted);
    let mut binary = Collector::new(fixture.topic(&binary_topic).await, Isolation::ReadCommitted);

    // Changes run before the slot exists, while the snapshot is read and after the handoff.
    let stop = Arc::new(AtomicBool::new(false));
    let workload = spawn_workload(&fixture, ROWS, true, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let progress = Arc::new(SnapshotProgress::default());
    let mut source =
        InProcessSource::start_with_progress(config, fixture.destination(), Arc::clone(&progress));
    source.wait_until_streaming(&fixture).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let transactions = workload.await.expect("workload");

    // Every type read by COPY is written as the stream writes it.
    let client = fixture.db.client();
    client
        .batch_execute(&FULL_ROW.replacen("(\n        1, true", "(\n        11, true", 1))
        .await
        .expect("full row again");
    client
        .batch_execute(&EDGE_ROW.replacen("VALUES (2,", "VALUES (12,", 1))
        .await
        .expect("edge row again");
    client
        .batch_execute(&format!(
            "INSERT INTO binary_types SELECT {BINARY_COLUMNS} FROM all_types WHERE id IN (11, 12)
              ORDER BY id"
        ))
        .await
        .expect("binary rows again");
    client
        .batch_execute("INSERT INTO counters VALUES (-1, 0, 'the end')")
        .await
        .expect("sentinel");

    let records = collect_until(&mut counters, |r| op(r) == "c" && key_id(r) == -1, WAIT).await;
    let (consistent_point, streamed) = assert_histories(&records);
    assert_eq!(
        state_per_key(&records),
        counters_in_table(client).await,
        "the newest record per key differs from the table"
    );
    assert!(
        streamed > 1,
        "no change of the {transactions} workload transactions was streamed"
    );
    let reads: Vec<&Record> = records.iter().filter(|r| op(r) == "r").collect();
    assert!(
        reads
            .iter()
            .any(|r| r.payload()["after"]["n"].as_i64() > Some(0)),
        "no change made before the consistent point is in the snapshot"
    );

    // Debezium's markers: one first_in_data_collection (or first) and one
    // last_in_data_collection (or last) per table, true in between.
    let markers: Vec<String> = reads
        .iter()
        .map(|r| {
            r.payload()["source"]["snapshot"]
                .as_str()
                .expect("marker")
                .to_owned()
        })
        .collect();
    assert!(
        matches!(markers[0].as_str(), "first" | "first_in_data_collection"),
        "{}",
        markers[0]
    );
    assert!(
        matches!(
            markers.last().expect("reads").as_str(),
            "last" | "last_in_data_collection"
        ),
        "{markers:?}"
    );
    assert!(
        markers[1..markers.len() - 1].iter().all(|m| m == "true"),
        "markers in between must be true"
    );

    let type_records = types.collect(4, WAIT).await;
    assert_eq!(
        type_records.iter().map(op).collect::<Vec<_>>(),
        ["r", "r", "c", "c"]
    );
    let binary_records = binary.collect(4, WAIT).await;
    assert_eq!(
        binary_records.iter().map(op).collect::<Vec<_>>(),
        ["r", "r", "c", "c"]
    );
    let table_markers: Vec<String> = type_records[..2]
        .iter()
        .chain(&binary_records[..2])
        .map(|r| {
            r.payload()["source"]["snapshot"]
                .as_str()
                .expect("marker")
                .to_owned()
        })
        .collect();
    let all_markers: Vec<&str> = markers
        .iter()
        .chain(&table_markers)
        .map(String::as_str)
        .collect();
    assert_eq!(
        all_markers.iter().filter(|m| **m == "first").count(),
        1,
        "exactly one first: {table_markers:?}"
    );
    assert_eq!(
        all_markers.iter().filter(|m| **m == "last").count(),
        1,
        "exactly one last: {table_markers:?}"
    );
    assert_eq!(
        type_records[0].payload()["source"]["lsn"],
        json!(consistent_point)
    );
    assert_eq!(type_records[0].payload()["after"], full_row_after());
    // The table of types read in binary: the same values as all_types' text, and as pgoutput's.
    let full = full_row_after();
    let expected_binary: serde_json::Map<String, Value> = BINARY_COLUMNS
        .split(", ")
        .map(|column| (column.to_owned(), full[column].clone()))
        .collect();
    assert_eq!(
        binary_records[0].payload()["after"],
        Value::Object(expected_binary)
    );
    for (read, created, id) in [
        (&type_records[0], &type_records[2], 11),
        (&type_records[1], &type_records[3], 12),
        (&binary_records[0], &binary_records[2], 11),
        (&binary_records[1], &binary_records[3], 12),
    ] {
        let mut expected = read.payload()["after"].clone();
        expected["id"] = json!(id);
        assert_eq!(
            created.payload()["after"],
            expected,
            "COPY and pgoutput differ"
        );
    }

    // The big table was split, and both threads' chunks were all read.
    let tables = progress.tables();
    let in_binary = |name: &str| {
        tables
            .iter()
            .find(|t| t.table.table == name)
            .unwrap_or_else(|| panic!("{name} progress"))
            .copied_in_binary
    };
    assert!(in_binary("counters") && in_binary("binary_types"));
    assert!(
        !in_binary("all_types"),
        "all_types has columns without a binary decoding"
    );
    let counters_progress = tables
        .iter()
        .find(|t| t.table.table == "counters")
        .expect("counters progress");
    assert!(counters_progress.chunks_total >= 5, "{counters_progress:?}");
    assert_eq!(
        counters_progress.chunks_done,
        counters_progress.chunks_total
    );
    assert_eq!(
        counters_progress.rows_done,
        reads.len() as u64,
        "{counters_progress:?}"
    );
    assert!(counters_progress.finished && progress.completed() && !progress.running());

    let stored = OffsetStore::new(&kafka::settings(), &fixture.offsets_topic)
        .load(&fixture.name, &fixture.prefix, Duration::from_secs(30))
        .await
        .expect("offsets")
        .expect("an offset");
    assert!(stored.snapshot_completed);
    assert!(stored.lsn >= consistent_point as u64);
    source.stop().await.expect("a clean stop");
}

/// A fixture with `items` rows 1..=3, its topic created, and a collector on it.
async fn items_fixture() -> (SourceFixture, Collector) {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');",
        )
        .await
        .expect("items");
    let topic = fixture.table_topic("items");
    let collector = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    (fixture, collector)
}

async fn start(fixture: &SourceFixture, mode: &str) -> InProcessSource {
    let config = fixture.config("public.items", &[("snapshot.mode", mode)]);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(fixture).await;
    source
}

fn summary(records: &[Record]) -> Vec<(String, i64)> {
    records.iter().map(|r| (op(r), key_id(r))).collect()
}

fn ops_ids(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected
        .iter()
        .map(|(o, i)| ((*o).to_owned(), *i))
        .collect()
}

async fn insert_item(fixture: &SourceFixture, id: i32) {
    fixture
        .db
        .client()
        .execute("INSERT INTO items VALUES ($1, 'new')", &[&id])
        .await
        .expect("insert");
}

async fn drop_slot(fixture: &SourceFixture) {
    fixture
        .db
        .client()
        .execute("SELECT pg_drop_replication_slot($1)", &[&fixture.slot])
        .await
        .expect("drop slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_snapshots_once_and_then_resumes_streaming() {
    let (fixture, mut items) = items_fixture().await;
    let source = start(&fixture, "initial").await;
    let first = items.collect(3, WAIT).await;
    assert_eq!(summary(&first), ops_ids(&[("r", 1), ("r", 2), ("r", 3)]));
    let markers: Vec<Value> = first
        .iter()
        .map(|r| r.payload()["source"]["snapshot"].clone())
        .collect();
    assert_eq!(markers, [json!("first"), json!("true"), json!("last")]);
    insert_item(&fixture, 4).await;
    assert_eq!(summary(&items.collect(1, WAIT).await), ops_ids(&[("c", 4)]));
    source.stop().await.expect("clean stop");

    // Restart with the stored offset: no second snapshot; the change made meanwhile streams.
    insert_item(&fixture, 5).await;
    let source = start(&fixture, "initial").await;
    insert_item(&fixture, 6).await;
    assert_eq!(
        summary(&items.collect(2, WAIT).await),
        ops_ids(&[("c", 5), ("c", 6)])
    );
    items.expect_no_more(Duration::from_secs(1)).await;
    source.stop().await.expect("clean stop");

    // The slot gone after a completed snapshot: initial refuses (changes may be lost).
    drop_slot(&fixture).await;
    let config = fixture.config("public.items", &[("snapshot.mode", "initial")]);
    let ended = InProcessSource::start(config, fixture.destination())
        .ended(WAIT)
        .await;
    assert!(matches!(ended, Err(Error::SlotMissing { .. })), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_snapshots_on_every_start() {
    let (fixture, mut items) = items_fixture().await;
    let source = start(&fixture, "always").await;
    assert_eq!(
        summary(&items.collect(3, WAIT).await),
        ops_ids(&[("r", 1), ("r", 2), ("r", 3)])
    );
    source.stop().await.expect("clean stop");
    // Made while stopped: inserts and updates are part of the next snapshot, not streamed as
    // well; deletes (and the old key of a key change) are in no snapshot, so they come first
    // from the kept slot.
    insert_item(&fixture, 4).await;
    fixture
        .db
        .client()
        .batch_execute(
            "DELETE FROM items WHERE id = 2;
             UPDATE items SET id = 30 WHERE id = 3;
             UPDATE items SET name = 'changed' WHERE id = 1;",
        )
        .await
        .expect("changes while stopped");
    let source = start(&fixture, "always").await;
    let again = items.collect(7, WAIT).await;
    assert_eq!(
        summary(&again[..4]),
        ops_ids(&[("d", 2), ("tombstone", 2), ("d", 3), ("tombstone", 3)])
    );
    let mut read = summary(&again[4..]);
    read.sort();
    assert_eq!(read, ops_ids(&[("r", 1), ("r", 4), ("r", 30)]));
    assert_eq!(again[4].payload()["source"]["snapshot"], "first");
    insert_item(&fixture, 5).await;
    assert_eq!(summary(&items.collect(1, WAIT).await), ops_ids(&[("c", 5)]));
    items.expect_no_more(Duration::from_secs(1)).await;
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_and_never_stream_only_new_changes() {
    let (fixture, mut items) = items_fixture().await;
    let source = start(&fixture, "never").await;
    insert_item(&fixture, 4).await;
    assert_eq!(summary(&items.collect(1, WAIT).await), ops_ids(&[("c", 4)]));
    source.stop().await.expect("clean stop");
    let source = start(&fixture, "no_data").await;
    insert_item(&fixture, 5).await;
    assert_eq!(summary(&items.collect(1, WAIT).await), ops_ids(&[("c", 5)]));
    items.expect_no_more(Duration::from_secs(1)).await;
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_only_snapshots_and_stops_leaving_no_slot() {
    let (fixture, mut items) = items_fixture().await;
    let config = fixture.config("public.items", &[("snapshot.mode", "initial_only")]);
    InProcessSource::start(config.clone(), fixture.destination())
        .ended(WAIT)
        .await
        .expect("stops cleanly after the snapshot");
    assert_eq!(
        summary(&items.collect(3, WAIT).await),
        ops_ids(&[("r", 1), ("r", 2), ("r", 3)])
    );
    // The temporary slot goes when its walsender has ended, which the server does on its own
    // time after the connection closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let slots = fixture
            .db
            .client()
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&fixture.slot],
            )
            .await
            .expect("slots");
        if slots.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "initial_only left its slot behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Again: the snapshot is complete, so nothing happens.
    insert_item(&fixture, 4).await;
    InProcessSource::start(config, fixture.destination())
        .ended(WAIT)
        .await
        .expect("stops cleanly");
    items.expect_no_more(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_needed_snapshots_again_when_the_slot_is_gone() {
    let (fixture, mut items) = items_fixture().await;
    let source = start(&fixture, "when_needed").await;
    assert_eq!(
        summary(&items.collect(3, WAIT).await),
        ops_ids(&[("r", 1), ("r", 2), ("r", 3)])
    );
    source.stop().await.expect("clean stop");

    // Offsets and slot fine: streaming resumes, no snapshot.
    insert_item(&fixture, 4).await;
    let source = start(&fixture, "when_needed").await;
    assert_eq!(summary(&items.collect(1, WAIT).await), ops_ids(&[("c", 4)]));
    source.stop().await.expect("clean stop");

    // The slot is gone: a new snapshot instead of an error.
    drop_slot(&fixture).await;
    insert_item(&fixture, 5).await;
    let source = start(&fixture, "when_needed").await;
    assert_eq!(
        summary(&items.collect(5, WAIT).await),
        ops_ids(&[("r", 1), ("r", 2), ("r", 3), ("r", 4), ("r", 5)])
    );
    insert_item(&fixture, 6).await;
    assert_eq!(summary(&items.collect(1, WAIT).await), ops_ids(&[("c", 6)]));
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_list_and_select_override_shape_the_snapshot() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY);
             INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 10) g;
             INSERT INTO b VALUES (1), (2);",
        )
        .await
        .expect("tables");
    let config = fixture.config(
        "public.a,public.b",
        &[
            ("snapshot.mode", "initial"),
            ("snapshot.include.collection.list", "public\\.a"),
            ("snapshot.select.statement.overrides", "public.a"),
            (
                "snapshot.select.statement.overrides.public.a",
                "SELECT id, v FROM public.a WHERE id > 7 ORDER BY id DESC",
            ),
        ],
    );
    let topic_a = fixture.table_topic("a");
    let topic_b = fixture.table_topic("b");
    let mut a = Collector::new(fixture.topic(&topic_a).await, Isolation::ReadCommitted);
    let mut b = Collector::new(fixture.topic(&topic_b).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(&fixture).await;
    assert_eq!(
        summary(&a.collect(3, WAIT).await),
        ops_ids(&[("r", 10), ("r", 9), ("r", 8)])
    );
    // b is captured but not snapshotted: only its new changes arrive.
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO b VALUES (3)")
        .await
        .expect("insert");
    assert_eq!(summary(&b.collect(1, WAIT).await), ops_ids(&[("c", 3)]));
    source.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_killed_midway_is_taken_again_and_the_state_matches_the_table() {
    const ROWS: i32 = 200_000;
    let mut fixture = SourceFixture::new().await;
    create_counters(fixture.db.client(), ROWS).await;
    let mut extra = vec![
        ("snapshot.mode", "initial"),
        ("snapshot.max.threads", "2"),
        ("snapshot.chunk.rows", "20000"),
        ("snapshot.fetch.size", "1000"),
    ];
    extra.extend(NO_SCHEMAS);
    let topic = fixture.table_topic("counters");
    let mut counters = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);

    // The first run reads through a SELECT paced by pg_sleep (5 ms every 500 rows, ~2 s in
    // all): it is still copying when its first transaction (after 1 s) is committed and it is
    // killed, however fast the machine (unpaced, 200k rows took 0.4 s). The second run copies
    // in chunks.
    let mut paced = extra.clone();
    paced.extend([
        ("snapshot.select.statement.overrides", "public.counters"),
        (
            "snapshot.select.statement.overrides.public.counters",
            "SELECT id, n, note FROM public.counters WHERE id % 500 <> 0 OR pg_sleep(0.005) IS NOT NULL",
        ),
    ]);
    let mut process =
        ProcessSource::start(&fixture, &fixture.connector_json("public.counters", &paced));
    // The first snapshot transaction is committed: kill -9 in the middle.
    counters.collect(1, WAIT).await;
    process.kill_9().await;
    let offsets = OffsetStore::new(&kafka::settings(), &fixture.offsets_topic);
    let stored = offsets
        .load(&fixture.name, &fixture.prefix, Duration::from_secs(30))
        .await
        .expect("offsets")
        .expect("the first transaction stored an offset");
    assert!(
        !stored.snapshot_completed,
        "the snapshot finished before the kill; the test needs a bigger table\n{}",
        process.log()
    );

    // Changes while it is down and while the new snapshot runs, deletes included: a row the
    // partial snapshot delivered and that is deleted before the next snapshot's point gets its
    // delete from the kept slot before the new snapshot.
    let stop = Arc::new(AtomicBool::new(false));
    let workload = spawn_workload(&fixture, ROWS, true, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let config = fixture.config("public.counters", &extra);
    let progress = Arc::new(SnapshotProgress::default());
    let mut source =
        InProcessSource::start_with_progress(config, fixture.destination(), Arc::clone(&progress));
    source.wait_until_streaming(&fixture).await;
    stop.store(true, Ordering::Relaxed);
    workload.await.expect("workload");
    // Streaming: every kind of change, deletes included.
    let stop = Arc::new(AtomicBool::new(false));
    let workload = spawn_workload(&fixture, ROWS, true, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    workload.await.expect("workload");
    let client = fixture.db.client();
    client
        .batch_execute("INSERT INTO counters VALUES (-1, 0, 'the end')")
        .await
        .expect("sentinel");

    let records = collect_until(&mut counters, |r| op(r) == "c" && key_id(r) == -1, WAIT).await;
    assert_eq!(
        state_per_key(&records),
        counters_in_table(client).await,
        "the newest record per key differs from the table"
    );
    // The second snapshot is whole: from its `first` to its `last`, each row once.
    let second = &progress.tables()[0];
    assert!(second.finished, "{second:?}");
    let start = records
        .iter()
        .rposition(|r| r.payload()["source"]["snapshot"] == "first")
        .expect("the second snapshot's first record");
    let end = records
        .iter()
        .rposition(|r| r.payload()["source"]["snapshot"] == "last")
        .expect("the second snapshot's last record");
    let ids: std::collections::BTreeSet<i64> = records[start..=end].iter().map(key_id).collect();
    assert_eq!(
        end - start + 1,
        ids.len(),
        "a row read twice in one snapshot"
    );
    assert_eq!(ids.len() as u64, second.rows_done);
    let stored = offsets
        .load(&fixture.name, &fixture.prefix, Duration::from_secs(30))
        .await
        .expect("offsets")
        .expect("an offset");
    assert!(stored.snapshot_completed);
    source.stop().await.expect("clean stop");
}

/// Counts snapshot rows per second of a table as big as the run allows; not a gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_progress_counts_every_row_of_a_split_table() {
    const ROWS: i32 = 100_000;
    let mut fixture = SourceFixture::new().await;
    create_counters(fixture.db.client(), ROWS).await;
    let mut extra = vec![
        ("snapshot.mode", "initial_only"),
        ("snapshot.max.threads", "2"),
        ("snapshot.chunk.rows", "10000"),
    ];
    extra.extend(NO_SCHEMAS);
    let config = fixture.config("public.counters", &extra);
    let topic = fixture.table_topic("counters");
    let mut counters = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let progress = Arc::new(SnapshotProgress::default());
    let started = Instant::now();
    InProcessSource::start_with_progress(config, fixture.destination(), Arc::clone(&progress))
        .ended(WAIT)
        .await
        .expect("initial_only ends cleanly");
    let took = started.elapsed();
    let records = counters.collect(ROWS as usize, WAIT).await;
    let ids: std::collections::BTreeSet<i64> = records.iter().map(key_id).collect();
    assert_eq!(ids.len(), ROWS as usize, "every row exactly once");
    let view = &progress.tables()[0];
    assert!(view.chunks_total >= 8, "{view:?}");
    assert_eq!(
        (view.chunks_done, view.rows_done),
        (view.chunks_total, ROWS as u64)
    );
    let estimated = view.estimated_rows.expect("ANALYZE gave an estimate");
    assert!(
        estimated.abs_diff(ROWS as u64) < ROWS as u64 / 10,
        "{view:?}"
    );
    eprintln!(
        "snapshot of {ROWS} rows in {} chunks on 2 threads: {took:?} ({:.0} rows/s)",
        view.chunks_total,
        f64::from(ROWS) / took.as_secs_f64()
    );
}
