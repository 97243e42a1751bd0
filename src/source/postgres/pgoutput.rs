//! Decoder of one pgoutput message (protocol version 1), the payload of an XLogData frame.
//!
//! Layouts follow the "Logical Replication Message Formats" page of the PostgreSQL docs: a tag
//! byte, then big-endian integers, NUL-terminated strings and tuple data. Decoding is strict —
//! a truncated buffer, a string without its NUL, an unknown tag or tuple kind, a negative length,
//! a count that cannot fit in what is left, and trailing bytes are all errors — because a
//! misread message would silently corrupt every event after it.
//!
//! Tuple values borrow from the buffer; names (relations, columns, types, origins) are owned
//! because they outlive the message in the relation cache.
//!
//! tributary never enables streaming of in-progress transactions or two-phase commit (see the
//! reference on replication options), so their tags are reported as such instead of being
//! misparsed as protocol 1 messages.

use std::fmt;

use crate::event::{Lsn, ReplicaIdentity};

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin(Begin),
    Commit(Commit),
    /// The transaction was replicated into this server from `name`; precedes its changes.
    Origin {
        /// The commit LSN of the transaction on the origin server.
        commit_lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    /// A non-built-in type used by a column of a Relation that follows.
    Type {
        type_oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation_id: u32,
        new: Tuple<'a>,
    },
    Update {
        relation_id: u32,
        /// Present when the key changed (`Key`) or under REPLICA IDENTITY FULL (`Full`).
        old: Option<OldTuple<'a>>,
        /// Unchanged TOASTed columns are [`TupleValue::Unchanged`] here, even under FULL.
        new: Tuple<'a>,
    },
    Delete {
        relation_id: u32,
        old: OldTuple<'a>,
    },
    Truncate {
        cascade: bool,
        restart_identity: bool,
        relation_ids: Vec<u32>,
    },
    /// A `pg_logical_emit_message` payload.
    Message {
        /// Decoded at commit inside Begin/Commit; otherwise delivered at once, outside any
        /// transaction.
        transactional: bool,
        lsn: Lsn,
        prefix: &'a str,
        content: &'a [u8],
    },
}

impl Message<'_> {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Begin(_) => MessageKind::Begin,
            Message::Commit(_) => MessageKind::Commit,
            Message::Origin { .. } => MessageKind::Origin,
            Message::Relation(_) => MessageKind::Relation,
            Message::Type { .. } => MessageKind::Type,
            Message::Insert { .. } => MessageKind::Insert,
            Message::Update { .. } => MessageKind::Update,
            Message::Delete { .. } => MessageKind::Delete,
            Message::Truncate { .. } => MessageKind::Truncate,
            Message::Message { .. } => MessageKind::Message,
        }
    }
}

/// The protocol 1 message kinds, named as the PostgreSQL docs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Begin,
    Commit,
    Origin,
    Relation,
    Type,
    Insert,
    Update,
    Delete,
    Truncate,
    Message,
}

impl MessageKind {
    pub fn tag(self) -> u8 {
        match self {
            MessageKind::Begin => b'B',
            MessageKind::Commit => b'C',
            MessageKind::Origin => b'O',
            MessageKind::Relation => b'R',
            MessageKind::Type => b'Y',
            MessageKind::Insert => b'I',
            MessageKind::Update => b'U',
            MessageKind::Delete => b'D',
            MessageKind::Truncate => b'T',
            MessageKind::Message => b'M',
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'B' => MessageKind::Begin,
            b'C' => MessageKind::Commit,
            b'O' => MessageKind::Origin,
            b'R' => MessageKind::Relation,
            b'Y' => MessageKind::Type,
            b'I' => MessageKind::Insert,
            b'U' => MessageKind::Update,
            b'D' => MessageKind::Delete,
            b'T' => MessageKind::Truncate,
            b'M' => MessageKind::Message,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record (equals the Commit's `commit_lsn`).
    pub final_lsn: Lsn,
    /// Microseconds since the PostgreSQL epoch (2000-01-01 UTC).
    pub commit_ts: i64,
    pub xid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Currently unused by PostgreSQL (always 0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record: the position to acknowledge once the transaction is durable.
    pub end_lsn: Lsn,
    /// Microseconds since the PostgreSQL epoch (2000-01-01 UTC).
    pub commit_ts: i64,
}

/// A table's shape as of the changes that follow; sent before its first change in each session
/// and again after every schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub relation_id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key (the primary key under DEFAULT; every column under FULL).
    pub part_of_key: bool,
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod`, e.g. length + 4 for `varchar(n)`; -1 when there is none.
    pub type_modifier: i32,
}

/// The columns of one row, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple<'a>(pub Vec<TupleValue<'a>>);

impl<'a> Tuple<'a> {
    pub fn values(&self) -> &[TupleValue<'a>] {
        &self.0
    }
}

/// The old row of an UPDATE or DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple<'a> {
    /// `'K'`: the replica identity key columns; the other columns are [`TupleValue::Null`].
    Key(Tuple<'a>),
    /// `'O'`: the whole old row (REPLICA IDENTITY FULL), TOASTed values included.
    Full(Tuple<'a>),
}

impl<'a> OldTuple<'a> {
    pub fn tuple(&self) -> &Tuple<'a> {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TupleValue<'a> {
    Null,
    /// A TOASTed value the change did not touch; PostgreSQL does not send it.
    Unchanged,
    /// The value in PostgreSQL's text output format.
    Text(&'a [u8]),
    /// The value in the type's binary send format (only with the `binary` option).
    Binary(&'a [u8]),
}

/// A pgoutput message that cannot be decoded. Offsets count from the tag byte (offset 0). Errors
/// never include row values, only where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message: the XLogData frame carried no payload")]
    Empty,
    #[error("unknown pgoutput message tag {tag}; protocol version 1 has B C O R Y I U D T M")]
    UnknownTag { tag: Tag },
    #[error(
        "pgoutput {name} message (tag {tag}) received, but streaming of in-progress transactions \
         is not enabled: tributary decodes protocol version 1 only; start replication with \
         proto_version '1' and without the streaming option"
    )]
    StreamingNotEnabled { tag: Tag, name: &'static str },
    #[error(
        "pgoutput {name} message (tag {tag}) received, but two-phase decoding is not enabled: \
         tributary decodes protocol version 1 only; start replication without the two_phase \
         option and create the slot without TWO_PHASE"
    )]
    TwoPhaseNotEnabled { tag: Tag, name: &'static str },
    #[error(
        "{kind} message truncated: needed {needed} bytes for {what} at offset {offset}, {left} left"
    )]
    Truncated {
        kind: MessageKind,
        what: &'static str,
        offset: usize,
        needed: usize,
        left: usize,
    },
    #[error("{kind} message: {what} at offset {offset} has no terminating NUL byte")]
    MissingNul {
        kind: MessageKind,
        what: &'static str,
        offset: usize,
    },
    #[error("{kind} message: {what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        kind: MessageKind,
        what: &'static str,
        offset: usize,
    },
    #[error("{kind} message: {what} at offset {offset} is {value}, which is negative")]
    Negative {
        kind: MessageKind,
        what: &'static str,
        offset: usize,
        value: i64,
    },
    #[error(
        "{kind} message: {what} at offset {offset} is {count}, but only {left} bytes follow and \
         each entry needs at least {min_entry_len}"
    )]
    CountTooLarge {
        kind: MessageKind,
        what: &'static str,
        offset: usize,
        count: usize,
        min_entry_len: usize,
        left: usize,
    },
    #[error("{kind} message: expected {expected} at offset {offset}, found {found}")]
    UnexpectedByte {
        kind: MessageKind,
        expected: &'static str,
        offset: usize,
        found: Tag,
    },
    #[error(
        "{kind} message: unknown tuple column kind {found} at offset {offset}; expected \
         'n', 'u', 't' or 'b'"
    )]
    UnknownColumnKind {
        kind: MessageKind,
        offset: usize,
        found: Tag,
    },
    #[error(
        "{kind} message: unknown replica identity {found} at offset {offset}; expected \
         'd', 'n', 'f' or 'i'"
    )]
    UnknownReplicaIdentity {
        kind: MessageKind,
        offset: usize,
        found: Tag,
    },
    #[error("{kind} message: {what} at offset {offset} has unknown bits set in 0x{value:02x}")]
    UnknownFlags {
        kind: MessageKind,
        what: &'static str,
        offset: usize,
        value: u8,
    },
    #[error("{kind} message has {count} trailing bytes at offset {offset} after its last field")]
    TrailingBytes {
        kind: MessageKind,
        offset: usize,
        count: usize,
    },
}

/// A protocol byte as it reads best in an error: `'S'` when printable, `0x05` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

const TRUNCATE_CASCADE: u8 = 1;
const TRUNCATE_RESTART_IDENTITY: u8 = 2;
const MESSAGE_TRANSACTIONAL: u8 = 1;
const COLUMN_PART_OF_KEY: u8 = 1;

/// Decodes one pgoutput (protocol version 1) message. The whole buffer must be the message.
pub fn decode(buf: &[u8]) -> Result<Message<'_>, DecodeError> {
    let (&tag, _) = buf.split_first().ok_or(DecodeError::Empty)?;
    let Some(kind) = MessageKind::from_tag(tag) else {
        return Err(unsupported_tag(tag));
    };
    let mut reader = Reader { buf, pos: 1, kind };
    let message = match kind {
        MessageKind::Begin => Message::Begin(Begin {
            final_lsn: reader.lsn("the final LSN")?,
            commit_ts: reader.i64("the commit timestamp")?,
            xid: reader.u32("the transaction id")?,
        }),
        MessageKind::Commit => Message::Commit(Commit {
            flags: reader.u8("the flags")?,
            commit_lsn: reader.lsn("the commit LSN")?,
            end_lsn: reader.lsn("the end LSN")?,
            commit_ts: reader.i64("the commit timestamp")?,
        }),
        MessageKind::Origin => Message::Origin {
            commit_lsn: reader.lsn("the origin commit LSN")?,
            name: reader.string("the origin name")?.to_owned(),
        },
        MessageKind::Relation => Message::Relation(reader.relation()?),
        MessageKind::Type => Message::Type {
            type_oid: reader.u32("the type OID")?,
            namespace: reader.string("the type namespace")?.to_owned(),
            name: reader.string("the type name")?.to_owned(),
        },
        MessageKind::Insert => {
            let relation_id = reader.u32("the relation id")?;
            reader.expect(b'N', "'N' (new tuple)")?;
            Message::Insert {
                relation_id,
                new: reader.tuple()?,
            }
        }
        MessageKind::Update => {
            let relation_id = reader.u32("the relation id")?;
            let marker_at = reader.pos;
            let old = match reader.u8("the tuple marker")? {
                b'K' => Some(OldTuple::Key(reader.tuple()?)),
                b'O' => Some(OldTuple::Full(reader.tuple()?)),
                b'N' => None,
                found => {
                    return Err(reader.unexpected(
                        "'K' (old key), 'O' (old row) or 'N' (new tuple)",
                        marker_at,
                        found,
                    ));
                }
            };
            if old.is_some() {
                reader.expect(b'N', "'N' (new tuple) after the old tuple")?;
            }
            Message::Update {
                relation_id,
                old,
                new: reader.tuple()?,
            }
        }
        MessageKind::Delete => {
            let relation_id = reader.u32("the relation id")?;
            let marker_at = reader.pos;
            let old = match reader.u8("the tuple marker")? {
                b'K' => OldTuple::Key(reader.tuple()?),
                b'O' => OldTuple::Full(reader.tuple()?),
                found => {
                    return Err(reader.unexpected(
                        "'K' (old key) or 'O' (old row)",
                        marker_at,
                        found,
                    ));
                }
            };
            Message::Delete { relation_id, old }
        }
        MessageKind::Truncate => {
            let count = reader.count_i32("the relation count", 4)?;
            let options =
                reader.flags("the options", TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY)?;
            let mut relation_ids = Vec::with_capacity(count);
            for _ in 0..count {
                relation_ids.push(reader.u32("a relation id")?);
            }
            Message::Truncate {
                cascade: options & TRUNCATE_CASCADE != 0,
                restart_identity: options & TRUNCATE_RESTART_IDENTITY != 0,
                relation_ids,
            }
        }
        MessageKind::Message => {
            let flags = reader.flags("the flags", MESSAGE_TRANSACTIONAL)?;
            let lsn = reader.lsn("the message LSN")?;
            let prefix = reader.string("the prefix")?;
            let content = reader.length_prefixed("the content length", "the content")?;
            Message::Message {
                transactional: flags & MESSAGE_TRANSACTIONAL != 0,
                lsn,
                prefix,
                content,
            }
        }
    };
    reader.finish()?;
    Ok(message)
}

/// The error for a tag outside protocol version 1: named when it belongs to a later protocol.
fn unsupported_tag(tag: u8) -> DecodeError {
    let streaming = match tag {
        b'S' => Some("Stream Start"),
        b'E' => Some("Stream Stop"),
        b'c' => Some("Stream Commit"),
        b'A' => Some("Stream Abort"),
        _ => None,
    };
    if let Some(name) = streaming {
        return DecodeError::StreamingNotEnabled {
            tag: Tag(tag),
            name,
        };
    }
    let two_phase = match tag {
        b'b' => Some("Begin Prepare"),
        b'P' => Some("Prepare"),
        b'K' => Some("Commit Prepared"),
        b'r' => Some("Rollback Prepared"),
        b'p' => Some("Stream Prepare"),
        _ => None,
    };
    match two_phase {
        Some(name) => DecodeError::TwoPhaseNotEnabled {
            tag: Tag(tag),
            name,
        },
        None => DecodeError::UnknownTag { tag: Tag(tag) },
    }
}

/// A cursor over one message; every read checks what is left and names what it was reading.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: MessageKind,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn truncated(&self, what: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            kind: self.kind,
            what,
            offset: self.pos,
            needed,
            left: self.rest().len(),
        }
    }

    fn unexpected(&self, expected: &'static str, offset: usize, found: u8) -> DecodeError {
        DecodeError::UnexpectedByte {
            kind: self.kind,
            expected,
            offset,
            found: Tag(found),
        }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let bytes = self
            .rest()
            .get(..len)
            .ok_or_else(|| self.truncated(what, len))?;
        self.pos += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let (bytes, _) = self
            .rest()
            .split_first_chunk::<N>()
            .ok_or_else(|| self.truncated(what, N))?;
        self.pos += N;
        Ok(*bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(what)?)))
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), DecodeError> {
        let at = self.pos;
        match self.u8(expected)? {
            found if found == byte => Ok(()),
            found => Err(self.unexpected(expected, at, found)),
        }
    }

    /// A flags byte in which only `known` bits may be set: under protocol 1 anything else means
    /// the stream is not what we think it is.
    fn flags(&mut self, what: &'static str, known: u8) -> Result<u8, DecodeError> {
        let at = self.pos;
        let value = self.u8(what)?;
        if value & !known != 0 {
            return Err(DecodeError::UnknownFlags {
                kind: self.kind,
                what,
                offset: at,
                value,
            });
        }
        Ok(value)
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let rest = self.rest();
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError::MissingNul {
                kind: self.kind,
                what,
                offset: at,
            });
        };
        let bytes = rest.get(..nul).unwrap_or_default();
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
            kind: self.kind,
            what,
            offset: at,
        })?;
        self.pos += nul + 1;
        Ok(text)
    }

    /// A count that must be non-negative and leave room for `count` entries of at least
    /// `min_entry_len` bytes each, so a corrupt count cannot trigger a huge allocation.
    fn checked_count(
        &self,
        what: &'static str,
        at: usize,
        value: i64,
        min_entry_len: usize,
    ) -> Result<usize, DecodeError> {
        let Ok(count) = usize::try_from(value) else {
            return Err(DecodeError::Negative {
                kind: self.kind,
                what,
                offset: at,
                value,
            });
        };
        let left = self.rest().len();
        if count.saturating_mul(min_entry_len) > left {
            return Err(DecodeError::CountTooLarge {
                kind: self.kind,
                what,
                offset: at,
                count,
                min_entry_len,
                left,
            });
        }
        Ok(count)
    }

    fn count_i16(
        &mut self,
        what: &'static str,
        min_entry_len: usize,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let value = self.i16(what)?;
        self.checked_count(what, at, i64::from(value), min_entry_len)
    }

    fn count_i32(
        &mut self,
        what: &'static str,
        min_entry_len: usize,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let value = self.i32(what)?;
        self.checked_count(what, at, i64::from(value), min_entry_len)
    }

    /// `Int32 length` then that many bytes.
    fn length_prefixed(
        &mut self,
        length_what: &'static str,
        bytes_what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let value = self.i32(length_what)?;
        let Ok(len) = usize::try_from(value) else {
            return Err(DecodeError::Negative {
                kind: self.kind,
                what: length_what,
                offset: at,
                value: i64::from(value),
            });
        };
        self.take(len, bytes_what)
    }

    fn relation(&mut self) -> Result<Relation, DecodeError> {
        let relation_id = self.u32("the relation id")?;
        let namespace = self.string("the namespace")?.to_owned();
        let name = self.string("the relation name")?.to_owned();
        let identity_at = self.pos;
        let code = self.u8("the replica identity")?;
        let replica_identity =
            ReplicaIdentity::from_code(code).ok_or(DecodeError::UnknownReplicaIdentity {
                kind: self.kind,
                offset: identity_at,
                found: Tag(code),
            })?;
        // Flags, an empty name's NUL, type OID and type modifier.
        let count = self.count_i16("the column count", 1 + 1 + 4 + 4)?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let flags = self.flags("the column flags", COLUMN_PART_OF_KEY)?;
            columns.push(RelationColumn {
                part_of_key: flags & COLUMN_PART_OF_KEY != 0,
                name: self.string("the column name")?.to_owned(),
                type_oid: self.u32("the column type OID")?,
                type_modifier: self.i32("the column type modifier")?,
            });
        }
        Ok(Relation {
            relation_id,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn tuple(&mut self) -> Result<Tuple<'a>, DecodeError> {
        // Every column takes at least its kind byte.
        let count = self.count_i16("the tuple column count", 1)?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let kind_at = self.pos;
            let value = match self.u8("the column kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::Unchanged,
                b't' => {
                    TupleValue::Text(self.length_prefixed("the column length", "the column value")?)
                }
                b'b' => TupleValue::Binary(
                    self.length_prefixed("the column length", "the column value")?,
                ),
                found => {
                    return Err(DecodeError::UnknownColumnKind {
                        kind: self.kind,
                        offset: kind_at,
                        found: Tag(found),
                    });
                }
            };
            values.push(value);
        }
        Ok(Tuple(values))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.rest().len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                kind: self.kind,
                offset: self.pos,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Builds messages field by field, big-endian, as the server writes them.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn tag(tag: u8) -> Self {
            Self(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn cstr(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        fn raw(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn tuple(mut self, values: &[TupleValue<'_>]) -> Self {
            self = self.i16(i16::try_from(values.len()).expect("test tuples are small"));
            for value in values {
                self = match value {
                    TupleValue::Null => self.u8(b'n'),
                    TupleValue::Unchanged => self.u8(b'u'),
                    TupleValue::Text(bytes) => self.u8(b't').i32(len32(bytes)).raw(bytes),
                    TupleValue::Binary(bytes) => self.u8(b'b').i32(len32(bytes)).raw(bytes),
                };
            }
            self
        }
        fn build(self) -> Vec<u8> {
            self.0
        }
    }

    fn len32(bytes: &[u8]) -> i32 {
        i32::try_from(bytes.len()).expect("test values are small")
    }

    /// The inverse of [`decode`], for round-trip properties.
    fn encode(message: &Message<'_>) -> Vec<u8> {
        let w = Writer::tag(message.kind().tag());
        match message {
            Message::Begin(b) => w.u64(b.final_lsn.0).i64(b.commit_ts).u32(b.xid),
            Message::Commit(c) => w
                .u8(c.flags)
                .u64(c.commit_lsn.0)
                .u64(c.end_lsn.0)
                .i64(c.commit_ts),
            Message::Origin { commit_lsn, name } => w.u64(commit_lsn.0).cstr(name),
            Message::Relation(r) => {
                let identity = match r.replica_identity {
                    ReplicaIdentity::Default => b'd',
                    ReplicaIdentity::Nothing => b'n',
                    ReplicaIdentity::Full => b'f',
                    ReplicaIdentity::Index => b'i',
                };
                let mut w = w
                    .u32(r.relation_id)
                    .cstr(&r.namespace)
                    .cstr(&r.name)
                    .u8(identity)
                    .i16(i16::try_from(r.columns.len()).expect("small"));
                for c in &r.columns {
                    w = w
                        .u8(u8::from(c.part_of_key))
                        .cstr(&c.name)
                        .u32(c.type_oid)
                        .i32(c.type_modifier);
                }
                w
            }
            Message::Type {
                type_oid,
                namespace,
                name,
            } => w.u32(*type_oid).cstr(namespace).cstr(name),
            Message::Insert { relation_id, new } => w.u32(*relation_id).u8(b'N').tuple(&new.0),
            Message::Update {
                relation_id,
                old,
                new,
            } => {
                let w = w.u32(*relation_id);
                let w = match old {
                    None => w,
                    Some(OldTuple::Key(t)) => w.u8(b'K').tuple(&t.0),
                    Some(OldTuple::Full(t)) => w.u8(b'O').tuple(&t.0),
                };
                w.u8(b'N').tuple(&new.0)
            }
            Message::Delete { relation_id, old } => {
                let w = w.u32(*relation_id);
                match old {
                    OldTuple::Key(t) => w.u8(b'K').tuple(&t.0),
                    OldTuple::Full(t) => w.u8(b'O').tuple(&t.0),
                }
            }
            Message::Truncate {
                cascade,
                restart_identity,
                relation_ids,
            } => {
                let options = u8::from(*cascade) | (u8::from(*restart_identity) << 1);
                let mut w = w
                    .i32(i32::try_from(relation_ids.len()).expect("small"))
                    .u8(options);
                for id in relation_ids {
                    w = w.u32(*id);
                }
                w
            }
            Message::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => w
                .u8(u8::from(*transactional))
                .u64(lsn.0)
                .cstr(prefix)
                .i32(len32(content))
                .raw(content),
        }
        .build()
    }

    fn decoded(buf: &[u8]) -> Message<'_> {
        decode(buf).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn begin_from_literal_bytes() {
        let buf = [
            b'B', 0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48, // final LSN 16/B374D848
            0, 0, 0, 0, 0, 0, 0x01, 0x02, // commit timestamp 258
            0x80, 0, 0, 0x01, // xid 2147483649 (above i32::MAX)
        ];
        assert_eq!(
            decoded(&buf),
            Message::Begin(Begin {
                final_lsn: Lsn(0x16_B374_D848),
                commit_ts: 258,
                xid: 0x8000_0001,
            })
        );
    }

    #[test]
    fn commit() {
        let buf = Writer::tag(b'C')
            .u8(0)
            .u64(0x1_0000_0010)
            .u64(0x1_0000_0040)
            .i64(-5)
            .build();
        assert_eq!(
            decoded(&buf),
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(0x1_0000_0010),
                end_lsn: Lsn(0x1_0000_0040),
                commit_ts: -5,
            })
        );
    }

    #[test]
    fn origin() {
        let buf = Writer::tag(b'O').u64(77).cstr("pg_16385").build();
        assert_eq!(
            decoded(&buf),
            Message::Origin {
                commit_lsn: Lsn(77),
                name: "pg_16385".to_owned(),
            }
        );
    }

    #[test]
    fn relation_with_every_field() {
        let buf = Writer::tag(b'R')
            .u32(16_384)
            .cstr("public")
            .cstr("Orders ü")
            .u8(b'f')
            .i16(3)
            .u8(1)
            .cstr("id")
            .u32(23)
            .i32(-1)
            .u8(0)
            .cstr("code")
            .u32(1043)
            .i32(14)
            .u8(0)
            .cstr("")
            .u32(4_000_000_000)
            .i32(i32::MIN)
            .build();
        assert_eq!(
            decoded(&buf),
            Message::Relation(Relation {
                relation_id: 16_384,
                namespace: "public".to_owned(),
                name: "Orders ü".to_owned(),
                replica_identity: ReplicaIdentity::Full,
                columns: vec![
                    RelationColumn {
                        part_of_key: true,
                        name: "id".to_owned(),
                        type_oid: 23,
                        type_modifier: -1,
                    },
                    RelationColumn {
                        part_of_key: false,
                        name: "code".to_owned(),
                        type_oid: 1043,
                        type_modifier: 14,
                    },
                    RelationColumn {
                        part_of_key: false,
                        name: String::new(),
                        type_oid: 4_000_000_000,
                        type_modifier: i32::MIN,
                    },
                ],
            })
        );
    }

    #[test]
    fn relation_replica_identities() {
        for (code, identity) in [
            (b'd', ReplicaIdentity::Default),
            (b'n', ReplicaIdentity::Nothing),
            (b'f', ReplicaIdentity::Full),
            (b'i', ReplicaIdentity::Index),
        ] {
            let buf = Writer::tag(b'R')
                .u32(1)
                .cstr("s")
                .cstr("t")
                .u8(code)
                .i16(0)
                .build();
            let Message::Relation(relation) = decoded(&buf) else {
                panic!("not a Relation");
            };
            assert_eq!(relation.replica_identity, identity);
            assert!(relation.columns.is_empty());
        }
        let bad = Writer::tag(b'R')
            .u32(1)
            .cstr("s")
            .cstr("t")
            .u8(b'x')
            .i16(0)
            .build();
        assert_eq!(
            decode(&bad),
            Err(DecodeError::UnknownReplicaIdentity {
                kind: MessageKind::Relation,
                offset: 9,
                found: Tag(b'x'),
            })
        );
    }

    #[test]
    fn type_message() {
        let buf = Writer::tag(b'Y')
            .u32(16_390)
            .cstr("public")
            .cstr("mood")
            .build();
        assert_eq!(
            decoded(&buf),
            Message::Type {
                type_oid: 16_390,
                namespace: "public".to_owned(),
                name: "mood".to_owned(),
            }
        );
    }

    #[test]
    fn insert_with_every_column_kind() {
        let buf = Writer::tag(b'I')
            .u32(16_384)
            .u8(b'N')
            .i16(5)
            .u8(b't')
            .i32(2)
            .raw(b"42")
            .u8(b'n')
            .u8(b'u')
            .u8(b'b')
            .i32(3)
            .raw(&[0, 0xFF, 7])
            .u8(b't')
            .i32(0)
            .build();
        assert_eq!(
            decoded(&buf),
            Message::Insert {
                relation_id: 16_384,
                new: Tuple(vec![
                    TupleValue::Text(b"42"),
                    TupleValue::Null,
                    TupleValue::Unchanged,
                    TupleValue::Binary(&[0, 0xFF, 7]),
                    TupleValue::Text(b""),
                ]),
            }
        );
    }

    #[test]
    fn update_without_old_tuple() {
        let buf = Writer::tag(b'U')
            .u32(9)
            .u8(b'N')
            .tuple(&[TupleValue::Text(b"1"), TupleValue::Unchanged])
            .build();
        assert_eq!(
            decoded(&buf),
            Message::Update {
                relation_id: 9,
                old: None,
                new: Tuple(vec![TupleValue::Text(b"1"), TupleValue::Unchanged]),
            }
        );
    }

    #[test]
    fn update_with_old_key_and_with_old_row() {
        let key = Writer::tag(b'U')
            .u32(9)
            .u8(b'K')
            .tuple(&[TupleValue::Text(b"1"), TupleValue::Null])
            .u8(b'N')
            .tuple(&[TupleValue::Text(b"2"), TupleValue::Text(b"x")])
            .build();
        assert_eq!(
            decoded(&key),
            Message::Update {
                relation_id: 9,
                old: Some(OldTuple::Key(Tuple(vec![
                    TupleValue::Text(b"1"),
                    TupleValue::Null
                ]))),
                new: Tuple(vec![TupleValue::Text(b"2"), TupleValue::Text(b"x")]),
            }
        );
        let full = Writer::tag(b'U')
            .u32(10)
            .u8(b'O')
            .tuple(&[TupleValue::Text(b"1"), TupleValue::Text(b"big")])
            .u8(b'N')
            .tuple(&[TupleValue::Text(b"1"), TupleValue::Unchanged])
            .build();
        let Message::Update {
            relation_id: 10,
            old: Some(OldTuple::Full(old)),
            new,
        } = decoded(&full)
        else {
            panic!("not an Update with an old row");
        };
        assert_eq!(
            old.values(),
            [TupleValue::Text(b"1"), TupleValue::Text(b"big")]
        );
        assert_eq!(
            new.values(),
            [TupleValue::Text(b"1"), TupleValue::Unchanged]
        );
    }

    #[test]
    fn update_requires_new_tuple_after_old() {
        let buf = Writer::tag(b'U')
            .u32(9)
            .u8(b'K')
            .tuple(&[TupleValue::Text(b"1")])
            .u8(b'K')
            .tuple(&[TupleValue::Text(b"2")])
            .build();
        assert_eq!(
            decode(&buf),
            Err(DecodeError::UnexpectedByte {
                kind: MessageKind::Update,
                expected: "'N' (new tuple) after the old tuple",
                offset: 14,
                found: Tag(b'K'),
            })
        );
        let bad_marker = Writer::tag(b'U').u32(9).u8(b'X').i16(0).build();
        assert!(matches!(
            decode(&bad_marker),
            Err(DecodeError::UnexpectedByte {
                offset: 5,
                found: Tag(b'X'),
                ..
            })
        ));
    }

    #[test]
    fn delete_with_old_key_and_with_old_row() {
        let key = Writer::tag(b'D')
            .u32(3)
            .u8(b'K')
            .tuple(&[TupleValue::Text(b"7"), TupleValue::Null])
            .build();
        assert_eq!(
            decoded(&key),
            Message::Delete {
                relation_id: 3,
                old: OldTuple::Key(Tuple(vec![TupleValue::Text(b"7"), TupleValue::Null])),
            }
        );
        let full = Writer::tag(b'D')
            .u32(4)
            .u8(b'O')
            .tuple(&[TupleValue::Text(b"7"), TupleValue::Text(b"seven")])
            .build();
        assert_eq!(
            decoded(&full),
            Message::Delete {
                relation_id: 4,
                old: OldTuple::Full(Tuple(vec![
                    TupleValue::Text(b"7"),
                    TupleValue::Text(b"seven")
                ])),
            }
        );
        // A delete always carries an old tuple; 'N' is not one.
        let new_only = Writer::tag(b'D')
            .u32(4)
            .u8(b'N')
            .tuple(&[TupleValue::Null])
            .build();
        assert!(matches!(
            decode(&new_only),
            Err(DecodeError::UnexpectedByte {
                kind: MessageKind::Delete,
                found: Tag(b'N'),
                ..
            })
        ));
    }

    #[test]
    fn truncate_options_and_relations() {
        for (options, cascade, restart_identity) in [
            (0, false, false),
            (1, true, false),
            (2, false, true),
            (3, true, true),
        ] {
            let buf = Writer::tag(b'T')
                .i32(2)
                .u8(options)
                .u32(16_384)
                .u32(16_390)
                .build();
            assert_eq!(
                decoded(&buf),
                Message::Truncate {
                    cascade,
                    restart_identity,
                    relation_ids: vec![16_384, 16_390],
                }
            );
        }
        let unknown = Writer::tag(b'T').i32(1).u8(4).u32(1).build();
        assert_eq!(
            decode(&unknown),
            Err(DecodeError::UnknownFlags {
                kind: MessageKind::Truncate,
                what: "the options",
                offset: 5,
                value: 4,
            })
        );
    }

    #[test]
    fn truncate_counts_must_fit() {
        let negative = Writer::tag(b'T').i32(-1).u8(0).build();
        assert_eq!(
            decode(&negative),
            Err(DecodeError::Negative {
                kind: MessageKind::Truncate,
                what: "the relation count",
                offset: 1,
                value: -1,
            })
        );
        // Claims a billion relations in a 14-byte message: rejected before any allocation.
        let huge = Writer::tag(b'T')
            .i32(1_000_000_000)
            .u8(0)
            .u32(1)
            .u32(2)
            .build();
        assert!(matches!(
            decode(&huge),
            Err(DecodeError::CountTooLarge {
                count: 1_000_000_000,
                left: 9,
                ..
            })
        ));
    }

    #[test]
    fn logical_messages() {
        let transactional = Writer::tag(b'M')
            .u8(1)
            .u64(0x2_0000_0000)
            .cstr("p")
            .i32(5)
            .raw(b"hello")
            .build();
        assert_eq!(
            decoded(&transactional),
            Message::Message {
                transactional: true,
                lsn: Lsn(0x2_0000_0000),
                prefix: "p",
                content: b"hello",
            }
        );
        let immediate = Writer::tag(b'M').u8(0).u64(1).cstr("ping").i32(0).build();
        assert_eq!(
            decoded(&immediate),
            Message::Message {
                transactional: false,
                lsn: Lsn(1),
                prefix: "ping",
                content: b"",
            }
        );
    }

    #[test]
    fn truncated_column_names_what_and_where() {
        let mut buf = Writer::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(2)
            .u8(b'n')
            .u8(b't')
            .i32(3)
            .raw(b"abc")
            .build();
        // Cut inside the second column's length.
        buf.truncate(12);
        let err = decode(&buf).expect_err("truncated");
        assert_eq!(
            err,
            DecodeError::Truncated {
                kind: MessageKind::Insert,
                what: "the column length",
                offset: 10,
                needed: 4,
                left: 2,
            }
        );
        assert_eq!(
            err.to_string(),
            "Insert message truncated: needed 4 bytes for the column length at offset 10, 2 left"
        );
    }

    #[test]
    fn rejects_negative_lengths_and_counts() {
        let negative_len = Writer::tag(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(-1)
            .build();
        assert_eq!(
            decode(&negative_len),
            Err(DecodeError::Negative {
                kind: MessageKind::Insert,
                what: "the column length",
                offset: 9,
                value: -1,
            })
        );
        let negative_columns = Writer::tag(b'I').u32(1).u8(b'N').i16(-2).build();
        assert!(matches!(
            decode(&negative_columns),
            Err(DecodeError::Negative { value: -2, .. })
        ));
        let too_many_columns = Writer::tag(b'I').u32(1).u8(b'N').i16(3).u8(b'n').build();
        assert!(matches!(
            decode(&too_many_columns),
            Err(DecodeError::CountTooLarge {
                count: 3,
                left: 1,
                ..
            })
        ));
        let negative_message = Writer::tag(b'M')
            .u8(0)
            .u64(1)
            .cstr("p")
            .i32(i32::MIN)
            .build();
        assert!(matches!(
            decode(&negative_message),
            Err(DecodeError::Negative {
                kind: MessageKind::Message,
                ..
            })
        ));
        let relation_columns = Writer::tag(b'R')
            .u32(1)
            .cstr("s")
            .cstr("t")
            .u8(b'd')
            .i16(2)
            .u8(0)
            .cstr("a")
            .u32(23)
            .i32(-1)
            .build();
        assert!(matches!(
            decode(&relation_columns),
            Err(DecodeError::CountTooLarge {
                kind: MessageKind::Relation,
                count: 2,
                ..
            })
        ));
    }

    #[test]
    fn rejects_unknown_column_kind() {
        let buf = Writer::tag(b'I').u32(1).u8(b'N').i16(1).u8(b'x').build();
        let err = decode(&buf).expect_err("bad kind");
        assert_eq!(
            err,
            DecodeError::UnknownColumnKind {
                kind: MessageKind::Insert,
                offset: 8,
                found: Tag(b'x'),
            }
        );
        assert!(err.to_string().contains("'x'"), "{err}");
    }

    #[test]
    fn rejects_missing_nul_and_invalid_utf8() {
        let no_nul = Writer::tag(b'O').u64(1).raw(b"origin").build();
        assert_eq!(
            decode(&no_nul),
            Err(DecodeError::MissingNul {
                kind: MessageKind::Origin,
                what: "the origin name",
                offset: 9,
            })
        );
        let bad_utf8 = Writer::tag(b'Y')
            .u32(1)
            .cstr("public")
            .raw(&[0xC3, 0x28, 0])
            .build();
        assert_eq!(
            decode(&bad_utf8),
            Err(DecodeError::InvalidUtf8 {
                kind: MessageKind::Type,
                what: "the type name",
                offset: 12,
            })
        );
        let bad_column_flags = Writer::tag(b'R')
            .u32(1)
            .cstr("s")
            .cstr("t")
            .u8(b'd')
            .i16(1)
            .u8(3)
            .cstr("a")
            .u32(23)
            .i32(-1)
            .build();
        assert!(matches!(
            decode(&bad_column_flags),
            Err(DecodeError::UnknownFlags {
                what: "the column flags",
                value: 3,
                ..
            })
        ));
    }

    #[test]
    fn rejects_trailing_bytes() {
        let buf = Writer::tag(b'B').u64(1).i64(2).u32(3).u8(0).build();
        assert_eq!(
            decode(&buf),
            Err(DecodeError::TrailingBytes {
                kind: MessageKind::Begin,
                offset: 21,
                count: 1,
            })
        );
    }

    #[test]
    fn rejects_empty_and_unknown_tags() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        let err = decode(&[b'Z', 0]).expect_err("unknown");
        assert_eq!(err, DecodeError::UnknownTag { tag: Tag(b'Z') });
        assert_eq!(
            DecodeError::UnknownTag { tag: Tag(0x05) }.to_string(),
            "unknown pgoutput message tag 0x05; protocol version 1 has B C O R Y I U D T M"
        );
    }

    #[test]
    fn streaming_and_two_phase_tags_are_named_not_misparsed() {
        for (tag, name) in [
            (b'S', "Stream Start"),
            (b'E', "Stream Stop"),
            (b'c', "Stream Commit"),
            (b'A', "Stream Abort"),
        ] {
            let err = decode(&[tag, 0, 0, 0, 1, 1]).expect_err("streaming");
            assert_eq!(
                err,
                DecodeError::StreamingNotEnabled {
                    tag: Tag(tag),
                    name
                }
            );
            assert!(err.to_string().contains("streaming"), "{err}");
        }
        for (tag, name) in [
            (b'b', "Begin Prepare"),
            (b'P', "Prepare"),
            (b'K', "Commit Prepared"),
            (b'r', "Rollback Prepared"),
            (b'p', "Stream Prepare"),
        ] {
            let err = decode(&[tag, 0, 0]).expect_err("two-phase");
            assert_eq!(
                err,
                DecodeError::TwoPhaseNotEnabled {
                    tag: Tag(tag),
                    name
                }
            );
            assert!(err.to_string().contains("two-phase"), "{err}");
        }
    }

    // ---- properties ----

    fn name() -> impl Strategy<Value = String> {
        // Any UTF-8 without NUL, including multi-byte characters.
        proptest::string::string_regex("[^\u{0}]{0,12}").expect("valid regex")
    }

    fn tuple() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![b'n', b'u', b't', b'b']),
                prop::collection::vec(any::<u8>(), 0..24),
            ),
            0..6,
        )
    }

    fn write_tuple(mut w: Writer, values: &[(u8, Vec<u8>)]) -> Writer {
        w = w.i16(i16::try_from(values.len()).expect("small"));
        for (kind, bytes) in values {
            w = match kind {
                b't' | b'b' => w.u8(*kind).i32(len32(bytes)).raw(bytes),
                _ => w.u8(*kind),
            };
        }
        w
    }

    /// Valid encodings of every protocol 1 message kind.
    fn valid_message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(lsn, ts, xid)| Writer::tag(b'B')
                .u64(lsn)
                .i64(ts)
                .u32(xid)
                .build()),
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                |(flags, lsn, end, ts)| Writer::tag(b'C')
                    .u8(flags)
                    .u64(lsn)
                    .u64(end)
                    .i64(ts)
                    .build()
            ),
            (any::<u64>(), name())
                .prop_map(|(lsn, origin)| Writer::tag(b'O').u64(lsn).cstr(&origin).build()),
            (
                any::<u32>(),
                name(),
                name(),
                prop::sample::select(vec![b'd', b'n', b'f', b'i']),
                prop::collection::vec((any::<bool>(), name(), any::<u32>(), any::<i32>()), 0..5),
            )
                .prop_map(|(id, namespace, relname, identity, columns)| {
                    let mut w = Writer::tag(b'R')
                        .u32(id)
                        .cstr(&namespace)
                        .cstr(&relname)
                        .u8(identity)
                        .i16(i16::try_from(columns.len()).expect("small"));
                    for (key, column, oid, typmod) in &columns {
                        w = w.u8(u8::from(*key)).cstr(column).u32(*oid).i32(*typmod);
                    }
                    w.build()
                }),
            (any::<u32>(), name(), name()).prop_map(|(oid, namespace, type_name)| {
                Writer::tag(b'Y')
                    .u32(oid)
                    .cstr(&namespace)
                    .cstr(&type_name)
                    .build()
            }),
            (any::<u32>(), tuple()).prop_map(|(id, new)| write_tuple(
                Writer::tag(b'I').u32(id).u8(b'N'),
                &new
            )
            .build()),
            (
                any::<u32>(),
                prop::option::of((prop::sample::select(vec![b'K', b'O']), tuple())),
                tuple()
            )
                .prop_map(|(id, old, new)| {
                    let mut w = Writer::tag(b'U').u32(id);
                    if let Some((marker, old)) = old {
                        w = write_tuple(w.u8(marker), &old);
                    }
                    write_tuple(w.u8(b'N'), &new).build()
                }),
            (
                any::<u32>(),
                prop::sample::select(vec![b'K', b'O']),
                tuple()
            )
                .prop_map(|(id, marker, old)| write_tuple(
                    Writer::tag(b'D').u32(id).u8(marker),
                    &old
                )
                .build()),
            (0u8..4, prop::collection::vec(any::<u32>(), 0..5)).prop_map(|(options, ids)| {
                let mut w = Writer::tag(b'T').i32(len32_count(&ids)).u8(options);
                for id in ids {
                    w = w.u32(id);
                }
                w.build()
            }),
            (
                any::<bool>(),
                any::<u64>(),
                name(),
                prop::collection::vec(any::<u8>(), 0..32)
            )
                .prop_map(|(transactional, lsn, prefix, content)| {
                    Writer::tag(b'M')
                        .u8(u8::from(transactional))
                        .u64(lsn)
                        .cstr(&prefix)
                        .i32(len32(&content))
                        .raw(&content)
                        .build()
                }),
        ]
    }

    fn len32_count(ids: &[u32]) -> i32 {
        i32::try_from(ids.len()).expect("small")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&buf);
        }

        #[test]
        fn random_bodies_after_a_valid_tag_never_panic(
            tag in prop::sample::select(b"BCORYIUDTM".to_vec()),
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut buf = vec![tag];
            buf.extend_from_slice(&body);
            let _ = decode(&buf);
        }

        #[test]
        fn valid_messages_round_trip(buf in valid_message()) {
            let message = decode(&buf).map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(encode(&message), buf);
        }

        #[test]
        fn every_strict_prefix_is_an_error(buf in valid_message()) {
            for len in 0..buf.len() {
                let prefix = buf.get(..len).unwrap_or_default();
                prop_assert!(decode(prefix).is_err(), "prefix of {} bytes decoded", len);
            }
        }

        #[test]
        fn trailing_garbage_is_an_error(
            buf in valid_message(),
            garbage in prop::collection::vec(any::<u8>(), 1..8),
        ) {
            let mut longer = buf;
            longer.extend_from_slice(&garbage);
            prop_assert!(decode(&longer).is_err());
        }
    }
}
