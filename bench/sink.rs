//! `sink`: the PostgreSQL sink applying change records from a topic, in upsert mode, as a
//! ratio of one COPY of the same rows into an unlogged table (the ceiling), in the same run.
//!
//! 1. Writes `--rows` Debezium JSON change records (with schemas, as the JsonConverter writes
//!    them; distinct keys, so every one becomes a row; creates, or updates with `--op u`) of the Sequin table shape
//!    `(id bigint, s text, n numeric(12,2), ts timestamptz, j jsonb, updated_at timestamp)` to a
//!    fresh topic.
//! 2. Runs the sink in this process into a fresh database until the stored offset reaches the
//!    end of the topic; reports rows/s and the process's peak RSS during the drain (VmHWM, reset
//!    before the drain through `/proc/self/clear_refs`).
//! 3. COPYs the same rows (binary format, `BinaryCopyInWriter`) into an unlogged table of the
//!    same shape: the ceiling. Then checks, untimed, that both tables hold the same rows.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::BufMut;
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use tokio_postgres::{
    binary_copy::BinaryCopyInWriter,
    types::{IsNull, ToSql, Type, to_sql_checked},
};
use tokio_util::sync::CancellationToken;
use tributary::{
    config::ConnectorConfig,
    kafka::{ClientSettings, TopicAdmin, TopicSpec},
    sink::postgres::{self, PostgresSinkConfig},
};

use crate::{
    measure::{Report, clock_ticks_per_second, machine_busy_seconds, mib, read_usage},
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
    /// The records' `op`: `c` (creates: the sink INSERTs them) or `u` (updates of rows the
    /// target does not have yet: every one goes through INSERT … ON CONFLICT DO UPDATE).
    #[arg(long, default_value = "c", value_parser = ["c", "u"])]
    op: String,
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

/// The columns of row `i`: (s, unscaled n at scale 2, ts, j, updated_at in µs since 1970).
fn columns(i: u64) -> (String, i64, &'static str, String, i64) {
    let s = format!("{i:0>100}");
    let unscaled = (i % 1_000_000) as i64 * 125;
    let micros = 1_700_000_000_000_000i64 + i as i64;
    let ts = "2024-02-29T12:45:01.000001Z";
    let j = format!("{{\"k\": {i}}}");
    (s, unscaled, ts, j, micros)
}

/// Row `i` as (key, value) records.
fn row(i: u64, schema: &str, op: &str) -> (String, String) {
    let (s, unscaled, ts, j, micros) = columns(i);
    let key = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}}],"optional":false,"name":"bench.public.bench.Key"}},"payload":{{"id":{i}}}}}"#
    );
    let after = json!({"id": i, "s": s, "n": STANDARD.encode(decimal_bytes(unscaled)),
                       "ts": ts, "j": j, "updated_at": micros});
    let value = format!(
        r#"{{"schema":{schema},"payload":{{"before":null,"after":{after},"source":{{"schema":"public","table":"bench"}},"op":"{op}"}}}}"#
    );
    (key, value)
}

/// A value already in PostgreSQL's binary format, for `BinaryCopyInWriter`.
#[derive(Debug)]
struct Binary(Vec<u8>);

impl ToSql for Binary {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `numeric` in binary: base-10000 digits, most significant first, of `unscaled` / 10^2.
fn numeric_scale_2(unscaled: i64) -> Binary {
    let magnitude = unscaled.unsigned_abs();
    let (mut whole, fraction) = (magnitude / 100, magnitude % 100);
    let mut digits = Vec::new();
    while whole > 0 {
        digits.insert(0, (whole % 10_000) as i16);
        whole /= 10_000;
    }
    let weight = digits.len() as i16 - 1;
    // Two decimals are the first base-10000 digit after the point.
    digits.push((fraction * 100) as i16);
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let weight = if digits.is_empty() { 0 } else { weight };
    let sign: u16 = if unscaled < 0 { 0x4000 } else { 0 };
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_i16(2);
    for digit in digits {
        out.put_i16(digit);
    }
    Binary(out)
}

/// `timestamp` and `timestamptz` in binary: microseconds from PostgreSQL's epoch (2000-01-01).
fn pg_micros(unix_micros: i64) -> Binary {
    Binary((unix_micros - 946_684_800_000_000).to_be_bytes().to_vec())
}

/// Row `i` as the binary COPY fields of `bench_copy`.
fn binary_row(i: u64) -> (i64, String, Binary, Binary, Binary, Binary) {
    let (s, unscaled, ts, j, micros) = columns(i);
    let ts = chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.timestamp_micros())
        .unwrap_or_default();
    let mut jsonb = vec![1];
    jsonb.extend_from_slice(j.as_bytes());
    (
        i as i64,
        s,
        numeric_scale_2(unscaled),
        pg_micros(ts),
        Binary(jsonb),
        pg_micros(micros),
    )
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

    println!(
        "writing {} change records (op {}) to {topic}",
        args.rows, args.op
    );
    let schema = value_schema().to_string();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("a producer")?;
    let mut pending = Vec::new();
    for i in 1..=args.rows {
        let (key, value) = row(i, &schema, &args.op);
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

    drop(producer);

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
    let start_rss = peak_rss_bytes().unwrap_or(0);
    let ticks = clock_ticks_per_second();
    let cpu_before = read_usage(std::process::id(), ticks).map_or(0.0, |u| u.cpu_seconds);
    let busy_before = machine_busy_seconds(ticks).unwrap_or(0.0);
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
    let sink_cpu =
        read_usage(std::process::id(), ticks).map_or(0.0, |u| u.cpu_seconds) - cpu_before;
    let machine_busy = machine_busy_seconds(ticks).unwrap_or(0.0) - busy_before;
    // The sink's connections were opened for this drain: their CPU time is the drain's.
    let backend_pids: Vec<i32> = target
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'tributary sink bench-sink%'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let backend_cpu: f64 = backend_pids
        .iter()
        .filter_map(|pid| read_usage(u32::try_from(*pid).ok()?, ticks))
        .map(|u| u.cpu_seconds)
        .sum();
    shutdown.cancel();
    sink.await?.context("the sink")?;
    let written: i64 = target
        .query_one("SELECT count(*) FROM bench", &[])
        .await?
        .get(0);
    anyhow::ensure!(written == end, "the sink wrote {written} rows, not {end}");

    println!("binary COPY of the same rows into an unlogged table");
    target
        .batch_execute(
            "CREATE UNLOGGED TABLE bench_copy (id bigint PRIMARY KEY, s text, n numeric(12,2),
                 ts timestamptz, j jsonb, updated_at timestamp(6))",
        )
        .await?;
    // Rows are encoded before the clock starts: the ceiling is PostgreSQL's side.
    let rows: Vec<_> = (1..=args.rows).map(binary_row).collect();
    let started = Instant::now();
    let sink_in = target
        .copy_in("COPY bench_copy FROM STDIN (FORMAT binary)")
        .await?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::NUMERIC,
        Type::TIMESTAMPTZ,
        Type::JSONB,
        Type::TIMESTAMP,
    ];
    let writer = BinaryCopyInWriter::new(sink_in, &types);
    let mut writer = std::pin::pin!(writer);
    for (id, s, n, ts, j, updated_at) in &rows {
        writer
            .as_mut()
            .write(&[id, s, n, ts, j, updated_at])
            .await?;
    }
    let copied = writer.as_mut().finish().await?;
    let copy_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(copied == args.rows, "COPY wrote {copied} rows");
    drop(rows);
    let same: i64 = target
        .query_one(
            "SELECT count(*) FROM bench b JOIN bench_copy c USING (id)
              WHERE (b.s, b.n, b.ts, b.j, b.updated_at) IS NOT DISTINCT FROM
                    (c.s, c.n, c.ts, c.j, c.updated_at)",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        same == end,
        "the sink's table and the COPY agree on {same} rows of {end}"
    );
    TopicAdmin::new(&settings, Duration::from_secs(30))?
        .delete_topic(&topic)
        .await
        .ok();

    let sink_rate = args.rows as f64 / sink_seconds;
    let copy_rate = args.rows as f64 / copy_seconds;
    println!(
        "sink: {:.0} rows/s ({sink_seconds:.2} s), peak RSS {:.1} MiB (process RSS {:.1} MiB when the drain began); \
         {sink_cpu:.2} CPU-s in this process, {backend_cpu:.2} in its PostgreSQL backends, machine busy {:.2} of {} cores\nbinary COPY: {copy_rate:.0} rows/s ({copy_seconds:.2} s)\nratio: {:.2}",
        sink_rate,
        mib(peak_rss),
        mib(start_rss),
        machine_busy / sink_seconds,
        std::thread::available_parallelism().map_or(0, usize::from),
        sink_rate / copy_rate
    );
    Ok(Report {
        workload: "sink",
        body: json!({
            "rows": args.rows,
            "op": args.op,
            "batch_size": args.batch_size,
            "sink_seconds": sink_seconds,
            "sink_rows_per_second": sink_rate,
            "sink_peak_rss_mib": mib(peak_rss),
            "rss_at_drain_start_mib": mib(start_rss),
            "sink_cpu_seconds": sink_cpu,
            "backend_cpu_seconds": backend_cpu,
            "machine_busy_cores": machine_busy / sink_seconds,
            "copy_format": "binary",
            "copy_seconds": copy_seconds,
            "copy_rows_per_second": copy_rate,
            "ratio_to_copy": sink_rate / copy_rate,
        }),
    })
}
