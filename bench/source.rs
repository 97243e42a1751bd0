//! The source: `tributary standalone` streaming a PostgreSQL slot backlog into Kafka (exactly
//! once, once per converter format: JSON, and Avro against a schema registry the bench serves
//! itself), against the ceiling (`pg_recvlogical` on the same backlog) measured in the same run.
//!
//! For each backlog variant (many small transactions; one large transaction) the database is
//! recreated, the ceiling's slots and one tributary slot per format are created (tributary creates
//! its own by starting once with `snapshot.mode=no_data` and being stopped with SIGTERM), the
//! backlog is loaded, `pg_recvlogical` drains it, and then tributary is started again per format
//! and timed from its start until the end marker (a logical decoding message committed after the
//! last row, which tributary produces to `<prefix>.message`) is visible to a `read_committed`
//! consumer: tributary commits Kafka transactions in PostgreSQL commit order, so every row is
//! visible by then. The table topic is counted afterwards, untimed, so that the bench's own
//! consuming does not compete with tributary for the two cores; that count also sums the key and
//! value bytes of every record, for the bytes per event of each format.
//!
//! Latency: after the last format of the first variant has drained (later, its rows would land in
//! the slots still to be drained), its tributary keeps streaming while transactions arrive at a
//! steady rate; a sample is the time a `read_committed` consumer receives a record minus its
//! transaction's commit time in PostgreSQL (`source.ts_us`, read from the JSON or Avro value), on
//! the same machine.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use apache_avro::types::Value as AvroValue;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use serde::Deserialize;
use serde_json::json;
use tokio::{process::Child, sync::watch, task::JoinHandle};
use tokio_postgres::Client;
use tributary::{
    kafka::{ClientSettings, TopicAdmin, TopicSpec},
    registry::SchemaRegistry,
};

use crate::{
    ceiling::{self, Drain},
    measure::{self, Percentiles, ProcessUsage, Report, Sampler, mib},
    workload::{self, END_MARKER, Postgres, RowShape},
};

/// The targets: a fraction of the ceiling, and a memory bound.
const TARGET_RATIO: f64 = 0.5;
const TARGET_RSS_BYTES: u64 = 300 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// `--rows` rows in transactions of `--rows-per-txn` rows.
    Small,
    /// `--large-rows` rows in one transaction.
    Large,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Small => "small",
            Variant::Large => "large",
        }
    }
}

/// The converters tributary writes keys and values with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `JsonConverter` with schemas (every other converter key at its default).
    Json,
    /// `AvroConverter` in Confluent's wire format, against the bench's in-process registry.
    Avro,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Avro => "avro",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Avro => "Avro",
        }
    }

    fn converter(self) -> &'static str {
        match self {
            Format::Json => "org.apache.kafka.connect.json.JsonConverter",
            Format::Avro => "io.confluent.connect.avro.AvroConverter",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Row changes in the small-transaction backlog.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows per transaction in the small-transaction backlog.
    #[arg(long, default_value_t = 10)]
    rows_per_txn: u64,
    /// Row changes in the single-transaction backlog (default: --rows).
    #[arg(long)]
    large_rows: Option<u64>,
    /// Backlogs to drain, in this order; the first one also carries the latency measurement.
    #[arg(long, value_delimiter = ',', default_value = "small,large")]
    variants: Vec<Variant>,
    /// Converter formats: each backlog is drained once per format, in this order, from its own
    /// slot (all created before the load, so each holds the same backlog). Avro registers its
    /// schemas in a registry served by the bench on 127.0.0.1.
    #[arg(long, value_delimiter = ',', default_value = "json,avro")]
    formats: Vec<Format>,
    /// Width of the text column in bytes (a row is about 60 bytes more).
    #[arg(long, default_value_t = 100)]
    row_width: u32,
    /// pg_recvlogical drains of each backlog (one slot each); the median is the ceiling.
    #[arg(long, default_value_t = 1)]
    ceiling_runs: u32,
    /// Seconds of steady load for the latency measurement; 0 skips it.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Row changes per second during the latency measurement.
    #[arg(long, default_value_t = 5000)]
    latency_rate: u64,
    /// Rows per transaction during the latency measurement.
    #[arg(long, default_value_t = 10)]
    latency_rows_per_txn: u64,
    /// The tributary binary [default: $TRIBUTARY_BIN, else $CARGO_TARGET_DIR/release/tributary,
    /// else target/release/tributary]. Build it first: `cargo build --release --bin tributary`.
    #[arg(long)]
    tributary: Option<PathBuf>,
    /// Kafka, for tributary and for the bench's consumers.
    #[arg(
        long,
        env = "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// Extra connector configuration, `key=value`, repeatable; e.g.
    /// `--connector transaction.boundary.interval.ms=1000` or
    /// `--connector value.converter.schemas.enable=false`.
    #[arg(long = "connector", value_parser = parse_key_value)]
    connector_overrides: Vec<(String, String)>,
    /// Leave each run's topics in Kafka (they are deleted by default: a 1M-row backlog is
    /// gigabytes of JSON).
    #[arg(long)]
    keep_topics: bool,
}

pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

/// What tributary's drain of one backlog measured.
#[derive(Debug)]
struct Delivery {
    elapsed: Duration,
    /// CPU seconds of the whole machine (both cores) during the drain.
    machine_busy_seconds: f64,
    /// From start until its walsender took the slot: connecting, loading offsets, fencing.
    streaming_after: Duration,
    tributary: ProcessUsage,
    walsender: ProcessUsage,
    /// The broker, when it runs on this machine (found by its listening port).
    kafka: Option<ProcessUsage>,
}

/// One format's drain of a backlog.
#[derive(Debug)]
struct FormatRun {
    format: Format,
    rows: u64,
    ceiling_rate: f64,
    delivery: Delivery,
    verified_records: u64,
    /// Key plus value bytes of the verified records.
    record_bytes: u64,
}

impl FormatRun {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.delivery.elapsed.as_secs_f64()
    }

    fn ratio(&self) -> f64 {
        self.rate() / self.ceiling_rate
    }

    fn cpu_per_million(&self) -> f64 {
        self.delivery.tributary.cpu_seconds * 1e6 / self.rows as f64
    }

    fn bytes_per_event(&self) -> f64 {
        self.record_bytes as f64 / self.verified_records.max(1) as f64
    }

    fn to_json(&self) -> serde_json::Value {
        let d = &self.delivery;
        json!({
            "format": self.format.name(),
            "tributary": {
                "seconds": d.elapsed.as_secs_f64(),
                "streaming_after_seconds": d.streaming_after.as_secs_f64(),
                "events_per_second": self.rate(),
                "ratio_to_ceiling": self.ratio(),
                "cpu_seconds": d.tributary.cpu_seconds,
                "cpu_seconds_per_million_events": self.cpu_per_million(),
                "peak_rss_bytes": d.tributary.peak_rss_bytes,
                "walsender_cpu_seconds": d.walsender.cpu_seconds,
                "walsender_peak_rss_bytes": d.walsender.peak_rss_bytes,
                "kafka_broker_cpu_seconds": d.kafka.map(|k| k.cpu_seconds),
                "machine_busy_cpu_seconds": d.machine_busy_seconds,
            },
            "verified_records": self.verified_records,
            "record_key_value_bytes": self.record_bytes,
            "bytes_per_event": self.bytes_per_event(),
            "meets_ratio_target": self.ratio() >= TARGET_RATIO,
            "meets_rss_target": d.tributary.peak_rss_bytes < TARGET_RSS_BYTES,
        })
    }
}

#[derive(Debug)]
struct VariantResult {
    variant: Variant,
    rows: u64,
    rows_per_txn: u64,
    load_time: Duration,
    ceiling: Vec<Drain>,
    runs: Vec<FormatRun>,
}

impl VariantResult {
    fn ceiling_rate(&self) -> f64 {
        ceiling::median_rate(&self.ceiling, self.rows)
    }

    fn run(&self, format: Format) -> Option<&FormatRun> {
        self.runs.iter().find(|run| run.format == format)
    }

    /// The JSON vs Avro line, when both formats ran.
    fn comparison(&self) -> Option<(String, serde_json::Value)> {
        let (json_run, avro) = (self.run(Format::Json)?, self.run(Format::Avro)?);
        let ratio = |avro: f64, json: f64| avro / json;
        let rss = |run: &FormatRun| run.delivery.tributary.peak_rss_bytes;
        let line = format!(
            "source {} JSON vs Avro: {:.0} vs {:.0} events/s (Avro {:.2}x), {:.0}% vs {:.0}% of the ceiling, {:.2} vs {:.2} CPU-s per million events (Avro {:.2}x), peak RSS {:.0} vs {:.0} MiB, {:.0} vs {:.0} bytes per event (Avro {:.2}x)",
            self.variant.name(),
            json_run.rate(),
            avro.rate(),
            ratio(avro.rate(), json_run.rate()),
            json_run.ratio() * 100.0,
            avro.ratio() * 100.0,
            json_run.cpu_per_million(),
            avro.cpu_per_million(),
            ratio(avro.cpu_per_million(), json_run.cpu_per_million()),
            mib(rss(json_run)),
            mib(rss(avro)),
            json_run.bytes_per_event(),
            avro.bytes_per_event(),
            ratio(avro.bytes_per_event(), json_run.bytes_per_event()),
        );
        let body = json!({
            "line": line,
            "avro_over_json": {
                "events_per_second": ratio(avro.rate(), json_run.rate()),
                "cpu_seconds_per_million_events": ratio(avro.cpu_per_million(), json_run.cpu_per_million()),
                "peak_rss_bytes": ratio(rss(avro) as f64, rss(json_run) as f64),
                "bytes_per_event": ratio(avro.bytes_per_event(), json_run.bytes_per_event()),
            },
        });
        Some((line, body))
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "variant": self.variant.name(),
            "rows": self.rows,
            "rows_per_txn": self.rows_per_txn,
            "load_seconds": self.load_time.as_secs_f64(),
            "ceiling": {
                "rows_per_second_median": self.ceiling_rate(),
                "runs": self.ceiling.iter().map(|c| c.to_json(self.rows)).collect::<Vec<_>>(),
            },
            "formats": self.runs.iter().map(FormatRun::to_json).collect::<Vec<_>>(),
            "json_vs_avro": self.comparison().map(|(_, body)| body),
        })
    }
}

#[derive(Debug)]
struct Latency {
    format: Format,
    rows: u64,
    load_time: Duration,
    commit_to_visible: Percentiles,
    commit_to_encoded: Percentiles,
    tributary_cpu_seconds: f64,
    /// Wall time from the first insert until the last record was visible.
    window: Duration,
}

impl Latency {
    fn achieved_rate(&self) -> f64 {
        self.rows as f64 / self.load_time.as_secs_f64()
    }
}

pub async fn run(args: Args, out_dir: &Path) -> anyhow::Result<Report> {
    if args.rows == 0 || args.rows_per_txn == 0 || args.ceiling_runs == 0 {
        bail!("--rows, --rows-per-txn and --ceiling-runs must be greater than 0");
    }
    if args.variants.is_empty() {
        bail!("--variants names no backlog; use small, large or small,large");
    }
    if args.formats.is_empty() {
        bail!("--formats names no format; use json, avro or json,avro");
    }
    if args
        .formats
        .iter()
        .enumerate()
        .any(|(i, f)| args.formats[..i].contains(f))
    {
        bail!("--formats names a format twice");
    }
    let tmp = out_dir.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let binary = tributary_binary(args.tributary.as_deref(), &tmp)?;
    let pg = Postgres::from_env()?;
    let pg_recvlogical = ceiling::find_pg_recvlogical()?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let settings = ClientSettings::new(&args.bootstrap_servers);
    let admin = TopicAdmin::new(&settings, Duration::from_secs(30))?;
    let registry = if args.formats.contains(&Format::Avro) {
        Some(RegistryServer::start().await?)
    } else {
        None
    };
    let registry_url = registry.as_ref().map(|r| r.url.as_str());
    let last_format = *args.formats.last().expect("checked non-empty");

    let mut results = Vec::new();
    let mut latency = None;
    let mut version = String::new();
    for (index, &variant) in args.variants.iter().enumerate() {
        let (rows, rows_per_txn) = match variant {
            Variant::Small => (args.rows, args.rows_per_txn),
            Variant::Large => {
                let rows = args.large_rows.unwrap_or(args.rows);
                (rows, rows)
            }
        };
        let names: Vec<Names> = args
            .formats
            .iter()
            .map(|&format| Names::new(run_id, variant, format))
            .collect();
        let client = pg.fresh_database().await?;
        version = Postgres::server_version(&client).await?;
        if index == 0 {
            let formats: Vec<&str> = args.formats.iter().map(|f| f.label()).collect();
            println!(
                "source: tributary {} → Kafka {} ({}, exactly once{}), PostgreSQL {version}",
                binary.display(),
                args.bootstrap_servers,
                formats.join(", then "),
                registry_url.map_or(String::new(), |url| format!(
                    "; Avro schemas in the bench's in-memory registry at {url}"
                )),
            );
        }
        println!(
            "{}: {rows} row changes in transactions of {rows_per_txn} rows (text width {} B); topics {}",
            variant.name(),
            args.row_width,
            names
                .iter()
                .map(|n| format!("{}.*", n.prefix))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Whatever happens, the run's topics go (a 1M-row backlog is gigabytes of JSON).
        let outcome = async {
            let mut measured_latency = None;
            let mut configs = Vec::new();
            for (names, &format) in names.iter().zip(&args.formats) {
                for topic in [&names.table_topic, &names.message_topic] {
                    admin
                        .ensure_topic(&TopicSpec::new(topic.as_str(), 1))
                        .await?;
                }
                configs.push(write_configs(
                    &tmp,
                    names,
                    &pg,
                    &args.bootstrap_servers,
                    format,
                    registry_url,
                    &args.connector_overrides,
                )?);
            }

            // Slots first, so that all of them hold the same backlog.
            let ceiling_slots: Vec<String> = (1..=args.ceiling_runs)
                .map(|i| format!("bench_ceiling_{i}"))
                .collect();
            for slot in &ceiling_slots {
                workload::create_slot(&client, slot).await?;
            }
            for (names, config) in names.iter().zip(&configs) {
                let mut first =
                    Tributary::start(&binary, config, &format!("{}-create-slot", names.label))?;
                first.wait_until_streaming(&client, &names.slot).await?;
                first.stop().await?;
            }

            let shape = RowShape {
                rows_per_txn,
                text_width: args.row_width,
            };
            // The load is not measured; asynchronous commit only makes it quicker (decoding waits
            // for the WAL flush either way, and the drains start after it).
            client.batch_execute("SET synchronous_commit = off").await?;
            let (end_lsn, load_time) = workload::load_backlog(&client, rows, shape).await?;
            client.batch_execute("RESET synchronous_commit").await?;
            let rows = rows.div_ceil(rows_per_txn) * rows_per_txn;
            println!(
                "  loaded in {:.1} s; backlog ends at {end_lsn}",
                load_time.as_secs_f64()
            );

            let mut drains = Vec::new();
            for (i, slot) in ceiling_slots.iter().enumerate() {
                let drain = ceiling::drain(&pg, &pg_recvlogical, &client, slot, &end_lsn).await?;
                println!("  ceiling run {}: {}", i + 1, drain.describe(rows));
                workload::drop_slot(&client, slot).await?;
                drains.push(drain);
            }
            let ceiling_rate = ceiling::median_rate(&drains, rows);

            let mut runs = Vec::new();
            for ((names, config), &format) in names.iter().zip(&configs).zip(&args.formats) {
                let (delivery, mut tributary) =
                    deliver(&settings, names, &binary, config, &client).await?;
                let run = FormatRun {
                    format,
                    rows,
                    ceiling_rate,
                    delivery,
                    verified_records: 0,
                    record_bytes: 0,
                };
                println!(
                    "  tributary {}: {:.2} s (streaming after {:.2} s), {:>9.0} events/s = {:.0}% of the ceiling ({ceiling_rate:.0} rows/s); {:.2} CPU-s ({:.2}/M events), peak RSS {:.0} MiB; walsender {:.2} CPU-s; Kafka broker {}; machine busy {:.2} of {} cores",
                    format.label(),
                    run.delivery.elapsed.as_secs_f64(),
                    run.delivery.streaming_after.as_secs_f64(),
                    run.rate(),
                    run.ratio() * 100.0,
                    run.delivery.tributary.cpu_seconds,
                    run.cpu_per_million(),
                    mib(run.delivery.tributary.peak_rss_bytes),
                    run.delivery.walsender.cpu_seconds,
                    run.delivery.kafka.map_or("not local".to_owned(), |k| format!(
                        "{:.2} CPU-s",
                        k.cpu_seconds
                    )),
                    run.delivery.machine_busy_seconds / run.delivery.elapsed.as_secs_f64(),
                    std::thread::available_parallelism().map_or(0, |n| n.get()),
                );

                let mut expected = rows;
                // Only after the last format: the latency rows also land in every slot not yet
                // drained, whose drain and count would then include them.
                if index == 0 && format == last_format && args.latency_seconds > 0 {
                    let decoder = TimesDecoder::new(format, registry.as_ref());
                    let measured = steady_latency(
                        &settings,
                        names,
                        &client,
                        &mut tributary,
                        &args,
                        format,
                        decoder,
                    )
                    .await?;
                    println!(
                        "  latency ({}) at {:.0} rows/s achieved ({} asked) in transactions of {} rows, commit → visible to read_committed: {}",
                        format.label(),
                        measured.achieved_rate(),
                        args.latency_rate,
                        args.latency_rows_per_txn,
                        measured.commit_to_visible
                    );
                    println!(
                        "    commit → encoded by tributary: {}; tributary {:.2} CPU-s over {:.1} s",
                        measured.commit_to_encoded,
                        measured.tributary_cpu_seconds,
                        measured.window.as_secs_f64()
                    );
                    expected += measured.rows;
                    measured_latency = Some(measured);
                }
                tributary.stop().await?;

                let counting = Instant::now();
                let counted = count_records(&settings, &names.table_topic, expected).await?;
                let run = FormatRun {
                    verified_records: counted.records,
                    record_bytes: counted.key_bytes + counted.value_bytes,
                    ..run
                };
                println!(
                    "  verified: {} records on {} (read_committed, counted in {:.1} s); {:.0} bytes per event (key {:.0} + value {:.0})",
                    counted.records,
                    names.table_topic,
                    counting.elapsed().as_secs_f64(),
                    run.bytes_per_event(),
                    counted.key_bytes as f64 / counted.records.max(1) as f64,
                    counted.value_bytes as f64 / counted.records.max(1) as f64,
                );
                runs.push(run);
            }
            Ok::<_, anyhow::Error>((
                VariantResult {
                    variant,
                    rows,
                    rows_per_txn,
                    load_time,
                    ceiling: drains,
                    runs,
                },
                measured_latency,
            ))
        }
        .await;
        if !args.keep_topics {
            for names in &names {
                for topic in [
                    &names.table_topic,
                    &names.message_topic,
                    &names.offsets_topic,
                ] {
                    if let Err(error) = admin.delete_topic(topic).await {
                        println!("warning: could not delete topic {topic}: {error}");
                    }
                }
            }
        }
        // tributary's slots would otherwise hold the backlog's WAL until the next run.
        for names in &names {
            if let Err(error) = client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                      WHERE slot_name = $1 AND NOT active",
                    &[&names.slot],
                )
                .await
            {
                println!("warning: could not drop slot {}: {error}", names.slot);
            }
        }
        let (result, measured_latency) = outcome?;
        if measured_latency.is_some() {
            latency = measured_latency;
        }
        results.push(result);
    }
    if let Some(registry) = registry {
        registry.stop();
    }

    for result in &results {
        for run in &result.runs {
            let ratio = run.ratio();
            let rss = run.delivery.tributary.peak_rss_bytes;
            println!(
                "source {} ({} rows/txn) {}: {:.0} events/s = {:.0}% of the ceiling (target ≥ {:.0}%{}), peak RSS {:.0} MiB (target < {:.0} MiB{}), {:.2} CPU-s per million events, {:.0} bytes per event",
                result.variant.name(),
                result.rows_per_txn,
                run.format.label(),
                run.rate(),
                ratio * 100.0,
                TARGET_RATIO * 100.0,
                if ratio >= TARGET_RATIO {
                    ": met".to_owned()
                } else {
                    format!(": missed by {:.0} points", (TARGET_RATIO - ratio) * 100.0)
                },
                mib(rss),
                mib(TARGET_RSS_BYTES),
                if rss < TARGET_RSS_BYTES {
                    ": met"
                } else {
                    ": missed"
                },
                run.cpu_per_million(),
                run.bytes_per_event(),
            );
        }
    }
    for result in &results {
        if let Some((line, _)) = result.comparison() {
            println!("{line}");
        }
    }

    Ok(Report {
        workload: "source",
        body: json!({
            "workload": "source",
            "what": "tributary standalone draining a slot backlog into Kafka (exactly once) once per converter format, against pg_recvlogical on the same backlog",
            "postgres_version": version,
            "kafka": args.bootstrap_servers,
            "row_text_width": args.row_width,
            "formats": args.formats.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "bytes_per_event": "key + value bytes of the records on the table topic, summed while the untimed read_committed count reads them",
            "targets": {"ratio_to_ceiling_min": TARGET_RATIO, "peak_rss_bytes_max": TARGET_RSS_BYTES},
            "variants": results.iter().map(VariantResult::to_json).collect::<Vec<_>>(),
            "json_vs_avro": results
                .iter()
                .filter_map(|r| r.comparison().map(|(line, _)| line))
                .collect::<Vec<_>>(),
            "latency": latency.map(|l| json!({
                "format": l.format.name(),
                "rows_per_second_asked": args.latency_rate,
                "rows_per_second_achieved": l.achieved_rate(),
                "rows_per_txn": args.latency_rows_per_txn,
                "seconds": l.load_time.as_secs_f64(),
                "rows": l.rows,
                "commit_to_visible": l.commit_to_visible.to_json(),
                "commit_to_encoded": l.commit_to_encoded.to_json(),
                "tributary_cpu_seconds": l.tributary_cpu_seconds,
                "tributary_cpu_share": l.tributary_cpu_seconds / l.window.as_secs_f64(),
            })),
        }),
    })
}

/// The built-in schema registry, in memory, served on a loopback port of the bench process for
/// the Avro runs (its requests are a handful per run: one registration per subject).
#[derive(Debug)]
struct RegistryServer {
    url: String,
    registry: SchemaRegistry,
    task: JoinHandle<()>,
}

impl RegistryServer {
    async fn start() -> anyhow::Result<Self> {
        let registry = SchemaRegistry::in_memory();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the schema registry's listener on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let app = tributary::api::registry::router(registry.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                println!("warning: the bench's schema registry stopped: {error}");
            }
        });
        Ok(Self {
            url: format!("http://{address}"),
            registry,
            task,
        })
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// Per-variant and format names, unique per run so that no stored offset or topic of an earlier run
/// interferes.
#[derive(Debug)]
struct Names {
    /// `<variant>-<format>`, for log file names.
    label: String,
    /// tributary's slot for this format in the benchmark database.
    slot: String,
    connector: String,
    prefix: String,
    table_topic: String,
    message_topic: String,
    offsets_topic: String,
}

impl Names {
    fn new(run_id: u64, variant: Variant, format: Format) -> Self {
        let label = format!("{}-{}", variant.name(), format.name());
        let prefix = format!("tributary-bench-{run_id}-{label}");
        Self {
            label,
            slot: format!("bench_tributary_{}", format.name()),
            connector: prefix.clone(),
            table_topic: format!("{prefix}.public.{}", workload::TABLE),
            message_topic: format!("{prefix}.message"),
            offsets_topic: format!("{prefix}-offsets"),
            prefix,
        }
    }
}

/// The two files `tributary standalone` takes.
#[derive(Debug)]
pub(crate) struct Configs {
    pub(crate) worker: PathBuf,
    pub(crate) connector: PathBuf,
    pub(crate) dir: PathBuf,
}

fn write_configs(
    dir: &Path,
    names: &Names,
    pg: &Postgres,
    bootstrap_servers: &str,
    format: Format,
    registry_url: Option<&str>,
    overrides: &[(String, String)],
) -> anyhow::Result<Configs> {
    let worker = dir.join(format!("tributary-{}.toml", names.label));
    let text = format!(
        "[kafka]\nbootstrap_servers = {}\n\n[worker]\noffsets_topic = {}\n",
        json!(bootstrap_servers),
        json!(names.offsets_topic)
    );
    std::fs::write(&worker, text).with_context(|| format!("cannot write {}", worker.display()))?;
    let connector = dir.join(format!("connector-{}.json", names.label));
    let mut json = json!({
        "name": names.connector,
        "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": "1",
            "database.hostname": pg.host,
            "database.port": pg.port.to_string(),
            "database.user": "postgres",
            "database.dbname": workload::DATABASE,
            "topic.prefix": names.prefix,
            "plugin.name": "pgoutput",
            "slot.name": names.slot,
            "publication.name": workload::PUBLICATION,
            "publication.autocreate.mode": "disabled",
            "table.include.list": format!("public.{}", workload::TABLE),
            "snapshot.mode": "no_data",
            "key.converter": format.converter(),
            "value.converter": format.converter(),
        }
    });
    if format == Format::Avro {
        let url = registry_url.context("an Avro run needs the bench's schema registry")?;
        json["config"]["key.converter.schema.registry.url"] = json!(url);
        json["config"]["value.converter.schema.registry.url"] = json!(url);
    }
    for (key, value) in overrides {
        json["config"][key] = json!(value);
    }
    std::fs::write(&connector, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", connector.display()))?;
    Ok(Configs {
        worker,
        connector,
        dir: dir.to_owned(),
    })
}

/// Finds the release binary and copies it next to the configs, so that a rebuild in the shared
/// target directory cannot swap it during the run.
pub(crate) fn tributary_binary(explicit: Option<&Path>, tmp: &Path) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => match std::env::var_os("TRIBUTARY_BIN") {
            Some(path) => PathBuf::from(path),
            None => std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
                .join("release/tributary"),
        },
    };
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "the tributary binary is not at {}: build it first with `cargo build --release --bin tributary` (same CARGO_TARGET_DIR), or pass --tributary <path>",
                path.display()
            )
        })?;
    if let Some(newer) = newest_source(Path::new("src"))
        && newer > built
    {
        println!(
            "warning: {} is older than the sources in src/; rebuild it with `cargo build --release --bin tributary`",
            path.display()
        );
    }
    let copy = tmp.join("tributary");
    std::fs::copy(&path, &copy)
        .with_context(|| format!("cannot copy {} to {}", path.display(), copy.display()))?;
    Ok(copy)
}

fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(modified);
    }
    newest
}

/// A running `tributary standalone`, logging into the run's temporary directory.
#[derive(Debug)]
pub(crate) struct Tributary {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) log: PathBuf,
}

impl Tributary {
    pub(crate) fn start(binary: &Path, configs: &Configs, label: &str) -> anyhow::Result<Self> {
        let log = configs.dir.join(format!("tributary-{label}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = tokio::process::Command::new(binary)
            .arg("standalone")
            .arg("--config")
            .arg(&configs.worker)
            .arg(&configs.connector)
            .env("TRIBUTARY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("tributary has no pid")?;
        Ok(Self { child, pid, log })
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until tributary's walsender holds the slot; returns the walsender's pid.
    async fn wait_until_streaming(&mut self, client: &Client, slot: &str) -> anyhow::Result<u32> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let row = client
                .query_opt(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await?;
            if let Some(pid) = row.and_then(|r| r.get::<_, Option<i32>>(0)) {
                return Ok(pid as u32);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tributary exited ({status}) before streaming; the end of {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "tributary did not take slot {slot} within 120 s; see {}",
            self.log.display()
        )
    }

    /// SIGTERM, as an operator stops it, then waits for a clean exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("running kill -TERM")?;
        if !signalled.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        let status = match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await.ok();
                bail!(
                    "tributary did not stop within 60 s of SIGTERM; see {}",
                    self.log.display()
                );
            }
        };
        if !status.success() {
            bail!(
                "tributary stopped with {status}; the end of {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }
}

pub(crate) fn consumer(
    settings: &ClientSettings,
    tuning: &[(&str, &str)],
) -> anyhow::Result<StreamConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", "tributary-bench")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in tuning {
        config.set(*key, *value);
    }
    config.create().context("creating a Kafka consumer")
}

pub(crate) fn assign(consumer: &StreamConsumer, topic: &str, offset: Offset) -> anyhow::Result<()> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, offset)?;
    consumer
        .assign(&assignment)
        .with_context(|| format!("assigning {topic}"))
}

/// Starts tributary on the loaded backlog and times it until the end marker is visible to a
/// `read_committed` consumer. Returns tributary still running.
async fn deliver(
    settings: &ClientSettings,
    names: &Names,
    binary: &Path,
    configs: &Configs,
    client: &Client,
) -> anyhow::Result<(Delivery, Tributary)> {
    // Short fetch waits: the marker topic is idle until the very end, and the moment it is
    // fetched is the measurement.
    let markers = consumer(settings, &[("fetch.wait.max.ms", "20")])?;
    assign(&markers, &names.message_topic, Offset::Beginning)?;

    let ticks = measure::clock_ticks_per_second();
    let busy_before = measure::machine_busy_seconds(ticks).unwrap_or(0.0);
    let sampler = Sampler::start(Duration::from_millis(10));
    let started = Instant::now();
    let mut tributary = Tributary::start(binary, configs, &format!("{}-drain", names.label))?;
    sampler.watch("tributary", tributary.pid);
    let kafka_before = broker_pid(&settings.bootstrap_servers).and_then(|pid| {
        sampler.watch("kafka", pid);
        measure::read_usage(pid, ticks)
    });
    let walsender = tributary.wait_until_streaming(client, &names.slot).await?;
    let streaming_after = started.elapsed();
    sampler.watch("walsender", walsender);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    let elapsed = loop {
        tokio::select! {
            message = markers.recv() => {
                let message = message.context("consuming the message topic")?;
                let is_end = message
                    .payload()
                    .is_some_and(|v| memchr::memmem::find(v, END_MARKER).is_some());
                if is_end {
                    break started.elapsed();
                }
            }
            status = tributary.child.wait() => {
                bail!(
                    "tributary exited ({}) during the drain; the end of {}:\n{}",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    tributary.log.display(),
                    tributary.log_tail()
                );
            }
            _ = tokio::time::sleep_until(deadline) => {
                bail!("the backlog was not delivered within 30 minutes; see {}", tributary.log.display());
            }
        }
    };
    let usage = sampler.finish().await;
    let busy = measure::machine_busy_seconds(ticks).unwrap_or(0.0) - busy_before;
    Ok((
        Delivery {
            elapsed,
            machine_busy_seconds: busy,
            streaming_after,
            tributary: usage.get("tributary").copied().unwrap_or_default(),
            walsender: usage.get("walsender").copied().unwrap_or_default(),
            kafka: kafka_before
                .zip(usage.get("kafka"))
                .map(|(before, after)| ProcessUsage {
                    cpu_seconds: after.cpu_seconds - before.cpu_seconds,
                    peak_rss_bytes: after.peak_rss_bytes,
                }),
        },
        tributary,
    ))
}

/// The pid of the local process listening on the first bootstrap server's port, if any.
pub(crate) fn broker_pid(bootstrap_servers: &str) -> Option<u32> {
    let first = bootstrap_servers.split(',').next()?;
    let port = first.rsplit(':').next()?.trim();
    let output = std::process::Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let after = &text[text.find("pid=")? + 4..];
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The two clocks in a change event's value: the PostgreSQL commit time (`source.ts_us`) and
/// tributary's encoding time (`ts_us`), with or without the schema envelope.
#[derive(Debug, Deserialize)]
struct EventTimes {
    payload: Option<Times>,
    source: Option<SourceTime>,
    ts_us: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Times {
    source: SourceTime,
    ts_us: i64,
}

#[derive(Debug, Deserialize)]
struct SourceTime {
    ts_us: i64,
}

impl EventTimes {
    /// (commit, encoded) in microseconds since the epoch.
    fn parse(value: &[u8]) -> Option<(i64, i64)> {
        let times: EventTimes = serde_json::from_slice(value).ok()?;
        match times.payload {
            Some(p) => Some((p.source.ts_us, p.ts_us)),
            None => Some((times.source?.ts_us, times.ts_us?)),
        }
    }
}

/// Reads the two clocks from a record value in the run's format. Avro values are in Confluent's
/// wire format (magic byte 0, schema id, binary datum); the writer schema comes from the bench's
/// registry, parsed once per id.
#[derive(Debug)]
enum TimesDecoder {
    Json,
    Avro {
        registry: SchemaRegistry,
        schemas: HashMap<u32, Option<apache_avro::Schema>>,
    },
}

impl TimesDecoder {
    fn new(format: Format, registry: Option<&RegistryServer>) -> Self {
        match (format, registry) {
            (Format::Avro, Some(server)) => TimesDecoder::Avro {
                registry: server.registry.clone(),
                schemas: HashMap::new(),
            },
            _ => TimesDecoder::Json,
        }
    }

    /// (commit, encoded) in microseconds since the epoch.
    fn parse(&mut self, value: &[u8]) -> Option<(i64, i64)> {
        let (registry, schemas) = match self {
            TimesDecoder::Json => return EventTimes::parse(value),
            TimesDecoder::Avro { registry, schemas } => (registry, schemas),
        };
        let (&magic, rest) = value.split_first()?;
        if magic != 0 || rest.len() < 4 {
            return None;
        }
        let (id, mut datum) = rest.split_at(4);
        let id = u32::from_be_bytes(id.try_into().ok()?);
        let schema = schemas
            .entry(id)
            .or_insert_with(|| {
                let text = registry.schema_by_id(id).ok()?;
                apache_avro::Schema::parse_str(&text).ok()
            })
            .as_ref()?;
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .ok()?;
        let AvroValue::Record(envelope) = reader.read_value(&mut datum).ok()? else {
            return None;
        };
        let AvroValue::Record(source) = avro_field(&envelope, "source")? else {
            return None;
        };
        Some((
            avro_long(avro_field(source, "ts_us")?)?,
            avro_long(avro_field(&envelope, "ts_us")?)?,
        ))
    }
}

fn avro_field<'a>(fields: &'a [(String, AvroValue)], name: &str) -> Option<&'a AvroValue> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// A long, possibly inside an optional (`["null", "long"]`) union.
fn avro_long(value: &AvroValue) -> Option<i64> {
    match value {
        AvroValue::Long(n) => Some(*n),
        AvroValue::Union(_, inner) => avro_long(inner),
        _ => None,
    }
}

fn since(earlier_micros: i64, later_micros: i64) -> Duration {
    Duration::from_micros(later_micros.saturating_sub(earlier_micros).max(0) as u64)
}

async fn steady_latency(
    settings: &ClientSettings,
    names: &Names,
    client: &Client,
    tributary: &mut Tributary,
    args: &Args,
    format: Format,
    mut decoder: TimesDecoder,
) -> anyhow::Result<Latency> {
    let records = consumer(settings, &[("fetch.wait.max.ms", "20")])?;
    // Everything so far is committed (the end marker was visible), so the high watermark is
    // where the new records begin.
    let (_, high) = records
        .fetch_watermarks(&names.table_topic, 0, Duration::from_secs(10))
        .context("reading the table topic's end offset")?;
    assign(&records, &names.table_topic, Offset::Offset(high))?;

    let (target_tx, mut target_rx) = watch::channel(None::<u64>);
    let collector = tokio::spawn(async move {
        let mut visible = Vec::new();
        let mut encoded = Vec::new();
        let mut seen = 0u64;
        let mut deadline = None;
        loop {
            if let Some(target) = *target_rx.borrow()
                && seen >= target
            {
                break;
            }
            tokio::select! {
                message = records.recv() => {
                    let received = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_micros() as i64)
                        .unwrap_or(0);
                    let Ok(message) = message else { continue };
                    seen += 1;
                    if let Some((commit, encoded_at)) = message.payload().and_then(|value| decoder.parse(value)) {
                        visible.push(since(commit, received));
                        encoded.push(since(commit, encoded_at));
                    }
                }
                changed = target_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(120));
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => break,
            }
        }
        (seen, visible, encoded)
    });

    let ticks = measure::clock_ticks_per_second();
    let cpu_before = measure::read_usage(tributary.pid, ticks).unwrap_or_default();
    let shape = RowShape {
        rows_per_txn: args.latency_rows_per_txn.max(1),
        text_width: args.row_width,
    };
    let txns_per_second = (args.latency_rate as f64 / shape.rows_per_txn as f64).max(1.0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / txns_per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let client_started = Instant::now();
    let load_until = client_started + Duration::from_secs(args.latency_seconds);
    let mut rows = 0u64;
    while Instant::now() < load_until {
        tick.tick().await;
        workload::insert_transaction(client, shape).await?;
        rows += shape.rows_per_txn;
    }
    let load_time = client_started.elapsed();
    target_tx.send_replace(Some(rows));
    let (seen, visible, encoded) = collector.await.context("the latency consumer failed")?;
    let window = client_started.elapsed();
    let cpu_after = measure::read_usage(tributary.pid, ticks).unwrap_or_default();
    if seen < rows {
        bail!(
            "only {seen} of {rows} records arrived within 120 s of the last insert; see {}",
            tributary.log.display()
        );
    }
    Ok(Latency {
        format,
        rows,
        load_time,
        commit_to_visible: Percentiles::of(visible).context("no latency samples arrived")?,
        commit_to_encoded: Percentiles::of(encoded).context("no latency samples arrived")?,
        tributary_cpu_seconds: cpu_after.cpu_seconds - cpu_before.cpu_seconds,
        window,
    })
}

/// What the untimed read of a table topic found.
#[derive(Debug, Clone, Copy)]
struct Counted {
    records: u64,
    key_bytes: u64,
    value_bytes: u64,
}

/// Counts the records on `topic` (one partition) with `read_committed`, reading until `expected`
/// and then for two quiet seconds, so that duplicates would show; sums their key and value bytes.
async fn count_records(
    settings: &ClientSettings,
    topic: &str,
    expected: u64,
) -> anyhow::Result<Counted> {
    let records = consumer(settings, &[])?;
    assign(&records, topic, Offset::Beginning)?;
    let mut counted = Counted {
        records: 0,
        key_bytes: 0,
        value_bytes: 0,
    };
    loop {
        let wait = if counted.records >= expected {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(60)
        };
        match tokio::time::timeout(wait, records.recv()).await {
            Ok(message) => {
                let message = message.with_context(|| format!("consuming {topic}"))?;
                counted.records += 1;
                counted.key_bytes += message.key_len() as u64;
                counted.value_bytes += message.payload_len() as u64;
            }
            Err(_) if counted.records >= expected => break,
            Err(_) => bail!("only {} of {expected} records on {topic}", counted.records),
        }
    }
    if counted.records != expected {
        bail!(
            "{} records on {topic}, expected {expected}",
            counted.records
        );
    }
    Ok(counted)
}
