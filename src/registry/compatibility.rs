//! Compatibility levels, as Confluent's schema registry defines them, and the check of a new
//! schema against the versions already registered under a subject.
//!
//! The reading rules themselves are Avro's schema resolution, as implemented by
//! [`apache_avro::schema_compatibility::SchemaCompatibility`]. A *partial* answer from it (the
//! reader can read some data of the writer but not all: writer enum symbols or union branches
//! the reader lacks) counts as incompatible, as in Avro's Java checker that Confluent uses.

use apache_avro::{
    Schema,
    schema_compatibility::{Compatibility, SchemaCompatibility},
};

/// Which earlier versions a new schema must be compatible with, and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    /// No check.
    None,
    /// The new schema reads data written with the latest version (consumers upgrade first).
    #[default]
    Backward,
    /// The new schema reads data written with every earlier version.
    BackwardTransitive,
    /// The latest version reads data written with the new schema (producers upgrade first).
    Forward,
    /// Every earlier version reads data written with the new schema.
    ForwardTransitive,
    /// Backward and forward, against the latest version.
    Full,
    /// Backward and forward, against every earlier version.
    FullTransitive,
}

/// The message Confluent gives for an unknown level.
pub const INVALID_LEVEL_MESSAGE: &str = "Invalid compatibility level. Valid values are none, \
     backward, forward, full, backward_transitive, forward_transitive, and full_transitive";

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level name in any case (`backward`, `FULL_TRANSITIVE`); `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether every earlier version counts, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl std::fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered version to check against.
#[derive(Debug, Clone, Copy)]
pub struct Earlier<'a> {
    pub version: u32,
    pub schema: &'a Schema,
    /// The schema as registered, quoted in the findings.
    pub text: &'a str,
}

/// Checks `candidate` against `earlier` (oldest first) under `level`: against the last one only
/// unless the level is transitive. Returns the findings, empty when compatible; each names the
/// rule, the direction and the version it breaks, in the spirit of Confluent's details.
pub fn check(
    level: CompatibilityLevel,
    candidate: &Schema,
    earlier: &[Earlier<'_>],
) -> Vec<String> {
    let against: &[Earlier<'_>] = if level.is_transitive() {
        earlier
    } else {
        earlier.last().map(std::slice::from_ref).unwrap_or_default()
    };
    // Newest first, as Confluent reports the most recent break first.
    against
        .iter()
        .rev()
        .flat_map(|old| check_one(level, candidate, old))
        .collect()
}

/// Checks `candidate` against one earlier version, in the direction(s) of `level`, whatever its
/// transitivity (the compatibility endpoint for one version).
pub fn check_one(level: CompatibilityLevel, candidate: &Schema, old: &Earlier<'_>) -> Vec<String> {
    let mut findings = Vec::new();
    if level.backward()
        && let Some(problem) = cannot_read(old.schema, candidate)
    {
        findings.push(format!(
            "{{errorType:'READER_CANNOT_READ_WRITER', description:'The new schema cannot read \
             data written with version {}: {problem}'}}",
            old.version
        ));
    }
    if level.forward()
        && let Some(problem) = cannot_read(candidate, old.schema)
    {
        findings.push(format!(
            "{{errorType:'WRITER_NOT_READABLE', description:'Version {} cannot read data \
             written with the new schema: {problem}'}}",
            old.version
        ));
    }
    if !findings.is_empty() {
        findings.push(format!("{{oldSchemaVersion: {}}}", old.version));
        findings.push(format!("{{oldSchema: '{}'}}", old.text));
        findings.push(format!("{{compatibility: '{level}'}}"));
    }
    findings
}

/// Why `reader` cannot read everything `writer` writes, or `None` when it can.
fn cannot_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => Some(
            "only some values can be read (writer enum symbols or union branches are missing \
             in the reader)"
                .to_owned(),
        ),
        Err(err) => Some(with_causes(&err)),
    }
}

/// The error and its causes on one line: the outer message names the field, the inner the rule.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).expect("valid test schema")
    }

    fn record(fields: &str) -> Schema {
        parse(&format!(
            r#"{{"type":"record","name":"Value","namespace":"db.public.t","fields":[{fields}]}}"#
        ))
    }

    fn earlier(versions: &[Schema]) -> Vec<Earlier<'_>> {
        versions
            .iter()
            .enumerate()
            .map(|(i, schema)| Earlier {
                version: i as u32 + 1,
                schema,
                text: "{}",
            })
            .collect()
    }

    #[test]
    fn level_names_parse_in_any_case_and_print_in_upper_case() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(CompatibilityLevel::parse(level.as_str()), Some(level));
            assert_eq!(
                CompatibilityLevel::parse(&level.as_str().to_lowercase()),
                Some(level)
            );
        }
        assert_eq!(CompatibilityLevel::parse("SIDEWAYS"), None);
        assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    }

    #[test]
    fn backward_allows_adding_an_optional_field_and_refuses_a_required_one() {
        let v1 = record(r#"{"name":"id","type":"int"}"#);
        let optional = record(
            r#"{"name":"id","type":"int"},{"name":"n","type":["null","string"],"default":null}"#,
        );
        let required = record(r#"{"name":"id","type":"int"},{"name":"n","type":"string"}"#);
        let old = earlier(std::slice::from_ref(&v1));
        assert!(check(CompatibilityLevel::Backward, &optional, &old).is_empty());
        let findings = check(CompatibilityLevel::Backward, &required, &old);
        assert!(findings[0].contains("version 1"), "{findings:?}");
        assert!(findings[0].contains('n'), "{findings:?}");
        assert!(findings.iter().any(|f| f == "{compatibility: 'BACKWARD'}"));
        // Forward: the old schema ignores the new field, so adding a required one is fine.
        assert!(check(CompatibilityLevel::Forward, &required, &old).is_empty());
        assert!(!check(CompatibilityLevel::Full, &required, &old).is_empty());
        assert!(check(CompatibilityLevel::None, &parse(r#""string""#), &old).is_empty());
    }

    #[test]
    fn forward_refuses_removing_a_field_without_default() {
        let v1 = record(r#"{"name":"id","type":"int"},{"name":"n","type":"string"}"#);
        let v2 = record(r#"{"name":"id","type":"int"}"#);
        let old = earlier(std::slice::from_ref(&v1));
        assert!(check(CompatibilityLevel::Backward, &v2, &old).is_empty());
        assert!(!check(CompatibilityLevel::Forward, &v2, &old).is_empty());
    }

    #[test]
    fn transitive_levels_check_every_version_the_others_only_the_latest() {
        // v1 has a required field; v2 drops it; v3 brings it back as required without a default.
        let v1 = record(r#"{"name":"id","type":"int"},{"name":"n","type":"string"}"#);
        let v2 = record(r#"{"name":"id","type":"int"}"#);
        let v3 = record(r#"{"name":"id","type":"int"},{"name":"n","type":"long","default":0}"#);
        let versions = [v1, v2];
        let old = earlier(&versions);
        // Against v2 alone, v3 adds a field with a default: backward compatible.
        assert!(check(CompatibilityLevel::Backward, &v3, &old).is_empty());
        // Against v1, a string field cannot be read as a long.
        let findings = check(CompatibilityLevel::BackwardTransitive, &v3, &old);
        assert!(
            findings.iter().any(|f| f == "{oldSchemaVersion: 1}"),
            "{findings:?}"
        );
        assert!(
            !findings.iter().any(|f| f == "{oldSchemaVersion: 2}"),
            "{findings:?}"
        );
        assert!(!check(CompatibilityLevel::FullTransitive, &v3, &old).is_empty());
    }

    #[test]
    fn an_enum_losing_a_symbol_is_not_backward_compatible() {
        let v1 = parse(r#"{"type":"enum","name":"E","symbols":["A","B"]}"#);
        let fewer = parse(r#"{"type":"enum","name":"E","symbols":["A"]}"#);
        let old = earlier(std::slice::from_ref(&v1));
        assert!(!check(CompatibilityLevel::Backward, &fewer, &old).is_empty());
    }

    #[test]
    fn widening_promotions_are_backward_compatible() {
        let v1 = record(r#"{"name":"id","type":"int"}"#);
        let v2 = record(r#"{"name":"id","type":"long"}"#);
        let old = earlier(std::slice::from_ref(&v1));
        assert!(check(CompatibilityLevel::Backward, &v2, &old).is_empty());
        assert!(!check(CompatibilityLevel::Forward, &v2, &old).is_empty());
    }
}
