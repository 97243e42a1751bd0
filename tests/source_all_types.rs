//! Every supported column type through the whole source: real rows in PostgreSQL, the records a
//! read_committed consumer gets from Kafka. The expected documents are written by hand from
//! Debezium's rules (PostgresValueConverter under the default and the alternative modes, Kafka
//! Connect's JsonConverter), not produced by tributary's encoder.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    kafka::{Collector, Isolation, Record},
    source::{InProcessSource, SourceFixture},
};

const WAIT: Duration = Duration::from_secs(30);

/// One column of each type, plus a composite column Debezium would drop (its type has no mapping and
/// `include.unknown.datatypes` is false).
pub(crate) const SCHEMA: &str = "
    CREATE EXTENSION hstore;
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN price AS numeric(10,2);
    CREATE TYPE pair AS (a int, b text);
    CREATE TABLE all_types (
        id int PRIMARY KEY,
        c_bool bool,
        c_int2 int2,
        c_int4 int4,
        c_int8 int8,
        c_float4 float4,
        c_float8 float8,
        c_numeric numeric(10,2),
        c_numeric_any numeric,
        c_money money,
        c_text text,
        c_varchar varchar(20),
        c_char char(5),
        c_name name,
        c_bytea bytea,
        c_uuid uuid,
        c_json json,
        c_jsonb jsonb,
        c_date date,
        c_time time,
        c_time3 time(3),
        c_timetz timetz,
        c_timestamp timestamp,
        c_timestamp3 timestamp(3),
        c_timestamptz timestamptz,
        c_interval interval,
        c_mood mood,
        c_int4_array int4[],
        c_text_array text[],
        c_timestamptz_array timestamptz[],
        c_inet inet,
        c_cidr cidr,
        c_macaddr macaddr,
        c_bit1 bit(1),
        c_bit3 bit(3),
        c_varbit varbit,
        c_oid oid,
        c_xml xml,
        c_hstore hstore,
        c_tsvector tsvector,
        c_price price,
        c_pair pair
    );";

/// A row with a chosen value in every column.
pub(crate) const FULL_ROW: &str = r#"
    INSERT INTO all_types VALUES (
        1, true, -32768, 2147483647, -9223372036854775808, 1.1, 6.02214076e23,
        12.50, 1.500, 1234.56,
        'héllo "quoted"', 'varchar', 'ab', 'a_name',
        '\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2]}',
        '2024-02-29', '13:14:15.123456', '13:14:15.123', '13:14:15.5+02',
        '2024-02-29 12:45:00.123456', '2024-02-29 12:45:00.123', '2024-02-29 14:45:00.123456+02',
        '1 year 2 mons 3 days 04:05:06.789', 'happy',
        '{1,NULL,3}', '{"a b","c,d",NULL}', '{"2024-02-29 12:45:00.654321+00"}',
        '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
        B'1', B'110', B'1010000000001', 4294967295,
        '<a>1</a>', 'a=>1, b=>NULL', 'the quick fox', 12.50, ROW(1, 'x')
    )"#;

/// Edge values in a few columns, NULL in the rest.
pub(crate) const EDGE_ROW: &str = "
    INSERT INTO all_types (id, c_numeric, c_numeric_any, c_date, c_timestamp, c_timestamp3,
                           c_timestamptz)
    VALUES (2, -12.50, -1000, '1969-12-31', 'infinity', '1969-12-31 23:59:59.999', 'infinity')";

/// The `after` of FULL_ROW under the default modes.
pub(crate) fn full_row_after() -> Value {
    let mut after = json!({
        "id": 1,
        "c_bool": true,
        "c_int2": -32768,
        "c_int4": 2147483647,
        "c_int8": i64::MIN,
        // FLOAT32 printed as the shortest decimal of the float, not of its widened double.
        "c_float4": 1.1,
        "c_float8": 6.02214076e23,
        // Decimal: base64 of the unscaled value's two's-complement bytes, 1250 = 0x04E2.
        "c_numeric": "BOI=",
        // VariableScaleDecimal: trailing zeros stripped, 1.500 -> 15 at scale 1.
        "c_numeric_any": {"scale": 1, "value": "Dw=="},
        // money: Decimal at money.fraction.digits = 2, 123456 = 0x01E240.
        "c_money": "AeJA",
        "c_text": "héllo \"quoted\"",
        "c_varchar": "varchar",
        // char(n) keeps PostgreSQL's padding.
        "c_char": "ab   ",
        "c_name": "a_name",
        "c_bytea": "3q2+7w==",
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        // json keeps the text as written; jsonb is PostgreSQL's normalised text.
        "c_json": "{\"b\": 1, \"a\": [1, 2]}",
        "c_jsonb": "{\"a\": [1, 2], \"b\": 1}",
        // Days since 1970-01-01.
        "c_date": 19782,
        // MicroTime: µs past midnight; Time (precision <= 3): ms.
        "c_time": 47_655_123_456_i64,
        "c_time3": 47_655_123,
        // ZonedTime: shifted to UTC.
        "c_timetz": "11:14:15.5Z",
        // MicroTimestamp / Timestamp: µs / ms since the epoch, no zone.
        "c_timestamp": 1_709_210_700_123_456_i64,
        "c_timestamp3": 1_709_210_700_123_i64,
        "c_timestamptz": "2024-02-29T12:45:00.123456Z",
        // MicroDuration: 14 months of 30.4375 days + 3 days + 4:05:06.789.
        "c_interval": 37_091_106_789_000_i64,
        "c_mood": "happy",
        "c_int4_array": [1, null, 3],
        "c_text_array": ["a b", "c,d", null],
        "c_timestamptz_array": ["2024-02-29T12:45:00.654321Z"],
        "c_inet": "192.168.0.1/24",
        "c_cidr": "10.0.0.0/8",
        "c_macaddr": "08:00:2b:01:02:03",
        // bit(1) is a BOOLEAN.
        "c_bit1": true,
        // Bits: little-endian bytes; B'110' sets bits 1 and 2 = 0x06.
        "c_bit3": "Bg==",
        // Bits 0, 10 and 12 set: 0x01, 0x14.
        "c_varbit": "ARQ=",
        "c_oid": 4_294_967_295_i64,
        "c_xml": "<a>1</a>",
        // hstore.handling.mode=json: a JSON object in a string.
        "c_hstore": "{\"a\":\"1\",\"b\":null}",
        "c_tsvector": "'fox' 'quick' 'the'",
        // A domain is its base type: numeric(10,2).
        "c_price": "BOI=",
    });
    // A composite type tributary does not know: PostgreSQL's text form, as a string.
    after["c_pair"] = json!("(1,x)");
    after
}

fn edge_row_after() -> Value {
    let mut after = json!({"id": 2});
    for name in column_names() {
        if name != "id" {
            after[name] = Value::Null;
        }
    }
    // -1250 = 0xFB1E.
    after["c_numeric"] = json!("+x4=");
    // -1000 = 0xFC18, scale 0.
    after["c_numeric_any"] = json!({"scale": 0, "value": "/Bg="});
    after["c_date"] = json!(-1);
    // pgjdbc's PGStatement.DATE_POSITIVE_INFINITY.
    after["c_timestamp"] = json!(9_223_372_036_825_200_000_i64);
    after["c_timestamp3"] = json!(-1);
    after["c_timestamptz"] = json!("infinity");
    after
}

/// The columns Debezium keeps, in table order.
fn column_names() -> Vec<String> {
    full_row_after()
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

/// The schema of field `name` of the `after` struct in a value schema.
fn after_field_schema(value_schema: &Value, name: &str) -> Value {
    let after = value_schema["fields"]
        .as_array()
        .expect("envelope fields")
        .iter()
        .find(|f| f["field"] == "after")
        .expect("an after field");
    after["fields"]
        .as_array()
        .expect("row fields")
        .iter()
        .find(|f| f["field"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Creates the schema and starts a source with `extra` settings; returns a collector on the
/// table's topic.
async fn start(
    fixture: &mut SourceFixture,
    extra: &[(&str, &str)],
) -> (InProcessSource, Collector) {
    fixture
        .db
        .client()
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let config = fixture.config("public.all_types", extra);
    let topic = fixture.table_topic("all_types");
    let collector = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let mut source = InProcessSource::start(config, fixture.destination());
    source.wait_until_streaming(fixture).await;
    (source, collector)
}

/// Compares column by column first, so a failure names the column.
fn assert_row(actual: &Value, expected: &Value) {
    let actual_map = actual.as_object().expect("after is an object");
    let expected_map = expected.as_object().expect("expected is an object");
    for (name, value) in expected_map {
        assert_eq!(actual_map.get(name), Some(value), "column {name}");
    }
    assert_eq!(actual, expected, "the whole after image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_is_written_as_debezium_writes_it() {
    let mut fixture = SourceFixture::new().await;
    let (source, mut collector) = start(&mut fixture, &[]).await;
    let client = fixture.db.client();
    client.batch_execute(FULL_ROW).await.expect("full row");
    client.batch_execute(EDGE_ROW).await.expect("edge row");

    let seen: Vec<Record> = collector.collect(2, WAIT).await;
    source.stop().await.expect("a clean stop");

    let first = seen[0].value_json();
    assert_eq!(first["payload"]["op"], "c");
    assert_eq!(first["payload"]["before"], Value::Null);
    assert_row(&first["payload"]["after"], &full_row_after());
    assert_eq!(seen[0].key_json()["payload"], json!({"id": 1}));
    let second = seen[1].value_json();
    assert_row(&second["payload"]["after"], &edge_row_after());

    // The value schema: Connect types and semantic names.
    let schema = &first["schema"];
    let field = |name: &str| after_field_schema(schema, name);
    assert_eq!(
        field("id"),
        json!({"type": "int32", "optional": false, "field": "id"})
    );
    assert_eq!(
        field("c_numeric"),
        json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
               "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"},
               "field": "c_numeric"})
    );
    assert_eq!(
        field("c_price"),
        json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
               "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"},
               "field": "c_price"})
    );
    assert_eq!(
        field("c_money")["parameters"],
        json!({"scale": "2"}),
        "money's Decimal has a scale and no precision"
    );
    let variable = field("c_numeric_any");
    assert_eq!(variable["type"], "struct");
    assert_eq!(variable["name"], "io.debezium.data.VariableScaleDecimal");
    assert_eq!(
        variable["fields"],
        json!([{"type": "int32", "optional": false, "field": "scale"},
               {"type": "bytes", "optional": false, "field": "value"}])
    );
    for (column, connect_type, name) in [
        ("c_date", "int32", "io.debezium.time.Date"),
        ("c_time", "int64", "io.debezium.time.MicroTime"),
        ("c_time3", "int32", "io.debezium.time.Time"),
        ("c_timetz", "string", "io.debezium.time.ZonedTime"),
        ("c_timestamp", "int64", "io.debezium.time.MicroTimestamp"),
        ("c_timestamp3", "int64", "io.debezium.time.Timestamp"),
        ("c_timestamptz", "string", "io.debezium.time.ZonedTimestamp"),
        ("c_interval", "int64", "io.debezium.time.MicroDuration"),
        ("c_json", "string", "io.debezium.data.Json"),
        ("c_jsonb", "string", "io.debezium.data.Json"),
        ("c_hstore", "string", "io.debezium.data.Json"),
        ("c_uuid", "string", "io.debezium.data.Uuid"),
        ("c_xml", "string", "io.debezium.data.Xml"),
        ("c_tsvector", "string", "io.debezium.data.Tsvector"),
        ("c_bit3", "bytes", "io.debezium.data.Bits"),
        ("c_mood", "string", "io.debezium.data.Enum"),
    ] {
        let schema = field(column);
        assert_eq!(schema["type"], connect_type, "{column}: {schema}");
        assert_eq!(schema["name"], name, "{column}: {schema}");
        assert_eq!(schema["optional"], true, "{column}: {schema}");
    }
    assert_eq!(field("c_bit3")["parameters"], json!({"length": "3"}));
    assert_eq!(
        field("c_mood")["parameters"],
        json!({"allowed": "sad,ok,happy"})
    );
    assert_eq!(
        field("c_bit1"),
        json!({"type": "boolean", "optional": true, "field": "c_bit1"})
    );
    assert_eq!(
        field("c_oid"),
        json!({"type": "int64", "optional": true, "field": "c_oid"})
    );
    assert_eq!(
        field("c_int4_array"),
        json!({"type": "array", "items": {"type": "int32", "optional": true}, "optional": true,
               "field": "c_int4_array"})
    );
    assert_eq!(
        field("c_pair"),
        json!({"type": "string", "optional": true, "field": "c_pair"}),
        "an unknown type travels as an optional string"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_decimals_connect_times_hex_binary_and_no_value_schema() {
    let mut fixture = SourceFixture::new().await;
    let (source, mut collector) = start(
        &mut fixture,
        &[
            ("decimal.handling.mode", "string"),
            ("time.precision.mode", "connect"),
            ("binary.handling.mode", "hex"),
            ("value.converter.schemas.enable", "false"),
        ],
    )
    .await;
    let client = fixture.db.client();
    client.batch_execute(FULL_ROW).await.expect("full row");
    client
        .batch_execute("INSERT INTO all_types (id, c_numeric_any) VALUES (3, 'NaN')")
        .await
        .expect("NaN row");

    let seen = collector.collect(2, WAIT).await;
    source.stop().await.expect("a clean stop");

    // schemas.enable=false: the bare envelope.
    let value = seen[0].value_json();
    assert!(
        value.get("schema").is_none() && value.get("payload").is_none(),
        "{value}"
    );
    assert_eq!(value["op"], "c");
    // The key converter still has its schema.
    assert_eq!(seen[0].key_json()["payload"], json!({"id": 1}));
    let after = &value["after"];
    assert_eq!(after["c_numeric"], "12.50");
    assert_eq!(after["c_numeric_any"], "1.500");
    assert_eq!(after["c_money"], "1234.56");
    assert_eq!(after["c_price"], "12.50");
    assert_eq!(after["c_bytea"], "deadbeef");
    // connect: Date is days, Time is INT32 ms, Timestamp is ms (µs are lost).
    assert_eq!(after["c_date"], 19782);
    assert_eq!(after["c_time"], 47_655_123);
    assert_eq!(after["c_time3"], 47_655_123);
    assert_eq!(after["c_timestamp"], 1_709_210_700_123_i64);
    assert_eq!(after["c_timestamp3"], 1_709_210_700_123_i64);
    // Zoned types and intervals do not change with the time mode.
    assert_eq!(after["c_timestamptz"], "2024-02-29T12:45:00.123456Z");
    assert_eq!(after["c_interval"], 37_091_106_789_000_i64);
    // Bits are not binary.handling: still base64 bytes.
    assert_eq!(after["c_bit3"], "Bg==");
    assert_eq!(after["c_pair"], "(1,x)");

    let nan = seen[1].value_json();
    assert_eq!(nan["after"]["c_numeric_any"], "NAN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_nan_in_precise_mode_stops_the_source_naming_the_column() {
    let mut fixture = SourceFixture::new().await;
    let (source, mut collector) = start(&mut fixture, &[]).await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO all_types (id, c_numeric_any) VALUES (1, 'NaN')")
        .await
        .expect("NaN row");

    let err = source
        .ended(WAIT)
        .await
        .expect_err("NaN cannot be a precise decimal");
    assert!(
        !err.is_transient(),
        "a retry would fail the same way: {err}"
    );
    let message = err.to_string();
    assert!(message.contains("c_numeric_any"), "{message}");
    assert!(message.contains("all_types"), "{message}");
    assert!(message.contains("decimal.handling.mode"), "{message}");
    // Nothing of the failed transaction was committed to Kafka.
    collector.expect_no_more(Duration::from_secs(1)).await;
}
