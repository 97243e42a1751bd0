//! Reference pages generated from the code, so they cannot drift from it:
//! `tributary docs connectors` prints `docs/connectors.md` from the config key definitions of
//! every plugin in `plugins::PLUGINS`. A test fails when the checked-in page differs.

use tributary::{
    config::definitions::{ConfigKeyDefinition, config_groups},
    runtime::plugins::{self, Plugin},
};

/// The command that rewrites `docs/connectors.md`; the staleness test names it.
pub const REGENERATE_CONNECTORS: &str = "cargo run --quiet -- docs connectors > docs/connectors.md";

/// The connector config reference, Markdown, for every plugin in `plugins::PLUGINS`.
pub fn connectors_reference() -> String {
    let mut out = String::new();
    out.push_str("# Connector configuration reference\n\n");
    out.push_str(&format!(
        "<!-- Generated from src/config/definitions.rs and src/runtime/plugins.rs by \
         `tributary docs connectors`; do not edit by hand. Regenerate with:\n     \
         {REGENERATE_CONNECTORS} -->\n\n"
    ));
    out.push_str(
        "Every connector plugin this build of tributary runs, with every config key it \
         accepts. The same definitions answer `GET /connector-plugins/{plugin}/config` and \
         `PUT /connector-plugins/{plugin}/config/validate` (see [rest-api.md](rest-api.md)). \
         Values are strings in the connector JSON, as in Kafka Connect; numbers and booleans \
         are accepted and taken as their text. Any value may be a `${env:NAME}` or \
         `${file:/path/to/file.properties:key}` placeholder, resolved when the connector starts.\n\n",
    );
    out.push_str("| plugin | type | `connector.class` may also be |\n|---|---|---|\n");
    for plugin in plugins::PLUGINS {
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            plugin.class,
            anchor(plugin.class),
            plugin.kind.as_str(),
            other_names(plugin)
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for plugin in plugins::PLUGINS {
        out.push('\n');
        plugin_section(plugin, &mut out);
    }
    out
}

/// The names besides the class that `connector.class` and `{plugin}` in URLs accept
/// (`Plugin::answers_to`).
fn other_names(plugin: &Plugin) -> Vec<&'static str> {
    let simple = plugin.class.rsplit('.').next().unwrap_or(plugin.class);
    let mut names = vec![simple];
    let short = simple.trim_end_matches("Connector");
    if short != simple && !short.is_empty() {
        names.push(short);
    }
    names.extend(plugin.aliases.iter().copied());
    names.dedup();
    names
}

/// GitHub's heading anchor for a class name: lower case, dots dropped.
fn anchor(class: &str) -> String {
    class
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn plugin_section(plugin: &Plugin, out: &mut String) {
    let definitions = (plugin.definitions)();
    out.push_str(&format!("## {}\n\n", plugin.class));
    out.push_str(&format!(
        "A {} connector. {} keys; required: {}.\n",
        plugin.kind.as_str(),
        definitions.len(),
        {
            let required: Vec<String> = definitions
                .iter()
                .filter(|d| d.required)
                .map(|d| format!("`{}`", d.name))
                .collect();
            if required.is_empty() {
                "none".to_owned()
            } else {
                required.join(", ")
            }
        }
    ));
    for group in config_groups(definitions) {
        out.push_str(&format!("\n### {group}\n\n"));
        out.push_str("| key | type | default | importance | meaning |\n|---|---|---|---|---|\n");
        for definition in definitions.iter().filter(|d| d.group.as_str() == group) {
            out.push_str(&row(definition));
        }
    }
}

fn row(definition: &ConfigKeyDefinition) -> String {
    let default = match (definition.default, definition.required) {
        (Some(""), _) => "`\"\"`".to_owned(),
        (Some(value), _) => format!("`{}`", cell(value)),
        (None, true) => "required".to_owned(),
        (None, false) => "none".to_owned(),
    };
    format!(
        "| `{}` | {} | {} | {} | {} |\n",
        definition.name,
        definition.kind.as_str(),
        default,
        definition.importance.as_str(),
        cell(definition.documentation)
    )
}

/// Table-cell text: a `|` would end the cell and a newline the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_connectors_md_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/connectors.md");
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = connectors_reference();
        assert!(
            checked_in == generated,
            "docs/connectors.md is out of date with the plugin definitions; regenerate it with\n    \
             {REGENERATE_CONNECTORS}\nfirst differing line: {:?}",
            checked_in
                .lines()
                .zip(generated.lines())
                .find(|(a, b)| a != b)
                .map(|(_, generated)| generated)
                .or_else(|| generated.lines().nth(checked_in.lines().count()))
        );
    }

    #[test]
    fn every_plugin_and_every_key_is_in_the_reference() {
        let reference = connectors_reference();
        for plugin in plugins::PLUGINS {
            assert!(
                reference.contains(&format!("## {}\n", plugin.class)),
                "{}",
                plugin.class
            );
            for definition in (plugin.definitions)() {
                assert!(
                    reference.contains(&format!("| `{}` |", definition.name)),
                    "{} of {}",
                    definition.name,
                    plugin.class
                );
            }
        }
    }

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(anchor("io.debezium.X_y"), "iodebeziumx_y");
    }
}
