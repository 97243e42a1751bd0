//! The ordinary SQL connection to the source database (tokio-postgres): preflight checks,
//! publication and slot setup, catalog lookups for the relation cache, heartbeats.

use std::collections::HashMap;

use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

use super::{Error, tls};
use crate::{
    config::{AutocreateMode, PostgresSourceConfig},
    event::{BaseType, Lsn, PgType, TableId, TypeKind},
};

/// Opens a SQL connection with the connector's credentials and TLS settings.
pub async fn connect(config: &PostgresSourceConfig) -> Result<Client, Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.hostname)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.dbname)
        .application_name(format!("tributary {}", config.name))
        .connect_timeout(std::time::Duration::from_secs(30));
    if let Some(password) = &config.password {
        pg.password(secrecy::ExposeSecret::expose_secret(password));
    }
    use tls::SslMode;
    let (client, mode) = match config.ssl.mode {
        SslMode::Disable | SslMode::Allow => {
            let (client, connection) = pg.connect(NoTls).await?;
            spawn_connection(connection);
            (client, "plain")
        }
        mode => {
            pg.ssl_mode(if mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&config.ssl)?);
            let (client, connection) = pg.connect(tls).await?;
            spawn_connection(connection);
            (client, "tls")
        }
    };
    tracing::debug!(connector = %config.name, mode, "connected to PostgreSQL");
    Ok(client)
}

fn spawn_connection<C>(connection: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "source SQL connection ended");
        }
    });
}

/// What PostgreSQL says about a replication slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub confirmed_flush_lsn: Option<Lsn>,
    pub active_pid: Option<i32>,
    pub wal_status: Option<String>,
}

/// Checks what logical replication needs and names the fix for what is missing.
pub async fn preflight(client: &Client, config: &PostgresSourceConfig) -> Result<(), Error> {
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if wal_level != "logical" {
        return Err(Error::WalLevel { actual: wal_level });
    }
    let row = client
        .query_one(
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Err(Error::NoReplicationPrivilege {
            user: config.user.clone(),
        });
    }
    Ok(())
}

pub async fn slot_info(client: &Client, slot: &str) -> Result<Option<SlotInfo>, Error> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, confirmed_flush_lsn::text, active_pid, wal_status
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|row| SlotInfo {
        plugin: row.get(0),
        database: row.get(1),
        confirmed_flush_lsn: row
            .get::<_, Option<String>>(2)
            .and_then(|lsn| lsn.parse().ok()),
        active_pid: row.get(3),
        wal_status: row.get(4),
    }))
}

/// Quotes an identifier for SQL: every name is just a name, whatever it contains.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the publication when missing, as `publication.autocreate.mode` says; with `filtered`
/// an existing publication is set to the tables the include/exclude lists select.
pub async fn ensure_publication(
    client: &Client,
    config: &PostgresSourceConfig,
) -> Result<(), Error> {
    let name = &config.publication_name;
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[name])
        .await?
        .is_some();
    let quoted = quote_identifier(name);
    // skipped.operations is pushed into the publication, so skipped changes never leave the server.
    let skipped = config.skipped_operations;
    let publish: Vec<&str> = [
        ("insert", skipped.create),
        ("update", skipped.update),
        ("delete", skipped.delete),
        ("truncate", skipped.truncate),
    ]
    .into_iter()
    .filter(|(_, skip)| !skip)
    .map(|(op, _)| op)
    .collect();
    let with = format!("WITH (publish = '{}')", publish.join(", "));
    match config.publication_autocreate {
        AutocreateMode::Disabled if !exists => {
            return Err(Error::PublicationMissing {
                publication: name.clone(),
            });
        }
        AutocreateMode::Disabled => {}
        AutocreateMode::AllTables if !exists => {
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {quoted} FOR ALL TABLES {with}"
                ))
                .await?;
            info!(publication = %name, "created publication for all tables");
        }
        AutocreateMode::NoTables if !exists => {
            client
                .batch_execute(&format!("CREATE PUBLICATION {quoted} {with}"))
                .await?;
            info!(publication = %name, "created empty publication");
        }
        AutocreateMode::AllTables | AutocreateMode::NoTables => {}
        AutocreateMode::Filtered => {
            let tables = captured_tables(client, config).await?;
            if tables.is_empty() {
                warn!(publication = %name, "no table matches the include/exclude lists");
            }
            let list = tables
                .iter()
                .map(|t| {
                    format!(
                        "{}.{}",
                        quote_identifier(&t.schema),
                        quote_identifier(&t.table)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = match (exists, tables.is_empty()) {
                (false, false) => format!("CREATE PUBLICATION {quoted} FOR TABLE {list} {with}"),
                (false, true) => format!("CREATE PUBLICATION {quoted} {with}"),
                (true, false) => format!("ALTER PUBLICATION {quoted} SET TABLE {list}"),
                (true, true) => return Ok(()),
            };
            client.batch_execute(&sql).await?;
            info!(publication = %name, tables = tables.len(), "publication set to the captured tables");
        }
    }
    Ok(())
}

/// The ordinary tables the include/exclude lists select.
pub async fn captured_tables(
    client: &Client,
    config: &PostgresSourceConfig,
) -> Result<Vec<TableId>, Error> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
              ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| TableId::new(row.get::<_, String>(0), row.get::<_, String>(1)))
        .filter(|table| config.patterns.captures(table))
        .collect())
}

/// Column facts the Relation message lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFacts {
    pub not_null: bool,
    pub in_primary_key: bool,
}

/// `attnotnull` and primary-key membership of every live column of a relation, by name.
pub async fn column_facts(
    client: &Client,
    relation_id: u32,
) -> Result<HashMap<String, ColumnFacts>, Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.attnotnull, COALESCE(a.attnum = ANY(i.indkey), false)
               FROM pg_attribute a
               LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&relation_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                row.get::<_, String>(0),
                ColumnFacts {
                    not_null: row.get(1),
                    in_primary_key: row.get(2),
                },
            )
        })
        .collect())
}

/// Resolves type oids into `PgType`s (arrays, enums and domains included), caching them.
#[derive(Debug, Default)]
pub struct TypeCache {
    types: HashMap<u32, (PgType, i32)>,
}

impl TypeCache {
    /// The type and, for a domain, the domain's own type modifier (`typtypmod`).
    pub async fn resolve(&mut self, client: &Client, oid: u32) -> Result<(PgType, i32), Error> {
        if let Some(known) = self.types.get(&oid) {
            return Ok(known.clone());
        }
        let resolved = Box::pin(self.lookup(client, oid)).await?;
        self.types.insert(oid, resolved.clone());
        Ok(resolved)
    }

    async fn lookup(&mut self, client: &Client, oid: u32) -> Result<(PgType, i32), Error> {
        let Some(row) = client
            .query_opt(
                "SELECT t.typname::text, t.typtype::text, t.typcategory::text, t.typelem,
                        t.typbasetype, t.typtypmod,
                        ARRAY(SELECT e.enumlabel::text FROM pg_enum e
                               WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
                   FROM pg_type t WHERE t.oid = $1",
                &[&oid],
            )
            .await?
        else {
            return Ok((
                PgType {
                    oid,
                    name: format!("oid {oid}"),
                    kind: TypeKind::Unknown,
                },
                -1,
            ));
        };
        let name: String = row.get(0);
        let typtype: String = row.get(1);
        let category: String = row.get(2);
        let element: u32 = row.get(3);
        let base: u32 = row.get(4);
        let typmod: i32 = row.get(5);
        let labels: Vec<String> = row.get(6);
        let kind = if let Some(builtin) = BaseType::from_oid(oid) {
            TypeKind::Base(builtin)
        } else if category == "A" && element != 0 {
            TypeKind::Array(Box::new(self.resolve(client, element).await?.0))
        } else if typtype == "e" {
            TypeKind::Enum(labels)
        } else if typtype == "d" && base != 0 {
            TypeKind::Domain(Box::new(self.resolve(client, base).await?.0))
        } else if let Some(extension) = BaseType::from_extension_name(&name) {
            TypeKind::Base(extension)
        } else {
            TypeKind::Unknown
        };
        Ok((PgType { oid, name, kind }, typmod))
    }
}

/// Emits a transactional logical decoding message: it arrives in the stream inside its own
/// Begin/Commit, so even a slot whose tables are idle gets a commit to confirm.
/// A non-transactional logical decoding message: decoded in WAL order, so a reader that sees it
/// has seen every transaction committed before it. Returns its LSN.
pub async fn emit_catch_up_marker(client: &Client, prefix: &str) -> Result<Lsn, Error> {
    let row = client
        .query_one(
            "SELECT pg_logical_emit_message(false, $1, '')::text",
            &[&prefix],
        )
        .await?;
    let text: String = row.get(0);
    text.parse().map_err(|_| Error::SnapshotWorker {
        reason: format!("pg_logical_emit_message returned {text:?}, not an LSN"),
    })
}

pub async fn emit_heartbeat(client: &Client, prefix: &str) -> Result<(), Error> {
    client
        .execute(
            "SELECT pg_logical_emit_message(true, $1, (extract(epoch FROM now()) * 1000)::bigint::text)",
            &[&prefix],
        )
        .await?;
    Ok(())
}
