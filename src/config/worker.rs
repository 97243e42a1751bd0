use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{ValidationError, ValidationErrors};

/// The worker's own configuration (`config/tributary.toml`). Every key can be overridden by an
/// environment variable `TRIBUTARY_<SECTION>_<KEY>` in upper case, such as
/// `TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub kafka: KafkaSection,
    #[serde(default)]
    pub worker: WorkerSection,
    #[serde(default)]
    pub rest: RestSection,
    #[serde(default)]
    pub registry: RegistrySection,
}

/// The built-in Confluent-compatible schema registry (`tributary serve`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Serve the registry API at all.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Address of the registry API (Confluent's port is 8081).
    #[serde(default = "RegistrySection::default_listen")]
    pub listen: String,
    /// Compacted topic holding the schemas (Confluent's `kafkastore.topic`).
    #[serde(default = "RegistrySection::default_topic")]
    pub topic: String,
}

impl RegistrySection {
    pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

    fn default_listen() -> String {
        Self::DEFAULT_LISTEN.to_owned()
    }

    fn default_topic() -> String {
        crate::registry::DEFAULT_SCHEMAS_TOPIC.to_owned()
    }
}

impl Default for RegistrySection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: Self::default_listen(),
            topic: Self::default_topic(),
        }
    }
}

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RestSection {
    /// Address of the Kafka Connect-compatible REST API.
    #[serde(default = "RestSection::default_listen")]
    pub listen: String,
    /// When set, every request must carry `Authorization: Bearer <token>` (or the basic
    /// credentials below). `${env:NAME}` and `${file:/path:key}` are resolved.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// `user:password` for `Authorization: Basic`; placeholders are resolved.
    #[serde(default)]
    pub basic_auth: Option<String>,
}

impl std::fmt::Debug for RestSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestSection")
            .field("listen", &self.listen)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "[hidden]"),
            )
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "[hidden]"))
            .finish()
    }
}

impl RestSection {
    pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";

    fn default_listen() -> String {
        Self::DEFAULT_LISTEN.to_owned()
    }
}

impl Default for RestSection {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            bearer_token: None,
            basic_auth: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub bootstrap_servers: String,
    /// Extra librdkafka client properties (`security.protocol`, `sasl.*`, tuning).
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// Compacted topic holding source offsets, keyed by connector name.
    #[serde(default = "WorkerSection::default_offsets_topic")]
    pub offsets_topic: String,
    /// Compacted topic holding connector configs and target states (`tributary serve`).
    #[serde(default = "WorkerSection::default_configs_topic")]
    pub configs_topic: String,
    /// Compacted topic holding connector and task statuses.
    #[serde(default = "WorkerSection::default_status_topic")]
    pub status_topic: String,
    /// Connect's `topic.tracking.enable`: record the topics each connector writes to and serve
    /// them at `GET /connectors/{name}/topics`.
    #[serde(default = "enabled")]
    pub topic_tracking_enable: bool,
    /// Connect's `topic.tracking.allow.reset`: allow `PUT /connectors/{name}/topics/reset`.
    #[serde(default = "enabled")]
    pub topic_tracking_allow_reset: bool,
}

fn enabled() -> bool {
    true
}

impl WorkerSection {
    pub const DEFAULT_OFFSETS_TOPIC: &str = "tributary-offsets";

    fn default_offsets_topic() -> String {
        Self::DEFAULT_OFFSETS_TOPIC.to_owned()
    }

    fn default_configs_topic() -> String {
        "tributary-configs".to_owned()
    }

    fn default_status_topic() -> String {
        "tributary-status".to_owned()
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            offsets_topic: Self::default_offsets_topic(),
            configs_topic: Self::default_configs_topic(),
            status_topic: Self::default_status_topic(),
            topic_tracking_enable: true,
            topic_tracking_allow_reset: true,
        }
    }
}

impl WorkerConfig {
    /// Reads the file, applies environment overrides, validates.
    pub fn load(path: &Path) -> Result<Self, ValidationErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| single("(file)", format!("cannot read {}: {e}", path.display())))?;
        let vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("TRIBUTARY_"))
            .collect();
        Self::parse(&text, &vars)
    }

    /// Parses TOML text with the given `TRIBUTARY_*` overrides.
    pub fn parse(text: &str, overrides: &[(String, String)]) -> Result<Self, ValidationErrors> {
        let mut config: Self = toml::from_str(text)
            .map_err(|e| single("(file)", format!("invalid worker config: {e}")))?;
        let mut errors = Vec::new();
        let mut flag = |key: &str, value: &str, target: &mut bool| match value.trim() {
            "true" => *target = true,
            "false" => *target = false,
            other => errors.push(ValidationError {
                key: key.to_owned(),
                message: format!("{other:?} is not true or false"),
            }),
        };
        for (name, value) in overrides {
            match name.as_str() {
                "TRIBUTARY_WORKER_TOPIC_TRACKING_ENABLE" => flag(
                    "TRIBUTARY_WORKER_TOPIC_TRACKING_ENABLE",
                    value,
                    &mut config.worker.topic_tracking_enable,
                ),
                "TRIBUTARY_WORKER_TOPIC_TRACKING_ALLOW_RESET" => flag(
                    "TRIBUTARY_WORKER_TOPIC_TRACKING_ALLOW_RESET",
                    value,
                    &mut config.worker.topic_tracking_allow_reset,
                ),
                "TRIBUTARY_REST_BEARER_TOKEN" => config.rest.bearer_token = Some(value.clone()),
                "TRIBUTARY_REST_BASIC_AUTH" => config.rest.basic_auth = Some(value.clone()),
                "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS" => {
                    config.kafka.bootstrap_servers = value.clone()
                }
                "TRIBUTARY_WORKER_OFFSETS_TOPIC" => config.worker.offsets_topic = value.clone(),
                "TRIBUTARY_WORKER_CONFIGS_TOPIC" => config.worker.configs_topic = value.clone(),
                "TRIBUTARY_WORKER_STATUS_TOPIC" => config.worker.status_topic = value.clone(),
                "TRIBUTARY_REST_LISTEN" => config.rest.listen = value.clone(),
                "TRIBUTARY_REGISTRY_ENABLED" => flag(
                    "TRIBUTARY_REGISTRY_ENABLED",
                    value,
                    &mut config.registry.enabled,
                ),
                "TRIBUTARY_REGISTRY_LISTEN" => config.registry.listen = value.clone(),
                "TRIBUTARY_REGISTRY_TOPIC" => config.registry.topic = value.clone(),
                _ => {}
            }
        }
        for (key, value) in [
            ("rest.bearer_token", &mut config.rest.bearer_token),
            ("rest.basic_auth", &mut config.rest.basic_auth),
        ] {
            if let Some(text) = value.as_mut() {
                let one = std::collections::BTreeMap::from([(key.to_owned(), text.clone())]);
                match super::providers::resolve(&one) {
                    Ok(mut resolved) => *text = resolved.remove(key).unwrap_or_default(),
                    Err(e) => errors.extend(e.0),
                }
            }
        }
        if config
            .rest
            .basic_auth
            .as_ref()
            .is_some_and(|b| !b.contains(':'))
        {
            errors.push(ValidationError {
                key: "rest.basic_auth".to_owned(),
                message: "must be user:password".to_owned(),
            });
        }
        if config.kafka.bootstrap_servers.trim().is_empty() {
            errors.push(ValidationError {
                key: "kafka.bootstrap_servers".to_owned(),
                message: "must name at least one broker, such as 127.0.0.1:9092".to_owned(),
            });
        }
        if config.rest.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(ValidationError {
                key: "rest.listen".to_owned(),
                message: format!(
                    "{:?} is not an address such as 127.0.0.1:8083",
                    config.rest.listen
                ),
            });
        }
        if config.registry.enabled
            && config
                .registry
                .listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            errors.push(ValidationError {
                key: "registry.listen".to_owned(),
                message: format!(
                    "{:?} is not an address such as 127.0.0.1:8081",
                    config.registry.listen
                ),
            });
        }
        if config.registry.topic.trim().is_empty() {
            errors.push(ValidationError {
                key: "registry.topic".to_owned(),
                message: "must not be empty".to_owned(),
            });
        }
        if config.worker.offsets_topic.trim().is_empty() {
            errors.push(ValidationError {
                key: "worker.offsets_topic".to_owned(),
                message: "must not be empty".to_owned(),
            });
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

fn single(key: &str, message: String) -> ValidationErrors {
    ValidationErrors(vec![ValidationError {
        key: key.to_owned(),
        message,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_env_overrides() {
        let text = "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n";
        let config = WorkerConfig::parse(text, &[]).expect("valid");
        assert_eq!(config.worker.offsets_topic, "tributary-offsets");
        let config = WorkerConfig::parse(
            text,
            &[(
                "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS".into(),
                "broker:9093".into(),
            )],
        )
        .expect("valid");
        assert_eq!(config.kafka.bootstrap_servers, "broker:9093");
        assert!(config.worker.topic_tracking_enable);
        let config = WorkerConfig::parse(
            text,
            &[(
                "TRIBUTARY_WORKER_TOPIC_TRACKING_ALLOW_RESET".into(),
                "false".into(),
            )],
        )
        .expect("valid");
        assert!(!config.worker.topic_tracking_allow_reset);
        let err = WorkerConfig::parse(
            text,
            &[(
                "TRIBUTARY_WORKER_TOPIC_TRACKING_ENABLE".into(),
                "yes".into(),
            )],
        )
        .expect_err("not a boolean");
        assert_eq!(err.0[0].key, "TRIBUTARY_WORKER_TOPIC_TRACKING_ENABLE");
    }

    #[test]
    fn rest_credentials_resolve_placeholders_and_stay_out_of_debug() {
        let text = "[kafka]\nbootstrap_servers = \"x:1\"\n[rest]\nbearer_token = \"${env:PATH}\"\nbasic_auth = \"nocolon\"\n";
        let err = WorkerConfig::parse(text, &[]).expect_err("basic_auth without a colon");
        assert_eq!(err.0[0].key, "rest.basic_auth");
        let text = "[kafka]\nbootstrap_servers = \"x:1\"\n[rest]\nbearer_token = \"${env:PATH}\"\n";
        let config = WorkerConfig::parse(text, &[]).expect("valid");
        assert_eq!(
            config.rest.bearer_token.as_deref(),
            Some(std::env::var("PATH").expect("PATH").as_str())
        );
        assert!(!format!("{config:?}").contains(&std::env::var("PATH").expect("PATH")));
    }

    #[test]
    fn registry_defaults_file_values_and_env_overrides() {
        let text = "[kafka]\nbootstrap_servers = \"x:1\"\n";
        let config = WorkerConfig::parse(text, &[]).expect("valid");
        assert_eq!(config.registry, RegistrySection::default());
        assert_eq!(
            (
                config.registry.listen.as_str(),
                config.registry.topic.as_str()
            ),
            ("127.0.0.1:8081", "_schemas")
        );
        assert!(config.registry.enabled);
        let text = "[kafka]\nbootstrap_servers = \"x:1\"\n[registry]\ntopic = \"schemas\"\n";
        let config = WorkerConfig::parse(
            text,
            &[
                ("TRIBUTARY_REGISTRY_LISTEN".into(), "0.0.0.0:18081".into()),
                ("TRIBUTARY_REGISTRY_ENABLED".into(), "false".into()),
            ],
        )
        .expect("valid");
        assert_eq!(config.registry.topic, "schemas");
        assert_eq!(config.registry.listen, "0.0.0.0:18081");
        assert!(!config.registry.enabled);
        let err = WorkerConfig::parse(
            text,
            &[("TRIBUTARY_REGISTRY_LISTEN".into(), "nowhere".into())],
        )
        .expect_err("not an address");
        assert_eq!(err.0[0].key, "registry.listen");
    }

    #[test]
    fn unknown_and_empty_keys_are_named() {
        let err =
            WorkerConfig::parse("[kafka]\nbootstrap_server = \"x\"\n", &[]).expect_err("typo");
        assert!(err.to_string().contains("bootstrap_server"), "{err}");
        let err =
            WorkerConfig::parse("[kafka]\nbootstrap_servers = \" \"\n", &[]).expect_err("empty");
        assert_eq!(err.0[0].key, "kafka.bootstrap_servers");
    }
}
