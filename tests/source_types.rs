//! Column values as the real server prints them decode to the values PostgreSQL means.
//!
//! Each case reads a SQL literal of its type in text format, as pgoutput sends it, under the
//! styles the walsender uses (DateStyle ISO, IntervalStyle postgres, bytea_output hex, the
//! server's TimeZone), decodes that text, and compares it with a value worked out another way:
//! the binary protocol, `extract(...)`, date arithmetic, or a hard-coded expectation.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, SimpleQueryMessage};
use tributary::event::{BaseType, Date, Numeric, PgType, Timestamp, TypeKind, Value};
use tributary::source::postgres::types::{
    DecodeOptions, decode_binary, decode_text, decodes_binary,
};

use crate::support::postgres::TestDatabase;

/// Resolves a SQL type name the way the source sees types: by oid, through domains, enums and
/// arrays, and extension types by name.
fn resolve_type<'a>(
    client: &'a Client,
    oid: u32,
) -> Pin<Box<dyn Future<Output = PgType> + Send + 'a>> {
    Box::pin(async move {
        let row = client
            .query_one(
                "SELECT typname::text, typtype::text, typelem, typbasetype, typcategory::text \
                   FROM pg_type WHERE oid = $1",
                &[&oid],
            )
            .await
            .expect("the type exists");
        let name: String = row.get(0);
        let typtype: String = row.get(1);
        let element: u32 = row.get(2);
        let domain_base: u32 = row.get(3);
        let category: String = row.get(4);
        let kind = if typtype == "d" {
            TypeKind::Domain(Box::new(resolve_type(client, domain_base).await))
        } else if typtype == "e" {
            let labels = client
                .query(
                    "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
                    &[&oid],
                )
                .await
                .expect("enum labels")
                .iter()
                .map(|row| row.get(0))
                .collect();
            TypeKind::Enum(labels)
        } else if category == "A" && element != 0 {
            TypeKind::Array(Box::new(resolve_type(client, element).await))
        } else {
            match BaseType::from_oid(oid).or_else(|| BaseType::from_extension_name(&name)) {
                Some(base) => TypeKind::Base(base),
                None => TypeKind::Unknown,
            }
        };
        PgType { oid, name, kind }
    })
}

/// A client with the walsender's output styles pinned, whatever the server's defaults.
struct Server<'a> {
    client: &'a Client,
}

impl Server<'_> {
    async fn set(&self, statement: &str) {
        self.client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }

    async fn pg_type(&self, sql_type: &str) -> PgType {
        let oid: u32 = self
            .client
            .query_one("SELECT $1::text::regtype::oid", &[&sql_type])
            .await
            .unwrap_or_else(|err| panic!("no type {sql_type}: {err}"))
            .get(0);
        resolve_type(self.client, oid).await
    }

    /// `SELECT <query>` as one value of the binary protocol.
    async fn value<T: FromSqlOwned>(&self, query: &str) -> T {
        self.client
            .query_one(&format!("SELECT {query}"), &[])
            .await
            .unwrap_or_else(|err| panic!("SELECT {query}: {err}"))
            .get(0)
    }

    /// What pgoutput would send for `literal` as `sql_type`: the type's output function, which
    /// is what the simple query protocol returns. (A `::text` cast is not always that: bool
    /// casts to `true`, bpchar drops its padding, inet shows `/32`.)
    async fn text(&self, literal: &str, sql_type: &str) -> String {
        let query = format!("SELECT ({literal})::{sql_type}");
        let messages = self
            .client
            .simple_query(&query)
            .await
            .unwrap_or_else(|err| panic!("{query}: {err}"));
        messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .flatten()
            .unwrap_or_else(|| panic!("{query} returned no value"))
    }

    /// The type's binary send form of `literal` as `sql_type`: what a binary COPY sends.
    async fn binary(&self, literal: &str, sql_type: &str) -> Vec<u8> {
        let query = format!("SELECT ({literal})::{sql_type}");
        let row = self
            .client
            .query_one(&query, &[])
            .await
            .unwrap_or_else(|err| panic!("{query}: {err}"));
        row.get::<_, SendForm>(0).0
    }

    /// Decodes the server's text for `literal` and checks it is `expected`, scale and all; so
    /// must its binary form be, where the type is read in binary (a snapshot's binary COPY).
    async fn check(&self, literal: &str, sql_type: &str, expected: Value) -> String {
        let text = self.text(literal, sql_type).await;
        let pg_type = self.pg_type(sql_type).await;
        let decoded = decode_text(&pg_type, -1, &text, &DecodeOptions::default())
            .unwrap_or_else(|err| panic!("{text:?} as {sql_type}: {err}"));
        assert!(
            identical(&decoded, &expected),
            "{literal}::{sql_type} printed as {text:?} decoded to {decoded:?}, expected {expected:?}"
        );
        if decodes_binary(&pg_type) {
            let bytes = self.binary(literal, sql_type).await;
            let from_binary = decode_binary(&pg_type, &bytes)
                .unwrap_or_else(|err| panic!("{literal}::{sql_type} in binary: {err}"));
            assert!(
                identical(&from_binary, &expected),
                "{literal}::{sql_type} sent as {bytes:02x?} decoded to {from_binary:?}, expected {expected:?}"
            );
        }
        text
    }
}

/// A value's bytes as the server sends them in binary, whatever its type.
struct SendForm(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for SendForm {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Equality that also compares numeric scales (BigDecimal's `==` ignores them) and treats NaN
/// as equal to itself.
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Numeric(Numeric::Finite(x)), Value::Numeric(Numeric::Finite(y))) => {
            x == y && x.fractional_digit_count() == y.fractional_digit_count()
        }
        (Value::Float32(x), Value::Float32(y)) => x.to_bits() == y.to_bits(),
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len()
                && xs.iter().zip(ys).all(|pair| match pair {
                    (Some(x), Some(y)) => identical(x, y),
                    (None, None) => true,
                    _ => false,
                })
        }
        _ => a == b,
    }
}

fn decimal(text: &str) -> Value {
    Value::Numeric(Numeric::Finite(
        BigDecimal::from_str(text).expect("a decimal"),
    ))
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

#[tokio::test]
async fn server_text_output_decodes_to_the_values_postgres_means() {
    let db = TestDatabase::create().await;
    let server = Server {
        client: db.client(),
    };
    server
        .set(
            "SET DateStyle = ISO; SET IntervalStyle = postgres; SET bytea_output = hex;
             SET TimeZone = 'UTC';
             CREATE EXTENSION IF NOT EXISTS hstore;
             CREATE EXTENSION IF NOT EXISTS citext;
             CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
             CREATE DOMAIN price AS numeric(10,2);",
        )
        .await;

    check_numbers(&server).await;
    check_text_like(&server).await;
    check_binary_and_bits(&server).await;
    check_dates_and_times(&server).await;
    for zone in ["UTC", "Asia/Kolkata", "America/St_Johns"] {
        server.set(&format!("SET TimeZone = '{zone}'")).await;
        check_timestamptz(&server, zone).await;
    }
    server.set("SET TimeZone = 'UTC'").await;
    check_intervals(&server).await;
    check_hstore(&server).await;
    check_enum_and_domain(&server).await;
    check_arrays(&server).await;
}

async fn check_numbers(server: &Server<'_>) {
    for literal in ["'t'", "'false'"] {
        let expected = server.value::<bool>(&format!("{literal}::bool")).await;
        server.check(literal, "bool", Value::Bool(expected)).await;
    }
    for literal in ["'-32768'", "'32767'", "'0'"] {
        let expected = server.value::<i16>(&format!("{literal}::int2")).await;
        server.check(literal, "int2", Value::Int16(expected)).await;
    }
    for literal in ["'-2147483648'", "'2147483647'"] {
        let expected = server.value::<i32>(&format!("{literal}::int4")).await;
        server.check(literal, "int4", Value::Int32(expected)).await;
    }
    for literal in ["'-9223372036854775808'", "'9223372036854775807'"] {
        let expected = server.value::<i64>(&format!("{literal}::int8")).await;
        server.check(literal, "int8", Value::Int64(expected)).await;
    }
    for literal in ["'4294967295'", "'0'"] {
        let expected = server.value::<u32>(&format!("{literal}::oid")).await;
        server
            .check(literal, "oid", Value::Int64(i64::from(expected)))
            .await;
    }
    for literal in [
        "'1.5'",
        "'0.1'",
        "'3.4028235e38'",
        "'-1e-45'",
        "'NaN'",
        "'Infinity'",
        "'-Infinity'",
    ] {
        let expected = server.value::<f32>(&format!("{literal}::float4")).await;
        server
            .check(literal, "float4", Value::Float32(expected))
            .await;
    }
    for literal in [
        "'0.1'",
        "pi()",
        "'1e308'",
        "'5e-324'",
        "'-0'",
        "'NaN'",
        "'Infinity'",
        "'-Infinity'",
    ] {
        let expected = server.value::<f64>(&format!("{literal}::float8")).await;
        server
            .check(literal, "float8", Value::Float64(expected))
            .await;
    }

    // numeric: the value written out by hand, the scale from scale().
    for (literal, expected) in [
        ("'1.50'", "1.50"),
        ("'-0.001'", "-0.001"),
        ("'0'", "0"),
        ("'1e-20'", "0.00000000000000000001"),
        ("'1e20'", "100000000000000000000"),
        (
            "'123456789012345678901234567890.123456789'",
            "123456789012345678901234567890.123456789",
        ),
        ("round(2.5::numeric, 3)", "2.500"),
    ] {
        let scale: i32 = server.value(&format!("scale(({literal})::numeric)")).await;
        let Value::Numeric(Numeric::Finite(value)) = decimal(expected) else {
            unreachable!()
        };
        assert_eq!(
            value.fractional_digit_count(),
            i64::from(scale),
            "{literal}"
        );
        server.check(literal, "numeric", decimal(expected)).await;
    }
    for (literal, expected) in [
        ("'NaN'", Numeric::NaN),
        ("'Infinity'", Numeric::PositiveInfinity),
        ("'-Infinity'", Numeric::NegativeInfinity),
    ] {
        server
            .check(literal, "numeric", Value::Numeric(expected))
            .await;
    }

    // money: whatever lc_monetary prints, the amount is the one money::numeric gives.
    for literal in [
        "'12.34'",
        "'-12.34'",
        "'-1234567.891'",
        "'0'",
        "'92233720368547758.07'",
        "'-92233720368547758.08'",
    ] {
        let amount: String = server
            .value(&format!("(({literal})::money)::numeric::text"))
            .await;
        let text = server.check(literal, "money", decimal(&amount)).await;
        assert!(text.contains('$'), "money printed as {text:?}");
    }
    let negative = server.text("'-1234.5'", "money").await;
    assert_eq!(negative, "-$1,234.50", "the server's money style changed");
}

async fn check_text_like(server: &Server<'_>) {
    for (literal, sql_type, expected) in [
        ("'héllo \"wörld\"'", "text", "héllo \"wörld\""),
        ("''", "text", ""),
        ("'ab'", "varchar(10)", "ab"),
        ("'ab'", "char(5)", "ab   "),
        ("'pg_class'", "name", "pg_class"),
        ("'x'", "\"char\"", "x"),
        ("'MiXeD'", "citext", "MiXeD"),
        (
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            "uuid",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
        (
            "'{\"b\":1,  \"a\":[1,2]}'",
            "json",
            "{\"b\":1,  \"a\":[1,2]}",
        ),
        (
            "'{\"b\":1,  \"a\":[1,2], \"c\": null}'",
            "jsonb",
            "{\"a\": [1, 2], \"b\": 1, \"c\": null}",
        ),
        ("'<a>b</a>'", "xml", "<a>b</a>"),
        ("'192.168.0.1/24'", "inet", "192.168.0.1/24"),
        ("'::1'", "inet", "::1"),
        ("'10.0.0.0/8'", "cidr", "10.0.0.0/8"),
        ("'08-00-2B-01-02-03'", "macaddr", "08:00:2b:01:02:03"),
        (
            "'08:00:2b:01:02:03:04:05'",
            "macaddr8",
            "08:00:2b:01:02:03:04:05",
        ),
        ("'a fat cat sat'", "tsvector", "'a' 'cat' 'fat' 'sat'"),
        // A type tributary does not know keeps its text.
        ("'(1,2)'", "point", "(1,2)"),
        ("'[1,5)'", "int4range", "[1,5)"),
    ] {
        server.check(literal, sql_type, text(expected)).await;
    }
    assert_eq!(server.pg_type("point").await.kind, TypeKind::Unknown);
    assert_eq!(
        server.pg_type("citext").await.kind,
        TypeKind::Base(BaseType::Text)
    );
}

async fn check_binary_and_bits(server: &Server<'_>) {
    for literal in ["'\\x0102ff'", "''", "'abc'", "decode('00ff80', 'hex')"] {
        let expected: Vec<u8> = server.value(&format!("({literal})::bytea")).await;
        server.check(literal, "bytea", Value::Bytes(expected)).await;
    }
    server.set("SET bytea_output = escape").await;
    let escaped = server.text("'\\x0102ff'", "bytea").await;
    let pg_type = server.pg_type("bytea").await;
    let err = decode_text(&pg_type, -1, &escaped, &DecodeOptions::default())
        .expect_err("escape-format bytea is refused");
    assert!(err.to_string().contains("bytea_output = hex"), "{err}");
    server.set("SET bytea_output = hex").await;

    for (literal, sql_type, expected) in [
        ("B'0101'", "bit(4)", "0101"),
        ("B'1'", "bit(3)", "100"),
        ("B''", "varbit", ""),
        ("B'10110'", "varbit(8)", "10110"),
    ] {
        server
            .check(literal, sql_type, Value::Bits(expected.to_owned()))
            .await;
    }
}

async fn check_dates_and_times(server: &Server<'_>) {
    for literal in [
        "'2024-02-29'",
        "'1970-01-01'",
        "'1969-12-31'",
        "'1582-10-10'",
        "'0044-03-15 BC'",
        "'0001-01-01 BC'",
        "'4713-01-01 BC'",
        "'5874897-12-31'",
    ] {
        let days: i32 = server
            .value(&format!("(({literal})::date - '1970-01-01'::date)"))
            .await;
        server
            .check(literal, "date", Value::Date(Date::Days(days)))
            .await;
    }
    server
        .check("'infinity'", "date", Value::Date(Date::PositiveInfinity))
        .await;
    server
        .check("'-infinity'", "date", Value::Date(Date::NegativeInfinity))
        .await;

    for literal in [
        "'00:00'",
        "'13:45:00.5'",
        "'23:59:59.999999'",
        "'24:00:00'",
        "'12:00:00.123'",
    ] {
        let micros: i64 = server
            .value(&format!(
                "(extract(epoch from ({literal})::time) * 1000000)::bigint"
            ))
            .await;
        server.check(literal, "time", Value::Time(micros)).await;
    }

    for literal in [
        "'13:45:00.5+05:30'",
        "'13:45:00+05:30:15'",
        "'00:00-08'",
        "'24:00:00-15:59'",
        "'12:00:00.000001+14'",
    ] {
        let micros: i64 = server
            .value(&format!(
                "(extract(epoch from ({literal})::timetz::time) * 1000000)::bigint"
            ))
            .await;
        let offset_seconds: i32 = server
            .value(&format!("extract(timezone from ({literal})::timetz)::int"))
            .await;
        server
            .check(
                literal,
                "timetz",
                Value::TimeTz {
                    micros,
                    offset_seconds,
                },
            )
            .await;
    }

    for literal in [
        "'2024-02-29 13:45:00.123456'",
        "'1969-12-31 23:59:59.999999'",
        "'0044-03-15 12:00 BC'",
        "'4713-01-01 00:00 BC'",
        "'294247-01-10 04:00:54.775807'",
    ] {
        // Days and time of day apart: extract(epoch) goes through a float this far out.
        let micros: i64 = server
            .value(&format!(
                "(({literal})::timestamp::date - '1970-01-01'::date)::bigint * 86400000000
                   + (extract(epoch from ({literal})::timestamp::time) * 1000000)::bigint"
            ))
            .await;
        server
            .check(
                literal,
                "timestamp(6)",
                Value::Timestamp(Timestamp::Micros(micros)),
            )
            .await;
    }
    server
        .check(
            "'2024-02-29 13:45:00.123456'",
            "timestamp(0)",
            Value::Timestamp(Timestamp::Micros(1_709_214_300_000_000)),
        )
        .await;
    server
        .check(
            "'infinity'",
            "timestamp",
            Value::Timestamp(Timestamp::PositiveInfinity),
        )
        .await;
    server
        .check(
            "'-infinity'",
            "timestamp",
            Value::Timestamp(Timestamp::NegativeInfinity),
        )
        .await;
}

/// Under `zone`, printed with that zone's offset (historical ones have seconds).
async fn check_timestamptz(server: &Server<'_>, zone: &str) {
    let mut offsets = Vec::new();
    for literal in [
        "'2024-02-29 13:45:00.123456+01'",
        "'2024-07-01 12:00:00+00'",
        "'1970-01-01 00:00:00+00'",
        "'1800-01-01 00:00:00+00'",
        "'1900-01-01 00:00:00+00'",
        "'0044-03-15 12:00:00+00 BC'",
        "'2024-03-10 05:30:00.5-03:30'",
    ] {
        let micros: i64 = server
            .value(&format!(
                "(extract(epoch from ({literal})::timestamptz) * 1000000)::bigint"
            ))
            .await;
        let printed = server
            .check(
                literal,
                "timestamptz",
                Value::TimestampTz(Timestamp::Micros(micros)),
            )
            .await;
        offsets.push(printed);
    }
    server
        .check(
            "'infinity'",
            "timestamptz",
            Value::TimestampTz(Timestamp::PositiveInfinity),
        )
        .await;
    server
        .check(
            "'-infinity'",
            "timestamptz",
            Value::TimestampTz(Timestamp::NegativeInfinity),
        )
        .await;
    // The cases exercise what they claim: offsets east, west, with minutes and with seconds.
    let expected_offsets: &[&str] = match zone {
        "Asia/Kolkata" => &["+05:30", "+05:21:10"],
        "America/St_Johns" => &["-03:30", "-02:30", "-03:30:52"],
        _ => &["+00"],
    };
    for offset in expected_offsets {
        assert!(
            offsets.iter().any(|printed| printed.contains(offset)),
            "no {offset} offset printed under {zone}: {offsets:?}"
        );
    }
}

async fn check_intervals(server: &Server<'_>) {
    for literal in [
        "'1 year 2 mons 3 days 04:05:06.789'",
        "'-1 days +2 hours'",
        "'3 mons -1 days'",
        "'-1.5 seconds'",
        "'0'",
        "'100 hours'",
        "'-178956970 years -8 months'",
        "'1 day -1 second'",
        "'1.5 years'",
        "'-3 days -4 hours'",
        "'2147483647 hours 59 minutes 59.999999 seconds'",
        "'1 year 1 microsecond'",
    ] {
        let (months, days, micros): (i32, i32, i64) = {
            let row = server
                .client
                .query_one(
                    &format!(
                        "WITH i(v) AS (SELECT ({literal})::interval)
                         SELECT (extract(year from v) * 12 + extract(month from v))::int,
                                extract(day from v)::int,
                                ((extract(hour from v) * 3600 + extract(minute from v) * 60)
                                  * 1000000 + extract(microseconds from v))::bigint
                           FROM i"
                    ),
                    &[],
                )
                .await
                .expect("interval parts");
            (row.get(0), row.get(1), row.get(2))
        };
        server
            .check(
                literal,
                "interval",
                Value::Interval {
                    months,
                    days,
                    micros,
                },
            )
            .await;
    }
    // And the literal forms the brief names, against hand-written values.
    server
        .check(
            "'-1 days +02:00:00'",
            "interval",
            Value::Interval {
                months: 0,
                days: -1,
                micros: 7_200_000_000,
            },
        )
        .await;
    server
        .check(
            "'-00:00:01.5'",
            "interval",
            Value::Interval {
                months: 0,
                days: 0,
                micros: -1_500_000,
            },
        )
        .await;
}

async fn check_hstore(server: &Server<'_>) {
    for literal in [
        r#"'"a"=>"1", "b"=>NULL'"#,
        r#"'"q\"uote"=>"back\\slash", "NULL"=>"NULL", ""=>"", "sp ace"=>"=>,"'"#,
        "''",
        r#"'"ü"=>"ñ"'"#,
    ] {
        let pairs: Vec<(String, Option<String>)> = server
            .client
            .query(
                &format!("SELECT key, value FROM each(({literal})::hstore)"),
                &[],
            )
            .await
            .expect("hstore pairs")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert!(literal == "''" || !pairs.is_empty(), "{literal} has pairs");
        server.check(literal, "hstore", Value::Hstore(pairs)).await;
    }
}

async fn check_enum_and_domain(server: &Server<'_>) {
    assert!(matches!(
        server.pg_type("mood").await.kind,
        TypeKind::Enum(labels) if labels == ["sad", "ok", "happy"]
    ));
    server.check("'happy'", "mood", text("happy")).await;

    let price = server.pg_type("price").await;
    assert!(
        matches!(&price.kind, TypeKind::Domain(base) if base.kind == TypeKind::Base(BaseType::Numeric)),
        "{price:?}"
    );
    server.check("'12.5'", "price", decimal("12.50")).await;
    server.check("'-0.005'", "price", decimal("-0.01")).await;
}

async fn check_arrays(server: &Server<'_>) {
    for literal in [
        "'{1,2,NULL}'",
        "'{}'",
        "'[0:1]={1,2}'",
        "ARRAY[-2147483648, 2147483647]",
    ] {
        let expected: Vec<Option<i32>> = server.value(&format!("({literal})::int4[]")).await;
        let expected = expected.into_iter().map(|v| v.map(Value::Int32)).collect();
        let printed = server
            .check(literal, "int4[]", Value::Array(expected))
            .await;
        if literal.starts_with("'[0:1]") {
            assert!(printed.starts_with("[0:1]="), "{printed}");
        }
    }
    let int = |v| Some(Value::Int32(v));
    server
        .check(
            "'{{1,2},{3,NULL}}'",
            "int4[]",
            Value::Array(vec![
                Some(Value::Array(vec![int(1), int(2)])),
                Some(Value::Array(vec![int(3), None])),
            ]),
        )
        .await;

    let strings =
        r#"ARRAY['a b', 'c"d', NULL, 'NULL', '', 'back\slash', '{x}', 'x,y', ' x ', 'ü']"#;
    let expected: Vec<Option<String>> = server.value(&format!("({strings})::text[]")).await;
    server
        .check(
            strings,
            "text[]",
            Value::Array(expected.into_iter().map(|v| v.map(Value::Text)).collect()),
        )
        .await;

    server.set("SET TimeZone = 'America/St_Johns'").await;
    let stamps = "ARRAY['2024-02-29 13:45:00.5+01', NULL, '1800-01-01 00:00+00']";
    let expected: Vec<Option<i64>> = server
        .value(&format!(
            "(SELECT array_agg((extract(epoch from t) * 1000000)::bigint ORDER BY n)
                FROM unnest(({stamps})::timestamptz[]) WITH ORDINALITY AS u(t, n))"
        ))
        .await;
    server
        .check(
            stamps,
            "timestamptz[]",
            Value::Array(
                expected
                    .into_iter()
                    .map(|v| v.map(|micros| Value::TimestampTz(Timestamp::Micros(micros))))
                    .collect(),
            ),
        )
        .await;
    server.set("SET TimeZone = 'UTC'").await;

    server
        .check(
            "'{1.50,NaN,-0.001,NULL,Infinity}'",
            "numeric[]",
            Value::Array(vec![
                Some(decimal("1.50")),
                Some(Value::Numeric(Numeric::NaN)),
                Some(decimal("-0.001")),
                None,
                Some(Value::Numeric(Numeric::PositiveInfinity)),
            ]),
        )
        .await;
    server
        .check(
            "'{1.5,2}'",
            "price[]",
            Value::Array(vec![Some(decimal("1.50")), Some(decimal("2.00"))]),
        )
        .await;
    server
        .check(
            "'{happy,NULL,sad}'",
            "mood[]",
            Value::Array(vec![Some(text("happy")), None, Some(text("sad"))]),
        )
        .await;
    server
        .check(
            r#"ARRAY['"a"=>"1"'::hstore, NULL]"#,
            "hstore[]",
            Value::Array(vec![
                Some(Value::Hstore(vec![("a".into(), Some("1".into()))])),
                None,
            ]),
        )
        .await;
}
