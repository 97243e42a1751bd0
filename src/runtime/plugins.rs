//! The connector plugins this worker runs, in one explicit list: what `connector.class` may name
//! and what `GET /connector-plugins` shows. A new connector kind registers here.

use std::{future::Future, pin::Pin};

use crate::{
    config::{
        ConnectorConfig, PostgresSourceConfig, ValidationErrors,
        definitions::{ConfigKeyDefinition, postgres_source_definitions},
        postgres_source::POSTGRES_SOURCE_CLASSES,
    },
    sink::postgres::{POSTGRES_SINK_CLASSES, PostgresSinkConfig, postgres_sink_definitions},
    source::postgres::validate::{self, Finding},
    window::{WINDOW_AGGREGATE_CLASSES, WindowAggregateConfig, window_aggregate_definitions},
};

/// A connector's validated config: what its task runs with.
#[derive(Debug)]
pub enum TaskConfig {
    PostgresSource(Box<PostgresSourceConfig>),
    PostgresSink(Box<PostgresSinkConfig>),
    WindowAggregate(Box<WindowAggregateConfig>),
}

/// What `PUT /connector-plugins/{plugin}/config/validate` finds, checks that connect included.
pub type Validation = Pin<Box<dyn Future<Output = Vec<Finding>> + Send>>;

/// Whether a connector reads from outside into Kafka or writes from Kafka outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Source,
    Sink,
}

impl PluginKind {
    /// Connect's lowercase `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
        }
    }
}

/// One connector plugin.
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    /// The class name Kafka Connect users know it by.
    pub class: &'static str,
    /// Other names `connector.class` may use.
    pub aliases: &'static [&'static str],
    pub kind: PluginKind,
    /// Every config key it takes (`GET /connector-plugins/{plugin}/config`).
    pub definitions: fn() -> &'static [ConfigKeyDefinition],
    /// Reads and checks a config without connecting anywhere.
    pub parse: fn(&ConnectorConfig) -> Result<TaskConfig, ValidationErrors>,
    /// The static checks and, when they pass, the ones that connect.
    pub validate: fn(ConnectorConfig) -> Validation,
}

impl Plugin {
    /// Connect's rule for `{plugin}` in URLs: the full class name, or its simple name with or
    /// without the `Connector` suffix; and the aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        let simple = self.class.rsplit('.').next().unwrap_or(self.class);
        name == self.class
            || name == simple
            || name == simple.trim_end_matches("Connector")
            || self.aliases.contains(&name)
    }
}

pub const POSTGRES_SOURCE: Plugin = Plugin {
    class: POSTGRES_SOURCE_CLASSES[0],
    aliases: &["postgres-source", "postgres"],
    kind: PluginKind::Source,
    definitions: postgres_source_definitions,
    parse: |connector| {
        PostgresSourceConfig::from_connector(connector)
            .map(|config| TaskConfig::PostgresSource(Box::new(config)))
    },
    validate: |connector| Box::pin(async move { validate::validate(&connector).await }),
};

pub const POSTGRES_SINK: Plugin = Plugin {
    class: POSTGRES_SINK_CLASSES[0],
    aliases: &[
        "postgres-sink",
        "io.confluent.connect.jdbc.JdbcSinkConnector",
    ],
    kind: PluginKind::Sink,
    definitions: postgres_sink_definitions,
    parse: |connector| {
        PostgresSinkConfig::from_connector(connector)
            .map(|config| TaskConfig::PostgresSink(Box::new(config)))
    },
    validate: |connector| {
        Box::pin(async move {
            match PostgresSinkConfig::from_connector(&connector) {
                Ok(config) => crate::sink::postgres::validate_live(&config).await,
                Err(errors) => errors.0.into_iter().map(Finding::from).collect(),
            }
        })
    },
};

pub const WINDOW_AGGREGATE: Plugin = Plugin {
    class: WINDOW_AGGREGATE_CLASSES[0],
    aliases: &["window-aggregate"],
    kind: PluginKind::Sink,
    definitions: window_aggregate_definitions,
    parse: |connector| {
        WindowAggregateConfig::from_connector(connector)
            .map(|config| TaskConfig::WindowAggregate(Box::new(config)))
    },
    validate: |connector| {
        Box::pin(async move {
            match WindowAggregateConfig::from_connector(&connector) {
                Ok(config) => crate::window::validate_live(&config).await,
                Err(errors) => errors.0.into_iter().map(Finding::from).collect(),
            }
        })
    },
};

/// Every plugin, in the order `GET /connector-plugins` lists them.
pub const PLUGINS: &[Plugin] = &[POSTGRES_SOURCE, POSTGRES_SINK, WINDOW_AGGREGATE];

/// The plugin `name` refers to (see [`Plugin::answers_to`]).
pub fn find(name: &str) -> Option<&'static Plugin> {
    PLUGINS.iter().find(|plugin| plugin.answers_to(name.trim()))
}

/// Connect's message for a `connector.class` no plugin answers to.
pub fn unknown_class_message(class: &str) -> String {
    let available: Vec<&str> = PLUGINS.iter().map(|p| p.class).collect();
    format!(
        "Failed to find any class that implements Connector and which name matches {class}, available connectors are: {}",
        available.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_source_answers_to_every_spelling_connect_accepts() {
        for name in [
            "io.debezium.connector.postgresql.PostgresConnector",
            "PostgresConnector",
            "Postgres",
            "postgres-source",
            "postgres",
        ] {
            assert_eq!(
                find(name).map(|p| p.class),
                Some(POSTGRES_SOURCE.class),
                "{name}"
            );
        }
        for name in [
            "io.debezium.connector.mysql.MySqlConnector",
            "Connector",
            "",
        ] {
            assert!(find(name).is_none(), "{name}");
        }
    }

    #[test]
    fn the_postgres_sink_answers_to_debeziums_and_confluents_class() {
        for name in [
            "io.debezium.connector.jdbc.JdbcSinkConnector",
            "JdbcSinkConnector",
            "JdbcSink",
            "postgres-sink",
            "io.confluent.connect.jdbc.JdbcSinkConnector",
        ] {
            assert_eq!(
                find(name).map(|p| p.class),
                Some(POSTGRES_SINK.class),
                "{name}"
            );
        }
    }

    #[test]
    fn aliases_match_what_the_configs_accept() {
        for alias in POSTGRES_SOURCE.aliases {
            assert!(POSTGRES_SOURCE_CLASSES.contains(alias), "{alias}");
        }
        for alias in POSTGRES_SINK.aliases {
            assert!(POSTGRES_SINK_CLASSES.contains(alias), "{alias}");
        }
        for alias in WINDOW_AGGREGATE.aliases {
            assert!(WINDOW_AGGREGATE_CLASSES.contains(alias), "{alias}");
        }
        assert_eq!(
            find("WindowAggregate").map(|p| p.class),
            Some("tributary.WindowAggregate")
        );
        assert!(unknown_class_message("x.Y").contains(POSTGRES_SOURCE.class));
        assert!(unknown_class_message("x.Y").contains(POSTGRES_SINK.class));
    }
}
