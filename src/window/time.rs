//! Time: durations of the config (`5m`, `10s`, `250ms`, plain milliseconds), event times read
//! from Debezium fields into microseconds since the epoch (UTC), and window assignment.
//!
//! Windows are `[start, end)` and aligned to the epoch (plus an offset) with `floor_mod`, so times
//! before 1970 fall into the right window too.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value as Json;

use crate::sink::postgres::types::FieldSchema;

/// Microseconds.
pub type Micros = i64;

const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses `250ms`, `10s`, `5m`, `1h`, `2d` or a plain number of milliseconds into microseconds.
/// Months and years are rejected: their length varies.
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; use 250ms, 10s, 5m, 1h, 1d or milliseconds")
    })?;
    let unit_micros = match unit.trim() {
        "" | "ms" => MICROS_PER_MILLI,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => MICROS_PER_DAY,
        "mo" | "month" | "months" | "y" | "year" | "years" => {
            return Err(format!(
                "{text:?}: months and years vary in length; use fixed units (ms, s, m, h, d)"
            ));
        }
        other => {
            return Err(format!(
                "{text:?}: unit {other:?} is not one of ms, s, m, h, d"
            ));
        }
    };
    number
        .checked_mul(unit_micros)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A `[start, end)` window in microseconds. Ordered by end first: windows close in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub end: Micros,
    pub start: Micros,
}

impl Window {
    pub fn new(start: Micros, end: Micros) -> Self {
        Self { end, start }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{},{})", self.start, self.end)
    }
}

/// `window.type` and its sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling {
        size: Micros,
        offset: Micros,
    },
    /// `advance` divides `size`.
    Hopping {
        size: Micros,
        advance: Micros,
        offset: Micros,
    },
    /// Per group key; an event spans `[t, t + gap)` and touching or overlapping spans merge.
    Session {
        gap: Micros,
    },
}

impl WindowKind {
    /// The windows containing `time` (for sessions, the event's own span `[t, t + gap)`), in
    /// ascending order, into `out` (cleared first; reused to avoid allocating per event).
    pub fn assign(&self, time: Micros, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            Self::Tumbling { size, .. } => {
                let start = self.last_start(time);
                out.push(Window::new(start, start + size));
            }
            Self::Hopping { size, advance, .. } => {
                let last = self.last_start(time);
                let count = size / advance;
                for k in (0..count).rev() {
                    let start = last - k * advance;
                    out.push(Window::new(start, start + size));
                }
            }
            Self::Session { gap } => out.push(Window::new(time, time.saturating_add(gap))),
        }
    }

    /// The end of the last window holding an event at `time` (sessions: its own span; a
    /// merged session can end later, which the session index answers). On the windows' grid,
    /// so events of one window share it.
    pub fn last_end(&self, time: Micros) -> Micros {
        match *self {
            Self::Tumbling { size, .. } | Self::Hopping { size, .. } => {
                self.last_start(time) + size
            }
            Self::Session { gap } => time.saturating_add(gap),
        }
    }

    /// The start of the last window holding `time`: the latest grid point at or before it
    /// (sessions: `time` itself).
    fn last_start(&self, time: Micros) -> Micros {
        match *self {
            Self::Tumbling { size: step, offset }
            | Self::Hopping {
                advance: step,
                offset,
                ..
            } => time - (time - offset).rem_euclid(step),
            Self::Session { .. } => time,
        }
    }
}

/// Why a field holds no usable event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeProblem {
    Missing,
    Null,
    Unreadable,
}

/// The event time in a field value, by its Connect schema's semantic name: Debezium
/// `Timestamp` (ms), `MicroTimestamp`, `NanoTimestamp`, `ZonedTimestamp` (ISO-8601), `Date`
/// (days); without a semantic name, integers are epoch milliseconds and strings ISO-8601.
pub fn event_time(
    value: Option<&Json>,
    schema: Option<&FieldSchema>,
) -> Result<Micros, TimeProblem> {
    let value = value.ok_or(TimeProblem::Missing)?;
    if value.is_null() {
        return Err(TimeProblem::Null);
    }
    let semantic = schema.and_then(|s| s.name.as_deref()).unwrap_or("");
    let integer = || value.as_i64().ok_or(TimeProblem::Unreadable);
    match semantic {
        "io.debezium.time.MicroTimestamp" => integer(),
        "io.debezium.time.NanoTimestamp" => integer().map(|n| n.div_euclid(1_000)),
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            integer().and_then(millis)
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            integer().and_then(|days| {
                days.checked_mul(MICROS_PER_DAY)
                    .ok_or(TimeProblem::Unreadable)
            })
        }
        _ => match value {
            Json::Number(_) => integer().and_then(millis),
            Json::String(text) => parse_timestamp(text).ok_or(TimeProblem::Unreadable),
            _ => Err(TimeProblem::Unreadable),
        },
    }
}

fn millis(ms: i64) -> Result<Micros, TimeProblem> {
    ms.checked_mul(MICROS_PER_MILLI)
        .ok_or(TimeProblem::Unreadable)
}

/// ISO-8601 / PostgreSQL text: with an offset, or naive (taken as UTC), or a date.
pub fn parse_timestamp(text: &str) -> Option<Micros> {
    if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
        return Some(zoned.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(zoned) = DateTime::parse_from_str(text, format) {
            return Some(zoned.timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// `last_end` is the largest end `assign` gives, on and off the grid, before the epoch too.
    #[test]
    fn the_last_end_is_that_of_the_last_window_assigned() {
        let kinds = [
            WindowKind::Tumbling {
                size: 10,
                offset: 0,
            },
            WindowKind::Tumbling {
                size: 10,
                offset: 3,
            },
            WindowKind::Hopping {
                size: 10,
                advance: 5,
                offset: 2,
            },
        ];
        let mut windows = Vec::new();
        for kind in kinds {
            for time in -25..25 {
                kind.assign(time, &mut windows);
                let last = windows.iter().map(|w| w.end).max();
                assert_eq!(Some(kind.last_end(time)), last, "{kind:?} at {time}");
            }
        }
    }

    const S: Micros = 1_000_000;

    fn windows(kind: WindowKind, time: Micros) -> Vec<(Micros, Micros)> {
        let mut out = Vec::new();
        kind.assign(time, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(300 * S));
        assert_eq!(parse_duration("10s"), Ok(10 * S));
        assert_eq!(parse_duration("250ms"), Ok(250_000));
        assert_eq!(parse_duration("1500"), Ok(1_500_000));
        assert_eq!(parse_duration("1h"), Ok(3600 * S));
        assert!(
            parse_duration("1mo")
                .expect_err("months")
                .contains("fixed units")
        );
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn tumbling_boundaries_are_half_open_and_epoch_aligned() {
        let kind = WindowKind::Tumbling {
            size: 10 * S,
            offset: 0,
        };
        assert_eq!(windows(kind, 10 * S - 1), [(0, 10 * S)]);
        assert_eq!(windows(kind, 10 * S), [(10 * S, 20 * S)]);
        assert_eq!(windows(kind, -1), [(-10 * S, 0)]);
        let offset = WindowKind::Tumbling {
            size: 10 * S,
            offset: 3 * S,
        };
        assert_eq!(windows(offset, 2 * S), [(-7 * S, 3 * S)]);
    }

    #[test]
    fn hopping_assigns_every_window_holding_the_time() {
        let kind = WindowKind::Hopping {
            size: 10 * S,
            advance: 5 * S,
            offset: 0,
        };
        assert_eq!(windows(kind, 7 * S), [(0, 10 * S), (5 * S, 15 * S)]);
        assert_eq!(windows(kind, 5 * S), [(0, 10 * S), (5 * S, 15 * S)]);
    }

    #[test]
    fn event_times_by_semantic_type() {
        let schema = |name: &str| {
            FieldSchema::from_json(&json!({"type": "int64", "name": name})).expect("schema")
        };
        let micro = schema("io.debezium.time.MicroTimestamp");
        assert_eq!(
            event_time(Some(&json!(1_500_000)), Some(&micro)),
            Ok(1_500_000)
        );
        let milli = schema("io.debezium.time.Timestamp");
        assert_eq!(event_time(Some(&json!(1_500)), Some(&milli)), Ok(1_500_000));
        let date = schema("io.debezium.time.Date");
        assert_eq!(event_time(Some(&json!(1)), Some(&date)), Ok(86_400 * S));
        assert_eq!(
            event_time(Some(&json!("2024-02-29T12:00:00Z")), None),
            Ok(1_709_208_000 * S)
        );
        assert_eq!(
            event_time(Some(&json!("1970-01-01 00:00:01.5")), None),
            Ok(1_500_000)
        );
        assert_eq!(
            event_time(Some(&json!(2)), None),
            Ok(2_000),
            "plain integers are ms"
        );
        assert_eq!(event_time(Some(&Json::Null), None), Err(TimeProblem::Null));
        assert_eq!(event_time(None, None), Err(TimeProblem::Missing));
        assert_eq!(
            event_time(Some(&json!("soon")), None),
            Err(TimeProblem::Unreadable)
        );
    }

    proptest! {
        #[test]
        fn assigned_windows_hold_the_time(
            time in -1_000_000_000_000i64..1_000_000_000_000,
            advance in 1i64..100_000,
            factor in 1i64..6,
            offset in 0i64..100_000,
        ) {
            let size = advance * factor;
            let kinds = [
                WindowKind::Tumbling { size, offset },
                WindowKind::Hopping { size, advance, offset },
            ];
            for kind in kinds {
                let got = windows(kind, time);
                let expected = match kind { WindowKind::Hopping { .. } => factor as usize, _ => 1 };
                prop_assert_eq!(got.len(), expected);
                for (start, end) in got {
                    prop_assert!(start <= time && time < end);
                    prop_assert_eq!(end - start, size);
                    prop_assert_eq!((start - offset).rem_euclid(advance.min(size)), 0);
                }
            }
        }
    }
}
