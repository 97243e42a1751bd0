//! What each connector config key means: the definitions behind Kafka Connect's
//! `GET /connector-plugins/{plugin}/config` (a list of `ConfigKeyInfo`) and the reference docs of
//! the keys. The defaults written here are the ones `PostgresSourceConfig::from_connector` uses;
//! the tests below fail when the parser and this list drift apart.

use ConfigGroup::{Common, Events, Postgres, Snapshot};
use ConfigKind::{Boolean, Class, Int, List, Long, Password};
use Importance::{High, Low, Medium};
use std::sync::LazyLock;

use serde_json::{Value, json};

/// Connect's `ConfigDef.Type`: the kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigKind {
    /// The name Connect uses in JSON (`"STRING"`, `"PASSWORD"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Boolean => "BOOLEAN",
            Self::String => "STRING",
            Self::Int => "INT",
            Self::Short => "SHORT",
            Self::Long => "LONG",
            Self::Double => "DOUBLE",
            Self::List => "LIST",
            Self::Class => "CLASS",
            Self::Password => "PASSWORD",
        }
    }
}

/// Connect's `ConfigDef.Importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    High,
    Medium,
    Low,
}

impl Importance {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "HIGH",
            Self::Medium => "MEDIUM",
            Self::Low => "LOW",
        }
    }
}

/// Connect's `ConfigDef.Width`: how wide a UI should make the input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    None,
    Short,
    Medium,
    Long,
}

impl Width {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Short => "SHORT",
            Self::Medium => "MEDIUM",
            Self::Long => "LONG",
        }
    }
}

/// The groups the keys are shown in, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigGroup {
    /// Kafka Connect's own keys: name, class, tasks, converters, transforms, error handling.
    Common,
    /// The connection, the replication slot, the publication and the captured tables.
    Postgres,
    /// What the events look like and where they go.
    Events,
    /// The initial snapshot.
    Snapshot,
    /// A sink's target database.
    Connection,
    /// How a sink writes rows and which tables it writes them to.
    Writes,
    /// What a sink does with records it cannot apply.
    Errors,
    /// Windows, aggregates, event time and emission of the window stage.
    Window,
}

impl ConfigGroup {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Common => "Common",
            Self::Postgres => "Postgres",
            Self::Events => "Events",
            Self::Snapshot => "Snapshot",
            Self::Connection => "Connection",
            Self::Writes => "Writes",
            Self::Errors => "Errors",
            Self::Window => "Window",
        }
    }
}

/// One config key as Connect describes it (`ConfigDef.ConfigKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigKeyDefinition {
    pub name: &'static str,
    pub kind: ConfigKind,
    /// The config is invalid without it.
    pub required: bool,
    /// The value used when the key is absent, as a config string; `None` when there is none.
    pub default: Option<&'static str>,
    pub importance: Importance,
    /// One sentence: what the key does here.
    pub documentation: &'static str,
    pub group: ConfigGroup,
    pub display_name: &'static str,
    pub width: Width,
}

impl ConfigKeyDefinition {
    /// An optional key without a default; refine with [`Self::required`] and [`Self::default`].
    pub(crate) const fn new(
        name: &'static str,
        kind: ConfigKind,
        group: ConfigGroup,
        importance: Importance,
        width: Width,
        display_name: &'static str,
        documentation: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: None,
            importance,
            documentation,
            group,
            display_name,
            width,
        }
    }

    /// A key accepted for compatibility that has no effect; its documentation says so.
    pub(crate) const fn no_effect(
        name: &'static str,
        kind: ConfigKind,
        group: ConfigGroup,
        display_name: &'static str,
        documentation: &'static str,
    ) -> Self {
        let width = match kind {
            ConfigKind::List | ConfigKind::Class => Width::Long,
            _ => Width::Short,
        };
        Self::new(
            name,
            kind,
            group,
            Importance::Low,
            width,
            display_name,
            documentation,
        )
    }

    pub(crate) const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub(crate) const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    /// Connect's `ConfigKeyInfo` JSON. `order` counts from 1 across all keys, `order_in_group`
    /// from 1 within the key's group; [`definitions_json`] numbers a whole list.
    pub fn to_json(&self, order: usize, order_in_group: usize) -> Value {
        json!({
            "name": self.name,
            "type": self.kind.as_str(),
            "required": self.required,
            "default_value": self.default,
            "importance": self.importance.as_str(),
            "documentation": self.documentation,
            "group": self.group.as_str(),
            "width": self.width.as_str(),
            "display_name": self.display_name,
            "dependents": [],
            "order": order,
            "order_in_group": order_in_group,
        })
    }
}

/// The `ConfigKeyInfo` objects of `definitions`, numbered by their position in the list.
pub fn definitions_json(definitions: &[ConfigKeyDefinition]) -> Vec<Value> {
    let mut seen_in_group: Vec<(ConfigGroup, usize)> = Vec::new();
    definitions
        .iter()
        .enumerate()
        .map(|(index, definition)| {
            let in_group = match seen_in_group
                .iter_mut()
                .find(|(group, _)| *group == definition.group)
            {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    seen_in_group.push((definition.group, 1));
                    1
                }
            };
            definition.to_json(index + 1, in_group)
        })
        .collect()
}

/// The groups of `definitions` in order of first appearance (Connect's `ConfigInfos.groups`).
pub fn config_groups(definitions: &[ConfigKeyDefinition]) -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for definition in definitions {
        if !groups.contains(&definition.group.as_str()) {
            groups.push(definition.group.as_str());
        }
    }
    groups
}

/// Every key the PostgreSQL source accepts, grouped, in display order.
pub fn postgres_source_definitions() -> &'static [ConfigKeyDefinition] {
    &POSTGRES_SOURCE
}

/// The definition of one key of the PostgreSQL source.
pub fn postgres_source_definition(name: &str) -> Option<&'static ConfigKeyDefinition> {
    POSTGRES_SOURCE
        .iter()
        .find(|definition| definition.name == name)
}

static POSTGRES_SOURCE: LazyLock<Vec<ConfigKeyDefinition>> = LazyLock::new(|| {
    [
        POSTGRES_SOURCE_COMMON,
        CONVERTER_DEFINITIONS,
        POSTGRES_SOURCE_REST,
    ]
    .concat()
});

const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";

const POSTGRES_SOURCE_COMMON: &[ConfigKeyDefinition] = &[
    // Common: Kafka Connect's own keys.
    ConfigKeyDefinition::new(
        "name",
        ConfigKind::String,
        Common,
        High,
        Width::Medium,
        "Connector name",
        "Unique name of the connector in this service.",
    )
    .required(),
    ConfigKeyDefinition::new(
        "connector.class",
        ConfigKind::String,
        Common,
        High,
        Width::Long,
        "Connector class",
        "The connector to run: io.debezium.connector.postgresql.PostgresConnector (aliases \
         postgres-source and postgres); tributary standalone assumes it when the key is left \
         out.",
    )
    .default("io.debezium.connector.postgresql.PostgresConnector"),
    ConfigKeyDefinition::new(
        "tasks.max",
        Int,
        Common,
        High,
        Width::Short,
        "Tasks max",
        "Number of tasks, which must be 1 because one replication slot is read by one task; \
         beyond that check it has no effect.",
    )
    .default("1"),
];

/// The converter keys every connector takes (`key.converter`, `value.converter` and their
/// settings).
pub(crate) const CONVERTER_DEFINITIONS: &[ConfigKeyDefinition] = &[
    ConfigKeyDefinition::new(
        "key.converter",
        Class,
        Common,
        Medium,
        Width::Short,
        "Key converter class",
        "Format of the record keys: org.apache.kafka.connect.json.JsonConverter (alias json, \
         the default) or io.confluent.connect.avro.AvroConverter (alias avro: Avro with the \
         schema id of a Confluent-compatible registry).",
    )
    .default(JSON_CONVERTER),
    ConfigKeyDefinition::new(
        "key.converter.schemas.enable",
        Boolean,
        Common,
        Low,
        Width::Short,
        "Key schemas",
        "With the JSON converter, whether each record key is an envelope with schema and \
         payload (true) or the bare payload (false).",
    )
    .default("true"),
    ConfigKeyDefinition::new(
        "key.converter.schema.registry.url",
        ConfigKind::String,
        Common,
        Medium,
        Width::Long,
        "Key schema registry URL",
        "With the Avro converter, the schema registry's URL (the first of a comma-separated \
         list), such as tributary serve's own at http://127.0.0.1:8081.",
    ),
    ConfigKeyDefinition::new(
        "key.converter.basic.auth.user.info",
        Password,
        Common,
        Low,
        Width::Medium,
        "Key registry credentials",
        "With the Avro converter, user:password for the schema registry's basic authentication.",
    ),
    ConfigKeyDefinition::new(
        "key.converter.basic.auth.credentials.source",
        ConfigKind::String,
        Common,
        Low,
        Width::Short,
        "Key registry credentials source",
        "Where the registry credentials come from: only USER_INFO (the user.info key) is \
         supported.",
    )
    .default("USER_INFO"),
    ConfigKeyDefinition::new(
        "value.converter",
        Class,
        Common,
        Medium,
        Width::Short,
        "Value converter class",
        "Format of the record values: org.apache.kafka.connect.json.JsonConverter (alias json, \
         the default) or io.confluent.connect.avro.AvroConverter (alias avro: Avro with the \
         schema id of a Confluent-compatible registry).",
    )
    .default(JSON_CONVERTER),
    ConfigKeyDefinition::new(
        "value.converter.schemas.enable",
        Boolean,
        Common,
        Low,
        Width::Short,
        "Value schemas",
        "With the JSON converter, whether each record value is an envelope with schema and \
         payload (true) or the bare payload (false).",
    )
    .default("true"),
    ConfigKeyDefinition::new(
        "value.converter.schema.registry.url",
        ConfigKind::String,
        Common,
        Medium,
        Width::Long,
        "Value schema registry URL",
        "With the Avro converter, the schema registry's URL (the first of a comma-separated \
         list), such as tributary serve's own at http://127.0.0.1:8081.",
    ),
    ConfigKeyDefinition::new(
        "value.converter.basic.auth.user.info",
        Password,
        Common,
        Low,
        Width::Medium,
        "Value registry credentials",
        "With the Avro converter, user:password for the schema registry's basic authentication.",
    ),
    ConfigKeyDefinition::new(
        "value.converter.basic.auth.credentials.source",
        ConfigKind::String,
        Common,
        Low,
        Width::Short,
        "Value registry credentials source",
        "Where the registry credentials come from: only USER_INFO (the user.info key) is \
         supported.",
    )
    .default("USER_INFO"),
];

const POSTGRES_SOURCE_REST: &[ConfigKeyDefinition] = &[
    ConfigKeyDefinition::no_effect(
        "header.converter",
        Class,
        Common,
        "Header converter class",
        "Kafka Connect's format of the record headers; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::new(
        "transforms",
        List,
        Common,
        Low,
        Width::Long,
        "Transforms",
        "Single message transforms to apply, which are not supported yet, so any value is \
         rejected.",
    ),
    ConfigKeyDefinition::no_effect(
        "exactly.once.support",
        ConfigKind::String,
        Common,
        "Exactly-once support",
        "Kafka Connect's request (requested or required) for exactly-once delivery; accepted \
         and has no effect here, where every connector produces exactly once.",
    ),
    ConfigKeyDefinition::no_effect(
        "transaction.boundary",
        ConfigKind::String,
        Common,
        "Transaction boundary",
        "Kafka Connect's choice of where Kafka transactions end (poll, interval or connector); \
         accepted and has no effect here, where they end as transaction.boundary.interval.ms \
         says.",
    ),
    ConfigKeyDefinition::new(
        "transaction.boundary.interval.ms",
        Long,
        Common,
        Medium,
        Width::Short,
        "Transaction interval (ms)",
        "How long, in milliseconds, one Kafka transaction collects whole PostgreSQL \
         transactions before it commits.",
    )
    .default("100"),
    ConfigKeyDefinition::no_effect(
        "errors.max.retries",
        Int,
        Common,
        "Max retries",
        "Debezium's limit on retries of a retriable error; accepted and has no effect here, \
         where the supervisor retries transient errors itself.",
    ),
    ConfigKeyDefinition::no_effect(
        "errors.retry.timeout",
        Long,
        Common,
        "Retry timeout",
        "Kafka Connect's time limit for retrying a failed operation; accepted and has no effect \
         here.",
    ),
    ConfigKeyDefinition::no_effect(
        "errors.retry.delay.max.ms",
        Long,
        Common,
        "Maximum retry delay (ms)",
        "Kafka Connect's longest wait between retries of a failed operation; accepted and has \
         no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "errors.log.enable",
        Boolean,
        Common,
        "Log errors",
        "Kafka Connect's switch for logging failed operations; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "errors.log.include.messages",
        Boolean,
        Common,
        "Log error records",
        "Kafka Connect's switch for putting the failed record into the error log; accepted and \
         has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "retriable.restart.connector.wait.ms",
        Long,
        Common,
        "Restart wait (ms)",
        "Debezium's wait before a restart after a retriable error; accepted and has no effect \
         here.",
    ),
    ConfigKeyDefinition::no_effect(
        "custom.sanitize.pattern",
        ConfigKind::String,
        Common,
        "Sanitize pattern",
        "Debezium's pattern of the keys whose values are masked in REST responses; accepted and \
         has no effect here, where keys ending in password or secret and Kafka credential keys \
         are always masked.",
    ),
    // Postgres: the connection, the slot, the publication and the tables.
    ConfigKeyDefinition::new(
        "database.hostname",
        ConfigKind::String,
        Postgres,
        High,
        Width::Medium,
        "Hostname",
        "Host name or IP address of the PostgreSQL server.",
    )
    .required(),
    ConfigKeyDefinition::new(
        "database.port",
        Int,
        Postgres,
        High,
        Width::Short,
        "Port",
        "Port of the PostgreSQL server.",
    )
    .default("5432"),
    ConfigKeyDefinition::new(
        "database.user",
        ConfigKind::String,
        Postgres,
        High,
        Width::Short,
        "User",
        "Role the connector logs in as, which needs the REPLICATION attribute (or superuser) to \
         read the replication slot.",
    )
    .required(),
    ConfigKeyDefinition::new(
        "database.password",
        Password,
        Postgres,
        High,
        Width::Short,
        "Password",
        "Password of database.user, never shown in logs, errors or REST responses.",
    ),
    ConfigKeyDefinition::new(
        "database.dbname",
        ConfigKind::String,
        Postgres,
        High,
        Width::Medium,
        "Database",
        "Database whose changes are captured (a replication slot belongs to one database).",
    )
    .required(),
    ConfigKeyDefinition::new(
        "database.sslmode",
        ConfigKind::String,
        Postgres,
        Medium,
        Width::Short,
        "SSL mode",
        "TLS on the database connections, as libpq's sslmode: disable, allow, prefer, require, \
         verify-ca or verify-full.",
    )
    .default("prefer"),
    ConfigKeyDefinition::new(
        "database.sslrootcert",
        ConfigKind::String,
        Postgres,
        Medium,
        Width::Long,
        "SSL root certificate",
        "Path of a PEM file with the certificates trusted to sign the server's certificate.",
    ),
    ConfigKeyDefinition::no_effect(
        "database.tcpKeepAlive",
        Boolean,
        Postgres,
        "TCP keep-alive",
        "Debezium's switch for TCP keep-alive on the database connection; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "database.initial.statements",
        ConfigKind::String,
        Postgres,
        "Initial statements",
        "Debezium's SQL statements run on every new database connection; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "database.query.timeout.ms",
        Int,
        Postgres,
        "Query timeout (ms)",
        "Debezium's time limit for database queries; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::new(
        "plugin.name",
        ConfigKind::String,
        Postgres,
        Medium,
        Width::Short,
        "Plugin",
        "Logical decoding output plugin, of which only pgoutput (built into PostgreSQL 10 and \
         later) is supported.",
    )
    .default("pgoutput"),
    ConfigKeyDefinition::new(
        "slot.name",
        ConfigKind::String,
        Postgres,
        High,
        Width::Medium,
        "Slot",
        "Logical replication slot the changes are read from, 1-63 characters of a-z, 0-9 and _.",
    )
    .default("debezium"),
    ConfigKeyDefinition::new(
        "slot.drop.on.stop",
        Boolean,
        Postgres,
        Low,
        Width::Short,
        "Drop slot on stop",
        "Whether the replication slot is dropped when the connector stops cleanly, so the \
         server keeps no WAL for it and changes made while stopped are lost.",
    )
    .default("false"),
    ConfigKeyDefinition::no_effect(
        "slot.max.retries",
        Int,
        Postgres,
        "Slot retries",
        "Debezium's number of attempts to take a replication slot that is in use; accepted and \
         has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "slot.retry.delay.ms",
        Long,
        Postgres,
        "Slot retry delay (ms)",
        "Debezium's wait between attempts to take a replication slot that is in use; accepted \
         and has no effect here.",
    ),
    ConfigKeyDefinition::new(
        "status.update.interval.ms",
        Long,
        Postgres,
        Low,
        Width::Short,
        "Status update interval (ms)",
        "Longest time, in milliseconds, between standby status updates to the server, which go \
         out at least once a second even when this is larger.",
    )
    .default("10000"),
    ConfigKeyDefinition::no_effect(
        "lsn.flush.mode",
        ConfigKind::String,
        Postgres,
        "LSN flush mode",
        "Debezium's choice of who confirms processed LSNs to the slot; accepted and has no \
         effect here, where an LSN is confirmed once the Kafka transaction holding it has \
         committed.",
    ),
    ConfigKeyDefinition::no_effect(
        "flush.lsn.source",
        Boolean,
        Postgres,
        "Flush LSN",
        "Debezium's older switch for confirming processed LSNs to the slot; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "offset.mismatch.strategy",
        ConfigKind::String,
        Postgres,
        "Offset mismatch strategy",
        "Debezium's choice of what to trust when the stored offset and the slot disagree; \
         accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "xmin.fetch.interval.ms",
        Long,
        Postgres,
        "Xmin fetch interval (ms)",
        "Debezium's period for reading the slot's xmin into the events; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "schema.refresh.mode",
        ConfigKind::String,
        Postgres,
        "Schema refresh mode",
        "Debezium's choice of when a table's schema is refreshed while streaming; accepted and \
         has no effect here.",
    ),
    ConfigKeyDefinition::new(
        "publication.name",
        ConfigKind::String,
        Postgres,
        High,
        Width::Medium,
        "Publication",
        "Publication that selects the tables whose changes are streamed.",
    )
    .default("dbz_publication"),
    ConfigKeyDefinition::new(
        "publication.autocreate.mode",
        ConfigKind::String,
        Postgres,
        Medium,
        Width::Short,
        "Publication auto-create mode",
        "How the publication is set up: all_tables creates it FOR ALL TABLES when missing, \
         filtered sets it to the tables the include/exclude lists select at every start, \
         no_tables creates it empty when missing, and disabled requires it to exist.",
    )
    .default("all_tables"),
    ConfigKeyDefinition::new(
        "schema.include.list",
        List,
        Postgres,
        Medium,
        Width::Long,
        "Schemas to include",
        "Regular expressions (anchored, case-insensitive, comma-separated) of the schemas to \
         capture, not to be combined with schema.exclude.list.",
    ),
    ConfigKeyDefinition::new(
        "schema.exclude.list",
        List,
        Postgres,
        Medium,
        Width::Long,
        "Schemas to exclude",
        "Regular expressions (anchored, case-insensitive, comma-separated) of the schemas not \
         to capture, not to be combined with schema.include.list.",
    ),
    ConfigKeyDefinition::new(
        "table.include.list",
        List,
        Postgres,
        Medium,
        Width::Long,
        "Tables to include",
        "Regular expressions (anchored, case-insensitive, comma-separated) of the \
         <schema>.<table> names to capture, not to be combined with table.exclude.list.",
    ),
    ConfigKeyDefinition::new(
        "table.exclude.list",
        List,
        Postgres,
        Medium,
        Width::Long,
        "Tables to exclude",
        "Regular expressions (anchored, case-insensitive, comma-separated) of the \
         <schema>.<table> names not to capture, not to be combined with table.include.list.",
    ),
    ConfigKeyDefinition::new(
        "column.include.list",
        List,
        Postgres,
        Low,
        Width::Long,
        "Columns to include",
        "Regular expressions (anchored, case-insensitive, comma-separated) of the \
         <schema>.<table>.<column> names in the events (key columns always are), not to be \
         combined with column.exclude.list.",
    ),
    ConfigKeyDefinition::new(
        "column.exclude.list",
        List,
        Postgres,
        Low,
        Width::Long,
        "Columns to exclude",
        "Regular expressions (anchored, case-insensitive, comma-separated) of the \
         <schema>.<table>.<column> names left out of the events (key columns never are), not \
         to be combined with column.include.list.",
    ),
    ConfigKeyDefinition::no_effect(
        "guardrail.collections.max",
        Int,
        Postgres,
        "Maximum tables",
        "Debezium's limit on the number of captured tables; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "guardrail.collections.limit.action",
        ConfigKind::String,
        Postgres,
        "Maximum tables action",
        "Debezium's reaction (warn or fail) to more tables than guardrail.collections.max; \
         accepted and has no effect here.",
    ),
    // Events: formats and topics.
    ConfigKeyDefinition::new(
        "topic.prefix",
        ConfigKind::String,
        Events,
        High,
        Width::Medium,
        "Topic prefix",
        "Logical name of the source and prefix of every topic (<topic.prefix>.<schema>.<table>), \
         made of letters, digits, '.', '_' and '-'.",
    )
    .required(),
    ConfigKeyDefinition::new(
        "database.server.name",
        ConfigKind::String,
        Events,
        Low,
        Width::Medium,
        "Server name (before Debezium 2.0)",
        "Older name of topic.prefix, used only when topic.prefix is not set.",
    ),
    ConfigKeyDefinition::new(
        "topic.delimiter",
        ConfigKind::String,
        Events,
        Low,
        Width::Short,
        "Topic delimiter",
        "Separator in the names of the transaction, message and heartbeat topics (table topics \
         always use '.').",
    )
    .default("."),
    ConfigKeyDefinition::new(
        "topic.transaction",
        ConfigKind::String,
        Events,
        Low,
        Width::Medium,
        "Transaction topic suffix",
        "Suffix of the transaction metadata topic, <topic.prefix><topic.delimiter><suffix>.",
    )
    .default("transaction"),
    ConfigKeyDefinition::new(
        "topic.heartbeat.prefix",
        ConfigKind::String,
        Events,
        Low,
        Width::Medium,
        "Heartbeat topic prefix",
        "Prefix of the heartbeat topic, <prefix><topic.delimiter><topic.prefix>.",
    )
    .default("__debezium-heartbeat"),
    ConfigKeyDefinition::new(
        "heartbeat.interval.ms",
        Long,
        Events,
        Medium,
        Width::Short,
        "Heartbeat interval (ms)",
        "How often, in milliseconds, a heartbeat goes through the WAL to the heartbeat topic so \
         the slot advances while the captured tables are idle, with 0 for no heartbeats.",
    )
    .default("0"),
    ConfigKeyDefinition::no_effect(
        "topic.naming.strategy",
        Class,
        Events,
        "Topic naming strategy",
        "Debezium's class that names the topics; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "topic.creation.enable",
        Boolean,
        Events,
        "Topic creation",
        "Kafka Connect's switch for creating missing topics; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::new(
        "topic.creation.default.partitions",
        Int,
        Events,
        Low,
        Width::Short,
        "Topic partitions",
        "Number of partitions of the topics the connector creates.",
    )
    .default("1"),
    ConfigKeyDefinition::new(
        "topic.creation.default.replication.factor",
        Int,
        Events,
        Low,
        Width::Short,
        "Topic replication factor",
        "Replication factor of the topics the connector creates, where -1 (Connect's broker \
         default) means 1.",
    )
    .default("-1"),
    ConfigKeyDefinition::new(
        "skipped.operations",
        List,
        Events,
        Medium,
        Width::Short,
        "Skipped operations",
        "Operations not emitted, a list of c (create), u (update), d (delete) and t (truncate) \
         or none, which a publication the connector creates does not publish.",
    )
    .default("t"),
    ConfigKeyDefinition::new(
        "tombstones.on.delete",
        Boolean,
        Events,
        Medium,
        Width::Short,
        "Tombstones on delete",
        "Whether each delete event is followed by a tombstone (the same key, a null value) so \
         that log compaction can drop the key.",
    )
    .default("true"),
    ConfigKeyDefinition::new(
        "provide.transaction.metadata",
        Boolean,
        Events,
        Low,
        Width::Short,
        "Transaction metadata",
        "Whether BEGIN and END records go to the transaction topic and each event carries its \
         transaction's id and position.",
    )
    .default("false"),
    ConfigKeyDefinition::new(
        "decimal.handling.mode",
        ConfigKind::String,
        Events,
        Medium,
        Width::Short,
        "Decimal handling",
        "How numeric, decimal and money values appear: precise (Connect's Decimal), double or \
         string.",
    )
    .default("precise"),
    ConfigKeyDefinition::new(
        "time.precision.mode",
        ConfigKind::String,
        Events,
        Medium,
        Width::Short,
        "Time precision",
        "How date, time and timestamp values appear: adaptive (the column type's precision), \
         adaptive_time_microseconds (times in microseconds) or connect (Connect's millisecond \
         types).",
    )
    .default("adaptive"),
    ConfigKeyDefinition::new(
        "binary.handling.mode",
        ConfigKind::String,
        Events,
        Low,
        Width::Short,
        "Binary handling",
        "How bytea values appear: bytes, base64, base64-url-safe or hex.",
    )
    .default("bytes"),
    ConfigKeyDefinition::new(
        "hstore.handling.mode",
        ConfigKind::String,
        Events,
        Low,
        Width::Short,
        "Hstore handling",
        "How hstore values appear, of which only json (a JSON object in a string) is supported.",
    )
    .default("json"),
    ConfigKeyDefinition::new(
        "interval.handling.mode",
        ConfigKind::String,
        Events,
        Low,
        Width::Short,
        "Interval handling",
        "How interval values appear, of which only numeric (microseconds) is supported.",
    )
    .default("numeric"),
    ConfigKeyDefinition::new(
        "money.fraction.digits",
        Int,
        Events,
        Low,
        Width::Short,
        "Money fraction digits",
        "Number of digits after the decimal point of money values.",
    )
    .default("2"),
    ConfigKeyDefinition::new(
        "unavailable.value.placeholder",
        ConfigKind::String,
        Events,
        Low,
        Width::Medium,
        "Unavailable value placeholder",
        "Value that stands for an unchanged TOASTed column the server did not send.",
    )
    .default("__debezium_unavailable_value"),
    ConfigKeyDefinition::no_effect(
        "include.unknown.datatypes",
        Boolean,
        Events,
        "Include unknown types",
        "Debezium's switch for emitting columns of types it cannot convert; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "schema.name.adjustment.mode",
        ConfigKind::String,
        Events,
        "Schema name adjustment",
        "Debezium's rewriting of schema names for Avro (none, avro or avro_unicode); accepted \
         and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "field.name.adjustment.mode",
        ConfigKind::String,
        Events,
        "Field name adjustment",
        "Debezium's rewriting of field names for Avro (none, avro or avro_unicode); accepted \
         and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "extended.headers.enabled",
        Boolean,
        Events,
        "Extended headers",
        "Debezium's switch for the __debezium.context.* record headers; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "event.processing.failure.handling.mode",
        ConfigKind::String,
        Events,
        "Event failure handling",
        "Debezium's reaction (fail, warn or skip) to an event it cannot process; accepted and \
         has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "converters",
        List,
        Events,
        "Custom converters",
        "Debezium's custom converters of column values; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "max.batch.size",
        Int,
        Events,
        "Max batch size",
        "Debezium's limit on the events handed to Kafka Connect at once; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "max.queue.size",
        Int,
        Events,
        "Max queue size",
        "Debezium's capacity, in events, of its queue towards Kafka Connect; accepted and has \
         no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "max.queue.size.in.bytes",
        Long,
        Events,
        "Max queue size (bytes)",
        "Debezium's capacity, in bytes, of its queue towards Kafka Connect; accepted and has no \
         effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "poll.interval.ms",
        Long,
        Events,
        "Poll interval (ms)",
        "Debezium's wait for new events before Kafka Connect polls again; accepted and has no \
         effect here.",
    ),
    // Snapshot.
    ConfigKeyDefinition::new(
        "snapshot.mode",
        ConfigKind::String,
        Snapshot,
        High,
        Width::Short,
        "Snapshot mode",
        "When existing rows are copied before streaming: initial (when there is no complete \
         stored offset), always (on every start), no_data (never; alias never, deprecated), \
         initial_only (copy, then stop without streaming) or when_needed (also when the stored \
         position can no longer be resumed).",
    )
    .default("initial"),
    ConfigKeyDefinition::new(
        "snapshot.max.threads",
        Int,
        Snapshot,
        Medium,
        Width::Short,
        "Snapshot threads",
        "Connections that copy tables in parallel during a snapshot (1 to 64); large tables are \
         split into ctid ranges so one table uses them all.",
    )
    .default("1"),
    ConfigKeyDefinition::new(
        "snapshot.fetch.size",
        Int,
        Snapshot,
        Low,
        Width::Short,
        "Snapshot fetch size",
        "Rows a copying connection hands over at a time; bounds the memory a snapshot uses.",
    )
    .default("10240"),
    ConfigKeyDefinition::new(
        "snapshot.chunk.rows",
        Long,
        Snapshot,
        Low,
        Width::Short,
        "Snapshot chunk rows",
        "Rows per ctid-range chunk a table is split into for a parallel snapshot (estimated \
         from the table's size).",
    )
    .default("250000"),
    ConfigKeyDefinition::new(
        "snapshot.include.collection.list",
        List,
        Snapshot,
        Medium,
        Width::Long,
        "Snapshot tables",
        "Regular expressions for the captured tables (schema.table) whose rows a snapshot \
         copies; empty means every captured table.",
    ),
    ConfigKeyDefinition::new(
        "snapshot.select.statement.overrides",
        List,
        Snapshot,
        Low,
        Width::Long,
        "Snapshot SELECT overrides",
        "Tables (schema.table) whose snapshot uses the SELECT given under \
         snapshot.select.statement.overrides.<schema>.<table> instead of reading every row.",
    ),
    ConfigKeyDefinition::no_effect(
        "snapshot.lock.timeout.ms",
        Long,
        Snapshot,
        "Snapshot lock timeout (ms)",
        "Debezium's wait for table locks during a snapshot; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "snapshot.isolation.mode",
        ConfigKind::String,
        Snapshot,
        "Snapshot isolation",
        "Debezium's transaction isolation level of a snapshot; accepted and has no effect here.",
    ),
    ConfigKeyDefinition::no_effect(
        "snapshot.locking.mode",
        ConfigKind::String,
        Snapshot,
        "Snapshot locking",
        "Debezium's choice of table locks taken during a snapshot; accepted and has no effect \
         here.",
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{
        ConnectorConfig, PostgresSourceConfig, ValidationErrors, postgres_source::IGNORED_KEYS,
    };

    /// A valid value for each required key; nothing else is set.
    const REQUIRED_SAMPLES: &[(&str, &str)] = &[
        ("name", "inventory"),
        ("database.hostname", "127.0.0.1"),
        ("database.user", "postgres"),
        ("database.dbname", "shop"),
        ("topic.prefix", "shop"),
    ];

    fn minimal() -> BTreeMap<String, String> {
        REQUIRED_SAMPLES
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn parse(config: BTreeMap<String, String>) -> Result<PostgresSourceConfig, ValidationErrors> {
        PostgresSourceConfig::from_connector(&ConnectorConfig {
            name: "inventory".to_owned(),
            config,
        })
    }

    /// The parsed config as comparable text (it holds regexes and secrets, so no `PartialEq`);
    /// `ignored_keys` is cleared because it lists the keys that were given, not their effect.
    fn parsed_text(config: BTreeMap<String, String>) -> Result<String, ValidationErrors> {
        let mut parsed = parse(config)?;
        parsed.ignored_keys.clear();
        Ok(format!("{parsed:?}"))
    }

    fn is_ignored(name: &str) -> bool {
        IGNORED_KEYS.contains(&name)
    }

    fn keys_read() -> Vec<&'static str> {
        // Both an empty config and a full one: a key read only on some path still counts.
        let mut full = minimal();
        for definition in postgres_source_definitions() {
            if let Some(default) = definition.default {
                full.insert(definition.name.to_owned(), default.to_owned());
            }
        }
        let mut read = Vec::new();
        for config in [BTreeMap::new(), full] {
            let connector = ConnectorConfig {
                name: "inventory".to_owned(),
                config,
            };
            read.extend(PostgresSourceConfig::keys_read(&connector));
        }
        read.sort_unstable();
        read.dedup();
        read
    }

    #[test]
    fn every_key_the_parser_reads_is_defined() {
        let read = keys_read();
        assert!(
            read.len() > 30,
            "the parser seems not to record its keys: {read:?}"
        );
        for key in read {
            assert!(
                postgres_source_definition(key).is_some(),
                "{key} is read by PostgresSourceConfig::from_connector but has no definition"
            );
        }
    }

    #[test]
    fn every_accepted_but_ignored_key_is_defined_and_says_it_has_no_effect() {
        for key in IGNORED_KEYS {
            let definition = postgres_source_definition(key)
                .unwrap_or_else(|| panic!("{key} is accepted and ignored but has no definition"));
            assert!(
                definition.documentation.contains("no effect"),
                "{key}: the documentation must say that it has no effect"
            );
        }
    }

    #[test]
    fn every_definition_is_read_or_ignored() {
        let read = keys_read();
        for definition in postgres_source_definitions() {
            assert!(
                read.contains(&definition.name) || is_ignored(definition.name),
                "{} is defined but the parser neither reads nor ignores it",
                definition.name
            );
        }
    }

    #[test]
    fn names_are_unique_and_groups_contiguous() {
        let definitions = postgres_source_definitions();
        let mut names: Vec<&str> = definitions.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a key is defined twice");
        let mut groups: Vec<ConfigGroup> = definitions.iter().map(|d| d.group).collect();
        groups.dedup();
        assert_eq!(
            groups,
            [
                ConfigGroup::Common,
                ConfigGroup::Postgres,
                ConfigGroup::Events,
                ConfigGroup::Snapshot
            ],
            "each group's keys must sit together, in display order"
        );
    }

    #[test]
    fn required_flags_match_the_parser() {
        for definition in postgres_source_definitions() {
            assert_eq!(
                definition.required,
                REQUIRED_SAMPLES
                    .iter()
                    .any(|(key, _)| *key == definition.name),
                "{}: required flag and REQUIRED_SAMPLES disagree",
                definition.name
            );
            assert!(
                !(definition.required && definition.default.is_some()),
                "{}: a required key has no default",
                definition.name
            );
        }
        // Only the required keys set: valid, so no other key is required.
        parse(minimal()).expect("the required keys alone are a valid config");
        for (key, _) in REQUIRED_SAMPLES.iter().filter(|(key, _)| *key != "name") {
            let mut config = minimal();
            config.remove(*key);
            let err = parse(config).expect_err("a required key is missing");
            assert!(
                err.for_key(key).next().is_some(),
                "{key} is marked required but its absence is not reported: {err}"
            );
        }
        // The connector name is required one level up, when the config is read from JSON.
        let err = ConnectorConfig::from_json(r#"{"database.hostname":"h"}"#).expect_err("no name");
        assert!(err.for_key("name").next().is_some(), "{err}");
    }

    #[test]
    fn written_defaults_are_what_the_parser_uses_when_the_key_is_absent() {
        let absent = parsed_text(minimal()).expect("valid");
        let mut checked = 0;
        for definition in postgres_source_definitions() {
            let Some(default) = definition.default else {
                continue;
            };
            let mut config = minimal();
            config.insert(definition.name.to_owned(), default.to_owned());
            let explicit = parsed_text(config).unwrap_or_else(|err| {
                panic!(
                    "{}: the default {default:?} is rejected: {err}",
                    definition.name
                )
            });
            assert_eq!(
                explicit, absent,
                "{}: setting the written default {default:?} changes the config, so the parser \
                 uses another default",
                definition.name
            );
            checked += 1;
        }
        assert!(checked >= 25, "only {checked} defaults were checked");
    }

    #[test]
    fn defaults_differ_from_other_values() {
        // Guards the test above: a key whose value has an effect does change the parsed config.
        let absent = parsed_text(minimal()).expect("valid");
        for (key, other) in [
            ("database.port", "5433"),
            ("slot.drop.on.stop", "true"),
            ("tombstones.on.delete", "false"),
            ("decimal.handling.mode", "string"),
            ("status.update.interval.ms", "500"),
            ("skipped.operations", "none"),
            ("topic.creation.default.replication.factor", "3"),
        ] {
            let mut config = minimal();
            config.insert(key.to_owned(), other.to_owned());
            assert_ne!(parsed_text(config).expect("valid"), absent, "{key}={other}");
        }
    }

    #[test]
    fn typed_keys_reject_values_of_another_type() {
        for definition in postgres_source_definitions() {
            let typed = matches!(
                definition.kind,
                ConfigKind::Boolean | ConfigKind::Int | ConfigKind::Short | ConfigKind::Long
            );
            if !typed || is_ignored(definition.name) {
                continue;
            }
            let mut config = minimal();
            config.insert(definition.name.to_owned(), "not-a-value".to_owned());
            let err = parse(config).expect_err("a value of the wrong type");
            assert!(
                err.for_key(definition.name).next().is_some(),
                "{} is {} but accepts any text",
                definition.name,
                definition.kind.as_str()
            );
        }
    }

    #[test]
    fn documentation_is_one_sentence() {
        for definition in postgres_source_definitions() {
            let doc = definition.documentation;
            assert!(doc.ends_with('.'), "{}: {doc:?}", definition.name);
            assert!(
                !doc.contains(". ") && !doc.contains("  "),
                "{}: one sentence, single spaces: {doc:?}",
                definition.name
            );
            assert!(!definition.display_name.is_empty(), "{}", definition.name);
        }
    }

    #[test]
    fn password_is_a_password() {
        let definition = postgres_source_definition("database.password").expect("defined");
        assert_eq!(definition.kind, ConfigKind::Password);
        assert_eq!(definition.default, None);
    }

    #[test]
    fn json_is_connects_config_key_info() {
        let definitions = postgres_source_definitions();
        let all = definitions_json(definitions);
        assert_eq!(all.len(), definitions.len());
        let hostname = all
            .iter()
            .find(|info| info["name"] == "database.hostname")
            .expect("listed");
        let hostname_index = definitions
            .iter()
            .position(|d| d.name == "database.hostname")
            .expect("defined");
        assert_eq!(
            *hostname,
            json!({
                "name": "database.hostname",
                "type": "STRING",
                "required": true,
                "default_value": null,
                "importance": "HIGH",
                "documentation": "Host name or IP address of the PostgreSQL server.",
                "group": "Postgres",
                "width": "MEDIUM",
                "display_name": "Hostname",
                "dependents": [],
                "order": hostname_index + 1,
                "order_in_group": 1,
            })
        );
        let port = all
            .iter()
            .find(|info| info["name"] == "database.port")
            .expect("listed");
        assert_eq!(port["type"], "INT");
        assert_eq!(port["default_value"], "5432", "defaults are strings");
        assert_eq!(port["order_in_group"], 2);

        // Numbering: order runs over all keys, order_in_group restarts in each group.
        let mut last_in_group: BTreeMap<String, u64> = BTreeMap::new();
        for (index, info) in all.iter().enumerate() {
            assert_eq!(info["order"], index + 1);
            let group = info["group"].as_str().expect("group").to_owned();
            let in_group = info["order_in_group"].as_u64().expect("number");
            let previous = last_in_group.insert(group, in_group).unwrap_or(0);
            assert_eq!(in_group, previous + 1, "{}", info["name"]);
            let object = info.as_object().expect("object");
            assert_eq!(object.len(), 12, "{info}");
        }
        assert_eq!(
            config_groups(definitions),
            ["Common", "Postgres", "Events", "Snapshot"]
        );
    }
}
