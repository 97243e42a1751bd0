//! The PostgreSQL sink's connector config: Debezium JDBC sink keys, with the Confluent JDBC
//! sink's names accepted as aliases so that existing configs work unchanged.
//!
//! Validation reports every bad key at once (through the config module's `KeyReader`), each with
//! what is wrong and what to do; unknown keys are errors that name the key.

use regex::Regex;
use secrecy::SecretString;

use crate::config::{
    ConnectorConfig, Converter, SslConfig, SslMode, ValidationErrors,
    converter::{self, KEY_CONVERTER_KEYS, VALUE_CONVERTER_KEYS},
    keys::KeyReader,
    resolve_providers,
};

use super::definitions::postgres_sink_definitions;

/// The connector classes that mean "the PostgreSQL sink".
pub const POSTGRES_SINK_CLASSES: &[&str] = &[
    "io.debezium.connector.jdbc.JdbcSinkConnector",
    "postgres-sink",
    "io.confluent.connect.jdbc.JdbcSinkConnector",
];

/// Debezium's default `batch.size`.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// [`DEFAULT_BATCH_SIZE`] as the config definitions show it.
pub(crate) const DEFAULT_BATCH_SIZE_TEXT: &str = "500";

/// `insert.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    /// Plain `INSERT`: a row whose key exists already is an error.
    Insert,
    /// `INSERT … ON CONFLICT (key) DO UPDATE`.
    Upsert,
    /// `UPDATE` of existing rows only.
    Update,
}

/// `primary.key.mode` (`pk.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryKeyMode {
    None,
    /// `__connect_topic`, `__connect_partition`, `__connect_offset`.
    Kafka,
    /// The fields of the record key.
    RecordKey,
    /// Fields of the record value named by `primary.key.fields`.
    RecordValue,
}

/// What the sink does to the target schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaChanges {
    /// Create a missing table from the event schema.
    pub create_tables: bool,
    /// Add columns the events have and the table lacks.
    pub add_columns: bool,
}

/// Which topics the sink reads.
#[derive(Debug, Clone)]
pub enum TopicSelection {
    Names(Vec<String>),
    Pattern(Regex),
}

impl TopicSelection {
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Names(names) => names.iter().any(|n| n == topic),
            Self::Pattern(pattern) => pattern.is_match(topic),
        }
    }
}

/// Which value fields are written; entries are `field` or `topic:field`. Key fields always are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldFilter {
    #[default]
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl FieldFilter {
    pub fn keeps(&self, topic: &str, field: &str) -> bool {
        let listed = |entries: &[String]| {
            entries.iter().any(|entry| match entry.split_once(':') {
                Some((t, f)) => t == topic && f == field,
                None => entry == field,
            })
        };
        match self {
            Self::All => true,
            Self::Include(entries) => listed(entries),
            Self::Exclude(entries) => !listed(entries),
        }
    }
}

/// `errors.tolerance`: what a record that cannot be applied does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorTolerance {
    /// The task fails.
    #[default]
    None,
    /// The record is skipped (and sent to the dead-letter topic when one is configured).
    All,
}

/// `errors.deadletterqueue.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQueue {
    pub topic: String,
    /// `-1`: the broker's `default.replication.factor`.
    pub replication_factor: i32,
    /// `errors.deadletterqueue.context.headers.enable`: add `__connect.errors.*` headers.
    pub context_headers: bool,
}

/// A validated PostgreSQL sink connector config.
#[derive(Debug, Clone)]
pub struct PostgresSinkConfig {
    pub name: String,
    pub topics: TopicSelection,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<SecretString>,
    /// `sslmode` and `sslrootcert` of `connection.url`.
    pub ssl: SslConfig,
    pub insert_mode: InsertMode,
    pub delete_enabled: bool,
    pub truncate_enabled: bool,
    pub primary_key_mode: PrimaryKeyMode,
    pub primary_key_fields: Vec<String>,
    pub schema_changes: SchemaChanges,
    /// `collection.name.format` (`table.name.format`): `${topic}`, `${source.schema}`,
    /// `${source.table}`, `${source.db}`; a `.` outside a placeholder separates schema and table.
    pub collection_name_format: String,
    pub batch_size: usize,
    /// `field.include.list` / `field.exclude.list`: which value fields become columns.
    pub fields: FieldFilter,
    /// `key.converter` / `value.converter`: JSON (with or without schemas; either is read) or
    /// Avro through a schema registry.
    pub key_converter: Converter,
    pub value_converter: Converter,
    pub errors_tolerance: ErrorTolerance,
    /// Where records that cannot be applied go under `errors.tolerance=all`.
    pub dead_letter_queue: Option<DeadLetterQueue>,
    /// Keys accepted for compatibility that have no effect here (reported at start).
    pub ignored_keys: Vec<String>,
}

/// Keys of the Debezium and Confluent JDBC sinks and of Kafka Connect that are accepted and have
/// no effect: pool and retry tuning of the JVM connectors, and knobs whose behaviour is fixed
/// here (identifiers are always quoted, changes are always reduced per key).
pub(crate) const IGNORED_KEYS: &[&str] = &[
    "quote.identifiers",
    "quote.sql.identifiers",
    "use.reduction.buffer",
    "dialect.name",
    "dialect.postgres.unnest.insert.enabled",
    "dialect.postgres.postgis.schema",
    "connection.pool.min_size",
    "connection.pool.max_size",
    "connection.pool.acquire_increment",
    "connection.pool.timeout",
    "connection.restart.on.errors",
    "connection.provider",
    "connection.attempts",
    "connection.backoff.ms",
    "flush.max.retries",
    "flush.retry.delay.ms",
    "max.retries",
    "retry.backoff.ms",
    "use.time.zone",
    "db.timezone",
    "database.time_zone",
    "table.types",
    "replace.null.with.default",
    "collection.naming.strategy",
    "column.naming.strategy",
    "header.converter",
    "errors.retry.timeout",
    "errors.retry.delay.max.ms",
    "errors.log.enable",
    "errors.log.include.messages",
];

/// The parts of a `jdbc:postgresql://host[:port]/database[?user=…&password=…]` URL.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct JdbcUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) dbname: String,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) ssl: SslConfig,
}

/// Where a sink or a window stage writes: `connection.url`, the user (`connection.username`,
/// or `user=` in the URL) and the password (`connection.password`, or `password=`).
#[derive(Debug, Default)]
pub(crate) struct TargetKeys {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<SecretString>,
    pub ssl: SslConfig,
}

/// Reads [`TargetKeys`]; `user_aliases` are other names `connection.username` may have.
pub(crate) fn read_target_keys(
    keys: &mut KeyReader<'_>,
    user_aliases: &[&'static str],
) -> TargetKeys {
    let url = keys.required("connection.url");
    let parsed = if url.is_empty() {
        None
    } else {
        parse_jdbc_url(&url)
            .map_err(|message| keys.error("connection.url", message))
            .ok()
    };
    let mut user = keys.raw("connection.username").map(str::to_owned);
    for alias in user_aliases {
        // Read even when the main name is given, so that it is not reported as unknown.
        let aliased = keys.raw(alias).map(str::to_owned);
        user = user.or(aliased);
    }
    let user = user
        .or_else(|| parsed.as_ref().and_then(|p| p.user.clone()))
        .unwrap_or_else(|| {
            if parsed.is_some() {
                keys.error(
                    "connection.username",
                    "is required (or user=… in connection.url)",
                );
            }
            String::new()
        });
    let password = keys
        .raw("connection.password")
        .map(str::to_owned)
        .or_else(|| parsed.as_ref().and_then(|p| p.password.clone()))
        .map(SecretString::from);
    let parsed = parsed.unwrap_or_default();
    TargetKeys {
        host: parsed.host,
        port: parsed.port,
        dbname: parsed.dbname,
        user,
        password,
        ssl: parsed.ssl,
    }
}

pub(crate) fn parse_jdbc_url(url: &str) -> Result<JdbcUrl, String> {
    let Some(rest) = url.strip_prefix("jdbc:postgresql://") else {
        return Err(format!(
            "{url:?} is not a PostgreSQL JDBC URL; use jdbc:postgresql://host:port/database"
        ));
    };
    let (address, rest) = rest
        .split_once('/')
        .ok_or_else(|| "names no database; use jdbc:postgresql://host:port/database".to_owned())?;
    let (dbname, query) = rest.split_once('?').unwrap_or((rest, ""));
    if dbname.is_empty() {
        return Err("names no database; use jdbc:postgresql://host:port/database".to_owned());
    }
    if address.contains(',') {
        return Err("lists several hosts; name one host".to_owned());
    }
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port number (1-65535)"))
    };
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{address:?} has an unclosed ["))?;
        match after.strip_prefix(':') {
            Some(port) => (host, parse_port(port)?),
            None if after.is_empty() => (host, 5432),
            None => return Err(format!("{address:?} is not host:port")),
        }
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None => (address, 5432),
        }
    };
    if host.is_empty() {
        return Err("names no host; use jdbc:postgresql://host:port/database".to_owned());
    }
    let mut parsed = JdbcUrl {
        host: host.to_owned(),
        port,
        dbname: dbname.to_owned(),
        user: None,
        password: None,
        // pgjdbc's default: TLS when the server offers it.
        ssl: SslConfig {
            mode: SslMode::Prefer,
            root_cert: None,
        },
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "user" => parsed.user = Some(value.to_owned()),
            "password" => parsed.password = Some(value.to_owned()),
            "sslmode" => parsed.ssl.mode = value.parse()?,
            "sslrootcert" => parsed.ssl.root_cert = Some(value.into()),
            // pgjdbc's switch: ssl=true without sslmode means verify-full.
            "ssl" if value == "true" && !query.contains("sslmode=") => {
                parsed.ssl.mode = SslMode::VerifyFull;
            }
            "ssl" => {}
            "ApplicationName" | "connectTimeout" | "socketTimeout" | "tcpKeepAlive" => {}
            other => {
                return Err(format!(
                    "URL parameter {other:?} is not supported; remove it (user, password, sslmode, sslrootcert are)"
                ));
            }
        }
    }
    Ok(parsed)
}

impl PostgresSinkConfig {
    /// Validates the config after resolving `${env:…}` and `${file:…}` placeholders.
    pub fn from_connector(connector: &ConnectorConfig) -> Result<Self, ValidationErrors> {
        // Name templates hold `${topic}`-style placeholders of their own, which are not config
        // provider references (those have a `provider:` part), so they are taken as they are.
        let mut providable = connector.config.clone();
        let templates: Vec<(String, String)> = NAME_FORMAT_KEYS
            .iter()
            .filter_map(|key| providable.remove_entry(*key))
            .collect();
        let mut resolved = resolve_providers(&providable)?;
        resolved.extend(templates);
        let mut keys = KeyReader::new(&resolved);
        let config = Self::read(connector, &mut keys);
        if keys.errors.is_empty() {
            Ok(config)
        } else {
            Err(ValidationErrors(keys.errors))
        }
    }

    /// The keys `from_connector` reads, for the definitions' drift tests.
    #[cfg(test)]
    pub(crate) fn keys_read(connector: &ConnectorConfig) -> Vec<&'static str> {
        let mut keys = KeyReader::new(&connector.config);
        Self::read(connector, &mut keys);
        keys.read_keys().to_vec()
    }

    fn read(connector: &ConnectorConfig, keys: &mut KeyReader<'_>) -> Self {
        keys.raw("name");
        let class = keys.required("connector.class");
        if !class.is_empty() && !POSTGRES_SINK_CLASSES.contains(&class.as_str()) {
            keys.error(
                "connector.class",
                format!(
                    "{class:?} is not the PostgreSQL sink; use {}",
                    POSTGRES_SINK_CLASSES[0]
                ),
            );
        }
        if let Some(tasks) = keys.raw("tasks.max")
            && tasks != "1"
        {
            keys.error(
                "tasks.max",
                "must be 1: the sink reads every partition of its topics in one task",
            );
        }

        let topics = match (keys.raw("topics"), keys.raw("topics.regex")) {
            (Some(_), Some(_)) => {
                keys.error(
                    "topics.regex",
                    "cannot be used together with topics; use one of the two",
                );
                TopicSelection::Names(Vec::new())
            }
            (Some(_), None) => TopicSelection::Names(keys.list("topics")),
            (None, Some(pattern)) => match Regex::new(&format!("^(?:{pattern})$")) {
                Ok(regex) => TopicSelection::Pattern(regex),
                Err(e) => {
                    keys.error(
                        "topics.regex",
                        format!("{pattern:?} is not a regular expression: {e}"),
                    );
                    TopicSelection::Names(Vec::new())
                }
            },
            (None, None) => {
                keys.error(
                    "topics",
                    "is required (or topics.regex): name the change topics to apply",
                );
                TopicSelection::Names(Vec::new())
            }
        };

        let target = read_target_keys(keys, &["connection.user"]);

        let insert_mode = keys.choice(
            "insert.mode",
            InsertMode::Insert,
            &[
                ("insert", InsertMode::Insert),
                ("upsert", InsertMode::Upsert),
                ("update", InsertMode::Update),
            ],
        );
        let delete_enabled = keys.bool("delete.enabled", false);
        let truncate_enabled = keys.bool("truncate.enabled", false);

        let pk_choices = [
            ("none", PrimaryKeyMode::None),
            ("kafka", PrimaryKeyMode::Kafka),
            ("record_key", PrimaryKeyMode::RecordKey),
            ("record_value", PrimaryKeyMode::RecordValue),
        ];
        // Upsert and update need a key; the record key is what a Debezium topic is keyed by.
        let pk_default = match insert_mode {
            InsertMode::Insert => PrimaryKeyMode::None,
            InsertMode::Upsert | InsertMode::Update => PrimaryKeyMode::RecordKey,
        };
        let (pk_mode_key, pk_fields_key) = if keys.raw("primary.key.mode").is_some() {
            ("primary.key.mode", "primary.key.fields")
        } else if keys.raw("pk.mode").is_some() {
            ("pk.mode", "pk.fields")
        } else {
            ("primary.key.mode", "primary.key.fields")
        };
        let primary_key_mode = keys.choice(pk_mode_key, pk_default, &pk_choices);
        let mut primary_key_fields = keys.list("primary.key.fields");
        if primary_key_fields.is_empty() {
            primary_key_fields = keys.list("pk.fields");
        } else {
            keys.raw("pk.fields");
        }
        match primary_key_mode {
            PrimaryKeyMode::RecordKey => {}
            PrimaryKeyMode::None if insert_mode != InsertMode::Insert => keys.error(
                pk_mode_key,
                "none cannot be used with insert.mode upsert or update: they need a key; use record_key",
            ),
            PrimaryKeyMode::None | PrimaryKeyMode::Kafka => {}
            PrimaryKeyMode::RecordValue if primary_key_fields.is_empty() => keys.error(
                pk_fields_key,
                "is required with record_value: name the value fields that form the key",
            ),
            PrimaryKeyMode::RecordValue => {}
        }
        if primary_key_mode == PrimaryKeyMode::None && !primary_key_fields.is_empty() {
            keys.error(
                pk_fields_key,
                "names key fields, but the primary key mode is none; set primary.key.mode=record_key",
            );
        }
        if delete_enabled && primary_key_mode != PrimaryKeyMode::RecordKey {
            keys.error(
                "delete.enabled",
                "needs primary.key.mode=record_key: a delete finds its row by the record key",
            );
        }

        let mut schema_changes = match keys.choice(
            "schema.evolution",
            None,
            &[
                ("none", Some(false)),
                ("validate-only", Some(false)),
                ("basic", Some(true)),
            ],
        ) {
            Some(true) => SchemaChanges {
                create_tables: true,
                add_columns: true,
            },
            _ => SchemaChanges::default(),
        };
        schema_changes.create_tables |= keys.bool("auto.create", false);
        schema_changes.add_columns |= keys.bool("auto.evolve", false);

        let collection_name_format = match (
            keys.raw("collection.name.format"),
            keys.raw("table.name.format"),
        ) {
            (Some(format), _) | (None, Some(format)) => format.to_owned(),
            (None, None) => "${topic}".to_owned(),
        };
        if let Err(message) = check_name_format(&collection_name_format) {
            keys.error("collection.name.format", message);
        }

        let batch_size = keys.parsed("batch.size", DEFAULT_BATCH_SIZE, "a positive number");
        if batch_size == 0 {
            keys.error("batch.size", "must be at least 1");
        }

        let fields = match (
            keys.list("field.include.list"),
            keys.list("field.exclude.list"),
        ) {
            (include, exclude) if !include.is_empty() && !exclude.is_empty() => {
                keys.error(
                    "field.exclude.list",
                    "cannot be used together with field.include.list; use one of the two",
                );
                FieldFilter::All
            }
            (include, _) if !include.is_empty() => FieldFilter::Include(include),
            (_, exclude) if !exclude.is_empty() => FieldFilter::Exclude(exclude),
            _ => FieldFilter::All,
        };

        let key_converter = converter::read(keys, "key.converter", KEY_CONVERTER_KEYS);
        let value_converter = converter::read(keys, "value.converter", VALUE_CONVERTER_KEYS);

        let errors_tolerance = keys.choice(
            "errors.tolerance",
            ErrorTolerance::None,
            &[("none", ErrorTolerance::None), ("all", ErrorTolerance::All)],
        );
        let dead_letter_queue = keys
            .raw("errors.deadletterqueue.topic.name")
            .map(str::to_owned)
            .map(|topic| DeadLetterQueue {
                topic,
                replication_factor: -1,
                context_headers: false,
            });
        let replication_factor = keys.parsed(
            "errors.deadletterqueue.topic.replication.factor",
            -1i32,
            "a whole number",
        );
        let context_headers = keys.bool("errors.deadletterqueue.context.headers.enable", false);
        let dead_letter_queue = dead_letter_queue.map(|dlq| DeadLetterQueue {
            replication_factor,
            context_headers,
            ..dlq
        });
        if replication_factor == 0 || replication_factor < -1 {
            keys.error(
                "errors.deadletterqueue.topic.replication.factor",
                "must be -1 (the broker's default) or at least 1",
            );
        }

        keys.refuse_transforms(
            "remove the transforms keys (the sink reads Debezium envelopes itself, so \
             ExtractNewRecordState is not needed)",
        );
        let known: Vec<&str> = postgres_sink_definitions().iter().map(|d| d.name).collect();
        let ignored_keys = keys.finish("PostgreSQL sink", &known, IGNORED_KEYS, |key| {
            key.starts_with("consumer.override.")
                || key.starts_with("key.converter.")
                || key.starts_with("value.converter.")
        });

        let TargetKeys {
            host,
            port,
            dbname,
            user,
            password,
            ssl,
        } = target;
        Self {
            name: connector.name.clone(),
            topics,
            host,
            port,
            dbname,
            user,
            password,
            ssl,
            insert_mode,
            delete_enabled,
            truncate_enabled,
            primary_key_mode,
            primary_key_fields,
            schema_changes,
            collection_name_format,
            batch_size,
            fields,
            key_converter,
            value_converter,
            errors_tolerance,
            dead_letter_queue,
            ignored_keys,
        }
    }
}

/// The keys holding a table name template.
const NAME_FORMAT_KEYS: &[&str] = &["collection.name.format", "table.name.format"];

/// The placeholders `collection.name.format` understands.
const NAME_PLACEHOLDERS: &[&str] = &["topic", "source.db", "source.schema", "source.table"];

fn check_name_format(format: &str) -> Result<(), String> {
    let mut rest = format;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("{format:?} has an unclosed ${{"));
        };
        let name = &rest[start + 2..start + end];
        if !NAME_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "${{{name}}} is not a placeholder; use ${{topic}}, ${{source.db}}, ${{source.schema}} or ${{source.table}}"
            ));
        }
        rest = &rest[start + end + 1..];
    }
    if format.trim().is_empty() {
        return Err("is empty; use ${topic} or a table name".to_owned());
    }
    let literal_dots = without_placeholders(format).matches('.').count();
    if literal_dots > 1 {
        return Err(format!(
            "{format:?} has {literal_dots} dots; name [schema.]table (a dot separates the schema)"
        ));
    }
    Ok(())
}

fn without_placeholders(format: &str) -> String {
    let mut literal = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        rest = rest[start..]
            .find('}')
            .map_or("", |end| &rest[start + end + 1..]);
    }
    literal.push_str(rest);
    literal
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn connector(pairs: &[(&str, &str)]) -> ConnectorConfig {
        let mut config: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config.insert("name".to_owned(), "sink".to_owned());
        ConnectorConfig {
            name: "sink".to_owned(),
            config,
        }
    }

    fn minimal(extra: &[(&str, &str)]) -> ConnectorConfig {
        let mut pairs = vec![
            (
                "connector.class",
                "io.debezium.connector.jdbc.JdbcSinkConnector",
            ),
            ("topics", "a.public.orders, a.public.lines"),
            ("connection.url", "jdbc:postgresql://db.example:6543/shop"),
            ("connection.username", "writer"),
        ];
        pairs.extend_from_slice(extra);
        connector(&pairs)
    }

    #[test]
    fn debezium_keys_with_defaults() {
        let config = PostgresSinkConfig::from_connector(&minimal(&[
            ("connection.password", "s3cret"),
            ("insert.mode", "upsert"),
            ("delete.enabled", "true"),
            ("schema.evolution", "basic"),
            ("batch.size", "2000"),
        ]))
        .expect("valid");
        assert_eq!(config.host, "db.example");
        assert_eq!(config.port, 6543);
        assert_eq!(config.dbname, "shop");
        assert_eq!(config.user, "writer");
        assert_eq!(
            config
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("s3cret".to_owned())
        );
        assert!(config.topics.matches("a.public.lines"));
        assert!(!config.topics.matches("a.public"));
        assert_eq!(config.insert_mode, InsertMode::Upsert);
        assert_eq!(config.primary_key_mode, PrimaryKeyMode::RecordKey);
        assert!(config.delete_enabled);
        assert_eq!(
            config.schema_changes,
            SchemaChanges {
                create_tables: true,
                add_columns: true
            }
        );
        assert_eq!(config.collection_name_format, "${topic}");
        assert_eq!(config.batch_size, 2000);
        assert!(!format!("{config:?}").contains("s3cret"));

        let plain = PostgresSinkConfig::from_connector(&minimal(&[])).expect("valid");
        assert_eq!(plain.insert_mode, InsertMode::Insert);
        assert_eq!(plain.primary_key_mode, PrimaryKeyMode::None);
        assert_eq!(plain.schema_changes, SchemaChanges::default());
        assert_eq!(plain.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(plain.port, 6543);
    }

    #[test]
    fn confluent_aliases() {
        let config = PostgresSinkConfig::from_connector(&connector(&[
            ("connector.class", "postgres-sink"),
            ("topics.regex", "shop\\..*"),
            (
                "connection.url",
                "jdbc:postgresql://localhost/shop?user=u&password=p",
            ),
            ("insert.mode", "upsert"),
            ("pk.mode", "record_key"),
            ("pk.fields", "id"),
            ("auto.create", "true"),
            ("table.name.format", "${source.schema}.${source.table}"),
            ("quote.sql.identifiers", "always"),
        ]))
        .expect("valid");
        assert!(config.topics.matches("shop.public.orders"));
        assert!(!config.topics.matches("xshop.public.orders"));
        assert_eq!(config.port, 5432);
        assert_eq!(config.user, "u");
        assert_eq!(
            config
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("p".to_owned())
        );
        assert_eq!(config.primary_key_fields, ["id"]);
        assert!(config.schema_changes.create_tables);
        assert!(!config.schema_changes.add_columns);
        assert_eq!(
            config.collection_name_format,
            "${source.schema}.${source.table}"
        );
        assert_eq!(config.ignored_keys, ["quote.sql.identifiers"]);
        let user = PostgresSinkConfig::from_connector(&minimal(&[("connection.user", "other")]));
        // connection.username wins over the Confluent alias.
        assert_eq!(user.expect("valid").user, "writer");
    }

    #[test]
    fn every_bad_key_is_named_with_what_to_do() {
        let err = PostgresSinkConfig::from_connector(&connector(&[
            (
                "connector.class",
                "io.debezium.connector.postgresql.PostgresConnector",
            ),
            ("connection.url", "postgresql://localhost/shop"),
            ("insert.mode", "merge"),
            ("delete.enabled", "yes"),
            ("batch.size", "0"),
            ("schema.evolution", "advanced"),
            ("collection.name.format", "${topic}_${table}"),
            ("insert.mdoe", "upsert"),
            ("tasks.max", "3"),
        ]))
        .expect_err("invalid");
        let message = |key: &str| {
            err.for_key(key)
                .map(|e| e.message.clone())
                .next()
                .unwrap_or_else(|| panic!("no error for {key}: {err}"))
        };
        assert!(message("connector.class").contains("JdbcSinkConnector"));
        assert!(message("topics").contains("required"));
        assert!(message("connection.url").contains("jdbc:postgresql://host:port/database"));
        assert!(message("insert.mode").contains("insert, upsert, update"));
        assert!(message("delete.enabled").contains("boolean"));
        assert!(message("batch.size").contains("at least 1"));
        assert!(message("schema.evolution").contains("basic"));
        assert!(message("collection.name.format").contains("${table}"));
        let err = PostgresSinkConfig::from_connector(&minimal(&[(
            "collection.name.format",
            "a.b.${source.table}",
        )]))
        .expect_err("two dots");
        assert!(err.to_string().contains("2 dots"), "{err}");
        PostgresSinkConfig::from_connector(&minimal(&[(
            "collection.name.format",
            "${source.schema}.${topic}",
        )]))
        .expect("one literal dot");
        assert!(message("insert.mdoe").contains("did you mean insert.mode?"));
        assert!(message("tasks.max").contains("must be 1"));
    }

    #[test]
    fn key_rules() {
        let err = PostgresSinkConfig::from_connector(&minimal(&[
            ("insert.mode", "upsert"),
            ("primary.key.mode", "none"),
        ]))
        .expect_err("upsert without key");
        assert!(err.for_key("primary.key.mode").next().is_some(), "{err}");
        let err = PostgresSinkConfig::from_connector(&minimal(&[("delete.enabled", "true")]))
            .expect_err("delete without key");
        assert!(err.for_key("delete.enabled").next().is_some(), "{err}");
        let err = PostgresSinkConfig::from_connector(&minimal(&[("topics.regex", "x.*")]))
            .expect_err("both topic keys");
        assert!(err.for_key("topics.regex").next().is_some(), "{err}");
    }

    #[test]
    fn key_modes_and_field_filters() {
        let config = PostgresSinkConfig::from_connector(&minimal(&[
            ("primary.key.mode", "record_value"),
            ("primary.key.fields", "a,b"),
            ("field.exclude.list", "secret,a.public.orders:note"),
        ]))
        .expect("valid");
        assert_eq!(config.primary_key_mode, PrimaryKeyMode::RecordValue);
        assert!(!config.fields.keeps("x", "secret"));
        assert!(!config.fields.keeps("a.public.orders", "note"));
        assert!(config.fields.keeps("a.public.lines", "note"));
        let err =
            PostgresSinkConfig::from_connector(&minimal(&[("primary.key.mode", "record_value")]))
                .expect_err("no fields");
        assert!(err.for_key("primary.key.fields").next().is_some(), "{err}");
        let kafka = PostgresSinkConfig::from_connector(&minimal(&[
            ("insert.mode", "upsert"),
            ("primary.key.mode", "kafka"),
            ("field.include.list", "id"),
        ]))
        .expect("valid");
        assert_eq!(kafka.primary_key_mode, PrimaryKeyMode::Kafka);
        assert!(kafka.fields.keeps("t", "id") && !kafka.fields.keeps("t", "other"));
    }

    #[test]
    fn error_handling_keys() {
        let config = PostgresSinkConfig::from_connector(&minimal(&[
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", "dlq"),
            ("errors.deadletterqueue.context.headers.enable", "true"),
            ("errors.log.enable", "true"),
        ]))
        .expect("valid");
        assert_eq!(config.errors_tolerance, ErrorTolerance::All);
        assert_eq!(
            config.dead_letter_queue,
            Some(DeadLetterQueue {
                topic: "dlq".into(),
                replication_factor: -1,
                context_headers: true
            })
        );
        assert_eq!(config.ignored_keys, ["errors.log.enable"]);
        let err = PostgresSinkConfig::from_connector(&minimal(&[
            ("errors.tolerance", "some"),
            ("errors.deadletterqueue.topic.replication.factor", "0"),
            ("errors.tolerence", "all"),
            ("transforms", "unwrap"),
            (
                "transforms.unwrap.type",
                "io.debezium.transforms.ExtractNewRecordState",
            ),
        ]))
        .expect_err("invalid");
        for key in [
            "errors.tolerance",
            "errors.deadletterqueue.topic.replication.factor",
            "errors.tolerence",
            "transforms",
        ] {
            assert!(err.for_key(key).next().is_some(), "{key}: {err}");
        }
    }

    #[test]
    fn jdbc_urls() {
        assert_eq!(
            parse_jdbc_url("jdbc:postgresql://[::1]:5433/db").expect("ipv6"),
            JdbcUrl {
                host: "::1".into(),
                port: 5433,
                dbname: "db".into(),
                user: None,
                password: None,
                ssl: SslConfig::default(),
            }
        );
        assert!(parse_jdbc_url("jdbc:postgresql://h:99999/db").is_err());
        assert!(parse_jdbc_url("jdbc:postgresql://h:5432/").is_err());
        let tls = parse_jdbc_url("jdbc:postgresql://h/db?sslmode=require").expect("valid");
        assert_eq!(tls.ssl.mode, SslMode::Require);
        let verified =
            parse_jdbc_url("jdbc:postgresql://h/db?sslmode=verify-full&sslrootcert=/ca.pem")
                .expect("valid");
        assert_eq!(verified.ssl.mode, SslMode::VerifyFull);
        assert_eq!(verified.ssl.root_cert, Some("/ca.pem".into()));
        assert!(
            parse_jdbc_url("jdbc:postgresql://h/db?sslmode=sometimes")
                .unwrap_err()
                .contains("verify-full")
        );
        assert!(parse_jdbc_url("jdbc:postgresql://h/db?sslmode=disable").is_ok());
    }
}
