//! Decoding PostgreSQL's binary send formats (what `COPY … (FORMAT binary)` writes) into the
//! same [`Value`]s as the text decoding. A snapshot reads tables this way: the server writes
//! integers, numerics and timestamps in binary for less CPU than as text, and reading them takes
//! no parsing.
//!
//! Only the types [`decodes_binary`] accepts are read in binary; a table with any other column
//! is copied as text, so that every value still comes out exactly as its text would.

use bigdecimal::num_bigint::BigInt;

use super::{MICROS_PER_SECOND, Problem, TypeError};
use crate::{
    event::{BaseType, Date, Numeric, PgType, Timestamp, TypeKind, Value},
    source::postgres::frames::PG_EPOCH_OFFSET_MICROS,
};

/// `"char"`: one raw byte in binary, an escaped one in text for bytes above 127.
const CHAR_OID: u32 = 18;
/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for dates and timestamps.
const POSTGRES_EPOCH_DAYS: i32 = (PG_EPOCH_OFFSET_MICROS / (86_400 * MICROS_PER_SECOND)) as i32;

const NUMERIC_POSITIVE: u16 = 0x0000;
const NUMERIC_NEGATIVE: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_POSITIVE_INFINITY: u16 = 0xD000;
const NUMERIC_NEGATIVE_INFINITY: u16 = 0xF000;

/// Whether [`decode_binary`] reads values of this type.
pub fn decodes_binary(pg_type: &PgType) -> bool {
    match &pg_type.kind {
        TypeKind::Base(BaseType::Text) => pg_type.oid != CHAR_OID,
        TypeKind::Base(base) => base_decodes_binary(*base),
        // enum_send writes the label, as enum_out does.
        TypeKind::Enum(_) => true,
        TypeKind::Domain(base) => decodes_binary(base),
        TypeKind::Array(_) | TypeKind::Unknown => false,
    }
}

/// Every base type named, so that a new one is a decision here ([`decode_base`] must agree).
fn base_decodes_binary(base: BaseType) -> bool {
    match base {
        BaseType::Bool
        | BaseType::Int2
        | BaseType::Int4
        | BaseType::Int8
        | BaseType::Oid
        | BaseType::Float4
        | BaseType::Float8
        | BaseType::Numeric
        | BaseType::Text
        | BaseType::Bytea
        | BaseType::Uuid
        | BaseType::Json
        | BaseType::Jsonb
        | BaseType::Date
        | BaseType::Time
        | BaseType::TimeTz
        | BaseType::Timestamp
        | BaseType::TimestampTz
        | BaseType::Interval => true,
        BaseType::Money
        | BaseType::Xml
        | BaseType::Inet
        | BaseType::Cidr
        | BaseType::MacAddr
        | BaseType::MacAddr8
        | BaseType::Bit
        | BaseType::VarBit
        | BaseType::Hstore
        | BaseType::TsVector => false,
    }
}

/// Decodes one column value from its type's binary send format; the result equals what
/// [`super::decode_text`] makes of the same value's text.
pub fn decode_binary(pg_type: &PgType, bytes: &[u8]) -> Result<Value, TypeError> {
    let fail = |problem: Problem| TypeError::binary(&pg_type.name, bytes, problem);
    match &pg_type.kind {
        TypeKind::Base(BaseType::Text) if pg_type.oid == CHAR_OID => {
            Err(fail(NOT_READ_IN_BINARY.into()))
        }
        TypeKind::Base(base) => decode_base(*base, bytes).map_err(fail),
        TypeKind::Enum(_) => utf8(bytes).map(Value::Text).map_err(fail),
        TypeKind::Domain(base) => decode_binary(base, bytes).map_err(|err| TypeError {
            type_name: format!("{} (domain over {})", pg_type.name, err.type_name),
            ..err
        }),
        TypeKind::Array(_) | TypeKind::Unknown => Err(fail(NOT_READ_IN_BINARY.into())),
    }
}

const NOT_READ_IN_BINARY: &str = "this type is not read in binary form";

fn decode_base(base: BaseType, bytes: &[u8]) -> Result<Value, Problem> {
    Ok(match base {
        BaseType::Bool => match bytes {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return Err("expected one byte, 0 or 1".into()),
        },
        BaseType::Int2 => Value::Int16(i16::from_be_bytes(fixed(bytes)?)),
        BaseType::Int4 => Value::Int32(i32::from_be_bytes(fixed(bytes)?)),
        BaseType::Int8 => Value::Int64(i64::from_be_bytes(fixed(bytes)?)),
        BaseType::Oid => Value::Int64(i64::from(u32::from_be_bytes(fixed(bytes)?))),
        BaseType::Float4 => Value::Float32(f32::from_be_bytes(fixed(bytes)?)),
        BaseType::Float8 => Value::Float64(f64::from_be_bytes(fixed(bytes)?)),
        BaseType::Numeric => Value::Numeric(numeric(bytes)?),
        BaseType::Text | BaseType::Json => Value::Text(utf8(bytes)?),
        BaseType::Jsonb => match bytes.split_first() {
            Some((1, text)) => Value::Text(utf8(text)?),
            _ => return Err("not jsonb version 1".into()),
        },
        BaseType::Uuid => Value::Text(uuid::Uuid::from_bytes(fixed(bytes)?).to_string()),
        BaseType::Bytea => Value::Bytes(bytes.to_vec()),
        BaseType::Date => Value::Date(match i32::from_be_bytes(fixed(bytes)?) {
            i32::MAX => Date::PositiveInfinity,
            i32::MIN => Date::NegativeInfinity,
            days => Date::Days(
                days.checked_add(POSTGRES_EPOCH_DAYS)
                    .ok_or("date out of range")?,
            ),
        }),
        BaseType::Time => Value::Time(i64::from_be_bytes(fixed(bytes)?)),
        BaseType::TimeTz => {
            let [time @ .., z0, z1, z2, z3] = fixed::<12>(bytes)?;
            Value::TimeTz {
                micros: i64::from_be_bytes(time),
                // Stored as seconds west of UTC; printed (and kept here) as east.
                offset_seconds: i32::from_be_bytes([z0, z1, z2, z3])
                    .checked_neg()
                    .ok_or("zone offset out of range")?,
            }
        }
        BaseType::Timestamp => Value::Timestamp(timestamp(bytes)?),
        BaseType::TimestampTz => Value::TimestampTz(timestamp(bytes)?),
        BaseType::Interval => {
            let [m @ .., d0, d1, d2, d3, n0, n1, n2, n3] = fixed::<16>(bytes)?;
            Value::Interval {
                micros: i64::from_be_bytes(m),
                days: i32::from_be_bytes([d0, d1, d2, d3]),
                months: i32::from_be_bytes([n0, n1, n2, n3]),
            }
        }
        BaseType::Money
        | BaseType::Xml
        | BaseType::Inet
        | BaseType::Cidr
        | BaseType::MacAddr
        | BaseType::MacAddr8
        | BaseType::Bit
        | BaseType::VarBit
        | BaseType::Hstore
        | BaseType::TsVector => return Err(NOT_READ_IN_BINARY.into()),
    })
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], Problem> {
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}

fn utf8(bytes: &[u8]) -> Result<String, Problem> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| "not UTF-8".into())
}

/// Microseconds since 2000-01-01, the infinities at the ends of i64.
fn timestamp(bytes: &[u8]) -> Result<Timestamp, Problem> {
    Ok(match i64::from_be_bytes(fixed(bytes)?) {
        i64::MAX => Timestamp::PositiveInfinity,
        i64::MIN => Timestamp::NegativeInfinity,
        micros => Timestamp::Micros(
            micros
                .checked_add(PG_EPOCH_OFFSET_MICROS)
                .ok_or("timestamp out of range")?,
        ),
    })
}

/// numeric_send: digit count, weight (of the first base-10000 digit), sign, display scale, then
/// the base-10000 digits. The value is kept at the display scale, as numeric_out prints it.
fn numeric(bytes: &[u8]) -> Result<Numeric, Problem> {
    let word = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    if bytes.len() < 8 {
        return Err("shorter than a numeric header".into());
    }
    let (count, weight, sign, scale) = (
        usize::from(word(0)),
        i64::from(word(2) as i16),
        word(4),
        i64::from(word(6)),
    );
    if bytes.len() != 8 + 2 * count {
        return Err(format!("{count} digits announced in {} bytes", bytes.len()));
    }
    let negative = match sign {
        NUMERIC_POSITIVE => false,
        NUMERIC_NEGATIVE => true,
        NUMERIC_NAN => return Ok(Numeric::NaN),
        NUMERIC_POSITIVE_INFINITY => return Ok(Numeric::PositiveInfinity),
        NUMERIC_NEGATIVE_INFINITY => return Ok(Numeric::NegativeInfinity),
        _ => return Err(format!("unknown numeric sign {sign:#06x}")),
    };
    let digits = (0..count).map(|i| word(8 + 2 * i));
    if digits.clone().any(|digit| digit > 9_999) {
        return Err("a base-10000 digit above 9999".into());
    }
    // The digits as one integer times 10^exponent is the value at the display scale; a
    // negative exponent drops digits beyond it, which numeric_out does not print either.
    let exponent = 4 * (weight + 1 - count as i64) + scale;
    let small = (count <= 4 && exponent.unsigned_abs() <= 18)
        .then(|| {
            let whole = digits
                .clone()
                .fold(0i64, |acc, digit| acc * 10_000 + i64::from(digit));
            let power = 10i64.pow(exponent.unsigned_abs() as u32);
            if exponent >= 0 {
                whole.checked_mul(power)
            } else {
                Some(whole / power)
            }
        })
        .flatten();
    let unscaled = match small {
        Some(unscaled) => BigInt::from(unscaled),
        None => {
            let whole = digits.fold(BigInt::from(0), |acc, digit| acc * 10_000 + digit);
            let power = BigInt::from(10).pow(exponent.unsigned_abs() as u32);
            if exponent >= 0 {
                whole * power
            } else {
                whole / power
            }
        }
    };
    let signed = if negative { -unscaled } else { unscaled };
    Ok(Numeric::Finite(bigdecimal::BigDecimal::new(signed, scale)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(oid: u32, name: &str, base: BaseType) -> PgType {
        PgType {
            oid,
            name: name.to_owned(),
            kind: TypeKind::Base(base),
        }
    }

    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&scale.to_be_bytes());
        for digit in digits {
            out.extend_from_slice(&digit.to_be_bytes());
        }
        out
    }

    fn finite(unscaled: &str, scale: i64) -> Numeric {
        Numeric::Finite(bigdecimal::BigDecimal::new(
            unscaled.parse().unwrap(),
            scale,
        ))
    }

    fn parts(numeric: Numeric) -> (BigInt, i64) {
        match numeric {
            Numeric::Finite(decimal) => decimal.into_bigint_and_exponent(),
            other => panic!("not finite: {other:?}"),
        }
    }

    #[test]
    fn numerics_keep_the_display_scale() {
        let cases: &[(Vec<u8>, &str, i64)] = &[
            // 1234.50 → digits 1234, 5000; weight 0; scale 2.
            (numeric_bytes(0, 0, 2, &[1234, 5000]), "123450", 2),
            // -0.001 → digit 10 at weight -1; scale 3.
            (numeric_bytes(-1, NUMERIC_NEGATIVE, 3, &[10]), "-1", 3),
            // 0.00: no digits at all.
            (numeric_bytes(0, 0, 2, &[]), "0", 2),
            // 10000 (scale 0): digit 1 at weight 1, trailing zero digit stripped.
            (numeric_bytes(1, 0, 0, &[1]), "10000", 0),
            // 12345678901234567890.123 needs the wide path.
            (
                numeric_bytes(4, 0, 3, &[1234, 5678, 9012, 3456, 7890, 1230]),
                "12345678901234567890123",
                3,
            ),
        ];
        for (bytes, unscaled, scale) in cases {
            let decoded = numeric(bytes).unwrap();
            assert_eq!(parts(decoded.clone()), parts(finite(unscaled, *scale)));
        }
        assert_eq!(
            numeric(&numeric_bytes(0, NUMERIC_NAN, 0, &[])),
            Ok(Numeric::NaN)
        );
        assert_eq!(
            numeric(&numeric_bytes(0, NUMERIC_NEGATIVE_INFINITY, 0, &[])),
            Ok(Numeric::NegativeInfinity)
        );
        assert!(numeric(&numeric_bytes(0, 0, 0, &[10_000])).is_err());
        assert!(numeric(&numeric_bytes(0, 0x1234, 0, &[1])).is_err());
        assert!(numeric(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn dates_and_timestamps_count_from_1970() {
        let date = base(1082, "date", BaseType::Date);
        assert_eq!(
            decode_binary(&date, &0i32.to_be_bytes()),
            Ok(Value::Date(Date::Days(10_957)))
        );
        assert_eq!(
            decode_binary(&date, &i32::MAX.to_be_bytes()),
            Ok(Value::Date(Date::PositiveInfinity))
        );
        let timestamptz = base(1184, "timestamptz", BaseType::TimestampTz);
        assert_eq!(
            decode_binary(&timestamptz, &1i64.to_be_bytes()),
            Ok(Value::TimestampTz(Timestamp::Micros(946_684_800_000_001)))
        );
        assert_eq!(
            decode_binary(&timestamptz, &i64::MIN.to_be_bytes()),
            Ok(Value::TimestampTz(Timestamp::NegativeInfinity))
        );
        let timetz = base(1266, "timetz", BaseType::TimeTz);
        let mut bytes = 3_600_000_000i64.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(-7200i32).to_be_bytes());
        assert_eq!(
            decode_binary(&timetz, &bytes),
            Ok(Value::TimeTz {
                micros: 3_600_000_000,
                offset_seconds: 7200
            })
        );
    }

    #[test]
    fn wrong_lengths_and_unread_types_name_the_type() {
        let int8 = base(20, "int8", BaseType::Int8);
        let err = decode_binary(&int8, &[1, 2, 3]).unwrap_err();
        assert_eq!(err.type_name(), "int8");
        assert!(err.problem().contains("expected 8 bytes"), "{err}");
        assert!(
            err.to_string().contains("(0x010203 (3 bytes, binary))"),
            "{err}"
        );
        let long = decode_binary(&int8, &[0xab; 30]).unwrap_err().to_string();
        assert!(
            long.contains(&format!("0x{}... (30 bytes", "ab".repeat(20))),
            "{long}"
        );
        let char_type = base(CHAR_OID, "char", BaseType::Text);
        assert!(!decodes_binary(&char_type));
        assert!(decode_binary(&char_type, b"a").is_err());
        assert!(decodes_binary(&base(25, "text", BaseType::Text)));
        assert!(!decodes_binary(&base(869, "inet", BaseType::Inet)));
        let jsonb = base(3802, "jsonb", BaseType::Jsonb);
        assert_eq!(
            decode_binary(&jsonb, b"\x01{\"a\": 1}"),
            Ok(Value::Text("{\"a\": 1}".into()))
        );
        assert!(decode_binary(&jsonb, b"\x02{}").is_err());
    }
}
