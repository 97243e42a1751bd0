//! Validation of a PostgreSQL source config before it runs: the static checks of the config
//! keys, then, when those pass, live checks against the database with the connector's own
//! credentials. Every problem becomes a [`Finding`] on the config key it concerns, with the SQL
//! (or setting) that fixes it, so that Kafka Connect's `config/validate` can show it next to
//! the field.
//!
//! The live checks first read what they need from the server into [`ServerFacts`]; each check
//! is then a small pure function of the config and those facts.

use std::{collections::BTreeSet, fmt, time::Duration};

use tokio_postgres::Client;

use super::{
    Error,
    database::{self, SlotInfo, quote_identifier},
};
use crate::{
    config::{AutocreateMode, ConnectorConfig, PostgresSourceConfig, ValidationError},
    event::{ReplicaIdentity, TableId},
};

/// How long validation waits for the connection: a REST caller is waiting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a finding makes the config invalid or is advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The connector cannot work (or would lose or miss changes) until this is fixed.
    Error,
    /// The connector works, but an operator should know.
    Warning,
}

/// One finding: the config key it concerns, and a message that says what is wrong and the SQL
/// (or setting) that fixes it. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub message: String,
    pub severity: Severity,
}

impl Finding {
    pub fn error(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    pub fn warning(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
            severity: Severity::Warning,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl From<ValidationError> for Finding {
    fn from(error: ValidationError) -> Self {
        Self::error(&error.key, error.message)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity} on {}: {}", self.key, self.message)
    }
}

/// Validates a connector config: the static checks first (each bad key a finding), then, when
/// those pass, the live checks against the database.
pub async fn validate(connector: &ConnectorConfig) -> Vec<Finding> {
    match PostgresSourceConfig::from_connector(connector) {
        Ok(config) => validate_live(&config).await,
        Err(errors) => errors.0.into_iter().map(Finding::from).collect(),
    }
}

/// The live checks of an already parsed config.
pub async fn validate_live(config: &PostgresSourceConfig) -> Vec<Finding> {
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, database::connect(config)).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return vec![connection_finding(config, &error)],
        Err(_) => {
            return vec![Finding::error(
                "database.hostname",
                format!(
                    "no answer from PostgreSQL at {}:{} within {} s; check database.hostname, database.port and the network",
                    config.hostname,
                    config.port,
                    CONNECT_TIMEOUT.as_secs()
                ),
            )];
        }
    };
    match ServerFacts::read(&client, config).await {
        Ok(facts) => check_all(config, &facts),
        Err(error) => vec![Finding::error(
            "database.hostname",
            format!("connected, but could not read the server's settings and catalogs: {error}"),
        )],
    }
}

/// Every live check over facts already read.
fn check_all(config: &PostgresSourceConfig, facts: &ServerFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(check_wal_level(facts));
    findings.extend(check_replication_privilege(facts));
    findings.extend(check_publication(config, facts));
    findings.extend(check_replica_identity(config, facts));
    findings.extend(check_any_table(facts));
    findings.extend(check_wal_keep_size(facts));
    findings.extend(check_slot(config, facts));
    findings
}

/// Puts a connection failure on the key most likely to be wrong, with the server's message.
fn connection_finding(config: &PostgresSourceConfig, error: &Error) -> Finding {
    let target = format!(
        "{}:{} (database {}, user {})",
        config.hostname, config.port, config.dbname, config.user
    );
    let Error::Sql(sql) = error else {
        // Only the TLS setup fails before the connection is attempted.
        let key = if config.ssl.root_cert.is_some() {
            "database.sslrootcert"
        } else {
            "database.sslmode"
        };
        return Finding::error(key, format!("cannot set up TLS for {target}: {error}"));
    };
    let Some(db) = sql.as_db_error() else {
        let text = with_causes(sql);
        // tokio-postgres has no error kind to match on; these texts are its own, stable ones.
        if text.contains("password missing") {
            return Finding::error(
                "database.password",
                format!(
                    "the server asks for a password for user {}; set database.password",
                    config.user
                ),
            );
        }
        if text.contains("TLS") || text.contains("tls") || text.contains("certificate") {
            return Finding::error(
                "database.sslmode",
                format!(
                    "TLS with {target} failed: {text}; check database.sslmode and database.sslrootcert"
                ),
            );
        }
        return Finding::error(
            "database.hostname",
            format!(
                "cannot connect to PostgreSQL at {target}: {text}; check database.hostname and database.port, and that the server accepts TCP connections"
            ),
        );
    };
    let server = format!("{} ({})", db.message(), db.code().code());
    match db.code().code() {
        "28P01" => Finding::error(
            "database.password",
            format!(
                "authentication failed at {target}: {server}; check database.password (and database.user)"
            ),
        ),
        "28000" => Finding::error(
            "database.user",
            format!(
                "the server does not accept user {} at {target}: {server}; check database.user and the server's pg_hba.conf",
                config.user
            ),
        ),
        "3D000" => Finding::error(
            "database.dbname",
            format!(
                "{server}; check database.dbname or CREATE DATABASE {}",
                quote_identifier(&config.dbname)
            ),
        ),
        "42501" => Finding::error(
            "database.user",
            format!(
                "user {} may not connect at {target}: {server}; GRANT CONNECT ON DATABASE {} TO {}",
                config.user,
                quote_identifier(&config.dbname),
                quote_identifier(&config.user)
            ),
        ),
        _ => Finding::error(
            "database.hostname",
            format!("PostgreSQL at {target} refused the connection: {server}"),
        ),
    }
}

/// The error and its causes: tokio-postgres puts what happened (refused, timed out) in them.
fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// What the live checks need to know about the server, read with the connector's role.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerFacts {
    wal_level: String,
    /// `None` before PostgreSQL 13, which has no such setting.
    max_slot_wal_keep_size: Option<String>,
    role: RoleFacts,
    publication: Option<PublicationFacts>,
    /// The captured tables, in order.
    tables: Vec<TableFacts>,
    slot: Option<SlotInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleFacts {
    name: String,
    superuser: bool,
    replication: bool,
    /// May create publications in the database (`CREATE` on it).
    can_create: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PublicationFacts {
    all_tables: bool,
    /// The role owns it (directly or by membership), so it may alter it.
    owned: bool,
    owner: String,
    /// Published tables, partitions mapped to their root (as the captured tables are).
    tables: BTreeSet<TableId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TableFacts {
    id: TableId,
    replica_identity: Option<ReplicaIdentity>,
    has_primary_key: bool,
    /// An index is marked as the replica identity (`REPLICA IDENTITY USING INDEX` whose index
    /// still exists).
    has_identity_index: bool,
    owned: bool,
    owner: String,
}

impl TableFacts {
    /// Whether PostgreSQL can log which row an UPDATE or DELETE changed: without that, it
    /// rejects UPDATE and DELETE on the table once it is published.
    fn identifies_rows(&self) -> bool {
        match self.replica_identity {
            Some(ReplicaIdentity::Full) => true,
            Some(ReplicaIdentity::Default) => self.has_primary_key,
            Some(ReplicaIdentity::Index) => self.has_identity_index,
            Some(ReplicaIdentity::Nothing) | None => false,
        }
    }
}

impl ServerFacts {
    async fn read(client: &Client, config: &PostgresSourceConfig) -> Result<Self, Error> {
        let row = client
            .query_one(
                "SELECT current_setting('wal_level'),
                        current_setting('max_slot_wal_keep_size', true),
                        r.rolname::text, r.rolsuper, r.rolreplication,
                        has_database_privilege(current_database(), 'CREATE')
                   FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await?;
        let role = RoleFacts {
            name: row.get(2),
            superuser: row.get(3),
            replication: row.get(4),
            can_create: row.get(5),
        };
        let captured = database::captured_tables(client, config).await?;
        Ok(Self {
            wal_level: row.get(0),
            max_slot_wal_keep_size: row.get(1),
            role,
            publication: read_publication(client, &config.publication_name).await?,
            tables: read_tables(client, &captured).await?,
            slot: database::slot_info(client, &config.slot_name).await?,
        })
    }
}

async fn read_publication(client: &Client, name: &str) -> Result<Option<PublicationFacts>, Error> {
    let Some(row) = client
        .query_opt(
            "SELECT puballtables, pg_has_role(pubowner, 'USAGE'), pg_get_userbyid(pubowner)::text
               FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let tables = client
        .query(
            "SELECT DISTINCT rn.nspname::text, rc.relname::text
               FROM pg_publication_tables pt
               JOIN pg_namespace n ON n.nspname = pt.schemaname
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
               JOIN pg_class rc ON rc.oid = COALESCE(pg_partition_root(c.oid::regclass), c.oid)
               JOIN pg_namespace rn ON rn.oid = rc.relnamespace
              WHERE pt.pubname = $1",
            &[&name],
        )
        .await?;
    Ok(Some(PublicationFacts {
        all_tables: row.get(0),
        owned: row.get(1),
        owner: row.get(2),
        tables: tables
            .iter()
            .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect(),
    }))
}

async fn read_tables(client: &Client, captured: &[TableId]) -> Result<Vec<TableFacts>, Error> {
    let schemas: Vec<&str> = captured.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = captured.iter().map(|t| t.table.as_str()).collect();
    let rows = client
        .query(
            "SELECT t.schema_name, t.table_name, c.relreplident::text,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
                    pg_has_role(c.relowner, 'USAGE'), pg_get_userbyid(c.relowner)::text
               FROM unnest($1::text[], $2::text[]) AS t(schema_name, table_name)
               JOIN pg_namespace n ON n.nspname = t.schema_name
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
              ORDER BY 1, 2",
            &[&schemas, &names],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| TableFacts {
            id: TableId::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            replica_identity: row
                .get::<_, String>(2)
                .bytes()
                .next()
                .and_then(ReplicaIdentity::from_code),
            has_primary_key: row.get(3),
            has_identity_index: row.get(4),
            owned: row.get(5),
            owner: row.get(6),
        })
        .collect())
}

/// `"schema"."table"`, for SQL shown to the operator.
fn qualified(table: &TableId) -> String {
    format!(
        "{}.{}",
        quote_identifier(&table.schema),
        quote_identifier(&table.table)
    )
}

fn qualified_list<'a>(tables: impl IntoIterator<Item = &'a TableId>) -> String {
    tables
        .into_iter()
        .map(qualified)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_wal_level(facts: &ServerFacts) -> Option<Finding> {
    (facts.wal_level != "logical").then(|| {
        Finding::error(
            "database.hostname",
            format!(
                "the server has wal_level = {}; logical replication needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL",
                facts.wal_level
            ),
        )
    })
}

fn check_replication_privilege(facts: &ServerFacts) -> Option<Finding> {
    let role = &facts.role;
    (!role.replication && !role.superuser).then(|| {
        Finding::error(
            "database.user",
            format!(
                "role {} may not open a replication connection: run ALTER ROLE {} REPLICATION; (or connect as a superuser)",
                role.name,
                quote_identifier(&role.name)
            ),
        )
    })
}

/// Whether the publication exists or can be created as `publication.autocreate.mode` says,
/// and whether it publishes every captured table.
fn check_publication(config: &PostgresSourceConfig, facts: &ServerFacts) -> Vec<Finding> {
    let name = &config.publication_name;
    let quoted = quote_identifier(name);
    let role = &facts.role;
    let user = quote_identifier(&role.name);
    let captured: Vec<&TableId> = facts.tables.iter().map(|t| &t.id).collect();
    let mut findings = Vec::new();
    let Some(publication) = &facts.publication else {
        let for_tables = if captured.is_empty() {
            "FOR ALL TABLES".to_owned()
        } else {
            format!("FOR TABLE {}", qualified_list(captured.iter().copied()))
        };
        match config.publication_autocreate {
            AutocreateMode::Disabled => findings.push(Finding::error(
                "publication.name",
                format!(
                    "publication {name} does not exist and publication.autocreate.mode = disabled: create it, e.g. CREATE PUBLICATION {quoted} {for_tables};"
                ),
            )),
            AutocreateMode::AllTables if !role.superuser => findings.push(Finding::error(
                "publication.autocreate.mode",
                format!(
                    "publication {name} does not exist, and creating it FOR ALL TABLES needs a superuser, which role {} is not: set publication.autocreate.mode = filtered, or have a superuser run CREATE PUBLICATION {quoted} FOR ALL TABLES;",
                    role.name
                ),
            )),
            _ if !role.superuser && !role.can_create => findings.push(Finding::error(
                "publication.autocreate.mode",
                format!(
                    "publication {name} does not exist and role {} may not create publications in database {}: run GRANT CREATE ON DATABASE {} TO {user}; or create the publication (CREATE PUBLICATION {quoted} {for_tables};) and set publication.autocreate.mode = disabled",
                    role.name,
                    config.dbname,
                    quote_identifier(&config.dbname)
                ),
            )),
            _ => {}
        }
        if config.publication_autocreate == AutocreateMode::Filtered {
            findings.extend(check_table_ownership(config, facts));
        }
        return findings;
    };
    if config.publication_autocreate == AutocreateMode::Filtered {
        // The connector sets the publication's tables itself at every start, which PostgreSQL
        // refuses for a FOR ALL TABLES publication.
        if publication.all_tables {
            findings.push(Finding::error(
                "publication.autocreate.mode",
                format!(
                    "publication {name} is FOR ALL TABLES, whose tables publication.autocreate.mode = filtered cannot set: use publication.autocreate.mode = all_tables (or disabled), or DROP PUBLICATION {quoted}; so that it is created for the captured tables"
                ),
            ));
            return findings;
        }
        if !publication.owned && !role.superuser {
            findings.push(Finding::error(
                "publication.autocreate.mode",
                format!(
                    "publication.autocreate.mode = filtered alters publication {name} at start, but it is owned by {} and not by role {}: run ALTER PUBLICATION {quoted} OWNER TO {user}; or set publication.autocreate.mode = disabled and maintain the publication yourself",
                    publication.owner, role.name
                ),
            ));
        }
        findings.extend(check_table_ownership(config, facts));
        return findings;
    }
    if publication.all_tables {
        return findings;
    }
    let missing: Vec<&TableId> = captured
        .into_iter()
        .filter(|t| !publication.tables.contains(t))
        .collect();
    if !missing.is_empty() {
        findings.push(Finding::error(
            "publication.name",
            format!(
                "publication {name} does not publish {}, which the include/exclude lists capture, so their changes would never arrive: run ALTER PUBLICATION {quoted} ADD TABLE {};",
                missing
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                qualified_list(missing.iter().copied())
            ),
        ));
    }
    findings
}

/// `filtered` puts the captured tables into the publication, which needs ownership of each.
fn check_table_ownership(config: &PostgresSourceConfig, facts: &ServerFacts) -> Option<Finding> {
    if facts.role.superuser {
        return None;
    }
    let foreign: Vec<&TableFacts> = facts.tables.iter().filter(|t| !t.owned).collect();
    if foreign.is_empty() {
        return None;
    }
    let user = quote_identifier(&facts.role.name);
    let owners: BTreeSet<&str> = foreign.iter().map(|t| t.owner.as_str()).collect();
    let grants: Vec<String> = owners
        .iter()
        .map(|owner| format!("GRANT {} TO {user};", quote_identifier(owner)))
        .collect();
    let tables: Vec<String> = foreign
        .iter()
        .map(|t| format!("{} (owner {})", t.id, t.owner))
        .collect();
    Some(Finding::error(
        "publication.autocreate.mode",
        format!(
            "publication.autocreate.mode = filtered adds the captured tables to publication {}, which needs ownership, but role {} does not own {}: make it a member of the owner ({}), or ALTER TABLE ... OWNER TO {user};, or have the owner create the publication and set publication.autocreate.mode = disabled",
            config.publication_name,
            facts.role.name,
            tables.join(", "),
            grants.join(" ")
        ),
    ))
}

/// Tables whose UPDATE and DELETE PostgreSQL would reject once they are published.
fn check_replica_identity(config: &PostgresSourceConfig, facts: &ServerFacts) -> Vec<Finding> {
    let skipped = config.skipped_operations;
    if skipped.update && skipped.delete {
        // The publication publishes neither, so PostgreSQL needs no row identity.
        return Vec::new();
    }
    facts
        .tables
        .iter()
        .filter(|t| !t.identifies_rows())
        .map(|t| {
            let why = match t.replica_identity {
                Some(ReplicaIdentity::Nothing) => "has REPLICA IDENTITY NOTHING",
                Some(ReplicaIdentity::Index) => {
                    "has REPLICA IDENTITY USING INDEX, but its index is gone"
                }
                _ => "has no primary key",
            };
            Finding::error(
                "table.include.list",
                format!(
                    "table {} {why}: once published, PostgreSQL rejects its UPDATEs and DELETEs and Debezium events could not name the row. Add a primary key, or run ALTER TABLE {} REPLICA IDENTITY FULL; (or exclude the table)",
                    t.id,
                    qualified(&t.id)
                ),
            )
        })
        .collect()
}

fn check_any_table(facts: &ServerFacts) -> Option<Finding> {
    facts.tables.is_empty().then(|| {
        Finding::warning(
            "table.include.list",
            "no table of the database matches the include/exclude lists: the connector would stream nothing until one is created",
        )
    })
}

fn check_wal_keep_size(facts: &ServerFacts) -> Option<Finding> {
    (facts.max_slot_wal_keep_size.as_deref() == Some("-1")).then(|| {
        Finding::warning(
            "slot.name",
            "the server has max_slot_wal_keep_size = -1 (unlimited): while the connector is stopped, its replication slot keeps every WAL segment and the disk can fill up. Consider a bound, e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf(); (a slot that falls further behind is invalidated and needs a new snapshot)",
        )
    })
}

/// An existing slot must be this connector's kind of slot, and still usable.
fn check_slot(config: &PostgresSourceConfig, facts: &ServerFacts) -> Option<Finding> {
    let slot = facts.slot.as_ref()?;
    let name = &config.slot_name;
    let drop = format!("SELECT pg_drop_replication_slot('{name}');");
    if slot.plugin.as_deref() != Some("pgoutput") {
        return Some(Finding::error(
            "slot.name",
            format!(
                "replication slot {name} exists with output plugin {}, not pgoutput: choose another slot.name or drop it ({drop})",
                slot.plugin.as_deref().unwrap_or("none")
            ),
        ));
    }
    if slot.database.as_deref() != Some(config.dbname.as_str()) {
        return Some(Finding::error(
            "slot.name",
            format!(
                "replication slot {name} exists for database {}, not {}: choose another slot.name or drop it ({drop})",
                slot.database.as_deref().unwrap_or("none"),
                config.dbname
            ),
        ));
    }
    if slot.wal_status.as_deref() == Some("lost") {
        return Some(Finding::error(
            "slot.name",
            format!(
                "replication slot {name} has been invalidated (wal_status = lost): its WAL was removed, probably because of max_slot_wal_keep_size. Drop it ({drop}) and start the connector again with a new snapshot"
            ),
        ));
    }
    slot.active_pid.map(|pid| {
        Finding::warning(
            "slot.name",
            format!(
                "replication slot {name} is in use by server process {pid}: another instance of this connector (or another consumer) may be running; the connector cannot start while it is"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Lsn;

    fn config(extra: &str) -> PostgresSourceConfig {
        let json = format!(
            r#"{{"name":"inventory","config":{{
                "connector.class":"io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname":"127.0.0.1","database.user":"app",
                "database.password":"hunter2","database.dbname":"shop",
                "topic.prefix":"shop","snapshot.mode":"no_data","slot.name":"shop"{extra}}}}}"#
        );
        PostgresSourceConfig::from_connector(&ConnectorConfig::from_json(&json).expect("json"))
            .expect("valid")
    }

    fn table(name: &str, identity: ReplicaIdentity, pk: bool) -> TableFacts {
        TableFacts {
            id: TableId::new("public", name),
            replica_identity: Some(identity),
            has_primary_key: pk,
            has_identity_index: false,
            owned: true,
            owner: "app".to_owned(),
        }
    }

    /// A server where everything is in order for a superuser.
    fn healthy() -> ServerFacts {
        ServerFacts {
            wal_level: "logical".to_owned(),
            max_slot_wal_keep_size: Some("10240MB".to_owned()),
            role: RoleFacts {
                name: "app".to_owned(),
                superuser: true,
                replication: false,
                can_create: true,
            },
            publication: None,
            tables: vec![table("orders", ReplicaIdentity::Default, true)],
            slot: None,
        }
    }

    fn keys(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.key.as_str()).collect()
    }

    #[test]
    fn a_healthy_server_has_no_findings() {
        assert_eq!(check_all(&config(""), &healthy()), []);
    }

    #[test]
    fn wal_level_and_privilege() {
        let mut facts = healthy();
        facts.wal_level = "replica".to_owned();
        facts.role.superuser = false;
        let findings = check_all(&config(""), &facts);
        let wal = findings
            .iter()
            .find(|f| f.message.contains("wal_level = replica"))
            .expect("wal_level reported");
        assert!(wal.message.contains("ALTER SYSTEM SET wal_level = logical"));
        let role = findings
            .iter()
            .find(|f| f.key == "database.user")
            .expect("privilege reported");
        assert!(role.message.contains(r#"ALTER ROLE "app" REPLICATION"#));
        facts.role.replication = true;
        assert!(check_replication_privilege(&facts).is_none());
    }

    #[test]
    fn all_tables_needs_a_superuser_only_to_create() {
        let mut facts = healthy();
        facts.role.superuser = false;
        facts.role.replication = true;
        let findings = check_publication(&config(""), &facts);
        assert_eq!(keys(&findings), ["publication.autocreate.mode"]);
        assert!(findings[0].message.contains("filtered"));
        facts.publication = Some(PublicationFacts {
            all_tables: true,
            owned: false,
            owner: "postgres".to_owned(),
            tables: BTreeSet::new(),
        });
        assert_eq!(check_publication(&config(""), &facts), []);
        let filtered = check_publication(
            &config(r#","publication.autocreate.mode":"filtered""#),
            &facts,
        );
        assert_eq!(keys(&filtered), ["publication.autocreate.mode"]);
        assert!(filtered[0].message.contains("FOR ALL TABLES"));
    }

    #[test]
    fn an_existing_publication_must_publish_the_captured_tables() {
        let mut facts = healthy();
        facts
            .tables
            .push(table("odd \"name\"", ReplicaIdentity::Full, false));
        facts.publication = Some(PublicationFacts {
            all_tables: false,
            owned: true,
            owner: "app".to_owned(),
            tables: [TableId::new("public", "orders")].into(),
        });
        let findings = check_publication(
            &config(r#","publication.autocreate.mode":"disabled""#),
            &facts,
        );
        assert_eq!(keys(&findings), ["publication.name"]);
        assert!(
            findings[0].message.contains(
                r#"ALTER PUBLICATION "dbz_publication" ADD TABLE "public"."odd ""name""";"#
            ),
            "{}",
            findings[0].message
        );
        // filtered sets the tables itself.
        assert_eq!(
            check_publication(
                &config(r#","publication.autocreate.mode":"filtered""#),
                &facts
            ),
            []
        );
    }

    #[test]
    fn filtered_needs_ownership_of_the_tables() {
        let mut facts = healthy();
        facts.role.superuser = false;
        facts.tables[0].owned = false;
        facts.tables[0].owner = "owner".to_owned();
        let findings = check_publication(
            &config(r#","publication.autocreate.mode":"filtered""#),
            &facts,
        );
        assert_eq!(keys(&findings), ["publication.autocreate.mode"]);
        assert!(findings[0].message.contains(r#"GRANT "owner" TO "app";"#));
        assert!(findings[0].message.contains("public.orders (owner owner)"));
    }

    #[test]
    fn tables_that_cannot_identify_rows() {
        let mut facts = healthy();
        facts.tables = vec![
            table("keyed", ReplicaIdentity::Default, true),
            table("full", ReplicaIdentity::Full, false),
            table("no_key", ReplicaIdentity::Default, false),
            table("nothing", ReplicaIdentity::Nothing, true),
            table("lost_index", ReplicaIdentity::Index, false),
        ];
        let findings = check_replica_identity(&config(""), &facts);
        let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains(r#"ALTER TABLE "public"."no_key" REPLICA IDENTITY FULL"#));
        assert!(messages[1].contains("REPLICA IDENTITY NOTHING"));
        assert!(messages[2].contains("index is gone"));
        assert!(findings.iter().all(|f| f.key == "table.include.list"));
        // Without updates and deletes in the publication no identity is needed.
        assert_eq!(
            check_replica_identity(&config(r#","skipped.operations":"u,d""#), &facts),
            []
        );
    }

    #[test]
    fn slot_checks() {
        let mut facts = healthy();
        facts.max_slot_wal_keep_size = Some("-1".to_owned());
        let warning = check_wal_keep_size(&facts).expect("warned");
        assert_eq!(
            (warning.key.as_str(), warning.severity),
            ("slot.name", Severity::Warning)
        );
        let slot = SlotInfo {
            plugin: Some("pgoutput".to_owned()),
            database: Some("shop".to_owned()),
            confirmed_flush_lsn: Some(Lsn::ZERO),
            active_pid: None,
            wal_status: Some("reserved".to_owned()),
        };
        facts.slot = Some(slot.clone());
        assert_eq!(check_slot(&config(""), &facts), None);
        for (changed, expected) in [
            (
                SlotInfo {
                    plugin: Some("wal2json".to_owned()),
                    ..slot.clone()
                },
                "wal2json",
            ),
            (
                SlotInfo {
                    database: Some("other".to_owned()),
                    ..slot.clone()
                },
                "database other",
            ),
            (
                SlotInfo {
                    wal_status: Some("lost".to_owned()),
                    ..slot.clone()
                },
                "invalidated",
            ),
        ] {
            facts.slot = Some(changed);
            let finding = check_slot(&config(""), &facts).expect("reported");
            assert!(finding.is_error() && finding.message.contains(expected));
            assert!(finding.message.contains("pg_drop_replication_slot('shop')"));
        }
    }

    #[test]
    fn static_errors_become_findings() {
        let connector = ConnectorConfig::from_json(
            r#"{"name":"x","config":{"database.hostname":"h","database.user":"u",
                "database.password":"hunter2","database.dbname":"d","topic.prefix":"p",
                "snapshot.mode":"no_data","slot.name":"Bad-Name"}}"#,
        )
        .expect("json");
        let findings = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(validate(&connector));
        assert_eq!(keys(&findings), ["slot.name"]);
        assert!(findings[0].is_error());
        assert!(!findings[0].to_string().contains("hunter2"));
    }
}
