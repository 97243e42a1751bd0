//! The ceiling: how fast PostgreSQL's own client, `pg_recvlogical`, receives pgoutput (protocol 1)
//! changes from one slot on this machine. Every tributary workload reports itself against it.
//!
//! Throughput: N row changes are loaded while `--runs` slots wait, then each slot's backlog is
//! drained in turn, timed from the start of `pg_recvlogical` to the arrival of an end marker
//! (a logical decoding message committed after the last row). Latency: with a fresh slot streaming
//! live, transactions at a steady rate each end with a message carrying the server clock; the
//! time from that clock to the message's arrival on `pg_recvlogical`'s stdout is one sample.

use std::{
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use memchr::memmem;
use serde_json::json;
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
    sync::mpsc,
};

use crate::{
    measure::{Percentiles, ProcessUsage, Report, Sampler, mib},
    workload::{self, CLOCK_MARKER, END_MARKER, Postgres, RowShape},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Row changes in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows per source transaction in the backlog.
    #[arg(long, default_value_t = 1000)]
    rows_per_txn: u64,
    /// Width of the text column in bytes (a row is about 60 bytes more).
    #[arg(long, default_value_t = 100)]
    row_width: u32,
    /// Times the same backlog is drained (one slot each); the median is the ceiling.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Seconds of steady load for the latency measurement; 0 skips it.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Row changes per second during the latency measurement.
    #[arg(long, default_value_t = 1000)]
    latency_rate: u64,
    /// Rows per transaction during the latency measurement.
    #[arg(long, default_value_t = 10)]
    latency_rows_per_txn: u64,
}

/// What one drain of the backlog measured.
#[derive(Debug)]
pub struct Drain {
    pub elapsed: Duration,
    /// pgoutput bytes received.
    pub bytes: u64,
    pub walsender: ProcessUsage,
    pub receiver: ProcessUsage,
}

impl Drain {
    pub fn rate(&self, rows: u64) -> f64 {
        rows as f64 / self.elapsed.as_secs_f64()
    }

    /// One line: time, rate, bytes, and both processes' CPU and memory.
    pub fn describe(&self, rows: u64) -> String {
        format!(
            "{:.2} s, {:>9.0} rows/s, {:.1} MiB pgoutput; walsender {:.2} CPU-s ({:.2}/M rows), peak RSS {:.0} MiB; pg_recvlogical {:.2} CPU-s, peak RSS {:.0} MiB",
            self.elapsed.as_secs_f64(),
            self.rate(rows),
            mib(self.bytes),
            self.walsender.cpu_seconds,
            self.walsender.cpu_seconds * 1e6 / rows as f64,
            mib(self.walsender.peak_rss_bytes),
            self.receiver.cpu_seconds,
            mib(self.receiver.peak_rss_bytes),
        )
    }

    pub fn to_json(&self, rows: u64) -> serde_json::Value {
        json!({
            "seconds": self.elapsed.as_secs_f64(),
            "rows_per_second": self.rate(rows),
            "pgoutput_bytes": self.bytes,
            "walsender_cpu_seconds": self.walsender.cpu_seconds,
            "walsender_cpu_seconds_per_million_rows": self.walsender.cpu_seconds * 1e6 / rows as f64,
            "walsender_peak_rss_bytes": self.walsender.peak_rss_bytes,
            "pg_recvlogical_cpu_seconds": self.receiver.cpu_seconds,
            "pg_recvlogical_peak_rss_bytes": self.receiver.peak_rss_bytes,
        })
    }
}

/// The median drain rate: the ceiling.
pub fn median_rate(drains: &[Drain], rows: u64) -> f64 {
    let mut rates: Vec<f64> = drains.iter().map(|d| d.rate(rows)).collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    if args.runs == 0 || args.rows == 0 || args.rows_per_txn == 0 {
        bail!("--runs, --rows and --rows-per-txn must be greater than 0");
    }
    let pg = Postgres::from_env()?;
    let pg_recvlogical = find_pg_recvlogical()?;
    let client = pg.fresh_database().await?;
    let version = Postgres::server_version(&client).await?;

    let slots: Vec<String> = (1..=args.runs)
        .map(|i| format!("bench_ceiling_{i}"))
        .collect();
    for slot in &slots {
        workload::create_slot(&client, slot).await?;
    }
    let shape = RowShape {
        rows_per_txn: args.rows_per_txn,
        text_width: args.row_width,
    };
    println!(
        "ceiling: loading {} row changes in transactions of {} rows (text width {} B) into {} slot(s), PostgreSQL {version}",
        args.rows, args.rows_per_txn, args.row_width, args.runs
    );
    let (end_lsn, load_time) = workload::load_backlog(&client, args.rows, shape).await?;
    let rows = args.rows.div_ceil(args.rows_per_txn) * args.rows_per_txn;
    println!(
        "  loaded in {:.1} s; backlog ends at {end_lsn}",
        load_time.as_secs_f64()
    );

    let mut drains = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let drain = drain(&pg, &pg_recvlogical, &client, slot, &end_lsn).await?;
        println!("  run {}: {}", i + 1, drain.describe(rows));
        workload::drop_slot(&client, slot).await?;
        drains.push(drain);
    }
    let median = median_rate(&drains, rows);
    println!(
        "ceiling: {median:.0} rows/s (median of {} drains of {rows} row changes)",
        drains.len()
    );

    let latency = if args.latency_seconds > 0 {
        let latency = steady_latency(&pg, &pg_recvlogical, &client, &args).await?;
        println!(
            "latency at {} rows/s in transactions of {} rows: {latency}",
            args.latency_rate, args.latency_rows_per_txn
        );
        Some(latency)
    } else {
        None
    };

    Ok(Report {
        workload: "ceiling",
        body: json!({
            "workload": "ceiling",
            "what": "pg_recvlogical draining a pgoutput (proto_version 1) slot backlog",
            "postgres_version": version,
            "rows": rows,
            "rows_per_txn": args.rows_per_txn,
            "row_text_width": args.row_width,
            "load_seconds": load_time.as_secs_f64(),
            "rows_per_second_median": median,
            "runs": drains.iter().map(|d| d.to_json(rows)).collect::<Vec<_>>(),
            "latency": latency.map(|l| json!({
                "rows_per_second": args.latency_rate,
                "rows_per_txn": args.latency_rows_per_txn,
                "seconds": args.latency_seconds,
                "commit_to_receive": l.to_json(),
            })),
        }),
    })
}

pub fn find_pg_recvlogical() -> anyhow::Result<String> {
    let mut candidates: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("bin/pg_recvlogical"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    match candidates.pop() {
        Some(path) => Ok(path.display().to_string()),
        None => bail!(
            "pg_recvlogical not found under /usr/lib/postgresql/*/bin; run `scripts/services.sh up`, which installs PostgreSQL"
        ),
    }
}

fn start_receiver(
    pg: &Postgres,
    pg_recvlogical: &str,
    slot: &str,
    end_lsn: Option<&str>,
) -> anyhow::Result<Child> {
    let mut command = Command::new(pg_recvlogical);
    command
        .arg("--dbname")
        .arg(pg.conninfo(workload::DATABASE))
        .args(["--slot", slot, "--start", "--no-loop", "--file", "-"])
        .args(["-o", "proto_version=1"])
        .args([
            "-o",
            &format!("publication_names={}", workload::PUBLICATION),
        ])
        .args(["-o", "messages=true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(lsn) = end_lsn {
        command.args(["--endpos", lsn]);
    }
    command.spawn().context("starting pg_recvlogical")
}

/// The walsender serving `slot`, once the receiver has connected.
pub async fn walsender_pid(client: &tokio_postgres::Client, slot: &str) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let row = client
            .query_one(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        if let Some(pid) = row.get::<_, Option<i32>>(0) {
            return Ok(pid as u32);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("no walsender took slot {slot} within 10 s")
}

/// A marker found in the pgoutput byte stream: which prefix, its content, and when it arrived.
#[derive(Debug)]
struct Marker {
    end: bool,
    content: Vec<u8>,
    received: SystemTime,
}

/// Reads the receiver's stdout, counting bytes and reporting markers as they arrive.
fn read_stream(
    child: &mut Child,
) -> (
    mpsc::UnboundedReceiver<Marker>,
    tokio::task::JoinHandle<u64>,
) {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut scanner = MarkerScanner::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let received = SystemTime::now();
            total += n as u64;
            scanner.feed(&buf[..n], |end, content| {
                let _ = tx.send(Marker {
                    end,
                    content: content.to_vec(),
                    received,
                });
            });
        }
        total
    });
    (rx, task)
}

/// Drains `slot` with `pg_recvlogical` up to the end marker that `end_lsn` lies past.
pub async fn drain(
    pg: &Postgres,
    pg_recvlogical: &str,
    client: &tokio_postgres::Client,
    slot: &str,
    end_lsn: &str,
) -> anyhow::Result<Drain> {
    let sampler = Sampler::start(Duration::from_millis(10));
    let started = Instant::now();
    let mut child = start_receiver(pg, pg_recvlogical, slot, Some(end_lsn))?;
    sampler.watch("pg_recvlogical", child.id().context("receiver pid")?);
    let (mut markers, reader) = read_stream(&mut child);
    sampler.watch("walsender", walsender_pid(client, slot).await?);
    let elapsed = loop {
        match tokio::time::timeout(Duration::from_secs(600), markers.recv()).await {
            Ok(Some(marker)) if marker.end => break started.elapsed(),
            Ok(Some(_)) => {}
            Ok(None) => bail!("pg_recvlogical ended before the end of the backlog"),
            Err(_) => bail!("the backlog did not drain within 10 minutes"),
        }
    };
    let usage = sampler.finish().await;
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        child.kill().await.ok();
    }
    let bytes = reader.await.unwrap_or(0);
    Ok(Drain {
        elapsed,
        bytes,
        walsender: usage.get("walsender").copied().unwrap_or_default(),
        receiver: usage.get("pg_recvlogical").copied().unwrap_or_default(),
    })
}

async fn steady_latency(
    pg: &Postgres,
    pg_recvlogical: &str,
    client: &tokio_postgres::Client,
    args: &Args,
) -> anyhow::Result<Percentiles> {
    let slot = "bench_ceiling_latency";
    workload::create_slot(client, slot).await?;
    let mut child = start_receiver(pg, pg_recvlogical, slot, None)?;
    let (mut markers, reader) = read_stream(&mut child);
    walsender_pid(client, slot).await?;

    let shape = RowShape {
        rows_per_txn: args.latency_rows_per_txn.max(1),
        text_width: args.row_width,
    };
    let txns_per_second = (args.latency_rate as f64 / shape.rows_per_txn as f64).max(1.0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / txns_per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let load_until = Instant::now() + Duration::from_secs(args.latency_seconds);
    let mut samples = Vec::new();
    while Instant::now() < load_until {
        tick.tick().await;
        workload::insert_clocked_transaction(client, shape).await?;
        while let Ok(marker) = markers.try_recv() {
            samples.extend(latency_of(&marker));
        }
    }
    workload::emit_end_marker(client).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(60), markers.recv()).await {
            Ok(Some(marker)) if marker.end => break,
            Ok(Some(marker)) => samples.extend(latency_of(&marker)),
            Ok(None) => bail!("pg_recvlogical ended during the latency measurement"),
            Err(_) => bail!("the end marker did not arrive within 60 s"),
        }
    }
    child.kill().await.ok();
    reader.await.ok();
    workload::drop_slot(client, slot).await?;
    Percentiles::of(samples).context("no latency samples arrived")
}

fn latency_of(marker: &Marker) -> Option<Duration> {
    if marker.end {
        return None;
    }
    let micros: u64 = std::str::from_utf8(&marker.content).ok()?.parse().ok()?;
    let sent = UNIX_EPOCH + Duration::from_micros(micros);
    marker.received.duration_since(sent).ok()
}

/// Finds logical decoding messages with our prefixes in the raw pgoutput stream. A pgoutput
/// Message is `'M' flags:u8 lsn:u64 prefix\0 length:u32 content`; matching `prefix\0` is enough,
/// since the table's rows never contain these prefixes.
#[derive(Debug)]
struct MarkerScanner {
    pending: Vec<u8>,
    end: memmem::Finder<'static>,
    clock: memmem::Finder<'static>,
}

impl Default for MarkerScanner {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            end: memmem::Finder::new(END_MARKER),
            clock: memmem::Finder::new(CLOCK_MARKER),
        }
    }
}

impl MarkerScanner {
    /// The longest stretch a marker can span: prefix, NUL, length and a short content.
    const WINDOW: usize = 64;

    fn feed(&mut self, chunk: &[u8], mut found: impl FnMut(bool, &[u8])) {
        self.pending.extend_from_slice(chunk);
        let buf = &self.pending;
        let mut at = 0;
        // Where the unread rest starts: a marker cut off by the chunk's end, or the last bytes
        // that could begin one.
        let keep_from = loop {
            let end = self
                .end
                .find(&buf[at..])
                .map(|i| (at + i, true, END_MARKER.len()));
            let clock = self
                .clock
                .find(&buf[at..])
                .map(|i| (at + i, false, CLOCK_MARKER.len()));
            let Some((start, is_end, prefix_len)) = end.into_iter().chain(clock).min() else {
                break at.max(buf.len().saturating_sub(Self::WINDOW));
            };
            let length_at = start + prefix_len + 1;
            if buf.len() < length_at + 4 {
                break start;
            }
            if buf[start + prefix_len] != 0 {
                at = start + 1;
                continue;
            }
            let length =
                u32::from_be_bytes(buf[length_at..length_at + 4].try_into().expect("4")) as usize;
            let content_at = length_at + 4;
            if buf.len() < content_at + length {
                break start;
            }
            found(is_end, &buf[content_at..content_at + length]);
            at = content_at + length;
        };
        self.pending.drain(..keep_from);
    }
}
