//! PostgreSQL for tests: the server started by `scripts/services.sh`, one fresh database per test.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::{START_SERVICES, run_detached, unique_name};

pub fn host() -> String {
    std::env::var("TRIBUTARY_PG_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned())
}

pub fn port() -> u16 {
    match std::env::var("TRIBUTARY_PG_PORT") {
        Ok(port) => port
            .parse()
            .unwrap_or_else(|_| panic!("TRIBUTARY_PG_PORT={port:?} is not a port number")),
        Err(_) => 5432,
    }
}

/// The superuser configuration for `dbname` on the test server.
pub fn superuser_config(dbname: &str) -> Config {
    superuser_config_at(&host(), port(), dbname)
}

pub fn superuser_config_at(host: &str, port: u16, dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host(host)
        .port(port)
        .user("postgres")
        .dbname(dbname)
        .application_name("tributary-tests")
        .connect_timeout(Duration::from_secs(5));
    config
}

/// Connects, or says why not and how to start the server.
pub async fn try_connect(config: &Config) -> Result<Client, String> {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "?".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (client, connection) = config.connect(NoTls).await.map_err(|err| {
        let err = with_causes(&err);
        format!("PostgreSQL is not reachable at {host}:{port} ({err}); {START_SERVICES}")
    })?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the database is dropped under it.
        let _ = connection.await;
    });
    Ok(client)
}

pub async fn connect(config: &Config) -> Client {
    try_connect(config)
        .await
        .unwrap_or_else(|message| panic!("{message}"))
}

/// A database that exists for one test: created empty, dropped (with its replication slots)
/// when the value is dropped.
pub struct TestDatabase {
    pub name: String,
    client: Client,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = connect(&superuser_config("postgres")).await;
        let name = unique_name("tributary_test");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|err| {
                panic!("cannot create test database {name}: {}", with_causes(&err))
            });
        let client = connect(&superuser_config(&name)).await;
        Self { name, client }
    }

    /// A superuser connection to this database.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(async move {
            let Ok(admin) = try_connect(&superuser_config("postgres")).await else {
                return;
            };
            // A database with replication slots cannot be dropped; walsenders hold active ones.
            // DROP DATABASE must run on its own, outside the implicit transaction of a batch.
            let cleanup = [
                format!(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                       WHERE database = '{name}' AND active_pid IS NOT NULL"
                ),
                "SELECT pg_sleep(0.1)".to_owned(),
                format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                       WHERE database = '{name}'"
                ),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ];
            for statement in cleanup {
                if let Err(err) = admin.batch_execute(&statement).await {
                    eprintln!("could not drop test database {name}: {}", with_causes(&err));
                    return;
                }
            }
        });
    }
}

/// `err` and its causes: tokio-postgres says only "db error" at the top.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
