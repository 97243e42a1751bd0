//! Config providers, as Kafka Connect's: `${env:NAME}` takes an environment variable and
//! `${file:/path/to/file.properties:key}` a key of a properties file, so secrets need not sit in
//! the connector JSON (or in the configs topic, which keeps the placeholder, not the value).

use std::collections::BTreeMap;

use super::{ValidationError, ValidationErrors};

/// The config with every placeholder replaced; every unresolvable one is reported on its key.
pub fn resolve(
    config: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ValidationErrors> {
    let mut resolved = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in config {
        match resolve_value(value) {
            Ok(value) => {
                resolved.insert(key.clone(), value);
            }
            Err(message) => errors.push(ValidationError {
                key: key.clone(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(ValidationErrors(errors))
    }
}

fn resolve_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // Not a placeholder: keep the text as it is.
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let reference = &after[..end];
        out.push_str(&lookup(reference)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(reference: &str) -> Result<String, String> {
    let (provider, path) = reference.split_once(':').ok_or_else(|| {
        format!("${{{reference}}} names no provider; use ${{env:NAME}} or ${{file:/path:key}}")
    })?;
    match provider {
        "env" => std::env::var(path).map_err(|_| {
            format!("${{env:{path}}}: the environment variable {path} is not set for the tributary process")
        }),
        "file" => {
            let (file, key) = path.rsplit_once(':').ok_or_else(|| {
                format!("${{file:{path}}} needs a key: ${{file:/path/to/file.properties:key}}")
            })?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("${{file:{path}}}: cannot read {file}: {e}"))?;
            text.lines()
                .map(str::trim)
                .filter(|line| !line.starts_with('#') && !line.starts_with('!'))
                .find_map(|line| {
                    let (k, v) = line.split_once(['=', ':'])?;
                    (k.trim() == key).then(|| v.trim().to_owned())
                })
                .ok_or_else(|| format!("${{file:{path}}}: {file} has no key {key}"))
        }
        other => Err(format!(
            "${{{reference}}}: unknown config provider {other:?}; use env or file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_file_placeholders_resolve_and_failures_name_the_key() {
        let dir = std::env::temp_dir().join(format!("tributary-providers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secrets.properties");
        std::fs::write(&file, "# secrets\npassword = s3cret\nuser: cdc\n").expect("file");
        // PATH is set in every environment this runs in.
        let path = std::env::var("PATH").expect("PATH");
        let config = BTreeMap::from([
            ("a".to_owned(), "${env:PATH}".to_owned()),
            (
                "database.password".to_owned(),
                format!("${{file:{}:password}}", file.display()),
            ),
            (
                "database.user".to_owned(),
                format!("pre-${{file:{}:user}}-post", file.display()),
            ),
            ("plain".to_owned(), "no ${ placeholder".to_owned()),
        ]);
        let resolved = resolve(&config).expect("resolves");
        assert_eq!(resolved["a"], path);
        assert_eq!(resolved["database.password"], "s3cret");
        assert_eq!(resolved["database.user"], "pre-cdc-post");
        assert_eq!(resolved["plain"], "no ${ placeholder");

        let bad = BTreeMap::from([
            (
                "x".to_owned(),
                "${env:TRIBUTARY_SURELY_UNSET_VARIABLE}".to_owned(),
            ),
            (
                "y".to_owned(),
                format!("${{file:{}:nokey}}", file.display()),
            ),
            ("z".to_owned(), "${vault:secret}".to_owned()),
        ]);
        let errors = resolve(&bad).expect_err("unresolvable");
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["x", "y", "z"]);
        assert!(errors.0[0].message.contains("is not set"));
        assert!(!errors.to_string().contains("s3cret"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
