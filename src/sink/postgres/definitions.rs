//! What each key of the PostgreSQL sink means: the definitions behind
//! `GET /connector-plugins/{plugin}/config` and the reference docs. The defaults are the ones
//! `PostgresSinkConfig::from_connector` uses; the tests below fail when the two drift apart.

use std::sync::LazyLock;

use super::config::{DEFAULT_BATCH_SIZE_TEXT, IGNORED_KEYS};
use crate::config::definitions::{
    CONVERTER_DEFINITIONS, ConfigGroup, ConfigKeyDefinition, ConfigKind, Importance, Width,
};
use ConfigGroup::{Common, Connection, Errors, Writes};
use ConfigKind::{Boolean, Int, List, Password};
use Importance::{High, Low, Medium};

/// Every key the PostgreSQL sink accepts, grouped, in display order.
pub fn postgres_sink_definitions() -> &'static [ConfigKeyDefinition] {
    &POSTGRES_SINK
}

static POSTGRES_SINK: LazyLock<Vec<ConfigKeyDefinition>> = LazyLock::new(|| {
    let ignored = IGNORED_KEYS.iter().map(|&name| {
        let kind = if name.ends_with(".ms") || name.ends_with("size") || name.contains("retries") {
            ConfigKind::Long
        } else {
            ConfigKind::String
        };
        let group = if name.starts_with("connection.") {
            Connection
        } else if name.starts_with("errors.") {
            Errors
        } else {
            Writes
        };
        ConfigKeyDefinition::no_effect(
            name,
            kind,
            group,
            name,
            "Accepted for compatibility with the Debezium and Confluent JDBC sinks and has no \
             effect here: identifiers are always quoted, changes are always reduced per key, \
             connections and retries are managed by the sink itself.",
        )
    });
    let mut definitions: Vec<ConfigKeyDefinition> = [COMMON, CONVERTER_DEFINITIONS, CONNECTION]
        .concat()
        .into_iter()
        .chain(ignored.clone().filter(|d| d.group == Connection))
        .chain(WRITES.iter().copied())
        .chain(ignored.clone().filter(|d| d.group == Writes))
        .chain(ERRORS.iter().copied())
        .chain(ignored.filter(|d| d.group == Errors))
        .collect();
    // `header.converter` is Connect's and sits with the other converters.
    if let Some(at) = definitions
        .iter()
        .position(|d| d.name == "header.converter")
    {
        let mut header = definitions.remove(at);
        header.group = Common;
        let after_converters = COMMON.len() + CONVERTER_DEFINITIONS.len();
        definitions.insert(after_converters, header);
    }
    definitions
});

const COMMON: &[ConfigKeyDefinition] = &[
    ConfigKeyDefinition::new(
        "name",
        ConfigKind::String,
        Common,
        High,
        Width::Medium,
        "Connector name",
        "Unique name of the connector in this service; also the key of its offsets and \
         generation in the target database.",
    )
    .required(),
    ConfigKeyDefinition::new(
        "connector.class",
        ConfigKind::String,
        Common,
        High,
        Width::Long,
        "Connector class",
        "io.debezium.connector.jdbc.JdbcSinkConnector (alias postgres-sink).",
    )
    .required(),
    ConfigKeyDefinition::new(
        "tasks.max",
        Int,
        Common,
        High,
        Width::Short,
        "Tasks max",
        "Number of tasks, which must be 1: one task reads every partition of the topics.",
    )
    .default("1"),
    ConfigKeyDefinition::new(
        "topics",
        List,
        Common,
        High,
        Width::Long,
        "Topics",
        "The change topics to apply, comma-separated; required unless topics.regex is set.",
    ),
    ConfigKeyDefinition::new(
        "topics.regex",
        ConfigKind::String,
        Common,
        High,
        Width::Long,
        "Topics regex",
        "A regular expression for the topic names to apply, matched against the whole name; \
         topics created later are picked up. Use it or topics, not both.",
    ),
    ConfigKeyDefinition::new(
        "transforms",
        List,
        Common,
        Low,
        Width::Long,
        "Transforms",
        "Single message transforms are not supported, so any value is rejected; the sink reads \
         Debezium envelopes itself, so ExtractNewRecordState is not needed.",
    ),
];

const CONNECTION: &[ConfigKeyDefinition] = &[
    ConfigKeyDefinition::new(
        "connection.url",
        ConfigKind::String,
        Connection,
        High,
        Width::Long,
        "JDBC URL",
        "The target database as jdbc:postgresql://host[:port]/database, optionally with \
         ?user=, password=, sslmode= (disable, allow, prefer: the default, require, \
         verify-ca, verify-full) and sslrootcert= (PEM file of the trusted CAs).",
    )
    .required(),
    ConfigKeyDefinition::new(
        "connection.username",
        ConfigKind::String,
        Connection,
        High,
        Width::Medium,
        "User",
        "The user the sink connects as (alias connection.user); required unless the URL has \
         user=.",
    ),
    ConfigKeyDefinition::new(
        "connection.user",
        ConfigKind::String,
        Connection,
        Low,
        Width::Medium,
        "User (Confluent name)",
        "The Confluent JDBC sink's name for connection.username.",
    ),
    ConfigKeyDefinition::new(
        "connection.password",
        Password,
        Connection,
        High,
        Width::Medium,
        "Password",
        "The user's password; never shown by the REST API or written to logs.",
    ),
];

const WRITES: &[ConfigKeyDefinition] = &[
    ConfigKeyDefinition::new(
        "insert.mode",
        ConfigKind::String,
        Writes,
        High,
        Width::Short,
        "Insert mode",
        "insert (plain INSERT), upsert (INSERT ... ON CONFLICT DO UPDATE: idempotent, the \
         choice for change topics) or update (UPDATE of existing rows only).",
    )
    .default("insert"),
    ConfigKeyDefinition::new(
        "delete.enabled",
        Boolean,
        Writes,
        Medium,
        Width::Short,
        "Apply deletes",
        "Whether delete events become DELETE of the row with the record's key; needs \
         primary.key.mode=record_key.",
    )
    .default("false"),
    ConfigKeyDefinition::new(
        "truncate.enabled",
        Boolean,
        Writes,
        Medium,
        Width::Short,
        "Apply truncates",
        "Whether truncate events become TRUNCATE of the target table.",
    )
    .default("false"),
    ConfigKeyDefinition::new(
        "primary.key.mode",
        ConfigKind::String,
        Writes,
        High,
        Width::Short,
        "Primary key mode",
        "Where the target table's key comes from: none, kafka (__connect_topic, \
         __connect_partition, __connect_offset), record_key or record_value (with \
         primary.key.fields). Without it: none in insert mode, record_key in upsert and update \
         mode.",
    ),
    ConfigKeyDefinition::new(
        "pk.mode",
        ConfigKind::String,
        Writes,
        Low,
        Width::Short,
        "Primary key mode (Confluent name)",
        "The Confluent JDBC sink's name for primary.key.mode.",
    ),
    ConfigKeyDefinition::new(
        "primary.key.fields",
        List,
        Writes,
        Medium,
        Width::Long,
        "Primary key fields",
        "With record_value, the value fields that form the key; with record_key, a subset of \
         the key's fields.",
    ),
    ConfigKeyDefinition::new(
        "pk.fields",
        List,
        Writes,
        Low,
        Width::Long,
        "Primary key fields (Confluent name)",
        "The Confluent JDBC sink's name for primary.key.fields.",
    ),
    ConfigKeyDefinition::new(
        "schema.evolution",
        ConfigKind::String,
        Writes,
        High,
        Width::Short,
        "Schema evolution",
        "none or validate-only (tables must exist with the needed columns), or basic (missing \
         tables are created from the event schema and missing columns added).",
    )
    .default("none"),
    ConfigKeyDefinition::new(
        "auto.create",
        Boolean,
        Writes,
        Low,
        Width::Short,
        "Create tables (Confluent name)",
        "The Confluent JDBC sink's switch for creating missing tables (schema.evolution=basic \
         does it too).",
    )
    .default("false"),
    ConfigKeyDefinition::new(
        "auto.evolve",
        Boolean,
        Writes,
        Low,
        Width::Short,
        "Add columns (Confluent name)",
        "The Confluent JDBC sink's switch for adding missing columns (schema.evolution=basic \
         does it too).",
    )
    .default("false"),
    ConfigKeyDefinition::new(
        "collection.name.format",
        ConfigKind::String,
        Writes,
        Medium,
        Width::Long,
        "Table name format",
        "The target table of each record: a template with ${topic} (dots become _), \
         ${source.db}, ${source.schema}, ${source.table}; a literal dot separates schema and \
         table (alias table.name.format).",
    )
    .default("${topic}"),
    ConfigKeyDefinition::new(
        "table.name.format",
        ConfigKind::String,
        Writes,
        Low,
        Width::Long,
        "Table name format (Confluent name)",
        "The Confluent JDBC sink's name for collection.name.format.",
    ),
    ConfigKeyDefinition::new(
        "batch.size",
        Int,
        Writes,
        Medium,
        Width::Short,
        "Batch size",
        "The most records applied in one target transaction.",
    )
    .default(DEFAULT_BATCH_SIZE_TEXT),
    ConfigKeyDefinition::new(
        "field.include.list",
        List,
        Writes,
        Low,
        Width::Long,
        "Fields to write",
        "The value fields written (field or topic:field); key fields always are.",
    ),
    ConfigKeyDefinition::new(
        "field.exclude.list",
        List,
        Writes,
        Low,
        Width::Long,
        "Fields to leave out",
        "The value fields not written (field or topic:field); use it or field.include.list.",
    ),
];

const ERRORS: &[ConfigKeyDefinition] = &[
    ConfigKeyDefinition::new(
        "errors.tolerance",
        ConfigKind::String,
        Errors,
        Medium,
        Width::Short,
        "Error tolerance",
        "none: a record that cannot be decoded or is rejected by the target stops the task; \
         all: it is skipped (and sent to the dead-letter topic when one is set) and the rest \
         flows on.",
    )
    .default("none"),
    ConfigKeyDefinition::new(
        "errors.deadletterqueue.topic.name",
        ConfigKind::String,
        Errors,
        Medium,
        Width::Medium,
        "Dead-letter topic",
        "With errors.tolerance=all, where skipped records go, unchanged (with the error in \
         headers when errors.deadletterqueue.context.headers.enable is true).",
    ),
    ConfigKeyDefinition::new(
        "errors.deadletterqueue.topic.replication.factor",
        ConfigKind::Short,
        Errors,
        Low,
        Width::Short,
        "Dead-letter topic replication",
        "Replication factor of the dead-letter topic when it is created; -1 is the broker's \
         default.",
    )
    .default("-1"),
    ConfigKeyDefinition::new(
        "errors.deadletterqueue.context.headers.enable",
        Boolean,
        Errors,
        Low,
        Width::Short,
        "Dead-letter context headers",
        "Whether dead-letter records carry the error, topic, partition and offset in \
         __connect.errors.* headers.",
    )
    .default("false"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        config::ConnectorConfig,
        sink::postgres::{POSTGRES_SINK_CLASSES, PostgresSinkConfig},
    };

    const REQUIRED_SAMPLES: &[(&str, &str)] = &[
        ("name", "replica"),
        ("connector.class", POSTGRES_SINK_CLASSES[0]),
        ("connection.url", "jdbc:postgresql://127.0.0.1:5432/replica"),
    ];

    fn definition(name: &str) -> Option<&'static ConfigKeyDefinition> {
        postgres_sink_definitions().iter().find(|d| d.name == name)
    }

    fn keys_read() -> Vec<&'static str> {
        let mut full: BTreeMap<String, String> = REQUIRED_SAMPLES
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for definition in postgres_sink_definitions() {
            if let Some(default) = definition.default {
                full.insert(definition.name.to_owned(), default.to_owned());
            }
        }
        let mut read = Vec::new();
        for config in [BTreeMap::new(), full] {
            let connector = ConnectorConfig {
                name: "replica".to_owned(),
                config,
            };
            read.extend(PostgresSinkConfig::keys_read(&connector));
        }
        read.sort_unstable();
        read.dedup();
        read
    }

    #[test]
    fn every_key_the_parser_reads_is_defined_and_every_definition_is_read_or_ignored() {
        let read = keys_read();
        assert!(
            read.len() > 20,
            "the parser seems not to record keys: {read:?}"
        );
        for key in &read {
            assert!(definition(key).is_some(), "{key} is read but not defined");
        }
        for definition in postgres_sink_definitions() {
            assert!(
                read.contains(&definition.name) || IGNORED_KEYS.contains(&definition.name),
                "{} is defined but neither read nor ignored",
                definition.name
            );
        }
        for key in IGNORED_KEYS {
            let ignored = definition(key).expect("ignored keys are defined");
            assert!(ignored.documentation.contains("no effect"), "{key}");
        }
    }

    #[test]
    fn names_are_unique_and_groups_contiguous() {
        let definitions = postgres_sink_definitions();
        let mut names: Vec<&str> = definitions.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a key is defined twice");
        let mut groups: Vec<ConfigGroup> = definitions.iter().map(|d| d.group).collect();
        groups.dedup();
        assert_eq!(groups, [Common, Connection, Writes, Errors]);
    }

    #[test]
    fn the_required_keys_alone_are_valid_and_each_one_missing_is_an_error() {
        let minimal: BTreeMap<String, String> = REQUIRED_SAMPLES
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut with_topics = minimal.clone();
        with_topics.insert("topics".to_owned(), "shop.public.orders".to_owned());
        with_topics.insert("connection.username".to_owned(), "postgres".to_owned());
        let parse = |config: BTreeMap<String, String>| {
            PostgresSinkConfig::from_connector(&ConnectorConfig {
                name: "replica".to_owned(),
                config,
            })
        };
        parse(with_topics.clone()).expect("valid");
        for definition in postgres_sink_definitions().iter().filter(|d| d.required) {
            // `name` comes from the connector itself, not from the map.
            if definition.name == "name" {
                continue;
            }
            let mut without = with_topics.clone();
            without.remove(definition.name);
            let errors = parse(without).expect_err(definition.name);
            assert!(
                errors.0.iter().any(|e| e.key == definition.name),
                "{}: {errors:?}",
                definition.name
            );
        }
        // Defaults written out change nothing.
        let mut defaults = with_topics.clone();
        for definition in postgres_sink_definitions() {
            if let Some(default) = definition.default
                && !IGNORED_KEYS.contains(&definition.name)
            {
                defaults.insert(definition.name.to_owned(), default.to_owned());
            }
        }
        let plain = parse(with_topics).expect("valid");
        let explicit = parse(defaults).expect("defaults are valid");
        assert_eq!(format!("{plain:?}"), format!("{explicit:?}"));
    }
}
