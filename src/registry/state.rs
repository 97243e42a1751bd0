//! The registry's contents in memory, and every rule of the API, without Kafka or HTTP.
//!
//! A change is first *planned* against the current state (checks, new ids and versions), which
//! yields the records that express it; the store writes those records to the topic and only then
//! *applies* them. Replaying the topic on start applies the same records, so what a restarted
//! registry holds is exactly what the records say.
//!
//! Schema identity: two schema texts are the same schema when their JSON is equal after object
//! keys are sorted and `{"type":"int"}` is written as `"int"`. Every attribute counts (`default`,
//! `doc`, `connect.*`), because they change what a consumer decodes; Avro's Parsing Canonical
//! Form drops them and would merge schemas that must stay apart.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use apache_avro::Schema;
use serde_json::Value;

use super::{
    compatibility::{self, CompatibilityLevel, Earlier},
    error::RegistryError,
    records::{Record, SchemaValue},
};

/// A version of a subject, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    /// The schema text, compact JSON.
    pub schema: Arc<str>,
}

/// A version named in a path: a number or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(u32),
}

impl VersionSelector {
    /// `latest`, `-1` (Confluent's alias of latest) or a number from 1 to 2^31-1.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(VersionSelector::Latest);
        }
        match text.parse::<i32>() {
            Ok(number) if number >= 1 => Ok(VersionSelector::Number(number as u32)),
            _ => Err(RegistryError::InvalidVersion {
                given: text.to_owned(),
            }),
        }
    }
}

/// A schema given to register, look up or check, parsed and validated.
#[derive(Debug, Clone)]
pub struct Candidate {
    text: String,
    identity: String,
    parsed: Schema,
}

impl Candidate {
    /// Parses an Avro schema; names what is wrong with one that is not valid.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidSchema { reason };
        let json: Value = serde_json::from_str(text)
            .map_err(|err| invalid(format!("the schema is not JSON: {err}")))?;
        let parsed = Schema::parse(&json).map_err(|err| invalid(err.to_string()))?;
        Ok(Self {
            text: json.to_string(),
            identity: identity(&json),
            parsed,
        })
    }

    /// The schema as it will be stored: compact JSON, attributes in the order given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The JSON with object keys sorted and `{"type":"<primitive>"}` written as `"<primitive>"`.
fn identity(json: &Value) -> String {
    fn normalise(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                if map.len() == 1
                    && let Some(Value::String(name)) = map.get("type")
                    && is_primitive(name)
                {
                    return Value::String(name.clone());
                }
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(key, value)| (key.clone(), normalise(value)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
            other => other.clone(),
        }
    }
    normalise(json).to_string()
}

fn is_primitive(name: &str) -> bool {
    matches!(
        name,
        "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string"
    )
}

#[derive(Debug)]
struct StoredSchema {
    text: Arc<str>,
    identity: String,
    parsed: Arc<Schema>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionEntry {
    id: u32,
    deleted: bool,
}

/// A change worked out against the state: the records to write, and the answer for the caller
/// once they are written.
#[derive(Debug)]
pub struct Planned<T> {
    pub records: Vec<Record>,
    pub answer: T,
}

impl<T> Planned<T> {
    fn nothing(answer: T) -> Self {
        Self {
            records: Vec::new(),
            answer,
        }
    }
}

/// Subjects, versions, schemas by id and compatibility levels.
#[derive(Debug, Default)]
pub struct RegistryState {
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    schemas: BTreeMap<u32, StoredSchema>,
    by_identity: HashMap<String, u32>,
    /// The highest id ever seen; never goes down, so an id is not handed out twice by one
    /// process even after the schema that had it is deleted for good.
    max_id: u32,
    global_level: Option<CompatibilityLevel>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
}

impl RegistryState {
    /// Applies one record (written by this registry or replayed from the topic). An error says
    /// why the record cannot be part of a consistent registry.
    pub fn apply(&mut self, record: &Record) -> Result<(), String> {
        match record {
            Record::Schema {
                subject,
                version,
                value: Some(value),
            } => self.put_version(subject, *version, value),
            Record::Schema {
                subject,
                version,
                value: None,
            } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    let removed = versions.remove(version);
                    if versions.is_empty() {
                        self.subjects.remove(subject);
                    }
                    if let Some(removed) = removed {
                        self.forget_if_unused(removed.id);
                    }
                }
                Ok(())
            }
            Record::Config {
                subject: None,
                level,
            } => {
                self.global_level = *level;
                Ok(())
            }
            Record::Config {
                subject: Some(subject),
                level,
            } => {
                match level {
                    Some(level) => self.subject_levels.insert(subject.clone(), *level),
                    None => self.subject_levels.remove(subject),
                };
                Ok(())
            }
            Record::DeleteSubject { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    for (_, entry) in versions.range_mut(..=*version) {
                        entry.deleted = true;
                    }
                }
                Ok(())
            }
        }
    }

    fn put_version(
        &mut self,
        subject: &str,
        version: u32,
        value: &SchemaValue,
    ) -> Result<(), String> {
        if version == 0 || value.id == 0 {
            return Err("versions and ids start at 1".to_owned());
        }
        let candidate = Candidate::parse(&value.schema).map_err(|err| err.to_string())?;
        match self.schemas.get(&value.id) {
            Some(known) if known.identity != candidate.identity => {
                return Err(format!(
                    "id {} is already the id of a different schema",
                    value.id
                ));
            }
            Some(_) => {}
            None => {
                if let Some(other) = self.by_identity.get(&candidate.identity) {
                    return Err(format!(
                        "the schema already has id {other}, the record gives it id {}",
                        value.id
                    ));
                }
                self.by_identity
                    .insert(candidate.identity.clone(), value.id);
                self.schemas.insert(
                    value.id,
                    StoredSchema {
                        text: Arc::from(value.schema.as_str()),
                        identity: candidate.identity,
                        parsed: Arc::new(candidate.parsed),
                    },
                );
            }
        }
        self.max_id = self.max_id.max(value.id);
        let replaced = self.subjects.entry(subject.to_owned()).or_default().insert(
            version,
            VersionEntry {
                id: value.id,
                deleted: value.deleted,
            },
        );
        if let Some(replaced) = replaced
            && replaced.id != value.id
        {
            self.forget_if_unused(replaced.id);
        }
        Ok(())
    }

    /// Drops the schema of `id` once no version (deleted or not) refers to it any more.
    fn forget_if_unused(&mut self, id: u32) {
        let used = self
            .subjects
            .values()
            .flat_map(BTreeMap::values)
            .any(|entry| entry.id == id);
        if !used && let Some(schema) = self.schemas.remove(&id) {
            self.by_identity.remove(&schema.identity);
        }
    }

    // ---- reads ----

    /// Subject names, sorted; with `include_deleted` also those whose versions are all deleted.
    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| include_deleted || versions.values().any(|v| !v.deleted))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The versions of a subject visible with `include_deleted`, in order.
    pub fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let versions: Vec<u32> = self
            .visible(subject, include_deleted)
            .map(|(version, _)| version)
            .collect();
        if versions.is_empty() {
            return Err(subject_not_found(subject));
        }
        Ok(versions)
    }

    fn visible(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> impl DoubleEndedIterator<Item = (u32, VersionEntry)> + '_ {
        self.subjects
            .get(subject)
            .into_iter()
            .flat_map(|versions| versions.iter())
            .filter(move |(_, entry)| include_deleted || !entry.deleted)
            .map(|(version, entry)| (*version, *entry))
    }

    fn resolve(
        &self,
        subject: &str,
        selector: VersionSelector,
        include_deleted: bool,
    ) -> Result<(u32, VersionEntry), RegistryError> {
        let latest = self
            .visible(subject, include_deleted)
            .next_back()
            .ok_or_else(|| subject_not_found(subject))?;
        match selector {
            VersionSelector::Latest => Ok(latest),
            VersionSelector::Number(version) => self
                .visible(subject, include_deleted)
                .find(|(v, _)| *v == version)
                .ok_or(RegistryError::VersionNotFound { version }),
        }
    }

    fn registered(&self, subject: &str, version: u32, id: u32) -> RegisteredSchema {
        RegisteredSchema {
            subject: subject.to_owned(),
            version,
            id,
            schema: self.schemas[&id].text.clone(),
        }
    }

    /// One version of a subject.
    pub fn version(
        &self,
        subject: &str,
        selector: VersionSelector,
        include_deleted: bool,
    ) -> Result<RegisteredSchema, RegistryError> {
        let (version, entry) = self.resolve(subject, selector, include_deleted)?;
        Ok(self.registered(subject, version, entry.id))
    }

    /// The schema text of an id; deleted versions keep their schema readable by id, as old
    /// messages still carry it.
    pub fn schema(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        self.schemas
            .get(&id)
            .map(|schema| schema.text.clone())
            .ok_or(RegistryError::SchemaNotFound { id: Some(id) })
    }

    /// The subject versions that use an id.
    pub fn id_versions(
        &self,
        id: u32,
        include_deleted: bool,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        if !self.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaNotFound { id: Some(id) });
        }
        Ok(self
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(|(_, entry)| entry.id == id && (include_deleted || !entry.deleted))
                    .map(|(version, _)| (subject.clone(), *version))
            })
            .collect())
    }

    /// The newest version of `subject` holding `candidate`.
    pub fn lookup(
        &self,
        subject: &str,
        candidate: &Candidate,
        include_deleted: bool,
    ) -> Result<RegisteredSchema, RegistryError> {
        if self.visible(subject, include_deleted).next().is_none() {
            return Err(subject_not_found(subject));
        }
        let id = self
            .by_identity
            .get(&candidate.identity)
            .ok_or(RegistryError::SchemaNotFound { id: None })?;
        let (version, _) = self
            .visible(subject, include_deleted)
            .rev()
            .find(|(_, entry)| entry.id == *id)
            .ok_or(RegistryError::SchemaNotFound { id: None })?;
        Ok(self.registered(subject, version, *id))
    }

    /// The level set globally (BACKWARD when none is).
    pub fn global_level(&self) -> CompatibilityLevel {
        self.global_level.unwrap_or_default()
    }

    /// The level set for the subject itself, if any.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    /// The level that applies to the subject.
    pub fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .unwrap_or_else(|| self.global_level())
    }

    fn earlier(&self, subject: &str) -> Vec<Earlier<'_>> {
        self.visible(subject, false)
            .map(|(version, entry)| {
                let schema = &self.schemas[&entry.id];
                Earlier {
                    version,
                    schema: &schema.parsed,
                    text: &schema.text,
                }
            })
            .collect()
    }

    /// Findings of `candidate` against one version under the subject's level (empty:
    /// compatible).
    pub fn test_against_version(
        &self,
        subject: &str,
        selector: VersionSelector,
        candidate: &Candidate,
    ) -> Result<Vec<String>, RegistryError> {
        let (version, entry) = self.resolve(subject, selector, false)?;
        let schema = &self.schemas[&entry.id];
        let earlier = Earlier {
            version,
            schema: &schema.parsed,
            text: &schema.text,
        };
        Ok(compatibility::check_one(
            self.effective_level(subject),
            &candidate.parsed,
            &earlier,
        ))
    }

    /// Findings of `candidate` against the versions its registration would be checked against.
    pub fn test_against_subject(&self, subject: &str, candidate: &Candidate) -> Vec<String> {
        compatibility::check(
            self.effective_level(subject),
            &candidate.parsed,
            &self.earlier(subject),
        )
    }

    // ---- changes ----

    /// Registers `candidate` under `subject`: the existing id when the subject already has it
    /// (nothing written), otherwise a new version after the compatibility check, with the id
    /// the schema has anywhere in the registry or the next free one.
    pub fn plan_register(
        &self,
        subject: &str,
        candidate: &Candidate,
    ) -> Result<Planned<u32>, RegistryError> {
        let known_id = self.by_identity.get(&candidate.identity).copied();
        if let Some(id) = known_id
            && self
                .visible(subject, false)
                .any(|(_, entry)| entry.id == id)
        {
            return Ok(Planned::nothing(id));
        }
        let findings = self.test_against_subject(subject, candidate);
        if !findings.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                findings,
            });
        }
        let id = known_id.unwrap_or(self.max_id + 1);
        // Soft-deleted versions keep their numbers: a new version comes after them.
        let version = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.keys().next_back())
            .map_or(1, |latest| latest + 1);
        Ok(Planned {
            records: vec![Record::Schema {
                subject: subject.to_owned(),
                version,
                value: Some(SchemaValue {
                    subject: subject.to_owned(),
                    version,
                    id,
                    schema: candidate.text.clone(),
                    deleted: false,
                    schema_type: None,
                }),
            }],
            answer: id,
        })
    }

    fn deleted_record(&self, subject: &str, version: u32, entry: VersionEntry) -> Record {
        Record::Schema {
            subject: subject.to_owned(),
            version,
            value: Some(SchemaValue {
                subject: subject.to_owned(),
                version,
                id: entry.id,
                schema: self.schemas[&entry.id].text.to_string(),
                deleted: true,
                schema_type: None,
            }),
        }
    }

    /// Deletes one version: soft (marked deleted, still readable by id) or, once soft deleted,
    /// `permanent` (removed). Answers the version number.
    pub fn plan_delete_version(
        &self,
        subject: &str,
        selector: VersionSelector,
        permanent: bool,
    ) -> Result<Planned<u32>, RegistryError> {
        let (version, entry) = self.resolve(subject, selector, permanent)?;
        if !permanent {
            return Ok(Planned {
                records: vec![self.deleted_record(subject, version, entry)],
                answer: version,
            });
        }
        if !entry.deleted {
            return Err(RegistryError::VersionNotSoftDeleted {
                subject: subject.to_owned(),
                version,
            });
        }
        Ok(Planned {
            records: vec![Record::Schema {
                subject: subject.to_owned(),
                version,
                value: None,
            }],
            answer: version,
        })
    }

    /// Soft deletes every version of a subject, or removes them all when `permanent` (after a
    /// soft delete), with the subject's own level. Answers the versions deleted.
    pub fn plan_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Planned<Vec<u32>>, RegistryError> {
        let all: Vec<(u32, VersionEntry)> = self.visible(subject, true).collect();
        if all.is_empty() {
            return Err(subject_not_found(subject));
        }
        let live: Vec<(u32, VersionEntry)> =
            all.iter().copied().filter(|(_, e)| !e.deleted).collect();
        if !permanent {
            if live.is_empty() {
                return Err(RegistryError::SubjectSoftDeleted {
                    subject: subject.to_owned(),
                });
            }
            return Ok(Planned {
                records: live
                    .iter()
                    .map(|(version, entry)| self.deleted_record(subject, *version, *entry))
                    .collect(),
                answer: live.iter().map(|(version, _)| *version).collect(),
            });
        }
        if !live.is_empty() {
            return Err(RegistryError::SubjectNotSoftDeleted {
                subject: subject.to_owned(),
            });
        }
        let mut records: Vec<Record> = all
            .iter()
            .map(|(version, _)| Record::Schema {
                subject: subject.to_owned(),
                version: *version,
                value: None,
            })
            .collect();
        if self.subject_levels.contains_key(subject) {
            records.push(Record::Config {
                subject: Some(subject.to_owned()),
                level: None,
            });
        }
        Ok(Planned {
            records,
            answer: all.iter().map(|(version, _)| *version).collect(),
        })
    }

    /// Sets the global level (`subject` `None`) or a subject's.
    pub fn plan_set_level(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Planned<CompatibilityLevel> {
        Planned {
            records: vec![Record::Config {
                subject: subject.map(str::to_owned),
                level: Some(level),
            }],
            answer: level,
        }
    }

    /// Removes a subject's own level; answers the level it had.
    pub fn plan_delete_subject_level(
        &self,
        subject: &str,
    ) -> Result<Planned<CompatibilityLevel>, RegistryError> {
        let level = self.subject_level(subject).ok_or_else(|| {
            RegistryError::SubjectLevelNotConfigured {
                subject: subject.to_owned(),
            }
        })?;
        Ok(Planned {
            records: vec![Record::Config {
                subject: Some(subject.to_owned()),
                level: None,
            }],
            answer: level,
        })
    }
}

fn subject_not_found(subject: &str) -> RegistryError {
    RegistryError::SubjectNotFound {
        subject: subject.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"},{"name":"n","type":["null","string"],"default":null}]}"#;
    const V2_REQUIRED: &str = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"},{"name":"n","type":"string"}]}"#;

    fn candidate(text: &str) -> Candidate {
        Candidate::parse(text).expect("valid schema")
    }

    /// Plans and applies, as the store does after a successful write.
    fn run<T>(
        state: &mut RegistryState,
        plan: impl FnOnce(&RegistryState) -> Result<Planned<T>, RegistryError>,
    ) -> Result<T, RegistryError> {
        let planned = plan(state)?;
        for record in &planned.records {
            state.apply(record).expect("a planned record applies");
        }
        Ok(planned.answer)
    }

    fn register(
        state: &mut RegistryState,
        subject: &str,
        text: &str,
    ) -> Result<u32, RegistryError> {
        let candidate = candidate(text);
        run(state, |s| s.plan_register(subject, &candidate))
    }

    /// A state rebuilt from the records `state` would have on the topic: the newest per key.
    fn replayed(records: &[Record]) -> RegistryState {
        let mut latest: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        for record in records {
            latest.insert(record.encode().0, record.clone());
        }
        let mut state = RegistryState::default();
        for record in latest.values() {
            state.apply(record).expect("replayable");
        }
        state
    }

    #[test]
    fn ids_are_global_versions_per_subject_and_identical_schemas_dedupe() {
        let mut state = RegistryState::default();
        assert_eq!(register(&mut state, "a-value", V1).unwrap(), 1);
        assert_eq!(register(&mut state, "a-value", V2).unwrap(), 2);
        // Same schema, another subject: same id, version 1 there.
        assert_eq!(register(&mut state, "b-value", V2).unwrap(), 2);
        assert_eq!(state.versions("b-value", false).unwrap(), vec![1]);
        // Again in the same subject: nothing written, the existing id.
        let planned = state.plan_register("a-value", &candidate(V2)).unwrap();
        assert!(planned.records.is_empty());
        assert_eq!(planned.answer, 2);
        // Spacing, key order and {"type":"int"} vs "int" do not make another schema.
        let respelled = r#"{ "fields": [ {"type": {"type":"int"}, "name": "id"} ], "name": "Value", "type": "record" }"#;
        let planned = state
            .plan_register("a-value", &candidate(respelled))
            .unwrap();
        assert_eq!((planned.records.len(), planned.answer), (0, 1));
        // A different default is a different schema.
        let other_default = V2.replace(r#""default":null"#, r#""default":null,"doc":"x""#);
        assert_eq!(register(&mut state, "a-value", &other_default).unwrap(), 3);
        assert_eq!(state.versions("a-value", false).unwrap(), vec![1, 2, 3]);
        let latest = state
            .version("a-value", VersionSelector::Latest, false)
            .unwrap();
        assert_eq!((latest.version, latest.id), (3, 3));
        assert_eq!(state.schema(1).unwrap().as_ref(), V1);
        assert_eq!(
            state.id_versions(2, false).unwrap(),
            vec![("a-value".to_owned(), 2), ("b-value".to_owned(), 1)]
        );
        assert_eq!(state.subjects(false), vec!["a-value", "b-value"]);
    }

    #[test]
    fn invalid_schemas_and_versions_are_refused() {
        let err = Candidate::parse(r#"{"type":"record","name":"X"}"#).unwrap_err();
        assert_eq!(err.error_code(), 42201);
        assert_eq!(Candidate::parse("{").unwrap_err().error_code(), 42201);
        assert_eq!(VersionSelector::parse("0").unwrap_err().error_code(), 42202);
        assert_eq!(VersionSelector::parse("x").unwrap_err().error_code(), 42202);
        assert_eq!(
            VersionSelector::parse("2147483648")
                .unwrap_err()
                .error_code(),
            42202
        );
        assert_eq!(
            VersionSelector::parse("-1").unwrap(),
            VersionSelector::Latest
        );
        assert_eq!(
            VersionSelector::parse("7").unwrap(),
            VersionSelector::Number(7)
        );
    }

    #[test]
    fn incompatible_schemas_are_refused_under_the_subjects_level() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        let err = register(&mut state, "s", V2_REQUIRED).unwrap_err();
        assert_eq!(err.error_code(), 409);
        assert!(err.to_string().contains("subject \"s\""), "{err}");
        // Nothing changed.
        assert_eq!(state.versions("s", false).unwrap(), vec![1]);
        // Forward on the subject allows it; the global level is untouched.
        run(&mut state, |s| {
            Ok(s.plan_set_level(Some("s"), CompatibilityLevel::Forward))
        })
        .unwrap();
        assert_eq!(state.effective_level("s"), CompatibilityLevel::Forward);
        assert_eq!(state.effective_level("t"), CompatibilityLevel::Backward);
        assert_eq!(register(&mut state, "s", V2_REQUIRED).unwrap(), 2);
        // Global NONE applies to subjects without a level of their own.
        run(&mut state, |s| {
            Ok(s.plan_set_level(None, CompatibilityLevel::None))
        })
        .unwrap();
        register(&mut state, "t", V2_REQUIRED).unwrap();
        register(&mut state, "t", r#""string""#).unwrap();
        assert_eq!(
            run(&mut state, |s| s.plan_delete_subject_level("s")).unwrap(),
            CompatibilityLevel::Forward
        );
        assert_eq!(
            state
                .plan_delete_subject_level("s")
                .unwrap_err()
                .error_code(),
            40408
        );
        assert_eq!(state.effective_level("s"), CompatibilityLevel::None);
    }

    #[test]
    fn transitive_levels_check_every_live_version() {
        let with_string = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"},{"name":"n","type":"string","default":""}]}"#;
        let with_long = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"},{"name":"n","type":"long","default":0}]}"#;
        let mut state = RegistryState::default();
        register(&mut state, "s", with_string).unwrap();
        register(&mut state, "s", V1).unwrap();
        run(&mut state, |s| {
            Ok(s.plan_set_level(Some("s"), CompatibilityLevel::BackwardTransitive))
        })
        .unwrap();
        let err = register(&mut state, "s", with_long).unwrap_err();
        assert_eq!(err.error_code(), 409);
        assert!(err.to_string().contains("{oldSchemaVersion: 1}"), "{err}");
        // Under plain BACKWARD only version 2 counts.
        let c = candidate(with_long);
        run(&mut state, |s| {
            Ok(s.plan_set_level(Some("s"), CompatibilityLevel::Backward))
        })
        .unwrap();
        assert!(state.test_against_subject("s", &c).is_empty());
        // Checking one given version uses that version whatever the transitivity.
        assert!(
            !state
                .test_against_version("s", VersionSelector::Number(1), &c)
                .unwrap()
                .is_empty()
        );
        // A soft-deleted version no longer counts.
        run(&mut state, |s| {
            s.plan_delete_version("s", VersionSelector::Number(1), false)
        })
        .unwrap();
        run(&mut state, |s| {
            Ok(s.plan_set_level(Some("s"), CompatibilityLevel::FullTransitive))
        })
        .unwrap();
        assert_eq!(register(&mut state, "s", with_long).unwrap(), 3);
    }

    #[test]
    fn soft_then_hard_delete_of_versions() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        register(&mut state, "s", V2).unwrap();
        // Hard delete needs a soft delete first.
        let err = state
            .plan_delete_version("s", VersionSelector::Number(1), true)
            .unwrap_err();
        assert_eq!(err.error_code(), 40407);
        assert_eq!(
            run(&mut state, |s| s.plan_delete_version(
                "s",
                VersionSelector::Number(1),
                false
            ))
            .unwrap(),
            1
        );
        assert_eq!(state.versions("s", false).unwrap(), vec![2]);
        assert_eq!(state.versions("s", true).unwrap(), vec![1, 2]);
        let err = state
            .version("s", VersionSelector::Number(1), false)
            .unwrap_err();
        assert_eq!(err.error_code(), 40402);
        assert_eq!(
            state
                .version("s", VersionSelector::Number(1), true)
                .unwrap()
                .id,
            1
        );
        // Still readable by id: old messages carry it.
        assert_eq!(state.schema(1).unwrap().as_ref(), V1);
        assert!(state.id_versions(1, false).unwrap().is_empty());
        // Deleting it again.
        let err = state
            .plan_delete_version("s", VersionSelector::Number(1), false)
            .unwrap_err();
        assert_eq!(err.error_code(), 40402);
        // Re-registering a soft-deleted schema makes a new version with the same id.
        assert_eq!(register(&mut state, "s", V1).unwrap(), 1);
        assert_eq!(state.versions("s", false).unwrap(), vec![2, 3]);
        // Hard delete of version 1: id 1 lives on in version 3.
        run(&mut state, |s| {
            s.plan_delete_version("s", VersionSelector::Number(1), true)
        })
        .unwrap();
        assert_eq!(state.versions("s", true).unwrap(), vec![2, 3]);
        assert_eq!(state.schema(1).unwrap().as_ref(), V1);
        assert_eq!(
            state
                .plan_delete_version("s", VersionSelector::Number(9), false)
                .unwrap_err()
                .error_code(),
            40402
        );
        assert_eq!(
            state
                .plan_delete_version("nope", VersionSelector::Latest, false)
                .unwrap_err()
                .error_code(),
            40401
        );
    }

    #[test]
    fn soft_then_hard_delete_of_subjects() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        register(&mut state, "s", V2).unwrap();
        register(&mut state, "other", V2).unwrap();
        run(&mut state, |s| {
            Ok(s.plan_set_level(Some("s"), CompatibilityLevel::None))
        })
        .unwrap();
        assert_eq!(
            state
                .plan_delete_subject("s", true)
                .unwrap_err()
                .error_code(),
            40405
        );
        assert_eq!(
            run(&mut state, |s| s.plan_delete_subject("s", false)).unwrap(),
            vec![1, 2]
        );
        assert_eq!(state.subjects(false), vec!["other"]);
        assert_eq!(state.subjects(true), vec!["other", "s"]);
        assert_eq!(state.versions("s", false).unwrap_err().error_code(), 40401);
        assert_eq!(
            state
                .plan_delete_subject("s", false)
                .unwrap_err()
                .error_code(),
            40404
        );
        let lookup = state.lookup("s", &candidate(V1), false).unwrap_err();
        assert_eq!(lookup.error_code(), 40401);
        assert_eq!(state.lookup("s", &candidate(V1), true).unwrap().version, 1);

        let planned = state.plan_delete_subject("s", true).unwrap();
        assert!(planned.records.contains(&Record::Config {
            subject: Some("s".into()),
            level: None
        }));
        run(&mut state, |s| s.plan_delete_subject("s", true)).unwrap();
        assert_eq!(state.subjects(true), vec!["other"]);
        assert_eq!(state.subject_level("s"), None);
        // Id 1 was only in s: gone. Id 2 is still used by "other".
        assert_eq!(state.schema(1).unwrap_err().error_code(), 40403);
        assert_eq!(state.schema(2).unwrap().as_ref(), V2);
        // A new schema never reuses id 1 in this process; a re-registered subject starts at 1.
        assert_eq!(register(&mut state, "s", V2_REQUIRED).unwrap(), 3);
        assert_eq!(state.versions("s", false).unwrap(), vec![1]);
        assert_eq!(
            state
                .plan_delete_subject("nope", false)
                .unwrap_err()
                .error_code(),
            40401
        );
    }

    #[test]
    fn lookup_finds_the_version_holding_a_schema() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        register(&mut state, "s", V2).unwrap();
        register(&mut state, "t", V2_REQUIRED).unwrap();
        let found = state.lookup("s", &candidate(V1), false).unwrap();
        assert_eq!(
            (found.subject.as_str(), found.version, found.id),
            ("s", 1, 1)
        );
        // Known elsewhere but not under this subject.
        let err = state
            .lookup("s", &candidate(V2_REQUIRED), false)
            .unwrap_err();
        assert_eq!(err.error_code(), 40403);
        assert_eq!(err.to_string(), "Schema not found");
        assert_eq!(
            state
                .lookup("x", &candidate(V1), false)
                .unwrap_err()
                .error_code(),
            40401
        );
    }

    #[test]
    fn replaying_the_newest_record_per_key_rebuilds_the_same_registry() {
        let mut state = RegistryState::default();
        let mut written = Vec::new();
        let mut step = |state: &mut RegistryState, planned: Planned<()>| {
            for record in &planned.records {
                state.apply(record).unwrap();
                written.push(record.clone());
            }
        };
        for (subject, text) in [("s", V1), ("s", V2), ("t", V2), ("t", V2_REQUIRED)] {
            let c = candidate(text);
            let level = state.plan_set_level(Some("t"), CompatibilityLevel::None);
            step(
                &mut state,
                Planned {
                    records: level.records,
                    answer: (),
                },
            );
            let planned = state.plan_register(subject, &c).unwrap();
            step(
                &mut state,
                Planned {
                    records: planned.records,
                    answer: (),
                },
            );
        }
        let planned = state
            .plan_delete_version("s", VersionSelector::Number(1), false)
            .unwrap();
        step(
            &mut state,
            Planned {
                records: planned.records,
                answer: (),
            },
        );
        let global = state.plan_set_level(None, CompatibilityLevel::Full);
        step(
            &mut state,
            Planned {
                records: global.records,
                answer: (),
            },
        );

        let replayed = replayed(&written);
        for include_deleted in [false, true] {
            assert_eq!(
                replayed.subjects(include_deleted),
                state.subjects(include_deleted)
            );
            for subject in state.subjects(true) {
                assert_eq!(
                    replayed.versions(&subject, include_deleted).ok(),
                    state.versions(&subject, include_deleted).ok()
                );
                for version in state.versions(&subject, true).unwrap() {
                    let selector = VersionSelector::Number(version);
                    assert_eq!(
                        replayed.version(&subject, selector, true).unwrap(),
                        state.version(&subject, selector, true).unwrap()
                    );
                }
            }
        }
        assert_eq!(replayed.global_level(), CompatibilityLevel::Full);
        assert_eq!(replayed.subject_level("t"), Some(CompatibilityLevel::None));
        // The next id continues after the replayed ones.
        let mut replayed = replayed;
        assert_eq!(
            register(&mut replayed, "u", r#""string""#).unwrap(),
            state.max_id + 1
        );
    }

    #[test]
    fn records_that_contradict_the_registry_are_refused() {
        let mut state = RegistryState::default();
        register(&mut state, "s", V1).unwrap();
        let clash = Record::Schema {
            subject: "t".into(),
            version: 1,
            value: Some(SchemaValue {
                subject: "t".into(),
                version: 1,
                id: 1,
                schema: V2.into(),
                deleted: false,
                schema_type: None,
            }),
        };
        let err = state.apply(&clash).unwrap_err();
        assert!(err.contains("id 1"), "{err}");
        let invalid = Record::Schema {
            subject: "t".into(),
            version: 1,
            value: Some(SchemaValue {
                subject: "t".into(),
                version: 1,
                id: 5,
                schema: r#"{"type":"nonsense"}"#.into(),
                deleted: false,
                schema_type: None,
            }),
        };
        assert!(state.apply(&invalid).is_err());
        // A Confluent subject delete marks every version up to the one given.
        register(&mut state, "s", V2).unwrap();
        state
            .apply(&Record::DeleteSubject {
                subject: "s".into(),
                version: 1,
            })
            .unwrap();
        assert_eq!(state.versions("s", false).unwrap(), vec![2]);
    }
}
