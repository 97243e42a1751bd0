use bigdecimal::BigDecimal;

/// A decoded column value, faithful to PostgreSQL. How it is rendered (Debezium's modes for
/// decimals, times and binary data) is the format's business, not the value's.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int16(i16),
    Int32(i32),
    /// int8, and oid widened.
    Int64(i64),
    Float32(f32),
    Float64(f64),
    /// numeric, and money (parsed from its text form, at `money.fraction.digits` scale).
    Numeric(Numeric),
    /// Every type whose natural form is text: text, varchar, bpchar, name, char, uuid, json,
    /// jsonb, xml, enums, inet, cidr, macaddr, macaddr8, tsvector, ranges; and, as the fallback,
    /// any type tributary does not know (kept in PostgreSQL's text form).
    Text(String),
    Bytes(Vec<u8>),
    /// bit and varbit, as the string of `0` and `1` that PostgreSQL prints.
    Bits(String),
    Date(Date),
    /// time: microseconds past midnight.
    Time(i64),
    /// timetz: local microseconds past midnight and the zone's offset east of UTC in seconds.
    TimeTz {
        micros: i64,
        offset_seconds: i32,
    },
    /// timestamp without time zone: microseconds since 1970-01-01 00:00 (no zone).
    Timestamp(Timestamp),
    /// timestamptz: microseconds since 1970-01-01 00:00 UTC.
    TimestampTz(Timestamp),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    /// hstore: pairs in PostgreSQL's order; a value may be NULL.
    Hstore(Vec<(String, Option<String>)>),
    /// A one-dimensional array (a multi-dimensional one nests arrays); elements may be NULL.
    Array(Vec<Option<Value>>),
}

/// numeric: arbitrary precision, or one of its special values.
#[derive(Debug, Clone, PartialEq)]
pub enum Numeric {
    Finite(BigDecimal),
    NaN,
    PositiveInfinity,
    NegativeInfinity,
}

/// date: days since 1970-01-01, or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    Days(i32),
    PositiveInfinity,
    NegativeInfinity,
}

/// timestamp / timestamptz: microseconds since 1970-01-01 00:00 (UTC for timestamptz), or an
/// infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    Micros(i64),
    PositiveInfinity,
    NegativeInfinity,
}
