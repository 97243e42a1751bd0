//! The PostgreSQL side of a workload: a benchmark database with Sequin's table shape, a
//! publication, slots, and generated row changes.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_postgres::{Client, Config, NoTls};

pub const DATABASE: &str = "tributary_bench";
pub const TABLE: &str = "bench";
pub const PUBLICATION: &str = "bench_pub";
/// Prefix of the logical decoding message that closes a backlog: all rows are before it.
pub const END_MARKER: &[u8] = b"tributary-bench-end";
/// Prefix of the logical decoding message that carries a transaction's commit-time clock.
pub const CLOCK_MARKER: &[u8] = b"tributary-bench-clock";

/// Where the benchmark's PostgreSQL is: the one `scripts/services.sh up` starts.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub host: String,
    pub port: u16,
}

impl Postgres {
    pub fn from_env() -> anyhow::Result<Self> {
        let port = match std::env::var("TRIBUTARY_PG_PORT") {
            Ok(port) => port
                .parse()
                .context("TRIBUTARY_PG_PORT is not a port number")?,
            Err(_) => 5432,
        };
        let host = std::env::var("TRIBUTARY_PG_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
        Ok(Self { host, port })
    }

    /// libpq connection string for `dbname`, as pg_recvlogical takes it.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname} application_name=tributary-bench",
            self.host, self.port
        )
    }

    pub async fn connect(&self, dbname: &str) -> anyhow::Result<Client> {
        let mut config = Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user("postgres")
            .dbname(dbname)
            .application_name("tributary-bench")
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config.connect(NoTls).await.with_context(|| {
            format!(
                "PostgreSQL is not reachable at {}:{}; start it with `scripts/services.sh up`",
                self.host, self.port
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Recreates the benchmark database with its table and publication, and returns a
    /// connection to it.
    pub async fn fresh_database(&self) -> anyhow::Result<Client> {
        let admin = self.connect("postgres").await?;
        admin
            .batch_execute(&format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE database = '{DATABASE}' AND NOT active"
            ))
            .await
            .context("dropping the previous run's slots")?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .await
            .context("dropping the previous benchmark database")?;
        admin
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .context("creating the benchmark database")?;
        let client = self.connect(DATABASE).await?;
        client
            .batch_execute(&format!(
                "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, s text, n numeric(12,2),
                                       ts timestamptz, j jsonb, updated_at timestamp);
                 CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE};"
            ))
            .await
            .context("creating the benchmark table and publication")?;
        Ok(client)
    }

    pub async fn server_version(client: &Client) -> anyhow::Result<String> {
        let row = client.query_one("SHOW server_version", &[]).await?;
        Ok(row.get(0))
    }
}

pub async fn create_slot(client: &Client, slot: &str) -> anyhow::Result<()> {
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .with_context(|| format!("creating slot {slot}"))?;
    Ok(())
}

pub async fn drop_slot(client: &Client, slot: &str) -> anyhow::Result<()> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .with_context(|| format!("dropping slot {slot}"))?;
    Ok(())
}

/// The shape of generated row changes.
#[derive(Debug, Clone, Copy)]
pub struct RowShape {
    pub rows_per_txn: u64,
    /// Length of the text column; the other columns add about 60 bytes.
    pub text_width: u32,
}

impl RowShape {
    fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {TABLE} (s, n, ts, j, updated_at)
             SELECT repeat('x', {}), (g % 100000) * 0.01, now(), jsonb_build_object('g', g),
                    clock_timestamp()
               FROM generate_series(1, {}) g",
            self.text_width, self.rows_per_txn
        )
    }
}

/// Inserts `rows` rows in transactions of `shape.rows_per_txn`, then a transactional end marker
/// message; returns the WAL position after the marker and the time the load took.
pub async fn load_backlog(
    client: &Client,
    rows: u64,
    shape: RowShape,
) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    let insert = shape.insert_sql();
    let transactions = rows.div_ceil(shape.rows_per_txn);
    for _ in 0..transactions {
        client
            .batch_execute(&insert)
            .await
            .context("loading rows")?;
    }
    let end = emit_end_marker(client).await?;
    Ok((end, started.elapsed()))
}

pub async fn emit_end_marker(client: &Client) -> anyhow::Result<String> {
    // Committed synchronously even when the session loads with synchronous_commit=off: only a
    // flushed commit puts the WAL write position below past it.
    client
        .batch_execute(&format!(
            "BEGIN;
             SET LOCAL synchronous_commit = on;
             SELECT pg_logical_emit_message(true, '{}', 'end');
             COMMIT;",
            std::str::from_utf8(END_MARKER).expect("ASCII")
        ))
        .await
        .context("emitting the end marker")?;
    // The message's transaction has committed: the WAL position now lies past its commit record.
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?;
    Ok(row.get(0))
}

/// One transaction of `shape.rows_per_txn` rows, committed.
pub async fn insert_transaction(client: &Client, shape: RowShape) -> anyhow::Result<()> {
    client
        .batch_execute(&shape.insert_sql())
        .await
        .context("inserting a transaction")
}

/// One transaction of `shape.rows_per_txn` rows whose last change is a message carrying the
/// server clock in microseconds since the epoch, taken just before commit.
pub async fn insert_clocked_transaction(client: &Client, shape: RowShape) -> anyhow::Result<()> {
    let sql = format!(
        "BEGIN;
         {};
         SELECT pg_logical_emit_message(true, '{}',
                (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text);
         COMMIT;",
        shape.insert_sql(),
        std::str::from_utf8(CLOCK_MARKER).expect("ASCII")
    );
    client
        .batch_execute(&sql)
        .await
        .context("inserting a clocked transaction")
}
