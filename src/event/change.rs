use std::sync::Arc;

use super::{Lsn, TableSchema, Value};

/// One column of a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    /// A TOASTed value the update did not change and the stream did not carry. Never a value:
    /// formats render Debezium's placeholder, sinks leave the column alone.
    Unchanged,
    Value(Value),
}

/// A row image, one datum per column of its table schema, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Datum>);

/// Debezium's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// A snapshot read.
    Read,
    Truncate,
    Message,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
            Op::Message => "m",
        }
    }
}

/// Debezium's `source.snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMarker {
    /// Streaming (`"false"`).
    No,
    First,
    FirstInDataCollection,
    Yes,
    LastInDataCollection,
    Last,
}

impl SnapshotMarker {
    pub fn code(self) -> &'static str {
        match self {
            SnapshotMarker::No => "false",
            SnapshotMarker::First => "first",
            SnapshotMarker::FirstInDataCollection => "first_in_data_collection",
            SnapshotMarker::Yes => "true",
            SnapshotMarker::LastInDataCollection => "last_in_data_collection",
            SnapshotMarker::Last => "last",
        }
    }
}

/// Where and when a change happened: the `source` block, less what the connector config adds.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// LSN of the change (the commit's for messages without one).
    pub lsn: Lsn,
    /// Commit LSN of the previous transaction and of this one, for `source.sequence`.
    pub sequence: (Option<Lsn>, Option<Lsn>),
    /// PostgreSQL transaction id; None for non-transactional messages.
    pub tx_id: Option<u32>,
    /// Commit time (snapshot: read time), microseconds since the Unix epoch.
    pub ts_micros: i64,
    pub snapshot: SnapshotMarker,
}

/// An insert, update, delete or snapshot read of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: Arc<TableSchema>,
    pub op: Op,
    /// The old image: the whole row (REPLICA IDENTITY FULL) or the key columns with the rest
    /// NULL; None when the stream carried none.
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: SourceInfo,
}

/// Everything the source emits.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeEvent {
    Row(RowChange),
    Truncate {
        table: Arc<TableSchema>,
        source: SourceInfo,
    },
    /// A logical decoding message (`pg_logical_emit_message`).
    Message {
        prefix: String,
        content: Vec<u8>,
        transactional: bool,
        source: SourceInfo,
    },
}
