//! What the registry answers when a call cannot be served: Confluent's error codes and, where
//! Confluent has one, its message text, so clients that match on either keep working.

use super::compatibility::INVALID_LEVEL_MESSAGE;
use crate::kafka;

/// A registry call that cannot be served; [`RegistryError::error_code`] is Confluent's code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{subject}' not found.")]
    SubjectNotFound { subject: String },
    #[error("Version {version} not found.")]
    VersionNotFound { version: u32 },
    /// `id` is `None` when a schema was looked up by its text.
    #[error("{}", match id { Some(id) => format!("Schema {id} not found"), None => "Schema not found".to_owned() })]
    SchemaNotFound { id: Option<u32> },
    #[error("Subject '{subject}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted { subject: String },
    #[error("Subject '{subject}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted { subject: String },
    #[error(
        "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("Subject '{subject}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured { subject: String },
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
        findings.join(", ")
    )]
    Incompatible {
        subject: String,
        findings: Vec<String>,
    },
    #[error("Invalid schema: {reason}")]
    InvalidSchema { reason: String },
    #[error(
        "The specified version '{given}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion { given: String },
    #[error("{INVALID_LEVEL_MESSAGE}")]
    InvalidCompatibilityLevel,
    #[error("Error in the backend data store: {0}")]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// Confluent's `error_code`: the HTTP status followed by two digits, or the bare status 409
    /// for an incompatible schema (what Confluent's clients see and match on).
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound { .. } => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaNotFound { .. } => 40403,
            RegistryError::SubjectSoftDeleted { .. } => 40404,
            RegistryError::SubjectNotSoftDeleted { .. } => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectLevelNotConfigured { .. } => 40408,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema { .. } => 42201,
            RegistryError::InvalidVersion { .. } => 42202,
            RegistryError::InvalidCompatibilityLevel => 42203,
            RegistryError::Store(_) => 50001,
        }
    }

    /// The HTTP status that goes with [`Self::error_code`].
    pub fn http_status(&self) -> u16 {
        match self.error_code() {
            code if code >= 10_000 => (code / 100) as u16,
            code => code as u16,
        }
    }
}

/// What can go wrong keeping the registry on its Kafka topic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(
        "the schema registry record with key {key} at topic {topic} partition {partition} offset \
         {offset} is not valid ({reason}); write a valid record or a tombstone (null value) for \
         that key"
    )]
    CorruptRecord {
        topic: String,
        partition: i32,
        offset: i64,
        key: String,
        reason: String,
    },
}

impl StoreError {
    /// Whether the same call later may succeed (broker slow or unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Kafka(err) => err.is_transient(),
            StoreError::CorruptRecord { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_http_status_and_messages_match_confluents() {
        let err = RegistryError::SubjectNotFound {
            subject: "x".into(),
        };
        assert_eq!((err.error_code(), err.http_status()), (40401, 404));
        assert_eq!(err.to_string(), "Subject 'x' not found.");
        let err = RegistryError::Incompatible {
            subject: "x".into(),
            findings: vec!["a".into(), "b".into()],
        };
        assert_eq!((err.error_code(), err.http_status()), (409, 409));
        assert_eq!(
            err.to_string(),
            "Schema being registered is incompatible with an earlier schema for subject \"x\", details: [a, b]"
        );
        let err = RegistryError::InvalidCompatibilityLevel;
        assert_eq!((err.error_code(), err.http_status()), (42203, 422));
        assert_eq!(
            RegistryError::SchemaNotFound { id: Some(3) }.to_string(),
            "Schema 3 not found"
        );
        assert_eq!(
            RegistryError::SchemaNotFound { id: None }.to_string(),
            "Schema not found"
        );
    }
}
