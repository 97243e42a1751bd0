//! Retractable aggregates: each supports add, retract, merge and result, so that a CDC update
//! (retract the old row, add the new one) and a delete leave exactly what a fresh computation
//! over the surviving rows would give.
//!
//! `min`, `max` and `count_distinct` keep value → multiplicity maps: a retraction removes one
//! occurrence, and the next smallest (largest, distinct) value is still known.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

/// Decimal places of `avg` results.
pub const AVG_SCALE: i64 = 6;

use bigdecimal::{BigDecimal, Zero};

use super::state_codec::{ReadResult, StateReader, StateWriter};

/// A cell value: a group key part or an aggregate input.
///
/// Integers stay `Int` (cheap to hash and add); decimals and floats are exact `Num`s of their
/// decimal text. A column's values have one variant (its schema decides), so the derived order
/// is the column's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Num(BigDecimal),
    Text(Box<str>),
}

impl Value {
    /// PostgreSQL's text input for the value; `None` for NULL.
    pub fn to_pg_text(&self) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Bool(b) => Some(b.to_string()),
            Self::Int(i) => Some(i.to_string()),
            Self::Num(n) => Some(n.to_plain_string()),
            Self::Text(t) => Some(t.to_string()),
        }
    }

    /// A number that orders values of one column roughly as PostgreSQL does: exactly for
    /// integers and booleans, by the first eight bytes for text, not at all for decimals.
    pub fn order_prefix(&self) -> u64 {
        match self {
            Self::Null | Self::Num(_) => 0,
            Self::Bool(b) => u64::from(*b),
            Self::Int(i) => (*i as u64) ^ (1 << 63),
            Self::Text(t) => {
                let mut prefix = [0; 8];
                let bytes = t.as_bytes();
                let n = bytes.len().min(8);
                prefix[..n].copy_from_slice(&bytes[..n]);
                u64::from_be_bytes(prefix)
            }
        }
    }

    /// Writes the value in the state's binary form.
    pub fn encode(&self, out: &mut StateWriter<'_>) {
        match self {
            Self::Null => {
                out.u8(0);
            }
            Self::Bool(false) => {
                out.u8(1);
            }
            Self::Bool(true) => {
                out.u8(2);
            }
            Self::Int(i) => {
                out.u8(3).i64(*i);
            }
            Self::Num(n) => {
                out.u8(4);
                encode_decimal(n, out);
            }
            Self::Text(t) => {
                out.u8(5).str(t);
            }
        }
    }

    pub fn decode(input: &mut StateReader<'_>) -> ReadResult<Self> {
        Ok(match input.u8()? {
            0 => Self::Null,
            1 => Self::Bool(false),
            2 => Self::Bool(true),
            3 => Self::Int(input.i64()?),
            4 => Self::Num(decode_decimal(input)?),
            5 => Self::Text(input.str()?.into()),
            tag => return Err(format!("unknown value tag {tag} in a state chunk")),
        })
    }
}

/// A decimal as its unscaled digits (two's complement, little-endian) and its scale.
fn encode_decimal(n: &BigDecimal, out: &mut StateWriter<'_>) {
    let (digits, scale) = n.as_bigint_and_scale();
    let bytes = digits.to_signed_bytes_le();
    out.i64(scale).count(bytes.len());
    for byte in bytes {
        out.u8(byte);
    }
}

fn decode_decimal(input: &mut StateReader<'_>) -> ReadResult<BigDecimal> {
    let scale = input.i64()?;
    let n = input.count()?;
    let mut bytes = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        bytes.push(input.u8()?);
    }
    Ok(BigDecimal::from_bigint(
        bigdecimal::num_bigint::BigInt::from_signed_bytes_le(&bytes),
        scale,
    ))
}

/// An aggregate function of the `aggregates` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFn {
    /// `count(*)`: live rows.
    CountRows,
    /// `count(col)`: non-null values.
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

impl AggregateFn {
    pub fn name(self) -> &'static str {
        match self {
            Self::CountRows | Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::CountDistinct => "count_distinct",
        }
    }
}

/// One `name=fn(column)` of the `aggregates` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    /// The result column.
    pub name: String,
    pub function: AggregateFn,
    /// The input column (`None` for `count(*)`).
    pub column: Option<String>,
}

impl fmt::Display for AggregateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.column.as_deref().unwrap_or("*");
        write!(f, "{}={}({column})", self.name, self.function.name())
    }
}

/// Parses `revenue=sum(amount),orders=count(*)`; the error says which entry is wrong and why.
pub fn parse_aggregates(text: &str) -> Result<Vec<AggregateSpec>, String> {
    let mut specs: Vec<AggregateSpec> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, call) = entry
            .split_once('=')
            .map(|(n, c)| (n.trim(), c.trim()))
            .ok_or_else(|| format!("{entry:?} is not name=function(column)"))?;
        if name.is_empty() {
            return Err(format!("{entry:?} has no result column name before ="));
        }
        let (function, argument) = call
            .strip_suffix(')')
            .and_then(|c| c.split_once('('))
            .map(|(f, a)| (f.trim().to_ascii_lowercase(), a.trim()))
            .ok_or_else(|| format!("{entry:?}: {call:?} is not function(column)"))?;
        if argument.is_empty() {
            return Err(format!(
                "{entry:?} names no column; use count(*) to count rows"
            ));
        }
        let star = argument == "*";
        let function = match (function.as_str(), star) {
            ("count", true) => AggregateFn::CountRows,
            ("count", false) => AggregateFn::Count,
            ("sum", false) => AggregateFn::Sum,
            ("avg", false) => AggregateFn::Avg,
            ("min", false) => AggregateFn::Min,
            ("max", false) => AggregateFn::Max,
            ("count_distinct", false) => AggregateFn::CountDistinct,
            (_, true) => return Err(format!("{entry:?}: only count takes *")),
            (other, false) => {
                return Err(format!(
                    "{entry:?}: {other:?} is not one of sum, count, avg, min, max, count_distinct"
                ));
            }
        };
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("result column {name:?} is named twice"));
        }
        specs.push(AggregateSpec {
            name: name.to_owned(),
            function,
            column: (!star).then(|| argument.to_owned()),
        });
    }
    if specs.is_empty() {
        return Err(
            "names no aggregate; use name=function(column), such as orders=count(*)".into(),
        );
    }
    Ok(specs)
}

/// A retraction that would take a count below zero: the input has a removal without its add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegativeCount;

/// A running sum: integers in an `i128` (no allocation), decimals exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SumState {
    ints: i128,
    decimals: BigDecimal,
    non_null: i64,
}

impl SumState {
    fn add(&mut self, value: &Value, sign: i64) {
        match value {
            Value::Int(i) => self.ints += i128::from(*i) * i128::from(sign),
            Value::Num(n) => {
                if sign > 0 {
                    self.decimals += n;
                } else {
                    self.decimals -= n;
                }
            }
            // Not summable: counted as NULL, as a cast failure would be reported upstream.
            Value::Null | Value::Bool(_) | Value::Text(_) => return,
        }
        self.non_null += sign;
    }

    fn merge(&mut self, other: &Self) {
        self.ints += other.ints;
        self.decimals += &other.decimals;
        self.non_null += other.non_null;
    }

    fn total(&self) -> BigDecimal {
        let ints = || BigDecimal::from(bigdecimal::num_bigint::BigInt::from(self.ints));
        if self.ints == 0 {
            self.decimals.clone()
        } else if self.decimals.is_zero() {
            ints()
        } else {
            &self.decimals + ints()
        }
    }
}

/// The accumulator of one aggregate in one (group, window) cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Accumulator {
    /// `count(*)` reads the cell's live rows; nothing of its own.
    Rows,
    Count(i64),
    Sum(SumState),
    /// Results have [`AVG_SCALE`] decimal places.
    Avg(SumState),
    Min(BTreeMap<Value, u64>),
    Max(BTreeMap<Value, u64>),
    Distinct(HashMap<Value, u64>),
}

impl Accumulator {
    pub fn new(function: AggregateFn) -> Self {
        match function {
            AggregateFn::CountRows => Self::Rows,
            AggregateFn::Count => Self::Count(0),
            AggregateFn::Sum => Self::Sum(SumState::default()),
            AggregateFn::Avg => Self::Avg(SumState::default()),
            AggregateFn::Min => Self::Min(BTreeMap::new()),
            AggregateFn::Max => Self::Max(BTreeMap::new()),
            AggregateFn::CountDistinct => Self::Distinct(HashMap::new()),
        }
    }

    pub fn add(&mut self, value: &Value) {
        if value == &Value::Null {
            return;
        }
        match self {
            Self::Rows => {}
            Self::Count(n) => *n += 1,
            Self::Sum(s) | Self::Avg(s) => s.add(value, 1),
            Self::Min(m) | Self::Max(m) => *m.entry(value.clone()).or_insert(0) += 1,
            Self::Distinct(m) => *m.entry(value.clone()).or_insert(0) += 1,
        }
    }

    /// Whether `retract(value)` would succeed, without changing anything.
    pub fn can_retract(&self, value: &Value) -> bool {
        if value == &Value::Null {
            return true;
        }
        match self {
            Self::Count(n) => *n > 0,
            Self::Min(m) | Self::Max(m) => m.contains_key(value),
            Self::Distinct(m) => m.contains_key(value),
            Self::Rows | Self::Sum(_) | Self::Avg(_) => true,
        }
    }

    /// Removes one earlier `add` of `value`.
    pub fn retract(&mut self, value: &Value) -> Result<(), NegativeCount> {
        if value == &Value::Null {
            return Ok(());
        }
        match self {
            Self::Rows => {}
            Self::Count(n) if *n > 0 => *n -= 1,
            Self::Count(_) => return Err(NegativeCount),
            Self::Sum(s) | Self::Avg(s) => s.add(value, -1),
            Self::Min(m) | Self::Max(m) => {
                let count = m.get_mut(value).ok_or(NegativeCount)?;
                *count -= 1;
                if *count == 0 {
                    m.remove(value);
                }
            }
            Self::Distinct(m) => {
                let count = m.get_mut(value).ok_or(NegativeCount)?;
                *count -= 1;
                if *count == 0 {
                    m.remove(value);
                }
            }
        }
        Ok(())
    }

    /// Adds everything `other` holds (session merges).
    pub fn merge(&mut self, other: &Self) {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::Sum(a), Self::Sum(b)) | (Self::Avg(a), Self::Avg(b)) => a.merge(b),
            (Self::Min(a), Self::Min(b)) | (Self::Max(a), Self::Max(b)) => {
                for (value, count) in b {
                    *a.entry(value.clone()).or_insert(0) += count;
                }
            }
            (Self::Distinct(a), Self::Distinct(b)) => {
                for (value, count) in b {
                    *a.entry(value.clone()).or_insert(0) += count;
                }
            }
            _ => {}
        }
    }

    /// The result for a cell with `live_rows` rows.
    pub fn result(&self, live_rows: i64) -> Value {
        match self {
            Self::Rows => Value::Int(live_rows),
            Self::Count(n) => Value::Int(*n),
            Self::Sum(s) if s.non_null == 0 => Value::Null,
            Self::Sum(s) => Value::Num(s.total()),
            Self::Avg(s) if s.non_null <= 0 => Value::Null,
            // Rounded as PostgreSQL's round(avg, 6): an exact quotient can have 100 digits.
            Self::Avg(s) => Value::Num(
                (s.total() / BigDecimal::from(s.non_null))
                    .with_scale_round(AVG_SCALE, bigdecimal::RoundingMode::HalfUp),
            ),
            Self::Min(m) => m.keys().next().cloned().unwrap_or(Value::Null),
            Self::Max(m) => m.keys().next_back().cloned().unwrap_or(Value::Null),
            Self::Distinct(m) => Value::Int(i64::try_from(m.len()).unwrap_or(i64::MAX)),
        }
    }

    /// Writes the accumulator in the state's binary form.
    pub fn encode(&self, out: &mut StateWriter<'_>) {
        let pairs = |out: &mut StateWriter<'_>,
                     n: usize,
                     values: &mut dyn Iterator<Item = (&Value, &u64)>| {
            out.count(n);
            for (value, count) in values {
                value.encode(out);
                out.u64(*count);
            }
        };
        match self {
            Self::Rows => {}
            Self::Count(n) => {
                out.i64(*n);
            }
            Self::Sum(s) | Self::Avg(s) => {
                out.i128(s.ints);
                encode_decimal(&s.decimals, out);
                out.i64(s.non_null);
            }
            Self::Min(m) | Self::Max(m) => pairs(out, m.len(), &mut m.iter()),
            Self::Distinct(m) => pairs(out, m.len(), &mut m.iter()),
        }
    }

    /// The accumulator of `function` from its binary form.
    pub fn decode(function: AggregateFn, input: &mut StateReader<'_>) -> ReadResult<Self> {
        let pairs = |input: &mut StateReader<'_>| -> ReadResult<Vec<(Value, u64)>> {
            let n = input.count()?;
            let mut pairs = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let value = Value::decode(input)?;
                pairs.push((value, input.u64()?));
            }
            Ok(pairs)
        };
        Ok(match function {
            AggregateFn::CountRows => Self::Rows,
            AggregateFn::Count => Self::Count(input.i64()?),
            AggregateFn::Sum | AggregateFn::Avg => {
                let state = SumState {
                    ints: input.i128()?,
                    decimals: decode_decimal(input)?,
                    non_null: input.i64()?,
                };
                if function == AggregateFn::Sum {
                    Self::Sum(state)
                } else {
                    Self::Avg(state)
                }
            }
            AggregateFn::Min => Self::Min(pairs(input)?.into_iter().collect()),
            AggregateFn::Max => Self::Max(pairs(input)?.into_iter().collect()),
            AggregateFn::CountDistinct => Self::Distinct(pairs(input)?.into_iter().collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;
    use crate::window::state_codec::StateLog;

    fn num(text: &str) -> Value {
        Value::Num(BigDecimal::from_str(text).expect("decimal"))
    }

    #[test]
    fn parses_aggregate_lists_and_names_bad_entries() {
        let specs = parse_aggregates(
            "revenue=sum(amount), orders=count(*),avg_amount=avg(amount),max_amount=max(amount),customers=count_distinct(customer_id)",
        )
        .expect("valid");
        assert_eq!(specs.len(), 5);
        assert_eq!(specs[1].function, AggregateFn::CountRows);
        assert_eq!(specs[1].column, None);
        assert_eq!(
            specs[4].to_string(),
            "customers=count_distinct(customer_id)"
        );
        for (bad, says) in [
            ("x=median(a)", "not one of"),
            ("sum(a)", "name=function"),
            ("x=sum(*)", "only count"),
            ("x=sum()", "count(*)"),
            ("x=sum(a),x=count(*)", "twice"),
            ("", "names no aggregate"),
        ] {
            let err = parse_aggregates(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn min_survives_retraction_of_the_minimum() {
        let mut min = Accumulator::new(AggregateFn::Min);
        for v in [5, 3, 7] {
            min.add(&Value::Int(v));
        }
        assert_eq!(min.result(3), Value::Int(3));
        min.retract(&Value::Int(3)).expect("present");
        assert_eq!(min.result(2), Value::Int(5));
        assert_eq!(min.retract(&Value::Int(3)), Err(NegativeCount));
    }

    #[test]
    fn sums_are_exact_and_null_without_values() {
        let mut sum = Accumulator::new(AggregateFn::Sum);
        assert_eq!(sum.result(0), Value::Null);
        sum.add(&num("0.1"));
        sum.add(&num("0.2"));
        sum.add(&Value::Null);
        assert_eq!(sum.result(3), num("0.3"));
        let mut avg = Accumulator::new(AggregateFn::Avg);
        avg.add(&Value::Int(1));
        avg.add(&Value::Int(2));
        assert_eq!(avg.result(2), num("1.5"));
        avg.add(&Value::Int(2));
        assert_eq!(
            avg.result(3),
            num("1.666667"),
            "rounded to six places, half up"
        );
        avg.retract(&Value::Int(2)).expect("present");
        avg.retract(&Value::Int(1)).expect("present");
        avg.retract(&Value::Int(2)).expect("present");
        assert_eq!(avg.result(0), Value::Null);
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            (-20i64..20).prop_map(Value::Int),
            (-2000i64..2000).prop_map(|c| Value::Num(BigDecimal::new(c.into(), 2))),
        ]
    }

    proptest! {
        /// Adding all, then retracting a subset, equals adding only the rest; merging two
        /// halves equals adding everything into one; state round-trips.
        #[test]
        fn retraction_and_merge_equal_recomputation(
            values in proptest::collection::vec((value(), any::<bool>()), 0..40),
        ) {
            let ints_only = |v: &Value| !matches!(v, Value::Num(_));
            for function in [AggregateFn::Count, AggregateFn::Sum, AggregateFn::Avg,
                             AggregateFn::Min, AggregateFn::Max, AggregateFn::CountDistinct] {
                // min/max order one variant per column: keep that rule.
                let column: Vec<&(Value, bool)> = match function {
                    AggregateFn::Min | AggregateFn::Max =>
                        values.iter().filter(|(v, _)| ints_only(v)).collect(),
                    _ => values.iter().collect(),
                };
                let mut all = Accumulator::new(function);
                let mut kept = Accumulator::new(function);
                let (mut left, mut right) = (Accumulator::new(function), Accumulator::new(function));
                for (value, keep) in &column {
                    all.add(value);
                    if *keep { kept.add(value); left.add(value); } else { right.add(value); }
                }
                let live = column.iter().filter(|(_, k)| *k).count() as i64;
                for (value, keep) in &column {
                    if !*keep {
                        prop_assert!(all.retract(value).is_ok());
                    }
                }
                prop_assert_eq!(all.result(live), kept.result(live));
                left.merge(&right);
                let mut everything = Accumulator::new(function);
                for (value, _) in &column { everything.add(value); }
                let total = column.len() as i64;
                prop_assert_eq!(left.result(total), everything.result(total));
                let mut log = StateLog::default();
                everything.encode(&mut log.entry(0));
                let mut reader = StateReader::new(&log.chunks()[0]).expect("version");
                prop_assert_eq!(reader.u8(), Ok(0));
                let decoded = Accumulator::decode(function, &mut reader).expect("decodes");
                prop_assert!(reader.at_end());
                prop_assert_eq!(decoded, everything);
            }
        }
    }
}
