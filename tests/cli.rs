//! `tributary connectors ...` run as a process against a real `tributary serve` (also a
//! process), which requires a bearer token: create, list, get, status, pause, resume, restart,
//! delete, and the errors a user sees.

use std::{path::Path, time::Duration};

use serde_json::Value;

use crate::support::{
    kafka::{Collector, Isolation, TestTopic, bootstrap_servers},
    source::SourceFixture,
    unique_name,
};

const TOKEN: &str = "cli-test-token";

/// `tributary serve` with its own state topics, requiring `TOKEN`.
struct Serve {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
    base: String,
    _topics: [TestTopic; 2],
}

impl Serve {
    async fn start(fixture: &SourceFixture) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(unique_name("tributary-cli"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let prefix = &fixture.offsets_topic;
        let config = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[worker]\noffsets_topic = \"{prefix}\"\n\
             configs_topic = \"{prefix}-configs\"\nstatus_topic = \"{prefix}-status\"\n\
             [registry]\nenabled = false\n[rest]\nlisten = \"127.0.0.1:{port}\"\n",
            bootstrap_servers()
        );
        std::fs::write(dir.join("tributary.toml"), config).expect("config");
        let log = std::fs::File::create(dir.join("tributary.log")).expect("log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("tributary.toml"))
            // The env override, as docker-compose.yml would set it.
            .env("TRIBUTARY_REST_BEARER_TOKEN", TOKEN)
            .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("tributary serve starts");
        let base = format!("http://127.0.0.1:{port}");
        let serve = Self {
            child,
            dir,
            base,
            _topics: [
                TestTopic::delete_on_drop(format!("{prefix}-configs"), 1),
                TestTopic::delete_on_drop(format!("{prefix}-status"), 1),
            ],
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        // Any answer (401 included) means it listens.
        while http.get(&serve.base).send().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "tributary serve did not answer on {}; its log:\n{}",
                serve.base,
                serve.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tributary.log")).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one CLI run printed and how it ended.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `tributary connectors <args>` against `base` with `token` (if any), feeding `stdin`.
async fn cli(base: &str, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"));
    command
        .arg("connectors")
        .args(args)
        .env("TRIBUTARY_URL", base)
        .env_remove("TRIBUTARY_TOKEN")
        .env_remove("TRIBUTARY_BASIC_AUTH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(token) = token {
        command.env("TRIBUTARY_TOKEN", token);
    }
    let mut child = command.spawn().expect("the CLI starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("stdin");
    }
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the CLI ends")
        .expect("the CLI runs");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `cli` that must succeed.
async fn ok(serve: &Serve, args: &[&str]) -> String {
    let run = cli(&serve.base, Some(TOKEN), args, None).await;
    assert!(
        run.success,
        "tributary connectors {args:?} failed: {}\nworker log:\n{}",
        run.stderr,
        serve.log()
    );
    run.stdout
}

/// Polls `status --json` until the connector and its task are in `want`.
async fn wait_for_state(serve: &Serve, name: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value =
            serde_json::from_str(&ok(serve, &["status", name, "--json"]).await).expect("JSON");
        if status["connector"]["state"] == want && status["tasks"][0]["state"] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {want}: {status}\nworker log:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The row of `name` in the `list` table, split into its columns.
fn list_row(table: &str, name: &str) -> Option<Vec<String>> {
    table
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_subcommands_manage_a_real_worker() {
    let mut fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("schema");
    let topic = fixture.table_topic("t");
    let mut records = Collector::new(fixture.topic(&topic).await, Isolation::ReadCommitted);
    let serve = Serve::start(&fixture).await;
    let name = fixture.name.clone();
    let json_file = serve.dir.join("connector.json");
    std::fs::write(&json_file, fixture.connector_json("public.t", &[])).expect("connector JSON");
    let file_arg = json_file.to_str().expect("a UTF-8 path");

    // Without the token the worker refuses, and the CLI says why.
    let refused = cli(&serve.base, None, &["list"], None).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("Authentication required") && refused.stderr.contains("HTTP 401"),
        "{}",
        refused.stderr
    );

    let created = ok(&serve, &["create", "-f", file_arg]).await;
    assert_eq!(
        created,
        format!("created source connector {name} (from {file_arg})\n")
    );
    wait_for_state(&serve, &name, "RUNNING").await;
    fixture.wait_until_streaming().await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    let seen = records.collect(1, Duration::from_secs(30)).await;
    assert_eq!(
        seen[0].payload()["after"]["id"],
        1,
        "the created connector captures"
    );

    let list = ok(&serve, &["list"]).await;
    let header: Vec<&str> = list
        .lines()
        .next()
        .expect("a header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "TYPE", "STATE", "TASKS", "WORKER"],
        "{list}"
    );
    let row = list_row(&list, &name).unwrap_or_else(|| panic!("{name} is not listed:\n{list}"));
    assert_eq!(row[1..4], ["source", "RUNNING", "RUNNING"], "{list}");
    let status_column = list.lines().next().expect("header").find("STATE");
    let row_line = list.lines().find(|l| l.starts_with(&name)).expect("row");
    assert_eq!(
        row_line.find("RUNNING"),
        status_column,
        "columns are aligned:\n{list}"
    );

    let info = ok(&serve, &["get", &name]).await;
    assert!(
        info.starts_with(&format!("name:   {name}\ntype:   source\ntasks:  1\n")),
        "{info}"
    );
    let prefix_row = info
        .lines()
        .find(|l| l.starts_with("topic.prefix "))
        .unwrap_or_else(|| panic!("no topic.prefix row:\n{info}"));
    assert!(prefix_row.ends_with(&fixture.prefix), "{prefix_row}");

    let status = ok(&serve, &["status", &name]).await;
    assert!(
        status.contains("TASK  STATE    WORKER\n0     RUNNING  "),
        "{status}"
    );

    // The same JSON again, from standard input: Connect's 409, as a message and exit code 1.
    let text = std::fs::read_to_string(&json_file).expect("read back");
    let again = cli(&serve.base, Some(TOKEN), &["create"], Some(&text)).await;
    assert!(!again.success);
    assert_eq!(
        again.stderr.trim(),
        format!("error: Connector {name} already exists (HTTP 409 from POST /connectors)")
    );

    let paused = ok(&serve, &["pause", &name]).await;
    assert!(
        paused.starts_with(&format!("pause requested for connector {name}")),
        "{paused}"
    );
    wait_for_state(&serve, &name, "PAUSED").await;
    let list = ok(&serve, &["list"]).await;
    assert_eq!(
        list_row(&list, &name).expect("listed")[2],
        "PAUSED",
        "{list}"
    );

    ok(&serve, &["resume", &name]).await;
    wait_for_state(&serve, &name, "RUNNING").await;
    fixture.wait_until_streaming().await;
    fixture
        .db
        .client()
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("insert");
    let seen = records.collect(1, Duration::from_secs(30)).await;
    assert_eq!(
        seen[0].payload()["after"]["id"],
        2,
        "resumed, it captures again"
    );

    let restarted = ok(&serve, &["restart", &name, "--include-tasks"]).await;
    assert!(restarted.contains("RESTARTING"), "{restarted}");
    wait_for_state(&serve, &name, "RUNNING").await;

    assert_eq!(
        ok(&serve, &["delete", &name]).await,
        format!("deleted connector {name}\n")
    );
    let list = ok(&serve, &["list"]).await;
    assert!(list_row(&list, &name).is_none(), "{list}");
    let gone = cli(&serve.base, Some(TOKEN), &["status", &name], None).await;
    assert!(!gone.success);
    assert!(
        gone.stderr
            .contains(&format!("Connector {name} not found (HTTP 404")),
        "{}",
        gone.stderr
    );
}

#[tokio::test]
async fn bad_input_and_an_unreachable_worker_are_clear_errors() {
    let dir = std::env::temp_dir().join(unique_name("tributary-cli-input"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"name\": \"x\", ").expect("file");
    let broken_arg = broken.to_str().expect("UTF-8");
    // Nothing listens on port 9 of loopback (discard is not run here).
    let unreachable = "http://127.0.0.1:9";
    let run = cli(unreachable, None, &["create", "-f", broken_arg], None).await;
    assert!(!run.success);
    assert!(
        run.stderr.starts_with(&format!(
            "error: {broken_arg} is not a connector JSON document"
        )),
        "{}",
        run.stderr
    );
    let missing = Path::new(&dir).join("missing.json");
    let run = cli(
        unreachable,
        None,
        &["create", "-f", missing.to_str().expect("UTF-8")],
        None,
    )
    .await;
    assert!(!run.success);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    let run = cli(unreachable, None, &["list"], None).await;
    assert!(!run.success);
    assert!(
        run.stderr
            .starts_with("error: cannot reach tributary at http://127.0.0.1:9")
            && run.stderr.contains("TRIBUTARY_URL"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
