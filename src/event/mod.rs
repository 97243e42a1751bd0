//! The change-event model shared by every box of the pipeline: positions in the WAL, typed
//! column values, table schemas and the change events built from them. No I/O lives here.

mod change;
mod lsn;
mod schema;
mod value;

pub use change::{ChangeEvent, Datum, Op, Row, RowChange, SnapshotMarker, SourceInfo};
pub use lsn::{Lsn, ParseLsnError};
pub use schema::{BaseType, Column, PgType, ReplicaIdentity, TableId, TableSchema, TypeKind};
pub use value::{Date, Numeric, Timestamp, Value};
