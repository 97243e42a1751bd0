//! The Kafka Connect-compatible REST API (axum): same paths, bodies, status codes and error
//! envelope as Connect, so existing scripts, clients and UIs work against `tributary serve`.

mod loggers;
pub mod registry;

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State as AxumState},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    config::{
        config_string,
        definitions::{config_groups, definitions_json},
    },
    runtime::{
        plugins::{self, PluginKind},
        worker::{ConnectorOffsets, OffsetChange, State, TargetState, Worker, WorkerError},
    },
    sink::postgres as sink,
};

/// Keys whose values never leave the process (Connect's `custom.sanitize.pattern` default).
const SECRET_KEYS: &str = r"(?i)(.*secret$|.*password$|.*sasl\.jaas\.config$|.*basic\.auth\.user\.info$|.*registry\.auth\.client-secret)";
pub const HIDDEN: &str = "[hidden]";

pub use loggers::{ApplyFilter, LogLevels};

#[derive(Clone)]
struct ApiState {
    worker: Worker,
    secrets: Regex,
    options: ApiOptions,
}

/// What the API offers beyond the connectors themselves.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Changes log levels for `/admin/loggers`; without it those answer 404.
    pub loggers: Option<LogLevels>,
    /// Credentials every request must carry, when any are set.
    pub auth: RestAuth,
    /// `topic.tracking.enable`: `GET /connectors/{name}/topics` answers (403 otherwise).
    pub topic_tracking: bool,
    /// `topic.tracking.allow.reset`: `PUT /connectors/{name}/topics/reset` answers.
    pub topic_tracking_reset: bool,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            loggers: None,
            auth: RestAuth::default(),
            topic_tracking: true,
            topic_tracking_reset: true,
        }
    }
}

/// Credentials the API requires, when any are configured.
#[derive(Clone, Default)]
pub struct RestAuth {
    pub bearer_token: Option<String>,
    /// `user:password`.
    pub basic: Option<String>,
}

impl std::fmt::Debug for RestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestAuth([hidden])")
    }
}

impl RestAuth {
    fn required(&self) -> bool {
        self.bearer_token.is_some() || self.basic.is_some()
    }

    fn accepts(&self, authorization: Option<&str>) -> bool {
        use base64::Engine;
        let Some(authorization) = authorization else {
            return false;
        };
        if let (Some(token), Some(given)) =
            (&self.bearer_token, authorization.strip_prefix("Bearer "))
        {
            return given.trim() == token;
        }
        if let (Some(basic), Some(given)) = (&self.basic, authorization.strip_prefix("Basic ")) {
            return base64::engine::general_purpose::STANDARD
                .decode(given.trim())
                .is_ok_and(|decoded| decoded == basic.as_bytes());
        }
        false
    }
}

/// The REST routes over `worker`.
pub fn router(worker: Worker) -> Router {
    router_with(worker, ApiOptions::default())
}

/// The REST routes with `options`; every request is checked against `options.auth` when it
/// requires credentials.
pub fn router_with(worker: Worker, options: ApiOptions) -> Router {
    let auth = options.auth.clone();
    let routes = routes(worker, options);
    if !auth.required() {
        return routes;
    }
    routes.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let auth = auth.clone();
            async move {
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if auth.accepts(header) {
                    next.run(request).await
                } else {
                    let mut response = ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "Authentication required: send Authorization: Bearer <token> or Basic credentials",
                    )
                    .into_response();
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer, Basic realm=\"tributary\""),
                    );
                    response
                }
            }
        },
    ))
}

fn routes(worker: Worker, options: ApiOptions) -> Router {
    let state = ApiState {
        worker,
        secrets: Regex::new(SECRET_KEYS).expect("the secret-key pattern is valid"),
        options,
    };
    Router::new()
        .route("/", get(root))
        .route("/connectors", get(list_connectors).post(create_connector))
        .route(
            "/connectors/{name}",
            get(connector_info).delete(delete_connector),
        )
        .route(
            "/connectors/{name}/config",
            get(connector_config)
                .put(put_connector_config)
                .patch(patch_connector_config),
        )
        .route("/connectors/{name}/status", get(connector_status))
        .route("/connectors/{name}/restart", post(restart_connector))
        .route("/connectors/{name}/pause", put(pause_connector))
        .route("/connectors/{name}/resume", put(resume_connector))
        .route("/connectors/{name}/stop", put(stop_connector))
        .route("/connectors/{name}/tasks", get(connector_tasks))
        .route("/connectors/{name}/topics", get(active_topics))
        .route("/connectors/{name}/topics/reset", put(reset_active_topics))
        .route(
            "/connectors/{name}/offsets",
            get(get_offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
        .route("/connector-plugins", get(connector_plugins))
        .route("/connector-plugins/{plugin}/config", get(plugin_config))
        .route(
            "/connector-plugins/{plugin}/config/validate",
            put(validate_config),
        )
        .route("/admin/loggers", get(list_loggers))
        .route("/admin/loggers/{logger}", get(get_logger).put(set_logger))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Connect's error envelope: `{"error_code": <status>, "message": ...}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<WorkerError> for ApiError {
    fn from(error: WorkerError) -> Self {
        let status = match &error {
            WorkerError::NotFound(_) | WorkerError::TaskNotFound(..) => StatusCode::NOT_FOUND,
            WorkerError::AlreadyExists(_) => StatusCode::CONFLICT,
            WorkerError::Invalid(_) | WorkerError::NotStopped(_) => StatusCode::BAD_REQUEST,
            WorkerError::Store(_) | WorkerError::Target(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.status.as_u16(), "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request body is not valid JSON: {e}")))
}

/// A flat config map: strings, with numbers and booleans taken as their text (as Connect does).
fn config_map(value: Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request(
            "The connector configuration must be a JSON object of string values",
        ));
    };
    let mut config = BTreeMap::new();
    for (key, value) in object {
        match config_string(value) {
            Ok(Some(text)) => {
                config.insert(key, text);
            }
            Ok(None) => {}
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "Configuration value for {key} must be a string, number or boolean"
                )));
            }
        }
    }
    Ok(config)
}

impl ApiState {
    fn masked(&self, config: &BTreeMap<String, String>) -> Value {
        let object: serde_json::Map<String, Value> = config
            .iter()
            .map(|(key, value)| {
                let shown = if self.secrets.is_match(key) {
                    HIDDEN.to_owned()
                } else {
                    value.clone()
                };
                (key.clone(), Value::String(shown))
            })
            .collect();
        Value::Object(object)
    }

    fn info(&self, name: &str) -> Result<Value, WorkerError> {
        let config = self.worker.config(name)?;
        let stopped = self.worker.target_state(name)? == TargetState::Stopped;
        let tasks = if stopped {
            json!([])
        } else {
            json!([{"connector": name, "task": 0}])
        };
        let kind = connector_type(&config);
        Ok(json!({"name": name, "config": self.masked(&config), "tasks": tasks, "type": kind}))
    }

    fn status(&self, name: &str) -> Result<Value, WorkerError> {
        let status = self.worker.status(name)?;
        let tasks: Vec<Value> = status
            .task
            .iter()
            .map(|(state, trace)| self.task_json(*state, trace.as_deref()))
            .collect();
        Ok(json!({
            "name": name,
            "connector": {"state": state_name(status.connector), "worker_id": self.worker.worker_id},
            "tasks": tasks,
            "type": connector_type(&self.worker.config(name)?),
        }))
    }

    fn task_json(&self, state: State, trace: Option<&str>) -> Value {
        let mut task =
            json!({"id": 0, "state": state_name(state), "worker_id": self.worker.worker_id});
        if let Some(trace) = trace {
            task["trace"] = Value::String(trace.to_owned());
        }
        task
    }
}

/// Connect's `type` of a connector: its plugin's kind, `unknown` when no plugin answers.
fn connector_type(config: &BTreeMap<String, String>) -> &'static str {
    config
        .get("connector.class")
        .and_then(|class| plugins::find(class))
        .map_or("unknown", |plugin| plugin.kind.as_str())
}

fn state_name(state: State) -> &'static str {
    state.as_str()
}

fn location(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/connectors/{name}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/connectors"))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "HTTP 404 Not Found")
}

async fn root() -> Response {
    json_response(
        StatusCode::OK,
        json!({"version": env!("CARGO_PKG_VERSION"), "commit": "tributary", "kafka_cluster_id": null}),
    )
}

async fn list_connectors(
    AxumState(state): AxumState<ApiState>,
    axum_extra_query: axum::extract::RawQuery,
) -> ApiResult {
    // `expand` may repeat (`?expand=status&expand=info`), which serde_urlencoded's structs do
    // not take; read the pairs by hand.
    let expands: Vec<String> = axum_extra_query
        .0
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("expand="))
        .map(str::to_owned)
        .collect();
    let names = state.worker.names();
    if expands.is_empty() {
        return Ok(json_response(StatusCode::OK, json!(names)));
    }
    let mut all = serde_json::Map::new();
    for name in names {
        let mut entry = serde_json::Map::new();
        if expands.iter().any(|e| e == "status")
            && let Ok(status) = state.status(&name)
        {
            entry.insert("status".into(), status);
        }
        if expands.iter().any(|e| e == "info")
            && let Ok(info) = state.info(&name)
        {
            entry.insert("info".into(), info);
        }
        all.insert(name, Value::Object(entry));
    }
    Ok(json_response(StatusCode::OK, Value::Object(all)))
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    name: Option<String>,
    config: Option<Value>,
    initial_state: Option<String>,
}

async fn create_connector(AxumState(state): AxumState<ApiState>, body: Bytes) -> ApiResult {
    let request: CreateRequest = parse_body(&body)?;
    let mut config = config_map(request.config.unwrap_or_else(|| json!({})))?;
    let Some(name) = request.name.or_else(|| config.get("name").cloned()) else {
        return Err(ApiError::bad_request("Connector name must be specified"));
    };
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("Connector name must not be empty"));
    }
    if let Some(inner) = config.get("name")
        && inner != &name
    {
        return Err(ApiError::bad_request(format!(
            "Connector name configuration ({inner}) doesn't match connector name in the URL ({name})"
        )));
    }
    config.insert("name".to_owned(), name.clone());
    let initial = match request.initial_state.as_deref() {
        None | Some("RUNNING") => TargetState::Running,
        Some("PAUSED") => TargetState::Paused,
        Some("STOPPED") => TargetState::Stopped,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid initial state {other}; use RUNNING, PAUSED or STOPPED"
            )));
        }
    };
    state.worker.create(&name, config, initial).await?;
    let mut response = json_response(StatusCode::CREATED, state.info(&name)?);
    response
        .headers_mut()
        .insert(header::LOCATION, location(&name));
    Ok(response)
}

async fn connector_info(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(json_response(StatusCode::OK, state.info(&name)?))
}

async fn connector_config(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    let config = state.worker.config(&name)?;
    Ok(json_response(StatusCode::OK, state.masked(&config)))
}

async fn put_connector_config(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut config = config_map(parse_body(&body)?)?;
    if let Some(inner) = config.get("name")
        && inner != &name
    {
        return Err(ApiError::bad_request(format!(
            "Connector name configuration ({inner}) doesn't match connector name in the URL ({name})"
        )));
    }
    config.insert("name".to_owned(), name.clone());
    let created = state.worker.put_config(&name, config).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = json_response(status, state.info(&name)?);
    if created {
        response
            .headers_mut()
            .insert(header::LOCATION, location(&name));
    }
    Ok(response)
}

async fn patch_connector_config(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let patch: Value = parse_body(&body)?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "The connector configuration patch must be a JSON object",
        ));
    };
    let mut config = state.worker.config(&name)?;
    for (key, value) in patch {
        match config_string(value) {
            // null removes the key, as in Connect.
            Ok(None) => {
                config.remove(&key);
            }
            Ok(Some(text)) => {
                config.insert(key, text);
            }
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "Configuration value for {key} must be a string, number, boolean or null"
                )));
            }
        }
    }
    if config.get("name").is_some_and(|inner| inner != &name) {
        return Err(ApiError::bad_request(format!(
            "Connector name configuration ({}) doesn't match connector name in the URL ({name})",
            config["name"]
        )));
    }
    config.insert("name".to_owned(), name.clone());
    state.worker.put_config(&name, config).await?;
    Ok(json_response(StatusCode::OK, state.info(&name)?))
}

async fn connector_status(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(json_response(StatusCode::OK, state.status(&name)?))
}

#[derive(Debug, Deserialize)]
struct RestartQuery {
    #[serde(default, rename = "includeTasks")]
    include_tasks: bool,
    #[serde(default, rename = "onlyFailed")]
    only_failed: bool,
}

async fn restart_connector(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<RestartQuery>,
) -> ApiResult {
    // The connector and its single task are one unit here.
    let restarted = state.worker.restart(&name, query.only_failed).await?;
    if !query.include_tasks && !query.only_failed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // As Connect, the answer shows what this request restarts as RESTARTING.
    let mut status = state.status(&name)?;
    if restarted {
        status["connector"]["state"] = json!("RESTARTING");
        if let Some(task) = status["tasks"].get_mut(0) {
            task["state"] = json!("RESTARTING");
        }
    }
    Ok(json_response(StatusCode::ACCEPTED, status))
}

async fn pause_connector(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    state.worker.set_target(&name, TargetState::Paused).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn resume_connector(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    state.worker.set_target(&name, TargetState::Running).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn stop_connector(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    state.worker.set_target(&name, TargetState::Stopped).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_connector(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    state.worker.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn connector_tasks(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    let config = state.worker.config(&name)?;
    let stopped = state.worker.target_state(&name)? == TargetState::Stopped;
    let tasks = if stopped {
        json!([])
    } else {
        json!([{"id": {"connector": name, "task": 0}, "config": state.masked(&config)}])
    };
    Ok(json_response(StatusCode::OK, tasks))
}

fn only_task(state: &ApiState, name: &str, task: &str) -> Result<(), ApiError> {
    let status = state.worker.status(name)?;
    if task != "0" || status.task.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Task {task} not found"),
        ));
    }
    Ok(())
}

async fn task_status(
    AxumState(state): AxumState<ApiState>,
    Path((name, task)): Path<(String, String)>,
) -> ApiResult {
    only_task(&state, &name, &task)?;
    let status = state.worker.status(&name)?;
    let (task_state, trace) = status.task.expect("checked by only_task");
    Ok(json_response(
        StatusCode::OK,
        state.task_json(task_state, trace.as_deref()),
    ))
}

async fn restart_task(
    AxumState(state): AxumState<ApiState>,
    Path((name, task)): Path<(String, String)>,
) -> ApiResult {
    only_task(&state, &name, &task)?;
    state.worker.restart(&name, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_offsets(AxumState(state): AxumState<ApiState>, Path(name): Path<String>) -> ApiResult {
    let offsets = match state.worker.offsets(&name).await? {
        ConnectorOffsets::Source {
            server,
            offset: Some(offset),
        } => json!([{"partition": {"server": server}, "offset": offset}]),
        ConnectorOffsets::Source { offset: None, .. } => json!([]),
        ConnectorOffsets::Sink(partitions) => partitions
            .iter()
            .map(|p| {
                json!({
                    "partition": {"kafka_topic": p.topic, "kafka_partition": p.partition},
                    "offset": {"kafka_offset": p.next_offset},
                })
            })
            .collect(),
    };
    Ok(json_response(StatusCode::OK, json!({"offsets": offsets})))
}

async fn alter_offsets(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: Value = parse_body(&body)?;
    let Some(Value::Array(entries)) = request.get("offsets") else {
        return Err(ApiError::bad_request(
            "Partitions / offsets need to be provided for an alter offsets request",
        ));
    };
    let sink = connector_type(&state.worker.config(&name)?) == PluginKind::Sink.as_str();
    let change = if sink {
        sink_offset_change(entries)?
    } else {
        source_offset_change(entries)?
    };
    state.worker.write_offsets(&name, Some(change)).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"message": "The offsets for this connector have been altered successfully"}),
    ))
}

/// The PostgreSQL source's one partition and its offset (null: forget it).
fn source_offset_change(entries: &[Value]) -> Result<OffsetChange, ApiError> {
    let [entry] = entries else {
        return Err(ApiError::bad_request(
            "The PostgreSQL source has exactly one partition ({\"server\": <topic.prefix>}); give one entry",
        ));
    };
    let offset = match entry.get("offset") {
        None | Some(Value::Null) => None,
        Some(offset) => Some(serde_json::from_value(offset.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "The offset is not a PostgreSQL source offset ({{\"lsn\": <commit end LSN>, \"ts_usec\": ...}}): {e}"
            ))
        })?),
    };
    let Some(server) = entry
        .get("partition")
        .and_then(|p| p.get("server"))
        .and_then(Value::as_str)
    else {
        return Err(ApiError::bad_request(
            "Each offset needs its partition: {\"server\": <topic.prefix>}",
        ));
    };
    Ok(OffsetChange::Source {
        server: server.to_owned(),
        offset,
    })
}

/// Sink partitions (`{"kafka_topic", "kafka_partition"}`) and their next offsets
/// (`{"kafka_offset": n}`, or null to forget the partition), as Connect takes them.
fn sink_offset_change(entries: &[Value]) -> Result<OffsetChange, ApiError> {
    let partitions = entries
        .iter()
        .map(|entry| {
            let partition = entry.get("partition");
            let topic = partition
                .and_then(|p| p.get("kafka_topic"))
                .and_then(Value::as_str);
            let number = partition
                .and_then(|p| p.get("kafka_partition"))
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok());
            let (Some(topic), Some(number)) = (topic, number) else {
                return Err(ApiError::bad_request(
                    "Each sink offset needs its partition: {\"kafka_topic\": <topic>, \"kafka_partition\": <n>}",
                ));
            };
            let next_offset = match entry.get("offset") {
                None | Some(Value::Null) => None,
                Some(offset) => match offset.get("kafka_offset").and_then(Value::as_i64) {
                    Some(next) if next >= 0 => Some(next),
                    _ => {
                        return Err(ApiError::bad_request(
                            "A sink offset is {\"kafka_offset\": <next offset to apply, 0 or more>} or null",
                        ));
                    }
                },
            };
            Ok(sink::PartitionOffset {
                topic: topic.to_owned(),
                partition: number,
                next_offset,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(OffsetChange::Sink(partitions))
}

async fn reset_offsets(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    state.worker.write_offsets(&name, None).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"message": "The offsets for this connector have been reset successfully"}),
    ))
}

fn loggers(state: &ApiState) -> Result<&LogLevels, ApiError> {
    state.options.loggers.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "Log levels cannot be changed in this process",
        )
    })
}

async fn list_loggers(AxumState(state): AxumState<ApiState>) -> ApiResult {
    let all: serde_json::Map<String, Value> = loggers(&state)?
        .all()
        .into_iter()
        .map(|(name, level, at)| (name, json!({"level": level, "last_modified": at})))
        .collect();
    Ok(json_response(StatusCode::OK, Value::Object(all)))
}

async fn get_logger(
    AxumState(state): AxumState<ApiState>,
    Path(logger): Path<String>,
) -> ApiResult {
    let (level, at) = loggers(&state)?.level(&logger);
    Ok(json_response(
        StatusCode::OK,
        json!({"level": level, "last_modified": at}),
    ))
}

async fn set_logger(
    AxumState(state): AxumState<ApiState>,
    Path(logger): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: Value = parse_body(&body)?;
    let Some(level) = request.get("level").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "The request must include a 'level' field",
        ));
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let affected = loggers(&state)?
        .set(&logger, level, now_ms)
        .map_err(|message| ApiError::new(StatusCode::NOT_FOUND, message))?;
    Ok(json_response(StatusCode::OK, json!(affected)))
}

/// 403 unless `topic.tracking.enable` (Connect's answer when it is off).
fn topic_tracking(state: &ApiState) -> Result<(), ApiError> {
    if state.options.topic_tracking {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Topic tracking is disabled.",
        ))
    }
}

async fn active_topics(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    topic_tracking(&state)?;
    let topics = state.worker.active_topics(&name)?;
    Ok(json_response(
        StatusCode::OK,
        json!({ name: {"topics": topics} }),
    ))
}

async fn reset_active_topics(
    AxumState(state): AxumState<ApiState>,
    Path(name): Path<String>,
) -> ApiResult {
    topic_tracking(&state)?;
    if !state.options.topic_tracking_reset {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Topic tracking reset is disabled.",
        ));
    }
    state.worker.reset_active_topics(&name).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn metrics(AxumState(state): AxumState<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.worker.metrics().encode(),
    )
        .into_response()
}

async fn connector_plugins() -> Response {
    // Connectors only: there are no converters, transforms or predicates to list.
    let plugins: Vec<Value> = plugins::PLUGINS
        .iter()
        .map(|p| json!({"class": p.class, "type": p.kind.as_str(), "version": env!("CARGO_PKG_VERSION")}))
        .collect();
    json_response(StatusCode::OK, json!(plugins))
}

fn find_plugin(name: &str) -> Result<&'static plugins::Plugin, ApiError> {
    plugins::find(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Unknown connector plugin {name}"),
        )
    })
}

async fn validate_config(
    AxumState(state): AxumState<ApiState>,
    Path(plugin): Path<String>,
    body: Bytes,
) -> ApiResult {
    let found = find_plugin(&plugin)?;
    let config = config_map(parse_body(&body)?)?;
    if let Some(class) = config.get("connector.class")
        && !class.ends_with(&plugin)
        && plugins::find(class).map(|p| p.class) != Some(found.class)
    {
        return Err(ApiError::bad_request(
            "Connector config {connector.class} does not match the plugin in the URL",
        ));
    }
    let name = config.get("name").cloned().unwrap_or_default();
    let connector = crate::config::ConnectorConfig {
        name,
        config: config.clone(),
    };
    // Static checks first; when they pass, the live checks against the database.
    let findings = (found.validate)(connector).await;
    let error_count = findings.iter().filter(|f| f.is_error()).count();
    // Connect lists every key the plugin defines, in order, then anything else given.
    let definitions = (found.definitions)();
    let mut configs: Vec<Value> = definitions_json(definitions);
    let mut extra: Vec<&String> = config
        .keys()
        .chain(findings.iter().map(|f| &f.key))
        .filter(|key| !definitions.iter().any(|d| d.name == key.as_str()))
        .collect();
    extra.dedup();
    configs.extend(extra.iter().map(|key| json!({"name": key})));
    let configs: Vec<Value> = configs
        .into_iter()
        .map(|definition| {
            let key = definition["name"].as_str().unwrap_or_default().to_owned();
            // Connect has only errors; warnings are reported there too, marked as such.
            let messages: Vec<String> = findings
                .iter()
                .filter(|f| f.key == key)
                .map(|f| {
                    if f.is_error() {
                        f.message.clone()
                    } else {
                        format!("Warning: {}", f.message)
                    }
                })
                .collect();
            let value = config
                .get(&key)
                .map(|value| {
                    if state.secrets.is_match(&key) {
                        HIDDEN.to_owned()
                    } else {
                        value.clone()
                    }
                })
                .map(Value::String)
                .unwrap_or_else(|| definition["default_value"].clone());
            json!({
                "definition": definition,
                "value": {"name": key, "value": value, "recommended_values": [], "errors": messages, "visible": true},
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "name": found.class,
            "error_count": error_count,
            "groups": config_groups(definitions),
            "configs": configs,
        }),
    ))
}

async fn plugin_config(Path(plugin): Path<String>) -> ApiResult {
    let found = find_plugin(&plugin)?;
    Ok(json_response(
        StatusCode::OK,
        json!(definitions_json((found.definitions)())),
    ))
}
