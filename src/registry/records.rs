//! The records of the `_schemas` topic, in Confluent's own JSON shapes, so a topic written by
//! tributary reads like one written by Confluent's registry and the reverse:
//!
//! - `{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}` →
//!   `{"subject":"s","version":1,"id":1,"schema":"…","deleted":false}`, a tombstone for a
//!   permanently deleted version;
//! - `{"keytype":"CONFIG","subject":"s","magic":0}` (`"subject":null` for the global level) →
//!   `{"compatibilityLevel":"BACKWARD"}`, a tombstone when a subject's level is removed;
//! - read only: `{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}` →
//!   `{"subject":"s","version":3}` (Confluent's soft delete of versions up to 3).
//!
//! Other key types (`NOOP`, `MODE`, `CLEAR_SUBJECT`, …) and unknown fields are ignored.

use serde::{Deserialize, Serialize};

use super::compatibility::CompatibilityLevel;

/// One change to the registry, as a record of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A version of a subject; `None` removes it for good.
    Schema {
        subject: String,
        version: u32,
        value: Option<SchemaValue>,
    },
    /// A compatibility level, global when `subject` is `None`; `None` as level removes it.
    Config {
        subject: Option<String>,
        level: Option<CompatibilityLevel>,
    },
    /// Confluent's subject soft delete: every version up to `version` is deleted.
    DeleteSubject { subject: String, version: u32 },
}

/// The value of a schema record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
    /// Absent for Avro; other types are not served here and their records are skipped.
    #[serde(
        default,
        rename = "schemaType",
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
}

#[derive(Serialize)]
struct SchemaKeyOut<'a> {
    keytype: &'static str,
    subject: &'a str,
    version: u32,
    magic: u8,
}

#[derive(Serialize)]
struct ConfigKeyOut<'a> {
    keytype: &'static str,
    subject: Option<&'a str>,
    magic: u8,
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel", default)]
    compatibility_level: Option<String>,
}

#[derive(Deserialize)]
struct KeyIn {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Deserialize)]
struct DeleteSubjectValue {
    version: u32,
}

impl Record {
    /// The record's key and value bytes (`None`: a tombstone).
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            Record::Schema {
                subject,
                version,
                value,
            } => (
                json(&SchemaKeyOut {
                    keytype: "SCHEMA",
                    subject,
                    version: *version,
                    magic: 1,
                }),
                value.as_ref().map(json),
            ),
            Record::Config { subject, level } => (
                json(&ConfigKeyOut {
                    keytype: "CONFIG",
                    subject: subject.as_deref(),
                    magic: 0,
                }),
                level.map(|level| {
                    json(&ConfigValue {
                        compatibility_level: Some(level.as_str().to_owned()),
                    })
                }),
            ),
            Record::DeleteSubject { subject, version } => (
                json(&serde_json::json!({
                    "keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0
                })),
                Some(json(
                    &serde_json::json!({ "subject": subject, "version": version }),
                )),
            ),
        }
    }

    /// Reads a record of the topic: `Ok(None)` for key types the registry does not use (and for
    /// records of schema types other than Avro), an error naming the problem for a record that
    /// is not valid.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Record>, String> {
        let key: KeyIn =
            serde_json::from_slice(key).map_err(|err| format!("the key is not valid: {err}"))?;
        let value_error = |err: serde_json::Error| format!("the value is not valid: {err}");
        match key.keytype.as_str() {
            "SCHEMA" => {
                let (Some(subject), Some(version)) = (key.subject, key.version) else {
                    return Err("a SCHEMA key needs a subject and a version".to_owned());
                };
                let value = match value {
                    None => None,
                    Some(bytes) => {
                        let value: SchemaValue =
                            serde_json::from_slice(bytes).map_err(value_error)?;
                        if value
                            .schema_type
                            .as_deref()
                            .is_some_and(|t| !t.eq_ignore_ascii_case("AVRO"))
                        {
                            return Ok(None);
                        }
                        if value.subject != subject || value.version != version {
                            return Err(format!(
                                "the value is for subject {:?} version {}, the key for subject \
                                 {subject:?} version {version}",
                                value.subject, value.version
                            ));
                        }
                        Some(value)
                    }
                };
                Ok(Some(Record::Schema {
                    subject,
                    version,
                    value,
                }))
            }
            "CONFIG" => {
                let level = match value {
                    None => None,
                    Some(bytes) => {
                        let value: ConfigValue =
                            serde_json::from_slice(bytes).map_err(value_error)?;
                        // A config record without a level (mode or group settings only)
                        // leaves the level as it is.
                        let Some(name) = value.compatibility_level else {
                            return Ok(None);
                        };
                        Some(
                            CompatibilityLevel::parse(&name)
                                .ok_or_else(|| format!("{name:?} is not a compatibility level"))?,
                        )
                    }
                };
                Ok(Some(Record::Config {
                    subject: key.subject,
                    level,
                }))
            }
            "DELETE_SUBJECT" => {
                let (Some(subject), Some(bytes)) = (key.subject, value) else {
                    return Ok(None);
                };
                let value: DeleteSubjectValue =
                    serde_json::from_slice(bytes).map_err(value_error)?;
                Ok(Some(Record::DeleteSubject {
                    subject,
                    version: value.version,
                }))
            }
            _ => Ok(None),
        }
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain strings and numbers: serialising cannot fail.
    serde_json::to_vec(value).expect("registry records always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn keys_and_values_have_confluents_shapes() {
        let record = Record::Schema {
            subject: "t-value".into(),
            version: 2,
            value: Some(SchemaValue {
                subject: "t-value".into(),
                version: 2,
                id: 7,
                schema: "\"string\"".into(),
                deleted: false,
                schema_type: None,
            }),
        };
        let (key, value) = record.encode();
        assert_eq!(
            text(&key),
            r#"{"keytype":"SCHEMA","subject":"t-value","version":2,"magic":1}"#
        );
        assert_eq!(
            text(value.as_deref().expect("a value")),
            r#"{"subject":"t-value","version":2,"id":7,"schema":"\"string\"","deleted":false}"#
        );
        assert_eq!(
            Record::decode(&key, value.as_deref()).expect("valid"),
            Some(record)
        );

        let global = Record::Config {
            subject: None,
            level: Some(CompatibilityLevel::FullTransitive),
        };
        let (key, value) = global.encode();
        assert_eq!(
            text(&key),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(
            text(value.as_deref().expect("a value")),
            r#"{"compatibilityLevel":"FULL_TRANSITIVE"}"#
        );
        assert_eq!(
            Record::decode(&key, value.as_deref()).expect("valid"),
            Some(global)
        );
    }

    #[test]
    fn tombstones_other_key_types_and_other_schema_types() {
        let key = br#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#;
        assert_eq!(
            Record::decode(key, None).expect("valid"),
            Some(Record::Schema {
                subject: "s".into(),
                version: 1,
                value: None
            })
        );
        assert_eq!(
            Record::decode(br#"{"keytype":"NOOP","magic":0}"#, Some(b"{}")).expect("valid"),
            None
        );
        let protobuf = br#"{"subject":"s","version":1,"id":3,"schema":"syntax","schemaType":"PROTOBUF","deleted":false}"#;
        assert_eq!(Record::decode(key, Some(protobuf)).expect("valid"), None);
        let config_key = br#"{"keytype":"CONFIG","subject":"s","magic":0}"#;
        assert_eq!(
            Record::decode(config_key, None).expect("valid"),
            Some(Record::Config {
                subject: Some("s".into()),
                level: None
            })
        );
        assert_eq!(
            Record::decode(
                br#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#,
                Some(br#"{"subject":"s","version":4}"#)
            )
            .expect("valid"),
            Some(Record::DeleteSubject {
                subject: "s".into(),
                version: 4
            })
        );
    }

    #[test]
    fn invalid_records_say_what_is_wrong() {
        let key = br#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#;
        let err = Record::decode(key, Some(b"{")).expect_err("not JSON");
        assert!(err.contains("value is not valid"), "{err}");
        let other = br#"{"subject":"x","version":1,"id":1,"schema":"\"int\""}"#;
        let err = Record::decode(key, Some(other)).expect_err("mismatched subject");
        assert!(err.contains("\"x\""), "{err}");
        let err = Record::decode(
            br#"{"keytype":"CONFIG","subject":null,"magic":0}"#,
            Some(br#"{"compatibilityLevel":"SIDEWAYS"}"#),
        )
        .expect_err("unknown level");
        assert!(err.contains("SIDEWAYS"), "{err}");
        assert!(Record::decode(b"not json", None).is_err());
    }
}
