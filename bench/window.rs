//! `window`: the window stage aggregating Debezium JSON change events from a topic into a
//! PostgreSQL result table (tumbling 1-minute windows, 10k groups, sum/count/max), in this
//! process; events/s and peak RSS, and a check that the result equals one SQL `GROUP BY`.
//!
//! 1. Generates `--events` change events of an `orders(id, customer_id, amount, created_at)`
//!    table as the JsonConverter writes them (with schemas; REPLICA IDENTITY DEFAULT, so updates
//!    carry no `before` and deletes a key-only one): mostly inserts, some updates (of the
//!    amount, the customer and the event time) and deletes of recent rows, `--groups`
//!    customers, event times spread over an hour with a few seconds of disorder. Writes them to
//!    a fresh one-partition topic, and the rows that survive into a source table.
//! 2. Runs `tributary::window::run` until its stored offset reaches the end of the topic;
//!    reports events/s, its CPU and the CPU of its PostgreSQL backend, and the process's peak
//!    RSS during the drain (VmHWM, reset before the drain through `/proc/self/clear_refs`).
//! 3. Compares the result table with the same aggregation computed by one `GROUP BY` over the
//!    source table: any difference fails the run.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

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
    window::{self, WindowAggregateConfig},
};

use crate::{
    measure::{Report, Sampler, clock_ticks_per_second, machine_busy_seconds, mib, read_usage},
    sink::{decimal_bytes, peak_rss_bytes},
    workload::Postgres,
};

const DATABASE: &str = "tributary_bench_window";
const CONNECTOR: &str = "bench-window";
const RESULT_TABLE: &str = "revenue_per_minute";
const AGGREGATES: &str = "revenue=sum(amount),orders=count(*),max_amount=max(amount)";
/// 2024-03-01T00:00:00Z in microseconds: where event time starts.
const START_MICROS: i64 = 1_709_251_200_000_000;
/// Event times are up to this much behind the stream's clock (below the watermark's
/// out-of-orderness, so that nothing is late).
const DISORDER_MICROS: u64 = 5_000_000;
/// Updates and deletes touch rows inserted at most this long ago in event time (below the
/// allowed lateness, so that their windows are still open).
const RECENT_MICROS: i64 = 30_000_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Change events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct customer_id values (groups).
    #[arg(long, default_value_t = 10_000)]
    groups: u64,
    /// Event time the events span, in seconds (one window per minute).
    #[arg(long, default_value_t = 3600)]
    span_seconds: u64,
    /// The stage's commit.interval.ms.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// A librdkafka property for the stage's clients, `key=value` (repeatable), as the
    /// worker's `[kafka]` overrides would set it.
    #[arg(long = "kafka-property", value_parser = key_value)]
    kafka_properties: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// splitmix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// A live source row.
#[derive(Debug, Clone, Copy)]
struct Order {
    customer_id: u64,
    /// `None`: NULL amount.
    cents: Option<i64>,
    created_us: i64,
}

fn row_schema() -> serde_json::Value {
    json!([
        {"type": "int64", "optional": false, "field": "id"},
        {"type": "int32", "optional": true, "field": "customer_id"},
        {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"},
        {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "created_at"}
    ])
}

fn value_schema() -> serde_json::Value {
    json!({"type": "struct", "fields": [
        {"type": "struct", "fields": row_schema(), "optional": true, "name": "shop.public.orders.Value", "field": "before"},
        {"type": "struct", "fields": row_schema(), "optional": true, "name": "shop.public.orders.Value", "field": "after"},
        {"type": "struct", "fields": [
            {"type": "string", "optional": false, "field": "version"},
            {"type": "string", "optional": false, "field": "connector"},
            {"type": "string", "optional": false, "field": "name"},
            {"type": "int64", "optional": false, "field": "ts_ms"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental"}, "default": "false", "field": "snapshot"},
            {"type": "string", "optional": false, "field": "db"},
            {"type": "string", "optional": true, "field": "sequence"},
            {"type": "string", "optional": false, "field": "schema"},
            {"type": "string", "optional": false, "field": "table"},
            {"type": "int64", "optional": true, "field": "txId"},
            {"type": "int64", "optional": true, "field": "lsn"}
         ], "optional": false, "name": "io.debezium.connector.postgresql.Source", "field": "source"},
        {"type": "string", "optional": false, "field": "op"},
        {"type": "int64", "optional": true, "field": "ts_ms"}
    ], "optional": false, "name": "shop.public.orders.Envelope", "version": 1})
}

fn image(id: u64, order: &Order) -> serde_json::Value {
    json!({
        "id": id,
        "customer_id": order.customer_id,
        "amount": order.cents.map(|c| STANDARD.encode(decimal_bytes(c))),
        "created_at": order.created_us,
    })
}

/// One change event as (key, value) Connect JSON records.
fn record(
    schema: &str,
    op: &str,
    id: u64,
    before: serde_json::Value,
    after: serde_json::Value,
    lsn: u64,
) -> (String, String) {
    let key = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}}],"optional":false,"name":"shop.public.orders.Key"}},"payload":{{"id":{id}}}}}"#
    );
    let ts_ms = 1_709_251_200_000 + lsn / 1000;
    let source = json!({
        "version": "2.7.0.Final", "connector": "postgresql", "name": "shop", "ts_ms": ts_ms,
        "snapshot": "false", "db": "shop", "sequence": format!("[\"{}\",\"{lsn}\"]", lsn - 50),
        "schema": "public", "table": "orders", "txId": lsn / 100, "lsn": lsn,
    });
    let payload =
        json!({"before": before, "after": after, "source": source, "op": op, "ts_ms": ts_ms});
    (key, format!(r#"{{"schema":{schema},"payload":{payload}}}"#))
}

/// Generates the change events one by one, keeping the rows that survive.
struct Generator {
    schema: String,
    rng: Rng,
    groups: u64,
    span: i64,
    events: i64,
    event: i64,
    next_id: u64,
    live: HashMap<u64, Order>,
    /// Inserted ids in order with their event times, to pick recent rows from.
    inserted: Vec<(u64, i64)>,
    /// Inserts, updates, deletes.
    counts: [u64; 3],
}

impl Generator {
    fn new(args: &Args) -> anyhow::Result<Self> {
        Ok(Self {
            schema: value_schema().to_string(),
            rng: Rng(0x005e_ed0f_0dd5),
            groups: args.groups,
            span: i64::try_from(args.span_seconds)? * 1_000_000,
            events: i64::try_from(args.events)?,
            event: 0,
            next_id: 1,
            live: HashMap::new(),
            inserted: Vec::new(),
            counts: [0; 3],
        })
    }

    /// The next event as (key, value) records; `None` after the last.
    fn next_event(&mut self) -> Option<(String, String)> {
        if self.event >= self.events {
            return None;
        }
        let clock = START_MICROS + self.span * self.event / self.events;
        let jittered = clock - self.rng.below(DISORDER_MICROS) as i64;
        let lsn = 1_000_000 + self.event as u64 * 100;
        self.event += 1;
        let roll = self.rng.below(100);
        // A recent row (inserted within RECENT_MICROS of event time), if it is still live.
        let recent_from = self
            .inserted
            .partition_point(|(_, t)| *t < clock - RECENT_MICROS);
        let recent = self.inserted.len() - recent_from;
        let target = if roll >= 80 && recent > 0 {
            let id = self.inserted[recent_from + self.rng.below(recent as u64) as usize].0;
            self.live.contains_key(&id).then_some(id)
        } else {
            None
        };
        let schema = &self.schema;
        Some(match target {
            None => {
                let order = Order {
                    customer_id: 1 + self.rng.below(self.groups),
                    cents: (self.rng.below(100) != 0).then(|| 100 + self.rng.below(100_000) as i64),
                    created_us: jittered,
                };
                let id = self.next_id;
                self.next_id += 1;
                self.live.insert(id, order);
                self.inserted.push((id, order.created_us));
                self.counts[0] += 1;
                record(
                    schema,
                    "c",
                    id,
                    serde_json::Value::Null,
                    image(id, &order),
                    lsn,
                )
            }
            Some(id) if roll < 95 => {
                let mut order = self.live[&id];
                match self.rng.below(10) {
                    0..6 => order.cents = Some(100 + self.rng.below(100_000) as i64),
                    6..8 => order.customer_id = 1 + self.rng.below(self.groups),
                    _ => order.created_us = jittered,
                }
                self.live.insert(id, order);
                self.counts[1] += 1;
                record(
                    schema,
                    "u",
                    id,
                    serde_json::Value::Null,
                    image(id, &order),
                    lsn,
                )
            }
            Some(id) => {
                self.live.remove(&id);
                self.counts[2] += 1;
                let key_only =
                    json!({"id": id, "customer_id": null, "amount": null, "created_at": null});
                record(schema, "d", id, key_only, serde_json::Value::Null, lsn)
            }
        })
    }
}

/// Writes the events to `topic`; returns the surviving rows and the counts of each kind.
async fn produce(args: &Args, topic: &str) -> anyhow::Result<(HashMap<u64, Order>, [u64; 3])> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("a producer")?;
    let mut generator = Generator::new(args)?;
    let mut pending = Vec::new();
    let mut done = false;
    while !done {
        match generator.next_event() {
            Some((key, value)) => {
                let delivery = producer
                    .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                    .map_err(|(e, _)| e)
                    .context("queueing a record")?;
                pending.push(delivery);
            }
            None => done = true,
        }
        if pending.len() >= 50_000 || done {
            for delivery in pending.drain(..) {
                delivery
                    .await
                    .context("delivery")?
                    .map_err(|(e, _)| e)
                    .context("delivery")?;
            }
        }
    }
    Ok((generator.live, generator.counts))
}

fn stage_config(
    args: &Args,
    postgres: &Postgres,
    topic: &str,
) -> anyhow::Result<WindowAggregateConfig> {
    let connector = ConnectorConfig::from_json(
        &json!({"name": CONNECTOR, "config": {
            "connector.class": "tributary.WindowAggregate",
            "topics": topic,
            "connection.url": format!("jdbc:postgresql://{}:{}/{DATABASE}", postgres.host, postgres.port),
            "connection.username": "postgres",
            "table.name": RESULT_TABLE,
            "event.time.field": "created_at",
            "group.by": "customer_id",
            "window.type": "tumbling",
            "window.size": "1m",
            "watermark.max.out.of.orderness": "10s",
            "allowed.lateness": "2m",
            "aggregates": AGGREGATES,
            "commit.interval.ms": args.commit_interval_ms.to_string(),
        }})
        .to_string(),
    )?;
    WindowAggregateConfig::from_connector(&connector).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Rows in one of the result table and the expected aggregation but not the other.
const DIFFERENCE: &str = "
    WITH expected AS (
        SELECT customer_id,
               timestamptz 'epoch' + interval '1 microsecond' * (created_us - created_us % 60000000) AS window_start,
               timestamptz 'epoch' + interval '1 microsecond' * (created_us - created_us % 60000000 + 60000000) AS window_end,
               sum(amount) AS revenue, count(*) AS orders, max(amount) AS max_amount
          FROM orders GROUP BY 1, 2, 3),
    got AS (
        SELECT customer_id, window_start, window_end, revenue, orders, max_amount FROM revenue_per_minute)
    SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM got) missing),
           (SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT * FROM expected) wrong),
           (SELECT count(*) FROM expected)";

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let postgres = Postgres::from_env()?;
    let mut settings = ClientSettings::new(&args.bootstrap_servers);
    settings.overrides.clone_from(&args.kafka_properties);
    let topic = format!(
        "tributary-bench-window-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let admin = TopicAdmin::new(&settings, Duration::from_secs(30))?;
    admin.ensure_topic(&TopicSpec::new(&topic, 1)).await?;

    println!(
        "writing {} change events ({} customers, {} s of event time) to {topic}",
        args.events, args.groups, args.span_seconds
    );
    let (live, [inserts, updates, deletes]) = produce(&args, &topic).await?;
    println!(
        "  {inserts} inserts, {updates} updates, {deletes} deletes; {} rows survive",
        live.len()
    );

    let admin_db = postgres.connect("postgres").await?;
    admin_db
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    admin_db
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let target = postgres.connect(DATABASE).await?;
    // The surviving rows, for the reference aggregation.
    target
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL,
                                  amount numeric(10,2), created_us bigint NOT NULL)",
        )
        .await?;
    {
        let mut text = Vec::with_capacity(live.len() * 40);
        for (id, order) in &live {
            let amount = order.cents.map_or_else(
                || "\\N".to_owned(),
                |c| format!("{}.{:02}", c / 100, c % 100),
            );
            text.extend_from_slice(
                format!(
                    "{id}\t{}\t{amount}\t{}\n",
                    order.customer_id, order.created_us
                )
                .as_bytes(),
            );
        }
        let copy = target
            .copy_in::<_, bytes::Bytes>("COPY orders FROM STDIN")
            .await?;
        let mut copy = std::pin::pin!(copy);
        for chunk in text.chunks(1 << 20) {
            copy.send(bytes::Bytes::copy_from_slice(chunk)).await?;
        }
        copy.as_mut().finish().await?;
    }
    drop(live);
    let config = stage_config(&args, &postgres, &topic)?;

    // Peak RSS of the drain alone, not of generating the events.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = peak_rss_bytes().unwrap_or(0);
    let ticks = clock_ticks_per_second();
    let own = read_usage(std::process::id(), ticks).unwrap_or_default();
    let busy_before = machine_busy_seconds(ticks);
    println!(
        "draining with the window stage (commit.interval.ms {})",
        args.commit_interval_ms
    );
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let stage = {
        let shutdown = shutdown.clone();
        let settings = settings.clone();
        tokio::spawn(async move { window::run(config, &settings, shutdown).await })
    };
    let sampler = Sampler::start(Duration::from_millis(50));
    let mut backend_watched = false;
    let end = i64::try_from(args.events)?;
    let mut last_report = Instant::now();
    loop {
        if stage.is_finished() {
            anyhow::bail!("the window stage stopped: {:?}", stage.await);
        }
        if !backend_watched
            && let Ok(Some(row)) = target
                .query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                    &[&format!("tributary window {CONNECTOR}")],
                )
                .await
        {
            let pid: i32 = row.get(0);
            sampler.watch("backend", u32::try_from(pid)?);
            backend_watched = true;
        }
        let next: Option<i64> = target
            .query_opt(
                "SELECT next_offset FROM tributary_offsets WHERE connector = $1",
                &[&CONNECTOR],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if next.is_some_and(|n| n >= end) {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            let done = next.unwrap_or(0);
            println!(
                "  {:.0} s: {done} events committed ({:.0}/s)",
                started.elapsed().as_secs_f64(),
                done as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the window stage did not drain the topic within an hour"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes().unwrap_or(0);
    let stage_cpu =
        read_usage(std::process::id(), ticks).map_or(0.0, |u| u.cpu_seconds - own.cpu_seconds);
    let machine_busy = busy_before
        .zip(machine_busy_seconds(ticks))
        .map(|(before, after)| after - before);
    let usage = sampler.finish().await;
    let backend_cpu = usage.get("backend").map_or(0.0, |u| u.cpu_seconds);
    shutdown.cancel();
    stage.await?.context("the window stage")?;

    let result_rows: i64 = target
        .query_one(&format!("SELECT count(*) FROM {RESULT_TABLE}"), &[])
        .await?
        .get(0);
    let difference = target.query_one(DIFFERENCE, &[]).await?;
    let (missing, wrong, expected): (i64, i64, i64) =
        (difference.get(0), difference.get(1), difference.get(2));
    TopicAdmin::new(&settings, Duration::from_secs(30))?
        .delete_topic(&topic)
        .await
        .ok();
    anyhow::ensure!(
        missing == 0 && wrong == 0,
        "the result table differs from the GROUP BY over the source rows: {missing} expected rows \
         missing or different, {wrong} rows not expected ({expected} expected, {result_rows} written)"
    );

    let rate = args.events as f64 / seconds;
    println!(
        "window: {rate:.0} events/s ({seconds:.2} s), peak RSS {:.1} MiB (from {:.1} MiB before the drain)\n\
         CPU: stage {stage_cpu:.2} s, its PostgreSQL backend {backend_cpu:.2} s, machine busy {} s of {:.2} s × 2 cores\n\
         result table: {result_rows} rows, equal to the GROUP BY over the source rows",
        mib(peak_rss),
        mib(rss_before),
        machine_busy.map_or_else(|| "?".to_owned(), |b| format!("{b:.2}")),
        seconds,
    );
    Ok(Report {
        workload: "window",
        body: json!({
            "events": args.events,
            "inserts": inserts,
            "updates": updates,
            "deletes": deletes,
            "groups": args.groups,
            "span_seconds": args.span_seconds,
            "commit_interval_ms": args.commit_interval_ms,
            "seconds": seconds,
            "events_per_second": rate,
            "peak_rss_mib": mib(peak_rss),
            "rss_before_drain_mib": mib(rss_before),
            "stage_cpu_seconds": stage_cpu,
            "backend_cpu_seconds": backend_cpu,
            "machine_busy_seconds": machine_busy,
            "result_rows": result_rows,
        }),
    })
}
