//! `tributary connectors ...`: a thin client of the REST API of a running `tributary serve`.
//! Every subcommand is one or two requests; the answers are shown as aligned tables (or as the
//! API's JSON with `--json`), and an error envelope becomes a message and a non-zero exit.

use std::{io::Read, path::PathBuf};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::{
    client::{ClientError, Credentials, RestClient},
    table,
};

const CONNECTORS_EXAMPLES: &str = "\
Examples:
  tributary connectors list
  tributary connectors create -f connectors/postgres-source.json
  tributary connectors status shop-source
  tributary connectors pause shop-source
  tributary connectors resume shop-source
  tributary connectors restart shop-source --include-tasks --only-failed
  tributary connectors delete shop-source
  TRIBUTARY_URL=http://tributary:8083 TRIBUTARY_TOKEN=s3cret tributary connectors list";

/// Where the API is and how to authenticate; given before or after the subcommand.
#[derive(Debug, Args)]
pub struct Target {
    /// Base URL of the REST API of `tributary serve`.
    #[arg(
        long,
        global = true,
        env = "TRIBUTARY_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8083"
    )]
    url: String,
    /// Bearer token, when the worker sets `[rest] bearer_token`.
    #[arg(
        long,
        global = true,
        env = "TRIBUTARY_TOKEN",
        hide_env_values = true,
        conflicts_with = "basic_auth"
    )]
    token: Option<String>,
    /// `user:password`, when the worker sets `[rest] basic_auth`.
    #[arg(
        long,
        global = true,
        env = "TRIBUTARY_BASIC_AUTH",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    basic_auth: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// Manage the connectors of a running `tributary serve` over its REST API.
#[derive(Debug, Args)]
#[command(after_help = CONNECTORS_EXAMPLES)]
pub struct ConnectorsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: ConnectorsCommand,
}

#[derive(Debug, Subcommand)]
enum ConnectorsCommand {
    /// Lists every connector with its type, state, task states and worker.
    #[command(
        after_help = "Example:\n  tributary connectors list\n  tributary connectors list --json"
    )]
    List,
    /// Shows a connector's type, tasks and config (secrets as [hidden]).
    #[command(after_help = "Example:\n  tributary connectors get shop-source")]
    Get {
        /// The connector's name.
        name: String,
    },
    /// Creates a connector from Kafka Connect JSON: {"name": ..., "config": {...}}.
    #[command(after_help = "\
Examples:
  tributary connectors create -f connectors/postgres-source.json
  cat connectors/postgres-source.json | tributary connectors create
  tributary connectors create -f - < connectors/postgres-source.json")]
    Create {
        /// The connector JSON file, or `-` for standard input.
        #[arg(short = 'f', long = "file", default_value = "-")]
        file: PathBuf,
    },
    /// Deletes a connector (its offsets stay on the offsets topic).
    #[command(after_help = "Example:\n  tributary connectors delete shop-source")]
    Delete {
        /// The connector's name.
        name: String,
    },
    /// Shows the state of a connector and of its tasks, with the trace of a failed task.
    #[command(after_help = "Example:\n  tributary connectors status shop-source")]
    Status {
        /// The connector's name.
        name: String,
    },
    /// Pauses a connector: its task stops reading until it is resumed.
    #[command(after_help = "Example:\n  tributary connectors pause shop-source")]
    Pause {
        /// The connector's name.
        name: String,
    },
    /// Resumes a paused or stopped connector.
    #[command(after_help = "Example:\n  tributary connectors resume shop-source")]
    Resume {
        /// The connector's name.
        name: String,
    },
    /// Restarts a connector and its task.
    #[command(after_help = "\
Examples:
  tributary connectors restart shop-source
  tributary connectors restart shop-source --include-tasks --only-failed")]
    Restart {
        /// The connector's name.
        name: String,
        /// Connect's `includeTasks=true`: answer with the status of what restarts.
        #[arg(long)]
        include_tasks: bool,
        /// Connect's `onlyFailed=true`: restart only if the connector or its task failed.
        #[arg(long)]
        only_failed: bool,
    },
}

/// What can go wrong in a `connectors` subcommand.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "{path} is not a connector JSON document ({reason}); expected {{\"name\": ..., \"config\": {{...}}}}"
    )]
    NotConnectorJson { path: String, reason: String },
    #[error("the API answered {path} with an unexpected shape: {what}")]
    Shape { path: String, what: String },
}

/// Runs one `connectors` subcommand and returns what to print.
pub async fn run(args: ConnectorsArgs) -> Result<String, CommandError> {
    let credentials = match (args.target.token, args.target.basic_auth) {
        (Some(token), _) => Credentials::Bearer(token),
        (None, Some(basic)) => Credentials::Basic(basic),
        (None, None) => Credentials::None,
    };
    let client = RestClient::new(&args.target.url, credentials)?;
    let json = args.target.json;
    match args.command {
        ConnectorsCommand::List => {
            let path = "/connectors?expand=status&expand=info";
            let answer = client.call(Method::GET, path, None).await?;
            if json {
                return Ok(pretty(&answer));
            }
            list_table(&answer).ok_or_else(|| shape(path, "not an object of connectors"))
        }
        ConnectorsCommand::Get { name } => {
            let path = format!("/connectors/{}", segment(&name));
            let answer = client.call(Method::GET, &path, None).await?;
            if json {
                return Ok(pretty(&answer));
            }
            info_text(&answer).ok_or_else(|| shape(&path, "no config object"))
        }
        ConnectorsCommand::Status { name } => {
            let path = format!("/connectors/{}/status", segment(&name));
            let answer = client.call(Method::GET, &path, None).await?;
            if json {
                return Ok(pretty(&answer));
            }
            status_text(&answer).ok_or_else(|| shape(&path, "no connector state"))
        }
        ConnectorsCommand::Create { file } => {
            let (shown, body) = read_connector_json(&file)?;
            let answer = client.call(Method::POST, "/connectors", Some(body)).await?;
            if json {
                return Ok(pretty(&answer));
            }
            let name = answer["name"].as_str().unwrap_or("?");
            let kind = answer["type"].as_str().unwrap_or("unknown");
            Ok(format!("created {kind} connector {name} (from {shown})\n"))
        }
        ConnectorsCommand::Delete { name } => {
            let path = format!("/connectors/{}", segment(&name));
            client.call(Method::DELETE, &path, None).await?;
            Ok(format!("deleted connector {name}\n"))
        }
        ConnectorsCommand::Pause { name } => {
            let path = format!("/connectors/{}/pause", segment(&name));
            client.call(Method::PUT, &path, None).await?;
            Ok(format!(
                "pause requested for connector {name} (see `tributary connectors status {name}`)\n"
            ))
        }
        ConnectorsCommand::Resume { name } => {
            let path = format!("/connectors/{}/resume", segment(&name));
            client.call(Method::PUT, &path, None).await?;
            Ok(format!(
                "resume requested for connector {name} (see `tributary connectors status {name}`)\n"
            ))
        }
        ConnectorsCommand::Restart {
            name,
            include_tasks,
            only_failed,
        } => {
            let path = format!(
                "/connectors/{}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}",
                segment(&name)
            );
            let answer = client.call(Method::POST, &path, None).await?;
            if answer.is_null() {
                return Ok(format!("restart requested for connector {name}\n"));
            }
            if json {
                return Ok(pretty(&answer));
            }
            status_text(&answer).ok_or_else(|| shape(&path, "no connector state"))
        }
    }
}

fn shape(path: &str, what: &str) -> CommandError {
    CommandError::Shape {
        path: path.to_owned(),
        what: what.to_owned(),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// Reads the connector JSON from a file or standard input and checks it is a JSON object, so a
/// typo is reported with the file's name rather than as the API's "not valid JSON".
fn read_connector_json(file: &std::path::Path) -> Result<(String, Vec<u8>), CommandError> {
    let from_stdin = file.as_os_str() == "-";
    let shown = if from_stdin {
        "standard input".to_owned()
    } else {
        file.display().to_string()
    };
    let mut bytes = Vec::new();
    let read = if from_stdin {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    read.map_err(|e| CommandError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    check_connector_json(&bytes).map_err(|reason| CommandError::NotConnectorJson {
        path: shown.clone(),
        reason,
    })?;
    Ok((shown, bytes))
}

fn check_connector_json(bytes: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("not a JSON object".to_owned());
    }
    if !value.get("config").is_some_and(Value::is_object) {
        return Err("no \"config\" object".to_owned());
    }
    Ok(())
}

/// A URL path segment: everything but Connect-safe characters percent-encoded.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The task states of a status document, comma-separated; `-` when it has none (STOPPED).
fn task_states(status: &Value) -> String {
    let states: Vec<String> = status["tasks"]
        .as_array()
        .map(|tasks| tasks.iter().map(|t| text(&t["state"])).collect())
        .unwrap_or_default();
    if states.is_empty() {
        "-".to_owned()
    } else {
        states.join(",")
    }
}

/// `GET /connectors?expand=status&expand=info` as a table, sorted by name.
fn list_table(body: &Value) -> Option<String> {
    let connectors = body.as_object()?;
    let mut rows: Vec<Vec<String>> = connectors
        .iter()
        .map(|(name, entry)| {
            let status = &entry["status"];
            let kind = status
                .get("type")
                .or_else(|| entry["info"].get("type"))
                .map_or_else(|| "-".to_owned(), text);
            vec![
                name.clone(),
                kind,
                text(&status["connector"]["state"]),
                task_states(status),
                text(&status["connector"]["worker_id"]),
            ]
        })
        .collect();
    rows.sort();
    Some(table::render(
        &["NAME", "TYPE", "STATE", "TASKS", "WORKER"],
        &rows,
    ))
}

/// `GET /connectors/{name}/status`: the connector, its tasks, and the trace of any failed task.
fn status_text(status: &Value) -> Option<String> {
    let connector = status.get("connector")?;
    let mut out = table::render(
        &["NAME", "TYPE", "STATE", "WORKER"],
        &[vec![
            text(&status["name"]),
            text(&status["type"]),
            text(&connector["state"]),
            text(&connector["worker_id"]),
        ]],
    );
    let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
    if tasks.is_empty() {
        out.push_str("\nno tasks\n");
        return Some(out);
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|task| {
            vec![
                text(&task["id"]),
                text(&task["state"]),
                text(&task["worker_id"]),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table::render(&["TASK", "STATE", "WORKER"], &rows));
    for task in &tasks {
        if let Some(trace) = task["trace"].as_str() {
            out.push_str(&format!("\ntask {} trace:\n{trace}\n", text(&task["id"])));
        }
    }
    Some(out)
}

/// `GET /connectors/{name}`: name, type, tasks and the config as a key/value table.
fn info_text(info: &Value) -> Option<String> {
    let config = info.get("config")?.as_object()?;
    let tasks = info["tasks"].as_array().map_or(0, Vec::len);
    let mut out = format!(
        "name:   {}\ntype:   {}\ntasks:  {tasks}\n\n",
        text(&info["name"]),
        text(&info["type"]),
    );
    let mut rows: Vec<Vec<String>> = config
        .iter()
        .map(|(key, value)| vec![key.clone(), text(value)])
        .collect();
    rows.sort();
    out.push_str(&table::render(&["KEY", "VALUE"], &rows));
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(name: &str, state: &str, task: Option<&str>) -> Value {
        let tasks = match task {
            Some(task) => json!([{"id": 0, "state": task, "worker_id": "127.0.0.1:8083"}]),
            None => json!([]),
        };
        json!({
            "name": name,
            "connector": {"state": state, "worker_id": "127.0.0.1:8083"},
            "tasks": tasks,
            "type": "source",
        })
    }

    #[test]
    fn list_shows_one_aligned_row_per_connector_sorted_by_name() {
        let body = json!({
            "shop-source": {"status": status("shop-source", "RUNNING", Some("RUNNING"))},
            "a": {"status": status("a", "STOPPED", None)},
        });
        assert_eq!(
            list_table(&body).expect("a table"),
            "NAME         TYPE    STATE    TASKS    WORKER\n\
             a            source  STOPPED  -        127.0.0.1:8083\n\
             shop-source  source  RUNNING  RUNNING  127.0.0.1:8083\n"
        );
        assert!(list_table(&json!(["a"])).is_none());
    }

    #[test]
    fn status_shows_tasks_and_the_trace_of_a_failed_one() {
        let mut body = status("s", "RUNNING", Some("FAILED"));
        body["tasks"][0]["trace"] = json!("slot s is invalidated");
        let shown = status_text(&body).expect("text");
        assert!(
            shown.starts_with(
                "NAME  TYPE    STATE    WORKER\ns     source  RUNNING  127.0.0.1:8083\n"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("TASK  STATE   WORKER\n0     FAILED  127.0.0.1:8083\n"),
            "{shown}"
        );
        assert!(
            shown.ends_with("task 0 trace:\nslot s is invalidated\n"),
            "{shown}"
        );
        assert!(status_text(&json!({"name": "s"})).is_none());
    }

    #[test]
    fn get_shows_the_config_sorted_by_key() {
        let info = json!({
            "name": "s",
            "type": "source",
            "tasks": [{"connector": "s", "task": 0}],
            "config": {"topic.prefix": "shop", "database.password": "[hidden]"},
        });
        assert_eq!(
            info_text(&info).expect("text"),
            "name:   s\ntype:   source\ntasks:  1\n\n\
             KEY                VALUE\n\
             database.password  [hidden]\n\
             topic.prefix       shop\n"
        );
    }

    #[test]
    fn connector_json_must_be_an_object_with_a_config() {
        assert!(check_connector_json(br#"{"name":"a","config":{}}"#).is_ok());
        assert!(check_connector_json(b"{").is_err());
        assert_eq!(
            check_connector_json(br#"{"name":"a"}"#),
            Err("no \"config\" object".to_owned())
        );
    }

    #[test]
    fn names_are_percent_encoded_in_paths() {
        assert_eq!(segment("shop-source_1.a"), "shop-source_1.a");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
