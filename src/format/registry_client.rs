//! A client of a Confluent-compatible schema registry (tributary serve's own, Confluent's,
//! Apicurio's ccompat API): registers a subject's schema and gets its global id.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use secrecy::SecretString;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Where a converter registers its schemas.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The registry's base URL (the first of `schema.registry.url`'s comma-separated list).
    pub url: String,
    /// `basic.auth.user.info` (`user:password`), sent as HTTP basic authentication.
    pub basic_auth: Option<SecretString>,
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry refuses the schema under the subject's compatibility rule (HTTP 409).
    #[error("the schema registry refuses the new schema of subject {subject}: {message}")]
    Incompatible { subject: String, message: String },
    /// Any other answer with an error: invalid schema, unauthorised, ...
    #[error("the schema registry at {url} answered {status} for subject {subject}: {message}")]
    Refused {
        url: String,
        subject: String,
        status: u16,
        message: String,
    },
    /// No answer: down, unreachable, timed out, or a 5xx. Worth retrying.
    #[error("the schema registry at {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }
}

/// One registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: RegistryConfig,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    message: String,
}

impl RegistryClient {
    pub fn new(config: &RegistryConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            http,
            config: config.clone(),
        }
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Registers `schema` (Avro JSON) under `subject` and returns its id; registering a schema
    /// the subject already has returns the existing id, as the registry API defines.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!(
            "{}/subjects/{}/versions",
            self.config.url,
            encode_path_segment(subject)
        );
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": schema }));
        let registered: Registered = self.call(request, subject).await?;
        Ok(registered.id)
    }

    /// The schema (Avro JSON) registered under `id`, as readers of the wire format need it.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct SchemaBody {
            schema: String,
        }
        let url = format!("{}/schemas/ids/{id}", self.config.url);
        let body: SchemaBody = self
            .call(self.http.get(&url), &format!("(schema id {id})"))
            .await?;
        Ok(body.schema)
    }

    /// Sends `request` with the registry's credentials and reads its JSON answer; errors say
    /// whether retrying can help (`subject` names what was asked for).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        subject: &str,
    ) -> Result<T, RegistryError> {
        let mut request = request.header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(user_info) = &self.config.basic_auth {
            let (user, password) = user_info
                .expose_secret()
                .split_once(':')
                .unwrap_or((user_info.expose_secret(), ""));
            request = request.basic_auth(user, Some(password));
        }
        let unavailable = |reason: String| RegistryError::Unavailable {
            url: self.config.url.clone(),
            reason,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| unavailable(format!("unreadable answer: {}", e.without_url())));
        }
        let body = response.text().await.unwrap_or_default();
        let message = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(error) if !error.message.is_empty() => {
                format!("{} (error code {})", error.message, error.error_code)
            }
            _ => body.chars().take(300).collect(),
        };
        if status == reqwest::StatusCode::CONFLICT {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                message,
            });
        }
        if status.is_server_error() {
            return Err(unavailable(format!("HTTP {status}: {message}")));
        }
        Err(RegistryError::Refused {
            url: self.config.url.clone(),
            subject: subject.to_owned(),
            status: status.as_u16(),
            message,
        })
    }
}

/// Subjects are topic names plus `-key`/`-value`; escape whatever a path segment cannot hold.
fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_escaped_for_the_path() {
        assert_eq!(
            encode_path_segment("pg.public.orders-value"),
            "pg.public.orders-value"
        );
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
    }
}
