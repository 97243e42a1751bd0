//! Connections to the target database (plain or TLS, as `sslmode` in `connection.url` asks) and
//! the checks `PUT /connector-plugins/{plugin}/config/validate` runs against it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, NoTls};
use tracing::debug;

use super::{Error, PostgresSinkConfig};
use crate::{
    config::{SslConfig, SslMode},
    source::postgres::{tls, validate::Finding},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Validation answers a person waiting on a REST call.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn connect(config: &PostgresSinkConfig) -> Result<Client, Error> {
    connect_as(config, "").await
}

/// Connects with `application_name` "tributary sink <connector><role>".
pub(crate) async fn connect_as(config: &PostgresSinkConfig, role: &str) -> Result<Client, Error> {
    connect_to(
        &config.target(),
        &format!("tributary sink {}{role}", config.name),
    )
    .await
}

/// Where a connector writes: the parts of its `connection.url` and its credentials.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetDatabase<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
    pub password: Option<&'a SecretString>,
    pub ssl: &'a SslConfig,
}

/// A connection to `target` (plain or TLS as its `sslmode` asks), named `application_name`,
/// its driver task spawned.
pub(crate) async fn connect_to(
    target: &TargetDatabase<'_>,
    application_name: &str,
) -> Result<Client, Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(target.host)
        .port(target.port)
        .user(target.user)
        .dbname(target.dbname)
        .application_name(application_name)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(password) = target.password {
        pg.password(password.expose_secret());
    }
    let context = || {
        format!(
            "connecting to {}:{}/{} (sslmode={})",
            target.host, target.port, target.dbname, target.ssl.mode
        )
    };
    let client = match target.ssl.mode {
        SslMode::Disable | SslMode::Allow => {
            let (client, connection) = pg
                .connect(NoTls)
                .await
                .map_err(Error::database(context()))?;
            spawn_connection(connection);
            client
        }
        mode => {
            pg.ssl_mode(if mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls_config = tls::client_config(target.ssl)
                .map_err(|e| Error::Tls(format!("{}: {e}", context())))?;
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
            let (client, connection) = pg.connect(tls).await.map_err(Error::database(context()))?;
            spawn_connection(connection);
            client
        }
    };
    Ok(client)
}

fn spawn_connection<C>(connection: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(error = %error, "target SQL connection ended");
        }
    });
}

/// Connects to `target` as `connector` would and checks what it needs there: that it can create
/// the offsets and generation tables in `public` (or they exist). Each problem is reported on its
/// config key (`connection.url`, `connection.username`).
pub(crate) async fn validate_target(target: &TargetDatabase<'_>, connector: &str) -> Vec<Finding> {
    let application_name = format!("tributary {connector} (validate)");
    let client =
        match tokio::time::timeout(VALIDATE_TIMEOUT, connect_to(target, &application_name)).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return vec![Finding::error("connection.url", error.to_string())],
            Err(_) => {
                return vec![Finding::error(
                    "connection.url",
                    format!(
                        "no answer from {}:{} within {VALIDATE_TIMEOUT:?}; check host and port",
                        target.host, target.port
                    ),
                )];
            }
        };
    let query = "SELECT has_schema_privilege('public', 'CREATE')
                        OR (to_regclass('public.tributary_offsets') IS NOT NULL
                            AND to_regclass('public.tributary_sink_generations') IS NOT NULL)";
    match client.query_one(query, &[]).await {
        Ok(row) if row.get::<_, bool>(0) => Vec::new(),
        Ok(_) => vec![Finding::error(
            "connection.username",
            format!(
                "user {} cannot create the tables tributary_offsets and \
                 tributary_sink_generations in schema public; GRANT CREATE ON SCHEMA public TO {}",
                target.user, target.user
            ),
        )],
        Err(error) => vec![Finding::error(
            "connection.url",
            format!("checking privileges: {error}"),
        )],
    }
}

/// The sink's checks against its target (see [`validate_target`]).
pub async fn validate_live(config: &PostgresSinkConfig) -> Vec<Finding> {
    validate_target(&config.target(), &config.name).await
}

impl PostgresSinkConfig {
    /// The database this sink writes to.
    pub(crate) fn target(&self) -> TargetDatabase<'_> {
        TargetDatabase {
            host: &self.host,
            port: self.port,
            dbname: &self.dbname,
            user: &self.user,
            password: self.password.as_ref(),
            ssl: &self.ssl,
        }
    }
}
