//! The Confluent Schema Registry REST API (the subset serializers, converters and tools use)
//! over the built-in [`SchemaRegistry`]: same paths, bodies, status codes and error envelope
//! (`{"error_code": 40401, "message": "Subject 'x' not found."}`). Requests may be sent as
//! `application/vnd.schemaregistry.v1+json`, `application/json` or without a content type;
//! answers are `application/vnd.schemaregistry.v1+json`. Only Avro schemas are served.

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::registry::{
    CompatibilityLevel, RegisteredSchema, RegistryError, SchemaRegistry, VersionSelector,
};

/// Confluent's media type, used for every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Params = Query<HashMap<String, String>>;

/// The registry's routes; serve them on their own listener (Confluent's port is 8081).
pub fn router(registry: SchemaRegistry) -> Router {
    Router::new()
        .route("/", get(async || answer(StatusCode::OK, json!({}))))
        .route(
            "/schemas/types",
            get(async || answer(StatusCode::OK, json!(["AVRO"]))),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_schema_of_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(test_subject),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config)
                .put(set_subject_config)
                .delete(delete_subject_config),
        )
        .fallback(async || {
            ApiError::plain(StatusCode::NOT_FOUND, "HTTP 404 Not Found").into_response()
        })
        .with_state(registry)
}

fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn ok(body: Value) -> Result<Response, ApiError> {
    Ok(answer(StatusCode::OK, body))
}

/// Confluent's error envelope.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error_code: u32,
    message: String,
}

impl ApiError {
    /// An error whose code is the bare HTTP status (no registry-specific code).
    fn plain(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error_code: u32::from(status.as_u16()),
            message: message.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        if let RegistryError::Store(store) = &error {
            tracing::warn!(error = %store, "schema registry store error");
        }
        Self {
            status: StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_code: error.error_code(),
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        answer(
            self.status,
            json!({ "error_code": self.error_code, "message": self.message }),
        )
    }
}

type ApiResult = Result<Response, ApiError>;

/// A boolean query flag (`?deleted=true`); absent or anything but `true` is false.
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

fn parse_id(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>()
        .ok()
        .filter(|id| *id >= 1)
        .ok_or_else(|| RegistryError::SchemaNotFound { id: None }.into())
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::plain(
            StatusCode::BAD_REQUEST,
            format!("the request body is not valid JSON of the expected shape: {err}"),
        )
    })
}

/// The body of register, lookup and compatibility calls; other fields (`metadata`, `ruleSet`,
/// `normalize`) are accepted and ignored.
#[derive(Deserialize)]
struct SchemaRequest {
    #[serde(default)]
    schema: Option<String>,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

/// The Avro schema text of a request, or why it cannot be served.
fn avro_schema(body: &Bytes) -> Result<String, ApiError> {
    let request: SchemaRequest = parse_body(body)?;
    let invalid = |reason: &str| -> ApiError {
        RegistryError::InvalidSchema {
            reason: reason.to_owned(),
        }
        .into()
    };
    if let Some(kind) = &request.schema_type
        && !kind.eq_ignore_ascii_case("AVRO")
    {
        return Err(invalid(&format!(
            "schema type {kind} is not supported by this registry; only AVRO is"
        )));
    }
    if request.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(invalid(
            "schema references are not supported by this registry; inline the referenced types",
        ));
    }
    request
        .schema
        .ok_or_else(|| invalid("the request has no \"schema\" field"))
}

fn version_json(registered: &RegisteredSchema) -> Value {
    json!({
        "subject": registered.subject,
        "version": registered.version,
        "id": registered.id,
        "schema": registered.schema.as_ref(),
    })
}

async fn schema_by_id(State(registry): State<SchemaRegistry>, Path(id): Path<String>) -> ApiResult {
    let schema = registry.schema_by_id(parse_id(&id)?)?;
    // `schemaType` is left out for Avro, as Confluent does.
    ok(json!({ "schema": schema.as_ref() }))
}

async fn raw_schema_by_id(
    State(registry): State<SchemaRegistry>,
    Path(id): Path<String>,
) -> ApiResult {
    let schema = registry.schema_by_id(parse_id(&id)?)?;
    Ok(raw(&schema))
}

/// A schema as the body itself (the `/schema` endpoints).
fn raw(schema: &str) -> Response {
    let mut response = (StatusCode::OK, schema.to_owned()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

async fn versions_of_id(
    State(registry): State<SchemaRegistry>,
    Path(id): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let versions = registry.versions_of_id(parse_id(&id)?, flag(&params, "deleted"))?;
    ok(Value::Array(
        versions
            .into_iter()
            .map(|(subject, version)| json!({ "subject": subject, "version": version }))
            .collect(),
    ))
}

async fn subjects_of_id(
    State(registry): State<SchemaRegistry>,
    Path(id): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let mut subjects: Vec<String> = registry
        .versions_of_id(parse_id(&id)?, flag(&params, "deleted"))?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn list_subjects(State(registry): State<SchemaRegistry>, Query(params): Params) -> ApiResult {
    ok(json!(registry.subjects(flag(&params, "deleted"))))
}

async fn lookup(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let schema = avro_schema(&body)?;
    let found = registry.lookup(&subject, &schema, flag(&params, "deleted"))?;
    ok(version_json(&found))
}

async fn delete_subject(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let versions = registry
        .delete_subject(&subject, flag(&params, "permanent"))
        .await?;
    ok(json!(versions))
}

async fn list_versions(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    ok(json!(
        registry.versions(&subject, flag(&params, "deleted"))?
    ))
}

async fn register(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let schema = avro_schema(&body)?;
    let id = registry.register(&subject, &schema).await?;
    ok(json!({ "id": id }))
}

async fn get_version(
    State(registry): State<SchemaRegistry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let version = VersionSelector::parse(&version)?;
    ok(version_json(&registry.version(
        &subject,
        version,
        flag(&params, "deleted"),
    )?))
}

async fn raw_schema_of_version(
    State(registry): State<SchemaRegistry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let version = VersionSelector::parse(&version)?;
    let found = registry.version(&subject, version, flag(&params, "deleted"))?;
    Ok(raw(&found.schema))
}

async fn delete_version(
    State(registry): State<SchemaRegistry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let version = VersionSelector::parse(&version)?;
    let deleted = registry
        .delete_version(&subject, version, flag(&params, "permanent"))
        .await?;
    ok(json!(deleted))
}

fn compatibility_answer(findings: Vec<String>, verbose: bool) -> ApiResult {
    let mut body = json!({ "is_compatible": findings.is_empty() });
    if verbose {
        body["messages"] = json!(findings);
    }
    ok(body)
}

async fn test_version(
    State(registry): State<SchemaRegistry>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let version = VersionSelector::parse(&version)?;
    let schema = avro_schema(&body)?;
    let findings = registry.test_compatibility(&subject, version, &schema)?;
    compatibility_answer(findings, flag(&params, "verbose"))
}

async fn test_subject(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let schema = avro_schema(&body)?;
    let findings = registry.test_compatibility_with_subject(&subject, &schema)?;
    compatibility_answer(findings, flag(&params, "verbose"))
}

#[derive(Deserialize)]
struct ConfigRequest {
    #[serde(default)]
    compatibility: Option<String>,
}

fn requested_level(body: &Bytes) -> Result<CompatibilityLevel, ApiError> {
    let request: ConfigRequest = parse_body(body)?;
    request
        .compatibility
        .as_deref()
        .and_then(CompatibilityLevel::parse)
        .ok_or_else(|| RegistryError::InvalidCompatibilityLevel.into())
}

async fn global_config(State(registry): State<SchemaRegistry>) -> ApiResult {
    ok(json!({ "compatibilityLevel": registry.global_compatibility().as_str() }))
}

async fn set_global_config(State(registry): State<SchemaRegistry>, body: Bytes) -> ApiResult {
    let level = registry
        .set_global_compatibility(requested_level(&body)?)
        .await?;
    ok(json!({ "compatibility": level.as_str() }))
}

async fn subject_config(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let level = match registry.subject_compatibility(&subject) {
        Some(level) => level,
        None if flag(&params, "defaultToGlobal") => registry.global_compatibility(),
        None => return Err(RegistryError::SubjectLevelNotConfigured { subject }.into()),
    };
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

async fn set_subject_config(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = registry
        .set_subject_compatibility(&subject, requested_level(&body)?)
        .await?;
    ok(json!({ "compatibility": level.as_str() }))
}

async fn delete_subject_config(
    State(registry): State<SchemaRegistry>,
    Path(subject): Path<String>,
) -> ApiResult {
    let level = registry.delete_subject_compatibility(&subject).await?;
    ok(json!({ "compatibilityLevel": level.as_str() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router on an ephemeral loopback port.
    struct App {
        base: String,
        http: reqwest::Client,
    }

    async fn start() -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app = router(SchemaRegistry::in_memory());
        tokio::spawn(async move { axum::serve(listener, app).await });
        App {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(app: &mut App, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = app.http.request(method, format!("{}{path}", app.base));
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.expect("the registry answers");
        let status = response.status().as_u16();
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE)
        );
        let text = response.text().await.expect("a body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    const V1: &str = r#"{"type":"record","name":"Value","fields":[{"name":"id","type":"int"}]}"#;

    #[tokio::test]
    async fn errors_use_confluents_envelope_and_codes() {
        let mut app = start().await;
        let (status, body) = call(&mut app, "GET", "/subjects/x/versions", None).await;
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"error_code": 40401, "message": "Subject 'x' not found."})
        );
        let (status, body) = call(&mut app, "GET", "/schemas/ids/9", None).await;
        assert_eq!((status, body["error_code"].as_u64()), (404, Some(40403)));
        let (status, body) = call(&mut app, "GET", "/subjects/x/versions/zero", None).await;
        assert_eq!((status, body["error_code"].as_u64()), (422, Some(42202)));
        let (status, body) = call(
            &mut app,
            "POST",
            "/subjects/x/versions",
            Some(json!({"schema": "{\"type\":\"recor\"}"})),
        )
        .await;
        assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)));
        let (status, body) = call(
            &mut app,
            "PUT",
            "/config",
            Some(json!({"compatibility": "SIDEWAYS"})),
        )
        .await;
        assert_eq!((status, body["error_code"].as_u64()), (422, Some(42203)));
        let (status, body) = call(&mut app, "GET", "/nothing/here", None).await;
        assert_eq!((status, body["error_code"].as_u64()), (404, Some(404)));
        let (status, body) = call(
            &mut app,
            "POST",
            "/subjects/x/versions",
            Some(json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})),
        )
        .await;
        assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)));
    }

    #[tokio::test]
    async fn register_read_check_and_configure() {
        let mut app = start().await;
        let (status, body) = call(
            &mut app,
            "POST",
            "/subjects/t-value/versions",
            Some(json!({"schema": V1})),
        )
        .await;
        assert_eq!((status, body), (200, json!({"id": 1})));
        let (_, body) = call(&mut app, "GET", "/schemas/ids/1", None).await;
        assert_eq!(body, json!({"schema": V1}));
        let (_, body) = call(&mut app, "GET", "/subjects/t-value/versions/latest", None).await;
        assert_eq!(
            body,
            json!({"subject": "t-value", "version": 1, "id": 1, "schema": V1})
        );
        let (_, body) = call(&mut app, "GET", "/subjects/t-value/versions/1/schema", None).await;
        assert_eq!(body, serde_json::from_str::<Value>(V1).unwrap());
        let (_, body) = call(&mut app, "GET", "/schemas/ids/1/versions", None).await;
        assert_eq!(body, json!([{"subject": "t-value", "version": 1}]));
        let (_, body) = call(
            &mut app,
            "POST",
            "/compatibility/subjects/t-value/versions/latest?verbose=true",
            Some(json!({"schema": "\"string\""})),
        )
        .await;
        assert_eq!(body["is_compatible"], json!(false));
        assert!(!body["messages"].as_array().unwrap().is_empty());
        let (_, body) = call(&mut app, "GET", "/config", None).await;
        assert_eq!(body, json!({"compatibilityLevel": "BACKWARD"}));
        let (status, body) = call(&mut app, "GET", "/config/t-value", None).await;
        assert_eq!((status, body["error_code"].as_u64()), (404, Some(40408)));
        let (_, body) = call(
            &mut app,
            "GET",
            "/config/t-value?defaultToGlobal=true",
            None,
        )
        .await;
        assert_eq!(body, json!({"compatibilityLevel": "BACKWARD"}));
        let (_, body) = call(
            &mut app,
            "PUT",
            "/config/t-value",
            Some(json!({"compatibility": "none"})),
        )
        .await;
        assert_eq!(body, json!({"compatibility": "NONE"}));
        let (_, body) = call(
            &mut app,
            "POST",
            "/compatibility/subjects/t-value/versions/1",
            Some(json!({"schema": "\"string\""})),
        )
        .await;
        assert_eq!(body, json!({"is_compatible": true}));
        let (_, body) = call(&mut app, "DELETE", "/config/t-value", None).await;
        assert_eq!(body, json!({"compatibilityLevel": "NONE"}));
        let (_, body) = call(&mut app, "GET", "/schemas/types", None).await;
        assert_eq!(body, json!(["AVRO"]));
    }
}
