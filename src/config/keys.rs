use std::{collections::BTreeMap, fmt, str::FromStr};

/// One bad key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every bad key of one config.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "invalid configuration: {}", all.join("; "))
    }
}

impl ValidationErrors {
    pub fn for_key(&self, key: &str) -> impl Iterator<Item = &ValidationError> {
        self.0.iter().filter(move |e| e.key == key)
    }
}

/// Reads typed values out of a string map, collecting one error per bad key and remembering
/// which keys were read, so that the rest can be reported as unknown.
#[derive(Debug)]
pub(crate) struct KeyReader<'a> {
    map: &'a BTreeMap<String, String>,
    read: Vec<&'static str>,
    pub(crate) errors: Vec<ValidationError>,
}

impl<'a> KeyReader<'a> {
    pub(crate) fn new(map: &'a BTreeMap<String, String>) -> Self {
        Self {
            map,
            read: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ValidationError {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// The raw value; blank counts as absent (Connect UIs send empty strings for unset keys).
    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'a str> {
        self.read.push(key);
        self.map
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn required(&mut self, key: &'static str) -> String {
        match self.raw(key) {
            Some(value) => value.to_owned(),
            None => {
                self.error(key, "is required");
                String::new()
            }
        }
    }

    pub(crate) fn string(&mut self, key: &'static str, default: &str) -> String {
        self.raw(key).unwrap_or(default).to_owned()
    }

    pub(crate) fn parsed<T: FromStr>(
        &mut self,
        key: &'static str,
        default: T,
        expected: &str,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some(text) => match text.parse() {
                Ok(value) => value,
                Err(_) => {
                    self.error(key, format!("{text:?} is not {expected}"));
                    default
                }
            },
        }
    }

    pub(crate) fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.raw(key).map(str::to_ascii_lowercase).as_deref() {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.error(
                    key,
                    format!("{other:?} is not a boolean; use true or false"),
                );
                default
            }
        }
    }

    /// One of `choices` (case-insensitive), mapped by `pick`.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        default: T,
        choices: &[(&str, T)],
    ) -> T {
        let Some(text) = self.raw(key) else {
            return default;
        };
        match choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
        {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.error(key, format!("{text:?} is not one of: {}", names.join(", ")));
                default
            }
        }
    }

    /// A comma-separated list (empty entries dropped).
    pub(crate) fn list(&mut self, key: &'static str) -> Vec<String> {
        self.raw(key)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every key asked for so far, present or not.
    #[cfg(test)]
    pub(crate) fn read_keys(&self) -> &[&'static str] {
        &self.read
    }

    /// Refuses `transforms`: applying none of them silently would deliver other data than the
    /// user asked for. `advice` says what to do instead.
    pub(crate) fn refuse_transforms(&mut self, advice: &str) {
        if let Some(transforms) = self.raw("transforms") {
            self.error(
                "transforms",
                format!("single message transforms ({transforms}) are not supported; {advice}"),
            );
        }
    }

    /// Ends reading: every key present, never read and not `accepted` is an error naming
    /// `connector` and the closest of `known` ("did you mean"), except the `ignored` ones
    /// (accepted for compatibility, no effect), which are returned.
    pub(crate) fn finish(
        &mut self,
        connector: &str,
        known: &[&str],
        ignored: &[&str],
        accepted: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let unread: Vec<String> = self
            .unread(|key| {
                key.starts_with("transforms.") || key.starts_with("predicates") || accepted(key)
            })
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut ignored_keys = Vec::new();
        for key in unread {
            if ignored.contains(&key.as_str()) {
                ignored_keys.push(key);
            } else {
                let hint = closest(&key, known)
                    .map(|k| format!("; did you mean {k}?"))
                    .unwrap_or_default();
                self.error(
                    &key,
                    format!("is not a configuration key of the {connector}{hint}"),
                );
            }
        }
        ignored_keys
    }

    /// Keys present but never read and not accepted by `accepted`.
    pub(crate) fn unread(&self, accepted: impl Fn(&str) -> bool) -> Vec<&'a str> {
        self.map
            .keys()
            .map(String::as_str)
            .filter(|k| !self.read.contains(k) && !accepted(k))
            .collect()
    }
}

/// The known key closest to `key` by edit distance, when it is close enough to be a typo.
pub(crate) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 5))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}
