//! `sink`: the PostgreSQL sink applying change records from a topic, in upsert mode, as a
//! ratio of one COPY of the same rows into an unlogged table (the ceiling), in the same run.
//!
//! 1. Writes `--rows` Debezium JSON change records (with schemas, as the JsonConverter writes
//!    them; distinct keys, so every one becomes a row) of the Sequin table shape
//!    `(id bigint, s text, n numeric(12,2), ts timestamptz, j jsonb, updated_at timestamp)` to a
//!    fresh topic.
//! 2. Runs the sink in this process into a fresh database until the stored offset reaches the
//!    end of the topic; reports rows/s and the process's peak RSS during the drain (VmHWM, reset
//!    before the drain through `/proc/self/clear_refs`).
//! 3. COPYs the same rows (text format) into an unlogged table of the same shape.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use futures_util::SinkExt;
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary::{
    config::ConnectorConfig,
    kafka::{ClientSettings, TopicAdmin, TopicSpec},
    sink::postgres::{self, PostgresSinkConfig},
};

use crate::{
    measure::{Report, mib},
    workload::Postgres,
};

const DATABASE: &str = "tributary_bench_sink";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Change records (distinct keys).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// The sink's batch.size.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
}

fn value_schema() -> serde_json::Value {
    let row = json!([
        {"type": "int64", "optional": false, "field": "id"},
        {"type": "string", "optional": true, "field": "s"},
        {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": "2", "connect.decimal.precision": "12"}, "field": "n"},
        {"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "ts"},
        {"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1, "field": "j"},
        {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "updated_at"}
    ]);
    json!({"type": "struct", "fields": [
        {"type": "struct", "fields": row, "optional": true, "name": "bench.public.bench.Value", "field": "before"},
        {"type": "struct", "fields": row, "optional": true, "name": "bench.public.bench.Value", "field": "after"},
        {"type": "struct", "fields": [
            {"type": "string", "optional": false, "field": "schema"},
            {"type": "string", "optional": false, "field": "table"}
         ], "optional": false, "field": "source"},
        {"type": "string", "optional": false, "field": "op"}
    ], "optional": false, "name": "bench.public.bench.Envelope"})
}

/// The two's-complement big-endian bytes of `unscaled` (Connect's Decimal).
pub fn decimal_bytes(unscaled: i64) -> Vec<u8> {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    bytes[start..].to_vec()
}

/// Row `i` as (key, value) records and as a COPY text line.
fn row(i: u64, schema: &str) -> (String, String, String) {
    let s = format!("{i:0>100}");
    let unscaled = (i % 1_000_000) as i64 * 125;
    let micros = 1_700_000_000_000_000i64 + i as i64;
    let ts = "2024-02-29T12:45:01.000001Z";
    let j = format!("{{\"k\": {i}}}");
    let key = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}}],"optional":false,"name":"bench.public.bench.Key"}},"payload":{{"id":{i}}}}}"#
    );
    let after = json!({"id": i, "s": s, "n": STANDARD.encode(decimal_bytes(unscaled)),
                       "ts": ts, "j": j, "updated_at": micros});
    let value = format!(
        r#"{{"schema":{schema},"payload":{{"before":null,"after":{after},"source":{{"schema":"public","table":"bench"}},"op":"c"}}}}"#
    );
    let updated = chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default();
    let line = format!(
        "{i}\t{s}\t{}.{:02}\t{ts}\t{j}\t{updated}\n",
        unscaled / 100,
        unscaled % 100
    );
    (key, value, line)
}

pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let postgres = Postgres::from_env()?;
    let settings = ClientSettings::new(&args.bootstrap_servers);
    let topic = format!(
        "tributary-bench-sink-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let admin = TopicAdmin::new(&settings, Duration::from_secs(30))?;
    admin.ensure_topic(&TopicSpec::new(&topic, 1)).await?;

    println!("writing {} change records to {topic}", args.rows);
    let schema = value_schema().to_string();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("a producer")?;
    let mut copy_text = Vec::new();
    let mut pending = Vec::new();
    for i in 1..=args.rows {
        let (key, value, line) = row(i, &schema);
        copy_text.extend_from_slice(line.as_bytes());
        let delivery = producer
            .send_result(FutureRecord::to(&topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .context("queueing a record")?;
        pending.push(delivery);
        if pending.len() >= 50_000 {
            for delivery in pending.drain(..) {
                delivery
                    .await
                    .context("delivery")?
                    .map_err(|(e, _)| e)
                    .context("delivery")?;
            }
        }
    }
    for delivery in pending.drain(..) {
        delivery
            .await
            .context("delivery")?
            .map_err(|(e, _)| e)
            .context("delivery")?;
    }

    let admin_db = postgres.connect("postgres").await?;
    admin_db
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    admin_db
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let target = postgres.connect(DATABASE).await?;
    let connector = ConnectorConfig::from_json(
        &json!({"name": "bench-sink", "config": {
            "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
            "topics": topic,
            "connection.url": format!("jdbc:postgresql://{}:{}/{DATABASE}", postgres.host, postgres.port),
            "connection.username": "postgres",
            "insert.mode": "upsert",
            "schema.evolution": "basic",
            "collection.name.format": "bench",
            "batch.size": args.batch_size.to_string(),
        }})
        .to_string(),
    )?;
    let config = PostgresSinkConfig::from_connector(&connector)?;

    // Peak RSS of the drain alone, not of writing the records.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    println!("draining with the sink (batch.size {})", args.batch_size);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let sink = {
        let shutdown = shutdown.clone();
        let settings = settings.clone();
        tokio::spawn(async move { postgres::run(config, &settings, shutdown).await })
    };
    let end = i64::try_from(args.rows)?;
    loop {
        if sink.is_finished() {
            anyhow::bail!("the sink stopped: {:?}", sink.await);
        }
        let next: Option<i64> = target
            .query_opt(
                "SELECT next_offset FROM tributary_offsets WHERE connector = 'bench-sink'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if next.is_some_and(|n| n >= end) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sink_seconds = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes().unwrap_or(0);
    shutdown.cancel();
    sink.await?.context("the sink")?;
    let written: i64 = target
        .query_one("SELECT count(*) FROM bench", &[])
        .await?
        .get(0);
    anyhow::ensure!(written == end, "the sink wrote {written} rows, not {end}");

    println!("COPY of the same rows into an unlogged table");
    target
        .batch_execute(
            "CREATE UNLOGGED TABLE bench_copy (id bigint PRIMARY KEY, s text, n numeric(12,2),
                 ts timestamptz, j jsonb, updated_at timestamp(6))",
        )
        .await?;
    let started = Instant::now();
    let sink_in = target
        .copy_in::<_, bytes::Bytes>("COPY bench_copy FROM STDIN")
        .await?;
    let mut sink_in = std::pin::pin!(sink_in);
    for chunk in copy_text.chunks(1 << 20) {
        sink_in.send(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    let copied = sink_in.as_mut().finish().await?;
    let copy_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(copied == args.rows, "COPY wrote {copied} rows");
    TopicAdmin::new(&settings, Duration::from_secs(30))?
        .delete_topic(&topic)
        .await
        .ok();

    let sink_rate = args.rows as f64 / sink_seconds;
    let copy_rate = args.rows as f64 / copy_seconds;
    println!(
        "sink: {:.0} rows/s ({sink_seconds:.2} s), peak RSS {:.1} MiB\nCOPY: {copy_rate:.0} rows/s ({copy_seconds:.2} s)\nratio: {:.2}",
        sink_rate,
        mib(peak_rss),
        sink_rate / copy_rate
    );
    Ok(Report {
        workload: "sink",
        body: json!({
            "rows": args.rows,
            "batch_size": args.batch_size,
            "sink_seconds": sink_seconds,
            "sink_rows_per_second": sink_rate,
            "sink_peak_rss_mib": mib(peak_rss),
            "copy_seconds": copy_seconds,
            "copy_rows_per_second": copy_rate,
            "ratio_to_copy": sink_rate / copy_rate,
        }),
    })
}
