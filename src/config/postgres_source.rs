use std::{collections::BTreeMap, time::Duration};

use regex::{Regex, RegexBuilder};
use secrecy::SecretString;

use super::{
    ConnectorConfig, ValidationErrors, definitions::postgres_source_definitions, keys::KeyReader,
};
use super::{
    SslConfig, SslMode,
    converter::{self, Converter, KEY_CONVERTER_KEYS, VALUE_CONVERTER_KEYS},
};
use crate::event::TableId;
pub use crate::format::{BinaryHandling, DecimalHandling, TimePrecision};

/// The connector classes that mean "the PostgreSQL source".
pub const POSTGRES_SOURCE_CLASSES: &[&str] = &[
    "io.debezium.connector.postgresql.PostgresConnector",
    "postgres-source",
    "postgres",
];

/// `publication.autocreate.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocreateMode {
    AllTables,
    Filtered,
    NoTables,
    Disabled,
}

/// `snapshot.mode`, with Debezium's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Snapshot when no completed snapshot is stored, then stream.
    #[default]
    Initial,
    /// Snapshot on every start (a new slot point each time), then stream.
    Always,
    /// No snapshot: stream changes from the slot's position on (`never` is an old alias).
    NoData,
    /// Snapshot when no completed snapshot is stored, then stop: no streaming.
    InitialOnly,
    /// As `initial`, and also when the stored position can no longer be resumed from (the slot
    /// is missing, invalidated or past the stored offset) instead of failing.
    WhenNeeded,
}

/// The snapshot settings besides the mode.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// `snapshot.max.threads`: connections copying tables (and chunks of one table) in parallel.
    pub max_threads: usize,
    /// `snapshot.fetch.size`: rows per batch handed from a copying connection to the producer.
    pub fetch_size: usize,
    /// `snapshot.chunk.rows` (tributary's own): about how many rows one ctid-range chunk of a
    /// table holds; a table larger than this is split so several threads copy it.
    pub chunk_rows: u64,
    /// `snapshot.include.collection.list`: which captured tables are snapshotted (all when empty).
    pub include: Vec<Regex>,
    /// `snapshot.select.statement.overrides.<schema>.<table>`: the SELECT that reads a table
    /// instead of all of its rows, keyed by `<schema>.<table>`.
    pub select_overrides: BTreeMap<String, String>,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            max_threads: 1,
            fetch_size: DEFAULT_SNAPSHOT_FETCH_SIZE,
            chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
            include: Vec::new(),
            select_overrides: BTreeMap::new(),
        }
    }
}

impl SnapshotSettings {
    /// Whether `table` (captured) is part of the snapshot.
    pub fn includes(&self, table: &TableId) -> bool {
        let qualified = table.to_string();
        self.include.is_empty() || self.include.iter().any(|p| p.is_match(&qualified))
    }

    /// The SELECT overriding how `table` is read, if one is configured.
    pub fn select_override(&self, table: &TableId) -> Option<&str> {
        self.select_overrides
            .get(&table.to_string())
            .map(String::as_str)
    }
}

/// Debezium's default `snapshot.fetch.size`.
pub const DEFAULT_SNAPSHOT_FETCH_SIZE: usize = 10_240;
/// Rows per ctid-range chunk when `snapshot.chunk.rows` is not set (as supabase/etl and PeerDB).
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: u64 = 250_000;
/// The key prefix of per-table snapshot SELECT overrides.
const SELECT_OVERRIDES_PREFIX: &str = "snapshot.select.statement.overrides.";

/// Which operations are not emitted (`skipped.operations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkippedOperations {
    pub create: bool,
    pub update: bool,
    pub delete: bool,
    pub truncate: bool,
}

/// Debezium's include/exclude lists: anchored, case-insensitive regular expressions.
#[derive(Debug, Clone, Default)]
pub struct TablePatterns {
    pub schema_include: Vec<Regex>,
    pub schema_exclude: Vec<Regex>,
    pub table_include: Vec<Regex>,
    pub table_exclude: Vec<Regex>,
    pub column_include: Vec<Regex>,
    pub column_exclude: Vec<Regex>,
}

impl TablePatterns {
    /// Whether changes of `table` are captured.
    pub fn captures(&self, table: &TableId) -> bool {
        let schema = table.schema.as_str();
        let qualified = table.to_string();
        let matches = |patterns: &[Regex], text: &str| patterns.iter().any(|p| p.is_match(text));
        if !self.schema_include.is_empty() && !matches(&self.schema_include, schema) {
            return false;
        }
        if matches(&self.schema_exclude, schema) {
            return false;
        }
        if !self.table_include.is_empty() && !matches(&self.table_include, &qualified) {
            return false;
        }
        !matches(&self.table_exclude, &qualified)
    }

    /// Whether `column` of `table` is part of the events (key columns always are).
    pub fn captures_column(&self, table: &TableId, column: &str) -> bool {
        let qualified = format!("{table}.{column}");
        if !self.column_include.is_empty()
            && !self.column_include.iter().any(|p| p.is_match(&qualified))
        {
            return false;
        }
        !self.column_exclude.iter().any(|p| p.is_match(&qualified))
    }
}

/// A validated PostgreSQL source connector config (Debezium's PostgresConnector keys).
#[derive(Debug, Clone)]
pub struct PostgresSourceConfig {
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    pub dbname: String,
    pub ssl: SslConfig,
    pub topic_prefix: String,
    pub slot_name: String,
    pub slot_drop_on_stop: bool,
    pub publication_name: String,
    pub publication_autocreate: AutocreateMode,
    pub patterns: TablePatterns,
    pub skipped_operations: SkippedOperations,
    pub tombstones_on_delete: bool,
    pub decimal_handling: DecimalHandling,
    pub time_precision: TimePrecision,
    pub binary_handling: BinaryHandling,
    pub money_fraction_digits: u32,
    pub unavailable_value_placeholder: String,
    pub provide_transaction_metadata: bool,
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_topic: String,
    pub transaction_topic: String,
    pub message_topic: String,
    pub key_schemas_enable: bool,
    pub value_schemas_enable: bool,
    /// `key.converter`: JSON (with `key_schemas_enable`) or Avro with a registry.
    pub key_converter: Converter,
    pub value_converter: Converter,
    pub status_update_interval: Duration,
    pub snapshot_mode: SnapshotMode,
    pub snapshot: SnapshotSettings,
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    /// How long a Kafka transaction collects whole PostgreSQL transactions before committing.
    pub transaction_interval: Duration,
    /// Keys accepted for compatibility that have no effect here (reported at start).
    pub ignored_keys: Vec<String>,
    /// Accepted but deprecated settings, each with what to use instead (logged at start).
    pub warnings: Vec<String>,
}

/// Keys of Debezium and Kafka Connect that are accepted and have no effect: JVM-specific knobs
/// and tuning that this implementation does differently. Each has a definition in
/// `definitions.rs` that says so.
pub(crate) const IGNORED_KEYS: &[&str] = &[
    "tasks.max",
    "database.tcpKeepAlive",
    "database.initial.statements",
    "max.batch.size",
    "max.queue.size",
    "max.queue.size.in.bytes",
    "poll.interval.ms",
    "errors.max.retries",
    "errors.retry.timeout",
    "errors.retry.delay.max.ms",
    "errors.log.enable",
    "errors.log.include.messages",
    "retriable.restart.connector.wait.ms",
    "database.query.timeout.ms",
    "custom.sanitize.pattern",
    "extended.headers.enabled",
    "lsn.flush.mode",
    "flush.lsn.source",
    "offset.mismatch.strategy",
    "xmin.fetch.interval.ms",
    "slot.max.retries",
    "slot.retry.delay.ms",
    "include.unknown.datatypes",
    "schema.name.adjustment.mode",
    "field.name.adjustment.mode",
    "schema.refresh.mode",
    "topic.naming.strategy",
    "topic.creation.enable",
    "exactly.once.support",
    "transaction.boundary",
    "event.processing.failure.handling.mode",
    "converters",
    "header.converter",
    "guardrail.collections.max",
    "guardrail.collections.limit.action",
    "snapshot.lock.timeout.ms",
    "snapshot.isolation.mode",
    "snapshot.locking.mode",
];

impl PostgresSourceConfig {
    /// Validates the config after resolving `${env:…}` and `${file:…}` placeholders.
    pub fn from_connector(connector: &ConnectorConfig) -> Result<Self, ValidationErrors> {
        let resolved = super::providers::resolve(&connector.config)?;
        let mut keys = KeyReader::new(&resolved);
        let config = Self::read(connector, &resolved, &mut keys);
        if keys.errors.is_empty() {
            Ok(config)
        } else {
            Err(ValidationErrors(keys.errors))
        }
    }

    /// The keys `from_connector` reads (through `KeyReader`) for this config; the definitions'
    /// tests compare them with the documented keys.
    #[cfg(test)]
    pub(crate) fn keys_read(connector: &ConnectorConfig) -> Vec<&'static str> {
        let mut keys = KeyReader::new(&connector.config);
        Self::read(connector, &connector.config, &mut keys);
        keys.read_keys().to_vec()
    }

    /// Reads every key, recording each problem in `keys.errors`; the result is meaningful only
    /// when there are none.
    fn read(
        connector: &ConnectorConfig,
        resolved: &BTreeMap<String, String>,
        keys: &mut KeyReader<'_>,
    ) -> Self {
        keys.raw("name");
        if let Some(class) = keys.raw("connector.class")
            && !POSTGRES_SOURCE_CLASSES.contains(&class)
        {
            keys.error(
                "connector.class",
                format!(
                    "{class:?} is not the PostgreSQL source; use {}",
                    POSTGRES_SOURCE_CLASSES[0]
                ),
            );
        }
        if let Some(tasks) = resolved.get("tasks.max")
            && tasks.trim() != "1"
        {
            keys.error(
                "tasks.max",
                "must be 1: one replication slot is read by one task",
            );
        }

        let hostname = keys.required("database.hostname");
        let port = keys.parsed("database.port", 5432u16, "a port number (1-65535)");
        let user = keys.required("database.user");
        let password = keys
            .raw("database.password")
            .map(|p| SecretString::from(p.to_owned()));
        let dbname = keys.required("database.dbname");
        let ssl_mode = match keys.raw("database.sslmode") {
            None => SslMode::Prefer,
            Some(text) => text.parse().unwrap_or_else(|message: String| {
                keys.error("database.sslmode", message);
                SslMode::Prefer
            }),
        };
        let root_cert = keys.raw("database.sslrootcert").map(Into::into);

        let topic_prefix = match (keys.raw("topic.prefix"), keys.raw("database.server.name")) {
            (Some(prefix), _) | (None, Some(prefix)) => prefix.to_owned(),
            (None, None) => {
                keys.error(
                    "topic.prefix",
                    "is required (it names every topic: <topic.prefix>.<schema>.<table>)",
                );
                String::new()
            }
        };
        if !topic_prefix.is_empty()
            && !topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            keys.error(
                "topic.prefix",
                format!("{topic_prefix:?} may contain only letters, digits, '.', '_' and '-' (Kafka topic names)"),
            );
        }
        if let Some(plugin) = keys.raw("plugin.name")
            && plugin != "pgoutput"
        {
            keys.error(
                "plugin.name",
                format!("{plugin:?} is not supported; use pgoutput (built into PostgreSQL 10+)"),
            );
        }
        let slot_name = keys.string("slot.name", "debezium");
        if slot_name.is_empty()
            || slot_name.len() > 63
            || !slot_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            keys.error(
                "slot.name",
                format!("{slot_name:?} must be 1-63 characters of a-z, 0-9 and _"),
            );
        }
        let slot_drop_on_stop = keys.bool("slot.drop.on.stop", false);
        let publication_name = keys.string("publication.name", "dbz_publication");
        let publication_autocreate = keys.choice(
            "publication.autocreate.mode",
            AutocreateMode::AllTables,
            &[
                ("all_tables", AutocreateMode::AllTables),
                ("filtered", AutocreateMode::Filtered),
                ("no_tables", AutocreateMode::NoTables),
                ("disabled", AutocreateMode::Disabled),
            ],
        );

        let mut patterns = TablePatterns::default();
        for (key, target) in [
            ("schema.include.list", &mut patterns.schema_include),
            ("schema.exclude.list", &mut patterns.schema_exclude),
            ("table.include.list", &mut patterns.table_include),
            ("table.exclude.list", &mut patterns.table_exclude),
            ("column.include.list", &mut patterns.column_include),
            ("column.exclude.list", &mut patterns.column_exclude),
        ] {
            for pattern in keys.list(key) {
                match RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .case_insensitive(true)
                    .build()
                {
                    Ok(regex) => target.push(regex),
                    Err(e) => {
                        keys.error(key, format!("{pattern:?} is not a regular expression: {e}"))
                    }
                }
            }
        }
        for (include, exclude) in [
            ("schema.include.list", "schema.exclude.list"),
            ("table.include.list", "table.exclude.list"),
            ("column.include.list", "column.exclude.list"),
        ] {
            if resolved.contains_key(include) && resolved.contains_key(exclude) {
                keys.error(
                    exclude,
                    format!("cannot be used together with {include}; use one of the two"),
                );
            }
        }

        let mut skipped_operations = SkippedOperations::default();
        let skipped = match resolved.get("skipped.operations") {
            None => vec!["t".to_owned()],
            Some(_) => keys.list("skipped.operations"),
        };
        keys.raw("skipped.operations");
        for op in skipped {
            match op.as_str() {
                "c" => skipped_operations.create = true,
                "u" => skipped_operations.update = true,
                "d" => skipped_operations.delete = true,
                "t" => skipped_operations.truncate = true,
                "none" => {}
                other => keys.error(
                    "skipped.operations",
                    format!("{other:?} is not an operation; use c, u, d, t or none"),
                ),
            }
        }

        let tombstones_on_delete = keys.bool("tombstones.on.delete", true);
        let decimal_handling = keys.choice(
            "decimal.handling.mode",
            DecimalHandling::Precise,
            &[
                ("precise", DecimalHandling::Precise),
                ("double", DecimalHandling::Double),
                ("string", DecimalHandling::String),
            ],
        );
        let time_precision = keys.choice(
            "time.precision.mode",
            TimePrecision::Adaptive,
            &[
                ("adaptive", TimePrecision::Adaptive),
                (
                    "adaptive_time_microseconds",
                    TimePrecision::AdaptiveTimeMicroseconds,
                ),
                ("connect", TimePrecision::Connect),
            ],
        );
        let binary_handling = keys.choice(
            "binary.handling.mode",
            BinaryHandling::Bytes,
            &[
                ("bytes", BinaryHandling::Bytes),
                ("base64", BinaryHandling::Base64),
                ("base64-url-safe", BinaryHandling::Base64UrlSafe),
                ("hex", BinaryHandling::Hex),
            ],
        );
        if let Some(mode) = keys.raw("hstore.handling.mode")
            && mode != "json"
        {
            keys.error(
                "hstore.handling.mode",
                format!("{mode:?} is not supported; use json"),
            );
        }
        if let Some(mode) = keys.raw("interval.handling.mode")
            && mode != "numeric"
        {
            keys.error(
                "interval.handling.mode",
                format!("{mode:?} is not supported; use numeric"),
            );
        }
        let money_fraction_digits = keys.parsed("money.fraction.digits", 2u32, "a whole number");
        let unavailable_value_placeholder = keys.string(
            "unavailable.value.placeholder",
            "__debezium_unavailable_value",
        );
        let provide_transaction_metadata = keys.bool("provide.transaction.metadata", false);
        let heartbeat_ms = keys.parsed("heartbeat.interval.ms", 0u64, "a number of milliseconds");
        let heartbeat_prefix = keys.string("topic.heartbeat.prefix", "__debezium-heartbeat");
        let transaction_suffix = keys.string("topic.transaction", "transaction");
        let delimiter = keys.string("topic.delimiter", ".");

        let key_converter = converter::read(keys, "key.converter", KEY_CONVERTER_KEYS);
        let value_converter = converter::read(keys, "value.converter", VALUE_CONVERTER_KEYS);
        let schemas_enable = |converter: &Converter| match converter {
            Converter::Json { schemas_enable } => *schemas_enable,
            Converter::Avro(_) => true,
        };
        let key_schemas_enable = schemas_enable(&key_converter);
        let value_schemas_enable = schemas_enable(&value_converter);

        let status_ms = keys.parsed(
            "status.update.interval.ms",
            10_000u64,
            "a number of milliseconds",
        );
        if status_ms == 0 {
            keys.error("status.update.interval.ms", "must be greater than 0");
        }
        let mut warnings = Vec::new();
        if keys
            .raw("snapshot.mode")
            .is_some_and(|mode| mode.eq_ignore_ascii_case("never"))
        {
            warnings.push(
                "snapshot.mode=never is deprecated (Debezium removed it in 3.3); it means no_data: use snapshot.mode=no_data".to_owned(),
            );
        }
        let snapshot_mode = keys.choice(
            "snapshot.mode",
            SnapshotMode::Initial,
            &[
                ("initial", SnapshotMode::Initial),
                ("always", SnapshotMode::Always),
                ("no_data", SnapshotMode::NoData),
                ("never", SnapshotMode::NoData),
                ("initial_only", SnapshotMode::InitialOnly),
                ("when_needed", SnapshotMode::WhenNeeded),
            ],
        );
        let snapshot = snapshot_settings(keys, resolved);
        let topic_partitions =
            keys.parsed("topic.creation.default.partitions", 1i32, "a whole number");
        if topic_partitions < 1 {
            keys.error("topic.creation.default.partitions", "must be at least 1");
        }
        let mut topic_replication_factor = keys.parsed(
            "topic.creation.default.replication.factor",
            -1i32,
            "a whole number",
        );
        if topic_replication_factor == -1 {
            topic_replication_factor = 1;
        } else if topic_replication_factor < 1 {
            keys.error(
                "topic.creation.default.replication.factor",
                "must be at least 1 (or -1 for the broker default)",
            );
        }
        let transaction_ms = keys.parsed(
            "transaction.boundary.interval.ms",
            100u64,
            "a number of milliseconds",
        );
        if transaction_ms == 0 {
            keys.error("transaction.boundary.interval.ms", "must be greater than 0");
        }
        keys.refuse_transforms("remove the transforms keys");
        let known: Vec<&str> = postgres_source_definitions()
            .iter()
            .map(|definition| definition.name)
            .collect();
        let ignored_keys = keys.finish("PostgreSQL source", &known, IGNORED_KEYS, |key| {
            key.starts_with("errors.")
                || key.starts_with("topic.creation.")
                || key.starts_with("key.converter.")
                || key.starts_with("value.converter.")
                || key.starts_with(SELECT_OVERRIDES_PREFIX)
        });

        let topic = |suffix: &str| format!("{topic_prefix}{delimiter}{suffix}");
        Self {
            name: connector.name.clone(),
            hostname,
            port,
            user,
            password,
            dbname,
            ssl: SslConfig {
                mode: ssl_mode,
                root_cert,
            },
            slot_name,
            slot_drop_on_stop,
            publication_name,
            publication_autocreate,
            patterns,
            skipped_operations,
            tombstones_on_delete,
            decimal_handling,
            time_precision,
            binary_handling,
            money_fraction_digits,
            unavailable_value_placeholder,
            provide_transaction_metadata,
            heartbeat_interval: (heartbeat_ms > 0).then(|| Duration::from_millis(heartbeat_ms)),
            heartbeat_topic: format!("{heartbeat_prefix}{delimiter}{topic_prefix}"),
            transaction_topic: topic(&transaction_suffix),
            message_topic: topic("message"),
            key_schemas_enable,
            value_schemas_enable,
            key_converter,
            value_converter,
            status_update_interval: Duration::from_millis(status_ms),
            snapshot_mode,
            snapshot,
            topic_partitions,
            topic_replication_factor,
            transaction_interval: Duration::from_millis(transaction_ms),
            ignored_keys,
            warnings,
            topic_prefix,
        }
    }

    /// The topic of a table's change events: `<topic.prefix>.<schema>.<table>`, with every
    /// character Kafka does not allow in a topic name replaced by `_` (as Debezium does).
    pub fn table_topic(&self, table: &TableId) -> String {
        let sanitize = |name: &str| -> String {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!(
            "{}.{}.{}",
            self.topic_prefix,
            sanitize(&table.schema),
            sanitize(&table.table)
        )
    }
}

/// `snapshot.max.threads`, `snapshot.fetch.size`, `snapshot.chunk.rows`,
/// `snapshot.include.collection.list` and `snapshot.select.statement.overrides[.<schema>.<table>]`.
fn snapshot_settings(
    keys: &mut KeyReader<'_>,
    resolved: &BTreeMap<String, String>,
) -> SnapshotSettings {
    let mut settings = SnapshotSettings {
        max_threads: keys.parsed("snapshot.max.threads", 1usize, "a whole number"),
        ..SnapshotSettings::default()
    };
    if !(1..=64).contains(&settings.max_threads) {
        keys.error("snapshot.max.threads", "must be between 1 and 64");
        settings.max_threads = 1;
    }
    settings.fetch_size = keys.parsed(
        "snapshot.fetch.size",
        DEFAULT_SNAPSHOT_FETCH_SIZE,
        "a whole number",
    );
    if settings.fetch_size == 0 {
        keys.error("snapshot.fetch.size", "must be greater than 0");
        settings.fetch_size = DEFAULT_SNAPSHOT_FETCH_SIZE;
    }
    settings.chunk_rows = keys.parsed(
        "snapshot.chunk.rows",
        DEFAULT_SNAPSHOT_CHUNK_ROWS,
        "a whole number",
    );
    if settings.chunk_rows == 0 {
        keys.error("snapshot.chunk.rows", "must be greater than 0");
        settings.chunk_rows = DEFAULT_SNAPSHOT_CHUNK_ROWS;
    }
    for pattern in keys.list("snapshot.include.collection.list") {
        match RegexBuilder::new(&format!("^(?:{pattern})$"))
            .case_insensitive(true)
            .build()
        {
            Ok(regex) => settings.include.push(regex),
            Err(e) => keys.error(
                "snapshot.include.collection.list",
                format!("{pattern:?} is not a regular expression: {e}"),
            ),
        }
    }
    // Debezium's list names the tables that have an override; each one's SELECT is under
    // snapshot.select.statement.overrides.<schema>.<table>.
    let listed = keys.list("snapshot.select.statement.overrides");
    for table in &listed {
        let key = format!("{SELECT_OVERRIDES_PREFIX}{table}");
        match resolved
            .get(&key)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            Some(select) => {
                settings
                    .select_overrides
                    .insert(table.clone(), select.trim_end_matches(';').to_owned());
            }
            None => keys.error(
                "snapshot.select.statement.overrides",
                format!("{table} is listed but {key} (its SELECT) is not set"),
            ),
        }
    }
    for key in resolved.keys() {
        if let Some(table) = key.strip_prefix(SELECT_OVERRIDES_PREFIX)
            && !listed.iter().any(|t| t == table)
        {
            keys.error(
                key,
                format!("{table} is not listed in snapshot.select.statement.overrides; add it there or remove this key"),
            );
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<PostgresSourceConfig, ValidationErrors> {
        let json = format!(
            r#"{{"name":"inventory","config":{{
                "connector.class":"io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname":"127.0.0.1","database.user":"postgres",
                "database.password":"secret","database.dbname":"shop",
                "topic.prefix":"shop","plugin.name":"pgoutput","snapshot.mode":"no_data"{extra}}}}}"#
        );
        PostgresSourceConfig::from_connector(&ConnectorConfig::from_json(&json).expect("json"))
    }

    #[test]
    fn debezium_defaults() {
        let c = config("").expect("valid");
        assert_eq!(c.port, 5432);
        assert_eq!(c.slot_name, "debezium");
        assert_eq!(c.publication_name, "dbz_publication");
        assert_eq!(c.publication_autocreate, AutocreateMode::AllTables);
        assert!(c.skipped_operations.truncate && !c.skipped_operations.delete);
        assert!(c.tombstones_on_delete && c.value_schemas_enable && c.key_schemas_enable);
        assert_eq!(c.decimal_handling, DecimalHandling::Precise);
        assert_eq!(
            c.unavailable_value_placeholder,
            "__debezium_unavailable_value"
        );
        assert_eq!(c.heartbeat_topic, "__debezium-heartbeat.shop");
        assert_eq!(c.transaction_topic, "shop.transaction");
        assert_eq!(
            c.table_topic(&TableId::new("public", "orders")),
            "shop.public.orders"
        );
        assert_eq!(c.ssl.mode, SslMode::Prefer);
        assert!(
            !format!("{c:?}").contains("secret"),
            "the password leaks into Debug"
        );
    }

    #[test]
    fn include_lists_are_anchored_and_case_insensitive() {
        let c = config(r#","table.include.list":"public.orders,inv\\..*""#).expect("valid");
        assert!(c.patterns.captures(&TableId::new("public", "orders")));
        assert!(c.patterns.captures(&TableId::new("PUBLIC", "Orders")));
        assert!(
            !c.patterns
                .captures(&TableId::new("public", "orders_archive"))
        );
        assert!(c.patterns.captures(&TableId::new("inv", "items")));
        assert!(!c.patterns.captures(&TableId::new("public", "items")));
    }

    #[test]
    fn converters_json_by_default_avro_with_a_registry() {
        let c = config("").expect("valid");
        assert!(matches!(
            c.value_converter,
            Converter::Json {
                schemas_enable: true
            }
        ));
        let c = config(
            r#","value.converter":"io.confluent.connect.avro.AvroConverter",
               "value.converter.schema.registry.url":"http://registry:8081/, http://other:8081",
               "value.converter.basic.auth.user.info":"u:p",
               "key.converter":"avro","key.converter.schema.registry.url":"https://r:8081""#,
        )
        .expect("valid");
        match &c.value_converter {
            Converter::Avro(registry) => {
                assert_eq!(registry.url, "http://registry:8081");
                assert!(registry.basic_auth.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert!(c.key_converter.is_avro());

        let err = config(r#","value.converter":"avro""#).expect_err("no registry");
        assert_eq!(
            err.for_key("value.converter.schema.registry.url").count(),
            1,
            "{err}"
        );
        let err = config(r#","key.converter":"com.example.Protobuf""#).expect_err("unknown");
        assert!(
            err.for_key("key.converter")
                .any(|e| e.message.contains("AvroConverter")),
            "{err}"
        );
        let err = config(
            r#","value.converter":"avro","value.converter.schema.registry.url":"registry:8081",
               "value.converter.basic.auth.user.info":"nocolon""#,
        )
        .expect_err("bad url and credentials");
        assert_eq!(
            err.for_key("value.converter.schema.registry.url").count(),
            1
        );
        assert_eq!(
            err.for_key("value.converter.basic.auth.user.info").count(),
            1
        );
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = config(
            r#","database.port":"lots","slot.name":"Bad-Name","decimal.handling.mode":"exact",
               "tombstones.on.delete":"yes","table.includ.list":"x","plugin.name":"decoderbufs",
               "database.sslmode":"sometimes","tasks.max":"3""#,
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "database.port",
            "slot.name",
            "decimal.handling.mode",
            "tombstones.on.delete",
            "table.includ.list",
            "plugin.name",
            "database.sslmode",
            "tasks.max",
        ] {
            assert!(keys.contains(&key), "{key} not reported in {err}");
        }
        let typo = err.for_key("table.includ.list").next().expect("reported");
        assert!(
            typo.message.contains("did you mean table.include.list"),
            "{}",
            typo.message
        );
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn required_keys() {
        let connector = ConnectorConfig::from_json(r#"{"name":"x","config":{}}"#).expect("json");
        let err = PostgresSourceConfig::from_connector(&connector).expect_err("invalid");
        for key in [
            "database.hostname",
            "database.user",
            "database.dbname",
            "topic.prefix",
        ] {
            assert!(
                err.for_key(key).next().is_some(),
                "{key} not reported in {err}"
            );
        }
    }

    #[test]
    fn compatibility_keys_are_accepted_and_listed() {
        let c = config(r#","max.batch.size":"2048","poll.interval.ms":"500""#).expect("valid");
        assert_eq!(c.ignored_keys, ["max.batch.size", "poll.interval.ms"]);
    }

    #[test]
    fn snapshot_modes_and_never_alias() {
        let without = |extra: &str| {
            let json = format!(
                r#"{{"name":"n","config":{{"database.hostname":"h","database.user":"u",
                    "database.dbname":"d","topic.prefix":"p"{extra}}}}}"#
            );
            PostgresSourceConfig::from_connector(&ConnectorConfig::from_json(&json).expect("json"))
        };
        let c = without("").expect("valid");
        assert_eq!(c.snapshot_mode, SnapshotMode::Initial, "the default");
        assert!(c.warnings.is_empty());
        for (text, mode) in [
            ("initial", SnapshotMode::Initial),
            ("always", SnapshotMode::Always),
            ("no_data", SnapshotMode::NoData),
            ("initial_only", SnapshotMode::InitialOnly),
            ("WHEN_NEEDED", SnapshotMode::WhenNeeded),
        ] {
            let c = without(&format!(r#","snapshot.mode":"{text}""#)).expect("valid");
            assert_eq!(c.snapshot_mode, mode, "{text}");
            assert!(c.warnings.is_empty(), "{text}");
        }
        let never = without(r#","snapshot.mode":"never""#).expect("valid");
        assert_eq!(never.snapshot_mode, SnapshotMode::NoData);
        assert!(never.warnings[0].contains("use snapshot.mode=no_data"));
        let err = without(r#","snapshot.mode":"schema_only_recovery""#).expect_err("invalid");
        assert!(
            err.for_key("snapshot.mode")
                .next()
                .is_some_and(|e| e.message.contains("initial, always, no_data")),
            "{err}"
        );
    }

    #[test]
    fn snapshot_settings() {
        let c = config("").expect("valid");
        assert_eq!(c.snapshot.max_threads, 1);
        assert_eq!(c.snapshot.fetch_size, DEFAULT_SNAPSHOT_FETCH_SIZE);
        assert_eq!(c.snapshot.chunk_rows, DEFAULT_SNAPSHOT_CHUNK_ROWS);
        assert!(c.snapshot.includes(&TableId::new("public", "anything")));

        let c = config(
            r#","snapshot.max.threads":"4","snapshot.fetch.size":"500","snapshot.chunk.rows":"1000",
               "snapshot.include.collection.list":"public\\.orders",
               "snapshot.select.statement.overrides":"public.orders",
               "snapshot.select.statement.overrides.public.orders":"SELECT * FROM public.orders WHERE id > 10;""#,
        )
        .expect("valid");
        assert_eq!(c.snapshot.max_threads, 4);
        assert_eq!(c.snapshot.fetch_size, 500);
        assert_eq!(c.snapshot.chunk_rows, 1000);
        let orders = TableId::new("public", "orders");
        assert!(c.snapshot.includes(&orders));
        assert!(!c.snapshot.includes(&TableId::new("public", "orders2")));
        assert_eq!(
            c.snapshot.select_override(&orders),
            Some("SELECT * FROM public.orders WHERE id > 10")
        );
        assert_eq!(
            c.snapshot.select_override(&TableId::new("public", "items")),
            None
        );
        assert!(c.ignored_keys.is_empty(), "{:?}", c.ignored_keys);
    }

    #[test]
    fn bad_snapshot_settings_are_named() {
        let err = config(
            r#","snapshot.max.threads":"0","snapshot.fetch.size":"x","snapshot.chunk.rows":"0",
               "snapshot.include.collection.list":"(",
               "snapshot.select.statement.overrides":"public.a",
               "snapshot.select.statement.overrides.public.b":"SELECT 1""#,
        )
        .expect_err("invalid");
        for key in [
            "snapshot.max.threads",
            "snapshot.fetch.size",
            "snapshot.chunk.rows",
            "snapshot.include.collection.list",
            "snapshot.select.statement.overrides",
            "snapshot.select.statement.overrides.public.b",
        ] {
            assert!(
                err.for_key(key).next().is_some(),
                "{key} not reported in {err}"
            );
        }
    }
}
