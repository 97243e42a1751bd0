//! `/admin/loggers`: log levels changed at run time, as Kafka Connect's LoggingResource does.
//! Loggers are tracing targets (module paths such as `tributary::source::postgres`); `root` is
//! the default for everything else.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

/// Applies a tracing filter directive string such as `info,tributary::source=debug`.
pub type ApplyFilter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"];

/// The levels set so far and how to apply them.
#[derive(Clone)]
pub struct LogLevels {
    state: Arc<Mutex<Levels>>,
    apply: ApplyFilter,
}

struct Levels {
    root: String,
    /// Logger → (level, when it was set in ms since the epoch).
    loggers: BTreeMap<String, (String, i64)>,
}

impl std::fmt::Debug for LogLevels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevels").finish_non_exhaustive()
    }
}

impl LogLevels {
    /// Starts from `root` (e.g. "INFO") with nothing else set.
    pub fn new(root: &str, apply: ApplyFilter) -> Self {
        Self {
            state: Arc::new(Mutex::new(Levels {
                root: root.to_ascii_uppercase(),
                loggers: BTreeMap::new(),
            })),
            apply,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Levels> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every logger with an explicit level, and `root`: `(name, level, last_modified)`.
    pub fn all(&self) -> Vec<(String, String, Option<i64>)> {
        let levels = self.lock();
        let mut all = vec![("root".to_owned(), levels.root.clone(), None)];
        all.extend(
            levels
                .loggers
                .iter()
                .map(|(name, (level, at))| (name.clone(), level.clone(), Some(*at))),
        );
        all
    }

    /// The effective level of `logger`: its own, or its nearest parent's, or root's.
    pub fn level(&self, logger: &str) -> (String, Option<i64>) {
        let levels = self.lock();
        if logger == "root" {
            return (levels.root.clone(), None);
        }
        let mut name = logger;
        loop {
            if let Some((level, at)) = levels.loggers.get(name) {
                return (level.clone(), (name == logger).then_some(*at));
            }
            match name.rfind("::") {
                Some(i) => name = &name[..i],
                None => return (levels.root.clone(), None),
            }
        }
    }

    /// Sets `logger` (or `root`) to `level`; returns the loggers whose level changed (Connect
    /// answers with that list). An unknown level is an error naming the valid ones.
    pub fn set(&self, logger: &str, level: &str, now_ms: i64) -> Result<Vec<String>, String> {
        let level = level.to_ascii_uppercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(format!(
                "Invalid log level '{level}'; use one of {}",
                LEVELS.join(", ")
            ));
        }
        let mut levels = self.lock();
        let mut affected = Vec::new();
        if logger == "root" {
            levels.root = level.clone();
            affected.push("root".to_owned());
        } else {
            // Children set earlier follow their parent, as log4j does for a parent change.
            let prefix = format!("{logger}::");
            for (name, entry) in levels.loggers.iter_mut() {
                if name.starts_with(&prefix) {
                    *entry = (level.clone(), now_ms);
                    affected.push(name.clone());
                }
            }
            levels
                .loggers
                .insert(logger.to_owned(), (level.clone(), now_ms));
            affected.insert(0, logger.to_owned());
        }
        let directives = std::iter::once(levels.root.to_ascii_lowercase())
            .chain(
                levels
                    .loggers
                    .iter()
                    .map(|(name, (level, _))| format!("{name}={}", level.to_ascii_lowercase())),
            )
            .collect::<Vec<_>>()
            .join(",");
        drop(levels);
        (self.apply)(&directives)?;
        Ok(affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_apply_as_tracing_directives_and_inherit() {
        let applied = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&applied);
        let levels = LogLevels::new(
            "info",
            Arc::new(move |d: &str| {
                *sink.lock().expect("lock") = d.to_owned();
                Ok(())
            }),
        );
        let affected = levels.set("tributary::source", "debug", 5).expect("valid");
        assert_eq!(affected, ["tributary::source"]);
        assert_eq!(
            *applied.lock().expect("lock"),
            "info,tributary::source=debug"
        );
        assert_eq!(
            levels.level("tributary::source::postgres"),
            ("DEBUG".to_owned(), None)
        );
        assert_eq!(
            levels.level("tributary::source"),
            ("DEBUG".to_owned(), Some(5))
        );
        assert_eq!(levels.level("tributary::kafka"), ("INFO".to_owned(), None));
        assert!(levels.set("x", "LOUD", 6).is_err());
        levels.set("root", "warn", 7).expect("valid");
        assert_eq!(
            *applied.lock().expect("lock"),
            "warn,tributary::source=debug"
        );
    }
}
