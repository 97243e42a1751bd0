//! Kafka Connect schemas (with Debezium's semantic names) as PostgreSQL column types, and
//! Connect JSON values as the PostgreSQL text each column type reads.
//!
//! Integers, decimals, dates and timestamps stay typed (`Cell::Integer`, `Decimal`, `Date`,
//! `Timestamp`, `Zoned`) so that the writer can bind them in PostgreSQL's binary form when the
//! column has their type: parsing their text was a large share of the target's CPU. Every other
//! value, and a typed one whose column has another type, is bound as text and cast in SQL to the
//! column's type, whose text input PostgreSQL itself validates.

use std::{borrow::Cow, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use bigdecimal::{BigDecimal, num_bigint::BigInt};
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, Timelike};
use serde_json::{Map, Value as Json};

use crate::format::connect::Placeholder;

/// A field's Connect schema, as `JsonConverter` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    /// `int8` … `int64`, `float32`, `float64`, `boolean`, `string`, `bytes`, `array`, `map`,
    /// `struct`.
    pub kind: String,
    /// The logical or semantic type name (`io.debezium.time.Date`, …).
    pub name: Option<String>,
    pub optional: bool,
    pub parameters: Map<String, Json>,
    /// The element schema of an array.
    pub items: Option<Arc<FieldSchema>>,
    /// The members of a struct, with their field names (shared with the columns read by them).
    pub fields: Vec<(Arc<str>, Arc<FieldSchema>)>,
}

impl FieldSchema {
    /// Reads a schema object; `None` when it is not one.
    pub fn from_json(schema: &Json) -> Option<Self> {
        let object = schema.as_object()?;
        let kind = object.get("type")?.as_str()?.to_owned();
        let fields = object
            .get("fields")
            .and_then(Json::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| {
                        let name: Arc<str> = f.get("field")?.as_str()?.into();
                        Some((name, Arc::new(Self::from_json(f)?)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            kind,
            name: object.get("name").and_then(Json::as_str).map(str::to_owned),
            optional: object
                .get("optional")
                .and_then(Json::as_bool)
                .unwrap_or(true),
            parameters: object
                .get("parameters")
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default(),
            items: object.get("items").and_then(Self::from_json).map(Arc::new),
            fields,
        })
    }

    /// The struct member called `name`.
    pub fn field(&self, name: &str) -> Option<&Arc<FieldSchema>> {
        self.fields
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, s)| s)
    }

    fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).and_then(Json::as_str)
    }

    /// The PostgreSQL type a column of this schema gets when the sink creates it.
    pub fn postgres_type(&self) -> String {
        let semantic = self.name.as_deref().unwrap_or("");
        match semantic {
            "org.apache.kafka.connect.data.Decimal" => {
                match (
                    self.parameter("connect.decimal.precision")
                        .and_then(|p| p.parse::<u32>().ok()),
                    self.parameter("scale").and_then(|s| s.parse::<u32>().ok()),
                ) {
                    (Some(precision), Some(scale)) if precision <= 1000 && scale <= precision => {
                        format!("numeric({precision},{scale})")
                    }
                    _ => "numeric".to_owned(),
                }
            }
            "io.debezium.data.VariableScaleDecimal" => "numeric".to_owned(),
            "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => "date".to_owned(),
            "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => "time(3)".to_owned(),
            "io.debezium.time.MicroTime" | "io.debezium.time.NanoTime" => "time(6)".to_owned(),
            "io.debezium.time.ZonedTime" => "time with time zone".to_owned(),
            "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                "timestamp(3)".to_owned()
            }
            "io.debezium.time.MicroTimestamp" | "io.debezium.time.NanoTimestamp" => {
                "timestamp(6)".to_owned()
            }
            "io.debezium.time.ZonedTimestamp" => "timestamp with time zone".to_owned(),
            "io.debezium.time.MicroDuration" | "io.debezium.time.Interval" => "interval".to_owned(),
            "io.debezium.data.Uuid" => "uuid".to_owned(),
            "io.debezium.data.Json" => "jsonb".to_owned(),
            "io.debezium.data.Xml" => "xml".to_owned(),
            "io.debezium.data.Bits" => match self.parameter("length") {
                Some(length) if length.parse::<u32>().is_ok_and(|n| n > 0) => {
                    format!("bit varying({length})")
                }
                _ => "bit varying".to_owned(),
            },
            _ => match self.kind.as_str() {
                "int8" | "int16" => "smallint".to_owned(),
                "int32" => "integer".to_owned(),
                "int64" => "bigint".to_owned(),
                "float" | "float32" => "real".to_owned(),
                "double" | "float64" => "double precision".to_owned(),
                "boolean" => "boolean".to_owned(),
                "bytes" => "bytea".to_owned(),
                "array" => match &self.items {
                    Some(items) if items.kind != "array" && items.kind != "struct" => {
                        format!("{}[]", items.postgres_type())
                    }
                    _ => "jsonb".to_owned(),
                },
                "map" | "struct" => "jsonb".to_owned(),
                _ => "text".to_owned(),
            },
        }
    }
}

/// One cell of a row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// PostgreSQL's text form of the value.
    Text(String),
    /// A Connect integer (`int8` … `int64`).
    Integer(i64),
    /// A Connect `Decimal` whose unscaled value fits an `i128`, at a scale of 0–38.
    Decimal {
        unscaled: i128,
        scale: u32,
    },
    /// A Connect/Debezium date.
    Date(NaiveDate),
    /// A timestamp without time zone (Debezium's `Timestamp`, `MicroTimestamp`, `NanoTimestamp`).
    Timestamp(NaiveDateTime),
    /// Debezium's `ZonedTimestamp`: the instant (UTC) and the text it was read from, which is
    /// what a column of another type than `timestamptz` receives.
    Zoned {
        utc: NaiveDateTime,
        text: String,
    },
    /// An unchanged TOASTed value (Debezium's placeholder): the stored value is kept.
    Unchanged,
}

impl Cell {
    /// PostgreSQL's text form of the value; `None` for NULL and an unchanged TOASTed value.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Cell::Null | Cell::Unchanged => return None,
            Cell::Text(text) | Cell::Zoned { text, .. } => Cow::Borrowed(text.as_str()),
            Cell::Integer(i) => Cow::Owned(i.to_string()),
            Cell::Decimal { unscaled, scale } => {
                Cow::Owned(small_decimal_text_of(*unscaled, *scale))
            }
            Cell::Date(date) => Cow::Owned(date_text_of(*date)),
            Cell::Timestamp(t) => Cow::Owned(timestamp_text_of(*t)),
        })
    }

    /// As `text`, taking the cell.
    pub fn into_text(self) -> Option<String> {
        match self {
            Cell::Text(text) | Cell::Zoned { text, .. } => Some(text),
            other => other.text().map(Cow::into_owned),
        }
    }
}

/// A value that cannot be written; says which field and why, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field:?}: {reason}")]
pub struct ValueError {
    pub field: String,
    pub reason: String,
}

/// The TOAST placeholder forms to recognise.
#[derive(Debug)]
pub struct Unchanged {
    placeholder: Placeholder,
    /// The placeholder of an hstore column as JSON (`{"<p>":"<p>"}`).
    hstore: String,
}

impl Default for Unchanged {
    fn default() -> Self {
        let placeholder =
            Placeholder::new(crate::format::json::DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER);
        let hstore = hstore_placeholder(&placeholder.text);
        Self {
            placeholder,
            hstore,
        }
    }
}

impl Unchanged {
    /// Whether `value` is the placeholder Debezium writes for an unchanged TOASTed column.
    fn is_placeholder(&self, value: &Json, schema: Option<&FieldSchema>) -> bool {
        let placeholder = &self.placeholder;
        let is_bytes = schema.is_some_and(|s| s.kind == "bytes");
        let scalar = |v: &Json, bytes: bool| match v {
            Json::String(text) if bytes => {
                STANDARD.decode(text).is_ok_and(|b| b == placeholder.bytes)
            }
            Json::String(text) => *text == placeholder.text || *text == placeholder.uuid,
            _ => false,
        };
        match value {
            Json::String(text) => {
                scalar(value, is_bytes)
                    || (schema.is_some_and(|s| s.name.as_deref() == Some("io.debezium.data.Json"))
                        && *text == self.hstore)
            }
            Json::Array(items) if !items.is_empty() => {
                let item_bytes = schema
                    .and_then(|s| s.items.as_deref())
                    .is_some_and(|s| s.kind == "bytes");
                (items.len() == 1 && scalar(&items[0], item_bytes))
                    || (items.len() == placeholder.bytes.len()
                        && items
                            .iter()
                            .zip(&placeholder.bytes)
                            .all(|(v, b)| v.as_i64() == Some(i64::from(*b as i8))))
            }
            _ => false,
        }
    }
}

fn hstore_placeholder(text: &str) -> String {
    let mut object = Map::new();
    object.insert(text.to_owned(), Json::String(text.to_owned()));
    Json::Object(object).to_string()
}

/// The cell for `value` of a field with `schema` (`None`: the record had no schema, so the
/// JSON value's own text is used).
pub fn cell(
    field: &str,
    value: &Json,
    schema: Option<&FieldSchema>,
    unchanged: &Unchanged,
) -> Result<Cell, ValueError> {
    if value.is_null() {
        return Ok(Cell::Null);
    }
    if unchanged.is_placeholder(value, schema) {
        return Ok(Cell::Unchanged);
    }
    let fail = |reason: String| ValueError {
        field: field.to_owned(),
        reason,
    };
    let text = match schema {
        Some(schema) => {
            if let Some(typed) = typed_cell(value, schema).map_err(fail)? {
                return Ok(typed);
            }
            text_of(value, schema).map_err(fail)?
        }
        None => untyped_text(value),
    };
    Ok(Cell::Text(text))
}

/// The typed cell for `value`, when its schema has one (see `Cell`); `None` for every other
/// value, which is written as text.
fn typed_cell(value: &Json, schema: &FieldSchema) -> Result<Option<Cell>, String> {
    let micros = |factor: i64, divisor: i64| -> Result<Option<Cell>, String> {
        let micros = expect_i64(value)?
            .saturating_mul(factor)
            .div_euclid(divisor);
        timestamp_of(micros).map(|t| Some(Cell::Timestamp(t)))
    };
    match schema.name.as_deref() {
        Some("org.apache.kafka.connect.data.Decimal") if schema.kind == "bytes" => Ok(schema
            .parameter("scale")
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|scale| small_decimal(value, scale))
            .map(|(unscaled, scale)| Cell::Decimal { unscaled, scale })),
        Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date")
            if value.is_number() =>
        {
            date_of(expect_i64(value)?).map(|d| Some(Cell::Date(d)))
        }
        Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp")
            if value.is_number() =>
        {
            micros(1000, 1)
        }
        Some("io.debezium.time.MicroTimestamp") if value.is_number() => micros(1, 1),
        Some("io.debezium.time.NanoTimestamp") if value.is_number() => micros(1, 1000),
        Some("io.debezium.time.ZonedTimestamp") => {
            Ok(value.as_str().and_then(zoned_utc).map(|utc| Cell::Zoned {
                utc,
                text: value.as_str().unwrap_or_default().to_owned(),
            }))
        }
        Some(_) => Ok(None),
        None => Ok(match (schema.kind.as_str(), value.as_i64()) {
            ("int8" | "int16" | "int32" | "int64", Some(i)) => Some(Cell::Integer(i)),
            _ => None,
        }),
    }
}

/// The UTC instant of a `ZonedTimestamp` text, when it reads exactly (RFC 3339, years 1–9999,
/// at most microseconds, no leap second); `None` leaves it to PostgreSQL's text input.
fn zoned_utc(text: &str) -> Option<NaiveDateTime> {
    let fraction_digits = text
        .find('.')
        .map(|dot| {
            text[dot + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count()
        })
        .unwrap_or(0);
    if fraction_digits > 6 {
        return None;
    }
    let at = DateTime::parse_from_rfc3339(text).ok()?;
    let utc = at.naive_utc();
    (at.nanosecond() < 1_000_000_000 && (1..=9999).contains(&utc.year())).then_some(utc)
}

/// As `cell`, taking the value: a string that `text_of` would copy as it is is moved instead.
pub fn cell_of(
    field: &str,
    value: Json,
    schema: Option<&FieldSchema>,
    unchanged: &Unchanged,
) -> Result<Cell, ValueError> {
    let moved = matches!(value, Json::String(_))
        && schema
            .is_none_or(|s| s.kind == "string" && !s.name.as_deref().is_some_and(reads_strings))
        && !unchanged.is_placeholder(&value, schema);
    let zoned =
        schema.is_some_and(|s| s.name.as_deref() == Some("io.debezium.time.ZonedTimestamp"));
    match value {
        Json::String(text) if moved && zoned => Ok(match zoned_utc(&text) {
            Some(utc) => Cell::Zoned { utc, text },
            None => Cell::Text(text),
        }),
        Json::String(text) if moved => Ok(Cell::Text(text)),
        other => cell(field, &other, schema, unchanged),
    }
}

/// Semantic types for which `text_of` reads a string schema's value rather than copying it.
fn reads_strings(name: &str) -> bool {
    matches!(
        name,
        "io.debezium.data.VariableScaleDecimal"
            | "io.debezium.time.Date"
            | "org.apache.kafka.connect.data.Date"
            | "io.debezium.time.Time"
            | "org.apache.kafka.connect.data.Time"
            | "io.debezium.time.MicroTime"
            | "io.debezium.time.NanoTime"
            | "io.debezium.time.Timestamp"
            | "org.apache.kafka.connect.data.Timestamp"
            | "io.debezium.time.MicroTimestamp"
            | "io.debezium.time.NanoTimestamp"
            | "io.debezium.time.MicroDuration"
    )
}

fn untyped_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn expect_i64(value: &Json) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| format!("expected an integer, found {}", json_kind(value)))
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn decode_base64(value: &Json) -> Result<Vec<u8>, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("expected base64 bytes, found {}", json_kind(value)))?;
    STANDARD
        .decode(text)
        .map_err(|_| "expected base64 bytes, found invalid base64".to_owned())
}

/// The unscaled value and scale of base64 `value` without big integers, when the unscaled value
/// fits an `i128` and the scale is 0–38 (nearly every decimal column); `None` otherwise.
fn small_decimal(value: &Json, scale: i64) -> Option<(i128, u32)> {
    let encoded = value.as_str()?;
    let scale = u32::try_from(scale).ok().filter(|&s| s <= 38)?;
    if encoded.len() > 24 {
        return None;
    }
    let mut buffer = [0u8; 18];
    let length = STANDARD.decode_slice(encoded, &mut buffer).ok()?;
    let bytes = buffer
        .get(..length)
        .filter(|b| !b.is_empty() && b.len() <= 16)?;
    let fill = if bytes[0] & 0x80 == 0 { 0 } else { 0xff };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    Some((i128::from_be_bytes(wide), scale))
}

/// `decimal_text` of base64 `value` without allocating more than the text (see `small_decimal`).
#[cfg(test)]
fn small_decimal_text(value: &Json, scale: i64) -> Option<String> {
    small_decimal(value, scale).map(|(unscaled, scale)| small_decimal_text_of(unscaled, scale))
}

fn small_decimal_text_of(unscaled: i128, scale: u32) -> String {
    let scale = scale as usize;
    let mut number = itoa::Buffer::new();
    let digits = number.format(unscaled.unsigned_abs());
    let mut text = String::with_capacity(digits.len() + scale + 3);
    if unscaled < 0 {
        text.push('-');
    }
    if scale == 0 {
        text.push_str(digits);
    } else if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        text.push_str(whole);
        text.push('.');
        text.push_str(fraction);
    } else {
        text.push_str("0.");
        text.extend(std::iter::repeat_n('0', scale - digits.len()));
        text.push_str(digits);
    }
    text
}

/// Connect's Decimal: the two's-complement big-endian unscaled value at `scale`.
fn decimal_text(bytes: &[u8], scale: i64) -> String {
    BigDecimal::new(BigInt::from_signed_bytes_be(bytes), scale).to_plain_string()
}

fn date_of(days: i64) -> Result<NaiveDate, String> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or("the epoch is a date")?;
    let date = if days >= 0 {
        epoch.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        epoch.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    date.ok_or_else(|| format!("{days} days from 1970-01-01 is out of range"))
}

fn date_text(days: i64) -> Result<String, String> {
    date_of(days).map(date_text_of)
}

fn date_text_of(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn time_text(micros: i64) -> Result<String, String> {
    // 24:00:00 is a valid PostgreSQL time.
    if !(0..=86_400_000_000).contains(&micros) {
        return Err("a time of day out of range".to_owned());
    }
    let seconds = micros / 1_000_000;
    Ok(format!(
        "{:02}:{:02}:{:02}.{:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        micros % 1_000_000
    ))
}

fn timestamp_of(micros: i64) -> Result<NaiveDateTime, String> {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc())
        .ok_or_else(|| "a timestamp out of range".to_owned())
}

fn timestamp_text(micros: i64) -> Result<String, String> {
    timestamp_of(micros).map(timestamp_text_of)
}

fn timestamp_text_of(t: NaiveDateTime) -> String {
    // chrono's years before 1 are 0, -1, …; PostgreSQL counts 1 BC, 2 BC, …
    let (year, era) = match t.year() {
        year if year >= 1 => (year, ""),
        year => (1 - year, " BC"),
    };
    if era.is_empty() && year > 9999 {
        // As chrono writes it ("+10000-…").
        return t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    }
    // Written field by field: `format` parses its pattern on every call, which showed up in
    // the sink's profile.
    format!(
        "{year:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}{era}",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() % 1_000_000_000 / 1000
    )
}

/// `io.debezium.data.Bits`: little-endian bytes of a bit string `length` bits long.
fn bits_text(bytes: &[u8], length: usize) -> String {
    (0..length)
        .rev()
        .map(|i| {
            let set = bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            if set { '1' } else { '0' }
        })
        .collect()
}

fn text_of(value: &Json, schema: &FieldSchema) -> Result<String, String> {
    let semantic = schema.name.as_deref().unwrap_or("");
    match semantic {
        "org.apache.kafka.connect.data.Decimal" => {
            return match value {
                // decimal.handling.mode=string/double write the number itself.
                Json::String(text) if schema.kind == "string" => Ok(text.clone()),
                Json::Number(n) => Ok(n.to_string()),
                _ => {
                    let scale = schema
                        .parameter("scale")
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or("a Decimal schema without a scale parameter")?;
                    if let Some((unscaled, scale)) = small_decimal(value, scale) {
                        return Ok(small_decimal_text_of(unscaled, scale));
                    }
                    Ok(decimal_text(&decode_base64(value)?, scale))
                }
            };
        }
        "io.debezium.data.VariableScaleDecimal" => {
            let scale = value
                .get("scale")
                .and_then(Json::as_i64)
                .ok_or("a VariableScaleDecimal without a scale")?;
            let bytes = decode_base64(
                value
                    .get("value")
                    .ok_or("a VariableScaleDecimal without a value")?,
            )?;
            return Ok(decimal_text(&bytes, scale));
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            return date_text(expect_i64(value)?);
        }
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            return time_text(expect_i64(value)?.saturating_mul(1000));
        }
        "io.debezium.time.MicroTime" => return time_text(expect_i64(value)?),
        "io.debezium.time.NanoTime" => return time_text(expect_i64(value)? / 1000),
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            return timestamp_text(expect_i64(value)?.saturating_mul(1000));
        }
        "io.debezium.time.MicroTimestamp" => return timestamp_text(expect_i64(value)?),
        "io.debezium.time.NanoTimestamp" => {
            return timestamp_text(expect_i64(value)?.div_euclid(1000));
        }
        "io.debezium.time.MicroDuration" => {
            return Ok(format!("{} microseconds", expect_i64(value)?));
        }
        "io.debezium.data.Bits" if schema.kind == "bytes" => {
            let length = schema
                .parameter("length")
                .and_then(|l| l.parse::<usize>().ok())
                .ok_or("a Bits schema without a length parameter")?;
            return Ok(bits_text(&decode_base64(value)?, length));
        }
        _ => {}
    }
    match (schema.kind.as_str(), value) {
        ("bytes", _) => {
            let bytes = decode_base64(value)?;
            Ok(format!("\\x{}", crate::format::connect::encode_hex(&bytes)))
        }
        ("array", Json::Array(items)) => match &schema.items {
            Some(item_schema) if item_schema.kind != "array" && item_schema.kind != "struct" => {
                let mut literal = String::from("{");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        literal.push(',');
                    }
                    if item.is_null() {
                        literal.push_str("NULL");
                    } else {
                        literal.push('"');
                        for c in text_of(item, item_schema)?.chars() {
                            if c == '"' || c == '\\' {
                                literal.push('\\');
                            }
                            literal.push(c);
                        }
                        literal.push('"');
                    }
                }
                literal.push('}');
                Ok(literal)
            }
            _ => Ok(value.to_string()),
        },
        ("boolean", Json::Bool(b)) => Ok(b.to_string()),
        (
            "int8" | "int16" | "int32" | "int64" | "float" | "double" | "float32" | "float64",
            Json::Number(n),
        ) => Ok(n.to_string()),
        // Jackson writes NaN and the infinities as strings.
        ("float" | "double" | "float32" | "float64", Json::String(text)) => Ok(text.clone()),
        ("string", Json::String(text)) => Ok(text.clone()),
        ("map" | "struct", _) => Ok(value.to_string()),
        (kind, other) => Err(format!(
            "expected a {kind} value, found {}",
            json_kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(json: Json) -> FieldSchema {
        FieldSchema::from_json(&json).expect("a schema")
    }

    fn typed(value: Json, schema_json: Json) -> Cell {
        cell(
            "f",
            &value,
            Some(&schema(schema_json)),
            &Unchanged::default(),
        )
        .expect("converts")
    }

    /// The cell as PostgreSQL text (typed cells by their text).
    fn text(value: Json, schema_json: Json) -> Cell {
        match typed(value, schema_json) {
            cell @ (Cell::Null | Cell::Unchanged) => cell,
            cell => Cell::Text(cell.into_text().expect("a value")),
        }
    }

    fn t(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    #[test]
    fn debezium_types_become_postgres_types() {
        let cases = [
            (json!({"type": "int16"}), "smallint"),
            (json!({"type": "int32"}), "integer"),
            (json!({"type": "int64"}), "bigint"),
            (json!({"type": "float"}), "real"),
            (json!({"type": "double"}), "double precision"),
            (json!({"type": "boolean"}), "boolean"),
            (json!({"type": "string"}), "text"),
            (json!({"type": "bytes"}), "bytea"),
            (
                json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                       "parameters": {"scale": "2", "connect.decimal.precision": "10"}}),
                "numeric(10,2)",
            ),
            (
                json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                       "parameters": {"scale": "2"}}),
                "numeric",
            ),
            (
                json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}),
                "numeric",
            ),
            (
                json!({"type": "int32", "name": "io.debezium.time.Date"}),
                "date",
            ),
            (
                json!({"type": "int64", "name": "io.debezium.time.MicroTime"}),
                "time(6)",
            ),
            (
                json!({"type": "int64", "name": "io.debezium.time.MicroTimestamp"}),
                "timestamp(6)",
            ),
            (
                json!({"type": "int64", "name": "io.debezium.time.Timestamp"}),
                "timestamp(3)",
            ),
            (
                json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}),
                "timestamp with time zone",
            ),
            (
                json!({"type": "string", "name": "io.debezium.data.Json"}),
                "jsonb",
            ),
            (
                json!({"type": "string", "name": "io.debezium.data.Uuid"}),
                "uuid",
            ),
            (
                json!({"type": "int64", "name": "io.debezium.time.MicroDuration"}),
                "interval",
            ),
            (
                json!({"type": "bytes", "name": "io.debezium.data.Bits", "parameters": {"length": "3"}}),
                "bit varying(3)",
            ),
            (
                json!({"type": "array", "items": {"type": "string"}}),
                "text[]",
            ),
            (
                json!({"type": "array", "items": {"type": "int32"}}),
                "integer[]",
            ),
        ];
        for (schema_json, expected) in cases {
            assert_eq!(
                schema(schema_json.clone()).postgres_type(),
                expected,
                "{schema_json}"
            );
        }
    }

    #[test]
    fn values_become_postgres_text() {
        let decimal = json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                             "parameters": {"scale": "2"}});
        // 12.50 is 1250 = 0x04E2; -1.00 is -100 = 0x9C.
        assert_eq!(text(json!("BOI="), decimal.clone()), t("12.50"));
        assert_eq!(text(json!("nA=="), decimal), t("-1.00"));
        assert_eq!(
            text(
                json!({"scale": 3, "value": "BNI="}),
                json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"})
            ),
            t("1.234")
        );
        assert_eq!(
            text(
                json!(19782),
                json!({"type": "int32", "name": "io.debezium.time.Date"})
            ),
            t("2024-02-29")
        );
        assert_eq!(
            text(
                json!(-1),
                json!({"type": "int32", "name": "io.debezium.time.Date"})
            ),
            t("1969-12-31")
        );
        assert_eq!(
            text(
                json!(45_901_000_001_i64),
                json!({"type": "int64", "name": "io.debezium.time.MicroTime"})
            ),
            t("12:45:01.000001")
        );
        assert_eq!(
            text(
                json!(1_709_210_701_000_001_i64),
                json!({"type": "int64", "name": "io.debezium.time.MicroTimestamp"})
            ),
            t("2024-02-29 12:45:01.000001")
        );
        assert_eq!(
            text(
                json!(1_709_210_701_123_i64),
                json!({"type": "int64", "name": "io.debezium.time.Timestamp"})
            ),
            t("2024-02-29 12:45:01.123000")
        );
        assert_eq!(text(json!("3q0="), json!({"type": "bytes"})), t("\\xdead"));
        assert_eq!(
            text(
                json!("BQ=="),
                json!({"type": "bytes", "name": "io.debezium.data.Bits", "parameters": {"length": "3"}})
            ),
            t("101")
        );
        assert_eq!(
            text(
                json!(["a", null, "q\"b\\"]),
                json!({"type": "array", "items": {"type": "string"}})
            ),
            t(r#"{"a",NULL,"q\"b\\"}"#)
        );
        assert_eq!(text(json!(true), json!({"type": "boolean"})), t("true"));
        assert_eq!(text(json!(1.5), json!({"type": "double"})), t("1.5"));
        assert_eq!(text(json!(null), json!({"type": "int32"})), Cell::Null);
    }

    #[test]
    fn integers_dates_and_timestamps_stay_typed() {
        let at = |text: &str| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("a timestamp")
        };
        assert_eq!(
            typed(json!(-42), json!({"type": "int64"})),
            Cell::Integer(-42)
        );
        assert_eq!(typed(json!(7), json!({"type": "int16"})), Cell::Integer(7));
        assert_eq!(
            typed(
                json!("BOI="),
                json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                       "parameters": {"scale": "2"}})
            ),
            Cell::Decimal {
                unscaled: 1250,
                scale: 2
            }
        );
        assert_eq!(
            typed(
                json!(19782),
                json!({"type": "int32", "name": "io.debezium.time.Date"})
            ),
            Cell::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date"))
        );
        assert_eq!(
            typed(
                json!(1_709_210_701_000_001_i64),
                json!({"type": "int64", "name": "io.debezium.time.MicroTimestamp"})
            ),
            Cell::Timestamp(at("2024-02-29 12:45:01.000001"))
        );
        assert_eq!(
            typed(
                json!(-1_500_i64),
                json!({"type": "int64", "name": "io.debezium.time.NanoTimestamp"})
            ),
            Cell::Timestamp(at("1969-12-31 23:59:59.999998"))
        );
        let zoned = json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp"});
        assert_eq!(
            typed(json!("2024-02-29T12:45:01.5+02:00"), zoned.clone()),
            Cell::Zoned {
                utc: at("2024-02-29 10:45:01.5"),
                text: "2024-02-29T12:45:01.5+02:00".to_owned()
            }
        );
        // What PostgreSQL would round, or reads in ways of its own, stays text for it to read.
        for text in [
            "2024-02-29T12:45:01.1234567Z",
            "infinity",
            "2016-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
        ] {
            assert_eq!(typed(json!(text), zoned.clone()), t(text), "{text}");
        }
        // Integers with a semantic type of their own are text (a time of day here).
        assert_eq!(
            typed(
                json!(45_901_000_001_i64),
                json!({"type": "int64", "name": "io.debezium.time.MicroTime"})
            ),
            t("12:45:01.000001")
        );
    }

    #[test]
    fn taking_a_value_converts_as_borrowing_it() {
        let cases = [
            (json!("text"), Some(json!({"type": "string"}))),
            (json!("text"), None),
            (
                json!("2024-02-29T12:45:01Z"),
                Some(json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp"})),
            ),
            (
                json!("__debezium_unavailable_value"),
                Some(json!({"type": "string"})),
            ),
            (json!("__debezium_unavailable_value"), None),
            (
                json!("12.5"),
                Some(json!({"type": "string", "name": "org.apache.kafka.connect.data.Decimal"})),
            ),
            (json!("3q0="), Some(json!({"type": "bytes"}))),
            (
                json!("x"),
                Some(json!({"type": "string", "name": "io.debezium.time.Date"})),
            ),
            (
                json!(7),
                Some(json!({"type": "int32", "name": "io.debezium.time.Date"})),
            ),
            (json!(null), Some(json!({"type": "string"}))),
        ];
        let unchanged = Unchanged::default();
        for (value, schema_json) in cases {
            let schema = schema_json.map(schema);
            assert_eq!(
                cell_of("f", value.clone(), schema.as_ref(), &unchanged),
                cell("f", &value, schema.as_ref(), &unchanged),
                "{value}"
            );
        }
    }

    #[test]
    fn timestamps_at_the_edges_of_the_calendar() {
        assert_eq!(
            timestamp_text(0).as_deref(),
            Ok("1970-01-01 00:00:00.000000")
        );
        assert_eq!(
            timestamp_text(-1).as_deref(),
            Ok("1969-12-31 23:59:59.999999")
        );
        // 0001-01-01 and the day before it (1 BC); the year 10000.
        assert_eq!(
            timestamp_text(-62_135_596_800_000_000).as_deref(),
            Ok("0001-01-01 00:00:00.000000")
        );
        assert_eq!(
            timestamp_text(-62_135_596_800_000_001).as_deref(),
            Ok("0001-12-31 23:59:59.999999 BC")
        );
        // 2 BC is chrono's year -1.
        assert_eq!(
            timestamp_text(-62_135_596_800_000_001 - 366 * 86_400_000_000).as_deref(),
            Ok("0002-12-31 23:59:59.999999 BC")
        );
        assert_eq!(
            timestamp_text(253_402_300_800_000_000).as_deref(),
            Ok("+10000-01-01 00:00:00.000000")
        );
    }

    #[test]
    fn toast_placeholders_are_unchanged() {
        let unchanged = Unchanged::default();
        let placeholder = "__debezium_unavailable_value";
        let cases = [
            (json!(placeholder), json!({"type": "string"})),
            (
                json!(STANDARD.encode(placeholder)),
                json!({"type": "bytes"}),
            ),
            (
                json!([placeholder]),
                json!({"type": "array", "items": {"type": "string"}}),
            ),
        ];
        for (value, schema_json) in cases {
            assert_eq!(
                cell("f", &value, Some(&schema(schema_json)), &unchanged),
                Ok(Cell::Unchanged),
                "{value}"
            );
        }
        assert_eq!(
            cell("f", &json!(placeholder), None, &unchanged),
            Ok(Cell::Unchanged)
        );
        assert_eq!(
            cell(
                "f",
                &json!("real text"),
                Some(&schema(json!({"type": "string"}))),
                &unchanged
            ),
            Ok(Cell::Text("real text".into()))
        );
    }

    #[test]
    fn a_wrong_value_names_the_field_not_the_value() {
        let err = cell(
            "price",
            &json!("not base64!"),
            Some(&schema(json!({"type": "bytes"}))),
            &Unchanged::default(),
        )
        .expect_err("invalid");
        assert_eq!(err.field, "price");
        assert!(!err.to_string().contains("not base64!"), "{err}");
    }

    #[test]
    fn small_decimals_read_as_the_general_path_reads_them() {
        let values: [i128; 12] = [
            0,
            1,
            -1,
            5,
            -5,
            99,
            12345,
            -12345,
            i64::MAX as i128,
            i64::MIN as i128,
            i128::MAX,
            i128::MIN,
        ];
        for unscaled in values {
            let full = unscaled.to_be_bytes();
            // Connect writes the shortest two's-complement form; longer ones read the same.
            for skip in [0, 8, 12, 15] {
                let bytes = &full[skip..];
                if BigInt::from_signed_bytes_be(bytes) != BigInt::from(unscaled) {
                    continue;
                }
                let encoded = Json::String(STANDARD.encode(bytes));
                for scale in [0, 1, 2, 5, 20, 38] {
                    assert_eq!(
                        small_decimal_text(&encoded, scale).as_deref(),
                        Some(decimal_text(bytes, scale).as_str()),
                        "{unscaled} at scale {scale} from {} bytes",
                        bytes.len()
                    );
                }
            }
        }
        let wide = Json::String(STANDARD.encode([1u8; 17]));
        assert_eq!(small_decimal_text(&wide, 2), None);
        assert_eq!(small_decimal_text(&Json::String("AQ==".into()), -1), None);
    }
}
