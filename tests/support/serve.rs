//! `tributary serve` as a separate process, for tests that kill it or read its log.

use std::time::Duration;

use super::source::SourceFixture;

/// `tributary serve` as a process, with its own topics for configs, statuses and offsets.
pub struct ServeProcess {
    pub child: tokio::process::Child,
    dir: std::path::PathBuf,
    pub base: String,
}

impl ServeProcess {
    pub fn config(fixture: &SourceFixture, port: u16) -> String {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[worker]\noffsets_topic = \"{}\"\nconfigs_topic = \"{}-configs\"\nstatus_topic = \"{}-status\"\n[registry]\nenabled = false\n[rest]\nlisten = \"127.0.0.1:{port}\"\n",
            super::kafka::bootstrap_servers(),
            fixture.offsets_topic,
            fixture.offsets_topic,
            fixture.offsets_topic,
        )
    }

    pub async fn start(dir: &std::path::Path, config: &str, port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("temp dir");
        std::fs::write(dir.join("tributary.toml"), config).expect("config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tributary.log"))
            .expect("log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("tributary.toml"))
            .env("TRIBUTARY_LOG", "info,tributary=debug")
            .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("tributary serve starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while http.get(&base).send().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "tributary serve did not answer on {base}; its log:\n{}",
                std::fs::read_to_string(dir.join("tributary.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            dir: dir.to_owned(),
            base,
        }
    }

    pub fn log_path(&self) -> std::path::PathBuf {
        self.dir.join("tributary.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tributary.log")).unwrap_or_default()
    }
}

/// The value of `family`'s series for `connector` in `GET /metrics` text.
pub fn metric_value(metrics: &str, family: &str, connector: &str) -> Option<f64> {
    let label = format!("connector=\"{connector}\"");
    metrics
        .lines()
        .find(|line| line.starts_with(family) && line.contains(&label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
