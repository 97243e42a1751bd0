//! `key.converter` / `value.converter`: Kafka Connect's JSON converter or Confluent's Avro
//! converter with a schema registry, and their prefixed settings.

use secrecy::SecretString;

use super::keys::KeyReader;
pub use crate::format::registry_client::RegistryConfig;

pub const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";
pub const AVRO_CONVERTER: &str = "io.confluent.connect.avro.AvroConverter";

/// How the keys or the values of a connector's records are written.
#[derive(Debug, Clone)]
pub enum Converter {
    /// Kafka Connect's `JsonConverter`, with or without the schema beside each payload.
    Json { schemas_enable: bool },
    /// Confluent's `AvroConverter`: Avro binary after the registry's schema id.
    Avro(RegistryConfig),
}

impl Converter {
    pub fn is_avro(&self) -> bool {
        matches!(self, Converter::Avro(_))
    }
}

/// Reads `<prefix>` (`key.converter` or `value.converter`) and its settings.
pub(crate) fn read(
    keys: &mut KeyReader<'_>,
    prefix: &'static str,
    keys_of: PrefixedKeys,
) -> Converter {
    let class = keys.raw(prefix).unwrap_or(JSON_CONVERTER);
    let schemas_enable = keys.bool(keys_of.schemas_enable, true);
    let url = keys.raw(keys_of.registry_url);
    let user_info = keys.raw(keys_of.user_info);
    let source = keys.raw(keys_of.credentials_source);
    match class {
        JSON_CONVERTER | "json" => Converter::Json { schemas_enable },
        AVRO_CONVERTER | "avro" => {
            if let Some(source) = source
                && !source.eq_ignore_ascii_case("USER_INFO")
            {
                keys.error(
                    keys_of.credentials_source,
                    format!(
                        "{source:?} is not supported; use USER_INFO with {}",
                        keys_of.user_info
                    ),
                );
            }
            let Some(url) =
                url.and_then(|urls| urls.split(',').map(str::trim).find(|u| !u.is_empty()))
            else {
                keys.error(
                    keys_of.registry_url,
                    "is required with the Avro converter: the schema registry's URL, such as http://127.0.0.1:8081 (tributary serve's own registry)",
                );
                return Converter::Json { schemas_enable };
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                keys.error(
                    keys_of.registry_url,
                    format!("{url:?} is not an http:// or https:// URL"),
                );
            }
            if let Some(info) = user_info
                && !info.contains(':')
            {
                keys.error(keys_of.user_info, "must be user:password");
            }
            Converter::Avro(RegistryConfig {
                url: url.trim_end_matches('/').to_owned(),
                basic_auth: user_info.map(|info| SecretString::from(info.to_owned())),
            })
        }
        other => {
            keys.error(
                prefix,
                format!("{other:?} is not supported; use {JSON_CONVERTER} (json) or {AVRO_CONVERTER} (avro)"),
            );
            Converter::Json { schemas_enable }
        }
    }
}

/// The settings under one converter prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrefixedKeys {
    pub schemas_enable: &'static str,
    pub registry_url: &'static str,
    pub user_info: &'static str,
    pub credentials_source: &'static str,
}

pub(crate) const KEY_CONVERTER_KEYS: PrefixedKeys = PrefixedKeys {
    schemas_enable: "key.converter.schemas.enable",
    registry_url: "key.converter.schema.registry.url",
    user_info: "key.converter.basic.auth.user.info",
    credentials_source: "key.converter.basic.auth.credentials.source",
};

pub(crate) const VALUE_CONVERTER_KEYS: PrefixedKeys = PrefixedKeys {
    schemas_enable: "value.converter.schemas.enable",
    registry_url: "value.converter.schema.registry.url",
    user_info: "value.converter.basic.auth.user.info",
    credentials_source: "value.converter.basic.auth.credentials.source",
};
