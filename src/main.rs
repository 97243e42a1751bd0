//! The `tributary` command line: the worker (`serve`, `standalone`) and a client of its REST
//! API (`connectors`, in `cli`).

mod cli;

use std::{io::Write, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tributary::{
    config::{ConnectorConfig, PostgresSourceConfig, WorkerConfig},
    kafka::ClientSettings,
    runtime::{
        self,
        store::{ConfigStore, StatusStore},
        worker::Worker,
    },
    source::postgres::stream::Destination,
};

const EXAMPLES: &str = "\
Examples:
  tributary serve --config config/tributary.toml
  tributary connectors create -f connectors/postgres-source.json
  tributary connectors list
  tributary connectors status shop-source
  tributary standalone --config config/tributary.toml connectors/postgres-source.json

The REST API (Kafka Connect's) listens on 127.0.0.1:8083 and the schema registry on
127.0.0.1:8081 by default; docs/getting-started.md walks through a first pipeline.";

/// Change data capture from PostgreSQL to Kafka, exactly once.
#[derive(Debug, Parser)]
#[command(
    name = "tributary",
    version,
    about,
    arg_required_else_help = true,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the worker with the Kafka Connect-compatible REST API; stops cleanly on SIGTERM.
    ///
    /// Example: tributary serve --config config/tributary.toml, then
    /// curl -X POST -H 'Content-Type: application/json' --data @connectors/postgres-source.json
    /// http://127.0.0.1:8083/connectors
    Serve {
        /// The worker configuration (TOML); TRIBUTARY_* environment variables override it.
        #[arg(long, default_value = "config/tributary.toml")]
        config: PathBuf,
    },
    /// Runs connectors in the foreground, like Kafka Connect's standalone mode; stops cleanly on
    /// SIGTERM or Ctrl-C.
    ///
    /// Example: tributary standalone --config config/tributary.toml connectors/postgres-source.json
    Standalone {
        /// The worker configuration (TOML); TRIBUTARY_* environment variables override it.
        #[arg(long, default_value = "config/tributary.toml")]
        config: PathBuf,
        /// Connector configurations: Kafka Connect JSON, as POSTed to /connectors.
        #[arg(required = true)]
        connectors: Vec<PathBuf>,
    },
    /// Manages the connectors of a running `tributary serve` over its REST API.
    Connectors(cli::connectors::ConnectorsArgs),
    /// Prints reference documentation generated from the code.
    #[command(hide = true)]
    Docs {
        #[command(subcommand)]
        page: DocsPage,
    },
}

#[derive(Debug, Subcommand)]
enum DocsPage {
    /// docs/connectors.md: every plugin's config keys.
    Connectors,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The error and its causes, one line, without a backtrace: they say what to fix.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Connectors(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let shown = runtime.block_on(cli::connectors::run(args))?;
            print_out(&shown)
        }
        Command::Docs {
            page: DocsPage::Connectors,
        } => print_out(&cli::docs::connectors_reference()),
        Command::Standalone { config, connectors } => {
            init_logging();
            worker_runtime()?.block_on(standalone(config, connectors))
        }
        Command::Serve { config } => {
            let log_levels = init_logging();
            worker_runtime()?.block_on(serve(config, log_levels))
        }
    }
}

/// Writes to standard output; a closed pipe (`| head`) is not an error worth a message.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

fn worker_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logging for the worker commands, behind a reload handle so `/admin/loggers` can change
/// levels at run time.
fn init_logging() -> tributary::api::LogLevels {
    use tracing_subscriber::{EnvFilter, layer::SubscriberExt, reload, util::SubscriberInitExt};
    let initial = std::env::var("TRIBUTARY_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&initial).unwrap_or_else(|_| EnvFilter::new("info"));
    // The filter sits behind a reload handle so /admin/loggers can change levels at run time.
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .init();
    let apply: tributary::api::ApplyFilter = std::sync::Arc::new(move |directives: &str| {
        let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    let root = initial.split(',').next().unwrap_or("info").to_owned();
    tributary::api::LogLevels::new(&root, apply)
}

async fn standalone(config_path: PathBuf, connector_paths: Vec<PathBuf>) -> anyhow::Result<()> {
    let worker = WorkerConfig::load(&config_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let mut sources = Vec::new();
    for path in &connector_paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read connector config {}", path.display()))?;
        let connector = ConnectorConfig::from_json(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let source = PostgresSourceConfig::from_connector(&connector)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if !source.ignored_keys.is_empty() {
            warn!(connector = %source.name, keys = ?source.ignored_keys, "these keys have no effect in tributary");
        }
        sources.push(source);
    }
    let destination = destination(&worker);

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for source in sources {
        info!(connector = %source.name, "starting");
        tasks.spawn(runtime::supervise_postgres_source(
            source,
            destination.clone(),
            shutdown.clone(),
        ));
    }
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stopping");
        signals.cancel();
    });
    let mut failed = false;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(_)) => failed = true,
            Err(join) => {
                warn!(error = %join, "a connector task panicked");
                failed = true;
            }
        }
    }
    if failed {
        bail!("a connector stopped with an error (see the log above)");
    }
    Ok(())
}

fn destination(worker: &WorkerConfig) -> Destination {
    let mut kafka = ClientSettings::new(&worker.kafka.bootstrap_servers);
    kafka.overrides = worker
        .kafka
        .client
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Destination {
        kafka,
        offsets_topic: worker.worker.offsets_topic.clone(),
        metrics: tributary::metrics::Metrics::new(),
    }
}

async fn serve(config_path: PathBuf, log_levels: tributary::api::LogLevels) -> anyhow::Result<()> {
    let config = WorkerConfig::load(&config_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let listener = tokio::net::TcpListener::bind(&config.rest.listen)
        .await
        .with_context(|| format!("cannot listen on {} (rest.listen)", config.rest.listen))?;
    let address = listener.local_addr().context("listener address")?;
    let destination = destination(&config);
    // The registry first: restored connectors with the Avro converter register at once.
    let stop_registry = CancellationToken::new();
    let registry = serve_registry(&config, &destination.kafka, stop_registry.clone()).await?;
    let worker = Worker::with_stores(
        destination.clone(),
        address.to_string(),
        ConfigStore::new(&destination.kafka, &config.worker.configs_topic),
        StatusStore::new(&destination.kafka, &config.worker.status_topic),
    )
    .await
    .context("cannot read the stored connectors")?;
    info!(address = %address, "REST API listening");
    let auth = tributary::api::RestAuth {
        bearer_token: config.rest.bearer_token.clone(),
        basic: config.rest.basic_auth.clone(),
    };
    if auth.bearer_token.is_some() || auth.basic.is_some() {
        info!("REST API requires authentication");
    }
    let options = tributary::api::ApiOptions {
        loggers: Some(log_levels),
        auth,
        topic_tracking: config.worker.topic_tracking_enable,
        topic_tracking_reset: config.worker.topic_tracking_allow_reset,
    };
    let app = tributary::api::router_with(worker.clone(), options);
    axum::serve(listener, app)
        .with_graceful_shutdown(wait_for_stop_signal())
        .await
        .context("REST server failed")?;
    stop_registry.cancel();
    if let Some(registry) = registry {
        let _ = registry.await;
    }
    info!("stopping");
    worker.shutdown().await;
    Ok(())
}

/// Opens the schema registry (replaying its topic) and serves its API on its own port, unless
/// `[registry] enabled = false`.
async fn serve_registry(
    config: &WorkerConfig,
    kafka: &ClientSettings,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let section = &config.registry;
    if !section.enabled {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&section.listen)
        .await
        .with_context(|| format!("cannot listen on {} (registry.listen)", section.listen))?;
    let registry = tributary::registry::SchemaRegistry::open(
        kafka,
        &section.topic,
        std::time::Duration::from_secs(60),
    )
    .await
    .with_context(|| format!("cannot read the schemas from topic {}", section.topic))?;
    info!(address = %section.listen, topic = %section.topic, "schema registry listening");
    let app = tributary::api::registry::router(registry);
    Ok(Some(tokio::spawn(async move {
        let stopped = async move { stop.cancelled().await };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            warn!(error = %error, "schema registry server failed");
        }
    })))
}

async fn wait_for_stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
