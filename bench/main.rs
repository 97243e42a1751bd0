//! The tributary benchmark harness. See `bench/README.md`.
//!
//! `cargo bench --bench tributary-bench -- ceiling [--rows N] [--rows-per-txn N] [--row-width B]`
//! `cargo bench --bench tributary-bench -- source [--rows N] [--variants small,large] [--formats json,avro]`
//! `cargo bench --bench tributary-bench -- snapshot [--rows N] [--threads 1,2,4]`
//! `cargo bench --bench tributary-bench -- sink [--rows N] [--batch-size N] [--op c|u]`
//! `cargo bench --bench tributary-bench -- window [--events N] [--groups N]`
//!
//! Each workload prints a human-readable report and writes it as JSON under `target/bench/`.

mod ceiling;
mod measure;
mod sink;
mod snapshot;
mod source;
mod window;
mod workload;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tributary-bench",
    about = "Benchmarks tributary against the physical ceiling"
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
    /// Where JSON reports go.
    #[arg(long, global = true, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Ignored: `cargo bench` passes it to every bench target.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// How fast pg_recvlogical (pgoutput, proto 1) drains a slot backlog, and its commit-to-
    /// delivery latency at a steady rate: the ceiling one replication slot can deliver.
    Ceiling(ceiling::Args),
    /// tributary standalone draining a slot backlog into Kafka (exactly once; once per format,
    /// JSON and Avro) as a ratio of the ceiling measured on the same backlog, with its CPU, peak
    /// RSS, bytes per event and commit-to-visible latency. Needs the release binary:
    /// `cargo build --release --bin tributary`.
    Source(source::Args),
    /// tributary standalone with snapshot.mode=initial_only copying an orders table into Kafka
    /// (JSON without schemas, exactly once) until it exits, per snapshot.max.threads, as a ratio
    /// of one COPY of the table drained to nowhere. Needs the release binary.
    Snapshot(snapshot::Args),
    /// The PostgreSQL sink applying Debezium JSON change records (upsert mode, distinct keys)
    /// from a topic, in this process, as a ratio of one COPY of the same rows into an unlogged
    /// table; with the drain's peak RSS.
    Sink(sink::Args),
    /// The window stage aggregating Debezium JSON change events (tumbling 1-minute windows,
    /// 10k groups, sum/count/max) from a topic into PostgreSQL, in this process: events/s and
    /// the drain's peak RSS; the result must equal one SQL GROUP BY over the surviving rows.
    Window(window::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = runtime.block_on(async {
        match cli.workload {
            Workload::Ceiling(args) => ceiling::run(args).await,
            Workload::Source(args) => source::run(args, &cli.out_dir).await,
            Workload::Snapshot(args) => snapshot::run(args, &cli.out_dir).await,
            Workload::Sink(args) => sink::run(args).await,
            Workload::Window(args) => window::run(args).await,
        }
    })?;
    let path = report.save(&cli.out_dir)?;
    println!("report written to {}", path.display());
    Ok(())
}
