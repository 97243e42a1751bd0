//! Decoding PostgreSQL's text output into typed [`Value`]s.
//!
//! pgoutput (protocol version 1) sends every column value in its type's *text output* form,
//! printed with the walsender's settings. The parsers here expect what a server prints with
//! `DateStyle=ISO`, `IntervalStyle=postgres`, `bytea_output=hex` and an `lc_monetary` whose
//! decimal point is `.` (C, en_US and the like); a value in another style is rejected with an
//! error that names the setting, never guessed at.
//!
//! Types tributary does not know ([`TypeKind::Unknown`]) keep their text as [`Value::Text`];
//! warning about them (once per type) is the caller's business, since only the caller knows
//! whether it has already done so.
//!
//! [`decode_binary`] reads the binary send format of the common types into the same values: a
//! snapshot copies a table whose columns all have one in binary.

use std::str::FromStr;

use bigdecimal::{BigDecimal, RoundingMode};

use crate::event::{BaseType, Date, Numeric, PgType, Timestamp, TypeKind, Value};

mod binary;
pub use binary::{decode_binary, decodes_binary};

/// Settings that change how a text value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The scale money values are given (Debezium's `money.fraction.digits`), at most
    /// [`Self::MAX_MONEY_FRACTION_DIGITS`].
    pub money_fraction_digits: u32,
}

impl DecodeOptions {
    pub const DEFAULT_MONEY_FRACTION_DIGITS: u32 = 2;
    /// money is a 64-bit count of the smallest unit: more digits than that have no meaning, and
    /// an unbounded scale would let a setting allocate without limit.
    pub const MAX_MONEY_FRACTION_DIGITS: u32 = 19;
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            money_fraction_digits: Self::DEFAULT_MONEY_FRACTION_DIGITS,
        }
    }
}

/// How much of a bad value an error may quote: enough to find it, not enough to leak a row.
const MAX_QUOTED_CHARS: usize = 40;

/// PostgreSQL's `MAXDIM`; deeper nesting is not a value the server can print.
const MAX_ARRAY_DIMENSIONS: usize = 6;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// A column value whose text is not what its type prints. Always permanent: the same text will
/// not decode on a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode a {type_name} value ({quoted}): {problem}")]
pub struct TypeError {
    type_name: String,
    /// The start of the offending text, debug-quoted and truncated.
    quoted: String,
    problem: String,
}

impl TypeError {
    fn new(type_name: &str, text: &str, problem: impl Into<String>) -> Self {
        Self {
            type_name: type_name.to_owned(),
            quoted: quote_truncated(text),
            problem: problem.into(),
        }
    }

    /// A value in binary form: its first bytes are quoted in hex.
    fn binary(type_name: &str, bytes: &[u8], problem: impl Into<String>) -> Self {
        let head = &bytes[..bytes.len().min(MAX_QUOTED_CHARS / 2)];
        let more = if head.len() < bytes.len() { "..." } else { "" };
        Self {
            type_name: type_name.to_owned(),
            quoted: format!(
                "0x{}{more} ({} bytes, binary)",
                crate::format::connect::encode_hex(head),
                bytes.len()
            ),
            problem: problem.into(),
        }
    }

    /// The PostgreSQL type (`pg_type.typname`) whose value did not decode.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// What was wrong with the text.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// Never: the text of a value does not change on a retry.
    pub fn is_transient(&self) -> bool {
        false
    }
}

fn quote_truncated(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}... ({} bytes)", text.len())
    } else {
        format!("{head:?}")
    }
}

/// Decodes one column value from PostgreSQL's text output form.
///
/// `type_modifier` is the column's `atttypmod`. The text output already reflects it (numeric
/// scale, time precision, padded bpchar), so no scalar type needs it; it is handed on to array
/// elements, whose modifier it is.
///
/// Enums and [`TypeKind::Unknown`] types decode to [`Value::Text`] unchanged; the caller is
/// expected to warn once about each unknown type.
pub fn decode_text(
    pg_type: &PgType,
    type_modifier: i32,
    text: &str,
    options: &DecodeOptions,
) -> Result<Value, TypeError> {
    match &pg_type.kind {
        TypeKind::Base(base) => decode_base(*base, text, options)
            .map_err(|problem| TypeError::new(&pg_type.name, text, problem)),
        TypeKind::Array(element) => decode_array(element, type_modifier, text, options)
            .map_err(|problem| TypeError::new(&pg_type.name, text, problem)),
        TypeKind::Enum(_) | TypeKind::Unknown => Ok(Value::Text(text.to_owned())),
        TypeKind::Domain(base) => {
            decode_text(base, type_modifier, text, options).map_err(|err| TypeError {
                type_name: format!("{} (domain over {})", pg_type.name, err.type_name),
                ..err
            })
        }
    }
}

/// A problem found while parsing; [`decode_text`] adds the type name and the text.
type Problem = String;

fn decode_base(base: BaseType, text: &str, options: &DecodeOptions) -> Result<Value, Problem> {
    Ok(match base {
        BaseType::Bool => match text {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => return Err("expected t or f".into()),
        },
        BaseType::Int2 => Value::Int16(parse_integer(text)?),
        BaseType::Int4 => Value::Int32(parse_integer(text)?),
        BaseType::Int8 => Value::Int64(parse_integer(text)?),
        BaseType::Oid => Value::Int64(i64::from(parse_integer::<u32>(text)?)),
        BaseType::Float4 => Value::Float32(parse_float(
            text,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        )?),
        BaseType::Float8 => Value::Float64(parse_float(
            text,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        )?),
        BaseType::Numeric => Value::Numeric(parse_numeric(text)?),
        BaseType::Money => Value::Numeric(parse_money(text, options.money_fraction_digits)?),
        BaseType::Text
        | BaseType::Uuid
        | BaseType::Json
        | BaseType::Jsonb
        | BaseType::Xml
        | BaseType::Inet
        | BaseType::Cidr
        | BaseType::MacAddr
        | BaseType::MacAddr8
        | BaseType::TsVector => Value::Text(text.to_owned()),
        BaseType::Bytea => Value::Bytes(parse_bytea(text)?),
        BaseType::Bit | BaseType::VarBit => Value::Bits(parse_bits(text)?),
        BaseType::Date => Value::Date(parse_date(text)?),
        BaseType::Time => Value::Time(parse_time_of_day(text, true)?),
        BaseType::TimeTz => {
            let (micros, offset_seconds) = parse_timetz(text)?;
            Value::TimeTz {
                micros,
                offset_seconds,
            }
        }
        BaseType::Timestamp => Value::Timestamp(parse_timestamp(text, false)?),
        BaseType::TimestampTz => Value::TimestampTz(parse_timestamp(text, true)?),
        BaseType::Interval => parse_interval(text)?,
        BaseType::Hstore => Value::Hstore(parse_hstore(text)?),
    })
}

fn parse_integer<T>(text: &str) -> Result<T, Problem>
where
    T: FromStr<Err = std::num::ParseIntError>,
{
    text.parse()
        .map_err(|err| format!("not an integer of this type ({err})"))
}

fn parse_float<F: FromStr>(text: &str, nan: F, infinity: F, neg_infinity: F) -> Result<F, Problem> {
    match text {
        "NaN" => Ok(nan),
        "Infinity" => Ok(infinity),
        "-Infinity" => Ok(neg_infinity),
        // Rust would also accept spellings ("inf", "nan") PostgreSQL never prints.
        _ if !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) =>
        {
            text.parse()
                .map_err(|_| "not a floating-point number".to_owned())
        }
        _ => Err("not a floating-point number".into()),
    }
}

fn parse_numeric(text: &str) -> Result<Numeric, Problem> {
    match text {
        "NaN" => Ok(Numeric::NaN),
        "Infinity" => Ok(Numeric::PositiveInfinity),
        "-Infinity" => Ok(Numeric::NegativeInfinity),
        _ => {
            // numeric_out prints plain decimals only: no exponent, no grouping.
            let unsigned = text.strip_prefix('-').unwrap_or(text);
            let (whole, fraction) = match split_at_byte(unsigned, b'.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (unsigned, None),
            };
            let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !all_digits(whole) || !fraction.is_none_or(all_digits) {
                return Err("not a decimal number".into());
            }
            // BigDecimal keeps the scale of the text: "1.50" has scale 2.
            let fraction = fraction.unwrap_or("");
            if whole.len() + fraction.len() <= 18 {
                // Fits an i64: built from the integer, not through BigUint's string parser
                // (a visible share of a snapshot's CPU).
                let unscaled = whole
                    .bytes()
                    .chain(fraction.bytes())
                    .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
                let signed = if text.starts_with('-') {
                    -unscaled
                } else {
                    unscaled
                };
                let scale = fraction.len() as i64;
                return Ok(Numeric::Finite(BigDecimal::new(signed.into(), scale)));
            }
            BigDecimal::from_str(text)
                .map(Numeric::Finite)
                .map_err(|_| "not a decimal number".into())
        }
    }
}

/// money as `cash_out` prints it: currency symbol, grouping, and a minus sign or parentheses
/// around negative amounts, e.g. `$1,234.56`, `-$1.00`.
fn parse_money(text: &str, fraction_digits: u32) -> Result<Numeric, Problem> {
    const DECIMAL_POINT_HINT: &str = "tributary reads money printed with '.' as the decimal point \
         (lc_monetary C or en_US style)";
    if fraction_digits > DecodeOptions::MAX_MONEY_FRACTION_DIGITS {
        return Err(format!(
            "money.fraction.digits is {fraction_digits}, more than {}",
            DecodeOptions::MAX_MONEY_FRACTION_DIGITS
        ));
    }
    let mut negative = false;
    let mut seen_point = false;
    let mut number = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            '.' if !seen_point => {
                seen_point = true;
                number.push('.');
            }
            '.' => return Err(format!("more than one '.'; {DECIMAL_POINT_HINT}")),
            // A ',' after the point means ',' is the decimal point and '.' groups thousands.
            ',' if seen_point => return Err(format!("',' after '.'; {DECIMAL_POINT_HINT}")),
            '-' | '(' if !negative => negative = true,
            '-' | '(' => return Err("more than one minus sign".into()),
            ',' | ')' | '$' => {}
            // Currency symbols and (non-breaking) spaces that some locales print.
            c if c.is_whitespace() || !c.is_ascii() => {}
            _ => return Err(format!("unexpected character; {DECIMAL_POINT_HINT}")),
        }
    }
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return Err("no digits".into());
    }
    if number.ends_with('.') {
        number.push('0');
    }
    if number.starts_with('.') {
        number.insert(0, '0');
    }
    if negative {
        number.insert(0, '-');
    }
    let amount = BigDecimal::from_str(&number).map_err(|_| "not an amount".to_owned())?;
    Ok(Numeric::Finite(amount.with_scale_round(
        i64::from(fraction_digits),
        RoundingMode::HalfUp,
    )))
}

fn parse_bytea(text: &str) -> Result<Vec<u8>, Problem> {
    let Some(hex) = text.strip_prefix("\\x") else {
        return Err(
            "not in hex format (\\x...); the escape format is not supported, \
                    set bytea_output = hex for the replication user or the server"
                .into(),
        );
    };
    if hex.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(high), Some(low)) => Ok(high << 4 | low),
            _ => Err("not a hex digit".to_owned()),
        })
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_bits(text: &str) -> Result<String, Problem> {
    if text.bytes().all(|b| b == b'0' || b == b'1') {
        Ok(text.to_owned())
    } else {
        Err("not a string of 0 and 1".into())
    }
}

const DATE_STYLE_HINT: &str = "expected ISO output (DateStyle=ISO)";

fn parse_date(text: &str) -> Result<Date, Problem> {
    match text {
        "infinity" => return Ok(Date::PositiveInfinity),
        "-infinity" => return Ok(Date::NegativeInfinity),
        _ => {}
    }
    let (body, before_christ) = strip_bc(text);
    let days = parse_ymd(body, before_christ)?;
    i32::try_from(days)
        .map(Date::Days)
        .map_err(|_| "date out of range".into())
}

/// `str::split_once` for an ASCII delimiter, searched bytewise (the char searcher showed in
/// snapshot profiles).
fn split_at_byte(text: &str, delimiter: u8) -> Option<(&str, &str)> {
    debug_assert!(delimiter.is_ascii());
    let at = memchr::memchr(delimiter, text.as_bytes())?;
    Some((&text[..at], &text[at + 1..]))
}

/// PostgreSQL prints BC years as `0044-03-15 BC`, after any time and zone.
fn strip_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    }
}

/// `YYYY-MM-DD` (four or more year digits) to days since 1970-01-01, proleptic Gregorian.
fn parse_ymd(text: &str, before_christ: bool) -> Result<i64, Problem> {
    let bytes = text.as_bytes();
    // The usual four-digit year is cut at fixed places; the rest is split at its dashes.
    let fixed = bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-';
    let mut parts = text.split('-');
    let (Some(year), Some(month), Some(day), None) = (if fixed {
        (Some(&text[..4]), Some(&text[5..7]), Some(&text[8..]), None)
    } else {
        (parts.next(), parts.next(), parts.next(), parts.next())
    }) else {
        return Err(format!("not a YYYY-MM-DD date; {DATE_STYLE_HINT}"));
    };
    let (Some(year), Some(month), Some(day)) = (
        parse_digits(year, 4, 9),
        parse_digits(month, 2, 2),
        parse_digits(day, 2, 2),
    ) else {
        return Err(format!("not a YYYY-MM-DD date; {DATE_STYLE_HINT}"));
    };
    if year == 0 {
        return Err("year 0 does not exist (1 BC precedes 1 AD)".into());
    }
    // 1 BC is astronomical year 0.
    let year = if before_christ { 1 - year } else { year };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such day in the calendar".into());
    }
    Ok(days_from_civil(year, month, day))
}

/// The value of an all-digit field of `min_len..=max_len` digits (at most 10, so no overflow).
fn parse_digits(text: &str, min_len: usize, max_len: usize) -> Option<i64> {
    if !(min_len..=max_len).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0i64, |acc, b| {
        acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to an astronomical-year date (H. Hinnant's `days_from_civil`); chrono's
/// range stops short of PostgreSQL's (up to year 5874897).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `HH:MM:SS[.ffffff]` to microseconds past midnight; `24:00:00` only where `allow_24`.
fn parse_time_of_day(text: &str, allow_24: bool) -> Result<i64, Problem> {
    let bytes = text.as_bytes();
    let fixed =
        bytes.len() >= 8 && bytes[2] == b':' && bytes[5] == b':' && !bytes[6..].contains(&b':');
    let mut parts = text.split(':');
    let (Some(hours), Some(minutes), Some(seconds), None) = (if fixed {
        (Some(&text[..2]), Some(&text[3..5]), Some(&text[6..]), None)
    } else {
        (parts.next(), parts.next(), parts.next(), parts.next())
    }) else {
        return Err("not an HH:MM:SS time".into());
    };
    let (Some(hours), Some(minutes)) = (parse_digits(hours, 2, 2), parse_digits(minutes, 2, 2))
    else {
        return Err("not an HH:MM:SS time".into());
    };
    let seconds_micros = parse_seconds(seconds)?;
    let micros = (hours * 60 + minutes) * 60 * MICROS_PER_SECOND + seconds_micros;
    // Minutes and seconds are in range, so only 24:00:00 itself reaches a whole day.
    let limit = if allow_24 {
        MICROS_PER_DAY
    } else {
        MICROS_PER_DAY - 1
    };
    if minutes > 59 || micros > limit {
        return Err("time of day out of range".into());
    }
    Ok(micros)
}

/// `SS[.ffffff]` to microseconds.
fn parse_seconds(text: &str) -> Result<i64, Problem> {
    let (whole, fraction) = match text.as_bytes().get(2) {
        Some(b'.') => (&text[..2], Some(&text[3..])),
        _ => (text, None),
    };
    let Some(whole) = parse_digits(whole, 2, 2).filter(|s| *s < 60) else {
        return Err("seconds are not 00 to 59".into());
    };
    let fraction_micros = match fraction {
        None => 0,
        Some(digits) => {
            let Some(value) = parse_digits(digits, 1, 6) else {
                return Err("fraction of a second is not 1 to 6 digits".into());
            };
            value * 10i64.pow(6 - digits.len() as u32)
        }
    };
    Ok(whole * MICROS_PER_SECOND + fraction_micros)
}

/// A zone offset as ISO output prints it: `+HH`, `+HH:MM` or `+HH:MM:SS`, east of UTC.
fn parse_offset(text: &str) -> Result<i32, Problem> {
    let bad = || "not a +HH[:MM[:SS]] zone offset".to_owned();
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let mut seconds = 0i64;
    let mut fields = 0;
    for (index, field) in rest.split(':').enumerate() {
        let limit = if index == 0 { 23 } else { 59 };
        let value = parse_digits(field, 2, 2)
            .filter(|v| *v <= limit)
            .ok_or_else(bad)?;
        seconds = seconds * 60 + value;
        fields += 1;
        if fields > 3 {
            return Err(bad());
        }
    }
    // Scale `+HH` and `+HH:MM` up to seconds.
    for _ in fields..3 {
        seconds *= 60;
    }
    i32::try_from(sign * seconds).map_err(|_| bad())
}

/// Splits `<clock><offset>` where the offset starts with the first sign.
fn split_offset(text: &str) -> Result<(&str, i32), Problem> {
    let Some(at) = text.bytes().position(|b| b == b'+' || b == b'-') else {
        return Err("no zone offset".into());
    };
    Ok((&text[..at], parse_offset(&text[at..])?))
}

fn parse_timetz(text: &str) -> Result<(i64, i32), Problem> {
    let (clock, offset_seconds) = split_offset(text)?;
    Ok((parse_time_of_day(clock, true)?, offset_seconds))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]` to microseconds since the epoch (in UTC
/// when `with_zone`).
fn parse_timestamp(text: &str, with_zone: bool) -> Result<Timestamp, Problem> {
    match text {
        "infinity" => return Ok(Timestamp::PositiveInfinity),
        "-infinity" => return Ok(Timestamp::NegativeInfinity),
        _ => {}
    }
    let (body, before_christ) = strip_bc(text);
    let Some((date, time)) = split_at_byte(body, b' ') else {
        return Err(format!(
            "not a 'YYYY-MM-DD HH:MM:SS' timestamp; {DATE_STYLE_HINT}"
        ));
    };
    let days = parse_ymd(date, before_christ)?;
    let (clock, offset_seconds) = if with_zone {
        split_offset(time)?
    } else {
        (time, 0)
    };
    let time_micros = parse_time_of_day(clock, false)?;
    days.checked_mul(MICROS_PER_DAY)
        .and_then(|micros| micros.checked_add(time_micros))
        .and_then(|micros| micros.checked_sub(i64::from(offset_seconds) * MICROS_PER_SECOND))
        .map(Timestamp::Micros)
        .ok_or_else(|| "timestamp out of range".into())
}

/// IntervalStyle=postgres output: `[N year[s]] [N mon[s]] [N day[s]] [[+-]H:MM:SS[.ffffff]]`,
/// each part signed on its own, e.g. `-1 days +02:00:00`; a zero interval is `00:00:00`.
fn parse_interval(text: &str) -> Result<Value, Problem> {
    const STYLE_HINT: &str = "expected IntervalStyle=postgres output such as \
                              '1 year 2 mons -3 days +04:05:06.7'";
    let mut months = 0i64;
    let mut days = 0i64;
    let mut micros = 0i64;
    let mut seen_fields = false;
    let mut seen_time = false;
    let mut tokens = text.split(' ');
    while let Some(token) = tokens.next() {
        if seen_time {
            return Err(format!("text after the time part; {STYLE_HINT}"));
        }
        if token.contains(':') {
            micros = parse_interval_time(token)?;
            seen_time = true;
            continue;
        }
        let count: i64 = token
            .parse()
            .map_err(|_| format!("not a count of years, months or days; {STYLE_HINT}"))?;
        let overflow = || "interval out of range".to_owned();
        match tokens.next() {
            Some("year" | "years") => {
                months = count
                    .checked_mul(12)
                    .and_then(|m| m.checked_add(months))
                    .ok_or_else(overflow)?;
            }
            Some("mon" | "mons") => months = months.checked_add(count).ok_or_else(overflow)?,
            Some("day" | "days") => days = days.checked_add(count).ok_or_else(overflow)?,
            _ => return Err(format!("a count without a known unit; {STYLE_HINT}")),
        }
        seen_fields = true;
    }
    if !seen_fields && !seen_time {
        return Err(format!("empty; {STYLE_HINT}"));
    }
    match (i32::try_from(months), i32::try_from(days)) {
        (Ok(months), Ok(days)) => Ok(Value::Interval {
            months,
            days,
            micros,
        }),
        _ => Err("interval out of range".into()),
    }
}

/// `[+-]H:MM:SS[.ffffff]`, hours unbounded (`100:00:00`); the sign covers the whole part.
fn parse_interval_time(text: &str) -> Result<i64, Problem> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let bad = || "not an [+-]H:MM:SS time part".to_owned();
    let mut parts = unsigned.split(':');
    let (Some(hours), Some(minutes), Some(seconds), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let hours = parse_digits(hours, 2, 10).ok_or_else(bad)?;
    let minutes = parse_digits(minutes, 2, 2)
        .filter(|m| *m < 60)
        .ok_or_else(bad)?;
    let seconds = parse_seconds(seconds)?;
    let magnitude = hours
        .checked_mul(3_600 * MICROS_PER_SECOND)
        .and_then(|micros| micros.checked_add(minutes * 60 * MICROS_PER_SECOND + seconds))
        .ok_or_else(|| "interval out of range".to_owned())?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// A cursor over text whose syntax characters are all ASCII, so byte positions at them are
/// always char boundaries.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn eat(&mut self, expected: u8) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.pos += 1;
        }
        found
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// The char after a backslash, which stands for itself.
    fn escaped_char(&mut self) -> Result<char, Problem> {
        let escaped = self.text[self.pos..]
            .chars()
            .next()
            .ok_or("a backslash at the end")?;
        self.pos += escaped.len_utf8();
        Ok(escaped)
    }

    /// A double-quoted string, the opening quote already eaten; `\x` stands for `x`.
    fn quoted(&mut self) -> Result<String, Problem> {
        let mut out = String::new();
        let mut start = self.pos;
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    out.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    out.push(self.escaped_char()?);
                    start = self.pos;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// An unquoted word up to (not including) whitespace or one of `stops`, with backslash
    /// escapes resolved. Returns the word and whether it was written plainly (no escapes).
    fn unquoted(&mut self, stops: &[u8]) -> Result<(String, bool), Problem> {
        let mut out = String::new();
        let mut plain = true;
        let mut start = self.pos;
        loop {
            match self.peek() {
                Some(b'\\') => {
                    out.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    out.push(self.escaped_char()?);
                    plain = false;
                    start = self.pos;
                }
                Some(b) if !b.is_ascii_whitespace() && !stops.contains(&b) => self.pos += 1,
                _ => {
                    out.push_str(&self.text[start..self.pos]);
                    return Ok((out, plain));
                }
            }
        }
    }
}

/// hstore output: `"a"=>"1", "b"=>NULL`; keys and values quoted with `\"` and `\\` escapes.
/// Unquoted words (which hstore's input accepts) are read too.
fn parse_hstore(text: &str) -> Result<Vec<(String, Option<String>)>, Problem> {
    let mut scanner = Scanner::new(text);
    let mut pairs = Vec::new();
    scanner.skip_whitespace();
    while !scanner.at_end() {
        let key = if scanner.eat(b'"') {
            scanner.quoted()?
        } else {
            let (key, _) = scanner.unquoted(b"=,\"")?;
            if key.is_empty() {
                return Err("expected a key".into());
            }
            key
        };
        scanner.skip_whitespace();
        if !(scanner.eat(b'=') && scanner.eat(b'>')) {
            return Err("expected => after a key".into());
        }
        scanner.skip_whitespace();
        let value = if scanner.eat(b'"') {
            Some(scanner.quoted()?)
        } else {
            match scanner.unquoted(b",\"=")? {
                (word, true) if word.eq_ignore_ascii_case("NULL") => None,
                (word, _) if word.is_empty() => return Err("expected a value".into()),
                (word, _) => Some(word),
            }
        };
        pairs.push((key, value));
        scanner.skip_whitespace();
        if scanner.eat(b',') {
            scanner.skip_whitespace();
            if scanner.at_end() {
                return Err("a ',' at the end".into());
            }
        } else if !scanner.at_end() {
            return Err("expected ',' between pairs".into());
        }
    }
    Ok(pairs)
}

/// Array output: `{1,2,NULL}`, `{"a b","c\"d"}`, nested `{{1,2},{3,4}}`, optionally after
/// dimension bounds `[0:1]=` (ignored). Elements are decoded as `element` types.
fn decode_array(
    element: &PgType,
    type_modifier: i32,
    text: &str,
    options: &DecodeOptions,
) -> Result<Value, Problem> {
    // box is the one built-in type whose arrays are delimited by ';' (its text contains ',').
    let delimiter = if element.name == "box" { b';' } else { b',' };
    let mut scanner = Scanner::new(text);
    scanner.skip_whitespace();
    skip_dimension_bounds(&mut scanner)?;
    let array = ArrayParser {
        element,
        type_modifier,
        options,
        delimiter,
    }
    .parse(&mut scanner, 1)?;
    scanner.skip_whitespace();
    if !scanner.at_end() {
        return Err("text after the closing '}'".into());
    }
    Ok(array)
}

/// `[lower:upper]...=` before the braces, printed when a lower bound is not 1.
fn skip_dimension_bounds(scanner: &mut Scanner<'_>) -> Result<(), Problem> {
    if scanner.peek() != Some(b'[') {
        return Ok(());
    }
    while scanner.eat(b'[') {
        let start = scanner.pos;
        while scanner
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b == b':' || b == b'-' || b == b'+')
        {
            scanner.pos += 1;
        }
        if scanner.pos == start || !scanner.eat(b']') {
            return Err("malformed dimension bounds".into());
        }
    }
    scanner.skip_whitespace();
    if !scanner.eat(b'=') {
        return Err("expected '=' after dimension bounds".into());
    }
    scanner.skip_whitespace();
    Ok(())
}

struct ArrayParser<'a> {
    element: &'a PgType,
    type_modifier: i32,
    options: &'a DecodeOptions,
    delimiter: u8,
}

impl ArrayParser<'_> {
    /// One `{...}` level; `depth` counts dimensions from 1.
    fn parse(&self, scanner: &mut Scanner<'_>, depth: usize) -> Result<Value, Problem> {
        if !scanner.eat(b'{') {
            return Err("expected '{'".into());
        }
        let mut elements = Vec::new();
        let mut holds_arrays: Option<bool> = None;
        scanner.skip_whitespace();
        if scanner.eat(b'}') {
            return Ok(Value::Array(elements));
        }
        loop {
            scanner.skip_whitespace();
            let is_array = scanner.peek() == Some(b'{');
            if *holds_arrays.get_or_insert(is_array) != is_array {
                return Err("a level mixes sub-arrays and elements".into());
            }
            let element = if is_array {
                if depth >= MAX_ARRAY_DIMENSIONS {
                    return Err(format!("more than {MAX_ARRAY_DIMENSIONS} dimensions"));
                }
                Some(self.parse(scanner, depth + 1)?)
            } else if scanner.eat(b'"') {
                let text = scanner.quoted()?;
                Some(self.decode_element(&text, elements.len())?)
            } else {
                let (text, plain) = scanner.unquoted(&[self.delimiter, b'{', b'}', b'"'])?;
                if text.is_empty() {
                    return Err("an empty unquoted element".into());
                }
                // Only a plain unquoted NULL is null; "NULL" quoted is the string.
                if plain && text.eq_ignore_ascii_case("NULL") {
                    None
                } else {
                    Some(self.decode_element(&text, elements.len())?)
                }
            };
            elements.push(element);
            scanner.skip_whitespace();
            if scanner.eat(b'}') {
                return Ok(Value::Array(elements));
            }
            if !scanner.eat(self.delimiter) {
                return Err(format!(
                    "expected '{}' or '}}' after an element",
                    char::from(self.delimiter)
                ));
            }
        }
    }

    fn decode_element(&self, text: &str, index: usize) -> Result<Value, Problem> {
        decode_text(self.element, self.type_modifier, text, self.options)
            .map_err(|err| format!("element {index}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn base(base: BaseType) -> PgType {
        PgType {
            oid: 0,
            name: format!("{base:?}").to_lowercase(),
            kind: TypeKind::Base(base),
        }
    }

    fn array_of(element: PgType) -> PgType {
        PgType {
            oid: 0,
            name: format!("_{}", element.name),
            kind: TypeKind::Array(Box::new(element)),
        }
    }

    fn decode(base_type: BaseType, text: &str) -> Result<Value, TypeError> {
        decode_text(&base(base_type), -1, text, &DecodeOptions::default())
    }

    fn ok(base_type: BaseType, text: &str) -> Value {
        decode(base_type, text)
            .unwrap_or_else(|err| panic!("{base_type:?} {text:?} should decode: {err}"))
    }

    fn err(base_type: BaseType, text: &str) -> TypeError {
        match decode(base_type, text) {
            Ok(value) => panic!("{base_type:?} {text:?} should not decode, got {value:?}"),
            Err(err) => err,
        }
    }

    fn decimal(text: &str) -> BigDecimal {
        BigDecimal::from_str(text).unwrap()
    }

    /// A finite numeric's value and scale (BigDecimal's equality ignores scale).
    fn numeric_parts(value: &Value) -> (BigDecimal, i64) {
        match value {
            Value::Numeric(Numeric::Finite(d)) => (d.clone(), d.fractional_digit_count()),
            other => panic!("expected a finite numeric, got {other:?}"),
        }
    }

    const ALL_BASE_TYPES: [BaseType; 29] = [
        BaseType::Bool,
        BaseType::Int2,
        BaseType::Int4,
        BaseType::Int8,
        BaseType::Oid,
        BaseType::Float4,
        BaseType::Float8,
        BaseType::Numeric,
        BaseType::Money,
        BaseType::Text,
        BaseType::Bytea,
        BaseType::Uuid,
        BaseType::Json,
        BaseType::Jsonb,
        BaseType::Xml,
        BaseType::Date,
        BaseType::Time,
        BaseType::TimeTz,
        BaseType::Timestamp,
        BaseType::TimestampTz,
        BaseType::Interval,
        BaseType::Inet,
        BaseType::Cidr,
        BaseType::MacAddr,
        BaseType::MacAddr8,
        BaseType::Bit,
        BaseType::VarBit,
        BaseType::Hstore,
        BaseType::TsVector,
    ];

    #[test]
    fn bool_is_t_or_f() {
        assert_eq!(ok(BaseType::Bool, "t"), Value::Bool(true));
        assert_eq!(ok(BaseType::Bool, "f"), Value::Bool(false));
        err(BaseType::Bool, "true");
        err(BaseType::Bool, "");
    }

    #[test]
    fn integers_at_their_limits() {
        assert_eq!(ok(BaseType::Int2, "-32768"), Value::Int16(i16::MIN));
        assert_eq!(ok(BaseType::Int4, "2147483647"), Value::Int32(i32::MAX));
        assert_eq!(
            ok(BaseType::Int8, "-9223372036854775808"),
            Value::Int64(i64::MIN)
        );
        assert_eq!(ok(BaseType::Oid, "4294967295"), Value::Int64(4_294_967_295));
        err(BaseType::Int2, "32768");
        err(BaseType::Oid, "-1");
        err(BaseType::Int4, "1.0");
        err(BaseType::Int8, "");
    }

    #[test]
    fn floats_with_special_values() {
        assert_eq!(ok(BaseType::Float4, "1.5"), Value::Float32(1.5));
        assert_eq!(ok(BaseType::Float8, "1e+30"), Value::Float64(1e30));
        assert_eq!(ok(BaseType::Float8, "-0"), Value::Float64(-0.0));
        assert_eq!(
            ok(BaseType::Float8, "-Infinity"),
            Value::Float64(f64::NEG_INFINITY)
        );
        assert_eq!(
            ok(BaseType::Float4, "Infinity"),
            Value::Float32(f32::INFINITY)
        );
        assert!(matches!(ok(BaseType::Float8, "NaN"), Value::Float64(v) if v.is_nan()));
        assert!(matches!(ok(BaseType::Float4, "NaN"), Value::Float32(v) if v.is_nan()));
        // The shortest round-trip text of a float4 decodes to that exact float4.
        assert_eq!(
            ok(BaseType::Float4, "3.4028235e+38"),
            Value::Float32(f32::MAX)
        );
        err(BaseType::Float8, "inf");
        err(BaseType::Float8, "1,5");
        err(BaseType::Float8, "");
    }

    #[test]
    fn numeric_keeps_the_scale_of_the_text() {
        assert_eq!(
            numeric_parts(&ok(BaseType::Numeric, "1.50")),
            (decimal("1.5"), 2)
        );
        assert_eq!(
            numeric_parts(&ok(BaseType::Numeric, "-0.001")),
            (decimal("-0.001"), 3)
        );
        assert_eq!(
            numeric_parts(&ok(BaseType::Numeric, "120")),
            (decimal("120"), 0)
        );
        let long = format!("{}.{}", "9".repeat(100), "1".repeat(50));
        assert_eq!(numeric_parts(&ok(BaseType::Numeric, &long)).1, 50);
        assert_eq!(ok(BaseType::Numeric, "NaN"), Value::Numeric(Numeric::NaN));
        assert_eq!(
            ok(BaseType::Numeric, "Infinity"),
            Value::Numeric(Numeric::PositiveInfinity)
        );
        assert_eq!(
            ok(BaseType::Numeric, "-Infinity"),
            Value::Numeric(Numeric::NegativeInfinity)
        );
        for bad in ["1e5", "1.", ".5", "--1", "", "1,000", "nan"] {
            err(BaseType::Numeric, bad);
        }
    }

    #[test]
    fn money_strips_symbol_and_grouping() {
        assert_eq!(
            numeric_parts(&ok(BaseType::Money, "$1,234.56")),
            (decimal("1234.56"), 2)
        );
        assert_eq!(
            numeric_parts(&ok(BaseType::Money, "-$1.00")),
            (decimal("-1"), 2)
        );
        assert_eq!(
            numeric_parts(&ok(BaseType::Money, "-$1,234,567.89")),
            (decimal("-1234567.89"), 2)
        );
        assert_eq!(
            numeric_parts(&ok(BaseType::Money, "($5.25)")),
            (decimal("-5.25"), 2)
        );
        assert_eq!(
            numeric_parts(&ok(BaseType::Money, "$0.00")),
            (decimal("0"), 2)
        );
        // money.fraction.digits sets the scale.
        let options = DecodeOptions {
            money_fraction_digits: 4,
        };
        let value = decode_text(&base(BaseType::Money), -1, "$12.34", &options).unwrap();
        assert_eq!(numeric_parts(&value), (decimal("12.34"), 4));
        let options = DecodeOptions {
            money_fraction_digits: 0,
        };
        let value = decode_text(&base(BaseType::Money), -1, "$12.50", &options).unwrap();
        assert_eq!(numeric_parts(&value), (decimal("13"), 0));
        let options = DecodeOptions {
            money_fraction_digits: u32::MAX,
        };
        decode_text(&base(BaseType::Money), -1, "$12.50", &options).unwrap_err();
        // A ',' decimal point is refused, not misread.
        let problem = err(BaseType::Money, "1.234,56 €").to_string();
        assert!(problem.contains("lc_monetary"), "{problem}");
        err(BaseType::Money, "$");
        err(BaseType::Money, "--$1");
        err(BaseType::Money, "1.2.3");
        err(BaseType::Money, "12abc");
    }

    #[test]
    fn text_like_types_keep_their_text() {
        for (base_type, text) in [
            (BaseType::Text, "héllo, wörld"),
            (BaseType::Text, ""),
            (BaseType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            (BaseType::Json, "{\"a\": [1, 2]}"),
            (BaseType::Jsonb, "{\"a\": [1, 2], \"b\": null}"),
            (BaseType::Xml, "<a>b</a>"),
            (BaseType::Inet, "192.168.0.1/24"),
            (BaseType::Cidr, "10.0.0.0/8"),
            (BaseType::MacAddr, "08:00:2b:01:02:03"),
            (BaseType::MacAddr8, "08:00:2b:01:02:03:04:05"),
            (BaseType::TsVector, "'a' 'fat':2"),
        ] {
            assert_eq!(ok(base_type, text), Value::Text(text.to_owned()));
        }
    }

    #[test]
    fn enums_and_unknown_types_are_text() {
        let mood = PgType {
            oid: 1,
            name: "mood".into(),
            kind: TypeKind::Enum(vec!["sad".into(), "happy".into()]),
        };
        let point = PgType {
            oid: 600,
            name: "point".into(),
            kind: TypeKind::Unknown,
        };
        let options = DecodeOptions::default();
        assert_eq!(
            decode_text(&mood, -1, "happy", &options).unwrap(),
            Value::Text("happy".into())
        );
        assert_eq!(
            decode_text(&point, -1, "(1,2)", &options).unwrap(),
            Value::Text("(1,2)".into())
        );
    }

    #[test]
    fn bytea_hex_only() {
        assert_eq!(
            ok(BaseType::Bytea, "\\x0102ff"),
            Value::Bytes(vec![1, 2, 255])
        );
        assert_eq!(
            ok(BaseType::Bytea, "\\xABcd"),
            Value::Bytes(vec![0xab, 0xcd])
        );
        assert_eq!(ok(BaseType::Bytea, "\\x"), Value::Bytes(vec![]));
        let escape = err(BaseType::Bytea, "abc\\000").to_string();
        assert!(escape.contains("bytea_output = hex"), "{escape}");
        err(BaseType::Bytea, "\\x012");
        err(BaseType::Bytea, "\\x0g");
    }

    #[test]
    fn bits() {
        assert_eq!(ok(BaseType::Bit, "0101"), Value::Bits("0101".into()));
        assert_eq!(ok(BaseType::VarBit, ""), Value::Bits(String::new()));
        err(BaseType::Bit, "012");
    }

    #[test]
    fn dates_including_bc_and_infinities() {
        assert_eq!(ok(BaseType::Date, "1970-01-01"), Value::Date(Date::Days(0)));
        assert_eq!(
            ok(BaseType::Date, "2024-02-29"),
            Value::Date(Date::Days(19_782))
        );
        assert_eq!(
            ok(BaseType::Date, "1969-12-31"),
            Value::Date(Date::Days(-1))
        );
        // 1 BC is year 0, a leap year; 44 BC is year -43.
        assert_eq!(
            ok(BaseType::Date, "0001-01-01 BC"),
            Value::Date(Date::Days(-719_528))
        );
        assert_eq!(
            ok(BaseType::Date, "0001-12-31 BC"),
            Value::Date(Date::Days(-719_163))
        );
        ok(BaseType::Date, "0001-02-29 BC");
        assert_eq!(
            ok(BaseType::Date, "0044-03-15 BC"),
            Value::Date(Date::Days(-735_160))
        );
        assert_eq!(
            ok(BaseType::Date, "5874897-12-31"),
            Value::Date(Date::Days(2_145_042_905))
        );
        assert_eq!(
            ok(BaseType::Date, "infinity"),
            Value::Date(Date::PositiveInfinity)
        );
        assert_eq!(
            ok(BaseType::Date, "-infinity"),
            Value::Date(Date::NegativeInfinity)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "0000-01-01",
            "02-29-2024",
            "Thu Feb 29 2024",
            "999999999-12-31",
            "",
        ] {
            err(BaseType::Date, bad);
        }
        assert!(
            err(BaseType::Date, "02/29/2024")
                .to_string()
                .contains("DateStyle=ISO")
        );
    }

    #[test]
    fn days_from_civil_matches_chrono() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut date = NaiveDate::from_ymd_opt(-1000, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(3000, 1, 1).unwrap();
        while date < end {
            assert_eq!(
                days_from_civil(
                    i64::from(date.year()),
                    date.month().into(),
                    date.day().into()
                ),
                (date - epoch).num_days(),
                "{date}"
            );
            date = date + chrono::Days::new(13);
        }
    }

    #[test]
    fn times_including_24_00() {
        assert_eq!(ok(BaseType::Time, "00:00:00"), Value::Time(0));
        assert_eq!(
            ok(BaseType::Time, "13:45:00.5"),
            Value::Time((13 * 3600 + 45 * 60) * 1_000_000 + 500_000)
        );
        assert_eq!(
            ok(BaseType::Time, "23:59:59.999999"),
            Value::Time(MICROS_PER_DAY - 1)
        );
        assert_eq!(ok(BaseType::Time, "24:00:00"), Value::Time(MICROS_PER_DAY));
        for bad in [
            "24:00:00.000001",
            "25:00:00",
            "12:60:00",
            "12:00:60",
            "12:00",
            "12:00:00.1234567",
            "1:00:00",
            "12:00:00+01",
        ] {
            err(BaseType::Time, bad);
        }
    }

    #[test]
    fn timetz_with_odd_offsets() {
        let at = |micros, offset_seconds| Value::TimeTz {
            micros,
            offset_seconds,
        };
        let quarter_to_two = (13 * 3600 + 45 * 60) * 1_000_000;
        assert_eq!(
            ok(BaseType::TimeTz, "13:45:00.5+05:30"),
            at(quarter_to_two + 500_000, 19_800)
        );
        assert_eq!(
            ok(BaseType::TimeTz, "13:45:00+05:30:15"),
            at(quarter_to_two, 19_815)
        );
        assert_eq!(
            ok(BaseType::TimeTz, "13:45:00-08"),
            at(quarter_to_two, -28_800)
        );
        assert_eq!(
            ok(BaseType::TimeTz, "13:45:00-03:30:52"),
            at(quarter_to_two, -(3 * 3600 + 30 * 60 + 52))
        );
        assert_eq!(ok(BaseType::TimeTz, "24:00:00+00"), at(MICROS_PER_DAY, 0));
        for bad in [
            "13:45:00",
            "13:45:00+5",
            "13:45:00+05:3",
            "13:45:00+05:30:15:01",
            "13:45:00+24",
            "13:45:00+",
        ] {
            err(BaseType::TimeTz, bad);
        }
    }

    #[test]
    fn timestamps_including_bc_and_infinities() {
        assert_eq!(
            ok(BaseType::Timestamp, "2024-02-29 13:45:00.123456"),
            Value::Timestamp(Timestamp::Micros(
                19_782 * MICROS_PER_DAY + (13 * 3600 + 45 * 60) * 1_000_000 + 123_456
            ))
        );
        assert_eq!(
            ok(BaseType::Timestamp, "1969-12-31 23:59:59.999999"),
            Value::Timestamp(Timestamp::Micros(-1))
        );
        assert_eq!(
            ok(BaseType::Timestamp, "0044-03-15 12:00:00 BC"),
            Value::Timestamp(Timestamp::Micros(
                days_from_civil(-43, 3, 15) * MICROS_PER_DAY + 12 * 3600 * 1_000_000
            ))
        );
        assert_eq!(
            ok(BaseType::Timestamp, "infinity"),
            Value::Timestamp(Timestamp::PositiveInfinity)
        );
        assert_eq!(
            ok(BaseType::Timestamp, "-infinity"),
            Value::Timestamp(Timestamp::NegativeInfinity)
        );
        // The event model counts from 1970 in an i64, which ends 29 years short of
        // PostgreSQL's last timestamp (294276-12-31, counted from 2000).
        assert_eq!(
            ok(BaseType::Timestamp, "294247-01-10 04:00:54.775807"),
            Value::Timestamp(Timestamp::Micros(i64::MAX))
        );
        err(BaseType::Timestamp, "294247-01-10 04:00:54.775808");
        err(BaseType::Timestamp, "294276-12-31 23:59:59.999999");
        assert_eq!(
            ok(BaseType::Timestamp, "4713-11-24 00:00:00 BC"),
            Value::Timestamp(Timestamp::Micros(-210_835_180_800_000_000))
        );
        for bad in [
            "2024-02-29T13:45:00",
            "2024-02-29 24:00:00",
            "2024-02-29 13:45:00+01",
            "2024-02-29",
            "Thu Feb 29 13:45:00 2024",
        ] {
            err(BaseType::Timestamp, bad);
        }
    }

    #[test]
    fn timestamptz_converts_to_utc() {
        let noon_utc = 19_782 * MICROS_PER_DAY + 12 * 3600 * 1_000_000;
        for (text, expected) in [
            ("2024-02-29 12:00:00+00", noon_utc),
            ("2024-02-29 13:00:00+01", noon_utc),
            ("2024-02-29 17:30:00+05:30", noon_utc),
            ("2024-02-29 08:30:00-03:30", noon_utc),
            ("2024-02-29 12:00:00.25-00:00:01", noon_utc + 1_250_000),
            ("2024-03-01 01:45:00+13:45", noon_utc),
            // Before railway time: St. John's local mean time, seconds and all.
            (
                "1799-12-31 20:29:08-03:30:52",
                days_from_civil(1800, 1, 1) * MICROS_PER_DAY,
            ),
            (
                "0002-12-31 20:29:08-03:30:52 BC",
                days_from_civil(0, 1, 1) * MICROS_PER_DAY,
            ),
        ] {
            assert_eq!(
                ok(BaseType::TimestampTz, text),
                Value::TimestampTz(Timestamp::Micros(expected)),
                "{text}"
            );
        }
        assert_eq!(
            ok(BaseType::TimestampTz, "-infinity"),
            Value::TimestampTz(Timestamp::NegativeInfinity)
        );
        for bad in [
            "2024-02-29 12:00:00",
            "2024-02-29 12:00:00 UTC",
            "2024-02-29 12:00:00+1",
        ] {
            err(BaseType::TimestampTz, bad);
        }
    }

    fn interval(months: i32, days: i32, micros: i64) -> Value {
        Value::Interval {
            months,
            days,
            micros,
        }
    }

    #[test]
    fn intervals_in_postgres_style() {
        let hour = 3_600_000_000i64;
        for (text, expected) in [
            ("00:00:00", interval(0, 0, 0)),
            (
                "1 year 2 mons 3 days 04:05:06.789",
                interval(14, 3, 4 * hour + 5 * 60_000_000 + 6_789_000),
            ),
            ("-1 days +02:00:00", interval(0, -1, 2 * hour)),
            ("3 mons -1 days", interval(3, -1, 0)),
            ("-00:00:01.5", interval(0, 0, -1_500_000)),
            ("-1 years -2 mons", interval(-14, 0, 0)),
            ("1 day -00:00:01", interval(0, 1, -1_000_000)),
            ("-3 days -04:00:00", interval(0, -3, -4 * hour)),
            ("-1 mons +1 day", interval(-1, 1, 0)),
            ("5 days 100:00:00", interval(0, 5, 100 * hour)),
            ("2147483647:00:00", interval(0, 0, 2_147_483_647 * hour)),
            ("-178956970 years -8 mons", interval(i32::MIN, 0, 0)),
            ("1 year 00:00:00.000001", interval(12, 0, 1)),
        ] {
            assert_eq!(ok(BaseType::Interval, text), expected, "{text}");
        }
        for bad in [
            "",
            "1 fortnight",
            "1",
            "@ 1 year",
            "P1Y2M",
            "01:02:03 1 day",
            "1:02",
            "178956971 years",
            "2147483648 days",
            "99999999999:00:00",
            "1 day  00:00:00",
        ] {
            err(BaseType::Interval, bad);
        }
        assert!(
            err(BaseType::Interval, "P1Y")
                .to_string()
                .contains("IntervalStyle=postgres")
        );
    }

    #[test]
    fn hstore_pairs_with_escapes_and_nulls() {
        let pair = |k: &str, v: Option<&str>| (k.to_owned(), v.map(str::to_owned));
        assert_eq!(
            ok(BaseType::Hstore, r#""a"=>"1", "b"=>NULL"#),
            Value::Hstore(vec![pair("a", Some("1")), pair("b", None)])
        );
        assert_eq!(
            ok(BaseType::Hstore, r#""q\"uote"=>"back\\slash", "n"=>"NULL""#),
            Value::Hstore(vec![
                pair("q\"uote", Some("back\\slash")),
                pair("n", Some("NULL")),
            ])
        );
        assert_eq!(
            ok(BaseType::Hstore, r#""ü"=>"", ""=>"=>,""#),
            Value::Hstore(vec![pair("ü", Some("")), pair("", Some("=>,"))])
        );
        assert_eq!(ok(BaseType::Hstore, ""), Value::Hstore(vec![]));
        assert_eq!(
            ok(BaseType::Hstore, "a=>1,b=>null"),
            Value::Hstore(vec![pair("a", Some("1")), pair("b", None)])
        );
        for bad in [
            r#""a"=>"1"#,
            r#""a"=>"1","#,
            r#""a"="1""#,
            r#""a"=>"1" "b"=>"2""#,
            r#""a"=>"#,
            r#""a\"#,
        ] {
            err(BaseType::Hstore, bad);
        }
    }

    fn decode_array_of(element: PgType, text: &str) -> Result<Value, TypeError> {
        decode_text(&array_of(element), -1, text, &DecodeOptions::default())
    }

    fn text(s: &str) -> Option<Value> {
        Some(Value::Text(s.to_owned()))
    }

    #[test]
    fn arrays_of_scalars() {
        let int4 = base(BaseType::Int4);
        assert_eq!(
            decode_array_of(int4.clone(), "{1,2,NULL}").unwrap(),
            Value::Array(vec![Some(Value::Int32(1)), Some(Value::Int32(2)), None])
        );
        assert_eq!(
            decode_array_of(int4.clone(), "{}").unwrap(),
            Value::Array(vec![])
        );
        assert_eq!(
            decode_array_of(int4.clone(), "[0:1]={1,2}").unwrap(),
            Value::Array(vec![Some(Value::Int32(1)), Some(Value::Int32(2))])
        );
        let strings = decode_array_of(
            base(BaseType::Text),
            r#"{"a b","c\"d",NULL,"NULL","",plain,"back\\slash","{x}","x,y"}"#,
        )
        .unwrap();
        assert_eq!(
            strings,
            Value::Array(vec![
                text("a b"),
                text("c\"d"),
                None,
                text("NULL"),
                text(""),
                text("plain"),
                text("back\\slash"),
                text("{x}"),
                text("x,y"),
            ])
        );
        let numerics = decode_array_of(base(BaseType::Numeric), "{1.50,NaN}").unwrap();
        let Value::Array(elements) = numerics else {
            panic!("not an array")
        };
        assert_eq!(
            numeric_parts(elements[0].as_ref().unwrap()),
            (decimal("1.5"), 2)
        );
        assert_eq!(elements[1], Some(Value::Numeric(Numeric::NaN)));
        assert_eq!(
            decode_array_of(
                base(BaseType::TimestampTz),
                r#"{"1970-01-01 05:30:00+05:30",infinity}"#
            )
            .unwrap(),
            Value::Array(vec![
                Some(Value::TimestampTz(Timestamp::Micros(0))),
                Some(Value::TimestampTz(Timestamp::PositiveInfinity)),
            ])
        );
    }

    #[test]
    fn nested_arrays() {
        let int = |v| Some(Value::Int32(v));
        assert_eq!(
            decode_array_of(base(BaseType::Int4), "{{1,2},{3,NULL}}").unwrap(),
            Value::Array(vec![
                Some(Value::Array(vec![int(1), int(2)])),
                Some(Value::Array(vec![int(3), None])),
            ])
        );
        assert_eq!(
            decode_array_of(base(BaseType::Int4), "[1:1][0:1]={{1,2}}").unwrap(),
            Value::Array(vec![Some(Value::Array(vec![int(1), int(2)]))])
        );
        let six = "{{{{{{1}}}}}}";
        decode_array_of(base(BaseType::Int4), six).unwrap();
        let seven = "{{{{{{{1}}}}}}}";
        decode_array_of(base(BaseType::Int4), seven).unwrap_err();
    }

    #[test]
    fn malformed_arrays_are_errors() {
        for bad in [
            "",
            "{",
            "{1,2",
            "{1,,2}",
            "{1,}",
            "{1}}",
            "{1} x",
            "{{1},2}",
            "{1,{2}}",
            "1,2",
            "[0:1]{1,2}",
            "[]={1}",
            "{\"1}",
            "{1,x}",
        ] {
            assert!(
                decode_array_of(base(BaseType::Int4), bad).is_err(),
                "{bad:?} should not decode"
            );
        }
        let err = decode_array_of(base(BaseType::Int4), "{1,x}").unwrap_err();
        assert_eq!(err.type_name(), "_int4");
        assert!(err.problem().contains("element 1"), "{err}");
    }

    #[test]
    fn box_arrays_use_semicolons() {
        let box_type = PgType {
            oid: 603,
            name: "box".into(),
            kind: TypeKind::Unknown,
        };
        assert_eq!(
            decode_array_of(box_type, "{(1,1),(0,0);(2,2),(1,1)}").unwrap(),
            Value::Array(vec![text("(1,1),(0,0)"), text("(2,2),(1,1)")])
        );
    }

    #[test]
    fn domains_decode_as_their_base() {
        let price = PgType {
            oid: 1,
            name: "price".into(),
            kind: TypeKind::Domain(Box::new(base(BaseType::Numeric))),
        };
        let options = DecodeOptions::default();
        let value = decode_text(&price, -1, "10.50", &options).unwrap();
        assert_eq!(numeric_parts(&value), (decimal("10.5"), 2));
        let nested = PgType {
            oid: 2,
            name: "positive_price".into(),
            kind: TypeKind::Domain(Box::new(price)),
        };
        let err = decode_text(&nested, -1, "ten", &options).unwrap_err();
        assert!(err.type_name().starts_with("positive_price"), "{err}");
        let prices = array_of(nested);
        assert_eq!(
            decode_text(&prices, -1, "{1.00}", &options).unwrap(),
            Value::Array(vec![Some(Value::Numeric(Numeric::Finite(decimal("1"))))])
        );
    }

    #[test]
    fn errors_name_the_type_and_truncate_the_text() {
        let long = "x".repeat(10_000);
        let err = err(BaseType::Int8, &long);
        let message = err.to_string();
        assert!(message.contains("int8"), "{message}");
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("10000 bytes"), "{message}");
        assert!(!err.is_transient());
    }

    proptest! {
        #[test]
        fn numerics_up_to_18_digits_equal_bigdecimals_parse(
            text in "-?[0-9]{1,12}(\\.[0-9]{1,8})?",
        ) {
            let parsed = ok(BaseType::Numeric, &text);
            let Value::Numeric(Numeric::Finite(fast)) = parsed else {
                panic!("expected a finite numeric");
            };
            let reference = BigDecimal::from_str(&text).expect("decimal");
            prop_assert_eq!(fast.as_bigint_and_exponent(), reference.as_bigint_and_exponent());
        }

        #[test]
        fn no_text_panics_the_decoder(text in "\\PC{0,40}", index in 0..ALL_BASE_TYPES.len()) {
            let base_type = base(ALL_BASE_TYPES[index]);
            let _ = decode_text(&base_type, -1, &text, &DecodeOptions::default());
            let _ = decode_text(&array_of(base_type), -1, &text, &DecodeOptions::default());
        }

        #[test]
        fn no_near_miss_panics_the_decoder(
            text in "[-+0-9:. ,${}\"\\\\=>a-fBCNULx\\[\\]]{0,40}",
            index in 0..ALL_BASE_TYPES.len(),
        ) {
            let base_type = base(ALL_BASE_TYPES[index]);
            let _ = decode_text(&base_type, -1, &text, &DecodeOptions::default());
            let _ = decode_text(&array_of(base_type), -1, &text, &DecodeOptions::default());
        }

        #[test]
        fn timestamps_round_trip_through_chrono(micros in -210_000_000_000_000_000i64..9_000_000_000_000_000i64) {
            let Some(at) = chrono::DateTime::from_timestamp_micros(micros) else {
                return Ok(());
            };
            let naive = at.naive_utc();
            use chrono::Datelike;
            let (before_christ, year) = if naive.year() <= 0 {
                (" BC", 1 - naive.year())
            } else {
                ("", naive.year())
            };
            let text = format!("{year:04}-{}{before_christ}", naive.format("%m-%d %H:%M:%S%.6f"));
            prop_assert_eq!(
                decode(BaseType::Timestamp, &text).unwrap(),
                Value::Timestamp(Timestamp::Micros(micros))
            );
        }
    }
}
