//! `docker-compose.yml`, `Dockerfile` and `connectors/compose/*.json` checked against the code,
//! since no Docker engine runs here: ports match the worker config's defaults, every
//! `TRIBUTARY_*` variable is a real worker config override, connectors name compose services
//! (not localhost) with the right ports, databases and credentials, and the image builds and
//! runs the `tributary` binary with the config it copies. The YAML is read with python3's
//! PyYAML (no YAML crate in the build).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use secrecy::ExposeSecret;
use serde_json::Value;
use tributary::{
    config::{ConnectorConfig, PostgresSourceConfig, WorkerConfig},
    runtime::plugins,
    sink::postgres::{POSTGRES_SINK_CLASSES, PostgresSinkConfig},
};

/// Environment variables the worker reads that are not config overrides.
const NON_CONFIG_VARIABLES: &[&str] = &["TRIBUTARY_LOG"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The compose file as JSON, through python3 and PyYAML.
fn compose() -> Value {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(repo().join("docker-compose.yml"))
        .output()
        .expect("python3 runs (install python3 and python3-yaml)");
    assert!(
        output.status.success(),
        "python3 cannot read docker-compose.yml (install python3-yaml if `yaml` is missing): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python3 printed JSON")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// A service's `environment` as a map (compose allows a map or a list of `K=V`).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|item| item.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `"host:container"` port mappings of a service, as (host, container) pairs.
fn published_ports(service: &Value) -> Vec<(u16, u16)> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(Value::as_str)
                .map(|mapping| {
                    let (host, container) = mapping
                        .rsplit_once(':')
                        .unwrap_or_else(|| panic!("port {mapping:?} is not host:container"));
                    let host = host.rsplit(':').next().unwrap_or(host);
                    (
                        host.parse().expect("a host port"),
                        container.parse().expect("a container port"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} is not host:port"))
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

/// `NAME://host:port,...` (Kafka's listener lists) as name -> (host, port).
fn listeners(list: &str) -> BTreeMap<String, (String, u16)> {
    list.split(',')
        .map(|entry| {
            let (name, address) = entry
                .split_once("://")
                .unwrap_or_else(|| panic!("listener {entry:?} is not NAME://host:port"));
            (
                name.to_owned(),
                (host_of(address).to_owned(), port_of(address)),
            )
        })
        .collect()
}

/// The worker config's built-in values (`config/tributary.toml` with only the required key).
fn defaults() -> WorkerConfig {
    WorkerConfig::parse("[kafka]\nbootstrap_servers = \"x:1\"\n", &[]).expect("the minimal config")
}

#[test]
fn the_tributary_service_uses_real_config_overrides_and_the_default_ports() {
    let compose = compose();
    let tributary = service(&compose, "tributary");
    let env = environment(tributary);
    let file = read("config/tributary.toml");
    let base = WorkerConfig::parse(&file, &[]).expect("config/tributary.toml is valid");
    // A variable the worker does not know changes nothing; one it knows changes the config or
    // is refused for this value.
    for name in env.keys().filter(|name| name.starts_with("TRIBUTARY_")) {
        if NON_CONFIG_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let probe = [(name.clone(), "\u{2603} not a value".to_owned())];
        let known = WorkerConfig::parse(&file, &probe).map_or(true, |probed| probed != base);
        assert!(
            known,
            "{name} in docker-compose.yml is not a worker config override (src/config/worker.rs)"
        );
    }
    let overrides: Vec<(String, String)> = env.clone().into_iter().collect();
    let config = WorkerConfig::parse(&file, &overrides)
        .unwrap_or_else(|e| panic!("the compose overrides do not validate: {e}"));

    let defaults = defaults();
    let ports = published_ports(tributary);
    for (what, listen, default) in [
        ("rest.listen", &config.rest.listen, &defaults.rest.listen),
        (
            "registry.listen",
            &config.registry.listen,
            &defaults.registry.listen,
        ),
    ] {
        assert_eq!(
            port_of(listen),
            port_of(default),
            "{what} in the container must keep the default port"
        );
        assert_eq!(
            host_of(listen),
            "0.0.0.0",
            "{what} must listen on every interface to be published"
        );
        assert!(
            ports.contains(&(port_of(default), port_of(default))),
            "tributary must publish {what}'s port {} as itself: {ports:?}",
            port_of(default)
        );
    }

    // Kafka: the bootstrap address is an advertised listener of the kafka service.
    let kafka = service(&compose, "kafka");
    let kafka_env = environment(kafka);
    let advertised = listeners(&kafka_env["KAFKA_ADVERTISED_LISTENERS"]);
    let bootstrap = &config.kafka.bootstrap_servers;
    assert!(
        advertised
            .values()
            .any(|(host, port)| host == "kafka" && *port == port_of(bootstrap)),
        "{bootstrap} is not an advertised listener of the kafka service: {advertised:?}"
    );
    assert_eq!(host_of(bootstrap), "kafka");
    // Tools on the host use config/tributary.toml's address: a listener advertised there.
    let host_address = &base.kafka.bootstrap_servers;
    assert!(
        advertised
            .values()
            .any(|(host, port)| host == host_of(host_address) && *port == port_of(host_address)),
        "config/tributary.toml's {host_address} is not advertised: {advertised:?}"
    );
    assert!(
        published_ports(kafka).contains(&(port_of(host_address), port_of(host_address))),
        "kafka must publish {host_address}'s port"
    );
    assert!(
        tributary["depends_on"].get("kafka").is_some()
            && tributary["depends_on"].get("postgres").is_some(),
        "tributary starts after kafka and postgres"
    );
}

#[test]
fn kafka_runs_in_kraft_mode_with_consistent_listeners() {
    let compose = compose();
    let kafka = service(&compose, "kafka");
    let env = environment(kafka);
    let image = kafka["image"].as_str().expect("an image");
    let pom = read("scripts/kafka/pom.xml");
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .expect("scripts/kafka/pom.xml names kafka.version");
    assert_eq!(
        image,
        format!("apache/kafka:{version}"),
        "the same Kafka as scripts/services.sh"
    );
    let roles: BTreeSet<&str> = env["KAFKA_PROCESS_ROLES"].split(',').collect();
    assert_eq!(roles, BTreeSet::from(["broker", "controller"]), "KRaft");
    let bound = listeners(&env["KAFKA_LISTENERS"]);
    let advertised = listeners(&env["KAFKA_ADVERTISED_LISTENERS"]);
    let protocols: BTreeSet<&str> = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        .split(',')
        .filter_map(|pair| pair.split_once(':').map(|(name, _)| name))
        .collect();
    for (name, (_, port)) in &advertised {
        assert_eq!(
            bound.get(name).map(|(_, p)| p),
            Some(port),
            "listener {name} is advertised on a port it does not bind"
        );
    }
    for name in bound.keys() {
        assert!(
            protocols.contains(name.as_str()),
            "{name} has no security protocol"
        );
    }
    let controller = &env["KAFKA_CONTROLLER_LISTENER_NAMES"];
    let voters = &env["KAFKA_CONTROLLER_QUORUM_VOTERS"];
    let (node, address) = voters.split_once('@').expect("id@host:port");
    assert_eq!(node, env["KAFKA_NODE_ID"]);
    assert_eq!(host_of(address), "kafka");
    assert_eq!(
        Some(&port_of(address)),
        bound.get(controller).map(|(_, p)| p)
    );
    assert_eq!(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"], "1");
    assert_eq!(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"], "1");
    use base64::Engine;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&env["CLUSTER_ID"])
        .expect("CLUSTER_ID is base64url");
    assert_eq!(id.len(), 16, "a KRaft cluster id is a 16-byte UUID");
}

/// The databases the postgres service has: `POSTGRES_DB` and those its init SQL creates.
fn compose_databases(postgres: &Value) -> BTreeSet<String> {
    let volumes: Vec<&str> = postgres["volumes"]
        .as_array()
        .expect("postgres volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut databases = BTreeSet::from(["postgres".to_owned()]);
    databases.extend(environment(postgres).get("POSTGRES_DB").cloned());
    for volume in volumes {
        let source = volume.split(':').next().expect("source");
        assert!(
            repo().join(source).exists(),
            "postgres mounts {source}, which is missing"
        );
        if source.ends_with(".sql") {
            let sql = std::fs::read_to_string(repo().join(source)).expect("init SQL");
            databases.extend(sql.lines().filter_map(|line| {
                line.trim()
                    .strip_prefix("CREATE DATABASE ")
                    .map(|rest| rest.trim_end_matches(';').trim().to_owned())
            }));
        }
    }
    databases
}

#[test]
fn compose_connectors_name_compose_services_and_match_the_local_ones() {
    let compose = compose();
    let services: BTreeSet<String> = compose["services"]
        .as_object()
        .expect("services")
        .keys()
        .cloned()
        .collect();
    let postgres = service(&compose, "postgres");
    let postgres_env = environment(postgres);
    let command = postgres["command"].to_string();
    assert!(command.contains("wal_level=logical"), "{command}");
    let databases = compose_databases(postgres);
    let registry_port = port_of(&defaults().registry.listen);

    let dir = repo().join("connectors/compose");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("connectors/compose exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no connectors in connectors/compose");
    let mut seen_source = false;
    for path in &files {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).expect("read");
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        for (key, value) in json["config"].as_object().expect("a config object") {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !value.contains("localhost") && !value.contains("127.0.0.1"),
                "{shown}: {key} = {value:?} points at the tributary container itself; use a \
                 compose service name"
            );
            if key.ends_with("schema.registry.url") {
                let address = value.split("://").nth(1).unwrap_or(value);
                let address = address.trim_end_matches('/');
                assert!(services.contains(host_of(address)), "{shown}: {key}");
                assert_eq!(port_of(address), registry_port, "{shown}: {key}");
            }
        }
        let connector =
            ConnectorConfig::from_json(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let class = connector
            .config
            .get("connector.class")
            .cloned()
            .unwrap_or_default();
        let (host, port, dbname, user, password) =
            if plugins::find(&class).map(|p| p.class) == Some(plugins::POSTGRES_SOURCE.class) {
                seen_source = true;
                let source = PostgresSourceConfig::from_connector(&connector)
                    .unwrap_or_else(|e| panic!("{shown}: {e}"));
                let password = source.password.map(|p| p.expose_secret().to_owned());
                (
                    source.hostname,
                    source.port,
                    source.dbname,
                    source.user,
                    password,
                )
            } else if POSTGRES_SINK_CLASSES.contains(&class.as_str()) {
                let sink = PostgresSinkConfig::from_connector(&connector)
                    .unwrap_or_else(|e| panic!("{shown}: {e}"));
                let password = sink.password.map(|p| p.expose_secret().to_owned());
                (sink.host, sink.port, sink.dbname, sink.user, password)
            } else {
                // Other plugins: the generic checks above and the comparison below.
                compare_with_local(path, &json);
                continue;
            };
        assert_eq!(
            host, "postgres",
            "{shown}: the database is the postgres service"
        );
        assert_eq!(port, 5432, "{shown}: the postgres container's port");
        assert!(
            databases.contains(&dbname),
            "{shown}: database {dbname} is not created by the init SQL ({databases:?})"
        );
        assert_eq!(Some(&user), postgres_env.get("POSTGRES_USER"), "{shown}");
        assert_eq!(
            password.as_ref(),
            postgres_env.get("POSTGRES_PASSWORD"),
            "{shown}"
        );
        compare_with_local(path, &json);
    }
    assert!(seen_source, "connectors/compose has no PostgreSQL source");
}

/// Keys whose values name where a service runs: the only ones a compose connector may change.
fn is_address_key(key: &str) -> bool {
    key == "database.hostname" || key == "connection.url" || key.ends_with("schema.registry.url")
}

/// A compose connector with a local twin (`connectors/<same file>`) differs from it only in
/// addresses, so the two cannot drift apart.
fn compare_with_local(compose_path: &Path, compose_json: &Value) {
    let local = repo()
        .join("connectors")
        .join(compose_path.file_name().expect("a file name"));
    let Ok(text) = std::fs::read_to_string(&local) else {
        return;
    };
    let local_json: Value = serde_json::from_str(&text).expect("local connector JSON");
    assert_eq!(
        local_json["name"],
        compose_json["name"],
        "{}",
        local.display()
    );
    let without_addresses = |json: &Value| -> BTreeMap<String, Value> {
        json["config"]
            .as_object()
            .expect("config")
            .iter()
            .filter(|(key, _)| !is_address_key(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        without_addresses(&local_json),
        without_addresses(compose_json),
        "{} and {} differ in more than addresses",
        local.display(),
        compose_path.display()
    );
}

#[test]
fn the_image_builds_the_binary_that_compose_runs_with_the_config_it_copies() {
    let dockerfile = read("Dockerfile");
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let binary = manifest["bin"][0]["name"].as_str().expect("a [[bin]] name");
    let rust_version = manifest["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    let builder = dockerfile
        .lines()
        .find(|line| line.starts_with("FROM ") && line.contains(" AS builder"))
        .expect("a builder stage");
    let tag = builder
        .split_whitespace()
        .nth(1)
        .and_then(|image| image.strip_prefix("rust:"))
        .expect("the builder is a rust image");
    let version = |text: &str| -> Vec<u32> {
        text.split(['.', '-'])
            .map_while(|part| part.parse().ok())
            .collect()
    };
    assert!(
        version(tag) >= version(rust_version),
        "the builder's Rust {tag} is older than rust-version {rust_version}"
    );
    assert!(
        dockerfile.contains(&format!("--bin {binary}")),
        "the image does not build the {binary} binary"
    );
    let installed = format!("/usr/local/bin/{binary}");
    assert!(
        dockerfile.contains(&format!("cp target/release/{binary} {installed}")),
        "the builder does not install target/release/{binary}"
    );
    assert!(
        dockerfile.contains(&format!("COPY --from=builder {installed} {installed}")),
        "the runtime stage does not copy {installed}"
    );
    assert!(
        dockerfile.contains(&format!("ENTRYPOINT [\"{installed}\"]")),
        "the entrypoint is not {installed}"
    );
    let config_copy = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("COPY config/tributary.toml "))
        .expect("the image copies config/tributary.toml")
        .trim();
    assert!(
        dockerfile.contains("\nUSER ") && !dockerfile.contains("\nUSER root"),
        "the runtime runs as a user without privileges"
    );

    let compose = compose();
    let tributary = service(&compose, "tributary");
    assert_eq!(
        tributary["build"], ".",
        "built from this repository's Dockerfile"
    );
    let command: Vec<&str> = tributary["command"]
        .as_array()
        .expect("command in exec form")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command, ["serve", "--config", config_copy]);
    assert!(
        dockerfile.contains(&format!("CMD [\"serve\", \"--config\", \"{config_copy}\"]")),
        "the image's default command serves with the copied config"
    );
    // The command is one the binary has.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["serve", "--help"])
        .output()
        .expect("the binary runs");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
}
