use crate::{event::Lsn, kafka};

use super::{pgoutput::DecodeError, replication, types::TypeError};

/// Why the PostgreSQL source stopped. `is_transient` tells the supervisor whether to reconnect
/// with backoff (nothing is lost: the slot and the stored offset are where they were) or to stop
/// the connector and show the message, which says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Replication(#[from] replication::Error),
    #[error("PostgreSQL query failed: {}", describe_sql(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("Kafka transaction failed: {0}")]
    KafkaTransaction(#[source] rdkafka::error::KafkaError),
    #[error("cannot produce to {topic}: {source}")]
    Produce {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("malformed replication message at {lsn}: {source}")]
    Decode { lsn: Lsn, source: DecodeError },
    #[error("cannot decode column {column} of {table} at {lsn}: {source}")]
    Value {
        table: String,
        column: String,
        lsn: Lsn,
        source: Box<TypeError>,
    },
    #[error(
        "column {column} of {table} at {lsn} is not UTF-8; the source database must use UTF8 encoding"
    )]
    NotUtf8 {
        table: String,
        column: String,
        lsn: Lsn,
    },
    #[error("cannot encode an event: {0}")]
    Encode(#[source] crate::format::Error),
    #[error("a change of relation {relation_id} arrived before its Relation message at {lsn}")]
    UnknownRelation { relation_id: u32, lsn: Lsn },
    #[error(
        "wal_level is {actual}; logical replication needs wal_level=logical: set it in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
    )]
    WalLevel { actual: String },
    #[error(
        "role {user} may not replicate: run ALTER ROLE {user} REPLICATION (or connect as a superuser)"
    )]
    NoReplicationPrivilege { user: String },
    #[error(
        "publication {publication} does not exist and publication.autocreate.mode=disabled: create it, e.g. CREATE PUBLICATION {publication} FOR ALL TABLES"
    )]
    PublicationMissing { publication: String },
    #[error(
        "publication {publication} was dropped while it was being streamed: PostgreSQL cannot decode the changes made after that. Recreate it (CREATE PUBLICATION {publication} ...) and recreate the connector's slot, or point publication.name at another publication"
    )]
    PublicationDropped { publication: String },
    #[error(
        "replication slot {slot} belongs to {what}; choose another slot.name or drop the slot (SELECT pg_drop_replication_slot('{slot}'))"
    )]
    SlotMismatch { slot: String, what: String },
    #[error(
        "replication slot {slot} is gone but offsets for this connector exist (last delivered {stored}): changes after that may be lost. Reset the connector's offsets to start from now, or recreate the connector"
    )]
    SlotMissing { slot: String, stored: Lsn },
    #[error(
        "replication slot {slot} was confirmed up to {slot_lsn}, past the last change delivered to Kafka ({stored}): the WAL in between is gone. Reset the connector's offsets (and take a new snapshot) to continue"
    )]
    SlotOvertaken {
        slot: String,
        slot_lsn: Lsn,
        stored: Lsn,
    },
    #[error(
        "replication slot {slot} has been invalidated (wal_status = lost): its WAL was removed, probably by max_slot_wal_keep_size. Drop it and recreate the connector with a new snapshot"
    )]
    SlotInvalidated { slot: String },
    #[error(
        "replication slot {slot} is in use by process {pid}; another instance of this connector may be running"
    )]
    SlotInUse { slot: String, pid: i32 },
    #[error("cannot read the snapshot of {table}: {reason}")]
    SnapshotRow { table: String, reason: String },
    #[error("a snapshot copy task failed: {reason}")]
    SnapshotWorker { reason: String },
    #[error(
        "{}{source}{}",
        table.as_ref().map(|t| format!("table {t}: ")).unwrap_or_default(),
        if matches!(source, crate::format::registry_client::RegistryError::Incompatible { .. }) {
            ". Make the change compatible with the subject's compatibility rule (a new column nullable or with a default), or relax the rule (PUT /config/<subject> {\"compatibility\": \"NONE\"}), then restart the connector"
        } else {
            ""
        }
    )]
    SchemaRegistry {
        table: Option<String>,
        source: crate::format::registry_client::RegistryError,
    },
}

fn describe_sql(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                cause = inner.source();
            }
            text
        }
    }
}

impl Error {
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Replication(e) => e.is_transient(),
            Error::Sql(e) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code().code();
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || code == "53300"
                        || code == "40001"
                        || code == "40P01"
                }
                // No server error: the connection itself failed or closed.
                None => true,
            },
            Error::Kafka(e) => e.is_transient(),
            // A fatal producer error (after a broker restart, say) needs a new producer, which a
            // restart of the task brings; only being fenced by another instance is final.
            Error::KafkaTransaction(e) => !matches!(
                e.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::Fenced
                        | rdkafka::types::RDKafkaErrorCode::ProducerFenced
                )
            ),
            Error::Produce { .. } => true,
            Error::SlotInUse { .. } => true,
            Error::SchemaRegistry { source, .. } => source.is_transient(),
            Error::Decode { .. }
            | Error::Value { .. }
            | Error::NotUtf8 { .. }
            | Error::Encode(_)
            | Error::UnknownRelation { .. }
            | Error::WalLevel { .. }
            | Error::NoReplicationPrivilege { .. }
            | Error::PublicationMissing { .. }
            | Error::PublicationDropped { .. }
            | Error::SlotMismatch { .. }
            | Error::SlotMissing { .. }
            | Error::SlotOvertaken { .. }
            | Error::SlotInvalidated { .. }
            | Error::SnapshotRow { .. }
            | Error::SnapshotWorker { .. } => false,
        }
    }
}
