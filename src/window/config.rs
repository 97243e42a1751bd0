//! The window stage's connector config: flat Connect-style keys (`window.size=5m`,
//! `aggregates=revenue=sum(amount),orders=count(*)`, …), validated all at once, each problem
//! naming its key and what to do. The definitions below are what `GET /connector-plugins/…/config`
//! shows; a test keeps them and the parser in step.

use std::time::Duration;

use secrecy::SecretString;

use super::{
    aggregate::{AggregateFn, AggregateSpec, parse_aggregates},
    engine::{ChangelogMode, EmitMode},
    time::{Micros, WindowKind, parse_duration},
};
use crate::{
    config::{
        ConnectorConfig, Converter, SslConfig, ValidationErrors,
        converter::{self, KEY_CONVERTER_KEYS, VALUE_CONVERTER_KEYS},
        definitions::{
            ConfigGroup::{Common, Postgres, Window},
            ConfigKeyDefinition as Key, ConfigKind, Importance, Width,
        },
        keys::KeyReader,
        resolve_providers,
    },
    sink::postgres::config::{TargetKeys, read_target_keys},
};

/// The connector classes that mean "the window stage".
pub const WINDOW_AGGREGATE_CLASSES: &[&str] = &["tributary.WindowAggregate", "window-aggregate"];

/// Where an event's time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTimeField {
    /// A column of the row image.
    Column(String),
    /// `source.ts_ms`: the commit time at the source.
    SourceTimestamp,
}

/// A validated window stage config.
#[derive(Debug, Clone)]
pub struct WindowAggregateConfig {
    pub name: String,
    pub topics: Vec<String>,
    pub event_time: EventTimeField,
    pub group_by: Vec<String>,
    pub window: WindowKind,
    pub max_out_of_orderness: Micros,
    pub allowed_lateness: Micros,
    pub idle_timeout: Duration,
    pub aggregates: Vec<AggregateSpec>,
    pub emit_mode: EmitMode,
    pub changelog_mode: ChangelogMode,
    pub late_events_topic: Option<String>,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<SecretString>,
    /// `sslmode` and `sslrootcert` of `connection.url`.
    pub ssl: SslConfig,
    /// `table.name`: schema (default `public`) and table, taken literally.
    pub table_schema: String,
    pub table_name: String,
    pub commit_interval: Duration,
    /// Records read per poll at most.
    pub batch_size: usize,
    pub key_converter: Converter,
    pub value_converter: Converter,
}

/// Column names the stage adds to every result table.
pub const RESERVED_COLUMNS: &[&str] = &["window_start", "window_end", "_final", "_updated_at"];

impl WindowAggregateConfig {
    /// Validates the config after resolving `${env:…}` and `${file:…}` placeholders.
    pub fn from_connector(connector: &ConnectorConfig) -> Result<Self, ValidationErrors> {
        let resolved = resolve_providers(&connector.config)?;
        let mut keys = KeyReader::new(&resolved);
        let config = Self::read(connector, &mut keys);
        if keys.errors.is_empty() {
            Ok(config)
        } else {
            Err(ValidationErrors(keys.errors))
        }
    }

    /// The input columns the aggregates read, each once, in first-use order.
    pub fn input_columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = Vec::new();
        for column in self.aggregates.iter().filter_map(|a| a.column.as_deref()) {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
        columns
    }

    fn read(connector: &ConnectorConfig, keys: &mut KeyReader<'_>) -> Self {
        keys.raw("name");
        if let Some(class) = keys.raw("connector.class")
            && !WINDOW_AGGREGATE_CLASSES.contains(&class)
        {
            keys.error(
                "connector.class",
                format!(
                    "{class:?} is not the window stage; use {}",
                    WINDOW_AGGREGATE_CLASSES[0]
                ),
            );
        }
        if let Some(tasks) = keys.raw("tasks.max")
            && tasks != "1"
        {
            keys.error(
                "tasks.max",
                "must be 1: one task reads every partition, so that the watermark sees them all",
            );
        }
        let topics = keys.list("topics");
        if topics.is_empty() {
            keys.error("topics", "is required: name the change topics to aggregate");
        }

        let event_time = match keys.raw("event.time.field") {
            Some("source.ts_ms" | "$source.ts_ms") => EventTimeField::SourceTimestamp,
            Some(column) => EventTimeField::Column(column.to_owned()),
            None => {
                keys.error(
                    "event.time.field",
                    "is required: a timestamp column of the rows, or source.ts_ms",
                );
                EventTimeField::SourceTimestamp
            }
        };
        let group_by = keys.list("group.by");

        let duration =
            |keys: &mut KeyReader<'_>, key: &'static str, default: Option<Micros>| match keys
                .raw(key)
            {
                Some(text) => match parse_duration(text) {
                    Ok(value) if value >= 0 => Some(value),
                    Ok(_) => {
                        keys.error(key, "must not be negative");
                        None
                    }
                    Err(message) => {
                        keys.error(key, message);
                        None
                    }
                },
                None => default,
            };
        let window_type = keys.choice(
            "window.type",
            None,
            &[
                ("tumbling", Some("tumbling")),
                ("hopping", Some("hopping")),
                ("session", Some("session")),
            ],
        );
        let size = duration(keys, "window.size", None);
        let advance = duration(keys, "window.advance", None);
        let gap = duration(keys, "window.gap", None);
        let offset = duration(keys, "window.offset", Some(0)).unwrap_or(0);
        let positive =
            |keys: &mut KeyReader<'_>, key: &'static str, value: Option<Micros>, why: &str| {
                match value {
                    Some(v) if v > 0 => v,
                    Some(_) => {
                        keys.error(key, "must be longer than 0");
                        1
                    }
                    None => {
                        keys.error(key, format!("is required {why}"));
                        1
                    }
                }
            };
        let window = match window_type {
            Some("hopping") => {
                let size = positive(keys, "window.size", size, "with window.type=hopping");
                let advance = positive(keys, "window.advance", advance, "with window.type=hopping");
                if advance > size || size % advance != 0 {
                    keys.error(
                        "window.advance",
                        "must divide window.size (and be at most as long): each time falls into size/advance windows",
                    );
                }
                WindowKind::Hopping {
                    size,
                    advance,
                    offset,
                }
            }
            Some("session") => WindowKind::Session {
                gap: positive(keys, "window.gap", gap, "with window.type=session"),
            },
            other => {
                if other.is_none() {
                    keys.error("window.type", "is required: tumbling, hopping or session");
                }
                WindowKind::Tumbling {
                    size: positive(keys, "window.size", size, "with window.type=tumbling"),
                    offset,
                }
            }
        };
        let max_out_of_orderness =
            duration(keys, "watermark.max.out.of.orderness", Some(0)).unwrap_or(0);
        let allowed_lateness = duration(keys, "allowed.lateness", Some(0)).unwrap_or(0);
        let idle_timeout = duration(keys, "idle.timeout", Some(60_000_000)).unwrap_or(0);
        let idle_timeout = Duration::from_micros(u64::try_from(idle_timeout).unwrap_or(0));

        let aggregates = match keys.raw("aggregates") {
            Some(text) => parse_aggregates(text).unwrap_or_else(|message| {
                keys.error("aggregates", message);
                Vec::new()
            }),
            None => {
                keys.error(
                    "aggregates",
                    "is required: name=function(column), such as revenue=sum(amount),orders=count(*)",
                );
                Vec::new()
            }
        };
        for aggregate in &aggregates {
            if RESERVED_COLUMNS.contains(&aggregate.name.as_str())
                || group_by.contains(&aggregate.name)
            {
                keys.error(
                    "aggregates",
                    format!(
                        "result column {:?} is also a group.by column or one the stage adds ({}); rename it",
                        aggregate.name,
                        RESERVED_COLUMNS.join(", ")
                    ),
                );
            }
        }
        if let Some(reserved) = group_by
            .iter()
            .find(|g| RESERVED_COLUMNS.contains(&g.as_str()))
        {
            keys.error(
                "group.by",
                format!("{reserved:?} is a column the stage adds; group by another column"),
            );
        }

        let emit_mode = keys.choice(
            "emit.mode",
            EmitMode::OnUpdate,
            &[
                ("on_update", EmitMode::OnUpdate),
                ("on_window_close", EmitMode::OnWindowClose),
            ],
        );
        let changelog_mode = keys.choice(
            "changelog.mode",
            ChangelogMode::Retract,
            &[
                ("retract", ChangelogMode::Retract),
                ("append", ChangelogMode::Append),
            ],
        );
        let late_events_topic = keys.raw("late.events.topic").map(str::to_owned);

        let target = read_target_keys(keys, &[]);

        let (table_schema, table_name) = match keys.raw("table.name") {
            Some(name) => match name.split('.').collect::<Vec<_>>().as_slice() {
                [table] if !table.is_empty() => ("public".to_owned(), (*table).to_owned()),
                [schema, table] if !schema.is_empty() && !table.is_empty() => {
                    ((*schema).to_owned(), (*table).to_owned())
                }
                _ => {
                    keys.error("table.name", format!("{name:?} is not [schema.]table"));
                    (String::new(), String::new())
                }
            },
            None => {
                keys.error(
                    "table.name",
                    "is required: the result table, such as analytics.orders_revenue_5m",
                );
                (String::new(), String::new())
            }
        };

        let commit_interval_ms: u64 =
            keys.parsed("commit.interval.ms", 1000, "a number of milliseconds");
        if commit_interval_ms == 0 {
            keys.error("commit.interval.ms", "must be at least 1");
        }
        let batch_size: usize = keys.parsed("batch.size", 10_000, "a positive number");
        if batch_size == 0 {
            keys.error("batch.size", "must be at least 1");
        }
        let key_converter = converter::read(keys, "key.converter", KEY_CONVERTER_KEYS);
        let value_converter = converter::read(keys, "value.converter", VALUE_CONVERTER_KEYS);

        keys.refuse_transforms("remove the transforms keys (the stage reads Debezium envelopes)");
        let known: Vec<&str> = WINDOW_AGGREGATE.iter().map(|d| d.name).collect();
        keys.finish("window stage", &known, &[], |_| false);

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
            event_time,
            group_by,
            window,
            max_out_of_orderness,
            allowed_lateness,
            idle_timeout,
            aggregates,
            emit_mode,
            changelog_mode,
            late_events_topic,
            host,
            port,
            dbname,
            user,
            password,
            ssl,
            table_schema,
            table_name,
            commit_interval: Duration::from_millis(commit_interval_ms),
            batch_size,
            key_converter,
            value_converter,
        }
    }

    /// Whether `function` of the aggregates is used.
    pub fn uses(&self, function: AggregateFn) -> bool {
        self.aggregates.iter().any(|a| a.function == function)
    }
}

/// Every key of the window stage, grouped, in display order.
pub fn window_aggregate_definitions() -> &'static [Key] {
    &WINDOW_AGGREGATE
}

/// The keys: Connect's own, the converters (as every connector has them), then the stage's.
static WINDOW_AGGREGATE: std::sync::LazyLock<Vec<Key>> = std::sync::LazyLock::new(|| {
    [
        WINDOW_AGGREGATE_COMMON,
        crate::config::definitions::CONVERTER_DEFINITIONS,
        WINDOW_AGGREGATE_REST,
    ]
    .concat()
});

const fn key(
    name: &'static str,
    kind: ConfigKind,
    group: crate::config::ConfigGroup,
    importance: Importance,
    display_name: &'static str,
    documentation: &'static str,
) -> Key {
    let width = match kind {
        ConfigKind::List | ConfigKind::Class => Width::Long,
        _ => Width::Medium,
    };
    Key::new(
        name,
        kind,
        group,
        importance,
        width,
        display_name,
        documentation,
    )
}

use ConfigKind::{Class, Int, List, Long, Password, String as Text};
use Importance::{High, Low, Medium};

const WINDOW_AGGREGATE_COMMON: &[Key] = &[
    key(
        "name",
        Text,
        Common,
        High,
        "Connector name",
        "Unique name of the connector in this service.",
    )
    .required(),
    key(
        "connector.class",
        Class,
        Common,
        High,
        "Connector class",
        "tributary.WindowAggregate (or window-aggregate).",
    )
    .required(),
    key(
        "tasks.max",
        Int,
        Common,
        Low,
        "Tasks",
        "Must be 1: one task reads every partition so that the watermark sees them all.",
    )
    .default("1"),
    key(
        "topics",
        List,
        Common,
        High,
        "Topics",
        "The Debezium change topics to aggregate, comma-separated.",
    )
    .required(),
    key(
        "transforms",
        List,
        Common,
        Low,
        "Transforms",
        "Single message transforms are not supported, so any value is rejected; the stage reads Debezium envelopes itself.",
    ),
];

const WINDOW_AGGREGATE_REST: &[Key] = &[
    key("connection.url", Text, Postgres, High, "JDBC URL", "The target database as jdbc:postgresql://host:port/database.").required(),
    key("connection.username", Text, Postgres, High, "User", "The target database user (or user=… in the URL)."),
    key("connection.password", Password, Postgres, High, "Password", "The target database user's password."),
    key("table.name", Text, Postgres, High, "Result table", "The result table as [schema.]table, created with a primary key of the group columns and the window bounds.").required(),
    key("commit.interval.ms", Long, Postgres, Medium, "Commit interval", "How often results, state, offsets and the watermark are committed, in one transaction.").default("1000"),
    key("batch.size", Int, Postgres, Low, "Batch size", "Records read per poll at most.").default("10000"),
    key("event.time.field", Text, Window, High, "Event time field", "The row column holding the event time, or source.ts_ms for the commit time at the source.").required(),
    key("group.by", List, Window, High, "Group by", "The row columns whose values form a group, comma-separated (none: one group)."),
    key("window.type", Text, Window, High, "Window type", "tumbling, hopping or session.").required(),
    key("window.size", Text, Window, High, "Window size", "The length of tumbling and hopping windows, such as 5m, 10s, 250ms or milliseconds."),
    key("window.advance", Text, Window, Medium, "Window advance", "How far hopping windows move; it must divide the size."),
    key("window.gap", Text, Window, Medium, "Session gap", "The quiet time that ends a session window."),
    key("window.offset", Text, Window, Low, "Window offset", "Shifts tumbling and hopping window starts away from the epoch.").default("0"),
    key("watermark.max.out.of.orderness", Text, Window, Medium, "Max out of orderness", "How far behind the largest event time of a partition its events may arrive.").default("0"),
    key("allowed.lateness", Text, Window, Medium, "Allowed lateness", "How long past its end a window still takes changes; later ones go to the late-events topic.").default("0"),
    key("idle.timeout", Text, Window, Medium, "Idle timeout", "A partition without records for this long stops holding the watermark back.").default("60000"),
    key("aggregates", List, Window, High, "Aggregates", "Result columns as name=function(column) with sum, count, count(*), avg, min, max and count_distinct.").required(),
    key("emit.mode", Text, Window, Medium, "Emit mode", "on_update upserts changed windows at each commit; on_window_close writes each window once, when it closes.").default("on_update"),
    key("changelog.mode", Text, Window, Medium, "Changelog mode", "retract applies updates and deletes to earlier results; append counts every change event once.").default("retract"),
    key("late.events.topic", Text, Window, Medium, "Late events topic", "Where changes that arrive after their window closed are sent, with headers saying why."),
];

impl WindowAggregateConfig {
    /// The database the stage writes its results, state and offsets to.
    pub(crate) fn target(&self) -> crate::sink::postgres::connection::TargetDatabase<'_> {
        crate::sink::postgres::connection::TargetDatabase {
            host: &self.host,
            port: self.port,
            dbname: &self.dbname,
            user: &self.user,
            password: self.password.as_ref(),
            ssl: &self.ssl,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::ExposeSecret;

    use super::*;

    const REQUIRED: &[(&str, &str)] = &[
        ("name", "revenue"),
        ("connector.class", "tributary.WindowAggregate"),
        ("topics", "shop.public.orders"),
        (
            "connection.url",
            "jdbc:postgresql://db:5433/analytics?user=u&password=p",
        ),
        ("table.name", "analytics.orders_revenue_5m"),
        ("event.time.field", "created_at"),
        ("window.type", "session"),
        ("aggregates", "orders=count(*)"),
    ];

    fn parse(
        extra: &[(&str, &str)],
        without: &[&str],
    ) -> Result<WindowAggregateConfig, ValidationErrors> {
        let mut config: BTreeMap<String, String> = REQUIRED
            .iter()
            .filter(|(k, _)| !without.contains(k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config.insert("window.gap".into(), "30m".into());
        for (k, v) in extra {
            config.insert((*k).to_owned(), (*v).to_owned());
        }
        WindowAggregateConfig::from_connector(&ConnectorConfig {
            name: "revenue".into(),
            config,
        })
    }

    #[test]
    fn the_issue_example_parses() {
        let config = parse(
            &[
                ("window.type", "hopping"),
                ("window.size", "5m"),
                ("window.advance", "1m"),
                ("group.by", "customer_id, region"),
                ("watermark.max.out.of.orderness", "10s"),
                ("allowed.lateness", "2m"),
                ("idle.timeout", "1m"),
                ("aggregates", "revenue=sum(amount),orders=count(*),avg_amount=avg(amount),max_amount=max(amount),customers=count_distinct(customer_id)"),
                ("emit.mode", "on_window_close"),
                ("changelog.mode", "append"),
                ("late.events.topic", "late"),
                ("connection.password", "s3cret"),
            ],
            &[],
        )
        .expect("valid");
        let minute = 60_000_000;
        assert_eq!(
            config.window,
            WindowKind::Hopping {
                size: 5 * minute,
                advance: minute,
                offset: 0
            }
        );
        assert_eq!(config.group_by, ["customer_id", "region"]);
        assert_eq!(config.max_out_of_orderness, 10_000_000);
        assert_eq!(config.allowed_lateness, 2 * minute);
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.aggregates.len(), 5);
        assert_eq!(config.input_columns(), ["amount", "customer_id"]);
        assert_eq!(config.emit_mode, EmitMode::OnWindowClose);
        assert_eq!(config.changelog_mode, ChangelogMode::Append);
        assert_eq!((config.host.as_str(), config.port), ("db", 5433));
        assert_eq!(
            (config.table_schema.as_str(), config.table_name.as_str()),
            ("analytics", "orders_revenue_5m")
        );
        assert_eq!(
            config
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("s3cret".into())
        );
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "the password is never printed"
        );
        let ts = parse(&[("event.time.field", "source.ts_ms")], &[]).expect("valid");
        assert_eq!(ts.event_time, EventTimeField::SourceTimestamp);
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = parse(
            &[
                ("window.type", "hopping"),
                ("window.size", "5m"),
                ("window.advance", "7m"),
                ("allowed.lateness", "1 month"),
                ("emit.mode", "sometimes"),
                ("aggregates", "x=median(a)"),
                ("table.name", "a.b.c"),
                ("tasks.max", "2"),
                ("windwo.gap", "1m"),
                ("group.by", "window_start"),
                ("transforms", "unwrap"),
                (
                    "transforms.unwrap.type",
                    "io.debezium.transforms.ExtractNewRecordState",
                ),
            ],
            &["topics", "event.time.field"],
        )
        .expect_err("invalid");
        for key in [
            "window.advance",
            "allowed.lateness",
            "emit.mode",
            "aggregates",
            "table.name",
            "tasks.max",
            "windwo.gap",
            "group.by",
            "transforms",
            "topics",
            "event.time.field",
        ] {
            assert!(err.for_key(key).next().is_some(), "{key}: {err}");
        }
        assert!(
            err.to_string().contains("did you mean window.gap?"),
            "{err}"
        );
        let err = parse(&[("window.type", "tumbling")], &[]).expect_err("no size");
        assert!(err.for_key("window.size").next().is_some(), "{err}");
    }

    fn keys_read() -> Vec<&'static str> {
        let mut read = Vec::new();
        for window_type in ["tumbling", "hopping", "session"] {
            let mut config: BTreeMap<String, String> = BTreeMap::new();
            config.insert("window.type".into(), window_type.into());
            let mut keys = KeyReader::new(&config);
            WindowAggregateConfig::read(
                &ConnectorConfig {
                    name: "n".into(),
                    config: config.clone(),
                },
                &mut keys,
            );
            read.extend(keys.read_keys());
        }
        read.sort_unstable();
        read.dedup();
        read
    }

    #[test]
    fn definitions_and_parser_agree() {
        let read = keys_read();
        for key in &read {
            assert!(
                WINDOW_AGGREGATE.iter().any(|d| d.name == *key),
                "{key} is read but has no definition"
            );
        }
        for definition in WINDOW_AGGREGATE.iter() {
            assert!(
                read.contains(&definition.name),
                "{} is defined but never read",
                definition.name
            );
            let doc = definition.documentation;
            assert!(
                doc.ends_with('.') && !doc.contains(". "),
                "{}: one sentence",
                definition.name
            );
        }
        // Required keys: each one's absence is reported.
        parse(&[], &[]).expect("the required keys alone are valid");
        for definition in WINDOW_AGGREGATE
            .iter()
            .filter(|d| d.required && d.name != "name")
        {
            if definition.name == "connector.class" {
                continue;
            }
            let err = parse(&[], &[definition.name]).expect_err(definition.name);
            assert!(
                err.for_key(definition.name).next().is_some(),
                "{}: {err}",
                definition.name
            );
        }
        // Written defaults are the parser's.
        let absent = format!("{:?}", parse(&[], &[]).expect("valid"));
        for definition in WINDOW_AGGREGATE.iter() {
            if let Some(default) = definition.default {
                let explicit = parse(&[(definition.name, default)], &[]).expect(definition.name);
                assert_eq!(format!("{explicit:?}"), absent, "{}", definition.name);
            }
        }
    }
}
