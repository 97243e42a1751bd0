use std::collections::BTreeMap;

use serde_json::Value;

use super::{ValidationError, ValidationErrors};

/// A JSON value as a config string, with Connect's lenience: numbers and booleans become their
/// text, null means "no value" (`Ok(None)`); arrays and objects are not config values.
pub fn config_string(value: Value) -> Result<Option<String>, Value> {
    match value {
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Null => Ok(None),
        other => Err(other),
    }
}

/// A connector's configuration as Kafka Connect takes it: a name and string keys.
///
/// Accepts Connect's two JSON shapes, `{"name": …, "config": {…}}` and a flat object with
/// `name` inside, and Connect's lenience about numbers and booleans given as JSON values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub name: String,
    pub config: BTreeMap<String, String>,
}

impl ConnectorConfig {
    pub fn from_json(text: &str) -> Result<Self, ValidationErrors> {
        let invalid = |message: String| {
            ValidationErrors(vec![ValidationError {
                key: "(json)".to_owned(),
                message,
            }])
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("the connector config is not valid JSON: {e}")))?;
        let Value::Object(mut outer) = value else {
            return Err(invalid(
                "the connector config must be a JSON object".to_owned(),
            ));
        };
        let (name, object) = match outer.remove("config") {
            Some(Value::Object(inner)) => (outer.remove("name"), inner),
            Some(_) => return Err(invalid("\"config\" must be a JSON object".to_owned())),
            None => (None, outer),
        };
        let mut config = BTreeMap::new();
        for (key, value) in object {
            match config_string(value) {
                Ok(Some(text)) => {
                    config.insert(key, text);
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(ValidationErrors(vec![ValidationError {
                        key,
                        message: "must be a string, number or boolean".to_owned(),
                    }]));
                }
            }
        }
        let name = match name {
            Some(Value::String(name)) => Some(name),
            Some(_) => return Err(invalid("\"name\" must be a string".to_owned())),
            None => config.get("name").cloned(),
        };
        let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
            return Err(ValidationErrors(vec![ValidationError {
                key: "name".to_owned(),
                message: "is required".to_owned(),
            }]));
        };
        if let Some(inner) = config.get("name")
            && inner != &name
        {
            return Err(ValidationErrors(vec![ValidationError {
                key: "name".to_owned(),
                message: format!(
                    "{inner:?} inside config differs from the connector name {name:?}"
                ),
            }]));
        }
        config.insert("name".to_owned(), name.clone());
        Ok(Self { name, config })
    }

    pub fn connector_class(&self) -> Option<&str> {
        self.config.get("connector.class").map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_connect_shapes_and_json_scalars() {
        let nested = ConnectorConfig::from_json(
            r#"{"name":"inventory","config":{"database.port":5432,"tombstones.on.delete":false,"x":null}}"#,
        )
        .expect("valid");
        assert_eq!(nested.name, "inventory");
        assert_eq!(nested.config["database.port"], "5432");
        assert_eq!(nested.config["tombstones.on.delete"], "false");
        assert!(!nested.config.contains_key("x"));

        let flat = ConnectorConfig::from_json(r#"{"name":"inventory","topic.prefix":"shop"}"#)
            .expect("valid");
        assert_eq!(flat.name, "inventory");
        assert_eq!(flat.config["topic.prefix"], "shop");
    }

    #[test]
    fn names_what_is_wrong() {
        let err = ConnectorConfig::from_json("{not json").expect_err("invalid");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = ConnectorConfig::from_json(r#"{"config":{}}"#).expect_err("no name");
        assert_eq!(err.0[0].key, "name");
        let err = ConnectorConfig::from_json(r#"{"name":"a","config":{"name":"b"}}"#)
            .expect_err("mismatch");
        assert!(err.to_string().contains("differs"), "{err}");
        let err =
            ConnectorConfig::from_json(r#"{"name":"a","config":{"k":[1]}}"#).expect_err("array");
        assert_eq!(err.0[0].key, "k");
    }
}
