use std::fmt;

/// A table's name: schema and table, as PostgreSQL spells them (case and all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    pub schema: String,
    pub table: String,
}

impl TableId {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableId {
    /// `schema.table`, the form Debezium's include lists and topic names use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Which old values PostgreSQL logs for UPDATE and DELETE (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: the whole row.
    Full,
    /// `i`: the columns of one unique index.
    Index,
}

impl ReplicaIdentity {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            b'd' => Some(Self::Default),
            b'n' => Some(Self::Nothing),
            b'f' => Some(Self::Full),
            b'i' => Some(Self::Index),
            _ => None,
        }
    }
}

/// A PostgreSQL type as the decoder and the formats need it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgType {
    pub oid: u32,
    /// `pg_type.typname`, e.g. `int4`, `_int4`, `mood`, `hstore`.
    pub name: String,
    pub kind: TypeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    Base(BaseType),
    /// An array whose elements have the given type.
    Array(Box<PgType>),
    /// An enum with its labels in `enumsortorder` order.
    Enum(Vec<String>),
    /// A domain over the given type (decoded and rendered as that type).
    Domain(Box<PgType>),
    /// A type tributary does not know; its values are kept as text.
    Unknown,
}

/// The built-in (and well-known extension) types that have a typed decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseType {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    /// text, varchar, bpchar, name, "char", citext.
    Text,
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Xml,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Inet,
    Cidr,
    MacAddr,
    MacAddr8,
    Bit,
    VarBit,
    Hstore,
    TsVector,
}

impl BaseType {
    /// The base type of a built-in type oid (`pg_type.h`); extension types such as hstore have
    /// no fixed oid and are recognised by name.
    pub fn from_oid(oid: u32) -> Option<Self> {
        Some(match oid {
            16 => Self::Bool,
            21 => Self::Int2,
            23 => Self::Int4,
            20 => Self::Int8,
            26 => Self::Oid,
            700 => Self::Float4,
            701 => Self::Float8,
            1700 => Self::Numeric,
            790 => Self::Money,
            25 | 1043 | 1042 | 19 | 18 => Self::Text,
            17 => Self::Bytea,
            2950 => Self::Uuid,
            114 => Self::Json,
            3802 => Self::Jsonb,
            142 => Self::Xml,
            1082 => Self::Date,
            1083 => Self::Time,
            1266 => Self::TimeTz,
            1114 => Self::Timestamp,
            1184 => Self::TimestampTz,
            1186 => Self::Interval,
            869 => Self::Inet,
            650 => Self::Cidr,
            829 => Self::MacAddr,
            774 => Self::MacAddr8,
            1560 => Self::Bit,
            1562 => Self::VarBit,
            3614 => Self::TsVector,
            _ => return None,
        })
    }

    /// Extension types known by name.
    pub fn from_extension_name(name: &str) -> Option<Self> {
        match name {
            "hstore" => Some(Self::Hstore),
            "citext" => Some(Self::Text),
            _ => None,
        }
    }
}

/// One column of a captured table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub pg_type: PgType,
    /// `atttypmod`: length, precision and scale, time precision; -1 when none.
    pub type_modifier: i32,
    /// Part of the replica identity (the primary key under DEFAULT).
    pub part_of_key: bool,
    /// May be NULL (`NOT attnotnull`).
    pub optional: bool,
}

impl Column {
    /// numeric(p,s): `(precision, scale)`; None when unconstrained.
    pub fn numeric_precision_scale(&self) -> Option<(u32, u32)> {
        if self.type_modifier < 4 {
            return None;
        }
        let packed = (self.type_modifier - 4) as u32;
        Some(((packed >> 16) & 0xFFFF, packed & 0xFFFF))
    }

    /// time/timestamp(p): the fractional-second precision; None when unconstrained (6).
    pub fn time_precision(&self) -> Option<u32> {
        (self.type_modifier >= 0).then_some(self.type_modifier as u32)
    }

    /// bit(n), varchar(n), bpchar(n): the declared length.
    pub fn length(&self) -> Option<u32> {
        match &self.pg_type.kind {
            TypeKind::Base(BaseType::Bit | BaseType::VarBit) => {
                (self.type_modifier >= 0).then_some(self.type_modifier as u32)
            }
            // varchar and bpchar store length + 4 (VARHDRSZ).
            _ => (self.type_modifier >= 4).then_some((self.type_modifier - 4) as u32),
        }
    }
}

/// A captured table as the change stream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The table's oid (pgoutput's relation id).
    pub relation_id: u32,
    pub id: TableId,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
}

impl TableSchema {
    /// The key columns, in table order.
    pub fn key_columns(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.part_of_key)
    }

    pub fn has_key(&self) -> bool {
        self.columns.iter().any(|c| c.part_of_key)
    }
}
