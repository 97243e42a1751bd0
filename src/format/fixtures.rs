//! Test fixtures shared by the formats' unit tests: a table with one column of every mapped
//! type, a row for it, and the source block of its events.

use std::{str::FromStr, sync::Arc};

use bigdecimal::BigDecimal;

use crate::event::{
    BaseType, Column, Date, Datum, Lsn, Numeric, Op, PgType, ReplicaIdentity, Row, RowChange,
    SnapshotMarker, SourceInfo, TableId, TableSchema, Timestamp, TypeKind, Value,
};

pub(crate) const PREFIX: &str = "dbserver1";
/// 2024-02-29T12:45:00.123456Z
pub(crate) const COMMIT_MICROS: i64 = 1_709_210_700_123_456;
pub(crate) const PROCESSED_MICROS: i64 = 1_709_210_701_000_001;

pub(crate) fn base(oid: u32, name: &str, base: BaseType) -> PgType {
    PgType {
        oid,
        name: name.into(),
        kind: TypeKind::Base(base),
    }
}

pub(crate) fn array(oid: u32, name: &str, element: PgType) -> PgType {
    PgType {
        oid,
        name: name.into(),
        kind: TypeKind::Array(Box::new(element)),
    }
}

pub(crate) fn column(name: &str, pg_type: PgType, type_modifier: i32) -> Column {
    Column {
        name: name.into(),
        pg_type,
        type_modifier,
        part_of_key: false,
        optional: true,
    }
}

pub(crate) fn mood() -> PgType {
    PgType {
        oid: 16_400,
        name: "mood".into(),
        kind: TypeKind::Enum(vec!["sad".into(), "ok".into(), "happy".into()]),
    }
}

/// numeric(p,s)'s atttypmod.
pub(crate) fn numeric_typmod(precision: i32, scale: i32) -> i32 {
    ((precision << 16) | scale) + 4
}

pub(crate) fn all_types_table(replica_identity: ReplicaIdentity) -> Arc<TableSchema> {
    let int4 = || base(23, "int4", BaseType::Int4);
    let text = || base(25, "text", BaseType::Text);
    let mut id = column("id", int4(), -1);
    id.part_of_key = true;
    id.optional = false;
    let mut name = column("name", text(), -1);
    name.optional = false;
    Arc::new(TableSchema {
        relation_id: 16_385,
        id: TableId::new("public", "all_types"),
        replica_identity,
        columns: vec![
            id,
            name,
            column(
                "price",
                base(1700, "numeric", BaseType::Numeric),
                numeric_typmod(10, 2),
            ),
            column("amount", base(1700, "numeric", BaseType::Numeric), -1),
            column(
                "created_at",
                base(1184, "timestamptz", BaseType::TimestampTz),
                -1,
            ),
            column("ts3", base(1114, "timestamp", BaseType::Timestamp), 3),
            column("ts6", base(1114, "timestamp", BaseType::Timestamp), 6),
            column("birthday", base(1082, "date", BaseType::Date), -1),
            column("alarm", base(1083, "time", BaseType::Time), -1),
            column("alarm_tz", base(1266, "timetz", BaseType::TimeTz), -1),
            column("span", base(1186, "interval", BaseType::Interval), -1),
            column("blob", base(17, "bytea", BaseType::Bytea), -1),
            column("uid", base(2950, "uuid", BaseType::Uuid), -1),
            column("doc", base(3802, "jsonb", BaseType::Jsonb), -1),
            column("mood", mood(), -1),
            column("flag", base(16, "bool", BaseType::Bool), -1),
            column("bits", base(1560, "bit", BaseType::Bit), 3),
            column("ints", array(1007, "_int4", int4()), -1),
            column("tags", array(1009, "_text", text()), -1),
            column("attrs", base(16_500, "hstore", BaseType::Hstore), -1),
            column("cash", base(790, "money", BaseType::Money), -1),
        ],
    })
}

pub(crate) fn numeric(text: &str) -> Datum {
    Datum::Value(Value::Numeric(Numeric::Finite(
        BigDecimal::from_str(text).expect("valid decimal"),
    )))
}

pub(crate) fn text(value: &str) -> Datum {
    Datum::Value(Value::Text(value.into()))
}

pub(crate) fn full_row() -> Row {
    Row(vec![
        Datum::Value(Value::Int32(1)),
        text("Anne"),
        numeric("12.30"),
        numeric("3.14159"),
        Datum::Value(Value::TimestampTz(Timestamp::Micros(COMMIT_MICROS))),
        Datum::Value(Value::Timestamp(Timestamp::Micros(1_709_210_700_123_000))),
        Datum::Value(Value::Timestamp(Timestamp::Micros(COMMIT_MICROS))),
        Datum::Value(Value::Date(Date::Days(19_782))),
        // 08:30:15.5
        Datum::Value(Value::Time(30_615_500_000)),
        // 08:30:00+02
        Datum::Value(Value::TimeTz {
            micros: 30_600_000_000,
            offset_seconds: 7200,
        }),
        // 1 year 2 mons 3 days 04:05:06.78
        Datum::Value(Value::Interval {
            months: 14,
            days: 3,
            micros: 14_706_780_000,
        }),
        Datum::Value(Value::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF])),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text(r#"{"a": 1}"#),
        text("happy"),
        Datum::Value(Value::Bool(true)),
        Datum::Value(Value::Bits("101".into())),
        Datum::Value(Value::Array(vec![
            Some(Value::Int32(1)),
            None,
            Some(Value::Int32(3)),
        ])),
        Datum::Value(Value::Array(vec![
            Some(Value::Text("a".into())),
            Some(Value::Text("b".into())),
        ])),
        Datum::Value(Value::Hstore(vec![
            ("k".into(), Some("v".into())),
            ("n".into(), None),
        ])),
        numeric("12.34"),
    ])
}

pub(crate) fn source_info() -> SourceInfo {
    SourceInfo {
        lsn: Lsn(0x16_B374_D848),
        sequence: (Some(Lsn(97_500_058_000)), Some(Lsn(0x16_B374_D848))),
        tx_id: Some(571),
        ts_micros: COMMIT_MICROS,
        snapshot: SnapshotMarker::No,
    }
}

pub(crate) fn change(
    table: &Arc<TableSchema>,
    op: Op,
    before: Option<Row>,
    after: Option<Row>,
) -> RowChange {
    RowChange {
        table: Arc::clone(table),
        op,
        before,
        after,
        source: source_info(),
    }
}
