//! The initial snapshot: `tributary standalone` with `snapshot.mode=initial_only` copying an
//! orders-like table into Kafka (JSON without schemas, exactly once) and exiting, against the
//! ceiling measured in the same run: one `COPY (SELECT <all columns> FROM orders) TO STDOUT`
//! drained and thrown away.
//!
//! The table lives in its own database, `tributary_bench_snapshot`, and is reused when it already
//! holds exactly `--rows` rows of the asked note width (loading 5M rows takes minutes on a small
//! machine). For each `--threads` count tributary runs once with a unique topic prefix, slot,
//! connector name and offsets topic; it is timed from the start of the process until it exits,
//! which it does once the snapshot's last Kafka transaction has committed. The table topic is then
//! read back with `read_committed`, untimed, and must hold every id exactly once.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use rdkafka::{Message, Offset, consumer::Consumer, error::KafkaError};
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::Client;
use tributary::kafka::{ClientSettings, TopicAdmin, TopicSpec};

use crate::{
    measure::{self, ProcessUsage, Report, Sampler, mib},
    source::{self, Configs, Tributary},
    workload::Postgres,
};

pub const DATABASE: &str = "tributary_bench_snapshot";
const TABLE: &str = "orders";
const PUBLICATION: &str = "orders_pub";
const COLUMNS: &str = "id, customer_id, status, amount, created_at, note";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rows in the orders table.
    #[arg(long, default_value_t = 5_000_000)]
    rows: u64,
    /// `snapshot.max.threads` of each tributary run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    threads: Vec<usize>,
    /// `snapshot.chunk.rows` (rows per ctid range) [default: tributary's own default].
    #[arg(long)]
    chunk_rows: Option<u64>,
    /// Length of the note column in bytes (a row is about 60 bytes more).
    #[arg(long, default_value_t = 100)]
    note_width: u32,
    /// Times the single COPY is drained; the median is the ceiling.
    #[arg(long, default_value_t = 3)]
    ceiling_runs: u32,
    /// Recreate and reload the table even when one with --rows rows exists.
    #[arg(long)]
    reload: bool,
    /// The tributary binary [default: $TRIBUTARY_BIN, else $CARGO_TARGET_DIR/release/tributary,
    /// else target/release/tributary]. Build it first: `cargo build --release --bin tributary`.
    #[arg(long)]
    tributary: Option<std::path::PathBuf>,
    /// Kafka, for tributary and for the bench's consumer.
    #[arg(
        long,
        env = "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// Extra connector configuration, `key=value`, repeatable; e.g.
    /// `--connector snapshot.fetch.size=20000`.
    #[arg(long = "connector", value_parser = source::parse_key_value)]
    connector_overrides: Vec<(String, String)>,
    /// Leave each run's topics in Kafka (they are deleted by default: 5M rows are gigabytes of
    /// JSON).
    #[arg(long)]
    keep_topics: bool,
    /// Rows of an untimed tributary run before the first timed one (0: none) [default: --rows].
    /// A freshly started broker spends its first runs compiling its produce path (its JIT
    /// compiler threads took 6 CPU-s of a 5M-row run, its request handlers twice their later
    /// CPU, for about 15M records), which a broker that has been up for a while has long done.
    #[arg(long)]
    warmup_rows: Option<u64>,
}

/// One drain of the single COPY.
#[derive(Debug)]
struct CopyDrain {
    elapsed: Duration,
    bytes: u64,
    backend: ProcessUsage,
}

impl CopyDrain {
    fn rate(&self, rows: u64) -> f64 {
        rows as f64 / self.elapsed.as_secs_f64()
    }
}

fn median_rate(drains: &[CopyDrain], rows: u64) -> f64 {
    let mut rates: Vec<f64> = drains.iter().map(|d| d.rate(rows)).collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// One tributary snapshot run.
#[derive(Debug)]
struct SnapshotRun {
    threads: usize,
    elapsed: Duration,
    tributary: ProcessUsage,
    /// Every backend tributary opened (the walsender exporting the snapshot and the COPY
    /// connections), CPU summed.
    backend_cpu_seconds: f64,
    backends: usize,
    kafka: Option<ProcessUsage>,
    machine_busy_seconds: f64,
    /// The bench itself (its polling of `pg_stat_activity`), for `other_cpu_seconds`.
    bench_cpu_seconds: f64,
    verified: Verified,
    /// The mean rate of the COPY drains right before and right after this run: this machine's
    /// speed drifts by a third over minutes, so the run is compared with its neighbours.
    adjacent_ceiling: f64,
}

impl SnapshotRun {
    fn rate(&self, rows: u64) -> f64 {
        rows as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_million(&self, rows: u64) -> f64 {
        self.tributary.cpu_seconds * 1e6 / rows as f64
    }

    /// Machine busy time no measured process accounts for: another workload on the machine
    /// (or an unsampled process) skews the run when this is large.
    fn other_cpu_seconds(&self) -> f64 {
        self.machine_busy_seconds
            - self.tributary.cpu_seconds
            - self.backend_cpu_seconds
            - self.kafka.map_or(0.0, |k| k.cpu_seconds)
            - self.bench_cpu_seconds
    }

    fn to_json(&self, rows: u64, ceiling: f64) -> serde_json::Value {
        json!({
            "threads": self.threads,
            "seconds": self.elapsed.as_secs_f64(),
            "rows_per_second": self.rate(rows),
            "adjacent_ceiling_rows_per_second": self.adjacent_ceiling,
            "ratio_to_adjacent_ceiling": self.rate(rows) / self.adjacent_ceiling,
            "ratio_to_ceiling": self.rate(rows) / ceiling,
            "tributary_cpu_seconds": self.tributary.cpu_seconds,
            "tributary_cpu_seconds_per_million_rows": self.cpu_per_million(rows),
            "tributary_peak_rss_bytes": self.tributary.peak_rss_bytes,
            "postgres_backends": self.backends,
            "postgres_backends_cpu_seconds": self.backend_cpu_seconds,
            "kafka_broker_cpu_seconds": self.kafka.map(|k| k.cpu_seconds),
            "machine_busy_cpu_seconds": self.machine_busy_seconds,
            "other_cpu_seconds": self.other_cpu_seconds(),
            "verified_records": self.verified.records,
            "kafka_transaction_markers": self.verified.markers,
        })
    }
}

/// What the read-back of a run's table topic found.
#[derive(Debug, Clone, Copy)]
struct Verified {
    records: u64,
    /// High watermark minus records: the commit markers of tributary's Kafka transactions.
    markers: u64,
    took: Duration,
}

pub async fn run(args: Args, out_dir: &Path) -> anyhow::Result<Report> {
    if args.rows == 0 || args.ceiling_runs == 0 || args.note_width == 0 {
        bail!("--rows, --ceiling-runs and --note-width must be greater than 0");
    }
    if args.threads.is_empty() || args.threads.contains(&0) {
        bail!("--threads needs one or more counts of at least 1, e.g. 1,2,4");
    }
    let tmp = out_dir.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let binary = source::tributary_binary(args.tributary.as_deref(), &tmp)?;
    let pg = Postgres::from_env()?;
    let settings = ClientSettings::new(&args.bootstrap_servers);
    let admin = TopicAdmin::new(&settings, Duration::from_secs(30))?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let (client, load_time) = prepare_table(&pg, args.rows, args.note_width, args.reload).await?;
    let version = Postgres::server_version(&client).await?;
    let table_bytes: i64 = client
        .query_one(&format!("SELECT pg_relation_size('{TABLE}')"), &[])
        .await?
        .get(0);
    println!(
        "snapshot: tributary {} → Kafka {} (JSON without schemas, exactly once), PostgreSQL {version}",
        binary.display(),
        args.bootstrap_servers
    );
    println!(
        "  {DATABASE}.{TABLE}: {} rows, note width {} B, {:.0} MiB heap; {}",
        args.rows,
        args.note_width,
        mib(table_bytes.max(0) as u64),
        match load_time {
            Some(took) => format!("loaded in {:.1} s", took.as_secs_f64()),
            None => "reused (already loaded)".to_owned(),
        }
    );

    let mut drains = Vec::new();
    for i in 1..=args.ceiling_runs {
        let drain = copy_drain(&pg, args.rows).await?;
        println!(
            "  ceiling run {i}: {:.2} s, {:>9.0} rows/s, {:.1} MiB COPY text; backend {:.2} CPU-s, peak RSS {:.0} MiB",
            drain.elapsed.as_secs_f64(),
            drain.rate(args.rows),
            mib(drain.bytes),
            drain.backend.cpu_seconds,
            mib(drain.backend.peak_rss_bytes),
        );
        drains.push(drain);
    }
    let setup = RunSetup {
        pg: &pg,
        client: &client,
        settings: &settings,
        admin: &admin,
        binary: &binary,
        tmp: &tmp,
        args: &args,
    };
    let warmup_rows = args.warmup_rows.unwrap_or(args.rows).min(args.rows);
    if warmup_rows > 0 {
        let rows = warmup_rows;
        let names = Names::new(run_id, "warmup");
        let threads = args.threads.iter().copied().max().unwrap_or(1);
        let warmup = setup.run(&names, threads, Some(rows)).await?;
        println!(
            "  warm-up (untimed, not in the results): ids 1..{rows} in {:.2} s; Kafka broker {}",
            warmup.elapsed.as_secs_f64(),
            warmup.kafka.map_or("not local".to_owned(), |k| format!(
                "{:.2} CPU-s",
                k.cpu_seconds
            )),
        );
    }
    let mut runs = Vec::new();
    for &threads in &args.threads {
        let names = Names::new(run_id, &format!("t{threads}"));
        warn_if_busy().await;
        let mut run = setup.run(&names, threads, None).await?;
        let before = drains.last().map_or(0.0, |d| d.rate(args.rows));
        let after = copy_drain(&pg, args.rows).await?;
        println!(
            "  ceiling after threads {threads}: {:.2} s, {:>9.0} rows/s; backend {:.2} CPU-s",
            after.elapsed.as_secs_f64(),
            after.rate(args.rows),
            after.backend.cpu_seconds,
        );
        run.adjacent_ceiling = (before + after.rate(args.rows)) / 2.0;
        drains.push(after);
        let ceiling = run.adjacent_ceiling;
        println!(
            "  threads {threads}: {:.2} s, {:>9.0} rows/s = {:.0}% of the ceiling ({ceiling:.0} rows/s, the drains before and after); tributary {:.2} CPU-s ({:.2}/M rows), peak RSS {:.0} MiB; {} PostgreSQL backends {:.2} CPU-s; Kafka broker {}; machine busy {:.2} of {} cores ({:.2} CPU-s by other processes)",
            run.elapsed.as_secs_f64(),
            run.rate(args.rows),
            run.rate(args.rows) / ceiling * 100.0,
            run.tributary.cpu_seconds,
            run.cpu_per_million(args.rows),
            mib(run.tributary.peak_rss_bytes),
            run.backends,
            run.backend_cpu_seconds,
            run.kafka.map_or("not local".to_owned(), |k| format!(
                "{:.2} CPU-s",
                k.cpu_seconds
            )),
            run.machine_busy_seconds / run.elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            run.other_cpu_seconds(),
        );
        println!(
            "    verified: {} records, every id once, on {} (read_committed, {} transaction markers, counted in {:.1} s)",
            run.verified.records,
            names.table_topic,
            run.verified.markers,
            run.verified.took.as_secs_f64()
        );
        runs.push(run);
    }

    let ceiling = median_rate(&drains, args.rows);
    println!(
        "  ceiling: {ceiling:.0} rows/s (median of all {} single-connection COPY drains)",
        drains.len()
    );
    for run in &runs {
        println!(
            "snapshot threads={}: {:.0} rows/s = {:.0}% of the ceiling ({:.0} rows/s, the drains before and after; {:.0}% of the median drain), {:.2} CPU-s per million rows, peak RSS {:.0} MiB",
            run.threads,
            run.rate(args.rows),
            run.rate(args.rows) / run.adjacent_ceiling * 100.0,
            run.adjacent_ceiling,
            run.rate(args.rows) / ceiling * 100.0,
            run.cpu_per_million(args.rows),
            mib(run.tributary.peak_rss_bytes),
        );
    }

    Ok(Report {
        workload: "snapshot",
        body: json!({
            "workload": "snapshot",
            "what": "tributary standalone with snapshot.mode=initial_only copying a table into Kafka (JSON without schemas, exactly once) until it exits, against one COPY of the table drained to nowhere",
            "postgres_version": version,
            "kafka": args.bootstrap_servers,
            "table": format!("{DATABASE}.public.{TABLE}"),
            "rows": args.rows,
            "note_width": args.note_width,
            "heap_bytes": table_bytes,
            "load_seconds": load_time.map(|t| t.as_secs_f64()),
            "chunk_rows": args.chunk_rows,
            "ceiling": {
                "rows_per_second_median": ceiling,
                "runs": drains.iter().map(|d| json!({
                    "seconds": d.elapsed.as_secs_f64(),
                    "rows_per_second": d.rate(args.rows),
                    "copy_bytes": d.bytes,
                    "backend_cpu_seconds": d.backend.cpu_seconds,
                    "backend_peak_rss_bytes": d.backend.peak_rss_bytes,
                })).collect::<Vec<_>>(),
            },
            "runs": runs.iter().map(|r| r.to_json(args.rows, ceiling)).collect::<Vec<_>>(),
        }),
    })
}

/// What every tributary run of the bench shares.
struct RunSetup<'a> {
    pg: &'a Postgres,
    client: &'a Client,
    settings: &'a ClientSettings,
    admin: &'a TopicAdmin,
    binary: &'a Path,
    tmp: &'a Path,
    args: &'a Args,
}

impl RunSetup<'_> {
    /// One tributary run with `threads`, over the whole table or, for a warm-up, over the ids up
    /// to `only_first`; its topics are deleted afterwards whatever happened (unless kept).
    async fn run(
        &self,
        names: &Names,
        threads: usize,
        only_first: Option<u64>,
    ) -> anyhow::Result<SnapshotRun> {
        let outcome = async {
            self.admin
                .ensure_topic(&TopicSpec::new(names.table_topic.as_str(), 1))
                .await?;
            let configs = write_configs(self.tmp, names, self.pg, self.args, threads, only_first)?;
            let rows = only_first.unwrap_or(self.args.rows);
            let run = snapshot_run(
                self.pg,
                self.client,
                self.settings,
                self.binary,
                &configs,
                names,
                rows,
            )
            .await?;
            Ok::<_, anyhow::Error>(SnapshotRun { threads, ..run })
        }
        .await;
        if !self.args.keep_topics {
            for topic in [&names.table_topic, &names.offsets_topic] {
                if let Err(error) = self.admin.delete_topic(topic).await {
                    println!("warning: could not delete topic {topic}: {error}");
                }
            }
        }
        outcome
    }
}

/// Warns when the machine is busy before a run: on two cores anything else running skews it.
async fn warn_if_busy() {
    let ticks = measure::clock_ticks_per_second();
    let before = measure::machine_busy_seconds(ticks);
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(cores) = before
        .zip(measure::machine_busy_seconds(ticks))
        .map(|(before, after)| after - before)
        && cores > 0.25
    {
        println!(
            "  warning: the machine is {cores:.2} cores busy before this run; its numbers are skewed"
        );
    }
}

/// Reuses the orders table when it holds exactly `rows` rows with notes of `note_width` bytes;
/// otherwise recreates the database and loads it. Returns a connection to the database and the
/// load time (None when reused).
async fn prepare_table(
    pg: &Postgres,
    rows: u64,
    note_width: u32,
    reload: bool,
) -> anyhow::Result<(Client, Option<Duration>)> {
    let admin = pg.connect("postgres").await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
        .await?
        .is_some();
    if exists && !reload {
        let client = pg.connect(DATABASE).await?;
        let shape = client
            .query_opt(
                &format!(
                    "SELECT (SELECT count(*) FROM {TABLE}),
                            (SELECT length(note) FROM {TABLE} LIMIT 1),
                            (SELECT count(*) FROM pg_publication WHERE pubname = '{PUBLICATION}')"
                ),
                &[],
            )
            .await
            .ok()
            .flatten();
        if let Some(row) = shape {
            let count: i64 = row.get(0);
            let width: Option<i32> = row.get(1);
            let publications: i64 = row.get(2);
            if count == rows as i64 && width == Some(note_width as i32) && publications == 1 {
                return Ok((client, None));
            }
        }
    }
    admin
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
              WHERE database = '{DATABASE}' AND NOT active"
        ))
        .await
        .context("dropping the previous runs' slots")?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await
        .context("dropping the previous snapshot database")?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await
        .context("creating the snapshot database")?;
    let client = pg.connect(DATABASE).await?;
    let started = Instant::now();
    // md5 of the id makes every note different, as real text is; repeated to the asked width.
    let repeats = note_width.div_ceil(32);
    client
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, customer_id bigint, status text,
                                   amount numeric(12,2), created_at timestamptz, note text);
             CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE};
             SET synchronous_commit = off;
             INSERT INTO {TABLE}
             SELECT g, (g * 7919) % 100000 + 1,
                    (ARRAY['new', 'paid', 'shipped', 'delivered', 'cancelled'])[g % 5 + 1],
                    ((g * 37) % 1000000) * 0.01,
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
                    left(repeat(md5(g::text), {repeats}), {note_width})
               FROM generate_series(1::bigint, {rows}) g;
             RESET synchronous_commit;"
        ))
        .await
        .context("loading the orders table")?;
    client
        .batch_execute(&format!("VACUUM ANALYZE {TABLE}"))
        .await
        .context("vacuuming the orders table")?;
    Ok((client, Some(started.elapsed())))
}

/// One `COPY (SELECT <all columns> FROM orders) TO STDOUT`, read to the end and thrown away.
async fn copy_drain(pg: &Postgres, rows: u64) -> anyhow::Result<CopyDrain> {
    let client = pg.connect(DATABASE).await?;
    // The text format the snapshot reads, with the settings it reads with.
    client
        .batch_execute("SET DateStyle = ISO; SET IntervalStyle = postgres")
        .await?;
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let sampler = Sampler::start(Duration::from_millis(10));
    sampler.watch("backend", backend as u32);
    let started = Instant::now();
    let stream = client
        .copy_out(&format!("COPY (SELECT {COLUMNS} FROM {TABLE}) TO STDOUT"))
        .await
        .context("starting the ceiling's COPY")?;
    let mut stream = std::pin::pin!(stream);
    let mut bytes = 0u64;
    let mut lines = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the ceiling's COPY")?;
        bytes += chunk.len() as u64;
        lines += memchr::memchr_iter(b'\n', &chunk).count() as u64;
    }
    let elapsed = started.elapsed();
    let usage = sampler.finish().await;
    if lines != rows {
        bail!("the ceiling's COPY returned {lines} rows, expected {rows}");
    }
    Ok(CopyDrain {
        elapsed,
        bytes,
        backend: usage.get("backend").copied().unwrap_or_default(),
    })
}

/// Runs tributary until it exits, sampling it and every backend it opens, then reads the table
/// topic back.
async fn snapshot_run(
    pg: &Postgres,
    client: &Client,
    settings: &ClientSettings,
    binary: &Path,
    configs: &Configs,
    names: &Names,
    rows: u64,
) -> anyhow::Result<SnapshotRun> {
    let ticks = measure::clock_ticks_per_second();
    let busy_before = measure::machine_busy_seconds(ticks).unwrap_or(0.0);
    let sampler = Sampler::start(Duration::from_millis(10));
    let started = Instant::now();
    let mut tributary = Tributary::start(binary, configs, &format!("snapshot-{}", names.label))?;
    sampler.watch("tributary", tributary.pid);
    let kafka_before = source::broker_pid(&settings.bootstrap_servers).and_then(|pid| {
        sampler.watch("kafka", pid);
        measure::read_usage(pid, ticks)
    });
    let bench_before = measure::read_usage(std::process::id(), ticks).unwrap_or_default();
    // tributary's connections all carry `application_name = tributary <connector>`.
    let application = format!("tributary {}", names.connector);
    let mut backends = BTreeSet::new();
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    let status = loop {
        tokio::select! {
            status = tributary.child.wait() => break status.context("waiting for tributary")?,
            _ = poll.tick() => {
                for row in client
                    .query(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                        &[&application],
                    )
                    .await?
                {
                    let pid = row.get::<_, i32>(0) as u32;
                    if backends.insert(pid) {
                        sampler.watch(&format!("backend {pid}"), pid);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                bail!("the snapshot did not finish within an hour; see {}", tributary.log.display());
            }
        }
    };
    let elapsed = started.elapsed();
    let usage = sampler.finish().await;
    let busy = measure::machine_busy_seconds(ticks).unwrap_or(0.0) - busy_before;
    let bench = measure::read_usage(std::process::id(), ticks).unwrap_or_default();
    if !status.success() {
        bail!(
            "tributary exited with {status}; the end of {}:\n{}",
            tributary.log.display(),
            tributary.log_tail()
        );
    }
    // initial_only leaves nothing behind: its slot is temporary.
    let left = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&names.slot],
        )
        .await?;
    if left.is_some() {
        println!(
            "warning: slot {} outlived tributary (initial_only should leave none); dropping it",
            names.slot
        );
        let admin = pg.connect(DATABASE).await?;
        admin
            .execute("SELECT pg_drop_replication_slot($1)", &[&names.slot])
            .await
            .ok();
    }
    let verified = verify_records(settings, &names.table_topic, rows).await?;
    Ok(SnapshotRun {
        threads: 0,
        adjacent_ceiling: 0.0,
        elapsed,
        tributary: usage.get("tributary").copied().unwrap_or_default(),
        backend_cpu_seconds: usage
            .iter()
            .filter(|(name, _)| name.starts_with("backend "))
            .map(|(_, u)| u.cpu_seconds)
            .sum(),
        backends: backends.len(),
        kafka: kafka_before
            .zip(usage.get("kafka"))
            .map(|(before, after)| ProcessUsage {
                cpu_seconds: after.cpu_seconds - before.cpu_seconds,
                peak_rss_bytes: after.peak_rss_bytes,
            }),
        machine_busy_seconds: busy,
        bench_cpu_seconds: bench.cpu_seconds - bench_before.cpu_seconds,
        verified,
    })
}

/// A record key without schemas: `{"id":123}`.
#[derive(Debug, Deserialize)]
struct OrderKey {
    id: u64,
}

/// Reads `topic` (one partition) with `read_committed` to its end and fails unless it holds
/// every id from 1 to `rows` exactly once.
async fn verify_records(
    settings: &ClientSettings,
    topic: &str,
    rows: u64,
) -> anyhow::Result<Verified> {
    let started = Instant::now();
    let records = source::consumer(
        settings,
        &[
            ("enable.partition.eof", "true"),
            ("fetch.max.bytes", "67108864"),
            ("max.partition.fetch.bytes", "16777216"),
        ],
    )?;
    let (_, high) = records
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .with_context(|| format!("reading the end offset of {topic}"))?;
    source::assign(&records, topic, Offset::Beginning)?;
    let mut seen = vec![false; rows as usize + 1];
    let mut count = 0u64;
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(60), records.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(KafkaError::PartitionEOF(_))) => break,
            Ok(Err(error)) => return Err(error).with_context(|| format!("consuming {topic}")),
            Err(_) => bail!("{topic} stalled after {count} records"),
        };
        count += 1;
        let key: OrderKey = message
            .key()
            .and_then(|k| serde_json::from_slice(k).ok())
            .with_context(|| {
                format!(
                    "record {} of {topic} has no {{\"id\":…}} key",
                    message.offset()
                )
            })?;
        match seen.get_mut(key.id as usize) {
            Some(slot) if key.id > 0 && !*slot => *slot = true,
            Some(_) if key.id > 0 => bail!("id {} is on {topic} more than once", key.id),
            _ => bail!("id {} on {topic} is not in the table", key.id),
        }
    }
    if count != rows {
        bail!("{count} records on {topic}, expected {rows}");
    }
    Ok(Verified {
        records: count,
        markers: (high.max(0) as u64).saturating_sub(count),
        took: started.elapsed(),
    })
}

/// Per-run names, unique so that no stored offset, slot or topic of an earlier run interferes.
#[derive(Debug)]
struct Names {
    label: String,
    connector: String,
    prefix: String,
    table_topic: String,
    offsets_topic: String,
    slot: String,
}

impl Names {
    fn new(run_id: u64, label: &str) -> Self {
        let label = label.to_owned();
        let prefix = format!("tributary-bench-{run_id}-snapshot-{label}");
        Self {
            connector: prefix.clone(),
            table_topic: format!("{prefix}.public.{TABLE}"),
            offsets_topic: format!("{prefix}-offsets"),
            slot: format!("bench_snapshot_{run_id}_{label}"),
            prefix,
            label,
        }
    }
}

fn write_configs(
    dir: &Path,
    names: &Names,
    pg: &Postgres,
    args: &Args,
    threads: usize,
    only_first: Option<u64>,
) -> anyhow::Result<Configs> {
    let worker = dir.join("tributary-snapshot.toml");
    let text = format!(
        "[kafka]\nbootstrap_servers = {}\n\n[worker]\noffsets_topic = {}\n",
        json!(args.bootstrap_servers),
        json!(names.offsets_topic)
    );
    std::fs::write(&worker, text).with_context(|| format!("cannot write {}", worker.display()))?;
    let connector = dir.join(format!("connector-snapshot-{}.json", names.label));
    let mut json = json!({
        "name": names.connector,
        "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": "1",
            "database.hostname": pg.host,
            "database.port": pg.port.to_string(),
            "database.user": "postgres",
            "database.dbname": DATABASE,
            // The ceiling's COPY runs over plain TCP: so do the copying connections.
            "database.sslmode": "disable",
            "topic.prefix": names.prefix,
            "plugin.name": "pgoutput",
            "slot.name": names.slot,
            "publication.name": PUBLICATION,
            "publication.autocreate.mode": "disabled",
            "table.include.list": format!("public.{TABLE}"),
            "snapshot.mode": "initial_only",
            "snapshot.max.threads": threads.to_string(),
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
        }
    });
    if let Some(chunk_rows) = args.chunk_rows {
        json["config"]["snapshot.chunk.rows"] = json!(chunk_rows.to_string());
    }
    for (key, value) in &args.connector_overrides {
        json["config"][key] = json!(value);
    }
    if let Some(rows) = only_first {
        let table = format!("public.{TABLE}");
        json["config"]["snapshot.select.statement.overrides"] = json!(table);
        json["config"][format!("snapshot.select.statement.overrides.{table}")] =
            json!(format!("SELECT {COLUMNS} FROM {table} WHERE id <= {rows}"));
    }
    std::fs::write(&connector, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", connector.display()))?;
    Ok(Configs {
        worker,
        connector,
        dir: dir.to_owned(),
    })
}
